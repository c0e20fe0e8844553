/* The column-split exchange alone: per round one MPI_Alltoallw of every rank's rows into a
 * stage, then one pwrite (alltoallw) or one MPI_File_write_at (alltoallw+mpiio); or packed,
 * MPI_Alltoallv, unpacked (alltoallv+unpack); or packed, MPI_Alltoallv, pwritev from the
 * received pieces (alltoallv+pwritev). Timing only: the bytes are not checked.
 *   mpicc -O2 -o redist-proto redist-proto.c; mpirun -np 4 ./redist-proto /tmp/x.bin 6 512 */
/* column-split redistribution prototypes: 8 x [2048,4096] BF16, column blocks per rank */
#define _GNU_SOURCE
#include <mpi.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>
#define T 8
#define R 2048
#define C 4096
#define E 2
int main(int argc, char **argv) {
  int me, n; MPI_Init(&argc, &argv); MPI_Comm_rank(MPI_COMM_WORLD, &me); MPI_Comm_size(MPI_COMM_WORLD, &n);
  const char *path = argv[1]; int reps = atoi(argv[2]); size_t half = (size_t)atoi(argv[3]) << 10;
  size_t rowb = (size_t)C * E, seg = rowb / n, tb = (size_t)R * rowb, mine = tb / n;
  char *buf = malloc(mine * T); for (size_t i = 0; i < mine * T; i++) buf[i] = (char)(i * 7 + me);
  size_t rows_per = half / rowb; /* rows in one rank's stretch per round */
  size_t rounds = (size_t)T * R / (rows_per * n);
  char *stage[2] = {malloc(half), malloc(half)};
  char *sbuf = malloc(half), *rbuf = malloc(half);
  int *cnt = malloc(n * sizeof(int)), *dsp = malloc(n * sizeof(int));
  MPI_Datatype st, rt; /* alltoallw types */
  MPI_Type_vector((int)rows_per, (int)seg, (int)seg, MPI_BYTE, &st); /* placeholder, replaced */
  MPI_Type_free(&st);
  /* send: rows_per rows of my piece, contiguous in my buffer (my piece is R x seg, row-major) */
  MPI_Type_contiguous((int)(rows_per * seg), MPI_BYTE, &st); MPI_Type_commit(&st);
  /* recv: into stage, rows_per rows of seg bytes at stride rowb */
  MPI_Type_vector((int)rows_per, (int)seg, (int)rowb, MPI_BYTE, &rt); MPI_Type_commit(&rt);
  MPI_Datatype *sts = malloc(n * sizeof *sts), *rts = malloc(n * sizeof *rts);
  int *sc = malloc(n * sizeof(int)), *rc = malloc(n * sizeof(int)), *sd = malloc(n * sizeof(int)), *rd = malloc(n * sizeof(int));
  const char *names[] = {"alltoallw", "alltoallv+unpack", "alltoallv+pwritev", "alltoallw+mpiio"};
  for (int rep = 0; rep < reps; rep++)
    for (int m = 0; m < 4; m++) {
      if (me == 0) unlink(path);
      MPI_Barrier(MPI_COMM_WORLD);
      double t0 = MPI_Wtime();
      int fd = -1; MPI_File fh = MPI_FILE_NULL;
      if (m == 3) { if (me == 0) { int f = open(path, O_WRONLY | O_CREAT, 0644); close(f); } MPI_Barrier(MPI_COMM_WORLD); MPI_File_open(MPI_COMM_SELF, path, MPI_MODE_WRONLY, MPI_INFO_NULL, &fh); }
      else fd = open(path, O_WRONLY | O_CREAT, 0644);
      for (size_t r = 0; r < rounds; r++) {
        /* global row block of round r: rows [r*rows_per*n, (r+1)*rows_per*n) of the T*R rows; dest d gets rows_per rows */
        size_t g0 = r * rows_per * n;
        for (int d = 0; d < n; d++) {
          size_t grow = g0 + d * rows_per; /* first global row of dest d's stretch */
          const char *src = buf + grow * seg; /* my piece rows are contiguous per tensor; T*R rows of seg */
          if (m == 0 || m == 3) {
            sts[d] = st; rts[d] = rt; sc[d] = rc[d] = 1;
            sd[d] = (int)(src - buf);
            rd[d] = (int)(d * 0); /* placeholder */
          } else {
            memcpy(sbuf + d * rows_per * seg, src, rows_per * seg);
            cnt[d] = (int)(rows_per * seg); dsp[d] = (int)(d * rows_per * seg);
          }
        }
        char *stg = stage[r % 2];
        off_t foff = (off_t)((g0 + me * rows_per) * rowb);
        if (m == 0 || m == 3) {
          for (int p = 0; p < n; p++) { rts[p] = rt; rd[p] = (int)(p * seg); }
          MPI_Alltoallw(buf, sc, sd, sts, stg, rc, rd, rts, MPI_COMM_WORLD);
          if (m == 3) MPI_File_write_at(fh, foff, stg, (int)(rows_per * rowb), MPI_BYTE, MPI_STATUS_IGNORE);
          else if (pwrite(fd, stg, rows_per * rowb, foff) < 0) abort();
        } else {
          MPI_Alltoallv(sbuf, cnt, dsp, MPI_BYTE, rbuf, cnt, dsp, MPI_BYTE, MPI_COMM_WORLD);
          if (m == 1) {
            for (size_t i = 0; i < rows_per; i++)
              for (int p = 0; p < n; p++)
                memcpy(stg + i * rowb + p * seg, rbuf + p * rows_per * seg + i * seg, seg);
            if (pwrite(fd, stg, rows_per * rowb, foff) < 0) abort();
          } else {
            struct iovec iov[1024]; size_t k = 0; off_t o = foff;
            for (size_t i = 0; i < rows_per; i++)
              for (int p = 0; p < n; p++) {
                iov[k].iov_base = rbuf + p * rows_per * seg + i * seg; iov[k].iov_len = seg; k++;
                if (k == 1024) { if (pwritev(fd, iov, (int)k, o) < 0) abort(); o += (off_t)(k * seg); k = 0; }
              }
            if (k && pwritev(fd, iov, (int)k, o) < 0) abort();
          }
        }
      }
      if (m == 3) MPI_File_close(&fh); else close(fd);
      MPI_Barrier(MPI_COMM_WORLD);
      double dt = MPI_Wtime() - t0;
      if (me == 0 && rep > 0) printf("{\"method\":\"%s\",\"ranks\":%d,\"half_kib\":%zu,\"seconds\":%.6f}\n", names[m], n, half >> 10, dt);
    }
  MPI_Finalize();
  return 0;
}
