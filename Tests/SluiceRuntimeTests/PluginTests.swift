// Plugins in real pipelines: the examples in plugins/, process plugins that crash, hang or
// answer nonsense, WebAssembly modules that trap, loop or grow too far, and manifests and
// pipeline fields that are wrong. Every plugin here is a real process or a real module.
import Foundation
import SluiceBroker
import SluiceLog
import SluiceRuntime
import Testing

/// The repository's plugins/ folder.
private let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("plugins").path

/// Writes a plugin (plugin.yaml and its files) under `dir`/`name`.
private func plugin(_ dir: String, _ name: String, manifest: String, files: [String: String]) throws {
    let at = dir + "/" + name
    try FileManager.default.createDirectory(atPath: at, withIntermediateDirectories: true)
    try manifest.write(toFile: at + "/plugin.yaml", atomically: false, encoding: .utf8)
    for (file, text) in files { try text.write(toFile: at + "/" + file, atomically: false, encoding: .utf8) }
}

/// Built-ins and every plugin in `dirs`; fails the test on a manifest problem.
private func registry(_ dirs: [String]) throws -> ComponentRegistry {
    let r = ComponentRegistry.builtIns()
    let catalog = PluginCatalog.discover(in: dirs)
    let problems = catalog.problems + catalog.register(in: r)
    #expect(problems.isEmpty, "\(problems)")
    return r
}

private func input(_ broker: EmbeddedBroker, partitions: Int32, count: Int) async throws {
    let topic = try broker.createTopic("input", partitions: partitions)
    let producer = try await Producer(broker: broker)
    _ = try await producer.send(batch: (0..<count).map { i in
        ProducerRecord(topic: topic, partition: Int32(i) % partitions, key: Array("k\(i)".utf8), value: Array("{\"id\":\(i)}".utf8))
    })
}

/// The committed values of one partition, in offset order.
private func partitionValues(_ broker: EmbeddedBroker, _ topic: String, _ partition: Int32) throws -> [String] {
    let h = try broker.partition(TopicPartition(try TopicName(topic), partition))
    var out: [String] = []
    var offset = h.logStartOffset
    while offset < h.highWatermark {
        let d = try h.read(from: offset, maxBytes: 1 << 20, isolation: .readCommitted)
        if d.isEmpty { break }
        try d.forEachRecord(from: offset) { r in out.append(String(decoding: r.value ?? UnsafeRawBufferPointer(start: nil, count: 0), as: UTF8.self)) }
        offset = d.nextOffset
    }
    return out
}

/// A Python transform that passes records on, and misbehaves as `mode` says: `crash` exits on
/// every 100th batch it receives, `hang` stops answering on its 30th, `badjson`, `count` and
/// `field` answer a batch with a line that is not JSON, too few results, or an unknown field.
private let flaky = """
import json, os, sys, time
batches = 0
mode = None
for line in sys.stdin:
    m = json.loads(line)
    if m["type"] == "configure":
        mode = m["config"]["mode"]
        print(json.dumps({"type": "ready"}), flush=True)
        continue
    batches += 1
    if mode == "crash" and batches % 100 == 0:
        os._exit(3)
    if mode == "hang" and batches == 30:
        time.sleep(3600)
    results = [[{"value": r["value"]}] for r in m["records"]]
    if mode == "badjson":
        print("{not json", flush=True); continue
    if mode == "count":
        results = results[1:]
    if mode == "field":
        results[0] = [{"value": "x", "colour": "red"}]
    print(json.dumps({"type": "result", "id": m["id"], "results": results}), flush=True)
"""

private let flakyManifest = """
name: flaky
kind: transform
runtime: process
entry: python3 flaky.py
fields:
  - { name: mode, type: choice, options: [crash, hang, badjson, count, field, none], required: true, doc: How to misbehave. }
"""

