// AppendNotifier: wakes long-polling fetches when a partition gets new data. A waiter takes
// a ticket, checks the partition, then waits on the ticket; a signal between the check and
// the wait is not lost because the ticket already counts it. Timeouts come from one shared
// deadline thread, so a wait costs one continuation and no timer task.
import Foundation
import Synchronization

public final class AppendNotifier: Sendable {
    private struct State {
        var generation: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var nextID: UInt64 = 0
    }

    private let state = Mutex(State())

    public struct Ticket: Sendable { let generation: UInt64 }

    public init() {}

    public func ticket() -> Ticket { Ticket(generation: state.withLock { $0.generation }) }

    /// Wakes everyone waiting.
    public func signal() {
        let toWake = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.generation &+= 1
            if s.waiters.isEmpty { return [] }
            defer { s.waiters.removeAll(keepingCapacity: true) }
            return Array(s.waiters.values)
        }
        for c in toWake { c.resume() }
    }

    private func resume(_ id: UInt64) {
        let c = state.withLock { $0.waiters.removeValue(forKey: id) }
        c?.resume()
    }

    /// Returns at the first signal after `ticket` was taken, at `deadline`, or on cancellation.
    public func wait(_ ticket: Ticket, until deadline: ContinuousClock.Instant) async {
        let id = state.withLock { s -> UInt64 in s.nextID &+= 1; return s.nextID }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { s -> Bool in
                    // Cancelled before the waiter was stored: onCancel found nothing to resume.
                    if s.generation != ticket.generation || ContinuousClock.now >= deadline || Task.isCancelled { return true }
                    s.waiters[id] = c
                    return false
                }
                if resumeNow {
                    c.resume()
                } else {
                    DeadlineScheduler.shared.schedule(deadline) { [weak self] in self?.resume(id) }
                }
            }
        } onCancel: {
            resume(id)
        }
    }
}

/// One background thread that runs callbacks at their deadlines (about 1 ms resolution).
final class DeadlineScheduler: Sendable {
    static let shared = DeadlineScheduler()

    private struct Entry {
        var deadline: ContinuousClock.Instant
        var action: @Sendable () -> Void
    }

    private let heap = Mutex<[Entry]>([])
    private let started = Mutex(false)

    func schedule(_ deadline: ContinuousClock.Instant, _ action: @escaping @Sendable () -> Void) {
        heap.withLock { h in
            h.append(Entry(deadline: deadline, action: action))
            var i = h.count - 1
            while i > 0 {
                let parent = (i - 1) / 2
                if h[parent].deadline <= h[i].deadline { break }
                h.swapAt(parent, i)
                i = parent
            }
        }
        let start = started.withLock { s -> Bool in defer { s = true }; return !s }
        if start {
            let thread = Thread { [self] in self.run() }
            thread.name = "sluice-deadlines"
            thread.start()
        }
    }

    private func popDue(_ now: ContinuousClock.Instant) -> [@Sendable () -> Void] {
        heap.withLock { h in
            var due: [@Sendable () -> Void] = []
            while let first = h.first, first.deadline <= now {
                due.append(first.action)
                let last = h.removeLast()
                if h.isEmpty { break }
                h[0] = last
                var i = 0
                while true {
                    let l = 2 * i + 1, r = l + 1
                    var m = i
                    if l < h.count && h[l].deadline < h[m].deadline { m = l }
                    if r < h.count && h[r].deadline < h[m].deadline { m = r }
                    if m == i { break }
                    h.swapAt(i, m)
                    i = m
                }
            }
            return due
        }
    }

    private func run() {
        while true {
            for action in popDue(ContinuousClock.now) { action() }
            usleep(1000)
        }
    }
}
