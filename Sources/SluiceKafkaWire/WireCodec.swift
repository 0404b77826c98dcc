// Kafka's primitive types (https://kafka.apache.org/protocol#protocol_types): big-endian
// integers, (unsigned) varints, strings and byte arrays with int16/int32 lengths, and in
// flexible versions their compact forms (unsigned-varint length + 1) and tagged fields.
// One reader and one writer serve every message; `flexible` picks the encodings.

import Foundation

/// Kafka's uuid type (topic ids): 16 bytes, all zero for "none".
public typealias KafkaUUID = UUID

extension UUID {
    public static let zero = UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
}

/// A malformed request: what was expected and where.
public struct WireError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var position: Int
    public var description: String { "\(message) at byte \(position)" }
}

public struct KafkaReader: Sendable {
    public let bytes: [UInt8]
    public private(set) var position: Int
    public var flexible: Bool
    public var remaining: Int { bytes.count - position }

    public init(_ bytes: [UInt8], at position: Int = 0, flexible: Bool = false) {
        self.bytes = bytes
        self.position = position
        self.flexible = flexible
    }

    private mutating func need(_ n: Int, _ what: StaticString) throws(WireError) {
        guard n >= 0, remaining >= n else {
            throw WireError(message: "truncated: \(what) needs \(n) bytes, \(remaining) left", position: position)
        }
    }

    public mutating func int8() throws(WireError) -> Int8 {
        try need(1, "an int8")
        defer { position += 1 }
        return Int8(bitPattern: bytes[position])
    }

    public mutating func bool() throws(WireError) -> Bool { try int8() != 0 }

    public mutating func int16() throws(WireError) -> Int16 {
        try need(2, "an int16")
        defer { position += 2 }
        return Int16(bitPattern: UInt16(bytes[position]) << 8 | UInt16(bytes[position + 1]))
    }

    public mutating func int32() throws(WireError) -> Int32 {
        try need(4, "an int32")
        var v: UInt32 = 0
        for i in 0..<4 { v = v << 8 | UInt32(bytes[position + i]) }
        position += 4
        return Int32(bitPattern: v)
    }

    public mutating func int64() throws(WireError) -> Int64 {
        try need(8, "an int64")
        var v: UInt64 = 0
        for i in 0..<8 { v = v << 8 | UInt64(bytes[position + i]) }
        position += 8
        return Int64(bitPattern: v)
    }

    public mutating func uvarint() throws(WireError) -> UInt32 {
        var v: UInt32 = 0
        var shift: UInt32 = 0
        while true {
            try need(1, "a varint")
            let b = bytes[position]
            position += 1
            guard shift <= 28 else { throw WireError(message: "varint longer than 5 bytes", position: position) }
            v |= UInt32(b & 0x7f) << shift
            if b & 0x80 == 0 { return v }
            shift += 7
        }
    }

    /// A length: int16/int32 in classic versions, uvarint-1 in flexible ones; -1 is null.
    private mutating func length(classicInt32: Bool) throws(WireError) -> Int {
        if flexible { return Int(try uvarint()) - 1 }
        return classicInt32 ? Int(try int32()) : Int(try int16())
    }

    public mutating func nullableString() throws(WireError) -> String? {
        let n = try length(classicInt32: false)
        if n < 0 { return nil }
        try need(n, "a string")
        defer { position += n }
        return String(decoding: bytes[position..<position + n], as: UTF8.self)
    }

    public mutating func string() throws(WireError) -> String {
        let at = position
        guard let s = try nullableString() else { throw WireError(message: "null where a string is required", position: at) }
        return s
    }

    /// Bytes (records use this): int32 length classically, compact in flexible versions.
    public mutating func nullableBytes() throws(WireError) -> ArraySlice<UInt8>? {
        let n = try length(classicInt32: true)
        if n < 0 { return nil }
        try need(n, "bytes")
        defer { position += n }
        return bytes[position..<position + n]
    }

