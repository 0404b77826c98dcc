// sluice bench broker: producer → embedded broker → group consumer in one process, end-to-end
// latency at a fixed rate (HDR histogram), and how long a consumer group takes to rebalance.
import ArgumentParser
import Foundation
import Histogram
import Logging
import SluiceBroker
import SluiceLog

struct BrokerBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "broker",
        abstract: "Benchmark the embedded broker: throughput, end-to-end latency, rebalance time."
    )

    @Option(help: "Scratch directory (deleted afterwards); default a new directory under $TMPDIR or /tmp.") var dir: String?
    @Option(help: "Records for the throughput runs.") var records: Int = 5_000_000
    @Option(help: "Partitions of the throughput topic.") var partitions: Int32 = 6
    @Option(name: .customLong("batch-size"), help: "Records per producer batch.") var batchSize: Int = 1000
    @Option(name: .customLong("value-size"), help: "Bytes per record value.") var valueSize: Int = 100
    @Option(name: .customLong("latency-rate"), help: "Records per second for the latency run.") var latencyRate: Int = 50_000
    @Option(name: .customLong("latency-seconds"), help: "Length of the latency run.") var latencySeconds: Int = 5
    @Option(name: .customLong("latency-flush"), help: "Flush policy of the latency topic: always, interval or never.") var latencyFlush: String = "interval"
    @Option(name: .customLong("rebalance-partitions"), help: "Partitions for the rebalance run.") var rebalancePartitions: Int32 = 64
    @Option(name: .customLong("rebalance-runs"), help: "Leaves to time.") var rebalanceRuns: Int = 5

    func validate() throws {
        if records < batchSize || batchSize < 1 || partitions < 1 || valueSize < 16 || latencyRate < 1 || latencySeconds < 1 || rebalancePartitions < 3 || rebalanceRuns < 1 {
            throw ValidationError("counts must be positive, --value-size at least 16, --records at least --batch-size, --rebalance-partitions at least 3")
        }
    }

    func run() async throws {
        LoggingBootstrap.once(level: .warning)
        let base = dir ?? ((ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp") + "/sluice-bench-broker-\(getpid())")
        defer { try? FileManager.default.removeItem(atPath: base) }
        #if DEBUG
        emit("note: this is a debug build; build with -c release for real figures")
        #endif
        var config = BrokerConfig()
        config.tickIntervalMs = 5
        let broker = try await EmbeddedBroker.open(path: base, config: config, logger: Logger(label: "sluice.bench"))
        emit("sluice bench broker: \(records) records of \(valueSize)-byte values over \(partitions) partitions, producer batches of \(batchSize)")
        let raw = try rawLog(base + "/raw-log")
        emit(String(format: "machine  bare partition log, same records: append %.0f records/s, read + decode %.0f records/s (median of %d reads)", raw.append, raw.read, Self.readRuns))
        try await throughput(broker, raw: raw)
        try await latency(broker)
        try await rebalance(broker)
        await broker.close()
    }

    // MARK: Throughput

    /// The same records appended to and read from a bare PartitionLog: what the broker
    /// layers (producer state, groups, polling) cost is the ratio to this.
    private func rawLog(_ path: String) throws -> (append: Double, read: Double) {
        let log = try PartitionLog.open(directory: path, config: LogConfig(flush: .interval(milliseconds: 50)), logger: Logger(label: "sluice.bench"))
        defer { log.close() }
        let value = [UInt8](repeating: 0x61, count: valueSize)
        var builder = RecordBatchBuilder(capacity: batchSize * (valueSize + 16) + 128)
        let ts = currentTimeMillis()
        var t0 = monotonicNanos()
        var sent = 0
        while sent < records {
            builder.reset()
            let n = min(batchSize, records - sent)
            value.withUnsafeBytes { v in for _ in 0..<n { builder.append(key: nil, value: v, timestamp: ts) } }
            try log.append(&builder)
            sent += n
        }
        let append = Double(records) / (Double(monotonicNanos() - t0) / 1e9)
        // A read of 5 M records takes a few tenths of a second: the median of five is the figure.
        var rates: [Double] = []
        for _ in 0..<Self.readRuns {
            t0 = monotonicNanos()
            var offset: Int64 = 0
            var seen = 0
            while offset < log.highWatermark {
                let r = try log.read(from: offset, maxBytes: 1 << 20)
                try r.forEachRecord(from: offset) { rec in seen &+= (rec.value?.count ?? 0) > 0 ? 1 : 0 }
                offset = r.nextOffset
            }
            rates.append(Double(seen) / (Double(monotonicNanos() - t0) / 1e9))
        }
        return (append, median(rates))
    }

    static let readRuns = 5

    private func throughput(_ broker: EmbeddedBroker, raw: (append: Double, read: Double)) async throws {
        let topic = try broker.createTopic("bench", partitions: partitions)
        var consumerConfig = ConsumerConfig(groupId: "bench-live")
        consumerConfig.autoOffsetReset = .earliest
        consumerConfig.maxPollBytes = 32 << 20
        let live = Consumer(broker: broker, config: consumerConfig)
        try live.subscribe([topic])
        _ = try await live.poll(maxWait: .milliseconds(1))  // join before timing
        let total = records
        let start = monotonicNanos()
        async let consumedAt: UInt64 = {
            var seen = 0
            while seen < total {
                let r = try await live.poll(maxWait: .milliseconds(100))
                try r.forEach { _, rec in seen &+= (rec.value?.count ?? 0) > 0 ? 1 : 0 }
            }
            return monotonicNanos()
        }()
        let producer = try await Producer(broker: broker)
        let value = [UInt8](repeating: 0x61, count: valueSize)
        var builder = RecordBatchBuilder(capacity: batchSize * (valueSize + 16) + 128)
        let ts = currentTimeMillis()
        var sent = 0
        var p: Int32 = 0
        while sent < total {
            builder.reset()
            let n = min(batchSize, total - sent)
            value.withUnsafeBytes { v in for _ in 0..<n { builder.append(key: nil, value: v, timestamp: ts) } }
            try await producer.send(&builder, to: TopicPartition(topic, p))
            p = (p + 1) % partitions
            sent += n
        }
        let produced = monotonicNanos()
        let end = try await consumedAt
        let produceSeconds = Double(produced - start) / 1e9
        let liveSeconds = Double(end - start) / 1e9
        emit(String(format: "produce (idempotent producer, batches of %d): %.0f records/s, %.1f MB/s (%d records in %.2f s); %.2f× the bare log", batchSize, Double(total) / produceSeconds, Double(total * valueSize) / produceSeconds / 1e6, total, produceSeconds, Double(total) / produceSeconds / raw.append))
        emit(String(format: "group consumer following the producer: %.0f records/s (last record consumed %.2f s after the first send)", Double(total) / liveSeconds, liveSeconds))
        await live.close()

        // Fresh groups read the whole backlog, each from offset 0; the median of five runs is
        // the figure (the join is timed too: it is a few milliseconds).
        var rates: [Double] = []
        var lastBytes = 0
        for run in 0..<Self.readRuns {
            var catchUpConfig = consumerConfig
            catchUpConfig.groupId = "bench-backlog-\(run)"
            let backlog = Consumer(broker: broker, config: catchUpConfig)
            try backlog.subscribe([topic])
            var seen = 0
            var bytes = 0
            let t0 = monotonicNanos()
            while seen < total {
                let r = try await backlog.poll(maxWait: .milliseconds(100))
                try r.forEach { _, rec in
                    seen &+= 1
                    bytes &+= rec.value?.count ?? 0
                }
            }
            lastBytes = bytes
            rates.append(Double(seen) / (Double(monotonicNanos() - t0) / 1e9))
            await backlog.close()
        }
        let rate = median(rates)
        emit(String(format: "group consumer reading the backlog (decode every record): %.0f records/s, %.1f MB/s (median of %d reads of %d records; runs %@); %.2f× the bare log", rate, rate * Double(lastBytes) / Double(total) / 1e6, Self.readRuns, total, rates.map { String(format: "%.0f", $0) }.joined(separator: ", "), rate / raw.read))
    }

    // MARK: Latency

    private func latency(_ broker: EmbeddedBroker) async throws {
        let topic = try broker.createTopic("latency-\(latencyFlush)", partitions: 1, flush: latencyFlush)
        var config = ConsumerConfig(groupId: "latency")
        config.autoOffsetReset = .latest
        let consumer = Consumer(broker: broker, config: config)
        try consumer.subscribe([topic])
        _ = try await consumer.poll(maxWait: .milliseconds(1))
        let total = latencyRate * latencySeconds
        let interval = UInt64(1_000_000_000 / latencyRate)
        async let histogram: Histogram<UInt64> = {
            var h = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
            var seen = 0
            while seen < total {
                let r = try await consumer.poll(maxWait: .milliseconds(200))
                let now = monotonicNanos()
                try r.forEach { _, rec in
                    guard let v = rec.value, v.count >= 8 else { return }
                    let sentAt = v.loadUnaligned(as: UInt64.self)
                    _ = h.record(max(1, (now &- sentAt) / 1000))
                    seen += 1
                }
            }
            return h
        }()
        let producer = try await Producer(broker: broker)
        var value = [UInt8](repeating: 0x62, count: valueSize)
        let start = monotonicNanos()
        for i in 0..<total {
            let due = start + UInt64(i) * interval
            // Sleep (not spin) until the record is due, so the producer does not steal a core
            // from the consumer on a small machine; late records go out at once.
            let before = monotonicNanos()
            if before < due { try await Task.sleep(for: .nanoseconds(Int64(due - before))) }
            let now = monotonicNanos()
            value.withUnsafeMutableBytes { $0.storeBytes(of: now, as: UInt64.self) }
            _ = try await producer.send(ProducerRecord(topic: topic, partition: 0, value: value))
        }
        let sendSeconds = Double(monotonicNanos() - start) / 1e9
        let h = try await histogram
        emit(String(format: "end-to-end latency (flush \(latencyFlush)) at %d records/s (achieved %.0f/s, %d records, send → delivered to a waiting group consumer): p50 %.0f µs, p99 %.0f µs, p99.9 %.0f µs, max %.0f µs",
                     latencyRate, Double(total) / sendSeconds, total, Double(h.valueAtPercentile(50)), Double(h.valueAtPercentile(99)), Double(h.valueAtPercentile(99.9)), Double(h.max)))
        await consumer.close()
    }

    // MARK: Rebalance

    private func rebalance(_ broker: EmbeddedBroker) async throws {
        let topic = try broker.createTopic("rebalance", partitions: rebalancePartitions)
        let all = Set((0..<rebalancePartitions).map { TopicPartition(topic, $0) })
        func member(_ name: String) throws -> (Consumer, Task<Void, Never>) {
            var config = ConsumerConfig(groupId: "rebalance")
            config.clientId = name
            config.heartbeatIntervalMs = 1000
            let c = Consumer(broker: broker, config: config)
            try c.subscribe([topic])
            let task = Task { while !Task.isCancelled { _ = try? await c.poll(maxWait: .milliseconds(100)) } }
            return (c, task)
        }
        let a = try member("a"), b = try member("b")
        var times: [Double] = []
        for run in 0..<rebalanceRuns {
            let c = try member("c-\(run)")
            // Wait until three members share the partitions.
            while !(a.0.assignment.count + b.0.assignment.count + c.0.assignment.count == all.count && !c.0.assignment.isEmpty && !a.0.assignment.isEmpty && !b.0.assignment.isEmpty) {
                try await Task.sleep(for: .milliseconds(1))
            }
            try await Task.sleep(for: .milliseconds(50))
            let t0 = monotonicNanos()
            c.1.cancel()
            await c.0.close()
            while a.0.assignment.union(b.0.assignment) != all || a.0.assignment.count + b.0.assignment.count != all.count {
                await Task.yield()
            }
            times.append(Double(monotonicNanos() - t0) / 1e6)
        }
        a.1.cancel(); b.1.cancel()
        await a.0.close(); await b.0.close()
        let sorted = times.sorted()
        emit(String(format: "rebalance of a 3-member group over %d partitions after one member leaves (until the 2 others own every partition): median %.1f ms, max %.1f ms over %d runs [%@]",
                     rebalancePartitions, sorted[sorted.count / 2], sorted.last!, times.count, times.map { String(format: "%.1f", $0) }.joined(separator: ", ")))
    }
}
