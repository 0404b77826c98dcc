// sluice produce TOPIC: one record per stdin line, batched per read, durable per the topic's
// flush policy before it is counted as written.
import ArgumentParser
import Foundation
import SluiceBroker
import SluiceLog

struct Produce: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write one record per line of standard input.",
        discussion: "Exits 0 only once every record is durable under the topic's flush policy; prints the count to stderr."
    )

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Topic to write to.") var topic: String
    @Option(help: "Write every record to this partition.") var partition: Int32?
    @Option(help: "Key for every record (keyed records go to murmur2(key) % partitions, as in Kafka).") var key: String?
    @Option(name: .customLong("key-field"), help: "Take each record's key from this field of the line, read as a JSON object.") var keyField: String?
    @Flag(name: .customLong("report-acks"), help: "Print 'acked N' to stdout each time the first N records are durable.")
    var reportAcks = false
    @Option(name: .customLong("batch-records"), help: "Most records in one batch.") var batchRecords: Int = 10_000

    func validate() throws {
        if let partition, partition < 0 { throw ValidationError("--partition must be 0 or more, got \(partition)") }
        if batchRecords < 1 { throw ValidationError("--batch-records must be at least 1") }
        if key != nil && keyField != nil { throw ValidationError("use either --key or --key-field, not both") }
    }

    func run() throws {
        let name = try TopicName(topic)
        if let url = global.kafkaURL {
            try produceToKafka(url: url, topic: name)
            return
        }
        let topics = try global.openTopics(readOnly: false)
        defer { topics.close() }
        let config = try topics.config(name)
        try checkPartition(name, partitions: config.partitions)
        var target = EmbeddedTarget(writer: BatchWriter(topics: topics, topic: name, partitions: config.partitions, batchRecords: batchRecords), partitions: config.partitions)
        let total = try produceLines(into: &target, partitions: config.partitions)
        FileHandle.standardError.write(Data("wrote \(total) record\(total == 1 ? "" : "s") to \(name)\n".utf8))
    }

    func checkPartition(_ name: TopicName, partitions: Int32) throws {
        if let partition, partition >= partitions {
            throw CLIError.user("topic '\(name)' has partitions 0 to \(partitions - 1); there is no partition \(partition)")
        }
    }

    /// Reads standard input to its end, one record per line, into `target`; returns the
    /// number of records written. What was read before bad input is written (and durable)
    /// before the error is thrown.
    func produceLines<T: ProduceTarget>(into writer: inout T, partitions: Int32) throws -> Int {
        let keyBytes = key.map { Array($0.utf8) }
        let keyed = keyBytes.map { Murmur2.partition(forKey: $0, partitions: partitions) }
        var total = 0
        var lineNumber = 0
        // The options as plain values: a property wrapper's getter per record costs more than
        // the append itself.
        let fixedPartition = partition, keyField = keyField, reportAcks = reportAcks
        var lines = LineReader(fd: 0)
        // Appends stream while lines are read; durability is waited for once, at the end
        // (`always` topics are synced by each append, as promised). With --report-acks each
        // chunk is made durable before the next is read, so the count printed is current.
        while true {
            let next: [ArraySlice<UInt8>]?
            do { next = try lines.nextChunk() } catch {
                // What was read before the bad input is written and durable, as the message says.
                try writer.appendAndSync()
                throw error
            }
            guard let chunk = next else { break }
            let now = currentTimeMillis()
            for line in chunk {
                lineNumber += 1
                var recordKey = keyBytes
                var p = fixedPartition ?? keyed
                if let keyField {
                    guard let k = Self.field(keyField, of: line) else {
                        try writer.appendAndSync()
                        throw CLIError.user("line \(lineNumber) of standard input is not a JSON object with a '\(keyField)' field (the \(lineNumber - 1) lines before it were written)")
                    }
                    recordKey = k
                    if fixedPartition == nil { p = Murmur2.partition(forKey: k, partitions: partitions) }
                }
                // One record must fit in one batch (8 MiB with its overhead): a longer line is
                // the input's fault, said before anything after it is written.
                if line.count + (recordKey?.count ?? 0) > Self.maxRecordBytes {
                    try writer.appendAndSync()
                    throw CLIError.user("line \(lineNumber) of standard input is \(line.count) bytes; a record may be at most \(Self.maxRecordBytes) bytes (a batch is at most 8 MiB); the \(lineNumber - 1) lines before it were written")
                }
                try line.withUnsafeBytes { value in
                    try writer.add(partition: p, key: recordKey, value: value, timestamp: now)
                }
            }
            total += chunk.count
            if reportAcks {
                try writer.appendAndSync()
                let line = Array("acked \(total)\n".utf8)
                _ = line.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
            } else if lines.waitingForInput {
                // Interactive input: what was typed is appended now, not when more arrives.
                try writer.push()
            }
        }
        try writer.appendAndSync()
        return total
    }
}

