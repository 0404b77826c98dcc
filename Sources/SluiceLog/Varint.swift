// Zig-zag variable-length integers, as Kafka's record format encodes them (protobuf style).

public enum Varint {
    /// Bytes the zig-zag encoding of `value` takes (1...10).
    @inlinable
    public static func size(_ value: Int64) -> Int {
        var v = UInt64(bitPattern: (value << 1) ^ (value >> 63))
        var n = 1
        while v >= 0x80 { v >>= 7; n += 1 }
        return n
    }

    /// Appends the zig-zag encoding of `value`.
    @inlinable
    public static func append(_ value: Int64, to bytes: inout [UInt8]) {
        var v = UInt64(bitPattern: (value << 1) ^ (value >> 63))
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    /// Decodes a zig-zag varint at `pos`, advancing it; nil when the bytes end first or the
    /// encoding is longer than 10 bytes or carries bits past 64.
    @inlinable
    public static func read(_ p: UnsafeRawBufferPointer, _ pos: inout Int) -> Int64? {
        read(p, &pos, end: p.count, bits: 64)
    }

    /// Decodes a zig-zag varint of at most `bits` bits (32 or 64) from `p[pos..<end]`, advancing
    /// `pos`; nil when it runs past `end`, is longer than such a value can be (5 or 10 bytes),
    /// or its last byte carries bits beyond `bits`.
    @inlinable
    public static func read(_ p: UnsafeRawBufferPointer, _ pos: inout Int, end: Int, bits: UInt64) -> Int64? {
        var raw: UInt64 = 0
        var shift: UInt64 = 0
        var i = pos
        while i < end {
            let b = p[i]
            i += 1
            if shift + 7 >= bits {
                // The last byte a value of `bits` bits can take: it must end the varint and hold
                // only the bits left.
                guard b < (1 << (bits - shift)) else { return nil }
            }
            raw |= UInt64(b & 0x7f) << shift
            if b < 0x80 {
                pos = i
                return Int64(bitPattern: raw >> 1) ^ -Int64(bitPattern: raw & 1)
            }
            shift += 7
        }
        return nil
    }
}

// Big-endian fixed-width helpers over raw bytes.
extension UnsafeRawBufferPointer {
    @inlinable func be16(_ at: Int) -> Int16 { Int16(bitPattern: UInt16(bigEndian: loadUnaligned(fromByteOffset: at, as: UInt16.self))) }
    @inlinable func be32(_ at: Int) -> Int32 { Int32(bitPattern: UInt32(bigEndian: loadUnaligned(fromByteOffset: at, as: UInt32.self))) }
    @inlinable func beU32(_ at: Int) -> UInt32 { UInt32(bigEndian: loadUnaligned(fromByteOffset: at, as: UInt32.self)) }
    @inlinable func be64(_ at: Int) -> Int64 { Int64(bitPattern: UInt64(bigEndian: loadUnaligned(fromByteOffset: at, as: UInt64.self))) }
}

extension UnsafeMutableRawBufferPointer {
    @inlinable func storeBE(_ v: Int16, at: Int) { storeBytes(of: UInt16(bitPattern: v).bigEndian, toByteOffset: at, as: UInt16.self) }
    @inlinable func storeBE(_ v: Int32, at: Int) { storeBytes(of: UInt32(bitPattern: v).bigEndian, toByteOffset: at, as: UInt32.self) }
    @inlinable func storeBE(_ v: UInt32, at: Int) { storeBytes(of: v.bigEndian, toByteOffset: at, as: UInt32.self) }
    @inlinable func storeBE(_ v: Int64, at: Int) { storeBytes(of: UInt64(bitPattern: v).bigEndian, toByteOffset: at, as: UInt64.self) }
}
