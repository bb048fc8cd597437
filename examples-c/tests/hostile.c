/*
 * hostile.c: fault injection for libneco. Every case runs in its own child process, with an
 * alarm (a hang is a failure) and, where it says so, an RLIMIT_AS address-space limit of the
 * child's current size plus a margin; a signal (SIGILL from a Swift trap, SIGSEGV, SIGABRT,
 * SIGALRM) fails the case. The cases are the hostile inputs a caller or a file can bring:
 * FIFOs as file names, huge files and buffers under memory limits, decompression bombs,
 * sizes beyond the documented limits, non-finite input, paths that are not UTF-8 or hold a
 * newline, and tampered checkpoints.
 *
 * usage: hostile TINY_MODEL.safetensors   (Tests/Fixtures/vit/tiny_reg4.weights.safetensors)
 * Prints one line per case and "HOSTILE OK (<n> cases)" when all passed.
 */
#define _GNU_SOURCE
#include <neco.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sample_images.h"

static const char * tiny = NULL;
static char tmpdir[256];

/* ---- helpers ---------------------------------------------------------------------------- */

#define CHECK(cond)                                                                              \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            fprintf(stderr, "hostile.c:%d: check failed: %s (last error: %s)\n", __LINE__, #cond, \
                    neco_last_error());                                                          \
            return 1;                                                                            \
        }                                                                                        \
    } while (0)
#define EXPECT(call, want)                                                                       \
    do {                                                                                         \
        neco_status st_ = (call);                                                                \
        if (st_ != (want)) {                                                                     \
            fprintf(stderr, "hostile.c:%d: %s returned %s, expected %s: %s\n", __LINE__, #call,  \
                    neco_status_str(st_), neco_status_str(want), neco_last_error());             \
            return 1;                                                                            \
        }                                                                                        \
        if (strchr(neco_last_error(), '\n') != NULL) {                                          \
            fprintf(stderr, "hostile.c:%d: message spans lines\n", __LINE__);                  \
            return 1;                                                                            \
        }                                                                                        \
    } while (0)

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const char * path_in(char * buf, size_t n, const char * name) {
    snprintf(buf, n, "%s/%s", tmpdir, name);
    return buf;
}

static int write_file(const char * path, const void * data, size_t n) {
    FILE * f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = n > 0 ? fwrite(data, 1, n, f) : 0;
    fclose(f);
    return w == n ? 0 : -1;
}

static unsigned char * read_file(const char * path, size_t * n) {
    FILE * f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char * b = malloc((size_t)len + 1);
    *n = b ? fread(b, 1, (size_t)len, f) : 0;
    fclose(f);
    return b;
}

/* A file of `size` bytes (sparse: no disk use) starting with `head`. */
static int sparse_file(const char * path, const void * head, size_t head_n, off_t size) {
    if (write_file(path, head, head_n) != 0) return -1;
    return truncate(path, size);
}

