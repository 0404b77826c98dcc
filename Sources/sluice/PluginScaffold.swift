// The files `sluice plugin new` writes: a manifest, the plugin itself, and a pipeline with a
// test case that runs it, so a new plugin is tested from its first minute.
import SluiceRuntime

enum PluginScaffold {
    /// (file name, text, executable)
    static func files(name: String, kind: ComponentKind, runtime: PluginRuntime) -> [(String, String, Bool)] {
        switch (runtime, kind) {
        case (.wasm, _): return wasmTransform(name)
        case (.process, .transform): return processTransform(name)
        case (.process, .sink): return processSink(name)
        case (.process, .source): return processSource(name)
        }
    }

    static func manifest(_ name: String, _ kind: ComponentKind, _ runtime: PluginRuntime, entry: String, summary: String, fields: String) -> String {
        """
        # The manifest Sluice reads to find this plugin (docs/plugins.md).
        name: \(name)
        kind: \(kind.rawValue)
        runtime: \(runtime.rawValue)
        version: 0.1.0
        summary: \(summary)
        entry: \(entry)
        fields:
        \(fields)
        """
    }

    static let pythonLoop = """
    def main():
        config = {}
        out = sys.stdout
        for line in sys.stdin:
            message = json.loads(line)
            kind = message["type"]
            if kind == "configure":
                config = message["config"]
                reply = {"type": "ready"}
            else:
                reply = handle(message, config)
            out.write(json.dumps(reply) + "\\n")
            out.flush()


    if __name__ == "__main__":
        main()

    """

    static func processTransform(_ name: String) -> [(String, String, Bool)] {
        let manifestText = manifest(name, .transform, .process, entry: "python3 \(name).py", summary: "Adds a field to each JSON record.", fields: """
          - name: field
            type: string
            default: tagged_by
            doc: The field to add.
          - name: tag
            type: string
            required: true
            doc: Its value.
        """)
        let script = """
        #!/usr/bin/env python3
        # \(name): a Sluice process transform. One JSON message per line on stdin, one reply per
        # line on stdout, in order (docs/plugins.md). Anything printed to stderr goes to Sluice's log.
        import json
        import sys


        def transform(record, config):
            \"\"\"Returns the records that replace `record`: [] drops it, [record] keeps it.\"\"\"
            value = json.loads(record["value"])
            value[config["field"]] = config["tag"]
            return [{"value": json.dumps(value, separators=(",", ":"))}]


        def handle(message, config):
            results = []
            for record in message["records"]:
                try:
                    results.append(transform(record, config))
                except Exception as e:  # goes to the component's .errors output
                    results.append({"error": f"{type(e).__name__}: {e}"})
            return {"type": "result", "id": message["id"], "results": results}


        """ + pythonLoop
        return [("plugin.yaml", manifestText, false), ("\(name).py", script, true), ("pipeline.yaml", pipeline(name, kind: .transform), false)]
    }

    static func processSink(_ name: String) -> [(String, String, Bool)] {
        let manifestText = manifest(name, .sink, .process, entry: "python3 \(name).py", summary: "Appends each record's value as a line to a file.", fields: """
          - name: path
            type: string
            required: true
            doc: The file to append to.
        """)
        let script = """
        #!/usr/bin/env python3
        # \(name): a Sluice process sink. It answers a write only once the records are on disk,
        # because Sluice commits source offsets after that answer (docs/plugins.md).
        import json
        import os
        import sys

        target = None


        def handle(message, config):
            global target
            if target is None:
                target = open(config["path"], "a", encoding="utf-8")
            for record in message["records"]:
                target.write((record["value"] or "") + "\\n")
            target.flush()
            os.fsync(target.fileno())
            return {"type": "ack", "id": message["id"]}


        """ + pythonLoop
        return [("plugin.yaml", manifestText, false), ("\(name).py", script, true), ("pipeline.yaml", pipeline(name, kind: .sink), false)]
    }

