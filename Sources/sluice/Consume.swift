// sluice consume TOPIC: records to stdout, as values or JSON lines. Opens the data directory
// read-only, so it works beside a running producer.
import ArgumentParser
import Foundation
import SluiceBroker
import Logging
import SluiceLog
import Synchronization

struct Consume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print records of a topic to standard output.",
        discussion: """
        Stops at the end of the log unless --follow is given. Without --group the data directory
        is opened read-only (it works beside a running producer); with --group the consumer
        joins the group, starts at the group's committed offsets and commits as it goes.
        """
    )

    enum Format: String, ExpressibleByArgument, CaseIterable { case value, json }

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Topic to read.") var topic: String
    @Option(help: "Read only this partition (default: all, in partition order).") var partition: Int32?
    @Option(name: .customLong("from"), help: "Where to start: earliest, latest, or an offset (with --group: where to start without a committed offset; with --share-group: where the group starts when it has no configs yet; default earliest).") var fromOption: String?
    @Option(help: "Stop after this many records.") var max: Int?
    @Option(help: "value: each value on its own line; json: one object per record.") var format: Format = .value
    @Flag(help: "Keep waiting for new records at the end of the log.") var follow = false
    @Option(help: "Consume as a member of this consumer group, committing offsets as records are printed.") var group: String?
    @Option(help: "read_uncommitted (default) or read_committed: hide aborted and open transactions.") var isolation: String = "read_uncommitted"
    @Option(name: .customLong("share-group"), help: "Consume as a member of this share group (a queue): records are acquired one by one and acknowledged with --ack as they are printed. A new group starts where --from says.") var shareGroup: String?
    @Option(help: "With --share-group: accept (processed), release (deliver again) or reject (archive; dead-letter where the group names a topic).") var ack: String = "accept"

    /// --from, defaulting to earliest.
    var from: String { fromOption ?? "earliest" }

    func validate() throws {
        if from != "earliest" && from != "latest" && (Int64(from) ?? -1) < 0 {
            throw ValidationError("--from must be earliest, latest or an offset (0 or more), got '\(from)'")
        }
        if let max, max < 0 { throw ValidationError("--max must be 0 or more") }
        if let partition, partition < 0 { throw ValidationError("--partition must be 0 or more, got \(partition)") }
        if IsolationLevel(rawValue: isolation) == nil {
            throw ValidationError("--isolation must be read_uncommitted or read_committed, got '\(isolation)'")
        }
        if group != nil && Int64(from) != nil { throw ValidationError("--from OFFSET cannot be used with --group; use 'sluice group reset-offsets'") }
        if let group, group.isEmpty { throw ValidationError("--group must not be empty") }
        if let shareGroup {
            if shareGroup.isEmpty { throw ValidationError("--share-group must not be empty") }
            if group != nil { throw ValidationError("--group and --share-group cannot be used together: a consumer group and a share group are different kinds of group") }
            if partition != nil { throw ValidationError("--partition cannot be used with --share-group: a share group hands out records of every partition") }
            if Int64(from) != nil { throw ValidationError("--from OFFSET cannot be used with --share-group; a new share group starts at earliest or latest") }
        }
        if !["accept", "release", "reject"].contains(ack) { throw ValidationError("--ack must be accept, release or reject, got '\(ack)'") }
        if ack != "accept" && shareGroup == nil { throw ValidationError("--ack applies to --share-group only") }
    }

    var isolationLevel: IsolationLevel { IsolationLevel(rawValue: isolation)! }

    func run() async throws {
        let name = try TopicName(topic)
        if let shareGroup {
            if let url = global.kafkaURL {
                throw CLIError.user("--share-group works on the embedded broker only (the librdkafka this build links has no share consumer); with \(url), use a ShareConsumer of confluent-kafka 2.15 or later")
            }
            try await runInShareGroup(name, shareGroup)
        } else if let url = global.kafkaURL {
            try await consumeFromKafka(url: url, topic: name)
        } else if group != nil {
            try await runInGroup(name)
        } else {
            try runStandalone(name)
        }
    }

    // MARK: Standalone (read-only)

    private func runStandalone(_ name: TopicName) throws {
        let topics = try global.openTopics(readOnly: true)
        let config = try topics.config(name)
        if let partition, partition >= config.partitions {
            throw CLIError.user("topic '\(name)' has partitions 0 to \(config.partitions - 1); there is no partition \(partition)")
        }
        let selected = partition.map { [$0] } ?? Array(0..<config.partitions)
        var positions: [Int64] = []
        var handles: [PartitionHandle] = []
        for p in selected {
            let handle = try PartitionHandle.readOnly(topics: topics, TopicPartition(name, p))
            handles.append(handle)
            switch from {
            case "earliest": positions.append(handle.logStartOffset)
            case "latest": positions.append(handle.highWatermark)
            default:
                let o = Int64(from)!
                if o > handle.highWatermark || o < handle.logStartOffset {
                    throw CLIError.user("offset \(o) is outside partition \(p) of '\(name)', which holds offsets \(handle.logStartOffset) to \(handle.highWatermark)")
                }
                positions.append(o)
            }
        }
        var out = OutputBuffer()
        var remaining = max ?? Int.max
        let topicJSON = JSON.string(name.rawValue)
        let format = format, follow = follow
        // Without --follow each partition is read to the end it had when we started.
        let ends = handles.map { isolationLevel == .readCommitted ? $0.lastStableOffset : $0.highWatermark }
        var failure: (any Error)?
        outer: while remaining > 0 {
            var progressed = false
            for (i, handle) in handles.enumerated() where remaining > 0 {
                if !follow && positions[i] >= ends[i] { continue }
                let data: FetchedData
                do {
                    data = try handle.read(from: positions[i], maxBytes: 1 << 20, isolation: isolationLevel)
                } catch {
                    failure = error
                    break outer
                }
                if data.isEmpty { continue }
                progressed = true
                let limit = follow ? Int64.max : ends[i]
                let start = positions[i]
                var next = start
                try data.forEachRecord(from: start) { r in
                    guard r.offset < limit, remaining > 0 else { return }
                    Self.write(r, partition: selected[i], topicJSON: topicJSON, format: format, to: &out)
                    remaining -= 1
                    next = r.offset + 1
                }
                if remaining > 0 { next = Swift.min(data.nextOffset, limit) }
                positions[i] = Swift.max(next, positions[i])
                if out.count > 1 << 16 { try out.flush() }
            }
            if !progressed {
                if !follow { break }
                try out.flush()
                usleep(50_000)
                for handle in handles { try handle.refresh() }
            }
        }
        try out.flush()
        if let failure { throw failure }
        // Everything readable was printed; damage that stopped a partition short is an error.
        if let damage = handles.lazy.compactMap({ $0.log.tailDamage }).first { throw CLIError.runtime(damage) }
    }

    // MARK: Group member

    private func runInGroup(_ name: TopicName) async throws {
        global.bootstrapLogging()
        let broker = try await EmbeddedBroker.open(path: global.dataPath, logger: Logger(label: "sluice"))
        do {
            try await consumeInGroup(name, broker: broker)
        } catch {
            await broker.close()
            throw error
        }
        await broker.close()
    }

    private func runInShareGroup(_ name: TopicName, _ groupId: String) async throws {
        global.bootstrapLogging()
        let broker = try await EmbeddedBroker.open(path: global.dataPath, logger: Logger(label: "sluice"))
        do {
            _ = try broker.partitionCount(name)
            // --from given, or a group that has no configs yet: it decides where partitions
            // without state start (a partition the group already reads keeps its place).
            let configured = await broker.shares.isShareGroup(groupId)
            if fromOption != nil || !configured {
                try await broker.shares.alterConfigs(groupId, [("share.auto.offset.reset", from)])
            }
            var config = ShareConsumerConfig(groupId: groupId)
            config.clientId = "sluice-consume"
            config.acknowledgement = .explicit
            let consumer = ShareConsumer(broker: broker, config: config, topics: [name])
            let type: AcknowledgeType = ack == "release" ? .release : ack == "reject" ? .reject : .accept
            let stop = StopSignal()
            var out = OutputBuffer()
            var remaining = max ?? Int.max
            let topicJSON = JSON.string(name.rawValue)
            let format = format
            while remaining > 0 && !stop.requested {
                // Only as many as are still wanted: acquiring more and releasing them would count deliveries.
                let batch = try await consumer.poll(maxRecords: Swift.min(remaining, 500), maxWait: follow ? .milliseconds(200) : .milliseconds(100))
                if batch.isEmpty {
                    if follow { continue }
                    break
                }
                var acks = batch.acknowledgements(.release)
                try batch.forEach { tp, r in
                    guard remaining > 0 else { return }
                    Self.write(r.view, partition: tp.partition, topicJSON: topicJSON, format: format, to: &out)
                    acks.set(r, type)
                    remaining -= 1
                }
                try out.flush()
                let refused = try await consumer.acknowledge(acks)
                for (tp, e) in refused { FileHandle.standardError.write(Data("sluice consume: acknowledgements for \(tp) were refused: \(e.message)\n".utf8)) }
            }
            try out.flush()
            await consumer.close()
        } catch {
            await broker.close()
            throw error
        }
        await broker.close()
    }

    private func consumeInGroup(_ name: TopicName, broker: EmbeddedBroker) async throws {
        let count = try broker.partitionCount(name)
        if let partition, partition >= count {
            throw CLIError.user("topic '\(name)' has partitions 0 to \(count - 1); there is no partition \(partition)")
        }
        var config = ConsumerConfig(groupId: group)
        config.isolation = isolationLevel
        config.autoOffsetReset = from == "latest" ? .latest : .earliest
        config.clientId = "sluice-consume"
        let consumer = Consumer(broker: broker, config: config)
        if let partition {
            try consumer.assign([TopicPartition(name, partition)])
        } else {
            try consumer.subscribe([name])
        }
        let stop = StopSignal()
        var out = OutputBuffer()
        var remaining = max ?? Int.max
        let topicJSON = JSON.string(name.rawValue)
        let format = format, follow = follow
        var idleRounds = 0
        while remaining > 0 && !stop.requested {
            let records = try await consumer.poll(maxWait: follow ? .milliseconds(200) : .milliseconds(50))
            var commit: [TopicPartition: Int64] = [:]
            for part in records.parts {
                let tp = part.data.topicPartition
                var next = part.from
                try part.data.forEachRecord(from: part.from) { r in
                    guard remaining > 0 else { return }
                    Self.write(r, partition: tp.partition, topicJSON: topicJSON, format: format, to: &out)
                    remaining -= 1
                    next = r.offset + 1
                }
                commit[tp] = remaining > 0 ? part.data.nextOffset : next
            }
            try out.flush()
            if !commit.isEmpty {
                try await consumer.commitSync(commit)
                idleRounds = 0
            } else if !follow {
                // Done when every assigned partition has been read to its end.
                var atEnd = !consumer.assignment.isEmpty
                for tp in consumer.assignment {
                    let end = isolationLevel == .readCommitted ? try broker.partition(tp).lastStableOffset : try broker.partition(tp).highWatermark
                    if try await consumer.position(tp) < end { atEnd = false }
                }
                idleRounds += 1
                if atEnd || idleRounds > 100 { break }
            }
        }
        try out.flush()
        await consumer.close()
    }

    /// One record in `format`. Static, with the format passed in: an option's property-wrapper
    /// getter per record would cost more than the write.
    private static func write(_ r: RecordView, partition: Int32, topicJSON: String, format: Format, to out: inout OutputBuffer) {
        write(offset: r.offset, timestamp: r.timestamp, key: r.key, value: r.value, partition: partition, topicJSON: topicJSON, format: format, to: &out) { out in
            var first = true
            r.forEachHeader { name, value in appendHeader(name, value, first: &first, to: &out) }
        }
    }

    /// One record from its parts; `headers` appends the record's headers (appendHeader each).
    static func write(offset: Int64, timestamp: Int64, key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer?, partition: Int32, topicJSON: String,
                      format: Format, to out: inout OutputBuffer, headers: (inout OutputBuffer) -> Void) {
        switch format {
        case .value:
            if let value { out.append(value) }
            out.append(10)
        case .json:
            out.append("{\"topic\":\(topicJSON),\"partition\":\(partition),\"offset\":\(offset),\"timestamp\":\(timestamp),\"key\":")
            if let key { out.append(JSON.string(key)) } else { out.append("null") }
            out.append(",\"value\":")
            if let value { out.append(JSON.string(value)) } else { out.append("null") }
            out.append(",\"headers\":{")
            headers(&out)
            out.append("}}\n")
        }
    }

    static func appendHeader(_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer?, first: inout Bool, to out: inout OutputBuffer) {
        if !first { out.append(",") }
        first = false
        out.append(JSON.string(name))
        out.append(":")
        if let value { out.append(JSON.string(value)) } else { out.append("null") }
    }
}

/// Set by SIGINT or SIGTERM so a following consumer can commit, leave its group and exit 0.
final class StopSignal: @unchecked Sendable {
    // `sources` is set once in init and only kept alive; the flag is behind its mutex.
    private let sources: [any DispatchSourceSignal]
    private let flag = Flag()

    final class Flag: Sendable {
        private let value = Mutex(false)
        func set() { value.withLock { $0 = true } }
        var isSet: Bool { value.withLock { $0 } }
    }

    init() {
        var sources: [any DispatchSourceSignal] = []
        let flag = self.flag
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { flag.set() }
            source.resume()
            sources.append(source)
        }
        self.sources = sources
    }

    var requested: Bool { flag.isSet }
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
