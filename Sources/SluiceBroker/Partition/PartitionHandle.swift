// PartitionHandle: one partition as the broker serves it — its log, the producer state that
// dedupes and fences, the transaction view behind `read_committed`, and the long-poll
// notifier. Thread-safe: appends serialize on `appendState`; readers take `view` briefly.
import Logging
import SluiceLog
import Synchronization

public enum IsolationLevel: String, Sendable, CaseIterable {
    case readUncommitted = "read_uncommitted"
    case readCommitted = "read_committed"
}

/// The answer to a fetch: whole batches, the partition's marks, and (for `read_committed`)
/// the aborted transactions the batches may contain.
public struct FetchedData: Sendable {
    public let topicPartition: TopicPartition
    public let result: LogReadResult
    public let highWatermark: Int64
    public let lastStableOffset: Int64
    public let logStartOffset: Int64
    public let abortedTransactions: [AbortedTransaction]
    public let isolation: IsolationLevel

    package init(topicPartition: TopicPartition, result: LogReadResult, highWatermark: Int64, lastStableOffset: Int64, logStartOffset: Int64,
                 abortedTransactions: [AbortedTransaction], isolation: IsolationLevel) {
        self.topicPartition = topicPartition
        self.result = result
        self.highWatermark = highWatermark
        self.lastStableOffset = lastStableOffset
        self.logStartOffset = logStartOffset
        self.abortedTransactions = abortedTransactions
        self.isolation = isolation
    }

    public var isEmpty: Bool { result.isEmpty }
    /// The offset to fetch next.
    public var nextOffset: Int64 { result.nextOffset }

    /// Calls `body` for each record at or after `offset` that this isolation level may see:
    /// control records are skipped, and under `read_committed` so are aborted transactions.
    public func forEachRecord(from offset: Int64, _ body: (RecordView) throws -> Void) throws {
        let aborted = abortedTransactions
        try result.forEachBatch { batch in
            let h = batch.header
            if h.isControl || h.lastOffset < offset { return }
            if isolation == .readCommitted && h.isTransactional && !aborted.isEmpty
                && aborted.contains(where: { $0.producerId == h.producerId && h.baseOffset >= $0.firstOffset && h.baseOffset <= $0.lastOffset }) {
                return
            }
            try batch.forEachRecord { r in
                if r.offset >= offset { try body(r) }
            }
        }
    }
}

public final class PartitionHandle: Sendable {
    public let topicPartition: TopicPartition
    public let log: PartitionLog
    let logger: Logger
    private let appendState: Mutex<ProducerStateTable>
    private let view: Mutex<TransactionView>
    let notifier = AppendNotifier()
    private let listenerToken: UInt64
    /// For read-only handles: how far the log has been scanned for transaction state.
    private let scannedTo: Mutex<Int64>

    init(topicPartition: TopicPartition, log: PartitionLog, logger: Logger) throws {
        self.topicPartition = topicPartition
        self.log = log
        self.logger = logger
        var table = ProducerStateTable()
        var txns = TransactionView()
        let end = Self.scan(log, from: log.logStartOffset, table: &table, txns: &txns)
        appendState = Mutex(table)
        view = Mutex(txns)
        scannedTo = Mutex(end)
        let notifier = self.notifier
        listenerToken = log.addAppendListener { _ in notifier.signal() }
    }

    deinit { log.removeAppendListener(listenerToken) }

    public var highWatermark: Int64 { log.highWatermark }
    public var logStartOffset: Int64 { log.logStartOffset }
    public var lastStableOffset: Int64 {
        let hw = log.highWatermark
        return view.withLock { $0.lastStableOffset(highWatermark: hw) }
    }

    /// Producer ids with an open transaction here, and where each began.
    public var openTransactions: [Int64: Int64] { view.withLock { $0.ongoing } }

    // MARK: Append

    /// Appends a batch built in process; idempotent and transactional batches are checked
    /// against the producer state first. A retried duplicate returns the original offsets.
    @discardableResult
    public func append(_ builder: inout RecordBatchBuilder) throws -> AppendResult {
        if !builder.isSealed { builder.seal() }
        let header = builder.bytes.withUnsafeBytes { BatchHeader($0) }
        return try appendChecked(header) { try log.append(&builder) }
    }

    /// Appends an encoded v2 batch (from the wire), validating it and assigning offsets in place.
    @discardableResult
    public func append(batch: UnsafeMutableRawBufferPointer) throws -> AppendResult {
        guard batch.count >= RecordBatchLayout.headerSize else {
            throw BrokerError(.log, "a batch of \(batch.count) bytes is shorter than a batch header")
        }
        let header = BatchHeader(UnsafeRawBufferPointer(batch))
        return try appendChecked(header) { try log.append(batch: batch, verifyCRC: true) }
    }

    private func appendChecked(_ header: BatchHeader, _ write: () throws -> AppendResult) throws -> AppendResult {
        if header.isControl {
            throw BrokerError(.invalidTransactionState, "control batches are written by the transaction coordinator, not by producers")
        }
        return try appendState.withLock { table -> AppendResult in
            switch table.check(header, partition: topicPartition.description) {
            case .duplicate(let result):
                return result
            case .reject(let error):
                throw error
            case .append:
                let result: AppendResult
                do { result = try write() } catch let e as LogError { throw BrokerError(.log, e.message, cause: e) }
                var h = header
                h.baseOffset = result.baseOffset
                table.record(h, result: result)
                if h.isTransactional { view.withLock { $0.apply(h, controlType: nil) } }
                return result
            }
        }
    }

