/*
 * abuse.c: header conformance and argument-abuse test for libneco.
 *
 * Calls EVERY function declared in neco.h (tests/check_symbols.sh verifies that) with NULL
 * handles, NULL buffers, too-small capacities, zero / negative / huge sizes, bad enum values,
 * handles of the wrong kind, corrupt files (random bytes, a truncated JPEG and PNG, a truncated
 * and an empty safetensors file) and mismatched shapes. Each call must return the documented
 * status with a message that names the function, leave out-handles NULL, and not kill the
 * process. Then the happy paths are checked against each other (single vs batch, RGB vs image
 * handle, index search vs brute force).
 *
 * usage: abuse TINY_MODEL.safetensors   (Tests/Fixtures/vit/tiny_reg4.weights.safetensors:
 *        D 32, patch 14, 4 registers, needs n_heads = 4)
 * Prints "ABUSE OK (<n> checks)" and exits 0 when every check passed.
 */
#define _POSIX_C_SOURCE 200809L
#include <neco.h>

#include <dirent.h>
#include <stddef.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sample_images.h"

static int n_checks = 0;
static int n_failures = 0;

static void fail_at(int line, const char * what, const char * why) {
    fprintf(stderr, "abuse.c:%d: FAILED %s: %s\n", line, what, why);
    n_failures++;
}

/* The call returned `want`; on failure the message names a neco_ function; on success it is "". */
static void expect_status(int line, const char * what, neco_status got, neco_status want) {
    n_checks++;
    const char * msg = neco_last_error();
    char why[1400];
    if (getenv("ABUSE_VERBOSE")) printf("%4d %-18s %s\n", line, neco_status_str(got), msg ? msg : "(null)");
    if (msg == NULL) {
        fail_at(line, what, "neco_last_error() returned NULL");
    } else if (got != want) {
        snprintf(why, sizeof why, "returned %d (%s), expected %d (%s); message: %s", (int)got,
                 neco_status_str(got), (int)want, neco_status_str(want), msg);
        fail_at(line, what, why);
    } else if (want != NECO_OK && strncmp(msg, "neco_", 5) != 0) {
        snprintf(why, sizeof why, "message does not name the function: '%s'", msg);
        fail_at(line, what, why);
    } else if (want == NECO_OK && msg[0] != '\0') {
        snprintf(why, sizeof why, "success left a message: '%s'", msg);
        fail_at(line, what, why);
    }
}

