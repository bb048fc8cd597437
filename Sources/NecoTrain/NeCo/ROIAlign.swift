import NecoCore

// ROI Align with torchvision semantics (`torchvision.ops.roi_align`, CPU kernel
// `torchvision/csrc/ops/cpu/roi_align_kernel.cpp`), NECO-SPEC §4.2 and pitfall P7, on
// channel-last feature maps (the layout the trainer hands to the loss).
//
// Dimension letters: N images, H, W feature-map height and width, C channels, R regions,
// PH, PW pooled output size (NeCo: 7 × 7).
//
// Gradient convention: `backward` accumulates (`+=`) into the feature-map gradient.

/// One region of interest: image `image` of the batch and the box (x1, y1, x2, y2) in the
/// units of the feature map before `spatialScale` (x = column).
public struct ROI<T: NeCoScalar>: Sendable, Equatable {
    public var image: Int
    public var x1: T, y1: T, x2: T, y2: T
    public init(image: Int, x1: T, y1: T, x2: T, y2: T) {
        self.image = image
        self.x1 = x1
        self.y1 = y1
        self.x2 = x2
        self.y2 = y2
    }
}

/// ROI Align: average of bilinear samples on a regular grid inside each output bin.
///
/// Concretely, per region (torchvision, every step in the element type T):
/// ```
/// o = aligned ? 0.5 : 0
/// xs = x1·scale − o ; ys = y1·scale − o ; xe = x2·scale − o ; ye = y2·scale − o
/// rw = xe − xs ; rh = ye − ys ;  if !aligned: rw = max(rw, 1), rh = max(rh, 1)
/// bw = rw / PW ; bh = rh / PH
/// gx = ratio > 0 ? ratio : ceil(rw / PW) ; gy likewise ; count = max(gx·gy, 1)
/// out[ph][pw][c] = (1/count) Σ_{iy<gy} Σ_{ix<gx} bilinear(f[c], ys + ph·bh + (iy+½)·bh/gy,
///                                                             xs + pw·bw + (ix+½)·bw/gx)
/// bilinear(y, x): 0 if y < −1 or y > H or x < −1 or x > W; clamp y, x to ≥ 0;
///   y0 = ⌊y⌋, y1 = y0 + 1, or y0 = y1 = H − 1 and y = y0 when y0 ≥ H − 1 (same for x);
///   ly = y − y0, lx = x − x0: (1−ly)(1−lx) f[y0,x0] + (1−ly) lx f[y0,x1] + ly (1−lx) f[y1,x0] + ly lx f[y1,x1]
/// ```
/// NeCo calls it with PH = PW = 7, scale 1, ratio −1 (adaptive), aligned = true, boxes in patch
/// units (pixel box / patch size). Outputs are averages of unit vectors, hence not unit-norm (P9).
///
/// Shapes: features (N, H, W, C), out (R, PH, PW, C), all row-major, channel-last. Nothing is
/// cached: the backward recomputes the sample positions from the boxes.
///
/// ### References
/// https://pytorch.org/vision/stable/generated/torchvision.ops.roi_align.html;
/// He et al., "Mask R-CNN" (2017).
public struct ROIAlign: Sendable, Equatable {
    public var pooledHeight: Int
    public var pooledWidth: Int
    public var spatialScale: Double
    /// Samples per bin and axis; ≤ 0 = adaptive, ceil(roi size / pooled size).
    public var samplingRatio: Int
    public var aligned: Bool

    /// NeCo's call: 7 × 7, scale 1, adaptive sampling, aligned.
    public init(pooledHeight: Int = 7, pooledWidth: Int = 7, spatialScale: Double = 1, samplingRatio: Int = -1,
                aligned: Bool = true) {
        precondition(pooledHeight >= 1 && pooledWidth >= 1, "ROIAlign: pooled size must be ≥ 1")
        self.pooledHeight = pooledHeight
        self.pooledWidth = pooledWidth
        self.spatialScale = spatialScale
        self.samplingRatio = samplingRatio
        self.aligned = aligned
    }

