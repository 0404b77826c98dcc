// PartitionLog: the segmented, durable log of one partition, in `<data>/topics/<topic>/<partition>/`.
//
// Thread-safety: one writer and many readers. Appends (and roll, retention, refresh) serialize
// on `writer`; readers take `state` only to look up where to read, then read with pread
// outside any lock, so a reader never waits for a write or an fsync. A batch becomes visible
// to readers only once it is fully written (and, under `always`, synced).
import Logging
import Synchronization
import Dispatch

/// Where an append landed.
public struct AppendResult: Sendable, Hashable {
    public var baseOffset: Int64
    public var lastOffset: Int64
    public var recordCount: Int

    public init(baseOffset: Int64, lastOffset: Int64, recordCount: Int) {
        self.baseOffset = baseOffset
        self.lastOffset = lastOffset
        self.recordCount = recordCount
    }
}

struct SegmentState: Sendable {
    let segment: LogSegment
    var size: Int
    /// Offset after the segment's last batch (its base offset when empty).
    var nextOffset: Int64
    var maxTimestamp: Int64
    var firstTimestamp: Int64
    var index: OffsetIndex
    var timeIndex: TimeIndex
}

struct SharedState: Sendable {
    var segments: [SegmentState]
    var logStartOffset: Int64
    /// Readable end of the log: the high watermark.
    var endOffset: Int64
    /// Every offset below this is on stable storage.
    var flushedOffset: Int64
    var waiters: [DurabilityWaiter] = []
    var closed = false
    var appendListeners: [UInt64: @Sendable (Int64) -> Void] = [:]
    var nextListenerID: UInt64 = 0
}

struct DurabilityWaiter: Sendable {
    var offset: Int64
    var resume: @Sendable (LogError?) -> Void
}

/// What the appender knows about the active segment (ahead of what readers see).
struct WriterState: Sendable {
    var active: LogSegment
    var position: Int
    var nextOffset: Int64
    var bytesSinceIndex: Int
    var indexEntries: Int
    var timeIndexEntries: Int
    var lastTimeIndexTimestamp: Int64
    var maxTimestamp: Int64
    var lastBatchBase: Int64
    var firstTimestamp: Int64
    /// Wall-clock time the active segment got its first append (or was reopened); rolling
    /// by age counts from here, so records with old timestamps do not force a roll per batch.
    var segmentStartMs: Int64 = -1
    var lastFlushNanos: UInt64 = 0
}

public final class PartitionLog: Sendable {
    public let directory: String
    public let config: LogConfig
    public let isReadOnly: Bool
    /// For a read-only open: why the active segment could not be read to its end when a whole
    /// batch there is damaged (not merely still being written), naming the file and byte. A
    /// writer opening the partition cuts the log there; a reader serves what comes before.
    public let tailDamage: String?
    /// Damage already logged: each sentence is said once per open log, not once per read.
    private let reportedDamage = Mutex<Set<String>>([])

    /// Logs `message` as an error the first time it is seen.
    func reportDamageOnce(_ message: String) {
        let first = reportedDamage.withLock { $0.insert(message).inserted }
        if first { logger.error("\(message)") }
    }
    let logger: Logger
    let writer: Mutex<WriterState>
    let state: Mutex<SharedState>

    init(directory: String, config: LogConfig, readOnly: Bool, logger: Logger, writer: WriterState, state: SharedState, tailDamage: String? = nil) {
        self.tailDamage = tailDamage
        self.directory = directory
        self.config = config
        self.isReadOnly = readOnly
        self.logger = logger
        self.writer = Mutex(writer)
        self.state = Mutex(state)
    }

    // MARK: Offsets

    /// The first offset still in the log (moves forward as retention deletes segments).
    public var logStartOffset: Int64 { state.withLock { $0.logStartOffset } }
    /// The offset the next appended record will get, as readers see it.
    public var logEndOffset: Int64 { state.withLock { $0.endOffset } }
    /// The end of what consumers may read. One replica: the log end offset, which under
    /// `always` only moves once the data is synced.
    public var highWatermark: Int64 { state.withLock { $0.endOffset } }
    /// Offsets below this are durable.
    public var flushedOffset: Int64 { state.withLock { $0.flushedOffset } }
    /// Bytes of `.log` files on disk.
    public var sizeInBytes: Int { state.withLock { $0.segments.reduce(0) { $0 + $1.size } } }
    public var segmentCount: Int { state.withLock { $0.segments.count } }
    /// Base offsets of the segments, oldest first.
    public var segmentBaseOffsets: [Int64] { state.withLock { $0.segments.map(\.segment.baseOffset) } }

