/*
 * extract_neighbors.c: the C11 example of libneco.
 *
 * Loads a model, decodes two pictures, extracts L2-normalised dense features, builds a patch
 * index from the first picture (labelled by patch row) and finds, for every patch of the second
 * picture, its nearest patches in the first. Then the same with neco_match_patches, and a
 * self-match sanity check (every patch is its own nearest neighbour).
 *
 * usage: extract_neighbors [MODEL [IMAGE_A [IMAGE_B [N_HEADS [SIZE]]]]]
 *   MODEL    safetensors checkpoint (default $NECO_MODEL, else
 *            ~/.cache/neco/models/dinov2_vits14_imgfocus.safetensors)
 *   IMAGE_*  JPEG/PNG files (default ~/.cache/neco/photos/chelsea.png and coffee.png)
 *   N_HEADS  attention heads, 0 = embed dim / 64 (the tiny test model needs 4)
 *   SIZE     model input side in pixels (default 224)
 * Exit status 0 and "C EXAMPLE OK" on success; 77 when the default model or photos are missing.
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

/* Extracts the L2-normalised patch features of one picture into a new malloc'd (h*w, D) buffer. */
static float * extract(const neco_model * model, const char * path, const neco_extract_params * ep,
                       neco_feature_shape * shape) {
    neco_image * img = NULL;
    CHECK(neco_image_load(path, &img));
    CHECK(neco_extract_shape_rgb(model, neco_image_height(img), neco_image_width(img), ep, shape));
    float * patches = malloc(shape->patches_per_image * sizeof(float));
    float * cls = malloc(shape->cls_per_image * sizeof(float));
    if (!patches || !cls) { fprintf(stderr, "out of memory\n"); exit(1); }
    neco_feature_buffers out;
    memset(&out, 0, sizeof out);
    out.patches = patches;
    out.patches_capacity = shape->patches_per_image;
    out.cls = cls;
    out.cls_capacity = shape->cls_per_image;
    CHECK(neco_extract_image(model, img, ep, &out));
    printf("%-40s %dx%d -> input %dx%d, grid %dx%d, D %d\n", path, neco_image_width(img),
           neco_image_height(img), shape->input_width, shape->input_height, shape->grid_width,
           shape->grid_height, shape->dim);
    free(cls);
    neco_image_free(img);
    return patches;
}