@Suite(.serialized) struct PluginTests {
    @Test func theExamplePluginsRunTogetherInAPipeline() async throws {
        try await withBroker { broker, dir in
            let out = dir + "/out.jsonl"
            let text = try String(contentsOfFile: examples + "/../pipelines/plugins.yaml", encoding: .utf8)
                .replacingOccurrences(of: "path: .sluice/plugins-out.jsonl", with: "path: \(out)")
            let pipeline = try PipelineLoader(registry: try registry([examples]), environment: [:]).load(text: text, file: "plugins.yaml")
            try await PipelineRunner(pipeline: pipeline, broker: broker, options: RunOptions(drain: true)).run()
            let lines = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n").map(String.init)
            // seq-source wrote 1...50; records with n >= 10 are longer than 60 bytes once masked.
            #expect(lines.count == 41)
            #expect(lines.first == #"{"n":10,"email":"u***@example.com","card":"************1010"}"#)
            #expect(lines.last == #"{"n":50,"email":"u***@example.com","card":"************1050"}"#)
            #expect(!lines.contains { $0.contains("user") || $0.contains("4111") })
        }
    }

    @Test func aPythonTransformThatFailsARecordSendsItToErrors() async throws {
        try await withBroker { broker, dir in
            let text = """
            name: masking
            sources:
              in: { type: generator, count: 3, template: '{{ if i == 1 then "[1]" else "{\\"email\\": \\"ada@example.org\\"}" }}' }
            transforms:
              mask: { type: mask-pii, inputs: [in], fields: [email] }
            sinks:
              ok: { type: file, inputs: [mask], path: \(dir)/ok.jsonl }
              bad: { type: file, inputs: [mask.errors], path: \(dir)/bad.jsonl }
            """
            let pipeline = try PipelineLoader(registry: try registry([examples]), environment: [:]).load(text: text, file: "masking.yaml")
            let runner = PipelineRunner(pipeline: pipeline, broker: broker, options: RunOptions(drain: true))
            try await runner.run()
            let ok = try String(contentsOfFile: dir + "/ok.jsonl", encoding: .utf8).split(separator: "\n")
            #expect(ok == [#"{"email":"a***@example.org"}"#, #"{"email":"a***@example.org"}"#])
            #expect(runner.counts["bad"] == 1)
            #expect(try String(contentsOfFile: dir + "/bad.jsonl", encoding: .utf8) == "[1]\n")
        }
    }

    @Test func aPluginThatCrashesEveryHundredthBatchStillDeliversEachRecordExactlyOnce() async throws {
        try await withBroker { broker, dir in
            try plugin(dir, "flaky", manifest: flakyManifest, files: ["flaky.py": flaky])
            try await input(broker, partitions: 2, count: 3000)
            let text = """
            name: crashy
            guarantee: exactly-once
            topics:
              input: { partitions: 2 }
              output: { partitions: 2 }
            sources:
              in: { type: topic, topic: input, batch_records: 10, fetch_bytes: 2KiB }
            transforms:
              f: { type: flaky, inputs: [in], mode: crash, restart_backoff: 10ms }
            sinks:
              out: { type: topic, inputs: [f], topic: output }
            """
            let pipeline = try PipelineLoader(registry: try registry([dir]), environment: [:]).load(text: text, file: "crashy.yaml")
            try await PipelineRunner(pipeline: pipeline, broker: broker, options: RunOptions(drain: true)).run()
            let out = try topicValues(broker, "output").map(\.value)
            #expect(out.count == 3000)
            #expect(Set(out) == Set((0..<3000).map { "{\"id\":\($0)}" }))
            // Order per lane: input partition p held ids p, p+2, ...; in every output partition
            // the ids that came from one input partition are still increasing.
            for p in 0..<2 {
                let ids = try partitionValues(broker, "output", Int32(p)).map { Int($0.dropFirst(6).dropLast())! }
                #expect(!ids.isEmpty)
                for lane in 0..<2 {
                    let fromLane = ids.filter { $0 % 2 == lane }
                    #expect(fromLane == fromLane.sorted())
                }
            }
        }
    }

