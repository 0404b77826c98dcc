// ConsumerGroupState: a consumer group on Kafka's consumer protocol (KIP-848). The broker
// computes the assignment ("uniform": sticky and balanced; or "range") whenever members or
// subscriptions change, and each member reconciles toward its target through its own
// heartbeats, without a group-wide barrier:
//   - partitions it owns but should not are revoked first: until its heartbeat reports them
//     gone it keeps its old epoch and is told only the partitions it keeps;
//   - then it moves to the target epoch and gets its new partitions, except those another
//     member still has to revoke, which follow once released.
// Only partitions that move are revoked. A pure value: every call takes `now`.
import Foundation

public struct ConsumerMember: Sendable, Hashable {
    public var memberId: String
    public var instanceId: String?
    public var rackId: String?
    public var clientId: String
    public var clientHost: String
    /// The epoch last given to the member, and the one before it.
    public var epoch: Int32
    public var previousEpoch: Int32
    public var topics: [String]
    public var rebalanceTimeoutMs: Int32
    public var lastHeartbeatMs: Int64
    /// What the member owns as far as the group knows (given to it, not yet revoked).
    public var owned: [TopicPartition]
    /// Owned partitions it has been asked to give up.
    public var revoking: [TopicPartition]
    /// When it must have revoked them by (then it is fenced).
    public var revokeDeadlineMs: Int64?
    /// Set for a member on the classic protocol (a group being migrated, see MixedGroups).
    public var classic: ClassicMembership? = nil
}

public struct ConsumerHeartbeatResult: Sendable, Hashable {
    public var memberId: String
    public var memberEpoch: Int32
    /// The member's partitions, when they changed or the request needs them (nil: unchanged).
    public var assignment: [TopicPartition]?
}

public struct ConsumerGroupState: Sendable {
    public static let assignors = ["uniform", "range"]
    public let groupId: String
    public internal(set) var epoch: Int32 = 0
    public internal(set) var assignmentEpoch: Int32 = 0
    public internal(set) var members: [String: ConsumerMember] = [:]
    /// The target assignment of `assignmentEpoch`.
    public internal(set) var target: [String: [TopicPartition]] = [:]
    public internal(set) var assignor = "uniform"

    public init(groupId: String) { self.groupId = groupId }

    /// The group's state as ConsumerGroupDescribe names it.
    public var state: String {
        if members.isEmpty { return "Empty" }
        if assignmentEpoch < epoch { return "Assigning" }
        return members.values.allSatisfy({ $0.epoch == assignmentEpoch && $0.revoking.isEmpty && Set($0.owned) == Set(target[$0.memberId] ?? []) }) ? "Stable" : "Reconciling"
    }

    /// Who owns `tp` now (nil: free).
    public func owner(of tp: TopicPartition) -> String? {
        members.values.first { $0.owned.contains(tp) }?.memberId
    }

