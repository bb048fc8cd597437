/* Run-time binding of Open MPI; see include/neco_mpi.h. */
#include "neco_mpi.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Open MPI's C types are pointers to opaque structs; MPI_Status is only ever passed as NULL
 * (MPI_STATUS_IGNORE) here. */
typedef void *ompi_handle;

#define OMPI_SUCCESS 0
#define OMPI_THREAD_SERIALIZED 2
#define OMPI_IN_PLACE ((void *)1)
#define OMPI_MAX_ERROR_STRING 256

static struct {
    int open, finalized, broken, rank, size;
    void *lib;
    ompi_handle comm_world, type_byte, type_float, type_double, type_int64, op_sum, errors_return;
    int (*init_thread)(int *, char ***, int, int *);
    int (*initialized)(int *);
    int (*finalize)(void);
    int (*comm_rank)(ompi_handle, int *);
    int (*comm_size)(ompi_handle, int *);
    int (*comm_set_errhandler)(ompi_handle, ompi_handle);
    int (*iallreduce)(const void *, void *, int, ompi_handle, ompi_handle, ompi_handle, ompi_handle *);
    int (*iallgather)(const void *, int, ompi_handle, void *, int, ompi_handle, ompi_handle, ompi_handle *);
    int (*ibcast)(void *, int, ompi_handle, int, ompi_handle, ompi_handle *);
    int (*ibarrier)(ompi_handle, ompi_handle *);
    int (*test)(ompi_handle *, int *, void *);
    int (*abort)(ompi_handle, int);
    int (*error_string)(int, char *, int *);
} M;

static void say(char *err, size_t len, const char *text) {
    if (err && len) snprintf(err, len, "%s", text);
}

static int mpi_error(int code, const char *what, char *err, size_t len) {
    char text[OMPI_MAX_ERROR_STRING + 1] = "unknown MPI error";
    int n = 0;
    if (M.error_string && M.error_string(code, text, &n) == OMPI_SUCCESS && n >= 0 && n <= OMPI_MAX_ERROR_STRING) text[n] = 0;
    if (err && len) snprintf(err, len, "MPI %s failed on rank %d: %s (code %d)", what, M.rank, text, code);
    return code ? code : -1;
}

#define BIND(field, name)                                                         \
    do {                                                                          \
        *(void **)(&M.field) = dlsym(M.lib, name);                                \
        if (!M.field) {                                                           \
            snprintf(err, errlen, "%s has no symbol %s (libneco needs Open MPI's ABI, libmpi.so.40)", library, name); \
            return -1;                                                            \
        }                                                                         \
    } while (0)

int neco_mpi_open(const char *library, char *err, size_t errlen) {
    if (M.open) return 0;
    if (M.finalized) { say(err, errlen, "MPI was finalized already; it cannot start again in this process"); return -1; }
    if (!library || !*library) library = "libmpi.so.40";
    if (!M.lib) {
        M.lib = dlopen(library, RTLD_NOW | RTLD_GLOBAL);
        if (!M.lib) {
            const char *why = dlerror();
            snprintf(err, errlen, "cannot load %s (%s): install Debian's openmpi-bin (libopenmpi3), or point NECO_MPI_LIB at "
                     "Open MPI's libmpi.so", library, why ? why : "unknown reason");
            return -1;
        }
    }
    BIND(init_thread, "MPI_Init_thread");
    BIND(initialized, "MPI_Initialized");
    BIND(finalize, "MPI_Finalize");
    BIND(comm_rank, "MPI_Comm_rank");
    BIND(comm_size, "MPI_Comm_size");
    BIND(comm_set_errhandler, "MPI_Comm_set_errhandler");
    BIND(iallreduce, "MPI_Iallreduce");
    BIND(iallgather, "MPI_Iallgather");
    BIND(ibcast, "MPI_Ibcast");
    BIND(ibarrier, "MPI_Ibarrier");
    BIND(test, "MPI_Test");
    BIND(abort, "MPI_Abort");
    BIND(error_string, "MPI_Error_string");
    BIND(comm_world, "ompi_mpi_comm_world");
    BIND(type_byte, "ompi_mpi_byte");
    BIND(type_float, "ompi_mpi_float");
    BIND(type_double, "ompi_mpi_double");
    BIND(type_int64, "ompi_mpi_int64_t");
    BIND(op_sum, "ompi_mpi_op_sum");
    BIND(errors_return, "ompi_mpi_errors_return");
    int already = 0;
    M.initialized(&already);
    if (!already) {
        int provided = 0;
        int rc = M.init_thread(NULL, NULL, OMPI_THREAD_SERIALIZED, &provided);
        if (rc != OMPI_SUCCESS) return mpi_error(rc, "MPI_Init_thread", err, errlen);
        /* MPI started here, so it ends here: at exit, unless a collective failed (then another
         * rank may never reach MPI_Finalize, and the launcher ends the job on our exit code). */
        atexit(neco_mpi_finalize);
    }
    int rc = M.comm_set_errhandler(M.comm_world, M.errors_return);
    if (rc != OMPI_SUCCESS) return mpi_error(rc, "MPI_Comm_set_errhandler", err, errlen);
    if ((rc = M.comm_rank(M.comm_world, &M.rank)) != OMPI_SUCCESS) return mpi_error(rc, "MPI_Comm_rank", err, errlen);
    if ((rc = M.comm_size(M.comm_world, &M.size)) != OMPI_SUCCESS) return mpi_error(rc, "MPI_Comm_size", err, errlen);
    M.open = 1;
    return 0;
}

