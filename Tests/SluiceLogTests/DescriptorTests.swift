// The log's file descriptors: a pool keeps at most `capacity` open in the process, closes the
// least recently used idle ones and reopens files on demand, with their data, their write
// positions and their durability intact; a descriptor in use or kept open for a deleted
// segment's readers is never closed.
import Foundation
import Glibc
@testable import SluiceLog
import Testing

/// Descriptors the process has open now (the listing's own included).
private func openDescriptorCount() -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
}

/// The LogError `body` throws, or nil.
private func logError(_ body: () throws -> Void) -> LogError? {
    do {
        try body()
        return nil
    } catch let error as LogError {
        return error
    } catch {
        return nil
    }
}

// Serialized: some tests lower the shared pool's capacity for a while.
@Suite(.serialized) struct DescriptorTests {
    let scratch = ScratchDirectory("fds")

    /// Runs `body` with the shared pool's capacity lowered to `capacity`.
    private func withSharedCapacity(_ capacity: Int, _ body: () throws -> Void) rethrows {
        let pool = DescriptorPool.shared
        let saved = pool.capacity
        pool.capacity = capacity
        defer { pool.capacity = saved }
        try body()
    }

    @Test func twoHundredLogsShareAFewDescriptors() throws {
        let capacity = 32
        try withSharedCapacity(capacity) {
            let pool = DescriptorPool.shared
            // Descriptors that are not the pool's: stdio, the test runner's.
            let outside = openDescriptorCount() - pool.openCount
            let evictionsBefore = pool.evictionCount
            let config = LogConfig(segmentBytes: 1024, indexIntervalBytes: 128)
            var logs: [PartitionLog] = []
            var peak = 0
            for p in 0..<200 {
                let log = try PartitionLog.open(directory: scratch.path + "/\(p)", config: config)
                logs.append(log)
                try appendValues(log, from: 0, count: 20, perBatch: 2)
                peak = max(peak, openDescriptorCount())
            }
            // Every log again, long after the pool closed its files: appends land after what
            // is there, reads see all of it, and a flush syncs through a reopened descriptor.
            for (p, log) in logs.enumerated() {
                try appendValues(log, from: 20, count: 20, perBatch: 2)
                try log.flush()
                #expect(log.flushedOffset == 40, "partition \(p)")
                #expect(try readValues(log).map(\.1) == (0..<40).map { "v\($0)" }, "partition \(p)")
                peak = max(peak, openDescriptorCount())
            }
            #expect(logs[0].segmentCount > 1)
            #expect(pool.openCount <= capacity)
            #expect(pool.evictionCount > evictionsBefore)
            // Three descriptors per segment, always open, were more than 1,200 here.
            #expect(peak <= outside + capacity + 64, "at most \(peak) descriptors open, \(outside) of them not the pool's")
            for log in logs { log.close() }
            logs.removeAll()
            // Opened again from disk, every log has everything.
            for p in 0..<200 {
                let log = try PartitionLog.open(directory: scratch.path + "/\(p)", config: config)
                defer { log.close() }
                #expect(log.logEndOffset == 40, "partition \(p)")
                #expect(try readValues(log).map(\.1) == (0..<40).map { "v\($0)" }, "partition \(p)")
            }
            #expect(pool.openCount <= capacity)
        }
    }

