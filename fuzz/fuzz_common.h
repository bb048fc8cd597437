/* fuzz_common.h: helpers shared by the libFuzzer targets of fuzz/ (see fuzz/README.md).
 *
 * The C ABI takes file paths, so the targets hand it their input through a memfd: an anonymous
 * regular file, named /proc/self/fd/N, rewritten for every input. */
#ifndef NECO_FUZZ_COMMON_H
#define NECO_FUZZ_COMMON_H

#define _GNU_SOURCE
#include <neco.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* A memfd holding `n` bytes of `data` (reused across calls), and its path. */
static inline const char * fuzz_file(int * fd, char * path, size_t path_len, const void * data, size_t n) {
    if (*fd < 0) {
        *fd = memfd_create("neco-fuzz", MFD_CLOEXEC);
        if (*fd < 0) {
            perror("memfd_create");
            abort();
        }
        snprintf(path, path_len, "/proc/self/fd/%d", *fd);
    }
    if (ftruncate(*fd, 0) != 0 || (n > 0 && pwrite(*fd, data, n, 0) != (ssize_t)n)) {
        perror("memfd write");
        abort();
    }
    return path;
}

/* The tiny test model (Tests/Fixtures/vit/tiny_reg4.weights.safetensors, 4 heads), from
 * $NECO_FUZZ_MODEL or the path compiled in. */
static inline const char * fuzz_model_path(void) {
    const char * p = getenv("NECO_FUZZ_MODEL");
#ifdef NECO_FUZZ_DEFAULT_MODEL
    if (p == NULL || p[0] == '\0') p = NECO_FUZZ_DEFAULT_MODEL;
#endif
    if (p == NULL) {
        fprintf(stderr, "set NECO_FUZZ_MODEL to Tests/Fixtures/vit/tiny_reg4.weights.safetensors\n");
        abort();
    }
    return p;
}

/* Every status a call may return; anything else (or a crash) is a finding. */
static inline void fuzz_check_status(neco_status st) {
    if (st > 0 || st < NECO_ERR_VERSION) abort(); /* not a documented status */
    if (st == NECO_ERR_INTERNAL) {
        fprintf(stderr, "NECO_ERR_INTERNAL: %s\n", neco_last_error());
        abort();
    }
    if (st != NECO_OK && strchr(neco_last_error(), '\n') != NULL) abort(); /* messages are one line */
}

#endif