    /// The bilinear taps of one region: for every bin (ph, pw) in row-major order, its samples
    /// (iy, ix) in order, four (offset into the H·W plane, weight) taps each. A sample outside
    /// [−1, H] × [−1, W] has four zero weights at offset 0.
    @usableFromInline
    struct Taps<T: NeCoScalar> {
        /// (PH·PW·gy·gx·4) plane offsets (y·W + x).
        @usableFromInline var offsets: [Int] = []
        /// (PH·PW·gy·gx·4) bilinear weights.
        @usableFromInline var weights: [T] = []
        /// Samples per bin, gy·gx.
        @usableFromInline var perBin = 0
        /// max(gy·gx, 1) in T.
        @usableFromInline var count: T = 1
    }

    @usableFromInline
    func taps<T: NeCoScalar>(_ roi: ROI<T>, height: Int, width: Int) -> Taps<T> {
        let scale = T(necoParameter: spatialScale)
        let off: T = aligned ? T(0.5) : 0
        let xs = roi.x1 * scale - off, ys = roi.y1 * scale - off
        let xe = roi.x2 * scale - off, ye = roi.y2 * scale - off
        var rw = xe - xs, rh = ye - ys
        if !aligned {
            rw = max(rw, 1)
            rh = max(rh, 1)
        }
        let ph = pooledHeight, pw = pooledWidth
        let bh = rh / T(ph), bw = rw / T(pw)
        let gy = samplingRatio > 0 ? samplingRatio : Int((rh / T(ph)).rounded(.up))
        let gx = samplingRatio > 0 ? samplingRatio : Int((rw / T(pw)).rounded(.up))
        var t = Taps<T>()
        t.perBin = max(gy, 0) * max(gx, 0)
        t.count = T(max(gy * gx, 1))
        let total = ph * pw * t.perBin * 4
        t.offsets.reserveCapacity(total)
        t.weights.reserveCapacity(total)
        let hT = T(height), wT = T(width)
        for py in 0..<ph {
            for px in 0..<pw {
                for iy in 0..<max(gy, 0) {
                    let yy = ys + T(py) * bh + T(Double(iy) + 0.5) * bh / T(gy)
                    for ix in 0..<max(gx, 0) {
                        let xx = xs + T(px) * bw + T(Double(ix) + 0.5) * bw / T(gx)
                        var y = yy, x = xx
                        if y < -1 || y > hT || x < -1 || x > wT {
                            for _ in 0..<4 {
                                t.offsets.append(0)
                                t.weights.append(0)
                            }
                            continue
                        }
                        if y <= 0 { y = 0 }
                        if x <= 0 { x = 0 }
                        var y0 = Int(y), x0 = Int(x)
                        let y1: Int, x1: Int
                        if y0 >= height - 1 {
                            y0 = height - 1
                            y1 = y0
                            y = T(y0)
                        } else {
                            y1 = y0 + 1
                        }
                        if x0 >= width - 1 {
                            x0 = width - 1
                            x1 = x0
                            x = T(x0)
                        } else {
                            x1 = x0 + 1
                        }
                        let ly = y - T(y0), lx = x - T(x0)
                        let hy = 1 - ly, hx = 1 - lx
                        t.offsets.append(y0 * width + x0)
                        t.offsets.append(y0 * width + x1)
                        t.offsets.append(y1 * width + x0)
                        t.offsets.append(y1 * width + x1)
                        t.weights.append(hy * hx)
                        t.weights.append(hy * lx)
                        t.weights.append(ly * hx)
                        t.weights.append(ly * lx)
                    }
                }
            }
        }
        return t
    }

