// neco.hpp: header-only C++17 wrapper of the libneco C API (neco.h). Link with -lneco as for C.
//
//     neco::model model = neco::model::load(neco::default_model_path());
//     neco::image img = neco::image::load("cat.png");
//     neco_extract_params ep = neco_extract_default_params();
//     ep.l2_normalize = true;
//     neco_feature_shape shape = model.shape_rgb(img.height(), img.width(), ep);
//     std::vector<float> patches(shape.patches_per_image);                         // (h*w, D)
//     model.extract(img, ep, neco::feature_views{patches});
//
// - Handles are owned by std::unique_ptr with a deleter that calls the matching neco_*_free;
//   the classes are movable, not copyable. `get()` gives the C handle for calls not wrapped here.
// - A failed call throws neco::error, which carries the neco_status and the library's one-line
//   message (copied at once, so it outlives the next neco_* call).
// - Caller buffers are passed as neco::view<T> (a pointer + element count, like C++20's
//   std::span), made from a std::vector, a C array, or a pointer and a size.
// - neco::trainer::run takes any callable bool(const neco_train_progress &): return true to
//   continue, false to stop. The trampoline catches every exception inside the callback (it
//   stops the run and is rethrown from run() once libneco has returned), and a stop that the
//   callback asked for is a success: run() returns false instead of throwing NECO_ERR_ABORTED.
//
// Thread safety and lifetimes are those of neco.h: a neco::model may be shared by threads that
// extract; a neco::index may be searched concurrently; a neco::trainer is used by one thread.
#ifndef NECO_HPP
#define NECO_HPP

#include <neco.h>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace neco {

// ---- errors -----------------------------------------------------------------------------------

/// A failed neco_* call: its status and message ("neco_model_load: x.safetensors: no such file").
class error : public std::runtime_error {
public:
    error(neco_status status, const std::string & message) : std::runtime_error(message), status_(status) {}
    neco_status status() const noexcept { return status_; }

private:
    neco_status status_;
};

/// Throws neco::error with the calling thread's neco_last_error() unless `status` is NECO_OK.
inline void check(neco_status status) {
    if (status != NECO_OK) {
        const char * message = neco_last_error();  // valid until the next neco_* call: copied here
        throw error(status, std::string(message != nullptr && *message != '\0' ? message : neco_status_str(status)));
    }
}

// ---- versions and paths -----------------------------------------------------------------------

/// The loaded library's version, "<major>.<minor>.<patch>+<git sha>".
inline std::string version() { return neco_version(); }

/// True when the loaded library implements this header's API (neco_api_version()).
inline bool api_compatible() noexcept { return neco_api_version() == NECO_API_VERSION; }

/// Where the setup script puts the default model (a copy of the per-thread C string).
inline std::string default_model_path() { return neco_default_model_path(); }

// ---- process-wide settings (not thread-safe: set them before other calls) ---------------------

/// Worker threads for GEMMs and kernels: 1...256, or 0 for the number of processors.
inline void set_threads(std::int32_t n) { check(neco_set_n_threads(n)); }
inline std::int32_t threads() noexcept { return neco_get_n_threads(); }

/// The largest picture the decoder accepts, in pixels (see neco_image_set_max_pixels).
inline void set_max_image_pixels(std::int64_t max_pixels) { check(neco_image_set_max_pixels(max_pixels)); }
inline std::int64_t max_image_pixels() noexcept { return neco_image_get_max_pixels(); }
/// Whether JPEG/PNG files that end early decode (missing rows grey or black) instead of failing.
inline void set_load_truncated_images(bool allow) noexcept { neco_image_set_load_truncated(allow); }
inline bool load_truncated_images() noexcept { return neco_image_get_load_truncated(); }

/// Routes libneco's log lines to `sink(level, text)` (every level); an empty function restores
/// the default (warnings and errors to stderr). `sink` must be thread-safe; an exception it
/// throws is swallowed (it may not cross into the library).
inline void set_log(std::function<void(neco_log_level, const std::string &)> sink) {
    static std::function<void(neco_log_level, const std::string &)> current;
    current = std::move(sink);
    if (!current) {
        neco_log_set(nullptr, nullptr);
        return;
    }
    neco_log_set([](neco_log_level level, const char * text, void *) noexcept {
        try {
            current(level, text != nullptr ? std::string(text) : std::string());
        } catch (...) {
        }
    }, nullptr);
}

