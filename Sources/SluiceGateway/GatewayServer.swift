// GatewayServer: the gateway's port. One HTTP/1.1 listener on every loop of its event loop
// group: requests for the WebSocket path upgrade to a SocketCluster socket; the rest is a
// small HTTP API (presence, publishing) and, when configured, static files (the chat page).
import Crypto
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import SluiceComponents

public struct GatewayServer: Sendable {
    public let hub: ChannelHub
    public let host: String
    public let port: Int
    public let loops: EventLoopGroup
    let logger: Logger

    public init(hub: ChannelHub, host: String, port: Int, loops: EventLoopGroup, logger: Logger) {
        self.hub = hub
        self.host = host
        self.port = port
        self.loops = loops
        self.logger = logger
    }

    /// Listens (and tails the channel topic) until the task is cancelled; `bound` is told the
    /// port. On cancellation every socket is closed with 1001.
    public func run(bound: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        let hub = self.hub, logger = self.logger
        let server = try await ServerBootstrap(group: loops)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: hub.config.outboundBufferBytes / 2, high: hub.config.outboundBufferBytes))
            .childChannelInitializer { channel in
                let http = HTTPHandler(hub: hub, logger: logger)
                let upgrader = SocketClusterUpgrader(hub: hub, logger: logger)
                return channel.pipeline.configureHTTPServerPipeline(withServerUpgrade: (upgraders: [upgrader], completionHandler: { context in
                    _ = context.pipeline.removeHandler(name: "sluice.http")
                })).flatMap {
                    channel.pipeline.addHandler(http, name: "sluice.http")
                }
            }
            .bind(host: host, port: port).get()
        let actual = server.localAddress?.port ?? port
        bound(actual)
        logger.notice("gateway: WebSocket on \(host):\(actual)\(hub.config.path)")
        // Tails until cancelled; then every socket gets its 1001 before the port closes.
        do { try await hub.run() } catch where !(error is CancellationError) && !Task.isCancelled { logger.error("gateway: \(error)") } catch {}
        let sockets = await hub.connectionCount()
        try? await server.close()
        await hub.closeAll()
        // Clients answer the close frame and hang up; give them up to two seconds, so none is
        // reset before it has read its 1001.
        for _ in 0..<100 where await hub.connectionCount() > 0 { try? await Task.sleep(for: .milliseconds(20)) }
        logger.info("gateway: closed \(sockets) socket\(sockets == 1 ? "" : "s") with 1001")
    }
}

/// The WebSocket upgrade for the gateway's path: the handshake's accept key, then the frame
/// decoder (with the size limit), fragment reassembly and the socket.
final class SocketClusterUpgrader: HTTPServerProtocolUpgrader, Sendable {
    let hub: ChannelHub
    let logger: Logger
    let supportedProtocol = "websocket"
    let requiredUpgradeHeaders: [String] = []

    init(hub: ChannelHub, logger: Logger) {
        self.hub = hub
        self.logger = logger
    }

    func buildUpgradeResponse(channel: Channel, upgradeRequest: HTTPRequestHead, initialResponseHeaders: HTTPHeaders) -> EventLoopFuture<HTTPHeaders> {
        let path = String(upgradeRequest.uri.prefix { $0 != "?" })
        let wanted = hub.config.path
        guard path == wanted || path + "/" == wanted,
              upgradeRequest.headers.first(name: "sec-websocket-version") == "13",
              let key = upgradeRequest.headers.first(name: "sec-websocket-key") else {
            return channel.eventLoop.makeFailedFuture(NIOWebSocketUpgradeError.unsupportedWebSocketTarget)
        }
        var h = initialResponseHeaders
        let digest = Insecure.SHA1.hash(data: Array((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").utf8))
        h.add(name: "Sec-WebSocket-Accept", value: Data(digest).base64EncodedString())
        return channel.eventLoop.makeSucceededFuture(h)
    }

    func upgrade(context: ChannelHandlerContext, upgradeRequest: HTTPRequestHead) -> EventLoopFuture<Void> {
        let channel = context.channel
        let config = hub.config
        var bearer: VerifiedToken?
        if let header = upgradeRequest.headers.first(name: "authorization"), header.lowercased().hasPrefix("bearer ") {
            if case .success(let t) = hub.auth.verify(String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces)) { bearer = t }
        }
        let peer = channel.remoteAddress.flatMap { a in a.ipAddress.map { "\($0):\(a.port ?? 0)" } } ?? "an unknown peer"
        let socket = GatewaySocket(hub: hub, shard: hub.shard(for: channel.eventLoop), peer: peer, bearer: bearer, logger: logger)
        return channel.eventLoop.makeCompletedFuture {
            let ops = channel.pipeline.syncOperations
            try ops.addHandler(ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: config.maxFrameBytes)))
            try ops.addHandler(NIOWebSocketFrameAggregator(minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 1024, maxAccumulatedFrameSize: config.maxFrameBytes))
            try ops.addHandler(socket)
        }
    }
}

