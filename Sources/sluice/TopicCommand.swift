// sluice topic create|list|describe|delete
import ArgumentParser
import Foundation
import SluiceBroker
import SluiceRuntime

struct TopicCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topic",
        abstract: "Create, list, describe and delete topics.",
        subcommands: [Create.self, List.self, Describe.self, Delete.self]
    )

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a topic.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Topic name: letters, digits, '.', '_' and '-', at most 249 characters.") var name: String
        @Option(help: "Number of partitions.") var partitions: Int32 = 1
        @Option(help: "When writes are synced to disk: always, interval or never.") var flush: String = "interval"
        @Option(name: .customLong("flush-interval"), help: "Group-commit period for --flush interval, e.g. 50ms.") var flushInterval: String = "50ms"
        @Option(help: "Delete segments older than this, e.g. 7d, 12h; 'forever' keeps them.") var retention: String = "7d"
        @Option(name: .customLong("retention-bytes"), help: "Delete the oldest segments while a partition is bigger than this, e.g. 10GiB; 'unlimited' by default.") var retentionBytes: String = "unlimited"
        @Option(name: .customLong("segment-bytes"), help: "Roll to a new segment file at this size.") var segmentBytes: String = "128MiB"
        @Option(name: .customLong("segment-age"), help: "Roll to a new segment file when the current one is this old.") var segmentAge: String = "7d"

        func validate() throws {
            guard ["always", "interval", "never"].contains(flush) else {
                throw ValidationError("--flush must be always, interval or never, got '\(flush)'")
            }
            guard (Durations.milliseconds(flushInterval) ?? 0) > 0 else { throw ValidationError("--flush-interval '\(flushInterval)' is not a positive duration such as 50ms") }
            guard Durations.milliseconds(retention) != nil else { throw ValidationError("--retention '\(retention)' is not a duration such as 7d, 12h or forever") }
            guard Durations.bytes(retentionBytes, unlimited: true) != nil else { throw ValidationError("--retention-bytes '\(retentionBytes)' is not a size such as 10GiB or unlimited") }
            guard (Durations.bytes(segmentBytes) ?? 0) >= 1024 else { throw ValidationError("--segment-bytes '\(segmentBytes)' is not a size of at least 1KiB") }
            guard (Durations.milliseconds(segmentAge) ?? 0) > 0 else { throw ValidationError("--segment-age '\(segmentAge)' is not a positive duration") }
        }

        func run() throws {
            try global.requireEmbedded("topic")
            let topicName = try TopicName(name)
            if topicName.isInternal { throw topicName.reservedError }
            let config = TopicConfig(
                partitions: partitions,
                flush: flush,
                flushIntervalMs: Durations.milliseconds(flushInterval)!,
                retentionMs: Durations.milliseconds(retention)!,
                retentionBytes: Durations.bytes(retentionBytes, unlimited: true)!,
                segmentBytes: Int(Durations.bytes(segmentBytes)!),
                segmentMs: Durations.milliseconds(segmentAge)!
            )
            try config.validate()
            let topics = try global.openTopics(readOnly: false)
            defer { topics.close() }
            try topics.create(topicName, config: config)
            print("created topic \(topicName) with \(partitions) partition\(partitions == 1 ? "" : "s") (\(summary(config)))")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List topic names.")
        @OptionGroup var global: GlobalOptions

        func run() throws {
            try global.requireEmbedded("topic")
            global.bootstrapLogging()
            if !DataDirectoryProbe.exists(global.dataPath) { return }
            let topics = try global.openTopics(readOnly: true)
            for name in try topics.list() { print(name) }
        }
    }

    struct Describe: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a topic's settings and, per partition, its offsets and size on disk.")
        @OptionGroup var global: GlobalOptions
        @Argument var name: String

        func run() throws {
            try global.requireEmbedded("topic")
            let topicName = try TopicName(name)
            let topics = try global.openTopics(readOnly: true)
            let d = try topics.describe(topicName)
            print("topic \(d.name): \(d.config.partitions) partition\(d.config.partitions == 1 ? "" : "s"), \(summary(d.config))")
            let rows = [["PARTITION", "START", "END", "RECORDS", "BYTES", "SEGMENTS"]] + d.partitions.map {
                ["\($0.partition)", "\($0.logStartOffset)", "\($0.logEndOffset)", "\($0.logEndOffset - $0.logStartOffset)", "\($0.sizeInBytes)", "\($0.segments)"]
            }
            printTable(rows)
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a topic and all its data.")
        @OptionGroup var global: GlobalOptions
        @Argument var name: String

        func run() throws {
            try global.requireEmbedded("topic")
            let topicName = try TopicName(name)
            if topicName.isInternal { throw topicName.reservedError }
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
