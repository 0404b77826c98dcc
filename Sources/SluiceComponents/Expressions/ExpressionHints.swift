// Did-you-mean hints for misspelled function and meta field names (Levenshtein distance).

package enum ExpressionHints {
    /// The candidate closest to `word` within two edits (and fewer edits than `word` has
    /// characters, so a short word does not match everything); the first one on a tie.
    static func closest(to word: String, in candidates: [String]) -> String? {
        let w = Array(word.lowercased().unicodeScalars)
        var best: (name: String, distance: Int)?
        for c in candidates {
            let d = distance(w, Array(c.unicodeScalars))
            if d <= 2, d < w.count, d < (best?.distance ?? .max) { best = (c, d) }
        }
        return best?.name
    }

    package static func distance(_ a: [Unicode.Scalar], _ b: [Unicode.Scalar]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        var row = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            row[0] = i
            for j in 1...b.count {
                row[j] = Swift.min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&previous, &row)
        }
        return previous[b.count]
    }
}
