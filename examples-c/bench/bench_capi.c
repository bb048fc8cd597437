/*
 * bench_capi.c: ms/image of feature extraction through the C ABI (neco_extract_nchw), measured
 * the same way as examples-c/bench/swift/main.swift measures the Swift API
 * (FeatureExtractor.extract(tensor:)); examples-c/bench/run.sh runs both and prints the overhead.
 *
 * usage: bench_capi MODEL [SIZE [BATCH [REPEATS [N_HEADS [N_THREADS]]]]]
 * Prints "BENCH capi size=S batch=B threads=T ms_per_image=X min_ms_per_image=Y cpu_ms_per_image=Z
 * cpu_min=W": the median and minimum wall time over REPEATS timed runs after one warm-up, and the
 * same for the calling thread's CPU time (the load-independent figure when N_THREADS = 1).
 */
#define _POSIX_C_SOURCE 200809L
#include <neco.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU time of the calling thread: with N_THREADS = 1 all the work runs on it, so this figure
 * hardly depends on other load on the machine. */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void * a, const void * b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char ** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_capi MODEL [SIZE [BATCH [REPEATS [N_HEADS [N_THREADS]]]]]\n");
        return 2;
    }
    const int32_t size = argc > 2 ? (int32_t)atoi(argv[2]) : 224;
    const int32_t batch = argc > 3 ? (int32_t)atoi(argv[3]) : 1;
    const int repeats = argc > 4 ? atoi(argv[4]) : 10;
    neco_model_params mp = neco_model_default_params();
    mp.n_heads = argc > 5 ? (int32_t)atoi(argv[5]) : 0;
    if (argc > 6 && atoi(argv[6]) > 0 && neco_set_n_threads((int32_t)atoi(argv[6])) != NECO_OK) {
        fprintf(stderr, "%s\n", neco_last_error());
        return 1;
    }
    neco_model * model = NULL;
    if (neco_model_load(argv[1], &mp, &model) != NECO_OK) {
        fprintf(stderr, "%s\n", neco_last_error());
        return 1;
    }
    neco_feature_shape shape;
    if (neco_extract_shape_nchw(model, size, size, NULL, &shape) != NECO_OK || repeats < 1 || batch < 1) {
        fprintf(stderr, "bad size/batch/repeats: %s\n", neco_last_error());
        return 1;
    }
    /* The same deterministic input as the Swift bench. */
    const size_t n_in = (size_t)batch * 3 * (size_t)size * (size_t)size;
    float * input = malloc(n_in * sizeof(float));
    for (size_t i = 0; i < n_in; i++) input[i] = (float)((i * 7919) % 1000) / 500.0f - 1.0f;
    float * patches = malloc((size_t)batch * shape.patches_per_image * sizeof(float));
    float * cls = malloc((size_t)batch * shape.cls_per_image * sizeof(float));
    float * regs = malloc(((size_t)batch * shape.registers_per_image + 1) * sizeof(float));
    neco_feature_buffers out;
    memset(&out, 0, sizeof out);
    out.patches = patches;
    out.patches_capacity = (size_t)batch * shape.patches_per_image;
    out.cls = cls;
    out.cls_capacity = (size_t)batch * shape.cls_per_image;
    out.registers = regs;
    out.registers_capacity = (size_t)batch * shape.registers_per_image;
    double * t = malloc((size_t)repeats * sizeof(double));
    double * c = malloc((size_t)repeats * sizeof(double));
    for (int r = -1; r < repeats; r++) { /* r = -1: warm-up */
        double t0 = now(), c0 = cpu_now();
        if (neco_extract_nchw(model, input, batch, size, size, NULL, &out) != NECO_OK) {
            fprintf(stderr, "%s\n", neco_last_error());
            return 1;
        }
        if (r >= 0) {
            c[r] = cpu_now() - c0;
            t[r] = now() - t0;
        }
    }
    qsort(t, (size_t)repeats, sizeof(double), cmp_double);
    qsort(c, (size_t)repeats, sizeof(double), cmp_double);
    printf("BENCH capi size=%d batch=%d threads=%d ms_per_image=%.2f min_ms_per_image=%.2f cpu_ms_per_image=%.2f "
           "cpu_min=%.2f checksum=%.6f\n", size, batch, neco_get_n_threads(), 1000.0 * t[repeats / 2] / batch,
           1000.0 * t[0] / batch, 1000.0 * c[repeats / 2] / batch, 1000.0 * c[0] / batch,
           (double)patches[0] + (double)cls[0]);
    free(t);
    free(c);
    free(input);
    free(patches);
    free(cls);
    free(regs);
    neco_model_free(model);
    return 0;
}
