/*
 * eval_example.c: in-context segmentation through the C ABI (neco_index_predict).
 *
 * The memory is the labelled patches of one picture; the labels of another picture's patches are
 * predicted from it (Hummingbird: k = 30 nearest patches vote with softmax(cos / 0.02) weights),
 * and compared with its ground truth, patch by patch. The pictures are the real Pascal VOC
 * scene of the benchmark that scripts/setup.sh builds (scripts/build_benchmark.py): the left
 * half of the photo is the memory, the right half the query. Then the error cases: an index
 * without labels, k larger than the index, too small a capacity, no output.
 *
 * usage: eval_example [MODEL [BENCH_DIR [N_HEADS [SIZE]]]]
 *   MODEL      safetensors checkpoint (default $NECO_MODEL, else
 *              ~/.cache/neco/models/dinov2_vits14_imgfocus.safetensors)
 *   BENCH_DIR  benchmark folder with train/{images,labels}/train_left.* and
 *              val/{images,labels}/val_right.* (default ~/.cache/neco/bench/voc)
 *   N_HEADS    attention heads, 0 = embed dim / 64 (the tiny test model needs 4)
 *   SIZE       model input side in pixels (default 224)
 * Exit status 0 and "EVAL EXAMPLE OK" on success; 77 when the model or the benchmark is missing.
 */
#include <neco.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(call)                                                                             \
    do {                                                                                        \
        neco_status st_ = (call);                                                               \
        if (st_ != NECO_OK) {                                                                   \
            fprintf(stderr, "%s:%d: %s failed: %s (%s)\n", __FILE__, __LINE__, #call,            \
                    neco_status_str(st_), neco_last_error());                                   \
            exit(1);                                                                            \
        }                                                                                       \
    } while (0)

/* An expected failure: the status must be `want` and the message must not be empty. */
#define EXPECT_FAIL(call, want)                                                                 \
    do {                                                                                        \
        neco_status st_ = (call);                                                               \
        if (st_ != (want) || neco_last_error()[0] == '\0') {                                    \
            fprintf(stderr, "%s:%d: %s gave %s (%s), expected %s\n", __FILE__, __LINE__, #call,   \
                    neco_status_str(st_), neco_last_error(), neco_status_str(want));            \
            exit(1);                                                                            \
        }                                                                                       \
        printf("  expected error: %s\n", neco_last_error());                                    \
    } while (0)

