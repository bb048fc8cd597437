/*
 * neco.h: the C API of libneco, dense DINOv2 / DINO ViT features and patch neighbours.
 *
 * Usage (error handling shortened to CHECK; see examples-c/ for complete programs):
 *
 *     neco_model * model = NULL;
 *     neco_model_params mp = neco_model_default_params();
 *     CHECK(neco_model_load("dinov2_vits14.safetensors", &mp, &model));
 *     neco_image * img = NULL;
 *     CHECK(neco_image_load("cat.png", &img));
 *     neco_extract_params ep = neco_extract_default_params();   // 224x224, no L2, no upsampling
 *     neco_feature_shape shape;
 *     CHECK(neco_extract_shape_rgb(model, neco_image_height(img), neco_image_width(img), &ep, &shape));
 *     float * patches = malloc(shape.patches_per_image * sizeof(float));    // (h*w, D)
 *     neco_feature_buffers out = { .patches_capacity = shape.patches_per_image, .patches = patches };
 *     CHECK(neco_extract_image(model, img, &ep, &out));
 *     free(patches);
 *     neco_image_free(img);
 *     neco_model_free(model);
 *
 * Error model
 *   Every fallible function returns a neco_status: NECO_OK (0) or a negative code. On failure
 *   neco_last_error() gives a one-line English message naming the function and the problem
 *   ("neco_model_load: foo.safetensors: no such file or directory"). The message is per thread
 *   and stays valid until the next neco_* call on the same thread; do not free it. A successful
 *   fallible call sets it to "". Getters that cannot fail on a valid handle (neco_model_embed_dim,
 *   neco_image_width, ...) return 0 (or NULL) for a NULL handle and set the message.
 *   NECO_ERR_INTERNAL is reserved for bugs in libneco; everything a caller can cause (arguments,
 *   files, data, a diverging run) has its own status.
 *   libneco never calls exit() or abort() and never lets a Swift trap reach the caller: every
 *   pointer, size and enum is checked first, and sizes are overflow-checked and capped, so bad
 *   arguments give NECO_ERR_INVALID_ARG / NECO_ERR_SHAPE / NECO_ERR_OOM rather than a crash.
 *   Large buffers are sized before they are allocated and probed, so an allocation the process
 *   cannot get (an RLIMIT_AS limit, an overcommit refusal) is NECO_ERR_OOM, not an abort; a
 *   computation also needs room for OpenBLAS's own buffers (160 MiB of address space per
 *   thread) before it starts. (A pointer that is not NULL but points at too little memory cannot
 *   be detected: the capacities you pass are trusted.)
 *   Messages are one line: control characters and bytes that are not UTF-8 appear escaped (a
 *   newline as the two characters \n, a byte 0xff as \xff).
 *
 * Files
 *   Paths are passed to the system byte for byte: they need not be UTF-8. Only regular files are
 *   read (a FIFO, a device or a folder is refused with NECO_ERR_IO at once instead of blocking).
 *   Files are written atomically (a temporary "<path>.tmp-<pid>" in the same folder, fsync,
 *   rename); temporaries that killed processes left behind are removed by the next checkpoint
 *   save to the same path and when a run starts in its folder.
 *
 * Ownership
 *   - Handles (neco_model, neco_image, neco_index) are created through an out-parameter and each
 *     creating function names its release function. neco_*_free(NULL) is a no-op. On failure the
 *     out-parameter is set to NULL.
 *   - Bulk outputs go into caller-owned buffers with an explicit capacity, counted in elements
 *     (floats, int64_t, ...), never in bytes. Size-query functions (neco_extract_shape_rgb,
 *     neco_extract_shape_nchw) say how much room a call needs. On failure the contents of output
 *     buffers are unspecified.
 *   - Strings and pointers returned by the library are borrowed: never free them. Each function
 *     says how long its result lives; in short:
 *       neco_version, neco_status_str         static: valid for the life of the process
 *       neco_last_error                       until the next neco_* call on the same thread
 *       neco_default_model_path               until the next neco_default_model_path call on
 *                                             the same thread
 *       neco_model_name                       until neco_model_free of that model
 *       neco_image_data                       until neco_image_free of that image
 *       the text passed to a log callback     during the callback only
 *     Copy a string (strdup, std::string) to keep it longer.
 *   - Inputs are copied; no call keeps a pointer to caller memory after it returns.
 *
 * Thread safety
 *   - A neco_model is immutable after loading: any number of threads may extract with one model
 *     at the same time (results are bit-identical to single-threaded calls).
 *   - A neco_image is immutable: share it freely.
 *   - A neco_index may be searched from several threads at once, but neco_index_add must not run
 *     concurrently with any other call on the same index.
 *   - neco_log_set and neco_set_n_threads change process-global state and are not thread-safe:
 *     call them before starting threads that use libneco.
 *   - Each calling thread multiplies the work: N caller threads x neco_get_n_threads() workers.
 *     With many caller threads, consider neco_set_n_threads(1).
 *
 * Layouts
 *   Images are RGB8 (H, W, 3) row-major without row padding, or ImageNet-normalised float
 *   (N, 3, H, W) as in PyTorch. Features are row-major float: patches (N, h*w, D) with patches in
 *   raster order (row by row), CLS (N, D), registers (N, R, D).
 *
 * Callbacks
 *   A callback (neco_log_callback, neco_train_callback) runs on the thread that made the neco_*
 *   call that triggers it (for logging: any thread that calls libneco). It must return normally:
 *   a C++ exception or a longjmp must never cross it (catch everything inside; neco.hpp's
 *   wrappers do). Callbacks may call the neco_* functions that only read (getters,
 *   neco_last_error, neco_status_str), but not neco_log_set, neco_set_n_threads, nor any function
 *   on the handle whose call is running the callback. Boolean callbacks return true to continue
 *   and false to stop.
 *
 * Versioning and ABI evolution
 *   NECO_VERSION_MAJOR/MINOR/PATCH give the header's version; the library's is neco_version().
 *   The soname is libneco.so.<MAJOR>: within a major version the ABI only grows. Check
 *   neco_api_version() == NECO_API_VERSION at startup. Enums are append-only; values are never
 *   renumbered. Every params struct starts with `size_t struct_size`, which its
 *   neco_*_default_params() fills with sizeof the struct as this header declares it; new fields
 *   are only ever appended. Always start from the defaults function, then set fields:
 *       neco_extract_params ep = neco_extract_default_params();
 *       ep.l2_normalize = true;
 *   A newer library reads an older caller's smaller struct (struct_size ending at one of its
 *   fields) and uses defaults for the fields beyond; a struct_size larger than the library knows
 *   (a newer header than the library), 0, or one that does not end at a field boundary is refused
 *   with NECO_ERR_VERSION before anything else is read. Renamed functions stay as deprecated
 *   aliases (NECO_DEPRECATED) until the next major version.
 */
