// ChannelHub: channels on the log. A publish is appended to the channel's partition (several
// publishes waiting for the same partition go in one batch); one tailer per partition reads
// what was appended — by this process or by any other gateway on the same topic — and hands
// each batch to every event loop's shard in one hop. A shard knows the subscribers on its
// loop and writes each message's frame, encoded once, to each of them: no locks, no copies
// and no allocation per delivery.
//
// Resuming: a shard remembers, per partition, the offset up to which it has delivered. A
// socket that subscribes with the last offset it saw is sent the channel's messages from the
// log up to that point while live deliveries for it are held back, then the held ones: so
// it gets every message once, in order.
import Logging
import NIOCore
import SluiceComponents
import Synchronization

public final class ChannelHub: Sendable {
    public let log: any ChannelLog
    public let config: GatewayConfig
    public let auth: GatewayAuth
    public let rules: ChannelRules
    let logger: Logger
    let shards: [Shard]
    private let appenders: [Appender]
    private let starts: [Int64]

    /// Builds the hub over `log` with one shard per loop of `loops`; tailing starts at the
    /// partitions' current ends.
    public init(log: any ChannelLog, loops: EventLoopGroup, config: GatewayConfig, auth: GatewayAuth = GatewayAuth(), rules: ChannelRules = ChannelRules(), logger: Logger) async throws {
        self.log = log
        self.config = config
        self.auth = auth
        self.rules = rules
        self.logger = logger
        let ends = try await log.endOffsets()
        starts = ends
        var shards: [Shard] = []
        for loop in loops.makeIterator() { shards.append(Shard(loop: loop, delivered: ends, config: config)) }
        self.shards = shards
        appenders = (0..<log.partitionCount).map { Appender(log: log, partition: $0) }
    }

    func shard(for loop: EventLoop) -> Shard {
        for s in shards where s.loop === loop { return s }
        return shards[0]
    }

