"""Whether a persona's weights are on this computer, and how much disk the models use.

Answers from the file system alone: no torch, no transformers, no network, so the GUI can ask
on startup (first-run page) and whenever a list is drawn. Loading may still fail on a corrupt
file; that is the loader's business.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from engine import paths
from engine.models.persona import Persona

# Files that hold a checkpoint's tensors. training_args.bin is a pickled config, not weights.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")
_NOT_WEIGHTS = {"training_args.bin"}


def weights_present(persona: Persona) -> bool:
    """Whether ``persona``'s weights are on disk (its folder, the Hub cache or its package)."""
    weights = persona.weights
    if weights.source == "package":
        folder = package_folder(weights.package or "")
    elif weights.source == "hub":
        folder = hub_snapshot(weights.repo_id or "", weights.revision)
    else:
        folder = persona.folder
    if folder is None:
        return False
    if weights.gguf_file:
        return (folder / weights.gguf_file).is_file()
    if (folder / "adapter_config.json").is_file():
        return has_weights(folder) and _base_present(persona)
    return has_weights(folder)


def persona_status(persona: Persona) -> tuple[bool, str]:
    """(ready, in words): the one answer to "can this persona load without a download?".

    Read from the file system only (no model is loaded); the command line's `models list` and
    the window's Models dialog both show it.
    """
    if weights_present(persona):
        return True, "ready"
    weights = persona.weights
    if weights.source == "package":
        return False, f"package {weights.package} missing"
    if weights.source == "hub":
        return False, "files missing: pull again"
    return False, "no weights in its folder"


def any_persona_ready() -> bool:
    """Whether at least one installed persona can be loaded without a download."""
    from engine.models.registry import list_personas

    personas, _errors = list_personas()
    return any(weights_present(persona) for persona in personas)


def package_folder(package: str) -> Path | None:
    """The folder of an installed Python package, found without importing it."""
    if not package:
        return None
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def hub_snapshot(repo_id: str, revision: str | None = None) -> Path | None:
    """The cached snapshot folder of a Hub repo that holds a config.json; None if not cached.

    With no ``revision`` any cached snapshot will do: a pull by commit records no "main" ref.
    """
    if not repo_id:
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    if isinstance(found, str):
        return Path(found).parent
    if revision is not None:
        return None
    snapshots = hub_cache_folder(repo_id) / "snapshots"
    candidates = [s for s in snapshots.glob("*") if (s / "config.json").is_file()]
    return max(candidates, key=lambda s: s.stat().st_mtime) if candidates else None


def hub_cache_folder(repo_id: str) -> Path:
    """Where the Hub cache keeps ``repo_id`` (it may not exist)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"


def has_weights(folder: Path) -> bool:
    """Whether ``folder`` holds model weight files (safetensors, bin or gguf)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return False
    return any(n.endswith(_WEIGHT_SUFFIXES) and n not in _NOT_WEIGHTS for n in names)


def _base_present(persona: Persona) -> bool:
    """An adapter's base model: a folder (relative to the persona) or a cached Hub repo."""
    base = Path(persona.base_model).expanduser()
    if not base.is_absolute():
        base = persona.folder / base
    if base.is_dir():
        return has_weights(base)
    snapshot = hub_snapshot(persona.base_model)
    return snapshot is not None and has_weights(snapshot)


@dataclass(frozen=True)
class DiskUsage:
    """Bytes the app's models take, by place."""

    personas: int  # the user's personas folder (added and trained checkpoints)
    converted: int  # the app's cache of converted models (GGUF made into safetensors)
    hub: int  # Hugging Face cache entries of the catalogue's repos (pulled models, voices and
    # Whisper sizes)

    @property
    def total(self) -> int:
        """All of it."""
        return self.personas + self.converted + self.hub


def disk_usage() -> DiskUsage:
    """Bytes used now; hard-linked or symlinked files are counted once."""
    from engine.models.catalogue import (
        CLONING_REPO,
        PLAIN_REPO,
        asr_catalogue,
        catalogue,
        tts_catalogue,
    )

    repos = {e.repo_id or e.base_model for e in catalogue() + asr_catalogue()}
    if tts_catalogue():
        repos |= {CLONING_REPO, PLAIN_REPO}
    return DiskUsage(
        personas=_unique_size([paths.personas_dir()]),
        converted=_unique_size([paths.cache_dir()]),
        hub=_unique_size([hub_cache_folder(r) for r in sorted(r for r in repos if r)]),
    )


def _unique_size(roots: list[Path]) -> int:
    """Bytes of the files under ``roots``, each file once.

    The Hub cache links each snapshot file to a blob; counting by inode counts it once.
    """
    seen: set[tuple[int, int]] = set()
    total = 0
    for root in roots:
        for folder, _dirs, files in os.walk(root):
            for name in files:
                try:
                    stat = (Path(folder) / name).stat()
                except OSError:  # a dangling link or a file removed meanwhile
                    continue
                if (stat.st_dev, stat.st_ino) not in seen:
                    seen.add((stat.st_dev, stat.st_ino))
                    total += stat.st_size
    return total
