// sluice topic create|list|describe|delete
import ArgumentParser
import Foundation
import SluiceBroker
import SluiceRuntime

struct TopicCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topic",
        abstract: "Create, list, describe and delete topics.",
        subcommands: [Create.self, List.self, Describe.self, Delete.self]
    )

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a topic.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Topic name: letters, digits, '.', '_' and '-', at most 249 characters.") var name: String
        @Option(help: "Number of partitions.") var partitions: Int32 = 1
        // Optional so that a Kafka cluster is sent only what was asked for (its own defaults
        // hold otherwise); the embedded broker's defaults are in the help.
        @Option(help: "When writes are synced to disk: always, interval or never (default interval).") var flush: String?
        @Option(name: .customLong("flush-interval"), help: "Group-commit period for --flush interval, e.g. 50ms (the default).") var flushInterval: String?
        @Option(help: "Delete segments older than this, e.g. 7d (the default), 12h; 'forever' keeps them.") var retention: String?
        @Option(name: .customLong("retention-bytes"), help: "Delete the oldest segments while a partition is bigger than this, e.g. 10GiB; 'unlimited' by default.") var retentionBytes: String?
        @Option(name: .customLong("segment-bytes"), help: "Roll to a new segment file at this size (default 128MiB).") var segmentBytes: String?
        @Option(name: .customLong("segment-age"), help: "Roll to a new segment file when the current one is this old (default 7d).") var segmentAge: String?

        func validate() throws {
            if let flush, !["always", "interval", "never"].contains(flush) {
                throw ValidationError("--flush must be always, interval or never, got '\(flush)'")
            }
            if let flushInterval, (Durations.milliseconds(flushInterval) ?? 0) <= 0 { throw ValidationError("--flush-interval '\(flushInterval)' is not a positive duration such as 50ms") }
            if let retention, Durations.milliseconds(retention) == nil { throw ValidationError("--retention '\(retention)' is not a duration such as 7d, 12h or forever") }
            if let retentionBytes, Durations.bytes(retentionBytes, unlimited: true) == nil { throw ValidationError("--retention-bytes '\(retentionBytes)' is not a size such as 10GiB or unlimited") }
            if let segmentBytes, (Durations.bytes(segmentBytes) ?? 0) < 1024 { throw ValidationError("--segment-bytes '\(segmentBytes)' is not a size of at least 1KiB") }
            if let segmentAge, (Durations.milliseconds(segmentAge) ?? 0) <= 0 { throw ValidationError("--segment-age '\(segmentAge)' is not a positive duration") }
        }

        func run() async throws {
            let topicName = try TopicName(name)
            if topicName.isInternal { throw topicName.reservedError }
            if let url = global.kafkaURL {
                try await createOnKafka(url: url, topicName)
                return
            }
            let config = TopicConfig(
                partitions: partitions,
                flush: flush ?? "interval",
                flushIntervalMs: Durations.milliseconds(flushInterval ?? "50ms")!,
                retentionMs: Durations.milliseconds(retention ?? "7d")!,
                retentionBytes: Durations.bytes(retentionBytes ?? "unlimited", unlimited: true)!,
                segmentBytes: Int(Durations.bytes(segmentBytes ?? "128MiB")!),
                segmentMs: Durations.milliseconds(segmentAge ?? "7d")!
            )
            try config.validate()
            let topics = try global.openTopics(readOnly: false)
            defer { topics.close() }
            try topics.create(topicName, config: config)
            print("created topic \(topicName) with \(partitions) partition\(partitions == 1 ? "" : "s") (\(summary(config)))")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List topic names.")
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            if let url = global.kafkaURL {
                try await listOnKafka(url: url)
                return
            }
            global.bootstrapLogging()
            if !DataDirectoryProbe.exists(global.dataPath) { return }
            let topics = try global.openTopics(readOnly: true)
            for name in try topics.list() { print(name) }
        }
    }

    struct Describe: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a topic's settings and, per partition, its offsets and size on disk (on a Kafka cluster: its leader instead of the size).")
        @OptionGroup var global: GlobalOptions
        @Argument var name: String

        func run() async throws {
            let topicName = try TopicName(name)
            if let url = global.kafkaURL {
                try await describeOnKafka(url: url, topicName)
                return
            }
            let topics = try global.openTopics(readOnly: true)
            let d = try topics.describe(topicName)
            print("topic \(d.name): \(d.config.partitions) partition\(d.config.partitions == 1 ? "" : "s"), \(summary(d.config))")
            let rows = [["PARTITION", "START", "END", "RECORDS", "BYTES", "SEGMENTS"]] + d.partitions.map {
                ["\($0.partition)", "\($0.logStartOffset)", "\($0.logEndOffset)", "\($0.logEndOffset - $0.logStartOffset)", "\($0.sizeInBytes)", "\($0.segments)"]
            }
            printTable(rows)
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a topic and all its data.")
        @OptionGroup var global: GlobalOptions
        @Argument var name: String

        func run() async throws {
            let topicName = try TopicName(name)
            if topicName.isInternal { throw topicName.reservedError }
            if let url = global.kafkaURL {
                try await deleteOnKafka(url: url, topicName)
                return
            }
            let topics = try global.openTopics(readOnly: false)
            defer { topics.close() }
            try topics.delete(topicName)
            print("deleted topic \(topicName)")
        }
    }
}

func summary(_ c: TopicConfig) -> String {
    let flush = c.flush == "interval" ? "flush every \(Durations.format(milliseconds: c.flushIntervalMs))" : "flush \(c.flush)"
    var s = "\(flush), retention \(Durations.format(milliseconds: c.retentionMs))"
    if c.retentionBytes >= 0 { s += " or \(Durations.format(bytes: c.retentionBytes))" }
    s += ", segments of \(Durations.format(bytes: Int64(c.segmentBytes)))"
    return s
}

func printTable(_ rows: [[String]]) {
    guard let first = rows.first else { return }
    var widths = [Int](repeating: 0, count: first.count)
    for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
    for row in rows {
        let line = row.enumerated().map { i, cell in
            i == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[i] - cell.count + 2)
        }.joined()
        print(line)
    }
}

enum DataDirectoryProbe {
    static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }
}
