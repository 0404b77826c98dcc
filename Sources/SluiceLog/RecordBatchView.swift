// Zero-copy decoding of v2 RecordBatches: header fields, validation, and record iteration.

/// The fixed header of one v2 batch.
public struct BatchHeader: Sendable, Hashable {
    public var baseOffset: Int64
    public var batchLength: Int32
    public var partitionLeaderEpoch: Int32
    public var magic: UInt8
    public var crc: UInt32
    public var attributes: BatchAttributes
    public var lastOffsetDelta: Int32
    public var baseTimestamp: Int64
    public var maxTimestamp: Int64
    public var producerId: Int64
    public var producerEpoch: Int16
    public var baseSequence: Int32
    public var recordCount: Int32

    // Wrapping: a damaged header (baseOffset is not covered by the CRC) must not trap; the
    // offset checks of reads and recovery refuse what these give for it.
    public var lastOffset: Int64 { baseOffset &+ Int64(lastOffsetDelta) }
    public var nextOffset: Int64 { lastOffset &+ 1 }
    /// Bytes the whole batch takes, `baseOffset` and `batchLength` included.
    public var totalSize: Int { Int(batchLength) + RecordBatchLayout.logOverhead }
    public var isTransactional: Bool { attributes.contains(.transactional) }
    public var isControl: Bool { attributes.contains(.control) }

    /// Reads the header at the start of `p`, which must hold at least 61 bytes.
    @inlinable
    public init(_ p: UnsafeRawBufferPointer) {
        baseOffset = p.be64(RecordBatchLayout.baseOffset)
        batchLength = p.be32(RecordBatchLayout.batchLength)
        partitionLeaderEpoch = p.be32(RecordBatchLayout.partitionLeaderEpoch)
        magic = p[RecordBatchLayout.magic]
        crc = p.beU32(RecordBatchLayout.crc)
        attributes = BatchAttributes(rawValue: p.be16(RecordBatchLayout.attributes))
        lastOffsetDelta = p.be32(RecordBatchLayout.lastOffsetDelta)
        baseTimestamp = p.be64(RecordBatchLayout.baseTimestamp)
        maxTimestamp = p.be64(RecordBatchLayout.maxTimestamp)
        producerId = p.be64(RecordBatchLayout.producerId)
        producerEpoch = p.be16(RecordBatchLayout.producerEpoch)
        baseSequence = p.be32(RecordBatchLayout.baseSequence)
        recordCount = p.be32(RecordBatchLayout.recordCount)
    }
}

/// What a look at the bytes at some position found.
public enum BatchCheck: Sendable {
    /// A whole, valid batch.
    case valid(BatchHeader)
    /// The bytes end before the batch does (a torn tail, or a batch still being written).
    case incomplete(needed: Int)
    /// Not a valid batch; `reason` is a short phrase for an error message.
    case invalid(reason: String)
}

public enum RecordBatchCodec {
    /// Checks the batch starting at `pos` in `p`: length, magic and (when asked) the CRC.
    public static func check(_ p: UnsafeRawBufferPointer, at pos: Int, verifyCRC: Bool = true) -> BatchCheck {
        let remaining = p.count - pos
        if remaining < RecordBatchLayout.logOverhead { return .incomplete(needed: RecordBatchLayout.logOverhead) }
        let length = Int(p.be32(pos + RecordBatchLayout.batchLength))
        if length < RecordBatchLayout.headerSize - RecordBatchLayout.logOverhead {
            return .invalid(reason: "batch length \(length) is shorter than a batch header")
        }
        let total = length + RecordBatchLayout.logOverhead
        if remaining < RecordBatchLayout.headerSize || remaining < total { return .incomplete(needed: total) }
        let batch = UnsafeRawBufferPointer(rebasing: p[pos..<(pos + total)])
        let magic = batch[RecordBatchLayout.magic]
        if magic != RecordBatchLayout.currentMagic { return .invalid(reason: "magic byte is \(magic), expected 2") }
        let header = BatchHeader(batch)
        if verifyCRC {
            let actual = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: batch[RecordBatchLayout.crcStart...]))
            if actual != header.crc {
                return .invalid(reason: "CRC mismatch (stored \(hex(header.crc)), computed \(hex(actual)))")
            }
        }
        if header.lastOffsetDelta < 0 || header.recordCount < 0 {
            return .invalid(reason: "negative record count or offset delta")
        }
        return .valid(header)
    }

    static func hex(_ v: UInt32) -> String {
        let s = String(v, radix: 16)
        return "0x" + String(repeating: "0", count: max(0, 8 - s.count)) + s
    }
}

