// ClassicGroup: one group on Kafka's classic protocol — members, generations, the Empty →
// PreparingRebalance → CompletingRebalance → Stable cycle, static membership and fencing — as
// a pure value. Every change takes `now` and returns what must happen outside it (answer a
// waiting join or sync, tell an in-process member a rebalance started, record a snapshot); the
// GroupCoordinator holds the waiting requests and carries those actions out.

/// What a change to a classic group asks of its coordinator.
enum ClassicGroupAction: Sendable {
    case completeJoin(String, JoinGroupResponse)
    case failJoin(String, BrokerError)
    case completeSync(String, [UInt8])
    case failSync(String, BrokerError)
    /// The member's group started rebalancing (in-process members rejoin at once).
    case rebalancing(String)
    /// The member was removed.
    case removed(String)
    /// The group's state changed in a way worth recording.
    case persist
    case log(String)
}

struct ClassicGroup: Sendable {
    struct Member: Sendable {
        var memberId: String
        var groupInstanceId: String?
        var clientId: String
        var sessionTimeoutMs: Int32
        var rebalanceTimeoutMs: Int32
        var protocols: [GroupProtocol]
        var lastHeartbeatMs: Int64
        var assignment: [UInt8] = []
        /// A join of this member is waiting for the rebalance to complete.
        var waitingJoin = false
        /// A sync of this member is waiting for the leader's assignment.
        var waitingSync = false
    }

    var id: String
    var state: GroupState = .empty
    var generation: Int32 = 0
    var protocolType: String = ""
    var protocolName: String?
    var leader: String?
    var members: [String: Member] = [:]
    var joinOrder: [String] = []
    var staticMembers: [String: String] = [:]  // instance id -> member id
    var rebalanceDeadlineMs: Int64 = 0
    var emptySinceMs: Int64

    init(id: String, now: Int64) {
        self.id = id
        emptySinceMs = now
    }

    // MARK: Join

    enum JoinOutcome {
        /// Answered at once (a static member rejoining a stable group).
        case answered(JoinGroupResponse)
        /// The member (possibly under a new id) waits for the rebalance.
        case waiting(memberId: String)
    }

