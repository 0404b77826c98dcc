// Data integrity: the validator that checks batches from clients before they are stored, record
// decoding that throws (never traps) on damaged batches, and reads that refuse a broken offset
// sequence (a rewritten base offset, a deleted segment) while serving everything before it.
import Foundation
import Logging
import SluiceLog
import Testing

// MARK: Building and damaging batches

enum TestBatch {
    typealias L = RecordBatchLayout

    /// A sealed batch of `count` records with values "value-<i>" padded to `valueSize` bytes.
    static func sealed(_ count: Int = 1, valueSize: Int = 5, producerId: Int64 = -1, baseSequence: Int32 = -1) -> [UInt8] {
        var builder = RecordBatchBuilder()
        builder.producerId = producerId
        builder.baseSequence = baseSequence
        if producerId >= 0 { builder.producerEpoch = 0 }
        for i in 0..<count {
            var value = Array("value-\(i)".utf8)
            if value.count < valueSize { value += [UInt8](repeating: 0x2e, count: valueSize - value.count) }
            builder.append(key: nil, value: value, timestamp: 1_700_000_000_000 + Int64(i))
        }
        builder.seal()
        return builder.bytes
    }

    /// The one-record batch "hello" (null key, no headers). Its record, from byte 61: length
    /// 0x16, attributes, timestamp delta, offset delta (byte 64), key length -1, value length 5,
    /// "hello" (67...71), header count 0 (byte 72); 73 bytes in all.
    static func hello() -> [UInt8] {
        var builder = RecordBatchBuilder()
        builder.append(key: nil, value: Array("hello".utf8), timestamp: 1_700_000_000_000)
        builder.seal()
        return builder.bytes
    }

    /// A batch whose records section is `records`, with the header fields given; CRC fixed.
    static func raw(records: [UInt8], count: Int32, lastOffsetDelta: Int32? = nil, attributes: Int16 = 0) -> [UInt8] {
        var b = Array(hello().prefix(L.headerSize))
        b += records
        put32(&b, L.batchLength, UInt32(b.count - L.logOverhead))
        put32(&b, L.recordCount, UInt32(bitPattern: count))
        put32(&b, L.lastOffsetDelta, UInt32(bitPattern: lastOffsetDelta ?? (count - 1)))
        put16(&b, L.attributes, UInt16(bitPattern: attributes))
        fixCRC(&b)
        return b
    }

    static func varint(_ v: Int64) -> [UInt8] {
        var out: [UInt8] = []
        Varint.append(v, to: &out)
        return out
    }

    /// A record's body: attributes, timestamp delta, offset delta, key length (no key bytes),
    /// value, then `tail` (the header count and the headers).
    static func body(offsetDelta: Int64, timestampDelta: Int64 = 0, keyLength: Int64 = -1, value: [UInt8] = [0x61],
                     tail: [UInt8] = [0]) -> [UInt8] {
        var out: [UInt8] = [0]
        out += varint(timestampDelta)
        out += varint(offsetDelta)
        out += varint(keyLength)
        out += varint(Int64(value.count))
        out += value
        out += tail
        return out
    }

    /// A whole record: its length (counting `extra` zero bytes after the body), then the body.
    static func record(_ body: [UInt8], extra: Int = 0) -> [UInt8] {
        var out = varint(Int64(body.count + extra))
        out += body
        out += [UInt8](repeating: 0, count: extra)
        return out
    }

    /// `batch` with its records compressed by `compress` and the codec set; CRC fixed.
    static func compressed(_ batch: [UInt8], codec: Int16, _ compress: ([UInt8]) -> [UInt8]) -> [UInt8] {
        var b = Array(batch.prefix(L.headerSize))
        b += compress(Array(batch[L.headerSize...]))
        put32(&b, L.batchLength, UInt32(b.count - L.logOverhead))
        put16(&b, L.attributes, UInt16(bitPattern: (get16(b, L.attributes) & ~7) | codec))
        fixCRC(&b)
        return b
    }

