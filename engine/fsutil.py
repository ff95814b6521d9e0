"""Small filesystem helpers shared by the stores: safe names and all-or-nothing folders."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def slug(name: str) -> str:
    """A folder name from a display name: lower-case letters and digits joined by dashes."""
    text = "".join(c if c.isalnum() else "-" for c in name.strip().lower()).strip("-")
    while "--" in text:
        text = text.replace("--", "-")
    return text


@contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Build a folder in a hidden temporary beside ``target``, then rename it into place.

    If the body raises (or the process dies) nothing appears at ``target``: a crash half-way
    leaves at most a hidden temporary folder, never a half-written persona, voice or model.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
