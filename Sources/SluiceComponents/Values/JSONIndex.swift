// Lazy JSON: one validating pass over a record's JSON that notes where the root object's
// top-level fields are, and decoders that read a field straight from the bytes. The pass
// accepts and rejects exactly what `JSON.parse` does, with the same `JSONError`; only objects
// and arrays asked for as values become `Value` trees. The scanner is a loop with a stack of
// one bit per nesting level (no recursion) and allocates nothing. Stateless; safe from any
// thread.
//
// Keys and strings compare as `JSON.parse` and `Value` compare them, as Swift Strings, which
// can make different byte sequences equal ("\u212A" is "K"; "é" is "e" + U+0301) but only
// when one has a byte ≥ 0x80: ASCII without escapes compares as bytes, the rest decodes to
// Strings. Keys follow `ValueObject` exactly: up to `indexThreshold` keys it also requires
// the same UTF-8 length (so "é" and "e" + U+0301 are two keys there), above that not.

/// What a JSON value is, from its first byte.
public enum JSONKind: UInt8, Sendable {
    case object, array, string, number, bool, null
}

/// One top-level field of a JSON object, as byte positions in the document (Int32: records are
/// far below 2 GiB).
///
/// ```swift
/// // {"id": 7, "name":"a\"b"}
/// // id:   keyStart 2, keyEnd 4 (its closing quote), valueStart 7, valueEnd 8, .number
/// // name: keyStart 11, keyEnd 15, valueStart 17 (the opening quote), valueEnd 23, .string,
/// //       valueEscaped
/// ```
public struct JSONField: Sendable, Hashable {
    /// The first byte of the key's text (after the opening quote).
    public var keyStart: Int32
    /// The position of the key's closing quote.
    public var keyEnd: Int32
    /// The first byte of the value (after whitespace); a string's opening quote.
    public var valueStart: Int32
    /// One past the value's last byte.
    public var valueEnd: Int32
    public var kind: JSONKind
    /// `Flags` bits: escapes and bytes ≥ 0x80 in the key's and a string value's text.
    var flags: UInt8

    /// The key's text contains a backslash escape.
    public var keyEscaped: Bool {
        get { flags & Flags.keyEscaped != 0 }
        set { flags = newValue ? flags | Flags.keyEscaped : flags & ~Flags.keyEscaped }
    }

    /// For strings: the text contains a backslash escape.
    public var valueEscaped: Bool {
        get { flags & Flags.valueEscaped != 0 }
        set { flags = newValue ? flags | Flags.valueEscaped : flags & ~Flags.valueEscaped }
    }

    /// The key is neither escaped nor has a byte ≥ 0x80, so comparing bytes is comparing Strings.
    var keyIsPlainASCII: Bool { flags & (Flags.keyEscaped | Flags.keyNonASCII) == 0 }

    /// A field made by hand. Whether the texts are ASCII is not known, so comparisons take the
    /// String path (always correct, only slower).
    public init(
        keyStart: Int32, keyEnd: Int32, valueStart: Int32, valueEnd: Int32,
        kind: JSONKind, keyEscaped: Bool, valueEscaped: Bool
    ) {
        self.init(
            keyStart: keyStart, keyEnd: keyEnd, valueStart: valueStart, valueEnd: valueEnd, kind: kind,
            flags: (keyEscaped ? Flags.keyEscaped : 0) | (valueEscaped ? Flags.valueEscaped : 0)
                | Flags.keyNonASCII | Flags.valueNonASCII
        )
    }

    init(keyStart: Int32, keyEnd: Int32, valueStart: Int32, valueEnd: Int32, kind: JSONKind, flags: UInt8) {
        self.keyStart = keyStart
        self.keyEnd = keyEnd
        self.valueStart = valueStart
        self.valueEnd = valueEnd
        self.kind = kind
        self.flags = flags
    }

    enum Flags {
        static let keyEscaped: UInt8 = 1
        static let keyNonASCII: UInt8 = 2
        static let valueEscaped: UInt8 = 4
        static let valueNonASCII: UInt8 = 8
    }
}

/// What `JSONIndex.scan` learned about the whole document.
public struct JSONScan: Sendable {
    public var rootKind: JSONKind
    /// True when the object repeats a key (compared after unescaping, exactly as `JSON.parse`
    /// merges them into one `ValueObject` entry). Integrators fall back to the full Value path
    /// then.
    public var hasDuplicateKeys: Bool
    /// Offset of the root object's closing brace (only meaningful for objects; -1 otherwise).
    public var closingBrace: Int32

