/* libFuzzer target: neco_image_decode on arbitrary bytes (JPEG and PNG through libjpeg-turbo
 * and libpng). The last byte's low bit selects the truncation rule, so both the strict and the
 * lenient path are covered. Seeds: the JPEG and PNG files of Tests/Fixtures/image. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    if (size == 0) return 0;
    neco_image_set_load_truncated((data[size - 1] & 1) != 0);
    neco_image * img = NULL;
    neco_status st = neco_image_decode(data, size, &img);
    fuzz_check_status(st);
    if (st == NECO_OK) {
        const int32_t w = neco_image_width(img), h = neco_image_height(img);
        const uint8_t * px = neco_image_data(img);
        if (w < 1 || h < 1 || px == NULL || (int64_t)w * h > neco_image_get_max_pixels()) abort();
        volatile uint8_t sink = px[(size_t)w * h * 3 - 1]; /* the whole buffer is there */
        (void)sink;
    } else if (img != NULL) {
        abort();
    }
    neco_image_free(img);
    return 0;
}
