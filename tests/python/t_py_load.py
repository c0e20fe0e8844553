"""mst.load_distributed against mst.load: boxes, whole tensors, a list of
boxes (fused), the figures, and a missing name failing on every rank."""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import mst, numpy as np
from mpi4py import MPI
r, n = MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()
p = sys.argv[1]
ref = mst.load(p)
st = {}
out = mst.load_distributed(p, {"embed.weight": ((r*10, 0), (10, 129)), "vec.F32": None,
                               "deep": [((0,0,0),(4,1,1)), ((0,0,1),(4,1,2))]}, stats=st)
assert out["embed.weight"].tobytes() == np.ascontiguousarray(ref["embed.weight"][r*10:r*10+10]).tobytes(), "embed"
assert out["vec.F32"].tobytes() == np.ascontiguousarray(ref["vec.F32"]).tobytes()
assert out["deep"][1].tobytes() == np.ascontiguousarray(ref["deep"][:, :, 1:3]).tobytes()
try:
    mst.load_distributed(p, {"nope" if r == n-1 else "vec.F32": None})
    assert False
except mst.Error as e:
    assert e.code == mst.ERR_NOT_FOUND and f"rank {n-1}" in e.message, e
print(r, "ok", st)
