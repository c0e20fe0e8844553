"""The Python binding under mpirun: files byte-identical to the canonical bytes,
every dtype mapping, slices and replicas, errors on every rank, torch.

  t_py_save.py mixed SPEC.json EXPECTED OUT   the C test case "mixed" (every safetensors
                                              dtype) saved from Python; EXPECTED is the
                                              oracle's file, which the C writer's save
                                              tests match byte for byte
  t_py_save.py numpy OUTDIR                   every NumPy dtype, layouts, zero copy
  t_py_save.py slices OUTDIR                  tensor-parallel boxes and replicas
  t_py_save.py errors OUTDIR                  every error class, on every rank
  t_py_save.py torch OUTDIR                   torch tensors (exit 77 without torch)
  t_py_save.py async OUTDIR                   save_async: the same bytes as save (arrays
                                              overwritten right after it with the snapshot),
                                              done()/wait(), refusals and errors on every
                                              rank, an abandoned handle leaves nothing
"""
import json
import os
import sys
import tracemalloc

import pyt_util as u
from pyt_util import check, comm, mst, np, rank, size

NUMPY_TYPES = [(np.bool_, "BOOL"), (np.uint8, "U8"), (np.int8, "I8"), (np.int16, "I16"),
               (np.uint16, "U16"), (np.float16, "F16"), (np.int32, "I32"), (np.uint32, "U32"),
               (np.float32, "F32"), (np.complex64, "C64"), (np.float64, "F64"),
               (np.int64, "I64"), (np.uint64, "U64")]


def random_array(name, dtype, shape):
    g = u.rng_for(name)
    raw = g.integers(0, 256, size=int(np.prod(shape)) * np.dtype(dtype).itemsize, dtype=np.uint8)
    a = raw.view(dtype).reshape(shape)
    if dtype == np.bool_:
        a = raw[:a.size].reshape(shape) & 1 == 1
    return a


def owner(name):
    return (u.reference_writer.name_hash(name) * 7 + 3) % size


def same_path(path):
    """The outputs: one name per test, the same on every rank."""
    return comm.bcast(path, root=0)


def mode_mixed(spec_path, expected_path, out):
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    numpy_of = {n: t for t, n in NUMPY_TYPES}
    mine, full = {}, {}
    for t in spec["tensors"]:
        name, dtype, shape = t["name"], t["dtype"], t["shape"]
        n = u.reference_writer.nbytes_of(t)
        data = b"".join(u.reference_writer.data_chunks(name, n))
        full[name] = (dtype, shape, data)
        if owner(name) != rank:
            continue
        raw = np.frombuffer(data, dtype=np.uint8)
        if dtype in numpy_of:
            mine[name] = raw.view(np.dtype(numpy_of[dtype]).newbyteorder("<")).reshape(shape)
        else:  # no NumPy type: the bytes with an explicit dtype and logical shape
            mine[name] = mst.Tensor(raw, dtype=dtype, shape=shape)
    # metadata key 0 from every rank (repeats agree), the others from one rank each
    meta = {k: v for i, (k, v) in enumerate(spec["metadata"]) if i == 0 or i % size == rank}
    mst.save(mine, out, metadata=meta)
    with open(expected_path, "rb") as f:
        want = f.read()
    u.check_file(out, want, "mixed")
    if rank == size - 1:
        got = mst.load(out)
        check(list(got) == list(mst.read_header(out))[1:], "load order is the file's")
        for name, (dtype, shape, data) in full.items():
            a = got[name]
            check(a.tobytes() == data, f"load {name!r}: bytes")
            if dtype in numpy_of:
                check(a.dtype == numpy_of[dtype] and list(a.shape) == shape, f"load {name!r}: {a.dtype}")
        check(mst.read_header(out)["__metadata__"] == dict(spec["metadata"]), "metadata read back")


