"""One archive holding a persona and the voice it speaks in: hand "your" persona to someone.

The archive is a zip::

    talk-to-transformers.json   {"format": 1, "kind": "persona", "persona": ID, "voice": ID|null}
    persona/...                 the persona's folder (persona.json, and its weights when they
                                live in the folder; hub and package weights stay where they are)
    voice/...                   the enrolled voice: sample, voice.json (with its consent), embedding

The persona.json inside names the voice as its ``default_voice``, so the pairing travels with it.
Importing checks everything before writing anything: every entry stays inside ``persona/`` or
``voice/`` (no absolute paths, no ``..``, no links), the sizes fit the disk, persona.json and
voice.json validate; then the voice and the persona are written atomically into the data folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from engine import paths
from engine.errors import PersonaError
from engine.fsutil import atomic_folder, atomic_path, slug
from engine.models.persona import PERSONA_FILE, Persona, load_persona, parse_persona

MANIFEST = "talk-to-transformers.json"
FORMAT = 1
# Weights barely compress; storing them keeps export and import at disk speed.
STORED_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".ckpt", ".wav")
# Files a voice folder may hold that are derived on this machine (rebuilt on the other side).
VOICE_CACHE_PREFIX = "pocket_state."
DISK_MARGIN = 200 * 1024 * 1024  # left free after an import
# A voice sample is 5-60 s of 24 kHz audio (a few MB); anything far bigger is not one.
MAX_SAMPLE_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class Exported:
    """What :func:`export_persona` wrote."""

    path: Path
    persona: Persona
    voice: str | None  # the enrolled voice included, or ``builtin:NAME``, or None
    bytes: int
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Imported:
    """What :func:`import_persona` added."""

    persona: Persona
    voice: Any | None  # engine.voices.store.Voice, when the archive held one
    notes: list[str] = field(default_factory=list)


def _archive_error(message: str, *, hint: str | None = None,
                   code: str = "persona_archive_invalid") -> PersonaError:
    return PersonaError(message, hint=hint, code=code)


# ------------------------------------------------------------------ export


def export_persona(ref: str, archive: str | Path, *, with_voice: bool = True) -> Exported:
    """Write persona ``ref`` (and, unless ``with_voice`` is False, its voice) to ``archive``."""
    from engine.models.registry import find_persona
    from engine.voices.pairing import voice_for

    persona = find_persona(ref)
    archive = Path(archive).expanduser()
    if archive.suffix.lower() != ".zip":
        archive = archive.with_name(archive.name + ".zip")
    if not archive.parent.is_dir():
        raise _archive_error(f"The folder {archive.parent} does not exist.",
                             code="persona_archive_path")
    data = json.loads((persona.folder / PERSONA_FILE).read_text(encoding="utf-8"))
    data.pop("starter", None)  # a copy is not the bundled starter
    notes: list[str] = []
    voice_ref = voice_for(persona) if with_voice else None
    voice = None
    if voice_ref and not voice_ref.startswith("builtin:"):
        from engine.voices.store import VoiceError, find_voice

        try:
            voice = find_voice(voice_ref)
        except VoiceError:
            notes.append(f"Its voice {voice_ref!r} is no longer enrolled here; the archive has "
                         "no voice.")
            voice_ref = None
    if voice is not None:
        data["default_voice"] = voice.name
    elif voice_ref:
        data["default_voice"] = voice_ref  # a built-in voice: every install has it
    else:
        data.pop("default_voice", None)
    if persona.weights.source == "hub":
        notes.append(f"Its weights are not in the archive: they download from the Hugging Face "
                     f"Hub ({persona.weights.repo_id}) on the other side.")
    elif persona.weights.source == "package":
        notes.append(f"Its weights are not in the archive: they ship with the app (the "
                     f"{persona.weights.package} package).")

    manifest = {"format": FORMAT, "kind": "persona", "persona": persona.id,
                "voice": voice.id if voice is not None else None}
    with atomic_path(archive) as tmp, zipfile.ZipFile(tmp, "w") as zf:
        zf.writestr(MANIFEST, json.dumps(manifest, indent=2) + "\n")
        zf.writestr(f"persona/{PERSONA_FILE}", json.dumps(data, indent=2) + "\n",
                    zipfile.ZIP_DEFLATED)
        for file in _files(persona.folder):
            rel = file.relative_to(persona.folder).as_posix()
            if rel != PERSONA_FILE:
                _add(zf, file, f"persona/{rel}")
        if voice is not None:
            for file in _files(voice.folder):
                if not file.name.startswith(VOICE_CACHE_PREFIX):
                    _add(zf, file, f"voice/{file.name}")
    return Exported(archive, persona, voice.name if voice is not None else voice_ref,
                    archive.stat().st_size, notes)


def _files(folder: Path) -> list[Path]:
    """Regular files under ``folder``, hidden ones (temporaries, caches) left out."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [Path(root) / f for f in sorted(files) if not f.startswith(".")]
    return [f for f in out if f.is_file()]