    /// An array's element count (-1: null). Counts are bounded by the bytes left, so a
    /// hostile count cannot make a reader reserve memory it was not sent.
    public mutating func arrayCount() throws(WireError) -> Int {
        let at = position
        let n = try length(classicInt32: true)
        guard n <= remaining else { throw WireError(message: "array of \(n) elements in \(remaining) bytes", position: at) }
        return n
    }

    public mutating func array<T>(_ element: (inout KafkaReader) throws(WireError) -> T) throws(WireError) -> [T] {
        let n = try arrayCount()
        guard n > 0 else { return [] }
        var out: [T] = []
        out.reserveCapacity(n)
        for _ in 0..<n { out.append(try element(&self)) }
        return out
    }

    public mutating func uuid() throws(WireError) -> KafkaUUID {
        try need(16, "a uuid")
        defer { position += 16 }
        let b = bytes, p = position
        return UUID(uuid: (b[p], b[p + 1], b[p + 2], b[p + 3], b[p + 4], b[p + 5], b[p + 6], b[p + 7],
                           b[p + 8], b[p + 9], b[p + 10], b[p + 11], b[p + 12], b[p + 13], b[p + 14], b[p + 15]))
    }

    public mutating func uint16() throws(WireError) -> UInt16 { UInt16(bitPattern: try int16()) }

    public mutating func float64() throws(WireError) -> Double { Double(bitPattern: UInt64(bitPattern: try int64())) }

    /// Bytes that must not be null, copied out of the frame.
    public mutating func byteArray() throws(WireError) -> [UInt8] {
        let at = position
        guard let b = try nullableBytes() else { throw WireError(message: "null where bytes are required", position: at) }
        return Array(b)
    }

    public mutating func nullableByteArray() throws(WireError) -> [UInt8]? {
        guard let b = try nullableBytes() else { return nil }
        return Array(b)
    }

    /// A `records` field: the record-batch bytes as a range of this reader's buffer (no copy).
    public mutating func nullableRecords() throws(WireError) -> RecordBytes? {
        let n = try length(classicInt32: true)
        if n < 0 { return nil }
        try need(n, "records")
        defer { position += n }
        return RecordBytes(storage: bytes, range: position..<position + n)
    }

    public mutating func records() throws(WireError) -> RecordBytes {
        let at = position
        guard let b = try nullableRecords() else { throw WireError(message: "null where records are required", position: at) }
        return b
    }

    /// An array that may be null (count -1).
    public mutating func nullableArray<T>(_ element: (inout KafkaReader) throws(WireError) -> T) throws(WireError) -> [T]? {
        let n = try arrayCount()
        if n < 0 { return nil }
        var out: [T] = []
        out.reserveCapacity(n)
        for _ in 0..<n { out.append(try element(&self)) }
        return out
    }

    /// An array that must not be null (unlike `array`, which reads null as empty).
    public mutating func requiredArray<T>(_ element: (inout KafkaReader) throws(WireError) -> T) throws(WireError) -> [T] {
        let at = position
        guard let a = try nullableArray(element) else { throw WireError(message: "null where an array is required", position: at) }
        return a
    }

    public mutating func nullableArray<T: KafkaStruct>(of _: T.Type, version: Int16) throws(WireError) -> [T]? {
        try nullableArray { (r: inout KafkaReader) throws(WireError) -> T in try T(from: &r, version: version) }
    }

    public mutating func requiredArray<T: KafkaStruct>(of _: T.Type, version: Int16) throws(WireError) -> [T] {
        try requiredArray { (r: inout KafkaReader) throws(WireError) -> T in try T(from: &r, version: version) }
    }

    /// Starts one field of a tagged-field section: its tag, and where its payload ends.
    public mutating func taggedField() throws(WireError) -> (tag: UInt32, end: Int) {
        let tag = try uvarint()
        let size = Int(try uvarint())
        try need(size, "a tagged field")
        return (tag, position + size)
    }

    /// Skips the payload of a tagged field this version does not know.
    public mutating func skipTaggedField(to end: Int) {
        precondition(end >= position && end <= bytes.count)
        position = end
    }

