// Careless and hostile input through the CLI: internal topic names, a line too long for a
// record, a file sink pointed at something that is not a regular file, and a short run of the
// fuzzer (`sluice bench fuzz`; the million-input run is a benchmark, see docs/benchmarks.md).
import Foundation
import Testing

@Suite(.serialized) struct HostileInputCLITests {
    let scratch = Scratch()
    var data: String { scratch.path + "/data" }

    @Test func internalTopicsCannotBeCreatedOrDeleted() throws {
        // A group commit creates __consumer_offsets; it must survive a user's delete.
        try Sluice.run(["topic", "create", "t"], data: data)
        try Sluice.run(["produce", "t"], data: data, stdin: "a\nb\n")
        let c = try Sluice.run(["consume", "t", "--group", "g", "--max", "2"], data: data)
        #expect(c.status == 0, "\(c.stderr)")
        for args in [["topic", "delete", "__consumer_offsets"], ["topic", "create", "__consumer_offsets"], ["topic", "create", "__mine"]] {
            let r = try Sluice.run(args, data: data)
            #expect(r.status == 1, "\(args): \(r.stderr)")
            #expect(r.stderr.contains("reserved for Sluice's own topics"), "\(r.stderr)")
            #expect(r.stderr.split(separator: "\n").count == 1, "one line: \(r.stderr)")
        }
        let d = try Sluice.run(["group", "describe", "g"], data: data)
        #expect(d.stdoutLines.contains { $0.split(separator: " ", omittingEmptySubsequences: true).prefix(3) == ["t", "0", "2"] }, "the group's offsets are still there:\n\(d.stdout)")
    }

    @Test func topicNamesUpToTheLimitWorkAndOneMoreIsRefused() throws {
        let longest = String(repeating: "n", count: 249)
        for args in [["topic", "create", longest, "--partitions", "2"], ["produce", longest], ["consume", longest], ["topic", "delete", longest]] {
            let r = try Sluice.run(args, data: data, stdin: "x\ny\n")
            #expect(r.status == 0, "\(args[0]) \(args[1]): \(r.stderr)")
        }
        let tooLong = try Sluice.run(["topic", "create", longest + "n"], data: data)
        #expect(tooLong.status == 1)
        #expect(tooLong.stderr.contains("250 characters long, the limit is 249"), "\(tooLong.stderr)")
    }

    @Test func aLineTooLongForARecordIsTheInputsFaultAndTheLinesBeforeItAreKept() throws {
        try Sluice.run(["topic", "create", "big"], data: data)
        let long = String(repeating: "x", count: 9 << 20)
        let r = try Sluice.run(["produce", "big"], data: data, stdin: "first\nsecond\n" + long + "\nafter\n")
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stderr.contains("a record may be at most") || r.stderr.contains("longer than"), "\(r.stderr)")
        let c = try Sluice.run(["consume", "big"], data: data)
        #expect(c.stdoutLines == ["first", "second"], "\(c.stdout.prefix(200))")
    }

    @Test func aFileSinkOnAFifoOrProcFileIsAClearError() throws {
        let fifo = scratch.path + "/pipe"
        #expect(mkfifo(fifo, 0o644) == 0)
        for path in [fifo, "/proc/self/status"] {
            for guarantee in ["at-least-once", "exactly-once"] {
                let file = scratch.path + "/sink.yaml"
                try """
                name: sink
                guarantee: \(guarantee)
                sources:
                  gen: { type: generator, count: 3, template: "{}" }
                sinks:
                  out: { type: file, inputs: [gen], path: \(path) }
                """.write(toFile: file, atomically: true, encoding: .utf8)
                let r = try Sluice.run(["run", file], data: data)
                #expect(r.status == 1 || r.status == 2, "\(path) \(guarantee): exit \(r.status) \(r.stderr)")
                #expect(r.stderr.contains("\(path) is not a regular file"), "\(path) \(guarantee): \(r.stderr)")
                #expect(!r.stderr.contains("Fatal error"), "\(r.stderr)")
            }
        }
    }

    @Test func aReaderOfADamagedActiveSegmentPrintsWhatItCanThenSaysWhereTheDamageIs() throws {
        try Sluice.run(["topic", "create", "hurt"], data: data)
        try Sluice.run(["produce", "hurt", "--batch-records", "100"], data: data, stdin: (1...1000).map(String.init).joined(separator: "\n") + "\n")
        let dir = data + "/topics/hurt/0"
        let log = try #require(try FileManager.default.contentsOfDirectory(atPath: dir).first { $0.hasSuffix(".log") })
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: dir + "/" + log)))
        bytes[bytes.count / 2] ^= 0xff
        try Data(bytes).write(to: URL(fileURLWithPath: dir + "/" + log))
        let r = try Sluice.run(["consume", "hurt"], data: data)
        #expect(r.status == 2, "\(r.stderr)")
        #expect(r.stdoutLines.count >= 400 && r.stdoutLines.count < 1000 && r.stdoutLines.first == "1", "\(r.stdoutLines.count) lines")
        #expect(r.stderr.contains(log) && r.stderr.contains("is corrupt at byte"), "\(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count == 1, "said once: \(r.stderr)")
    }

    @Test func aShortFuzzRunFinishesWithBoundedMemory() throws {
        let r = try Sluice.run(["bench", "fuzz", "--iterations", "20000", "--max-rss-mib", "1024"])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains("fuzz: 20000 inputs"), "\(r.stdout)")
        #expect(r.stdout.contains("0 crashes"), "\(r.stdout)")
    }
}
