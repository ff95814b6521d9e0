"""A persona with its voice: pairing through the engine and the command line."""

from __future__ import annotations

import json

import numpy as np

from engine.voices.pairing import PAIRS_FILE, pair, voice_for


def _voice(name: str) -> None:
    import soundfile as sf

    from engine.voices.store import voices_dir

    folder = voices_dir() / name.lower()
    folder.mkdir(parents=True)
    sf.write(folder / "sample.wav", np.full(24000, 0.1, np.float32), 24000)
    (folder / "voice.json").write_text(json.dumps({"name": name, "created": 0, "source": "t"}))
    np.save(folder / "embedding.npy", np.ones(256, np.float32) / 16)


def test_a_pairing_wins_over_the_personas_default_and_can_be_undone(data_dir, tiny_persona_dir):
    from engine.models.persona import load_persona

    persona = load_persona(tiny_persona_dir)
    assert voice_for(persona) == persona.default_voice  # nothing paired yet
    pair(persona.id, "builtin:marius")
    assert voice_for(persona) == "builtin:marius"
    assert json.loads((data_dir / PAIRS_FILE).read_text()) == {persona.id: "builtin:marius"}
    pair(persona.id, None)
    assert voice_for(persona) == persona.default_voice
    (data_dir / PAIRS_FILE).write_text("{damaged")  # never fatal: no pairings
    assert voice_for(persona) == persona.default_voice


def test_voices_pair_and_unpair_through_the_cli(data_dir, tiny_persona_dir, capsys):
    from app.cli import main
    from engine.models.persona import load_persona

    _voice("Grandpa")
    persona = load_persona(tiny_persona_dir)
    assert main(["voices", "pair", "Grandpa", str(tiny_persona_dir)]) == 0
    assert "now speaks in Grandpa" in capsys.readouterr().out
    assert voice_for(persona) == "Grandpa"
    assert main(["voices", "pair", "Nobody", str(tiny_persona_dir)]) == 1
    assert "No voice called 'Nobody'" in capsys.readouterr().err
    assert voice_for(persona) == "Grandpa"  # a failed pairing changes nothing
    assert main(["voices", "pair", "builtin:alba", "no-such-persona"]) == 1
    assert main(["voices", "unpair", str(tiny_persona_dir)]) == 0
    assert voice_for(persona) == persona.default_voice
