"""Enrolled voices on disk: one folder each under the data folder's ``voices/``.

A voice folder holds ``sample.wav`` (the normalised sample, 24 kHz mono 16-bit), ``voice.json``
(name, created, source, verdict, checks), ``embedding.npy`` (the GE2E speaker embedding) and,
once a TTS backend has seen it, that backend's cached voice conditioning (safetensors), so
speaking never re-encodes the sample. Writes are atomic (a temporary folder renamed into place).
"""

from __future__ import annotations

import json
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine import paths
from engine.audio.convert import resample
from engine.errors import TalkError
from engine.fsutil import atomic_folder, atomic_write_text, slug
from engine.voices.quality import Check, QualityOptions, Verdict, assess

SAMPLE_RATE = 24000  # Hz: what the cloning TTS takes as its prompt
VOICE_FILE = "voice.json"
SAMPLE_FILE = "sample.wav"
EMBEDDING_FILE = "embedding.npy"
MAX_SAMPLE_S = 60.0  # longer recordings are cut: more does not clone better
MAX_ARCHIVE_BYTES = 200 * 1024 * 1024
# Pocket TTS's terms forbid cloning a voice without its speaker's explicit, lawful consent: the
# CLI and the window ask for this before enrolling, and it is stored with the voice.
CONSENT_STATEMENT = ("This is my voice, or I have the speaker's explicit permission to clone "
                     "it.")


class VoiceError(TalkError):
    """A voice could not be enrolled, found, imported or exported."""

    code = "voice_failed"


class VoiceQualityError(VoiceError):
    """The sample failed its checks; ``verdict`` says why. Keep it anyway with ``force``."""

    code = "voice_quality"

    def __init__(self, verdict: Verdict):
        super().__init__("The sample is not good enough to clone: " + verdict.summary() + ".",
                         hint="Record again, or keep it anyway (it will be flagged).")
        self.verdict = verdict


@dataclass(frozen=True)
class Voice:
    """An enrolled voice."""

    id: str  # folder name
    folder: Path
    name: str
    created: float
    source: str  # "recording" or the imported file's name
    verdict: dict[str, Any]
    flagged: bool  # kept although a check failed
    similarity: float | None = None  # speaker similarity of TTS output to the sample
    consent: dict[str, Any] | None = None  # {"statement", "by", "at"} as given when enrolled

    def consent_line(self) -> str:
        """The stored consent in words (or that none was recorded)."""
        if not self.consent:
            return "no consent recorded (enrolled before consent was asked for)"
        try:
            when = time.strftime("%Y-%m-%d", time.localtime(float(self.consent.get("at", 0))))
        except (TypeError, ValueError, OverflowError, OSError):  # a hand-edited or foreign file
            when = "an unreadable date"
        return f"consent confirmed by {self.consent.get('by', '?')} on {when}"

    @property
    def sample_path(self) -> Path:
        """The normalised sample."""
        return self.folder / SAMPLE_FILE

    def embedding(self) -> np.ndarray:
        """The GE2E speaker embedding of the sample."""
        return np.load(self.folder / EMBEDDING_FILE)

    def sample(self) -> tuple[np.ndarray, int]:
        """The stored sample as mono float32 and its rate.

        Raises:
            VoiceError: the sample is missing or damaged (code ``voice_damaged``).

        """
        import soundfile as sf

        try:
            audio, rate = sf.read(str(self.sample_path), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, OSError, RuntimeError) as err:
            raise VoiceError(f"The voice {self.name!r} has a damaged sample "
                             f"({self.sample_path.name}).",
                             hint="Delete the voice and enroll it again.",
                             code="voice_damaged") from err
        return audio.mean(axis=1), int(rate)


def voices_dir() -> Path:
    """Where voices live."""
    path = paths.data_dir() / "voices"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or not slug(name):
        raise VoiceError("A voice needs a name with at least one letter or digit.",
                         code="voice_name_invalid")
    if len(name) > 80:
        raise VoiceError("A voice name can be at most 80 characters.", code="voice_name_invalid")
    return name


