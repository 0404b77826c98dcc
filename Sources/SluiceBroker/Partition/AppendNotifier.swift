// AppendNotifier: wakes long-polling fetches when a partition gets new data. A waiter takes
// a ticket, checks the partition, then waits on the ticket; a signal between the check and
// the wait is not lost because the ticket already counts it.
import Synchronization

final class AppendNotifier: Sendable {
    private struct State {
        var generation: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var nextID: UInt64 = 0
    }

    private let state = Mutex(State())

    struct Ticket { let generation: UInt64 }

    func ticket() -> Ticket { Ticket(generation: state.withLock { $0.generation }) }

    /// Wakes everyone waiting.
    func signal() {
        let toWake = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.generation &+= 1
            if s.waiters.isEmpty { return [] }
            defer { s.waiters.removeAll() }
            return Array(s.waiters.values)
        }
        for c in toWake { c.resume() }
    }

    /// Returns at the first signal after `ticket` was taken, at `deadline`, or on cancellation.
    func wait(_ ticket: Ticket, until deadline: ContinuousClock.Instant) async {
        await withTaskGroup(of: Void.self) { group in
            let id = state.withLock { s -> UInt64 in s.nextID &+= 1; return s.nextID }
            group.addTask { [self] in
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                        let resumeNow = state.withLock { s -> Bool in
                            if s.generation != ticket.generation || Task.isCancelled { return true }
                            s.waiters[id] = c
                            return false
                        }
                        if resumeNow { c.resume() }
                    }
                } onCancel: {
                    let c = state.withLock { $0.waiters.removeValue(forKey: id) }
                    c?.resume()
                }
            }
            group.addTask {
                try? await Task.sleep(until: deadline, clock: .continuous)
            }
            await group.next()
            group.cancelAll()
        }
    }
}
