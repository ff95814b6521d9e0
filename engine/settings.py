"""The user's settings: one JSON file, read forgivingly, written atomically.

A damaged or unreadable file never stops the app: the defaults are used and the problem is
reported once (the caller shows it). A field with the wrong type falls back to its default on its
own, so one bad value does not throw away the rest. Secrets are not settings: the Hugging Face
token lives in the OS keyring (``engine.secrets``) and is never written here.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from engine import paths
from engine.chat.openai_api import API_CHOICES as REMOTE_APIS
from engine.errors import ConfigError
from engine.fsutil import atomic_write_text
from engine.models.device import DEVICE_SETTINGS

SCHEMA_VERSION = 3
ASR_BACKENDS = ("faster-whisper", "whisper")
CHAT_BACKENDS = ("local", "remote")


@dataclass(frozen=True)
class Settings:
    """Everything a person can change in the settings dialog."""

    persona: str = "starter"  # persona id (folder name) the app opens with
    voice: str | None = None  # enrolled voice that speaks replies; None: the model's own voice
    input_device: str | None = None  # microphone name; None: the system default
    output_device: str | None = None  # speaker name; None: the system default
    asr_backend: str = "faster-whisper"  # one of ASR_BACKENDS
    # "auto" (the catalogue's default for the device: bundled tiny.en on a CPU, a larger size
    # on a GPU once pulled), "bundled", or a Whisper size from the catalogue ("small.en")
    asr_model: str = "auto"
    language: str = "en"  # "auto" lets Whisper detect it
    chat_backend: str = "local"  # "local" runs the persona here; "remote" calls remote_url
    remote_url: str = ""  # inference server URL for the remote backend (vLLM, TGI, ...)
    remote_api: str = "auto"  # one of REMOTE_APIS: auto asks the server; openai or tgi
    remote_model: str = ""  # model name to ask the server for; "": the server's first
    device: str = "auto"  # where local models run: auto (CUDA when present), cuda, cpu
    speak_replies: bool = True  # synthesise replies (when the voice model is pulled)
    tts_model: str = "auto"  # voice model: a catalogue id, or auto (the device's default)
    sensitivity: int = 2  # hands-free voice detector strictness, 0 (lenient) to 3 (strict)
    hands_free: bool = False  # start in hands-free mode

    def problems(self) -> list[str]:
        """What is wrong with these values, as sentences (empty when all is well)."""
        return list(self.field_problems().values())

    def field_problems(self) -> dict[str, str]:
        """The same problems keyed by the field at fault (a form focuses it, ``load`` resets it).

        A remote backend without a usable URL is the backend's fault: reset, it falls back to
        local and the URL text stays for the next edit.
        """
        found = {}
        if self.asr_backend not in ASR_BACKENDS:
            found["asr_backend"] = f"speech recognition backend {self.asr_backend!r} is unknown"
        if not self.language.strip():
            found["language"] = "the language is empty (auto lets Whisper detect it)"
        if self.device not in DEVICE_SETTINGS:
            found["device"] = f"device {self.device!r} is not one of {', '.join(DEVICE_SETTINGS)}"
        if self.chat_backend not in CHAT_BACKENDS:
            found["chat_backend"] = f"chat backend {self.chat_backend!r} is not local or remote"
        elif self.chat_backend == "remote" and not self.remote_url.startswith(("http://",
                                                                               "https://")):
            found["chat_backend"] = ("the remote backend needs a URL starting with http:// or "
                                     "https://")
        if self.remote_api not in REMOTE_APIS:
            found["remote_api"] = (f"server API {self.remote_api!r} is not one of "
                                   f"{', '.join(REMOTE_APIS)}")
        if self.remote_model != self.remote_model.strip():
            found["remote_model"] = "the server's model name has spaces around it"
        if self.tts_model != "auto":
            from engine.models.catalogue import tts_catalogue

            ids = [entry.id for entry in tts_catalogue()]
            if self.tts_model not in ids:
                found["tts_model"] = (f"voice model {self.tts_model!r} is not one of auto, "
                                      + ", ".join(ids))
        if not 0 <= self.sensitivity <= 3:
            found["sensitivity"] = f"sensitivity {self.sensitivity} is outside 0-3"
        return found

    def validated(self) -> Settings:
        """Self, if valid.

        Raises:
            ConfigError: naming every problem.

        """
        problems = self.problems()
        if problems:
            raise ConfigError("Settings not saved: " + "; ".join(problems) + ".",
                              code="settings_invalid")
        return self

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


def _types() -> dict[str, tuple[type, ...]]:
    allowed: dict[str, tuple[type, ...]] = {}
    for f in fields(Settings):
        text = str(f.type)
        kinds: tuple[type, ...] = (bool,) if text == "bool" else (
            (int,) if text == "int" else (str,))
        allowed[f.name] = kinds + ((type(None),) if "None" in text else ())
    return allowed


def _migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Bring an older file's keys up to date.

    Version 1 called the persona ``last_persona``. Up to version 2, "bundled" was the speech
    model's default and the only one that worked without a manual download, so every file
    holds it; it becomes "auto" (still the bundled model, except on CUDA once a larger size is
    pulled), or those users would never get the GPU default.
    """
    version = data.get("schema_version", 1)
    if version < 2 and "last_persona" in data:
        data.setdefault("persona", data.pop("last_persona"))
    if version < 3 and data.get("asr_model") == "bundled":
        data["asr_model"] = "auto"
    return data


