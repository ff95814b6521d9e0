"""PyInstaller hook: webrtcvad comes from the "webrtcvad-wheels" distribution here.

The contrib hook copies the metadata of "webrtcvad" and fails the build when that is absent.
"""

from PyInstaller.utils.hooks import copy_metadata

datas = copy_metadata("webrtcvad-wheels")
