// Consumer groups with real in-process members: rebalances on join, leave, session expiry
// and partition changes; fencing of zombies; static membership; cooperative rebalancing.
import Foundation
import SluiceBroker
import SluiceLog
import Synchronization
import Testing

/// A consumer polling in the background, as an application would.
final class Member: Sendable {
    let consumer: Consumer
    let name: String
    private let task: Mutex<Task<Void, Never>?> = Mutex(nil)
    let events: Events

    final class Events: Sendable {
        let log = Mutex<[String]>([])
        func add(_ s: String) { log.withLock { $0.append(s) } }
        var all: [String] { log.withLock { $0 } }
    }

    init(_ broker: EmbeddedBroker, name: String, group: String, topic: TopicName, assignors: [any PartitionAssignor] = [RangeAssignor()], instance: String? = nil, sessionMs: Int32 = 10_000) throws {
        var config = ConsumerConfig(groupId: group)
        config.clientId = name
        config.sessionTimeoutMs = sessionMs
        config.heartbeatIntervalMs = 40
        config.assignors = assignors
        config.groupInstanceId = instance
        config.autoOffsetReset = .earliest
        let events = Events()
        self.events = events
        self.name = name
        consumer = Consumer(broker: broker, config: config, listener: RebalanceListener(
            assigned: { events.add("assigned \($0.map(\.description).joined(separator: ","))") },
            revoked: { events.add("revoked \($0.map(\.description).joined(separator: ","))") },
            lost: { events.add("lost \($0.map(\.description).joined(separator: ","))") }))
        try consumer.subscribe([topic])
        let consumer = self.consumer
        task.withLock { $0 = Task { while !Task.isCancelled { _ = try? await consumer.poll(maxWait: .milliseconds(20)) } } }
    }

    /// Stops polling and heartbeating without leaving: the member hangs.
    func hang() {
        task.withLock { $0?.cancel() }
        consumer.stopHeartbeats()
    }

    func close() async {
        task.withLock { $0?.cancel() }
        await consumer.close()
    }
}

/// Samples the coordinator's view and records any generation in which two members own the
/// same partition.
func ownershipConflicts(_ broker: EmbeddedBroker, group: String) async -> [String] {
    guard let d = await broker.groups.describe(groupId: group), d.state == .stable || d.state == .completingRebalance else { return [] }
    var owner: [TopicPartition: String] = [:]
    var conflicts: [String] = []
    for m in d.members {
        for tp in (try? ConsumerAssignment.decode(m.assignment).partitions) ?? [] {
            if let other = owner[tp] { conflicts.append("generation \(d.generation): \(tp) owned by \(other) and \(m.memberId)") }
            owner[tp] = m.memberId
        }
    }
    return conflicts
}

func assignedPartitions(_ broker: EmbeddedBroker, group: String) async -> (generation: Int32, byMember: [String: Set<TopicPartition>])? {
    guard let d = await broker.groups.describe(groupId: group), d.state == .stable else { return nil }
    var out: [String: Set<TopicPartition>] = [:]
    for m in d.members { out[m.memberId] = Set((try? ConsumerAssignment.decode(m.assignment).partitions) ?? []) }
    return (d.generation, out)
}

