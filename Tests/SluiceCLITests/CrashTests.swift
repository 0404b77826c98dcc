// Crash safety with real processes: `sluice produce` under `--flush always` is SIGKILLed at
// random moments; every acknowledged line must survive exactly once, in order, with
// contiguous offsets, and appends must continue after each recovery. Then damaged segments:
// a torn tail is cut with a warning; damage in an older segment is reported, not returned.
import Foundation
import Testing

@Suite(.serialized) struct CrashTests {
    let scratch = Scratch()
    var data: String { scratch.path + "/data" }

    @Test func killedProducersNeverLoseAcknowledgedLines() throws {
        signal(SIGPIPE, SIG_IGN)
        var r = try Sluice.run(["topic", "create", "crash", "--flush", "always", "--segment-bytes", "64KiB"], data: data)
        #expect(r.status == 0)
        var nextLine = 0
        var ackedLines = Set<Int>()
        var recoveries = 0
        var rng = SystemRandomNumberGenerator()
        let rounds = 24
        for _ in 0..<rounds {
            let p = try LiveProcess(["produce", "crash", "--data", data, "--report-acks"])
            let start = nextLine
            var written = 0
            let killAt = Date().addingTimeInterval(Double.random(in: 0.02...0.25, using: &rng))
            while Date() < killAt {
                let n = Int.random(in: 1...40, using: &rng)
                let text = (0..<n).map { String(format: "line-%08d\n", start + written + $0) }.joined()
                if !p.write(text) { break }
                written += n
                usleep(UInt32.random(in: 100...3000, using: &rng))
            }
            p.kill9()
            // Lines of this run are acknowledged in order: the first `acked` are durable.
            let acked = p.ackedCount
            #expect(acked <= written)
            for i in 0..<acked { ackedLines.insert(start + i) }
            nextLine = start + written
            if p.stderrText.contains("recovery: truncated") { recoveries += 1 }
        }
        // A clean final run: appends continue after the last crash.
        r = try Sluice.run(["produce", "crash"], data: data, stdin: "final-1\nfinal-2\n")
        #expect(r.status == 0, "\(r.stderr)")

        r = try Sluice.run(["consume", "crash", "--format", "json"], data: data)
        #expect(r.status == 0, "consume failed: \(r.stderr)")
        #expect(!r.stderr.contains("corrupt"))
        var expectedOffset = 0
        var seen: [Int] = []
        var finals: [String] = []
        for line in r.stdoutLines {
            let obj = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            #expect(obj["offset"] as? Int == expectedOffset, "offsets must be contiguous")
            expectedOffset += 1
            let value = obj["value"] as! String
            if value.hasPrefix("line-") {
                seen.append(Int(value.dropFirst(5))!)
            } else {
                finals.append(value)
            }
        }
        // Exactly once and in order: strictly increasing line numbers.
        #expect(zip(seen, seen.dropFirst()).allSatisfy { $0 < $1 }, "duplicate or reordered lines")
        let missing = ackedLines.subtracting(seen)
        #expect(missing.isEmpty, "acknowledged lines lost: \(missing.sorted().prefix(10))")
        #expect(finals == ["final-1", "final-2"])
        #expect(ackedLines.count > 0)
        print("crash test: \(rounds) kills, \(ackedLines.count) acknowledged lines, \(seen.count) stored, \(recoveries) tail truncations logged")
    }

