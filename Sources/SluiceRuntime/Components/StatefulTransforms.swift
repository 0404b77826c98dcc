// dedupe and throttle: transforms that keep state across batches and lanes (behind a mutex).
import Foundation
import SluiceLog
import Synchronization

/// Drops records whose key (an expression) was seen within the window: `window` (time) or
/// `count` (the last N distinct keys), or both.
final class DedupeTransform: Transform {
    let id: String
    let key: CompiledExpression
    let windowMs: Int64?
    let capacity: Int?

    private struct State {
        var seen: [Value: Int64] = [:]   // key -> time last seen
        var order: [(Value, Int64)] = []  // insertion order, for expiry and eviction
        var head = 0
    }

    private let state = Mutex(State())

    init(id: String, key: CompiledExpression, windowMs: Int64?, capacity: Int?) {
        self.id = id
        self.key = key
        self.windowMs = windowMs
        self.capacity = capacity
    }

    func process(_ records: [PipelineRecord], into output: inout TransformOutput) async throws {
        var keys: [Value?] = []
        keys.reserveCapacity(records.count)
        for r in records {
            do { keys.append(try key.evaluate(r.context)) } catch let e {
                keys.append(nil)
                output.fail(r, component: id, "key: \(e.message)")
            }
        }
        let now = currentTimeMillis()
        let keep: [Bool] = state.withLock { s in
            // Expire by age, then by count.
            if let windowMs {
                while s.head < s.order.count, now - s.order[s.head].1 > windowMs {
                    let (k, t) = s.order[s.head]
                    if s.seen[k] == t { s.seen[k] = nil }
                    s.head += 1
                }
            }
            var out: [Bool] = []
            for k in keys {
                guard let k else { out.append(false); continue }
                if let t = s.seen[k], windowMs.map({ now - t <= $0 }) ?? true {
                    out.append(false)
                    continue
                }
                s.seen[k] = now
                s.order.append((k, now))
                if let capacity {
                    while s.seen.count > capacity, s.head < s.order.count {
                        let (old, t) = s.order[s.head]
                        if s.seen[old] == t { s.seen[old] = nil }
                        s.head += 1
                    }
                }
                out.append(true)
            }
            if s.head > 4096 && s.head * 2 > s.order.count {
                s.order.removeFirst(s.head)
                s.head = 0
            }
            return out
        }
        for (r, k) in zip(records, keep) where k { output.out.append(r) }
    }
}

/// Passes at most `rate` records per second, waiting (and so slowing the lane) when ahead.
final class ThrottleTransform: Transform {
    let rate: Int64
    private let next = Mutex<ContinuousClock.Instant?>(nil)

    init(rate: Int64) { self.rate = max(1, rate) }

    func process(_ records: [PipelineRecord], into output: inout TransformOutput) async throws {
        let spacing = Duration.nanoseconds(1_000_000_000 / rate)
        let due = next.withLock { n -> ContinuousClock.Instant in
            let start = max(n ?? .now, .now)
            n = start + spacing * records.count
            return start
        }
        if due > .now { try await Task.sleep(until: due, clock: .continuous) }
        output.out += records
    }
}

/// Groups records per lane until `count` records or `bytes` of values are held, or `period`
/// has passed since the group's first record. `array` turns a group into one record whose
/// value is a JSON array of the values; `records` passes the group on as it is.
final class BatchTransform: BufferingTransform {
    let id: String
    let count: Int?
    let bytes: Int?
    let period: Duration?
    let asArray: Bool

    private struct Group {
        var records: [PipelineRecord] = []
        var bytes = 0
        var since = ContinuousClock.now
    }
    private let groups = Mutex<[SourceLane: Group]>([:])

    init(id: String, count: Int?, bytes: Int?, periodMs: Int64?, asArray: Bool) {
        self.id = id
        self.count = count
        self.bytes = bytes
        self.period = periodMs.map { .milliseconds($0) }
        self.asArray = asArray
    }

    func process(_ records: [PipelineRecord], into output: inout TransformOutput) async throws {
        var complete: [[PipelineRecord]] = []
        groups.withLock { groups in
            for r in records {
                let lane = SourceLane(topic: r.topic, partition: r.partition)
                var g = groups.removeValue(forKey: lane) ?? Group()
                if g.records.isEmpty { g.since = .now; g.records.reserveCapacity(count ?? 256) }
                g.records.append(r)
                g.bytes += r.value?.count ?? 0
                if (count.map { g.records.count >= $0 } ?? false) || (bytes.map { g.bytes >= $0 } ?? false) {
                    complete.append(g.records)
                } else {
                    groups[lane] = g
                }
            }
        }
        for c in complete { emit(c, into: &output) }
    }

    func release(force: Bool, into output: inout TransformOutput) {
        let now = ContinuousClock.now
        let due: [[PipelineRecord]] = groups.withLock { groups in
            var due: [[PipelineRecord]] = []
            for (lane, g) in groups where force || (period.map { now - g.since >= $0 } ?? false) {
                due.append(g.records)
                groups[lane] = nil
            }
            return due
        }
        for g in due { emit(g, into: &output) }
    }

    func heldOffsets() -> [SourceLane: Int64] {
        groups.withLock { groups in groups.compactMapValues { $0.records.first?.offset } }
    }

    func discard(_ lanes: Set<SourceLane>) {
        groups.withLock { groups in for l in lanes { groups[l] = nil } }
    }

    private func emit(_ group: [PipelineRecord], into output: inout TransformOutput) {
        guard asArray, let last = group.last else {
            output.out += group
            return
        }
        // One record: a JSON array of the values (parsed values where a json transform ran).
        var text: [UInt8] = [91]
        text.reserveCapacity(group.reduce(2) { $0 + ($1.value?.count ?? 4) + 1 })
        for (i, r) in group.enumerated() {
            if i > 0 { text.append(44) }
            if let v = r.value, r.parsed != nil || (try? JSON.parse(v)) != nil { text += v } else if let v = r.value {
                text += JSON.serialize(.string(String(decoding: v, as: UTF8.self)))
            } else {
                text += Array("null".utf8)
            }
        }
        text.append(93)
        var combined = last
        combined.key = group[0].key
        combined.value = text
        combined.parsed = nil
        combined.headers = []
        output.out.append(combined)
    }
}
