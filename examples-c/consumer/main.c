/*
 * consumer/main.c: a minimal program built against an INSTALLED libneco, through
 * find_package(neco) (CMakeLists.txt here), pkg-config (pkgconfig_build.sh) or a parent project
 * that uses add_subdirectory (../consumer-subdir). Only neco.h and -lneco are used.
 *
 * usage: consumer MODEL N_HEADS      (the tiny test model: Tests/Fixtures/vit/tiny_reg4.weights.safetensors 4)
 * Prints "CONSUMER OK" on success.
 */
#include <neco.h>

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char ** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: consumer MODEL N_HEADS\n");
        return 2;
    }
    if (neco_api_version() != NECO_API_VERSION) {
        fprintf(stderr, "API version mismatch: library %d, header %d\n", neco_api_version(), NECO_API_VERSION);
        return 1;
    }
    neco_model_params mp = neco_model_default_params();
    mp.n_heads = (int32_t)atoi(argv[2]);
    mp.image_height = 56;
    mp.image_width = 56;
    neco_model * model = NULL;
    if (neco_model_load(argv[1], &mp, &model) != NECO_OK) {
        fprintf(stderr, "%s\n", neco_last_error());
        return 1;
    }
    /* A synthetic 40x60 RGB picture, stretched to the model's 56x56. */
    enum { H = 40, W = 60 };
    static uint8_t rgb[H * W * 3];
    for (int i = 0; i < H * W * 3; i++) rgb[i] = (uint8_t)(i * 7);
    neco_feature_shape shape;
    if (neco_extract_shape_rgb(model, H, W, NULL, &shape) != NECO_OK) {
        fprintf(stderr, "%s\n", neco_last_error());
        return 1;
    }
    float * patches = malloc(shape.patches_per_image * sizeof(float));
    neco_feature_buffers out = {0};
    out.patches = patches;
    out.patches_capacity = shape.patches_per_image;
    neco_status st = neco_extract_rgb(model, rgb, H, W, NULL, &out);
    printf("libneco %s: %s, %lld patches x %d\n", neco_version(), neco_status_str(st),
           (long long)shape.n_patches, shape.dim);
    free(patches);
    neco_model_free(model);
    if (st != NECO_OK) return 1;
    printf("CONSUMER OK\n");
    return 0;
}
