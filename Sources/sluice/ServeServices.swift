// sluice serve's parts as swift-service-lifecycle services, run by one ServiceGroup that
// turns SIGTERM and SIGINT into a graceful shutdown. The group starts them together and stops
// them in reverse order, each after the one before has finished:
//   1. pipelines  (their sources stop; what was processed is committed)
//   2. gateway    (every socket is closed with 1001, the port closed)
//   3. Kafka listener (no new requests)
//   4. broker     (its maintenance stops; group snapshots written, logs flushed and closed)
import Logging
import ServiceLifecycle
import SluiceBroker
import SluiceRuntime

/// Runs `operation` until a graceful shutdown (or cancellation) ends it.
private func untilShutdown(_ operation: @Sendable @escaping () async throws -> Void) async throws {
    do {
        try await cancelWhenGracefulShutdown(operation)
    } catch is CancellationError {}
}

struct BrokerService: Service {
    let broker: EmbeddedBroker
    let logger: Logger

    func run() async throws {
        try? await gracefulShutdown()
        await broker.close()
        logger.info("serve: the broker closed its logs")
    }
}

/// A listener (the Kafka listener, the gateway) that serves until the graceful shutdown.
struct ListenerService: Service {
    let serve: @Sendable () async throws -> Void
    /// Logged once it has stopped.
    let stopped: String
    let logger: Logger

    func run() async throws {
        try await untilShutdown(serve)
        logger.info("serve: \(stopped)")
    }
}

struct PipelinesService: Service {
    let runners: [PipelineRunner]
    let logger: Logger

    func run() async throws {
        guard !runners.isEmpty else {
            try? await gracefulShutdown()
            return
        }
        try await untilShutdown {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for r in runners { group.addTask { try await r.run() } }
                try await group.waitForAll()
            }
            // Bounded pipelines that ended leave the server serving.
            while true { try await Task.sleep(for: .seconds(3600)) }
        }
        logger.info("serve: the pipelines stopped")
    }
}
