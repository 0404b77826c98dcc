// The lane drivers, one per guarantee. Each runs one topic source as a consumer-group member;
// every partition it is assigned is a lane whose polls go through the graph as batches over
// the fetched bytes, in offset order, while lanes run concurrently. Rebalances need no extra
// care: batches are processed and committed between polls, so a revoked lane has nothing in
// flight.
import Logging
import SluiceBroker
import SluiceLog
import Synchronization

/// One topic source of a running pipeline, as the runner hands it to its broker client.
public struct TopicSourceRun: Sendable {
    package let id: String
    package let settings: TopicSourceSettings
    package let graph: Graph
    package let options: RunOptions
    package let logger: Logger
    package let pipelineName: String
    package let guarantee: Guarantee

    /// The transactional id of a lane under exactly-once.
    package func transactionalId(topic: String, partition: Int32) -> String {
        "\(pipelineName)/\(settings.group)/\(topic)/\(partition)"
    }

    /// The consumer of the source. A poll is the unit of commit: after a crash at most the
    /// last two polls (the one in flight and the one whose commit was pending) are processed
    /// again; large polls keep the group-commit wait (the sinks' flush) from capping throughput.
    func consumerConfig() -> ConsumerConfig {
        var config = ConsumerConfig(groupId: settings.group)
        config.clientId = "\(pipelineName).\(id)"
        config.autoOffsetReset = settings.start == .latest ? .latest : .earliest
        config.isolation = settings.isolation == .readCommitted ? .readCommitted : .readUncommitted
        config.heartbeatIntervalMs = 500
        config.maxPartitionFetchBytes = max(1024, settings.fetchBytes)
        config.maxPollBytes = max(1024, settings.fetchBytes) * 4
        return config
    }

    /// One lane's share of a poll, in offset order, in batches of at most `batch_records`.
    func process(_ part: ConsumerRecords.Part, context: LaneContext) async throws {
        for batch in try FetchedBatches.make(part, maxRecords: settings.maxBatchRecords) {
            try await processFiltered(batch, context: context)
        }
    }

    /// One lane's records, already in batches, through the graph in order.
    package func process(_ batches: [RecordBatch], context: LaneContext) async throws {
        for batch in batches { try await processFiltered(batch, context: context) }
    }

    /// A batch through the graph, less the records whose key does not match `keyPattern`.
    private func processFiltered(_ batch: RecordBatch, context: LaneContext) async throws {
        guard let pattern = settings.keyPattern else { return try await graph.process(batch, from: id, context: context) }
        var kept = batch
        kept.slots.removeAll { slot in !batch.withBytes(slot.key) { key in key.map { Glob.matches(pattern, $0) } ?? false } }
        if !kept.isEmpty { try await graph.process(kept, from: id, context: context) }
    }

    func caughtUp(_ consumer: Consumer, broker: EmbeddedBroker) async throws -> Bool {
        let isolation = settings.isolation
        let assigned = consumer.assignment
        guard !assigned.isEmpty else { return false }
        for tp in assigned {
            let h = try broker.partition(tp)
            let end = isolation == .readCommitted ? h.lastStableOffset : h.highWatermark
            if try await consumer.position(tp) < end { return false }
        }
        return true
    }
}

extension SourceLane {
    init(_ tp: TopicPartition) { self.init(topic: tp.topic.rawValue, partition: tp.partition) }
}

/// At-least-once: a poll's offsets are committed only after every sink downstream flushed
/// what it accepted; that flush-and-commit overlaps the processing of the next poll.
struct AtLeastOnceDriver: Sendable {
    let source: TopicSourceRun
    let broker: EmbeddedBroker
    var settings: TopicSourceSettings { source.settings }

