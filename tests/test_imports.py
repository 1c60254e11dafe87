"""Imports go one way (docs/ARCHITECTURE.md): experiments -> paper_alexnet -> data_prep; within
paper_alexnet, a module imports only its own layer or lower ones (the layer table of
docs/ARCHITECTURE.md, read from it); and no module of ours imports, even lazily inside a function,
a module that imports it back. Read from the source with `ast`, so every import statement counts,
wherever it stands."""
import ast
import re
from pathlib import Path

PACKAGES = ("data_prep", "paper_alexnet", "experiments")       # lowest first
ROOT = Path(__file__).resolve().parent.parent
KNOWN: set = set()   # circles allowed for now: none


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of our packages, subpackages included: dotted name -> file."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known) -> set[str]:
    """The modules of ours that `name` imports anywhere in its source. `from pkg import sub` is an
    import of pkg.sub when that is a module, else of pkg."""
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                out.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in out if m in known and m != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def circles(edges: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_the_checker_finds_a_circle_and_reads_relative_and_lazy_imports(tmp_path):
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert circles({"a": {"b"}, "b": set()}) == []
    source = tmp_path / "mod.py"
    source.write_text("from . import sibling\nfrom .pkg import thing\n"
                      "def f():\n    from top.other import name\n    import top.third\n")
    known = {"top.sibling", "top.pkg", "top.other", "top.third", "top.mod"}
    assert imports("top.mod", source, known) == {"top.sibling", "top.pkg", "top.other",
                                                 "top.third"}


def test_modules_are_found_in_subpackages_too(tmp_path):
    for rel in ("paper_alexnet/__init__.py", "paper_alexnet/model.py",
                "paper_alexnet/train/__init__.py", "paper_alexnet/train/loop.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    assert sorted(modules(tmp_path)) == ["paper_alexnet", "paper_alexnet.model",
                                         "paper_alexnet.train", "paper_alexnet.train.loop"]


def test_no_import_circles():
    found = [c for c in circles(graph()) if frozenset(c) not in KNOWN]
    assert not found, f"modules that import each other: {found}"


def test_imports_go_one_way():
    """data_prep imports neither paper_alexnet nor experiments (nor torch); paper_alexnet does not
    import experiments (the `alexnet` dispatcher names verbs' modules as strings only)."""
    wrong = []
    for name, targets in graph().items():
        lower = PACKAGES[:PACKAGES.index(name.split(".")[0]) + 1]
        wrong += [f"{name} -> {t}" for t in targets if t.split(".")[0] not in lower]
    assert not wrong, wrong
    for path in (ROOT / "data_prep").rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                 for a in n.names}
        names |= {(n.module or "").split(".")[0] for n in ast.walk(tree)
                  if isinstance(n, ast.ImportFrom)}
        assert "torch" not in names, path.name      # small.py's --download imports torchvision


def layers(text: str) -> dict[str, int]:
    """{module: layer number, lowest 0} from the layer table of docs/ARCHITECTURE.md (rows
    `| layer | `mod`, `mod` | … |` under the heading that names the layers)."""
    found, inside = {}, False
    for line in text.splitlines():
        if line.startswith("## "):
            inside = "layers of `paper_alexnet`" in line
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if inside and line.startswith("|") and len(cells) >= 2 and "`" in cells[1]:
            layer = len({n for n in found.values()})
            for name in re.findall(r"`([\w.]+)`", cells[1]):
                found["paper_alexnet" if name == "paper_alexnet" else f"paper_alexnet.{name}"] = \
                    layer
    return found


def upward(edges: dict[str, set[str]], layer: dict[str, int]) -> list[str]:
    """The imports of paper_alexnet that go to a higher layer, and the modules with no layer."""
    ours = [m for m in edges if m.split(".")[0] == "paper_alexnet"]
    wrong = [f"{m} has no row in the layer table of docs/ARCHITECTURE.md" for m in ours
             if m not in layer]
    return wrong + [f"{m} ({layer[m]}) -> {t} ({layer[t]})" for m in ours if m in layer
                    for t in sorted(edges[m]) if t in layer and layer[t] > layer[m]]


def test_the_layer_checker_finds_an_upward_import_and_a_module_without_a_layer():
    table = ("## Where each thing is: the layers of `paper_alexnet`\n| layer | modules | x |\n"
             "|---|---|---|\n| low | `config` | a |\n| high | `model`, `lrn` | b |\n"
             "## Next\n| not | `train` | c |\n")
    layer = layers(table)
    assert layer == {"paper_alexnet.config": 0, "paper_alexnet.model": 1, "paper_alexnet.lrn": 1}
    edges = {"paper_alexnet.model": {"paper_alexnet.config", "paper_alexnet.lrn"},
             "paper_alexnet.config": {"paper_alexnet.model"}, "paper_alexnet.lrn": set(),
             "paper_alexnet.train": set()}
    assert upward(edges, layer) == [
        "paper_alexnet.train has no row in the layer table of docs/ARCHITECTURE.md",
        "paper_alexnet.config (0) -> paper_alexnet.model (1)"]


def test_paper_alexnet_imports_only_its_own_layer_or_lower_ones():
    layer = layers((ROOT / "docs" / "ARCHITECTURE.md").read_text())
    edges = graph()
    assert set(layer) <= set(edges), sorted(set(layer) - set(edges))   # no row names a lost file
    assert not upward(edges, layer), upward(edges, layer)
