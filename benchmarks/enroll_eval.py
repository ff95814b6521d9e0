"""How well does the enrolment "one speaker" check tell one voice from two? Figures per method.

On every sample of the labelled set (``benchmarks/enroll_set.py``) the VAD-voiced speech (as in
``engine/voices/quality.py``: webrtcvad mode 2, 30 ms frames) is embedded with the GE2E
``SpeakerEncoder`` and measured by:

- ``thirds``: the current check, least pairwise similarity of the speech's thirds (it only runs
  on >= 4.8 s of speech);
- ``w15``/``w20``: windows of 1.5 s / 2.0 s (hop half a window), each compared with the whole
  speech's embedding: least similarity, 10th percentile, share of windows below 0.70/0.75/0.80;
- ``km``: 2-means (cosine) on the 1.5 s window embeddings: the smaller cluster's share and the
  similarity of the two centroids;
- extra candidates, from the encoder's own 1.6 s partial embeddings at a 0.25 s hop (one batch):
  ``split``: least similarity of the speech before and after any cut (>= 2.1 s each side; an
  utterance embedding is the mean of its partials); ``kmp``: 2-means on those partials;
- ``hf36``/``hf42``: share of the speech's spectral energy above 3.6 / 4.2 kHz (telephone band).

``app``: the check the app ships (``quality.speaker_scores`` + ``quality.speaker_check``):
refused, noted ("play it back") or passed.

Prints false refusals (one-speaker samples flagged) and false accepts (two-speaker samples with a
second share >= 25 % not flagged) per category, the best zero-refusal setting per method, the
best OR of two rules, and the telephone-band detector's separation.

    PYTHONPATH=. .venv/bin/python benchmarks/enroll_eval.py [--cache DIR] [--table OUT.tsv]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from enroll_set import SR, Sample, build  # noqa: E402

from engine.audio.vad import VoiceActivity  # noqa: E402
from engine.voices.encoder import SpeakerEncoder, similarity  # noqa: E402
from engine.voices.quality import (  # noqa: E402
    FRAME,
    QualityOptions,
    speaker_check,
    speaker_scores,
)

ONE = ("real-one", "phone-one", "espeak-one")
TWO = ("joined", "interleaved", "phone-two")
PHONE = ("phone-one", "phone-two")
# columns of the tables: the two-speaker full-band categories split into real and espeak pairs
GROUPS = ("real-one", "phone-one", "espeak-one", "joined-real", "joined-espeak",
          "interleaved-real", "interleaved-espeak", "phone-two")
MIN_SHARE = 0.25  # two-speaker samples counted for false accepts
MIN_SECONDS = 5.0  # one-speaker samples counted for false refusals
THIRDS_MIN_SPEECH = 3 * 1.6  # seconds of speech the current check needs to run
BELOW = (0.70, 0.75, 0.80)
WINDOWS = (1.5, 2.0)
PARTIAL_HOP = 0.25  # seconds between the partials of the extra candidates
PARTIAL_SECONDS = 1.6  # the encoder's partial window
SPLIT_SIDE = 3  # least partials on each side of a cut (3: 2.1 s)


# ------------------------------------------------------------------ measurements


def voiced_speech(audio: np.ndarray) -> np.ndarray:
    """The VAD-voiced 30 ms frames of ``audio``, joined (exactly as ``quality.assess``)."""
    vad = VoiceActivity(QualityOptions().vad_sensitivity)
    frames = [audio[i:i + FRAME] for i in range(0, len(audio) - FRAME + 1, FRAME)]
    voiced = [f for f in frames if vad.is_speech(f)]
    return np.concatenate(voiced) if voiced else np.zeros(0, np.float32)


def windows(speech: np.ndarray, seconds: float) -> list[np.ndarray]:
    """Windows of ``seconds`` with a hop of half a window (the whole speech if shorter)."""
    size, hop = int(seconds * SR), int(seconds * SR / 2)
    if len(speech) <= size:
        return [speech]
    return [speech[s:s + size] for s in range(0, len(speech) - size + 1, hop)]


def two_means(x: np.ndarray, inits: int = 8, iters: int = 30) -> tuple[float, float]:
    """Cosine 2-means of unit rows ``x``: (smaller cluster's share, centroid similarity).

    Deterministic: the least similar pair plus seeded random pairs start it; the start with the
    highest total similarity to its centroids wins.
    """
    n = len(x)
    if n < 2:
        return 0.0, 1.0
    sims = x @ x.T
    starts = [tuple(int(i) for i in np.unravel_index(np.argmin(sims), sims.shape))]
    rng = np.random.default_rng(0)
    starts += [tuple(int(i) for i in rng.choice(n, 2, replace=False)) for _ in range(inits - 1)]
    best: tuple[float, float, float] | None = None
    for i, j in starts:
        cent = x[[i, j]].copy()
        labels = np.argmax(x @ cent.T, axis=1)
        for _ in range(iters):
            if labels.min() == labels.max():
                break
            cent = np.stack([x[labels == k].mean(axis=0) for k in (0, 1)])
            cent /= np.linalg.norm(cent, axis=1, keepdims=True)
            new = np.argmax(x @ cent.T, axis=1)
            if np.array_equal(new, labels):
                break
            labels = new
        if labels.min() == labels.max():
            score, share, csim = float(np.sum(x @ cent[labels[0]])), 0.0, 1.0
        else:
            score = float(np.sum(np.max(x @ cent.T, axis=1)))
            share = float(min(np.mean(labels == 0), np.mean(labels == 1)))
            csim = float(cent[0] @ cent[1])
        if best is None or score > best[0] + 1e-9:
            best = (score, share, csim)
    assert best is not None
    return best[1], best[2]


def split_min(partials: np.ndarray) -> float:
    """Least similarity of the mean partial before and after any cut (``SPLIT_SIDE`` each)."""
    n, least = len(partials), 1.0
    span = round(PARTIAL_SECONDS / PARTIAL_HOP)  # partials overlapping a cut
    for j in range(SPLIT_SIDE, n - SPLIT_SIDE + 1):
        left = j - span + 1  # partials ending at or before the cut at partial j's start
        if left < SPLIT_SIDE:
            continue
        a, b = partials[:left].mean(axis=0), partials[j:].mean(axis=0)
        least = min(least, similarity(a, b))
    return least


def high_band(speech: np.ndarray, cutoff: float) -> float:
    """Share of the spectral energy above ``cutoff`` Hz (the app's own measure)."""
    from engine.voices.quality import high_band_share

    return high_band_share(speech, cutoff)


def measure(encoder: SpeakerEncoder, sample: Sample) -> dict[str, float]:
    """Every statistic of one sample."""
    speech = voiced_speech(sample.audio)
    stats: dict[str, float] = {"seconds": len(sample.audio) / SR, "speech": len(speech) / SR}
    parts = [encoder.embed(p) for p in np.array_split(speech, 3)]
    stats["thirds"] = min(similarity(parts[i], parts[j])
                          for i in range(3) for j in range(i + 1, 3))
    whole = encoder.embed(speech)
    for seconds in WINDOWS:
        tag = f"w{round(seconds * 10)}"
        embs = np.stack([encoder.embed(w) for w in windows(speech, seconds)])
        sims = embs @ whole
        stats[f"{tag}_min"] = float(sims.min())
        stats[f"{tag}_p10"] = float(np.percentile(sims, 10))
        for t in BELOW:
            stats[f"{tag}_b{round(t * 100)}"] = float(np.mean(sims < t))
        stats[f"{tag}_n"] = len(sims)
        if seconds == 1.5:
            stats["km_share"], stats["km_sim"] = two_means(embs)
    partials = encoder.embed_partials(speech, rate=1 / PARTIAL_HOP)
    stats["split"] = split_min(partials)
    stats["kmp_share"], stats["kmp_sim"] = two_means(partials)
    app_thirds, app_windows = speaker_scores(speech, encoder)
    check = speaker_check(app_thirds, app_windows, QualityOptions())
    stats["app_refused"] = float(not check.ok)
    stats["app_noted"] = float(check.ok and check.note)
    stats["hf36"] = high_band(speech, 3600)
    stats["hf42"] = high_band(speech, 4200)
    return stats


# ------------------------------------------------------------------ rules and scoring


@dataclass(frozen=True)
class Rule:
    """A way to flag samples as two speakers, with its verdict on every sample."""

    family: str
    label: str
    flags: np.ndarray  # True: flagged as more than one speaker
    margin: float  # how far the nearest counted one-speaker sample is from being flagged


class Scorer:
    """Counts false refusals and false accepts of a rule on the set."""

    def __init__(self, samples: list[Sample], stats: list[dict[str, float]]):
        self.samples, self.stats = samples, stats
        self.cats = np.array([s.category for s in samples])
        self.one = np.array([s.speakers == 1 and st["seconds"] >= MIN_SECONDS
                             for s, st in zip(samples, stats, strict=True)])
        self.two = np.array([s.speakers == 2 and s.second_share >= MIN_SHARE for s in samples])
        self.groups = np.array([group(s) for s in samples])
        self.real_two = self.two & ~np.char.endswith(self.groups.astype(str), "-espeak")

    def col(self, key: str) -> np.ndarray:
        """One statistic over all samples."""
        return np.array([st[key] for st in self.stats])

    def below(self, family: str, key: str, t: float, only: np.ndarray | None = None) -> Rule:
        """Flag where statistic ``key`` < ``t`` (and ``only``, where given)."""
        values = self.col(key)
        flags = values < t
        if only is not None:
            flags &= only
            ones = self.one & only
        else:
            ones = self.one
        margin = float(values[ones].min() - t) if ones.any() else 1.0
        return Rule(family, f"{key} < {t:.2f}", flags, margin)

    def at_least(self, family: str, key: str, f: float) -> Rule:
        """Flag where statistic ``key`` >= ``f``."""
        values = self.col(key)
        return Rule(family, f"{key} >= {f:.2f}", values >= f - 1e-9,
                    float(f - values[self.one].max()))

    def km(self, s: float, t: float, key: str = "km") -> Rule:
        """Flag where the smaller 2-means cluster holds >= ``s`` and the centroids are < ``t``."""
        share, sim = self.col(f"{key}_share"), self.col(f"{key}_sim")
        flags = (share >= s - 1e-9) & (sim < t)
        gap = np.maximum(s - share, sim - t)[self.one]
        return Rule(key, f"{key}_share >= {s:.2f} & {key}_sim < {t:.2f}", flags,
                    float(gap.min()))

    def fr(self, rule: Rule) -> int:
        """False refusals: counted one-speaker samples flagged."""
        return int(np.sum(rule.flags & self.one))

    def fa(self, rule: Rule) -> int:
        """False accepts: counted two-speaker samples not flagged."""
        return int(np.sum(~rule.flags & self.two))

    def fa_real(self, flags: np.ndarray) -> int:
        """False accepts among the two-speaker samples of real people."""
        return int(np.sum(~flags & self.real_two))

    def per_category(self, flags: np.ndarray) -> str:
        """``bad/n`` per column of :data:`GROUPS` (flagged one-speaker; unflagged two-speaker)."""
        cells = []
        for g in GROUPS:
            if g in ONE:
                m = (self.groups == g) & self.one
                cells.append(f"{int(np.sum(flags & m))}/{int(m.sum())}")
            else:
                m = (self.groups == g) & self.two
                cells.append(f"{int(np.sum(~flags & m))}/{int(m.sum())}")
        return " ".join(f"{c:>5}" for c in cells)


def group(sample: Sample) -> str:
    """The table column of ``sample``."""
    if sample.category in ("joined", "interleaved"):
        return sample.category + ("-espeak" if "espeak" in sample.name else "-real")
    return sample.category


def rules(sc: Scorer) -> list[Rule]:
    """Every rule of the grid."""
    out = []
    runs = sc.col("speech") >= THIRDS_MIN_SPEECH
    for t in np.arange(0.50, 0.951, 0.01):
        out.append(sc.below("thirds", "thirds", t, runs))
        for w in ("w15", "w20"):
            out.append(sc.below(f"{w}_min", f"{w}_min", t))
            out.append(sc.below(f"{w}_p10", f"{w}_p10", t))
        out.append(sc.below("split", "split", t))
    for w in ("w15", "w20"):
        for b in BELOW:
            for f in np.arange(0.05, 0.501, 0.05):
                out.append(sc.at_least(f"{w}_b{round(b * 100)}", f"{w}_b{round(b * 100)}", f))
    for s in np.arange(0.10, 0.451, 0.05):
        for t in np.arange(0.50, 0.951, 0.01):
            out.append(sc.km(s, t))
            out.append(sc.km(s, t, "kmp"))
    return out


def pick(sc: Scorer, candidates: list[Rule], min_margin: float) -> Rule | None:
    """The rule with no false refusal (and ``min_margin``) and fewest false accepts."""
    ok = [r for r in candidates if sc.fr(r) == 0 and r.margin >= min_margin - 1e-9]
    return min(ok, key=lambda r: (sc.fa(r), -r.margin)) if ok else None


# ------------------------------------------------------------------ report


def load_line(when: str) -> None:
    """Print the machine load (1, 5, 15 min)."""
    one, five, fifteen = os.getloadavg()
    print(f"load average {when}: {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} CPUs)")


def header() -> str:
    """Column titles of the per-category tables (abbreviated; all listed once at the start)."""
    return " ".join(f"{abbrev(g):>5}" for g in GROUPS)


def abbrev(name: str) -> str:
    """Five-letter column title."""
    first, _, second = name.partition("-")
    return (first[:2] + "-" + second[:2]) if second else first[:5]


def report(sc: Scorer) -> None:
    """Print every figure."""
    cats = list(ONE) + list(TWO)
    print("\n== the set")
    for cat in cats:
        m = sc.cats == cat
        counted = (sc.one if cat in ONE else sc.two) & m
        secs = sc.col("seconds")[m]
        print(f"{cat:<12} {int(m.sum()):3d} samples ({int(counted.sum())} counted), "
              f"{secs.min():.1f}-{secs.max():.1f} s, speech "
              f"{sc.col('speech')[m].min():.1f}-{sc.col('speech')[m].max():.1f} s")

    print("\n== statistics per category: min / median / max")
    keys = ["thirds", "w15_min", "w15_p10", "w20_min", "w20_p10", "w15_b75", "w20_b75",
            "km_share", "km_sim", "split", "kmp_share", "kmp_sim"]
    for block in (keys[:6], keys[6:]):
        print(f"{'':<12} " + " ".join(f"{k:>15}" for k in block))
        for cat in cats:
            m = (sc.cats == cat) & (sc.one | sc.two)
            cells = []
            for k in block:
                v = sc.col(k)[m]
                cells.append(f"{v.min():.2f}/{np.median(v):.2f}/{v.max():.2f}")
            print(f"{cat:<12} " + " ".join(f"{c:>15}" for c in cells))

    print("\n== columns: " + ", ".join(f"{abbrev(g)}={g}" for g in GROUPS) + "; one-speaker "
          "columns count false refusals (flagged), two-speaker ones false accepts (not flagged); "
          "FAr = false accepts among real-people pairs only")
    print("\n== per method and threshold: false refusals (FR) and false accepts (FA), bad/n")
    print(f"{'rule':<36} {header()}")
    runs = sc.col("speech") >= THIRDS_MIN_SPEECH
    shown = [sc.below("thirds", "thirds", t, runs) for t in (0.70, 0.75, 0.80, 0.82, 0.85)]
    for w in ("w15", "w20"):
        shown += [sc.below(f"{w}_min", f"{w}_min", t) for t in (0.55, 0.60, 0.65, 0.70, 0.75)]
        shown += [sc.below(f"{w}_p10", f"{w}_p10", t) for t in (0.65, 0.70, 0.75, 0.80)]
        shown += [sc.at_least(f"{w}_b{b}", f"{w}_b{b}", f)
                  for b in (70, 75, 80) for f in (0.10, 0.20)]
    shown += [sc.km(s, t) for s in (0.15, 0.25) for t in (0.70, 0.75, 0.80)]
    shown += [sc.below("split", "split", t) for t in (0.60, 0.65, 0.70, 0.75)]
    shown += [sc.km(s, t, "kmp") for s in (0.15, 0.25) for t in (0.60, 0.65, 0.70, 0.75)]
    for r in shown:
        print(f"{r.label:<36} {sc.per_category(r.flags)}  FR {sc.fr(r):2d} FA {sc.fa(r):2d} "
              f"FAr {sc.fa_real(r.flags):2d}")

    n_one, n_two, n_real = int(sc.one.sum()), int(sc.two.sum()), int(sc.real_two.sum())
    opts = QualityOptions()
    refused, noted = sc.col("app_refused") > 0, sc.col("app_noted") > 0
    print(f"\n== the app's check (refused below thirds {opts.min_consistency:.2f} / windows "
          f"{opts.min_window_match:.2f}; a note below {opts.note_consistency:.2f} / "
          f"{opts.note_window_match:.2f})")
    print(f"{'':<36} {header()}")
    print(f"{'refused':<36} {sc.per_category(refused)}  FR {int(np.sum(refused & sc.one)):2d} "
          f"FA {int(np.sum(~refused & sc.two)):2d}/{n_two} FAr "
          f"{sc.fa_real(refused)}/{n_real}")
    either = refused | noted
    print(f"{'refused or noted':<36} {sc.per_category(either)}  noted one-speaker "
          f"{int(np.sum(noted & sc.one))}/{n_one}; two-speaker missed "
          f"{int(np.sum(~either & sc.two))}/{n_two} ({np.mean(either[sc.two]):.0%} caught), "
          f"real pairs missed {sc.fa_real(either)}/{n_real} "
          f"({1 - sc.fa_real(either) / n_real:.0%} caught)")
    every = rules(sc)
    families = list(dict.fromkeys(r.family for r in every))
    for min_margin in (0.0, 0.03):
        print(f"\n== best zero-refusal setting per method (one-speaker >= {MIN_SECONDS:g} s: "
              f"{n_one}; two-speaker >= {MIN_SHARE:.0%}: {n_two}); margin >= {min_margin:.2f}")
        print(f"{'rule':<36} {header()}")
        for fam in families:
            r = pick(sc, [x for x in every if x.family == fam], min_margin)
            if r is None:
                print(f"{fam:<36} no zero-refusal setting")
                continue
            print(f"{r.label:<36} {sc.per_category(r.flags)}  FA {sc.fa(r):2d}/{n_two} "
                  f"= {sc.fa(r) / n_two:.0%}  FAr {sc.fa_real(r.flags)}/{n_real} "
                  f"margin {r.margin:.3f}")

    for min_margin in (0.0, 0.03):
        print(f"\n== best OR of two zero-refusal rules (each margin >= {min_margin:.2f})")
        print(f"{'rule':<66} {header()}")
        ok = [r for r in every if sc.fr(r) == 0 and r.margin >= min_margin - 1e-9]
        combos = []
        for i, a in enumerate(ok):
            for b in ok[i + 1:]:
                if a.family == b.family:
                    continue
                fa = int(np.sum(~(a.flags | b.flags) & sc.two))
                combos.append((fa, -min(a.margin, b.margin), a.label, b.label, a, b))
        combos.sort(key=lambda c: c[:4])
        seen = set()
        for fa, neg, la, lb, a, b in combos:
            key = (fa, a.family, b.family)
            if key in seen:
                continue
            seen.add(key)
            print(f"{la + ' OR ' + lb:<66} {sc.per_category(a.flags | b.flags)}  "
                  f"FA {fa}/{n_two} = {fa / n_two:.0%}  FAr {sc.fa_real(a.flags | b.flags)}"
                  f"/{n_real}  margin {-neg:.3f}")
            if len(seen) >= 6:
                break

    print("\n== telephone band: share of speech energy above 3.6 / 4.2 kHz (log10)")
    phone = np.isin(sc.cats, PHONE)
    for key in ("hf36", "hf42"):
        v = np.log10(np.maximum(sc.col(key), 1e-12))
        for cat in cats:
            m = sc.cats == cat
            print(f"{key} {cat:<12} min {v[m].min():6.2f} median {np.median(v[m]):6.2f} "
                  f"max {v[m].max():6.2f}")
        hi_phone, lo_wide = v[phone].max(), v[~phone].min()
        if hi_phone < lo_wide:
            cut = (hi_phone + lo_wide) / 2
            print(f"{key}: separable; phone < 10^{cut:.2f} = {10 ** cut:.2g} "
                  f"(gap {lo_wide - hi_phone:.2f} decades); errors 0/{len(v)}")
        else:
            best_cut, best_err = None, len(v) + 1
            for cut in np.unique(v):
                err = int(np.sum((v <= cut) != phone))
                if err < best_err:
                    best_cut, best_err = cut, err
            print(f"{key}: overlapping; best cut 10^{best_cut:.2f}: {best_err}/{len(v)} wrong")


def write_table(path: Path, samples: list[Sample], stats: list[dict[str, float]]) -> None:
    """One row per sample: name, category, second share and every statistic."""
    keys = list(stats[0])
    with open(path, "w", encoding="utf-8") as out:
        out.write("\t".join(["name", "category", "speakers", "second_share", *keys]) + "\n")
        for s, st in zip(samples, stats, strict=True):
            cells = [s.name, s.category, str(s.speakers), f"{s.second_share:.3f}"]
            cells += [f"{st[k]:.4g}" for k in keys]
            out.write("\t".join(cells) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=Path("~/.cache/ttt-enroll-eval"))
    parser.add_argument("--table", type=Path, help="write the per-sample table (TSV) here")
    args = parser.parse_args()
    load_line("at start")
    started = time.perf_counter()
    samples = build(args.cache)
    built = time.perf_counter()
    print(f"set: {len(samples)} samples ({built - started:.1f} s)")
    import torch

    torch.set_num_threads(1)  # small batches: one thread is faster (and shares the machine)
    encoder = SpeakerEncoder()
    stats = [measure(encoder, s) for s in samples]
    print(f"measured in {time.perf_counter() - built:.1f} s")
    if args.table:
        write_table(args.table, samples, stats)
        print(f"table: {args.table}")
    report(Scorer(samples, stats))
    print(f"\ntotal {time.perf_counter() - started:.1f} s")
    load_line("at end")


if __name__ == "__main__":
    main()