    @Test func aFileThePoolClosedReopensWithItsDataAndWritesLandInPlace() throws {
        let pool = DescriptorPool(capacity: 2)
        let files = try (0..<6).map { try FileHandleRef.open(scratch.path + "/f\($0)", create: true, pool: pool) }
        #expect(pool.openCount <= 2)
        for (i, f) in files.enumerated() {
            try bytes("head-\(i);").withUnsafeBytes { try f.pwriteAll($0, at: 0) }
        }
        for (i, f) in files.enumerated() {
            // Appends go at the end, as the log's do, and are synced through whatever
            // descriptor the file has now.
            let end = try f.size()
            try bytes("tail-\(i)").withUnsafeBytes { try f.pwriteAll($0, at: end) }
            try f.sync()
            #expect(pool.openCount <= 2)
        }
        for (i, f) in files.enumerated() {
            let expected = bytes("head-\(i);tail-\(i)")
            #expect(try f.pread(count: 64, at: 0) == expected)
            var buffer = [UInt8](repeating: 0, count: 64)
            let n = try buffer.withUnsafeMutableBytes { try f.pread(into: $0, at: 0) }
            #expect(Array(buffer.prefix(n)) == expected)
            #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: f.path))) == expected)
        }
        try files[0].truncate(to: 4)
        #expect(try files[0].pread(count: 64, at: 0) == bytes("head"))
        #expect(pool.openCount <= 2)
        #expect(pool.evictionCount > 0 && pool.reopenCount > 0)
    }

    @Test func aDescriptorInUseIsNeverClosed() throws {
        let pool = DescriptorPool(capacity: 1)
        let a = try FileHandleRef.open(scratch.path + "/a", create: true, pool: pool)
        let b = try FileHandleRef.open(scratch.path + "/b", create: true, pool: pool)
        try bytes("aaaa").withUnsafeBytes { try a.pwriteAll($0, at: 0) }
        try a.withDescriptor { fd in
            // The pool is full and `a` is its only other descriptor, but `a` is in use.
            _ = try b.size()
            #expect(b.isOpen && a.isOpen)
            var buffer = [UInt8](repeating: 0, count: 4)
            let n = pread(fd, &buffer, 4, 0)
            #expect(n == 4 && buffer == bytes("aaaa"))
        }
        #expect(pool.openCount == 2)
        // Once idle, both go to make room.
        let c = try FileHandleRef.open(scratch.path + "/c", create: true, pool: pool)
        #expect(c.isOpen && !a.isOpen && !b.isOpen && pool.openCount == 1)
    }

    @Test func aReopenNeverCreatesAFileAndNoticesOneDeletedOrReplaced() throws {
        let pool = DescriptorPool(capacity: 1)
        let path = scratch.path + "/data"
        let writer = try FileHandleRef.open(path, create: true, pool: pool)
        try bytes("data").withUnsafeBytes { try writer.pwriteAll($0, at: 0) }
        let reader = try FileHandleRef.open(path, create: false, readOnly: true, pool: pool)
        #expect(!writer.isOpen && reader.isOpen)
        // Reopened without truncating.
        #expect(try writer.pread(count: 16, at: 0) == bytes("data"))
        #expect(!reader.isOpen)

        // Another file renamed over it is not this handle's file: a reader gets what a read
        // of data retention removed gets, a writer an I/O error, and neither touches it.
        try Data("other".utf8).write(to: URL(fileURLWithPath: path + ".new"))
        #expect(rename(path + ".new", path) == 0)
        let replacedForReader = logError { _ = try reader.size() }
        #expect(replacedForReader?.code == LogError.Code.offsetOutOfRange, "\(String(describing: replacedForReader))")
        #expect(!writer.isOpen)
        let replacedForWriter = logError { _ = try writer.size() }
        #expect(replacedForWriter?.code == LogError.Code.io, "\(String(describing: replacedForWriter))")
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == Data("other".utf8))

        // Deleted: a reopen fails instead of creating an empty file.
        #expect(unlink(path) == 0)
        let deletedForWriter = logError { try bytes("x").withUnsafeBytes { try writer.pwriteAll($0, at: 0) } }
        #expect(deletedForWriter != nil)
        let deletedForReader = logError { _ = try reader.pread(count: 4, at: 0) }
        #expect(deletedForReader?.code == LogError.Code.offsetOutOfRange, "\(String(describing: deletedForReader))")
        #expect(!FileManager.default.fileExists(atPath: path))

