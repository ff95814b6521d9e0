"""Bad files: audio, persona folders, voice folders, settings, dialogue files."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np

from tests.reliability.matrix import Case, Ctx, Got, expect_error

# -- audio -------------------------------------------------------------------------------------


def _wav(path: Path, audio: np.ndarray, rate: int) -> Path:
    import soundfile as sf

    sf.write(path, audio, rate, subtype="PCM_16")
    return path


def _sparse_wav(path: Path, seconds: float, rate: int = 8000) -> Path:
    """A 16-bit mono WAV of ``seconds`` of silence, written sparsely (no real disk use)."""
    data = int(seconds * rate) * 2
    header = (b"RIFF" + struct.pack("<I", 36 + data) + b"WAVEfmt " +
              struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16) + b"data" +
              struct.pack("<I", data))
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(len(header) + data)
    return path


def _transcribe(ctx: Ctx, path: Path) -> Got:
    result = ctx.cli("transcribe", path)
    assert result.rc == 1
    return result.error()


def audio_zero_byte(ctx: Ctx) -> Got:
    path = ctx.tmp / "empty.wav"
    path.write_bytes(b"")
    return _transcribe(ctx, path)


def audio_corrupt(ctx: Ctx) -> Got:
    path = ctx.tmp / "noise.wav"
    path.write_bytes(b"RIFF\x00\x00not really a wave file" + bytes(range(256)) * 4)
    return _transcribe(ctx, path)


def audio_missing(ctx: Ctx) -> Got:
    return _transcribe(ctx, ctx.tmp / "nowhere.flac")


def audio_header_only(ctx: Ctx) -> Got:
    return _transcribe(ctx, _wav(ctx.tmp / "nothing.wav", np.zeros(0, np.float32), 16000))


def audio_too_long(ctx: Ctx) -> Got:
    from engine.audio.files import load_audio

    return expect_error(lambda: load_audio(_sparse_wav(ctx.tmp / "5h.wav", 5 * 3600)))


def audio_two_hours(ctx: Ctx) -> Got:
    from engine.audio.files import load_audio

    audio = load_audio(_sparse_wav(ctx.tmp / "2h.wav", 2 * 3600))
    # What came back, not what should have: mono is 1-D, the length is counted at 16 kHz.
    return Got(f"accepted: {len(audio) / 16000:.0f} s at 16 kHz, {audio.ndim}-D {audio.dtype}")


def audio_silent(ctx: Ctx) -> Got:
    from engine.audio.listener import Listener, ListenOptions

    return expect_error(lambda: Listener(ListenOptions()).trim(np.zeros(3 * 16000, np.float32)))


def audio_clipped_voice(ctx: Ctx) -> Got:
    from tests.speech import speech_array

    speech = speech_array("The weather is nice today, and I like it.", ctx.tmp)
    clipped = np.clip(speech * 40, -1, 1)
    path = _wav(ctx.tmp / "clipped.wav", np.concatenate([clipped] * 3), 16000)
    result = ctx.cli("voices", "add", "Loud", "--consent", "Tester", "--file", path)
    assert result.rc == 1 and not (ctx.data / "voices" / "loud").exists()
    return result.error()


def _speech_file(ctx: Ctx, rate: int, channels: int) -> Path:
    from tests.speech import speak

    return speak("Please call me back tomorrow morning.", ctx.tmp, rate=rate, channels=channels)


def audio_8khz(ctx: Ctx) -> Got:
    result = ctx.cli("transcribe", _speech_file(ctx, 8000, 1))
    assert result.rc == 0, result.err
    return Got("transcribed: " + result.out.strip().lower())


def audio_48k_stereo(ctx: Ctx) -> Got:
    result = ctx.cli("transcribe", _speech_file(ctx, 48000, 2))
    assert result.rc == 0, result.err
    return Got("transcribed: " + result.out.strip().lower())


def audio_zero_byte_process(ctx: Ctx) -> Got:
    path = ctx.tmp / "empty.ogg"
    path.write_bytes(b"")
    result = ctx.subprocess("transcribe", path)
    assert result.rc == 1
    return result.error()


# -- persona folders ---------------------------------------------------------------------------


def _persona_copy(ctx: Ctx, name: str = "broken") -> Path:
    folder = ctx.tmp / name
    shutil.copytree(ctx.tiny, folder)
    return folder


def _edit_persona(ctx: Ctx, **changes) -> Path:
    folder = _persona_copy(ctx)
    path = folder / "persona.json"
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is ...:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data))
    return folder


def _chat(ctx: Ctx, persona: Path | str, *extra: str) -> Got:
    conv = ctx.seed_store()
    result = ctx.cli("chat", "-p", persona, "-m", "hello", *extra)
    assert result.rc == 1
    ctx.assert_kept(conv)
    return result.error()


def persona_missing_weights(ctx: Ctx) -> Got:
    folder = _persona_copy(ctx)
    (folder / "model.safetensors").unlink()
    return _chat(ctx, folder)


def persona_truncated_safetensors(ctx: Ctx) -> Got:
    folder = _persona_copy(ctx)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return _chat(ctx, folder)


def persona_missing_field(ctx: Ctx) -> Got:
    return _chat(ctx, _edit_persona(ctx, base_model=...))


def persona_wrong_type(ctx: Ctx) -> Got:
    return _chat(ctx, _edit_persona(ctx, context_tokens="lots"))


def persona_unknown_format(ctx: Ctx) -> Got:
    return _chat(ctx, _edit_persona(ctx, prompt_format="alpaca"))


def persona_unknown_weights_source(ctx: Ctx) -> Got:
    return _chat(ctx, _edit_persona(ctx, weights={"source": "ftp"}))


def persona_not_json(ctx: Ctx) -> Got:
    folder = _persona_copy(ctx)
    (folder / "persona.json").write_text('{"name": "Half", ')
    return _chat(ctx, folder)


def persona_newer_schema(ctx: Ctx) -> Got:
    return _chat(ctx, _edit_persona(ctx, schema_version=9))


def persona_bad_in_list(ctx: Ctx) -> Got:
    """One broken installed persona: `models list` still lists the rest and names the bad one."""
    target = ctx.data / "personas" / "halfbaked"
    target.parent.mkdir(parents=True)
    shutil.copytree(_edit_persona(ctx, name=5), target)
    result = ctx.cli("models", "list")
    assert result.rc == 0 and "starter" in result.out, result.err
    assert "Traceback" not in result.err
    found = [ln for ln in (result.out + result.err).splitlines() if "halfbaked" in ln]
    return Got(found[0].strip() if found else "(the broken persona is not mentioned)")


def persona_subprocess(ctx: Ctx) -> Got:
    folder = _edit_persona(ctx, prompt_format=3)
    result = ctx.subprocess("chat", "-p", folder, "-m", "hello")
    assert result.rc == 1
    return result.error()


# -- voice folders -----------------------------------------------------------------------------


def _voice(ctx: Ctx, name: str = "Ann") -> Path:
    folder = ctx.data / "voices" / name.lower()
    folder.mkdir(parents=True)
    _wav(folder / "sample.wav", np.zeros(24000, np.float32), 24000)
    np.save(folder / "embedding.npy", np.zeros(256, np.float32))
    (folder / "voice.json").write_text(json.dumps({
        "schema_version": 1, "name": name, "created": 1.0, "source": "test.wav",
        "verdict": {}, "flagged": False, "similarity": None}))
    return folder


def _tiny_tts(ctx: Ctx):
    from engine.tts.pocket import PocketTTS

    ctx.fixture("pocket_cache")  # the tiny pocket-tts model, as pulled into a Hub cache
    return PocketTTS(str(ctx.fixture("quick_pocket_config")), device="cpu")


def voice_corrupt_sample(ctx: Ctx) -> Got:
    from engine.voices.store import find_voice

    folder = _voice(ctx)
    (folder / "sample.wav").write_bytes(b"RIFF garbage, not a wave" * 10)
    tts = _tiny_tts(ctx)
    return expect_error(lambda: list(tts.synthesize("Hello there.", find_voice("Ann"))))


def voice_corrupt_latents(ctx: Ctx) -> Got:
    """The row shows the warning the engine logged; the case checks speech and a new cache."""
    import logging

    from engine.voices.store import find_voice

    caplog = ctx.fixture("caplog")
    _voice(ctx)
    tts = _tiny_tts(ctx)
    voice = find_voice("Ann")
    cache = tts.state_file(voice)
    cache.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\"")
    with caplog.at_level(logging.WARNING, logger="engine.tts.pocket"):
        chunks = list(tts.synthesize("Hello there.", voice))
    assert chunks and chunks[0].samples.size
    assert cache.stat().st_size > 100  # rewritten from the sample
    said = [r.getMessage() for r in caplog.records
            if r.name == "engine.tts.pocket" and r.levelno >= logging.WARNING]
    return Got(" | ".join(said) or f"no warning logged; spoke {len(chunks)} chunks")


def voice_missing_sample(ctx: Ctx) -> Got:
    (_voice(ctx) / "sample.wav").unlink()
    result = ctx.cli("say", "hello", "--voice", "Ann", "-o", ctx.tmp / "out.wav")
    assert result.rc == 1
    return result.error()


def voice_bad_json(ctx: Ctx) -> Got:
    (_voice(ctx) / "voice.json").write_text('{"name": ')
    result = ctx.cli("voices", "list")
    assert "Traceback" not in result.err
    return Got(" ".join((result.out + result.err).split())[:300])


def voice_corrupt_file_enroll(ctx: Ctx) -> Got:
    path = ctx.tmp / "sample.ogg"
    path.write_bytes(b"OggS" + b"\x00" * 100)
    result = ctx.cli("voices", "add", "Bob", "--consent", "Tester", "--file", path)
    assert result.rc == 1 and not (ctx.data / "voices" / "bob").exists()
    return result.error()


# -- settings ----------------------------------------------------------------------------------


def _settings(ctx: Ctx, content: str | None) -> Got:
    from engine import paths, settings

    path = paths.settings_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    if content is None:
        path.mkdir()  # a folder where the file should be: unreadable as a file
    else:
        path.write_text(content)
    loaded, warning = settings.load()
    return Got(warning or f"no warning; persona={loaded.persona}")


def settings_unreadable(ctx: Ctx) -> Got:
    return _settings(ctx, None)


def settings_damaged(ctx: Ctx) -> Got:
    return _settings(ctx, '{"persona": "ann", ')


def settings_older_version(ctx: Ctx) -> Got:
    return _settings(ctx, json.dumps({"last_persona": "ann", "language": "de"}))


def settings_newer_version(ctx: Ctx) -> Got:
    return _settings(ctx, json.dumps({"schema_version": 99, "persona": "ann"}))


def settings_wrong_types(ctx: Ctx) -> Got:
    return _settings(ctx, json.dumps({"schema_version": 2, "persona": "ann",
                                      "sensitivity": "high", "device": "tpu"}))


# -- dialogue files (training) -----------------------------------------------------------------


def _dataset(ctx: Ctx, name: str, content: bytes) -> Got:
    path = ctx.tmp / name
    path.write_bytes(content)
    result = ctx.cli("train", "dataset", "--dialogues", path, "--base", ctx.tiny, "--run", "r")
    assert result.rc == 1
    return result.error()


def dialogue_one_turn(ctx: Ctx) -> Got:
    return _dataset(ctx, "d.jsonl", b'["hi", "hello"]\n["just me"]\n')


def dialogue_not_utf8(ctx: Ctx) -> Got:
    return _dataset(ctx, "d.jsonl", b'["caf\xe9", "ok"]\n')


def dialogue_bad_csv(ctx: Ctx) -> Got:
    return _dataset(ctx, "d.csv", b"who,what\n1,hello\n")


CASES = [
    Case("audio-zero-byte", "audio", "0-byte WAV to `transcribe`", "is empty (0 bytes)",
         audio_zero_byte),
    Case("audio-corrupt", "audio", "random bytes named .wav to `transcribe`",
         "could not be decoded", audio_corrupt),
    Case("audio-missing", "audio", "a path with no file to `transcribe`", "No audio file at",
         audio_missing),
    Case("audio-no-samples", "audio", "a WAV header with 0 frames", "holds no audio samples",
         audio_header_only),
    Case("audio-5-hours", "audio", "a 5-hour WAV", "the limit is 4 hours", audio_too_long),
    Case("audio-2-hours", "audio", "a 2-hour WAV (under the 4-hour limit)",
         "accepted: 7200 s at 16 kHz, 1-D float32", audio_two_hours),
    Case("audio-silent", "audio", "3 s of digital silence, push-to-talk", "No speech heard",
         audio_silent),
    Case("audio-clipped", "audio", "a heavily clipped voice sample to `voices add`",
         "clipp", audio_clipped_voice),
    Case("audio-8khz", "audio", "8 kHz telephone-rate speech to `transcribe`",
         "call me back", audio_8khz),
    Case("audio-48k-stereo", "audio", "48 kHz stereo speech to `transcribe`", "call me back",
         audio_48k_stereo),
    Case("audio-zero-byte-process", "audio", "0-byte OGG, CLI as a real process",
         "is empty (0 bytes)", audio_zero_byte_process),
    Case("persona-missing-weights", "persona", "persona folder without model.safetensors",
         "Could not load the model", persona_missing_weights),
    Case("persona-truncated-safetensors", "persona", "model.safetensors cut in half",
         "Could not load the model", persona_truncated_safetensors),
    Case("persona-missing-field", "persona", "persona.json without base_model",
         "missing the required field 'base_model'", persona_missing_field),
    Case("persona-wrong-type", "persona", "context_tokens is a string",
         "Field 'context_tokens' in persona.json must be int", persona_wrong_type),
    Case("persona-unknown-format", "persona", "prompt_format 'alpaca'",
         "Field 'prompt_format' must be one of", persona_unknown_format),
    Case("persona-unknown-source", "persona", "weights.source 'ftp'",
         "Field 'weights.source' must be one of", persona_unknown_weights_source),
    Case("persona-not-json", "persona", "persona.json cut mid-object", "is not valid JSON",
         persona_not_json),
    Case("persona-newer-schema", "persona", "schema_version 9", "schema_version 9",
         persona_newer_schema),
    Case("persona-broken-in-list", "persona", "one broken installed persona, `models list`",
         "halfbaked", persona_bad_in_list),
    Case("persona-wrong-type-process", "persona", "prompt_format is a number, CLI process",
         "Field 'prompt_format' in persona.json must be str", persona_subprocess),
    Case("voice-corrupt-sample", "voice", "voice folder whose sample.wav is garbage",
         "voice_damaged", voice_corrupt_sample),
    Case("voice-corrupt-latents", "voice", "damaged cached voice state (safetensors)",
         "Rebuilding the damaged voice state", voice_corrupt_latents),
    Case("voice-missing-sample", "voice", "voice folder without sample.wav, `say --voice`",
         "has lost its sample", voice_missing_sample),
    Case("voice-bad-json", "voice", "voice.json cut short, `voices list`",
         "is damaged (voice.json is not valid)", voice_bad_json),
    Case("voice-corrupt-file", "voice", "`voices add --file` with a corrupt OGG",
         "could not be decoded", voice_corrupt_file_enroll),
    Case("settings-unreadable", "settings", "a folder where settings.json should be",
         "Could not read the settings file", settings_unreadable),
    Case("settings-damaged", "settings", "settings.json cut mid-object",
         "The settings file is damaged", settings_damaged),
    Case("settings-older-version", "settings", "a version-1 file (last_persona)",
         "no warning; persona=ann", settings_older_version),
    Case("settings-newer-version", "settings", "schema_version 99",
         "written by a newer version", settings_newer_version),
    Case("settings-wrong-types", "settings", "sensitivity 'high', device 'tpu'",
         "reset to their defaults: sensitivity", settings_wrong_types),
    Case("dialogue-one-turn", "training", "dialogue JSONL with a one-turn conversation",
         "only one turn", dialogue_one_turn),
    Case("dialogue-not-utf8", "training", "dialogue JSONL in Latin-1", "not UTF-8",
         dialogue_not_utf8),
    Case("dialogue-bad-csv", "training", "dialogue CSV with the wrong header",
         "the header must name the columns", dialogue_bad_csv),
]
