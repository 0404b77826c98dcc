// Shared by the request-handler tests: a handler over a fresh embedded broker in a temporary
// directory, removed afterwards.
import Foundation
import Logging
import SluiceBroker
import SluiceKafkaWire

func withKafkaHandler(_ body: (KafkaRequestHandler, EmbeddedBroker) async throws -> Void) async throws {
    let dir = NSTemporaryDirectory() + "sluice-wire-\(UUID().uuidString)"
    let broker = try await EmbeddedBroker.open(path: dir)
    let handler = KafkaRequestHandler(broker: broker, config: KafkaListenerConfig(advertisedHost: "127.0.0.1", advertisedPort: 9092), logger: Logger(label: "test"))
    do { try await body(handler, broker) } catch {
        await broker.close(); try? FileManager.default.removeItem(atPath: dir); throw error
    }
    await broker.close()
    try? FileManager.default.removeItem(atPath: dir)
}
