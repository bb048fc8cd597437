/// The linear assignment problem: a minimum-cost matching of every row to a distinct column.
///
///     minimise Σ_r cost[r, a(r)]   over injective a: rows → cols   (rows ≤ cols)
///
/// Kuhn–Munkres with row and column potentials (the O(R²·C) shortest-augmenting-path form of
/// Jonker–Volgenant), in Double. Equal to `scipy.optimize.linear_sum_assignment` in total cost;
/// when several assignments tie, it may pick a different one.
///
/// ### References
/// - H. W. Kuhn, "The Hungarian method for the assignment problem", 1955.
/// - R. Jonker, A. Volgenant, "A shortest augmenting path algorithm for dense and sparse linear
///   assignment problems", Computing 38, 1987.
///
/// - Complexity: O(R² · C) time, O(R + C) extra memory.
public enum Hungarian {
    /// - Parameters:
    ///   - cost: (rows, cols) row-major, finite.
    /// - Returns: (rows) the column assigned to each row.
    /// - Precondition: `1 <= rows <= cols`, `cost.count == rows * cols`.
    public static func solve(cost: [Double], rows n: Int, cols m: Int) -> [Int] {
        precondition(n >= 1 && n <= m && cost.count == n * m, "Hungarian.solve: needs 1 <= rows <= cols and a rows×cols matrix")
        // 1-based arrays with a virtual column 0, as in the classic formulation.
        var u = [Double](repeating: 0, count: n + 1)       // row potentials
        var v = [Double](repeating: 0, count: m + 1)       // column potentials
        var p = [Int](repeating: 0, count: m + 1)          // p[j]: row matched to column j (0 = none)
        var way = [Int](repeating: 0, count: m + 1)        // previous column on the augmenting path
        var minv = [Double](repeating: 0, count: m + 1)
        var used = [Bool](repeating: false, count: m + 1)
        for i in 1...n {
            p[0] = i
            var j0 = 0
            for j in 0...m { minv[j] = .infinity; used[j] = false }
            repeat {
                used[j0] = true
                let i0 = p[j0]
                var delta = Double.infinity
                var j1 = 0
                for j in 1...m where !used[j] {
                    let cur = cost[(i0 - 1) * m + (j - 1)] - u[i0] - v[j]
                    if cur < minv[j] { minv[j] = cur; way[j] = j0 }
                    if minv[j] < delta { delta = minv[j]; j1 = j }
                }
                for j in 0...m {
                    if used[j] { u[p[j]] += delta; v[j] -= delta } else { minv[j] -= delta }
                }
                j0 = j1
            } while p[j0] != 0
            repeat {  // flip the path
                let j1 = way[j0]
                p[j0] = p[j1]
                j0 = j1
            } while j0 != 0
        }
        var assignment = [Int](repeating: -1, count: n)
        for j in 1...m where p[j] != 0 { assignment[p[j] - 1] = j - 1 }
        return assignment
    }
}
