// Newer protocol versions through the request handler: golden request frames captured from
// real clients, topic ids, require_stable, member fencing of transactional offset commits,
// ListOffsets by max timestamp and the error codes older versions expect.
//
// Fixtures/<client>-<Api>-v<version>.hex are whole request frames (size prefix included) that
// librdkafka 2.0 (kcat), librdkafka 2.6 (confluent-kafka) and kafka-python 3.0 sent to
// `sluice serve`, recorded by scripts/interop/wire_capture.py and written by
// scripts/interop/check_capture.py --fixtures (which first decoded them, and Sluice's answers,
// with Kafka's own message definitions).
import Foundation
import Logging
import SluiceBroker
import SluiceKafkaWire
import SluiceLog
import Testing

@Suite(.serialized) struct VersionTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures").path

    /// A request frame without its size prefix; header v2 (tagged fields) when `flexible`.
    func request(_ key: ApiKey, _ version: Int16, _ body: KafkaWriter, correlation: Int32 = 7) -> [UInt8] {
        var w = KafkaWriter()
        w.int16(key.rawValue); w.int16(version); w.int32(correlation); w.string("test")
        if key.isFlexible(version) { w.bytes.append(0) }
        return w.bytes + body.bytes
    }

    /// The response body after the size, correlation id and (flexible) header tagged fields.
    func body(_ response: [UInt8]?, _ key: ApiKey, _ version: Int16) throws -> KafkaReader {
        let bytes = try #require(response)
        var r = KafkaReader(bytes, at: 8, flexible: key.isFlexible(version))
        if key.isFlexible(version) && key != .apiVersions { try r.taggedFields() }
        return r
    }

    @Test func everyCapturedClientRequestIsAcceptedAndReadWhole() async throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.fixtures).filter { $0.hasSuffix(".hex") }.sorted()
        #expect(files.count >= 40, "the captured fixtures are present")
        var apis: Set<String> = []
        try await withKafkaHandler { handler, broker in
            _ = try broker.createTopic("plain", partitions: 1)
            for file in files {
                let hex = try String(contentsOfFile: Self.fixtures + "/" + file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
                let frame = try #require(Self.bytes(hex), "\(file) is hex")
                let parts = file.dropLast(4).split(separator: "-")
                let (header, _) = try KafkaRequestHandler.header(Array(frame.dropFirst(4)))
                let api = try #require(ApiKey(rawValue: header.apiKey))
                #expect("\(api)".lowercased() == parts[1].lowercased(), "\(file) holds a \(api) request")
                #expect("v\(header.apiVersion)" == parts[2], "\(file) holds version \(header.apiVersion)")
                #expect(api.versions.contains(header.apiVersion), "\(file): v\(header.apiVersion) is advertised")
                apis.insert("\(api)")
                // Every byte is read (a leftover byte closes the connection), and the answer
                // carries the request's correlation id.
                let response = try await handler.handle(Array(frame.dropFirst(4)))
                if let response {
                    #expect(Array(response[4..<8]) == Array(frame[8..<12]), "\(file): correlation id echoed")
                } else {
                    #expect(api == .produce, "\(file): only acks=0 produces go unanswered")
                }
                // One byte less is a malformed request of that version, refused before it has
                // any effect (ApiVersions is read leniently, as Kafka does, so any client can
                // learn the versions; librdkafka's all-topics Metadata carries three stray bytes
                // at its end, so one fewer still reads whole).
                if api != .apiVersions && !file.contains("alltopics") {
                    await #expect(throws: ProtocolViolation.self, "\(file) minus a byte") { _ = try await handler.handle(Array(frame.dropFirst(4).dropLast())) }
                }
            }
        }
        #expect(apis.count >= 24, "fixtures cover \(apis.sorted())")
    }

    static func bytes(_ hex: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(hex.count / 2)
        var it = hex.utf8.makeIterator()
        while let hi = it.next() {
            guard let lo = it.next(), let h = UInt8(String(UnicodeScalar(hi)), radix: 16), let l = UInt8(String(UnicodeScalar(lo)), radix: 16) else { return nil }
            out.append(h << 4 | l)
        }
        return out
    }

    @Test func topicIdsArePersistentNewForARecreatedTopicAndServeFetchByID() async throws {
        let dir = NSTemporaryDirectory() + "sluice-topicid-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var broker = try await EmbeddedBroker.open(path: dir)
        let topic = try broker.createTopic("ids", partitions: 2)
        let first = try broker.topics.topicId(topic)
        #expect(FileManager.default.fileExists(atPath: dir + "/topics/ids/topic.id"))
        let producer = try await Producer(broker: broker)
        _ = try await producer.send(ProducerRecord(topic: topic, partition: 1, value: Array("by id".utf8)))
        try await producer.flush()
        await broker.close()
        broker = try await EmbeddedBroker.open(path: dir)
        #expect(try broker.topics.topicId(topic) == first, "the id survives a restart")
        #expect(try broker.topics.topic(withId: first) == topic)
        let handler = KafkaRequestHandler(broker: broker, config: KafkaListenerConfig(advertisedHost: "127.0.0.1", advertisedPort: 9092), logger: Logger(label: "test"))

        // Metadata v12 names the topic's id.
        var m = KafkaWriter(flexible: true)
        m.arrayCount(1); m.uuid(KafkaUUID.zero); m.string("ids"); m.taggedFields()
        m.bool(false); m.bool(false); m.taggedFields()
        var r = try body(try await handler.handle(request(.metadata, 12, m)), .metadata, 12)
        _ = try r.int32()
        _ = try r.array { (r: inout KafkaReader) throws(WireError) -> Int32 in
            let id = try r.int32(); _ = try r.string(); _ = try r.int32(); _ = try r.nullableString(); try r.taggedFields(); return id
        }
        _ = try r.nullableString(); _ = try r.int32()
        #expect(try r.arrayCount() == 1)
        #expect(try r.int16() == 0 && r.string() == "ids")
        #expect(try r.uuid() == first)

        // Fetch v16 by id: the record comes back under the id; an unknown id is UNKNOWN_TOPIC_ID.
        let stranger = UUID()
        var f = KafkaWriter(flexible: true)
        f.int32(0); f.int32(1); f.int32(1 << 20); f.int8(0); f.int32(0); f.int32(-1)
        f.arrayCount(2)
        for id in [first, stranger] {
            f.uuid(id)
            f.arrayCount(1)
            f.int32(1); f.int32(-1); f.int64(0); f.int32(-1); f.int64(-1); f.int32(1 << 20); f.taggedFields()
            f.taggedFields()
        }
        f.arrayCount(0); f.string(""); f.taggedFields()
        r = try body(try await handler.handle(request(.fetch, 16, f)), .fetch, 16)
        #expect(try r.int32() == 0 && r.int16() == 0)
        _ = try r.int32()
        #expect(try r.arrayCount() == 2)
        #expect(try r.uuid() == first)
        #expect(try r.arrayCount() == 1)
        #expect(try r.int32() == 1 && r.int16() == 0 && r.int64() == 1, "partition 1, no error, high watermark 1")
        _ = try r.int64(); _ = try r.int64()
        _ = try r.arrayCount(); _ = try r.int32()
        let records = try #require(try r.nullableBytes())
        #expect(records.count > 61 && String(decoding: records.suffix(6), as: UTF8.self).contains("by id"))
        try r.taggedFields(); try r.taggedFields()
        #expect(try r.uuid() == stranger)
        #expect(try r.arrayCount() == 1)
        #expect(try r.int32() == 1 && r.int16() == KafkaErrorCode.unknownTopicId)

        // Deleting and creating the topic again gives it a new id; DeleteTopics v6 by id.
        try broker.deleteTopic(topic)
        let again = try broker.createTopic("ids", partitions: 1)
        let second = try broker.topics.topicId(again)
        #expect(second != first)
        #expect(try broker.topics.topic(withId: first) == nil)
        var d = KafkaWriter(flexible: true)
        d.arrayCount(1); d.string(nil); d.uuid(second); d.taggedFields(); d.int32(1000); d.taggedFields()
        r = try body(try await handler.handle(request(.deleteTopics, 6, d)), .deleteTopics, 6)
        _ = try r.int32()
        #expect(try r.arrayCount() == 1)
        #expect(try r.nullableString() == "ids" && r.uuid() == second && r.int16() == 0)
        #expect(!broker.topics.exists(again))
        await broker.close()
    }

    /// OffsetFetch v7+ with require_stable answers UNSTABLE_OFFSET_COMMIT while a transaction
    /// holds an offset for the partition, and the committed offset once it ends.
    @Test func requireStableWaitsForOpenTransactionalOffsets() async throws {
        try await withKafkaHandler { handler, broker in
            let topic = try broker.createTopic("stable", partitions: 1)
            let producer = try await Producer(broker: broker, config: ProducerConfig(transactionalId: "stable-tx"))
            try producer.beginTransaction()
            _ = try await producer.send(ProducerRecord(topic: topic, partition: 0, value: Array("x".utf8)))
            try await producer.sendOffsetsToTransaction([TopicPartition(topic, 0): 42], groupId: "g")
            func fetch(requireStable: Bool) async throws -> (offset: Int64, error: Int16) {
                var w = KafkaWriter(flexible: true)
                w.arrayCount(1); w.string("g"); w.string(nil); w.int32(-1)
                w.arrayCount(1); w.string("stable"); w.array([Int32(0)]) { $0.int32($1) }; w.taggedFields()
                w.taggedFields()
                w.bool(requireStable); w.taggedFields()
                var r = try body(try await handler.handle(request(.offsetFetch, 9, w)), .offsetFetch, 9)
                _ = try r.int32()
                #expect(try r.arrayCount() == 1 && r.string() == "g")
                #expect(try r.arrayCount() == 1 && r.string() == "stable")
                #expect(try r.arrayCount() == 1 && r.int32() == 0)
                let offset = try r.int64()
                _ = try r.int32(); _ = try r.nullableString()
                return (offset, try r.int16())
            }
            #expect(try await fetch(requireStable: true) == (-1, KafkaErrorCode.unstableOffsetCommit))
            #expect(try await fetch(requireStable: false) == (-1, 0), "without require_stable: the last committed offset (none)")
            try await producer.commitTransaction()
            #expect(try await fetch(requireStable: true) == (42, 0))
        }
    }

    /// TxnOffsetCommit v3+ names the consuming member; a stale generation is fenced (KIP-447).
    @Test func transactionalOffsetCommitsFromAStaleGenerationAreFenced() async throws {
        try await withKafkaHandler { handler, broker in
            let topic = try broker.createTopic("fence", partitions: 1)
            let joined = try await broker.groups.join(SluiceBroker.JoinGroupRequest(groupId: "eos", memberId: "", groupInstanceId: nil, clientId: "t", sessionTimeoutMs: 30_000, rebalanceTimeoutMs: 30_000, protocolType: "consumer", protocols: [GroupProtocol(name: "range", metadata: [])]))
            _ = try await broker.groups.sync(groupId: "eos", generation: joined.generation, memberId: joined.memberId, assignments: [joined.memberId: []])
            let (pid, epoch) = try await broker.transactions.initProducerId(transactionalId: "fence-tx")
            try await broker.transactions.addPartitions(transactionalId: "fence-tx", producerId: pid, epoch: epoch, partitions: [TopicPartition(topic, 0)])
            try await broker.transactions.addOffsets(transactionalId: "fence-tx", producerId: pid, epoch: epoch, groupId: "eos")
            func commit(generation: Int32, member: String) async throws -> Int16 {
                var w = KafkaWriter(flexible: true)
                w.string("fence-tx"); w.string("eos"); w.int64(pid); w.int16(epoch)
                w.int32(generation); w.string(member); w.string(nil)
                w.arrayCount(1); w.string("fence"); w.arrayCount(1)
                w.int32(0); w.int64(5); w.int32(-1); w.string(nil); w.taggedFields()
                w.taggedFields(); w.taggedFields()
                var r = try body(try await handler.handle(request(.txnOffsetCommit, 3, w)), .txnOffsetCommit, 3)
                _ = try r.int32()
                #expect(try r.arrayCount() == 1 && r.string() == "fence" && r.arrayCount() == 1 && r.int32() == 0)
                return try r.int16()
            }
            #expect(try await commit(generation: joined.generation + 1, member: joined.memberId) == 22, "ILLEGAL_GENERATION")
            #expect(try await commit(generation: joined.generation, member: "someone-else") == 25, "UNKNOWN_MEMBER_ID")
            #expect(try await commit(generation: joined.generation, member: joined.memberId) == 0)
            #expect(try await commit(generation: -1, member: "") == 0, "a producer outside the group is not checked")
        }
    }

    /// LeaveGroup v3+ removes a batch of members and answers per member; one the group does
    /// not have is UNKNOWN_MEMBER_ID.
    @Test func leaveGroupBatchesAnswerPerMember() async throws {
        try await withKafkaHandler { handler, broker in
            let joined = try await broker.groups.join(SluiceBroker.JoinGroupRequest(groupId: "batch", memberId: "", groupInstanceId: nil, clientId: "t", sessionTimeoutMs: 30_000, rebalanceTimeoutMs: 30_000, protocolType: "consumer", protocols: [GroupProtocol(name: "range", metadata: [])]))
            var w = KafkaWriter(flexible: true)
            w.string("batch")
            w.arrayCount(2)
            for member in [joined.memberId, "ghost"] { w.string(member); w.string(nil); w.string("test over"); w.taggedFields() }
            w.taggedFields()
            var r = try body(try await handler.handle(request(.leaveGroup, 5, w)), .leaveGroup, 5)
            _ = try r.int32()
            #expect(try r.int16() == 0)
            #expect(try r.arrayCount() == 2)
            #expect(try r.string() == joined.memberId && r.nullableString() == nil && r.int16() == 0)
            try r.taggedFields()
            #expect(try r.string() == "ghost" && r.nullableString() == nil && r.int16() == KafkaErrorCode.unknownMemberId)
            #expect(await broker.groups.describe(groupId: "batch")?.members.isEmpty == true)
        }
    }

    @Test func listOffsetsFindsTheRecordWithTheLargestTimestamp() async throws {
        try await withKafkaHandler { handler, broker in
            let topic = try broker.createTopic("times", partitions: 1)
            let producer = try await Producer(broker: broker)
            for ts in [Int64(1_000), 9_000, 3_000, 9_000, 2_000] {
                _ = try await producer.send(ProducerRecord(topic: topic, partition: 0, value: [1], timestamp: ts))
                try await producer.flush()
            }
            func list(_ timestamp: Int64, version: Int16) async throws -> (Int64, Int64) {
                var w = KafkaWriter(flexible: version >= 6)
                w.int32(-1); w.int8(0)
                w.arrayCount(1); w.string("times"); w.arrayCount(1)
                w.int32(0); w.int32(-1); w.int64(timestamp); w.taggedFields()
                w.taggedFields(); w.taggedFields()
                var r = try body(try await handler.handle(request(.listOffsets, version, w)), .listOffsets, version)
                _ = try r.int32()
                #expect(try r.arrayCount() == 1 && r.string() == "times" && r.arrayCount() == 1 && r.int32() == 0 && r.int16() == 0)
                return (try r.int64(), try r.int64())
            }
            #expect(try await list(-3, version: 7) == (9_000, 1), "max timestamp: the first record holding it")
            #expect(try await list(-1, version: 9) == (-1, 5))
            #expect(try await list(-2, version: 5) == (-1, 0))
            #expect(try await list(2_500, version: 6) == (9_000, 1), "by time: the first record at or after it, with its timestamp")
            #expect(try await list(9_001, version: 9) == (-1, -1), "no record that late")
        }
    }

    /// EndTxn before v2 has no PRODUCER_FENCED; a fenced producer hears INVALID_PRODUCER_EPOCH.
    @Test func olderTransactionVersionsReportFencingAsAnInvalidEpoch() async throws {
        try await withKafkaHandler { handler, broker in
            let (pid, old) = try await broker.transactions.initProducerId(transactionalId: "zombie")
            _ = try await broker.transactions.initProducerId(transactionalId: "zombie")  // a new instance fences `old`
            for (version, expected) in [(Int16(1), KafkaErrorCode.invalidProducerEpoch), (3, KafkaErrorCode.producerFenced), (4, KafkaErrorCode.producerFenced)] {
                var w = KafkaWriter(flexible: version >= 3)
                w.string("zombie"); w.int64(pid); w.int16(old); w.bool(true); w.taggedFields()
                var r = try body(try await handler.handle(request(.endTxn, version, w)), .endTxn, version)
                _ = try r.int32()
                #expect(try r.int16() == expected, "EndTxn v\(version)")
            }
        }
    }
}
