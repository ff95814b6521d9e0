"""Reusable widgets: they take plain data and emit signals; none of them runs engine work."""
