import NecoCore
import NecoModel

/// Builds the encoder graph of one `ViTModel` (NECO-SPEC §2.2) into a `GraphBuilder`.
///
/// Letters: N batch (dynamic), C channels, H×W input, P patch, h = H/P, w = W/P, M = h·w,
/// R registers, T = 1 + R + M, D embed dim, E head dim, G position grid side.
///
/// Between the embedding and the final split the residual stream is kept 2-D, (N·T, D), so every
/// Linear is one `Gemm(x, W, b, transB = 1)` on the PyTorch-layout weight (out, in).
struct ViTGraph {
    let model: ViTModel
    let options: ONNXExportOptions
    let graph: GraphBuilder
    let externalLocation: String?

    struct Built {
        var inputDims: [ONNXDim]
        var outputs: [(name: String, dims: [ONNXDim])]
    }

    /// Fixed (h, w) patch grid, or nil for a dynamic input size.
    var fixedGrid: (h: Int, w: Int)? {
        if case .fixed(let h, let w) = options.inputSize { return (h / model.config.patchSize, w / model.config.patchSize) }
        return nil
    }

    func build() throws -> Built {
        let c = model.config, g = graph
        let d = c.embedDim, r = c.registers
        let input = ONNXExporter.inputName

        // Input.
        let inputDims: [ONNXDim]
        if case .fixed(let h, let w) = options.inputSize {
            inputDims = [.param("batch"), .value(c.inChannels), .value(h), .value(w)]
        } else {
            inputDims = [.param("batch"), .value(c.inChannels), .param("height"), .param("width")]
        }
        try g.addInput(input, dims: inputDims,
                       doc: "float32 (N, \(c.inChannels), H, W), normalised: (pixel/255 − mean)/std with mean \(options.imageMean) and std \(options.imageStd); H, W multiples of \(c.patchSize)")

        // Parameters, under their canonical keys, in layout order.
        let p = model.params
        for spec in p.layout.specs {
            guard let t = p.tensor(spec.name) else { throw NecoError(.internal, "parameter \(spec.name) missing") }
            try g.addInitializer(ONNXExporter.initializerName(forKey: spec.name), shape: spec.shape,
                                 data: UnsafeBufferPointer(t), externalLocation: externalLocation)
        }
        if let head = options.head {
            for l in head.layers {
                try l.weight.withUnsafeBufferPointer {
                    try g.addInitializer(l.weightKey, shape: [l.outDim, l.inDim], data: $0, externalLocation: externalLocation)
                }
                try l.bias.withUnsafeBufferPointer {
                    try g.addInitializer(l.biasKey, shape: [l.outDim], data: $0, externalLocation: externalLocation)
                }
            }
        }
        func param(_ key: String) -> String { ONNXExporter.initializerName(forKey: key) }

        // N as a 1-D tensor [N].
        let batch = try g.op("Shape", [input], "batch_size", [("start", .int(0)), ("end", .int(1))])

        // 1. Patch embedding: Conv P×P stride P → (N, D, h, w) → (N, M, D), row-major over the grid.
        let conv = try g.op("Conv", [input, "patch_embed.proj.weight", "patch_embed.proj.bias"], "patch_embed/proj",
                            [("kernel_shape", .ints([c.patchSize, c.patchSize])), ("strides", .ints([c.patchSize, c.patchSize]))])
        let flat = try g.op("Reshape", [conv, try g.ints([0, d, -1])], "patch_embed/flatten")
        let patches = try g.op("Transpose", [flat], "patch_embed/tokens", [("perm", .ints([0, 2, 1]))])

        // 2. Position embedding: CLS slot as-is, the G×G table resampled to h×w (none with RoPE).
        let patchTokens: String, cls: String
        if c.rope != nil {
            patchTokens = patches
            cls = param("cls_token")
        } else {
        let posPatches = try positionTable(batch: batch)
        patchTokens = try g.op("Add", [patches, posPatches], "pos_embed/add")
        let posCLS = try g.op("Slice", [param("pos_embed"), try g.ints([0]), try g.ints([1]), try g.ints([1])], "pos_embed/cls_slot")
        cls = try g.op("Add", [param("cls_token"), posCLS], "cls/with_pos")
        }
        let clsBatch = try g.op("Expand", [cls, try g.op("Concat", [batch, try g.ints([1, d])], "cls/shape", [("axis", .int(0))])],
                                "cls/expand")
        var parts = [clsBatch]
        if r > 0 {
            // Registers come after CLS and never get a position (NECO-SPEC §2.2 step 4).
            let shape = try g.op("Concat", [batch, try g.ints([r, d])], "registers/shape", [("axis", .int(0))])
            parts.append(try g.op("Expand", [param("register_tokens"), shape], "registers/expand"))
        }
        parts.append(patchTokens)
        let tokens = try g.op("Concat", parts, "tokens", [("axis", .int(1))])              // (N, T, D)
        var x = try g.op("Reshape", [tokens, try g.ints([-1, d])], "tokens/flatten")        // (N·T, D)

        // 3. Blocks.
        for i in 0..<c.depth { x = try block(i, x: x, batch: batch) }

        // 4. Final LayerNorm, back to (N, T, D), split.
        let normed = try layerNorm(x, "norm", "norm")
        let out3 = try g.op("Reshape", [normed, try batchShape([d], batch: batch, tokens: true)], "norm/unflatten")
        var outputs: [(name: String, dims: [ONNXDim])] = []
        let mDim: ONNXDim = fixedGrid.map { .value($0.h * $0.w) } ?? .param("num_patches")

        try g.node("Slice", [out3, try g.ints([1 + r]), try g.ints([Int(Int64.max)]), try g.ints([1])],
                   name: ONNXExporter.patchTokensOutput)
        outputs.append((ONNXExporter.patchTokensOutput, [.param("batch"), mDim, .value(d)]))
        try g.node("Gather", [out3, try g.ints([0], shape: [], name: "index0")], name: ONNXExporter.clsTokenOutput,
                   attributes: [("axis", .int(1))])
        outputs.append((ONNXExporter.clsTokenOutput, [.param("batch"), .value(d)]))
        if r > 0 {
            try g.node("Slice", [out3, try g.ints([1]), try g.ints([1 + r]), try g.ints([1])],
                       name: ONNXExporter.registerTokensOutput)
            outputs.append((ONNXExporter.registerTokensOutput, [.param("batch"), .value(r), .value(d)]))
        }
        if let head = options.head {
            try projectionHead(head, patches: ONNXExporter.patchTokensOutput, batch: batch)
            outputs.append((ONNXExporter.projectionOutput, [.param("batch"), mDim, .value(head.outputDim)]))
        }
        let docs = [
            ONNXExporter.patchTokensOutput: "final-LayerNorm patch tokens, row-major over the h×w patch grid",
            ONNXExporter.clsTokenOutput: "final-LayerNorm CLS token",
            ONNXExporter.registerTokensOutput: "final-LayerNorm register tokens",
            ONNXExporter.projectionOutput: "projection head on every patch token, L2-normalised (the training embedding)",
        ]
        for o in outputs { try g.addOutput(o.name, dims: o.dims, doc: docs[o.name] ?? "") }
        try describe(outputs: outputs)
        return Built(inputDims: inputDims, outputs: outputs)
    }

