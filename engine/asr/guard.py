"""Whisper must not invent words: what reaches it, and which of its segments are kept.

Whisper always writes something. Given 30 s of digital silence the bundled tiny.en says "you"
(no-speech probability 0.95, but an average log-probability of -0.71, so Whisper's own rule
keeps it); given loud pink noise it loops "I'm going to go back to the next one." fourteen
times; given NaN samples it prints "!!!!...". Three defences, used by every backend:

1. :func:`check_audio` refuses audio that is empty or not finite (NaN, infinity).
2. :func:`find_speech` keeps only the voiced regions the app's VAD (webrtcvad) finds, so
   silence and quiet noise never reach Whisper, and 30 minutes of silence cost half a second
   instead of 40 s of decoding.
3. :func:`invented` drops segments by Whisper's own signals (no-speech probability with a low
   log-probability, a repetition loop's compression ratio), text without a letter or digit, a
   lone word Whisper itself doubts, and one word said over and over; :func:`drop_loop` does
   the last for the whole transcript ("you" once per 30 s window).
4. :func:`token_cap` caps an English decode at more words than the speech could hold, so a
   tone the VAD let through costs a fraction of a second, and a decode that reached the cap
   (:meth:`TokenCap.reached`) is dropped.

The thresholds and the figures behind them are on :class:`GuardOptions`;
``benchmarks/asr_guard.py`` prints what each clip kind gives with and without the guard.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.asr.types import Segment
from engine.audio.files import AudioFileError

SAMPLE_RATE = 16000  # Hz, what every recognizer is given
FRAME_MS = 30  # webrtcvad frame; 30 ms is its steadiest verdict


@dataclass(frozen=True)
class GuardOptions:
    """What counts as speech, and which of Whisper's segments count as invented.

    Figures from the bundled tiny.en and webrtcvad mode 2 on this project's clips (espeak-ng
    words and sentences, the pocketsphinx-testdata men, white/pink noise from -70 to -10 dBFS,
    chords, sweeps, melodies, 50 Hz hum).
    """

    vad_gate: bool = True  # False: the whole recording goes to Whisper (benchmarks compare)
    drop_invented: bool = True  # False: every segment Whisper writes is kept
    sensitivity: int = 2  # webrtcvad mode, as the listener uses by default
    # Voiced time a region needs, as the pipeline's gate (MIN_SPEECH_S). Steady noise up to
    # -35 dBFS is voiced for at most 0.12 s in 10 minutes (while the fresh detector adapts);
    # "Okay." at -50 dBFS is 0.18 s, ordinary words 0.36 s or more.
    min_speech_s: float = 0.15
    merge_gap_s: float = 1.0  # voiced frames closer than this belong to one region (a pause)
    pad_s: float = 0.3  # audio kept each side of a region so no syllable is clipped
    # Whisper's own "this was silence" rule (its no_speech_threshold and logprob_threshold).
    no_speech_prob: float = 0.6
    avg_logprob: float = -1.0
    # A failed decode of probable silence: tones that pass the VAD gave "I'm not sure if I'm
    # going to be there." at log-probability -1.73 to -2.22 and no-speech 0.45-0.60; of 255
    # segments of real speech (clean, quiet, pink noise down to 0 dB SNR, music) none was
    # below -1.32.
    failed_logprob: float = -1.5
    failed_no_speech_prob: float = 0.4
    # One word Whisper itself doubts: "You" and "Oh" on sweeps and melodies at 0.80-0.87;
    # single real words ("Yes.", "No.", "Okay."...) measured at most 0.63 over 100 segments.
    one_word_no_speech_prob: float = 0.7
    # gzip ratio of a window's text: real speech measured 0.27-1.2, the pink-noise loop 11.1,
    # "." repeated on -60 dBFS white noise 4.5. Whisper's own threshold for a failed decode.
    compression_ratio: float = 2.4
    # One word said more often than this (and nothing else) is a loop: "you you you you you".
    # Real short replies repeat up to four times ("Go, go, go, go.", "No, no, no.", "5 5").
    max_repeats: int = 4
    # Whisper tokens a second of speech can hold. Real speech measured at most 5.5 text tokens
    # a second (the 10 pocketsphinx-testdata clips, tiny.en, both backends); a 2 s beep the VAD
    # passed ran to 224 tokens of "Beep beep..." in 1.2 s. A decode is capped at this rate
    # (plus a floor for short words), and one that reaches the cap is dropped (TokenCap).
    tokens_per_s: float = 14.0
    token_floor: int = 20


OPTIONS = GuardOptions()  # what the recognizers use; tests and benchmarks swap it to compare
OFF = GuardOptions(vad_gate=False, drop_invented=False)  # the recognizers as they were


def check_audio(audio: np.ndarray) -> np.ndarray:
    """``audio`` as 1-D float32, refused if empty or not finite; values are not changed.

    Raises:
        AudioFileError: no samples (``audio_empty``), more than one channel
            (``audio_not_mono``), or NaN/infinite samples (``audio_not_finite``).

    """
    with np.errstate(over="ignore", invalid="ignore"):  # an overflowing cast is caught below
        samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim != 1:
        raise AudioFileError(f"The audio has shape {samples.shape}; speech recognition takes "
                             "one channel.", code="audio_not_mono")
    if samples.size == 0:
        raise AudioFileError("The audio holds no samples.", code="audio_empty")
    finite = np.isfinite(samples)
    if not finite.all():
        bad = int(samples.size - np.count_nonzero(finite))
        first = int(np.argmin(finite)) / SAMPLE_RATE
        raise AudioFileError(
            f"The audio holds {bad} sample{'s' if bad != 1 else ''} that are not numbers (NaN "
            f"or infinity), the first at {first:.2f} s.",
            hint="The file is damaged or was written by a program that failed; export or "
                 "record it again.",
            code="audio_not_finite")
    return samples


@dataclass(frozen=True)
class Speech:
    """The voiced regions of a recording, joined one after another for the recognizer."""

    audio: np.ndarray
    regions: tuple[tuple[int, int], ...]  # (start, end) samples of each region in the original

    def original_time(self, seconds: float) -> float:
        """A time in ``audio`` as a time in the original recording."""
        offset = int(round(seconds * SAMPLE_RATE))
        for start, end in self.regions:
            if offset <= end - start:
                return (start + offset) / SAMPLE_RATE
            offset -= end - start
        return self.regions[-1][1] / SAMPLE_RATE if self.regions else seconds


def voiced_frames(audio: np.ndarray, sensitivity: int = 2) -> np.ndarray:
    """One webrtcvad verdict per whole 30 ms frame of 16 kHz ``audio``."""
    from engine.audio.vad import VoiceActivity

    vad = VoiceActivity(sensitivity)  # a fresh detector: webrtcvad adapts to what it heard
    n = SAMPLE_RATE * FRAME_MS // 1000
    return np.fromiter((vad.is_speech(audio[i:i + n]) for i in range(0, len(audio) - n + 1, n)),
                       dtype=bool)


def speech_regions(verdicts: Sequence[bool] | np.ndarray, samples: int,
                   options: GuardOptions | None = None) -> list[tuple[int, int]]:
    """Sample ranges of speech from per-frame verdicts of a recording of ``samples``.

    Voiced frames closer than ``merge_gap_s`` form one region; a region counts when it holds
    ``min_speech_s`` of voiced frames; each is padded by ``pad_s``, overlapping ones merged.
    """
    opts = options or OPTIONS
    n = SAMPLE_RATE * FRAME_MS // 1000
    voiced = np.flatnonzero(np.asarray(verdicts, dtype=bool))
    needed = max(1, int(np.ceil(opts.min_speech_s * 1000 / FRAME_MS - 1e-9)))
    max_gap = int(opts.merge_gap_s * 1000 / FRAME_MS)  # unvoiced frames a region bridges
    # Split the voiced frames where more than max_gap unvoiced frames lie between them.
    groups = np.split(voiced, np.flatnonzero(np.diff(voiced) > max_gap + 1) + 1)
    pad = int(opts.pad_s * SAMPLE_RATE)
    judged = len(verdicts) * n  # samples the verdicts cover
    regions: list[tuple[int, int]] = []
    for group in groups:
        if len(group) < needed:
            continue
        lo, hi = max(0, int(group[0]) * n - pad), (int(group[-1]) + 1) * n + pad
        if hi >= judged:  # reaches the last whole frame: keep the tail no verdict covered
            hi = samples
        hi = min(samples, hi)
        if regions and lo <= regions[-1][1]:
            regions[-1] = (regions[-1][0], hi)
        else:
            regions.append((lo, hi))
    return regions


def find_speech(audio: np.ndarray, options: GuardOptions | None = None) -> Speech | None:
    """The voiced part of checked 16 kHz ``audio``; None when nothing in it is speech."""
    opts = options or OPTIONS
    if not opts.vad_gate:
        return Speech(audio, ((0, len(audio)),))
    regions = speech_regions(voiced_frames(audio, opts.sensitivity), len(audio), opts)
    if not regions:
        return None
    if len(regions) == 1 and regions[0] == (0, len(audio)):
        return Speech(audio, tuple(regions))
    return Speech(np.concatenate([audio[a:b] for a, b in regions]), tuple(regions))


def english(language: str | None, model: str) -> bool:
    """Whether a recognizer transcribes English: told so, or an English-only model.

    English-only: the ".en" sizes, and every distil-whisper model (distil-large-v3 included,
    whose name does not say so: distil-whisper is trained for English only).
    """
    name = str(model).replace("\\", "/").rsplit("/", 1)[-1]
    return (language or "").lower() == "en" or name.endswith(".en") or \
        name.startswith("distil-")


@dataclass(frozen=True)
class TokenCap:
    """The most tokens a decode may write, and how many listed tokens mean it got there."""

    tokens: int  # the decoder's limit (faster-whisper's max_new_tokens, whisper's sample_len)
    reached_at: int | None  # segment tokens that show a decode cut at the cap (None: not judged)

    def reached(self, listed: int) -> bool:
        """Whether a decode whose segments list ``listed`` tokens was cut at the cap.

        Only a sound that is not speech gets there (a tone, a beep): drop the whole transcript.
        """
        return self.reached_at is not None and listed >= self.reached_at


def token_cap(seconds: float, *, english: bool, ceiling: int, listed: float,
              options: GuardOptions | None = None) -> TokenCap | None:
    """The cap for a decode of ``seconds`` of speech (None: uncapped, as before).

    Whisper decodes 30 s windows, and the cap is per window. English only: the rate was
    measured on English, and other scripts take more tokens a second (Chinese, Hindi,
    Russian: 8 to 15), so other languages decode uncapped.

    Args:
        seconds: the speech decoded (the voiced regions, not the whole recording).
        english: whether the recognizer transcribes English (:func:`english`).
        ceiling: what the backend allows (faster-whisper refuses a prompt plus cap beyond the
            decoder's 448 tokens; openai-whisper's own default is 224). A cap at the ceiling
            is the backend's, not the speech's: reaching it proves nothing, so it is not judged.
        listed: the share of a cut decode's tokens its segments list. faster-whisper lists
            half (10, 20, 40, 80 for caps of 20, 40, 80, 160 on a beep), openai-whisper all.
        options: the guard's settings (:data:`OFF`: no cap).

    """
    opts = options or OPTIONS
    if not opts.drop_invented or not english:
        return None
    rate = int(opts.tokens_per_s * min(seconds, 30.0)) + opts.token_floor
    tokens = min(rate, ceiling)
    judged = rate < ceiling and seconds <= 30.0
    return TokenCap(tokens, max(1, int(tokens * listed)) if judged else None)


def invented(text: str, *, no_speech_prob: float, avg_logprob: float,
             compression_ratio: float, options: GuardOptions | None = None) -> str | None:
    """Why Whisper's segment ``text`` is not speech (a short reason), or None to keep it."""
    opts = options or OPTIONS
    if not opts.drop_invented:
        return None
    words = re.findall(r"\w+", text.lower())
    if not words:
        return "no words"
    if no_speech_prob > opts.no_speech_prob and avg_logprob < opts.avg_logprob:
        return "no speech"
    if no_speech_prob > opts.failed_no_speech_prob and avg_logprob < opts.failed_logprob:
        return "failed decode"
    if len(words) == 1 and no_speech_prob > opts.one_word_no_speech_prob:
        return "one doubtful word"
    if compression_ratio > opts.compression_ratio:
        return "repetition"
    if _is_loop(words, opts):
        return "one word over and over"
    return None


