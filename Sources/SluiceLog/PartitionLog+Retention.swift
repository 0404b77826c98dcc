// Retention: deleting whole segments by age and by total size; the log start offset moves to
// the first remaining segment. The active segment is never deleted.

extension PartitionLog {
    /// Deletes the oldest segments that retention no longer keeps; returns how many.
    @discardableResult
    public func applyRetention(now: Int64 = currentTimeMillis()) throws -> Int {
        if isReadOnly { return 0 }
        return try writer.withLock { _ -> Int in
            let doomed = state.withLock { s -> [LogSegment] in
                var total = s.segments.reduce(0) { $0 + Int64($1.size) }
                var count = 0
                for seg in s.segments.dropLast() {
                    let expired = config.retentionMs >= 0 && seg.maxTimestamp < now - config.retentionMs
                    let oversized = config.retentionBytes >= 0 && total - Int64(seg.size) >= config.retentionBytes
                    guard expired || oversized else { break }
                    total -= Int64(seg.size)
                    count += 1
                }
                guard count > 0 else { return [] }
                let removed = s.segments.prefix(count).map(\.segment)
                s.segments.removeFirst(count)
                s.logStartOffset = max(s.logStartOffset, s.segments[0].segment.baseOffset)
                return removed
            }
            for segment in doomed {
                // Readers still holding the segment keep reading through their open descriptor.
                try segment.deleteFiles()
                logger.info("retention deleted \(segment.logPath)")
            }
            if !doomed.isEmpty { try FileIO.syncDirectory(directory) }
            return doomed.count
        }
    }
}
