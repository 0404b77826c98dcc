// SharePartitionState: the records of one share-partition (a share group's view of one topic
// partition) that are in flight, as Kafka's share groups (KIP-932) keep them. Offsets below
// `startOffset` are done; from there to `endOffset` each record is available, acquired by a
// member until a deadline, acknowledged or archived, with the number of times it was handed
// out. A pure value: every change takes `now` and reports what must happen outside it (records
// to dead-letter), so the rules are tested without clocks or sleeps.

/// The state of a record in flight (Kafka's numbering, as stored in its share state).
public enum ShareRecordState: UInt8, Sendable, CustomStringConvertible {
    case available = 0
    case acquired = 1
    case acknowledged = 2
    case archived = 4

    public var description: String {
        switch self {
        case .available: "available"
        case .acquired: "acquired"
        case .acknowledged: "acknowledged"
        case .archived: "archived"
        }
    }
}

/// How a member settles a record it acquired (Kafka's AcknowledgeType numbers).
public enum AcknowledgeType: Int8, Sendable, CaseIterable, CustomStringConvertible {
    /// No record at this offset (a control record or a compacted one): archived.
    case gap = 0
    /// Processed: acknowledged, never delivered again.
    case accept = 1
    /// Not processed: available again (archived when it has been delivered the maximum times).
    case release = 2
    /// Unprocessable: archived (and dead-lettered where the group names a topic for it).
    case reject = 3

    public var description: String {
        switch self {
        case .gap: "gap"
        case .accept: "accept"
        case .release: "release"
        case .reject: "reject"
        }
    }
}

/// Records a member acquired: offsets `first...last`, each handed out `deliveryCount` times.
public struct AcquiredRange: Sendable, Hashable {
    public var first: Int64
    public var last: Int64
    public var deliveryCount: Int16
    public init(first: Int64, last: Int64, deliveryCount: Int16) {
        self.first = first
        self.last = last
        self.deliveryCount = deliveryCount
    }
    public var count: Int { Int(last - first + 1) }
}

/// One acknowledgement: offsets `first...last` settled with `type`.
public struct AcknowledgementBatch: Sendable, Hashable {
    public var first: Int64
    public var last: Int64
    public var type: AcknowledgeType
    public init(first: Int64, last: Int64, type: AcknowledgeType) {
        self.first = first
        self.last = last
        self.type = type
    }
}

/// A record archived because it was rejected or delivered too often: the share coordinator
/// copies it to the group's dead-letter topic.
public struct DeadLetter: Sendable, Hashable {
    public enum Reason: String, Sendable {
        case rejected
        case deliveryLimit = "delivery-limit"
    }
    public var offset: Int64
    public var deliveryCount: Int16
    public var reason: Reason
    public init(offset: Int64, deliveryCount: Int16, reason: Reason) {
        self.offset = offset
        self.deliveryCount = deliveryCount
        self.reason = reason
    }
}

/// Limits that shape acquisition, from the group's settings.
public struct ShareLimits: Sendable, Hashable {
    public var lockMs: Int64
    public var maxDeliveries: Int
    public var maxInFlight: Int
    public init(lockMs: Int64, maxDeliveries: Int, maxInFlight: Int) {
        self.lockMs = lockMs
        self.maxDeliveries = maxDeliveries
        self.maxInFlight = maxInFlight
    }
}

/// Why an acknowledgement was refused (Kafka's INVALID_RECORD_STATE or INVALID_REQUEST).
public struct ShareStateError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable { case invalidRecordState, invalidRequest }
    public var kind: Kind
    public var message: String
    public var description: String { message }
}

public struct SharePartitionState: Sendable {
    /// The first offset still tracked (Kafka's SPSO); everything below it is settled.
    public private(set) var startOffset: Int64
    // Offset startOffset + i lives at index head + i.
    private var head = 0
    private var states: [UInt8] = []
    private var counts: [UInt16] = []
    private var owners: [Int32] = []
    private var deadlines: [Int64] = []
    private var availableCount = 0
    private var acquiredCount = 0
    private var earliestDeadline = Int64.max

