// Pipelines on a Kafka-protocol cluster through librdkafka (the RdKafka trait): the same
// pipeline files with `broker: kafka://…` or `--broker`, run by real `sluice run` processes
// against a real `sluice serve`, with kcat reading and writing beside them. At-least-once,
// exactly-once (topic and SQLite sinks), workers sharing partitions, SIGKILLed workers, a
// restarted broker, and bad client settings.
#if RdKafka
import Foundation
import Testing

/// Polls `check` every 200 ms until it holds or `seconds` pass; returns whether it held.
func waitUntil(_ seconds: Double, _ check: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try check() { return true }
        usleep(200_000)
    }
    return try check()
}

/// Starts `sluice serve` on `port` (default: one the system picks, port 0) and returns it
/// once the listener says where it is.
func startServe(port: Int? = nil, data: String) throws -> (LiveProcess, Int) {
    let p = try LiveProcess(["serve", "--kafka", "127.0.0.1:\(port ?? 0)", "--data", data, "--log-level", "info"])
    let deadline = Date().addingTimeInterval(20)
    while !p.stderrText.contains("Kafka listener on"), Date() < deadline { usleep(20_000) }
    let bound = p.stderrText.firstMatch(of: /Kafka listener on 127\.0\.0\.1:(\d+)/).flatMap { Int($0.1) }
    #expect(bound != nil && (port == nil || bound == port), "\(p.stderrText)")
    return (p, bound ?? -1)
}

@Suite(.serialized) struct KafkaClusterTests {
    let scratch = Scratch()

    func serve(port: Int? = nil, data: String? = nil) throws -> (LiveProcess, Int) {
        try startServe(port: port, data: data ?? scratch.path + "/broker")
    }

    @discardableResult
    func sh(_ command: String) throws -> (status: Int32, output: String) {
        let r = try Sluice.run(["-c", command + " 2>&1"], binary: "/bin/sh")
        return (r.status, r.stdout)
    }

    /// `count` JSON records {"id", "key", "seq"} keyed by "key", produced with kcat.
    func produce(_ port: Int, topic: String, from: Int = 0, count: Int) throws {
        let file = scratch.path + "/input-\(from).txt"
        var text = ""
        for i in from..<(from + count) { text += "k\(i % 50)|{\"id\":\(i),\"key\":\"k\(i % 50)\",\"seq\":\(i / 50)}\n" }
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        let r = try sh("kcat -P -b 127.0.0.1:\(port) -t \(topic) -K '|' -X enable.idempotence=true < \(file)")
        #expect(r.status == 0, "\(r.output)")
    }

    /// The ids in `topic` as a read_committed consumer sees them, and the values.
    func readIds(_ port: Int, topic: String) throws -> (ids: [Int], values: [[String: Any]]) {
        let r = try sh("kcat -C -b 127.0.0.1:\(port) -t \(topic) -e -q -X isolation.level=read_committed -f '%s\\n'")
        var ids: [Int] = [], values: [[String: Any]] = []
        for line in r.output.split(separator: "\n") where line.hasPrefix("{") {
            guard let v = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { continue }
            values.append(v)
            if let id = v["id"] as? Int { ids.append(id) }
        }
        return (ids, values)
    }

    func pipeline(_ name: String, port: Int, guarantee: String = "at-least-once", partitions: Int = 2, extraSinks: String = "", throttle: Int? = nil, options: String = "") throws -> String {
        let file = scratch.path + "/\(name).yaml"
        let input = throttle.map { _ in "slow" } ?? "parse"
        try """
        name: \(name)
        broker: kafka://127.0.0.1:\(port)
        guarantee: \(guarantee)
        \(options)
        topics:
          input: { partitions: \(partitions) }
          output: { partitions: \(partitions) }
        sources:
          in: { type: topic, topic: input, fetch_bytes: 64KiB }
        transforms:
          parse: { type: json, inputs: [in] }
        \(throttle.map { "  slow: { type: throttle, inputs: [parse], rate: \($0) }" } ?? "")
          m: { type: map, inputs: [\(input)], set: { doubled: "seq * 2" } }
        sinks:
          out: { type: topic, inputs: [m], topic: output, key: key }
        \(extraSinks)
        """.write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }

