"""Importing Kyutai's ``pocket-tts`` runtime on the app's terms, and what a model needs on disk.

Importing ``pocket_tts`` calls ``torch.set_num_threads(1)`` for the whole process, which would
also slow the chat model and Whisper; :func:`runtime` imports it once and puts the thread count
back. Its configs name their files as ``hf://owner/repo/path@revision``; :class:`HubFile` and
:func:`model_files` turn them into files the app's model manager pulls and the loader finds in
the Hub cache, so the runtime never downloads anything by itself.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from engine.errors import MissingDependencyError
from engine.models.catalogue import PLAIN_REPO

# Built-in voices the runtime documents for English (states precomputed per model by Kyutai,
# in the repo without voice cloning). The runtime knows more names; these eight are the ones
# its documentation lists and the ones a pull fetches.
DEFAULT_BUILTIN = "alba"  # the runtime's own default speaker: speaks when no voice is chosen
BUILTIN_VOICES = ("alba", "marius", "javert", "jean", "fantine", "cosette", "eponine", "azelma")


@functools.lru_cache(maxsize=1)
def runtime() -> ModuleType:
    """The ``pocket_tts`` package, imported without changing the process's torch threads.

    Raises:
        MissingDependencyError: pocket-tts is not installed.

    """
    import torch

    threads = torch.get_num_threads()
    try:
        import pocket_tts
        from pocket_tts.utils import config as _config  # noqa: F401  (used through the package)
    except ImportError as err:
        raise MissingDependencyError("The voice runtime pocket-tts is not installed.",
                                     hint='pip install "pocket-tts>=4,<5"') from err
    finally:
        torch.set_num_threads(threads)
    # Its per-sentence timing lines are debug detail; problems reach us as exceptions.
    logging.getLogger("pocket_tts").addHandler(logging.NullHandler())
    logging.getLogger("pocket_tts").propagate = False
    return pocket_tts


@dataclass(frozen=True)
class HubFile:
    """One file of a Hub repo, pinned to a revision."""

    repo_id: str
    filename: str
    revision: str | None = None

    @classmethod
    def parse(cls, ref: str) -> HubFile:
        """From the runtime's ``hf://owner/repo/path/in/repo@revision`` notation."""
        rest, _, revision = ref.removeprefix("hf://").partition("@")
        owner, repo, filename = rest.split("/", 2)
        return cls(f"{owner}/{repo}", filename, revision or None)

    def local(self) -> Path | None:
        """The file in the Hub cache, or None when it has not been pulled (never fetches)."""
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(self.repo_id, self.filename, revision=self.revision)
        return Path(found) if isinstance(found, str) else None

    @property
    def page(self) -> str:
        """The repo's page on the Hub, where its terms are accepted."""
        return f"https://huggingface.co/{self.repo_id}"


@dataclass(frozen=True)
class ModelFiles:
    """What one pocket-tts model needs from the Hub: weights (with or without cloning), tokenizer.

    Read from the config YAML alone (no torch, no runtime import), so listing models is cheap.
    """

    config: dict[str, Any]  # the config YAML, as parsed
    config_path: Path
    cloning: HubFile | None  # weights that can clone a voice (gated)
    plain: HubFile | None  # weights without voice cloning (open), for the built-in voices
    tokenizer: HubFile

    @property
    def name(self) -> str:
        """The config's name, e.g. ``english_7m_2026-10``."""
        return self.config_path.stem

    def ready(self) -> bool:
        """Whether weights (either kind), the tokenizer and the default voice are cached."""
        weights = [f for f in (self.cloning, self.plain) if f is not None]
        return (self.tokenizer.local() is not None and any(f.local() for f in weights)
                and DEFAULT_BUILTIN in pulled_builtin_voices(str(self.config_path)))

    def can_clone(self) -> bool:
        """Whether the (gated) cloning weights are in the Hub cache."""
        return self.cloning is not None and self.cloning.local() is not None

    def builtin_voices(self) -> dict[str, HubFile]:
        """The built-in voices' state files for this model, by name (imports the runtime)."""
        runtime()
        from pocket_tts.utils.utils import get_predefined_voice

        # The runtime's own address for a built-in voice of a model (its config's name).
        return {name: HubFile.parse(get_predefined_voice(self.name, name))
                for name in BUILTIN_VOICES}


def pulled_builtin_voices(config: str) -> list[str]:
    """Names of the built-in voices of ``config`` in the Hub cache (no runtime import).

    For voice lists on the GUI thread; loading finds the exact files through the runtime.
    """
    from huggingface_hub import constants

    owner, repo = PLAIN_REPO.split("/")
    snapshots = Path(constants.HF_HUB_CACHE) / f"models--{owner}--{repo}" / "snapshots"
    stem = Path(config).stem
    found = {p.stem for p in snapshots.glob(f"*/languages/{stem}/embeddings/*.safetensors")}
    return [name for name in BUILTIN_VOICES if name in found]


def config_path(config: str) -> Path:
    """A packaged config by name (``english_7m_2026-10``), or a YAML file's path.

    Raises:
        MissingDependencyError: pocket-tts is not installed.

    """
    path = Path(config).expanduser()
    if path.suffix in (".yaml", ".yml"):
        return path
    spec = importlib.util.find_spec("pocket_tts")  # finds the package without importing it
    if spec is None or spec.origin is None:
        raise MissingDependencyError("The voice runtime pocket-tts is not installed.",
                                     hint='pip install "pocket-tts>=4,<5"')
    return Path(spec.origin).parent / "config" / f"{config}.yaml"


def model_files(config: str) -> ModelFiles:
    """Read a pocket-tts config and list the Hub files its model needs.

    Raises:
        MissingDependencyError: pocket-tts is not installed.
        FileNotFoundError: no such config.
        ValueError: the config is not a pocket-tts config.

    """
    import yaml

    path = config_path(config)
    if not path.is_file():
        raise FileNotFoundError(f"No pocket-tts config {config!r}")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    try:
        tokenizer = HubFile.parse(data["flow_lm"]["lookup_table"]["tokenizer_path"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path.name} names no tokenizer") from err
    cloning, plain = data.get("weights_path"), data.get("weights_path_without_voice_cloning")
    return ModelFiles(data, path, HubFile.parse(cloning) if cloning else None,
                      HubFile.parse(plain) if plain else None, tokenizer)


def voice_model_ready(entry: Any) -> bool:
    """Whether the catalogue voice model ``entry`` is pulled (weights and tokenizer cached)."""
    return voice_model_status(entry) != "not downloaded"


def voice_model_status(entry: Any) -> str:
    """"ready", "ready, built-in voices only" (no cloning weights) or "not downloaded"."""
    try:
        files = model_files(entry.config or "")
        if not files.ready():
            return "not downloaded"
        return "ready" if files.can_clone() else "ready, built-in voices only"
    except (MissingDependencyError, FileNotFoundError, ValueError):
        return "not downloaded"
