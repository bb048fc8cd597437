/* support.c: thread-local last error, log sink, static strings for NecoCAPI. */
#include "neco_support.h"

#include <stdio.h>
#include <string.h>

/* ---- last error ------------------------------------------------------------------------- */

static _Thread_local char tls_error[NECO_SUPPORT_ERROR_LEN];

void neco_support_set_error(const char * message) {
    if (message == NULL) {
        tls_error[0] = '\0';
        return;
    }
    size_t n = strlen(message);
    if (n >= NECO_SUPPORT_ERROR_LEN) {
        n = NECO_SUPPORT_ERROR_LEN - 1;
        /* Do not cut a UTF-8 sequence in half: back up over continuation bytes. */
        while (n > 0 && ((unsigned char)message[n] & 0xC0) == 0x80) n--;
    }
    memcpy(tls_error, message, n);
    tls_error[n] = '\0';
}

const char * neco_support_last_error(void) { return tls_error; }

/* ---- logging ---------------------------------------------------------------------------- */

/* Process-global, set by neco_log_set, which the header documents as not thread-safe. */
static neco_log_callback log_callback = NULL;
static void * log_user_data = NULL;

void neco_support_log_set(neco_log_callback callback, void * user_data) {
    log_callback = callback;
    log_user_data = callback ? user_data : NULL;
}

static const char * level_name(int32_t level) {
    switch (level) {
    case 0: return "debug";
    case 1: return "info";
    case 2: return "warn";
    case 3: return "error";
    default: return "log";
    }
}

void neco_support_log(int32_t level, const char * message) {
    if (message == NULL) message = "";
    neco_log_callback cb = log_callback;
    if (cb != NULL) {
        cb((neco_log_level)level, message, log_user_data);
        return;
    }
    if (level >= 2) fprintf(stderr, "neco %s: %s\n", level_name(level), message);
}

/* ---- static strings --------------------------------------------------------------------- */

const char * neco_support_status_str(int32_t status) {
    switch (status) {
    case 0: return "ok";
    case -1: return "invalid argument";
    case -2: return "I/O error";
    case -3: return "format error";
    case -4: return "shape mismatch";
    case -5: return "out of memory";
    case -6: return "aborted";
    case -7: return "internal error";
    case -8: return "diverged";
    case -9: return "unusable data";
    case -10: return "params version";
    case -11: return "distributed";
    default: return "unknown status";
    }
}

#ifndef NECO_GIT_SHA
#define NECO_GIT_SHA "unknown"
#endif

#define NECO_STR2(x) #x
#define NECO_STR(x) NECO_STR2(x)
/* NECO_VERSION_* come from include/neco.h, the one place the version is written (CMake reads it too). */
const char * neco_support_version(void) {
    return NECO_STR(NECO_VERSION_MAJOR) "." NECO_STR(NECO_VERSION_MINOR) "." NECO_STR(NECO_VERSION_PATCH) "+" NECO_GIT_SHA;
}

/* ---- params struct sizes ---------------------------------------------------------------------
 * The accepted struct_size values of each params struct: the end of every field (an older header
 * that stopped there) and sizeof (tail padding included). Fields are appended to neco.h, and the
 * list of each struct here grows with them. */
#define NECO_END(T, f) (offsetof(T, f) + sizeof(((T *)0)->f))

static const size_t model_ends[] = {
    NECO_END(neco_model_params, n_heads), NECO_END(neco_model_params, n_registers),
    NECO_END(neco_model_params, pos_rule), NECO_END(neco_model_params, image_height),
    NECO_END(neco_model_params, image_width), NECO_END(neco_model_params, expect_arch),
    sizeof(neco_model_params)};
static const size_t extract_ends[] = {
    NECO_END(neco_extract_params, resize), NECO_END(neco_extract_params, height),
    NECO_END(neco_extract_params, width), NECO_END(neco_extract_params, out_height),
    NECO_END(neco_extract_params, out_width), NECO_END(neco_extract_params, l2_normalize),
    sizeof(neco_extract_params)};
