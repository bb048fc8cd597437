/// The one seeded pseudo-random generator of libneco: xoshiro256** (Blackman & Vigna), seeded
/// through SplitMix64. Training draws crops, image order, heads, stochastic depth and references
/// from it; the evaluations draw k-means and probe initialisations, batch orders, memory
/// subsampling and the random-init model. Its whole state is four `UInt64`s, saved in
/// checkpoints, so a resumed run draws exactly the numbers an uninterrupted one would.
///
/// Every draw is defined bit for bit (no platform `random`, no floating-point libm calls except
/// in `normal`), so scripts/reference/make_train_fixtures.py mirrors `next`, `uniformFloat`,
/// `bounded` and `permutation` in Python and reproduces the stochastic-depth masks exactly.
///
/// ### References
/// https://prng.di.unimi.it/xoshiro256starstar.c, https://prng.di.unimi.it/splitmix64.c
public struct NecoRNG: Sendable, Equatable {
    /// The generator state (never all zero).
    public private(set) var state: (UInt64, UInt64, UInt64, UInt64)

    /// Seeds stream `stream` of `seed`: the state is four SplitMix64 outputs started at
    /// `seed ^ (stream · 0x9E3779B97F4A7C15)`. Different streams are independent for practical
    /// purposes (the trainer uses stream 0 for initialisation and stream 1 for per-step draws).
    public init(seed: UInt64, stream: UInt64 = 0) {
        var sm = seed ^ (stream &* 0x9E37_79B9_7F4A_7C15)
        func splitmix() -> UInt64 {
            sm &+= 0x9E37_79B9_7F4A_7C15
            var z = sm
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        state = (splitmix(), splitmix(), splitmix(), splitmix())
        if state == (0, 0, 0, 0) { state.0 = 1 }
    }

    /// Restores a saved state. - Throws: `.format` for the all-zero state, which xoshiro cannot leave.
    public init(state: [UInt64]) throws {
        guard state.count == 4, state.contains(where: { $0 != 0 }) else {
            throw NecoError.format("RNG state must be 4 words, not all zero (got \(state))")
        }
        self.state = (state[0], state[1], state[2], state[3])
    }

    /// The state as four words, for checkpoints.
    public var words: [UInt64] { [state.0, state.1, state.2, state.3] }

    public static func == (a: NecoRNG, b: NecoRNG) -> Bool { a.words == b.words }

    /// Next 64 random bits.
    public mutating func next() -> UInt64 {
        let result = rotl(state.1 &* 5, 7) &* 9
        let t = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = rotl(state.3, 45)
        return result
    }

    func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// Uniform in [0, 1) with 24 random bits: `Float(next() >> 40) · 2⁻²⁴` (exact).
    public mutating func uniformFloat() -> Float { Float(next() >> 40) * 0x1p-24 }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func uniformDouble() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// Uniform in [lo, hi): lo + (hi − lo) · `uniformDouble()`, as a Float.
    public mutating func uniform(_ lo: Float, _ hi: Float) -> Float { lo + (hi - lo) * Float(uniformDouble()) }

    /// Uniform integer in 0 ..< n by rejection (no modulo bias): draws until
    /// `x < 2⁶⁴ − (2⁶⁴ mod n)`, returns `x mod n`.
    /// - Precondition: n ≥ 1.
    public mutating func bounded(_ n: Int) -> Int {
        precondition(n >= 1, "bounded(n) needs n >= 1")
        let un = UInt64(n)
        let limit = UInt64.max - (UInt64.max % un + 1) % un  // largest accepted value
        while true {
            let x = next()
            if x <= limit { return Int(x % un) }
        }
    }

    /// A uniformly random permutation of 0 ..< n (Fisher–Yates, from the back):
    /// for i = n−1 … 1: j = bounded(i + 1), swap(a[i], a[j]).
    public mutating func permutation(_ n: Int) -> [Int] {
        var a = Array(0..<n)
        var i = n - 1
        while i > 0 {
            let j = bounded(i + 1)
            a.swapAt(i, j)
            i -= 1
        }
        return a
    }

    /// Standard normal sample (Box–Muller on two `uniformDouble`s).
    public mutating func normal() -> Double {
        var u1 = uniformDouble()
        while u1 == 0 { u1 = uniformDouble() }
        let u2 = uniformDouble()
        return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
    }

    /// Normal(0, std) truncated to [low, high] by rejection, as a Float
    /// (`torch.nn.init.trunc_normal_` semantics; NeCo uses std 0.02 and absolute bounds ±2).
    public mutating func truncatedNormal(std: Double, low: Double, high: Double) -> Float {
        precondition(low < high && std > 0, "truncatedNormal: bad bounds")
        while true {
            let v = normal() * std
            if v >= low && v <= high { return Float(v) }
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
