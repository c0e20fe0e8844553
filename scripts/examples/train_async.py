#!/usr/bin/python3
"""A data-parallel training loop that checkpoints every N steps with
mst.save_async while it keeps training, then checks every checkpoint.

    mpirun -np 2 /usr/bin/python3 scripts/examples/train_async.py [--numpy] [--steps 12]
        [--every 4] [OUTDIR]

Every rank holds the model (a small MLP, the same on every rank: mst.Replica)
and its shard of the optimizer's momentum (rows of one buffer per parameter,
split over the ranks: mst.Slice). Each step: forward and backward on this
rank's batch, an allreduce of the gradients, an SGD-with-momentum update. Every
`--every` steps the state goes to OUTDIR/step-<k>.safetensors with
save_async(snapshot=True): the call returns after the library has copied this
rank's bytes, the very next update overwrites the tensors, and the file still
holds the values of that step. The handle is finished with wait() before the
next save (done() tells without blocking whether this rank's part is written).

Checks, on every rank: each file loads (mst.load) with exactly the values the
model and the momentum had at its step (copies kept for the check).
--numpy runs the same loop with NumPy only; without --numpy and without torch
installed, it exits with status 77.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402

import mst  # noqa: E402

SIZES = [(32, 16), (32,), (8, 32), (8,)]  # w1, b1, w2, b2
NAMES = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir", nargs="?", default="train_async_out")
    ap.add_argument("--numpy", action="store_true")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--every", type=int, default=4)
    args = ap.parse_args()
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    torch = None
    if not args.numpy:
        try:
            import torch
        except ImportError:
            sys.exit(77)
    if rank == 0:
        os.makedirs(args.outdir, exist_ok=True)
    comm.Barrier()

    g = np.random.default_rng(7)  # the same model on every rank
    params = [g.standard_normal(s).astype(np.float32) * 0.1 for s in SIZES]
    if torch is not None:  # torch tensors sharing the arrays' memory
        params = [torch.from_numpy(p) for p in params]
    rows = [(s[0] * rank // size, s[0] * (rank + 1) // size) for s in SIZES]
    momentum = [np.zeros((r1 - r0,) + s[1:], np.float32) for (r0, r1), s in zip(rows, SIZES)]
    data = np.random.default_rng(100 + rank)

    def as_np(p):
        return p.numpy() if torch is not None else p

    def state():
        t = {n: mst.Replica(p) for n, p in zip(NAMES, params)}
        for n, m, (r0, _), s in zip(NAMES, momentum, rows, SIZES):
            t["momentum." + n] = mst.Slice(m, s, (r0,) + (0,) * (len(s) - 1))
        return t

    def step():
        x = data.standard_normal((16, 16)).astype(np.float32)
        y = np.tanh(x[:, :8])
        w1, b1, w2, b2 = (as_np(p) for p in params)
        h = np.maximum(x @ w1.T + b1, 0)
        out = h @ w2.T + b2
        d = 2 * (out - y) / len(x)
        grads = [None, None, d.T @ h, d.sum(0)]
        dh = (d @ w2) * (h > 0)
        grads[0], grads[1] = dh.T @ x, dh.sum(0)
        for k, gr in enumerate(grads):
            gr = np.ascontiguousarray(gr, np.float32)
            comm.Allreduce(MPI.IN_PLACE, gr)
            gr /= size
            r0, r1 = rows[k]
            momentum[k] *= 0.9
            momentum[k] += gr[r0:r1]
            full = np.concatenate(comm.allgather(momentum[k]))  # the update needs all rows
            as_np(params[k])[...] -= 0.05 * full  # in place: the tensors saved change here

    # the snapshot's memory faulted in once, here, not in the first save's
    # call (at most every parameter, this rank's momentum and the header)
    mst.snapshot_reserve(sum(as_np(p).nbytes for p in params) +
                         sum(m.nbytes for m in momentum) + (1 << 20))
    kept, handle = {}, None
    for s in range(1, args.steps + 1):
        step()
        if s % args.every == 0:
            if handle is not None:
                handle.wait()  # the previous checkpoint is in place (collective)
            path = os.path.join(args.outdir, f"step-{s}.safetensors")
            kept[path] = ([as_np(p).copy() for p in params], [m.copy() for m in momentum])
            handle = mst.save_async(state(), path, metadata={"step": str(s)}, snapshot=True)
    if handle is not None:
        handle.wait()

    bad = 0
    for path, (ps, ms) in kept.items():
        got = mst.load(path)
        for n, p in zip(NAMES, ps):
            bad += not np.array_equal(got[n], p)
        for n, m, (r0, r1) in zip(NAMES, ms, rows):
            bad += not np.array_equal(got["momentum." + n][r0:r1], m)
    bad = comm.allreduce(bad)
    if rank == 0:
        print(f"train_async: {len(kept)} checkpoints saved while training "
              f"({'torch' if torch is not None else 'numpy'}, {size} ranks): "
              f"{'all hold the values of their step' if not bad else f'{bad} tensors differ'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
