// The http sink: POSTs records in batches (a JSON array of the values, or the values one per
// line); a 5xx answer or a connection failure is retried with exponential backoff, a 4xx
// answer sends that request's records to `<sink>.errors`.
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import SluiceLog

struct HTTPSink: RejectingSink {
    let id: String
    let url: URL
    let format: String
    let batchRecords: Int
    let maxRetries: Int
    let backoffMs: Int64
    let timeoutMs: Int64

    func write(_ records: [PipelineRecord]) async throws -> [PipelineRecord] {
        var rejected: [PipelineRecord] = []
        var start = 0
        while start < records.count {
            let chunk = Array(records[start..<min(records.count, start + batchRecords)])
            start += chunk.count
            if let status = try await post(chunk) {
                rejected += chunk.map { r in
                    var r = r
                    r.headers.append(RecordHeader(name: "sluice.error", value: Array("HTTP \(status) from \(url.absoluteString)".utf8)))
                    r.headers.append(RecordHeader(name: "sluice.error.component", value: Array(id.utf8)))
                    return r
                }
            }
        }
        return rejected
    }

    /// Sends one request, retrying what can be retried; returns the status of a refusal (4xx).
    private func post(_ records: [PipelineRecord]) async throws -> Int? {
        var body: [UInt8] = []
        if format == "json" {
            body.append(UInt8(ascii: "["))
            for (i, r) in records.enumerated() {
                if i > 0 { body.append(UInt8(ascii: ",")) }
                if let v = r.value, (try? JSON.parse(v)) != nil { body += v } else { JSON.serialize(.string(String(decoding: r.value ?? [], as: UTF8.self)), into: &body) }
            }
            body.append(UInt8(ascii: "]"))
        } else {
            for r in records { body += r.value ?? []; body.append(10) }
        }
        var request = URLRequest(url: url, timeoutInterval: Double(timeoutMs) / 1000)
        request.httpMethod = "POST"
        request.setValue(format == "json" ? "application/json" : "text/plain", forHTTPHeaderField: "Content-Type")
        request.httpBody = Data(body)
        var delay = backoffMs
        var attempt = 0
        while true {
            try Task.checkCancellation()
            var problem: String
            do {
                let (_, response) = try await URLSession.shared.data(for: request)
                let status = (response as? HTTPURLResponse)?.statusCode ?? 0
                if (200..<300).contains(status) { return nil }
                if (400..<500).contains(status) { return status }
                problem = "HTTP \(status)"
            } catch {
                problem = "\(error.localizedDescription)"
            }
            attempt += 1
            if attempt > maxRetries {
                throw ComponentError(component: id, "POST \(url.absoluteString) failed \(attempt) times, last: \(problem)")
            }
            try await Task.sleep(for: .milliseconds(delay))
            delay = min(delay * 2, 30_000)
        }
    }

    func close() async throws {}
}
