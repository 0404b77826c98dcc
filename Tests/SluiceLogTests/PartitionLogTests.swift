// The partition log through its public API: offsets, reads, segments, indexes, timestamps,
// retention, flush policies, recovery from torn and corrupted files, concurrent readers.
import Foundation
import Logging
import Synchronization
import SluiceLog
import Testing

@Suite struct PartitionLogTests {
    let scratch = ScratchDirectory()
    var dir: String { scratch.path + "/p0" }

    @Test func appendAssignsContiguousOffsetsAndReadsThemBack() throws {
        let log = try PartitionLog.open(directory: dir)
        defer { log.close() }
        #expect(log.logStartOffset == 0 && log.logEndOffset == 0 && log.highWatermark == 0)
        let results = try appendValues(log, from: 0, count: 25, perBatch: 10)
        #expect(results.map(\.baseOffset) == [0, 10, 20])
        #expect(results.map(\.lastOffset) == [9, 19, 24])
        #expect(log.logEndOffset == 25 && log.highWatermark == 25)
        let values = try readValues(log)
        #expect(values.map(\.0) == Array(0..<25))
        #expect(values.map(\.1) == (0..<25).map { "v\($0)" })
    }

    @Test func readFromTheMiddleOfABatchSkipsEarlierRecords() throws {
        let log = try PartitionLog.open(directory: dir)
        defer { log.close() }
        try appendValues(log, from: 0, count: 30, perBatch: 10)
        let values = try readValues(log, from: 13)
        #expect(values.first?.0 == 13 && values.count == 17)
    }

    @Test func readRespectsTheByteLimitButAlwaysReturnsOneWholeBatch() throws {
        let log = try PartitionLog.open(directory: dir)
        defer { log.close() }
        try appendValues(log, from: 0, count: 100, perBatch: 10)
        let one = try log.read(from: 0, maxBytes: 1)
        var batches = 0
        one.forEachBatch { _ in batches += 1 }
        #expect(batches == 1 && one.nextOffset == 10)
        let some = try log.read(from: 0, maxBytes: 400)
        #expect(some.byteCount <= 400 && some.byteCount > 0)
    }

    @Test func readingAtTheEndIsEmptyAndOutsideTheLogIsAnError() throws {
        let log = try PartitionLog.open(directory: dir)
        defer { log.close() }
        try appendValues(log, from: 0, count: 5)
        #expect(try log.read(from: 5).isEmpty)
        #expect(throws: LogError.self) { try log.read(from: 6) }
        #expect(throws: LogError.self) { try log.read(from: -1) }
    }

    @Test func segmentsRollBySizeAndReadsCrossThem() throws {
        let config = LogConfig(segmentBytes: 2048, indexIntervalBytes: 256)
        let log = try PartitionLog.open(directory: dir, config: config)
        try appendValues(log, from: 0, count: 500, perBatch: 5)
        #expect(log.segmentCount > 5)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir)
        for base in log.segmentBaseOffsets {
            let name = String(format: "%020lld", base)
            #expect(files.contains(name + ".log") && files.contains(name + ".index") && files.contains(name + ".timeindex"))
        }
        #expect(try readValues(log).map(\.0) == Array(0..<500))
        // Every offset can be read directly (the sparse index finds its batch).
        for offset in stride(from: Int64(0), to: 500, by: 37) {
            let r = try log.read(from: offset, maxBytes: 100)
            var first: Int64?
            try r.forEachRecord(from: offset) { if first == nil { first = $0.offset } }
            #expect(first == offset)
        }
        log.close()
        // Reopening keeps everything (indexes of rolled segments are loaded, the tail is scanned).
        let again = try PartitionLog.open(directory: dir, config: config)
        defer { again.close() }
        #expect(again.logEndOffset == 500 && again.segmentCount == log.segmentCount)
        #expect(try readValues(again).map(\.1) == (0..<500).map { "v\($0)" })
    }

    @Test func segmentsRollByAge() throws {
        let config = LogConfig(segmentMs: 1)
        let log = try PartitionLog.open(directory: dir, config: config)
        defer { log.close() }
        try appendValues(log, from: 0, count: 1, timestamp: { _ in currentTimeMillis() - 10 })
        usleep(5000)
        try appendValues(log, from: 1, count: 1)
        #expect(log.segmentBaseOffsets == [0, 1])
    }

