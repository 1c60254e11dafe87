"""Run configuration (docs/ARCHITECTURE.md decision 3): nested frozen dataclasses whose defaults ARE
the paper.

Every default cites the section of Krizhevsky, Sutskever & Hinton (2012) it comes from; every
deviation the paper leaves open (224 vs 227, LRN convention, PCA scaling, mean alignment, optimiser,
schedule) is a named value here. Configs are loaded from YAML with `yaml.safe_load`, overridden from
the command line (`optim.lr=0.02`), checked (unknown keys and wrong types are rejected with the key
named) and frozen. Paths to data and run directories never live here: they are flags.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from data_prep import exits


class ConfigError(exits.Failure, ValueError):
    """A config file or override that does not describe a valid run; `key` names the offending
    dotted key when there is one (so `load` can say whether the file or the command line set it)."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


# What a key means beyond its value, declared on its own field (`roles=`); resume.py,
# evaluate.py and experiments/recipes.py read their lists of keys from here (`keys_with`).
ROLES = {
    "resume": "a resume may change it (how long, how often it logs or saves, where it runs; "
              "never what is computed)",
    "on_request": "a resume changes it only with --allow-change KEY (logged), as the paper's "
                  "authors lowered the rate by hand (§5)",
    "input": "changes the pixels a network sees; ensemble members must agree on it",
    "holdout": "decides which images a train split holds; members evaluated on train must agree",
    "eval": "`alexnet eval` may set it (how an evaluation runs, never what the network is)",
    "scale": "how long or how a run is carried out, not what it is; ignored when a run is "
             "matched to its recipe",
}


def _roles(roles) -> tuple[str, ...]:
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"config.py: unknown role(s) {sorted(unknown)}; roles: {', '.join(ROLES)}")
    return tuple(roles)


def _choice(default, choices, ref, renamed=None, roles=()):
    """`renamed`: {old name: new name} of choices that were renamed, so an old config says so."""
    return field(default=default, metadata={"choices": tuple(choices), "ref": ref,
                                            "renamed": renamed or {}, "roles": _roles(roles)})


def _value(default, ref, minimum=None, maximum=None, above=None, below=None, words=(), roles=()):
    """A value with its § (`ref`); bounds: `minimum`/`maximum` inclusive, `above`/`below`
    exclusive; `words`: strings an int field also takes (e.g. "auto")."""
    return field(default=default, metadata={"ref": ref, "min": minimum, "max": maximum,
                                            "above": above, "below": below, "words": words,
                                            "roles": _roles(roles)})


class _Section:
    """A config section checks its own values when it is made, whatever makes it (YAML, overrides,
    a checkpoint, `dataclasses.replace`, Python code): types, choices and bounds are validated here
    once, so the modules that use a value never check it again."""

    def __post_init__(self):
        hints, section = _hints(type(self)), _section_names().get(type(self), "")
        for f in dataclasses.fields(self):
            key = f"{section}.{f.name}" if section else f.name
            try:
                value = _check(getattr(self, f.name), hints[f.name], f, key)
            except ConfigError as err:
                raise ConfigError(str(err), err.key or key) from None
            object.__setattr__(self, f.name, value)


@functools.cache
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


@functools.cache
def _section_names() -> dict:
    """{section class: its name in RunConfig} ({ModelConfig: "model", …})."""
    return {cls: name for name, cls in _hints(RunConfig).items()}


