// ShareInspector: what `sluice queue list|describe` shows from another process — each share
// group's settings, its members as last recorded, and per partition the records in flight and
// who holds them, read from `__share_group_state` in a data directory opened read-only. The
// running process writes a partition's state at every fetch and acknowledgement, so this is as
// fresh as the last of those.
import Foundation
import Logging
import SluiceLog

public struct ShareInspector: Sendable {
    let topics: TopicManager
    let live: [[UInt8]: [UInt8]]

    /// Nil-safe: a directory without `__share_group_state` has no share groups.
    public init(topics: TopicManager, logger: Logger = Logger(label: "sluice.shares")) throws {
        self.topics = topics
        let name = try TopicName("__share_group_state")
        guard topics.exists(name) else {
            live = [:]
            return
        }
        live = try InternalTopicStore(topics: topics, name: name.rawValue, flush: "interval", logger: logger).load()
    }

    private func entries(_ kind: Int16) -> [(key: WireReader, value: [UInt8])] {
        live.compactMap { k, v in
            var r = WireReader(k)
            guard (try? r.int16()) == kind else { return nil }
            return (r, v)
        }
    }

    public func groupIds() -> [String] {
        var ids = Set<String>()
        for kind: Int16 in [1, 2, 3] {
            for var e in entries(kind) { if let g = try? e.key.string() { ids.insert(g) } }
        }
        return ids.sorted()
    }

    /// The group as last recorded, or nil when the directory has none by that id.
    public func describe(_ groupId: String) throws -> ShareGroupDescription? {
        var settings: ShareGroupSettings?
        var stored: StoredShareMembers?
        var parts: [ShareGroupDescription.Partition] = []
        for var e in entries(2) where (try? e.key.string()) == groupId {
            settings = try JSONDecoder().decode(ShareGroupSettings.self, from: Data(e.value))
        }
        for var e in entries(3) where (try? e.key.string()) == groupId {
            stored = try JSONDecoder().decode(StoredShareMembers.self, from: Data(e.value))
        }
        for var e in entries(1) {
            guard (try? e.key.string()) == groupId else { continue }
            let tp = TopicPartition(try TopicName(try e.key.string()), try e.key.int32())
            let (snapshot, holders) = try ShareCoordinator.decodeSnapshot(e.value)
            var counts: [ShareRecordState: Int] = [:]
            var by: [String: Int] = [:]
            for (run, holder) in zip(snapshot.runs, holders) where run.last >= snapshot.startOffset {
                let n = Int(run.last - max(run.first, snapshot.startOffset) + 1)
                counts[run.state, default: 0] += n
                if run.state == .acquired { by[holder ?? "?", default: 0] += n }
            }
            let end = max(snapshot.startOffset, (snapshot.runs.last?.last ?? snapshot.startOffset - 1) + 1)
            let inFlight = Int(end - snapshot.startOffset)
            let logEnd = (try? topics.partitionLog(tp.topic, tp.partition))?.highWatermark ?? end
            let settled = (counts[.acquired] ?? 0) + (counts[.acknowledged] ?? 0) + (counts[.archived] ?? 0)
            parts.append(.init(topicPartition: tp, startOffset: snapshot.startOffset, endOffset: end, logEndOffset: logEnd, inFlight: inFlight,
                               available: inFlight - settled, acquired: counts[.acquired] ?? 0, acknowledged: counts[.acknowledged] ?? 0,
                               archived: counts[.archived] ?? 0, acquiredBy: by))
        }
        guard settings != nil || stored != nil || !parts.isEmpty else { return nil }
        let members = (stored?.members ?? []).map { m in
            ShareGroupDescription.Member(memberId: m.memberId, clientId: m.clientId, clientHost: m.clientHost, epoch: stored!.epoch, topics: m.topics,
                                         assignment: m.assignment.compactMap { TopicPartition(parsing: $0) })
        }
        return ShareGroupDescription(groupId: groupId, epoch: stored?.epoch ?? 0, settings: settings ?? ShareGroupSettings(), members: members,
                                     partitions: parts.sorted { $0.topicPartition < $1.topicPartition })
    }

    /// The pid of the process holding the data directory, if one is running.
    public var writerPid: Int32? { DataDirectory.writerPid(topics.directory.path) }
}

extension TopicPartition {
    /// Parses "topic-partition" (TopicPartition's description).
    init?(parsing text: String) {
        guard let dash = text.lastIndex(of: "-"), let n = Int32(text[text.index(after: dash)...]), let t = try? TopicName(String(text[..<dash])) else { return nil }
        self.init(t, n)
    }
}
