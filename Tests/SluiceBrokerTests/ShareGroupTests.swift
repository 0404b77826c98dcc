// Share groups (KIP-932): the share-partition rules and membership as pure values, then
// in-process share consumers on a broker with a clock the test moves.
import Foundation
import SluiceBroker
import SluiceLog
import Synchronization
import Testing

/// A clock that moves only when the test says so.
final class ManualClock: Sendable {
    private let now = Mutex<Int64>(1_000_000)
    var value: Int64 { now.withLock { $0 } }
    func advance(_ ms: Int64) { now.withLock { $0 += ms } }
    var function: @Sendable () -> Int64 { { [self] in value } }
}

/// A value shared by the tasks of a test.
final class Shared<T: Sendable>: Sendable {
    let value: Mutex<T>
    init(_ v: T) { value = Mutex(v) }
    func withLock<R>(_ body: (inout T) -> R) -> R { value.withLock { body(&$0) } }
}

private let limits = ShareLimits(lockMs: 1_000, maxDeliveries: 3, maxInFlight: 100)

@Suite struct SharePartitionRules {
    @Test func recordsAreHandedOutOnceAndSettledByTheirOwnerOnly() throws {
        var p = SharePartitionState(startOffset: 0)
        var letters: [DeadLetter] = []
        let a = p.acquire(member: 1, maxRecords: 4, logEnd: 10, now: 0, limits: limits, deadLetters: &letters)
        #expect(a == [AcquiredRange(first: 0, last: 3, deliveryCount: 1)])
        let b = p.acquire(member: 2, maxRecords: 100, logEnd: 10, now: 0, limits: limits, deadLetters: &letters)
        #expect(b == [AcquiredRange(first: 4, last: 9, deliveryCount: 1)])
        #expect(p.acquire(member: 3, maxRecords: 100, logEnd: 10, now: 0, limits: limits, deadLetters: &letters).isEmpty)
        // Member 2 cannot settle member 1's records; nothing changes when a batch fails.
        #expect(throws: ShareStateError.self) {
            try p.acknowledge([AcknowledgementBatch(first: 3, last: 4, type: .accept)], member: 2, limits: limits, deadLetters: &letters)
        }
        #expect(p.state(at: 4)?.state == .acquired)
        try p.acknowledge([AcknowledgementBatch(first: 0, last: 1, type: .accept), AcknowledgementBatch(first: 2, last: 2, type: .release)], member: 1, limits: limits, deadLetters: &letters)
        #expect(p.startOffset == 2)
        // Acknowledged records cannot be acknowledged again.
        #expect(throws: ShareStateError.self) {
            try p.acknowledge([AcknowledgementBatch(first: 0, last: 0, type: .accept)], member: 1, limits: limits, deadLetters: &letters)
        }
        // The released record goes out again, to anyone, with its second delivery.
        #expect(p.acquire(member: 3, maxRecords: 100, logEnd: 10, now: 0, limits: limits, deadLetters: &letters) == [AcquiredRange(first: 2, last: 2, deliveryCount: 2)])
        #expect(letters.isEmpty)
    }

    @Test func batchesMustBeOrderedAndWellFormed() {
        var p = SharePartitionState(startOffset: 0)
        var letters: [DeadLetter] = []
        _ = p.acquire(member: 1, maxRecords: 10, logEnd: 10, now: 0, limits: limits, deadLetters: &letters)
        for bad in [[AcknowledgementBatch(first: 5, last: 4, type: .accept)],
                    [AcknowledgementBatch(first: 4, last: 6, type: .accept), AcknowledgementBatch(first: 6, last: 7, type: .accept)],
                    [AcknowledgementBatch(first: 8, last: 12, type: .accept)]] {
            do {
                try p.validate(bad, member: 1)
                Issue.record("\(bad) was accepted")
            } catch {
                #expect(!error.message.isEmpty)
            }
        }
        #expect(p.acquired == 10)
    }

    @Test func expiredLocksReleaseAndTheDeliveryLimitArchivesIntoDeadLetters() throws {
        var p = SharePartitionState(startOffset: 100)
        var letters: [DeadLetter] = []
        // Two deliveries of both records, then the last one of each alone.
        for (round, expected) in [[AcquiredRange(first: 100, last: 101, deliveryCount: 1)], [AcquiredRange(first: 100, last: 101, deliveryCount: 2)],
                                  [AcquiredRange(first: 100, last: 100, deliveryCount: 3)], [AcquiredRange(first: 101, last: 101, deliveryCount: 3)]].enumerated() {
            let now = Int64(round + 1) * 10_000
            let got = p.acquire(member: Int32(round), maxRecords: 2, logEnd: 102, now: now, limits: limits, deadLetters: &letters)
            #expect(got == expected)
            // Not yet expired: nothing happens.
            #expect(p.expireLocks(now: now + 999, limits: limits, deadLetters: &letters) == 0)
            #expect(p.expireLocks(now: now + 1_000, limits: limits, deadLetters: &letters) == got[0].count)
        }
        // The expiries of the last deliveries archived both, with dead letters.
        #expect(letters == [DeadLetter(offset: 100, deliveryCount: 3, reason: .deliveryLimit), DeadLetter(offset: 101, deliveryCount: 3, reason: .deliveryLimit)])
        #expect(p.startOffset == 102)
        #expect(p.inFlight == 0)
    }

    @Test func aRecordOnItsLastDeliveryIsHandedOutAlone() throws {
        var p = SharePartitionState(startOffset: 0)
        var letters: [DeadLetter] = []
        _ = p.acquire(member: 1, maxRecords: 5, logEnd: 5, now: 0, limits: limits, deadLetters: &letters)
        try p.acknowledge([AcknowledgementBatch(first: 0, last: 4, type: .release)], member: 1, limits: limits, deadLetters: &letters)
        _ = p.acquire(member: 1, maxRecords: 5, logEnd: 5, now: 0, limits: limits, deadLetters: &letters)
        try p.acknowledge([AcknowledgementBatch(first: 0, last: 4, type: .release)], member: 1, limits: limits, deadLetters: &letters)
        // Third (last) delivery: one at a time.
        #expect(p.acquire(member: 1, maxRecords: 5, logEnd: 5, now: 0, limits: limits, deadLetters: &letters) == [AcquiredRange(first: 0, last: 0, deliveryCount: 3)])
        #expect(p.acquire(member: 2, maxRecords: 5, logEnd: 5, now: 0, limits: limits, deadLetters: &letters) == [AcquiredRange(first: 1, last: 1, deliveryCount: 3)])
        try p.acknowledge([AcknowledgementBatch(first: 0, last: 0, type: .reject)], member: 1, limits: limits, deadLetters: &letters)
        #expect(letters == [DeadLetter(offset: 0, deliveryCount: 3, reason: .rejected)])
    }

    @Test func theInFlightCapStopsNewAcquisitions() {
        var p = SharePartitionState(startOffset: 0)
        var letters: [DeadLetter] = []
        let small = ShareLimits(lockMs: 1_000, maxDeliveries: 5, maxInFlight: 3)
        #expect(p.acquire(member: 1, maxRecords: 10, logEnd: 10, now: 0, limits: small, deadLetters: &letters).first?.count == 3)
        #expect(!p.canAcquire(logEnd: 10, limits: small))
        #expect(p.acquire(member: 2, maxRecords: 10, logEnd: 10, now: 0, limits: small, deadLetters: &letters).isEmpty)
    }

    @Test func theSnapshotKeepsSettledRecordsAndCountsAndFreesAcquiredOnes() throws {
        var p = SharePartitionState(startOffset: 0)
        var letters: [DeadLetter] = []
        _ = p.acquire(member: 1, maxRecords: 6, logEnd: 6, now: 0, limits: limits, deadLetters: &letters)
        try p.acknowledge([AcknowledgementBatch(first: 1, last: 1, type: .accept), AcknowledgementBatch(first: 3, last: 3, type: .reject)], member: 1, limits: limits, deadLetters: &letters)
        var r = SharePartitionState(restoring: p.snapshot)
        #expect(r.startOffset == 0)
        #expect(r.state(at: 1)?.state == .acknowledged)
        #expect(r.state(at: 3)?.state == .archived)
        #expect(r.acquired == 0)
        // Everything acquired before comes back, on its second delivery; settled records never do.
        let again = r.acquire(member: 7, maxRecords: 10, logEnd: 8, now: 0, limits: limits, deadLetters: &letters)
        #expect(again == [AcquiredRange(first: 0, last: 0, deliveryCount: 2), AcquiredRange(first: 2, last: 2, deliveryCount: 2),
                          AcquiredRange(first: 4, last: 5, deliveryCount: 2), AcquiredRange(first: 6, last: 7, deliveryCount: 1)])
    }
}