    // MARK: Shapes

    /// Shape tensor for reshaping a flat (N·T, …) or (N·M, …) tensor to (N, T or M, tail…): a
    /// constant [−1, T, tail…] for a fixed size, else Concat([N], [−1, tail…]).
    func batchShape(_ tail: [Int], batch: String, tokens: Bool) throws -> String {
        if let grid = fixedGrid {
            let m = grid.h * grid.w
            return try graph.ints([-1, tokens ? 1 + model.config.registers + m : m] + tail)
        }
        let tag = tail.map(String.init).joined(separator: "x")
        return try graph.memo("batch shape \(tag)") {
            try graph.op("Concat", [batch, try graph.ints([-1] + tail)], "shape/batch_\(tag)", [("axis", .int(0))])
        }
    }

    // MARK: Layers

    func layerNorm(_ x: String, _ prefix: String, _ name: String) throws -> String {
        try graph.op("LayerNormalization", [x, prefix + ".weight", prefix + ".bias"], name,
                     [("axis", .int(-1)), ("epsilon", .float(model.config.layerNormEps))])
    }

    /// y = x·Wᵀ + b with W (out, in) stored as in PyTorch.
    func linear(_ x: String, _ prefix: String, _ name: String) throws -> String {
        try graph.op("Gemm", [x, prefix + ".weight", prefix + ".bias"], name, [("transB", .int(1))])
    }

