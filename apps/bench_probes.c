/* mst-bench's measurements, see bench_probes.h. The MPI file functions
 * defined here replace MPI's for the whole program (the MPI profiling
 * interface): they note the time and call the PMPI_ version. This file uses
 * MPI only, not mst. */
#define _DEFAULT_SOURCE
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <mpi.h>

#include "bench_probes.h"

static struct probe {
    int on;
    double first_open, last_write, last_sync, cpu_at_open;
    double commit, gathered; /* the commit's call; the end of the first MPI_Gatherv */
} probe = {0, -1, -1, -1, -1, -1, -1};

void bench_probe_start(void)
{
    probe.first_open = probe.last_write = probe.last_sync = probe.cpu_at_open = -1;
    probe.commit = probe.gathered = -1;
    probe.on = 1;
}

void bench_probe_commit(void)
{
    if (probe.on)
        probe.commit = PMPI_Wtime();
}

int bench_probe_split(double t0, double split[3])
{
    if (probe.commit < 0 || probe.gathered < probe.commit || probe.first_open < probe.gathered)
        return -1;
    split[0] = probe.commit - t0;
    split[1] = probe.gathered - probe.commit;
    split[2] = probe.first_open - probe.gathered;
    return 0;
}

void bench_probe_stop(double t0, double marks[3])
{
    probe.on = 0;
    if (probe.first_open < 0)
        probe.first_open = PMPI_Wtime();
    if (probe.last_write < probe.first_open)
        probe.last_write = probe.first_open;
    marks[0] = probe.first_open - t0;
    marks[1] = probe.last_write - t0;
    marks[2] = (probe.last_sync > probe.last_write ? probe.last_sync : probe.last_write) - t0;
}

double bench_probe_cpu_at_open(void)
{
    return probe.cpu_at_open;
}

double bench_cpu_seconds(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru))
        return 0;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

double bench_status_mib(const char *field)
{
    char line[256];
    size_t k = strlen(field);
    double v = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, k) && line[k] == ':') {
            v = strtod(line + k + 1, NULL) / 1024.0;
            break;
        }
    fclose(f);
    return v;
}

void bench_reset_peak(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

/* ---- the MPI profiling interface ---- */

/* mst's exchange of declarations ends with one (mst_gather_decls) */
int MPI_Gatherv(const void *sbuf, int scount, MPI_Datatype stype, void *rbuf,
                const int rcounts[], const int displs[], MPI_Datatype rtype, int root,
                MPI_Comm comm)
{
    int rc = PMPI_Gatherv(sbuf, scount, stype, rbuf, rcounts, displs, rtype, root, comm);
    if (probe.on && probe.commit >= 0 && probe.gathered < 0)
        probe.gathered = PMPI_Wtime();
    return rc;
}

int MPI_File_open(MPI_Comm comm, const char *filename, int amode, MPI_Info info, MPI_File *fh)
{
    if (probe.on && probe.first_open < 0) {
        probe.first_open = PMPI_Wtime();
        probe.cpu_at_open = bench_cpu_seconds();
    }
    return PMPI_File_open(comm, filename, amode, info, fh);
}

int MPI_File_write_at(MPI_File fh, MPI_Offset offset, const void *buf, int count,
                      MPI_Datatype datatype, MPI_Status *status)
{
    int rc = PMPI_File_write_at(fh, offset, buf, count, datatype, status);
    if (probe.on)
        probe.last_write = PMPI_Wtime();
    return rc;
}

int MPI_File_write_at_all(MPI_File fh, MPI_Offset offset, const void *buf, int count,
                          MPI_Datatype datatype, MPI_Status *status)
{
    int rc = PMPI_File_write_at_all(fh, offset, buf, count, datatype, status);
    if (probe.on)
        probe.last_write = PMPI_Wtime();
    return rc;
}

/* a non-blocking write (MPI_File_iwrite_at) ends with MPI_Wait (mst's writes
 * have been blocking since its redistribution stopped using them) */
int MPI_Wait(MPI_Request *req, MPI_Status *status)
{
    int rc = PMPI_Wait(req, status);
    if (probe.on)
        probe.last_write = PMPI_Wtime();
    return rc;
}

int MPI_File_sync(MPI_File fh)
{
    int rc = PMPI_File_sync(fh);
    if (probe.on)
        probe.last_sync = PMPI_Wtime();
    return rc;
}
