// `sluice topic|produce|consume|group --broker kafka://…` (the RdKafka trait) against a real
// `sluice serve`: the same commands and output as on the embedded broker, records placed in
// the same partitions, groups that continue where they committed, resets refused while a
// member lives, and one sentence for a missing topic or an unreachable broker.
#if RdKafka
import Foundation
import Testing

@Suite(.serialized) struct KafkaCommandTests {
    let scratch = Scratch()

    func sluice(_ args: [String], stdin: String = "") throws -> Sluice.Result {
        try Sluice.run(args, stdin: stdin)
    }

    /// Partition per line of `sluice consume` on one broker, as "partition: value" lines.
    func byPartition(_ args: [String], partitions: Int) throws -> [String] {
        var out: [String] = []
        for p in 0..<partitions {
            let r = try sluice(["consume", "t", "--partition", "\(p)"] + args)
            #expect(r.status == 0, "\(r.stderr)")
            out += r.stdoutLines.map { "\(p): \($0)" }
        }
        return out
    }

    /// (partition, committed) rows of `group describe`.
    func committed(_ lines: [String]) -> [Int: Int] {
        var out: [Int: Int] = [:]
        for line in lines where line.hasPrefix("t ") {
            let cells = line.split(separator: " ", omittingEmptySubsequences: true)
            if cells.count >= 3, let p = Int(cells[1]), let c = Int(cells[2]) { out[p] = c }
        }
        return out
    }

    @Test func topicProduceConsumeAndGroupCommandsWorkOnAKafkaBroker() throws {
        let (server, port) = try startServe(data: scratch.path + "/broker")
        defer { kill(server.process.processIdentifier, SIGTERM); server.process.waitUntilExit() }
        let url = "kafka://127.0.0.1:\(port)"
        let kafka = ["--broker", url]

        // Topics.
        let created = try sluice(["topic", "create", "t", "--partitions", "3", "--retention", "1d"] + kafka)
        #expect(created.status == 0 && created.stdout == "created topic t with 3 partitions on \(url)\n", "\(created.stdout)\(created.stderr)")
        #expect(try sluice(["topic", "list"] + kafka).stdoutLines.contains("t"))
        let again = try sluice(["topic", "create", "t"] + kafka)
        #expect(again.status == 1 && again.stderr.contains("already exists"), "\(again.stderr)")

        // The same keyed lines into the Kafka broker and into an embedded one land in the
        // same partitions (murmur2 on both).
        let lines = (0..<300).map { "{\"id\":\($0),\"k\":\"key-\($0 % 37)\"}" }
        let input = lines.joined(separator: "\n") + "\n"
        let produced = try sluice(["produce", "t", "--key-field", "k"] + kafka, stdin: input)
        #expect(produced.status == 0 && produced.stderr == "wrote 300 records to t on \(url)\n", "\(produced.stderr)")
        let embedded = ["--data", scratch.path + "/embedded"]
        _ = try sluice(["topic", "create", "t", "--partitions", "3"] + embedded)
        #expect(try sluice(["produce", "t", "--key-field", "k"] + embedded, stdin: input).status == 0)
        let onKafka = try byPartition(kafka, partitions: 3)
        #expect(onKafka.count == 300)
        #expect(onKafka == (try byPartition(embedded, partitions: 3)))

        let described = try sluice(["topic", "describe", "t"] + kafka)
        #expect(described.stdoutLines.first?.hasPrefix("topic t: 3 partitions on \(url), retention 1d") == true, "\(described.stdout)")
        let records = described.stdoutLines.dropFirst(2).compactMap { Int($0.split(separator: " ", omittingEmptySubsequences: true).last ?? "") }
        #expect(records.count == 3 && records.reduce(0, +) == 300, "\(described.stdout)")

        // Reading: all of it, from an offset as JSON, and an offset out of range.
        let all = try sluice(["consume", "t"] + kafka)
        #expect(all.status == 0 && Set(all.stdoutLines) == Set(lines), "\(all.stderr)")
        let two = try sluice(["consume", "t", "--partition", "0", "--from", "1", "--max", "2", "--format", "json"] + kafka)
        let objects = two.stdoutLines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(objects.map { $0["offset"] as? Int } == [1, 2] && objects.allSatisfy { $0["partition"] as? Int == 0 && ($0["key"] as? String)?.hasPrefix("key-") == true }, "\(two.stdout)")
        #expect(objects.map { $0["value"] as? String } == Array(onKafka.filter { $0.hasPrefix("0: ") }.map { String($0.dropFirst(3)) }[1...2]))
        let outside = try sluice(["consume", "t", "--partition", "0", "--from", "9999"] + kafka)
        #expect(outside.status == 1 && outside.stderr.contains("offset 9999 is outside partition 0 of 't'"), "\(outside.stderr)")

        // A group reads part, then the rest from its committed offsets.
        let first = try sluice(["consume", "t", "--group", "g", "--max", "100"] + kafka)
        let rest = try sluice(["consume", "t", "--group", "g"] + kafka)
        #expect(first.stdoutLines.count == 100 && rest.stdoutLines.count == 200, "\(first.stderr)\(rest.stderr)")
        #expect(Set(first.stdoutLines + rest.stdoutLines) == Set(lines))
        let describe = try sluice(["group", "describe", "g"] + kafka)
        #expect(describe.stdoutLines.first == "group g: Empty on \(url)", "\(describe.stdout)")
        #expect(committed(describe.stdoutLines).values.reduce(0, +) == 300, "\(describe.stdout)")
        let listed = try sluice(["group", "list"] + kafka)
        #expect(listed.stdoutLines.contains { $0.split(separator: " ", omittingEmptySubsequences: true) == ["g", "Empty", "0"] }, "\(listed.stdout)")

        // Resets: to the start (the group reads everything again), then forward by 2.
        let reset = try sluice(["group", "reset-offsets", "g", "--topic", "t", "--to", "earliest"] + kafka)
        #expect(reset.status == 0 && reset.stdoutLines.dropFirst().allSatisfy { $0.hasSuffix(" 0") }, "\(reset.stdout)\(reset.stderr)")
        #expect(try sluice(["consume", "t", "--group", "g"] + kafka).stdoutLines.count == 300)
        _ = try sluice(["group", "reset-offsets", "g", "--topic", "t", "--to", "earliest"] + kafka)
        let shifted = try sluice(["group", "reset-offsets", "g", "--topic", "t", "--shift-by", "2"] + kafka)
        #expect(shifted.status == 0, "\(shifted.stderr)")
        #expect(committed(try sluice(["group", "describe", "g"] + kafka).stdoutLines) == [0: 2, 1: 2, 2: 2])

        // A live member: describe names it, a reset is refused, SIGTERM leaves cleanly.
        let member = try LiveProcess(["consume", "t", "--group", "live", "--follow"] + kafka)
        let joined = try waitUntil(30) { try sluice(["group", "describe", "live"] + kafka).stdout.contains("client sluice-consume@") }
        #expect(joined, "\(member.stderrText)")
        let refused = try sluice(["group", "reset-offsets", "live", "--topic", "t", "--to", "earliest"] + kafka)
        #expect(refused.status == 1 && refused.stderr.contains("group 'live' has 1 live member on \(url)"), "\(refused.stderr)")
        kill(member.process.processIdentifier, SIGTERM)
        member.process.waitUntilExit()
        #expect(member.process.terminationStatus == 0, "\(member.stderrText)")

        // A missing topic is one sentence, and asking about it does not create it.
        for args in [["consume", "missing"], ["produce", "missing"], ["topic", "describe", "missing"]] {
            let r = try sluice(args + kafka, stdin: "x\n")
            #expect(r.status == 1 && r.stderr == "error: topic 'missing' does not exist on \(url)\n", "\(args): \(r.stderr)")
        }
        #expect(try !sluice(["topic", "list"] + kafka).stdoutLines.contains("missing"))

        let deleted = try sluice(["topic", "delete", "t"] + kafka)
        #expect(deleted.status == 0 && deleted.stdout == "deleted topic t on \(url)\n")
        #expect(try !sluice(["topic", "list"] + kafka).stdoutLines.contains("t"))
    }

