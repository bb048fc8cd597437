/* PNG decoding (libpng low-level reader, errors caught with setjmp) and encoding (libpng
 * simplified writer, which catches its own errors). */
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

#include "cimageio.h"
#include "internal.h"

struct png_guard {
    jmp_buf jump;
    int32_t status; /* returned after the longjmp */
    const uint8_t * data;
    size_t n_data;
    size_t pos;
    int allow_truncated; /* cimageio_options.allow_truncated */
    int reading_rows;    /* set while png_read_image runs */
    int truncated;       /* the data ended inside the image rows (allow_truncated only) */
    char message[CIMAGEIO_ERR_LEN];
};

static void guard_fail(struct png_guard * g, int32_t status) {
    g->status = status;
    longjmp(g->jump, 1);
}

/* libpng error callback. Never returns (libpng requires that). */
static void guard_error(png_structp png, png_const_charp msg) {
    struct png_guard * g = (struct png_guard *)png_get_error_ptr(png);
    snprintf(g->message, sizeof g->message, "%s", msg != NULL ? msg : "libpng error");
    guard_fail(g, CIMAGEIO_ERR_FORMAT);
}

/* libpng warning callback: nothing is printed. */
static void guard_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

/* Reads from the in-memory file; running past its end is an error ("truncated"). */
static void guard_read(png_structp png, png_bytep dst, size_t n) {
    struct png_guard * g = (struct png_guard *)png_get_io_ptr(png);
    if (n > g->n_data - g->pos) {
        if (g->allow_truncated && g->reading_rows) g->truncated = 1;
        png_error(png, "unexpected end of file (truncated PNG)");
    }
    memcpy(dst, g->data + g->pos, n);
    g->pos += n;
}

static uint32_t be32(const uint8_t * p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Drops the alpha channel in place when there is one, and hands the pixels to `out`. */
static void finish_png(uint8_t * pixels, size_t width, size_t height, size_t channels,
                       cimageio_image * out) {
    if (channels == 4) {
        /* Pillow's RGBA -> RGB; dst index 3i never passes src index 4i. */
        const size_t n = width * height;
        for (size_t i = 0; i < n; i++) {
            pixels[3 * i + 0] = pixels[4 * i + 0];
            pixels[3 * i + 1] = pixels[4 * i + 1];
            pixels[3 * i + 2] = pixels[4 * i + 2];
        }
        uint8_t * shrunk = realloc(pixels, n * 3);
        if (shrunk != NULL) pixels = shrunk;
    }
    out->width = (int32_t)width;
    out->height = (int32_t)height;
    out->pixels = pixels;
}

int32_t cimageio_decode_png(const uint8_t * data, size_t n_data, const cimageio_options * options,
                            cimageio_image * out, char * err, size_t err_len) {
    if (out == NULL) {
        cimageio_set_err(err, err_len, "output image pointer is NULL");
        return CIMAGEIO_ERR_INVALID_ARG;
    }
    memset(out, 0, sizeof *out);
    if (data == NULL || n_data == 0) {
        cimageio_set_err(err, err_len, "empty input");
        return CIMAGEIO_ERR_FORMAT;
    }

    /* Refuse oversized pictures from the IHDR bytes alone: png_read_info would first read on to
     * the first IDAT, and a huge claimed size should not depend on what follows. */
    if (n_data >= 24 && memcmp(data + 12, "IHDR", 4) == 0) {
        const uint32_t w = be32(data + 16), h = be32(data + 20);
        if (w > 0 && h > 0 && !cimageio_size_ok(w, h, cimageio_max_pixels(options))) {
            char msg[CIMAGEIO_ERR_LEN];
            cimageio_size_message(msg, sizeof msg, w, h, cimageio_max_pixels(options));
            cimageio_set_err(err, err_len, msg);
            return CIMAGEIO_ERR_TOO_LARGE;
        }
    }

    struct png_guard guard;
    memset(&guard, 0, sizeof guard);
    guard.data = data;
    guard.n_data = n_data;
    guard.allow_truncated = options != NULL && options->allow_truncated != 0;
    const uint64_t max_pixels = cimageio_max_pixels(options);
    /* Kept in memory for the longjmp of a truncated file (locals set after setjmp are not). */
    volatile size_t kept_width = 0, kept_height = 0, kept_channels = 0;
    png_structp volatile png = NULL;
    png_infop volatile info = NULL;
    uint8_t * volatile pixels = NULL; /* (H, W, C) decoded, C = 3 or 4, compacted to (H, W, 3) */
    png_bytep * volatile rows = NULL; /* (H) row pointers into pixels */

    /* Set before png_create_read_struct: libpng may report errors from there on. */
    if (setjmp(guard.jump)) {
        png_structp p = png;
        png_infop i = info;
        if (p != NULL) png_destroy_read_struct(&p, i != NULL ? &i : NULL, NULL);
        free(rows);
        if (guard.truncated && pixels != NULL) {
            /* allow_truncated: the rows read so far; the rest stays black (calloc). */
            finish_png(pixels, kept_width, kept_height, kept_channels, out);
            return CIMAGEIO_OK;
        }
        free(pixels);
        cimageio_set_err(err, err_len, guard.message);
        return guard.status;
    }

    png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &guard, guard_error, guard_warning);
    if (png == NULL) {
        snprintf(guard.message, sizeof guard.message, "cannot create a libpng reader");
        guard_fail(&guard, CIMAGEIO_ERR_TOO_LARGE);
    }
    info = png_create_info_struct(png);
    if (info == NULL) {
        snprintf(guard.message, sizeof guard.message, "cannot create a libpng info struct");
        guard_fail(&guard, CIMAGEIO_ERR_TOO_LARGE);
    }
    png_set_read_fn(png, &guard, guard_read);
    /* Pillow refuses a bad CRC in any chunk (unless LOAD_TRUNCATED_IMAGES); libpng would only
     * warn for ancillary chunks. */
    png_set_crc_action(png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);
    /* A backstop for the IHDR check above; the pixel-count check follows png_read_info. */
    png_set_user_limits(png, CIMAGEIO_MAX_SIDE, CIMAGEIO_MAX_SIDE);

    png_read_info(png, info);
    const png_uint_32 width = png_get_image_width(png, info);
    const png_uint_32 height = png_get_image_height(png, info);
    if (!cimageio_size_ok(width, height, max_pixels)) {
        cimageio_size_message(guard.message, sizeof guard.message, width, height, max_pixels);
        guard_fail(&guard, CIMAGEIO_ERR_TOO_LARGE);
    }
    const int color_type = png_get_color_type(png, info);
    const int bit_depth = png_get_bit_depth(png, info);
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (bit_depth == 16) png_set_strip_16(png); /* keep the high byte, as Pillow's "RGB;16B" */
    if (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_GRAY_ALPHA) {
        png_set_gray_to_rgb(png);
    }
    (void)png_set_interlace_handling(png);
    png_read_update_info(png, info);

    const size_t channels = png_get_channels(png, info);
    const size_t rowbytes = png_get_rowbytes(png, info);
    if (png_get_bit_depth(png, info) != 8 || (channels != 3 && channels != 4) ||
        rowbytes != (size_t)width * channels) {
        snprintf(guard.message, sizeof guard.message,
                 "unsupported PNG layout (color type %d, bit depth %d)", color_type, bit_depth);
        guard_fail(&guard, CIMAGEIO_ERR_FORMAT);
    }
    pixels = guard.allow_truncated ? calloc(height, rowbytes) : malloc(rowbytes * height);
    rows = malloc(sizeof(png_bytep) * height);
    if (pixels == NULL || rows == NULL) {
        snprintf(guard.message, sizeof guard.message, "out of memory for %u x %u pixels",
                 (unsigned)width, (unsigned)height);
        guard_fail(&guard, CIMAGEIO_ERR_TOO_LARGE);
    }
    for (png_uint_32 y = 0; y < height; y++) rows[y] = pixels + rowbytes * y;
    kept_width = width;
    kept_height = height;
    kept_channels = channels;
    guard.reading_rows = 1;
    png_read_image(png, rows);
    guard.reading_rows = 0;
    /* Chunks after the image data are not read: Pillow ignores a missing IEND too. */

    png_structp p = png;
    png_infop i = info;
    png_destroy_read_struct(&p, &i, NULL);
    free(rows);
    finish_png(pixels, width, height, channels, out);
    return CIMAGEIO_OK;
}