    @Test func offsetForTimestampFindsTheFirstRecordAtOrAfterIt() throws {
        let config = LogConfig(segmentBytes: 1024, indexIntervalBytes: 128)
        let log = try PartitionLog.open(directory: dir, config: config)
        defer { log.close() }
        // Record n has timestamp 1000 + 10n.
        try appendValues(log, from: 0, count: 300, perBatch: 3, timestamp: { 1000 + Int64($0) * 10 })
        #expect(try log.offset(forTimestamp: 0) == 0)
        #expect(try log.offset(forTimestamp: 1000) == 0)
        #expect(try log.offset(forTimestamp: 1001) == 1)
        #expect(try log.offset(forTimestamp: 2000) == 100)
        #expect(try log.offset(forTimestamp: 3985) == 299)
        #expect(try log.offset(forTimestamp: 3991) == nil)
    }

    @Test func retentionBySizeDeletesOldestSegmentsAndMovesTheStartOffset() throws {
        let config = LogConfig(segmentBytes: 1024, retentionMs: -1, retentionBytes: 3000)
        let log = try PartitionLog.open(directory: dir, config: config)
        defer { log.close() }
        try appendValues(log, from: 0, count: 400, perBatch: 4)
        let before = log.segmentCount
        let deleted = try log.applyRetention()
        #expect(deleted > 0 && log.segmentCount == before - deleted)
        #expect(log.sizeInBytes <= 3000 + 1024)
        #expect(log.logStartOffset == log.segmentBaseOffsets.first)
        #expect(log.logStartOffset > 0)
        #expect(throws: LogError.self) { try log.read(from: 0) }
        #expect(try readValues(log, from: log.logStartOffset).last?.0 == 399)
    }

    @Test func retentionByAgeKeepsTheActiveSegment() throws {
        let now = currentTimeMillis()
        let config = LogConfig(segmentBytes: 1024, retentionMs: 60_000)
        let log = try PartitionLog.open(directory: dir, config: config)
        defer { log.close() }
        try appendValues(log, from: 0, count: 200, perBatch: 4, timestamp: { _ in now - 3_600_000 })
        try appendValues(log, from: 200, count: 200, perBatch: 4, timestamp: { _ in now })
        try log.applyRetention(now: now)
        #expect(log.logStartOffset >= 150 && log.logStartOffset <= 200)
        #expect(try readValues(log, from: log.logStartOffset).last?.0 == 399)
    }

    @Test func flushAlwaysMakesEachAppendDurableBeforeItReturns() throws {
        let log = try PartitionLog.open(directory: dir, config: LogConfig(flush: .always))
        defer { log.close() }
        try appendValues(log, from: 0, count: 3, perBatch: 1)
        #expect(log.flushedOffset == 3)
    }

    @Test func flushIntervalGroupCommitsAndWakesWaiters() async throws {
        let log = try PartitionLog.open(directory: dir, config: LogConfig(flush: .interval(milliseconds: 20)))
        defer { log.close() }
        let r = try appendValues(log, from: 0, count: 10)
        try await log.waitUntilDurable(r.last!.lastOffset)
        #expect(log.flushedOffset >= 10)
        let r2 = try appendValues(log, from: 10, count: 10)
        try log.waitUntilDurableBlocking(r2.last!.lastOffset)
        #expect(log.flushedOffset >= 20)
    }

    @Test func flushNeverDoesNotWait() async throws {
        let log = try PartitionLog.open(directory: dir, config: LogConfig(flush: .never))
        defer { log.close() }
        let r = try appendValues(log, from: 0, count: 10)
        try await log.waitUntilDurable(r.last!.lastOffset)
        #expect(log.logEndOffset == 10)
    }

