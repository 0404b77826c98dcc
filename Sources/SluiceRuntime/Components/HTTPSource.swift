// The http source: an HTTP endpoint that takes POSTed records (the whole body as one record,
// or one per line) and answers 202 Accepted once they went through the pipeline and every
// sink made them durable; 413 for a body over the limit, 503 when the pipeline failed.
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import SluiceLog

struct HTTPSource: Source {
    let id: String
    let host: String
    let port: Int
    let path: String
    let perLine: Bool
    let maxBodyBytes: Int

    var acknowledgesDurably: Bool { true }

    func run(_ emit: @escaping @Sendable (RecordBatch) async throws -> Void) async throws {
        let router = Router()
        let perLine = self.perLine, maxBodyBytes = self.maxBodyBytes, id = self.id
        router.post(RouterPath(path)) { request, _ -> Response in
            var request = request
            let body: ByteBuffer
            do {
                body = try await request.collectBody(upTo: maxBodyBytes)
            } catch {
                return Response(status: .contentTooLarge, body: .init(byteBuffer: ByteBuffer(string: "body larger than \(maxBodyBytes) bytes\n")))
            }
            let bytes = Array(buffer: body)
            let now = currentTimeMillis()
            var records: [PipelineRecord] = []
            if perLine {
                for line in bytes.split(separator: 10, omittingEmptySubsequences: true) {
                    let trimmed = line.last == 13 ? line.dropLast() : line
                    records.append(PipelineRecord(value: Array(trimmed), timestamp: now))
                }
            } else {
                records.append(PipelineRecord(value: bytes, timestamp: now))
            }
            do {
                try await emit(RecordBatch(records))
            } catch {
                return Response(status: .serviceUnavailable, body: .init(byteBuffer: ByteBuffer(string: "\(id): \(error)\n")))
            }
            return Response(status: .accepted, body: .init(byteBuffer: ByteBuffer(string: "{\"accepted\":\(records.count)}\n")))
        }
        var logger = Logger(label: "sluice.http")
        logger.logLevel = .warning
        let app = Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "sluice"), logger: logger)
        // Cancelling the pipeline shuts the server down gracefully: in-flight requests finish.
        let group = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: [], logger: logger))
        // The server runs in its own task so that cancelling the pipeline asks it to shut down
        // rather than tearing its channels down mid-request.
        let server = Task { try await group.run() }
        try await withTaskCancellationHandler {
            try await server.value
        } onCancel: {
            Task { await group.triggerGracefulShutdown() }
        }
    }
}
