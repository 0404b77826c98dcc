// sluice queue list|describe|config: share groups (queues) of the embedded broker.
import ArgumentParser
import Foundation
import Logging
import SluiceBroker
import SluiceLog
import SluiceRuntime

struct QueueCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queue",
        abstract: "List share groups (queues), show their records in flight and who holds them, and set their configs.",
        discussion: """
        A share group (Kafka's KIP-932) hands each record of its topics to one of its members
        under a time-limited lock; members acknowledge records one by one. `list` and
        `describe` read the data directory read-only, so they work beside a running
        `sluice serve` (they show the state it last wrote: at every fetch and acknowledgement).
        """,
        subcommands: [List.self, Describe.self, Config.self]
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List share groups with their members and records in flight.")
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try global.requireEmbedded("queue list")
            guard DataDirectoryProbe.exists(global.dataPath) else { return }
            let inspector = try ShareInspector(topics: try global.openTopics(readOnly: true))
            var rows = [["GROUP", "MEMBERS", "PARTITIONS", "IN FLIGHT", "ACQUIRED"]]
            for id in inspector.groupIds() {
                guard let d = try inspector.describe(id) else { continue }
                let live = inspector.writerPid != nil
                rows.append([id, live ? "\(d.members.count)" : "0", "\(d.partitions.count)", "\(d.partitions.reduce(0) { $0 + $1.inFlight })",
                             "\(live ? d.partitions.reduce(0) { $0 + $1.acquired } : 0)"])
            }
            if rows.count > 1 { printTable(rows) }
        }
    }

    struct Describe: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a share group's configs, members and, per partition: start offset, end, records in flight, acquired (by member), acknowledged and archived.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The share group.") var group: String

        func run() async throws {
            try global.requireEmbedded("queue describe")
            guard DataDirectoryProbe.exists(global.dataPath) else { throw CLIError.user("no data directory at \(global.dataPath)") }
            let inspector = try ShareInspector(topics: try global.openTopics(readOnly: true))
            guard let d = try inspector.describe(group) else {
                throw CLIError.user("share group '\(group)' does not exist in \(global.dataPath) (known: \(inspector.groupIds().joined(separator: ", ").nonEmpty ?? "none"))")
            }
            let pid = inspector.writerPid
            let s = d.settings
            print("share group \(group): \(pid != nil ? d.state : "Empty")\(pid.map { " (running in sluice process \($0))" } ?? ""), epoch \(d.epoch)")
            print("lock \(Durations.format(milliseconds: s.lockMs)), max deliveries \(s.maxDeliveries), start \(s.startAtEarliest ? "earliest" : "latest"), max in flight \(s.maxInFlight), dead letters \(s.deadLetterTopic ?? "-")")
            if pid != nil {
                for m in d.members {
                    print("member \(m.memberId) client \(m.clientId)\(m.clientHost.isEmpty ? "" : " at \(m.clientHost)"): \(m.assignment.isEmpty ? "no partitions" : m.assignment.map(\.description).joined(separator: ", "))")
                }
            }
            var rows = [["TOPIC", "PARTITION", "START", "END", "IN FLIGHT", "ACQUIRED", "ACKNOWLEDGED", "ARCHIVED", "LAG", "HELD BY"]]
            for p in d.partitions {
                let held = pid == nil ? "-" : p.acquiredBy.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ").nonEmpty ?? "-"
                rows.append([p.topicPartition.topic.rawValue, "\(p.topicPartition.partition)", "\(p.startOffset)", "\(p.endOffset)", "\(p.inFlight)",
                             "\(pid == nil ? 0 : p.acquired)", "\(p.acknowledged)", "\(p.archived)", "\(max(0, p.logEndOffset - p.startOffset))", held])
            }
            printTable(rows)
        }
    }

    struct Config: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set a share group's configs in the data directory.",
            discussion: """
            Needs the data directory to itself. While `sluice serve` runs, set them over the Kafka
            protocol, as with Kafka: IncrementalAlterConfigs on the GROUP resource
            (share.record.lock.duration.ms, share.delivery.count.limit, share.auto.offset.reset,
            share.partition.max.record.locks, share.session.timeout.ms, share.heartbeat.interval.ms,
            errors.deadletterqueue.topic.name).
            """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The share group.") var group: String
        @Option(help: "How long acquired records stay locked to a member, e.g. 30s.") var lock: String?
        @Option(name: .customLong("max-deliveries"), help: "Deliveries before a record is archived (and dead-lettered).") var maxDeliveries: Int?
        @Option(help: "Where a partition without state starts: earliest or latest.") var start: String?
        @Option(name: .customLong("max-in-flight"), help: "Records in flight per partition.") var maxInFlight: Int?
        @Option(name: .customLong("dead-letter"), help: "Topic for rejected and over-delivered records ('' for none).") var deadLetter: String?
        @Option(name: .customLong("session-timeout"), help: "A member without a heartbeat for this long leaves, e.g. 45s.") var sessionTimeout: String?

        func validate() throws {
            if let start, start != "earliest" && start != "latest" { throw ValidationError("--start must be earliest or latest, got '\(start)'") }
            if let lock, Durations.milliseconds(lock) == nil { throw ValidationError("--lock '\(lock)' is not a duration such as 30s") }
            if let sessionTimeout, Durations.milliseconds(sessionTimeout) == nil { throw ValidationError("--session-timeout '\(sessionTimeout)' is not a duration such as 45s") }
        }

        func run() async throws {
            try global.requireEmbedded("queue config")
            global.bootstrapLogging()
            let broker = try await EmbeddedBroker.open(path: global.dataPath, logger: Logger(label: "sluice"))
            do {
                var changes: [(name: String, value: String?)] = []
                if let lock { changes.append(("share.record.lock.duration.ms", "\(Durations.milliseconds(lock)!)")) }
                if let maxDeliveries { changes.append(("share.delivery.count.limit", "\(maxDeliveries)")) }
                if let start { changes.append(("share.auto.offset.reset", start)) }
                if let maxInFlight { changes.append(("share.partition.max.record.locks", "\(maxInFlight)")) }
                if let deadLetter { changes.append(("errors.deadletterqueue.topic.name", deadLetter)) }
                if let sessionTimeout { changes.append(("share.session.timeout.ms", "\(Durations.milliseconds(sessionTimeout)!)")) }
                try await broker.shares.alterConfigs(group, changes)
                for (name, value) in await broker.shares.settings(of: group).configEntries { print("\(name)=\(value)") }
            } catch {
                await broker.close()
                throw error
            }
            await broker.close()
        }
    }
}

extension String {
    var nonEmpty: String? { isEmpty ? nil : self }
}
