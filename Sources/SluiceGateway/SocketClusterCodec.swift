// The SocketCluster wire format (docs/socketcluster-protocol.md): what a frame from a client
// holds, and the frames a server sends. Packets are JSON text frames: an event
// `{"event","data"?,"cid"?}` (an invoke when it has a numeric cid, a transmit without), a
// response `{"rid","data"?|"error"?}`, or a JSON array of packets (a batch). Pings are bare
// text: "" both ways in protocol 2, "#1" and "#2" in protocol 1.
//
// A packet's `data` is kept as the JSON text the client sent (validated, never re-encoded): a
// published message goes into the channel's log as those bytes, and the delivery frame that
// carries it to every subscriber is spliced together once from them.
import SluiceComponents

public enum SocketCluster {
    /// The default path clients connect to.
    public static let defaultPath = "/socketcluster/"
    /// The server pings every this many milliseconds, and tells clients `pingTimeout`.
    public static let defaultPingIntervalMs = 8_000
    public static let defaultPingTimeoutMs = 20_000
}

/// Which ping frames a client speaks (nothing on the wire says; it is configured).
public enum SCPingStyle: Int, Sendable {
    /// Protocol 1 (SocketCluster ≤ 14): ping "#1", pong "#2".
    case v1 = 1
    /// Protocol 2 (SocketCluster 15 and later, the default): an empty frame both ways.
    case v2 = 2

    public var ping: String { self == .v1 ? "#1" : "" }
}

/// One event from a client: `name` with its `data` as JSON text, and a call id when the
/// client waits for a response.
public struct SCEvent: Sendable, Equatable {
    public var name: String
    /// The JSON text of `data`, exactly as sent; nil when the packet had none.
    public var data: [UInt8]?
    public var cid: Int64?

    public init(name: String, data: [UInt8]?, cid: Int64?) {
        self.name = name
        self.data = data
        self.cid = cid
    }
}

/// What a client's frame holds, packet by packet.
public enum SCPacket: Sendable, Equatable {
    /// "" (protocol 2) or "#2" (protocol 1): the answer to the server's ping.
    case pong
    /// "#1": a protocol 1 ping.
    case ping
    case event(SCEvent)
    /// The answer to a call the server made (`rid` is the server's cid).
    case response(rid: Int64, data: [UInt8]?, error: [UInt8]?)
    /// Text that is no packet (not JSON, or JSON with neither an event nor a numeric rid);
    /// SocketCluster hands it to the application as a raw message.
    case raw([UInt8])
}

public enum SCDecoder {
    /// The packets of one text frame.
    public static func decode(_ frame: [UInt8]) -> [SCPacket] {
        frame.withUnsafeBytes { decode($0) }
    }

    public static func decode(_ frame: UnsafeRawBufferPointer) -> [SCPacket] {
        if frame.isEmpty { return [.pong] }
        if frame.count == 2 && frame[0] == UInt8(ascii: "#") {
            if frame[1] == UInt8(ascii: "2") { return [.pong] }
            if frame[1] == UInt8(ascii: "1") { return [.ping] }
        }
        // JSON only when the text starts (after whitespace) with an object or an array.
        var start = 0
        while start < frame.count, isSpace(frame[start]) { start += 1 }
        guard start < frame.count, frame[start] == UInt8(ascii: "{") || frame[start] == UInt8(ascii: "[") else { return [.raw(Array(frame))] }
        var fields: [JSONField] = []
        guard let scan = try? JSONIndex.scan(frame, into: &fields) else { return [.raw(Array(frame))] }
        if scan.rootKind == .array {
            return elements(of: frame).map { range in
                let element = UnsafeRawBufferPointer(rebasing: frame[range])
                var inner: [JSONField] = []
                guard (try? JSONIndex.scan(element, into: &inner))?.rootKind == .object else { return .raw(Array(element)) }
                return packet(element, inner)
            }
        }
        return [packet(frame, fields)]
    }

    /// An object's packet, from its top-level fields.
    private static func packet(_ bytes: UnsafeRawBufferPointer, _ fields: [JSONField]) -> SCPacket {
        fields.withUnsafeBufferPointer { fs in
            let event = field("event", fs, bytes)
            let cid = field("cid", fs, bytes).flatMap { integer($0, bytes) }
            if let event, event.kind == .string, case .string(let name) = JSONIndex.value(event, in: bytes) {
                return .event(SCEvent(name: name, data: field("data", fs, bytes).map { text($0, bytes) }, cid: cid))
            }
            if let rid = field("rid", fs, bytes).flatMap({ integer($0, bytes) }) {
                let error = field("error", fs, bytes).flatMap { $0.kind == .null ? nil : text($0, bytes) }
                return .response(rid: rid, data: field("data", fs, bytes).map { text($0, bytes) }, error: error)
            }
            return .raw(Array(bytes))
        }
    }

