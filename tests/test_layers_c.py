"""The engine's folders are its layers, and includes point one way (docs/ARCHITECTURE.md, "Layers"):

    python/  ->  model/  ->  backend.h  <-  cpu/, cuda/        tokenize/ beside
    (and everything may include common.h)

backend.h is the op table: the model calls through it and the backends implement it, so both
include it and neither includes the other. Every ``#include "..."`` under csrc/ is resolved as
the compiler does (the including file's folder, then csrc/, which is -Icsrc) and checked against
ALLOWED; the file-level include graph must have no circle. The checker is tested on small trees
too, so it is known to fail on an upward include and on a circle."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, List, Set

CSRC = Path(__file__).resolve().parents[1] / "csrc"
SOURCES = (".c", ".h", ".cu", ".cuh")
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)

#: layer -> the layers its files may include (besides their own)
ALLOWED: Dict[str, Set[str]] = {
    "common": set(),
    "backend": {"common"},
    "cpu": {"backend", "common"},
    "cuda": {"backend", "common"},
    "tokenize": {"common"},
    "model": {"backend", "common"},
    "python": {"model", "tokenize", "cuda", "backend", "common"},  # cuda: the _C_cuda capsule's API
}
ROOT_FILES = {"backend.h": "backend", "common.h": "common", "common.c": "common"}


def layer(rel: str) -> str:
    """The layer of a file, by its path under csrc/ (its top folder, or one of the root files)."""
    parts = rel.split("/")
    return parts[0] if len(parts) > 1 else ROOT_FILES.get(rel, "?" + rel)


def include_graph(root: Path) -> Dict[str, List[str]]:
    """file -> the files it includes, paths relative to root; an include that resolves to no file
    under root is kept as '?name'."""
    graph = {}
    for path in sorted(root.rglob("*")):
        if path.suffix not in SOURCES:
            continue
        rel = path.relative_to(root).as_posix()
        targets = []
        for name in INCLUDE.findall(path.read_text(encoding="utf-8", errors="replace")):
            for base in (path.parent, root):
                if (base / name).is_file():
                    targets.append(Path(os.path.normpath(base / name)).relative_to(root).as_posix())
                    break
            else:
                targets.append("?" + name)
        graph[rel] = targets
    return graph


def layer_violations(graph: Dict[str, List[str]]) -> List[str]:
    out = []
    for src, targets in graph.items():
        for dst in targets:
            a, b = layer(src), layer(dst)
            if dst.startswith("?"):
                out.append(f'{src}: #include "{dst[1:]}" is not a file under csrc/')
            elif a not in ALLOWED:
                out.append(f"{src}: its folder is no layer in ALLOWED (add it, with what it may include)")
            elif a != b and b not in ALLOWED[a]:
                out.append(f'{src}: #include "{dst}" points from layer {a} to layer {b}, which {a} may not '
                           f"include (allowed: {', '.join(sorted(ALLOWED[a])) or 'nothing'})")
    return out


def circles(graph: Dict[str, List[str]]) -> List[List[str]]:
    """Every include circle found by a depth-first search (each reported once, from where it closes)."""
    found, state = [], {}  # state: 1 on the current path, 2 done

    def visit(node, path):
        state[node] = 1
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt in graph and not state.get(nxt):
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in graph:
        if not state.get(node):
            visit(node, [node])
    return found


def test_the_layer_table_itself_has_no_circle():
    graph = {a: sorted(b) for a, b in ALLOWED.items()}
    assert circles(graph) == []


def test_every_include_under_csrc_points_down_a_layer():
    graph = include_graph(CSRC)
    assert len(graph) > 30 and "python/bindings.h" in graph and "model/model.c" in graph
    assert sum(map(len, graph.values())) > 40, "the include pattern found almost nothing"
    assert layer_violations(graph) == []


def test_no_include_circle_under_csrc():
    assert circles(include_graph(CSRC)) == []


def write(root: Path, files: Dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_the_check_fails_on_an_upward_include_and_on_a_circle(tmp_path):
    """The checker on a small tree: the model including a binding header (upward), a backend
    including the model (sideways into another branch), and two model headers including each
    other."""
    tree = write(tmp_path, {
        "backend.h": '#include "common.h"\n', "common.h": "",
        "python/bindings.h": '#include "model/model.h"\n',
        "model/model.h": '#include "model/encoder.h"\n#include "backend.h"\n',
        "model/encoder.h": '#include "model/model.h"\n',
        "model/model.c": '#include "model/model.h"\n#include "../python/bindings.h"\n',
        "cpu/ops.c": '#include "backend.h"\n#include "model/encoder.h"\n#include "missing.h"\n',
    })
    graph = include_graph(tree)
    assert graph["model/model.c"] == ["model/model.h", "python/bindings.h"]
    assert layer_violations(graph) == [
        'cpu/ops.c: #include "model/encoder.h" points from layer cpu to layer model, which cpu may not include '
        "(allowed: backend, common)",
        'cpu/ops.c: #include "missing.h" is not a file under csrc/',
        'model/model.c: #include "python/bindings.h" points from layer model to layer python, which model may '
        "not include (allowed: backend, common)",
    ]
    assert circles(graph) == [["model/encoder.h", "model/model.h", "model/encoder.h"]]
