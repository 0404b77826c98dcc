// The librdkafka BrokerClient: a pipeline's topics, consumer group and producers on any
// Kafka-protocol cluster (Apache Kafka, Redpanda, `sluice serve`). Topic sources run under
// the same two lane drivers' rules as on the embedded broker: lanes in order and in
// parallel, commits after sinks; under exactly-once each lane has a transactional producer
// whose transactions carry the lane's outputs and source offsets.
#if RdKafka
import CRdKafka
import Foundation
import Logging
import SluiceComponents
import SluiceRuntime
import Synchronization

public final class RdKafkaClient: BrokerClient, @unchecked Sendable {
    public let settings: RdKafkaSettings
    public let name: String
    let logger: Logger
    /// The producer of topic sinks outside exactly-once, and of admin requests.
    private let shared = Mutex<RdProducer?>(nil)

    public init(url: String, properties: [String: String] = [:], logger: Logger) throws {
        settings = try RdKafkaSettings(url: url, properties: properties)
        name = url
        self.logger = logger
        // The user's properties are checked now, so a bad one stops the run before it starts.
        rd_kafka_conf_destroy(try makeConf(settings, []))
    }

    /// Runs `body`; a librdkafka failure stops the pipeline with a sentence naming the broker.
    private func failing<T>(_ pipeline: String, _ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch let e as RdKafkaError {
            throw PipelineRunError(pipeline: pipeline, message: "broker \(name): \(e.message)")
        }
    }

    func sharedProducer() throws -> RdProducer {
        try shared.withLock { p in
            if let p { return p }
            let made = try RdProducer(settings, name: "sluice-producer", logger: logger)
            p = made
            return made
        }
    }

    public var services: any ComponentServices { RdServices(client: self) }

    public func createTopics(_ topics: [TopicDeclaration]) async throws {
        guard !topics.isEmpty else { return }
        let producer = try sharedProducer()
        try await Admin.createTopics(producer.handle, topics.map { ($0.name, $0.partitions, ["retention.ms": "\($0.retentionMs)"]) })
    }

    public func runTopicSource(_ source: TopicSourceRun) async throws {
        try await failing(source.pipelineName) {
            switch source.guarantee {
            case .atLeastOnce: try await RdAtLeastOnceDriver(source: source, client: self).run()
            case .exactlyOnce: try await RdExactlyOnceDriver(source: source, client: self).run()
            }
        }
    }

    /// Queue sources: Sluice's own share-group members over the wire (WireQueueBroker.swift).
    public func runQueueSource(_ source: QueueSourceRun) async throws {
        try await QueueDriver(source: source, broker: try WireQueueBroker(settings: settings, pipeline: source.pipelineName, source: source.id)).run()
    }

    func consumer(for source: TopicSourceRun) throws -> RdConsumer {
        try RdConsumer(settings, group: source.settings.group, clientId: "\(source.pipelineName).\(source.id)@\(ProcessInfo.processInfo.hostName):\(getpid())",
                       earliest: source.settings.start != .latest, readCommitted: source.settings.isolation == .readCommitted || source.guarantee == .exactlyOnce,
                       fetchBytes: source.settings.fetchBytes, logger: logger)
    }

    /// Flushes and closes the shared producer.
    public func close() async {
        if let p = shared.withLock({ p -> RdProducer? in defer { p = nil }; return p }) { await p.close() }
    }
}

struct RdServices: ComponentServices {
    let client: RdKafkaClient

    func ensureTopic(_ topic: String, partitions: Int32, retentionMs: Int64) async throws {
        try await Admin.createTopics(try client.sharedProducer().handle, [(topic, partitions, ["retention.ms": "\(retentionMs)"])])
    }

    func partitionCount(_ topic: String) async -> Int32? {
        try? await client.sharedProducer().partitionCount(topic)
    }

    func output() async throws -> any LaneOutput { try client.sharedProducer() }
}

enum Admin {
    /// Creates the topics that do not exist (an existing topic is not an error).
    static func createTopics(_ handle: RdHandle, _ topics: [(name: String, partitions: Int32, configs: [String: String])]) async throws {
        let worker = BlockingWorker(name: "sluice-rdkafka-admin")
        defer { worker.stop() }
        let h = handle
        try await worker.run {
            let rk = h.rk
            var errstr = [CChar](repeating: 0, count: 512)
            var newTopics: [OpaquePointer?] = []
            defer { for t in newTopics { rd_kafka_NewTopic_destroy(t) } }
            for t in topics {
                guard let nt = rd_kafka_NewTopic_new(t.name, t.partitions, -1, &errstr, errstr.count) else {
                    throw RdKafkaError("topic '\(t.name)': \(cText(errstr))")
                }
                for (k, v) in t.configs { _ = rd_kafka_NewTopic_set_config(nt, k, v) }
                newTopics.append(nt)
            }
            let queue = rd_kafka_queue_new(rk)
            defer { rd_kafka_queue_destroy(queue) }
            newTopics.withUnsafeMutableBufferPointer { p in
                rd_kafka_CreateTopics(rk, p.baseAddress, p.count, nil, queue)
            }
            guard let event = rd_kafka_queue_poll(queue, 30_000) else {
                let last = h.callbacks.lastError.withLock { $0 }.map { " (last error: \($0))" } ?? ""
                throw RdKafkaError("creating topics: no answer within 30 s\(last)")
            }
            defer { rd_kafka_event_destroy(event) }
            if rd_kafka_event_error(event) != RD_KAFKA_RESP_ERR_NO_ERROR {
                throw RdKafkaError("creating topics: \(String(cString: rd_kafka_event_error_string(event)))")
            }
            guard let result = rd_kafka_event_CreateTopics_result(event) else { throw RdKafkaError("creating topics: unexpected answer") }
            var count = 0
            guard let results = rd_kafka_CreateTopics_result_topics(result, &count) else { return }
            for i in 0..<count {
                let r = results[i]
                let err = rd_kafka_topic_result_error(r)
                if err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS { continue }
                let why = rd_kafka_topic_result_error_string(r).map { String(cString: $0) } ?? String(cString: rd_kafka_err2str(err))
                throw RdKafkaError("creating topic '\(String(cString: rd_kafka_topic_result_name(r)))': \(why)")
            }
        }
    }
}