    /// A known tagged field must fill exactly the size it declared.
    public mutating func endTaggedField(_ end: Int, tag: UInt32) throws(WireError) {
        guard position == end else {
            throw WireError(message: "tagged field \(tag) ends \(position - end) bytes off its declared size", position: position)
        }
    }

    /// Skips the tagged fields of a flexible struct (none are understood here).
    public mutating func taggedFields() throws(WireError) {
        guard flexible else { return }
        let count = try uvarint()
        for _ in 0..<count {
            _ = try uvarint()
            let size = Int(try uvarint())
            try need(size, "a tagged field")
            position += size
        }
    }
}

public struct KafkaWriter: Sendable {
    public var bytes: [UInt8]
    public var flexible: Bool

    public init(capacity: Int = 256, flexible: Bool = false) {
        bytes = []
        bytes.reserveCapacity(capacity)
        self.flexible = flexible
    }

    /// Room left at the front for the response header (size, correlation id and, in header v1,
    /// its tagged fields), filled in by `fillResponseHeader`.
    public private(set) var headerRoom = 0

    /// A response body to the request `r` is reading, in the request's encoding, with room for
    /// the response header in front so the frame needs no second copy. The header has tagged
    /// fields (v1) when the request is flexible, except where `headerTaggedFields` says
    /// otherwise (ApiVersions always answers with header v0).
    public init(responseTo r: KafkaReader, capacity: Int = 256, headerTaggedFields: Bool? = nil) {
        self.init(capacity: capacity + 9, flexible: r.flexible)
        headerRoom = (headerTaggedFields ?? r.flexible) ? 9 : 8
        bytes.append(contentsOf: repeatElement(0, count: headerRoom))
    }

    /// Writes the response header into the room left for it and returns the whole frame.
    public mutating func fillResponseHeader(correlationId: Int32) -> [UInt8] {
        precondition(headerRoom >= 8, "a response writer must be made with init(responseTo:)")
        let size = UInt32(bytes.count - 4)
        let c = UInt32(bitPattern: correlationId)
        for i in 0..<4 {
            bytes[i] = UInt8((size >> UInt32(24 - 8 * i)) & 0xff)
            bytes[4 + i] = UInt8((c >> UInt32(24 - 8 * i)) & 0xff)
        }
        if headerRoom == 9 { bytes[8] = 0 }  // no tagged fields
        return bytes
    }