def mode_numpy(outdir):
    full, mine = {}, {}
    for t, st in NUMPY_TYPES:
        for shape in [(3, 5), (7,), (), (0, 4)]:
            name = f"np.{np.dtype(t).name}.{len(shape)}d{'e' if 0 in shape else ''}"
            a = random_array(name, t, shape)
            full[name] = (st, shape, u.le_bytes(a))
            if owner(name) == rank:
                mine[name] = a
    # layouts that need a copy, and a NumPy scalar
    base = random_array("base", np.float32, (6, 8))
    layouts = {"T": base.T, "strided": base[::2, 1::3], "negative": base[::-1],
               "fortran": np.asfortranarray(base), "be.f4": base.astype(">f4"),
               "be.i8": random_array("be", np.int64, (5,)).astype(">i8"),
               "be.c8": (base[0] + 1j * base[1]).astype(">c8"),
               "scalar": np.float64(3.25), "readonly": np.frombuffer(base.tobytes(), np.float32)}
    for name, a in layouts.items():
        st = {"be.i8": "I64", "be.c8": "C64", "scalar": "F64"}.get(name, "F32")
        full["layout." + name] = (st, np.shape(a), u.le_bytes(a))
        if owner("layout." + name) == rank:
            mine["layout." + name] = a
    # explicit dtypes for what NumPy cannot express
    bf = random_array("bf16", np.uint16, (4, 3))
    f8 = random_array("f8", np.uint8, (2, 5))
    f4 = random_array("f4", np.uint8, (3, 2))
    f6 = random_array("f6", np.uint8, (3,))
    explicit = {"x.bf16": (mst.Tensor(bf, dtype="BF16"), "BF16", (4, 3), bf),
                "x.f8e4m3": (mst.Tensor(f8, dtype="F8_E4M3"), "F8_E4M3", (2, 5), f8),
                "x.f8e5m2": (mst.Tensor(f8, dtype="F8_E5M2"), "F8_E5M2", (2, 5), f8),
                "x.f4": (mst.Tensor(f4, dtype="F4", shape=(3, 4)), "F4", (3, 4), f4),
                "x.f6": (mst.Tensor(f6, dtype="F6_E2M3", shape=(4,)), "F6_E2M3", (4,), f6)}
    for name, (v, st, shape, a) in explicit.items():
        full[name] = (st, shape, a.tobytes())
        if owner(name) == rank:
            mine[name] = v
    meta = {"format": "pt", "ranks": str(size)}
    out = same_path(os.path.join(outdir, f"numpy.np{size}.safetensors"))
    mst.save(mine, out, metadata=meta, fsync=False)
    want = u.expected_bytes(full, meta)
    u.check_file(out, want, "numpy dtypes")
    if rank == 0:
        n = int.from_bytes(want[:8], "little")
        header = json.loads(want[8:8 + n])
        check(list(mst.read_header(out).items()) == list(header.items()), "read_header")
        got = mst.load(out)
        for name, (st, shape, data) in full.items():
            if st in ("F4", "F6_E2M3"):
                shape = (len(data),)  # sub-byte dtypes come back as their bytes
            check(got[name].tobytes() == data and got[name].shape == tuple(shape),
                  f"load {name}: {got[name].dtype} {got[name].shape}")
        check(got["x.bf16"].dtype == np.uint16 and got["x.f4"].shape == (6,), "raw dtypes")
        sub = mst.load(out, names=["layout.T"])
        check(list(sub) == ["layout.T"] and np.array_equal(sub["layout.T"], base.T), "load names")

    # Zero copy: a contiguous array goes to the C library by its own address
    # (traced allocations stay far below its size); a non-contiguous one is
    # copied once, which the same measure sees.
    # C types that are the same NumPy dtype under another name
    for a, st in [(np.arange(3, dtype=np.longlong), "I64"), (np.arange(3, dtype=np.intc), "I32"),
                  (np.arange(3, dtype=np.ulonglong), "U64"), (np.arange(3, dtype=np.single), "F32")]:
        check(mst._declare("c", a, rank)[0][2] == mst.DTYPES.index(st), f"{a.dtype.char} is {st}")
    big = np.ones((2048, 2048), dtype=np.float64)  # 32 MiB
    check(mst._declare("big", big, rank)[0][6] == big.ctypes.data, "contiguous: own address")
    check(mst._declare("big", big.T, rank)[0][6] != big.ctypes.data, "transposed: a copy")
    for what, value, lo, hi in [("contiguous", big, 0, 4 << 20),
                                ("transposed", big.T, 32 << 20, 1 << 40)]:
        tracemalloc.start()
        mst.save({f"big.{rank}": value}, same_path(os.path.join(outdir, f"big.np{size}.safetensors")),
                 fsync=False)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        check(lo <= peak < hi, f"{what}: peak traced memory {peak} outside [{lo}, {hi})")
    if rank == 0:
        os.remove(os.path.join(outdir, f"big.np{size}.safetensors"))


