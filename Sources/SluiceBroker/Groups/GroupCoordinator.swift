// GroupCoordinator: Kafka's classic group protocol for every group of the broker — members,
// generations, the Empty → PreparingRebalance → CompletingRebalance → Stable cycle, session
// timeouts, static membership, fencing of stale commits — plus committed offsets. The
// coordinator treats protocol metadata as bytes, so in-process consumers and Kafka wire
// clients share groups. An actor: group changes are low-rate coordination.
import Logging
import SluiceLog

public actor GroupCoordinator {
    struct Member {
        var memberId: String
        var groupInstanceId: String?
        var clientId: String
        var sessionTimeoutMs: Int32
        var rebalanceTimeoutMs: Int32
        var protocols: [GroupProtocol]
        var lastHeartbeatMs: Int64
        var assignment: [UInt8] = []
        var pendingJoin: CheckedContinuation<JoinGroupResponse, any Error>?
        var pendingSync: CheckedContinuation<[UInt8], any Error>?
        /// Joined in the current rebalance round.
        var joinedThisRound = false
    }

    struct Group {
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
        var emptySinceMs: Int64 = 0
    }

    private var groups: [String: Group] = [:]
    private let offsets: OffsetStore
    private let config: GroupConfig
    private let logger: Logger
    private var memberCounter: UInt64 = 0
    private var dirtySnapshots: [String: GroupSnapshot] = [:]
    /// In-process members learn of a rebalance at once instead of at their next heartbeat.
    private var watchers: [String: [String: @Sendable () -> Void]] = [:]
    private var partitionCounts: @Sendable (TopicName) -> Int32?
    private let clock: @Sendable () -> Int64
    /// Groups on the consumer protocol (KIP-848); the group-id namespace is shared with `groups`.
    private var consumerGroups: [String: ConsumerGroupState] = [:]

    init(offsets: OffsetStore, config: GroupConfig, logger: Logger, clock: @escaping @Sendable () -> Int64 = { currentTimeMillis() }, partitionCounts: @escaping @Sendable (TopicName) -> Int32?) {
        self.offsets = offsets
        self.config = config
        self.logger = logger
        self.clock = clock
        self.partitionCounts = partitionCounts
    }

    // MARK: Consumer protocol (KIP-848)

    /// One ConsumerGroupHeartbeat (see ConsumerGroupState.heartbeat). A classic group with
    /// live members is not converted (GROUP_ID_NOT_FOUND, as Kafka answers when it cannot
    /// upgrade a group); an empty classic group is taken over, keeping its offsets.
    public func consumerHeartbeat(groupId: String, memberId: String, epoch: Int32, instanceId: String?, rackId: String?, rebalanceTimeoutMs: Int32,
                                  topics: [String]?, serverAssignor: String?, owned: [TopicPartition]?, clientId: String, clientHost: String) throws -> (result: ConsumerHeartbeatResult, intervalMs: Int32) {
        guard !groupId.isEmpty else { throw BrokerError(.invalidGroupId, "the group id is empty") }
        if let classic = groups[groupId], !classic.members.isEmpty {
            throw BrokerError(.unknownGroup, "group '\(groupId)' has \(classic.members.count) classic-protocol member\(classic.members.count == 1 ? "" : "s"); a consumer-protocol member cannot join it until they leave")
        }
        var group = consumerGroups[groupId] ?? ConsumerGroupState(groupId: groupId)
        let counts = partitionCounts
        let epochBefore = group.epoch
        let known = !memberId.isEmpty && group.members[memberId] != nil
        let result = try group.heartbeat(memberId: memberId, epoch: epoch, instanceId: instanceId, rackId: rackId, rebalanceTimeoutMs: rebalanceTimeoutMs,
                                         topics: topics, serverAssignor: serverAssignor, owned: owned, clientId: clientId, clientHost: clientHost,
                                         now: clock(), partitions: { name in (try? TopicName(name)).flatMap(counts) })
        if group.members.isEmpty {
            consumerGroups.removeValue(forKey: groupId)
        } else {
            consumerGroups[groupId] = group
            groups.removeValue(forKey: groupId)
        }
        if group.epoch != epochBefore {
            if epoch == 0 && !known { logger.info("member \(result.memberId) joined consumer group \(groupId) (consumer protocol, epoch \(group.epoch))") }
            if epoch < 0 { logger.info("member \(memberId) left consumer group \(groupId) (consumer protocol)") }
            persist(group)
        }
        return (result, Int32(clamping: config.consumerHeartbeatIntervalMs))
    }

    /// The consumer-protocol group, if `groupId` is one.
    public func consumerGroup(_ groupId: String) -> ConsumerGroupState? { consumerGroups[groupId] }

    private func persist(_ group: ConsumerGroupState) {
        dirtySnapshots[group.groupId] = GroupSnapshot(
            groupId: group.groupId, state: group.state, generation: group.epoch, protocolType: "consumer", protocolName: group.assignor, leader: nil,
            members: group.members.values.sorted { $0.memberId < $1.memberId }.map {
                GroupSnapshot.Member(memberId: $0.memberId, groupInstanceId: $0.instanceId, clientId: $0.clientId, partitions: $0.owned.sorted().map(\.description))
            },
            timestamp: clock(), groupType: "consumer")
    }

    // MARK: Join

    public func join(_ request: JoinGroupRequest) async throws -> JoinGroupResponse {
        guard !request.groupId.isEmpty else { throw BrokerError(.invalidGroupId, "the group id is empty") }
        guard request.sessionTimeoutMs >= config.minSessionTimeoutMs && request.sessionTimeoutMs <= config.maxSessionTimeoutMs else {
            throw BrokerError(.invalidSessionTimeout, "session timeout \(request.sessionTimeoutMs) ms is outside \(config.minSessionTimeoutMs)...\(config.maxSessionTimeoutMs) ms")
        }
        guard !request.protocols.isEmpty else { throw BrokerError(.inconsistentGroupProtocol, "a member must offer at least one protocol") }
        if let cg = consumerGroups[request.groupId] {
            throw BrokerError(.inconsistentGroupProtocol, "group '\(request.groupId)' has \(cg.members.count) consumer-protocol (KIP-848) member\(cg.members.count == 1 ? "" : "s"); a classic member cannot join it until they leave")
        }
        var group = groups[request.groupId] ?? Group(id: request.groupId)
        if group.state == .dead { group = Group(id: request.groupId) }
        if !group.members.isEmpty {
            if group.protocolType != request.protocolType {
                throw BrokerError(.inconsistentGroupProtocol, "group '\(request.groupId)' uses protocol type '\(group.protocolType)', not '\(request.protocolType)'")
            }
            let common = Set(group.members.values.flatMap { m in m.protocols.map(\.name) })
            let offered = Set(request.protocols.map(\.name))
            let shared = group.members.values.reduce(offered) { acc, m in acc.intersection(m.protocols.map(\.name)) }
            if shared.isEmpty && !(group.members.count == 1 && group.members[request.memberId] != nil) {
                throw BrokerError(.inconsistentGroupProtocol, "member offers \(offered.sorted()) but group '\(request.groupId)' uses \(common.sorted())")
            }
        }
        group.protocolType = request.protocolType
        let now = clock()

        var memberId = request.memberId
        // Static membership: a known instance id takes over its old member id.
        if let instance = request.groupInstanceId, let old = group.staticMembers[instance], old != memberId {
            // A join with an older member id of the instance comes from a process that was
            // replaced: it is fenced (only a join without a member id takes over).
            if !memberId.isEmpty {
                throw BrokerError(.fencedInstanceId, "instance '\(instance)' of group '\(request.groupId)' is now member \(old); \(memberId) is fenced")
            }
            let newId = memberId.isEmpty ? newMemberId(request.clientId, instance) : memberId
            if var m = group.members.removeValue(forKey: old) {
                m.pendingJoin?.resume(throwing: BrokerError(.fencedInstanceId, "instance '\(instance)' rejoined as another member"))
                m.pendingSync?.resume(throwing: BrokerError(.fencedInstanceId, "instance '\(instance)' rejoined as another member"))
                m.pendingJoin = nil
                m.pendingSync = nil
                m.memberId = newId
                m.protocols = request.protocols
                m.lastHeartbeatMs = now
                m.sessionTimeoutMs = request.sessionTimeoutMs
                m.rebalanceTimeoutMs = request.rebalanceTimeoutMs
                group.members[newId] = m
                group.joinOrder = group.joinOrder.map { $0 == old ? newId : $0 }
                group.staticMembers[instance] = newId
                if group.leader == old { group.leader = newId }
                if group.state == .stable {
                    // Same protocols: no rebalance; the member resyncs to get its assignment.
                    groups[group.id] = group
                    logger.info("static member \(instance) of \(group.id) rejoined as \(newId) without a rebalance")
                    return JoinGroupResponse(generation: group.generation, protocolName: group.protocolName, protocolType: group.protocolType, leader: group.leader ?? newId, memberId: newId, members: newId == group.leader ? members(of: group) : [])
                }
                memberId = newId
            }
        }
        if memberId.isEmpty || group.members[memberId] == nil {
            if !memberId.isEmpty && request.groupInstanceId == nil {
                throw BrokerError(.unknownMemberId, "member '\(memberId)' is not in group '\(request.groupId)' (it was removed; rejoin without a member id)")
            }
            if memberId.isEmpty { memberId = newMemberId(request.clientId, request.groupInstanceId) }
            group.members[memberId] = Member(memberId: memberId, groupInstanceId: request.groupInstanceId, clientId: request.clientId, sessionTimeoutMs: request.sessionTimeoutMs, rebalanceTimeoutMs: request.rebalanceTimeoutMs, protocols: request.protocols, lastHeartbeatMs: now)
            group.joinOrder.append(memberId)
            if let instance = request.groupInstanceId { group.staticMembers[instance] = memberId }
            logger.debug("member \(memberId) joins \(group.id)")
        } else {
            group.members[memberId]!.protocols = request.protocols
            group.members[memberId]!.lastHeartbeatMs = now
            group.members[memberId]!.sessionTimeoutMs = request.sessionTimeoutMs
            group.members[memberId]!.rebalanceTimeoutMs = request.rebalanceTimeoutMs
        }
        if group.state != .preparingRebalance { prepareRebalance(&group, now: now, reason: "member \(memberId) joined") }
        group.members[memberId]!.joinedThisRound = true
        let id = memberId
        groups[group.id] = group
        let groupId = group.id
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                // A member re-joining while an older join is pending: the older one gets an error.
                groups[groupId]!.members[id]!.pendingJoin?.resume(throwing: BrokerError(.rebalanceInProgress, "a newer join replaced this one"))
                groups[groupId]!.members[id]!.pendingJoin = continuation
                tryCompleteJoin(groupId)
            }
        } onCancel: {
            Task { await self.abandonWaits(groupId: groupId, memberId: id) }
        }
    }

    /// A waiting join or sync whose task was cancelled (its connection or pipeline is shutting
    /// down) ends with CancellationError; the member stays until the rebalance or its session
    /// times out, as when a Kafka client goes away mid-join.
    private func abandonWaits(groupId: String, memberId: String) {
        guard let m = groups[groupId]?.members[memberId] else { return }
        m.pendingJoin?.resume(throwing: CancellationError())
        m.pendingSync?.resume(throwing: CancellationError())
        groups[groupId]!.members[memberId]!.pendingJoin = nil
        groups[groupId]!.members[memberId]!.pendingSync = nil
    }

    private func newMemberId(_ clientId: String, _ instance: String?) -> String {
        memberCounter += 1
        let uuid = (0..<4).map { _ in String(UInt16.random(in: 0...UInt16.max), radix: 16) }.joined()
        return "\(instance ?? clientId)-\(memberCounter)-\(uuid)"
    }

    private func prepareRebalance(_ group: inout Group, now: Int64, reason: String) {
        let wasEmpty = group.state == .empty || group.members.values.allSatisfy { $0.assignment.isEmpty } && group.generation == 0
        // Members waiting in sync must rejoin.
        for id in group.members.keys {
            if let s = group.members[id]!.pendingSync {
                s.resume(throwing: BrokerError(.rebalanceInProgress, "group \(group.id) is rebalancing: \(reason)"))
                group.members[id]!.pendingSync = nil
            }
            group.members[id]!.joinedThisRound = false
        }
        group.state = .preparingRebalance
        for (_, notify) in watchers[group.id] ?? [:] { notify() }
        let timeout = Int64(group.members.values.map(\.rebalanceTimeoutMs).max() ?? 30_000)
        group.rebalanceDeadlineMs = now + (wasEmpty ? min(timeout, config.initialRebalanceDelayMs) : timeout)
        logger.info("group \(group.id) is rebalancing (generation \(group.generation)): \(reason)")
    }

    /// Completes the join phase when every member has rejoined (or the deadline passed).
    private func tryCompleteJoin(_ groupId: String, force: Bool = false) {
        guard var group = groups[groupId], group.state == .preparingRebalance else { return }
        let now = clock()
        let allJoined = group.members.values.allSatisfy { $0.pendingJoin != nil }
        if group.generation == 0 && config.initialRebalanceDelayMs > 0 && now < group.rebalanceDeadlineMs && !force { return }
        guard allJoined || force || now >= group.rebalanceDeadlineMs else { return }
        // Members that did not rejoin in time are out.
        for (id, m) in group.members where m.pendingJoin == nil {
            removeMember(&group, id, reason: "did not rejoin within the rebalance timeout")
        }
        group.generation += 1
        if group.members.isEmpty {
            group.state = .empty
            group.protocolName = nil
            group.leader = nil
            group.emptySinceMs = now
            groups[groupId] = group
            persist(group)
            return
        }
        group.protocolName = selectProtocol(group)
        if group.leader == nil || group.members[group.leader!] == nil {
            group.leader = group.joinOrder.first { group.members[$0] != nil }
        }
        group.state = .completingRebalance
        let all = members(of: group)
        for id in group.members.keys {
            let response = JoinGroupResponse(generation: group.generation, protocolName: group.protocolName, protocolType: group.protocolType, leader: group.leader!, memberId: id, members: id == group.leader ? all : [])
            group.members[id]!.pendingJoin?.resume(returning: response)
            group.members[id]!.pendingJoin = nil
            group.members[id]!.lastHeartbeatMs = now
        }
        groups[groupId] = group
        logger.info("group \(groupId) generation \(group.generation): \(group.members.count) members, protocol \(group.protocolName ?? "-"), leader \(group.leader!)")
    }

    private func members(of group: Group) -> [JoinedMember] {
        group.joinOrder.compactMap { id in
            guard let m = group.members[id] else { return nil }
            let metadata = m.protocols.first { $0.name == group.protocolName }?.metadata ?? []
            return JoinedMember(memberId: id, groupInstanceId: m.groupInstanceId, metadata: metadata)
        }
    }

    /// Kafka's vote: each member votes for its most preferred protocol that all members support.
    private func selectProtocol(_ group: Group) -> String? {
        let members = group.members.values
        guard let first = members.first else { return nil }
        let candidates = members.reduce(Set(first.protocols.map(\.name))) { $0.intersection($1.protocols.map(\.name)) }
        var votes: [String: Int] = [:]
        for m in members {
            if let choice = m.protocols.first(where: { candidates.contains($0.name) }) { votes[choice.name, default: 0] += 1 }
        }
        let order = first.protocols.map(\.name)
        return votes.max { a, b in a.value != b.value ? a.value < b.value : (order.firstIndex(of: a.key) ?? 0) > (order.firstIndex(of: b.key) ?? 0) }?.key
    }

    // MARK: Sync

    /// The member's assignment for `generation`. The leader's call carries everyone's.
    public func sync(groupId: String, generation: Int32, memberId: String, groupInstanceId: String? = nil, assignments: [String: [UInt8]] = [:]) async throws -> [UInt8] {
        guard var group = groups[groupId] else { throw BrokerError(.unknownMemberId, "group '\(groupId)' has no member '\(memberId)'") }
        try validate(group, memberId: memberId, instance: groupInstanceId, generation: generation)
        switch group.state {
        case .preparingRebalance:
            throw BrokerError(.rebalanceInProgress, "group '\(groupId)' is rebalancing; rejoin")
        case .stable:
            return group.members[memberId]!.assignment
        case .completingRebalance:
            if memberId == group.leader {
                for id in group.members.keys { group.members[id]!.assignment = assignments[id] ?? [] }
                group.state = .stable
                for id in group.members.keys {
                    if let s = group.members[id]!.pendingSync {
                        s.resume(returning: group.members[id]!.assignment)
                        group.members[id]!.pendingSync = nil
                    }
                }
                groups[groupId] = group
                persist(group)
                logger.info("group \(groupId) is stable at generation \(generation)")
                return group.members[memberId]!.assignment
            }
            return try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { continuation in
                    groups[groupId]!.members[memberId]!.pendingSync = continuation
                }
            } onCancel: {
                Task { await self.abandonWaits(groupId: groupId, memberId: memberId) }
            }
        case .empty, .dead:
            throw BrokerError(.unknownMemberId, "group '\(groupId)' has no member '\(memberId)'")
        }
    }

    /// Calls `notify` whenever `memberId`'s group starts rebalancing (or the member is
    /// removed). For in-process members; wire clients learn from heartbeats.
    public func watch(groupId: String, memberId: String, _ notify: @escaping @Sendable () -> Void) {
        watchers[groupId, default: [:]][memberId] = notify
    }

    public func unwatch(groupId: String, memberId: String) {
        watchers[groupId]?.removeValue(forKey: memberId)
    }

    // MARK: Heartbeat, leave

    public func heartbeat(groupId: String, generation: Int32, memberId: String, groupInstanceId: String? = nil) throws {
        guard let group = groups[groupId] else { throw BrokerError(.unknownMemberId, "group '\(groupId)' has no member '\(memberId)'") }
        try validate(group, memberId: memberId, instance: groupInstanceId, generation: generation)
        groups[groupId]!.members[memberId]!.lastHeartbeatMs = clock()
        if group.state == .preparingRebalance {
            throw BrokerError(.rebalanceInProgress, "group '\(groupId)' is rebalancing; rejoin")
        }
    }

    /// Removes a member (by member id, or by static instance id); false when the group has no
    /// such member.
    @discardableResult
    public func leave(groupId: String, memberId: String, groupInstanceId: String? = nil) -> Bool {
        guard var group = groups[groupId] else { return false }
        var id = memberId
        if let instance = groupInstanceId, let mapped = group.staticMembers[instance] { id = mapped }
        guard group.members[id] != nil else { return false }
        removeMember(&group, id, reason: "left the group")
        finishMembershipChange(&group, reason: "member \(id) left")
        return true
    }

    private func removeMember(_ group: inout Group, _ id: String, reason: String) {
        guard let m = group.members.removeValue(forKey: id) else { return }
        watchers[group.id]?.removeValue(forKey: id)?()
        m.pendingJoin?.resume(throwing: BrokerError(.unknownMemberId, "member \(id) was removed from \(group.id): \(reason)"))
        m.pendingSync?.resume(throwing: BrokerError(.unknownMemberId, "member \(id) was removed from \(group.id): \(reason)"))
        group.joinOrder.removeAll { $0 == id }
        if let instance = m.groupInstanceId, group.staticMembers[instance] == id { group.staticMembers.removeValue(forKey: instance) }
        if group.leader == id { group.leader = nil }
        logger.info("member \(id) removed from \(group.id): \(reason)")
    }

    private func finishMembershipChange(_ group: inout Group, reason: String) {
        let now = clock()
        if group.members.isEmpty {
            group.generation += 1
            group.state = .empty
            group.protocolName = nil
            group.leader = nil
            group.emptySinceMs = now
            groups[group.id] = group
            persist(group)
            return
        }
        if group.state != .preparingRebalance { prepareRebalance(&group, now: now, reason: reason) }
        groups[group.id] = group
        tryCompleteJoin(group.id)
    }

    /// Rebalances every group whose consumers subscribe to `topic` (its partition count changed).
    public func partitionsChanged(_ topic: TopicName) {
        let counts = partitionCounts
        for id in Array(consumerGroups.keys) where consumerGroups[id]!.members.values.contains(where: { $0.topics.contains(topic.rawValue) }) {
            consumerGroups[id]!.partitionsChanged({ name in (try? TopicName(name)).flatMap(counts) }, now: clock())
            persist(consumerGroups[id]!)
        }
        for (id, group) in groups where group.protocolType == "consumer" && group.state != .empty {
            let subscribed = group.members.values.contains { m in
                m.protocols.contains { p in (try? ConsumerSubscription.decode(p.metadata))?.topics.contains(topic.rawValue) ?? false }
            }
            if subscribed {
                var g = group
                prepareRebalance(&g, now: clock(), reason: "topic \(topic) has new partitions")
                groups[id] = g
            }
        }
    }

    /// A commit from a consumer-protocol member: it must be a member, at its current epoch.
    private func validateConsumer(_ group: ConsumerGroupState, memberId: String, epoch: Int32) throws {
        guard let m = group.members[memberId] else {
            throw BrokerError(.unknownMemberId, "consumer group '\(group.groupId)' has no member '\(memberId)'")
        }
        guard epoch == m.epoch else {
            throw BrokerError(.staleMemberEpoch, "member \(memberId) of consumer group '\(group.groupId)' committed at epoch \(epoch), its epoch is \(m.epoch)")
        }
    }

    private func validate(_ group: Group, memberId: String, instance: String?, generation: Int32) throws {
        if let instance, let current = group.staticMembers[instance], current != memberId {
            throw BrokerError(.fencedInstanceId, "instance '\(instance)' of group '\(group.id)' is now member \(current); \(memberId) is fenced")
        }
        guard group.members[memberId] != nil else {
            throw BrokerError(.unknownMemberId, "group '\(group.id)' has no member '\(memberId)'")
        }
        guard generation == group.generation else {
            throw BrokerError(.illegalGeneration, "member \(memberId) is at generation \(generation) but group '\(group.id)' is at \(group.generation)")
        }
    }

    // MARK: Timers

    /// Expires members whose session ran out and finishes overdue rebalances. Called by the
    /// broker's maintenance loop.
    func tick() async {
        let now = clock()
        for id in Array(groups.keys) {
            guard var group = groups[id] else { continue }
            var expired: [String] = []
            for (mid, m) in group.members where m.pendingJoin == nil && now - m.lastHeartbeatMs > Int64(m.sessionTimeoutMs) {
                expired.append(mid)
            }
            if !expired.isEmpty {
                for mid in expired { removeMember(&group, mid, reason: "its session timed out") }
                finishMembershipChange(&group, reason: "session timeout of \(expired.joined(separator: ", "))")
                continue
            }
            if group.state == .preparingRebalance && now >= group.rebalanceDeadlineMs {
                tryCompleteJoin(id, force: true)
            }
        }
        for id in Array(consumerGroups.keys) {
            let counts = partitionCounts
            let gone = consumerGroups[id]!.expire(now: now, sessionTimeoutMs: config.consumerSessionTimeoutMs, partitions: { name in (try? TopicName(name)).flatMap(counts) })
            for (m, why) in gone { logger.info("member \(m.memberId) removed from consumer group \(id): \(why)") }
            if !gone.isEmpty {
                persist(consumerGroups[id]!)
                if consumerGroups[id]!.members.isEmpty { consumerGroups.removeValue(forKey: id) }
            }
        }
        await expireOffsets(now: now)
        await flushSnapshots()
    }

    private func expireOffsets(now: Int64) async {
        for group in offsets.groupsIdle(since: now - config.offsetsRetentionMs) {
            if let g = groups[group], !g.members.isEmpty { continue }
            if consumerGroups[group] != nil { continue }
            do {
                try await offsets.delete(group)
                groups.removeValue(forKey: group)
                logger.info("offsets of group \(group) expired")
            } catch {
                logger.warning("could not expire the offsets of group \(group): \(error)")
            }
        }
    }

    // MARK: Offsets

    /// Commits offsets. Members of a group with members must be current (a zombie from an
    /// older generation is rejected); a group without members accepts commits from anyone
    /// (generation -1, as manual-assignment consumers use).
    public func commit(groupId: String, generation: Int32 = -1, memberId: String = "", groupInstanceId: String? = nil, offsets committed: [TopicPartition: CommittedOffset]) async throws {
        guard !groupId.isEmpty else { throw BrokerError(.invalidGroupId, "the group id is empty") }
        if let cg = consumerGroups[groupId], generation >= 0 || !memberId.isEmpty {
            try validateConsumer(cg, memberId: memberId, epoch: generation)
            try await offsets.commit(groupId, committed)
            return
        }
        if try checkCommitter(groupId, memberId: memberId, instance: groupInstanceId, generation: generation)?.state == .completingRebalance {
            throw BrokerError(.rebalanceInProgress, "group '\(groupId)' is completing a rebalance; commit after it")
        }
        try await offsets.commit(groupId, committed)
    }

    /// Who may commit to a group: to a group with members, only a current member at the
    /// current generation (the group is returned); to a group without members, only a
    /// committer naming no member (generation -1).
    private func checkCommitter(_ groupId: String, memberId: String, instance: String?, generation: Int32) throws -> Group? {
        if let group = groups[groupId], !group.members.isEmpty {
            try validate(group, memberId: memberId, instance: instance, generation: generation)
            return group
        }
        if generation >= 0 || !memberId.isEmpty {
            throw BrokerError(.unknownMemberId, "group '\(groupId)' has no member '\(memberId)'; it may have been removed after its session timed out")
        }
        return nil
    }

    /// A transactional offset commit that names the consuming member (TxnOffsetCommit v3+,
    /// KIP-447) must come from a current member at the current generation, so a producer
    /// whose consumer lost its partitions in a rebalance is fenced. Without a member and
    /// generation (a producer outside the group) nothing is checked.
    public func checkTransactionalCommit(groupId: String, memberId: String, groupInstanceId: String?, generation: Int32) throws {
        guard generation >= 0 || !memberId.isEmpty else { return }
        if let cg = consumerGroups[groupId] { return try validateConsumer(cg, memberId: memberId, epoch: generation) }
        _ = try checkCommitter(groupId, memberId: memberId, instance: groupInstanceId, generation: generation)
    }

    /// Applies offsets of a committed transaction (already fenced by the transaction
    /// coordinator). They are synced at once: the transaction's end waits for them, and
    /// waiting out the flush interval was most of its cost.
    func commitTransactional(groupId: String, offsets committed: [TopicPartition: CommittedOffset]) async throws {
        try await offsets.commit(groupId, committed, syncNow: true)
    }

    public func committedOffsets(groupId: String) -> [TopicPartition: CommittedOffset] {
        offsets.committed(groupId)
    }

    /// Checks that `memberId` at `generation` is a current member (the fetch-ownership check
    /// lanes make before processing); with `partition`, that it is assigned that partition.
    public func checkOwnership(groupId: String, memberId: String, generation: Int32, partition: TopicPartition? = nil) throws {
        guard let group = groups[groupId] else { throw BrokerError(.unknownMemberId, "group '\(groupId)' has no member '\(memberId)'") }
        try validate(group, memberId: memberId, instance: nil, generation: generation)
        guard group.state == .stable else { throw BrokerError(.rebalanceInProgress, "group '\(groupId)' is rebalancing") }
        if let partition, group.protocolType == "consumer" {
            let assigned = (try? ConsumerAssignment.decode(group.members[memberId]!.assignment).partitions) ?? []
            guard assigned.contains(partition) else {
                throw BrokerError(.notAssigned, "\(partition) is not assigned to member \(memberId) of group '\(groupId)' at generation \(generation)")
            }
        }
    }

    // MARK: Admin

    public func describe(groupId: String) -> GroupDescription? {
        guard let g = groups[groupId] else {
            guard let s = offsets.snapshot(groupId) else {
                return offsets.committed(groupId).isEmpty ? nil : GroupDescription(groupId: groupId, state: .empty, generation: 0, protocolType: "consumer", protocolName: nil, leader: nil, members: [])
            }
            return GroupDescription(groupId: groupId, state: .empty, generation: s.generation, protocolType: s.protocolType, protocolName: nil, leader: nil, members: [])
        }
        return GroupDescription(groupId: g.id, state: g.state, generation: g.generation, protocolType: g.protocolType, protocolName: g.protocolName, leader: g.leader,
            members: g.joinOrder.compactMap { id in
                guard let m = g.members[id] else { return nil }
                return GroupMemberDescription(memberId: id, groupInstanceId: m.groupInstanceId, clientId: m.clientId, metadata: m.protocols.first { $0.name == g.protocolName }?.metadata ?? [], assignment: m.assignment)
            })
    }

    public func listGroups() -> [(groupId: String, state: GroupState, protocolType: String)] {
        var out: [String: (String, GroupState, String)] = [:]
        for id in offsets.groupIds() { out[id] = (id, .empty, offsets.snapshot(id)?.protocolType ?? "consumer") }
        for (id, g) in groups { out[id] = (id, g.state, g.protocolType) }
        for id in consumerGroups.keys { out.removeValue(forKey: id) }
        return out.values.sorted { $0.0 < $1.0 }.map { (groupId: $0.0, state: $0.1, protocolType: $0.2) }
    }

    /// Consumer-protocol groups with members: id and state (ConsumerGroupDescribe's names).
    public func listConsumerGroups() -> [(groupId: String, state: String)] {
        consumerGroups.values.sorted { $0.groupId < $1.groupId }.map { ($0.groupId, $0.state) }
    }

    /// Deletes an empty group and its offsets.
    public func deleteGroup(_ groupId: String) async throws {
        if let g = groups[groupId], !g.members.isEmpty {
            throw BrokerError(.groupNotEmpty, "group '\(groupId)' has \(g.members.count) live member\(g.members.count == 1 ? "" : "s"); stop them first")
        }
        guard groups[groupId] != nil || offsets.groupIds().contains(groupId) else {
            throw BrokerError(.unknownGroup, "group '\(groupId)' does not exist")
        }
        try await offsets.delete(groupId)
        groups.removeValue(forKey: groupId)
    }

    /// Sets committed offsets of an empty group (reset-offsets); refused while members live.
    public func resetOffsets(groupId: String, to newOffsets: [TopicPartition: CommittedOffset]) async throws {
        if let g = groups[groupId], !g.members.isEmpty {
            throw BrokerError(.groupNotEmpty, "group '\(groupId)' has \(g.members.count) live member\(g.members.count == 1 ? "" : "s"); stop its consumers before resetting offsets")
        }
        try await offsets.commit(groupId, newOffsets)
    }

    /// True when the group has live members in this process.
    public func hasMembers(_ groupId: String) -> Bool { !(groups[groupId]?.members.isEmpty ?? true) || consumerGroups[groupId] != nil }

    private func persist(_ group: Group) {
        let snapshot = GroupSnapshot(
            groupId: group.id, state: group.state.rawValue, generation: group.generation, protocolType: group.protocolType,
            protocolName: group.protocolName, leader: group.leader,
            members: group.joinOrder.compactMap { id in
                guard let m = group.members[id] else { return nil }
                let parts = (try? ConsumerAssignment.decode(m.assignment).partitions.map(\.description)) ?? []
                return GroupSnapshot.Member(memberId: id, groupInstanceId: m.groupInstanceId, clientId: m.clientId, partitions: parts)
            },
            timestamp: clock())
        dirtySnapshots[group.id] = snapshot
    }

    /// Records changed group snapshots in `__consumer_offsets` (from the maintenance loop).
    func flushSnapshots() async {
        let pending = dirtySnapshots
        dirtySnapshots.removeAll()
        for snapshot in pending.values {
            do { try await offsets.saveSnapshot(snapshot) } catch { logger.warning("could not record group \(snapshot.groupId): \(error)") }
        }
    }
}
