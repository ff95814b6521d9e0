"""Voice output speed: real-time factor and time to first audio, plus speaker similarity.

Uses the real Pocket TTS when it is in the Hugging Face cache (``models pull pocket-tts``),
else ``--model`` (a folder), else the tiny random test model, which measures the pipeline's
overhead, not the real model's speed (its output is noise, so its similarity means nothing).

    .venv/bin/python benchmarks/tts.py [--model FOLDER_OR_ID] [--device cpu|cuda] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.errors import TalkError  # noqa: E402
from engine.tts.pocket import DEFAULT_MODEL, PocketTTS  # noqa: E402
from engine.tts.text import split_stream  # noqa: E402

REPLY = ("Sure, I can help with that. The park opens at nine in the morning, and it is a "
         "short walk from the station. Would you like me to find a good place for lunch too?")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    import torch

    tmp = Path(tempfile.mkdtemp())
    label = args.model or DEFAULT_MODEL
    started = time.perf_counter()
    try:
        tts = PocketTTS(label, device=args.device)
    except TalkError as err:
        from tests.tiny_pocket_tts import build_tiny_pocket_tts

        print(f"{label}: {err.message} -> using the tiny random test model (pipeline overhead "
              "only; not the real model's speed)")
        label = "tiny random Pocket TTS"
        tts = PocketTTS(str(build_tiny_pocket_tts(tmp / "tiny")), device=args.device,
                        max_frames=40)
    print(f"model {label} on {tts.placement.device} ({torch.get_num_threads()} threads), loaded "
          f"in {time.perf_counter() - started:.1f} s")
    voice = _voice(tmp)
    pieces = list(split_stream([REPLY]))
    list(tts.synthesize(pieces[0], voice))  # warm-up, and the voice latents get cached
    first_audio, rtfs, outputs = [], [], []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        produced, audio_s = 0.0, 0.0
        for i, piece in enumerate(pieces):
            for chunk in tts.synthesize(piece, voice):
                if i == 0:
                    first_audio.append(time.perf_counter() - t0)
                audio_s += len(chunk.samples) / chunk.rate
                outputs.append(chunk.samples)
        produced = time.perf_counter() - t0
        rtfs.append(produced / max(audio_s, 1e-9))
    print(f"{len(pieces)} sentences; time to first audio chunk p50 "
          f"{statistics.median(first_audio) * 1000:.0f} ms; real-time factor p50 "
          f"{statistics.median(rtfs):.3f} (goal <= 0.3 on 2 CPU cores with the real model)")
    try:
        from engine.audio.convert import resample
        from engine.voices.encoder import SpeakerEncoder, similarity

        encoder = SpeakerEncoder()
        speech = np.concatenate(outputs[: len(pieces)])
        score = similarity(encoder.embed(resample(speech, tts.rate, 16000)), voice.embedding())
        print(f"speaker similarity of output vs sample (GE2E cosine): {score:.3f}")
    except TalkError as err:
        print(f"speaker similarity: not available ({err.message})")


def _voice(folder: Path):
    """An enrolled espeak-ng voice in a scratch data folder."""
    import os

    os.environ["TTT_DATA_DIR"] = str(folder / "data")
    from engine.voices.encoder import SpeakerEncoder
    from engine.voices.store import enroll
    from tests.speech import SENTENCES, speech_array

    audio = np.concatenate([speech_array(s, folder, pitch=20) for s in SENTENCES])
    voice, _ = enroll("Bench", audio, 16000, source="espeak-ng", encoder=SpeakerEncoder())
    return voice


if __name__ == "__main__":
    main()