    public init(rootKind: JSONKind, hasDuplicateKeys: Bool, closingBrace: Int32) {
        self.rootKind = rootKind
        self.hasDuplicateKeys = hasDuplicateKeys
        self.closingBrace = closingBrace
    }
}

/// Lazy access to a JSON document: validate and index once, then read fields from the bytes.
///
/// ```swift
/// let status = Array("status".utf8), paid = Array("paid".utf8)
/// var fields: [JSONField] = []
/// fields.reserveCapacity(16)   // reused for every record: scanning then allocates nothing
///
/// fields.removeAll(keepingCapacity: true)
/// let scan = try JSONIndex.scan(doc, into: &fields)   // doc: {"id":123,"status":"paid"}
/// if scan.hasDuplicateKeys { /* JSONIndex.materialize(doc) and the Value path */ }
/// let isPaid = fields.withUnsafeBufferPointer { fs in
///     status.withUnsafeBytes { key in paid.withUnsafeBytes { literal in
///         JSONIndex.find(key, in: fs, bytes: doc, hint: 1)
///             .map { JSONIndex.stringEquals(fs[$0], literal, in: doc) } ?? false
///     } }
/// }   // true
/// ```
public enum JSONIndex {
    /// Validates `bytes` as one JSON document exactly as `JSON.parse` does (throwing the same
    /// error) and, when the root is an object, appends its top-level fields in document order to
    /// `fields`. Never removes what was already there; on error, `fields` is left as it was.
    ///
    /// Allocates nothing except when `fields` must grow, when the object has a key with an
    /// escape or a byte ≥ 0x80 (keys are then compared as Strings), and for the numbers whose
    /// range only the parser's own conversion can decide: magnitudes from 1e308 to 1e309, and
    /// exponents of 10^7 and more. Documents must be smaller than 2 GiB.
    public static func scan(_ bytes: UnsafeRawBufferPointer, into fields: inout [JSONField]) throws(JSONError) -> JSONScan {
        guard let base = bytes.baseAddress, bytes.count > 0 else { throw JSONError(.unexpectedEnd, offset: 0) }
        precondition(bytes.count <= Int(Int32.max), "JSONIndex.scan: documents must be smaller than 2 GiB")
        var scanner = JSONScanner(base.assumingMemoryBound(to: UInt8.self), count: bytes.count)
        let first = fields.count
        do {
            return try scanner.scanDocument(into: &fields)
        } catch {
            if fields.count > first { fields.removeSubrange(first..<fields.count) }
            throw error
        }
    }

    /// The index in `fields` of the field whose (unescaped) key equals `key` (UTF-8 bytes),
    /// trying `hint` first (an index into `fields`; out-of-range hints are fine). With duplicate
    /// keys, the last occurrence (JSON.parse keeps the last value).
    ///
    /// Keys compare as `ValueObject.index(forKey:)` compares them (as Strings; with at most
    /// `ValueObject.indexThreshold` fields, of the same UTF-8 length too), so a record without
    /// repeated keys finds what its parsed object would. No allocation when the key and the
    /// fields' keys are ASCII without escapes (or equal as bytes); otherwise short keys (up to 15
    /// bytes) still fit Swift's inline strings.
    public static func find(
        _ key: UnsafeRawBufferPointer, in fields: UnsafeBufferPointer<JSONField>,
        bytes: UnsafeRawBufferPointer, hint: Int
    ) -> Int? {
        guard let base = bytes.baseAddress, !fields.isEmpty else { return nil }
        var probe = KeyProbe(
            key, document: base.assumingMemoryBound(to: UInt8.self), count: bytes.count,
            sameLength: fields.count <= ValueObject.indexThreshold
        )
        if hint >= 0 && hint < fields.count && probe.matches(fields[hint]) {
            var i = fields.count - 1
            while i > hint {
                if probe.matches(fields[i]) { return i }
                i -= 1
            }
            return hint
        }
        var i = fields.count - 1
        while i >= 0 {
            if i != hint && probe.matches(fields[i]) { return i }
            i -= 1
        }
        return nil
    }

