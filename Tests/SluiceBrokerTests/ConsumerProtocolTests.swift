// The consumer group protocol (KIP-848) as a pure value: joins, revocation before hand-over,
// only moved partitions revoked, epochs and fencing, timeouts — with `now` passed in.
import Foundation
import SluiceBroker
import SluiceLog
import Testing

@Suite struct ConsumerProtocolRules {
    private let topic = try! TopicName("orders")
    private func counts(_ t: String) -> Int32? { t == "orders" ? 6 : nil }
    private func tps(_ ps: [Int32]) -> [TopicPartition] { ps.map { TopicPartition(topic, $0) } }

    /// One heartbeat; `owned` is what the member reports (nil: not sent).
    @discardableResult
    private func beat(_ g: inout ConsumerGroupState, _ id: String, _ epoch: Int32, owned: [TopicPartition]? = nil, join: Bool = false, now: Int64 = 0) throws -> ConsumerHeartbeatResult {
        try g.heartbeat(memberId: id, epoch: epoch, instanceId: nil, rackId: nil, rebalanceTimeoutMs: 30_000, topics: join ? ["orders"] : nil,
                        serverAssignor: nil, owned: owned, clientId: "c", clientHost: "h", now: now, partitions: counts)
    }

    /// Every member's owned partitions, checked to be disjoint.
    private func owners(_ g: ConsumerGroupState) -> [String: Set<Int32>] {
        var seen = Set<TopicPartition>()
        var out: [String: Set<Int32>] = [:]
        for m in g.members.values {
            for tp in m.owned {
                #expect(seen.insert(tp).inserted, "\(tp) owned twice")
            }
            out[m.memberId] = Set(m.owned.map(\.partition))
        }
        return out
    }

    /// Heartbeats every member (reporting what it was last told it owns) until nothing changes.
    private func settle(_ g: inout ConsumerGroupState, told: inout [String: (Int32, [TopicPartition])], revoked: inout [String: Set<Int32>]) throws {
        for _ in 0..<10 {
            var changed = false
            for id in g.members.keys.sorted() {
                let (epoch, owned) = told[id]!
                let r = try beat(&g, id, epoch, owned: owned)
                if let a = r.assignment {
                    let lost = Set(owned).subtracting(a)
                    revoked[id, default: []].formUnion(lost.map(\.partition))
                    if a != owned || r.memberEpoch != epoch { changed = true }
                    told[id] = (r.memberEpoch, a)
                } else if r.memberEpoch != epoch {
                    told[id] = (r.memberEpoch, owned)
                    changed = true
                }
                _ = owners(g)
            }
            if !changed { return }
        }
        Issue.record("the group did not settle")
    }

    @Test func membersJoinRevokeBeforeHandOverAndSettleBalanced() throws {
        var g = ConsumerGroupState(groupId: "g")
        var told: [String: (Int32, [TopicPartition])] = [:]
        var revoked: [String: Set<Int32>] = [:]
        let a = try beat(&g, "a", 0, join: true)
        #expect(a.assignment == tps([0, 1, 2, 3, 4, 5]))
        told["a"] = (a.memberEpoch, a.assignment!)
        let b = try beat(&g, "b", 0, join: true)
        // b's target is held by a until a revokes it: b gets nothing yet, at the new epoch.
        #expect(b.assignment == [])
        told["b"] = (b.memberEpoch, [])
        let a2 = try beat(&g, "a", a.memberEpoch, owned: told["a"]!.1)
        #expect(a2.memberEpoch == a.memberEpoch, "a stays at its epoch until it revokes")
        #expect(a2.assignment?.count == 3)
        told["a"] = (a2.memberEpoch, a2.assignment!)
        try settle(&g, told: &told, revoked: &revoked)
        #expect(owners(g).mapValues(\.count) == ["a": 3, "b": 3])
        #expect(g.state == "Stable")
        // A third member: each of a and b gives up exactly one partition, to c.
        revoked = [:]
        let c = try beat(&g, "c", 0, join: true)
        told["c"] = (c.memberEpoch, c.assignment ?? [])
        try settle(&g, told: &told, revoked: &revoked)
        let final = owners(g)
        #expect(final.mapValues(\.count) == ["a": 2, "b": 2, "c": 2])
        #expect(revoked["a"]?.count == 1 && revoked["b"]?.count == 1)
        #expect(revoked["a"]!.union(revoked["b"]!) == final["c"])
    }

