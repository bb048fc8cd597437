import CNecoSupport
import Neco
import NecoCAPI
import NecoCore
import NecoEval
import NecoImage
import NecoModel
import XCTest
import _NecoTestSupport

#if canImport(Glibc)
import Glibc
#endif

// The C entry points called from Swift (the same functions libneco.so exports). Names are
// qualified with `NecoCAPI.` because CNecoSupport also declares them (it includes neco.h).

/// The tiny fixture model: D 32, patch 14, 4 registers, 4 heads.
let tinyModel = fixturePath("vit/tiny_reg4.weights.safetensors")

func lastError() -> String { String(cString: NecoCAPI.neco_last_error()) }

func loadTiny(imageSize: Int32 = 56) throws -> OpaquePointer {
    var p = NecoCAPI.neco_model_default_params()
    p.n_heads = 4
    p.image_height = imageSize
    p.image_width = imageSize
    var m: OpaquePointer? = nil
    let st = tinyModel.withCString { NecoCAPI.neco_model_load($0, &p, &m) }
    guard st == NECO_OK, let m else { throw NecoError.io("cannot load the tiny model: \(lastError())") }
    return m
}

/// Deterministic values in [-1, 1).
func pseudoRandom(_ n: Int, seed: UInt64) -> [Float] {
    var s = seed
    return (0..<n).map { _ in
        s = s &* 6364136223846793005 &+ 1442695040888963407
        return Float(s >> 40) / Float(1 << 23) - 1
    }
}

final class CAPITests: XCTestCase {
    func testVersionStatusAndLastError() {
        XCTAssertEqual(NecoCAPI.neco_api_version(), NECO_API_VERSION)
        XCTAssertTrue(String(cString: NecoCAPI.neco_version()).hasPrefix("0.1.0+"))
        XCTAssertEqual(String(cString: NecoCAPI.neco_status_str(NECO_OK)), "ok")
        XCTAssertEqual(String(cString: NecoCAPI.neco_status_str(NECO_ERR_SHAPE)), "shape mismatch")
        XCTAssertEqual(String(cString: NecoCAPI.neco_status_str(neco_status(rawValue: 99))), "unknown status")
        // Status codes are NecoError.Kind raw values.
        XCTAssertEqual(NECO_ERR_INVALID_ARG.rawValue, NecoError.Kind.invalidArgument.rawValue)
        XCTAssertEqual(NECO_ERR_IO.rawValue, NecoError.Kind.io.rawValue)
        XCTAssertEqual(NECO_ERR_FORMAT.rawValue, NecoError.Kind.format.rawValue)
        XCTAssertEqual(NECO_ERR_SHAPE.rawValue, NecoError.Kind.shape.rawValue)
        XCTAssertEqual(NECO_ERR_OOM.rawValue, NecoError.Kind.outOfMemory.rawValue)
        XCTAssertEqual(NECO_ERR_ABORTED.rawValue, NecoError.Kind.aborted.rawValue)
        XCTAssertEqual(NECO_ERR_INTERNAL.rawValue, NecoError.Kind.internal.rawValue)
        XCTAssertEqual(NECO_ERR_DIVERGED.rawValue, NecoError.Kind.diverged.rawValue)
        XCTAssertEqual(NECO_ERR_DATA.rawValue, NecoError.Kind.data.rawValue)
        XCTAssertEqual(NECO_ERR_VERSION.rawValue, NecoError.Kind.version.rawValue)
        XCTAssertEqual(NECO_ERR_DISTRIBUTED.rawValue, NecoError.Kind.distributed.rawValue)
        XCTAssertEqual(String(cString: NecoCAPI.neco_status_str(NECO_ERR_DISTRIBUTED)), "distributed")
        // The version macros of neco.h are the library's version.
        XCTAssertTrue(String(cString: NecoCAPI.neco_version()).hasPrefix("\(NECO_VERSION_MAJOR).\(NECO_VERSION_MINOR).\(NECO_VERSION_PATCH)+"))
        XCTAssertEqual(String(cString: NecoCAPI.neco_default_model_path()), DefaultModel.path)

        var ix: OpaquePointer? = nil
        XCTAssertEqual(NecoCAPI.neco_index_init(0, &ix), NECO_ERR_INVALID_ARG)
        XCTAssertTrue(lastError().hasPrefix("neco_index_init: dim = 0"), lastError())
        XCTAssertEqual(NecoCAPI.neco_index_init(4, &ix), NECO_OK)
        XCTAssertEqual(lastError(), "")
        NecoCAPI.neco_index_free(ix)
    }

