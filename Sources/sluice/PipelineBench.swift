// sluice bench pipeline: topic → json → filter → map → topic on the embedded broker, the same
// job in Bytewax (JSON-lines file → file) measured in the same run, and expression throughput.
import ArgumentParser
import CSluiceAllocCount
import Foundation
import Logging
import SluiceBroker
import SluiceLog
import SluiceRuntime

struct PipelineBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline",
        abstract: "Benchmark a pipeline (topic → json → filter → map → topic) against the same job in Bytewax."
    )

    @Option(help: "Scratch directory (deleted afterwards); default a new directory under $TMPDIR or /tmp.") var dir: String?
    @Option(help: "Records in the input topic.") var records: Int = 1_000_000
    @Option(help: "Partitions of the input topic (lanes).") var partitions: Int32 = 2
    @Option(name: .customLong("bytewax-script"), help: "The Bytewax job to compare with.") var bytewaxScript: String = "scripts/bench/bytewax_etl.py"
    @Option(name: .customLong("bytewax-records"), help: "Records for the Bytewax run (it is slower; its rate is what is compared).") var bytewaxRecords: Int = 1_000_000
    @Option(help: "Predicates for the expression benchmark.") var predicates: Int = 50_000_000
    @Option(help: "Runs of each job; the median rate is the figure (one run of a million records takes a few tenths of a second).") var runs: Int = 3
    @Option(help: "at-least-once: the job, Bytewax and expressions; exactly-once: the job at-least-once and then exactly-once on the same input, as a ratio.") var guarantee: String = "at-least-once"

    func run() async throws {
        LoggingBootstrap.once(level: .warning)
        let base = dir ?? ((ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp") + "/sluice-bench-pipeline-\(getpid())")
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: base) }
        #if DEBUG
        emit("note: this is a debug build; build with -c release for real figures")
        #endif
        let lines = Self.inputLines(max(records, bytewaxRecords))
        let avg = lines.prefix(1000).reduce(0) { $0 + $1.utf8.count } / 1000
        emit("sluice bench pipeline: \(records) JSON records of ~\(avg) bytes over \(partitions) partitions; job: parse, keep amount > 50, add cents = amount * 100, write")

        let broker = try await EmbeddedBroker.open(path: base + "/data", logger: Logger(label: "sluice.bench"))
        let input = try broker.createTopic("bench-in", partitions: partitions)
        let producer = try await Producer(broker: broker)
        var chunk: [ProducerRecord] = []
        for (i, line) in lines.prefix(records).enumerated() {
            chunk.append(ProducerRecord(topic: input, partition: Int32(i) % partitions, value: Array(line.utf8)))
            if chunk.count == 5000 { _ = try await producer.send(batch: chunk); chunk.removeAll(keepingCapacity: true) }
        }
        if !chunk.isEmpty { _ = try await producer.send(batch: chunk) }

        guard ["at-least-once", "exactly-once"].contains(guarantee) else { throw ValidationError("--guarantee must be at-least-once or exactly-once") }
        guard runs >= 1 else { throw ValidationError("--runs must be at least 1") }
        let alo = try await jobs(broker, guarantee: "at-least-once", suffix: "")
        let rate = alo.rate
        emit(String(format: "sluice  topic → json → filter → map → topic (at-least-once): %.0f records/s (median of %d runs: %@; %d in, %d out, batches of 5000); at most %.3f heap allocations per input record (malloc/calloc/realloc, whole process, group join and commits included)", rate, runs, alo.runs, records, alo.written, alo.allocationsPerRecord))
        if guarantee == "exactly-once" {
            let e = try await jobs(broker, guarantee: "exactly-once", suffix: "-eos")
            let eos = e.rate
            let onDisk = Double(avg + 12)
            emit(String(format: "sluice  same job (exactly-once): %.0f records/s (median of %d runs: %@; %d in, %d out; at most %.3f heap allocations per input record); one transaction per lane per poll of up to 4 MiB (about %.0f input records)", eos, runs, e.runs, records, e.written, e.allocationsPerRecord, 4 * 1_048_576 / onDisk))
            emit(String(format: "ratio   exactly-once / at-least-once: %.0f%%", eos / rate * 100))
            await broker.close()
            return
        }
        await broker.close()

        // The same job in Bytewax, file to file.
        let inFile = base + "/bytewax-in.jsonl", outFile = base + "/bytewax-out.jsonl"
        try (lines.prefix(bytewaxRecords).joined(separator: "\n") + "\n").write(toFile: inFile, atomically: false, encoding: .utf8)
        if let bytewax = runBytewax(inFile: inFile, outFile: outFile) {
            let bwRate = Double(bytewaxRecords) / bytewax
            emit(String(format: "bytewax same job, JSON-lines file → file, 1 worker: %.0f records/s (%d records, %.2f s including start-up)", bwRate, bytewaxRecords, bytewax))
            emit(String(format: "ratio   sluice / bytewax: %.1f×", rate / bwRate))
        }

        try etlAgainstJQ(base: base, inFile: inFile, records: bytewaxRecords)

        let expr = ExpressionBenchmark.run(predicates: predicates)
        emit(String(format: "expressions `amount > 50 and status == \"paid\"` and `amount > 50` over parsed records: %.0f predicates/s (checksum %d)", expr.perSecond, expr.checksum))
    }

    /// The benchmarks' input: JSON records of about 100 bytes, half of them with amount > 50.
    static func inputLines(_ count: Int) -> [String] {
        (0..<count).map { i in
            #"{"id":\#(i),"user":"user-\#(i % 1000)","amount":\#((i * 37) % 100),"status":"paid","note":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#
        }
    }

    /// Runs the job `runs` times, each with its own group and output topic: the median rate,
    /// every run's rate as text, records written and the most allocations per record of a run.
    private func jobs(_ broker: EmbeddedBroker, guarantee: String, suffix: String) async throws -> (rate: Double, runs: String, written: Int, allocationsPerRecord: Double) {
        var rates: [Double] = []
        var written = 0
        var allocations = 0.0
        for run in 0..<runs {
            let r = try await job(broker, guarantee: guarantee, suffix: "\(suffix)-\(run)")
            rates.append(r.rate)
            written = r.written
            allocations = max(allocations, r.allocationsPerRecord)
        }
        let text = rates.map { String(format: "%.0f", $0) }.joined(separator: ", ")
        return (median(rates), text, written, allocations)
    }

    /// Runs the job over the whole input with its own group and output topic; returns its rate.
    private func job(_ broker: EmbeddedBroker, guarantee: String, suffix: String) async throws -> (rate: Double, written: Int, seconds: Double, allocationsPerRecord: Double) {
        let yaml = """
        name: bench\(suffix)
        guarantee: \(guarantee)
        topics:
          bench-in: { partitions: \(partitions) }
          bench-out\(suffix): { partitions: \(partitions) }
        sources:
          in: { type: topic, topic: bench-in, group: bench\(suffix), batch_records: 5000 }
        transforms:
          parse: { type: json, inputs: [in] }
          big: { type: filter, inputs: [parse], where: "amount > 50" }
          tag: { type: map, inputs: [big], set: { cents: "amount * 100" } }
        sinks:
          out: { type: topic, inputs: [tag], topic: bench-out\(suffix) }
        """
        let pipeline = try PipelineLoader(environment: [:]).load(text: yaml, file: "bench.yaml")
        let runner = PipelineRunner(pipeline: pipeline, broker: broker, options: RunOptions(drain: true))
        let a0 = sluice_allocation_count()
        let t0 = monotonicNanos()
        try await runner.run()
        let seconds = Double(monotonicNanos() - t0) / 1e9
        let allocations = Double(sluice_allocation_count() - a0) / Double(records)
        return (Double(records) / seconds, runner.counts["out"] ?? 0, seconds, allocations)
    }

    /// The same job as a user runs an ETL file: `sluice run` of a pipeline file (JSON-lines
    /// file → json → filter → map → JSON-lines file, process start included) against jq's
    /// `select(.amount > 50) | .cents = .amount * 100` on the same file, in the same run.
    private func etlAgainstJQ(base: String, inFile: String, records: Int) throws {
        let yaml = base + "/etl.yaml", sluiceOut = base + "/etl-out.jsonl", jqOut = base + "/jq-out.jsonl"
        try """
        name: etl
        sources:
          in: { type: file, path: "\(inFile)", format: jsonl, batch_records: 5000 }
        transforms:
          parse: { type: json, inputs: [in] }
          big: { type: filter, inputs: [parse], where: "amount > 50" }
          tag: { type: map, inputs: [big], set: { cents: "amount * 100" } }
        sinks:
          out: { type: file, inputs: [tag], path: "\(sluiceOut)", format: lines }
        """.write(toFile: yaml, atomically: false, encoding: .utf8)
        let exe = try Child.executablePath()
        let sluice = try Child.run(exe, ["run", "--quiet", yaml, "--data", base + "/etl-data"])
        let sluiceLines = try String(contentsOfFile: sluiceOut, encoding: .utf8).split(separator: "\n").count
        emit(String(format: "sluice  run of a pipeline file, %d-line JSON file → json → filter → map → JSON-lines file: %.2f s wall (user %.2f s, sys %.2f s; %d lines out), process start included", records, sluice.wall, sluice.user, sluice.system, sluiceLines))
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/jq") else {
            emit("jq skipped: /usr/bin/jq not found (apt-get install jq)")
            return
        }
        FileManager.default.createFile(atPath: jqOut, contents: nil)
        let jq = try Child.run("/usr/bin/jq", ["-c", "select(.amount > 50) | .cents = .amount * 100"], stdin: inFile, stdout: jqOut)
        let jqLines = try String(contentsOfFile: jqOut, encoding: .utf8).split(separator: "\n").count
        emit(String(format: "jq      -c 'select(.amount > 50) | .cents = .amount * 100', same file: %.2f s wall (%d lines out)", jq.wall, jqLines))
        emit(String(format: "ratio   sluice run / jq wall time: %.2f (goal ≤ 0.25)", sluice.wall / jq.wall))
    }

    /// Seconds the Bytewax job took, or nil (with a note) when it cannot run here.
    private func runBytewax(inFile: String, outFile: String) -> Double? {
        let script = URL(fileURLWithPath: bytewaxScript)
        guard FileManager.default.fileExists(atPath: script.path) else {
            emit("bytewax skipped: \(bytewaxScript) not found (run from the repository root)")
            return nil
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-m", "bytewax.run", script.deletingPathExtension().lastPathComponent + ":flow"]
        p.currentDirectoryURL = script.deletingLastPathComponent()
        var env = ProcessInfo.processInfo.environment
        env["BYTEWAX_IN"] = inFile
        env["BYTEWAX_OUT"] = outFile
        p.environment = env
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        let t0 = monotonicNanos()
        do { try p.run() } catch {
            emit("bytewax skipped: cannot start python3 (\(error))")
            return nil
        }
        let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        let seconds = Double(monotonicNanos() - t0) / 1e9
        guard p.terminationStatus == 0 else {
            emit("bytewax skipped: it exited with \(p.terminationStatus) (pip install bytewax): \(errText.split(separator: "\n").last ?? "")")
            return nil
        }
        return seconds
    }
}
