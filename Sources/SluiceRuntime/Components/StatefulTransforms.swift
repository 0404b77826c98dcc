// dedupe, throttle and batch: transforms that keep state across batches and lanes (behind a mutex).
import Foundation
import SluiceBroker
import SluiceLog
import Synchronization

/// Drops records whose key (an expression) was seen within the window: `window` (time) or
/// `count` (the last N distinct keys), or both.
///
/// Under exactly-once the state is also kept in a changelog topic
/// (`<pipeline>.<id>.changelog`): each new key is written there inside the lane's transaction,
/// with the source position of the record that introduced it, and the state is rebuilt from
/// the committed changelog before any lane runs. A record replayed after a crash is
/// recognised by that position and kept, so its outputs are not lost to its own earlier
/// (aborted or partly applied) processing.
final class DedupeTransform: Transform {
    let id: String
    let key: CompiledExpression
    let windowMs: Int64?
    let capacity: Int?
    let changelog: (broker: EmbeddedBroker, topic: TopicName)?

    /// The record that first brought a key in.
    struct Origin: Hashable {
        var topic: String
        var partition: Int32
        var offset: Int64
    }

    private struct Entry {
        var time: Int64
        var origin: Origin?
    }

    private struct State {
        var seen: [Value: Entry] = [:]
        var order: [(Value, Int64)] = []  // insertion order, for expiry and eviction
        var head = 0

        mutating func insert(_ k: Value, _ entry: Entry, capacity: Int?) {
            seen[k] = entry
            order.append((k, entry.time))
            if let capacity {
                while seen.count > capacity, head < order.count {
                    let (old, t) = order[head]
                    if seen[old]?.time == t { seen[old] = nil }
                    head += 1
                }
            }
        }

        mutating func expire(now: Int64, windowMs: Int64?) {
            if let windowMs {
                while head < order.count, now - order[head].1 > windowMs {
                    let (k, t) = order[head]
                    if seen[k]?.time == t { seen[k] = nil }
                    head += 1
                }
            }
            if head > 4096 && head * 2 > order.count {
                order.removeFirst(head)
                head = 0
            }
        }
    }

    private let state = Mutex(State())

    init(id: String, key: CompiledExpression, windowMs: Int64?, capacity: Int?, changelog: (broker: EmbeddedBroker, topic: TopicName)? = nil) {
        self.id = id
        self.key = key
        self.windowMs = windowMs
        self.capacity = capacity
        self.changelog = changelog
    }

    /// The one restore, started by the first lane that needs the state.
    private let restoring = Mutex<Task<Void, any Error>?>(nil)

