/*
 * threads.c: 4 threads extract features with ONE shared neco_model at the same time; every
 * result must be bit-identical to a single-threaded reference. Also checks that
 * neco_last_error() is per thread, and that a child made by fork() after libneco's worker pool
 * started can still extract with 2 workers (the pool restarts in the child instead of waiting
 * for threads that fork did not copy).
 *
 * usage: threads MODEL N_HEADS IMAGE [SIZE [ITERATIONS]]
 * Prints "THREADS OK" and exits 0 on success; 77 (skipped) when MODEL or IMAGE is missing.
 */
#define _POSIX_C_SOURCE 200809L
#include <neco.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { N_THREADS = 4 };

static neco_model * model;
static neco_image * image;
static neco_extract_params params;
static neco_feature_shape shape;
static float * ref_patches;
static float * ref_cls;
static int iterations = 2;

typedef struct {
    int id;
    int mismatches;
    int errors;
    int message_ok;
} worker;

/* Feature buffers of one image's shape (free .patches and .cls). */
static neco_feature_buffers new_buffers(void) {
    neco_feature_buffers out;
    memset(&out, 0, sizeof out);
    out.patches = malloc(shape.patches_per_image * sizeof(float));
    out.patches_capacity = shape.patches_per_image;
    out.cls = malloc(shape.cls_per_image * sizeof(float));
    out.cls_capacity = shape.cls_per_image;
    return out;
}

static void * run(void * arg) {
    worker * w = arg;
    neco_feature_buffers out = new_buffers();
    float * patches = out.patches;
    float * cls = out.cls;
    for (int it = 0; it < iterations; it++) {
        if (neco_extract_image(model, image, &params, &out) != NECO_OK) {
            fprintf(stderr, "thread %d: %s\n", w->id, neco_last_error());
            w->errors++;
            continue;
        }
        if (memcmp(patches, ref_patches, shape.patches_per_image * sizeof(float)) != 0 ||
            memcmp(cls, ref_cls, shape.cls_per_image * sizeof(float)) != 0)
            w->mismatches++;
    }
    /* A failure on this thread leaves its own message. */
    char want[64];
    snprintf(want, sizeof want, "dim = %d out of range", -(w->id + 1));
    neco_index * ix = NULL;
    w->message_ok = neco_index_init(-(w->id + 1), &ix) == NECO_ERR_INVALID_ARG &&
                    strstr(neco_last_error(), want) != NULL;
    free(patches);
    free(cls);
    return NULL;
}

static int exists(const char * p) { return access(p, R_OK) == 0; }

/* 2 workers: extract (the pool starts), fork, extract in the child; the child must finish within
 * 60 s with the reference's bits. Returns the number of failures. */
static int check_fork(void) {
    const int32_t saved = neco_get_n_threads();
    if (neco_set_n_threads(2) != NECO_OK) return 1;
    neco_feature_buffers out = new_buffers();
    float * patches = out.patches;
    float * cls = out.cls;
    int bad = neco_extract_image(model, image, &params, &out) != NECO_OK;
    const pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0) {
        const int ok = neco_extract_image(model, image, &params, &out) == NECO_OK &&
                       memcmp(patches, ref_patches, shape.patches_per_image * sizeof(float)) == 0;
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    const time_t deadline = time(NULL) + 60;
    pid_t done = 0;
    const struct timespec tick = {0, 10 * 1000 * 1000};
    while ((done = waitpid(child, &status, WNOHANG)) == 0 && time(NULL) < deadline) nanosleep(&tick, NULL);
    if (done == 0) {
        kill(child, SIGKILL);
        waitpid(child, &status, 0);
        fprintf(stderr, "fork: the child did not finish within 60 s\n");
        bad++;
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "fork: the child failed (status %d)\n", status);
        bad++;
    } else {
        printf("fork: a child extracts with 2 workers after the pool started: bit-identical\n");
    }
    free(patches);
    free(cls);
    if (neco_set_n_threads(saved) != NECO_OK) bad++;
    return bad;
}

int main(int argc, char ** argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: threads MODEL N_HEADS IMAGE [SIZE [ITERATIONS]]\n");
        return 2;
    }
    if (!exists(argv[1]) || !exists(argv[3])) {
        fprintf(stderr, "skipped: %s or %s missing (run scripts/setup.sh)\n", argv[1], argv[3]);
        return 77;
    }
    int32_t size = argc > 4 ? (int32_t)atoi(argv[4]) : 224;
    if (argc > 5) iterations = atoi(argv[5]);
    neco_model_params mp = neco_model_default_params();
    mp.n_heads = (int32_t)atoi(argv[2]);
    if (neco_model_load(argv[1], &mp, &model) != NECO_OK || neco_image_load(argv[3], &image) != NECO_OK) {
        fprintf(stderr, "setup failed: %s\n", neco_last_error());
        return 1;
    }
    params = neco_extract_default_params();
    params.height = size;
    params.width = size;
    if (neco_extract_shape_rgb(model, neco_image_height(image), neco_image_width(image), &params, &shape) != NECO_OK) {
        fprintf(stderr, "shape: %s\n", neco_last_error());
        return 1;
    }
    neco_feature_buffers out = new_buffers();
    ref_patches = out.patches;
    ref_cls = out.cls;
    if (neco_extract_image(model, image, &params, &out) != NECO_OK) {
        fprintf(stderr, "reference: %s\n", neco_last_error());
        return 1;
    }

    /* The main thread's message must survive the workers' failures. */
    neco_index * ix = NULL;
    if (neco_index_init(0, &ix) != NECO_ERR_INVALID_ARG) return 1;

    pthread_t t[N_THREADS];
    worker w[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].id = i;
        if (pthread_create(&t[i], NULL, run, &w[i]) != 0) {
            perror("pthread_create");
            return 1;
        }
    }
    int bad = 0;
    for (int i = 0; i < N_THREADS; i++) {
        pthread_join(t[i], NULL);
        printf("thread %d: %d extractions, %d mismatches, %d errors, own message %s\n", i, iterations,
               w[i].mismatches, w[i].errors, w[i].message_ok ? "yes" : "NO");
        bad += w[i].mismatches + w[i].errors + !w[i].message_ok;
    }
    if (strstr(neco_last_error(), "dim = 0 out of range") == NULL) {
        fprintf(stderr, "main thread's message was overwritten: %s\n", neco_last_error());
        bad++;
    }
    bad += check_fork();
    free(ref_patches);
    free(ref_cls);
    neco_image_free(image);
    neco_model_free(model);
    if (bad) {
        fprintf(stderr, "THREADS FAILED\n");
        return 1;
    }
    printf("THREADS OK (%d threads x %d extractions at %dx%d, bit-identical)\n", N_THREADS, iterations, size, size);
    return 0;
}
