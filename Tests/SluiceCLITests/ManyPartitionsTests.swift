// Topics with many partitions under a small descriptor limit. The log keeps idle files
// closed, so a topic of 10,000 partitions (the most a topic may have; three files each) is
// created, written, described and read with `ulimit -n 1024`. A create that fails halfway
// leaves nothing behind.
import Foundation
import SluiceBroker
import Testing

@Suite struct ManyPartitionsTests {
    let scratch = Scratch()
    var data: String { scratch.path + "/data" }

    /// One key per partition, found by trying "key-0", "key-1", … with Kafka's partitioner
    /// (the one `sluice produce --key-field` uses).
    static func keys(partitions: Int32) -> [String] {
        var keys = [String?](repeating: nil, count: Int(partitions))
        var missing = Int(partitions)
        var n = 0
        while missing > 0 {
            let key = "key-\(n)"
            let p = Int(Murmur2.partition(forKey: Array(key.utf8), partitions: partitions))
            if keys[p] == nil {
                keys[p] = key
                missing -= 1
            }
            n += 1
        }
        return keys.map { $0! }
    }

    /// Creates topic `wide` with `partitions` partitions, writes one record to each, and checks
    /// that describe and consume see every one: each command under `ulimit -n limit`.
    func roundTrip(partitions: Int32, limit: Int) throws {
        let ulimit = "ulimit -n \(limit)"
        // `never`: one fdatasync per partition would be most of the test's time.
        var r = try Sluice.run(["topic", "create", "wide", "--partitions", "\(partitions)", "--flush", "never"], data: data, shellPrefix: ulimit)
        #expect(r.status == 0, "topic create: \(r.stderr)")
        #expect(r.stdout.contains("created topic wide with \(partitions) partitions"), "\(r.stdout)")
        // Partition p's line, in partition order.
        let lines = Self.keys(partitions: partitions).enumerated().map { p, key in #"{"k":"\#(key)","p":\#(p)}"# }
        r = try Sluice.run(["produce", "wide", "--key-field", "k"], data: data, stdin: lines.joined(separator: "\n") + "\n", shellPrefix: ulimit)
        #expect(r.status == 0, "produce: \(r.stderr)")
        #expect(r.stderr.contains("wrote \(partitions) records to wide"), "produce: \(r.stderr)")

        r = try Sluice.run(["topic", "describe", "wide"], data: data, shellPrefix: ulimit)
        #expect(r.status == 0, "describe: \(r.stderr)")
        let out = r.stdoutLines
        #expect(out.first?.hasPrefix("topic wide: \(partitions) partitions") == true, "\(out.first ?? "")")
        // PARTITION START END RECORDS BYTES SEGMENTS, after the header row.
        let rows = out.dropFirst(2).map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        #expect(rows.count == Int(partitions))
        let wrong = rows.enumerated().filter { i, row in row.count != 6 || row[0] != "\(i)" || row[1] != "0" || row[2] != "1" || row[3] != "1" }
        #expect(wrong.isEmpty, "partitions without exactly one record: \(wrong.prefix(5).map { $0.element.joined(separator: " ") })")
        let total = rows.reduce(0) { sum, row in sum + (row.count > 3 ? Int(row[3]) ?? 0 : 0) }
        #expect(total == Int(partitions))

        // Partitions are read in order, one record each: the lines exactly as written.
        r = try Sluice.run(["consume", "wide", "--from", "earliest"], data: data, shellPrefix: ulimit)
        #expect(r.status == 0, "consume: \(r.stderr)")
        #expect(r.stdoutLines.count == lines.count)
        #expect(r.stdoutLines == lines)
    }

    @Test(.timeLimit(.minutes(5)))
    func tenThousandPartitionsUnderADescriptorLimitOf1024() throws {
        try roundTrip(partitions: 10_000, limit: 1024)
    }

    @Test(.timeLimit(.minutes(2)))
    func threeHundredPartitionsUnderADescriptorLimitOf64() throws {
        try roundTrip(partitions: 300, limit: 64)
    }

    /// Partition 10's files are the first whose paths pass PATH_MAX here, so the create fails
    /// there, after ten partitions were made: neither the topic nor its staging directory
    /// stays, the error says why, and the name can be used at once.
    @Test func aCreateThatFailsHalfwayLeavesNothingBehind() throws {
        // <data>/tmp/create-<pid>-<36-character uuid>/<p>/00000000000000000000.timeindex is
        // len(data) + len(pid) + 81 + len(p) bytes: with len(data) = 4,013 - len(pid), 4,095
        // (the most a path may have) for p < 10 and 4,096 for p = 10.
        let dataLength = 4013 - String(getpid()).count
        var path = scratch.path
        while dataLength - path.count > 203 { path += "/" + String(repeating: "d", count: 200) }
        path += "/" + String(repeating: "e", count: dataLength - path.count - 1)
        #expect(path.count == dataLength)

        let topics = TopicManager(directory: try DataDirectory(path: path, readOnly: false))
        defer { topics.close() }
        let name = try TopicName("x")
        var failure: BrokerError?
        do {
            try topics.create(name, config: TopicConfig(partitions: 20, flush: "never"))
        } catch let error as BrokerError {
            failure = error
        }
        #expect(failure?.message.contains("File name too long") == true, "\(String(describing: failure))")
        #expect(!FileManager.default.fileExists(atPath: path + "/topics/x"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: path + "/tmp").isEmpty)
        #expect(try topics.list().isEmpty)
        #expect(!topics.exists(name))

        // Nothing is in the way of the same name (ten partitions fit).
        try topics.create(name, config: TopicConfig(partitions: 10, flush: "never"))
        #expect(try topics.list() == [name])
        #expect(try topics.describe(name).partitions.count == 10)
    }
}
