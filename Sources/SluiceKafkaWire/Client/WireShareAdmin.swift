// The share-group admin requests a queue source sends over the wire: setting the group's
// configs (IncrementalAlterConfigs on a GROUP resource) and asking whether the group has
// settled every record of a topic (Metadata for the partitions, DescribeShareGroupOffsets v1
// for each one's lag).
import SluiceBroker

public enum WireShareAdmin {
    /// Sets `configs` on share group `group`; a refusal is an error naming the broker.
    public static func alterGroupConfigs(_ connection: KafkaClientConnection, group: String, _ configs: [(String, String)]) async throws {
        var request = IncrementalAlterConfigsRequest()
        request.resources = [.init(resourceType: 32, resourceName: group, configs: configs.map { name, value in
            // An empty value deletes the config (back to the default).
            .init(name: name, configOperation: value.isEmpty ? 1 : 0, value: value.isEmpty ? nil : value)
        })]
        let response = try await connection.send(request, version: 1)
        for r in response.responses where r.errorCode != 0 {
            throw KafkaClientError("broker \(connection.peer) refused the configs of share group '\(group)': \(r.errorMessage ?? "error code \(r.errorCode)")")
        }
    }

    /// True when the group's lag is 0 on every partition of `topic` (a partition the group
    /// has not read yet counts as unsettled unless the topic is empty there).
    public static func settled(_ connection: KafkaClientConnection, group: String, topic: TopicName) async throws -> Bool {
        var meta = MetadataRequest()
        meta.topics = [.init(topicId: .zero, name: topic.rawValue)]
        meta.allowAutoTopicCreation = false
        guard let t = try await connection.send(meta, version: 12).topics.first, t.errorCode == 0 else { return false }
        var request = DescribeShareGroupOffsetsRequest()
        request.groups = [.init(groupId: group, topics: [.init(topicName: topic.rawValue, partitions: t.partitions.map(\.partitionIndex).sorted())])]
        let response = try await connection.send(request, version: 1)
        guard let g = response.groups.first, g.errorCode == 0 else { return false }
        let parts = g.topics.flatMap(\.partitions)
        guard parts.count == t.partitions.count else { return false }
        return parts.allSatisfy { $0.errorCode == 0 && $0.startOffset >= 0 && $0.lag == 0 }
    }
}
