"""``talk-to-transformers train``: each stage a command that reads and writes files in a run folder.

    scrape → filter → dataset → train → evaluate → export        (or ``all`` for the chain)

A run folder is ``<data folder>/training/<run>``; any stage can be re-run, and ``all`` resumes:
the scrape skips threads it has, training continues from its last checkpoint, a finished stage
is not redone. Ctrl-C (or SIGTERM, which the app's training dialog sends) stops at a clean
point — training saves a checkpoint first — and the same command continues later.
``--progress-json`` prints one JSON object per line for a program to read (the app does).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from engine import paths
from engine.cancel import CancelToken
from engine.errors import TalkError
from engine.fsutil import slug
from engine.models.device import DEVICE_SETTINGS
from training.errors import TrainingError

STAGES = ("scrape", "filter", "dataset", "train", "evaluate", "export")


# -- reporting ----------------------------------------------------------------------------------
class Reporter:
    """Stage progress for a person (one updating line) or a program (JSON lines)."""

    def __init__(self, as_json: bool, out=None):
        self.as_json = as_json
        self.out = out or sys.stdout
        self._last_line = 0.0

    def emit(self, stage: str, event: str, **data: Any) -> None:
        """Report ``event`` ("start", "progress", "done", "skip", "note") of ``stage``."""
        if self.as_json:
            print(json.dumps({"stage": stage, "event": event, **data}), file=self.out,
                  flush=True)
            return
        if event == "progress":
            now = time.monotonic()
            if now - self._last_line < 0.2 and data.get("done") != data.get("total"):
                return  # a terminal line per 0.2 s is plenty
            self._last_line = now
            print(f"\r  {_progress_text(data)}\033[K", end="", file=self.out, flush=True)
        elif event == "start":
            print(f"[{stage}] {data.get('text', '')}", file=self.out, flush=True)
        elif event in ("done", "skip", "note"):
            if self._last_line:
                print(file=self.out)
                self._last_line = 0.0
            print(f"[{stage}] {data.get('text', '')}", file=self.out, flush=True)

    def progress(self, stage: str) -> Callable[..., None]:
        """A callback for a stage's own progress reports."""
        def report(*args: Any) -> None:
            if len(args) == 1 and isinstance(args[0], dict):
                self.emit(stage, "progress", **args[0])
            elif len(args) >= 2:
                self.emit(stage, "progress", done=args[0], total=args[1],
                          **({"title": str(args[2])[:60]} if len(args) > 2 else {}))
            else:
                self.emit(stage, "progress", done=args[0] if args else 0)
        return report


def _progress_text(data: dict[str, Any]) -> str:
    if "step" in data:  # training
        parts = [f"step {data['step']}/{data.get('total_steps', '?')}"]
        if data.get("loss") is not None:
            parts.append(f"loss {data['loss']:.3f}")
        if data.get("tokens_per_s"):
            parts.append(f"{data['tokens_per_s']:.0f} tok/s")
        if data.get("eta_s") is not None:
            parts.append(f"ETA {format_duration(data['eta_s'])}")
        return " · ".join(parts)
    done, total = data.get("done", 0), data.get("total")
    text = f"{done}/{total}" if total else f"{done}"
    return f"{text} {data.get('title', '')}".rstrip()


def format_duration(seconds: float) -> str:
    """4m05s / 1h02m: an ETA for people."""
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else (
        f"{seconds // 60}m{seconds % 60:02d}s")


# -- the stages ---------------------------------------------------------------------------------
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
            return _stopped(report)
        stage_filter(args, run, report)
        stage_dataset(args, run, report)
    if cancel.cancelled:
        return _stopped(report)
    if _trained_already(args, run):
        report.emit("train", "skip", text=f"already trained with these settings "
                    f"({_rel(run / 'final')})")
    elif not stage_train(args, run, report, cancel):
        return _stopped(report)
    if cancel.cancelled:
        return _stopped(report)
    if _validation_count(run) == 0:
        report.emit("evaluate", "skip", text="no validation dialogues (too little data to "
                    "hold any back); the persona is exported without evaluation figures")
    elif not (run / "eval.json").is_file() or _newer(run / "final", run / "eval.json"):
        stage_evaluate(args, run, report)
    else:
        report.emit("evaluate", "skip", text=f"figures are in {_rel(run / 'eval.json')}")
    if cancel.cancelled:
        return _stopped(report)
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


def _stopped(report: Reporter) -> int:
    report.emit("all", "note", text="stopped; run the same command again to continue")
    return 130


