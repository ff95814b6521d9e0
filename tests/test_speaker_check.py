"""The one-speaker check on recordings of real people, with the real GE2E weights.

Through the engine, ``voices add`` and (in tests/app) the Voices dialog. Thresholds were chosen
on a larger set by ``benchmarks/enroll_eval.py``; these recordings are three of its speakers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.voices.quality import QualityOptions, assess, speaker_check
from tests import real_speech

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not real_speech.available(), reason=real_speech.SKIP_REASON)


@pytest.fixture(scope="module")
def encoder():
    from engine.voices.encoder import SpeakerEncoder

    return SpeakerEncoder()


@pytest.fixture(scope="module")
def men() -> dict[str, np.ndarray]:
    return {name: real_speech.join(real_speech.speaker(name))
            for name in ("librivox", "goforward", "cards")}


def speaker_verdict(audio: np.ndarray, encoder):
    verdict = assess(audio, encoder)
    return verdict, next(c for c in verdict.checks if c.name == "one_speaker")


@pytest.mark.parametrize("name", ["librivox", "goforward", "cards"])
def test_one_real_man_is_never_refused(encoder, men, name):
    verdict, check = speaker_verdict(men[name], encoder)
    print(name, check)
    assert verdict.ok, verdict.summary()
    assert check.ok


def test_two_real_men_one_after_the_other_are_refused(encoder, men):
    lib, go = men["librivox"], men["goforward"]
    verdict, check = speaker_verdict(real_speech.join([lib[:len(lib) // 2],
                                                      go[:len(go) // 2]]), encoder)
    assert not check.ok and not verdict.ok
    assert "more than one speaker?" in check.message and "record just the one voice" in \
        check.message


def test_two_real_men_taking_turns_are_refused_or_noted(encoder, men):
    lib, go = men["librivox"], men["goforward"]
    _, three = speaker_verdict(real_speech.turns(lib, go, 3.0), encoder)
    assert not three.ok  # 3 s turns: refused
    _, two = speaker_verdict(real_speech.turns(lib, go, 2.0), encoder)
    assert not two.ok or two.note  # 2 s turns: at least "play it back"
    if two.ok:
        assert "play it back" in two.message


def test_the_verdict_names_the_score_against_its_own_bar():
    opts = QualityOptions()
    clean = speaker_check(0.80, 0.90, opts)  # the score nearest its bar is the one shown
    assert clean.ok and not clean.note and clean.message == "one speaker (parts match 0.90)"
    windows_low = speaker_check(0.80, 0.79, opts)
    assert not windows_low.ok and "match at 0.79; one person stays above 0.81" in \
        windows_low.message
    thirds_low = speaker_check(0.60, 0.84, opts)
    assert not thirds_low.ok and "match at 0.60; one person stays above 0.68" in \
        thirds_low.message
    noted = speaker_check(None, 0.84, opts)  # too little speech for thirds
    assert noted.ok and noted.note and "(0.84, usually above 0.86)" in noted.message


def test_voices_add_refuses_two_real_men_and_keeps_one(tmp_path, men):
    import soundfile as sf

    lib, go = men["librivox"], men["goforward"]
    mixed, alone = tmp_path / "two.wav", tmp_path / "one.wav"
    sf.write(mixed, real_speech.join([go[:int(len(go) * 0.6)], lib[:int(len(lib) * 0.4)]]),
             16000)
    sf.write(alone, lib, 16000)
    env = {**os.environ, "TTT_DATA_DIR": str(tmp_path / "data")}

    def add(name: str, path: Path, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "engine", "voices", "add", name,
                               "--consent", "Tester", "--file", str(path), *extra], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=300)

    refused = add("Pair", mixed)
    assert refused.returncode == 1
    assert "BAD  one_speaker  more than one speaker?" in refused.stdout, refused.stdout
    assert "--keep-anyway" in refused.stderr
    assert not (tmp_path / "data" / "voices" / "pair").exists()
    kept = add("Reader", alone)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert "Enrolled the voice Reader." in kept.stdout
    assert "one_speaker" in kept.stdout and "BAD" not in kept.stdout
