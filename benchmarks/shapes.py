"""Full-size stand-ins of the real models with random weights, built offline from their configs.

Real weights cannot be downloaded on every machine the benchmarks run on, but speed depends on
a model's shapes, not on its weights. So the chat, speech and voice models are built here at
their published dimensions with random weights and loaded through the app's own paths:

- DialoGPT small/medium/large: ``GPT2LMHeadModel`` from the GPT-2 configs, saved as a persona
  folder with the real GPT-2 byte-level BPE (Whisper's English tokenizer, shipped with the
  bundled tiny.en, is GPT-2's vocabulary and merges). Every reply is exactly ``tokens`` tokens.
- Whisper base.en/small.en/medium.en: ``WhisperForConditionalGeneration`` from the Whisper
  dimensions, converted to CTranslate2 (what faster-whisper loads) with the bundled tiny.en's
  tokenizer. Every transcript is exactly ``tokens`` decoded tokens.
- Pocket TTS: the catalogue's configs through ``tests.tiny_pocket_tts`` (as
  ``benchmarks/tts.py`` does); every sentence gets a frame count fixed by its length.

The figures are "shape-true (random weights): speed only"; the words are garbage. Built models
are cached under ``~/.cache/ttt-shapes`` (``TTT_SHAPES_CACHE`` overrides it), so a rerun only
loads them.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

LABEL = "shape-true (random weights): speed only"
# Bumped when a stand-in's recipe changes, so an old cache is never loaded as a new one.
RECIPE = "v1"
# (n_embd, n_layer, n_head) of microsoft/DialoGPT-*'s GPT-2 configs; vocab 50257, 1024 positions.
DIALOGPT = {"dialogpt-small": (768, 12, 12), "dialogpt-medium": (1024, 24, 16),
            "dialogpt-large": (1280, 36, 20)}
# (d_model, layers each side, heads) of openai/whisper-*.en; feed-forward is 4 x d_model.
WHISPER = {"base.en": (512, 6, 8), "small.en": (768, 12, 12), "medium.en": (1024, 24, 16)}
WHISPER_VOCAB = 51864  # English-only models: GPT-2's 50257 + specials + 1501 timestamps
EOT = 50256  # <|endoftext|>, GPT-2's only special token and Whisper's end of transcript
# People speak about 14 characters a second (espeak-ng at 150 words a minute does too).
CHARS_PER_SECOND = 14.0


def cache_root() -> Path:
    """Where built stand-ins are kept between runs."""
    root = os.environ.get("TTT_SHAPES_CACHE") or "~/.cache/ttt-shapes"
    return Path(root).expanduser() / RECIPE


def _bundled_whisper() -> Path:
    from engine.asr.faster_backend import bundled_model_path

    return bundled_model_path()


def gpt2_tokenizer(model_max_length: int = 1024) -> Any:
    """GPT-2's byte-level BPE, rebuilt offline from the bundled Whisper tiny.en's tokenizer.

    Whisper's English tokenizer is GPT-2's vocabulary (50257 ids, ``<|endoftext|>`` last) and
    merges plus Whisper's own special tokens; only the GPT-2 part is kept.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    # transformers 5 still exports GPT2TokenizerFast but no longer declares it for type checkers.
    from transformers import GPT2TokenizerFast  # type: ignore[attr-defined]

    data = json.loads((_bundled_whisper() / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = {token: i for token, i in data["model"]["vocab"].items() if i <= EOT}
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m)
              for m in data["model"]["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    eos = "<|endoftext|>"
    tok.add_special_tokens([eos])
    return GPT2TokenizerFast(tokenizer_object=tok, eos_token=eos, bos_token=eos, unk_token=eos,
                             model_max_length=model_max_length)


def _wordy_ids(decode: Any, size: int) -> list[bool]:
    """Per id, whether the token decodes to ASCII letters, digits and spaces (not only spaces)."""
    texts = decode([[i] for i in range(size)])
    return [bool(t.strip()) and all(c.isascii() and (c.isalnum() or c == " ") for c in t)
            for t in texts]


def dialogpt(name: str, tokens: int, *, decoding: dict[str, Any] | None = None) -> Path:
    """A persona folder holding DialoGPT ``name`` at full size with random weights.

    Args:
        name: ``dialogpt-small``, ``dialogpt-medium`` or ``dialogpt-large``.
        tokens: the exact length of every reply, in tokens.
        decoding: the persona's decoding settings (default: the catalogue's DialoGPT ones);
            ``max_new_tokens`` is set to ``tokens``.

    """
    n_embd, n_layer, n_head = DIALOGPT[name]
    folder = cache_root() / name
    if not (folder / "model.safetensors").is_file():
        _build_dialogpt(folder, n_embd, n_layer, n_head)
    if decoding is None:
        from engine.models.catalogue import default_decoding

        decoding = default_decoding("dialogpt")
    persona = {
        "schema_version": 1,
        "name": f"{name} ({LABEL})",
        "description": "Random weights at DialoGPT's real size, for benchmarks.",
        "base_model": f"microsoft/DialoGPT-{name.split('-', 1)[1]}",
        "prompt_format": "dialogpt",
        "decoding": {**decoding, "max_new_tokens": tokens},
    }
    # Written on every call: the token count is a benchmark option, the weights are cached.
    (folder / "persona.json").write_text(json.dumps(persona, indent=2), encoding="utf-8")
    return folder


def _build_dialogpt(folder: Path, n_embd: int, n_layer: int, n_head: int) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = gpt2_tokenizer()
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=1024, n_embd=n_embd,
                        n_layer=n_layer, n_head=n_head, bos_token_id=EOT, eos_token_id=EOT)
    model = GPT2LMHeadModel(config)
    wordy = _wordy_ids(tokenizer.backend_tokenizer.decode_batch, len(tokenizer))
    with torch.no_grad():
        # A zero embedding, tied to the output layer, gives logit 0, below the best of 50k
        # random ones: EOS is never chosen (every reply is exactly max_new_tokens long) and
        # neither are raw bytes or symbols, which the streamer would hold back.
        keep = torch.tensor(wordy)
        keep[EOT] = False
        model.transformer.wte.weight[~keep] = 0
    partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=_parent(folder)))
    tokenizer.save_pretrained(partial)
    model.half().save_pretrained(partial)  # fp16 halves the cache; the loader casts it
    _replace(partial, folder)


