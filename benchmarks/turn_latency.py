"""Where the milliseconds of a spoken turn go: per-stage p50/p95, streamed vs naive, overhead.

N turns from recorded speech (espeak-ng WAVs) go through the real pipeline without waiting for a
microphone. Playback is simulated in real time (the audio device is not the subject here), so
"first audio out" is when the first sentence starts playing. In the same run:

- streamed pipeline vs a naive sequential turn (transcribe → full reply → full synthesis →
  play): end of speech → first audio, as a ratio (goal <= 0.5);
- pipeline overhead: the streamed turn with instant playback vs the same model calls made one
  after another with no pipeline (goal <= 1.05).

With no options it runs the test fixtures on CPU (tiny DialoGPT, bundled Whisper tiny.en, tiny
Pocket TTS): the figures then show the pipeline, not real model speed. On a GPU machine:
``--device cuda --persona dialogpt-large --asr-model small.en --tts-model pocket-tts``.

    .venv/bin/python benchmarks/turn_latency.py [--turns 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

STAGES = ["vad_tail", "asr", "first_token", "first_piece", "tts_first_chunk", "first_audio",
          "total"]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--persona", default=None, help="default: a tiny random DialoGPT")
    parser.add_argument("--asr-model", default=None, help="default: the bundled tiny.en")
    parser.add_argument("--asr", default="faster-whisper", choices=("faster-whisper", "whisper"))
    parser.add_argument("--tts-model", default=None, help="default: a tiny random Pocket TTS")
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp())
    os.environ["TTT_DATA_DIR"] = str(tmp / "data")
    from engine.asr import open_recognizer
    from engine.audio.listener import Listener
    from engine.chat.local import LocalChat
    from engine.conversation import ChatSession
    from engine.models.persona import load_persona
    from engine.models.registry import find_persona
    from engine.pipeline.turns import VoicePipeline
    from engine.store import ConversationStore
    from engine.tts.pocket import PocketTTS
    from engine.tts.text import split_stream
    from tests.fakes import FakePlayer
    from tests.speech import SENTENCES, speech_array
    from tests.tiny_models import build_tiny_dialogpt

    if args.persona:
        persona = find_persona(args.persona)
    else:
        persona = load_persona(build_tiny_dialogpt(tmp / "tiny", n_positions=512, decoding={
            "do_sample": False, "max_new_tokens": 40, "repetition_penalty": 1.0,
            "no_repeat_ngram_size": 0}))
    chat = LocalChat.load(persona, device=args.device)
    recognizer = open_recognizer(args.asr, device=args.device, language="en",
                                 **({"model": args.asr_model} if args.asr_model else {}))
    if args.tts_model:
        tts = PocketTTS(args.tts_model, device=args.device)
    else:  # a tiny random pocket-tts model, laid into a private Hub cache as a pull would
        import yaml
        from huggingface_hub import constants

        from tests.tiny_pocket_tts import build_pocket_repos, install_into_cache

        repos = build_pocket_repos(tmp / "pocket")
        constants.HF_HUB_CACHE = str(tmp / "hf-cache")
        install_into_cache(repos, tmp / "hf-cache")
        config = yaml.safe_load(repos.config.read_text())
        config["default_eos_threshold"] = -1e9  # each piece ends as early as allowed
        repos.config.write_text(yaml.safe_dump(config))
        tts = PocketTTS(str(repos.config), device=args.device)
    store = ConversationStore(tmp / "bench.sqlite3")
    clips = [speech_array(SENTENCES[i % len(SENTENCES)], tmp) for i in range(args.turns)]
    print(f"{args.turns} turns; chat {persona.name} on {chat.device}; ASR {args.asr} "
          f"{args.asr_model or 'bundled tiny.en'}; TTS {args.tts_model or 'tiny random'}")

    def fresh(player=None):
        session = ChatSession(store, chat, persona.id)
        return VoicePipeline(session, recognizer=recognizer, tts=tts, player=player)

    # Warm every model once.
    warm = FakePlayer(speed=1e6)
    fresh(warm).run_audio_turn(clips[0])
    warm.close()

    streamed: dict[str, list[float]] = {s: [] for s in STAGES}
    naive_first, overhead_pipe, overhead_raw = [], [], []
    for clip in clips:
        streamed["vad_tail"].append(_vad_tail(Listener(), clip))
        player = FakePlayer(speed=1.0)
        result = fresh(player).run_audio_turn(clip, time.perf_counter())
        player.close()
        for stage in STAGES[1:]:
            if stage in result.timings:
                streamed[stage].append(result.timings[stage])
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
        pieces = list(split_stream(chat.stream_reply(
            ChatSession(store, chat, persona.id).history + [_turn(text)])))
        for piece in pieces:
            list(tts.synthesize(piece, None))
        overhead_raw.append(time.perf_counter() - t0)

    table = {s: {"p50_ms": percentile(v, 50) * 1000, "p95_ms": percentile(v, 95) * 1000,
                 "n": len(v)} for s, v in streamed.items()}
    print(f"\n{'stage (from end of speech)':<28}{'p50 ms':>10}{'p95 ms':>10}")
    for stage, row in table.items():
        print(f"{stage:<28}{row['p50_ms']:>10.0f}{row['p95_ms']:>10.0f}")
    first = statistics.median(streamed["first_audio"])
    naive = statistics.median(naive_first)
    ratio = first / naive
    over = statistics.median(overhead_pipe) / statistics.median(overhead_raw)
    print(f"\nend of speech -> first audio: streamed {first * 1000:.0f} ms, naive "
          f"{naive * 1000:.0f} ms, ratio {ratio:.2f}x (goal <= 0.5x)")
    print(f"pipeline vs bare model calls: {statistics.median(overhead_pipe) * 1000:.0f} ms vs "
          f"{statistics.median(overhead_raw) * 1000:.0f} ms, ratio {over:.3f}x (goal <= 1.05x)")
    print("(vad_tail is in audio time: speech end to the segmenter's end-of-utterance.)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "stages": table, "streamed_vs_naive": ratio, "overhead": over,
            "config": vars(args)}, indent=2))
        print(f"wrote {args.json}")


def _turn(text: str):
    from engine.chat.types import Turn

    return Turn("user", text)


def _vad_tail(listener, clip: np.ndarray) -> float:
    """Seconds of audio between the end of speech and the segmenter ending the utterance."""
    from engine.audio.frames import FrameSlicer

    silence = np.zeros(16000 * 3, np.float32)
    audio = np.concatenate([clip, silence])
    vad = listener.vad
    slicer = FrameSlicer(30)
    frames = slicer.push(clip)
    voiced_end = max((i + 1) * 480 for i, f in enumerate(frames) if vad.is_speech(f))
    blocks = np.array_split(audio, len(audio) // 480)
    consumed = 0

    def feed():
        nonlocal consumed
        for block in blocks:
            consumed += len(block)
            yield block

    next(listener.hands_free(feed()))
    return (consumed - voiced_end) / 16000


if __name__ == "__main__":
    main()