def _add(zf: zipfile.ZipFile, file: Path, name: str) -> None:
    kind = zipfile.ZIP_STORED if file.suffix.lower() in STORED_SUFFIXES else zipfile.ZIP_DEFLATED
    zf.write(file, name, compress_type=kind)


# ------------------------------------------------------------------ import


def import_persona(archive: str | Path, *, name: str | None = None) -> Imported:
    """Add the persona (and voice) of ``archive``; ``name`` renames the persona."""
    archive = Path(archive).expanduser()
    if not archive.is_file():
        raise _archive_error(f"No file at {archive}.", code="persona_archive_missing")
    if not zipfile.is_zipfile(archive):
        raise _archive_error(f"{archive.name} is not a persona archive (not a zip file).")
    with zipfile.ZipFile(archive) as zf:
        manifest = _manifest(zf, archive.name)
        members = _checked_members(zf)
        persona_files = {_inside(m.filename): m for m in members
                         if m.filename.startswith("persona/")}
        voice_files = {_inside(m.filename): m for m in members
                       if m.filename.startswith("voice/")}
        if PERSONA_FILE not in persona_files:
            raise _archive_error(f"{archive.name} holds no persona/persona.json.")
        data = _json(zf, persona_files[PERSONA_FILE], "persona/persona.json")
        if name is not None:
            if not name.strip():
                raise _archive_error("The new name is empty.", code="persona_name_invalid")
            data["name"] = name.strip()
        persona_id = slug(name) if name else slug(str(manifest.get("persona") or ""))
        persona_id = persona_id or slug(str(data.get("name", ""))) or "persona"
        parse_persona(data, Path(persona_id))  # validate before writing anything
        _refuse_existing_persona(persona_id)
        _check_space(members)

        notes: list[str] = []
        voice, created_voice, note = None, False, None
        if voice_files:
            voice, created_voice, note = _import_voice(zf, voice_files, manifest)
        try:
            if voice is not None:  # inside the try: a failure from here on removes the voice
                if note:
                    notes.append(note)
                data["default_voice"] = voice.name
                notes.append(f"Voice {voice.name}: {voice.consent_line()}.")
            with atomic_folder(paths.personas_dir() / persona_id) as tmp:
                for rel, member in persona_files.items():
                    if rel != PERSONA_FILE:
                        _extract(zf, member, tmp, rel)
                (tmp / PERSONA_FILE).write_text(json.dumps(data, indent=2) + "\n",
                                                encoding="utf-8")
                load_persona(tmp)  # never publish a persona that does not load
        except BaseException:
            if created_voice and voice is not None:
                shutil.rmtree(voice.folder, ignore_errors=True)
            raise
    persona = load_persona(paths.personas_dir() / persona_id)
    if persona.weights.source == "hub":
        notes.append(f"Its weights download from the Hugging Face Hub ({persona.weights.repo_id})"
                     f": talk-to-transformers models pull {persona.id}")
    return Imported(persona, voice, notes)


def _manifest(zf: zipfile.ZipFile, archive_name: str) -> dict[str, Any]:
    try:
        info = zf.getinfo(MANIFEST)
    except KeyError:
        names = zf.namelist()
        if any(n.endswith("/voice.json") for n in names):
            raise _archive_error(
                f"{archive_name} is a voice archive, not a persona archive.",
                hint=f"Import it with: talk-to-transformers voices import {archive_name}",
            ) from None
        raise _archive_error(f"{archive_name} is not a persona archive (it has no {MANIFEST}).",
                             hint="Persona archives are made by: talk-to-transformers models "
                                  "export PERSONA FILE") from None
    manifest = _json(zf, info, MANIFEST)
    version = manifest.get("format")
    if not isinstance(version, int) or manifest.get("kind") != "persona":
        raise _archive_error(f"{archive_name}: {MANIFEST} does not describe a persona archive.")
    if version > FORMAT:
        raise _archive_error(f"{archive_name} was made by a newer version (format {version}; "
                             f"this one reads {FORMAT}).", hint="Update Talk To Transformers.")
    return manifest