    /// Re-computes the CRC after a test changed the batch, so only the intended defect remains.
    static func fixCRC(_ b: inout [UInt8]) {
        let crc = b.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[L.crcStart...])) }
        put32(&b, L.crc, crc)
    }

    static func put16(_ b: inout [UInt8], _ at: Int, _ v: UInt16) {
        b[at] = UInt8(v >> 8)
        b[at + 1] = UInt8(v & 0xff)
    }

    static func put32(_ b: inout [UInt8], _ at: Int, _ v: UInt32) {
        for i in 0..<4 { b[at + i] = UInt8((v >> UInt32(24 - 8 * i)) & 0xff) }
    }

    static func put64(_ b: inout [UInt8], _ at: Int, _ v: UInt64) {
        for i in 0..<8 { b[at + i] = UInt8((v >> UInt64(56 - 8 * i)) & 0xff) }
    }

    static func get16(_ b: [UInt8], _ at: Int) -> Int16 {
        Int16(bitPattern: UInt16(b[at]) << 8 | UInt16(b[at + 1]))
    }

    /// A raw snappy block's length field (an unsigned varint).
    static func snappyLength(_ count: Int) -> [UInt8] {
        var out: [UInt8] = []
        var n = count
        while n >= 0x80 {
            out.append(UInt8(n & 0x7f) | 0x80)
            n >>= 7
        }
        out.append(UInt8(n))
        return out
    }

    /// Raw snappy: the length, then literals of at most 60 bytes.
    static func snappy(_ data: [UInt8]) -> [UInt8] {
        var out = snappyLength(data.count)
        var i = 0
        while i < data.count {
            let k = min(60, data.count - i)
            out.append(UInt8((k - 1) << 2))
            out += data[i..<(i + k)]
            i += k
        }
        return out
    }

    /// gzip with stored (uncompressed) deflate blocks: what zlib inflates without a compressor.
    static func gzip(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]
        var i = 0
        repeat {
            let k = min(65_535, data.count - i)
            let n = UInt16(k)
            out.append(i + k == data.count ? 1 : 0)  // BFINAL, BTYPE 00 (stored)
            out += [UInt8(n & 0xff), UInt8(n >> 8), UInt8(~n & 0xff), UInt8(~n >> 8)]
            out += data[i..<(i + k)]
            i += k
        } while i < data.count
        for v in [crc32(data), UInt32(truncatingIfNeeded: data.count)] {
            out += [UInt8(v & 0xff), UInt8((v >> 8) & 0xff), UInt8((v >> 16) & 0xff), UInt8(v >> 24)]
        }
        return out
    }

    /// CRC-32 (IEEE), gzip's trailer checksum.
    static func crc32(_ data: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xffff_ffff
        for byte in data {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xedb8_8320 : crc >> 1 }
        }
        return ~crc
    }

    /// The error the validator throws for `batch`, or nil when it accepts it.
    static func rejection(_ batch: [UInt8], allowControl: Bool = false, limit: Int? = nil) -> LogError? {
        batch.withUnsafeBytes { (p: UnsafeRawBufferPointer) -> LogError? in
            do throws(LogError) {
                try RecordBatchValidator.validate(p, allowControl: allowControl, decompressedLimit: limit)
                return nil
            } catch {
                return error
            }
        }
    }

    /// The records of `batch` as `RecordBatchView.forEachRecord` decodes them (its length, magic
    /// and CRC must pass `RecordBatchCodec.check`).
    static func decode(_ batch: [UInt8]) throws -> [Record] {
        try batch.withUnsafeBytes { (p: UnsafeRawBufferPointer) throws -> [Record] in
            guard case .valid(let header) = RecordBatchCodec.check(p, at: 0) else {
                Issue.record("RecordBatchCodec.check refused the batch")
                return []
            }
            var out: [Record] = []
            try RecordBatchView(header: header, bytes: p).forEachRecord { out.append($0.materialize()) }
            return out
        }
    }
}

/// Expects the validator to refuse `batch` with `code` and a message holding every fragment.
func expectRejected(_ batch: [UInt8], _ code: LogError.Code, _ fragments: [String], allowControl: Bool = false,
                    limit: Int? = nil, _ label: String) {
    guard let e = TestBatch.rejection(batch, allowControl: allowControl, limit: limit) else {
        Issue.record("\(label): the batch was accepted")
        return
    }
    #expect(e.code == code, "\(label): \(e.code): \(e.message)")
    for f in fragments {
        #expect(e.message.contains(f), "\(label): \"\(f)\" is not in: \(e.message)")
    }
}

