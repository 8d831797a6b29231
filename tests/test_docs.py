"""Every code block marked ``<!-- runnable -->`` in README.md and docs/*.md runs as written,
against a local model hub serving tiny models under the real names (tests/fixtures/tiny_hub)
and a local dataset mirror serving every corpus in its original format (tests/_data_fixtures.py).
The blocks of one file run in order in one namespace, in a fresh folder, offline otherwise."""
import glob
import os
import re

import pytest

import _data_fixtures as fx
from _data_server import MirrorServer
from _hub_server import HF_ENV, HubServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HUB = os.path.join(os.path.dirname(__file__), "fixtures", "tiny_hub")
DOCS = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
RUNNABLE = re.compile(r"<!-- runnable -->\n```python\n(.*?)```", re.S)


def runnable_blocks(path: str):
    return RUNNABLE.findall(open(path, encoding="utf-8").read())


STS_PAIRS = [("A plane is taking off.", "An air plane is taking off.", "5.000"),
             ("A man is playing a large flute.", "A man is playing a flute.", "3.800"),
             ("A man is slicing a tomato.", "A dog runs in a field.", "0.200"),
             ("Two kids play chess.", "Two children are playing chess.", "4.600"),
             ("A woman rides a horse.", "A woman is cooking.", "0.500"),
             ("The cat sleeps.", "A cat is sleeping.", "4.800")]


def serve_stsb(mirror: MirrorServer) -> None:
    """STS-B in its layout with dev pairs enough for correlations (the unit fixture has one)."""
    rows = [[str(i), "main-captions", "MSRvid", "2012test", f"{i:04d}", "none", "none", a, b, score]
            for i, (a, b, score) in enumerate(STS_PAIRS)]
    mirror.put_zip(fx.GLUE + "STS-B.zip", {"STS-B/train.tsv": fx.tsv([fx.STSB_HEAD] + rows[:4]),
                                           "STS-B/dev.tsv": fx.tsv([fx.STSB_HEAD] + rows[3:])})


@pytest.fixture
def local_world(tmp_path, monkeypatch):
    with HubServer(HUB) as hub, MirrorServer(tmp_path / "mirror") as mirror:
        for name in fx.SERVE:
            fx.serve(name, mirror)
        serve_stsb(mirror)
        for name in HF_ENV:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
        monkeypatch.setenv("MULTIENC_CACHE", str(tmp_path / "cache"))
        monkeypatch.setenv("MULTIENC_DATASETS_MIRROR", mirror.url)
        monkeypatch.chdir(tmp_path)
        yield hub, mirror


def test_the_docs_have_runnable_examples():
    counts = {os.path.relpath(p, ROOT): len(runnable_blocks(p)) for p in DOCS}
    assert counts["README.md"] >= 1 and sum(counts.values()) >= 6, counts


@pytest.mark.parametrize("path", [p for p in DOCS if runnable_blocks(p)], ids=lambda p: os.path.relpath(p, ROOT))
def test_runnable_blocks_run(path, local_world, capsys):
    namespace: dict = {"__name__": "__docs__"}
    for i, code in enumerate(runnable_blocks(path)):
        exec(compile(code, f"{os.path.relpath(path, ROOT)} runnable block {i + 1}", "exec"), namespace)  # noqa: S102
    assert capsys.readouterr().out.strip(), "the examples print what they show"