/* The process's current address-space size, bytes (/proc/self/statm, field 1). */
static size_t current_vm(void) {
    FILE * f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (f) {
        if (fscanf(f, "%lu", &pages) != 1) pages = 0;
        fclose(f);
    }
    return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define NECO_SANITIZED 1 /* the sanitizers reserve terabytes of shadow memory: no RLIMIT_AS */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define NECO_SANITIZED 1
#endif
#endif

/* Limits the address space to the current size + `margin` bytes. */
static void limit_memory(size_t margin) {
    struct rlimit r;
    r.rlim_cur = r.rlim_max = current_vm() + margin;
    if (setrlimit(RLIMIT_AS, &r) != 0) {
        perror("setrlimit");
        exit(3);
    }
}

static neco_model * load_tiny(void) {
    neco_model_params mp = neco_model_default_params();
    mp.n_heads = 4;
    neco_model * m = NULL;
    if (neco_model_load(tiny, &mp, &m) != NECO_OK) {
        fprintf(stderr, "cannot load %s: %s\n", tiny, neco_last_error());
        exit(3);
    }
    return m;
}

static uint32_t crc32_bytes(const unsigned char * p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return c ^ 0xFFFFFFFFu;
}

static void put_be32(unsigned char * p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* A PNG signature and IHDR claiming w x h RGB8, nothing else (33 bytes). */
static void png_header(unsigned char out[33], uint32_t w, uint32_t h) {
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    memcpy(out, sig, 8);
    put_be32(out + 8, 13);
    memcpy(out + 12, "IHDR", 4);
    put_be32(out + 16, w);
    put_be32(out + 20, h);
    out[24] = 8; out[25] = 2; out[26] = 0; out[27] = 0; out[28] = 0;
    put_be32(out + 29, crc32_bytes(out + 12, 17));
}

static neco_trainer * tiny_trainer(neco_model * model, neco_train_params * p) {
    enum { W = 40, H = 36, N = 4 };
    static uint8_t px[N][W * H * 3];
    const uint8_t * images[N];
    int32_t hs[N], ws[N];
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < W * H * 3; k++) px[i][k] = (uint8_t)((k * (3 + i) + k / 120) % 253);
        images[i] = px[i];
        hs[i] = H;
        ws[i] = W;
    }
    neco_trainer * t = NULL;
    neco_status st = neco_trainer_init_images(model, images, hs, ws, N, p, &t);
    return st == NECO_OK ? t : NULL;
}

static neco_train_params tiny_params(void) {
    neco_train_params p = neco_train_default_params();
    p.total_steps = 5;
    p.batch_size = 2;
    p.global_size = 28;
    p.local_size = 14;
    p.roi_size = 2;
    p.queue_length = 64;
    p.head_hidden_dim = 32;
    p.head_out_dim = 16;
    p.seed = 5;
    return p;
}

/* ---- cases ------------------------------------------------------------------------------ */

static int case_fifo_model(void) {
    char p[512];
    path_in(p, sizeof p, "fifo.safetensors");
    CHECK(mkfifo(p, 0600) == 0);
    neco_model * m = NULL;
    EXPECT(neco_model_load(p, NULL, &m), NECO_ERR_IO);
    CHECK(strstr(neco_last_error(), "FIFO") != NULL);
    return 0;
}

static int case_fifo_image(void) {
    char p[512];
    path_in(p, sizeof p, "fifo.png");
    CHECK(mkfifo(p, 0600) == 0);
    neco_image * img = NULL;
    EXPECT(neco_image_load(p, &img), NECO_ERR_IO);
    CHECK(strstr(neco_last_error(), "not a regular file") != NULL);
    neco_trainer * t = NULL;
    neco_model * m = load_tiny();
    char dir[512];
    path_in(dir, sizeof dir, "fifo-dir");
    CHECK(mkdir(dir, 0700) == 0);
    char f[600];
    snprintf(f, sizeof f, "%s/a.safetensors", dir);
    CHECK(mkfifo(f, 0600) == 0);
    neco_train_params tp = tiny_params();
    neco_trainer * tr = tiny_trainer(m, &tp);
    CHECK(tr != NULL);
    EXPECT(neco_trainer_load_checkpoint(tr, f), NECO_ERR_IO);
    neco_trainer_free(tr);
    neco_trainer_free(t);
    neco_model_free(m);
    return 0;
}

static int case_huge_file_under_limit(void) {
    char p[512];
    path_in(p, sizeof p, "huge.jpg");
    CHECK(sparse_file(p, sample_jpeg, sizeof sample_jpeg, (off_t)1536 << 20) == 0);
    limit_memory((size_t)256 << 20);
    neco_image * img = NULL;
    EXPECT(neco_image_load(p, &img), NECO_ERR_OOM);
    CHECK(img == NULL);
    unlink(p);
    return 0;
}

