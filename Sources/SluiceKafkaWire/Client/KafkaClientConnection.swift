// One client connection to a Kafka-protocol broker, for the few requests Sluice sends itself
// (share groups, which this build's librdkafka does not speak). Requests are framed with
// header v1 or v2 and matched to responses by correlation id; a broker answers a
// connection's requests in order. A dropped connection, a malformed or oversized response,
// or a request not answered in time fails with a sentence naming the broker.
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Why a request to a broker failed.
public struct KafkaClientError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Routes each response frame to the request waiting for its correlation id.
final class ResponseRouter: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer

    private struct State {
        var waiting: [Int32: CheckedContinuation<[UInt8], any Error>] = [:]
        var failure: String?
    }
    private let state = Mutex(State())
    let peer: String

    init(peer: String) { self.peer = peer }

    /// Registers a request's continuation, or fails it at once when the connection is gone.
    func wait(_ correlation: Int32, _ continuation: CheckedContinuation<[UInt8], any Error>) {
        let failure = state.withLock { s -> String? in
            if let f = s.failure { return f }
            s.waiting[correlation] = continuation
            return nil
        }
        if let failure { continuation.resume(throwing: KafkaClientError(failure)) }
    }

    /// Fails one request (its write failed, or it timed out) if it is still waiting.
    func fail(_ correlation: Int32, _ why: String) {
        state.withLock { $0.waiting.removeValue(forKey: correlation) }?.resume(throwing: KafkaClientError(why))
    }

    /// Fails every waiting request and any later one.
    func failAll(_ why: String) {
        let waiting = state.withLock { s -> [CheckedContinuation<[UInt8], any Error>] in
            if s.failure == nil { s.failure = why }
            defer { s.waiting = [:] }
            return Array(s.waiting.values)
        }
        for c in waiting { c.resume(throwing: KafkaClientError(why)) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var frame = unwrapInboundIn(data)
        guard let correlation = frame.readInteger(as: Int32.self) else {
            failAll("broker \(peer) sent a response too short to hold a correlation id")
            context.close(promise: nil)
            return
        }
        let bytes = Array(frame.readableBytesView)
        guard let c = state.withLock({ $0.waiting.removeValue(forKey: correlation) }) else {
            failAll("broker \(peer) answered correlation id \(correlation), which no request is waiting for")
            context.close(promise: nil)
            return
        }
        c.resume(returning: bytes)
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll("the connection to broker \(peer) closed")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll("the connection to broker \(peer) failed: \(error)")
        context.close(promise: nil)
    }
}

public final class KafkaClientConnection: Sendable {
    public let peer: String
    public let clientId: String
    private let channel: any Channel
    private let router: ResponseRouter
    private let correlation = Atomic<Int32>(0)

    private init(peer: String, clientId: String, channel: any Channel, router: ResponseRouter) {
        self.peer = peer
        self.clientId = clientId
        self.channel = channel
        self.router = router
    }

    /// Connects to `host:port`. Responses over `maxResponseBytes` close the connection.
    public static func connect(host: String, port: Int, clientId: String, maxResponseBytes: Int = 256 << 20, timeout: Duration = .seconds(10)) async throws -> KafkaClientConnection {
        let peer = "\(host):\(port)"
        let router = ResponseRouter(peer: peer)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .connectTimeout(.milliseconds(timeout.components.seconds * 1000))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(maxBytes: maxResponseBytes)))
                        try channel.pipeline.syncOperations.addHandler(router)
                    }
                }
                .connect(host: host, port: port).get()
        } catch {
            throw KafkaClientError("cannot connect to broker \(peer): \(error)")
        }
        return KafkaClientConnection(peer: peer, clientId: clientId, channel: channel, router: router)
    }

    /// Sends `request` at `version` and returns the broker's response.
    public func send<R: KafkaRequestMessage>(_ request: R, version: Int16, timeout: Duration = .seconds(60)) async throws -> R.Response {
        let id = correlation.add(1, ordering: .relaxed).newValue
        let flexible = R.isFlexible(version)
        var w = KafkaWriter(capacity: 512)
        w.int32(0)  // the size, filled in below
        w.int16(R.apiKey)
        w.int16(version)
        w.int32(id)
        w.string(clientId)  // the header's client id is always an int16-length string
        if flexible { w.bytes.append(0) }  // no tagged fields
        var body = KafkaWriter(capacity: 256, flexible: flexible)
        request.encode(to: &body, version: version)
        w.bytes += body.bytes
        let size = UInt32(w.bytes.count - 4)
        for i in 0..<4 { w.bytes[i] = UInt8((size >> UInt32(24 - 8 * i)) & 0xff) }
        let frame = ByteBuffer(bytes: w.bytes)
        let router = self.router, channel = self.channel, peer = self.peer
        let name = ApiKey(rawValue: R.apiKey).map { "\($0)" } ?? "api \(R.apiKey)"
        var timer: Scheduled<Void>?
        let nanos = Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000
        let answer: Result<[UInt8], any Error>
        do {
            answer = .success(try await withCheckedThrowingContinuation { (c: CheckedContinuation<[UInt8], any Error>) in
                router.wait(id, c)
                channel.writeAndFlush(frame).whenFailure { error in router.fail(id, "sending \(name) to broker \(peer) failed: \(error)") }
                timer = channel.eventLoop.scheduleTask(in: .nanoseconds(nanos)) {
                    router.fail(id, "broker \(peer) did not answer \(name) within \(timeout)")
                }
            })
        } catch {
            answer = .failure(error)
        }
        timer?.cancel()
        let bytes = try answer.get()
        // Response header v1 (tagged fields) for flexible versions, except ApiVersions'.
        var r = KafkaReader(bytes, flexible: flexible)
        do {
            if flexible && R.apiKey != ApiKey.apiVersions.rawValue { try r.taggedFields() }
            return try R.Response(from: &r, version: version)
        } catch {
            throw KafkaClientError("broker \(peer) sent a malformed \(name) v\(version) response: \(error)")
        }
    }

    public func close() async {
        try? await channel.close()
    }
}
