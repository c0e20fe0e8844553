/* mst-bench train: a training-loop stand-in saving every K steps,
 * synchronously or split phase (bench_train.c). */
#ifndef BENCH_TRAIN_H
#define BENCH_TRAIN_H

#include <stdio.h>

#include <mpi.h>

/* Collective over comm. argv[0] is "train"; returns the exit status. */
int bench_train_main(int argc, char **argv, MPI_Comm comm, FILE *out, FILE *err);

#endif
