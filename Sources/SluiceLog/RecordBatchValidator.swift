// Full validation of one v2 RecordBatch as a client sent it, before it is stored: framing and
// CRC, then the header's claims and every record, in one pass with no per-record allocation.
// Compressed records are decompressed (within a limit) and walked the same way.

public enum RecordBatchValidator {
    /// The most bytes a compressed batch's records may decompress to.
    public static let maxDecompressedBytes = 64 * 1024 * 1024
    /// The most a batch's records may grow when decompressed (above the 1 MiB floor). gzip
    /// cannot exceed ~1032:1; real records rarely pass 50:1.
    public static let maxCompressionRatio = 256
    /// The fewest bytes one record takes: length, attributes, timestamp delta, offset delta,
    /// key length, value length and header count, one byte each.
    public static let minRecordSize = 7

    /// How far the records of a batch whose compressed records take `compressedBytes` may
    /// decompress: 256 times their size, at least 1 MiB, at most 64 MiB.
    @inlinable
    public static func defaultDecompressedLimit(compressedBytes: Int) -> Int {
        min(maxDecompressedBytes, max(1 << 20, compressedBytes * maxCompressionRatio))
    }

    /// Checks that `batch` is exactly one well-formed v2 batch and returns its header. Framing
    /// damage (length, magic, CRC) throws `corruptBatch` (Kafka's CORRUPT_MESSAGE); a batch
    /// whose CRC is right but whose contents are not throws `invalidRecord` (INVALID_RECORD).
    /// Messages name the byte of the batch (or of its decompressed records) at fault.
    ///
    /// - Parameters:
    ///   - allowControl: accept control batches (the broker's own transaction markers);
    ///     clients may not write them.
    ///   - decompressedLimit: the most bytes compressed records may decompress to; by default
    ///     `defaultDecompressedLimit(compressedBytes:)`.
    @discardableResult
    public static func validate(
        _ batch: UnsafeRawBufferPointer, allowControl: Bool = false, decompressedLimit: Int? = nil
    ) throws(LogError) -> BatchHeader {
        typealias L = RecordBatchLayout
        let size = batch.count
        guard size >= L.headerSize else {
            throw corrupt(0, "the batch is \(size) bytes, shorter than the \(L.headerSize)-byte batch header")
        }
        let length = Int(batch.be32(L.batchLength))
        guard length >= L.headerSize - L.logOverhead else {
            let least = L.headerSize - L.logOverhead
            throw corrupt(L.batchLength, "batch length \(length) is shorter than a batch header (\(least))")
        }
        guard length == size - L.logOverhead else {
            throw corrupt(L.batchLength, "batch length \(length) does not match the \(size) bytes received "
                + "(expected \(size - L.logOverhead))")
        }
        let magic = batch[L.magic]
        guard magic == L.currentMagic else { throw corrupt(L.magic, "magic byte is \(magic), expected 2") }
        let header = BatchHeader(batch)
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: batch[L.crcStart...]))
        guard crc == header.crc else {
            // The wording of RecordBatchCodec.check.
            let stored = RecordBatchCodec.hex(header.crc), computed = RecordBatchCodec.hex(crc)
            throw corrupt(L.crc, "CRC mismatch (stored \(stored), computed \(computed))")
        }

        // The header's claims.
        let codec = header.attributes.compression
        guard codec <= 4 else {
            throw invalid(L.attributes, "compression codec \(codec) is unknown (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd)")
        }
        if header.isControl && !allowControl {
            throw invalid(L.attributes, "the control bit (attribute bit 5) is set; clients may not write control batches")
        }
        if header.attributes.contains(.logAppendTime) {
            throw invalid(L.attributes, "the timestamp type bit (attribute bit 3) says log-append time; producers may "
                + "not set it")
        }
        let count = Int(header.recordCount)
        guard count >= 1 else {
            throw invalid(L.recordCount, "record count \(count); a batch holds at least one record")
        }
        let recordsStart = L.headerSize
        if codec == 0 {
            let room = (size - recordsStart) / minRecordSize
            guard count <= room else {
                throw invalid(L.recordCount, "record count \(count) is more than the \(size - recordsStart) bytes of "
                    + "records can hold (\(room) at most, \(minRecordSize) bytes each)")
            }
        }
        guard Int(header.lastOffsetDelta) == count - 1 else {
            throw invalid(L.lastOffsetDelta, "last offset delta \(header.lastOffsetDelta) does not match the record "
                + "count \(count) (it must be \(count - 1))")
        }
        if header.baseTimestamp >= 0 && header.maxTimestamp >= 0 && header.maxTimestamp < header.baseTimestamp {
            throw invalid(L.maxTimestamp, "max timestamp \(header.maxTimestamp) is before the base timestamp "
                + "\(header.baseTimestamp)")
        }
        if header.producerId >= 0 && !header.isControl && header.baseSequence < 0 {
            throw invalid(L.baseSequence, "base sequence \(header.baseSequence) is negative in a batch of producer id "
                + "\(header.producerId) (idempotent and transactional batches number their records from 0)")
        }

        // The records.
        let failure: RecordFailure?
        var inRecords = ""
        if codec == 0 {
            failure = walkRecords(batch, from: recordsStart, count: count, baseTimestamp: header.baseTimestamp)
        } else {
            let name = ["none", "gzip", "snappy", "lz4", "zstd"][codec]
            guard RecordCompression.canDecompress(codec: codec) else {
                throw LogError(.invalidBatch, "the batch is \(name)-compressed and the library that decompresses "
                    + "\(name) could not be loaded, so its records cannot be checked (install it, e.g. apt-get install "
                    + "kcat brings it)")
            }
            let compressed = UnsafeRawBufferPointer(rebasing: batch[recordsStart...])
            let limit = decompressedLimit ?? defaultDecompressedLimit(compressedBytes: compressed.count)
            let records: [UInt8]
            do {
                records = try RecordCompression.decompress(codec: codec, compressed, limit: limit)
            } catch {
                throw invalid(recordsStart, "its records do not decompress (\(error.message))")
            }
            let room = records.count / minRecordSize
            guard count <= room else {
                throw invalid(L.recordCount, "record count \(count) is more than the \(records.count) decompressed "
                    + "bytes of records can hold (\(room) at most, \(minRecordSize) bytes each)")
            }
            let base = header.baseTimestamp
            failure = records.withUnsafeBytes { walkRecords($0, from: 0, count: count, baseTimestamp: base) }
            inRecords = " of the decompressed records"
        }
        if let failure {
            throw LogError(.invalidRecord, "the batch is invalid at byte \(failure.position)\(inRecords): "
                + failure.reason)
        }
        return header
    }

    static func corrupt(_ position: Int, _ reason: String) -> LogError {
        LogError(.corruptBatch, "the batch is corrupt at byte \(position): \(reason)")
    }

    static func invalid(_ position: Int, _ reason: String) -> LogError {
        LogError(.invalidRecord, "the batch is invalid at byte \(position): \(reason)")
    }

    struct RecordFailure {
        var position: Int
        var reason: String

        init(_ position: Int, _ reason: String) {
            self.position = position
            self.reason = reason
        }
    }

    /// Walks `count` records in `p` from byte `start` to its end; nil when every field of every
    /// record is in place, the records end exactly at `p`'s end, and offset deltas run 0, 1, ...
    static func walkRecords(
        _ p: UnsafeRawBufferPointer, from start: Int, count: Int, baseTimestamp: Int64
    ) -> RecordFailure? {
        let end = p.count
        var pos = start
        for i in 0..<count {
            let recordStart = pos
            guard pos < end else {
                return RecordFailure(pos, "the records end after \(i) of the \(count) records the header counts")
            }
            guard let length = readVarint32(p, &pos, end) else {
                return RecordFailure(recordStart, "record \(i): its length is not a valid varint")
            }
            guard length > 0, Int(length) <= end - pos else {
                return RecordFailure(recordStart, "record \(i): its length \(length) is not from 1 to the "
                    + "\(end - pos) bytes left")
            }
            let recordEnd = pos + Int(length)
            pos += 1  // attributes (unused in v2)
            var at = pos
            guard let tsDelta = readVarint64(p, &pos, recordEnd) else {
                return RecordFailure(at, "record \(i): its timestamp delta is not a valid varint within the record")
            }
            guard !baseTimestamp.addingReportingOverflow(tsDelta).overflow else {
                return RecordFailure(at, "record \(i): its timestamp delta \(tsDelta) overflows the base timestamp")
            }
            at = pos
            guard let offsetDelta = readVarint32(p, &pos, recordEnd) else {
                return RecordFailure(at, "record \(i): its offset delta is not a valid varint within the record")
            }
            guard Int(offsetDelta) == i else {
                return RecordFailure(at, "record \(i): its offset delta is \(offsetDelta), expected \(i)")
            }
            at = pos
            let key = readLength(p, &pos, recordEnd, minimum: -1, "key length")
            if let f = key.failure { return RecordFailure(at, "record \(i): \(f)") }
            pos += key.value
            at = pos
            let value = readLength(p, &pos, recordEnd, minimum: -1, "value length")
            if let f = value.failure { return RecordFailure(at, "record \(i): \(f)") }
            pos += value.value
            at = pos
            guard let headerCount = readVarint32(p, &pos, recordEnd) else {
                return RecordFailure(at, "record \(i): its header count is not a valid varint within the record")
            }
            // A header takes at least 2 bytes (its key length and value length).
            guard headerCount >= 0, Int(headerCount) <= (recordEnd - pos) / 2 else {
                return RecordFailure(at, "record \(i): its header count \(headerCount) is not from 0 to what "
                    + "the \(recordEnd - pos) bytes left in the record can hold")
            }
            for h in 0..<Int(headerCount) {
                at = pos
                let headerKey = readLength(p, &pos, recordEnd, minimum: 0, "key length")
                if let f = headerKey.failure { return RecordFailure(at, "record \(i), header \(h): \(f)") }
                pos += headerKey.value
                at = pos
                let headerValue = readLength(p, &pos, recordEnd, minimum: -1, "value length")
                if let f = headerValue.failure { return RecordFailure(at, "record \(i), header \(h): \(f)") }
                pos += headerValue.value
            }
            guard pos == recordEnd else {
                return RecordFailure(pos, "record \(i): its fields end at byte \(pos), but its length says "
                    + "byte \(recordEnd)")
            }
        }
        guard pos == end else {
            return RecordFailure(pos, "\(end - pos) bytes follow the last of the \(count) records the header counts")
        }
        return nil
    }

    /// A length field: a varint from `minimum` up to the bytes left before `end`. Returns the
    /// bytes it announces (0 for -1, null) or why it is wrong.
    @inline(__always)
    static func readLength(
        _ p: UnsafeRawBufferPointer, _ pos: inout Int, _ end: Int, minimum: Int32, _ name: StaticString
    ) -> (value: Int, failure: String?) {
        guard let v = readVarint32(p, &pos, end) else {
            return (0, "its \(name) is not a valid varint within the record")
        }
        guard v >= minimum else { return (0, "its \(name) is \(v)") }
        guard Int(v) <= end - pos else {
            return (0, "its \(name) \(v) runs past the \(end - pos) bytes left in the record")
        }
        return (max(Int(v), 0), nil)
    }

    /// A zig-zag varint of at most 5 bytes whose value fits 32 bits, read before `end`.
    @inline(__always)
    static func readVarint32(_ p: UnsafeRawBufferPointer, _ pos: inout Int, _ end: Int) -> Int32? {
        Varint.read(p, &pos, end: end, bits: 32).map { Int32(truncatingIfNeeded: $0) }
    }

    /// A zig-zag varint of at most 10 bytes whose value fits 64 bits, read before `end`.
    @inline(__always)
    static func readVarint64(_ p: UnsafeRawBufferPointer, _ pos: inout Int, _ end: Int) -> Int64? {
        Varint.read(p, &pos, end: end, bits: 64)
    }
}
