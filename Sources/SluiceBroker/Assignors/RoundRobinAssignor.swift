// Kafka's "roundrobin" assignor: all partitions dealt out to the members like cards.

/// Kafka's round-robin assignor (eager).
///
/// All partitions of the subscribed topics, sorted by (topic, partition), are dealt to the
/// members in member order (static members by `groupInstanceId`, then dynamic members by
/// `memberId`), going round; a member not subscribed to a partition's topic is skipped for
/// that partition. With two members `c1`, `c2` and topics `t0`, `t1` of 3 partitions each:
///
/// ```
/// c1: t0-0, t0-2, t1-1
/// c2: t0-1, t1-0, t1-2
/// ```
///
/// With identical subscriptions every member's count is within one of every other's.
public struct RoundRobinAssignor: PartitionAssignor {
    public var name: String { "roundrobin" }
    public var rebalanceProtocol: RebalanceProtocol { .eager }

    public init() {}

    public func assign(members: [AssignorMember], partitionsPerTopic: [TopicName: Int32]) -> [String: [TopicPartition]] {
        let ordered = members.sorted(by: AssignorMember.precedes)
        let subscriptions = ordered.map { Set($0.topics.filter { (partitionsPerTopic[$0] ?? 0) > 0 }) }
        let topics = subscriptions.reduce(into: Set<TopicName>()) { $0.formUnion($1) }.sorted()
        var lists = [[TopicPartition]](repeating: [], count: ordered.count)
        var turn = 0
        for topic in topics {
            for partition in 0..<partitionsPerTopic[topic]! {
                // Terminates: somebody subscribes to `topic`, or it would not be in `topics`.
                while !subscriptions[turn].contains(topic) { turn = (turn + 1) % ordered.count }
                lists[turn].append(TopicPartition(topic, partition))
                turn = (turn + 1) % ordered.count
            }
        }
        return Dictionary(zip(ordered.map(\.memberId), lists), uniquingKeysWith: { first, _ in first })
    }
}
