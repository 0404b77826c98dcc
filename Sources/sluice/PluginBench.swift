// sluice bench plugins: the same identity transform as a Python process plugin (one and two
// instances), as a WebAssembly module, and built in, each in the pipeline topic → transform
// → drop on the embedded broker, measured in the same run.
import ArgumentParser
import Foundation
import Logging
import SluiceBroker
import SluiceLog
import SluiceRuntime

struct PluginBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugins",
        abstract: "Benchmark process (Python) and WebAssembly plugin transforms against the same transform built in.")

    @Option(help: "Scratch directory (deleted afterwards); default a new directory under $TMPDIR or /tmp.") var dir: String?
    @Option(help: "Records in the input topic; every run reads all of them.") var records: Int = 1_000_000
    @Option(help: "Partitions of the input topic (lanes).") var partitions: Int32 = 2
    @Option(name: .customLong("batch-records"), help: "Records per batch handed to a plugin.") var batchRecords: Int = 1000
    @Option(help: "Runs of each job; the median is the figure.") var runs: Int = 3
    @Option(help: "The Python interpreter for the process plugin.") var python: String = "python3"

    func run() async throws {
        LoggingBootstrap.once(level: .warning)
        let base = dir ?? ((ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp") + "/sluice-bench-plugins-\(getpid())")
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: base) }
        #if DEBUG
        emit("note: this is a debug build; build with -c release for real figures")
        #endif
        try writePlugins(base + "/plugins")
        let registry = ComponentRegistry.builtIns()
        let catalog = PluginCatalog.discover(in: [base + "/plugins"])
        if let problem = (catalog.problems + catalog.register(in: registry)).first { throw CLIError.user(problem.description) }

        let n = records
        emit("sluice bench plugins: JSON records of ~100 bytes over \(partitions) partitions, batches of \(batchRecords); pipeline topic → transform → drop (at-least-once)")
        let broker = try await EmbeddedBroker.open(path: base + "/data", logger: Logger(label: "sluice.bench"))
        let input = try broker.createTopic("in", partitions: partitions)
        let producer = try await Producer(broker: broker)
        var chunk: [ProducerRecord] = []
        for i in 0..<n {
            let line = #"{"id":\#(i),"user":"user-\#(i % 1000)","amount":\#((i * 37) % 100),"status":"paid","note":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#
            chunk.append(ProducerRecord(topic: input, partition: Int32(i) % partitions, value: Array(line.utf8)))
            if chunk.count == 5000 { _ = try await producer.send(batch: chunk); chunk.removeAll(keepingCapacity: true) }
        }
        if !chunk.isEmpty { _ = try await producer.send(batch: chunk) }

        let builtIn = try await jobs(broker, registry, "builtin", #"{ type: filter, inputs: [in], where: "true" }"#, records: records)
        emit(line("built-in filter (where: true), identity", builtIn, records))
        let wasm = try await jobs(broker, registry, "wasm", "{ type: bench-wasm-identity, inputs: [in] }", records: records)
        emit(line("WebAssembly identity (WAT, one call per batch)", wasm, records) + String(format: "; %.2f× built-in", wasm.rate / builtIn.rate))
        let wasmFilter = try await jobs(broker, registry, "wasmfilter", "{ type: bench-wasm-filter, inputs: [in], min_length: 100 }", records: records)
        emit(line("WebAssembly filter (value longer than 100 bytes)", wasmFilter, records) + String(format: "; %.2f× built-in", wasmFilter.rate / builtIn.rate))
        for (plugin, what) in [("bench-python-identity", "answering {} (unchanged) per record"), ("bench-python-echo", "echoing each record whole")] {
            let one = try await jobs(broker, registry, plugin + "-1", "{ type: \(plugin), inputs: [in] }", records: records)
            emit(line("Python process identity \(what), instances: 1", one, records) + String(format: "; %.3f× built-in", one.rate / builtIn.rate))
            let two = try await jobs(broker, registry, plugin + "-2", "{ type: \(plugin), inputs: [in], instances: 2 }", records: records)
            emit(line("Python process identity \(what), instances: 2", two, records) + String(format: "; %.3f× built-in, %.2f× one instance", two.rate / builtIn.rate, two.rate / one.rate))
        }
        await broker.close()
    }

    private func line(_ what: String, _ r: (rate: Double, runs: String), _ n: Int) -> String {
        String(format: "%@: %.0f records/s (median of %d runs: %@; %d records)", what, r.rate, runs, r.runs, n)
    }

    private func jobs(_ broker: EmbeddedBroker, _ registry: ComponentRegistry, _ name: String, _ transform: String, records: Int) async throws -> (rate: Double, runs: String) {
        var rates: [Double] = []
        for run in 0..<runs {
            // A group per run, reading the whole topic from the beginning until caught up.
            let yaml = """
            name: bench-\(name)-\(run)
            topics:
              in: { partitions: \(partitions) }
            sources:
              in: { type: topic, topic: in, group: bench-\(name)-\(run), batch_records: \(batchRecords) }
            transforms:
              step: \(transform)
            sinks:
              out: { type: drop, inputs: [step] }
            """
            let pipeline = try PipelineLoader(registry: registry, environment: [:]).load(text: yaml, file: "bench-\(name).yaml")
            let runner = PipelineRunner(pipeline: pipeline, broker: broker, options: RunOptions(drain: true))
            let t0 = monotonicNanos()
            try await runner.run()
            let seconds = Double(monotonicNanos() - t0) / 1e9
            let through = runner.counts["in"] ?? 0
            guard (runner.counts["out"] ?? 0) >= through * 9 / 10 || name == "wasmfilter" else {
                throw CLIError.runtime("bench \(name): only \(runner.counts["out"] ?? 0) of \(through) records came out")
            }
            guard through == records else { throw CLIError.runtime("bench \(name): read \(through) of \(records) records") }
            rates.append(Double(through) / seconds)
        }
        return (median(rates), rates.map { String(format: "%.0f", $0) }.joined(separator: ", "))
    }

    /// The bench's own plugins: a Python identity transform and two WAT modules.
    private func writePlugins(_ dir: String) throws {
        let fm = FileManager.default
        for name in ["bench-python-identity", "bench-python-echo", "bench-wasm-identity", "bench-wasm-filter"] {
            try fm.createDirectory(atPath: dir + "/" + name, withIntermediateDirectories: true)
        }
        // Both read and write bytes. `identity` answers each record with [{}], one output
        // record that leaves every field as it was; `echo` sends each record back whole.
        for (name, result) in [("bench-python-identity", "[{}]"), ("bench-python-echo", "[r]")] {
            try """
            name: \(name)
            kind: transform
            runtime: process
            entry: \(python) identity.py
            """.write(toFile: dir + "/\(name)/plugin.yaml", atomically: false, encoding: .utf8)
            try """
            import json, sys
            inp, out = sys.stdin.buffer, sys.stdout.buffer
            for line in inp:
                m = json.loads(line)
                if m["type"] == "configure":
                    out.write(b'{"type":"ready"}\\n')
                else:
                    out.write(json.dumps({"type": "result", "id": m["id"], "results": [\(result) for r in m["records"]]}, separators=(",", ":")).encode() + b"\\n")
                out.flush()
            """.write(toFile: dir + "/\(name)/identity.py", atomically: false, encoding: .utf8)
        }
        try """
        name: bench-wasm-identity
        kind: transform
        runtime: wasm
        entry: identity.wat
        """.write(toFile: dir + "/bench-wasm-identity/plugin.yaml", atomically: false, encoding: .utf8)
        try WasmBenchModules.identity.write(toFile: dir + "/bench-wasm-identity/identity.wat", atomically: false, encoding: .utf8)
        try """
        name: bench-wasm-filter
        kind: transform
        runtime: wasm
        entry: filter.wat
        fields:
          - { name: min_length, type: int, default: "10", doc: Shortest value kept. }
        """.write(toFile: dir + "/bench-wasm-filter/plugin.yaml", atomically: false, encoding: .utf8)
        try WasmScaffold.filterWAT("bench-wasm-filter").write(toFile: dir + "/bench-wasm-filter/filter.wat", atomically: false, encoding: .utf8)
    }
}

