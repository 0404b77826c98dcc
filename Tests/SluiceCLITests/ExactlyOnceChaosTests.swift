// The exactly-once chaos test: real `sluice run` processes SIGKILLed at random moments
// (scripts/chaos/run_chaos.py), then the checker (scripts/chaos/check_exactly_once.py) reads
// the outputs back. The same checker must find the duplicates of at-least-once and the losses
// of an exactly-once run whose offsets are moved forward from outside, so it is known to be
// able to fail.
import Foundation
import Testing

@Suite(.serialized) struct ExactlyOnceChaosTests {
    struct Outcome {
        var status: Int32
        var output: String
    }

    func chaos(_ args: [String]) throws -> Outcome {
        let work = NSTemporaryDirectory() + "sluice-chaos-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: work) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", PipelineCLITests.repo + "/scripts/chaos/run_chaos.py", "--sluice", Sluice.binary, "--work", work] + args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let output = String(decoding: data, as: UTF8.self)
        print(output)
        return Outcome(status: p.terminationStatus, output: output)
    }

    func kills(_ output: String) -> Int {
        guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("chaos:") }),
              let range = line.range(of: #"\d+ SIGKILLs"#, options: .regularExpression) else { return 0 }
        return Int(line[range].split(separator: " ")[0]) ?? 0
    }

    @Test func exactlyOnceSurvivesTwentySigkills() throws {
        let r = try chaos(["--guarantee", "exactly-once", "--kills", "20"])
        #expect(kills(r.output) >= 20)
        #expect(r.status == 0, "the checker found defects:\n\(r.output)")
        #expect(r.output.contains("topic output: 100000 records, 100000 distinct ids, 0 duplicated, 0 missing"))
        #expect(r.output.contains("sqlite rows: 100000 records, 100000 distinct ids, 0 duplicated, 0 missing"))
        #expect(r.output.contains("file out.jsonl: 100000 records, 100000 distinct ids, 0 duplicated, 0 missing"))
        #expect(r.output.contains("OK: every input record appears exactly once"))
    }

    @Test func atLeastOnceLosesNothingButTheCheckerSeesItsDuplicates() throws {
        let r = try chaos(["--guarantee", "at-least-once", "--kills", "20"])
        #expect(kills(r.output) >= 20)
        #expect(r.status == 1, "20 kills of an at-least-once run should leave duplicates:\n\(r.output)")
        #expect(r.output.contains("appear more than once"))
        #expect(!r.output.contains("missing (first ids"), "at-least-once must not lose records:\n\(r.output)")
    }

    @Test func theCheckerReportsADeliberatelyBrokenExactlyOnce() throws {
        // After every kill the committed input offsets are moved 25 records forward from
        // outside (`sluice group reset-offsets --shift-by`): those records are never processed.
        let r = try chaos(["--guarantee", "exactly-once", "--only-topic", "--fault", "skip-offsets", "--kills", "20"])
        #expect(kills(r.output) >= 20)
        #expect(r.status == 1)
        #expect(r.output.contains("input records are missing"), "the checker must report the lost records:\n\(r.output)")
    }
}
