"""Choosing where a model runs: CUDA with fp16 when there is a GPU, else CPU with fp32."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.errors import ConfigError

DEVICE_SETTINGS = ("auto", "cuda", "cpu")


@dataclass(frozen=True)
class Placement:
    """A resolved device and the dtype models use there."""

    device: str  # "cuda" or "cpu"
    dtype: Any  # torch.float16 on CUDA, torch.float32 on CPU


def resolve(setting: str = "auto") -> Placement:
    """Turn the ``device`` setting (auto/cuda/cpu) into a placement."""
    if setting not in DEVICE_SETTINGS:
        raise ConfigError(f"Device must be one of {', '.join(DEVICE_SETTINGS)}, not {setting!r}.")
    import torch

    has_cuda = torch.cuda.is_available()
    if setting == "cuda" and not has_cuda:
        raise ConfigError(
            "The device is set to CUDA, but PyTorch sees no CUDA GPU.",
            hint="Set the device to auto or cpu, or install a CUDA build of PyTorch.",
            code="cuda_unavailable",
        )
    if setting == "cuda" or (setting == "auto" and has_cuda):
        return Placement("cuda", torch.float16)
    return Placement("cpu", torch.float32)