// ---- views over caller buffers -----------------------------------------------------------------

/// A non-owning pointer + element count over a caller's buffer.
template <class T>
class view {
public:
    constexpr view() noexcept = default;
    constexpr view(T * data, std::size_t size) noexcept : data_(data), size_(size) {}
    template <std::size_t N>
    constexpr view(T (&array)[N]) noexcept : data_(array), size_(N) {}
    template <class U, class A>
    view(std::vector<U, A> & v) noexcept : data_(v.data()), size_(v.size()) {}
    template <class U, class A>
    view(const std::vector<U, A> & v) noexcept : data_(v.data()), size_(v.size()) {}

    constexpr T * data() const noexcept { return data_; }
    constexpr std::size_t size() const noexcept { return size_; }
    constexpr bool empty() const noexcept { return size_ == 0; }
    constexpr T * begin() const noexcept { return data_; }
    constexpr T * end() const noexcept { return data_ + size_; }
    constexpr T & operator[](std::size_t i) const noexcept { return data_[i]; }
    /// Elements [offset, offset + count).
    view subview(std::size_t offset, std::size_t count) const {
        if (offset > size_ || count > size_ - offset) throw std::out_of_range("neco::view::subview");
        return view(data_ + offset, count);
    }

private:
    T * data_ = nullptr;
    std::size_t size_ = 0;
};

/// The outputs of an extraction; an empty view skips that output (at least one must be given).
struct feature_views {
    view<float> patches;    // (N, n_patches, D)
    view<float> cls;        // (N, D)
    view<float> registers;  // (N, R, D)

    neco_feature_buffers buffers() const noexcept {
        neco_feature_buffers b{};
        b.patches = patches.data();
        b.patches_capacity = patches.size();
        b.cls = cls.data();
        b.cls_capacity = cls.size();
        b.registers = registers.data();
        b.registers_capacity = registers.size();
        return b;
    }
};

// ---- handles ----------------------------------------------------------------------------------

struct model_deleter {
    void operator()(neco_model * p) const noexcept { neco_model_free(p); }
};
struct image_deleter {
    void operator()(neco_image * p) const noexcept { neco_image_free(p); }
};
struct index_deleter {
    void operator()(neco_index * p) const noexcept { neco_index_free(p); }
};
struct trainer_deleter {
    void operator()(neco_trainer * p) const noexcept { neco_trainer_free(p); }
};
using model_ptr = std::unique_ptr<neco_model, model_deleter>;
using image_ptr = std::unique_ptr<neco_image, image_deleter>;
using index_ptr = std::unique_ptr<neco_index, index_deleter>;
using trainer_ptr = std::unique_ptr<neco_trainer, trainer_deleter>;

/// A decoded RGB8 picture (neco_image).
class image {
public:
    explicit image(image_ptr p) noexcept : p_(std::move(p)) {}
    static image load(const std::string & path) {
        neco_image * p = nullptr;
        check(neco_image_load(path.c_str(), &p));
        return image(image_ptr(p));
    }
    static image decode(view<const std::uint8_t> encoded) {
        neco_image * p = nullptr;
        check(neco_image_decode(encoded.data(), encoded.size(), &p));
        return image(image_ptr(p));
    }
    const neco_image * get() const noexcept { return p_.get(); }
    std::int32_t width() const noexcept { return neco_image_width(get()); }
    std::int32_t height() const noexcept { return neco_image_height(get()); }
    /// (height, width, 3) pixels, owned by the image.
    view<const std::uint8_t> pixels() const noexcept {
        return view<const std::uint8_t>(neco_image_data(get()), std::size_t(width()) * std::size_t(height()) * 3);
    }

private:
    image_ptr p_;
};

