"""§5: the paper's update rule and its learning-rate schedule.

The rule, exactly as printed in §5 (ε = learning rate, m = 0.9, wd = 0.0005):

    v ← m·v − wd·ε·w − ε·∇L
    w ← w + v

The velocity v holds the learning rate. `torch.optim.SGD` keeps b = m·b + ∇L + wd·w and steps
w ← w − ε·b instead: at a constant ε the two are the same trajectory (v = −ε·b), but after ε is
divided by 10 the paper's v still carries the old, larger steps that decay away with m, while
torch's step ε·b shrinks tenfold at once. `rule: torch_sgd` in the config selects torch's version.

∇L is the gradient of the loss averaged over the batch (§5: "averaged over the i-th batch"): that is
the loss's job (`cross_entropy(..., reduction="mean")` over the global batch), not the optimiser's.

Weight decay applies to weights only by default (the author's layer configs set no decay on biases;
`optim.decay_biases=true` decays them too). Biases learn at `optim.bias_lr_scale` times the rate
(1 = the paper's single ε; the author's configs use 2: epsB = 2·epsW); every group keeps its scale
through schedule drops. Parameter groups are chosen by tensor rank, never by name: ndim ≥ 2 →
"weights" (conv kernels, fc matrices), ndim ≤ 1 → "biases".

API
- `PaperSGD(params, lr, momentum, weight_decay, fused=None)`: a `torch.optim.SGD` whose momentum
  buffer is rescaled when ε changes, which makes it exactly the paper's rule (see the class);
  `.velocity(p)` is the paper's v (v₀ = 0). Parameters whose `.grad` is None are skipped that step.
  One fused kernel per (device, dtype): two towers on two GPUs are each updated on their own GPU.
- `param_groups(model, optim_cfg) -> list[dict]`: the two groups ("weights", "biases").
- `make_optimizer(model, optim_cfg)`: `PaperSGD` (rule "paper") or `torch.optim.SGD` (rule
  "torch_sgd") with the same groups, lr, momentum and weight decay.
- `make_schedule(schedule_cfg, optimizer, base_lr=None) -> Schedule`: see `Schedule`.
"""
from __future__ import annotations

import math

import torch

from paper_alexnet.config import OptimConfig, ScheduleConfig


class PaperSGD(torch.optim.SGD):
    """§5: v ← m·v − wd·ε·w − ε·∇L; w ← w + v (the velocity includes the learning rate ε).

    Computed with torch's fused (or foreach) SGD kernel, which is exact for this rule: keep
    b = −v/ε_b, where ε_b is the rate b is expressed at. With ε_b = ε the paper's step is
    b ← m·b + ∇L + wd·w, w ← w − ε·b: torch's SGD step. When ε changes (a schedule drop), b is first
    rescaled by ε_b/ε so that v is unchanged; that rescaling is the whole difference between the
    paper's rule and torch's. It costs one multiply per drop; every step is one fused kernel
    (0.45 ms for AlexNet's 61M parameters on an H100, torch 2.11, against 1.0 ms for the foreach
    version; docs/training.md).

    State: torch SGD's `momentum_buffer` (b) per parameter and `buffer_lr` (ε_b) per group, both in
    `state_dict()`; `velocity(p)` gives the paper's v. Parameters whose grad is None are skipped.
    `fused=None` picks the fused kernel when every parameter is a float tensor on CUDA or the CPU
    (torch groups them per device: two towers on two GPUs are each updated on their own GPU).
    """

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.9,
                 weight_decay: float = 0.0005, fused: bool | None = None):
        if lr <= 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"PaperSGD: lr={lr} must be > 0 (the velocity is kept divided by "
                             f"it), momentum={momentum} and weight_decay={weight_decay} >= 0")
        # Materialise generators (model.parameters()) once: they are read here and by torch.
        params = [dict(g, params=[g["params"]] if isinstance(g["params"], torch.Tensor)
                       else list(g["params"])) if isinstance(g, dict) else g
                  for g in (list(params) if not isinstance(params, torch.Tensor) else [params])]
        if fused is None:
            fused = _fusable(params)
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                         fused=fused, foreach=None if fused else True)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr = group["lr"]
            if lr <= 0:
                raise ValueError(f"PaperSGD: learning rate {lr} in group "
                                 f"{group.get('group', '?')} must be > 0")
            buffer_lr = group.setdefault("buffer_lr", lr)
            if buffer_lr != lr:
                # Keep v = −ε·b unchanged across the rate change (§5: v carries the old steps).
                for p in group["params"]:
                    buf = self.state[p].get("momentum_buffer") if p in self.state else None
                    if buf is not None:
                        buf.mul_(buffer_lr / lr)
                group["buffer_lr"] = lr
        return super().step(closure)

    def velocity(self, p: torch.Tensor) -> torch.Tensor | None:
        """The paper's v of parameter p (None before its first step)."""
        for group in self.param_groups:
            if any(p is q for q in group["params"]):
                buf = self.state[p].get("momentum_buffer") if p in self.state else None
                return None if buf is None else -group.get("buffer_lr", group["lr"]) * buf
        raise KeyError("parameter is not in this optimiser")


def _fusable(params) -> bool:
    tensors = [t for item in params
               for t in (item["params"] if isinstance(item, dict) else [item])]
    return all(t.is_floating_point() and t.device.type in ("cuda", "cpu") for t in tensors)


