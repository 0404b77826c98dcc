// GroupInspector: what `sluice group list|describe` shows from another process — committed
// offsets and the group snapshots the running process recorded, read from a data directory
// opened read-only. Whether a writer process is alive comes from the data directory lock.
import Foundation
import Logging
import SluiceLog

public struct GroupPartitionLag: Sendable, Hashable {
    public var topicPartition: TopicPartition
    public var committed: Int64?
    public var end: Int64
    public var lag: Int64?
    public var metadata: String
}

public struct GroupReport: Sendable {
    public var groupId: String
    public var snapshot: GroupSnapshot?
    public var partitions: [GroupPartitionLag]
    /// The pid of the process holding the data directory, if one is running.
    public var writerPid: Int32?
    /// The state to show: the recorded one while its process runs, else Empty.
    public var effectiveState: String {
        guard let s = snapshot else { return "Empty" }
        return writerPid != nil ? s.state : "Empty"
    }
}

public struct GroupInspector: Sendable {
    let topics: TopicManager
    let store: OffsetStore?

    public init(topics: TopicManager, logger: Logger = Logger(label: "sluice.groups")) throws {
        self.topics = topics
        store = try OffsetStore.openReadOnly(topics: topics, logger: logger)
    }

    public func groupIds() -> [String] { store?.groupIds().sorted() ?? [] }

    public func report(_ groupId: String) throws -> GroupReport? {
        guard let store, store.groupIds().contains(groupId) else { return nil }
        let committed = store.committed(groupId)
        let snapshot = store.snapshot(groupId)
        var tps = Set(committed.keys)
        for m in snapshot?.members ?? [] {
            for p in m.partitions {
                if let dash = p.lastIndex(of: "-"), let n = Int32(p[p.index(after: dash)...]), let t = try? TopicName(String(p[..<dash])) {
                    tps.insert(TopicPartition(t, n))
                }
            }
        }
        var rows: [GroupPartitionLag] = []
        for tp in tps.sorted() {
            let end = (try? topics.partitionLog(tp.topic, tp.partition))?.highWatermark ?? 0
            let c = committed[tp]
            rows.append(GroupPartitionLag(topicPartition: tp, committed: c?.offset, end: end, lag: c.map { max(0, end - $0.offset) }, metadata: c?.metadata ?? ""))
        }
        return GroupReport(groupId: groupId, snapshot: snapshot, partitions: rows, writerPid: DataDirectory.writerPid(topics.directory.path))
    }
}

extension GroupInspector {
    /// The exactly-once lanes of a group: per source partition, the pipeline lane's
    /// transaction (transactional id `<pipeline>/<group>/<topic>/<partition>`), read from
    /// `__transaction_state`.
    public func lanes(_ groupId: String) throws -> [TopicPartition: TransactionDescription] {
        guard topics.exists(try TopicName("__transaction_state")) else { return [:] }
        let store = try InternalTopicStore(topics: topics, name: "__transaction_state", flush: "always", logger: Logger(label: "sluice.groups"))
        var out: [TopicPartition: TransactionDescription] = [:]
        let decoder = JSONDecoder()
        for (key, value) in try store.load() {
            let id = String(decoding: key, as: UTF8.self)
            let parts = id.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count >= 4, parts[parts.count - 3] == Substring(groupId), let partition = Int32(parts[parts.count - 1]),
                  let topic = try? TopicName(String(parts[parts.count - 2])),
                  let meta = try? decoder.decode(TransactionMetadata.self, from: Data(value)) else { continue }
            out[TopicPartition(topic, partition)] = TransactionDescription(transactionalId: id, producerId: meta.producerId, epoch: meta.epoch, state: meta.state, partitions: [])
        }
        return out
    }
}

extension DataDirectory {
    /// The pid in `<data>/.lock` when a process holds the lock, else nil.
    public static func writerPid(_ path: String) -> Int32? {
        let fd = open(path + "/.lock", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return nil
        }
        let text = (try? String(contentsOfFile: path + "/.lock", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        return Int32(text) ?? -1
    }
}
