// `sluice validate`, `sluice run` and the example pipelines, as users run them.
import Foundation
import Testing

@Suite(.serialized) struct PipelineCLITests {
    let scratch = Scratch()
    var data: String { scratch.path + "/data" }
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    @Test func validateReportsEveryProblemAsFileLineColumnAndExitsOne() throws {
        let file = scratch.path + "/broken.yaml"
        try """
        name: broken
        sources:
          g: { type: generatr, count: 1, template: "x" }
        transforms:
          f: { type: filter, inputs: [g], wehre: "a > 1" }
        sinks:
          out: { type: stdout, inputs: [f] }
        """.write(toFile: file, atomically: true, encoding: .utf8)
        let r = try Sluice.run(["validate", file])
        #expect(r.status == 1)
        let lines = r.stderr.split(separator: "\n").map(String.init)
        #expect(lines.contains("\(file):3:14: error: unknown source type 'generatr' (did you mean 'generator'?)"), "\(r.stderr)")
        #expect(lines.contains { $0.hasPrefix("\(file):5:35: error: unknown field 'wehre' for transform type 'filter' (did you mean 'where'?)") }, "\(r.stderr)")
        #expect(lines.last == "3 errors" || lines.last?.hasSuffix("errors") == true)
    }

    @Test func aMistypedInputIsReportedAtTheTypoAndNowhereElse() throws {
        let file = scratch.path + "/typo.yaml"
        try """
        name: typo
        sources:
          gen: { type: generator, count: 10, template: "{}" }
        transforms:
          parse:
            type: json
            inputs:
              - gne
          loop: { type: json, inputs: [parse, back] }
          back: { type: json, inputs: [loop] }
        sinks:
          out: { type: stdout, inputs: [parse, parse.nope, back] }
        """.write(toFile: file, atomically: true, encoding: .utf8)
        let r = try Sluice.run(["validate", file])
        #expect(r.status == 1)
        let errors = r.stderr.split(separator: "\n").map(String.init).filter { $0.contains(": error: ") }
        // One line per mistake, each at the list element that holds it; the source the typo
        // meant is not also reported as unused.
        #expect(errors == [
            "\(file):8:9: error: transform 'parse' reads from 'gne', which is not a component of this pipeline (did you mean 'gen'?)",
            "\(file):10:32: error: the pipeline has a cycle: loop -> back -> loop (a component cannot read, directly or not, from its own output)",
            "\(file):12:40: error: 'parse' has no output 'nope' (its outputs are errors, out)",
        ], "\(r.stderr)")
    }

    @Test func validateAcceptsTheExamples() throws {
        // pipelines/plugins.yaml uses the example plugins in plugins/.
        let r = try Sluice.run(["validate", "--plugins", Self.repo + "/plugins", Self.repo + "/pipelines"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.hasPrefix("ok: 7 pipelines, "))
        // The pipeline files' test cases are checked too.
        let t = try Sluice.run(["test", "--plugins", Self.repo + "/plugins", Self.repo + "/pipelines"])
        #expect(t.status == 0)
    }

    @Test func sluiceTestRunsTheExamplesCasesAndReportsAFailingOne() throws {
        var r = try Sluice.run(["test", "--plugins", Self.repo + "/plugins", Self.repo + "/pipelines"])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(r.stdoutLines.last == "test cases: 10 passed, 0 failed")
        #expect(r.stdoutLines.contains("✔ quickstart: big orders are enriched and keyed, small ones dropped"))
        let file = scratch.path + "/doubler.yaml"
        try """
        name: doubler
        sources:
          in: { type: stdin }
        transforms:
          p: { type: json, inputs: [in] }
          m: { type: map, inputs: [p], set: { twice: "n * 2" } }
        sinks:
          out: { type: drop, inputs: [m] }
        tests:
          - name: doubles
            inputs: { in: ['{"n": 2}'] }
            expect: { out: ['{"n": 2, "twice": 4}'] }
          - name: wrong on purpose
            inputs: { in: ['{"n": 3}'] }
            expect: { out: { count: 2, where: "twice == 5" } }
        """.write(toFile: file, atomically: true, encoding: .utf8)
        r = try Sluice.run(["test", file])
        #expect(r.status == 1)
        #expect(r.stdoutLines == [
            "✔ doubler: doubles",
            "✘ doubler: wrong on purpose (\(file):13)",
            "    sink 'out' got 1 record, expected 2",
            "    sink 'out' got {\"n\": 3,\"twice\":6}, for which 'twice == 5' is not true",
            "test cases: 1 passed, 1 failed",
        ], "\(r.stdout)")
    }

    @Test func theQuickstartRunsAndPrintsTheBigOrders() throws {
        let r = try Sluice.run(["run", Self.repo + "/pipelines/quickstart.yaml"], data: data)
        #expect(r.status == 0, "\(r.stderr)")
        let objects = try r.stdoutLines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        #expect(!objects.isEmpty)
        #expect(objects.allSatisfy { ($0["amount"] as! Int) > 50 && ($0["cents"] as! Int) == ($0["amount"] as! Int) * 100 })
        let c = try Sluice.run(["consume", "big-orders"], data: data)
        #expect(c.stdoutLines.count == objects.count)
    }

    @Test func ordersETLThenTheRouterWorker() throws {
        let out = scratch.path + "/enriched.jsonl"
        let env = "ORDERS_FILE=\(Self.repo)/pipelines/data/orders.jsonl OUT_FILE=\(out)"
        var r = try Sluice.run(["run", Self.repo + "/pipelines/orders-etl.yaml"], data: data, shellPrefix: "export \(env)")
        #expect(r.status == 0, "\(r.stderr)")
        let archived = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n")
        #expect(!archived.isEmpty)
        let dlq = try Sluice.run(["consume", "orders-dlq"], data: data)
        #expect(dlq.stdoutLines == ["this line is not JSON", "this line is not JSON"])
        let enriched = try Sluice.run(["consume", "orders-enriched"], data: data)
        #expect(enriched.stdoutLines.count == archived.count)
        r = try Sluice.run(["run", Self.repo + "/pipelines/router.yaml", "--drain"], data: data)
        #expect(r.status == 0, "\(r.stderr)")
        let large = try Sluice.run(["consume", "orders-large"], data: data).stdoutLines
        let small = try Sluice.run(["consume", "orders-small"], data: data).stdoutLines
        #expect(large.count + small.count == archived.count)
        // The exactly-once ledger, run twice: the second run finds nothing new to write.
        let db = scratch.path + "/ledger.db"
        for _ in 0..<2 {
            r = try Sluice.run(["run", "--quiet", "--drain", Self.repo + "/pipelines/ledger.yaml"], data: data, shellPrefix: "export LEDGER_DB=\(db)")
            #expect(r.status == 0, "\(r.stderr)")
        }
        let copies = try Sluice.run(["consume", "orders-ledger", "--isolation", "read_committed"], data: data).stdoutLines
        #expect(copies.count == archived.count)
        let rows = try Sluice.run(["python3", "-c", "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*), count(distinct id) from orders').fetchone())", db], binary: "/usr/bin/env")
        #expect(rows.stdout == "(\(archived.count), \(archived.count))\n", "\(rows.stderr)")
    }
}