    func run() async throws {
        let topic = try TopicName(settings.topic)
        let config = source.consumerConfig()
        let graph = source.graph, logger = source.logger, options = source.options
        // Commits (flush every sink, then commit the offsets) run while the next polls are
        // processed; a revoke waits for them.
        let inFlight = Committer()
        // Records a buffering transform holds for a lane that moves away are dropped here;
        // their offsets were never committed, so the new owner processes them.
        let moved: @Sendable ([TopicPartition]) async -> Void = { parts in
            await inFlight.settle()
            graph.discard(Set(parts.map { SourceLane(topic: $0.topic.rawValue, partition: $0.partition) }))
        }
        let listener = RebalanceListener(revoked: moved, lost: moved)
        let consumer = Consumer(broker: broker, config: config, listener: listener, logger: logger)
        try consumer.subscribe([topic])
        let commit: @Sendable ([TopicPartition: Int64]) async throws -> Void = { offsets in
            // Offsets are committed only once every sink made what it accepted durable.
            try await graph.flushSinks()
            do {
                try await consumer.commitSync(offsets)
            } catch let e as BrokerError where [.rebalanceInProgress, .illegalGeneration, .unknownMemberId, .fencedInstanceId].contains(e.code) {
                // The partitions moved: their new owner re-reads from the last commit (at-least-once).
                logger.info("commit skipped after a rebalance: \(e.message)")
            }
        }
        // Next offset processed per lane, and what was last handed to a commit.
        var processed: [TopicPartition: Int64] = [:]
        var committed: [TopicPartition: Int64] = [:]
        let buffering = !graph.buffering.isEmpty
        do {
            while !Task.isCancelled {
                // Draining: a short wait notices the end sooner.
                let records = try await consumer.poll(maxWait: .milliseconds(options.drain ? 10 : 200))
                if records.isEmpty && !buffering {
                    try await inFlight.wait()
                    if options.drain, try await source.caughtUp(consumer, broker: broker) { break }
                    continue
                }
                let done = try await withThrowingTaskGroup(of: (TopicPartition, Int64).self) { group in
                    for part in records.parts {
                        group.addTask {
                            try await source.process(part, context: LaneContext(lane: SourceLane(part.data.topicPartition)))
                            return (part.data.topicPartition, part.data.nextOffset)
                        }
                    }
                    return try await group.reduce(into: [TopicPartition: Int64]()) { $0[$1.0] = $1.1 }
                }
                var commits = done
                var finished = false
                if buffering {
                    // Held records keep their lane's commit below them.
                    if records.isEmpty && options.drain { finished = try await source.caughtUp(consumer, broker: broker) }
                    try await graph.release(force: finished)
                    let owned = Set(consumer.assignment)
                    processed = processed.filter { owned.contains($0.key) }.merging(done) { _, new in new }
                    let held = graph.heldOffsets()
                    commits = [:]
                    for (tp, next) in processed {
                        let upTo = min(next, held[SourceLane(topic: tp.topic.rawValue, partition: tp.partition)] ?? .max)
                        if committed[tp] != upTo { commits[tp] = upTo }
                    }
                    committed.merge(commits) { _, new in new }
                    if commits.isEmpty {
                        try await inFlight.wait()
                        if finished { break }
                        continue
                    }
                }
                try await inFlight.submit(commits, commit: commit)
                if finished { break }
            }
            try await inFlight.wait()
        } catch {
            await inFlight.settle()
            await consumer.close()
            throw error
        }
        await consumer.close()
    }
}

/// Exactly-once: each lane has a transactional producer (id `<pipeline>/<group>/<topic>/
/// <partition>`, created when the lane is assigned, which fences any older owner and aborts
/// its open transaction). A lane's share of a poll is one transaction: its topic outputs and
/// its next source offset; exactly-once sinks outside the broker (SQLite) commit the lane's
/// output with its offset just before. A lane resumes at the lowest offset any sink still
/// needs, and each sink skips what it already holds.
struct ExactlyOnceDriver: Sendable {
    let source: TopicSourceRun
    let broker: EmbeddedBroker
    var settings: TopicSourceSettings { source.settings }

