// Built-in sinks: topic, file, stdout, drop.
import Foundation
import SluiceBroker
import SluiceLog
import Synchronization

struct TopicSink: Sink {
    let id: String
    let broker: EmbeddedBroker
    let producer: Producer
    let topic: TopicName
    let key: CompiledExpression?
    let partition: Int32?

    func write(_ records: [PipelineRecord]) async throws {
        guard !records.isEmpty else { return }
        var out: [ProducerRecord] = []
        out.reserveCapacity(records.count)
        for r in records {
            var k = r.key
            if let key {
                do { k = KeyTransform.bytes(try key.evaluate(r.context)) } catch let e as ExpressionRuntimeError {
                    throw ComponentError(component: id, "key: \(e.message) (record \(r.topic ?? "-")/\(r.partition)@\(r.offset))")
                }
            }
            out.append(ProducerRecord(topic: topic, partition: partition, key: k, value: r.value, headers: r.headers, timestamp: r.timestamp))
        }
        let sent = try await producer.send(batch: out)
        // Accepted means durable under the topic's flush policy.
        var last: [PartitionID: Int64] = [:]
        for m in sent { last[m.topicPartition.partition] = max(last[m.topicPartition.partition] ?? -1, m.offset) }
        for (p, offset) in last { try await broker.partition(TopicPartition(topic, p)).log.waitUntilDurable(offset) }
    }

    func close() async throws {}
}

/// Appends records to a file, one per line (jsonl: the value, which transforms keep as JSON;
/// lines: the value as text). Writes are made durable before `write` returns.
final class FileSink: Sink {
    let id: String
    let path: String
    private let handle: Mutex<FileHandle?>

    init(id: String, path: String) throws {
        self.id = id
        self.path = path
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        if !FileManager.default.fileExists(atPath: path) { FileManager.default.createFile(atPath: path, contents: nil) }
        guard let h = FileHandle(forWritingAtPath: path) else { throw ComponentError(component: id, "cannot open \(path) for writing") }
        h.seekToEndOfFile()
        handle = Mutex(h)
    }

    func write(_ records: [PipelineRecord]) async throws {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(records.count * 64)
        for r in records {
            if let v = r.value { buffer += v }
            buffer.append(10)
        }
        try handle.withLock { h in
            guard let h else { throw ComponentError(component: id, "\(path) is closed") }
            do {
                try h.write(contentsOf: buffer)
                try h.synchronize()
            } catch {
                throw ComponentError(component: id, "cannot write \(path): \(error.localizedDescription)")
            }
        }
    }

    func close() async throws {
        handle.withLock { h in
            try? h?.synchronize()
            try? h?.close()
            h = nil
        }
    }
}

struct StdoutSink: Sink {
    let format: String
    func write(_ records: [PipelineRecord]) async throws {
        var buffer: [UInt8] = []
        for r in records {
            if format == "json" {
                var o = ValueObject()
                o["key"] = r.key.map { .string(String(decoding: $0, as: UTF8.self)) } ?? .null
                o["value"] = r.parsed ?? r.value.map { .string(String(decoding: $0, as: UTF8.self)) } ?? .null
                if let t = r.topic { o["topic"] = .string(t); o["partition"] = .int(Int64(r.partition)); o["offset"] = .int(r.offset) }
                buffer += JSON.serialize(.object(o))
            } else if let v = r.value {
                buffer += v
            }
            buffer.append(10)
        }
        var done = 0
        while done < buffer.count {
            let n = buffer.withUnsafeBytes { Foundation.write(1, $0.baseAddress! + done, $0.count - done) }
            if n <= 0 { if errno == EINTR { continue }; throw ComponentError(component: "stdout", "cannot write to standard output") }
            done += n
        }
    }
    func close() async throws {}
}

struct DropSink: Sink {
    func write(_ records: [PipelineRecord]) async throws {}
    func close() async throws {}
}
