"""Regenerate tests/fixtures/weights/ with the *reference* libraries.

Run with the reference venv (numpy, safetensors, torch), never with the test venv:

    /work/main/.venv-ref/bin/python tools/make_weight_fixtures.py

Every fixture file is written by the reference implementation (the
``safetensors`` package, ``torch.save``); the expected values beside it are
plain ``.npz`` archives written by numpy, so the tests compare multienc's
readers and writer against independent output without importing either
reference library. Values are deterministic (seeded), so rerunning rewrites
identical files, except legacy.bin (the legacy torch format embeds run-specific storage keys).
"""
from __future__ import annotations

import collections
import json
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


def torch_state_dicts():
    """(float32 state dict exercising storage views, half-precision state dict), both seeded."""
    import torch

    torch.manual_seed(1)
    qkv = torch.randn(6, 4)
    sd = collections.OrderedDict()
    sd["embeddings.word_embeddings.weight"] = torch.randn(10, 4)
    sd["cls.predictions.decoder.weight"] = sd["embeddings.word_embeddings.weight"]  # tied: one storage, two names
    sd["attention.query.weight"] = qkv[0:2]          # views into one storage at offsets 0, 8, 16
    sd["attention.key.weight"] = qkv[2:4]
    sd["attention.value.weight"] = qkv[4:6]
    sd["dense.weight_t"] = torch.randn(3, 5).t()     # non-contiguous strides
    sd["dense.bias"] = torch.randn(3)
    sd["embeddings.position_ids"] = torch.arange(8, dtype=torch.int64).expand(1, -1)
    sd["LayerNorm.scale"] = torch.tensor(0.5)        # rank 0
    sd["empty"] = torch.zeros(0, 4)
    sd._metadata = collections.OrderedDict([("", {"version": 1})])

    half = collections.OrderedDict()
    half["w_fp16"] = torch.randn(4, 3).half()
    half["w_bf16"] = torch.randn(2, 5).to(torch.bfloat16)
    half["w_bf16_view"] = half["w_bf16"][:, 1:4]     # strided view into a bf16 storage
    half["ids"] = torch.tensor([[3, 1, 4]], dtype=torch.int64)
    return sd, half


def twin(sd) -> dict:
    """The safetensors twin of a torch state dict: contiguous, unshared copies."""
    return {k: v.contiguous().clone() for k, v in sd.items()}


def make_torch() -> None:
    """bin/ and bin_half/ (torch.save zip + safetensors twin), bin_sharded/, legacy.bin."""
    import safetensors.torch
    import torch

    sd, half = torch_state_dicts()
    for folder, state in (("bin", sd), ("bin_half", half)):
        os.makedirs(os.path.join(OUT, folder), exist_ok=True)
        torch.save(state, os.path.join(OUT, folder, "pytorch_model.bin"))
        safetensors.torch.save_file(twin(state), os.path.join(OUT, f"{folder}_twin.safetensors"))

    folder = os.path.join(OUT, "bin_sharded")
    os.makedirs(folder, exist_ok=True)
    names = list(sd)
    weight_map = {}
    for i, part in enumerate((names[:5], names[5:]), start=1):
        shard = f"pytorch_model-{i:05d}-of-00002.bin"
        torch.save(collections.OrderedDict((k, sd[k]) for k in part), os.path.join(folder, shard))
        weight_map.update({k: shard for k in part})
    total = sum(v.numel() * v.element_size() for v in twin(sd).values())
    with open(os.path.join(folder, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)

    torch.save({"w": torch.ones(2)}, os.path.join(OUT, "legacy.bin"), _use_new_zipfile_serialization=False)


def main() -> int:
    os.makedirs(OUT, exist_ok=True)
    make_safetensors()
    make_torch()
    for name in sorted(os.listdir(OUT)):
        print(f"{os.path.getsize(os.path.join(OUT, name)):8d}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
