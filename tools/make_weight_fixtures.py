"""Regenerate tests/fixtures/weights/ with the *reference* libraries.

Run with the reference venv (numpy, safetensors, torch), never with the test venv:

    /work/main/.venv-ref/bin/python tools/make_weight_fixtures.py

Every fixture file is written by the reference implementation (the
``safetensors`` package, ``torch.save``); the expected values beside it are
plain ``.npz`` archives written by numpy, so the tests compare multienc's
readers and writer against independent output without importing either
reference library. Values are deterministic (seeded), so rerunning rewrites
identical arrays (torch's zip records may differ in their serialization id).
"""
from __future__ import annotations

import os
import sys

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "weights")


def numpy_dtypes() -> dict:
    """One small tensor of every dtype safetensors.numpy can write, plus edge shapes."""
    rng = np.random.default_rng(0)
    return {
        "encoder.layer.0.weight": rng.standard_normal((3, 4)).astype(np.float32),
        "encoder.layer.0.bias": rng.standard_normal(5).astype(np.float16),
        "double": rng.standard_normal((2, 2)),
        "position_ids": np.arange(7, dtype=np.int64).reshape(1, 7),
        "int32": rng.integers(-2**31, 2**31 - 1, (2, 3), dtype=np.int32),
        "uint32": rng.integers(0, 2**32 - 1, 3, dtype=np.uint32),
        "uint64": np.array([0, 2**64 - 1, 12345], dtype=np.uint64),
        "int16": np.array([-32768, 0, 32767], dtype=np.int16),
        "uint16": np.array([0, 65535], dtype=np.uint16),
        "int8": np.array([-128, 127, 0], dtype=np.int8),
        "uint8": np.arange(6, dtype=np.uint8).reshape(2, 3),
        "mask": np.array([True, False, True, True]),
        "complex": (rng.standard_normal(2) + 1j * rng.standard_normal(2)).astype(np.complex64),
        "scalar": np.array(3.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }


def make_safetensors() -> None:
    """st_numpy.* (every numpy dtype) and st_torch.* (BF16/F16/F32/I64 written from torch)."""
    import safetensors.numpy
    import safetensors.torch
    import torch

    arrays = numpy_dtypes()
    safetensors.numpy.save_file(arrays, os.path.join(OUT, "st_numpy.safetensors"), metadata={"format": "np"})
    np.savez(os.path.join(OUT, "st_numpy.npz"), **arrays)

    torch.manual_seed(0)
    tensors = {
        "bf16": torch.randn(3, 5).to(torch.bfloat16),
        "f16": torch.randn(4).to(torch.float16),
        "f32": torch.randn(2, 2),
        "i64": torch.tensor([[0, 1, 2]], dtype=torch.int64),
    }
    safetensors.torch.save_file(tensors, os.path.join(OUT, "st_torch.safetensors"), metadata={"format": "pt"})
    np.savez(os.path.join(OUT, "st_torch.npz"),
             **{k: (v.float() if v.dtype == torch.bfloat16 else v).numpy() for k, v in tensors.items()})


def main() -> int:
    os.makedirs(OUT, exist_ok=True)
    make_safetensors()
    for name in sorted(os.listdir(OUT)):
        print(f"{os.path.getsize(os.path.join(OUT, name)):8d}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
