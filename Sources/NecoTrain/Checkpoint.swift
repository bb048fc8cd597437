import NecoCore
import NecoModel

#if canImport(Glibc)
import Glibc
#endif

/// Training checkpoints: one safetensors file holding everything a run needs to continue
/// bit-identically.
///
/// Tensors (all F32, in this order):
/// - the student backbone under the loader's canonical (Meta DINOv2) names: `cls_token`,
///   `pos_embed`, `register_tokens`, `patch_embed.proj.*`, `blocks.N.*`, `norm.*`;
/// - the student head: `projection_head.{0,2,4}.{weight,bias}` (NeCo's names);
/// - the teacher: the same names under `teacher.`;
/// - the AdamW moments as two flat tensors, `optimizer.exp_avg` and `optimizer.exp_avg_sq`
///   (n) in the layout of `Trainer.gradients` (backbone, then head).
///
/// `__metadata__` (strings): `format` = "neco-checkpoint", `version` = "2", `step`, `adamw_step`,
/// `rng_state` (4 hex words), `config` (TrainerConfig JSON), `model` (ViTConfig JSON), `schedule`
/// (the values at `step`, for the record), `checksum` (64-bit hash, hex, of all tensor bytes and
/// then of every other metadata entry, sorted by key).
///
/// Version 1 files (written before the checksum covered the metadata) still load: their checksum
/// covers the tensors only. Either way every metadata value is checked against its meaning before
/// anything changes (`step` within the run's total, `adamw_step` at most `step`, the RNG state
/// valid), so an edited value is refused with `.format` rather than trusted.
///
/// Writes are atomic: a temporary file in the same folder, fsync, rename, then fsync of the
/// folder. A crash at any point leaves either the old checkpoint or the new one, never a
/// partial file under `path` (a stray `path.tmp-<pid>` may remain: the next successful save to
/// `path`, and a run when it starts, delete those of dead processes).
/// Loads check the format, version, every tensor's presence and shape, the configuration and
/// the checksum, and fail with a message naming what is wrong.
///
/// The student backbone keys are the loader's, so `loadModel` (a `WeightLoader` over the
/// checkpoint's backbone tensors) gives a plain `ViTModel`; `exportModel` writes a file with only
/// those tensors, which `WeightLoader.load(path:)` accepts as it is.
public enum Checkpoint {
    public static let format = "neco-checkpoint"
    public static let version = "2"
    /// Older checkpoints whose checksum covers the tensors only.
    public static let legacyVersion = "1"
    public static let teacherPrefix = "teacher."
    public static let firstMomentKey = "optimizer.exp_avg"
    public static let secondMomentKey = "optimizer.exp_avg_sq"

    /// One tensor to write or read.
    struct Entry {
        let name: String
        let shape: [Int]
        let base: UnsafeMutablePointer<Float>
        var count: Int { shape.reduce(1, *) }
    }

    /// The checkpoint's tensors for `trainer`, in file order.
    static func entries(_ trainer: Trainer) -> [Entry] {
        var e: [Entry] = []
        func model(_ m: ViTModel, _ prefix: String) {
            for s in m.params.layout.specs { e.append(Entry(name: prefix + s.name, shape: s.shape, base: m.params[s.offset])) }
        }
        func head(_ h: ProjectionHead, _ prefix: String) {
            for s in h.layout.specs { e.append(Entry(name: prefix + s.name, shape: s.shape, base: h.slab[s.offset])) }
        }
        model(trainer.student, "")
        if let h = trainer.studentHead { head(h, "") }
        if let t = trainer.teacher { model(t, teacherPrefix) }
        if let h = trainer.teacherHead { head(h, teacherPrefix) }
        let n = trainer.optimizer.m.count
        e.append(Entry(name: firstMomentKey, shape: [n], base: trainer.optimizer.m.base))
        e.append(Entry(name: secondMomentKey, shape: [n], base: trainer.optimizer.v.base))
        return e
    }

    // MARK: Save

