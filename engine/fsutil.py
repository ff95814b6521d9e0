"""Small filesystem helpers shared by the stores: safe names and all-or-nothing folders."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

# Temporaries are named ``.<target>-<host>x<pid>-<random>.partial`` (folders) or ``….tmp``
# (files): hidden from every listing, and marked with the writer's process id so a later start
# can tell one abandoned by a killed process from one another process is still writing. <host>
# tags the machine and PID namespace: a process in a container, or on another computer sharing
# this folder, has process ids this one cannot check, so its temporaries are never touched.
PARTIAL_SUFFIX = ".partial"
_LEFTOVER = re.compile(r"^\..+-([0-9a-f]{6})x(\d{1,9})-[a-z0-9_]+\.(partial|tmp)$")


def _host_tag() -> str:
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    return hashlib.sha1(f"{socket.gethostname()}:{namespace}".encode()).hexdigest()[:6]


_HOST = _host_tag()


def _temp_prefix(name: str) -> str:
    return f".{name}-{_HOST}x{os.getpid()}-"


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
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target.name), suffix=PARTIAL_SUFFIX,
                                dir=target.parent))
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
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A hidden temporary path beside ``path`` for a library that writes files by name.

    Whatever the body writes there replaces ``path`` when the body returns; if it raises (or
    the process dies) ``path`` is untouched and the temporary is removed (or swept later).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` all at once (see :func:`open_atomic`)."""
    with open_atomic(path) as out:
        out.write(text)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except (OSError, OverflowError, ValueError):
        return True  # exists but is not ours (or cannot tell): leave its files alone
    return True


def sweep_leftovers(root: Path, *, depth: int = 3) -> list[Path]:
    """Delete the temporaries that killed processes left under ``root``; returns them.

    Only names this module gives its temporaries are touched, and only when the process that
    wrote them is gone, so a pull or save running in another process is never disturbed.
    """
    removed: list[Path] = []
    root = Path(root)
    if not root.is_dir():
        return removed
    level = [root]
    for _ in range(depth + 1):
        below: list[Path] = []
        for folder in level:
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                match = _LEFTOVER.match(entry.name)
                if match and match.group(1) == _HOST and not _process_alive(int(match.group(2))):
                    path = Path(entry.path)
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            shutil.rmtree(path)
                        else:
                            path.unlink(missing_ok=True)
                    except OSError:
                        continue  # read-only or vanished: harmless, it stays hidden
                    removed.append(path)
                elif entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
                    below.append(Path(entry.path))
        level = below
    return removed
