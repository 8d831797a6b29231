"""Device choice and the CUDA build switch, checked where no GPU is needed:
build_info, cuda_available, device strings and MULTIENC_DEVICE, the error for
an unavailable GPU, and that `import multienc` never loads the CUDA libraries."""
import ctypes
import os
import subprocess
import sys

import numpy as np
import pytest

import multienc
import multienc.engine.device
from multienc.engine import _C, _C_tests, native
from multienc.datasets import Corpus, Sentence
from multienc.engine.device import resolve_device
from multienc.encoders import LanguageModel, MultiEncoder
from multienc.engine import Encoder, engine_config, read_config
from multienc.engine.encoder import FAMILIES
from multienc.task_heads import TextClassifier, TextRegressor
from multienc.trainer import ModelTrainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BERT = os.path.join(ROOT, "tests", "fixtures", "models", "bert")
HUB = os.path.join(ROOT, "tests", "fixtures", "tiny_hub")
ELECTRA = os.path.join(HUB, "google--electra-base-discriminator", "main")
ROBERTA = os.path.join(HUB, "roberta-base", "main")


def driver_device_count(min_major: int) -> int:
    """Visible GPUs of compute capability >= min_major as the NVIDIA driver itself counts them (its
    C API through ctypes, independent of multienc's CUDA runtime); 0 where no driver is installed."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    if cuda.cuInit(0) != 0:  # CUDA_ERROR_NO_DEVICE and friends: nothing usable
        return 0
    n = ctypes.c_int(0)
    assert cuda.cuDeviceGetCount(ctypes.byref(n)) == 0
    usable = 0
    for ordinal in range(n.value):
        dev, major = ctypes.c_int(0), ctypes.c_int(0)
        assert cuda.cuDeviceGet(ctypes.byref(dev), ordinal) == 0
        assert cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, dev) == 0  # COMPUTE_CAPABILITY_MAJOR
        usable += major.value >= min_major
    return usable


def test_build_info_says_what_was_built():
    info = multienc.build_info()
    assert isinstance(info["cuda"], bool)
    assert isinstance(info["cuda_version"], str)
    assert info["blas"].startswith("OpenBLAS")
    config = ctypes.CDLL(native._library_path()).scipy_openblas_get_config  # e.g. "OpenBLAS 0.3.34 ... SkylakeX MAX_THREADS=64"
    config.restype = ctypes.c_char_p
    assert info["blas_core"] and f" {info['blas_core']} " in config().decode()
    assert info["openmp"] is True
    if info["cuda"]:
        assert info["cuda_version"].count(".") == 1 and "sm_80" in info["cuda_archs"]
        from multienc.engine import _C_cuda  # built with CUDA: the backend module loads here
        assert _C_cuda.device_count() == driver_device_count(min_major=8)
    else:
        assert info["cuda_version"] == ""
        # (not "import _C_cuda fails": an editable install's finder may still find a CUDA module
        # from another build in the source tree, as in the sanitizer run)
        with pytest.raises(RuntimeError, match="built without CUDA"):
            _C.Encoder(engine_config(read_config(BERT)), device="cuda")


def test_cuda_available_is_a_bool_consistent_with_the_build():
    avail = multienc.cuda_available()
    assert isinstance(avail, bool)
    if not multienc.build_info()["cuda"]:
        assert avail is False


def test_resolve_device(monkeypatch):
    monkeypatch.delenv("MULTIENC_DEVICE", raising=False)
    assert resolve_device() == ("cuda" if multienc.cuda_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("cuda:3") == "cuda:3"
    monkeypatch.setenv("MULTIENC_DEVICE", "cpu")
    assert resolve_device() == "cpu"
    assert resolve_device("cuda") == "cuda", "an argument beats the environment"
    monkeypatch.setenv("MULTIENC_DEVICE", "gpu")
    with pytest.raises(ValueError, match="MULTIENC_DEVICE must be 'cpu', 'cuda' or 'cuda:N', got 'gpu'"):
        resolve_device()
    for bad in ("CUDA", "cuda:", "cuda:-1", "cuda:x", "cpu:0", ""):
        with pytest.raises(ValueError, match="device must be"):
            resolve_device(bad)


def test_encoder_device_defaults_to_the_environment(monkeypatch):
    monkeypatch.setenv("MULTIENC_DEVICE", "cpu")
    assert Encoder(BERT).device == "cpu"


@pytest.mark.skipif(multienc.cuda_available(), reason="a GPU is visible here")
def test_asking_for_an_unavailable_gpu_says_so():
    msg = "not available|built without CUDA|could not be loaded"
    with pytest.raises(RuntimeError, match=msg):
        Encoder(BERT, device="cuda")
    with pytest.raises(RuntimeError, match=msg):
        _C_tests.ops_add_forward(np.ones(3, np.float32), np.ones(3, np.float32), "cuda:0")


def test_bad_device_strings_reach_the_c_side_as_value_errors():
    with pytest.raises(ValueError, match="'cpu', 'cuda' or 'cuda:N'"):
        _C_tests.ops_add_forward(np.ones(3, np.float32), np.ones(3, np.float32), "tpu")
    with pytest.raises(ValueError, match="'cpu', 'cuda' or 'cuda:N'"):
        _C.Encoder(engine_config(read_config(BERT)), device="cuda:1x")


def test_ops_take_cpu_explicitly():
    a, b = np.arange(5, dtype=np.float32), np.ones(5, np.float32)
    np.testing.assert_array_equal(_C_tests.ops_add_forward(a, b, "cpu"), a + b)
    np.testing.assert_array_equal(_C_tests.ops_add_forward(a, b, None), a + b)


def test_forward_can_leave_the_output_on_the_device():
    enc = Encoder(BERT, device="cpu")
    ids = np.array([[2, 5, 7, 3]], np.int32)
    mask = np.ones_like(ids)
    ref = enc.forward(ids, mask)
    assert enc._c.forward(ids, mask, None, False, 0, False) is None
    g = np.ones(ref.shape, np.float32)
    enc.zero_grad()
    grads = enc.backward(g)  # backward of the output-less forward
    enc.zero_grad()
    enc.forward(ids, mask)
    again = enc.backward(g)
    for name in grads:
        np.testing.assert_array_equal(grads[name], again[name])


def test_import_and_cpu_work_never_load_cuda_libraries():
    code = ("import numpy as np, multienc\n"
            "from multienc.engine import Encoder\n"
            f"Encoder({BERT!r}, device='cpu').forward(np.array([[1, 2, 3]]))\n"
            "maps = open('/proc/self/maps').read()\n"
            "print(any(k in maps for k in ('libcudart', 'libcublas', 'libcuda.so', '_C_cuda')))\n")
    here = os.path.dirname(os.path.dirname(os.path.abspath(multienc.__file__)))  # this multienc
    env = dict(os.environ, PYTHONPATH=here + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- the device a user gets

def test_automatic_choice_with_a_visible_gpu_picks_where_the_whole_model_runs(monkeypatch):
    """A GPU is visible (simulated): the automatic choice is CUDA for a language model whose family
    runs there with every head (the CRF's too), and the CPU for the families the CUDA backend lacks
    (MPNet, DeBERTa, ModernBERT), or when the choice is asked for every family, or when this build
    has no CUDA backend (else README snippets would fail on a GPU machine)."""
    monkeypatch.delenv("MULTIENC_DEVICE", raising=False)
    monkeypatch.setattr(multienc.engine.device, "cuda_available", lambda: True)
    cuda_built = _C.build_info()["cuda"]
    for family in ("bert", "roberta", "xlm-roberta", "electra", "distilbert", "albert"):
        code = FAMILIES[family]
        assert _C.model_runs_on("cuda", 0, code) is cuda_built and _C.model_runs_on("cuda", 2, code) is cuda_built
        assert resolve_device(family=code) == ("cuda" if cuda_built else "cpu"), family
    for family in ("mpnet", "deberta-v2", "modernbert"):
        assert not _C.model_runs_on("cuda", 0, FAMILIES[family])
        assert resolve_device(family=FAMILIES[family]) == "cpu", family
    assert _C.model_runs_on("cpu") and not _C.model_runs_on("cuda")
    assert resolve_device() == "cpu"
    for family in ("mpnet", "modernbert"):  # such a model on a GPU machine: placed on the CPU
        assert Encoder(os.path.join(ROOT, "tests", "fixtures", "models", family)).device == "cpu"


def test_heads_and_trainer_take_the_language_models_device(tmp_path, monkeypatch):
    monkeypatch.delenv("MULTIENC_DEVICE", raising=False)
    lm = LanguageModel(ELECTRA, device="cpu")
    clf = TextClassifier(lm, 2, device="cpu")
    assert clf.device == "cpu"
    with pytest.raises(ValueError, match=r"TextClassifier\(device='cuda'\): the language model\(s\) "
                                         r"'main' live on 'cpu'"):
        TextClassifier(lm, 2, device="cuda")
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda' or 'cuda:N'"):
        TextRegressor(lm, device="gpu")
    corpus = Corpus("TOY", "Sentence classification", [Sentence("good", 1), Sentence("bad", 0)] * 2,
                    [Sentence("good", 1), Sentence("bad", 0)])
    with pytest.raises(ValueError, match=r"ModelTrainer\(device='cuda:0'\): the model .* lives on 'cpu'"):
        ModelTrainer(clf, corpus, device="cuda:0")
    ModelTrainer(clf, corpus, device="cpu").train(epochs=1, batch_size=2, base_path=str(tmp_path), progress=False)
    assert " - device: cpu, precision: fp32" in (tmp_path / "training.log").read_text()


def test_language_models_on_two_devices_cannot_be_combined(monkeypatch):
    a, b = LanguageModel(ELECTRA, device="cpu"), LanguageModel(ROBERTA, device="cpu")
    monkeypatch.setattr(type(b), "device", property(lambda self: "cuda:1" if self is b else "cpu"))
    with pytest.raises(ValueError, match=r"different devices: main on 'cpu', main on 'cuda:1'"):
        MultiEncoder([a, b], combine_method="dme")
