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
