#!/usr/bin/python3
"""A tensor-parallel model saved from N ranks into one safetensors file, then
loaded back and checked.

    mpirun -np 4 /usr/bin/python3 scripts/examples/tp_save.py [--numpy] [OUT.safetensors]

The model is a transformer MLP block split Megatron-style over the ranks:
    norm (LayerNorm, replicated) -> fc1 (column-parallel: output rows split)
    -> GELU -> fc2 (row-parallel: input columns split, all-reduce) + fc2.bias
Every rank holds only its shard; mst.save writes each shard straight into its
place in one file (mst.Slice), and the replicated tensors once (mst.Replica).
The file's tensor names and shapes are those of the unsplit model, so it loads
as an ordinary state dict.

Checks, on every rank: a second model with other random parameters, loaded
from the file, has parameters identical to the saved model's and computes the
same output; with torch, an unsplit torch model loads the file with
load_state_dict(strict=True) and gives the same output too.

--numpy runs the same model with NumPy only (no torch). Without --numpy and
without torch installed, it exits with status 77.
Use Debian's /usr/bin/python3, which sees python3-mpi4py, -numpy and -torch.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
try:
    import numpy as np
    from mpi4py import MPI

    import mst
except ImportError as e:
    sys.exit(f"{sys.executable}: {e}\nRun this with an interpreter that has numpy and mpi4py "
             "(Debian: /usr/bin/python3 with python3-numpy and python3-mpi4py).")

HIDDEN, FFN = 12, 40


def split(n, parts, i):
    """Contiguous, possibly uneven split of range(n): part i's (start, stop)."""
    return n * i // parts, n * (i + 1) // parts


class NumpyTP:
    """The block in NumPy: this rank's shards as arrays."""

    def __init__(self, comm, seed):
        self.comm, r, n = comm, comm.Get_rank(), comm.Get_size()
        g = np.random.default_rng([seed, r])  # shards are initialised locally, per rank
        self.f0, self.f1 = split(FFN, n, r)
        local = self.f1 - self.f0
        rep = np.random.default_rng([seed, 10**6])  # replicated: the same on every rank
        self.p = {
            "norm.weight": 1 + 0.1 * rep.standard_normal(HIDDEN, dtype=np.float32),
            "norm.bias": 0.1 * rep.standard_normal(HIDDEN, dtype=np.float32),
            "fc1.weight": g.standard_normal((local, HIDDEN), dtype=np.float32),  # [FFN, HIDDEN] rows
            "fc1.bias": g.standard_normal(local, dtype=np.float32),
            "fc2.weight": g.standard_normal((HIDDEN, local), dtype=np.float32),  # [HIDDEN, FFN] cols
            "fc2.bias": rep.standard_normal(HIDDEN, dtype=np.float32),
        }

    def tensors(self):
        p, f0 = self.p, self.f0
        return {
            "norm.weight": mst.Replica(p["norm.weight"]),
            "norm.bias": mst.Replica(p["norm.bias"]),
            "fc1.weight": mst.Slice(p["fc1.weight"], (FFN, HIDDEN), (f0, 0)),
            "fc1.bias": mst.Slice(p["fc1.bias"], (FFN,), (f0,)),
            "fc2.weight": mst.Slice(p["fc2.weight"], (HIDDEN, FFN), (0, f0)),
            "fc2.bias": mst.Replica(p["fc2.bias"]),
        }

    def load(self, full):
        """Takes this rank's shards out of the full tensors."""
        f0, f1 = self.f0, self.f1
        self.p = {"norm.weight": full["norm.weight"], "norm.bias": full["norm.bias"],
                  "fc1.weight": full["fc1.weight"][f0:f1], "fc1.bias": full["fc1.bias"][f0:f1],
                  "fc2.weight": np.ascontiguousarray(full["fc2.weight"][:, f0:f1]),
                  "fc2.bias": full["fc2.bias"]}

    def forward(self, x):
        p = self.p
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        h = (x - mu) / np.sqrt(var + 1e-5) * p["norm.weight"] + p["norm.bias"]
        h = h @ p["fc1.weight"].T + p["fc1.bias"]
        h = 0.5 * h * (1 + np.tanh(0.7978845608 * (h + 0.044715 * h ** 3)))
        part = np.ascontiguousarray(h @ p["fc2.weight"].T)
        out = np.empty_like(part)
        self.comm.Allreduce(part, out)
        return out + p["fc2.bias"]

    def params(self):
        return self.p