/// Where `sluice produce` writes: the embedded broker's log, or a Kafka cluster.
protocol ProduceTarget {
    /// Adds one record; a nil partition lets the target place a keyless record.
    mutating func add(partition: Int32?, key: [UInt8]?, value: UnsafeRawBufferPointer, timestamp: Int64) throws
    /// Writes what is held and waits until all of it is durable (acknowledged by Kafka).
    mutating func appendAndSync() throws
    /// Interactive input: hands over what was typed so far.
    mutating func push() throws
}

/// The embedded log: batches per partition; keyless records stick to a partition per batch.
struct EmbeddedTarget: ProduceTarget {
    var writer: BatchWriter
    let partitions: Int32
    let keyless = KeylessPartitioner()

    mutating func add(partition: Int32?, key: [UInt8]?, value: UnsafeRawBufferPointer, timestamp: Int64) throws {
        let full = try writer.add(partition: partition ?? keyless.partition(partitions: partitions), key: key, value: value, timestamp: timestamp)
        if full && partition == nil { keyless.batchCompleted(partitions: partitions) }
    }

    mutating func appendAndSync() throws { try writer.appendAndSync() }
    mutating func push() throws { try writer.flushAll() }
}

extension Produce {
    /// The largest record (value plus key) a line may become: a batch's limit less room for
    /// the batch header and the record's own fields.
    static let maxRecordBytes = LogConfig.defaultMaxBatchBytes - 1024

    /// The key a JSON line holds in `field`: a string as its UTF-8 bytes, a number or bool as
    /// its JSON text. Nil when the line is not a JSON object or lacks the field.
    static func field(_ field: String, of line: ArraySlice<UInt8>) -> [UInt8]? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any], let value = object[field] else { return nil }
        switch value {
        case let s as String: return Array(s.utf8)
        case is NSNull: return nil
        case let n as NSNumber: return Array(n.stringValue.utf8)
        default:
            guard let data = try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys]) else { return nil }
            return Array(data)
        }
    }
}

/// Accumulates records into one batch per partition and appends them.
struct BatchWriter {
    let topics: TopicManager
    let topic: TopicName
    let batchRecords: Int
    var builders: [RecordBatchBuilder?]
    var logs: [PartitionLog?]
    var pendingDurable: [Int64?]

    init(topics: TopicManager, topic: TopicName, partitions: Int32, batchRecords: Int) {
        self.topics = topics
        self.topic = topic
        self.batchRecords = batchRecords
        builders = Array(repeating: nil, count: Int(partitions))
        logs = Array(repeating: nil, count: Int(partitions))
        pendingDurable = Array(repeating: nil, count: Int(partitions))
    }

    /// Adds a record; returns true when that completed (and appended) a batch.
    mutating func add(partition: Int32, key: [UInt8]?, value: UnsafeRawBufferPointer, timestamp: Int64) throws -> Bool {
        let p = Int(partition)
        if builders[p] == nil { builders[p] = RecordBatchBuilder(capacity: 256 * 1024) }
        if let key {
            key.withUnsafeBytes { builders[p]!.append(key: $0, value: value, timestamp: timestamp) }
        } else {
            builders[p]!.append(key: nil, value: value, timestamp: timestamp)
        }
        if builders[p]!.recordCount >= batchRecords || builders[p]!.byteCount >= 1 << 20 {
            try flush(p)
            return true
        }
        return false
    }