    @Test func aPluginThatHangsIsKilledAfterItsTimeoutAndTheBatchRetried() async throws {
        try await withBroker { broker, dir in
            try plugin(dir, "flaky", manifest: flakyManifest, files: ["flaky.py": flaky])
            try await input(broker, partitions: 1, count: 500)
            let text = """
            name: hangs
            guarantee: exactly-once
            topics:
              input: { partitions: 1 }
              output: { partitions: 1 }
            sources:
              in: { type: topic, topic: input, batch_records: 10 }
            transforms:
              f: { type: flaky, inputs: [in], mode: hang, timeout: 300ms, restart_backoff: 10ms }
            sinks:
              out: { type: topic, inputs: [f], topic: output }
            """
            let pipeline = try PipelineLoader(registry: try registry([dir]), environment: [:]).load(text: text, file: "hangs.yaml")
            let started = ContinuousClock.now
            try await PipelineRunner(pipeline: pipeline, broker: broker, options: RunOptions(drain: true)).run()
            let out = try topicValues(broker, "output").map(\.value)
            // One partition: the output is the input, in order, each record once.
            #expect(out == (0..<500).map { "{\"id\":\($0)}" })
            // 50 batches: the process hangs on its 30th, is killed after 300 ms, and its
            // successor answers the remaining 21 before reaching its own 30th.
            #expect(ContinuousClock.now - started >= .milliseconds(300))
        }
    }

