"""``talk-to-transformers``: the command-line entry point.

Errors of the project's hierarchy are printed as a message (and hint), never a traceback; the
exit status is 1 for those, 2 for bad usage, 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from engine import __version__
from engine.cli.common import print_error
from engine.errors import TalkError
from engine.models.device import DEVICE_SETTINGS
from engine.settings import ASR_BACKENDS, REMOTE_APIS


def _add_decoding_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("decoding (override the persona's settings)")
    group.add_argument("--max-new-tokens", type=int, metavar="N", help="reply length limit")
    group.add_argument("--temperature", type=float, metavar="T")
    group.add_argument("--top-k", type=int, metavar="K")
    group.add_argument("--top-p", type=float, metavar="P")
    group.add_argument("--repetition-penalty", type=float, metavar="R")
    group.add_argument("--no-repeat-ngram-size", type=int, metavar="N")
    sampling = group.add_mutually_exclusive_group()
    sampling.add_argument("--greedy", dest="do_sample", action="store_false", default=None,
                          help="deterministic replies (no sampling)")
    sampling.add_argument("--sample", dest="do_sample", action="store_true",
                          help="sample replies")


def _add_remote_flags(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--remote", metavar="URL", help=what)
    parser.add_argument("--remote-api", choices=REMOTE_APIS, default="auto",
                        help="the server's API: openai (vLLM, TGI, transformers serve, "
                             "Inference Endpoints...), tgi (TGI's own, the app's serve), or "
                             "auto: ask the server (default)")
    parser.add_argument("--remote-model", metavar="NAME",
                        help="model name to ask the server for (default: its first)")


def _add_asr_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("speech recognition")
    group.add_argument("--asr", choices=ASR_BACKENDS, default="faster-whisper",
                       help="backend (default faster-whisper)")
    group.add_argument("--model", default=None,
                       help="model: a size such as small.en, or a path; default: the bundled "
                            "Whisper tiny.en")
    group.add_argument("--language", default="auto", help="language code, or auto")
    group.add_argument("--asr-device", choices=DEVICE_SETTINGS, default="auto")


def _seconds(text: str) -> float:
    value = float(text.lower().removesuffix("s"))
    if not 1 <= value <= 120:
        raise argparse.ArgumentTypeError("record between 1 and 120 seconds")
    return value


def _add_tts_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("voice output")
    group.add_argument("--tts-model", default="auto",
                       help="voice model: a catalogue id (pocket-tts, pocket-tts-7m, "
                            "pocket-tts-2m; see `models list`), or auto (default: the small "
                            "model on a CPU, the full one on a GPU)")
    group.add_argument("--tts-device", choices=DEVICE_SETTINGS, default="auto")
    group.add_argument("--speaker-device", help="output device (number or part of its name)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to print the README's CLI reference)."""
    parser = argparse.ArgumentParser(
        prog="talk-to-transformers",
        description="Talk to a DialoGPT persona. With no command, starts `chat`.",
        # `train` lives in the training package, which the engine never imports; the installed
        # launcher (app/cli.py) hands it over.
        epilog="Make a new persona: talk-to-transformers train --help. "
               "The window: talk-to-transformers-app.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    chat = sub.add_parser("chat", help="typed chat in the terminal (streamed replies)")
    chat.add_argument("--persona", "-p", metavar="P",
                      help="persona id, name or folder (default: starter)")
    _add_remote_flags(chat, "use an inference server (vLLM, TGI, transformers serve, an "
                            "Inference Endpoint, the app's serve) instead of a local model")
    chat.add_argument("--device", choices=DEVICE_SETTINGS, default="auto",
                      help="where the local model runs (default: auto = CUDA if present)")
    where = chat.add_mutually_exclusive_group()
    where.add_argument("--continue", dest="resume", action="store_true",
                       help="continue the most recent conversation")
    where.add_argument("--conversation", type=int, metavar="ID",
                       help="continue conversation ID (see /history)")
    chat.add_argument("--message", "-m", action="append", metavar="TEXT",
                      help="send TEXT and print the reply, without a prompt (repeatable)")
    chat.add_argument("--speak", action="store_true", help="speak replies aloud")
    chat.add_argument("--voice", help="voice for spoken replies: an enrolled one, or built-in "
                                      "(builtin:alba, builtin:marius...); default: the "
                                      "persona's, else builtin:alba")
    _add_tts_flags(chat)
    _add_decoding_flags(chat)

    models = sub.add_parser("models", help="list, pull, add, remove, export or import "
                                           "personas; pull voice models and Whisper sizes")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    msub.add_parser("list", help="catalogue, installed personas, voice models and Whisper "
                                 "sizes, with sizes and what is here")
    pull = msub.add_parser("pull", help="download a catalogue persona, voice model or Whisper "
                                        "size (small.en...) from the Hugging Face Hub; Ctrl-C "
                                        "stops it")
    pull.add_argument("name")
    add = msub.add_parser("add", help="add a local persona folder or transformers checkpoint")
    add.add_argument("folder")
    add.add_argument("--name", help="name to show (default: the folder's)")
    remove = msub.add_parser("remove", help="remove an installed persona or a pulled Whisper "
                                            "size")
    remove.add_argument("name")
    remove.add_argument("--purge-cache", action="store_true",
                        help="also delete its files from the Hugging Face cache")
    mexport = msub.add_parser("export", help="write a persona and its voice to one zip file, "
                                             "to hand to someone")
    mexport.add_argument("name", help="the persona")
    mexport.add_argument("file", help="the zip file to write")
    mexport.add_argument("--without-voice", action="store_true",
                         help="leave the persona's enrolled voice out")
    mimport = msub.add_parser("import", help="add a persona (and its voice) from a zip file "
                                             "made by `models export`")
    mimport.add_argument("file")
    mimport.add_argument("--name", help="import it under another name")

    serve = sub.add_parser("serve", help="serve a persona over HTTP (OpenAI API, on an engine)")
    serve.add_argument("--persona", "-p", metavar="P")
    serve.add_argument("--engine", choices=("auto", "transformers", "vllm", "builtin"),
                       default="auto",
                       help="transformers serve with continuous batching, vLLM (auto picks it "
                            "where it is installed and a CUDA GPU is present), or builtin: the "
                            "older server speaking TGI's generate API, one reply at a time")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1; 0.0.0.0 exposes it)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--device", choices=DEVICE_SETTINGS, default="auto")
    serve.add_argument("--max-waiting", type=int, default=4, metavar="N",
                       help="requests in flight beyond the first; more get 503 with "
                            "Retry-After at once (default 4)")
    serve.add_argument("--token-env", default="TTT_SERVE_TOKEN", metavar="VAR",
                       help="environment variable holding the bearer token clients must send "
                            "(default TTT_SERVE_TOKEN; unset = no token needed)")
    _add_decoding_flags(serve)

    talk = sub.add_parser("talk", help="a spoken conversation: speak, hear the reply")
    talk.add_argument("--persona", "-p", metavar="P")
    talk.add_argument("--voice", help="enrolled or built-in voice (builtin:alba) for replies "
                                      "(default: the persona's)")
    _add_remote_flags(talk, "chat model on an inference server (OpenAI API or TGI)")
    talk.add_argument("--device-model", choices=DEVICE_SETTINGS, default="auto",
                      help="where the chat model runs")
    talk.add_argument("--device", "-d", metavar="D", help="microphone (number or name)")
    talk.add_argument("--hands-free", action="store_true",
                      help="no keys: the voice detector hears when you stop")
    talk.add_argument("--headphones", action="store_true",
                      help="hands-free without muting the microphone while the assistant "
                           "speaks, so talking interrupts it (needs headphones: no echo)")
    talk.add_argument("--sensitivity", type=int, choices=(0, 1, 2, 3), default=2)
    talk.add_argument("--continue", dest="resume", action="store_true",
                      help="continue the most recent conversation")
    _add_asr_flags(talk)
    _add_tts_flags(talk)
    _add_decoding_flags(talk)
    sub.add_parser("devices", help="list audio input devices")
    listen = sub.add_parser("listen", help="record from the microphone and print what was said")
    listen.add_argument("--device", "-d", metavar="D",
                        help="input device: number or part of its name (default: the system's)")
    listen.add_argument("--hands-free", action="store_true",
                        help="the voice detector decides when you stop (default: push-to-talk "
                             "with Enter)")
    listen.add_argument("--once", action="store_true", help="stop after one utterance")
    listen.add_argument("--sensitivity", type=int, choices=(0, 1, 2, 3), default=2,
                        help="hands-free voice detector strictness (default 2)")
    _add_asr_flags(listen)
    transcribe = sub.add_parser("transcribe", help="transcribe audio files")
    transcribe.add_argument("files", nargs="+", metavar="FILE",
                            help="WAV, FLAC, OGG; MP3/M4A need ffmpeg")
    _add_asr_flags(transcribe)

    voices = sub.add_parser("voices", help="enroll, list, preview and manage cloned voices")
    vsub = voices.add_subparsers(dest="voices_command", metavar="ACTION", required=True)
    vsub.add_parser("list", help="enrolled voices with their verdicts")
    vadd = vsub.add_parser("add", help="enroll a voice from a recording or a file")
    vadd.add_argument("name")
    source = vadd.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", "-f", help="WAV, FLAC, OGG or MP3 sample (5-60 s of speech)")
    source.add_argument("--record", metavar="SECONDS", type=_seconds,
                        help="record from the microphone, e.g. 10s")
    vadd.add_argument("--device", "-d", help="input device for --record")
    vadd.add_argument("--consent", metavar="YOUR_NAME",
                      help="confirm that this is your voice or that you have the speaker's "
                           "permission to clone it (asked for on a terminal when missing)")
    vadd.add_argument("--keep-anyway", action="store_true",
                      help="keep a sample that fails its checks (it is flagged)")
    vrename = vsub.add_parser("rename", help="rename a voice")
    vrename.add_argument("name")
    vrename.add_argument("new_name")
    vdelete = vsub.add_parser("delete", help="delete a voice")
    vdelete.add_argument("name")
    vexport = vsub.add_parser("export", help="write a voice to a zip file")
    vexport.add_argument("name")
    vexport.add_argument("file")
    vimport = vsub.add_parser("import", help="add a voice from a zip file")
    vimport.add_argument("file")
    vpreview = vsub.add_parser("preview", help="speak a sentence in the voice; scores similarity")
    vpreview.add_argument("name")
    vpreview.add_argument("--text", default="Hello! This is how I sound when I talk to you.")
    _add_tts_flags(vpreview)
    vpair = vsub.add_parser("pair", help="make a persona speak in a voice (enrolled or "
                                         "builtin:NAME)")
    vpair.add_argument("voice")
    vpair.add_argument("persona")
    vunpair = vsub.add_parser("unpair", help="a persona speaks in its own default voice again")
    vunpair.add_argument("persona")
    vplay = vsub.add_parser("play", help="hear the stored sample of a voice, as enrolled")
    vplay.add_argument("name")
    vplay.add_argument("--speaker-device", help="output device (number or part of its name)")
    say = sub.add_parser("say", help="speak text in a voice")
    say.add_argument("text")
    say.add_argument("--voice", help="enrolled voice, or a built-in one such as builtin:marius "
                                     "(default: builtin:alba)")
    say.add_argument("--output", "-o", help="write a WAV file instead of playing")
    _add_tts_flags(say)

    token = sub.add_parser("token", help="the Hugging Face token in the OS keyring")
    tsub = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    tsub.add_parser("set", help="store a token (asked for, not echoed)")
    tsub.add_parser("clear", help="remove the stored token")
    tsub.add_parser("status", help="say where the token comes from (never prints it)")
    return parser


