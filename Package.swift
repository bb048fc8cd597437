// swift-tools-version:6.0
// libneco: NeCo (Patch Neighbor Consistency) training and inference for DINOv2 ViTs, in Swift over OpenBLAS.
//
// Module stack (arrows point down; nothing imports a module above it):
//
//   neco (CLI) ─┐
//               ├─> Neco (Swift API: feature extraction, PCA picture, .npy)
//               │      ├─> NecoModel (ViT config, parameters, safetensors, forward)
//               │      │      └─> NecoCore (GEMM wrapper, kernels, threads, errors) ─> COpenBLAS, CNecoKernels
//               │      └─> NecoImage (JPEG/PNG decode, PIL-style resize, normalisation, PNG write)
//               │             ├─> NecoCore
//               │             └─> CImageIO (libjpeg-turbo with a setjmp error handler, libpng)
//   _NecoTestSupport (fixtures, assertClose) is used by tests only.
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
        .target(name: "CImageIO", path: "Sources/CImageIO",
                linkerSettings: [.linkedLibrary("jpeg"), .linkedLibrary("png16")]),

        // MARK: - Library layers
        .target(name: "NecoCore", dependencies: ["COpenBLAS", "CNecoKernels"]),
        .target(name: "NecoImage", dependencies: ["NecoCore", "CImageIO"]),
        .target(name: "NecoModel", dependencies: ["NecoCore"]),
        .target(name: "Neco", dependencies: ["NecoCore", "NecoImage", "NecoModel"]),
        .target(name: "NecoTrain", dependencies: ["NecoCore", "NecoModel", "NecoImage"]),

        // MARK: - ONNX export
        // C++ over Debian's libonnx-dev 1.12 + libprotobuf-dev 3.21 behind a plain-C header
        // (docs: BUILD-NOTES §2-3). ONNX_ML=1 and ONNX_NAMESPACE=onnx are required by the headers.
        .target(name: "ONNXBridge", path: "Sources/ONNXBridge",
                cxxSettings: [.define("ONNX_ML", to: "1"), .define("ONNX_NAMESPACE", to: "onnx")],
                linkerSettings: [.linkedLibrary("onnx"), .linkedLibrary("onnx_proto"), .linkedLibrary("protobuf")]),
        .target(name: "NecoONNX", dependencies: ["NecoModel", "ONNXBridge"]),

        // MARK: - Executables
        .executableTarget(name: "neco", dependencies: [
            "Neco", "NecoONNX", "NecoTrain", "NecoEval", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // MARK: - Tests
        .target(name: "_NecoTestSupport", dependencies: ["NecoCore", "NecoModel"], path: "Sources/_NecoTestSupport"),
        .testTarget(name: "NecoCoreTests", dependencies: ["NecoCore", "_NecoTestSupport"]),
        .testTarget(name: "NecoImageTests", dependencies: ["NecoImage", "_NecoTestSupport"]),
        .testTarget(name: "NecoModelTests", dependencies: ["NecoModel", "Neco", "_NecoTestSupport"]),
        .testTarget(name: "NecoTrainTests", dependencies: ["NecoTrain", "NecoModel", "NecoCore", "_NecoTestSupport"]),
        .testTarget(name: "NecoONNXTests", dependencies: ["NecoONNX", "Neco", "NecoImage", "NecoModel", "NecoTrain",
                                                      "_NecoTestSupport"]),
    ],
    cxxLanguageStandard: .cxx17
)

// MARK: - C ABI: libneco.so (include/neco.h)
//
// `NecoCAPI` holds the `@_cdecl` entry points only (validation, handles, status mapping);
// `NecoEval` the neighbour search; `NecoTrain` NeCo training; `NecoONNX` the ONNX export (neco_export_onnx: libneco.so then
// also NEEDs Debian's libonnx.so.1, libonnx_proto.so.1, libprotobuf.so.32 and libstdc++);
// `CNecoSupport` the thread-local last-error buffer and log sink.
// The dynamic product `NecoCAPI` is libneco.so: it exports exactly the names listed in neco.map
// and has the soname libneco.so. SwiftPM names the file libNecoCAPI.so because the product name
// `neco` is taken by the CLI (SwiftPM ignores a second product of the same name); CMakeLists.txt
// builds it with `-Xswiftc -static-stdlib` (users need no Swift runtime) and copies it to
// libneco.so. SwiftPM does not track neco.map: after editing it, delete the .so or touch a source.
let necoPackageRoot = String(#filePath.dropLast("/Package.swift".count))
package.products.append(.library(name: "NecoCAPI", type: .dynamic, targets: ["NecoCAPI"]))
package.targets += [
    .target(name: "CNecoSupport", path: "Sources/CNecoSupport"),
    .target(name: "NecoEval", dependencies: ["NecoCore", "NecoImage"]),
    .target(name: "NecoCAPI", dependencies: ["Neco", "NecoEval", "NecoTrain", "NecoONNX", "CNecoSupport"],
            linkerSettings: [.unsafeFlags(["-Xlinker", "--version-script=\(necoPackageRoot)/neco.map",
                                           "-Xlinker", "-soname=libneco.so"])]),
    .testTarget(name: "NecoEvalTests", dependencies: ["NecoEval", "NecoCore"]),
    .testTarget(name: "NecoCAPITests", dependencies: ["NecoCAPI", "CNecoSupport", "Neco", "NecoEval", "NecoImage",
                                                      "NecoModel", "NecoCore", "NecoONNX", "NecoTrain", "_NecoTestSupport"]),
]
// Benchmark of the Swift API next to the C ABI (examples-c/bench/run.sh).
package.targets.append(.executableTarget(name: "neco-bench-swift", dependencies: ["Neco", "NecoCAPI", "CNecoSupport"],
                                         path: "examples-c/bench/swift"))
