#!/usr/bin/python3
"""Resharding on load: a tensor-parallel MLP block saved at degree 4 into one
safetensors file (mst.save with Slice/Replica), then loaded back at degrees
1, 2 and 3 with mst.load_distributed (each rank asks only for its own shard:
fc1 rows, fc2 columns, the replicated norm whole) and run; the outputs must
equal the degree-4 model's.

    mpirun -np 4 /usr/bin/python3 scripts/examples/tp_load.py [OUT.safetensors]
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402

import mst  # noqa: E402

HIDDEN, FFN = 12, 40


def split(n, parts, i):
    return n * i // parts, n * (i + 1) // parts


def forward(comm, p, x):
    """norm -> fc1 (column-parallel) -> GELU -> fc2 (row-parallel, all-reduce) + bias"""
    h = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    h = h * p["norm.weight"] + p["norm.bias"]
    a = h @ p["fc1.weight"].T + p["fc1.bias"]
    a = 0.5 * a * (1 + np.tanh(0.7978845608 * (a + 0.044715 * a ** 3)))
    part = a @ p["fc2.weight"].T
    out = np.empty_like(part)
    comm.Allreduce(part, out)
    return out + p["fc2.bias"]


def main():
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    if size != 4:
        sys.exit("run with 4 ranks")
    path = sys.argv[1] if len(sys.argv) > 1 else "tp_load.safetensors"
    rep = np.random.default_rng(7)
    full = {"norm.weight": 1 + 0.1 * rep.standard_normal(HIDDEN),
            "norm.bias": 0.1 * rep.standard_normal(HIDDEN),
            "fc1.weight": rep.standard_normal((FFN, HIDDEN)),
            "fc1.bias": rep.standard_normal(FFN),
            "fc2.weight": rep.standard_normal((HIDDEN, FFN)),
            "fc2.bias": rep.standard_normal(HIDDEN)}
    full = {k: v.astype(np.float32) for k, v in full.items()}
    x = np.random.default_rng(8).standard_normal((5, HIDDEN)).astype(np.float32)

    # degree 4: every rank saves only its shard
    f0, f1 = split(FFN, size, rank)
    shard = {"norm.weight": full["norm.weight"], "norm.bias": full["norm.bias"],
             "fc1.weight": full["fc1.weight"][f0:f1], "fc1.bias": full["fc1.bias"][f0:f1],
             "fc2.weight": np.ascontiguousarray(full["fc2.weight"][:, f0:f1]),
             "fc2.bias": full["fc2.bias"]}
    want = forward(comm, shard, x)
    mst.save({"norm.weight": mst.Replica(shard["norm.weight"]),
              "norm.bias": mst.Replica(shard["norm.bias"]),
              "fc1.weight": mst.Slice(shard["fc1.weight"], (FFN, HIDDEN), (f0, 0)),
              "fc1.bias": mst.Slice(shard["fc1.bias"], (FFN,), (f0,)),
              "fc2.weight": mst.Slice(shard["fc2.weight"], (HIDDEN, FFN), (0, f0)),
              "fc2.bias": mst.Replica(shard["fc2.bias"])}, path, comm=comm, fsync=False)

    failures = 0
    for degree in (1, 2, 3):
        sub = comm.Split(0 if rank < degree else MPI.UNDEFINED, rank)
        if sub == MPI.COMM_NULL:
            continue
        g0, g1 = split(FFN, degree, rank)
        stats = {}
        p = mst.load_distributed(path, {
            "norm.weight": None, "norm.bias": None, "fc2.bias": None,
            "fc1.weight": ((g0, 0), (g1 - g0, HIDDEN)), "fc1.bias": ((g0,), (g1 - g0,)),
            "fc2.weight": ((0, g0), (HIDDEN, g1 - g0))}, comm=sub, stats=stats)
        got = forward(sub, p, x)
        ok = np.allclose(got, want, rtol=1e-5, atol=1e-5)
        exact = all(p[k].tobytes() == np.ascontiguousarray(v).tobytes() for k, v in {
            "fc1.weight": full["fc1.weight"][g0:g1], "fc2.weight": full["fc2.weight"][:, g0:g1],
            "norm.weight": full["norm.weight"]}.items())
        if rank == 0:
            print(f"degree {degree}: outputs {'equal' if ok else 'DIFFER'}, shards "
                  f"{'byte-exact' if exact else 'WRONG'}, read {stats['read_all']} bytes "
                  f"for {stats['requested_all']} requested")
        failures += (not ok) + (not exact)
        sub.Free()
    failures = comm.allreduce(failures)
    if rank == 0 and len(sys.argv) <= 1:
        os.remove(path)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