    /// Writes `trainer`'s complete state to `path` atomically. `extraMetadata` adds string entries
    /// (e.g. `NeCoRun`'s `neco.*` keys) to `__metadata__`; it cannot replace the checkpoint's own keys.
    /// - Throws: `.io` when the file cannot be written (the previous file, if any, is untouched);
    ///   `.invalidArgument` when an extra key collides with a reserved one.
    ///
    /// `extraTensors` are stored after the trainer's (names must not collide with them); their
    /// names are listed in the `extra_tensors` metadata, the checksum covers them, and
    /// `readExtraTensor` reads them back.
    public static func save(_ trainer: Trainer, to path: String, extraMetadata: [String: String] = [:],
                            extraTensors: [ExtraTensor] = []) throws {
        let sv = trainer.schedules.values(at: trainer.step)
        var meta: [String: String] = [
            "format": format,
            "version": version,
            "step": String(trainer.step),
            "adamw_step": String(trainer.optimizer.stepCount),
            "rng_state": trainer.rng.words.map { hex($0) }.joined(separator: ","),
            "config": trainer.config.json.serialized(),
            "model": trainer.student.config.trainingJSON.serialized(),
            "schedule": JSONValue.object([("lr_backbone", .number(sv.lrBackbone)), ("lr_head", .number(sv.lrHead)),
                                          ("weight_decay", .number(sv.weightDecay)),
                                          ("momentum", .number(sv.momentum))]).serialized(),
        ]
        for (k, v) in extraMetadata {
            guard meta[k] == nil, k != "checksum" else {
                throw NecoError.invalidArgument("checkpoint metadata key '\(k)' is reserved")
            }
            meta[k] = v
        }
        var all = entries(trainer)
        let taken = Set(all.map { $0.name })
        for t in extraTensors {
            guard !taken.contains(t.name), !t.name.isEmpty, !t.name.contains(","), t.shape.allSatisfy({ $0 >= 0 }) else {
                throw NecoError.invalidArgument("checkpoint extra tensor name '\(t.name)' is reserved or invalid")
            }
            all.append(Entry(name: t.name, shape: t.shape, base: t.base))
        }
        if !extraTensors.isEmpty { meta["extra_tensors"] = extraTensors.map { $0.name }.joined(separator: ",") }
        try write(all, metadata: meta, to: path)
        // Temporaries of earlier writers of this path that were killed mid-write.
        FileIO.removeStaleTemporaries(of: path)
    }

    /// A tensor stored next to the trainer's state (e.g. NeCo's reference queues).
    public struct ExtraTensor {
        public let name: String
        public let shape: [Int]
        /// Must stay valid during `save`.
        public let base: UnsafeMutablePointer<Float>
        public init(name: String, shape: [Int], base: UnsafeMutablePointer<Float>) {
            self.name = name
            self.shape = shape
            self.base = base
        }
    }

    /// Reads an extra tensor of a checkpoint into `out`, whose count must equal the stored one.
    /// (`load` / `restore` verify the checksum over every tensor, extras included.)
    /// - Throws: `.format` when it is missing or of another size.
    public static func readExtraTensor(path: String, name: String, into out: UnsafeMutableBufferPointer<Float>) throws {
        let file = try openFile(path)
        guard let info = file.info(name), info.dtype == .f32, info.shape.reduce(1, *) == out.count else {
            throw NecoError.format("\(path): checkpoint tensor \(name) is missing or not F32 × \(out.count)")
        }
        try file.readFloat32(name, into: out)
    }

    /// The string metadata of a training checkpoint, after checking its format and version.
    /// - Throws: `.io` / `.format` for an unreadable file or one that is not a libneco checkpoint.
    public static func metadata(path: String) throws -> [String: String] {
        try openFile(path).metadata
    }

    /// The `checksum` value that a checkpoint with the tensors of the file at `path` (in its header
    /// order, which is the order `save` writes) and the metadata `metadata` carries; with
    /// `coveringMetadata` false, the tensors-only checksum of version 1 files. For tools that
    /// rewrite a checkpoint's metadata, and for tests.
    public static func checksum(tensorsOf path: String, metadata: [String: String], coveringMetadata: Bool = true) throws -> String {
        let file = try SafetensorsFile(path: path)
        var hasher = Checksum()
        for name in file.names {
            guard file.info(name)?.dtype == .f32 else { throw NecoError.format("\(path): \(name) is not F32") }
            try file.withRawBytes(name) { raw in if let b = raw.baseAddress { hasher.add(b, words: raw.count / 4) } }
        }
        if coveringMetadata { hasher.add(metadata: metadata) }
        return hex(hasher.value)
    }

