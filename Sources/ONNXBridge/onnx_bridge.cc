// ONNXBridge implementation: libonnx 1.12 behind the plain-C API of include/onnx_bridge.h.
// Every extern "C" function body runs inside guard(), which turns every C++ exception into an error
// code and a message; nothing is ever thrown across the C boundary.
#include "onnx_bridge.h"

#include <onnx/checker.h>
#include <onnx/defs/schema.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include <google/protobuf/io/zero_copy_stream_impl.h>
#include <google/protobuf/stubs/common.h>

#include <atomic>
#include <new>
#include <stdexcept>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <new>
#include <sstream>
#include <stdexcept>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace {

struct External {
  const void *data;
  size_t nbytes;
  uint64_t offset;
};

struct BridgeError : std::runtime_error {
  int code;
  BridgeError(int c, const std::string &m) : std::runtime_error(m), code(c) {}
};

[[noreturn]] void fail(int code, const std::string &msg) { throw BridgeError(code, msg); }

std::string errno_text() { return std::strerror(errno); }

void copy_err(const std::string &msg, char *err, size_t n) {
  if (err && n) {
    std::strncpy(err, msg.c_str(), n - 1);
    err[n - 1] = 0;
  }
}

const uint64_t kAlign = 4096;

}  // namespace

struct onnxb_model {
  onnx::ModelProto proto;
  std::string error;
  std::vector<External> externals;
  std::string external_location;
  uint64_t external_size = 0;
};

