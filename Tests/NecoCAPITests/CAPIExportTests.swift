import CNecoSupport
import NecoCAPI
import NecoCore
import NecoModel
import NecoONNX
import XCTest
import _NecoTestSupport

#if canImport(Glibc)
import Glibc
#endif

// neco_export_onnx (the "Export" section of neco.h) called from Swift: the mapping of
// neco_export_params onto ONNXExportOptions, every refused argument, and the promise that a
// failed export leaves no file behind.

private func export(_ m: OpaquePointer?, _ path: String, _ p: neco_export_params?) -> neco_status {
    path.withCString { cpath in
        if var p { return NecoCAPI.neco_export_onnx(m, cpath, &p) }
        return NecoCAPI.neco_export_onnx(m, cpath, nil)
    }
}

private func fixed(_ h: Int32, _ w: Int32, _ data: neco_external_data = NECO_EXTERNAL_DATA_AUTO) -> neco_export_params {
    var p = NecoCAPI.neco_export_default_params()
    p.input_size = Int32(NECO_EXPORT_SIZE_FIXED.rawValue)
    p.height = h
    p.width = w
    p.external_data = Int32(data.rawValue)
    return p
}

final class CAPIExportTests: XCTestCase {
    func testDefaultParams() {
        let p = NecoCAPI.neco_export_default_params()
        XCTAssertEqual(p.input_size, Int32(NECO_EXPORT_SIZE_DYNAMIC.rawValue))
        XCTAssertEqual(p.height, 0)
        XCTAssertEqual(p.width, 0)
        XCTAssertEqual(p.external_data, Int32(NECO_EXTERNAL_DATA_AUTO.rawValue))
    }

    /// The C entry point writes byte for byte what ONNXExporter writes for the same model and
    /// options: fixed, the model's own size (0×0), dynamic (NULL params).
    func testExportEqualsSwiftExporter() throws {
        let m = try loadTiny(imageSize: 56)
        defer { NecoCAPI.neco_model_free(m) }
        let swiftModel = try WeightLoader.load(path: tinyModel, options: LoadOptions(heads: 4))
        let dir = try TempFolder(prefix: "neco-capi-export")
        defer { dir.cleanup() }

        let cases: [(String, neco_export_params?, ONNXExportOptions.InputSize)] = [
            ("fixed", fixed(42, 70), .fixed(height: 42, width: 70)),
            ("model size", fixed(0, 0), .fixed(height: 56, width: 56)),
            ("dynamic", nil, .dynamic),
        ]
        for (name, params, size) in cases {
            let c = dir.file("c.onnx"), s = dir.file("swift.onnx")
            XCTAssertEqual(export(m, c, params), NECO_OK, "\(name): \(lastError())")
            XCTAssertEqual(lastError(), "")
            try ONNXExporter.export(model: swiftModel, to: s, options: ONNXExportOptions(inputSize: size))
            let cb = try FileIO.readAll(c), sb = try FileIO.readAll(s)
            XCTAssertGreaterThan(cb.count, 4 * swiftModel.params.count, name)
            XCTAssertTrue(cb == sb, "\(name): the C export (\(cb.count) bytes) differs from the Swift export (\(sb.count) bytes)")

            let info = try ONNXModelInfo.read(path: c)
            XCTAssertEqual(info.inputs.map(\.name), ["pixel_values"])
            XCTAssertEqual(info.outputs.map(\.name), ["patch_tokens", "cls_token", "register_tokens"], name)
            let dims = try XCTUnwrap(info.inputs.first?.dims)
            switch size {
            case .fixed(let h, let w): XCTAssertEqual(Array(dims.dropFirst()), [.value(3), .value(h), .value(w)], name)
            case .dynamic:
                XCTAssertEqual(dims[1], .value(3))
                guard case .param = dims[2], case .param = dims[3] else { return XCTFail("dynamic H, W: \(dims)") }
            }
            try ONNXModelInfo.check(path: c)
        }
        XCTAssertEqual(dir.contents, ["c.onnx", "swift.onnx"])
    }

    func testExternalData() throws {
        let m = try loadTiny(imageSize: 56)
        defer { NecoCAPI.neco_model_free(m) }
        let dir = try TempFolder(prefix: "neco-capi-export")
        defer { dir.cleanup() }
        XCTAssertEqual(export(m, dir.file("m.onnx"), fixed(56, 56, NECO_EXTERNAL_DATA_ALWAYS)), NECO_OK, lastError())
        XCTAssertEqual(dir.contents, ["m.onnx", "m.onnx.data"])
        let info = try ONNXModelInfo.read(path: dir.file("m.onnx"))
        XCTAssertTrue(info.initializers.allSatisfy(\.external), "\(info.initializers.filter { !$0.external }.map(\.name))")
        try ONNXModelInfo.check(path: dir.file("m.onnx"))
        XCTAssertEqual(export(m, dir.file("n.onnx"), fixed(56, 56, NECO_EXTERNAL_DATA_NEVER)), NECO_OK, lastError())
        XCTAssertTrue(try ONNXModelInfo.read(path: dir.file("n.onnx")).initializers.allSatisfy { !$0.external })
    }