    /// The field's value as a Value, equal to what `JSON.parse` gives for it: numbers as `.int`
    /// or `.double` exactly as the parser decides, strings unescaped, true/false/null, and
    /// objects/arrays parsed fully (the only case that builds a tree).
    public static func value(_ field: JSONField, in bytes: UnsafeRawBufferPointer) -> Value {
        value(
            kind: field.kind, escaped: field.valueEscaped,
            start: Int(field.valueStart), end: Int(field.valueEnd), in: bytes
        )
    }

    /// The value at `start..<end` (`valueStart..<valueEnd` of any value in a scanned document)
    /// as a Value; used for nested paths. `.null` when the range holds no such value.
    public static func value(kind: JSONKind, escaped: Bool, start: Int, end: Int, in bytes: UnsafeRawBufferPointer) -> Value {
        guard let base = bytes.baseAddress, start >= 0, start < end, end <= bytes.count else { return .null }
        let p = base.assumingMemoryBound(to: UInt8.self)
        switch kind {
        case .null:
            return .null
        case .bool:
            return .bool(p[start] == UInt8(ascii: "t"))
        case .string where !escaped:
            guard end - start >= 2 else { return .null }
            // Validated by the scan: decoding is what the parser's validating path gives.
            return .string(String(decoding: UnsafeBufferPointer(start: p + start + 1, count: end - start - 2), as: UTF8.self))
        case .string:
            var parser = JSONParser(p, count: end)
            parser.pos = start
            guard p[start] == UInt8(ascii: "\""), let s = try? parser.parseString() else { return .null }
            return .string(s)
        case .number:
            return number(p, start: start, end: end)
        case .object, .array:
            var parser = JSONParser(p, count: end)
            parser.pos = start
            return (try? parser.parseValue()) ?? .null
        }
    }

