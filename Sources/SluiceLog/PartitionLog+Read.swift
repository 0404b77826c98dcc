// Reading a partition log: whole batches from an offset up to a byte limit, each batch's CRC
// verified before it is handed out, and offset lookup by timestamp.

/// Whole batches read from the log. The batches may start before the offset asked for (a
/// batch is never split); `forEachRecord(from:)` skips those records.
public struct LogReadResult: Sendable {
    /// Backing bytes; the batches are `bytes[range]`.
    public let bytes: [UInt8]
    public let range: Range<Int>
    public let highWatermark: Int64
    public let logStartOffset: Int64
    /// Offset after the last record in these batches, or the offset asked for when empty.
    public let nextOffset: Int64

    public init(bytes: [UInt8], range: Range<Int>, highWatermark: Int64, logStartOffset: Int64, nextOffset: Int64) {
        self.bytes = bytes
        self.range = range
        self.highWatermark = highWatermark
        self.logStartOffset = logStartOffset
        self.nextOffset = nextOffset
    }

    /// A read that found nothing at `offset`.
    public static func empty(at offset: Int64, highWatermark: Int64, logStartOffset: Int64) -> LogReadResult {
        LogReadResult(bytes: [], range: 0..<0, highWatermark: highWatermark, logStartOffset: logStartOffset, nextOffset: offset)
    }

    public var isEmpty: Bool { range.isEmpty }
    public var byteCount: Int { range.count }

    /// Calls `body` for every batch, in order. The batches were checked when read.
    public func forEachBatch(_ body: (RecordBatchView) throws -> Void) rethrows {
        try bytes.withUnsafeBytes { all in
            var it = RecordBatchIterator(UnsafeRawBufferPointer(rebasing: all[range]), verifyCRC: false)
            while let batch = it.next() { try body(batch) }
        }
    }

    /// Calls `body` for every record at or after `offset`, skipping control batches.
    public func forEachRecord(from offset: Int64 = 0, _ body: (RecordView) throws -> Void) throws {
        try forEachBatch { batch in
            if batch.header.isControl || batch.header.lastOffset < offset { return }
            try batch.forEachRecord { record in
                if record.offset >= offset { try body(record) }
            }
        }
    }

    /// The same read without the batches that start at or after `offset` (for example the
    /// last stable offset of a `read_committed` fetch).
    public func truncated(before offset: Int64) -> LogReadResult {
        var end = range.lowerBound
        var next = nextOffset
        var first = true
        bytes.withUnsafeBytes { all in
            var it = RecordBatchIterator(UnsafeRawBufferPointer(rebasing: all[range]), verifyCRC: false)
            while let batch = it.next() {
                if batch.header.baseOffset >= offset {
                    if first { next = min(next, offset) }
                    break
                }
                first = false
                end += batch.header.totalSize
                next = batch.header.nextOffset
            }
        }
        if end == range.upperBound { return self }
        return LogReadResult(bytes: bytes, range: range.lowerBound..<end, highWatermark: highWatermark, logStartOffset: logStartOffset, nextOffset: end == range.lowerBound ? min(nextOffset, offset) : next)
    }

    /// The records at or after `offset`, copied out.
    public func records(from offset: Int64 = 0) throws -> [Record] {
        var out: [Record] = []
        try forEachRecord(from: offset) { out.append($0.materialize()) }
        return out
    }
}

struct ReadPlan {
    var segment: LogSegment
    var start: Int
    var limit: Int
    var highWatermark: Int64
    var logStartOffset: Int64
    /// The base offset the batch at `start` must have: the segment's, or the index entry's.
    var firstOffset: Int64
    /// True when `start` came from an index entry rather than the segment's start.
    var fromIndex: Bool
    /// Offset after the segment's last batch as the log's state knows it; no batch may pass it.
    var endOffset: Int64
    /// The segment after this one, if any.
    var next: LogSegment?
}

/// Where a read goes.
enum ReadLookup {
    case atEnd
    case plan(ReadPlan)
    /// `offset` falls after the batches of `segment` (which end at `endOffset`) but before `next`.
    case hole(segment: LogSegment, endOffset: Int64, next: LogSegment)
}

/// What reading one segment from a plan found.
enum SegmentRead {
    case batches(LogReadResult)
    /// No batch at or after the offset asked for: the segment's batches end at `endOffset`.
    case end(endOffset: Int64)
}

