// Resource limits and refusals on the Kafka side: a fetch's response is bounded by the
// request's max_bytes (beyond its first batch) and the broker's own cap, answers a connection
// has not read are bounded, internal topics cannot be created or deleted by clients, and a
// SASL PLAIN authorization id other than the user is refused.
import Foundation
import Logging
import SluiceBroker
@testable import SluiceKafkaWire
import SluiceLog
import Testing

@Suite struct LimitsTests {
    /// A request frame (no size prefix) for `message` at `version`.
    static func frame(_ message: some KafkaMessage, _ key: ApiKey, _ version: Int16, correlation: Int32 = 9) -> [UInt8] {
        var w = KafkaWriter()
        w.int16(key.rawValue); w.int16(version); w.int32(correlation); w.string("limits")
        if key.isFlexible(version) { w.bytes.append(0) }
        var body = KafkaWriter()
        message.encode(to: &body, version: version)
        return w.bytes + body.bytes
    }

    /// The response value of `T` in `response` (a frame with its size prefix).
    static func decode<T: KafkaMessage>(_: T.Type, _ response: [UInt8]?, _ key: ApiKey, _ version: Int16) throws -> T {
        let bytes = try #require(response)
        var r = KafkaReader(bytes, at: 8, flexible: key.isFlexible(version))
        if key.isFlexible(version) && key != .apiVersions { try r.taggedFields() }
        return try T(from: &r, version: version)
    }

    /// Appends `batches` batches of `records` records of `size` bytes to each partition.
    static func fill(_ broker: EmbeddedBroker, _ topic: TopicName, partitions: Int32, batches: Int, records: Int, size: Int) throws {
        let value = [UInt8](repeating: 120, count: size)
        for p in 0..<partitions {
            let log = try broker.partition(TopicPartition(topic, p)).log
            for _ in 0..<batches {
                var b = RecordBatchBuilder(capacity: records * (size + 16))
                for _ in 0..<records { b.append(key: nil, value: value, timestamp: 1) }
                _ = try log.append(&b)
            }
        }
    }

    func fetch(_ handler: KafkaRequestHandler, topic: String, partitions: Int32, maxBytes: Int32, partitionMax: Int32) async throws -> FetchResponse {
        var request = FetchRequest(maxWaitMs: 0, minBytes: 1, maxBytes: maxBytes)
        request.topics = [.init(topic: topic, partitions: (0..<partitions).map { .init(partition: $0, fetchOffset: 0, partitionMaxBytes: partitionMax) })]
        return try Self.decode(FetchResponse.self, try await handler.handle(Self.frame(request, .fetch, 11)), .fetch, 11)
    }

    @Test func aFetchIsBoundedByItsMaxBytesBeyondTheFirstBatch() async throws {
        try await withKafkaHandler { handler, broker in
            let topic = try broker.createTopic("wide", partitions: 3)
            // Each partition: 20 batches of 100 records of 1,000 bytes (≈ 100 KB a batch, 2 MB in all).
            try Self.fill(broker, topic, partitions: 3, batches: 20, records: 100, size: 1000)
            // max_bytes 1 MiB, partition_max_bytes 2^31-1 (the request): about 1 MiB, not 6 MB.
            let big = try await fetch(handler, topic: "wide", partitions: 3, maxBytes: 1 << 20, partitionMax: Int32.max)
            let sizes = big.responses[0].partitions.map { $0.records?.count ?? 0 }
            #expect(sizes.reduce(0, +) <= 1 << 20, "\(sizes)")
            #expect(sizes[0] > 0 && sizes[0] <= 1 << 20, "\(sizes)")
            // A max_bytes smaller than one batch still gets that first batch (KIP-74), and only it.
            let tiny = try await fetch(handler, topic: "wide", partitions: 3, maxBytes: 10, partitionMax: 10)
            let tinySizes = tiny.responses[0].partitions.map { $0.records?.count ?? 0 }
            #expect(tinySizes[0] > 10 && tinySizes[0] < 200_000, "\(tinySizes)")
            #expect(tinySizes[1] == 0 && tinySizes[2] == 0, "the budget is spent: \(tinySizes)")
            #expect(tiny.responses[0].partitions.allSatisfy { $0.errorCode == 0 && $0.highWatermark == 2000 })
            // The broker's own cap holds whatever the request asks.
            let all = try await fetch(handler, topic: "wide", partitions: 3, maxBytes: Int32.max, partitionMax: Int32.max)
            #expect(all.responses[0].partitions.map { $0.records?.count ?? 0 }.reduce(0, +) <= KafkaRequestHandler.maxFetchResponseBytes)
        }
    }

