"""The PySide6 desktop app: the only package that imports Qt (the window lands with issue 7)."""