#ifndef NECO_H
#define NECO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define NECO_NODISCARD __attribute__((warn_unused_result))
#else
#define NECO_NODISCARD
#endif

/* NECO_API marks the functions libneco.so exports (default visibility, also when the caller
 * compiles with -fvisibility=hidden); the library's version script (neco.map) lists the same set. */
#ifndef NECO_API
#if defined(__GNUC__) || defined(__clang__)
#define NECO_API __attribute__((visibility("default")))
#else
#define NECO_API
#endif
#endif

/* NECO_DEPRECATED("use neco_x instead") marks a function kept for compatibility. */
#if defined(__GNUC__) || defined(__clang__)
#define NECO_DEPRECATED(msg) __attribute__((deprecated(msg)))
#elif defined(_MSC_VER)
#define NECO_DEPRECATED(msg) __declspec(deprecated(msg))
#else
#define NECO_DEPRECATED(msg)
#endif

/* Version --------------------------------------------------------------------------------- */

/* The library version: the one place it is written (CMakeLists.txt reads its project version,
 * the soname libneco.so.<MAJOR> and the file name libneco.so.<MAJOR>.<MINOR>.<PATCH> from here). */
#define NECO_VERSION_MAJOR 0
#define NECO_VERSION_MINOR 1
#define NECO_VERSION_PATCH 0

#define NECO_API_VERSION 1

/* NECO_API_VERSION of the loaded library. */
NECO_API int32_t neco_api_version(void);

/* "<MAJOR>.<MINOR>.<PATCH>+<git sha>", e.g. "0.1.0+1a2b3c4", the NECO_VERSION_* macros of the
 * header the library was built with. Static string: valid for the life of the process; do not free. */
NECO_API const char * neco_version(void);

/* Errors ---------------------------------------------------------------------------------- */

typedef enum neco_status {
    NECO_OK = 0,
    NECO_ERR_INVALID_ARG = -1, /* a NULL pointer, a size or enum value out of range */
    NECO_ERR_IO = -2,          /* a file could not be opened or read */
    NECO_ERR_FORMAT = -3,      /* a file is corrupt, truncated or of the wrong kind */
    NECO_ERR_SHAPE = -4,       /* sizes do not fit together (input size, capacity, k, dims) */
    NECO_ERR_OOM = -5,         /* an allocation failed or a size is beyond the limits */
    NECO_ERR_ABORTED = -6,     /* a callback asked to stop */
    NECO_ERR_INTERNAL = -7,    /* a bug in libneco; please report it */
    NECO_ERR_DIVERGED = -8,    /* training diverged: the loss or a gradient is not finite (no
                                  weight changed; lower the learning rate or load a checkpoint) */
    NECO_ERR_DATA = -9,        /* unusable training data: no images, or fewer readable images
                                  than a batch needs */
    NECO_ERR_VERSION = -10,    /* a params struct's struct_size is 0, garbage, or from a newer
                                  header than this library */
    NECO_ERR_DISTRIBUTED = -11 /* under MPI: the ranks disagree (config, weights, data) or one
                                  stopped answering within NECO_MPI_TIMEOUT */
    /* append new codes here; never renumber */
} neco_status;

/* Short English name of a status ("ok", "invalid argument", ...). Static; never NULL. */
NECO_API const char * neco_status_str(neco_status status);

/* Detail message of the last failed call on this thread; "" if it succeeded. Never NULL.
 * Valid until the next neco_* call on this thread; do not free. */
NECO_API const char * neco_last_error(void);

/* Logging --------------------------------------------------------------------------------- */

typedef enum neco_log_level {
    NECO_LOG_DEBUG = 0, /* every failed call, with its message */
    NECO_LOG_INFO = 1,  /* model loaded, ... */
    NECO_LOG_WARN = 2,
    NECO_LOG_ERROR = 3
} neco_log_level;

/* `text` is one line without a trailing newline, valid only during the call. Called on the
 * thread whose neco_* call logs, possibly several threads at once: make it thread-safe. It may
 * not call neco_log_set or neco_set_n_threads. No exception or longjmp may leave it. */
typedef void (*neco_log_callback)(neco_log_level level, const char * text, void * user_data);

/* Routes all log messages to `callback` (which receives every level). NULL restores the default:
 * messages of level NECO_LOG_WARN and above go to stderr. Process-global; not thread-safe. */
NECO_API void neco_log_set(neco_log_callback callback, void * user_data);

/* Threads --------------------------------------------------------------------------------- */

/* Worker threads for GEMMs and kernels (OpenBLAS and libneco's own loops). 1...256, or 0 for
 * the number of processors. Process-global; not thread-safe. */
NECO_API NECO_NODISCARD neco_status neco_set_n_threads(int32_t n_threads);

/* The current worker thread count. */
NECO_API int32_t neco_get_n_threads(void);

/* Where `scripts/setup.sh` puts the default model (DINOv2 ViT-S/14 fine-tuned with NeCo):
 * $NECO_MODEL if set, else $NECO_CACHE/models/dinov2_vits14_imgfocus.safetensors with $NECO_CACHE
 * defaulting to $HOME/.cache/neco. The file need not exist (neco_model_load then fails with
 * NECO_ERR_IO). Never NULL. Lives in a per-thread buffer: valid until the next
 * neco_default_model_path call on the same thread; do not free. */
NECO_API const char * neco_default_model_path(void);

/* Model ----------------------------------------------------------------------------------- */

/* Opaque. Immutable after loading; may be shared across threads. */
typedef struct neco_model neco_model;

/* How the learned position table is resampled to another patch grid. */
typedef enum neco_pos_rule {
    NECO_POS_RULE_AUTO = 0,     /* what the checkpoint's own implementation does */
    NECO_POS_RULE_NECO = 1,     /* NeCo / DINOv2 hub (scale factor (g + 0.1) / G, bicubic) */
    NECO_POS_RULE_BICUBIC = 2,  /* output-size bicubic without antialias (Hugging Face) */
    NECO_POS_RULE_ANTIALIAS = 3 /* output-size bicubic with antialias (timm, DINOv2 *_reg) */
} neco_pos_rule;