// MARK: The validator

@Suite struct RecordBatchValidatorTests {
    typealias L = RecordBatchLayout
    typealias T = TestBatch

    @Test func acceptsWhatTheBuilderAndKafkaClientsWrite() throws {
        var batches = [T.hello(), T.sealed(1), T.sealed(3, valueSize: 300), T.sealed(500)]
        batches.append(T.sealed(2, producerId: 7, baseSequence: 0))
        batches += [RecordBatchTests.batchA, RecordBatchTests.batchB, RecordBatchTests.batchC].map { hexBytes($0) }
        var builder = RecordBatchBuilder()
        RecordBatchTests.buildB(&builder)
        builder.append(key: [], value: nil, timestamp: 1_699_999_999_000, headers: [RecordHeader(name: "null", value: nil)])
        builder.seal()
        batches.append(builder.bytes)
        for (i, batch) in batches.enumerated() {
            let message = T.rejection(batch)?.message
            #expect(message == nil, "batch \(i): \(message ?? "")")
        }
        let header = T.hello().withUnsafeBytes { p -> BatchHeader? in try? RecordBatchValidator.validate(p) }
        #expect(header?.recordCount == 1 && header?.lastOffsetDelta == 0)
    }

    @Test func acceptsCompressedBatchesAndDecodesThemAsTheUncompressedOnes() throws {
        let plain = T.sealed(40, valueSize: 30)
        let expected = try T.decode(plain)
        var candidates: [(String, [UInt8])] = [("snappy", T.compressed(plain, codec: 2, T.snappy))]
        if RecordCompression.canDecompress(codec: 1) {
            candidates.append(("gzip", T.compressed(plain, codec: 1, T.gzip)))
        }
        for (name, batch) in candidates {
            let message = T.rejection(batch)?.message
            #expect(message == nil, "\(name): \(message ?? "")")
            #expect(try T.decode(batch) == expected, "\(name)")
        }
    }

    @Test func controlBatchesOnlyWhenAllowed() {
        var marker = ControlRecord.batch(.commit, producerId: 5, producerEpoch: 0, timestamp: 1_700_000_000_000)
        marker.seal()
        expectRejected(marker.bytes, .invalidRecord, ["byte 21", "control"], "a marker from a client")
        #expect(T.rejection(marker.bytes, allowControl: true)?.message == nil)

        var b = T.hello()
        T.put16(&b, L.attributes, 0x20)
        T.fixCRC(&b)
        expectRejected(b, .invalidRecord, ["the batch is invalid at byte 21", "control bit"], "control bit")
    }

    @Test func framingDamageIsACorruptBatch() {
        var crc = T.hello()
        crc[69] ^= 0x01  // inside "hello": the CRC no longer matches
        expectRejected(crc, .corruptBatch, ["the batch is corrupt at byte 17", "CRC mismatch"], "bad CRC")

        expectRejected(T.hello() + [0], .corruptBatch, ["byte 8", "batch length 61 does not match the 74 bytes"], "length")
        expectRejected(Array(T.hello().prefix(40)), .corruptBatch, ["byte 0", "shorter than the 61-byte batch header"], "short")

        var magic = T.hello()
        magic[L.magic] = 1
        T.fixCRC(&magic)
        expectRejected(magic, .corruptBatch, ["byte 16", "magic byte is 1"], "magic")
    }

    @Test func recordCountsTheBytesCannotHoldAreRefused() {
        // Count 3 for the one record "hello".
        var three = T.hello()
        T.put32(&three, L.recordCount, 3)
        T.fixCRC(&three)
        expectRejected(three, .invalidRecord, ["the batch is invalid at byte 57", "record count 3 is more than the 12 bytes"],
                       "count 3 for 1 record")

        var zero = T.hello()
        T.put32(&zero, L.recordCount, 0)
        T.fixCRC(&zero)
        expectRejected(zero, .invalidRecord, ["byte 57", "record count 0"], "count 0")

        var huge = T.hello()
        T.put32(&huge, L.recordCount, UInt32(Int32.max))
        T.fixCRC(&huge)
        expectRejected(huge, .invalidRecord, ["byte 57", "record count 2147483647 is more than"], "count 2^31-1")

        // Count 3 (and last offset delta 2) for one record big enough to hold three by size.
        var fewer = T.sealed(1, valueSize: 100)
        T.put32(&fewer, L.recordCount, 3)
        T.put32(&fewer, L.lastOffsetDelta, 2)
        T.fixCRC(&fewer)
        expectRejected(fewer, .invalidRecord, ["byte \(fewer.count)", "the records end after 1 of the 3 records"], "fewer")
    }