def enroll(name: str, audio: np.ndarray, rate: int, *, source: str, encoder: Any,
           force: bool = False, options: QualityOptions | None = None,
           consent: str | None = None) -> tuple[Voice, Verdict]:
    """Check and store a sample as a new voice.

    Args:
        name: what people call the voice.
        audio: mono float32 samples at ``rate``.
        rate: sample rate of ``audio``.
        source: "recording" or the file it came from.
        encoder: a SpeakerEncoder (embedding and the one-speaker check).
        force: keep a sample that fails its checks (flagged).
        options: check thresholds.
        consent: who confirmed :data:`CONSENT_STATEMENT` (stored with the time); the CLI and
            the window never enroll without it.

    Raises:
        VoiceQualityError: the sample failed and ``force`` is False.
        VoiceError: bad name, or a voice of that name exists.

    """
    name = _check_name(name)
    target = voices_dir() / slug(name)
    if target.exists():
        raise VoiceError(f"A voice called {name!r} already exists.",
                         hint="Pick another name, or delete the old voice first.",
                         code="voice_exists")
    audio = np.asarray(audio, dtype=np.float32)[: int(MAX_SAMPLE_S * rate)]
    audio16 = resample(audio, rate, 16000)
    verdict = assess(audio16, encoder, options)
    if rate < 16000:  # what was never recorded cannot be cloned
        verdict = Verdict(verdict.checks + (Check(
            "sample_rate", True, float(rate),
            f"recorded at {rate} Hz, below 16 kHz: the cloned voice will sound muffled, like a "
            "phone call", note=True),))
    if not verdict.ok and not force:
        raise VoiceQualityError(verdict)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    normalised = audio * (0.9 / peak) if peak > 0 else audio  # consistent level for the TTS
    info = {"schema_version": 1, "name": name, "created": time.time(), "source": source,
            "verdict": verdict.to_json(), "flagged": not verdict.ok, "similarity": None,
            "consent": {"statement": CONSENT_STATEMENT, "by": consent, "at": time.time()}
            if consent else None}

    import soundfile as sf

    try:
        with atomic_folder(target) as tmp:
            sf.write(tmp / SAMPLE_FILE, resample(normalised, rate, SAMPLE_RATE), SAMPLE_RATE,
                     subtype="PCM_16")
            np.save(tmp / EMBEDDING_FILE, encoder.embed(audio16) if verdict_has_speech(verdict)
                    else np.zeros(256, np.float32))
            (tmp / VOICE_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")
    except OSError as err:  # disk full, no permission: nothing half-written is left behind
        raise VoiceError(f"Could not save the voice {name!r}: {err.strerror or err}.",
                         hint=f"Check that {voices_dir()} can be written and the disk is not "
                              "full.", code="voice_write_failed") from err
    return load_voice(target), verdict


def verdict_has_speech(verdict: Verdict) -> bool:
    """Whether any speech was found (the embedding of silence means nothing)."""
    return any(c.name == "speech" and (c.value or 0) > 0 for c in verdict.checks)


def load_voice(folder: Path) -> Voice:
    """Read a voice folder, with a clear error if it is damaged."""
    path = folder / VOICE_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        voice = Voice(id=folder.name, folder=folder, name=str(info["name"]),
                      created=float(info["created"]), source=str(info.get("source", "")),
                      verdict=dict(info.get("verdict") or {}),
                      flagged=bool(info.get("flagged")), similarity=info.get("similarity"),
                      consent=info.get("consent") if isinstance(info.get("consent"), dict)
                      else None)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise VoiceError(f"The voice folder {folder.name} is damaged ({voice_json_problem(err)}).",
                         hint="Delete it and enroll the voice again.",
                         code="voice_damaged") from err
    if not voice.sample_path.is_file():
        raise VoiceError(f"The voice {voice.name!r} has lost its sample ({SAMPLE_FILE}).",
                         hint="Delete it and enroll the voice again.", code="voice_damaged")
    return voice


def voice_json_problem(err: Exception) -> str:
    """Short reason for a broken voice.json."""
    if isinstance(err, KeyError):
        return f"voice.json lacks {err.args[0]!r}"
    if isinstance(err, OSError):
        return "voice.json is missing or unreadable"
    return "voice.json is not valid"


def list_voices() -> tuple[list[Voice], list[VoiceError]]:
    """Every voice, oldest first, and the errors of damaged ones."""
    voices, errors = [], []
    for folder in sorted(voices_dir().iterdir()):
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        try:
            voices.append(load_voice(folder))
        except VoiceError as err:
            errors.append(err)
    return sorted(voices, key=lambda v: v.created), errors


def find_voice(ref: str) -> Voice:
    """A voice by id or name (case-insensitive)."""
    voices, _ = list_voices()
    for voice in voices:
        if ref in (voice.id, voice.name) or ref.lower() == voice.name.lower():
            return voice
    folder = voices_dir() / slug(ref)
    if folder.is_dir():
        return load_voice(folder)  # raises the damage error
    known = ", ".join(v.name for v in voices) or "none yet"
    raise VoiceError(f"No voice called {ref!r}.", hint=f"Voices: {known}.",
                     code="voice_not_found")


def update_info(voice: Voice, **changes: Any) -> Voice:
    """Change fields of voice.json (atomically)."""
    path = voice.folder / VOICE_FILE
    info = json.loads(path.read_text(encoding="utf-8"))
    info.update(changes)
    atomic_write_text(path, json.dumps(info, indent=2))
    return load_voice(voice.folder)


def rename(ref: str, new_name: str) -> Voice:
    """Give a voice another name (its folder keeps its id)."""
    voice = find_voice(ref)
    new_name = _check_name(new_name)
    others = [v for v in list_voices()[0] if v.id != voice.id]
    if any(v.name.lower() == new_name.lower() for v in others):
        raise VoiceError(f"A voice called {new_name!r} already exists.", code="voice_exists")
    return update_info(voice, name=new_name)


def delete(ref: str) -> Voice:
    """Remove a voice and its files."""
    voice = find_voice(ref)
    shutil.rmtree(voice.folder)
    return voice


def export(ref: str, archive: Path) -> Path:
    """Write the voice folder as a zip."""
    voice = find_voice(ref)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(voice.folder.iterdir()):
            if file.is_file():
                zf.write(file, f"{voice.id}/{file.name}")
    return archive


def import_archive(archive: Path) -> Voice:
    """Add a voice from a zip made by :func:`export`; entries may not leave the voice folder."""
    if not zipfile.is_zipfile(archive):
        raise VoiceError(f"{Path(archive).name} is not a voice archive (zip).",
                         code="voice_archive_invalid")
    with zipfile.ZipFile(archive) as zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if sum(m.file_size for m in members) > MAX_ARCHIVE_BYTES:
            raise VoiceError("The voice archive is too large.", code="voice_archive_invalid")
        tops = {Path(m.filename).parts[0] for m in members if Path(m.filename).parts}
        for member in members:
            parts = Path(member.filename).parts
            if (member.filename.startswith(("/", "\\")) or ".." in parts or len(parts) != 2
                    or len(tops) != 1):
                raise VoiceError(
                    f"The archive entry {member.filename!r} would be written outside the voice "
                    "folder; refusing the archive.", code="voice_archive_unsafe")
        voice_id = slug(tops.pop()) if tops else ""
        if not voice_id or (voices_dir() / voice_id).exists():
            raise VoiceError(f"A voice {voice_id!r} already exists (or the archive is empty).",
                             code="voice_exists")

        with atomic_folder(voices_dir() / voice_id) as tmp:
            for member in members:
                (tmp / Path(member.filename).name).write_bytes(zf.read(member))
            load_voice(tmp)  # never publish a damaged voice
    return load_voice(voices_dir() / voice_id)