def torch_model(comm, seed):
    import torch
    from torch import nn

    r, n = comm.Get_rank(), comm.Get_size()
    f0, f1 = split(FFN, n, r)

    class ColumnParallelLinear(nn.Module):
        """y_local = x @ W[f0:f1].T + b[f0:f1]: output features split over ranks."""

        def __init__(self, d_in, d_out):
            super().__init__()
            self.d_in, self.d_out = d_in, d_out
            self.weight = nn.Parameter(torch.randn(f1 - f0, d_in))
            self.bias = nn.Parameter(torch.randn(f1 - f0))

        def forward(self, x):
            return x @ self.weight.t() + self.bias

        def mst_tensors(self, prefix):
            return {prefix + "weight": mst.Slice(self.weight, (self.d_out, self.d_in), (f0, 0)),
                    prefix + "bias": mst.Slice(self.bias, (self.d_out,), (f0,))}

        def load_full(self, prefix, full):
            self.weight.data.copy_(full[prefix + "weight"][f0:f1])
            self.bias.data.copy_(full[prefix + "bias"][f0:f1])

    class RowParallelLinear(nn.Module):
        """y = allreduce(x_local @ W[:, f0:f1].T) + b: input features split, bias replicated."""

        def __init__(self, d_in, d_out):
            super().__init__()
            self.d_in, self.d_out = d_in, d_out
            self.weight = nn.Parameter(torch.randn(d_out, f1 - f0))
            g = torch.Generator().manual_seed(seed + 1)  # replicated: same on every rank
            self.bias = nn.Parameter(torch.randn(d_out, generator=g))

        def forward(self, x):
            part = (x @ self.weight.t()).detach().contiguous()
            comm.Allreduce(MPI.IN_PLACE, part.numpy())
            return part + self.bias

        def mst_tensors(self, prefix):
            return {prefix + "weight": mst.Slice(self.weight, (self.d_out, self.d_in), (0, f0)),
                    prefix + "bias": mst.Replica(self.bias)}

        def load_full(self, prefix, full):
            self.weight.data.copy_(full[prefix + "weight"][:, f0:f1])
            self.bias.data.copy_(full[prefix + "bias"])

    class TPBlock(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(seed * 1000 + r)  # shards initialised locally, per rank
            self.norm = nn.LayerNorm(HIDDEN)
            self.fc1 = ColumnParallelLinear(HIDDEN, FFN)
            self.fc2 = RowParallelLinear(FFN, HIDDEN)
            g = torch.Generator().manual_seed(seed + 2)
            with torch.no_grad():  # replicated, the same on every rank
                self.norm.weight.copy_(1 + 0.1 * torch.randn(HIDDEN, generator=g))
                self.norm.bias.copy_(0.1 * torch.randn(HIDDEN, generator=g))

        def forward(self, x):
            return self.fc2(nn.functional.gelu(self.fc1(self.norm(x)), approximate="tanh"))

        def tensors(self):
            t = {"norm.weight": mst.Replica(self.norm.weight), "norm.bias": mst.Replica(self.norm.bias)}
            t.update(self.fc1.mst_tensors("fc1."))
            t.update(self.fc2.mst_tensors("fc2."))
            return t

        def load(self, full):
            with torch.no_grad():
                self.norm.weight.copy_(full["norm.weight"])
                self.norm.bias.copy_(full["norm.bias"])
                self.fc1.load_full("fc1.", full)
                self.fc2.load_full("fc2.", full)

        def params(self):
            return dict(self.named_parameters())

    return TPBlock()


def dense_torch_forward(full, x):
    """The unsplit model as a plain torch module, loaded like any checkpoint."""
    import torch
    from torch import nn
    dense = nn.Module()
    dense.norm, dense.fc1, dense.fc2 = nn.LayerNorm(HIDDEN), nn.Linear(HIDDEN, FFN), nn.Linear(FFN, HIDDEN)
    dense.load_state_dict(full, strict=True)
    with torch.no_grad():
        return dense.fc2(nn.functional.gelu(dense.fc1(dense.norm(x)), approximate="tanh"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", nargs="?", default="tp_model.safetensors")
    ap.add_argument("--numpy", action="store_true", help="NumPy only, no torch")
    args = ap.parse_args()
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    use_torch = not args.numpy
    if use_torch:
        try:
            import torch
        except ImportError:
            if rank == 0:
                print("torch is not installed; run with --numpy", file=sys.stderr)
            sys.exit(77)
    x_np = np.random.default_rng(7).standard_normal((3, HIDDEN), dtype=np.float32)

    model = torch_model(comm, seed=1) if use_torch else NumpyTP(comm, seed=1)
    mst.save(model.tensors(), args.out, metadata={"format": "pt", "tp_size": str(size)})

    # Load into a model with other parameters: identical to the saved ones afterwards.
    other = torch_model(comm, seed=2) if use_torch else NumpyTP(comm, seed=2)
    full = mst.load(args.out, framework="torch" if use_torch else "numpy")
    other.load(full)
    ok = True
    for name, p in model.params().items():
        q = other.params()[name]
        same = torch.equal(p, q) if use_torch else np.array_equal(p, q)
        if not same:
            print(f"[rank {rank}] {name}: parameters differ after loading", file=sys.stderr)
            ok = False
    if use_torch:
        with torch.no_grad():
            x = torch.from_numpy(x_np)
            y, y2 = model(x), other(x)
            ok &= torch.equal(y, y2)
            y_dense = dense_torch_forward(full, x)
            ok &= torch.allclose(y, y_dense, rtol=1e-4, atol=1e-5)
    else:
        y, y2 = model.forward(x_np), other.forward(x_np)
        ok &= np.array_equal(y, y2)
    ok = comm.allreduce(ok, op=MPI.LAND)
    if rank == 0:
        header = mst.read_header(args.out)
        print(f"{'torch' if use_torch else 'numpy'}: {size} ranks saved {len(header) - 1} tensors "
              f"({os.path.getsize(args.out)} bytes) to {args.out}: "
              + ", ".join(f"{k} {v['shape']}" for k, v in header.items() if k != "__metadata__"))
        print("loaded back: parameters identical, outputs equal" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