    /// Exact GELU: ½·x·(1 + erf(x/√2)) (opset 17 has no Gelu op).
    func gelu(_ x: String, _ name: String) throws -> String {
        let g = graph
        let scaled = try g.op("Mul", [x, try g.scalar(Float(0.5.squareRoot()), name: "inv_sqrt2")], name + "/scale")
        let erf = try g.op("Erf", [scaled], name + "/erf")
        let onePlus = try g.op("Add", [erf, try g.scalar(1, name: "one")], name + "/one_plus")
        let half = try g.op("Mul", [x, try g.scalar(0.5, name: "half")], name + "/half_x")
        return try g.op("Mul", [half, onePlus], name)
    }

    /// One pre-norm block on the flat residual stream x (N·T, D).
    func block(_ i: Int, x: String, batch: String) throws -> String {
        let c = model.config, g = graph
        let d = c.embedDim, e = c.headDim
        let p = "blocks.\(i)"

        // Attention: qkv (N·T, 3D) → (N, T, 3, heads, E); feature k ↦ (k ÷ D, (k mod D) ÷ E, k mod E).
        let y = try layerNorm(x, p + ".norm1", p + "/norm1")
        let qkv = try linear(y, p + ".attn.qkv", p + "/attn/qkv")
        let qkv5 = try g.op("Reshape", [qkv, try batchShape([3, c.heads, e], batch: batch, tokens: true)], p + "/attn/split_heads")
        func pick(_ which: Int, _ perm: [Int], _ name: String) throws -> String {
            let one = try g.op("Gather", [qkv5, try g.ints([which], shape: [], name: "index\(which)")], p + "/attn/\(name)_gather",
                               [("axis", .int(2))])                                          // (N, T, heads, E)
            return try g.op("Transpose", [one], p + "/attn/\(name)", [("perm", .ints(perm))])
        }
        var q = try pick(0, [0, 2, 1, 3], "q")                                              // (N, heads, T, E)
        var kT = try pick(1, [0, 2, 3, 1], "k_t")                                           // (N, heads, E, T)
        if c.rope != nil {
            q = try applyRoPE(q, p + "/attn/q_rope")
            let k = try applyRoPE(try g.op("Transpose", [kT], p + "/attn/k", [("perm", .ints([0, 1, 3, 2]))]), p + "/attn/k_rope")
            kT = try g.op("Transpose", [k], p + "/attn/k_rope_t", [("perm", .ints([0, 1, 3, 2]))])
        }
        let v = try pick(2, [0, 2, 1, 3], "v")                                              // (N, heads, T, E)
        let scores = try g.op("MatMul", [q, kT], p + "/attn/scores")                         // (N, heads, T, T)
        let scaled = try g.op("Mul", [scores, try g.scalar(1 / Float(e).squareRoot(), name: "attn_scale")], p + "/attn/scaled")
        let probs = try g.op("Softmax", [scaled], p + "/attn/softmax", [("axis", .int(-1))])
        let ctx = try g.op("MatMul", [probs, v], p + "/attn/context")                        // (N, heads, T, E)
        let merged = try g.op("Transpose", [ctx], p + "/attn/merge_heads", [("perm", .ints([0, 2, 1, 3]))])
        let flat = try g.op("Reshape", [merged, try g.ints([-1, d])], p + "/attn/flatten")  // (N·T, D)
        var branch = try linear(flat, p + ".attn.proj", p + "/attn/proj")
        if c.layerScale { branch = try g.op("Mul", [branch, p + ".ls1.gamma"], p + "/ls1") }
        var out = try g.op("Add", [x, branch], p + "/residual1")

        // Feed-forward.
        let y2 = try layerNorm(out, p + ".norm2", p + "/norm2")
        switch c.ffn {
        case .mlp:
            let h = try linear(y2, p + ".mlp.fc1", p + "/mlp/fc1")
            branch = try linear(try gelu(h, p + "/mlp/gelu"), p + ".mlp.fc2", p + "/mlp/fc2")
        case .swiglu:
            // x1, x2 = split(w12(y), 2); hidden = silu(x1)·x2.
            let h = try linear(y2, p + ".mlp.w12", p + "/mlp/w12")
            let halves = try g.node("Split", [h, try g.ints([c.mlpHidden, c.mlpHidden])], name: p + "/mlp/split", outputs: 2,
                                    attributes: [("axis", .int(1))])
            let sig = try g.op("Sigmoid", [halves[0]], p + "/mlp/sigmoid")
            let silu = try g.op("Mul", [halves[0], sig], p + "/mlp/silu")
            let hidden = try g.op("Mul", [silu, halves[1]], p + "/mlp/gate")
            branch = try linear(hidden, p + ".mlp.w3", p + "/mlp/w3")
        }
        if c.layerScale { branch = try g.op("Mul", [branch, p + ".ls2.gamma"], p + "/ls2") }
        out = try g.op("Add", [out, branch], p + "/residual2")
        return out
    }

