// Opening a partition log: listing segments, loading or rebuilding indexes, and checking the
// tail batch by batch, truncating at the first batch whose length, magic or CRC is wrong.
// Offsets are checked too: each batch must start where the one before it ended, and each
// rolled segment's batches must end where the next segment's name says it starts. A break
// there (a rewritten base offset, a deleted segment) is logged as an error and left in place
// for reads to refuse, so everything before it stays readable and no offset is handed out
// twice.
import Logging

/// How a rolled segment's batch headers end, from its last index entry on.
enum SegmentTail {
    /// The offset after the last batch.
    case end(Int64)
    /// The first batch whose length or offsets are wrong, at a byte of the file.
    case broken(position: Int, reason: String)
}

/// What a scan of a segment's bytes found.
struct ScanResult: Sendable {
    var validEnd = 0
    var nextOffset: Int64
    var maxTimestamp: Int64 = -1
    var firstTimestamp: Int64 = -1
    var lastBatchBase: Int64
    var bytesSinceIndex = 0
    var index = OffsetIndex()
    var timeIndex = TimeIndex()
    /// The first bad batch: byte position, its offset if readable, and why.
    var failure: (position: Int, offset: Int64?, reason: String)?
    /// The first whole, valid batch that does not start where the batch before it ended (or,
    /// first in the segment, where the file's name says): byte position, the offset expected
    /// there and the one found. Its CRC holds, so it is kept, as is everything after it (the
    /// offsets already handed out stay as they were); the scan goes on, the caller logs it
    /// and reads that reach it fail.
    var sequenceBreak: (position: Int, expected: Int64, found: Int64)?

    init(baseOffset: Int64) {
        nextOffset = baseOffset
        lastBatchBase = baseOffset
    }
}

extension PartitionLog {
    /// Opens (creating if needed) the log in `directory`. A writable open recovers the tail:
    /// bytes after the last whole, valid batch are cut off and a warning names the file and
    /// offset. A read-only open never changes a file; it reads up to the last valid batch and
    /// sees later appends from another process after `refresh()`.
    public static func open(directory: String, config: LogConfig = LogConfig(), readOnly: Bool = false, logger: Logger = Logger(label: "sluice.log")) throws -> PartitionLog {
        if !readOnly { try FileIO.makeDirectories(directory) }
        guard FileIO.isDirectory(directory) else {
            throw LogError(.io, "the log directory \(directory) does not exist", file: directory)
        }
        let names = try FileIO.list(directory)
        var bases = names.compactMap { LogSegment.baseOffset(fromFileName: $0, ext: "log") }.sorted()
        if !readOnly {
            // Leftovers of an interrupted atomic write or of a segment whose log was deleted.
            let known = Set(bases)
            for name in names {
                if name.hasSuffix(".tmp") { try FileIO.remove(directory + "/" + name) }
                for ext in ["index", "timeindex"] {
                    if let b = LogSegment.baseOffset(fromFileName: name, ext: ext), !known.contains(b) {
                        try FileIO.remove(directory + "/" + name)
                    }
                }
            }
            if bases.isEmpty {
                _ = try LogSegment(directory: directory, baseOffset: 0, create: true, readOnly: false)
                try FileIO.syncDirectory(directory)
                bases = [0]
            }
        }

        var segments: [SegmentState] = []
        var tail = ScanResult(baseOffset: 0)
        for (i, base) in bases.enumerated() {
            let segment = try LogSegment(directory: directory, baseOffset: base, create: false, readOnly: readOnly)
            let isLast = i == bases.count - 1
            let size = try segment.log.size()
            if isLast {
                tail = try recoverTail(segment, size: size, config: config, readOnly: readOnly, logger: logger)
                segments.append(SegmentState(segment: segment, size: tail.validEnd, nextOffset: tail.nextOffset, maxTimestamp: tail.maxTimestamp, firstTimestamp: tail.firstTimestamp, index: tail.index, timeIndex: tail.timeIndex))
            } else {
                let nextBase = bases[i + 1]
                segments.append(try loadClosedSegment(segment, size: size, nextBase: nextBase, config: config, readOnly: readOnly, logger: logger))
            }
        }

        let start = segments.first?.segment.baseOffset ?? 0
        let end = segments.last?.nextOffset ?? 0
        let writer: WriterState
        if let last = segments.last {
            writer = WriterState(active: last.segment, position: last.size, nextOffset: end, bytesSinceIndex: tail.bytesSinceIndex, indexEntries: last.index.entries.count, timeIndexEntries: last.timeIndex.entries.count, lastTimeIndexTimestamp: last.timeIndex.lastTimestamp, maxTimestamp: last.maxTimestamp, lastBatchBase: tail.lastBatchBase, firstTimestamp: last.firstTimestamp, segmentStartMs: last.size > 0 ? currentTimeMillis() : -1)
        } else {
            throw LogError(.io, "the log directory \(directory) holds no segment files", file: directory)
        }
        let shared = SharedState(segments: segments, logStartOffset: start, endOffset: end, flushedOffset: end)
        // A whole batch that fails its checks is damage; a batch cut short at the end of the
        // file may still be being written by the writer beside us, and is not reported.
        var damage: String?
        if readOnly, let failure = tail.failure, let active = segments.last?.segment,
           !failure.reason.hasPrefix("the last batch is incomplete"), !failure.reason.hasSuffix("stray bytes after the last batch") {
            damage = "\(active.logPath) is corrupt at byte \(failure.position)\(failure.offset.map { " (offset \($0))" } ?? ""): \(failure.reason); "
                + "records from offset \(tail.nextOffset) on cannot be read until a writer opens the partition (it cuts the log there)"
        }
        let log = PartitionLog(directory: directory, config: config, readOnly: readOnly, logger: logger, writer: writer, state: shared, tailDamage: damage)
        if !readOnly { LogMaintenance.shared.register(log) }
        return log
    }