def _checked_members(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The archive's files; refuses any entry that could land outside its folder."""
    members = []
    for member in zf.infolist():
        name = member.filename
        path = PurePosixPath(name)
        mode = member.external_attr >> 16
        raw_parts = name.rstrip("/").split("/")  # "a//b" and "a/./b" hide an absolute path
        unsafe = (name.startswith("/") or "\\" in name or ":" in name or ".." in path.parts
                  or any(part in ("", ".") for part in raw_parts)
                  or stat.S_ISLNK(mode)
                  or not (name == MANIFEST or name.startswith(("persona/", "voice/"))))
        if unsafe:
            raise _archive_error(
                f"The archive entry {name!r} would be written outside the persona or voice "
                "folder; refusing the archive (nothing was written).",
                code="persona_archive_unsafe")
        if name.startswith("voice/") and len(path.parts) != 2 and not member.is_dir():
            raise _archive_error(f"The archive entry {name!r} is not a voice file; refusing "
                                 "the archive (nothing was written).",
                                 code="persona_archive_unsafe")
        if not member.is_dir() and name != MANIFEST:
            members.append(member)
    return members


def _json(zf: zipfile.ZipFile, member: zipfile.ZipInfo, label: str) -> dict[str, Any]:
    if member.file_size > 1024 * 1024:
        raise _archive_error(f"{label} in the archive is too large to be what it says.")
    try:
        data = json.loads(zf.read(member).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, zipfile.BadZipFile) as err:
        raise _archive_error(f"{label} in the archive is damaged: {err}") from err
    if not isinstance(data, dict):
        raise _archive_error(f"{label} in the archive must hold a JSON object.")
    return data


def _refuse_existing_persona(persona_id: str) -> None:
    for root in (paths.personas_dir(), paths.resources_dir() / "personas"):
        if (root / persona_id).exists():
            raise PersonaError(f"A persona called {persona_id!r} already exists.",
                               hint="Import it under another name: talk-to-transformers models "
                                    "import FILE --name NEW_NAME", code="persona_exists")


def _check_space(members: list[zipfile.ZipInfo]) -> None:
    needed = sum(m.file_size for m in members)
    root = paths.data_dir()
    root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(root).free
    if needed + DISK_MARGIN > free:
        raise _archive_error(f"Not enough disk space: the archive unpacks to "
                             f"{needed / 1e6:.0f} MB and {free / 1e6:.0f} MB are free.",
                             code="disk_full")


def _inside(name: str) -> str:
    """An entry's path below its top folder ("persona/a/b" -> "a/b"), rebuilt from its parts."""
    return "/".join(PurePosixPath(name).parts[1:])


def _extract(zf: zipfile.ZipFile, member: zipfile.ZipInfo, root: Path, rel: str) -> None:
    """Copy one entry to ``root / rel``: never outside ``root``, never more than it declares."""
    target = root / rel
    if not rel or not target.resolve().is_relative_to(root.resolve()):
        raise _archive_error(f"The archive entry {member.filename!r} would be written outside "
                             "its folder; refusing the archive.", code="persona_archive_unsafe")
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with zf.open(member) as src, open(target, "wb") as out:
        while chunk := src.read(1024 * 1024):
            written += len(chunk)
            if written > member.file_size:
                raise _archive_error(f"The archive entry {member.filename!r} is larger than it "
                                     "says; refusing the archive.",
                                     code="persona_archive_unsafe")
            out.write(chunk)


def _import_voice(zf: zipfile.ZipFile, files: dict[str, zipfile.ZipInfo],
                  manifest: dict[str, Any]) -> tuple[Any, bool, str | None]:
    """Write the archive's voice (or find the same one here): (voice, created, note)."""
    from engine.voices.store import VoiceError, find_voice, load_voice, voices_dir

    if "voice.json" not in files:
        raise _archive_error("The archive's voice/ has no voice.json.")
    info = _json(zf, files["voice.json"], "voice/voice.json")
    wanted = str(info.get("name") or manifest.get("voice") or "voice")
    sample = files.get("sample.wav")
    if sample is not None and sample.file_size > MAX_SAMPLE_BYTES:
        raise _archive_error(f"The archive's voice sample is {sample.file_size / 1e6:.0f} MB; a "
                             f"voice sample is at most {MAX_SAMPLE_BYTES / 1e6:.0f} MB.")
    digest = _sha256(zf, sample) if sample is not None else None
    try:
        here = find_voice(wanted)
    except VoiceError:
        here = None
    if here is not None and digest is not None and here.sample_path.is_file() and \
            hashlib.sha256(here.sample_path.read_bytes()).hexdigest() == digest:
        return here, False, f"The voice {here.name} was already here; the persona uses it."
    name, note = wanted, None
    if here is not None or (voices_dir() / slug(wanted)).exists():
        n = 2
        while _voice_taken(f"{wanted} {n}"):
            n += 1
        name = f"{wanted} {n}"
        note = (f"A different voice called {wanted} is already enrolled here; the archive's "
                f"voice is added as {name}.")
    info["name"] = name
    voice_id = slug(name) or "voice"
    with atomic_folder(voices_dir() / voice_id) as tmp:
        for rel, member in files.items():
            if rel != "voice.json":
                _extract(zf, member, tmp, rel)
        (tmp / "voice.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        try:
            load_voice(tmp)  # never publish a damaged voice
        except VoiceError as err:
            raise _archive_error(f"The archive's voice is damaged: {err.message}") from err
    return load_voice(voices_dir() / voice_id), True, note


def _sha256(zf: zipfile.ZipFile, member: zipfile.ZipInfo) -> str:
    """The entry's SHA-256, read in chunks (never the whole entry in memory)."""
    digest = hashlib.sha256()
    with zf.open(member) as src:
        while chunk := src.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _voice_taken(name: str) -> bool:
    from engine.voices.store import VoiceError, find_voice, voices_dir

    if (voices_dir() / slug(name)).exists():
        return True
    try:
        find_voice(name)
    except VoiceError:
        return False
    return True
