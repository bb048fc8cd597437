/* libFuzzer target: checkpoint metadata through neco_trainer_load_checkpoint, then one
 * neco_trainer_step when the load succeeds.
 *
 * A training checkpoint's checksum covers its tensors and its metadata, so random bytes almost
 * never get past it. This target therefore fuzzes what an attacker who recomputes the checksum
 * controls: the input is a list of `key=value` lines that replace or add metadata entries of a
 * real checkpoint (a 1-step run of the tiny test model); the target rebuilds the file and
 * recomputes the checksum as Checkpoint.swift defines it (a line `checksum=...` is kept as given
 * instead). Crashes, hangs and NECO_ERR_INTERNAL are findings; after an accepted load, the step
 * must not trap (the SIGILL of unchecked adamw_step / loader values), and the trainer is reset
 * from the pristine checkpoint. Seeds: fuzz/make_corpus.sh writes one line per metadata key. */
#include "fuzz_common.h"

#include <stdint.h>

static neco_model * model = NULL;
static neco_trainer * trainer = NULL;
static char dir[64], pristine_path[96], work_path[96];
static uint8_t * pristine = NULL;
static size_t pristine_size = 0, header_len = 0, meta_end = 0; /* meta_end: index after the metadata object */
/* Pristine metadata (unescaped) and the tensor word counts, in file order. */
#define MAX_META 64
static char * meta_key[MAX_META];
static char * meta_val[MAX_META];
static size_t meta_val_len[MAX_META];
static int n_meta = 0;
static size_t tensor_words[4096];
static size_t tensor_begin[4096];
static int n_tensors = 0;

static uint8_t * read_all(const char * p, size_t * n) {
    FILE * f = fopen(p, "rb");
    if (!f) abort();
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t * b = malloc((size_t)len);
    if (!b || fread(b, 1, (size_t)len, f) != (size_t)len) abort();
    fclose(f);
    *n = (size_t)len;
    return b;
}

/* Parses the JSON string starting at s[*i] == '"' into a malloc'd buffer; advances *i. */
static char * parse_string(const uint8_t * s, size_t end, size_t * i, size_t * out_len) {
    char * out = malloc(end - *i + 1);
    size_t n = 0, k = *i + 1;
    while (k < end && s[k] != '"') {
        if (s[k] == '\\' && k + 1 < end) {
            k++;
            switch (s[k]) {
            case 'n': out[n++] = '\n'; break;
            case 't': out[n++] = '\t'; break;
            case 'r': out[n++] = '\r'; break;
            case 'b': out[n++] = '\b'; break;
            case 'f': out[n++] = '\f'; break;
            case 'u': {
                unsigned v = (unsigned)strtoul((const char[]){(char)s[k + 1], (char)s[k + 2], (char)s[k + 3], (char)s[k + 4], 0}, NULL, 16);
                if (v < 0x80) out[n++] = (char)v;
                else if (v < 0x800) { out[n++] = (char)(0xC0 | v >> 6); out[n++] = (char)(0x80 | (v & 63)); }
                else { out[n++] = (char)(0xE0 | v >> 12); out[n++] = (char)(0x80 | (v >> 6 & 63)); out[n++] = (char)(0x80 | (v & 63)); }
                k += 4;
                break;
            }
            default: out[n++] = (char)s[k];
            }
            k++;
        } else {
            out[n++] = (char)s[k++];
        }
    }
    *i = k + 1;
    out[n] = 0;
    *out_len = n;
    return out;
}

