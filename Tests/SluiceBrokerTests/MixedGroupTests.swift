// Groups that change protocol while they have members (Kafka's online migration): a
// consumer-protocol member upgrades a classic group, classic members go on through JoinGroup,
// SyncGroup and Heartbeat answered from the consumer-protocol state, and the group is
// downgraded when the last consumer-protocol member leaves. Driven through the coordinator on
// a manual clock, and with real in-process consumers.
import Foundation
import SluiceBroker
import SluiceLog
import Testing

@Suite(.serialized) struct MixedProtocolGroups {
    private let orders = try! TopicName("orders")
    private func tps(_ ps: [Int32]) -> [TopicPartition] { ps.map { TopicPartition(orders, $0) } }

    private func join(_ t: TestBroker, _ memberId: String = "", owned: [TopicPartition] = [], instance: String? = nil, sessionMs: Int32 = 10_000) async throws -> JoinGroupResponse {
        try await t.broker.groups.join(JoinGroupRequest(groupId: "g", memberId: memberId, groupInstanceId: instance, sessionTimeoutMs: sessionMs, rebalanceTimeoutMs: 5_000,
                                                        protocols: [GroupProtocol(name: "cooperative-sticky", metadata: ConsumerSubscription(topics: ["orders"], ownedPartitions: owned).encode())]))
    }

    private func beat(_ t: TestBroker, _ memberId: String, _ epoch: Int32, owned: [TopicPartition]? = nil) async throws -> ConsumerHeartbeatResult {
        try await t.broker.groups.consumerHeartbeat(groupId: "g", memberId: memberId, epoch: epoch, instanceId: nil, rackId: nil, rebalanceTimeoutMs: 5_000,
                                                    topics: epoch == 0 ? ["orders"] : nil, serverAssignor: nil, owned: owned, clientId: "kip848", clientHost: "h").result
    }

    /// A classic group of a and b at generation 2: a owns 0 and 1, b owns 2 and 3.
    private func classicPair(_ t: TestBroker) async throws -> (a: String, b: String, generation: Int32) {
        let first = try await join(t)
        _ = try await t.broker.groups.sync(groupId: "g", generation: first.generation, memberId: first.memberId, assignments: [first.memberId: ConsumerAssignment(partitions: tps([0, 1, 2, 3])).encode()])
        async let second = join(t)
        try await Task.sleep(for: .milliseconds(20))
        async let again = join(t, first.memberId, owned: tps([0, 1, 2, 3]))
        let (s, a) = try await (second, again)
        #expect(s.generation == a.generation)
        let leader = a.isLeader ? a : s
        let other = a.isLeader ? s : a
        let plan = [a.memberId: ConsumerAssignment(partitions: tps([0, 1])).encode(), s.memberId: ConsumerAssignment(partitions: tps([2, 3])).encode()]
        async let followerSync = t.broker.groups.sync(groupId: "g", generation: other.generation, memberId: other.memberId)
        try await Task.sleep(for: .milliseconds(20))
        _ = try await t.broker.groups.sync(groupId: "g", generation: leader.generation, memberId: leader.memberId, assignments: plan)
        _ = try await followerSync
        return (a.memberId, s.memberId, a.generation)
    }

    /// Every partition owned by at most one member.
    private func disjoint(_ t: TestBroker) async -> Bool {
        guard let g = await t.broker.groups.consumerGroup("g") else { return true }
        var seen = Set<TopicPartition>()
        return g.members.values.allSatisfy { m in m.owned.allSatisfy { seen.insert($0).inserted } }
    }

