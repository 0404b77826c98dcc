// Kafka's consumer protocol: the subscription a member sends in JoinGroup and the assignment
// the leader hands out in SyncGroup, byte-compatible with Kafka clients
// (ConsumerProtocolSubscription v0-v3, ConsumerProtocolAssignment v0-v3).

public struct ConsumerSubscription: Sendable, Hashable {
    public var topics: [String]
    public var userData: [UInt8]?
    public var ownedPartitions: [TopicPartition]
    public var generation: Int32
    public var rackId: String?

    public init(topics: [String], userData: [UInt8]? = nil, ownedPartitions: [TopicPartition] = [], generation: Int32 = -1, rackId: String? = nil) {
        self.topics = topics
        self.userData = userData
        self.ownedPartitions = ownedPartitions
        self.generation = generation
        self.rackId = rackId
    }

    /// Encodes as version 2 (topics, user data, owned partitions, generation).
    public func encode() -> [UInt8] {
        var w = WireWriter()
        w.int16(2)
        w.int32(Int32(topics.count))
        for t in topics { w.string(t) }
        w.nullableBytes(userData)
        encodePartitions(ownedPartitions, into: &w)
        w.int32(generation)
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws -> ConsumerSubscription {
        var r = WireReader(bytes)
        do {
            let version = try r.int16()
            let count = try r.int32()
            guard count >= 0 && Int(count) <= r.remaining else { throw WireReader.Truncated() }
            var topics: [String] = []
            for _ in 0..<count { topics.append(try r.string()) }
            var sub = ConsumerSubscription(topics: topics, userData: try r.nullableBytes())
            if version >= 1 && r.remaining > 0 { sub.ownedPartitions = try decodePartitions(&r) }
            if version >= 2 && r.remaining >= 4 { sub.generation = try r.int32() }
            if version >= 3 && r.remaining >= 2 { sub.rackId = try r.nullableString() }
            return sub
        } catch {
            throw BrokerError(.inconsistentGroupProtocol, "a member's consumer subscription is malformed")
        }
    }
}

public struct ConsumerAssignment: Sendable, Hashable {
    public var partitions: [TopicPartition]
    public var userData: [UInt8]?

    public init(partitions: [TopicPartition], userData: [UInt8]? = nil) {
        self.partitions = partitions
        self.userData = userData
    }

    public func encode() -> [UInt8] {
        var w = WireWriter()
        w.int16(1)
        encodePartitions(partitions, into: &w)
        w.nullableBytes(userData)
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws -> ConsumerAssignment {
        if bytes.isEmpty { return ConsumerAssignment(partitions: []) }
        var r = WireReader(bytes)
        do {
            _ = try r.int16()
            let partitions = try decodePartitions(&r)
            let userData = r.remaining >= 4 ? try r.nullableBytes() : nil
            return ConsumerAssignment(partitions: partitions, userData: userData)
        } catch {
            throw BrokerError(.inconsistentGroupProtocol, "a consumer assignment is malformed")
        }
    }
}

private func encodePartitions(_ list: [TopicPartition], into w: inout WireWriter) {
    let byTopic = Dictionary(grouping: list, by: \.topic)
    w.int32(Int32(byTopic.count))
    for topic in byTopic.keys.sorted() {
        w.string(topic.rawValue)
        let ps = byTopic[topic]!.map(\.partition).sorted()
        w.int32(Int32(ps.count))
        for p in ps { w.int32(p) }
    }
}

private func decodePartitions(_ r: inout WireReader) throws -> [TopicPartition] {
    let topics = try r.int32()
    guard topics >= 0 && Int(topics) <= r.remaining else { throw WireReader.Truncated() }
    var out: [TopicPartition] = []
    for _ in 0..<topics {
        let name = try r.string()
        let n = try r.int32()
        guard n >= 0 && Int(n) * 4 <= r.remaining else { throw WireReader.Truncated() }
        guard let topic = try? TopicName(name) else {
            for _ in 0..<n { _ = try r.int32() }
            continue
        }
        for _ in 0..<n { out.append(TopicPartition(topic, try r.int32())) }
    }
    return out
}
