// TransactionCoordinator: Kafka's transaction protocol. A transactional id maps to a producer
// id and epoch (a new instance bumps the epoch and fences the old one); a transaction adds
// partitions and consumer-group offsets, then ends with commit or abort markers written into
// every partition it touched, the offsets applied on commit. State lives in the internal
// topic `__transaction_state` (flush always): once PrepareCommit is durable the transaction
// commits, even across a crash, because recovery finishes what was prepared. Open
// transactions of dead producers are aborted after their timeout. An actor: transaction
// control is low-rate coordination.
import Foundation
import Logging
import SluiceLog

public enum TransactionState: String, Sendable, Codable {
    case empty = "Empty"
    case ongoing = "Ongoing"
    case prepareCommit = "PrepareCommit"
    case prepareAbort = "PrepareAbort"
    case completeCommit = "CompleteCommit"
    case completeAbort = "CompleteAbort"
}

struct PendingOffset: Sendable, Codable, Hashable {
    var topic: String
    var partition: Int32
    var offset: Int64
    var metadata: String
}

struct TransactionMetadata: Sendable, Codable {
    var transactionalId: String
    var producerId: Int64
    var epoch: Int16
    var timeoutMs: Int64
    var state: TransactionState
    var partitions: [PendingOffsetPartition] = []
    var groups: [String] = []
    var pendingOffsets: [String: [PendingOffset]] = [:]
    var startedMs: Int64 = 0
    var updatedMs: Int64 = 0
}

struct PendingOffsetPartition: Sendable, Codable, Hashable {
    var topic: String
    var partition: Int32
}

/// What a transactional id currently looks like (for `group describe` and tests).
public struct TransactionDescription: Sendable, Hashable {
    public var transactionalId: String
    public var producerId: Int64
    public var epoch: Int16
    public var state: TransactionState
    public var partitions: [TopicPartition]
}