    @Test func aConsumerProtocolMemberUpgradesAClassicGroupAndOnlyMovedPartitionsAreRevoked() async throws {
        let clock = ManualClock()
        let t = try await TestBroker.make(clock: clock)
        defer { Task { await t.close() } }
        _ = try t.broker.createTopic("orders", partitions: 4)
        let (a, b, generation) = try await classicPair(t)
        try await t.broker.groups.commit(groupId: "g", generation: generation, memberId: a, offsets: [TopicPartition(orders, 0): CommittedOffset(offset: 7)])

        // c joins on the consumer protocol: the group is upgraded, a and b keep what they own.
        let c0 = try await beat(t, "c", 0)
        let upgraded = try #require(await t.broker.groups.consumerGroup("g"))
        #expect(upgraded.members.count == 3)
        #expect(upgraded.members[a]?.classic != nil && upgraded.members["c"]?.classic == nil)
        #expect(upgraded.epoch == generation + 1, "the group epoch continues from the classic generation")
        #expect(Set(upgraded.members[a]!.owned) == Set(tps([0, 1])) && Set(upgraded.members[b]!.owned) == Set(tps([2, 3])))
        #expect(c0.assignment == [], "everything is still held by the classic members")
        #expect(await t.broker.groups.committedOffsets(groupId: "g")[TopicPartition(orders, 0)]?.offset == 7, "offsets survive the upgrade")
        // The classic members still commit at their generation until they rejoin.
        try await t.broker.groups.commit(groupId: "g", generation: generation, memberId: b, offsets: [TopicPartition(orders, 2): CommittedOffset(offset: 3)])

        // Each classic member behaves as a cooperative client: on REBALANCE_IN_PROGRESS it
        // rejoins reporting what it holds, syncs, gives up what its assignment lacks; c
        // heartbeats reporting what it was given. Until nothing changes.
        var held: [String: [TopicPartition]] = [a: tps([0, 1]), b: tps([2, 3]), "c": []]
        var epochs: [String: Int32] = [a: generation, b: generation, "c": c0.memberEpoch]
        var revoked: [String: Set<TopicPartition>] = [:]
        var joinResponses: [JoinGroupResponse] = []
        for _ in 0..<12 {
            var changed = false
            for m in [a, b] {
                do {
                    try await t.broker.groups.heartbeat(groupId: "g", generation: epochs[m]!, memberId: m)
                } catch let e as BrokerError where e.code == .rebalanceInProgress {
                    let j = try await join(t, m, owned: held[m]!)
                    joinResponses.append(j)
                    let bytes = try await t.broker.groups.sync(groupId: "g", generation: j.generation, memberId: m)
                    let given = try ConsumerAssignment.decode(bytes).partitions
                    revoked[m, default: []].formUnion(Set(held[m]!).subtracting(given))
                    held[m] = given
                    epochs[m] = j.generation
                    changed = true
                }
                #expect(await disjoint(t))
            }
            let r = try await beat(t, "c", epochs["c"]!, owned: held["c"]!)
            if let given = r.assignment, given != held["c"]! { held["c"] = given; changed = true }
            if r.memberEpoch != epochs["c"]! { epochs["c"] = r.memberEpoch; changed = true }
            #expect(await disjoint(t))
            if !changed { break }
        }
        #expect(joinResponses.allSatisfy { $0.leader.isEmpty && $0.members.isEmpty }, "classic members of a consumer-protocol group are all followers")
        let all = Set(held.values.flatMap { $0 })
        #expect(all == Set(tps([0, 1, 2, 3])), "\(held)")
        #expect(held.values.allSatisfy { !$0.isEmpty }, "\(held)")
        #expect(await t.broker.groups.consumerGroup("g")?.state == "Stable")
        // Only partitions that moved to c were revoked.
        let lost = revoked.values.reduce(Set<TopicPartition>()) { $0.union($1) }
        #expect(lost == Set(held["c"]!), "revoked \(lost), c owns \(held["c"]!)")
        #expect(Set(held[a]!).isSubset(of: tps([0, 1])) && Set(held[b]!).isSubset(of: tps([2, 3])))

        // A classic member commits at the epoch its last join gave; an older one is refused.
        try await t.broker.groups.commit(groupId: "g", generation: epochs[a]!, memberId: a, offsets: [held[a]![0]: CommittedOffset(offset: 9)])
        if epochs[a]! != generation {
            await #expect(throws: BrokerError.self) {
                try await t.broker.groups.commit(groupId: "g", generation: generation, memberId: a, offsets: [held[a]![0]: CommittedOffset(offset: 10)])
            }
        }