def param_groups(model: torch.nn.Module, cfg: OptimConfig) -> list[dict]:
    """Weights (ndim ≥ 2) with weight decay; biases (ndim ≤ 1) with it only if cfg.decay_biases,
    at cfg.bias_lr_scale times the rate (`lr_scale` of the group, kept by the schedule).

    By rank, never by name: LRN has no parameters, and any 1-d tensor (bias, or a norm's scale in a
    variant) is treated as a bias. Parameters with requires_grad=False are left out. Empty groups
    are dropped (torch optimisers reject them).
    """
    weights, biases = [], []
    for p in model.parameters():   # deduplicated: a shared tensor appears once
        if p.requires_grad:
            (weights if p.ndim >= 2 else biases).append(p)
    groups = [dict(params=weights, weight_decay=cfg.weight_decay, group="weights",
                   lr=cfg.lr, lr_scale=1.0),
              dict(params=biases, weight_decay=cfg.weight_decay if cfg.decay_biases else 0.0,
                   group="biases", lr=cfg.lr * cfg.bias_lr_scale, lr_scale=cfg.bias_lr_scale)]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError(f"model {type(model).__name__} has no trainable parameters")
    return groups


def make_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """The optimiser the config names: the paper's rule (default) or torch's SGD, same groups."""
    groups = param_groups(model, cfg)
    if cfg.rule == "torch_sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay, fused=_fusable(groups) or None)
    return PaperSGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


class Schedule:
    """§5: ε is divided by 10 when the validation error stops improving, three times in all.

    Call `observe(epoch, error)` once at the end of every epoch, where `epoch` is the number of
    epochs completed so far (1 after the first epoch) and `error` is the error on
    `schedule.signal_split`. It returns True when it divided the rate; the new rate is already set
    in every group of the optimiser, and applies from the next epoch on.

    kind "plateau": an epoch improves when error < best − threshold (absolute, in error units).
    After `patience` consecutive epochs without improvement the rate is divided (×factor), the
    count restarts, and the best error is kept (a gain smaller than threshold does not move it, so
    slow steady gains add up until they count). At most `max_drops` drops (0.01 → 1e-5), then
    never again. A NaN error never counts as an improvement.
    kind "milestones": the rate is divided once at each epoch listed in `milestones` (after that
    many epochs are complete; `max_drops` does not apply); `error` may be None.

    `.lr`, `.drops`, `.history` ([(epoch, lr)] for every drop), `rebase(lr)`, `state_dict()` /
    `load_state_dict()` (plain Python values: loads with weights_only=True). Observing an epoch ≤
    the last one observed raises ValueError (it would count an epoch twice after a resume).
    """

    def __init__(self, cfg: ScheduleConfig, optimizer: torch.optim.Optimizer, base_lr: float):
        if list(cfg.milestones) != sorted(set(cfg.milestones)):
            raise ValueError(f"schedule.milestones={list(cfg.milestones)} must be increasing")
        self.cfg = cfg
        self.optimizer = optimizer
        self.base_lr = float(base_lr)
        self.drops = 0
        self.best = math.inf
        self.bad_epochs = 0
        self.last_epoch = 0
        self.history: list[tuple[int, float]] = []
        self._apply()

    @property
    def lr(self) -> float:
        return self.base_lr * self.cfg.factor ** self.drops

    def _apply(self):
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * group.get("lr_scale", 1.0)

    def rebase(self, base_lr: float):
        """A new rate before drops (a resume with `--allow-change optim.lr`): the rate in force is
        base_lr × factor^drops from the next step on (PaperSGD keeps v across the change)."""
        self.base_lr = float(base_lr)
        self._apply()

    def _drop(self, epoch: int):
        self.drops += 1
        self.history.append((epoch, self.lr))
        self._apply()

    def observe(self, epoch: int, error: float | None) -> bool:
        if epoch <= self.last_epoch:
            raise ValueError(f"schedule observed epoch {epoch} after epoch {self.last_epoch}: "
                             "call observe once per completed epoch, with increasing numbers")
        self.last_epoch = epoch
        drops_before = self.drops
        if self.cfg.kind == "milestones":
            while self.drops < sum(1 for m in self.cfg.milestones if m <= epoch):
                self._drop(epoch)
            return self.drops > drops_before
        if error is None:
            raise ValueError(f"schedule.kind=plateau needs the {self.cfg.signal_split} error of "
                             f"epoch {epoch}, got None")
        error = float(error)
        if error < self.best - self.cfg.threshold:   # False for NaN
            self.best = error
            self.bad_epochs = 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs >= self.cfg.patience and self.drops < self.cfg.max_drops:
            self.bad_epochs = 0
            self._drop(epoch)
        return self.drops > drops_before

    def state_dict(self) -> dict:
        return dict(kind=self.cfg.kind, base_lr=self.base_lr, drops=self.drops, best=self.best,
                    bad_epochs=self.bad_epochs, last_epoch=self.last_epoch,
                    history=[list(h) for h in self.history])

    def load_state_dict(self, state: dict):
        if state["kind"] != self.cfg.kind:
            raise ValueError(f"schedule state is of kind {state['kind']!r} but the config says "
                             f"schedule.kind={self.cfg.kind!r}: resume with the run's own config")
        self.base_lr = float(state["base_lr"])
        self.drops = int(state["drops"])
        self.best = float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])
        self.last_epoch = int(state["last_epoch"])
        self.history = [(int(e), float(lr)) for e, lr in state["history"]]
        self._apply()


def make_schedule(cfg: ScheduleConfig, optimizer: torch.optim.Optimizer,
                  base_lr: float | None = None) -> Schedule:
    """The §5 schedule; base_lr defaults to the optimiser's current rate (optim.lr)."""
    if base_lr is None:
        group = optimizer.param_groups[0]
        base_lr = group["lr"] / group.get("lr_scale", 1.0)
    return Schedule(cfg, optimizer, base_lr)