@Suite(.serialized) struct PipelineCrashTests {
    let scratch = Scratch()
    var data: String { scratch.path + "/data" }

    func writePipeline() throws -> String {
        let file = scratch.path + "/copy.yaml"
        try """
        name: copy
        topics:
          src: { partitions: 3 }
          dst: { partitions: 3 }
        sources:
          in: { type: topic, topic: src, batch_records: 200, fetch_bytes: 256KiB }
        transforms:
          p: { type: json, inputs: [in] }
          m: { type: map, inputs: [p], set: { copied: "true" } }
        sinks:
          out: { type: topic, inputs: [m], topic: dst, key: "k" }
        """.write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }

    @Test func sigtermFinishesTheBatchCommitsAndExitsZero() throws {
        signal(SIGPIPE, SIG_IGN)
        let file = try writePipeline()
        try Sluice.run(["topic", "create", "src", "--partitions", "3"], data: data)
        try Sluice.run(["produce", "src", "--key-field", "k"], data: data, stdin: (0..<3000).map { "{\"k\":\"k\($0 % 10)\",\"n\":\($0)}" }.joined(separator: "\n") + "\n")
        let run = try LiveProcess(["run", file, "--data", data])
        usleep(1_500_000)
        kill(run.process.processIdentifier, SIGTERM)
        run.process.waitUntilExit()
        #expect(run.process.terminationStatus == 0, "\(run.stderrText)")
        let d = try Sluice.run(["group", "describe", "copy"], data: data)
        #expect(d.stdoutLines.first?.hasPrefix("group copy: Empty") == true, "it left the group: \(d.stdout)")
        let r = try Sluice.run(["run", file, "--drain"], data: data)
        #expect(r.status == 0, "\(r.stderr)")
        let out = try Sluice.run(["consume", "dst"], data: data).stdoutLines
        let ns = Set(out.compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["n"] as? Int })
        #expect(ns == Set(0..<3000))
    }

    @Test func killingSluiceRunLosesNoRecord() throws {
        signal(SIGPIPE, SIG_IGN)
        let file = try writePipeline()
        try Sluice.run(["topic", "create", "src", "--partitions", "3"], data: data)
        let total = 500_000
        let pad = String(repeating: "p", count: 200)
        try Sluice.run(["produce", "src", "--key-field", "k"], data: data, stdin: (0..<total).map { "{\"k\":\"k\($0 % 10)\",\"n\":\($0),\"pad\":\"\(pad)\"}" }.joined(separator: "\n") + "\n")
        var rng = SystemRandomNumberGenerator()
        var progress: [Int] = []
        var committed: [Int] = []
        // At least three kills, more until one of the killed runs has committed something.
        while progress.count < 3 || (committed.last == 0 && progress.count < 8) {
            let run = try LiveProcess(["run", file, "--data", data])
            usleep(UInt32.random(in: 400_000...900_000, using: &rng))
            run.kill9()
            progress.append(try Sluice.run(["consume", "dst"], data: data).stdoutLines.count)
            let d = try Sluice.run(["group", "describe", "copy"], data: data)
            committed.append(d.stdoutLines.dropFirst(2).compactMap { Int($0.split(separator: " ", omittingEmptySubsequences: true)[2]) }.reduce(0, +))
        }
        // Killed runs committed as they went, so restarts resumed rather than starting over.
        #expect(committed.max()! > 0, "no run committed before it was killed: \(committed)")
        // The kills landed mid-stream: work was left for the last run (a lag, or no commit yet).
        let before = try Sluice.run(["group", "describe", "copy"], data: data)
        let lags = before.stdoutLines.dropFirst(2).map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init)[4] }
        #expect(progress.last! > 0 && lags.contains { $0 == "-" || Int($0)! > 0 }, "the job finished before it was killed; the test proves nothing: \(progress) \(before.stdout)")
        let r = try Sluice.run(["run", file, "--drain"], data: data)
        #expect(r.status == 0, "\(r.stderr)")
        let out = try Sluice.run(["consume", "dst"], data: data).stdoutLines
        var firstSeen: [String: [Int]] = [:]
        var seen = Set<Int>()
        for line in out {
            let value = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            let n = value["n"] as! Int
            if seen.insert(n).inserted { firstSeen[value["k"] as! String, default: []].append(n) }
        }
        #expect(seen == Set(0..<total), "records lost: \(Set(0..<total).subtracting(seen).count)")
        #expect(firstSeen.values.allSatisfy { $0 == $0.sorted() }, "per-key order was not kept")
        print("pipeline kill test: written after each kill \(progress), committed \(committed); \(out.count) records written for \(total) inputs (duplicates after kills are allowed at-least-once)")
    }
}

