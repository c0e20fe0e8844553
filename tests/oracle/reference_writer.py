#!/usr/bin/env python3
"""The test oracle: canonical safetensors bytes, written independently of mst.

It follows the reference writer (safetensors.torch.save_file, i.e. the Rust
`serialize`), as ../shared/SAFETENSORS.md describes it:
  - tensors sorted by dtype descending in the reference enum order, then by
    name (byte-wise on UTF-8);
  - offsets back to back;
  - compact JSON, "__metadata__" first (its keys sorted: the deterministic
    choice), then the tensors in offset order, keys dtype/shape/data_offsets;
  - serde_json's string escapes, which Python's json.dumps(ensure_ascii=False)
    produces as well (\\" \\\\ \\n \\r \\t \\b \\f, other control characters as
    \\u00xx, everything else raw);
  - spaces up to a multiple of 8, then the u64 little-endian length.

Usage: reference_writer.py SPEC.json OUT.safetensors
SPEC: {"metadata": [[key, value], ...], "tensors": [{"name", "dtype", "shape"}]}
Tensor data follows the rule in tests/common/t_util.h (t_fill).
"""
import json
import struct
import sys

DTYPES = ["BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3",
          "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32",
          "U32", "F32", "C64", "F64", "I64", "U64"]
BITS = {"BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8,
        "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "I16": 16, "U16": 16,
        "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64,
        "I64": 64, "U64": 64}


def name_hash(name):
    h = 2166136261
    for c in name.encode("utf-8"):
        h = ((h ^ c) * 16777619) & 0xFFFFFFFF
    return h


def data_chunks(name, nbytes, chunk=1 << 26):
    """Bytes of tensor `name` by the rule of t_fill, in chunks."""
    h = name_hash(name)
    try:
        import numpy as np
    except ImportError:
        np = None
    for off in range(0, nbytes, chunk):
        n = min(chunk, nbytes - off)
        if np is not None:
            j = np.arange(off, off + n, dtype=np.uint64)
            x = (j * np.uint64(0x9E3779B1) + np.uint64(h)) & np.uint64(0xFFFFFFFF)
            x ^= x >> np.uint64(15)
            yield (x & np.uint64(0xFF)).astype(np.uint8).tobytes()
        else:
            out = bytearray(n)
            for i in range(n):
                x = ((off + i) * 0x9E3779B1 + h) & 0xFFFFFFFF
                x ^= x >> 15
                out[i] = x & 0xFF
            yield bytes(out)


def nbytes_of(t):
    n = 1
    for d in t["shape"]:
        n *= d
    bits = n * BITS[t["dtype"]]
    assert bits % 8 == 0, t
    return bits // 8


def header_bytes(spec):
    tensors = sorted(spec["tensors"],
                     key=lambda t: (-DTYPES.index(t["dtype"]), t["name"].encode("utf-8")))
    header = {}
    meta = spec.get("metadata") or []
    if meta:
        header["__metadata__"] = dict(sorted(meta, key=lambda kv: kv[0].encode("utf-8")))
    offset = 0
    for t in tensors:
        n = nbytes_of(t)
        header[t["name"]] = {"dtype": t["dtype"], "shape": t["shape"],
                             "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    return text, tensors


def write(spec, out_path):
    """Writes the canonical file of `spec` (see the usage above) to out_path."""
    text, tensors = header_bytes(spec)
    with open(out_path, "wb") as out:
        out.write(struct.pack("<Q", len(text)))
        out.write(text)
        for t in tensors:
            for chunk in data_chunks(t["name"], nbytes_of(t)):
                out.write(chunk)


def main():
    spec_path, out_path = sys.argv[1], sys.argv[2]
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    write(spec, out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
