// FetchedBatches: one lane's share of a poll as record batches whose views point into the
// bytes the fetch read. Records of compressed batches (decompressed into a scratch buffer
// while they are read) and anything else outside those bytes are copied into the batch's
// arena; everything else is referenced where it lies.
import SluiceBroker
import SluiceLog

enum FetchedBatches {
    /// The part's records from `part.from` on (up to `through`), that its isolation level may
    /// see, in offset order, in batches of at most `maxRecords`.
    static func make(_ part: ConsumerRecords.Part, maxRecords: Int, through: Int64 = .max) throws -> [RecordBatch] {
        let fetched = part.data.result.bytes
        var whole = RecordBatch()
        let store = whole.addStore(fetched)
        let lane = whole.laneIndex(SourceLane(part.data.topicPartition))
        whole.slots.reserveCapacity(max(16, part.data.result.byteCount / 64))
        try fetched.withUnsafeBytes { all in
            let base = UInt(bitPattern: all.baseAddress)
            let end = base &+ UInt(all.count)
            func span(_ p: UnsafeRawBufferPointer?, _ batch: inout RecordBatch) -> ByteSpan {
                guard let p else { return .null }
                let at = UInt(bitPattern: p.baseAddress)
                if p.count == 0 { return ByteSpan(store: store, start: 0, count: 0) }
                if at >= base && at &+ UInt(p.count) <= end {
                    return ByteSpan(store: store, start: Int32(at &- base), count: Int32(p.count))
                }
                return batch.store(p)
            }
            try part.data.forEachRecord(from: part.from) { r in
                guard r.offset <= through else { return }
                let headerStart = Int32(whole.headers.count)
                if r.headerCount > 0 {
                    r.forEachHeader { name, value in
                        let h = HeaderSlot(name: span(name, &whole), value: span(value, &whole))
                        whole.headers.append(h)
                    }
                }
                let key = span(r.key, &whole), value = span(r.value, &whole)
                let slot = RecordSlot(key: key, value: value, offset: r.offset, timestamp: r.timestamp, lane: lane,
                                      headerStart: headerStart, headerCount: Int32(whole.headers.count) - headerStart, fieldStart: 0, fieldCount: 0, parse: .none)
                whole.slots.append(slot)
            }
        }
        if whole.count <= maxRecords { return whole.isEmpty ? [] : [whole] }
        var out: [RecordBatch] = []
        var start = 0
        while start < whole.count {
            let n = min(maxRecords, whole.count - start)
            var b = whole.emptied(reservingCapacity: n)
            b.slots.append(contentsOf: whole.slots[start..<(start + n)])
            out.append(b)
            start += n
        }
        return out
    }
}
