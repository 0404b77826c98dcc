// Groups with members on both protocols: Kafka's online migration between the classic
// protocol and the consumer protocol (KIP-848). A consumer-protocol member joining a classic
// group upgrades it: the classic members become members of a consumer-protocol group with the
// partitions they were assigned, and from then on their JoinGroup, SyncGroup and Heartbeat
// requests are answered from its state. A JoinGroup is answered at once with the member's
// share of the broker-computed target assignment, with no leader and no group-wide barrier;
// a heartbeat answers REBALANCE_IN_PROGRESS when the member must rejoin to move on. When the
// last consumer-protocol member leaves a group of classic members, the group is downgraded
// back to a classic group, which then rebalances. Pure values: every call takes `now`.

/// What a classic-protocol member of a consumer-protocol group keeps of its classic side.
public struct ClassicMembership: Sendable, Hashable {
    public var sessionTimeoutMs: Int32
    public var protocols: [GroupProtocol]
    /// The protocol its last JoinGroup answer named (its first).
    public var protocolName: String
    /// Set when a heartbeat told it to rejoin: it is removed if it has not by then.
    public var rejoinDeadlineMs: Int64?
}

extension ConsumerGroupState {
    /// The consumer-protocol group a classic group becomes when a consumer-protocol member
    /// joins it. The group epoch is the classic generation; each member keeps the partitions
    /// its SyncGroup assignment gave it (nothing, if it never synced) at that epoch.
    init(upgrading classic: ClassicGroup, now: Int64) throws(BrokerError) {
        self.init(groupId: classic.id)
        let id = classic.id
        guard classic.protocolType == "consumer" else {
            throw BrokerError(.unknownGroup, "Cannot upgrade classic group \(id) to consumer group because the group does not use the consumer embedded protocol.")
        }
        epoch = classic.generation
        assignmentEpoch = classic.generation
        for mid in classic.joinOrder {
            guard let m = classic.members[mid] else { continue }
            // A member whose first join is still waiting was never told its id: its join is
            // answered REBALANCE_IN_PROGRESS and it joins again as a new member.
            if m.waitingJoin && m.assignment.isEmpty { continue }
            let chosen = m.protocols.first { $0.name == classic.protocolName } ?? m.protocols.first
            let subscription: ConsumerSubscription
            let assignment: ConsumerAssignment
            do {
                subscription = try ConsumerSubscription.decode(chosen?.metadata ?? [])
                assignment = try ConsumerAssignment.decode(m.assignment)
            } catch {
                throw BrokerError(.unknownGroup, "Cannot upgrade classic group \(id) to consumer group because the embedded consumer protocol is malformed.")
            }
            // Kafka refuses any assignment user data. The built-in assignors' is only
            // stickiness history (librdkafka echoes the sticky subscription's into every
            // assignment after the first rebalance), which the broker's sticky assignor does
            // not need, so only a custom assignor's is refused here.
            if let data = assignment.userData, !data.isEmpty, !Self.builtInAssignors.contains(classic.protocolName ?? "") {
                throw BrokerError(.unknownGroup, "Cannot upgrade classic group \(id) to consumer group because an unsupported custom assignor is in use; switch to a built-in assignor before upgrading.")
            }
            members[mid] = ConsumerMember(memberId: mid, instanceId: m.groupInstanceId, rackId: subscription.rackId, clientId: m.clientId, clientHost: "",
                                          epoch: classic.generation, previousEpoch: classic.generation, topics: subscription.topics,
                                          rebalanceTimeoutMs: m.rebalanceTimeoutMs, lastHeartbeatMs: now, owned: assignment.partitions, revoking: [], revokeDeadlineMs: nil,
                                          classic: ClassicMembership(sessionTimeoutMs: m.sessionTimeoutMs, protocols: m.protocols, protocolName: chosen?.name ?? "", rejoinDeadlineMs: nil))
            target[mid] = assignment.partitions
        }
    }

    /// Client-side assignors whose groups are upgraded even with assignment user data.
    static let builtInAssignors: Set<String> = ["range", "roundrobin", "sticky", "cooperative-sticky"]

    /// True when every member is on the classic protocol (the group can be downgraded).
    public var onlyClassicMembers: Bool { !members.isEmpty && members.values.allSatisfy { $0.classic != nil } }

    /// What a member holds and may keep: what it owns, less what it is asked to revoke.
    public func assigned(_ memberId: String) -> [TopicPartition] {
        guard let m = members[memberId] else { return [] }
        return m.owned.filter { !m.revoking.contains($0) }.sorted()
    }