    // MARK: Append

    /// Appends a batch built with `RecordBatchBuilder`, sealing it first. Offsets are assigned
    /// here. Under `always` the batch is on stable storage when this returns.
    @discardableResult
    public func append(_ builder: inout RecordBatchBuilder) throws -> AppendResult {
        try builder.withSealedBytes { try append(batch: $0, verifyCRC: false) }
    }

    /// Appends one encoded v2 batch (for example from a Produce request). The bytes are
    /// validated (length, magic, and CRC when `verifyCRC`), and the base offset is written
    /// into them in place.
    @discardableResult
    public func append(batch: UnsafeMutableRawBufferPointer, verifyCRC: Bool = true) throws -> AppendResult {
        if isReadOnly { throw LogError(.readOnly, "the log in \(directory) is open read-only") }
        guard batch.count <= config.maxBatchBytes else {
            throw LogError(.invalidBatch, "a batch of \(batch.count) bytes is larger than the limit of \(config.maxBatchBytes) bytes")
        }
        let header: BatchHeader
        switch RecordBatchCodec.check(UnsafeRawBufferPointer(batch), at: 0, verifyCRC: verifyCRC) {
        case .valid(let h) where h.totalSize == batch.count:
            header = h
        case .valid:
            throw LogError(.invalidBatch, "the batch's length field does not match its \(batch.count) bytes")
        case .incomplete:
            throw LogError(.invalidBatch, "the batch is truncated (\(batch.count) bytes)")
        case .invalid(let reason):
            throw LogError(.invalidBatch, "the batch is invalid: \(reason)")
        }
        let now = currentTimeMillis()
        let result = try writer.withLock { w -> AppendResult in
            try rollIfNeeded(&w, incoming: batch.count, now: now)
            if w.segmentStartMs < 0 { w.segmentStartMs = now }
            return try write(batch, header: header, into: &w)
        }
        notifyAppend(result.lastOffset + 1)
        return result
    }

    private func write(_ batch: UnsafeMutableRawBufferPointer, header: BatchHeader, into w: inout WriterState) throws -> AppendResult {
        let base = w.nextOffset
        batch.storeBE(base, at: RecordBatchLayout.baseOffset)
        let position = w.position
        let segmentBase = w.active.baseOffset
        let relative = UInt32(truncatingIfNeeded: base - segmentBase)
        let maxTs = max(w.maxTimestamp, header.maxTimestamp)

        var indexEntry: OffsetIndex.Entry?
        var timeEntry: TimeIndex.Entry?
        if w.bytesSinceIndex >= config.indexIntervalBytes && position > 0 {
            indexEntry = OffsetIndex.Entry(relativeOffset: relative, position: UInt32(position))
            if maxTs > w.lastTimeIndexTimestamp {
                timeEntry = TimeIndex.Entry(timestamp: maxTs, relativeOffset: relative)
            }
        }
        // Index entries first: if the log write then fails, both files are cut back, and an
        // index entry is never published before the bytes it points at.
        if let e = indexEntry, let file = w.active.index {
            try OffsetIndex.encode(e).withUnsafeBytes { try file.pwriteAll($0, at: w.indexEntries * 8) }
        }
        if let e = timeEntry, let file = w.active.timeIndex {
            try TimeIndex.encode(e).withUnsafeBytes { try file.pwriteAll($0, at: w.timeIndexEntries * 12) }
        }
        do {
            try w.active.log.pwriteAll(UnsafeRawBufferPointer(batch), at: position)
            if config.flush == .always { try w.active.log.sync() }
        } catch {
            undoWrite(w, cutLogAt: position)
            throw error
        }

        let next = base + Int64(header.lastOffsetDelta) + 1
        w.position = position + batch.count
        w.nextOffset = next
        w.maxTimestamp = maxTs
        w.lastBatchBase = base
        if w.firstTimestamp < 0 { w.firstTimestamp = header.baseTimestamp }
        if indexEntry != nil {
            w.indexEntries += 1
            w.bytesSinceIndex = batch.count
        } else {
            w.bytesSinceIndex += batch.count
        }
        if let t = timeEntry {
            w.timeIndexEntries += 1
            w.lastTimeIndexTimestamp = t.timestamp
        }
        let size = w.position
        let first = w.firstTimestamp
        let durable = config.flush == .always
        state.withLock { s in
            let i = s.segments.count - 1
            s.segments[i].size = size
            s.segments[i].nextOffset = next
            s.segments[i].maxTimestamp = maxTs
            s.segments[i].firstTimestamp = first
            if let e = indexEntry { s.segments[i].index.entries.append(e) }
            if let t = timeEntry { s.segments[i].timeIndex.entries.append(t) }
            s.endOffset = next
            if durable { s.flushedOffset = next }
        }
        return AppendResult(baseOffset: base, lastOffset: next - 1, recordCount: Int(header.recordCount))
    }

