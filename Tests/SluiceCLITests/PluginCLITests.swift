// `sluice plugin new | list | describe`, and scaffolds used at once: a new plugin shows in the
// list, a pipeline runs it, and its own test case passes with `sluice test`.
import Foundation
import Testing

@Suite(.serialized) struct PluginCLITests {
    let scratch = Scratch()
    var plugins: String { scratch.path + "/plugins" }

    @Test(arguments: [("enrich", "process"), ("shorts", "wasm")])
    func aNewTransformScaffoldIsListedUsableAndPassesItsOwnTest(name: String, runtime: String) throws {
        let made = try Sluice.run(["plugin", "new", name, "--kind", "transform", "--runtime", runtime, "--dir", plugins])
        #expect(made.status == 0, "\(made.stderr)")
        #expect(made.stdout.contains("created \(plugins)/\(name)"))

        if runtime == "wasm" {
            // The scaffold's module is plugins/wasm-min-length's, kept in the binary: the two must not drift.
            let made = try String(contentsOfFile: "\(plugins)/\(name)/\(name).wat", encoding: .utf8)
            let example = try String(contentsOfFile: PipelineCLITests.repo + "/plugins/wasm-min-length/min_length.wat", encoding: .utf8)
            #expect(made.split(separator: "\n").dropFirst() == example.split(separator: "\n").dropFirst())
        }

        let list = try Sluice.run(["plugin", "list", "--plugins", plugins])
        #expect(list.status == 0, "\(list.stderr)")
        #expect(list.stdoutLines.contains { $0.hasPrefix("\(name)\ttransform\t\(runtime)\t0.1.0\t") }, "\(list.stdout)")

        let test = try Sluice.run(["test", "\(plugins)/\(name)/pipeline.yaml"])
        #expect(test.status == 0, "\(test.stdout)\(test.stderr)")
        #expect(test.stdout.contains("test cases: 1 passed, 0 failed"), "\(test.stdout)")

        // A pipeline of the user's own, elsewhere, uses it at once through --plugins.
        let pipeline = scratch.path + "/\(name)-use.yaml"
        let fields = runtime == "wasm" ? "min_length: 8" : "tag: cli"
        try """
        name: use-\(name)
        sources:
          g: { type: generator, count: 4, template: '{"n": {{i}}}' }
        transforms:
          p: { type: \(name), inputs: [g], \(fields) }
        sinks:
          out: { type: stdout, inputs: [p] }
        """.write(toFile: pipeline, atomically: true, encoding: .utf8)
        let run = try Sluice.run(["run", "--quiet", "--plugins", plugins, pipeline], data: scratch.path + "/data")
        #expect(run.status == 0, "\(run.stderr)")
        if runtime == "wasm" {
            // {"n": 0}... are 8 bytes long: none is longer than 8.
            #expect(run.stdout.isEmpty, "\(run.stdout)")
        } else {
            #expect(run.stdoutLines == (0..<4).map { "{\"n\":\($0),\"tagged_by\":\"cli\"}" }, "\(run.stdout)")
        }
    }

