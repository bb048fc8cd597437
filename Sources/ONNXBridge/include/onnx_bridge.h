/* ONNXBridge: a plain-C view of Debian's libonnx 1.12 (protobuf 3.21) for Swift.
 *
 * Swift cannot use the ONNX C++ headers directly (C++ interop crashes on the protobuf types, and the
 * checker throws C++ exceptions), so this small C API builds, checks, saves and reads back
 * `onnx::ModelProto`s. Every function catches every C++ exception: none ever reaches the caller.
 *
 * Errors: functions that take an `onnxb_model *` return 0 on success and a negative code on failure;
 * `onnxb_last_error(m)` then holds the message (valid until the next call on `m`). The two functions
 * without a model (`onnxb_describe_file`, `onnxb_check_file`) write the message into `err`.
 *
 * Ownership: `onnxb_model_create` → `onnxb_model_free` (free of NULL is a no-op). Strings returned
 * through `char **` are malloc'ed: release them with `onnxb_string_free`. Data passed to
 * `onnxb_add_initializer` is copied; data passed to `onnxb_add_external_initializer` is only
 * referenced and must stay valid until `onnxb_save` returns (or the model is freed).
 *
 * Threads: a model must be used from one thread at a time; different models are independent.
 */
#ifndef NECO_ONNX_BRIDGE_H
#define NECO_ONNX_BRIDGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct onnxb_model onnxb_model;

/* TensorProto.DataType values used by the exporter. */
enum { ONNXB_FLOAT = 1, ONNXB_INT64 = 7, ONNXB_BOOL = 9 };

/* Error codes. */
enum {
    ONNXB_OK = 0,
    ONNXB_ERR_ARG = -1,     /* bad argument (NULL pointer, negative rank, unknown node index) */
    ONNXB_ERR_CHECK = -2,   /* onnx::checker or strict shape inference rejected the model */
    ONNXB_ERR_IO = -3,      /* a file could not be created, written, synced or renamed */
    ONNXB_ERR_SIZE = -4,    /* the serialized model would exceed protobuf's 2 GiB limit */
    ONNXB_ERR_INTERNAL = -5, /* any other C++ exception */
    ONNXB_ERR_OOM = -6      /* an allocation failed (std::bad_alloc, std::length_error) */
};

/* A new empty model: IR version, one opset import for the default domain, graph name.
 * Returns NULL only when memory runs out. Free with onnxb_model_free. */
onnxb_model *onnxb_model_create(const char *graph_name, int64_t ir_version, int64_t opset);
void onnxb_model_free(onnxb_model *m);
const char *onnxb_last_error(const onnxb_model *m);

/* Model-level fields. */
int onnxb_set_producer(onnxb_model *m, const char *name, const char *version);
int onnxb_set_doc_strings(onnxb_model *m, const char *model_doc, const char *graph_doc);
int onnxb_add_metadata(onnxb_model *m, const char *key, const char *value);

/* Graph inputs and outputs. dims[i] < 0 makes dimension i symbolic, named dim_params[i]. */
int onnxb_add_input(onnxb_model *m, const char *name, int32_t elem_type, int32_t rank,
                    const int64_t *dims, const char *const *dim_params, const char *doc);
int onnxb_add_output(onnxb_model *m, const char *name, int32_t elem_type, int32_t rank,
                     const int64_t *dims, const char *const *dim_params, const char *doc);

/* An initializer whose bytes (nbytes, little-endian) are copied into the model as raw_data. */
int onnxb_add_initializer(onnxb_model *m, const char *name, int32_t elem_type, int32_t rank,
                          const int64_t *dims, const void *data, size_t nbytes);
/* An initializer stored in the external data file `location` (a file name relative to the model's
 * folder). The bytes are written by onnxb_save at a 4096-aligned offset; `data` must stay valid. */
int onnxb_add_external_initializer(onnxb_model *m, const char *name, int32_t elem_type, int32_t rank,
                                   const int64_t *dims, const void *data, size_t nbytes,
                                   const char *location);

/* A node; "" in inputs means an omitted optional input. Returns the node index (≥ 0) or an error. */
int onnxb_add_node(onnxb_model *m, const char *op_type, const char *node_name, int32_t n_inputs,
                   const char *const *inputs, int32_t n_outputs, const char *const *outputs);
int onnxb_node_attr_int(onnxb_model *m, int32_t node, const char *name, int64_t v);
int onnxb_node_attr_float(onnxb_model *m, int32_t node, const char *name, float v);
int onnxb_node_attr_ints(onnxb_model *m, int32_t node, const char *name, int32_t n, const int64_t *v);
int onnxb_node_attr_string(onnxb_model *m, int32_t node, const char *name, const char *v);
/* A TENSOR attribute (the `value` of a Constant node); the bytes are copied. */
int onnxb_node_attr_tensor(onnxb_model *m, int32_t node, const char *name, int32_t elem_type, int32_t rank,
                           const int64_t *dims, const void *data, size_t nbytes);

/* onnx::checker::check_model, then strict shape inference (type checks on, errors thrown). The
 * inferred value_info is removed again, so the saved graph holds only what was built. */
int onnxb_check(onnxb_model *m);

/* Serialized size in bytes of the model file (external data not included). */
int64_t onnxb_byte_size(onnxb_model *m);

/* Writes the model atomically: external data (if any) and the model each go to a temporary file
 * in the target folder, are fsync'ed, then renamed into place. On failure nothing is left at
 * `path` or at the external data path, and the temporary files are removed. */
int onnxb_save(onnxb_model *m, const char *path);

/* Reads a model file and describes it as JSON (ir_version, producer, doc strings, opset imports,
 * metadata, inputs/outputs with dims, initializers with dims and storage, node op types and
 * names). The tensor bytes are not read. On success *out_json is malloc'ed (free with
 * onnxb_string_free). Returns 0 or a negative code with the reason in err. */
int onnxb_describe_file(const char *path, char **out_json, char *err, size_t err_len);

/* onnx::checker::check_model(path) (external data files must exist next to the model) and strict
 * shape inference on the loaded model. */
int onnxb_check_file(const char *path, char *err, size_t err_len);

void onnxb_string_free(char *s);

/* "onnx 1.12.0" as compiled against, plus the protobuf version. */
const char *onnxb_library_version(void);

#ifdef __cplusplus
}
#endif

#endif /* NECO_ONNX_BRIDGE_H */
