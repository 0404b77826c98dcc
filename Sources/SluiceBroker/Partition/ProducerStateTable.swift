// Per-partition producer state: the sequence numbers that make idempotent producers
// exactly-once, epochs that fence old instances, and each producer's open transaction.
// A value type; PartitionHandle guards it and acts on its decisions.
import SluiceLog

struct ProducerStateTable: Sendable {
    struct CachedBatch: Sendable, Hashable {
        var firstSequence: Int32
        var lastSequence: Int32
        var result: AppendResult
    }

    struct Entry: Sendable {
        var epoch: Int16
        var lastSequence: Int32 = -1
        /// The last five batches, so a retry of any in-flight batch is recognised (Kafka keeps five).
        var recent: [CachedBatch] = []
    }

    enum Decision: Sendable {
        case append
        case duplicate(AppendResult)
        case reject(BrokerError)
    }

    private(set) var producers: [Int64: Entry] = [:]

    /// What to do with a batch whose header is `h`.
    func check(_ h: BatchHeader, partition: String) -> Decision {
        guard h.producerId >= 0 else { return .append }
        guard let entry = producers[h.producerId] else {
            return .append
        }
        if h.producerEpoch < entry.epoch {
            return .reject(BrokerError(.producerFenced, "producer \(h.producerId) with epoch \(h.producerEpoch) was fenced by epoch \(entry.epoch) on \(partition)"))
        }
        if h.isControl || h.baseSequence < 0 { return .append }
        if h.producerEpoch > entry.epoch {
            if h.baseSequence != 0 {
                return .reject(BrokerError(.outOfOrderSequence, "producer \(h.producerId) started epoch \(h.producerEpoch) at sequence \(h.baseSequence) on \(partition); a new epoch starts at 0"))
            }
            return .append
        }
        let last = Self.lastSequence(h)
        if let hit = entry.recent.first(where: { $0.firstSequence == h.baseSequence && $0.lastSequence == last }) {
            return .duplicate(hit.result)
        }
        let expected = entry.lastSequence == Int32.max ? 0 : entry.lastSequence + 1
        if h.baseSequence != expected {
            if entry.recent.contains(where: { h.baseSequence >= $0.firstSequence && h.baseSequence <= $0.lastSequence }) {
                return .reject(BrokerError(.outOfOrderSequence, "producer \(h.producerId) resent sequences \(h.baseSequence)...\(last) on \(partition) as a different batch"))
            }
            return .reject(BrokerError(.outOfOrderSequence, "producer \(h.producerId) sent sequence \(h.baseSequence) on \(partition), expected \(expected): a batch is missing"))
        }
        return .append
    }

    /// Records an appended batch (also used while rebuilding state from the log).
    mutating func record(_ h: BatchHeader, result: AppendResult) {
        guard h.producerId >= 0 else { return }
        var entry = producers[h.producerId] ?? Entry(epoch: h.producerEpoch)
        if h.producerEpoch > entry.epoch {
            entry = Entry(epoch: h.producerEpoch)
        }
        if !h.isControl && h.baseSequence >= 0 {
            let last = Self.lastSequence(h)
            entry.lastSequence = last
            entry.recent.append(CachedBatch(firstSequence: h.baseSequence, lastSequence: last, result: result))
            if entry.recent.count > 5 { entry.recent.removeFirst() }
        }
        producers[h.producerId] = entry
    }

    /// Raises a producer's epoch (a transaction marker or a new instance), fencing older ones.
    mutating func bump(_ producerId: Int64, to epoch: Int16) {
        if let e = producers[producerId], e.epoch >= epoch { return }
        producers[producerId] = Entry(epoch: epoch)
    }

    static func lastSequence(_ h: BatchHeader) -> Int32 {
        let (sum, overflow) = h.baseSequence.addingReportingOverflow(h.lastOffsetDelta)
        return overflow ? sum & Int32.max : sum
    }
}

/// A transaction that ended in an abort: records of `producerId` from `firstOffset` to
/// `lastOffset` (the abort marker) are invisible to `read_committed` consumers.
public struct AbortedTransaction: Sendable, Hashable {
    public var producerId: Int64
    public var firstOffset: Int64
    public var lastOffset: Int64
}

/// What readers need to honour transactions: open transactions (for the last stable offset)
/// and aborted ones.
struct TransactionView: Sendable {
    var ongoing: [Int64: Int64] = [:]  // producer id -> first offset of its open transaction
    var aborted: [AbortedTransaction] = []

    func lastStableOffset(highWatermark: Int64) -> Int64 {
        ongoing.values.min().map { min($0, highWatermark) } ?? highWatermark
    }

    mutating func apply(_ h: BatchHeader, controlType: ControlRecordType?) {
        guard h.producerId >= 0, h.isTransactional else { return }
        if h.isControl {
            let first = ongoing.removeValue(forKey: h.producerId)
            if controlType == .abort, let first {
                aborted.append(AbortedTransaction(producerId: h.producerId, firstOffset: first, lastOffset: h.baseOffset))
            }
        } else if ongoing[h.producerId] == nil {
            ongoing[h.producerId] = h.baseOffset
        }
    }

    /// Aborted transactions that overlap offsets from `from` up to `to`.
    func aborted(from: Int64, to: Int64) -> [AbortedTransaction] {
        aborted.filter { $0.lastOffset >= from && $0.firstOffset < to }
    }

    /// Forgets aborted transactions that retention has removed from the log.
    mutating func dropAborted(before logStart: Int64) {
        aborted.removeAll { $0.lastOffset < logStart }
    }
}