    /// out (R, PH, PW, C) ← ROI Align of `features` (N, H, W, C) over `rois`.
    ///
    /// Per output element the same sum as torchvision's CPU kernel, in the same order:
    /// `acc += w1·f1 + w2·f2 + w3·f3 + w4·f4` over the samples, then `acc / count`.
    /// - Precondition: every `roi.image` in 0..<N.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func forward<T: NeCoScalar>(out: UnsafeMutablePointer<T>, features: UnsafePointer<T>, rois: [ROI<T>],
                                       images: Int, height: Int, width: Int, channels: Int) {
        precondition(height >= 1 && width >= 1 && channels >= 1, "ROIAlign.forward: empty feature map")
        for r in rois { precondition(r.image >= 0 && r.image < images, "ROIAlign.forward: image index \(r.image) out of range") }
        let c = channels, cells = pooledHeight * pooledWidth
        Threads.parallelChunks(rois.count) { _, start, end in
            let acc = UnsafeMutablePointer<T>.allocate(capacity: c)
            defer { acc.deallocate() }
            for r in start..<end {
                let roi = rois[r]
                let t: Taps<T> = taps(roi, height: height, width: width)
                let plane = features + roi.image * height * width * c
                t.offsets.withUnsafeBufferPointer { offs in
                    t.weights.withUnsafeBufferPointer { ws in
                        var k = 0
                        for cell in 0..<cells {
                            acc.update(repeating: 0, count: c)
                            for _ in 0..<t.perBin {
                                let f1 = plane + offs[k] * c, f2 = plane + offs[k + 1] * c
                                let f3 = plane + offs[k + 2] * c, f4 = plane + offs[k + 3] * c
                                let w1 = ws[k], w2 = ws[k + 1], w3 = ws[k + 2], w4 = ws[k + 3]
                                for ch in 0..<c { acc[ch] += w1 * f1[ch] + w2 * f2[ch] + w3 * f3[ch] + w4 * f4[ch] }
                                k += 4
                            }
                            let dst = out + (r * cells + cell) * c
                            for ch in 0..<c { dst[ch] = acc[ch] / t.count }
                        }
                    }
                }
            }
        }
    }

    /// dFeatures (N, H, W, C) += ∂L/∂features, given dOut (R, PH, PW, C).
    ///
    /// Differentiates the forward's `acc += w·f`: every sample scatters `(dOut·w)/count` to its
    /// four taps (torchvision's `bilinear_interpolate_gradient`; samples outside contribute
    /// nothing). Parallel over channel blocks, so regions on the same image never race; per
    /// element the additions happen in torchvision's order (region, bin, sample, tap).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func backward<T: NeCoScalar>(dFeatures: UnsafeMutablePointer<T>, dOut: UnsafePointer<T>, rois: [ROI<T>],
                                        images: Int, height: Int, width: Int, channels: Int) {
        precondition(height >= 1 && width >= 1 && channels >= 1, "ROIAlign.backward: empty feature map")
        for r in rois { precondition(r.image >= 0 && r.image < images, "ROIAlign.backward: image index \(r.image) out of range") }
        let c = channels, cells = pooledHeight * pooledWidth
        let all: [Taps<T>] = rois.map { taps($0, height: height, width: width) }
        let blocks = (c + 15) / 16
        Threads.parallelFor(blocks) { bs, be in
            let c0 = bs * 16, c1 = min(c, be * 16)
            for (r, roi) in rois.enumerated() {
                let t = all[r]
                let plane = dFeatures + roi.image * height * width * c
                t.offsets.withUnsafeBufferPointer { offs in
                    t.weights.withUnsafeBufferPointer { ws in
                        var k = 0
                        for cell in 0..<cells {
                            let g = dOut + (r * cells + cell) * c
                            for _ in 0..<t.perBin {
                                let f1 = plane + offs[k] * c, f2 = plane + offs[k + 1] * c
                                let f3 = plane + offs[k + 2] * c, f4 = plane + offs[k + 3] * c
                                let w1 = ws[k], w2 = ws[k + 1], w3 = ws[k + 2], w4 = ws[k + 3]
                                if w1 != 0 || w2 != 0 || w3 != 0 || w4 != 0 {
                                    for ch in c0..<c1 {
                                        let go = g[ch]
                                        f1[ch] += go * w1 / t.count
                                        f2[ch] += go * w2 / t.count
                                        f3[ch] += go * w3 / t.count
                                        f4[ch] += go * w4 / t.count
                                    }
                                }
                                k += 4
                            }
                        }
                    }
                }
            }
        }
    }
}
