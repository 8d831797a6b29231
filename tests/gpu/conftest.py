"""tests/gpu run only where a usable CUDA GPU is visible; elsewhere every test
here is skipped with the reason. `tests/gpu/run_all.sh` runs them on a GPU
machine (build, tests, compute-sanitizer, benchmark)."""
import pytest

import multienc


def _skip_reason():
    if not multienc.build_info()["cuda"]:
        return "multienc was built without CUDA (no nvcc at build time, or MULTIENC_CUDA=0)"
    if not multienc.cuda_available():
        return "no usable CUDA GPU is visible (compute capability >= 8.0 and a driver needed)"
    return None


def pytest_configure(config):
    config.addinivalue_line("markers", "large: real-batch sizes (seconds on the GPU and on the CPU side); "
                            "left out of the compute-sanitizer passes")


def pytest_collection_modifyitems(config, items):
    reason = _skip_reason()
    if reason is None:
        return
    marker = pytest.mark.skip(reason=reason)
    for item in items:
        if "tests/gpu/" in item.nodeid.replace("\\", "/") or item.nodeid.startswith("gpu/"):
            item.add_marker(marker)
