"""Where the milliseconds of a spoken turn go: per-stage p50/p95, streamed vs naive, overhead.

N turns from recorded speech (espeak-ng WAVs) go through the real pipeline without waiting for a
microphone. Playback is simulated in real time (the audio device is not the subject here), so
"first audio" is when the first sentence starts playing. Each turn is a fresh one-turn
conversation. In the same run:

- per stage (ASR, first reply token, first speakable piece, first TTS chunk, first audio, the
  whole turn), p50 and p95 from the moment the recording is handed over (key release), plus the
  hands-free segmenter's wait after the end of speech (``vad_tail``, in audio time);
- the streamed pipeline vs a naive sequential turn (transcribe -> whole reply -> whole
  synthesis): first audio as a ratio (goal <= 0.3x);
- pipeline overhead: the streamed turn with instant playback vs the same model calls made one
  after another with no pipeline (goal <= 1.05x);
- ``--ptt``: push-to-talk as people use it. Each clip is fed in real time in 30 ms blocks to
  ``engine.asr.incremental.IncrementalTranscriber`` (the talk key held), then ``--release-after``
  seconds of silence (people let go a little after their last word); the turn starts at release
  with that transcriber. Beside it, in the same run and on the same clips, the one-shot turn
  (trim at release, then transcribe): stages from release, word error rate against the spoken
  sentence, and how often the early transcript was used.

Models:

- default: the test fixtures (tiny random DialoGPT, bundled Whisper tiny.en, tiny random Pocket
  TTS): the figures then show the pipeline, not model speed;
- ``--shapes real``: the issue's configurations. On CPU: the starter persona (real weights),
  the bundled tiny.en (real weights) and the CPU-default voice model (``pocket-tts-7m``) at full
  size with random weights. On CUDA: DialoGPT-large, Whisper small.en and the default voice
  model (``pocket-tts``), all full size with random weights. ``--chat`` (dialogpt-small,
  -medium, -large), ``--asr`` (base.en, small.en, medium.en) and ``--tts`` (a catalogue voice
  model) choose other stand-ins (built by ``benchmarks/shapes.py``, cached in
  ``~/.cache/ttt-shapes``). A stand-in's figures are speed only ("shape-true"): each reply is
  exactly ``--chat-tokens`` tokens, each transcript ``--asr-tokens`` tokens, each sentence as
  many 80 ms frames as its length takes to say; their words are garbage, so their WER means
  nothing.
- ``--load N`` keeps N extra processes spinning pure Python during the measurements (another
  program keeping cores busy) and prints how much CPU they got.

The configuration and the machine's load average at the start and end are printed (and written
by ``--json``).

    .venv/bin/python benchmarks/turn_latency.py [--turns 10] [--json out.json]
    .venv/bin/python benchmarks/turn_latency.py --persona starter --turns 4
    .venv/bin/python benchmarks/turn_latency.py --shapes real --ptt [--load 1]
    .venv/bin/python benchmarks/turn_latency.py --shapes real --device cuda --ptt
"""

from __future__ import annotations

import argparse
import atexit
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

STAGES = ["vad_tail", "asr", "first_token", "first_piece", "tts_first_chunk", "first_audio",
          "total"]
