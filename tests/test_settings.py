"""The settings file: forgiving reads, validated atomic writes, migration from version 1."""

from __future__ import annotations

import json

import pytest

from engine.errors import ConfigError
from engine.settings import SCHEMA_VERSION, Settings, load, save


@pytest.fixture
def settings_path(data_dir):
    return data_dir / "settings.json"


def write(path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def test_missing_file_gives_defaults_without_a_warning(settings_path):
    assert not settings_path.exists()
    assert load() == (Settings(), None)


def test_round_trip(settings_path):
    changed = Settings(persona="pirate", voice="me", input_device="USB Mic",
                       output_device="Headphones", asr_backend="whisper", asr_model="small",
                       language="de", chat_backend="remote", remote_url="https://x.test/gen",
                       device="cpu", speak_replies=False, sensitivity=0, hands_free=True)
    save(changed)
    assert settings_path.exists()  # the default path is inside TTT_DATA_DIR
    data = json.loads(settings_path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION and data["remote_url"] == "https://x.test/gen"
    assert load() == (changed, None)


def test_damaged_json_gives_defaults_and_a_warning(settings_path):
    settings_path.parent.mkdir(parents=True)
    settings_path.write_text('{"persona": "pirate",\n "language": ', encoding="utf-8")
    settings, warning = load()
    assert settings == Settings()
    assert "damaged" in warning and "line 2" in warning


def test_json_that_is_not_an_object(settings_path):
    write(settings_path, ["persona", "pirate"])
    settings, warning = load()
    assert settings == Settings() and "does not hold settings" in warning


def test_wrong_typed_field_resets_only_that_field(settings_path):
    write(settings_path, {"schema_version": 2, "sensitivity": "high", "persona": "pirate",
                          "hands_free": True, "speak_replies": 1, "language": "fr"})
    settings, warning = load()
    assert settings == Settings(persona="pirate", hands_free=True, language="fr")
    assert "sensitivity ('high'" in warning
    assert "speak_replies (1" in warning  # an int is not a bool
    assert "persona" not in warning and "hands_free" not in warning


def test_bool_is_not_accepted_as_a_number(settings_path):
    write(settings_path, {"sensitivity": True})
    settings, warning = load()
    assert settings.sensitivity == Settings().sensitivity and "sensitivity" in warning


def test_invalid_values_reset_only_their_fields(settings_path):
    write(settings_path, {"schema_version": 2, "device": "gpu", "sensitivity": 9,
                          "chat_backend": "remote", "remote_url": "localhost:8080",
                          "asr_backend": "whisper", "language": "de"})
    settings, warning = load()
    # The valid neighbours survive; the remote backend falls back to local, keeping the URL.
    assert settings == Settings(asr_backend="whisper", language="de",
                                remote_url="localhost:8080")
    for name in ("device", "sensitivity", "chat_backend"):
        assert name in warning
    assert "asr_backend" not in warning
    assert settings.problems() == []


def test_version_1_file_migrates_last_persona(settings_path):
    write(settings_path, {"last_persona": "pirate", "language": "en", "hands_free": True})
    settings, warning = load()
    assert warning is None
    assert settings == Settings(persona="pirate", hands_free=True)


def test_version_2_files_move_from_the_bundled_speech_model_to_auto(settings_path):
    write(settings_path, {"schema_version": 2, "asr_model": "bundled", "persona": "pirate"})
    assert load() == (Settings(persona="pirate", asr_model="auto"), None)
    write(settings_path, {"schema_version": 2, "asr_model": "small.en"})  # a choice: kept
    assert load()[0].asr_model == "small.en"
    write(settings_path, {"schema_version": 3, "asr_model": "bundled"})  # chosen since
    assert load()[0].asr_model == "bundled"


def test_newer_version_gives_defaults_and_a_warning(settings_path):
    write(settings_path, {"schema_version": SCHEMA_VERSION + 1, "persona": "pirate"})
    settings, warning = load()
    assert settings == Settings() and "newer version" in warning


def test_unknown_version_value_is_a_warning_not_a_crash(settings_path):
    write(settings_path, {"schema_version": "2", "persona": "pirate"})
    settings, warning = load()
    assert settings == Settings() and "unknown version ('2')" in warning


def test_save_refuses_invalid_values_naming_them(settings_path):
    bad = Settings(chat_backend="remote", remote_url="", sensitivity=5, device="tpu",
                   asr_backend="vosk", language=" ")
    with pytest.raises(ConfigError) as caught:
        save(bad)
    message = caught.value.message
    assert caught.value.code == "settings_invalid"
    for part in ("http://", "sensitivity 5", "'tpu'", "'vosk'", "language"):
        assert part in message
    assert not settings_path.exists()


def test_write_is_atomic_and_leaves_no_temp_files(settings_path):
    save(Settings(persona="one"))
    first = settings_path.read_bytes()
    save(Settings(persona="two"))
    assert list(settings_path.parent.iterdir()) == [settings_path]
    assert first != settings_path.read_bytes() and load()[0].persona == "two"


def test_crash_mid_write_keeps_the_old_file(settings_path, monkeypatch):
    save(Settings(persona="old"))

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    import engine.fsutil

    monkeypatch.setattr(engine.fsutil.os, "fsync", disk_full)  # the write reaches no disk
    with pytest.raises(ConfigError) as caught:
        save(Settings(persona="new"))
    assert "No space left on device" in caught.value.message
    assert caught.value.code == "settings_write_failed"
    assert load()[0].persona == "old"
    assert list(settings_path.parent.iterdir()) == [settings_path]


def test_unwritable_target_is_a_clear_config_error(settings_path):
    # Tests run as root, where chmod stops nothing: a folder in the file's place does.
    settings_path.mkdir(parents=True)
    with pytest.raises(ConfigError) as caught:
        save(Settings())
    err = caught.value
    assert str(settings_path) in err.message and "Is a directory" in err.message
    assert "folder" in err.hint
    assert list(settings_path.parent.iterdir()) == [settings_path]  # the temp file is gone


def test_unreadable_file_gives_defaults_and_a_warning(settings_path):
    settings_path.mkdir(parents=True)
    settings, warning = load()
    assert settings == Settings() and "Could not read the settings file" in warning


def test_invalid_utf8_gives_defaults_and_a_warning(settings_path):
    settings_path.parent.mkdir(parents=True)
    settings_path.write_bytes(b'{"persona": "\xff\xfe"}')
    settings, warning = load()
    assert settings == Settings() and "Could not read the settings file" in warning
    assert "utf-8" in warning


def test_explicit_path(tmp_path):
    path = tmp_path / "nested" / "my.json"
    save(Settings(language="auto"), path)
    assert load(path) == (Settings(language="auto"), None)