    @Test func aLeavingMemberCostsTheOthersNoRevocation() throws {
        var g = ConsumerGroupState(groupId: "g")
        var told: [String: (Int32, [TopicPartition])] = [:]
        var revoked: [String: Set<Int32>] = [:]
        for id in ["a", "b", "c"] {
            let r = try beat(&g, id, 0, join: true)
            told[id] = (r.memberEpoch, r.assignment ?? [])
        }
        try settle(&g, told: &told, revoked: &revoked)
        let before = owners(g)
        #expect(before.values.allSatisfy { $0.count == 2 })
        try beat(&g, "c", -1)
        told["c"] = nil
        revoked = [:]
        try settle(&g, told: &told, revoked: &revoked)
        let after = owners(g)
        #expect(after.mapValues(\.count) == ["a": 3, "b": 3])
        #expect(revoked.values.allSatisfy { $0.isEmpty }, "only moved partitions are revoked: \(revoked)")
        #expect(before["a"]!.isSubset(of: after["a"]!) && before["b"]!.isSubset(of: after["b"]!))
    }

    @Test func epochsAreCheckedAndSlowRevokersAndSilentMembersAreFenced() throws {
        var g = ConsumerGroupState(groupId: "g")
        let a = try beat(&g, "a", 0, join: true, now: 0)
        #expect(throws: BrokerError.self) { try beat(&g, "a", a.memberEpoch + 3) }
        #expect(throws: BrokerError.self) { try beat(&g, "nobody", 4) }
        #expect(throws: BrokerError.self) {
            try g.heartbeat(memberId: "x", epoch: 0, instanceId: nil, rackId: nil, rebalanceTimeoutMs: 1, topics: ["orders"], serverAssignor: "magic",
                            owned: nil, clientId: "", clientHost: "", now: 0, partitions: counts)
        }
        _ = try beat(&g, "b", 0, join: true, now: 0)
        // a is asked to revoke (rebalance timeout 30 s) and never does.
        _ = try beat(&g, "a", a.memberEpoch, owned: tps([0, 1, 2, 3, 4, 5]), now: 10)
        #expect(g.expire(now: 30_000, sessionTimeoutMs: 45_000, partitions: counts).isEmpty)
        _ = try beat(&g, "b", g.members["b"]!.epoch, now: 30_000)
        let gone = g.expire(now: 30_011, sessionTimeoutMs: 45_000, partitions: counts)
        #expect(gone.map(\.0.memberId) == ["a"])
        // b now gets everything.
        let b = try beat(&g, "b", g.members["b"]!.epoch, owned: [], now: 30_012)
        #expect(b.assignment == tps([0, 1, 2, 3, 4, 5]))
        let silent = g.expire(now: 30_012 + 45_001, sessionTimeoutMs: 45_000, partitions: counts)
        #expect(silent.map(\.0.memberId) == ["b"])
        #expect(g.state == "Empty")
    }

    @Test func theRangeAssignorCanBeChosen() throws {
        var g = ConsumerGroupState(groupId: "g")
        _ = try g.heartbeat(memberId: "a", epoch: 0, instanceId: nil, rackId: nil, rebalanceTimeoutMs: 1000, topics: ["orders"], serverAssignor: "range",
                            owned: nil, clientId: "", clientHost: "", now: 0, partitions: counts)
        #expect(g.assignor == "range")
        _ = try beat(&g, "b", 0, join: true)
        #expect(g.target["a"] == tps([0, 1, 2]) && g.target["b"] == tps([3, 4, 5]))
    }
}

@Suite(.serialized) struct ConsumerProtocolCommits {
    @Test func commitsNeedTheMembersCurrentEpochAndAClassicJoinNeedsAConsumerSubscription() async throws {
        let t = try await TestBroker.make()
        defer { Task { await t.close() } }
        let topic = try t.broker.createTopic("orders", partitions: 2)
        let joined = try await t.broker.groups.consumerHeartbeat(groupId: "g", memberId: "m1", epoch: 0, instanceId: nil, rackId: nil, rebalanceTimeoutMs: 30_000,
                                                                 topics: ["orders"], serverAssignor: nil, owned: nil, clientId: "c", clientHost: "h")
        let epoch = joined.result.memberEpoch
        let tp = TopicPartition(topic, 0)
        try await t.broker.groups.commit(groupId: "g", generation: epoch, memberId: "m1", offsets: [tp: CommittedOffset(offset: 5)])
        #expect(await t.broker.groups.committedOffsets(groupId: "g")[tp]?.offset == 5)
        // An epoch the member never had is refused; the one before its current is accepted for
        // partitions it still owns (the commit crossed the answer that moved it on).
        await #expect(throws: BrokerError.self) {
            try await t.broker.groups.commit(groupId: "g", generation: epoch + 1, memberId: "m1", offsets: [tp: CommittedOffset(offset: 6)])
        }
        try await t.broker.groups.commit(groupId: "g", generation: epoch - 1, memberId: "m1", offsets: [tp: CommittedOffset(offset: 6)])
        #expect(await t.broker.groups.committedOffsets(groupId: "g")[tp]?.offset == 6)
        await #expect(throws: BrokerError.self) {
            try await t.broker.groups.commit(groupId: "g", generation: epoch, memberId: "stranger", offsets: [tp: CommittedOffset(offset: 6)])
        }
        // A commit naming no member (generation -1) is refused while the group has members.
        do {
            try await t.broker.groups.commit(groupId: "g", offsets: [tp: CommittedOffset(offset: 99)])
            Issue.record("an anonymous commit reached a consumer-protocol group with members")
        } catch let e as BrokerError {
            #expect(e.code == .unknownMemberId && e.message == "consumer group 'g' has 1 member; a commit must name one of them and its epoch", "\(e.message)")
        }
        // A classic member may join (the group is then mixed, see MixedGroupTests), but only
        // with a consumer subscription the broker can read.
        do {
            _ = try await t.broker.groups.join(JoinGroupRequest(groupId: "g", protocols: [GroupProtocol(name: "range", metadata: [])]))
            Issue.record("a classic member without a readable subscription joined")
        } catch let e as BrokerError {
            #expect(e.code == .inconsistentGroupProtocol && e.message.contains("malformed consumer subscription"), "\(e.message)")
        }
        _ = try await t.broker.groups.consumerHeartbeat(groupId: "g", memberId: "m1", epoch: -1, instanceId: nil, rackId: nil, rebalanceTimeoutMs: -1,
                                                        topics: nil, serverAssignor: nil, owned: nil, clientId: "c", clientHost: "h")
        #expect(await t.broker.groups.consumerGroup("g") == nil)
        #expect(await t.broker.groups.committedOffsets(groupId: "g")[tp]?.offset == 6, "offsets outlive the members")
        // Without members, anyone may commit again (manual assignment).
        try await t.broker.groups.commit(groupId: "g", offsets: [tp: CommittedOffset(offset: 7)])
        #expect(await t.broker.groups.committedOffsets(groupId: "g")[tp]?.offset == 7)
    }
}

