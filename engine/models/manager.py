"""Getting persona weights onto disk and off it: pull, add a local folder, remove, sizes.

Pulls go through ``huggingface_hub`` (its cache, its tqdm progress bars, resumable downloads,
``HF_HUB_OFFLINE``). A pulled persona is a folder holding only ``persona.json`` that points at
the cached repo, so two personas on one base share the download.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine import paths
from engine.errors import ModelNotAvailableError, PersonaError
from engine.fsutil import atomic_folder, slug
from engine.models.catalogue import CatalogueEntry, catalogue_entry, default_decoding
from engine.models.persona import PERSONA_FILE, Persona, load_persona
from engine.net import is_network_error

# What a chat persona needs from a Hub repo; everything else (TF/Flax/ONNX weights) is skipped.
_CONFIG_PATTERNS = ["*.json", "*.txt", "*.model", "*.tiktoken", "*.jinja"]


def _offline_error(entry: CatalogueEntry, err: Exception) -> ModelNotAvailableError:
    offline_flag = " and unset HF_HUB_OFFLINE" if os.environ.get("HF_HUB_OFFLINE") else ""
    return ModelNotAvailableError(
        f"Cannot download {entry.name}: the Hugging Face Hub is not reachable ({_brief(err)}).",
        hint=(
            f"Connect to the internet{offline_flag}, run "
            f"`talk-to-transformers models pull {entry.id}` again, or copy a checkpoint here "
            "and add it with `talk-to-transformers models add FOLDER`."
        ),
    )


def _brief(err: Exception) -> str:
    from huggingface_hub import errors as hub_errors

    if isinstance(err, hub_errors.OfflineModeIsEnabled):
        return "offline mode is on: HF_HUB_OFFLINE is set"
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:160]


def pull(ref: str, *, progress: Callable[[str], None] = print) -> Persona | None:
    """Download the catalogue persona (or voice model) ``ref`` into the Hub cache.

    A persona is registered and returned; a voice model returns None.

    Raises:
        PersonaError: ``ref`` is not a pullable catalogue entry.
        ModelNotAvailableError: the Hub cannot be reached or the repo does not exist.

    """
    entry = catalogue_entry(ref)
    if entry is None:
        raise PersonaError(f"{ref!r} is not in the catalogue.",
                           hint="See: talk-to-transformers models list", code="persona_not_found")
    if entry.kind not in ("hub", "tts") or not entry.repo_id:
        raise PersonaError(f"{entry.name} is {entry.kind}, not downloadable.",
                           code="persona_not_pullable")
    import huggingface_hub
    from huggingface_hub import errors as hub_errors

    try:
        info = huggingface_hub.HfApi().model_info(entry.repo_id)
        files = [s.rfilename for s in info.siblings or []]
        # Prefer safetensors; fall back to PyTorch .bin (loaded with weights_only by transformers).
        weights = ["*.safetensors"] if any(f.endswith(".safetensors") for f in files) else ["*.bin"]
        if entry.kind == "tts":  # the codec lives in a subfolder: take the whole tree
            weights = [f"*/{p}" for p in _CONFIG_PATTERNS + weights] + weights
        progress(f"Downloading {entry.name} ({entry.repo_id}, about {entry.size_mb} MB)...")
        folder = huggingface_hub.snapshot_download(
            entry.repo_id, revision=info.sha, allow_patterns=_CONFIG_PATTERNS + weights
        )
    except (hub_errors.RepositoryNotFoundError, hub_errors.RevisionNotFoundError) as err:
        raise ModelNotAvailableError(f"The Hub has no repository {entry.repo_id}.") from err
    except (hub_errors.OfflineModeIsEnabled, hub_errors.LocalEntryNotFoundError, OSError) as err:
        raise _offline_error(entry, err) from err
    except Exception as err:
        if is_network_error(err):
            raise _offline_error(entry, err) from err
        raise
    if entry.kind == "tts":
        progress(f"Downloaded to the Hugging Face cache: {folder}")
        return None
    persona_json = {
        "schema_version": 1,
        "name": entry.name,
        "description": entry.description,
        "base_model": entry.repo_id,
        "prompt_format": "dialogpt" if "dialogpt" in entry.repo_id.lower() else "chat_template",
        "weights": {"source": "hub", "repo_id": entry.repo_id, "revision": info.sha},
        "decoding": default_decoding("dialogpt"),
    }
    progress(f"Downloaded to the Hugging Face cache: {folder}")
    return _install_folder(entry.id, persona_json, source=None)


def add_folder(folder: str | Path, *, name: str | None = None) -> Persona:
    """Copy a persona folder, or a bare transformers checkpoint, into the user's personas."""
    src = Path(folder).expanduser().resolve()
    if not src.is_dir():
        raise PersonaError(f"{src} is not a folder.", code="persona_not_found")
    if (src / PERSONA_FILE).is_file():
        load_persona(src)  # validate before copying anything
        data = json.loads((src / PERSONA_FILE).read_text(encoding="utf-8"))
        if name:
            data["name"] = name
    else:
        if not (src / "config.json").is_file():
            raise PersonaError(
                f"{src.name} has neither persona.json nor a transformers config.json.",
                hint="Point at a folder made by save_pretrained(), or at a persona folder.",
            )
        has_template = _has_chat_template(src)
        fmt = "chat_template" if has_template else "dialogpt"
        data = {
            "schema_version": 1,
            "name": name or src.name,
            "base_model": src.name,
            "prompt_format": fmt,
            "decoding": default_decoding(fmt),
        }
    persona_id = slug(data["name"]) or "persona"
    return _install_folder(persona_id, data, source=src)


