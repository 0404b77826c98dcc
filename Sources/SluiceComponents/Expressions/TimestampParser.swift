// TimestampParser: ISO 8601 / RFC 3339 text → milliseconds since the Unix epoch, for
// `parse_time`. No Foundation, no locale, no allocation.
//
// Accepted: `2024-05-01`, `2024-05-01T12:30`, `2024-05-01T12:30:45`, `…:45.123456`
// (fraction truncated to ms), a `T`, `t` or space between date and time, and a zone `Z`,
// `z`, `+02:00`, `-0530` or `+02`. Without a zone the time is taken as UTC.

enum TimestampParser {
    static func milliseconds(_ text: String) -> Int64? {
        var text = text
        return text.withUTF8 { parse($0) }
    }

    static func parse(_ s: UnsafeBufferPointer<UInt8>) -> Int64? {
        var start = 0
        var end = s.count
        while start < end && s[start] == 0x20 { start += 1 }
        while end > start && s[end - 1] == 0x20 { end -= 1 }
        var i = start

        func digits(_ n: Int) -> Int? {
            guard i + n <= end else { return nil }
            var v = 0
            for k in 0..<n {
                let d = Int(s[i + k]) - 48
                guard d >= 0 && d <= 9 else { return nil }
                v = v * 10 + d
            }
            i += n
            return v
        }
        func take(_ c: UInt8) -> Bool {
            guard i < end, s[i] == c else { return false }
            i += 1
            return true
        }

        guard let year = digits(4), take(UInt8(ascii: "-")),
              let month = digits(2), take(UInt8(ascii: "-")),
              let day = digits(2) else { return nil }
        guard month >= 1 && month <= 12, day >= 1 && day <= daysIn(month: month, year: year) else { return nil }
        var ms = Int64(daysFromCivil(year: year, month: month, day: day)) * 86_400_000
        if i == end { return ms }

        guard take(UInt8(ascii: "T")) || take(UInt8(ascii: "t")) || take(UInt8(ascii: " ")) else { return nil }
        guard let hour = digits(2), take(UInt8(ascii: ":")), let minute = digits(2) else { return nil }
        guard hour <= 23, minute <= 59 else { return nil }
        var second = 0
        var millis = 0
        if take(UInt8(ascii: ":")) {
            guard let sec = digits(2), sec <= 60 else { return nil }
            second = sec
            if take(UInt8(ascii: ".")) || take(UInt8(ascii: ",")) {
                var count = 0
                while i < end, s[i] >= 48, s[i] <= 57 {
                    if count < 3 { millis = millis * 10 + Int(s[i] - 48) }
                    count += 1
                    i += 1
                }
                guard count > 0 else { return nil }
                if count < 3 { for _ in count..<3 { millis *= 10 } }
            }
        }
        ms += Int64(hour * 3_600_000 + minute * 60_000 + second * 1000 + millis)
        if i == end { return ms }

        if take(UInt8(ascii: "Z")) || take(UInt8(ascii: "z")) { return i == end ? ms : nil }
        let sign: Int64
        if take(UInt8(ascii: "+")) { sign = 1 } else if take(UInt8(ascii: "-")) { sign = -1 } else { return nil }
        guard let zh = digits(2), zh <= 23 else { return nil }
        var zm = 0
        if i < end {
            _ = take(UInt8(ascii: ":"))
            guard let m = digits(2), m <= 59 else { return nil }
            zm = m
        }
        guard i == end else { return nil }
        return ms - sign * Int64(zh * 3_600_000 + zm * 60_000)
    }

    static func isLeap(_ y: Int) -> Bool { (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return isLeap(year) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }
}