    public init(startOffset: Int64) { self.startOffset = startOffset }

    /// One past the last offset in flight (Kafka's SPEO + 1).
    public var endOffset: Int64 { startOffset + Int64(states.count - head) }
    public var inFlight: Int { states.count - head }
    public var acquired: Int { acquiredCount }
    public var available: Int { availableCount }

    public func state(at offset: Int64) -> (state: ShareRecordState, deliveryCount: Int, owner: Int32)? {
        guard offset >= startOffset && offset < endOffset else { return nil }
        let i = head + Int(offset - startOffset)
        return (ShareRecordState(rawValue: states[i])!, Int(counts[i]), owners[i])
    }

    /// True when an acquisition could hand something out: released or expired records in the
    /// window, or records past it (up to `logEnd`) while the window has room.
    public func canAcquire(logEnd: Int64, limits: ShareLimits) -> Bool {
        availableCount > 0 || (endOffset < logEnd && inFlight < limits.maxInFlight)
    }

    /// Acquires up to `maxRecords` for `member` until `now + lockMs`: first records that became
    /// available again (oldest first), then new ones up to `logEnd` while fewer than
    /// `maxInFlight` are in flight. A record on its last allowed delivery is handed out alone,
    /// so a poison record cannot take a batch down with it. Records found at the delivery limit
    /// (after a restart) are archived into `deadLetters`.
    public mutating func acquire(member: Int32, maxRecords: Int, logEnd: Int64, now: Int64, limits: ShareLimits, deadLetters: inout [DeadLetter]) -> [AcquiredRange] {
        var out: [AcquiredRange] = []
        var taken = 0
        let deadline = now + limits.lockMs
        let maxCount = limits.maxDeliveries
        if availableCount > 0 {
            var i = head
            while i < states.count && taken < maxRecords && availableCount > 0 {
                defer { i += 1 }
                guard states[i] == ShareRecordState.available.rawValue else { continue }
                let previous = Int(counts[i])
                let offset = startOffset + Int64(i - head)
                if previous >= maxCount {
                    states[i] = ShareRecordState.archived.rawValue
                    availableCount -= 1
                    deadLetters.append(DeadLetter(offset: offset, deliveryCount: Int16(clamping: previous), reason: .deliveryLimit))
                    continue
                }
                let last = previous > 0 && previous + 1 >= maxCount
                if last && taken > 0 { break }
                take(i, member: member, deadline: deadline)
                Self.add(offset, count: Int16(clamping: previous + 1), to: &out)
                taken += 1
                if last {
                    advance()
                    return out
                }
            }
        }
        while taken < maxRecords && endOffset < logEnd && inFlight < limits.maxInFlight {
            let offset = endOffset
            states.append(ShareRecordState.acquired.rawValue)
            counts.append(1)
            owners.append(member)
            deadlines.append(deadline)
            acquiredCount += 1
            earliestDeadline = min(earliestDeadline, deadline)
            Self.add(offset, count: 1, to: &out)
            taken += 1
        }
        advance()
        return out
    }

    private mutating func take(_ i: Int, member: Int32, deadline: Int64) {
        states[i] = ShareRecordState.acquired.rawValue
        counts[i] &+= 1
        owners[i] = member
        deadlines[i] = deadline
        availableCount -= 1
        acquiredCount += 1
        earliestDeadline = min(earliestDeadline, deadline)
    }

    private static func add(_ offset: Int64, count: Int16, to out: inout [AcquiredRange]) {
        if let last = out.last, last.last + 1 == offset && last.deliveryCount == count {
            out[out.count - 1].last = offset
        } else {
            out.append(AcquiredRange(first: offset, last: offset, deliveryCount: count))
        }
    }

