// Built-in sinks: file, stdout, drop. The file sink writes `lines` and `jsonl` straight from
// the batch's bytes (one buffer per batch, nothing allocated per record).
import Foundation
import SluiceBroker
import SluiceLog
import Synchronization

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
        var opened = try Self.open(path, id: id, columns: columns, format: format, warn: warn)
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

    private static func open(_ path: String, id: String, columns: [String], format: Format, warn: (String) -> Void = { _ in }) throws -> Open {
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
        // Every format ends each record with a newline. A file that does not end with one
        // was cut mid-line by a killed process (at-least-once: those records were never
        // committed and are written again): the partial line is cut off, so what is
        // appended now starts a line of its own.
        if size > 0 {
            let complete = (try? Self.lastLineEnd(path, size: size)) ?? size
            if complete < size {
                guard truncate(path, off_t(complete)) == 0 else {
                    throw ComponentError(component: id, "cannot cut the partial last line off \(path): \(String(cString: strerror(errno)))")
                }
                warn("\(id): cut a partial last line (\(size - complete) bytes) off \(path), left by a process that stopped mid-write; its records are written again")
            }
            size = Int64(try h.seekToEnd())
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

    /// The length of the file up to and including its last newline (0 when it has none).
    private static func lastLineEnd(_ path: String, size: Int64) throws -> Int64 {
        guard let h = FileHandle(forReadingAtPath: path) else { return size }
        defer { try? h.close() }
        var end = size
        while end > 0 {
            let start = max(0, end - 65_536)
            try h.seek(toOffset: UInt64(start))
            let chunk = try h.read(upToCount: Int(end - start)) ?? Data()
            if let i = chunk.lastIndex(of: 10) { return start + Int64(chunk.distance(from: chunk.startIndex, to: i)) + 1 }
            end = start
        }
        return 0
    }

    /// Appends a line per record of `batch` whose offset is at least `applied` (every record
    /// when nil). For `lines` and `jsonl` the value's bytes are copied from the batch as they
    /// are; only text that is not JSON is re-encoded (as a JSON string).
    private func encode(_ batch: RecordBatch, from applied: Int64? = nil, into buffer: inout [UInt8]) {
        switch format {
        case .lines, .jsonl:
            let asIs = format == .lines
            var total = buffer.count + batch.count
            for s in batch.slots where s.value.count > 0 { total += Int(s.value.count) }
            buffer.reserveCapacity(asIs ? total : total + total / 8 + 64)
            for s in batch.slots {
                if let applied, s.offset < applied { continue }
                batch.withBytes(s.value) { v in
                    guard let v else {
                        if !asIs { buffer.append(contentsOf: "null".utf8) }
                        return
                    }
                    // A value a json transform has seen (fields indexed or a tree) is JSON text.
                    if asIs || s.parse != .none || Self.looksLikeJSON(v) {
                        buffer.append(contentsOf: v)
                    } else {
                        JSON.serialize(.string(String(decoding: v, as: UTF8.self)), into: &buffer)
                    }
                }
                buffer.append(10)
            }
        case .csv:
            buffer.reserveCapacity(buffer.count + batch.count * 64)
            for i in 0..<batch.count {
                let s = batch.slots[i]
                if let applied, s.offset < applied { continue }
                let fields: Value
                if let parsed = batch.parsed(i) {
                    fields = parsed
                } else {
                    fields = batch.withBytes(s.value) { v -> Value in v.flatMap { try? JSON.parse($0) } ?? .null }
                }
                for (n, c) in columns.enumerated() {
                    if n > 0 { buffer.append(44) }
                    CSV.append(fields[c] ?? .null, to: &buffer)
                }
                buffer.append(10)
            }
        }
    }

    func write(_ batch: RecordBatch, context: LaneContext) async throws {
        if let txn = context.transaction, exactlyOnce {
            let applied = try await appliedOffset(txn.lane)
            var buffer: [UInt8] = []
            encode(batch, from: applied, into: &buffer)
            held.withLock { $0[txn.lane, default: []] += buffer }
            return
        }
        var buffer: [UInt8] = []
        encode(batch, into: &buffer)
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
    private static func looksLikeJSON(_ v: UnsafeRawBufferPointer) -> Bool {
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
    func write(_ batch: RecordBatch, context: LaneContext) async throws {
        var buffer: [UInt8] = []
        for i in 0..<batch.count {
            let s = batch.slots[i]
            if format == "json" {
                var o = ValueObject()
                o["key"] = batch.withBytes(s.key) { k -> Value in k.map { Value.string(String(decoding: $0, as: UTF8.self)) } ?? .null }
                if let parsed = batch.parsed(i) {
                    o["value"] = parsed
                } else {
                    o["value"] = batch.withBytes(s.value) { v -> Value in v.map { Value.string(String(decoding: $0, as: UTF8.self)) } ?? .null }
                }
                let lane = batch.lane(i)
                if let t = lane.topic { o["topic"] = .string(t); o["partition"] = .int(Int64(lane.partition)); o["offset"] = .int(s.offset) }
                JSON.serialize(.object(o), into: &buffer)
            } else {
                batch.withBytes(s.value) { v in if let v { buffer.append(contentsOf: v) } }
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
    func write(_ batch: RecordBatch, context: LaneContext) async throws {}
    func close() async throws {}
}
