// The Kafka listener: SwiftNIO, length-prefixed frames, one request at a time per connection
// (so responses leave in request order, as Kafka's do), many connections at once. A frame
// over the size limit, a malformed request or an unknown API closes that connection with a
// log line naming the peer; other connections are not affected.
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import SluiceBroker
import Synchronization

/// Cuts the byte stream into frames; a size over the limit is an error (the connection closes).
struct FrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer
    let maxBytes: Int

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let size = buffer.getInteger(at: buffer.readerIndex, as: Int32.self) else { return .needMoreData }
        guard size >= 0, Int(size) <= maxBytes else {
            throw ProtocolViolation(description: "a frame of \(size) bytes is over the \(maxBytes)-byte limit")
        }
        guard buffer.readableBytes >= 4 + Int(size) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 4)
        context.fireChannelRead(wrapInboundOut(buffer.readSlice(length: Int(size))!))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }
}

/// Closes a connection that has been idle for the configured time.
final class CloseWhenIdle: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}

public struct KafkaListener: Sendable {
    public let handler: KafkaRequestHandler
    public let host: String
    public let port: Int
    public let idleTimeout: TimeAmount
    /// When set, connections speak TLS (Kafka's SSL and SASL_SSL security protocols).
    public let tls: NIOSSLContext?
    let logger: Logger

    public init(handler: KafkaRequestHandler, host: String, port: Int, idleTimeout: TimeAmount = .minutes(10), tls: NIOSSLContext? = nil, logger: Logger) {
        self.handler = handler
        self.host = host
        self.port = port
        self.idleTimeout = idleTimeout
        self.tls = tls
        self.logger = logger
    }

    /// A TLS server context from PEM files (certificate chain and private key).
    public static func tlsContext(certificate: String, key: String) throws -> NIOSSLContext {
        let chain = try NIOSSLCertificate.fromPEMFile(certificate).map { NIOSSLCertificateSource.certificate($0) }
        let configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
        return try NIOSSLContext(configuration: configuration)
    }

    /// Bytes of responses one connection may have made and not yet sent before its next
    /// request waits (one response larger than this still goes when nothing else is pending).
    public static let maxPendingResponseBytes = 64 << 20

