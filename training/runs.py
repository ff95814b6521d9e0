"""A training run: its folder under the data folder, and the stages that fill it.

    scrape → filter → dataset → train → evaluate → export        (or ``run_all`` for the chain)

A run folder is ``<data folder>/training/<run>``. Each stage reads what the one before it wrote
there and reports through a :class:`training.reporter.Reporter`; :func:`run_all` skips what is
already done, so the same command resumes. ``training.cli`` parses the command line and calls
these.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from engine import paths
from engine.cancel import CancelToken
from engine.fsutil import slug
from training.errors import TrainingError
from training.reporter import Reporter

STAGES = ("scrape", "filter", "dataset", "train", "evaluate", "export")


def run_folder(run: str) -> Path:
    """The folder of run ``run`` (a name; made safe for the file system)."""
    name = slug(run)
    if not name:
        raise TrainingError(f"{run!r} is not usable as a run name.",
                            hint="Use letters, digits or dashes.", code="run_name_invalid")
    return paths.data_dir() / "training" / name


def stage_scrape(args: argparse.Namespace, run: Path, report: Reporter,
                 cancel: CancelToken) -> bool:
    """Scrape; False if cancelled."""
    from training.scrape import STATE_FILE, scrape

    state_file = run / "raw" / STATE_FILE
    if state_file.is_file():
        try:
            earlier = json.loads(state_file.read_text(encoding="utf-8")).get("subreddit")
        except (OSError, ValueError, AttributeError):
            earlier = None
        wanted = args.subreddit.removeprefix("r/")
        if earlier and earlier.lower() != wanted.lower():
            raise TrainingError(
                f"The run {run.name!r} holds threads of r/{earlier}, not r/{wanted}.",
                hint="Use another --run (or --name) for a different subreddit.",
                code="run_source_mismatch")
    report.emit("scrape", "start", text=f"r/{args.subreddit}: {args.sort} posts "
                f"({args.time_filter}), up to {args.limit} threads")
    result = scrape(args.subreddit, run, sort=args.sort, time_filter=args.time_filter,
                    limit=args.limit, comment_limit=args.comment_limit,
                    progress=report.progress("scrape"), cancel=cancel)
    report.emit("scrape", "done", text=f"{result.written} threads written, {result.skipped} "
                f"already there, {result.comments} comments → {_rel(result.path)}",
                written=result.written, skipped=result.skipped)
    return not result.cancelled


def stage_filter(args: argparse.Namespace, run: Path, report: Reporter) -> None:
    """Filter the scraped threads with the DialoGPT rules."""
    from training.filter import FilterOptions, filter_threads

    source = run / "raw" / "threads.jsonl"
    if not source.is_file():
        raise TrainingError(f"Nothing to filter: {_rel(source)} does not exist.",
                            hint="Run the scrape stage first (train scrape --subreddit NAME).",
                            code="stage_input_missing")
    options = FilterOptions(
        max_words=args.max_words, min_score=args.min_score,
        blocklist=() if args.no_blocklist else (
            tuple(_read_words(args.blocklist)) if args.blocklist else None),
        language=args.language, bot_authors=tuple(args.bot_author or ()))
    report.emit("filter", "start", text=f"applying the filter rules to {_rel(source)}")
    result = filter_threads(source, run / "filtered", options)
    data = result.as_dict()
    rules = ", ".join(f"{name} {count}" for name, count in data["rules"].items() if count)
    report.emit("filter", "done", text=f"kept {data['kept_comments']} comments, dropped "
                f"{data['dropped_comments']} ({rules or 'none by rule'}); report: "
                f"{_rel(run / 'filtered' / 'report.json')}", report=data)


def check_context(base_ref: str, max_tokens: int) -> None:
    """Refuse sequences longer than the model's position table (it would crash, not train).

    Raises:
        TrainingError: ``max_tokens`` exceeds the base model's context.

    """
    from training.base import resolve_base

    base = resolve_base(base_ref)
    config_file = Path(base.load_from) / "config.json"
    if not config_file.is_file():
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(base.load_from, "config.json")
        except Exception:  # an odd id: the loader will say what is wrong
            cached = None
        if not isinstance(cached, str):
            return
        config_file = Path(cached)
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    context = config.get("n_positions") or config.get("max_position_embeddings")
    if isinstance(context, int) and max_tokens > context:
        raise TrainingError(
            f"--max-tokens {max_tokens} is longer than {base.name}'s context of {context} "
            "tokens.", hint=f"Use --max-tokens {context} or less (DialoGPT used 128).",
            code="max_tokens_too_long")


def stage_dataset(args: argparse.Namespace, run: Path, report: Reporter) -> None:
    """Cut threads (or the user's dialogue file) into training instances."""
    from training.base import resolve_base
    from training.dataset import build_dataset

    source = Path(args.dialogues).expanduser() if args.dialogues else (
        run / "filtered" / "threads.jsonl")
    if not source.is_file():
        raise TrainingError(f"No dialogues to build a dataset from: {_rel(source)} does not "
                            "exist.", hint="Run the filter stage first, or pass --dialogues "
                            "FILE (.jsonl or .csv).", code="stage_input_missing")
    base = resolve_base(args.base)
    check_context(args.base, args.max_tokens)
    report.emit("dataset", "start", text=f"instances of {args.min_turns}-{args.max_turns} "
                f"turns, at most {args.max_tokens} tokens ({base.name}'s tokenizer)")
    info = build_dataset(source, run / "dataset", base_model=base.load_from,
                         max_tokens=args.max_tokens, min_turns=args.min_turns,
                         max_turns=args.max_turns,
                         validation_fraction=args.validation_fraction, seed=args.seed)
    counts = {"train": info.train, "validation": info.validation}
    report.emit("dataset", "done", text=f"{info.train} training and {info.validation} "
                f"validation instances from {info.train_threads + info.validation_threads} "
                f"threads ({info.too_long} too long) → {_rel(run / 'dataset')}", counts=counts)


def train_config(args: argparse.Namespace, run: Path):
    """The TrainConfig the command line asks for."""
    from training.train import TrainConfig

    return TrainConfig(
        base_model=args.base, run_dir=str(run), method=args.method, lora_r=args.lora_r,
        epochs=args.epochs, batch_size=args.batch_size, grad_accum=args.grad_accum,
        lr=args.lr, max_tokens=args.max_tokens, mask=args.mask, precision=args.precision,
        gradient_checkpointing=args.gradient_checkpointing, seed=args.seed,
        save_every=args.save_every, max_steps=args.max_steps, device=args.device,
        device_map=args.device_map)


def stage_train(args: argparse.Namespace, run: Path, report: Reporter,
                cancel: CancelToken) -> bool:
    """Fine-tune (resuming from the last checkpoint); False if cancelled."""
    from training.train import train

    if not (run / "dataset" / "train.jsonl").is_file():
        raise TrainingError(f"No dataset in {_rel(run / 'dataset')}.",
                            hint="Run the dataset stage first.", code="stage_input_missing")
    config = train_config(args, run)
    check_context(config.base_model, config.max_tokens)
    report.emit("train", "start", text=f"{config.method} fine-tune of {config.base_model}, "
                f"{config.epochs} epoch(s), batch {config.batch_size}×{config.grad_accum}")
    result = train(config, progress=report.progress("train"), cancel=cancel)
    if result.status == "cancelled":
        report.emit("train", "done", text=f"stopped at step {result.step}/"
                    f"{result.total_steps}; checkpoint saved: run the same command to resume",
                    status="cancelled", step=result.step)
        return False
    resumed = f" (resumed at step {result.resumed_from})" if result.resumed_from else ""
    report.emit("train", "done", text=f"{result.step} steps{resumed}, last loss "
                f"{result.loss:.3f} → {_rel(result.final_dir)}" if result.loss is not None
                else f"{result.step} steps → {_rel(result.final_dir)}", status="completed",
                step=result.step)
    return True


def stage_evaluate(args: argparse.Namespace, run: Path, report: Reporter) -> None:
    """Perplexity and reply statistics, base vs fine-tune."""
    from training.evaluate import evaluate

    report.emit("evaluate", "start", text="validation perplexity and sample replies, base "
                "model and fine-tune side by side")
    figures = evaluate(run, progress=report.progress("evaluate"))
    ppl = figures.get("perplexity", {})
    report.emit("evaluate", "done", text=f"perplexity {ppl.get('base', float('nan')):.1f} → "
                f"{ppl.get('finetuned', float('nan')):.1f} (base → fine-tune); "
                f"{_rel(run / 'eval.json')}", figures=_jsonable(figures))


def stage_export(args: argparse.Namespace, run: Path, report: Reporter) -> None:
    """Write the persona folder the chat engine loads."""
    from training.export import export_persona

    name = args.name or run.name
    report.emit("export", "start", text=f"persona {name!r}")
    persona = export_persona(run, name, description=args.description or "",
                             adapter_only=args.adapter_only, default_voice=args.voice)
    report.emit("export", "done", text=f"persona {persona.id!r} is ready: "
                f"talk-to-transformers chat -p {persona.id}", persona=persona.id)


def run_all(args: argparse.Namespace, run: Path, report: Reporter, cancel: CancelToken) -> int:
    """The whole chain, skipping what is already done."""
    started = (run / "checkpoints" / "latest").is_file() or (run / "final").is_dir()
    if started and (run / "dataset" / "dataset.json").is_file():
        # Training began on this dataset: rebuilding it (a re-listed subreddit, a reshuffled
        # split) would move trained threads into validation and break an exact resume.
        for stage in ("scrape", "filter", "dataset"):
            report.emit(stage, "skip", text="kept: training has started on this dataset")
    elif args.dialogues:
        report.emit("scrape", "skip", text=f"using the dialogue file {args.dialogues}")
        stage_dataset(args, run, report)
    else:
        if not stage_scrape(args, run, report, cancel):
            return stopped(report)
        stage_filter(args, run, report)
        stage_dataset(args, run, report)
    if cancel.cancelled:
        return stopped(report)
    if _trained_already(args, run):
        report.emit("train", "skip", text=f"already trained with these settings "
                    f"({_rel(run / 'final')})")
    elif not stage_train(args, run, report, cancel):
        return stopped(report)
    if cancel.cancelled:
        return stopped(report)
    if _validation_count(run) == 0:
        report.emit("evaluate", "skip", text="no validation dialogues (too little data to "
                    "hold any back); the persona is exported without evaluation figures")
    elif not (run / "eval.json").is_file() or _newer(run / "final", run / "eval.json"):
        stage_evaluate(args, run, report)
    else:
        report.emit("evaluate", "skip", text=f"figures are in {_rel(run / 'eval.json')}")
    if cancel.cancelled:
        return stopped(report)
    from engine.models.persona import PERSONA_FILE

    name = args.name or run.name
    existing = paths.personas_dir() / slug(name)
    if (existing / PERSONA_FILE).is_file() and not args.replace:
        report.emit("export", "skip", status="exists", text=f"a persona {name!r} exists "
                    "already; nothing was exported (use --replace to overwrite it)")
        return 0
    if args.replace and existing.is_dir():
        _export_replacing(args, run, report, existing)
    else:
        stage_export(args, run, report)
    return 0


def _trained_already(args: argparse.Namespace, run: Path) -> bool:
    """Whether ``final/`` holds a finished run of exactly these settings."""
    if not (run / "final").is_dir():
        return False
    try:
        saved = json.loads((run / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    wanted = train_config(args, run).to_dict()
    ignore = {"run_dir", "save_every", "keep_checkpoints"}  # do not change what is learnt
    return {k: v for k, v in saved.items() if k not in ignore} == {
        k: v for k, v in json.loads(json.dumps(wanted)).items() if k not in ignore}


def _newer(a: Path, b: Path) -> bool:
    try:
        return a.stat().st_mtime > b.stat().st_mtime
    except OSError:
        return True


def _export_replacing(args: argparse.Namespace, run: Path, report: Reporter,
                      existing: Path) -> None:
    """Export over an existing persona without ever losing it: set it aside, then swap."""
    import shutil

    aside = existing.with_name(f".{existing.name}-replaced")
    shutil.rmtree(aside, ignore_errors=True)
    existing.rename(aside)
    try:
        stage_export(args, run, report)
    except BaseException:
        if not existing.exists():
            aside.rename(existing)  # the old persona is back, untouched
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _validation_count(run: Path) -> int | None:
    try:
        info = json.loads((run / "dataset" / "dataset.json").read_text(encoding="utf-8"))
        return int(info["counts"]["validation"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def stopped(report: Reporter) -> int:
    """Say the run stopped (it continues when run again); the exit status 130."""
    report.emit("all", "note", text="stopped; run the same command again to continue")
    return 130


def list_runs(out) -> int:
    """Print each run and how far it got; the exit status 0."""
    root = paths.data_dir() / "training"
    runs = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not runs:
        print("No training runs yet. Start one: talk-to-transformers train all --help", file=out)
        return 0
    for run in runs:
        done = [name for name, marker in (
            ("scraped", "raw/threads.jsonl"), ("filtered", "filtered/report.json"),
            ("dataset", "dataset/dataset.json"), ("checkpoint", "checkpoints/latest"),
            ("trained", "final"), ("evaluated", "eval.json")) if (run / marker).exists()]
        print(f"{run.name:24} {', '.join(done) or 'empty'}", file=out)
    return 0


def _read_words(path: str) -> list[str]:
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise TrainingError(f"Cannot read the blocklist {path}: {err}.",
                            code="blocklist_unreadable") from err
    return [w.strip() for w in text.splitlines() if w.strip() and not w.startswith("#")]


def _jsonable(data: Any) -> Any:
    return json.loads(json.dumps(data, default=str))


def _rel(path: Path | None) -> str:
    if path is None:
        return "-"
    try:
        return str(Path(path).relative_to(paths.data_dir()))
    except ValueError:
        return str(path)
