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
        // Exactly-once: write inside the lane's transaction, skipping records an earlier
        // committed transaction already wrote (a lane resuming below that point).
        let txn = LaneTransaction.current
        var records = records
        if let txn, let first = records.first, first.offset < txn.committedBelow {
            records = records.filter { !($0.offset < txn.committedBelow && $0.partition == txn.lane.partition && $0.topic == txn.lane.topic) }
            if records.isEmpty { return }
        }
        let producer = txn?.producer ?? self.producer
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
        if txn != nil { return }  // durable when the lane's transaction commits
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

/// Appends records to a file: `lines` (the value as it is), `jsonl` (the value as JSON; text
/// that is not JSON becomes a JSON string) or `csv` (chosen fields of the parsed value, a
/// header row first). `flush` syncs the file before the runner commits source offsets. With
/// rotation, a file that reached `rotate_bytes` or `rotate_interval` is synced and renamed to
/// `<name>-<n>.<ext>` (n counting up) between batches, and a new file is started.
///
/// Under exactly-once a lane's lines are held until the runner commits the lane; then they
/// are appended and synced, and a manifest (`<path>.manifest`: the file's committed length and
/// each lane's next source offset) is replaced atomically (write, fsync, rename). On start the
/// file is cut back to the manifest's length, so whatever a killed run appended after its
/// last commit is gone, and each lane resumes from the manifest's offset.
final class FileSink: ExactlyOnceSink {
    enum Format: String { case lines, jsonl, csv }

    let id: String
    let path: String
    let format: Format
    let columns: [String]
    let rotateBytes: Int64?
    let rotateInterval: Duration?

    private struct Open {
        var handle: FileHandle?
        var size: Int64
        var opened: ContinuousClock.Instant
        /// Exactly-once: the committed next offset per lane ("topic/partition").
        var offsets: [String: Int64] = [:]
    }
    private let file: Mutex<Open>
    let exactlyOnce: Bool
    var manifestPath: String { path + ".manifest" }
    /// Exactly-once: each lane's encoded lines since its last commit.
    private let held = Mutex<[SourceLane: [UInt8]]>([:])

    struct Manifest: Codable {
        var size: Int64
        var offsets: [String: Int64]
    }

    init(id: String, path: String, format: Format, columns: [String], rotateBytes: Int64?, rotateIntervalMs: Int64?, exactlyOnce: Bool = false, warn: (String) -> Void = { _ in }) throws {
        self.id = id
        self.path = path
        self.format = format
        self.columns = columns
        self.rotateBytes = rotateBytes
        self.rotateInterval = rotateIntervalMs.map { .milliseconds($0) }
        self.exactlyOnce = exactlyOnce
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        var offsets: [String: Int64] = [:]
        if exactlyOnce {
            offsets = try Self.recover(path: path, manifest: path + ".manifest", id: id, warn: warn)
        } else {
            // Appends made at-least-once would be cut off by a stale manifest later.
            try? FileManager.default.removeItem(atPath: path + ".manifest")
        }
        var opened = try Self.open(path, id: id, columns: columns, format: format)
        opened.offsets = offsets
        file = Mutex(opened)
    }

    private static func fileSize(_ path: String) -> Int64? {
        ((try? FileManager.default.attributesOfItem(atPath: path)[.size]) as? NSNumber)?.int64Value
    }

    /// Cuts the file back to the length its manifest committed; returns the lanes' offsets.
    private static func recover(path: String, manifest: String, id: String, warn: (String) -> Void) throws -> [String: Int64] {
        guard let data = FileManager.default.contents(atPath: manifest) else { return [:] }
        guard var m = try? JSONDecoder().decode(Manifest.self, from: data) else {
            throw ComponentError(component: id, "\(manifest) is not a valid manifest; move it away to start over (the file's offsets are then unknown)")
        }
        let size = fileSize(path) ?? 0
        if size < m.size {
            // A rotation renamed the file before the manifest recorded the new one.
            if let last = rotatedFiles(path).last, fileSize(last.path) == m.size {
                m.size = 0
            } else {
                throw ComponentError(component: id, "\(path) has \(size) bytes but its manifest committed \(m.size); committed output is missing, refusing to continue")
            }
        }
        if size > m.size {
            guard truncate(path, off_t(m.size)) == 0 else {
                throw ComponentError(component: id, "cannot cut \(path) back to \(m.size) bytes: \(String(cString: strerror(errno)))")
            }
            warn("\(id): cut \(path) from \(size) to \(m.size) bytes, the length its manifest committed (the rest was written after the last commit)")
        }
        return m.offsets
    }