typedef struct neco_model_params {
    size_t struct_size;       /* sizeof(neco_model_params) as the caller's header declares it; set by
                                 neco_model_default_params() */
    int32_t n_heads;           /* attention heads; 0 = embed dim / 64 (all DINO/DINOv2 models). Default 0 */
    int32_t n_registers;       /* register tokens: -1 = as stored in the weights, 0 = drop stored
                                  registers (NeCo "XR"), otherwise must equal the stored count. Default -1 */
    int32_t pos_rule;          /* a neco_pos_rule. Default NECO_POS_RULE_AUTO */
    int32_t image_height;      /* model input height in pixels used when neco_extract_params leave
                                  the size 0; a multiple of the patch size. Default 224 */
    int32_t image_width;       /* as image_height. Default 224 */
    const char * expect_arch;  /* NULL, or a preset the weights must match ("vits14", "vitb14",
                                  "vitl14", "vitg14", "vits16", "vitb16", "dinov3_vits16",
                                  "dinov3_vits16plus", "dinov3_vitb16", "dinov3_vitl16",
                                  "dinov3_vith16plus"). Default NULL */
} neco_model_params;

NECO_API neco_model_params neco_model_default_params(void);

/* Loads a safetensors checkpoint (Meta, timm or Hugging Face key names; F32/F16/BF16), a libneco
 * training checkpoint (its student) or a NeCo run folder (its checkpoint.safetensors), as
 * `neco --model` does.
 * `params` NULL = defaults. On success *out_model must be freed with neco_model_free.
 * Errors: INVALID_ARG (NULL path or out_model, bad params), IO (cannot read), FORMAT (not a
 * safetensors ViT checkpoint, truncated, non-finite weights), SHAPE (weights do not fit the
 * params), OOM. */
NECO_API NECO_NODISCARD neco_status neco_model_load(const char * path, const neco_model_params * params,
                                           neco_model ** out_model);

/* Releases a model. NULL is a no-op. No call may use the model concurrently or afterwards. */
NECO_API void neco_model_free(neco_model * model);

/* Architecture getters; 0 (or NULL) for a NULL model. */
NECO_API int32_t neco_model_embed_dim(const neco_model * model);    /* D */
NECO_API int32_t neco_model_patch_size(const neco_model * model);   /* P, pixels */
NECO_API int32_t neco_model_n_layers(const neco_model * model);     /* transformer blocks */
NECO_API int32_t neco_model_n_heads(const neco_model * model);
NECO_API int32_t neco_model_n_registers(const neco_model * model);  /* R */
NECO_API int64_t neco_model_n_params(const neco_model * model);
NECO_API int32_t neco_model_image_height(const neco_model * model); /* default input size (params) */
NECO_API int32_t neco_model_image_width(const neco_model * model);
/* Architecture name ("dinov2_vits14", ...). Valid until neco_model_free; do not free. */
NECO_API const char * neco_model_name(const neco_model * model);

/* How positions enter the model. DINOv3 checkpoints (Meta, timm vit_*_patch16_dinov3 and
 * Hugging Face DINOv3ViTModel keys) load with neco_model_load like any other; their patch size
 * is 16 (neco_model_patch_size) and they have 4 registers. */
typedef enum neco_family {
    NECO_FAMILY_DINOV2 = 1, /* DINO v1 / DINOv2: a learned position table */
    NECO_FAMILY_DINOV3 = 2  /* DINOv3: axial RoPE on the patch tokens' queries and keys */
} neco_family;

/* A neco_family; 0 for a NULL model. */
NECO_API int32_t neco_model_family(const neco_model * model);

/* Inference workspace. A model keeps the working memory of its last calls (at most 64 MiB; a
 * batch-8 ViT-S/14 extraction at 224x224 keeps 30 MiB), so that repeated calls allocate nothing
 * and the process's peak memory does not depend on how malloc places freed blocks.
 * neco_model_workspace_bytes says how much is kept now (0 for a NULL model);
 * neco_model_release_workspaces frees it (the next call allocates again; NULL is a no-op). Both
 * may run while other threads extract with the same model: a running call keeps its own. */
NECO_API int64_t neco_model_workspace_bytes(const neco_model * model);
NECO_API void neco_model_release_workspaces(neco_model * model);

/* Images ---------------------------------------------------------------------------------- */

/* Opaque decoded picture, RGB8 (H, W, 3). Immutable; may be shared across threads. */
typedef struct neco_image neco_image;

/* Decodes a JPEG or PNG file (like Pillow's Image.open(path).convert("RGB"); no EXIF rotation).
 * `path` is passed to the system byte for byte (it need not be UTF-8); it must name a regular
 * file: a FIFO, device or folder is refused at once (IO) rather than waited on.
 * On success *out_image must be freed with neco_image_free.
 * Errors: INVALID_ARG (NULL pointers; a picture beyond the pixel cap of
 * neco_image_set_max_pixels or 65535 pixels a side, told from the header before any decoding),
 * IO (cannot read, not a regular file), FORMAT (not a JPEG/PNG, corrupt, truncated unless
 * neco_image_set_load_truncated), OOM (the pixels cannot be allocated). */
NECO_API NECO_NODISCARD neco_status neco_image_load(const char * path, neco_image ** out_image);

/* As neco_image_load, from `n_bytes` bytes of an encoded file in memory (copied; at most 2 GiB).
 * On success *out_image must be freed with neco_image_free. */
NECO_API NECO_NODISCARD neco_status neco_image_decode(const void * data, size_t n_bytes, neco_image ** out_image);

/* Releases an image. NULL is a no-op. */
NECO_API void neco_image_free(neco_image * image);

/* Decoding limits, process-global like Pillow's Image.MAX_IMAGE_PIXELS and
 * ImageFile.LOAD_TRUNCATED_IMAGES; they apply to neco_image_load, neco_image_decode and the
 * images a trainer reads from a folder (an image beyond the cap is skipped and counted there).
 * Not thread-safe: set them before starting threads that decode. */

/* The largest picture decoded, in pixels (width x height): 1...2^28, or 0 for the default,
 * 89478485 (Pillow's MAX_IMAGE_PIXELS, about 9459 x 9459). A larger picture is refused from its
 * header with NECO_ERR_INVALID_ARG, before any allocation: a small file that claims a huge
 * picture (a "decompression bomb") costs nothing. Errors: INVALID_ARG (out of range). */
NECO_API NECO_NODISCARD neco_status neco_image_set_max_pixels(int64_t max_pixels);

/* The current pixel cap. */
NECO_API int64_t neco_image_get_max_pixels(void);

/* false (the default): a file that ends early is NECO_ERR_FORMAT, as in Pillow. true: it decodes,
 * the missing rows grey (JPEG, libjpeg's fill) or black (PNG). */
NECO_API void neco_image_set_load_truncated(bool allow);

/* The current truncation rule. */
NECO_API bool neco_image_get_load_truncated(void);

