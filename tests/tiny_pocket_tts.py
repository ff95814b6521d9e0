"""Pocket TTS models with random weights, laid out as the Hub serves the real ones.

``build_pocket_repos`` writes, for one pocket-tts config, the files the app pulls: the weights
with cloning (``kyutai/pocket-tts``), the weights without it, the tokenizer and the built-in
voice states (``kyutai/pocket-tts-without-voice-cloning``), under ``root/OWNER/REPO/PATH``, plus
the config YAML pointing at them with ``hf://`` addresses. ``tiny`` is a small config for tests;
any packaged config (``english_7m_2026-10``) gives a full-size model with random weights for
shape-true timing (speed, not sound). A tokenizer stand-in of the config's vocabulary size
replaces the real one (token ids only matter for their count).

The same files can be served by ``tests.fake_hub.FakeHub`` (the pull path) or laid straight into
a Hub cache with ``install_into_cache`` (the load path alone).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REVISION = "5e1f0c3a9b7d2e4f6a8c0b1d3e5f7a9c2b4d6e8f"
CLONING_REPO = "kyutai/pocket-tts"
PLAIN_REPO = "kyutai/pocket-tts-without-voice-cloning"
TINY_CONFIG = {
    "flow_lm": {
        "insert_bos_before_voice": True, "dtype": "float32",
        "flow": {"depth": 1, "dim": 16},
        "transformer": {"d_model": 32, "hidden_scale": 2, "max_period": 10000, "num_heads": 2,
                        "num_layers": 1},
        "lookup_table": {"dim": 32, "n_bins": 300, "tokenizer": "tokenizers",
                         "tokenizer_path": ""},
    },
    "mimi": {
        "dtype": "float32", "sample_rate": 24000, "inner_dim": 8, "outer_dim": 16,
        "channels": 1, "frame_rate": 12.5,
        "seanet": {"dimension": 16, "channels": 1, "n_filters": 4, "n_residual_layers": 1,
                   "ratios": [6, 5, 4], "kernel_size": 3, "residual_kernel_size": 3,
                   "last_kernel_size": 3, "dilation_base": 2, "pad_mode": "constant",
                   "compress": 2},
        "transformer": {"d_model": 16, "num_heads": 2, "num_layers": 1, "layer_scale": 0.01,
                        "context": 50, "dim_feedforward": 32, "input_dimension": 16,
                        "output_dimensions": [16]},
        "quantizer": {"dimension": 8, "output_dimension": 16},
    },
}


@dataclass(frozen=True)
class PocketRepos:
    """Where the files went."""

    root: Path  # root/OWNER/REPO/... holds every repo
    config: Path  # the YAML, with hf:// addresses of the files below
    name: str  # the config's name (its file stem)

    def repo(self, repo_id: str) -> Path:
        """The folder holding ``repo_id``'s files."""
        return self.root / repo_id