    @Test func invalidBatchesAreRefusedAndNothingIsWritten() throws {
        let log = try PartitionLog.open(directory: dir)
        defer { log.close() }
        var raw = hexBytes(RecordBatchTests.batchB)
        raw[40] ^= 1
        #expect(throws: LogError.self) { try raw.withUnsafeMutableBytes { try log.append(batch: $0) } }
        var short = Array(hexBytes(RecordBatchTests.batchB).dropLast(3))
        #expect(throws: LogError.self) { try short.withUnsafeMutableBytes { try log.append(batch: $0) } }
        #expect(log.logEndOffset == 0 && log.sizeInBytes == 0)
        // A valid encoded batch (as from the wire) gets its base offset assigned in place.
        try appendValues(log, from: 0, count: 4)
        var good = hexBytes(RecordBatchTests.batchB)
        let result = try good.withUnsafeMutableBytes { try log.append(batch: $0) }
        #expect(result.baseOffset == 4 && result.lastOffset == 6)
    }

    // MARK: Recovery

    private func lastSegmentPath(_ log: PartitionLog) -> String {
        dir + "/" + String(format: "%020lld", log.segmentBaseOffsets.last!) + ".log"
    }

    @Test(arguments: ["partial-batch", "garbage", "flipped-crc", "zeros"])
    func recoveryTruncatesABadTailAndAppendsContinue(damage: String) throws {
        var log = try PartitionLog.open(directory: dir)
        try appendValues(log, from: 0, count: 50, perBatch: 5)
        let path = lastSegmentPath(log)
        let goodSize = log.sizeInBytes
        log.close()
        let file = FileHandle(forUpdatingAtPath: path)!
        switch damage {
        case "partial-batch":
            // A torn write: the start of one more batch.
            var b = RecordBatchBuilder()
            b.append(key: nil, value: bytes("torn"), timestamp: 1)
            b.seal()
            file.seekToEndOfFile()
            file.write(Data(b.bytes.prefix(b.bytes.count - 7)))
        case "garbage":
            file.seekToEndOfFile()
            file.write(Data((0..<100).map { UInt8($0 * 7 & 0xff) }))
        case "flipped-crc":
            // Damage inside the last batch: it and everything after must go.
            file.seek(toFileOffset: UInt64(goodSize - 3))
            file.write(Data([0xEE]))
        default:
            file.seekToEndOfFile()
            file.write(Data(repeating: 0, count: 4096))
        }
        file.closeFile()

        let warnings = LogSink()
        log = try PartitionLog.open(directory: dir, logger: capturingLogger(warnings))
        defer { log.close() }
        let expectedEnd: Int64 = damage == "flipped-crc" ? 45 : 50
        #expect(log.logEndOffset == expectedEnd)
        let messages = warnings.messages
        #expect(messages.contains { $0.contains("truncated \(path)") && $0.contains("offset \(expectedEnd)") }, "warnings: \(messages)")
        #expect(try readValues(log).map(\.1) == (0..<Int(expectedEnd)).map { "v\($0)" })
        try appendValues(log, from: Int(expectedEnd), count: 5)
        #expect(try readValues(log).map(\.0) == Array(0..<(expectedEnd + 5)))
    }

    @Test(arguments: ["deleted", "garbage", "truncated"])
    func aMissingOrDamagedIndexIsRebuilt(damage: String) throws {
        let config = LogConfig(segmentBytes: 2048, indexIntervalBytes: 200)
        var log = try PartitionLog.open(directory: dir, config: config)
        try appendValues(log, from: 0, count: 300, perBatch: 3)
        log.close()
        let index = dir + "/00000000000000000000.index"
        let original = try Data(contentsOf: URL(fileURLWithPath: index))
        #expect(original.count > 0)
        switch damage {
        case "deleted": try FileManager.default.removeItem(atPath: index)
        case "garbage": try Data(repeating: 0xff, count: original.count).write(to: URL(fileURLWithPath: index))
        default: try original.prefix(original.count - 3).write(to: URL(fileURLWithPath: index))
        }
        log = try PartitionLog.open(directory: dir, config: config)
        defer { log.close() }
        #expect(try Data(contentsOf: URL(fileURLWithPath: index)) == original)
        for offset in stride(from: Int64(0), to: 300, by: 29) {
            #expect(try readValues(log, from: offset, maxBytes: 64).first?.0 == offset)
        }
    }