    /// Tails every partition until cancelled.
    public func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for p in 0..<log.partitionCount {
                group.addTask { try await self.tail(partition: p) }
            }
            for s in shards {
                group.addTask { try await s.sweep() }
            }
            try await group.next()
            group.cancelAll()
        }
    }

    // MARK: Publishing

    /// Appends `message` to `channel`'s partition; `done` gets its offset or the error.
    public func publish(channel: String, message: [UInt8], done: @escaping @Sendable (Result<Int64, any Error>) -> Void) {
        appenders[Int(log.partition(of: channel))].enqueue(channel, message, done)
    }

    /// Appends and waits (pipelines' channel sink, the HTTP API).
    public func publish(channel: String, message: [UInt8]) async throws -> Int64 {
        try await withCheckedThrowingContinuation { c in
            publish(channel: channel, message: message) { c.resume(with: $0) }
        }
    }

    /// Who is subscribed to which channel, over every shard: channel → socket ids.
    public func presence() async -> [String: [String]] {
        var all: [String: [String]] = [:]
        for s in shards {
            guard let part = try? await s.loop.submit({ s.presence() }).get() else { continue }
            all.merge(part) { $0 + $1 }
        }
        return all
    }

    /// Sockets connected, over every shard.
    public func connectionCount() async -> Int {
        var n = 0
        for s in shards { n += (try? await s.loop.submit({ s.sockets.count }).get()) ?? 0 }
        return n
    }

    /// Closes every socket with 1001.
    public func closeAll() async {
        for s in shards { try? await s.loop.submit({ s.closeAll() }).get() }
    }

    // MARK: Tailing

    private func tail(partition p: Int32) async throws {
        var position = starts[Int(p)]
        var failures = 0
        var inFlight: [[EventLoopFuture<Void>]] = []
        while !Task.isCancelled {
            var frames = FrameBatch()
            let next: Int64
            do {
                next = try await log.read(partition: p, from: position, maxBytes: 1 << 20, maxWait: .milliseconds(500)) { m in
                    frames.add(m)
                }
                failures = 0
            } catch is CancellationError {
                return
            } catch {
                failures += 1
                if failures == 1 || failures % 100 == 0 {
                    logger.error("gateway: reading channel partition \(p) at offset \(position) failed: \(error)")
                }
                // Skip past what was lost to retention rather than stalling the partition.
                if let start = try? await log.startOffset(partition: p), start > position { position = start }
                try await Task.sleep(for: .milliseconds(100))
                continue
            }
            if next == position { continue }
            position = next
            let batch = frames.seal(partition: p, next: next)
            // At most a few batches in flight per loop: a loop that falls behind slows the
            // tailer instead of queueing batches without bound.
            inFlight.append(shards.map { s in s.loop.submit { s.deliver(batch) } })
            if inFlight.count > 4 {
                for f in inFlight.removeFirst() { try? await f.get() }
            }
        }
    }

    // MARK: Resume

    /// Reads `channel`'s messages in `from..<until` and hands their frames over in chunks;
    /// `send` returns false when the socket is gone. At most `limit`, the newest ones.
    func history(channel: String, partition p: Int32, from: Int64, until: Int64, limit: Int, send: (FrameBatch) async -> Bool) async throws {
        var position = max(from, try await log.startOffset(partition: p))
        let name = Array(channel.utf8)
        var skip = 0
        if until - position > Int64(limit) {
            // Count first, to send only the newest `limit` of this channel.
            var count = 0
            try await readRange(p, from: position, until: until, maxBytes: 1 << 20) { m in
                if m.channel.elementsEqual(name) { count += 1 }
            } after: { _ in true }
            skip = max(0, count - limit)
        }
        var frames = FrameBatch()
        try await readRange(p, from: position, until: until, maxBytes: 256 << 10) { m in
            guard m.channel.elementsEqual(name) else { return }
            if skip > 0 { skip -= 1; return }
            frames.add(m)
        } after: { next in
            defer { frames = FrameBatch() }
            return frames.isEmpty ? true : await send(frames.seal(partition: p, next: min(next, until)))
        }
    }

    /// Reads `from..<until` of partition `p`, message by message, calling `after` once per
    /// read (false stops). Every offset up to `until` is there to read (the tailer saw it), so
    /// a read that brings nothing is waited out; ten seconds without progress is an error.
    private func readRange(_ p: Int32, from: Int64, until: Int64, maxBytes: Int, _ each: (ChannelMessage) -> Void, after: (Int64) async -> Bool) async throws {
        var position = from
        var stalledSince: ContinuousClock.Instant?
        while position < until {
            let next = try await log.read(partition: p, from: position, maxBytes: maxBytes, maxWait: .milliseconds(200)) { m in
                if m.offset < until { each(m) }
            }
            if next == position {
                let since = stalledSince ?? .now
                stalledSince = since
                if ContinuousClock.now - since > .seconds(10) {
                    throw GatewayError("reading partition \(p) of \(log.name) made no progress at offset \(position) for 10 s (the history ends at \(until))")
                }
                continue
            }
            stalledSince = nil
            position = next
            if await !after(next) { return }
        }
    }
}

public struct GatewayError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Messages read from one partition as WebSocket text frames, all in one buffer: each is
/// `{"event":"#publish","data":{"channel":…,"data":…,"offset":N}}`, sent to every subscriber
/// as is (server frames are not masked, so one encoding serves them all).
struct FrameBatch: @unchecked Sendable {
    struct Entry {
        var channel: String
        var offset: Int64
        var start: Int
        var length: Int
    }
    var buffer = ByteBufferAllocator().buffer(capacity: 0)
    var entries: [Entry] = []
    private var scratch: [JSONField] = []
    var partition: Int32 = 0
    /// The offset after the last message read (past skipped control records too).
    var next: Int64 = 0

    var isEmpty: Bool { entries.isEmpty }