    /// A number field as Double (an int converts, as `Value.asDouble` does); nil when it is not
    /// a number. Bit for bit what `JSON.parse` gives: this is the parser's own routine. No
    /// allocation, except for numbers the parser converts through their text (beyond its exact
    /// fast path: more than 19 significant digits, or more than 2^53 or 10^±22 combined) when
    /// that text is longer than 15 bytes.
    public static func double(_ field: JSONField, in bytes: UnsafeRawBufferPointer) -> Double? {
        guard field.kind == .number, let base = bytes.baseAddress,
              field.valueStart >= 0, field.valueStart < field.valueEnd, Int(field.valueEnd) <= bytes.count
        else { return nil }
        switch number(base.assumingMemoryBound(to: UInt8.self), start: Int(field.valueStart), end: Int(field.valueEnd)) {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    /// Whether a string field equals `literal` (UTF-8 bytes) after unescaping, as Strings compare
    /// (as `Value.string` and the expression language do); false when the field is not a string.
    /// No allocation when the field has no escapes and either the bytes are equal or both are
    /// ASCII.
    public static func stringEquals(
        _ field: JSONField, _ literal: UnsafeRawBufferPointer, in bytes: UnsafeRawBufferPointer
    ) -> Bool {
        guard field.kind == .string, let base = bytes.baseAddress,
              field.valueStart >= 0, field.valueEnd - field.valueStart >= 2, Int(field.valueEnd) <= bytes.count
        else { return false }
        let p = base.assumingMemoryBound(to: UInt8.self)
        if !field.valueEscaped {
            let start = Int(field.valueStart) + 1
            let length = Int(field.valueEnd) - 1 - start
            if length == literal.count && bytesEqual(p + start, literal, count: length) { return true }
            if field.flags & JSONField.Flags.valueNonASCII == 0 && isASCII(literal) { return false }
        }
        guard case .string(let s) = value(field, in: bytes) else { return false }
        return s == String(decoding: literal, as: UTF8.self)
    }

    /// The whole document as a Value (same as `JSON.parse`); the fallback for components that
    /// need a tree.
    public static func materialize(_ bytes: UnsafeRawBufferPointer) throws(JSONError) -> Value {
        try JSON.parse(bytes)
    }

    // MARK: - Pieces

    /// The number at `start..<end`, decoded by the parser itself.
    static func number(_ p: UnsafePointer<UInt8>, start: Int, end: Int) -> Value {
        var parser = JSONParser(p, count: end)
        parser.pos = start
        return (try? parser.parseNumber()) ?? .null
    }

    /// A field's key as `JSON.parse` makes it.
    static func key(_ field: JSONField, _ p: UnsafePointer<UInt8>, count: Int) -> String {
        let start = Int(field.keyStart)
        let end = Int(field.keyEnd)
        guard start >= 1, start <= end, end < count else { return "" }
        if !field.keyEscaped {
            return String(decoding: UnsafeBufferPointer(start: p + start, count: end - start), as: UTF8.self)
        }
        var parser = JSONParser(p, count: end + 1)
        parser.pos = start - 1
        return (try? parser.parseString()) ?? ""
    }

    /// Whether two of `fields` have the same key as `JSON.parse` compares keys. `plain`: every
    /// key is ASCII without escapes, so bytes decide.
    static func hasRepeatedKey(
        _ fields: UnsafeBufferPointer<JSONField>, _ p: UnsafePointer<UInt8>, count: Int, plain: Bool
    ) -> Bool {
        let n = fields.count
        guard n >= 2 else { return false }
        if !plain {
            // Merged exactly as the parser merges them.
            var object = ValueObject(minimumCapacity: n)
            for f in fields {
                if object.updateValue(.null, forKey: key(f, p, count: count)) != nil { return true }
            }
            return false
        }
        @inline(__always)
        func same(_ a: JSONField, _ b: JSONField) -> Bool {
            let length = a.keyEnd &- a.keyStart
            return b.keyEnd &- b.keyStart == length
                && bytesEqual(p + Int(a.keyStart), p + Int(b.keyStart), count: Int(length))
        }
        // Records have a handful of fields: comparing each key with the earlier ones (lengths
        // first) is cheapest. Large objects use a hash table, so a hostile record with many
        // fields costs linear time.
        if n <= 32 {
            for i in 1..<n {
                for j in 0..<i where same(fields[i], fields[j]) { return true }
            }
            return false
        }
        var capacity = 64
        while capacity < 2 * n { capacity <<= 1 }
        return withUnsafeTemporaryAllocation(of: Int32.self, capacity: capacity) { table in
            table.initialize(repeating: -1)
            let mask = capacity - 1
            for i in 0..<n {
                let f = fields[i]
                var hasher = Hasher()
                hasher.combine(bytes: UnsafeRawBufferPointer(start: p + Int(f.keyStart), count: Int(f.keyEnd &- f.keyStart)))
                var slot = hasher.finalize() & mask
                while table[slot] >= 0 {
                    if same(f, fields[Int(table[slot])]) { return true }
                    slot = (slot &+ 1) & mask
                }
                table[slot] = Int32(truncatingIfNeeded: i)
            }
            return false
        }
    }

    @inline(__always)
    static func bytesEqual(_ a: UnsafePointer<UInt8>, _ b: UnsafeRawBufferPointer, count: Int) -> Bool {
        guard count > 0 else { return true }
        guard let bp = b.baseAddress else { return false }
        return bytesEqual(a, bp.assumingMemoryBound(to: UInt8.self), count: count)
    }

    @inline(__always)
    static func bytesEqual(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, count: Int) -> Bool {
        var i = 0
        while i &+ 8 <= count {
            let x = UnsafeRawPointer(a).loadUnaligned(fromByteOffset: i, as: UInt64.self)
            let y = UnsafeRawPointer(b).loadUnaligned(fromByteOffset: i, as: UInt64.self)
            if x != y { return false }
            i &+= 8
        }
        while i < count {
            if a[i] != b[i] { return false }
            i &+= 1
        }
        return true
    }

    package static func isASCII(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var high: UInt8 = 0
        for b in bytes { high |= b }
        return high < 0x80
    }

    /// Well-formed UTF-8 (Unicode Table 3-7), as `String(validating:as:)` decides it.
    package static func isValidUTF8(_ p: UnsafePointer<UInt8>, count: Int) -> Bool {
        var i = 0
        while i < count {
            if i &+ 8 <= count,
               UnsafeRawPointer(p).loadUnaligned(fromByteOffset: i, as: UInt64.self) & 0x8080_8080_8080_8080 == 0 {
                i &+= 8
                continue
            }
            let b0 = p[i]
            if b0 < 0x80 {
                i &+= 1
                continue
            }
            @inline(__always) func isContinuation(_ b: UInt8) -> Bool { b & 0xC0 == 0x80 }
            switch b0 {
            case 0xC2...0xDF:
                guard i + 1 < count, isContinuation(p[i + 1]) else { return false }
                i &+= 2
            case 0xE0...0xEF:
                guard i + 2 < count, isContinuation(p[i + 2]) else { return false }
                let b1 = p[i + 1]
                switch b0 {
                case 0xE0: guard b1 >= 0xA0 && b1 <= 0xBF else { return false }
                case 0xED: guard b1 >= 0x80 && b1 <= 0x9F else { return false }  // no surrogates
                default: guard isContinuation(b1) else { return false }
                }
                i &+= 3
            case 0xF0...0xF4:
                guard i + 3 < count, isContinuation(p[i + 2]), isContinuation(p[i + 3]) else { return false }
                let b1 = p[i + 1]
                switch b0 {
                case 0xF0: guard b1 >= 0x90 && b1 <= 0xBF else { return false }
                case 0xF4: guard b1 >= 0x80 && b1 <= 0x8F else { return false }  // up to U+10FFFF
                default: guard isContinuation(b1) else { return false }
                }
                i &+= 4
            default:
                return false  // a continuation byte, C0/C1 (overlong) or F5...FF
            }
        }
        return true
    }
}

/// A key being looked up, compared with fields' keys as `ValueObject.index(forKey:)` does.
struct KeyProbe {
    let key: UnsafeRawBufferPointer
    let keyIsASCII: Bool
    let p: UnsafePointer<UInt8>
    let count: Int
    /// Equal keys must also have the same UTF-8 length (ValueObject's linear search).
    let sameLength: Bool
    /// The key as a String, once a comparison needs it.
    var text: String?

    init(_ key: UnsafeRawBufferPointer, document p: UnsafePointer<UInt8>, count: Int, sameLength: Bool) {
        self.key = key
        self.keyIsASCII = JSONIndex.isASCII(key)
        self.p = p
        self.count = count
        self.sameLength = sameLength
    }

    @inline(__always)
    mutating func matches(_ field: JSONField) -> Bool {
        let length = Int(field.keyEnd &- field.keyStart)
        let escaped = field.keyEscaped
        if !escaped {
            guard field.keyStart >= 0, length >= 0, Int(field.keyEnd) <= count else { return false }
            if length == key.count && JSONIndex.bytesEqual(p + Int(field.keyStart), key, count: length) { return true }
            // Different bytes are different Strings unless one has a byte ≥ 0x80.
            if field.keyIsPlainASCII && keyIsASCII { return false }
            if sameLength && length != key.count { return false }
        }
        let fieldKey = JSONIndex.key(field, p, count: count)
        if sameLength && escaped && fieldKey.utf8.count != key.count { return false }
        if text == nil { text = String(decoding: key, as: UTF8.self) }
        return fieldKey == text
    }
}

/// One validating pass over one document, mirroring `JSONParser` decision for decision (same
/// checks in the same order, so the same first error), without building anything.
package struct JSONScanner {
    package let p: UnsafePointer<UInt8>
    package let count: Int
    package var pos = 0

    package init(_ p: UnsafePointer<UInt8>, count: Int) {
        self.p = p
        self.count = count
    }

    /// `skipString` result bits.
    package static let stringEscaped: UInt8 = 1
    package static let stringNonASCII: UInt8 = 2

    package var endOfInput: JSONError { JSONError(.unexpectedEnd, offset: count) }

    mutating func scanDocument(into fields: inout [JSONField]) throws(JSONError) -> JSONScan {
        skipWhitespace()
        guard pos < count else { throw endOfInput }
        let scan: JSONScan
        if p[pos] == UInt8(ascii: "{") {
            scan = try scanRootObject(into: &fields)
        } else {
            let (kind, _) = try skipValue(depth: 0)
            scan = JSONScan(rootKind: kind, hasDuplicateKeys: false, closingBrace: -1)
        }
        skipWhitespace()
        if pos < count { throw JSONError(.trailingCharacters, offset: pos) }
        return scan
    }

    /// The root object at `pos`, noting each field.
    mutating func scanRootObject(into fields: inout [JSONField]) throws(JSONError) -> JSONScan {
        if 1 > JSON.maxDepth { throw JSONError(.tooDeep, offset: pos) }
        pos += 1
        let first = fields.count
        var keyFlags: UInt8 = 0
        skipWhitespace()
        if pos < count && p[pos] == UInt8(ascii: "}") {
            pos += 1
            return JSONScan(rootKind: .object, hasDuplicateKeys: false, closingBrace: Int32(truncatingIfNeeded: pos - 1))
        }
        while true {
            skipWhitespace()
            guard pos < count else { throw endOfInput }
            guard p[pos] == UInt8(ascii: "\"") else { throw JSONError(.expectedKey, offset: pos) }
            let keyStart = pos + 1
            let keyString = try skipString()
            let keyEnd = pos - 1
            keyFlags |= keyString
            skipWhitespace()
            guard pos < count else { throw endOfInput }
            guard p[pos] == UInt8(ascii: ":") else { throw JSONError(.expectedColon, offset: pos) }
            pos += 1
            skipWhitespace()
            guard pos < count else { throw endOfInput }
            let valueStart = pos
            let (kind, valueString) = try skipValue(depth: 1)
            fields.append(JSONField(
                keyStart: Int32(truncatingIfNeeded: keyStart), keyEnd: Int32(truncatingIfNeeded: keyEnd),
                valueStart: Int32(truncatingIfNeeded: valueStart), valueEnd: Int32(truncatingIfNeeded: pos),
                kind: kind, flags: keyString | valueString << 2
            ))
            skipWhitespace()
            guard pos < count else { throw endOfInput }
            let b = p[pos]
            pos += 1
            if b == UInt8(ascii: ",") { continue }
            if b == UInt8(ascii: "}") { break }
            throw JSONError(.expectedCommaOrBrace, offset: pos - 1)
        }
        let repeated = fields.withUnsafeBufferPointer { all in
            JSONIndex.hasRepeatedKey(UnsafeBufferPointer(rebasing: all[first...]), p, count: count, plain: keyFlags == 0)
        }
        return JSONScan(rootKind: .object, hasDuplicateKeys: repeated, closingBrace: Int32(truncatingIfNeeded: pos - 1))
    }

    @inline(__always)
    package mutating func skipWhitespace() {
        while pos < count {
            let b = p[pos]
            guard b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 else { return }
            pos &+= 1
        }
    }

    /// The value at `pos` (whitespace skipped, `pos < count`) inside `depth` open containers;
    /// leaves `pos` after it. Returns its kind and, for a string, the `skipString` bits.
    @inline(__always)
    package mutating func skipValue(depth: Int) throws(JSONError) -> (JSONKind, UInt8) {
        switch p[pos] {
        case UInt8(ascii: "{"):
            try skipContainer(depth: depth)
            return (.object, 0)
        case UInt8(ascii: "["):
            try skipContainer(depth: depth)
            return (.array, 0)
        case let b:
            return try skipScalar(b)
        }
    }

    /// A string, literal or number starting with `b` at `pos`.
    @inline(__always)
    mutating func skipScalar(_ b: UInt8) throws(JSONError) -> (JSONKind, UInt8) {
        switch b {
        case UInt8(ascii: "\""): return (.string, try skipString())
        case UInt8(ascii: "t"): try skipLiteral("true"); return (.bool, 0)
        case UInt8(ascii: "f"): try skipLiteral("false"); return (.bool, 0)
        case UInt8(ascii: "n"): try skipLiteral("null"); return (.null, 0)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try skipNumber(); return (.number, 0)
        default: throw JSONError(.expectedValue, offset: pos)
        }
    }

    mutating func skipLiteral(_ word: StaticString) throws(JSONError) {
        pos = try JSONParser.matchLiteral(word, p, count: count, at: pos)
    }

    // MARK: Containers

    /// The array or object at `pos`, inside `depth` open containers; leaves `pos` after its
    /// closing bracket.
    mutating func skipContainer(depth: Int) throws(JSONError) {
        // One bit per level, set for objects.
        try withUnsafeTemporaryAllocation(of: UInt64.self, capacity: JSON.maxDepth / 64 + 1) { (levels) throws(JSONError) in
            levels.initialize(repeating: 0)
            try skipContainer(depth: depth, levels: levels.baseAddress!)
        }
    }

    mutating func skipContainer(depth outer: Int, levels: UnsafeMutablePointer<UInt64>) throws(JSONError) {
        var depth = outer
        var b = p[pos]
        while true {
            // `b`, at `pos`, starts a value.
            if b == UInt8(ascii: "{") || b == UInt8(ascii: "[") {
                depth += 1
                if depth > JSON.maxDepth { throw JSONError(.tooDeep, offset: pos) }
                let isObject = b == UInt8(ascii: "{")
                let bit = UInt64(1) << UInt64(depth & 63)
                if isObject { levels[depth >> 6] |= bit } else { levels[depth >> 6] &= ~bit }
                pos += 1
                skipWhitespace()
                if pos < count && p[pos] == (isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")) {
                    pos += 1
                    depth -= 1
                } else {
                    if isObject { try skipKeyAndColon() }
                    skipWhitespace()
                    guard pos < count else { throw endOfInput }
                    b = p[pos]
                    continue
                }
            } else {
                _ = try skipScalar(b)
            }
            // After a value: close the containers that end here, up to the next element.
            while true {
                if depth == outer { return }
                skipWhitespace()
                guard pos < count else { throw endOfInput }
                let c = p[pos]
                pos += 1
                let inObject = levels[depth >> 6] & (UInt64(1) << UInt64(depth & 63)) != 0
                if c == UInt8(ascii: ",") {
                    if inObject { try skipKeyAndColon() }
                    break
                }
                if inObject {
                    guard c == UInt8(ascii: "}") else { throw JSONError(.expectedCommaOrBrace, offset: pos - 1) }
                } else {
                    guard c == UInt8(ascii: "]") else { throw JSONError(.expectedCommaOrBracket, offset: pos - 1) }
                }
                depth -= 1
            }
            skipWhitespace()
            guard pos < count else { throw endOfInput }
            b = p[pos]
        }
    }

    /// A nested object's `"key" :`.
    mutating func skipKeyAndColon() throws(JSONError) {
        skipWhitespace()
        guard pos < count else { throw endOfInput }
        guard p[pos] == UInt8(ascii: "\"") else { throw JSONError(.expectedKey, offset: pos) }
        _ = try skipString()
        skipWhitespace()
        guard pos < count else { throw endOfInput }
        guard p[pos] == UInt8(ascii: ":") else { throw JSONError(.expectedColon, offset: pos) }
        pos += 1
    }

    // MARK: Strings

    /// At the opening quote; leaves `pos` after the closing one. Returns `stringEscaped` and
    /// `stringNonASCII` bits.
    ///
    /// Like the parser, it reports a control character, a bad escape or a missing closing quote
    /// before invalid UTF-8, and invalid UTF-8 at the first byte of the text. Checking the raw
    /// text is checking the parser's unescaped buffer: escapes are ASCII and decode to whole
    /// scalars, so neither can mend or break a sequence around them.
    @inline(__always)
    package mutating func skipString() throws(JSONError) -> UInt8 {
        let open = pos
        pos += 1
        let start = pos
        var high: UInt64 = 0
        var flags: UInt8 = 0
        let raw = UnsafeRawPointer(p)
        while true {
            // Eight bytes at a time while none is a quote, a backslash or a control character.
            while pos &+ 8 <= count {
                let w = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: pos, as: UInt64.self))
                let special = Self.specialBytes(w)
                if special != 0 {
                    let k = special.trailingZeroBitCount >> 3
                    high |= w & ((UInt64(1) << UInt64(k << 3)) &- 1)
                    pos &+= k
                    break
                }
                high |= w
                pos &+= 8
            }
            guard pos < count else { throw JSONError(.unterminatedString, offset: open) }
            let b = p[pos]
            if b == UInt8(ascii: "\"") { break }
            if b == UInt8(ascii: "\\") {
                flags = Self.stringEscaped
                try skipEscape(open: open)
                continue
            }
            if b < 0x20 { throw JSONError(.controlCharacter, offset: pos) }
            high |= UInt64(b)
            pos &+= 1
        }
        if high & 0x8080_8080_8080_8080 != 0 {
            guard JSONIndex.isValidUTF8(p + start, count: pos - start) else {
                throw JSONError(.invalidUTF8, offset: start)
            }
            flags |= Self.stringNonASCII
        }
        pos += 1
        return flags
    }