/// One decoded record. Its buffers point into the batch bytes and are valid only inside the
/// closure that received the view.
public struct RecordView {
    public let offset: Int64
    public let timestamp: Int64
    public let key: UnsafeRawBufferPointer?
    public let value: UnsafeRawBufferPointer?
    public let headerCount: Int
    @usableFromInline let headerBytes: UnsafeRawBufferPointer

    @usableFromInline
    init(offset: Int64, timestamp: Int64, key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer?, headerCount: Int, headerBytes: UnsafeRawBufferPointer) {
        self.offset = offset
        self.timestamp = timestamp
        self.key = key
        self.value = value
        self.headerCount = headerCount
        self.headerBytes = headerBytes
    }

    /// Calls `body` with each header's name and value (nil value = null header). Views from
    /// `RecordBatchView.forEachRecord` have had their headers checked; others stop at a bad one.
    public func forEachHeader(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer?) throws -> Void) rethrows {
        var pos = 0
        for _ in 0..<max(headerCount, 0) {
            guard let nl = Varint.read(headerBytes, &pos), nl >= 0, nl <= Int64(headerBytes.count - pos) else { return }
            let name = UnsafeRawBufferPointer(rebasing: headerBytes[pos..<(pos + Int(nl))])
            pos += Int(nl)
            guard let vl = Varint.read(headerBytes, &pos) else { return }
            if vl < 0 {
                try body(name, nil)
            } else {
                guard vl <= Int64(headerBytes.count - pos) else { return }
                try body(name, UnsafeRawBufferPointer(rebasing: headerBytes[pos..<(pos + Int(vl))]))
                pos += Int(vl)
            }
        }
    }

    /// Copies the record out of the batch.
    public func materialize() -> Record {
        var headers: [RecordHeader] = []
        headers.reserveCapacity(headerCount)
        forEachHeader { name, value in
            headers.append(RecordHeader(name: String(decoding: name, as: UTF8.self), value: value.map { Array($0) }))
        }
        return Record(offset: offset, timestamp: timestamp, key: key.map { Array($0) }, value: value.map { Array($0) }, headers: headers)
    }
}

/// A record copied out of the log, owning its bytes.
public struct Record: Sendable, Hashable {
    public var offset: Int64
    public var timestamp: Int64
    public var key: [UInt8]?
    public var value: [UInt8]?
    public var headers: [RecordHeader]

    public init(offset: Int64, timestamp: Int64, key: [UInt8]?, value: [UInt8]?, headers: [RecordHeader] = []) {
        self.offset = offset
        self.timestamp = timestamp
        self.key = key
        self.value = value
        self.headers = headers
    }
}

/// One whole batch inside a buffer.
public struct RecordBatchView {
    public let header: BatchHeader
    public let bytes: UnsafeRawBufferPointer

    public init(header: BatchHeader, bytes: UnsafeRawBufferPointer) {
        self.header = header
        self.bytes = bytes
    }

    /// Decodes every record in order; compressed batches (gzip, snappy, lz4, zstd, as Kafka
    /// clients send them) are decompressed first, within
    /// `RecordBatchValidator.defaultDecompressedLimit`. Throws `corruptBatch` on a malformed
    /// record, a record count the records do not match, offset deltas that do not rise within
    /// the batch's range, or bytes after the last record; never traps on damaged bytes.
    @inlinable
    public func forEachRecord(_ body: (RecordView) throws -> Void) throws {
        let headerSize = RecordBatchLayout.headerSize
        guard bytes.count >= headerSize else { throw malformed(0) }
        // The batch's own bytes, should the buffer run on past it.
        let total = Int(header.batchLength) + RecordBatchLayout.logOverhead
        let end = total >= headerSize && total <= bytes.count ? total : bytes.count
        let batch = UnsafeRawBufferPointer(rebasing: bytes[0..<end])
        let codec = header.attributes.compression
        if codec != 0 {
            let compressed = UnsafeRawBufferPointer(rebasing: batch[headerSize...])
            let limit = RecordBatchValidator.defaultDecompressedLimit(compressedBytes: compressed.count)
            let records: [UInt8]
            do {
                records = try RecordCompression.decompress(codec: codec, compressed, limit: limit)
            } catch {
                throw LogError(error.code, "batch at offset \(header.baseOffset): \(error.message)", offset: header.baseOffset)
            }
            try records.withUnsafeBytes { try forEachRecord(in: $0, from: 0, body) }
            return
        }
        try forEachRecord(in: batch, from: headerSize, body)
    }

