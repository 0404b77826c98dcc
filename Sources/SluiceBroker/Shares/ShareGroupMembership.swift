// ShareGroupMembership: who is in a share group and which partitions each member fetches, as
// KIP-932's heartbeat keeps it. Members choose their own ids; every change of members or
// subscriptions bumps the group epoch and recomputes the assignment at once (share groups do
// not revoke: several members may fetch one partition, so there is nothing to hand over).
// A pure value: heartbeats and expiry take `now`.

public struct ShareMember: Sendable, Hashable {
    public var memberId: String
    /// The epoch last given to the member, and the one before (accepted once more in case the
    /// answer that carried the new one was lost).
    public var epoch: Int32
    public var previousEpoch: Int32
    public var clientId: String
    public var clientHost: String
    public var rackId: String?
    public var topics: [String]
    public var lastHeartbeatMs: Int64
    public var assignment: [TopicPartition]
}

public struct ShareHeartbeatResult: Sendable, Hashable {
    public var memberEpoch: Int32
    /// The member's partitions when they changed, or on a join (nil: unchanged).
    public var assignment: [TopicPartition]?
}

public struct ShareGroupMembership: Sendable {
    public let groupId: String
    public private(set) var epoch: Int32 = 0
    public private(set) var members: [String: ShareMember] = [:]

    public init(groupId: String) { self.groupId = groupId }

    /// A heartbeat (KIP-932): epoch 0 joins, -1 leaves, otherwise the member's current epoch
    /// (or the one before, when the last answer was lost). `topics` nil means unchanged.
    /// `partitions` gives a topic's partition count (nil: no such topic).
    public mutating func heartbeat(memberId: String, epoch memberEpoch: Int32, topics: [String]?, clientId: String, clientHost: String, rackId: String?, now: Int64, partitions: (String) -> Int32?) throws(BrokerError) -> ShareHeartbeatResult {
        guard !memberId.isEmpty else { throw BrokerError(.invalidRequest, "a share group member must send its own member id") }
        if memberEpoch == -1 {
            guard members.removeValue(forKey: memberId) != nil else {
                throw BrokerError(.unknownMemberId, "share group '\(groupId)' has no member '\(memberId)'")
            }
            bump(partitions)
            return ShareHeartbeatResult(memberEpoch: -1, assignment: nil)
        }
        if memberEpoch == 0 {
            var m = members[memberId] ?? ShareMember(memberId: memberId, epoch: 0, previousEpoch: 0, clientId: clientId, clientHost: clientHost, rackId: rackId, topics: [], lastHeartbeatMs: now, assignment: [])
            m.topics = topics ?? m.topics
            m.rackId = rackId ?? m.rackId
            m.lastHeartbeatMs = now
            members[memberId] = m
            bump(partitions)
            return catchUp(memberId, full: true)
        }
        guard var m = members[memberId] else {
            throw BrokerError(.unknownMemberId, "share group '\(groupId)' has no member '\(memberId)'; rejoin with epoch 0")
        }
        guard memberEpoch == m.epoch || memberEpoch == m.previousEpoch else {
            throw BrokerError(.fencedMemberEpoch, "member '\(memberId)' of share group '\(groupId)' sent epoch \(memberEpoch), but its epoch is \(m.epoch); rejoin")
        }
        m.lastHeartbeatMs = now
        if let rackId { m.rackId = rackId }
        let full = memberEpoch != m.epoch
        members[memberId] = m
        if let topics, topics != m.topics {
            members[memberId]!.topics = topics
            bump(partitions)
        }
        return catchUp(memberId, full: full)
    }

    /// Gives the member the group's epoch and its assignment when it is behind (or `full`).
    private mutating func catchUp(_ memberId: String, full: Bool) -> ShareHeartbeatResult {
        var m = members[memberId]!
        guard m.epoch != epoch else { return ShareHeartbeatResult(memberEpoch: m.epoch, assignment: full ? m.assignment : nil) }
        m.previousEpoch = m.epoch
        m.epoch = epoch
        members[memberId] = m
        return ShareHeartbeatResult(memberEpoch: epoch, assignment: m.assignment)
    }

    /// Removes members whose last heartbeat is older than `sessionTimeoutMs`; returns them.
    public mutating func expire(now: Int64, sessionTimeoutMs: Int64, partitions: (String) -> Int32?) -> [ShareMember] {
        let gone = members.values.filter { now - $0.lastHeartbeatMs > sessionTimeoutMs }
        guard !gone.isEmpty else { return [] }
        for m in gone { members.removeValue(forKey: m.memberId) }
        bump(partitions)
        return gone
    }

    /// Recomputes assignments after a topic's partition count changed.
    public mutating func partitionsChanged(_ partitions: (String) -> Int32?) { bump(partitions) }

    /// A new group epoch and assignment: each partition of a topic goes to at least one of the
    /// members subscribing to it, and each such member gets at least one partition (with more
    /// members than partitions, members share them).
    private mutating func bump(_ partitions: (String) -> Int32?) {
        epoch += 1
        var assigned: [String: [TopicPartition]] = [:]
        let topics = Set(members.values.flatMap(\.topics))
        for topic in topics.sorted() {
            guard let count = partitions(topic), count > 0, let name = try? TopicName(topic) else { continue }
            let subscribers = members.values.filter { $0.topics.contains(topic) }.map(\.memberId).sorted()
            if subscribers.count <= Int(count) {
                for p in 0..<count { assigned[subscribers[Int(p) % subscribers.count], default: []].append(TopicPartition(name, p)) }
            } else {
                for (i, id) in subscribers.enumerated() { assigned[id, default: []].append(TopicPartition(name, Int32(i % Int(count)))) }
            }
        }
        for id in members.keys { members[id]!.assignment = assigned[id] ?? [] }
    }
}