    private static func field(_ key: StaticString, _ fields: UnsafeBufferPointer<JSONField>, _ bytes: UnsafeRawBufferPointer) -> JSONField? {
        let k = UnsafeRawBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount)
        return JSONIndex.find(k, in: fields, bytes: bytes, hint: 0).map { fields[$0] }
    }

    private static func text(_ f: JSONField, _ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        Array(bytes[Int(f.valueStart)..<Int(f.valueEnd)])
    }

    /// A whole number (JSON numbers such as 7 or 7.0); nil for anything else.
    private static func integer(_ f: JSONField, _ bytes: UnsafeRawBufferPointer) -> Int64? {
        guard f.kind == .number else { return nil }
        switch JSONIndex.value(f, in: bytes) {
        case .int(let i): return i
        case .double(let d) where d == d.rounded() && abs(d) < 9e15: return Int64(d)
        default: return nil
        }
    }

    private static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D }

    /// The byte ranges of a validated JSON array's elements.
    static func elements(of array: UnsafeRawBufferPointer) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var depth = 0, inString = false, escaped = false
        var start = -1
        for i in 0..<array.count {
            let b = array[i]
            if inString {
                if escaped { escaped = false } else if b == UInt8(ascii: "\\") { escaped = true } else if b == UInt8(ascii: "\"") { inString = false }
                continue
            }
            switch b {
            case UInt8(ascii: "\""):
                inString = true
                if depth == 1 && start < 0 { start = i }
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                if depth == 1 && start < 0 { start = i }
                depth += 1
            case UInt8(ascii: "]"), UInt8(ascii: "}"):
                depth -= 1
                if depth == 0 && start >= 0 { out.append(start..<trimmedEnd(array, i)); start = -1 }
            case UInt8(ascii: ","):
                if depth == 1 { out.append(start..<trimmedEnd(array, i)); start = -1 }
            default:
                if depth == 1 && start < 0 && !isSpace(b) { start = i }
            }
        }
        return out
    }

    private static func trimmedEnd(_ bytes: UnsafeRawBufferPointer, _ end: Int) -> Int {
        var e = end
        while e > 0, isSpace(bytes[e - 1]) { e -= 1 }
        return e
    }
}

// MARK: Reading an event's data

/// The parts of the reserved events' `data` a server needs.
public enum SCData {
    /// A JSON string's value (`#unsubscribe`'s channel, `#authenticate`'s token).
    public static func string(_ data: [UInt8]?) -> String? {
        guard let data, case .string(let s)? = try? JSON.parse(data) else { return nil }
        return s
    }

    /// `#subscribe`: `{"channel", "waitForAuth"?, "data"?}`; also `{"channel"}` alone, as
    /// some clients send to `#unsubscribe`.
    public static func subscription(_ data: [UInt8]?) -> (channel: String, waitForAuth: Bool)? {
        guard let data, case .object(let o)? = try? JSON.parse(data), case .string(let channel)? = o["channel"] else { return nil }
        if case .bool(true)? = o["waitForAuth"] { return (channel, true) }
        return (channel, false)
    }

    /// `#publish`: `{"channel", "data"}`, with `data` as the JSON text sent ("null" when absent).
    public static func publication(_ data: [UInt8]?) -> (channel: String, message: [UInt8])? {
        guard let data else { return nil }
        return data.withUnsafeBytes { bytes -> (String, [UInt8])? in
            var fields: [JSONField] = []
            guard (try? JSONIndex.scan(bytes, into: &fields))?.rootKind == .object else { return nil }
            return fields.withUnsafeBufferPointer { fs -> (String, [UInt8])? in
                let key = Array("channel".utf8), msg = Array("data".utf8)
                guard let c = key.withUnsafeBytes({ JSONIndex.find($0, in: fs, bytes: bytes, hint: 0) }), fs[c].kind == .string,
                      case .string(let channel) = JSONIndex.value(fs[c], in: bytes) else { return nil }
                let message = msg.withUnsafeBytes { JSONIndex.find($0, in: fs, bytes: bytes, hint: 1) }
                    .map { Array(bytes[Int(fs[$0].valueStart)..<Int(fs[$0].valueEnd)]) } ?? Array("null".utf8)
                return (channel, message)
            }
        }
    }

    /// `#handshake`: the client's stored token (nil for none or null).
    public static func handshakeToken(_ data: [UInt8]?) -> String? {
        guard let data, case .object(let o)? = try? JSON.parse(data), case .string(let token)? = o["authToken"] else { return nil }
        return token
    }
}

// MARK: Frames a server sends

/// An error as SocketCluster clients rebuild it: `name` and `message`, plus any other fields.
public struct SCError: Sendable, Equatable {
    public var name: String
    public var message: String
    /// Further fields, each with its JSON text (e.g. ("statusCode", "4008")).
    public var extra: [(String, [UInt8])]

