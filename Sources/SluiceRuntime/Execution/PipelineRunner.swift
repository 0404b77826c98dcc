// PipelineRunner: runs one pipeline. Each topic source is a consumer-group member; every
// partition it is assigned is a lane whose batches go through the DAG in offset order while
// lanes run concurrently; a poll's offsets are committed only after every sink downstream
// accepted its records. Other sources feed their batches through the same DAG. Rebalances
// need no extra care: batches are processed and committed between polls, so a revoked lane
// has nothing in flight. Cancelling the run stops fetching, finishes the batch, commits and
// leaves the group.
import Foundation
import Logging
import SluiceBroker
import SluiceLog
import Synchronization

public struct RunOptions: Sendable {
    /// Stop topic sources once they have caught up with the end of their partitions.
    public var drain = false
    public init(drain: Bool = false) { self.drain = drain }
}

/// A component failed in a way that stops the pipeline.
public struct PipelineRunError: Error, Sendable, CustomStringConvertible {
    public var pipeline: String
    public var message: String
    public var description: String { "pipeline '\(pipeline)': \(message)" }
}

public final class PipelineRunner: Sendable {
    public let pipeline: Pipeline
    let broker: EmbeddedBroker
    let registry: ComponentRegistry
    let options: RunOptions
    let logger: Logger
    private let counters = Mutex<[String: Int]>([:])

    /// Components to use instead of building them from the registry (`sluice test` swaps
    /// sources and sinks for in-memory ones).
    let overrides: [String: BuiltComponent]

    public init(pipeline: Pipeline, broker: EmbeddedBroker, registry: ComponentRegistry = .builtIns(), options: RunOptions = RunOptions(), overrides: [String: BuiltComponent] = [:], logger: Logger = Logger(label: "sluice.run")) {
        self.overrides = overrides
        self.pipeline = pipeline
        self.broker = broker
        self.registry = registry
        self.options = options
        self.logger = logger
    }

    private let plainSources = Mutex<[any Source]>([])

    /// How far the pipeline is through its input when every source is bounded and knows
    /// (generators with a count, files not followed); nil otherwise.
    public var fractionDone: Double? {
        let sources = plainSources.withLock { $0 }
        guard !sources.isEmpty, sources.count == pipeline.sources.count else { return nil }
        var least = 1.0
        for s in sources {
            guard let f = s.fractionDone else { return nil }
            least = min(least, f)
        }
        return least
    }

    /// Records per component so far: in for sources, written for sinks.
    public var counts: [String: Int] { counters.withLock { $0 } }

