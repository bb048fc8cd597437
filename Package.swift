// swift-tools-version:6.0
// libneco: NeCo (Patch Neighbor Consistency) training and inference for DINOv2 ViTs, in Swift over OpenBLAS.
//
// Module graph (arrows point down; nothing imports a module above it). Products in [brackets].
//
//   neco [executable neco] ──────────────────────────────┐  CLI: parses arguments and prints
//   NecoCAPI [dynamic NecoCAPI = libneco.so] ─────────────┤  C ABI: validates, marshals, maps errors
//      └─> CNecoSupport (last-error buffer, log sink)      │
//                                                          v
//   NecoEval [NecoEval]   NecoTrain [NecoTrain]   NecoONNX [NecoONNX]       evaluation, NeCo training, export
//      │    └────────────┬────┘  │                   ├─> ONNXBridge (C++ over libonnx)
//      v                 v       │                   │
//   Neco [Neco]  (feature extraction, PCA picture)   │
//      │                         │                   │
//      v                         v                   v
//   NecoImage [NecoImage]      NecoModel [NecoModel]                        decode/resize, ViT
//      └─> CImageIO (libjpeg-turbo, libpng)  │
//      v                                     v
//   NecoCore (GEMM, kernels, threads, errors, files, ranks) ─> COpenBLAS (system library), CNecoKernels,
//                                                             CNecoMPI (Open MPI via dlopen)
//
//   _NecoTestSupport (fixtures, assertClose) is used by tests only; neco-bench-swift by
//   examples-c/bench/run.sh only.
//
// No target of a library product carries `unsafeFlags`: SwiftPM refuses such a package as a
// versioned (`from:`) dependency. libneco.so's linker flags (version script neco.map, soname
// libneco.so.0) are passed by CMakeLists.txt, which builds the NecoCAPI product.
//
// Custom compile-time flags:
//   NECO_INTERNAL_CHECKS  per-element invariant and shape checks inside kernels (off by default;
//                         enable with `swift build -Xswiftc -DNECO_INTERNAL_CHECKS`).
// No target-CPU flags: CNecoKernels compiles each kernel once per CPU path (portable, AVX2+FMA,
// AVX-512) with `#pragma clang attribute` targets and picks one at run time (NecoCore's
// CPUFeatures; NECO_CPU=portable|avx2|avx512 forces one).
import PackageDescription

let package = Package(
    name: "neco",
    products: [
        .library(name: "Neco", targets: ["Neco"]),
        .library(name: "NecoImage", targets: ["NecoImage"]),
        .library(name: "NecoModel", targets: ["NecoModel"]),
        .library(name: "NecoTrain", targets: ["NecoTrain"]),
        .library(name: "NecoEval", targets: ["NecoEval"]),
        .library(name: "NecoONNX", targets: ["NecoONNX"]),
        // libneco.so (include/neco.h). SwiftPM names the file libNecoCAPI.so because the product
        // name `neco` is taken by the CLI; CMakeLists.txt links it with neco.map and the soname
        // libneco.so.0, with `-Xswiftc -static-stdlib` (users need no Swift runtime), and installs
        // it as libneco.so.<version> with the libneco.so.0 and libneco.so links.
        .library(name: "NecoCAPI", type: .dynamic, targets: ["NecoCAPI"]),
        .executable(name: "neco", targets: ["neco"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // MARK: - System libraries and C shims
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        // The elementwise and row kernels, one source compiled per CPU path, chosen at run time.
        .target(name: "CNecoKernels", path: "Sources/CNecoKernels"),
        // Open MPI bound at run time with dlopen (no link dependency; docs/DISTRIBUTED.md).
        .target(name: "CNecoMPI", path: "Sources/CNecoMPI"),
        .target(name: "CImageIO", path: "Sources/CImageIO",
                linkerSettings: [.linkedLibrary("jpeg"), .linkedLibrary("png16")]),
        // C++ over Debian's libonnx-dev 1.12 + libprotobuf-dev 3.21 behind a plain-C header
        // (docs: BUILD-NOTES §2-3). ONNX_ML=1 and ONNX_NAMESPACE=onnx are required by the headers.
        .target(name: "ONNXBridge", path: "Sources/ONNXBridge",
                cxxSettings: [.define("ONNX_ML", to: "1"), .define("ONNX_NAMESPACE", to: "onnx")],
                linkerSettings: [.linkedLibrary("onnx"), .linkedLibrary("onnx_proto"), .linkedLibrary("protobuf")]),
        // The thread-local last-error buffer and log sink behind neco.h.
        .target(name: "CNecoSupport", path: "Sources/CNecoSupport"),

        // MARK: - Library layers
        .target(name: "NecoCore", dependencies: ["COpenBLAS", "CNecoKernels", "CNecoMPI"]),
        .target(name: "NecoImage", dependencies: ["NecoCore", "CImageIO"]),
        .target(name: "NecoModel", dependencies: ["NecoCore"]),
        .target(name: "Neco", dependencies: ["NecoCore", "NecoImage", "NecoModel"]),
        .target(name: "NecoTrain", dependencies: ["NecoCore", "NecoModel", "NecoImage"]),
        .target(name: "NecoEval", dependencies: ["NecoCore", "NecoImage", "NecoModel", "Neco"]),
        .target(name: "NecoONNX", dependencies: ["NecoModel", "ONNXBridge"]),

        // MARK: - C ABI and executables
        // `NecoCAPI` holds the `@_cdecl` entry points only (validation, handles, status mapping).
        // libneco.so then also NEEDs Debian's libonnx.so.1, libonnx_proto.so.1, libprotobuf.so.32
        // and libstdc++ (neco_export_onnx).
        .target(name: "NecoCAPI", dependencies: ["Neco", "NecoEval", "NecoTrain", "NecoONNX", "CNecoSupport"]),
        .executableTarget(name: "neco", dependencies: [
            "Neco", "NecoONNX", "NecoTrain", "NecoEval", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // Benchmark of the Swift API next to the C ABI (examples-c/bench/run.sh).
        .executableTarget(name: "neco-bench-swift", dependencies: ["Neco", "NecoCAPI", "CNecoSupport"],
                          path: "examples-c/bench/swift"),

        // MARK: - Tests
        .target(name: "_NecoTestSupport", dependencies: ["NecoCore", "NecoModel"], path: "Sources/_NecoTestSupport"),
        .testTarget(name: "NecoCoreTests", dependencies: ["NecoCore", "_NecoTestSupport"]),
        .testTarget(name: "NecoImageTests", dependencies: ["NecoImage", "_NecoTestSupport"]),
        .testTarget(name: "NecoModelTests", dependencies: ["NecoModel", "Neco", "_NecoTestSupport"]),
        .testTarget(name: "NecoTrainTests", dependencies: ["NecoTrain", "NecoModel", "NecoCore", "_NecoTestSupport"]),
        .testTarget(name: "NecoEvalTests", dependencies: ["NecoEval", "NecoCore", "_NecoTestSupport"]),
        .testTarget(name: "NecoONNXTests", dependencies: ["NecoONNX", "Neco", "NecoImage", "NecoModel", "NecoTrain",
                                                          "_NecoTestSupport"]),
        .testTarget(name: "NecoCAPITests", dependencies: ["NecoCAPI", "CNecoSupport", "Neco", "NecoEval", "NecoImage",
                                                          "NecoModel", "NecoCore", "NecoONNX", "NecoTrain", "_NecoTestSupport"]),
    ],
    cxxLanguageStandard: .cxx17
)