    /// Rotated files `<stem>-<n>.<ext>` beside `path`, by n.
    static func rotatedFiles(_ path: String) -> [(n: Int, path: String)] {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        let ext = url.pathExtension
        let stem = url.deletingPathExtension().lastPathComponent
        var out: [(n: Int, path: String)] = []
        for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] where name.hasPrefix(stem + "-") {
            var rest = name.dropFirst(stem.count + 1)
            if !ext.isEmpty { guard rest.hasSuffix("." + ext) else { continue }; rest = rest.dropLast(ext.count + 1) }
            if let n = Int(rest) { out.append((n, dir + "/" + name)) }
        }
        return out.sorted { $0.n < $1.n }
    }

    private static func open(_ path: String, id: String, columns: [String], format: Format) throws -> Open {
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        // Only a regular file can be appended to, synced, rotated and cut back (a FIFO, a
        // device or /proc/self/status cannot), so anything else is refused before it is opened.
        var st = stat()
        if stat(path, &st) == 0, st.st_mode & S_IFMT != S_IFREG {
            throw ComponentError(component: id, "\(path) is not a regular file; a file sink writes, syncs and rotates regular files")
        }
        guard let h = FileHandle(forWritingAtPath: path) else { throw ComponentError(component: id, "cannot open \(path) for writing") }
        var size: Int64
        do { size = Int64(try h.seekToEnd()) } catch {
            // /proc files say they are regular but cannot be sought.
            throw ComponentError(component: id, "\(path) is not a regular file that can be appended to (it cannot be sought to its end)")
        }
        if format == .csv && size == 0 {
            var header: [UInt8] = []
            for (i, c) in columns.enumerated() {
                if i > 0 { header.append(44) }
                CSV.append(c, to: &header)
            }
            header.append(10)
            do { try h.write(contentsOf: header) } catch { throw ComponentError(component: id, "cannot write \(path): \(error.localizedDescription)") }
            size = Int64(header.count)
        }
        return Open(handle: h, size: size, opened: .now)
    }

    private func encode(_ records: some Sequence<PipelineRecord>, into buffer: inout [UInt8]) {
        for r in records {
            switch format {
            case .lines:
                if let v = r.value { buffer += v }
            case .jsonl:
                if let v = r.value, r.parsed != nil || Self.looksLikeJSON(v) {
                    buffer += v
                } else if let v = r.value {
                    JSON.serialize(.string(String(decoding: v, as: UTF8.self)), into: &buffer)
                } else {
                    buffer += Array("null".utf8)
                }
            case .csv:
                let fields = r.parsed ?? r.value.flatMap { try? JSON.parse($0) } ?? .null
                for (i, c) in columns.enumerated() {
                    if i > 0 { buffer.append(44) }
                    CSV.append(fields[c] ?? .null, to: &buffer)
                }
            }
            buffer.append(10)
        }
    }

    func write(_ records: [PipelineRecord]) async throws {
        if let txn = LaneTransaction.current, exactlyOnce {
            let applied = try await appliedOffset(txn.lane)
            var buffer: [UInt8] = []
            encode(records.lazy.filter { r in applied.map { r.offset >= $0 } ?? true }, into: &buffer)
            held.withLock { $0[txn.lane, default: []] += buffer }
            return
        }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(records.count * 64)
        encode(records, into: &buffer)
        try file.withLock { f in try append(buffer, to: &f) }
    }

    private func append(_ buffer: [UInt8], to f: inout Open) throws {
        if shouldRotate(f) { try rotate(&f) }
        guard let h = f.handle else { throw ComponentError(component: id, "\(path) is closed") }
        do {
            try h.write(contentsOf: buffer)
            f.size += Int64(buffer.count)
        } catch {
            throw ComponentError(component: id, "cannot write \(path): \(error.localizedDescription)")
        }
    }

    private static func laneKey(_ lane: SourceLane) -> String { "\(lane.topic ?? "")/\(lane.partition)" }

    func appliedOffset(_ lane: SourceLane) async throws -> Int64? {
        file.withLock { $0.offsets[Self.laneKey(lane)] }
    }

    func commit(_ lane: SourceLane, next: Int64) async throws {
        let bytes = held.withLock { $0.removeValue(forKey: lane) ?? [] }
        try file.withLock { f in
            try append(bytes, to: &f)
            do { try f.handle?.synchronize() } catch { throw ComponentError(component: id, "cannot sync \(path): \(error.localizedDescription)") }
            f.offsets[Self.laneKey(lane)] = next
            try writeManifest(f)
        }
    }

    func abort(_ lane: SourceLane) async {
        held.withLock { $0[lane] = nil }
    }

    /// Replaces the manifest atomically: temporary file, fsync, rename, fsync of the directory.
    private func writeManifest(_ f: Open) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let data: Data
        do { data = try encoder.encode(Manifest(size: f.size, offsets: f.offsets)) } catch { throw ComponentError(component: id, "cannot encode the manifest: \(error)") }
        let tmp = manifestPath + ".tmp"
        let fd = Foundation.open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ComponentError(component: id, "cannot write \(tmp): \(String(cString: strerror(errno)))") }
        let written = data.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        Foundation.close(fd)
        guard written == data.count, synced, rename(tmp, manifestPath) == 0 else {
            throw ComponentError(component: id, "cannot write \(manifestPath): \(String(cString: strerror(errno)))")
        }
        let dir = (manifestPath as NSString).deletingLastPathComponent
        let dfd = Foundation.open(dir.isEmpty ? "." : dir, O_RDONLY)
        if dfd >= 0 { _ = fsync(dfd); Foundation.close(dfd) }
    }

    /// The first byte of a JSON text (an object, array, string, number, true, false, null).
    private static func looksLikeJSON(_ v: [UInt8]) -> Bool {
        guard let first = v.first(where: { $0 != 32 && $0 != 9 }) else { return false }
        return first == 123 || first == 91 || first == 34 || first == 45 || (first >= 48 && first <= 57) || first == 116 || first == 102 || first == 110
    }

    private func shouldRotate(_ f: Open) -> Bool {
        let headerOnly = format == .csv ? Int64(columns.joined(separator: ",").utf8.count + 1) : 0
        guard f.size > headerOnly else { return false }
        if let rotateBytes, f.size >= rotateBytes { return true }
        if let rotateInterval, ContinuousClock.now - f.opened >= rotateInterval { return true }
        return false
    }

    /// Syncs and renames the current file, then opens a fresh one at `path`.
    private func rotate(_ f: inout Open) throws {
        guard let h = f.handle else { return }
        do { try h.synchronize(); try h.close() } catch { throw ComponentError(component: id, "cannot sync \(path): \(error.localizedDescription)") }
        f.handle = nil
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        let ext = url.pathExtension
        let stem = url.deletingPathExtension().lastPathComponent
        let next = (Self.rotatedFiles(path).last?.n ?? 0) + 1
        let target = dir + "/" + stem + "-\(next)" + (ext.isEmpty ? "" : "." + ext)
        guard rename(path, target) == 0 else {
            throw ComponentError(component: id, "cannot rotate \(path) to \(target): \(String(cString: strerror(errno)))")
        }
        let dfd = Foundation.open(dir, O_RDONLY)
        if dfd >= 0 { _ = fsync(dfd); Foundation.close(dfd) }
        let offsets = f.offsets
        f = try Self.open(path, id: id, columns: columns, format: format)
        f.offsets = offsets
        if exactlyOnce {
            try f.handle?.synchronize()
            try writeManifest(f)
        }
    }

    func flush() async throws {
        try file.withLock { f in
            do { try f.handle?.synchronize() } catch { throw ComponentError(component: id, "cannot sync \(path): \(error.localizedDescription)") }
        }
    }

    func close() async throws {
        file.withLock { f in
            try? f.handle?.synchronize()
            try? f.handle?.close()
            f.handle = nil
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
