/* Row pieces against direct strided column writes of 8 BF16 [2048, 4096] into the page cache:
 * every rank one pwrite per tensor (rows), one pwrite per row piece (cols-pwrite), or one
 * MPI_File_write_at through a vector file view without data sieving (cols-mpiio-view).
 *   mpicc -O2 -o direct-cols direct-cols.c; mpirun -np 4 ./direct-cols /tmp/x.bin 8 */
/* rows vs direct strided column writes, 8 x [2048,4096] BF16, page cache */
#define _GNU_SOURCE
#include <mpi.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#define T 8
#define R 2048
#define C 4096
#define E 2
int main(int argc, char **argv) {
  int me, n; MPI_Init(&argc, &argv); MPI_Comm_rank(MPI_COMM_WORLD, &me); MPI_Comm_size(MPI_COMM_WORLD, &n);
  const char *path = argv[1]; int reps = atoi(argv[2]);
  size_t tb = (size_t)R * C * E, mine = tb / n;
  char *buf = malloc(mine * T); memset(buf, me + 1, mine * T);
  const char *names[] = {"rows", "cols-pwrite", "cols-mpiio-view"};
  for (int rep = 0; rep < reps; rep++)
    for (int m = 0; m < 3; m++) {
      if (me == 0) unlink(path);
      MPI_Barrier(MPI_COMM_WORLD);
      double t0 = MPI_Wtime();
      if (m < 2) {
        int fd = open(path, O_WRONLY | O_CREAT, 0644);
        for (int t = 0; t < T; t++) {
          if (m == 0) { if (pwrite(fd, buf + t * mine, mine, (off_t)(t * tb + me * mine)) != (ssize_t)mine) abort(); }
          else {
            size_t seg = (size_t)C * E / n;
            for (int r = 0; r < R; r++)
              if (pwrite(fd, buf + t * mine + r * seg, seg, (off_t)(t * tb + (size_t)r * C * E + me * seg)) != (ssize_t)seg) abort();
          }
        }
        close(fd);
      } else {
        MPI_File fh; MPI_Datatype v, ft; MPI_Info info; MPI_Info_create(&info);
        MPI_Info_set(info, "romio_ds_write", "disable");
        MPI_File_open(MPI_COMM_WORLD, path, MPI_MODE_WRONLY | MPI_MODE_CREATE, info, &fh);
        int seg = C * E / n;
        MPI_Type_vector(R * T, seg, C * E, MPI_BYTE, &v);
        MPI_Type_commit(&v);
        MPI_File_set_view(fh, (MPI_Offset)me * seg, MPI_BYTE, v, "native", info);
        MPI_File_write_at(fh, 0, buf, (int)(mine * T), MPI_BYTE, MPI_STATUS_IGNORE);
        MPI_File_close(&fh); MPI_Type_free(&v); MPI_Info_free(&info);
      }
      MPI_Barrier(MPI_COMM_WORLD);
      double dt = MPI_Wtime() - t0;
      if (me == 0 && rep > 0) printf("{\"method\":\"%s\",\"ranks\":%d,\"seconds\":%.6f}\n", names[m], n, dt);
    }
  MPI_Finalize();
  return 0;
}
