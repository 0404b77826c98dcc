// The group member as the partition assignors see it, and the one member order all three
// assignors share. Plain value type; thread-safe.

/// One group member as an assignor sees it.
///
/// The coordinator builds one per member from the member's JoinGroup metadata:
///
/// ```swift
/// let member = AssignorMember(
///     memberId: "consumer-1-5f2c", topics: [try TopicName("orders")],
///     ownedPartitions: [TopicPartition(try TopicName("orders"), 0)], generation: 7)
/// ```
///
/// Member ids are unique within a group (the coordinator issues them).
public struct AssignorMember: Sendable, Hashable {
    /// The coordinator-issued member id; the key of the assignment.
    public var memberId: String
    /// The static-membership id (`group.instance.id`), or nil for a dynamic member.
    ///
    /// When set, the assignors order the member by it instead of by `memberId`, so a static
    /// member that restarts with a new member id keeps its place (and, with the range
    /// assignor, its partitions). Static members come before dynamic ones, as in Kafka.
    public var groupInstanceId: String?
    /// The topics the member subscribes to. Topics missing from the metadata are ignored.
    public var topics: [TopicName]
    /// What the member owned before this rebalance (cooperative protocol). The eager
    /// assignors ignore it.
    public var ownedPartitions: [TopicPartition]
    /// The generation `ownedPartitions` was assigned in, or -1 when unknown. When two members
    /// claim the same partition, the claim from the higher generation wins.
    public var generation: Int32

    public init(
        memberId: String, groupInstanceId: String? = nil, topics: [TopicName],
        ownedPartitions: [TopicPartition] = [], generation: Int32 = -1
    ) {
        self.memberId = memberId
        self.groupInstanceId = groupInstanceId
        self.topics = topics
        self.ownedPartitions = ownedPartitions
        self.generation = generation
    }
}

extension AssignorMember {
    /// Kafka's member order for assignment (its `MemberInfo` order): static members first, by
    /// `groupInstanceId`; then dynamic members, by `memberId`. Strings compare by their UTF-8
    /// bytes (code point order), which is cheap and never depends on normalisation.
    static func precedes(_ a: AssignorMember, _ b: AssignorMember) -> Bool {
        switch (a.groupInstanceId, b.groupInstanceId) {
        case let (x?, y?) where x != y: return x.utf8.lexicographicallyPrecedes(y.utf8)
        case (_?, nil): return true
        case (nil, _?): return false
        default: return a.memberId.utf8.lexicographicallyPrecedes(b.memberId.utf8)
        }
    }
}