def _stand_in_tokenizer(n_bins: int, path: Path) -> None:
    """A byte-level BPE tokenizer with exactly ``n_bins`` ids (the runtime checks the size)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    for i in range(len(vocab), n_bins):
        vocab[f"<unused{i}>"] = i
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.save(str(path))


def build_pocket_repos(root: Path, config: str = "tiny", *, seed: int = 0,
                       voices: tuple[str, ...] = ("alba", "marius")) -> PocketRepos:
    """Write a random-weight pocket-tts model's Hub files and its config under ``root``.

    Args:
        root: Destination folder (created).
        config: ``tiny``, or the name of a config pocket-tts ships (full size).
        seed: Seed of the random weights.
        voices: Built-in voices to write (states of tones of different pitch).

    """
    import numpy as np
    import safetensors.torch
    import torch
    import yaml

    from engine.tts.runtime import config_path, runtime

    runtime()  # first: a bare pocket_tts import would set torch to one thread
    from pocket_tts.utils.utils import get_predefined_voice

    root.mkdir(parents=True, exist_ok=True)
    if config == "tiny":
        data = {k: dict(v) for k, v in TINY_CONFIG.items()}
        data["flow_lm"]["lookup_table"] = dict(TINY_CONFIG["flow_lm"]["lookup_table"])
        name, folder = "tiny", "languages/tiny"
    else:
        source = config_path(config)
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
        name = source.stem
        folder = f"languages/{name}"
    n_bins = data["flow_lm"]["lookup_table"]["n_bins"]
    data["weights_path"] = f"hf://{CLONING_REPO}/{folder}/model.safetensors@{REVISION}"
    data["weights_path_without_voice_cloning"] = (
        f"hf://{PLAIN_REPO}/{folder}/model.safetensors@{REVISION}")
    # The stand-in tokenizer is a tokenizers JSON whatever the real one is (same id count).
    data["flow_lm"]["lookup_table"]["tokenizer"] = "tokenizers"
    data["flow_lm"]["lookup_table"]["tokenizer_path"] = (
        f"hf://{PLAIN_REPO}/{folder}/tokenizer.json@{REVISION}")
    for key in ("weights_path",):
        data["flow_lm"].pop(key, None)
        data["mimi"].pop(key, None)

    plain = root / PLAIN_REPO / folder
    cloning = root / CLONING_REPO / folder
    plain.mkdir(parents=True, exist_ok=True)
    cloning.mkdir(parents=True, exist_ok=True)
    _stand_in_tokenizer(n_bins, plain / "tokenizer.json")

    # Build without weights (the runtime initialises randomly), then save what it built.
    bare = dict(data, weights_path=None, weights_path_without_voice_cloning=None)
    bare["flow_lm"] = dict(data["flow_lm"], lookup_table=dict(
        data["flow_lm"]["lookup_table"], tokenizer_path=str(plain / "tokenizer.json")))
    bare_yaml = root / f".{name}-bare.yaml"
    bare_yaml.write_text(yaml.safe_dump(bare), encoding="utf-8")
    torch.manual_seed(seed)
    model = runtime().TTSModel.load_model(config=bare_yaml)
    bare_yaml.unlink()
    with torch.no_grad():  # zeros would make every cloned voice the same
        model.flow_lm.speaker_proj_weight.normal_(0, 0.05)
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    safetensors.torch.save_file(weights, cloning / "model.safetensors")
    # The open weights cannot clone: their speaker projection is not trained (zeros here).
    weights["flow_lm.speaker_proj_weight"] = torch.zeros_like(
        weights["flow_lm.speaker_proj_weight"])
    safetensors.torch.save_file(weights, plain / "model.safetensors")

    export = runtime().export_model_state
    for i, voice in enumerate(voices):
        t = np.arange(24000 * 2) / 24000
        tone = (0.3 * np.sin(2 * np.pi * (140 + 90 * i) * t)).astype(np.float32)
        state = model.get_state_for_audio_prompt(torch.from_numpy(tone)[None, :])
        hub_path = get_predefined_voice(name, voice).removeprefix("hf://").split("@")[0]
        target = root / hub_path
        target.parent.mkdir(parents=True, exist_ok=True)
        export(state, target)

    config_file = root / f"{name}.yaml"
    config_file.write_text(yaml.safe_dump(data), encoding="utf-8")
    return PocketRepos(root, config_file, name)


def install_into_cache(repos: PocketRepos, cache: Path, *, cloning: bool = True) -> None:
    """Lay the repos' files into a Hub cache as a pull would (snapshots/<revision>/...)."""
    import shutil

    from engine.tts.runtime import runtime

    runtime()
    from pocket_tts.utils.utils import get_predefined_voice

    # Built-in voices are pinned to a revision of their own by the runtime.
    voice_revision = get_predefined_voice(repos.name, "alba").rsplit("@", 1)[1]
    for repo_id in ((CLONING_REPO,) if cloning else ()) + (PLAIN_REPO,):
        source = repos.repo(repo_id)
        for file in source.rglob("*"):
            if file.is_file():
                owner, name = repo_id.split("/")
                relative = file.relative_to(source)
                revision = voice_revision if "embeddings" in relative.parts else REVISION
                target = (cache / f"models--{owner}--{name}" / "snapshots" / revision /
                          relative)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(file, target)