    @Test func headerClaimsMustMatchTheRecords() {
        var delta = T.hello()
        T.put32(&delta, L.lastOffsetDelta, 1_000_000)
        T.fixCRC(&delta)
        expectRejected(delta, .invalidRecord, ["byte 23", "last offset delta 1000000 does not match the record count 1"],
                       "lastOffsetDelta 1,000,000")

        var codec = T.hello()
        T.put16(&codec, L.attributes, 7)
        T.fixCRC(&codec)
        expectRejected(codec, .invalidRecord, ["byte 21", "compression codec 7 is unknown"], "codec 7")

        var appendTime = T.hello()
        T.put16(&appendTime, L.attributes, 0x08)
        T.fixCRC(&appendTime)
        expectRejected(appendTime, .invalidRecord, ["byte 21", "log-append time"], "log-append time")

        var timestamps = T.hello()
        T.put64(&timestamps, L.maxTimestamp, UInt64(1_600_000_000_000))
        T.fixCRC(&timestamps)
        expectRejected(timestamps, .invalidRecord, ["byte 35", "max timestamp 1600000000000 is before"], "max < base")

        expectRejected(T.sealed(1, producerId: 7, baseSequence: -1), .invalidRecord, ["byte 53", "base sequence -1"],
                       "an idempotent batch without a sequence")
    }

    @Test func malformedRecordsAreRefusedWithTheirByte() {
        // A corrupt varint: the offset delta (byte 64) runs into five continuation bytes.
        var varint = T.hello()
        for i in 64..<72 { varint[i] = 0xff }
        T.fixCRC(&varint)
        expectRejected(varint, .invalidRecord,
                       ["the batch is invalid at byte 64", "record 0: its offset delta is not a valid varint"], "corrupt varint")

        var after = T.hello() + [1, 2, 3]
        T.put32(&after, L.batchLength, UInt32(after.count - L.logOverhead))
        T.fixCRC(&after)
        expectRejected(after, .invalidRecord, ["byte 73", "3 bytes follow the last of the 1 records"],
                       "bytes after the last record")

        let twoRecords = T.record(T.body(offsetDelta: 0)) + T.record(T.body(offsetDelta: 5))
        expectRejected(T.raw(records: twoRecords, count: 2), .invalidRecord, ["record 1: its offset delta is 5, expected 1"],
                       "offset delta")

        let hugeLength = T.varint(Int64.max) + [UInt8](repeating: 0, count: 10)
        expectRejected(T.raw(records: hugeLength, count: 1), .invalidRecord,
                       ["byte 61", "record 0: its length is not a valid varint"], "length varint of 10 bytes")

        let hugeKey = T.record(T.body(offsetDelta: 0, keyLength: 1 << 40))
        expectRejected(T.raw(records: hugeKey, count: 1), .invalidRecord, ["its key length is not a valid varint"], "key length")

        let longKey = T.record(T.body(offsetDelta: 0, keyLength: 50))
        expectRejected(T.raw(records: longKey, count: 1), .invalidRecord, ["its key length 50 runs past"], "key past the record")

        let badHeader = T.record(T.body(offsetDelta: 0, tail: T.varint(1) + T.varint(-1) + T.varint(-1)))
        expectRejected(T.raw(records: badHeader, count: 1), .invalidRecord, ["record 0, header 0: its key length is -1"],
                       "header key")

        let manyHeaders = T.record(T.body(offsetDelta: 0, tail: T.varint(1_000)))
        expectRejected(T.raw(records: manyHeaders, count: 1), .invalidRecord, ["its header count 1000"], "header count")

        let slack = T.record(T.body(offsetDelta: 0), extra: 2)
        expectRejected(T.raw(records: slack, count: 1), .invalidRecord, ["its fields end at byte", "but its length says"], "slack")

        let clock = T.record(T.body(offsetDelta: 0, timestampDelta: Int64.max))
        expectRejected(T.raw(records: clock, count: 1), .invalidRecord, ["overflows the base timestamp"], "timestamp delta")
    }

