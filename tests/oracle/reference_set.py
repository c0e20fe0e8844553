#!/usr/bin/env python3
"""The oracle of multi-file sets, independent of mst: the shards and the
index that a save with a maximum shard size must produce.

Tensors in the canonical order (dtype descending, then name bytes), each
shard filled greedily up to LIMIT bytes of tensor data, a larger tensor alone
in its shard; every shard a canonical file (reference_writer) with
"__metadata__" {"format": "pt"} plus the given metadata; the index as
transformers writes it: json.dumps(index, indent=2, sort_keys=True) + "\\n".
One shard: model.safetensors and no index.

Usage: reference_set.py SPEC.json LIMIT OUTDIR
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_writer as ref  # noqa: E402


def shards_of(tensors, limit):
    order = sorted(tensors, key=lambda t: (-ref.DTYPES.index(t["dtype"]),
                                           t["name"].encode("utf-8")))
    shards, current, fill = [], [], 0
    for t in order:
        n = ref.nbytes_of(t)
        if current and fill + n > limit:
            shards.append(current)
            current, fill = [], 0
        current.append(t)
        fill += n
        if n > limit:
            shards.append(current)
            current, fill = [], 0
    if current or not shards:
        shards.append(current)
    return shards


def write_set(spec, limit, outdir):
    """Writes the expected files into outdir; returns their names."""
    meta = dict(spec.get("metadata") or [])
    meta.setdefault("format", "pt")
    shards = shards_of(spec["tensors"], limit)
    n = len(shards)
    names = []
    if n == 1:
        names.append("model.safetensors")
    else:
        names = ["model-%05d-of-%05d.safetensors" % (k + 1, n) for k in range(n)]
    weight_map, total = {}, 0
    for name, part in zip(names, shards):
        ref.write({"metadata": sorted(meta.items()), "tensors": part},
                  os.path.join(outdir, name))
        for t in part:
            weight_map[t["name"]] = name
            total += ref.nbytes_of(t)
    if n > 1:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        with open(os.path.join(outdir, "model.safetensors.index.json"), "w") as f:
            f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")
        names.append("model.safetensors.index.json")
    return names


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        spec = json.load(f)
    os.makedirs(sys.argv[3], exist_ok=True)
    write_set(spec, int(sys.argv[2]), sys.argv[3])
    return 0


if __name__ == "__main__":
    sys.exit(main())
