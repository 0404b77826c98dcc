// Kafka's transaction control records (commit and abort markers).

public enum ControlRecordType: Int16, Sendable {
    case abort = 0
    case commit = 1
}

public enum ControlRecord {
    /// Builds the one-record control batch that ends a transaction of `producerId`.
    /// Key: version int16 (0), type int16. Value: version int16 (0), coordinator epoch int32.
    public static func batch(_ type: ControlRecordType, producerId: Int64, producerEpoch: Int16, coordinatorEpoch: Int32 = 0, timestamp: Int64) -> RecordBatchBuilder {
        var builder = RecordBatchBuilder(capacity: 128)
        builder.attributes = [.transactional, .control]
        builder.producerId = producerId
        builder.producerEpoch = producerEpoch
        builder.baseSequence = -1
        let key: [UInt8] = [0, 0, 0, UInt8(type.rawValue)]
        let e = UInt32(bitPattern: coordinatorEpoch)
        let value: [UInt8] = [0, 0, UInt8(e >> 24), UInt8((e >> 16) & 0xff), UInt8((e >> 8) & 0xff), UInt8(e & 0xff)]
        builder.append(key: key, value: value, timestamp: timestamp)
        return builder
    }

    /// The marker type of a control batch, read from its first record's key.
    public static func type(of batch: RecordBatchView) -> ControlRecordType? {
        var found: ControlRecordType?
        try? batch.forEachRecord { r in
            guard found == nil, let k = r.key, k.count >= 4 else { return }
            found = ControlRecordType(rawValue: Int16(k[2]) << 8 | Int16(k[3]))
        }
        return found
    }
}
