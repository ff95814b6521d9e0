"""Getting persona weights onto disk and off it: pull, add a local folder, remove, sizes.

Pulls go through ``huggingface_hub`` (its cache, its tqdm progress bars, resumable downloads,
``HF_HUB_OFFLINE``). A pulled persona is a folder holding only ``persona.json`` that points at
the cached repo, so two personas on one base share the download. A pull reports bytes and can be
cancelled through a progress-bar class handed to ``snapshot_download`` (see ``_ByteProgress``).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from engine import paths
from engine.errors import ModelNotAvailableError, PersonaError
from engine.fsutil import atomic_folder, slug
from engine.models.catalogue import CatalogueEntry, catalogue_entry, default_decoding
from engine.models.persona import PERSONA_FILE, Persona, load_persona
from engine.net import is_network_error

if TYPE_CHECKING:
    from engine.install.voice_pull import VoicePull

# What a chat persona needs from a Hub repo; everything else (TF/Flax/ONNX weights) is skipped.
_CONFIG_PATTERNS = ["*.json", "*.txt", "*.model", "*.tiktoken", "*.jinja"]
# huggingface_hub reads each HTTP download in DOWNLOAD_CHUNK_SIZE pieces (10 MB) and reports, and
# so can be cancelled, only between pieces; 1 MB pieces keep a bar moving and a cancel prompt on a
# slow line. Xet-stored files report through hf_xet instead and are not affected.
_CHUNK_BYTES = 1024 * 1024
_REPORT_EVERY_S = 0.1  # at most ten byte reports a second; the last one is always sent


class Cancellable(Protocol):
    """What a pull reads of its cancel token (``engine.chat.types.CancelToken`` has it).

    A protocol, so that models do not import the chat package, which imports them.
    """

    @property
    def cancelled(self) -> bool:
        """Whether the person asked the pull to stop."""


class PullCancelled(ModelNotAvailableError):
    """The person cancelled a pull; nothing was registered."""

    code = "cancelled"


def _offline_error(entry: CatalogueEntry, err: Exception) -> ModelNotAvailableError:
    offline_flag = " and unset HF_HUB_OFFLINE" if os.environ.get("HF_HUB_OFFLINE") else ""
    # A Whisper size is not a persona: its copied folder is used where it is, not added.
    elsewhere = ("copy its CTranslate2 folder here and use it with `--model FOLDER`"
                 if entry.kind == "asr" else
                 "copy a checkpoint here and add it with `talk-to-transformers models add FOLDER`")
    return ModelNotAvailableError(
        f"Cannot download {entry.name}: the Hugging Face Hub is not reachable ({_brief(err)}).",
        hint=(
            f"Connect to the internet{offline_flag}, run "
            f"`talk-to-transformers models pull {entry.id}` again, or {elsewhere}."
        ),
        code="hub_unreachable",
    )


def _cancelled(entry: CatalogueEntry) -> PullCancelled:
    return PullCancelled(
        f"Download of {entry.name} cancelled.",
        hint="Files that finished downloading are kept, so pulling again continues from there.",
    )


class _ByteProgress:
    """Adds up the byte progress bars huggingface_hub opens in one ``snapshot_download``.

    huggingface_hub 2.x opens, through ``tqdm_class``, a file-count bar and two byte bars for the
    whole snapshot: one for bytes written (named ``huggingface_hub.snapshot_download``) and one
    for network bytes (``....transfer``), whose ``total`` grows as each file starts. Other
    versions open a byte bar per file. Bytes-written bars are summed; ``.transfer`` bars would
    count the same bytes twice and are skipped. Every ``update`` checks the cancel token and
    raises there, which unwinds the download threads.
    """

    def __init__(self, entry: CatalogueEntry, on_bytes: Callable[[int, int | None], None] | None,
                 cancel: Cancellable | None, expected_total: int | None):
        self.entry, self.on_bytes, self.cancel = entry, on_bytes, cancel
        self.expected_total = expected_total  # from the file sizes, when the Hub gave them
        self.lock = threading.Lock()
        self.bars: list[Any] = []
        self.last_report = 0.0

    def check(self) -> None:
        """Raise PullCancelled if the person cancelled."""
        if self.cancel is not None and self.cancel.cancelled:
            raise _cancelled(self.entry)

    def totals(self) -> tuple[int, int | None]:
        """Bytes done, and the total so far (None while unknown)."""
        with self.lock:
            done = sum(bar.counted for bar in self.bars)
            total = sum(int(bar.total or 0) for bar in self.bars)
        total = max(total, self.expected_total or 0, done)
        return done, total or None

    def added(self, bar: Any, n: int) -> None:
        with self.lock:
            bar.counted += n
        self.report(force=False)

    def report(self, force: bool) -> None:
        """Send the totals to ``on_bytes``; throttled unless ``force`` or complete."""
        if self.on_bytes is None:
            return
        done, total = self.totals()
        now = time.monotonic()
        if force or (total and done >= total) or now - self.last_report >= _REPORT_EVERY_S:
            self.last_report = now
            self.on_bytes(done, total)

    def tqdm_class(self) -> type:
        """A tqdm class bound to this pull (huggingface_hub instantiates it itself)."""
        from huggingface_hub.utils import tqdm as hub_tqdm

        progress = self

        class Bar(hub_tqdm):
            # tqdm starts a monitor thread per bar class, and a class per pull would leave one
            # behind each time; it only matters for bars drawn on a terminal.
            monitor_interval = 0

            def __init__(self, *args: Any, **kwargs: Any):
                name = kwargs.get("name") or ""
                self.counts_bytes = kwargs.get("unit") == "B" and not name.endswith(".transfer")
                self.counted = int(kwargs.get("initial") or 0)
                # Keeps huggingface_hub's own behaviour: shown on a terminal, hidden otherwise
                # (a disabled tqdm stops counting, hence ``counted``).
                super().__init__(*args, **kwargs)
                if self.counts_bytes:
                    with progress.lock:
                        progress.bars.append(self)

            def update(self, n: float | None = 1) -> bool | None:
                progress.check()
                if self.counts_bytes:
                    progress.added(self, int(n or 0))
                return super().update(n)

        return Bar


def _brief(err: Exception) -> str:
    from huggingface_hub import errors as hub_errors

    if isinstance(err, hub_errors.OfflineModeIsEnabled):
        return "offline mode is on: HF_HUB_OFFLINE is set"
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:160]


def pull(ref: str, *, progress: Callable[[str], None] = print,
         on_bytes: Callable[[int, int | None], None] | None = None,
         cancel: Cancellable | None = None) -> Persona | VoicePull:
    """Download the catalogue persona (or voice model) ``ref`` into the Hub cache.

    A persona is registered and returned; a voice model returns what it got (VoicePull).

    Args:
        ref: A catalogue id, name or repo id.
        progress: Receives a line of text at each stage.
        on_bytes: Receives ``(bytes done, bytes in all or None)`` as the download advances, a
            few times a second at most, and once more at the end.
        cancel: When cancelled, the download stops at its next piece and PullCancelled is raised;
            nothing is registered. Completed files stay in the Hub cache for the next pull.

    Raises:
        PersonaError: ``ref`` is not a pullable catalogue entry.
        ModelNotAvailableError: the Hub cannot be reached (code ``hub_unreachable``), the repo
            does not exist, or it is gated (code ``gated``; a voice model then falls back to
            its open weights instead).
        PullCancelled: ``cancel`` was cancelled (code ``cancelled``).

    """
    entry = catalogue_entry(ref)
    if entry is None:
        raise PersonaError(f"{ref!r} is not in the catalogue.",
                           hint="See: talk-to-transformers models list", code="persona_not_found")
    if entry.kind == "tts" and entry.config:
        return _pull_voice_model(entry, progress, on_bytes, cancel)
    if entry.kind != "hub" or not entry.repo_id:
        raise PersonaError(f"{entry.name} is {entry.kind}, not downloadable.",
                           code="persona_not_pullable")

    def patterns(files: list[str]) -> list[str]:
        # Prefer safetensors; fall back to PyTorch .bin (loaded with weights_only by
        # transformers).
        safetensors = any(f.endswith(".safetensors") for f in files)
        return _CONFIG_PATTERNS + (["*.safetensors"] if safetensors else ["*.bin"])

    folder, revision = download_snapshot(entry, patterns, progress=progress, on_bytes=on_bytes,
                                         cancel=cancel)
    persona_json = {
        "schema_version": 1,
        "name": entry.name,
        "description": entry.description,
        "base_model": entry.repo_id,
        "prompt_format": "dialogpt" if "dialogpt" in entry.repo_id.lower() else "chat_template",
        # The commit, so the persona stays on what was pulled.
        "weights": {"source": "hub", "repo_id": entry.repo_id, "revision": revision},
        "decoding": default_decoding("dialogpt"),
    }
    progress(f"Downloaded to the Hugging Face cache: {folder}")
    return _install_folder(entry.id, persona_json, source=None)


def download_snapshot(entry: CatalogueEntry, patterns: Callable[[list[str]], list[str]], *,
                      progress: Callable[[str], None],
                      on_bytes: Callable[[int, int | None], None] | None,
                      cancel: Cancellable | None) -> tuple[Path, str]:
    """Download the files of ``entry.repo_id`` that ``patterns`` picks into the Hub cache.

    The one download path of catalogue repos (personas, Whisper sizes): bytes reported to
    ``on_bytes``, ``cancel`` checked at every piece, the Hub library's failures turned into
    errors that say what to do (see :func:`pull`).

    Args:
        entry: A catalogue entry with a ``repo_id``.
        patterns: Given the repo's file names, the ``allow_patterns`` to download.
        progress: Receives a line of text at each stage.
        on_bytes: Receives ``(bytes done, bytes in all or None)``.
        cancel: When cancelled, PullCancelled is raised at the next piece.

    Returns:
        The snapshot folder, and the commit it holds (pinned: a later push to the repo does not
        change what was pulled).

    """
    import huggingface_hub
    from huggingface_hub import constants as hub_constants

    from engine.secrets import hf_token

    repo_id = entry.repo_id or ""
    bytes_progress = _ByteProgress(entry, on_bytes, cancel, None)
    bytes_progress.check()
    token = hf_token()  # keyring, then HF_TOKEN (gated models); None: the Hub library's own login
    with _hub_errors(entry):
        info = huggingface_hub.HfApi(token=token).model_info(repo_id, files_metadata=True)
        chosen = patterns([s.rfilename for s in info.siblings or []])
        bytes_progress.expected_total = _bytes_to_fetch(repo_id, info, chosen)
        progress(f"Downloading {entry.name} ({repo_id}, about {entry.size_mb} MB)...")
        bytes_progress.check()
        hub_constants.DOWNLOAD_CHUNK_SIZE = min(hub_constants.DOWNLOAD_CHUNK_SIZE, _CHUNK_BYTES)
        folder = huggingface_hub.snapshot_download(
            repo_id, revision=info.sha, allow_patterns=chosen,
            tqdm_class=bytes_progress.tqdm_class(), token=token,
        )
    bytes_progress.check()  # a cancel that came with the last byte still wins
    bytes_progress.report(force=True)
    return Path(folder), str(info.sha)


@contextmanager
def _hub_errors(entry: CatalogueEntry) -> Iterator[None]:
    """Turn the Hub library's failures into errors that say what to do."""
    from huggingface_hub import errors as hub_errors

    try:
        yield
    except PullCancelled:
        raise
    except hub_errors.GatedRepoError as err:
        raise ModelNotAvailableError(
            f"{entry.name} is gated on the Hub: its terms must be accepted first "
            f"({_brief(err)}).",
            hint="Accept the terms on the model's Hub page, then save your Hugging Face token "
                 "(Settings, or `talk-to-transformers token set`) and pull again.",
            code="gated") from err
    except (hub_errors.OfflineModeIsEnabled, hub_errors.LocalEntryNotFoundError) as err:
        # (before EntryNotFoundError: "not in the cache and no network" is one of those)
        raise _offline_error(entry, err) from err
    except (hub_errors.RepositoryNotFoundError, hub_errors.RevisionNotFoundError,
            hub_errors.EntryNotFoundError) as err:
        raise ModelNotAvailableError(
            f"The Hub has no repository {entry.repo_id}." if entry.repo_id else
            f"The Hub has no files for {entry.name} ({_brief(err)}).") from err
    except hub_errors.HfHubHTTPError as err:
        if getattr(getattr(err, "response", None), "status_code", None) != 401:
            if is_network_error(err):
                raise _offline_error(entry, err) from err
            raise ModelNotAvailableError(f"The Hub refused the download of {entry.name}: "
                                         f"{_brief(err)}") from err
        raise ModelNotAvailableError(
            f"The Hugging Face Hub refused the saved token (401 Unauthorized) while pulling "
            f"{entry.name}: it is mistyped, expired or revoked.",
            hint="Save a new token (Settings > Hugging Face token, or `talk-to-transformers "
                 "token set`), or remove it (`talk-to-transformers token clear`) and pull "
                 "again.", code="token_invalid") from err
    except OSError as err:
        raise _offline_error(entry, err) from err
    except Exception as err:
        if is_network_error(err):
            raise _offline_error(entry, err) from err
        raise