namespace {

// Runs body; maps exceptions to codes. `m` may be NULL (then the message goes to err/err_len).
template <class F>
int guard(onnxb_model *m, F &&body, char *err = nullptr, size_t err_len = 0) {
  std::string msg;
  int code;
  try {
    if (m) m->error.clear();
    return body();
  } catch (const BridgeError &e) {
    msg = e.what();
    code = e.code;
  } catch (const onnx::checker::ValidationError &e) {
    msg = e.what();
    code = ONNXB_ERR_CHECK;
  } catch (const onnx::InferenceError &e) {
    msg = e.what();
    code = ONNXB_ERR_CHECK;
  } catch (const std::bad_alloc &) {
    msg = "out of memory";
    code = ONNXB_ERR_OOM;
  } catch (const std::length_error &e) {
    msg = std::string("out of memory: ") + e.what();
    code = ONNXB_ERR_OOM;
  } catch (const std::exception &e) {
    msg = e.what();
    code = ONNXB_ERR_INTERNAL;
  } catch (...) {
    msg = "unknown C++ exception";
    code = ONNXB_ERR_INTERNAL;
  }
  try {
    if (m) m->error = msg;
  } catch (...) {
  }
  copy_err(msg, err, err_len);
  return code;
}

void need(bool ok, const char *what) {
  if (!ok) fail(ONNXB_ERR_ARG, what);
}

void fill_value_info(onnx::ValueInfoProto *vi, const char *name, int32_t et, int32_t rank, const int64_t *dims,
                     const char *const *dp, const char *doc) {
  need(name && *name, "value info needs a name");
  need(rank >= 0 && (rank == 0 || dims), "bad rank or dims");
  vi->set_name(name);
  if (doc) vi->set_doc_string(doc);
  auto *tt = vi->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(et);
  auto *sh = tt->mutable_shape();
  for (int32_t i = 0; i < rank; ++i) {
    auto *d = sh->add_dim();
    if (dims[i] < 0)
      d->set_dim_param(dp && dp[i] ? dp[i] : "?");
    else
      d->set_dim_value(dims[i]);
  }
}

size_t element_size(int32_t et) {
  switch (et) {
    case ONNXB_FLOAT: return 4;
    case ONNXB_INT64: return 8;
    case ONNXB_BOOL: return 1;
    default: fail(ONNXB_ERR_ARG, "unsupported element type " + std::to_string(et));
  }
}

// Fills name, type and dims; checks that nbytes matches.
void fill_tensor(onnx::TensorProto *t, const char *name, int32_t et, int32_t rank, const int64_t *dims,
                 size_t nbytes) {
  need(rank >= 0 && (rank == 0 || dims), "bad rank or dims");
  if (name) t->set_name(name);
  t->set_data_type(et);
  size_t count = 1;
  for (int32_t i = 0; i < rank; ++i) {
    need(dims[i] >= 0, "negative tensor dimension");
    t->add_dims(dims[i]);
    count *= static_cast<size_t>(dims[i]);
  }
  if (count * element_size(et) != nbytes)
    fail(ONNXB_ERR_ARG, std::string("tensor ") + (name ? name : "") + ": " + std::to_string(nbytes) +
                            " bytes do not match its dims (" + std::to_string(count) + " elements)");
}

onnx::AttributeProto *new_attr(onnxb_model *m, int32_t node, const char *name) {
  need(name && *name, "attribute needs a name");
  if (node < 0 || node >= m->proto.graph().node_size()) fail(ONNXB_ERR_ARG, "no node " + std::to_string(node));
  auto *a = m->proto.mutable_graph()->mutable_node(node)->add_attribute();
  a->set_name(name);
  return a;
}

void strict_infer(onnx::ModelProto &model) {
  onnx::ShapeInferenceOptions opts(/*check_type*/ true, /*error_mode strict*/ 1, /*data_prop*/ true);
  onnx::shape_inference::InferShapes(model, onnx::OpSchemaRegistry::Instance(), opts);
}

std::string folder_of(const std::string &path) {
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Creates `tmp`, lets `write` fill the descriptor, fsyncs and closes. Removes tmp on failure.
template <class W>
void write_file(const std::string &tmp, const std::string &shown, W &&write) {
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(ONNXB_ERR_IO, shown + ": cannot create: " + errno_text());
  try {
    write(fd);
    if (::fsync(fd) != 0) fail(ONNXB_ERR_IO, shown + ": fsync failed: " + errno_text());
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    std::string reason = errno_text();
    ::unlink(tmp.c_str());
    fail(ONNXB_ERR_IO, shown + ": close failed: " + reason);
  }
}

void write_all(int fd, const void *data, size_t n, const std::string &shown) {
  const char *p = static_cast<const char *>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n > (1u << 30) ? (1u << 30) : n);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail(ONNXB_ERR_IO, shown + ": write failed: " + errno_text());
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

// --- JSON description -------------------------------------------------------------------------

void json_string(std::ostringstream &o, const std::string &s) {
  o << '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': o << "\\\""; break;
      case '\\': o << "\\\\"; break;
      case '\n': o << "\\n"; break;
      case '\r': o << "\\r"; break;
      case '\t': o << "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          o << buf;
        } else {
          o << c;
        }
    }
  }
  o << '"';
}

void json_value_info(std::ostringstream &o, const onnx::ValueInfoProto &vi) {
  o << "{\"name\":";
  json_string(o, vi.name());
  const auto &tt = vi.type().tensor_type();
  o << ",\"elem_type\":" << tt.elem_type() << ",\"dims\":[";
  for (int i = 0; i < tt.shape().dim_size(); ++i) {
    if (i) o << ',';
    const auto &d = tt.shape().dim(i);
    if (d.has_dim_value())
      o << d.dim_value();
    else
      json_string(o, d.dim_param());
  }
  o << "]}";
}

