"""Small filesystem helpers shared by the stores: safe names and all-or-nothing folders."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


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


@contextmanager
def open_atomic(path: Path) -> Iterator[IO[str]]:
    """Write a text file under a hidden temporary name; it replaces ``path`` only when complete.

    Readers (and a process that starts after a crash) see the old content or the new, never
    half: the data is flushed to disk before the rename, which is atomic on one file system.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` all at once (see :func:`open_atomic`)."""
    with open_atomic(path) as out:
        out.write(text)
