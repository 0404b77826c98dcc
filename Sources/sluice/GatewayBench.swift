// sluice bench gateway: the SocketCluster gateway (`sluice serve --ws`, a child process)
// under load from this process's own WebSocket clients, against Redis pub/sub (redis-server,
// when installed) doing the same work in the same run:
//   fanout:  S subscribers on one channel, one publisher sending M messages as fast as it
//            can; deliveries per second until every subscriber has every message
//   idle:    C connections opened and handshaken, held; the server's resident memory grown,
//            per connection
//   latency: R messages per second published for D seconds to a channel with a few
//            subscribers; publish → deliver latency percentiles (one clock: this process
//            both publishes and receives)
// The clients speak just enough of WebSocket and SocketCluster (or RESP for Redis): they
// answer pings, count deliveries and read a timestamp from each message.
import ArgumentParser
import Foundation
import Histogram
import NIOCore
import NIOPosix
import Synchronization

struct GatewayBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "WebSocket fan-out, idle connections and publish→deliver latency of sluice serve --ws, against Redis pub/sub in the same run."
    )

    @Option(help: "Scratch directory (deleted afterwards).") var dir: String?
    @Option(help: "Subscribers for the fan-out.") var subscribers: Int = 1_000
    @Option(help: "Messages published in the fan-out.") var messages: Int = 2_000
    @Option(help: "Bytes of each message's padding.") var size: Int = 64
    @Option(help: "Idle connections held.") var connections: Int = 10_000
    @Option(help: "Messages per second in the latency run.") var rate: Int = 10_000
    @Option(help: "Seconds of the latency run.") var seconds: Int = 5
    @Option(help: "Subscribers in the latency run.") var latencySubscribers: Int = 10
    @Option(help: "Event loops of the gateway (--ws-threads).") var threads: Int = System.coreCount
    @Option(help: "Which runs: fanout, idle, latency (comma-separated).") var runs: String = "fanout,idle,latency"
    @Flag(help: "Skip the Redis runs even when redis-server is installed.") var noRedis = false
    @Option(help: "Load another SocketCluster server at ws://127.0.0.1:PORT/socketcluster/ instead of starting sluice serve (no Redis runs).") var url: String?
    @Option(help: "With --url: the server's pid, for the idle run's memory.") var pid: Int32?

    func run() async throws {
        let base = dir ?? (FileManager.default.currentDirectoryPath + "/.sluice-bench-gateway-\(getpid())")
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: base) }
        #if DEBUG
        emit("note: this is a debug build; build with -c release for real figures")
        #endif
        let exe = try Child.executablePath()
        var serve: Process?
        defer { serve?.terminate(); serve?.waitUntilExit() }
        let port: Int
        let serverPid: Int32
        if let url {
            guard let m = url.firstMatch(of: /^ws:\/\/127\.0\.0\.1:(\d+)\/socketcluster\/$/), let p = Int(m.1) else { throw ValidationError("--url must be ws://127.0.0.1:PORT/socketcluster/") }
            port = p
            serverPid = pid ?? 0
        } else {
            let s = try ServeProcess.background(exe, ["serve", "--kafka", "127.0.0.1:0", "--ws", "127.0.0.1:0", "--ws-threads", "\(threads)", "--ws-rate", "10000000",
                                                      "--ws-buffer", "16MiB", "--data", base + "/data"], log: base + "/serve.log")
            serve = s
            port = try ServeProcess.waitFor(/WebSocket gateway on ws:\/\/127\.0\.0\.1:(\d+)/, log: base + "/serve.log", what: "its WebSocket gateway")
            serverPid = s.processIdentifier
        }
        var redis: (Process, Int)?
        if url == nil, !noRedis, let path = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) {
            let rport = Self.freePort()
            let p = try ServeProcess.background(path, ["--port", "\(rport)", "--save", "", "--appendonly", "no", "--maxclients", "\(connections + 100)", "--client-output-buffer-limit", "pubsub 0 0 0"], log: base + "/redis.log")
            redis = (p, rport)
            usleep(300_000)
        } else if url == nil, !noRedis {
            emit("note: redis-server is not installed (apt-get install redis-server): the runs have no peer")
        }
        // SIGKILL: the child inherits this process's blocked signals, and redis-server does not
        // unblock SIGTERM (it keeps nothing on disk here).
        defer { if let (p, _) = redis { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        emit("sluice bench gateway: \(url ?? "gateway on port \(port) with \(threads) event loops"), pid \(serverPid)\(redis.map { ", redis-server on port \($0.1)" } ?? "")")
        let loops = MultiThreadedEventLoopGroup.singleton
        let wanted = Set(runs.split(separator: ",").map(String.init))
        let name = url == nil ? "sluice" : "the server"
        if wanted.contains("fanout") {
            let s = try await fanout(.sluice(port), loops)
            var line = String(format: "fanout: %d subscribers × %d messages of %d bytes: ", subscribers, messages, size) + name + String(format: " %.0f deliveries/s", s)
            if let (_, rport) = redis {
                let r = try await fanout(.redis(rport), loops)
                line += String(format: ", redis pub/sub %.0f deliveries/s (sluice/redis %.2f×)", r, s / r)
            }
            emit(line)
        }
        if wanted.contains("idle") {
            let s = try await idle(.sluice(port), pid: serverPid, loops)
            var line = String(format: "idle: %d connections: ", connections) + name + String(format: " %.1f KiB each", s)
            if let (p, rport) = redis {
                let r = try await idle(.redis(rport), pid: p.processIdentifier, loops)
                line += String(format: ", redis %.1f KiB each (sluice/redis %.2f×)", r, s / r)
            }
            emit(line)
        }
        if wanted.contains("latency") {
            let s = try await latency(.sluice(port), loops)
            var line = String(format: "latency: %d messages/s for %d s to %d subscribers: ", rate, seconds, latencySubscribers) + name + String(format: " p50 %.2f ms, p99 %.2f ms, max %.2f ms", s.p50, s.p99, s.max)
            if let (_, rport) = redis {
                let r = try await latency(.redis(rport), loops)
                line += String(format: "; redis p50 %.2f ms, p99 %.2f ms, max %.2f ms (p99 sluice/redis %.2f×)", r.p50, r.p99, r.max, s.p99 / r.p99)
            }
            emit(line)
        }
    }

    // MARK: Runs

    func fanout(_ target: LoadTarget, _ loops: EventLoopGroup) async throws -> Double {
        let stats = LoadStats()
        let subs = try await LoadClient.connect(target, count: subscribers, channel: "fan", stats: stats, loops: loops)
        defer { for s in subs { s.close() } }
        try await stats.waitSubscribed(subscribers)
        let publisher = try await LoadClient.connect(target, count: 1, channel: nil, stats: stats, loops: loops)[0]
        defer { publisher.close() }
        try await stats.waitSubscribed(subscribers + 1)
        let start = ContinuousClock.now
        let pad = String(repeating: "x", count: size)
        var sent = 0
        while sent < messages {
            let n = min(100, messages - sent)
            publisher.publish(channel: "fan", messages: (sent..<(sent + n)).map { "{\"n\":\($0),\"pad\":\"\(pad)\"}" })
            sent += n
            // Keep the publisher's own socket from running far ahead of the fan-out.
            while stats.deliveries.load(ordering: .relaxed) < (sent - 1_000) * subscribers { try await Task.sleep(for: .microseconds(200)) }
        }
        let total = subscribers * messages
        let deadline = ContinuousClock.now + .seconds(120)
        while stats.deliveries.load(ordering: .relaxed) < total {
            guard ContinuousClock.now < deadline else { throw CLIError.runtime("fanout: \(stats.deliveries.load(ordering: .relaxed)) of \(total) deliveries after 120 s") }
            try await Task.sleep(for: .milliseconds(1))
        }
        let elapsed = ContinuousClock.now - start
        let s = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return Double(total) / s
    }

    func idle(_ target: LoadTarget, pid: Int32, _ loops: EventLoopGroup) async throws -> Double {
        let stats = LoadStats()
        usleep(500_000)
        let before = Self.residentKiB(pid)
        var all: [LoadClient] = []
        defer { for c in all { c.close() } }
        var opened = 0
        while opened < connections {
            let n = min(500, connections - opened)
            all += try await LoadClient.connect(target, count: n, channel: nil, stats: stats, loops: loops)
            opened += n
            try await stats.waitSubscribed(opened)
        }
        usleep(1_000_000)
        let after = Self.residentKiB(pid)
        return Double(after - before) / Double(connections)
    }

    func latency(_ target: LoadTarget, _ loops: EventLoopGroup) async throws -> (p50: Double, p99: Double, max: Double) {
        let stats = LoadStats(recordLatency: true)
        let subs = try await LoadClient.connect(target, count: latencySubscribers, channel: "live", stats: stats, loops: loops)
        defer { for s in subs { s.close() } }
        try await stats.waitSubscribed(latencySubscribers)
        let publisher = try await LoadClient.connect(target, count: 1, channel: nil, stats: stats, loops: loops)[0]
        defer { publisher.close() }
        try await stats.waitSubscribed(latencySubscribers + 1)
        // Ten messages every millisecond, each stamped with the time it is sent.
        let perTick = max(1, rate / 1000)
        let ticks = seconds * 1000
        let start = ContinuousClock.now
        var n = 0
        for tick in 0..<ticks {
            let due = start + .milliseconds(tick)
            let now = ContinuousClock.now
            if due > now { try await Task.sleep(until: due) }
            var batch: [String] = []
            for _ in 0..<perTick {
                batch.append("{\"n\":\(n),\"t\":\(LoadClient.monotonicNanos())}")
                n += 1
            }
            publisher.publish(channel: "live", messages: batch)
        }
        let total = n * latencySubscribers
        let deadline = ContinuousClock.now + .seconds(30)
        while stats.deliveries.load(ordering: .relaxed) < total, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        let h = stats.histogram()
        guard h.totalCount > 0 else { throw CLIError.runtime("latency: no deliveries") }
        return (Double(h.valueAtPercentile(50)) / 1000, Double(h.valueAtPercentile(99)) / 1000, Double(h.max) / 1000)
    }

    // MARK: Helpers

    static func residentKiB(_ pid: Int32) -> Int {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return 0 }
        return Int(line.split(separator: " ")[1]) ?? 0
    }

    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}

