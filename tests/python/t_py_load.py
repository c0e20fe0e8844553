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
# a malformed request on one rank fails on every rank (no hang), naming the
# lowest such rank and its tensor; the other ranks' requests were fine
bad = [((0, 0), (1,)), ((0, "x"), (1, 1)), 5, {"k": 1}]
for b in bad:
    try:
        mst.load_distributed(p, {"embed.weight": b if r == n - 1 else None})
        assert False, b
    except mst.Error as e:
        assert e.code == mst.ERR_INVALID_ARGUMENT, e
        assert e.message.startswith(f"rank {n-1}: ") and '"embed.weight"' in e.message, e.message
        msgs = MPI.COMM_WORLD.allgather(e.message)
        assert len(set(msgs)) == 1, msgs
for reqs in ([("vec.F32", None)], {b"vec.F32": None}):
    try:
        mst.load_distributed(p, reqs if r == 0 else {"vec.F32": None})
        assert False, reqs
    except mst.Error as e:
        assert e.code == mst.ERR_INVALID_ARGUMENT and e.message.startswith("rank 0: "), e
# numpy integers are fine as box bounds
o2 = mst.load_distributed(p, {"embed.weight": ((np.int64(r*10), np.int32(0)), (10, 129))})
assert o2["embed.weight"].tobytes() == out["embed.weight"].tobytes()
# verify=True: a file without checksums is refused on every rank before
# anything is read; one with them loads; a flipped bit is found
try:
    mst.load_distributed(p, {"vec.F32": None}, verify=True)
    assert False
except mst.Error as e:
    assert e.code == mst.ERR_NOT_FOUND and "cannot verify" in e.message, e
d = os.path.join(os.path.dirname(p), f"py_load_verify.{n}.{os.environ.get('OMPI_MCA_io', 'io')}")
if r == 0:
    os.makedirs(d, exist_ok=True)
MPI.COMM_WORLD.Barrier()
good = os.path.join(d, "crc.safetensors")
mine = {f"t{i}": np.arange(1000, dtype=np.float32) * (i + 1) for i in range(4) if i % n == r}
mst.save(mine, good, checksums=True)
whole = {f"t{i}": None for i in range(4)}
o3 = mst.load_distributed(good, whole, verify=True)
assert all(o3[f"t{i}"].tobytes() == (np.arange(1000, dtype=np.float32) * (i + 1)).tobytes()
           for i in range(4))
bad = os.path.join(d, "flipped.safetensors")
if r == 0:
    img = bytearray(open(good, "rb").read())
    hlen = int.from_bytes(img[:8], "little")
    img[8 + hlen + 4000 + 17] ^= 1  # a byte of t1 (tensors sorted by name, 4000 bytes each)
    open(bad, "wb").write(img)
MPI.COMM_WORLD.Barrier()
try:
    mst.load_distributed(bad, {"t1": None} if r == n - 1 else {"t0": None}, verify=True)
    assert False
except mst.Error as e:
    assert e.code == mst.ERR_CHECKSUM and f'"t1" on rank {n-1}' in e.message, e
    assert len(set(MPI.COMM_WORLD.allgather(e.message))) == 1
print(r, "ok", st)