    /// One ConsumerGroupHeartbeat. `owned` is what the member reports owning (nil: not sent);
    /// `topics` nil means unchanged. Epoch 0 joins, -1 leaves, -2 leaves for now (a static
    /// member), anything else must be the member's epoch (or the one before it).
    public mutating func heartbeat(memberId requested: String, epoch memberEpoch: Int32, instanceId: String?, rackId: String?, rebalanceTimeoutMs: Int32,
                                   topics: [String]?, serverAssignor: String?, owned reported: [TopicPartition]?,
                                   clientId: String, clientHost: String, now: Int64, partitions: (String) -> Int32?) throws(BrokerError) -> ConsumerHeartbeatResult {
        // v1 clients choose their id; v0 clients (librdkafka's early access) join without one.
        var memberId = requested
        if memberId.isEmpty {
            guard memberEpoch == 0 else { throw BrokerError(.unknownMemberId, "a consumer-protocol member without an id must join with epoch 0") }
            memberId = UUID().uuidString.lowercased()
        }
        if let a = serverAssignor, !Self.assignors.contains(a) {
            throw BrokerError(.unsupportedAssignor, "server assignor '\(a)' is not supported (supported: \(Self.assignors.joined(separator: ", ")))")
        }
        if memberEpoch == -1 || memberEpoch == -2 {
            guard members.removeValue(forKey: memberId) != nil else {
                throw BrokerError(.unknownMemberId, "consumer group '\(groupId)' has no member '\(memberId)'")
            }
            bump(partitions, now: now)
            return ConsumerHeartbeatResult(memberId: memberId, memberEpoch: memberEpoch, assignment: nil)
        }
        if memberEpoch == 0 {
            if let instanceId, let other = members.values.first(where: { $0.instanceId == instanceId && $0.memberId != memberId }) {
                throw BrokerError(.unreleasedInstanceId, "instance '\(instanceId)' of consumer group '\(groupId)' is still member \(other.memberId)")
            }
            guard let topics, !topics.isEmpty else {
                throw BrokerError(.invalidRequest, "a joining member of consumer group '\(groupId)' must name the topics it subscribes to")
            }
            // A member rejoining with its id (after it was fenced) starts again with nothing.
            members[memberId] = ConsumerMember(memberId: memberId, instanceId: instanceId, rackId: rackId, clientId: clientId, clientHost: clientHost,
                                               epoch: 0, previousEpoch: 0, topics: topics, rebalanceTimeoutMs: rebalanceTimeoutMs,
                                               lastHeartbeatMs: now, owned: [], revoking: [], revokeDeadlineMs: nil)
            if let serverAssignor { assignor = serverAssignor }
            bump(partitions, now: now)
            return reconcile(memberId, now: now, full: true)
        }
        guard var m = members[memberId] else {
            throw BrokerError(.unknownMemberId, "consumer group '\(groupId)' has no member '\(memberId)'; rejoin with epoch 0")
        }
        guard memberEpoch == m.epoch || memberEpoch == m.previousEpoch else {
            throw BrokerError(.fencedMemberEpoch, "member '\(memberId)' of consumer group '\(groupId)' sent epoch \(memberEpoch), but its epoch is \(m.epoch); rejoin")
        }
        m.lastHeartbeatMs = now
        if let rackId { m.rackId = rackId }
        if rebalanceTimeoutMs > 0 { m.rebalanceTimeoutMs = rebalanceTimeoutMs }
        if let reported {
            // What it reports having given up is released for others.
            let still = Set(reported)
            if !m.revoking.isEmpty && m.revoking.allSatisfy({ !still.contains($0) }) {
                m.owned.removeAll { m.revoking.contains($0) }
                m.revoking = []
                m.revokeDeadlineMs = nil
            }
        }
        members[memberId] = m
        if let topics, topics != m.topics {
            members[memberId]!.topics = topics
            bump(partitions, now: now)
        }
        // A lost answer (the previous epoch) or a full request (topics and partitions sent) gets the whole assignment.
        return reconcile(memberId, now: now, full: memberEpoch != m.epoch || (topics != nil && reported != nil))
    }

    /// Moves the member toward its target: revoke first, then take what is free.
    mutating func reconcile(_ memberId: String, now: Int64, full: Bool) -> ConsumerHeartbeatResult {
        var m = members[memberId]!
        let before = (m.epoch, m.owned)
        let wanted = Set(target[memberId] ?? [])
        if m.revoking.isEmpty {
            let revoke = m.owned.filter { !wanted.contains($0) }
            if !revoke.isEmpty {
                // Keep the old epoch until these are gone; the member sees them missing.
                m.revoking = revoke
                m.revokeDeadlineMs = now + Int64(max(1, m.rebalanceTimeoutMs))
                members[memberId] = m
                return ConsumerHeartbeatResult(memberId: memberId, memberEpoch: m.epoch, assignment: m.owned.filter { wanted.contains($0) })
            }
            // Nothing to give up: take the target's partitions that nobody else holds.
            var taken = m.owned
            for tp in (target[memberId] ?? []) where !taken.contains(tp) {
                if let other = owner(of: tp), other != memberId { continue }
                taken.append(tp)
            }
            m.owned = taken
            if m.epoch != assignmentEpoch {
                m.previousEpoch = m.epoch
                m.epoch = assignmentEpoch
            }
            members[memberId] = m
            let changed = before.0 != m.epoch || before.1 != m.owned
            return ConsumerHeartbeatResult(memberId: memberId, memberEpoch: m.epoch, assignment: changed || full ? m.owned.sorted() : nil)
        }
        // Still revoking: it keeps what it is allowed to keep.
        return ConsumerHeartbeatResult(memberId: memberId, memberEpoch: m.epoch, assignment: full ? m.owned.filter { wanted.contains($0) }.sorted() : nil)
    }

