"""§3.2 Placement: which device holds each tower (the paper's "GPU 1" and "GPU 2").

The paper spreads the net across two GTX 580s, one tower each, and lets the towers talk only at
certain layers. `resolve_devices(spec)` turns `config.model.devices` into the pair
(device of tower A, device of tower B):

    ("auto",)              cuda:0 + cuda:1 with two GPUs; both on cuda:0 with one; both on the CPU
                           with none (each fallback is logged at INFO level)
    ("cuda:0", "cuda:1")   the paper's placement
    ("cuda:0",)  ("cpu",)  both towers on one device
    ("cuda:0", "cpu")      a mix: lets a one-GPU machine exercise the cross-device path

A device that does not exist is an error naming it, raised here, before any tensor is made.
"""
from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


class PlacementError(ValueError):
    """A `model.devices` value that cannot be honoured on this machine."""


def _check(name: str) -> torch.device:
    """Parse one device name and check that this machine has it."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise PlacementError(f"model.devices: {name!r} is not a device name; use 'auto', 'cpu', "
                             f"'cuda:0', 'cuda:1', … (a GPU is 'cuda', not 'gpu')") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = 0 if device.index is None else device.index
        if index >= count:
            raise PlacementError(f"model.devices: {name!r} does not exist (this machine has {count} "
                                 f"CUDA device(s)); use model.devices=[auto], or name devices "
                                 f"that exist (e.g. [cpu])")
        return torch.device("cuda", index)
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise PlacementError(f"model.devices: {name!r} does not exist on this machine; use "
                                 f"model.devices=[auto] or [cpu]")
        return torch.device("mps")
    raise PlacementError(f"model.devices: {name!r} (type {device.type}) is not supported; use "
                         f"'auto', 'cpu' or 'cuda:N'")


def auto_devices() -> tuple[torch.device, torch.device]:
    """The paper's placement where the machine allows it, with a logged fallback otherwise."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count >= 2:
        return torch.device("cuda", 0), torch.device("cuda", 1)
    if count == 1:
        log.info("model.devices=auto: one CUDA device, both towers on cuda:0 (the paper used two)")
        return torch.device("cuda", 0), torch.device("cuda", 0)
    log.info("model.devices=auto: no CUDA device, both towers on the CPU")
    return torch.device("cpu"), torch.device("cpu")


def resolve_devices(spec=("auto",)) -> tuple[torch.device, torch.device]:
    """(device of tower A, device of tower B) for a `model.devices` value (a name or a sequence)."""
    if isinstance(spec, (str, torch.device)):
        spec = (spec,)
    names = [str(s) for s in spec]
    if not names or len(names) > 2:
        raise PlacementError(f"model.devices: {list(names)!r} must name one or two devices "
                             f"(one per tower), or be [auto]")
    if "auto" in names:
        if len(names) != 1:
            raise PlacementError(f"model.devices: {list(names)!r} mixes 'auto' with device names; "
                                 f"use [auto] alone or name both devices")
        return auto_devices()
    devices = [_check(n) for n in names]
    return devices[0], devices[-1]