@Suite(.serialized) struct HTTPSourceTests {
    let scratch = Scratch()
    var data: String { scratch.path + "/data" }

    /// A port nothing listens on right now.
    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// POSTs with curl (a real client); returns the status code and body.
    static func post(_ url: String, _ body: String) throws -> (Int, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        p.arguments = ["-s", "-o", "-", "-w", "\n%{http_code}", "-X", "POST", "--data-binary", body, url]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
    }

    @Test func postedRecordsAreAcceptedOnceDurableAndBadInputIsAnswered() throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/curl"), "needs curl")
        signal(SIGPIPE, SIG_IGN)
        let port = Self.freePort()
        let file = scratch.path + "/web.yaml"
        try """
        name: web
        topics:
          events: { partitions: 2 }
          rejects: {}
        sources:
          http: { type: http, address: "127.0.0.1:\(port)", path: /events, split: lines, max_body: 1KiB }
        transforms:
          p: { type: json, inputs: [http] }
        sinks:
          keep: { type: topic, inputs: [p], topic: events, key: "user" }
          bad: { type: topic, inputs: [p.errors], topic: rejects }
        """.write(toFile: file, atomically: true, encoding: .utf8)
        let run = try LiveProcess(["run", file, "--data", data, "--quiet"])
        let url = "http://127.0.0.1:\(port)/events"
        var status = 0
        let deadline = Date().addingTimeInterval(20)
        var reply = (0, "")
        while Date() < deadline {
            reply = try Self.post(url, "{\"user\":\"a\",\"n\":1}\n{\"user\":\"b\",\"n\":2}\nnot json\n")
            status = reply.0
            if status != 0 { break }
            usleep(100_000)
        }
        #expect(status == 202 && reply.1 == "{\"accepted\":3}\n", "\(reply)")
        let big = try Self.post(url, String(repeating: "x", count: 4096))
        #expect(big.0 == 413)
        let wrongPath = try Self.post("http://127.0.0.1:\(port)/nope", "{}")
        #expect(wrongPath.0 == 404)
        kill(run.process.processIdentifier, SIGTERM)
        run.process.waitUntilExit()
        #expect(run.process.terminationStatus == 0, "\(run.stderrText)")
        #expect(run.stderrText.isEmpty, "\(run.stderrText)")
        let kept = try Sluice.run(["consume", "events"], data: data).stdoutLines.sorted()
        #expect(kept == ["{\"user\":\"a\",\"n\":1}", "{\"user\":\"b\",\"n\":2}"])
        #expect(try Sluice.run(["consume", "rejects"], data: data).stdoutLines == ["not json"])
    }
}