def _pull_voice_model(entry: CatalogueEntry, progress: Callable[[str], None],
                      on_bytes: Callable[[int, int | None], None] | None,
                      cancel: Cancellable | None) -> VoicePull:
    from huggingface_hub import constants as hub_constants

    from engine.install.voice_pull import pull_voice_model
    from engine.secrets import hf_token

    bytes_progress = _ByteProgress(entry, on_bytes, cancel, None)
    bytes_progress.check()
    progress(f"Downloading {entry.name} (about {entry.size_mb} MB)...")
    hub_constants.DOWNLOAD_CHUNK_SIZE = min(hub_constants.DOWNLOAD_CHUNK_SIZE, _CHUNK_BYTES)
    with _hub_errors(entry):
        result = pull_voice_model(entry.config or "", token=hf_token(),
                                  tqdm_class=bytes_progress.tqdm_class(),
                                  check=bytes_progress.check, progress=progress)
    bytes_progress.check()
    bytes_progress.report(force=True)
    return result


def _bytes_to_fetch(repo_id: str, info: Any, patterns: list[str]) -> int | None:
    """Bytes the snapshot will download (files not yet cached), if the Hub listed file sizes.

    Lets a progress bar know its end from the start, instead of a total that grows as files
    start. None when a size is missing (the bars' own totals are used then).
    """
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.utils import filter_repo_objects

    siblings = {s.rfilename: s for s in info.siblings or []}
    total = 0
    for name in filter_repo_objects(siblings, allow_patterns=patterns):
        sibling = siblings[name]
        size = sibling.size if sibling.size is not None else getattr(sibling.lfs, "size", None)
        if size is None:
            return None
        if not isinstance(try_to_load_from_cache(repo_id, name, revision=info.sha), str):
            total += size
    return total


