"""Shared test set-up: the check that the reference packages are the pinned versions, and the
fixtures several test files use (a local dataset mirror, a clean hub environment).

Helpers that are plain code rather than fixtures live beside this file in ``_*.py`` modules
(pytest puts this folder on ``sys.path``): ``_shared_data`` (the real files in ../shared/data
and the policy for their absence), ``_hub_server`` and ``_data_server`` (local HTTP servers),
``_numeric``, ``_tok_corpora``, ``_tok_compare``, ``_crf_reference``, ``_data_fixtures``, ``_hf_fixtures``
(the tiny encoders saved by transformers and their reference outputs).
"""
from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path
from typing import Dict, List

import pytest

from _data_server import MirrorServer
from _hub_server import HF_ENV, TINY_HUB, HubServer

REQUIREMENTS = Path(__file__).resolve().parents[1] / "requirements"
#: The requirement lists whose packages must be installed at exactly their pinned versions: what
#: the tests compare against (test.txt), the real models they load (models.txt), and the
#: engine's own runtime dependencies (numpy and OpenBLAS decide the numbers too).
CHECKED = ("test.txt", "models.txt")
RUNTIME = ("numpy", "scipy-openblas32")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(path: Path) -> List[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [_canonical(re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0]) for line in lines if line]


def _pins(path: Path) -> Dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[_canonical(name)] = version.strip()
    return pins


def pin_mismatches() -> List[str]:
    """'name: pinned X, installed Y' for every checked package that is not at its pin."""
    pins = _pins(REQUIREMENTS / "constraints.txt")
    names = [n for f in CHECKED for n in _names(REQUIREMENTS / f)] + list(RUNTIME)
    out = []
    for name in dict.fromkeys(names):
        if name not in pins:
            out.append(f"{name}: not pinned in requirements/constraints.txt")
            continue
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "not installed"
        if installed != pins[name]:
            out.append(f"{name}: pinned {pins[name]}, installed {installed}")
    return out


def pytest_configure(config: pytest.Config) -> None:
    """Stop before collecting anything when a reference package differs from its pin."""
    bad = pin_mismatches()
    if bad:
        pytest.exit("reference packages differ from requirements/constraints.txt (run `make venv`): "
                    + "; ".join(bad), returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A running dataset mirror that MULTIENC_DATASETS_MIRROR points at, with a temporary cache."""
    with MirrorServer(tmp_path / "mirror") as server:
        monkeypatch.setenv("MULTIENC_DATASETS_MIRROR", server.url)
        monkeypatch.setenv("MULTIENC_CACHE", str(tmp_path / "cache"))
        yield server


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A clean hub environment: no HF variables, HF_HOME in the test's temporary folder."""
    for name in HF_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    return monkeypatch


@pytest.fixture
def server(env):
    """The tiny hub (tests/fixtures/tiny_hub) served locally with HF_ENDPOINT pointing at it, in the
    clean hub environment of ``env``."""
    with HubServer(TINY_HUB) as s:
        env.setenv("HF_ENDPOINT", s.url)
        yield s