        // c leaves: only classic members are left, so the group is a classic group again and
        // rebalances with the classic barrier.
        _ = try await beat(t, "c", -1)
        #expect(await t.broker.groups.consumerGroup("g") == nil)
        let d = try #require(await t.broker.groups.describe(groupId: "g"))
        #expect(d.state == .preparingRebalance && d.protocolType == "consumer" && d.members.count == 2)
        // The members are told to rejoin (not that they missed a generation), and a commit
        // before rejoining (an eager client's, on revoke) still passes.
        do {
            try await t.broker.groups.heartbeat(groupId: "g", generation: epochs[a]!, memberId: a)
            Issue.record("a heartbeat after the downgrade did not ask a to rejoin")
        } catch let e as BrokerError {
            #expect(e.code == .rebalanceInProgress, "\(e)")
        }
        try await t.broker.groups.commit(groupId: "g", generation: epochs[a]!, memberId: a, offsets: [held[a]![0]: CommittedOffset(offset: 11)])
        let heldA = held[a]!, heldB = held[b]!
        async let ja = join(t, a, owned: heldA)
        async let jb = join(t, b, owned: heldB)
        let (ra, rb) = try await (ja, jb)
        #expect(ra.generation == rb.generation && ra.generation > epochs[a]!)
        #expect(ra.isLeader != rb.isLeader, "a classic group has one leader again")
        #expect(await t.broker.groups.describe(groupId: "g")?.state == .completingRebalance)
    }

    @Test func aRemovedClassicMemberRejoiningWithItsOldIdIsToldItIsUnknown() async throws {
        let clock = ManualClock()
        let t = try await TestBroker.make(clock: clock)
        defer { Task { await t.close() } }
        _ = try t.broker.createTopic("orders", partitions: 4)
        let (a, b, generation) = try await classicPair(t)
        let c0 = try await beat(t, "c", 0)
        // a stops; its 10 s session runs out while b and c go on.
        clock.advance(6_000)
        _ = try? await t.broker.groups.heartbeat(groupId: "g", generation: generation, memberId: b)
        _ = try await beat(t, "c", c0.memberEpoch, owned: [])
        clock.advance(6_000)
        await t.broker.groups.tick()
        #expect(await t.broker.groups.consumerGroup("g")?.members[a] == nil)
        do {
            _ = try await join(t, a, owned: tps([0, 1]))
            Issue.record("a removed member rejoined under its old id, keeping partitions it had lost")
        } catch let e as BrokerError {
            #expect(e.code == .unknownMemberId, "\(e)")
        }
        // Without its id it joins as a new member and owns only what it is given.
        let again = try await join(t)
        #expect(again.memberId != a)
        // A static leave (epoch -2) of the last consumer-protocol member also downgrades.
        _ = try await beat(t, "c", -2)
        #expect(await t.broker.groups.consumerGroup("g") == nil)
        #expect(await t.broker.groups.describe(groupId: "g")?.state == .preparingRebalance)
    }

    @Test func anEagerClassicMemberThatReportsNothingReleasesEverythingAtOnce() async throws {
        let t = try await TestBroker.make(clock: ManualClock())
        defer { Task { await t.close() } }
        _ = try t.broker.createTopic("orders", partitions: 4)
        let (a, b, generation) = try await classicPair(t)
        let c0 = try await beat(t, "c", 0)
        // Both classic members rejoin owning nothing (an eager client revokes all first).
        for m in [a, b] {
            let j = try await join(t, m)
            #expect(j.generation == c0.memberEpoch, "nothing to revoke: straight to the group epoch")
            let given = try ConsumerAssignment.decode(try await t.broker.groups.sync(groupId: "g", generation: j.generation, memberId: m)).partitions
            #expect(!given.isEmpty)
        }
        let c1 = try await beat(t, "c", c0.memberEpoch, owned: [])
        let g = try #require(await t.broker.groups.consumerGroup("g"))
        #expect(c1.assignment?.isEmpty == false, "c gets its share as soon as the eager members rejoined")
        #expect(Set(g.members.values.flatMap(\.owned)).count == g.members.values.map(\.owned.count).reduce(0, +))
        _ = generation
    }

    @Test func theMigrationPolicyDecidesWhetherAGroupChangesProtocol() async throws {
        var config = GroupConfig()
        config.migrationPolicy = .downgrade
        let t = try await TestBroker.make(groupConfig: config, clock: ManualClock())
        defer { Task { await t.close() } }
        _ = try t.broker.createTopic("orders", partitions: 4)
        _ = try await classicPair(t)
        do {
            _ = try await beat(t, "c", 0)
            Issue.record("an upgrade was allowed under the downgrade policy")
        } catch let e as BrokerError {
            #expect(e.code == .unknownGroup)
            #expect(e.message == "Cannot upgrade classic group g to consumer group because online upgrade is disabled (migration policy downgrade).")
        }
        #expect(await t.broker.groups.consumerGroup("g") == nil)

        // Disabled: a classic member cannot join a consumer-protocol group either.
        config.migrationPolicy = .disabled
        let u = try await TestBroker.make(groupConfig: config, clock: ManualClock())
        defer { Task { await u.close() } }
        _ = try u.broker.createTopic("orders", partitions: 4)
        _ = try await beat(u, "c", 0)
        do {
            _ = try await join(u)
            Issue.record("a classic member joined under the disabled policy")
        } catch let e as BrokerError {
            #expect(e.code == .inconsistentGroupProtocol)
            #expect(e.message == "Cannot join the consumer group g with the classic protocol because the group migration is disabled.")
        }

        // Upgrade only: the group stays on the consumer protocol when its last
        // consumer-protocol member leaves.
        config.migrationPolicy = .upgrade
        let v = try await TestBroker.make(groupConfig: config, clock: ManualClock())
        defer { Task { await v.close() } }
        _ = try v.broker.createTopic("orders", partitions: 4)
        _ = try await classicPair(v)
        let c = try await beat(v, "c", 0)
        _ = try await beat(v, "c", -1)
        let g = try #require(await v.broker.groups.consumerGroup("g"), "not downgraded under the upgrade policy")
        #expect(g.onlyClassicMembers && g.members.count == 2 && c.memberEpoch > 0)
    }

    @Test func aClassicGroupThatCannotBeUpgradedSaysWhy() async throws {
        let t = try await TestBroker.make(clock: ManualClock())
        defer { Task { await t.close() } }
        _ = try t.broker.createTopic("orders", partitions: 2)
        // A custom assignor's user data cannot be carried over.
        let j = try await t.broker.groups.join(JoinGroupRequest(groupId: "g", protocols: [GroupProtocol(name: "my-assignor", metadata: ConsumerSubscription(topics: ["orders"]).encode())]))
        _ = try await t.broker.groups.sync(groupId: "g", generation: j.generation, memberId: j.memberId,
                                           assignments: [j.memberId: ConsumerAssignment(partitions: tps([0, 1]), userData: [1, 2, 3]).encode()])
        do {
            _ = try await beat(t, "c", 0)
            Issue.record("upgraded a group with a custom assignor's user data")
        } catch let e as BrokerError {
            #expect(e.code == .unknownGroup && e.message.contains("an unsupported custom assignor is in use"), "\(e.message)")
        }
        // A built-in assignor's user data (sticky history, as librdkafka echoes it) is dropped.
        let s = try await t.broker.groups.join(JoinGroupRequest(groupId: "sticky", protocols: [GroupProtocol(name: "cooperative-sticky", metadata: ConsumerSubscription(topics: ["orders"]).encode())]))
        _ = try await t.broker.groups.sync(groupId: "sticky", generation: s.generation, memberId: s.memberId,
                                           assignments: [s.memberId: ConsumerAssignment(partitions: tps([0, 1]), userData: [0, 0, 0, 1]).encode()])
        _ = try await t.broker.groups.consumerHeartbeat(groupId: "sticky", memberId: "c", epoch: 0, instanceId: nil, rackId: nil, rebalanceTimeoutMs: 5_000,
                                                        topics: ["orders"], serverAssignor: nil, owned: nil, clientId: "c", clientHost: "h")
        #expect(await t.broker.groups.consumerGroup("sticky")?.members[s.memberId]?.owned.count == 2)
        // A heartbeat at a member epoch to a classic group: not a consumer group.
        do {
            _ = try await beat(t, "c", 5)
            Issue.record("a consumer-protocol heartbeat at epoch 5 reached a classic group")
        } catch let e as BrokerError {
            #expect(e.message == "Group g is not a consumer group.")
        }
        // A group of another protocol type (Kafka Connect's) is not upgraded.
        _ = try await t.broker.groups.join(JoinGroupRequest(groupId: "connect", protocolType: "connect", protocols: [GroupProtocol(name: "sessioned", metadata: [])]))
        do {
            _ = try await t.broker.groups.consumerHeartbeat(groupId: "connect", memberId: "c", epoch: 0, instanceId: nil, rackId: nil, rebalanceTimeoutMs: 5_000,
                                                            topics: ["orders"], serverAssignor: nil, owned: nil, clientId: "c", clientHost: "h")
            Issue.record("upgraded a connect group")
        } catch let e as BrokerError {
            #expect(e.message == "Cannot upgrade classic group connect to consumer group because the group does not use the consumer embedded protocol.")
        }
    }

    @Test func classicMembersOfAConsumerProtocolGroupKeepTheirOwnSessionAndMustRejoinInTime() async throws {
        let clock = ManualClock()
        let t = try await TestBroker.make(clock: clock)
        defer { Task { await t.close() } }
        _ = try t.broker.createTopic("orders", partitions: 4)
        let (a, b, generation) = try await classicPair(t)
        let c0 = try await beat(t, "c", 0)
        // b keeps heartbeating but never rejoins: after its rebalance timeout (5 s) it is out.
        await #expect(throws: BrokerError.self) { try await t.broker.groups.heartbeat(groupId: "g", generation: generation, memberId: b) }
        // a rejoins and heartbeats; c heartbeats; b only heartbeats.
        let ja = try await join(t, a, owned: tps([0, 1]))
        _ = try await t.broker.groups.sync(groupId: "g", generation: ja.generation, memberId: a)
        clock.advance(4_000)
        _ = try? await t.broker.groups.heartbeat(groupId: "g", generation: generation, memberId: b)
        _ = try? await t.broker.groups.heartbeat(groupId: "g", generation: ja.generation, memberId: a)
        _ = try await beat(t, "c", c0.memberEpoch, owned: [])
        await t.broker.groups.tick()
        #expect(await t.broker.groups.consumerGroup("g")?.members[b] != nil, "within its rebalance timeout")
        clock.advance(1_500)
        _ = try? await t.broker.groups.heartbeat(groupId: "g", generation: generation, memberId: b)
        _ = try? await t.broker.groups.heartbeat(groupId: "g", generation: ja.generation, memberId: a)
        _ = try await beat(t, "c", c0.memberEpoch, owned: [])
        await t.broker.groups.tick()
        #expect(await t.broker.groups.consumerGroup("g")?.members[b] == nil, "b did not rejoin within its rebalance timeout")
        // a's session is its classic one (10 s), not the consumer protocol's (45 s).
        clock.advance(10_001)
        _ = try await beat(t, "c", c0.memberEpoch, owned: nil)
        await t.broker.groups.tick()
        let g = try #require(await t.broker.groups.consumerGroup("g"))
        #expect(g.members[a] == nil && g.members["c"] != nil, "\(g.members.keys.sorted())")
    }
}

