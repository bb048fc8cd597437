/* libFuzzer target: the safetensors header (a JSON object: dtypes, shapes, offsets, metadata)
 * through neco_model_load. The input is the header text; the target adds the 8-byte length and a
 * 4 KiB data section of small floats, so the parser and every validation of the table are
 * reached without the fuzzer having to get the length prefix right. Seeds: the headers of
 * the safetensors fixtures (fuzz/make_corpus.sh). */
#include "fuzz_common.h"

#include <stdint.h>

static int fd = -1;
static char path[64];
static uint8_t * file = NULL;
static size_t file_cap = 0;

int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    const size_t data_bytes = 4096;
    const size_t need = 8 + size + data_bytes;
    if (need > file_cap) {
        free(file);
        file = malloc(need);
        if (file == NULL) abort();
        file_cap = need;
    }
    for (int i = 0; i < 8; i++) file[i] = (uint8_t)((uint64_t)size >> (8 * i));
    memcpy(file + 8, data, size);
    for (size_t i = 0; i < data_bytes; i++) file[8 + size + i] = (uint8_t)(i % 4 == 3 ? 0x3c : 0); /* ~0.0078 */
    fuzz_file(&fd, path, sizeof path, file, need);
    neco_model_params mp = neco_model_default_params();
    mp.n_heads = 4;
    neco_model * model = NULL;
    neco_status st = neco_model_load(path, &mp, &model);
    fuzz_check_status(st);
    if (st != NECO_OK && model != NULL) abort();
    neco_model_free(model);
    return 0;
}
