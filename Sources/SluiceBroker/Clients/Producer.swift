// Producer: the in-process client that writes to the embedded broker. Partitions records
// (explicit partition, murmur2 of the key, or sticky/round-robin), batches them (linger and
// batch size), and — idempotent by default — stamps producer id, epoch and per-partition
// sequence numbers so the broker stores each batch once. With a transactional id it runs
// Kafka-style transactions. Thread-safe.
import SluiceLog
import Synchronization

public struct ProducerRecord: Sendable {
    public var topic: TopicName
    public var partition: PartitionID?
    public var key: [UInt8]?
    public var value: [UInt8]?
    public var headers: [RecordHeader]
    public var timestamp: Int64?

    public init(topic: TopicName, partition: PartitionID? = nil, key: [UInt8]? = nil, value: [UInt8]?, headers: [RecordHeader] = [], timestamp: Int64? = nil) {
        self.topic = topic
        self.partition = partition
        self.key = key
        self.value = value
        self.headers = headers
        self.timestamp = timestamp
    }
}

public struct RecordMetadata: Sendable, Hashable {
    public var topicPartition: TopicPartition
    public var offset: Int64
}

public struct ProducerConfig: Sendable {
    /// Producer id, epoch and sequence numbers: retried batches are stored once.
    public var idempotent = true
    /// Enables transactions (implies idempotence); a new producer with the same id fences this one.
    public var transactionalId: String?
    public var transactionTimeoutMs: Int64 = 60_000
    /// How long `send` waits for more records to fill a batch.
    public var lingerMs: Int64 = 0
    /// A batch is appended once it holds this many bytes.
    public var batchBytes = 256 * 1024
    public var keylessStrategy: KeylessPartitioner.Strategy = .sticky

    public init(idempotent: Bool = true, transactionalId: String? = nil, lingerMs: Int64 = 0) {
        self.idempotent = idempotent || transactionalId != nil
        self.transactionalId = transactionalId
        self.lingerMs = lingerMs
    }
}

public final class Producer: Sendable {
    public let config: ProducerConfig
    let broker: EmbeddedBroker
    private let keyless: KeylessPartitioner
    private let state: Mutex<State>
    /// Appends to one partition are serialized so its sequence numbers stay in order; appends
    /// to different partitions (pipeline lanes sharing a sink's producer) run in parallel,
    /// each sealing (checksumming) its own batch. A partition always maps to the same stripe.
    private let appendLocks = (0..<Producer.appendStripes).map { _ in AppendStripe() }
    private static let appendStripes = 16

    private final class AppendStripe: Sendable {
        let lock = Mutex(())
    }

    struct Pending {
        var builder = RecordBatchBuilder(capacity: 16 * 1024)
        var waiters: [(index: Int32, promise: Promise<RecordMetadata>)] = []
        var generation: UInt64 = 0
    }

    struct State {
        var producerId: Int64 = -1
        var epoch: Int16 = -1
        var sequences: [TopicPartition: Int32] = [:]
        var pending: [TopicPartition: Pending] = [:]
        var inTransaction = false
        var transactionPartitions: Set<TopicPartition> = []
        var fenced: BrokerError?
    }

    /// Creates a producer; idempotent and transactional producers get their producer id (and,
    /// for transactions, fence older instances) here.
    public init(broker: EmbeddedBroker, config: ProducerConfig = ProducerConfig()) async throws {
        self.broker = broker
        self.config = config
        keyless = KeylessPartitioner(strategy: config.keylessStrategy)
        state = Mutex(State())
        if config.idempotent || config.transactionalId != nil {
            let (pid, epoch) = try await broker.transactions.initProducerId(transactionalId: config.transactionalId, timeoutMs: config.transactionTimeoutMs)
            state.withLock { s in
                s.producerId = pid
                s.epoch = epoch
            }
        }
    }

    public var producerId: Int64 { state.withLock { $0.producerId } }
    public var epoch: Int16 { state.withLock { $0.epoch } }
    /// True once a newer producer with the same transactional id (or epoch) fenced this one.
    public var isFenced: Bool { state.withLock { $0.fenced != nil } }

    // MARK: Partitioning

    func partition(for record: ProducerRecord, count known: Int32? = nil) throws -> TopicPartition {
        let count = try known ?? broker.partitionCount(record.topic)
        if let p = record.partition {
            guard p >= 0 && p < count else {
                throw BrokerError(.invalidPartition, "topic '\(record.topic)' has partitions 0 to \(count - 1); there is no partition \(p)")
            }
            return TopicPartition(record.topic, p)
        }
        if let key = record.key { return TopicPartition(record.topic, Murmur2.partition(forKey: key, partitions: count)) }
        return TopicPartition(record.topic, keyless.partition(partitions: count))
    }

    // MARK: Send