        // A lazy handle creates its file at its first use, not before.
        let lazyPath = scratch.path + "/lazy"
        let onFirstUse = FileHandleRef.onFirstUse(lazyPath, create: true, pool: pool)
        #expect(!onFirstUse.isOpen && !FileManager.default.fileExists(atPath: lazyPath))
        #expect(try onFirstUse.size() == 0)
        #expect(FileManager.default.fileExists(atPath: lazyPath))
    }

    @Test func aFileKeptOpenSurvivesItsDeletionWhateverThePressure() throws {
        let pool = DescriptorPool(capacity: 1)
        let path = scratch.path + "/doomed"
        let doomed = try FileHandleRef.open(path, create: true, pool: pool)
        try bytes("still readable").withUnsafeBytes { try doomed.pwriteAll($0, at: 0) }
        let other = try FileHandleRef.open(scratch.path + "/other", create: true, pool: pool)
        #expect(!doomed.isOpen)
        try doomed.keepOpen()
        try FileManager.default.removeItem(atPath: path)
        for _ in 0..<3 { _ = try other.size() }
        #expect(doomed.isOpen)
        #expect(try doomed.pread(count: 64, at: 0) == bytes("still readable"))
        // Over capacity by the kept-open file only.
        #expect(pool.openCount == 2)
    }

    @Test func aSegmentRetentionDeletedStaysReadableForAReaderThatHoldsIt() throws {
        try withSharedCapacity(8) {
            let config = LogConfig(segmentBytes: 1024, retentionMs: -1, retentionBytes: 2000)
            let log = try PartitionLog.open(directory: scratch.path + "/r", config: config)
            defer { log.close() }
            try appendValues(log, from: 0, count: 200, perBatch: 5)
            // What a reader that looked the oldest segment up before retention ran holds.
            let (held, size) = log.state.withLock { ($0.segments[0].segment, $0.segments[0].size) }
            let before = try held.log.pread(count: size, at: 0)
            #expect(before.count == size && size > 0)
            #expect(try log.applyRetention() > 0)
            #expect(!FileManager.default.fileExists(atPath: held.logPath))
            // More files than the pool keeps open are opened and used meanwhile.
            let others = try (0..<20).map { try FileHandleRef.open(scratch.path + "/other-\($0)", create: true) }
            for f in others { _ = try f.size() }
            #expect(held.log.isOpen)
            #expect(try held.log.pread(count: size, at: 0) == before)
        }
    }

    @Test func reopeningALogOpensNoIndexOfItsRolledSegments() throws {
        let dir = scratch.path + "/lazy"
        let config = LogConfig(segmentBytes: 1024, indexIntervalBytes: 128)
        var log = try PartitionLog.open(directory: dir, config: config)
        try appendValues(log, from: 0, count: 200, perBatch: 5)
        log.close()
        log = try PartitionLog.open(directory: dir, config: config)
        defer { log.close() }
        let segments = log.state.withLock { $0.segments.map(\.segment) }
        #expect(segments.count > 2)
        for segment in segments.dropLast() {
            #expect(segment.index?.isOpen == false && segment.timeIndex?.isOpen == false, "\(segment.logPath)")
        }
        #expect(try readValues(log).map(\.0) == Array(0..<200))
        // Appends still index the active segment.
        try appendValues(log, from: 200, count: 50, perBatch: 5)
        #expect(try readValues(log, from: 230, maxBytes: 64).first?.0 == 230)
    }

    @Test func theSharedPoolRaisesTheSoftLimitAndKeepsAReserve() {
        #expect(DescriptorPool.capacity(forLimit: 1024) == 768)
        #expect(DescriptorPool.capacity(forLimit: 64) == 32)
        #expect(DescriptorPool.capacity(forLimit: 20_000) == 15_000)
        #expect(DescriptorPool.capacity(forLimit: 1_048_576) == 786_432)
        let pool = DescriptorPool.shared
        #expect(pool.capacity == DescriptorPool.capacity(forLimit: pool.descriptorLimit))
        var limit = rlimit()
        let status = getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        #expect(status == 0)
        #expect(limit.rlim_cur == limit.rlim_max)
        #expect(Int(clamping: limit.rlim_cur) == pool.descriptorLimit)
    }
}
