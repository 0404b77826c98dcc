// ShareConsumer: an in-process member of a share group (a queue). Each poll acquires records
// under a lock; each record is then acknowledged on its own — accepted, released for another
// delivery, or rejected. Several consumers (in tasks of one process, or Kafka clients over the
// wire) share the same partitions; order across them is not kept.
import Foundation
import Logging
import SluiceLog
import Synchronization

public struct ShareConsumerConfig: Sendable {
    public enum AcknowledgementMode: String, Sendable {
        /// Records of a batch not acknowledged before the next poll are accepted by it.
        case implicit
        /// Every record is acknowledged by the caller; ones left unacknowledged at the next
        /// poll are released (delivered again, counting a delivery).
        case explicit
    }
    public var groupId: String
    /// The member id, chosen by the member as in KIP-932 (a random one by default).
    public var memberId: String
    public var clientId = "sluice-share-consumer"
    /// Most records one poll acquires.
    public var maxRecords = 500
    public var acknowledgement = AcknowledgementMode.implicit

    public init(groupId: String) {
        self.groupId = groupId
        memberId = UUID().uuidString.lowercased()
    }
}

/// A record of a share batch: the record, how often it has been delivered (1 the first time),
/// and its place in the batch's acknowledgements.
public struct ShareRecord {
    public let view: RecordView
    public let deliveryCount: Int16
    public let ackIndex: Int
}

/// The records one poll acquired, per partition and acquired range, over the fetched bytes.
public struct ShareBatch: Sendable {
    public struct Range: Sendable {
        public let acquired: AcquiredRange
        /// The fetched bytes holding the range (whole batches; records outside it are not acquired).
        public let data: [FetchedData]
        /// Index of `acquired.first` in the batch's acknowledgement slots.
        let ackBase: Int

        package init(acquired: AcquiredRange, data: [FetchedData], ackBase: Int) {
            self.acquired = acquired
            self.data = data
            self.ackBase = ackBase
        }
    }
    public struct Part: Sendable {
        public let topicPartition: TopicPartition
        public let ranges: [Range]

        package init(topicPartition: TopicPartition, ranges: [Range]) {
            self.topicPartition = topicPartition
            self.ranges = ranges
        }
    }
    public let id: UInt64
    public let parts: [Part]
    /// Acquired offsets (records and gaps).
    public let count: Int
    /// Acknowledgement slots of acquired offsets that hold no record (control records of
    /// transactions, or records the log no longer has).
    let gaps: [Int]
    /// Slots of acquired offsets whose records did not arrive (a response cut short): they
    /// are released, never settled unseen.
    let unfetched: [Int]
    public var isEmpty: Bool { parts.isEmpty }

    package init(id: UInt64, parts: [Part], count: Int, gaps: [Int], unfetched: [Int] = []) {
        self.id = id
        self.parts = parts
        self.count = count
        self.gaps = gaps
        self.unfetched = unfetched
    }

    /// Every acquired record, partition by partition, in offset order within a partition.
    public func forEach(_ body: (TopicPartition, ShareRecord) throws -> Void) throws {
        for part in parts {
            let tp = part.topicPartition
            for range in part.ranges {
                let first = range.acquired.first, last = range.acquired.last
                let count = range.acquired.deliveryCount
                for data in range.data {
                    try data.forEachRecord(from: first) { r in
                        guard r.offset <= last else { return }
                        try body(tp, ShareRecord(view: r, deliveryCount: count, ackIndex: range.ackBase + Int(r.offset - first)))
                    }
                }
            }
        }
    }

    /// The delivery count of the record at `offset` of `tp` (nil when not acquired in this batch).
    public func deliveryCount(_ tp: TopicPartition, _ offset: Int64) -> Int16? {
        guard let part = parts.first(where: { $0.topicPartition == tp }) else { return nil }
        return part.ranges.first { $0.acquired.first <= offset && offset <= $0.acquired.last }?.acquired.deliveryCount
    }

    /// Acknowledgements for this batch with every record set to `type`, to be changed record
    /// by record with `ShareAcknowledgements.set`. Offsets that hold no record are gaps.
    public func acknowledgements(_ type: AcknowledgeType = .accept) -> ShareAcknowledgements {
        ShareAcknowledgements(batch: self, fill: type)
    }
}

/// How each record of one ShareBatch is settled; a value set up from the batch and changed per
/// record without allocation (one slot per acquired offset).
public struct ShareAcknowledgements: Sendable {
    public let batchId: UInt64
    let parts: [(TopicPartition, [AcquiredRange], Int)]
    var types: [Int8]
    var errors: [Int: String] = [:]

    package init(batch: ShareBatch, fill: AcknowledgeType) {
        batchId = batch.id
        parts = batch.parts.map { p in (p.topicPartition, p.ranges.map(\.acquired), p.ranges.first?.ackBase ?? 0) }
        types = [Int8](repeating: fill.rawValue, count: batch.count)
        for g in batch.gaps { types[g] = AcknowledgeType.gap.rawValue }
        for u in batch.unfetched where fill != .release { types[u] = AcknowledgeType.release.rawValue }
    }