/// Requests that are not a WebSocket upgrade:
/// - `GET /channels`: presence, `{"channel": subscriber count, …}`
/// - `GET /channels/NAME`: `{"channel":NAME,"subscribers":[socket ids]}`
/// - `POST /channels/NAME`: publish the body (JSON) to NAME; answers `{"published":true,"offset":N}`
/// - anything else under the static directory, `/` being `index.html`.
final class HTTPHandler: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let hub: ChannelHub
    let logger: Logger
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()
    /// The request's body went over the limit: answered 413, the rest of it ignored.
    private var rejected = false
    private var context: ChannelHandlerContext?

    init(hub: ChannelHub, logger: Logger) {
        self.hub = hub
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body.clear()
            rejected = false
        case .body(var b):
            if rejected { return }
            if body.readableBytes + b.readableBytes > hub.config.maxMessageBytes {
                rejected = true
                body.clear()
                return
            }
            body.writeBuffer(&b)
        case .end:
            if rejected {
                rejected = false
                head = nil
                respond(413, json: #"{"error":"the body is over the \#(hub.config.maxMessageBytes)-byte limit"}"#)
                return
            }
            guard let h = head else { return }
            head = nil
            route(h, Array(body.readableBytesView))
        }
    }

    private func route(_ h: HTTPRequestHead, _ body: [UInt8]) {
        let path = String(h.uri.prefix { $0 != "?" })
        let loop = context!.eventLoop
        let hub = self.hub
        if path == "/channels" && h.method == .GET {
            Task {
                let p = await hub.presence()
                var o = ValueObject()
                for k in p.keys.sorted() { o[k] = .int(Int64(p[k]!.count)) }
                let text = String(decoding: JSON.serialize(.object(o)), as: UTF8.self)
                loop.execute { self.respond(200, json: text) }
            }
            return
        }
        if path.hasPrefix("/channels/") {
            let name = String(path.dropFirst("/channels/".count)).removingPercentEncoding ?? ""
            guard !name.isEmpty else { respond(404, json: #"{"error":"no channel named"}"#); return }
            switch h.method {
            case .GET:
                Task {
                    let ids = await hub.presence()[name] ?? []
                    let text = String(decoding: JSON.serialize(.object(["channel": .string(name), "subscribers": .array(ids.map { .string($0) })])), as: UTF8.self)
                    loop.execute { self.respond(200, json: text) }
                }
            case .POST:
                guard (try? JSON.parse(body)) != nil else { respond(400, json: #"{"error":"the body is not JSON"}"#); return }
                Task {
                    do {
                        // The offset when the log tells it (a Kafka cluster's producer does not).
                        let offset = try await hub.publish(channel: name, message: body)
                        loop.execute { self.respond(200, json: offset >= 0 ? #"{"published":true,"offset":\#(offset)}"# : #"{"published":true}"#) }
                    } catch {
                        let text = String(decoding: JSON.serialize(.object(["error": .string("\(error)")])), as: UTF8.self)
                        loop.execute { self.respond(503, json: text) }
                    }
                }
            default:
                respond(405, json: #"{"error":"use GET or POST"}"#)
            }
            return
        }
        guard h.method == .GET, let root = hub.config.staticDirectory else {
            respond(404, json: #"{"error":"not found"}"#)
            return
        }
        // Decoded first, then checked: "%2e%2e" must not climb out of the directory either.
        let relative = path == "/" ? "index.html" : String(path.dropFirst())
        guard let decoded = relative.removingPercentEncoding, !decoded.contains("\u{0}"),
              !decoded.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }) else {
            respond(404, json: #"{"error":"not found"}"#)
            return
        }
        let file = URL(fileURLWithPath: root + "/" + decoded).standardizedFileURL.path
        guard file.hasPrefix(root + "/") else {
            respond(404, json: #"{"error":"not found"}"#)
            return
        }
        NIOThreadPool.singleton.runIfActive(eventLoop: loop) { () throws -> [UInt8] in
            Array(try Data(contentsOf: URL(fileURLWithPath: file)))
        }.whenComplete { result in
            switch result {
            case .success(let bytes): self.respond(200, type: Self.contentType(file), bytes)
            case .failure: self.respond(404, json: #"{"error":"not found"}"#)
            }
        }
    }

    static func contentType(_ file: String) -> String {
        if file.hasSuffix(".html") { return "text/html; charset=utf-8" }
        if file.hasSuffix(".js") { return "text/javascript; charset=utf-8" }
        if file.hasSuffix(".css") { return "text/css; charset=utf-8" }
        if file.hasSuffix(".json") { return "application/json" }
        if file.hasSuffix(".png") { return "image/png" }
        if file.hasSuffix(".svg") { return "image/svg+xml" }
        return "application/octet-stream"
    }

    private func respond(_ status: Int, json: String) {
        respond(status, type: "application/json", Array(json.utf8))
    }

    private func respond(_ status: Int, type: String, _ bytes: [UInt8]) {
        guard let context else { return }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: type)
        headers.add(name: "Content-Length", value: String(bytes.count))
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status), headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: bytes)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
}
