"""A labelled set of one- and two-speaker enrolment samples from real recordings and espeak-ng.

Real people come from Debian packages, downloaded with ``apt-get download`` and unpacked with
``dpkg-deb -x`` into the cache (nothing is installed):

- ``asterisk-core-sounds-en-wav``: Allison Smith (woman, English), 8 kHz PCM prompts;
- ``asterisk-prompt-fr-armelle``: Armelle Desjardins (woman, French), 8 kHz GSM prompts;
- ``asterisk-prompt-es-co``: July E. Jimenez (woman, Spanish), 8 kHz GSM prompts;
- ``pocketsphinx-testdata``: three men at 16 kHz (a LibriVox reader, the "cards" speaker, the
  speaker of the goforward/numbers/something test utterances).

The 8 kHz voices are telephone band once upsampled, so they only appear in ``phone-*``
categories. espeak-ng voices at several pitches and speeds add synthetic speakers.

Categories: ``real-one``, ``phone-one``, ``espeak-one`` (one speaker); ``joined`` (A then B),
``interleaved`` (turns of 1-4 s), ``phone-two`` (both band-limited to 8 kHz). Each sample's
``second_share`` is measured (share of VAD-voiced 30 ms frames that belong to the second voice).

    PYTHONPATH=. .venv/bin/python benchmarks/enroll_set.py [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.audio.convert import resample  # noqa: E402
from engine.audio.frames import dbfs  # noqa: E402

SR = 16000
FRAME = SR * 30 // 1000  # 30 ms VAD frames
GAP = 0.3  # seconds of silence between prompts and turns
LEVEL = -24.0  # dBFS every prompt is brought to, so loudness tells the voices nothing
VERSION = 5  # bump when the recipe changes; names the cached .npz
SEED = 20240611

PACKAGES = ("asterisk-core-sounds-en-wav", "asterisk-prompt-fr-armelle",
            "asterisk-prompt-es-co", "pocketsphinx-testdata")
PS_DATA = "usr/share/pocketsphinx/test/data"
LICENSES = {  # from usr/share/doc/PKG/copyright of each package
    "asterisk-core-sounds-en-wav": "CC-BY-SA-3.0 (c) 2003-2010 Allison Smith",
    "asterisk-prompt-fr-armelle": "BSD-style (redistribution with notice) (c) 2006 Michel "
                                  "Gutierrez; voice Armelle Desjardins",
    "asterisk-prompt-es-co": "GPL-2 (c) 2006 Avatar Ltda.; voice July E. Jimenez",
    "pocketsphinx-testdata": "BSD-2 (c) 1995-2014 Carnegie Mellon University, 2014-2015 Alpha "
                             "Cephei (debian/copyright 'Files: *')",
    "espeak-ng": "synthetic: generated with espeak-ng (GPL-3+ program; text written here)",
}
TEXTS = (
    "The library opens at nine on weekdays and closes early on Sunday afternoons.",
    "Please remember to water the plants on the balcony while I am away next week.",
    "A light rain fell over the harbour as the fishing boats came slowly back to shore.",
    "My brother bought a second hand bicycle and rides it to work every morning.",
    "We should leave before six if we want to find a seat on the evening train.",
    "The recipe needs two cups of flour, a pinch of salt and three fresh eggs.",
    "Children were laughing in the park while their parents talked on the benches.",
    "After dinner we played cards and listened to old records until midnight.",
)
# key: (espeak voice, pitch, speed, sex)
ESPEAK = {
    "us30": ("en-us", 30, 130, "m"),
    "us50": ("en-us", 50, 170, "m"),
    "us70": ("en-us", 70, 150, "m"),
    "gb40": ("en-gb", 40, 150, "m"),
    "gbf50": ("en-gb+f3", 50, 170, "f"),
    "gbf70": ("en-gb+f3", 70, 130, "f"),
}


@dataclass(frozen=True)
class Sample:
    """One labelled enrolment sample (16 kHz mono float32)."""

    name: str
    category: str
    speakers: int
    second_share: float  # share of the speech by the second voice; 0 for one speaker
    audio: np.ndarray = field(repr=False)
    source: str
    license: str


@dataclass(frozen=True)
class Voice:
    """One speaker's prompts, trimmed, levelled and at 16 kHz."""

    key: str
    sex: str
    band: int  # 8000 for telephone-band sources, 16000 otherwise
    source: str
    license: str
    prompts: tuple[np.ndarray, ...] = field(repr=False)


