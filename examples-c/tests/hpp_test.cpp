// hpp_test.cpp: neco.hpp, the C++17 wrapper, against the tiny test model.
//
// Exceptions carry the status and the message; views check their bounds; handles free
// themselves; an index round-trips through a file; the training trampoline continues on true,
// reports a requested stop as success (false, no exception), and carries an exception thrown in
// the callback back out of neco::trainer::run without letting it cross libneco.
//
// usage: hpp_test TINY_MODEL PHOTO_DIR   (exit 77 when PHOTO_DIR holds fewer than 2 photos)
// Prints "HPP TEST OK" and exits 0 on success.
#include <neco.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>

static int failures = 0;
#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            std::fprintf(stderr, "hpp_test.cpp:%d: FAILED %s\n", __LINE__, #cond); \
            failures++;                                                      \
        }                                                                    \
    } while (0)

int main(int argc, char ** argv) {
    namespace fs = std::filesystem;
    if (argc != 3) {
        std::fprintf(stderr, "usage: hpp_test TINY_MODEL PHOTO_DIR\n");
        return 2;
    }
    const std::string tiny = argv[1], photos = argv[2];
    std::error_code ec;
    int n_photos = 0;
    for (const auto & e : fs::directory_iterator(photos, ec))
        if (e.path().extension() == ".png" || e.path().extension() == ".jpg") n_photos++;
    if (n_photos < 2) {
        std::fprintf(stderr, "fewer than 2 photos in %s: run scripts/setup.sh\n", photos.c_str());
        return 77;
    }
    try {
        CHECK(neco::api_compatible());
        CHECK(neco::version().rfind(std::to_string(NECO_VERSION_MAJOR) + "." + std::to_string(NECO_VERSION_MINOR) + "." +
                                        std::to_string(NECO_VERSION_PATCH) + "+", 0) == 0);
        CHECK(!neco::default_model_path().empty());

        // Errors: status and message, copied before any later call.
        try {
            neco::model::load("/nonexistent/model.safetensors");
            CHECK(false);
        } catch (const neco::error & e) {
            CHECK(e.status() == NECO_ERR_IO);
            CHECK(std::strncmp(e.what(), "neco_model_load: ", 17) == 0);
        }
        neco_model_params mp = neco_model_default_params();
        mp.n_heads = 4;
        const neco::model model = neco::model::load(tiny, mp);
        CHECK(model.embed_dim() == 32 && model.patch_size() == 14 && model.n_registers() == 4);
        CHECK(model.family() == NECO_FAMILY_DINOV2);
        CHECK(model.image_height() > 0 && model.image_width() > 0);

        // Process-wide settings round-trip; bad values throw; the log sink receives lines.
        const std::int32_t threads = neco::threads();
        neco::set_threads(1);
        CHECK(neco::threads() == 1);
        neco::set_threads(threads);
        const std::int64_t max_pixels = neco::max_image_pixels();
        neco::set_max_image_pixels(1000);
        CHECK(neco::max_image_pixels() == 1000);
        neco::set_max_image_pixels(max_pixels);
        try {
            neco::set_max_image_pixels(-1);
            CHECK(false);
        } catch (const neco::error & e) {
            CHECK(e.status() == NECO_ERR_INVALID_ARG);
        }
        neco::set_load_truncated_images(true);
        CHECK(neco::load_truncated_images());
        neco::set_load_truncated_images(false);
        int logged = 0;
        neco::set_log([&](neco_log_level, const std::string & text) { logged += text.empty() ? 0 : 1; });
        try {
            neco::model::load("/nonexistent/other.safetensors");
        } catch (const neco::error &) {
        }
        CHECK(logged > 0);  // a failed call logs at NECO_LOG_DEBUG
        neco::set_log({});

        // Views.
        std::vector<float> buf(10);
        neco::view<float> v(buf);
        CHECK(v.size() == 10 && v.subview(2, 8).size() == 8);
        bool threw = false;
        try {
            (void)v.subview(3, 8);
        } catch (const std::out_of_range &) {
            threw = true;
        }
        CHECK(threw);

        // Extraction into caller buffers, and an index that round-trips through a file.
        std::vector<std::uint8_t> rgb(56 * 42 * 3);
        for (std::size_t i = 0; i < rgb.size(); i++) rgb[i] = std::uint8_t((i * 7 + i / 97) % 251);
        neco_extract_params ep = neco_extract_default_params();
        ep.resize = NECO_RESIZE_NONE;
        ep.l2_normalize = true;
        const neco_feature_shape shape = model.shape_rgb(56, 42, ep);
        CHECK(shape.grid_height == 4 && shape.grid_width == 3);
        std::vector<float> patches(shape.patches_per_image), cls(shape.cls_per_image);
        model.extract_rgb(rgb, 56, 42, ep, neco::feature_views{patches, cls, {}});
        neco::index ix(shape.dim);
        ix.add(patches);
        const std::string file = (fs::temp_directory_path() / ("neco-hpp-" + std::to_string(::getpid()) + ".necoindex")).string();
        ix.save(file);
        const neco::index back = neco::index::load(file);
        fs::remove(file, ec);
        const neco::neighbours a = ix.search(patches, 3), b = back.search(patches, 3);
        CHECK(a.indices == b.indices && a.similarities == b.similarities);
        CHECK(a.indices[0] == 0 && a.indices[3] == 1);  // every patch finds itself first
        try {
            ix.add(neco::view<const float>(patches.data(), 5));  // not a multiple of dim
            CHECK(false);
        } catch (const neco::error & e) {
            CHECK(e.status() == NECO_ERR_SHAPE);
        }

        // Training: small crops of the tiny model on the photos.
        neco_train_params tp = neco_train_default_params();
        tp.total_steps = 6;
        tp.batch_size = 2;
        tp.global_size = 28;
        tp.local_size = 14;
        tp.roi_size = 2;
        tp.references = NECO_REFERENCES_BATCH;
        tp.head_hidden_dim = 16;
        tp.head_out_dim = 8;
        neco::trainer tr = neco::trainer::from_folder(model, photos, tp);
        int seen = 0;
        CHECK(tr.run(2, [&](const neco_train_progress & p) {
            seen++;
            return p.loss > 0;  // true: continue
        }));
        CHECK(seen == 2 && tr.step_count() == 2);
        // A requested stop is a success: run returns false, no exception.
        CHECK(!tr.run(0, [&](const neco_train_progress &) { return false; }));
        CHECK(tr.step_count() == 3);
        // An exception in the callback stops the run and comes back out of run(), unchanged.
        threw = false;
        try {
            tr.run(0, [](const neco_train_progress &) -> bool { throw std::runtime_error("from the callback"); });
        } catch (const neco::error &) {
            CHECK(false);
        } catch (const std::runtime_error & e) {
            threw = std::strcmp(e.what(), "from the callback") == 0;
        }
        CHECK(threw && tr.step_count() == 4);
        // After the exception the library is in a normal state.
        const neco_train_progress p = tr.step();
        CHECK(p.step == 5 && tr.step_count() == 5);
        const neco::model student = tr.get_model();
        CHECK(student.embed_dim() == 32);
    } catch (const std::exception & e) {
        std::fprintf(stderr, "unexpected exception: %s\n", e.what());
        return 1;
    }
    if (failures != 0) {
        std::fprintf(stderr, "HPP TEST FAILED (%d)\n", failures);
        return 1;
    }
    std::printf("HPP TEST OK\n");
    return 0;
}