/// Real in-process classic consumers (cooperative-sticky, as a pipeline's) in a group a
/// consumer-protocol member joins and leaves.
@Suite(.serialized) struct MixedGroupsWithInProcessConsumers {
    @Test func inProcessClassicConsumersShareWithAConsumerProtocolMemberAndTakeOverWhenItLeaves() async throws {
        let t = try await TestBroker.make()
        defer { Task { await t.close() } }
        let topic = try t.broker.createTopic("orders", partitions: 6)
        let a = try Member(t.broker, name: "a", group: "g", topic: topic, assignors: [CooperativeStickyAssignor()])
        let b = try Member(t.broker, name: "b", group: "g", topic: topic, assignors: [CooperativeStickyAssignor()])
        func settledClassic() async -> Bool {
            guard let d = await t.broker.groups.describe(groupId: "g"), d.state == .stable, d.members.count == 2 else { return false }
            return d.members.map { (try? ConsumerAssignment.decode($0.assignment).partitions.count) ?? 0 }.reduce(0, +) == 6
        }
        var waited = 0
        while !(await settledClassic()) && waited < 400 { try await Task.sleep(for: .milliseconds(20)); waited += 1 }
        #expect(await settledClassic())

        // c, a consumer-protocol member, heartbeats every 50 ms reporting what it was given.
        var epoch: Int32 = 0
        var owned: [TopicPartition] = []
        var conflicts = 0
        var cOwns = 0
        for _ in 0..<200 {
            let r = try await t.broker.groups.consumerHeartbeat(groupId: "g", memberId: "c", epoch: epoch, instanceId: nil, rackId: nil, rebalanceTimeoutMs: 5_000,
                                                                topics: epoch == 0 ? ["orders"] : nil, serverAssignor: nil, owned: owned, clientId: "c", clientHost: "h").result
            epoch = r.memberEpoch
            if let given = r.assignment { owned = given }
            if let g = await t.broker.groups.consumerGroup("g") {
                var seen = Set<TopicPartition>()
                for m in g.members.values { for tp in m.owned where !seen.insert(tp).inserted { conflicts += 1 } }
                cOwns = g.members["c"]?.owned.count ?? 0
                if g.state == "Stable" && cOwns == 2 && g.members.values.allSatisfy({ $0.owned.count == 2 }) { break }
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(conflicts == 0)
        #expect(cOwns == 2, "c got its share from the in-process consumers")
        #expect(a.consumer.assignment.count == 2 && b.consumer.assignment.count == 2, "\(a.consumer.assignment) \(b.consumer.assignment)")

        // c leaves: the group is downgraded and a and b share all six again.
        _ = try await t.broker.groups.consumerHeartbeat(groupId: "g", memberId: "c", epoch: -1, instanceId: nil, rackId: nil, rebalanceTimeoutMs: 5_000,
                                                        topics: nil, serverAssignor: nil, owned: nil, clientId: "c", clientHost: "h")
        #expect(await t.broker.groups.consumerGroup("g") == nil)
        waited = 0
        while !(await settledClassic()) && waited < 400 { try await Task.sleep(for: .milliseconds(20)); waited += 1 }
        let final = await t.broker.groups.describe(groupId: "g")
        #expect(await settledClassic(), "\(String(describing: final?.state)) \(final?.members.map { ($0.memberId, (try? ConsumerAssignment.decode($0.assignment).partitions) ?? []) } ?? []) a: \(a.events.all) b: \(b.events.all)")
        #expect(a.consumer.assignment.count + b.consumer.assignment.count == 6)
        // And it stays settled: no member keeps rejoining.
        let generation = await t.broker.groups.describe(groupId: "g")?.generation
        try await Task.sleep(for: .milliseconds(500))
        #expect(await t.broker.groups.describe(groupId: "g")?.generation == generation)
        await a.close()
        await b.close()
    }
}
