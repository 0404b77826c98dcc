// usage: HBFanout PORT — serves ws://127.0.0.1:PORT/socketcluster/ until killed.
import Foundation
import Hummingbird
import HummingbirdWebSocket
import NIOCore
import NIOWebSocket
import Synchronization

/// Subscribers by channel: each one's queue, drained by its own task.
final class Hub: Sendable {
    let channels = Mutex<[String: [UUID: AsyncStream<ByteBuffer>.Continuation]]>([:])

    func add(_ channel: String, _ id: UUID, _ c: AsyncStream<ByteBuffer>.Continuation) {
        channels.withLock { $0[channel, default: [:]][id] = c }
    }

    func remove(_ id: UUID) {
        channels.withLock { t in for k in t.keys { t[k]?[id] = nil } }
    }

    func publish(_ channel: String, _ frame: ByteBuffer) {
        let subs = channels.withLock { $0[channel].map { Array($0.values) } ?? [] }
        for s in subs { s.yield(frame) }
    }
}

let hub = Hub()
let port = Int(CommandLine.arguments.dropFirst().first ?? "8300") ?? 8300
let router = Router(context: BasicWebSocketRequestContext.self)
router.ws("/socketcluster/") { _, _ in .upgrade([:]) } onUpgrade: { inbound, outbound, _ in
    let id = UUID()
    let (queue, continuation) = AsyncStream<ByteBuffer>.makeStream(bufferingPolicy: .bufferingNewest(100_000))
    defer { hub.remove(id); continuation.finish() }
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
            for await frame in queue { try await outbound.write(.custom(WebSocketFrame(fin: true, opcode: .text, data: frame))) }
        }
        for try await message in inbound.messages(maxSize: 1 << 20) {
            guard case .text(let text) = message, !text.isEmpty else { continue }
            guard let json = try? JSONSerialization.jsonObject(with: Data(text.utf8)) else { continue }
            for case let packet as [String: Any] in (json as? [Any]) ?? [json] {
                let event = packet["event"] as? String, cid = packet["cid"] as? Int
                let data = packet["data"] as? [String: Any]
                switch event {
                case "#handshake":
                    try await outbound.write(.text(#"{"rid":\#(cid ?? 0),"data":{"id":"\#(id)","pingTimeout":20000,"isAuthenticated":false}}"#))
                case "#subscribe":
                    if let channel = data?["channel"] as? String { hub.add(channel, id, continuation) }
                    if let cid { try await outbound.write(.text(#"{"rid":\#(cid)}"#)) }
                case "#publish":
                    guard let channel = data?["channel"] as? String, let message = data?["data"] else { continue }
                    let inner = try JSONSerialization.data(withJSONObject: message, options: [.fragmentsAllowed])
                    var frame = ByteBuffer(string: ##"{"event":"#publish","data":{"channel":"\##(channel)","data":"##)
                    frame.writeBytes(inner)
                    frame.writeString("}}")
                    hub.publish(channel, frame)
                    if let cid { try await outbound.write(.text(#"{"rid":\#(cid)}"#)) }
                default:
                    break
                }
            }
        }
        group.cancelAll()
    }
}
let app = Application(router: Router(), server: .http1WebSocketUpgrade(webSocketRouter: router), configuration: .init(address: .hostname("127.0.0.1", port: port)))
try await app.runService()
