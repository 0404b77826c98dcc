// Pipelines running on a real embedded broker: generator and file sources, json, filter,
// map, key, route, topic/file sinks, error outputs, topic sources in consumer groups.
import Foundation
import SluiceBroker
import SluiceLog
import SluiceRuntime
import Testing

func withBroker(_ body: (EmbeddedBroker, String) async throws -> Void) async throws {
    let dir = NSTemporaryDirectory() + "sluice-run-\(UUID().uuidString)"
    let broker = try await EmbeddedBroker.open(path: dir)
    do {
        try await body(broker, dir)
    } catch {
        await broker.close()
        try? FileManager.default.removeItem(atPath: dir)
        throw error
    }
    await broker.close()
    try? FileManager.default.removeItem(atPath: dir)
}

func topicValues(_ broker: EmbeddedBroker, _ topic: String) throws -> [(key: String?, value: String)] {
    let name = try TopicName(topic)
    var out: [(String?, String)] = []
    for p in 0..<(try broker.partitionCount(name)) {
        let h = try broker.partition(TopicPartition(name, p))
        var offset = h.logStartOffset
        while offset < h.highWatermark {
            let d = try h.read(from: offset, maxBytes: 1 << 20, isolation: .readCommitted)
            if d.isEmpty { break }
            try d.forEachRecord(from: offset) { r in
                out.append((r.key.map { String(decoding: $0, as: UTF8.self) }, String(decoding: r.value ?? UnsafeRawBufferPointer(start: nil, count: 0), as: UTF8.self)))
            }
            offset = d.nextOffset
        }
    }
    return out
}

@Suite(.serialized) struct RunnerTests {
    @Test func generatorFilterMapIntoATopicKeyedByAField() async throws {
        try await withBroker { broker, _ in
            let text = """
            name: gen
            topics:
              out: { partitions: 4 }
            sources:
              g: { type: generator, count: 100, template: '{"id": {{i}}, "user": "u{{i % 5}}", "amount": {{i}}}' }
            transforms:
              p: { type: json, inputs: [g] }
              f: { type: filter, inputs: [p], where: "amount >= 90" }
              m: { type: map, inputs: [f], set: { cents: "amount * 100" }, remove: [user] }
            sinks:
              t: { type: topic, inputs: [m], topic: out, key: "to_string(id)" }
            """
            let pipeline = try PipelineLoader(environment: [:]).load(text: text, file: "gen.yaml")
            let runner = PipelineRunner(pipeline: pipeline, broker: broker)
            try await runner.run()
            let records = try topicValues(broker, "out")
            #expect(records.count == 10)
            let objects = try records.map { try JSONSerialization.jsonObject(with: Data($0.value.utf8)) as! [String: Any] }
            #expect(Set(objects.map { $0["id"] as! Int }) == Set(90..<100))
            #expect(objects.allSatisfy { ($0["cents"] as! Int) == ($0["amount"] as! Int) * 100 && $0["user"] == nil })
            #expect(records.allSatisfy { r in r.key == String((try! JSONSerialization.jsonObject(with: Data(r.value.utf8)) as! [String: Any])["id"] as! Int) })
            #expect(runner.counts["g"] == 100 && runner.counts["t"] == 10)
        }
    }

