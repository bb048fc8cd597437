/*
 * train_example.c: NeCo post-pretraining through the C ABI.
 *
 * Trains a model for a few steps on a small folder of photos at reduced crop sizes, with a run
 * folder (checkpoints, log, exported models) and a progress callback; checks that the loss is
 * finite and changes; saves a checkpoint, loads it into a second trainer built the same way and
 * checks that both continue identically; stops a run from the callback; trains from
 * caller-supplied RGB buffers; takes the trained student as a neco_model and extracts features
 * with it. Then the error cases: crop sizes that are not multiples of the patch size, a batch
 * too small for batch references, steepness 0, an empty folder, a checkpoint of other params.
 *
 * usage: train_example [MODEL [IMAGE_DIR [N_HEADS [WORK_DIR]]]]
 *   MODEL      safetensors checkpoint (default ~/.cache/neco/models/dinov2_vits14_imgfocus.safetensors)
 *   IMAGE_DIR  folder of JPEG/PNG photos, at least 4 (default ~/.cache/neco/photos)
 *   N_HEADS    attention heads, 0 = embed dim / 64 (the tiny test model needs 4)
 *   WORK_DIR   scratch folder for the run (default: a new folder under $TMPDIR or /tmp, removed
 *              with its files when the example succeeds and kept for inspection when it fails)
 * Exit status 0 and "TRAIN EXAMPLE OK" on success; 77 when the model or the photos are missing.
 */
#define _XOPEN_SOURCE 700 /* mkdtemp, nftw */
#include <neco.h>

#include <ftw.h>

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

#define REQUIRE(cond)                                                                           \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            fprintf(stderr, "%s:%d: requirement failed: %s\n", __FILE__, __LINE__, #cond);       \
            exit(1);                                                                            \
        }                                                                                       \
    } while (0)