    /// Checks batches as Kafka does (ascending, first ≤ last) and that `member` holds every
    /// offset they name; nothing changes unless all of them pass.
    public func validate(_ batches: [AcknowledgementBatch], member: Int32) throws(ShareStateError) {
        var previousLast = Int64.min
        for b in batches {
            guard b.first <= b.last else {
                throw ShareStateError(kind: .invalidRequest, message: "acknowledgement batch \(b.first)...\(b.last) ends before it starts")
            }
            guard b.first > previousLast else {
                throw ShareStateError(kind: .invalidRequest, message: "acknowledgement batch \(b.first)...\(b.last) overlaps or precedes the batch before it")
            }
            previousLast = b.last
            guard b.first >= startOffset && b.last < endOffset else {
                throw ShareStateError(kind: .invalidRecordState, message: "offsets \(b.first)...\(b.last) are not all in flight (in flight: \(startOffset)..<\(endOffset))")
            }
            var i = head + Int(b.first - startOffset)
            let end = head + Int(b.last - startOffset)
            while i <= end {
                guard states[i] == ShareRecordState.acquired.rawValue else {
                    throw ShareStateError(kind: .invalidRecordState, message: "offset \(startOffset + Int64(i - head)) is \(ShareRecordState(rawValue: states[i])!), not acquired")
                }
                guard owners[i] == member else {
                    throw ShareStateError(kind: .invalidRecordState, message: "offset \(startOffset + Int64(i - head)) is acquired by another member")
                }
                i += 1
            }
        }
    }

    /// Applies `batches` from `member` after checking them all (see `validate`). Rejected
    /// records, and released ones that reached the delivery limit, go to `deadLetters` (gaps
    /// are archived without one).
    public mutating func acknowledge(_ batches: [AcknowledgementBatch], member: Int32, limits: ShareLimits, deadLetters: inout [DeadLetter]) throws(ShareStateError) {
        try validate(batches, member: member)
        for b in batches {
            var i = head + Int(b.first - startOffset)
            let end = head + Int(b.last - startOffset)
            while i <= end {
                settle(i, b.type, limits: limits, deadLetters: &deadLetters)
                i += 1
            }
        }
        advance()
    }

    private mutating func settle(_ i: Int, _ type: AcknowledgeType, limits: ShareLimits, deadLetters: inout [DeadLetter]) {
        acquiredCount -= 1
        owners[i] = -1
        switch type {
        case .accept:
            states[i] = ShareRecordState.acknowledged.rawValue
        case .gap:
            states[i] = ShareRecordState.archived.rawValue
        case .reject:
            states[i] = ShareRecordState.archived.rawValue
            deadLetters.append(DeadLetter(offset: startOffset + Int64(i - head), deliveryCount: Int16(clamping: Int(counts[i])), reason: .rejected))
        case .release:
            if Int(counts[i]) >= limits.maxDeliveries {
                states[i] = ShareRecordState.archived.rawValue
                deadLetters.append(DeadLetter(offset: startOffset + Int64(i - head), deliveryCount: Int16(clamping: Int(counts[i])), reason: .deliveryLimit))
            } else {
                states[i] = ShareRecordState.available.rawValue
                availableCount += 1
            }
        }
    }

    /// Releases records whose lock ran out by `now`. Returns how many were released or archived.
    @discardableResult
    public mutating func expireLocks(now: Int64, limits: ShareLimits, deadLetters: inout [DeadLetter]) -> Int {
        guard now >= earliestDeadline else { return 0 }
        var n = 0
        var next = Int64.max
        for i in head..<states.count where states[i] == ShareRecordState.acquired.rawValue {
            if deadlines[i] <= now {
                settle(i, .release, limits: limits, deadLetters: &deadLetters)
                n += 1
            } else {
                next = min(next, deadlines[i])
            }
        }
        earliestDeadline = next
        advance()
        return n
    }

    /// Releases every record `member` holds (its session closed or it left the group).
    @discardableResult
    public mutating func release(member: Int32, limits: ShareLimits, deadLetters: inout [DeadLetter]) -> Int {
        guard acquiredCount > 0 else { return 0 }
        var n = 0
        for i in head..<states.count where states[i] == ShareRecordState.acquired.rawValue && owners[i] == member {
            settle(i, .release, limits: limits, deadLetters: &deadLetters)
            n += 1
        }
        advance()
        return n
    }

