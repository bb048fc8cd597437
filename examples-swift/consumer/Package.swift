// swift-tools-version:6.0
// A package that uses libneco the way a Swift user does: as a versioned dependency.
//
// scripts/test-swift-consumer.sh copies this folder to a scratch directory, clones libneco there,
// tags the clone with its version (include/neco.h) and replaces NECO_PACKAGE_URL below with the
// clone's file:// URL before building. To use it outside that script, put your libneco URL here.
import PackageDescription

let package = Package(
    name: "neco-consumer",
    dependencies: [
        .package(url: "NECO_PACKAGE_URL", from: "0.1.0"),
    ],
    targets: [
        .executableTarget(name: "neco-consumer", dependencies: [
            .product(name: "Neco", package: "neco"),
            .product(name: "NecoImage", package: "neco"),
            .product(name: "NecoModel", package: "neco"),
            .product(name: "NecoTrain", package: "neco"),
            .product(name: "NecoEval", package: "neco"),
            .product(name: "NecoONNX", package: "neco"),
        ]),
    ]
)