    // MARK: Position table

    /// (1, M, D): the patch part of pos_embed resampled to the h×w grid with the model's rule.
    func positionTable(batch: String) throws -> String {
        let c = model.config, g = graph
        let d = c.embedDim, gs = c.posGrid
        let pos = ONNXExporter.initializerName(forKey: "pos_embed")
        let table = try g.op("Slice", [pos, try g.ints([1]), try g.ints([Int(Int64.max)]), try g.ints([1])], "pos_embed/grid") // (1, G², D)

        if let grid = fixedGrid {
            // Native grid: the table as-is (as the Swift forward does).
            if grid.h == gs && grid.w == gs { return table }
            let wy = PosEmbed.weights(rule: c.posEmbedRule, inSize: gs, outSize: grid.h)
            let wx = PosEmbed.weights(rule: c.posEmbedRule, inSize: gs, outSize: grid.w)
            return try resampleWithMatrices(table: table,
                                            wy: try g.floats(wy, shape: [grid.h, gs], name: "pos_embed/rows_\(c.posEmbedRule.rawValue)"),
                                            wx: try g.floats(wx, shape: [grid.w, gs], name: "pos_embed/cols_\(c.posEmbedRule.rawValue)"),
                                            fixed: (grid.h, grid.w))
        }

        // Dynamic: [h, w] = [H, W] / P from the input's shape (integer division).
        let shape = try g.op("Shape", [ONNXExporter.inputName], "pos_embed/input_shape")
        let hw = try g.op("Div", [try g.op("Slice", [shape, try g.ints([2]), try g.ints([4]), try g.ints([0])], "pos_embed/input_hw"),
                                  try g.ints([c.patchSize, c.patchSize])], "pos_embed/grid_hw")
        switch c.posEmbedRule {
        case .bicubic, .neco:
            // (1, G², D) → (1, D, G, G) → Resize cubic half_pixel A = −0.75 → (1, D, h, w) → (1, M, D).
            let grid4 = try g.op("Reshape", [table, try g.ints([1, gs, gs, d])], "pos_embed/grid_nhwc")
            let nchw = try g.op("Transpose", [grid4], "pos_embed/grid_nchw", [("perm", .ints([0, 3, 1, 2]))])
            var inputs = [nchw, ""]
            if c.posEmbedRule == .bicubic {
                // Output-size rule: scale = h/G, coordinates u = (i + 0.5)·G/h − 0.5.
                let sizes = try g.op("Concat", [try g.ints([1, d]), hw], "pos_embed/sizes", [("axis", .int(0))])
                inputs += ["", sizes]
            } else {
                // NeCo rule: scale (g + 0.1)/G, output floor(G·scale) = g, coordinates
                // u = (i + 0.5)/scale − 0.5; the table as-is when h = w = G (scale 1 is the identity).
                let hwF = try g.op("Cast", [hw], "pos_embed/grid_hw_float", [("to", .int(1))])
                let factor = try g.op("Div", [try g.op("Add", [hwF, try g.scalar(0.1, name: "neco_offset")], "pos_embed/plus_offset"),
                                               try g.scalar(Float(gs), name: "pos_grid")], "pos_embed/neco_scale")
                let offGrid = try g.op("ReduceSum", [try g.op("Abs", [try g.op("Sub", [hw, try g.ints([gs, gs])], "pos_embed/grid_diff")],
                                                              "pos_embed/grid_absdiff")],
                                       "pos_embed/grid_offsize", [("keepdims", .int(1))])
                let native = try g.op("Equal", [offGrid, try g.ints([0], name: "zero")], "pos_embed/is_native")
                let scaleHW = try g.op("Where", [native, try g.floats([1, 1], name: "ones2"), factor], "pos_embed/scale_hw")
                let scales = try g.op("Concat", [try g.floats([1, 1], name: "ones2"), scaleHW], "pos_embed/scales", [("axis", .int(0))])
                inputs.append(scales)
            }
            let resized = try g.op("Resize", inputs, "pos_embed/resize",
                                   [("mode", .string("cubic")), ("coordinate_transformation_mode", .string("half_pixel")),
                                    ("cubic_coeff_a", .float(-0.75)), ("exclude_outside", .int(0))])
            let flat = try g.op("Reshape", [resized, try g.ints([1, d, -1])], "pos_embed/resized_flat")
            return try g.op("Transpose", [flat], "pos_embed/patches", [("perm", .ints([0, 2, 1]))])
        case .antialias:
            // Opset 17's Resize has no antialias: build PyTorch's antialiased bicubic weights
            // (A = −0.5, support scaled when downsampling, renormalised) in the graph.
            let h = try g.op("Slice", [hw, try g.ints([0]), try g.ints([1]), try g.ints([0])], "pos_embed/h")
            let w = try g.op("Slice", [hw, try g.ints([1]), try g.ints([2]), try g.ints([0])], "pos_embed/w")
            let wy = try antialiasWeights(outSize: h, name: "pos_embed/rows_antialias")
            let wx = try antialiasWeights(outSize: w, name: "pos_embed/cols_antialias")
            return try resampleWithMatrices(table: table, wy: wy, wx: wx, fixed: nil)
        }
    }

