// Queue sources on a Kafka-protocol broker: this build's librdkafka has no share consumer, so
// each worker is Sluice's own share-group member (SluiceKafkaWire's WireShareConsumer) on a
// connection of its own to the first bootstrap broker that answers; sinks still go through
// librdkafka. Workers in several `sluice run` processes (and Kafka share consumers) share
// the group. The broker must be the group's coordinator and the partitions' leader, as
// `sluice serve` and a one-broker cluster are; PLAINTEXT only.
#if RdKafka
import Foundation
import Logging
import SluiceBroker
import SluiceKafkaWire
import SluiceRuntime

struct WireQueueBroker: QueueBroker {
    let bootstrap: [(host: String, port: Int)]
    let label: String

    init(settings: RdKafkaSettings, pipeline: String, source: String) throws {
        if let p = settings.properties["security.protocol"], p.lowercased() != "plaintext" {
            throw PipelineRunError(pipeline: pipeline, message: "queue source '\(source)': Sluice's share-group client speaks PLAINTEXT only, and \(settings.propertiesLabel) sets security.protocol=\(p)")
        }
        bootstrap = settings.bootstrap.split(separator: ",").compactMap { h in
            let parts = h.split(separator: ":")
            guard parts.count == 2, let port = Int(parts[1]) else { return nil }
            return (String(parts[0]), port)
        }
        label = settings.bootstrap
    }

    /// A connection to the first bootstrap broker that takes one.
    private func connect(_ clientId: String) async throws -> KafkaClientConnection {
        var last: (any Error)?
        for (host, port) in bootstrap {
            do { return try await KafkaClientConnection.connect(host: host, port: port, clientId: clientId) } catch { last = error }
        }
        throw last ?? KafkaClientError("no bootstrap broker in \(label)")
    }

    func configure(group: String, _ configs: [(String, String)]) async throws {
        let c = try await connect("sluice-queue-admin")
        defer { Task { await c.close() } }
        try await WireShareAdmin.alterGroupConfigs(c, group: group, configs)
    }

    func member(_ config: ShareConsumerConfig, topic: TopicName, logger: Logger) async throws -> any QueueMember {
        var config = config
        config.clientId += "@\(ProcessInfo.processInfo.hostName):\(getpid())"
        return WireShareConsumer(connection: try await connect(config.clientId), config: config, topics: [topic], logger: logger)
    }

    func settled(group: String, topic: TopicName) async throws -> Bool {
        let c = try await connect("sluice-queue-admin")
        defer { Task { await c.close() } }
        return try await WireShareAdmin.settled(c, group: group, topic: topic)
    }

    func reconnects(after error: any Error) -> Bool { error is KafkaClientError }
}

extension WireShareConsumer: QueueMember {
    package func nextBatch(maxWait: Duration) async throws -> ShareBatch { try await poll(maxWait: maxWait) }
    package func settle(_ acks: ShareAcknowledgements) async throws { try await acknowledge(acks) }
    package func leave() async { await close() }
}
#endif