SAMPLE_RATE = 16000  # Hz, what the recognizer and the VAD take
BLOCK = 480  # samples: 30 ms, a microphone block as push-to-talk receives it
REAL_SHAPES = "real"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min, {os.cpu_count()} CPUs)"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--shapes", default="tiny", choices=("tiny", REAL_SHAPES),
                        help="tiny: test fixtures; real: the issue's models, full size")
    parser.add_argument("--chat", "--persona", dest="chat", default=None,
                        help="a persona (real weights), or with --shapes real dialogpt-small/"
                             "medium/large stand-ins (default: tiny random; --shapes real: "
                             "starter on CPU, dialogpt-large on CUDA)")
    parser.add_argument("--asr", "--asr-model", dest="asr", default=None,
                        help="Whisper model: 'bundled' (tiny.en), a downloaded size or a folder;"
                             " with --shapes real base.en/small.en/medium.en are stand-ins "
                             "(default: bundled; --shapes real on CUDA: small.en)")
    parser.add_argument("--asr-backend", default="faster-whisper",
                        choices=("faster-whisper", "whisper"))
    parser.add_argument("--tts", "--tts-model", dest="tts", default=None,
                        help="a catalogue voice model (default: tiny random; --shapes real: the "
                             "catalogue's default for the device, as a stand-in)")
    parser.add_argument("--chat-tokens", type=int, default=24,
                        help="stand-in chat models: tokens per reply")
    parser.add_argument("--asr-tokens", type=int, default=10,
                        help="stand-in Whisper: tokens per transcript, timestamps included")
    parser.add_argument("--load", type=int, default=0,
                        help="extra processes spinning pure Python during the measurements")
    parser.add_argument("--ptt", action="store_true",
                        help="push-to-talk: early (incremental) vs one-shot transcription")
    parser.add_argument("--release-after", type=float, default=0.3,
                        help="--ptt: seconds of silence between the last word and release")
    parser.add_argument("--json", default=None, help="write the figures here")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    started_load = loadavg()
    tmp = Path(tempfile.mkdtemp(prefix="ttt-turn-latency-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # ~0.5 GB a run
    os.environ["TTT_DATA_DIR"] = str(tmp / "data")
    from engine.audio.listener import Listener
    from engine.conversation import ChatSession
    from engine.models.device import resolve
    from engine.pipeline.turns import FIRST_WORDS, VoicePipeline
    from engine.store import ConversationStore
    from engine.tts.text import split_stream
    from tests.fakes import FakePlayer
    from tests.speech import SENTENCES, speech_array

    device = resolve(args.device).device
    early_class = _incremental_class() if args.ptt else None
    clips = [speech_array(SENTENCES[i % len(SENTENCES)], tmp) for i in range(args.turns)]
    references = [SENTENCES[i % len(SENTENCES)] for i in range(args.turns)]
    chat, persona, chat_label = open_chat(args, device, tmp)
    recognizer, asr_label = open_asr(args, device, clips[0])
    tts, tts_label = open_tts(args, device, tmp)
    # Each measured turn is a fresh one-turn conversation and every clip is run several times:
    # reusing the KV cache of the same prompt run a moment before would make every run after
    # the first faster than any real turn. (A growing conversation reuses its history instead.)
    if hasattr(chat, "reuse_kv_cache"):
        chat.reuse_kv_cache = False
    store = ConversationStore(tmp / "bench.sqlite3")
    import torch

    config = {"device": device, "shapes": args.shapes, "chat": chat_label, "asr": asr_label,
              "tts": tts_label, "turns": args.turns, "load_processes": args.load,
              "ptt": args.ptt, "release_after_s": args.release_after if args.ptt else None,
              "torch_threads": torch.get_num_threads()}
    stand_in = any("random weights" in label for label in (chat_label, asr_label, tts_label))
    print("=" * 100)
    if stand_in:
        print("SHAPE-TRUE (random weights): SPEED ONLY for the models marked so; their words "
              "are garbage")
    for key, value in config.items():
        print(f"  {key:<16} {value}")
    print(f"  loadavg (start) {started_load}")
    print("=" * 100)

    def fresh(player=None) -> VoicePipeline:
        session = ChatSession(store, chat, persona.id)
        return VoicePipeline(session, recognizer=recognizer, tts=tts, player=player)

    # Warm every model once.
    warm = FakePlayer(speed=1e6)
    fresh(warm).run_audio_turn(clips[0])
    warm.close()

    load = BusyLoad(args.load)
    load.start()
    streamed: dict[str, list[float]] = {s: [] for s in STAGES}
    ptt: dict[str, dict[str, Any]] = {kind: {"stages": {s: [] for s in STAGES[1:]}, "wer": [],
                                             "texts": [], "failed": 0}
                                      for kind in ("one_shot", "early")}
    hits: list[bool | None] = []
    early_decodes: list[int] = []
    naive_first, overhead_pipe, overhead_raw = [], [], []
    try:
        for index, clip in enumerate(clips):
            streamed["vad_tail"].append(_vad_tail(Listener(), clip))
            player = FakePlayer(speed=1.0)
            result = fresh(player).run_audio_turn(clip, time.perf_counter())
            player.close()
            for stage in STAGES[1:]:
                if stage in result.timings:
                    streamed[stage].append(result.timings[stage])
            if early_class is not None:
                recording = np.concatenate(
                    [clip, np.zeros(int(args.release_after * SAMPLE_RATE), np.float32)])
                # Alternate which goes first, so neither always runs on a warmer machine.
                order = ("early", "one_shot") if index % 2 == 0 else ("one_shot", "early")
                for kind in order:
                    player = FakePlayer(speed=1.0)
                    pipeline = fresh(player)
                    if kind == "early":
                        result, hit, decodes = _ptt_early(pipeline, early_class, recording)
                        hits.append(hit)
                        early_decodes.append(decodes)
                    else:
                        result = _ptt_one_shot(pipeline, recording)
                    player.close()
                    _record(ptt[kind], result, references[index])
            # Naive: every stage waits for the previous one to finish completely.
            t0 = time.perf_counter()
            text = recognizer.transcribe(clip).text
            session = ChatSession(store, chat, persona.id)
            reply = "".join(session.send(text))
            list(tts.synthesize(reply, None))
            naive_first.append(time.perf_counter() - t0)
            # Overhead: the pipeline with instant playback vs the bare calls in sequence.
            instant = FakePlayer(speed=1e6)
            t0 = time.perf_counter()
            fresh(instant).run_audio_turn(clip, t0)
            overhead_pipe.append(time.perf_counter() - t0)
            instant.close()
            t0 = time.perf_counter()
            text = recognizer.transcribe(clip).text
            pieces = list(split_stream(first_words=FIRST_WORDS, tokens=chat.stream_reply(
                ChatSession(store, chat, persona.id).history + [_turn(text)])))
            for piece in pieces:
                list(tts.synthesize(piece, None))
            overhead_raw.append(time.perf_counter() - t0)
    finally:
        load_report = load.stop()

    figures: dict[str, Any] = {"label": "shape-true (random weights): speed only" if stand_in
                               else "real weights or test fixtures", "config": config,
                               "loadavg_start": started_load}
    print(f"\n{'stage (from hand-over)':<28}{'p50 ms':>10}{'p95 ms':>10}{'n':>5}")
    figures["stages"] = _table(streamed)
    if early_class is not None:
        _print_ptt(ptt, hits, early_decodes, args.release_after, "random weights" in asr_label)
        figures["ptt"] = {kind: {"stages": _table(data["stages"], quiet=True),
                                 "wer": statistics.mean(data["wer"]) if data["wer"] else None,
                                 "failed": data["failed"], "texts": data["texts"]}
                          for kind, data in ptt.items()}
        figures["ptt"]["early_hits"] = sum(bool(h) for h in hits)
        figures["ptt"]["early_decodes"] = early_decodes
    elif args.ptt:
        figures["ptt"] = None
    first = statistics.median(streamed["first_audio"])
    naive = statistics.median(naive_first)
    ratio = first / naive
    over = statistics.median(overhead_pipe) / statistics.median(overhead_raw)
    print(f"\nhand-over -> first audio: streamed {first * 1000:.0f} ms, naive sequential "
          f"{naive * 1000:.0f} ms, ratio {ratio:.2f}x (goal <= 0.3x)")
    print(f"pipeline vs bare model calls: {statistics.median(overhead_pipe) * 1000:.0f} ms vs "
          f"{statistics.median(overhead_raw) * 1000:.0f} ms, ratio {over:.3f}x (goal <= 1.05x)")
    print("(vad_tail is in audio time: speech end to the hands-free segmenter's end of "
          "utterance.)")
    decoded = getattr(recognizer, "decoded_tokens", None)
    if decoded:
        print(f"stand-in Whisper: {min(decoded)}-{max(decoded)} tokens per decode")
    if load_report:
        print(load_report["summary"])
    ended_load = loadavg()
    print(f"loadavg (start) {started_load}\nloadavg (end)   {ended_load}")
    if stand_in:
        print("[SHAPE-TRUE (random weights): speed only]")
    figures.update(streamed_vs_naive=ratio, overhead=over, load=load_report,
                   loadavg_end=ended_load)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2), encoding="utf-8")
        print(f"wrote {args.json}")


