// Parsing durations ("7d", "500ms") and sizes ("1GiB", "512MB") for command-line flags.

enum Units {
    /// Milliseconds in a duration like 500ms, 10s, 30m, 12h, 7d, 2w; "-1", "forever" and
    /// "infinite" give -1. Nil when the text is not a duration.
    static func milliseconds(_ text: String) -> Int64? {
        let t = text.lowercased()
        if t == "-1" || t == "forever" || t == "infinite" { return -1 }
        let units: [(String, Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000), ("w", 604_800_000)]
        for (suffix, factor) in units where t.hasSuffix(suffix) {
            let number = t.dropLast(suffix.count)
            if suffix == "s" && number.hasSuffix("m") { continue }
            if let n = Int64(number), n >= 0, n <= Int64.max / factor { return n * factor }
            return nil
        }
        if let n = Int64(t), n >= 0 { return n }
        return nil
    }

    /// Bytes in a size like 1024, 64KiB, 10MB, 1GiB, 2G; "-1" and "unlimited" give -1.
    static func bytes(_ text: String) -> Int64? {
        let t = text.lowercased()
        if t == "-1" || t == "unlimited" { return -1 }
        let units: [(String, Int64)] = [
            ("kib", 1 << 10), ("mib", 1 << 20), ("gib", 1 << 30), ("tib", 1 << 40),
            ("kb", 1000), ("mb", 1_000_000), ("gb", 1_000_000_000), ("tb", 1_000_000_000_000),
            ("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30), ("t", 1 << 40), ("b", 1),
        ]
        for (suffix, factor) in units where t.hasSuffix(suffix) {
            if let n = Int64(t.dropLast(suffix.count)), n >= 0, n <= Int64.max / factor { return n * factor }
            return nil
        }
        if let n = Int64(t), n >= 0 { return n }
        return nil
    }

    static func formatMilliseconds(_ ms: Int64) -> String {
        if ms < 0 { return "forever" }
        for (suffix, factor) in [("d", Int64(86_400_000)), ("h", 3_600_000), ("m", 60_000), ("s", 1000)] where ms % factor == 0 && ms >= factor {
            return "\(ms / factor)\(suffix)"
        }
        return "\(ms)ms"
    }

    static func formatBytes(_ n: Int64) -> String {
        if n < 0 { return "unlimited" }
        for (suffix, factor) in [("GiB", Int64(1 << 30)), ("MiB", 1 << 20), ("KiB", 1 << 10)] where n >= factor && n % factor == 0 {
            return "\(n / factor)\(suffix)"
        }
        return "\(n)B"
    }
}