    @Test func compressedRecordsAreCheckedAfterDecompressing() {
        // gzip flagged, but the records are plain.
        var notGzip = T.hello()
        T.put16(&notGzip, L.attributes, 1)
        T.fixCRC(&notGzip)
        if RecordCompression.canDecompress(codec: 1) {
            expectRejected(notGzip, .invalidRecord, ["the batch is invalid at byte 61", "do not decompress", "gzip"], "not gzip")
        } else {
            expectRejected(notGzip, .invalidBatch, ["gzip", "could not be loaded"], "no libz")
        }

        // A claimed count the decompressed records cannot hold.
        var count = T.compressed(T.sealed(3), codec: 2, T.snappy)
        T.put32(&count, L.recordCount, UInt32(Int32.max))
        T.put32(&count, L.lastOffsetDelta, UInt32(Int32.max - 1))
        T.fixCRC(&count)
        expectRejected(count, .invalidRecord, ["byte 57", "decompressed bytes of records can hold"], "count, compressed")

        // Decompressed records are walked like plain ones.
        let records = T.record(T.body(offsetDelta: 0)) + T.record(T.body(offsetDelta: 3))
        let shifted = T.compressed(T.raw(records: records, count: 2), codec: 2, T.snappy)
        expectRejected(shifted, .invalidRecord, ["of the decompressed records", "record 1: its offset delta is 3"], "inner delta")
    }

    @Test func decompressionIsBoundedSoABombIsRefusedUnallocated() {
        #expect(RecordBatchValidator.defaultDecompressedLimit(compressedBytes: 100) == 1 << 20)
        #expect(RecordBatchValidator.defaultDecompressedLimit(compressedBytes: 8192) == 2 << 20)
        #expect(RecordBatchValidator.defaultDecompressedLimit(compressedBytes: 8 << 20) == 64 << 20)

        let plain = T.sealed(100)
        let snappy = T.compressed(plain, codec: 2, T.snappy)
        #expect(T.rejection(snappy)?.message == nil)
        expectRejected(snappy, .invalidRecord, ["byte 61", "snappy: the records decompress to more than 100 bytes"], limit: 100,
                       "snappy over an explicit limit")
        // A snappy block that claims 200 MiB from a few bytes: refused by the default limit
        // before anything is allocated for it.
        var bomb = T.snappyLength(200 << 20)
        bomb += [0x00, 0x61]  // one literal byte
        let claims = T.compressed(plain, codec: 2) { _ in bomb }
        expectRejected(claims, .invalidRecord, ["more than 1048576 bytes"], "snappy claims 200 MiB")

        if RecordCompression.canDecompress(codec: 1) {
            let gzip = T.compressed(plain, codec: 1, T.gzip)
            #expect(T.rejection(gzip)?.message == nil)
            expectRejected(gzip, .invalidRecord, ["gzip: the records decompress to more than 1000 bytes"], limit: 1000,
                           "gzip over an explicit limit")
        }
    }

