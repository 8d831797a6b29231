"""One rank of tests/gpu/test_nccl.py's smoke test (not collected by pytest): a CUDA engine encoder,
forward and backward on this rank's shard of a batch, the gradient buffer summed across the ranks by
NCCL in place on the backend's stream, written to OUT/rank<R>.npz.

    python _nccl_rank.py MODEL_FOLDER INPUTS.npz ID_FILE OUT RANK NRANKS

Rank 0 makes the NCCL unique id and writes it to ID_FILE (atomically); the others wait for it. No MPI
is needed, so the smoke test runs where only the CUDA toolkit is installed.
"""
import os
import sys
import time

import numpy as np

from multienc.engine import Encoder
from multienc.engine.nccl import NcclCommunicator, nccl_unique_id
from multienc.parallel import shard_range


def main(model, inputs, id_file, out, rank, nranks):
    data = np.load(inputs)
    enc = Encoder(model, {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}, device="cuda")
    if rank == 0:
        uid = nccl_unique_id()
        with open(id_file + ".tmp", "wb") as f:
            f.write(uid)
        os.replace(id_file + ".tmp", id_file)
    else:
        deadline = time.monotonic() + 120
        while not os.path.exists(id_file):
            if time.monotonic() > deadline:
                raise SystemExit("rank 0 did not write the NCCL unique id")
            time.sleep(0.05)
        uid = open(id_file, "rb").read()
    comm = NcclCommunicator(uid, nranks, rank)
    lo, hi = shard_range(len(data["input_ids"]), rank, nranks)
    enc.zero_grad()
    enc.forward(data["input_ids"][lo:hi], data["attention_mask"][lo:hi], train=True)
    enc.backward(data["dout"][lo:hi])
    comm.all_reduce_grads(enc)   # queued on the backend's stream; gradients() reads after it
    np.savez(os.path.join(out, f"rank{rank}.npz"), **enc.gradients())
    assert comm.async_error() is None


if __name__ == "__main__":
    model, inputs, id_file, out, rank, nranks = sys.argv[1:]
    main(model, inputs, id_file, out, int(rank), int(nranks))
