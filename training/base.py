"""The model a run starts from: found like the engine finds it, loaded for training.

A base is a folder (a transformers checkpoint, or a persona folder), a persona id or name (the
offline ``starter`` comes from its GGUF file through the engine's safetensors cache), or a Hub id
(from the huggingface_hub cache, downloaded when online). Never ``trust_remote_code``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import PersonaError, TalkError
from training.errors import TrainingError

# LoRA targets per architecture (transformers' model_type). GPT-2 (DialoGPT) fuses q, k, v in
# c_attn; "c_proj" matches both the attention output and the MLP output projections.
LORA_TARGETS: dict[str, tuple[str, ...]] = {
    "gpt2": ("c_attn", "c_proj"),
    **{kind: ("q_proj", "k_proj", "v_proj", "o_proj")
       for kind in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "olmo")},
}


@dataclass(frozen=True)
class BaseModel:
    """A resolved base model reference."""

    load_from: str  # what from_pretrained is given: a local folder or a Hub id
    name: str  # the model's name for persona.json "base_model" (its Hub id when known)
    adapter_base: str  # what an adapter-only persona's "base_model" points at (loadable alone)
    # A persona base's own prompt layout; None: read from the tokenizer (see prompt_style).
    prompt_format: str | None = None
    system_prompt: str | None = None


def resolve_base(ref: str) -> BaseModel:
    """Find the checkpoint ``ref`` names; never downloads except for a Hub id.

    Raises:
        TrainingError: ``ref`` names nothing usable (the message says what was tried).

    """
    from engine.models import loader
    from engine.models.persona import PERSONA_FILE, load_persona
    from engine.models.registry import find_persona

    if not ref or not ref.strip():
        raise TrainingError("No base model given.", hint="Use a Hub id, a folder or 'starter'.")
    path = Path(ref).expanduser()
    try:
        if path.is_dir() and not (path / PERSONA_FILE).is_file():
            if not (path / "config.json").is_file():
                raise TrainingError(f"{path} is not a model folder: it has no config.json.")
            resolved = str(path.resolve())
            return BaseModel(resolved, resolved, resolved)
        if path.is_dir():
            persona = load_persona(path)
        elif "/" in ref and not ref.startswith((".", "~", "/")):
            return BaseModel(ref, ref, ref)  # a Hub id: from the cache, or downloaded
        else:
            persona = find_persona(ref)
        folder = loader.weights_folder(persona)
        if persona.weights.gguf_file:
            # The engine's own cache of the de-quantised weights: made once, shared with chat.
            folder = loader.converted_gguf(folder, persona.weights.gguf_file)
    except TrainingError:
        raise
    except PersonaError as err:
        raise TrainingError(f"No base model {ref!r}: {err.message}",
                            hint=err.hint or "Use a Hub id, a model folder or a persona id.",
                            code="base_model_missing") from err
    except TalkError as err:  # not downloaded, package missing, conversion failed
        raise TrainingError(err.message, hint=err.hint, code="base_model_missing") from err
    hub = persona.weights.repo_id if persona.weights.source == "hub" else None
    folder_text = str(Path(folder).resolve())
    return BaseModel(folder_text, persona.base_model, hub or folder_text,
                     prompt_format=persona.prompt_format, system_prompt=persona.system_prompt)


def prompt_style(base: BaseModel, tokenizer: Any) -> tuple[str, str | None]:
    """(prompt_format, system_prompt) of a persona trained from ``base``.

    A persona keeps its base's layout: a chat model (the starter, SmolLM2) is trained and fed
    through its chat template, a DialoGPT through turns joined by EOS. Training, evaluation
    and export all ask here, so what is trained is what the persona sees when it chats.
    """
    if base.prompt_format:
        return base.prompt_format, base.system_prompt
    return ("chat_template" if getattr(tokenizer, "chat_template", None) else "dialogpt"), None


def load_tokenizer(base: BaseModel) -> Any:
    """The base's tokenizer, with a pad token (EOS where the model has none, as GPT-2)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(base.load_from, trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise _load_failed(base, err) from err
    if tokenizer.eos_token_id is None:
        raise TrainingError(f"The tokenizer of {base.name} has no end-of-sequence token, which "
                            "the dialogue format needs.")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(base: BaseModel, *, dtype: Any = None, device_map: str | None = None) -> Any:
    """The base as a causal LM (``dtype``: torch dtype of its weights; None: float32)."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": dtype or torch.float32, "trust_remote_code": False}
    if device_map:
        kwargs["device_map"] = device_map
    try:
        return AutoModelForCausalLM.from_pretrained(base.load_from, **kwargs)
    except (OSError, ValueError, KeyError) as err:
        raise _load_failed(base, err) from err


def _load_failed(base: BaseModel, err: BaseException) -> TrainingError:
    first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
    hub = not Path(base.load_from).is_dir()
    return TrainingError(
        f"Could not load the base model {base.name}: {first}",
        hint=("Pull it first (talk-to-transformers models pull ...) or connect to the internet."
              if hub else "The folder may be incomplete."),
        code="base_model_missing" if hub else "base_model_invalid",
    )


def lora_targets(model_type: str, configured: tuple[str, ...] | None) -> list[str] | None:
    """The module names LoRA adapts: configured ones, else this architecture's (None: peft's)."""
    if configured:
        return list(configured)
    targets = LORA_TARGETS.get(model_type)
    return list(targets) if targets else None


def add_lora(model: Any, *, r: int, alpha: int, dropout: float,
             target_modules: tuple[str, ...] | None) -> Any:
    """Wrap ``model`` in a PEFT LoRA model; only the adapter's weights are trainable."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as err:
        from engine.errors import MissingDependencyError

        raise MissingDependencyError("LoRA training needs the peft package.",
                                     hint="pip install 'talk-to-transformers[train]'") from err
    model_type = getattr(model.config, "model_type", "")
    config = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, task_type="CAUSAL_LM",
        target_modules=lora_targets(model_type, target_modules),
        fan_in_fan_out=model_type == "gpt2",  # GPT-2's Conv1D stores weights transposed
    )
    try:
        return get_peft_model(model, config)
    except ValueError as err:
        raise TrainingError(f"LoRA cannot adapt this {model_type or 'model'}: {err}",
                            hint="Set target_modules to the model's linear layer names.") from err
