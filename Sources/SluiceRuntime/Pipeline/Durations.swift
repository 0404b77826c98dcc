// Durations ("500ms", "1.5s", "7d") and sizes ("64KiB", "10MB") as pipeline files and
// command-line flags write them: one parser for both.
import Foundation

public enum Durations {
    /// Milliseconds in a duration like 500ms, 1.5s, 10s, 30m, 12h, 7d, 2w, or a bare number of
    /// milliseconds; "forever", "infinite" and "-1" give -1. Nil when the text is not a
    /// duration (or overflows).
    public static func milliseconds(_ text: String) -> Int64? {
        let t = text.lowercased().trimmingCharacters(in: .whitespaces)
        if t == "forever" || t == "infinite" || t == "-1" { return -1 }
        for (suffix, factor) in [("ms", Int64(1)), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000), ("w", 604_800_000)] where t.hasSuffix(suffix) {
            let number = t.dropLast(suffix.count)
            if suffix == "s" && number.hasSuffix("m") { continue }  // "ms", not minutes + "s"
            return scaled(number, factor)
        }
        return Int64(t).flatMap { $0 >= 0 ? $0 : nil }
    }

    /// Bytes in a size like 1024, 64KiB, 10MB, 1GiB, 2G, 1TiB. With `unlimited`, "unlimited"
    /// and "-1" give -1 (for limits that can be switched off). Nil when the text is not a size.
    public static func bytes(_ text: String, unlimited: Bool = false) -> Int64? {
        let t = text.lowercased().trimmingCharacters(in: .whitespaces)
        if unlimited && (t == "unlimited" || t == "-1") { return -1 }
        let units: [(String, Int64)] = [
            ("kib", 1 << 10), ("mib", 1 << 20), ("gib", 1 << 30), ("tib", 1 << 40),
            ("kb", 1000), ("mb", 1_000_000), ("gb", 1_000_000_000), ("tb", 1_000_000_000_000),
            ("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30), ("t", 1 << 40), ("b", 1),
        ]
        for (suffix, factor) in units where t.hasSuffix(suffix) {
            return scaled(t.dropLast(suffix.count), factor)
        }
        return Int64(t).flatMap { $0 >= 0 ? $0 : nil }
    }

    /// A non-negative whole or decimal number times `factor`; nil on overflow.
    private static func scaled(_ number: Substring, _ factor: Int64) -> Int64? {
        if let n = Int64(number) { return n >= 0 && n <= Int64.max / factor ? n * factor : nil }
        if let d = Double(number), d >= 0, d * Double(factor) < Double(Int64.max) { return Int64(d * Double(factor)) }
        return nil
    }

    /// The shortest exact form: 7d, 12h, 50ms; "forever" for -1.
    public static func format(milliseconds ms: Int64) -> String {
        if ms < 0 { return "forever" }
        for (suffix, factor) in [("d", Int64(86_400_000)), ("h", 3_600_000), ("m", 60_000), ("s", 1000)] where ms % factor == 0 && ms >= factor {
            return "\(ms / factor)\(suffix)"
        }
        return "\(ms)ms"
    }

    /// The shortest exact binary form: 1GiB, 64KiB, 100B; "unlimited" for -1.
    public static func format(bytes n: Int64) -> String {
        if n < 0 { return "unlimited" }
        for (suffix, factor) in [("GiB", Int64(1 << 30)), ("MiB", 1 << 20), ("KiB", 1 << 10)] where n >= factor && n % factor == 0 {
            return "\(n / factor)\(suffix)"
        }
        return "\(n)B"
    }
}
