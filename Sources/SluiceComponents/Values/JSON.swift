// JSON text ⇄ Value. Our own parser and serializer (no Foundation): the parser works on raw
// bytes as they come out of a record, the serializer appends to a caller's byte buffer.
// Stateless; safe from any thread.

/// Parsing and serializing JSON (RFC 8259).
///
/// ```swift
/// let v = try JSON.parse(Array(#"{"id": 7, "price": 2.5, "tags": ["a"]}"#.utf8))
/// // .object(["id": .int(7), "price": .double(2.5), "tags": .array([.string("a")])])
/// String(decoding: JSON.serialize(v), as: UTF8.self)   // {"id":7,"price":2.5,"tags":["a"]}
/// ```
///
/// - Numbers without fraction or exponent that fit Int64 become `.int`, all others `.double`
///   (so `-0` is `.int(0)` and `-0.0` is `.double(-0.0)`); a number too large for a Double
///   is an error.
/// - Strings must be valid UTF-8; `\u` escapes may form surrogate pairs, and a lone
///   surrogate becomes U+FFFD.
/// - A repeated object key keeps its first position and its last value.
/// - Nesting deeper than `maxDepth` arrays/objects and anything after the value (other than
///   whitespace) are errors.
/// - Serializing is compact; doubles use the shortest text that reads back to the same
///   Double (always with a `.` or an exponent, so they read back as doubles); NaN and the
///   infinities become `null`.
public enum JSON {
    /// Arrays and objects may nest this deep.
    public static let maxDepth = 512

    public static func parse(_ bytes: UnsafeRawBufferPointer) throws(JSONError) -> Value {
        guard let base = bytes.baseAddress, bytes.count > 0 else {
            throw JSONError(.unexpectedEnd, offset: 0)
        }
        var parser = JSONParser(base.assumingMemoryBound(to: UInt8.self), count: bytes.count)
        return try parser.parseDocument()
    }

    public static func parse(_ bytes: [UInt8]) throws(JSONError) -> Value {
        let result = bytes.withUnsafeBytes { buffer in
            Result { () throws(JSONError) -> Value in try parse(buffer) }
        }
        return try result.get()
    }

    public static func parse(_ text: String) throws(JSONError) -> Value {
        var text = text
        let result = text.withUTF8 { buffer in
            Result { () throws(JSONError) -> Value in try parse(UnsafeRawBufferPointer(buffer)) }
        }
        return try result.get()
    }

    /// Appends the compact JSON text of `value` to `out`.
    public static func serialize(_ value: Value, into out: inout [UInt8]) {
        switch value {
        case .null:
            appendASCII("null", to: &out)
        case .bool(let b):
            appendASCII(b ? "true" : "false", to: &out)
        case .int(let i):
            appendInt(i, to: &out)
        case .double(let d):
            appendDouble(d, to: &out)
        case .string(let s):
            appendString(s, to: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            var first = true
            for item in items {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                serialize(item, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let object):
            out.append(UInt8(ascii: "{"))
            var first = true
            for (key, item) in object.entries {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                appendString(key, to: &out)
                out.append(UInt8(ascii: ":"))
                serialize(item, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    public static func serialize(_ value: Value) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(64)
        serialize(value, into: &out)
        return out
    }

    // MARK: - Pieces

    @inline(__always)
    static func appendASCII(_ s: StaticString, to out: inout [UInt8]) {
        s.withUTF8Buffer { out.append(contentsOf: $0) }
    }

    package static func appendInt(_ value: Int64, to out: inout [UInt8]) {
        if value >= 0 && value < 10 {
            out.append(UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: value))
            return
        }
        if value < 0 { out.append(UInt8(ascii: "-")) }
        var m = value.magnitude
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { buf in
            var n = 20
            while m > 0 {
                n -= 1
                buf[n] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: m % 10)
                m /= 10
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: buf[n..<20]))
        }
    }

    static func appendDouble(_ value: Double, to out: inout [UInt8]) {
        guard value.isFinite else {
            appendASCII("null", to: &out)
            return
        }
        // Swift's description is the shortest round-trip form and always has a '.' or an
        // exponent ("1.0", "1e-05", "5e-324", "1e+16"), all valid JSON numbers.
        out.append(contentsOf: value.description.utf8)
    }

    package static func appendString(_ s: String, to out: inout [UInt8]) {
        var s = s
        s.withUTF8 { appendString(UnsafeRawBufferPointer($0), to: &out) }
    }

    /// Appends UTF-8 `bytes` as a quoted JSON string (the caller vouches they are UTF-8).
    package static func appendString(_ bytes: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        do {
            var runStart = 0
            for i in 0..<bytes.count {
                let b = bytes[i]
                guard b < 0x20 || b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") else { continue }
                if runStart < i { out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart..<i])) }
                runStart = i + 1
                out.append(UInt8(ascii: "\\"))
                switch b {
                case UInt8(ascii: "\""): out.append(UInt8(ascii: "\""))
                case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\"))
                case 0x08: out.append(UInt8(ascii: "b"))
                case 0x0C: out.append(UInt8(ascii: "f"))
                case 0x0A: out.append(UInt8(ascii: "n"))
                case 0x0D: out.append(UInt8(ascii: "r"))
                case 0x09: out.append(UInt8(ascii: "t"))
                default:
                    let hex: StaticString = "0123456789abcdef"
                    out.append(UInt8(ascii: "u"))
                    out.append(UInt8(ascii: "0"))
                    out.append(UInt8(ascii: "0"))
                    hex.withUTF8Buffer { h in
                        out.append(h[Int(b >> 4)])
                        out.append(h[Int(b & 0xF)])
                    }
                }
            }
            if runStart < bytes.count { out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart...])) }
        }
        out.append(UInt8(ascii: "\""))
    }
}

