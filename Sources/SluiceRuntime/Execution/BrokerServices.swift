// The component API's broker-facing protocols (SluiceComponents' LaneOutput and
// ComponentServices), implemented over the embedded broker.
import SluiceBroker
import SluiceLog
import Synchronization

/// A producer of the embedded broker as a component sees it.
final class ProducerOutput: LaneOutput {
    let producer: Producer
    private let broker: EmbeddedBroker
    /// Last offset sent per partition since the last flush (outside transactions).
    private let pending = Mutex<[TopicPartition: Int64]>([:])

    init(producer: Producer, broker: EmbeddedBroker) {
        self.producer = producer
        self.broker = broker
    }

    func send(_ builder: inout RecordBatchBuilder, topic: String, partition: Int32) async throws {
        let tp = TopicPartition(try TopicName(topic), partition)
        let result = try await producer.send(&builder, to: tp)
        if producer.config.transactionalId == nil {
            pending.withLock { $0[tp] = max($0[tp] ?? -1, result.lastOffset) }
        }
    }

    /// Durable under each topic's flush policy: one group commit covers every lane's writes.
    func flush() async throws {
        let last = pending.withLock { p -> [TopicPartition: Int64] in defer { p.removeAll() }; return p }
        for (tp, offset) in last { try await broker.partition(tp).log.waitUntilDurable(offset) }
    }

    func partitionCount(_ topic: String) async throws -> Int32 {
        try broker.partitionCount(try TopicName(topic))
    }
}

/// What built-ins may ask of the broker while they are built.
struct BrokerServices: ComponentServices {
    let broker: EmbeddedBroker

    func ensureTopic(_ topic: String, partitions: Int32, retentionMs: Int64) throws {
        let name = try TopicName(topic)
        guard !broker.topics.exists(name) else { return }
        do { try broker.topics.create(name, config: TopicConfig(partitions: partitions, retentionMs: retentionMs)) } catch let e as BrokerError where e.code == .topicExists {}
    }

    func partitionCount(_ topic: String) -> Int32? {
        guard let name = try? TopicName(topic) else { return nil }
        return try? broker.partitionCount(name)
    }

    func output() async throws -> any LaneOutput {
        ProducerOutput(producer: try await Producer(broker: broker), broker: broker)
    }
}