# -- command line -------------------------------------------------------------------------------
def _add_source(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    g = p.add_argument_group("Reddit source")
    g.add_argument("--subreddit", "-r", required=required, help="subreddit name (without r/)")
    g.add_argument("--sort", choices=("top", "hot", "new"), default="top")
    g.add_argument("--time-filter", default="all",
                   choices=("all", "year", "month", "week", "day", "hour"))
    g.add_argument("--limit", type=int, default=100, help="threads to fetch (default 100)")
    g.add_argument("--comment-limit", type=int, default=500,
                   help="comments kept per thread (default 500)")


def _add_filter(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("filter")
    g.add_argument("--max-words", type=int, default=200, help="drop longer turns (200)")
    g.add_argument("--min-score", type=int, default=1, help="drop lower-scored comments (1)")
    g.add_argument("--blocklist", metavar="FILE", help="words to drop (one per line)")
    g.add_argument("--no-blocklist", action="store_true", help="keep blocklisted words")
    g.add_argument("--language", default=None, help="keep only this language (en)")
    g.add_argument("--bot-author", action="append", metavar="NAME",
                   help="another author to drop as a bot (repeatable)")


def _default(name: str) -> Any:
    """TrainConfig's default for the setting ``name`` (the one source of training defaults)."""
    import dataclasses

    from training.train import TrainConfig

    return next(f.default for f in dataclasses.fields(TrainConfig) if f.name == name)


def _add_dataset(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("dataset")
    g.add_argument("--dialogues", metavar="FILE",
                   help="your own dialogues (.jsonl of turn lists, or .csv with columns "
                        "conversation,text) instead of Reddit")
    g.add_argument("--max-tokens", type=int, default=_default("max_tokens"),
                   help="longest instance in tokens (DialoGPT used 128)")
    g.add_argument("--min-turns", type=int, default=2, help=argparse.SUPPRESS)
    g.add_argument("--max-turns", type=int, default=5, help="turns per instance (2 to 5)")
    g.add_argument("--validation-fraction", type=float, default=0.1)


def _add_train(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("fine-tuning")
    from training.train import METHODS, PRECISIONS

    # Every default is TrainConfig's: the command line, the dialog and the Python API agree.
    g.add_argument("--method", choices=METHODS, default=_default("method"))
    g.add_argument("--lora-r", type=int, default=_default("lora_r"),
                   help=f"LoRA rank ({_default('lora_r')})")
    g.add_argument("--epochs", type=int, default=_default("epochs"))
    g.add_argument("--batch-size", type=int, default=_default("batch_size"))
    g.add_argument("--grad-accum", type=int, default=_default("grad_accum"),
                   help="gradient accumulation steps")
    g.add_argument("--lr", type=float, default=_default("lr"),
                   help="learning rate (5e-5 full, 2e-4 LoRA)")
    g.add_argument("--mask", choices=("last", "responses", "none"), default=_default("mask"),
                   help="which turns carry the loss: the last (each reply once; default), "
                        "every response turn, or all tokens")
    g.add_argument("--precision", choices=PRECISIONS, default=_default("precision"))
    g.add_argument("--gradient-checkpointing", action="store_true")
    g.add_argument("--save-every", type=int, default=_default("save_every"),
                   help="checkpoint every N steps")
    g.add_argument("--max-steps", type=int, default=_default("max_steps"))
    g.add_argument("--device", choices=DEVICE_SETTINGS, default=_default("device"))
    g.add_argument("--device-map", choices=("auto",), default=None,
                   help="split a model too big for one GPU over several (LoRA)")


def _add_export(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("export")
    g.add_argument("--name", help="the persona's name (default: the run name)")
    g.add_argument("--description", default="")
    g.add_argument("--adapter-only", action="store_true",
                   help="LoRA: ship the adapter and point at the base instead of merging")
    g.add_argument("--voice", metavar="NAME",
                   help="the voice the persona speaks in: an enrolled voice or builtin:NAME")


def build_parser() -> argparse.ArgumentParser:
    """The ``train`` command's parser."""
    parser = argparse.ArgumentParser(
        prog="talk-to-transformers train",
        description="Make a persona: scrape a subreddit (or bring a dialogue file), filter, "
                    "build a dataset, fine-tune, evaluate, export.")
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")

    def stage(name: str, text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--run", help="run name (its folder under the data folder's "
                       "training/); default: the persona name or subreddit")
        p.add_argument("--progress-json", action="store_true",
                       help="print progress as JSON lines (for programs)")
        p.add_argument("--seed", type=int, default=42)
        p.add_argument("--base", default="microsoft/DialoGPT-medium",
                       help="base model: Hub id, folder or persona id (default "
                            "microsoft/DialoGPT-medium)")
        return p

    _add_source(stage("scrape", "fetch threads with praw into raw/threads.jsonl"),
                required=True)
    _add_filter(stage("filter", "apply the DialoGPT filter rules; writes a report"))
    _add_dataset(stage("dataset", "multi-turn instances, split by thread"))
    p = stage("train", "fine-tune the base model (resumes from the last checkpoint)")
    _add_train(p)
    p.add_argument("--max-tokens", type=int, default=_default("max_tokens"),
                   help="longest training sequence")
    stage("evaluate", "perplexity base vs fine-tune, reply statistics, samples")
    _add_export(p := stage("export", "write the persona folder"))
    p = stage("all", "every stage in order (resumes where it stopped)")
    _add_source(p)
    p.add_argument("--recipe", help="a catalogue recipe (e.g. berkeley): its subreddit, base "
                   "model and name")
    _add_filter(p)
    _add_dataset(p)
    _add_train(p)
    _add_export(p)
    p.add_argument("--replace", action="store_true", help="replace a persona of that name")
    sub.add_parser("runs", help="list training runs and how far each got")
    login = sub.add_parser("reddit-login", help="store Reddit API credentials in the OS "
                           "keyring (asks for them)")
    login.add_argument("--clear", action="store_true", help="remove them instead")
    return parser


def _apply_recipe(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.recipe:
        from engine.models.catalogue import catalogue_entry

        entry = catalogue_entry(args.recipe)
        if entry is None or entry.kind != "recipe":
            parser.error(f"{args.recipe!r} is not a training recipe in the catalogue")
        args.subreddit = args.subreddit or entry.subreddit
        if args.base == parser.get_default("base") and entry.base_model:
            args.base = entry.base_model
        args.name = args.name or entry.name
    if not args.subreddit and not args.dialogues:
        parser.error("give --subreddit NAME, --dialogues FILE or --recipe NAME")


def _run_name(args: argparse.Namespace) -> str:
    return (args.run or getattr(args, "name", None) or getattr(args, "subreddit", None)
            or (Path(args.dialogues).stem if getattr(args, "dialogues", None) else None)
            or "persona")


def _list_runs(out) -> int:
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


def _reddit_login(args: argparse.Namespace, out) -> int:
    from getpass import getpass

    from training.credentials import clear_reddit_credentials, store_reddit_credentials

    if args.clear:
        print("Removed." if clear_reddit_credentials() else "None were stored.", file=out)
        return 0
    if not sys.stdin.isatty():
        raise TrainingError("reddit-login asks for the credentials and needs a terminal.",
                            hint="Or set REDDIT_CLIENT_ID, REDDIT_CLIENT_SECRET and "
                                 "REDDIT_USER_AGENT.", code="no_terminal")
    print("Create a 'script' app at https://www.reddit.com/prefs/apps, then:", file=out)
    client_id = input("client id: ").strip()
    secret = getpass("client secret (not shown): ").strip()
    agent = input("user agent [talk-to-transformers by u/you]: ").strip() or None
    store_reddit_credentials(client_id, secret, user_agent=agent)
    print("Stored in the OS keyring.", file=out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``train``; returns the exit status."""
    from engine.cli.common import print_error

    parser = build_parser()
    args = parser.parse_args(argv)
    out = sys.stdout
    cancel = CancelToken()

    def stop(signum: int, _frame: Any) -> None:
        if cancel.cancelled:
            if signum == signal.SIGINT:  # a second Ctrl-C: leave now
                raise KeyboardInterrupt
            return  # a repeated SIGTERM (the app closing): the checkpoint is being saved
        print("\nStopping at the next safe point (a checkpoint while training)...",
              file=sys.stderr, flush=True)
        cancel.cancel()

    try:
        if args.stage == "runs":
            return _list_runs(out)
        if args.stage == "reddit-login":
            return _reddit_login(args, out)
        if args.stage == "all":
            _apply_recipe(args, parser)
        if getattr(args, "voice", None):  # a missing voice fails now, not after training
            from engine.voices.builtin import find_any_voice

            find_any_voice(args.voice)
        run = run_folder(_run_name(args))
        report = Reporter(args.progress_json, out)
        previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            if args.stage == "all":
                return run_all(args, run, report, cancel)
            if args.stage == "scrape":
                return 0 if stage_scrape(args, run, report, cancel) else _stopped(report)
            if args.stage == "train":
                return 0 if stage_train(args, run, report, cancel) else _stopped(report)
            {"filter": stage_filter, "dataset": stage_dataset, "evaluate": stage_evaluate,
             "export": stage_export}[args.stage](args, run, report)
            return 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    except TalkError as err:
        if getattr(args, "progress_json", False):
            print(json.dumps({"stage": getattr(args, "stage", ""), "event": "error",
                              "code": err.code, "message": err.message, "hint": err.hint}),
                  flush=True)
        print_error(err)
        return 1
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    except Exception as err:  # a bug, out of memory, a full disk: one line, not a traceback
        return _unexpected(err, getattr(args, "progress_json", False))


def _unexpected(err: Exception, as_json: bool) -> int:
    from engine.cli.common import print_error

    text = f"{type(err).__name__}: {err}".strip()[:500]
    hint = "Try a smaller --batch-size or --max-tokens, LoRA, or --gradient-checkpointing." if (
        "out of memory" in text.lower()) else "Run it again; the stage resumes where it stopped."
    error = TrainingError(f"Training stopped on an unexpected error: {text}", hint=hint,
                          code="internal_error")
    if as_json:
        print(json.dumps({"stage": "", "event": "error", "code": error.code,
                          "message": error.message, "hint": error.hint}), flush=True)
    print_error(error)
    return 1


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
