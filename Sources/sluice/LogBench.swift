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
    @Option(name: .customLong("disk-mib"), help: "MiB written for the raw sequential-write baseline.") var diskMiB: Int = 512

    func validate() throws {
        if records < batchSize || batchSize < 1 || valueSize < 1 || singleRecords < 1 || alwaysRecords < 1 || diskMiB < 1 {
            throw ValidationError("record counts, --batch-size, --value-size and --disk-mib must be positive, and --records at least --batch-size")
        }
    }

    func run() throws {
        LoggingBootstrap.once(level: .warning)
        let base = dir ?? ((ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp") + "/sluice-bench-\(getpid())")
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: base) }
        #if DEBUG
        print("note: this is a debug build; build with -c release for real figures")
        #endif
        print("sluice bench log: \(records) records of \(valueSize)-byte values, batches of \(batchSize), scratch \(base)")
        print("crc32c: \(CRC32C.usesHardware ? "hardware" : "portable tables")")

        let disk = try diskBaseline(base + "/disk")
        print(String(format: "machine  sequential write %.0f MB/s (%d MiB, 1 MiB writes + fdatasync); fdatasync of a 4 KiB append p50 %.3f ms, p99 %.3f ms",
                     disk.mbPerSecond, diskMiB, disk.syncP50 * 1000, disk.syncP99 * 1000))

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
        report("batched append (flush interval 50ms, incl. final sync)", records: written, seconds: seconds, bytes: bytesWritten,
               extra: String(format: "%.2f× the disk's sequential write", appendMBps / disk.mbPerSecond))

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
                             percentile(latencies, 0.50) * 1000, percentile(latencies, 0.99) * 1000, disk.syncP50 * 1000, disk.syncP99 * 1000))
        synced.close()
    }

    private func report(_ name: String, records: Int, seconds: Double, bytes: Int, extra: String?) {
        var line = String(format: "%@: %.0f records/s, %.1f MB/s (%d records in %.2f s)", name, Double(records) / seconds, Double(bytes) / seconds / 1e6, records, seconds)
        if let extra { line += "; " + extra }
        print(line)
    }

    struct Disk {
        var mbPerSecond: Double
        var syncP50: Double
        var syncP99: Double
    }

    /// The machine's own limits: 1 MiB sequential writes then fdatasync, and fdatasync after
    /// each 4 KiB append.
    private func diskBaseline(_ path: String) throws -> Disk {
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw CLIError.runtime("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd); unlink(path) }
        let chunk = [UInt8](repeating: 0x5a, count: 1 << 20)
        let t0 = monotonicNanos()
        for i in 0..<diskMiB {
            let n = chunk.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(i << 20)) }
            guard n == chunk.count else { throw CLIError.runtime("cannot write \(path): \(String(cString: strerror(errno)))") }
        }
        fdatasync(fd)
        let seconds = Double(monotonicNanos() - t0) / 1e9
        let mbps = Double(diskMiB << 20) / seconds / 1e6
        var lat: [Double] = []
        let small = [UInt8](repeating: 0x33, count: 4096)
        var pos = diskMiB << 20
        for _ in 0..<max(200, alwaysRecords / 2) {
            let s = monotonicNanos()
            _ = small.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(pos)) }
            fdatasync(fd)
            lat.append(Double(monotonicNanos() - s) / 1e9)
            pos += 4096
        }
        lat.sort()
        return Disk(mbPerSecond: mbps, syncP50: percentile(lat, 0.5), syncP99: percentile(lat, 0.99))
    }
}

func percentile(_ sorted: [Double], _ q: Double) -> Double {
    guard !sorted.isEmpty else { return 0 }
    let i = min(sorted.count - 1, Int((Double(sorted.count) * q).rounded(.up)) - 1)
    return sorted[max(0, i)]
}