/// A loaded ViT (neco_model). Immutable; share it across threads by reference.
class model {
public:
    explicit model(model_ptr p) noexcept : p_(std::move(p)) {}
    static model load(const std::string & path, const neco_model_params & params = neco_model_default_params()) {
        neco_model * p = nullptr;
        check(neco_model_load(path.c_str(), &params, &p));
        return model(model_ptr(p));
    }
    const neco_model * get() const noexcept { return p_.get(); }

    std::int32_t embed_dim() const noexcept { return neco_model_embed_dim(get()); }
    std::int32_t patch_size() const noexcept { return neco_model_patch_size(get()); }
    std::int32_t n_layers() const noexcept { return neco_model_n_layers(get()); }
    std::int32_t n_heads() const noexcept { return neco_model_n_heads(get()); }
    std::int32_t n_registers() const noexcept { return neco_model_n_registers(get()); }
    std::int64_t n_params() const noexcept { return neco_model_n_params(get()); }
    /// The default input size (neco_model_params.image_height / width at load).
    std::int32_t image_height() const noexcept { return neco_model_image_height(get()); }
    std::int32_t image_width() const noexcept { return neco_model_image_width(get()); }
    std::string name() const { return neco_model_name(get()); }  // copied: outlives the model
    neco_family family() const noexcept { return static_cast<neco_family>(neco_model_family(get())); }
    /// Working memory kept between calls (neco_model_workspace_bytes), and freeing it now.
    std::int64_t workspace_bytes() const noexcept { return neco_model_workspace_bytes(get()); }
    void release_workspaces() noexcept { neco_model_release_workspaces(p_.get()); }

    neco_feature_shape shape_rgb(std::int32_t height, std::int32_t width,
                                 const neco_extract_params & params = neco_extract_default_params()) const {
        neco_feature_shape s{};
        check(neco_extract_shape_rgb(get(), height, width, &params, &s));
        return s;
    }
    neco_feature_shape shape_nchw(std::int32_t height, std::int32_t width,
                                  const neco_extract_params & params = neco_extract_default_params()) const {
        neco_feature_shape s{};
        check(neco_extract_shape_nchw(get(), height, width, &params, &s));
        return s;
    }
    void extract(const image & img, const neco_extract_params & params, const feature_views & out) const {
        const neco_feature_buffers b = out.buffers();
        check(neco_extract_image(get(), img.get(), &params, &b));
    }
    void extract_rgb(view<const std::uint8_t> rgb, std::int32_t height, std::int32_t width,
                     const neco_extract_params & params, const feature_views & out) const {
        if (rgb.size() < std::size_t(height > 0 ? height : 0) * std::size_t(width > 0 ? width : 0) * 3)
            throw error(NECO_ERR_SHAPE, "neco::model::extract_rgb: the pixel view holds fewer than height * width * 3 bytes");
        const neco_feature_buffers b = out.buffers();
        check(neco_extract_rgb(get(), rgb.data(), height, width, &params, &b));
    }
    /// A batch of pictures that come out at one model input size (see neco_extract_rgb_batch).
    void extract_batch(const std::vector<const image *> & images, const neco_extract_params & params,
                       const feature_views & out) const {
        std::vector<const std::uint8_t *> pixels;
        std::vector<std::int32_t> heights, widths;
        for (const image * i : images) {
            pixels.push_back(i != nullptr ? neco_image_data(i->get()) : nullptr);
            heights.push_back(i != nullptr ? i->height() : 0);
            widths.push_back(i != nullptr ? i->width() : 0);
        }
        const neco_feature_buffers b = out.buffers();
        check(neco_extract_rgb_batch(get(), pixels.data(), heights.data(), widths.data(),
                                     std::int32_t(images.size()), &params, &b));
    }
    void extract_nchw(view<const float> images, std::int32_t n_images, std::int32_t height, std::int32_t width,
                      const neco_extract_params & params, const feature_views & out) const {
        const neco_feature_buffers b = out.buffers();
        check(neco_extract_nchw(get(), images.data(), n_images, height, width, &params, &b));
    }
    /// ONNX export of the encoder (see neco_export_onnx).
    void export_onnx(const std::string & path, const neco_export_params & params = neco_export_default_params()) const {
        check(neco_export_onnx(get(), path.c_str(), &params));
    }

private:
    model_ptr p_;
};

