// Built-in sinks: topic, file, stdout, drop.
import Foundation
import SluiceBroker
import SluiceLog
import Synchronization

final class TopicSink: Sink {
    let id: String
    let broker: EmbeddedBroker
    let producer: Producer
    let topic: TopicName
    let key: CompiledExpression?
    let partition: Int32?
    /// Last offset written per partition since the last flush.
    private let pending = Mutex<[PartitionID: Int64]>([:])

    init(id: String, broker: EmbeddedBroker, producer: Producer, topic: TopicName, key: CompiledExpression?, partition: Int32?) {
        self.id = id
        self.broker = broker
        self.producer = producer
        self.topic = topic
        self.key = key
        self.partition = partition
    }

    /// Keyless records of one write go to one partition, the next write to the next one.
    private let sticky = Mutex<Int32>(0)

    func write(_ records: [PipelineRecord]) async throws {
        guard !records.isEmpty else { return }
        let count = try broker.partitionCount(topic)
        let keyless = sticky.withLock { p -> Int32 in defer { p = (p + 1) % max(count, 1) }; return p % max(count, 1) }
        // One batch per partition, encoded straight from the records.
        var builders = [RecordBatchBuilder?](repeating: nil, count: Int(count))
        for r in records {
            var k = r.key
            if let key {
                do { k = KeyTransform.bytes(try key.evaluate(r.context)) } catch let e {
                    throw ComponentError(component: id, "key: \(e.message) (record \(r.topic ?? "-")/\(r.partition)@\(r.offset))")
                }
            }
            let p: Int32
            if let partition {
                guard partition < count else { throw ComponentError(component: id, "topic '\(topic)' has no partition \(partition)") }
                p = partition
            } else if let k {
                p = Murmur2.partition(forKey: k, partitions: count)
            } else {
                p = keyless
            }
            if builders[Int(p)] == nil { builders[Int(p)] = RecordBatchBuilder(capacity: records.count * ((r.value?.count ?? 0) + 24) / Int(max(1, count)) + 256) }
            builders[Int(p)]!.append(key: k, value: r.value, timestamp: r.timestamp, headers: r.headers)
        }
        var written: [(PartitionID, Int64)] = []
        for p in 0..<Int(count) where builders[p] != nil {
            let result = try await producer.send(&builders[p]!, to: TopicPartition(topic, Int32(p)))
            written.append((Int32(p), result.lastOffset))
        }
        pending.withLock { last in
            for (p, o) in written { last[p] = max(last[p] ?? -1, o) }
        }
    }

    /// Durable under the topic's flush policy (one group commit covers every lane's writes).
    func flush() async throws {
        let last = pending.withLock { p -> [PartitionID: Int64] in defer { p.removeAll() }; return p }
        for (p, offset) in last { try await broker.partition(TopicPartition(topic, p)).log.waitUntilDurable(offset) }
    }

    func close() async throws { try await flush() }
}

/// Appends records to a file, one per line (the value, which transforms keep as JSON text);
/// `flush` syncs the file before the runner commits source offsets.
final class FileSink: Sink {
    let id: String
    let path: String
    private let handle: Mutex<FileHandle?>

    init(id: String, path: String) throws {
        self.id = id
        self.path = path
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
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
            } catch {
                throw ComponentError(component: id, "cannot write \(path): \(error.localizedDescription)")
            }
        }
    }

    func flush() async throws {
        try handle.withLock { h in
            do { try h?.synchronize() } catch { throw ComponentError(component: id, "cannot sync \(path): \(error.localizedDescription)") }
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
