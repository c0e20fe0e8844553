/* mst-bench's measurements: when a save first opens, last writes and last
 * syncs its file (through the MPI profiling interface, so the library is
 * timed without being touched), and the process's CPU time and memory. */
#ifndef BENCH_PROBES_H
#define BENCH_PROBES_H

/* Starts noting the calls of the MPI file functions below (made by mst or by
 * the bench itself) until bench_probe_stop. */
void bench_probe_start(void);

/* Stops noting, and turns what was noted into the ends of the phases, counted
 * from t0: marks[0] the first MPI_File_open (plan), marks[1] the last write
 * (MPI_File_write_at, MPI_File_write_at_all, MPI_Wait), marks[2] the last
 * MPI_File_sync. A phase not seen ends where the one before it ended. */
void bench_probe_stop(double t0, double marks[3]);

/* Notes the call of mst_writer_commit (the declarations are made). */
void bench_probe_commit(void);

/* This rank's split of the plan phase, from t0: split[0] until the commit
 * (mst_writer_open and the declarations), split[1] the exchange (until the
 * first MPI_Gatherv after the commit ends: mst's gather of declarations),
 * split[2] from there to the first MPI_File_open (on rank 0: validation,
 * canonical order, offsets and header; rank 0 opens the temporary file
 * before it sends the offsets). -1 if a mark is missing. */
int bench_probe_split(double t0, double split[3]);

/* CPU seconds of this process at the first MPI_File_open since the last
 * bench_probe_start; -1 if none. */
double bench_probe_cpu_at_open(void);

/* User + system CPU seconds of this process so far. */
double bench_cpu_seconds(void);

/* A field of /proc/self/status in MiB ("VmRSS", "VmHWM"); -1 if unknown. */
double bench_status_mib(const char *field);

/* Resets VmHWM to the current resident size (/proc/self/clear_refs). */
void bench_reset_peak(void);

#endif
