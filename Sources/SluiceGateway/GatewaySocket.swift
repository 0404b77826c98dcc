// GatewaySocket: one client's WebSocket, speaking SocketCluster. It lives on its channel's
// event loop and is touched only there: inbound frames, deliveries from its shard, timers.
//
// Limits, each answered so the client knows what happened and other sockets never notice:
// frames over the size limit close with 1009; text that starts as JSON but is not closes with
// 1007; a packet before the handshake with 4009; calls over the rate limit get a
// RateLimitError and a socket that keeps flooding is closed with 4429; a subscriber whose
// outbound buffer fills is closed with 4100 (or loses its oldest messages, by policy).
import Logging
import NIOCore
import NIOWebSocket
import SluiceComponents

final class GatewaySocket: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = ByteBuffer

    enum Phase { case awaitingHandshake, open, closing }

    struct Subscription {
        /// Live messages are held (or skipped) rather than written: the socket is in its
        /// shard's catching-up list.
        var catchingUp: Bool
        /// Which subscribe this is: a resume task of an earlier one (unsubscribed since)
        /// must not act on it.
        var generation: UInt64
        /// Live messages at or below this offset are not sent (the client has them): a
        /// `lastOffset` at or past what this gateway has delivered so far.
        var skipThrough: Int64 = -1
        /// Live messages that arrived while the history was being sent (copies: a slice would
        /// keep its whole batch's buffer alive).
        var held: [ByteBuffer] = []
    }

    let hub: ChannelHub
    let shard: Shard
    let config: GatewayConfig
    let peer: String
    let socketId: String
    let logger: Logger
    private var context: ChannelHandlerContext?
    private(set) var phase = Phase.awaitingHandshake
    private(set) var channels: [String: Subscription] = [:]
    private(set) var authToken: VerifiedToken?
    /// The token of the upgrade's `Authorization: Bearer` header, which stands until the
    /// client sends one of its own.
    private let bearer: VerifiedToken?
    private let openedAt: NIODeadline
    private var lastPong: NIODeadline
    private var nextPing: NIODeadline
    private var needsFlush = false
    /// drop-oldest: messages waiting for the socket to become writable again.
    private var overflow: [ByteBuffer] = []
    private var overflowHead = 0
    private var overflowBytes = 0
    private var dropped = 0
    private var tokens: Double
    private var lastRefill: NIODeadline
    private var overLimit = 0
    private var generations: UInt64 = 0
    /// Bytes held for catching-up channels, over all of them.
    private var heldBytes = 0
    private var refusalWindow = NIODeadline.uptimeNanoseconds(0)

    init(hub: ChannelHub, shard: Shard, peer: String, bearer: VerifiedToken? = nil, logger: Logger) {
        self.hub = hub
        self.shard = shard
        self.config = hub.config
        self.peer = peer
        self.logger = logger
        socketId = GatewaySocket.makeId()
        self.bearer = bearer
        let now = NIODeadline.now()
        openedAt = now
        lastPong = now
        nextPing = now + .milliseconds(Int64(hub.config.pingIntervalMs))
        tokens = Double(2 * hub.config.inboundPacketsPerSecond)
        lastRefill = now
    }

    static func makeId() -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        var g = SystemRandomNumberGenerator()
        return String(decoding: (0..<20).map { _ in alphabet[Int(g.next() % 64)] }, as: UTF8.self)
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        shard.add(self)
    }

    func channelInactive(context: ChannelHandlerContext) {
        phase = .closing
        shard.remove(self)
        channels.removeAll()
        overflow.removeAll()
        self.context = nil
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, overflowHead < overflow.count {
            for i in overflowHead..<overflow.count { context.write(wrapOutboundOut(overflow[i]), promise: nil) }
            overflow.removeAll(keepingCapacity: false)
            overflowHead = 0
            overflowBytes = 0
            context.flush()
        }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let e = error as? NIOWebSocketError {
            switch e {
            case .invalidFrameLength:
                close(code: GatewayCloseCode.tooBig, reason: "a frame over the \(config.maxFrameBytes)-byte limit")
            default:
                close(code: GatewayCloseCode.protocolError, reason: "WebSocket protocol error: \(e)")
            }
            logger.info("gateway: closing \(peer): \(e)")
            return
        }
        logger.info("gateway: closing \(peer): \(error)")
        close(code: GatewayCloseCode.protocolError, reason: "\(error)")
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard phase != .closing else { return }
        switch frame.opcode {
        case .text, .binary:
            let payload = frame.unmaskedData
            payload.withUnsafeReadableBytes { received($0) }
        case .ping:
            write(Frames.control(opcode: 0xA, payload: frame.unmaskedData))
            context.flush()
        case .connectionClose:
            var payload = frame.unmaskedData
            let code = payload.readInteger(as: UInt16.self) ?? SCCloseCode.normal.rawValue
            close(code: code, reason: "")
        case .pong:
            break
        default:
            close(code: GatewayCloseCode.protocolError, reason: "unexpected opcode \(frame.opcode)")
        }
    }

    // MARK: Packets

    private func received(_ bytes: UnsafeRawBufferPointer) {
        let packets = SCDecoder.decode(bytes)
        if packets.count == 1, case .raw = packets[0], Self.looksLikeJSON(bytes) {
            var reason = "invalid JSON"
            do { _ = try JSON.parse(bytes) } catch { reason = "invalid JSON: \(error)" }
            logger.info("gateway: closing \(peer): \(reason)")
            close(code: GatewayCloseCode.invalidPayload, reason: reason)
            return
        }
        for packet in packets {
            if phase == .closing { return }
            if case .pong = packet {
                lastPong = NIODeadline.now()
                continue
            }
            guard admit(packet) else { continue }
            switch packet {
            case .event(let e): event(e)
            case .ping: write(Frames.text("#2")); context?.flush()
            case .response, .raw:
                // Strict handshake, as SocketCluster 15+: nothing but #handshake comes first.
                if phase == .awaitingHandshake { close(code: SCCloseCode.packetBeforeHandshake.rawValue, reason: "a packet before #handshake") }
            case .pong: break
            }
        }
        context?.flush()
    }

    /// The rate limit: a bucket of 2× the rate, refilled continuously.
    private func admit(_ packet: SCPacket) -> Bool {
        let now = NIODeadline.now()
        let rate = Double(config.inboundPacketsPerSecond)
        tokens = min(2 * rate, tokens + Double((now - lastRefill).nanoseconds) / 1e9 * rate)
        lastRefill = now
        if tokens >= 1 {
            tokens -= 1
            return true
        }
        // More refusals than the rate within one second: the client ignores the errors.
        if now - refusalWindow > .seconds(1) {
            refusalWindow = now
            overLimit = 0
        }
        overLimit += 1
        if overLimit > config.inboundPacketsPerSecond {
            logger.info("gateway: closing \(peer): over \(config.inboundPacketsPerSecond) packets/s")
            close(code: GatewayCloseCode.rateLimited, reason: "over the limit of \(config.inboundPacketsPerSecond) packets per second")
            return false
        }
        if case .event(let e) = packet, let cid = e.cid {
            reply(cid, error: SCError(name: "RateLimitError", message: "over the limit of \(config.inboundPacketsPerSecond) packets per second; slow down"))
        }
        return false
    }

    private func event(_ e: SCEvent) {
        if phase == .awaitingHandshake {
            guard e.name == "#handshake" else {
                close(code: SCCloseCode.packetBeforeHandshake.rawValue, reason: "'\(e.name)' before #handshake")
                return
            }
            guard let cid = e.cid else {
                close(code: SCCloseCode.handshakeRejected.rawValue, reason: "a #handshake without a numeric cid")
                return
            }
            handshake(cid: cid, token: SCData.handshakeToken(e.data))
            return
        }
        switch e.name {
        case "#handshake":
            if let cid = e.cid { handshake(cid: cid, token: SCData.handshakeToken(e.data)) }
        case "#subscribe": subscribe(e)
        case "#unsubscribe": unsubscribe(e)
        case "#publish": publish(e)
        case "#authenticate": authenticate(e)
        case "#removeAuthToken": authToken = nil
        case "#disconnect":
            // SocketCluster 14 says goodbye with its close code before closing.
            var code = SCCloseCode.normal.rawValue
            if let d = e.data, case .object(let o)? = try? JSON.parse(d), case .int(let c)? = o["code"], (1000...4999).contains(c) { code = UInt16(c) }
            close(code: code, reason: "")
        case config.loginEvent where config.loginURL != nil:
            login(e)
        default:
            if let cid = e.cid {
                reply(cid, error: SCError(name: "InvalidActionError", message: "no procedure handles the event '\(e.name)' on this server"))
            }
        }
    }

    /// The login hook: the credentials go to the hook; the claims it answers with become a
    /// token the gateway signs and sends.
    private func login(_ e: SCEvent) {
        guard let cid = e.cid else { return }
        guard let url = config.loginURL else { return }
        let loop = shard.loop, hub = self.hub, peer = self.peer, logger = self.logger
        let body = e.data ?? Array("null".utf8)
        Task {
            let outcome: Result<(String, VerifiedToken), SCError>
            do {
                let claims = try await LoginHook.ask(url, body)
                guard let token = try hub.auth.sign(claims) else {
                    throw SCError(name: "AuthTokenError", message: "this server has no key to sign auth tokens with (--ws-auth-key, or --ws-auth-rsa with a private key)")
                }
                switch hub.auth.verify(token) {
                case .success(let verified): outcome = .success((token, verified))
                case .failure(let e): throw SCError(name: "LoginError", message: "the login hook's claims make no valid token: \(e.message)")
                }
            } catch let error as SCError {
                outcome = .failure(error)
            } catch {
                logger.warning("gateway: the login hook \(url) failed for \(peer): \(error)")
                outcome = .failure(SCError(name: "LoginError", message: "the login hook failed: \(error)"))
            }
            loop.execute { self.loggedIn(cid, outcome) }
        }
    }

    private func loggedIn(_ cid: Int64, _ outcome: Result<(String, VerifiedToken), SCError>) {
        guard phase == .open else { return }
        switch outcome {
        case .success(let (token, verified)):
            authToken = verified
            write(SCEncoder.setAuthToken(token))
            reply(cid, data: Array(#"{"isAuthenticated":true}"#.utf8))
        case .failure(let error):
            reply(cid, error: error)
        }
        context?.flush()
    }

    private func handshake(cid: Int64, token: String?) {
        var authError: SCError?
        authToken = bearer
        if let token {
            switch hub.auth.verify(token) {
            case .success(let t): authToken = t
            case .failure(let e): authError = e
            }
        }
        phase = .open
        lastPong = NIODeadline.now()
        write(SCEncoder.handshake(rid: cid, socketId: socketId, pingTimeoutMs: config.pingTimeoutMs, isAuthenticated: authToken != nil, authError: authError))
        if authError?.isBadToken == true { write(SCEncoder.removeAuthToken) }
    }

    private func authenticate(_ e: SCEvent) {
        guard let cid = e.cid else {
            close(code: SCCloseCode.handshakeRejected.rawValue, reason: "an #authenticate without a numeric cid")
            return
        }
        guard let token = SCData.string(e.data) else {
            authToken = nil
            reply(cid, data: Array(#"{"isAuthenticated":false,"authError":null}"#.utf8))
            return
        }
        switch hub.auth.verify(token) {
        case .success(let t):
            authToken = t
            reply(cid, data: Array(#"{"isAuthenticated":true,"authError":null}"#.utf8))
        case .failure(let error):
            authToken = nil
            if error.isBadToken {
                reply(cid, error: error)
                write(SCEncoder.removeAuthToken)
            } else {
                reply(cid, data: Array(#"{"isAuthenticated":false,"authError":"#.utf8) + error.json + [UInt8(ascii: "}")])
            }
        }
    }

    /// The token, checked again for expiry on every call (as SocketCluster does).
    private var currentToken: VerifiedToken? {
        if let t = authToken, t.isExpired {
            authToken = nil
            write(SCEncoder.removeAuthToken)
        }
        return authToken
    }

    // MARK: Channels

    private func subscribe(_ e: SCEvent) {
        guard let d = e.data, case .object(let o)? = try? JSON.parse(d), case .string(let channel)? = o["channel"] else {
            if let cid = e.cid { reply(cid, error: SCError(name: "InvalidActionError", message: "#subscribe needs data {\"channel\": NAME}")) }
            return
        }
        if let problem = channelProblem(channel) {
            if let cid = e.cid { reply(cid, error: problem) }
            return
        }
        if channels[channel] != nil {
            if let cid = e.cid { reply(cid) }
            return
        }
        guard channels.count < config.maxChannelsPerSocket else {
            if let cid = e.cid { reply(cid, error: SCError(name: "BrokerError", message: "Failed to subscribe socket to the \(channel) channel - the socket is already in \(config.maxChannelsPerSocket) channels")) }
            return
        }
        if let denied = hub.rules.denies(.subscribe, channel: channel, token: currentToken) {
            if let cid = e.cid { reply(cid, error: denied) }
            return
        }
        // Where to start: after `lastOffset` (a resume), or the newest `history` messages.
        var from: Int64?
        var limit = config.maxResumeMessages
        if case .object(let options)? = o["data"] {
            if let last = options["lastOffset"].flatMap(Self.integer) {
                guard last >= -1, last < Int64.max else {
                    if let cid = e.cid { reply(cid, error: SCError(name: "InvalidActionError", message: "lastOffset \(last) is not an offset (-1 for the start)")) }
                    return
                }
                from = last + 1
            } else if let n = options["history"].flatMap(Self.integer), n > 0 {
                from = 0
                limit = Int(min(n, Int64(config.maxResumeMessages)))
            }
        }
        // The response first: clients ignore messages of a channel they are not yet in.
        if let cid = e.cid { reply(cid) }
        let partition = hub.log.partition(of: channel)
        let delivered = shard.delivered[Int(partition)]
        generations += 1
        let generation = generations
        guard let from, from != delivered else {
            channels[channel] = Subscription(catchingUp: false, generation: generation)
            shard.subscribeLive(self, channel)
            return
        }
        if from > delivered {
            // The client has seen further than this gateway has delivered (it was on another
            // one): live messages up to its offset are skipped.
            channels[channel] = Subscription(catchingUp: true, generation: generation, skipThrough: from - 1)
            shard.subscribeCatchingUp(self, channel)
            return
        }
        channels[channel] = Subscription(catchingUp: true, generation: generation)
        shard.subscribeCatchingUp(self, channel)
        resume(channel, generation, partition: partition, from: from, until: delivered, limit: limit)
    }

    /// A whole number, also written as a string ("41").
    private static func integer(_ v: Value) -> Int64? {
        v.asInt ?? v.asString.flatMap { Int64($0) }
    }

    private func channelProblem(_ channel: String) -> SCError? {
        if channel.isEmpty { return SCError(name: "InvalidActionError", message: "a channel name must not be empty") }
        if channel.utf8.count > config.maxChannelNameBytes {
            return SCError(name: "InvalidActionError", message: "a channel name of \(channel.utf8.count) bytes is over the \(config.maxChannelNameBytes)-byte limit")
        }
        return nil
    }

    /// Sends `channel`'s history from the log, then what arrived meanwhile.
    private func resume(_ channel: String, _ generation: UInt64, partition: Int32, from: Int64, until: Int64, limit: Int) {
        let loop = shard.loop
        let hub = self.hub
        Task {
            do {
                try await hub.history(channel: channel, partition: partition, from: from, until: until, limit: limit) { batch in
                    while true {
                        guard let state = try? await loop.submit({ self.sendHistory(channel, generation, batch) }).get() else { return false }
                        switch state {
                        case .gone: return false
                        case .sent: return true
                        case .full: try? await Task.sleep(for: .milliseconds(5))
                        }
                    }
                }
                loop.execute { self.caughtUp(channel, generation) }
            } catch {
                loop.execute { self.resumeFailed(channel, generation, error) }
            }
        }
    }

    enum HistoryState { case sent, full, gone }

    private func sendHistory(_ channel: String, _ generation: UInt64, _ batch: FrameBatch) -> HistoryState {
        guard phase == .open, let sub = channels[channel], sub.catchingUp, sub.generation == generation, let context else { return .gone }
        guard context.channel.isWritable else { return .full }
        for e in batch.entries { context.write(wrapOutboundOut(batch.frame(e)), promise: nil) }
        context.flush()
        return .sent
    }

    private func caughtUp(_ channel: String, _ generation: UInt64) {
        guard phase == .open, let sub = channels[channel], sub.catchingUp, sub.generation == generation else { return }
        channels[channel] = Subscription(catchingUp: false, generation: generation)
        shard.caughtUp(self, channel)
        for f in sub.held {
            heldBytes -= f.readableBytes
            send(f)
        }
        context?.flush()
    }

    private func resumeFailed(_ channel: String, _ generation: UInt64, _ error: any Error) {
        guard phase == .open, let sub = channels[channel], sub.generation == generation else { return }
        for f in sub.held { heldBytes -= f.readableBytes }
        logger.warning("gateway: resuming \(channel) for \(peer) failed: \(error)")
        channels[channel] = nil
        shard.unsubscribe(self, channel)
        write(SCEncoder.kickOut(channel: channel, message: "resuming from the log failed: \(error)"))
        context?.flush()
    }

    private func unsubscribe(_ e: SCEvent) {
        guard let channel = SCData.string(e.data) ?? SCData.subscription(e.data)?.channel else {
            if let cid = e.cid { reply(cid, error: SCError(name: "InvalidActionError", message: "#unsubscribe needs the channel's name as data")) }
            return
        }
        if let sub = channels.removeValue(forKey: channel) {
            for f in sub.held { heldBytes -= f.readableBytes }
            shard.unsubscribe(self, channel)
        }
        if let cid = e.cid { reply(cid) }
    }

    private func publish(_ e: SCEvent) {
        guard config.allowClientPublish else {
            if let cid = e.cid { reply(cid, error: SCError(name: "InvalidActionError", message: "Client publish feature is disabled")) }
            return
        }
        guard let (channel, message) = SCData.publication(e.data) else {
            if let cid = e.cid { reply(cid, error: SCError(name: "InvalidActionError", message: "Publish channel name was malformatted")) }
            return
        }
        if let problem = channelProblem(channel) {
            if let cid = e.cid { reply(cid, error: problem) }
            return
        }
        guard message.count <= config.maxMessageBytes else {
            if let cid = e.cid { reply(cid, error: SCError(name: "InvalidMessageError", message: "a message of \(message.count) bytes is over the \(config.maxMessageBytes)-byte limit")) }
            return
        }
        if let denied = hub.rules.denies(.publish, channel: channel, token: currentToken) {
            if let cid = e.cid { reply(cid, error: denied) }
            return
        }
        let loop = shard.loop
        let cid = e.cid
        let peer = self.peer
        let logger = self.logger
        hub.publish(channel: channel, message: message) { result in
            if case .failure(let error) = result {
                logger.error("gateway: appending a message of \(peer) to \(channel) failed: \(error)")
            }
            guard let cid else { return }
            loop.execute {
                switch result {
                case .success: self.reply(cid)
                case .failure(let error): self.reply(cid, error: SCError(name: "BrokerError", message: "the message was not stored: \(error)"))
                }
                self.context?.flush()
            }
        }
    }

    // MARK: Writing

    /// A delivery from the shard; true when the socket needs a flush at the end of the batch.
    func deliver(_ frame: ByteBuffer) -> Bool {
        guard phase == .open, let context else { return false }
        if context.channel.isWritable && overflowHead == overflow.count {
            context.write(wrapOutboundOut(frame), promise: nil)
            if needsFlush { return false }
            needsFlush = true
            return true
        }
        queue(frame)
        return false
    }

    /// A frame for a socket that is not writable now: queued (a copy, so the batch's buffer
    /// is not kept alive), up to the buffer size; past it the slow-subscriber policy decides.
    private func queue(_ frame: ByteBuffer) {
        overflow.append(Self.copy(frame))
        overflowBytes += frame.readableBytes
        guard overflowBytes > config.outboundBufferBytes else { return }
        switch config.slowSubscribers {
        case .close:
            logger.info("gateway: closing \(peer): its outbound buffer of \(config.outboundBufferBytes) bytes is full")
            close(code: GatewayCloseCode.slowSubscriber, reason: "outbound buffer full (\(config.outboundBufferBytes) bytes); reconnect and resume from your last offset")
            overflow.removeAll()
            overflowHead = 0
            overflowBytes = 0
        case .dropOldest:
            while overflowBytes > config.outboundBufferBytes, overflowHead < overflow.count {
                overflowBytes -= overflow[overflowHead].readableBytes
                overflowHead += 1
                dropped += 1
            }
            if overflowHead > 1024, overflowHead * 2 > overflow.count {
                overflow.removeFirst(overflowHead)
                overflowHead = 0
            }
        }
    }

    /// Writes now, or queues when the socket is not writable (or has frames queued).
    private func send(_ frame: ByteBuffer) {
        guard phase == .open, let context else { return }
        if context.channel.isWritable && overflowHead == overflow.count {
            context.write(wrapOutboundOut(frame), promise: nil)
        } else {
            queue(frame)
        }
    }

    static func copy(_ frame: ByteBuffer) -> ByteBuffer {
        var b = ByteBufferAllocator().buffer(capacity: frame.readableBytes)
        b.writeImmutableBuffer(frame)
        return b
    }

    func flushDeliveries() {
        needsFlush = false
        context?.flush()
    }

    /// A live message for a channel in the catching-up list: held while its history is sent,
    /// or skipped while at or below the client's `lastOffset`.
    func hold(_ channel: String, _ frame: ByteBuffer, offset: Int64) {
        guard let sub = channels[channel], sub.catchingUp else { return }
        if offset <= sub.skipThrough { return }
        if sub.skipThrough >= 0 {
            // Past what the client had: live from here.
            channels[channel]!.catchingUp = false
            shard.caughtUp(self, channel)
            send(frame)
            context?.flush()
            return
        }
        heldBytes += frame.readableBytes
        if heldBytes > config.maxHeldBytes {
            close(code: GatewayCloseCode.slowSubscriber, reason: "too many live messages while resuming; reconnect and resume from your last offset")
            return
        }
        channels[channel]!.held.append(Self.copy(frame))
    }

    private func reply(_ cid: Int64, data: [UInt8]? = nil) {
        write(SCEncoder.response(rid: cid, data: data))
    }

    private func reply(_ cid: Int64, error: SCError) {
        write(SCEncoder.error(rid: cid, error))
    }

    private func write(_ text: [UInt8]) {
        write(Frames.text(text))
    }

    private func write(_ frame: ByteBuffer) {
        guard phase != .closing else { return }
        context?.write(wrapOutboundOut(frame), promise: nil)
    }

    /// Timers, from the shard's sweep.
    func tick(_ now: NIODeadline) {
        guard phase != .closing, let context else { return }
        if phase == .awaitingHandshake, now - openedAt > .milliseconds(Int64(config.handshakeTimeoutMs)) {
            close(code: SCCloseCode.handshakeTimeout.rawValue, reason: "no #handshake within \(config.handshakeTimeoutMs) ms")
            return
        }
        if now - lastPong > .milliseconds(Int64(config.pingTimeoutMs)) {
            close(code: SCCloseCode.pongTimeout.rawValue, reason: "no pong within \(config.pingTimeoutMs) ms")
            return
        }
        if now >= nextPing {
            context.writeAndFlush(wrapOutboundOut(config.pingStyle == .v1 ? Frames.pingV1 : Frames.pingV2), promise: nil)
            nextPing = now + .milliseconds(Int64(config.pingIntervalMs))
        }
        if dropped > 0 {
            logger.info("gateway: \(peer) is slow: dropped its \(dropped) oldest messages")
            dropped = 0
        }
    }

    /// Sends a close frame and closes the connection.
    func close(code: UInt16, reason: String) {
        guard phase != .closing, let context else { return }
        phase = .closing
        context.write(wrapOutboundOut(Frames.close(code: code, reason: reason)), promise: nil)
        context.flush()
        // Only the sending side closes now: closing a socket with unread input makes the
        // kernel reset the connection, and the client would lose the close frame and what
        // came before it. What the client still sends is read and dropped until it closes
        // too, or for two seconds at most.
        context.close(mode: .output, promise: nil)
        let channel = context.channel
        context.eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
    }

    private static func looksLikeJSON(_ bytes: UnsafeRawBufferPointer) -> Bool {
        for b in bytes {
            if b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D { continue }
            return b == UInt8(ascii: "{") || b == UInt8(ascii: "[")
        }
        return false
    }
}

/// Server frames (never masked): text, control and close.
enum Frames {
    static let pingV2 = text("")
    static let pingV1 = text("#1")

    static func text(_ s: String) -> ByteBuffer { text(Array(s.utf8)) }

    static func text(_ payload: [UInt8]) -> ByteBuffer {
        var b = ByteBufferAllocator().buffer(capacity: payload.count + 10)
        header(&b, opcode: 0x1, length: payload.count)
        b.writeBytes(payload)
        return b
    }

    static func control(opcode: UInt8, payload: ByteBuffer) -> ByteBuffer {
        var b = ByteBufferAllocator().buffer(capacity: payload.readableBytes + 2)
        header(&b, opcode: opcode, length: min(payload.readableBytes, 125))
        b.writeImmutableBuffer(payload.getSlice(at: payload.readerIndex, length: min(payload.readableBytes, 125))!)
        return b
    }

    static func close(code: UInt16, reason: String) -> ByteBuffer {
        // A close frame's payload is at most 125 bytes: the code and 123 of reason, cut
        // between characters.
        var r: [UInt8] = []
        for ch in reason.unicodeScalars {
            let bytes = Array(String(ch).utf8)
            if r.count + bytes.count > 123 { break }
            r += bytes
        }
        var b = ByteBufferAllocator().buffer(capacity: r.count + 4)
        header(&b, opcode: 0x8, length: r.count + 2)
        b.writeInteger(code)
        b.writeBytes(r)
        return b
    }

    static func header(_ b: inout ByteBuffer, opcode: UInt8, length: Int) {
        b.writeInteger(0x80 | opcode)
        if length < 126 {
            b.writeInteger(UInt8(length))
        } else if length <= 0xFFFF {
            b.writeInteger(UInt8(126))
            b.writeInteger(UInt16(length))
        } else {
            b.writeInteger(UInt8(127))
            b.writeInteger(UInt64(length))
        }
    }
}