    /// Reading never traps on a batch whose CRC is right but whose records are not: it throws.
    @Test func decodingMalformedRecordsThrowsInsteadOfTrapping() {
        var malformed: [(String, [UInt8])] = []
        var three = T.hello()
        T.put32(&three, L.recordCount, 3)
        T.fixCRC(&three)
        malformed.append(("count 3 for 1 record", three))
        var zero = T.hello()
        T.put32(&zero, L.recordCount, 0)
        T.fixCRC(&zero)
        malformed.append(("count 0", zero))
        var huge = T.hello()
        T.put32(&huge, L.recordCount, UInt32(Int32.max))
        T.fixCRC(&huge)
        malformed.append(("count 2^31-1", huge))
        var varint = T.hello()
        for i in 64..<72 { varint[i] = 0xff }
        T.fixCRC(&varint)
        malformed.append(("corrupt varint", varint))
        var after = T.hello() + [1, 2, 3]
        T.put32(&after, L.batchLength, UInt32(after.count - L.logOverhead))
        T.fixCRC(&after)
        malformed.append(("bytes after the last record", after))
        var codec = T.hello()
        T.put16(&codec, L.attributes, 7)
        T.fixCRC(&codec)
        malformed.append(("codec 7", codec))
        let hugeLength = T.varint(Int64.max) + [UInt8](repeating: 0, count: 10)
        malformed.append(("length Int64.max", T.raw(records: hugeLength, count: 1)))
        malformed.append(("key length 2^40", T.raw(records: T.record(T.body(offsetDelta: 0, keyLength: 1 << 40)), count: 1)))
        malformed.append(("timestamp delta Int64.max",
                          T.raw(records: T.record(T.body(offsetDelta: 0, timestampDelta: Int64.max)), count: 1)))
        let headers = T.record(T.body(offsetDelta: 0, tail: T.varint(1) + T.varint(1 << 40)))
        malformed.append(("header key length 2^40", T.raw(records: headers, count: 1)))
        let backwards = T.record(T.body(offsetDelta: 1)) + T.record(T.body(offsetDelta: 0))
        malformed.append(("offset deltas going back", T.raw(records: backwards, count: 2)))
        for (name, batch) in malformed {
            #expect(throws: LogError.self, "\(name)") { _ = try T.decode(batch) }
        }
    }
}

// MARK: Reads and the offset sequence

@Suite struct OffsetSequenceTests {
    let scratch = ScratchDirectory("integrity")
    var dir: String { scratch.path + "/p0" }

    func segmentPath(_ base: Int64) -> String { dir + "/" + String(format: "%020lld", base) + ".log" }

    /// Byte positions and base offsets of the batches in a segment file.
    func batches(_ path: String) throws -> [(position: Int, base: Int64)] {
        let raw = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        var out: [(position: Int, base: Int64)] = []
        var pos = 0
        raw.withUnsafeBytes { p in
            while pos + RecordBatchLayout.headerSize <= p.count {
                let h = BatchHeader(UnsafeRawBufferPointer(rebasing: p[pos...]))
                out.append((pos, h.baseOffset))
                pos += h.totalSize
            }
        }
        return out
    }

    /// Rewrites the base offset of the batch at byte `position` of `path`.
    func rewriteBase(_ path: String, at position: Int, to offset: Int64) throws {
        var raw = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        TestBatch.put64(&raw, position, UInt64(bitPattern: offset))
        try Data(raw).write(to: URL(fileURLWithPath: path))
    }

    /// Reads from 0 in small steps until a read throws; the offsets read and that error.
    func readUntilFailure(_ log: PartitionLog) throws -> (offsets: [Int64], failure: LogError?) {
        var got: [Int64] = []
        var position: Int64 = 0
        while position < log.highWatermark {
            do {
                let r = try log.read(from: position, maxBytes: 300)
                try r.forEachRecord(from: position) { got.append($0.offset) }
                if r.isEmpty { break }
                position = r.nextOffset
            } catch let e as LogError {
                return (got, e)
            }
        }
        return (got, nil)
    }

    /// 200 records in batches of 4 over segments of 1 KiB: about six segments, no index
    /// entries in them (so a writable open follows every rolled segment's batch headers).
    func makeLog() throws -> (config: LogConfig, bases: [Int64]) {
        let config = LogConfig(segmentBytes: 1024)
        let log = try PartitionLog.open(directory: dir, config: config)
        defer { log.close() }
        try appendValues(log, from: 0, count: 200, perBatch: 4)
        let bases = log.segmentBaseOffsets
        #expect(bases.count >= 4)
        return (config, bases)
    }