    func testLastErrorIsPerThread() {
        var ix: OpaquePointer? = nil
        XCTAssertEqual(NecoCAPI.neco_index_init(-5, &ix), NECO_ERR_INVALID_ARG)
        let group = DispatchGroup()
        nonisolated(unsafe) var seen = ""
        let t = Thread {
            var other: OpaquePointer? = nil
            _ = NecoCAPI.neco_index_init(0, &other)
            seen = lastError()
            group.leave()
        }
        group.enter()
        t.start()
        group.wait()
        XCTAssertTrue(seen.contains("dim = 0"), seen)
        XCTAssertTrue(lastError().contains("dim = -5"), lastError())
    }

    func testLogCallbackReceivesFailures() {
        final class Box { var lines: [String] = [] }
        let box = Box()
        let cb: neco_log_callback = { level, text, user in
            guard let user, let text else { return }
            let b = Unmanaged<Box>.fromOpaque(user).takeUnretainedValue()
            b.lines.append("\(level.rawValue) \(String(cString: text))")
        }
        NecoCAPI.neco_log_set(cb, Unmanaged.passUnretained(box).toOpaque())
        var ix: OpaquePointer? = nil
        _ = NecoCAPI.neco_index_init(0, &ix)
        NecoCAPI.neco_log_set(nil, nil)
        _ = NecoCAPI.neco_index_init(0, &ix)   // default sink again: not recorded
        XCTAssertEqual(box.lines.count, 1)
        XCTAssertTrue(box.lines.first?.hasPrefix("0 neco_index_init:") ?? false, "\(box.lines)")
    }

    func testModelLoadErrors() throws {
        var m: OpaquePointer? = OpaquePointer(bitPattern: 0x10)
        XCTAssertEqual(NecoCAPI.neco_model_load(nil, nil, &m), NECO_ERR_INVALID_ARG)
        XCTAssertNil(m)
        XCTAssertEqual(lastError(), "neco_model_load: path is NULL")
        XCTAssertEqual(tinyModel.withCString { NecoCAPI.neco_model_load($0, nil, nil) }, NECO_ERR_INVALID_ARG)
        XCTAssertEqual("/nonexistent.safetensors".withCString { NecoCAPI.neco_model_load($0, nil, &m) }, NECO_ERR_IO)
        XCTAssertTrue(lastError().contains("/nonexistent.safetensors"), lastError())
        var p = NecoCAPI.neco_model_default_params()
        p.pos_rule = 12
        XCTAssertEqual(tinyModel.withCString { NecoCAPI.neco_model_load($0, &p, &m) }, NECO_ERR_INVALID_ARG)
        XCTAssertTrue(lastError().contains("pos_rule"), lastError())
        p = NecoCAPI.neco_model_default_params()
        p.n_heads = 4
        p.n_registers = 2
        XCTAssertEqual(tinyModel.withCString { NecoCAPI.neco_model_load($0, &p, &m) }, NECO_ERR_SHAPE)
        XCTAssertNil(m)

        // A scalar tensor would make the loader index an empty shape: refused up front.
        var w = SafetensorsWriter()
        try w.add("cls_token", shape: [], floats: [1])
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("neco-capi-scalar-\(getpid()).safetensors").path
        try w.write(to: path)
        defer { unlink(path) }
        XCTAssertEqual(path.withCString { NecoCAPI.neco_model_load($0, nil, &m) }, NECO_ERR_FORMAT)
        XCTAssertTrue(lastError().contains("scalar"), lastError())
    }

