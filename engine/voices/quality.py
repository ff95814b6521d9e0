"""Is a voice sample good enough to clone? Checks with verdicts a person can act on.

Each check measures one thing (length, clipping, loudness, speech present, noise, one speaker,
bandwidth) and says what to do when it fails. A *note* (telephone band; a doubtful speaker
check) warns without refusing. All thresholds live in :class:`QualityOptions`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from engine.audio.frames import SAMPLE_RATE, dbfs
from engine.audio.vad import VoiceActivity

FRAME = SAMPLE_RATE * 30 // 1000  # 30 ms VAD frames


@dataclass(frozen=True)
class QualityOptions:
    """Thresholds of the enrolment checks."""

    min_seconds: float = 5.0  # shorter samples clone poorly
    clip_level: float = 0.99  # |sample| at or above this is clipped
    max_clipped_ratio: float = 0.01  # share of clipped samples tolerated
    min_speech_dbfs: float = -40.0  # speech quieter than this is too quiet
    min_speech_ratio: float = 0.4  # share of 30 ms frames that must be voiced
    min_snr_db: float = 15.0  # loud frames (95th percentile) over the quiet ones (10th)
    # One speaker. Two GE2E scores of the voiced speech: "thirds", the least cosine between its
    # thirds (needs 4.8 s of speech), and "windows", the 10th percentile of the cosine of each
    # 2 s window (hop 1 s) with the whole speech. benchmarks/enroll_eval.py on 80 labelled
    # samples (35 one-speaker of >= 5 s: 7 real men, 16 real women on the phone, 12 espeak-ng;
    # 45 with a second voice >= 25 %: 33 of real people, 12 of espeak-ng):
    # - refused below 0.68 / 0.81: no one-speaker sample refused (nearest 0.03 away), 26 of the
    #   45 two-speaker ones refused;
    # - a note below 0.72 / 0.86 ("play it back"): 5 one-speaker samples noted; refused or noted:
    #   32 of 33 real two-speaker samples, 36 of 45 in all (the rest are espeak-ng voices, which
    #   GE2E hears as one speaker). Stricter refusals cost clean samples: thirds < 0.82 (the
    #   previous rule) refused 19 of the 35.
    min_consistency: float = 0.68
    min_window_match: float = 0.81
    note_consistency: float = 0.72
    note_window_match: float = 0.86
    speaker_window_s: float = 2.0
    vad_sensitivity: int = 2  # webrtcvad mode used to find the speech
    # Telephone band: the share of the speech's energy above 4.2 kHz. benchmarks/enroll_eval.py,
    # 80 samples: 8 kHz sources upsampled (31) at most 0.00017, 16 kHz sources (49) at least
    # 0.005; the cut sits between them (1.5 decades apart). A note, not a refusal.
    phone_band_hz: float = 4200.0
    max_phone_band_share: float = 0.0009


@dataclass(frozen=True)
class Check:
    """One measurement and its verdict."""

    name: str
    ok: bool
    value: float | None
    message: str
    note: bool = False  # passed, but worth knowing (the clone will be affected)


@dataclass(frozen=True)
class Verdict:
    """All checks of one sample."""

    checks: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return all(c.ok for c in self.checks)

    @property
    def problems(self) -> list[str]:
        """Messages of the failed checks."""
        return [c.message for c in self.checks if not c.ok]

    @property
    def notes(self) -> list[str]:
        """Messages of the checks that passed with a note."""
        return [c.message for c in self.checks if c.ok and c.note]

    def summary(self) -> str:
        """One line for people."""
        if not self.ok:
            return "; ".join(self.problems)
        return "good sample" + "".join(f"; note: {n}" for n in self.notes)

    def to_json(self) -> dict[str, Any]:
        """For voice.json."""
        checks = [{**asdict(c), "ok": bool(c.ok),
                   "value": None if c.value is None else float(c.value)}
                  for c in self.checks]
        return {"ok": self.ok, "summary": self.summary(), "checks": checks}


def assess(audio: np.ndarray, encoder: Any | None = None,
           options: QualityOptions | None = None) -> Verdict:
    """Check 16 kHz mono ``audio``; ``encoder`` (a SpeakerEncoder) enables the speaker check."""
    opts = options or QualityOptions()
    audio = np.asarray(audio, dtype=np.float32)
    seconds = len(audio) / SAMPLE_RATE
    checks = [Check("duration", seconds >= opts.min_seconds, round(seconds, 2),
                    f"too short: {seconds:.1f} s, need at least {opts.min_seconds:g} s"
                    if seconds < opts.min_seconds else f"{seconds:.1f} s")]
    clipped = float(np.mean(np.abs(audio) >= opts.clip_level)) if audio.size else 0.0
    checks.append(Check("clipping", clipped <= opts.max_clipped_ratio, round(clipped, 4),
                        f"clipping in {clipped:.0%} of samples — move away from the mic or "
                        "lower the input volume" if clipped > opts.max_clipped_ratio
                        else "no clipping"))
    vad = VoiceActivity(opts.vad_sensitivity)
    frames = [audio[i:i + FRAME] for i in range(0, len(audio) - FRAME + 1, FRAME)]
    voiced = np.array([vad.is_speech(f) for f in frames], dtype=bool)
    ratio = float(voiced.mean()) if len(frames) else 0.0
    checks.append(Check("speech", ratio >= opts.min_speech_ratio, round(ratio, 3),
                        f"mostly silence: speech in only {ratio:.0%} of the sample"
                        if ratio < opts.min_speech_ratio else f"speech in {ratio:.0%}"))
    speech = np.concatenate([f for f, v in zip(frames, voiced, strict=True) if v]) \
        if voiced.any() else np.zeros(0, np.float32)
    level = dbfs(speech)
    checks.append(Check("loudness", level >= opts.min_speech_dbfs, round(level, 1),
                        f"too quiet: speech at {level:.0f} dBFS — speak up or move closer"
                        if level < opts.min_speech_dbfs else f"speech at {level:.0f} dBFS"))
    if len(frames) >= 20:
        # Loud frames against the quietest ones, not VAD-voiced against unvoiced: heavy noise
        # makes the VAD call everything speech, which would hide the noise it measures.
        levels = np.array([dbfs(f) for f in frames])
        snr = float(np.percentile(levels, 95) - np.percentile(levels, 10))
        checks.append(Check("noise", snr >= opts.min_snr_db, round(snr, 1),
                            f"noisy: speech is only {snr:.0f} dB above the background — find a "
                            "quieter place" if snr < opts.min_snr_db else f"SNR {snr:.0f} dB"))
    if len(speech) >= SAMPLE_RATE:
        share = high_band_share(speech, opts.phone_band_hz)
        phone = share < opts.max_phone_band_share
        checks.append(Check("bandwidth", True, round(share, 6),
                            "telephone-band audio (nothing above about 4 kHz): the cloned voice "
                            "will sound like a phone call; a recording made with a microphone "
                            "here sounds better" if phone else "full bandwidth", note=phone))
    if encoder is not None and len(speech) >= 2 * opts.speaker_window_s * SAMPLE_RATE:
        thirds, windows = speaker_scores(speech, encoder, opts.speaker_window_s)
        checks.append(speaker_check(thirds, windows, opts))
    return Verdict(tuple(checks))


def high_band_share(speech: np.ndarray, cutoff: float) -> float:
    """Share of the spectral energy (Welch, 100 Hz to Nyquist) above ``cutoff`` Hz."""
    from scipy.signal import welch

    if len(speech) < 512:
        return float("nan")
    freqs, power = welch(speech, SAMPLE_RATE, nperseg=512)
    band = freqs >= 100
    return float(power[band & (freqs >= cutoff)].sum() / max(power[band].sum(), 1e-20))


def speaker_scores(speech: np.ndarray, encoder: Any,
                   window_s: float = 2.0) -> tuple[float | None, float]:
    """(least similarity of the thirds, or None when too short; 10th percentile of the windows).

    ``speech`` is the voiced audio only. Windows of ``window_s`` (hop half a window) are each
    compared with the embedding of the whole speech: one person's windows stay close to it,
    while a second voice's windows drift away even when the turns alternate quickly (where
    thirds each hold both voices and look alike).
    """
    from engine.voices.encoder import similarity

    thirds = None
    if len(speech) >= 3 * 1.6 * SAMPLE_RATE:  # GE2E's partial is 1.6 s
        parts = [encoder.embed(p) for p in np.array_split(speech, 3)]
        thirds = min(similarity(parts[i], parts[j]) for i in range(3) for j in range(i + 1, 3))
    whole = encoder.embed(speech)
    size, hop = int(window_s * SAMPLE_RATE), int(window_s * SAMPLE_RATE / 2)
    starts = range(0, max(len(speech) - size, 0) + 1, hop)
    sims = [similarity(encoder.embed(speech[i:i + size]), whole) for i in starts]
    return thirds, float(np.percentile(sims, 10))


def speaker_check(thirds: float | None, windows: float, opts: QualityOptions) -> Check:
    """The one-speaker verdict from :func:`speaker_scores`, in plain words."""
    # Each score against its own bar; the one furthest below it speaks for the check.
    pairs = [(windows, opts.min_window_match, opts.note_window_match)]
    if thirds is not None:
        pairs.append((thirds, opts.min_consistency, opts.note_consistency))
    value, bar, note_bar = min(pairs, key=lambda p: p[0] - p[1])
    if any(v < b for v, b, _ in pairs):
        return Check("one_speaker", False, round(value, 3),
                     "more than one speaker? parts of the sample sound like a different person "
                     f"(they match at {value:.2f}; one person stays above {bar:.2f}) — record "
                     "just the one voice")
    noted = [(v, n) for v, _, n in pairs if v < n]
    if noted:
        value, note_bar = min(noted, key=lambda p: p[0] - p[1])
        return Check("one_speaker", True, round(value, 3),
                     f"one speaker, probably: some parts match the rest less well than usual "
                     f"({value:.2f}, usually above {note_bar:.2f}) — play it back, and if you "
                     "hear a second voice, record again", note=True)
    return Check("one_speaker", True, round(value, 3), f"one speaker (parts match {value:.2f})")