    /// Decodes the records in `p` from byte `start` to its end (the batch itself, or its
    /// decompressed records).
    @inlinable
    func forEachRecord(in p: UnsafeRawBufferPointer, from start: Int, _ body: (RecordView) throws -> Void) throws {
        var pos = start
        let count = Int(header.recordCount)
        guard count >= 0, header.lastOffsetDelta >= 0 else { throw malformed(start) }
        let logAppendTime = header.attributes.contains(.logAppendTime)
        var previousDelta: Int64 = -1
        for _ in 0..<count {
            let recordStart = pos
            guard let len = Varint.read(p, &pos), len > 0, len <= Int64(p.count - pos) else {
                throw malformed(recordStart)
            }
            let end = pos + Int(len)
            let rec = UnsafeRawBufferPointer(rebasing: p[0..<end])
            var q = pos + 1  // record attributes
            // Offset deltas rise within 0...lastOffsetDelta (Kafka's compaction may leave holes).
            guard let tsDelta = Varint.read(rec, &q), let offDelta = Varint.read(rec, &q),
                  offDelta > previousDelta, offDelta <= Int64(header.lastOffsetDelta),
                  let keyLen = Varint.read(rec, &q), keyLen >= -1, keyLen <= Int64(end - q)
            else { throw malformed(recordStart) }
            let (created, overflow) = header.baseTimestamp.addingReportingOverflow(tsDelta)
            guard !overflow else { throw malformed(recordStart) }
            let key = keyLen < 0 ? nil : UnsafeRawBufferPointer(rebasing: p[q..<(q + Int(keyLen))])
            q += Int(max(keyLen, 0))
            guard let valueLen = Varint.read(rec, &q), valueLen >= -1, valueLen <= Int64(end - q) else {
                throw malformed(recordStart)
            }
            let value = valueLen < 0 ? nil : UnsafeRawBufferPointer(rebasing: p[q..<(q + Int(valueLen))])
            q += Int(max(valueLen, 0))
            // Each header takes at least 2 bytes; all of them must end exactly at the record's end.
            guard let headerCount = Varint.read(rec, &q), headerCount >= 0, headerCount <= Int64(end - q) / 2 else {
                throw malformed(recordStart)
            }
            let headerStart = q
            for _ in 0..<Int(headerCount) {
                guard let nl = Varint.read(rec, &q), nl >= 0, nl <= Int64(end - q) else { throw malformed(recordStart) }
                q += Int(nl)
                guard let vl = Varint.read(rec, &q), vl >= -1, vl <= Int64(end - q) else { throw malformed(recordStart) }
                q += Int(max(vl, 0))
            }
            guard q == end else { throw malformed(recordStart) }
            let view = RecordView(
                offset: header.baseOffset &+ offDelta,
                timestamp: logAppendTime ? header.maxTimestamp : created,
                key: key, value: value, headerCount: Int(headerCount),
                headerBytes: UnsafeRawBufferPointer(rebasing: p[headerStart..<end]))
            previousDelta = offDelta
            try body(view)
            pos = end
        }
        guard pos == p.count else { throw malformed(pos) }
    }

    @usableFromInline
    func malformed(_ pos: Int) -> LogError {
        LogError(.corruptBatch, "malformed record at byte \(pos) of the batch at offset \(header.baseOffset)", offset: header.baseOffset)
    }
}

/// Walks the whole batches in a buffer (the result of a log read, or a Fetch response's
/// records), stopping at a trailing partial batch as Kafka clients do.
public struct RecordBatchIterator: IteratorProtocol {
    let buffer: UnsafeRawBufferPointer
    var position = 0
    let verifyCRC: Bool
    /// Set when iteration stopped at a batch that is not valid (rather than at the end).
    public private(set) var failure: String?

    public init(_ buffer: UnsafeRawBufferPointer, verifyCRC: Bool = true) {
        self.buffer = buffer
        self.verifyCRC = verifyCRC
    }

    public mutating func next() -> RecordBatchView? {
        guard failure == nil, position < buffer.count else { return nil }
        switch RecordBatchCodec.check(buffer, at: position, verifyCRC: verifyCRC) {
        case .valid(let header):
            let view = RecordBatchView(header: header, bytes: UnsafeRawBufferPointer(rebasing: buffer[position..<(position + header.totalSize)]))
            position += header.totalSize
            return view
        case .incomplete:
            return nil
        case .invalid(let reason):
            failure = "at byte \(position): \(reason)"
            return nil
        }
    }
}