static int file_exists(const char * path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Losses seen by the callback, and when to stop. */
typedef struct {
    float losses[64];
    int n;
    int stop_after;  /* 0 = never */
} progress_log;

static bool on_step(const neco_train_progress * p, void * user_data) {
    progress_log * log = (progress_log *)user_data;
    if (log->n < 64) log->losses[log->n++] = p->loss;
    printf("  step %lld/%lld loss %.4f lr %.2e momentum %.6f %.2f img/s (data %.2f s, loss %.2f s of %.2f s) ETA %.0f s\n",
           (long long)p->step, (long long)p->total_steps, p->loss, p->lr_backbone, p->momentum, p->images_per_second,
           p->data_seconds, p->loss_seconds, p->step_seconds, p->eta_seconds);
    return !(log->stop_after > 0 && log->n >= log->stop_after);  /* true = continue */
}

/* Small and fast: 2 images per step, crops of 4 and 2 patches a side, batch references. */
static neco_train_params small_params(int32_t patch, const char * run_dir) {
    neco_train_params p = neco_train_default_params();
    p.total_steps = 6;
    p.batch_size = 2;
    p.global_size = 4 * patch;
    p.local_size = 2 * patch;
    p.roi_size = 3;
    p.references = NECO_REFERENCES_BATCH;
    p.lr_backbone = 1e-4;
    p.lr_head = 1e-3;
    p.seed = 7;
    p.run_dir = run_dir;
    p.checkpoint_every = 2;
    return p;
}

static int remove_entry(const char * path, const struct stat * st, int flag, struct FTW * ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

int main(int argc, char ** argv) {
    char model_buf[1024], photos_buf[1024], work_buf[1024];
    const char * home = getenv("HOME");
    snprintf(model_buf, sizeof model_buf, "%s/.cache/neco/models/dinov2_vits14_imgfocus.safetensors", home ? home : ".");
    snprintf(photos_buf, sizeof photos_buf, "%s/.cache/neco/photos", home ? home : ".");
    const char * model_path = argc > 1 ? argv[1] : model_buf;
    const char * photos = argc > 2 ? argv[2] : photos_buf;
    int32_t heads = argc > 3 ? (int32_t)atoi(argv[3]) : 0;
    if (!file_exists(model_path) || !file_exists(photos)) {
        fprintf(stderr, "missing %s or %s (run scripts/setup.sh)\n", model_path, photos);
        return 77;
    }
    const int own_work_dir = argc <= 4;
    if (argc > 4) {
        snprintf(work_buf, sizeof work_buf, "%s", argv[4]);
        mkdir(work_buf, 0755);
    } else {
        const char * tmp = getenv("TMPDIR");
        snprintf(work_buf, sizeof work_buf, "%s/neco-train-example-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(work_buf)) { perror("mkdtemp"); return 1; }
    }

    neco_model_params mp = neco_model_default_params();
    mp.n_heads = heads;
    neco_model * model = NULL;
    CHECK(neco_model_load(model_path, &mp, &model));
    const int32_t patch = neco_model_patch_size(model);
    printf("model %s: %s, D %d, patch %d\n", model_path, neco_model_name(model), neco_model_embed_dim(model), patch);

    /* 1. A run folder, 4 steps through neco_trainer_run with a callback. */
    char run_dir[1100], ckpt[1200], path[1200];
    snprintf(run_dir, sizeof run_dir, "%s/run", work_buf);
    neco_train_params params = small_params(patch, run_dir);
    neco_trainer * trainer = NULL;
    CHECK(neco_trainer_init_folder(model, photos, &params, &trainer));
    progress_log log = {0};
    CHECK(neco_trainer_run(trainer, 4, on_step, &log));
    REQUIRE(log.n == 4 && neco_trainer_step_count(trainer) == 4);
    int changed = 0;
    for (int i = 0; i < log.n; i++) {
        REQUIRE(isfinite(log.losses[i]) && log.losses[i] > 0);
        if (log.losses[i] != log.losses[0]) changed = 1;
    }
    REQUIRE(changed);
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", run_dir);
    REQUIRE(file_exists(path));
    snprintf(path, sizeof path, "%s/log.csv", run_dir);
    REQUIRE(file_exists(path));

    /* 2. Save a checkpoint, load it into a second trainer built the same way (no run folder):
     *    both continue with bit-identical steps. */
    snprintf(ckpt, sizeof ckpt, "%s/step4.safetensors", work_buf);
    CHECK(neco_trainer_save_checkpoint(trainer, ckpt));
    neco_train_params same = small_params(patch, NULL);
    neco_trainer * twin = NULL;
    CHECK(neco_trainer_init_folder(model, photos, &same, &twin));
    EXPECT_FAIL(neco_trainer_load_checkpoint(twin, "/nonexistent/checkpoint.safetensors"), NECO_ERR_IO);
    CHECK(neco_trainer_load_checkpoint(twin, ckpt));
    REQUIRE(neco_trainer_step_count(twin) == 4);
    neco_train_progress a, b;
    CHECK(neco_trainer_step(trainer, &a));
    CHECK(neco_trainer_step(twin, &b));
    printf("  step 5: loss %.6f (trainer) %.6f (restored twin)\n", a.loss, b.loss);
    REQUIRE(a.step == 5 && b.step == 5 && a.loss == b.loss);

    /* 3. The rest of the run: at the end the folder holds the exported models. */
    CHECK(neco_trainer_run(trainer, 0, NULL, NULL));
    REQUIRE(neco_trainer_step_count(trainer) == 6);
    EXPECT_FAIL(neco_trainer_step(trainer, NULL), NECO_ERR_INVALID_ARG);
    snprintf(path, sizeof path, "%s/student.safetensors", run_dir);
    REQUIRE(file_exists(path));

    /* 4. The trained student as a model: features come out and differ from the original's. */
    neco_model * student = NULL;
    CHECK(neco_trainer_get_model(trainer, false, &student));
    neco_model * reloaded = NULL;
    CHECK(neco_model_load(path, &mp, &reloaded));
    neco_extract_params ep = neco_extract_default_params();
    ep.height = ep.width = 4 * patch;
    neco_feature_shape shape;
    CHECK(neco_extract_shape_nchw(student, ep.height, ep.width, &ep, &shape));
    size_t n_in = (size_t)3 * ep.height * ep.width;
    float * pixels = malloc(n_in * sizeof(float));
    float * f0 = malloc(shape.patches_per_image * sizeof(float));
    float * f1 = malloc(shape.patches_per_image * sizeof(float));
    float * f2 = malloc(shape.patches_per_image * sizeof(float));
    REQUIRE(pixels && f0 && f1 && f2);
    for (size_t i = 0; i < n_in; i++) pixels[i] = (float)((i * 7919) % 1000) / 500.0f - 1.0f;
    neco_feature_buffers o0 = {.patches_capacity = shape.patches_per_image, .patches = f0};
    neco_feature_buffers o1 = {.patches_capacity = shape.patches_per_image, .patches = f1};
    neco_feature_buffers o2 = {.patches_capacity = shape.patches_per_image, .patches = f2};
    CHECK(neco_extract_nchw(model, pixels, 1, ep.height, ep.width, &ep, &o0));
    CHECK(neco_extract_nchw(student, pixels, 1, ep.height, ep.width, &ep, &o1));
    CHECK(neco_extract_nchw(reloaded, pixels, 1, ep.height, ep.width, &ep, &o2));
    double moved = 0;
    for (size_t i = 0; i < shape.patches_per_image; i++) {
        REQUIRE(f1[i] == f2[i]);  /* the exported student file is the trainer's student */
        moved = fmax(moved, fabs((double)f1[i] - f0[i]));
    }
    printf("  trained student: features moved by up to %.3g from the original model\n", moved);
    REQUIRE(moved > 0);
    /* The run folder itself loads as a model: its checkpoint's student, the same weights. */
    neco_model * from_folder = NULL;
    CHECK(neco_model_load(run_dir, &mp, &from_folder));
    CHECK(neco_extract_nchw(from_folder, pixels, 1, ep.height, ep.width, &ep, &o2));
    for (size_t i = 0; i < shape.patches_per_image; i++) REQUIRE(f1[i] == f2[i]);
    neco_model_free(from_folder);
    free(pixels);
    free(f0);
    free(f1);
    free(f2);
    neco_model_free(reloaded);
    neco_model_free(student);
    neco_trainer_free(twin);
    neco_trainer_free(trainer);

    /* 5. Stopped by the callback after 2 steps: NECO_ERR_ABORTED, with a checkpoint saved. */
    snprintf(run_dir, sizeof run_dir, "%s/stopped", work_buf);
    params = small_params(patch, run_dir);
    CHECK(neco_trainer_init_folder(model, photos, &params, &trainer));
    progress_log stop = {.stop_after = 2};
    EXPECT_FAIL(neco_trainer_run(trainer, 0, on_step, &stop), NECO_ERR_ABORTED);
    REQUIRE(neco_trainer_step_count(trainer) == 2);
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", run_dir);
    REQUIRE(file_exists(path));
    neco_trainer_free(trainer);

    /* 6. Caller-supplied pixels: two decoded photos and two synthetic pictures. */
    neco_image * img1 = NULL, * img2 = NULL;
    snprintf(path, sizeof path, "%s/chelsea.png", photos);
    if (file_exists(path)) CHECK(neco_image_load(path, &img1));
    snprintf(path, sizeof path, "%s/coffee.png", photos);
    if (file_exists(path)) CHECK(neco_image_load(path, &img2));
    uint8_t * synth = malloc((size_t)160 * 120 * 3);
    REQUIRE(synth);
    for (size_t i = 0; i < (size_t)160 * 120 * 3; i++) synth[i] = (uint8_t)((i * 31) % 251);
    const uint8_t * pics[4] = {synth, synth, synth, synth};
    int32_t hs[4] = {120, 120, 120, 120}, ws[4] = {160, 160, 160, 160};
    if (img1) { pics[0] = neco_image_data(img1); hs[0] = neco_image_height(img1); ws[0] = neco_image_width(img1); }
    if (img2) { pics[1] = neco_image_data(img2); hs[1] = neco_image_height(img2); ws[1] = neco_image_width(img2); }
    params = small_params(patch, NULL);
    params.total_steps = 2;
    params.references = NECO_REFERENCES_QUEUE;
    params.queue_length = 64;
    CHECK(neco_trainer_init_images(model, pics, hs, ws, 4, &params, &trainer));
    neco_train_progress p;
    CHECK(neco_trainer_step(trainer, &p));
    REQUIRE(isfinite(p.loss));
    printf("  in-memory images: step 1 loss %.4f\n", p.loss);
    EXPECT_FAIL(neco_trainer_save_checkpoint(trainer, "/nonexistent-dir/x.safetensors"), NECO_ERR_IO);
    /* A checkpoint of other params is refused, naming the difference. */
    EXPECT_FAIL(neco_trainer_load_checkpoint(trainer, ckpt), NECO_ERR_INVALID_ARG);
    REQUIRE(neco_trainer_step_count(trainer) == 1);
    neco_trainer_free(trainer);
    neco_image_free(img1);
    neco_image_free(img2);

    /* 7. Bad input: each a clear error, no trainer. */
    neco_trainer * none = NULL;
    params = small_params(patch, NULL);
    params.global_size = 4 * patch + 1;
    EXPECT_FAIL(neco_trainer_init_folder(model, photos, &params, &none), NECO_ERR_INVALID_ARG);
    REQUIRE(none == NULL);
    params = small_params(patch, NULL);
    params.batch_size = 1;
    EXPECT_FAIL(neco_trainer_init_folder(model, photos, &params, &none), NECO_ERR_INVALID_ARG);
    params = small_params(patch, NULL);
    params.steepness = 0;
    EXPECT_FAIL(neco_trainer_init_folder(model, photos, &params, &none), NECO_ERR_INVALID_ARG);
    params = small_params(patch, NULL);
    params.roi_size = 1;
    EXPECT_FAIL(neco_trainer_init_folder(model, photos, &params, &none), NECO_ERR_INVALID_ARG);
    params = small_params(patch, NULL);
    params.relaxation = 99;
    EXPECT_FAIL(neco_trainer_init_folder(model, photos, &params, &none), NECO_ERR_INVALID_ARG);
    snprintf(path, sizeof path, "%s/empty", work_buf);
    mkdir(path, 0755);
    params = small_params(patch, NULL);
    EXPECT_FAIL(neco_trainer_init_folder(model, path, &params, &none), NECO_ERR_DATA);
    params = small_params(patch, run_dir);  /* holds the stopped run */
    EXPECT_FAIL(neco_trainer_init_folder(model, photos, &params, &none), NECO_ERR_INVALID_ARG);
    REQUIRE(none == NULL);

    free(synth);
    neco_model_free(model);
    /* The run folders hold checkpoints and models (about 1.4 GB): a scratch folder of our own goes. */
    if (own_work_dir && nftw(work_buf, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) perror(work_buf);
    printf("TRAIN EXAMPLE OK\n");
    return 0;
}
