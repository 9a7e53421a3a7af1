"""Imports point one way: data -> models -> settings -> train -> evaluate -> report -> run ->
experiments -> interfaces. Every import counts, function-level and `if TYPE_CHECKING:` ones
included; cycles fail too. Prediction (evaluate/, models/, cnnlab.load) never reaches train/."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from conftest import write_pattern_npy

SRC = Path(__file__).resolve().parents[1] / "src" / "cnnlab"

# Lower number = lower layer. A module may import its own layer or any lower one.
LAYERS = {
    "errors": 0, "console": 0, "io": 0, "device": 0, "checkpoint": 0, "csvsafe": 0, "version": 0,
    "urls": 0, "choices": 0, "htmlkit": 0,
    "data": 1,
    "models": 2,
    "settings": 3, "settings_file": 3,
    "train": 4,
    "evaluate": 5,
    "report": 6,
    "run": 7, "export": 7, "doctor": 7,
    "experiments": 8,
    "cli": 9, "api": 9, "notebook": 9, "estimator": 9, "compat": 9, "__init__": 9, "__main__": 9,
}


def module_name(path: Path) -> str:
    """cnnlab.a.b for src/cnnlab/a/b.py (packages: their __init__ as the package)."""
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> int:
    """The layer of a cnnlab module, from its first component under cnnlab."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    assert top in LAYERS, f"{module}: add its top-level name to LAYERS in tests/test_layers.py"
    return LAYERS[top]


def imports_of(path: Path, modules: set[str], me: str | None = None,
               typing: bool = True) -> set[str]:
    """cnnlab modules imported anywhere in the file (function bodies too; `if TYPE_CHECKING:`
    blocks unless typing=False)."""
    tree = ast.parse(path.read_text(), str(path))
    me = me or module_name(path)
    pkg = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in (ast.walk(tree) if typing else _runtime_nodes(tree)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("cnnlab"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = pkg.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if not base.startswith("cnnlab"):
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.add(sub if sub in modules else base)
    return {m for m in found if m != me}


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under `if TYPE_CHECKING:` (annotations only, never imported)."""
    out, stack = [], [tree]
    while stack:
        node = stack.pop()
        out.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and getattr(child.test, "id", "") == "TYPE_CHECKING":
                stack.extend(child.orelse)
                continue
            stack.append(child)
    return out


def graph(typing: bool = True) -> dict[str, set[str]]:
    """Module -> the cnnlab modules it imports (typing=False: those imported when it runs)."""
    files = sorted(SRC.rglob("*.py"))
    modules = {module_name(f) for f in files}
    return {module_name(f): imports_of(f, modules, typing=typing) for f in files}


def package_of(module: str) -> str:
    """cnnlab.train.trainer -> cnnlab.train; cnnlab.api -> cnnlab.api; cnnlab -> cnnlab."""
    return ".".join(module.split(".")[:2])


def test_no_upward_import() -> None:
    bad = []
    for mod, deps in graph().items():
        for dep in deps:
            if layer_of(dep) > layer_of(mod):
                bad.append(f"{mod} (layer {layer_of(mod)}) -> {dep} (layer {layer_of(dep)})")
    assert not bad, "upward imports:\n" + "\n".join(sorted(bad))


def cycles_of(g: dict[str, set[str]]) -> list[set[str]]:
    """The import cycles (strongly connected components of more than one module) of g."""
    # A package's __init__ re-exporting its own modules is not a cycle of meaning.
    edges = {m: {d for d in deps if d in g and not m.startswith(d + ".")}
             for m, deps in g.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[set[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(comp)

    for v in edges:
        if v not in index:
            visit(v)
    return cycles


def _show(cycles: list[set[str]]) -> str:
    return "; ".join(" <-> ".join(sorted(c)) for c in cycles)


def test_no_import_cycle() -> None:
    runtime = cycles_of(graph(typing=False))
    assert not runtime, "import cycles: " + _show(runtime)
    typed = cycles_of(graph())
    assert not typed, "import cycles (TYPE_CHECKING imports counted): " + _show(typed)


def test_no_import_cycle_between_packages() -> None:
    packages: dict[str, set[str]] = {}
    for mod, deps in graph().items():
        mine = packages.setdefault(package_of(mod), set())
        mine.update(package_of(d) for d in deps if package_of(d) != package_of(mod))
    cycles = cycles_of(packages)
    assert not cycles, "import cycles between packages: " + _show(cycles)


def test_the_checker_counts_type_checking_imports(tmp_path: Path) -> None:
    f = tmp_path / "x.py"
    f.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                 "    from cnnlab.train.trainer import Trainer\n")
    modules = {"cnnlab.train.trainer"}
    assert imports_of(f, modules, "cnnlab.models.x") == {"cnnlab.train.trainer"}
    assert imports_of(f, modules, "cnnlab.models.x", typing=False) == set()
    assert cycles_of({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [{"a", "b"}]


def test_prediction_code_has_no_edge_to_training() -> None:
    training = ("cnnlab.train", "cnnlab.run")
    bad = sorted(f"{mod} -> {dep}" for mod, deps in graph().items()
                 if mod.startswith(("cnnlab.evaluate", "cnnlab.models"))
                 for dep in deps if dep == training[0] or dep.startswith(training))
    assert not bad, "prediction imports training: " + ", ".join(bad)


PREDICT = """
import json, sys
import numpy as np
import cnnlab
model = cnnlab.load(sys.argv[1])
x = np.load(sys.argv[2])
labels = model.predict(x)
print(json.dumps({"n": len(labels), "classes": model.classes,
                  "training": sorted(m for m in sys.modules
                                     if m.split(".")[:2] in (["cnnlab", "train"],
                                                             ["cnnlab", "run"]))}))
"""


def test_load_and_predict_never_import_the_training_code(tmp_path: Path) -> None:
    import cnnlab

    data = write_pattern_npy(tmp_path / "pat", 10)
    run = cnnlab.train(str(data), epochs=1, batch_size=8, out=str(tmp_path / "run"),
                       report=False, verbose=False, device="cpu")
    done = subprocess.run([sys.executable, "-c", PREDICT, str(run.run_dir),
                           str(data / "pat_test_images.npy")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["n"] == 8 and seen["classes"] == ["0", "1", "2"], seen
    assert seen["training"] == [], seen


def test_the_checker_sees_function_level_imports(tmp_path: Path) -> None:
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from cnnlab.report import html\n")
    assert imports_of(f, {"cnnlab.report.html"}, "cnnlab.data.x") == {"cnnlab.report.html"}

