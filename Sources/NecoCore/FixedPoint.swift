/// Fixed-point text without Foundation, for logs and pictures.
public enum FixedPoint {
    /// `v` with `digits` decimals (rounded half away from zero). Non-finite values, and values
    /// whose scaled magnitude reaches 2^53 (no decimals left to show; `Int(_:)` would trap beyond
    /// Int.max), are printed as Swift prints a Double.
    public static func text(_ v: Double, digits: Int) -> String {
        guard v.isFinite else { return "\(v)" }
        var p = 1.0
        for _ in 0..<max(digits, 0) { p *= 10 }
        let scaled = (abs(v) * p).rounded()
        guard scaled < 9.0e15 else { return "\(v)" }
        let whole = Int(scaled / p)
        var frac = String(Int(scaled - Double(whole) * p))
        while frac.count < digits { frac = "0" + frac }
        return (v < 0 && scaled > 0 ? "-" : "") + String(whole) + (digits > 0 ? "." + frac : "")
    }
}