    /// A mask with the high bit set in (at least) the first byte of `w`, in memory order, that
    /// is a quote, a backslash or below 0x20; zero when there is none. Bits above the first
    /// such byte may be spurious (borrows), bits below it never are.
    @inline(__always)
    static func specialBytes(_ w: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let quotes = w ^ (ones &* 0x22)
        let backslashes = w ^ (ones &* 0x5C)
        let zeroInQuotes = (quotes &- ones) & ~quotes
        let zeroInBackslashes = (backslashes &- ones) & ~backslashes
        let control = (w &- ones &* 0x20) & ~w
        return (zeroInQuotes | zeroInBackslashes | control) & 0x8080_8080_8080_8080
    }

    /// The escape at `pos` (a backslash). A `\u` that starts a surrogate pair needs no
    /// lookahead here: the parser's check of the second half fails exactly where reading it as
    /// an escape of its own does.
    mutating func skipEscape(open: Int) throws(JSONError) {
        guard pos + 1 < count else { throw JSONError(.unterminatedString, offset: open) }
        let escape = pos
        let c = p[pos + 1]
        pos += 2
        switch c {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
             UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
            return
        case UInt8(ascii: "u"):
            for _ in 0..<4 {
                guard pos < count else { throw JSONError(.unterminatedString, offset: open) }
                switch p[pos] {
                case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"),
                     UInt8(ascii: "A")...UInt8(ascii: "F"):
                    pos += 1
                default:
                    throw JSONError(.invalidUnicodeEscape, offset: escape)
                }
            }
        default:
            throw JSONError(.invalidEscape, offset: escape, escape: c)
        }
    }

