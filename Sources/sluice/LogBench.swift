// sluice bench log: append and read throughput of one partition log, next to this machine's
// own sequential write bandwidth and fdatasync latency measured in the same run.
import ArgumentParser
import Foundation
import Logging
import SluiceLog

struct LogBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "log",
        abstract: "Benchmark the partition log: batched, single-record and synced appends, and sequential reads."
    )

    @Option(help: "Scratch directory (deleted afterwards); default a new directory under $TMPDIR or /tmp.") var dir: String?
    @Option(help: "Records for the batched-append and read runs.") var records: Int = 10_000_000
    @Option(name: .customLong("batch-size"), help: "Records per batch in the batched run.") var batchSize: Int = 1000
    @Option(name: .customLong("value-size"), help: "Bytes per record value.") var valueSize: Int = 100
    @Option(name: .customLong("single-records"), help: "Appends of one record each (flush interval).") var singleRecords: Int = 1_000_000
    @Option(name: .customLong("always-records"), help: "Single-record appends under flush always.") var alwaysRecords: Int = 1000

    func validate() throws {
        if records < batchSize || batchSize < 1 || valueSize < 1 || singleRecords < 1 || alwaysRecords < 1 {
            throw ValidationError("record counts, --batch-size and --value-size must be positive, and --records at least --batch-size")
        }
    }

    func run() throws {
        LoggingBootstrap.once(level: .warning)
        let base = dir ?? ((ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp") + "/sluice-bench-\(getpid())")
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: base) }
        #if DEBUG
        emit("note: this is a debug build; build with -c release for real figures")
        #endif
        emit("sluice bench log: \(records) records of \(valueSize)-byte values, batches of \(batchSize), scratch \(base)")
        emit("crc32c: \(CRC32C.usesHardware ? "hardware" : "portable tables")")

        // The machine's own limit: the same number of bytes written by plain 1 MiB pwrites
        // with an fdatasync every 50 ms (the log's group-commit cadence), measured before and
        // after the log runs; the better of the two is the limit.
        let rawBytes = records / batchSize * (batchSize * (valueSize + 9) + 61)
        let before = try sequentialWrite(base + "/disk", bytes: rawBytes)
        let sync = try syncLatency(base + "/sync")
        emit(String(format: "machine  sequential write %.0f MB/s (%d MB in 1 MiB pwrites, fdatasync every 50 ms); fdatasync after a 256-byte append p50 %.3f ms, p99 %.3f ms",
                     before, rawBytes / 1_000_000, sync.p50 * 1000, sync.p99 * 1000))
        // Batched appends, flush interval.
        let logger = Logger(label: "sluice.bench")
        let batched = try PartitionLog.open(directory: base + "/batched", config: LogConfig(flush: .interval(milliseconds: 50)), logger: logger)
        let value = [UInt8](repeating: UInt8(ascii: "x"), count: valueSize)
        var builder = RecordBatchBuilder(capacity: batchSize * (valueSize + 16) + 128)
        var t0 = monotonicNanos()
        var written = 0
        var bytesWritten = 0
        let ts = currentTimeMillis()
        value.withUnsafeBytes { v in
            while written < records {
                builder.reset()
                for _ in 0..<batchSize { builder.append(key: nil, value: v, timestamp: ts) }
                do { try batched.append(&builder) } catch { fatalError("append failed: \(error)") }
                bytesWritten += builder.byteCount
                written += batchSize
            }
        }
        try batched.flush()
        var seconds = Double(monotonicNanos() - t0) / 1e9
        let appendMBps = Double(bytesWritten) / seconds / 1e6
        let after = try sequentialWrite(base + "/disk", bytes: rawBytes)
        let limit = max(before, after)
        report("batched append (flush interval 50ms, incl. final sync)", records: written, seconds: seconds, bytes: bytesWritten,
               extra: String(format: "%.2f× the machine's sequential write (%.0f MB/s before, %.0f MB/s after)", appendMBps / limit, before, after))

        // Sequential read + decode from the start.
        t0 = monotonicNanos()
        var offset = batched.logStartOffset
        var readCount = 0
        var valueBytes = 0
        let end = batched.logEndOffset
        while offset < end {
            let result = try batched.read(from: offset, maxBytes: 1 << 20)
            try result.forEachRecord(from: offset) { r in
                readCount += 1
                valueBytes &+= r.value?.count ?? 0
            }
            offset = result.nextOffset
        }
        seconds = Double(monotonicNanos() - t0) / 1e9
        guard readCount == written && valueBytes == written * valueSize else {
            throw CLIError.runtime("read back \(readCount) records (\(valueBytes) value bytes), expected \(written)")
        }
        report("sequential read + decode + CRC check (page cache warm)", records: readCount, seconds: seconds, bytes: bytesWritten, extra: nil)
        batched.close()

        // Single-record appends, flush interval.
        let single = try PartitionLog.open(directory: base + "/single", config: LogConfig(flush: .interval(milliseconds: 50)), logger: logger)
        var one = RecordBatchBuilder(capacity: 256)
        t0 = monotonicNanos()
        try value.withUnsafeBytes { v in
            for _ in 0..<singleRecords {
                one.reset()
                one.append(key: nil, value: v, timestamp: ts)
                try single.append(&one)
            }
        }
        try single.flush()
        seconds = Double(monotonicNanos() - t0) / 1e9
        report("single-record appends (flush interval 50ms)", records: singleRecords, seconds: seconds, bytes: singleRecords * (valueSize + 70), extra: nil)
        single.close()

        // Single-record appends, flush always.
        let synced = try PartitionLog.open(directory: base + "/always", config: LogConfig(flush: .always), logger: logger)
        var latencies: [Double] = []
        latencies.reserveCapacity(alwaysRecords)
        t0 = monotonicNanos()
        try value.withUnsafeBytes { v in
            for _ in 0..<alwaysRecords {
                let s = monotonicNanos()
                one.reset()
                one.append(key: nil, value: v, timestamp: ts)
                try synced.append(&one)
                latencies.append(Double(monotonicNanos() - s) / 1e9)
            }
        }
        seconds = Double(monotonicNanos() - t0) / 1e9
        latencies.sort()
        report("single-record appends (flush always)", records: alwaysRecords, seconds: seconds, bytes: alwaysRecords * (valueSize + 70),
               extra: String(format: "append p50 %.3f ms, p99 %.3f ms (fdatasync alone p50 %.3f ms, p99 %.3f ms)",
                             percentile(latencies, 0.50) * 1000, percentile(latencies, 0.99) * 1000, sync.p50 * 1000, sync.p99 * 1000))
        synced.close()
    }

    private func report(_ name: String, records: Int, seconds: Double, bytes: Int, extra: String?) {
        var line = String(format: "%@: %.0f records/s, %.1f MB/s (%d records in %.2f s)", name, Double(records) / seconds, Double(bytes) / seconds / 1e6, records, seconds)
        if let extra { line += "; " + extra }
        emit(line)
    }

    /// MB/s of plain sequential 1 MiB pwrites of `bytes`, with an fdatasync every 50 ms and
    /// at the end.
    private func sequentialWrite(_ path: String, bytes: Int) throws -> Double {
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw CLIError.runtime("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd); unlink(path) }
        let chunk = [UInt8](repeating: 0x5a, count: 1 << 20)
        let t0 = monotonicNanos()
        var lastSync = t0
        var written = 0
        while written < bytes {
            let n = chunk.withUnsafeBytes { pwrite(fd, $0.baseAddress, min($0.count, bytes - written), off_t(written)) }
            guard n > 0 else { throw CLIError.runtime("cannot write \(path): \(String(cString: strerror(errno)))") }
            written += n
            let now = monotonicNanos()
            if now - lastSync >= 50_000_000 {
                fdatasync(fd)
                lastSync = now
            }
        }
        fdatasync(fd)
        return Double(bytes) / (Double(monotonicNanos() - t0) / 1e9) / 1e6
    }

    /// Latency of appending 256 bytes and fdatasync-ing, the machine's floor for `always`.
    private func syncLatency(_ path: String) throws -> (p50: Double, p99: Double) {
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw CLIError.runtime("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd); unlink(path) }
        var lat: [Double] = []
        let small = [UInt8](repeating: 0x33, count: 256)
        var pos = 0
        for _ in 0..<max(200, alwaysRecords) {
            let s = monotonicNanos()
            _ = small.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(pos)) }
            fdatasync(fd)
            lat.append(Double(monotonicNanos() - s) / 1e9)
            pos += small.count
        }
        lat.sort()
        return (percentile(lat, 0.5), percentile(lat, 0.99))
    }
}

func percentile(_ sorted: [Double], _ q: Double) -> Double {
    guard !sorted.isEmpty else { return 0 }
    let i = min(sorted.count - 1, Int((Double(sorted.count) * q).rounded(.up)) - 1)
    return sorted[max(0, i)]
}
