// `--broker kafka://…` for produce, consume, topic and group: the same commands and the same
// output as on the embedded broker, against any Kafka-protocol cluster (Apache Kafka,
// Redpanda, `sluice serve`) through librdkafka, when sluice is built with the RdKafka trait.
import ArgumentParser
import Foundation
import Logging
import SluiceBroker
import SluiceLog
import SluiceRuntime
import Synchronization
#if RdKafka
import SluiceComponents
import SluiceRdKafka
#endif

enum KafkaCLI {
    static func unavailable(_ url: String) -> CLIError {
        CLIError.user("--broker \(url) needs the librdkafka client, and this sluice was built without it; build with `swift build --traits RdKafka` (needs Debian's librdkafka-dev)")
    }

    #if RdKafka
    /// librdkafka's own lines show from errors up unless --log-level asks for more: a
    /// command that fails says why once, in its own sentence.
    static func logger(_ global: GlobalOptions) -> Logger {
        global.bootstrapLogging()
        var logger = Logger(label: "sluice")
        if global.logLevel == "warning" { logger.logLevel = .error }
        return logger
    }

    static func admin(_ global: GlobalOptions, _ url: String, logger: Logger) throws -> RdAdmin {
        do { return try RdAdmin(url: url, properties: global.brokerOptionMap, label: "--broker-option", logger: logger) } catch let e as RdKafkaError {
            throw CLIError.user(e.message)
        }
    }

    /// A librdkafka failure as the command's one sentence: exit 1 for what was asked wrongly
    /// (a missing topic, a bad setting), 2 for the cluster or the connection.
    static func sentence(_ error: any Error) -> any Error {
        guard let e = error as? RdKafkaError else { return error }
        return e.isUserError ? CLIError.user(e.message) : CLIError.runtime(e.message)
    }

    /// Runs `body` with an admin client for the cluster, then closes it.
    static func withAdmin<T>(_ global: GlobalOptions, _ url: String, _ body: (RdAdmin, Logger) async throws -> T) async throws -> T {
        let logger = logger(global)
        let admin = try admin(global, url, logger: logger)
        do {
            let result = try await body(admin, logger)
            await admin.close()
            return result
        } catch {
            await admin.close()
            throw sentence(error)
        }
    }
    #endif
}

/// Waits on the calling thread (a sync command's own, never the cooperative pool) for an
/// async operation that runs elsewhere.
func blockingAwait<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) throws -> T {
    let result = Mutex<Result<T, any Error>?>(nil)
    let done = DispatchSemaphore(value: 0)
    Task {
        let r: Result<T, any Error>
        do { r = .success(try await operation()) } catch { r = .failure(error) }
        result.withLock { $0 = r }
        done.signal()
    }
    done.wait()
    return try result.withLock { $0! }.get()
}

// MARK: produce

extension Produce {
    func produceToKafka(url: String, topic name: TopicName) throws {
        #if RdKafka
        let admin = try KafkaCLI.admin(global, url, logger: KafkaCLI.logger(global))
        defer { _ = try? blockingAwait { await admin.close() } }
        do {
            let partitions = Int32(try blockingAwait { try await admin.topic(name.rawValue) }.partitions.count)
            try checkPartition(name, partitions: partitions)
            var target = KafkaTarget(producer: admin.producer, topic: name.rawValue)
            let total = try produceLines(into: &target, partitions: partitions)
            FileHandle.standardError.write(Data("wrote \(total) record\(total == 1 ? "" : "s") to \(name) on \(url)\n".utf8))
        } catch {
            throw KafkaCLI.sentence(error)
        }
        #else
        throw KafkaCLI.unavailable(url)
        #endif
    }
}

#if RdKafka
/// librdkafka batches, compresses and retries on its own; keyless records are placed by its
/// sticky partitioner, keyed ones by murmur2 as on the embedded broker.
struct KafkaTarget: ProduceTarget {
    let producer: RdProducer
    let topic: String

    mutating func add(partition: Int32?, key: [UInt8]?, value: UnsafeRawBufferPointer, timestamp: Int64) throws {
        if let key {
            try key.withUnsafeBytes { try producer.produce(topic: topic, partition: partition, key: $0, value: value, timestamp: timestamp) }
        } else {
            try producer.produce(topic: topic, partition: partition, key: nil, value: value, timestamp: timestamp)
        }
    }

