import NecoCore
import ONNXBridge

#if canImport(Glibc)
import Glibc
#endif

/// A node attribute value.
enum ONNXAttribute {
    case int(Int)
    case float(Float)
    case ints([Int])
    case string(String)
}

/// One dimension of a graph input or output: a number or a symbolic name.
public enum ONNXDim: Equatable, Sendable, CustomStringConvertible {
    case value(Int)
    case param(String)
    public var description: String {
        switch self {
        case .value(let v): return "\(v)"
        case .param(let p): return p
        }
    }
}

/// Thin owner of an `onnxb_model`: adds values, nodes and constants with unique names, and turns
/// the bridge's error codes into `NecoError`s. Node names double as their (first) output names.
final class GraphBuilder {
    let model: OpaquePointer
    private var used: Set<String> = []
    private var constants: [String: String] = [:]
    private(set) var nodeCount = 0
    private(set) var initializerCount = 0

    init(graphName: String, irVersion: Int, opset: Int) throws {
        guard let m = onnxb_model_create(graphName, Int64(irVersion), Int64(opset)) else {
            throw NecoError(.outOfMemory, "cannot create an ONNX model")
        }
        model = m
    }

    deinit { onnxb_model_free(model) }

    var lastError: String { String(cString: onnxb_last_error(model)) }

    /// Maps a bridge status to a `NecoError`; `context` says what was being done.
    func check(_ rc: Int32, _ context: @autoclosure () -> String) throws {
        guard rc < 0 else { return }
        let msg = "\(context()): \(lastError)"
        switch rc {
        case Int32(ONNXB_ERR_IO): throw NecoError.io(msg)
        case Int32(ONNXB_ERR_SIZE), Int32(ONNXB_ERR_OOM): throw NecoError(.outOfMemory, msg)
        default: throw NecoError(.internal, msg)
        }
    }

    /// `base`, or `base_2`, `base_3` … when taken.
    func unique(_ base: String) -> String {
        var name = base, k = 1
        while used.contains(name) { k += 1; name = "\(base)_\(k)" }
        used.insert(name)
        return name
    }

    // MARK: Model fields

    func setProducer(name: String, version: String) throws {
        try check(onnxb_set_producer(model, name, version), "producer")
    }

    func setDocStrings(model doc: String, graph: String) throws {
        try check(onnxb_set_doc_strings(model, doc, graph), "doc strings")
    }

    func addMetadata(_ key: String, _ value: String) throws {
        try check(onnxb_add_metadata(model, key, value), "metadata \(key)")
    }

    // MARK: Values

    private func withDims<R>(_ dims: [ONNXDim], _ body: ([Int64], UnsafePointer<UnsafePointer<CChar>?>) throws -> R) rethrows -> R {
        let values = dims.map { d -> Int64 in if case .value(let v) = d { return Int64(v) } else { return -1 } }
        let params = dims.map { d -> String in if case .param(let p) = d { return p } else { return "" } }
        return try withCStrings(params) { try body(values, $0) }
    }

    func addInput(_ name: String, dims: [ONNXDim], doc: String) throws {
        used.insert(name)
        try withDims(dims) { v, p in
            try check(onnxb_add_input(model, name, Int32(ONNXB_FLOAT), Int32(dims.count), v, p, doc), "input \(name)")
        }
    }

    func addOutput(_ name: String, dims: [ONNXDim], doc: String) throws {
        try withDims(dims) { v, p in
            try check(onnxb_add_output(model, name, Int32(ONNXB_FLOAT), Int32(dims.count), v, p, doc), "output \(name)")
        }
    }

    /// A float initializer. With `externalLocation` the bytes are only referenced (they must stay
    /// alive until `save`) and written to that data file; otherwise they are copied now.
    func addInitializer(_ name: String, shape: [Int], data: UnsafeBufferPointer<Float>, externalLocation: String?) throws {
        precondition(!used.contains(name), "initializer name \(name) is taken")
        used.insert(name)
        let dims = shape.map(Int64.init)
        let bytes = data.count * MemoryLayout<Float>.stride
        if let loc = externalLocation {
            try check(onnxb_add_external_initializer(model, name, Int32(ONNXB_FLOAT), Int32(dims.count), dims,
                                                     data.baseAddress, bytes, Path.bytes(loc).map { CChar(bitPattern: $0) } + [0]),
                      "initializer \(name)")
        } else {
            try check(onnxb_add_initializer(model, name, Int32(ONNXB_FLOAT), Int32(dims.count), dims,
                                            data.baseAddress, bytes), "initializer \(name)")
        }
        initializerCount += 1
    }

    // MARK: Nodes