def load(path: Path | None = None) -> tuple[Settings, str | None]:
    """The saved settings and a warning for the person (None when the file was fine).

    A missing file is the first run: defaults, no warning.
    """
    path = path or paths.settings_file()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Settings(), None
    except (OSError, UnicodeDecodeError) as err:
        return Settings(), f"Could not read the settings file ({err}); using the defaults."
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        return Settings(), (f"The settings file is damaged (line {err.lineno}: {err.msg}); "
                            "using the defaults. Saving settings will replace it.")
    if not isinstance(data, dict):
        return Settings(), "The settings file does not hold settings; using the defaults."
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        return Settings(), (f"The settings file has an unknown version ({version!r}); "
                            "using the defaults. Saving settings will replace it.")
    if version > SCHEMA_VERSION:
        return Settings(), ("The settings file was written by a newer version of the app; "
                            "using the defaults for this run.")
    data = _migrate(data)
    # Any, not object: each value's type was checked against its field's at run time below.
    values: dict[str, Any] = {}
    bad: list[str] = []
    for name, kinds in _types().items():
        if name not in data:
            continue
        value = data[name]
        # True is an int in Python: a bool is only right where a bool is expected.
        if isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool)):
            values[name] = value
        else:
            bad.append(f"{name} ({value!r} is the wrong type)")
    # Well-typed but invalid values (an unknown device, sensitivity 9): reset just those fields.
    invalid = Settings(**values).field_problems()
    for name, problem in invalid.items():
        values.pop(name, None)
        bad.append(f"{name} ({problem})")
    warning = (f"Some settings were unusable and were reset to their defaults: "
               f"{'; '.join(bad)}." if bad else None)
    return Settings(**values), warning


def save(settings: Settings, path: Path | None = None) -> None:
    """Write the settings atomically (a crash leaves the old file or the new one, not half).

    Raises:
        ConfigError: invalid values, or the file cannot be written.

    """
    settings.validated()
    path = path or paths.settings_file()
    data = {"schema_version": SCHEMA_VERSION, **dataclasses.asdict(settings)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    except OSError as err:
        raise ConfigError(f"Could not save the settings to {path}: {err.strerror or err}.",
                          hint=f"Check that {path} can be written (a file, not a folder) "
                               "and that the disk is not full.",
                          code="settings_write_failed") from err