    static func processSource(_ name: String) -> [(String, String, Bool)] {
        let manifestText = manifest(name, .source, .process, entry: "python3 \(name).py", summary: "Emits numbered JSON records, then ends.", fields: """
          - name: count
            type: int
            default: "10"
            doc: How many records.
          - name: batch
            type: int
            default: "100"
            doc: Records per batch.
        """)
        let script = """
        #!/usr/bin/env python3
        # \(name): a Sluice process source. After configure it writes batches on its own; Sluice
        # answers each with {"type":"ack","id":N} once every sink holds it durably. It writes
        # {"type":"end"} when it has nothing more (docs/plugins.md).
        import json
        import sys


        def send(message):
            sys.stdout.write(json.dumps(message) + "\\n")
            sys.stdout.flush()


        def main():
            configure = json.loads(sys.stdin.readline())
            config = configure["config"]
            send({"type": "ready"})
            count, size = config["count"], config["batch"]
            sent, batch_id = 0, 0
            while sent < count:
                n = min(size, count - sent)
                records = [{"key": str(i), "value": json.dumps({"n": i})} for i in range(sent, sent + n)]
                batch_id += 1
                send({"type": "batch", "id": batch_id, "records": records})
                ack = json.loads(sys.stdin.readline())
                assert ack == {"type": "ack", "id": batch_id}, ack
                sent += n
            send({"type": "end"})


        if __name__ == "__main__":
            main()

        """
        return [("plugin.yaml", manifestText, false), ("\(name).py", script, true), ("pipeline.yaml", pipeline(name, kind: .source), false)]
    }

    static func wasmTransform(_ name: String) -> [(String, String, Bool)] {
        let manifestText = manifest(name, .transform, .wasm, entry: "\(name).wat", summary: "Keeps records whose value is longer than min_length bytes (WebAssembly).", fields: """
          - name: min_length
            type: int
            default: "10"
            doc: Records with values this short or shorter are dropped.
        """)
        return [("plugin.yaml", manifestText, false), ("\(name).wat", WasmScaffold.filterWAT(name), false), ("pipeline.yaml", pipeline(name, kind: .transform, wasm: true), false)]
    }

    static func pipeline(_ name: String, kind: ComponentKind, wasm: Bool = false) -> String {
        switch kind {
        case .transform where wasm:
            return """
            # Runs the \(name) plugin; test it with: sluice test plugins/\(name)/pipeline.yaml
            name: \(name)-example
            sources:
              input: { type: generator, count: 3, template: '{"n": {{i}}}' }
            transforms:
              step: { type: \(name), inputs: [input], min_length: 10 }
            sinks:
              print: { type: stdout, inputs: [step] }
            tests:
              - name: short values are dropped, long ones kept
                inputs:
                  input:
                    - 'short'
                    - '{"a long value": true}'
                expect:
                  print:
                    - '{"a long value": true}'

            """
        case .transform:
            return """
            # Runs the \(name) plugin; test it with: sluice test plugins/\(name)/pipeline.yaml
            name: \(name)-example
            sources:
              input: { type: generator, count: 3, template: '{"n": {{i}}}' }
            transforms:
              step: { type: \(name), inputs: [input], tag: hello }
            sinks:
              print: { type: stdout, inputs: [step] }
            tests:
              - name: each record gets the field
                inputs:
                  input:
                    - '{"n": 1}'
                    - '{"n": 2}'
                expect:
                  print:
                    - '{"n": 1, "tagged_by": "hello"}'
                    - '{"n": 2, "tagged_by": "hello"}'

            """
        case .sink:
            return """
            # Runs the \(name) plugin; test it with: sluice test plugins/\(name)/pipeline.yaml
            # (test cases replace sinks with in-memory ones; run it to see the file written)
            name: \(name)-example
            sources:
              input: { type: generator, count: 3, template: '{"n": {{i}}}' }
            transforms:
              parse: { type: json, inputs: [input] }
            sinks:
              out: { type: \(name), inputs: [parse], path: \(name)-out.jsonl }
            tests:
              - name: every record reaches the sink
                inputs:
                  input:
                    - '{"n": 1}'
                    - '{"n": 2}'
                expect:
                  out:
                    - '{"n": 1}'
                    - '{"n": 2}'

            """
        case .source:
            return """
            # Runs the \(name) plugin; test it with: sluice test plugins/\(name)/pipeline.yaml
            # (test cases replace sources with their inputs; run it to see the plugin's records)
            name: \(name)-example
            sources:
              input: { type: \(name), count: 5 }
            transforms:
              parse: { type: json, inputs: [input] }
            sinks:
              print: { type: stdout, inputs: [parse] }
            tests:
              - name: records pass through
                inputs:
                  input:
                    - '{"n": 1}'
                expect:
                  print:
                    - '{"n": 1}'

            """
        }
    }
}
