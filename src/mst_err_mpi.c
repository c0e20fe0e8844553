/* The MPI half of mst_err.h: kept out of mst_err.c so that the pure core
 * (dtype, header, plan, errors) links without MPI. */
#include <mpi.h>
#include <stdio.h>

#include "mst_err.h"

void mst_mpi_errstr(int mpi_code, char *buf, size_t cap)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0, cls = 0;
    if (MPI_Error_string(mpi_code, text, &len) != MPI_SUCCESS)
        snprintf(text, sizeof text, "MPI error %d", mpi_code);
    MPI_Error_class(mpi_code, &cls);
    snprintf(buf, cap, "%s (MPI error class %d)", text, cls);
}