    /// Sends one record and returns where it was stored. With `lingerMs` > 0, records sent
    /// meanwhile to the same partition share a batch.
    public func send(_ record: ProducerRecord) async throws -> RecordMetadata {
        let tp = try partition(for: record)
        try await addToTransactionIfNeeded([tp])
        let ts = record.timestamp ?? currentTimeMillis()
        if config.lingerMs <= 0 {
            var builder = RecordBatchBuilder(capacity: (record.value?.count ?? 0) + (record.key?.count ?? 0) + 96)
            builder.append(key: record.key, value: record.value, timestamp: ts, headers: record.headers)
            let result = try appendBatch(&builder, to: tp)
            return RecordMetadata(topicPartition: tp, offset: result.baseOffset)
        }
        // Linger: the first record of a batch waits, then appends whatever joined it.
        let promise = Promise<RecordMetadata>()
        let (starter, generation, full) = state.withLock { s -> (Bool, UInt64, Bool) in
            var p = s.pending[tp] ?? Pending()
            let starter = p.builder.isEmpty
            p.waiters.append((p.builder.recordCount, promise))
            p.builder.append(key: record.key, value: record.value, timestamp: ts, headers: record.headers)
            let full = p.builder.byteCount >= config.batchBytes
            s.pending[tp] = p
            return (starter, p.generation, full)
        }
        if full {
            flushPending(tp)
        } else if starter {
            try? await Task.sleep(for: .milliseconds(config.lingerMs))
            flushPending(tp, onlyGeneration: generation)
        }
        return try await promise.value()
    }

    /// Sends many records: one batch per partition, appended at once; results in input order.
    public func send(batch records: [ProducerRecord]) async throws -> [RecordMetadata] {
        var groups: [TopicPartition: [Int]] = [:]
        var order: [TopicPartition] = []
        var counts: [TopicName: Int32] = [:]
        for (i, r) in records.enumerated() {
            let count: Int32
            if let c = counts[r.topic] { count = c } else { count = try broker.partitionCount(r.topic); counts[r.topic] = count }
            let tp = try partition(for: r, count: count)
            if groups[tp] == nil { order.append(tp) }
            groups[tp, default: []].append(i)
            if r.partition == nil && r.key == nil { continue }
        }
        if records.contains(where: { $0.partition == nil && $0.key == nil }) {
            keyless.batchCompleted(partitions: (try? broker.partitionCount(records[0].topic)) ?? 1)
        }
        try await addToTransactionIfNeeded(order)
        var out = [RecordMetadata?](repeating: nil, count: records.count)
        let now = currentTimeMillis()
        for tp in order {
            let indices = groups[tp]!
            var builder = RecordBatchBuilder(capacity: indices.reduce(96) { $0 + (records[$1].value?.count ?? 0) + (records[$1].key?.count ?? 0) + 24 })
            for i in indices {
                let r = records[i]
                builder.append(key: r.key, value: r.value, timestamp: r.timestamp ?? now, headers: r.headers)
            }
            let result = try appendBatch(&builder, to: tp)
            for (n, i) in indices.enumerated() { out[i] = RecordMetadata(topicPartition: tp, offset: result.baseOffset + Int64(n)) }
        }
        return out.map { $0! }
    }

    /// Appends a batch the caller built (the fastest path: no per-record work here).
    @discardableResult
    public func send(_ builder: inout RecordBatchBuilder, to tp: TopicPartition) async throws -> AppendResult {
        try await addToTransactionIfNeeded([tp])
        return try appendBatch(&builder, to: tp)
    }

    /// Stamps producer fields and appends; advances the partition's sequence only on success.
    private func appendBatch(_ builder: inout RecordBatchBuilder, to tp: TopicPartition) throws -> AppendResult {
        let handle = try broker.partition(tp)
        let stripe = appendLocks[(tp.topic.hashValue &+ Int(tp.partition)) & (Producer.appendStripes - 1)]
        return try stripe.lock.withLock { _ in
            let (pid, epoch, sequence, inTxn, fenced) = state.withLock { s in
                (s.producerId, s.epoch, s.sequences[tp] ?? 0, s.inTransaction, s.fenced)
            }
            if let fenced { throw fenced }
            if pid >= 0 {
                builder.producerId = pid
                builder.producerEpoch = epoch
                builder.baseSequence = sequence
            }
            if inTxn { builder.attributes.insert(.transactional) }
            builder.seal()
            do {
                let result = try handle.append(&builder)
                if pid >= 0 {
                    state.withLock { s in
                        let (next, overflow) = sequence.addingReportingOverflow(builder.recordCount)
                        s.sequences[tp] = overflow ? next & Int32.max : next
                    }
                }
                return result
            } catch let e as BrokerError where e.code == .producerFenced || e.code == .invalidProducerEpoch {
                state.withLock { $0.fenced = e }
                throw e
            }
        }
    }