# -- models -------------------------------------------------------------------------------------
def open_chat(args: argparse.Namespace, device: str, tmp: Path) -> tuple[Any, Any, str]:
    """(chat backend, persona, label) for the options."""
    from benchmarks import shapes
    from engine.chat.local import LocalChat
    from engine.models.persona import load_persona
    from engine.models.registry import find_persona

    name = args.chat
    if name is None and args.shapes == REAL_SHAPES:
        name = "dialogpt-large" if device == "cuda" else "starter"
    if args.shapes == REAL_SHAPES and name in shapes.DIALOGPT:
        persona = load_persona(shapes.dialogpt(name, args.chat_tokens))
        label = (f"{name} ({shapes.LABEL}; {args.chat_tokens} tokens per reply, no sentence "
                 "end: the reply is one piece)")
    elif name is not None:
        persona = find_persona(name)
        label = f"{persona.id} (real weights)"
    else:
        from tests.tiny_models import build_tiny_dialogpt

        persona = load_persona(build_tiny_dialogpt(tmp / "tiny", n_positions=512, decoding={
            "do_sample": False, "max_new_tokens": 40, "repetition_penalty": 1.0,
            "no_repeat_ngram_size": 0}))
        label = "tiny random DialoGPT (test fixture)"
    chat = LocalChat.load(persona, device=device)
    return chat, persona, f"{label} on {chat.device}"


