// EmbeddedBroker: the in-process broker — the composition root that owns the data directory,
// topics, partition handles, the group and transaction coordinators, and the maintenance
// loop (session expiry, transaction timeouts, offset expiry, group snapshots). Producers and
// consumers are thin clients of it; the Kafka wire listener will be another.
import Logging
import SluiceLog
import Synchronization

public struct BrokerConfig: Sendable {
    public var groups = GroupConfig()
    /// Settings of share groups that have none of their own.
    public var shares = ShareGroupSettings()
    /// The clock of group and share-group timers (a test injects its own).
    public var clock: @Sendable () -> Int64 = { currentTimeMillis() }
    /// How often the maintenance loop runs.
    public var tickIntervalMs: Int64 = 20
    public init() {}
}

public final class EmbeddedBroker: Sendable {
    public let topics: TopicManager
    public let groups: GroupCoordinator
    public let transactions: TransactionCoordinator
    public let shares: ShareCoordinator
    let offsets: OffsetStore
    let logger: Logger
    let config: BrokerConfig
    private let handles = Mutex<[TopicPartition: PartitionHandle]>([:])
    private let maintenance = Mutex<Task<Void, Never>?>(nil)

    /// Opens (creating) the data directory at `path` for writing, loads committed offsets and
    /// transaction state, finishes transactions prepared before a crash, and starts the
    /// maintenance loop. Call `close()` when done.
    public static func open(path: String, config: BrokerConfig = BrokerConfig(), logger: Logger = Logger(label: "sluice.broker")) async throws -> EmbeddedBroker {
        let directory = try DataDirectory(path: path, readOnly: false)
        let topics = TopicManager(directory: directory, logger: logger)
        let broker = try EmbeddedBroker(topics: topics, config: config, logger: logger)
        try? broker.offsets.compactIfNeeded()
        await broker.transactions.recover()
        broker.startMaintenance()
        return broker
    }

    private init(topics: TopicManager, config: BrokerConfig, logger: Logger) throws {
        self.topics = topics
        self.config = config
        self.logger = logger
        offsets = try OffsetStore(topics: topics, logger: logger)
        let counts: @Sendable (TopicName) -> Int32? = { [topics] name in try? topics.config(name).partitions }
        groups = GroupCoordinator(offsets: offsets, config: config.groups, logger: logger, clock: config.clock, partitionCounts: counts)
        let handlesBox = HandleLookup()
        transactions = try TransactionCoordinator(topics: topics, groups: groups, partitions: { tp in try handlesBox.lookup(tp) }, logger: logger)
        shares = try ShareCoordinator(topics: topics, defaults: config.shares, clock: config.clock, logger: logger,
            partition: { tp in try handlesBox.lookup(tp) },
            createTopic: { [topics] name, count in
                let t = try TopicName(name)
                if !topics.exists(t) { try topics.create(t, config: TopicConfig(partitions: count, flush: "interval")) }
            })
        handlesBox.broker.withLock { $0 = WeakBroker(broker: nil) }
        handlesBox.set(self)
    }