/* Size in pixels; 0 for a NULL image. */
NECO_API int32_t neco_image_width(const neco_image * image);
NECO_API int32_t neco_image_height(const neco_image * image);

/* The pixels, (height, width, 3) RGB8, row-major, rows not padded (3 * width bytes each).
 * Owned by the image: valid until neco_image_free; do not free. NULL for a NULL image. */
NECO_API const uint8_t * neco_image_data(const neco_image * image);

/* Feature extraction ---------------------------------------------------------------------- */

/* How an RGB picture becomes model input (antialiased bilinear resize as in Pillow, then
 * ImageNet normalisation). Sizes come from neco_extract_params.height / width. */
typedef enum neco_resize_mode {
    NECO_RESIZE_STRETCH = 0, /* resize to exactly height x width, ignoring the aspect ratio */
    NECO_RESIZE_CROP = 1,    /* shorter side to `height`, then the centred height x height square
                                (torchvision Resize + CenterCrop); needs height == width */
    NECO_RESIZE_FIT = 2,     /* keep the aspect ratio: longer side to max(height, width), each side
                                rounded to a multiple of the patch size */
    NECO_RESIZE_NONE = 3     /* no resize: the picture's sides must be multiples of the patch size */
} neco_resize_mode;

typedef struct neco_extract_params {
    size_t struct_size;       /* sizeof(neco_extract_params) as the caller's header declares it; set by
                                 neco_extract_default_params() */
    int32_t resize;       /* a neco_resize_mode; ignored for float (NCHW) input. Default NECO_RESIZE_STRETCH */
    int32_t height;       /* model input height in pixels (see neco_resize_mode); 0 together with
                             width = 0 means the model's image_height / image_width. Default 0 */
    int32_t width;        /* as height. Default 0 */
    int32_t out_height;   /* 0 = one feature per patch (h x w). Otherwise patch features are
                             bilinearly upsampled (half-pixel centres, like PyTorch
                             interpolate(align_corners=False)) to out_height x out_width, e.g. the
                             input or the original picture size; at most 16384 a side and 2^24
                             positions. Default 0 */
    int32_t out_width;    /* as out_height; both 0 or both > 0. Default 0 */
    bool l2_normalize;    /* divide every patch feature by its L2 norm (max(norm, 1e-12)), after
                             any upsampling. CLS and registers are never normalised. Default false */
} neco_extract_params;

NECO_API neco_extract_params neco_extract_default_params(void);

/* What one image produces; filled by the size-query functions below. */
typedef struct neco_feature_shape {
    int32_t input_height;        /* H: model input after resizing, pixels */
    int32_t input_width;         /* W */
    int32_t grid_height;         /* h = H / patch size */
    int32_t grid_width;          /* w = W / patch size */
    int32_t out_height;          /* rows of the patch feature map (= h unless upsampled) */
    int32_t out_width;           /* columns (= w unless upsampled) */
    int32_t dim;                 /* D */
    int32_t n_registers;         /* R */
    int64_t n_patches;           /* out_height * out_width */
    size_t patches_per_image;    /* floats per image in neco_feature_buffers.patches: n_patches * D */
    size_t cls_per_image;        /* D */
    size_t registers_per_image;  /* R * D */
} neco_feature_shape;

/* Caller-owned outputs of an extraction. Any pointer may be NULL to skip that output (at least
 * one must be given). Capacities count floats; each must be >= n_images * <output>_per_image. */
typedef struct neco_feature_buffers {
    size_t patches_capacity;
    size_t cls_capacity;
    size_t registers_capacity;
    float * patches;             /* (N, n_patches, D), or NULL */
    float * cls;                 /* (N, D), or NULL */
    float * registers;           /* (N, R, D), or NULL (nothing is written when R = 0) */
} neco_feature_buffers;

/* Size query for RGB input: the shape produced from a height x width picture with `params`
 * (NULL = defaults). Errors: INVALID_ARG (NULL pointers, sizes < 1, bad params), SHAPE (the model
 * input would not be a multiple of the patch size, or is smaller than a patch or beyond 16384 a
 * side / 65536 patches), OOM (a picture beyond 65535 a side or 2^28 pixels, or a resize that
 * needs a larger intermediate picture). */
NECO_API NECO_NODISCARD neco_status neco_extract_shape_rgb(const neco_model * model, int32_t height, int32_t width,
                                                  const neco_extract_params * params,
                                                  neco_feature_shape * out_shape);

/* Size query for float input of height x width (params->resize is ignored). Errors as above. */
NECO_API NECO_NODISCARD neco_status neco_extract_shape_nchw(const neco_model * model, int32_t height, int32_t width,
                                                   const neco_extract_params * params,
                                                   neco_feature_shape * out_shape);

/* Features of one RGB8 picture (height, width, 3), resized and normalised per `params`
 * (NULL = defaults). Errors: INVALID_ARG, SHAPE (size or capacity), OOM. */
NECO_API NECO_NODISCARD neco_status neco_extract_rgb(const neco_model * model, const uint8_t * rgb,
                                            int32_t height, int32_t width,
                                            const neco_extract_params * params,
                                            const neco_feature_buffers * out);

/* Features of a batch of n_images RGB8 pictures: images[i] is (heights[i], widths[i], 3). All
 * pictures must come out at the same model input size (STRETCH and CROP guarantee it; FIT and
 * NONE only for pictures of the same shape), else NECO_ERR_SHAPE. n_images 1...4096. */
NECO_API NECO_NODISCARD neco_status neco_extract_rgb_batch(const neco_model * model, const uint8_t * const * images,
                                                  const int32_t * heights, const int32_t * widths,
                                                  int32_t n_images, const neco_extract_params * params,
                                                  const neco_feature_buffers * out);

/* Features of a decoded image: neco_extract_rgb on its pixels. */
NECO_API NECO_NODISCARD neco_status neco_extract_image(const neco_model * model, const neco_image * image,
                                              const neco_extract_params * params,
                                              const neco_feature_buffers * out);

/* Features of n_images (1...4096) ImageNet-normalised images, float (N, 3, height, width);
 * height and width must be multiples of the patch size. n_images = 1 for a single image.
 * Input range: every value must be finite and within +-1e6 (normalised pixels lie within about
 * +-3), else NECO_ERR_INVALID_ARG naming the first bad value, checked before the forward (beyond
 * about 1e19 the model's LayerNorm overflows and the features would be garbage). Features that
 * are not all finite are refused too: no extraction returns NaN or infinity with NECO_OK. */
NECO_API NECO_NODISCARD neco_status neco_extract_nchw(const neco_model * model, const float * images,
                                             int32_t n_images, int32_t height, int32_t width,
                                             const neco_extract_params * params,
                                             const neco_feature_buffers * out);

