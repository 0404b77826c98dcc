// Topic names, the partitioners and the topic manager through SluiceBroker's public API.
import Foundation
import SluiceBroker
import SluiceLog
import Testing

@Suite struct TopicNameTests {
    @Test(arguments: ["orders", "a", "orders.v2", "user_events-2026", String(repeating: "x", count: 249), "__consumer_offsets", ".hidden"])
    func validNames(name: String) throws {
        #expect(try TopicName(name).rawValue == name)
    }

    @Test(arguments: [
        ("", "empty"), (".", "'.' and '..'"), ("..", "'.' and '..'"), ("bad name", "character ' '"),
        ("a/b", "character '/'"), ("ümlaut", "character 'ü'"), (String(repeating: "x", count: 250), "250 characters"),
    ])
    func invalidNamesSayWhy(name: String, reason: String) {
        do {
            _ = try TopicName(name)
            Issue.record("'\(name)' was accepted")
        } catch let e as BrokerError {
            #expect(e.code == .invalidTopicName)
            #expect(e.message.contains(reason), "\(e.message)")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}

@Suite struct PartitionerTests {
    // murmur2 and partitions as Kafka's Java client (Utils.murmur2 / toPositive) computes them;
    // generated with kafka-python and cross-checked with Kafka's Java code.
    static let vectors: [(String, Int32, [Int32])] = [
        ("", 275_646_681, [0, 3, 9, 81]),
        ("a", -1_563_381_124, [1, 4, 4, 24]),
        ("key", -1_079_937_367, [1, 1, 1, 81]),
        ("hello", 2_132_663_229, [0, 3, 9, 29]),
        ("user-42", 1_459_644_460, [1, 4, 4, 60]),
        ("0123456789abcdef", 1_438_427_052, [0, 0, 0, 52]),
        ("orders-2026", -1_547_482_868, [0, 0, 0, 80]),
    ]

    @Test(arguments: vectors)
    func murmur2MatchesTheJavaClient(key: String, hash: Int32, partitions: [Int32]) {
        let k = Array(key.utf8)
        #expect(Murmur2.hash(k) == hash)
        #expect([3, 6, 12, 100].map { Murmur2.partition(forKey: k, partitions: $0) } == partitions)
    }

    @Test func murmur2OfNonUTF8Bytes() {
        #expect(Murmur2.hash([0xff, 0xfe, 0x00, 0x01]) == 1_370_013_769)
        #expect(Murmur2.partition(forKey: [0xff, 0xfe, 0x00, 0x01], partitions: 100) == 69)
    }

    @Test func stickyStaysOnOnePartitionUntilTheBatchCompletes() {
        let p = KeylessPartitioner(strategy: .sticky, seed: 42)
        let first = p.partition(partitions: 8)
        for _ in 0..<100 { #expect(p.partition(partitions: 8) == first) }
        p.batchCompleted(partitions: 8)
        #expect(p.partition(partitions: 8) != first)
    }

    @Test func roundRobinVisitsEveryPartitionEvenly() {
        let p = KeylessPartitioner(strategy: .roundRobin)
        var counts = [Int](repeating: 0, count: 5)
        for _ in 0..<500 { counts[Int(p.partition(partitions: 5))] += 1 }
        #expect(counts == [100, 100, 100, 100, 100])
    }
}

@Suite struct TopicManagerTests {
    let root = NSTemporaryDirectory() + "sluice-broker-\(UUID().uuidString)"

    func manager(readOnly: Bool = false) throws -> TopicManager {
        TopicManager(directory: try DataDirectory(path: root, readOnly: readOnly))
    }

    @Test func createListDescribeDeleteAndSurviveRestart() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        do {
            let topics = try manager()
            let config = TopicConfig(partitions: 3, flush: "always", retentionMs: 3_600_000)
            let d = try topics.create(try TopicName("orders"), config: config)
            #expect(d.partitions.map(\.partition) == [0, 1, 2])
            try topics.create(try TopicName("audit"), config: TopicConfig())
            var b = RecordBatchBuilder()
            b.append(key: nil, value: Array("x".utf8), timestamp: 1)
            try topics.partitionLog(try TopicName("orders"), 2).append(&b)
            topics.close()
        }
        // A new process (a new manager) sees the same topics, configs and data.
        let topics = try manager()
        #expect(try topics.list().map(\.rawValue) == ["audit", "orders"])
        let d = try topics.describe(try TopicName("orders"))
        #expect(d.config.flush == "always" && d.config.retentionMs == 3_600_000 && d.config.partitions == 3)
        #expect(d.partitions.map(\.logEndOffset) == [0, 0, 1])
        #expect(d.partitions[2].sizeInBytes > 0)
        try topics.delete(try TopicName("orders"))
        #expect(try topics.list().map(\.rawValue) == ["audit"])
        #expect(!FileManager.default.fileExists(atPath: root + "/topics/orders"))
        #expect(throws: BrokerError.self) { try topics.describe(try TopicName("orders")) }
        topics.close()
    }

    @Test func mistakesGetTheirOwnCodes() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        let topics = try manager()
        defer { topics.close() }
        try topics.create(try TopicName("t"), config: TopicConfig(partitions: 2))
        let cases: [(BrokerError.Code, () throws -> Void)] = [
            (.topicExists, { try topics.create(try TopicName("t"), config: TopicConfig()) }),
            (.unknownTopic, { _ = try topics.describe(try TopicName("nope")) }),
            (.unknownTopic, { try topics.delete(try TopicName("nope")) }),
            (.invalidPartition, { _ = try topics.partitionLog(try TopicName("t"), 2) }),
            (.invalidConfig, { try topics.create(try TopicName("u"), config: TopicConfig(partitions: 0)) }),
            (.invalidConfig, { try topics.create(try TopicName("u"), config: TopicConfig(flush: "sometimes")) }),
        ]
        for (code, action) in cases {
            do {
                try action()
                Issue.record("expected \(code)")
            } catch let e as BrokerError {
                #expect(e.code == code, "\(e.message)")
                #expect(e.isUserError)
            }
        }
        #expect(!FileManager.default.fileExists(atPath: root + "/topics/u"))
    }

    @Test func aSecondWriterOfTheSameDataDirectoryIsRefused() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        let first = try DataDirectory(path: root, readOnly: false)
        do {
            _ = try DataDirectory(path: root, readOnly: false)
            Issue.record("a second writer was allowed")
        } catch let e as BrokerError {
            #expect(e.code == .dataDirectoryLocked)
            #expect(e.message.contains("in use") && e.message.contains("pid \(getpid())"))
        }
        // Readers do not need the lock.
        _ = try DataDirectory(path: root, readOnly: true)
        _ = first
    }

    @Test func corruptTopicMetadataIsReportedWithItsPath() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        do {
            let topics = try manager()
            try topics.create(try TopicName("t"), config: TopicConfig())
            topics.close()
        }
        try Data("{ not json".utf8).write(to: URL(fileURLWithPath: root + "/topics/t/topic.json"))
        let again = try manager()
        do {
            _ = try again.describe(try TopicName("t"))
            Issue.record("corrupt metadata accepted")
        } catch let e as BrokerError {
            #expect(e.code == .metadata && e.message.contains(root + "/topics/t/topic.json"))
        }
    }
}
