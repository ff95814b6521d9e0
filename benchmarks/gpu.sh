#!/usr/bin/env bash
# The benchmarks for a lent CUDA machine, in one command, in under 8 minutes: the turn latency
# (shape-true, GPU defaults: Whisper small.en + DialoGPT-large + the default Pocket TTS, push-to-
# talk), Pocket TTS, the chat engine (a DialoGPT-large stand-in) and training. Each step has its
# own time limit, so one that hangs cannot eat the others' time; one table sums them up at the
# end. Stand-ins have random weights: their figures are speed only.
#
#   bash benchmarks/gpu.sh [OUTDIR]              # on a CUDA machine with the repo's .venv
#   bash benchmarks/gpu.sh --check-cpu [OUTDIR]  # the same steps, tiny, on the CPU
#
# --check-cpu proves the steps' flags and the summary on a machine without a GPU. Without a CUDA
# GPU the script stops at once with "no CUDA GPU" (exit 2); a step that fails or runs out of
# time makes it exit 1 after the table. Logs and JSON figures go to OUTDIR (default: $OUT when
# set, else a new temporary folder).
set -uo pipefail
cd "$(dirname "$0")/.."

mode=cuda
if [ "${1:-}" = "--check-cpu" ]; then
  mode=cpu
  shift
fi
out=${1:-${OUT:-$(mktemp -d -t ttt-gpu-bench-XXXXXX)}}
mkdir -p "$out"
budget=470  # seconds for all steps: under 8 minutes with the set-up checks
started=$SECONDS

if [ ! -x .venv/bin/python ]; then
  echo "no .venv: creating it with bash installer/setup.sh --dev (needs network access)"
  bash installer/setup.sh --dev || { echo "set-up failed; nothing was measured" >&2; exit 1; }
fi
py=.venv/bin/python
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error

if [ "$mode" = cuda ]; then
  if ! "$py" - <<'EOF'
import sys

import torch

if not torch.cuda.is_available():
    print(f"no CUDA GPU: torch {torch.__version__} (CUDA build: {torch.version.cuda}) sees "
          "none; nothing was measured. On a machine without one: --check-cpu.", file=sys.stderr)
    sys.exit(1)
print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}, CUDA "
      f"{torch.version.cuda}")
EOF
  then
    exit 2
  fi
fi
echo "machine: $(nproc) CPUs; loadavg $(cut -d' ' -f1-3 /proc/loadavg); figures in $out"
for tool in espeak-ng sox; do
  command -v "$tool" >/dev/null || echo "warning: $tool is missing: the turn latency step" \
    "cannot make its speech clips (bash installer/setup.sh --dev installs it)"
done

: >"$out/steps.tsv"
# step NAME LIMIT_S COMMAND...: runs COMMAND under LIMIT_S (less if the budget is nearly spent),
# logging to OUT/NAME.log, and notes its status for the summary.
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((budget - (SECONDS - started)))
  if [ "$left" -lt 20 ]; then
    printf '%s\tskipped (time budget spent)\t0\n' "$name" >>"$out/steps.tsv"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (limit ${limit} s): $*"
  local t0=$SECONDS rc=0
  timeout --kill-after=10 "$limit" "$@" >"$out/$name.log" 2>&1 || rc=$?
  local status=ok
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    status="timed out after ${limit} s"
  elif [ "$rc" -ne 0 ]; then
    status="failed (exit $rc)"
  fi
  printf '%s\t%s\t%s\n' "$name" "$status" "$((SECONDS - t0))" >>"$out/steps.tsv"
  tail -n 4 "$out/$name.log"
}

if [ "$mode" = cuda ]; then
  step turn_latency 220 "$py" benchmarks/turn_latency.py --shapes real --device cuda --ptt \
    --turns 3 --json "$out/turn_latency.json"
  step tts 70 "$py" benchmarks/tts.py --device cuda --models english_2026-10 \
    english_7m_2026-10 --threads 1 --repeats 3 --no-quantize --json "$out/tts.json"
  # No Hub here: the chat benchmark gets the DialoGPT-large stand-in (cached by turn_latency).
  chat_model=dialogpt-large chat_device=cuda chat_runs=3 chat_tokens=48
  train_args=(--device cuda --steps 4)
