// The embedded broker through its public API: producers, idempotence, transactions, long
// polls, committed offsets across restarts.
import Foundation
import SluiceBroker
import SluiceLog
import Testing

@Suite struct ProducerTests {
    @Test func keyedRecordsLandWhereKafkasPartitionerPutsThemAndKeepOrder() async throws {
        let t = try await TestBroker.make()
        let topic = try t.broker.createTopic("orders", partitions: 6)
        let producer = try await Producer(broker: t.broker)
        var sent: [RecordMetadata] = []
        for i in 0..<30 {
            sent.append(try await producer.send(ProducerRecord(topic: topic, key: bytes("user-\(i % 3)"), value: bytes("v\(i)"))))
        }
        for (i, m) in sent.enumerated() {
            #expect(m.topicPartition.partition == Murmur2.partition(forKey: bytes("user-\(i % 3)"), partitions: 6))
        }
        // Per key, offsets increase with send order.
        for k in 0..<3 {
            let offsets = sent.enumerated().filter { $0.offset % 3 == k }.map(\.element.offset)
            #expect(offsets == offsets.sorted())
        }
        let explicit = try await producer.send(ProducerRecord(topic: topic, partition: 5, value: bytes("x")))
        #expect(explicit.topicPartition.partition == 5)
        await #expect(throws: BrokerError.self) { try await producer.send(ProducerRecord(topic: topic, partition: 6, value: bytes("x"))) }
        await t.close()
    }