static int file_exists(const char * path) {
    FILE * f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

static const char * cache_path(char * buf, size_t n, const char * rel) {
    const char * cache = getenv("NECO_CACHE");
    const char * home = getenv("HOME");
    if (cache && *cache) snprintf(buf, n, "%s/%s", cache, rel);
    else snprintf(buf, n, "%s/.cache/neco/%s", home ? home : ".", rel);
    return buf;
}

static void * xmalloc(size_t n) {
    void * p = malloc(n ? n : 1);
    if (!p) { fprintf(stderr, "out of memory\n"); exit(1); }
    return p;
}

/* L2-normalised patch features (h*w, D) of a picture in a new malloc'd buffer. */
static float * extract(const neco_model * model, const char * path, const neco_extract_params * ep,
                       neco_feature_shape * shape) {
    neco_image * img = NULL;
    CHECK(neco_image_load(path, &img));
    CHECK(neco_extract_shape_rgb(model, neco_image_height(img), neco_image_width(img), ep, shape));
    float * patches = xmalloc(shape->patches_per_image * sizeof(float));
    neco_feature_buffers out;
    memset(&out, 0, sizeof out);
    out.patches = patches;
    out.patches_capacity = shape->patches_per_image;
    CHECK(neco_extract_image(model, img, ep, &out));
    neco_image_free(img);
    return patches;
}

/* The majority class of each cell of a gh x gw grid laid over a class-index PNG (gray levels =
 * classes, 255 = ignore, skipped; a cell of only ignore pixels gets 0). */
static int32_t * patch_labels(const char * path, int32_t gh, int32_t gw, int32_t * n_classes) {
    neco_image * img = NULL;
    CHECK(neco_image_load(path, &img));
    const int32_t w = neco_image_width(img), h = neco_image_height(img);
    const uint8_t * px = neco_image_data(img);
    int32_t * out = xmalloc((size_t)gh * (size_t)gw * sizeof(int32_t));
    for (int32_t gy = 0; gy < gh; gy++) {
        for (int32_t gx = 0; gx < gw; gx++) {
            long hist[256] = {0};
            for (int32_t y = gy * h / gh; y < (gy + 1) * h / gh; y++)
                for (int32_t x = gx * w / gw; x < (gx + 1) * w / gw; x++) hist[px[((size_t)y * (size_t)w + (size_t)x) * 3]]++;
            int32_t best = 0;
            for (int32_t c = 1; c < 255; c++)
                if (hist[c] > hist[best]) best = c;
            out[gy * gw + gx] = best;
            if (best + 1 > *n_classes) *n_classes = best + 1;
        }
    }
    neco_image_free(img);
    return out;
}

int main(int argc, char ** argv) {
    if (neco_api_version() != NECO_API_VERSION) {
        fprintf(stderr, "libneco API %d, header %d\n", neco_api_version(), NECO_API_VERSION);
        return 1;
    }
    char model_buf[4096], bench_buf[4096], path[4 * 4096];
    const char * env_model = getenv("NECO_MODEL");
    const char * model_path = argc > 1 ? argv[1]
                              : (env_model && *env_model) ? env_model
                              : cache_path(model_buf, sizeof model_buf, "models/dinov2_vits14_imgfocus.safetensors");
    const char * bench = argc > 2 ? argv[2] : cache_path(bench_buf, sizeof bench_buf, "bench/voc");
    const int32_t heads = argc > 3 ? (int32_t)atoi(argv[3]) : 0;
    const int32_t size = argc > 4 ? (int32_t)atoi(argv[4]) : 224;
    snprintf(path, sizeof path, "%s/val/labels/val_right.png", bench);
    if (!file_exists(model_path) || !file_exists(path)) {
        printf("skipped: %s or %s is missing (run scripts/setup.sh)\n", model_path, path);
        return 77;
    }

    neco_model_params mp = neco_model_default_params();
    mp.n_heads = heads;
    neco_model * model = NULL;
    CHECK(neco_model_load(model_path, &mp, &model));
    neco_extract_params ep = neco_extract_default_params();
    ep.height = size;
    ep.width = size;
    ep.l2_normalize = true;

    /* Memory: the labelled patches of the left half. */
    neco_feature_shape shape;
    snprintf(path, sizeof path, "%s/train/images/train_left.jpg", bench);
    float * mem = extract(model, path, &ep, &shape);
    const int32_t gh = shape.grid_height, gw = shape.grid_width, d = shape.dim;
    const int64_t n = (int64_t)gh * gw;
    int32_t n_classes = 0;
    snprintf(path, sizeof path, "%s/train/labels/train_left.png", bench);
    int32_t * mem_labels = patch_labels(path, gh, gw, &n_classes);
    neco_index * index = NULL;
    CHECK(neco_index_init(d, &index));
    CHECK(neco_index_add(index, mem, n, mem_labels));

    /* Query: the right half. */
    neco_feature_shape qshape;
    snprintf(path, sizeof path, "%s/val/images/val_right.jpg", bench);
    float * q = extract(model, path, &ep, &qshape);
    snprintf(path, sizeof path, "%s/val/labels/val_right.png", bench);
    int32_t * truth = patch_labels(path, qshape.grid_height, qshape.grid_width, &n_classes);
    const int64_t nq = (int64_t)qshape.grid_height * qshape.grid_width;

    neco_predict_params pp = neco_predict_default_params();
    pp.n_classes = n_classes;
    float * scores = xmalloc((size_t)nq * (size_t)n_classes * sizeof(float));
    int32_t * pred = xmalloc((size_t)nq * sizeof(int32_t));
    CHECK(neco_index_predict(index, q, nq, &pp, scores, (size_t)(nq * n_classes), pred, (size_t)nq));

    /* Consistency: score rows sum to 1, the labels are their arg-max. */
    for (int64_t i = 0; i < nq; i++) {
        float sum = 0;
        int32_t best = 0;
        for (int32_t c = 0; c < n_classes; c++) {
            sum += scores[i * n_classes + c];
            if (scores[i * n_classes + c] > scores[i * n_classes + best]) best = c;
        }
        if (fabsf(sum - 1) > 1e-4f || best != pred[i]) {
            fprintf(stderr, "query %ld: scores sum to %f, arg-max %d, label %d\n", (long)i, sum, best, pred[i]);
            return 1;
        }
    }
    /* Patch accuracy and per-class IoU against the ground truth (majority class per patch). */
    long correct = 0;
    printf("memory %ld patches (%dx%d, D %d), %ld query patches, %d classes, k = %d, T = %.2f\n", (long)n, gw, gh,
           d, (long)nq, n_classes, pp.k, pp.temperature);
    double miou = 0;
    int32_t present = 0;
    for (int32_t c = 0; c < n_classes; c++) {
        long tp = 0, fp = 0, fn = 0;
        for (int64_t i = 0; i < nq; i++) {
            tp += pred[i] == c && truth[i] == c;
            fp += pred[i] == c && truth[i] != c;
            fn += pred[i] != c && truth[i] == c;
        }
        if (tp + fn == 0) continue;
        present++;
        miou += (double)tp / (double)(tp + fp + fn);
        printf("  class %d: patch IoU %.3f (%ld patches)\n", c, (double)tp / (double)(tp + fp + fn), tp + fn);
    }
    for (int64_t i = 0; i < nq; i++) correct += pred[i] == truth[i];
    printf("patch accuracy %.3f, mIoU over the %d classes present %.3f\n", (double)correct / (double)nq, present,
           present ? miou / present : 0);

    /* Bad input. */
    neco_index * unlabelled = NULL;
    CHECK(neco_index_init(d, &unlabelled));
    CHECK(neco_index_add(unlabelled, mem, n, NULL));
    EXPECT_FAIL(neco_index_predict(unlabelled, q, nq, NULL, NULL, 0, pred, (size_t)nq), NECO_ERR_INVALID_ARG);
    neco_predict_params big = pp;
    big.k = (int32_t)n + 1;
    EXPECT_FAIL(neco_index_predict(index, q, nq, &big, NULL, 0, pred, (size_t)nq), NECO_ERR_SHAPE);
    EXPECT_FAIL(neco_index_predict(index, q, nq, &pp, scores, (size_t)(nq * n_classes) - 1, NULL, 0), NECO_ERR_SHAPE);
    EXPECT_FAIL(neco_index_predict(index, q, nq, &pp, NULL, 0, NULL, 0), NECO_ERR_INVALID_ARG);
    neco_predict_params few = pp;
    few.n_classes = 1;
    if (n_classes > 1) EXPECT_FAIL(neco_index_predict(index, q, nq, &few, NULL, 0, pred, (size_t)nq), NECO_ERR_INVALID_ARG);
    neco_predict_params cold = pp;
    cold.temperature = 0;
    EXPECT_FAIL(neco_index_predict(index, q, nq, &cold, NULL, 0, pred, (size_t)nq), NECO_ERR_INVALID_ARG);
    EXPECT_FAIL(neco_index_predict(NULL, q, nq, &pp, NULL, 0, pred, (size_t)nq), NECO_ERR_INVALID_ARG);

    /* The whole protocol of `neco eval --bench incontext` on the same benchmark: memory of every
     * training patch with soft labels, pixel labels, Hungarian matching, mIoU. */
    neco_eval_params evp = neco_eval_default_params();
    evp.size = ep.height;
    neco_eval_result res;
    double per_class[256];
    CHECK(neco_eval_incontext(model, bench, &evp, &res, per_class, 256));
    printf("in-context protocol: mIoU %.4f, pixel accuracy %.4f, %d classes, memory %lld patches, %lld/%lld images\n",
           res.miou, res.pixel_accuracy, res.n_classes, (long long)res.memory_patches, (long long)res.n_train,
           (long long)res.n_val);
    double mean = 0;
    for (int32_t c = 0; c < res.n_classes; c++) mean += per_class[c];
    if (!(res.miou >= 0 && res.miou <= 1) || res.n_classes < 1 || fabs(mean / res.n_classes - res.miou) > 1e-12) {
        fprintf(stderr, "inconsistent protocol result\n");
        return 1;
    }
    EXPECT_FAIL(neco_eval_incontext(model, bench, &evp, &res, per_class, (size_t)res.n_classes - 1), NECO_ERR_SHAPE);

    neco_index_free(unlabelled);
    neco_index_free(index);
    neco_model_free(model);
    free(mem); free(mem_labels); free(q); free(truth); free(scores); free(pred);
    printf("EVAL EXAMPLE OK\n");
    return 0;
}
