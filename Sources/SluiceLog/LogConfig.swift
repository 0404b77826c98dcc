// Per-log settings: flush policy, segment rolling, retention.

/// When appended data is forced to stable storage.
public enum FlushPolicy: Sendable, Hashable, CustomStringConvertible {
    /// fdatasync before an append returns; readers see a batch only once it is durable.
    case always
    /// Group commit: a background flusher syncs every `milliseconds`; appends that ask for
    /// durability wait for the flush that covers them.
    case interval(milliseconds: Int64)
    /// The OS writes back when it likes; nothing waits.
    case never

    public var description: String {
        switch self {
        case .always: "always"
        case .interval(let ms): "interval(\(ms)ms)"
        case .never: "never"
        }
    }

    public var name: String {
        switch self {
        case .always: "always"
        case .interval: "interval"
        case .never: "never"
        }
    }
}

public struct LogConfig: Sendable, Hashable {
    public var flush: FlushPolicy
    /// A segment rolls when the next batch would take it past this size.
    public var segmentBytes: Int
    /// A segment rolls when its first batch is older than this (ms).
    public var segmentMs: Int64
    /// Segments whose newest record is older than this are deleted (ms); -1 keeps forever.
    public var retentionMs: Int64
    /// Oldest segments are deleted while the log is bigger than this; -1 means no limit.
    public var retentionBytes: Int64
    /// Bytes of log between two sparse index entries.
    public var indexIntervalBytes: Int
    /// The largest batch an append accepts.
    public var maxBatchBytes: Int
    /// The default of `maxBatchBytes` (Kafka's `message.max.bytes` plays this part): 8 MiB.
    public static let defaultMaxBatchBytes = 8 * 1024 * 1024

    public init(
        flush: FlushPolicy = .interval(milliseconds: 50),
        segmentBytes: Int = 128 * 1024 * 1024,
        segmentMs: Int64 = 7 * 24 * 3_600_000,
        retentionMs: Int64 = 7 * 24 * 3_600_000,
        retentionBytes: Int64 = -1,
        indexIntervalBytes: Int = 4096,
        maxBatchBytes: Int = LogConfig.defaultMaxBatchBytes
    ) {
        self.flush = flush
        self.segmentBytes = segmentBytes
        self.segmentMs = segmentMs
        self.retentionMs = retentionMs
        self.retentionBytes = retentionBytes
        self.indexIntervalBytes = indexIntervalBytes
        self.maxBatchBytes = maxBatchBytes
    }
}
