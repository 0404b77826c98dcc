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

    func writeReturningRefused(_ batch: RecordBatch, context: LaneContext) async throws -> RecordBatch {
        var refused = batch.emptied()
        var start = 0
        while start < batch.count {
            let chunk = start..<min(batch.count, start + batchRecords)
            start = chunk.upperBound
            if let status = try await post(batch, chunk) {
                let message = "HTTP \(status) from \(url.absoluteString)"
                for i in chunk {
                    refused.slots.append(batch.slots[i])
                    refused.addHeader(refused.count - 1, name: "sluice.error", value: message)
                    refused.addHeader(refused.count - 1, name: "sluice.error.component", value: id)
                }
            }
        }
        return refused
    }

    /// Sends one request with records `range` of `batch`, retrying what can be retried;
    /// returns the status of a refusal (4xx).
    private func post(_ batch: RecordBatch, _ range: Range<Int>) async throws -> Int? {
        var body: [UInt8] = []
        if format == "json" {
            body.append(UInt8(ascii: "["))
            for i in range {
                if i > range.lowerBound { body.append(UInt8(ascii: ",")) }
                batch.withBytes(batch.slots[i].value) { v in
                    if let v, (try? JSON.parse(v)) != nil {
                        body.append(contentsOf: v)
                    } else {
                        JSON.serialize(.string(String(decoding: v ?? UnsafeRawBufferPointer(start: nil, count: 0), as: UTF8.self)), into: &body)
                    }
                }
            }
            body.append(UInt8(ascii: "]"))
        } else {
            for i in range {
                batch.withBytes(batch.slots[i].value) { v in if let v { body.append(contentsOf: v) } }
                body.append(10)
            }
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
