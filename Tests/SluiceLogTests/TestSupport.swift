// Helpers shared by the log tests: scratch directories and hex.
import Foundation
import SluiceLog

/// A fresh directory under the system temp dir, removed when the value is released.
final class ScratchDirectory: Sendable {
    let path: String

    init(_ name: String = "log") {
        path = NSTemporaryDirectory() + "sluice-test-\(name)-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

func hexBytes(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    var chars = s.filter { !$0.isWhitespace }.makeIterator()
    while let a = chars.next(), let b = chars.next() { out.append(UInt8(String([a, b]), radix: 16)!) }
    return out
}

func hexString(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined() }

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Appends `count` single-value records as batches of `perBatch`, values "v<n>".
@discardableResult
func appendValues(_ log: PartitionLog, from start: Int, count: Int, perBatch: Int = 10, timestamp: (Int) -> Int64 = { _ in 1_700_000_000_000 }) throws -> [AppendResult] {
    var results: [AppendResult] = []
    var builder = RecordBatchBuilder()
    var n = start
    while n < start + count {
        builder.reset()
        for _ in 0..<min(perBatch, start + count - n) {
            builder.append(key: nil, value: bytes("v\(n)"), timestamp: timestamp(n))
            n += 1
        }
        results.append(try log.append(&builder))
    }
    return results
}

/// Every record from `offset` to the end, as values.
func readValues(_ log: PartitionLog, from offset: Int64 = 0, maxBytes: Int = 1 << 16) throws -> [(Int64, String)] {
    var out: [(Int64, String)] = []
    var position = offset
    while position < log.highWatermark {
        let result = try log.read(from: position, maxBytes: maxBytes)
        if result.isEmpty { break }
        try result.forEachRecord(from: position) { r in
            out.append((r.offset, String(decoding: r.value!, as: UTF8.self)))
        }
        position = result.nextOffset
    }
    return out
}
