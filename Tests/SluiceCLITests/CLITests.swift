// The `sluice` command as users run it: topics, produce, consume, exit codes and messages.
import Foundation
import Testing

@Suite struct CLITests {
    let scratch = Scratch()
    var data: String { scratch.path + "/data" }

    @Test func produceThenConsumeRoundTripsValuesKeysAndOffsets() throws {
        var r = try Sluice.run(["topic", "create", "orders", "--partitions", "3"], data: data)
        #expect(r.status == 0 && r.stdout.contains("created topic orders with 3 partitions"))
        r = try Sluice.run(["produce", "orders", "--partition", "1"], data: data, stdin: "one\ntwo\r\nthree")
        #expect(r.status == 0)
        #expect(r.stderr == "wrote 3 records to orders\n")
        r = try Sluice.run(["produce", "orders", "--key", "user-42"], data: data, stdin: "k1\nk2\n")
        #expect(r.status == 0)
        // murmur2("user-42") % 3 == 1, as Kafka's Java client computes it.
        r = try Sluice.run(["consume", "orders", "--partition", "1"], data: data)
        #expect(r.status == 0 && r.stdoutLines == ["one", "two", "three", "k1", "k2"])
        r = try Sluice.run(["consume", "orders", "--partition", "1", "--from", "3", "--format", "json"], data: data)
        let objects = try r.stdoutLines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        #expect(objects.count == 2)
        #expect(objects[0]["topic"] as? String == "orders")
        #expect(objects[0]["partition"] as? Int == 1)
        #expect(objects[0]["offset"] as? Int == 3)
        #expect(objects[0]["key"] as? String == "user-42")
        #expect(objects[0]["value"] as? String == "k1")
        #expect((objects[0]["timestamp"] as? Int ?? 0) > 1_700_000_000_000)
        #expect((objects[0]["headers"] as? [String: Any])?.isEmpty == true)
        r = try Sluice.run(["consume", "orders", "--max", "2", "--partition", "1"], data: data)
        #expect(r.stdoutLines == ["one", "two"])
        r = try Sluice.run(["consume", "orders", "--from", "latest"], data: data)
        #expect(r.status == 0 && r.stdout.isEmpty)
    }

    @Test func topicListDescribeAndDelete() throws {
        try Sluice.run(["topic", "create", "b-topic", "--partitions", "2", "--flush", "always", "--retention", "12h"], data: data)
        try Sluice.run(["topic", "create", "a-topic"], data: data)
        try Sluice.run(["produce", "b-topic", "--partition", "0"], data: data, stdin: "x\ny\n")
        var r = try Sluice.run(["topic", "list"], data: data)
        #expect(r.stdoutLines == ["a-topic", "b-topic"])
        r = try Sluice.run(["topic", "describe", "b-topic"], data: data)
        #expect(r.status == 0)
        #expect(r.stdoutLines.first == "topic b-topic: 2 partitions, flush always, retention 12h, segments of 128MiB")
        let row0 = r.stdoutLines[2].split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        #expect(row0[0] == "0" && row0[1] == "0" && row0[2] == "2" && row0[3] == "2" && Int(row0[4])! > 0)
        r = try Sluice.run(["topic", "delete", "b-topic"], data: data)
        #expect(r.status == 0)
        r = try Sluice.run(["topic", "list"], data: data)
        #expect(r.stdoutLines == ["a-topic"])
    }

    @Test func consumeFollowSeesRecordsAnotherProcessWritesLater() throws {
        try Sluice.run(["topic", "create", "live", "--partitions", "2"], data: data)
        try Sluice.run(["produce", "live", "--partition", "0"], data: data, stdin: "before\n")
        let out = scratch.path + "/follow.out"
        _ = FileManager.default.createFile(atPath: out, contents: nil)
        let follower = Process()
        follower.executableURL = URL(fileURLWithPath: Sluice.binary)
        follower.arguments = ["consume", "live", "--follow", "--max", "4", "--data", data]
        follower.standardOutput = FileHandle(forWritingAtPath: out)
        try follower.run()
        usleep(300_000)
        try Sluice.run(["produce", "live", "--partition", "1"], data: data, stdin: "later-1\nlater-2\n")
        usleep(100_000)
        try Sluice.run(["produce", "live", "--partition", "0"], data: data, stdin: "later-3\n")
        let deadline = Date().addingTimeInterval(10)
        while follower.isRunning && Date() < deadline { usleep(20_000) }
        #expect(!follower.isRunning, "--follow --max 4 should stop after four records")
        if follower.isRunning { follower.terminate() }
        let lines = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(lines == ["before", "later-1", "later-2", "later-3"])
    }

