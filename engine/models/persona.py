"""A persona: a folder with ``persona.json`` and (usually) a transformers checkpoint.

``persona.json`` is validated on load; a bad or missing field raises :class:`PersonaError` that
names the field. Where the weights live is part of the file:

- ``folder``: a transformers checkpoint (or a PEFT LoRA adapter on ``base_model``) beside it;
- ``hub``: a Hugging Face Hub repo, pulled into the huggingface_hub cache by ``models pull``;
- ``package``: a folder shipped inside an installed Python package (the offline starter).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast, get_args

from engine.decoding import DecodingOptions
from engine.errors import PersonaError

PERSONA_FILE = "persona.json"
SCHEMA_VERSION = 1
# How a persona's prompt is laid out: DialoGPT's turns joined by EOS, or the tokenizer's chat
# template. One definition: the chat stage's prompt builder takes the same type.
PromptFormat = Literal["dialogpt", "chat_template"]
PROMPT_FORMATS: tuple[PromptFormat, ...] = get_args(PromptFormat)
WEIGHT_SOURCES = ("folder", "hub", "package")


@dataclass(frozen=True)
class Weights:
    """Where a persona's checkpoint is."""

    source: str = "folder"  # one of WEIGHT_SOURCES
    repo_id: str | None = None  # hub: "microsoft/DialoGPT-medium"
    revision: str | None = None  # hub: a branch, tag or commit; None = main
    package: str | None = None  # package: importable name that ships the files
    gguf_file: str | None = None  # a GGUF file inside the folder, instead of safetensors


@dataclass(frozen=True)
class Persona:
    """A validated persona."""

    id: str  # the folder name; what the CLI's --persona takes
    folder: Path
    name: str
    base_model: str
    prompt_format: PromptFormat
    description: str = ""
    system_prompt: str | None = None  # chat-template personas only
    context_tokens: int | None = None  # None: the model's own context length
    weights: Weights = field(default_factory=Weights)
    decoding: DecodingOptions = field(default_factory=DecodingOptions)
    default_voice: str | None = None
    training_card: dict[str, Any] = field(default_factory=dict)
    starter: bool = False  # the bundled out-of-the-box persona, labelled as such

    @property
    def label(self) -> str:
        """Name shown to people."""
        if self.starter and "starter" not in self.name.lower():
            return f"{self.name} (starter)"
        return self.name


def _typed(data: dict[str, Any], key: str, kind: type | tuple[type, ...], *, required: bool,
           where: str = "") -> Any:
    name = f"{where}{key}"
    if key not in data or data[key] is None:
        if required:
            raise PersonaError(f"persona.json is missing the required field '{name}'.")
        return None
    value = data[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        value_ok = False
    else:
        value_ok = isinstance(value, kinds)
    if not value_ok:
        want = " or ".join(k.__name__ for k in kinds)
        raise PersonaError(
            f"Field '{name}' in persona.json must be {want}, not {type(value).__name__}."
        )
    return value


def parse_persona(data: Any, folder: Path) -> Persona:
    """Validate the JSON of ``persona.json`` found in ``folder``."""
    if not isinstance(data, dict):
        raise PersonaError("persona.json must hold a JSON object.")
    known = {
        "schema_version", "name", "description", "base_model", "prompt_format", "system_prompt",
        "context_tokens", "weights", "decoding", "default_voice", "training_card", "starter",
    }
    unknown = sorted(set(data) - known)
    if unknown:
        raise PersonaError(f"Unknown field '{unknown[0]}' in persona.json.",
                           hint=f"Known fields: {', '.join(sorted(known))}.")
    version = _typed(data, "schema_version", int, required=False) or SCHEMA_VERSION
    if version > SCHEMA_VERSION:
        raise PersonaError(
            f"persona.json has schema_version {version}; this app reads up to {SCHEMA_VERSION}.",
            hint="Update Talk To Transformers.",
        )
    prompt_format = _typed(data, "prompt_format", str, required=True)
    if prompt_format not in PROMPT_FORMATS:
        raise PersonaError(
            f"Field 'prompt_format' must be one of {', '.join(PROMPT_FORMATS)}, "
            f"not {prompt_format!r}."
        )
    context = _typed(data, "context_tokens", int, required=False)
    if context is not None and context < 16:
        raise PersonaError(f"Field 'context_tokens' must be at least 16, not {context}.")
    raw_weights = _typed(data, "weights", dict, required=False) or {}
    decoding = DecodingOptions.from_dict(_typed(data, "decoding", dict, required=False) or {})
    name = _typed(data, "name", str, required=True).strip()
    if not name:
        raise PersonaError("Field 'name' in persona.json is empty.")
    return Persona(
        id=folder.name,
        folder=folder,
        name=name,
        base_model=_typed(data, "base_model", str, required=True),
        prompt_format=cast(PromptFormat, prompt_format),  # checked against PROMPT_FORMATS
        description=_typed(data, "description", str, required=False) or "",
        system_prompt=_typed(data, "system_prompt", str, required=False),
        context_tokens=context,
        weights=_parse_weights(raw_weights),
        decoding=decoding,
        default_voice=_typed(data, "default_voice", str, required=False),
        training_card=_typed(data, "training_card", dict, required=False) or {},
        starter=bool(_typed(data, "starter", bool, required=False)),
    )


def _parse_weights(raw: dict[str, Any]) -> Weights:
    known = {"source", "repo_id", "revision", "package", "gguf_file"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise PersonaError(f"Unknown field 'weights.{unknown[0]}' in persona.json.")
    values = {k: _typed(raw, k, str, required=False, where="weights.") for k in known}
    source = values["source"] or "folder"
    if source not in WEIGHT_SOURCES:
        raise PersonaError(
            f"Field 'weights.source' must be one of {', '.join(WEIGHT_SOURCES)}, not {source!r}."
        )
    needed = {"hub": "repo_id", "package": "package"}.get(source)
    if needed and not values[needed]:
        raise PersonaError(f"persona.json is missing the required field 'weights.{needed}' "
                           f"(weights.source is {source!r}).")
    values["source"] = source
    return Weights(**values)


def load_persona(folder: str | Path) -> Persona:
    """Read and validate the persona in ``folder``."""
    folder = Path(folder).expanduser().resolve()
    path = folder / PERSONA_FILE
    if not folder.is_dir():
        raise PersonaError(f"No persona folder at {folder}.", code="persona_not_found")
    if not path.is_file():
        raise PersonaError(f"{folder.name} is not a persona: it has no persona.json.",
                           code="persona_not_found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise PersonaError(f"persona.json in {folder.name} is not UTF-8 text.") from err
    except json.JSONDecodeError as err:
        raise PersonaError(
            f"persona.json in {folder.name} is not valid JSON (line {err.lineno}: {err.msg})."
        ) from err
    except OSError as err:
        raise PersonaError(f"Cannot read persona.json in {folder.name}: {err.strerror}.") from err
    try:
        return parse_persona(data, folder)
    except PersonaError as err:
        err.message = f"Persona '{folder.name}': {err.message}"
        raise
