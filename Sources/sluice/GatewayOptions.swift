// The gateway's flags on `sluice serve`: where the WebSocket listens, its limits, auth keys
// and channel rules.
import ArgumentParser
import Foundation
import Logging
import NIOCore
import NIOPosix
import SluiceGateway
import SluiceRuntime

struct GatewayOptions: ParsableArguments {
    @Option(name: .customLong("ws"), help: "host:port of the SocketCluster WebSocket gateway (off unless given).") var ws: String?
    @Option(name: .customLong("ws-path"), help: "The WebSocket path.") var wsPath: String = "/socketcluster/"
    @Option(name: .customLong("ws-threads"), help: "Event loops for sockets (default: the core count).") var wsThreads: Int = System.coreCount
    @Option(name: .customLong("ws-topic"), help: "The topic that holds every channel's messages.") var wsTopic: String = "channels"
    @Option(name: .customLong("ws-partitions"), help: "Partitions of the channel topic when it is created.") var wsPartitions: Int32 = 4
    @Option(name: .customLong("ws-protocol"), help: "Ping style: 2 (SocketCluster 15 and later: empty frames) or 1 (#1/#2).") var wsProtocol: Int = 2
    @Option(name: .customLong("ws-static"), help: "A directory served over HTTP on the gateway's port (/ is index.html).") var wsStatic: String?
    @Option(name: .customLong("ws-slow"), help: "A subscriber whose buffer is full: close (code 4100; it resumes on reconnect) or drop-oldest.") var wsSlow: String = "close"
    @Option(name: .customLong("ws-buffer"), help: "Outbound buffer per socket, e.g. 1MiB.") var wsBuffer: String = "1MiB"
    @Option(name: .customLong("ws-max-frame"), help: "Largest frame a client may send, e.g. 256KiB.") var wsMaxFrame: String = "256KiB"
    @Option(name: .customLong("ws-max-message"), help: "Largest message a client may publish, e.g. 64KiB.") var wsMaxMessage: String = "64KiB"
    @Option(name: .customLong("ws-rate"), help: "Packets per second one socket may send (bursts of twice that).") var wsRate: Int = 1_000
    @Option(name: .customLong("ws-ping-interval"), help: "How often the server pings, e.g. 8s.") var wsPingInterval: String = "8s"
    @Option(name: .customLong("ws-ping-timeout"), help: "A socket silent this long is closed with 4001, e.g. 20s.") var wsPingTimeout: String = "20s"
    @Option(name: .customLong("ws-handshake-timeout"), help: "A socket that sends no #handshake this long is closed with 4005, e.g. 10s.") var wsHandshakeTimeout: String = "10s"
    @Option(name: .customLong("ws-auth-key"), help: "A file holding the HS256 key for auth tokens.") var wsAuthKey: String?
    @Option(name: .customLong("ws-auth-rsa"), help: "A PEM file: an RSA private key (sign and verify RS256 tokens) or public key (verify only).") var wsAuthRSA: String?
    @Option(name: .customLong("ws-login"), help: "The login hook: a client's `login` invoke is POSTed to this URL; a 200 JSON object is signed into its auth token.") var wsLogin: String?
    @Option(name: .customLong("ws-rule"), help: "A channel rule, 'PATTERN subscribe=WHO publish=WHO' with WHO anyone, authenticated, nobody or claim:NAME=VALUE; the first match decides (repeatable).") var wsRules: [String] = []
    @Flag(name: .customLong("ws-no-client-publish"), help: "Clients may only subscribe; pipelines and the HTTP API publish.") var wsNoClientPublish = false

