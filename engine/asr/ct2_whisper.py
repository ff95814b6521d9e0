"""Convert a CTranslate2 Whisper model (``model.bin``) into an openai-whisper checkpoint.

The bundled tiny.en ships only in CTranslate2 format; converted once, the openai-whisper
backend runs the very same weights, so both backends work offline and compare fairly.

``model.bin`` layout: version, spec name, revision, variable count, then per variable its
name, rank, shape, dtype id and raw bytes (then aliases, unused here).
"""

from __future__ import annotations

import os
import re
import struct
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

# CTranslate2 DataType ids.
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2(path: Path) -> dict[str, np.ndarray]:
    """All variables of a CTranslate2 ``model.bin``."""
    with open(path, "rb") as f:
        (version,) = _read(f, "<I")
        if version < 5:
            raise ValueError(f"unsupported CTranslate2 model version {version}")
        spec = _string(f)
        if spec != "WhisperSpec":
            raise ValueError(f"not a Whisper model: {spec}")
        _read(f, "<I")  # revision
        (count,) = _read(f, "<I")
        variables = {}
        for _ in range(count):
            name = _string(f)
            (rank,) = _read(f, "<B")
            shape = _read(f, "<" + "I" * rank)
            (dtype,) = _read(f, "<B")
            (nbytes,) = _read(f, "<I")
            data = np.frombuffer(f.read(nbytes), dtype=_DTYPES[dtype])
            variables[name] = data.reshape(shape) if rank else data
        return variables


def _read(f: BinaryIO, fmt: str) -> tuple[Any, ...]:
    return struct.unpack(fmt, f.read(struct.calcsize(fmt)))


def _string(f: BinaryIO) -> str:
    (length,) = _read(f, "<H")
    return f.read(length).decode().rstrip("\0")


def to_whisper_state(v: dict[str, np.ndarray]) -> tuple[dict[str, int], dict[str, Any]]:
    """(ModelDimensions as a dict, state dict) for ``whisper.model.Whisper``."""
    import torch

    def t(name: str) -> torch.Tensor:
        return torch.from_numpy(np.array(v[name]))

    def layers(prefix: str) -> int:
        return len({m.group(1) for k in v if (m := re.match(rf"{prefix}/layer_(\d+)/", k))})

    state: dict[str, Any] = {}

    def attention(ours: str, theirs: str, fused_qkv: bool) -> None:
        if fused_qkv:
            w, b = t(f"{theirs}/linear_0/weight"), t(f"{theirs}/linear_0/bias")
            d = w.shape[1]
            state[f"{ours}.query.weight"], state[f"{ours}.key.weight"], \
                state[f"{ours}.value.weight"] = w.split(d)
            state[f"{ours}.query.bias"], _, state[f"{ours}.value.bias"] = b.split(d)
            state[f"{ours}.out.weight"] = t(f"{theirs}/linear_1/weight")
            state[f"{ours}.out.bias"] = t(f"{theirs}/linear_1/bias")
        else:  # cross-attention: query alone, key+value fused, then output
            state[f"{ours}.query.weight"] = t(f"{theirs}/linear_0/weight")
            state[f"{ours}.query.bias"] = t(f"{theirs}/linear_0/bias")
            w, b = t(f"{theirs}/linear_1/weight"), t(f"{theirs}/linear_1/bias")
            d = w.shape[1]
            state[f"{ours}.key.weight"], state[f"{ours}.value.weight"] = w.split(d)
            state[f"{ours}.value.bias"] = b.split(d)[1]  # whisper's key has no bias (CT2: 0)
            state[f"{ours}.out.weight"] = t(f"{theirs}/linear_2/weight")
            state[f"{ours}.out.bias"] = t(f"{theirs}/linear_2/bias")

    def norm(ours: str, theirs: str) -> None:
        state[f"{ours}.weight"], state[f"{ours}.bias"] = t(f"{theirs}/gamma"), t(f"{theirs}/beta")

    def mlp(ours: str, theirs: str) -> None:
        for i, j in ((0, 0), (2, 1)):
            state[f"{ours}.mlp.{i}.weight"] = t(f"{theirs}/ffn/linear_{j}/weight")
            state[f"{ours}.mlp.{i}.bias"] = t(f"{theirs}/ffn/linear_{j}/bias")
        norm(f"{ours}.mlp_ln", f"{theirs}/ffn/layer_norm")

    for conv in ("conv1", "conv2"):
        state[f"encoder.{conv}.weight"] = t(f"encoder/{conv}/weight")
        state[f"encoder.{conv}.bias"] = t(f"encoder/{conv}/bias")
    state["encoder.positional_embedding"] = t("encoder/position_encodings/encodings")
    n_audio, n_text = layers("encoder"), layers("decoder")
    for i in range(n_audio):
        ours, theirs = f"encoder.blocks.{i}", f"encoder/layer_{i}"
        attention(f"{ours}.attn", f"{theirs}/self_attention", True)
        norm(f"{ours}.attn_ln", f"{theirs}/self_attention/layer_norm")
        mlp(ours, theirs)
    norm("encoder.ln_post", "encoder/layer_norm")
    state["decoder.token_embedding.weight"] = t("decoder/embeddings/weight")
    state["decoder.positional_embedding"] = t("decoder/position_encodings/encodings")
    for i in range(n_text):
        ours, theirs = f"decoder.blocks.{i}", f"decoder/layer_{i}"
        attention(f"{ours}.attn", f"{theirs}/self_attention", True)
        norm(f"{ours}.attn_ln", f"{theirs}/self_attention/layer_norm")
        attention(f"{ours}.cross_attn", f"{theirs}/attention", False)
        norm(f"{ours}.cross_attn_ln", f"{theirs}/attention/layer_norm")
        mlp(ours, theirs)
    norm("decoder.ln", "decoder/layer_norm")
    audio_state = v["encoder/conv1/weight"].shape[0]
    dims = {
        "n_mels": int(v["encoder/conv1/weight"].shape[1]),
        "n_audio_ctx": int(v["encoder/position_encodings/encodings"].shape[0]),
        "n_audio_state": int(audio_state),
        "n_audio_head": int(v["encoder/num_heads"][0]),
        "n_audio_layer": n_audio,
        "n_vocab": int(v["decoder/embeddings/weight"].shape[0]),
        "n_text_ctx": int(v["decoder/position_encodings/encodings"].shape[0]),
        "n_text_state": int(v["decoder/embeddings/weight"].shape[1]),
        "n_text_head": int(v["decoder/num_heads"][0]),
        "n_text_layer": n_text,
    }
    return dims, state


def convert(ct2_folder: Path, target: Path) -> Path:
    """Write ``target`` (.pt) from the model in ``ct2_folder``, atomically."""
    import torch

    dims, state = to_whisper_state(read_ct2(ct2_folder / "model.bin"))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".convert-", suffix=".pt", dir=target.parent)
    os.close(fd)
    try:
        torch.save({"dims": dims, "model_state_dict": state}, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
