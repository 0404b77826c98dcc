// Per-topic settings, stored in `<data>/topics/<topic>/topic.json`.
import SluiceLog

public struct TopicConfig: Sendable, Hashable, Codable {
    public var partitions: Int32
    /// "always", "interval" or "never".
    public var flush: String
    public var flushIntervalMs: Int64
    public var retentionMs: Int64
    public var retentionBytes: Int64
    public var segmentBytes: Int
    public var segmentMs: Int64

    public static let defaultFlushIntervalMs: Int64 = 50

    public init(
        partitions: Int32 = 1,
        flush: String = "interval",
        flushIntervalMs: Int64 = TopicConfig.defaultFlushIntervalMs,
        retentionMs: Int64 = 7 * 24 * 3_600_000,
        retentionBytes: Int64 = -1,
        segmentBytes: Int = 128 * 1024 * 1024,
        segmentMs: Int64 = 7 * 24 * 3_600_000
    ) {
        self.partitions = partitions
        self.flush = flush
        self.flushIntervalMs = flushIntervalMs
        self.retentionMs = retentionMs
        self.retentionBytes = retentionBytes
        self.segmentBytes = segmentBytes
        self.segmentMs = segmentMs
    }

    /// Checks every field; the error names the first bad one.
    public func validate() throws {
        if partitions < 1 || partitions > 10_000 {
            throw BrokerError(.invalidConfig, "partitions must be between 1 and 10000, got \(partitions)")
        }
        if !["always", "interval", "never"].contains(flush) {
            throw BrokerError(.invalidConfig, "flush must be always, interval or never, got '\(flush)'")
        }
        if flushIntervalMs < 1 { throw BrokerError(.invalidConfig, "the flush interval must be at least 1 ms, got \(flushIntervalMs)") }
        if retentionMs < -1 { throw BrokerError(.invalidConfig, "retention must be a duration or -1 (forever), got \(retentionMs) ms") }
        if retentionBytes < -1 { throw BrokerError(.invalidConfig, "retention bytes must be a size or -1 (no limit), got \(retentionBytes)") }
        if segmentBytes < 1024 { throw BrokerError(.invalidConfig, "segment size must be at least 1024 bytes, got \(segmentBytes)") }
        if segmentMs < 1 { throw BrokerError(.invalidConfig, "segment age must be at least 1 ms, got \(segmentMs)") }
    }

    public var flushPolicy: FlushPolicy {
        switch flush {
        case "always": .always
        case "never": .never
        default: .interval(milliseconds: flushIntervalMs)
        }
    }

    public var logConfig: LogConfig {
        LogConfig(flush: flushPolicy, segmentBytes: segmentBytes, segmentMs: segmentMs, retentionMs: retentionMs, retentionBytes: retentionBytes)
    }
}