/* Neighbours ------------------------------------------------------------------------------ */

/* Opaque bank of L2-normalised feature rows with an int32 label each, searched exactly by cosine
 * similarity. Searches may run concurrently; neco_index_add needs exclusive access. */
typedef struct neco_index neco_index;

/* An empty index for dim-wide rows (1...65536). Free with neco_index_free. */
NECO_API NECO_NODISCARD neco_status neco_index_init(int32_t dim, neco_index ** out_index);

/* Releases an index. NULL is a no-op. */
NECO_API void neco_index_free(neco_index * index);

/* Appends n_rows rows of `features` (n_rows, dim), copied and L2-normalised, with labels[i] for
 * row i (`labels` NULL = -1 for all). Rows get consecutive numbers from neco_index_size().
 * n_rows = 0 is a no-op. The whole index holds at most 2^32 floats.
 * Errors: INVALID_ARG (NULL pointers, n_rows < 0, NaN or infinite values: nothing is added),
 * OOM. */
NECO_API NECO_NODISCARD neco_status neco_index_add(neco_index * index, const float * features, int64_t n_rows,
                                          const int32_t * labels);

/* Rows in the index; 0 for NULL. */
NECO_API int64_t neco_index_size(const neco_index * index);

/* Row width; 0 for NULL. */
NECO_API int32_t neco_index_dim(const neco_index * index);

/* Saves the index (rows and labels) to `path` in libneco's index file format: a header with a
 * magic number, a format version, the row count and width, then the rows and labels and a
 * 64-bit checksum over everything before it. Written atomically: a failure leaves any previous
 * file at `path` intact. Reads the index only (may run concurrently with searches).
 * Errors: INVALID_ARG (NULL pointers, an empty path, a path that is a folder), IO. */
NECO_API NECO_NODISCARD neco_status neco_index_save(const neco_index * index, const char * path);

/* Loads an index saved by neco_index_save. On success *out_index must be freed with
 * neco_index_free. Errors: INVALID_ARG (NULL pointers), IO (cannot read), FORMAT (not an index
 * file, a format version this library does not read, truncated, a checksum mismatch: the file
 * is corrupt), OOM. */
NECO_API NECO_NODISCARD neco_status neco_index_load(const char * path, neco_index ** out_index);

/* The k most similar rows for each of n_queries query rows (n_queries, dim), best first (ties
 * by lower row number): out_indices (n_queries, k) row numbers, out_similarities (n_queries, k)
 * cosine similarities in [-1, 1], out_labels (n_queries, k) those rows' labels. Any of the three
 * outputs may be NULL (not all); each given one holds `capacity` elements, at least
 * n_queries * k. Errors: INVALID_ARG (NULL pointers, k < 1, n_queries < 0, non-finite queries),
 * SHAPE (k > neco_index_size, capacity too small), OOM. */
NECO_API NECO_NODISCARD neco_status neco_index_search(const neco_index * index, const float * queries, int64_t n_queries,
                                             int32_t k, int64_t * out_indices, float * out_similarities,
                                             int32_t * out_labels, size_t capacity);

/* Patch-to-patch nearest neighbours between two images' features: for each of the n_a rows of
 * `a` (n_a, dim), the k most similar of the n_b rows of `b` (n_b, dim) by cosine similarity
 * (e.g. the patches outputs of two extractions). out_indices / out_similarities (n_a, k), either
 * may be NULL (not both), `capacity` elements each. Errors as neco_index_search. */
NECO_API NECO_NODISCARD neco_status neco_match_patches(const float * a, int64_t n_a, const float * b, int64_t n_b,
                                              int32_t dim, int32_t k, int64_t * out_indices,
                                              float * out_similarities, size_t capacity);

/* Evaluation ------------------------------------------------------------------------------ */

/* In-context prediction (the Hummingbird protocol of NeCo's evaluation): an index whose rows are
 * labelled patch features is the memory; each query patch takes its k most similar rows and
 * they vote for their labels with weights softmax(cosine / temperature). */
typedef struct neco_predict_params {
    size_t struct_size;       /* sizeof(neco_predict_params) as the caller's header declares it; set by
                                 neco_predict_default_params() */
    int32_t k;            /* voting neighbours, 1...neco_index_size (and at most 2^20). Default 30 */
    int32_t n_classes;    /* C, 1...65536: every label that votes must be in 0...C-1. 0 = 1 + the
                             largest label in the index (then every label must be below 65536,
                             else NECO_ERR_INVALID_ARG). Default 0 */
    float temperature;    /* softmax temperature of the vote, > 0. Default 0.02 */
} neco_predict_params;

NECO_API neco_predict_params neco_predict_default_params(void);

/* Class scores and labels for the n_queries rows of `queries` (n_queries, dim), e.g. the patch
 * features of an image, from the labelled rows of `index`:
 *     w_j = softmax_j(cos(q, row_j) / temperature)   over the k nearest rows j
 *     out_scores[q, c] = sum of w_j over the voters with label c   (each score row sums to 1)
 *     out_labels[q] = arg-max_c out_scores[q, c]                   (lowest class on ties)
 * out_scores is (n_queries, C) with C from params (see n_classes), scores_capacity elements;
 * out_labels is (n_queries), labels_capacity elements. Either may be NULL (not both); the
 * capacity of a NULL output is ignored. For pixel labels, reshape out_scores to (h, w, C),
 * upsample bilinearly to the picture and take the arg-max per pixel (docs/EVAL.md). `params`
 * NULL = defaults. Searches only: may run concurrently with other searches of the index.
 * Errors: INVALID_ARG (NULL pointers, params out of range, non-finite queries, an empty index, an
 * index without labels, a voting row without a label (-1) or with a label >= n_classes),
 * SHAPE (k > neco_index_size, a capacity too small), OOM. */
NECO_API NECO_NODISCARD neco_status neco_index_predict(const neco_index * index, const float * queries, int64_t n_queries,
                                              const neco_predict_params * params,
                                              float * out_scores, size_t scores_capacity,
                                              int32_t * out_labels, size_t labels_capacity);

/* The in-context segmentation protocol of `neco eval --bench incontext` (Hummingbird, NECO-SPEC
 * §6.1) on a benchmark folder (BENCH/{train,val}/{images,labels}, as scripts/build_benchmark.py
 * writes): a memory of every training patch with its soft label (Hummingbird's normalisation),
 * k neighbours voting with softmax(cos / temperature), the scores upsampled bilinearly to the
 * input size, arg-max, Hungarian matching, mIoU over the benchmark's classes. The same Swift code
 * as the command line: the same model and params give the same numbers. */