def open_asr(args: argparse.Namespace, device: str, probe: np.ndarray) -> tuple[Any, str]:
    """(recognizer, label) for the options; ``probe`` calibrates a stand-in's decode length."""
    from benchmarks import shapes
    from engine.asr import open_recognizer

    name = args.asr
    if name is None and args.shapes == REAL_SHAPES and device == "cuda":
        name = "small.en"
    if name in (None, "bundled"):
        recognizer = open_recognizer(args.asr_backend, device=device, language="en")
        return recognizer, f"{args.asr_backend} bundled tiny.en (real weights)"
    if args.shapes == REAL_SHAPES and name in shapes.WHISPER:
        if args.asr_backend != "faster-whisper":
            sys.exit("A stand-in Whisper is a CTranslate2 model: use --asr-backend "
                     "faster-whisper.")
        recognizer = open_recognizer("faster-whisper", device=device, language="en",
                                     model=str(shapes.whisper(name)))
        tokens = shapes.fix_decode_length(recognizer, args.asr_tokens, probe)
        return recognizer, (f"faster-whisper {name} ({shapes.LABEL}; {tokens} tokens per "
                            "decode)")
    recognizer = open_recognizer(args.asr_backend, device=device, language="en", model=name)
    return recognizer, f"{args.asr_backend} {name} (real weights)"


def open_tts(args: argparse.Namespace, device: str, tmp: Path) -> tuple[Any, str]:
    """(voice model, label) for the options."""
    from benchmarks import shapes
    from engine.tts.pocket import PocketTTS

    name = args.tts
    if name is None and args.shapes == REAL_SHAPES:
        from engine.models.catalogue import tts_catalogue

        entries = tts_catalogue()
        name = next((e.id for e in entries if device in e.default_on), entries[0].id)
    if args.shapes == REAL_SHAPES and name is not None:
        tts = shapes.pocket_tts(name, device)
        return tts, (f"{name} ({shapes.LABEL}; int8 {tts.quantized}; frames fixed by text "
                     f"length, {shapes.CHARS_PER_SECOND:.0f} characters a second)")
    if name is not None:
        return PocketTTS(name, device=device), f"{name} (real weights)"
    # A tiny random pocket-tts model, laid into a private Hub cache as a pull would.
    import yaml
    from huggingface_hub import constants

    from tests.tiny_pocket_tts import build_pocket_repos, install_into_cache

    repos = build_pocket_repos(tmp / "pocket")
    constants.HF_HUB_CACHE = str(tmp / "hf-cache")
    install_into_cache(repos, tmp / "hf-cache")
    config = yaml.safe_load(repos.config.read_text())
    config["default_eos_threshold"] = -1e9  # each piece ends as early as allowed
    repos.config.write_text(yaml.safe_dump(config))
    return PocketTTS(str(repos.config), device=device), "tiny random Pocket TTS (test fixture)"


