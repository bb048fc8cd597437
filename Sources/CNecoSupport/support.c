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
