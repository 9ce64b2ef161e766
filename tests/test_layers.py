"""The package's layers import downward only, and kernels are chosen at one seam.

    kernels -> core (backend, tensor, autograd, random, files) -> functional
            -> nn, optim, data, plots, utils -> models -> train -> cli

The only cycle allowed is Tensor <-> functional (a Tensor's methods are the functional ops). A
kernel module of one device (``tinygen.kernels.cpu.*``, ``tinygen.kernels.cuda.*``) is imported
only by the dispatcher ``tinygen.kernels`` (``kernels.for_arrays``) and by tests (the backend may
reach CuPy through ``tinygen.kernels.cuda._runtime``, the one module that imports it); ``nn`` and
``models`` never import ``tinygen.kernels`` at all. The test reads every import statement of
the package (module level and inside functions) with ``ast``.
"""
from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

# layer rank of each top-level part of the package (tinygen.<part>); higher imports lower
RANKS = {
    "kernels": 0,
    "backend": 1, "_memory": 1, "_fileio": 1, "random": 1, "tensor": 1, "autograd": 1,
    "serialization": 1, "checkpoint": 1, "cuda": 1, "backends": 1,
    "functional": 2,
    "nn": 3, "optim": 3, "data": 3, "plots": 3, "utils": 3, "saveload": 3, "distributions": 3,
    "models": 4,
    "train": 5,
    "cli": 6, "demo": 6, "__main__": 6, "__init__": 6,
}
CYCLE_OK = {("tensor", "functional"), ("autograd", "functional")}


def _modules():
    """(dotted name, path) of every module of the installed package tinygen (+ tinygen.kernels)."""
    for path in sorted((ROOT / "tinygen").rglob("*.py")):
        rel = path.relative_to(ROOT / "tinygen").with_suffix("")
        yield "tinygen." + ".".join(rel.parts), path
    for path in sorted((ROOT / "kernels").rglob("*.py")):
        rel = path.relative_to(ROOT / "kernels").with_suffix("")
        yield "tinygen.kernels." + ".".join(rel.parts), path


def _imports(name, path):
    """Absolute dotted names imported by module ``name`` (relative imports resolved)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    if path.name == "__init__.py":
        package = package[:-1] if package[-1] == "__init__" else package
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if node.module:
                yield mod, node.lineno
            for alias in node.names:      # "from . import plots" imports tinygen.plots
                yield f"{mod}.{alias.name}", node.lineno


def _part(dotted):
    """The top-level part of ``tinygen.<part>...`` (None outside tinygen)."""
    parts = dotted.split(".")
    if parts[0] != "tinygen" or len(parts) == 1:   # not ours, or the bare package namespace
        return None
    if len(parts) == 1:
        return "__init__"
    return parts[1]


def _violations():
    found = []
    for name, path in _modules():
        src = _part(name) if not name.endswith(".__init__") or name.count(".") > 1 else "__init__"
        if name == "tinygen.__init__":
            src = "__init__"
        for target, line in _imports(name, path):
            dst = _part(target)
            if dst is None or dst not in RANKS:
                continue
            where = f"{path.relative_to(ROOT)}:{line} imports {target}"
            parts = target.split(".")
            device_kernel = (len(parts) > 3 and parts[1] == "kernels" and
                             parts[2] in ("cpu", "cuda") and parts[3] != "_runtime")
            if device_kernel and not name.startswith("tinygen.kernels"):
                found.append(f"{where}: a device's kernels are chosen only by tinygen.kernels")
            if src in ("nn", "models") and dst == "kernels":
                found.append(f"{where}: {src} never imports kernels")
            if RANKS[dst] > RANKS[src] and (src, dst) not in CYCLE_OK:
                found.append(f"{where}: layer {src} (rank {RANKS[src]}) imports upward into "
                             f"{dst} (rank {RANKS[dst]})")
    return found


def test_every_part_of_the_package_has_a_layer():
    parts = {p.name.removesuffix(".py") for p in (ROOT / "tinygen").iterdir()
             if p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())}
    assert parts <= set(RANKS), f"give these a layer in RANKS: {sorted(parts - set(RANKS))}"


def test_imports_point_down_and_kernels_are_chosen_at_the_seam():
    found = _violations()
    assert not found, "\n".join(found)


@pytest.mark.parametrize("source, message", [
    ("from ..train.loop import Phase\n", "imports upward"),
    ("from ..kernels.cpu import conv\n", "chosen only by tinygen.kernels"),
    ("from .. import kernels\n", "never imports kernels"),
])
def test_the_checker_catches_a_planted_import(tmp_path, monkeypatch, source, message):
    """A model file with a bad import is reported (the check can fail)."""
    bad = ROOT / "tinygen" / "models" / "_planted_import_check.py"
    assert not bad.exists()
    bad.write_text(source)
    try:
        found = _violations()
    finally:
        bad.unlink()
    assert any("_planted_import_check.py" in f and message in f for f in found), found


def test_every_relative_import_names_a_module_of_the_package():
    """A relative import that names no module (e.g. ``from .scoring import x`` one package too
    deep) fails only when that line runs; this finds it statically, lazy imports included."""
    modules = {n[:-len(".__init__")] if n.endswith(".__init__") else n for n, _ in _modules()}
    missing = []
    for name, path in _modules():
        tree = ast.parse(path.read_text(), str(path))
        package = name.split(".")[:-1]
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level and node.module:
                base = package[:len(package) - node.level + 1]
                target = ".".join(base + [node.module])
                if target not in modules:
                    missing.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {target}")
    assert not missing, "\n".join(missing)


def _import_graph():
    """Module -> the package modules it imports (module level and inside functions)."""
    modules = {n[:-len(".__init__")] if n.endswith(".__init__") else n: p for n, p in _modules()}
    graph = {}
    for name, path in _modules():
        node = name[:-len(".__init__")] if name.endswith(".__init__") else name
        deps = set()
        for target, _ in _imports(name, path):
            parts = target.split(".")
            while parts and ".".join(parts) not in modules:
                parts.pop()
            if parts:
                deps.add(".".join(parts))
        deps.discard(node)
        graph[node] = deps
    return graph


def _cycles(graph):
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_no_import_cycle_but_tensor_and_functional():
    allowed = ("tinygen.tensor", "tinygen.autograd", "tinygen.functional")
    bad = [c for c in _cycles(_import_graph())
           if not all(m.startswith(allowed) for m in c)]
    assert not bad, "import cycles: " + "; ".join(" <-> ".join(c) for c in bad)


def test_the_cycle_finder_finds_a_planted_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