    func testGettersAndWrongHandleKinds() throws {
        let m = try loadTiny()
        defer { NecoCAPI.neco_model_free(m) }
        XCTAssertEqual(NecoCAPI.neco_model_embed_dim(m), 32)
        XCTAssertEqual(NecoCAPI.neco_model_patch_size(m), 14)
        XCTAssertEqual(NecoCAPI.neco_model_n_heads(m), 4)
        XCTAssertEqual(NecoCAPI.neco_model_n_registers(m), 4)
        XCTAssertEqual(NecoCAPI.neco_model_image_height(m), 56)
        XCTAssertGreaterThan(NecoCAPI.neco_model_n_params(m), 0)
        XCTAssertEqual(NecoCAPI.neco_model_embed_dim(nil), 0)
        XCTAssertEqual(lastError(), "neco_model_embed_dim: model is NULL")
        var ix: OpaquePointer? = nil
        XCTAssertEqual(NecoCAPI.neco_index_init(8, &ix), NECO_OK)
        defer { NecoCAPI.neco_index_free(ix) }
        XCTAssertEqual(NecoCAPI.neco_model_embed_dim(ix), 0)
        XCTAssertEqual(lastError(), "neco_model_embed_dim: model is not a neco_model (it is a neco_index)")
        NecoCAPI.neco_model_release_workspaces(ix)
        XCTAssertEqual(lastError(), "neco_model_release_workspaces: model is not a neco_model (it is a neco_index)")
        NecoCAPI.neco_model_free(ix)    // refused: the index stays alive
        XCTAssertEqual(NecoCAPI.neco_index_dim(ix), 8)
        NecoCAPI.neco_model_free(nil)
    }

    /// The C ABI returns exactly what FeatureExtractor returns.
    func testExtractNCHWEqualsSwiftAPI() throws {
        let m = try loadTiny()
        defer { NecoCAPI.neco_model_free(m) }
        let swiftModel = try WeightLoader.load(path: tinyModel, options: LoadOptions(heads: 4))
        let b = 2, h = 42, w = 56
        let x = pseudoRandom(b * 3 * h * w, seed: 7)
        let f = try x.withUnsafeBufferPointer {
            try FeatureExtractor(model: swiftModel).extract(tensor: $0.baseAddress!, batch: b, height: h, width: w)
        }
        var shape = neco_feature_shape()
        XCTAssertEqual(NecoCAPI.neco_extract_shape_nchw(m, Int32(h), Int32(w), nil, &shape), NECO_OK)
        XCTAssertEqual(shape.n_patches, 12)
        var patches = [Float](repeating: .nan, count: b * shape.patches_per_image)
        var cls = [Float](repeating: .nan, count: b * shape.cls_per_image)
        var regs = [Float](repeating: .nan, count: b * shape.registers_per_image)
        let st = patches.withUnsafeMutableBufferPointer { pp in
            cls.withUnsafeMutableBufferPointer { cp in
                regs.withUnsafeMutableBufferPointer { rp in
                    var out = neco_feature_buffers(patches_capacity: pp.count, cls_capacity: cp.count,
                                                   registers_capacity: rp.count, patches: pp.baseAddress,
                                                   cls: cp.baseAddress, registers: rp.baseAddress)
                    return x.withUnsafeBufferPointer { NecoCAPI.neco_extract_nchw(m, $0.baseAddress, Int32(b), Int32(h), Int32(w), nil, &out) }
                }
            }
        }
        XCTAssertEqual(st, NECO_OK, lastError())
        XCTAssertEqual(patches, f.patches)
        XCTAssertEqual(cls, f.cls)
        XCTAssertEqual(regs, f.registerTokens)

        // The call's workspace stays with the model until released; the next call allocates again
        // and gives the same features.
        XCTAssertGreaterThan(NecoCAPI.neco_model_workspace_bytes(m), 0)
        NecoCAPI.neco_model_release_workspaces(m)
        XCTAssertEqual(NecoCAPI.neco_model_workspace_bytes(m), 0)
        var again = [Float](repeating: .nan, count: patches.count)
        let st2 = again.withUnsafeMutableBufferPointer { pp in
            var out = neco_feature_buffers(patches_capacity: pp.count, cls_capacity: 0, registers_capacity: 0,
                                           patches: pp.baseAddress, cls: nil, registers: nil)
            return x.withUnsafeBufferPointer { NecoCAPI.neco_extract_nchw(m, $0.baseAddress, Int32(b), Int32(h), Int32(w), nil, &out) }
        }
        XCTAssertEqual(st2, NECO_OK, lastError())
        XCTAssertEqual(again, f.patches)
        XCTAssertEqual(NecoCAPI.neco_model_workspace_bytes(nil), 0)
        XCTAssertEqual(lastError(), "neco_model_workspace_bytes: model is NULL")
        NecoCAPI.neco_model_release_workspaces(nil)
    }