    @Test(arguments: [("badjson", "answered with a line that is not JSON"), ("count", "answered a batch of 10 records with 9 results"), ("field", "unknown field 'colour'")])
    func malformedPluginOutputIsAClearErrorNamingThePlugin(mode: String, message: String) async throws {
        try await withBroker { broker, dir in
            try plugin(dir, "flaky", manifest: flakyManifest, files: ["flaky.py": flaky])
            let text = """
            name: malformed
            sources:
              in: { type: generator, count: 10, template: '{"i": {{i}}}', batch_records: 10 }
            transforms:
              f: { type: flaky, inputs: [in], mode: \(mode) }
            sinks:
              ok: { type: drop, inputs: [f] }
              bad: { type: file, inputs: [f.errors], path: \(dir)/bad.jsonl }
            """
            let pipeline = try PipelineLoader(registry: try registry([dir]), environment: [:]).load(text: text, file: "malformed.yaml")
            let runner = PipelineRunner(pipeline: pipeline, broker: broker, options: RunOptions(drain: true))
            try await runner.run()
            #expect(runner.counts["ok"] ?? 0 == 0)
            #expect(runner.counts["bad"] == 10)
            // Without an .errors wire the pipeline stops with the message.
            let unwired = text.replacingOccurrences(of: "  bad: { type: file, inputs: [f.errors], path: \(dir)/bad.jsonl }", with: "").replacingOccurrences(of: "name: malformed", with: "name: malformed2")
            let stops = try PipelineLoader(registry: try registry([dir]), environment: [:]).load(text: unwired, file: "malformed2.yaml")
            await #expect {
                try await PipelineRunner(pipeline: stops, broker: broker, options: RunOptions(drain: true)).run()
            } throws: { error in
                let text = "\(error)"
                return text.contains("plugin 'flaky' (f)") && text.contains(message)
            }
        }
    }

    @Test func aPluginThatCannotStartFailsThePipelineWithItsReason() async throws {
        try await withBroker { broker, dir in
            try plugin(dir, "broken", manifest: "name: broken\nkind: transform\nruntime: process\nentry: python3 broken.py\n", files: ["broken.py": "import sys\nsys.stderr.write('no config here\\n')\nsys.exit(4)\n"])
            let text = """
            name: wontstart
            sources:
              in: { type: generator, count: 1, template: 'x' }
            transforms:
              b: { type: broken, inputs: [in], restart_backoff: 10ms }
            sinks:
              out: { type: drop, inputs: [b] }
            """
            let pipeline = try PipelineLoader(registry: try registry([dir]), environment: [:]).load(text: text, file: "wontstart.yaml")
            await #expect {
                try await PipelineRunner(pipeline: pipeline, broker: broker, options: RunOptions(drain: true)).run()
            } throws: { error in
                "\(error)".contains("plugin 'broken' (b) failed 3 times in a row, last: the plugin process exited with status 4")
            }
        }
    }

    @Test func instancesSplitThePartitionsAndKeepEachPartitionsOrder() async throws {
        try await withBroker { broker, dir in
            // Each output value says which instance (process) handled the record.
            let tagger = """
            import json, os, sys
            me = int(os.environ["SLUICE_PLUGIN_INSTANCE"])
            for line in sys.stdin:
                m = json.loads(line)
                if m["type"] == "configure":
                    print(json.dumps({"type": "ready"}), flush=True); continue
                out = [[{"value": json.dumps({"id": json.loads(r["value"])["id"], "instance": me, "partition": m["partition"]})}] for r in m["records"]]
                print(json.dumps({"type": "result", "id": m["id"], "results": out}), flush=True)
            """
            try plugin(dir, "tagger", manifest: "name: tagger\nkind: transform\nruntime: process\nentry: python3 tagger.py\n", files: ["tagger.py": tagger])
            try await input(broker, partitions: 4, count: 2000)
            let text = """
            name: split
            topics:
              input: { partitions: 4 }
            sources:
              in: { type: topic, topic: input, batch_records: 50, fetch_bytes: 4KiB }
            transforms:
              t: { type: tagger, inputs: [in], instances: 2 }
            sinks:
              out: { type: file, inputs: [t], path: \(dir)/out.jsonl }
            """
            let pipeline = try PipelineLoader(registry: try registry([dir]), environment: [:]).load(text: text, file: "split.yaml")
            try await PipelineRunner(pipeline: pipeline, broker: broker, options: RunOptions(drain: true)).run()
            let lines = try String(contentsOfFile: dir + "/out.jsonl", encoding: .utf8).split(separator: "\n")
            #expect(lines.count == 2000)
            var idsOf: [Int: [Int]] = [:], instancesOf: [Int: Set<Int>] = [:]
            for line in lines {
                let v = try JSON.parse(String(line))
                let id = Int(v["id"]!.asInt!), partition = Int(v["partition"]!.asInt!)
                #expect(partition == id % 4)
                idsOf[partition, default: []].append(id)
                instancesOf[partition, default: []].insert(Int(v["instance"]!.asInt!))
            }
            for p in 0..<4 {
                // Partition p held ids p, p+4, ... and they come out in that order, all from
                // one process: instance p mod 2.
                #expect(idsOf[p] == Array(stride(from: p, to: 2000, by: 4)))
                #expect(instancesOf[p] == [p % 2])
            }
        }
    }

    @Test func aSourceThatCrashesIsRestartedAndResumesFromWhatWasAcknowledged() async throws {
        try await withBroker { broker, dir in
            // Keeps the last acknowledged number in a file; the first process dies after 10.
            let source = """
            import json, os, sys
            config = json.loads(sys.stdin.readline())["config"]
            state, marker = config["state"], config["state"] + ".crashed"
            print(json.dumps({"type": "ready"}), flush=True)
            n = int(open(state).read()) if os.path.exists(state) else 0
            while n < 20:
                batch = list(range(n + 1, n + 6))
                print(json.dumps({"type": "batch", "id": batch[-1], "records": [{"value": str(i)} for i in batch]}), flush=True)
                ack = json.loads(sys.stdin.readline())
                assert ack == {"type": "ack", "id": batch[-1]}, ack
                n = batch[-1]
                open(state, "w").write(str(n))
                if n == 10 and not os.path.exists(marker):
                    open(marker, "w").write("x")
                    os._exit(9)
            print(json.dumps({"type": "end"}), flush=True)
            """
            try plugin(dir, "resumer", manifest: "name: resumer\nkind: source\nruntime: process\nentry: python3 resumer.py\nfields:\n  - { name: state, type: string, required: true, doc: state file }\n", files: ["resumer.py": source])
            let text = """
            name: resumes
            sources:
              s: { type: resumer, state: \(dir)/state, restart_backoff: 10ms }
            sinks:
              out: { type: file, inputs: [s], path: \(dir)/out.txt }
            """
            let pipeline = try PipelineLoader(registry: try registry([dir]), environment: [:]).load(text: text, file: "resumes.yaml")
            try await PipelineRunner(pipeline: pipeline, broker: broker, options: RunOptions(drain: true)).run()
            #expect(FileManager.default.fileExists(atPath: dir + "/state.crashed"))
            let lines = try String(contentsOfFile: dir + "/out.txt", encoding: .utf8).split(separator: "\n").map(String.init)
            #expect(lines == (1...20).map(String.init))
        }
    }

    @Test(arguments: [(#"{"type":"batch","id":1,"records":[{"valu":"x"}]}"#, "wrote a record with unknown field 'valu'"),
                      (#"{"type":"batch","id":1,"records":[{"value":"x"}"#, "is not JSON"),
                      (#"{"type":"batch","records":[]}"#, "wrote a batch without an integer 'id'"),
                      (#"{"type":"bunch"}"#, "wrote a message of type 'bunch'")])
    func malformedSourceOutputStopsThePipelineNamingThePlugin(line: String, message: String) async throws {
        try await withBroker { broker, dir in
            let source = "import json, sys\nsys.stdin.readline()\nprint(json.dumps({'type': 'ready'}), flush=True)\nprint(sys.argv[1], flush=True)\nsys.stdin.readline()\n"
            try plugin(dir, "badsource", manifest: "name: badsource\nkind: source\nruntime: process\nentry: [python3, badsource.py, '\(line)']\n", files: ["badsource.py": source])
            let text = "name: badsource\nsources:\n  s: { type: badsource }\nsinks:\n  out: { type: drop, inputs: [s] }\n"
            let pipeline = try PipelineLoader(registry: try registry([dir]), environment: [:]).load(text: text, file: "badsource.yaml")
            await #expect {
                try await PipelineRunner(pipeline: pipeline, broker: broker, options: RunOptions(drain: true)).run()
            } throws: { error in
                let text = "\(error)"
                return text.contains("plugin 'badsource' (s)") && text.contains(message)
            }
        }
    }

    @Test func processSourceAndSinkPluginsMoveEveryRecord() async throws {
        try await withBroker { broker, dir in
            let text = """
            name: moves
            sources:
              numbers: { type: seq-source, count: 25, batch: 7 }
            sinks:
              file: { type: jsonl-sink, inputs: [numbers], path: \(dir)/moved.jsonl }
            """
            let pipeline = try PipelineLoader(registry: try registry([examples]), environment: [:]).load(text: text, file: "moves.yaml")
            try await PipelineRunner(pipeline: pipeline, broker: broker, options: RunOptions(drain: true)).run()
            let lines = try String(contentsOfFile: dir + "/moved.jsonl", encoding: .utf8).split(separator: "\n").map(String.init)
            #expect(lines == (1...25).map { "{\"n\":\($0)}" })
        }
    }

    // MARK: WebAssembly

    /// A module whose transform does what `body` says before keeping every record.
    private static func module(_ body: String) -> String {
        """
        (module
          (memory (export "memory") 1 1000)
          (global $heap (mut i32) (i32.const 1024))
          (func $alloc (export "sluice_alloc") (param $size i32) (result i32)
            (local $at i32)
            (local.set $at (global.get $heap))
            (global.set $heap (i32.add (global.get $heap) (local.get $size)))
            (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
              (then (drop (memory.grow (i32.add (i32.shr_u (i32.sub (global.get $heap) (i32.mul (memory.size) (i32.const 65536))) (i32.const 16)) (i32.const 1))))))
            (local.get $at))
          (func $spin (param $n i32) (result i32) (loop $l (br $l)) (i32.const 0))
          (func (export "sluice_transform") (param $in i32) (param $len i32) (result i32)
            (local $out i32)
            \(body)
            (local.set $out (call $alloc (i32.const 8)))
            (i32.store (local.get $out) (i32.const 8))
            (i32.store offset=4 (local.get $out) (i32.const 0))
            (local.get $out))
        )
        """
    }

    @Test(arguments: [
        ("trap", "(if (i32.eq (i32.load (local.get $in)) (i32.const 3)) (then unreachable))", "trapped: unreachable"),
        ("loop", "(if (i32.eq (i32.load (local.get $in)) (i32.const 3)) (then (drop (call $spin (i32.const 0)))))", "ran out of fuel (more than 1000000 instructions"),
        ("grow", "(if (i32.eq (i32.load (local.get $in)) (i32.const 3)) (then (drop (memory.grow (i32.const 500))) (i32.store (i32.const 20000000) (i32.const 1))))", "memory_limit"),
    ])
    func aWasmModuleThatMisbehavesIsStoppedAndThePipelineGoesOn(name: String, body: String, message: String) async throws {
        try await withBroker { broker, dir in
            try plugin(dir, "wasm-\(name)", manifest: "name: wasm-\(name)\nkind: transform\nruntime: wasm\nentry: m.wat\n", files: ["m.wat": Self.module(body)])
            // Batches of 1, 3 and 2 records: the batch of 3 makes the module misbehave.
            let text = """
            name: bad-\(name)
            sources:
              in: { type: file, path: \(dir)/in.txt, batch_records: 3 }
            transforms:
              w: { type: wasm-\(name), inputs: [in], fuel: 1000000, memory_limit: 16MiB }
            sinks:
              errors: { type: file, inputs: [w.errors], path: \(dir)/errors.txt }
              out: { type: drop, inputs: [w] }
            """
            try "a\nb\nc\nd\ne\n".write(toFile: dir + "/in.txt", atomically: false, encoding: .utf8)
            let pipeline = try PipelineLoader(registry: try registry([dir]), environment: [:]).load(text: text, file: "bad.yaml")
            let runner = PipelineRunner(pipeline: pipeline, broker: broker, options: RunOptions(drain: true))
            try await runner.run()
            // The first batch (3 records) went to errors; the second (2) went on through a fresh instance.
            #expect(runner.counts["errors"] == 3)
            #expect(try String(contentsOfFile: dir + "/errors.txt", encoding: .utf8) == "a\nb\nc\n")
            let unwired = text.replacingOccurrences(of: "  errors: { type: file, inputs: [w.errors], path: \(dir)/errors.txt }\n", with: "")
            let stops = try PipelineLoader(registry: try registry([dir]), environment: [:]).load(text: unwired, file: "bad2.yaml")
            await #expect {
                try await PipelineRunner(pipeline: stops, broker: broker, options: RunOptions(drain: true)).run()
            } throws: { error in
                let text = "\(error)"
                return text.contains("wasm plugin 'wasm-\(name)' (w)") && text.contains(message)
            }
        }
    }

    @Test func aWasmModuleThatImportsTheFileSystemIsRefusedAtStart() async throws {
        try await withBroker { broker, dir in
            let wat = #"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))) (memory (export "memory") 1) (func (export "sluice_alloc") (param i32) (result i32) (i32.const 0)) (func (export "sluice_transform") (param i32 i32) (result i32) (i32.const 0)))"#
            try plugin(dir, "sneaky", manifest: "name: sneaky\nkind: transform\nruntime: wasm\nentry: m.wat\n", files: ["m.wat": wat])
            let text = "name: sneaky\nsources:\n  in: { type: generator, count: 1, template: x }\ntransforms:\n  s: { type: sneaky, inputs: [in] }\nsinks:\n  out: { type: drop, inputs: [s] }\n"
            let pipeline = try PipelineLoader(registry: try registry([dir]), environment: [:]).load(text: text, file: "sneaky.yaml")
            await #expect {
                try await PipelineRunner(pipeline: pipeline, broker: broker, options: RunOptions(drain: true)).run()
            } throws: { error in
                "\(error)".contains("imports wasi_snapshot_preview1.fd_write; a Sluice WebAssembly plugin may import only sluice.log and sluice.now_ms")
            }
        }
    }

    @Test func theWasmExampleRewritesNothingAndKeepsLongValues() async throws {
        try await withBroker { broker, dir in
            let text = """
            name: lengths
            sources:
              in: { type: file, path: \(dir)/in.txt }
            transforms:
              long: { type: wasm-min-length, inputs: [in], min_length: 3 }
            sinks:
              out: { type: file, inputs: [long], path: \(dir)/out.txt }
            """
            try "a\nabcd\nabc\n\u{00e9}t\u{00e9}s\nxyzzy\n".write(toFile: dir + "/in.txt", atomically: false, encoding: .utf8)
            let pipeline = try PipelineLoader(registry: try registry([examples]), environment: [:]).load(text: text, file: "lengths.yaml")
            try await PipelineRunner(pipeline: pipeline, broker: broker, options: RunOptions(drain: true)).run()
            // Lengths are bytes: "été s" is 6 bytes.
            #expect(try String(contentsOfFile: dir + "/out.txt", encoding: .utf8) == "abcd\n\u{00e9}t\u{00e9}s\nxyzzy\n")
        }
    }

    @Test func aWasmTransformInCBuiltWithClangRunsWhenTheToolchainTargetsWasm32() async throws {
        let source = examples + "/wasm-c-mask-digits"
        let built = source + "/mask_digits.wasm"
        let clang = Process()
        clang.executableURL = URL(fileURLWithPath: "/bin/sh")
        clang.arguments = [source + "/build.sh"]
        try clang.run()
        clang.waitUntilExit()
        try #require(clang.terminationStatus == 0, "plugins/wasm-c-mask-digits/build.sh failed: is clang with the wasm32 target installed?")
        #expect(FileManager.default.fileExists(atPath: built))
        try await withBroker { broker, dir in
            let text = """
            name: digits
            sources:
              in: { type: file, path: \(dir)/in.txt }
            transforms:
              mask: { type: wasm-c-mask-digits, inputs: [in], with: "#" }
            sinks:
              out: { type: file, inputs: [mask], path: \(dir)/out.txt }
            """
            try "card 4111 1111\nno digits\n2026-12-03\n".write(toFile: dir + "/in.txt", atomically: false, encoding: .utf8)
            let pipeline = try PipelineLoader(registry: try registry([examples]), environment: [:]).load(text: text, file: "digits.yaml")
            try await PipelineRunner(pipeline: pipeline, broker: broker, options: RunOptions(drain: true)).run()
            #expect(try String(contentsOfFile: dir + "/out.txt", encoding: .utf8) == "card #### ####\nno digits\n####-##-##\n")
        }
    }

    // MARK: Validation

    @Test func unknownPluginTypesAndWrongPluginFieldsAreReportedWithPositions() throws {
        let text = """
        name: wrong
        sources:
          in: { type: generator, count: 1, template: x }
        transforms:
          a: { type: mask-pi, inputs: [in], fields: [email] }
          b: { type: mask-pii, inputs: [in], keep: lots, colour: red }
          c: { type: wasm-min-length, inputs: [in], min_length: 3, fuel: many }
        sinks:
          out: { type: drop, inputs: [a, b, c] }
        """
        #expect {
            try PipelineLoader(registry: try registry([examples]), environment: [:]).load(text: text, file: "wrong.yaml")
        } throws: { error in
            let d = (error as? PipelineLoadError)?.diagnostics.map(\.description) ?? []
            return d.contains { $0.hasPrefix("wrong.yaml:5:") && $0.contains("unknown transform type 'mask-pi'") && $0.contains("did you mean 'mask-pii'?") }
                && d.contains { $0.hasPrefix("wrong.yaml:6:") && $0.contains("'fields'") }
                && d.contains { $0.hasPrefix("wrong.yaml:6:") && $0.contains("field 'keep' of transform 'b' (mask-pii) must be an integer, got 'lots'") }
                && d.contains { $0.hasPrefix("wrong.yaml:6:") && $0.contains("colour") }
                && d.contains { $0.hasPrefix("wrong.yaml:7:") && $0.contains("field 'fuel' of transform 'c' (wasm-min-length) must be an integer") }
        }
    }

    @Test func brokenManifestsAreReportedWithTheirLine() throws {
        let dir = NSTemporaryDirectory() + "sluice-manifest-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try plugin(dir, "one", manifest: "name: one\nkind: transformer\nruntime: process\nentry: x\ncolour: red\n", files: [:])
        try plugin(dir, "two", manifest: "name: two\nkind: sink\nruntime: wasm\nentry: two.wat\nfields:\n  - { name: timeout, type: int }\n  - { name: n, type: float }\n", files: [:])
        try plugin(dir, "filter", manifest: "name: filter\nkind: transform\nruntime: process\nentry: x\n", files: [:])
        let catalog = PluginCatalog.discover(in: [dir])
        let problems = (catalog.problems + catalog.register(in: ComponentRegistry.builtIns())).map(\.description)
        #expect(problems.contains { $0.hasSuffix("one/plugin.yaml:2:7: error: kind 'transformer' must be source, transform or sink") })
        #expect(problems.contains { $0.contains("one/plugin.yaml:5:1: error: unknown field 'colour'") })
        #expect(problems.contains { $0.contains("two/plugin.yaml:2:") && $0.contains("WebAssembly plugins are transforms") })
        #expect(problems.contains { $0.contains("two/plugin.yaml:6:") && $0.contains("field 'timeout' is set by Sluice") })
        #expect(problems.contains { $0.contains("two/plugin.yaml:7:") && $0.contains("field type 'float' must be one of") })
        #expect(problems.contains { $0.contains("filter/plugin.yaml:1:1: error: plugin 'filter' has the name of a transform Sluice already has") })
    }
}