@Suite(.serialized) struct HTTPSinkTests {
    let scratch = Scratch()
    var data: String { scratch.path + "/data" }

    @Test func postsBatchesRetries5xxAndSends4xxToErrors() throws {
        // A real HTTP server (Python's http.server): 500 to the first POST on /flaky, 400 on
        // /refuse, 200 otherwise; accepted bodies are appended to a file.
        let port = HTTPSourceTests.freePort()
        let log = scratch.path + "/received.txt"
        let script = scratch.path + "/server.py"
        try """
        import http.server, sys
        state = {"flaky": 0}
        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a): pass
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == "/refuse":
                    self.send_response(400); self.end_headers(); return
                if self.path == "/flaky" and state["flaky"] == 0:
                    state["flaky"] = 1
                    self.send_response(500); self.end_headers(); return
                with open(sys.argv[2], "ab") as f: f.write(body + b"--\\n")
                self.send_response(200); self.end_headers()
        http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
        """.write(toFile: script, atomically: true, encoding: .utf8)
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        server.arguments = ["python3", script, String(port), log]
        try server.run()
        // SIGKILL: a child may inherit an ignored SIGTERM from the test process.
        defer { kill(server.processIdentifier, SIGKILL); server.waitUntilExit() }
        var up = false
        for _ in 0..<100 where !up {
            up = (try? HTTPSourceTests.post("http://127.0.0.1:\(port)/ping", "x").0) == 200
            if !up { usleep(50_000) }
        }
        try #require(up, "the test server did not start")
        try "".write(toFile: log, atomically: true, encoding: .utf8)
        let file = scratch.path + "/hooks.yaml"
        let pipeline = """
        name: hooks
        topics:
          refused: {}
        sources:
          g: { type: generator, count: 5, template: '{"n": {{i}}}' }
        sinks:
          flaky: { type: http, inputs: [g], url: "http://127.0.0.1:\(port)/flaky", format: lines, batch_records: 10, backoff: 10ms }
          strict: { type: http, inputs: [g], url: "http://127.0.0.1:\(port)/refuse", batch_records: 2 }
          dlq: { type: topic, inputs: [strict.errors], topic: refused }
        """
        try pipeline.write(toFile: file, atomically: true, encoding: .utf8)
        var r = try Sluice.run(["run", file, "--quiet"], data: data)
        #expect(r.status == 0, "\(r.stderr)")
        // The 500 was retried: the five records arrived once, in one request.
        #expect(try String(contentsOfFile: log, encoding: .utf8) == (0..<5).map { "{\"n\": \($0)}\n" }.joined() + "--\n")
        // The 400s sent every record of the refused requests to the error output, with why.
        let refused = try Sluice.run(["consume", "refused", "--format", "json"], data: data).stdoutLines
        #expect(refused.count == 5)
        #expect(refused.allSatisfy { $0.contains("\"sluice.error\":\"HTTP 400 from http://127.0.0.1:\(port)/refuse\"") }, "\(refused)")
        // Without an error output, a refusal stops the pipeline with a clear message.
        try pipeline.replacingOccurrences(of: "\n  dlq: { type: topic, inputs: [strict.errors], topic: refused }", with: "").replacingOccurrences(of: "name: hooks", with: "name: hooks2").write(toFile: file, atomically: true, encoding: .utf8)
        r = try Sluice.run(["run", file, "--quiet"], data: data)
        #expect(r.status == 2)
        #expect(r.stderr.contains("sink 'strict' refused 5 records: HTTP 400") && r.stderr.contains("wire 'strict.errors'"), "\(r.stderr)")
    }
}