/// Group timers on a clock the test moves: no session timeouts are waited out.
@Suite(.serialized) struct GroupTimersOnAManualClock {
    private func open(_ clock: ManualClock) async throws -> (EmbeddedBroker, String) {
        let dir = NSTemporaryDirectory() + "sluice-clock-\(UUID().uuidString)"
        var config = BrokerConfig()
        config.clock = clock.function
        config.tickIntervalMs = 3_600_000  // the test ticks by hand
        config.groups.consumerSessionTimeoutMs = 45_000
        return (try await EmbeddedBroker.open(path: dir, config: config), dir)
    }

    @Test func aClassicMemberExpiresExactlyAfterItsSessionTimeout() async throws {
        let clock = ManualClock()
        let (broker, dir) = try await open(clock)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let joined = try await broker.groups.join(JoinGroupRequest(groupId: "g", sessionTimeoutMs: 10_000, protocols: [GroupProtocol(name: "range", metadata: [])]))
        _ = try await broker.groups.sync(groupId: "g", generation: joined.generation, memberId: joined.memberId, assignments: [joined.memberId: [1, 2]])
        clock.advance(10_000)
        await broker.groups.tick()
        try await broker.groups.heartbeat(groupId: "g", generation: joined.generation, memberId: joined.memberId)
        clock.advance(10_001)
        await broker.groups.tick()
        await #expect(throws: BrokerError.self) {
            try await broker.groups.heartbeat(groupId: "g", generation: joined.generation, memberId: joined.memberId)
        }
        #expect(await broker.groups.describe(groupId: "g")?.state == .empty)
        await broker.close()
    }

    @Test func aConsumerProtocolMemberExpiresAndItsPartitionsGoToTheOther() async throws {
        let clock = ManualClock()
        let (broker, dir) = try await open(clock)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try broker.createTopic("orders", partitions: 4)
        func beat(_ id: String, _ epoch: Int32, owned: [TopicPartition]? = nil) async throws -> ConsumerHeartbeatResult {
            try await broker.groups.consumerHeartbeat(groupId: "g", memberId: id, epoch: epoch, instanceId: nil, rackId: nil, rebalanceTimeoutMs: 60_000,
                                                      topics: epoch == 0 ? ["orders"] : nil, serverAssignor: nil, owned: owned, clientId: "c", clientHost: "h").result
        }
        let a = try await beat("a", 0)
        #expect(a.assignment?.count == 4)
        let b = try await beat("b", 0)
        let a2 = try await beat("a", a.memberEpoch, owned: a.assignment)
        let a3 = try await beat("a", a2.memberEpoch, owned: a2.assignment)
        let b2 = try await beat("b", b.memberEpoch, owned: [])
        #expect(a3.assignment?.count == 2 && b2.assignment?.count == 2)
        // b goes silent; a keeps beating.
        clock.advance(30_000)
        _ = try await beat("a", a3.memberEpoch)
        clock.advance(15_001)
        await broker.groups.tick()
        #expect(await broker.groups.consumerGroup("g")?.members.keys.sorted() == ["a"])
        let a4 = try await beat("a", a3.memberEpoch, owned: a3.assignment)
        #expect(a4.assignment?.count == 4)
        await broker.close()
    }
}