    @Test func lingerPutsConcurrentSendsIntoOneBatch() async throws {
        let t = try await TestBroker.make()
        let topic = try t.broker.createTopic("linger", partitions: 1)
        let producer = try await Producer(broker: t.broker, config: ProducerConfig(lingerMs: 30))
        let results = try await withThrowingTaskGroup(of: RecordMetadata.self) { group in
            for i in 0..<20 { group.addTask { try await producer.send(ProducerRecord(topic: topic, value: bytes("r\(i)"))) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(Set(results.map(\.offset)) == Set(0..<20))
        var batches = 0
        let r = try t.broker.partition(TopicPartition(topic, 0)).read(from: 0, maxBytes: 1 << 20, isolation: .readUncommitted)
        r.result.forEachBatch { _ in batches += 1 }
        #expect(batches < 5, "20 concurrent sends with a 30 ms linger should share batches, got \(batches)")
        await t.close()
    }

    @Test func aRetriedBatchIsStoredOnceAndGapsAndOldEpochsAreRejected() async throws {
        let t = try await TestBroker.make()
        let topic = try t.broker.createTopic("idem", partitions: 1)
        let tp = TopicPartition(topic, 0)
        let handle = try t.broker.partition(tp)
        func batch(_ seq: Int32, epoch: Int16 = 0, values: [String]) -> RecordBatchBuilder {
            var b = RecordBatchBuilder()
            b.producerId = 77
            b.producerEpoch = epoch
            b.baseSequence = seq
            for v in values { b.append(key: nil, value: bytes(v), timestamp: 1) }
            return b
        }
        var first = batch(0, values: ["a", "b"])
        let r1 = try handle.append(&first)
        var retry = batch(0, values: ["a", "b"])
        let r2 = try handle.append(&retry)
        #expect(r1 == r2, "a duplicate returns the original offsets")
        var next = batch(2, values: ["c"])
        #expect(try handle.append(&next).baseOffset == 2)
        var gap = batch(5, values: ["d"])
        #expect { try handle.append(&gap) } throws: { ($0 as? BrokerError)?.code == .outOfOrderSequence }
        var newer = batch(0, epoch: 1, values: ["e"])
        try handle.append(&newer)
        var zombie = batch(3, epoch: 0, values: ["f"])
        #expect { try handle.append(&zombie) } throws: { ($0 as? BrokerError)?.code == .producerFenced }
        #expect(try values(t.broker, tp, isolation: .readUncommitted) == ["a", "b", "c", "e"])
        // The producer state is rebuilt from the log after a restart: the retry is still a duplicate.
        await t.broker.close()
        let again = try await TestBroker.make(path: t.path)
        var late = batch(0, epoch: 1, values: ["e"])
        #expect(try again.broker.partition(tp).append(&late).baseOffset == 3)
        var stale = batch(3, epoch: 0, values: ["g"])
        #expect { try again.broker.partition(tp).append(&stale) } throws: { ($0 as? BrokerError)?.code == .producerFenced }
        #expect(try values(again.broker, tp, isolation: .readUncommitted) == ["a", "b", "c", "e"])
        await again.close()
    }

    @Test func idempotentProducersGetDistinctIdsAndSequencesAdvance() async throws {
        let t = try await TestBroker.make()
        let topic = try t.broker.createTopic("ids", partitions: 2)
        let a = try await Producer(broker: t.broker)
        let b = try await Producer(broker: t.broker)
        #expect(a.producerId >= 0 && b.producerId >= 0 && a.producerId != b.producerId)
        let records = (0..<100).map { ProducerRecord(topic: topic, partition: Int32($0 % 2), value: bytes("\($0)")) }
        let meta = try await a.send(batch: records)
        #expect(meta.filter { $0.topicPartition.partition == 0 }.map(\.offset) == Array(0..<50))
        _ = try await a.send(batch: records)
        #expect(try t.broker.partition(TopicPartition(topic, 0)).highWatermark == 100)
        await t.close()
    }

    @Test func aLongPollWakesAsSoonAsDataArrives() async throws {
        let t = try await TestBroker.make()
        let topic = try t.broker.createTopic("poll", partitions: 1)
        let tp = TopicPartition(topic, 0)
        let producer = try await Producer(broker: t.broker)
        let start = ContinuousClock.now
        async let fetched = t.broker.fetch(tp, offset: 0, isolation: .readUncommitted, maxWait: .seconds(5))
        try await Task.sleep(for: .milliseconds(50))
        _ = try await producer.send(ProducerRecord(topic: topic, value: bytes("wake")))
        let data = try await fetched
        let elapsed = ContinuousClock.now - start
        #expect(!data.isEmpty)
        #expect(elapsed < .seconds(2), "the fetch waited \(elapsed) instead of waking on the append")
        // With nothing arriving, it returns empty after its wait.
        let idle = try await t.broker.fetch(tp, offset: 1, maxWait: .milliseconds(50))
        #expect(idle.isEmpty)
        await t.close()
    }
}

@Suite struct TransactionTests {
    @Test func abortedRecordsAreInvisibleToReadCommittedAndVisibleToReadUncommitted() async throws {
        let t = try await TestBroker.make()
        let topic = try t.broker.createTopic("tx", partitions: 2)
        let p0 = TopicPartition(topic, 0), p1 = TopicPartition(topic, 1)
        let producer = try await Producer(broker: t.broker, config: ProducerConfig(transactionalId: "tx-1"))
        let plain = try await Producer(broker: t.broker)
        _ = try await plain.send(ProducerRecord(topic: topic, partition: 0, value: bytes("plain-1")))

        try producer.beginTransaction()
        _ = try await producer.send(ProducerRecord(topic: topic, partition: 0, value: bytes("aborted-1")))
        _ = try await producer.send(ProducerRecord(topic: topic, partition: 1, value: bytes("aborted-2")))
        // While open: read_committed stops at the last stable offset.
        _ = try await plain.send(ProducerRecord(topic: topic, partition: 0, value: bytes("plain-2")))
        #expect(try values(t.broker, p0, isolation: .readCommitted) == ["plain-1"])
        #expect(try t.broker.partition(p0).lastStableOffset == 1)
        try await producer.abortTransaction()

        try producer.beginTransaction()
        _ = try await producer.send(ProducerRecord(topic: topic, partition: 0, value: bytes("committed-1")))
        _ = try await producer.send(ProducerRecord(topic: topic, partition: 1, value: bytes("committed-2")))
        try await producer.commitTransaction()

        #expect(try values(t.broker, p0, isolation: .readCommitted) == ["plain-1", "plain-2", "committed-1"])
        #expect(try values(t.broker, p1, isolation: .readCommitted) == ["committed-2"])
        #expect(try values(t.broker, p0, isolation: .readUncommitted) == ["plain-1", "aborted-1", "plain-2", "committed-1"])
        #expect(try values(t.broker, p1, isolation: .readUncommitted) == ["aborted-2", "committed-2"])
        #expect(try t.broker.partition(p0).lastStableOffset == t.broker.partition(p0).highWatermark)

        // Everything holds after a restart (transaction state is rebuilt from the log).
        await t.broker.close()
        let again = try await TestBroker.make(path: t.path)
        #expect(try values(again.broker, p0, isolation: .readCommitted) == ["plain-1", "plain-2", "committed-1"])
        #expect(try values(again.broker, p1, isolation: .readCommitted) == ["committed-2"])
        await again.close()
    }

    @Test func aNewInstanceFencesTheOldOneAndAbortsItsOpenTransaction() async throws {
        let t = try await TestBroker.make()
        let topic = try t.broker.createTopic("fence", partitions: 1)
        let tp = TopicPartition(topic, 0)
        let old = try await Producer(broker: t.broker, config: ProducerConfig(transactionalId: "worker"))
        try old.beginTransaction()
        _ = try await old.send(ProducerRecord(topic: topic, value: bytes("from-old")))

        let new = try await Producer(broker: t.broker, config: ProducerConfig(transactionalId: "worker"))
        #expect(new.producerId == old.producerId && new.epoch == old.epoch + 1)
        // The old instance can neither write nor commit.
        await #expect { try await old.send(ProducerRecord(topic: topic, value: bytes("zombie"))) } throws: { ($0 as? BrokerError)?.code == .producerFenced }
        await #expect { try await old.commitTransaction() } throws: { ($0 as? BrokerError)?.code == .producerFenced }
        try new.beginTransaction()
        _ = try await new.send(ProducerRecord(topic: topic, value: bytes("from-new")))
        try await new.commitTransaction()
        #expect(try values(t.broker, tp, isolation: .readCommitted) == ["from-new"])
        #expect(try values(t.broker, tp, isolation: .readUncommitted) == ["from-old", "from-new"])
        await t.close()
    }

    /// A new instance's InitProducerId that arrives while the old instance's commit is being
    /// written waits for it (CONCURRENT_TRANSACTIONS, retried): the markers are written once
    /// and the new epoch is the coordinator's, so the new instance can go on.
    @Test func aNewInstanceArrivingDuringACommitWaitsForIt() async throws {
        let t = try await TestBroker.make()
        let topic = try t.broker.createTopic("race", partitions: 3)
        let tps = (0..<3).map { TopicPartition(topic, Int32($0)) }
        let coordinator = t.broker.transactions
        for round in 0..<10 {
            let (pid, epoch) = try await coordinator.initProducerId(transactionalId: "racer")
            try await coordinator.addPartitions(transactionalId: "racer", producerId: pid, epoch: epoch, partitions: tps)
            try await coordinator.addOffsets(transactionalId: "racer", producerId: pid, epoch: epoch, groupId: "g")
            try await coordinator.txnOffsetCommit(transactionalId: "racer", producerId: pid, epoch: epoch, groupId: "g", offsets: [tps[0]: CommittedOffset(offset: Int64(round + 1), metadata: "")])
            let ends = try tps.map { try t.broker.partition($0).highWatermark }
            let commit = Task { try await coordinator.endTransaction(transactionalId: "racer", producerId: pid, epoch: epoch, commit: true) }
            // The new instance arrives once the commit decision is taken (markers being written).
            while await coordinator.describe("racer")?.state == .ongoing { await Task.yield() }
            var next: (producerId: Int64, epoch: Int16)?
            var refusals = 0
            while next == nil {
                do { next = try await coordinator.initProducerId(transactionalId: "racer") } catch let e as BrokerError where e.code == .concurrentTransactions {
                    refusals += 1
                    await Task.yield()
                }
            }
            try await commit.value
            #expect(next!.producerId == pid && next!.epoch == epoch + 1, "round \(round): \(next!) after epoch \(epoch), \(refusals) refusals")
            #expect(await coordinator.describe("racer")?.epoch == epoch + 1, "round \(round)")
            #expect(try tps.map { try t.broker.partition($0).highWatermark } == ends.map { $0 + 1 }, "round \(round): one commit marker per partition")
            #expect(await t.broker.groups.committedOffsets(groupId: "g")[tps[0]]?.offset == Int64(round + 1))
        }
        await t.close()
    }

    @Test func aTransactionLeftOpenIsAbortedAfterItsTimeout() async throws {
        let t = try await TestBroker.make()
        let topic = try t.broker.createTopic("timeout", partitions: 1)
        let tp = TopicPartition(topic, 0)
        var config = ProducerConfig(transactionalId: "slow")
        config.transactionTimeoutMs = 100
        let producer = try await Producer(broker: t.broker, config: config)
        try producer.beginTransaction()
        _ = try await producer.send(ProducerRecord(topic: topic, value: bytes("left-open")))
        #expect(try t.broker.partition(tp).lastStableOffset == 0)
        let ended = try await eventually { try t.broker.partition(tp).lastStableOffset == t.broker.partition(tp).highWatermark }
        #expect(ended, "the open transaction was not aborted")
        #expect(try values(t.broker, tp, isolation: .readCommitted).isEmpty)
        let state = await t.broker.transactions.describe("slow")
        #expect(state?.state == .completeAbort)
        // The producer that left it open is fenced.
        await #expect { try await producer.commitTransaction() } throws: { ($0 as? BrokerError)?.code == .producerFenced }
        await t.close()
    }

    @Test func offsetsSentToATransactionAreCommittedWithItOrNotAtAll() async throws {
        let t = try await TestBroker.make()
        let input = try t.broker.createTopic("in", partitions: 1)
        let output = try t.broker.createTopic("out", partitions: 1)
        let inTP = TopicPartition(input, 0)
        let producer = try await Producer(broker: t.broker, config: ProducerConfig(transactionalId: "etl-0"))
        try producer.beginTransaction()
        _ = try await producer.send(ProducerRecord(topic: output, value: bytes("o1")))
        try await producer.sendOffsetsToTransaction([inTP: 10], groupId: "etl")
        try await producer.abortTransaction()
        #expect(await t.broker.groups.committedOffsets(groupId: "etl")[inTP] == nil)
        try producer.beginTransaction()
        _ = try await producer.send(ProducerRecord(topic: output, value: bytes("o2")))
        try await producer.sendOffsetsToTransaction([inTP: 20], groupId: "etl")
        try await producer.commitTransaction()
        #expect(await t.broker.groups.committedOffsets(groupId: "etl")[inTP]?.offset == 20)
        #expect(try values(t.broker, TopicPartition(output, 0), isolation: .readCommitted) == ["o2"])
        await t.close()
    }
}

@Suite struct OffsetTests {
    @Test func committedOffsetsSurviveABrokerRestartAndGiveLag() async throws {
        let t = try await TestBroker.make()
        let topic = try t.broker.createTopic("events", partitions: 2)
        let producer = try await Producer(broker: t.broker)
        _ = try await producer.send(batch: (0..<10).map { ProducerRecord(topic: topic, partition: Int32($0 % 2), value: bytes("e\($0)")) })
        let consumer = Consumer(broker: t.broker, config: { var c = ConsumerConfig(groupId: "readers"); c.autoOffsetReset = .earliest; return c }())
        try consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        var seen = 0
        while seen < 10 { seen += try await consumer.poll(maxWait: .milliseconds(200)).count }
        try await consumer.commitSync([TopicPartition(topic, 0): 5, TopicPartition(topic, 1): 3])
        await t.broker.close()

        let again = try await TestBroker.make(path: t.path)
        let committed = await again.broker.groups.committedOffsets(groupId: "readers")
        #expect(committed[TopicPartition(topic, 0)]?.offset == 5)
        #expect(committed[TopicPartition(topic, 1)]?.offset == 3)
        #expect((committed[TopicPartition(topic, 0)]?.commitTimestamp ?? 0) > 1_700_000_000_000)
        let lag = try await again.broker.lag(groupId: "readers")
        #expect(lag.map(\.lag) == [0, 2])
        // A new consumer of the group resumes at the committed offsets.
        let resumed = Consumer(broker: again.broker, config: ConsumerConfig(groupId: "readers"))
        try resumed.assign([TopicPartition(topic, 1)])
        #expect(try await resumed.position(TopicPartition(topic, 1)) == 3)
        await again.close()
    }

    @Test func resetOffsetsIsRefusedWhileTheGroupHasLiveMembers() async throws {
        let t = try await TestBroker.make()
        let topic = try t.broker.createTopic("r", partitions: 1)
        let c = Consumer(broker: t.broker, config: ConsumerConfig(groupId: "live"))
        try c.subscribe([topic])
        _ = try await c.poll(maxWait: .milliseconds(10))
        await #expect { try await t.broker.groups.resetOffsets(groupId: "live", to: [TopicPartition(topic, 0): CommittedOffset(offset: 0)]) } throws: {
            ($0 as? BrokerError)?.code == .groupNotEmpty && ($0 as? BrokerError)?.message.contains("live member") == true
        }
        await c.close()
        try await t.broker.groups.resetOffsets(groupId: "live", to: [TopicPartition(topic, 0): CommittedOffset(offset: 0)])
        #expect(await t.broker.groups.committedOffsets(groupId: "live")[TopicPartition(topic, 0)]?.offset == 0)
        await t.close()
    }
}
