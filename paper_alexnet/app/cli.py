"""One command line, `alexnet <verb>` (docs/ARCHITECTURE.md decision 8). Each verb lives in its own
module and is imported only when asked for, so `alexnet prep` runs without torch."""
from __future__ import annotations

import importlib
import sys
import warnings

# verb -> (module, one-line help). Each module has main(argv) -> int.
VERBS = {
    "demo": ("experiments.demo", "synthetic data -> prep -> train -> eval -> report, on any CPU"),
    "config": ("paper_alexnet.app.show_config",
               "every config key: its value, what it may be, its §"),
    "summary": ("paper_alexnet.app.summary",
                "per-tower, per-layer shapes, parameters, multiply-adds"),
    "prep": ("data_prep.__main__", "prepare ImageNet / CIFAR-10 / Fashion-MNIST / synthetic data"),
    "train": ("paper_alexnet.train", "train a network from a config into a run directory"),
    "eval": ("paper_alexnet.evaluate", "top-1/top-5 error, centre crop and ten crops, ensembles"),
    "experiment": ("experiments.cli", "the paper's experiments: reproduce, ablate, relu-vs-tanh"),
    "report": ("experiments.report_cli", "regenerate the report of run directories"),
    "bench": ("experiments.bench", "speed: LRN, train step, input pipeline, end to end"),
}


def usage() -> str:
    lines = ["usage: alexnet <verb> [options]   (alexnet <verb> --help for a verb's options)", ""]
    lines += [f"  {verb:<11} {text}" for verb, (_, text) in VERBS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        print(f"alexnet: unknown verb {verb!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(VERBS[verb][0])
    with warnings.catch_warnings():          # puts Python's own display back afterwards
        warnings.showwarning = one_line_warnings(verb)
        return int(module.main(rest) or 0)


def one_line_warnings(verb: str):
    """A `warnings.showwarning` that prints "alexnet VERB: WARNING: message", the style of every
    other line on stderr, instead of Python's "file:line: UserWarning: …" and the source line;
    a warning of another kind than UserWarning (torch's, numpy's) keeps its kind."""
    def show(message, category, filename, lineno, file=None, line=None):
        kind = "" if category is UserWarning else f" ({category.__name__})"
        (file or sys.stderr).write(f"alexnet {verb}: WARNING: {message}{kind}\n")
    return show