@Suite struct ShareMembershipRules {
    private func counts(_ topic: String) -> Int32? { ["one": 1, "four": 4][topic] }

    @Test func moreMembersThanPartitionsShareThemAndFewerSplitThem() throws {
        var g = ShareGroupMembership(groupId: "g")
        for m in ["a", "b", "c"] {
            _ = try g.heartbeat(memberId: m, epoch: 0, topics: ["one", "four"], clientId: "", clientHost: "", rackId: nil, now: 0, partitions: counts)
        }
        for m in ["a", "b", "c"] {
            #expect(g.members[m]!.assignment.contains(TopicPartition(try TopicName("one"), 0)))
        }
        let four = g.members.values.flatMap { $0.assignment.filter { $0.topic.rawValue == "four" } }
        #expect(Set(four.map(\.partition)) == [0, 1, 2, 3])
        #expect(four.count == 4)
    }

    @Test func epochsAreCheckedAndSilentMembersExpire() throws {
        var g = ShareGroupMembership(groupId: "g")
        let a0 = try g.heartbeat(memberId: "a", epoch: 0, topics: ["four"], clientId: "", clientHost: "", rackId: nil, now: 0, partitions: counts)
        #expect(a0.assignment?.count == 4)
        _ = try g.heartbeat(memberId: "b", epoch: 0, topics: ["four"], clientId: "", clientHost: "", rackId: nil, now: 0, partitions: counts)
        // a learns of the new epoch and its smaller assignment at its next heartbeat.
        let a1 = try g.heartbeat(memberId: "a", epoch: a0.memberEpoch, topics: nil, clientId: "", clientHost: "", rackId: nil, now: 10, partitions: counts)
        #expect(a1.memberEpoch > a0.memberEpoch)
        #expect(a1.assignment?.count == 2)
        // Its previous epoch is still accepted (a lost answer), an older one is fenced.
        _ = try g.heartbeat(memberId: "a", epoch: a0.memberEpoch, topics: nil, clientId: "", clientHost: "", rackId: nil, now: 10, partitions: counts)
        #expect(throws: BrokerError.self) {
            try g.heartbeat(memberId: "a", epoch: a1.memberEpoch + 5, topics: nil, clientId: "", clientHost: "", rackId: nil, now: 10, partitions: counts)
        }
        #expect(throws: BrokerError.self) {
            try g.heartbeat(memberId: "zed", epoch: 5, topics: nil, clientId: "", clientHost: "", rackId: nil, now: 10, partitions: counts)
        }
        let gone = g.expire(now: 10 + 45_001, sessionTimeoutMs: 45_000, partitions: counts)
        #expect(Set(gone.map(\.memberId)) == ["a", "b"])
        #expect(g.members.isEmpty)
    }
}