/// The k nearest rows of each query, best first: (n_queries, k) each.
struct neighbours {
    std::int32_t k = 0;
    std::vector<std::int64_t> indices;
    std::vector<float> similarities;
    std::vector<std::int32_t> labels;
};

/// An exact cosine-similarity patch index (neco_index).
class index {
public:
    explicit index(index_ptr p) noexcept : p_(std::move(p)) {}
    explicit index(std::int32_t dim) {
        neco_index * p = nullptr;
        check(neco_index_init(dim, &p));
        p_.reset(p);
    }
    static index load(const std::string & path) {
        neco_index * p = nullptr;
        check(neco_index_load(path.c_str(), &p));
        return index(index_ptr(p));
    }
    void save(const std::string & path) const { check(neco_index_save(get(), path.c_str())); }
    const neco_index * get() const noexcept { return p_.get(); }
    neco_index * get() noexcept { return p_.get(); }
    std::int64_t size() const noexcept { return neco_index_size(get()); }
    std::int32_t dim() const noexcept { return neco_index_dim(get()); }

    /// Appends rows (n, dim) with one label per row (an empty `labels` gives -1 to all).
    void add(view<const float> rows, view<const std::int32_t> labels = {}) {
        const std::int64_t n = rows_of(rows);
        if (!labels.empty() && std::int64_t(labels.size()) != n)
            throw error(NECO_ERR_SHAPE, "neco::index::add: one label per row");
        check(neco_index_add(get(), rows.data(), n, labels.empty() ? nullptr : labels.data()));
    }
    neighbours search(view<const float> queries, std::int32_t k) const {
        const std::int64_t n = rows_of(queries);
        neighbours r;
        r.k = k;
        const std::size_t cap = std::size_t(n) * std::size_t(k > 0 ? k : 0);
        r.indices.resize(cap);
        r.similarities.resize(cap);
        r.labels.resize(cap);
        check(neco_index_search(get(), queries.data(), n, k, r.indices.data(), r.similarities.data(), r.labels.data(), cap));
        return r;
    }
    /// In-context prediction: class scores (n_queries, C) and labels (n_queries), C = `n_classes`
    /// (must be > 0 here so that the buffers can be sized).
    void predict(view<const float> queries, const neco_predict_params & params, view<float> scores,
                 view<std::int32_t> labels) const {
        check(neco_index_predict(get(), queries.data(), rows_of(queries), &params, scores.data(), scores.size(),
                                 labels.data(), labels.size()));
    }

private:
    std::int64_t rows_of(view<const float> rows) const {
        const std::int32_t d = dim();
        if (d <= 0 || rows.size() % std::size_t(d) != 0)
            throw error(NECO_ERR_SHAPE, "neco::index: a row view whose size is not a multiple of dim");
        return std::int64_t(rows.size() / std::size_t(d));
    }
    index_ptr p_;
};

/// NeCo post-pretraining (neco_trainer). One thread at a time.
class trainer {
public:
    explicit trainer(trainer_ptr p) noexcept : p_(std::move(p)) {}
    static trainer from_folder(const model & m, const std::string & folder,
                               const neco_train_params & params = neco_train_default_params()) {
        neco_trainer * p = nullptr;
        check(neco_trainer_init_folder(m.get(), folder.c_str(), &params, &p));
        return trainer(trainer_ptr(p));
    }
    static trainer from_images(const model & m, const std::vector<const image *> & images,
                               const neco_train_params & params = neco_train_default_params()) {
        std::vector<const std::uint8_t *> pixels;
        std::vector<std::int32_t> heights, widths;
        for (const image * i : images) {
            pixels.push_back(i != nullptr ? neco_image_data(i->get()) : nullptr);
            heights.push_back(i != nullptr ? i->height() : 0);
            widths.push_back(i != nullptr ? i->width() : 0);
        }
        neco_trainer * p = nullptr;
        check(neco_trainer_init_images(m.get(), pixels.data(), heights.data(), widths.data(),
                                       std::int32_t(images.size()), &params, &p));
        return trainer(trainer_ptr(p));
    }
    neco_trainer * get() const noexcept { return p_.get(); }
    std::int64_t step_count() const noexcept { return neco_trainer_step_count(get()); }