@dataclass(frozen=True)
class ModelConfig(_Section):
    """The network (§3, Fig. 2) and its ablations (§3.2–§3.4, §4.2, §7)."""

    arch: str = _choice("alexnet", ("alexnet", "cifar10_4layer"),
                        "§3: the paper's network; cifar10_4layer = the Figure 1 net (§3.1, "
                        "inferred from the author's layers-80sec config, docs/paper.md §9)")
    layout: str = _choice("two_towers", ("two_towers", "one_tower_half", "one_tower"),
                          "§3.2: two towers (paper); one_tower_half = the one-GPU control "
                          "(half the kernels in conv1-4, conv5 and FC full size); one_tower = "
                          "full widths in a single tower (course notes, docs/paper.md §10)")
    input_size: int = _value(224, "§3.5 / docs/paper.md §2: 224 crops (paper); 227 = Caffe's crops; "
                             "32 = CIFAR-10 as is for the Figure 1 net (cifar10_4layer)", 32,
                             roles=("input",))
    conv1_padding: str = _choice("alex", ("alex", "none", "1", "2"),
                                 "docs/paper.md §2: alex = zero-pad right/bottom so the last 11x11 "
                                 "window fits (cuda-convnet's ceil arithmetic; 224 and 227 both "
                                 "give 55); none = Caffe; 1 = course notes; 2 = torchvision")
    in_channels: int = _value(3, "§2: RGB input", 1, roles=("input",))
    num_classes: int = _value(1000, "§2: ILSVRC has 1000 classes", 2, roles=("input",))
    activation: str = _choice("relu", ("relu", "tanh"), "§3.1: ReLU; tanh for Figure 1")
    lrn: str = _choice("cuda-convnet", ("cuda-convnet", "as-printed", "caffe", "off"),
                       "§3.3: k=2, n=5, alpha=1e-4, beta=0.75 after conv1 and conv2; "
                       "cuda-convnet = the author's code (alpha/n on the sum of squares), "
                       "as-printed = alpha on the sum; docs/lrn.md",
                       renamed={"paper": "as-printed"})
    lrn_impl: str = _choice("fast", ("fast", "reference"),
                            "fast = our exact kernel; reference = the composite formula",
                            roles=("scale",))
    pooling: str = _choice("overlapping", ("overlapping", "non_overlapping"),
                           "§3.4: z=3, s=2 (overlapping); z=2, s=2 is the ablation")
    dropout: float = _value(0.5, "§4.2: p=0.5 on fc6 and fc7 outputs (0 = off)", 0.0,
                            below=1.0)
    removed_layer: str = _choice("none", ("none", "conv1", "conv2", "conv3", "conv4", "conv5"),
                                 "§7: removing any middle conv layer costs about 2% top-1")
    init: str = _choice("paper", ("paper", "caffe"),
                        "§5: N(0, 0.01), bias 1 in conv2, conv4, conv5, fc6, fc7; caffe = "
                        "bvlc_alexnet's std 0.005 in fc6/fc7 and bias 0.1")
    init_bias: float = _value(0.0, "Figure 1 net only: the initial bias of its hidden layers "
                              "(conv1-conv3, fc64); 0 = layers-80sec; §5 gives ImageNet ReLUs "
                              "bias 1 to speed up early learning")
    tanh_scale: tuple[float, ...] = _value((1.0, 1.0), "Figure 1 net only: [a, b] of the tanh "
                                           "unit a*tanh(b*x); [1, 1] = plain tanh (§3.1); "
                                           "[1.7159, 0.6667] = LeCun's scaled tanh")
    devices: tuple[str, ...] = _value(("auto",), "§3.2: towers on cuda:0 and cuda:1; 'auto' "
                                      "falls back to one GPU, then the CPU",
                                      roles=("resume", "eval", "scale"))


@dataclass(frozen=True)
class DataConfig(_Section):
    """Input pipeline and augmentation (§2, §4.1)."""

    pca_std: float = _value(0.1, "§4.1: alpha_i ~ N(0, 0.1) per image presentation (0 = off)",
                            0.0)
    pca_scale: str = _choice("sqrt_eigval", ("sqrt_eigval", "eigval"),
                             "§4.1 prints p_i*alpha_i*lambda_i; the author's code scales by "
                             "sqrt(lambda_i) in 0-255 units (unit-free); eigval = lambda_i with "
                             "pixels in [0,1] (fb.resnet.torch)")
    mean: str = _choice("center", ("center", "aligned"),
                        "§2: subtract the mean image; center = its central crop from every crop "
                        "(author's code); aligned = at the crop's own offset (Caffe)",
                        roles=("input",))
    geometry: str = _choice("crop", ("crop", "resize"),
                            "crop = §4.1 random 224 crops of the stored 256 image (eval: centre or "
                            "ten crops); resize = the whole stored image scaled to the model's "
                            "input size (small datasets: Fashion-MNIST to 224, CIFAR-10 as is)",
                            roles=("input",))
    flip: bool = _value(True, "§4.1: random horizontal reflections")
    backend: str = _choice("cpu", ("cpu", "gpu"),
                           "decode on CPU worker processes, or batched on the GPU",
                           roles=("eval", "scale"))
    workers: int | str = _value("auto", "CPU decode processes (0 = in the main process; auto = "
                                "min(4, the CPU cores this process may use))", 0,
                                words=("auto",), roles=("resume", "eval", "scale"))
    holdout: int = _value(10000, "images held out of train when schedule.signal_split is "
                          "train_holdout", 0, roles=("holdout", "scale"))