    /// Settles one record; `error` (for rejects) goes into the dead letter's headers.
    public mutating func set(_ record: ShareRecord, _ type: AcknowledgeType, error: String? = nil) {
        types[record.ackIndex] = type.rawValue
        if let error { errors[record.ackIndex] = error }
    }

    /// Settles the record at `offset` of `tp` (a no-op for offsets the batch did not acquire).
    public mutating func set(_ tp: TopicPartition, _ offset: Int64, _ type: AcknowledgeType, error: String? = nil) {
        guard let (_, ranges, base) = parts.first(where: { $0.0 == tp }) else { return }
        var index = base
        for r in ranges {
            if offset >= r.first && offset <= r.last {
                types[index + Int(offset - r.first)] = type.rawValue
                if let error { errors[index + Int(offset - r.first)] = error }
                return
            }
            index += r.count
        }
    }

    /// Leaves one record out of this acknowledgement: it stays acquired by the member until
    /// it is acknowledged later or its lock runs out.
    public mutating func hold(_ record: ShareRecord) {
        types[record.ackIndex] = Self.held
    }

    static let held: Int8 = -1

    /// The batches to send, per partition: runs of one type (held records left out).
    package var batches: [TopicPartition: [AcknowledgementBatch]] {
        var out: [TopicPartition: [AcknowledgementBatch]] = [:]
        for (tp, ranges, base) in parts {
            var list: [AcknowledgementBatch] = []
            var index = base
            for r in ranges {
                var offset = r.first
                while offset <= r.last {
                    defer { offset += 1; index += 1 }
                    guard let t = AcknowledgeType(rawValue: types[index]) else { continue }
                    if let last = list.last, last.last + 1 == offset, last.type == t {
                        list[list.count - 1].last = offset
                    } else {
                        list.append(AcknowledgementBatch(first: offset, last: offset, type: t))
                    }
                }
            }
            if !list.isEmpty { out[tp] = list }
        }
        return out
    }

    var errorsByOffset: [TopicPartition: [Int64: String]] {
        guard !errors.isEmpty else { return [:] }
        var out: [TopicPartition: [Int64: String]] = [:]
        for (tp, ranges, base) in parts {
            var index = base
            for r in ranges {
                for offset in r.first...r.last {
                    if let e = errors[index] { out[tp, default: [:]][offset] = e }
                    index += 1
                }
            }
        }
        return out
    }
}

public final class ShareConsumer: Sendable {
    public let config: ShareConsumerConfig
    public let topics: [TopicName]
    let broker: EmbeddedBroker
    let logger: Logger

    struct State {
        var epoch: Int32 = 0
        var joined = false
        var assignment: [TopicPartition] = []
        var lastHeartbeat = ContinuousClock.now
        var intervalMs: Int32 = 5_000
        var nextBatch: UInt64 = 0
        /// The last batch, until it is acknowledged.
        var outstanding: ShareBatch?
        var closed = false
    }

    private let state = Mutex(State())

    public init(broker: EmbeddedBroker, config: ShareConsumerConfig, topics: [TopicName], logger: Logger = Logger(label: "sluice.share-consumer")) {
        self.broker = broker
        self.config = config
        self.topics = topics
        self.logger = logger
    }

    public var assignment: [TopicPartition] { state.withLock { $0.assignment } }

    /// Joins the group (or heartbeats when one is due) and takes the assignment it gets back.
    private func heartbeatIfDue(force: Bool = false) async throws {
        let (joined, epoch, due) = state.withLock { s in
            (s.joined, s.epoch, force || !s.joined || ContinuousClock.now - s.lastHeartbeat >= .milliseconds(Int64(s.intervalMs)))
        }
        guard due else { return }
        do {
            let (result, interval) = try await broker.shares.heartbeat(groupId: config.groupId, memberId: config.memberId, epoch: joined ? epoch : 0,
                                                                       topics: joined ? nil : topics.map(\.rawValue), clientId: config.clientId, clientHost: "in-process")
            state.withLock { s in
                s.joined = true
                s.epoch = result.memberEpoch
                if let a = result.assignment { s.assignment = a }
                s.intervalMs = interval
                s.lastHeartbeat = .now
            }
        } catch let e as BrokerError where e.code == .unknownMemberId || e.code == .fencedMemberEpoch {
            logger.info("share consumer \(config.memberId) rejoins \(config.groupId): \(e.message)")
            state.withLock { $0.joined = false }
            try await heartbeatIfDue(force: true)
        }
    }