@Suite(.serialized) struct ShareConsumerTests {
    private func open(_ dir: String, clock: ManualClock, settings: ShareGroupSettings = ShareGroupSettings()) async throws -> EmbeddedBroker {
        var config = BrokerConfig()
        config.clock = clock.function
        config.shares = settings
        config.tickIntervalMs = 10
        return try await EmbeddedBroker.open(path: dir, config: config)
    }

    private func produce(_ broker: EmbeddedBroker, _ topic: TopicName, _ values: [String]) async throws {
        let producer = try await Producer(broker: broker)
        _ = try await producer.send(batch: values.map { ProducerRecord(topic: topic, partition: 0, value: bytes($0)) })
        try await producer.flush()
    }

    private func earliest(_ lockMs: Int64 = 30_000, maxDeliveries: Int = 5, deadLetter: String? = nil) -> ShareGroupSettings {
        var s = ShareGroupSettings()
        s.startAtEarliest = true
        s.lockMs = lockMs
        s.maxDeliveries = maxDeliveries
        s.deadLetterTopic = deadLetter
        return s
    }

    @Test func fourMembersOnOnePartitionProcessEveryRecordOnceAndNeverHoldOneTogether() async throws {
        let dir = NSTemporaryDirectory() + "sluice-share-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let clock = ManualClock()
        let broker = try await open(dir, clock: clock, settings: earliest())
        let topic = try broker.createTopic("jobs", partitions: 1)
        let total = 20_000
        try await produce(broker, topic, (0..<total).map { "job-\($0)" })

        struct Ledger: Sendable { var held: [Int64: Int] = [:]; var done: [Int64: Int] = [:]; var overlaps = 0 }
        struct Samples: Sendable { var samples = 0; var violations = 0 }
        let ledger = Shared(Ledger())
        let sampled = Shared(Samples())
        let sampler = Task {
            while !Task.isCancelled {
                if let d = await broker.shares.describe("workers"), let p = d.partitions.first {
                    let byMember = p.acquiredBy.values.reduce(0, +)
                    sampled.withLock { s in
                        s.samples += 1
                        if byMember != p.acquired || p.acquired + p.available + p.acknowledged + p.archived != p.inFlight { s.violations += 1 }
                    }
                }
                try? await Task.sleep(for: .milliseconds(2))
            }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<4 {
                group.addTask {
                    var config = ShareConsumerConfig(groupId: "workers")
                    config.memberId = "worker-\(w)"
                    config.maxRecords = 300
                    config.acknowledgement = .explicit
                    let consumer = ShareConsumer(broker: broker, config: config, topics: [topic])
                    var idle = 0
                    while idle < 3 {
                        let batch = try await consumer.poll(maxWait: .milliseconds(50))
                        if batch.isEmpty { idle += 1; continue }
                        idle = 0
                        var acks = batch.acknowledgements(.release)
                        try batch.forEach { _, r in
                            ledger.withLock { l in
                                if l.held[r.view.offset] != nil { l.overlaps += 1 }
                                l.held[r.view.offset] = w
                            }
                            acks.set(r, .accept)
                        }
                        try batch.forEach { _, r in
                            ledger.withLock { l in
                                l.held[r.view.offset] = nil
                                l.done[r.view.offset, default: 0] += 1
                            }
                        }
                        let refused = try await consumer.acknowledge(acks)
                        #expect(refused.isEmpty)
                    }
                    await consumer.close()
                }
            }
            try await group.waitForAll()
        }
        sampler.cancel()
        let l = ledger.withLock { $0 }
        #expect(l.overlaps == 0)
        #expect(l.done.count == total)
        #expect(l.done.values.allSatisfy { $0 == 1 })
        let s = sampled.withLock { $0 }
        #expect(s.samples > 0)
        #expect(s.violations == 0)
        let d = try #require(await broker.shares.describe("workers"))
        #expect(d.partitions.first?.startOffset == Int64(total))
        await broker.close()
    }

