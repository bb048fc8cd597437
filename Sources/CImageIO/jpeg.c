/* JPEG decoding with libjpeg-turbo. libjpeg's default error_exit calls exit(); here every error
 * (and the premature-EOF warning) longjmps back to cimageio_decode_jpeg instead. */
#include <setjmp.h>
#include <stdio.h> /* jpeglib.h needs FILE and size_t first */
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

#include "cimageio.h"
#include "internal.h"

struct jpeg_guard {
    struct jpeg_error_mgr pub;   /* must be first: libjpeg sees a jpeg_error_mgr * */
    struct jpeg_progress_mgr progress;
    jmp_buf jump;
    int32_t status;              /* returned after the longjmp */
    int allow_truncated;         /* cimageio_options.allow_truncated */
    char message[JMSG_LENGTH_MAX];
};

static void guard_fail(j_common_ptr cinfo, int32_t status) {
    struct jpeg_guard * g = (struct jpeg_guard *)cinfo->err;
    g->status = status;
    longjmp(g->jump, 1);
}

/* Replaces error_exit (which would call exit()). Never returns. */
static void guard_error_exit(j_common_ptr cinfo) {
    struct jpeg_guard * g = (struct jpeg_guard *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, g->message);
    guard_fail(cinfo, CIMAGEIO_ERR_FORMAT);
}

/* Replaces emit_message: nothing is printed. A premature end of data, even a missing EOI marker
 * after the last scan, is an error, as in Pillow ("image file is truncated"); libjpeg would only
 * warn and pad with grey. Other warnings are counted and ignored. */
static void guard_emit_message(j_common_ptr cinfo, int msg_level) {
    struct jpeg_guard * g = (struct jpeg_guard *)cinfo->err;
    if (msg_level < 0) {
        if (cinfo->err->msg_code == JWRN_JPEG_EOF && !g->allow_truncated) {
            (*cinfo->err->format_message)(cinfo, g->message);
            guard_fail(cinfo, CIMAGEIO_ERR_FORMAT);
        }
        cinfo->err->num_warnings++;
    }
}

static void guard_output_message(j_common_ptr cinfo) {
    (void)cinfo;
}

/* Refuses progressive files with very many scans (each scan re-walks the whole coefficient
 * buffer, so a small file can take minutes), as TurboJPEG 3 does. */
static void guard_progress(j_common_ptr cinfo) {
    if (cinfo->is_decompressor) {
        j_decompress_ptr d = (j_decompress_ptr)cinfo;
        if (d->input_scan_number > CIMAGEIO_MAX_SCANS) {
            struct jpeg_guard * g = (struct jpeg_guard *)cinfo->err;
            snprintf(g->message, sizeof g->message, "progressive JPEG has more than %d scans",
                     CIMAGEIO_MAX_SCANS);
            guard_fail(cinfo, CIMAGEIO_ERR_FORMAT);
        }
    }
}

/* Pillow's cmyk2rgb on Adobe-inverted samples: c = 255 - raw, nk = 255 - k,
 * out = clip(nk - (t + (t >> 8)) >> 8) with t = c·nk + 128. */
static void cmyk_row_to_rgb(uint8_t * dst, const uint8_t * src, size_t width) {
    for (size_t x = 0; x < width; x++, src += 4, dst += 3) {
        int nk = src[3]; /* 255 - (255 - raw k) */
        for (int c = 0; c < 3; c++) {
            int t = (255 - src[c]) * nk + 128;
            int v = nk - (((t >> 8) + t) >> 8);
            dst[c] = (uint8_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
        }
    }
}

int32_t cimageio_decode_jpeg(const uint8_t * data, size_t n_data, const cimageio_options * options,
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
    if ((unsigned long)n_data != n_data) {
        cimageio_set_err(err, err_len, "input too large");
        return CIMAGEIO_ERR_TOO_LARGE;
    }

    struct jpeg_decompress_struct cinfo;
    struct jpeg_guard guard;
    memset(&guard, 0, sizeof guard);
    guard.allow_truncated = options != NULL && options->allow_truncated != 0;
    const uint64_t max_pixels = cimageio_max_pixels(options);
    uint8_t * volatile pixels = NULL; /* (H, W, 3) result */
    uint8_t * volatile cmyk = NULL;   /* (W, 4) one CMYK scanline */

    cinfo.err = jpeg_std_error(&guard.pub);
    guard.pub.error_exit = guard_error_exit;
    guard.pub.emit_message = guard_emit_message;
    guard.pub.output_message = guard_output_message;
    guard.progress.progress_monitor = guard_progress;

    if (setjmp(guard.jump)) {
        cimageio_set_err(err, err_len, guard.message);
        jpeg_destroy_decompress(&cinfo);
        free(pixels);
        free(cmyk);
        return guard.status;
    }

    jpeg_create_decompress(&cinfo);
    cinfo.progress = &guard.progress;
    jpeg_mem_src(&cinfo, data, (unsigned long)n_data);
    jpeg_read_header(&cinfo, TRUE);

    if (!cimageio_size_ok(cinfo.image_width, cinfo.image_height, max_pixels)) {
        cimageio_size_message(guard.message, sizeof guard.message, cinfo.image_width,
                              cinfo.image_height, max_pixels);
        guard_fail((j_common_ptr)&cinfo, CIMAGEIO_ERR_TOO_LARGE);
    }

    const int is_cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    cinfo.out_color_space = is_cmyk ? JCS_CMYK : JCS_RGB;
    cinfo.dct_method = JDCT_ISLOW;
    cinfo.do_fancy_upsampling = TRUE;
    jpeg_start_decompress(&cinfo);

    const size_t width = cinfo.output_width, height = cinfo.output_height;
    const size_t stride = width * 3;
    pixels = malloc(stride * height);
    if (is_cmyk) cmyk = malloc(width * 4);
    if (pixels == NULL || (is_cmyk && cmyk == NULL)) {
        snprintf(guard.message, sizeof guard.message, "out of memory for %zu x %zu pixels", width,
                 height);
        guard_fail((j_common_ptr)&cinfo, CIMAGEIO_ERR_TOO_LARGE);
    }
    while (cinfo.output_scanline < height) {
        uint8_t * dst = pixels + stride * cinfo.output_scanline;
        JSAMPROW row = is_cmyk ? cmyk : dst;
        if (jpeg_read_scanlines(&cinfo, &row, 1) != 1) {
            snprintf(guard.message, sizeof guard.message, "decoder stopped at row %u of %zu",
                     cinfo.output_scanline, height);
            guard_fail((j_common_ptr)&cinfo, CIMAGEIO_ERR_FORMAT);
        }
        if (is_cmyk) cmyk_row_to_rgb(dst, cmyk, width);
    }
    /* Reads up to EOI, so that a file cut after its last scan is reported as truncated too. */
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(cmyk);

    out->width = (int32_t)width;
    out->height = (int32_t)height;
    out->pixels = pixels;
    return CIMAGEIO_OK;
}
