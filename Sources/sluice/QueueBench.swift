// sluice bench queue: share-group consumption with an acknowledgement per record.
//   in-process: MEMBERS ShareConsumers (tasks of this process) share one partition of N
//             records; each record is acknowledged on its own (ACCEPT) and every poll's
//             acknowledgements are waited for until durable; next to it, in the same run, one
//             ordinary group Consumer reading the same records and committing each poll
//   wire:     confluent-kafka's ShareConsumer (the newest from pip, .build/interop-newest, or
//             --python) against the Kafka listener in this process, acknowledging each record
//             (explicit mode, commit_sync per poll), next to the same client's group consumer
import ArgumentParser
import Foundation
import Logging
import SluiceBroker
import SluiceKafkaWire
import CSluiceAllocCount
import SluiceLog
import Synchronization

struct QueueBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queue",
        abstract: "Share-group consumption acknowledging every record, in-process and with confluent-kafka's ShareConsumer, next to group consumers in the same run."
    )

    @Option(help: "Scratch directory (deleted afterwards).") var dir: String?
    @Option(help: "Records for the in-process runs.") var records: Int = 2_000_000
    @Option(help: "Records for the confluent-kafka runs.") var wireRecords: Int = 300_000
    @Option(help: "Bytes per record value.") var size: Int = 100
    @Option(help: "Share-group members in the in-process run.") var members: Int = 4
    @Option(help: "Records a member acquires per poll in the in-process run (Kafka's max.poll.records).") var batch: Int = 1000
    @Option(help: "Python with confluent-kafka 2.15+ (default: .build/interop-newest/bin/python3, else python3).") var python: String?

    func run() async throws {
        LoggingBootstrap.once(level: .warning)
        let base = dir ?? ((ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp") + "/sluice-bench-queue-\(getpid())")
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: base) }
        #if DEBUG
        emit("note: this is a debug build; build with -c release for real figures")
        #endif
        emit("sluice bench queue: \(records) records of \(size) bytes on 1 partition, \(members) share-group members acknowledging each record, \(batch) records per poll")
        let broker = try await EmbeddedBroker.open(path: base + "/data", logger: Logger(label: "sluice.bench"))
        let topic = try broker.createTopic("jobs", partitions: 1)
        try fill(broker, TopicPartition(topic, 0), count: records)

        // In-process share group.
        var settings = ShareGroupSettings()
        settings.startAtEarliest = true
        // Room for every member's poll at once (Kafka's default of 2000 records per partition
        // would leave members waiting for each other's acknowledgements).
        settings.maxInFlight = max(2_000, members * batch)
        try await broker.shares.configure("bench", settings)
        let counts = MemberCounts(members)
        let started = ContinuousClock.now
        let allocs0 = sluice_allocation_count()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for m in 0..<members {
                group.addTask {
                    var config = ShareConsumerConfig(groupId: "bench")
                    config.memberId = "bench-\(m)"
                    config.maxRecords = batch
                    config.acknowledgement = .explicit
                    let consumer = ShareConsumer(broker: broker, config: config, topics: [topic])
                    var idle = 0
                    var mine = 0
                    while idle < 2 {
                        let batch = try await consumer.poll(maxWait: .milliseconds(100))
                        if batch.isEmpty { idle += 1; continue }
                        idle = 0
                        var acks = batch.acknowledgements(.release)
                        var bytes = 0
                        try batch.forEach { _, r in
                            bytes &+= r.view.value?.count ?? 0
                            acks.set(r, .accept)
                            mine += 1
                        }
                        let refused = try await consumer.acknowledge(acks)
                        if !refused.isEmpty { throw CLIError.runtime("acknowledgements refused: \(refused)") }
                    }
                    await consumer.close()
                    counts.set(m, mine)
                }
            }
            try await group.waitForAll()
        }
        let elapsed = ContinuousClock.now - started
        let allocs = sluice_allocation_count() - allocs0
        let got = counts.values
        let total = got.reduce(0, +)
        guard total == records else { throw CLIError.runtime("the share group acknowledged \(total) of \(records) records") }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        // The idle polls at the end (2 × 100 ms per member, concurrent) are not work: taken off.
        let busy = max(0.001, seconds - 0.2)
        emit(String(format: "sluice  share group, %d members, per-record ACCEPT: %.0f records/s (%.2f s; members %@); %.2f allocations per record",
                    members, Double(records) / busy, busy, got.map(String.init).joined(separator: "/"), Double(allocs) / Double(records)))

        // The same records through one ordinary group consumer, committing each poll.
        var cc = ConsumerConfig(groupId: "bench-group")
        cc.autoOffsetReset = .earliest
        let consumer = Consumer(broker: broker, config: cc)
        try consumer.subscribe([topic])
        var read = 0
        let t0 = ContinuousClock.now
        while read < records {
            let polled = try await consumer.poll(maxWait: .milliseconds(200))
            var next: [TopicPartition: Int64] = [:]
            var bytes = 0
            try polled.forEach { tp, r in
                bytes &+= r.value?.count ?? 0
                read += 1
                next[tp] = r.offset + 1
            }
            if !next.isEmpty { try await consumer.commitSync(next) }
        }
        let groupElapsed = ContinuousClock.now - t0
        await consumer.close()
        let groupSeconds = Double(groupElapsed.components.seconds) + Double(groupElapsed.components.attoseconds) / 1e18
        emit(String(format: "sluice  group consumer, 1 member, commit per poll (peer): %.0f records/s (%.2f s); share group / group consumer = %.2f",
                    Double(records) / groupSeconds, groupSeconds, (Double(records) / busy) / (Double(records) / groupSeconds)))

        try await wireRuns(broker: broker)
        await broker.close()
    }

    private func fill(_ broker: EmbeddedBroker, _ tp: TopicPartition, count: Int) throws {
        let handle = try broker.partition(tp)
        var value = Array("{\"id\":0,\"note\":\"".utf8)
        while value.count < size - 2 { value.append(120) }
        value += Array("\"}".utf8)
        var builder = RecordBatchBuilder(capacity: 1 << 20)
        let now = currentTimeMillis()
        for _ in 0..<count {
            builder.append(key: nil, value: value, timestamp: now)
            if builder.byteCount > 512 << 10 { _ = try handle.append(&builder); builder.reset() }
        }
        if !builder.isEmpty { _ = try handle.append(&builder) }
        try handle.log.flush()
    }

    private func wireRuns(broker: EmbeddedBroker) async throws {
        let script = KafkaBench.repository + "/scripts/bench/share_bench.py"
        let newest = FileManager.default.currentDirectoryPath + "/.build/interop-newest/bin/python3"
        let py = python ?? (FileManager.default.isExecutableFile(atPath: newest) ? newest : "python3")
        guard FileManager.default.fileExists(atPath: script), KafkaBench.output(py, ["-c", "from confluent_kafka import ShareConsumer; print('ok')"]).hasPrefix("ok") else {
            emit("confluent-kafka skipped: \(py) has no confluent_kafka.ShareConsumer (2.15+), or \(script) is missing (run from the repository after scripts/test)")
            return
        }
        let port = Mutex<Int>(0)
        let probe = KafkaRequestHandler(broker: broker, config: KafkaListenerConfig(advertisedHost: "127.0.0.1", advertisedPort: 0), logger: Logger(label: "sluice.bench"))
        let listener = Task {
            try await KafkaListener(handler: probe, host: "127.0.0.1", port: 0, logger: Logger(label: "sluice.bench")).run { p in
                port.withLock { $0 = p }
                probe.listening(on: p)
            }
        }
        defer { listener.cancel() }
        while port.withLock({ $0 }) == 0 { try await Task.sleep(for: .milliseconds(10)) }
        let bootstrap = "127.0.0.1:\(port.withLock { $0 })"
        let topic = try broker.createTopic("wire-jobs", partitions: 1)
        try fill(broker, TopicPartition(topic, 0), count: wireRecords)
        var settings = ShareGroupSettings()
        settings.startAtEarliest = true
        try await broker.shares.configure("wire-share", settings)
        var rates: [String: Double] = [:]
        for (mode, label, group) in [("share", "ShareConsumer, explicit ACCEPT per record, commit_sync per poll", "wire-share"), ("group", "Consumer (group), commit per poll (peer)", "wire-group")] {
            let out = KafkaBench.output(py, [script, mode, bootstrap, "wire-jobs", "\(wireRecords)", group])
            guard let line = out.split(separator: "\n").last(where: { $0.hasPrefix("{") }),
                  let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], let s = obj["seconds"] as? Double else {
                emit("confluent-kafka \(mode) failed: \(out.suffix(400))")
                return
            }
            rates[mode] = Double(wireRecords) / s
            emit(String(format: "wire    %@ %@: %.0f records/s (%.2f s)", obj["client"] as? String ?? "confluent-kafka", label, Double(wireRecords) / s, s))
        }
        if let a = rates["share"], let b = rates["group"] { emit(String(format: "wire    ShareConsumer / group consumer = %.2f", a / b)) }
    }
}

/// Records acknowledged per member, written by the members' tasks.
private final class MemberCounts: Sendable {
    private let counts: Mutex<[Int]>
    init(_ n: Int) { counts = Mutex(Array(repeating: 0, count: n)) }
    func set(_ m: Int, _ n: Int) { counts.withLock { $0[m] = n } }
    var values: [Int] { counts.withLock { $0 } }
}
