/*
 * export_example.c: ONNX export through the C ABI (neco_export_onnx).
 *
 * Loads a model and exports its encoder twice: with the input size fixed at SIZE and with a
 * dynamic input size. Each file must exist and be non-empty. Then one error path: a size that is
 * not a multiple of the patch size gives NECO_ERR_SHAPE and leaves no file behind.
 *
 * With PARITY_DIR the files stay in that folder, together with what scripts/onnx_parity.py needs
 * to run them in ONNX Runtime against libneco's own extraction: an input batch (2, 3, H, W),
 * neco_extract_nchw's outputs for it, and manifest.json (the fixed graph at SIZE, the dynamic one
 * at SIZE and at a second, non-square size). examples-c/tests/export_parity.sh runs the check.
 * Without it they go to a temporary folder that is removed at the end.
 *
 * usage: export_example [MODEL [N_HEADS [SIZE [PARITY_DIR]]]]
 *   MODEL       safetensors checkpoint (default $NECO_MODEL, else
 *               ~/.cache/neco/models/dinov2_vits14_imgfocus.safetensors)
 *   N_HEADS     attention heads, 0 = embed dim / 64 (the tiny test model needs 4)
 *   SIZE        fixed input size in pixels, S or HxW, multiples of the patch size (default 224)
 *   PARITY_DIR  an existing folder for the parity files (optional)
 * Exit status 0 and "EXPORT EXAMPLE OK" on success; 77 when the model is missing.
 */
#define _POSIX_C_SOURCE 200809L
#include <neco.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHECK(call)                                                                             \
    do {                                                                                        \
        neco_status st_ = (call);                                                               \
        if (st_ != NECO_OK) {                                                                   \
            fprintf(stderr, "%s:%d: %s failed: %s (%s)\n", __FILE__, __LINE__, #call,            \
                    neco_status_str(st_), neco_last_error());                                   \
            exit(1);                                                                            \
        }                                                                                       \
    } while (0)

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

/* Size of a regular file in bytes, -1 if there is none. */
static long long file_size(const char * path) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return -1;
    return (long long)st.st_size;
}

/* ---- parity files: .npy arrays and the manifest of scripts/onnx_parity.py ------------------- */

/* Writes a float32 .npy file (format 1.0) of `shape` (n_dims <= 4). The data is written as it is
 * in memory, so the header says '<f4' only on a little-endian host. */
static void write_npy(const char * dir, const char * name, const float * data, const int64_t * shape, int n_dims) {
    char path[4096], dict[256], dims[128] = "";
    size_t count = 1;
    for (int i = 0; i < n_dims; i++) {
        size_t used = strlen(dims);
        snprintf(dims + used, sizeof dims - used, "%lld,%s", (long long)shape[i], i + 1 < n_dims ? " " : "");
        count *= (size_t)shape[i];
    }
    if (n_dims > 1) dims[strlen(dims) - 1] = '\0'; /* (a, b) rather than (a, b,) */
    int len = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", dims);
    /* magic (6) + version (2) + header length (2) + dict + spaces + '\n', a multiple of 64 bytes */
    int pad = 63 - (10 + len) % 64;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0};
    pre[8] = (unsigned char)((len + pad + 1) & 0xff);
    pre[9] = (unsigned char)((len + pad + 1) >> 8);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE * f = fopen(path, "wb");
    if (!f) { perror(path); exit(1); }
    fwrite(pre, 1, sizeof pre, f);
    fwrite(dict, 1, (size_t)len, f);
    for (int i = 0; i < pad; i++) fputc(' ', f);
    fputc('\n', f);
    if (fwrite(data, sizeof(float), count, f) != count || fclose(f) != 0) { perror(path); exit(1); }
}

/* One parity case: a deterministic input batch (2, 3, h, w) of ImageNet-normalised-like values,
 * libneco's outputs for it, all as .npy, and the case's entry in the manifest. */