    /// Adds a node named `unique(name)`; its outputs are that name (one output) or `name:i`.
    @discardableResult
    func node(_ op: String, _ inputs: [String], name: String, outputs: Int = 1,
              attributes: [(String, ONNXAttribute)] = []) throws -> [String] {
        let nodeName = unique(name)
        let outs = outputs == 1 ? [nodeName] : (0..<outputs).map { unique("\(nodeName):\($0)") }
        let index = try withCStrings(inputs) { ip in
            try withCStrings(outs) { op_ in
                let rc = onnxb_add_node(model, op, nodeName, Int32(inputs.count), ip, Int32(outs.count), op_)
                try check(rc, "node \(nodeName) (\(op))")
                return rc
            }
        }
        for (key, value) in attributes {
            let rc: Int32
            switch value {
            case .int(let v): rc = onnxb_node_attr_int(model, index, key, Int64(v))
            case .float(let v): rc = onnxb_node_attr_float(model, index, key, v)
            case .ints(let v): rc = v.map(Int64.init).withUnsafeBufferPointer {
                onnxb_node_attr_ints(model, index, key, Int32(v.count), $0.baseAddress)
            }
            case .string(let v): rc = onnxb_node_attr_string(model, index, key, v)
            }
            try check(rc, "attribute \(key) of \(nodeName)")
        }
        nodeCount += 1
        return outs
    }

    /// Single-output shorthand.
    func op(_ op: String, _ inputs: [String], _ name: String, _ attributes: [(String, ONNXAttribute)] = []) throws -> String {
        try node(op, inputs, name: name, attributes: attributes)[0]
    }

    // MARK: Constants (Constant nodes, so that the initializers are exactly the parameters)

    private func constant(key: String, name: String, elemType: Int32, shape: [Int], bytes: UnsafeRawBufferPointer) throws -> String {
        if let c = constants[key] { return c }
        let out = unique("const/" + name)
        let dims = shape.map(Int64.init)
        let index = try withCStrings([out]) { op_ in
            let rc = onnxb_add_node(model, "Constant", out, 0, nil, 1, op_)
            try check(rc, "constant \(out)")
            return rc
        }
        try check(onnxb_node_attr_tensor(model, index, "value", elemType, Int32(dims.count), dims, bytes.baseAddress,
                                         bytes.count), "constant \(out)")
        nodeCount += 1
        constants[key] = out
        return out
    }

    /// An int64 constant; `shape` nil means 1-D, `[]` a scalar.
    func ints(_ v: [Int], shape: [Int]? = nil, name: String = "ints") throws -> String {
        let s = shape ?? [v.count]
        let key = "i64 \(s) \(v)"
        return try v.map(Int64.init).withUnsafeBytes {
            try constant(key: key, name: name, elemType: Int32(ONNXB_INT64), shape: s, bytes: $0)
        }
    }

    /// A float constant; `shape` nil means 1-D, `[]` a scalar. Large ones are not de-duplicated.
    func floats(_ v: [Float], shape: [Int]? = nil, name: String = "floats") throws -> String {
        let s = shape ?? [v.count]
        let key = v.count <= 64 ? "f32 \(s) \(v.map(\.bitPattern))" : "f32 unique \(used.count)"
        return try v.withUnsafeBytes {
            try constant(key: key, name: name, elemType: Int32(ONNXB_FLOAT), shape: s, bytes: $0)
        }
    }

    func scalar(_ v: Float, name: String = "scalar") throws -> String { try floats([v], shape: [], name: name) }

    /// Builds a value once per `key` (e.g. a shape tensor computed from the input) and reuses it.
    func memo(_ key: String, _ make: () throws -> String) rethrows -> String {
        if let v = constants["memo " + key] { return v }
        let v = try make()
        constants["memo " + key] = v
        return v
    }

    // MARK: Check and save

    func checkModel() throws {
        let rc = onnxb_check(model)
        if rc == Int32(ONNXB_ERR_OOM) { throw NecoError(.outOfMemory, "checking the exported graph: \(lastError)") }
        guard rc == 0 else {
            throw NecoError(.internal, "the exported graph failed the ONNX checker (a libneco bug): \(lastError)")
        }
    }

    var byteSize: Int { Int(onnxb_byte_size(model)) }

    func save(to path: String) throws {
        try check(Path.withCString(path) { onnxb_save(model, $0) }, "cannot write the ONNX model")
    }
}

/// Calls `body` with a C array of C strings that lives for the duration of the call.
func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) throws -> R) rethrows -> R {
    let dup = strings.map { strdup($0) }
    defer { dup.forEach { free($0) } }
    let ptrs: [UnsafePointer<CChar>?] = dup.map { $0.map { UnsafePointer($0) } }
    return try ptrs.withUnsafeBufferPointer { buf in
        if let base = buf.baseAddress { return try body(base) }
        var empty: UnsafePointer<CChar>? = nil
        return try withUnsafePointer(to: &empty) { try body($0) }
    }
}
