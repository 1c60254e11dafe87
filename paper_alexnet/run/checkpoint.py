"""Checkpoints of a run directory (docs/ARCHITECTURE.md decision 6): atomic, verified, safe to load.

Layout: RUN/checkpoints/ckpt-<step, 9 digits>.pt, next to
- ckpt-<step>.pt.sha256: the SHA-256 of the .pt file in `sha256sum` format (so
  `cd RUN/checkpoints && sha256sum -c ckpt-000001000.pt.sha256` checks it by hand). Written before
  the .pt file gets its name, so a checkpoint that exists always has its digest; it catches flipped
  bytes that would still unpickle.
- ckpt-<step>.pt.milestone: an empty marker; milestone checkpoints are never pruned.

`save(run_dir, state, step, keep_last, milestone=False) -> Path`: torch.save into a
`data_prep.files.AtomicFile` (a hidden ".ckpt-….tmp" beside it, never matched as a checkpoint,
removed on any exception), the digest sidecar, then the AtomicFile's fsync, rename (atomic on
POSIX) and fsync of the directory. Then prunes: keeps the `keep_last` newest plus
the milestones. Checkpoints with a step above the one being saved (left by a run that resumed from
an older checkpoint because the newer was unreadable) are renamed `*.stale`, not deleted.

`load(path, map_location="cpu") -> dict`: checks the digest, then `torch.load(weights_only=True)`:
no code in the file runs. Any failure raises `CheckpointError` naming the file.
`load_latest(run_dir, map_location="cpu") -> (path, state) | None`: the newest checkpoint that
loads; unreadable newer ones are skipped with a warning naming them and the one used. None when
there is no checkpoint; CheckpointError when there are some and none loads. `save` also refuses
(TypeError naming the key) a state that weights_only=True would refuse at resume time.

The state must hold only tensors and plain Python values (dict, list, tuple, str, int, float, bool,
None): what weights_only=True accepts. `rng_state()` / `set_rng_state()` convert the RNG states to
such values; `code_version()` says which code wrote the checkpoint.
`load_model(path, devices=None) -> (config, model, state)`: the network a checkpoint holds, built
from its own config, its weights loaded, in eval mode, on `devices` (None: the config's
model.devices).
"""
from __future__ import annotations

import os
import pickle
import random
import re
import subprocess
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from data_prep import exits
from data_prep.files import AtomicFile, sha256_file, write_atomic
from paper_alexnet import config as config_lib
from paper_alexnet import model as model_lib

_NAME = re.compile(r"^ckpt-(\d+)\.pt$")


class CheckpointError(exits.Failure, RuntimeError):
    """A checkpoint file that cannot be used (missing, corrupt, unsafe)."""


def checkpoint_dir(run_dir) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_path(run_dir, step: int) -> Path:
    return checkpoint_dir(run_dir) / f"ckpt-{step:09d}.pt"


def list_checkpoints(run_dir) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint file name in RUN/checkpoints, oldest first."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), folder / name) for name in os.listdir(folder)
             if (m := _NAME.match(name))]
    return sorted(found)


def _remove(path: Path):
    for p in (path, Path(f"{path}.sha256"), Path(f"{path}.milestone")):
        p.unlink(missing_ok=True)


_PLAIN = (str, bytes, int, float, bool, complex, type(None), torch.Size, torch.dtype, torch.device)


def _check_plain(value, where: str):
    """Refuse, at save time, what torch.load(weights_only=True) would refuse at resume time."""
    if isinstance(value, torch.Tensor) or isinstance(value, _PLAIN):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _check_plain(key, f"{where} (a key)")
            _check_plain(item, f"{where}[{key!r}]")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    raise TypeError(f"checkpoint state{where} is a {type(value).__module__}."
                    f"{type(value).__name__}, which torch.load(weights_only=True) refuses: store "
                    "tensors and plain Python values (numpy: .tolist() or torch.from_numpy; paths: "
                    "str)")


def save(run_dir, state: dict, step: int, keep_last: int, milestone: bool = False) -> Path:
    """Write `state` as the checkpoint of `step`, atomically; prune old ones. Returns its path."""
    if keep_last < 1:
        raise ValueError(f"keep_last={keep_last}: at least the newest checkpoint must be kept")
    _check_plain(state, "")
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in folder.glob(".ckpt-*.tmp"):   # of writers killed mid-save (one writer per run)
        leftover.unlink(missing_ok=True)
    path = checkpoint_path(run_dir, step)
    with AtomicFile(path) as out:   # a sidecar exists before its checkpoint gets its name
        torch.save(state, out.file)
        out.file.flush()
        # The digest is of the bytes as they are in the file, read back.
        write_atomic(f"{path}.sha256", f"{sha256_file(out.tmp)}  {path.name}\n".encode())
        marker = Path(f"{path}.milestone")
        if milestone:
            write_atomic(marker, b"")
        else:
            marker.unlink(missing_ok=True)
    _prune(run_dir, step, keep_last)
    return path


