// Kafka's "cooperative-sticky" assignor: the public face. The planning lives in
// StickyAssignment (claims, equal subscriptions) and StickyBalancer (differing ones).

/// Kafka's cooperative sticky assignor (cooperative protocol).
///
/// Three goals, in this order:
/// 1. **Balance.** With identical subscriptions every member's count is within one of every
///    other member's. With differing subscriptions the counts are as even as the
///    subscriptions allow: no partition can be passed on, directly or along a chain of
///    members, to a member that holds two or more fewer.
/// 2. **Stickiness.** Members keep as many of their `ownedPartitions` as balance allows; the
///    number of partitions that change owner is the minimum needed (for identical
///    subscriptions). Owned partitions of topics no longer subscribed to, or that no longer
///    exist, are ignored. When two members claim the same partition, the claim from the
///    higher `generation` wins; on a tie, the member first in member order (static members
///    by `groupInstanceId`, then dynamic members by `memberId`) wins.
/// 3. **Cooperation.** A partition that would move from its current owner A to another
///    member B is left out of the result entirely: A sees it gone and revokes it, then
///    rejoins, and the follow-up rebalance (where nobody owns it) gives it to B. After that
///    one follow-up the assignment is complete and stable (assigning again changes nothing).
///
/// A member joining a group of two that owns `t0-0...t0-3` between them:
///
/// ```
/// round 1: c1 owns [t0-0, t0-1, t0-2], c2 owns [t0-3], c3 is new
///          → c1: [t0-0, t0-1], c2: [t0-3], c3: []      (c1 revokes t0-2)
/// round 2: c1 owns [t0-0, t0-1], c2 owns [t0-3], c3 owns []
///          → c1: [t0-0, t0-1], c2: [t0-3], c3: [t0-2]
/// ```
///
/// The output is a pure function of the input. With identical subscriptions the work is
/// O(P log P + M log M) for P partitions and M members, plus one dictionary lookup per owned
/// partition. Differing subscriptions cost more: each balancing step searches the graph of
/// members that could pass partitions to each other.
public struct CooperativeStickyAssignor: PartitionAssignor {
    public var name: String { "cooperative-sticky" }
    public var rebalanceProtocol: RebalanceProtocol { .cooperative }

    public init() {}

    public func assign(members: [AssignorMember], partitionsPerTopic: [TopicName: Int32]) -> [String: [TopicPartition]] {
        let assignment = StickyAssignment(members: members, partitionsPerTopic: partitionsPerTopic)
        let plan: [[Int]]
        if assignment.allSubscriptionsEqual {
            plan = assignment.planForEqualSubscriptions()
        } else {
            var balancer = StickyBalancer(assignment)
            balancer.placeUnowned()
            // Fresh partitions first: moves that cost nobody a revocation.
            balancer.balance(freshOnly: true)
            balancer.balance(freshOnly: false)
            plan = balancer.plan
        }
        return assignment.withoutTransfers(plan)
    }
}
