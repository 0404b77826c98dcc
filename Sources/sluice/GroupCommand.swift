// sluice group list|describe|reset-offsets
import ArgumentParser
import Foundation
import Logging
import SluiceBroker
import SluiceLog

struct GroupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "group",
        abstract: "List consumer groups, show their members, offsets and lag, and reset offsets.",
        subcommands: [List.self, Describe.self, ResetOffsets.self]
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List consumer groups (type classic, or consumer for KIP-848 groups) and share groups (type share, see `sluice queue`).")
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            if let url = global.kafkaURL {
                try await listOnKafka(url: url)
                return
            }
            global.bootstrapLogging()
            if !DataDirectoryProbe.exists(global.dataPath) { return }
            let topics = try global.openTopics(readOnly: true)
            let inspector = try GroupInspector(topics: topics)
            let shares = try ShareInspector(topics: topics)
            var rows = [["GROUP", "TYPE", "STATE", "MEMBERS"]]
            for id in inspector.groupIds() {
                guard let r = try inspector.report(id) else { continue }
                rows.append([id, r.snapshot?.groupType ?? "classic", r.effectiveState, r.writerPid != nil ? "\(r.snapshot?.members.count ?? 0)" : "0"])
            }
            for id in shares.groupIds() {
                guard let d = try shares.describe(id) else { continue }
                let live = shares.writerPid != nil
                rows.append([id, "share", live ? d.state : "Empty", live ? "\(d.members.count)" : "0"])
            }
            guard rows.count > 1 else { return }
            printTable([rows[0]] + rows.dropFirst().sorted { $0[0] < $1[0] })
        }
    }

    struct Describe: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a group's state, generation, members and, per partition, committed offset, end offset, lag and (exactly-once pipelines) the lane's transactional id.")
        @OptionGroup var global: GlobalOptions
        @Argument var group: String

        func run() async throws {
            if let url = global.kafkaURL {
                try await describeOnKafka(url: url)
                return
            }
            let inspector = try GroupInspector(topics: try global.openTopics(readOnly: true))
            guard let r = try inspector.report(group) else { throw CLIError.user("group '\(group)' does not exist (it has no committed offsets)") }
            let live = r.writerPid != nil
            var header = "group \(group): \(r.effectiveState)"
            if let s = r.snapshot {
                header += ", generation \(s.generation)"
                if live, let p = s.protocolName { header += ", assignor \(p)" }
            }
            if let pid = r.writerPid { header += " (running in sluice process \(pid))" }
            print(header)
            var owner: [String: String] = [:]
            if live, let s = r.snapshot {
                for m in s.members {
                    print("member \(m.memberId)\(m.groupInstanceId.map { " (instance \($0))" } ?? "") client \(m.clientId): \(m.partitions.isEmpty ? "no partitions" : m.partitions.joined(separator: ", "))")
                    for p in m.partitions { owner[p] = m.memberId }
                }
            }
            // Exactly-once pipelines commit each lane through its own transactional id.
            let lanes = try inspector.lanes(group)
            var rows = [["TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "MEMBER"] + (lanes.isEmpty ? [] : ["TRANSACTIONAL ID", "EPOCH", "TXN STATE"])]
            for p in r.partitions {
                var row = [p.topicPartition.topic.rawValue, "\(p.topicPartition.partition)", p.committed.map(String.init) ?? "-", "\(p.end)", p.lag.map(String.init) ?? "-", owner[p.topicPartition.description] ?? "-"]
                if !lanes.isEmpty {
                    let t = lanes[p.topicPartition]
                    row += [t?.transactionalId ?? "-", t.map { "\($0.epoch)" } ?? "-", t?.state.rawValue ?? "-"]
                }
                rows.append(row)
            }
            printTable(rows)
        }
    }

    struct ResetOffsets: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "reset-offsets",
            abstract: "Set a group's committed offsets for a topic; refused while the group has live members."
        )
        @OptionGroup var global: GlobalOptions
        @Argument var group: String
        @Option(help: "Topic whose partitions to reset.") var topic: String
        @Option(help: "earliest, latest, an offset, or a date-time (2026-11-25T08:00:00Z: the first record at or after it).") var to: String?
        @Option(name: .customLong("shift-by"), parsing: .unconditional, help: "Move each partition's committed offset by N (negative: back), kept within the partition's records.") var shiftBy: Int64?

        func validate() throws {
            switch (to, shiftBy) {
            case (nil, nil): throw ValidationError("give --to earliest|latest|OFFSET|DATETIME or --shift-by N")
            case (.some, .some): throw ValidationError("--to and --shift-by cannot be combined; give one")
            case (let to?, nil):
                if to != "earliest" && to != "latest" && Int64(to) == nil && Self.parseDate(to) == nil {
                    throw ValidationError("--to must be earliest, latest, an offset or an ISO 8601 date-time such as 2026-11-25T08:00:00Z; got '\(to)'")
                }
            case (nil, .some): break
            }
            if group.isEmpty { throw ValidationError("the group name must not be empty") }
        }

        static func parseDate(_ s: String) -> Int64? {
            let f = ISO8601DateFormatter()
            for options: ISO8601DateFormatter.Options in [[.withInternetDateTime], [.withInternetDateTime, .withFractionalSeconds], [.withFullDate]] {
                f.formatOptions = options
                if let d = f.date(from: s) { return Int64(d.timeIntervalSince1970 * 1000) }
            }
            return nil
        }

        func run() async throws {
            if let url = global.kafkaURL {
                try await resetOnKafka(url: url)
                return
            }
            let name = try TopicName(topic)
            global.bootstrapLogging()
            // Members live in the process that holds the data directory.
            if let pid = DataDirectory.writerPid(global.dataPath) {
                let topics = try global.openTopics(readOnly: true)
                if let r = try GroupInspector(topics: topics).report(group), let s = r.snapshot, !s.members.isEmpty, s.state != "Empty" {
                    throw CLIError.user("group '\(group)' has \(s.members.count) live member\(s.members.count == 1 ? "" : "s") in sluice process \(pid); stop its consumers before resetting offsets")
                }
            }
            let broker = try await EmbeddedBroker.open(path: global.dataPath, logger: Logger(label: "sluice"))
            do {
                let count = try broker.partitionCount(name)
                var offsets: [TopicPartition: CommittedOffset] = [:]
                let committed = shiftBy == nil ? [:] : await broker.groups.committedOffsets(groupId: group)
                for p in 0..<count {
                    let tp = TopicPartition(name, p)
                    let h = try broker.partition(tp)
                    let target: Int64
                    if let shiftBy {
                        // Kafka's --shift-by: from the committed offset (the log start when
                        // the group never committed), clamped to the partition's records.
                        let from = committed[tp]?.offset ?? h.logStartOffset
                        let moved = from.addingReportingOverflow(shiftBy)
                        target = moved.overflow ? (shiftBy < 0 ? h.logStartOffset : h.highWatermark)
                            : min(max(moved.partialValue, h.logStartOffset), h.highWatermark)
                        offsets[tp] = CommittedOffset(offset: target, metadata: "reset-offsets --shift-by \(shiftBy)")
                        continue
                    }
                    let to = to!  // validate() requires --to when --shift-by is absent
                    switch to {
                    case "earliest": target = h.logStartOffset
                    case "latest": target = h.highWatermark
                    default:
                        if let o = Int64(to) {
                            guard o >= h.logStartOffset && o <= h.highWatermark else {
                                throw CLIError.user("offset \(o) is outside \(tp), which holds offsets \(h.logStartOffset) to \(h.highWatermark)")
                            }
                            target = o
                        } else {
                            target = try h.log.offset(forTimestamp: Self.parseDate(to)!) ?? h.highWatermark
                        }
                    }
                    offsets[tp] = CommittedOffset(offset: target, metadata: "reset-offsets --to \(to)")
                }
                try await broker.groups.resetOffsets(groupId: group, to: offsets)
                var rows = [["TOPIC", "PARTITION", "NEW-OFFSET"]]
                for tp in offsets.keys.sorted() { rows.append([tp.topic.rawValue, "\(tp.partition)", "\(offsets[tp]!.offset)"]) }
                printTable(rows)
            } catch {
                await broker.close()
                throw error
            }
            await broker.close()
        }
    }
}