    /// out[i, j, :] = Σ_p Σ_q Wy[i, p]·Wx[j, q]·table[p, q, :], as `PosEmbed.resample`:
    /// rows (h, G·D) = Wy (h, G) · table (G, G·D); then (h, w, D) = Wx (w, G) · rows (h, G, D).
    func resampleWithMatrices(table: String, wy: String, wx: String, fixed: (Int, Int)?) throws -> String {
        let c = model.config, g = graph
        let d = c.embedDim, gs = c.posGrid
        let table2 = try g.op("Reshape", [table, try g.ints([gs, gs * d])], "pos_embed/table_rows")
        let rows = try g.op("MatMul", [wy, table2], "pos_embed/resample_rows")                          // (h, G·D)
        let rows3 = try g.op("Reshape", [rows, try g.ints([fixed?.0 ?? -1, gs, d])], "pos_embed/rows_grid")  // (h, G, D)
        let cols = try g.op("MatMul", [wx, rows3], "pos_embed/resample_cols")                           // (h, w, D)
        let m = fixed.map { $0.0 * $0.1 } ?? -1
        return try g.op("Reshape", [cols, try g.ints([1, m, d])], "pos_embed/patches")                  // (1, M, D)
    }

    /// W (n, G) for one axis of the `.antialias` rule, n = `outSize` ([1] int64), exactly the
    /// formula of `PosEmbed.weights(rule: .antialias, …)` in float32:
    ///   scale = G/n, s = max(scale, 1), center_d = scale·(d + 0.5),
    ///   W[d, j] = f((j − center_d + 0.5)/s) / Σ_j f(…),  f = Keys cubic with A = −0.5.
    /// (Taps outside Swift's [xmin, xmax) window have f = 0, so the window needs no mask.)
    func antialiasWeights(outSize n: String, name: String) throws -> String {
        let g = graph, gs = model.config.posGrid
        let a: Float = -0.5
        let nF = try g.op("Cast", [n], name + "/n", [("to", .int(1))])
        let scale = try g.op("Div", [try g.scalar(Float(gs), name: "pos_grid"), nF], name + "/scale")              // [1]
        let s = try g.op("Max", [scale, try g.scalar(1, name: "one")], name + "/support_scale")
        let nScalar = try g.op("Squeeze", [n, try g.ints([0])], name + "/n_scalar")
        let idx = try g.op("Range", [try g.ints([0], shape: [], name: "zero_scalar"), nScalar,
                                     try g.ints([1], shape: [], name: "one_scalar")], name + "/range")
        let idxF = try g.op("Cast", [idx], name + "/range_float", [("to", .int(1))])
        let center = try g.op("Mul", [try g.op("Add", [idxF, try g.scalar(0.5, name: "half")], name + "/plus_half"), scale],
                              name + "/center")
        let center2 = try g.op("Unsqueeze", [center, try g.ints([1])], name + "/center_col")                    // (n, 1)
        let taps = try g.floats((0..<gs).map(Float.init), shape: [1, gs], name: "pos_grid_taps")               // (1, G)
        let offset = try g.op("Add", [try g.op("Sub", [taps, center2], name + "/tap_minus_center"),
                                      try g.scalar(0.5, name: "half")], name + "/offset")
        let x = try g.op("Abs", [try g.op("Div", [offset, s], name + "/scaled")], name + "/abs")                // (n, G)
        let x2 = try g.op("Mul", [x, x], name + "/x2")
        // |x| < 1: ((A + 2)|x| − (A + 3))·x² + 1
        let inner = try g.op("Sub", [try g.op("Mul", [x, try g.scalar(a + 2, name: "aa_a_plus_2")], name + "/c1_a"),
                                     try g.scalar(a + 3, name: "aa_a_plus_3")], name + "/c1_b")
        let f1 = try g.op("Add", [try g.op("Mul", [inner, x2], name + "/c1_c"), try g.scalar(1, name: "one")], name + "/c1")
        // 1 ≤ |x| < 2: (((|x| − 5)·|x| + 8)·|x| − 4)·A
        var t = try g.op("Sub", [x, try g.scalar(5, name: "five")], name + "/c2_a")
        t = try g.op("Add", [try g.op("Mul", [t, x], name + "/c2_b"), try g.scalar(8, name: "eight")], name + "/c2_c")
        t = try g.op("Sub", [try g.op("Mul", [t, x], name + "/c2_d"), try g.scalar(4, name: "four")], name + "/c2_e")
        let f2 = try g.op("Mul", [t, try g.scalar(a, name: "aa_a")], name + "/c2")
        let lt1 = try g.op("Less", [x, try g.scalar(1, name: "one")], name + "/lt1")
        let lt2 = try g.op("Less", [x, try g.scalar(2, name: "two")], name + "/lt2")
        let outer = try g.op("Where", [lt2, f2, try g.scalar(0, name: "zero_f")], name + "/outer")
        let f = try g.op("Where", [lt1, f1, outer], name + "/filter")
        let total = try g.op("ReduceSum", [f, try g.ints([1])], name + "/total", [("keepdims", .int(1))])
        return try g.op("Div", [f, total], name)
    }