    /// Writes only the student (or teacher) backbone under the canonical names: a plain model
    /// file for `WeightLoader.load(path:)`. Metadata records the architecture and the step.
    public static func exportModel(_ trainer: Trainer, to path: String, teacher: Bool = false) throws {
        guard let m = teacher ? trainer.teacher : trainer.student else {
            throw NecoError.invalidArgument("this trainer has no teacher")
        }
        let e = m.params.layout.specs.map { Entry(name: $0.name, shape: $0.shape, base: m.params[$0.offset]) }
        try write(e, metadata: ["format": "neco-model", "version": legacyVersion, "model": m.config.trainingJSON.serialized(),
                                "step": String(trainer.step), "which": teacher ? "teacher" : "student"], to: path)
    }

    /// Writes a model's backbone under the canonical names (a plain model file, as
    /// `exportModel(_:to:teacher:)` writes), with `metadata` added.
    public static func exportModel(_ model: ViTModel, to path: String, metadata: [String: String] = [:]) throws {
        let e = model.params.layout.specs.map { Entry(name: $0.name, shape: $0.shape, base: model.params[$0.offset]) }
        var meta = metadata
        meta["format"] = "neco-model"
        meta["version"] = legacyVersion
        meta["model"] = model.config.trainingJSON.serialized()
        try write(e, metadata: meta, to: path)
    }