@dataclass(frozen=True)
class OptimConfig(_Section):
    """§5: SGD with momentum and weight decay, written the paper's way."""

    rule: str = _choice("paper", ("paper", "torch_sgd"),
                        "§5: v <- 0.9 v - 0.0005 eps w - eps grad; w <- w + v. torch_sgd keeps "
                        "v without eps (differs after every learning-rate drop)")
    lr: float = _value(0.01, "§5: initial learning rate 0.01", above=0.0, roles=("on_request",))
    momentum: float = _value(0.9, "§5: momentum 0.9", 0.0, below=1.0)
    weight_decay: float = _value(0.0005, "§5: weight decay 0.0005", 0.0)
    decay_biases: bool = _value(False, "§5 / author's configs: no weight decay on biases")
    bias_lr_scale: float = _value(1.0, "§5 gives one rate to all parameters; the author's layer "
                                  "configs give biases twice the weights' rate (epsB = 2 epsW): "
                                  "2.0", 0.0)
    batch_size: int = _value(128, "§5: batch of 128 examples (global, whatever the world size)",
                             1, roles=("scale",))


@dataclass(frozen=True)
class ScheduleConfig(_Section):
    """§5: divide the learning rate by 10 when the validation error stops improving, 3 times."""

    kind: str = _choice("plateau", ("plateau", "milestones"), "§5: plateau (paper) or fixed")
    factor: float = _value(0.1, "§5: divide by 10", above=0.0, below=1.0)
    max_drops: int = _value(3, "§5: reduced three times prior to termination", 0)
    patience: int = _value(2, "epochs without improvement before a drop (not in the paper)", 1)
    threshold: float = _value(0.001, "improvement in error that counts (not in the paper)", 0.0)
    milestones: tuple[int, ...] = _value((30, 60, 80), "epochs of the drops for kind=milestones")
    signal_split: str = _choice("val", ("val", "train_holdout"),
                                "§5: the paper watched the validation error", roles=("holdout",))


@dataclass(frozen=True)
class TrainConfig(_Section):
    """The loop: epochs, precision, logging and checkpoints (§5: about 90 epochs)."""

    epochs: int = _value(90, "§5: roughly 90 cycles through the training set", 1,
                         roles=("resume", "scale"))
    steps_per_epoch: int = _value(0, "0 = the whole training split each epoch", 0, roles=("scale",))
    seed: int = _value(0, "every random draw derives from (seed, epoch, index, rank)",
                       roles=("scale",))
    precision: str = _choice("auto", ("auto", "fp32", "bf16"),
                             "auto = fp32 on CPU, bf16 autocast on GPU", roles=("eval", "scale"))
    channels_last: bool = _value(True, "activations in channels_last (NHWC): faster on GPU and "
                                   "CPU, docs/speed.md", roles=("eval", "scale"))
    compile: bool = _value(False, "torch.compile the model", roles=("resume", "scale"))
    deterministic: bool = _value(False, "torch.use_deterministic_algorithms", roles=("scale",))
    log_every: int = _value(50, "steps between log lines (the only host syncs)", 1,
                            roles=("resume", "scale"))
    checkpoint_every: int = _value(1000, "steps between checkpoints (also one per epoch)", 1,
                                   roles=("resume", "scale"))
    keep_last: int = _value(3, "newest checkpoints kept (plus epoch milestones)", 1,
                            roles=("resume", "scale"))
    milestone_every: int = _value(10, "keep the checkpoint of every N-th epoch", 1,
                                  roles=("resume", "scale"))
    not_learning_epochs: int = _value(5, "report 'not learning' when the training loss stays at "
                                      "chance level, ln(classes), this many epochs in a row (not "
                                      "in the paper; 0 = off; run/watchdog.py)", 0,
                                      roles=("resume", "scale"))