#define EXPECT(call, want) expect_status(__LINE__, #call, (call), (want))
#define TRUE_(cond)                                                                     \
    do {                                                                                \
        n_checks++;                                                                     \
        if (!(cond)) fail_at(__LINE__, #cond, neco_last_error());                       \
    } while (0)
/* A getter on a bad handle: returns the fallback and leaves a message naming itself. */
#define EXPECT_GETTER_FAILS(call, fallback)                                             \
    do {                                                                                \
        n_checks++;                                                                     \
        if ((call) != (fallback)) fail_at(__LINE__, #call, "did not return the fallback"); \
        else if (strncmp(neco_last_error(), "neco_", 5) != 0)                           \
            fail_at(__LINE__, #call, "left no message");                                \
    } while (0)

/* ---- files ------------------------------------------------------------------------------ */

static char tmpdir[256];

static const char * tmp_path(char * buf, size_t n, const char * name) {
    snprintf(buf, n, "%s/%s", tmpdir, name);
    return buf;
}

static void write_file(const char * path, const void * data, size_t n) {
    FILE * f = fopen(path, "wb");
    if (!f || (n > 0 && fwrite(data, 1, n, f) != n)) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
    fclose(f);
}

static unsigned char * read_file(const char * path, size_t * n) {
    FILE * f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char * buf = malloc((size_t)len + 1);
    *n = fread(buf, 1, (size_t)len, f);
    fclose(f);
    return buf;
}

/* ---- log callback ----------------------------------------------------------------------- */

static int debug_messages = 0;
static void count_log(neco_log_level level, const char * text, void * user_data) {
    if (level == NECO_LOG_DEBUG && text && strncmp(text, "neco_", 5) == 0) debug_messages++;
    *(int *)user_data += 1;
}

/* ---- helpers ---------------------------------------------------------------------------- */

static uint32_t lcg_state = 12345;
static float frand(void) {
    lcg_state = lcg_state * 1664525u + 1013904223u;
    return (float)(lcg_state >> 8) / 16777216.0f - 0.5f;
}

static void fill_random(float * x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = frand();
}

static int all_finite(const float * x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

static float max_abs_diff(const float * a, const float * b, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (d > m) m = d;
    }
    return m;
}

/* A handle of the wrong kind, as a confused caller would pass it. */
#define AS(type, handle) ((type *)(void *)(handle))

/* ---- training helpers (Training section) ------------------------------------------------ */

static bool stop_now(const neco_train_progress * progress, void * user_data) {
    (void)progress;
    (void)user_data;
    return false;  /* false = stop */
}

/* ---- export helpers (Export section) ---------------------------------------------------- */

/* Size of a regular file in bytes; -1 when there is none. */
static long long file_bytes(const char * path) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return -1;
    return (long long)st.st_size;
}

/* Names in `dir` that an export may leave only while it runs: "<file>.tmp-<pid>-<n>" (the file
 * being written before its rename) and "<file>.probe-<pid>-<n>" (the writability probe). */
static int export_leftovers(const char * dir) {
    DIR * d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    for (struct dirent * e = readdir(d); e; e = readdir(d))
        if (strstr(e->d_name, ".tmp-") || strstr(e->d_name, ".probe-")) n++;
    closedir(d);
    return n;
}

int main(int argc, char ** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: abuse TINY_MODEL.safetensors\n");
        return 2;
    }
    const char * tiny = argv[1];
    snprintf(tmpdir, sizeof tmpdir, "/tmp/neco-abuse-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    char p_random[512], p_trunc_jpg[512], p_trunc_png[512], p_jpg[512], p_trunc_st[512], p_empty[512];
    tmp_path(p_random, sizeof p_random, "random.bin");
    tmp_path(p_trunc_jpg, sizeof p_trunc_jpg, "truncated.jpg");
    tmp_path(p_trunc_png, sizeof p_trunc_png, "truncated.png");
    tmp_path(p_jpg, sizeof p_jpg, "sample.jpg");
    tmp_path(p_trunc_st, sizeof p_trunc_st, "truncated.safetensors");
    tmp_path(p_empty, sizeof p_empty, "empty.safetensors");
    {
        unsigned char rnd[4096];
        for (size_t i = 0; i < sizeof rnd; i++) rnd[i] = (unsigned char)(frand() * 256.0f + 128.0f);
        write_file(p_random, rnd, sizeof rnd);
        write_file(p_trunc_jpg, sample_jpeg, sizeof sample_jpeg / 2);
        write_file(p_trunc_png, sample_png, sizeof sample_png / 2);
        write_file(p_jpg, sample_jpeg, sizeof sample_jpeg);
        write_file(p_empty, "", 0);
        size_t n = 0;
        unsigned char * st = read_file(tiny, &n);
        if (!st) {
            fprintf(stderr, "cannot read %s\n", tiny);
            return 2;
        }
        write_file(p_trunc_st, st, n * 3 / 5);
        free(st);
    }

    /* ---- version, status, last error --------------------------------------------------- */
    TRUE_(neco_api_version() == NECO_API_VERSION);
    {
        /* The library's version is the header's: NECO_VERSION_* and neco_version() agree. */
        char want[64];
        snprintf(want, sizeof want, "%d.%d.%d+", NECO_VERSION_MAJOR, NECO_VERSION_MINOR, NECO_VERSION_PATCH);
        TRUE_(neco_version() != NULL && strncmp(neco_version(), want, strlen(want)) == 0);
    }
    for (int s = -10; s <= 1; s++) TRUE_(neco_status_str((neco_status)s) != NULL);
    TRUE_(strcmp(neco_status_str(NECO_ERR_DIVERGED), "diverged") == 0);
    TRUE_(strcmp(neco_status_str(NECO_ERR_DATA), "unusable data") == 0);
    TRUE_(strcmp(neco_status_str(NECO_ERR_VERSION), "params version") == 0);

    /* ---- default model path -------------------------------------------------------------- */
    {
        const char * old_model = getenv("NECO_MODEL");
        const char * old_cache = getenv("NECO_CACHE");
        char * keep_model = old_model ? strdup(old_model) : NULL;
        char * keep_cache = old_cache ? strdup(old_cache) : NULL;
        setenv("NECO_MODEL", "/models/x.safetensors", 1);
        TRUE_(strcmp(neco_default_model_path(), "/models/x.safetensors") == 0);
        unsetenv("NECO_MODEL");
        setenv("NECO_CACHE", "/cache", 1);
        const char * path = neco_default_model_path();
        TRUE_(strcmp(path, "/cache/models/dinov2_vits14_imgfocus.safetensors") == 0);
        if (keep_model) setenv("NECO_MODEL", keep_model, 1);
        if (keep_cache) setenv("NECO_CACHE", keep_cache, 1); else unsetenv("NECO_CACHE");
        free(keep_model);
        free(keep_cache);
    }
    TRUE_(strcmp(neco_status_str(NECO_OK), "ok") == 0);
    TRUE_(strcmp(neco_status_str((neco_status)42), "unknown status") == 0);
    TRUE_(neco_last_error() != NULL);

    /* ---- logging ------------------------------------------------------------------------- */
    int log_calls = 0;
    neco_log_set(count_log, &log_calls);
    {
        neco_index * ix = NULL;
        EXPECT(neco_index_init(0, &ix), NECO_ERR_INVALID_ARG);
    }
    TRUE_(log_calls == 1 && debug_messages == 1);
    neco_log_set(NULL, NULL); /* back to stderr (warn and above) */

    /* ---- threads ------------------------------------------------------------------------- */
    int32_t threads0 = neco_get_n_threads();
    TRUE_(threads0 >= 1);
    EXPECT(neco_set_n_threads(-1), NECO_ERR_INVALID_ARG);
    EXPECT(neco_set_n_threads(257), NECO_ERR_INVALID_ARG);
    EXPECT(neco_set_n_threads(INT32_MIN), NECO_ERR_INVALID_ARG);
    TRUE_(neco_get_n_threads() == threads0);
    EXPECT(neco_set_n_threads(1), NECO_OK);
    TRUE_(neco_get_n_threads() == 1);
    EXPECT(neco_set_n_threads(0), NECO_OK);
    TRUE_(neco_get_n_threads() >= 1);
    EXPECT(neco_set_n_threads(threads0), NECO_OK);

    /* ---- model load ---------------------------------------------------------------------- */
    neco_model_params mp = neco_model_default_params();
    TRUE_(mp.n_heads == 0 && mp.n_registers == -1 && mp.pos_rule == NECO_POS_RULE_AUTO &&
          mp.image_height == 224 && mp.image_width == 224 && mp.expect_arch == NULL);
    mp.n_heads = 4;
    neco_model * model = (neco_model *)(void *)&mp; /* must be reset to NULL on failure */
    EXPECT(neco_model_load(NULL, &mp, &model), NECO_ERR_INVALID_ARG);
    TRUE_(model == NULL);
    EXPECT(neco_model_load(tiny, &mp, NULL), NECO_ERR_INVALID_ARG);
    EXPECT(neco_model_load("", &mp, &model), NECO_ERR_INVALID_ARG);
    {
        char * longpath = malloc(5001);
        memset(longpath, 'a', 5000);
        longpath[5000] = '\0';
        EXPECT(neco_model_load(longpath, &mp, &model), NECO_ERR_INVALID_ARG);
        free(longpath);
    }
    EXPECT(neco_model_load("/nonexistent/neco/model.safetensors", &mp, &model), NECO_ERR_IO);
    EXPECT(neco_model_load(tmpdir, &mp, &model), NECO_ERR_IO); /* a directory */
    EXPECT(neco_model_load(p_random, &mp, &model), NECO_ERR_FORMAT);
    EXPECT(neco_model_load(p_trunc_st, &mp, &model), NECO_ERR_FORMAT);
    EXPECT(neco_model_load(p_empty, &mp, &model), NECO_ERR_FORMAT);
    EXPECT(neco_model_load(p_jpg, &mp, &model), NECO_ERR_FORMAT);
    TRUE_(model == NULL);
    {
        neco_model_params bad = mp;
        bad.n_heads = -1;
        EXPECT(neco_model_load(tiny, &bad, &model), NECO_ERR_INVALID_ARG);
        bad.n_heads = 5; /* 32 is not divisible by 5 */
        EXPECT(neco_model_load(tiny, &bad, &model), NECO_ERR_INVALID_ARG);
        bad.n_heads = 100000;
        EXPECT(neco_model_load(tiny, &bad, &model), NECO_ERR_INVALID_ARG);
        bad = mp;
        bad.n_registers = -2;
        EXPECT(neco_model_load(tiny, &bad, &model), NECO_ERR_INVALID_ARG);
        bad.n_registers = 65;
        EXPECT(neco_model_load(tiny, &bad, &model), NECO_ERR_INVALID_ARG);
        bad.n_registers = 3; /* the weights have 4 */
        EXPECT(neco_model_load(tiny, &bad, &model), NECO_ERR_SHAPE);
        bad = mp;
        bad.pos_rule = 7;
        EXPECT(neco_model_load(tiny, &bad, &model), NECO_ERR_INVALID_ARG);
        bad.pos_rule = -1;
        EXPECT(neco_model_load(tiny, &bad, &model), NECO_ERR_INVALID_ARG);
        bad = mp;
        bad.image_height = 0;
        EXPECT(neco_model_load(tiny, &bad, &model), NECO_ERR_INVALID_ARG);
        bad.image_height = -14;
        EXPECT(neco_model_load(tiny, &bad, &model), NECO_ERR_INVALID_ARG);
        bad.image_height = 1 << 20;
        EXPECT(neco_model_load(tiny, &bad, &model), NECO_ERR_INVALID_ARG);
        bad.image_height = 225; /* not a multiple of 14 */
        EXPECT(neco_model_load(tiny, &bad, &model), NECO_ERR_SHAPE);
        bad = mp;
        bad.expect_arch = "resnet50";
        EXPECT(neco_model_load(tiny, &bad, &model), NECO_ERR_INVALID_ARG);
        bad.expect_arch = "";
        EXPECT(neco_model_load(tiny, &bad, &model), NECO_ERR_INVALID_ARG);
        bad.expect_arch = "vits14"; /* the tiny model is not a ViT-S */
        EXPECT(neco_model_load(tiny, &bad, &model), NECO_ERR_SHAPE);
        TRUE_(model == NULL);
    }
    /* NULL params = defaults: heads = 32 / 64 -> 1 would not fit 4-wide fixture heads, but any
     * head count that divides D loads; the fixture's numbers then differ, which is fine here. */
    EXPECT(neco_model_load(tiny, NULL, &model), NECO_OK);
    TRUE_(model != NULL);
    neco_model_free(model);
    model = NULL;
    mp.pos_rule = NECO_POS_RULE_NECO;
    EXPECT(neco_model_load(tiny, &mp, &model), NECO_OK);
    neco_model_free(model);
    model = NULL;
    mp.pos_rule = NECO_POS_RULE_AUTO;
    EXPECT(neco_model_load(tiny, &mp, &model), NECO_OK);
    TRUE_(model != NULL);
    if (!model) return 1;

    /* ---- params struct_size (ABI evolution) ------------------------------------------------ */
    {
        neco_model * m2 = AS(neco_model, &mp);
        neco_model_params sp = neco_model_default_params();
        TRUE_(sp.struct_size == sizeof(neco_model_params));
        sp.n_heads = 4;
        sp.struct_size = 0;
        EXPECT(neco_model_load(tiny, &sp, &m2), NECO_ERR_VERSION);
        TRUE_(m2 == NULL);
        sp.struct_size = sizeof(neco_model_params) + 8; /* a newer header than the library */
        EXPECT(neco_model_load(tiny, &sp, &m2), NECO_ERR_VERSION);
        sp.struct_size = 3;
        EXPECT(neco_model_load(tiny, &sp, &m2), NECO_ERR_VERSION);
        sp.struct_size = offsetof(neco_model_params, n_registers) + 1; /* inside a field */
        EXPECT(neco_model_load(tiny, &sp, &m2), NECO_ERR_VERSION);
        sp.struct_size = (size_t)-1;
        EXPECT(neco_model_load(tiny, &sp, &m2), NECO_ERR_VERSION);
        /* An older, smaller struct that ends after n_registers: the fields beyond are defaults,
         * so the invalid image_height below is never read. */
        sp.struct_size = offsetof(neco_model_params, pos_rule);
        sp.image_height = 13;
        EXPECT(neco_model_load(tiny, &sp, &m2), NECO_OK);
        TRUE_(neco_model_image_height(m2) == 224);
        neco_model_free(m2);
        neco_extract_params se = neco_extract_default_params();
        neco_predict_params sq = neco_predict_default_params();
        neco_train_params st = neco_train_default_params();
        neco_export_params sx = neco_export_default_params();
        TRUE_(se.struct_size == sizeof se && sq.struct_size == sizeof sq && st.struct_size == sizeof st &&
              sx.struct_size == sizeof sx);
        neco_feature_shape shp;
        se.out_height = se.out_width = 7;
        se.struct_size = 0;
        EXPECT(neco_extract_shape_rgb(model, 224, 224, &se, &shp), NECO_ERR_VERSION);
        se.struct_size = sizeof se + 4;
        EXPECT(neco_extract_shape_rgb(model, 224, 224, &se, &shp), NECO_ERR_VERSION);
        se.struct_size = offsetof(neco_extract_params, out_height); /* older: no upsampling fields */
        EXPECT(neco_extract_shape_rgb(model, 224, 224, &se, &shp), NECO_OK);
        TRUE_(shp.out_height == 16 && shp.out_width == 16);
        se.struct_size = sizeof se;
        EXPECT(neco_extract_shape_rgb(model, 224, 224, &se, &shp), NECO_OK);
        TRUE_(shp.out_height == 7 && shp.out_width == 7);
    }

    /* ---- model getters ------------------------------------------------------------------- */
    TRUE_(neco_model_embed_dim(model) == 32);
    TRUE_(neco_model_patch_size(model) == 14);
    TRUE_(neco_model_n_layers(model) >= 1);
    TRUE_(neco_model_n_heads(model) == 4);
    TRUE_(neco_model_n_registers(model) == 4);
    TRUE_(neco_model_n_params(model) > 0);
    TRUE_(neco_model_image_height(model) == 224);
    TRUE_(neco_model_image_width(model) == 224);
    TRUE_(neco_model_name(model) != NULL && strlen(neco_model_name(model)) > 0);
    TRUE_(neco_model_family(model) == NECO_FAMILY_DINOV2);
    EXPECT_GETTER_FAILS(neco_model_family(NULL), 0);
    EXPECT_GETTER_FAILS(neco_model_workspace_bytes(NULL), 0);
    neco_model_release_workspaces(NULL); /* a no-op */
    EXPECT_GETTER_FAILS(neco_model_embed_dim(NULL), 0);
    EXPECT_GETTER_FAILS(neco_model_patch_size(NULL), 0);
    EXPECT_GETTER_FAILS(neco_model_n_layers(NULL), 0);
    EXPECT_GETTER_FAILS(neco_model_n_heads(NULL), 0);
    EXPECT_GETTER_FAILS(neco_model_n_registers(NULL), 0);
    EXPECT_GETTER_FAILS(neco_model_n_params(NULL), 0);
    EXPECT_GETTER_FAILS(neco_model_image_height(NULL), 0);
    EXPECT_GETTER_FAILS(neco_model_image_width(NULL), 0);
    EXPECT_GETTER_FAILS(neco_model_name(NULL), NULL);
    neco_model_free(NULL);

    /* ---- images -------------------------------------------------------------------------- */
    neco_image * img = (neco_image *)(void *)&mp;
    EXPECT(neco_image_load(NULL, &img), NECO_ERR_INVALID_ARG);
    TRUE_(img == NULL);
    EXPECT(neco_image_load(p_jpg, NULL), NECO_ERR_INVALID_ARG);
    EXPECT(neco_image_load("", &img), NECO_ERR_INVALID_ARG);
    EXPECT(neco_image_load("/nonexistent/neco/cat.png", &img), NECO_ERR_IO);
    EXPECT(neco_image_load(tmpdir, &img), NECO_ERR_IO);
    EXPECT(neco_image_load(p_random, &img), NECO_ERR_FORMAT);
    EXPECT(neco_image_load(p_trunc_jpg, &img), NECO_ERR_FORMAT);
    EXPECT(neco_image_load(p_trunc_png, &img), NECO_ERR_FORMAT);
    EXPECT(neco_image_load(p_empty, &img), NECO_ERR_FORMAT);
    EXPECT(neco_image_load(tiny, &img), NECO_ERR_FORMAT);
    TRUE_(img == NULL);
    EXPECT(neco_image_decode(NULL, 10, &img), NECO_ERR_INVALID_ARG);
    EXPECT(neco_image_decode(sample_jpeg, 0, &img), NECO_ERR_INVALID_ARG);
    EXPECT(neco_image_decode(sample_jpeg, sizeof sample_jpeg, NULL), NECO_ERR_INVALID_ARG);
    EXPECT(neco_image_decode(sample_jpeg, SIZE_MAX, &img), NECO_ERR_INVALID_ARG);
    EXPECT(neco_image_decode(sample_jpeg, (size_t)3 << 30, &img), NECO_ERR_OOM); /* refused unread */
    EXPECT(neco_image_decode(sample_jpeg, sizeof sample_jpeg / 2, &img), NECO_ERR_FORMAT);
    EXPECT(neco_image_decode(sample_png, 20, &img), NECO_ERR_FORMAT);
    EXPECT(neco_image_decode("GIF89a", 6, &img), NECO_ERR_FORMAT);
    TRUE_(img == NULL);
    /* Decoding limits (hostile.c covers them in depth). */
    TRUE_(neco_image_get_max_pixels() == 89478485);
    EXPECT(neco_image_set_max_pixels(-1), NECO_ERR_INVALID_ARG);
    EXPECT(neco_image_set_max_pixels(((int64_t)1 << 28) + 1), NECO_ERR_INVALID_ARG);
    EXPECT(neco_image_set_max_pixels(SAMPLE_WIDTH * SAMPLE_HEIGHT - 1), NECO_OK);
    EXPECT(neco_image_decode(sample_png, sizeof sample_png, &img), NECO_ERR_INVALID_ARG);
    EXPECT(neco_image_set_max_pixels(0), NECO_OK);
    TRUE_(neco_image_get_max_pixels() == 89478485);
    TRUE_(!neco_image_get_load_truncated());
    neco_image_set_load_truncated(true);
    TRUE_(neco_image_get_load_truncated());
    EXPECT(neco_image_decode(sample_jpeg, sizeof sample_jpeg * 3 / 4, &img), NECO_OK);
    neco_image_free(img);
    img = NULL;
    neco_image_set_load_truncated(false);
    EXPECT(neco_image_decode(sample_png, sizeof sample_png, &img), NECO_OK);
    TRUE_(neco_image_width(img) == SAMPLE_WIDTH && neco_image_height(img) == SAMPLE_HEIGHT);
    {
        const uint8_t * px = neco_image_data(img); /* PNG is lossless: check the gradient */
        int ok = px != NULL;
        for (int y = 0; ok && y < SAMPLE_HEIGHT; y++)
            for (int x = 0; ok && x < SAMPLE_WIDTH; x++) {
                const uint8_t * p = px + (y * SAMPLE_WIDTH + x) * 3;
                ok = p[0] == (6 * x) % 256 && p[1] == (8 * y) % 256 && p[2] == (3 * (x + y)) % 256;
            }
        TRUE_(ok);
    }
    neco_image_free(img);
    img = NULL;
    EXPECT(neco_image_load(p_jpg, &img), NECO_OK);
    TRUE_(img != NULL && neco_image_width(img) == SAMPLE_WIDTH && neco_image_height(img) == SAMPLE_HEIGHT);
    TRUE_(neco_image_data(img) != NULL);
    EXPECT_GETTER_FAILS(neco_image_width(NULL), 0);
    EXPECT_GETTER_FAILS(neco_image_height(NULL), 0);
    EXPECT_GETTER_FAILS(neco_image_data(NULL), NULL);
    EXPECT_GETTER_FAILS(neco_image_width(AS(neco_image, model)), 0);
    EXPECT_GETTER_FAILS(neco_model_embed_dim(AS(neco_model, img)), 0);
    neco_image_free(NULL);

    /* ---- size queries -------------------------------------------------------------------- */
    neco_extract_params ep = neco_extract_default_params();
    TRUE_(ep.resize == NECO_RESIZE_STRETCH && ep.height == 0 && ep.width == 0 && ep.out_height == 0 &&
          ep.out_width == 0 && !ep.l2_normalize);
    neco_feature_shape sh;
    memset(&sh, 0, sizeof sh);
    EXPECT(neco_extract_shape_rgb(NULL, 30, 42, &ep, &sh), NECO_ERR_INVALID_ARG);
    EXPECT(neco_extract_shape_rgb(model, 30, 42, &ep, NULL), NECO_ERR_INVALID_ARG);
    EXPECT(neco_extract_shape_rgb(AS(neco_model, img), 30, 42, &ep, &sh), NECO_ERR_INVALID_ARG);
    EXPECT(neco_extract_shape_rgb(model, 0, 42, &ep, &sh), NECO_ERR_INVALID_ARG);
    EXPECT(neco_extract_shape_rgb(model, 30, -42, &ep, &sh), NECO_ERR_INVALID_ARG);
    EXPECT(neco_extract_shape_rgb(model, 70000, 42, &ep, &sh), NECO_ERR_OOM);
    EXPECT(neco_extract_shape_rgb(model, 60000, 60000, &ep, &sh), NECO_ERR_OOM);
    EXPECT(neco_extract_shape_rgb(model, 30, 42, NULL, &sh), NECO_OK); /* NULL params = defaults */
    TRUE_(sh.input_height == 224 && sh.input_width == 224 && sh.grid_height == 16 && sh.grid_width == 16 &&
          sh.out_height == 16 && sh.out_width == 16 && sh.dim == 32 && sh.n_registers == 4 &&
          sh.n_patches == 256 && sh.patches_per_image == 256 * 32 && sh.cls_per_image == 32 &&
          sh.registers_per_image == 4 * 32);
    {
        neco_extract_params b = ep;
        b.resize = 4;
        EXPECT(neco_extract_shape_rgb(model, 30, 42, &b, &sh), NECO_ERR_INVALID_ARG);
        b.resize = -1;
        EXPECT(neco_extract_shape_rgb(model, 30, 42, &b, &sh), NECO_ERR_INVALID_ARG);
        b = ep;
        b.height = 112; /* width 0: one zero is not "the default" */
        EXPECT(neco_extract_shape_rgb(model, 30, 42, &b, &sh), NECO_ERR_INVALID_ARG);
        b.width = -112;
        EXPECT(neco_extract_shape_rgb(model, 30, 42, &b, &sh), NECO_ERR_INVALID_ARG);
        b.width = 100000;
        EXPECT(neco_extract_shape_rgb(model, 30, 42, &b, &sh), NECO_ERR_INVALID_ARG);
        b.width = 113; /* not a multiple of 14 */
        EXPECT(neco_extract_shape_rgb(model, 30, 42, &b, &sh), NECO_ERR_SHAPE);
        b.height = 7;
        b.width = 7; /* smaller than one patch */
        EXPECT(neco_extract_shape_rgb(model, 30, 42, &b, &sh), NECO_ERR_SHAPE);
        b.height = 16380; /* too many patches for the model */
        b.width = 16380;
        EXPECT(neco_extract_shape_rgb(model, 30, 42, &b, &sh), NECO_ERR_SHAPE);
        b = ep;
        b.resize = NECO_RESIZE_CROP;
        b.height = 112;
        b.width = 140;
        EXPECT(neco_extract_shape_rgb(model, 30, 42, &b, &sh), NECO_ERR_INVALID_ARG);
        b.width = 112;
        EXPECT(neco_extract_shape_rgb(model, 30, 42, &b, &sh), NECO_OK);
        TRUE_(sh.input_height == 112 && sh.input_width == 112);
        EXPECT(neco_extract_shape_rgb(model, 1, 60000, &b, &sh), NECO_ERR_OOM); /* 112 x 6.7M intermediate */
        b.resize = NECO_RESIZE_FIT;
        b.height = 112;
        b.width = 112;
        EXPECT(neco_extract_shape_rgb(model, 30, 42, &b, &sh), NECO_OK);
        TRUE_(sh.input_width == 112 && sh.input_height == 84); /* 30/42 * 112 = 80 -> 84 */
        b.resize = NECO_RESIZE_NONE;
        EXPECT(neco_extract_shape_rgb(model, 30, 42, &b, &sh), NECO_ERR_SHAPE); /* 30 % 14 != 0 */
        EXPECT(neco_extract_shape_rgb(model, 28, 42, &b, &sh), NECO_OK);
        TRUE_(sh.input_height == 28 && sh.input_width == 42 && sh.n_patches == 6);
        b = ep;
        b.out_height = 10;
        b.out_width = 0;
        EXPECT(neco_extract_shape_rgb(model, 30, 42, &b, &sh), NECO_ERR_INVALID_ARG);
        b.out_width = -10;
        EXPECT(neco_extract_shape_rgb(model, 30, 42, &b, &sh), NECO_ERR_INVALID_ARG);
        b.out_height = 20000;
        b.out_width = 10;
        EXPECT(neco_extract_shape_rgb(model, 30, 42, &b, &sh), NECO_ERR_INVALID_ARG);
        b.out_height = 16384;
        b.out_width = 16384; /* over 2^24 positions */
        EXPECT(neco_extract_shape_rgb(model, 30, 42, &b, &sh), NECO_ERR_INVALID_ARG);
        b.out_height = 30;
        b.out_width = 42;
        EXPECT(neco_extract_shape_rgb(model, 30, 42, &b, &sh), NECO_OK);
        TRUE_(sh.out_height == 30 && sh.out_width == 42 && sh.n_patches == 30 * 42 &&
              sh.patches_per_image == (size_t)30 * 42 * 32 && sh.grid_height == 16);
    }
    EXPECT(neco_extract_shape_nchw(NULL, 56, 56, &ep, &sh), NECO_ERR_INVALID_ARG);
    EXPECT(neco_extract_shape_nchw(model, 56, 56, &ep, NULL), NECO_ERR_INVALID_ARG);
    EXPECT(neco_extract_shape_nchw(model, 0, 56, &ep, &sh), NECO_ERR_INVALID_ARG);
    EXPECT(neco_extract_shape_nchw(model, 56, -56, &ep, &sh), NECO_ERR_INVALID_ARG);
    EXPECT(neco_extract_shape_nchw(model, 57, 56, &ep, &sh), NECO_ERR_SHAPE);
    EXPECT(neco_extract_shape_nchw(model, 7, 7, &ep, &sh), NECO_ERR_SHAPE);
    EXPECT(neco_extract_shape_nchw(model, INT32_MAX, INT32_MAX, &ep, &sh), NECO_ERR_SHAPE);
    EXPECT(neco_extract_shape_nchw(model, 56, 42, NULL, &sh), NECO_OK);
    TRUE_(sh.input_height == 56 && sh.input_width == 42 && sh.n_patches == 12);

    /* ---- RGB extraction ------------------------------------------------------------------ */
    const int32_t H = SAMPLE_HEIGHT, W = SAMPLE_WIDTH;
    const uint8_t * px = neco_image_data(img);
    const size_t NP = 256 * 32, NC = 32, NR = 4 * 32;
    float * patches = calloc(2 * NP, sizeof(float));
    float * cls = calloc(2 * NC, sizeof(float));
    float * regs = calloc(2 * NR, sizeof(float));
    neco_feature_buffers out;
    memset(&out, 0, sizeof out);
    out.patches = patches;
    out.patches_capacity = NP;
    out.cls = cls;
    out.cls_capacity = NC;
    out.registers = regs;
    out.registers_capacity = NR;
    EXPECT(neco_extract_rgb(NULL, px, H, W, &ep, &out), NECO_ERR_INVALID_ARG);
    EXPECT(neco_extract_rgb(AS(neco_model, img), px, H, W, &ep, &out), NECO_ERR_INVALID_ARG);
    EXPECT(neco_extract_rgb(model, NULL, H, W, &ep, &out), NECO_ERR_INVALID_ARG);
    EXPECT(neco_extract_rgb(model, px, H, W, &ep, NULL), NECO_ERR_INVALID_ARG);
    EXPECT(neco_extract_rgb(model, px, 0, W, &ep, &out), NECO_ERR_INVALID_ARG);
    EXPECT(neco_extract_rgb(model, px, H, -1, &ep, &out), NECO_ERR_INVALID_ARG);
    EXPECT(neco_extract_rgb(model, px, INT32_MAX, INT32_MAX, &ep, &out), NECO_ERR_OOM);
    {
        neco_feature_buffers o = out;
        o.patches_capacity = NP - 1;
        EXPECT(neco_extract_rgb(model, px, H, W, &ep, &o), NECO_ERR_SHAPE);
        o = out;
        o.cls_capacity = 0;
        EXPECT(neco_extract_rgb(model, px, H, W, &ep, &o), NECO_ERR_SHAPE);
        o = out;
        o.registers_capacity = NR - 1;
        EXPECT(neco_extract_rgb(model, px, H, W, &ep, &o), NECO_ERR_SHAPE);
        o = out;
        o.patches_capacity = SIZE_MAX; /* beyond 2^63: refused, not trusted */
        EXPECT(neco_extract_rgb(model, px, H, W, &ep, &o), NECO_ERR_INVALID_ARG);
        memset(&o, 0, sizeof o);
        o.patches_capacity = NP; /* capacities without pointers: nothing to write */
        EXPECT(neco_extract_rgb(model, px, H, W, &ep, &o), NECO_ERR_INVALID_ARG);
        neco_extract_params b = ep;
        b.resize = 99;
        EXPECT(neco_extract_rgb(model, px, H, W, &b, &out), NECO_ERR_INVALID_ARG);
        b = ep;
        b.height = 113;
        b.width = 113;
        EXPECT(neco_extract_rgb(model, px, H, W, &b, &out), NECO_ERR_SHAPE);
        b = ep;
        b.out_height = 224;
        b.out_width = 224; /* upsampled: 224*224*32 floats do not fit in NP */
        EXPECT(neco_extract_rgb(model, px, H, W, &b, &out), NECO_ERR_SHAPE);
    }
    EXPECT(neco_extract_rgb(model, px, H, W, &ep, &out), NECO_OK);
    TRUE_(all_finite(patches, NP) && all_finite(cls, NC) && all_finite(regs, NR));
    /* Only CLS: the other outputs may be skipped. */
    {
        float cls_only[32];
        neco_feature_buffers o;
        memset(&o, 0, sizeof o);
        o.cls = cls_only;
        o.cls_capacity = 32;
        EXPECT(neco_extract_rgb(model, px, H, W, NULL, &o), NECO_OK);
        TRUE_(max_abs_diff(cls_only, cls, 32) == 0.0f);
    }
    /* The image handle path gives the same numbers. */
    {
        neco_feature_buffers o = out;
        o.patches = patches + NP;
        o.cls = cls + NC;
        o.registers = regs + NR;
        EXPECT(neco_extract_image(NULL, img, &ep, &o), NECO_ERR_INVALID_ARG);
        EXPECT(neco_extract_image(model, NULL, &ep, &o), NECO_ERR_INVALID_ARG);
        EXPECT(neco_extract_image(model, AS(neco_image, model), &ep, &o), NECO_ERR_INVALID_ARG);
        EXPECT(neco_extract_image(model, img, &ep, NULL), NECO_ERR_INVALID_ARG);
        EXPECT(neco_extract_image(model, img, &ep, &o), NECO_OK);
        TRUE_(max_abs_diff(patches, patches + NP, NP) == 0.0f && max_abs_diff(cls, cls + NC, NC) == 0.0f);
    }
    /* L2 normalisation and upsampling. */
    {
        neco_extract_params b = ep;
        b.l2_normalize = true;
        neco_feature_buffers o;
        memset(&o, 0, sizeof o);
        o.patches = patches + NP;
        o.patches_capacity = NP;
        EXPECT(neco_extract_rgb(model, px, H, W, &b, &o), NECO_OK);
        int ok = 1;
        for (size_t r = 0; r < 256; r++) {
            double s = 0;
            for (size_t i = 0; i < 32; i++) s += (double)patches[NP + r * 32 + i] * patches[NP + r * 32 + i];
            ok &= fabs(s - 1.0) < 1e-4;
        }
        TRUE_(ok);
        b.out_height = 8; /* downsampling 16 -> 8 is allowed too */
        b.out_width = 8;
        o.patches_capacity = 8 * 8 * 32;
        EXPECT(neco_extract_rgb(model, px, H, W, &b, &o), NECO_OK);
        TRUE_(all_finite(patches + NP, 8 * 8 * 32));
    }

    /* ---- RGB batch ----------------------------------------------------------------------- */
    {
        const uint8_t * imgs[2] = {px, px};
        int32_t hs[2] = {H, H}, ws[2] = {W, W};
        neco_feature_buffers o = out;
        o.patches_capacity = 2 * NP;
        o.cls_capacity = 2 * NC;
        o.registers_capacity = 2 * NR;
        EXPECT(neco_extract_rgb_batch(NULL, imgs, hs, ws, 2, &ep, &o), NECO_ERR_INVALID_ARG);
        EXPECT(neco_extract_rgb_batch(model, NULL, hs, ws, 2, &ep, &o), NECO_ERR_INVALID_ARG);
        EXPECT(neco_extract_rgb_batch(model, imgs, NULL, ws, 2, &ep, &o), NECO_ERR_INVALID_ARG);
        EXPECT(neco_extract_rgb_batch(model, imgs, hs, NULL, 2, &ep, &o), NECO_ERR_INVALID_ARG);
        EXPECT(neco_extract_rgb_batch(model, imgs, hs, ws, 0, &ep, &o), NECO_ERR_INVALID_ARG);
        EXPECT(neco_extract_rgb_batch(model, imgs, hs, ws, -2, &ep, &o), NECO_ERR_INVALID_ARG);
        EXPECT(neco_extract_rgb_batch(model, imgs, hs, ws, 5000, &ep, &o), NECO_ERR_INVALID_ARG);
        EXPECT(neco_extract_rgb_batch(model, imgs, hs, ws, 2, &ep, NULL), NECO_ERR_INVALID_ARG);
        const uint8_t * with_null[2] = {px, NULL};
        EXPECT(neco_extract_rgb_batch(model, with_null, hs, ws, 2, &ep, &o), NECO_ERR_INVALID_ARG);
        int32_t bad_h[2] = {H, 0};
        EXPECT(neco_extract_rgb_batch(model, imgs, bad_h, ws, 2, &ep, &o), NECO_ERR_INVALID_ARG);
        {
            neco_feature_buffers small = o;
            small.patches_capacity = NP; /* room for one image only */
            EXPECT(neco_extract_rgb_batch(model, imgs, hs, ws, 2, &ep, &small), NECO_ERR_SHAPE);
        }
        {
            /* FIT keeps the aspect ratio: a 30x42 and a 42x30 picture give different sizes. */
            neco_extract_params fit = ep;
            fit.resize = NECO_RESIZE_FIT;
            int32_t hs2[2] = {H, W}, ws2[2] = {W, H}; /* same bytes read as 42 rows of 30 */
            EXPECT(neco_extract_rgb_batch(model, imgs, hs2, ws2, 2, &fit, &o), NECO_ERR_SHAPE);
        }
        EXPECT(neco_extract_rgb_batch(model, imgs, hs, ws, 2, &ep, &o), NECO_OK);
        /* Batch of two identical pictures == twice the single result (up to GEMM blocking). */
        float * single = malloc(NP * sizeof(float));
        memcpy(single, patches, NP * sizeof(float));
        neco_feature_buffers s1;
        memset(&s1, 0, sizeof s1);
        s1.patches = single;
        s1.patches_capacity = NP;
        EXPECT(neco_extract_rgb(model, px, H, W, &ep, &s1), NECO_OK);
        TRUE_(max_abs_diff(patches, single, NP) < 1e-4f && max_abs_diff(patches + NP, single, NP) < 1e-4f);
        free(single);
    }

    /* ---- NCHW extraction ----------------------------------------------------------------- */
    {
        const int32_t h = 56, w = 42;
        const size_t n_in = (size_t)2 * 3 * h * w;
        float * x = malloc(n_in * sizeof(float));
        fill_random(x, n_in);
        const size_t np = 12 * 32;
        neco_feature_buffers o;
        memset(&o, 0, sizeof o);
        o.patches = patches;
        o.patches_capacity = 2 * np;
        o.cls = cls;
        o.cls_capacity = 2 * NC;
        o.registers = regs;
        o.registers_capacity = 2 * NR;
        EXPECT(neco_extract_nchw(NULL, x, 2, h, w, &ep, &o), NECO_ERR_INVALID_ARG);
        EXPECT(neco_extract_nchw(model, NULL, 2, h, w, &ep, &o), NECO_ERR_INVALID_ARG);
        EXPECT(neco_extract_nchw(model, x, 0, h, w, &ep, &o), NECO_ERR_INVALID_ARG);
        EXPECT(neco_extract_nchw(model, x, -1, h, w, &ep, &o), NECO_ERR_INVALID_ARG);
        EXPECT(neco_extract_nchw(model, x, 4097, h, w, &ep, &o), NECO_ERR_INVALID_ARG);
        EXPECT(neco_extract_nchw(model, x, 2, 0, w, &ep, &o), NECO_ERR_INVALID_ARG);
        EXPECT(neco_extract_nchw(model, x, 2, h, w + 1, &ep, &o), NECO_ERR_SHAPE);
        EXPECT(neco_extract_nchw(model, x, 2, h, w, &ep, NULL), NECO_ERR_INVALID_ARG);
        EXPECT(neco_extract_nchw(model, x, 3, h, w, &ep, &o), NECO_ERR_SHAPE); /* room for 2 */
        EXPECT(neco_extract_nchw(model, x, 2, h, w, &ep, &o), NECO_OK);
        TRUE_(all_finite(patches, 2 * np) && all_finite(cls, 2 * NC) && all_finite(regs, 2 * NR));
        /* Image 1 alone == image 1 of the batch (up to GEMM blocking). */
        float * one = malloc(np * sizeof(float));
        neco_feature_buffers o1;
        memset(&o1, 0, sizeof o1);
        o1.patches = one;
        o1.patches_capacity = np;
        EXPECT(neco_extract_nchw(model, x + (size_t)3 * h * w, 1, h, w, NULL, &o1), NECO_OK);
        TRUE_(max_abs_diff(one, patches + np, np) < 1e-4f);
        free(one);
        free(x);
    }

    /* ---- patch index --------------------------------------------------------------------- */
    {
        enum { D = 8, M = 300, Q = 20, K = 5 };
        float * bank = malloc(M * D * sizeof(float));
        float * queries = malloc(Q * D * sizeof(float));
        int32_t labels[M];
        fill_random(bank, M * D);
        fill_random(queries, Q * D);
        for (int i = 0; i < M; i++) labels[i] = i % 7;
        neco_index * ix = AS(neco_index, &mp);
        EXPECT(neco_index_init(0, &ix), NECO_ERR_INVALID_ARG);
        TRUE_(ix == NULL);
        EXPECT(neco_index_init(-3, &ix), NECO_ERR_INVALID_ARG);
        EXPECT(neco_index_init(70000, &ix), NECO_ERR_INVALID_ARG);
        EXPECT(neco_index_init(D, NULL), NECO_ERR_INVALID_ARG);
        EXPECT(neco_index_init(D, &ix), NECO_OK);
        TRUE_(neco_index_size(ix) == 0 && neco_index_dim(ix) == D);
        EXPECT_GETTER_FAILS(neco_index_size(NULL), 0);
        EXPECT_GETTER_FAILS(neco_index_dim(NULL), 0);
        EXPECT_GETTER_FAILS(neco_index_dim(AS(neco_index, model)), 0);
        EXPECT(neco_index_add(NULL, bank, M, labels), NECO_ERR_INVALID_ARG);
        EXPECT(neco_index_add(AS(neco_index, img), bank, M, labels), NECO_ERR_INVALID_ARG);
        EXPECT(neco_index_add(ix, NULL, M, labels), NECO_ERR_INVALID_ARG);
        EXPECT(neco_index_add(ix, bank, -1, labels), NECO_ERR_INVALID_ARG);
        EXPECT(neco_index_add(ix, bank, INT64_MAX, labels), NECO_ERR_OOM); /* refused unread */
        EXPECT(neco_index_add(ix, bank, (int64_t)1 << 40, labels), NECO_ERR_OOM);
        EXPECT(neco_index_add(ix, bank, 0, labels), NECO_OK);
        bank[3 * D + 1] = NAN;
        EXPECT(neco_index_add(ix, bank, M, labels), NECO_ERR_INVALID_ARG);
        bank[3 * D + 1] = INFINITY;
        EXPECT(neco_index_add(ix, bank, M, labels), NECO_ERR_INVALID_ARG);
        TRUE_(neco_index_size(ix) == 0); /* nothing was added */
        bank[3 * D + 1] = 0.25f;
        EXPECT(neco_index_add(ix, bank, 100, labels), NECO_OK);
        EXPECT(neco_index_add(ix, bank + 100 * D, M - 100, NULL), NECO_OK); /* labels -1 */
        TRUE_(neco_index_size(ix) == M);

        int64_t idx[Q * K];
        float sim[Q * K];
        int32_t lab[Q * K];
        EXPECT(neco_index_search(NULL, queries, Q, K, idx, sim, lab, Q * K), NECO_ERR_INVALID_ARG);
        EXPECT(neco_index_search(AS(neco_index, model), queries, Q, K, idx, sim, lab, Q * K), NECO_ERR_INVALID_ARG);
        EXPECT(neco_index_search(ix, NULL, Q, K, idx, sim, lab, Q * K), NECO_ERR_INVALID_ARG);
        EXPECT(neco_index_search(ix, queries, -1, K, idx, sim, lab, Q * K), NECO_ERR_INVALID_ARG);
        EXPECT(neco_index_search(ix, queries, Q, 0, idx, sim, lab, Q * K), NECO_ERR_INVALID_ARG);
        EXPECT(neco_index_search(ix, queries, Q, -5, idx, sim, lab, Q * K), NECO_ERR_INVALID_ARG);
        EXPECT(neco_index_search(ix, queries, Q, M + 1, idx, sim, lab, Q * K), NECO_ERR_SHAPE);
        EXPECT(neco_index_search(ix, queries, Q, K, idx, sim, lab, Q * K - 1), NECO_ERR_SHAPE);
        EXPECT(neco_index_search(ix, queries, Q, K, idx, sim, lab, SIZE_MAX), NECO_ERR_INVALID_ARG);
        EXPECT(neco_index_search(ix, queries, Q, K, NULL, NULL, NULL, Q * K), NECO_ERR_INVALID_ARG);
        EXPECT(neco_index_search(ix, queries, INT64_MAX, K, idx, sim, lab, Q * K), NECO_ERR_OOM);
        queries[5] = NAN;
        EXPECT(neco_index_search(ix, queries, Q, K, idx, sim, lab, Q * K), NECO_ERR_INVALID_ARG);
        queries[5] = 0.1f;
        EXPECT(neco_index_search(ix, queries, 0, K, idx, sim, lab, 0), NECO_OK);
        EXPECT(neco_index_search(ix, queries, Q, K, idx, sim, lab, Q * K), NECO_OK);
        /* Brute force in double. */
        int ok = 1;
        for (int q = 0; q < Q; q++) {
            double best = -2;
            int64_t best_i = -1;
            for (int m = 0; m < M; m++) {
                double dot = 0, nq = 0, nm = 0;
                for (int i = 0; i < D; i++) {
                    dot += (double)queries[q * D + i] * bank[m * D + i];
                    nq += (double)queries[q * D + i] * queries[q * D + i];
                    nm += (double)bank[m * D + i] * bank[m * D + i];
                }
                double c = dot / (sqrt(nq) * sqrt(nm));
                if (c > best) { best = c; best_i = m; }
            }
            ok &= idx[q * K] == best_i && fabs(sim[q * K] - best) < 1e-5;
            for (int j = 1; j < K; j++) ok &= sim[q * K + j] <= sim[q * K + j - 1];
            for (int j = 0; j < K; j++) {
                int64_t r = idx[q * K + j];
                ok &= r >= 0 && r < M && lab[q * K + j] == (r < 100 ? labels[r] : -1);
            }
        }
        TRUE_(ok);
        /* Only similarities or only labels. */
        float sim2[Q * K];
        EXPECT(neco_index_search(ix, queries, Q, K, NULL, sim2, NULL, Q * K), NECO_OK);
        TRUE_(max_abs_diff(sim, sim2, Q * K) == 0.0f);
        int32_t lab2[Q * K];
        EXPECT(neco_index_search(ix, queries, Q, K, NULL, NULL, lab2, Q * K), NECO_OK);
        TRUE_(memcmp(lab, lab2, sizeof lab) == 0);

        /* ---- index files ------------------------------------------------------------------- */
        {
            char p_ix[512], p_ix_bad[512];
            tmp_path(p_ix, sizeof p_ix, "bank.necoindex");
            tmp_path(p_ix_bad, sizeof p_ix_bad, "bank-bad.necoindex");
            neco_index * loaded = AS(neco_index, model);
            EXPECT(neco_index_save(NULL, p_ix), NECO_ERR_INVALID_ARG);
            EXPECT(neco_index_save(AS(neco_index, model), p_ix), NECO_ERR_INVALID_ARG);
            EXPECT(neco_index_save(ix, NULL), NECO_ERR_INVALID_ARG);
            EXPECT(neco_index_save(ix, ""), NECO_ERR_INVALID_ARG);
            EXPECT(neco_index_save(ix, tmpdir), NECO_ERR_INVALID_ARG); /* a folder */
            EXPECT(neco_index_save(ix, "/nonexistent/neco/bank.necoindex"), NECO_ERR_IO);
            EXPECT(neco_index_save(ix, p_ix), NECO_OK);
            EXPECT(neco_index_load(NULL, &loaded), NECO_ERR_INVALID_ARG);
            EXPECT(neco_index_load(p_ix, NULL), NECO_ERR_INVALID_ARG);
            EXPECT(neco_index_load("/nonexistent/neco/bank.necoindex", &loaded), NECO_ERR_IO);
            TRUE_(loaded == NULL);
            EXPECT(neco_index_load(p_random, &loaded), NECO_ERR_FORMAT); /* a foreign file */
            EXPECT(neco_index_load(tiny, &loaded), NECO_ERR_FORMAT);
            size_t n_ix = 0;
            unsigned char * bytes = read_file(p_ix, &n_ix);
            TRUE_(bytes != NULL && n_ix == 32 + (size_t)M * D * 4 + (size_t)M * 4 + 8);
            if (bytes) {
                write_file(p_ix_bad, bytes, n_ix - 9); /* truncated */
                EXPECT(neco_index_load(p_ix_bad, &loaded), NECO_ERR_FORMAT);
                bytes[32 + 4 * 17] ^= 0x10; /* one flipped bit in a row: checksum mismatch */
                write_file(p_ix_bad, bytes, n_ix);
                EXPECT(neco_index_load(p_ix_bad, &loaded), NECO_ERR_FORMAT);
                TRUE_(strstr(neco_last_error(), "checksum") != NULL);
                bytes[32 + 4 * 17] ^= 0x10;
                bytes[8] = 2; /* a format version from the future */
                write_file(p_ix_bad, bytes, n_ix);
                EXPECT(neco_index_load(p_ix_bad, &loaded), NECO_ERR_FORMAT);
                TRUE_(strstr(neco_last_error(), "version 2") != NULL);
                free(bytes);
            }
            TRUE_(loaded == NULL);
            /* A round trip searches bit-identically. */
            EXPECT(neco_index_load(p_ix, &loaded), NECO_OK);
            TRUE_(neco_index_size(loaded) == M && neco_index_dim(loaded) == D);
            int64_t idx3[Q * K];
            float sim3[Q * K];
            int32_t lab3[Q * K];
            EXPECT(neco_index_search(loaded, queries, Q, K, idx3, sim3, lab3, Q * K), NECO_OK);
            TRUE_(memcmp(idx, idx3, sizeof idx) == 0 && memcmp(sim, sim3, sizeof sim) == 0 &&
                  memcmp(lab, lab3, sizeof lab) == 0);
            neco_index_free(loaded);
        }

        /* ---- match_patches ----------------------------------------------------------------- */
        EXPECT(neco_match_patches(NULL, Q, bank, M, D, K, idx, sim, Q * K), NECO_ERR_INVALID_ARG);
        EXPECT(neco_match_patches(queries, Q, NULL, M, D, K, idx, sim, Q * K), NECO_ERR_INVALID_ARG);
        EXPECT(neco_match_patches(queries, Q, bank, M, 0, K, idx, sim, Q * K), NECO_ERR_INVALID_ARG);
        EXPECT(neco_match_patches(queries, Q, bank, M, 70000, K, idx, sim, Q * K), NECO_ERR_INVALID_ARG);
        EXPECT(neco_match_patches(queries, -1, bank, M, D, K, idx, sim, Q * K), NECO_ERR_INVALID_ARG);
        EXPECT(neco_match_patches(queries, Q, bank, -1, D, K, idx, sim, Q * K), NECO_ERR_INVALID_ARG);
        EXPECT(neco_match_patches(queries, Q, bank, 0, D, K, idx, sim, Q * K), NECO_ERR_SHAPE);
        EXPECT(neco_match_patches(queries, Q, bank, 3, D, K, idx, sim, Q * K), NECO_ERR_SHAPE); /* k > n_b */
        EXPECT(neco_match_patches(queries, Q, bank, M, D, 0, idx, sim, Q * K), NECO_ERR_INVALID_ARG);
        EXPECT(neco_match_patches(queries, Q, bank, M, D, K, idx, sim, 3), NECO_ERR_SHAPE);
        EXPECT(neco_match_patches(queries, Q, bank, M, D, K, NULL, NULL, Q * K), NECO_ERR_INVALID_ARG);
        EXPECT(neco_match_patches(queries, INT64_MAX, bank, M, D, K, idx, sim, Q * K), NECO_ERR_OOM);
        int64_t idx2[Q * K];
        EXPECT(neco_match_patches(queries, Q, bank, M, D, K, idx2, sim2, Q * K), NECO_OK);
        TRUE_(memcmp(idx, idx2, sizeof idx) == 0 && max_abs_diff(sim, sim2, Q * K) == 0.0f);
        EXPECT(neco_match_patches(queries, Q, bank, M, D, K, NULL, sim2, Q * K), NECO_OK);

        /* ---- index_predict (Evaluation section) --------------------------------------------- */
        {
            neco_predict_params pp = neco_predict_default_params();
            TRUE_(pp.k == 30 && pp.n_classes == 0 && pp.temperature == 0.02f);
            pp.k = K;
            float scores[Q * 7];
            int32_t plab[Q];
            pp.struct_size = 0;
            EXPECT(neco_index_predict(ix, queries, Q, &pp, scores, Q * 7, plab, Q), NECO_ERR_VERSION);
            pp.struct_size = sizeof pp + 4;
            EXPECT(neco_index_predict(ix, queries, Q, &pp, scores, Q * 7, plab, Q), NECO_ERR_VERSION);
            pp.struct_size = sizeof pp;
            /* ix: rows 100...299 carry no label (-1), so their votes are refused. */
            EXPECT(neco_index_predict(ix, queries, Q, &pp, scores, Q * 7, plab, Q), NECO_ERR_INVALID_ARG);
            neco_index * lx = NULL;
            EXPECT(neco_index_init(D, &lx), NECO_OK);
            EXPECT(neco_index_predict(lx, queries, Q, &pp, scores, Q * 7, plab, Q), NECO_ERR_INVALID_ARG); /* empty */
            EXPECT(neco_index_add(lx, bank, 100, NULL), NECO_OK);
            EXPECT(neco_index_predict(lx, queries, Q, &pp, scores, Q * 7, plab, Q), NECO_ERR_INVALID_ARG); /* no labels */
            neco_index_free(lx);
            lx = NULL;
            EXPECT(neco_index_init(D, &lx), NECO_OK);
            EXPECT(neco_index_add(lx, bank, 100, labels), NECO_OK); /* labels 0...6 */
            EXPECT(neco_index_predict(NULL, queries, Q, &pp, scores, Q * 7, plab, Q), NECO_ERR_INVALID_ARG);
            EXPECT(neco_index_predict(AS(neco_index, model), queries, Q, &pp, scores, Q * 7, plab, Q), NECO_ERR_INVALID_ARG);
            EXPECT(neco_index_predict(lx, NULL, Q, &pp, scores, Q * 7, plab, Q), NECO_ERR_INVALID_ARG);
            EXPECT(neco_index_predict(lx, queries, Q, &pp, NULL, 0, NULL, 0), NECO_ERR_INVALID_ARG);
            EXPECT(neco_index_predict(lx, queries, -1, &pp, scores, Q * 7, plab, Q), NECO_ERR_INVALID_ARG);
            EXPECT(neco_index_predict(lx, queries, INT64_MAX, &pp, scores, Q * 7, plab, Q), NECO_ERR_OOM);
            EXPECT(neco_index_predict(lx, queries, Q, &pp, scores, Q * 7 - 1, plab, Q), NECO_ERR_SHAPE);
            EXPECT(neco_index_predict(lx, queries, Q, &pp, scores, SIZE_MAX, plab, Q), NECO_ERR_INVALID_ARG);
            EXPECT(neco_index_predict(lx, queries, Q, &pp, NULL, 0, plab, Q - 1), NECO_ERR_SHAPE);
            neco_predict_params bad = pp;
            bad.k = 0;
            EXPECT(neco_index_predict(lx, queries, Q, &bad, scores, Q * 7, plab, Q), NECO_ERR_INVALID_ARG);
            bad.k = 101;
            EXPECT(neco_index_predict(lx, queries, Q, &bad, scores, Q * 7, plab, Q), NECO_ERR_SHAPE);
            bad = pp;
            bad.temperature = 0;
            EXPECT(neco_index_predict(lx, queries, Q, &bad, scores, Q * 7, plab, Q), NECO_ERR_INVALID_ARG);
            bad.temperature = NAN;
            EXPECT(neco_index_predict(lx, queries, Q, &bad, scores, Q * 7, plab, Q), NECO_ERR_INVALID_ARG);
            bad = pp;
            bad.n_classes = 3; /* labels go up to 6 */
            EXPECT(neco_index_predict(lx, queries, Q, &bad, scores, Q * 3, plab, Q), NECO_ERR_INVALID_ARG);
            bad.n_classes = -1;
            EXPECT(neco_index_predict(lx, queries, Q, &bad, scores, Q * 7, plab, Q), NECO_ERR_INVALID_ARG);
            queries[5] = NAN;
            EXPECT(neco_index_predict(lx, queries, Q, &pp, scores, Q * 7, plab, Q), NECO_ERR_INVALID_ARG);
            queries[5] = 0.1f;
            EXPECT(neco_index_predict(lx, queries, 0, &pp, scores, 0, plab, 0), NECO_OK);
            EXPECT(neco_index_predict(lx, queries, Q, NULL, scores, Q * 7, plab, Q), NECO_OK); /* k = 30 */
            EXPECT(neco_index_predict(lx, queries, Q, &pp, scores, Q * 7, plab, Q), NECO_OK);
            /* Scores: rows sum to 1, labels are the arg-max, and equal the vote of a plain search. */
            int ok = 1;
            int64_t pidx[Q * K];
            float psim[Q * K];
            int32_t plabk[Q * K];
            EXPECT(neco_index_search(lx, queries, Q, K, pidx, psim, plabk, Q * K), NECO_OK);
            for (int q = 0; q < Q; q++) {
                double sum = 0, vote[7] = {0}, z = 0;
                int best = 0;
                for (int c = 0; c < 7; c++) {
                    sum += scores[q * 7 + c];
                    if (scores[q * 7 + c] > scores[q * 7 + best]) best = c;
                }
                for (int j = 0; j < K; j++) z += exp((psim[q * K + j] - psim[q * K]) / 0.02);
                for (int j = 0; j < K; j++) vote[plabk[q * K + j]] += exp((psim[q * K + j] - psim[q * K]) / 0.02) / z;
                for (int c = 0; c < 7; c++) ok &= fabs(vote[c] - scores[q * 7 + c]) < 1e-4;
                ok &= fabs(sum - 1) < 1e-4 && plab[q] == best;
            }
            TRUE_(ok);
            int32_t plab2[Q];
            EXPECT(neco_index_predict(lx, queries, Q, &pp, NULL, 0, plab2, Q), NECO_OK);
            TRUE_(memcmp(plab, plab2, sizeof plab) == 0);
            neco_index_free(lx);
        }

        /* Wrong-kind frees are refused (the handle stays valid), NULL frees are no-ops. */
        neco_model_free(AS(neco_model, ix));
        TRUE_(strncmp(neco_last_error(), "neco_model_free", 15) == 0);
        TRUE_(neco_index_size(ix) == M);
        neco_image_free(AS(neco_image, ix));
        neco_index_free(AS(neco_index, img));
        TRUE_(neco_image_width(img) == SAMPLE_WIDTH);
        neco_index_free(NULL);
        neco_index_free(ix);
        free(bank);
        free(queries);
    }

    /* ---- training (Training section of neco.h) ------------------------------------------ */
    {
        neco_train_params tp = neco_train_default_params();
        TRUE_(tp.total_steps == 100 && tp.batch_size == 8 && tp.global_size == 224 && tp.local_size == 98 &&
              tp.n_global_crops == 2 && tp.n_local_crops == 4 && tp.roi_size == 7 &&
              tp.references == NECO_REFERENCES_QUEUE && tp.queue_length == 8192 && tp.sort_net == NECO_SORT_BITONIC &&
              tp.relaxation == NECO_RELAX_CAUCHY && tp.steepness == 100 && tp.teacher_steepness == 0 &&
              tp.log_floor == 0 && tp.lr_backbone == 1e-5 && tp.lr_head == 1e-4 && tp.run_dir == NULL &&
              tp.checkpoint_every == 50 && tp.head_hidden_dim == 2048 && tp.head_out_dim == 256);
        /* Small valid params for the tiny model (patch 14): crops of 2 and 1 patches, a 2x2 ROI grid. */
        tp.total_steps = 4;
        tp.batch_size = 2;
        tp.global_size = 28;
        tp.local_size = 14;
        tp.roi_size = 2;
        tp.references = NECO_REFERENCES_BATCH;
        tp.head_hidden_dim = 16; /* a small head keeps the valgrind run short */
        tp.head_out_dim = 8;
        enum { TW = 40, TH = 36 };
        static uint8_t pix[4][TH * TW * 3];
        for (int i = 0; i < 4; i++)
            for (int k = 0; k < TH * TW * 3; k++) pix[i][k] = (uint8_t)((k * (5 + i) + k / (3 * TW)) % 251);
        const uint8_t * pics[4] = {pix[0], pix[1], pix[2], pix[3]};
        int32_t hs[4] = {TH, TH, TH, TH}, ws[4] = {TW, TW, TW, TW};
        neco_trainer * tr = AS(neco_trainer, img); /* must be cleared on failure */

        /* struct_size. */
        {
            neco_train_params old = tp;
            old.struct_size = 0;
            EXPECT(neco_trainer_init_images(model, pics, hs, ws, 4, &old, &tr), NECO_ERR_VERSION);
            TRUE_(tr == NULL);
            old.struct_size = sizeof old + 64;
            EXPECT(neco_trainer_init_images(model, pics, hs, ws, 4, &old, &tr), NECO_ERR_VERSION);
            tr = AS(neco_trainer, img);
            /* The run configuration rules: epochs -> steps (3 x floor(4 / 2)), log_floor -1 = auto. */
            neco_train_params rules = tp;
            rules.epochs = 3;
            rules.total_steps = 1;
            EXPECT(neco_trainer_init_images(model, pics, hs, ws, 4, &rules, &tr), NECO_OK);
            neco_train_progress rp;
            EXPECT(neco_trainer_step(tr, &rp), NECO_OK);
            TRUE_(rp.total_steps == 6);
            neco_trainer_free(tr);
            /* With epochs, warm-up and head-only steps are bounded by the epochs' steps (6), not by
             * the ignored total_steps. */
            rules.warmup_steps = 5;
            rules.head_only_steps = 5;
            EXPECT(neco_trainer_init_images(model, pics, hs, ws, 4, &rules, &tr), NECO_OK);
            neco_trainer_free(tr);
            tr = AS(neco_trainer, img);
            rules.warmup_steps = 6;
            EXPECT(neco_trainer_init_images(model, pics, hs, ws, 4, &rules, &tr), NECO_ERR_INVALID_ARG);
            TRUE_(tr == NULL);
            rules.warmup_steps = 0;
            rules.head_only_steps = 0;
            tr = AS(neco_trainer, img);
            rules.epochs = -1;
            EXPECT(neco_trainer_init_images(model, pics, hs, ws, 4, &rules, &tr), NECO_ERR_INVALID_ARG);
            rules.epochs = 0;
            rules.log_floor = -1;
            rules.relaxation = NECO_RELAX_GAUSSIAN; /* underflows at steepness 100 without the floor */
            EXPECT(neco_trainer_init_images(model, pics, hs, ws, 4, &rules, &tr), NECO_OK);
            EXPECT(neco_trainer_step(tr, &rp), NECO_OK);
            TRUE_(isfinite(rp.loss));
            neco_trainer_free(tr);
            tr = AS(neco_trainer, img);
            rules.log_floor = -2;
            EXPECT(neco_trainer_init_images(model, pics, hs, ws, 4, &rules, &tr), NECO_ERR_INVALID_ARG);
            tr = AS(neco_trainer, img);
        }

        /* init_images: arguments. */
        EXPECT(neco_trainer_init_images(NULL, pics, hs, ws, 4, &tp, &tr), NECO_ERR_INVALID_ARG);
        TRUE_(tr == NULL);
        EXPECT(neco_trainer_init_images(AS(neco_model, img), pics, hs, ws, 4, &tp, &tr), NECO_ERR_INVALID_ARG);
        EXPECT(neco_trainer_init_images(model, NULL, hs, ws, 4, &tp, &tr), NECO_ERR_INVALID_ARG);
        EXPECT(neco_trainer_init_images(model, pics, NULL, ws, 4, &tp, &tr), NECO_ERR_INVALID_ARG);
        EXPECT(neco_trainer_init_images(model, pics, hs, NULL, 4, &tp, &tr), NECO_ERR_INVALID_ARG);
        EXPECT(neco_trainer_init_images(model, pics, hs, ws, 0, &tp, &tr), NECO_ERR_INVALID_ARG);
        EXPECT(neco_trainer_init_images(model, pics, hs, ws, -1, &tp, &tr), NECO_ERR_INVALID_ARG);
        EXPECT(neco_trainer_init_images(model, pics, hs, ws, INT32_MAX, &tp, &tr), NECO_ERR_INVALID_ARG);
        EXPECT(neco_trainer_init_images(model, pics, hs, ws, 4, &tp, NULL), NECO_ERR_INVALID_ARG);
        {
            const uint8_t * holes[4] = {pix[0], NULL, pix[2], pix[3]};
            EXPECT(neco_trainer_init_images(model, holes, hs, ws, 4, &tp, &tr), NECO_ERR_INVALID_ARG);
            int32_t bad[4] = {TH, 0, TH, TH};
            EXPECT(neco_trainer_init_images(model, pics, bad, ws, 4, &tp, &tr), NECO_ERR_INVALID_ARG);
            bad[1] = -5;
            EXPECT(neco_trainer_init_images(model, pics, bad, ws, 4, &tp, &tr), NECO_ERR_INVALID_ARG);
            bad[1] = 70000;
            EXPECT(neco_trainer_init_images(model, pics, hs, bad, 4, &tp, &tr), NECO_ERR_INVALID_ARG);
        }
        /* init_images: every params field out of range, and the combinations NeCo cannot train. */
        neco_train_params b;
#define BAD_TRAIN_PARAM(change, want)                                                           \
    do {                                                                                        \
        b = tp;                                                                                 \
        change;                                                                                 \
        EXPECT(neco_trainer_init_images(model, pics, hs, ws, 4, &b, &tr), want);                \
        TRUE_(tr == NULL);                                                                      \
    } while (0)
        BAD_TRAIN_PARAM(b.total_steps = 0, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.total_steps = -1, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.total_steps = INT64_MAX, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.batch_size = 0, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.batch_size = 1, NECO_ERR_INVALID_ARG);  /* batch references need 2 */
        BAD_TRAIN_PARAM(b.batch_size = 5, NECO_ERR_DATA);  /* more than the images */
        BAD_TRAIN_PARAM(b.batch_size = INT32_MIN, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.global_size = 29, NECO_ERR_INVALID_ARG); /* not a multiple of 14 */
        BAD_TRAIN_PARAM(b.global_size = 0, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.global_size = INT32_MAX, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.local_size = 15, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.local_size = -14, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.n_global_crops = 0, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.n_local_crops = -1, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.n_local_crops = 100, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.roi_size = 1, NECO_ERR_INVALID_ARG);     /* a sorting network of one wire */
        BAD_TRAIN_PARAM(b.roi_size = 33, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.references = 2, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.references = -1, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM((b.references = NECO_REFERENCES_QUEUE, b.queue_length = 4), NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM((b.references = NECO_REFERENCES_QUEUE, b.queue_length = 0), NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.sort_net = 2, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.relaxation = 6, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.relaxation = -1, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.memory_limit_mib = -1, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.memory_limit_mib = INT64_MAX, NECO_ERR_INVALID_ARG); /* would overflow in bytes */
        BAD_TRAIN_PARAM(b.recompute_ffn_blocks = INT32_MIN, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.recompute_ffn_blocks = INT32_MAX, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.steepness = 0, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.steepness = -1, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.steepness = NAN, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.steepness = INFINITY, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.teacher_steepness = -1, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.teacher_steepness = NAN, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.log_floor = 1, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.log_floor = -0.5, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.lr_backbone = -1, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.lr_backbone = NAN, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.lr_head = INFINITY, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.warmup_steps = 4, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.warmup_steps = -1, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.head_only_steps = 4, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.head_only_steps = -1, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM((b.epochs = 1, b.head_only_steps = 1000), NECO_ERR_INVALID_ARG); /* beyond the epoch's steps */
        BAD_TRAIN_PARAM(b.drop_path = 1, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.drop_path = NAN, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.train_last_blocks = -1, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.train_last_blocks = 3, NECO_ERR_INVALID_ARG); /* the tiny model has 2 blocks */
        BAD_TRAIN_PARAM(b.freeze_first_blocks = -1, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM((b.train_last_blocks = 1, b.freeze_first_blocks = 1), NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.grad_clip = -1, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.grad_clip = NAN, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.checkpoint_every = -1, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.head_hidden_dim = 0, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.head_out_dim = 70000, NECO_ERR_INVALID_ARG);
        BAD_TRAIN_PARAM(b.run_dir = "", NECO_ERR_INVALID_ARG);
        {
            char under_file[600];
            snprintf(under_file, sizeof under_file, "%s/run", p_random); /* its parent is a file */
            BAD_TRAIN_PARAM(b.run_dir = under_file, NECO_ERR_IO);
        }
#undef BAD_TRAIN_PARAM

        /* init_folder: arguments, a missing folder, a file, a folder without images, and a folder
         * whose images cannot be decoded (accepted; the first step says so). */
        char p_empty_dir[512], p_junk_dir[512], p_junk1[600], p_junk2[600], p_junk3[600];
        tmp_path(p_empty_dir, sizeof p_empty_dir, "no-images");
        tmp_path(p_junk_dir, sizeof p_junk_dir, "junk");
        mkdir(p_empty_dir, 0755);
        mkdir(p_junk_dir, 0755);
        snprintf(p_junk1, sizeof p_junk1, "%s/a.jpg", p_junk_dir);
        snprintf(p_junk2, sizeof p_junk2, "%s/b.png", p_junk_dir);
        snprintf(p_junk3, sizeof p_junk3, "%s/c.jpg", p_junk_dir);
        write_file(p_junk1, sample_jpeg, sizeof sample_jpeg / 2);
        write_file(p_junk2, sample_png, sizeof sample_png / 2);
        write_file(p_junk3, "not a jpeg", 10);
        EXPECT(neco_trainer_init_folder(NULL, p_junk_dir, &tp, &tr), NECO_ERR_INVALID_ARG);
        EXPECT(neco_trainer_init_folder(AS(neco_model, img), p_junk_dir, &tp, &tr), NECO_ERR_INVALID_ARG);
        EXPECT(neco_trainer_init_folder(model, NULL, &tp, &tr), NECO_ERR_INVALID_ARG);
        EXPECT(neco_trainer_init_folder(model, "", &tp, &tr), NECO_ERR_INVALID_ARG);
        EXPECT(neco_trainer_init_folder(model, p_junk_dir, &tp, NULL), NECO_ERR_INVALID_ARG);
        EXPECT(neco_trainer_init_folder(model, "/nonexistent/neco/photos", &tp, &tr), NECO_ERR_IO);
        EXPECT(neco_trainer_init_folder(model, p_random, &tp, &tr), NECO_ERR_IO);
        EXPECT(neco_trainer_init_folder(model, p_empty_dir, &tp, &tr), NECO_ERR_DATA);
        TRUE_(tr == NULL);
        EXPECT(neco_trainer_init_folder(model, p_junk_dir, &tp, &tr), NECO_OK);
        EXPECT(neco_trainer_step(tr, NULL), NECO_ERR_DATA); /* fewer than 2 readable images */
        TRUE_(strstr(neco_last_error(), "readable") != NULL);
        TRUE_(neco_trainer_step_count(tr) == 0);
        neco_trainer_free(tr);
        unlink(p_junk1);
        unlink(p_junk2);
        unlink(p_junk3);
        rmdir(p_junk_dir);
        rmdir(p_empty_dir);

        /* A working trainer: step, run, their arguments. */
        EXPECT(neco_trainer_init_images(model, pics, hs, ws, 4, &tp, &tr), NECO_OK);
        EXPECT(neco_trainer_step(NULL, NULL), NECO_ERR_INVALID_ARG);
        EXPECT(neco_trainer_step(AS(neco_trainer, img), NULL), NECO_ERR_INVALID_ARG);
        EXPECT(neco_trainer_run(NULL, 0, NULL, NULL), NECO_ERR_INVALID_ARG);
        EXPECT(neco_trainer_run(tr, -1, NULL, NULL), NECO_ERR_INVALID_ARG);
        EXPECT(neco_trainer_run(tr, INT64_MAX, NULL, NULL), NECO_ERR_INVALID_ARG);
        neco_train_progress pr;
        memset(&pr, 0xFF, sizeof pr);
        EXPECT(neco_trainer_step(tr, &pr), NECO_OK);
        TRUE_(pr.step == 1 && pr.total_steps == 4 && pr.epoch == 0 && isfinite(pr.loss) && pr.loss > 0 &&
              pr.lr_backbone == 1e-5 && pr.momentum == 0.9995 && pr.step_seconds > 0 && pr.skipped_images == 0);
        EXPECT(neco_trainer_run(tr, 1, NULL, NULL), NECO_OK);
        TRUE_(neco_trainer_step_count(tr) == 2);
        EXPECT_GETTER_FAILS(neco_trainer_step_count(NULL), 0);
        EXPECT_GETTER_FAILS(neco_trainer_step_count(AS(neco_trainer, img)), 0);

        /* Checkpoints: arguments, unwritable and unreadable paths, files that are not checkpoints,
         * corrupt and truncated ones (the trainer is left as it was), then a good round trip. */
        char p_ck[512], p_ck_bad[512], p_ck_cut[512];
        tmp_path(p_ck, sizeof p_ck, "trainer.safetensors");
        tmp_path(p_ck_bad, sizeof p_ck_bad, "trainer-corrupt.safetensors");
        tmp_path(p_ck_cut, sizeof p_ck_cut, "trainer-truncated.safetensors");
        EXPECT(neco_trainer_save_checkpoint(NULL, p_ck), NECO_ERR_INVALID_ARG);
        EXPECT(neco_trainer_save_checkpoint(AS(neco_trainer, model), p_ck), NECO_ERR_INVALID_ARG);
        EXPECT(neco_trainer_save_checkpoint(tr, NULL), NECO_ERR_INVALID_ARG);
        EXPECT(neco_trainer_save_checkpoint(tr, ""), NECO_ERR_INVALID_ARG);
        EXPECT(neco_trainer_save_checkpoint(tr, tmpdir), NECO_ERR_INVALID_ARG); /* a folder */
        EXPECT(neco_trainer_save_checkpoint(tr, "/nonexistent/neco/trainer.safetensors"), NECO_ERR_IO);
        EXPECT(neco_trainer_save_checkpoint(tr, p_ck), NECO_OK);
        {
            size_t n = 0;
            unsigned char * bytes = read_file(p_ck, &n);
            TRUE_(bytes != NULL && n > 1000);
            if (bytes) {
                write_file(p_ck_cut, bytes, n - 100);
                bytes[n - 7] ^= 0x5A;
                write_file(p_ck_bad, bytes, n);
                free(bytes);
            }
        }
        EXPECT(neco_trainer_load_checkpoint(NULL, p_ck), NECO_ERR_INVALID_ARG);
        EXPECT(neco_trainer_load_checkpoint(tr, NULL), NECO_ERR_INVALID_ARG);
        EXPECT(neco_trainer_load_checkpoint(tr, ""), NECO_ERR_INVALID_ARG);
        EXPECT(neco_trainer_load_checkpoint(tr, "/nonexistent/neco/trainer.safetensors"), NECO_ERR_IO);
        EXPECT(neco_trainer_load_checkpoint(tr, p_random), NECO_ERR_FORMAT);
        EXPECT(neco_trainer_load_checkpoint(tr, p_empty), NECO_ERR_FORMAT);
        EXPECT(neco_trainer_load_checkpoint(tr, tiny), NECO_ERR_FORMAT); /* a model, not a checkpoint */
        EXPECT(neco_trainer_load_checkpoint(tr, p_ck_bad), NECO_ERR_FORMAT);
        TRUE_(strstr(neco_last_error(), "checksum") != NULL);
        EXPECT(neco_trainer_load_checkpoint(tr, p_ck_cut), NECO_ERR_FORMAT);
        TRUE_(neco_trainer_step_count(tr) == 2);

        /* The last steps, then nothing more to do; the checkpoint rewinds to step 2. */
        EXPECT(neco_trainer_run(tr, 0, NULL, NULL), NECO_OK);
        TRUE_(neco_trainer_step_count(tr) == 4);
        EXPECT(neco_trainer_step(tr, NULL), NECO_ERR_INVALID_ARG);
        EXPECT(neco_trainer_run(tr, 0, NULL, NULL), NECO_ERR_INVALID_ARG);
        EXPECT(neco_trainer_load_checkpoint(tr, p_ck), NECO_OK);
        TRUE_(neco_trainer_step_count(tr) == 2);
        /* The callback stops the run after its first step. */
        EXPECT(neco_trainer_run(tr, 0, stop_now, NULL), NECO_ERR_ABORTED);
        TRUE_(neco_trainer_step_count(tr) == 3);

        /* Models out of the trainer. */
        neco_model * sm = AS(neco_model, img);
        EXPECT(neco_trainer_get_model(NULL, false, &sm), NECO_ERR_INVALID_ARG);
        TRUE_(sm == NULL);
        EXPECT(neco_trainer_get_model(AS(neco_trainer, model), false, &sm), NECO_ERR_INVALID_ARG);
        EXPECT(neco_trainer_get_model(tr, false, NULL), NECO_ERR_INVALID_ARG);
        EXPECT(neco_trainer_get_model(tr, true, &sm), NECO_OK);
        TRUE_(sm != NULL && neco_model_embed_dim(sm) == 32 && neco_model_n_registers(sm) == 4);
        neco_model_free(sm);
        EXPECT(neco_trainer_get_model(tr, false, &sm), NECO_OK);
        neco_trainer_free(tr); /* the model is an independent copy */
        TRUE_(neco_model_n_layers(sm) == 2);
        neco_model_free(sm);

        /* A checkpoint of other params is refused and names the difference. */
        b = tp;
        b.steepness = 50;
        EXPECT(neco_trainer_init_images(model, pics, hs, ws, 4, &b, &tr), NECO_OK);
        EXPECT(neco_trainer_load_checkpoint(tr, p_ck), NECO_ERR_INVALID_ARG);
        TRUE_(strstr(neco_last_error(), "student_steepness") != NULL);
        TRUE_(neco_trainer_step_count(tr) == 0);
        /* Wrong-kind frees are refused, NULL is a no-op. */
        neco_trainer_free(AS(neco_trainer, img));
        TRUE_(strncmp(neco_last_error(), "neco_trainer_free", 17) == 0);
        TRUE_(neco_image_width(img) == SAMPLE_WIDTH);
        neco_trainer_free(NULL);
        neco_trainer_free(tr);
        unlink(p_ck_bad);
        unlink(p_ck_cut);
    }

    /* ---- ONNX export (Export section of neco.h) ------------------------------------------ */
    {
        neco_export_params xp = neco_export_default_params();
        TRUE_(xp.input_size == NECO_EXPORT_SIZE_DYNAMIC && xp.height == 0 && xp.width == 0 &&
              xp.external_data == NECO_EXTERNAL_DATA_AUTO);
        char p_onnx[512], p_onnx_data[512], p_bad[512], p_under_file[600];
        tmp_path(p_onnx, sizeof p_onnx, "model.onnx");
        tmp_path(p_onnx_data, sizeof p_onnx_data, "model.onnx.data"); /* external data: <file name>.data */
        tmp_path(p_bad, sizeof p_bad, "bad.onnx");
        snprintf(p_under_file, sizeof p_under_file, "%s/model.onnx", p_random); /* folder is a file */

        /* Handles and paths. */
        EXPECT(neco_export_onnx(NULL, p_bad, &xp), NECO_ERR_INVALID_ARG);
        EXPECT(neco_export_onnx(AS(neco_model, img), p_bad, &xp), NECO_ERR_INVALID_ARG);
        EXPECT(neco_export_onnx(model, NULL, &xp), NECO_ERR_INVALID_ARG);
        EXPECT(neco_export_onnx(model, "", &xp), NECO_ERR_INVALID_ARG);
        {
            char * longpath = malloc(5001);
            memset(longpath, 'a', 5000);
            longpath[5000] = '\0';
            EXPECT(neco_export_onnx(model, longpath, &xp), NECO_ERR_INVALID_ARG);
            free(longpath);
        }
        EXPECT(neco_export_onnx(model, tmpdir, &xp), NECO_ERR_INVALID_ARG); /* a directory */
        EXPECT(neco_export_onnx(model, "/nonexistent/neco/model.onnx", &xp), NECO_ERR_IO);
        EXPECT(neco_export_onnx(model, p_under_file, &xp), NECO_ERR_IO);

        /* struct_size: unknown sizes are refused; an older struct without head_path is read
         * without it (the pointer below is never followed). */
        neco_export_params bad = xp;
        bad.struct_size = 0;
        EXPECT(neco_export_onnx(model, p_bad, &bad), NECO_ERR_VERSION);
        bad.struct_size = sizeof bad + sizeof(void *);
        EXPECT(neco_export_onnx(model, p_bad, &bad), NECO_ERR_VERSION);
        TRUE_(file_bytes(p_bad) < 0);
        bad = xp;
        bad.struct_size = offsetof(neco_export_params, head_path);
        bad.head_path = "/nonexistent/head.safetensors";
        EXPECT(neco_export_onnx(model, p_bad, &bad), NECO_OK);
        long long no_head_bytes = file_bytes(p_bad);
        TRUE_(no_head_bytes > 0);
        /* A checkpoint's projection head (the trainer's, saved above: D 32 -> 16 -> 16 -> 8). */
        {
            char p_ck2[512];
            tmp_path(p_ck2, sizeof p_ck2, "trainer.safetensors");
            bad = xp;
            bad.head_path = p_ck2;
            EXPECT(neco_export_onnx(model, p_bad, &bad), NECO_OK);
            TRUE_(file_bytes(p_bad) > no_head_bytes);
            bad.head_path = tiny; /* weights without a head */
            EXPECT(neco_export_onnx(model, p_bad, &bad), NECO_ERR_FORMAT);
            bad.head_path = "/nonexistent/head.safetensors";
            EXPECT(neco_export_onnx(model, p_bad, &bad), NECO_ERR_IO);
            bad.head_path = "";
            EXPECT(neco_export_onnx(model, p_bad, &bad), NECO_ERR_INVALID_ARG);
            unlink(p_ck2);
        }
        unlink(p_bad);

        /* Params: enums, sizes. The tiny model has patch 14 and loaded with 224x224. */
        bad = xp;
        bad.input_size = 2;
        EXPECT(neco_export_onnx(model, p_bad, &bad), NECO_ERR_INVALID_ARG);
        bad.input_size = -1;
        EXPECT(neco_export_onnx(model, p_bad, &bad), NECO_ERR_INVALID_ARG);
        bad.input_size = INT32_MIN;
        EXPECT(neco_export_onnx(model, p_bad, &bad), NECO_ERR_INVALID_ARG);
        bad = xp;
        bad.external_data = 3;
        EXPECT(neco_export_onnx(model, p_bad, &bad), NECO_ERR_INVALID_ARG);
        bad.external_data = -1;
        EXPECT(neco_export_onnx(model, p_bad, &bad), NECO_ERR_INVALID_ARG);
        bad = xp; /* dynamic takes no size */
        bad.height = 56;
        bad.width = 56;
        EXPECT(neco_export_onnx(model, p_bad, &bad), NECO_ERR_INVALID_ARG);
        bad.input_size = NECO_EXPORT_SIZE_FIXED;
        bad.height = -14;
        EXPECT(neco_export_onnx(model, p_bad, &bad), NECO_ERR_INVALID_ARG);
        bad.height = 0; /* 0 only together with width 0 */
        EXPECT(neco_export_onnx(model, p_bad, &bad), NECO_ERR_INVALID_ARG);
        bad.height = INT32_MIN;
        EXPECT(neco_export_onnx(model, p_bad, &bad), NECO_ERR_INVALID_ARG);
        bad.height = INT32_MAX;
        EXPECT(neco_export_onnx(model, p_bad, &bad), NECO_ERR_INVALID_ARG);
        bad.height = 16384 + 14;
        EXPECT(neco_export_onnx(model, p_bad, &bad), NECO_ERR_INVALID_ARG);
        bad.height = 57; /* not a multiple of 14 */
        EXPECT(neco_export_onnx(model, p_bad, &bad), NECO_ERR_SHAPE);
        bad.height = 7; /* smaller than a patch */
        EXPECT(neco_export_onnx(model, p_bad, &bad), NECO_ERR_SHAPE);
        bad.height = 16380; /* 1170 x 1170 patches, over 65536 */
        bad.width = 16380;
        EXPECT(neco_export_onnx(model, p_bad, &bad), NECO_ERR_SHAPE);
        TRUE_(file_bytes(p_bad) == -1 && export_leftovers(tmpdir) == 0);

        /* Successes: NULL params (dynamic), the model's size (0 x 0), a non-square size, external
         * data always and never. */
        EXPECT(neco_export_onnx(model, p_onnx, NULL), NECO_OK);
        const long long dynamic_bytes = file_bytes(p_onnx);
        TRUE_(dynamic_bytes > 1000);
        neco_export_params fx = xp;
        fx.input_size = NECO_EXPORT_SIZE_FIXED;
        EXPECT(neco_export_onnx(model, p_onnx, &fx), NECO_OK); /* replaces the dynamic file */
        TRUE_(file_bytes(p_onnx) > 1000 && file_bytes(p_onnx) != dynamic_bytes);
        fx.height = 42;
        fx.width = 70;
        EXPECT(neco_export_onnx(model, p_onnx, &fx), NECO_OK);
        fx.external_data = NECO_EXTERNAL_DATA_ALWAYS;
        EXPECT(neco_export_onnx(model, p_onnx, &fx), NECO_OK);
        TRUE_(file_bytes(p_onnx_data) >= 4 * neco_model_n_params(model)); /* fp32 weights, aligned */
        TRUE_(file_bytes(p_onnx) > 0 && file_bytes(p_onnx) < file_bytes(p_onnx_data));
        unlink(p_onnx_data);
        fx.external_data = NECO_EXTERNAL_DATA_NEVER;
        EXPECT(neco_export_onnx(model, p_onnx, &fx), NECO_OK);
        const long long fixed_bytes = file_bytes(p_onnx);
        TRUE_(fixed_bytes > 4 * neco_model_n_params(model) && file_bytes(p_onnx_data) == -1);

        /* A failed export leaves an existing file as it was. */
        bad = fx;
        bad.width = 71;
        EXPECT(neco_export_onnx(model, p_onnx, &bad), NECO_ERR_SHAPE);
        TRUE_(file_bytes(p_onnx) == fixed_bytes);
        /* A write that fails halfway (a 4 KiB file size limit: write() gives EFBIG) leaves no
         * partial file, neither a new one nor over an existing one. */
        {
            struct rlimit old_limit, small;
            void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
            TRUE_(getrlimit(RLIMIT_FSIZE, &old_limit) == 0);
            small = old_limit;
            small.rlim_cur = 4096;
            TRUE_(setrlimit(RLIMIT_FSIZE, &small) == 0);
            EXPECT(neco_export_onnx(model, p_bad, &fx), NECO_ERR_IO);
            EXPECT(neco_export_onnx(model, p_onnx, &fx), NECO_ERR_IO);
            TRUE_(setrlimit(RLIMIT_FSIZE, &old_limit) == 0);
            signal(SIGXFSZ, old_handler);
            TRUE_(file_bytes(p_bad) == -1 && file_bytes(p_onnx) == fixed_bytes);
        }
        TRUE_(export_leftovers(tmpdir) == 0);
        unlink(p_onnx);
    }

    /* ---- in-context evaluation protocol (neco_eval_incontext) ------------------------------ */
    {
        neco_eval_params ev = neco_eval_default_params();
        TRUE_(ev.struct_size == sizeof ev && ev.size == 224 && ev.batch == 8 && ev.max_train == 0 && ev.max_val == 0 &&
              ev.k == 30 && ev.temperature == 0.02f && ev.memory_size == 0);
        neco_eval_result er;
        double iou[4];
        char p_bench[512], p_sub[600];
        tmp_path(p_bench, sizeof p_bench, "bench");
        EXPECT(neco_eval_incontext(NULL, p_bench, &ev, &er, NULL, 0), NECO_ERR_INVALID_ARG);
        EXPECT(neco_eval_incontext(AS(neco_model, img), p_bench, &ev, &er, NULL, 0), NECO_ERR_INVALID_ARG);
        EXPECT(neco_eval_incontext(model, NULL, &ev, &er, NULL, 0), NECO_ERR_INVALID_ARG);
        EXPECT(neco_eval_incontext(model, "", &ev, &er, NULL, 0), NECO_ERR_INVALID_ARG);
        EXPECT(neco_eval_incontext(model, p_bench, &ev, NULL, NULL, 0), NECO_ERR_INVALID_ARG);
        EXPECT(neco_eval_incontext(model, p_bench, &ev, &er, NULL, 0), NECO_ERR_IO); /* no such folder */
        mkdir(p_bench, 0755);
        EXPECT(neco_eval_incontext(model, p_bench, &ev, &er, NULL, 0), NECO_ERR_FORMAT); /* no classes.txt */
        snprintf(p_sub, sizeof p_sub, "%s/classes.txt", p_bench);
        write_file(p_sub, "background\nthing\n", 17);
        snprintf(p_sub, sizeof p_sub, "%s/train", p_bench);
        mkdir(p_sub, 0755);
        snprintf(p_sub, sizeof p_sub, "%s/train/images", p_bench);
        mkdir(p_sub, 0755);
        EXPECT(neco_eval_incontext(model, p_bench, &ev, &er, iou, 4), NECO_ERR_DATA); /* no training images */
        neco_eval_params bad = ev;
        bad.struct_size = 0;
        EXPECT(neco_eval_incontext(model, p_bench, &bad, &er, NULL, 0), NECO_ERR_VERSION);
        bad.struct_size = sizeof bad + 8;
        EXPECT(neco_eval_incontext(model, p_bench, &bad, &er, NULL, 0), NECO_ERR_VERSION);
        bad = ev;
        bad.size = 0;
        EXPECT(neco_eval_incontext(model, p_bench, &bad, &er, NULL, 0), NECO_ERR_INVALID_ARG);
        bad.size = 100; /* not a multiple of the patch size 14 */
        EXPECT(neco_eval_incontext(model, p_bench, &bad, &er, NULL, 0), NECO_ERR_SHAPE);
        bad = ev;
        bad.batch = 0;
        EXPECT(neco_eval_incontext(model, p_bench, &bad, &er, NULL, 0), NECO_ERR_INVALID_ARG);
        bad.batch = 257;
        EXPECT(neco_eval_incontext(model, p_bench, &bad, &er, NULL, 0), NECO_ERR_INVALID_ARG);
        bad = ev;
        bad.k = 0;
        EXPECT(neco_eval_incontext(model, p_bench, &bad, &er, NULL, 0), NECO_ERR_INVALID_ARG);
        bad = ev;
        bad.temperature = NAN;
        EXPECT(neco_eval_incontext(model, p_bench, &bad, &er, NULL, 0), NECO_ERR_INVALID_ARG);
        bad.temperature = 0;
        EXPECT(neco_eval_incontext(model, p_bench, &bad, &er, NULL, 0), NECO_ERR_INVALID_ARG);
        bad = ev;
        bad.memory_size = -1;
        EXPECT(neco_eval_incontext(model, p_bench, &bad, &er, NULL, 0), NECO_ERR_INVALID_ARG);
        bad = ev;
        bad.max_train = -1;
        EXPECT(neco_eval_incontext(model, p_bench, &bad, &er, NULL, 0), NECO_ERR_INVALID_ARG);
        rmdir(p_sub);
        snprintf(p_sub, sizeof p_sub, "%s/train", p_bench);
        rmdir(p_sub);
        snprintf(p_sub, sizeof p_sub, "%s/classes.txt", p_bench);
        unlink(p_sub);
        rmdir(p_bench);
    }

    /* ---- thread-local last error --------------------------------------------------------- */
    EXPECT(neco_index_init(-1, NULL), NECO_ERR_INVALID_ARG);
    TRUE_(strstr(neco_last_error(), "neco_index_init") != NULL);
    TRUE_(neco_model_embed_dim(model) == 32); /* a successful getter keeps the message */
    TRUE_(strstr(neco_last_error(), "neco_index_init") != NULL);

    free(patches);
    free(cls);
    free(regs);
    neco_image_free(img);
    neco_model_free(model);

    /* The scratch folder holds more than the files above (run folders, exports): all of it goes. */
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);

    if (n_failures) {
        fprintf(stderr, "ABUSE FAILED: %d of %d checks\n", n_failures, n_checks);
        return 1;
    }
    printf("ABUSE OK (%d checks)\n", n_checks);
    return 0;
}
