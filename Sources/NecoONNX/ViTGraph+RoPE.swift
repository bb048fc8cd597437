import NecoCore
import NecoModel

/// DINOv3's RoPE in the graph (see `RoPESettings` and `RoPE` in NecoModel for the formula).
///
/// Tables (M, E) in the rotate-half layout [θ_0 … θ_(E/2−1), θ_0 … θ_(E/2−1)]:
/// - fixed input size: constants computed by `RoPETables` (the Swift forward's own numbers);
/// - dynamic input size: computed from the input's shape with the same float32 operations in the
///   same order, c = (i + 0.5)/h, y = 2c − 1, θ = (2π·y)/period, using only Shape, Range, Cast,
///   arithmetic, Expand, Concat, Reshape, Cos and Sin (no `If`, so TensorRT and other consumers
///   take it).
/// Applied to q and k (N, heads, T, E) on the patch tokens T ≥ 1 + R:
///     x' = x·cos + rotate_half(x)·sin,  rotate_half([x1, x2]) = [−x2, x1]
extension ViTGraph {
    /// (cos, sin), each (M, E), built once per graph.
    func ropeTables() throws -> (cos: String, sin: String) {
        let cos = try graph.memo("rope cos") { try buildRoPETables() }
        return (cos, try graph.memo("rope sin") { throw NecoError(.internal, "RoPE sin table missing") })
    }

    /// Builds both tables; returns cos and records sin under the memo key "rope sin".
    private func buildRoPETables() throws -> String {
        let c = model.config, g = graph
        let e = c.headDim, half = e / 2
        let cosName: String, sinName: String
        if let grid = fixedGrid {
            let t = RoPETables(config: c, gridHeight: grid.h, gridWidth: grid.w)
            let m = grid.h * grid.w
            func full(_ v: [Float]) -> [Float] {
                var out = [Float](repeating: 0, count: m * e)
                for i in 0..<m {
                    for k in 0..<half { out[i * e + k] = v[i * half + k]; out[i * e + half + k] = v[i * half + k] }
                }
                return out
            }
            cosName = try g.floats(full(t.cos), shape: [m, e], name: "rope/cos")
            sinName = try g.floats(full(t.sin), shape: [m, e], name: "rope/sin")
        } else {
            let n = e / 4
            let periods = RoPE.periods(headDim: e, settings: c.rope ?? RoPESettings())
            let shape = try g.op("Shape", [ONNXExporter.inputName], "rope/input_shape")
            let hw = try g.op("Div", [try g.op("Slice", [shape, try g.ints([2]), try g.ints([4]), try g.ints([0])], "rope/input_hw"),
                                      try g.ints([c.patchSize, c.patchSize])], "rope/grid_hw")          // [h, w] int64
            let hwF = try g.op("Cast", [hw], "rope/grid_hw_float", [("to", .int(1))])
            let twoPi = try g.scalar(Float(2 * Double.pi), name: "rope/two_pi")
            let periodsC = try g.floats(periods, shape: [1, n], name: "rope/periods")
            /// Angles (count, n) of one axis: 2π·(2·(i + 0.5)/count − 1) / period.
            func axis(_ which: Int, _ tag: String) throws -> String {
                let count = try g.op("Slice", [hw, try g.ints([which]), try g.ints([which + 1]), try g.ints([0])], "rope/\(tag)_count")
                let countS = try g.op("Squeeze", [count, try g.ints([0])], "rope/\(tag)_count_scalar")
                let idx = try g.op("Range", [try g.ints([0], shape: [], name: "zero_scalar"), countS,
                                             try g.ints([1], shape: [], name: "one_scalar")], "rope/\(tag)_range")
                let idxF = try g.op("Cast", [idx], "rope/\(tag)_range_float", [("to", .int(1))])
                let countF = try g.op("Slice", [hwF, try g.ints([which]), try g.ints([which + 1]), try g.ints([0])], "rope/\(tag)_count_float")
                let centre = try g.op("Div", [try g.op("Add", [idxF, try g.scalar(0.5, name: "half")], "rope/\(tag)_plus_half"), countF],
                                      "rope/\(tag)_unit")
                let coord = try g.op("Sub", [try g.op("Mul", [centre, try g.scalar(2, name: "two")], "rope/\(tag)_twice"),
                                             try g.scalar(1, name: "one")], "rope/\(tag)_coord")          // (count)
                let col = try g.op("Unsqueeze", [coord, try g.ints([1])], "rope/\(tag)_column")          // (count, 1)
                let scaled = try g.op("Mul", [col, twoPi], "rope/\(tag)_scaled")
                return try g.op("Div", [scaled, periodsC], "rope/\(tag)_angles")                         // (count, n)
            }
            let ay = try axis(0, "y"), ax = try axis(1, "x")
            let target = try g.op("Concat", [hw, try g.ints([n])], "rope/grid_shape", [("axis", .int(0))])  // [h, w, n]
            let ayGrid = try g.op("Expand", [try g.op("Unsqueeze", [ay, try g.ints([1])], "rope/y_rows"), target], "rope/y_grid")
            let axGrid = try g.op("Expand", [try g.op("Unsqueeze", [ax, try g.ints([0])], "rope/x_cols"), target], "rope/x_grid")
            let both = try g.op("Concat", [ayGrid, axGrid], "rope/angles_grid", [("axis", .int(2))])       // (h, w, 2n)
            let flat = try g.op("Reshape", [both, try g.ints([-1, half])], "rope/angles")                  // (M, E/2)
            let doubled = try g.op("Concat", [flat, flat], "rope/angles_full", [("axis", .int(1))])        // (M, E)
            cosName = try g.op("Cos", [doubled], "rope/cos")
            sinName = try g.op("Sin", [doubled], "rope/sin")
        }
        _ = g.memo("rope sin") { sinName }
        return cosName
    }

    /// x (N, heads, T, E) with its patch tokens rotated.
    func applyRoPE(_ x: String, _ name: String) throws -> String {
        let c = model.config, g = graph
        let prefix = 1 + c.registers, half = c.headDim / 2
        let (cos, sin) = try ropeTables()
        let head = try g.op("Slice", [x, try g.ints([0]), try g.ints([prefix]), try g.ints([2])], name + "/prefix")
        let patches = try g.op("Slice", [x, try g.ints([prefix]), try g.ints([Int(Int64.max)]), try g.ints([2])], name + "/patches")
        let halves = try g.node("Split", [patches, try g.ints([half, half])], name: name + "/halves", outputs: 2,
                                attributes: [("axis", .int(3))])
        let rotated = try g.op("Concat", [try g.op("Neg", [halves[1]], name + "/neg_x2"), halves[0]], name + "/rotate_half",
                               [("axis", .int(3))])
        let out = try g.op("Add", [try g.op("Mul", [patches, cos], name + "/x_cos"), try g.op("Mul", [rotated, sin], name + "/rx_sin")],
                           name + "/rotated")
        return try g.op("Concat", [head, out], name, [("axis", .int(2))])
    }
}