def split(n, parts, i):
    """Uneven contiguous split of range(n) into `parts`: part i's (start, stop)."""
    bounds = np.linspace(0, n, parts + 1).astype(int)
    return int(bounds[i]), int(bounds[i + 1])


def mode_slices(outdir):
    full, mine = {}, {}

    def add_full(name, a, st):
        full[name] = (st, a.shape, u.le_bytes(a))
        return a

    # column-parallel weight: rows split (one contiguous range of the file each)
    w1 = add_full("col.weight", random_array("col.weight", np.float32, (13, 6)), "F32")
    r0, r1 = split(13, size, rank)
    mine["col.weight"] = mst.Slice(w1[r0:r1], w1.shape, (r0, 0))
    # row-parallel weight: columns split (strided in the file); a non-contiguous view
    w2 = add_full("row.weight", random_array("row.weight", np.float16, (5, 11)), "F16")
    c0, c1 = split(11, size, rank)
    mine["row.weight"] = mst.Slice(w2[:, c0:c1], w2.shape, (0, c0))
    # replicated norm and bias: every rank holds them in full
    for name, t, st in [("norm.weight", np.float32, "F32"), ("norm.bias", np.float64, "F64")]:
        a = add_full(name, random_array(name, t, (6,)), st)
        mine[name] = mst.Replica(a.copy())
    # a 3-d tensor cut along two dimensions (boxes), several boxes on some ranks
    t3 = add_full("cube", random_array("cube", np.int32, (4, 6, 5)), "I32")
    boxes = [(a, b) for a in range(2) for b in range(3)]
    my = []
    for k, (a, b) in enumerate(boxes):
        if k % size == rank:
            s = (a * 2, b * 2, 0)
            my.append(mst.Slice(t3[s[0]:s[0] + 2, s[1]:s[1] + 2, :], t3.shape, s))
    if my:
        mine["cube"] = my
    # an explicit dtype in a slice (BF16 bits), and a replica with an explicit dtype
    bf = add_full("bf16.split", random_array("bf16.split", np.uint16, (size * 2, 3)), "BF16")
    mine["bf16.split"] = mst.Slice(bf[2 * rank:2 * rank + 2], bf.shape, (2 * rank, 0), dtype="BF16")
    f8 = random_array("f8.rep", np.uint8, (3,))
    full["f8.rep"] = ("F8_E4M3", (3,), f8.tobytes())
    mine["f8.rep"] = mst.Replica(f8, dtype="F8_E4M3")
    # a whole tensor per rank alongside
    own = random_array(f"rank{rank}.own", np.int8, (rank + 1,))
    mine[f"rank{rank}.own"] = own
    for r in range(size):
        a = random_array(f"rank{r}.own", np.int8, (r + 1,))
        full[f"rank{r}.own"] = ("I8", a.shape, a.tobytes())
    out = same_path(os.path.join(outdir, f"slices.np{size}.safetensors"))
    # MPI-IO hints pass through (collective buffering on one aggregator)
    mst.save(mine, out, metadata={"format": "pt"}, hints={"cb_nodes": "1", "romio_cb_write": "enable"})
    u.check_file(out, u.expected_bytes(full, {"format": "pt"}), "slices")
    # a communicator other than COMM_WORLD: even and odd ranks save a file each
    color = rank % 2
    sub = comm.Split(color, rank)
    mine_sub = {f"g{color}.r{sub.Get_rank()}": random_array(f"sub{rank}", np.float32, (2, rank + 1))}
    path_sub = os.path.join(outdir, f"sub{color}.np{size}.safetensors")
    mst.save(mine_sub, path_sub, comm=sub)
    parts = comm.allgather((color, sub.Get_rank(), rank))
    if sub.Get_rank() == 0:
        want = {f"g{color}.r{sr}": ("F32", (2, r + 1), random_array(f"sub{r}", np.float32,
                                                                      (2, r + 1)).tobytes())
                for c, sr, r in parts if c == color}
        with open(path_sub, "rb") as f:
            check(f.read() == u.expected_bytes(want), f"split communicator {color}")
    sub.Free()
    got = mst.load(out)  # every rank reads it back
    for name, (st, shape, data) in full.items():
        check(got[name].tobytes() == data and got[name].shape == tuple(shape), f"load {name}")


