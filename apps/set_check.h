/* mst-inspect's check of a whole Hugging Face multi-file set. */
#ifndef MST_SET_CHECK_H
#define MST_SET_CHECK_H

#include <stdio.h>

/* Validates the set that the index file `path` describes; prints a summary
 * line to out (unless check_only) or the first problem to err. Returns 0
 * (valid) or 1. */
int mst_inspect_index(const char *path, int check_only, FILE *out, FILE *err);

#endif