    /// Runs until every source has ended (bounded sources, or drained topic sources) or the
    /// task is cancelled; then closes the sinks.
    public func run() async throws {
        for t in pipeline.topics {
            let name = try TopicName(t.name)
            if !broker.topics.exists(name) {
                do {
                    try broker.topics.create(name, config: TopicConfig(partitions: t.partitions, flush: t.flush, retentionMs: t.retentionMs))
                } catch let e as BrokerError where e.code == .topicExists {
                    // Another pipeline in this process created it first.
                }
            }
        }
        let context = BuildContext(broker: broker, guarantee: pipeline.guarantee, pipelineName: pipeline.name)
        var built: [String: BuiltComponent] = [:]
        for node in pipeline.nodes {
            if let replacement = overrides[node.id] {
                built[node.id] = replacement
                continue
            }
            guard let spec = registry.spec(node.kind, node.type) else { throw PipelineRunError(pipeline: pipeline.name, message: "unknown \(node.kind.rawValue) type '\(node.type)'") }
            built[node.id] = try await spec.build(node.config, context)
        }
        let graph = Graph(pipeline: pipeline, built: built)
        plainSources.withLock { list in
            list = pipeline.sources.compactMap { if case .source(let s)? = built[$0.id] { return s }; return nil }
        }
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for node in pipeline.sources {
                    switch built[node.id]! {
                    case .topicSource(let settings):
                        if pipeline.guarantee == .exactlyOnce {
                            if let b = graph.buffering.first {
                                throw PipelineRunError(pipeline: pipeline.name, message: "transform '\(b.id)' holds records across polls, which guarantee: exactly-once does not support yet")
                            }
                            group.addTask { try await self.runExactlyOnceTopicSource(node.id, settings, graph) }
                        } else {
                            group.addTask { try await self.runTopicSource(node.id, settings, graph) }
                        }
                    case .source(let source):
                        group.addTask {
                            let durable = source.acknowledgesDurably
                            try await source.run { batch in
                                self.count(node.id, batch.count)
                                try await graph.process(batch, from: node.id, runner: self)
                                try await graph.release(force: false, runner: self)
                                if durable { try await graph.flushSinks() }
                            }
                            try await graph.release(force: true, runner: self)
                            try await graph.flushSinks()
                        }
                    default:
                        break
                    }
                }
                try await group.waitForAll()
            }
        } catch {
            await graph.closeSinks(logger)
            throw error
        }
        await graph.closeSinks(logger)
    }

    func count(_ id: String, _ n: Int) {
        counters.withLock { $0[id, default: 0] += n }
    }

    /// The consumer of a topic source. A poll is the unit of commit: after a crash at most the
    /// last two polls (the one in flight and the one whose commit was pending) are processed
    /// again; large polls keep the group-commit wait (the sinks' flush) from capping throughput.
    private func consumerConfig(_ id: String, _ settings: TopicSourceSettings) -> ConsumerConfig {
        var config = ConsumerConfig(groupId: settings.group)
        config.clientId = "\(pipeline.name).\(id)"
        config.autoOffsetReset = settings.start
        config.isolation = settings.isolation
        config.heartbeatIntervalMs = 500
        config.maxPartitionFetchBytes = max(1024, settings.fetchBytes)
        config.maxPollBytes = max(1024, settings.fetchBytes) * 4
        return config
    }

    private func runTopicSource(_ id: String, _ settings: TopicSourceSettings, _ graph: Graph) async throws {
        let topic = try TopicName(settings.topic)
        let config = consumerConfig(id, settings)
        // The commit of one poll (flush every sink, then commit its offsets) runs while the
        // next poll is processed; at most one is outstanding, and a revoke waits for it.
        let inFlight = CommitSlot()
        // Records a buffering transform holds for a lane that moves away are dropped here;
        // their offsets were never committed, so the new owner processes them.
        let moved: @Sendable ([TopicPartition]) async -> Void = { parts in
            await inFlight.settle()
            graph.discard(Set(parts.map { SourceLane(topic: $0.topic.rawValue, partition: $0.partition) }))
        }
        let listener = RebalanceListener(revoked: moved, lost: moved)
        let consumer = Consumer(broker: broker, config: config, listener: listener, logger: logger)
        try consumer.subscribe([topic])
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
                    if options.drain, try await caughtUp(consumer, settings.isolation) { break }
                    continue
                }
                let done = try await withThrowingTaskGroup(of: (TopicPartition, Int64).self) { group in
                    for part in records.parts {
                        group.addTask {
                            try await self.runLane(part, sourceId: id, maxBatch: settings.maxBatchRecords, graph: graph)
                            return (part.data.topicPartition, part.data.nextOffset)
                        }
                    }
                    return try await group.reduce(into: [TopicPartition: Int64]()) { $0[$1.0] = $1.1 }
                }
                var commits = done
                var finished = false
                if buffering {
                    // Held records keep their lane's commit below them.
                    if records.isEmpty && options.drain { finished = try await caughtUp(consumer, settings.isolation) }
                    try await graph.release(force: finished, runner: self)
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
                try await inFlight.wait()
                let logger = self.logger
                let toCommit = commits
                inFlight.start {
                    // Offsets are committed only once every sink made what it accepted durable.
                    try await graph.flushSinks()
                    do {
                        try await consumer.commitSync(toCommit)
                    } catch let e as BrokerError where [.rebalanceInProgress, .illegalGeneration, .unknownMemberId, .fencedInstanceId].contains(e.code) {
                        // The partitions moved: their new owner re-reads from the last commit (at-least-once).
                        logger.info("commit skipped after a rebalance: \(e.message)")
                    }
                }
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

    /// Exactly-once: each lane has a transactional producer (id `<pipeline>/<group>/<topic>/
    /// <partition>`, created when the lane is assigned, which fences any older owner and aborts
    /// its open transaction). A lane's share of a poll is one transaction: its topic outputs
    /// and its next source offset; exactly-once sinks outside the broker (SQLite) commit the
    /// lane's output with its offset just before. A lane resumes at the lowest offset any sink
    /// still needs, and each sink skips what it already holds.
    private func runExactlyOnceTopicSource(_ id: String, _ settings: TopicSourceSettings, _ graph: Graph) async throws {
        let topic = try TopicName(settings.topic)
        let config = consumerConfig(id, settings)
        let lanes = LaneTable()
        let consumerBox = Mutex<Consumer?>(nil)
        let prepare: @Sendable ([TopicPartition]) async -> Void = { parts in
            guard let consumer = consumerBox.withLock({ $0 }) else { return }
            for tp in parts {
                do { try await self.prepareLane(tp, group: settings.group, graph: graph, lanes: lanes, consumer: consumer) } catch {
                    self.logger.error("lane \(tp): \(error); retried at its first records")
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
                    if options.drain, try await caughtUp(consumer, settings.isolation) { break }
                    continue
                }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for part in records.parts {
                        group.addTask {
                            try await self.runExactlyOnceLane(part, sourceId: id, settings: settings, graph: graph, lanes: lanes, consumer: consumer)
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
    private func prepareLane(_ tp: TopicPartition, group: String, graph: Graph, lanes: LaneTable, consumer: Consumer, fetchedFrom: Int64? = nil) async throws -> Bool {
        let lane = SourceLane(topic: tp.topic.rawValue, partition: tp.partition)
        let transactionalId = "\(pipeline.name)/\(group)/\(tp.topic)/\(tp.partition)"
        let producer = try await Producer(broker: broker, config: ProducerConfig(transactionalId: transactionalId))
        // Read after the fence: an older owner can no longer commit.
        var committed = await broker.groups.committedOffsets(groupId: group)[tp]?.offset
        // Never committed: the transactional effects start where the consumer starts (the log
        // start for `start: earliest`), below anything an external sink stored.
        if committed == nil && graph.hasTopicSinks && consumer.config.autoOffsetReset == .earliest {
            committed = try broker.partition(tp).logStartOffset
        }
        var start: Int64? = graph.hasTopicSinks || graph.exactlyOnceSinks.isEmpty ? committed : nil
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

    private func runExactlyOnceLane(_ part: ConsumerRecords.Part, sourceId: String, settings: TopicSourceSettings, graph: Graph, lanes: LaneTable, consumer: Consumer) async throws {
        let tp = part.data.topicPartition
        let lane = SourceLane(topic: tp.topic.rawValue, partition: tp.partition)
        let next = part.data.nextOffset
        if lanes.get(tp) == nil {
            guard try await prepareLane(tp, group: settings.group, graph: graph, lanes: lanes, consumer: consumer, fetchedFrom: part.from) else { return }
        }
        guard let state = lanes.get(tp) else { return }
        let producer = state.producer
        let external = graph.exactlyOnceSinks
        do {
            if Self.fault == "commit-offsets-first" {
                // A deliberately broken mode for testing the chaos checker: the offsets are
                // committed before the outputs are written, so a crash in between loses them.
                try producer.beginTransaction()
                try await producer.sendOffsetsToTransaction([tp: next], groupId: settings.group)
                try await producer.commitTransaction()
            }
            try producer.beginTransaction()
            try await LaneTransaction.$current.withValue(LaneTransaction(lane: lane, producer: producer, committedBelow: state.committedBelow)) {
                try await runLane(part, sourceId: sourceId, maxBatch: settings.maxBatchRecords, graph: graph)
            }
            for sink in external { try await sink.commit(lane, next: next) }
            if Self.fault != "commit-offsets-first" {
                try await producer.sendOffsetsToTransaction([tp: next], groupId: settings.group)
            }
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

    /// A test hook (`SLUICE_FAULT`), read once.
    static let fault = ProcessInfo.processInfo.environment["SLUICE_FAULT"] ?? ""

    /// One lane's share of a poll: the partition's records, in offset order, in batches.
    private func runLane(_ part: ConsumerRecords.Part, sourceId: String, maxBatch: Int, graph: Graph) async throws {
        let tp = part.data.topicPartition
        var batch: [PipelineRecord] = []
        batch.reserveCapacity(min(maxBatch, 4096))
        var failure: (any Error)?
        try part.data.forEachRecord(from: part.from) { r in
            var headers: [RecordHeader] = []
            if r.headerCount > 0 {
                r.forEachHeader { n, v in headers.append(RecordHeader(name: String(decoding: n, as: UTF8.self), value: v.map { Array($0) })) }
            }
            batch.append(PipelineRecord(key: r.key.map { Array($0) }, value: r.value.map { Array($0) }, headers: headers, timestamp: r.timestamp, topic: tp.topic.rawValue, partition: tp.partition, offset: r.offset))
        }
        var start = 0
        while start < batch.count && failure == nil {
            let end = min(batch.count, start + maxBatch)
            let slice = Array(batch[start..<end])
            count(sourceId, slice.count)
            do { try await graph.process(slice, from: sourceId, runner: self) } catch { failure = error }
            start = end
        }
        if let failure { throw failure }
    }

    private func caughtUp(_ consumer: Consumer, _ isolation: IsolationLevel) async throws -> Bool {
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

/// The wiring of a pipeline's components, and the walk of one batch through it.
struct Graph: Sendable {
    let pipeline: Pipeline
    let built: [String: BuiltComponent]
    /// Outputs someone reads.
    let wired: Set<InputRef>

    /// Sinks that store their own source offsets (SQLite).
    let exactlyOnceSinks: [any ExactlyOnceSink]
    /// True when part of the output is committed in the lanes' Kafka transactions.
    let hasTopicSinks: Bool

    /// Transforms that hold records across batches, in topological order.
    let buffering: [(id: String, transform: any BufferingTransform)]

    init(pipeline: Pipeline, built: [String: BuiltComponent]) {
        self.pipeline = pipeline
        self.built = built
        wired = Set(pipeline.nodes.flatMap(\.inputs))
        exactlyOnceSinks = pipeline.sinks.compactMap { node in
            if case .sink(let s)? = built[node.id] { return s as? any ExactlyOnceSink }
            return nil
        }
        // Effects committed in the lane's Kafka transaction: topic sinks and changelogs of
        // stateful transforms. Where there are any, the group's offset marks how far they got.
        hasTopicSinks = pipeline.sinks.contains { $0.type == "topic" } || pipeline.nodes.contains { node in
            if case .transform(let t)? = built[node.id], let d = t as? DedupeTransform { return d.changelog != nil }
            return false
        }
        buffering = pipeline.nodes.compactMap { node in
            if case .transform(let t)? = built[node.id], let b = t as? any BufferingTransform { return (node.id, b) }
            return nil
        }
    }

    func process(_ records: [PipelineRecord], from sourceId: String, runner: PipelineRunner) async throws {
        try await process(records, at: InputRef(component: sourceId, output: "out"), runner: runner)
    }

    /// Sends what buffering transforms have ready (everything when `force`) downstream.
    /// Callers keep one lane's calls in order: this runs between polls, never beside a lane.
    func release(force: Bool, runner: PipelineRunner) async throws {
        for (id, t) in buffering {
            var out = TransformOutput()
            t.release(force: force, into: &out)
            if !out.out.isEmpty { try await process(out.out, at: InputRef(component: id, output: "out"), runner: runner) }
        }
    }

    /// The lowest source offset held by any buffering transform, per lane.
    func heldOffsets() -> [SourceLane: Int64] {
        var held: [SourceLane: Int64] = [:]
        for (_, t) in buffering {
            for (lane, o) in t.heldOffsets() { held[lane] = min(held[lane] ?? .max, o) }
        }
        return held
    }

    func discard(_ lanes: Set<SourceLane>) {
        for (_, t) in buffering { t.discard(lanes) }
    }

    /// Walks `records`, which appeared on output `ref`, through every node downstream of it.
    func process(_ records: [PipelineRecord], at ref: InputRef, runner: PipelineRunner) async throws {
        var buffers: [InputRef: [PipelineRecord]] = [ref: records]
        for node in pipeline.nodes where node.kind != .source {
            var input: [PipelineRecord]
            if node.inputs.count == 1 {
                input = buffers[node.inputs[0]] ?? []  // shares the buffer, no per-record copy
            } else {
                input = []
                for ref in node.inputs {
                    if let b = buffers[ref] { input += b }
                }
            }
            if input.isEmpty { continue }
            switch built[node.id]! {
            case .transform(let t):
                var out = TransformOutput()
                do {
                    try await t.process(input, into: &out)
                } catch {
                    throw PipelineRunError(pipeline: pipeline.name, message: "transform '\(node.id)' failed: \(error)")
                }
                if !out.errors.isEmpty {
                    let errorsRef = InputRef(component: node.id, output: "errors")
                    guard wired.contains(errorsRef) else {
                        let r = out.errors[0]
                        let why = r.headers.last { $0.name == "sluice.error" }?.value.map { String(decoding: $0, as: UTF8.self) } ?? "error"
                        let at = r.topic.map { "\($0)/\(r.partition) offset \(r.offset)" } ?? "record \(r.offset)"
                        throw PipelineRunError(pipeline: pipeline.name, message: "transform '\(node.id)' failed on \(at): \(why); wire '\(node.id).errors' to a sink to keep such records")
                    }
                    buffers[errorsRef] = out.errors
                }
                buffers[InputRef(component: node.id, output: "out")] = out.out
                for (name, list) in out.named { buffers[InputRef(component: node.id, output: name)] = list }
            case .sink(let s):
                do {
                    if let rejecting = s as? any RejectingSink {
                        let refused: [PipelineRecord] = try await rejecting.write(input)
                        if !refused.isEmpty {
                            let errorsRef = InputRef(component: node.id, output: "errors")
                            guard wired.contains(errorsRef) else {
                                let why = refused[0].headers.last { $0.name == "sluice.error" }?.value.map { String(decoding: $0, as: UTF8.self) } ?? "refused"
                                throw PipelineRunError(pipeline: pipeline.name, message: "sink '\(node.id)' refused \(refused.count) record\(refused.count == 1 ? "" : "s"): \(why); wire '\(node.id).errors' to a sink to keep such records")
                            }
                            buffers[errorsRef] = refused
                        }
                    } else {
                        try await s.write(input)
                    }
                } catch let e as PipelineRunError {
                    throw e
                } catch {
                    throw PipelineRunError(pipeline: pipeline.name, message: "sink '\(node.id)' failed: \(error)")
                }
                runner.count(node.id, input.count)
            default:
                break
            }
        }
    }

    func flushSinks() async throws {
        for (id, component) in built {
            if case .sink(let s) = component {
                do { try await s.flush() } catch { throw PipelineRunError(pipeline: pipeline.name, message: "sink '\(id)' failed to flush: \(error)") }
            }
        }
    }

    func closeSinks(_ logger: Logger) async {
        for (id, component) in built {
            if case .sink(let s) = component {
                do { try await s.close() } catch { logger.error("closing sink '\(id)' failed: \(error)") }
            }
        }
    }
}

/// The one outstanding flush-and-commit of a topic source.
final class CommitSlot: Sendable {
    private let task = Mutex<Task<Void, any Error>?>(nil)

    func start(_ body: @escaping @Sendable () async throws -> Void) {
        task.withLock { $0 = Task { try await body() } }
    }

    /// Waits for the outstanding commit; rethrows its failure.
    func wait() async throws {
        let t = task.withLock { t -> Task<Void, any Error>? in defer { t = nil }; return t }
        try await t?.value
    }

    /// Waits for the outstanding commit, ignoring its failure (used while partitions move).
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