    /// Every record handed over is acknowledged by the cluster (acks=all).
    mutating func appendAndSync() throws { try producer.flushBlocking() }
    mutating func push() throws {}
}
#endif

// MARK: consume

extension Consume {
    func consumeFromKafka(url: String, topic name: TopicName) async throws {
        #if RdKafka
        try await KafkaCLI.withAdmin(global, url) { admin, logger in
            let count = Int32(try await admin.topic(name.rawValue).partitions.count)
            if let partition, partition >= count {
                throw CLIError.user("topic '\(name)' has partitions 0 to \(count - 1); there is no partition \(partition)")
            }
            let consumer = try RdConsoleConsumer(url: url, properties: global.brokerOptionMap, label: "--broker-option", topic: name.rawValue, group: group,
                                                 earliest: from != "latest", readCommitted: isolationLevel == .readCommitted, logger: logger)
            do {
                if group == nil || partition != nil {
                    var starts: [(partition: Int32, start: RdConsoleConsumer.Start)] = []
                    for p in partition.map({ [$0] }) ?? Array(0..<count) {
                        switch from {
                        case _ where group != nil: starts.append((p, .committed))
                        case "earliest": starts.append((p, .earliest))
                        case "latest": starts.append((p, .latest))
                        default:
                            let o = Int64(from)!
                            let (low, high) = try await admin.watermarks(name.rawValue, p)
                            if o > high || o < low {
                                throw CLIError.user("offset \(o) is outside partition \(p) of '\(name)', which holds offsets \(low) to \(high)")
                            }
                            starts.append((p, .offset(o)))
                        }
                    }
                    try await consumer.assign(starts)
                } else {
                    try await consumer.subscribe()
                }
                try await print(from: consumer, topic: name)
            } catch {
                await consumer.close()
                throw error
            }
            await consumer.close()
        }
        #else
        throw KafkaCLI.unavailable(url)
        #endif
    }

    #if RdKafka
    private func print(from consumer: RdConsoleConsumer, topic name: TopicName) async throws {
        let stop = StopSignal()
        var out = OutputBuffer()
        var remaining = max ?? Int.max
        let topicJSON = JSON.string(name.rawValue)
        let format = format, follow = follow, inGroup = group != nil
        let started = ContinuousClock.now
        while remaining > 0 && !stop.requested {
            let parts = try await consumer.poll(maxWaitMs: 200, maxRecords: Swift.min(remaining, 100_000))
            var commit: [Int32: Int64] = [:]
            for part in parts {
                for batch in part.batches {
                    for i in 0..<batch.count where remaining > 0 {
                        let slot = batch.slots[i]
                        batch.withBytes(slot.key) { key in
                            batch.withBytes(slot.value) { value in
                                Self.write(offset: slot.offset, timestamp: slot.timestamp, key: key, value: value, partition: part.partition,
                                           topicJSON: topicJSON, format: format, to: &out) { out in
                                    var first = true
                                    for h in batch.headers[Int(slot.headerStart)..<Int(slot.headerStart + slot.headerCount)] {
                                        batch.withBytes(h.name) { n in
                                            batch.withBytes(h.value) { v in Self.appendHeader(n ?? UnsafeRawBufferPointer(start: nil, count: 0), v, first: &first, to: &out) }
                                        }
                                    }
                                }
                            }
                        }
                        remaining -= 1
                        commit[part.partition] = slot.offset + 1
                    }
                }
                if out.count > 1 << 16 { try out.flush() }
            }
            try out.flush()
            if inGroup && !commit.isEmpty { try await consumer.commit(commit) }
            if parts.isEmpty && !follow {
                if consumer.caughtUp { break }
                if !consumer.hasAssignment && started.duration(to: .now) > .seconds(30) {
                    throw CLIError.runtime("no partition of '\(name)' was assigned to this consumer within 30 s")
                }
            }
        }
        try out.flush()
    }
    #endif
}

// MARK: topic