    /// Settles what is outstanding from the last poll (accepted in implicit mode, released in
    /// explicit mode), then acquires records, waiting up to `maxWait` for some.
    /// Acknowledgements sent this way are durable at the state log's next sync; use
    /// `acknowledge` to wait for that.
    public func poll(maxRecords: Int? = nil, maxWait: Duration = .milliseconds(500)) async throws -> ShareBatch {
        let deadline = ContinuousClock.now + maxWait
        var pending = state.withLock { s -> [TopicPartition: [AcknowledgementBatch]] in
            defer { s.outstanding = nil }
            guard let b = s.outstanding else { return [:] }
            return ShareAcknowledgements(batch: b, fill: config.acknowledgement == .implicit ? .accept : .release).batches
        }
        while true {
            try Task.checkCancellation()
            try await heartbeatIfDue()
            let assigned = state.withLock { $0.assignment }
            let (acquired, errors, _) = try await broker.shares.fetch(groupId: config.groupId, memberId: config.memberId, fetch: assigned, maxRecords: maxRecords ?? config.maxRecords, acknowledgements: pending)
            pending = [:]
            for (tp, e) in errors { logger.warning("acknowledgements for \(tp) were refused: \(e.message)") }
            if acquired.contains(where: { !$0.ranges.isEmpty }) {
                let batch = try read(acquired)
                state.withLock { $0.outstanding = batch }
                return batch
            }
            if let e = acquired.first(where: { $0.error != nil })?.error { throw e }
            if ContinuousClock.now >= deadline { return emptyBatch() }
            await broker.waitForShareRecords(config.groupId, assigned, until: min(deadline, .now + .milliseconds(Int64(state.withLock { $0.intervalMs }))))
        }
    }

    private func emptyBatch() -> ShareBatch {
        let id = state.withLock { s -> UInt64 in s.nextBatch += 1; return s.nextBatch }
        return ShareBatch(id: id, parts: [], count: 0, gaps: [])
    }

    private func read(_ acquired: [ShareAcquisition]) throws -> ShareBatch {
        var parts: [ShareBatch.Part] = []
        var gaps: [Int] = []
        var base = 0
        for a in acquired where !a.ranges.isEmpty {
            let handle = try broker.partition(a.topicPartition)
            var ranges: [ShareBatch.Range] = []
            for r in a.ranges {
                var data: [FetchedData] = []
                var from = r.first
                while from <= r.last {
                    let d = try handle.read(from: from, maxBytes: min(1 << 20, max(64 << 10, r.count * 256)), isolation: .readUncommitted)
                    if d.isEmpty || d.nextOffset <= from { break }
                    d.result.forEachBatch { b in
                        let h = b.header
                        guard h.isControl, h.lastOffset >= r.first, h.baseOffset <= r.last else { return }
                        for o in max(h.baseOffset, r.first)...min(h.lastOffset, r.last) { gaps.append(base + Int(o - r.first)) }
                    }
                    data.append(d)
                    from = d.nextOffset
                }
                // Offsets past what the log still has (retention removed them) hold nothing.
                if from <= r.last { for o in from...r.last { gaps.append(base + Int(o - r.first)) } }
                ranges.append(ShareBatch.Range(acquired: r, data: data, ackBase: base))
                base += r.count
            }
            parts.append(ShareBatch.Part(topicPartition: a.topicPartition, ranges: ranges))
        }
        let id = state.withLock { s -> UInt64 in s.nextBatch += 1; return s.nextBatch }
        return ShareBatch(id: id, parts: parts, count: base, gaps: gaps)
    }

    /// Sends `acks` for the batch they were made from and waits until they are durable.
    /// Returns the partitions whose acknowledgements were refused (their records stay as
    /// they were: acquired until the lock expires).
    @discardableResult
    public func acknowledge(_ acks: ShareAcknowledgements) async throws -> [TopicPartition: ShareStateError] {
        state.withLock { s in if s.outstanding?.id == acks.batchId { s.outstanding = nil } }
        let (_, errors, durable) = try await broker.shares.fetch(groupId: config.groupId, memberId: config.memberId, fetch: [], maxRecords: 0,
                                                                 acknowledgements: acks.batches, errors: acks.errorsByOffset)
        try await broker.shares.waitUntilDurable(durable)
        return errors
    }

    /// Settles the outstanding batch as a poll would, releases what else the member holds, and
    /// leaves the group.
    public func close() async {
        let (outstanding, joined, closed) = state.withLock { s in
            defer { s.closed = true; s.outstanding = nil }
            return (s.outstanding, s.joined, s.closed)
        }
        guard !closed, joined else { return }
        if let b = outstanding {
            let acks = ShareAcknowledgements(batch: b, fill: config.acknowledgement == .implicit ? .accept : .release)
            _ = try? await acknowledge(acks)
        }
        await broker.shares.releaseSession(groupId: config.groupId, memberId: config.memberId)
        _ = try? await broker.shares.heartbeat(groupId: config.groupId, memberId: config.memberId, epoch: -1, topics: nil)
    }
}
