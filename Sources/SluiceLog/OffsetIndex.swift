// The sparse indexes of one segment, in memory, and their on-disk encodings.
//
// `.index`:     8-byte entries, big-endian (offset - segment base: UInt32, byte position: UInt32),
//               one per `indexIntervalBytes` of log, keyed by the batch's base offset.
// `.timeindex`: 12-byte entries, big-endian (largest timestamp so far: Int64, offset - base: UInt32),
//               added with an offset-index entry whenever the largest timestamp grew.
// Both are rebuilt from the log when missing or inconsistent. Not thread-safe: the owning
// PartitionLog guards them.

struct OffsetIndex: Sendable {
    struct Entry: Sendable, Equatable {
        var relativeOffset: UInt32
        var position: UInt32
    }

    var entries: [Entry] = []

    /// Byte position of the last indexed batch whose base offset is <= `relativeOffset`, or 0.
    func floorPosition(_ relativeOffset: UInt32) -> Int {
        var lo = 0, hi = entries.count - 1, found = -1
        while lo <= hi {
            let mid = (lo + hi) >> 1
            if entries[mid].relativeOffset <= relativeOffset { found = mid; lo = mid + 1 } else { hi = mid - 1 }
        }
        return found < 0 ? 0 : Int(entries[found].position)
    }

    static func encode(_ e: Entry) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 8)
        out.withUnsafeMutableBytes { p in
            p.storeBE(UInt32(e.relativeOffset), at: 0)
            p.storeBE(UInt32(e.position), at: 4)
        }
        return out
    }

    /// Decodes an index file, or nil when it is not a consistent index for a log of `logSize` bytes.
    static func decode(_ bytes: [UInt8], logSize: Int) -> OffsetIndex? {
        guard bytes.count % 8 == 0 else { return nil }
        var index = OffsetIndex()
        index.entries.reserveCapacity(bytes.count / 8)
        let ok = bytes.withUnsafeBytes { p -> Bool in
            var last: Entry?
            for i in stride(from: 0, to: p.count, by: 8) {
                let e = Entry(relativeOffset: p.beU32(i), position: p.beU32(i + 4))
                if Int(e.position) >= logSize { return false }
                if let l = last, e.relativeOffset <= l.relativeOffset || e.position <= l.position { return false }
                index.entries.append(e)
                last = e
            }
            return true
        }
        return ok ? index : nil
    }
}

struct TimeIndex: Sendable {
    struct Entry: Sendable, Equatable {
        var timestamp: Int64
        var relativeOffset: UInt32
    }

    var entries: [Entry] = []

    var lastTimestamp: Int64 { entries.last?.timestamp ?? -1 }

    /// Relative offset of the last entry whose timestamp is below `timestamp`: every record
    /// before that batch is older than `timestamp`, so a search may start there.
    func searchStart(for timestamp: Int64) -> UInt32 {
        var lo = 0, hi = entries.count - 1, found = -1
        while lo <= hi {
            let mid = (lo + hi) >> 1
            if entries[mid].timestamp < timestamp { found = mid; lo = mid + 1 } else { hi = mid - 1 }
        }
        return found < 0 ? 0 : entries[found].relativeOffset
    }

    static func encode(_ e: Entry) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 12)
        out.withUnsafeMutableBytes { p in
            p.storeBE(e.timestamp, at: 0)
            p.storeBE(UInt32(e.relativeOffset), at: 8)
        }
        return out
    }

    static func decode(_ bytes: [UInt8]) -> TimeIndex? {
        guard bytes.count % 12 == 0 else { return nil }
        var index = TimeIndex()
        let ok = bytes.withUnsafeBytes { p -> Bool in
            var last: Entry?
            for i in stride(from: 0, to: p.count, by: 12) {
                let e = Entry(timestamp: p.be64(i), relativeOffset: p.beU32(i + 8))
                if let l = last, e.timestamp < l.timestamp || e.relativeOffset < l.relativeOffset { return false }
                index.entries.append(e)
                last = e
            }
            return true
        }
        return ok ? index : nil
    }
}