    /// Appends the lingering batch of `tp` and resumes everyone waiting on it.
    func flushPending(_ tp: TopicPartition, onlyGeneration: UInt64? = nil) {
        guard var p = state.withLock({ s -> Pending? in
            guard let p = s.pending[tp], !p.builder.isEmpty else { return nil }
            if let g = onlyGeneration, g != p.generation { return nil }
            var fresh = Pending()
            fresh.generation = p.generation &+ 1
            s.pending[tp] = fresh
            return p
        }) else { return }
        do {
            let result = try appendBatch(&p.builder, to: tp)
            for w in p.waiters { w.promise.complete(.success(RecordMetadata(topicPartition: tp, offset: result.baseOffset + Int64(w.index)))) }
        } catch {
            for w in p.waiters { w.promise.complete(.failure(error)) }
        }
    }

    /// Appends every lingering batch now.
    public func flush() async throws {
        let tps = state.withLock { Array($0.pending.keys) }
        for tp in tps { flushPending(tp) }
    }

    // MARK: Transactions

    private func requireTransactional() throws -> String {
        guard let id = config.transactionalId else {
            throw BrokerError(.invalidTransactionState, "this producer has no transactional id")
        }
        return id
    }

    public func beginTransaction() throws {
        _ = try requireTransactional()
        try state.withLock { s in
            if let f = s.fenced { throw f }
            guard !s.inTransaction else { throw BrokerError(.invalidTransactionState, "a transaction is already open") }
            s.inTransaction = true
            s.transactionPartitions = []
        }
    }

    private func addToTransactionIfNeeded(_ tps: [TopicPartition]) async throws {
        guard let id = config.transactionalId else { return }
        let (new, pid, epoch) = try state.withLock { s -> ([TopicPartition], Int64, Int16) in
            guard s.inTransaction else { throw BrokerError(.invalidTransactionState, "transactional producer '\(id)' must begin a transaction before sending") }
            return (tps.filter { !s.transactionPartitions.contains($0) }, s.producerId, s.epoch)
        }
        guard !new.isEmpty else { return }
        do {
            try await broker.transactions.addPartitions(transactionalId: id, producerId: pid, epoch: epoch, partitions: new)
        } catch let e as BrokerError where e.code == .producerFenced {
            state.withLock { $0.fenced = e }
            throw e
        }
        state.withLock { s in s.transactionPartitions.formUnion(new) }
    }

    /// Adds a consumer group's offsets to the open transaction: they become the group's
    /// committed offsets exactly when the transaction commits.
    public func sendOffsetsToTransaction(_ offsets: [TopicPartition: Int64], groupId: String) async throws {
        let id = try requireTransactional()
        let (pid, epoch) = state.withLock { ($0.producerId, $0.epoch) }
        do {
            try await broker.transactions.addOffsets(transactionalId: id, producerId: pid, epoch: epoch, groupId: groupId)
            try await broker.transactions.txnOffsetCommit(transactionalId: id, producerId: pid, epoch: epoch, groupId: groupId, offsets: offsets.mapValues { CommittedOffset(offset: $0) })
        } catch let e as BrokerError where e.code == .producerFenced {
            state.withLock { $0.fenced = e }
            throw e
        }
    }

    public func commitTransaction() async throws { try await endTransaction(commit: true) }
    public func abortTransaction() async throws { try await endTransaction(commit: false) }

    private func endTransaction(commit: Bool) async throws {
        let id = try requireTransactional()
        if commit { try await flush() }
        let (pid, epoch, open) = state.withLock { ($0.producerId, $0.epoch, $0.inTransaction) }
        guard open else { throw BrokerError(.invalidTransactionState, "no transaction is open") }
        defer {
            state.withLock { s in
                s.inTransaction = false
                s.transactionPartitions = []
            }
        }
        do {
            try await broker.transactions.endTransaction(transactionalId: id, producerId: pid, epoch: epoch, commit: commit)
        } catch let e as BrokerError where e.code == .producerFenced {
            state.withLock { $0.fenced = e }
            throw e
        }
    }
}

/// A value that arrives later, awaited by one task.
final class Promise<Value: Sendable>: Sendable {
    private let state = Mutex<(result: Result<Value, any Error>?, waiter: CheckedContinuation<Value, any Error>?)>((nil, nil))

    func complete(_ result: Result<Value, any Error>) {
        let waiter = state.withLock { s -> CheckedContinuation<Value, any Error>? in
            guard s.result == nil else { return nil }
            s.result = result
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume(with: result)
    }

    func value() async throws -> Value {
        try await withCheckedThrowingContinuation { c in
            let ready = state.withLock { s -> Result<Value, any Error>? in
                if let r = s.result { return r }
                s.waiter = c
                return nil
            }
            if let ready { c.resume(with: ready) }
        }
    }
}