static void parity_case(FILE * manifest, int first, const char * dir, const neco_model * model, const char * onnx,
                        int32_t h, int32_t w) {
    enum { N = 2 };
    neco_feature_shape s;
    CHECK(neco_extract_shape_nchw(model, h, w, NULL, &s));
    const size_t n_in = (size_t)N * 3 * (size_t)h * (size_t)w;
    float * x = xmalloc(n_in * sizeof(float));
    for (size_t i = 0; i < n_in; i++) x[i] = 1.5f * sinf(0.013f * (float)i) + 0.5f * cosf(0.37f * (float)(i % 977));
    neco_feature_buffers out;
    memset(&out, 0, sizeof out);
    out.patches_capacity = N * s.patches_per_image;
    out.cls_capacity = N * s.cls_per_image;
    out.registers_capacity = N * s.registers_per_image;
    out.patches = xmalloc(out.patches_capacity * sizeof(float));
    out.cls = xmalloc(out.cls_capacity * sizeof(float));
    out.registers = s.n_registers > 0 ? xmalloc(out.registers_capacity * sizeof(float)) : NULL;
    CHECK(neco_extract_nchw(model, x, N, h, w, NULL, &out)); /* no L2, no upsampling: the graph's outputs */

    char name[4][128];
    snprintf(name[0], sizeof name[0], "%s_%dx%d_x.npy", onnx, h, w);
    snprintf(name[1], sizeof name[1], "%s_%dx%d_patch_tokens.npy", onnx, h, w);
    snprintf(name[2], sizeof name[2], "%s_%dx%d_cls_token.npy", onnx, h, w);
    snprintf(name[3], sizeof name[3], "%s_%dx%d_register_tokens.npy", onnx, h, w);
    const int64_t xs[4] = {N, 3, h, w}, ps[3] = {N, s.n_patches, s.dim}, cs[2] = {N, s.dim},
                  rs[3] = {N, s.n_registers, s.dim};
    write_npy(dir, name[0], x, xs, 4);
    write_npy(dir, name[1], out.patches, ps, 3);
    write_npy(dir, name[2], out.cls, cs, 2);
    if (out.registers) write_npy(dir, name[3], out.registers, rs, 3);
    fprintf(manifest, "%s    {\"name\": \"%s at %dx%d, batch %d\", \"onnx\": \"%s\", \"input\": \"%s\",\n"
            "     \"expected\": {\"patch_tokens\": \"%s\", \"cls_token\": \"%s\"",
            first ? "" : ",\n", onnx, h, w, N, onnx, name[0], name[1], name[2]);
    if (out.registers) fprintf(manifest, ", \"register_tokens\": \"%s\"", name[3]);
    fprintf(manifest, "}}");
    free(x);
    free(out.patches);
    free(out.cls);
    free(out.registers);
}

