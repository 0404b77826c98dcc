// The component API's broker-facing protocols (SluiceComponents' LaneOutput and
// ComponentServices), implemented over the embedded broker.
import SluiceBroker
import SluiceLog

/// A lane's producer as a component sees it.
struct ProducerOutput: LaneOutput {
    let producer: Producer

    func send(_ builder: inout RecordBatchBuilder, topic: String, partition: Int32) async throws {
        _ = try await producer.send(&builder, to: TopicPartition(try TopicName(topic), partition))
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
        ProducerOutput(producer: try await Producer(broker: broker))
    }
}
