// The gateway's channel topic on a Kafka cluster (`sluice serve --ws … --broker kafka://…`):
// a further gateway process publishes through an idempotent producer and tails every
// partition with assigned consumers, so a message published through one process reaches
// subscribers connected to another. Resuming reads from an offset with a consumer of its own.
#if RdKafka
import Foundation
import Logging
import SluiceGateway
import SluiceLog
import Synchronization

public final class RdChannelLog: ChannelLog, @unchecked Sendable {
    public let name: String
    public let partitionCount: Int32
    let url: String
    let properties: [String: String]
    let topic: String
    let logger: Logger
    let admin: RdAdmin
    let producer: RdProducer

    /// Consumers positioned at an offset, by (partition, next offset): the tailer's, and those
    /// of resumes in progress (several may stand at the same offset). Idle ones are closed
    /// after a minute, and the least recently used beyond `maxCursors`.
    private struct Cursor {
        var consumer: RdConsoleConsumer
        var lastUsed: ContinuousClock.Instant
    }
    private let cursors = Mutex<[CursorKey: [Cursor]]>([:])
    static let maxCursors = 64
    private let appendLock = AsyncLock()
    private struct CursorKey: Hashable {
        var partition: Int32
        var next: Int64
    }

    /// Connects, creating the channel topic with `partitions` when the cluster lacks it.
    public static func open(url: String, properties: [String: String], topic: String, partitions: Int32, logger: Logger) async throws -> RdChannelLog {
        let admin = try RdAdmin(url: url, properties: properties, logger: logger)
        do {
            if try await !admin.topics().contains(where: { $0.name == topic }) {
                try await admin.createTopic(topic, partitions: partitions, configs: [:])
            }
            var count = Int32(0)
            for _ in 0..<50 {
                count = Int32(try await admin.topic(topic).partitions.count)
                if count > 0 { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            guard count > 0 else { throw RdKafkaError("the channel topic \(topic) on \(url) has no partitions") }
            let settings = try RdKafkaSettings(url: url, properties: properties)
            let producer = try RdProducer(settings, name: "sluice-gateway@\(ProcessInfo.processInfo.hostName):\(getpid())", logger: logger)
            return RdChannelLog(url: url, properties: properties, topic: topic, partitions: count, admin: admin, producer: producer, logger: logger)
        } catch {
            await admin.close()
            throw error
        }
    }

    private init(url: String, properties: [String: String], topic: String, partitions: Int32, admin: RdAdmin, producer: RdProducer, logger: Logger) {
        self.url = url
        self.name = url
        self.properties = properties
        self.topic = topic
        self.partitionCount = partitions
        self.admin = admin
        self.producer = producer
        self.logger = logger
    }

    public func close() async {
        let all = cursors.withLock { c -> [Cursor] in defer { c.removeAll() }; return c.values.flatMap { $0 } }
        for c in all { await c.consumer.close() }
        await producer.close()
        await admin.close()
    }

    public func endOffsets() async throws -> [Int64] {
        var out: [Int64] = []
        for p in 0..<partitionCount { out.append(try await admin.watermarks(topic, p).high) }
        return out
    }

    public func startOffset(partition: Int32) async throws -> Int64 {
        try await admin.watermarks(topic, partition).low
    }

    /// Returns -1: the offsets are the cluster's, and the producer does not wait to learn them.
    public func append(partition: Int32, _ messages: [(channel: String, message: [UInt8])]) async throws -> Int64 {
        // One append at a time: the producer's flush waits for every record handed over, so
        // concurrent appends under steady load could keep each other waiting.
        await appendLock.lock()
        defer { appendLock.unlock() }
        var builder = RecordBatchBuilder(capacity: messages.reduce(128) { $0 + $1.channel.utf8.count + $1.message.count + 24 })
        let now = currentTimeMillis()
        for m in messages { builder.append(key: Array(m.channel.utf8), value: m.message, timestamp: now) }
        try await producer.send(&builder, topic: topic, partition: partition)
        try await producer.flush()
        return -1
    }

    public func read(partition: Int32, from offset: Int64, maxBytes: Int, maxWait: Duration, _ body: (ChannelMessage) -> Void) async throws -> Int64 {
        let consumer = try await cursor(partition, offset)
        var next = offset
        do {
            let ms = Int(maxWait.components.seconds * 1000 + maxWait.components.attoseconds / 1_000_000_000_000_000)
            let parts = try await consumer.poll(maxWaitMs: max(ms, 1), maxRecords: 10_000)
            for part in parts where part.partition == partition {
                for batch in part.batches {
                    for slot in batch.slots where slot.offset >= next {
                        batch.withBytes(slot.key) { key in
                            guard let key else { return }
                            batch.withBytes(slot.value) { value in
                                body(ChannelMessage(offset: slot.offset, channel: key, message: value ?? UnsafeRawBufferPointer(start: nil, count: 0)))
                            }
                        }
                    }
                }
                next = max(next, part.next)
            }
        } catch {
            await consumer.close()
            throw error
        }
        let evicted = cursors.withLock { c -> [RdConsoleConsumer] in
            c[CursorKey(partition: partition, next: next), default: []].append(Cursor(consumer: consumer, lastUsed: .now))
            var all = c.flatMap { entry in entry.value.map { (entry.key, $0) } }
            guard all.count > Self.maxCursors else { return [] }
            all.sort { $0.1.lastUsed < $1.1.lastUsed }
            var out: [RdConsoleConsumer] = []
            for (key, cursor) in all.prefix(all.count - Self.maxCursors) {
                c[key]?.removeAll { $0.consumer === cursor.consumer }
                if c[key]?.isEmpty == true { c[key] = nil }
                out.append(cursor.consumer)
            }
            return out
        }
        for e in evicted { await e.close() }
        return next
    }

    /// The consumer positioned at `offset` of `partition`, taken out of the table (or a new one).
    private func cursor(_ partition: Int32, _ offset: Int64) async throws -> RdConsoleConsumer {
        let (found, stale) = cursors.withLock { c -> (RdConsoleConsumer?, [RdConsoleConsumer]) in
            let key = CursorKey(partition: partition, next: offset)
            let mine = c[key]?.popLast()?.consumer
            if c[key]?.isEmpty == true { c[key] = nil }
            var old: [RdConsoleConsumer] = []
            for k in Array(c.keys) {
                let (gone, kept) = (c[k]!.filter { ContinuousClock.now - $0.lastUsed > .seconds(60) }, c[k]!.filter { ContinuousClock.now - $0.lastUsed <= .seconds(60) })
                old += gone.map(\.consumer)
                c[k] = kept.isEmpty ? nil : kept
            }
            return (mine, old)
        }
        for s in stale { await s.close() }
        if let found { return found }
        let consumer = try RdConsoleConsumer(url: url, properties: properties, label: "--broker-option", topic: topic, group: nil, earliest: true, readCommitted: false, logger: logger)
        do {
            try await consumer.assign([(partition, .offset(offset))])
        } catch {
            await consumer.close()
            throw error
        }
        return consumer
    }
}

/// A lock for async code: waiters queue in order and resume one at a time.
final class AsyncLock: Sendable {
    private struct State {
        var locked = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state = Mutex(State())

    func lock() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if !s.locked { s.locked = true; return true }
                s.waiters.append(c)
                return false
            }
            if now { c.resume() }
        }
    }

    func unlock() {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if s.waiters.isEmpty { s.locked = false; return nil }
            return s.waiters.removeFirst()
        }
        next?.resume()
    }
}
#endif