    neco_train_progress step() {
        neco_train_progress p{};
        check(neco_trainer_step(get(), &p));
        return p;
    }

    /// Runs n_steps more steps (0 = up to total_steps), calling `on_step(progress)` after each:
    /// true continues, false stops. Returns true when the run went through, false when the
    /// callback stopped it (a success, not an exception). An exception thrown by `on_step` stops
    /// the run and is rethrown here after libneco returned; it never crosses into the library.
    template <class F>
    bool run(std::int64_t n_steps, F && on_step) {
        struct context {
            F * callback;
            std::exception_ptr exception;
            bool stopped;
        } ctx{&on_step, nullptr, false};
        neco_train_callback trampoline = [](const neco_train_progress * progress, void * user) noexcept -> bool {
            context * c = static_cast<context *>(user);
            try {
                const bool go_on = (*c->callback)(*progress);
                c->stopped = !go_on;
                return go_on;
            } catch (...) {
                c->exception = std::current_exception();
                return false;
            }
        };
        const neco_status status = neco_trainer_run(get(), n_steps, trampoline, &ctx);
        if (ctx.exception) std::rethrow_exception(ctx.exception);
        if (status == NECO_ERR_ABORTED && ctx.stopped) return false;
        check(status);
        return true;
    }
    /// Runs without a callback.
    void run(std::int64_t n_steps = 0) { check(neco_trainer_run(get(), n_steps, nullptr, nullptr)); }

    void save_checkpoint(const std::string & path) { check(neco_trainer_save_checkpoint(get(), path.c_str())); }
    void load_checkpoint(const std::string & path) { check(neco_trainer_load_checkpoint(get(), path.c_str())); }
    /// The current student (or EMA teacher) backbone as an independent model.
    model get_model(bool teacher = false) const {
        neco_model * p = nullptr;
        check(neco_trainer_get_model(get(), teacher, &p));
        return model(model_ptr(p));
    }

private:
    trainer_ptr p_;
};

/// The in-context protocol's result: the C summary and the IoU of every class.
struct incontext_result {
    neco_eval_result summary{};
    std::vector<double> per_class_iou;
};

/// The in-context (Hummingbird) protocol of `m` on a benchmark folder (neco_eval_incontext).
inline incontext_result eval_incontext(const model & m, const std::string & bench_dir,
                                       const neco_eval_params & params = neco_eval_default_params()) {
    incontext_result r;
    r.per_class_iou.resize(65536);  // the most classes a benchmark's label maps can name
    check(neco_eval_incontext(m.get(), bench_dir.c_str(), &params, &r.summary, r.per_class_iou.data(), r.per_class_iou.size()));
    r.per_class_iou.resize(std::size_t(r.summary.n_classes > 0 ? r.summary.n_classes : 0));
    return r;
}

/// Patch-to-patch nearest neighbours between two feature blocks (neco_match_patches).
inline neighbours match_patches(view<const float> a, view<const float> b, std::int32_t dim, std::int32_t k) {
    if (dim <= 0 || a.size() % std::size_t(dim) != 0 || b.size() % std::size_t(dim) != 0)
        throw error(NECO_ERR_SHAPE, "neco::match_patches: feature views are not multiples of dim");
    const std::int64_t n_a = std::int64_t(a.size() / std::size_t(dim)), n_b = std::int64_t(b.size() / std::size_t(dim));
    neighbours r;
    r.k = k;
    const std::size_t cap = std::size_t(n_a) * std::size_t(k > 0 ? k : 0);
    r.indices.resize(cap);
    r.similarities.resize(cap);
    check(neco_match_patches(a.data(), n_a, b.data(), n_b, dim, k, r.indices.data(), r.similarities.data(), cap));
    return r;
}

}  // namespace neco

#endif  // NECO_HPP