    @Test func dataDirectoryComesFromTheEnvironmentToo() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Sluice.binary)
        p.arguments = ["topic", "create", "envtopic"]
        p.environment = ["SLUICE_DATA": data]
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        #expect(FileManager.default.fileExists(atPath: data + "/topics/envtopic/topic.json"))
    }

    // MARK: Bad input: one clear line on stderr, exit 1 for user errors and 2 for failures.

    @Test(arguments: [
        (["consume", "missing"], 1, "topic 'missing' does not exist"),
        (["produce", "missing"], 1, "topic 'missing' does not exist"),
        (["topic", "describe", "missing"], 1, "topic 'missing' does not exist"),
        (["topic", "delete", "missing"], 1, "topic 'missing' does not exist"),
        (["topic", "create", "bad name"], 1, "invalid topic name 'bad name'"),
        (["topic", "create", String(repeating: "x", count: 250)], 1, "the limit is 249"),
        (["topic", "create", ".."], 1, "'.' and '..' are not allowed"),
        (["topic", "create", "t2", "--flush", "sometimes"], 1, "--flush must be always, interval or never"),
        (["topic", "create", "t2", "--retention", "soon"], 1, "--retention 'soon' is not a duration"),
        (["topic", "create", "t2", "--partitions", "0"], 1, "partitions must be between 1 and 10000"),
        (["topic", "create", "t2", "--partitions", "many"], 1, "many"),
        (["topic", "create", "existing"], 1, "topic 'existing' already exists"),
        (["consume", "existing", "--from", "soon"], 1, "--from must be earliest, latest or an offset"),
        (["consume", "existing", "--from", "99"], 1, "offset 99 is outside partition 0"),
        (["consume", "existing", "--partition", "5"], 1, "there is no partition 5"),
        (["produce", "existing", "--partition", "7"], 1, "there is no partition 7"),
        (["consume", "existing", "--format", "xml"], 1, "xml"),
        (["frobnicate"], 1, "frobnicate"),
    ] as [([String], Int32, String)])
    func userErrorsAreOneClearLine(args: [String], status: Int32, message: String) throws {
        try Sluice.run(["topic", "create", "existing"], data: data)
        let r = try Sluice.run(args, data: args == ["frobnicate"] ? nil : data)
        #expect(r.status == status, "stderr: \(r.stderr)")
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1, "stderr: \(r.stderr)")
        #expect(r.stderr.hasPrefix("error: ") && r.stderr.contains(message), "stderr: \(r.stderr)")
        #expect(!r.stderr.contains("Fatal error") && !r.stderr.contains("Stack"))
    }

    @Test func anUnusableDataDirectoryIsAClearError() throws {
        // A file where the data directory should be.
        let file = scratch.path + "/not-a-dir"
        _ = FileManager.default.createFile(atPath: file, contents: Data("x".utf8))
        var r = try Sluice.run(["topic", "create", "t"], data: file)
        #expect(r.status == 1 || r.status == 2)
        #expect(r.stderr.hasPrefix("error: cannot use \(file) as the data directory"), "\(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count == 1)
        // Reading a directory that does not exist.
        r = try Sluice.run(["consume", "t"], data: scratch.path + "/nothing-here")
        #expect(r.status == 2 && r.stderr.contains("does not exist"), "\(r.stderr)")
    }

    @Test func anUnreadableDataDirectoryIsAClearError() throws {
        // Root reads everything, so run sluice as nobody (needs root and setpriv).
        try #require(getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"), "needs root and setpriv")
        try Sluice.run(["topic", "create", "t"], data: data)
        // A copy of the binary that nobody may execute (the build folder may be private).
        let bin = scratch.path + "/bin"
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Sluice.binary, toPath: bin + "/sluice")
        chmod(scratch.path, 0o755)
        chmod(bin, 0o755)
        chmod(data, 0o000)
        defer { chmod(data, 0o755) }
        for (args, message) in [
            (["consume", "t"], "error: the data directory \(data) is not readable: Permission denied"),
            (["topic", "list"], "error: the data directory \(data) is not readable: Permission denied"),
            (["produce", "t"], "error: cannot use \(data) as the data directory: cannot create \(data)/topics: Permission denied"),
        ] {
            let r = try Sluice.run(args, data: data, shellPrefix: "true", runAs: "65534", binary: bin + "/sluice")
            #expect(r.status == 2, "\(r.stderr)")
            #expect(r.stderr == message + "\n")
        }
    }

    @Test func aSecondWriterProcessIsRefusedWhileTheFirstRuns() throws {
        signal(SIGPIPE, SIG_IGN)
        try Sluice.run(["topic", "create", "t"], data: data)
        let holder = try LiveProcess(["produce", "t", "--data", data, "--report-acks"])
        _ = holder.write("first\n")
        let deadline = Date().addingTimeInterval(10)
        while holder.ackedCount < 1 && Date() < deadline { usleep(5000) }
        let r = try Sluice.run(["produce", "t"], data: data, stdin: "second\n")
        #expect(r.status == 1)
        #expect(r.stderr.contains("is in use by another sluice process (pid \(holder.process.processIdentifier))"), "\(r.stderr)")
        // Readers are not blocked by the writer.
        let c = try Sluice.run(["consume", "t"], data: data)
        #expect(c.status == 0 && c.stdoutLines == ["first"])
        holder.kill9()
    }
}