typedef struct neco_eval_params {
    size_t struct_size;       /* sizeof(neco_eval_params) as the caller's header declares it; set by
                                 neco_eval_default_params() */
    int32_t size;             /* square model input side in pixels, a multiple of the patch size.
                                 Default 224 */
    int32_t batch;            /* images per forward pass, 1...256. Default 8 */
    int32_t max_train;        /* use at most this many training images, 0 = all. Default 0 */
    int32_t max_val;          /* use at most this many validation images, 0 = all. Default 0 */
    int32_t k;                /* voting neighbours, >= 1. Default 30 */
    float temperature;        /* softmax temperature, > 0. Default 0.02 */
    int32_t memory_size;      /* memory in patches (each training image keeps memory_size / images
                                 patches, rare classes first), 0 = every patch. Default 0 */
} neco_eval_params;

NECO_API neco_eval_params neco_eval_default_params(void);

typedef struct neco_eval_result {
    double miou;              /* mean IoU over the classes, 0...1 */
    double pixel_accuracy;    /* 0...1 */
    int32_t n_classes;        /* C of the benchmark */
    int64_t memory_patches;   /* rows in the memory */
    int64_t n_train;          /* training and validation images used */
    int64_t n_val;
} neco_eval_result;

/* Runs the protocol with `model` on the benchmark folder `bench_dir`; `params` NULL = defaults.
 * `per_class_iou` may be NULL; otherwise it receives C values (per_class_capacity >= C). Takes
 * seconds to minutes (every picture goes through the model). Logs progress at NECO_LOG_DEBUG.
 * Errors: INVALID_ARG (NULL pointers, params out of range), VERSION (params->struct_size), IO (the
 * folder or a file cannot be read), FORMAT (not a benchmark folder, an unreadable picture or label
 * map), SHAPE (size not a multiple of the patch size, per_class_capacity too small), DATA (no
 * training or validation images), OOM. */
NECO_API NECO_NODISCARD neco_status neco_eval_incontext(const neco_model * model, const char * bench_dir,
                                                        const neco_eval_params * params, neco_eval_result * out_result,
                                                        double * per_class_iou, size_t per_class_capacity);

/* Training -------------------------------------------------------------------------------- */

/* NeCo post-pretraining (Patch Neighbor Consistency): a student ViT (the model's weights, copied)
 * and an EMA teacher see 2 global and 4 local crops of each image; the loss makes the student
 * order its patches' neighbours the way the teacher does (ROI Align on the crop overlaps, cosine
 * similarities to reference patches, a differentiable sorting network, cross-entropy between the
 * soft permutation matrices). Defaults are NeCo's ViT-S/14 settings with CPU-sized crops (224 and
 * 98; the paper uses 518 and 98). A step with the defaults costs about 15-30 s of a 2-core CPU.
 *
 * Determinism: the same model, images, params and thread count give bit-identical losses and
 * weights, also across a checkpoint save and load. */

/* Opaque. Use from one thread at a time; the models it hands out are independent copies. */
typedef struct neco_trainer neco_trainer;

/* Where the reference patches of the loss come from. */
typedef enum neco_train_references {
    NECO_REFERENCES_QUEUE = 0, /* a FIFO of past teacher patches per global crop (NeCo's DINOv2
                                  configs); needs batch_size * roi_size^2 <= queue_length */
    NECO_REFERENCES_BATCH = 1  /* the teacher patches of the current batch; needs batch_size >= 2 */
} neco_train_references;

typedef enum neco_sort_net {
    NECO_SORT_BITONIC = 0,  /* padded to a power of two (NeCo's default) */
    NECO_SORT_ODD_EVEN = 1  /* odd-even transposition */
} neco_sort_net;

/* Relaxation of each comparator (diffsort's distributions). logistic, logistic_phi and gaussian
 * underflow at steepness 100 (P = 0, so ln P = -inf): give them a log_floor such as 1e-30. */
typedef enum neco_relaxation {
    NECO_RELAX_CAUCHY = 0, /* NeCo's default */
    NECO_RELAX_LOGISTIC = 1,
    NECO_RELAX_LOGISTIC_PHI = 2,
    NECO_RELAX_GAUSSIAN = 3,
    NECO_RELAX_RECIPROCAL = 4,
    NECO_RELAX_OPTIMAL = 5
} neco_relaxation;

