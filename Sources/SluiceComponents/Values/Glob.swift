// Channel-name patterns: `*` matches any run of characters. Used by the gateway's channel
// rules and by the `channel` source.

public enum Glob {
    /// `*` matches any run of characters (also none); everything else matches itself.
    public static func matches(_ pattern: String, _ text: String) -> Bool {
        var text = text
        return text.withUTF8 { matches(Array(pattern.utf8), UnsafeRawBufferPointer($0)) }
    }

    /// The same over bytes (a record's key), with the pattern's UTF-8.
    public static func matches(_ p: [UInt8], _ t: UnsafeRawBufferPointer) -> Bool {
        var pi = 0, ti = 0, star = -1, mark = 0
        while ti < t.count {
            if pi < p.count, p[pi] == UInt8(ascii: "*") {
                star = pi; mark = ti; pi += 1
            } else if pi < p.count, p[pi] == t[ti] {
                pi += 1; ti += 1
            } else if star >= 0 {
                pi = star + 1; mark += 1; ti = mark
            } else {
                return false
            }
        }
        while pi < p.count, p[pi] == UInt8(ascii: "*") { pi += 1 }
        return pi == p.count
    }
}