# -- push-to-talk -------------------------------------------------------------------------------
def _incremental_class() -> Any:
    """engine.asr.incremental's transcriber, or None (said so) where this checkout lacks it."""
    try:
        from engine.asr.incremental import IncrementalTranscriber
    except ImportError as err:
        print(f"--ptt skipped: engine.asr.incremental cannot be imported ({err}).")
        return None
    return IncrementalTranscriber


def _ptt_early(pipeline: Any, early_class: Any, recording: np.ndarray) -> tuple[Any, Any, int]:
    """The talk key held over ``recording`` in real time, then released: (result, hit, decodes)."""
    from engine.audio.listener import Listener
    from engine.errors import TalkError

    transcriber = early_class(pipeline.recognizer, gate=pipeline.gate)
    started = time.perf_counter()
    for offset in range(0, len(recording), BLOCK):
        # A microphone block exists once its 30 ms have been recorded.
        wait = started + (offset + BLOCK) / SAMPLE_RATE - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        transcriber.push(recording[offset:offset + BLOCK])
    released = time.perf_counter()
    try:  # cut with the verdicts the transcriber decoded with, as PushToTalk.release does
        audio = Listener().trim(recording, transcriber.verdicts)
    except TalkError:
        transcriber.close()
        return None, None, transcriber.early_decodes
    result = pipeline.run_audio_turn(audio, released, early=transcriber)
    return result, transcriber.hit, transcriber.early_decodes


def _ptt_one_shot(pipeline: Any, recording: np.ndarray) -> Any:
    """The same recording released at once and transcribed then (no early decode)."""
    from engine.audio.listener import Listener
    from engine.errors import TalkError

    released = time.perf_counter()
    try:
        audio = Listener().trim(recording)
    except TalkError:
        return None
    return pipeline.run_audio_turn(audio, released)


def _record(into: dict[str, Any], result: Any, reference: str) -> None:
    from tests.speech import word_error_rate

    if result is None or result.failed_stage is not None:
        into["failed"] += 1
        into["texts"].append(None)
        return
    for stage, values in into["stages"].items():
        if stage in result.timings:
            values.append(result.timings[stage])
    into["wer"].append(word_error_rate(reference, result.user))
    into["texts"].append(result.user)


def _print_ptt(ptt: dict[str, dict[str, Any]], hits: list[Any], decodes: list[int],
               release_after: float, asr_stand_in: bool) -> None:
    one, early = ptt["one_shot"], ptt["early"]
    print(f"\npush-to-talk, from key release ({release_after:.2f} s of silence after the last "
          f"word, 30 ms blocks in real time)")
    print(f"{'stage (from release)':<28}{'one-shot p50':>14}{'p95':>8}{'early p50':>12}"
          f"{'p95':>8}{'early/one-shot':>16}")
    for stage in STAGES[1:]:
        a, b = one["stages"][stage], early["stages"][stage]
        pa, pb = percentile(a, 50) * 1000, percentile(b, 50) * 1000
        print(f"{stage:<28}{pa:>14.0f}{percentile(a, 95) * 1000:>8.0f}{pb:>12.0f}"
              f"{percentile(b, 95) * 1000:>8.0f}{pb / pa if pa else float('nan'):>15.2f}x")
    for name, data in (("one-shot", one), ("early", early)):
        wer = statistics.mean(data["wer"]) if data["wer"] else float("nan")
        note = " (meaningless: a stand-in recognizer writes garbage)" if asr_stand_in else ""
        print(f"WER {name:<9} {wer * 100:5.1f} % over {len(data['wer'])} turns, "
              f"{data['failed']} failed{note}")
    print(f"early transcript used at release: {sum(bool(h) for h in hits)}/{len(hits)} turns; "
          f"early decodes per turn: {decodes}")
    same = sum(a == b for a, b in zip(one["texts"], early["texts"], strict=True))
    print(f"same words, early vs one-shot: {same}/{len(one['texts'])} turns")
    print("(goals, release -> first audio p50: <= 800 ms on an idle 2-core CPU, <= 1500 ms with "
          "one core busy, <= 400 ms on a GPU; early WER equal to one-shot)")