def _prune(run_dir, step: int, keep_last: int):
    checkpoints = list_checkpoints(run_dir)
    for s, p in checkpoints:
        if s > step:
            warnings.warn(f"checkpoint {p} is newer than the one just saved (step {step}); "
                          f"renamed to {p.name}.stale (this run resumed from an older one)")
            os.replace(p, Path(f"{p}.stale"))
            Path(f"{p}.sha256").unlink(missing_ok=True)
    checkpoints = [(s, p) for s, p in checkpoints if s <= step]
    # The newest keep_last (the one just written, which is valid, among them) and milestones stay.
    for s, p in checkpoints[:-keep_last]:
        if not Path(f"{p}.milestone").exists():
            _remove(p)


def load(path, map_location="cpu") -> dict:
    """Verify the digest and load with weights_only=True; CheckpointError names the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    sidecar = Path(f"{path}.sha256")
    verified = sidecar.is_file()     # then the bytes are exactly those that were written
    if verified:
        expected = sidecar.read_text().split()[0] if sidecar.read_text().strip() else ""
        actual = sha256_file(path)
        if actual != expected:
            raise CheckpointError(f"checkpoint {path} is corrupt: its SHA-256 is {actual[:16]}…, "
                                  f"{sidecar.name} says {expected[:16]}… (truncated or damaged "
                                  "file; use an older checkpoint)")
    else:
        warnings.warn(f"checkpoint {path} has no {sidecar.name}: its integrity is not checked")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if verified and not _looks_saved_by_torch(path):   # written so: foreign, not damaged
            raise _not_ours(path) from None
        blocked = next((line.strip() for line in str(err).splitlines() if "GLOBAL" in line), "")
        raise CheckpointError(f"checkpoint {path} was refused by torch.load(weights_only=True): "
                              f"it holds objects other than tensors and plain values (possibly "
                              f"malicious; nothing in it was run)"
                              + (f": {blocked}" if blocked else "")) from None
    # What damaged files raised in a fuzz test (random truncations and flipped bytes, torch 2.14):
    # RuntimeError (zip records), UnpicklingError, ValueError/UnicodeDecodeError, KeyError,
    # IndexError, TypeError. About a third of damaged files still loaded: hence the digest.
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile, LookupError,
            TypeError, AttributeError, OverflowError) as err:
        if verified and not _looks_saved_by_torch(path):
            raise _not_ours(path) from None
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(err).__name__}: {err}); "
                              "use an older checkpoint") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a dict")
    return state


def load_model(path, devices=None):
    """(config, model in eval mode, state) of one checkpoint: the network its own config names,
    on `devices` (None: the config's model.devices), with its weights (weights_only=True)."""
    state = load(path)
    cfg = config_lib.build(config_lib.RunConfig, state["config"])
    model = model_lib.build(cfg.model, devices)
    model.load_state_dict(state["model"])
    return cfg, model.eval(), state


def _not_ours(path: Path) -> CheckpointError:
    return CheckpointError(f"{path} is not a checkpoint of this project (neither the zip archive "
                           f"torch.save writes nor a pickle): name a file that `alexnet train` "
                           f"wrote; nothing in it was run")


def _looks_saved_by_torch(path: Path) -> bool:
    """A zip archive (torch.save's format) or a pickle (its legacy one), by the first bytes. torch's
    own refusal text is never shown: it advises weights_only=False, which would run the file."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def load_latest(run_dir, map_location="cpu"):
    """(path, state) of the newest checkpoint that loads, or None when there is none at all."""
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        return None
    failures, skipped = [], []
    for _step, path in reversed(checkpoints):
        try:
            state = load(path, map_location)
        except CheckpointError as err:
            failures.append(str(err))
            skipped.append(path.name)
            continue
        if failures:
            warnings.warn(f"unreadable checkpoint(s) {', '.join(skipped)} skipped, using the "
                          f"previous one {path}. Details: " + "; ".join(failures))
        return path, state
    raise CheckpointError(f"none of the {len(checkpoints)} checkpoints in "
                          f"{checkpoint_dir(run_dir)} loads: " + "; ".join(failures)
                          + " (move the folder aside to start the run afresh)")


# --------------------------------------------------------------------------- RNG and code version

def rng_state() -> dict:
    """Python, numpy (global), torch CPU and every CUDA device's generator, as plain values."""
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"kind": kind, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict):
    """Restore what `rng_state` captured; CUDA states on as many devices as both runs have."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["gauss"]))
    torch.set_rng_state(state["torch"].cpu())
    saved = state.get("cuda", [])
    present = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if len(saved) != present and saved:
        warnings.warn(f"checkpoint has RNG states for {len(saved)} CUDA device(s), this process "
                      f"sees {present}: restoring the first {min(len(saved), present)}")
    for i, s in enumerate(saved[:present]):
        torch.cuda.set_rng_state(s.cpu(), i)


def code_version() -> str:
    """`git describe --always --dirty` of the source tree, else the installed package version."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=here,
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return f"git:{out.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass   # no git on this machine: fall back to the package version
    from importlib import metadata
    try:
        return f"paper_alexnet {metadata.version('paper_alexnet')}"
    except metadata.PackageNotFoundError:
        return "unknown (not a git checkout, package not installed)"
