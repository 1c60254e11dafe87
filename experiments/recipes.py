"""The experiments' recipes: small YAML files under experiments/configs/, each the paper's config
(config.py's defaults) plus the few keys that make the experiment (§6-§8, Figure 1, docs/paper.md
§10).

`load_recipe(name, overrides)` is `config.load(name, overrides)` (config.find_config finds a recipe
by name, config.recipe_names lists them); `load_variant(base, variant, overrides)` puts an
ablation's one change on another recipe (the ablations on Imagewoof); `config_diff(cfg)` names
what a run's config changes from the paper, which is how reports recognise a run's variant
without trusting its directory name.
"""
from __future__ import annotations

from paper_alexnet import config


def load_recipe(name: str, overrides=()) -> config.RunConfig:
    """The run config of a recipe: defaults (the paper) <- recipe file <- overrides."""
    return config.load(name, list(overrides))


def _merge(base: dict, changes: dict) -> dict:
    """`base` with every key of `changes` set (nested sections merged, not replaced)."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            value = _merge(out[key], value)
        out[key] = value
    return out


def load_variant(base: str, variant: str, overrides=()) -> config.RunConfig:
    """The run config of ablation `variant` (a recipe that is the paper plus one change) on the
    recipe `base`: defaults <- base <- the variant's keys <- overrides. Where both set a key the
    variant's value wins: its change is the experiment. On base "paper" it is the variant recipe
    itself."""
    if variant == base:
        return load_recipe(base, overrides)
    values = _merge(config.read_yaml(base), config.read_yaml(variant))
    return config.build_with_overrides(config.RunConfig, values, list(overrides),
                                       f"{base} + {variant}")


def header(name: str) -> str:
    """The comment block a recipe opens with (what it tests, §, number, command, cost)."""
    lines = []
    for line in config.find_config(name).read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip() if line[1:2] == " " else line[1:])
    return "\n".join(lines)


def config_diff(cfg, reference=None) -> dict:
    """{"section.key": value} for every value of `cfg` (a RunConfig or its dict) that differs from
    `reference` (default: the paper's config)."""
    return {k: new for k, (_, new) in config.differences(cfg, reference).items()}


# How long or how a run is carried out, not what it is (config.ROLES "scale"): ignored when
# matching a run to its recipe (a tiny-scale run of no_lrn is still no_lrn).
SCALE_KEYS = config.keys_with("scale")


def _essential(diff: dict) -> dict:
    return {k: v for k, v in diff.items() if k not in SCALE_KEYS}


def match_recipe(cfg) -> str | None:
    """The recipe whose changes from the paper equal the run's, scale keys ignored (None if none).
    "paper" and "ilsvrc2010" have the same config; "paper" is returned."""
    ours = _essential(config_diff(cfg))
    for name in config.recipe_names():
        if name != "ilsvrc2010" and _essential(config_diff(load_recipe(name))) == ours:
            return name
    return None


def describe(cfg) -> str:
    """A run's variant in words: the recipe whose changes it contains (the most of them), plus
    any further non-scale changes, e.g. "no_lrn + model.input_size=99"."""
    ours = _essential(config_diff(cfg))
    best, best_diff = "paper", {}
    for name in config.recipe_names():
        theirs = _essential(config_diff(load_recipe(name)))
        if name != "ilsvrc2010" and len(theirs) > len(best_diff) and \
                all(ours.get(k, object()) == v for k, v in theirs.items()):
            best, best_diff = name, theirs
    extra = [f"{k}={v}" for k, v in sorted(ours.items()) if k not in best_diff]
    return " + ".join([best, *extra])
