// The queue driver: a queue source's workers, each a member of the source's share group. A
// worker polls records, sends them through the graph as batches and then settles them: once
// every sink has flushed what it accepted, the records are accepted; when processing fails
// they are released, and a record that fails alone on its last allowed delivery is rejected
// with the error (dead-lettered where the source names a topic). Batches shrink as delivery
// counts rise (the share group hands a record on its last delivery out alone), so one poison
// record ends in the dead-letter topic and the records around it are processed.
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

struct QueueDriver: Sendable {
    let source: QueueSourceRun
    let broker: EmbeddedBroker
    var settings: QueueSourceSettings { source.settings }

    /// Sets the group's configs from the source's fields, then runs the workers.
    func run() async throws {
        let s = settings
        try await broker.shares.alterConfigs(s.group, [
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

    private func worker(_ index: Int) async throws {
        let topic = try TopicName(settings.topic)
        var config = ShareConsumerConfig(groupId: settings.group)
        config.clientId = "\(source.pipelineName).\(source.id).\(index)"
        config.acknowledgement = .explicit
        config.maxRecords = max(1, settings.maxBatchRecords)
        let consumer = ShareConsumer(broker: broker, config: config, topics: [topic], logger: source.logger)
        let graph = source.graph, logger = source.logger, drain = source.options.drain
        do {
            while !Task.isCancelled {
                let batch = try await consumer.poll(maxWait: .milliseconds(drain ? 20 : 200))
                if batch.isEmpty {
                    if drain, try await caughtUp(topic) { break }
                    continue
                }
                var items: [(TopicPartition, RecordBatch)] = []
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
                try await consumer.acknowledge(acks)
            }
        } catch {
            await consumer.close()
            throw error
        }
        await consumer.close()
    }

    /// Sends `items` through the graph. When that fails the records are halved and tried
    /// again, down to single records, so the ones that fail are found within this delivery;
    /// a failing record is released, or rejected with the error on its last allowed delivery.
    private func settle(_ items: [(TopicPartition, RecordBatch)], batch: ShareBatch, acks: inout ShareAcknowledgements, accepted: inout [(TopicPartition, Int64)]) async throws {
        let graph = source.graph
        do {
            for (tp, b) in items { try await graph.process(b, from: source.id, context: LaneContext(lane: SourceLane(tp))) }
            for (tp, b) in items {
                for slot in b.slots {
                    acks.set(tp, slot.offset, .accept)
                    accepted.append((tp, slot.offset))
                }
            }
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            let total = items.reduce(0) { $0 + $1.1.count }
            if total <= 1 {
                guard let (tp, b) = items.first(where: { !$0.1.isEmpty }), let slot = b.slots.first else { return }
                let count = Int(batch.deliveryCount(tp, slot.offset) ?? 1)
                if count >= settings.maxDeliveries {
                    acks.set(tp, slot.offset, .reject, error: "\(error)")
                    source.logger.warning("queue \(settings.group): \(tp)@\(slot.offset) failed on its last delivery (\(count)) and is rejected\(settings.deadLetter.map { " to \($0)" } ?? ""): \(error)")
                } else {
                    acks.set(tp, slot.offset, .release)
                    source.logger.info("queue \(settings.group): \(tp)@\(slot.offset) failed on delivery \(count) of \(settings.maxDeliveries) and is released: \(error)")
                }
                return
            }
            // Halve: whole items while there are several, else the one item's records.
            var first: [(TopicPartition, RecordBatch)] = [], second: [(TopicPartition, RecordBatch)] = []
            if items.count > 1 {
                first = Array(items[..<(items.count / 2)])
                second = Array(items[(items.count / 2)...])
            } else {
                let (tp, b) = items[0]
                let half = b.slots.count / 2
                var a = b.emptied(reservingCapacity: half), c = b.emptied(reservingCapacity: b.slots.count - half)
                a.slots.append(contentsOf: b.slots[..<half])
                c.slots.append(contentsOf: b.slots[half...])
                first = [(tp, a)]
                second = [(tp, c)]
            }
            try await settle(first, batch: batch, acks: &acks, accepted: &accepted)
            try await settle(second, batch: batch, acks: &acks, accepted: &accepted)
        }
    }

    /// Drained: the group has settled every record the topic has.
    private func caughtUp(_ topic: TopicName) async throws -> Bool {
        guard let d = await broker.shares.describe(settings.group) else { return false }
        let count = try broker.partitionCount(topic)
        for p in 0..<count {
            let end = try broker.partition(TopicPartition(topic, p)).highWatermark
            let start = d.partitions.first { $0.topicPartition == TopicPartition(topic, p) }?.startOffset
            if end > 0 && (start ?? -1) < end { return false }
        }
        return true
    }
}