    @Test(arguments: [Int64(1), -4])
    func aRewrittenBaseOffsetInARolledSegmentFailsTheReadsThatReachIt(shift: Int64) throws {
        let (config, bases) = try makeLog()
        let victim = segmentPath(bases[1])
        let third = try #require(try batches(victim).dropFirst(2).first)
        let damaged = third.base
        #expect(damaged == bases[1] + 8)
        try rewriteBase(victim, at: third.position, to: damaged + shift)

        // The writer opening the partition reports it, naming the file and the byte.
        let errors = LogSink()
        let log = try PartitionLog.open(directory: dir, config: config, logger: capturingLogger(errors))
        defer { log.close() }
        #expect(errors.messages.contains { $0.contains("\(victim) is corrupt at byte \(third.position)") }, "\(errors.messages)")
        #expect(log.logEndOffset == 200)

        // Everything before the damage reads back; the read that reaches it throws.
        let (got, failure) = try readUntilFailure(log)
        #expect(got == Array(0..<damaged))
        let e = try #require(failure)
        #expect(e.code == .corruptBatch && e.file == victim)
        #expect(e.message.contains("\(victim) is corrupt at byte \(third.position)"), "\(e.message)")
        #expect(e.message.contains("starts at offset \(damaged + shift), but the batch before it ended at offset \(damaged - 1)"),
                "\(e.message)")
        // An offset after the damage in the same segment is reached through it; later segments read.
        #expect(throws: LogError.self) { try log.read(from: damaged + 2) }
        #expect(try readValues(log, from: bases[2]).map(\.0) == Array(bases[2]..<200))

        // A read-only open (a consumer) refuses the same way.
        let reader = try PartitionLog.open(directory: dir, config: config, readOnly: true, logger: capturingLogger(LogSink()))
        defer { reader.close() }
        let (readOnlyGot, readOnlyFailure) = try readUntilFailure(reader)
        #expect(readOnlyGot == Array(0..<damaged) && readOnlyFailure?.file == victim)
    }

    @Test func aDeletedMiddleSegmentIsReportedAtOpenAndReadsStopAtTheHole() throws {
        let (config, bases) = try makeLog()
        let before = segmentPath(bases[0]), missing = segmentPath(bases[1]), after = segmentPath(bases[2])
        try FileManager.default.removeItem(atPath: missing)

        let errors = LogSink()
        let log = try PartitionLog.open(directory: dir, config: config, logger: capturingLogger(errors))
        defer { log.close() }
        let hole = "offsets \(bases[1])..<\(bases[2]) are missing"
        #expect(errors.messages.contains { $0.contains(hole) && $0.contains(before) && $0.contains(after) }, "\(errors.messages)")

        let (got, failure) = try readUntilFailure(log)
        #expect(got == Array(0..<bases[1]))
        let e = try #require(failure)
        #expect(e.code == .corruptBatch && e.file == before && e.offset == bases[1])
        #expect(e.message.contains(hole) && e.message.contains(before) && e.message.contains(after), "\(e.message)")
        // Inside the hole the same; after it everything reads.
        #expect(throws: LogError.self) { try log.read(from: bases[1] + 1) }
        #expect(try readValues(log, from: bases[2]).map(\.0) == Array(bases[2]..<200))

        let reader = try PartitionLog.open(directory: dir, config: config, readOnly: true, logger: capturingLogger(LogSink()))
        defer { reader.close() }
        #expect(throws: LogError.self) { try reader.read(from: bases[1]) }
    }

    @Test func aBreakInTheActiveSegmentIsKeptReportedAndRefusedByReads() throws {
        let config = LogConfig(indexIntervalBytes: 128)
        var log = try PartitionLog.open(directory: dir, config: config)
        try appendValues(log, from: 0, count: 50, perBatch: 5)
        log.close()
        let path = segmentPath(0)
        let third = try #require(try batches(path).dropFirst(2).first)
        #expect(third.base == 10)
        try rewriteBase(path, at: third.position, to: 11)

        let errors = LogSink()
        log = try PartitionLog.open(directory: dir, config: config, logger: capturingLogger(errors))
        defer { log.close() }
        // Nothing is cut (the batch's CRC holds, and offsets handed out stay), but it is reported.
        #expect(log.logEndOffset == 50)
        #expect(errors.messages.contains { $0.contains("\(path) is corrupt at byte \(third.position)") }, "\(errors.messages)")
        let (got, failure) = try readUntilFailure(log)
        #expect(got == Array(0..<10))
        #expect(failure?.message.contains("byte \(third.position)") == true, "\(failure?.message ?? "")")
        // Past the damage, from an index entry after it, reads work; appends continue.
        #expect(try readValues(log, from: 20).map(\.0) == Array(20..<50))
        try appendValues(log, from: 50, count: 5)
        #expect(try readValues(log, from: 50).map(\.1) == (50..<55).map { "v\($0)" })
    }
}