    /// A JoinGroup of a classic member, answered at once. The subscription and the partitions
    /// it says it owns come from its first protocol's metadata. A partition it no longer
    /// reports (an eager member gives up everything before it rejoins) is released; one it
    /// reports but must give up is left out of its assignment and it stays at its old epoch
    /// until it rejoins without it.
    mutating func classicJoin(_ request: JoinGroupRequest, now: Int64, newMemberId: (String, String?) -> String, partitions: (String) -> Int32?) throws(BrokerError) -> JoinGroupResponse {
        // Its own earlier protocols (or its static predecessor's) do not count against it.
        let predecessor = request.groupInstanceId.flatMap { i in members.values.first { $0.instanceId == i }?.memberId }
        let classicProtocols = members.values.filter { $0.memberId != request.memberId && $0.memberId != predecessor }.compactMap { $0.classic?.protocols.map(\.name) }
        let offered = request.protocols.map(\.name)
        guard classicProtocols.allSatisfy({ names in offered.contains(where: names.contains) }) else {
            throw BrokerError(.inconsistentGroupProtocol, "Member \(request.memberId.isEmpty ? "(new)" : request.memberId)'s protocols \(offered) are not supported by group \(groupId)'s classic members.")
        }
        let subscription: ConsumerSubscription
        do { subscription = try ConsumerSubscription.decode(request.protocols[0].metadata) } catch {
            throw BrokerError(.inconsistentGroupProtocol, "member \(request.memberId.isEmpty ? "(new)" : request.memberId) of group \(groupId) sent a malformed consumer subscription")
        }
        guard !subscription.topics.isEmpty else {
            throw BrokerError(.invalidRequest, "a joining member of consumer group '\(groupId)' must name the topics it subscribes to")
        }
        var memberId = request.memberId
        var member: ConsumerMember?
        if let instance = request.groupInstanceId, let other = members.values.first(where: { $0.instanceId == instance && $0.memberId != memberId }) {
            // A static member's new process takes over the old member (and what it owns).
            guard memberId.isEmpty else {
                throw BrokerError(.fencedInstanceId, "instance '\(instance)' of group '\(groupId)' is now member \(other.memberId); \(memberId) is fenced")
            }
            memberId = newMemberId(request.clientId, instance)
            member = members.removeValue(forKey: other.memberId)
            member?.memberId = memberId
            if let t = target.removeValue(forKey: other.memberId) { target[memberId] = t }
        } else if memberId.isEmpty {
            memberId = newMemberId(request.clientId, request.groupInstanceId)
        } else {
            member = members[memberId]
            // A member that was removed (its session or rejoin deadline ran out) must learn
            // it lost its partitions: it rejoins without an id.
            if member == nil && request.groupInstanceId == nil {
                throw BrokerError(.unknownMemberId, "member '\(memberId)' is not in group '\(groupId)' (it was removed; rejoin without a member id)")
            }
        }
        let isNew = member == nil
        var m = member ?? ConsumerMember(memberId: memberId, instanceId: request.groupInstanceId, rackId: subscription.rackId, clientId: request.clientId, clientHost: "",
                                         epoch: 0, previousEpoch: 0, topics: subscription.topics, rebalanceTimeoutMs: request.rebalanceTimeoutMs, lastHeartbeatMs: now,
                                         owned: [], revoking: [], revokeDeadlineMs: nil, classic: nil)
        let topicsChanged = m.topics != subscription.topics
        m.topics = subscription.topics
        m.lastHeartbeatMs = now
        m.rebalanceTimeoutMs = request.rebalanceTimeoutMs
        m.classic = ClassicMembership(sessionTimeoutMs: request.sessionTimeoutMs, protocols: request.protocols, protocolName: request.protocols[0].name, rejoinDeadlineMs: nil)
        // What it reports owning is the truth about what it still holds.
        let reported = Set(subscription.ownedPartitions)
        m.owned = m.owned.filter { reported.contains($0) }
        m.revoking = m.revoking.filter { reported.contains($0) }
        if m.revoking.isEmpty { m.revokeDeadlineMs = nil }
        members[memberId] = m
        if isNew || topicsChanged { bump(partitions, now: now) }
        let result = reconcile(memberId, now: now, full: true)
        return JoinGroupResponse(generation: result.memberEpoch, protocolName: request.protocols[0].name, protocolType: "consumer", leader: "", memberId: memberId, members: [])
    }