    // MARK: Numbers

    @inline(__always)
    func isDigit(_ b: UInt8) -> Bool { b &- UInt8(ascii: "0") < 10 }

    /// The parser's grammar checks, then its range check without converting: a number is out
    /// of range when it rounds to infinity, which only numbers from 1e308 up can; the parser
    /// itself decides those between 1e308 and 1e309.
    mutating func skipNumber() throws(JSONError) {
        let start = pos
        if p[pos] == UInt8(ascii: "-") {
            pos += 1
            guard pos < count else { throw endOfInput }
        }
        // The power of ten of the first nonzero digit, when there is one.
        var lead = 0
        var nonzero = false
        let first = p[pos]
        if first == UInt8(ascii: "0") {
            pos += 1
            if pos < count && isDigit(p[pos]) { throw JSONError(.leadingZero, offset: start) }
        } else if isDigit(first) {
            let digits = pos
            pos &+= 1
            while pos < count && isDigit(p[pos]) { pos &+= 1 }
            lead = pos - digits - 1
            nonzero = true
        } else {
            throw JSONError(.expectedDigit, offset: pos)
        }
        if pos < count && p[pos] == UInt8(ascii: ".") {
            pos += 1
            guard pos < count else { throw endOfInput }
            guard isDigit(p[pos]) else { throw JSONError(.expectedFractionDigit, offset: pos) }
            let fraction = pos
            while pos < count && isDigit(p[pos]) {
                if !nonzero && p[pos] != UInt8(ascii: "0") {
                    nonzero = true
                    lead = fraction - pos - 1
                }
                pos &+= 1
            }
        }
        var exponent = 0
        if pos < count && (p[pos] == UInt8(ascii: "e") || p[pos] == UInt8(ascii: "E")) {
            pos += 1
            var negative = false
            if pos < count && (p[pos] == UInt8(ascii: "+") || p[pos] == UInt8(ascii: "-")) {
                negative = p[pos] == UInt8(ascii: "-")
                pos += 1
            }
            guard pos < count else { throw endOfInput }
            guard isDigit(p[pos]) else { throw JSONError(.expectedExponentDigit, offset: pos) }
            while pos < count && isDigit(p[pos]) {
                // Far beyond any document's digit count: stopping here keeps the sign of
                // `lead + exponent` right.
                if exponent < 1 << 40 { exponent = exponent * 10 + Int(p[pos] &- UInt8(ascii: "0")) }
                pos &+= 1
            }
            if negative { exponent = -exponent }
        }
        guard nonzero else { return }
        let magnitude = lead + exponent
        if magnitude < 308 { return }
        // From 10^7 on the parser's exponent saturates and its fast path may take a number
        // whose text is out of range, so it decides those too.
        if magnitude > 308 && exponent < 10_000_000 { throw JSONError(.numberOutOfRange, offset: start) }
        let end = pos
        var parser = JSONParser(p, count: count)
        parser.pos = start
        _ = try parser.parseNumber()
        pos = end
    }
}
