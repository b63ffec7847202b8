"""The examples run, and every Python snippet in README.md and docs/ imports names that exist."""

from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.py"))
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_there_are_examples_and_snippets():
    assert len(EXAMPLES) >= 4
    assert sum(len(_python_blocks(path)) for path in DOCUMENTS) >= 5


@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_example_runs(example, tmp_path):
    arguments = {"napari_layers.py": ["--no-show"], "train_prior.py": [str(tmp_path / "prior")]}.get(example.name, [])
    env = {**os.environ, "OMP_NUM_THREADS": "2", "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, str(example), *arguments], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip()


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_snippets_import_what_exists(document):
    """Every ``from napari_klip... import name`` in the document's Python snippets resolves (no stale paths)."""
    for block in _python_blocks(document):
        tree = ast.parse(block)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("napari_klip"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{document.name}: {node.module} has no {alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("napari_klip"):
                        importlib.import_module(alias.name)
