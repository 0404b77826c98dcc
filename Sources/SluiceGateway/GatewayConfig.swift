// What a gateway is told: where it listens, how it pings, and the limits that keep one client
// from hurting the others (frame size, inbound rate, outbound buffer, channels per socket).

/// What happens to a subscriber that reads slower than its channels are published.
public enum SlowSubscriberPolicy: String, Sendable, CaseIterable {
    /// Close the socket with 4100 once its outbound buffer is full; the client reconnects and
    /// resumes from the last offset it saw, so it loses nothing (the default).
    case close
    /// Keep the newest messages and drop the oldest undelivered ones.
    case dropOldest = "drop-oldest"
}

public struct GatewayConfig: Sendable {
    /// The WebSocket path clients connect to (SocketCluster's default).
    public var path = SocketCluster.defaultPath
    /// Which pings the server sends: "#1" (protocol 1) or "" (protocol 2). Both pongs are
    /// accepted either way.
    public var pingStyle = SCPingStyle.v2
    public var pingIntervalMs = SocketCluster.defaultPingIntervalMs
    public var pingTimeoutMs = SocketCluster.defaultPingTimeoutMs
    /// A socket that has not sent `#handshake` by then is closed with 4005.
    public var handshakeTimeoutMs = 10_000
    /// The largest frame (or fragmented message) a client may send; larger ones close the
    /// socket with 1009.
    public var maxFrameBytes = 256 * 1024
    /// The largest message a client may publish (its `data` as JSON text).
    public var maxMessageBytes = 64 * 1024
    /// Bytes waiting to be written to one socket before the slow-subscriber policy applies.
    public var outboundBufferBytes = 1 << 20
    public var slowSubscribers = SlowSubscriberPolicy.close
    /// Live messages one socket may have held back while resumes read the log; past it the
    /// socket is closed with 4100 (it can resume again).
    public var maxHeldBytes = 16 << 20
    /// Packets one socket may send per second, with bursts of twice that. Over it, calls get a
    /// RateLimitError; a socket that keeps going is closed with 4429.
    public var inboundPacketsPerSecond = 1_000
    /// Channels one socket may be subscribed to at once.
    public var maxChannelsPerSocket = 1_000
    /// The longest channel name, in bytes.
    public var maxChannelNameBytes = 256
    /// Messages a resuming subscriber is sent from the log at most; older ones are skipped.
    public var maxResumeMessages = 100_000
    /// Whether clients may publish (`#publish`); pipelines and the HTTP API always may.
    public var allowClientPublish = true
    /// The login hook: a client's `login` invoke (`loginEvent`) is POSTed here as JSON; a 200
    /// answer with a JSON object is the claims of the token the gateway signs and sends with
    /// `#setAuthToken`. Any other answer refuses the login.
    public var loginURL: String?
    public var loginEvent = "login"
    /// A directory served over HTTP beside the WebSocket path (the chat page), or nil.
    public var staticDirectory: String?

    public init() {}
}

/// Close codes of the gateway beyond SocketCluster's own.
public enum GatewayCloseCode {
    /// The socket's outbound buffer filled up (a slow subscriber under the `close` policy).
    public static let slowSubscriber: UInt16 = 4100
    /// The socket kept sending past its inbound rate limit.
    public static let rateLimited: UInt16 = 4429
    /// The server is shutting down.
    public static let goingAway: UInt16 = 1001
    /// A frame over the size limit.
    public static let tooBig: UInt16 = 1009
    /// Text that begins as JSON but is not valid JSON.
    public static let invalidPayload: UInt16 = 1007
    /// A WebSocket protocol error (bad framing, unmasked client frames).
    public static let protocolError: UInt16 = 1002
}