extension PartitionLog {
    /// Reads whole batches starting with the one that holds `offset`, up to `maxBytes` (the
    /// first batch is returned whole even when larger, as Kafka does). Reading at the high
    /// watermark returns an empty result; before the log start or past the high watermark
    /// throws `offsetOutOfRange`. A batch that fails its checks ends the result before it;
    /// if it is the first one, the read throws `corruptBatch` naming the file and offset.
    /// The checks include the offsets: each batch starts where the one before it ended (the
    /// first where the segment's name or its index says), and consecutive segments continue
    /// each other; a hole (a deleted segment) throws, naming both files.
    public func read(from offset: Int64, maxBytes: Int = 1024 * 1024) throws -> LogReadResult {
        let target = offset
        let lookup = try state.withLock { s -> ReadLookup in
            if s.closed { throw LogError(.closed, "the log in \(directory) is closed") }
            if target < s.logStartOffset || target > s.endOffset {
                throw LogError(.offsetOutOfRange, "offset \(target) is outside the log's range \(s.logStartOffset)..<\(s.endOffset)", file: directory, offset: target)
            }
            if target == s.endOffset { return .atEnd }
            let i = Self.segmentIndex(s.segments, containing: target)
            let seg = s.segments[i]
            let next = i + 1 < s.segments.count ? s.segments[i + 1].segment : nil
            if let next, target >= seg.nextOffset {
                // The segment's batches end before the next segment starts, and `target` is between.
                return .hole(segment: seg.segment, endOffset: seg.nextOffset, next: next)
            }
            var start = 0
            var first = seg.segment.baseOffset
            if target >= seg.segment.baseOffset {
                let rel = UInt32(truncatingIfNeeded: target - seg.segment.baseOffset)
                if let e = Self.floorEntry(seg.index, rel) {
                    start = Int(e.position)
                    first = seg.segment.baseOffset + Int64(e.relativeOffset)
                }
            }
            return .plan(ReadPlan(segment: seg.segment, start: start, limit: seg.size, highWatermark: s.endOffset,
                                  logStartOffset: s.logStartOffset, firstOffset: first, fromIndex: start > 0,
                                  endOffset: seg.nextOffset, next: next))
        }
        let plan: ReadPlan
        switch lookup {
        case .atEnd:
            let (hw, lso) = state.withLock { ($0.endOffset, $0.logStartOffset) }
            return LogReadResult(bytes: [], range: 0..<0, highWatermark: hw, logStartOffset: lso, nextOffset: target)
        case .hole(let segment, let end, let next):
            throw gap(segment, endOffset: end, next: next)
        case .plan(let p):
            plan = p
        }
        switch try read(plan, from: target, maxBytes: maxBytes) {
        case .batches(let result):
            return result
        case .end(let end):
            // Nothing at or after `target` in that segment, which holds the offsets below the
            // next one's base: whatever lies between is missing.
            let next = state.withLock { s -> LogSegment? in
                guard let i = s.segments.firstIndex(where: { $0.segment === plan.segment }), i + 1 < s.segments.count
                else { return nil }
                return s.segments[i + 1].segment
            }
            guard let next else {
                // The last segment, or one retention deleted meanwhile.
                return LogReadResult(bytes: [], range: 0..<0, highWatermark: plan.highWatermark,
                                     logStartOffset: plan.logStartOffset, nextOffset: target)
            }
            throw gap(plan.segment, endOffset: end, next: next)
        }
    }

    static func segmentIndex(_ segments: [SegmentState], containing offset: Int64) -> Int {
        var lo = 0, hi = segments.count - 1, found = 0
        while lo <= hi {
            let mid = (lo + hi) >> 1
            if segments[mid].segment.baseOffset <= offset { found = mid; lo = mid + 1 } else { hi = mid - 1 }
        }
        return found
    }

    /// The last index entry whose batch's base offset is <= `relativeOffset`, if any.
    static func floorEntry(_ index: OffsetIndex, _ relativeOffset: UInt32) -> OffsetIndex.Entry? {
        let entries = index.entries
        var lo = 0, hi = entries.count - 1, found = -1
        while lo <= hi {
            let mid = (lo + hi) >> 1
            if entries[mid].relativeOffset <= relativeOffset { found = mid; lo = mid + 1 } else { hi = mid - 1 }
        }
        return found < 0 ? nil : entries[found]
    }