    private func startMaintenance() {
        let interval = config.tickIntervalMs
        let task = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(interval))
                guard let self else { return }
                await self.groups.tick()
                await self.transactions.abortTimedOut()
                await self.shares.tick()
            }
        }
        maintenance.withLock { $0 = task }
    }

    /// Stops the maintenance loop, records group snapshots, and flushes and closes every log.
    public func close() async {
        let task = maintenance.withLock { t -> Task<Void, Never>? in defer { t = nil }; return t }
        task?.cancel()
        _ = await task?.value
        await groups.flushSnapshots()
        handles.withLock { $0.removeAll() }
        topics.close()
        topics.directory.release()
    }

    // MARK: Partitions

    /// The partition's handle, opened on first use.
    public func partition(_ tp: TopicPartition) throws -> PartitionHandle {
        if let h = handles.withLock({ $0[tp] }) { return h }
        let log = try topics.partitionLog(tp.topic, tp.partition)
        let handle = try PartitionHandle(topicPartition: tp, log: log, logger: logger)
        return handles.withLock { table in
            if let existing = table[tp] { return existing }
            table[tp] = handle
            return handle
        }
    }

    public func partitionCount(_ topic: TopicName) throws -> Int32 {
        try topics.config(topic).partitions
    }

    /// Creates a topic unless it exists with at least as many partitions.
    @discardableResult
    public func createTopic(_ name: String, partitions: Int32, flush: String = "interval") throws -> TopicName {
        let topic = try TopicName(name)
        if topics.exists(topic) { return topic }
        try topics.create(topic, config: TopicConfig(partitions: partitions, flush: flush))
        return topic
    }

    /// Deletes a topic and forgets its open partition handles.
    public func deleteTopic(_ name: TopicName) throws {
        _ = handles.withLock { table in
            for tp in table.keys where tp.topic == name { table[tp] = nil }
        }
        try topics.delete(name)
    }

    /// Grows a topic's partition count; groups consuming it rebalance.
    public func addPartitions(_ topic: TopicName, total: Int32) async throws {
        try topics.addPartitions(topic, total: total)
        await groups.partitionsChanged(topic)
        await shares.partitionsChanged()
    }

    /// Reads from a partition, waiting up to `maxWait` for data when there is none yet.
    public func fetch(_ tp: TopicPartition, offset: Int64, maxBytes: Int = 1 << 20, isolation: IsolationLevel = .readUncommitted, maxWait: Duration = .zero) async throws -> FetchedData {
        let handle = try partition(tp)
        var data = try handle.read(from: offset, maxBytes: maxBytes, isolation: isolation)
        if data.isEmpty && maxWait > .zero {
            await handle.waitForData(after: offset, isolation: isolation, timeout: maxWait)
            data = try handle.read(from: offset, maxBytes: maxBytes, isolation: isolation)
        }
        return data
    }

    /// Waits until any of `positions` (partition, offset) has data past its offset for
    /// `isolation`, or `deadline` passes (a wire Fetch's long poll over several partitions).
    public func waitForData(_ positions: [(TopicPartition, Int64)], isolation: IsolationLevel, until deadline: ContinuousClock.Instant) async {
        let wake = AppendNotifier()
        var handles: [(PartitionHandle, Int64, UInt64)] = []
        for (tp, offset) in positions {
            guard let h = try? partition(tp) else { continue }
            handles.append((h, offset, h.log.addAppendListener { _ in wake.signal() }))
        }
        defer { for (h, _, token) in handles { h.log.removeAppendListener(token) } }
        while ContinuousClock.now < deadline, !Task.isCancelled {
            let ticket = wake.ticket()
            for (h, offset, _) in handles where (isolation == .readCommitted ? h.lastStableOffset : h.highWatermark) > offset { return }
            await wake.wait(ticket, until: deadline)
        }
    }

    /// Waits until share group `groupId` could acquire records of `tps` (new records were
    /// appended, or some were released or their locks ran out) or `deadline` passes. True when
    /// it can acquire something (the share consumer's and ShareFetch's long poll).
    @discardableResult
    public func waitForShareRecords(_ groupId: String, _ tps: [TopicPartition], until deadline: ContinuousClock.Instant) async -> Bool {
        let wake = AppendNotifier()
        let ticket = wake.ticket()
        var listeners: [(PartitionHandle, UInt64)] = []
        for tp in tps {
            guard let h = try? partition(tp) else { continue }
            listeners.append((h, h.log.addAppendListener { _ in wake.signal() }))
        }
        let token = await shares.addWaiter { wake.signal() }
        var ready = await shares.canAcquire(groupId: groupId, tps)
        if !ready {
            await wake.wait(ticket, until: deadline)
            ready = await shares.canAcquire(groupId: groupId, tps)
        }
        await shares.removeWaiter(token)
        for (h, t) in listeners { h.log.removeAppendListener(t) }
        return ready
    }

    // MARK: Offsets

    /// Committed offsets of a group and the lag of each partition (high watermark − committed).
    public func lag(groupId: String) async throws -> [(TopicPartition, committed: Int64, end: Int64, lag: Int64)] {
        let committed = await groups.committedOffsets(groupId: groupId)
        return try committed.keys.sorted().map { tp in
            let end = try partition(tp).highWatermark
            let c = committed[tp]!.offset
            return (tp, c, end, max(0, end - c))
        }
    }
}

/// Lets the transaction coordinator reach partition handles of a broker that is still being
/// built when the coordinator is.
final class HandleLookup: Sendable {
    let broker = Mutex(WeakBroker(broker: nil))

    func set(_ b: EmbeddedBroker) { broker.withLock { $0 = WeakBroker(broker: b) } }

    func lookup(_ tp: TopicPartition) throws -> PartitionHandle {
        guard let b = broker.withLock({ $0.broker }) else { throw BrokerError(.closed, "the broker is closed") }
        return try b.partition(tp)
    }
}

struct WeakBroker: @unchecked Sendable {
    // Set once under HandleLookup's mutex.
    weak var broker: EmbeddedBroker?
}
