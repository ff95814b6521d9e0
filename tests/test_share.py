"""A persona and its voice in one archive: export, import on "another machine", and refusals."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from engine.errors import PersonaError
from engine.install.share import MANIFEST, export_persona, import_persona


def make_voice(name: str, level: float = 0.1, consent_by: str = "Joe") -> Path:
    import soundfile as sf

    from engine.fsutil import slug
    from engine.voices.store import CONSENT_STATEMENT, voices_dir

    folder = voices_dir() / slug(name)
    folder.mkdir(parents=True)
    sf.write(folder / "sample.wav", np.full(24000, level, np.float32), 24000)
    (folder / "voice.json").write_text(json.dumps({
        "name": name, "created": 0, "source": "t",
        "consent": {"statement": CONSENT_STATEMENT, "by": consent_by, "at": 1.7e9}}))
    np.save(folder / "embedding.npy", np.ones(256, np.float32) / 16)
    (folder / "pocket_state.x.abc.safetensors").write_bytes(b"derived here")
    return folder


@pytest.fixture
def installed_tiny(data_dir, tiny_persona_dir) -> str:
    """The tiny persona installed in the data folder, as `models add` does."""
    from engine.install.manager import add_folder

    return add_folder(tiny_persona_dir, name="Grandpa Bot").id


def other_machine(monkeypatch, tmp_path) -> Path:
    """Switch to a second, empty data folder."""
    other = tmp_path / "other-data"
    monkeypatch.setenv("TTT_DATA_DIR", str(other))
    return other


def test_a_persona_travels_with_its_voice_and_consent(installed_tiny, data_dir, tmp_path,
                                                      monkeypatch):
    from engine.models.loader import weights_folder
    from engine.voices.pairing import pair, voice_for

    make_voice("Grandpa")
    pair(installed_tiny, "Grandpa")
    done = export_persona(installed_tiny, tmp_path / "grandpa")  # .zip is added
    assert done.path == tmp_path / "grandpa.zip" and done.voice == "Grandpa"
    with zipfile.ZipFile(done.path) as zf:
        names = set(zf.namelist())
        inside = json.loads(zf.read("persona/persona.json"))
    assert MANIFEST in names and "voice/sample.wav" in names and "voice/voice.json" in names
    assert not any("pocket_state" in n for n in names)  # derived on this machine: left out
    assert any(n.startswith("persona/") and n.endswith(".safetensors") for n in names)
    assert inside["default_voice"] == "Grandpa"
    assert str(data_dir) not in done.path.read_bytes().decode("latin-1")  # no local paths

    other = other_machine(monkeypatch, tmp_path)
    got = import_persona(done.path)
    assert got.persona.id == installed_tiny and got.persona.folder.parent == other / "personas"
    assert got.voice.name == "Grandpa" and got.voice.folder.parent == other / "voices"
    assert voice_for(got.persona) == "Grandpa"  # speaks in it with no pairing made here
    assert any("consent confirmed by Joe" in n for n in got.notes)
    assert weights_folder(got.persona).is_dir()
    again = pytest.raises(PersonaError, import_persona, done.path)
    assert again.value.code == "persona_exists" and "--name" in again.value.hint
    renamed = import_persona(done.path, name="Grandpa Two")  # the same voice is reused
    assert renamed.persona.id == "grandpa-two" and renamed.voice.id == got.voice.id
    assert any("already here" in n for n in renamed.notes)


def test_a_different_voice_of_the_same_name_is_kept_apart(installed_tiny, tmp_path,
                                                          monkeypatch):
    from engine.voices.pairing import voice_for

    make_voice("Grandpa", level=0.1)
    unpaired = export_persona(installed_tiny, tmp_path / "a.zip")  # no voice of its own yet
    assert unpaired.voice is None
    assert "voice/voice.json" not in zipfile.ZipFile(unpaired.path).namelist()
    from engine.voices.pairing import pair

    pair(installed_tiny, "Grandpa")
    done = export_persona(installed_tiny, tmp_path / "b.zip")
    other_machine(monkeypatch, tmp_path)
    make_voice("Grandpa", level=0.2, consent_by="Someone else")  # theirs, not the archive's
    got = import_persona(done.path)
    assert got.voice.name == "Grandpa 2" and voice_for(got.persona) == "Grandpa 2"
    assert any("already enrolled here" in n for n in got.notes)


def test_export_without_voice_and_of_the_bundled_starter(installed_tiny, tmp_path):
    from engine.voices.pairing import pair

    make_voice("Grandpa")
    pair(installed_tiny, "Grandpa")
    bare = export_persona(installed_tiny, tmp_path / "bare.zip", with_voice=False)
    assert bare.voice is None
    assert not any(n.startswith("voice/") for n in zipfile.ZipFile(bare.path).namelist())
    pair("starter", "builtin:marius")
    starter = export_persona("starter", tmp_path / "starter.zip")
    with zipfile.ZipFile(starter.path) as zf:
        data = json.loads(zf.read("persona/persona.json"))
        assert [n for n in zf.namelist() if n.startswith("persona/")] == [
            "persona/persona.json"]  # its weights ship with the app
    assert data["default_voice"] == "builtin:marius" and "starter" not in data
    assert any("ship with the app" in n for n in starter.notes)


def _zip(path: Path, entries: dict[str, bytes | str], *, link: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in entries.items():
            zf.writestr(name, content)
        if link:
            info = zipfile.ZipInfo(link)
            info.external_attr = 0o120777 << 16  # a symbolic link
            zf.writestr(info, "../../outside")
    return path


GOOD_MANIFEST = json.dumps({"format": 1, "kind": "persona", "persona": "evil", "voice": None})
GOOD_PERSONA = json.dumps({"name": "Evil", "base_model": "x", "prompt_format": "dialogpt"})


@pytest.mark.parametrize(("entries", "link", "code", "says"), [
    ({MANIFEST: GOOD_MANIFEST, "persona/persona.json": GOOD_PERSONA, "../evil.txt": "x"}, None,
     "persona_archive_unsafe", "outside the persona or voice folder"),
    ({MANIFEST: GOOD_MANIFEST, "persona/persona.json": GOOD_PERSONA, "/etc/evil": "x"}, None,
     "persona_archive_unsafe", "outside"),
    ({MANIFEST: GOOD_MANIFEST, "persona/persona.json": GOOD_PERSONA,
      "persona/../../evil": "x"}, None, "persona_archive_unsafe", "outside"),
    ({MANIFEST: GOOD_MANIFEST, "persona/persona.json": GOOD_PERSONA}, "persona/link",
     "persona_archive_unsafe", "outside"),
    ({MANIFEST: GOOD_MANIFEST, "persona/persona.json": GOOD_PERSONA, "voice/sub/x": "x"}, None,
     "persona_archive_unsafe", "not a voice file"),
    ({"grandpa/voice.json": "{}", "grandpa/sample.wav": "x"}, None,
     "persona_archive_invalid", "is a voice archive"),
    ({"readme.txt": "hello"}, None, "persona_archive_invalid", "has no talk-to-transformers"),
    ({MANIFEST: json.dumps({"format": 9, "kind": "persona"}), "persona/persona.json": "{}"},
     None, "persona_archive_invalid", "newer version"),
    ({MANIFEST: "{damaged", "persona/persona.json": "{}"}, None, "persona_archive_invalid",
     "is damaged"),
    ({MANIFEST: GOOD_MANIFEST}, None, "persona_archive_invalid", "no persona/persona.json"),
    ({MANIFEST: GOOD_MANIFEST, "persona/persona.json": json.dumps({"name": "Evil"})}, None,
     None, "missing the required field"),
    ({MANIFEST: GOOD_MANIFEST, "persona/persona.json": GOOD_PERSONA, "voice/voice.json": "[]"},
     None, "persona_archive_invalid", "must hold a JSON object"),
    ({MANIFEST: GOOD_MANIFEST, "persona/persona.json": GOOD_PERSONA,
      "voice/voice.json": json.dumps({"name": "V"})}, None, "persona_archive_invalid",
     "voice is damaged"),
])
def test_bad_archives_are_refused_and_nothing_is_written(data_dir, tmp_path, entries, link,
                                                         code, says):
    archive = _zip(tmp_path / "bad.zip", entries, link=link)
    with pytest.raises(PersonaError) as caught:
        import_persona(archive)
    assert says in caught.value.message, caught.value.message
    if code:
        assert caught.value.code == code
    leftovers = [p for p in data_dir.rglob("*") if p.is_file()] if data_dir.exists() else []
    assert leftovers == [], leftovers  # no persona, no voice, no temporary
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path.parent / "evil").exists()


def test_not_a_zip_and_missing_file(data_dir, tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(PersonaError, match="not a persona archive"):
        import_persona(junk)
    with pytest.raises(PersonaError, match="No file at"):
        import_persona(tmp_path / "absent.zip")
    with pytest.raises(PersonaError, match="does not exist"):
        export_persona("starter", tmp_path / "no-such-folder" / "x.zip")


def test_models_export_and_import_through_the_cli(installed_tiny, tmp_path, monkeypatch,
                                                  capsys):
    from app.cli import main
    from engine.voices.pairing import pair

    make_voice("Grandpa")
    pair(installed_tiny, "Grandpa")
    archive = tmp_path / "share.zip"
    assert main(["models", "export", installed_tiny, str(archive)]) == 0
    out = capsys.readouterr().out
    assert f"Exported Grandpa Bot with the voice Grandpa to {archive}" in out
    other_machine(monkeypatch, tmp_path)
    assert main(["models", "import", str(archive)]) == 0
    out = capsys.readouterr().out
    assert "Imported Grandpa Bot as 'grandpa-bot', speaking in Grandpa." in out
    assert "consent confirmed by Joe" in out and "chat -p grandpa-bot --speak" in out
    assert main(["models", "import", str(archive)]) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "--name NEW_NAME" in err
    shutil.rmtree(tmp_path / "other-data" / "personas")
    assert main(["models", "import", str(archive), "--name", "Gramps"]) == 0
    assert "as 'gramps'" in capsys.readouterr().out


@pytest.mark.parametrize("entry", ["persona//{outside}/pwned.txt", "persona/./x/../../pwned.txt",
                                   "voice//{outside}/pwned.txt", "persona/sub//{outside}/p.txt"])
def test_entries_that_hide_an_absolute_path_are_refused(data_dir, tmp_path, entry):
    outside = tmp_path / "outside"
    outside.mkdir()
    name = entry.format(outside=str(outside).lstrip("/"))
    archive = _zip(tmp_path / "sneaky.zip", {MANIFEST: GOOD_MANIFEST,
                                             "persona/persona.json": GOOD_PERSONA,
                                             name: "owned"})
    with pytest.raises(PersonaError) as caught:
        import_persona(archive)
    assert caught.value.code == "persona_archive_unsafe"
    assert list(outside.iterdir()) == [] and not (tmp_path / "pwned.txt").exists()
    assert not (data_dir / "personas").exists() or not any((data_dir / "personas").iterdir())


def test_an_odd_consent_field_is_shown_and_a_refused_persona_leaves_no_voice(
        installed_tiny, tmp_path, monkeypatch):
    from engine.voices.pairing import pair

    folder = make_voice("Grandpa")
    info = json.loads((folder / "voice.json").read_text())
    info["consent"]["at"] = "yesterday"  # a foreign archive's odd field: shown, not fatal
    (folder / "voice.json").write_text(json.dumps(info))
    pair(installed_tiny, "Grandpa")
    done = export_persona(installed_tiny, tmp_path / "odd.zip")
    other = other_machine(monkeypatch, tmp_path)
    got = import_persona(done.path)
    assert any("an unreadable date" in n for n in got.notes)
    # A persona refused on import leaves no second voice behind.
    (other / "personas").mkdir(exist_ok=True)
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(done.path) as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "persona/persona.json":
                data = json.dumps({**json.loads(data), "prompt_format": "nonsense"}).encode()
            dst.writestr(item, data)
    with pytest.raises(PersonaError):
        import_persona(broken, name="Another")
    assert sorted(p.name for p in (other / "voices").iterdir()) == ["grandpa"]
