// Big-endian readers and writers for Kafka's classic (non-flexible) encodings, used by the
// internal topics' keys and values and by the consumer protocol.

struct WireWriter {
    var bytes: [UInt8] = []

    mutating func int16(_ v: Int16) { let u = UInt16(bitPattern: v); bytes += [UInt8(u >> 8), UInt8(u & 0xff)] }
    mutating func int32(_ v: Int32) { let u = UInt32(bitPattern: v); bytes += [UInt8(u >> 24), UInt8((u >> 16) & 0xff), UInt8((u >> 8) & 0xff), UInt8(u & 0xff)] }
    mutating func int64(_ v: Int64) { int32(Int32(truncatingIfNeeded: v >> 32)); int32(Int32(truncatingIfNeeded: v)) }
    mutating func string(_ s: String) { int16(Int16(s.utf8.count)); bytes += s.utf8 }
    mutating func nullableString(_ s: String?) { if let s { string(s) } else { int16(-1) } }
    mutating func nullableBytes(_ b: [UInt8]?) {
        if let b { int32(Int32(b.count)); bytes += b } else { int32(-1) }
    }
}

struct WireReader {
    let bytes: [UInt8]
    var position = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    struct Truncated: Error {}

    var remaining: Int { bytes.count - position }

    mutating func int16() throws -> Int16 {
        guard remaining >= 2 else { throw Truncated() }
        defer { position += 2 }
        return Int16(bitPattern: UInt16(bytes[position]) << 8 | UInt16(bytes[position + 1]))
    }

    mutating func int32() throws -> Int32 {
        guard remaining >= 4 else { throw Truncated() }
        var v: UInt32 = 0
        for i in 0..<4 { v = v << 8 | UInt32(bytes[position + i]) }
        position += 4
        return Int32(bitPattern: v)
    }

    mutating func int64() throws -> Int64 {
        let hi = Int64(try int32())
        let lo = Int64(UInt32(bitPattern: try int32()))
        return hi << 32 | lo
    }

    mutating func string() throws -> String {
        guard let s = try nullableString() else { throw Truncated() }
        return s
    }

    mutating func nullableString() throws -> String? {
        let n = Int(try int16())
        if n < 0 { return nil }
        guard remaining >= n else { throw Truncated() }
        defer { position += n }
        return String(decoding: bytes[position..<(position + n)], as: UTF8.self)
    }

    mutating func nullableBytes() throws -> [UInt8]? {
        let n = Int(try int32())
        if n < 0 { return nil }
        guard remaining >= n else { throw Truncated() }
        defer { position += n }
        return Array(bytes[position..<(position + n)])
    }
}
