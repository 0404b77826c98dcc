// CRC32C, varints and the v2 RecordBatch layout, against published vectors and against
// batches encoded by an independent client (kafka-python 3.0.12, cross-checked with Java's
// CRC32C and Kafka's own varint/murmur2 code).
import PropertyBased
import SluiceLog
import Testing

@Suite struct CRC32CTests {
    // RFC 3720 (iSCSI) appendix B.4 vectors and the common "123456789" check value.
    static let vectors: [([UInt8], UInt32)] = [
        (Array("123456789".utf8), 0xE306_9283),
        ([UInt8](repeating: 0, count: 32), 0x8A91_36AA),
        ([UInt8](repeating: 0xFF, count: 32), 0x62A8_AB43),
        (Array(0...31), 0x46DD_794E),
        (Array((0...31).reversed()), 0x113F_DB5C),
        ([], 0),
    ]

    @Test(arguments: vectors)
    func publishedVectors(input: [UInt8], expected: UInt32) {
        #expect(CRC32C.checksum(input) == expected)
        #expect(CRC32C.portableChecksum(input) == expected)
    }

    @Test func hardwareAndPortablePathsAgreeOnEveryLengthAndAlignment() async {
        await propertyCheck(count: 300, input: Gen.uint8().array(of: 0...300)) { data in
            #expect(CRC32C.checksum(data) == CRC32C.portableChecksum(data))
        }
    }

    @Test func continuingAChecksumEqualsOneShot() {
        let data = Array("The quick brown fox jumps over the lazy dog".utf8)
        let whole = CRC32C.checksum(data)
        let split = data.withUnsafeBytes { p in
            CRC32C.checksum(UnsafeRawBufferPointer(rebasing: p[10...]), continuing: CRC32C.checksum(UnsafeRawBufferPointer(rebasing: p[..<10])))
        }
        #expect(whole == split)
    }
}

@Suite struct VarintTests {
    // Zig-zag encodings as kafka-python's encode_varint and Kafka's ByteUtils produce them.
    static let vectors: [(Int64, String)] = [
        (0, "00"), (-1, "01"), (1, "02"), (-64, "7f"), (63, "7e"), (64, "8001"), (300, "d804"),
        (-300, "d704"), (2_147_483_647, "feffffff0f"), (-2_147_483_648, "ffffffff0f"),
        (1_700_000_000_000, "80a0abfef962"), (-1_700_000_000_000, "ff9fabfef962"),
        (Int64.max, "feffffffffffffffff01"), (Int64.min, "ffffffffffffffffff01"),
    ]

    @Test(arguments: vectors)
    func encodesLikeKafka(value: Int64, hex: String) {
        var out: [UInt8] = []
        Varint.append(value, to: &out)
        #expect(hexString(out) == hex)
        #expect(Varint.size(value) == out.count)
        let decoded = out.withUnsafeBytes { p -> Int64? in
            var pos = 0
            return Varint.read(p, &pos)
        }
        #expect(decoded == value)
    }

    @Test func roundTripsAnyInt64() async {
        await propertyCheck(count: 500, input: Gen.int64()) { value in
            var out: [UInt8] = []
            Varint.append(value, to: &out)
            out.withUnsafeBytes { p in
                var pos = 0
                #expect(Varint.read(p, &pos) == value)
                #expect(pos == out.count)
            }
        }
    }

    @Test func truncatedAndOverlongEncodingsAreRejected() {
        for bad in [[0x80], [0xff, 0xff], [UInt8](repeating: 0xff, count: 11)] as [[UInt8]] {
            bad.withUnsafeBytes { p in
                var pos = 0
                #expect(Varint.read(p, &pos) == nil)
            }
        }
    }
}