    /// Scans the active segment from its start; a writable open cuts it at the first bad
    /// batch and rewrites both indexes from the scan.
    static func recoverTail(_ segment: LogSegment, size: Int, config: LogConfig, readOnly: Bool, logger: Logger) throws -> ScanResult {
        var scan = ScanResult(baseOffset: segment.baseOffset)
        try Self.scan(segment.log, segmentBase: segment.baseOffset, size: size, config: config, into: &scan)
        reportSequenceBreak(scan, in: segment, logger: logger)
        guard !readOnly else { return scan }
        if scan.validEnd < size {
            let why = scan.failure.map { f in
                "\(f.reason)" + (f.offset.map { " at offset \($0)" } ?? "")
            } ?? "a partial batch"
            logger.warning("recovery: truncated \(segment.logPath) at byte \(scan.validEnd) (offset \(scan.nextOffset)), cutting \(size - scan.validEnd) bytes: \(why)")
            try segment.log.truncate(to: scan.validEnd)
            try segment.log.sync()
        }
        try rewriteIndexes(segment, scan)
        return scan
    }

    static func rewriteIndexes(_ segment: LogSegment, _ scan: ScanResult) throws {
        guard let index = segment.index, let timeIndex = segment.timeIndex else { return }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(scan.index.entries.count * 8)
        for e in scan.index.entries { bytes += OffsetIndex.encode(e) }
        try index.truncate(to: 0)
        try bytes.withUnsafeBytes { try index.pwriteAll($0, at: 0) }
        bytes.removeAll(keepingCapacity: true)
        for e in scan.timeIndex.entries { bytes += TimeIndex.encode(e) }
        try timeIndex.truncate(to: 0)
        try bytes.withUnsafeBytes { try timeIndex.pwriteAll($0, at: 0) }
    }