static int case_huge_buffer_under_limit(void) {
    const size_t n = (size_t)1536 << 20;
    unsigned char * buf = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(buf != MAP_FAILED);
    memcpy(buf, sample_jpeg, sizeof sample_jpeg);
    limit_memory((size_t)256 << 20);
    neco_image * img = NULL;
    /* Decoded in place (not copied): the JPEG at its start decodes, the zeros after EOI are ignored. */
    EXPECT(neco_image_decode(buf, n, &img), NECO_OK);
    CHECK(neco_image_width(img) == SAMPLE_WIDTH);
    neco_image_free(img);
    return 0;
}

static int case_png_bomb(void) {
    unsigned char png[33];
    png_header(png, 16384, 16384);
    neco_image * img = NULL;
    double t0 = now();
    EXPECT(neco_image_decode(png, sizeof png, &img), NECO_ERR_INVALID_ARG);
    CHECK(strstr(neco_last_error(), "pixel limit") != NULL);
    CHECK(now() - t0 < 1.0);
    /* Above the hard limit of 2^28 pixels the cap cannot be raised. */
    EXPECT(neco_image_set_max_pixels(((int64_t)1 << 28) + 1), NECO_ERR_INVALID_ARG);
    return 0;
}

static int case_jpeg_bomb(void) {
    unsigned char jpg[sizeof sample_jpeg];
    memcpy(jpg, sample_jpeg, sizeof jpg);
    size_t sof = 0;
    for (size_t i = 0; i + 9 < sizeof jpg; i++) {
        if (jpg[i] == 0xFF && (jpg[i + 1] == 0xC0 || jpg[i + 1] == 0xC2)) { sof = i; break; }
    }
    CHECK(sof > 0);
    jpg[sof + 5] = 0x40; jpg[sof + 6] = 0x00; /* height 16384 */
    jpg[sof + 7] = 0x40; jpg[sof + 8] = 0x00; /* width 16384 */
    neco_image * img = NULL;
    double t0 = now();
    EXPECT(neco_image_decode(jpg, sizeof jpg, &img), NECO_ERR_INVALID_ARG);
    CHECK(strstr(neco_last_error(), "16384 x 16384") != NULL);
    CHECK(now() - t0 < 1.0);
    return 0;
}

static int case_extract_large_under_limit(void) {
    /* 1400 x 1400 input: 10000 patches; attention scores of 10^8 floats per worker. */
    const int side = 1400;
    uint8_t * rgb = malloc((size_t)side * side * 3);
    CHECK(rgb != NULL);
    for (size_t i = 0; i < (size_t)side * side * 3; i++) rgb[i] = (uint8_t)(i * 7 % 251);
    neco_model * m = load_tiny();
    neco_extract_params ep = neco_extract_default_params();
    ep.resize = NECO_RESIZE_NONE;
    float * cls = malloc(32 * sizeof(float));
    neco_feature_buffers out = {.cls_capacity = 32, .cls = cls};
    limit_memory((size_t)1 << 30);
    neco_status st = neco_extract_rgb(m, rgb, side, side, &ep, &out);
    printf("    1400x1400 under +1 GiB: %s %s\n", neco_status_str(st), neco_last_error());
    CHECK(st == NECO_OK || st == NECO_ERR_OOM);
    neco_model_free(m);
    free(rgb);
    free(cls);
    return 0;
}

