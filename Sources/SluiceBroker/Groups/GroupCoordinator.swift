// GroupCoordinator: every consumer group of the broker — classic-protocol groups
// (ClassicGroup: members, generations, the Empty → PreparingRebalance → CompletingRebalance →
// Stable cycle, session timeouts, static membership) and consumer-protocol groups
// (ConsumerGroupState, KIP-848) — plus committed offsets and the fencing of stale commits. The
// group rules are pure values that take `now` and return actions; this actor holds the joins
// and syncs that wait, carries the actions out and reads time from the injected clock. It
// treats protocol metadata as bytes, so in-process consumers and Kafka wire clients share
// groups. A group may hold members of both protocols while it migrates (MixedGroups). An
// actor: group changes are low-rate coordination.
import Logging
import SluiceLog

public actor GroupCoordinator {
    private var groups: [String: ClassicGroup] = [:]
    /// Joins and syncs waiting for their rebalance, by group and member.
    private var pendingJoins: [String: [String: CheckedContinuation<JoinGroupResponse, any Error>]] = [:]
    private var pendingSyncs: [String: [String: CheckedContinuation<[UInt8], any Error>]] = [:]
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

    /// One ConsumerGroupHeartbeat (see ConsumerGroupState.heartbeat). An empty classic group
    /// is taken over, keeping its offsets. A classic group with members is upgraded (Kafka's
    /// online migration, see MixedGroups) when the migration policy allows it; otherwise the
    /// answer is GROUP_ID_NOT_FOUND, as Kafka gives.
    public func consumerHeartbeat(groupId: String, memberId: String, epoch: Int32, instanceId: String?, rackId: String?, rebalanceTimeoutMs: Int32,
                                  topics: [String]?, serverAssignor: String?, owned: [TopicPartition]?, clientId: String, clientHost: String) throws -> (result: ConsumerHeartbeatResult, intervalMs: Int32) {
        guard !groupId.isEmpty else { throw BrokerError(.invalidGroupId, "the group id is empty") }
        let now = clock()
        var group: ConsumerGroupState
        var upgrading: ClassicGroup?
        if let classic = groups[groupId], !classic.members.isEmpty {
            guard epoch == 0 else { throw BrokerError(.unknownGroup, "Group \(groupId) is not a consumer group.") }
            guard config.migrationPolicy.upgrades else {
                throw BrokerError(.unknownGroup, "Cannot upgrade classic group \(groupId) to consumer group because online upgrade is disabled (migration policy \(config.migrationPolicy.rawValue)).")
            }
            group = try ConsumerGroupState(upgrading: classic, now: now)
            upgrading = classic
        } else {
            group = consumerGroups[groupId] ?? ConsumerGroupState(groupId: groupId)
        }
        let counts = partitionCounts
        let epochBefore = group.epoch
        let known = !memberId.isEmpty && group.members[memberId] != nil
        let result = try group.heartbeat(memberId: memberId, epoch: epoch, instanceId: instanceId, rackId: rackId, rebalanceTimeoutMs: rebalanceTimeoutMs,
                                         topics: topics, serverAssignor: serverAssignor, owned: owned, clientId: clientId, clientHost: clientHost,
                                         now: now, partitions: { name in (try? TopicName(name)).flatMap(counts) })
        if let upgrading {
            // The classic barrier is gone: waiting joins and syncs rejoin into the new group.
            failWaits(groupId, BrokerError(.rebalanceInProgress, "group \(groupId) was upgraded to the consumer protocol; rejoin"))
            logger.info("group \(groupId) upgraded from the classic protocol to the consumer protocol at generation \(upgrading.generation): \(upgrading.members.count) classic member\(upgrading.members.count == 1 ? "" : "s") kept their partitions")
        }
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
            if epoch < 0 { afterRemoval(groupId) }
            // Still a consumer-protocol group (a downgrade tells its members itself).
            if consumerGroups[groupId] != nil { notifyWatchers(groupId) }
        }
        return (result, Int32(clamping: config.consumerHeartbeatIntervalMs))
    }

    /// Ends every join and sync of the group that waits.
    private func failWaits(_ groupId: String, _ error: BrokerError) {
        let joins = pendingJoins.removeValue(forKey: groupId) ?? [:]
        let syncs = pendingSyncs.removeValue(forKey: groupId) ?? [:]
        for c in joins.values { c.resume(throwing: error) }
        for c in syncs.values { c.resume(throwing: error) }
        notifyWatchers(groupId)
    }

    /// Tells the group's in-process members to rejoin (a consumer-protocol group moved on).
    private func notifyWatchers(_ groupId: String) {
        let ws = watchers[groupId].map { Array($0.values) } ?? []
        for w in ws { w() }
    }

    /// After members left a consumer-protocol group: an empty group is forgotten (its offsets
    /// stay), and one left with classic members only is downgraded where the policy allows.
    private func afterRemoval(_ groupId: String) {
        guard let group = consumerGroups[groupId] else { return }
        if group.members.isEmpty {
            consumerGroups.removeValue(forKey: groupId)
            return
        }
        guard group.onlyClassicMembers else { return }
        guard config.migrationPolicy.downgrades else {
            logger.info("consumer group \(groupId) has only classic members but is not downgraded: online downgrade is disabled (migration policy \(config.migrationPolicy.rawValue))")
            return
        }
        var actions: [ClassicGroupAction] = []
        let classic = ClassicGroup(downgrading: group, now: clock(), config: config, actions: &actions)
        consumerGroups.removeValue(forKey: groupId)
        groups[groupId] = classic
        logger.info("group \(groupId) downgraded from the consumer protocol to the classic protocol at epoch \(group.epoch): \(classic.members.count) classic member\(classic.members.count == 1 ? "" : "s") rejoin")
        apply(groupId, actions)
        persist(classic)
    }

    /// A classic member's JoinGroup into a consumer-protocol group, answered at once.
    private func classicJoin(_ request: JoinGroupRequest, into group: ConsumerGroupState) throws -> JoinGroupResponse {
        guard config.migrationPolicy != .disabled else {
            throw BrokerError(.inconsistentGroupProtocol, "Cannot join the consumer group \(request.groupId) with the classic protocol because the group migration is disabled.")
        }
        guard request.protocolType == "consumer" else {
            throw BrokerError(.inconsistentGroupProtocol, "group '\(request.groupId)' uses protocol type 'consumer', not '\(request.protocolType)'")
        }
        var group = group
        let counts = partitionCounts
        let epochBefore = group.epoch
        let known = group.members[request.memberId] != nil
        let response = try group.classicJoin(request, now: clock(), newMemberId: { self.newMemberId($0, $1) }, partitions: { name in (try? TopicName(name)).flatMap(counts) })
        consumerGroups[request.groupId] = group
        if !known { logger.info("member \(response.memberId) joined consumer group \(request.groupId) with the classic protocol (epoch \(group.epoch))") }
        if group.epoch != epochBefore {
            persist(group)
            notifyWatchers(request.groupId)
        }
        return response
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
        if let cg = consumerGroups[request.groupId] { return try classicJoin(request, into: cg) }
        let groupId = request.groupId
        let now = clock()
        var group = groups[groupId] ?? ClassicGroup(id: groupId, now: now)
        if group.state == .dead { group = ClassicGroup(id: groupId, now: now) }
        var actions: [ClassicGroupAction] = []
        let outcome = try group.join(request, config: config, now: now, newMemberId: { self.newMemberId($0, $1) }, actions: &actions)
        groups[groupId] = group
        switch outcome {
        case .answered(let response):
            apply(groupId, actions)
            return response
        case .waiting(let memberId):
            return try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { continuation in
                    // Stored before the actions run: they may answer this very join.
                    let older = pendingJoins[groupId, default: [:]].updateValue(continuation, forKey: memberId)
                    older?.resume(throwing: BrokerError(.rebalanceInProgress, "a newer join replaced this one"))
                    // Not told of the rebalance its own join starts (it would join again).
                    apply(groupId, actions.filter {
                        switch $0 {
                        case .failJoin(let m, _), .rebalancing(let m): return m != memberId
                        default: return true
                        }
                    })
                }
            } onCancel: {
                Task { await self.abandonWaits(groupId: groupId, memberId: memberId) }
            }
        }
    }

    /// Carries out what a change to a classic group asks for.
    private func apply(_ groupId: String, _ actions: [ClassicGroupAction]) {
        for action in actions {
            // Each continuation or callback is taken out first and called after: nothing runs
            // while a dictionary of this actor is being changed.
            switch action {
            case .completeJoin(let m, let response):
                let c = pendingJoins[groupId]?.removeValue(forKey: m)
                c?.resume(returning: response)
            case .failJoin(let m, let error):
                let c = pendingJoins[groupId]?.removeValue(forKey: m)
                c?.resume(throwing: error)
            case .completeSync(let m, let assignment):
                let c = pendingSyncs[groupId]?.removeValue(forKey: m)
                c?.resume(returning: assignment)
            case .failSync(let m, let error):
                let c = pendingSyncs[groupId]?.removeValue(forKey: m)
                c?.resume(throwing: error)
            case .rebalancing(let m):
                let w = watchers[groupId]?[m]
                w?()
            case .removed(let m):
                let w = watchers[groupId]?.removeValue(forKey: m)
                w?()
            case .persist:
                if let g = groups[groupId] { persist(g) }
            case .log(let line):
                logger.info("\(line)")
            }
        }
    }

    /// A waiting join or sync whose task was cancelled (its connection or pipeline is shutting
    /// down) ends with CancellationError; the member stays until the rebalance or its session
    /// times out, as when a Kafka client goes away mid-join.
    private func abandonWaits(groupId: String, memberId: String) {
        let join = pendingJoins[groupId]?.removeValue(forKey: memberId)
        let sync = pendingSyncs[groupId]?.removeValue(forKey: memberId)
        join?.resume(throwing: CancellationError())
        sync?.resume(throwing: CancellationError())
        groups[groupId]?.abandon(memberId)
    }

    private func newMemberId(_ clientId: String, _ instance: String?) -> String {
        memberCounter += 1
        let uuid = (0..<4).map { _ in String(UInt16.random(in: 0...UInt16.max), radix: 16) }.joined()
        return "\(instance ?? clientId)-\(memberCounter)-\(uuid)"
    }

    // MARK: Sync

    /// The member's assignment for `generation`. The leader's call carries everyone's.
    public func sync(groupId: String, generation: Int32, memberId: String, groupInstanceId: String? = nil, assignments: [String: [UInt8]] = [:]) async throws -> [UInt8] {
        if consumerGroups[groupId] != nil {
            return try consumerGroups[groupId]!.classicSync(memberId: memberId, instance: groupInstanceId, generation: generation, now: clock())
        }
        guard var group = groups[groupId] else { throw BrokerError(.unknownMemberId, "group '\(groupId)' has no member '\(memberId)'") }
        var actions: [ClassicGroupAction] = []
        let outcome = try group.sync(memberId: memberId, generation: generation, groupInstanceId: groupInstanceId, assignments: assignments, actions: &actions)
        groups[groupId] = group
        switch outcome {
        case .answered(let assignment):
            apply(groupId, actions)
            return assignment
        case .waiting:
            return try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { continuation in
                    pendingSyncs[groupId, default: [:]][memberId] = continuation
                    apply(groupId, actions)
                }
            } onCancel: {
                Task { await self.abandonWaits(groupId: groupId, memberId: memberId) }
            }
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
        if consumerGroups[groupId] != nil {
            return try consumerGroups[groupId]!.classicHeartbeat(memberId: memberId, instance: groupInstanceId, generation: generation, now: clock())
        }
        guard groups[groupId] != nil else { throw BrokerError(.unknownMemberId, "group '\(groupId)' has no member '\(memberId)'") }
        try groups[groupId]!.heartbeat(memberId: memberId, generation: generation, groupInstanceId: groupInstanceId, now: clock())
    }

    /// Removes a member (by member id, or by static instance id); false when the group has no
    /// such member.
    @discardableResult
    public func leave(groupId: String, memberId: String, groupInstanceId: String? = nil) -> Bool {
        if consumerGroups[groupId] != nil {
            let counts = partitionCounts
            guard let removed = consumerGroups[groupId]!.remove(memberId: memberId, instance: groupInstanceId, now: clock(), partitions: { name in (try? TopicName(name)).flatMap(counts) }) else { return false }
            let w = watchers[groupId]?.removeValue(forKey: removed)
            w?()
            logger.info("member \(removed) left consumer group \(groupId)")
            persist(consumerGroups[groupId]!)
            afterRemoval(groupId)
            if consumerGroups[groupId] != nil { notifyWatchers(groupId) }
            return true
        }
        guard groups[groupId] != nil else { return false }
        var actions: [ClassicGroupAction] = []
        let left = groups[groupId]!.leave(memberId: memberId, groupInstanceId: groupInstanceId, now: clock(), config: config, actions: &actions)
        apply(groupId, actions)
        return left
    }

    /// Rebalances every group whose consumers subscribe to `topic` (its partition count changed).
    public func partitionsChanged(_ topic: TopicName) {
        let counts = partitionCounts
        for id in Array(consumerGroups.keys) where consumerGroups[id]!.members.values.contains(where: { $0.topics.contains(topic.rawValue) }) {
            consumerGroups[id]!.partitionsChanged({ name in (try? TopicName(name)).flatMap(counts) }, now: clock())
            persist(consumerGroups[id]!)
            notifyWatchers(id)
        }
        for id in Array(groups.keys) {
            var actions: [ClassicGroupAction] = []
            groups[id]!.partitionsChanged(topic, now: clock(), config: config, actions: &actions)
            apply(id, actions)
        }
    }

    /// A commit from a consumer-protocol member: it must be a member, at its current epoch, or
    /// at the one before for partitions it still owns (its commit crossed the heartbeat answer
    /// that moved it on).
    private func validateConsumer(_ group: ConsumerGroupState, memberId: String, epoch: Int32, partitions: [TopicPartition] = []) throws {
        guard let m = group.members[memberId] else {
            throw BrokerError(.unknownMemberId, "consumer group '\(group.groupId)' has no member '\(memberId)'")
        }
        if m.classic != nil {
            // A classic member commits at the epoch its last JoinGroup answer gave it.
            guard epoch == m.epoch else {
                throw BrokerError(.illegalGeneration, "member \(memberId) of consumer group '\(group.groupId)' committed at generation \(epoch), but its member epoch is \(m.epoch)")
            }
            return
        }
        let owned = Set(m.owned)
        guard epoch == m.epoch || (epoch == m.previousEpoch && !partitions.isEmpty && partitions.allSatisfy { owned.contains($0) }) else {
            throw BrokerError(.staleMemberEpoch, "member \(memberId) of consumer group '\(group.groupId)' committed at epoch \(epoch), its epoch is \(m.epoch)")
        }
    }

    // MARK: Timers

    /// Expires members whose session ran out and finishes overdue rebalances. Called by the
    /// broker's maintenance loop.
    public func tick() async {
        let now = clock()
        for id in Array(groups.keys) {
            var actions: [ClassicGroupAction] = []
            groups[id]!.tick(now: now, config: config, actions: &actions)
            apply(id, actions)
        }
        for id in Array(consumerGroups.keys) {
            let counts = partitionCounts
            let gone = consumerGroups[id]!.expire(now: now, sessionTimeoutMs: config.consumerSessionTimeoutMs, partitions: { name in (try? TopicName(name)).flatMap(counts) })
            for (m, why) in gone {
                logger.info("member \(m.memberId) removed from consumer group \(id): \(why)")
                let w = watchers[id]?.removeValue(forKey: m.memberId)
                w?()
            }
            if !gone.isEmpty {
                persist(consumerGroups[id]!)
                afterRemoval(id)
                if consumerGroups[id] != nil { notifyWatchers(id) }
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
    /// Commits are stamped with the coordinator's clock, which offset retention reads.
    public func commit(groupId: String, generation: Int32 = -1, memberId: String = "", groupInstanceId: String? = nil, offsets given: [TopicPartition: CommittedOffset]) async throws {
        guard !groupId.isEmpty else { throw BrokerError(.invalidGroupId, "the group id is empty") }
        let committed = stamped(given)
        if let cg = consumerGroups[groupId] {
            // A consumer-protocol group with members takes commits from its members only
            // (Kafka: UNKNOWN_MEMBER_ID for one that names no member).
            guard generation >= 0 || !memberId.isEmpty else {
                throw BrokerError(.unknownMemberId, "consumer group '\(groupId)' has \(cg.members.count) member\(cg.members.count == 1 ? "" : "s"); a commit must name one of them and its epoch")
            }
            try validateConsumer(cg, memberId: memberId, epoch: generation, partitions: Array(committed.keys))
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
    private func checkCommitter(_ groupId: String, memberId: String, instance: String?, generation: Int32) throws -> ClassicGroup? {
        if let group = groups[groupId], !group.members.isEmpty {
            try group.validate(memberId: memberId, instance: instance, generation: generation)
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
        try await offsets.commit(groupId, stamped(committed), syncNow: true)
    }

    private func stamped(_ committed: [TopicPartition: CommittedOffset]) -> [TopicPartition: CommittedOffset] {
        let now = clock()
        return committed.mapValues { var c = $0; c.commitTimestamp = now; return c }
    }

    public func committedOffsets(groupId: String) -> [TopicPartition: CommittedOffset] {
        offsets.committed(groupId)
    }

    /// Checks that `memberId` at `generation` is a current member (the fetch-ownership check
    /// lanes make before processing); with `partition`, that it is assigned that partition.
    public func checkOwnership(groupId: String, memberId: String, generation: Int32, partition: TopicPartition? = nil) throws {
        if let cg = consumerGroups[groupId] {
            guard let m = cg.members[memberId] else { throw BrokerError(.unknownMemberId, "group '\(groupId)' has no member '\(memberId)'") }
            guard generation == m.epoch else {
                throw BrokerError(.illegalGeneration, "member \(memberId) is at generation \(generation) but its member epoch in group '\(groupId)' is \(m.epoch)")
            }
            if let partition, !cg.assigned(memberId).contains(partition) {
                throw BrokerError(.notAssigned, "\(partition) is not assigned to member \(memberId) of group '\(groupId)' at epoch \(generation)")
            }
            return
        }
        guard let group = groups[groupId] else { throw BrokerError(.unknownMemberId, "group '\(groupId)' has no member '\(memberId)'") }
        try group.validate(memberId: memberId, instance: nil, generation: generation)
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
        if let cg = consumerGroups[groupId] {
            // A consumer-protocol group in the classic API's terms: its classic members show
            // their metadata, every member its assignment.
            return GroupDescription(groupId: groupId, state: cg.state == "Stable" ? .stable : .preparingRebalance, generation: cg.epoch, protocolType: "consumer",
                                    protocolName: nil, leader: nil,
                                    members: cg.members.values.sorted { $0.memberId < $1.memberId }.map { m in
                                        let metadata = m.classic.flatMap { c in c.protocols.first { $0.name == c.protocolName }?.metadata } ?? []
                                        return GroupMemberDescription(memberId: m.memberId, groupInstanceId: m.instanceId, clientId: m.clientId, metadata: metadata,
                                                                      assignment: ConsumerAssignment(partitions: cg.assigned(m.memberId)).encode())
                                    })
        }
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
        if let cg = consumerGroups[groupId] {
            throw BrokerError(.groupNotEmpty, "group '\(groupId)' has \(cg.members.count) live member\(cg.members.count == 1 ? "" : "s"); stop them first")
        }
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
        if let cg = consumerGroups[groupId] {
            throw BrokerError(.groupNotEmpty, "group '\(groupId)' has \(cg.members.count) live member\(cg.members.count == 1 ? "" : "s"); stop its consumers before resetting offsets")
        }
        if let g = groups[groupId], !g.members.isEmpty {
            throw BrokerError(.groupNotEmpty, "group '\(groupId)' has \(g.members.count) live member\(g.members.count == 1 ? "" : "s"); stop its consumers before resetting offsets")
        }
        try await offsets.commit(groupId, newOffsets)
    }

    /// True when the group has live members in this process.
    public func hasMembers(_ groupId: String) -> Bool { !(groups[groupId]?.members.isEmpty ?? true) || consumerGroups[groupId] != nil }

    private func persist(_ group: ClassicGroup) {
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
