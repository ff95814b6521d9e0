"""Voice output speed: Pocket TTS through the app vs its raw runtime, per model and thread count.

Each model is a full-size pocket-tts config with RANDOM weights (``tests/tiny_pocket_tts``),
laid into a temporary Hugging Face cache and loaded through the app's real path
(:class:`engine.tts.pocket.PocketTTS`). Shape-true timing: the speed of the real model, never
its sound. End-of-speech is switched off and every sentence is cut at ``--frames`` 80 ms
frames, so each run produces the same audio length.

For every model and thread count, runs alternate (the order flipping each repeat) between the
app's ``PocketTTS.synthesize``, the runtime's own ``generate_audio_stream`` (same voice state,
same normalised text, same frames) and the app with its voice state dropped first (so the
built-in voice's state file is read inside the timing). Prints the median (min-max) of the
first-chunk latency, total time, real-time factor (synthesis time / audio time; lower is
faster) and ms per frame, and the app/raw ratio of total time (goal <= 1.05). Then each model
again with ``quantize=True`` (dynamic int8 flow LM, the app's CPU default) unless
``--no-quantize``. Ends with a table.

    .venv/bin/python benchmarks/tts.py [--models english_2026-10 english_7m_2026-10 ...]
        [--frames 25] [--repeats 5] [--threads 1,2] [--no-quantize] [--json OUT]
        [--device cuda]

On ``--device cuda`` the int8 runs are skipped (dynamic int8 is the CPU's), and each chunk of
the raw path is waited for before it counts, as the app's copy to the CPU does.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.tts.builtin import BuiltinVoice  # noqa: E402
from engine.tts.pocket import FRAME_SAMPLES, SAMPLE_RATE, PocketTTS  # noqa: E402
from engine.tts.runtime import runtime  # noqa: E402
from engine.tts.text import normalise  # noqa: E402

MODELS = ("english_2026-10", "english_7m_2026-10", "english_2m_refl_2026-10")
LABEL = "shape-true timing, random weights: speed, not sound"
TEXT = "Sure, the park opens at nine in the morning, a short walk from the station."
VOICE = BuiltinVoice("alba")


def load_line(when: str) -> str:
    one, five, fifteen = os.getloadavg()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    return (f"machine load ({when}): loadavg {one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min), "
            f"nproc {usable} (cpu_count {os.cpu_count()})")


def timed(chunks: Iterable[Any], size: Callable[[Any], int]) -> tuple[float, float, int]:
    """(first chunk s, total s, samples) of one run; the clock starts before the first pull."""
    started = time.perf_counter()
    first, samples = None, 0
    for chunk in chunks:
        if first is None:
            first = time.perf_counter() - started
        samples += size(chunk)
    total = time.perf_counter() - started
    return (first if first is not None else total), total, samples


def app_run(tts: PocketTTS) -> tuple[float, float, int]:
    return timed(tts.synthesize(TEXT, VOICE), lambda c: len(c.samples))


def raw_run(tts: PocketTTS, state: Any, spoken: str) -> tuple[float, float, int]:
    stream = tts._model.generate_audio_stream(state, spoken, copy_state=True)
    return timed(stream, chunk_samples)


def chunk_samples(chunk: Any) -> int:
    """Samples in a raw chunk; on CUDA once it is computed (kernels run asynchronously)."""
    if getattr(chunk, "is_cuda", False):
        import torch

        torch.cuda.synchronize()
    return int(chunk.shape[-1])


def cold_run(tts: PocketTTS) -> tuple[float, float, int]:
    tts._states.clear()  # voice_state reads the built-in voice's state file again
    return app_run(tts)


def stats(values: list[float], scale: float = 1000.0) -> dict[str, float]:
    return {"p50": statistics.median(values) * scale, "min": min(values) * scale,
            "max": max(values) * scale}


def fmt(s: dict[str, float], digits: int = 0) -> str:
    return f"{s['p50']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def measure(tts: PocketTTS, name: str, threads: int, frames: int, repeats: int) -> dict:
    import torch

    torch.set_num_threads(threads)  # the raw path's threads
    tts.threads = threads  # the app sets its own for each sentence
    spoken = normalise(TEXT)
    state = tts.voice_state(VOICE)
    runs: dict[str, list[tuple[float, float, int]]] = {"app": [], "raw": [], "cold": []}
    app_run(tts)  # warm-up, both paths
    raw_run(tts, state, spoken)
    for i in range(repeats):
        order = ("app", "raw", "cold") if i % 2 == 0 else ("raw", "app", "cold")
        for kind in order:
            if kind == "app":
                runs[kind].append(app_run(tts))
            elif kind == "raw":
                runs[kind].append(raw_run(tts, state, spoken))
            else:
                runs[kind].append(cold_run(tts))
    state = tts.voice_state(VOICE)  # leave it loaded for the next thread count
    expected = frames * FRAME_SAMPLES
    odd = sorted({s for kind in runs.values() for _, _, s in kind if s != expected})
    audio_s = expected / SAMPLE_RATE
    result: dict[str, Any] = {"model": name, "threads": threads, "frames": frames,
                              "repeats": repeats, "samples_off": odd}
    for kind, values in runs.items():
        firsts = [f for f, _, _ in values]
        totals = [t for _, t, _ in values]
        rtfs = [t / (s / SAMPLE_RATE) for _, t, s in values if s]
        result[kind] = {"first_ms": stats(firsts), "total_ms": stats(totals),
                        "rtf": stats(rtfs, 1.0),
                        "ms_per_frame": stats([t / frames for t in totals])}
    result["app_over_raw"] = (result["app"]["total_ms"]["p50"] / result["raw"]["total_ms"]["p50"])
    result["app_over_raw_first"] = (result["app"]["first_ms"]["p50"] /
                                    result["raw"]["first_ms"]["p50"])
    print(f"\n--- {name}, {threads} thread(s), {frames} frames = {audio_s:.2f} s audio, "
          f"{repeats} repeats [{LABEL}]")
    print(f"  {'path':<34} {'first chunk ms':>20} {'total ms':>22} {'RTF':>20} "
          f"{'ms/frame':>18}")
    titles = {"app": "app PocketTTS.synthesize (state in)", "raw": "raw generate_audio_stream",
              "cold": "app, state loaded in the timing"}
    for kind, title in titles.items():
        r = result[kind]
        print(f"  {title:<34} {fmt(r['first_ms']):>20} {fmt(r['total_ms']):>22} "
              f"{fmt(r['rtf'], 3):>20} {fmt(r['ms_per_frame'], 1):>18}")
    print(f"  app/raw: total {result['app_over_raw']:.3f}x (goal <= 1.05x), first chunk "
          f"{result['app_over_raw_first']:.3f}x; first chunk with a voice state "
          f"{result['app']['first_ms']['p50']:.0f} ms vs without "
          f"{result['cold']['first_ms']['p50']:.0f} ms "
          f"(+{result['cold']['first_ms']['p50'] - result['app']['first_ms']['p50']:.0f} ms)")
    if odd:
        print(f"  ODD: some runs gave {odd} samples, not {expected} ({frames} frames)")
    return result


def load(config: Path, frames: int, quantize: bool,
         device: str = "cpu") -> tuple[PocketTTS, float]:
    started = time.perf_counter()
    tts = PocketTTS(str(config), device=device, eos_threshold=1e9, quantize=quantize)
    seconds = time.perf_counter() - started
    # Random weights: EOS is random, so every sentence gets exactly `frames` frames.
    tts._model._estimate_max_gen_len = lambda token_count: frames
    return tts, seconds


def millions(module: Any) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def bench_model(name: str, args: argparse.Namespace, root: Path, cache: Path,
                threads: list[int]) -> list[dict]:
    import torch

    from tests.tiny_pocket_tts import build_pocket_repos, install_into_cache

    torch.set_num_threads(max(threads))
    started = time.perf_counter()
    repos = build_pocket_repos(root / name, name)
    install_into_cache(repos, cache)
    built = time.perf_counter() - started
    tts, load_s = load(repos.config, args.frames, quantize=False, device=args.device)
    flow, mimi = millions(tts._model.flow_lm), millions(tts._model.mimi)
    print(f"\n=== {name}: flow LM {flow:.2f} M + mimi {mimi:.2f} M parameters; built in "
          f"{built:.1f} s, loaded by PocketTTS in {load_s:.2f} s [{LABEL}]")
    results = []
    for n in threads:
        result = measure(tts, name, n, args.frames, args.repeats)
        result.update(flow_m=flow, mimi_m=mimi, load_s=load_s, quantized=False)
        results.append(result)
    del tts
    gc.collect()
    if args.quantize and args.device == "cuda":
        print(f"\n=== {name} int8: skipped on CUDA (dynamic int8 is for the CPU)")
    elif args.quantize:
        label = f"{name} int8"
        try:
            torch.set_num_threads(max(threads))
            tts, load_s = load(repos.config, args.frames, quantize=True)
            from pocket_tts.quantization import _get_backend

            print(f"\n=== {label}: quantize=True (backend {_get_backend()}), loaded in "
                  f"{load_s:.2f} s [{LABEL}]")
            for n in threads:
                result = measure(tts, label, n, args.frames, args.repeats)
                result.update(flow_m=flow, mimi_m=mimi, load_s=load_s, quantized=True)
                results.append(result)
            del tts
            gc.collect()
        except Exception as err:  # a benchmark reports, never stops, on an optional extra
            print(f"\n=== {label}: skipped, quantize=True failed: {type(err).__name__}: {err}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--frames", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    parser.add_argument("--no-quantize", dest="quantize", action="store_false",
                        help="skip the quantize=True runs")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",") if t.strip()]

    print(load_line("start"))
    import huggingface_hub.constants
    import torch

    runtime()  # first: a bare pocket_tts import would set torch to one thread for good
    from importlib.metadata import version

    print(f"torch {torch.__version__}, pocket-tts {version('pocket-tts')}; text {TEXT!r}; "
          f"voice {VOICE.name}; {args.frames} frames of 80 ms per run [{LABEL}]")
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="ttt-bench-tts-") as tmp:
        root, cache = Path(tmp) / "repos", Path(tmp) / "hub"
        os.environ["HF_HUB_OFFLINE"] = "1"
        huggingface_hub.constants.HF_HUB_CACHE = str(cache)
        for name in args.models:
            try:
                results.extend(bench_model(name, args, root, cache, threads))
            except Exception as err:
                print(f"\n=== {name}: failed: {type(err).__name__}: {err}")
    print(f"\nSummary [{LABEL}]; first chunk and RTF through the app, state loaded")
    print(f"{'model':<24} | {'params M (flow+mimi)':>20} | {'threads':>7} | "
          f"{'first chunk ms p50':>18} | {'RTF':>6} | {'ms/frame':>8} | {'app/raw':>7}")
    for r in results:
        params = f"{r['flow_m']:.2f}+{r['mimi_m']:.2f}"
        print(f"{r['model']:<24} | {params:>20} | {r['threads']:>7} | "
              f"{r['app']['first_ms']['p50']:>18.0f} | {r['app']['rtf']['p50']:>6.3f} | "
              f"{r['app']['ms_per_frame']['p50']:>8.1f} | {r['app_over_raw']:>6.3f}x")
    print(load_line("end"))
    if args.json:
        args.json.write_text(json.dumps({"label": LABEL, "text": TEXT, "results": results},
                                        indent=2), encoding="utf-8")
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