enum WasmBenchModules {
    /// Keeps every record: one "keep" entry per input record, written in one loop.
    static let identity = """
    (module
      (memory (export "memory") 1)
      (global $heap (mut i32) (i32.const 1024))
      (global $out (mut i32) (i32.const 0))
      (global $outCap (mut i32) (i32.const 0))
      (func $alloc (export "sluice_alloc") (param $size i32) (result i32)
        (local $at i32) (local $end i32) (local $have i32)
        (local.set $at (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
        (local.set $end (i32.add (local.get $at) (local.get $size)))
        (local.set $have (i32.mul (memory.size) (i32.const 65536)))
        (if (i32.gt_u (local.get $end) (local.get $have))
          (then (if (i32.eq (memory.grow (i32.shr_u (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535)) (i32.const 16))) (i32.const -1))
                  (then (return (i32.const 0))))))
        (global.set $heap (local.get $end))
        (local.get $at))
      (func (export "sluice_transform") (param $in i32) (param $len i32) (result i32)
        (local $n i32) (local $i i32) (local $p i32) (local $need i32)
        (local.set $n (i32.load (local.get $in)))
        (local.set $need (i32.add (i32.const 8) (i32.shl (local.get $n) (i32.const 3))))
        (if (i32.lt_u (global.get $outCap) (local.get $need))
          (then (global.set $out (call $alloc (local.get $need)))
                (global.set $outCap (local.get $need))))
        (local.set $p (i32.add (global.get $out) (i32.const 8)))
        (block $done
          (loop $each
            (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
            (i64.store (local.get $p) (i64.shl (i64.extend_i32_u (local.get $i)) (i64.const 32)))
            (local.set $p (i32.add (local.get $p) (i32.const 8)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $each)))
        (i32.store (global.get $out) (local.get $need))
        (i32.store offset=4 (global.get $out) (local.get $n))
        (global.get $out))
    )
    """
}
