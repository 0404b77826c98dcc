// Opening a partition log: listing segments, loading or rebuilding indexes, and checking the
// tail batch by batch, truncating at the first batch whose length, magic, CRC or offsets are
// wrong.
import Logging

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
        let log = PartitionLog(directory: directory, config: config, readOnly: readOnly, logger: logger, writer: writer, state: shared)
        if !readOnly { LogMaintenance.shared.register(log) }
        return log
    }

    /// Scans the active segment from its start; a writable open cuts it at the first bad
    /// batch and rewrites both indexes from the scan.
    static func recoverTail(_ segment: LogSegment, size: Int, config: LogConfig, readOnly: Bool, logger: Logger) throws -> ScanResult {
        var scan = ScanResult(baseOffset: segment.baseOffset)
        try Self.scan(segment.log, segmentBase: segment.baseOffset, size: size, config: config, into: &scan)
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
    static func loadClosedSegment(_ segment: LogSegment, size: Int, nextBase: Int64, config: LogConfig, readOnly: Bool, logger: Logger) throws -> SegmentState {
        let indexBytes = (try? FileIO.readAll(segment.indexPath)) ?? []
        let timeBytes = (try? FileIO.readAll(segment.timeIndexPath)) ?? []
        if size > 0, let index = OffsetIndex.decode(indexBytes, logSize: size), let timeIndex = TimeIndex.decode(timeBytes), !timeIndex.entries.isEmpty,
           indexLooksComplete(index, segment: segment, size: size, config: config) {
            return SegmentState(segment: segment, size: size, nextOffset: nextBase, maxTimestamp: timeIndex.lastTimestamp, firstTimestamp: timeIndex.entries.first?.timestamp ?? -1, index: index, timeIndex: timeIndex)
        }
        var scan = ScanResult(baseOffset: segment.baseOffset)
        try Self.scan(segment.log, segmentBase: segment.baseOffset, size: size, config: config, into: &scan)
        if scan.maxTimestamp > scan.timeIndex.lastTimestamp {
            scan.timeIndex.entries.append(TimeIndex.Entry(timestamp: scan.maxTimestamp, relativeOffset: UInt32(truncatingIfNeeded: scan.lastBatchBase - segment.baseOffset)))
        }
        if let f = scan.failure {
            logger.error("\(segment.logPath) is corrupt at byte \(f.position)\(f.offset.map { " (offset \($0))" } ?? ""): \(f.reason); reads of this partition stop before it")
        }
        if !readOnly && size > 0 {
            logger.info("rebuilt the index of \(segment.logPath)")
            try rewriteIndexes(segment, scan)
        }
        // Reads stop at the first bad batch: only the valid prefix is readable.
        return SegmentState(segment: segment, size: scan.validEnd, nextOffset: scan.failure == nil ? nextBase : scan.nextOffset, maxTimestamp: scan.maxTimestamp, firstTimestamp: scan.firstTimestamp, index: scan.index, timeIndex: scan.timeIndex)
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
                if h.baseOffset < scan.nextOffset {
                    scan.failure = (position, h.baseOffset, "batch offset \(h.baseOffset) is below the expected \(scan.nextOffset)")
                    return pos
                }
                let rel = UInt32(truncatingIfNeeded: h.baseOffset - segmentBase)
                let maxTs = max(scan.maxTimestamp, h.maxTimestamp)
                if scan.bytesSinceIndex >= config.indexIntervalBytes && position > 0 {
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
                scan.lastBatchBase = h.baseOffset
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