    /// Removes members whose session ran out or that did not revoke in time; returns them.
    public mutating func expire(now: Int64, sessionTimeoutMs: Int64, partitions: (String) -> Int32?) -> [(ConsumerMember, String)] {
        var gone: [(ConsumerMember, String)] = []
        for m in members.values {
            let session = m.classic.map { Int64($0.sessionTimeoutMs) } ?? sessionTimeoutMs
            if now - m.lastHeartbeatMs > session {
                gone.append((m, "no heartbeat for \(session) ms"))
            } else if let d = m.classic?.rejoinDeadlineMs, now > d {
                gone.append((m, "it did not rejoin within its rebalance timeout (\(m.rebalanceTimeoutMs) ms)"))
            } else if let d = m.revokeDeadlineMs, now > d {
                gone.append((m, "it did not revoke \(m.revoking.map(\.description).joined(separator: ", ")) within its rebalance timeout (\(m.rebalanceTimeoutMs) ms)"))
            }
        }
        guard !gone.isEmpty else { return [] }
        for (m, _) in gone { members.removeValue(forKey: m.memberId); target.removeValue(forKey: m.memberId) }
        bump(partitions, now: now)
        return gone
    }

    /// A topic's partition count changed.
    public mutating func partitionsChanged(_ partitions: (String) -> Int32?, now: Int64) { bump(partitions, now: now) }

    /// A new group epoch and its target assignment.
    mutating func bump(_ partitions: (String) -> Int32?, now: Int64) {
        epoch += 1
        var counts: [TopicName: Int32] = [:]
        for t in Set(members.values.flatMap(\.topics)) {
            if let n = partitions(t), n > 0, let name = try? TopicName(t) { counts[name] = n }
        }
        let inputs = members.values.sorted { $0.memberId < $1.memberId }.map { m in
            AssignorMember(memberId: m.memberId, groupInstanceId: m.instanceId, topics: m.topics.compactMap { try? TopicName($0) },
                           ownedPartitions: m.owned, generation: m.epoch)
        }
        if assignor == "range" {
            target = RangeAssignor().assign(members: inputs, partitionsPerTopic: counts)
        } else {
            target = UniformAssignor.assign(members: inputs, partitionsPerTopic: counts)
        }
        assignmentEpoch = epoch
    }
}

/// KIP-848's "uniform" server assignor: balanced and sticky, the full plan (partitions that
/// move are in their new owner's target; the protocol revokes them from the old one first).
enum UniformAssignor {
    static func assign(members: [AssignorMember], partitionsPerTopic: [TopicName: Int32]) -> [String: [TopicPartition]] {
        let assignment = StickyAssignment(members: members, partitionsPerTopic: partitionsPerTopic)
        if assignment.allSubscriptionsEqual { return assignment.withTransfers(assignment.planForEqualSubscriptions()) }
        var balancer = StickyBalancer(assignment)
        balancer.placeUnowned()
        balancer.balance(freshOnly: true)
        balancer.balance(freshOnly: false)
        return assignment.withTransfers(balancer.plan)
    }
}