static int case_batch_under_limit(void) {
    const int n = 4096, side = 224;
    const size_t in_n = (size_t)n * 3 * side * side, out_n = (size_t)n * 256 * 32;
    float * input = mmap(NULL, in_n * 4, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    float * patches = mmap(NULL, out_n * 4, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(input != MAP_FAILED && patches != MAP_FAILED);
    neco_model * m = load_tiny();
    limit_memory((size_t)192 << 20);
    neco_extract_params ep = neco_extract_default_params();
    neco_feature_buffers out = {.patches_capacity = out_n, .patches = patches};
    EXPECT(neco_extract_nchw(m, input, n, side, side, &ep, &out), NECO_ERR_OOM);
    neco_model_free(m);
    return 0;
}

static int case_upsample_under_limit(void) {
    const size_t per = (size_t)4096 * 4096 * 32; /* 2^24 positions (the limit) x D = 32: 2 GiB */
    float * patches = mmap(NULL, per * 4, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(patches != MAP_FAILED);
    neco_model * m = load_tiny();
    limit_memory((size_t)256 << 20);
    uint8_t rgb[SAMPLE_WIDTH * SAMPLE_HEIGHT * 3] = {0};
    neco_extract_params ep = neco_extract_default_params();
    ep.out_height = ep.out_width = 4096;
    neco_feature_buffers out = {.patches_capacity = per, .patches = patches};
    EXPECT(neco_extract_rgb(m, rgb, SAMPLE_HEIGHT, SAMPLE_WIDTH, &ep, &out), NECO_ERR_OOM);
    neco_model_free(m);
    return 0;
}

static int case_trainer_sizes(void) {
    neco_model * m = load_tiny();
    neco_train_params p = tiny_params();
    p.queue_length = 1 << 24;
    p.head_out_dim = 65536;
    neco_trainer * t = tiny_trainer(m, &p);
    CHECK(t == NULL);
    CHECK(strstr(neco_last_error(), "2^28") != NULL);
    p = tiny_params();
    p.head_hidden_dim = 65536;
    CHECK(tiny_trainer(m, &p) == NULL);
    CHECK(strncmp(neco_last_error(), "neco_trainer_init_images", 24) == 0);
    p = tiny_params();
    p.batch_size = 3;
    neco_trainer * ok = tiny_trainer(m, &p);
    CHECK(ok != NULL);
    neco_trainer_free(ok);
    neco_model_free(m);
    return 0;
}

static int case_training_folder_with_huge_file(void) {
    char dir[512], f[600];
    path_in(dir, sizeof dir, "train");
    CHECK(mkdir(dir, 0700) == 0);
    /* Four readable pictures, one 1.5 GB file that cannot be read under the limit, one bomb. */
    for (int i = 0; i < 4; i++) {
        snprintf(f, sizeof f, "%s/ok%d.png", dir, i);
        CHECK(write_file(f, sample_png, sizeof sample_png) == 0);
    }
    snprintf(f, sizeof f, "%s/huge.jpg", dir);
    CHECK(sparse_file(f, sample_jpeg, sizeof sample_jpeg, (off_t)1536 << 20) == 0);
    unsigned char bomb[33];
    png_header(bomb, 16384, 16384);
    snprintf(f, sizeof f, "%s/bomb.png", dir);
    CHECK(write_file(f, bomb, sizeof bomb) == 0);
    neco_model * m = load_tiny();
    neco_train_params p = tiny_params();
    p.references = NECO_REFERENCES_BATCH;
    p.total_steps = 6;
    neco_trainer * t = NULL;
    EXPECT(neco_trainer_init_folder(m, dir, &p, &t), NECO_OK);
    /* Room for the steps (with OpenBLAS's 160 MiB per thread), not for the 1.5 GB file. */
    limit_memory((size_t)1 << 30);
    neco_train_progress pr;
    memset(&pr, 0, sizeof pr);
    for (int s = 0; s < 6; s++) EXPECT(neco_trainer_step(t, &pr), NECO_OK);
    printf("    6 steps, %lld images skipped\n", (long long)pr.skipped_images);
    CHECK(pr.skipped_images >= 2);
    neco_trainer_free(t);
    neco_model_free(m);
    return 0;
}

static int case_predict_huge_label(void) {
    neco_index * ix = NULL;
    EXPECT(neco_index_init(4, &ix), NECO_OK);
    float rows[8] = {1, 0, 0, 0, 0, 1, 0, 0};
    int32_t labels[2] = {1 << 30, 0};
    EXPECT(neco_index_add(ix, rows, 2, labels), NECO_OK);
    neco_predict_params pp = neco_predict_default_params();
    pp.k = 1;
    int32_t out[1];
    EXPECT(neco_index_predict(ix, rows, 1, &pp, NULL, 0, out, 1), NECO_ERR_INVALID_ARG);
    neco_index_free(ix);
    return 0;
}

static int case_non_finite_input(void) {
    neco_model * m = load_tiny();
    float in[3 * 28 * 28];
    for (int i = 0; i < 3 * 28 * 28; i++) in[i] = (float)(i % 13) / 6.0f - 1.0f;
    float cls[32];
    neco_feature_buffers out = {.cls_capacity = 32, .cls = cls};
    neco_extract_params ep = neco_extract_default_params();
    EXPECT(neco_extract_nchw(m, in, 1, 28, 28, &ep, &out), NECO_OK);
    in[100] = NAN;
    EXPECT(neco_extract_nchw(m, in, 1, 28, 28, &ep, &out), NECO_ERR_INVALID_ARG);
    in[100] = INFINITY;
    EXPECT(neco_extract_nchw(m, in, 1, 28, 28, &ep, &out), NECO_ERR_INVALID_ARG);
    in[100] = 1e30f;
    EXPECT(neco_extract_nchw(m, in, 1, 28, 28, &ep, &out), NECO_ERR_INVALID_ARG);
    neco_model_free(m);
    return 0;
}

static int case_odd_paths(void) {
    size_t n = 0;
    unsigned char * model_bytes = read_file(tiny, &n);
    CHECK(model_bytes != NULL);
    char p[512];
    path_in(p, sizeof p, "m\xff\xfe.safetensors");
    CHECK(write_file(p, model_bytes, n) == 0);
    neco_model_params mp = neco_model_default_params();
    mp.n_heads = 4;
    neco_model * m = NULL;
    EXPECT(neco_model_load(p, &mp, &m), NECO_OK);
    /* A newline in a name: the file loads; a missing one gives a one-line message. */
    char q[512];
    path_in(q, sizeof q, "line\nbreak.safetensors");
    CHECK(write_file(q, model_bytes, n) == 0);
    neco_model * m2 = NULL;
    EXPECT(neco_model_load(q, &mp, &m2), NECO_OK);
    neco_model_free(m2);
    m2 = NULL;
    path_in(q, sizeof q, "missing\n\xff.safetensors");
    EXPECT(neco_model_load(q, &mp, &m2), NECO_ERR_IO);
    CHECK(strstr(neco_last_error(), "missing\\n\\xff.safetensors") != NULL);
    /* Export writes exactly the name given. */
    char e[512];
    path_in(e, sizeof e, "\xff.onnx");
    EXPECT(neco_export_onnx(m, e, NULL), NECO_OK);
    struct stat st;
    CHECK(stat(e, &st) == 0 && st.st_size > 0);
    neco_model_free(m);
    free(model_bytes);
    return 0;
}

static int case_export_under_limit(void) {
    neco_model * m = load_tiny();
    char e[512];
    path_in(e, sizeof e, "limited.onnx");
    limit_memory((size_t)2 << 20);
    neco_status st = neco_export_onnx(m, e, NULL);
    printf("    export under +2 MiB: %s %s\n", neco_status_str(st), neco_last_error());
    CHECK(st == NECO_OK || st == NECO_ERR_OOM || st == NECO_ERR_IO);
    neco_model_free(m);
    return 0;
}

static int case_tampered_checkpoint(void) {
    neco_model * m = load_tiny();
    neco_train_params p = tiny_params();
    neco_trainer * t = tiny_trainer(m, &p);
    CHECK(t != NULL);
    EXPECT(neco_trainer_step(t, NULL), NECO_OK);
    char c[512];
    path_in(c, sizeof c, "ck.safetensors");
    EXPECT(neco_trainer_save_checkpoint(t, c), NECO_OK);
    size_t n = 0;
    unsigned char * b = read_file(c, &n);
    CHECK(b != NULL);
    /* Same-length edits of metadata values: the checksum covers them. */
    const char * keys[] = {"\"adamw_step\":\"", "\"neco.loader_position\":\"", "\"neco.loader_epoch\":\""};
    for (int k = 0; k < 3; k++) {
        unsigned char * copy = malloc(n);
        memcpy(copy, b, n);
        unsigned char * at = memmem(copy, n, keys[k], strlen(keys[k]));
        CHECK(at != NULL);
        at[strlen(keys[k])] = '9';
        char bad[512];
        path_in(bad, sizeof bad, "bad.safetensors");
        CHECK(write_file(bad, copy, n) == 0);
        EXPECT(neco_trainer_load_checkpoint(t, bad), NECO_ERR_FORMAT);
        CHECK(neco_trainer_step_count(t) == 1);
        free(copy);
    }
    EXPECT(neco_trainer_step(t, NULL), NECO_OK);
    EXPECT(neco_trainer_load_checkpoint(t, c), NECO_OK);
    CHECK(neco_trainer_step_count(t) == 1);
    free(b);
    neco_trainer_free(t);
    neco_model_free(m);
    return 0;
}

/* ---- driver ----------------------------------------------------------------------------- */

typedef int (*case_fn)(void);

static int run_case(const char * name, case_fn fn, unsigned timeout_s) {
    fflush(stdout);
#ifdef NECO_SANITIZED
    if (strstr(name, "rlimit") != NULL) {
        printf("SKIP %-32s (sanitizer build: no RLIMIT_AS)\n", name);
        return 0;
    }
#endif
    double t0 = now();
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        alarm(timeout_s);
        _exit(fn());
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    double dt = now() - t0;
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        printf("FAIL %-32s killed by signal %d (%s)%s\n", name, sig, strsignal(sig),
               sig == SIGALRM ? ": timed out (a hang)" : "");
        return 1;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        printf("FAIL %-32s exit %d\n", name, WEXITSTATUS(status));
        return 1;
    }
    printf("PASS %-32s %.2f s\n", name, dt);
    return 0;
}

int main(int argc, char ** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s TINY_MODEL.safetensors\n", argv[0]);
        return 2;
    }
    tiny = argv[1];
    setvbuf(stdout, NULL, _IOLBF, 0);
    snprintf(tmpdir, sizeof tmpdir, "%s/neco-hostile-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    if (neco_set_n_threads(2) != NECO_OK) return 2;
    struct {
        const char * name;
        case_fn fn;
        unsigned timeout;
    } cases[] = {
        {"fifo_model", case_fifo_model, 10},
        {"fifo_image_and_checkpoint", case_fifo_image, 20},
        {"huge_file_under_rlimit_as", case_huge_file_under_limit, 20},
        /* (the folder case limits memory too, after the trainer is built) */
        {"huge_buffer_under_rlimit_as", case_huge_buffer_under_limit, 20},
        {"png_decompression_bomb", case_png_bomb, 10},
        {"jpeg_decompression_bomb", case_jpeg_bomb, 10},
        {"extract_1400_under_rlimit_as", case_extract_large_under_limit, 120},
        {"batch_4096_under_rlimit_as", case_batch_under_limit, 30},
        {"upsample_4096_under_rlimit_as", case_upsample_under_limit, 30},
        {"trainer_sizes_beyond_limits", case_trainer_sizes, 60},
        {"training_folder_huge_and_bomb_rlimit", case_training_folder_with_huge_file, 120},
        {"predict_huge_label", case_predict_huge_label, 10},
        {"non_finite_input", case_non_finite_input, 20},
        {"non_utf8_and_newline_paths", case_odd_paths, 30},
        {"export_under_rlimit_as", case_export_under_limit, 30},
        {"tampered_checkpoint", case_tampered_checkpoint, 60},
    };
    const int n = (int)(sizeof cases / sizeof cases[0]);
    const char * only = getenv("HOSTILE_ONLY");
    int failures = 0, ran = 0;
    for (int i = 0; i < n; i++) {
        if (only && strcmp(only, cases[i].name) != 0) continue;
        failures += run_case(cases[i].name, cases[i].fn, cases[i].timeout);
        ran++;
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    if (failures) {
        printf("HOSTILE FAILED (%d of %d cases)\n", failures, ran);
        return 1;
    }
    printf("HOSTILE OK (%d cases)\n", ran);
    return 0;
}