    /// A JoinGroup. `newMemberId` names a member joining without an id.
    mutating func join(_ request: JoinGroupRequest, config: GroupConfig, now: Int64, newMemberId: (String, String?) -> String, actions: inout [ClassicGroupAction]) throws(BrokerError) -> JoinOutcome {
        if !members.isEmpty {
            if protocolType != request.protocolType {
                throw BrokerError(.inconsistentGroupProtocol, "group '\(request.groupId)' uses protocol type '\(protocolType)', not '\(request.protocolType)'")
            }
            let common = Set(members.values.flatMap { m in m.protocols.map(\.name) })
            let offered = Set(request.protocols.map(\.name))
            let shared = members.values.reduce(offered) { acc, m in acc.intersection(m.protocols.map(\.name)) }
            if shared.isEmpty && !(members.count == 1 && members[request.memberId] != nil) {
                throw BrokerError(.inconsistentGroupProtocol, "member offers \(offered.sorted()) but group '\(request.groupId)' uses \(common.sorted())")
            }
        }
        protocolType = request.protocolType
        var memberId = request.memberId
        // Static membership: a known instance id takes over its old member id.
        if let instance = request.groupInstanceId, let old = staticMembers[instance], old != memberId {
            // A join with an older member id of the instance comes from a process that was
            // replaced: it is fenced (only a join without a member id takes over).
            if !memberId.isEmpty {
                throw BrokerError(.fencedInstanceId, "instance '\(instance)' of group '\(request.groupId)' is now member \(old); \(memberId) is fenced")
            }
            let newId = newMemberId(request.clientId, instance)
            if var m = members.removeValue(forKey: old) {
                if m.waitingJoin { actions.append(.failJoin(old, BrokerError(.fencedInstanceId, "instance '\(instance)' rejoined as another member"))) }
                if m.waitingSync { actions.append(.failSync(old, BrokerError(.fencedInstanceId, "instance '\(instance)' rejoined as another member"))) }
                m.waitingJoin = false
                m.waitingSync = false
                m.memberId = newId
                m.protocols = request.protocols
                m.lastHeartbeatMs = now
                m.sessionTimeoutMs = request.sessionTimeoutMs
                m.rebalanceTimeoutMs = request.rebalanceTimeoutMs
                members[newId] = m
                joinOrder = joinOrder.map { $0 == old ? newId : $0 }
                staticMembers[instance] = newId
                if leader == old { leader = newId }
                if state == .stable {
                    // Same protocols: no rebalance; the member resyncs to get its assignment.
                    actions.append(.log("static member \(instance) of \(id) rejoined as \(newId) without a rebalance"))
                    return .answered(JoinGroupResponse(generation: generation, protocolName: protocolName, protocolType: protocolType, leader: leader ?? newId, memberId: newId, members: newId == leader ? joinedMembers : []))
                }
                memberId = newId
            }
        }
        if memberId.isEmpty || members[memberId] == nil {
            if !memberId.isEmpty && request.groupInstanceId == nil {
                throw BrokerError(.unknownMemberId, "member '\(memberId)' is not in group '\(request.groupId)' (it was removed; rejoin without a member id)")
            }
            if memberId.isEmpty { memberId = newMemberId(request.clientId, request.groupInstanceId) }
            members[memberId] = Member(memberId: memberId, groupInstanceId: request.groupInstanceId, clientId: request.clientId, sessionTimeoutMs: request.sessionTimeoutMs, rebalanceTimeoutMs: request.rebalanceTimeoutMs, protocols: request.protocols, lastHeartbeatMs: now)
            joinOrder.append(memberId)
            if let instance = request.groupInstanceId { staticMembers[instance] = memberId }
        } else {
            members[memberId]!.protocols = request.protocols
            members[memberId]!.lastHeartbeatMs = now
            members[memberId]!.sessionTimeoutMs = request.sessionTimeoutMs
            members[memberId]!.rebalanceTimeoutMs = request.rebalanceTimeoutMs
        }
        if state != .preparingRebalance { prepareRebalance(now: now, config: config, reason: "member \(memberId) joined", actions: &actions) }
        // A member re-joining while an older join is pending: the older one gets an error.
        if members[memberId]!.waitingJoin { actions.append(.failJoin(memberId, BrokerError(.rebalanceInProgress, "a newer join replaced this one"))) }
        members[memberId]!.waitingJoin = true
        tryCompleteJoin(now: now, config: config, force: false, actions: &actions)
        return .waiting(memberId: memberId)
    }

    mutating func prepareRebalance(now: Int64, config: GroupConfig, reason: String, actions: inout [ClassicGroupAction]) {
        let wasEmpty = state == .empty || members.values.allSatisfy { $0.assignment.isEmpty } && generation == 0
        // Members waiting in sync must rejoin.
        for mid in members.keys where members[mid]!.waitingSync {
            actions.append(.failSync(mid, BrokerError(.rebalanceInProgress, "group \(id) is rebalancing: \(reason)")))
            members[mid]!.waitingSync = false
        }
        state = .preparingRebalance
        for mid in members.keys { actions.append(.rebalancing(mid)) }
        let timeout = Int64(members.values.map(\.rebalanceTimeoutMs).max() ?? 30_000)
        rebalanceDeadlineMs = now + (wasEmpty ? min(timeout, config.initialRebalanceDelayMs) : timeout)
        actions.append(.log("group \(id) is rebalancing (generation \(generation)): \(reason)"))
    }