    public mutating func int8(_ v: Int8) { bytes.append(UInt8(bitPattern: v)) }
    public mutating func bool(_ v: Bool) { bytes.append(v ? 1 : 0) }
    public mutating func int16(_ v: Int16) {
        let u = UInt16(bitPattern: v)
        bytes.append(UInt8(u >> 8)); bytes.append(UInt8(u & 0xff))
    }
    public mutating func int32(_ v: Int32) {
        let u = UInt32(bitPattern: v)
        for s in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8((u >> UInt32(s)) & 0xff)) }
    }
    public mutating func int64(_ v: Int64) {
        let u = UInt64(bitPattern: v)
        for s in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8((u >> UInt64(s)) & 0xff)) }
    }
    public mutating func uvarint(_ v: UInt32) {
        var v = v
        while v >= 0x80 { bytes.append(UInt8(v & 0x7f) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }

    private mutating func length(_ n: Int, classicInt32: Bool) {
        if flexible { uvarint(UInt32(n + 1)) } else if classicInt32 { int32(Int32(n)) } else { int16(Int16(n)) }
    }

    public mutating func string(_ s: String?) {
        guard let s else { length(-1, classicInt32: false); return }
        let u = s.utf8
        length(u.count, classicInt32: false)
        bytes += u
    }

    public mutating func bytes(_ b: some Collection<UInt8>) {
        length(b.count, classicInt32: true)
        bytes += b
    }

    public mutating func nullBytes() { length(-1, classicInt32: true) }

    public mutating func arrayCount(_ n: Int) { length(n, classicInt32: true) }

    public mutating func array<C: Collection>(_ items: C, _ element: (inout KafkaWriter, C.Element) -> Void) {
        arrayCount(items.count)
        for item in items { element(&self, item) }
    }

    public mutating func uuid(_ id: KafkaUUID) {
        withUnsafeBytes(of: id.uuid) { bytes.append(contentsOf: $0) }
    }

    public mutating func uint16(_ v: UInt16) { int16(Int16(bitPattern: v)) }
    public mutating func float64(_ v: Double) { int64(Int64(bitPattern: v.bitPattern)) }

    public mutating func nullableBytes(_ b: [UInt8]?) {
        if let b { bytes(b) } else { nullBytes() }
    }

    /// A `records` field: the batch bytes with a bytes length prefix.
    public mutating func records(_ r: RecordBytes) { bytes(r.storage[r.range]) }

    public mutating func nullableRecords(_ r: RecordBytes?) {
        if let r { records(r) } else { nullBytes() }
    }

    /// An array that may be null (count -1).
    public mutating func nullableArray<C: Collection>(_ items: C?, _ element: (inout KafkaWriter, C.Element) -> Void) {
        guard let items else { arrayCount(-1); return }
        array(items, element)
    }

    public mutating func array<T: KafkaStruct>(_ items: [T], version: Int16) {
        arrayCount(items.count)
        for item in items { item.encode(to: &self, version: version) }
    }

    public mutating func nullableArray<T: KafkaStruct>(_ items: [T]?, version: Int16) {
        guard let items else { arrayCount(-1); return }
        array(items, version: version)
    }

    /// One field of a tagged-field section: tag, payload size, payload (written by `body`).
    public mutating func taggedField(_ tag: UInt32, _ body: (inout KafkaWriter) -> Void) {
        var payload = KafkaWriter(capacity: 32, flexible: true)
        body(&payload)
        uvarint(tag)
        uvarint(UInt32(payload.bytes.count))
        bytes += payload.bytes
    }

    /// An empty tagged-field section (flexible versions only).
    public mutating func taggedFields() {
        if flexible { bytes.append(0) }
    }
}

/// Record-batch bytes inside a message, kept as a range of the buffer they arrived in (no copy).
public struct RecordBytes: Sendable, Equatable {
    public var storage: [UInt8]
    public var range: Range<Int>

    public init() {
        storage = []
        range = 0..<0
    }

    public init(storage: [UInt8], range: Range<Int>) {
        precondition(range.lowerBound >= 0 && range.upperBound <= storage.count)
        self.storage = storage
        self.range = range
    }

    /// All of `bytes`.
    public init(_ bytes: [UInt8]) {
        storage = bytes
        range = 0..<bytes.count
    }

    public var count: Int { range.count }
    public var isEmpty: Bool { range.isEmpty }
    public var slice: ArraySlice<UInt8> { storage[range] }

    /// Equal when the bytes are, wherever they are stored.
    public static func == (a: RecordBytes, b: RecordBytes) -> Bool { a.slice.elementsEqual(b.slice) }
}

/// A struct of a Kafka message (generated from Kafka's definitions, Messages/*.swift): decoded
/// and encoded for a given version of its message.
public protocol KafkaStruct: Sendable, Equatable {
    /// Every field at its default.
    init()
    init(from r: inout KafkaReader, version: Int16) throws(WireError)
    func encode(to w: inout KafkaWriter, version: Int16)
}

/// A request or response body. `init(from:version:)` and `encode(to:version:)` set the reader's
/// or writer's `flexible` from the version; neither touches the header. Decoding reads the
/// top-level tagged fields; bytes after them are the caller's to judge (Kafka ignores them).
public protocol KafkaMessage: KafkaStruct {
    static var apiKey: Int16 { get }
    /// The versions Sluice accepts (generated code handles exactly these).
    static var versions: ClosedRange<Int16> { get }
    /// Int16.max when never flexible.
    static var firstFlexibleVersion: Int16 { get }
}

extension KafkaMessage {
    public static func isFlexible(_ version: Int16) -> Bool { version >= firstFlexibleVersion }
}

public protocol KafkaRequestMessage: KafkaMessage {
    associatedtype Response: KafkaMessage
}
