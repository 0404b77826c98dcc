// sluice consume TOPIC: records to stdout, as values or JSON lines. Opens the data directory
// read-only, so it works beside a running producer.
import ArgumentParser
import Foundation
import SluiceBroker
import SluiceLog

struct Consume: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print records of a topic to standard output.",
        discussion: "Stops at the end of the log unless --follow is given."
    )

    enum Format: String, ExpressibleByArgument, CaseIterable { case value, json }

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Topic to read.") var topic: String
    @Option(help: "Read only this partition (default: all, in partition order).") var partition: Int32?
    @Option(help: "Where to start: earliest, latest, or an offset.") var from: String = "earliest"
    @Option(help: "Stop after this many records.") var max: Int?
    @Option(help: "value: each value on its own line; json: one object per record.") var format: Format = .value
    @Flag(help: "Keep waiting for new records at the end of the log.") var follow = false

    func validate() throws {
        if from != "earliest" && from != "latest" && (Int64(from) ?? -1) < 0 {
            throw ValidationError("--from must be earliest, latest or an offset (0 or more), got '\(from)'")
        }
        if let max, max < 0 { throw ValidationError("--max must be 0 or more") }
        if let partition, partition < 0 { throw ValidationError("--partition must be 0 or more, got \(partition)") }
    }

    func run() throws {
        let name = try TopicName(topic)
        let topics = try global.openTopics(readOnly: true)
        let config = try topics.config(name)
        if let partition, partition >= config.partitions {
            throw CLIError.user("topic '\(name)' has partitions 0 to \(config.partitions - 1); there is no partition \(partition)")
        }
        let selected = partition.map { [$0] } ?? Array(0..<config.partitions)
        var positions: [Int64] = []
        var logs: [PartitionLog] = []
        for p in selected {
            let log = try topics.partitionLog(name, p)
            logs.append(log)
            switch from {
            case "earliest": positions.append(log.logStartOffset)
            case "latest": positions.append(log.logEndOffset)
            default:
                let o = Int64(from)!
                if o > log.logEndOffset || o < log.logStartOffset {
                    throw CLIError.user("offset \(o) is outside partition \(p) of '\(name)', which holds offsets \(log.logStartOffset) to \(log.logEndOffset)")
                }
                positions.append(o)
            }
        }

        var out = OutputBuffer()
        var remaining = max ?? Int.max
        let topicJSON = JSON.string(name.rawValue)
        // Without --follow each partition is read to the end it had when we started.
        let ends = logs.map(\.logEndOffset)
        var failure: (any Error)?
        outer: while remaining > 0 {
            var progressed = false
            for (i, log) in logs.enumerated() where remaining > 0 {
                if !follow && positions[i] >= ends[i] { continue }
                let result: LogReadResult
                do {
                    result = try log.read(from: positions[i], maxBytes: 1 << 20)
                } catch {
                    failure = error
                    break outer
                }
                if result.isEmpty { continue }
                progressed = true
                let start = positions[i]
                let limit = follow ? Int64.max : ends[i]
                var next = start
                try result.forEachBatch { batch in
                    if batch.header.isControl { next = batch.header.nextOffset; return }
                    try batch.forEachRecord { r in
                        guard r.offset >= start, r.offset < limit, remaining > 0 else { return }
                        write(r, partition: selected[i], topicJSON: topicJSON, to: &out)
                        remaining -= 1
                        next = r.offset + 1
                    }
                    if remaining > 0 && batch.header.nextOffset <= limit { next = batch.header.nextOffset }
                }
                positions[i] = Swift.max(next, positions[i])
                if out.count > 1 << 16 { try out.flush() }
            }
            if !progressed {
                if !follow { break }
                try out.flush()
                usleep(50_000)
                for log in logs { try log.refresh() }
            }
        }
        try out.flush()
        if let failure { throw failure }
    }

    private func write(_ r: RecordView, partition: Int32, topicJSON: String, to out: inout OutputBuffer) {
        switch format {
        case .value:
            if let v = r.value { out.append(v) }
            out.append(10)
        case .json:
            out.append("{\"topic\":\(topicJSON),\"partition\":\(partition),\"offset\":\(r.offset),\"timestamp\":\(r.timestamp),\"key\":")
            if let k = r.key { out.append(JSON.string(k)) } else { out.append("null") }
            out.append(",\"value\":")
            if let v = r.value { out.append(JSON.string(v)) } else { out.append("null") }
            out.append(",\"headers\":{")
            var first = true
            r.forEachHeader { name, value in
                if !first { out.append(",") }
                first = false
                out.append(JSON.string(name))
                out.append(":")
                if let value { out.append(JSON.string(value)) } else { out.append("null") }
            }
            out.append("}}\n")
        }
    }
}

/// Buffers stdout writes; a closed pipe ends the command quietly.
struct OutputBuffer {
    private var bytes: [UInt8] = []
    var count: Int { bytes.count }

    init() { bytes.reserveCapacity(1 << 17) }

    mutating func append(_ b: UInt8) { bytes.append(b) }
    mutating func append(_ s: String) { bytes.append(contentsOf: s.utf8) }
    mutating func append(_ p: UnsafeRawBufferPointer) { bytes.append(contentsOf: p) }

    mutating func flush() throws {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Foundation.write(1, $0.baseAddress! + done, $0.count - done) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EPIPE { throw ExitCode.success }
                throw CLIError.runtime("cannot write to standard output: \(String(cString: strerror(errno)))")
            }
            done += n
        }
        bytes.removeAll(keepingCapacity: true)
    }
}

enum JSON {
    /// A JSON string literal for UTF-8 bytes (invalid sequences become U+FFFD).
    static func string(_ p: UnsafeRawBufferPointer) -> String {
        string(String(decoding: p, as: UTF8.self))
    }

    static func string(_ s: String) -> String {
        var out = "\""
        out.reserveCapacity(s.utf8.count + 2)
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where c.value < 0x20:
                let h = String(c.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
            default: out.unicodeScalars.append(c)
            }
        }
        return out + "\""
    }
}
