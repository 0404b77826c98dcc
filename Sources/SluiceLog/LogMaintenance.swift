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

    /// The registered logs, and a generation bumped on every change so the thread rebuilds its
    /// own list only then (not on every tick: with thousands of partitions that copy was most
    /// of an idle broker's CPU).
    private struct Registry {
        var table: [ObjectIdentifier: Weak] = [:]
        var generation: UInt64 = 0
    }

    private let logs = Mutex(Registry())
    private let started = Mutex(false)

    func register(_ log: PartitionLog) {
        logs.withLock {
            $0.table[ObjectIdentifier(log)] = Weak(log: log)
            $0.generation &+= 1
        }
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
        logs.withLock {
            if $0.table.removeValue(forKey: ObjectIdentifier(log)) != nil { $0.generation &+= 1 }
        }
    }

    private func run() {
        var lastRetention = monotonicNanos()
        // This thread's copy of the registry: every log, and those with an `interval` policy.
        var seen = UInt64.max
        var all: [Weak] = []
        var interval: [Weak] = []
        var tickMs: Int64 = 50
        while true {
            let changed = logs.withLock { registry -> Bool in
                guard registry.generation != seen else { return false }
                registry.table = registry.table.filter { $0.value.log != nil }
                seen = registry.generation
                all = Array(registry.table.values)
                return true
            }
            if changed {
                interval = all.filter { w in
                    guard let log = w.log, case .interval = log.config.flush else { return false }
                    return true
                }
                tickMs = interval.reduce(Int64(50)) { t, w in
                    guard let log = w.log, case .interval(let ms) = log.config.flush else { return t }
                    return min(t, max(1, ms))
                }
            }
            let now = monotonicNanos()
            for w in interval { w.log?.flushIfDue(nowNanos: now) }
            if now &- lastRetention >= Self.retentionCheckIntervalMs * 1_000_000 {
                lastRetention = now
                for w in all {
                    guard let log = w.log else { continue }
                    do { try log.applyRetention() } catch { log.logger.warning("retention of \(log.directory) failed: \(error)") }
                }
            }
            usleep(useconds_t(max(1, tickMs / 2) * 1000))
        }
    }
}