    /// The configured gateway, or nil without --ws.
    func server(log makeLog: () throws -> any ChannelLog, logger: Logger) async throws -> GatewayServer? {
        guard let ws else { return nil }
        let (host, port) = try Serve.hostPort(ws, "--ws")
        var c = GatewayConfig()
        guard wsPath.hasPrefix("/") else { throw CLIError.user("--ws-path '\(wsPath)' must start with /") }
        c.path = wsPath
        guard wsThreads >= 1 else { throw CLIError.user("--ws-threads must be at least 1") }
        guard wsPartitions >= 1 else { throw CLIError.user("--ws-partitions must be at least 1") }
        guard let style = SCPingStyle(rawValue: wsProtocol) else { throw CLIError.user("--ws-protocol must be 1 or 2") }
        c.pingStyle = style
        if let wsStatic {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: wsStatic, isDirectory: &isDir), isDir.boolValue else { throw CLIError.user("--ws-static \(wsStatic) is not a directory") }
            c.staticDirectory = URL(fileURLWithPath: wsStatic).standardizedFileURL.path
        }
        guard let slow = SlowSubscriberPolicy(rawValue: wsSlow) else { throw CLIError.user("--ws-slow must be close or drop-oldest, not '\(wsSlow)'") }
        c.slowSubscribers = slow
        c.outboundBufferBytes = try Self.size(wsBuffer, "--ws-buffer")
        c.maxFrameBytes = try Self.size(wsMaxFrame, "--ws-max-frame")
        c.maxMessageBytes = try Self.size(wsMaxMessage, "--ws-max-message")
        guard wsRate >= 1 else { throw CLIError.user("--ws-rate must be at least 1") }
        c.inboundPacketsPerSecond = wsRate
        c.pingIntervalMs = try Self.duration(wsPingInterval, "--ws-ping-interval")
        c.pingTimeoutMs = try Self.duration(wsPingTimeout, "--ws-ping-timeout")
        c.handshakeTimeoutMs = try Self.duration(wsHandshakeTimeout, "--ws-handshake-timeout")
        c.allowClientPublish = !wsNoClientPublish
        if let wsLogin {
            guard let u = URL(string: wsLogin), ["http", "https"].contains(u.scheme ?? "") else { throw CLIError.user("--ws-login '\(wsLogin)' is not an http(s) URL") }
            guard wsAuthKey != nil || wsAuthRSA != nil else { throw CLIError.user("--ws-login needs a key to sign tokens with: --ws-auth-key or --ws-auth-rsa") }
            c.loginURL = wsLogin
        }
        var auth = GatewayAuth()
        if wsAuthKey != nil && wsAuthRSA != nil { throw CLIError.user("--ws-auth-key and --ws-auth-rsa: give one") }
        if let wsAuthKey {
            guard let key = FileManager.default.contents(atPath: wsAuthKey), !key.isEmpty else { throw CLIError.user("--ws-auth-key: cannot read \(wsAuthKey), or it is empty") }
            var bytes = Array(key)
            while bytes.last == 0x0A || bytes.last == 0x0D { bytes.removeLast() }
            auth.key = .hs256(bytes)
        }
        if let wsAuthRSA {
            guard let pem = try? String(contentsOfFile: wsAuthRSA, encoding: .utf8) else { throw CLIError.user("--ws-auth-rsa: cannot read \(wsAuthRSA)") }
            do { auth.key = try GatewayAuth.rs256(pem: pem) } catch { throw CLIError.user("--ws-auth-rsa \(wsAuthRSA) holds no RSA key in PEM form: \(error)") }
        }
        let rules = try ChannelRules(wsRules.map(Self.rule))
        let loops = MultiThreadedEventLoopGroup(numberOfThreads: wsThreads)
        let hub = try await ChannelHub(log: try makeLog(), loops: loops, config: c, auth: auth, rules: rules, logger: logger)
        return GatewayServer(hub: hub, host: host, port: port, loops: loops, logger: logger)
    }

    static func rule(_ text: String) throws -> ChannelRule {
        let words = text.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        guard let pattern = words.first, words.count > 1 else { throw CLIError.user("--ws-rule '\(text)': expected 'PATTERN subscribe=WHO publish=WHO'") }
        var rule = ChannelRule(pattern: pattern)
        for w in words.dropFirst() {
            guard let eq = w.firstIndex(of: "=") else { throw CLIError.user("--ws-rule '\(text)': '\(w)' is not subscribe=WHO or publish=WHO") }
            let what = String(w[..<eq])
            var who = String(w[w.index(after: eq)...])
            if who.hasPrefix("claim:") { who = "claim " + who.dropFirst(6) }
            guard let access = ChannelAccess(who) else { throw CLIError.user("--ws-rule '\(text)': '\(who)' is not anyone, authenticated, nobody or claim:NAME=VALUE") }
            switch what {
            case "subscribe": rule.subscribe = access
            case "publish": rule.publish = access
            default: throw CLIError.user("--ws-rule '\(text)': '\(what)' is neither subscribe nor publish")
            }
        }
        return rule
    }

    static func size(_ text: String, _ option: String) throws -> Int {
        guard let n = Durations.bytes(text), n > 0, n < Int64(Int32.max) else { throw CLIError.user("\(option) '\(text)' is not a size such as 1MiB") }
        return Int(n)
    }

    static func duration(_ text: String, _ option: String) throws -> Int {
        guard let n = Durations.milliseconds(text), n > 0 else { throw CLIError.user("\(option) '\(text)' is not a duration such as 20s") }
        return Int(n)
    }
}