    @Test func badRecordsGoToTheErrorOutputOrStopThePipelineWithAClearMessage() async throws {
        try await withBroker { broker, dir in
            let input = dir + "/in.jsonl"
            try "{\"a\":1}\nnot json\n{\"a\":2}\n".write(toFile: input, atomically: true, encoding: .utf8)
            let wired = """
            name: dlq
            topics:
              good: {}
              bad: {}
            sources:
              f: { type: file, path: "\(input)" }
            transforms:
              p: { type: json, inputs: [f] }
            sinks:
              ok: { type: topic, inputs: [p], topic: good }
              dead: { type: topic, inputs: [p.errors], topic: bad }
            """
            try await PipelineRunner(pipeline: try PipelineLoader(environment: [:]).load(text: wired, file: "dlq.yaml"), broker: broker).run()
            #expect(try topicValues(broker, "good").map(\.value) == ["{\"a\":1}", "{\"a\":2}"])
            #expect(try topicValues(broker, "bad").map(\.value) == ["not json"])
            let unwired = wired.replacingOccurrences(of: "\n  dead: { type: topic, inputs: [p.errors], topic: bad }", with: "").replacingOccurrences(of: "name: dlq", with: "name: strict")
            let runner = PipelineRunner(pipeline: try PipelineLoader(environment: [:]).load(text: unwired, file: "strict.yaml"), broker: broker)
            await #expect {
                try await runner.run()
            } throws: { error in
                let message = "\(error)"
                return message.contains("transform 'p' failed on record 1") && message.contains("invalid JSON") && message.contains("wire 'p.errors'")
            }
        }
    }

    @Test func aTopicSourceRoutesIntoSeveralTopicsAndCommitsItsOffsets() async throws {
        try await withBroker { broker, _ in
            let orders = try broker.createTopic("orders", partitions: 3)
            let producer = try await Producer(broker: broker)
            _ = try await producer.send(batch: (0..<60).map { ProducerRecord(topic: orders, key: Array("k\($0 % 7)".utf8), value: Array("{\"n\": \($0)}".utf8)) })
            let text = """
            name: router
            topics:
              orders: { partitions: 3 }
              even: {}
              odd: {}
            sources:
              in: { type: topic, topic: orders, group: router }
            transforms:
              p: { type: json, inputs: [in] }
              r: { type: route, inputs: [p], routes: { even: "n % 2 == 0", odd: "n % 2 == 1" } }
            sinks:
              e: { type: topic, inputs: [r.even], topic: even }
              o: { type: topic, inputs: [r.odd], topic: odd }
            """
            let runner = PipelineRunner(pipeline: try PipelineLoader(environment: [:]).load(text: text, file: "router.yaml"), broker: broker, options: RunOptions(drain: true))
            try await runner.run()
            #expect(try topicValues(broker, "even").count == 30)
            #expect(try topicValues(broker, "odd").count == 30)
            let lag = try await broker.lag(groupId: "router")
            #expect(lag.count == 3 && lag.allSatisfy { $0.lag == 0 }, "offsets were committed after the sinks accepted")
            // Keys travel with records, so per-key order on the source partitions is kept downstream.
            let evens = try topicValues(broker, "even")
            for k in 0..<7 {
                let ns = evens.filter { $0.key == "k\(k)" }.map { (try! JSONSerialization.jsonObject(with: Data($0.value.utf8)) as! [String: Any])["n"] as! Int }
                #expect(ns == ns.sorted())
            }
        }
    }
}