    /// Loads a rolled segment's indexes, rebuilding them from the log when they are missing
    /// or inconsistent. Older segments are not re-checksummed here; reads verify every batch.
    /// The batch headers after the last index entry are followed to the segment's end, which
    /// must be where the next segment starts (`nextBase`): a hole between them (a deleted
    /// segment) or a break in the offsets is logged, and reads that reach it fail.
    static func loadClosedSegment(_ segment: LogSegment, size: Int, nextBase: Int64, config: LogConfig, readOnly: Bool, logger: Logger) throws -> SegmentState {
        let nextPath = LogSegment.path(segment.directory, nextBase, "log")
        let indexBytes = (try? FileIO.readAll(segment.indexPath)) ?? []
        let timeBytes = (try? FileIO.readAll(segment.timeIndexPath)) ?? []
        if size > 0, let index = OffsetIndex.decode(indexBytes, logSize: size), let timeIndex = TimeIndex.decode(timeBytes), !timeIndex.entries.isEmpty,
           indexLooksComplete(index, segment: segment, size: size, config: config) {
            var nextOffset = nextBase
            switch try closedSegmentEnd(segment, size: size, index: index) {
            case .end(let end):
                if end != nextBase {
                    let message = boundaryMessage(segment, endOffset: end, nextPath: nextPath, nextBase: nextBase)
                    logger.error("\(message); reads that reach them fail")
                    nextOffset = min(end, nextBase)
                }
            case .broken(let position, let reason):
                logger.error("\(segment.logPath) is corrupt at byte \(position): \(reason); reads that reach it fail")
            }
            return SegmentState(segment: segment, size: size, nextOffset: nextOffset, maxTimestamp: timeIndex.lastTimestamp, firstTimestamp: timeIndex.entries.first?.timestamp ?? -1, index: index, timeIndex: timeIndex)
        }
        var scan = ScanResult(baseOffset: segment.baseOffset)
        try Self.scan(segment.log, segmentBase: segment.baseOffset, size: size, config: config, into: &scan)
        if scan.maxTimestamp > scan.timeIndex.lastTimestamp {
            scan.timeIndex.entries.append(TimeIndex.Entry(timestamp: scan.maxTimestamp, relativeOffset: UInt32(truncatingIfNeeded: scan.lastBatchBase &- segment.baseOffset)))
        }
        if let f = scan.failure {
            logger.error("\(segment.logPath) is corrupt at byte \(f.position)\(f.offset.map { " (offset \($0))" } ?? ""): \(f.reason); reads of this partition stop before it")
        } else if scan.nextOffset != nextBase {
            let message = boundaryMessage(segment, endOffset: scan.nextOffset, nextPath: nextPath, nextBase: nextBase)
            logger.error("\(message); reads that reach them fail")
        }
        reportSequenceBreak(scan, in: segment, logger: logger)
        if !readOnly && size > 0 {
            logger.info("rebuilt the index of \(segment.logPath)")
            try rewriteIndexes(segment, scan)
        }
        // Reads stop at the first bad batch: only the valid prefix is readable. No batch may
        // reach into the next segment's offsets.
        return SegmentState(segment: segment, size: scan.validEnd, nextOffset: min(scan.nextOffset, nextBase), maxTimestamp: scan.maxTimestamp, firstTimestamp: scan.firstTimestamp, index: scan.index, timeIndex: scan.timeIndex)
    }

    /// Says that `segment`, whose batches end at `endOffset`, does not lead to the next
    /// segment (`nextPath`, starting at `nextBase`).
    static func boundaryMessage(_ segment: LogSegment, endOffset: Int64, nextPath: String, nextBase: Int64) -> String {
        let holds = endOffset > segment.baseOffset ? "ends at offset \(endOffset - 1)" : "holds no batches"
        if endOffset < nextBase {
            return "offsets \(endOffset)..<\(nextBase) are missing: \(segment.logPath) \(holds), but the next segment "
                + "\(nextPath) starts at offset \(nextBase) (a segment file may have been deleted)"
        }
        return "\(segment.logPath) \(holds), but the next segment \(nextPath) starts at offset \(nextBase) (the segments overlap)"
    }

