"""Publish a trained run as a persona the app can talk to.

The persona folder is built in a hidden temporary folder, validated with the engine's own
``load_persona``, and only then renamed into ``personas_dir()/<slug(name)>``
(engine.fsutil.atomic_folder): a failed export leaves nothing half-made. Full and LoRA runs are
exported as plain safetensors checkpoints (LoRA merged into the base); ``adapter_only`` keeps a
LoRA run as its small adapter on top of the base, which the engine's loader merges at load.

A merged export is also a plain Hugging Face model folder (config, safetensors, tokenizer with a
chat template; ``persona.json`` is one extra file engines ignore), so serving engines load it as
it is: ``vllm serve FOLDER``, ``transformers serve FOLDER``, TGI. DialoGPT personas carry the
template of engine.chat.templates, which gives ``/v1/chat/completions`` the app's own prompt.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from engine import paths
from engine.errors import PersonaError
from engine.fsutil import atomic_folder, slug
from engine.models.persona import PERSONA_FILE, SCHEMA_VERSION, Persona, load_persona
from training.errors import TrainingError

_ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def export_persona(run_dir: str | Path, name: str, *, description: str = "",
                   adapter_only: bool = False, default_voice: str | None = None) -> Persona:
    """Make a persona called ``name`` from the run in ``run_dir``.

    Args:
        run_dir: a run whose train stage completed (``final/`` and ``config.json``).
        name: the persona's display name; its folder is ``slug(name)``.
        description: shown in the app's persona list.
        adapter_only: for a LoRA run, ship the adapter (a few MB) instead of merged weights;
            the persona then needs its base model on this machine.
        default_voice: the voice it speaks in (an enrolled voice's name or ``builtin:NAME``).

    Raises:
        TrainingError: no finished run, a name already taken (code ``persona_exists``), or an
            ``adapter_only`` export of a full fine-tune.

    """
    from training.base import load_model, prompt_style, resolve_base
    from training.train import CONFIG_FILE, FINAL_DIR, TrainConfig

    run = Path(run_dir).expanduser().resolve()
    final = run / FINAL_DIR
    if not (run / CONFIG_FILE).is_file() or not final.is_dir():
        raise TrainingError(f"{run.name} has no finished training run to export.",
                            hint="Run the train stage to the end first.",
                            code="training_not_finished")
    config = TrainConfig.load(run / CONFIG_FILE)
    folder_name = slug(name)
    if not folder_name:
        raise TrainingError(f"The persona name {name!r} has no letters or digits.",
                            code="persona_name_invalid")
    target = paths.personas_dir() / folder_name
    if target.exists():
        raise TrainingError(f"A persona called {folder_name!r} already exists.",
                            hint="Choose another name, or remove that persona first.",
                            code="persona_exists")
    lora = (final / "adapter_config.json").is_file()
    if adapter_only and not lora:
        raise TrainingError("Only a LoRA run has an adapter to export; this run trained every "
                            "weight.", hint="Export it without adapter_only.",
                            code="training_config_invalid")
    base = resolve_base(config.base_model)
    with atomic_folder(target) as tmp:
        if adapter_only:
            for file in _ADAPTER_FILES:
                shutil.copy2(final / file, tmp / file)
            base_ref = base.adapter_base
        else:
            if lora:
                from peft import PeftModel

                model = PeftModel.from_pretrained(load_model(base), final).merge_and_unload()
            else:
                model = load_model(resolve_base(str(final)))
            model.config.use_cache = True
            model.save_pretrained(tmp, safe_serialization=True)
            base_ref = base.name
        tokenizer = _load_tokenizer(final)
        # The layout it was trained in (training.encode): its base's, chat template or EOS.
        prompt_format, system_prompt = prompt_style(base, tokenizer)
        _save_tokenizer(tokenizer, tmp, prompt_format)
        persona = {
            "schema_version": SCHEMA_VERSION,
            "name": name.strip(),
            "description": description,
            "base_model": base_ref,
            "prompt_format": prompt_format,
            "decoding": _default_decoding(prompt_format),
            "training_card": training_card(run, config.to_dict()),
        }
        if system_prompt:
            persona["system_prompt"] = system_prompt
        if default_voice:
            persona["default_voice"] = default_voice
        (tmp / PERSONA_FILE).write_text(json.dumps(persona, indent=2, ensure_ascii=False) + "\n",
                                        encoding="utf-8")
        try:
            load_persona(tmp)
        except PersonaError as err:
            raise TrainingError(f"The exported persona did not validate: {err.message}") from err
    return load_persona(target)


def _load_tokenizer(final: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(final, trust_remote_code=False)


def _save_tokenizer(tokenizer: Any, folder: Path, prompt_format: str) -> None:
    """Save the tokenizer so serving engines lay out prompts as the app does.

    A DialoGPT persona gets the template that reproduces the app's EOS-joined prompt, replacing
    any template its base came with: the model was trained on the EOS layout, and engines only
    build ``/v1/chat/completions`` prompts from a template. The app itself keeps building
    DialoGPT prompts in code (engine.chat.prompt), so the template changes nothing locally.
    """
    from engine.chat.templates import dialogpt_chat_template

    if prompt_format == "dialogpt":
        tokenizer.chat_template = dialogpt_chat_template()
    tokenizer.save_pretrained(folder)
    template = getattr(tokenizer, "chat_template", None)
    config_file = folder / "tokenizer_config.json"
    if isinstance(template, str) and config_file.is_file():
        # save_pretrained writes chat_template.jinja, which current transformers and vLLM read;
        # TGI and older transformers read only tokenizer_config.json, so it goes there too.
        config = json.loads(config_file.read_text(encoding="utf-8"))
        config["chat_template"] = template
        config_file.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                               encoding="utf-8")


def _default_decoding(prompt_format: str) -> dict[str, Any]:
    from engine.models.catalogue import default_decoding

    return default_decoding(prompt_format)


def _shareable(config: dict[str, Any]) -> dict[str, Any]:
    """The config without this machine's folders: a persona is handed to other people.

    A folder keeps only its name (the run's, the dataset's, a local base model's); a Hub id such
    as ``microsoft/DialoGPT-medium`` stays as it is.
    """
    shared = dict(config)
    for key in ("run_dir", "data_dir", "base_model"):
        value = shared.get(key)
        if isinstance(value, str) and Path(value).expanduser().is_absolute():
            shared[key] = Path(value).name
    return shared


def training_card(run: Path, config: dict[str, Any]) -> dict[str, Any]:
    """What a persona records about how it was made: settings, data, filtering, evaluation."""
    card: dict[str, Any] = {"exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            "config": _shareable(config)}
    log = _read_log_tail(run / "log.jsonl")
    if log:
        card["steps"], card["final_loss"] = log.get("step"), log.get("loss")
    dataset = _read_json(Path(config.get("data_dir") or run / "dataset") / "dataset.json")
    if dataset:
        card["data"] = {k: dataset[k] for k in ("source", "counts", "max_tokens", "seed")
                        if k in dataset}
    report = _read_json(run / "filtered" / "report.json")
    if report:
        card["filter"] = {k: report[k] for k in ("kept_comments", "dropped_comments",
                                                  "kept_threads", "dropped_threads", "rules")
                          if k in report}
    evaluation = _read_json(run / "eval.json")
    if evaluation:
        card["eval"] = {k: evaluation[k] for k in ("perplexity", "finetuned", "base",
                                                    "validation") if k in evaluation}
    return card


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _read_log_tail(path: Path) -> dict[str, Any] | None:
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return json.loads(lines[-1]) if lines else None
    except (OSError, ValueError):
        return None