    @Test func anUnreachableBrokerIsOneSentenceNamingIt() throws {
        let url = "kafka://127.0.0.1:\(HTTPSourceTests.freePort())"
        let r = try sluice(["topic", "list", "--broker", url])
        #expect(r.status == 2, "\(r.stderr)")
        #expect(r.stderr.hasPrefix("error: broker \(url) did not answer a metadata request within 10 s (last error: ") && r.stderr.contains("Connection refused"), "\(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")

        // `sluice run` gives the broker longer (a worker may start before it), then says so.
        let file = scratch.path + "/p.yaml"
        try "name: p\ntopics:\n  input: { partitions: 2 }\nsources:\n  in: { type: topic, topic: input }\nsinks:\n  out: { type: stdout, inputs: [in] }\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        let run = try sluice(["run", file, "--broker", url, "--data", scratch.path + "/w"])
        #expect(run.status == 2, "\(run.stderr)")
        #expect(run.stderr.contains("error: pipeline 'p': creating its topics on broker \(url): creating topics: no answer within 30 s (last error: ") && run.stderr.contains("Connection refused"), "\(run.stderr)")
    }

    @Test func badBrokerOptionsAreOneSentence() throws {
        let unknown = try sluice(["topic", "list", "--broker", "kafka://127.0.0.1:9", "--broker-option", "no.such.property=1"])
        #expect(unknown.status == 1 && unknown.stderr.hasPrefix("error: --broker-option: no.such.property: No such configuration property"), "\(unknown.stderr)")
        let malformed = try sluice(["topic", "list", "--broker", "kafka://127.0.0.1:9", "--broker-option", "nonsense"])
        #expect(malformed.status == 1 && malformed.stderr.contains("--broker-option must be name=value"), "\(malformed.stderr)")
        let serve = try sluice(["serve", "--broker", "kafka://127.0.0.1:9"])
        #expect(serve.status == 1 && serve.stderr.contains("runs a gateway only, and needs --ws HOST:PORT"), "\(serve.stderr)")
    }
}
#endif
