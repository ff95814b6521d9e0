"""A tiny random Pocket TTS of the real transformers classes, saved like a real checkpoint.

The folder holds the text-to-speech model, the processor's parts (tokenizer, feature extractor,
chat template) and the codec (audio tokenizer) in ``audio_tokenizer/``. Random weights speak
noise, so tests that use it assert dtypes, lengths, sampling rates and determinism, not sound.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tests.tiny_models import CORPUS

if TYPE_CHECKING:  # transformers is imported lazily: importing it takes seconds
    from transformers import PocketTTSForConditionalGeneration, PocketTTSProcessor

SAMPLING_RATE = 24_000
LATENT_DIM = 8
CODEC_SUBFOLDER = "audio_tokenizer"
PAD = "[PAD]"
# Attribute name -> token; the processor reads the attributes, the config the ids.
AUDIO_TOKENS = {
    "audio_prompt_bos_token": "[VOICE_BOS]",
    "audio_prompt_token": "[VOICE]",
    "audio_latent_token": "[LATENT]",
    "audio_bos_token": "[AUDIO_BOS]",
}
# Layout the processor expects: voice BOS, one voice placeholder per audio item, the text, and
# last the audio BOS, from which generate starts (it rejects prompts that end otherwise).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'audio' -%}[VOICE_BOS][VOICE]"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endfor -%}[AUDIO_BOS]"
)


def build_tiny_pocket_tts(folder: Path) -> Path:
    """Builds a tiny random Pocket TTS and saves it into ``folder``.

    Args:
        folder: Destination; created if missing.

    Returns:
        ``folder``, for chaining.

    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        PocketTTSAudioTokenizerConfig,
        PocketTTSAudioTokenizerModel,
        PocketTTSConfig,
        PocketTTSFeatureExtractor,
        PocketTTSForConditionalGeneration,
        PocketTTSProcessor,
        PreTrainedTokenizerFast,
    )

    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=[PAD, *AUDIO_TOKENS.values()],
                                  show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, padding_side="left",
                                        extra_special_tokens=AUDIO_TOKENS)
    ids = {f"{name}_id": tokenizer.convert_tokens_to_ids(token)
           for name, token in AUDIO_TOKENS.items()}

    torch.manual_seed(0)
    # The codec keeps the real frame size (1920 samples at 24 kHz, 12.5 frames/s) and shrinks the
    # widths; the grouped upsampling convolution needs groups dividing hidden_size.
    codec = PocketTTSAudioTokenizerModel(PocketTTSAudioTokenizerConfig(
        hidden_size=32, num_filters=4, num_residual_layers=1, num_hidden_layers=1,
        intermediate_size=64, num_attention_heads=2, num_key_value_heads=2, upsample_groups=32,
        latent_dim=LATENT_DIM, sampling_rate=SAMPLING_RATE))
    model = PocketTTSForConditionalGeneration(PocketTTSConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512, latent_dim=LATENT_DIM,
        pad_token_id=tokenizer.pad_token_id, frame_rate=codec.config.frame_rate,
        flow_head_config={"hidden_size": 32, "num_hidden_layers": 1, "latent_dim": LATENT_DIM,
                          "condition_dim": 32, "frequency_embedding_size": 16},
        **ids,
    ))
    # As the released checkpoints: generate returns audio_latents and their mask.
    model.generation_config.return_dict_in_generate = True
    model.save_pretrained(folder)
    codec.save_pretrained(folder / CODEC_SUBFOLDER)
    # Reloaded so that processor_config.json records the codec's absolute path, as a real
    # checkpoint saved from local parts does (the pitfall load_pocket_tts steps around).
    codec = PocketTTSAudioTokenizerModel.from_pretrained((folder / CODEC_SUBFOLDER).resolve())

    feature_extractor = PocketTTSFeatureExtractor(sampling_rate=SAMPLING_RATE,
                                                  frame_size=codec.config.frame_size,
                                                  pad_to_multiple_of=codec.config.frame_size)
    processor = PocketTTSProcessor(feature_extractor, tokenizer, codec, chat_template=CHAT_TEMPLATE)
    # Writes the tokenizer, the feature extractor, chat_template.jinja and processor_config.json;
    # the latter records the codec by path only, which load_pocket_tts does not trust.
    processor.save_pretrained(folder)
    return folder


def load_pocket_tts(
    folder: Path,
) -> tuple[PocketTTSForConditionalGeneration, PocketTTSProcessor]:
    """Loads a Pocket TTS folder part by part, so it works wherever the folder now lives.

    ``PocketTTSProcessor.from_pretrained`` reloads the codec from the absolute path stored in
    ``processor_config.json`` (even when ``audio_tokenizer=`` is passed), which breaks once the
    folder is moved or copied; building the processor from its parts avoids that path.

    Args:
        folder: A folder written by ``build_tiny_pocket_tts`` (or laid out like it).

    Returns:
        ``(model, processor)``, the model in eval mode.

    """
    from transformers import (
        AutoTokenizer,
        PocketTTSAudioTokenizerModel,
        PocketTTSFeatureExtractor,
        PocketTTSForConditionalGeneration,
        PocketTTSProcessor,
    )

    folder = Path(folder)
    model = PocketTTSForConditionalGeneration.from_pretrained(folder).eval()
    codec = PocketTTSAudioTokenizerModel.from_pretrained(folder / CODEC_SUBFOLDER).eval()
    processor = PocketTTSProcessor(
        PocketTTSFeatureExtractor.from_pretrained(folder),
        AutoTokenizer.from_pretrained(folder),
        codec,
        chat_template=(folder / "chat_template.jinja").read_text(encoding="utf-8"),
    )
    return model, processor
