/* cimageio.h: a small C wrapper over libjpeg-turbo and libpng for NecoImage.
 *
 * Not a public API of libneco (the public C header is include/neco.h); NecoImage is its only user.
 *
 * Usage:
 *
 *     cimageio_image img;
 *     char err[CIMAGEIO_ERR_LEN];
 *     int32_t st = cimageio_decode_jpeg(bytes, n_bytes, &img, err, sizeof err);
 *     if (st != CIMAGEIO_OK) { report(err); return; }
 *     use(img.pixels, img.width, img.height);      // (H, W, 3) RGB8, row-major, no padding
 *     cimageio_free(img.pixels);
 *
 * Error model: every function returns a cimageio_status and, on failure, writes a NUL-terminated
 * English message into `err` (truncated to `err_len`; `err` may be NULL). Nothing here ever calls
 * exit() or abort(): libjpeg and libpng errors are caught with setjmp/longjmp inside this target,
 * and library warnings are never printed.
 *
 * Ownership: buffers returned through out-parameters are allocated with malloc and must be
 * released with cimageio_free (NULL is a no-op). On failure every out-pointer is NULL.
 *
 * Thread safety: all functions are reentrant; they share no state.
 *
 * Limits: a decoded image must have 1 <= side <= CIMAGEIO_MAX_SIDE and
 * width * height <= the caller's cimageio_options.max_pixels (at most CIMAGEIO_MAX_PIXELS);
 * larger headers are refused from the header alone, before any large allocation or decoding work
 * (status CIMAGEIO_ERR_TOO_LARGE). Progressive JPEGs with more than CIMAGEIO_MAX_SCANS scans are
 * refused (a known decompression-time attack).
 */
#ifndef CIMAGEIO_H
#define CIMAGEIO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CIMAGEIO_MAX_SIDE 65535
#define CIMAGEIO_MAX_PIXELS (1 << 28)
#define CIMAGEIO_MAX_SCANS 500
/* A buffer of this size always holds the whole message (libjpeg's JMSG_LENGTH_MAX is 200). */
#define CIMAGEIO_ERR_LEN 256

/* Status codes; the values equal NecoError.Kind raw values. Append only. */
typedef enum cimageio_status {
    CIMAGEIO_OK = 0,
    CIMAGEIO_ERR_INVALID_ARG = -1, /* a NULL pointer, a zero or negative size */
    CIMAGEIO_ERR_FORMAT = -3,      /* corrupt, truncated or unsupported data */
    CIMAGEIO_ERR_TOO_LARGE = -5,   /* dimensions beyond the limits above, or malloc failed */
} cimageio_status;

/* Decoding options; a NULL pointer means the defaults below. */
typedef struct cimageio_options {
    uint64_t max_pixels;     /* width * height cap, 1...CIMAGEIO_MAX_PIXELS; 0 = CIMAGEIO_MAX_PIXELS */
    int32_t allow_truncated; /* nonzero: a file that ends early decodes, the missing part black
                                (PNG) or grey (JPEG, libjpeg's fill), as Pillow's
                                LOAD_TRUNCATED_IMAGES; 0 = a truncated file is an error */
} cimageio_options;

/* A decoded picture: `pixels` is (height, width, 3) RGB8, row-major, rows not padded. */
typedef struct cimageio_image {
    int32_t width;
    int32_t height;
    uint8_t * pixels; /* free with cimageio_free */
} cimageio_image;

/* Decodes a baseline or progressive JPEG held in memory to RGB8 with libjpeg's accurate integer
 * IDCT (JDCT_ISLOW) and fancy upsampling, as Pillow does.
 * Grayscale is replicated to RGB. CMYK and YCCK are read as Adobe-inverted CMYK (Pillow's
 * "CMYK;I": C = 255 - stored value, same for M, Y, K) and converted as Pillow's
 * `.convert("RGB")` does: R = (255 - K) - C·(255 - K)/255, rounded; G from M, B from Y.
 * A file that ends early, even one that lacks only its final EOI marker, is an error ("Premature
 * end of JPEG file"), as in Pillow, unless options->allow_truncated; other libjpeg warnings
 * (extraneous bytes, …) are ignored.
 * On success fills *out (free out->pixels with cimageio_free); on failure *out is zeroed. */
int32_t cimageio_decode_jpeg(const uint8_t * data, size_t n_data, const cimageio_options * options,
                             cimageio_image * out, char * err, size_t err_len);

/* Decodes a PNG held in memory to RGB8 with libpng's low-level reader (png_read_image, not the
 * simplified API, which applies gAMA and scales 16-bit data) so that the result equals Pillow's
 * `Image.open(f).convert("RGB")`:
 *   - palette → its RGB entries; gray (1/2/4/8-bit) → replicated; tRNS is ignored;
 *   - an alpha channel (RGBA, gray+alpha, palette tRNS) is DROPPED, not composited;
 *   - 16-bit samples keep their high byte (Pillow's "RGB;16B"; for 16-bit gray Pillow instead
 *     clips values above 255, which we do not copy);
 *   - gAMA / sRGB / iCCP chunks are ignored (no gamma or colour conversion), as in Pillow;
 *   - interlaced (Adam7) files are supported; a CRC error in any chunk is an error; chunks after
 *     the image data are not read (a missing IEND is accepted, as in Pillow).
 * On success fills *out (free out->pixels with cimageio_free); on failure *out is zeroed. */
int32_t cimageio_decode_png(const uint8_t * data, size_t n_data, const cimageio_options * options,
                            cimageio_image * out, char * err, size_t err_len);

/* Encodes (height, width, 3) RGB8 pixels, rows of exactly 3·width bytes, as an 8-bit RGB PNG in
 * memory (libpng's simplified writer; an sRGB chunk is written). On success *out_png holds
 * *out_len bytes (free with cimageio_free); on failure *out_png is NULL and *out_len is 0. */
int32_t cimageio_encode_png(const uint8_t * rgb, int32_t width, int32_t height,
                            uint8_t ** out_png, size_t * out_len, char * err, size_t err_len);

/* Releases a buffer returned by this library. NULL is a no-op. */
void cimageio_free(void * p);

#ifdef __cplusplus
}
#endif

#endif /* CIMAGEIO_H */
