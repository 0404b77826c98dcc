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

    func run(_ emit: @escaping @Sendable ([PipelineRecord]) async throws -> Void) async throws {
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
    func run(_ emit: @escaping @Sendable ([PipelineRecord]) async throws -> Void) async throws {
        try await LineBatcher.read(fd: 0, name: "standard input", follow: false, batchRecords: batchRecords, format: format, component: id, onRead: nil, emit: emit)
    }
}

enum LineBatcher {
    static func read(fd: Int32, name: String, follow: Bool, batchRecords: Int, format: String, component: String, onRead: ((Int) -> Void)?, emit: @escaping @Sendable ([PipelineRecord]) async throws -> Void) async throws {
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var carry: [UInt8] = []
        var batch: [PipelineRecord] = []
        var lineNumber = 0
        var header: [String]?
        func line(_ bytes: ArraySlice<UInt8>) throws {
            var b = bytes
            if b.last == 13 { b = b.dropLast() }
            lineNumber += 1
            if format == "csv" {
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
                batch.append(PipelineRecord(value: JSON.serialize(parsed), offset: Int64(lineNumber - 2), parsed: parsed))
                return
            }
            var r = PipelineRecord(value: Array(b))
            r.offset = Int64(lineNumber - 1)
            batch.append(r)
        }
        while true {
            try Task.checkCancellation()
            let n = buffer.withUnsafeMutableBytes { Foundation.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ComponentError(component: component, "read failed: \(String(cString: strerror(errno)))")
            }
            if n == 0 {
                if follow {
                    if !batch.isEmpty { try await emit(batch); batch.removeAll(keepingCapacity: true) }
                    try await Task.sleep(for: .milliseconds(100))
                    continue
                }
                if !carry.isEmpty { try line(carry[...]); carry = [] }
                if !batch.isEmpty { try await emit(batch) }
                return
            }
            onRead?(n)
            var data = carry
            data += buffer[0..<n]
            var start = 0
            for i in 0..<data.count where data[i] == 10 {
                try line(data[start..<i])
                start = i + 1
                if batch.count >= batchRecords {
                    try await emit(batch)
                    batch.removeAll(keepingCapacity: true)
                }
            }
            carry = Array(data[start...])
            if !batch.isEmpty { try await emit(batch); batch.removeAll(keepingCapacity: true) }
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

    func run(_ emit: @escaping @Sendable ([PipelineRecord]) async throws -> Void) async throws {
        var i: Int64 = 0
        let start = ContinuousClock.now
        while count == 0 || i < count {
            try Task.checkCancellation()
            var batch: [PipelineRecord] = []
            let n = count == 0 ? Int64(batchRecords) : min(Int64(batchRecords), count - i)
            let perBatch = rate > 0 ? min(n, max(1, rate / 100)) : n
            batch.reserveCapacity(Int(perBatch))
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
