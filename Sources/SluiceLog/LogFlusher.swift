// LogFlusher: one background thread that group-commits every log whose policy is
// `interval`, each at its own period. Thread-safe.
import Foundation
import Synchronization

public final class LogFlusher: Sendable {
    public static let shared = LogFlusher()

    private struct Weak: @unchecked Sendable {
        // Read only on the flusher thread and under the mutex.
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
            thread.name = "sluice-flusher"
            thread.start()
        }
    }

    func unregister(_ log: PartitionLog) {
        _ = logs.withLock { $0.removeValue(forKey: ObjectIdentifier(log)) }
    }

    private func run() {
        while true {
            let current = logs.withLock { table -> [PartitionLog] in
                table = table.filter { $0.value.log != nil }
                return table.values.compactMap(\.log)
            }
            var tickMs: Int64 = 50
            let now = monotonicNanos()
            for log in current {
                if case .interval(let ms) = log.config.flush { tickMs = min(tickMs, max(1, ms)) }
                log.flushIfDue(nowNanos: now)
            }
            usleep(useconds_t(max(1, tickMs / 2) * 1000))
        }
    }
}
