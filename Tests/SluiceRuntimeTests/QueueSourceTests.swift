// Queue sources settling failures: a record whose own fault fails it (a sink's refusal) is
// dead-lettered on its first delivery, one whose failure may pass is released and
// dead-lettered on its last, and a sink that is down gets whole batches released instead of
// each record tried alone. The sink is a probe defined here, swapped in for the pipeline's.
import Foundation
import SluiceBroker
import SluiceComponents
import SluiceLog
import SluiceRuntime
import Synchronization
import Testing

/// A sink that refuses records containing "bad", fails any write holding "flaky", fails every
/// write while `down` calls remain, and otherwise keeps the ids it was given.
private final class ProbeSink: RejectingSink {
    struct State {
        var calls = 0
        var down = 0
        var kept: [Int] = []
    }
    let state: Mutex<State>
    init(downFor calls: Int = 0) { state = Mutex(State(down: calls)) }

    func writeReturningRefused(_ batch: RecordBatch, context: LaneContext) async throws -> RecordBatch {
        var refused = batch.emptied()
        var kept: [Int] = []
        var flaky = false
        for i in 0..<batch.count {
            let text = batch.withBytes(batch.slots[i].value) { String(decoding: $0 ?? UnsafeRawBufferPointer(start: nil, count: 0), as: UTF8.self) }
            if text.contains("bad") {
                refused.slots.append(batch.slots[i])
                refused.addHeader(refused.count - 1, name: "sluice.error", value: "the probe refuses bad records")
            } else if text.contains("flaky") {
                flaky = true
            } else {
                let o = try JSONSerialization.jsonObject(with: Data(text.utf8)) as! [String: Any]
                kept.append(o["id"] as! Int)
            }
        }
        let down = state.withLock { s -> Bool in
            s.calls += 1
            if s.down > 0 { s.down -= 1; return true }
            return false
        }
        if down { throw ComponentError(component: "probe", "the destination is down") }
        if flaky { throw ComponentError(component: "probe", "a flaky record timed out") }
        state.withLock { $0.kept.append(contentsOf: kept) }
        return refused
    }
    func flush() async throws {}
    func close() async throws {}
}

private func deadLetters(_ broker: EmbeddedBroker, _ topic: String) throws -> [Int: [String: String]] {
    var out: [Int: [String: String]] = [:]
    let tp = TopicPartition(try TopicName(topic), 0)
    let h = try broker.partition(tp)
    let data = try h.read(from: 0, maxBytes: 1 << 22, isolation: .readUncommitted)
    try data.forEachRecord(from: 0) { r in
        var headers: [String: String] = [:]
        r.forEachHeader { k, v in headers[String(decoding: k, as: UTF8.self)] = v.map { String(decoding: $0, as: UTF8.self) } }
        let value = String(decoding: r.value ?? UnsafeRawBufferPointer(start: nil, count: 0), as: UTF8.self)
        let o = try JSONSerialization.jsonObject(with: Data(value.utf8)) as! [String: Any]
        out[o["id"] as! Int] = headers
    }
    return out
}

private func queuePipeline(maxDeliveries: Int) throws -> Pipeline {
    try PipelineLoader().load(text: """
    name: probe
    topics:
      work: { partitions: 1 }
      work.dead: { partitions: 1 }
    sources:
      work: { type: queue, topic: work, group: probe, max_deliveries: \(maxDeliveries), dead_letter: work.dead, lock: 30s }
    sinks:
      out: { type: topic, topic: work.dead, inputs: [work] }
    """, file: "probe.yaml")
}

private func produce(_ broker: EmbeddedBroker, _ values: [String]) async throws {
    let topic = try broker.createTopic("work", partitions: 1)
    let producer = try await Producer(broker: broker)
    _ = try await producer.send(batch: values.map { ProducerRecord(topic: topic, key: nil, value: Array($0.utf8)) })
}

@Suite(.serialized) struct QueueSourceFailureTests {
    @Test func aRefusedRecordIsDeadLetteredAtOnceAndAFlakyOneOnItsLastDelivery() async throws {
        try await withBroker { broker, _ in
            var good = Set<Int>()
            var values: [String] = []
            for i in 0..<300 {
                let kind = i == 40 || i == 210 ? "bad" : i == 111 ? "flaky" : "ok"
                if kind == "ok" { good.insert(i) }
                values.append("{\"id\":\(i),\"kind\":\"\(kind)\"}")
            }
            try await produce(broker, values)
            let probe = ProbeSink()
            try await PipelineRunner(pipeline: try queuePipeline(maxDeliveries: 3), broker: broker, options: RunOptions(drain: true), overrides: ["out": .sink(probe)]).run()
            let kept = probe.state.withLock { $0.kept }
            // Every good record reached the sink; bisection re-sends some (at-least-once).
            #expect(Set(kept) == good)
            let dead = try deadLetters(broker, "work.dead")
            #expect(Set(dead.keys) == [40, 111, 210])
            // The refusals are the records' own fault: rejected on their first delivery.
            for id in [40, 210] {
                #expect(dead[id]?["sluice.dlq.reason"] == "rejected")
                #expect(dead[id]?["sluice.dlq.delivery.count"] == "1", "\(dead[id] ?? [:])")
                #expect(dead[id]?["sluice.dlq.error"]?.contains("the probe refuses bad records") == true, "\(dead[id] ?? [:])")
            }
            // The flaky one might pass another time: released twice, rejected on the third.
            #expect(dead[111]?["sluice.dlq.reason"] == "rejected")
            #expect(dead[111]?["sluice.dlq.delivery.count"] == "3", "\(dead[111] ?? [:])")
            #expect(dead[111]?["sluice.dlq.error"]?.contains("a flaky record timed out") == true, "\(dead[111] ?? [:])")
            let d = try #require(await broker.shares.describe("probe"))
            #expect(d.partitions.first?.startOffset == 300)
        }
    }

    @Test func aSinkThatIsDownGetsWholeBatchesReleasedNotEachRecordTried() async throws {
        try await withBroker { broker, _ in
            try await produce(broker, (0..<200).map { "{\"id\":\($0),\"kind\":\"ok\"}" })
            // Down for the first six writes: two deliveries of the batch (whole, then both
            // halves, each failing), then up.
            let probe = ProbeSink(downFor: 6)
            try await PipelineRunner(pipeline: try queuePipeline(maxDeliveries: 5), broker: broker, options: RunOptions(drain: true), overrides: ["out": .sink(probe)]).run()
            let (calls, kept) = probe.state.withLock { ($0.calls, $0.kept) }
            #expect(Set(kept) == Set(0..<200))
            // Trying each record alone would take hundreds of writes per delivery.
            #expect(calls <= 14, "\(calls) writes")
            #expect(try deadLetters(broker, "work.dead").isEmpty)
        }
    }
}