    /// Restores the state once, before the first record is judged. It runs when the first lane
    /// has its transactional producer — by then the lanes of a killed predecessor are fenced
    /// and their open transactions aborted — and waits (up to 30 s) for transactions still
    /// open in the changelog to end, so nothing committed after them is missed.
    private func ensureRestored() async throws {
        let task = restoring.withLock { t -> Task<Void, any Error> in
            if let t { return t }
            let task = Task {
                guard let (broker, topic) = self.changelog else { return }
                let h = try broker.partition(TopicPartition(topic, 0))
                let end = h.highWatermark
                let deadline = ContinuousClock.now + .seconds(30)
                while h.lastStableOffset < end && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(20))
                }
                try self.restore()
            }
            t = task
            return task
        }
        try await task.value
    }

    /// Rebuilds the state from the committed changelog.
    func restore() throws {
        guard let (broker, topic) = changelog else { return }
        let h = try broker.partition(TopicPartition(topic, 0))
        var offset = h.logStartOffset
        var entries: [(Value, Entry)] = []
        while true {
            let d = try h.read(from: offset, maxBytes: 1 << 20, isolation: .readCommitted)
            if d.isEmpty { break }
            try d.forEachRecord(from: offset) { r in
                guard let k = r.key, let v = r.value,
                      let key = try? JSON.parse(UnsafeRawBufferPointer(k)), let o = try? JSON.parse(UnsafeRawBufferPointer(v)),
                      case .int(let t)? = o["t"], case .string(let topic)? = o["topic"], case .int(let p)? = o["p"], case .int(let off)? = o["o"] else { return }
                entries.append((key, Entry(time: t, origin: Origin(topic: topic, partition: Int32(p), offset: off))))
            }
            offset = d.nextOffset
        }
        let now = currentTimeMillis()
        state.withLock { s in
            for (k, e) in entries { s.insert(k, e, capacity: capacity) }
            s.expire(now: now, windowMs: windowMs)
        }
    }

    func process(_ batch: RecordBatch, into output: inout TransformOutput, context: LaneContext) async throws {
        var keys: [Value?] = []
        keys.reserveCapacity(batch.count)
        batch.forEachContext { i, ctx in
            do { keys.append(try key.evaluate(ctx)) } catch {
                keys.append(nil)
                output.fail(batch.slots[i], component: id, "key: \(expressionMessage(error))")
            }
        }
        let txn = changelog == nil ? nil : context.transaction
        if txn != nil { try await ensureRestored() }
        let now = currentTimeMillis()
        var added: [(Value, Origin)] = []
        let keep: [Bool] = state.withLock { s in
            s.expire(now: now, windowMs: windowMs)
            var out: [Bool] = []
            out.reserveCapacity(keys.count)
            for (i, k) in keys.enumerated() {
                guard let k else { out.append(false); continue }
                let origin: Origin?
                if txn != nil {
                    let lane = batch.lane(i)
                    origin = Origin(topic: lane.topic ?? "", partition: lane.partition, offset: batch.slots[i].offset)
                } else {
                    origin = nil
                }
                if let e = s.seen[k], windowMs.map({ now - e.time <= $0 }) ?? true {
                    // A replay of the record that brought the key in is not a duplicate.
                    out.append(origin != nil && e.origin == origin)
                    continue
                }
                s.insert(k, Entry(time: now, origin: origin), capacity: capacity)
                if let origin { added.append((k, origin)) }
                out.append(true)
            }
            return out
        }
        if let txn, let (_, topic) = changelog, !added.isEmpty {
            var builder = RecordBatchBuilder(capacity: added.count * 64 + 128)
            for (k, o) in added {
                var entry = ValueObject()
                entry["t"] = .int(now)
                entry["topic"] = .string(o.topic)
                entry["p"] = .int(Int64(o.partition))
                entry["o"] = .int(o.offset)
                builder.append(key: JSON.serialize(k), value: JSON.serialize(.object(entry)), timestamp: now, headers: [])
            }
            try await txn.producer.send(&builder, topic: topic.description, partition: 0)
        }
        output.out.slots.reserveCapacity(output.out.count + batch.count)
        for (i, k) in keep.enumerated() where k { output.pass(batch.slots[i]) }
    }
}

/// Passes at most `rate` records per second, waiting (and so slowing the lane) when ahead.
final class ThrottleTransform: Transform {
    let rate: Int64
    private let next = Mutex<ContinuousClock.Instant?>(nil)

    init(rate: Int64) { self.rate = max(1, rate) }

    func process(_ batch: RecordBatch, into output: inout TransformOutput, context: LaneContext) async throws {
        let spacing = Duration.nanoseconds(1_000_000_000 / rate)
        let due = next.withLock { n -> ContinuousClock.Instant in
            let start = max(n ?? .now, .now)
            n = start + spacing * batch.count
            return start
        }
        if due > .now { try await Task.sleep(until: due, clock: .continuous) }
        output.out.slots.append(contentsOf: batch.slots)
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

    func process(_ batch: RecordBatch, into output: inout TransformOutput, context: LaneContext) async throws {
        // Held records outlive the batch, so they are kept as owned records.
        let records = batch.records
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
            for r in group { output.out.append(r) }
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