static const size_t predict_ends[] = {
    NECO_END(neco_predict_params, k), NECO_END(neco_predict_params, n_classes),
    NECO_END(neco_predict_params, temperature), sizeof(neco_predict_params)};
static const size_t train_ends[] = {
    NECO_END(neco_train_params, total_steps), NECO_END(neco_train_params, batch_size),
    NECO_END(neco_train_params, global_size), NECO_END(neco_train_params, local_size),
    NECO_END(neco_train_params, n_global_crops), NECO_END(neco_train_params, n_local_crops),
    NECO_END(neco_train_params, roi_size), NECO_END(neco_train_params, references),
    NECO_END(neco_train_params, queue_length), NECO_END(neco_train_params, sort_net),
    NECO_END(neco_train_params, relaxation), NECO_END(neco_train_params, steepness),
    NECO_END(neco_train_params, teacher_steepness), NECO_END(neco_train_params, log_floor),
    NECO_END(neco_train_params, lr_backbone), NECO_END(neco_train_params, lr_head),
    NECO_END(neco_train_params, warmup_steps), NECO_END(neco_train_params, drop_path),
    NECO_END(neco_train_params, train_last_blocks), NECO_END(neco_train_params, freeze_first_blocks),
    NECO_END(neco_train_params, grad_clip), NECO_END(neco_train_params, seed),
    NECO_END(neco_train_params, run_dir), NECO_END(neco_train_params, checkpoint_every),
    NECO_END(neco_train_params, head_hidden_dim), NECO_END(neco_train_params, head_out_dim),
    NECO_END(neco_train_params, epochs), NECO_END(neco_train_params, head_only_steps),
    NECO_END(neco_train_params, memory_limit_mib), NECO_END(neco_train_params, recompute_ffn_blocks),
    sizeof(neco_train_params)};
static const size_t export_ends[] = {
    NECO_END(neco_export_params, input_size), NECO_END(neco_export_params, height),
    NECO_END(neco_export_params, width), NECO_END(neco_export_params, external_data),
    NECO_END(neco_export_params, head_path), sizeof(neco_export_params)};

static const size_t eval_ends[] = {
    NECO_END(neco_eval_params, size), NECO_END(neco_eval_params, batch), NECO_END(neco_eval_params, max_train),
    NECO_END(neco_eval_params, max_val), NECO_END(neco_eval_params, k), NECO_END(neco_eval_params, temperature),
    NECO_END(neco_eval_params, memory_size), sizeof(neco_eval_params)};

int32_t neco_support_params_size(int32_t kind, size_t struct_size) {
    const size_t * ends;
    size_t n;
    switch (kind) {
    case NECO_SUPPORT_MODEL_PARAMS: ends = model_ends; n = sizeof model_ends / sizeof *model_ends; break;
    case NECO_SUPPORT_EXTRACT_PARAMS: ends = extract_ends; n = sizeof extract_ends / sizeof *extract_ends; break;
    case NECO_SUPPORT_PREDICT_PARAMS: ends = predict_ends; n = sizeof predict_ends / sizeof *predict_ends; break;
    case NECO_SUPPORT_TRAIN_PARAMS: ends = train_ends; n = sizeof train_ends / sizeof *train_ends; break;
    case NECO_SUPPORT_EXPORT_PARAMS: ends = export_ends; n = sizeof export_ends / sizeof *export_ends; break;
    case NECO_SUPPORT_EVAL_PARAMS: ends = eval_ends; n = sizeof eval_ends / sizeof *eval_ends; break;
    default: return 3;
    }
    if (struct_size < sizeof(size_t)) return 1;
    if (struct_size > ends[n - 1]) return 2;
    for (size_t i = 0; i < n; i++) {
        if (ends[i] == struct_size) return 0;
    }
    return 3;
}

static _Thread_local char path_buffer[NECO_SUPPORT_PATH_LEN];

const char * neco_support_set_path(const char * path) {
    if (path == NULL) path = "";
    size_t n = strlen(path);
    if (n > NECO_SUPPORT_PATH_LEN - 1) n = NECO_SUPPORT_PATH_LEN - 1;
    memcpy(path_buffer, path, n);
    path_buffer[n] = 0;
    return path_buffer;
}
