// OffsetStore: committed offsets and group snapshots in `__consumer_offsets`, with keys and
// offset values in Kafka's own formats:
//   offset key   v1: int16 1, string group, string topic, int32 partition
//   offset value v3: int16 3, int64 offset, int32 leader epoch, string metadata, int64 commit time
//   group key    v2: int16 2, string group  → value: a JSON snapshot of the group (Sluice's own)
// Thread-safe; reads are served from memory.
import Foundation
import Logging
import SluiceLog
import Synchronization

public struct CommittedOffset: Sendable, Hashable {
    public var offset: Int64
    public var metadata: String
    public var commitTimestamp: Int64

    public init(offset: Int64, metadata: String = "", commitTimestamp: Int64 = currentTimeMillis()) {
        self.offset = offset
        self.metadata = metadata
        self.commitTimestamp = commitTimestamp
    }
}

/// What the last process to run a group recorded about it.
public struct GroupSnapshot: Sendable, Hashable, Codable {
    public struct Member: Sendable, Hashable, Codable {
        public var memberId: String
        public var groupInstanceId: String?
        public var clientId: String
        public var partitions: [String]
    }

    public var groupId: String
    public var state: String
    public var generation: Int32
    public var protocolType: String
    public var protocolName: String?
    public var leader: String?
    public var members: [Member]
    public var timestamp: Int64
    /// "consumer" for groups on the consumer protocol (KIP-848); nil (classic) otherwise.
    public var groupType: String? = nil
}

final class OffsetStore: Sendable {
    private let store: InternalTopicStore
    private let state = Mutex<State>(State())
    private let logger: Logger

    struct State {
        var offsets: [String: [TopicPartition: CommittedOffset]] = [:]
        var snapshots: [String: GroupSnapshot] = [:]
    }

    /// Opens the store; on a read-only data directory without `__consumer_offsets` yet, returns nil.
    static func openReadOnly(topics: TopicManager, logger: Logger) throws -> OffsetStore? {
        guard topics.exists(try TopicName("__consumer_offsets")) else { return nil }
        return try OffsetStore(topics: topics, logger: logger)
    }

    init(topics: TopicManager, logger: Logger) throws {
        self.logger = logger
        store = try InternalTopicStore(topics: topics, name: "__consumer_offsets", flush: "interval", logger: logger)
        var loaded = State()
        for (key, value) in try store.load() {
            do {
                var r = WireReader(key)
                switch try r.int16() {
                case 0, 1:
                    let group = try r.string()
                    let topic = try TopicName(try r.string())
                    let partition = try r.int32()
                    var v = WireReader(value)
                    let version = try v.int16()
                    let offset = try v.int64()
                    if version >= 3 { _ = try v.int32() }
                    let metadata = try v.nullableString() ?? ""
                    let timestamp = try v.int64()
                    loaded.offsets[group, default: [:]][TopicPartition(topic, partition)] = CommittedOffset(offset: offset, metadata: metadata, commitTimestamp: timestamp)
                case 2:
                    let group = try r.string()
                    loaded.snapshots[group] = try JSONDecoder().decode(GroupSnapshot.self, from: Data(value))
                default:
                    continue
                }
            } catch {
                logger.warning("skipped an unreadable record in __consumer_offsets: \(error)")
            }
        }
        state.withLock { $0 = loaded }
    }

    static func offsetKey(_ group: String, _ tp: TopicPartition) -> [UInt8] {
        var w = WireWriter()
        w.int16(1)
        w.string(group)
        w.string(tp.topic.rawValue)
        w.int32(tp.partition)
        return w.bytes
    }

    static func offsetValue(_ c: CommittedOffset) -> [UInt8] {
        var w = WireWriter()
        w.int16(3)
        w.int64(c.offset)
        w.int32(-1)
        w.string(c.metadata)
        w.int64(c.commitTimestamp)
        return w.bytes
    }

    static func groupKey(_ group: String) -> [UInt8] {
        var w = WireWriter()
        w.int16(2)
        w.string(group)
        return w.bytes
    }

    /// Records `offsets` durably; `syncNow` syncs at once instead of waiting for the group commit.
    func commit(_ group: String, _ offsets: [TopicPartition: CommittedOffset], syncNow: Bool = false) async throws {
        try await store.write(offsets.map { (Self.offsetKey(group, $0.key), Self.offsetValue($0.value)) }, syncNow: syncNow)
        state.withLock { s in
            for (tp, c) in offsets { s.offsets[group, default: [:]][tp] = c }
        }
    }

    func committed(_ group: String) -> [TopicPartition: CommittedOffset] {
        state.withLock { $0.offsets[group] ?? [:] }
    }

    func groupIds() -> Set<String> {
        state.withLock { Set($0.offsets.keys).union($0.snapshots.keys) }
    }

    func snapshot(_ group: String) -> GroupSnapshot? { state.withLock { $0.snapshots[group] } }

    func saveSnapshot(_ snapshot: GroupSnapshot) async throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let value = Array(try encoder.encode(snapshot))
        try await store.write([(Self.groupKey(snapshot.groupId), value)])
        state.withLock { $0.snapshots[snapshot.groupId] = snapshot }
    }

    /// Deletes a group's offsets (all, or some partitions) and, with all, its snapshot.
    func delete(_ group: String, partitions: [TopicPartition]? = nil) async throws {
        let keys: [[UInt8]] = state.withLock { s in
            let tps = partitions ?? Array((s.offsets[group] ?? [:]).keys)
            var keys = tps.map { Self.offsetKey(group, $0) }
            if partitions == nil && s.snapshots[group] != nil { keys.append(Self.groupKey(group)) }
            return keys
        }
        try await store.write(keys.map { ($0, nil) })
        state.withLock { s in
            if let partitions {
                for tp in partitions { s.offsets[group]?.removeValue(forKey: tp) }
                if s.offsets[group]?.isEmpty == true { s.offsets.removeValue(forKey: group) }
            } else {
                s.offsets.removeValue(forKey: group)
                s.snapshots.removeValue(forKey: group)
            }
        }
    }

    /// Groups whose newest commit is older than `retentionMs` (candidates for expiry).
    func groupsIdle(since cutoff: Int64) -> [String] {
        state.withLock { s in
            s.offsets.compactMap { group, offsets in
                let newest = offsets.values.map(\.commitTimestamp).max() ?? 0
                return newest < cutoff ? group : nil
            }
        }
    }

    /// Rewrites `__consumer_offsets` to its live records when it has grown well past them.
    func compactIfNeeded() throws {
        let live: [[UInt8]: [UInt8]] = try state.withLock { s in
            var m: [[UInt8]: [UInt8]] = [:]
            for (g, offsets) in s.offsets { for (tp, c) in offsets { m[Self.offsetKey(g, tp)] = Self.offsetValue(c) } }
            let encoder = JSONEncoder()
            for (g, snap) in s.snapshots { m[Self.groupKey(g)] = Array(try encoder.encode(snap)) }
            return m
        }
        try store.compactIfNeeded(live: live)
    }
}
