/* The standalone check of docs/BENCHMARKS.md, "The 1-rank gap is the order
 * of the reads": one process reads the 256 MiB of tensor data of a
 * safetensors file (header of 3160 bytes + 8, as mst-bench --size 256MiB
 * --tensors 32 --dtype BF16 writes it) in 32 reads of 8 MiB, in file order
 * ("sequential") or in the scattered order 0, 13, 26, 7, ... ("scattered"),
 * the two orders alternated; before each pass the page cache is dropped and
 * the process sleeps 3 s. Prints wall and CPU seconds per pass. Root only.
 * A third argument "random" first calls posix_fadvise(POSIX_FADV_RANDOM).
 *   cc -O2 -o read-order read-order.c && ./read-order FILE ROUNDS [random] */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static double cpu(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_stime.tv_sec +
           (u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

int main(int argc, char **argv)
{
    size_t total = 256ul << 20, sz = 8ul << 20;
    int n = 32, perm[32], rounds = argc > 2 ? atoi(argv[2]) : 5, fd;
    char *buf = malloc(total);
    if (argc < 2 || !buf || (fd = open(argv[1], O_RDONLY)) < 0)
        return 2;
    if (argc > 3 && !strcmp(argv[3], "random"))
        posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
    for (int i = 0; i < n; i++)
        perm[i] = (i * 13) % 32;
    memset(buf, 1, total);
    for (int r = 0; r < rounds; r++)
        for (int s = 0; s < 2; s++) {
            int scattered = (s + r) % 2, d;
            double t0, c0;
            sync();
            if ((d = open("/proc/sys/vm/drop_caches", O_WRONLY)) < 0 || write(d, "3", 1) != 1)
                return 2;
            close(d);
            sleep(3);
            memset(buf, 0, total);
            t0 = now();
            c0 = cpu();
            for (int i = 0; i < n; i++) {
                size_t o = (size_t)(scattered ? perm[i] : i) * sz;
                if (pread(fd, buf + o, sz, (off_t)(o + 3168)) != (ssize_t)sz)
                    return 1;
            }
            printf("%s wall %.3f cpu %.3f\n", scattered ? "scattered " : "sequential", now() - t0,
                   cpu() - c0);
            fflush(stdout);
        }
    return 0;
}
