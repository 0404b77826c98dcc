// Built-in sources besides `topic` (which the executor drives through a consumer group):
// file, stdin, generator.
import Foundation
import SluiceLog
import Synchronization

/// Reads a file line by line (jsonl or lines), in batches; bounded unless `follow`.
final class FileSource: Source {
    let id: String
    let path: String
    let format: String
    let follow: Bool
    let batchRecords: Int

    init(id: String, path: String, format: String, follow: Bool, batchRecords: Int) {
        self.id = id
        self.path = path
        self.format = format
        self.follow = follow
        self.batchRecords = batchRecords
    }

    func run(_ emit: @escaping @Sendable (RecordBatch) async throws -> Void) async throws {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw ComponentError(component: id, "cannot open \(path): \(FileManager.default.fileExists(atPath: path) ? "permission denied" : "no such file")")
        }
        defer { try? handle.close() }
        if !follow, let size = try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber {
            progress.withLock { $0.total = size.int64Value }
        }
        try await LineBatcher.read(fd: handle.fileDescriptor, name: path, follow: follow, batchRecords: batchRecords, format: format, component: id, onRead: { n in self.progress.withLock { $0.done += Int64(n) } }, emit: emit)
    }

    /// Bytes read so far and the file's size when the run started.
    let progress = Mutex(ReadProgress())

    var fractionDone: Double? {
        progress.withLock { p in p.total > 0 ? min(1, Double(p.done) / Double(p.total)) : nil }
    }
}

struct ReadProgress: Sendable {
    var done: Int64 = 0
    var total: Int64 = -1
}

struct StdinSource: Source {
    let id: String
    let format: String
    let batchRecords: Int
    func run(_ emit: @escaping @Sendable (RecordBatch) async throws -> Void) async throws {
        try await LineBatcher.read(fd: 0, name: "standard input", follow: false, batchRecords: batchRecords, format: format, component: id, onRead: nil, emit: emit)
    }
}

/// Splits what a descriptor yields into lines and emits them in batches of at most
/// `batchRecords`. Bytes are read into one large chunk, and each line's record is a view into
/// it: every batch holds the chunk as a store, so nothing is allocated or copied per line. A
/// line cut off at the chunk's end is moved to the start of the chunk for the next read (the
/// chunk is reused when no batch kept it, and copied once when one did).
enum LineBatcher {
    /// Bytes read at a time.
    static let chunkBytes = 4 << 20
    /// The longest line (a chunk grows to hold one, and spans count bytes in Int32).
    static let maxLineBytes = 1 << 30

    static func read(fd: Int32, name: String, follow: Bool, batchRecords: Int, format: String, component: String, onRead: ((Int) -> Void)?, emit: @escaping @Sendable (RecordBatch) async throws -> Void) async throws {
        let csv = format == "csv"
        var chunk = [UInt8](repeating: 0, count: chunkBytes)
        // `chunk[..<filled]` holds bytes read; the line not yet complete starts at `lineStart`.
        var filled = 0
        var lineStart = 0
        var batch = RecordBatch()
        // The chunk's number in `batch.stores` (-1: not added yet), the batch's lane and time.
        var store: Int32 = -1
        var lane: Int32 = 0
        var now: Int64 = 0
        var lineNumber = 0
        var header: [String]?
        func startBatchIfNeeded() {
            guard batch.lanes.isEmpty else { return }
            batch.slots.reserveCapacity(min(batchRecords, 1 << 16))
            lane = batch.laneIndex(SourceLane(topic: nil, partition: -1))
            now = currentTimeMillis()
        }
        /// The line `chunk[start..<end]` (without its line feed).
        func line(_ start: Int, _ end: Int) throws {
            var end = end
            if end > start && chunk[end - 1] == 13 { end -= 1 }
            lineNumber += 1
            startBatchIfNeeded()
            if csv {
                let b = chunk[start..<end]
                // The first row names the columns; each later row becomes an object.
                guard let cells = CSV.fields(b) else {
                    throw ComponentError(component: component, "\(name):\(lineNumber): a quoted field is not closed (fields may not span lines)")
                }
                guard let columns = header else { header = cells; return }
                if b.isEmpty { return }
                guard cells.count == columns.count else {
                    throw ComponentError(component: component, "\(name):\(lineNumber): \(cells.count) fields where the header has \(columns.count)")
                }
                var o = ValueObject(minimumCapacity: columns.count)
                for (c, cell) in zip(columns, cells) { o[c] = CSV.value(cell) }
                let parsed = Value.object(o)
                batch.append(PipelineRecord(value: JSON.serialize(parsed), timestamp: now, offset: Int64(lineNumber - 2), parsed: parsed))
                return
            }
            if store < 0 { store = batch.addStore(chunk) }
            batch.slots.append(RecordSlot(
                key: .null, value: ByteSpan(store: store, start: Int32(start), count: Int32(end - start)),
                offset: Int64(lineNumber - 1), timestamp: now, lane: lane,
                headerStart: 0, headerCount: 0, fieldStart: 0, fieldCount: 0, parse: .none))
        }
        func flushBatch() async throws {
            if !batch.isEmpty { try await emit(batch) }
            // Dropping the batch leaves the chunk to this reader again (unless a batch was kept).
            batch = RecordBatch()
            store = -1
        }
        while true {
            try Task.checkCancellation()
            // The cut-off line moves to the chunk's start; a chunk it fills grows.
            if lineStart > 0 {
                let carried = filled - lineStart
                if carried > 0 {
                    chunk.withUnsafeMutableBytes { p in _ = memmove(p.baseAddress!, p.baseAddress! + lineStart, carried) }
                }
                filled = carried
                lineStart = 0
            }
            if filled == chunk.count {
                guard chunk.count < maxLineBytes else {
                    throw ComponentError(component: component, "\(name):\(lineNumber + 1): a line longer than \(maxLineBytes) bytes")
                }
                let size = chunk.count
                chunk.append(contentsOf: repeatElement(0, count: size))
            }
            let n = chunk.withUnsafeMutableBytes { Foundation.read(fd, $0.baseAddress! + filled, $0.count - filled) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ComponentError(component: component, "read failed: \(String(cString: strerror(errno)))")
            }
            if n == 0 {
                if follow {
                    try await flushBatch()
                    try await Task.sleep(for: .milliseconds(100))
                    continue
                }
                if filled > lineStart { try line(lineStart, filled) }
                try await flushBatch()
                return
            }
            onRead?(n)
            // The carried bytes hold no line feed: only what was just read is searched.
            var from = filled
            filled += n
            while let i = newline(in: chunk, from: from, to: filled) {
                try line(lineStart, i)
                lineStart = i + 1
                from = i + 1
                if batch.count >= batchRecords { try await flushBatch() }
            }
            try await flushBatch()
        }
    }