# -- load and figures ---------------------------------------------------------------------------
def _spin(stop: Any, results: Any) -> None:
    """Keep one core busy with pure Python until ``stop`` is set; report CPU and wall time."""
    started, cpu = time.perf_counter(), time.process_time()
    while not stop.is_set():
        for _ in range(100_000):  # check the event rarely: the spinning is the point
            pass
    results.put((time.process_time() - cpu, time.perf_counter() - started))


class BusyLoad:
    """N processes spinning pure Python: another program keeping cores busy."""

    def __init__(self, processes: int):
        # spawn, not fork: this process already runs torch and model threads.
        self._context = multiprocessing.get_context("spawn")
        self._stop = self._context.Event()
        self._results = self._context.Queue()
        self._workers = [self._context.Process(target=_spin, args=(self._stop, self._results),
                                               daemon=True) for _ in range(processes)]

    def start(self) -> None:
        """Start spinning (and give the processes a second to get going)."""
        for worker in self._workers:
            worker.start()
        if self._workers:
            time.sleep(1.0)  # let them start before the first measurement
            print(f"load: {len(self._workers)} busy-loop process(es) spinning pure Python; "
                  f"loadavg {loadavg()}")

    def stop(self) -> dict[str, Any] | None:
        """Stop them; the share of a core each got, or None when there were none."""
        if not self._workers:
            return None
        self._stop.set()
        shares = []
        for _ in self._workers:
            cpu, wall = self._results.get(timeout=30)
            shares.append(cpu / wall if wall else 0.0)
        for worker in self._workers:
            worker.join(timeout=10)
        summary = (f"load: {len(shares)} busy-loop process(es) spinning pure Python got "
                   f"{', '.join(f'{s * 100:.0f}%' for s in shares)} of a core each during "
                   "the measurements")
        return {"processes": len(shares), "core_share": shares, "summary": summary}


def _table(values: dict[str, list[float]], quiet: bool = False) -> dict[str, dict[str, float]]:
    table = {s: {"p50_ms": percentile(v, 50) * 1000, "p95_ms": percentile(v, 95) * 1000,
                 "n": len(v)} for s, v in values.items()}
    if not quiet:
        for stage, row in table.items():
            print(f"{stage:<28}{row['p50_ms']:>10.0f}{row['p95_ms']:>10.0f}{row['n']:>5}")
    return table


def _turn(text: str):
    from engine.chat.types import Turn

    return Turn("user", text)


def _vad_tail(listener, clip: np.ndarray) -> float:
    """Seconds of audio between the end of speech and the segmenter ending the utterance."""
    from engine.audio.frames import FrameSlicer

    silence = np.zeros(SAMPLE_RATE * 3, np.float32)
    audio = np.concatenate([clip, silence])
    vad = listener.vad
    slicer = FrameSlicer(30)
    frames = slicer.push(clip)
    voiced_end = max((i + 1) * BLOCK for i, f in enumerate(frames) if vad.is_speech(f))
    blocks = np.array_split(audio, len(audio) // BLOCK)
    consumed = 0

    def feed():
        nonlocal consumed
        for block in blocks:
            consumed += len(block)
            yield block

    next(listener.hands_free(feed()))
    return (consumed - voiced_end) / SAMPLE_RATE


if __name__ == "__main__":
    main()