    // MARK: Projection head

    func projectionHead(_ head: ProjectionHeadWeights, patches: String, batch: String) throws {
        let g = graph, d = model.config.embedDim
        var z = try g.op("Reshape", [patches, try g.ints([-1, d])], "head/flatten")
        for (i, l) in head.layers.enumerated() {
            z = try linear(z, l.name, "head/linear\(i)")
            if i < 2 { z = try gelu(z, "head/gelu\(i)") }
        }
        // z / max(‖z‖₂, 1e-12)
        let norm = try g.op("ReduceL2", [z], "head/norm", [("axes", .ints([-1])), ("keepdims", .int(1))])
        let den = try g.op("Max", [norm, try g.scalar(1e-12, name: "l2_eps")], "head/norm_clamped")
        let unit = try g.op("Div", [z, den], "head/normalize")
        try g.node("Reshape", [unit, try batchShape([head.outputDim], batch: batch, tokens: false)],
                   name: ONNXExporter.projectionOutput)
    }

    // MARK: Documentation

    func describe(outputs: [(name: String, dims: [ONNXDim])]) throws {
        let c = model.config, g = graph
        let size: String
        switch options.inputSize {
        case .fixed(let h, let w): size = "\(h)x\(w)"
        case .dynamic: size = "dynamic"
        }
        let shape = { (d: [ONNXDim]) in "(" + d.map(\.description).joined(separator: ", ") + ")" }
        let outs = outputs.map { "\($0.name) \(shape($0.dims))" }.joined(separator: ", ")
        let positionsDoc = c.rope == nil ? "Position embedding resampled with the '\(c.posEmbedRule.rawValue)' rule."
            : "Axial RoPE (DINOv3) on the patch tokens' queries and keys" + (fixedGrid == nil ? ", computed in the graph." : ", tables as constants.")
        let doc = """
            \(c.name) dense encoder (DINO/DINOv2 ViT, patch \(c.patchSize), dim \(c.embedDim), depth \(c.depth), \
            \(c.registers) registers) exported by \(ONNXExporter.producerName) \(ONNXExporter.producerVersion). \
            Input pixel_values (N, \(c.inChannels), H, W) float32, RGB scaled to [0, 1] then normalised with \
            mean \(options.imageMean) and std \(options.imageStd); input size \(size)\
            \(size == "dynamic" ? " (H and W multiples of \(c.patchSize); extra border pixels are ignored)" : ""). \
            Outputs: \(outs). \(positionsDoc) \
            Initializers are the parameters under their DINOv2 (Meta) keys; cls_token and register_tokens \
            are stored as param.cls_token and param.register_tokens because those names are outputs.
            """
        try g.setProducer(name: ONNXExporter.producerName, version: ONNXExporter.producerVersion)
        try g.setDocStrings(model: doc, graph: doc)

        let list = { (v: [Float]) in v.map { "\($0)" }.joined(separator: ",") }
        var config: [(String, JSONValue)] = [
            ("name", .string(c.name)), ("patch_size", .number(Double(c.patchSize))),
            ("embed_dim", .number(Double(c.embedDim))), ("depth", .number(Double(c.depth))),
            ("heads", .number(Double(c.heads))), ("head_dim", .number(Double(c.headDim))),
            ("mlp_hidden", .number(Double(c.mlpHidden))), ("ffn", .string(c.ffn.rawValue)),
            ("layer_scale", .bool(c.layerScale)), ("registers", .number(Double(c.registers))),
            ("pos_grid", .number(Double(c.posGrid))), ("pos_embed_rule", .string(c.posEmbedRule.rawValue)),
            ("in_channels", .number(Double(c.inChannels))), ("layer_norm_eps", .number(Double(c.layerNormEps))),
            ("family", .string(c.family.rawValue)),
        ]
        if let rope = c.rope {
            config += [("rope_base", .number(Double(rope.base))), ("rope_bf16_periods", .bool(rope.bf16Periods)),
                       ("qkv_bias", .string(c.qkvBias.rawValue))]
        }
        if let head = options.head {
            config.append(("projection_head", .array(head.layers.map { .array([.number(Double($0.inDim)), .number(Double($0.outDim))]) })))
        }
        let props: [(String, String)] = [
            ("neco.config", JSONValue.object(config).serialized()),
            ("patch_size", "\(c.patchSize)"),
            ("image_mean", list(options.imageMean)),
            ("image_std", list(options.imageStd)),
            ("pixel_scale", "1/255"),
            ("pos_embed_rule", c.posEmbedRule.rawValue),
            ("pos_grid", "\(c.posGrid)"),
            ("native_image_size", "\(c.nativeImageSize)"),
            ("input_size", size),
            ("registers", "\(c.registers)"),
            ("embed_dim", "\(c.embedDim)"),
            ("outputs", outputs.map(\.name).joined(separator: ",")),
            ("weight_scheme", model.scheme.rawValue),
            ("family", c.family.rawValue),
            ("initializer_names", "canonical DINOv2 (Meta) keys; cls_token -> param.cls_token, register_tokens -> param.register_tokens"),
        ]
        for (k, v) in props { try g.addMetadata(k, v) }
    }
}
