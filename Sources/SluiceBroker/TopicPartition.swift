// A (topic, partition) pair: the unit of assignment, fetching and committing.

public struct TopicPartition: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var topic: TopicName
    public var partition: PartitionID

    public init(_ topic: TopicName, _ partition: PartitionID) {
        self.topic = topic
        self.partition = partition
    }

    public static func < (a: TopicPartition, b: TopicPartition) -> Bool {
        a.topic == b.topic ? a.partition < b.partition : a.topic < b.topic
    }

    public var description: String { "\(topic)-\(partition)" }
}