std::string describe(const onnx::ModelProto &m) {
  std::ostringstream o;
  o << "{\"ir_version\":" << m.ir_version() << ",\"producer_name\":";
  json_string(o, m.producer_name());
  o << ",\"producer_version\":";
  json_string(o, m.producer_version());
  o << ",\"doc_string\":";
  json_string(o, m.doc_string());
  o << ",\"graph_name\":";
  json_string(o, m.graph().name());
  o << ",\"graph_doc_string\":";
  json_string(o, m.graph().doc_string());
  o << ",\"opset_import\":[";
  for (int i = 0; i < m.opset_import_size(); ++i) {
    if (i) o << ',';
    o << "{\"domain\":";
    json_string(o, m.opset_import(i).domain());
    o << ",\"version\":" << m.opset_import(i).version() << '}';
  }
  o << "],\"metadata\":[";
  for (int i = 0; i < m.metadata_props_size(); ++i) {
    if (i) o << ',';
    o << "{\"key\":";
    json_string(o, m.metadata_props(i).key());
    o << ",\"value\":";
    json_string(o, m.metadata_props(i).value());
    o << '}';
  }
  const auto &g = m.graph();
  o << "],\"inputs\":[";
  for (int i = 0; i < g.input_size(); ++i) {
    if (i) o << ',';
    json_value_info(o, g.input(i));
  }
  o << "],\"outputs\":[";
  for (int i = 0; i < g.output_size(); ++i) {
    if (i) o << ',';
    json_value_info(o, g.output(i));
  }
  o << "],\"initializers\":[";
  for (int i = 0; i < g.initializer_size(); ++i) {
    const auto &t = g.initializer(i);
    if (i) o << ',';
    o << "{\"name\":";
    json_string(o, t.name());
    o << ",\"data_type\":" << t.data_type() << ",\"dims\":[";
    for (int k = 0; k < t.dims_size(); ++k) o << (k ? "," : "") << t.dims(k);
    o << "],\"external\":" << (t.data_location() == onnx::TensorProto::EXTERNAL ? "true" : "false");
    o << ",\"raw_bytes\":" << t.raw_data().size() << '}';
  }
  o << "],\"nodes\":[";
  for (int i = 0; i < g.node_size(); ++i) {
    if (i) o << ',';
    o << "{\"op_type\":";
    json_string(o, g.node(i).op_type());
    o << ",\"name\":";
    json_string(o, g.node(i).name());
    o << '}';
  }
  o << "]}";
  return o.str();
}

void load_file(const char *path, onnx::ModelProto &m) {
  need(path && *path, "no path");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ONNXB_ERR_IO, std::string(path) + ": cannot open: " + errno_text());
  if (!m.ParseFromIstream(&in)) fail(ONNXB_ERR_CHECK, std::string(path) + ": not a valid ONNX ModelProto");
}

}  // namespace