def add_folder(folder: str | Path, *, name: str | None = None) -> Persona:
    """Copy a persona folder, or a bare transformers checkpoint, into the user's personas.

    The folder is checked first: it must hold weights and a tokenizer (or be a LoRA adapter
    whose base is here), so nothing is added that could not load. A base model given as a
    path relative to the folder is stored as an absolute path: the copy lives elsewhere.
    """
    src = Path(folder).expanduser().resolve()
    if not src.is_dir():
        raise PersonaError(f"{src} is not a folder.", code="persona_not_found")
    if (src / PERSONA_FILE).is_file():
        persona = load_persona(src)  # validate before copying anything
        data = json.loads((src / PERSONA_FILE).read_text(encoding="utf-8"))
        if persona.weights.source == "folder":
            base = _check_checkpoint(src, base_model=persona.base_model)
            if base is not None:
                data["base_model"] = base
        if name:
            data["name"] = name
    else:
        if not (src / "config.json").is_file() and not (src / "adapter_config.json").is_file():
            raise PersonaError(
                f"{src.name} has neither persona.json nor a transformers config.json.",
                hint="Point at a folder made by save_pretrained(), or at a persona folder.",
                code="persona_folder_invalid",
            )
        base = _check_checkpoint(src)
        has_template = _has_chat_template(src)
        fmt = "chat_template" if has_template else "dialogpt"
        data = {
            "schema_version": 1,
            "name": name or src.name,
            "base_model": base or src.name,
            "prompt_format": fmt,
            "decoding": default_decoding(fmt),
        }
    persona_id = slug(data["name"]) or "persona"
    return _install_folder(persona_id, data, source=src)


