"""The Python package's layers (docs/ARCHITECTURE.md): every import points down a layer and no
import closes a circle (the contracts in pyproject.toml, checked by import-linter, pinned), and
only the engine touches the C extension."""
import ast
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "multienc")


def test_imports_point_down_and_close_no_circle():
    lint = os.path.join(os.path.dirname(sys.executable), "lint-imports")
    proc = subprocess.run([lint, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "Layers point down KEPT" in proc.stdout and "No import circles KEPT" in proc.stdout


def _imports_of_the_extension(path: str) -> list:
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        hits += [(node.lineno, n) for n in names if n.split(".")[-1] in ("_C", "_C_cuda", "_C_nccl") or ".engine._C" in n]
    return hits


OUTSIDE_THE_ENGINE = sorted(os.path.relpath(os.path.join(d, f), PACKAGE) for d, _, fs in os.walk(PACKAGE)
                            for f in fs if f.endswith(".py") and os.path.relpath(d, PACKAGE).split(os.sep)[0] != "engine")


def test_the_engine_imports_the_extension():
    assert _imports_of_the_extension(os.path.join(PACKAGE, "engine", "encoder.py"))  # the check sees such imports


@pytest.mark.parametrize("rel", OUTSIDE_THE_ENGINE)
def test_only_the_engine_imports_the_extension(rel):
    hits = _imports_of_the_extension(os.path.join(PACKAGE, rel))
    assert not hits, f"multienc/{rel} imports the C extension ({hits}); go through multienc.engine"