    /// RGB input: Preprocess (Pillow-style resize + ImageNet normalisation), then the extractor;
    /// upsampling and L2 normalisation are Normalize's.
    func testExtractRGBEqualsPreprocessThenExtract() throws {
        let m = try loadTiny()
        defer { NecoCAPI.neco_model_free(m) }
        let swiftModel = try WeightLoader.load(path: tinyModel, options: LoadOptions(heads: 4))
        let (h, w) = (30, 45)
        let pixels = (0..<(h * w * 3)).map { UInt8(($0 * 37) % 251) }
        let t = try Preprocess.tensor(RGBImage(width: w, height: h, pixels: pixels), mode: .stretch(height: 56, width: 70))
        let f = try t.data.withUnsafeBufferPointer {
            try FeatureExtractor(model: swiftModel).extract(tensor: $0.baseAddress!, batch: 1, height: 56, width: 70)
        }
        var up = Normalize.upsampleBilinear(f.patches(of: 0), height: 4, width: 5, dim: 32, outHeight: 9, outWidth: 11)
        Normalize.l2Rows(&up, dim: 32)

        var params = NecoCAPI.neco_extract_default_params()
        params.height = 56
        params.width = 70
        var patches = [Float](repeating: .nan, count: 20 * 32)
        func run(_ p: inout neco_extract_params, _ dst: inout [Float]) -> neco_status {
            dst.withUnsafeMutableBufferPointer { dp in
                var out = neco_feature_buffers(patches_capacity: dp.count, cls_capacity: 0, registers_capacity: 0,
                                               patches: dp.baseAddress, cls: nil, registers: nil)
                return pixels.withUnsafeBufferPointer { NecoCAPI.neco_extract_rgb(m, $0.baseAddress, Int32(h), Int32(w), &p, &out) }
            }
        }
        XCTAssertEqual(run(&params, &patches), NECO_OK, lastError())
        XCTAssertEqual(patches, f.patches)
        params.out_height = 9
        params.out_width = 11
        params.l2_normalize = true
        var upsampled = [Float](repeating: .nan, count: 9 * 11 * 32)
        XCTAssertEqual(run(&params, &upsampled), NECO_OK, lastError())
        XCTAssertEqual(upsampled, up)
        // Too small a buffer for the upsampled map.
        var small = [Float](repeating: 0, count: 20 * 32)
        XCTAssertEqual(run(&params, &small), NECO_ERR_SHAPE)
        XCTAssertTrue(lastError().hasPrefix("neco_extract_rgb: out->patches_capacity = 640 floats, need 3168"), lastError())
    }