    mutating func add(_ m: ChannelMessage) {
        // What a client published was checked; a record another writer put in the topic (a
        // pipeline, kcat) that is not JSON goes out as a JSON string, never as broken JSON.
        if (try? JSONIndex.scan(m.message, into: &scratch)) == nil {
            var quoted: [UInt8] = []
            JSON.serialize(.string(String(decoding: m.message, as: UTF8.self)), into: &quoted)
            quoted.withUnsafeBytes { add(ChannelMessage(offset: m.offset, channel: m.channel, message: $0)) }
            return
        }
        let channel = String(decoding: m.channel, as: UTF8.self)
        let start = buffer.writerIndex
        // Payload length: prefix + quoted channel + ,"data": + message + ,"offset": + digits + }}
        var quoted: [UInt8] = []
        JSON.serialize(.string(channel), into: &quoted)
        let offsetText = String(m.offset)
        let length = Self.prefix.count + quoted.count + Self.middle.count + m.message.count + Self.suffix.count + offsetText.utf8.count + 2
        writeHeader(length: length)
        buffer.writeBytes(Self.prefix)
        buffer.writeBytes(quoted)
        buffer.writeBytes(Self.middle)
        buffer.writeBytes(m.message)
        buffer.writeBytes(Self.suffix)
        buffer.writeString(offsetText)
        buffer.writeBytes(Self.close)
        entries.append(Entry(channel: channel, offset: m.offset, start: start, length: buffer.writerIndex - start))
    }

    private mutating func writeHeader(length: Int) {
        buffer.writeInteger(UInt8(0x81))
        if length < 126 {
            buffer.writeInteger(UInt8(length))
        } else if length <= 0xFFFF {
            buffer.writeInteger(UInt8(126))
            buffer.writeInteger(UInt16(length))
        } else {
            buffer.writeInteger(UInt8(127))
            buffer.writeInteger(UInt64(length))
        }
    }

    mutating func seal(partition: Int32, next: Int64) -> FrameBatch {
        self.partition = partition
        self.next = next
        return self
    }

    func frame(_ e: Entry) -> ByteBuffer { buffer.getSlice(at: e.start, length: e.length)! }

    private static let prefix = Array(##"{"event":"#publish","data":{"channel":"##.utf8)
    private static let middle = Array(#","data":"#.utf8)
    private static let suffix = Array(#","offset":"#.utf8)
    private static let close = Array("}}".utf8)
}

/// Appends one partition's publishes: whoever finds the appender idle drains what has queued
/// meanwhile, one batch per round, off the event loops.
final class Appender: Sendable {
    typealias Done = @Sendable (Result<Int64, any Error>) -> Void
    private struct State {
        var pending: [(channel: String, message: [UInt8], done: Done)] = []
        var draining = false
    }
    private let state = Mutex(State())
    let log: any ChannelLog
    let partition: Int32

    init(log: any ChannelLog, partition: Int32) {
        self.log = log
        self.partition = partition
    }

    /// Publishes waiting for one partition at most; beyond, a publish is refused.
    static let maxPending = 100_000

    func enqueue(_ channel: String, _ message: [UInt8], _ done: @escaping Done) {
        let start = state.withLock { s -> Bool? in
            if s.pending.count >= Self.maxPending { return nil }
            s.pending.append((channel, message, done))
            if s.draining { return false }
            s.draining = true
            return true
        }
        switch start {
        case nil: done(.failure(GatewayError("\(Self.maxPending) messages are already waiting for partition \(partition) of \(log.name); try again")))
        case true?: Task { await self.drain() }
        case false?: break
        }
    }

    private func drain() async {
        while true {
            let batch = state.withLock { s -> [(channel: String, message: [UInt8], done: Done)] in
                defer { s.pending.removeAll(keepingCapacity: true) }
                if s.pending.isEmpty { s.draining = false }
                return s.pending
            }
            if batch.isEmpty { return }
            do {
                let base = try await log.append(partition: partition, batch.map { ($0.channel, $0.message) })
                // -1: the log does not tell offsets (a Kafka cluster's producer).
                for (i, b) in batch.enumerated() { b.done(.success(base < 0 ? -1 : base + Int64(i))) }
            } catch {
                for b in batch { b.done(.failure(error)) }
            }
        }
    }
}