    /// How many records `member` holds.
    public func held(by member: Int32) -> Int {
        guard acquiredCount > 0 else { return 0 }
        var n = 0
        for i in head..<states.count where states[i] == ShareRecordState.acquired.rawValue && owners[i] == member { n += 1 }
        return n
    }

    /// Moves the start past records the log no longer has (retention deleted them).
    public mutating func truncate(before logStart: Int64) {
        guard logStart > startOffset else { return }
        while head < states.count && startOffset < logStart {
            drop(head)
            head += 1
            startOffset += 1
        }
        if head == states.count { startOffset = max(startOffset, logStart) }
        compact()
    }

    private mutating func drop(_ i: Int) {
        if states[i] == ShareRecordState.available.rawValue { availableCount -= 1 }
        if states[i] == ShareRecordState.acquired.rawValue { acquiredCount -= 1 }
    }

    /// Moves the start over settled records at the front.
    private mutating func advance() {
        while head < states.count && (states[head] == ShareRecordState.acknowledged.rawValue || states[head] == ShareRecordState.archived.rawValue) {
            head += 1
            startOffset += 1
        }
        compact()
    }

    private mutating func compact() {
        if head == states.count {
            if head > 0 {
                states.removeAll(keepingCapacity: true)
                counts.removeAll(keepingCapacity: true)
                owners.removeAll(keepingCapacity: true)
                deadlines.removeAll(keepingCapacity: true)
                head = 0
            }
        } else if head >= 4096 && head * 2 >= states.count {
            states.removeFirst(head)
            counts.removeFirst(head)
            owners.removeFirst(head)
            deadlines.removeFirst(head)
            head = 0
        }
    }

    // MARK: Durable form

    /// The durable part: the start and runs of records that are settled, held or were delivered
    /// before. Held records keep their owner for inspection only: restoring makes them
    /// available with their delivery count (Kafka never persists Acquired), so after a restart
    /// they are handed out again and acknowledged ones never are.
    public struct Snapshot: Sendable, Hashable {
        public struct Run: Sendable, Hashable {
            public var first: Int64
            public var last: Int64
            public var state: ShareRecordState
            public var deliveryCount: Int16
            /// The holder of acquired records (-1 otherwise).
            public var owner: Int32 = -1
        }
        public var startOffset: Int64
        public var runs: [Run]
    }

    public var snapshot: Snapshot {
        var runs: [Snapshot.Run] = []
        var i = head
        while i < states.count {
            let state = ShareRecordState(rawValue: states[i])!
            let owner = state == .acquired ? owners[i] : -1
            let count = Int16(clamping: Int(counts[i]))
            let offset = startOffset + Int64(i - head)
            i += 1
            if state == .available && count == 0 { continue }
            if let last = runs.last, last.last + 1 == offset, last.state == state, last.deliveryCount == count, last.owner == owner {
                runs[runs.count - 1].last = offset
            } else {
                runs.append(Snapshot.Run(first: offset, last: offset, state: state, deliveryCount: count, owner: owner))
            }
        }
        return Snapshot(startOffset: startOffset, runs: runs)
    }

    public init(restoring s: Snapshot) {
        startOffset = s.startOffset
        guard let end = s.runs.last?.last, end >= s.startOffset else { return }
        let n = Int(end - s.startOffset + 1)
        states = [UInt8](repeating: ShareRecordState.available.rawValue, count: n)
        counts = [UInt16](repeating: 0, count: n)
        owners = [Int32](repeating: -1, count: n)
        deadlines = [Int64](repeating: 0, count: n)
        for run in s.runs where run.last >= s.startOffset {
            for offset in max(run.first, s.startOffset)...run.last {
                let i = Int(offset - s.startOffset)
                states[i] = (run.state == .acquired ? ShareRecordState.available : run.state).rawValue
                counts[i] = UInt16(clamping: Int(run.deliveryCount))
            }
        }
        availableCount = states.reduce(0) { $0 + ($1 == ShareRecordState.available.rawValue ? 1 : 0) }
        advance()
    }
}