    /// Logs the first place where a scan found the offsets of `segment` broken.
    static func reportSequenceBreak(_ scan: ScanResult, in segment: LogSegment, logger: Logger) {
        guard let g = scan.sequenceBreak else { return }
        let what = g.position == 0
            ? "the segment's first batch starts at offset \(g.found), but the file's name says offset \(g.expected)"
            : "the batch there starts at offset \(g.found), but the batch before it ended at offset \(g.expected - 1) "
                + "(offsets must continue)"
        logger.error("\(segment.logPath) is corrupt at byte \(g.position) (offset \(g.expected)): \(what); reads that reach it fail")
    }

    /// Follows a rolled segment's batch headers from its last index entry (from its start when
    /// it has none) to its end, reading a few KiB at most in the usual case, and returns the
    /// offset after its last batch, or the first batch there whose length or offsets are
    /// wrong. The first batch's offset is checked against the file's name too. Records and
    /// CRCs are left to reads.
    static func closedSegmentEnd(_ segment: LogSegment, size: Int, index: OffsetIndex) throws -> SegmentTail {
        typealias L = RecordBatchLayout
        var position = 0
        var expected = segment.baseOffset
        if let last = index.entries.last {
            let head = try segment.log.pread(count: 8, at: 0)
            if head.count == 8 {
                let found = head.withUnsafeBytes { $0.be64(0) }
                if found != segment.baseOffset {
                    return .broken(position: 0, reason: "the segment's first batch starts at offset \(found), but the file's "
                        + "name says offset \(segment.baseOffset)")
                }
            }
            position = Int(last.position)
            expected = segment.baseOffset + Int64(last.relativeOffset)
        }
        let indexed = index.entries.last.map { Int($0.position) }
        let need = L.lastOffsetDelta + 4  // through lastOffsetDelta
        var chunk: [UInt8] = []
        var chunkStart = position
        while position < size {
            if position + need > chunkStart + chunk.count {
                chunkStart = position
                chunk = try segment.log.pread(count: min(64 * 1024, size - position), at: position)
                guard chunk.count >= need else {
                    return .broken(position: position, reason: "\(size - position) stray bytes after the last batch")
                }
            }
            let at = position - chunkStart
            let (found, length, delta) = chunk.withUnsafeBytes { p in
                (p.be64(at + L.baseOffset), Int(p.be32(at + L.batchLength)), p.be32(at + L.lastOffsetDelta))
            }
            let total = length + L.logOverhead
            guard total >= L.headerSize, position + total <= size else {
                return .broken(position: position, reason: "batch length \(length) is invalid")
            }
            guard found == expected else {
                let reason: String
                if position == 0 {
                    reason = "the segment's first batch starts at offset \(found), but the file's name says offset \(expected)"
                } else if position == indexed {
                    reason = "the batch there starts at offset \(found), but the index \(segment.indexPath) says offset "
                        + "\(expected) starts there (the segment or its index is damaged)"
                } else {
                    reason = "the batch there starts at offset \(found), but the batch before it ended at offset "
                        + "\(expected - 1) (offsets must continue)"
                }
                return .broken(position: position, reason: reason)
            }
            guard delta >= 0 else {
                return .broken(position: position, reason: "the batch's last offset delta is negative (\(delta))")
            }
            expected = found + Int64(delta) + 1
            position += total
        }
        return .end(expected)
    }

    /// An index written by appends has an entry at least every `indexIntervalBytes` of log, and
    /// its last entry points at a batch with the offset it claims.
    static func indexLooksComplete(_ index: OffsetIndex, segment: LogSegment, size: Int, config: LogConfig) -> Bool {
        guard let last = index.entries.last else { return size <= config.indexIntervalBytes + config.maxBatchBytes && size < 2 * config.indexIntervalBytes }
        guard let head = try? segment.log.pread(count: 8, at: Int(last.position)), head.count == 8 else { return false }
        let base = head.withUnsafeBytes { $0.be64(0) }
        return base == segment.baseOffset + Int64(last.relativeOffset)
    }