    /// Listens until the task is cancelled; `bound` is told the port (useful with port 0).
    public func run(bound: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        let maxBytes = handler.config.maxRequestBytes
        let idle = idleTimeout
        let tls = self.tls
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: idle))
                    try channel.pipeline.syncOperations.addHandler(CloseWhenIdle())
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(maxBytes: maxBytes)))
                    return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        bound(server.channel.localAddress?.port ?? port)
        logger.notice("kafka listener on \(host):\(server.channel.localAddress?.port ?? port)")
        try await withThrowingDiscardingTaskGroup { group in
            try await server.executeThenClose { connections in
                for try await connection in connections {
                    group.addTask { await self.serve(connection) }
                }
            }
        }
    }

    /// Requests are handled one after another in arrival order; their responses go to a
    /// writer that sends them in the same order, each once what it acknowledges is durable.
    /// So acks=all produces pipeline: the next request is appended while the previous one
    /// waits for its group commit. A third task watches the channel: when it closes (the idle
    /// timeout, shutdown), a request still held open (a fetch long poll, a join waiting for a
    /// rebalance) is cancelled instead of waiting out its time.
    private func serve(_ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>) async {
        let peer = connection.channel.remoteAddress?.description ?? "an unknown peer"
        let channel = connection.channel
        enum Ended { case requests, responses, channel }
        do {
            try await connection.executeThenClose { inbound, outbound in
                let (responses, queue) = AsyncStream<KafkaRequestHandler.Response>.makeStream()
                // Answers made but not yet sent are bounded: a client that sends requests and
                // never reads holds at most about this many bytes of the broker's memory.
                let pending = PendingBytes(limit: Self.maxPendingResponseBytes)
                try await withThrowingTaskGroup(of: Ended.self) { group in
                    group.addTask {
                        for await response in responses {
                            try await response.waitUntilDurable()
                            try await outbound.write(ByteBuffer(bytes: response.bytes))
                            pending.release(response.bytes.count)
                        }
                        return .responses
                    }
                    group.addTask {
                        defer { queue.finish() }
                        var state = ConnectionState(peer: peer)
                        do {
                            requests: for try await frame in inbound {
                                let request = Array(frame.readableBytesView)
                                do {
                                    if let response = try await handler.respond(request, connection: &state) {
                                        await pending.reserve(response.bytes.count)
                                        if Task.isCancelled { break requests }
                                        queue.yield(response)
                                    }
                                    if state.sasl.closeAfterResponse {
                                        logger.warning("kafka: closing the connection from \(peer): authentication failed")
                                        break requests
                                    }
                                } catch let v as ProtocolViolation {
                                    logger.warning("kafka: closing the connection from \(peer): \(v)")
                                    // The frame itself, for a bug report (its start: a produce can be large).
                                    let hex = request.prefix(256).map { String($0, radix: 16).leftPadded(2) }.joined()
                                    logger.debug("kafka: the refused frame (\(request.count) bytes, hex\(request.count > 256 ? ", first 256" : "")): \(hex)")
                                    break requests
                                }
                            }
                        } catch {
                            // Share sessions end with the connection, however it ends.
                            await handler.connectionClosed(state)
                            throw error
                        }
                        await handler.connectionClosed(state)
                        return .requests
                    }
                    group.addTask {
                        await Self.waitUntilClosed(channel)
                        return .channel
                    }
                    // Requests ended (the peer closed its side, or a violation): the writer
                    // sends what is queued, then the watcher stops. The channel closed first:
                    // nothing can be answered any more, so everything stops.
                    while let ended = try await group.next() {
                        if ended == .responses || ended == .channel {
                            group.cancelAll()
                            break
                        }
                    }
                }
            }
        } catch let v as ProtocolViolation {
            logger.warning("kafka: closing the connection from \(peer): \(v)")
        } catch {
            logger.debug("kafka: connection from \(peer) ended: \(error)")
        }
    }

    /// Returns when the channel closes or the task is cancelled, whichever comes first.
    static func waitUntilClosed(_ channel: any Channel) async {
        let waiter = Mutex<(continuation: CheckedContinuation<Void, Never>?, done: Bool)>((nil, false))
        let finish: @Sendable () -> Void = {
            let c = waiter.withLock { w -> CheckedContinuation<Void, Never>? in
                w.done = true
                defer { w.continuation = nil }
                return w.continuation
            }
            c?.resume()
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let resumeNow = waiter.withLock { w -> Bool in
                    if w.done { return true }
                    w.continuation = c
                    return false
                }
                if resumeNow { c.resume() } else { channel.closeFuture.whenComplete { _ in finish() } }
            }
        } onCancel: {
            finish()
        }
    }
}

extension String {
    fileprivate func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}

/// The bytes of responses a connection has made but not yet sent. The request loop reserves
/// each response's size before queueing it and waits while more than `limit` are pending;
/// the writer releases them once sent. One reserver at a time (the connection's request loop).
final class PendingBytes: Sendable {
    private struct State {
        var pending = 0
        var waiter: (CheckedContinuation<Void, Never>, Int)?
        var cancelled = false
    }

    private let state = Mutex(State())
    let limit: Int

    init(limit: Int) { self.limit = limit }

    private func fits(_ n: Int, _ s: State) -> Bool { s.pending == 0 || s.pending + n <= limit || s.cancelled }

    /// Waits until `n` more bytes fit (or the task is cancelled), then counts them as pending.
    func reserve(_ n: Int) async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let go = state.withLock { s -> Bool in
                    if fits(n, s) { s.pending += n; return true }
                    s.waiter = (c, n)
                    return false
                }
                if go { c.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
                s.cancelled = true
                defer { s.waiter = nil }
                return s.waiter?.0
            }
            waiter?.resume()
        }
    }

    func release(_ n: Int) {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.pending -= n
            guard let (c, m) = s.waiter, fits(m, s) else { return nil }
            s.pending += m
            s.waiter = nil
            return c
        }
        waiter?.resume()
    }
}