@dataclass(frozen=True)
class EvalConfig(_Section):
    """§6: ten crops (4 corners + centre, and flips), softmax averaged; also the centre crop."""

    ten_crop: bool = _value(True, "§6: average softmax over 10 crops", roles=("resume", "eval"))
    batch_size: int = _value(128, "images per evaluation batch", 1,
                             roles=("resume", "eval", "scale"))


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def keys_with(role: str, cls=None, prefix: str = "") -> tuple[str, ...]:
    """The dotted keys whose field declares `role` (ROLES), in declaration order."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    cls = RunConfig if cls is None else cls
    hints, keys = typing.get_type_hints(cls), []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            keys += keys_with(role, hints[f.name], f"{prefix}{f.name}.")
        elif role in f.metadata.get("roles", ()):
            keys.append(prefix + f.name)
    return tuple(keys)


# --------------------------------------------------------------------------- building and checking

def _coerce(value, annotation, key):
    """Check one leaf value against its annotation; ints are accepted where floats are expected."""
    origin = typing.get_origin(annotation)
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(annotation)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value))
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str):
            # PyYAML (YAML 1.1) reads 1e-3 as a string: a float needs a dot there ('1.0e-3').
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if annotation is str:
        if isinstance(value, bool):
            value = "on" if value else "off"   # YAML 1.1 reads `lrn: off` as a boolean
        elif isinstance(value, int):
            value = str(value)      # choices such as conv1_padding "1" read from YAML as 1
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {annotation}")


def build(cls, values: dict | None, where: str = ""):
    """Make `cls` from a (nested) dict, rejecting unknown keys, wrong types and bad choices."""
    values = {} if values is None else values
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {values!r}", where or None)
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown key(s) {', '.join(prefix + k for k in unknown)}; "
                          f"valid keys here: {', '.join(fields)}", prefix + unknown[0])
    kwargs = {name: build(hints[name], value, f"{where}.{name}" if where else name)
              if dataclasses.is_dataclass(hints[name]) else value
              for name, value in values.items()}
    return cls(**kwargs)        # each section checks its own values (_Section)


def _check(value, hint, f: dataclasses.Field, key: str):
    """One leaf: its type, choices and bounds; errors name the key and the default."""
    meta = f.metadata
    if isinstance(value, str) and value in meta.get("words", ()):
        return value
    if meta.get("words"):
        hint = int         # an int that also takes words (`data.workers: auto`)
    value = _coerce(value, hint, key)
    default = f"; the default is {f.default!r}" if f.default is not dataclasses.MISSING else ""
    if "choices" in meta and value not in meta["choices"]:
        new = meta["renamed"].get(value)
        was = f" ({value!r} was renamed {new!r}: use {key}={new})" if new else ""
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(meta['choices'])}{was}")
    if meta.get("min") is not None and value < meta["min"]:
        raise ConfigError(f"{key}: {value!r} is below the minimum {meta['min']}{default}")
    if meta.get("max") is not None and value > meta["max"]:
        raise ConfigError(f"{key}: {value!r} is above the maximum {meta['max']}{default}")
    if meta.get("above") is not None and not value > meta["above"]:
        raise ConfigError(f"{key}: {value!r} must be above {meta['above']}{default}")
    if meta.get("below") is not None and not value < meta["below"]:
        raise ConfigError(f"{key}: {value!r} must be below {meta['below']}{default}")
    return value


def to_dict(cfg) -> dict:
    """Plain nested dict (tuples as lists) for YAML, JSON and checkpoints."""
    def plain(v):
        return list(v) if isinstance(v, tuple) else v
    return {f.name: (to_dict(getattr(cfg, f.name)) if dataclasses.is_dataclass(getattr(cfg, f.name))
                     else plain(getattr(cfg, f.name)))
            for f in dataclasses.fields(cfg)}


def flatten(values: dict, prefix: str = "") -> dict:
    """{"optim": {"lr": 0.01}} -> {"optim.lr": 0.01}: the dotted keys of the command line."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def differences(cfg, reference=None) -> dict:
    """{"section.key": [reference's value, cfg's value]} for every key of `cfg` whose value is not
    `reference`'s. Each is a RunConfig or its nested dict; `reference` defaults to the paper's
    config (RunConfig()). A key `reference` does not have differs, with None as its value there."""
    def flat(c):
        return flatten(c if isinstance(c, dict) else to_dict(c))
    ours, theirs = flat(cfg), flat(RunConfig() if reference is None else reference)
    return {k: [theirs.get(k), v] for k, v in ours.items() if k not in theirs or theirs[k] != v}


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """Apply `section.key=value` strings (values parsed as YAML scalars) to a nested dict copy."""
    values = yaml.safe_load(yaml.safe_dump(values)) or {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({err})") from None
        node = values
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if node.get(part) is None:      # a section left empty in the YAML file ("model:")
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        node[parts[-1]] = value
    return values


# The experiments' recipes (experiments/configs/*.yaml, package data of `experiments`), found by
# name from any directory.
RECIPE_DIR = Path(__file__).resolve().parent.parent / "experiments" / "configs"


def recipe_names() -> list[str]:
    """Every run recipe's name (its file stem in experiments/configs), sorted."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def find_config(name: str | Path) -> Path:
    """A config file given as a path, or a recipe given by name ("paper", "no_lrn.yaml"): the file
    itself when it exists or the name has a directory part, else experiments/configs/<name>.yaml,
    else a ConfigError that lists the recipes."""
    path = Path(name)
    if path.is_file() or len(path.parts) != 1:     # a path: read_yaml names what is wrong
        return path
    recipe = RECIPE_DIR / f"{path.name.removesuffix('.yaml')}.yaml"
    if recipe.is_file():                           # a bare name: a recipe, from any directory
        return recipe
    raise ConfigError(f"config {str(name)!r}: no such file, and no recipe of that name; pass a "
                      f"YAML file or a recipe: {', '.join(recipe_names())}")


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping (a path, or a recipe name: find_config) with safe_load; errors name
    the file."""
    path = find_config(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, got "
                          f"{type(values).__name__}")
    return values


def load(path: str | Path | None = None, overrides: list[str] = (), cls=RunConfig):
    """The config of a run: defaults (the paper) <- YAML file <- command-line overrides. An error
    says where the bad value came from: the command line (naming the override) or the file."""
    values = read_yaml(path) if path is not None else {}
    return build_with_overrides(cls, values, overrides, path)


def build_with_overrides(cls, values: dict, overrides=(), source=None):
    """`build(cls, values)` after the command-line `overrides`; an error names the override that
    set the bad key ("from the command line: optim.lr=0"), else `source` (the file it came from)."""
    values = apply_overrides(values, list(overrides))
    try:
        return build(cls, values)
    except ConfigError as err:
        culprit = [o for o in overrides if err.key is not None and _sets(o, err.key)]
        where = (f" (from the command line: {culprit[-1]})" if culprit
                 else f" (from {source})" if source is not None else "")
        raise ConfigError(f"{err}{where}", err.key) from None


def _sets(override: str, key: str) -> bool:
    """Whether `section.key=value` sets `key`, a section holding it, or a key below it."""
    name = override.split("=", 1)[0].strip()
    return name == key or key.startswith(name + ".") or name.startswith(key + ".")


def dump(cfg) -> str:
    """YAML text of a config, as written to the run directory and printed at start."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