    mutating func flush(_ p: Int) throws {
        guard var builder = builders[p], !builder.isEmpty else { return }
        if logs[p] == nil { logs[p] = try topics.partitionLog(topic, Int32(p)) }
        let result = try logs[p]!.append(&builder)
        pendingDurable[p] = result.lastOffset
        builder.reset()
        builders[p] = builder
    }

    mutating func flushAll() throws {
        for p in builders.indices { try flush(p) }
    }

    /// Appends what is held and makes it durable: what the command promises before it exits
    /// or reports a count.
    mutating func appendAndSync() throws {
        try flushAll()
        try syncPending()
    }

    /// Makes every appended batch durable under the topic's policy now: an `interval` topic is
    /// synced at once (one fdatasync per partition written) rather than at its next group
    /// commit; `always` batches were synced by their append; `never` promises nothing.
    mutating func syncPending() throws {
        for p in pendingDurable.indices {
            guard pendingDurable[p] != nil, let log = logs[p] else { continue }
            if case .interval = log.config.flush { try log.flush() }
            pendingDurable[p] = nil
        }
    }
}

/// Reads standard input in chunks and splits it into lines; a line's trailing "\r" is
/// dropped. Each chunk is what one read returned (up to 1 MiB), so interactive input is
/// written at once while a file or pipe is read in large pieces.
struct LineReader {
    let fd: Int32
    private var buffer: [UInt8]
    /// Bytes [0, carried) of `buffer` are the start of a line whose end has not been read.
    private var carried = 0
    private var atEnd = false

    init(fd: Int32, chunkBytes: Int = 1 << 20) {
        self.fd = fd
        buffer = [UInt8](repeating: 0, count: chunkBytes)
    }

    /// True when no input is ready to be read now: the writer is slower than we are (a
    /// person typing, a trickle), so what was read should not wait for more.
    var waitingForInput: Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, 0) == 0
    }

    /// The next lines; nil at the end of input. The slices share one array per chunk.
    mutating func nextChunk() throws -> [ArraySlice<UInt8>]? {
        while !atEnd {
            if carried == buffer.count {
                // One line longer than the buffer: grow it, up to the longest line a record can hold.
                guard buffer.count <= Produce.maxRecordBytes else {
                    throw CLIError.user("standard input has a line longer than \(Produce.maxRecordBytes) bytes, the most a record may be (a batch is at most 8 MiB); the lines before it were written")
                }
                buffer.append(contentsOf: repeatElement(0, count: buffer.count))
            }
            let room = buffer.count - carried
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + carried, room) }
            if n < 0 {
                if errno == EINTR { continue }
                throw CLIError.runtime("cannot read standard input: \(String(cString: strerror(errno)))")
            }
            if n == 0 {
                atEnd = true
                guard carried > 0 else { return nil }
                let last = Array(buffer[0..<carried])
                carried = 0
                return [trim(last[...])]
            }
            let filled = carried + n
            // The chunk's lines live in their own array (the buffer is reused for the next read).
            var lines: [ArraySlice<UInt8>] = []
            var end = 0
            let chunk: [UInt8] = buffer.withUnsafeBytes { raw in
                let base = raw.baseAddress!
                // The last newline in the buffer ends the chunk; the rest is carried over.
                var i = filled
                while i > 0 && base.load(fromByteOffset: i - 1, as: UInt8.self) != 10 { i -= 1 }
                end = i
                return Array(raw[0..<end])
            }
            if end > 0 {
                chunk.withUnsafeBytes { raw in
                    let base = raw.baseAddress!
                    var start = 0
                    while start < end, let nl = memchr(base + start, 10, end - start) {
                        let at = base.distance(to: UnsafeRawPointer(nl))
                        lines.append(trim(chunk[start..<at]))
                        start = at + 1
                    }
                }
            }
            let rest = filled - end
            if rest > 0 && end > 0 {
                buffer.withUnsafeMutableBytes { raw in _ = memmove(raw.baseAddress!, raw.baseAddress! + end, rest) }
            }
            carried = rest
            if !lines.isEmpty { return lines }
        }
        return nil
    }

    private func trim(_ line: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        line.last == 13 ? line.dropLast() : line
    }
}