    private func read(_ plan: ReadPlan, from target: Int64, maxBytes: Int) throws -> SegmentRead {
        let available = plan.limit - plan.start
        guard available > 0 else { return .end(endOffset: plan.firstOffset) }
        let slack = config.indexIntervalBytes + 2 * RecordBatchLayout.headerSize
        var bytes = try plan.segment.log.pread(count: min(available, max(maxBytes, 1) + slack), at: plan.start)
        var base = plan.start  // file position of bytes[0]
        var pos = 0
        var first: Int?
        var end = 0
        var next = target
        // The base offset the next batch must have.
        var expected = plan.firstOffset
        while true {
            if pos + RecordBatchLayout.logOverhead > bytes.count {
                if first != nil || base + pos >= plan.limit { break }
                bytes = try plan.segment.log.pread(count: min(plan.limit - base - pos, max(maxBytes, 1) + slack), at: base + pos)
                base += pos; pos = 0
                if first == nil { end = 0 }
                continue
            }
            let total = bytes.withUnsafeBytes { Int($0.be32(pos + RecordBatchLayout.batchLength)) } + RecordBatchLayout.logOverhead
            if total < RecordBatchLayout.headerSize || base + pos + total > plan.limit {
                if first == nil { throw corruption(plan, position: base + pos, offset: nil, reason: "batch length \(total - RecordBatchLayout.logOverhead) is invalid") }
                break
            }
            if pos + total > bytes.count {
                if first != nil { break }
                // The batch runs past what was read: restart the buffer at it.
                bytes = try plan.segment.log.pread(count: max(total, min(plan.limit - base - pos, max(maxBytes, 1) + slack)), at: base + pos)
                base += pos; pos = 0
                continue
            }
            let (batchBase, delta) = bytes.withUnsafeBytes { ($0.be64(pos), $0.be32(pos + RecordBatchLayout.lastOffsetDelta)) }
            if let reason = sequenceProblem(plan, position: base + pos, batchBase: batchBase, delta: delta, expected: expected) {
                // Batches before it are served; the read that reaches it throws.
                if first == nil { throw corruption(plan, position: base + pos, offset: expected, reason: reason) }
                break
            }
            let lastOffset = batchBase + Int64(delta)
            if lastOffset < target {
                expected = lastOffset + 1
                pos += total
                continue
            }
            if let f = first, pos + total - f > maxBytes { break }
            let check = bytes.withUnsafeBytes { RecordBatchCodec.check($0, at: pos, verifyCRC: true) }
            guard case .valid(let header) = check else {
                let reason: String
                if case .invalid(let r) = check { reason = r } else { reason = "incomplete batch" }
                let offset = bytes.withUnsafeBytes { $0.be64(pos) }
                if first == nil { throw corruption(plan, position: base + pos, offset: offset, reason: reason) }
                reportDamageOnce("\(plan.segment.logPath) is corrupt at byte \(base + pos) (offset \(offset)): \(reason); reads stop before it")
                break
            }
            if first == nil { first = pos }
            pos += total
            end = pos
            next = header.nextOffset
            expected = header.nextOffset
        }
        guard let first else { return .end(endOffset: expected) }
        return .batches(LogReadResult(bytes: bytes, range: first..<end, highWatermark: plan.highWatermark, logStartOffset: plan.logStartOffset, nextOffset: next))
    }

    /// Why the batch at file byte `position` cannot follow what was read before it, or nil
    /// when it starts at `expected` and ends within the segment's offsets.
    private func sequenceProblem(_ plan: ReadPlan, position: Int, batchBase: Int64, delta: Int32, expected: Int64) -> String? {
        if batchBase != expected {
            if position == plan.start && plan.fromIndex {
                return "the batch there starts at offset \(batchBase), but the index \(plan.segment.indexPath) says offset "
                    + "\(expected) starts there (the segment or its index is damaged)"
            }
            if position == 0 {
                return "the segment's first batch starts at offset \(batchBase), but the file's name says offset \(expected)"
            }
            return "the batch there starts at offset \(batchBase), but the batch before it ended at offset \(expected - 1) "
                + "(offsets must continue)"
        }
        if delta < 0 { return "the batch's last offset delta is negative (\(delta))" }
        let lastOffset = batchBase + Int64(delta)
        if lastOffset >= plan.endOffset {
            if let next = plan.next {
                return "the batch there ends at offset \(lastOffset), but the next segment \(next.logPath) starts at "
                    + "offset \(plan.endOffset) (the segments overlap)"
            }
            return "the batch there ends at offset \(lastOffset), past the log's end offset \(plan.endOffset)"
        }
        return nil
    }