@Suite(.serialized) struct RebalanceRunnerTests {
    @Test func stoppingOneOfTwoInstancesMovesItsLanesAndLosesNothing() async throws {
        try await withBroker { broker, _ in
            let input = try broker.createTopic("events", partitions: 6)
            let producer = try await Producer(broker: broker)
            let total = 6000
            // 50 keys, each with its own increasing sequence number.
            _ = try await producer.send(batch: (0..<total).map { i in
                ProducerRecord(topic: input, key: Array("k\(i % 50)".utf8), value: Array("{\"k\":\"k\(i % 50)\",\"seq\":\(i / 50)}".utf8))
            })
            let text = """
            name: shared
            topics:
              events: { partitions: 6 }
              copied: { partitions: 6 }
            sources:
              in: { type: topic, topic: events, group: shared, batch_records: 100 }
            transforms:
              p: { type: json, inputs: [in] }
            sinks:
              out: { type: topic, inputs: [p], topic: copied }
            """
            let pipeline = try PipelineLoader(environment: [:]).load(text: text, file: "shared.yaml")
            let a = PipelineRunner(pipeline: pipeline, broker: broker)
            let b = PipelineRunner(pipeline: pipeline, broker: broker)
            let taskA = Task { try await a.run() }
            let taskB = Task { try await b.run() }
            // Both instances own lanes before one stops.
            let shared = await eventually(timeout: .seconds(20)) {
                guard let d = await broker.groups.describe(groupId: "shared"), d.state == .stable else { return false }
                return d.members.count == 2
            }
            #expect(shared)
            if !shared {
                taskB.cancel()
                do { try await taskB.value } catch { Issue.record("runner B failed: \(error)") }
            }
            taskA.cancel()
            _ = try? await taskA.value
            let done = await eventually(timeout: .seconds(20)) {
                Set((try? topicValues(broker, "copied"))?.map(\.value) ?? []).count == total
            }
            taskB.cancel()
            _ = try? await taskB.value
            #expect(done, "every input record reaches the sink at least once")
            let out = try topicValues(broker, "copied")
            #expect(Set(out.map(\.value)).count == total)
            // Per key, the first time each record appears, sequence numbers only grow.
            var firstSeen: [String: [Int]] = [:]
            var seen = Set<String>()
            for r in out where seen.insert(r.value).inserted {
                let o = try JSONSerialization.jsonObject(with: Data(r.value.utf8)) as! [String: Any]
                firstSeen[o["k"] as! String, default: []].append(o["seq"] as! Int)
            }
            #expect(firstSeen.count == 50)
            #expect(firstSeen.values.allSatisfy { $0 == $0.sorted() }, "per-key order was not kept")
        }
    }
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes; returns whether it held.
func eventually(timeout: Duration = .seconds(10), _ condition: @Sendable () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return try await condition()
}

@Suite struct StatefulTransformTests {
    @Test func dedupeDropsRepeatedKeysWithinItsWindowAndCount() async throws {
        try await withBroker { broker, _ in
            let text = """
            name: dd
            topics:
              out: {}
            sources:
              g: { type: generator, count: 100, template: '{"order": {{i % 10}}, "n": {{i}}}', batch_records: 7 }
            transforms:
              p: { type: json, inputs: [g] }
              d: { type: dedupe, inputs: [p], key: "order", window: 1h }
            sinks:
              t: { type: topic, inputs: [d], topic: out }
            """
            try await PipelineRunner(pipeline: try PipelineLoader(environment: [:]).load(text: text, file: "dd.yaml"), broker: broker).run()
            let values = try topicValues(broker, "out").map { try JSONSerialization.jsonObject(with: Data($0.value.utf8)) as! [String: Any] }
            #expect(values.map { $0["n"] as! Int } == Array(0..<10), "the first record of each order is kept")
        }
    }

    @Test func dedupeWithACountForgetsOldKeys() async throws {
        try await withBroker { broker, _ in
            let text = """
            name: dd2
            topics:
              out: {}
            sources:
              g: { type: generator, count: 6, template: '{"n": {{i}}}' }
            transforms:
              p: { type: json, inputs: [g] }
              d: { type: dedupe, inputs: [p], key: "if n < 3 then 'a' else (if n < 5 then 'b' else 'a')", count: 1 }
            sinks:
              t: { type: topic, inputs: [d], topic: out }
            """
            try await PipelineRunner(pipeline: try PipelineLoader(environment: [:]).load(text: text, file: "dd2.yaml"), broker: broker).run()
            // a a a b b a: with room for one key, 'a' is forgotten once 'b' arrives.
            #expect(try topicValues(broker, "out").map(\.value) == [#"{"n": 0}"#, #"{"n": 3}"#, #"{"n": 5}"#])
        }
    }

    @Test func throttleHoldsALaneToItsRate() async throws {
        try await withBroker { broker, _ in
            let text = """
            name: slow
            sources:
              g: { type: generator, count: 30, template: "x", batch_records: 10 }
            transforms:
              t: { type: throttle, inputs: [g], rate: 100 }
            sinks:
              d: { type: drop, inputs: [t] }
            """
            let start = ContinuousClock.now
            try await PipelineRunner(pipeline: try PipelineLoader(environment: [:]).load(text: text, file: "slow.yaml"), broker: broker).run()
            // 30 records at 100/s: the last batch may start after 200 ms.
            #expect(ContinuousClock.now - start >= .milliseconds(190))
        }
    }
}