_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model", "spiece.model",
                    "vocab.txt", "sentencepiece.bpe.model")


def _check_checkpoint(src: Path, *, base_model: str | None = None) -> str | None:
    """Refuse a checkpoint folder that could not load; an adapter's base, made absolute.

    ``base_model``: a persona folder's own ``base_model``, which wins over the adapter's.
    Returns the base model to record for a LoRA adapter (a Hub id, or an absolute folder),
    None for a full checkpoint.
    """
    from engine.models.availability import has_weights, hub_snapshot

    names = set(os.listdir(src))
    if "adapter_config.json" not in names and not has_weights(src):
        raise PersonaError(
            f"{src.name} has no model weights (model.safetensors, pytorch_model.bin or a "
            ".gguf file).", hint="Save the model into it: model.save_pretrained(folder).",
            code="persona_folder_invalid")
    if not any(n in names for n in _TOKENIZER_FILES):
        raise PersonaError(
            f"{src.name} has no tokenizer files ({', '.join(_TOKENIZER_FILES[:3])}…).",
            hint="Save the tokenizer beside the model: tokenizer.save_pretrained(folder).",
            code="persona_folder_invalid")
    if "adapter_config.json" not in names:
        return None
    if not any(n.startswith("adapter_model.") for n in names):
        raise PersonaError(f"{src.name} is a LoRA adapter without its weights "
                           "(adapter_model.safetensors).", code="persona_folder_invalid")
    try:
        adapter = json.loads((src / "adapter_config.json").read_text(encoding="utf-8"))
        base = str(adapter.get("base_model_name_or_path") or "")
    except (OSError, ValueError, AttributeError) as err:
        raise PersonaError(f"{src.name}/adapter_config.json is damaged ({err}).",
                           code="persona_folder_invalid") from err
    if base_model:
        base = base_model
    path = Path(base).expanduser()
    local = path if path.is_absolute() else src / path
    if base and local.is_dir():
        if not has_weights(local):
            raise PersonaError(f"The adapter's base model folder {local} has no weights.",
                               code="persona_folder_invalid")
        return str(local.resolve())
    if base and "/" in base and not base.startswith((".", "/", "~")) and hub_snapshot(base):
        return base  # a Hub id in the cache
    raise PersonaError(
        f"{src.name} is a LoRA adapter on {base or 'an unnamed base model'}, which is not on "
        "this computer.",
        hint="Pull or add the base model first, or point at a merged checkpoint.",
        code="persona_base_missing")


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
    from huggingface_hub import constants as hub_constants

    # The cache folder is read now, not when huggingface_hub was imported (its default).
    cache = huggingface_hub.scan_cache_dir(hub_constants.HF_HUB_CACHE)
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