extern "C" {

onnxb_model *onnxb_model_create(const char *graph_name, int64_t ir_version, int64_t opset) {
  try {
    auto *m = new onnxb_model();
    m->proto.set_ir_version(ir_version);
    auto *op = m->proto.add_opset_import();
    op->set_domain("");
    op->set_version(opset);
    m->proto.mutable_graph()->set_name(graph_name ? graph_name : "graph");
    return m;
  } catch (...) {
    return nullptr;
  }
}

void onnxb_model_free(onnxb_model *m) { delete m; }

const char *onnxb_last_error(const onnxb_model *m) { return m ? m->error.c_str() : "no model"; }

int onnxb_set_producer(onnxb_model *m, const char *name, const char *version) {
  if (!m) return ONNXB_ERR_ARG;
  return guard(m, [&] {
    if (name) m->proto.set_producer_name(name);
    if (version) m->proto.set_producer_version(version);
    return 0;
  });
}

int onnxb_set_doc_strings(onnxb_model *m, const char *model_doc, const char *graph_doc) {
  if (!m) return ONNXB_ERR_ARG;
  return guard(m, [&] {
    if (model_doc) m->proto.set_doc_string(model_doc);
    if (graph_doc) m->proto.mutable_graph()->set_doc_string(graph_doc);
    return 0;
  });
}

int onnxb_add_metadata(onnxb_model *m, const char *key, const char *value) {
  if (!m) return ONNXB_ERR_ARG;
  return guard(m, [&] {
    need(key && *key && value, "metadata needs a key and a value");
    auto *p = m->proto.add_metadata_props();
    p->set_key(key);
    p->set_value(value);
    return 0;
  });
}

int onnxb_add_input(onnxb_model *m, const char *name, int32_t et, int32_t rank, const int64_t *dims,
                    const char *const *dp, const char *doc) {
  if (!m) return ONNXB_ERR_ARG;
  return guard(m, [&] {
    fill_value_info(m->proto.mutable_graph()->add_input(), name, et, rank, dims, dp, doc);
    return 0;
  });
}

int onnxb_add_output(onnxb_model *m, const char *name, int32_t et, int32_t rank, const int64_t *dims,
                     const char *const *dp, const char *doc) {
  if (!m) return ONNXB_ERR_ARG;
  return guard(m, [&] {
    fill_value_info(m->proto.mutable_graph()->add_output(), name, et, rank, dims, dp, doc);
    return 0;
  });
}

int onnxb_add_initializer(onnxb_model *m, const char *name, int32_t et, int32_t rank, const int64_t *dims,
                          const void *data, size_t nbytes) {
  if (!m) return ONNXB_ERR_ARG;
  return guard(m, [&] {
    need(name && *name, "initializer needs a name");
    need(data || nbytes == 0, "initializer data is NULL");
    auto *t = m->proto.mutable_graph()->add_initializer();
    fill_tensor(t, name, et, rank, dims, nbytes);
    t->set_raw_data(static_cast<const char *>(data), nbytes);
    return 0;
  });
}

int onnxb_add_external_initializer(onnxb_model *m, const char *name, int32_t et, int32_t rank,
                                   const int64_t *dims, const void *data, size_t nbytes, const char *location) {
  if (!m) return ONNXB_ERR_ARG;
  return guard(m, [&] {
    need(name && *name, "initializer needs a name");
    need(data || nbytes == 0, "initializer data is NULL");
    need(location && *location && !std::strchr(location, '/'), "external data location must be a plain file name");
    if (m->external_location.empty()) m->external_location = location;
    need(m->external_location == location, "all external initializers must share one data file");
    auto *t = m->proto.mutable_graph()->add_initializer();
    fill_tensor(t, name, et, rank, dims, nbytes);
    uint64_t offset = (m->external_size + kAlign - 1) / kAlign * kAlign;
    t->set_data_location(onnx::TensorProto::EXTERNAL);
    auto add = [&](const char *k, const std::string &v) {
      auto *e = t->add_external_data();
      e->set_key(k);
      e->set_value(v);
    };
    add("location", location);
    add("offset", std::to_string(offset));
    add("length", std::to_string(nbytes));
    m->externals.push_back({data, nbytes, offset});
    m->external_size = offset + nbytes;
    return 0;
  });
}

int onnxb_add_node(onnxb_model *m, const char *op_type, const char *node_name, int32_t ni, const char *const *in,
                   int32_t no, const char *const *out) {
  if (!m) return ONNXB_ERR_ARG;
  return guard(m, [&] {
    need(op_type && *op_type, "node needs an op type");
    need(ni >= 0 && no >= 1 && (ni == 0 || in) && out, "bad node inputs or outputs");
    auto *g = m->proto.mutable_graph();
    auto *n = g->add_node();
    n->set_op_type(op_type);
    if (node_name) n->set_name(node_name);
    for (int32_t i = 0; i < ni; ++i) n->add_input(in[i] ? in[i] : "");
    for (int32_t i = 0; i < no; ++i) {
      need(out[i] && *out[i], "node output needs a name");
      n->add_output(out[i]);
    }
    return g->node_size() - 1;
  });
}

int onnxb_node_attr_int(onnxb_model *m, int32_t node, const char *name, int64_t v) {
  if (!m) return ONNXB_ERR_ARG;
  return guard(m, [&] {
    auto *a = new_attr(m, node, name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
    return 0;
  });
}

int onnxb_node_attr_float(onnxb_model *m, int32_t node, const char *name, float v) {
  if (!m) return ONNXB_ERR_ARG;
  return guard(m, [&] {
    auto *a = new_attr(m, node, name);
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(v);
    return 0;
  });
}

int onnxb_node_attr_ints(onnxb_model *m, int32_t node, const char *name, int32_t n, const int64_t *v) {
  if (!m) return ONNXB_ERR_ARG;
  return guard(m, [&] {
    need(n >= 0 && (n == 0 || v), "bad ints attribute");
    auto *a = new_attr(m, node, name);
    a->set_type(onnx::AttributeProto::INTS);
    for (int32_t i = 0; i < n; ++i) a->add_ints(v[i]);
    return 0;
  });
}

int onnxb_node_attr_string(onnxb_model *m, int32_t node, const char *name, const char *v) {
  if (!m) return ONNXB_ERR_ARG;
  return guard(m, [&] {
    need(v != nullptr, "string attribute is NULL");
    auto *a = new_attr(m, node, name);
    a->set_type(onnx::AttributeProto::STRING);
    a->set_s(v);
    return 0;
  });
}

int onnxb_node_attr_tensor(onnxb_model *m, int32_t node, const char *name, int32_t et, int32_t rank,
                           const int64_t *dims, const void *data, size_t nbytes) {
  if (!m) return ONNXB_ERR_ARG;
  return guard(m, [&] {
    need(data || nbytes == 0, "tensor attribute data is NULL");
    auto *a = new_attr(m, node, name);
    a->set_type(onnx::AttributeProto::TENSOR);
    auto *t = a->mutable_t();
    fill_tensor(t, nullptr, et, rank, dims, nbytes);
    t->set_raw_data(static_cast<const char *>(data), nbytes);
    return 0;
  });
}

int onnxb_check(onnxb_model *m) {
  if (!m) return ONNXB_ERR_ARG;
  return guard(m, [&] {
    if (!m->externals.empty()) {
      // The checker looks for external data files relative to the working directory when given
      // a ModelProto, and the data file does not exist yet. Check a structural copy in which the
      // external initializers are graph inputs of the same type and shape instead (that is how
      // shape inference sees them anyway); onnxb_save checks the written file once more.
      onnx::ModelProto copy = m->proto;
      auto *g = copy.mutable_graph();
      google::protobuf::RepeatedPtrField<onnx::TensorProto> kept;
      for (const auto &t : g->initializer()) {
        if (t.data_location() != onnx::TensorProto::EXTERNAL) {
          *kept.Add() = t;
          continue;
        }
        auto *vi = g->add_input();
        vi->set_name(t.name());
        auto *tt = vi->mutable_type()->mutable_tensor_type();
        tt->set_elem_type(t.data_type());
        auto *sh = tt->mutable_shape();
        for (auto dim : t.dims()) sh->add_dim()->set_dim_value(dim);
      }
      g->mutable_initializer()->Swap(&kept);
      onnx::checker::check_model(copy);
      strict_infer(copy);
      return 0;
    }
    onnx::checker::check_model(m->proto);
    // Inference adds value_info in place; drop it again so the saved graph is exactly what was built.
    try {
      strict_infer(m->proto);
    } catch (...) {
      m->proto.mutable_graph()->clear_value_info();
      throw;
    }
    m->proto.mutable_graph()->clear_value_info();
    return 0;
  });
}

int64_t onnxb_byte_size(onnxb_model *m) {
  if (!m) return ONNXB_ERR_ARG;
  try {
    return static_cast<int64_t>(m->proto.ByteSizeLong());
  } catch (...) {
    return ONNXB_ERR_INTERNAL;
  }
}

int onnxb_save(onnxb_model *m, const char *path) {
  if (!m) return ONNXB_ERR_ARG;
  std::string data_tmp, data_final, model_tmp;
  bool data_renamed = false;
  int rc = guard(m, [&] {
    need(path && *path, "no output path");
    const std::string target(path);
    size_t size = m->proto.ByteSizeLong();
    if (size > static_cast<size_t>(INT32_MAX))
      fail(ONNXB_ERR_SIZE, target + ": the model is " + std::to_string(size) +
                               " bytes, over protobuf's 2 GiB limit: store the weights as external data");
    static std::atomic<unsigned> serial{0};
    const std::string suffix = ".tmp-" + std::to_string(static_cast<long>(::getpid())) + "-" + std::to_string(serial++);
    if (!m->externals.empty()) {
      data_final = folder_of(target) + "/" + m->external_location;
      data_tmp = data_final + suffix;
      write_file(data_tmp, data_final, [&](int fd) {
        static const char zeros[kAlign] = {0};
        uint64_t at = 0;
        for (const auto &e : m->externals) {
          if (e.offset > at) write_all(fd, zeros, static_cast<size_t>(e.offset - at), data_final);
          write_all(fd, e.data, e.nbytes, data_final);
          at = e.offset + e.nbytes;
        }
      });
    }
    model_tmp = target + suffix;
    write_file(model_tmp, target, [&](int fd) {
      // 1 MiB blocks instead of protobuf's default 8 KiB: far fewer write calls for large models.
      google::protobuf::io::FileOutputStream stream(fd, 1 << 20);
      if (!m->proto.SerializeToZeroCopyStream(&stream) || !stream.Flush())
        fail(ONNXB_ERR_IO, target + ": write failed: " + std::strerror(stream.GetErrno()));
    });
    if (!data_tmp.empty()) {
      if (::rename(data_tmp.c_str(), data_final.c_str()) != 0)
        fail(ONNXB_ERR_IO, data_final + ": rename failed: " + errno_text());
      data_renamed = true;
      // Now that the data file has its final name, check the written model with it (the
      // checker resolves `location` relative to the model file's folder).
      try {
        onnx::checker::check_model(model_tmp);
      } catch (const onnx::checker::ValidationError &e) {
        fail(ONNXB_ERR_CHECK, std::string("the written model with external data failed the checker: ") + e.what());
      }
    }
    if (::rename(model_tmp.c_str(), target.c_str()) != 0) fail(ONNXB_ERR_IO, target + ": rename failed: " + errno_text());
    model_tmp.clear();
    data_tmp.clear();
    return 0;
  });
  if (rc != 0) {
    if (!model_tmp.empty()) ::unlink(model_tmp.c_str());
    if (!data_tmp.empty()) ::unlink((data_renamed ? data_final : data_tmp).c_str());
  }
  return rc;
}

int onnxb_describe_file(const char *path, char **out_json, char *err, size_t err_len) {
  return guard(
      nullptr,
      [&] {
        need(out_json != nullptr, "out_json is NULL");
        *out_json = nullptr;
        onnx::ModelProto m;
        load_file(path, m);
        std::string s = describe(m);
        char *buf = static_cast<char *>(std::malloc(s.size() + 1));
        if (!buf) throw std::bad_alloc();
        std::memcpy(buf, s.c_str(), s.size() + 1);
        *out_json = buf;
        return 0;
      },
      err, err_len);
}

int onnxb_check_file(const char *path, char *err, size_t err_len) {
  return guard(
      nullptr,
      [&] {
        need(path && *path, "no path");
        onnx::checker::check_model(std::string(path));
        onnx::ModelProto m;
        load_file(path, m);
        strict_infer(m);
        return 0;
      },
      err, err_len);
}

void onnxb_string_free(char *s) { std::free(s); }

const char *onnxb_library_version(void) {
  static const std::string v = "onnx 1.12 (IR <= 8, opset <= 17), protobuf " +
                               google::protobuf::internal::VersionString(GOOGLE_PROTOBUF_VERSION);
  return v.c_str();
}

}  // extern "C"
