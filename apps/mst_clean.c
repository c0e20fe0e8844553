/* mst-clean: removes the temporary files of saves that no longer run.
 *
 *   mst-clean [-n|--dry-run] [--min-age SECONDS] DIR...
 *
 * Looks at every "*.tmp-mst.<host>.<pid>.<16 hex>" regular file directly in
 * each DIR and removes those no running save owns (see mst_temp_clean in
 * mst.h: the save's lock, then host and pid, then age for other hosts'
 * files). Prints one line per temporary file: "removed PATH" or
 * "kept PATH (a save may own it)". Exit status 0, or 1 when a directory or
 * file could not be read or removed. Needs no MPI runtime. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mst.h"

static int clean_dir(const char *dir, int min_age, int dry_run, FILE *out)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int failed = 0;
    if (!d) {
        fprintf(stderr, "mst-clean: cannot open %s: %s\n", dir, strerror(errno));
        return 1;
    }
    while ((e = readdir(d))) {
        char path[8192];
        int verdict = MST_TEMP_NOT_TEMP, rc;
        if (!strstr(e->d_name, MST_TEMP_MARK))
            continue;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path)
            continue;
        rc = mst_temp_clean(path, min_age, dry_run, &verdict);
        if (rc != MST_OK) {
            fprintf(stderr, "mst-clean: %s: %s\n", path, mst_strerror(rc));
            failed = 1;
        } else if (verdict == MST_TEMP_ABANDONED) {
            fprintf(out, "%s %s\n", dry_run ? "would remove" : "removed", path);
        } else if (verdict == MST_TEMP_IN_USE) {
            fprintf(out, "kept %s (a save may own it)\n", path);
        }
    }
    closedir(d);
    return failed;
}

int main(int argc, char **argv)
{
    int dry_run = 0, min_age = 600, failed = 0, ndirs = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-n") || !strcmp(argv[i], "--dry-run")) {
            dry_run = 1;
        } else if (!strcmp(argv[i], "--min-age") && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 0 || v > 1000000000L) {
                fprintf(stderr, "mst-clean: bad --min-age %s\n", argv[i]);
                return 2;
            }
            min_age = (int)v;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: mst-clean [-n|--dry-run] [--min-age SECONDS] DIR...\n"
                   "Removes temporary files (*%s*) of mst saves that no longer run.\n"
                   "Files from other hosts must also be older than --min-age (default 600).\n"
                   "--version prints the version.\n",
                   MST_TEMP_MARK);
            return 0;
        } else if (!strcmp(argv[i], "--version")) {
            printf("mst-clean %s\n", mst_version_string());
            return 0;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "mst-clean: unknown option %s\n", argv[i]);
            return 2;
        } else {
            failed |= clean_dir(argv[i], min_age, dry_run, stdout);
            ndirs++;
        }
    }
    if (!ndirs) {
        fprintf(stderr, "usage: mst-clean [-n|--dry-run] [--min-age SECONDS] DIR...\n");
        return 2;
    }
    return failed;
}