@Suite struct RecordBatchTests {
    // Batch A: one record, key "k1", value "hello", ts 1700000000000 (kafka-python output).
    static let batchA = "00000000000000000000003f00000000025028da910000000000000000018bcfe568000000018bcfe56800ffffffffffffffffffffffffffff000000011a000000046b310a68656c6c6f00"
    // Batch B: three records with null key, empty value, headers and a timestamp that goes back.
    static let batchB = "0000000000000000000000770000000002ccc0fb2c0000000000020000018bcfe568000000018bcfe56805ffffffffffffffffffffffffffff000000030e000000010261001e000a02066b657900020468310476315a00060402783c30313233343536373839303132333435363738393031323334353637383904026e00026d047a7a"
    // Batch C: B as a transactional batch of producer 4242, epoch 3, base sequence 17.
    static let batchC = "0000000000000000000000770000000002a3aa4c170010000000020000018bcfe568000000018bcfe568050000000000001092000300000011000000030e000000010261001e000a02066b657900020468310476315a00060402783c30313233343536373839303132333435363738393031323334353637383904026e00026d047a7a"

    static func buildB(_ builder: inout RecordBatchBuilder) {
        builder.append(key: nil, value: bytes("a"), timestamp: 1_700_000_000_000)
        builder.append(key: bytes("key"), value: [], timestamp: 1_700_000_000_005, headers: [RecordHeader(name: "h1", value: bytes("v1"))])
        builder.append(key: bytes("x"), value: bytes(String(repeating: "0123456789", count: 3)), timestamp: 1_700_000_000_003,
                       headers: [RecordHeader(name: "n", value: []), RecordHeader(name: "m", value: bytes("zz"))])
    }

    @Test func encodesBatchAByteForByte() {
        var builder = RecordBatchBuilder()
        builder.partitionLeaderEpoch = 0  // kafka-python writes 0 here; the Java client -1
        builder.append(key: bytes("k1"), value: bytes("hello"), timestamp: 1_700_000_000_000)
        builder.seal()
        #expect(hexString(builder.bytes) == Self.batchA)
    }

    @Test func encodesBatchBByteForByte() {
        var builder = RecordBatchBuilder()
        builder.partitionLeaderEpoch = 0
        Self.buildB(&builder)
        builder.seal()
        #expect(hexString(builder.bytes) == Self.batchB)
    }

    @Test func encodesTransactionalBatchCByteForByte() {
        var builder = RecordBatchBuilder()
        builder.partitionLeaderEpoch = 0
        builder.attributes = .transactional
        builder.producerId = 4242
        builder.producerEpoch = 3
        builder.baseSequence = 17
        Self.buildB(&builder)
        builder.seal()
        #expect(hexString(builder.bytes) == Self.batchC)
    }

    @Test func defaultPartitionLeaderEpochIsJavaClientsMinusOne() {
        var builder = RecordBatchBuilder()
        builder.append(key: bytes("k1"), value: bytes("hello"), timestamp: 1_700_000_000_000)
        builder.seal()
        var expected = hexBytes(Self.batchA)
        expected.replaceSubrange(12..<16, with: [0xff, 0xff, 0xff, 0xff])  // outside the CRC
        #expect(builder.bytes == expected)
    }