def drop_loop(segments: Sequence[Segment], options: GuardOptions | None = None
              ) -> tuple[Segment, ...]:
    """No segments when, all together, they are one word over and over ("you" per window)."""
    opts = options or OPTIONS
    text = " ".join(s.text for s in segments)
    if opts.drop_invented and _is_loop(re.findall(r"\w+", text.lower()), opts):
        return ()
    return tuple(segments)


@dataclass(frozen=True)
class Decoded:
    """One segment as Whisper decoded it, in terms both backends give."""

    start: float  # seconds into the speech Whisper was given
    end: float
    text: str
    no_speech_prob: float
    avg_logprob: float
    compression_ratio: float
    tokens: int  # as the backend lists them (see token_cap's ``listed``)


def kept(decoded: Sequence[Decoded], speech: Speech, cap: TokenCap | None) -> tuple[Segment, ...]:
    """The segments of a decode that are speech, in the recording's time.

    Nothing when the decode reached its cap (:meth:`TokenCap.reached`) or is one word over
    and over (:func:`drop_loop`); otherwise those :func:`invented` does not reject.
    """
    if cap is not None and cap.reached(sum(d.tokens for d in decoded)):
        return ()
    return drop_loop(tuple(
        Segment(speech.original_time(d.start), speech.original_time(d.end), d.text.strip())
        for d in decoded
        if d.text.strip() and not invented(d.text, no_speech_prob=d.no_speech_prob,
                                           avg_logprob=d.avg_logprob,
                                           compression_ratio=d.compression_ratio)))


def _is_loop(words: list[str], opts: GuardOptions) -> bool:
    return len(words) > opts.max_repeats and len(set(words)) == 1
