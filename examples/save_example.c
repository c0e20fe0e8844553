/* A complete mst program: every rank saves the layers it owns into one
 * safetensors file.
 *
 *   mpicc save_example.c -lmst -o save_example    (or find_package(mst) in CMake)
 *   mpirun -np 4 ./save_example model.safetensors
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>
#include <mst.h>

int main(int argc, char **argv)
{
    int rank, size, rc;
    mst_writer *w = NULL;
    float weight[4][8];   /* this rank's layer: 4 x 8 float32 */
    uint16_t bias[8];     /* its bias, bfloat16 bits */
    int64_t wshape[2] = {4, 8}, bshape[1] = {8};
    char wname[64], bname[64];

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        if (rank == 0)
            printf("usage: mpirun -np N %s OUTPUT.safetensors\n"
                   "Every rank saves one layer (a 4x8 F32 weight and a BF16 bias) into\n"
                   "OUTPUT.safetensors, one shared file.\n", argv[0]);
        MPI_Finalize();
        return 0;
    }
    /* a name starting with '-' is a mistyped option, not a file to create */
    if (argc != 2 || argv[1][0] == '-') {
        if (rank == 0)
            fprintf(stderr, "usage: mpirun -np N %s OUTPUT.safetensors\n", argv[0]);
        MPI_Finalize();
        return 2;
    }
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 8; j++)
            weight[i][j] = (float)(rank * 100 + i * 8 + j);
    for (int j = 0; j < 8; j++)
        bias[j] = 0x3f80; /* 1.0 in bfloat16 */
    snprintf(wname, sizeof wname, "layers.%d.weight", rank);
    snprintf(bname, sizeof bname, "layers.%d.bias", rank);

    /* Collective: every rank opens the same target. */
    rc = mst_writer_open(&w, MPI_COMM_WORLD, argv[1], MPI_INFO_NULL);
    if (rc == MST_OK) {
        /* Local: declare this rank's tensors; the data is not copied. */
        mst_writer_add(w, wname, MST_F32, 2, wshape, weight);
        mst_writer_add(w, bname, MST_BF16, 1, bshape, bias);
        mst_writer_add_metadata(w, "format", "pt");
        /* Collective: the save. Same result on every rank. */
        rc = mst_writer_commit(w);
    }
    if (rc != MST_OK && rank == 0)
        fprintf(stderr, "save failed: %s: %s\n", mst_strerror(rc), w ? mst_writer_error(w) : "");
    if (rc == MST_OK && rank == 0)
        printf("saved %d layer%s from %d rank%s to %s\n", size, size == 1 ? "" : "s", size,
               size == 1 ? "" : "s", argv[1]);
    mst_writer_free(&w);
    MPI_Finalize();
    return rc == MST_OK ? 0 : 1;
}