    @Test func decodesHeaderAndRecordsOfBatchC() throws {
        let raw = hexBytes(Self.batchC)
        try raw.withUnsafeBytes { p in
            guard case .valid(let h) = RecordBatchCodec.check(p, at: 0) else {
                Issue.record("batch C did not validate")
                return
            }
            #expect(h.batchLength == 119)
            #expect(h.crc == 0xA3AA_4C17)
            #expect(h.isTransactional && !h.isControl)
            #expect(h.lastOffsetDelta == 2 && h.recordCount == 3)
            #expect(h.baseTimestamp == 1_700_000_000_000 && h.maxTimestamp == 1_700_000_000_005)
            #expect(h.producerId == 4242 && h.producerEpoch == 3 && h.baseSequence == 17)
            var records: [Record] = []
            try RecordBatchView(header: h, bytes: p).forEachRecord { records.append($0.materialize()) }
            #expect(records == [
                Record(offset: 0, timestamp: 1_700_000_000_000, key: nil, value: bytes("a")),
                Record(offset: 1, timestamp: 1_700_000_000_005, key: bytes("key"), value: [], headers: [RecordHeader(name: "h1", value: bytes("v1"))]),
                Record(offset: 2, timestamp: 1_700_000_000_003, key: bytes("x"), value: bytes(String(repeating: "0123456789", count: 3)),
                       headers: [RecordHeader(name: "n", value: []), RecordHeader(name: "m", value: bytes("zz"))]),
            ])
        }
    }

    @Test func nullValuesAndNullHeaderValuesRoundTrip() throws {
        var builder = RecordBatchBuilder()
        builder.append(key: bytes("tombstone"), value: nil, timestamp: 5, headers: [RecordHeader(name: "h", value: nil)])
        builder.seal()
        try builder.bytes.withUnsafeBytes { p in
            guard case .valid(let h) = RecordBatchCodec.check(p, at: 0) else { Issue.record("invalid"); return }
            var got: [Record] = []
            try RecordBatchView(header: h, bytes: p).forEachRecord { got.append($0.materialize()) }
            #expect(got == [Record(offset: 0, timestamp: 5, key: bytes("tombstone"), value: nil, headers: [RecordHeader(name: "h", value: nil)])])
        }
    }

    @Test(arguments: [17, 21, 30, 61, 70, 130])
    func anyFlippedByteCoveredByTheCRCOrMagicIsDetected(position: Int) {
        var raw = hexBytes(Self.batchB)
        raw[position] ^= 0x40
        raw.withUnsafeBytes { p in
            guard case .invalid = RecordBatchCodec.check(p, at: 0) else {
                Issue.record("a flipped byte at \(position) was not detected")
                return
            }
        }
    }

    @Test func truncatedBatchIsIncompleteNotValid() {
        let raw = Array(hexBytes(Self.batchB).dropLast(5))
        raw.withUnsafeBytes { p in
            guard case .incomplete(let needed) = RecordBatchCodec.check(p, at: 0) else {
                Issue.record("a truncated batch was not reported incomplete")
                return
            }
            #expect(needed == 131)
        }
    }

    @Test func iteratorWalksConsecutiveBatchesAndStopsAtATornTail() {
        var buffer = hexBytes(Self.batchA) + hexBytes(Self.batchB)
        buffer += hexBytes(Self.batchA).prefix(40)
        buffer.withUnsafeBytes { p in
            var it = RecordBatchIterator(p)
            var counts: [Int32] = []
            while let b = it.next() { counts.append(b.header.recordCount) }
            #expect(counts == [1, 3])
            #expect(it.failure == nil)
        }
    }
}

@Suite struct CompressionTests {
    @Test func rawSnappyLiteralsAndOverlappingCopies() throws {
        // "abcabcabc": length 9, a 3-byte literal, then a 6-byte copy from 3 back (overlapping).
        let block: [UInt8] = [0x09, 0x08, 0x61, 0x62, 0x63, 0x09, 0x03]
        let out = try block.withUnsafeBytes { try RecordCompression.decompress(codec: 2, $0) }
        #expect(String(decoding: out, as: UTF8.self) == "abcabcabc")
        // The same block inside xerial framing (Java clients).
        let framed: [UInt8] = [0x82, 0x53, 0x4E, 0x41, 0x50, 0x50, 0x59, 0x00, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 7] + block
        let out2 = try framed.withUnsafeBytes { try RecordCompression.decompress(codec: 2, $0) }
        #expect(out2 == out)
    }

    @Test func damagedCompressedRecordsAreErrorsNotCrashes() {
        let copyTooFar: [UInt8] = [0x09, 0x08, 0x61, 0x62, 0x63, 0x09, 0x09]  // offset 9 > 3 decoded bytes
        #expect(throws: LogError.self) { _ = try copyTooFar.withUnsafeBytes { try RecordCompression.decompress(codec: 2, $0) } }
        let garbage: [UInt8] = Array("not compressed at all".utf8)
        for codec in [1, 3, 4] {
            #expect(throws: LogError.self) { _ = try garbage.withUnsafeBytes { try RecordCompression.decompress(codec: codec, $0) } }
        }
    }
}