    /// The output topic holds every id of 0..<n exactly once (read_committed); returns what
    /// was read, for further checks.
    @discardableResult
    func expectEveryIdOnce(_ port: Int, _ n: Int, sourceLocation: SourceLocation = #_sourceLocation) throws -> (ids: [Int], values: [[String: Any]]) {
        let out = try readIds(port, topic: "output")
        #expect(out.ids.count == n && Set(out.ids) == Set(0..<n), "\(out.ids.count) records, \(Set(out.ids).count) distinct, of \(n)", sourceLocation: sourceLocation)
        return out
    }

    /// SIGTERM, then the process must finish its batch, commit and exit 0.
    func stop(_ p: LiveProcess, sourceLocation: SourceLocation = #_sourceLocation) {
        kill(p.process.processIdentifier, SIGTERM)
        p.process.waitUntilExit()
        #expect(p.process.terminationStatus == 0, "exit \(p.process.terminationStatus): \(p.stderrText.suffix(2000))", sourceLocation: sourceLocation)
    }

    @Test func aPipelineFileRunsUnchangedAgainstSluiceServeAndTheNextRunContinues() throws {
        let (server, port) = try serve()
        defer { stop(server) }
        let file = try pipeline("etl", port: port)
        // The first run creates the declared topics through the admin API.
        var r = try Sluice.run(["run", "--drain", file], data: scratch.path + "/w")
        #expect(r.status == 0, "\(r.stderr)")
        try produce(port, topic: "input", count: 2000)
        r = try Sluice.run(["run", "--drain", file], data: scratch.path + "/w")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("pipeline etl: in 2000, out 2000"), "\(r.stderr)")
        let out = try expectEveryIdOnce(port, 2000)
        #expect(out.values.allSatisfy { ($0["doubled"] as? Int) == 2 * (($0["seq"] as? Int) ?? -1) })
        // Offsets were committed: more input, and only the new records are processed.
        try produce(port, topic: "input", from: 2000, count: 500)
        r = try Sluice.run(["run", "--drain", file], data: scratch.path + "/w")
        #expect(r.stderr.contains("pipeline etl: in 500, out 500"), "\(r.stderr)")
        try expectEveryIdOnce(port, 2500)
    }

    @Test func exactlyOnceThroughLibrdkafkaWritesTopicAndSQLiteOnce() throws {
        let (server, port) = try serve()
        defer { stop(server) }
        let db = scratch.path + "/eos.db"
        let file = try pipeline("eos", port: port, guarantee: "exactly-once", extraSinks: "  db: { type: sqlite, inputs: [m], path: \(db), table: rows, columns: { id: id, key: key } }")
        try Sluice.run(["run", "--drain", file], data: scratch.path + "/w")
        try produce(port, topic: "input", count: 3000)
        let r = try Sluice.run(["run", "--drain", file], data: scratch.path + "/w")
        #expect(r.status == 0, "\(r.stderr)")
        try expectEveryIdOnce(port, 3000)
        let rows = try sh("python3 -c \"import sqlite3; c = sqlite3.connect('\(db)'); print(*c.execute('select count(*), count(distinct id) from rows').fetchone())\"")
        #expect(rows.output.trimmingCharacters(in: .whitespacesAndNewlines) == "3000 3000", "\(rows.output)")
        // The lanes' transactional ids are <pipeline>/<group>/<topic>/<partition>.
        let again = try Sluice.run(["run", "--drain", file], data: scratch.path + "/w")
        #expect(again.status == 0 && !again.stderr.contains("in "), "nothing left to process: \(again.stderr)")
    }

    @Test func workersShareThePartitionsAndAKilledWorkersPartitionsMove() throws {
        let (server, port) = try serve()
        defer { stop(server) }
        let file = try pipeline("shared", port: port, guarantee: "exactly-once", partitions: 4, throttle: 2000, options: "broker_options: { session.timeout.ms: \"3000\" }")
        try Sluice.run(["run", "--drain", file], data: scratch.path + "/w0")
        try produce(port, topic: "input", count: 4000)
        let a = try LiveProcess(["run", "--quiet", file, "--data", scratch.path + "/wa"])
        let b = try LiveProcess(["run", "--quiet", file, "--data", scratch.path + "/wb"])
        // Both workers own partitions of the one group (`group describe` names each worker).
        let describe = { try Sluice.run(["group", "describe", "shared"], data: self.scratch.path + "/broker").stdout }
        let both = try waitUntil(30) {
            let d = try describe()
            return d.contains(":\(a.process.processIdentifier): input-") && d.contains(":\(b.process.processIdentifier): input-")
        }
        let seen = (try? describe()) ?? ""
        #expect(both, "\(seen)")
        a.kill9()
        let moved = try waitUntil(30) {
            let line = try describe().split(separator: "\n").first { $0.contains(":\(b.process.processIdentifier): input-") } ?? ""
            return (0..<4).allSatisfy { line.contains("input-\($0)") }
        }
        let after = (try? describe()) ?? ""
        #expect(moved, "after the kill: \(after)")
        try produce(port, topic: "input", from: 4000, count: 2000)
        let done = try waitUntil(60) { try readIds(port, topic: "output").ids.count >= 6000 }
        #expect(done)
        stop(b)
        try expectEveryIdOnce(port, 6000)
    }

    @Test func threeWorkersSigkilledFifteenTimesStillProduceEveryRecordOnce() throws {
        let work = scratch.path + "/chaos"
        let r = try Sluice.run(["python3", PipelineCLITests.repo + "/scripts/chaos/run_scaleout_chaos.py", "--sluice", Sluice.binary, "--work", work, "--kills", "15"], binary: "/usr/bin/env")
        print(r.stdout, r.stderr)
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr.suffix(3000))")
        #expect(r.stdout.contains("15 SIGKILLs"))
        // The input is produced (400 records/s) while the kills go on, which take well over
        // ten seconds: as many records as were written, each once.
        let counts = r.stdout.firstMatch(of: /topic output: (\d+) records, (\d+) distinct ids, 0 duplicated, 0 missing/)
        #expect(counts != nil && counts?.1 == counts?.2 && Int(counts?.1 ?? "0")! >= 4_000, "\(r.stdout)")
        #expect(r.stdout.contains("OK: every input record appears exactly once"))
    }

    @Test func aWorkerRidesOutARestartOfTheBroker() throws {
        let data = scratch.path + "/restart-broker"
        var (server, port) = try serve(data: data)
        let file = try pipeline("restart", port: port, guarantee: "exactly-once", throttle: 1500)
        try Sluice.run(["run", "--drain", file], data: scratch.path + "/w0")
        try produce(port, topic: "input", count: 6000)
        let worker = try LiveProcess(["run", "--quiet", file, "--data", scratch.path + "/w1"])
        #expect(try waitUntil(30) { try readIds(port, topic: "output").ids.count > 500 })
        server.kill9()
        usleep(500_000)
        (server, _) = try serve(port: port, data: data)
        defer { stop(server) }
        let done = try waitUntil(90) { try readIds(port, topic: "output").ids.count >= 6000 }
        #expect(done, "\(worker.stderrText.suffix(2000))")
        stop(worker)
        try expectEveryIdOnce(port, 6000)
    }

    @Test func badClientSettingsAreOneSentenceNamingTheFile() throws {
        let file = try pipeline("bad", port: 9, options: "broker_options: { no.such.property: x }")
        let r = try Sluice.run(["run", "--drain", file], data: scratch.path + "/w")
        #expect(r.status == 1)
        #expect(r.stderr.hasPrefix("error: \(file): broker_options: no.such.property: No such configuration property"), "\(r.stderr)")
        let bad = try Sluice.run(["run", "--drain", file, "--broker", "kafka://nohost"], data: scratch.path + "/w")
        #expect(bad.status != 0 && bad.stderr.contains("--broker must be 'embedded' or kafka://host:port[,host:port]"), "\(bad.stderr)")
        // --broker-option adds to the file's broker_options (checked in name order).
        let cli = try Sluice.run(["run", "--drain", file, "--broker-option", "also.no.such=1"], data: scratch.path + "/w")
        #expect(cli.status == 1 && cli.stderr.hasPrefix("error: \(file): broker_options: also.no.such: No such configuration property"), "\(cli.stderr)")
    }
}
#endif
