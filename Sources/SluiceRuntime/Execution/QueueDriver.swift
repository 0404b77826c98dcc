// The queue driver: a queue source's workers, each a member of the source's share group. A
// worker polls records, sends them through the graph as batches and then settles them: once
// every sink has flushed what it accepted, the records are accepted. A failing batch is
// halved until the failing records are found; such a record is rejected at once (and
// dead-lettered where the source names a topic) when the fault is its own, and released for
// another delivery when the fault may pass (then rejected on its last allowed delivery, which
// the share group hands out alone). So one poison record ends in the dead-letter topic and
// the records around it are processed.
import Logging
import SluiceBroker
import SluiceComponents
import SluiceLog

/// One queue source of a running pipeline, as the runner hands it to its broker client.
public struct QueueSourceRun: Sendable {
    package let id: String
    package let settings: QueueSourceSettings
    package let graph: Graph
    package let options: RunOptions
    package let logger: Logger
    package let pipelineName: String
}

/// A member of a queue source's share group: in process (ShareConsumer) or over the wire.
package protocol QueueMember: Sendable {
    /// Acquires records, waiting up to `maxWait`; unsettled records of the last batch go back.
    func nextBatch(maxWait: Duration) async throws -> ShareBatch
    /// Sends the batch's acknowledgements and returns once they are durable.
    func settle(_ acks: ShareAcknowledgements) async throws
    /// Gives back what the member holds and leaves the group.
    func leave() async
}

/// What a queue source needs of a broker.
package protocol QueueBroker: Sendable {
    /// Sets the group's configs (an empty value: back to the default).
    func configure(group: String, _ configs: [(String, String)]) async throws
    func member(_ config: ShareConsumerConfig, topic: TopicName, logger: Logger) async throws -> any QueueMember
    /// True once the group has settled every record the topic has.
    func settled(group: String, topic: TopicName) async throws -> Bool
    /// True when `error` (from a member) is the connection's, so a new member may do better.
    func reconnects(after error: any Error) -> Bool
}

extension ShareConsumer: QueueMember {
    package func nextBatch(maxWait: Duration) async throws -> ShareBatch { try await poll(maxWait: maxWait) }
    package func settle(_ acks: ShareAcknowledgements) async throws { try await acknowledge(acks) }
    package func leave() async { await close() }
}

/// The embedded broker's share groups.
struct EmbeddedQueueBroker: QueueBroker {
    let broker: EmbeddedBroker

    func configure(group: String, _ configs: [(String, String)]) async throws {
        try await broker.shares.alterConfigs(group, configs)
    }

    func member(_ config: ShareConsumerConfig, topic: TopicName, logger: Logger) async throws -> any QueueMember {
        ShareConsumer(broker: broker, config: config, topics: [topic], logger: logger)
    }

    func settled(group: String, topic: TopicName) async throws -> Bool {
        guard let d = await broker.shares.describe(group) else { return false }
        let count = try broker.partitionCount(topic)
        for p in 0..<count {
            let end = try broker.partition(TopicPartition(topic, p)).highWatermark
            let start = d.partitions.first { $0.topicPartition == TopicPartition(topic, p) }?.startOffset
            if end > 0 && (start ?? -1) < end { return false }
        }
        return true
    }

    func reconnects(after error: any Error) -> Bool { false }
}