    @Test func sourceAndSinkScaffoldsPassTheirTests() throws {
        for kind in ["source", "sink"] {
            let made = try Sluice.run(["plugin", "new", "my-\(kind)", "--kind", kind, "--dir", plugins])
            #expect(made.status == 0, "\(made.stderr)")
            let test = try Sluice.run(["test", "\(plugins)/my-\(kind)/pipeline.yaml"])
            #expect(test.stdout.contains("test cases: 1 passed, 0 failed"), "\(test.stdout)\(test.stderr)")
        }
        // The source really runs: it emits its records and ends.
        let run = try Sluice.run(["run", "--quiet", "\(plugins)/my-source/pipeline.yaml"], data: scratch.path + "/data")
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdoutLines == (0..<5).map { "{\"n\": \($0)}" }, "\(run.stdout)")
    }

    @Test func whatAPluginWritesToStderrGoesToTheLogWithItsName() throws {
        let dir = plugins + "/chatty"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "name: chatty\nkind: transform\nruntime: process\nentry: python3 chatty.py\n".write(toFile: dir + "/plugin.yaml", atomically: true, encoding: .utf8)
        try """
        import json, sys
        for line in sys.stdin:
            m = json.loads(line)
            if m["type"] == "configure":
                print("warming up the cache", file=sys.stderr, flush=True)
                print(json.dumps({"type": "ready"}), flush=True); continue
            print(json.dumps({"type": "result", "id": m["id"], "results": [[{}] for r in m["records"]]}), flush=True)
        """.write(toFile: dir + "/chatty.py", atomically: true, encoding: .utf8)
        let pipeline = scratch.path + "/chatty.yaml"
        try "name: chatty\nsources:\n  g: { type: generator, count: 2, template: x }\ntransforms:\n  c: { type: chatty, inputs: [g] }\nsinks:\n  out: { type: stdout, inputs: [c] }\n".write(toFile: pipeline, atomically: true, encoding: .utf8)
        let r = try Sluice.run(["run", "--quiet", "--plugins", plugins, pipeline], data: scratch.path + "/data")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdoutLines == ["x", "x"])
        #expect(r.stderr.split(separator: "\n").contains { $0.contains("warming up the cache") && $0.contains("plugin=chatty") }, "\(r.stderr)")
    }

    @Test func describeListsThePluginsFieldsAndSluicesOwn() throws {
        let r = try Sluice.run(["plugin", "describe", "mask-pii", "--plugins", PipelineCLITests.repo + "/plugins"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("mask-pii 1.0.0: transform, runtime process"))
        #expect(r.stdout.contains("  fields (a list of strings, required): The top-level fields to mask."))
        #expect(r.stdout.contains("  instances (an integer, default 1)"))
        let missing = try Sluice.run(["plugin", "describe", "nope", "--plugins", plugins])
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("no plugin named 'nope'"), "\(missing.stderr)")
    }

    @Test func badScaffoldRequestsAndBrokenManifestsAreClearErrors() throws {
        let wasmSink = try Sluice.run(["plugin", "new", "x", "--kind", "sink", "--runtime", "wasm", "--dir", plugins])
        #expect(wasmSink.status == 1 && wasmSink.stderr.contains("WebAssembly plugins are transforms"), "\(wasmSink.stderr)")
        let badName = try Sluice.run(["plugin", "new", "9lives", "--dir", plugins])
        #expect(badName.status == 1 && badName.stderr.contains("must start with a letter"), "\(badName.stderr)")
        try FileManager.default.createDirectory(atPath: plugins + "/broken", withIntermediateDirectories: true)
        try "name: broken\nkind: transform\nruntime: process\n".write(toFile: plugins + "/broken/plugin.yaml", atomically: true, encoding: .utf8)
        let list = try Sluice.run(["plugin", "list", "--plugins", plugins])
        #expect(list.status == 1)
        #expect(list.stderr.contains("\(plugins)/broken/plugin.yaml:1:1: error: the manifest has no 'entry'"), "\(list.stderr)")
    }

    @Test func validateNamesAnUnknownPluginTypeAndAWrongPluginFieldWithPositions() throws {
        let file = scratch.path + "/wrong.yaml"
        try """
        name: wrong
        sources:
          g: { type: generator, count: 1, template: "x" }
        transforms:
          m: { type: mask-pi, inputs: [g], fields: [email] }
          k: { type: mask-pii, inputs: [g], fields: [email], keep: lots }
        sinks:
          out: { type: stdout, inputs: [m, k] }
        """.write(toFile: file, atomically: true, encoding: .utf8)
        let r = try Sluice.run(["validate", "--plugins", PipelineCLITests.repo + "/plugins", file])
        #expect(r.status == 1)
        #expect(r.stderr.contains("\(file):5:14: error: unknown transform type 'mask-pi' (did you mean 'mask-pii'?)"), "\(r.stderr)")
        #expect(r.stderr.contains("\(file):6:"), "\(r.stderr)")
        #expect(r.stderr.contains("field 'keep' of transform 'k' (mask-pii) must be an integer, got 'lots'"), "\(r.stderr)")
    }
}