    func run() async throws {
        let topic = try TopicName(settings.topic)
        let config = source.consumerConfig()
        let logger = source.logger, options = source.options
        let lanes = LaneTable()
        let consumerBox = Mutex<Consumer?>(nil)
        let prepare: @Sendable ([TopicPartition]) async -> Void = { parts in
            guard let consumer = consumerBox.withLock({ $0 }) else { return }
            for tp in parts {
                do { try await self.prepareLane(tp, lanes: lanes, consumer: consumer) } catch {
                    logger.error("lane \(tp): \(error); retried at its first records")
                }
            }
        }
        let listener = RebalanceListener(assigned: prepare, revoked: { lanes.remove($0) }, lost: { lanes.remove($0) })
        let consumer = Consumer(broker: broker, config: config, listener: listener, logger: logger)
        consumerBox.withLock { $0 = consumer }
        try consumer.subscribe([topic])
        do {
            while !Task.isCancelled {
                let records = try await consumer.poll(maxWait: .milliseconds(options.drain ? 10 : 200))
                if records.isEmpty {
                    if options.drain, try await source.caughtUp(consumer, broker: broker) { break }
                    continue
                }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for part in records.parts {
                        group.addTask {
                            try await self.runLane(part, lanes: lanes, consumer: consumer)
                        }
                    }
                    try await group.waitForAll()
                }
            }
        } catch {
            await consumer.close()
            throw error
        }
        await consumer.close()
    }

    /// Creates the lane's transactional producer and moves the consumer to the lowest offset
    /// a sink still needs. Returns false when the consumer had to move (records already
    /// fetched for the lane are not the ones to process).
    @discardableResult
    private func prepareLane(_ tp: TopicPartition, lanes: LaneTable, consumer: Consumer, fetchedFrom: Int64? = nil) async throws -> Bool {
        let group = settings.group, graph = source.graph
        let lane = SourceLane(topic: tp.topic.rawValue, partition: tp.partition)
        let transactionalId = source.transactionalId(topic: tp.topic.rawValue, partition: tp.partition)
        let producer = try await Producer(broker: broker, config: ProducerConfig(transactionalId: transactionalId))
        // Read after the fence: an older owner can no longer commit.
        var committed = await broker.groups.committedOffsets(groupId: group)[tp]?.offset
        // Never committed: the transactional effects start where the consumer starts (the log
        // start for `start: earliest`), below anything an external sink stored.
        if committed == nil && graph.hasTransactionalEffects && consumer.config.autoOffsetReset == .earliest {
            committed = try broker.partition(tp).logStartOffset
        }
        var start: Int64? = graph.hasTransactionalEffects || graph.exactlyOnceSinks.isEmpty ? committed : nil
        for sink in graph.exactlyOnceSinks {
            if let applied = try await sink.appliedOffset(lane) ?? committed { start = min(start ?? applied, applied) }
        }
        lanes.set(tp, LaneTable.Lane(producer: producer, committedBelow: committed ?? -1))
        if let start, start != (fetchedFrom ?? committed) {
            consumer.seek(tp, to: start)
            return false
        }
        return true
    }

    private func runLane(_ part: ConsumerRecords.Part, lanes: LaneTable, consumer: Consumer) async throws {
        let graph = source.graph, logger = source.logger
        let tp = part.data.topicPartition
        let lane = SourceLane(topic: tp.topic.rawValue, partition: tp.partition)
        let next = part.data.nextOffset
        if lanes.get(tp) == nil {
            guard try await prepareLane(tp, lanes: lanes, consumer: consumer, fetchedFrom: part.from) else { return }
        }
        guard let state = lanes.get(tp) else { return }
        let producer = state.producer
        let external = graph.exactlyOnceSinks
        do {
            try producer.beginTransaction()
            let transaction = LaneTransaction(lane: lane, producer: ProducerOutput(producer: producer, broker: broker), committedBelow: state.committedBelow)
            try await source.process(part, context: LaneContext(lane: lane, transaction: transaction))
            for sink in external { try await sink.commit(lane, next: next) }
            try await producer.sendOffsetsToTransaction([tp: next], groupId: settings.group)
            try await producer.commitTransaction()
        } catch {
            try? await producer.abortTransaction()
            for sink in external { await sink.abort(lane) }
            if producer.isFenced {
                // Another owner took the lane over; it resumes from the last commit.
                logger.info("lane \(tp) was fenced by a newer owner; dropping it")
                lanes.remove([tp])
                consumer.seek(tp, to: part.from)
                return
            }
            throw error
        }
    }
}

