// Queues (share groups) from the command line: `sluice queue`, `consume --share-group`, a
// queue pipeline SIGKILLed again and again, and confluent-kafka's ShareConsumer against
// `sluice serve`.
import Foundation
import Testing

@Suite(.serialized) struct QueueCLITests {
    let scratch = Scratch()
    var data: String { scratch.path + "/data" }

    private func ids(_ lines: [String]) throws -> [Int] {
        try lines.map { l in
            let o = try JSONSerialization.jsonObject(with: Data(l.utf8)) as! [String: Any]
            return o["id"] as! Int
        }
    }

    /// A real HTTP server (Python's, threaded) standing in for a webhook that fails on
    /// purpose: 400 for any request holding a "bad" job (the record's fault), 503 for any
    /// holding a "flaky" one (a fault that might pass), 200 otherwise, appending each line
    /// of the bodies it accepted to `ledger` as `PATH<tab>LINE`. Each request takes
    /// `delayMs` first.
    private func startWebhook(ledger: String, delayMs: Int = 0) throws -> (Process, Int) {
        let port = HTTPSourceTests.freePort()
        let script = scratch.path + "/webhook.py"
        try """
        import http.server, sys, threading, time
        lock = threading.Lock()
        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a): pass
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                time.sleep(\(delayMs) / 1000)
                code = 400 if b'"bad"' in body else 503 if b'"flaky"' in body else 200
                if code == 200:
                    lines = b"".join(self.path.encode() + b"\\t" + l + b"\\n" for l in body.splitlines() if l)
                    with lock, open(sys.argv[2], "ab") as f: f.write(lines)
                self.send_response(code); self.send_header("Content-Length", "0"); self.end_headers()
        http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
        """.write(toFile: script, atomically: true, encoding: .utf8)
        try "".write(toFile: ledger, atomically: true, encoding: .utf8)
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        server.arguments = ["python3", script, String(port), ledger]
        try server.run()
        var up = false
        for _ in 0..<100 where !up {
            up = (try? HTTPSourceTests.post("http://127.0.0.1:\(port)/ping", "{}").0) == 200
            if !up { usleep(50_000) }
        }
        if !up { kill(server.processIdentifier, SIGKILL) }
        try #require(up, "the test webhook did not start")
        try "".write(toFile: ledger, atomically: true, encoding: .utf8)
        return (server, port)
    }

