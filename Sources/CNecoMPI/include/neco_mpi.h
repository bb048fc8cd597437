/* neco_mpi.h: the few MPI calls libneco needs, bound at run time.
 *
 * libneco does not link against MPI: a process that was not started by an MPI launcher never
 * touches it, and the package builds on machines without MPI. Under a launcher (mpirun, srun), the
 * Swift side calls neco_mpi_open, which dlopen()s the Open MPI library (Debian's libopenmpi3:
 * libmpi.so.40, or the path in NECO_MPI_LIB) with RTLD_GLOBAL (Open MPI's own plug-ins resolve
 * symbols from it) and binds the functions below by name. Open MPI's predefined handles
 * (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ...) are addresses of exported globals, bound the same way.
 *
 * Every collective is started non-blocking and completed by polling MPI_Test against a deadline,
 * so that a rank that died or hangs turns into an error on the others instead of a hang. All
 * calls return 0 on success, else nonzero with a one-line message in `err`. */
#ifndef NECO_MPI_H
#define NECO_MPI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Element types of neco_mpi_allreduce_sum. */
enum { NECO_MPI_F32 = 0, NECO_MPI_F64 = 1, NECO_MPI_I64 = 2 };

/* Loads the library (`library`: a file name or path, NULL = "libmpi.so.40"), initialises MPI
 * (MPI_THREAD_SERIALIZED) and sets MPI_ERRORS_RETURN on MPI_COMM_WORLD. Calling it again after a
 * success is a no-op. */
int neco_mpi_open(const char *library, char *err, size_t errlen);
/* 1 once neco_mpi_open succeeded. */
int neco_mpi_is_open(void);
int neco_mpi_rank(void);
int neco_mpi_size(void);

/* In-place elementwise sum over all ranks of `count` values of `type`. `timeout` in seconds
 * (<= 0: wait forever). */
int neco_mpi_allreduce_sum(void *buffer, int64_t count, int type, double timeout, char *err, size_t errlen);
/* recv (size × bytes) ← every rank's `bytes` bytes of `send`, in rank order. */
int neco_mpi_allgather(const void *send, void *recv, int64_t bytes, double timeout, char *err, size_t errlen);
/* `bytes` bytes of `buffer` from rank `root` to every rank. */
int neco_mpi_broadcast(void *buffer, int64_t bytes, int root, double timeout, char *err, size_t errlen);
int neco_mpi_barrier(double timeout, char *err, size_t errlen);
/* MPI_Abort on MPI_COMM_WORLD: the launcher stops every rank. Returns only if MPI is not open. */
void neco_mpi_abort(int code);
/* MPI_Finalize (once; a no-op when MPI is not open). */
void neco_mpi_finalize(void);

#ifdef __cplusplus
}
#endif
#endif