public actor TransactionCoordinator {
    private let store: InternalTopicStore
    private var transactions: [String: TransactionMetadata] = [:]
    /// Transactional ids whose markers are being written. The actor is reentrant at every
    /// await; a second completion of the same transaction meanwhile would write its markers
    /// twice and then put back the metadata it read first (losing a newer epoch), so
    /// whatever arrives for such an id is told CONCURRENT_TRANSACTIONS and retries.
    private var completing: Set<String> = []
    private var nextProducerId: Int64 = 0
    private var producerIdBlockEnd: Int64 = 0
    private let partitions: @Sendable (TopicPartition) throws -> PartitionHandle
    private let groups: GroupCoordinator
    private let logger: Logger
    static let producerIdBlockKey = Array("__producer_id_block".utf8)
    static let producerIdBlockSize: Int64 = 1000
    public static let maxTimeoutMs: Int64 = 15 * 60_000

    init(topics: TopicManager, groups: GroupCoordinator, partitions: @escaping @Sendable (TopicPartition) throws -> PartitionHandle, logger: Logger) throws {
        store = try InternalTopicStore(topics: topics, name: "__transaction_state", flush: "always", logger: logger)
        self.groups = groups
        self.partitions = partitions
        self.logger = logger
        let decoder = JSONDecoder()
        for (key, value) in try store.load() {
            if key == Self.producerIdBlockKey {
                var r = WireReader(value)
                if let end = try? r.int64() {
                    producerIdBlockEnd = end
                    nextProducerId = end  // never reuse ids of a block that may have been handed out
                }
                continue
            }
            if let meta = try? decoder.decode(TransactionMetadata.self, from: Data(value)) {
                transactions[meta.transactionalId] = meta
                nextProducerId = max(nextProducerId, meta.producerId + 1)
            }
        }
    }

    /// Finishes transactions that were prepared before a crash.
    func recover() async {
        for (id, meta) in transactions where meta.state == .prepareCommit || meta.state == .prepareAbort {
            guard !completing.contains(id) else { continue }
            logger.info("recovery: completing the \(meta.state == .prepareCommit ? "commit" : "abort") of transaction '\(id)'")
            do { try await complete(id) } catch { logger.error("could not complete transaction '\(id)': \(error)") }
        }
    }

    // MARK: Producer ids

    private func allocateProducerId() async throws -> Int64 {
        if nextProducerId >= producerIdBlockEnd {
            let end = max(nextProducerId, producerIdBlockEnd) + Self.producerIdBlockSize
            var w = WireWriter()
            w.int64(end)
            try await store.write([(Self.producerIdBlockKey, w.bytes)])
            producerIdBlockEnd = end
        }
        defer { nextProducerId += 1 }
        return nextProducerId
    }

    /// A producer id and epoch. Without a transactional id: a fresh id for an idempotent
    /// producer. With one: the id's producer with its epoch bumped, after aborting (or
    /// finishing) whatever the previous instance left open — which fences that instance.
    public func initProducerId(transactionalId: String?, timeoutMs: Int64 = 60_000) async throws -> (producerId: Int64, epoch: Int16) {
        guard let id = transactionalId else { return (try await allocateProducerId(), 0) }
        guard timeoutMs > 0 && timeoutMs <= Self.maxTimeoutMs else {
            throw BrokerError(.invalidTransactionTimeout, "transaction timeout \(timeoutMs) ms must be between 1 and \(Self.maxTimeoutMs)")
        }
        if var meta = transactions[id] {
            if meta.state == .prepareCommit || meta.state == .prepareAbort {
                guard !completing.contains(id) else {
                    throw BrokerError(.concurrentTransactions, "transaction '\(id)' is still completing; retry")
                }
                try await complete(id)
                meta = transactions[id]!
            }
            if meta.epoch == Int16.max - 1 {
                meta.producerId = try await allocateProducerId()
                meta.epoch = 0
            } else {
                meta.epoch += 1
            }
            meta.timeoutMs = timeoutMs
            let wasOpen = meta.state == .ongoing
            transactions[id] = meta
            if wasOpen {
                logger.info("transaction '\(id)': a new instance aborts the open transaction of the old one")
                try await end(id, commit: false)
            } else {
                transactions[id]!.state = .empty
                transactions[id]!.updatedMs = currentTimeMillis()
                try await save(id)
            }
            let m = transactions[id]!
            return (m.producerId, m.epoch)
        }
        let pid = try await allocateProducerId()
        transactions[id] = TransactionMetadata(transactionalId: id, producerId: pid, epoch: 0, timeoutMs: timeoutMs, state: .empty, updatedMs: currentTimeMillis())
        try await save(id)
        return (pid, 0)
    }

    // MARK: Transaction steps

    private func fenced(_ id: String, _ producerId: Int64, _ epoch: Int16) throws -> TransactionMetadata {
        guard let meta = transactions[id] else {
            throw BrokerError(.transactionalIdNotFound, "transactional id '\(id)' is unknown; call initTransactions first")
        }
        guard meta.producerId == producerId else {
            throw BrokerError(.producerFenced, "transactional id '\(id)' belongs to producer \(meta.producerId), not \(producerId)")
        }
        guard epoch >= meta.epoch else {
            throw BrokerError(.producerFenced, "producer \(producerId) with epoch \(epoch) was fenced by a newer instance (epoch \(meta.epoch)) of '\(id)'")
        }
        guard epoch == meta.epoch else {
            throw BrokerError(.invalidProducerEpoch, "producer \(producerId) used epoch \(epoch), the coordinator knows \(meta.epoch)")
        }
        if meta.state == .prepareCommit || meta.state == .prepareAbort {
            throw BrokerError(.concurrentTransactions, "transaction '\(id)' is still completing; retry")
        }
        return meta
    }

    public func addPartitions(transactionalId id: String, producerId: Int64, epoch: Int16, partitions added: [TopicPartition]) async throws {
        var meta = try fenced(id, producerId, epoch)
        let now = currentTimeMillis()
        if meta.state != .ongoing {
            meta.state = .ongoing
            meta.startedMs = now
            meta.partitions = []
            meta.groups = []
            meta.pendingOffsets = [:]
        }
        var set = Set(meta.partitions)
        let before = set.count
        for tp in added { set.insert(PendingOffsetPartition(topic: tp.topic.rawValue, partition: tp.partition)) }
        meta.partitions = set.sorted { ($0.topic, $0.partition) < ($1.topic, $1.partition) }
        meta.updatedMs = now
        let changed = set.count != before || transactions[id]?.state != .ongoing
        transactions[id] = meta
        if changed { try await save(id) }
    }

    public func addOffsets(transactionalId id: String, producerId: Int64, epoch: Int16, groupId: String) async throws {
        var meta = try fenced(id, producerId, epoch)
        if meta.state != .ongoing {
            meta.state = .ongoing
            meta.startedMs = currentTimeMillis()
            meta.partitions = []
            meta.pendingOffsets = [:]
            meta.groups = []
        }
        if !meta.groups.contains(groupId) { meta.groups.append(groupId) }
        transactions[id] = meta
        try await save(id)
    }

    /// Offsets that become the group's committed offsets if (and when) the transaction commits.
    public func txnOffsetCommit(transactionalId id: String, producerId: Int64, epoch: Int16, groupId: String, offsets: [TopicPartition: CommittedOffset]) throws {
        var meta = try fenced(id, producerId, epoch)
        guard meta.state == .ongoing, meta.groups.contains(groupId) else {
            throw BrokerError(.invalidTransactionState, "transaction '\(id)' must add group '\(groupId)' (sendOffsetsToTransaction) before committing its offsets")
        }
        var pending = meta.pendingOffsets[groupId] ?? []
        for (tp, c) in offsets {
            pending.removeAll { $0.topic == tp.topic.rawValue && $0.partition == tp.partition }
            pending.append(PendingOffset(topic: tp.topic.rawValue, partition: tp.partition, offset: c.offset, metadata: c.metadata))
        }
        meta.pendingOffsets[groupId] = pending
        transactions[id] = meta
    }

    /// Partitions of `groupId` whose committed offset an unfinished transaction will change
    /// (OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT for these).
    public func pendingOffsetPartitions(groupId: String) -> Set<TopicPartition> {
        var out: Set<TopicPartition> = []
        for meta in transactions.values where meta.state == .ongoing || meta.state == .prepareCommit {
            for o in meta.pendingOffsets[groupId] ?? [] {
                if let t = try? TopicName(o.topic) { out.insert(TopicPartition(t, o.partition)) }
            }
        }
        return out
    }

    /// Commits or aborts. Durable once this returns; a retry of a finished end is a no-op.
    public func endTransaction(transactionalId id: String, producerId: Int64, epoch: Int16, commit: Bool) async throws {
        if let meta = transactions[id], meta.producerId == producerId, meta.epoch == epoch {
            if (commit && meta.state == .completeCommit) || (!commit && meta.state == .completeAbort) || meta.state == .empty { return }
            if (commit && meta.state == .completeAbort) || (!commit && meta.state == .completeCommit) {
                throw BrokerError(.invalidTransactionState, "transaction '\(id)' already ended with \(meta.state.rawValue)")
            }
        }
        _ = try fenced(id, producerId, epoch)
        try await end(id, commit: commit)
    }

    private func end(_ id: String, commit: Bool) async throws {
        completing.insert(id)
        defer { completing.remove(id) }
        transactions[id]!.state = commit ? .prepareCommit : .prepareAbort
        transactions[id]!.updatedMs = currentTimeMillis()
        try await save(id)  // the decision is durable from here on
        try await complete(id)
    }

    /// Writes the markers and applies the offsets of a prepared transaction.
    private func complete(_ id: String) async throws {
        completing.insert(id)
        defer { completing.remove(id) }
        let meta = transactions[id]!
        let commit = meta.state == .prepareCommit
        for p in meta.partitions {
            let tp = TopicPartition(try TopicName(p.topic), p.partition)
            try partitions(tp).writeMarker(commit ? .commit : .abort, producerId: meta.producerId, producerEpoch: meta.epoch)
        }
        if commit {
            for (group, pending) in meta.pendingOffsets {
                var offsets: [TopicPartition: CommittedOffset] = [:]
                for o in pending { offsets[TopicPartition(try TopicName(o.topic), o.partition)] = CommittedOffset(offset: o.offset, metadata: o.metadata) }
                try await groups.commitTransactional(groupId: group, offsets: offsets)
            }
        }
        var done = meta
        done.state = commit ? .completeCommit : .completeAbort
        done.partitions = []
        done.groups = []
        done.pendingOffsets = [:]
        done.updatedMs = currentTimeMillis()
        transactions[id] = done
        try await save(id)
    }

    /// Aborts transactions open longer than their timeout, bumping the epoch so the producer
    /// that left them open is fenced.
    func abortTimedOut() async {
        let now = currentTimeMillis()
        let expired = transactions.filter { $0.value.state == .ongoing && now - $0.value.startedMs > $0.value.timeoutMs }.keys
        for id in expired {
            // Each abort awaits: the next one may have been ended or fenced meanwhile.
            guard let meta = transactions[id], meta.state == .ongoing, now - meta.startedMs > meta.timeoutMs, !completing.contains(id) else { continue }
            logger.warning("transaction '\(id)' of producer \(meta.producerId) timed out after \(meta.timeoutMs) ms; aborting it")
            transactions[id]!.epoch = meta.epoch == Int16.max - 1 ? meta.epoch : meta.epoch + 1
            do { try await end(id, commit: false) } catch { logger.error("could not abort transaction '\(id)': \(error)") }
        }
    }

    public func describe(_ id: String) -> TransactionDescription? {
        guard let m = transactions[id] else { return nil }
        return TransactionDescription(transactionalId: id, producerId: m.producerId, epoch: m.epoch, state: m.state,
                                      partitions: m.partitions.compactMap { p in (try? TopicName(p.topic)).map { TopicPartition($0, p.partition) } })
    }

    public func transactionalIds() -> [String] { transactions.keys.sorted() }

    private func save(_ id: String) async throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let value = Array(try encoder.encode(transactions[id]!))
        try await store.write([(Array(id.utf8), value)])
    }
}