    /// The position of the first line feed in `chunk[from..<to]`.
    @inline(__always)
    static func newline(in chunk: [UInt8], from: Int, to: Int) -> Int? {
        guard from < to else { return nil }
        return chunk.withUnsafeBytes { p -> Int? in
            guard let hit = memchr(p.baseAddress! + from, 10, to - from) else { return nil }
            return p.baseAddress!.distance(to: UnsafeRawPointer(hit))
        }
    }
}

/// Emits `count` records (0: endless) at `rate` per second (0: as fast as possible), each
/// value from a template where `i` is the record's number.
final class GeneratorSource: Source {
    let id: String
    let count: Int64
    let rate: Int64
    let template: CompiledExpression
    let batchRecords: Int
    private let generated = Atomic<Int64>(0)

    init(id: String, count: Int64, rate: Int64, template: CompiledExpression, batchRecords: Int) {
        self.id = id
        self.count = count
        self.rate = rate
        self.template = template
        self.batchRecords = batchRecords
    }

    var fractionDone: Double? {
        count > 0 ? Double(generated.load(ordering: .relaxed)) / Double(count) : nil
    }

    func run(_ emit: @escaping @Sendable (RecordBatch) async throws -> Void) async throws {
        var i: Int64 = 0
        let start = ContinuousClock.now
        while count == 0 || i < count {
            try Task.checkCancellation()
            var batch = RecordBatch()
            let n = count == 0 ? Int64(batchRecords) : min(Int64(batchRecords), count - i)
            let perBatch = rate > 0 ? min(n, max(1, rate / 100)) : n
            batch.slots.reserveCapacity(Int(perBatch))
            for _ in 0..<perBatch {
                var o = ValueObject()
                o["i"] = .int(i)
                let ctx = EvalContext(value: .object(o), key: nil, topic: nil, partition: -1, offset: i, timestamp: currentTimeMillis(), headers: [])
                let v: Value
                do { v = try template.evaluate(ctx) } catch let e {
                    throw ComponentError(component: id, "template: \(e.message)")
                }
                let bytes: [UInt8]
                if case .string(let s) = v { bytes = Array(s.utf8) } else { bytes = JSON.serialize(v) }
                batch.append(PipelineRecord(value: bytes, offset: i))
                i += 1
            }
            try await emit(batch)
            generated.store(i, ordering: .relaxed)
            if rate > 0 {
                let due = start + .milliseconds(i * 1000 / rate)
                if ContinuousClock.now < due { try await Task.sleep(until: due, clock: .continuous) }
            }
        }
    }
}
