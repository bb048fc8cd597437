// batch_neighbors.cpp: the C++17 example of libneco.
//
// Through neco.hpp (RAII handles, exceptions, buffer views): batch extraction of every photo in a
// folder, and a patch index over all photos but the last, labelled by photo. The last photo's patches then vote,
// through their nearest neighbours, for the photo they resemble most; the CLS tokens give a
// second opinion.
//
// usage: batch_neighbors [MODEL [PHOTO_DIR [N_HEADS [SIZE]]]]
//   MODEL      default $NECO_MODEL, else ~/.cache/neco/models/dinov2_vits14_imgfocus.safetensors
//   PHOTO_DIR  default ~/.cache/neco/photos (JPEG and PNG files, sorted by name)
//   N_HEADS    attention heads, 0 = embed dim / 64 (the tiny test model needs 4)
//   SIZE       model input side (default 224)
// Exit status 0 and "CPP EXAMPLE OK" on success; 77 when the model or photos are missing.
#include <neco.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

// Features of a batch: patches (N, n_patches, D) and CLS (N, D), in vectors that this program owns.
struct Features {
    neco_feature_shape shape{};
    int32_t n = 0;
    std::vector<float> patches;
    std::vector<float> cls;
    neco::view<const float> patches_of(int32_t i) const {
        return neco::view<const float>(patches.data() + size_t(i) * shape.patches_per_image, shape.patches_per_image);
    }
    const float * cls_of(int32_t i) const { return cls.data() + size_t(i) * shape.cls_per_image; }
};

static Features extract_batch(const neco::model & model, const std::vector<neco::image> & images,
                              const neco_extract_params & params) {
    Features f;
    f.n = int32_t(images.size());
    f.shape = model.shape_rgb(images[0].height(), images[0].width(), params);
    f.patches.resize(size_t(f.n) * f.shape.patches_per_image);
    f.cls.resize(size_t(f.n) * f.shape.cls_per_image);
    std::vector<const neco::image *> batch;
    for (const auto & im : images) batch.push_back(&im);
    model.extract_batch(batch, params, neco::feature_views{f.patches, f.cls, {}});
    return f;
}

static std::string cache_path(const char * rel) {
    const char * cache = std::getenv("NECO_CACHE");
    if (cache && *cache) return std::string(cache) + "/" + rel;
    const char * home = std::getenv("HOME");
    return std::string(home ? home : ".") + "/.cache/neco/" + rel;
}

int main(int argc, char ** argv) {
    namespace fs = std::filesystem;
    const std::string model_path = argc > 1 ? argv[1] : neco::default_model_path();
    const std::string dir = argc > 2 ? argv[2] : cache_path("photos");
    const int32_t heads = argc > 3 ? int32_t(std::atoi(argv[3])) : 0;
    const int32_t size = argc > 4 ? int32_t(std::atoi(argv[4])) : 224;

    if (!neco::api_compatible()) {
        std::fprintf(stderr, "libneco API %d, header %d\n", neco_api_version(), NECO_API_VERSION);
        return 1;
    }
    std::error_code ec;
    std::vector<std::string> files;
    if (fs::is_directory(dir, ec)) {
        for (const auto & e : fs::directory_iterator(dir, ec)) {
            std::string ext = e.path().extension().string();
            std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
            if (e.is_regular_file() && (ext == ".png" || ext == ".jpg" || ext == ".jpeg")) files.push_back(e.path().string());
        }
    }
    std::sort(files.begin(), files.end());
    if (!fs::exists(model_path, ec) || files.size() < 2) {
        std::fprintf(stderr, "model %s or at least 2 photos in %s missing: run scripts/setup.sh\n", model_path.c_str(), dir.c_str());
        return 77;
    }

    try {
        neco_model_params mp = neco_model_default_params();
        mp.n_heads = heads;
        const neco::model model = neco::model::load(model_path, mp);
        std::printf("libneco %s, model %s (D %d)\n", neco::version().c_str(), model.name().c_str(), model.embed_dim());

        std::vector<neco::image> images;
        for (const auto & f : files) images.push_back(neco::image::load(f));

        neco_extract_params ep = neco_extract_default_params();
        ep.resize = NECO_RESIZE_STRETCH;  // a fixed size, so that pictures of any shape batch together
        ep.height = size;
        ep.width = size;
        ep.l2_normalize = true;
        const Features f = extract_batch(model, images, ep);
        const int64_t np = f.shape.n_patches;
        std::printf("batch of %d photos -> %d x %lld patches x %d\n", f.n, f.n, static_cast<long long>(np), f.shape.dim);

        // Index: every photo but the last, one label per photo.
        const int32_t query = f.n - 1;
        neco::index index(f.shape.dim);
        for (int32_t i = 0; i < query; i++) index.add(f.patches_of(i), std::vector<int32_t>(size_t(np), i));
        std::printf("index: %lld patches from %d photos\n", static_cast<long long>(index.size()), query);

        const int32_t k = 5;
        const neco::neighbours nn = index.search(f.patches_of(query), k);
        std::map<int32_t, int> votes;
        double mean_top1 = 0;
        for (int64_t q = 0; q < np; q++) {
            mean_top1 += nn.similarities[size_t(q) * k];
            for (int32_t j = 0; j < k; j++) votes[nn.labels[size_t(q) * k + j]]++;
        }
        mean_top1 /= double(np);
        std::printf("query %s: mean top-1 patch cosine %.3f; neighbour votes:\n",
                    fs::path(files[size_t(query)]).filename().string().c_str(), mean_top1);
        for (const auto & [label, count] : votes)
            std::printf("  %-22s %5d\n", fs::path(files[size_t(label)]).filename().string().c_str(), count);

        // CLS cosine similarity of the query to each indexed photo.
        auto cosine = [&](const float * a, const float * b) {
            double d = 0, na = 0, nb = 0;
            for (int32_t i = 0; i < f.shape.dim; i++) {
                d += double(a[i]) * b[i];
                na += double(a[i]) * a[i];
                nb += double(b[i]) * b[i];
            }
            return d / (std::sqrt(na) * std::sqrt(nb) + 1e-12);
        };
        for (int32_t i = 0; i < query; i++)
            std::printf("  CLS cosine to %-22s %.3f\n", fs::path(files[size_t(i)]).filename().string().c_str(),
                        cosine(f.cls_of(query), f.cls_of(i)));

        // Checks: sorted similarities, labels in range, every vote counted.
        int total = 0;
        for (const auto & v : votes) total += v.second;
        bool ok = total == int(np) * k;
        for (int64_t q = 0; q < np && ok; q++)
            for (int32_t j = 1; j < k; j++)
                ok = ok && nn.similarities[size_t(q) * k + j] <= nn.similarities[size_t(q) * k + j - 1];
        for (const auto & v : votes) ok = ok && v.first >= 0 && v.first < query;

        // Errors arrive as exceptions with the library's message.
        try {
            neco::index bad(0);
            ok = false;
        } catch (const neco::error & e) {
            std::printf("expected error: %s\n", e.what());
            ok = ok && e.status() == NECO_ERR_INVALID_ARG;
        }
        if (!ok) {
            std::fprintf(stderr, "CPP EXAMPLE FAILED\n");
            return 1;
        }
    } catch (const std::exception & e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    std::printf("CPP EXAMPLE OK\n");
    return 0;
}