typedef struct neco_train_params {
    size_t struct_size;       /* sizeof(neco_train_params) as the caller's header declares it; set by
                                 neco_train_default_params() */
    int64_t total_steps;      /* T, 1...2^40: the schedules (cosine lr, weight decay, teacher
                                 momentum) span T steps. Default 100 */
    int32_t batch_size;       /* images per step, 1...4096, at most the number of images. Default 8 */
    int32_t global_size;      /* global crop side, a multiple of the patch size. Default 224 */
    int32_t local_size;       /* local crop side, a multiple of the patch size. Default 98 */
    int32_t n_global_crops;   /* >= 1. Default 2 */
    int32_t n_local_crops;    /* >= 0; 2...64 crops in all. Default 4 */
    int32_t roi_size;         /* ROI Align grid side, 2...32: roi_size^2 queries and references,
                                 sorted by a network of roi_size^2 wires. Default 7 */
    int32_t references;       /* a neco_train_references. Default NECO_REFERENCES_QUEUE */
    int32_t queue_length;     /* rows per queue (queue mode), 1...2^24; all queues together,
                                 n_global_crops * queue_length * head_out_dim, at most 2^28
                                 values (else NECO_ERR_INVALID_ARG). Default 8192 */
    int32_t sort_net;         /* a neco_sort_net. Default NECO_SORT_BITONIC */
    int32_t relaxation;       /* a neco_relaxation. Default NECO_RELAX_CAUCHY */
    double steepness;         /* sorting steepness of the student, > 0. Default 100 */
    double teacher_steepness; /* of the teacher; 0 = the student's. Default 0 */
    double log_floor;         /* floor inside ln P, 0 (none, as NeCo) ... < 1, or -1 = auto: 1e-30
                                 for the relaxations that underflow at steepness 100 (logistic,
                                 logistic_phi, gaussian), 0 for the others (`neco train
                                 --log-floor auto`). Default 0 */
    double lr_backbone;       /* AdamW learning rate of the backbone. Default 1e-5 */
    double lr_head;           /* of the projection head. Default 1e-4 */
    int64_t warmup_steps;     /* linear warm-up steps, 0...T-1 (T: total_steps, or the steps that
                                 epochs gives). Default 0 */
    double drop_path;         /* student stochastic-depth rate, 0 ... < 1. Default 0.1 */
    int32_t train_last_blocks;   /* > 0: only the last N blocks (and the head) train. Default 0 */
    int32_t freeze_first_blocks; /* > 0: the first N blocks and the embeddings are frozen. Default 0
                                    (at most one of the two may be set) */
    double grad_clip;         /* gradient-norm clipping; 0 = none (as NeCo). Default 0 */
    uint64_t seed;            /* crops, image order, heads, stochastic depth, references. Default 0 */
    const char * run_dir;     /* NULL: the trainer writes no file by itself. A folder (created if
                                 needed, must not hold a run yet): neco_trainer_run saves
                                 "checkpoint.safetensors" every checkpoint_every steps, when it
                                 stops and at the end, appends "log.csv", and at the end writes
                                 "student.safetensors" and "teacher.safetensors". Default NULL */
    int32_t checkpoint_every; /* with run_dir: steps between checkpoints, 0 = only on stop and at
                                 the end. Default 50 */
    int32_t head_hidden_dim;  /* projection head D -> hidden -> hidden -> out, 1...65536, the head at
                                 most 2^28 parameters (else NECO_ERR_INVALID_ARG). Default 2048 */
    int32_t head_out_dim;     /* the embedding the loss sees, 1...65536. Default 256 */
    int32_t epochs;           /* > 0: total_steps = epochs x floor(images / batch_size), as `neco
                                 train --epochs` (total_steps is then ignored). Default 0 */
    int64_t head_only_steps;  /* the first N steps train the projection head alone (backbone
                                 learning rate 0), 0...T-1, as `neco train --head-only-steps`.
                                 A struct_size that ends before it (an older header) reads 0. Default 0 */
    int64_t memory_limit_mib; /* > 0: keep the training state (weights, optimizer state and one
                                 step's activations) within this many MiB, 1...2^30, by recomputing
                                 each trained block's feed-forward pre-activation in backward in as
                                 few blocks as that needs (the same numbers, somewhat slower; `neco
                                 train --memory-limit`). A step that cannot fit even with every
                                 block recomputing fails with NECO_ERR_OOM before it allocates.
                                 The process needs somewhat more (code, BLAS buffers, the images).
                                 0 = no limit. A struct_size that ends before it reads 0. Default 0 */
    int32_t recompute_ffn_blocks; /* recompute it in (at least) the lowest N trained blocks,
                                     0...4096; N >= the trained blocks = all of them (`neco train
                                     --recompute-ffn-blocks`). A struct_size that ends before it
                                     reads 0. Default 0 */
} neco_train_params;

NECO_API neco_train_params neco_train_default_params(void);

/* What one step did (filled by neco_trainer_step and passed to the neco_trainer_run callback). */
typedef struct neco_train_progress {
    int64_t step;               /* steps done, 1...total_steps */
    int64_t total_steps;
    int64_t epoch;              /* passes over the images started so far (0-based) */
    float loss;
    double lr_backbone;         /* the values this step used */
    double lr_head;
    double weight_decay;
    double momentum;            /* teacher EMA momentum */
    double grad_norm;           /* before clipping */
    double images_per_second;   /* this step, data included */
    double step_seconds;        /* the phases below, summed */
    double data_seconds;        /* decoding, crops, augmentation */
    double teacher_seconds;     /* teacher forward and head */
    double student_seconds;     /* student forward and head */
    double loss_seconds;        /* NeCo objective: ROI Align, sorting, cross-entropy, forward and backward */
    double backward_seconds;    /* backbone and head backward */
    double optimizer_seconds;   /* EMA and AdamW */
    double eta_seconds;         /* projected time to total_steps */
    int64_t skipped_images;     /* unreadable images skipped so far (each one also logged as a warning) */
} neco_train_progress;

/* Called after every step of neco_trainer_run, on the thread that called neco_trainer_run;
 * return true to continue, false to stop the run there (as llama.h's progress callback). It may
 * read `progress` (valid during the call only) and call getters such as
 * neco_trainer_step_count, but no other function on the running trainer. No exception or
 * longjmp may leave it (neco.hpp's trampoline catches them). */
typedef bool (*neco_train_callback)(const neco_train_progress * progress, void * user_data);

/* A trainer over the JPEG/PNG files under `folder` (recursive). The model's weights are copied:
 * `model` is not changed and may be freed afterwards. `params` NULL = defaults. Free with
 * neco_trainer_free.
 * Under an MPI launcher (mpirun, srun; set NECO_MPI=0 to opt out) the trainer is one rank of a
 * data-parallel run: call it with the same arguments on every rank; batch_size is the global
 * batch (each rank steps on batch_size / ranks images), rank 0 alone writes run_dir, and
 * neco_trainer_run follows rank 0's callback and returns on every rank once rank 0's files are
 * written. A failure on one rank fails every rank with that rank's status ("rank r of N failed:"
 * in the message); settings or weights that differ between ranks, or a rank that stops answering
 * within NECO_MPI_TIMEOUT, give NECO_ERR_DISTRIBUTED (docs/DISTRIBUTED.md). Errors: INVALID_ARG (NULL pointers, params out of range, crop sizes that are
 * not multiples of the patch size, a batch too small for the reference mode, a run_dir that
 * already holds a run), VERSION (params->struct_size), DATA (a folder without images, fewer
 * images than a batch), IO (the folder cannot be read, run_dir cannot be created), OOM. Unreadable images are skipped during training, with a warning. */
NECO_API NECO_NODISCARD neco_status neco_trainer_init_folder(const neco_model * model, const char * folder,
                                                    const neco_train_params * params,
                                                    neco_trainer ** out_trainer);

/* A trainer over n_images (1...1000000) caller-supplied RGB8 pictures, images[i] of
 * (heights[i], widths[i], 3); the pixels are copied. Otherwise as neco_trainer_init_folder. */
NECO_API NECO_NODISCARD neco_status neco_trainer_init_images(const neco_model * model, const uint8_t * const * images,
                                                    const int32_t * heights, const int32_t * widths,
                                                    int32_t n_images, const neco_train_params * params,
                                                    neco_trainer ** out_trainer);

/* Releases a trainer. NULL is a no-op. */
NECO_API void neco_trainer_free(neco_trainer * trainer);

/* One training step on the next batch; `out_progress` may be NULL. Errors: INVALID_ARG (NULL
 * trainer, the run is finished), DATA (fewer than batch_size readable images), DIVERGED (the
 * loss or a gradient is not finite: no weight changed, a checkpoint in run_dir stays as it was;
 * load a checkpoint to continue, e.g. with a lower learning rate). */
NECO_API NECO_NODISCARD neco_status neco_trainer_step(neco_trainer * trainer, neco_train_progress * out_progress);

