"""Imports point one way: data -> models -> train -> evaluate -> report -> run -> experiments ->
interfaces. Every import counts, function-level ones included; cycles fail too."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "cnnlab"

# Lower number = lower layer. A module may import its own layer or any lower one.
LAYERS = {
    "errors": 0, "console": 0, "io": 0, "device": 0, "checkpoint": 0, "csvsafe": 0, "version": 0,
    "urls": 0, "choices": 0,
    "data": 1,
    "models": 2,
    "train": 3,
    "evaluate": 4,
    "report": 5,
    "run": 6, "export": 6, "doctor": 6,
    "experiments": 7,
    "cli": 8, "api": 8, "notebook": 8, "estimator": 8, "compat": 8, "__init__": 8, "__main__": 8,
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


def imports_of(path: Path, modules: set[str], me: str | None = None) -> set[str]:
    """cnnlab modules imported anywhere in the file (function bodies too)."""
    tree = ast.parse(path.read_text(), str(path))
    me = me or module_name(path)
    pkg = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in _runtime_nodes(tree):
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


def graph() -> dict[str, set[str]]:
    """Module -> the cnnlab modules it imports."""
    files = sorted(SRC.rglob("*.py"))
    modules = {module_name(f) for f in files}
    return {module_name(f): imports_of(f, modules) for f in files}


def test_no_upward_import() -> None:
    bad = []
    for mod, deps in graph().items():
        for dep in deps:
            if layer_of(dep) > layer_of(mod):
                bad.append(f"{mod} (layer {layer_of(mod)}) -> {dep} (layer {layer_of(dep)})")
    assert not bad, "upward imports:\n" + "\n".join(sorted(bad))


def test_no_import_cycle() -> None:
    g = graph()
    # A package's __init__ re-exporting its own modules is not a cycle of meaning.
    edges = {m: {d for d in deps if d in g and not m.startswith(d + ".")}
             for m, deps in g.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []
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
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_checker_sees_function_level_imports(tmp_path: Path) -> None:
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from cnnlab.report import html\n")
    assert imports_of(f, {"cnnlab.report.html"}, "cnnlab.data.x") == {"cnnlab.report.html"}


def test_load_options_defaults_are_the_settings_defaults() -> None:
    # The data layer cannot import the settings (a layer above it), so LoadOptions keeps its own
    # defaults for direct callers; they must equal the settings' definitions.
    from cnnlab.data.load import LoadOptions
    from cnnlab.train.settings import data_options

    plain, derived = LoadOptions(), data_options({})
    for name in ("format", "image_size", "channels", "resize", "val_split", "test_split",
                 "seed", "task", "image_dir", "columns", "skip_bad", "layout", "crop_size",
                 "value_range"):
        assert getattr(plain, name) == getattr(derived, name), name