def _has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file():
        return True
    config = folder / "tokenizer_config.json"
    if config.is_file():
        try:
            return bool(json.loads(config.read_text(encoding="utf-8")).get("chat_template"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return False
    return False


def _install_folder(persona_id: str, data: dict[str, Any], source: Path | None) -> Persona:
    """Write the persona atomically: build it in a temporary folder, then rename into place.

    A crash half-way leaves only a hidden temporary folder, never a half persona.
    """
    root = paths.personas_dir()
    target = root / persona_id
    if target.exists():
        raise PersonaError(
            f"A persona called {persona_id!r} already exists.",
            hint=f"Remove it first: talk-to-transformers models remove {persona_id}",
            code="persona_exists",
        )
    with atomic_folder(target) as tmp:
        if source is not None:
            shutil.copytree(source, tmp, dirs_exist_ok=True)
        (tmp / PERSONA_FILE).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        load_persona(tmp)  # never publish something that does not load
    return load_persona(target)


def remove(ref: str, *, purge_cache: bool = False) -> Path:
    """Delete a user persona folder (bundled ones cannot be removed); optionally its Hub cache."""
    target = paths.personas_dir() / ref
    if not (target / PERSONA_FILE).is_file():
        if (paths.resources_dir() / "personas" / ref).is_dir():
            raise PersonaError(f"{ref!r} ships with the app and cannot be removed.",
                               code="persona_builtin")
        raise PersonaError(f"No installed persona called {ref!r}.", code="persona_not_found")
    persona = load_persona(target)
    shutil.rmtree(target)
    if purge_cache and persona.weights.source == "hub":
        _purge_hub_cache(persona.weights.repo_id or "")
    return target


def _purge_hub_cache(repo_id: str) -> None:
    import huggingface_hub

    cache = huggingface_hub.scan_cache_dir()
    revisions = [rev.commit_hash for repo in cache.repos if repo.repo_id == repo_id
                 for rev in repo.revisions]
    if revisions:
        cache.delete_revisions(*revisions).execute()


def folder_size(path: Path) -> int:
    """Bytes used by the files under ``path`` (links followed once)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:
                pass
    return total
