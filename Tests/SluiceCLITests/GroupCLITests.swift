// The broker through the CLI: keys from JSON fields, group consumers that commit as they go,
// read_committed consumers, group list/describe/reset-offsets, and the refusal to reset a
// group with live members.
import Foundation
import SluiceBroker
import Testing

@Suite(.serialized) struct GroupCLITests {
    let scratch = Scratch()
    var data: String { scratch.path + "/data" }

    @Test func keyFieldKeysEachRecordFromItsJSONAndABadLineStopsWithItsNumber() throws {
        try Sluice.run(["topic", "create", "orders", "--partitions", "6"], data: data)
        let lines = ["{\"user\":\"user-42\",\"n\":1}", "{\"user\":\"a\",\"n\":2}", "{\"user\":7,\"n\":3}"]
        var r = try Sluice.run(["produce", "orders", "--key-field", "user"], data: data, stdin: lines.joined(separator: "\n") + "\n")
        #expect(r.status == 0, "\(r.stderr)")
        r = try Sluice.run(["consume", "orders", "--format", "json"], data: data)
        var partitionOf: [String: Int] = [:]
        for line in r.stdoutLines {
            let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            partitionOf[o["key"] as! String] = o["partition"] as? Int
        }
        // murmur2 partitions for 6 partitions, as Kafka's Java client computes them.
        #expect(partitionOf["user-42"] == 4 && partitionOf["a"] == 4 && partitionOf["7"] != nil)
        r = try Sluice.run(["produce", "orders", "--key-field", "user"], data: data, stdin: "{\"user\":\"b\"}\n[1,2]\n{\"user\":\"c\"}\n")
        #expect(r.status == 1)
        #expect(r.stderr == "error: line 2 of standard input is not a JSON object with a 'user' field (the 1 lines before it were written)\n")
        #expect(try Sluice.run(["consume", "orders"], data: data).stdoutLines.count == 4)
    }

    @Test func describeShowsEachExactlyOnceLanesTransactionalId() throws {
        try Sluice.run(["topic", "create", "clicks", "--partitions", "2"], data: data)
        try Sluice.run(["produce", "clicks", "--partition", "0"], data: data, stdin: "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n")
        try Sluice.run(["produce", "clicks", "--partition", "1"], data: data, stdin: "{\"n\":4}\n")
        let file = scratch.path + "/eos.yaml"
        try """
        name: counter
        guarantee: exactly-once
        topics:
          clicks: { partitions: 2 }
          copies: {}
        sources:
          in: { type: topic, topic: clicks, group: counting }
        sinks:
          out: { type: topic, inputs: [in], topic: copies }
        """.write(toFile: file, atomically: true, encoding: .utf8)
        var r = try Sluice.run(["run", "--quiet", "--drain", file], data: data)
        #expect(r.status == 0, "\(r.stderr)")
        r = try Sluice.run(["group", "describe", "counting"], data: data)
        #expect(r.status == 0, "\(r.stderr)")
        let rows = r.stdoutLines.map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        #expect(rows[1] == ["TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "MEMBER", "TRANSACTIONAL", "ID", "EPOCH", "TXN", "STATE"])
        #expect(rows[2].prefix(7) == ["clicks", "0", "3", "3", "0", "-", "counter/counting/clicks/0"])
        #expect(rows[3].prefix(7) == ["clicks", "1", "1", "1", "0", "-", "counter/counting/clicks/1"])
        r = try Sluice.run(["consume", "copies", "--isolation", "read_committed"], data: data)
        #expect(Set(r.stdoutLines) == ["{\"n\":1}", "{\"n\":2}", "{\"n\":3}", "{\"n\":4}"])
    }