int32_t cimageio_encode_png(const uint8_t * rgb, int32_t width, int32_t height,
                            uint8_t ** out_png, size_t * out_len, char * err, size_t err_len) {
    if (out_png == NULL || out_len == NULL || rgb == NULL) {
        cimageio_set_err(err, err_len, "a pointer argument is NULL");
        return CIMAGEIO_ERR_INVALID_ARG;
    }
    *out_png = NULL;
    *out_len = 0;
    if (width < 1 || height < 1) {
        cimageio_set_err(err, err_len, "image width and height must be at least 1");
        return CIMAGEIO_ERR_INVALID_ARG;
    }
    if (!cimageio_size_ok((uint64_t)width, (uint64_t)height, (uint64_t)CIMAGEIO_MAX_PIXELS)) {
        cimageio_set_err(err, err_len, "image exceeds the encoder's size limits");
        return CIMAGEIO_ERR_TOO_LARGE;
    }

    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    image.width = (png_uint_32)width;
    image.height = (png_uint_32)height;
    image.format = PNG_FORMAT_RGB;

    /* First call: size only. */
    png_alloc_size_t size = 0;
    if (!png_image_write_to_memory(&image, NULL, &size, 0, rgb, 0, NULL)) {
        cimageio_set_err(err, err_len, image.message);
        png_image_free(&image);
        return CIMAGEIO_ERR_FORMAT;
    }
    uint8_t * buffer = malloc(size > 0 ? size : 1);
    if (buffer == NULL) {
        cimageio_set_err(err, err_len, "out of memory for the PNG buffer");
        png_image_free(&image);
        return CIMAGEIO_ERR_TOO_LARGE;
    }
    if (!png_image_write_to_memory(&image, buffer, &size, 0, rgb, 0, NULL)) {
        cimageio_set_err(err, err_len, image.message);
        png_image_free(&image);
        free(buffer);
        return CIMAGEIO_ERR_FORMAT;
    }
    png_image_free(&image);
    *out_png = buffer;
    *out_len = size;
    return CIMAGEIO_OK;
}