int main(int argc, char ** argv) {
    char model_buf[4096], a_buf[4096], b_buf[4096];
    const char * env_model = getenv("NECO_MODEL");
    const char * model_path = argc > 1 ? argv[1]
                              : (env_model && *env_model) ? env_model
                              : cache_path(model_buf, sizeof model_buf, "models/dinov2_vits14_imgfocus.safetensors");
    const char * path_a = argc > 2 ? argv[2] : cache_path(a_buf, sizeof a_buf, "photos/chelsea.png");
    const char * path_b = argc > 3 ? argv[3] : cache_path(b_buf, sizeof b_buf, "photos/coffee.png");
    int32_t heads = argc > 4 ? (int32_t)atoi(argv[4]) : 0;
    int32_t size = argc > 5 ? (int32_t)atoi(argv[5]) : 224;

    if (neco_api_version() != NECO_API_VERSION) {
        fprintf(stderr, "libneco API %d, header %d\n", neco_api_version(), NECO_API_VERSION);
        return 1;
    }
    printf("libneco %s (API %d)\n", neco_version(), neco_api_version());
    if (!file_exists(model_path) || !file_exists(path_a) || !file_exists(path_b)) {
        fprintf(stderr, "model or photos missing (%s, %s, %s): run scripts/setup.sh\n", model_path, path_a, path_b);
        return 77;
    }

    /* Errors are statuses with a message, never a crash. */
    neco_model * model = NULL;
    neco_status st = neco_model_load("/nonexistent/model.safetensors", NULL, &model);
    printf("loading a missing file: %s: %s\n", neco_status_str(st), neco_last_error());

    neco_model_params mp = neco_model_default_params();
    mp.n_heads = heads;
    mp.image_height = size;
    mp.image_width = size;
    CHECK(neco_model_load(model_path, &mp, &model));
    printf("model %s (%s): D %d, %d layers, %d heads, %d registers, patch %d, %lld parameters\n",
           neco_model_name(model), neco_model_family(model) == NECO_FAMILY_DINOV3 ? "DINOv3, RoPE" : "DINOv2",
           neco_model_embed_dim(model), neco_model_n_layers(model),
           neco_model_n_heads(model), neco_model_n_registers(model), neco_model_patch_size(model),
           (long long)neco_model_n_params(model));

    neco_extract_params ep = neco_extract_default_params(); /* stretch to the model's 224x224 */
    ep.l2_normalize = true;
    neco_feature_shape sa, sb;
    float * fa = extract(model, path_a, &ep, &sa);
    float * fb = extract(model, path_b, &ep, &sb);
    const int32_t d = sa.dim;
    const int64_t na = sa.n_patches, nb = sb.n_patches;

    /* Index of picture A's patches, labelled with their grid row. */
    neco_index * index = NULL;
    CHECK(neco_index_init(d, &index));
    int32_t * rows = malloc((size_t)na * sizeof(int32_t));
    for (int64_t i = 0; i < na; i++) rows[i] = (int32_t)(i / sa.out_width);
    CHECK(neco_index_add(index, fa, na, rows));

    enum { K = 3 };
    int64_t * idx = malloc((size_t)nb * K * sizeof(int64_t));
    float * sim = malloc((size_t)nb * K * sizeof(float));
    int32_t * lab = malloc((size_t)nb * K * sizeof(int32_t));
    CHECK(neco_index_search(index, fb, nb, K, idx, sim, lab, (size_t)nb * K));
    double mean_sim = 0;
    for (int64_t q = 0; q < nb; q++) mean_sim += sim[q * K];
    mean_sim /= (double)nb;
    printf("index of %lld patches; B's patches vs A: mean top-1 cosine %.3f\n",
           (long long)neco_index_size(index), mean_sim);
    for (int64_t q = 0; q < nb; q += (nb >= 4 ? nb / 4 : 1)) {
        printf("  B patch %3lld -> A patches", (long long)q);
        for (int j = 0; j < K; j++)
            printf(" %3lld (row %2d, %.3f)", (long long)idx[q * K + j], lab[q * K + j], sim[q * K + j]);
        printf("\n");
    }

    /* The same through neco_match_patches, and A against itself. */
    int64_t * m_idx = malloc((size_t)na * sizeof(int64_t));
    float * m_sim = malloc((size_t)na * sizeof(float));
    CHECK(neco_match_patches(fb, nb, fa, na, d, 1, m_idx, m_sim, (size_t)na));
    for (int64_t q = 0; q < nb && q < na; q++) {
        if (m_idx[q] != idx[q * K] || fabsf(m_sim[q] - sim[q * K]) > 1e-5f) {
            fprintf(stderr, "match_patches and index_search disagree at %lld\n", (long long)q);
            return 1;
        }
    }
    CHECK(neco_match_patches(fa, na, fa, na, d, 1, m_idx, m_sim, (size_t)na));
    int64_t self = 0;
    for (int64_t q = 0; q < na; q++) self += (m_idx[q] == q && m_sim[q] > 0.999f);
    printf("self-match: %lld of %lld patches are their own nearest neighbour\n", (long long)self, (long long)na);
    if (self != na) return 1;

    free(m_idx);
    free(m_sim);
    free(idx);
    free(sim);
    free(lab);
    free(rows);
    free(fa);
    free(fb);
    neco_index_free(index);
    neco_model_free(model);
    printf("C EXAMPLE OK\n");
    return 0;
}
