"""`alexnet config [--recipe NAME] [section.key=value …] [SECTION | KEY …]`: every config key with
its value (the paper's default, or the recipe's), what it may be set to and the § of the paper it
comes from (docs/ARCHITECTURE.md decisions 2 and 3) — the way to find options without reading
config.py. Keys whose value differs from the paper are marked `*`.
"""
from __future__ import annotations

import argparse
import dataclasses
import textwrap
import typing

from data_prep import exits
from paper_alexnet import config


WIDTH = 100


def show_value(value) -> str:
    """A value as it is written on the command line or in a recipe: [a, b], true, 0.01."""
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(show_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def allowed(annotation, meta: dict) -> str:
    """What a key may be set to, in words: "one of: a, b", "a number >= 0.0", …"""
    if "choices" in meta:
        return "one of: " + ", ".join(meta["choices"])
    if typing.get_origin(annotation) is tuple:
        item = typing.get_args(annotation)[0]
        return "a list of " + {int: "integers", float: "numbers"}.get(item, "strings")
    words = meta.get("words", ())
    if words:
        annotation = int   # an integer that also takes words (data.workers: auto)
    text = {bool: "true or false", int: "an integer", float: "a number",
            str: "a string"}[annotation]
    bounds = [f">= {meta['min']}" if meta.get("min") is not None else "",
              f"<= {meta['max']}" if meta.get("max") is not None else "",
              f"> {meta['above']}" if meta.get("above") is not None else "",
              f"< {meta['below']}" if meta.get("below") is not None else ""]
    return " ".join([text, *[b for b in bounds if b]]) + "".join(f", or {w}" for w in words)


def describe(cfg: config.RunConfig, only: list[str] = ()) -> list[str]:
    """Per key: `[*] section.key = value  (paper: default)`, what it may be, its §, and its roles
    (config.ROLES: what it means for resume, evaluation and recipes) when it has any."""
    paper = config.RunConfig()
    lines = []
    for section, cls in typing.get_type_hints(config.RunConfig).items():
        hints = typing.get_type_hints(cls)
        keys = [f for f in dataclasses.fields(cls)
                if not only or any(f"{section}.{f.name}" == o or section == o for o in only)]
        if keys:
            lines += ["", f"{section}: {cls.__doc__.strip()}"]
        for f in keys:
            value, default = getattr(getattr(cfg, section), f.name), \
                getattr(getattr(paper, section), f.name)
            changed = value != default
            lines.append(f"{'*' if changed else ' '} {section}.{f.name} = {show_value(value)}"
                         + (f"   (paper: {show_value(default)})" if changed else ""))
            roles = [f"{r}: {config.ROLES[r]}" for r in f.metadata["roles"]]
            for text in (allowed(hints[f.name], f.metadata), f.metadata["ref"], *roles):
                lines += textwrap.wrap(text, WIDTH, initial_indent=" " * 6,
                                       subsequent_indent=" " * 8)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="alexnet config", description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", help="a recipe name (experiments/configs: paper, no_lrn, …) "
                        "or a config YAML file (default: none, the paper's config)")
    parser.add_argument("items", nargs="*", metavar="section.key=value | SECTION | KEY",
                        help="overrides to apply (as for `alexnet train`), and sections or keys "
                        "to show (default: every key)")
    args = parser.parse_args(argv)
    overrides = [i for i in args.items if "=" in i]
    only = [i for i in args.items if "=" not in i]
    sections = typing.get_type_hints(config.RunConfig)
    known = set(sections) | set(config.flatten(config.to_dict(config.RunConfig())))
    unknown = [o for o in only if o not in known]
    def work():
        if unknown:
            raise exits.UsageError(f"unknown section or key {unknown[0]!r}; sections: "
                                   f"{', '.join(sections)} (run `alexnet config` for every key)")
        cfg = config.load(args.recipe, overrides)
        source = "the paper's defaults"
        if args.recipe:
            path = config.find_config(args.recipe)
            source = (f"recipe {args.recipe} ({path.name})" if path.parent == config.RECIPE_DIR
                      else f"the file {path}" + (f" (a file wins over the recipe {args.recipe})"
                                                 if args.recipe in config.recipe_names() else ""))
        print(textwrap.fill(f"Config from {source}" + (f" with {' '.join(overrides)}"
                                                       if overrides else "")
                            + "; * = differs from the paper. Set a key on the command line of "
                            "`alexnet train` (section.key=value) or in a recipe YAML.", WIDTH))
        print("\n".join(describe(cfg, only)))
    return exits.run("alexnet config", work, usage=(config.ConfigError,))

if __name__ == "__main__":
    raise SystemExit(main())