    @Test func unsentAnswersAreBoundedPerConnection() async throws {
        let pending = PendingBytes(limit: 100)
        await pending.reserve(60)
        await pending.reserve(40)  // exactly the limit
        let third = Task { await pending.reserve(30); return true }
        try await Task.sleep(for: .milliseconds(50))
        pending.release(60)  // 40 pending: 70 fits
        #expect(await third.value)
        // One answer larger than the limit still goes once nothing else is pending.
        pending.release(40); pending.release(30)
        await pending.reserve(500)
        pending.release(500)
        // A waiting reserve ends when its task is cancelled (a closed connection).
        await pending.reserve(100)
        let blocked = Task { await pending.reserve(1); return Task.isCancelled }
        try await Task.sleep(for: .milliseconds(50))
        blocked.cancel()
        #expect(await blocked.value)
    }

    @Test func clientsCannotCreateOrDeleteInternalTopics() async throws {
        try await withKafkaHandler { handler, broker in
            var create = CreateTopicsRequest()
            create.topics = [.init(name: "__consumer_offsets", numPartitions: 1, replicationFactor: 1), .init(name: "fine", numPartitions: 1, replicationFactor: 1)]
            let created = try Self.decode(CreateTopicsResponse.self, try await handler.handle(Self.frame(create, .createTopics, 4)), .createTopics, 4)
            #expect(created.topics.map(\.errorCode) == [KafkaErrorCode.invalidTopic, 0])
            #expect(created.topics[0].errorMessage?.contains("reserved") == true)
            var delete = DeleteTopicsRequest()
            delete.topicNames = ["__transaction_state"]
            let deleted = try Self.decode(DeleteTopicsResponse.self, try await handler.handle(Self.frame(delete, .deleteTopics, 3)), .deleteTopics, 3)
            #expect(deleted.responses.map(\.errorCode) == [KafkaErrorCode.invalidTopic])
            // Metadata does not auto-create them either.
            var m = MetadataRequest()
            m.topics = [.init(name: "__mine")]
            let meta = try Self.decode(MetadataResponse.self, try await handler.handle(Self.frame(m, .metadata, 9)), .metadata, 9)
            #expect(meta.topics.map(\.errorCode) == [KafkaErrorCode.unknownTopicOrPartition])
            #expect(!broker.topics.exists(try TopicName("__mine")))
        }
    }

    @Test func plainRefusesAnAuthorizationIdOtherThanTheUser() async throws {
        let users = SASLUsers([(user: "bob", password: "pw")], iterations: 16)
        for (authzid, ok) in [("", true), ("bob", true), ("admin", false)] {
            var state = SASLState()
            state.mechanism = "PLAIN"
            let token = Array(authzid.utf8) + [0] + Array("bob".utf8) + [0] + Array("pw".utf8)
            switch users.authenticate(token, state: &state) {
            case .success: #expect(ok, "authzid '\(authzid)' accepted")
            case .failure(let f): #expect(!ok, "authzid '\(authzid)' refused: \(f.message)")
            }
            #expect((state.authenticatedUser != nil) == ok)
        }
    }

    // MARK: Malformed batches over the wire

    /// A valid batch of `records` records, sealed, as a client would send it.
    static func batch(records: Int = 1) -> [UInt8] {
        var b = RecordBatchBuilder()
        for i in 0..<records { b.append(key: nil, value: Array("v\(i)".utf8), timestamp: 1_700_000_000_000) }
        b.seal()
        return b.bytes
    }