enum LoadTarget {
    case sluice(Int)
    case redis(Int)

    var port: Int {
        switch self {
        case .sluice(let p), .redis(let p): return p
        }
    }
}

/// Counters shared by every load client.
final class LoadStats: Sendable {
    let deliveries = Atomic<Int>(0)
    let subscribed = Atomic<Int>(0)
    let recordLatency: Bool
    private let latencies = Mutex<Histogram<UInt64>>(Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three))

    init(recordLatency: Bool = false) { self.recordLatency = recordLatency }

    func record(_ sentNanos: UInt64) {
        let now = LoadClient.monotonicNanos()
        let micros = now > sentNanos ? (now - sentNanos) / 1000 : 0
        latencies.withLock { _ = $0.record(micros) }
    }

    func histogram() -> Histogram<UInt64> { latencies.withLock { $0 } }

    func waitSubscribed(_ n: Int) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while subscribed.load(ordering: .relaxed) < n {
            guard ContinuousClock.now < deadline else { throw CLIError.runtime("only \(subscribed.load(ordering: .relaxed)) of \(n) load clients got ready within 60 s") }
            try await Task.sleep(for: .milliseconds(2))
        }
    }
}

/// One load connection: a WebSocket SocketCluster client, or a RESP client of Redis.
final class LoadClient: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let target: LoadTarget
    let channelName: String?
    let stats: LoadStats
    private var channel: Channel?
    private var upgraded = false
    private var buffer = ByteBuffer()
    private var cid = 0

    init(target: LoadTarget, channel: String?, stats: LoadStats) {
        self.target = target
        self.channelName = channel
        self.stats = stats
    }

    static func connect(_ target: LoadTarget, count: Int, channel: String?, stats: LoadStats, loops: EventLoopGroup) async throws -> [LoadClient] {
        var out: [LoadClient] = []
        var futures: [EventLoopFuture<Channel>] = []
        for _ in 0..<count {
            let c = LoadClient(target: target, channel: channel, stats: stats)
            out.append(c)
            futures.append(ClientBootstrap(group: loops)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { ch in ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(c) } }
                .connect(host: "127.0.0.1", port: target.port))
        }
        for f in futures { _ = try await f.get() }
        return out
    }

    static func monotonicNanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    func close() { channel?.close(promise: nil) }

    func channelActive(context: ChannelHandlerContext) {
        channel = context.channel
        switch target {
        case .sluice(let port):
            let key = Data((0..<16).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
            send(context, Array("GET /socketcluster/ HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\n\r\n".utf8))
        case .redis:
            upgraded = true
            if let channelName {
                send(context, Array("SUBSCRIBE \(channelName)\r\n".utf8))
            } else {
                stats.subscribed.add(1, ordering: .relaxed)
            }
        }
    }

    /// Publishes messages in one frame (an array of transmits) or one pipelined write.
    func publish(channel name: String, messages: [String]) {
        guard let channel else { return }
        channel.eventLoop.execute {
            switch self.target {
            case .sluice:
                let packets = messages.map { "{\"event\":\"#publish\",\"data\":{\"channel\":\"\(name)\",\"data\":\($0)}}" }
                let frame = LoadClient.maskedText(Array(("[" + packets.joined(separator: ",") + "]").utf8))
                channel.writeAndFlush(frame, promise: nil)
            case .redis:
                var out = ByteBuffer()
                for m in messages {
                    let bytes = Array(m.utf8)
                    out.writeString("*3\r\n$7\r\nPUBLISH\r\n$\(name.utf8.count)\r\n\(name)\r\n$\(bytes.count)\r\n")
                    out.writeBytes(bytes)
                    out.writeString("\r\n")
                }
                channel.writeAndFlush(out, promise: nil)
            }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        buffer.writeBuffer(&incoming)
        switch target {
        case .sluice: readWebSocket(context)
        case .redis: readRESP()
        }
        if buffer.readerIndex > 65_536 { buffer.discardReadBytes() }
    }

    private func readWebSocket(_ context: ChannelHandlerContext) {
        if !upgraded {
            guard let end = buffer.readableBytesView.firstRange(of: Array("\r\n\r\n".utf8)) else { return }
            let head = String(decoding: buffer.readableBytesView[buffer.readableBytesView.startIndex..<end.lowerBound], as: UTF8.self)
            guard head.hasPrefix("HTTP/1.1 101") else { context.close(promise: nil); return }
            buffer.moveReaderIndex(forwardBy: end.upperBound - buffer.readableBytesView.startIndex)
            upgraded = true
            cid += 1
            send(context, Self.maskedText(Array("{\"event\":\"#handshake\",\"data\":{\"authToken\":null},\"cid\":\(cid)}".utf8)))
        }
        while let (opcode, payload) = nextFrame() {
            guard opcode == 1 else { continue }
            payload.withUnsafeReadableBytes { p in text(context, p) }
        }
    }

    private func text(_ context: ChannelHandlerContext, _ p: UnsafeRawBufferPointer) {
        if p.isEmpty {
            send(context, Self.maskedText([]))
            return
        }
        if p.count > 20, p[2] == UInt8(ascii: "e"), p[10] == UInt8(ascii: "#"), p[11] == UInt8(ascii: "p") {
            delivered(p)
            return
        }
        // A response: 1 is the handshake's, 2 the subscription's.
        if p.starts(with: Array("{\"rid\":1,".utf8)) {
            if let channelName {
                cid += 1
                send(context, Self.maskedText(Array("{\"event\":\"#subscribe\",\"data\":{\"channel\":\"\(channelName)\"},\"cid\":\(cid)}".utf8)))
            } else {
                stats.subscribed.add(1, ordering: .relaxed)
            }
        } else if p.starts(with: Array("{\"rid\":2}".utf8)) {
            stats.subscribed.add(1, ordering: .relaxed)
        }
    }

    private func delivered(_ p: UnsafeRawBufferPointer) {
        stats.deliveries.add(1, ordering: .relaxed)
        guard stats.recordLatency, let t = Self.number(after: Array("\"t\":".utf8), in: p) else { return }
        stats.record(t)
    }

    static func number(after key: [UInt8], in p: UnsafeRawBufferPointer) -> UInt64? {
        guard p.count > key.count else { return nil }
        var i = 0
        outer: while i + key.count < p.count {
            for j in 0..<key.count where p[i + j] != key[j] { i += 1; continue outer }
            var n: UInt64 = 0
            var k = i + key.count
            while k < p.count, p[k] >= 48, p[k] <= 57 { n = n * 10 + UInt64(p[k] - 48); k += 1 }
            return n
        }
        return nil
    }

    private func nextFrame() -> (UInt8, ByteBuffer)? {
        let r = buffer.readerIndex
        guard let b0 = buffer.getInteger(at: r, as: UInt8.self), let b1 = buffer.getInteger(at: r + 1, as: UInt8.self) else { return nil }
        var length = Int(b1 & 0x7F)
        var header = 2
        if length == 126 {
            guard let l = buffer.getInteger(at: r + 2, as: UInt16.self) else { return nil }
            length = Int(l); header = 4
        } else if length == 127 {
            guard let l = buffer.getInteger(at: r + 2, as: UInt64.self) else { return nil }
            length = Int(l); header = 10
        }
        guard buffer.readableBytes >= header + length else { return nil }
        let payload = buffer.getSlice(at: r + header, length: length)!
        buffer.moveReaderIndex(forwardBy: header + length)
        return (b0 & 0x0F, payload)
    }

    /// Counts Redis pub/sub pushes: `*3 $7 message $N channel $N payload`.
    private func readRESP() {
        while true {
            let view = buffer.readableBytesView
            guard let first = view.first else { return }
            if first == UInt8(ascii: "*") {
                // An array: its elements are bulk strings or integers, one per line pair.
                guard let parsed = Self.respArray(view) else { return }
                buffer.moveReaderIndex(forwardBy: parsed.length)
                if parsed.kind == "message" {
                    stats.deliveries.add(1, ordering: .relaxed)
                    if stats.recordLatency, let last = parsed.last {
                        last.withUnsafeBytes { p in if let t = Self.number(after: Array("\"t\":".utf8), in: p) { stats.record(t) } }
                    }
                } else if parsed.kind == "subscribe" {
                    stats.subscribed.add(1, ordering: .relaxed)
                }
            } else {
                // A simple line (+OK, :N from PUBLISH).
                guard let nl = view.firstIndex(of: 10) else { return }
                buffer.moveReaderIndex(forwardBy: nl - view.startIndex + 1)
            }
        }
    }

    static func respArray(_ v: ByteBufferView) -> (length: Int, kind: String, last: [UInt8]?)? {
        var i = v.startIndex
        func line() -> Substring? {
            guard let nl = v[i...].firstIndex(of: 10) else { return nil }
            let s = String(decoding: v[i..<(nl - 1)], as: UTF8.self)
            i = nl + 1
            return Substring(s)
        }
        guard let head = line(), let count = Int(head.dropFirst()) else { return nil }
        var kind = "", last: [UInt8]?
        for n in 0..<count {
            guard let h = line() else { return nil }
            if h.first == ":" { continue }
            guard let len = Int(h.dropFirst()), v.endIndex - i >= len + 2 else { return nil }
            let bytes = Array(v[i..<(i + len)])
            i += len + 2
            if n == 0 { kind = String(decoding: bytes, as: UTF8.self) }
            if n == count - 1 { last = bytes }
        }
        return (i - v.startIndex, kind, last)
    }

    private func send(_ context: ChannelHandlerContext, _ bytes: [UInt8]) {
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: bytes)), promise: nil)
    }

    private func send(_ context: ChannelHandlerContext, _ buffer: ByteBuffer) {
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    /// A client text frame (clients must mask).
    static func maskedText(_ payload: [UInt8]) -> ByteBuffer {
        var b = ByteBuffer()
        b.writeInteger(UInt8(0x81))
        if payload.count < 126 {
            b.writeInteger(UInt8(0x80 | payload.count))
        } else if payload.count <= 0xFFFF {
            b.writeInteger(UInt8(0x80 | 126))
            b.writeInteger(UInt16(payload.count))
        } else {
            b.writeInteger(UInt8(0x80 | 127))
            b.writeInteger(UInt64(payload.count))
        }
        let mask: [UInt8] = [0x37, 0xFA, 0x21, 0x3D]
        b.writeBytes(mask)
        b.writeBytes(payload.enumerated().map { $0.element ^ mask[$0.offset & 3] })
        return b
    }
}