    /// Completes the join phase when every member has rejoined (or the deadline passed).
    private mutating func tryCompleteJoin(now: Int64, config: GroupConfig, force: Bool, actions: inout [ClassicGroupAction]) {
        guard state == .preparingRebalance else { return }
        let allJoined = members.values.allSatisfy(\.waitingJoin)
        if generation == 0 && config.initialRebalanceDelayMs > 0 && now < rebalanceDeadlineMs && !force { return }
        guard allJoined || force || now >= rebalanceDeadlineMs else { return }
        // Members that did not rejoin in time are out.
        for (mid, m) in members where !m.waitingJoin {
            removeMember(mid, reason: "did not rejoin within the rebalance timeout", actions: &actions)
        }
        generation += 1
        if members.isEmpty {
            state = .empty
            protocolName = nil
            leader = nil
            emptySinceMs = now
            actions.append(.persist)
            return
        }
        protocolName = selectProtocol()
        if leader == nil || members[leader!] == nil {
            leader = joinOrder.first { members[$0] != nil }
        }
        state = .completingRebalance
        let all = joinedMembers
        for mid in members.keys {
            actions.append(.completeJoin(mid, JoinGroupResponse(generation: generation, protocolName: protocolName, protocolType: protocolType, leader: leader!, memberId: mid, members: mid == leader ? all : [])))
            members[mid]!.waitingJoin = false
            members[mid]!.lastHeartbeatMs = now
        }
        actions.append(.log("group \(id) generation \(generation): \(members.count) members, protocol \(protocolName ?? "-"), leader \(leader!)"))
    }

    var joinedMembers: [JoinedMember] {
        joinOrder.compactMap { mid in
            guard let m = members[mid] else { return nil }
            let metadata = m.protocols.first { $0.name == protocolName }?.metadata ?? []
            return JoinedMember(memberId: mid, groupInstanceId: m.groupInstanceId, metadata: metadata)
        }
    }

    /// Kafka's vote: each member votes for its most preferred protocol that all members support.
    func selectProtocol() -> String? {
        let all = members.values
        guard let first = all.first else { return nil }
        let candidates = all.reduce(Set(first.protocols.map(\.name))) { $0.intersection($1.protocols.map(\.name)) }
        var votes: [String: Int] = [:]
        for m in all {
            if let choice = m.protocols.first(where: { candidates.contains($0.name) }) { votes[choice.name, default: 0] += 1 }
        }
        let order = first.protocols.map(\.name)
        return votes.max { a, b in a.value != b.value ? a.value < b.value : (order.firstIndex(of: a.key) ?? 0) > (order.firstIndex(of: b.key) ?? 0) }?.key
    }

    // MARK: Sync

    enum SyncOutcome {
        case answered([UInt8])
        case waiting
    }

    mutating func sync(memberId: String, generation: Int32, groupInstanceId: String?, assignments: [String: [UInt8]], actions: inout [ClassicGroupAction]) throws(BrokerError) -> SyncOutcome {
        try validate(memberId: memberId, instance: groupInstanceId, generation: generation)
        switch state {
        case .preparingRebalance:
            throw BrokerError(.rebalanceInProgress, "group '\(id)' is rebalancing; rejoin")
        case .stable:
            return .answered(members[memberId]!.assignment)
        case .completingRebalance:
            if memberId == leader {
                for mid in members.keys { members[mid]!.assignment = assignments[mid] ?? [] }
                state = .stable
                for mid in members.keys where members[mid]!.waitingSync {
                    actions.append(.completeSync(mid, members[mid]!.assignment))
                    members[mid]!.waitingSync = false
                }
                actions.append(.persist)
                actions.append(.log("group \(id) is stable at generation \(generation)"))
                return .answered(members[memberId]!.assignment)
            }
            members[memberId]!.waitingSync = true
            return .waiting
        case .empty, .dead:
            throw BrokerError(.unknownMemberId, "group '\(id)' has no member '\(memberId)'")
        }
    }

    /// A waiting join or sync whose request went away: the member stays until the rebalance
    /// or its session times out.
    mutating func abandon(_ memberId: String) {
        members[memberId]?.waitingJoin = false
        members[memberId]?.waitingSync = false
    }

    // MARK: Heartbeat, leave

    mutating func heartbeat(memberId: String, generation: Int32, groupInstanceId: String?, now: Int64) throws(BrokerError) {
        try validate(memberId: memberId, instance: groupInstanceId, generation: generation)
        members[memberId]!.lastHeartbeatMs = now
        if state == .preparingRebalance {
            throw BrokerError(.rebalanceInProgress, "group '\(id)' is rebalancing; rejoin")
        }
    }

