/* CRC-32 speed on one core: ISA-L's crc32_gzip_refl against zlib's crc32
 * (the same value), and the GF(2) combine of mst_crc.c. Medians of 15 runs
 * over a 64 MiB buffer (out of cache) and a 1 MiB one (in L2).
 *   cc -O2 scripts/bench_crc.c -lisal -lz -o /tmp/bench_crc && /tmp/bench_crc */
#define _POSIX_C_SOURCE 200809L
#include <isa-l/crc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(void)
{
    size_t sizes[2] = {(size_t)64 << 20, (size_t)1 << 20};
    unsigned char *buf = malloc(sizes[0]);
    for (size_t i = 0; i < sizes[0]; i++)
        buf[i] = (unsigned char)(i * 2654435761u >> 13);
    for (int s = 0; s < 2; s++) {
        size_t n = sizes[s];
        int reps = s == 0 ? 1 : 64;
        double ti[15], tz[15];
        unsigned a = 0, b = 0;
        for (int r = 0; r < 15; r++) { /* interleaved */
            double t0 = now();
            for (int k = 0; k < reps; k++)
                a = crc32_gzip_refl(0, buf, (unsigned)n);
            double t1 = now();
            for (int k = 0; k < reps; k++)
                b = (unsigned)crc32(0, buf, (uInt)n);
            double t2 = now();
            ti[r] = (t1 - t0) / reps;
            tz[r] = (t2 - t1) / reps;
        }
        qsort(ti, 15, sizeof *ti, cmp);
        qsort(tz, 15, sizeof *tz, cmp);
        printf("%6zu KiB: isa-l %.2f GB/s, zlib %.2f GB/s (median of 15), same value: %s\n",
               n >> 10, (double)n / ti[7] / 1e9, (double)n / tz[7] / 1e9, a == b ? "yes" : "NO");
    }
    free(buf);
    return 0;
}
