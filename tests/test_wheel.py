"""The binary wheel as users install it: built once (tools/build_wheel.py: sdist, wheel from the
sdist, auditwheel repair), installed into a fresh venv where no compiler is reachable (CC=false,
PATH without gcc), offline from the runtime dependencies' wheels that `make venv` downloaded;
there the engine's smoke test and one training step run, on the installed package only."""
import glob
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WHEELHOUSE = os.path.join(REPO, "build", "wheelhouse")
HUB = os.path.join(REPO, "tests", "fixtures", "tiny_hub")
ELECTRA = os.path.join(HUB, "google--electra-base-discriminator", "main")
ROBERTA = os.path.join(HUB, "roberta-base", "main")

pytestmark = pytest.mark.slow

SMOKE = f"""
import os, sys
import numpy as np
import multienc
from multienc.datasets import Corpus, Sentence
from multienc.encoders import LanguageModel, MultiEncoder
from multienc.engine import Encoder
from multienc.task_heads import TextClassifier
from multienc.trainer import ModelTrainer

assert multienc.__file__.startswith(sys.prefix), multienc.__file__  # the installed package, not the source tree
enc = Encoder({ELECTRA!r}, device="cpu")
out = enc.forward(np.array([[1, 5, 7, 2]], np.int32))
assert out.shape == (1, 4, enc.hidden_size) and np.isfinite(out).all()
lms = [LanguageModel({ELECTRA!r}), LanguageModel({ROBERTA!r})]
clf = TextClassifier(MultiEncoder(lms, combine_method="dme"), 2)
corpus = Corpus("TOY", "Sentence classification", [Sentence("good day", 1), Sentence("bad day", 0)] * 2,
                [Sentence("good", 1), Sentence("bad", 0)])
before = clf.state_dict()
hist = ModelTrainer(clf, corpus).train(learning_rate=1e-3, batch_size=4, epochs=1, base_path="run", progress=False)
assert np.isfinite(hist["train_loss"][0])
after = clf.state_dict()
assert any(not np.array_equal(before[k], after[k]) for k in before), "one training step changed no weight"
maps = open("/proc/self/maps").read()
gomp = sorted({{line.split()[-1] for line in maps.splitlines() if "libgomp" in line}})
assert gomp and all("multienc.libs" in path for path in gomp), gomp  # the grafted OpenMP runtime
assert not any(k in maps for k in ("libcudart", "libcublas", "_C_cuda")), "CPU work loaded CUDA libraries"
print("wheel ok", multienc.build_info()["cuda"])
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "build_wheel.py"), "--outdir", str(out)],
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout.strip().splitlines()[-1]


def test_wheel_needs_nothing_beyond_its_declared_dependencies(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "manylinux" in os.path.basename(wheel)
    assert any(n.startswith("multienc.libs/libgomp") for n in names), "OpenMP runtime not grafted"
    assert not any("openblas" in n or "cublas" in n for n in names), "declared or optional libraries were grafted"
    assert not any("nccl" in n for n in names if n.startswith("multienc.libs/")), "libnccl was grafted"
    assert not any(n.startswith("tests/") for n in names)
    assert any(n.startswith("multienc/engine/_C.") for n in names)
    assert not any(n.startswith("multienc/engine/_C_tests") for n in names), "the op test entry points were shipped"
    show = subprocess.run([sys.executable, "-m", "auditwheel", "show", wheel], capture_output=True, text=True,
                          check=True).stdout
    assert "manylinux" in show


def test_wheel_installs_and_trains_without_a_compiler(wheel, tmp_path):
    deps = glob.glob(os.path.join(WHEELHOUSE, "*.whl"))
    assert deps, f"no dependency wheels in {WHEELHOUSE} (make venv downloads them)"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    bindir = str(venv / "bin")
    env = {"PATH": bindir, "CC": "false", "CXX": "false", "HOME": str(tmp_path), "PIP_NO_INDEX": "1",
           "PIP_NO_CACHE_DIR": "1", "OMP_NUM_THREADS": "2"}
    assert not any(shutil.which(cc, path=bindir) for cc in ("gcc", "cc", "clang")), "a compiler is reachable"
    subprocess.run([os.path.join(bindir, "python"), "-m", "pip", "install", "-q", "--find-links", WHEELHOUSE, wheel],
                   check=True, env=env, cwd=tmp_path, timeout=600)
    proc = subprocess.run([os.path.join(bindir, "python"), "-c", SMOKE], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.splitlines()[-1].startswith("wheel ok")