    func testIndexEqualsPatchIndex() throws {
        let d = 16, m = 500, q = 40, k = 6
        let bank = pseudoRandom(m * d, seed: 11), queries = pseudoRandom(q * d, seed: 12)
        let labels = (0..<m).map { Int32($0 % 9) }
        let reference = try PatchIndex(dim: d)
        try reference.add(bank, labels: labels)
        let want = try reference.search(queries, k: k)

        var ix: OpaquePointer? = nil
        XCTAssertEqual(NecoCAPI.neco_index_init(Int32(d), &ix), NECO_OK)
        defer { NecoCAPI.neco_index_free(ix) }
        XCTAssertEqual(bank.withUnsafeBufferPointer { b in labels.withUnsafeBufferPointer { NecoCAPI.neco_index_add(ix, b.baseAddress, Int64(m), $0.baseAddress) } }, NECO_OK)
        XCTAssertEqual(NecoCAPI.neco_index_size(ix), Int64(m))
        var idx = [Int64](repeating: -1, count: q * k)
        var sim = [Float](repeating: .nan, count: q * k)
        var lab = [Int32](repeating: -2, count: q * k)
        XCTAssertEqual(queries.withUnsafeBufferPointer { NecoCAPI.neco_index_search(ix, $0.baseAddress, Int64(q), Int32(k), &idx, &sim, &lab, q * k) }, NECO_OK)
        XCTAssertEqual(idx, want.indices)
        XCTAssertEqual(sim, want.similarities)
        XCTAssertEqual(lab, want.labels)
        // k beyond the bank, capacity too small.
        XCTAssertEqual(queries.withUnsafeBufferPointer { NecoCAPI.neco_index_search(ix, $0.baseAddress, Int64(q), Int32(m + 1), &idx, &sim, nil, q * k) }, NECO_ERR_SHAPE)
        XCTAssertEqual(queries.withUnsafeBufferPointer { NecoCAPI.neco_index_search(ix, $0.baseAddress, Int64(q), Int32(k), &idx, nil, nil, q * k - 1) }, NECO_ERR_SHAPE)
        // match_patches == search of an unlabelled index of b.
        var idx2 = [Int64](repeating: -1, count: q * k)
        XCTAssertEqual(queries.withUnsafeBufferPointer { a in bank.withUnsafeBufferPointer { b in
            NecoCAPI.neco_match_patches(a.baseAddress, Int64(q), b.baseAddress, Int64(m), Int32(d), Int32(k), &idx2, nil, q * k) } }, NECO_OK)
        XCTAssertEqual(idx2, want.indices)
    }

    /// An older caller's smaller params struct is read up to its struct_size, with defaults beyond;
    /// unknown sizes are NECO_ERR_VERSION before anything else is read.
    func testParamsStructSize() throws {
        let m = try loadTiny()
        defer { NecoCAPI.neco_model_free(m) }
        var p = NecoCAPI.neco_extract_default_params()
        XCTAssertEqual(p.struct_size, MemoryLayout<neco_extract_params>.size)
        p.out_height = 7
        p.out_width = 7
        var shape = neco_feature_shape()
        XCTAssertEqual(NecoCAPI.neco_extract_shape_nchw(m, 56, 56, &p, &shape), NECO_OK, lastError())
        XCTAssertEqual(shape.out_height, 7)
        p.struct_size = MemoryLayout<neco_extract_params>.offset(of: \.out_height)!  // a header before out_height
        XCTAssertEqual(NecoCAPI.neco_extract_shape_nchw(m, 56, 56, &p, &shape), NECO_OK, lastError())
        XCTAssertEqual(shape.out_height, 4)  // the default: one feature per patch
        for bad in [0, 3, MemoryLayout<neco_extract_params>.size + 4, Int.max] {
            p.struct_size = bad
            XCTAssertEqual(NecoCAPI.neco_extract_shape_nchw(m, 56, 56, &p, &shape), NECO_ERR_VERSION, "\(bad)")
            XCTAssertTrue(lastError().contains("struct_size"), lastError())
        }
    }

