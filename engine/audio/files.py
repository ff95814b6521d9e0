"""Reading audio files as 16 kHz mono float32, with a clear error for each way they fail."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

from engine.audio.convert import to_mono_16k
from engine.errors import TalkError


class AudioFileError(TalkError):
    """An audio file could not be read."""

    code = "audio_file_unreadable"


MAX_SECONDS = 4 * 3600  # longer files are refused rather than filling memory
_FFMPEG_SUFFIXES = {".mp3", ".m4a", ".aac", ".mp4", ".webm", ".opus", ".wma"}


def load_audio(path: str | Path) -> np.ndarray:
    """Read ``path`` (WAV/FLAC/OGG via soundfile; MP3/M4A/... via ffmpeg) as 16 kHz mono."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise AudioFileError(f"No audio file at {path}.", code="audio_file_missing")
    if path.stat().st_size == 0:
        raise AudioFileError(f"{path.name} is empty (0 bytes).", code="audio_file_empty")
    if path.suffix.lower() in _FFMPEG_SUFFIXES:
        audio, rate = _ffmpeg(path)
    else:
        audio, rate = _soundfile(path)
    if audio.size == 0:
        raise AudioFileError(f"{path.name} holds no audio samples.", code="audio_file_empty")
    if audio.shape[0] / rate > MAX_SECONDS:
        raise AudioFileError(
            f"{path.name} is {audio.shape[0] / rate / 3600:.1f} hours long; the limit is "
            f"{MAX_SECONDS // 3600} hours.", code="audio_file_too_long")
    return to_mono_16k(audio, rate)


def _soundfile(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        info = sf.info(str(path))
        if info.frames / max(info.samplerate, 1) > MAX_SECONDS:
            raise AudioFileError(
                f"{path.name} is {info.frames / info.samplerate / 3600:.1f} hours long; the "
                f"limit is {MAX_SECONDS // 3600} hours.", code="audio_file_too_long")
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except sf.LibsndfileError as err:
        if shutil.which("ffmpeg"):  # formats libsndfile lacks may still decode
            return _ffmpeg(path)
        raise AudioFileError(
            f"{path.name} is not a readable audio file ({err.error_string}).",
            hint="Use WAV, FLAC or OGG; MP3/M4A need ffmpeg installed.",
        ) from err
    return audio, rate


def _ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioFileError(
            f"Reading {path.suffix} files needs ffmpeg, which is not installed.",
            hint="sudo apt-get install ffmpeg  (or convert the file to WAV/FLAC)",
            code="ffmpeg_missing")
    command = [ffmpeg, "-nostdin", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1",
               "-ar", "16000", "-"]
    result = subprocess.run(command, capture_output=True, timeout=600)
    if result.returncode != 0:
        reason = result.stderr.decode(errors="replace").strip().splitlines()
        raise AudioFileError(f"{path.name} could not be decoded"
                             f"{': ' + reason[-1] if reason else ''}.")
    return np.frombuffer(result.stdout, dtype=np.float32).reshape(-1, 1), 16000