    @Test func aLockThatRunsOutHandsTheRecordsToAnotherMemberWithTheNextDeliveryCount() async throws {
        let dir = NSTemporaryDirectory() + "sluice-share-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let clock = ManualClock()
        let broker = try await open(dir, clock: clock, settings: earliest(5_000))
        let topic = try broker.createTopic("jobs", partitions: 1)
        try await produce(broker, topic, (0..<10).map { "job-\($0)" })
        var ca = ShareConsumerConfig(groupId: "g"); ca.memberId = "a"
        var cb = ShareConsumerConfig(groupId: "g"); cb.memberId = "b"
        let a = ShareConsumer(broker: broker, config: ca, topics: [topic])
        let b = ShareConsumer(broker: broker, config: cb, topics: [topic])
        let held = try await a.poll(maxWait: .milliseconds(100))
        #expect(held.count == 10)
        // a hangs; b sees nothing until the lock runs out.
        #expect(try await b.poll(maxWait: .milliseconds(30)).isEmpty)
        clock.advance(4_999)
        await broker.shares.tick()
        #expect(try await b.poll(maxWait: .milliseconds(30)).isEmpty)
        clock.advance(1)
        await broker.shares.tick()
        let again = try await b.poll(maxWait: .milliseconds(100))
        var seen: [Int16] = []
        try again.forEach { _, r in seen.append(r.deliveryCount) }
        #expect(seen == Array(repeating: 2, count: 10))
        // a's late acknowledgement is refused: the records are b's now.
        let refused = try await a.acknowledge(held.acknowledgements(.accept))
        #expect(refused.count == 1)
        await b.close()
        await broker.close()
    }