int neco_mpi_is_open(void) { return M.open; }
int neco_mpi_rank(void) { return M.open ? M.rank : 0; }
int neco_mpi_size(void) { return M.open ? M.size : 1; }

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Polls `req` until it completes or `timeout` seconds pass. Spins briefly (a collective of small
 * messages completes in microseconds), then sleeps in steps growing to 1 ms. */
static int wait_for(ompi_handle *req, const char *what, double timeout, char *err, size_t errlen) {
    double start = now_seconds();
    long sleep_ns = 1000;
    for (long spins = 0;; spins++) {
        int done = 0;
        int rc = M.test(req, &done, NULL);
        if (rc != OMPI_SUCCESS) { M.broken = 1; return mpi_error(rc, what, err, errlen); }
        if (done) return 0;
        if (timeout > 0 && now_seconds() - start > timeout) {
            if (err && errlen)
                snprintf(err, errlen, "MPI %s: rank %d of %d waited %.0f s for the other ranks (one stopped or hangs; "
                         "NECO_MPI_TIMEOUT sets the limit)", what, M.rank, M.size, timeout);
            M.broken = 1;
            return -2;
        }
        if (spins > 2000) {
            struct timespec ts = {0, sleep_ns};
            nanosleep(&ts, NULL);
            if (sleep_ns < 1000000) sleep_ns *= 2;
        }
    }
}

static int need_open(char *err, size_t errlen) {
    if (M.open) return 0;
    say(err, errlen, "MPI is not running in this process");
    return -1;
}

int neco_mpi_allreduce_sum(void *buffer, int64_t count, int type, double timeout, char *err, size_t errlen) {
    if (need_open(err, errlen)) return -1;
    ompi_handle dt = type == NECO_MPI_F64 ? M.type_double : type == NECO_MPI_I64 ? M.type_int64 : M.type_float;
    size_t width = type == NECO_MPI_F32 ? 4 : 8;
    /* MPI counts are int: reduce in chunks of at most 2^28 values. */
    const int64_t chunk = (int64_t)1 << 28;
    for (int64_t at = 0; at < count; at += chunk) {
        int n = (int)(count - at < chunk ? count - at : chunk);
        ompi_handle req = NULL;
        int rc = M.iallreduce(OMPI_IN_PLACE, (char *)buffer + (size_t)at * width, n, dt, M.op_sum, M.comm_world, &req);
        if (rc != OMPI_SUCCESS) return mpi_error(rc, "allreduce", err, errlen);
        if ((rc = wait_for(&req, "allreduce", timeout, err, errlen))) return rc;
    }
    return 0;
}

int neco_mpi_allgather(const void *send, void *recv, int64_t bytes, double timeout, char *err, size_t errlen) {
    if (need_open(err, errlen)) return -1;
    if (bytes < 0 || bytes > INT_MAX) {
        snprintf(err, errlen, "MPI allgather of %lld bytes per rank is beyond MPI's int count", (long long)bytes);
        return -1;
    }
    ompi_handle req = NULL;
    int rc = M.iallgather(send, (int)bytes, M.type_byte, recv, (int)bytes, M.type_byte, M.comm_world, &req);
    if (rc != OMPI_SUCCESS) return mpi_error(rc, "allgather", err, errlen);
    return wait_for(&req, "allgather", timeout, err, errlen);
}

int neco_mpi_broadcast(void *buffer, int64_t bytes, int root, double timeout, char *err, size_t errlen) {
    if (need_open(err, errlen)) return -1;
    if (bytes < 0 || bytes > INT_MAX) {
        snprintf(err, errlen, "MPI broadcast of %lld bytes is beyond MPI's int count", (long long)bytes);
        return -1;
    }
    ompi_handle req = NULL;
    int rc = M.ibcast(buffer, (int)bytes, M.type_byte, root, M.comm_world, &req);
    if (rc != OMPI_SUCCESS) return mpi_error(rc, "broadcast", err, errlen);
    return wait_for(&req, "broadcast", timeout, err, errlen);
}

int neco_mpi_barrier(double timeout, char *err, size_t errlen) {
    if (need_open(err, errlen)) return -1;
    ompi_handle req = NULL;
    int rc = M.ibarrier(M.comm_world, &req);
    if (rc != OMPI_SUCCESS) return mpi_error(rc, "barrier", err, errlen);
    return wait_for(&req, "barrier", timeout, err, errlen);
}

void neco_mpi_abort(int code) {
    if (M.open) M.abort(M.comm_world, code);
}

void neco_mpi_finalize(void) {
    if (!M.open) return;
    M.open = 0;
    M.finalized = 1;
    if (!M.broken) M.finalize();
}