extension TopicCommand.Create {
    func createOnKafka(url: String, _ topicName: TopicName) async throws {
        #if RdKafka
        // Only what was asked for, in Kafka's names; the cluster's defaults hold otherwise.
        var configs: [String: String] = [:]
        if let retention { configs["retention.ms"] = "\(Durations.milliseconds(retention)!)" }
        if let retentionBytes { configs["retention.bytes"] = "\(Durations.bytes(retentionBytes, unlimited: true)!)" }
        if let segmentBytes { configs["segment.bytes"] = "\(Durations.bytes(segmentBytes)!)" }
        if let segmentAge { configs["segment.ms"] = "\(Durations.milliseconds(segmentAge)!)" }
        switch flush ?? (flushInterval != nil ? "interval" : nil) {
        case "always": configs["flush.messages"] = "1"
        case "interval": configs["flush.ms"] = "\(Durations.milliseconds(flushInterval ?? "50ms")!)"
        case "never": configs["flush.ms"] = "\(Int64.max)"  // Kafka's own default: the OS decides
        default: break
        }
        try await KafkaCLI.withAdmin(global, url) { admin, _ in
            try await admin.createTopic(topicName.rawValue, partitions: partitions, configs: configs)
        }
        Swift.print("created topic \(topicName) with \(partitions) partition\(partitions == 1 ? "" : "s") on \(url)")
        #else
        throw KafkaCLI.unavailable(url)
        #endif
    }
}

extension TopicCommand.List {
    func listOnKafka(url: String) async throws {
        #if RdKafka
        let topics = try await KafkaCLI.withAdmin(global, url) { admin, _ in try await admin.topics() }
        for t in topics { Swift.print(t.name) }
        #else
        throw KafkaCLI.unavailable(url)
        #endif
    }
}

