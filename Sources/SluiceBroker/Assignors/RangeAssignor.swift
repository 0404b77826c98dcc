// Kafka's "range" assignor: each topic on its own, split into contiguous ranges.

/// Kafka's range assignor (eager).
///
/// For each topic independently, the members subscribed to it are put in member order
/// (static members by `groupInstanceId`, then dynamic members by `memberId`) and the
/// partitions are split into contiguous ranges; the first `partitions % members` members get
/// one partition more. With two members `c1`, `c2` and topics `t0`, `t1` of 3 partitions each:
///
/// ```
/// c1: t0-0, t0-1, t1-0, t1-1
/// c2: t0-2, t1-2
/// ```
///
/// Members with the same subscriptions get the same partition numbers of co-partitioned
/// topics, which is what joins need; the price is imbalance across many topics (the first
/// members get the extra partition of every topic).
public struct RangeAssignor: PartitionAssignor {
    public var name: String { "range" }
    public var rebalanceProtocol: RebalanceProtocol { .eager }

    public init() {}

    public func assign(members: [AssignorMember], partitionsPerTopic: [TopicName: Int32]) -> [String: [TopicPartition]] {
        let ordered = members.sorted(by: AssignorMember.precedes)
        // Members subscribed to each known topic, as indices into `ordered`, in member order.
        var subscribers: [TopicName: [Int]] = [:]
        for (index, member) in ordered.enumerated() {
            for topic in member.topics where (partitionsPerTopic[topic] ?? 0) > 0 && subscribers[topic]?.last != index {
                subscribers[topic, default: []].append(index)
            }
        }
        var lists = [[TopicPartition]](repeating: [], count: ordered.count)
        // Topics in order, so that every list comes out sorted.
        for topic in subscribers.keys.sorted() {
            let indices = subscribers[topic]!
            let count = Int(partitionsPerTopic[topic]!)
            let share = count / indices.count
            let extra = count % indices.count
            var next = 0
            for (position, index) in indices.enumerated() {
                let length = share + (position < extra ? 1 : 0)
                lists[index].append(contentsOf: (next..<next + length).map { TopicPartition(topic, PartitionID($0)) })
                next += length
            }
        }
        return Dictionary(zip(ordered.map(\.memberId), lists), uniquingKeysWith: { first, _ in first })
    }
}