    private func classicMember(_ memberId: String, instance: String?, generation: Int32) throws(BrokerError) -> ConsumerMember {
        if let instance, let current = members.values.first(where: { $0.instanceId == instance }), current.memberId != memberId {
            throw BrokerError(.fencedInstanceId, "instance '\(instance)' of group '\(groupId)' is now member \(current.memberId); \(memberId) is fenced")
        }
        guard let m = members[memberId] else {
            throw BrokerError(.unknownMemberId, "group '\(groupId)' has no member '\(memberId)'")
        }
        guard m.classic != nil else {
            throw BrokerError(.unknownMemberId, "member \(memberId) of group '\(groupId)' does not use the classic protocol")
        }
        guard generation == m.epoch else {
            throw BrokerError(.illegalGeneration, "member \(memberId) of group '\(groupId)' sent generation \(generation), but its member epoch is \(m.epoch)")
        }
        return m
    }

    /// A SyncGroup of a classic member: its assignment as the broker computed it (the
    /// request's assignments are not used). A member behind the group epoch with nothing to
    /// revoke must rejoin first.
    mutating func classicSync(memberId: String, instance: String?, generation: Int32, now: Int64) throws(BrokerError) -> [UInt8] {
        var m = try classicMember(memberId, instance: instance, generation: generation)
        if m.epoch < epoch && m.revoking.isEmpty {
            throw BrokerError(.rebalanceInProgress, "group '\(groupId)' has moved to epoch \(epoch); member \(memberId) must rejoin to catch up")
        }
        m.lastHeartbeatMs = now
        members[memberId] = m
        return ConsumerAssignment(partitions: assigned(memberId)).encode()
    }

    /// A Heartbeat of a classic member: REBALANCE_IN_PROGRESS when it must rejoin — the group
    /// moved past its epoch, it has partitions to revoke, or partitions it waited for are free.
    mutating func classicHeartbeat(memberId: String, instance: String?, generation: Int32, now: Int64) throws(BrokerError) {
        var m = try classicMember(memberId, instance: instance, generation: generation)
        m.lastHeartbeatMs = now
        let waiting = (target[memberId] ?? []).filter { !m.owned.contains($0) }
        let mustRejoin = m.epoch < epoch || !m.revoking.isEmpty || waiting.contains { owner(of: $0) == nil }
        if mustRejoin && m.classic?.rejoinDeadlineMs == nil {
            m.classic?.rejoinDeadlineMs = now + Int64(max(1, m.rebalanceTimeoutMs))
        }
        members[memberId] = m
        if mustRejoin {
            throw BrokerError(.rebalanceInProgress, "group '\(groupId)' is rebalancing (epoch \(epoch)); member \(memberId) must rejoin")
        }
    }

    /// Removes a member (a LeaveGroup, by member id or static instance id); returns the id
    /// removed, nil when there is none.
    mutating func remove(memberId: String, instance: String?, now: Int64, partitions: (String) -> Int32?) -> String? {
        var mid = memberId
        if let instance, let m = members.values.first(where: { $0.instanceId == instance }) { mid = m.memberId }
        guard members.removeValue(forKey: mid) != nil else { return nil }
        target.removeValue(forKey: mid)
        bump(partitions, now: now)
        return mid
    }
}

extension ClassicGroup {
    /// The classic group a consumer-protocol group of classic members becomes when its last
    /// consumer-protocol member leaves: at the generation its members hold (the newest member
    /// epoch, which the leave itself did not give anyone), each member holding its target
    /// assignment, then rebalancing so that members rejoin with the classic barrier — their
    /// heartbeats are answered REBALANCE_IN_PROGRESS, and commits at that generation still
    /// pass until the join completes.
    init(downgrading group: ConsumerGroupState, now: Int64, config: GroupConfig, actions: inout [ClassicGroupAction]) {
        self.init(id: group.groupId, now: now)
        protocolType = "consumer"
        generation = group.members.values.map(\.epoch).max() ?? group.epoch
        state = .stable
        for m in group.members.values.sorted(by: { $0.memberId < $1.memberId }) {
            guard let classic = m.classic else { continue }
            members[m.memberId] = Member(memberId: m.memberId, groupInstanceId: m.instanceId, clientId: m.clientId, sessionTimeoutMs: classic.sessionTimeoutMs,
                                         rebalanceTimeoutMs: m.rebalanceTimeoutMs, protocols: classic.protocols, lastHeartbeatMs: now,
                                         assignment: ConsumerAssignment(partitions: (group.target[m.memberId] ?? []).sorted()).encode())
            joinOrder.append(m.memberId)
            if let instance = m.instanceId { staticMembers[instance] = m.memberId }
        }
        leader = joinOrder.first
        protocolName = selectProtocol()
        prepareRebalance(now: now, config: config, reason: "downgraded from the consumer protocol to the classic protocol", actions: &actions)
    }
}