def _sweep_leftovers() -> None:
    """Remove what a killed earlier run left half-written (hidden, never listed anyway)."""
    from engine import paths
    from engine.fsutil import sweep_leftovers

    try:
        for path in sweep_leftovers(paths.data_dir()):
            logging.getLogger(__name__).info("removed %s, left by a process that was killed",
                                             path)
    except OSError:
        pass  # a data folder that cannot be read is reported by the command that needs it


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        _quiet_libraries()
    _sweep_leftovers()
    command = args.command or "chat"
    if args.command is None:
        args = parser.parse_args([*(["-v"] if args.verbose else []), "chat"])
    try:
        if command == "chat":
            from engine.cli.chat import run_chat

            return run_chat(args)
        if command == "models":
            from engine.cli.models import run_models

            return run_models(args)
        if command == "serve":
            from engine.cli.serve import run_serve

            return run_serve(args)
        if command == "talk":
            from engine.cli.talk import run_talk

            args.speak = True
            return run_talk(args)
        if command in ("devices", "listen", "transcribe"):
            from engine.cli.listen import run_audio

            return run_audio(args)
        if command in ("voices", "say"):
            from engine.cli.voices import run_voices

            return run_voices(args)
        if command == "token":
            from engine.cli.token import run_token

            return run_token(args)
    except TalkError as err:
        print_error(err)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    parser.error(f"unknown command {command!r}")
    return 2


def _quiet_libraries() -> None:
    """Keep library chatter (progress bars of loads, advisory warnings) off the chat screen."""
    import os
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    warnings.filterwarnings("ignore", category=UserWarning, module="transformers")