    private func segmentFiles(_ topic: String) throws -> [String] {
        let dir = data + "/topics/\(topic)/0"
        return try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".log") }.sorted().map { dir + "/" + $0 }
    }

    @Test func aDamagedTailIsTruncatedWithAWarningNamingFileAndOffset() throws {
        try Sluice.run(["topic", "create", "t", "--segment-bytes", "4KiB"], data: data)
        let lines = (0..<300).map { "record-\($0)" }
        for chunk in stride(from: 0, to: 300, by: 10) {
            try Sluice.run(["produce", "t"], data: data, stdin: lines[chunk..<(chunk + 10)].joined(separator: "\n") + "\n")
        }
        let last = try segmentFiles("t").last!
        // Damage the last batch (ten records): flip a byte inside its records.
        var raw = try [UInt8](Data(contentsOf: URL(fileURLWithPath: last)))
        raw[raw.count - 5] ^= 0x55
        try Data(raw).write(to: URL(fileURLWithPath: last))

        // A reader prints what comes before the bad batch, changes nothing, and says where the
        // damage is (exit 2): a damaged whole batch is not a write still in progress.
        var r = try Sluice.run(["consume", "t"], data: data)
        #expect(r.status == 2 && r.stdoutLines == Array(lines.prefix(290)), "\(r.status) \(r.stderr)")
        #expect(r.stderr.contains("\(last) is corrupt at byte") && r.stderr.contains("CRC mismatch"), "\(r.stderr)")
        // The next writer recovers: it cuts the tail and says where.
        r = try Sluice.run(["produce", "t"], data: data, stdin: "after\n")
        #expect(r.status == 0)
        #expect(r.stderr.contains("warning: recovery: truncated \(last) at byte") && r.stderr.contains("(offset 290)") && r.stderr.contains("CRC mismatch"), "\(r.stderr)")
        r = try Sluice.run(["consume", "t"], data: data)
        #expect(r.stdoutLines == Array(lines.prefix(290)) + ["after"])
    }

    @Test func damageInAnOlderSegmentIsReportedAndReadsStopBeforeIt() throws {
        try Sluice.run(["topic", "create", "t", "--segment-bytes", "4KiB"], data: data)
        let lines = (0..<400).map { "record-\($0)-" + String(repeating: "p", count: 50) }
        for chunk in stride(from: 0, to: 400, by: 20) {
            try Sluice.run(["produce", "t"], data: data, stdin: lines[chunk..<(chunk + 20)].joined(separator: "\n") + "\n")
        }
        let files = try segmentFiles("t")
        #expect(files.count >= 3)
        let victim = files[1]
        let base = Int(URL(fileURLWithPath: victim).deletingPathExtension().lastPathComponent)!
        // Flip a byte in the first batch of the second segment.
        var raw = try [UInt8](Data(contentsOf: URL(fileURLWithPath: victim)))
        raw[70] ^= 0xFF
        try Data(raw).write(to: URL(fileURLWithPath: victim))

        let r = try Sluice.run(["consume", "t"], data: data)
        #expect(r.status == 2)
        #expect(r.stdoutLines == Array(lines.prefix(base)), "records before the damage are all returned, nothing after")
        #expect(r.stderr.contains("error: \(victim) is corrupt at byte 0 (offset \(base))"), "\(r.stderr)")
        // Writers keep working: the damage is in a closed segment.
        let w = try Sluice.run(["produce", "t"], data: data, stdin: "more\n")
        #expect(w.status == 0)
    }

    @Test func aFullDiskIsAClearErrorAndLeavesNothingHalfWritten() throws {
        try Sluice.run(["topic", "create", "t"], data: data)
        // The size limit applies to the sluice process (bash's ulimit -f counts KiB):
        // segment files may not grow past 64 KiB.
        let payload = (0..<5000).map { String(format: "payload-%06d-%@", $0, String(repeating: "z", count: 40)) }
        let r = try Sluice.run(["produce", "t", "--batch-records", "50"], data: data, stdin: payload.joined(separator: "\n") + "\n", shellPrefix: "ulimit -f 64")
        #expect(r.status == 2, "\(r.stderr)")
        #expect(r.stderr.contains("error: cannot write") && r.stderr.contains("00000000000000000000.log: the disk is full"), "\(r.stderr)")
        // Whatever was written is whole: every record a valid payload line, in order.
        let c = try Sluice.run(["consume", "t"], data: data)
        #expect(c.status == 0, "\(c.stderr)")
        #expect(!c.stdoutLines.isEmpty && c.stdoutLines.count < payload.count)
        #expect(c.stdoutLines == Array(payload.prefix(c.stdoutLines.count)))
        let size = try FileManager.default.attributesOfItem(atPath: data + "/topics/t/0/00000000000000000000.log")[.size] as! Int
        #expect(size <= 64 * 1024)
    }

    @Test func aFullTmpfsIsAClearErrorToo() throws {
        let mountPoint = scratch.path + "/tiny"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        let mount = Process()
        mount.executableURL = URL(fileURLWithPath: "/bin/mount")
        mount.arguments = ["-t", "tmpfs", "-o", "size=256k", "tmpfs", mountPoint]
        mount.standardError = FileHandle.nullDevice
        try mount.run()
        mount.waitUntilExit()
        try #require(mount.terminationStatus == 0, "mounting a tmpfs needs root; the ulimit test covers the same path")
        defer {
            let u = Process()
            u.executableURL = URL(fileURLWithPath: "/bin/umount")
            u.arguments = [mountPoint]
            try? u.run()
            u.waitUntilExit()
        }
        let tiny = mountPoint + "/data"
        try Sluice.run(["topic", "create", "t"], data: tiny)
        let payload = (0..<6000).map { String(format: "payload-%06d-%@", $0, String(repeating: "q", count: 40)) }
        let r = try Sluice.run(["produce", "t", "--batch-records", "100"], data: tiny, stdin: payload.joined(separator: "\n") + "\n")
        #expect(r.status == 2)
        #expect(r.stderr.contains("the disk is full (No space left on device)"), "\(r.stderr)")
        let c = try Sluice.run(["consume", "t"], data: tiny)
        #expect(c.status == 0 && !c.stdoutLines.isEmpty)
        #expect(c.stdoutLines == Array(payload.prefix(c.stdoutLines.count)))
    }
}
