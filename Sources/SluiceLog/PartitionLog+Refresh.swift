// Read-only logs follow a writer in another process: `refresh()` re-lists the segments and
// scans what was appended since the last look. Batches still being written stay invisible
// until they are whole and pass their CRC. A new segment must start where the one before it
// ends; a hole or an overlap is logged, and reads that reach it fail.

extension PartitionLog {
    /// Picks up segments and batches appended by another process; drops segments that
    /// retention deleted. Only for logs opened read-only; a no-op otherwise.
    public func refresh() throws {
        guard isReadOnly else { return }
        try writer.withLock { w in
            let bases = Set(try FileIO.list(directory).compactMap { LogSegment.baseOffset(fromFileName: $0, ext: "log") })
            var segments = state.withLock { $0.segments }.filter { bases.contains($0.segment.baseOffset) }
            guard var last = segments.popLast() else {
                throw LogError(.io, "the segments of \(directory) were deleted while reading", file: directory)
            }
            var scan = ScanResult(baseOffset: last.segment.baseOffset)
            scan.validEnd = last.size
            scan.nextOffset = last.nextOffset
            scan.maxTimestamp = last.maxTimestamp
            scan.firstTimestamp = last.firstTimestamp
            scan.lastBatchBase = w.lastBatchBase
            scan.bytesSinceIndex = w.bytesSinceIndex
            scan.index = last.index
            scan.timeIndex = last.timeIndex
            try Self.scan(last.segment.log, segmentBase: last.segment.baseOffset, size: try last.segment.log.size(), config: config, into: &scan)
            Self.reportSequenceBreak(scan, in: last.segment, logger: logger)
            last.size = scan.validEnd
            last.nextOffset = scan.nextOffset
            last.maxTimestamp = scan.maxTimestamp
            last.firstTimestamp = scan.firstTimestamp
            last.index = scan.index
            last.timeIndex = scan.timeIndex
            segments.append(last)

            // Segments rolled since: scan each whole (the newest may still be growing).
            for base in bases.sorted() where base > last.segment.baseOffset {
                let segment = try LogSegment(directory: directory, baseOffset: base, create: false, readOnly: true)
                if let i = segments.indices.last, segments[i].nextOffset != base {
                    // The segment before ends elsewhere than this one starts. Reads refuse the
                    // hole (offsets from its end to `base`) or the overlap (batches past `base`).
                    let message = Self.boundaryMessage(segments[i].segment, endOffset: segments[i].nextOffset,
                                                       nextPath: segment.logPath, nextBase: base)
                    logger.error("\(message); reads that reach them fail")
                    segments[i].nextOffset = min(segments[i].nextOffset, base)
                }
                scan = ScanResult(baseOffset: base)
                try Self.scan(segment.log, segmentBase: base, size: try segment.log.size(), config: config, into: &scan)
                Self.reportSequenceBreak(scan, in: segment, logger: logger)
                segments.append(SegmentState(segment: segment, size: scan.validEnd, nextOffset: scan.nextOffset, maxTimestamp: scan.maxTimestamp, firstTimestamp: scan.firstTimestamp, index: scan.index, timeIndex: scan.timeIndex))
            }
            let final = segments
            let end = final.last!.nextOffset
            state.withLock { s in
                s.segments = final
                s.logStartOffset = final[0].segment.baseOffset
                s.endOffset = end
                s.flushedOffset = end
            }
            w.active = final.last!.segment
            w.lastBatchBase = scan.lastBatchBase
            w.bytesSinceIndex = scan.bytesSinceIndex
            w.nextOffset = end
            w.position = final.last!.size
        }
    }
}
