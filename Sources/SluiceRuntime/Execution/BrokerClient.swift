// BrokerClient: what a running pipeline needs of a broker. The runner creates the declared
// topics, builds components against the client's services and hands each topic source to
// the client, which runs it under the pipeline's guarantee with its own consumer and
// producers. Two implementations: the embedded broker (here) and librdkafka (SluiceRdKafka,
// built with the RdKafka trait). The runner does not know which one it has.
import Logging
import SluiceBroker

public protocol BrokerClient: Sendable {
    /// What the client is, for messages: "embedded" or the bootstrap URL.
    var name: String { get }
    /// Creates the declared topics that do not exist yet; existing ones are left as they are.
    func createTopics(_ topics: [TopicDeclaration]) async throws
    /// What components may ask of the broker while they are built.
    var services: any ComponentServices { get }
    /// Runs one topic source as a consumer-group member until it is cancelled or, with
    /// `drain`, until it has caught up with its partitions' ends.
    func runTopicSource(_ source: TopicSourceRun) async throws
    /// Runs one queue source's workers as share-group members.
    func runQueueSource(_ source: QueueSourceRun) async throws
}

extension BrokerClient {
    public func runQueueSource(_ source: QueueSourceRun) async throws {
        throw PipelineRunError(pipeline: source.pipelineName, message: "queue source '\(source.id)': broker \(name) has no share-group client")
    }
}

/// The embedded broker in this process.
public struct EmbeddedBrokerClient: BrokerClient {
    public let broker: EmbeddedBroker
    public init(_ broker: EmbeddedBroker) { self.broker = broker }

    public var name: String { "embedded" }
    public var services: any ComponentServices { BrokerServices(broker: broker) }

    public func createTopics(_ topics: [TopicDeclaration]) async throws {
        for t in topics {
            let name = try TopicName(t.name)
            if !broker.topics.exists(name) {
                do {
                    try broker.topics.create(name, config: TopicConfig(partitions: t.partitions, flush: t.flush, retentionMs: t.retentionMs))
                } catch let e as BrokerError where e.code == .topicExists {
                    // Another pipeline in this process created it first.
                }
            }
        }
    }

    public func runTopicSource(_ source: TopicSourceRun) async throws {
        switch source.guarantee {
        case .exactlyOnce: try await ExactlyOnceDriver(source: source, broker: broker).run()
        case .atLeastOnce: try await AtLeastOnceDriver(source: source, broker: broker).run()
        }
    }

    public func runQueueSource(_ source: QueueSourceRun) async throws {
        try await QueueDriver(source: source, broker: EmbeddedQueueBroker(broker: broker)).run()
    }
}