    /// Cuts the files back after a failed write so no partial batch or dangling index entry
    /// stays behind (a full disk, most often).
    private func undoWrite(_ w: WriterState, cutLogAt position: Int) {
        do {
            try w.active.log.truncate(to: position)
            try w.active.index?.truncate(to: w.indexEntries * 8)
            try w.active.timeIndex?.truncate(to: w.timeIndexEntries * 12)
        } catch {
            logger.error("could not cut \(w.active.logPath) back to byte \(position) after a failed write: \(error); recovery will truncate it on the next open")
        }
    }

    private func rollIfNeeded(_ w: inout WriterState, incoming: Int, now: Int64) throws {
        guard w.position > 0 else { return }
        let full = w.position + incoming > config.segmentBytes
        let old = w.segmentStartMs >= 0 && now - w.segmentStartMs >= config.segmentMs
        if full || old { try roll(&w) }
    }

    /// Closes the active segment (final time-index entry, sync) and starts a new one at the
    /// log end offset.
    func roll(_ w: inout WriterState) throws {
        if w.maxTimestamp > w.lastTimeIndexTimestamp, let file = w.active.timeIndex {
            let entry = TimeIndex.Entry(timestamp: w.maxTimestamp, relativeOffset: UInt32(truncatingIfNeeded: w.lastBatchBase - w.active.baseOffset))
            try TimeIndex.encode(entry).withUnsafeBytes { try file.pwriteAll($0, at: w.timeIndexEntries * 12) }
            w.timeIndexEntries += 1
            w.lastTimeIndexTimestamp = entry.timestamp
            state.withLock { s in s.segments[s.segments.count - 1].timeIndex.entries.append(entry) }
        }
        try w.active.log.sync()
        try w.active.index?.sync()
        try w.active.timeIndex?.sync()
        // The rolled segment's indexes are not written again (reads use their copies in
        // memory): their descriptors go now rather than when the pool next needs room.
        w.active.index?.closeIfIdle()
        w.active.timeIndex?.closeIfIdle()
        let segment = try LogSegment(directory: directory, baseOffset: w.nextOffset, create: true, readOnly: false)
        try FileIO.syncDirectory(directory)
        let next = w.nextOffset
        state.withLock { s in
            s.segments.append(SegmentState(segment: segment, size: 0, nextOffset: next, maxTimestamp: -1, firstTimestamp: -1, index: OffsetIndex(), timeIndex: TimeIndex()))
            s.flushedOffset = max(s.flushedOffset, next)
        }
        logger.debug("rolled \(directory) to a new segment at offset \(next)")
        w = WriterState(active: segment, position: 0, nextOffset: next, bytesSinceIndex: 0, indexEntries: 0, timeIndexEntries: 0, lastTimeIndexTimestamp: -1, maxTimestamp: -1, lastBatchBase: next, firstTimestamp: -1, lastFlushNanos: w.lastFlushNanos)
    }

    // MARK: Durability

    /// Forces everything appended so far to stable storage and wakes waiters it covers.
    public func flush() throws {
        if isReadOnly { return }
        let (segment, target, flushed) = state.withLock { s in (s.segments[s.segments.count - 1].segment, s.endOffset, s.flushedOffset) }
        guard target > flushed else { return }
        do {
            try segment.log.sync()
        } catch let error as LogError {
            failWaiters(error)
            throw error
        }
        let ready = state.withLock { s -> [DurabilityWaiter] in
            s.flushedOffset = max(s.flushedOffset, target)
            let done = s.waiters.filter { $0.offset < s.flushedOffset }
            s.waiters.removeAll { $0.offset < s.flushedOffset }
            return done
        }
        for waiter in ready { waiter.resume(nil) }
    }