/// Malformed JSON: what was expected and the byte offset (from 0) where it went wrong.
///
/// A trivial value (the message is composed when asked for), so rejecting a bad record costs
/// no allocation.
public struct JSONError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong. New codes may be added; switch with a `default`.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let raw: UInt8
        public static let unexpectedEnd = Code(raw: 0)
        public static let expectedValue = Code(raw: 1)
        public static let trailingCharacters = Code(raw: 2)
        public static let invalidLiteral = Code(raw: 3)
        public static let tooDeep = Code(raw: 4)
        public static let expectedCommaOrBracket = Code(raw: 5)
        public static let expectedCommaOrBrace = Code(raw: 6)
        public static let expectedKey = Code(raw: 7)
        public static let expectedColon = Code(raw: 8)
        public static let controlCharacter = Code(raw: 9)
        public static let unterminatedString = Code(raw: 10)
        public static let invalidUTF8 = Code(raw: 11)
        public static let invalidEscape = Code(raw: 12)
        public static let invalidUnicodeEscape = Code(raw: 13)
        public static let leadingZero = Code(raw: 14)
        public static let expectedDigit = Code(raw: 15)
        public static let expectedFractionDigit = Code(raw: 16)
        public static let expectedExponentDigit = Code(raw: 17)
        public static let numberOutOfRange = Code(raw: 18)

        static let messages = [
            "unexpected end of input", "expected a value", "expected end of input", "invalid literal",
            "nesting deeper than \(JSON.maxDepth) levels", "expected ',' or ']'", "expected ',' or '}'",
            "expected a string key", "expected ':'", "unescaped control character in string",
            "unterminated string", "invalid UTF-8 in string", "invalid escape", "invalid \\u escape",
            "leading zeros are not allowed", "expected a digit", "expected a digit after '.'",
            "expected a digit in the exponent", "number out of range",
        ]

        public var description: String { Self.messages[Int(raw)] }
    }

    public var code: Code
    public var offset: Int
    /// The character after the backslash, for `invalidEscape`.
    var escape: UInt8 = 0

    public init(_ code: Code, offset: Int) {
        self.code = code
        self.offset = offset
    }

    init(_ code: Code, offset: Int, escape: UInt8) {
        self.code = code
        self.offset = offset
        self.escape = escape
    }

    /// "expected ',' or '}'"
    public var message: String {
        if code == .invalidEscape, escape >= 0x21, escape < 0x7F {
            return "invalid escape '\\\(Character(Unicode.Scalar(escape)))'"
        }
        return code.description
    }

    /// "expected ',' or '}' at byte 17"
    public var description: String { "\(message) at byte \(offset)" }
}