def whisper(name: str) -> Path:
    """A CTranslate2 folder (what faster-whisper loads) of Whisper ``name`` with random weights.

    The decoder never picks end-of-transcript, timestamps, special tokens or symbols, so a
    decode runs to its token limit (see :func:`fix_decode_length`) and makes words.
    """
    folder = cache_root() / f"whisper-{name}"
    if not (folder / "model.bin").is_file():
        _build_whisper(folder, *WHISPER[name])
    return folder


def _build_whisper(folder: Path, d_model: int, layers: int, heads: int) -> None:
    import torch
    from ctranslate2.converters import TransformersConverter
    from transformers import PreTrainedTokenizerFast, WhisperConfig, WhisperForConditionalGeneration

    bundled = _bundled_whisper()
    torch.manual_seed(0)
    # Untied output layer: tied to scaled-up input embeddings, a random decoder's best next
    # token would be the token it was just fed ("the the the"), which reads as a hallucination.
    config = WhisperConfig(vocab_size=WHISPER_VOCAB, num_mel_bins=80, d_model=d_model,
                           encoder_layers=layers, decoder_layers=layers,
                           encoder_attention_heads=heads, decoder_attention_heads=heads,
                           encoder_ffn_dim=4 * d_model, decoder_ffn_dim=4 * d_model,
                           tie_word_embeddings=False)
    model = WhisperForConditionalGeneration(config)
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(bundled / "tokenizer.json"))
    wordy = _wordy_ids(tokenizer.backend_tokenizer.decode_batch, EOT)
    out = model.proj_out.weight
    with torch.no_grad():
        # Random logits are small (std ~0.5): the 1501 timestamp tokens together would then
        # outweigh any text token and Whisper's timestamp rule would emit only timestamps.
        # Scaled up, the best text token wins; zeroed rows (logit 0) never do.
        out.normal_(0.0, 0.02 * 8)
        keep = torch.zeros(WHISPER_VOCAB, dtype=torch.bool)
        keep[:EOT] = torch.tensor(wordy)
        out[~keep] = 0
    work = Path(tempfile.mkdtemp(prefix=".whisper-hf-", dir=_parent(folder)))
    try:
        model.save_pretrained(work)
        tokenizer.save_pretrained(work)
        partial = work / "ct2"
        TransformersConverter(str(work)).convert(str(partial), quantization="float16")
        # The tokenizer and the decoding rules (suppressed ids, language ids) are the real
        # English model's; faster-whisper reads the tokenizer from the folder.
        shutil.copyfile(bundled / "tokenizer.json", partial / "tokenizer.json")
        ours = json.loads((partial / "config.json").read_text(encoding="utf-8"))
        real = json.loads((bundled / "config.json").read_text(encoding="utf-8"))
        for key in ("suppress_ids", "suppress_ids_begin", "lang_ids"):
            if key in real:
                ours[key] = real[key]
        (partial / "config.json").write_text(json.dumps(ours, indent=2), encoding="utf-8")
        _replace(partial, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def fix_decode_length(recognizer: Any, tokens: int, probe: Any) -> int:
    """Make a faster-whisper recognizer's every decode ``tokens`` tokens long; the count got.

    The stand-in never ends a transcript by itself, so a decode runs to its length limit; this
    sets the limit where a real transcript of a short utterance ends (tiny.en writes 8 tokens,
    timestamps included, for "The weather is nice today."). CTranslate2 4.x decodes fewer
    tokens than ``max_new_tokens`` asks for (half, with this model), so the limit is calibrated
    on ``probe`` (16 kHz audio). Every decode's token count is appended to
    ``recognizer.decoded_tokens``. Reaches into the recognizer's model: a benchmark-only patch.
    """
    model = recognizer._model
    original = model.transcribe
    counts: list[int] = []
    limit = tokens

    def transcribe(*args: Any, **kwargs: Any) -> Any:
        segments, info = original(*args, **{**kwargs, "max_new_tokens": limit})

        def counted() -> Any:
            decoded = 0
            for segment in segments:
                decoded += len(segment.tokens)
                yield segment
            counts.append(decoded)

        return counted(), info

    model.transcribe = transcribe
    recognizer.decoded_tokens = counts
    recognizer.transcribe(probe)
    if counts[-1] and counts[-1] != tokens:
        limit = max(1, round(tokens * tokens / counts[-1]))
        recognizer.transcribe(probe)
    got = counts[-1]
    counts.clear()  # the calibration's decodes are not the benchmark's
    return got


def pocket_tts(model_id: str, device: str) -> Any:
    """The catalogue voice model ``model_id`` at full size with random weights, loaded.

    The files are laid into a private Hub cache (as a pull would) under the stand-in cache and
    loaded through :class:`engine.tts.pocket.PocketTTS`. End-of-speech is switched off and a
    sentence's frame count follows its length, so every run of a sentence is equally long.
    """
    import huggingface_hub.constants

    from engine.models.catalogue import catalogue_entry
    from engine.tts.pocket import PocketTTS
    from engine.tts.runtime import runtime
    from tests.tiny_pocket_tts import build_pocket_repos, install_into_cache

    runtime()  # first: a bare pocket_tts import would set torch to one thread for good
    entry = catalogue_entry(model_id)
    if entry is None or entry.kind != "tts" or not entry.config:
        raise ValueError(f"{model_id!r} is not a voice model in the catalogue")
    root = cache_root() / "pocket"
    hub = root / "hub"
    huggingface_hub.constants.HF_HUB_CACHE = str(hub)
    os.environ["HF_HUB_OFFLINE"] = "1"
    built = root / "repos" / entry.config
    config = built / f"{entry.config}.yaml"
    if not config.is_file():
        partial = Path(tempfile.mkdtemp(prefix=f".{entry.config}-", dir=_parent(built)))
        repos = build_pocket_repos(partial, entry.config)
        install_into_cache(repos, hub)
        # The YAML names its files by hf:// address, found in the Hub cache: the built copies
        # would only double the cache (the full model's weights are 0.4 GB twice over).
        for child in partial.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            elif child != repos.config:
                child.unlink()
        _replace(partial, built)
    quantize = bool(entry.int8_on_cpu) and device == "cpu"  # as the app does for this entry
    tts = PocketTTS(str(config), device=device, eos_threshold=1e9, quantize=quantize)
    tts.model_id, tts.model_name = entry.id, f"{entry.name} ({LABEL})"

    frame_rate = float(tts._model.config.mimi.frame_rate)  # latent frames a second (12.5)

    def frames(token_count: int) -> int:
        # The stand-in tokenizer has no merges: one token per character.
        return max(1, math.ceil(token_count / CHARS_PER_SECOND * frame_rate))

    tts._model._estimate_max_gen_len = frames
    return tts


def _parent(folder: Path) -> Path:
    folder.parent.mkdir(parents=True, exist_ok=True)
    return folder.parent


def _replace(partial: Path, folder: Path) -> None:
    """Move a finished build into place; an interrupted build never looks finished."""
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)