static void setup(void) {
    neco_model_params mp = neco_model_default_params();
    mp.n_heads = 4;
    if (neco_model_load(fuzz_model_path(), &mp, &model) != NECO_OK) abort();
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
    if (neco_trainer_init_images(model, images, hs, ws, N, &p, &trainer) != NECO_OK) abort();
    if (neco_trainer_step(trainer, NULL) != NECO_OK) abort();
    snprintf(dir, sizeof dir, "/tmp/neco-fuzz-XXXXXX");
    if (!mkdtemp(dir)) abort();
    snprintf(pristine_path, sizeof pristine_path, "%s/pristine.safetensors", dir);
    snprintf(work_path, sizeof work_path, "%s/work.safetensors", dir);
    if (neco_trainer_save_checkpoint(trainer, pristine_path) != NECO_OK) abort();
    pristine = read_all(pristine_path, &pristine_size);
    for (int i = 0; i < 8; i++) header_len |= (size_t)pristine[i] << (8 * i);
    const uint8_t * h = pristine + 8;
    /* {"__metadata__":{ ... } , rest */
    const char * lead = "{\"__metadata__\":{";
    if (memcmp(h, lead, strlen(lead)) != 0) abort();
    size_t i = strlen(lead);
    while (h[i] != '}') {
        size_t kl, vl;
        if (h[i] == ',') i++;
        meta_key[n_meta] = parse_string(h, header_len, &i, &kl);
        i++; /* ':' */
        meta_val[n_meta] = parse_string(h, header_len, &i, &vl);
        meta_val_len[n_meta] = vl;
        n_meta++;
    }
    meta_end = i + 1;
    /* Tensor sizes from "data_offsets":[a,b], in header order. */
    const char * tag = "\"data_offsets\":[";
    for (size_t k = meta_end; k + strlen(tag) < header_len; k++) {
        if (memcmp(h + k, tag, strlen(tag)) == 0) {
            char * e;
            double a = strtod((const char *)h + k + strlen(tag), &e);
            double b = strtod(e + 1, NULL);
            tensor_begin[n_tensors] = (size_t)a;
            tensor_words[n_tensors++] = (size_t)(b - a) / 4;
        }
    }
}

/* The checksum of Checkpoint.swift: FNV-1a-style lanes over each tensor's 32-bit words, then the
 * metadata (sorted keys but "checksum", "key\0value\0" each, zero-padded to whole words). */
typedef struct { uint64_t h[4], total; } checksum;
static const uint64_t prime = 0x00000100000001B3ull;
static void ck_add(checksum * c, const uint8_t * raw, size_t n) {
    uint64_t a = c->h[0], b = c->h[1], d2 = c->h[2], d3 = c->h[3];
    size_t i = 0;
    uint32_t w[4];
    for (; i + 4 <= n; i += 4) {
        memcpy(w, raw + 4 * i, 16);
        a = (a ^ w[0]) * prime;
        b = (b ^ w[1]) * prime;
        d2 = (d2 ^ w[2]) * prime;
        d3 = (d3 ^ w[3]) * prime;
    }
    for (; i < n; i++) {
        memcpy(w, raw + 4 * i, 4);
        a = (a ^ w[0]) * prime;
    }
    c->h[0] = a; c->h[1] = b; c->h[2] = d2; c->h[3] = d3;
    c->total += n;
}
static uint64_t ck_value(const checksum * c) {
    uint64_t h = (c->h[0] ^ c->total) * prime;
    h = (h ^ c->h[1]) * prime;
    h = (h ^ c->h[2]) * prime;
    h = (h ^ c->h[3]) * prime;
    return h;
}

static char ** sort_keys; /* the keys qsort orders (by_key) */
static int by_key(const void * a, const void * b) {
    return strcmp(sort_keys[*(const int *)a], sort_keys[*(const int *)b]);
}