extension TopicCommand.Describe {
    func describeOnKafka(url: String, _ topicName: TopicName) async throws {
        #if RdKafka
        try await KafkaCLI.withAdmin(global, url) { admin, _ in
            let info = try await admin.topic(topicName.rawValue)
            let configs = Dictionary(try await admin.topicConfigs(topicName.rawValue).map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
            var line = "topic \(info.name): \(info.partitions.count) partition\(info.partitions.count == 1 ? "" : "s") on \(url)"
            if let ms = configs["retention.ms"].flatMap({ $0.flatMap(Int64.init) }) {
                line += ", retention \(Durations.format(milliseconds: ms))"
                if let b = configs["retention.bytes"].flatMap({ $0.flatMap(Int64.init) }), b >= 0 { line += " or \(Durations.format(bytes: b))" }
            }
            if let b = configs["segment.bytes"].flatMap({ $0.flatMap(Int64.init) }) { line += ", segments of \(Durations.format(bytes: b))" }
            Swift.print(line)
            var rows = [["PARTITION", "LEADER", "START", "END", "RECORDS"]]
            for p in info.partitions {
                let (low, high) = try await admin.watermarks(info.name, p.partition)
                rows.append(["\(p.partition)", "\(p.leader)", "\(low)", "\(high)", "\(high - low)"])
            }
            printTable(rows)
        }
        #else
        throw KafkaCLI.unavailable(url)
        #endif
    }
}

extension TopicCommand.Delete {
    func deleteOnKafka(url: String, _ topicName: TopicName) async throws {
        #if RdKafka
        try await KafkaCLI.withAdmin(global, url) { admin, _ in try await admin.deleteTopic(topicName.rawValue) }
        Swift.print("deleted topic \(topicName) on \(url)")
        #else
        throw KafkaCLI.unavailable(url)
        #endif
    }
}

// MARK: group

extension GroupCommand.List {
    func listOnKafka(url: String) async throws {
        #if RdKafka
        try await KafkaCLI.withAdmin(global, url) { admin, _ in
            let groups = try await admin.groups()
            guard !groups.isEmpty else { return }
            let described = Dictionary(try await admin.describeGroups(groups.map(\.id)).map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
            var rows = [["GROUP", "STATE", "MEMBERS"]]
            for g in groups { rows.append([g.id, described[g.id]?.state ?? g.state, "\(described[g.id]?.members.count ?? 0)"]) }
            printTable(rows)
        }
        #else
        throw KafkaCLI.unavailable(url)
        #endif
    }
}

extension GroupCommand.Describe {
    func describeOnKafka(url: String) async throws {
        #if RdKafka
        try await KafkaCLI.withAdmin(global, url) { admin, _ in
            guard let d = try await admin.describeGroups([group]).first else { throw CLIError.user("group '\(group)' does not exist on \(url)") }
            let committed = try await admin.committedOffsets(group)
            if d.members.isEmpty && committed.isEmpty && (d.state == "Dead" || d.state == "Empty" || d.state == "Unknown") {
                throw CLIError.user("group '\(group)' does not exist on \(url) (it has no members and no committed offsets)")
            }
            Swift.print("group \(group): \(d.state)\(d.assignor.isEmpty ? "" : ", assignor \(d.assignor)") on \(url)")
            var owner: [RdTopicPartition: String] = [:]
            for m in d.members {
                let owned = m.assignment.map(\.text)
                Swift.print("member \(m.memberId)\(m.instanceId.map { " (instance \($0))" } ?? "") client \(m.clientId) host \(m.host): \(owned.isEmpty ? "no partitions" : owned.joined(separator: ", "))")
                for tp in m.assignment { owner[tp] = m.memberId }
            }
            // Every partition of each topic the group commits or is assigned.
            let topics = Set(committed.keys.map(\.topic)).union(owner.keys.map(\.topic)).sorted()
            var rows = [["TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "MEMBER"]]
            for topic in topics {
                guard let info = try? await admin.topic(topic) else { continue }
                for p in info.partitions {
                    let tp = RdTopicPartition(topic, p.partition)
                    let end = try await admin.watermarks(topic, p.partition).high
                    let c = committed[tp]
                    rows.append([topic, "\(p.partition)", c.map(String.init) ?? "-", "\(end)", c.map { "\(Swift.max(0, end - $0))" } ?? "-", owner[tp] ?? "-"])
                }
            }
            printTable(rows)
        }
        #else
        throw KafkaCLI.unavailable(url)
        #endif
    }
}

extension GroupCommand.ResetOffsets {
    func resetOnKafka(url: String) async throws {
        #if RdKafka
        let name = try TopicName(topic)
        try await KafkaCLI.withAdmin(global, url) { admin, _ in
            if let d = try await admin.describeGroups([group]).first, !d.members.isEmpty {
                throw CLIError.user("group '\(group)' has \(d.members.count) live member\(d.members.count == 1 ? "" : "s") on \(url); stop its consumers before resetting offsets")
            }
            let partitions = try await admin.topic(name.rawValue).partitions.map(\.partition)
            let committed = shiftBy == nil ? [:] : try await admin.committedOffsets(group)
            var byTime: [Int32: Int64?] = [:]
            if let to, to != "earliest", to != "latest", Int64(to) == nil {
                let ms = Self.parseDate(to)!  // validate() checked
                byTime = try await admin.offsetsForTimes(name.rawValue, Dictionary(uniqueKeysWithValues: partitions.map { ($0, ms) }))
            }
            var offsets: [RdTopicPartition: Int64] = [:]
            for p in partitions {
                let tp = RdTopicPartition(name.rawValue, p)
                let (low, high) = try await admin.watermarks(name.rawValue, p)
                if let shiftBy {
                    // Kafka's --shift-by: from the committed offset (the log start when the
                    // group never committed), kept within the partition's records.
                    let moved = (committed[tp] ?? low).addingReportingOverflow(shiftBy)
                    offsets[tp] = moved.overflow ? (shiftBy < 0 ? low : high) : Swift.min(Swift.max(moved.partialValue, low), high)
                    continue
                }
                switch to! {
                case "earliest": offsets[tp] = low
                case "latest": offsets[tp] = high
                case let text:
                    if let o = Int64(text) {
                        guard o >= low && o <= high else { throw CLIError.user("offset \(o) is outside \(tp.text), which holds offsets \(low) to \(high)") }
                        offsets[tp] = o
                    } else {
                        offsets[tp] = (byTime[p] ?? nil) ?? high
                    }
                }
            }
            try await admin.alterOffsets(group, offsets)
            var rows = [["TOPIC", "PARTITION", "NEW-OFFSET"]]
            for tp in offsets.keys.sorted() { rows.append([tp.topic, "\(tp.partition)", "\(offsets[tp]!)"]) }
            printTable(rows)
        }
        #else
        throw KafkaCLI.unavailable(url)
        #endif
    }
}
