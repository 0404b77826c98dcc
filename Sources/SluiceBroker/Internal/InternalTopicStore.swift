// InternalTopicStore: a durable key → value map kept in one partition of an internal topic
// (`__consumer_offsets`, `__transaction_state`). Every change is appended as a record (a null
// value deletes the key); opening replays the log, keeping the latest value per key, and
// compaction rewrites the log to just those values. Thread-safe.
import Logging
import SluiceLog
import Synchronization

final class InternalTopicStore: Sendable {
    let topic: TopicName
    private let topics: TopicManager
    private let handle: Mutex<PartitionHandle>
    private let logger: Logger
    /// Compact when the log holds more than this many bytes and at least 4× the live data.
    let compactionThresholdBytes: Int

    init(topics: TopicManager, name: String, flush: String, flushIntervalMs: Int64 = 5, logger: Logger, compactionThresholdBytes: Int = 64 << 20) throws {
        self.topics = topics
        self.logger = logger
        self.compactionThresholdBytes = compactionThresholdBytes
        topic = try TopicName(name)
        if !topics.exists(topic) && topics.isReadOnly {
            throw BrokerError(.unknownTopic, "\(name) does not exist yet")
        }
        if !topics.exists(topic) {
            var config = TopicConfig(partitions: 1, flush: flush, flushIntervalMs: flushIntervalMs, retentionMs: -1)
            config.segmentBytes = 16 << 20
            try topics.create(topic, config: config)
        }
        handle = Mutex(try PartitionHandle(topicPartition: TopicPartition(topic, 0), log: topics.partitionLog(topic, 0), logger: logger))
    }

    private var current: PartitionHandle { handle.withLock { $0 } }

    /// Every live key and its latest value, in log order of last write.
    func load() throws -> [[UInt8]: [UInt8]] {
        var map: [[UInt8]: [UInt8]] = [:]
        let h = current
        var offset = h.logStartOffset
        while offset < h.highWatermark {
            let data = try h.read(from: offset, maxBytes: 4 << 20, isolation: .readUncommitted)
            if data.isEmpty { break }
            try data.forEachRecord(from: offset) { r in
                guard let key = r.key else { return }
                map[Array(key)] = r.value.map { Array($0) }
            }
            offset = data.nextOffset
        }
        return map.compactMapValues { $0 }
    }

    /// Appends changes (nil deletes) as one batch and waits until they are durable: until the
    /// group commit that covers them or, with `syncNow`, by syncing the log at once (about a
    /// fifth of a millisecond here, where the group commit waits up to the flush interval).
    func write(_ changes: [([UInt8], [UInt8]?)], syncNow: Bool = false) async throws {
        guard !changes.isEmpty else { return }
        let h = current
        var builder = RecordBatchBuilder(capacity: changes.reduce(128) { $0 + $1.0.count + ($1.1?.count ?? 0) + 16 })
        let now = currentTimeMillis()
        for (k, v) in changes { builder.append(key: k, value: v, timestamp: now) }
        let result = try h.append(&builder)
        if syncNow {
            do { try h.log.flush() } catch let e as LogError { throw BrokerError(.log, e.message, cause: e) }
        } else {
            try await h.log.waitUntilDurable(result.lastOffset)
        }
    }

    /// Appends changes as one batch without waiting; returns the offset to pass to
    /// `waitUntilDurable` (for callers that must not wait while holding their state).
    func append(_ changes: [([UInt8], [UInt8]?)]) throws -> Int64 {
        let h = current
        var builder = RecordBatchBuilder(capacity: changes.reduce(128) { $0 + $1.0.count + ($1.1?.count ?? 0) + 16 })
        let now = currentTimeMillis()
        for (k, v) in changes { builder.append(key: k, value: v, timestamp: now) }
        return try h.append(&builder).lastOffset
    }

    func waitUntilDurable(_ offset: Int64) async throws {
        try await current.log.waitUntilDurable(offset)
    }

    /// Bytes the store's log takes on disk.
    var sizeInBytes: Int { current.log.sizeInBytes }

    /// Rewrites the log to hold only the live values when it has grown well past them.
    /// The rewrite is built beside the partition and swapped in by rename.
    func compactIfNeeded(live: [[UInt8]: [UInt8]]) throws {
        let size = sizeInBytes
        let liveBytes = live.reduce(0) { $0 + $1.key.count + $1.value.count + 24 }
        guard size > compactionThresholdBytes && size > 4 * liveBytes else { return }
        try topics.rewritePartition(topic, 0) { log in
            var builder = RecordBatchBuilder(capacity: 1 << 20)
            let now = currentTimeMillis()
            for (k, v) in live {
                builder.append(key: k, value: v, timestamp: now)
                if builder.byteCount > 1 << 20 { try log.append(&builder); builder.reset() }
            }
            if !builder.isEmpty { try log.append(&builder) }
        }
        let fresh = try PartitionHandle(topicPartition: TopicPartition(topic, 0), log: topics.partitionLog(topic, 0), logger: logger)
        handle.withLock { $0 = fresh }
        logger.info("compacted \(topic): \(size) bytes to \(sizeInBytes) bytes, \(live.count) keys")
    }
}
