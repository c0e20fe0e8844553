#!/usr/bin/env python3
"""Confirms the `reference` column of the corpus manifest with the real
safetensors package (the Rust reader behind load_file; 0.8.0 is the version
SAFETENSORS.md describes). Needs `pip install safetensors==0.8.0 numpy`;
not run by CTest (the build machines have no safetensors).

    make_corpus.py DIR && check_reference.py DIR

Prints one line per file and exits 1 if any verdict differs.
"""
import os
import sys

import safetensors
from safetensors import safe_open


def verdict(path):
    try:
        with safe_open(path, framework="numpy") as f:
            list(f.keys())
            f.metadata()
        return "ok", ""
    except Exception as e:  # SafetensorError, OSError, ...
        return "reject", "%s: %s" % (type(e).__name__, e)


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    d = sys.argv[1]
    print("safetensors", safetensors.__version__)
    bad = 0
    with open(os.path.join(d, "manifest.tsv"), encoding="utf-8") as m:
        for line in m:
            name, expect, _message, reference = line.rstrip("\n").split("\t")
            got, why = verdict(os.path.join(d, name))
            same = got == reference
            bad += not same
            print("%-4s %-40s mst=%-16s reference(expected)=%-6s got=%-6s %s"
                  % ("ok" if same else "DIFF", name, expect, reference, got, why[:100]))
    print("%d difference(s)" % bad)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