    /// neco_index_save / neco_index_load give back the same bank; a damaged file is FORMAT.
    func testIndexFileRoundTrip() throws {
        let dir = try TempFolder(prefix: "neco-capi-index")
        defer { dir.cleanup() }
        var ix: OpaquePointer? = nil
        XCTAssertEqual(NecoCAPI.neco_index_init(8, &ix), NECO_OK)
        defer { NecoCAPI.neco_index_free(ix) }
        var rng = TestRNG(seed: 3)
        let rows = rng.floats(40 * 8)
        let labels = (0..<40).map { Int32($0 % 3) }
        XCTAssertEqual(NecoCAPI.neco_index_add(ix, rows, 40, labels), NECO_OK)
        let path = dir.file("bank.necoindex")
        XCTAssertEqual(NecoCAPI.neco_index_save(ix, path), NECO_OK, lastError())
        var back: OpaquePointer? = nil
        XCTAssertEqual(NecoCAPI.neco_index_load(path, &back), NECO_OK, lastError())
        defer { NecoCAPI.neco_index_free(back) }
        XCTAssertEqual(NecoCAPI.neco_index_size(back), 40)
        var a = [Int64](repeating: 0, count: 40 * 3), b = a
        var sa = [Float](repeating: 0, count: 40 * 3), sb = sa
        XCTAssertEqual(NecoCAPI.neco_index_search(ix, rows, 40, 3, &a, &sa, nil, 120), NECO_OK)
        XCTAssertEqual(NecoCAPI.neco_index_search(back, rows, 40, 3, &b, &sb, nil, 120), NECO_OK)
        XCTAssertEqual(a, b)
        XCTAssertEqual(sa, sb)
        var bytes = try FileIO.readAll(path)
        bytes[bytes.count - 1] ^= 0xFF
        try FileIO.writeAtomically(path, bytes: bytes)
        var none: OpaquePointer? = nil
        XCTAssertEqual(NecoCAPI.neco_index_load(path, &none), NECO_ERR_FORMAT)
        XCTAssertNil(none)
        XCTAssertTrue(lastError().contains("checksum"), lastError())
    }

    func testHugeAndNegativeSizesAreStatuses() throws {
        let m = try loadTiny()
        defer { NecoCAPI.neco_model_free(m) }
        var shape = neco_feature_shape()
        XCTAssertEqual(NecoCAPI.neco_extract_shape_rgb(m, Int32.max, Int32.max, nil, &shape), NECO_ERR_OOM)
        XCTAssertEqual(NecoCAPI.neco_extract_shape_nchw(m, Int32.min, 14, nil, &shape), NECO_ERR_INVALID_ARG)
        var p = NecoCAPI.neco_extract_default_params()
        p.resize = Int32(NECO_RESIZE_CROP.rawValue)
        p.height = 16384
        p.width = 16384
        XCTAssertEqual(NecoCAPI.neco_extract_shape_rgb(m, 1, 65535, &p, &shape), NECO_ERR_OOM)
        var ix: OpaquePointer? = nil
        XCTAssertEqual(NecoCAPI.neco_index_init(Int32.max, &ix), NECO_ERR_INVALID_ARG)
        XCTAssertEqual(NecoCAPI.neco_index_init(4, &ix), NECO_OK)
        defer { NecoCAPI.neco_index_free(ix) }
        let one: [Float] = [1, 2, 3, 4]
        XCTAssertEqual(one.withUnsafeBufferPointer { NecoCAPI.neco_index_add(ix, $0.baseAddress, Int64.max, nil) }, NECO_ERR_OOM)
        XCTAssertEqual(one.withUnsafeBufferPointer { NecoCAPI.neco_index_add(ix, $0.baseAddress, Int64.min, nil) }, NECO_ERR_INVALID_ARG)
        XCTAssertEqual(NecoCAPI.neco_set_n_threads(Int32.max), NECO_ERR_INVALID_ARG)
    }
}

