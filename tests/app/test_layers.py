"""app/ is layered: each sub-package imports only the layers its docstring names, model/ never
imports app/, and the module-level import graph has no circle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# what each layer may import from inside app/ (itself always allowed)
ALLOWED = {
    "app.wire": set(),
    "app.process": set(),
    "app.edge": {"app.wire", "app.process.randomness", "app.metrics"},
    "app.serving": {"app.wire", "app.config", "app.errors", "app.metrics"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, top_level_only: bool) -> set[str]:
    """Absolute module names imported by a file (every import, or only those run at import time)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # "from app.wire import encoding" imports the module app.wire.encoding
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_model_never_imports_app() -> None:
    offenders = {module_name(p): sorted(i for i in imports(p, False) if within(i, "app")) for p in sources("model")}
    assert {m: i for m, i in offenders.items() if i} == {}


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_what_its_docstring_allows(layer: str) -> None:
    package_dir = ROOT / Path(*layer.split("."))
    assert package_dir.is_dir(), layer
    offenders: dict[str, list[str]] = {}
    for path in sources(str(package_dir.relative_to(ROOT))):
        bad = [
            name
            for name in imports(path, False)
            if within(name, "app") and name != "app" and not within(name, layer) and not any(within(name, ok) for ok in ALLOWED[layer])
        ]
        if bad:
            offenders[module_name(path)] = sorted(bad)
    assert offenders == {}


def test_nothing_below_routes_imports_routes() -> None:
    offenders = [
        module_name(p)
        for p in sources("app")
        if not within(module_name(p), "app.routes") and module_name(p) != "app.main"
        if any(within(i, "app.routes") for i in imports(p, False))
    ]
    assert offenders == []


def test_module_level_import_graph_has_no_circle() -> None:
    paths = sources("app") + sources("model")
    known = {module_name(p) for p in paths}
    graph = {module_name(p): {i for i in imports(p, True) if i in known and i != module_name(p)} for p in paths}

    state: dict[str, int] = {}  # 1 on the current path, 2 done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert cycles == []


def test_the_checker_sees_a_layer_violation(tmp_path: Path) -> None:
    # the checker itself: an edge module importing the serving core is caught
    bad = tmp_path / "bad.py"
    bad.write_text("from app.serving.worker import Worker\n")
    found = imports(bad, False)
    assert "app.serving.worker" in found
    assert not any(within(n, ok) for n in found if within(n, "app") for ok in ALLOWED["app.edge"] | {"app.edge"})
