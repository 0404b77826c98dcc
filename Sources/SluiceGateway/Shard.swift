// Shard: the sockets of one event loop and the channels they are subscribed to. Everything
// here is touched only on that loop (deliveries arrive by `loop.execute`), so it needs no lock.
import NIOCore

final class Shard: @unchecked Sendable {
    let loop: EventLoop
    let config: GatewayConfig
    /// Per partition: the offset up to which messages have been handed to this shard.
    private(set) var delivered: [Int64]
    /// Subscribers that get messages as they come.
    private var live: [String: [GatewaySocket]] = [:]
    /// Subscribers still being sent a channel's history; their live messages are held.
    private var catching: [String: [GatewaySocket]] = [:]
    private(set) var sockets: [ObjectIdentifier: GatewaySocket] = [:]
    private var touched: [GatewaySocket] = []

    init(loop: EventLoop, delivered: [Int64], config: GatewayConfig) {
        self.loop = loop
        self.delivered = delivered
        self.config = config
    }

    // MARK: Sockets and subscriptions (on the loop)

    func add(_ s: GatewaySocket) { sockets[ObjectIdentifier(s)] = s }

    func remove(_ s: GatewaySocket) {
        sockets[ObjectIdentifier(s)] = nil
        for channel in s.channels.keys { unsubscribe(s, channel) }
    }

    func subscribeLive(_ s: GatewaySocket, _ channel: String) {
        live[channel, default: []].append(s)
    }

    func subscribeCatchingUp(_ s: GatewaySocket, _ channel: String) {
        catching[channel, default: []].append(s)
    }

    /// Moves a socket from catching up to live for `channel`.
    func caughtUp(_ s: GatewaySocket, _ channel: String) {
        drop(s, from: &catching, channel)
        subscribeLive(s, channel)
    }

    func unsubscribe(_ s: GatewaySocket, _ channel: String) {
        drop(s, from: &live, channel)
        drop(s, from: &catching, channel)
    }

    private func drop(_ s: GatewaySocket, from table: inout [String: [GatewaySocket]], _ channel: String) {
        guard let i = table[channel]?.firstIndex(where: { $0 === s }) else { return }
        // In place: a copy of the list per unsubscribe would make a mass disconnect quadratic.
        table[channel]!.swapAt(i, table[channel]!.count - 1)
        table[channel]!.removeLast()
        if table[channel]!.isEmpty { table[channel] = nil }
    }

    /// Subscriber counts by channel, for presence.
    func presence() -> [String: [String]] {
        var out: [String: [String]] = [:]
        for (channel, list) in live { out[channel, default: []] += list.map(\.socketId) }
        for (channel, list) in catching { out[channel, default: []] += list.map(\.socketId) }
        return out
    }

    // MARK: Delivery

    func deliver(_ batch: FrameBatch) {
        for e in batch.entries {
            if let subs = live[e.channel] {
                let frame = batch.frame(e)
                for s in subs where s.deliver(frame) { touched.append(s) }
            }
            if !catching.isEmpty, let subs = catching[e.channel] {
                let frame = batch.frame(e)
                for s in subs { s.hold(e.channel, frame, offset: e.offset) }
            }
        }
        delivered[Int(batch.partition)] = max(delivered[Int(batch.partition)], batch.next)
        for s in touched { s.flushDeliveries() }
        touched.removeAll(keepingCapacity: true)
    }

    // MARK: Timers

    /// Pings, pong timeouts and handshake timeouts, once a second for every socket.
    func sweep() async throws {
        while !Task.isCancelled {
            try await Task.sleep(for: .seconds(1))
            loop.execute {
                let now = NIODeadline.now()
                for s in self.sockets.values { s.tick(now) }
            }
        }
    }

    /// Closes every socket with 1001 (the server is stopping).
    func closeAll() {
        for s in sockets.values { s.close(code: GatewayCloseCode.goingAway, reason: "the server is shutting down") }
    }
}