    private func corruption(_ plan: ReadPlan, position: Int, offset: Int64?, reason: String) -> LogError {
        let at = offset.map { " (offset \($0))" } ?? ""
        let message = "\(plan.segment.logPath) is corrupt at byte \(position)\(at): \(reason); reads stop before it"
        reportDamageOnce(message)
        return LogError(.corruptBatch, message, file: plan.segment.logPath, offset: offset)
    }

    /// The error for offsets missing between `segment`, whose batches end at `endOffset`, and
    /// the segment after it.
    private func gap(_ segment: LogSegment, endOffset: Int64, next: LogSegment) -> LogError {
        let message = Self.boundaryMessage(segment, endOffset: endOffset, nextPath: next.logPath, nextBase: next.baseOffset)
            + "; reads stop before them"
        reportDamageOnce(message)
        return LogError(.corruptBatch, message, file: segment.logPath, offset: endOffset)
    }

    /// The largest record timestamp in the log (-1 when empty): ListOffsets' MAX_TIMESTAMP.
    public var maxTimestamp: Int64 {
        state.withLock { s in s.segments.filter { $0.size > 0 }.map(\.maxTimestamp).max() ?? -1 }
    }

    /// The earliest offset whose record timestamp is at or after `timestamp`, or nil when
    /// every record is older (Kafka's ListOffsets by time).
    public func offset(forTimestamp timestamp: Int64) throws -> Int64? {
        try record(atOrAfter: timestamp)?.offset
    }

    /// The first record whose timestamp is at or after `timestamp`: its offset and its own
    /// timestamp (what ListOffsets answers), or nil when every record is older.
    public func record(atOrAfter timestamp: Int64) throws -> (offset: Int64, timestamp: Int64)? {
        let candidates = state.withLock { s -> [(LogSegment, Int, Int, Int64)] in
            s.segments.compactMap { seg -> (LogSegment, Int, Int, Int64)? in
                guard seg.maxTimestamp >= timestamp, seg.size > 0 else { return nil }
                let rel = seg.timeIndex.searchStart(for: timestamp)
                return (seg.segment, seg.index.floorPosition(rel), seg.size, s.logStartOffset)
            }
        }
        for (segment, start, limit, _) in candidates {
            var position = start
            while position < limit {
                let chunk = try segment.log.pread(count: min(limit - position, 1024 * 1024), at: position)
                var found: (offset: Int64, timestamp: Int64)?
                var consumed = 0
                try chunk.withUnsafeBytes { p in
                    var it = RecordBatchIterator(p, verifyCRC: true)
                    while let batch = it.next() {
                        consumed += batch.header.totalSize
                        guard batch.header.maxTimestamp >= timestamp, !batch.header.isControl else { continue }
                        try batch.forEachRecord { r in
                            if found == nil && r.timestamp >= timestamp { found = (r.offset, r.timestamp) }
                        }
                        if found != nil { return }
                    }
                    if let f = it.failure { throw LogError(.corruptBatch, "\(segment.logPath) is corrupt \(f)", file: segment.logPath) }
                }
                if let found { return found }
                if consumed == 0 {
                    // One batch bigger than the chunk.
                    let total = chunk.withUnsafeBytes { Int($0.be32(RecordBatchLayout.batchLength)) } + RecordBatchLayout.logOverhead
                    let whole = try segment.log.pread(count: total, at: position)
                    var inBig: (offset: Int64, timestamp: Int64)?
                    try whole.withUnsafeBytes { p in
                        var it = RecordBatchIterator(p, verifyCRC: true)
                        if let batch = it.next() {
                            try batch.forEachRecord { r in if inBig == nil && r.timestamp >= timestamp { inBig = (r.offset, r.timestamp) } }
                        }
                    }
                    if let inBig { return inBig }
                    position += total
                    continue
                }
                position += consumed
            }
        }
        return nil
    }
}