    @Test func rejectedAndOverDeliveredRecordsReachTheDeadLetterTopicWithTheirStory() async throws {
        let dir = NSTemporaryDirectory() + "sluice-share-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let clock = ManualClock()
        let broker = try await open(dir, clock: clock, settings: earliest(maxDeliveries: 2, deadLetter: "jobs.dlq"))
        let topic = try broker.createTopic("jobs", partitions: 1)
        try await produce(broker, topic, ["ok-0", "poison", "bad", "ok-3"])
        var config = ShareConsumerConfig(groupId: "g")
        config.acknowledgement = .explicit
        let c = ShareConsumer(broker: broker, config: config, topics: [topic])
        for _ in 0..<4 {
            let batch = try await c.poll(maxWait: .milliseconds(50))
            var acks = batch.acknowledgements(.accept)
            try batch.forEach { _, r in
                switch text(r.view.value) {
                case "poison": acks.set(r, .release)
                case "bad": acks.set(r, .reject, error: "amount is not a number")
                default: break
                }
            }
            try await c.acknowledge(acks)
        }
        let dlq = TopicPartition(try TopicName("jobs.dlq"), 0)
        #expect(try values(broker, dlq, isolation: .readUncommitted).sorted() == ["bad", "poison"])
        var headers: [String: [String: String]] = [:]
        let data = try broker.partition(dlq).read(from: 0, maxBytes: 1 << 20, isolation: .readUncommitted)
        try data.forEachRecord(from: 0) { r in
            var h: [String: String] = [:]
            r.forEachHeader { k, v in h[String(decoding: k, as: UTF8.self)] = text(v) }
            headers[text(r.value)] = h
        }
        #expect(headers["bad"]?["sluice.dlq.reason"] == "rejected")
        #expect(headers["bad"]?["sluice.dlq.error"] == "amount is not a number")
        #expect(headers["bad"]?["sluice.dlq.offset"] == "2")
        #expect(headers["poison"]?["sluice.dlq.reason"] == "delivery-limit")
        #expect(headers["poison"]?["sluice.dlq.delivery.count"] == "2")
        #expect(headers["poison"]?["sluice.dlq.topic"] == "jobs")
        #expect(headers["poison"]?["sluice.dlq.partition"] == "0")
        let d = try #require(await broker.shares.describe("g"))
        #expect(d.partitions.first?.startOffset == 4)
        await c.close()
        await broker.close()
    }

    @Test func aRestartKeepsAcknowledgedRecordsSettledAndFreesAcquiredOnesWithTheirCounts() async throws {
        let dir = NSTemporaryDirectory() + "sluice-share-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let clock = ManualClock()
        var broker = try await open(dir, clock: clock, settings: earliest())
        let topic = try broker.createTopic("jobs", partitions: 1)
        try await produce(broker, topic, (0..<100).map { "job-\($0)" })
        var config = ShareConsumerConfig(groupId: "g")
        config.maxRecords = 50
        config.acknowledgement = .explicit
        let first = ShareConsumer(broker: broker, config: config, topics: [topic])
        let batch = try await first.poll(maxWait: .milliseconds(100))
        #expect(batch.count == 50)
        var acks = batch.acknowledgements(.accept)
        // Offsets 0..<20 accepted; 20..<50 stay acquired when the broker goes down.
        try batch.forEach { _, r in if r.view.offset >= 20 { acks.hold(r) } }
        try await first.acknowledge(acks)
        await broker.close()

        broker = try await open(dir, clock: clock)
        config.memberId = "after-restart"
        config.maxRecords = 500
        let second = ShareConsumer(broker: broker, config: config, topics: [topic])
        var counts: [Int64: Int16] = [:]
        while counts.count < 80 {
            let b = try await second.poll(maxWait: .milliseconds(100))
            if b.isEmpty { break }
            try b.forEach { _, r in counts[r.view.offset] = r.deliveryCount }
            try await second.acknowledge(b.acknowledgements(.accept))
        }
        #expect(Set(counts.keys) == Set(20..<100))
        #expect((20..<50).allSatisfy { counts[Int64($0)] == 2 })
        #expect((50..<100).allSatisfy { counts[Int64($0)] == 1 })
        await second.close()
        await broker.close()
    }
}
