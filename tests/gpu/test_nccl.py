"""The NCCL path of data-parallel training (multienc.engine.nccl, docs/distributed.md) as a smoke test
on one GPU: two processes, each a rank with a CUDA engine encoder, compute the gradients of their
halves of a batch and sum them with NCCL in place on the backend's stream; each rank's sum must be the
whole batch's gradient as the CPU engine computes it.

NCCL refuses two ranks on one GPU of one host ("Duplicate GPU detected"); each rank gets its own
``NCCL_HOSTID``, so NCCL takes them for two hosts and connects them over loopback sockets, which is
enough to run the code path (transport and speed are not what this checks). Skipped without a GPU
(tests/gpu/conftest.py) and where multienc was built without NCCL."""
import os
import subprocess
import sys

import numpy as np
import pytest

import multienc
from multienc.engine import Encoder

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(os.path.dirname(HERE), "fixtures", "tiny_hub", "roberta-base", "main")
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(multienc.__file__)))


def _nccl_built() -> bool:
    try:
        from multienc.engine import _C_nccl  # noqa: F401
    except ImportError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _nccl_built(), reason="multienc was built without NCCL (nccl.h / libnccl.so "
                                                          "not found at install time)")


def test_two_ranks_sum_their_gradients_with_nccl(tmp_path):
    rng = np.random.default_rng(0)
    B, T = 6, 12
    ids = rng.integers(3, 1500, (B, T)).astype(np.int32)
    mask = np.ones((B, T), np.int32)
    mask[1, 9:] = mask[4, 5:] = 0
    ids[mask == 0] = 1  # roberta's pad id
    cpu = Encoder(MODEL, {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}, device="cpu")
    dout = rng.normal(size=(B, T, cpu.hidden_size)).astype(np.float32)
    np.savez(tmp_path / "inputs.npz", input_ids=ids, attention_mask=mask, dout=dout)
    cpu.forward(ids, mask, train=True)
    whole = cpu.backward(dout)

    env = dict(os.environ, PYTHONPATH=PACKAGE_PARENT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               NCCL_SOCKET_IFNAME="lo", NCCL_IB_DISABLE="1", NCCL_DEBUG="WARN")
    procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "_nccl_rank.py"), MODEL, str(tmp_path / "inputs.npz"),
                               str(tmp_path / "nccl.id"), str(tmp_path), str(rank), "2"],
                              env=dict(env, NCCL_HOSTID=f"multienc-smoke-{rank}"), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for rank in range(2)]
    outs = [p.communicate(timeout=240)[0] for p in procs]
    for rank, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, f"rank {rank}:\n{out[-4000:]}"
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]
    scale = np.median([np.linalg.norm(g) for g in whole.values()])
    for name, ref in whole.items():
        for r in ranks:
            if np.linalg.norm(ref) > 1e-4 * scale:
                assert np.linalg.norm(r[name] - ref) <= 1e-4 * np.linalg.norm(ref), name
            else:  # analytically zero (the key bias): rounding noise on both sides
                assert np.linalg.norm(r[name] - ref) <= 1e-4 * scale, name
        np.testing.assert_array_equal(ranks[0][name], ranks[1][name])  # every rank holds the same sum
