import NecoCore
import NecoModel
import ONNXBridge

/// What an ONNX file holds, read back through libonnx (tensor bytes are not kept).
public struct ONNXModelInfo: Sendable {
    public struct Value: Sendable, Equatable {
        public var name: String
        public var elemType: Int
        public var dims: [ONNXDim]
        public init(name: String, elemType: Int, dims: [ONNXDim]) {
            self.name = name
            self.elemType = elemType
            self.dims = dims
        }
    }
    public struct Initializer: Sendable, Equatable {
        public var name: String
        public var dataType: Int
        public var dims: [Int]
        public var external: Bool
        public init(name: String, dataType: Int, dims: [Int], external: Bool) {
            self.name = name
            self.dataType = dataType
            self.dims = dims
            self.external = external
        }
    }

    public var irVersion: Int
    public var producerName: String
    public var producerVersion: String
    public var docString: String
    public var graphName: String
    /// (domain, version); the default domain is "".
    public var opsets: [(domain: String, version: Int)]
    public var metadata: [(key: String, value: String)]
    public var inputs: [Value]
    public var outputs: [Value]
    public var initializers: [Initializer]
    /// Op types in graph order.
    public var opTypes: [String]

    public func metadata(_ key: String) -> String? { metadata.first { $0.key == key }?.value }
    public var defaultOpset: Int? { opsets.first { $0.domain == "" || $0.domain == "ai.onnx" }?.version }

    /// Parses `path` with libonnx. Throws `.io` / `.format`.
    public static func read(path: String) throws -> ONNXModelInfo {
        var err = [CChar](repeating: 0, count: 4096)
        var json: UnsafeMutablePointer<CChar>? = nil
        let rc = Path.withCString(path) { onnxb_describe_file($0, &json, &err, err.count) }
        guard rc == 0, let json else {
            let msg = err.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            throw rc == Int32(ONNXB_ERR_IO) ? NecoError.io(msg) : NecoError.format(msg)
        }
        defer { onnxb_string_free(json) }
        let v = try JSONValue.parse(String(cString: json))
        func str(_ j: JSONValue?) -> String { j?.stringValue ?? "" }
        func int(_ j: JSONValue?) -> Int { j?.intValue ?? 0 }
        func value(_ j: JSONValue) -> Value {
            Value(name: str(j["name"]), elemType: int(j["elem_type"]),
                  dims: (j["dims"]?.arrayValue ?? []).map { d in d.intValue.map { .value($0) } ?? .param(d.stringValue ?? "?") })
        }
        return ONNXModelInfo(
            irVersion: int(v["ir_version"]), producerName: str(v["producer_name"]),
            producerVersion: str(v["producer_version"]), docString: str(v["doc_string"]), graphName: str(v["graph_name"]),
            opsets: (v["opset_import"]?.arrayValue ?? []).map { (str($0["domain"]), int($0["version"])) },
            metadata: (v["metadata"]?.arrayValue ?? []).map { (str($0["key"]), str($0["value"])) },
            inputs: (v["inputs"]?.arrayValue ?? []).map(value),
            outputs: (v["outputs"]?.arrayValue ?? []).map(value),
            initializers: (v["initializers"]?.arrayValue ?? []).map {
                Initializer(name: str($0["name"]), dataType: int($0["data_type"]),
                            dims: ($0["dims"]?.arrayValue ?? []).map { $0.intValue ?? -1 }, external: $0["external"]?.boolValue ?? false)
            },
            opTypes: (v["nodes"]?.arrayValue ?? []).map { str($0["op_type"]) })
    }

    /// `onnx::checker::check_model(path)` plus strict shape inference on the file. Throws
    /// `.format` with the checker's message.
    public static func check(path: String) throws {
        var err = [CChar](repeating: 0, count: 4096)
        let rc = Path.withCString(path) { onnxb_check_file($0, &err, err.count) }
        guard rc == 0 else {
            let msg = err.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            throw rc == Int32(ONNXB_ERR_IO) ? NecoError.io(msg) : NecoError.format("\(path): \(msg)")
        }
    }

    /// libonnx and protobuf versions the bridge was built against.
    public static var libraryVersion: String { String(cString: onnxb_library_version()) }
}