# ------------------------------------------------------------------ fetching and decoding


def fetch(cache: Path, package: str) -> tuple[Path, str]:
    """Unpack ``package`` (downloaded with apt-get, not installed); its root and version."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        run = subprocess.run(["apt-get", "download", package], cwd=debs,
                             capture_output=True, text=True)
        if run.returncode != 0:  # a missing package list: refresh it once
            subprocess.run(["apt-get", "update"], capture_output=True, text=True)
            subprocess.run(["apt-get", "download", package], cwd=debs, check=True,
                           capture_output=True, text=True)
        found = sorted(debs.glob(f"{package}_*.deb"))
    deb = found[-1]
    version = deb.name.split("_")[1]
    root = cache / package
    if not (root / "usr").is_dir():
        tmp = cache / f".{package}.tmp"
        subprocess.run(["rm", "-rf", str(tmp)], check=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True)
        tmp.rename(root)
    return root, version


def read_audio(path: Path) -> np.ndarray:
    """Any file soundfile reads (or sox converts) as 16 kHz mono float32."""
    import soundfile as sf

    if path.suffix in (".gsm", ".ulaw", ".alaw", ".g722"):  # headerless: sox knows them
        raw = subprocess.run(["sox", str(path), "-t", "raw", "-e", "signed", "-b", "16",
                              "-c", "1", "-r", "8000", "-"], check=True,
                             capture_output=True).stdout
        return resample(np.frombuffer(raw, "<i2").astype(np.float32) / 32768, 8000, SR)
    if path.suffix == ".raw":  # pocketsphinx test utterances: 16 kHz 16-bit mono
        return np.fromfile(path, "<i2").astype(np.float32) / 32768
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return resample(audio.mean(axis=1), rate, SR)


def trim(audio: np.ndarray, floor_db: float = 40.0) -> np.ndarray:
    """Cut leading and trailing silence (10 ms frames under the loudest by ``floor_db``)."""
    hop = SR // 100
    n = len(audio) // hop
    if n < 3:
        return audio
    rms = np.sqrt(np.mean(np.square(audio[:n * hop].reshape(n, hop), dtype=np.float64), 1))
    db = 20 * np.log10(rms + 1e-9)
    keep = np.flatnonzero(db > max(db.max() - floor_db, -60.0))
    return audio[max(0, keep[0] - 3) * hop:min(len(audio), (keep[-1] + 4) * hop)]


def level(audio: np.ndarray) -> np.ndarray:
    """``audio`` at :data:`LEVEL` dBFS RMS, peaks kept under 0.98."""
    gain = 10 ** ((LEVEL - dbfs(audio)) / 20)
    peak = float(np.max(np.abs(audio))) * gain
    if peak > 0.98:
        gain *= 0.98 / peak
    return (audio * gain).astype(np.float32)


def prepare(paths: list[Path]) -> tuple[np.ndarray, ...]:
    """Prompts ready to join: decoded, trimmed, levelled."""
    return tuple(level(trim(read_audio(p))) for p in paths)


def pick(paths: list[Path], count: int, lo: float, hi: float, seconds, seed: int) -> list[Path]:
    """``count`` of ``paths`` lasting ``lo``-``hi`` s (by ``seconds(path)``), shuffled by seed."""
    good = [p for p in sorted(paths) if lo <= seconds(p) <= hi]
    order = np.random.default_rng(seed).permutation(len(good))
    return [good[i] for i in order[:count]]


def real_voices(cache: Path) -> dict[str, Voice]:
    """The recorded people of the four packages."""
    import soundfile as sf

    voices = {}
    root, ver = fetch(cache, "asterisk-core-sounds-en-wav")
    allison = root / "usr/share/asterisk/sounds/en_US_f_Allison"
    files = pick(list(allison.glob("*.wav")), 60, 1.5, 6.0, lambda p: sf.info(str(p)).duration,
                 SEED)
    voices["allison"] = Voice("allison", "f", 8000,
                              f"asterisk-core-sounds-en-wav {ver} (Allison Smith, en, 8 kHz)",
                              LICENSES["asterisk-core-sounds-en-wav"], prepare(files))
    for key, pkg, lang, who in (("armelle", "asterisk-prompt-fr-armelle", "fr", "Armelle"),
                                ("july", "asterisk-prompt-es-co", "es", "July")):
        root, ver = fetch(cache, pkg)
        gsm = list((root / f"usr/share/asterisk/sounds/{lang}").glob("*.gsm"))
        # GSM 6.10: 33 bytes per 20 ms
        files = pick(gsm, 40, 1.5, 6.0, lambda p: p.stat().st_size / 33 * 0.02, SEED + 1)
        voices[key] = Voice(key, "f", 8000, f"{pkg} {ver} ({who}, {lang}, 8 kHz GSM)",
                            LICENSES[pkg], prepare(files))
    root, ver = fetch(cache, "pocketsphinx-testdata")
    data = root / PS_DATA
    lic = LICENSES["pocketsphinx-testdata"]
    voices["librivox"] = Voice(
        "librivox", "m", 16000,
        f"pocketsphinx-testdata {ver} librivox/*.wav (LibriVox reader, 16 kHz)", lic,
        prepare(sorted((data / "librivox").glob("*.wav"))))
    voices["cards"] = Voice("cards", "m", 16000,
                            f"pocketsphinx-testdata {ver} cards/*.wav (man, 16 kHz)", lic,
                            prepare(sorted((data / "cards").glob("*.wav"))))
    voices["goforward"] = Voice(
        "goforward", "m", 16000,
        f"pocketsphinx-testdata {ver} goforward/numbers/something.raw (man, 16 kHz)", lic,
        prepare([data / f"{n}.raw" for n in ("goforward", "numbers", "something")]))
    return voices


def espeak_voices() -> dict[str, Voice]:
    """espeak-ng speakers, one prompt per sentence of :data:`TEXTS`."""
    import soundfile as sf

    version = subprocess.run(["espeak-ng", "--version"], capture_output=True,
                             text=True).stdout.split()[3]
    voices = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key, (name, pitch, speed, sex) in ESPEAK.items():
            prompts = []
            for i, text in enumerate(TEXTS):
                out = Path(tmp) / f"{key}-{i}.wav"
                subprocess.run(["espeak-ng", "-v", name, "-p", str(pitch), "-s", str(speed),
                                "-w", str(out), text], check=True, capture_output=True)
                audio, rate = sf.read(str(out), dtype="float32")
                prompts.append(level(trim(resample(audio, rate, SR))))
            voices[f"es-{key}"] = Voice(
                f"es-{key}", sex, 16000,
                f"espeak-ng {version} -v {name} -p {pitch} -s {speed}", LICENSES["espeak-ng"],
                tuple(prompts))
    return voices


# ------------------------------------------------------------------ assembling samples


def band_limit(audio: np.ndarray) -> np.ndarray:
    """Telephone band: down to 8 kHz and back up to 16 kHz."""
    return resample(resample(audio, SR, 8000), 8000, SR)[:len(audio)]


def voiced_mask(audio: np.ndarray) -> np.ndarray:
    """VAD verdicts of the 30 ms frames (webrtcvad mode 2, as in the enrolment checks)."""
    from engine.audio.vad import VoiceActivity

    vad = VoiceActivity(2)
    return np.array([vad.is_speech(audio[i:i + FRAME])
                     for i in range(0, len(audio) - FRAME + 1, FRAME)], dtype=bool)


def gap() -> np.ndarray:
    """:data:`GAP` seconds of silence."""
    return np.zeros(int(GAP * SR), np.float32)


def join(pieces: list[np.ndarray]) -> np.ndarray:
    """Pieces with gaps between them."""
    out: list[np.ndarray] = []
    for i, p in enumerate(pieces):
        if i:
            out.append(gap())
        out.append(p)
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def assemble(parts: list[np.ndarray], owners: list[int]) -> tuple[np.ndarray, float]:
    """Parts joined with gaps, and the share of VAD-voiced frames owned by voice 1.

    A frame belongs to the part its middle sample is in; gaps belong to the part before.
    """
    audio = join(parts)
    owner = np.zeros(len(audio), np.int8)
    at = 0
    for i, (p, o) in enumerate(zip(parts, owners, strict=True)):
        end = at + len(p) + (len(gap()) if i + 1 < len(parts) else 0)
        owner[at:end] = o
        at = end
    voiced = voiced_mask(audio)
    mids = np.arange(len(voiced)) * FRAME + FRAME // 2
    second = int(np.sum(owner[mids][voiced] == 1))
    return audio, second / max(1, int(voiced.sum()))


class Builder:
    """Cuts speech from voices (each voice's prompts in turn, so samples differ)."""

    def __init__(self, voices: dict[str, Voice]):
        self.voices = voices
        self.cursor = dict.fromkeys(voices, 0)
        self.samples: list[Sample] = []
        self.rng = np.random.default_rng(SEED)
        self._masks: dict[tuple[str, int], np.ndarray] = {}

    def mask(self, key: str, idx: int) -> np.ndarray:
        """VAD verdicts of the 30 ms frames of prompt ``idx`` of ``key`` (cached)."""
        if (key, idx) not in self._masks:
            self._masks[key, idx] = voiced_mask(self.voices[key].prompts[idx])
        return self._masks[key, idx]

    def speech_seconds(self, key: str) -> float:
        """VAD-voiced seconds in all of ``key``'s prompts."""
        return sum(int(self.mask(key, i).sum())
                   for i in range(len(self.voices[key].prompts))) * FRAME / SR

    def take(self, key: str, seconds: float) -> list[np.ndarray]:
        """Prompts of ``key`` holding ``seconds`` of voiced speech (the last one cut)."""
        voice, need, pieces = self.voices[key], round(seconds * SR / FRAME), []
        while need > 0:
            idx = self.cursor[key] % len(voice.prompts)
            self.cursor[key] += 1
            p, count = voice.prompts[idx], np.cumsum(self.mask(key, idx))
            if count.size and count[-1] > need:
                p = p[:(int(np.searchsorted(count, need)) + 1) * FRAME].copy()
                fade = min(len(p), SR // 100)
                p[-fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
                need = 0
            elif count.size:
                need -= int(count[-1])
            pieces.append(p)
        return pieces

    def record(self, name: str, category: str, keys: tuple[str, ...], audio: np.ndarray,
               share: float) -> None:
        """Keep a finished sample."""
        vs = [self.voices[k] for k in keys]
        self.samples.append(Sample(name, category, len(keys), share, audio,
                                   " + ".join(v.source for v in vs),
                                   " + ".join(dict.fromkeys(v.license for v in vs))))

    def one(self, category: str, key: str, seconds: float, idx: int) -> None:
        """A one-speaker sample of ``seconds`` of voiced speech."""
        seconds = min(seconds, self.speech_seconds(key))
        self.record(f"{category}-{key}-{idx}", category, (key,),
                    join(self.take(key, seconds)), 0.0)

    def fit(self, a: str, b: str, share: float, total: float) -> tuple[float, float]:
        """Voiced seconds of A and of B for ``share`` of ``total``, within what each has."""
        total = min(total, self.speech_seconds(a) / (1 - share), self.speech_seconds(b) / share)
        return total * (1 - share), total * share

    def two(self, category: str, a: str, b: str, share: float, total: float, tag: str,
            interleave: bool, phone: bool = False) -> None:
        """A two-speaker sample whose measured second share is ``share`` to ``share`` + 0.02.

        The VAD is stateful (hangover), so the share is measured on the finished sample; the
        speech of each voice is rescaled and the sample rebuilt until it fits (8 tries).
        """
        sa, sb = self.fit(a, b, share, total)
        cursor, state = dict(self.cursor), self.rng.bit_generator.state
        aim, best = share + 0.01, None
        for _ in range(8):
            self.cursor, self.rng.bit_generator.state = dict(cursor), state
            stream_a, stream_b = join(self.take(a, sa)), join(self.take(b, sb))
            if interleave:
                parts, owners = self.turns(stream_a, stream_b)
            else:
                parts, owners = [stream_a, stream_b], [0, 1]
            if phone:
                parts = [band_limit(p) for p in parts]
            audio, measured = assemble(parts, owners)
            rank = (measured < share, abs(measured - aim))
            if best is None or rank < best[0]:
                best = (rank, audio, measured, dict(self.cursor))
            if abs(measured - aim) <= 0.01 or not 0 < measured < 1:
                break
            odds = np.sqrt(aim / (1 - aim) / (measured / (1 - measured)))
            sa, sb = sa / odds, sb * odds
        _, audio, measured, self.cursor = best
        self.record(f"{category}-{tag}-{a}+{b}-{round(share * 100)}", category, (a, b), audio,
                    round(measured, 3))

    def turns(self, stream_a: np.ndarray, stream_b: np.ndarray) -> tuple[list, list[int]]:
        """Turns of 1-4 s, A first and last, B in between; the parts and their owners."""
        la, lb = len(stream_a) / SR, len(stream_b) / SR
        lo = max(1, math.ceil(lb / 4), math.ceil(la / 4) - 1)
        hi = max(lo, min(math.floor(lb), math.floor(la) - 1))
        n_b = int(np.clip(round(lb / 2.2), lo, hi))
        turns_a, turns_b = self.split(stream_a, n_b + 1), self.split(stream_b, n_b)
        parts, owners = [], []
        for i, t in enumerate(turns_a):
            parts.append(t)
            owners.append(0)
            if i < len(turns_b):
                parts.append(turns_b[i])
                owners.append(1)
        return parts, owners

    def split(self, stream: np.ndarray, n: int) -> list[np.ndarray]:
        """``stream`` in ``n`` turns of 1-4 s where possible (random, seeded)."""
        seconds = len(stream) / SR
        cuts = np.full(n, seconds / n)
        for _ in range(500):
            trial = self.rng.dirichlet(np.full(n, 4.0)) * seconds
            if np.all((trial >= 1.0) & (trial <= 4.0)):
                cuts = trial
                break
        edges = np.concatenate([[0], np.cumsum(cuts)]) * SR
        edges = np.round(edges).astype(int)
        edges[-1] = len(stream)
        return [stream[edges[i]:edges[i + 1]] for i in range(n)]


def compose(voices: dict[str, Voice]) -> list[Sample]:
    """The fixed recipe of the set."""
    b = Builder(voices)
    rng = np.random.default_rng(SEED + 7)

    def dur(lo: float = 5.5, hi: float = 9.5) -> float:  # voiced seconds
        return float(rng.uniform(lo, hi))

    # one speaker
    for i, s in enumerate((5.5, 6.5, 7.5, 8.5, 10.0)):
        b.one("real-one", "librivox", s, i)
    b.one("real-one", "cards", 15.0, 0)  # the whole pool (~7 s)
    b.one("real-one", "goforward", 15.0, 0)  # the whole pool (~8 s)
    for i in range(8):
        b.one("phone-one", "allison", dur(5.0, 11.0), i)
    for key in ("armelle", "july"):
        for i in range(4):
            b.one("phone-one", key, dur(5.0, 11.0), i)
    for key in ESPEAK:
        for i in range(2):
            b.one("espeak-one", f"es-{key}", dur(), i)
    # two speakers, full band
    pairs = (("librivox", "cards", "mm"), ("goforward", "librivox", "mm"),
             ("cards", "goforward", "mm"), ("es-us30", "es-us70", "espeak-pitch"),
             ("es-us30", "es-gbf70", "espeak-mf"))
    for a, bb, tag in pairs:
        for share in (0.25, 0.40, 0.50):
            b.two("joined", a, bb, share, dur(6.5, 10.0), tag, False)
    for a, bb, tag in pairs:
        for share in (0.25, 0.35, 0.50):
            b.two("interleaved", a, bb, share, dur(6.5, 10.0), tag, True)
    # two speakers, telephone band (the 16 kHz voices band-limited too)
    phone = (("allison", "librivox", "wm", "j", (0.25, 0.40, 0.50)),
             ("allison", "librivox", "wm", "i", (0.30, 0.45)),
             ("allison", "armelle", "ww", "j", (0.40,)),
             ("allison", "armelle", "ww", "i", (0.35, 0.50)),
             ("armelle", "july", "ww", "j", (0.25, 0.50)),
             ("armelle", "july", "ww", "i", (0.40,)),
             ("librivox", "cards", "mm", "j", (0.40,)),
             ("librivox", "cards", "mm", "i", (0.30,)),
             ("july", "goforward", "wm", "j", (0.50,)),
             ("july", "goforward", "wm", "i", (0.40,)))
    for a, bb, tag, how, shares in phone:
        for share in shares:
            b.two("phone-two", a, bb, share, dur(6.5, 10.0), f"{tag}-{how}", how == "i",
                  phone=True)
    return b.samples


# ------------------------------------------------------------------ cache


def save(samples: list[Sample], path: Path) -> None:
    """Write the set as one .npz (audio arrays plus JSON metadata)."""
    meta = [{k: getattr(s, k) for k in ("name", "category", "speakers", "second_share",
                                        "source", "license")} for s in samples]
    arrays = {f"a{i:03d}": s.audio for i, s in enumerate(samples)}
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, meta=np.array(json.dumps(meta)), **arrays)
    tmp.rename(path)


def load(path: Path) -> list[Sample]:
    """Read a set written by :func:`save`."""
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        return [Sample(audio=data[f"a{i:03d}"], **m) for i, m in enumerate(meta)]


def build(cache: Path) -> list[Sample]:
    """The labelled set, built once into ``cache`` (downloads, unpacked packages, .npz).

    Args:
        cache: Folder for the downloaded packages and the built set.

    Returns:
        The samples, in a fixed order.

    """
    cache = Path(cache).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"enroll_set_v{VERSION}.npz"
    if path.is_file():
        return load(path)
    voices = {**real_voices(cache), **espeak_voices()}
    samples = compose(voices)
    save(samples, path)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=Path("~/.cache/ttt-enroll-eval"))
    args = parser.parse_args()
    started = time.perf_counter()
    samples = build(args.cache)
    print(f"{len(samples)} samples in {time.perf_counter() - started:.1f} s")
    for s in samples:
        print(f"{s.name:<48} {s.category:<12} {s.speakers} {s.second_share:5.2f} "
              f"{len(s.audio) / SR:5.1f} s  {s.license[:40]}")


if __name__ == "__main__":
    main()