@Suite(.serialized) struct GroupTests {
    @Test func aMemberThatStopsHeartbeatingLosesItsPartitionsAndItsCommitsAreRejected() async throws {
        // The coordinator's timers run on a manual clock: a session expires when the test
        // moves the clock past it and ticks, not after real time.
        let clock = ManualClock()
        let t = try await TestBroker.make(clock: clock)
        let topic = try t.broker.createTopic("work", partitions: 6)
        let a = try Member(t.broker, name: "a", group: "g", topic: topic, sessionMs: 10_000)
        let b = try Member(t.broker, name: "b", group: "g", topic: topic, sessionMs: 10_000)
        let c = try Member(t.broker, name: "c", group: "g", topic: topic, sessionMs: 10_000)
        let all = Set((0..<6).map { TopicPartition(topic, Int32($0)) })
        let balanced = await eventually {
            guard let s = await assignedPartitions(t.broker, group: "g"), s.byMember.count == 3 else { return false }
            return s.byMember.values.allSatisfy { $0.count == 2 } && s.byMember.values.reduce(Set()) { $0.union($1) } == all
        }
        #expect(balanced, "three members should split six partitions two each")
        let before = try #require(await assignedPartitions(t.broker, group: "g"))
        let cMember = c.consumer.memberId
        let cGeneration = c.consumer.generation
        let cPartitions = c.consumer.assignment

        // c hangs. The clock moves 6 s (a and b heartbeat there, every 40 ms of real time):
        // c is 6 s into its 10 s session and stays. Another 6 s: c's session is over and it
        // is removed at the next tick, while a and b, heard from 0.2 s ago, stay.
        c.hang()
        try await Task.sleep(for: .milliseconds(100))  // a heartbeat of c's already on its way lands first
        clock.advance(6_000)
        try await Task.sleep(for: .milliseconds(200))
        await t.broker.groups.tick()
        #expect(await t.broker.groups.describe(groupId: "g")?.members.count == 3, "c was removed before its session ran out")
        let sampler = Task {
            var conflicts: [String] = []
            while !Task.isCancelled {
                conflicts += await ownershipConflicts(t.broker, group: "g")
                try? await Task.sleep(for: .milliseconds(2))
            }
            return conflicts
        }
        clock.advance(6_000)
        try await Task.sleep(for: .milliseconds(200))
        await t.broker.groups.tick()
        let moved = await eventually {
            guard let s = await assignedPartitions(t.broker, group: "g"), s.generation > before.generation, s.byMember.count == 2 else { return false }
            return s.byMember.values.reduce(Set()) { $0.union($1) } == all && s.byMember.values.allSatisfy { $0.count == 3 }
        }
        sampler.cancel()
        #expect(moved, "a and b should own all six partitions after c's session expires")
        #expect(await sampler.value.isEmpty, "two members of one generation owned a partition")
        let after = await assignedPartitions(t.broker, group: "g")!
        #expect(after.byMember[cMember] == nil)
        #expect(cPartitions.isSubset(of: after.byMember.values.reduce(Set()) { $0.union($1) }))

        // The zombie's commit is rejected: it is no longer a member.
        await #expect {
            try await t.broker.groups.commit(groupId: "g", generation: cGeneration, memberId: cMember, offsets: [TopicPartition(topic, 0): CommittedOffset(offset: 1)])
        } throws: { ($0 as? BrokerError)?.code == .unknownMemberId }
        await #expect { try await c.consumer.commitSync([TopicPartition(topic, 0): 1]) } throws: { error in
            let code = (error as? BrokerError)?.code
            return code == .unknownMemberId || code == .illegalGeneration
        }
        // A live member with the previous generation is fenced too.
        let aMember = a.consumer.memberId
        await #expect {
            try await t.broker.groups.commit(groupId: "g", generation: before.generation, memberId: aMember, offsets: [TopicPartition(topic, 0): CommittedOffset(offset: 1)])
        } throws: { ($0 as? BrokerError)?.code == .illegalGeneration }
        await #expect { try await t.broker.groups.checkOwnership(groupId: "g", memberId: aMember, generation: before.generation) } throws: { ($0 as? BrokerError)?.code == .illegalGeneration }

        // When the zombie polls again it learns its partitions were lost (no revoke, no commit).
        _ = try? await c.consumer.poll(maxWait: .milliseconds(50))
        #expect(c.events.all.contains { $0.hasPrefix("lost ") }, "\(c.events.all)")

        await a.close()
        await b.close()
        await c.close()
        #expect(await t.broker.groups.describe(groupId: "g")?.state == .empty)
        await t.close()
    }

    @Test func aMemberThatDoesNotRejoinWithinTheRebalanceTimeoutIsRemoved() async throws {
        let clock = ManualClock()
        let t = try await TestBroker.make(clock: clock)
        let groups = t.broker.groups
        let proto = [GroupProtocol(name: "range", metadata: ConsumerSubscription(topics: ["x"]).encode())]
        @Sendable func join(_ id: String) async throws -> JoinGroupResponse {
            try await groups.join(JoinGroupRequest(groupId: "slow", memberId: id, sessionTimeoutMs: 60_000, rebalanceTimeoutMs: 200, protocols: proto))
        }
        let first = try await join("")
        _ = try await groups.sync(groupId: "slow", generation: first.generation, memberId: first.memberId, assignments: [first.memberId: []])
        // A second member joins; the first never rejoins. The join waits out the 200 ms
        // rebalance timeout on the group's clock: not at 199 ms, at 201 ms.
        let done = Shared(false)
        let pending = Task {
            let r = try await join("")
            done.withLock { $0 = true }
            return r
        }
        try await Task.sleep(for: .milliseconds(50))
        clock.advance(199)
        await groups.tick()
        try await Task.sleep(for: .milliseconds(50))
        #expect(!done.withLock { $0 }, "the join completed before the rebalance timeout")
        clock.advance(2)
        await groups.tick()
        let second = try await pending.value
        #expect(second.generation == first.generation + 1)
        #expect(second.members.map(\.memberId) == [second.memberId], "the member that did not rejoin is gone")
        await #expect { try await groups.heartbeat(groupId: "slow", generation: first.generation, memberId: first.memberId) } throws: {
            ($0 as? BrokerError)?.code == .unknownMemberId
        }
        await t.close()
    }

    @Test func offsetsOfAnAbandonedGroupExpire() async throws {
        var config = GroupConfig()
        config.offsetsRetentionMs = 100
        let clock = ManualClock()
        let t = try await TestBroker.make(groupConfig: config, clock: clock)
        let topic = try t.broker.createTopic("old", partitions: 1)
        try await t.broker.groups.commit(groupId: "gone", offsets: [TopicPartition(topic, 0): CommittedOffset(offset: 0)])
        #expect(await t.broker.groups.listGroups().map(\.groupId) == ["gone"])
        clock.advance(99)
        await t.broker.groups.tick()
        #expect(await t.broker.groups.committedOffsets(groupId: "gone").count == 1, "expired before the retention ran out")
        clock.advance(2)
        await t.broker.groups.tick()
        #expect(await t.broker.groups.committedOffsets(groupId: "gone").isEmpty)
        #expect(await t.broker.groups.listGroups().isEmpty)
        await t.broker.close()
        let again = try await TestBroker.make(path: t.path)
        #expect(await again.broker.groups.committedOffsets(groupId: "gone").isEmpty, "the expiry is durable")
        await again.close()
    }

    @Test func aLeavingMemberHandsItsPartitionsOverAndTheGroupEmptiesAtTheEnd() async throws {
        let t = try await TestBroker.make()
        let topic = try t.broker.createTopic("jobs", partitions: 4)
        let a = try Member(t.broker, name: "a", group: "jobs", topic: topic)
        let b = try Member(t.broker, name: "b", group: "jobs", topic: topic)
        #expect(await eventually { await assignedPartitions(t.broker, group: "jobs")?.byMember.count == 2 })
        await b.close()
        #expect(await eventually { a.consumer.assignment.count == 4 })
        #expect(b.events.all.last?.hasPrefix("revoked") == true, "a leaving member revokes (and may commit) first")
        await a.close()
        await t.close()
    }

    @Test func cooperativeStickyRevokesOnlyThePartitionsThatMove() async throws {
        let t = try await TestBroker.make()
        let topic = try t.broker.createTopic("coop", partitions: 6)
        let coop: [any PartitionAssignor] = [CooperativeStickyAssignor()]
        let a = try Member(t.broker, name: "a", group: "coop", topic: topic, assignors: coop)
        let b = try Member(t.broker, name: "b", group: "coop", topic: topic, assignors: coop)
        #expect(await eventually { a.consumer.assignment.count == 3 && b.consumer.assignment.count == 3 })
        let aBefore = a.consumer.assignment, bBefore = b.consumer.assignment
        let aSkip = a.events.all.count, bSkip = b.events.all.count
        let c = try Member(t.broker, name: "c", group: "coop", topic: topic, assignors: coop)
        #expect(await eventually { a.consumer.assignment.count == 2 && b.consumer.assignment.count == 2 && c.consumer.assignment.count == 2 })
        // Each old member gave up exactly one partition and kept the others throughout.
        #expect(a.consumer.assignment.isSubset(of: aBefore) && b.consumer.assignment.isSubset(of: bBefore))
        let revokes = (a.events.all.dropFirst(aSkip) + b.events.all.dropFirst(bSkip)).filter { $0.hasPrefix("revoked") }
        #expect(revokes.count == 2, "\(revokes)")
        #expect(revokes.allSatisfy { !$0.contains(",") }, "only one partition each should be revoked: \(revokes)")
        await a.close(); await b.close(); await c.close()
        await t.close()
    }

    @Test func aStaticMemberRejoinsWithoutARebalanceAndFencesItsOldSelf() async throws {
        let t = try await TestBroker.make()
        let topic = try t.broker.createTopic("static", partitions: 4)
        let a = try Member(t.broker, name: "a", group: "s", topic: topic, instance: "host-a", sessionMs: 5000)
        let b = try Member(t.broker, name: "b", group: "s", topic: topic, instance: "host-b", sessionMs: 5000)
        #expect(await eventually { a.consumer.assignment.count == 2 && b.consumer.assignment.count == 2 })
        let generation = await t.broker.groups.describe(groupId: "s")!.generation
        let oldAssignment = b.consumer.assignment
        let oldMember = b.consumer.memberId
        b.hang()
        // "host-b" restarts: same instance id, new process.
        let b2 = try Member(t.broker, name: "b2", group: "s", topic: topic, instance: "host-b", sessionMs: 5000)
        #expect(await eventually { b2.consumer.assignment == oldAssignment })
        #expect(await t.broker.groups.describe(groupId: "s")!.generation == generation, "no rebalance for a static rejoin")
        #expect(a.consumer.assignment.count == 2)
        await #expect {
            try await t.broker.groups.commit(groupId: "s", generation: generation, memberId: oldMember, groupInstanceId: "host-b", offsets: [TopicPartition(topic, 0): CommittedOffset(offset: 0)])
        } throws: { ($0 as? BrokerError)?.code == .fencedInstanceId }
        // The old process cannot take the instance back by rejoining with its old member id.
        let proto = [GroupProtocol(name: "range", metadata: ConsumerSubscription(topics: [topic.rawValue]).encode())]
        await #expect {
            try await t.broker.groups.join(JoinGroupRequest(groupId: "s", memberId: oldMember, groupInstanceId: "host-b", protocols: proto))
        } throws: { ($0 as? BrokerError)?.code == .fencedInstanceId }
        await a.close(); await b2.close(); await b.close()
        await t.close()
    }

    @Test func addingPartitionsRebalancesTheGroup() async throws {
        let t = try await TestBroker.make()
        let topic = try t.broker.createTopic("grow", partitions: 2)
        let a = try Member(t.broker, name: "a", group: "grow", topic: topic)
        let b = try Member(t.broker, name: "b", group: "grow", topic: topic)
        #expect(await eventually { a.consumer.assignment.count + b.consumer.assignment.count == 2 })
        try await t.broker.addPartitions(topic, total: 6)
        #expect(await eventually { a.consumer.assignment.count == 3 && b.consumer.assignment.count == 3 })
        await a.close(); await b.close()
        await t.close()
    }

    @Test func membersOfOneGroupReadEachRecordOnce() async throws {
        let t = try await TestBroker.make()
        let topic = try t.broker.createTopic("split", partitions: 4)
        let producer = try await Producer(broker: t.broker)
        _ = try await producer.send(batch: (0..<400).map { ProducerRecord(topic: topic, key: bytes("k\($0)"), value: bytes("v\($0)")) })
        var config = ConsumerConfig(groupId: "split")
        config.autoOffsetReset = .earliest
        config.heartbeatIntervalMs = 40
        let c1 = Consumer(broker: t.broker, config: config)
        let c2 = Consumer(broker: t.broker, config: config)
        try c1.subscribe([topic]); try c2.subscribe([topic])
        let seen = Tally()
        let stop = Tally()
        let all = Set((0..<4).map { TopicPartition(topic, Int32($0)) })
        try await withThrowingTaskGroup(of: Void.self) { group in
            for c in [c1, c2] {
                group.addTask {
                    while stop.distinct == 0 {
                        let r = try await c.poll(maxWait: .milliseconds(20))
                        try r.forEach { _, rec in seen.add(text(rec.value)) }
                        do { try await c.commitSync() } catch let e as BrokerError where e.code == .rebalanceInProgress || e.code == .illegalGeneration {}
                    }
                }
            }
            // Both members keep polling until everything is read and the group has settled.
            let settled = await eventually {
                seen.distinct == 400 && c1.assignment.isDisjoint(with: c2.assignment) && c1.assignment.union(c2.assignment) == all
                    && !c1.assignment.isEmpty && !c2.assignment.isEmpty
            }
            #expect(settled, "c1 \(c1.assignment.sorted()) c2 \(c2.assignment.sorted()) seen \(seen.distinct)")
            stop.add("stop")
            try await group.waitForAll()
        }
        #expect(seen.distinct == 400)
        #expect(seen.maxCount == 1 || seen.maxCount == 2, "a record is read at most twice (once more after a rebalance, at least once)")
        await c1.close(); await c2.close()
        await t.close()
    }
}

final class Tally: Sendable {
    private let counts = Mutex<[String: Int]>([:])
    func add(_ s: String) { counts.withLock { $0[s, default: 0] += 1 } }
    var distinct: Int { counts.withLock { $0.count } }
    var maxCount: Int { counts.withLock { $0.values.max() ?? 0 } }
}
