"""persona.json validation: every bad field gets an error that names it."""

from __future__ import annotations

import json

import pytest

from engine.errors import PersonaError
from engine.models.persona import load_persona
from engine.models.registry import find_persona

GOOD = {"name": "Ann", "base_model": "microsoft/DialoGPT-small", "prompt_format": "dialogpt"}


def write(folder, data):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "persona.json").write_text(
        data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return folder


def test_good_persona_loads_with_defaults(tmp_path):
    persona = load_persona(write(tmp_path / "ann", GOOD))
    assert persona.id == "ann" and persona.name == "Ann"
    assert persona.weights.source == "folder"
    assert persona.decoding.max_new_tokens == 64


@pytest.mark.parametrize(("change", "named"), [
    ({"name": None}, "'name'"),
    ({"base_model": None}, "'base_model'"),
    ({"prompt_format": None}, "'prompt_format'"),
    ({"name": 3}, "'name' in persona.json must be str, not int"),
    ({"name": "  "}, "'name'"),
    ({"prompt_format": "alpaca"}, "'prompt_format' must be one of dialogpt, chat_template"),
    ({"context_tokens": "1024"}, "'context_tokens'"),
    ({"context_tokens": 4}, "'context_tokens' must be at least 16"),
    ({"decoding": {"temperature": "hot"}}, "'decoding.temperature' must be float"),
    ({"decoding": {"top_p": 1.5}}, "'top_p'"),
    ({"decoding": {"max_new_tokens": 0}}, "'max_new_tokens'"),
    ({"decoding": {"do_sample": 1}}, "'decoding.do_sample' must be bool"),
    ({"decoding": {"beam": 2}}, "'decoding.beam'"),
    ({"decoding": []}, "'decoding' in persona.json must be dict"),
    ({"weights": {"source": "ftp"}}, "'weights.source'"),
    ({"weights": {"source": "hub"}}, "'weights.repo_id'"),
    ({"weights": {"source": "package"}}, "'weights.package'"),
    ({"weights": {"path": "x"}}, "'weights.path'"),
    ({"voice": "x"}, "Unknown field 'voice'"),
    ({"starter": "yes"}, "'starter'"),
    ({"schema_version": 99}, "schema_version 99"),
])
def test_bad_field_is_named(tmp_path, change, named):
    data = {**GOOD, **change}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(PersonaError) as caught:
        load_persona(write(tmp_path / "p", data))
    assert named in caught.value.message


@pytest.mark.parametrize(("content", "says"), [
    ("{not json", "not valid JSON (line 1"),
    ("[1, 2]", "must hold a JSON object"),
    (b"\xff\xfe\x00", "not UTF-8"),
])
def test_unreadable_persona_json(tmp_path, content, says):
    folder = tmp_path / "p"
    folder.mkdir()
    path = folder / "persona.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(PersonaError) as caught:
        load_persona(folder)
    assert says in caught.value.message


def test_folder_without_persona_json(tmp_path):
    with pytest.raises(PersonaError) as caught:
        load_persona(tmp_path)
    assert caught.value.code == "persona_not_found"


def test_find_persona_explains_catalogue_entries(data_dir):
    with pytest.raises(PersonaError) as caught:
        find_persona("dialogpt-large")
    assert caught.value.code == "persona_not_pulled"
    assert "models pull dialogpt-large" in caught.value.hint
    with pytest.raises(PersonaError) as caught:
        find_persona("nobody")
    assert caught.value.code == "persona_not_found" and "starter" in caught.value.hint


def test_starter_is_bundled_and_labelled(data_dir):
    persona = find_persona(None)
    assert persona.id == "starter" and persona.starter
    assert "Starter" in persona.label
    assert persona.prompt_format == "chat_template"
