// LogMaintenance: one background thread for every writable log in the process. It
// group-commits logs whose policy is `interval`, each at its own period, and applies
// retention to every log every `retentionCheckInterval` (Kafka's
// log.retention.check.interval.ms, 5 minutes). Thread-safe.
import Foundation
import Synchronization

public final class LogMaintenance: Sendable {
    public static let shared = LogMaintenance()

    /// How often retention runs, in milliseconds.
    public static let retentionCheckIntervalMs: UInt64 = 300_000

    private struct Weak: @unchecked Sendable {
        // Read only under the mutex; the log itself is Sendable.
        weak var log: PartitionLog?
    }

    private let logs = Mutex<[ObjectIdentifier: Weak]>([:])
    private let started = Mutex(false)

    func register(_ log: PartitionLog) {
        logs.withLock { $0[ObjectIdentifier(log)] = Weak(log: log) }
        let start = started.withLock { s -> Bool in
            defer { s = true }
            return !s
        }
        if start {
            let thread = Thread { [self] in self.run() }
            thread.name = "sluice-log-maintenance"
            thread.start()
        }
    }

    func unregister(_ log: PartitionLog) {
        _ = logs.withLock { $0.removeValue(forKey: ObjectIdentifier(log)) }
    }

    private func run() {
        var lastRetention = monotonicNanos()
        while true {
            let current = logs.withLock { table -> [PartitionLog] in
                table = table.filter { $0.value.log != nil }
                return table.values.compactMap(\.log)
            }
            var tickMs: Int64 = 50
            let now = monotonicNanos()
            for log in current {
                if case .interval(let ms) = log.config.flush {
                    tickMs = min(tickMs, max(1, ms))
                    log.flushIfDue(nowNanos: now)
                }
            }
            if now &- lastRetention >= Self.retentionCheckIntervalMs * 1_000_000 {
                lastRetention = now
                for log in current {
                    do { try log.applyRetention() } catch { log.logger.warning("retention of \(log.directory) failed: \(error)") }
                }
            }
            usleep(useconds_t(max(1, tickMs / 2) * 1000))
        }
    }
}
