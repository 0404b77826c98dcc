// Encodes records into one Kafka v2 RecordBatch, in place, with no per-record allocation.

/// Builds a v2 RecordBatch. Reuse one builder across batches: `reset()` keeps its buffer.
///
/// ```swift
/// var builder = RecordBatchBuilder()
/// builder.append(key: Array("user-1".utf8), value: Array("hello".utf8), timestamp: nowMs)
/// let first = try log.append(&builder)
/// ```
public struct RecordBatchBuilder: Sendable {
    public private(set) var bytes: [UInt8]
    public private(set) var recordCount: Int32 = 0
    public private(set) var baseTimestamp: Int64 = 0
    public private(set) var maxTimestamp: Int64 = -1
    public var attributes: BatchAttributes = []
    public var producerId: Int64 = -1
    public var producerEpoch: Int16 = -1
    public var baseSequence: Int32 = -1
    public var partitionLeaderEpoch: Int32 = -1
    /// True once `seal()` has filled the header; appending reopens the batch.
    public private(set) var isSealed = false

    public init(capacity: Int = 16 * 1024) {
        bytes = []
        bytes.reserveCapacity(max(capacity, RecordBatchLayout.headerSize))
        bytes.append(contentsOf: repeatElement(0, count: RecordBatchLayout.headerSize))
    }

    /// Empties the batch, keeping the buffer's capacity and the producer fields.
    public mutating func reset() {
        bytes.removeAll(keepingCapacity: true)
        bytes.append(contentsOf: repeatElement(0, count: RecordBatchLayout.headerSize))
        recordCount = 0
        baseTimestamp = 0
        maxTimestamp = -1
        isSealed = false
    }

    public var isEmpty: Bool { recordCount == 0 }
    /// Encoded size so far, header included.
    public var byteCount: Int { bytes.count }

    /// Appends one record. `key == nil` is a null key; header values may be null.
    public mutating func append(
        key: UnsafeRawBufferPointer?,
        value: UnsafeRawBufferPointer?,
        timestamp: Int64,
        headers: [RecordHeader] = []
    ) {
        if recordCount == 0 { baseTimestamp = timestamp }
        if timestamp > maxTimestamp { maxTimestamp = timestamp }
        let tsDelta = timestamp - baseTimestamp
        let offsetDelta = Int64(recordCount)
        let keyLen = key.map { Int64($0.count) } ?? -1
        let valueLen = value.map { Int64($0.count) } ?? -1

        var bodySize = 1 + Varint.size(tsDelta) + Varint.size(offsetDelta)
        bodySize += Varint.size(keyLen) + max(0, Int(keyLen))
        bodySize += Varint.size(valueLen) + max(0, Int(valueLen))
        bodySize += Varint.size(Int64(headers.count))
        for h in headers {
            let n = h.name.utf8.count
            bodySize += Varint.size(Int64(n)) + n
            let v = h.value.map { Int64($0.count) } ?? -1
            bodySize += Varint.size(v) + max(0, Int(v))
        }

        Varint.append(Int64(bodySize), to: &bytes)
        bytes.append(0)  // record attributes, unused
        Varint.append(tsDelta, to: &bytes)
        Varint.append(offsetDelta, to: &bytes)
        Varint.append(keyLen, to: &bytes)
        if let key { bytes.append(contentsOf: key) }
        Varint.append(valueLen, to: &bytes)
        if let value { bytes.append(contentsOf: value) }
        Varint.append(Int64(headers.count), to: &bytes)
        for h in headers {
            Varint.append(Int64(h.name.utf8.count), to: &bytes)
            bytes.append(contentsOf: h.name.utf8)
            if let v = h.value {
                Varint.append(Int64(v.count), to: &bytes)
                bytes.append(contentsOf: v)
            } else {
                Varint.append(-1, to: &bytes)
            }
        }
        recordCount += 1
        isSealed = false
    }

    public mutating func append(key: [UInt8]?, value: [UInt8]?, timestamp: Int64, headers: [RecordHeader] = []) {
        switch (key, value) {
        case let (k?, v?):
            k.withUnsafeBytes { kb in v.withUnsafeBytes { vb in append(key: kb, value: vb, timestamp: timestamp, headers: headers) } }
        case let (k?, nil):
            k.withUnsafeBytes { append(key: $0, value: nil as UnsafeRawBufferPointer?, timestamp: timestamp, headers: headers) }
        case let (nil, v?):
            v.withUnsafeBytes { append(key: nil as UnsafeRawBufferPointer?, value: $0, timestamp: timestamp, headers: headers) }
        case (nil, nil):
            append(key: nil as UnsafeRawBufferPointer?, value: nil as UnsafeRawBufferPointer?, timestamp: timestamp, headers: headers)
        }
    }

    /// Gives the log the sealed batch's bytes so it can patch the base offset in place.
    mutating func withSealedBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        if !isSealed { seal() }
        return try bytes.withUnsafeMutableBytes { try body($0) }
    }

    /// Fills the header and the CRC. The base offset stays 0; the log patches it on append
    /// (the CRC does not cover it).
    public mutating func seal() {
        precondition(recordCount > 0, "an empty batch cannot be sealed")
        let count = bytes.count
        let header = (
            attributes.rawValue, recordCount, baseTimestamp, maxTimestamp,
            producerId, producerEpoch, baseSequence, partitionLeaderEpoch
        )
        bytes.withUnsafeMutableBytes { p in
            p.storeBE(Int64(0), at: RecordBatchLayout.baseOffset)
            p.storeBE(Int32(count - RecordBatchLayout.logOverhead), at: RecordBatchLayout.batchLength)
            p.storeBE(header.7, at: RecordBatchLayout.partitionLeaderEpoch)
            p[RecordBatchLayout.magic] = RecordBatchLayout.currentMagic
            p.storeBE(header.0, at: RecordBatchLayout.attributes)
            p.storeBE(header.1 - 1, at: RecordBatchLayout.lastOffsetDelta)
            p.storeBE(header.2, at: RecordBatchLayout.baseTimestamp)
            p.storeBE(header.3, at: RecordBatchLayout.maxTimestamp)
            p.storeBE(header.4, at: RecordBatchLayout.producerId)
            p.storeBE(header.5, at: RecordBatchLayout.producerEpoch)
            p.storeBE(header.6, at: RecordBatchLayout.baseSequence)
            p.storeBE(header.1, at: RecordBatchLayout.recordCount)
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: p[RecordBatchLayout.crcStart...]))
            p.storeBE(crc, at: RecordBatchLayout.crc)
        }
        isSealed = true
    }
}
