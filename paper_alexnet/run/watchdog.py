"""§5 training health checks that are not part of the paper's method: finite gradients, and a run
whose loss stays at chance level ("not learning").

- `finite_grads(model, device)`: a 0-d bool tensor on `device`, True when every gradient element
  is finite (their 2-norm, one foreach reduction, no host sync). train.py folds it into the same
  on-device flag as the loss check (`check_finite`), so an infinite or NaN gradient with a finite
  loss also stops the run before the optimiser step, on every rank, naming the step
  (`NonFiniteLoss`; resume.diverged words what to do then).
- `not_learning(records, num_classes, epochs)`: the §5 loss starts at ln(classes) (a uniform
  softmax); a run whose per-epoch mean training loss stays within CHANCE_TOLERANCE of it for
  `train.not_learning_epochs` epochs in a row is reported (stderr and an event record
  {"event": "not_learning"} in metrics.jsonl) with the usual causes. It only reports: it never
  stops a run. It reads metrics.jsonl, so a resumed run decides exactly as an uninterrupted one.
"""
from __future__ import annotations

import math
import sys

import torch

from data_prep import exits
from paper_alexnet.run import distributed, metrics

CHANCE_TOLERANCE = 0.02   # relative: ln(1000) = 6.908 -> "at chance" above 6.77


class NonFiniteLoss(exits.Failure, RuntimeError):
    """The loss or a gradient became NaN or infinite at `step` (1-based); the run stops and nothing
    after the last good checkpoint is saved."""

    def __init__(self, message: str, step: int, detected: str):
        super().__init__(message)
        self.step, self.detected = step, detected


def check_finite(first_bad: torch.Tensor, world, where: str):
    """Raise NonFiniteLoss if any step since the start (on any rank) had a non-finite loss.

    Design: every step records, on the device, the first step whose loss was not finite
    (`first_bad`, -1 if none); no sync. This is read (a sync point) before the optimiser step
    wherever reading is free or already happens: on the CPU at every step (CPU tensors are
    synchronous anyway, so the bad update is never applied), on a GPU at log steps and before every
    checkpoint save. On a GPU a bad update may therefore be applied in memory for up to log_every
    steps, but no checkpoint is written after it: the newest checkpoint on disk stays the last good
    one, and the message names the first bad step.
    """
    flag = first_bad.detach().to(distributed.collective_device(world, first_bad.device)).clone()
    if world.distributed:
        # the earliest bad step of any rank (−1 = none): all ranks then stop together
        flag = torch.where(flag < 0, torch.full_like(flag, 2 ** 62), flag)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
        flag = torch.where(flag == 2 ** 62, torch.full_like(flag, -1), flag)
    bad = int(flag.item())   # SYNC POINT (see the docstring: CPU every step, GPU at log/save steps)
    if bad >= 0:
        raise NonFiniteLoss(f"the training loss or a gradient was NaN or infinite at step "
                            f"{bad + 1} (detected {where})", bad + 1, where)


def finite_grads(model: torch.nn.Module, device) -> torch.Tensor:
    """0-d bool on `device` (the loss's): no host sync, the towers' grads may be on two GPUs."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return torch.ones((), dtype=torch.bool, device=device)
    # The 2-norm is NaN or inf when any element is, and get_total_norm handles grads on several
    # devices. Measured on the 2-core CPU (61 M float32 gradients, 1 thread): 21 ms, against 197 ms
    # for the inf-norm (a third of a batch-16 forward+backward). In float32 it also overflows for a
    # norm above ~1.8e19: a run that has blown up, stopped the same way.
    norm = torch.nn.utils.get_total_norm(grads, norm_type=2.0)
    return torch.isfinite(norm).to(device, non_blocking=True)


def epoch_losses(records: list[dict]) -> dict[int, float]:
    """{epoch: mean of its "train" records' loss} (each record is the mean of a log window)."""
    by_epoch: dict[int, list[float]] = {}
    for r in records:
        if r.get("kind") == "train" and "loss" in r:
            by_epoch.setdefault(int(r["epoch"]), []).append(float(r["loss"]))
    return {e: sum(v) / len(v) for e, v in sorted(by_epoch.items())}


def not_learning(records: list[dict], num_classes: int, epochs: int) -> str | None:
    """The report when the last `epochs` epochs all sat at chance level, else None (0 = off)."""
    if epochs <= 0:
        return None
    chance = math.log(num_classes)
    losses = list(epoch_losses(records).items())[-epochs:]
    if len(losses) < epochs or not all(loss >= (1 - CHANCE_TOLERANCE) * chance
                                       for _, loss in losses):
        return None
    listed = ", ".join(f"epoch {e}: {loss:.4f}" for e, loss in losses)
    return (f"not learning: the training loss has stayed at chance level (ln {num_classes} = "
            f"{chance:.4f}) for {epochs} epochs ({listed}). Usual causes: the learning rate "
            f"(too high: the net collapses to a uniform output; too low: nothing moves) - try "
            f"optim.lr 10x lower and higher; the initialisation (§5's N(0, 0.01) with bias 1 can "
            f"leave a deep ReLU net dead or saturated; try model.init=caffe); labels that do not "
            f"match the images (check the prepared data: 'alexnet prep verify ROOT'); too much "
            f"regularisation (optim.weight_decay, model.dropout). train.not_learning_epochs=0 "
            f"turns this check off.")


def report_not_learning(log: metrics.MetricsLog, run_dir, num_classes: int, epochs: int,
                        global_step: int, epoch: int) -> str | None:
    """At an epoch end (main rank): print the report to stderr and log it as an event."""
    message = not_learning(metrics.read_metrics(run_dir), num_classes, epochs)
    if message is not None:
        print(f"alexnet train: WARNING: {message}", file=sys.stderr, flush=True)
        log.log("event", global_step, epoch, event="not_learning", message=message)
    return message