/// How long a poll waits for records, per the run's mode.
private func pollWait(_ source: TopicSourceRun) -> Int { source.options.drain ? 100 : 200 }

/// At-least-once: each poll's lanes run in parallel; then every sink is flushed and the
/// offsets committed, before the next poll (so a revoke, which librdkafka delivers inside
/// the poll, never finds records in flight).
struct RdAtLeastOnceDriver {
    let source: TopicSourceRun
    let client: RdKafkaClient

    func run() async throws {
        let graph = source.graph, settings = source.settings
        let consumer = try client.consumer(for: source)
        try await consumer.subscribe([settings.topic])
        let buffering = !graph.buffering.isEmpty
        var processed: [SourceLane: Int64] = [:]
        var committed: [SourceLane: Int64] = [:]
        do {
            while !Task.isCancelled {
                let parts = try await consumer.poll(maxWaitMs: pollWait(source), maxRecords: 100_000, maxBytes: max(1024, settings.fetchBytes) * 4, batchRecords: settings.maxBatchRecords)
                let moved = consumer.takeRebalanceEvents().revoked
                if !moved.isEmpty {
                    graph.discard(Set(moved))
                    for lane in moved { processed[lane] = nil; committed[lane] = nil }
                }
                if parts.isEmpty && !buffering {
                    if source.options.drain && consumer.caughtUp { break }
                    continue
                }
                let done = try await withThrowingTaskGroup(of: (SourceLane, Int64).self) { group in
                    for part in parts {
                        group.addTask {
                            try await source.process(part.batches, context: LaneContext(lane: part.lane))
                            return (part.lane, part.next)
                        }
                    }
                    return try await group.reduce(into: [SourceLane: Int64]()) { $0[$1.0] = $1.1 }
                }
                var finished = false
                if buffering {
                    if parts.isEmpty && source.options.drain { finished = consumer.caughtUp }
                    try await graph.release(force: finished)
                }
                processed.merge(done) { _, new in new }
                let owned = consumer.assignment
                processed = processed.filter { owned.contains($0.key) }
                let held = graph.heldOffsets()
                var commits: [SourceLane: Int64] = [:]
                for (lane, next) in processed {
                    let upTo = min(next, held[lane] ?? .max)
                    if committed[lane] != upTo { commits[lane] = upTo }
                }
                if !commits.isEmpty {
                    try await graph.flushSinks()
                    try await consumer.commit(commits)
                    committed.merge(commits) { _, new in new }
                }
                if finished { break }
            }
        } catch {
            await consumer.close()
            throw error
        }
        await consumer.close()
    }
}

/// Exactly-once: a transactional producer per lane (transactional id `<pipeline>/<group>/
/// <topic>/<partition>`), created as soon as the partition is assigned: that fences any older
/// owner and aborts the transaction it left open. It must not wait for the lane's first
/// records: the consumer cannot fetch them before it knows the committed offset, and a
/// broker answers that fetch with UNSTABLE_OFFSET_COMMIT while the dead owner's transaction
/// holds offsets for the partition — until the transaction times out. Each lane's share of
/// a poll is one transaction of its outputs and its next source offset, sent with the
/// consumer's group metadata.
struct RdExactlyOnceDriver {
    let source: TopicSourceRun
    let client: RdKafkaClient

    /// REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID.
    static let groupMovedCodes: Set<Int32> = [
        RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS.rawValue, RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION.rawValue,
        RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID.rawValue, RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID.rawValue,
    ]

    /// A lane's producer and, once its first records were checked against the group's
    /// committed offset, that offset (-1 for none).
    struct Lane {
        var producer: RdProducer
        var committedBelow: Int64?
    }

