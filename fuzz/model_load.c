/* libFuzzer target: neco_model_load on an arbitrary file (the safetensors reader, the
 * architecture inference from tensor names and shapes, F16/BF16 conversion, non-finite
 * checks), then one small extraction when it loads. Seeds: the tiny ViT weights of
 * Tests/Fixtures/vit and Tests/Fixtures/safetensors/reference.safetensors. */
#include "fuzz_common.h"

static int fd = -1;
static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    fuzz_file(&fd, path, sizeof path, data, size);
    neco_model_params mp = neco_model_default_params();
    mp.n_heads = 4; /* the tiny fixtures' head count; other counts are refused with SHAPE */
    neco_model * model = NULL;
    neco_status st = neco_model_load(path, &mp, &model);
    fuzz_check_status(st);
    if (st != NECO_OK) {
        if (model != NULL) abort();
        return 0;
    }
    const int32_t p = neco_model_patch_size(model);
    if (p >= 1 && p <= 32) {
        neco_extract_params ep = neco_extract_default_params();
        ep.height = ep.width = 2 * p;
        neco_feature_shape shape;
        st = neco_extract_shape_nchw(model, 2 * p, 2 * p, &ep, &shape);
        fuzz_check_status(st);
        if (st == NECO_OK && shape.cls_per_image <= 65536) {
            float * input = calloc((size_t)3 * 4 * p * p, sizeof(float));
            float * cls = malloc(shape.cls_per_image * sizeof(float));
            neco_feature_buffers out = {.cls_capacity = shape.cls_per_image, .cls = cls};
            if (input && cls) fuzz_check_status(neco_extract_nchw(model, input, 1, 2 * p, 2 * p, &ep, &out));
            free(input);
            free(cls);
        }
    }
    neco_model_free(model);
    return 0;
}