    @Test func corruptionInAnOlderSegmentIsReportedAndReadsStopBeforeIt() throws {
        let config = LogConfig(segmentBytes: 1024)
        var log = try PartitionLog.open(directory: dir, config: config)
        try appendValues(log, from: 0, count: 200, perBatch: 4)
        let bases = log.segmentBaseOffsets
        #expect(bases.count >= 4)
        log.close()
        // Damage the third batch of the second segment (CRC-covered bytes).
        let victim = dir + "/" + String(format: "%020lld", bases[1]) + ".log"
        var raw = try [UInt8](Data(contentsOf: URL(fileURLWithPath: victim)))
        var pos = 0
        for _ in 0..<2 { pos += raw.withUnsafeBytes { Int(BatchHeader($0[pos...].withUnsafeBytes { UnsafeRawBufferPointer($0) }).totalSize) } }
        let damagedOffset = bases[1] + 8
        raw[pos + 40] ^= 0xFF
        try Data(raw).write(to: URL(fileURLWithPath: victim))

        let errors = LogSink()
        log = try PartitionLog.open(directory: dir, config: config, logger: capturingLogger(errors))
        defer { log.close() }
        // Everything before the damaged batch reads back; the damaged batch is an error
        // naming the file, byte and offset, never garbage.
        var got: [Int64] = []
        var position: Int64 = 0
        var failure: LogError?
        while position < log.highWatermark {
            do {
                let r = try log.read(from: position, maxBytes: 300)
                try r.forEachRecord(from: position) { got.append($0.offset) }
                position = r.nextOffset
            } catch let e as LogError {
                failure = e
                break
            }
        }
        #expect(got == Array(0..<damagedOffset))
        let e = try #require(failure)
        #expect(e.code == .corruptBatch)
        #expect(e.file == victim && e.offset == damagedOffset)
        #expect(e.message.contains(victim) && e.message.contains("offset \(damagedOffset)") && e.message.contains("byte \(pos)"))
        // Later segments stay readable directly.
        #expect(try readValues(log, from: bases[2]).first?.0 == bases[2])
    }

    // MARK: Concurrency

    @Test func readersNeverSeePartialBatchesWhileOneWriterAppends() async throws {
        let log = try PartitionLog.open(directory: dir, config: LogConfig(segmentBytes: 64 * 1024))
        defer { log.close() }
        let total = 20_000
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try appendValues(log, from: 0, count: total, perBatch: 7)
            }
            for _ in 0..<3 {
                group.addTask {
                    var position: Int64 = 0
                    while position < Int64(total) {
                        let r = try log.read(from: position, maxBytes: 8192)
                        if r.isEmpty { await Task.yield(); continue }
                        try r.forEachRecord(from: position) { rec in
                            // Offsets arrive in order with the value written at that offset.
                            #expect(rec.offset == position)
                            #expect(String(decoding: rec.value!, as: UTF8.self) == "v\(rec.offset)")
                            position += 1
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(log.logEndOffset == Int64(total))
    }

    @Test func aReadOnlyOpenFollowsAWriterThroughRefresh() throws {
        let config = LogConfig(segmentBytes: 1024)
        let writer = try PartitionLog.open(directory: dir, config: config)
        defer { writer.close() }
        try appendValues(writer, from: 0, count: 20)
        let reader = try PartitionLog.open(directory: dir, config: config, readOnly: true)
        defer { reader.close() }
        #expect(reader.logEndOffset == 20)
        try appendValues(writer, from: 20, count: 200, perBatch: 4)
        #expect(reader.logEndOffset == 20)
        try reader.refresh()
        #expect(reader.logEndOffset == 220)
        #expect(try readValues(reader).map(\.1) == (0..<220).map { "v\($0)" })
        #expect(throws: LogError.self) { try appendValues(reader, from: 0, count: 1) }
    }
}

/// Collects log messages for assertions.
final class LogSink: Sendable {
    private let lines = Mutex<[String]>([])
    func append(_ s: String) { lines.withLock { $0.append(s) } }
    var messages: [String] { lines.withLock { $0 } }
}

/// A logger that records every message at warning level or above.
func capturingLogger(_ sink: LogSink) -> Logger {
    Logger(label: "test") { _ in CapturingHandler(sink: sink) }
}

struct CapturingHandler: LogHandler {
    let sink: LogSink
    var logLevel: Logger.Level = .warning
    var metadata: Logger.Metadata = [:]
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        let text = "\(event.level): \(event.message)"
        sink.append(text)
    }
}
