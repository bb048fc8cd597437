/* Helpers shared by the .c files of CImageIO; not part of cimageio.h. */
#ifndef CIMAGEIO_INTERNAL_H
#define CIMAGEIO_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cimageio.h"

/* Copies `msg` into `err` (truncating, always NUL-terminated). `err` may be NULL. */
static inline void cimageio_set_err(char * err, size_t err_len, const char * msg) {
    if (err != NULL && err_len > 0) {
        snprintf(err, err_len, "%s", msg != NULL ? msg : "unknown error");
    }
}

/* Checks the decoded-size limits of cimageio.h. Returns 1 when width × height is acceptable. */
static inline int cimageio_size_ok(uint64_t width, uint64_t height) {
    return width >= 1 && height >= 1 && width <= CIMAGEIO_MAX_SIDE && height <= CIMAGEIO_MAX_SIDE &&
           width * height <= (uint64_t)CIMAGEIO_MAX_PIXELS;
}

#endif