    /// `bytes` with a big-endian Int32 (or Int16) written at `at`, the CRC made right again so
    /// only the intended defect remains.
    static func patched(_ bytes: [UInt8], int32 value: Int32? = nil, int16: Int16? = nil, at: Int) -> [UInt8] {
        var b = bytes
        if let value { for k in 0..<4 { b[at + k] = UInt8(truncatingIfNeeded: value >> Int32(24 - 8 * k)) } }
        if let int16 { b[at] = UInt8(truncatingIfNeeded: int16 >> 8); b[at + 1] = UInt8(truncatingIfNeeded: int16) }
        let crc = b.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[RecordBatchLayout.crcStart...])) }
        for k in 0..<4 { b[RecordBatchLayout.crc + k] = UInt8(truncatingIfNeeded: crc >> UInt32(24 - 8 * k)) }
        return b
    }

    static func withCRC(_ bytes: [UInt8]) -> [UInt8] { patched(bytes, at: 0) }

    func produce(_ handler: KafkaRequestHandler, _ sets: [(partition: Int32, bytes: [UInt8])]) async throws -> [ProduceResponse.PartitionProduceResponse] {
        var request = ProduceRequest(acks: 1, timeoutMs: 1000)
        request.topicData = [.init(name: "strict", partitionData: sets.map { .init(index: $0.partition, records: RecordBytes($0.bytes)) })]
        let response = try Self.decode(ProduceResponse.self, try await handler.handle(Self.frame(request, .produce, 9)), .produce, 9)
        return response.responses.flatMap(\.partitionResponses)
    }

    @Test func everyMalformedBatchIsRefusedAndNothingOfItsRequestIsStored() async throws {
        try await withKafkaHandler { handler, broker in
            let topic = try broker.createTopic("strict", partitions: 2)
            let good = Self.batch(records: 1)
            let three = Self.batch(records: 3)
            typealias L = RecordBatchLayout
            var codec7 = good
            codec7[L.attributes + 1] |= 7
            var notGzip = three
            notGzip[L.attributes + 1] |= 1  // gzip flag on plain records
            var badVarint = good
            badVarint[L.headerSize] = 0xff  // the first record's length: a varint that never ends within the record
            for i in 1...5 { badVarint[L.headerSize + i] = 0xff }
            var badCRC = good
            badCRC[L.crc] ^= 0xff
            let cases: [(String, [UInt8], Int16)] = [
                ("count 3 for one record", Self.patched(good, int32: 3, at: L.recordCount), KafkaErrorCode.invalidRecord),
                ("count 0", Self.patched(good, int32: 0, at: L.recordCount), KafkaErrorCode.invalidRecord),
                ("count 2^31-1", Self.patched(good, int32: Int32.max, at: L.recordCount), KafkaErrorCode.invalidRecord),
                ("lastOffsetDelta 1,000,000", Self.patched(good, int32: 1_000_000, at: L.lastOffsetDelta), KafkaErrorCode.invalidRecord),
                ("codec 7", Self.withCRC(codec7), KafkaErrorCode.invalidRecord),
                ("gzip flag on bytes that are not gzip", Self.withCRC(notGzip), KafkaErrorCode.invalidRecord),
                ("a corrupt varint", Self.withCRC(badVarint), KafkaErrorCode.invalidRecord),
                ("a bad CRC", badCRC, KafkaErrorCode.corruptMessage),
            ]
            for (what, bytes, code) in cases {
                // The bad batch after a good one in the same record set, and a good record set
                // for the other partition: nothing of the request may be stored.
                let answers = try await produce(handler, [(0, good + bytes), (1, good)])
                #expect(answers.map(\.errorCode) == [code, KafkaErrorCode.invalidRecord], "\(what): \(answers.map(\.errorCode)) \(answers.map(\.errorMessage))")
                for p in Int32(0)..<2 {
                    #expect(try broker.partition(TopicPartition(topic, p)).highWatermark == 0, "\(what): partition \(p) unchanged")
                }
            }
            // And the log still takes good batches, which read back whole.
            let ok = try await produce(handler, [(0, good + three), (1, good)])
            #expect(ok.map(\.errorCode) == [0, 0])
            #expect(try broker.partition(TopicPartition(topic, 0)).highWatermark == 4)
            let read = try broker.partition(TopicPartition(topic, 0)).read(from: 0, maxBytes: 1 << 20, isolation: .readUncommitted)
            var offsets: [Int64] = []
            try read.forEachRecord(from: 0) { offsets.append($0.offset) }
            #expect(offsets == [0, 1, 2, 3])
        }
    }
}
