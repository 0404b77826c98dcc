// The plug-in surface for consumer-group partition assignment (Kafka's
// `ConsumerPartitionAssignor`, reduced to what the group leader computes).

/// Computes which member of a consumer group consumes which partitions.
///
/// Assignors are pure functions of their input: the same members and metadata always give
/// the same assignment, whatever order `members` comes in.
///
/// ```swift
/// let orders = try TopicName("orders")
/// let members = [
///     AssignorMember(memberId: "c1", topics: [orders]),
///     AssignorMember(memberId: "c2", topics: [orders]),
/// ]
/// let plan = RangeAssignor().assign(members: members, partitionsPerTopic: [orders: 3])
/// // plan == ["c1": [orders-0, orders-1], "c2": [orders-2]]
/// ```
public protocol PartitionAssignor: Sendable {
    /// Kafka's protocol name: "range", "roundrobin", "cooperative-sticky".
    var name: String { get }
    /// The rebalance protocol this assignor's output is meant for.
    var rebalanceProtocol: RebalanceProtocol { get }
    /// Assignment per member id. Every member id in `members` appears in the result (possibly
    /// with []); each list is sorted by (topic, partition).
    ///
    /// - Parameters:
    ///   - members: The group's members; ids must be unique.
    ///   - partitionsPerTopic: Partition counts of the topics the metadata knows. Subscribed
    ///     topics missing here (or with no partitions) are not assigned.
    func assign(members: [AssignorMember], partitionsPerTopic: [TopicName: Int32]) -> [String: [TopicPartition]]
}
