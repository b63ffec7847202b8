"""The import contract of ``src/napari_klip``: rooms that only import downward, and no cycles.

Every ``import`` statement counts — at module level, inside functions and under ``TYPE_CHECKING``
— so that function-local imports cannot hide a cycle again. The layers (``docs/architecture.md``):

* ``core`` imports nothing of napari-klip outside ``core`` (the package root only for its version);
* ``api`` imports ``core`` and ``api``;
* ``cluster`` (Dask scoring) imports ``core``, ``api`` and ``cluster``;
* ``plugin`` imports ``core``, ``api`` and ``plugin``; ``cli`` imports ``core``, ``api``, ``cluster``,
  ``cli`` and ``plugin.demo`` (``napari-klip demo --gui``);
* ``core`` never imports Qt, napari or magicgui; ``api`` and ``cluster`` never import Qt or magicgui
  (``cluster`` not napari either).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "napari_klip"
ROOT = "napari_klip"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _imports(module: str) -> list[tuple[str, int]]:
    """``(imported module, line)`` for every import statement of ``module`` (all of them, anywhere)."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    package = module if _is_package(module) else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.append((candidate if candidate in MODULES else target, node.lineno))
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for module in MODULES:
        for target, _ in _imports(module):
            if target in MODULES and target != module:
                graph[module].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ("core", "api", "cluster", "cli", "plugin") else "root"


ALLOWED = {
    "core": {"core", "root:napari_klip"},
    "api": {"core", "api"},
    "cluster": {"core", "api", "cluster"},
    "plugin": {"core", "api", "plugin"},
    "cli": {"core", "api", "cluster", "cli", "plugin:napari_klip.plugin.demo", "root:napari_klip"},
}
FORBIDDEN_THIRD_PARTY = {
    "core": ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt"),
    "api": ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt"),
    "cluster": ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt"),
}


def test_the_graph_sees_the_package():
    graph = _graph()
    assert "napari_klip.core.klip.sampler" in graph and "napari_klip.api.klip" in graph
    assert "napari_klip.core.diffusion" in graph["napari_klip.core.klip.sampler"]
    # function-local imports count too
    assert "napari_klip.api.klip" in graph["napari_klip.api.layers"]


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert cycles == [], f"import cycles between modules: {cycles}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _room(m) != "root"))
def test_imports_go_downward(module):
    room = _room(module)
    for target, line in _imports(module):
        if target.split(".")[0] == ROOT and target in MODULES:
            allowed = ALLOWED[room]
            target_room = _room(target)
            ok = target_room in allowed or f"{target_room}:{target}" in allowed
            assert ok, f"{module} (line {line}) imports {target}: {room} may import only {sorted(allowed)}"
        top = target.split(".")[0]
        assert top not in FORBIDDEN_THIRD_PARTY.get(room, ()), f"{module} (line {line}) imports {target}"


def test_cli_and_options_start_without_torch_or_dask():
    code = (
        "import sys; import napari_klip, napari_klip.core.options, napari_klip.cli, napari_klip.cluster; "
        "napari_klip.cli._build_parser(); "
        "print(','.join(m for m in ('torch', 'diffusers', 'napari', 'qtpy', 'dask', 'distributed', 'zarr') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_each_vocabulary_is_the_one_the_code_uses():
    from napari_klip.core.klip.guidance import GUIDANCE_STEPS
    from napari_klip.core.lmd.distances import DISTANCES
    from napari_klip.core.lmd.masks import make_masks
    from napari_klip.core.operators import OPERATORS
    from napari_klip.core.options import DISTANCE_NAMES, GUIDANCE_MODES, MASK_KINDS, OPERATOR_LABELS, OPERATOR_NAMES

    assert set(OPERATOR_NAMES) == set(OPERATORS) == set(OPERATOR_LABELS)
    assert tuple(GUIDANCE_STEPS) == GUIDANCE_MODES or set(GUIDANCE_STEPS) == set(GUIDANCE_MODES)
    assert DISTANCES == DISTANCE_NAMES
    for kind in MASK_KINDS:
        assert make_masks(kind, (16, 16), 2, grid=4).shape == (2, 16, 16)