def mode_errors(outdir):
    path = same_path(os.path.join(outdir, f"err.np{size}.safetensors"))
    if rank == 0:
        with open(path, "wb") as f:
            f.write(b"previous contents")
    comm.Barrier()
    last = size - 1
    ok = np.arange(4, dtype=np.float32)
    cases = [
        ("NumPy dtype without safetensors dtype, last rank",
         lambda: {"a": np.zeros(2, np.complex128) if rank == last else ok}, mst.ERR_UNKNOWN_DTYPE,
         f"tensor 'a' on rank {last}: NumPy dtype complex128"),
        ("lowest failing rank wins",
         lambda: {"a": "not an array" if rank == 0 else np.zeros(1, object)},
         mst.ERR_INVALID_ARGUMENT, "tensor 'a' on rank 0: str is neither"),
        ("tensors not a mapping", lambda: [ok], mst.ERR_INVALID_ARGUMENT,
         "rank 0: tensors is a list"),
        ("explicit dtype, wrong byte count", lambda: {"x": mst.Tensor(np.zeros(3, np.uint8), "BF16")},
         mst.ERR_INVALID_ARGUMENT, "shape [3] of BF16 needs 6 bytes, the array has 3"),
        ("unknown explicit dtype", lambda: {"x": mst.Tensor(ok, "F128")}, mst.ERR_UNKNOWN_DTYPE,
         "unknown safetensors dtype 'F128'"),
        ("empty name", lambda: {"": ok} if rank == last else {}, mst.ERR_EMPTY_NAME, ""),
        ("reserved name", lambda: {"__metadata__": ok}, mst.ERR_RESERVED_NAME, "__metadata__"),
        ("invalid UTF-8 name", lambda: {"bad\udcff": ok}, mst.ERR_INVALID_UTF8, ""),
        ("sub-byte partial bytes", lambda: {"f4": mst.Tensor(np.zeros(1, np.uint8), "F4", (3,))},
         mst.ERR_PARTIAL_BYTES, ""),
        ("slice outside bounds", lambda: {"s": mst.Slice(ok, (size * 4,), (size * 4 - 2,))},
         mst.ERR_SLICE_BOUNDS, "s"),
        ("slices leave a gap", lambda: {"s": mst.Slice(ok, (size * 4 + 1,), (rank * 4,))},
         mst.ERR_SLICE_GAP, "s"),
        ("slice and replica mixed", lambda: {"s": mst.Replica(ok) if rank == last
                                             else mst.Slice(ok, (4,), (0,))} if size > 1 else
         {"s": [mst.Slice(ok, (4,), (0,)), mst.Slice(ok.astype(np.int32), (4,), (0,))]},
         mst.ERR_SLICE_MISMATCH, "s"),
        ("slices with a start of the wrong rank", lambda: {"s": mst.Slice(ok, (4, 4), (0,))},
         mst.ERR_INVALID_ARGUMENT, "differ in length"),
        ("NUL in a name (C would cut it)", lambda: {"a\0b": ok} if rank == last else {},
         mst.ERR_INVALID_ARGUMENT, f"rank {last}: tensor name b'a\\x00b' contains a NUL"),
        ("dimension beyond int64", lambda: {"s": mst.Slice(ok, (2**64,), (0,))},
         mst.ERR_SIZE_OVERFLOW, "global shape [18446744073709551616] does not fit in 64 bits"),
        ("non-integer start", lambda: {"s": mst.Slice(ok, (4,), (0.5,))},
         mst.ERR_INVALID_ARGUMENT, "start (0.5,) is not a sequence of integers"),
        ("negative dimension", lambda: {"x": mst.Tensor(ok, shape=(-1, 4))}, mst.ERR_NEGATIVE_DIM, "x"),
        ("missing directory", lambda: {f"r{rank}": ok}, mst.ERR_TARGET_DIR, "", "/nonexistent-mst-dir/x"),
    ]
    if size > 1:
        cases += [
            ("duplicate name across ranks", lambda: {"dup": ok}, mst.ERR_DUPLICATE_NAME, "dup"),
            ("slices overlap", lambda: {"s": mst.Slice(ok, (4,), (0,))}, mst.ERR_SLICE_OVERLAP, "s"),
        ]
    meta_cases = [("metadata value not a string", {"k": 1}, mst.ERR_INVALID_ARGUMENT,
                   "rank 0: metadata value 1 is not a string"),
                  ("NUL in a metadata key", {"k\0": "v"}, mst.ERR_INVALID_ARGUMENT, "contains a NUL")]
    if size > 1:
        meta_cases.append(("metadata conflict", {"k": str(rank)}, mst.ERR_METADATA_CONFLICT, "k"))
    for what, make, code, contains, *target in cases:
        u.expect_error(lambda: mst.save(make(), target[0] if target else path), code, contains, what)
    for what, meta, code, contains in meta_cases:
        u.expect_error(lambda: mst.save({f"r{rank}": ok}, path, metadata=meta), code, contains, what)
    # a failed save leaves what was there, and no temporary file
    if rank == 0:
        with open(path, "rb") as f:
            check(f.read() == b"previous contents", "target untouched by failed saves")
        left = [n for n in os.listdir(outdir) if n.startswith(os.path.basename(path) + ".tmp")]
        check(not left, f"temporary files left: {left}")
    # the reader's errors: not safetensors, missing name
    comm.Barrier()
    u.expect_error(lambda: mst.read_header(path), mst.ERR_HEADER_TOO_LARGE,
                   "above the 100000000-byte limit", "read_header of garbage")
    mst.save({f"r{rank}": ok}, path)  # and then a good save replaces it
    u.check_file(path, u.expected_bytes({f"r{r}": ("F32", (4,), ok.tobytes()) for r in range(size)}),
                 "save after failures")
    u.expect_error(lambda: mst.load(path, names=["nope"]), mst.ERR_NOT_FOUND, "'nope'", "load missing")
    # a file (from another writer) with NUL in tensor names and in metadata keys and
    # values: read_header and load give them back whole (the C reader's _len calls)
    nul = same_path(os.path.join(outdir, f"nul.np{size}.safetensors"))
    meta = {"a\0b": "1", "a\0c": "2", "k": "x\0y", "\0": ""}
    tensors = {"a\0b": ("U8", (2,), b"xy"), "a": ("U8", (1,), b"z"), "a\0": ("U8", (1,), b"w")}
    if rank == 0:
        with open(nul, "wb") as f:
            f.write(u.expected_bytes(tensors, meta))
    comm.Barrier()
    header = mst.read_header(nul)
    check(list(header) == ["__metadata__", "a", "a\0", "a\0b"], f"NUL names in the header: {header}")
    check(header["__metadata__"] == meta, f"NUL in metadata: {header['__metadata__']!r}")
    got = mst.load(nul)
    check({n: a.tobytes() for n, a in got.items()} == {n: t[2] for n, t in tensors.items()},
          f"load of NUL names: {got}")
    check(mst.load(nul, names=["a\0b"])["a\0b"].tobytes() == b"xy", "load of one NUL name")
    # the safetensors save_file(tensors, filename, metadata) order: a mapping in third place
    mst.save({f"r{rank}": ok}, path, {"format": "pt"})
    u.check_file(path, u.expected_bytes({f"r{r}": ("F32", (4,), ok.tobytes()) for r in range(size)},
                                        {"format": "pt"}), "save(d, path, metadata) positionally")
    for args, kw, needle in (((path, {"a": "b"}), {"metadata": {"a": "b"}}, "pass the metadata once"),
                             ((path, "COMM_WORLD"), {}, "not str")):
        try:
            mst.save({f"r{rank}": ok}, *args, **kw)
            check(False, f"save{args!r}: no TypeError")
        except TypeError as e:
            check(needle in str(e), f"save{args!r}: {e}")