/// The flush-and-commit of a topic source's processed offsets, off the lane's path. Offsets
/// handed in while a commit runs are merged and committed together by the next one, so a
/// lane never waits for a group commit (a sink's or the offsets topic's, up to the flush
/// interval each) before it processes its next poll. Every commit first flushes every sink:
/// the offsets it commits belong to polls whose records the sinks had already accepted.
final class Committer: Sendable {
    typealias Commit = @Sendable ([TopicPartition: Int64]) async throws -> Void
    private struct State {
        var pending: [TopicPartition: Int64] = [:]
        /// Polls merged into `pending`.
        var pendingPolls = 0
        var running: Task<Void, Never>?
        var failure: (any Error)?
    }
    private let state = Mutex(State())

    /// Polls a lane may run ahead of the commit in progress before it waits: what bounds the
    /// records processed again after a crash.
    static let maxPendingPolls = 64

    /// Queues one poll's `offsets` for `commit` (which flushes the sinks and commits the
    /// offsets it is given; later offsets of a partition replace earlier ones). Returns at
    /// once unless `maxPendingPolls` polls already wait; throws the failure of an earlier
    /// commit.
    func submit(_ offsets: [TopicPartition: Int64], commit: @escaping Commit) async throws {
        while let running = state.withLock({ $0.pendingPolls >= Self.maxPendingPolls ? $0.running : nil }) {
            await running.value
        }
        try state.withLock { s in
            if let failure = s.failure { throw failure }
            s.pending.merge(offsets) { _, new in new }
            s.pendingPolls += 1
            if s.running == nil { s.running = Task { await self.drain(commit) } }
        }
    }

    private func drain(_ commit: Commit) async {
        while true {
            let next = state.withLock { s -> [TopicPartition: Int64]? in
                guard !s.pending.isEmpty, s.failure == nil else {
                    s.running = nil
                    return nil
                }
                defer {
                    s.pending = [:]
                    s.pendingPolls = 0
                }
                return s.pending
            }
            guard let next else { return }
            do { try await commit(next) } catch { state.withLock { $0.failure = error } }
        }
    }

    /// Waits until everything submitted is committed; rethrows a commit's failure.
    func wait() async throws {
        while let running = state.withLock({ $0.running }) { await running.value }
        if let failure = state.withLock({ $0.failure }) { throw failure }
    }

    /// Waits until everything submitted is committed or failed, ignoring the failure (used
    /// while partitions move).
    func settle() async {
        try? await wait()
    }
}

/// The lanes a topic source owns under exactly-once, with their transactional producers.
final class LaneTable: Sendable {
    struct Lane: Sendable {
        var producer: Producer
        var committedBelow: Int64
    }
    private let lanes = Mutex<[TopicPartition: Lane]>([:])

    func get(_ tp: TopicPartition) -> Lane? { lanes.withLock { $0[tp] } }
    func set(_ tp: TopicPartition, _ lane: Lane) { lanes.withLock { $0[tp] = lane } }
    func remove(_ tps: [TopicPartition]) { lanes.withLock { l in for tp in tps { l[tp] = nil } } }
}
