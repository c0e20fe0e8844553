/* mst-bench's load methods (load, load-local, load-scatter, load-raw,
 * load-raw-file): every rank reads its part of the synthetic checkpoint
 * back, see bench_load.c. */
#ifndef BENCH_LOAD_H
#define BENCH_LOAD_H

#include <stdio.h>

#include "bench_methods.h"

/* Collective. Saves the checkpoint through mst (untimed; not with --no-save),
 * then runs the load methods of c->o (interleaved, --warmup and --repeat as
 * the save methods), one JSON line per run on rank 0's out, and with
 * --verify compares every rank's loaded boxes with its slab. Nonzero (on
 * every rank) if any rank failed. */
int bench_load_main(const bench_ctx *c, FILE *out);

#endif