    /// Every refused argument: its status, a message naming the function and the problem, and no
    /// file (nor temporary file) left behind.
    func testErrorsLeaveNoFile() throws {
        let m = try loadTiny(imageSize: 56)
        defer { NecoCAPI.neco_model_free(m) }
        let dir = try TempFolder(prefix: "neco-capi-export")
        defer { dir.cleanup() }
        let target = dir.file("bad.onnx")
        var index: OpaquePointer? = nil
        XCTAssertEqual(NecoCAPI.neco_index_init(4, &index), NECO_OK)
        defer { NecoCAPI.neco_index_free(index) }
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: dir.file("plain")))

        func expect(_ st: neco_status, _ want: neco_status, _ fragment: String, line: UInt = #line) {
            XCTAssertEqual(st, want, lastError(), line: line)
            XCTAssertTrue(lastError().hasPrefix("neco_export_onnx: "), lastError(), line: line)
            XCTAssertTrue(lastError().contains(fragment), "'\(lastError())' lacks '\(fragment)'", line: line)
        }
        expect(export(nil, target, nil), NECO_ERR_INVALID_ARG, "model is NULL")
        expect(export(index, target, nil), NECO_ERR_INVALID_ARG, "is not a neco_model")
        expect(NecoCAPI.neco_export_onnx(m, nil, nil), NECO_ERR_INVALID_ARG, "path is NULL")
        expect(export(m, "", nil), NECO_ERR_INVALID_ARG, "path is empty")
        expect(export(m, dir.path, nil), NECO_ERR_INVALID_ARG, "is a directory")
        expect(export(m, "/nonexistent/neco/m.onnx", nil), NECO_ERR_IO, "/nonexistent/neco/m.onnx")
        expect(export(m, dir.file("plain") + "/m.onnx", nil), NECO_ERR_IO, "cannot create")

        var p = NecoCAPI.neco_export_default_params()
        p.input_size = 2
        expect(export(m, target, p), NECO_ERR_INVALID_ARG, "params.input_size = 2")
        p = NecoCAPI.neco_export_default_params()
        p.external_data = -1
        expect(export(m, target, p), NECO_ERR_INVALID_ARG, "params.external_data = -1")
        p = NecoCAPI.neco_export_default_params()
        p.height = 56
        p.width = 56
        expect(export(m, target, p), NECO_ERR_INVALID_ARG, "NECO_EXPORT_SIZE_DYNAMIC")
        expect(export(m, target, fixed(0, 56)), NECO_ERR_INVALID_ARG, "params.height×width = 0×56")
        expect(export(m, target, fixed(-14, 56)), NECO_ERR_INVALID_ARG, "-14")
        expect(export(m, target, fixed(Int32.max, Int32.min)), NECO_ERR_INVALID_ARG, "1...16384")
        expect(export(m, target, fixed(56, 57)), NECO_ERR_SHAPE, "not a multiple of the patch size 14")
        expect(export(m, target, fixed(7, 14)), NECO_ERR_SHAPE, "smaller than one")
        expect(export(m, target, fixed(16380, 16380)), NECO_ERR_SHAPE, "too large")
        XCTAssertEqual(dir.contents, ["plain"])
    }

    /// A write that fails halfway (a file size limit makes write() fail with EFBIG) leaves no new
    /// file and does not touch an existing one.
    func testFailedWriteLeavesNoPartialFile() throws {
        let m = try loadTiny(imageSize: 56)
        defer { NecoCAPI.neco_model_free(m) }
        let dir = try TempFolder(prefix: "neco-capi-export")
        defer { dir.cleanup() }
        let existing = dir.file("existing.onnx")
        XCTAssertEqual(export(m, existing, fixed(56, 56)), NECO_OK, lastError())
        let before = try FileIO.readAll(existing)

        var old = rlimit()
        XCTAssertEqual(getrlimit(RLIMIT_FSIZE_VALUE, &old), 0)
        var small = old
        small.rlim_cur = 4096
        let handler = signal(SIGXFSZ, SIG_IGN)
        XCTAssertEqual(setrlimit(RLIMIT_FSIZE_VALUE, &small), 0)
        let fresh = export(m, dir.file("new.onnx"), fixed(56, 56))
        let freshMessage = lastError()
        let over = export(m, existing, fixed(42, 42))
        let overMessage = lastError()
        XCTAssertEqual(setrlimit(RLIMIT_FSIZE_VALUE, &old), 0)
        signal(SIGXFSZ, handler)

        XCTAssertEqual(fresh, NECO_ERR_IO, freshMessage)
        XCTAssertTrue(freshMessage.contains("new.onnx"), freshMessage)
        XCTAssertEqual(over, NECO_ERR_IO, overMessage)
        XCTAssertEqual(dir.contents, ["existing.onnx"])
        XCTAssertTrue(try FileIO.readAll(existing) == before)
    }
}

/// RLIMIT_FSIZE as the `Int32` that setrlimit takes (Glibc imports it as an enum case).
private let RLIMIT_FSIZE_VALUE = __rlimit_resource_t(RLIMIT_FSIZE.rawValue)
