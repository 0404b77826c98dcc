// sluice bench scaleout: the pipeline bench's job (topic → json → filter → map → topic) run by
// 1, 2 and 3 `sluice run` workers through librdkafka against `sluice serve`, next to the same
// job as one `sluice run` on the embedded broker, measured in the same run.
import ArgumentParser
import Foundation
import Logging
import SluiceBroker
import SluiceLog
import SluiceRuntime
#if RdKafka
import SluiceRdKafka
#endif

struct ScaleOutBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scaleout",
        abstract: "Benchmark the pipeline job through librdkafka against sluice serve with several sluice run workers, next to the embedded broker (needs the RdKafka trait)."
    )

    @Option(help: "Scratch directory (deleted afterwards); default a new directory under $TMPDIR or /tmp.") var dir: String?
    @Option(help: "Records in the input topic.") var records: Int = 1_000_000
    @Option(help: "Partitions of the input topic.") var partitions: Int32 = 6
    @Option(help: "Worker counts to measure, e.g. 1,2,3.") var workers: String = "1,2,3"
    @Option(help: "at-least-once or exactly-once.") var guarantee: String = "at-least-once"

    func run() async throws {
        #if RdKafka
        LoggingBootstrap.once(level: .warning)
        let counts = workers.split(separator: ",").compactMap { Int($0) }
        guard !counts.isEmpty, counts.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--workers must list worker counts, e.g. 1,2,3") }
        guard ["at-least-once", "exactly-once"].contains(guarantee) else { throw ValidationError("--guarantee must be at-least-once or exactly-once") }
        let base = dir ?? ((ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp") + "/sluice-bench-scaleout-\(getpid())")
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: base) }
        #if DEBUG
        emit("note: this is a debug build; build with -c release for real figures")
        #endif
        let exe = try Child.executablePath()
        let lines = PipelineBench.inputLines(records)
        emit("sluice bench scaleout: \(records) JSON records over \(partitions) partitions, \(guarantee); job: parse, keep amount > 50, add cents = amount * 100, write; each figure is input records / wall time from starting the workers until the group has committed the whole input (process start and group join included)")

        // The embedded broker: one `sluice run --drain` of the same job.
        let embedded = base + "/embedded"
        do {
            let broker = try await EmbeddedBroker.open(path: embedded, logger: Logger(label: "sluice.bench"))
            let input = try broker.createTopic("bench-in", partitions: partitions)
            let producer = try await Producer(broker: broker)
            var chunk: [ProducerRecord] = []
            for (i, line) in lines.enumerated() {
                chunk.append(ProducerRecord(topic: input, partition: Int32(i) % partitions, value: Array(line.utf8)))
                if chunk.count == 5000 { _ = try await producer.send(batch: chunk); chunk.removeAll(keepingCapacity: true) }
            }
            if !chunk.isEmpty { _ = try await producer.send(batch: chunk) }
            await broker.close()
        }
        let embeddedFile = base + "/embedded.yaml"
        try job(name: "bench-embedded", broker: nil).write(toFile: embeddedFile, atomically: false, encoding: .utf8)
        let local = try Child.run(exe, ["run", "--quiet", "--drain", embeddedFile, "--data", embedded])
        let embeddedRate = Double(records) / local.wall
        emit(String(format: "embedded  one sluice run --drain: %.0f records/s (%.2f s wall, process start included)", embeddedRate, local.wall))

        // sluice serve, and the input produced through librdkafka.
        let (serve, port) = try ServeProcess.start(exe, data: base + "/serve", log: base + "/serve.log")
        defer { serve.terminate(); serve.waitUntilExit() }
        let url = "kafka://127.0.0.1:\(port)"
        let client = try RdKafkaClient(url: url, logger: Logger(label: "sluice.bench"))
        try await client.createTopics([TopicDeclaration(name: "bench-in", partitions: partitions, flush: "interval", retentionMs: -1)])
        let producer = try RdProducer(client.settings, name: "bench-producer", logger: Logger(label: "sluice.bench"))
        let p0 = monotonicNanos()
        var builders = (0..<partitions).map { _ in RecordBatchBuilder(capacity: 1 << 20) }
        for (i, line) in lines.enumerated() {
            let p = Int(Int32(i) % partitions)
            line.utf8.withContiguousStorageIfAvailable { builders[p].append(key: nil, value: UnsafeRawBufferPointer($0), timestamp: 0) }
            if builders[p].recordCount == 5000 { try await producer.send(&builders[p], topic: "bench-in", partition: Int32(p)) }
        }
        for p in 0..<Int(partitions) where !builders[p].isEmpty { try await producer.send(&builders[p], topic: "bench-in", partition: Int32(p)) }
        try await producer.flush()
        let produced = Double(monotonicNanos() - p0) / 1e9
        emit(String(format: "produce   through librdkafka (idempotent, acks=all) to sluice serve: %.0f records/s", Double(records) / produced))
        await producer.close()

        for k in counts {
            let name = "bench-\(k)w"
            let file = base + "/\(name).yaml"
            try job(name: name, broker: url).write(toFile: file, atomically: false, encoding: .utf8)
            let probe = try RdConsumerProbe(client, group: name)
            let t0 = monotonicNanos()
            var procs: [Process] = []
            for n in 0..<k { procs.append(try ServeProcess.background(exe, ["run", "--quiet", file, "--data", base + "/\(name)-\(n)"], log: base + "/\(name)-\(n).log")) }
            var done = false
            let deadline = t0 + 600_000_000_000
            while !done && monotonicNanos() < deadline {
                try await Task.sleep(for: .milliseconds(20))
                done = try await probe.committed(partitions: partitions) >= records
                if let dead = procs.first(where: { !$0.isRunning }) {
                    throw CLIError.runtime("a worker exited \(dead.terminationStatus) before the input was processed; see \(base)/\(name)-*.log")
                }
            }
            let wall = Double(monotonicNanos() - t0) / 1e9
            for p in procs { p.terminate() }
            for p in procs { p.waitUntilExit() }
            await probe.close()
            guard done else { throw CLIError.runtime("\(k) workers did not process the input within 600 s") }
            emit(String(format: "librdkafka %d worker%@ (sluice run --broker %@): %.0f records/s (%.2f s wall); %.2f× the embedded run", k, k == 1 ? "" : "s", url, Double(records) / wall, wall, Double(records) / wall / embeddedRate))
        }
        await client.close()
        #else
        throw CLIError.user("sluice bench scaleout needs the librdkafka client; build with `swift build -c release --traits RdKafka` (needs Debian's librdkafka-dev)")
        #endif
    }

    private func job(name: String, broker: String?) -> String {
        """
        name: \(name)
        guarantee: \(guarantee)
        \(broker.map { "broker: \($0)" } ?? "")
        topics:
          bench-in: { partitions: \(partitions) }
          \(name)-out: { partitions: \(partitions) }
        sources:
          in: { type: topic, topic: bench-in, batch_records: 5000 }
        transforms:
          parse: { type: json, inputs: [in] }
          big: { type: filter, inputs: [parse], where: "amount > 50" }
          tag: { type: map, inputs: [big], set: { cents: "amount * 100" } }
        sinks:
          out: { type: topic, inputs: [tag], topic: \(name)-out }
        """
    }
}
