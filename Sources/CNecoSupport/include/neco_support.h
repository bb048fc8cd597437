/* neco_support.h: C helpers for NecoCAPI (not public API; none of these names is exported from
 * libneco.so: neco.map lists the public names explicitly).
 *
 *   - a thread-local last-error buffer behind neco_last_error();
 *   - the process-global log sink behind neco_log_set();
 *   - static strings for neco_status_str() and neco_version().
 */
#ifndef NECO_SUPPORT_H
#define NECO_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

/* The public header, so that NecoCAPI implements it with its exact types (params structs, enums,
 * the log callback) and cannot drift from it. */
#include "../../../include/neco.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Size of the per-thread message buffer, terminating NUL included. Longer messages are cut at a
 * UTF-8 character boundary. */
#define NECO_SUPPORT_ERROR_LEN 1024

/* Copies `message` (NULL = "") into the calling thread's buffer. */
void neco_support_set_error(const char * message);
/* The calling thread's buffer; never NULL; "" when no error was recorded. */
const char * neco_support_last_error(void);

/* Log sink. `callback` NULL restores the default sink (stderr, levels >= warn). */
void neco_support_log_set(neco_log_callback callback, void * user_data);
/* Sends one message (no trailing newline needed) to the current sink. */
void neco_support_log(int32_t level, const char * message);

/* Params structs whose struct_size neco_support_params_size checks. */
enum {
    NECO_SUPPORT_MODEL_PARAMS = 0,
    NECO_SUPPORT_EXTRACT_PARAMS = 1,
    NECO_SUPPORT_PREDICT_PARAMS = 2,
    NECO_SUPPORT_TRAIN_PARAMS = 3,
    NECO_SUPPORT_EXPORT_PARAMS = 4,
    NECO_SUPPORT_EVAL_PARAMS = 5
};
/* How a caller's struct_size fits the struct `kind` of this header: 0 = it is sizeof the struct
 * or ends at one of its fields (an older header); 1 = it is 0 or smaller than struct_size itself;
 * 2 = larger than sizeof the struct (a newer header); 3 = not at a field boundary. */
int32_t neco_support_params_size(int32_t kind, size_t struct_size);

/* The per-thread buffer behind neco_default_model_path: copies `path` (NULL = "") and returns
 * the buffer; paths longer than NECO_SUPPORT_PATH_LEN - 1 bytes are cut. */
#define NECO_SUPPORT_PATH_LEN 4096
const char * neco_support_set_path(const char * path);

/* Static, never NULL. */
const char * neco_support_status_str(int32_t status);
/* "<major>.<minor>.<patch>+<git sha>" from neco.h's NECO_VERSION_* (the sha comes from -DNECO_GIT_SHA at build time, else "unknown"). */
const char * neco_support_version(void);

#ifdef __cplusplus
}
#endif

#endif /* NECO_SUPPORT_H */