def mode_torch(outdir):
    try:
        import torch
    except ImportError:
        if rank == 0:
            print("torch is not installed: skipped", flush=True)
        sys.exit(77)
    tnames = {"bool": "BOOL", "uint8": "U8", "int8": "I8", "int16": "I16", "int32": "I32",
              "int64": "I64", "float16": "F16", "bfloat16": "BF16", "float32": "F32",
              "float64": "F64", "complex64": "C64", "float8_e4m3fn": "F8_E4M3",
              "float8_e5m2": "F8_E5M2", "uint16": "U16", "uint32": "U32", "uint64": "U64"}
    full, mine = {}, {}

    def tbytes(t):
        t = t.detach().resolve_conj().resolve_neg().contiguous()
        return t.view(torch.uint8).numpy().tobytes() if t.dim() else \
            t.reshape(1).view(torch.uint8).numpy().tobytes()

    g = torch.Generator().manual_seed(1234)
    present = [n for n in tnames if hasattr(torch, n)]
    if rank == 0:
        print(f"torch {torch.__version__}: dtypes {present}", flush=True)
    for n in present:
        dt = getattr(torch, n)
        for shape in [(3, 4), (), (0, 2)]:
            name = f"pt.{n}.{len(shape)}d{'e' if 0 in shape else ''}"
            raw = torch.randint(0, 256, (int(np.prod(shape)) * torch.empty(0, dtype=dt).element_size(),),
                                dtype=torch.uint8, generator=g)
            t = raw.view(dt).reshape(shape) if n != "bool" else (raw & 1).bool().reshape(shape)
            full[name] = (tnames[n], shape, tbytes(t))
            if owner(name) == rank:
                mine[name] = t
    base = torch.randn(6, 4, generator=g)
    c = torch.complex(base[:3], base[3:])
    specials = {"T": base.t(), "narrow": base[:, 1:3], "param": torch.nn.Parameter(base.clone()),
                "conj": c.conj(), "neg": torch._neg_view(base) if hasattr(torch, "_neg_view") else -base,
                "expand": torch.ones(3, dtype=torch.float64).expand(2, 3)}
    for name, t in specials.items():
        st = {"conj": "C64", "expand": "F64"}.get(name, "F32")
        full["special." + name] = (st, tuple(t.shape), tbytes(t))
        if owner("special." + name) == rank:
            mine["special." + name] = t
    # tensor parallelism with torch: a row split and a column split
    w = torch.randn(size * 2, 3 * size, generator=g).to(torch.bfloat16)
    full["tp.col"] = ("BF16", tuple(w.shape), tbytes(w))
    full["tp.row"] = ("BF16", tuple(w.shape), tbytes(w))
    mine["tp.col"] = mst.Slice(w[2 * rank:2 * rank + 2], w.shape, (2 * rank, 0))
    mine["tp.row"] = mst.Slice(w[:, 3 * rank:3 * rank + 3], w.shape, (0, 3 * rank))
    mine["tp.norm"] = mst.Replica(torch.ones(5, dtype=torch.float16))
    full["tp.norm"] = ("F16", (5,), tbytes(torch.ones(5, dtype=torch.float16)))
    out = same_path(os.path.join(outdir, f"torch.np{size}.safetensors"))
    mst.save(mine, out, metadata={"format": "pt"})
    u.check_file(out, u.expected_bytes(full, {"format": "pt"}), "torch")
    # zero copy: a contiguous tensor is passed by its own address, a transposed one is not
    check(mst._declare("x", base, rank)[0][6] == base.data_ptr(), "contiguous tensor: own address")
    check(mst._declare("x", base.t(), rank)[0][6] != base.data_ptr(), "transposed tensor: a copy")
    got = mst.load(out, framework="torch")
    for name, t in list(mine.items()):
        if isinstance(t, torch.Tensor):
            ref = t.detach().resolve_conj().resolve_neg()
            check(got[name].dtype == ref.dtype and got[name].shape == ref.shape
                  and tbytes(got[name]) == tbytes(ref), f"torch load {name}")
    check(torch.equal(got["tp.row"], w) and torch.equal(got["tp.col"], w), "tp load")
    u.expect_error(lambda: mst.save({"q": torch.zeros(2).to_sparse()}, out), mst.ERR_INVALID_ARGUMENT,
                   "layout", "sparse tensor")