    /// Walks batches from `scan.validEnd` to `size`, validating each and extending the
    /// indexes as appends would. Stops at the first incomplete or bad batch.
    static func scan(_ file: FileHandleRef, segmentBase: Int64, size: Int, config: LogConfig, into scan: inout ScanResult) throws {
        let chunkSize = 8 * 1024 * 1024
        var chunkStart = scan.validEnd
        while chunkStart < size && scan.failure == nil {
            let want = min(chunkSize, size - chunkStart)
            var chunk = try file.pread(count: want, at: chunkStart)
            // A batch larger than the chunk: read it whole.
            if chunk.count >= RecordBatchLayout.logOverhead {
                let total = chunk.withUnsafeBytes { Int($0.be32(RecordBatchLayout.batchLength)) } + RecordBatchLayout.logOverhead
                if total > chunk.count && chunkStart + total <= size {
                    chunk = try file.pread(count: total, at: chunkStart)
                }
            }
            let consumed = chunk.withUnsafeBytes { p in
                walk(p, filePosition: chunkStart, fileSize: size, segmentBase: segmentBase, config: config, into: &scan)
            }
            if consumed == 0 { break }
            chunkStart += consumed
        }
    }

    /// Validates the batches in `p` (file bytes from `filePosition`); returns the bytes consumed.
    private static func walk(_ p: UnsafeRawBufferPointer, filePosition: Int, fileSize: Int, segmentBase: Int64, config: LogConfig, into scan: inout ScanResult) -> Int {
        var pos = 0
        while pos < p.count {
            let position = filePosition + pos
            switch RecordBatchCodec.check(p, at: pos, verifyCRC: true) {
            case .valid(let h):
                // An offset no log can hold is damage like a bad CRC (the writer must not go on
                // from it).
                if h.baseOffset < 0 || h.baseOffset > Int64.max - (1 << 32) {
                    scan.failure = (position, h.baseOffset, "batch offset \(h.baseOffset) is not a valid offset")
                    return pos
                }
                // A batch whose offsets do not continue is kept (cutting the segment there would
                // drop every later batch and hand their offsets out again) but gets no index
                // entry: reads that reach it walk into it and fail.
                let continues = h.baseOffset == scan.nextOffset
                if !continues && scan.sequenceBreak == nil {
                    scan.sequenceBreak = (position, scan.nextOffset, h.baseOffset)
                }
                let rel = UInt32(truncatingIfNeeded: h.baseOffset &- segmentBase)
                let maxTs = max(scan.maxTimestamp, h.maxTimestamp)
                let ascending = scan.index.entries.last.map { rel > $0.relativeOffset } ?? true
                if scan.bytesSinceIndex >= config.indexIntervalBytes && position > 0 && continues && ascending {
                    scan.index.entries.append(OffsetIndex.Entry(relativeOffset: rel, position: UInt32(position)))
                    if maxTs > scan.timeIndex.lastTimestamp {
                        scan.timeIndex.entries.append(TimeIndex.Entry(timestamp: maxTs, relativeOffset: rel))
                    }
                    scan.bytesSinceIndex = h.totalSize
                } else {
                    scan.bytesSinceIndex += h.totalSize
                }
                if scan.firstTimestamp < 0 { scan.firstTimestamp = h.baseTimestamp }
                scan.maxTimestamp = maxTs
                // The last batch whose offsets are trusted (the time index's last entry points at it).
                if continues && h.baseOffset >= scan.lastBatchBase { scan.lastBatchBase = h.baseOffset }
                scan.nextOffset = h.nextOffset
                pos += h.totalSize
                scan.validEnd = filePosition + pos
            case .incomplete(let needed):
                if position + needed > fileSize {
                    let left = fileSize - position
                    scan.failure = (position, nil, left >= RecordBatchLayout.logOverhead
                        ? "the last batch is incomplete (\(needed) bytes long, \(left) on disk)"
                        : "\(left) stray bytes after the last batch")
                }
                return pos
            case .invalid(let reason):
                let offset: Int64? = p.count - pos >= 8 ? p.be64(pos) : nil
                scan.failure = (position, offset, reason)
                return pos
            }
        }
        return pos
    }
}