    /// Removes a member (by member id, or static instance id); false when there is none.
    mutating func leave(memberId: String, groupInstanceId: String?, now: Int64, config: GroupConfig, actions: inout [ClassicGroupAction]) -> Bool {
        var mid = memberId
        if let instance = groupInstanceId, let mapped = staticMembers[instance] { mid = mapped }
        guard members[mid] != nil else { return false }
        removeMember(mid, reason: "left the group", actions: &actions)
        finishMembershipChange(now: now, config: config, reason: "member \(mid) left", actions: &actions)
        return true
    }

    private mutating func removeMember(_ mid: String, reason: String, actions: inout [ClassicGroupAction]) {
        guard let m = members.removeValue(forKey: mid) else { return }
        actions.append(.removed(mid))
        if m.waitingJoin { actions.append(.failJoin(mid, BrokerError(.unknownMemberId, "member \(mid) was removed from \(id): \(reason)"))) }
        if m.waitingSync { actions.append(.failSync(mid, BrokerError(.unknownMemberId, "member \(mid) was removed from \(id): \(reason)"))) }
        joinOrder.removeAll { $0 == mid }
        if let instance = m.groupInstanceId, staticMembers[instance] == mid { staticMembers.removeValue(forKey: instance) }
        if leader == mid { leader = nil }
        actions.append(.log("member \(mid) removed from \(id): \(reason)"))
    }

    private mutating func finishMembershipChange(now: Int64, config: GroupConfig, reason: String, actions: inout [ClassicGroupAction]) {
        if members.isEmpty {
            generation += 1
            state = .empty
            protocolName = nil
            leader = nil
            emptySinceMs = now
            actions.append(.persist)
            return
        }
        if state != .preparingRebalance { prepareRebalance(now: now, config: config, reason: reason, actions: &actions) }
        tryCompleteJoin(now: now, config: config, force: false, actions: &actions)
    }

    /// Rebalances when a consumer member subscribes to `topic` (its partition count changed).
    mutating func partitionsChanged(_ topic: TopicName, now: Int64, config: GroupConfig, actions: inout [ClassicGroupAction]) {
        guard protocolType == "consumer" && state != .empty else { return }
        let subscribed = members.values.contains { m in
            m.protocols.contains { p in (try? ConsumerSubscription.decode(p.metadata))?.topics.contains(topic.rawValue) ?? false }
        }
        if subscribed { prepareRebalance(now: now, config: config, reason: "topic \(topic) has new partitions", actions: &actions) }
    }

    func validate(memberId: String, instance: String?, generation: Int32) throws(BrokerError) {
        if let instance, let current = staticMembers[instance], current != memberId {
            throw BrokerError(.fencedInstanceId, "instance '\(instance)' of group '\(id)' is now member \(current); \(memberId) is fenced")
        }
        guard members[memberId] != nil else {
            throw BrokerError(.unknownMemberId, "group '\(id)' has no member '\(memberId)'")
        }
        guard generation == self.generation else {
            throw BrokerError(.illegalGeneration, "member \(memberId) is at generation \(generation) but group '\(id)' is at \(self.generation)")
        }
    }

    // MARK: Timers

    /// Expires members whose session ran out and finishes an overdue rebalance.
    mutating func tick(now: Int64, config: GroupConfig, actions: inout [ClassicGroupAction]) {
        let expired = members.filter { !$0.value.waitingJoin && now - $0.value.lastHeartbeatMs > Int64($0.value.sessionTimeoutMs) }.map(\.key)
        if !expired.isEmpty {
            for mid in expired { removeMember(mid, reason: "its session timed out", actions: &actions) }
            finishMembershipChange(now: now, config: config, reason: "session timeout of \(expired.joined(separator: ", "))", actions: &actions)
            return
        }
        if state == .preparingRebalance && now >= rebalanceDeadlineMs {
            tryCompleteJoin(now: now, config: config, force: true, actions: &actions)
        }
    }
}
