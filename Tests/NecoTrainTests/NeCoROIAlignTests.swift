import NecoCore
import NecoTrain
import XCTest
import _NecoTestSupport

/// ROI Align against NECO-SPEC §9.3, torchvision 0.28 (fixtures/neco/roi_align.safetensors) and
/// finite differences in Double.
final class NeCoROIAlignTests: XCTestCase {
    func run<T: NeCoScalar>(_ op: ROIAlign, _ f: [T], _ rois: [ROI<T>], n: Int, h: Int, w: Int, c: Int) -> [T] {
        var out = [T](repeating: 0, count: rois.count * op.pooledHeight * op.pooledWidth * c)
        out.withUnsafeMutableBufferPointer { o in
            f.withUnsafeBufferPointer { fp in
                op.forward(out: o.baseAddress!, features: fp.baseAddress!, rois: rois, images: n, height: h, width: w, channels: c)
            }
        }
        return out
    }

    func grad<T: NeCoScalar>(_ op: ROIAlign, _ dOut: [T], _ rois: [ROI<T>], n: Int, h: Int, w: Int, c: Int) -> [T] {
        var df = [T](repeating: 0, count: n * h * w * c)
        df.withUnsafeMutableBufferPointer { d in
            dOut.withUnsafeBufferPointer { g in
                op.backward(dFeatures: d.baseAddress!, dOut: g.baseAddress!, rois: rois, images: n, height: h, width: w, channels: c)
            }
        }
        return df
    }

    /// §9.3: aligned = True, scale 1, adaptive sampling, on a 4×4 map f[y][x] = 4y + x.
    func testSection93() {
        let f: [Double] = (0..<16).map { Double($0) }
        let op2 = ROIAlign(pooledHeight: 2, pooledWidth: 2)
        necoAssertEqual(run(op2, f, [ROI(image: 0, x1: 0, y1: 0, x2: 4, y2: 4)], n: 1, h: 4, w: 4, c: 1),
                        [2.5, 4.5, 10.5, 12.5], accuracy: 1e-12)
        necoAssertEqual(run(op2, f, [ROI(image: 0, x1: 0.5, y1: 1.0, x2: 3.0, y2: 3.5)], n: 1, h: 4, w: 4, c: 1),
                        [5.125, 6.375, 10.125, 11.375], accuracy: 1e-12)
        let op3 = ROIAlign(pooledHeight: 3, pooledWidth: 3)
        necoAssertEqual(run(op3, f, [ROI(image: 0, x1: 1.2, y1: 0.3, x2: 2.0, y2: 3.9)], n: 1, h: 4, w: 4, c: 1),
                        [2.433333, 2.7, 2.966667, 7.233333, 7.5, 7.766667, 11.833333, 12.1, 12.366667], accuracy: 5e-7)
        // The Float path gives the same numbers.
        let ff = f.map { Float($0) }
        let r = run(op3, ff, [ROI<Float>(image: 0, x1: 1.2, y1: 0.3, x2: 2.0, y2: 3.9)], n: 1, h: 4, w: 4, c: 1)
        necoAssertEqual(r.map { Double($0) }, [2.433333, 2.7, 2.966667, 7.233333, 7.5, 7.766667, 11.833333, 12.1, 12.366667],
                        accuracy: 2e-6)
    }

    /// torchvision forward and backward: 7-grid (borders, beyond the borders, boxes smaller than a
    /// cell, a zero-width box), 37-grid (6×6 samples per bin) and a 5×9 map with a 2×3 output.
    func testMatchesTorchvision() throws {
        let fx = try Fixture("neco/roi_align.safetensors")
        for name in ["grid7", "grid37", "rect5x9"] {
            let shape = fx.shape(name + ".features")  // (N, H, W, C)
            let (n, h, w, c) = (shape[0], shape[1], shape[2], shape[3])
            let pooled = try fx.file.ints(name + ".pooled")
            let op = ROIAlign(pooledHeight: pooled[0], pooledWidth: pooled[1])
            let b = try fx.floats(name + ".boxes")
            let rois = (0..<(b.count / 5)).map {
                ROI<Float>(image: Int(b[$0 * 5]), x1: b[$0 * 5 + 1], y1: b[$0 * 5 + 2], x2: b[$0 * 5 + 3], y2: b[$0 * 5 + 4])
            }
            let f = try fx.floats(name + ".features")
            let out = run(op, f, rois, n: n, h: h, w: w, c: c)
            let wo = necoAssertScaled(out, try fx.floats(name + ".out"), NeCoTol.matrix, name + " out")
            let df = grad(op, try fx.floats(name + ".dout"), rois, n: n, h: h, w: w, c: c)
            let wg = necoAssertScaled(df, try fx.floats(name + ".dfeatures"), NeCoTol.gradient, name + " dfeatures")
            print("  roi_align \(name): out \(wo), dfeatures \(wg) (max |Δ|/max|e|)")
        }
    }

    /// Backward vs central differences in Double (ROI Align is linear in the features, so the check
    /// is sharp), on a 9×9 map with boxes inside, across and beyond the borders.
    func testFiniteDifferences() {
        var rng = TestRNG(seed: 21)
        let (n, h, w, c) = (2, 9, 9, 3)
        var f = rng.floats(n * h * w * c).map { Double($0) }
        let rois: [ROI<Double>] = [
            ROI(image: 0, x1: 0, y1: 0, x2: 9, y2: 9), ROI(image: 1, x1: -0.7, y1: 2.2, x2: 9.6, y2: 8.1),
            ROI(image: 0, x1: 3.3, y1: 3.4, x2: 3.9, y2: 3.7), ROI(image: 1, x1: 7.5, y1: 0, x2: 9, y2: 2.5),
        ]
        for op in [ROIAlign(), ROIAlign(pooledHeight: 2, pooledWidth: 3, samplingRatio: 2)] {
            let g = necoFormulaGrad(rois.count * op.pooledHeight * op.pooledWidth * c)
            let analytic = grad(op, g, rois, n: n, h: h, w: w, c: c)
            necoFiniteDifference("roi \(op.pooledHeight)x\(op.pooledWidth)", x: &f, analytic: analytic, samples: 60) { fv in
                let out = self.run(op, fv, rois, n: n, h: h, w: w, c: c)
                var l = 0.0
                for k in 0..<out.count { l += out[k] * g[k] }
                return l
            }
        }
    }
}
