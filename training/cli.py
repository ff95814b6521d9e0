"""``talk-to-transformers train``: each stage a command that reads and writes files in a run folder.

    scrape → filter → dataset → train → evaluate → export        (or ``all`` for the chain)

A run folder is ``<data folder>/training/<run>``; any stage can be re-run, and ``all`` resumes:
the scrape skips threads it has, training continues from its last checkpoint, a finished stage
is not redone. Ctrl-C (or SIGTERM, which the app's training dialog sends) stops at a clean
point — training saves a checkpoint first — and the same command continues later.
``--progress-json`` prints one JSON object per line for a program to read (the app does).

The parser and :func:`main` live here; the stages and run folders in ``training.runs``, the
JSON lines' message type in ``training.messages``.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.cancel import CancelToken
from engine.errors import TalkError
from engine.models.device import DEVICE_SETTINGS
from training.errors import TrainingError
from training.messages import ProgressMessage
from training.reporter import Reporter
from training.runs import (
    list_runs,
    run_all,
    run_folder,
    stage_dataset,
    stage_evaluate,
    stage_export,
    stage_filter,
    stage_scrape,
    stage_train,
    stopped,
)


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
            return list_runs(out)
        if args.stage == "reddit-login":
            return _reddit_login(args, out)
        if args.stage == "all":
            _apply_recipe(args, parser)
        if getattr(args, "voice", None):  # a missing voice fails now, not after training
            from engine.tts.builtin import find_any_voice

            find_any_voice(args.voice)
        run = run_folder(_run_name(args))
        report = Reporter(args.progress_json, out)
        previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            if args.stage == "all":
                return run_all(args, run, report, cancel)
            if args.stage == "scrape":
                return 0 if stage_scrape(args, run, report, cancel) else stopped(report)
            if args.stage == "train":
                return 0 if stage_train(args, run, report, cancel) else stopped(report)
            {"filter": stage_filter, "dataset": stage_dataset, "evaluate": stage_evaluate,
             "export": stage_export}[args.stage](args, run, report)
            return 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    except TalkError as err:
        if getattr(args, "progress_json", False):
            print(ProgressMessage.from_error(getattr(args, "stage", ""), err.code, err.message,
                                             err.hint).to_json(), flush=True)
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
        print(ProgressMessage.from_error("", error.code, error.message, error.hint).to_json(),
              flush=True)
    print_error(error)
    return 1