    final class Lanes: @unchecked Sendable {
        private let lanes = Mutex<[SourceLane: Lane]>([:])
        func get(_ lane: SourceLane) -> Lane? { lanes.withLock { $0[lane] } }
        func set(_ lane: SourceLane, _ value: Lane) { lanes.withLock { $0[lane] = value } }
        func remove(_ lane: SourceLane) -> RdProducer? { lanes.withLock { $0.removeValue(forKey: lane)?.producer } }
        func removeAll() -> [RdProducer] { lanes.withLock { l in defer { l = [:] }; return l.values.map(\.producer) } }
    }

    func run() async throws {
        let settings = source.settings
        let consumer = try client.consumer(for: source)
        try await consumer.subscribe([settings.topic])
        let lanes = Lanes()
        do {
            while !Task.isCancelled {
                let parts = try await consumer.poll(maxWaitMs: pollWait(source), maxRecords: 100_000, maxBytes: max(1024, settings.fetchBytes) * 4, batchRecords: settings.maxBatchRecords)
                let moved = consumer.takeRebalanceEvents()
                for lane in moved.revoked {
                    if let p = lanes.remove(lane) { await p.close() }
                }
                let owned = consumer.assignment
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for lane in Set(moved.assigned) where owned.contains(lane) && lanes.get(lane) == nil {
                        group.addTask { try await self.fence(lane, lanes: lanes) }
                    }
                    try await group.waitForAll()
                }
                if parts.isEmpty {
                    if source.options.drain && consumer.caughtUp { break }
                    continue
                }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for part in parts {
                        group.addTask { try await self.runLane(part, lanes: lanes, consumer: consumer) }
                    }
                    try await group.waitForAll()
                }
            }
        } catch {
            for p in lanes.removeAll() { await p.close() }
            await consumer.close()
            throw error
        }
        for p in lanes.removeAll() { await p.close() }
        await consumer.close()
    }

    /// Creates the lane's transactional producer: its InitProducerId fences any older owner
    /// of the transactional id and aborts what that owner left open.
    private func fence(_ lane: SourceLane, lanes: Lanes) async throws {
        let id = source.transactionalId(topic: lane.topic ?? "", partition: lane.partition)
        let producer = try RdProducer(client.settings, name: "sluice-txn-\(lane.topic ?? "")-\(lane.partition)", transactionalId: id, logger: client.logger)
        do { try await producer.initTransactions() } catch {
            await producer.close()
            throw error
        }
        lanes.set(lane, Lane(producer: producer, committedBelow: nil))
    }

    /// Reads the lane's committed offset once, before its first transaction: when the
    /// records fetched do not start there (or where an exactly-once sink needs them), the
    /// consumer moves and this poll's records of the lane are dropped.
    private func position(_ part: RdConsumer.Part, lanes: Lanes, consumer: RdConsumer) async throws -> Bool {
        let lane = part.lane
        guard var state = lanes.get(lane) else { return false }
        let committed = try await consumer.committed([lane])[lane]
        var start: Int64? = source.graph.hasTransactionalEffects || source.graph.exactlyOnceSinks.isEmpty ? committed : nil
        for sink in source.graph.exactlyOnceSinks {
            if let applied = try await sink.appliedOffset(lane) ?? committed { start = min(start ?? applied, applied) }
        }
        state.committedBelow = committed ?? -1
        lanes.set(lane, state)
        if let start, start != part.from {
            try await consumer.seek(lane, to: start)
            return false
        }
        return true
    }

    private func runLane(_ part: RdConsumer.Part, lanes: Lanes, consumer: RdConsumer) async throws {
        let lane = part.lane
        // A lane dropped after a fence (or assigned before this driver saw it) is fenced now.
        if lanes.get(lane) == nil { try await fence(lane, lanes: lanes) }
        if lanes.get(lane)?.committedBelow == nil {
            guard try await position(part, lanes: lanes, consumer: consumer) else { return }
        }
        guard let state = lanes.get(lane), let committedBelow = state.committedBelow else { return }
        let producer = state.producer
        let external = source.graph.exactlyOnceSinks
        do {
            try producer.beginTransaction()
            let transaction = LaneTransaction(lane: lane, producer: producer, committedBelow: committedBelow)
            try await source.process(part.batches, context: LaneContext(lane: lane, transaction: transaction))
            for sink in external { try await sink.commit(lane, next: part.next) }
            try await producer.sendOffsets([(lane.topic ?? "", lane.partition, part.next)], consumer: consumer)
            try await producer.commitTransaction()
        } catch {
            try? await producer.abortTransaction()
            for sink in external { await sink.abort(lane) }
            if let e = error as? RdKafkaError, e.isFenced {
                source.logger.info("lane \(lane.text) was fenced by a newer owner; dropping it")
                if let p = lanes.remove(lane) { await p.close() }
                try await consumer.seek(lane, to: part.from)
                return
            }
            if let e = error as? RdKafkaError, e.requiresAbort || e.isRetriable || Self.groupMovedCodes.contains(e.code) {
                // The group moved on under the transaction (a rebalance between the poll and
                // the commit): it was aborted; the lane's records are read again from the
                // last commit, by this worker or the partition's new owner.
                source.logger.info("lane \(lane.text): transaction aborted (\(e.message)); reading again from offset \(part.from)")
                try await consumer.seek(lane, to: part.from)
                return
            }
            throw error
        }
    }
}
#endif
