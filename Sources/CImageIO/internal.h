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

/* The pixel cap of `options` (NULL = defaults). */
static inline uint64_t cimageio_max_pixels(const cimageio_options * options) {
    if (options == NULL || options->max_pixels == 0 || options->max_pixels > (uint64_t)CIMAGEIO_MAX_PIXELS) {
        return (uint64_t)CIMAGEIO_MAX_PIXELS;
    }
    return options->max_pixels;
}

/* Checks the decoded-size limits of cimageio.h. Returns 1 when width × height is acceptable. */
static inline int cimageio_size_ok(uint64_t width, uint64_t height, uint64_t max_pixels) {
    return width >= 1 && height >= 1 && width <= CIMAGEIO_MAX_SIDE && height <= CIMAGEIO_MAX_SIDE &&
           width * height <= max_pixels;
}

/* The message for a picture beyond the limits. */
static inline void cimageio_size_message(char * msg, size_t len, uint64_t width, uint64_t height,
                                         uint64_t max_pixels) {
    if (width > CIMAGEIO_MAX_SIDE || height > CIMAGEIO_MAX_SIDE) {
        snprintf(msg, len, "image of %llu x %llu pixels exceeds the limit of %d pixels a side",
                 (unsigned long long)width, (unsigned long long)height, CIMAGEIO_MAX_SIDE);
    } else {
        snprintf(msg, len,
                 "image of %llu x %llu = %llu pixels exceeds the pixel limit of %llu "
                 "(a possible decompression bomb; raise the limit to decode it)",
                 (unsigned long long)width, (unsigned long long)height,
                 (unsigned long long)(width * height), (unsigned long long)max_pixels);
    }
}

#endif