    @Test func aGroupConsumerCommitsAsItGoesAndTheNextRunContinues() throws {
        try Sluice.run(["topic", "create", "events", "--partitions", "2"], data: data)
        try Sluice.run(["produce", "events", "--partition", "0"], data: data, stdin: "a\nb\nc\n")
        try Sluice.run(["produce", "events", "--partition", "1"], data: data, stdin: "d\ne\n")
        var r = try Sluice.run(["consume", "events", "--group", "readers", "--max", "3"], data: data)
        #expect(r.status == 0 && r.stdoutLines.count == 3, "\(r.stderr)")
        let first = Set(r.stdoutLines)
        r = try Sluice.run(["consume", "events", "--group", "readers"], data: data)
        #expect(r.status == 0 && r.stdoutLines.count == 2)
        #expect(first.union(r.stdoutLines) == ["a", "b", "c", "d", "e"])
        r = try Sluice.run(["consume", "events", "--group", "readers"], data: data)
        #expect(r.stdout.isEmpty, "everything was committed")

        r = try Sluice.run(["group", "list"], data: data)
        #expect(r.stdoutLines == ["GROUP    TYPE     STATE  MEMBERS", "readers  classic  Empty  0"])
        r = try Sluice.run(["group", "describe", "readers"], data: data)
        #expect(r.status == 0)
        #expect(r.stdoutLines.first?.hasPrefix("group readers: Empty, generation ") == true, "\(r.stdout)")
        let rows = r.stdoutLines.dropFirst(2).map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        #expect(rows.map { Array($0.prefix(5)) } == [["events", "0", "3", "3", "0"], ["events", "1", "2", "2", "0"]])

        r = try Sluice.run(["group", "reset-offsets", "readers", "--topic", "events", "--to", "earliest"], data: data)
        #expect(r.status == 0, "\(r.stderr)")
        r = try Sluice.run(["group", "describe", "readers"], data: data)
        let lags = r.stdoutLines.dropFirst(2).map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init)[4] }
        #expect(lags == ["3", "2"])
        r = try Sluice.run(["consume", "events", "--group", "readers"], data: data)
        #expect(Set(r.stdoutLines) == ["a", "b", "c", "d", "e"])
        r = try Sluice.run(["group", "reset-offsets", "readers", "--topic", "events", "--to", "1"], data: data)
        #expect(r.stdoutLines.dropFirst().map { $0.split(separator: " ", omittingEmptySubsequences: true).last! } == ["1", "1"])
        r = try Sluice.run(["group", "reset-offsets", "readers", "--topic", "events", "--to", "2999-01-01T00:00:00Z"], data: data)
        #expect(r.stdoutLines.dropFirst().map { $0.split(separator: " ", omittingEmptySubsequences: true).last! } == ["3", "2"], "a time after every record gives the end")
        // --shift-by moves from the committed offsets (3 and 2, the ends) and stays within
        // each partition's records.
        r = try Sluice.run(["group", "reset-offsets", "readers", "--topic", "events", "--shift-by", "-2"], data: data)
        #expect(r.stdoutLines.dropFirst().map { $0.split(separator: " ", omittingEmptySubsequences: true).last! } == ["1", "0"])
        r = try Sluice.run(["group", "reset-offsets", "readers", "--topic", "events", "--shift-by", "1"], data: data)
        #expect(r.stdoutLines.dropFirst().map { $0.split(separator: " ", omittingEmptySubsequences: true).last! } == ["2", "1"])
        r = try Sluice.run(["consume", "events", "--group", "readers"], data: data)
        #expect(Set(r.stdoutLines) == ["c", "e"], "the records from the shifted offsets on: \(r.stdout)")
        r = try Sluice.run(["group", "reset-offsets", "readers", "--topic", "events", "--shift-by", "9223372036854775807"], data: data)
        #expect(r.stdoutLines.dropFirst().map { $0.split(separator: " ", omittingEmptySubsequences: true).last! } == ["3", "2"], "a shift past the end stops at the end")
        r = try Sluice.run(["group", "reset-offsets", "readers", "--topic", "events", "--to", "1", "--shift-by", "1"], data: data)
        #expect(r.status != 0 && r.stderr.contains("--to and --shift-by cannot be combined"), "\(r.stderr)")
        r = try Sluice.run(["group", "describe", "nobody"], data: data)
        #expect(r.status == 1 && r.stderr == "error: group 'nobody' does not exist (it has no committed offsets)\n")
        r = try Sluice.run(["group", "reset-offsets", "readers", "--topic", "events", "--to", "someday"], data: data)
        #expect(r.status == 1 && r.stderr.contains("--to must be earliest, latest, an offset or an ISO 8601 date-time"))
    }

    @Test func resettingAGroupWithLiveMembersIsRefusedAndDescribeShowsThem() throws {
        signal(SIGPIPE, SIG_IGN)
        try Sluice.run(["topic", "create", "live", "--partitions", "3"], data: data)
        try Sluice.run(["produce", "live"], data: data, stdin: "x\ny\n")
        let member = try LiveProcess(["consume", "live", "--group", "workers", "--follow", "--data", data])
        var described = Sluice.Result(status: -1, stdout: "", stderr: "")
        let deadline = Date().addingTimeInterval(10)
        repeat {
            usleep(100_000)
            described = try Sluice.run(["group", "describe", "workers"], data: data)
        } while !described.stdout.contains("Stable") && Date() < deadline
        #expect(described.stdoutLines.first?.hasPrefix("group workers: Stable, generation 1, assignor range (running in sluice process \(member.process.processIdentifier))") == true, "\(described.stdout)")
        #expect(described.stdout.contains("client sluice-consume: live-0, live-1, live-2"))
        let r = try Sluice.run(["group", "reset-offsets", "workers", "--topic", "live", "--to", "earliest"], data: data)
        #expect(r.status == 1)
        #expect(r.stderr == "error: group 'workers' has 1 live member in sluice process \(member.process.processIdentifier); stop its consumers before resetting offsets\n")
        // SIGTERM: the member commits, leaves the group and exits 0.
        kill(member.process.processIdentifier, SIGTERM)
        member.process.waitUntilExit()
        #expect(member.process.terminationStatus == 0)
        let after = try Sluice.run(["group", "describe", "workers"], data: data)
        #expect(after.stdoutLines.first?.hasPrefix("group workers: Empty") == true)
        let reset = try Sluice.run(["group", "reset-offsets", "workers", "--topic", "live", "--to", "latest"], data: data)
        #expect(reset.status == 0, "\(reset.stderr)")
    }

    @Test func readCommittedConsumersSkipAbortedTransactions() async throws {
        do {
            let broker = try await EmbeddedBroker.open(path: data)
            let topic = try broker.createTopic("tx", partitions: 1)
            let producer = try await Producer(broker: broker, config: ProducerConfig(transactionalId: "cli-tx"))
            try producer.beginTransaction()
            _ = try await producer.send(ProducerRecord(topic: topic, value: Array("aborted".utf8)))
            try await producer.abortTransaction()
            try producer.beginTransaction()
            _ = try await producer.send(ProducerRecord(topic: topic, value: Array("committed".utf8)))
            try await producer.commitTransaction()
            try producer.beginTransaction()
            _ = try await producer.send(ProducerRecord(topic: topic, value: Array("open".utf8)))
            await broker.close()
        }
        var r = try Sluice.run(["consume", "tx", "--isolation", "read_committed"], data: data)
        #expect(r.status == 0 && r.stdoutLines == ["committed"], "\(r.stderr)")
        r = try Sluice.run(["consume", "tx"], data: data)
        #expect(r.stdoutLines == ["aborted", "committed", "open"])
        r = try Sluice.run(["consume", "tx", "--isolation", "read_committed", "--group", "g"], data: data)
        #expect(r.stdoutLines == ["committed"], "\(r.stderr)")
    }
}