else
  step turn_latency 300 "$py" benchmarks/turn_latency.py --shapes real --chat dialogpt-small \
    --asr base.en --tts pocket-tts-2m --chat-tokens 8 --ptt --turns 1 \
    --json "$out/turn_latency.json"
  step tts 120 "$py" benchmarks/tts.py --models english_2m_refl_2026-10 --frames 5 \
    --repeats 1 --threads 1 --no-quantize --json "$out/tts.json"
  chat_model=dialogpt-small chat_device=cpu chat_runs=1 chat_tokens=8
  train_args=(--device cpu --small --steps 2)
fi
persona=$("$py" -c "from benchmarks import shapes; print(shapes.dialogpt('$chat_model', \
$chat_tokens))" 2>"$out/chat-build.log" | tail -n 1)
if [ -n "$persona" ]; then
  step chat 50 "$py" benchmarks/chat.py --persona "$persona" --device "$chat_device" \
    --runs "$chat_runs" --max-new-tokens "$chat_tokens"
else
  cp "$out/chat-build.log" "$out/chat.log"
  printf 'chat\tfailed (building the %s stand-in)\t0\n' "$chat_model" >>"$out/steps.tsv"
fi
step train 130 "$py" benchmarks/train.py "${train_args[@]}"

"$py" - "$out" "$mode" <<'EOF'
"""One table of every step's status, time and headline figures."""
import json
import sys
from pathlib import Path

out, mode = Path(sys.argv[1]), sys.argv[2]


def load(name):
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def lines(name, *starts):
    path = out / f"{name}.log"
    text = path.read_text(errors="replace").splitlines() if path.is_file() else []
    return [line.strip() for line in text if line.strip().startswith(starts)]


def turn_latency():
    data = load("turn_latency")
    if not data:
        return []
    stages = data["stages"]
    rows = [f"from hand-over: first audio p50 {stages['first_audio']['p50_ms']:.0f} ms, "
            f"p95 {stages['first_audio']['p95_ms']:.0f} ms; streamed/naive "
            f"{data['streamed_vs_naive']:.2f}x; pipeline/bare {data['overhead']:.3f}x"]
    ptt = data.get("ptt")
    if ptt:
        for kind in ("early", "one_shot"):
            s = ptt[kind]["stages"]
            rows.append(f"ptt {kind}: from release ASR {s['asr']['p50_ms']:.0f}, first audio "
                        f"p50 {s['first_audio']['p50_ms']:.0f} ms, p95 "
                        f"{s['first_audio']['p95_ms']:.0f} ms")
    rows.append(f"{data['label']}; chat {data['config']['chat'].split(' (')[0]}, ASR "
                f"{data['config']['asr'].split(' (')[0]}, TTS "
                f"{data['config']['tts'].split(' (')[0]}")
    return rows


def tts():
    data = load("tts")
    if not data:
        return []
    return [f"{r['model']}: first chunk p50 {r['app']['first_ms']['p50']:.0f} ms, RTF "
            f"{r['app']['rtf']['p50']:.3f}, app/raw {r['app_over_raw']:.3f}x"
            for r in data["results"]]


figures = {
    "turn_latency": turn_latency,
    "tts": tts,
    "chat": lambda: lines("chat", "persona", "raw ", "engine ", "overhead"),
    "train": lambda: lines("train", "device", "full", "lora", "DialoGPT-large"),
}
steps = [line.split("\t") for line in (out / "steps.tsv").read_text().splitlines()]
print(f"\n{'=' * 100}\nSummary ({mode}; stand-ins have random weights: speed only); logs and "
      f"JSON in {out}")
print(f"{'step':<14}{'status':<28}{'s':>5}  figures")
for name, status, seconds in steps:
    try:
        rows = figures[name]() if status == "ok" else []
    except Exception as err:  # a summary never hides the other steps
        rows = [f"(could not read the figures: {type(err).__name__}: {err})"]
    if status != "ok":
        log = out / f"{name}.log"
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.is_file() else []
        rows = [f"last line: {line[:150]}" for line in tail]
    print(f"{name:<14}{status:<28}{seconds:>5}  {rows[0] if rows else ''}")
    for row in rows[1:]:
        print(f"{'':<47}  {row}")
EOF
echo "total $((SECONDS - started)) s; loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
# Exit 1 when a step did not finish, so a caller sees it without reading the table.
if cut -f2 "$out/steps.tsv" | grep -qv '^ok$'; then
  exit 1
fi