/* Runs n_steps more steps (0 = up to total_steps), calling `callback` (may be NULL) after each.
 * With a run_dir it saves checkpoints as described there. Returns NECO_ERR_ABORTED when the
 * callback returned false (after saving a checkpoint with a run_dir), otherwise as
 * neco_trainer_step. */
NECO_API NECO_NODISCARD neco_status neco_trainer_run(neco_trainer * trainer, int64_t n_steps,
                                            neco_train_callback callback, void * user_data);

/* Steps done so far (0 for NULL). */
NECO_API int64_t neco_trainer_step_count(const neco_trainer * trainer);

/* Saves the complete state (student, teacher, heads, AdamW moments, schedules, random streams,
 * data position, reference queues, params) to `path`, a safetensors file written atomically: a
 * failure leaves any previous file at `path` intact. Its student loads with neco_model_load.
 * Errors: INVALID_ARG, IO. */
NECO_API NECO_NODISCARD neco_status neco_trainer_save_checkpoint(neco_trainer * trainer, const char * path);

/* Loads a checkpoint saved by a trainer built with the same params and the same number of images,
 * so that training continues exactly where it was saved. Everything is checked before anything
 * changes: the tensors, the checksum (which covers the metadata too) and every metadata value
 * against its meaning (the step within total_steps, the optimiser step at most the step, the data
 * position within the images, valid random states); on any error the trainer is unchanged.
 * Errors: INVALID_ARG (NULL pointers, a checkpoint of other params, naming them, or of another
 * image count), IO (cannot read, not a regular file), FORMAT (not a checkpoint, corrupt,
 * truncated, edited, values out of range). */
NECO_API NECO_NODISCARD neco_status neco_trainer_load_checkpoint(neco_trainer * trainer, const char * path);

/* The current student (or, with `teacher`, the EMA teacher) backbone as a new model, an
 * independent copy with the input size of the model the trainer was built from. Free it with
 * neco_model_free. Errors: INVALID_ARG, OOM. */
NECO_API NECO_NODISCARD neco_status neco_trainer_get_model(const neco_trainer * trainer, bool teacher,
                                                  neco_model ** out_model);

/* Export ---------------------------------------------------------------------------------- */

/* ONNX export of a loaded model's encoder: ONNX IR 8 / opset 17, written through Debian's libonnx.
 * The graph has one input, "pixel_values" float (N, 3, H, W), ImageNet-normalised as for
 * neco_extract_nchw, with N dynamic. Its outputs are "patch_tokens" (N, h*w, D) after the final
 * LayerNorm, "cls_token" (N, D) and, when R > 0, "register_tokens" (N, R, D): the numbers of
 * neco_extract_nchw without L2 normalisation or upsampling. The position table is resampled with
 * the model's pos_rule. Initializers carry the canonical (Meta DINOv2) key names of the
 * checkpoint, and the metadata records the architecture, patch size, normalisation constants and
 * position rule.
 * A neco_model holds the backbone only; neco_export_params.head_path adds a checkpoint's projection
 * head as the "projection" output (as `neco export --head FILE` does). */

/* Spatial size of the exported input. */
typedef enum neco_export_size {
    NECO_EXPORT_SIZE_DYNAMIC = 0, /* H and W symbolic: any multiples of the patch size at run time;
                                     the graph resamples the position table itself */
    NECO_EXPORT_SIZE_FIXED = 1    /* H and W fixed to neco_export_params.height x width */
} neco_export_size;

/* Where the weights go. */
typedef enum neco_external_data {
    NECO_EXTERNAL_DATA_AUTO = 0,   /* inside the .onnx file, unless they exceed 1.8 GB (only
                                      ViT-g/14): then as with NECO_EXTERNAL_DATA_ALWAYS */
    NECO_EXTERNAL_DATA_ALWAYS = 1, /* in "<path>.data" next to the .onnx file, e.g.
                                      "model.onnx.data" (ONNX external data, 4096-byte aligned) */
    NECO_EXTERNAL_DATA_NEVER = 2   /* inside the .onnx file; NECO_ERR_OOM beyond protobuf's 2 GiB */
} neco_external_data;

typedef struct neco_export_params {
    size_t struct_size;       /* sizeof(neco_export_params) as the caller's header declares it; set by
                                 neco_export_default_params() */
    int32_t input_size;    /* a neco_export_size. Default NECO_EXPORT_SIZE_DYNAMIC */
    int32_t height;        /* NECO_EXPORT_SIZE_FIXED only: input height in pixels, a multiple of the
                              patch size, 1...16384 (and at most 65536 patches in all); 0 together
                              with width = 0 means the model's image_height x image_width. Must be 0
                              with NECO_EXPORT_SIZE_DYNAMIC. Default 0 */
    int32_t width;         /* as height. Default 0 */
    int32_t external_data; /* a neco_external_data. Default NECO_EXTERNAL_DATA_AUTO */
    const char * head_path; /* NULL, or a safetensors file holding a projection head
                               (projection_head.{0,2,4}.{weight,bias}: a checkpoint or student file
                               of a NeCo run, or a NeCo release): the graph then gets a fourth output
                               "projection" (N, h*w, F), the head applied to every patch token.
                               The head's input width must be the model's D. Default NULL */
} neco_export_params;

NECO_API neco_export_params neco_export_default_params(void);

/* Writes the encoder of `model` to `path` as an ONNX file (e.g. "dinov2_vits14.onnx"); `params`
 * NULL = defaults (dynamic size, weights inside the file). The graph is checked with
 * onnx::checker and strict shape inference, then written to a temporary file next to `path`,
 * fsynced and renamed: an existing file at `path` is replaced only by a complete export, and a
 * failed export leaves no new or partial file at `path` (nor at "<path>.data"). Reads the model
 * only: other threads may extract with it meanwhile. ViT-S/14 takes about 0.5 s and 88 MB.
 * Errors: INVALID_ARG (NULL model or path, an empty path or one over 4096 bytes, a path that is a
 * directory, params out of range: bad enums, negative sizes or sides over 16384, only one of
 * height / width 0, a size with NECO_EXPORT_SIZE_DYNAMIC), VERSION (params->struct_size), SHAPE (a
 * side not a multiple of the patch size, more than 65536 patches, a head of another width), FORMAT
 * (head_path holds no projection head), IO (the folder does not exist or takes no new file, a
 * write failed), OOM (weights over 2 GiB with NECO_EXTERNAL_DATA_NEVER), INTERNAL (libonnx
 * rejected the graph: a libneco bug). */
NECO_API NECO_NODISCARD neco_status neco_export_onnx(const neco_model * model, const char * path,
                                            const neco_export_params * params);

#ifdef __cplusplus
}
#endif

#endif /* NECO_H */