    static func write(_ entries: [Entry], metadata: [String: String], to path: String) throws {
        var meta = metadata
        var hasher = Checksum()
        for e in entries { hasher.add(UnsafeRawPointer(e.base), words: e.count) }
        if meta["format"] == format { hasher.add(metadata: meta) }
        meta["checksum"] = hex(hasher.value)
        var members: [(String, JSONValue)] = [("__metadata__", .object(meta.keys.sorted().map { ($0, .string(meta[$0]!)) }))]
        var at = 0
        for e in entries {
            let bytes = e.count * 4
            members.append((e.name, .object([("dtype", .string("F32")), ("shape", .array(e.shape.map { .number(Double($0)) })),
                                             ("data_offsets", .array([.number(Double(at)), .number(Double(at + bytes))]))])))
            at += bytes
        }
        var header = Array(JSONValue.object(members).serialized().utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        try FileIO.writeAtomically(path) { fd in
            var size = UInt64(header.count).littleEndian
            try withUnsafeBytes(of: &size) { try FileIO.writeAll(fd, $0, path: path) }
            try header.withUnsafeBytes { try FileIO.writeAll(fd, $0, path: path) }
            for e in entries {
                try FileIO.writeAll(fd, UnsafeRawBufferPointer(start: e.base, count: e.count * 4), path: path)
            }
        }
        // Make the rename itself durable.
        let dir = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        let dfd = FileIO.open(dir.isEmpty ? "/" : dir, O_RDONLY | O_CLOEXEC)
        if dfd >= 0 {
            _ = fsync(dfd)
            close(dfd)
        }
    }

    // MARK: Load

    /// A new trainer with the checkpoint's model, configuration and full training state.
    public static func load(path: String) throws -> Trainer {
        let file = try openFile(path)
        let modelConfig = try parse(file, "model") { try ViTConfig(trainingJSON: $0) }
        let params = try ViTParameters(config: modelConfig)
        let config = try parse(file, "config") { try TrainerConfig(json: $0) }
        let student = ViTModel(params: params, source: path, scheme: .meta)
        let trainer = try Trainer(student: student, config: config)
        try restore(trainer, from: file)
        return trainer
    }

    /// Loads the checkpoint's state into an existing trainer, whose model architecture and
    /// configuration must equal the checkpoint's.
    /// - Throws: `.invalidArgument` naming the differing settings; `.format` for a corrupt file.
    public static func restore(_ trainer: Trainer, from path: String) throws {
        try restore(trainer, from: try openFile(path))
    }

    static func restore(_ trainer: Trainer, from file: SafetensorsFile) throws {
        let state = try validate(trainer, file)
        // Everything is checked: copy.
        for e in entries(trainer) {
            try file.readFloat32(e.name, into: UnsafeMutableBufferPointer(start: e.base, count: e.count))
        }
        trainer.step = state.step
        trainer.optimizer.stepCount = state.adamStep
        trainer.rng = state.rng
    }

    /// The trainer's scalar state in a checkpoint, checked.
    struct TrainerState {
        let step: Int
        let adamStep: Int
        let rng: NecoRNG
    }

    /// Checks everything `restore` would apply (architecture, configuration, tensors, checksum,
    /// metadata values) without changing `trainer`.
    /// - Throws: `.invalidArgument` for a checkpoint of other settings; `.format` for a corrupt or
    ///   edited one.
    static func validate(_ trainer: Trainer, _ file: SafetensorsFile) throws -> TrainerState {
        let path = file.path
        let modelConfig = try parse(file, "model") { try ViTConfig(trainingJSON: $0) }
        let config = try parse(file, "config") { try TrainerConfig(json: $0) }
        var diffs: [String] = []
        var mine = trainer.student.config, theirs = modelConfig
        mine.name = ""
        theirs.name = ""
        if mine != theirs {
            diffs.append("model \(modelConfig.trainingJSON.serialized()) (trainer: \(trainer.student.config.trainingJSON.serialized()))")
        }
        if config != trainer.config {
            let a = config.json, b = trainer.config.json
            for (k, v) in a.objectValue ?? [] where b[k] != v {
                diffs.append("\(k) \(v.serialized()) (trainer: \(b[k]?.serialized() ?? "none"))")
            }
        }
        guard diffs.isEmpty else {
            throw NecoError.invalidArgument("\(path): checkpoint does not match this trainer: \(diffs.joined(separator: "; "))")
        }
        let entries = entries(trainer)
        // Presence and shapes.
        var problems: [String] = []
        for e in entries {
            guard let info = file.info(e.name) else { problems.append("missing \(e.name)"); continue }
            if info.dtype != .f32 || info.shape != e.shape {
                problems.append("\(e.name) is \(info.dtype.rawValue) \(info.shape), expected F32 \(e.shape)")
            }
        }
        guard problems.isEmpty else {
            throw NecoError.format("\(path): checkpoint tensors do not fit: \(problems.prefix(8).joined(separator: "; "))\(problems.count > 8 ? "; …" : "")")
        }
        // Checksum over the stored bytes, in our order.
        guard let stored = file.metadata["checksum"], let want = UInt64(stored, radix: 16) else {
            throw NecoError.format("\(path): checkpoint has no checksum")
        }
        var hasher = Checksum()
        for e in entries {
            try file.withRawBytes(e.name) { raw in if let b = raw.baseAddress { hasher.add(b, words: raw.count / 4) } }
        }
        for name in (file.metadata["extra_tensors"] ?? "").split(separator: ",") {
            guard let info = file.info(String(name)), info.dtype == .f32 else {
                throw NecoError.format("\(path): checkpoint lists extra tensor \(name) but does not hold it as F32")
            }
            try file.withRawBytes(String(name)) { raw in if let b = raw.baseAddress { hasher.add(b, words: raw.count / 4) } }
        }
        if file.metadata["version"] != legacyVersion { hasher.add(metadata: file.metadata) }
        let got = hasher.value
        guard got == want else {
            throw NecoError.format("\(path): checkpoint checksum mismatch (stored \(stored), data \(hex(got))): the file is corrupt")
        }
        // Scalars, each against its meaning.
        guard let stepText = file.metadata["step"], let adamText = file.metadata["adamw_step"],
              let rngText = file.metadata["rng_state"] else {
            throw NecoError.format("\(path): checkpoint metadata lacks step / adamw_step / rng_state")
        }
        let total = trainer.config.totalSteps
        guard let step = Int(stepText), step >= 0, step <= total else {
            throw NecoError.format("\(path): checkpoint step '\(clip(stepText))' is not a step count in 0...\(total) (the run's total)")
        }
        guard let adamStep = Int(adamText), adamStep >= 0, adamStep <= step else {
            throw NecoError.format("\(path): checkpoint adamw_step '\(clip(adamText))' is not in 0...\(step) (the step count)")
        }
        let parts = rngText.split(separator: ",", omittingEmptySubsequences: false)
        let words = parts.compactMap { UInt64($0, radix: 16) }
        guard words.count == parts.count, let rng = try? NecoRNG(state: words) else {
            throw NecoError.format("\(path): bad rng_state '\(clip(rngText))'")
        }
        return TrainerState(step: step, adamStep: adamStep, rng: rng)
    }

    /// At most 40 characters of a metadata value, for messages.
    static func clip(_ s: String) -> String { s.count <= 40 ? s : String(s.prefix(40)) + "…" }

    /// The student (or teacher) backbone of a checkpoint as a `ViTModel`, through
    /// `WeightLoader` (the checkpoint keys are the loader's canonical keys).
    public static func loadModel(path: String, teacher: Bool = false) throws -> ViTModel {
        let file = try openFile(path)
        // The student is what `WeightLoader` reads from a checkpoint by itself (with the recorded
        // architecture, extra tensors skipped); the teacher needs the prefix view below.
        guard teacher else { return try WeightLoader.load(path: path) }
        let c = try parse(file, "model") { try ViTConfig(trainingJSON: $0) }
        let source = ModelSource(file: file, prefix: teacherPrefix)
        guard !source.tensorNames.isEmpty else { throw NecoError.format("\(path): checkpoint has no teacher backbone") }
        let model = try WeightLoader.load(source: source,
                                          options: LoadOptions(heads: c.heads, registers: c.registers, posEmbedRule: c.posEmbedRule,
                                                              ropeBF16Periods: c.rope?.bf16Periods),
                                          sourceName: path)
        return model
    }

    /// The backbone tensors of a checkpoint (student: unprefixed canonical names; teacher: the
    /// `teacher.` ones, prefix removed), for `WeightLoader.load(source:)`.
    public struct ModelSource: TensorSource {
        public let file: SafetensorsFile
        public let prefix: String
        public let tensorNames: [String]

        public init(file: SafetensorsFile, prefix: String) {
            self.file = file
            self.prefix = prefix
            // Tensors stored next to the state (a NeCo run's reference queues) are not part of it.
            let extras = Set((file.metadata["extra_tensors"] ?? "").split(separator: ",").map(String.init))
            tensorNames = file.names.compactMap { n -> String? in
                guard n.hasPrefix(prefix), !extras.contains(n) else { return nil }
                let rest = String(n.dropFirst(prefix.count))
                if rest.hasPrefix(HeadLayout.prefix) || rest.hasPrefix("optimizer.") || rest.hasPrefix(teacherPrefix) { return nil }
                return rest
            }
        }

        public func tensorShape(_ name: String) -> [Int]? { file.info(prefix + name)?.shape }
        public func readTensor(_ name: String, into out: UnsafeMutableBufferPointer<Float>) throws {
            try file.readFloat32(prefix + name, into: out)
        }
    }

    // MARK: Helpers

    static func openFile(_ path: String) throws -> SafetensorsFile {
        let file = try SafetensorsFile(path: path)
        guard file.metadata["format"] == format else {
            throw NecoError.format("\(path): not a libneco training checkpoint (metadata format '\(file.metadata["format"] ?? "none")', expected '\(format)')")
        }
        guard file.metadata["version"] == version || file.metadata["version"] == legacyVersion else {
            throw NecoError.format("\(path): checkpoint version \(file.metadata["version"] ?? "none") is not supported (expected \(version) or \(legacyVersion))")
        }
        return file
    }

    static func parse<T>(_ file: SafetensorsFile, _ key: String, _ make: (JSONValue) throws -> T) throws -> T {
        guard let text = file.metadata[key] else { throw NecoError.format("\(file.path): checkpoint metadata has no '\(key)'") }
        do {
            return try make(try JSONValue.parse(text))
        } catch let e as NecoError {
            throw NecoError(e.kind, "\(file.path): checkpoint '\(key)': \(e.message)")
        }
    }

    static func hex(_ v: UInt64) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }
}