int main(int argc, char ** argv) {
    if (neco_api_version() != NECO_API_VERSION) {
        fprintf(stderr, "libneco API %d, header %d\n", neco_api_version(), NECO_API_VERSION);
        return 1;
    }
    char model_buf[4096];
    const char * env_model = getenv("NECO_MODEL");
    const char * model_path = argc > 1 ? argv[1]
                              : (env_model && *env_model) ? env_model
                              : cache_path(model_buf, sizeof model_buf, "models/dinov2_vits14_imgfocus.safetensors");
    const int32_t heads = argc > 2 ? (int32_t)atoi(argv[2]) : 0;
    int h = 224, w = 224;
    if (argc > 3 && sscanf(argv[3], "%dx%d", &h, &w) == 1) w = h;
    const char * parity_dir = argc > 4 ? argv[4] : NULL;
    if (file_size(model_path) < 0) {
        printf("skipped: %s is missing (run scripts/setup.sh)\n", model_path);
        return 77;
    }

    neco_model_params mp = neco_model_default_params();
    mp.n_heads = heads;
    neco_model * model = NULL;
    CHECK(neco_model_load(model_path, &mp, &model));
    const int32_t patch = neco_model_patch_size(model);
    printf("model %s: D %d, patch %d, %d registers, %lld parameters\n", neco_model_name(model),
           neco_model_embed_dim(model), patch, neco_model_n_registers(model), (long long)neco_model_n_params(model));

    char tmp[] = "/tmp/neco-export-XXXXXX";
    const char * dir = parity_dir;
    if (!dir) {
        if (!mkdtemp(tmp)) { perror("mkdtemp"); return 1; }
        dir = tmp;
    }
    char fixed_path[4096], dynamic_path[4096], bad_path[4096];
    snprintf(fixed_path, sizeof fixed_path, "%s/fixed.onnx", dir);
    snprintf(dynamic_path, sizeof dynamic_path, "%s/dynamic.onnx", dir);
    snprintf(bad_path, sizeof bad_path, "%s/bad.onnx", dir);

    /* Fixed input size: pixel_values (N, 3, h, w). */
    neco_export_params xp = neco_export_default_params();
    xp.input_size = NECO_EXPORT_SIZE_FIXED;
    xp.height = h;
    xp.width = w;
    CHECK(neco_export_onnx(model, fixed_path, &xp));
    const long long fixed_bytes = file_size(fixed_path);
    printf("fixed   %dx%d: %s, %lld bytes\n", h, w, fixed_path, fixed_bytes);

    /* Dynamic input size (the defaults): pixel_values (N, 3, H, W). */
    xp = neco_export_default_params();
    CHECK(neco_export_onnx(model, dynamic_path, &xp));
    const long long dynamic_bytes = file_size(dynamic_path);
    printf("dynamic:         %s, %lld bytes\n", dynamic_path, dynamic_bytes);
    if (fixed_bytes <= 0 || dynamic_bytes <= 0) {
        fprintf(stderr, "an export left no file or an empty one\n");
        return 1;
    }

    /* An error: the height is not a multiple of the patch size. */
    xp.input_size = NECO_EXPORT_SIZE_FIXED;
    xp.height = h + 1;
    xp.width = w;
    neco_status st = neco_export_onnx(model, bad_path, &xp);
    if (st != NECO_ERR_SHAPE || neco_last_error()[0] == '\0' || file_size(bad_path) >= 0) {
        fprintf(stderr, "height %d: expected NECO_ERR_SHAPE and no file, got %s (%s)\n", h + 1,
                neco_status_str(st), neco_last_error());
        return 1;
    }
    printf("  expected error: %s\n", neco_last_error());

    if (parity_dir) {
        char manifest_path[4096];
        snprintf(manifest_path, sizeof manifest_path, "%s/manifest.json", dir);
        FILE * f = fopen(manifest_path, "w");
        if (!f) { perror(manifest_path); return 1; }
        const char * outputs = neco_model_n_registers(model) > 0
                                   ? "[\"patch_tokens\", \"cls_token\", \"register_tokens\"]"
                                   : "[\"patch_tokens\", \"cls_token\"]";
        fprintf(f, "{\"tolerance\": 1e-4,\n \"models\": [\n"
                "    {\"onnx\": \"fixed.onnx\", \"ir_version\": 8, \"opset\": 17, \"outputs\": %s},\n"
                "    {\"onnx\": \"dynamic.onnx\", \"ir_version\": 8, \"opset\": 17, \"outputs\": %s}],\n"
                " \"cases\": [\n", outputs, outputs);
        parity_case(f, 1, dir, model, "fixed.onnx", h, w);
        parity_case(f, 0, dir, model, "dynamic.onnx", h, w);
        /* A second size, non-square: the dynamic graph resamples the position table itself. */
        parity_case(f, 0, dir, model, "dynamic.onnx", h > patch ? h - patch : h, w + patch);
        fprintf(f, "]}\n");
        if (fclose(f) != 0) { perror(manifest_path); return 1; }
        printf("parity files in %s (check: python scripts/onnx_parity.py check %s)\n", dir, manifest_path);
    } else {
        unlink(fixed_path);
        unlink(dynamic_path);
        rmdir(dir);
    }
    neco_model_free(model);
    printf("EXPORT EXAMPLE OK\n");
    return 0;
}