def mode_async(outdir):
    import time
    ref = same_path(os.path.join(outdir, f"ref.np{size}.safetensors"))
    got = same_path(os.path.join(outdir, f"async.np{size}.safetensors"))
    rows = np.arange(4 * 6, dtype=np.float32).reshape(4, 6) + 100 * rank

    def tensors():
        return {f"w.{rank}": random_array(f"w.{rank}", np.float32, (1000 + rank, 3)),
                f"s.{rank}": np.arange(rank + 1, dtype=np.int64),
                "rep": mst.Replica(np.ones(7, np.float16)),
                "rows": mst.Slice(rows.copy(), (4 * size, 6), (4 * rank, 0))}
    meta = {"step": "42"}
    mst.save(tensors(), ref, metadata=meta)
    with open(ref, "rb") as f:
        want = f.read() if rank == 0 else None
    mst.snapshot_reserve(1 << 20)  # the snapshot below copies into it
    u.expect_error(lambda: mst.snapshot_reserve((1 << 64) - 1), mst.ERR_NO_MEMORY,
                   "snapshot_reserve", "snapshot_reserve of 2^64 - 1 bytes")
    for snapshot in (True, False):
        t = tensors()
        h = mst.save_async(t, got, metadata=meta, snapshot=snapshot)
        if snapshot:  # the optimizer step: the file keeps the values at the call
            for v in t.values():
                a = v.array if isinstance(v, (mst.Slice, mst.Replica)) else v
                a[...] = 0
        t0 = time.time()
        while not h.done() and time.time() - t0 < 60:
            time.sleep(0.001)
        check(h.done(), "save_async: done() never became True")
        h.wait()
        h.wait()  # again: the same outcome
        if snapshot:
            mst.snapshot_reserve(0)  # the cached memory back to the system
        if rank == 0:
            u.check_file(got, want, f"save_async snapshot={snapshot}")
        comm.Barrier()
    # a context manager waits at the end of the block
    with mst.save_async(tensors(), got, metadata=meta) as h:
        pass
    u.check_file(got, want, "save_async as a context manager")
    # refused on every rank: a strided box, checksums; errors of save() too
    cols = same_path(os.path.join(outdir, f"cols.np{size}.safetensors"))
    if size > 1:
        u.expect_error(lambda: mst.save_async({"c": mst.Slice(np.zeros((4, 2), np.float32),
                                                             (4, 2 * size), (0, 2 * rank))}, cols),
                       mst.ERR_INVALID_ARGUMENT, "strided", "save_async of a column block")
    u.expect_error(lambda: mst.save_async({"x": np.zeros(3, np.complex128)}, cols),
                   mst.ERR_UNKNOWN_DTYPE, "complex128", "save_async of a bad dtype")
    u.expect_error(lambda: mst.save_async({f"x.{rank}": np.zeros(3)}, cols,
                                               hints={"mst_snapshot_limit": "8"}),
                   mst.ERR_NO_MEMORY, "mst_snapshot_limit", "save_async over the snapshot limit")
    comm.Barrier()
    if rank == 0:
        check(not os.path.exists(cols), "a refused save_async left a file")
    # abandoned: no file at the target, no temporary
    gone = same_path(os.path.join(outdir, f"abandoned.np{size}.safetensors"))
    h = mst.save_async(tensors(), gone)
    del h
    comm.Barrier()
    if rank == 0:
        check(not os.path.exists(gone), "an abandoned save_async left its file")
        check(not [f for f in os.listdir(outdir) if ".tmp-mst." in f],
              "a temporary file was left")


def main():
    mode = sys.argv[1]
    if mode == "mixed":
        mode_mixed(*sys.argv[2:5])
    else:
        outdir = sys.argv[2]
        if rank == 0:
            os.makedirs(outdir, exist_ok=True)
        comm.Barrier()
        {"numpy": mode_numpy, "slices": mode_slices, "errors": mode_errors,
         "torch": mode_torch, "async": mode_async}[mode](outdir)
    u.finish()


if __name__ == "__main__":
    main()