/* Appends s (n bytes) as a JSON string. */
static size_t put_string(uint8_t * out, size_t o, const char * s, size_t n) {
    out[o++] = '"';
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        if (c == '"' || c == '\\') { out[o++] = '\\'; out[o++] = c; }
        else if (c < 0x20) o += (size_t)sprintf((char *)out + o, "\\u%04x", c);
        else out[o++] = c;
    }
    out[o++] = '"';
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    if (trainer == NULL) setup();
    /* Pristine metadata with the input's overrides. */
    char * key[MAX_META];
    char * val[MAX_META];
    size_t vlen[MAX_META];
    int n = n_meta;
    for (int i = 0; i < n; i++) { key[i] = meta_key[i]; val[i] = meta_val[i]; vlen[i] = meta_val_len[i]; }
    char * copy = malloc(size + 1);
    memcpy(copy, data, size);
    copy[size] = 0;
    const char * given_checksum = NULL;
    size_t given_checksum_len = 0;
    for (char * line = copy; line < copy + size;) {
        char * nl = memchr(line, '\n', (size_t)(copy + size - line));
        size_t len = nl ? (size_t)(nl - line) : (size_t)(copy + size - line);
        char * eq = memchr(line, '=', len);
        if (eq && eq > line) {
            *eq = 0;
            const char * v = eq + 1;
            size_t vl = len - (size_t)(eq + 1 - line);
            if (strcmp(line, "checksum") == 0) {
                given_checksum = v;
                given_checksum_len = vl;
            } else {
                int j = 0;
                while (j < n && strcmp(key[j], line) != 0) j++;
                if (j < MAX_META && memchr(line, 0, (size_t)(eq - line)) == NULL) {
                    if (j == n) n++;
                    key[j] = line;
                    val[j] = (char *)v;
                    vlen[j] = vl;
                }
            }
        }
        line += len + 1;
    }
    /* Checksum. */
    const uint8_t * tensors = pristine + 8 + header_len;
    checksum c = {{0xCBF29CE484222325ull, 0xCBF29CE484222324ull, 0xCBF29CE484222327ull, 0xCBF29CE484222326ull}, 0};
    for (int t = 0; t < n_tensors; t++) ck_add(&c, tensors + tensor_begin[t], tensor_words[t]);
    int order[MAX_META];
    for (int i = 0; i < n; i++) order[i] = i;
    sort_keys = key;
    qsort(order, (size_t)n, sizeof order[0], by_key);
    size_t mlen = 0;
    for (int i = 0; i < n; i++) mlen += strlen(key[i]) + vlen[i] + 2;
    uint8_t * mbytes = calloc(mlen + 4, 1);
    size_t m = 0;
    for (int q = 0; q < n; q++) {
        int i = order[q];
        if (strcmp(key[i], "checksum") == 0) continue;
        memcpy(mbytes + m, key[i], strlen(key[i]));
        m += strlen(key[i]) + 1;
        memcpy(mbytes + m, val[i], vlen[i]);
        m += vlen[i] + 1;
    }
    m = (m + 3) / 4 * 4;
    if (m > 0) ck_add(&c, mbytes, m / 4);
    char sum[17];
    snprintf(sum, sizeof sum, "%016llx", (unsigned long long)ck_value(&c));
    /* The new file: length, header, the pristine tensors. */
    size_t cap = 8 + 64 + (mlen + 64) * 6 + header_len + (pristine_size - 8 - header_len) + 16;
    uint8_t * out = malloc(cap);
    size_t o = 8;
    o += (size_t)sprintf((char *)out + o, "{\"__metadata__\":{");
    int first = 1;
    for (int q = 0; q < n; q++) {
        int i = order[q];
        if (strcmp(key[i], "checksum") == 0) continue;
        if (!first) out[o++] = ',';
        first = 0;
        o = put_string(out, o, key[i], strlen(key[i]));
        out[o++] = ':';
        o = put_string(out, o, val[i], vlen[i]);
    }
    out[o++] = ',';
    o = put_string(out, o, "checksum", 8);
    out[o++] = ':';
    o = given_checksum ? put_string(out, o, given_checksum, given_checksum_len) : put_string(out, o, sum, 16);
    memcpy(out + o, pristine + 8 + meta_end, header_len - meta_end);
    o += header_len - meta_end;
    while ((o - 8) % 8 != 0) out[o++] = ' ';
    const size_t new_header = o - 8;
    for (int i = 0; i < 8; i++) out[i] = (uint8_t)((uint64_t)new_header >> (8 * i));
    memcpy(out + o, tensors, pristine_size - 8 - header_len);
    o += pristine_size - 8 - header_len;
    FILE * f = fopen(work_path, "wb");
    if (!f || fwrite(out, 1, o, f) != o) abort();
    fclose(f);
    free(out);
    free(mbytes);

    neco_status st = neco_trainer_load_checkpoint(trainer, work_path);
    fuzz_check_status(st);
    if (st == NECO_OK) {
        neco_train_progress progress;
        st = neco_trainer_step(trainer, &progress);
        fuzz_check_status(st);
        if (neco_trainer_load_checkpoint(trainer, pristine_path) != NECO_OK) abort();
    } else if (neco_trainer_step_count(trainer) != 1) {
        abort(); /* a refused checkpoint changed the trainer */
    }
    free(copy);
    return 0;
}