    /// Writes a commit or abort marker for `producerId`'s transaction here, ending it.
    @discardableResult
    public func writeMarker(_ type: ControlRecordType, producerId: Int64, producerEpoch: Int16, coordinatorEpoch: Int32 = 0) throws -> Int64 {
        var builder = ControlRecord.batch(type, producerId: producerId, producerEpoch: producerEpoch, coordinatorEpoch: coordinatorEpoch, timestamp: currentTimeMillis())
        builder.seal()
        let header = builder.bytes.withUnsafeBytes { BatchHeader($0) }
        return try appendState.withLock { table -> Int64 in
            if case .reject(let error) = table.check(header, partition: topicPartition.description) { throw error }
            let result: AppendResult
            do { result = try log.append(&builder) } catch let e as LogError { throw BrokerError(.log, e.message, cause: e) }
            var h = header
            h.baseOffset = result.baseOffset
            table.record(h, result: result)
            view.withLock { $0.apply(h, controlType: type) }
            return result.baseOffset
        }
    }

    /// Fences every epoch of `producerId` below `epoch` on this partition.
    func fence(producerId: Int64, epoch: Int16) {
        appendState.withLock { $0.bump(producerId, to: epoch) }
    }

    // MARK: Read

    /// Reads from `offset`. Under `read_committed` nothing at or past the last stable offset
    /// is returned, and the aborted transactions in range come along for filtering.
    public func read(from offset: Int64, maxBytes: Int, isolation: IsolationLevel) throws -> FetchedData {
        let hw = log.highWatermark
        let (lso, abortedAll) = view.withLock { v in (v.lastStableOffset(highWatermark: hw), v.aborted.isEmpty ? [] : v.aborted) }
        let limit = isolation == .readCommitted ? lso : hw
        var result: LogReadResult
        do {
            if offset >= limit && offset <= hw && offset >= log.logStartOffset {
                result = LogReadResult(bytes: [], range: 0..<0, highWatermark: hw, logStartOffset: log.logStartOffset, nextOffset: offset)
            } else {
                result = try log.read(from: offset, maxBytes: maxBytes)
            }
        } catch let e as LogError where e.code == .offsetOutOfRange {
            throw BrokerError(.offsetOutOfRange, "offset \(offset) is outside \(topicPartition), which holds offsets \(log.logStartOffset) to \(log.highWatermark)", cause: e)
        } catch let e as LogError {
            throw BrokerError(.log, e.message, cause: e)
        }
        if isolation == .readCommitted { result = result.truncated(before: lso) }
        let aborted = isolation == .readCommitted && !abortedAll.isEmpty
            ? abortedAll.filter { $0.lastOffset >= offset && $0.firstOffset < result.nextOffset } : []
        return FetchedData(topicPartition: topicPartition, result: result, highWatermark: hw, lastStableOffset: lso, logStartOffset: result.logStartOffset, abortedTransactions: aborted, isolation: isolation)
    }

    /// Waits until the partition has data past `offset` for `isolation`, or `timeout` passes.
    public func waitForData(after offset: Int64, isolation: IsolationLevel, timeout: Duration) async {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let ticket = notifier.ticket()
            let visible = isolation == .readCommitted ? lastStableOffset : highWatermark
            if visible > offset { return }
            await notifier.wait(ticket, until: deadline)
        }
    }

    // MARK: Recovery

    /// For a read-only handle following a writer in another process: picks up new batches
    /// and the transaction state they carry.
    public func refresh() throws {
        guard log.isReadOnly else { return }
        do { try log.refresh() } catch let e as LogError { throw BrokerError(.log, e.message, cause: e) }
        let from = scannedTo.withLock { $0 }
        var table = appendState.withLock { $0 }
        var txns = view.withLock { $0 }
        let end = Self.scan(log, from: from, table: &table, txns: &txns)
        appendState.withLock { $0 = table }
        view.withLock { $0 = txns }
        scannedTo.withLock { $0 = end }
    }

    /// Replays batch headers from `from` to the end of the log into producer and transaction
    /// state; returns where it stopped.
    private static func scan(_ log: PartitionLog, from start: Int64, table: inout ProducerStateTable, txns: inout TransactionView) -> Int64 {
        var offset = start
        let end = log.highWatermark
        while offset < end {
            let r: LogReadResult
            do { r = try log.read(from: offset, maxBytes: 8 << 20) } catch { break }
            if r.isEmpty { break }
            r.forEachBatch { batch in
                let h = batch.header
                guard h.producerId >= 0, h.lastOffset >= start else { return }
                table.record(h, result: AppendResult(baseOffset: h.baseOffset, lastOffset: h.lastOffset, recordCount: Int(h.recordCount)))
                if h.isTransactional { txns.apply(h, controlType: h.isControl ? ControlRecord.type(of: batch) : nil) }
            }
            offset = r.nextOffset
        }
        return offset
    }
}


extension PartitionHandle {
    /// A handle over a log opened read-only (for readers in another process than the writer).
    public static func readOnly(topics: TopicManager, _ tp: TopicPartition) throws -> PartitionHandle {
        try PartitionHandle(topicPartition: tp, log: topics.partitionLog(tp.topic, tp.partition), logger: Logger(label: "sluice.read"))
    }
}

extension FetchedData {
    /// The same partition's answer without records, for a read at `offset` whose batches did
    /// not fit the response they were read for.
    public init(emptyAt offset: Int64, like d: FetchedData) {
        self.init(topicPartition: d.topicPartition,
                  result: .empty(at: offset, highWatermark: d.result.highWatermark, logStartOffset: d.result.logStartOffset),
                  highWatermark: d.highWatermark, lastStableOffset: d.lastStableOffset, logStartOffset: d.logStartOffset,
                  abortedTransactions: [], isolation: d.isolation)
    }
}