    private func failWaiters(_ error: LogError) {
        let all = state.withLock { s -> [DurabilityWaiter] in
            defer { s.waiters.removeAll() }
            return s.waiters
        }
        for waiter in all { waiter.resume(error) }
    }

    /// Called by the flusher: syncs if the policy's interval has passed since the last sync.
    func flushIfDue(nowNanos: UInt64) {
        guard case .interval(let ms) = config.flush else { return }
        let due = writer.withLock { w -> Bool in
            if nowNanos &- w.lastFlushNanos >= UInt64(ms) * 1_000_000 {
                w.lastFlushNanos = nowNanos
                return true
            }
            return false
        }
        guard due else { return }
        do { try flush() } catch { logger.error("background flush of \(directory) failed: \(error)") }
    }

    /// Waits until `offset` is durable under the log's policy: immediately under `always`
    /// (already synced) and `never` (nothing is promised), else until the group commit that
    /// covers it.
    public func waitUntilDurable(_ offset: Int64) async throws {
        guard case .interval = config.flush, !isReadOnly else { return }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            enqueueWaiter(offset) { error in
                if let error { continuation.resume(throwing: error) } else { continuation.resume() }
            }
        }
    }

    /// Blocking form of `waitUntilDurable`, for threads that are not in the async world.
    public func waitUntilDurableBlocking(_ offset: Int64) throws {
        guard case .interval = config.flush, !isReadOnly else { return }
        let box = BlockingResult()
        enqueueWaiter(offset) { box.complete($0) }
        if let error = box.wait() { throw error }
    }

    private func enqueueWaiter(_ offset: Int64, _ resume: @escaping @Sendable (LogError?) -> Void) {
        let ready = state.withLock { s -> Bool in
            if s.flushedOffset > offset || s.closed { return true }
            s.waiters.append(DurabilityWaiter(offset: offset, resume: resume))
            return false
        }
        if ready { resume(nil) }
    }

    // MARK: Append notification (long polls)

    /// Registers a callback run after every append with the new end offset. Returns a token
    /// for `removeAppendListener`. The callback must be quick and must not call back into
    /// the log's append.
    public func addAppendListener(_ listener: @escaping @Sendable (Int64) -> Void) -> UInt64 {
        state.withLock { s in
            s.nextListenerID += 1
            s.appendListeners[s.nextListenerID] = listener
            return s.nextListenerID
        }
    }

    /// How many append listeners are registered (readers waiting for new records).
    public var appendListenerCount: Int { state.withLock { $0.appendListeners.count } }

    public func removeAppendListener(_ token: UInt64) {
        _ = state.withLock { $0.appendListeners.removeValue(forKey: token) }
    }

    private func notifyAppend(_ end: Int64) {
        let listeners = state.withLock { s in s.appendListeners.isEmpty ? [] : Array(s.appendListeners.values) }
        for l in listeners { l(end) }
    }

    // MARK: Lifecycle

    /// Flushes (unless the policy is `never`), stops background work and wakes waiters.
    public func close() {
        LogMaintenance.shared.unregister(self)
        if !isReadOnly && config.flush != .never {
            do { try flush() } catch { logger.error("final flush of \(directory) failed: \(error)") }
        }
        let waiters = state.withLock { s -> [DurabilityWaiter] in
            s.closed = true
            defer { s.waiters.removeAll() }
            return s.waiters
        }
        for w in waiters { w.resume(LogError(.closed, "the log in \(directory) was closed")) }
    }
}

/// A one-shot result a blocked thread waits for.
final class BlockingResult: @unchecked Sendable {
    // Guarded by `lock`; the semaphore orders the hand-over.
    private let lock = Mutex<LogError??>(nil)
    private let semaphore = DispatchSemaphore(value: 0)

    func complete(_ error: LogError?) {
        lock.withLock { $0 = .some(error) }
        semaphore.signal()
    }

    func wait() -> LogError? {
        semaphore.wait()
        return lock.withLock { $0 ?? nil }
    }
}