package struct QueueDriver: Sendable {
    let source: QueueSourceRun
    let broker: any QueueBroker
    var settings: QueueSourceSettings { source.settings }

    package init(source: QueueSourceRun, broker: any QueueBroker) {
        self.source = source
        self.broker = broker
    }

    /// Sets the group's configs from the source's fields, then runs the workers.
    package func run() async throws {
        let s = settings
        try await broker.configure(group: s.group, [
            ("share.record.lock.duration.ms", "\(s.lockMs)"), ("share.delivery.count.limit", "\(s.maxDeliveries)"),
            ("share.auto.offset.reset", s.start == .latest ? "latest" : "earliest"),
            ("errors.deadletterqueue.topic.name", s.deadLetter ?? ""),
        ])
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<s.instances {
                group.addTask { try await self.worker(i) }
            }
            try await group.waitForAll()
        }
    }

    /// Consecutive connection failures a worker rides out (reconnecting with backoff) before
    /// the pipeline stops.
    static let maxReconnects = 8

    private func worker(_ index: Int) async throws {
        let topic = try TopicName(settings.topic)
        var config = ShareConsumerConfig(groupId: settings.group)
        config.clientId = "\(source.pipelineName).\(source.id).\(index)"
        config.acknowledgement = .explicit
        config.maxRecords = max(1, settings.maxBatchRecords)
        var failures = 0
        while true {
            let member = try await broker.member(config, topic: topic, logger: source.logger)
            do {
                try await work(member, topic, resetFailures: { failures = 0 })
                await member.leave()
                return
            } catch is CancellationError {
                await member.leave()
                throw CancellationError()
            } catch let e where broker.reconnects(after: e) && failures < Self.maxReconnects && !Task.isCancelled {
                await member.leave()
                failures += 1
                let wait = Duration.milliseconds(min(3_000, 100 << min(failures, 5)))
                source.logger.warning("queue \(settings.group): worker \(index) lost the broker (\(e)); reconnecting in \(wait) (attempt \(failures) of \(Self.maxReconnects))")
                try await Task.sleep(for: wait)
            } catch {
                await member.leave()
                if broker.reconnects(after: error) { throw PipelineRunError(pipeline: source.pipelineName, message: "queue source '\(source.id)': \(error)") }
                throw error
            }
        }
    }

    private func work(_ consumer: any QueueMember, _ topic: TopicName, resetFailures: () -> Void) async throws {
        let graph = source.graph, logger = source.logger, drain = source.options.drain
        do {
            while !Task.isCancelled {
                let batch = try await consumer.nextBatch(maxWait: .milliseconds(drain ? 20 : 200))
                resetFailures()
                if batch.isEmpty {
                    if drain, try await broker.settled(group: settings.group, topic: topic) { break }
                    continue
                }
                var items: [Item] = []
                for part in batch.parts {
                    for range in part.ranges {
                        for data in range.data {
                            for b in try FetchedBatches.make(ConsumerRecords.Part(data: data, from: range.acquired.first), maxRecords: settings.maxBatchRecords, through: range.acquired.last) {
                                items.append((part.topicPartition, b))
                            }
                        }
                    }
                }
                // What is not settled below (gaps aside) goes back for another delivery.
                var acks = batch.acknowledgements(.release)
                var accepted: [(TopicPartition, Int64)] = []
                try await settle(items, batch: batch, acks: &acks, accepted: &accepted)
                do {
                    // Accepted only once every sink has made what it took durable.
                    try await graph.flushSinks()
                } catch {
                    logger.warning("queue \(settings.group): the sinks could not flush; \(accepted.count) records are released for another delivery: \(error)")
                    for (tp, o) in accepted { acks.set(tp, o, .release) }
                }
                try await consumer.settle(acks)
            }
        }
    }

    typealias Item = (TopicPartition, RecordBatch)

    /// Sends `items` through the graph and settles their records. A failure is narrowed down
    /// by halving, within this delivery:
    /// - a record that fails alone is rejected at once when the fault is the record's own (a
    ///   transform's per-record error, a sink's refusal: another delivery would fail alike);
    ///   otherwise it is released, and rejected with the error on its last allowed delivery;
    /// - when both halves fail for reasons that may pass, the fault is not in particular
    ///   records (a sink that is down, say): all of them are released for another delivery
    ///   at once instead of being tried one by one.
    private func settle(_ items: [Item], batch: ShareBatch, acks: inout ShareAcknowledgements, accepted: inout [(TopicPartition, Int64)], failure known: (any Error)? = nil) async throws {
        let error: any Error
        if let known {
            error = known
        } else {
            guard let e = try await attempt(items, acks: &acks, accepted: &accepted) else { return }
            error = e
        }
        let total = items.reduce(0) { $0 + $1.1.count }
        if total <= 1 {
            guard let (tp, b) = items.first(where: { !$0.1.isEmpty }), let slot = b.slots.first else { return }
            settleFailed(tp, slot.offset, error, batch: batch, acks: &acks)
            return
        }
        let (first, second) = Self.halves(items)
        let e1 = try await attempt(first, acks: &acks, accepted: &accepted)
        let e2 = try await attempt(second, acks: &acks, accepted: &accepted)
        if let e1, let e2, Self.retryable(e1), Self.retryable(e2), first.reduce(0, { $0 + $1.1.count }) > 1, second.reduce(0, { $0 + $1.1.count }) > 1 {
            source.logger.warning("queue \(settings.group): \(total) records failed in both halves of their batch, so the fault is not theirs; they are released for another delivery: \(e1)")
            return
        }
        if let e1 { try await settle(first, batch: batch, acks: &acks, accepted: &accepted, failure: e1) }
        if let e2 { try await settle(second, batch: batch, acks: &acks, accepted: &accepted, failure: e2) }
    }

    /// Sends `items` through the graph; on success their records are accepted (once the sinks
    /// flush), on failure the error is returned and they stay released.
    private func attempt(_ items: [Item], acks: inout ShareAcknowledgements, accepted: inout [(TopicPartition, Int64)]) async throws -> (any Error)? {
        do {
            for (tp, b) in items { try await source.graph.process(b, from: source.id, context: LaneContext(lane: SourceLane(tp))) }
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            return error
        }
        for (tp, b) in items {
            for slot in b.slots {
                acks.set(tp, slot.offset, .accept)
                accepted.append((tp, slot.offset))
            }
        }
        return nil
    }

    /// One record failed alone: rejected when the fault is its own or this was its last
    /// allowed delivery, released otherwise.
    private func settleFailed(_ tp: TopicPartition, _ offset: Int64, _ error: any Error, batch: ShareBatch, acks: inout ShareAcknowledgements) {
        let count = Int(batch.deliveryCount(tp, offset) ?? 1)
        let to = settings.deadLetter.map { " to \($0)" } ?? ""
        if !Self.retryable(error) {
            acks.set(tp, offset, .reject, error: "\(error)")
            source.logger.warning("queue \(settings.group): \(tp)@\(offset) failed in a way another delivery would repeat and is rejected\(to): \(error)")
        } else if count >= settings.maxDeliveries {
            acks.set(tp, offset, .reject, error: "\(error)")
            source.logger.warning("queue \(settings.group): \(tp)@\(offset) failed on its last delivery (\(count)) and is rejected\(to): \(error)")
        } else {
            acks.set(tp, offset, .release)
            source.logger.info("queue \(settings.group): \(tp)@\(offset) failed on delivery \(count) of \(settings.maxDeliveries) and is released: \(error)")
        }
    }

    static func retryable(_ error: any Error) -> Bool {
        (error as? PipelineRunError)?.retryable ?? true
    }

    /// Two halves: whole items while there are several, else the one item's records.
    static func halves(_ items: [Item]) -> ([Item], [Item]) {
        if items.count > 1 {
            return (Array(items[..<(items.count / 2)]), Array(items[(items.count / 2)...]))
        }
        let (tp, b) = items[0]
        let half = b.slots.count / 2
        var a = b.emptied(reservingCapacity: half), c = b.emptied(reservingCapacity: b.slots.count - half)
        a.slots.append(contentsOf: b.slots[..<half])
        c.slots.append(contentsOf: b.slots[half...])
        return ([(tp, a)], [(tp, c)])
    }
}
