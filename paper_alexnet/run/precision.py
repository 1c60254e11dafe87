"""§5 at speed: the numeric precision of a step (fp32 on the CPU, bf16 autocast on a GPU).

Shared by training (train.py), evaluation (evaluate.py) and `alexnet bench`; it lives below all
three so that none of them imports another for it (evaluate.py must not import train.py, which
uses evaluate.py for its per-epoch validation).
"""
from __future__ import annotations

import contextlib

import torch


def resolve_precision(cfg, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of `cfg.train.precision` on `device`: bf16 on a GPU for auto, None
    (fp32) on the CPU."""
    if cfg.train.precision == "bf16" or (cfg.train.precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None):
    """torch.autocast for `dtype` on `device`'s type; a no-op context for None (fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