// MARK: - The C programs against the built libneco.so (BUILD-NOTES §5)

func runTool(_ exe: String, _ args: [String], environment: [String: String]? = nil) throws -> (Int32, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: exe)
    p.arguments = args
    if let environment { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// The directory holding the test bundle, where `swift test` also links libNecoCAPI.so.
func productsDirectory() -> URL {
    for b in Bundle.allBundles where b.bundlePath.hasSuffix(".xctest") { return b.bundleURL.deletingLastPathComponent() }
    return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
}

final class CProgramTests: XCTestCase {
    /// The scratch directory of `libraryDirectory` (one per test process, shared by the tests of
    /// this class), removed when they are done.
    static var scratchLibraryDirectory: URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("neco-capi-\(getpid())")
    }

    override class func tearDown() {
        try? FileManager.default.removeItem(at: scratchLibraryDirectory)
        super.tearDown()
    }

    /// A scratch directory with the library under its soname, libneco.so.
    func libraryDirectory() throws -> URL {
        let built = productsDirectory().appendingPathComponent("libNecoCAPI.so")
        guard FileManager.default.fileExists(atPath: built.path) else {
            throw XCTSkip("\(built.path) not built (run `swift build --product NecoCAPI` or plain `swift test`)")
        }
        let dir = Self.scratchLibraryDirectory
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let lib = dir.appendingPathComponent("libneco.so")
        try? FileManager.default.removeItem(at: lib)
        try FileManager.default.copyItem(at: built, to: lib)
        return dir
    }

    func compile(_ source: String, _ exe: String, in dir: URL, cxx: Bool = false) throws -> String {
        let out = dir.appendingPathComponent(exe).path
        let std = cxx ? "-std=c++17" : "-std=c11"
        let (rc, log) = try runTool(cxx ? "/usr/bin/c++" : "/usr/bin/cc", [
            std, "-Wall", "-Wextra", "-Werror", "-pedantic", "-pthread",
            "-I", repositoryRoot + "/include", repositoryRoot + "/examples-c/" + source,
            "-L", dir.path, "-lneco", "-lm", "-Wl,-rpath," + dir.path, "-o", out])
        XCTAssertEqual(rc, 0, "compiling \(source): \(log)")
        return out
    }

    func testAbuseProgramPasses() throws {
        let dir = try libraryDirectory()
        let exe = try compile("tests/abuse.c", "abuse", in: dir)
        let (rc, out) = try runTool(exe, [tinyModel])
        XCTAssertEqual(rc, 0, out)
        XCTAssertTrue(out.contains("ABUSE OK"), out)
    }

    func testCExampleCompilesLinksAndRuns() throws {
        let dir = try libraryDirectory()
        let exe = try compile("c/extract_neighbors.c", "c_example", in: dir)
        let a = necoCache + "/photos/chelsea.png", b = necoCache + "/photos/coffee.png"
        guard FileManager.default.fileExists(atPath: a), FileManager.default.fileExists(atPath: b) else {
            throw XCTSkip("sample photos missing: run scripts/setup.sh")
        }
        let (rc, out) = try runTool(exe, [tinyModel, a, b, "4", "112"])
        XCTAssertEqual(rc, 0, out)
        XCTAssertTrue(out.contains("C EXAMPLE OK"), out)
    }

    func testCppExampleCompilesLinksAndRuns() throws {
        let dir = try libraryDirectory()
        let exe = try compile("cpp/batch_neighbors.cpp", "cpp_example", in: dir, cxx: true)
        guard FileManager.default.fileExists(atPath: necoCache + "/photos/chelsea.png") else {
            throw XCTSkip("sample photos missing: run scripts/setup.sh")
        }
        let (rc, out) = try runTool(exe, [tinyModel, necoCache + "/photos", "4", "112"])
        XCTAssertEqual(rc, 0, out)
        XCTAssertTrue(out.contains("CPP EXAMPLE OK"), out)
    }
}