    /// The webhook's ledger: which path took which line.
    private func ledgerLines(_ path: String) throws -> [(path: String, line: String)] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map { l in
            let parts = l.split(separator: "\t", maxSplits: 1).map(String.init)
            return (parts[0], parts.count > 1 ? parts[1] : "")
        }
    }

    /// `count` jobs, every 499th poison: alternately "bad" (the webhook refuses it) and
    /// "flaky" (the webhook fails with 503 for it).
    private func webhookJobs(_ count: Int) -> (lines: String, good: Set<Int>, bad: Set<Int>, flaky: Set<Int>) {
        var lines = "", good = Set<Int>(), bad = Set<Int>(), flaky = Set<Int>()
        for i in 1...count {
            let kind = i % 499 != 0 ? "ok" : (i / 499) % 2 == 0 ? "bad" : "flaky"
            switch kind {
            case "bad": bad.insert(i)
            case "flaky": flaky.insert(i)
            default: good.insert(i)
            }
            lines += "{\"id\":\(i),\"kind\":\"\(kind)\"}\n"
        }
        return (lines, good, bad, flaky)
    }

    @Test func aQueuePipelineWithAFailingSinkKilledTenTimesSettlesEveryRecordAndDeadLettersOnlyThePoison() throws {
        // 20,000 jobs; the "bad" ones are refused (dead-lettered at once), the "flaky" ones
        // fail with 503 (released, dead-lettered on their third delivery).
        let (lines, good, bad, flaky) = webhookJobs(20_000)
        let ledger = scratch.path + "/ledger.jsonl"
        let (server, port) = try startWebhook(ledger: ledger)
        // SIGKILL: a child may inherit an ignored SIGTERM from the test process.
        defer { kill(server.processIdentifier, SIGKILL); server.waitUntilExit() }
        var r = try Sluice.run(["topic", "create", "jobs", "--partitions", "1"], data: data)
        #expect(r.status == 0, "\(r.stderr)")
        r = try Sluice.run(["produce", "jobs"], data: data, stdin: lines)
        #expect(r.status == 0, "\(r.stderr)")
        let pipeline = scratch.path + "/webhook-jobs.yaml"
        try """
        name: webhook-jobs
        topics:
          jobs: { partitions: 1 }
          jobs.dead: { partitions: 1 }
        sources:
          jobs: { type: queue, topic: jobs, instances: 4, max_deliveries: 3, dead_letter: jobs.dead, lock: 30s }
        sinks:
          hook: { type: http, inputs: [jobs], url: "http://127.0.0.1:\(port)/jobs", format: lines, max_retries: 0, backoff: 1ms }
        """.write(toFile: pipeline, atomically: true, encoding: .utf8)
        var kills = 0
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<10 {
            let p = try LiveProcess(["run", pipeline, "--data", data])
            usleep(UInt32.random(in: 150_000...600_000, using: &rng))
            p.kill9()
            kills += 1
            #expect(!p.stderrText.contains("error:"), "\(p.stderrText)")
        }
        // A last run to the end.
        r = try Sluice.run(["run", pipeline, "--drain"], data: data)
        #expect(r.status == 0, "\(r.stderr)")
        // Every record of the queue is settled: the group's start offset is the log's end.
        let d = try Sluice.run(["queue", "describe", "webhook-jobs"], data: data)
        let row = d.stdoutLines.first { $0.hasPrefix("jobs ") }?.split(separator: " ", omittingEmptySubsequences: true).map(String.init) ?? []
        #expect(row.count >= 9 && row[2] == "20000" && row[4] == "0" && row[8] == "0", "\(d.stdout)")
        // The webhook took every good job (duplicates allowed: at-least-once), none lost, and
        // never a poison one.
        let taken = try ids(try ledgerLines(ledger).map(\.line))
        #expect(Set(taken) == good, "missing: \(good.subtracting(taken).sorted().prefix(10)), extra: \(Set(taken).subtracting(good).sorted().prefix(10))")
        // The poison jobs are dead letters with why, and only they.
        let dead = try Sluice.run(["consume", "jobs.dead", "--format", "json"], data: data)
        var deadIds = Set<Int>()
        var refusedAtOnce = 0, rejectedOnTheLast = 0
        for l in dead.stdoutLines {
            let o = try JSONSerialization.jsonObject(with: Data(l.utf8)) as! [String: Any]
            let id = try ids([o["value"] as! String])[0]
            deadIds.insert(id)
            let headers = o["headers"] as! [String: String]
            let count = Int(headers["sluice.dlq.delivery.count"] ?? "") ?? 0
            // Rejected by a worker, or, when a worker was killed during the last delivery,
            // archived at the limit by the restarted broker.
            if headers["sluice.dlq.reason"] == "rejected" {
                if bad.contains(id) {
                    #expect(headers["sluice.dlq.error"]?.contains("HTTP 400") == true, "\(headers)")
                    if count == 1 { refusedAtOnce += 1 }
                } else {
                    #expect(headers["sluice.dlq.error"]?.contains("HTTP 503") == true, "\(headers)")
                    #expect(count == 3, "\(headers)")
                    rejectedOnTheLast += 1
                }
            } else {
                #expect(headers["sluice.dlq.reason"] == "delivery-limit", "\(headers)")
                #expect(count == 3, "\(headers)")
            }
        }
        #expect(deadIds == bad.union(flaky), "missing: \(bad.union(flaky).subtracting(deadIds).sorted()), extra: \(deadIds.subtracting(bad.union(flaky)).sorted())")
        #expect(refusedAtOnce > 0 && rejectedOnTheLast > 0, "\(refusedAtOnce) refused at once, \(rejectedOnTheLast) rejected on the last delivery")
        print("queue crash test: \(kills) kills, \(taken.count) taken by the webhook (\(good.count) distinct jobs), \(dead.stdoutLines.count) dead letters (\(refusedAtOnce) refused on the first delivery, \(rejectedOnTheLast) rejected on the third)")
    }

    @Test func threeSluiceRunProcessesShareOneQueueThroughServeAndOneIsKilled() throws {
        // `sluice serve` holds the log; three `sluice run --broker kafka://…` processes, two
        // workers each, share one queue of 2 partitions over the wire (six members: more
        // than partitions). The third is SIGKILLed mid-run: its records come back as its
        // connections drop, and the other two drain the queue.
        let (lines, good, bad, flaky) = webhookJobs(12_000)
        let ledger = scratch.path + "/shared-ledger.tsv"
        let (webhook, hookPort) = try startWebhook(ledger: ledger, delayMs: 5)
        defer { kill(webhook.processIdentifier, SIGKILL); webhook.waitUntilExit() }
        let port = HTTPSourceTests.freePort()
        let server = try LiveProcess(["serve", "--data", data, "--kafka", "127.0.0.1:\(port)"])
        defer { server.kill9() }
        let deadline = Date().addingTimeInterval(20)
        while !server.stderrText.contains("Kafka listener on"), Date() < deadline { usleep(20_000) }
        let broker = "kafka://127.0.0.1:\(port)"
        var r = try Sluice.run(["topic", "create", "jobs", "--partitions", "2", "--broker", broker])
        #expect(r.status == 0, "\(r.stderr)")
        r = try Sluice.run(["produce", "jobs", "--broker", broker], stdin: lines)
        #expect(r.status == 0, "\(r.stderr)")
        let pipeline = scratch.path + "/shared-jobs.yaml"
        try """
        name: shared-jobs
        topics:
          jobs: { partitions: 2 }
          jobs.dead: { partitions: 1 }
        sources:
          jobs: { type: queue, topic: jobs, instances: 2, max_deliveries: 3, dead_letter: jobs.dead, lock: 30s, batch_records: 100 }
        sinks:
          hook: { type: http, inputs: [jobs], url: "http://127.0.0.1:\(hookPort)/${WORKER}", format: lines, max_retries: 0, backoff: 1ms }
        """.write(toFile: pipeline, atomically: true, encoding: .utf8)
        let victim = try LiveProcess(["run", pipeline, "--broker", broker], environment: ["WORKER": "victim"])
        let a = try LiveProcess(["run", pipeline, "--broker", broker, "--drain"], environment: ["WORKER": "a"])
        let b = try LiveProcess(["run", pipeline, "--broker", broker, "--drain"], environment: ["WORKER": "b"])
        // Killed once it has taken work (a fixed sleep lost the race on a loaded machine).
        let started = Date().addingTimeInterval(30)
        while !((try? ledgerLines(ledger))?.contains { $0.path == "/victim" } ?? false), Date() < started { usleep(20_000) }
        usleep(100_000)
        victim.kill9()
        #expect(a.wait(timeout: 90) == 0, "\(a.stderrText.suffix(3000))")
        #expect(b.wait(timeout: 90) == 0, "\(b.stderrText.suffix(3000))")
        #expect(!victim.stderrText.contains("error:"), "\(victim.stderrText.suffix(2000))")
        // Settled: each partition's start offset is its end, nothing in flight.
        let d = try Sluice.run(["queue", "describe", "shared-jobs"], data: data)
        let rows = d.stdoutLines.filter { $0.hasPrefix("jobs ") }.map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        #expect(rows.count == 2 && rows.allSatisfy { $0.count >= 9 && $0[2] == $0[3] && $0[4] == "0" } && rows.reduce(0) { $0 + (Int($1[3]) ?? 0) } == 12_000, "\(d.stdout)")
        // Every good job reached the webhook, no poison one did, and every process took work.
        let taken = try ledgerLines(ledger)
        let ids = try self.ids(taken.map(\.line))
        #expect(Set(ids) == good, "missing: \(good.subtracting(ids).sorted().prefix(10)), extra: \(Set(ids).subtracting(good).sorted().prefix(10))")
        let byProcess = Dictionary(grouping: taken, by: \.path).mapValues(\.count)
        // The killed process had taken work and at least one other shared the queue with it
        // (which of a and b starts first decides whether the other finds work left).
        #expect(byProcess["/victim"] != nil && byProcess.count >= 2, "\(byProcess)")
        // The poison jobs are dead letters, and only they.
        let dead = try Sluice.run(["consume", "jobs.dead", "--broker", broker, "--format", "json", "--max", "\(bad.count + flaky.count)"])
        var deadIds = Set<Int>()
        for l in dead.stdoutLines {
            let o = try JSONSerialization.jsonObject(with: Data(l.utf8)) as! [String: Any]
            let id = try self.ids([o["value"] as! String])[0]
            deadIds.insert(id)
            let headers = o["headers"] as! [String: String]
            let count = Int(headers["sluice.dlq.delivery.count"] ?? "") ?? 0
            #expect(headers["sluice.dlq.reason"] == "rejected" || headers["sluice.dlq.reason"] == "delivery-limit", "\(headers)")
            if flaky.contains(id) { #expect(count == 3, "\(headers)") }
        }
        #expect(deadIds == bad.union(flaky), "missing: \(bad.union(flaky).subtracting(deadIds).sorted()), extra: \(deadIds.subtracting(bad.union(flaky)).sorted())")
        print("shared queue: \(byProcess) lines taken, \(dead.stdoutLines.count) dead letters")
    }

    @Test func queueCommandsConfigureConsumeAndDescribe() throws {
        var r = try Sluice.run(["topic", "create", "work", "--partitions", "1"], data: data)
        r = try Sluice.run(["produce", "work"], data: data, stdin: (1...10).map { "job-\($0)" }.joined(separator: "\n") + "\n")
        #expect(r.status == 0)
        r = try Sluice.run(["queue", "config", "crew", "--max-deliveries", "2", "--dead-letter", "work.dead", "--lock", "10s", "--start", "earliest"], data: data)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdoutLines.contains("share.delivery.count.limit=2") && r.stdoutLines.contains("errors.deadletterqueue.topic.name=work.dead") && r.stdoutLines.contains("share.record.lock.duration.ms=10000"), "\(r.stdout)")
        r = try Sluice.run(["consume", "work", "--share-group", "crew", "--max", "3"], data: data)
        #expect(r.stdoutLines == ["job-1", "job-2", "job-3"], "\(r.stdout)\(r.stderr)")
        r = try Sluice.run(["consume", "work", "--share-group", "crew", "--max", "2", "--ack", "reject"], data: data)
        #expect(r.stdoutLines == ["job-4", "job-5"], "\(r.stderr)")
        r = try Sluice.run(["consume", "work", "--share-group", "crew", "--max", "1", "--ack", "release"], data: data)
        #expect(r.stdoutLines == ["job-6"])
        r = try Sluice.run(["queue", "describe", "crew"], data: data)
        #expect(r.stdoutLines.first == "share group crew: Empty, epoch 2", "\(r.stdout)")
        #expect(r.stdout.contains("lock 10s, max deliveries 2, start earliest, max in flight 2000, dead letters work.dead"), "\(r.stdout)")
        // Start 5 (1-3 accepted, 4-5 rejected), job-6 delivered once and released.
        let row = r.stdoutLines.first { $0.hasPrefix("work ") }?.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        #expect(row == ["work", "0", "5", "6", "1", "0", "0", "0", "5", "-"], "\(r.stdout)")
        r = try Sluice.run(["consume", "work.dead"], data: data)
        #expect(r.stdoutLines == ["job-4", "job-5"])
        // job-6 comes back (its second and last delivery), then the rest.
        r = try Sluice.run(["consume", "work", "--share-group", "crew"], data: data)
        #expect(r.stdoutLines == ["job-6", "job-7", "job-8", "job-9", "job-10"], "\(r.stdout)")
        r = try Sluice.run(["queue", "list"], data: data)
        #expect(r.stdoutLines.count == 2 && r.stdoutLines[1].hasPrefix("crew "), "\(r.stdout)")
        r = try Sluice.run(["group", "list"], data: data)
        #expect(r.stdoutLines.contains { $0.split(separator: " ", omittingEmptySubsequences: true) == ["crew", "share", "Empty", "0"] }, "\(r.stdout)")
        // Refusals, one sentence each.
        r = try Sluice.run(["consume", "work", "--share-group", "crew", "--group", "g"], data: data)
        #expect(r.status != 0 && r.stderr.contains("--group and --share-group cannot be used together"), "\(r.stderr)")
        r = try Sluice.run(["consume", "work", "--ack", "reject"], data: data)
        #expect(r.status != 0 && r.stderr.contains("--ack applies to --share-group only"))
        r = try Sluice.run(["queue", "describe", "nobody"], data: data)
        #expect(r.status != 0 && r.stderr.contains("share group 'nobody' does not exist") && r.stderr.contains("crew"), "\(r.stderr)")
        r = try Sluice.run(["queue", "config", "crew", "--start", "middle"], data: data)
        #expect(r.status != 0 && r.stderr.contains("--start must be earliest or latest"))
        r = try Sluice.run(["queue", "config", "crew", "--max-deliveries", "0"], data: data)
        #expect(r.status != 0 && r.stderr.contains("max deliveries 0 is outside 1...100"), "\(r.stderr)")
        // A queue cannot be exactly-once, and validate says why at the source's line.
        let file = scratch.path + "/eo.yaml"
        try """
        name: eo
        guarantee: exactly-once
        sources:
          work: { type: queue, topic: work }
        sinks:
          out: { type: stdout, inputs: [work], delivery: at-least-once }
        """.write(toFile: file, atomically: true, encoding: .utf8)
        r = try Sluice.run(["validate", file])
        #expect(r.status != 0 && r.stderr.contains("eo.yaml:4:3: error: source 'work' is a queue, which cannot be exactly-once"), "\(r.stderr)")
    }

    @Test func confluentKafkaShareConsumersAgainstServe() throws {
        // Only the newest confluent-kafka has a ShareConsumer (2.15+); the pinned 2.6 has none.
        let python = try PythonClients.newest.python()
        let port = HTTPSourceTests.freePort()
        let server = try LiveProcess(["serve", "--data", data, "--kafka", "127.0.0.1:\(port)"])
        defer { server.kill9() }
        let deadline = Date().addingTimeInterval(20)
        while !server.stderrText.contains("Kafka listener on"), Date() < deadline { usleep(20_000) }
        let r = try Sluice.run(["-c", "timeout -s KILL 240 \(python) \(PipelineCLITests.repo)/scripts/interop/share_check.py --bootstrap 127.0.0.1:\(port) all 2>&1 | grep -v '^%'"], binary: "/bin/sh")
        let status = r.status, output = r.stdout
        print(output)
        #expect(status == 0, "\(output)\n\(server.stderrText.suffix(2000))")
        for check in ["OK share: 3 members on 1 partition processed 3000 records exactly once", "OK redeliver: 40 records held by a stopped member went to another after its lock ran out",
                      "OK redeliver: a member killed with SIGKILL", "OK reject: REJECT archived job-3", "OK deadletter: released 3 times",
                      "refused: share.record.lock.duration.ms must be a whole number, not 'soon'", "refused: lock duration 5 ms is outside 100 ms...1 h",
                      "refused: 'share.colour' is not a share group config", "OK configs: the refusals left the group's settings as they were"] {
            #expect(output.contains(check), "missing '\(check)'")
        }
        // Beside the running server, the queue commands read what it wrote.
        let listed = try Sluice.run(["queue", "list"], data: data)
        #expect(listed.stdoutLines.filter { $0.hasPrefix("workers-") || $0.hasPrefix("redeliver-") || $0.hasPrefix("reject-") || $0.hasPrefix("poison-") }.count == 4, "\(listed.stdout)")
        #expect(!server.stderrText.contains("error"), "\(server.stderrText.suffix(2000))")
    }
}
