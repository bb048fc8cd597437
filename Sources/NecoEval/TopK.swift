/// Per-row partial top-k selection: a bounded min-heap over (similarity, index) whose root is the
/// worst of the k best candidates seen so far.
///
/// Order: higher similarity first; equal similarities keep the lower index first. Candidates must
/// be offered in increasing index order (the bank is scanned front to back), so a later candidate
/// with a similarity equal to the root never displaces it, and ties come out by index.
///
/// Storage is borrowed: `sims` and `idx` point at `k` slots owned by the caller (one row of a
/// (rows, k) scratch table), so the search allocates once per query chunk, not per row.
@usableFromInline
struct TopKHeap {
    @usableFromInline let sims: UnsafeMutablePointer<Float>
    @usableFromInline let idx: UnsafeMutablePointer<Int>
    @usableFromInline let k: Int
    @usableFromInline var count = 0

    @inlinable
    init(sims: UnsafeMutablePointer<Float>, idx: UnsafeMutablePointer<Int>, k: Int) {
        self.sims = sims
        self.idx = idx
        self.k = k
    }

    /// `a` ranks below `b`.
    @inlinable
    func worse(_ a: Int, _ b: Int) -> Bool {
        sims[a] < sims[b] || (sims[a] == sims[b] && idx[a] > idx[b])
    }

    /// Offers the candidate (`s`, `j`); `j` must exceed every index offered before.
    @inlinable
    mutating func offer(_ s: Float, _ j: Int) {
        if count < k {
            var c = count
            count += 1
            sims[c] = s
            idx[c] = j
            while c > 0 {  // sift up
                let p = (c - 1) / 2
                guard worse(c, p) else { break }
                swapAt(c, p)
                c = p
            }
        } else if s > sims[0] {
            sims[0] = s
            idx[0] = j
            siftDown(0, count)
        }
    }

    @inlinable
    func swapAt(_ a: Int, _ b: Int) {
        let ts = sims[a], ti = idx[a]
        sims[a] = sims[b]; idx[a] = idx[b]
        sims[b] = ts; idx[b] = ti
    }

    @inlinable
    func siftDown(_ start: Int, _ end: Int) {
        var c = start
        while true {
            let l = 2 * c + 1
            if l >= end { return }
            var m = l
            if l + 1 < end && worse(l + 1, l) { m = l + 1 }
            guard worse(m, c) else { return }
            swapAt(c, m)
            c = m
        }
    }

    /// Sorts the kept candidates best first, in place (heap sort: repeatedly move the worst to the
    /// end), and returns how many there are.
    @inlinable
    mutating func sortBestFirst() -> Int {
        let n = count
        var end = n
        while end > 1 {
            swapAt(0, end - 1)
            end -= 1
            siftDown(0, end)
        }
        return n
    }
}
