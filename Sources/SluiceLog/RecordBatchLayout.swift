// Byte layout of Kafka's v2 RecordBatch (magic 2), the unit Sluice stores on disk and sends
// over the wire unchanged.
//
//   0 baseOffset int64        | 8 batchLength int32 (bytes after this field)
//  12 partitionLeaderEpoch    | 16 magic int8 = 2 | 17 crc uint32 (CRC32C of bytes 21...)
//  21 attributes int16        | 23 lastOffsetDelta int32 | 27 baseTimestamp int64
//  35 maxTimestamp int64      | 43 producerId int64 | 51 producerEpoch int16
//  53 baseSequence int32      | 57 recordCount int32 | 61 records...

public enum RecordBatchLayout {
    public static let baseOffset = 0
    public static let batchLength = 8
    public static let partitionLeaderEpoch = 12
    public static let magic = 16
    public static let crc = 17
    public static let attributes = 21
    public static let lastOffsetDelta = 23
    public static let baseTimestamp = 27
    public static let maxTimestamp = 35
    public static let producerId = 43
    public static let producerEpoch = 51
    public static let baseSequence = 53
    public static let recordCount = 57
    /// Size of the fixed header; records start here.
    public static let headerSize = 61
    /// Bytes before `batchLength` counts: baseOffset and batchLength themselves.
    public static let logOverhead = 12
    /// The first byte the CRC covers.
    public static let crcStart = 21
    public static let currentMagic: UInt8 = 2
}

/// The attribute bits of a v2 batch.
public struct BatchAttributes: OptionSet, Sendable, Hashable {
    public let rawValue: Int16
    public init(rawValue: Int16) { self.rawValue = rawValue }

    public static let logAppendTime = BatchAttributes(rawValue: 1 << 3)
    public static let transactional = BatchAttributes(rawValue: 1 << 4)
    public static let control = BatchAttributes(rawValue: 1 << 5)
    public static let hasDeleteHorizon = BatchAttributes(rawValue: 1 << 6)

    /// Compression codec in bits 0-2: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    public var compression: Int { Int(rawValue & 0x7) }
}
