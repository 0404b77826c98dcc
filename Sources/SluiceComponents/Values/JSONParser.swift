// The JSON parser behind `JSON.parse`: a recursive descent over a borrowed byte buffer that
// builds `Value`s directly. Strings without escapes are made from the bytes in one step;
// numbers take an exact fast path (Clinger) and fall back to the standard library's
// correctly rounded conversion. One parser per call; not shared.

struct JSONParser {
    let p: UnsafePointer<UInt8>
    let count: Int
    var pos = 0
    var depth = 0

    init(_ p: UnsafePointer<UInt8>, count: Int) {
        self.p = p
        self.count = count
    }

    mutating func parseDocument() throws(JSONError) -> Value {
        let value = try parseValue()
        skipWhitespace()
        if pos < count { throw JSONError(.trailingCharacters, offset: pos) }
        return value
    }

    @inline(__always)
    mutating func skipWhitespace() {
        while pos < count {
            let b = p[pos]
            guard b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 else { return }
            pos += 1
        }
    }

    var endOfInput: JSONError { JSONError(.unexpectedEnd, offset: count) }

    mutating func parseValue() throws(JSONError) -> Value {
        skipWhitespace()
        guard pos < count else { throw endOfInput }
        switch p[pos] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try parseLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try parseLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try parseLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw JSONError(.expectedValue, offset: pos)
        }
    }

    mutating func parseLiteral(_ word: StaticString) throws(JSONError) {
        pos = try Self.matchLiteral(word, p, count: count, at: pos)
    }

    /// Checks that `word` (true, false, null) stands at `start` of the `count` bytes at `p`;
    /// returns the position after it. Shared with the indexing scanner (JSONIndex.swift).
    @inline(__always)
    static func matchLiteral(_ word: StaticString, _ p: UnsafePointer<UInt8>, count: Int, at start: Int) throws(JSONError) -> Int {
        let n = word.utf8CodeUnitCount
        let w = word.utf8Start
        for i in 0..<n {
            guard start + i < count else { throw JSONError(.unexpectedEnd, offset: count) }
            guard p[start + i] == w[i] else { throw JSONError(.invalidLiteral, offset: start) }
        }
        return start + n
    }

    mutating func enter() throws(JSONError) {
        depth += 1
        if depth > JSON.maxDepth { throw JSONError(.tooDeep, offset: pos) }
    }

    mutating func parseArray() throws(JSONError) -> Value {
        try enter()
        pos += 1
        var items: [Value] = []
        skipWhitespace()
        if pos < count && p[pos] == UInt8(ascii: "]") {
            pos += 1
            depth -= 1
            return .array(items)
        }
        while true {
            items.append(try parseValue())
            skipWhitespace()
            guard pos < count else { throw endOfInput }
            let b = p[pos]
            pos += 1
            if b == UInt8(ascii: ",") { continue }
            if b == UInt8(ascii: "]") { break }
            throw JSONError(.expectedCommaOrBracket, offset: pos - 1)
        }
        depth -= 1
        return .array(items)
    }

    mutating func parseObject() throws(JSONError) -> Value {
        try enter()
        pos += 1
        var object = ValueObject()
        skipWhitespace()
        if pos < count && p[pos] == UInt8(ascii: "}") {
            pos += 1
            depth -= 1
            return .object(object)
        }
        while true {
            skipWhitespace()
            guard pos < count else { throw endOfInput }
            guard p[pos] == UInt8(ascii: "\"") else { throw JSONError(.expectedKey, offset: pos) }
            let key = try parseString()
            skipWhitespace()
            guard pos < count else { throw endOfInput }
            guard p[pos] == UInt8(ascii: ":") else { throw JSONError(.expectedColon, offset: pos) }
            pos += 1
            let value = try parseValue()
            object.updateValue(value, forKey: key)
            skipWhitespace()
            guard pos < count else { throw endOfInput }
            let b = p[pos]
            pos += 1
            if b == UInt8(ascii: ",") { continue }
            if b == UInt8(ascii: "}") { break }
            throw JSONError(.expectedCommaOrBrace, offset: pos - 1)
        }
        depth -= 1
        return .object(object)
    }

    // MARK: Strings

    /// At the opening quote; leaves `pos` after the closing one.
    mutating func parseString() throws(JSONError) -> String {
        let open = pos
        pos += 1
        let start = pos
        var high: UInt8 = 0
        while pos < count {
            let b = p[pos]
            if b == UInt8(ascii: "\"") {
                let s = try makeString(UnsafeBufferPointer(start: p + start, count: pos - start), ascii: high < 0x80, at: start)
                pos += 1
                return s
            }
            if b == UInt8(ascii: "\\") { return try parseEscapedString(open: open, start: start) }
            if b < 0x20 { throw JSONError(.controlCharacter, offset: pos) }
            high |= b
            pos += 1
        }
        throw JSONError(.unterminatedString, offset: open)
    }

    func makeString(_ bytes: UnsafeBufferPointer<UInt8>, ascii: Bool, at offset: Int) throws(JSONError) -> String {
        if ascii { return String(decoding: bytes, as: UTF8.self) }
        guard let s = String(validating: bytes, as: UTF8.self) else {
            throw JSONError(.invalidUTF8, offset: offset)
        }
        return s
    }

    /// The slow path, once a backslash shows up at `pos`.
    mutating func parseEscapedString(open: Int, start: Int) throws(JSONError) -> String {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(pos - start + 16)
        buffer.append(contentsOf: UnsafeBufferPointer(start: p + start, count: pos - start))
        var high: UInt8 = 0
        for b in buffer { high |= b }
        while pos < count {
            let b = p[pos]
            if b == UInt8(ascii: "\"") {
                pos += 1
                return try buffer.withUnsafeBufferPointer { (buf) throws(JSONError) -> String in
                    try makeString(buf, ascii: high < 0x80, at: start)
                }
            }
            if b < 0x20 { throw JSONError(.controlCharacter, offset: pos) }
            if b != UInt8(ascii: "\\") {
                high |= b
                buffer.append(b)
                pos += 1
                continue
            }
            guard pos + 1 < count else { throw JSONError(.unterminatedString, offset: open) }
            let escape = pos
            let c = p[pos + 1]
            pos += 2
            switch c {
            case UInt8(ascii: "\""): buffer.append(UInt8(ascii: "\""))
            case UInt8(ascii: "\\"): buffer.append(UInt8(ascii: "\\"))
            case UInt8(ascii: "/"): buffer.append(UInt8(ascii: "/"))
            case UInt8(ascii: "b"): buffer.append(0x08)
            case UInt8(ascii: "f"): buffer.append(0x0C)
            case UInt8(ascii: "n"): buffer.append(0x0A)
            case UInt8(ascii: "r"): buffer.append(0x0D)
            case UInt8(ascii: "t"): buffer.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try readHex4(escape: escape, open: open)
                if scalar >= 0xD800 && scalar < 0xDC00 {
                    // A high surrogate: it takes the low one that should follow.
                    if pos + 1 < count && p[pos] == UInt8(ascii: "\\") && p[pos + 1] == UInt8(ascii: "u") {
                        let save = pos
                        pos += 2
                        let low = try readHex4(escape: save, open: open)
                        if low >= 0xDC00 && low < 0xE000 {
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        } else {
                            pos = save
                            scalar = 0xFFFD
                        }
                    } else {
                        scalar = 0xFFFD
                    }
                } else if scalar >= 0xDC00 && scalar < 0xE000 {
                    scalar = 0xFFFD
                }
                appendUTF8(scalar, to: &buffer)
                high |= 0x80
            default:
                throw JSONError(.invalidEscape, offset: escape, escape: c)
            }
        }
        throw JSONError(.unterminatedString, offset: open)
    }

    /// Four hex digits at `pos` (after "\u").
    mutating func readHex4(escape: Int, open: Int) throws(JSONError) -> UInt32 {
        var v: UInt32 = 0
        for _ in 0..<4 {
            guard pos < count else { throw JSONError(.unterminatedString, offset: open) }
            let b = p[pos]
            let d: UInt8
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = b - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = b - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = b - UInt8(ascii: "A") + 10
            default: throw JSONError(.invalidUnicodeEscape, offset: escape)
            }
            v = v << 4 | UInt32(d)
            pos += 1
        }
        return v
    }

    func appendUTF8(_ scalar: UInt32, to buffer: inout [UInt8]) {
        switch scalar {
        case 0..<0x80:
            buffer.append(UInt8(scalar))
        case 0x80..<0x800:
            buffer.append(UInt8(0xC0 | (scalar >> 6)))
            buffer.append(UInt8(0x80 | (scalar & 0x3F)))
        case 0x800..<0x10000:
            buffer.append(UInt8(0xE0 | (scalar >> 12)))
            buffer.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
            buffer.append(UInt8(0x80 | (scalar & 0x3F)))
        default:
            buffer.append(UInt8(0xF0 | (scalar >> 18)))
            buffer.append(UInt8(0x80 | ((scalar >> 12) & 0x3F)))
            buffer.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
            buffer.append(UInt8(0x80 | (scalar & 0x3F)))
        }
    }

    // MARK: Numbers

    @inline(__always)
    func isDigit(_ b: UInt8) -> Bool { b &- UInt8(ascii: "0") < 10 }

    mutating func parseNumber() throws(JSONError) -> Value {
        let start = pos
        var negative = false
        if p[pos] == UInt8(ascii: "-") {
            negative = true
            pos += 1
            guard pos < count else { throw endOfInput }
        }
        var mantissa: UInt64 = 0
        var overflow = false
        var exponent = 0

        @inline(__always)
        func accumulate(_ b: UInt8) -> Bool {
            let d = UInt64(b &- UInt8(ascii: "0"))
            if mantissa > (UInt64.max - d) / 10 { return false }
            mantissa = mantissa * 10 + d
            return true
        }

        let first = p[pos]
        if first == UInt8(ascii: "0") {
            pos += 1
            if pos < count && isDigit(p[pos]) { throw JSONError(.leadingZero, offset: start) }
        } else if isDigit(first) {
            while pos < count && isDigit(p[pos]) {
                if !overflow && !accumulate(p[pos]) { overflow = true }
                if overflow { exponent += 1 }
                pos += 1
            }
        } else {
            throw JSONError(.expectedDigit, offset: pos)
        }
        var integral = true
        if pos < count && p[pos] == UInt8(ascii: ".") {
            integral = false
            pos += 1
            guard pos < count else { throw endOfInput }
            guard isDigit(p[pos]) else { throw JSONError(.expectedFractionDigit, offset: pos) }
            while pos < count && isDigit(p[pos]) {
                if !overflow {
                    if accumulate(p[pos]) { exponent -= 1 } else { overflow = true }
                }
                pos += 1
            }
        }
        if pos < count && (p[pos] == UInt8(ascii: "e") || p[pos] == UInt8(ascii: "E")) {
            integral = false
            pos += 1
            var expNegative = false
            if pos < count && (p[pos] == UInt8(ascii: "+") || p[pos] == UInt8(ascii: "-")) {
                expNegative = p[pos] == UInt8(ascii: "-")
                pos += 1
            }
            guard pos < count else { throw endOfInput }
            guard isDigit(p[pos]) else { throw JSONError(.expectedExponentDigit, offset: pos) }
            var e = 0
            while pos < count && isDigit(p[pos]) {
                if e < 1_000_000 { e = e * 10 + Int(p[pos] &- UInt8(ascii: "0")) }
                pos += 1
            }
            exponent += expNegative ? -e : e
        }

        if integral && !overflow {
            if negative {
                if mantissa <= UInt64(Int64.max) { return .int(-Int64(mantissa)) }
                if mantissa == UInt64(Int64.max) + 1 { return .int(.min) }
            } else if mantissa <= UInt64(Int64.max) {
                return .int(Int64(mantissa))
            }
        }
        // Clinger's fast path: both the mantissa and 10^|exponent| are exact doubles, so one
        // multiplication or division rounds correctly.
        if !overflow && mantissa <= (1 << 53) && exponent >= -22 && exponent <= 22 {
            var d = Double(mantissa)
            if exponent < 0 { d /= Self.powersOfTen[-exponent] } else { d *= Self.powersOfTen[exponent] }
            return .double(negative ? -d : d)
        }
        let text = String(decoding: UnsafeBufferPointer(start: p + start, count: pos - start), as: UTF8.self)
        guard let d = Double(text), d.isFinite else { throw JSONError(.numberOutOfRange, offset: start) }
        return .double(d)
    }

    static let powersOfTen: [Double] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ]
}