    public init(name: String, message: String, extra: [(String, [UInt8])] = []) {
        self.name = name
        self.message = message
        self.extra = extra
    }

    public static func == (a: SCError, b: SCError) -> Bool {
        a.name == b.name && a.message == b.message && a.extra.map(\.0) == b.extra.map(\.0) && a.extra.map(\.1) == b.extra.map(\.1)
    }

    /// `{"name":…,"message":…,…}`.
    public var json: [UInt8] {
        var out = Array("{\"name\":".utf8)
        JSON.serialize(.string(name), into: &out)
        out += Array(",\"message\":".utf8)
        JSON.serialize(.string(message), into: &out)
        for (key, value) in extra {
            out.append(UInt8(ascii: ","))
            JSON.serialize(.string(key), into: &out)
            out.append(UInt8(ascii: ":"))
            out += value
        }
        out.append(UInt8(ascii: "}"))
        return out
    }
}

/// WebSocket close codes SocketCluster clients act on (their reconnect policy: never after
/// 1000 or a code of 4500 and above).
public enum SCCloseCode: UInt16, Sendable {
    case normal = 1000
    case goingAway = 1001
    /// The server saw no pong within pingTimeout.
    case pongTimeout = 4001
    case authTokenSigningFailed = 4002
    /// No #handshake within the handshake timeout.
    case handshakeTimeout = 4005
    case brokerBindFailed = 4006
    /// The server rejected the handshake (or a malformed #handshake / #authenticate).
    case handshakeRejected = 4008
    /// A packet before the handshake.
    case packetBeforeHandshake = 4009
}

public enum SCEncoder {
    /// The answer to `#handshake`.
    public static func handshake(rid: Int64, socketId: String, pingTimeoutMs: Int, isAuthenticated: Bool, authError: SCError? = nil) -> [UInt8] {
        var data = Array("{\"id\":".utf8)
        JSON.serialize(.string(socketId), into: &data)
        data += Array(",\"pingTimeout\":\(pingTimeoutMs)".utf8)
        if let authError { data += Array(",\"authError\":".utf8) + authError.json }
        data += Array(",\"isAuthenticated\":\(isAuthenticated)}".utf8)
        return response(rid: rid, data: data)
    }

    /// `{"rid":n}` or `{"rid":n,"data":…}`.
    public static func response(rid: Int64, data: [UInt8]? = nil) -> [UInt8] {
        var out = Array("{\"rid\":\(rid)".utf8)
        if let data { out += Array(",\"data\":".utf8) + data }
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// `{"rid":n,"error":{…}}`; `data` too for what SocketCluster 14 clients read there (a
    /// rejected handshake's `{"code":4008}`).
    public static func error(rid: Int64, _ error: SCError, data: [UInt8]? = nil) -> [UInt8] {
        var out = Array("{\"rid\":\(rid),\"error\":".utf8) + error.json
        if let data { out += Array(",\"data\":".utf8) + data }
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// An event to the client: a transmit, or an invoke with the server's `cid`.
    public static func event(_ name: String, data: [UInt8]? = nil, cid: Int64? = nil) -> [UInt8] {
        var out = Array("{\"event\":".utf8)
        JSON.serialize(.string(name), into: &out)
        if let data { out += Array(",\"data\":".utf8) + data }
        if let cid { out += Array(",\"cid\":\(cid)".utf8) }
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// A channel message to its subscribers: `{"event":"#publish","data":{"channel":…,"data":…}}`,
    /// built once per message and sent to every subscriber as is.
    public static func publish(channel: String, message: [UInt8]) -> [UInt8] {
        var out = Array("{\"event\":\"#publish\",\"data\":{\"channel\":".utf8)
        JSON.serialize(.string(channel), into: &out)
        out += Array(",\"data\":".utf8)
        out += message
        out += Array("}}".utf8)
        return out
    }

    /// `#kickOut`: the server removed the socket from a channel.
    public static func kickOut(channel: String, message: String?) -> [UInt8] {
        var data = Array("{\"channel\":".utf8)
        JSON.serialize(.string(channel), into: &data)
        if let message {
            data += Array(",\"message\":".utf8)
            JSON.serialize(.string(message), into: &data)
        }
        data.append(UInt8(ascii: "}"))
        return event("#kickOut", data: data)
    }

    /// `#setAuthToken` with the signed token.
    public static func setAuthToken(_ token: String) -> [UInt8] {
        var data = Array("{\"token\":".utf8)
        JSON.serialize(.string(token), into: &data)
        data.append(UInt8(ascii: "}"))
        return event("#setAuthToken", data: data)
    }

    public static let removeAuthToken = event("#removeAuthToken")
}
