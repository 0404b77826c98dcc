// ShareCoordinator: the broker's share groups (KIP-932, "queues for Kafka"). It keeps each
// group's members (ShareGroupMembership) and each share-partition's records in flight
// (SharePartitionState), hands records out under time-limited locks, settles
// acknowledgements, expires locks and sessions, copies rejected and over-delivered records to
// the group's dead-letter topic, and keeps its state durable in `__share_group_state`:
//   key 's' + group + topic + partition → the partition's snapshot (start offset and runs)
//   key 2 + group → the group's settings (JSON)
//   key 3 + group → its members as last seen (JSON; for inspection, not restored)
// (key 1 + group + topic + partition → the partition's snapshot, runs with their holders)
// Time comes from an injected clock, so its rules are tested without waiting. An actor: it is
// visited once per fetched batch, not per record.
import Foundation
import Logging
import SluiceLog

/// A share group's settings (Kafka's `share.*` group configs, plus a dead-letter topic).
public struct ShareGroupSettings: Sendable, Hashable, Codable {
    /// How long acquired records stay locked to a member (`share.record.lock.duration.ms`).
    public var lockMs: Int64 = 30_000
    /// Deliveries before a record is archived (`share.delivery.count.limit`).
    public var maxDeliveries: Int = 5
    /// Where a share-partition without state starts: the log's end or its start
    /// (`share.auto.offset.reset`).
    public var startAtEarliest = false
    /// Records in flight per partition (`group.share.partition.max.record.locks`).
    public var maxInFlight: Int = 2_000
    /// Rejected and over-delivered records are copied here, with headers saying why.
    public var deadLetterTopic: String?
    /// A member that sends no heartbeat for this long leaves (`share.session.timeout.ms`).
    public var sessionTimeoutMs: Int64 = 45_000
    /// How often members should heartbeat (`share.heartbeat.interval.ms`).
    public var heartbeatIntervalMs: Int32 = 5_000

    public init() {}

    var limits: ShareLimits { ShareLimits(lockMs: lockMs, maxDeliveries: maxDeliveries, maxInFlight: maxInFlight) }

    /// The settings as Kafka's group configs name them (IncrementalAlterConfigs and
    /// DescribeConfigs on a GROUP resource); the dead-letter topic uses KIP-1191's name.
    public var configEntries: [(name: String, value: String)] {
        [("share.record.lock.duration.ms", "\(lockMs)"), ("share.delivery.count.limit", "\(maxDeliveries)"),
         ("share.auto.offset.reset", startAtEarliest ? "earliest" : "latest"), ("share.partition.max.record.locks", "\(maxInFlight)"),
         ("share.session.timeout.ms", "\(sessionTimeoutMs)"), ("share.heartbeat.interval.ms", "\(heartbeatIntervalMs)"),
         ("errors.deadletterqueue.topic.name", deadLetterTopic ?? "")]
    }

    /// Sets one group config by its Kafka name; nil takes the value from `defaults`.
    public mutating func set(_ name: String, _ value: String?, defaults: ShareGroupSettings) throws(BrokerError) {
        func number(_ v: String?) throws(BrokerError) -> Int64? {
            guard let v else { return nil }
            guard let n = Int64(v) else { throw BrokerError(.invalidConfig, "\(name) must be a whole number, not '\(v)'") }
            return n
        }
        switch name {
        case "share.record.lock.duration.ms": lockMs = try number(value) ?? defaults.lockMs
        case "share.delivery.count.limit": maxDeliveries = Int(clamping: try number(value) ?? Int64(defaults.maxDeliveries))
        case "share.partition.max.record.locks": maxInFlight = Int(clamping: try number(value) ?? Int64(defaults.maxInFlight))
        case "share.session.timeout.ms": sessionTimeoutMs = try number(value) ?? defaults.sessionTimeoutMs
        case "share.heartbeat.interval.ms": heartbeatIntervalMs = Int32(clamping: try number(value) ?? Int64(defaults.heartbeatIntervalMs))
        case "share.auto.offset.reset":
            switch value {
            case nil: startAtEarliest = defaults.startAtEarliest
            case "earliest": startAtEarliest = true
            case "latest": startAtEarliest = false
            default: throw BrokerError(.invalidConfig, "share.auto.offset.reset must be earliest or latest, not '\(value!)' (by_duration is not supported)")
            }
        case "errors.deadletterqueue.topic.name": deadLetterTopic = (value?.isEmpty ?? true) ? (value == nil ? defaults.deadLetterTopic : nil) : value
        default:
            throw BrokerError(.invalidConfig, "'\(name)' is not a share group config (known: \(ShareGroupSettings().configEntries.map(\.name).joined(separator: ", ")))")
        }
    }

    /// Checks the values, naming the first that is out of range.
    public func validate() throws(BrokerError) {
        guard lockMs >= 100 && lockMs <= 3_600_000 else { throw BrokerError(.invalidConfig, "lock duration \(lockMs) ms is outside 100 ms...1 h") }
        guard maxDeliveries >= 1 && maxDeliveries <= 100 else { throw BrokerError(.invalidConfig, "max deliveries \(maxDeliveries) is outside 1...100") }
        guard maxInFlight >= 1 && maxInFlight <= 1_000_000 else { throw BrokerError(.invalidConfig, "max in-flight records \(maxInFlight) is outside 1...1000000") }
        guard sessionTimeoutMs >= 100 else { throw BrokerError(.invalidConfig, "session timeout \(sessionTimeoutMs) ms is below 100 ms") }
        guard heartbeatIntervalMs >= 10 && Int64(heartbeatIntervalMs) < sessionTimeoutMs else {
            throw BrokerError(.invalidConfig, "heartbeat interval \(heartbeatIntervalMs) ms must be at least 10 ms and below the session timeout (\(sessionTimeoutMs) ms)")
        }
        if let t = deadLetterTopic, (try? TopicName(t)) == nil { throw BrokerError(.invalidTopicName, "dead-letter topic '\(t)' is not a valid topic name") }
    }
}

/// What one fetch acquired in a partition, or why the partition could not be served.
public struct ShareAcquisition: Sendable {
    public var topicPartition: TopicPartition
    public var ranges: [AcquiredRange]
    public var error: BrokerError?
}

/// What a share group looks like now (for `sluice queue describe` and ShareGroupDescribe).
public struct ShareGroupDescription: Sendable {
    public struct Member: Sendable {
        public var memberId: String
        public var clientId: String
        public var clientHost: String
        public var epoch: Int32
        public var topics: [String]
        public var assignment: [TopicPartition]
    }
    public struct Partition: Sendable {
        public var topicPartition: TopicPartition
        public var startOffset: Int64
        public var endOffset: Int64
        public var logEndOffset: Int64
        public var inFlight: Int
        public var available: Int
        public var acquired: Int
        public var acknowledged: Int
        public var archived: Int
        /// Acquired records per member id.
        public var acquiredBy: [String: Int]
    }
    public var groupId: String
    public var epoch: Int32
    public var settings: ShareGroupSettings
    public var members: [Member]
    public var partitions: [Partition]
    public var state: String { members.isEmpty ? "Empty" : "Stable" }
}

public actor ShareCoordinator {
    struct Key: Hashable {
        var group: String
        var tp: TopicPartition
    }

    private let store: InternalTopicStore
    private let clock: @Sendable () -> Int64
    private let logger: Logger
    private let partitionHandle: @Sendable (TopicPartition) throws -> PartitionHandle
    private let partitionCount: @Sendable (String) -> Int32?
    private let createTopic: @Sendable (String, Int32) throws -> Void
    private var defaults: ShareGroupSettings
    private var settings: [String: ShareGroupSettings] = [:]
    private var groups: [String: ShareGroupMembership] = [:]
    private var partitions: [Key: SharePartitionState] = [:]
    /// Each member id's number in share-partition state, per group. It outlives membership:
    /// a member that left may still settle what it holds (as in Kafka, where the share
    /// partitions, not the group, know who holds a record).
    private var slots: [String: [String: Int32]] = [:]
    private var nextSlot: Int32 = 0
    private var dirty: Set<Key> = []
    private var waiters: [UInt64: @Sendable () -> Void] = [:]
    private var nextWaiter: UInt64 = 0
    /// Archived records dead-lettered per group (since this process started).
    private var deadLettered: [String: Int] = [:]

    init(topics: TopicManager, defaults: ShareGroupSettings, clock: @escaping @Sendable () -> Int64, logger: Logger,
         partition: @escaping @Sendable (TopicPartition) throws -> PartitionHandle,
         createTopic: @escaping @Sendable (String, Int32) throws -> Void) throws {
        store = try InternalTopicStore(topics: topics, name: "__share_group_state", flush: "interval", flushIntervalMs: 2, logger: logger)
        self.clock = clock
        self.logger = logger
        self.defaults = defaults
        self.partitionHandle = partition
        self.createTopic = createTopic
        partitionCount = { [topics] name in (try? TopicName(name)).flatMap { try? topics.config($0).partitions } }
        let live = try store.load()
        var loadedSettings: [String: ShareGroupSettings] = [:]
        var loadedPartitions: [Key: SharePartitionState] = [:]
        for (key, value) in live {
            do {
                var r = WireReader(key)
                switch try r.int16() {
                case 1:
                    let group = try r.string()
                    let tp = TopicPartition(try TopicName(try r.string()), try r.int32())
                    loadedPartitions[Key(group: group, tp: tp)] = SharePartitionState(restoring: try Self.decodeSnapshot(value).snapshot)
                case 2:
                    loadedSettings[try r.string()] = try JSONDecoder().decode(ShareGroupSettings.self, from: Data(value))
                default:
                    continue
                }
            } catch {
                logger.warning("__share_group_state: skipped an unreadable entry: \(error)")
            }
        }
        settings = loadedSettings
        partitions = loadedPartitions
        try? store.compactIfNeeded(live: live)
    }

    // MARK: Settings

    public func settings(of groupId: String) -> ShareGroupSettings { settings[groupId] ?? defaults }

    /// Applies group configs by their Kafka names (nil: back to the broker's default), durably
    /// unless `validateOnly`.
    public func alterConfigs(_ groupId: String, _ changes: [(name: String, value: String?)], validateOnly: Bool = false) async throws {
        var s = settings(of: groupId)
        for (name, value) in changes { try s.set(name, value, defaults: defaults) }
        try s.validate()
        if !validateOnly { try await configure(groupId, s) }
    }

    /// Sets a group's settings, durably. Locks already granted keep their deadline.
    public func configure(_ groupId: String, _ new: ShareGroupSettings) async throws {
        try new.validate()
        settings[groupId] = new
        var w = WireWriter()
        w.int16(2)
        w.string(groupId)
        let offset = try store.append([(w.bytes, Array(try JSONEncoder().encode(new)))])
        try await store.waitUntilDurable(offset)
    }

    // MARK: Membership

    /// A member's heartbeat (see ShareGroupMembership.heartbeat).
    public func heartbeat(groupId: String, memberId: String, epoch: Int32, topics: [String]?, clientId: String = "", clientHost: String = "", rackId: String? = nil) throws -> (result: ShareHeartbeatResult, intervalMs: Int32) {
        guard !groupId.isEmpty else { throw BrokerError(.invalidGroupId, "the share group id is empty") }
        var group = groups[groupId] ?? ShareGroupMembership(groupId: groupId)
        let before = group.members[memberId]?.memberId
        let counts = partitionCount
        do {
            let epochBefore = groups[groupId]?.epoch ?? 0
            let result = try group.heartbeat(memberId: memberId, epoch: epoch, topics: topics, clientId: clientId, clientHost: clientHost, rackId: rackId, now: clock(), partitions: { counts($0) })
            groups[groupId] = group
            if group.epoch != epochBefore { recordMembers(group) }
            if epoch == -1, before != nil {
                // Its records stay locked: its share session (or connection) ending releases
                // them, or their locks run out — as in Kafka.
                logger.info("member \(memberId) left share group \(groupId)")
            } else if epoch == 0 && before == nil {
                logger.info("member \(memberId) joined share group \(groupId) (epoch \(result.memberEpoch))")
            }
            return (result, settings(of: groupId).heartbeatIntervalMs)
        } catch {
            groups[groupId] = group
            throw error
        }
    }

    /// True when `groupId` is a share group this broker knows (members or stored state).
    public func isShareGroup(_ groupId: String) -> Bool {
        groups[groupId] != nil || settings[groupId] != nil || partitions.keys.contains { $0.group == groupId }
    }

    public func groupIds() -> [String] {
        Set(groups.keys).union(settings.keys).union(partitions.keys.map(\.group)).sorted()
    }

    /// Releases every record the member holds (its share session closed or its connection
    /// dropped); it stays a member until it leaves or its session times out.
    public func releaseSession(groupId: String, memberId: String) {
        guard let slot = slots[groupId]?[memberId] else { return }
        releaseAll(groupId, slot: slot)
    }

    private func slot(_ groupId: String, _ memberId: String) -> Int32 {
        if let s = slots[groupId]?[memberId] { return s }
        nextSlot += 1
        slots[groupId, default: [:]][memberId] = nextSlot
        return nextSlot
    }

    private func releaseAll(_ groupId: String, slot: Int32) {
        let limits = settings(of: groupId).limits
        var released = 0
        for key in partitions.keys where key.group == groupId {
            var letters: [DeadLetter] = []
            let n = partitions[key]!.release(member: slot, limits: limits, deadLetters: &letters)
            if n > 0 { released += n; dirty.insert(key) }
            deadLetter(key, letters)
        }
        if released > 0 {
            logger.debug("share group \(groupId): released \(released) records held by member slot \(slot)")
            _ = try? writeDirty()
            wakeWaiters()
        }
    }

    // MARK: Fetch and acknowledge

    /// Settles `acknowledgements` (per partition; a partition whose batches fail keeps its
    /// records and reports the error) and then acquires up to `maxRecords` from `fetch`, in
    /// order. Returns the acquisitions, the acknowledgement errors and the store offset to
    /// wait for before the acknowledgements count as done.
    public func fetch(groupId: String, memberId: String, fetch tps: [TopicPartition], maxRecords: Int,
                      acknowledgements: [TopicPartition: [AcknowledgementBatch]] = [:], errors: [TopicPartition: [Int64: String]] = [:]) throws
        -> (acquired: [ShareAcquisition], ackErrors: [TopicPartition: ShareStateError], durableAt: Int64?)
    {
        // Acquiring needs membership; settling needs only to hold the records.
        if !tps.isEmpty && groups[groupId]?.members[memberId] == nil {
            throw BrokerError(.unknownMemberId, "share group '\(groupId)' has no member '\(memberId)'")
        }
        let owner = slot(groupId, memberId)
        let s = settings(of: groupId)
        let limits = s.limits
        let now = clock()
        var ackErrors: [TopicPartition: ShareStateError] = [:]
        var settled = false
        for (tp, batches) in acknowledgements where !batches.isEmpty {
            let key = Key(group: groupId, tp: tp)
            guard partitions[key] != nil else {
                ackErrors[tp] = ShareStateError(kind: .invalidRecordState, message: "share group '\(groupId)' holds no records of \(tp)")
                continue
            }
            var letters: [DeadLetter] = []
            for b in batches where b.type == .release { logger.debug("share group \(groupId): \(memberId) released \(tp)@\(b.first)...\(b.last)") }
            do {
                try partitions[key]!.acknowledge(batches, member: owner, limits: limits, deadLetters: &letters)
                dirty.insert(key)
                settled = true
                deadLetter(key, letters, errors: errors[tp] ?? [:])
            } catch {
                ackErrors[tp] = error
            }
        }
        var out: [ShareAcquisition] = []
        var budget = maxRecords
        for tp in tps {
            guard budget > 0 else { break }
            let key = Key(group: groupId, tp: tp)
            do {
                let handle = try partitionHandle(tp)
                var state = try partitions[key] ?? initialState(handle, s)
                state.truncate(before: handle.logStartOffset)
                var letters: [DeadLetter] = []
                state.expireLocks(now: now, limits: limits, deadLetters: &letters)
                let ranges = state.acquire(member: owner, maxRecords: budget, logEnd: handle.highWatermark, now: now, limits: limits, deadLetters: &letters)
                partitions[key] = state
                deadLetter(key, letters)
                if !ranges.isEmpty {
                    dirty.insert(key)
                    for r in ranges { budget -= r.count }
                    out.append(ShareAcquisition(topicPartition: tp, ranges: ranges))
                }
            } catch let e as BrokerError {
                out.append(ShareAcquisition(topicPartition: tp, ranges: [], error: e))
            } catch {
                out.append(ShareAcquisition(topicPartition: tp, ranges: [], error: BrokerError(.log, "\(tp): \(error)", cause: error)))
            }
        }
        let offset = try writeDirty()
        if settled && acknowledgements.values.contains(where: { $0.contains { $0.type == .release } }) { wakeWaiters() }
        return (out, ackErrors, settled ? offset : nil)
    }

    /// Waits until the store holds everything written up to `offset`.
    public nonisolated func waitUntilDurable(_ offset: Int64?) async throws {
        guard let offset else { return }
        try await store.waitUntilDurable(offset)
    }

    private func initialState(_ handle: PartitionHandle, _ s: ShareGroupSettings) throws -> SharePartitionState {
        SharePartitionState(startOffset: s.startAtEarliest ? handle.logStartOffset : handle.highWatermark)
    }

    /// True when a fetch by the group over `tps` could acquire something now.
    public func canAcquire(groupId: String, _ tps: [TopicPartition]) -> Bool {
        let s = settings(of: groupId)
        for tp in tps {
            guard let handle = try? partitionHandle(tp) else { continue }
            guard let state = partitions[Key(group: groupId, tp: tp)] else {
                if s.startAtEarliest ? handle.highWatermark > handle.logStartOffset : false { return true }
                continue
            }
            if state.canAcquire(logEnd: handle.highWatermark, limits: s.limits) { return true }
        }
        return false
    }

    /// Calls `wake` when records become available again (released or expired); remove it with
    /// `removeWaiter`.
    public func addWaiter(_ wake: @escaping @Sendable () -> Void) -> UInt64 {
        nextWaiter += 1
        waiters[nextWaiter] = wake
        return nextWaiter
    }

    public func removeWaiter(_ token: UInt64) { waiters.removeValue(forKey: token) }

    private func wakeWaiters() { for w in waiters.values { w() } }

    // MARK: Timers

    /// Expires locks and member sessions (from the broker's maintenance loop, or a test).
    public func tick() {
        let now = clock()
        var released = false
        for (id, var group) in groups {
            let s = settings(of: id)
            let gone = group.expire(now: now, sessionTimeoutMs: s.sessionTimeoutMs, partitions: { [partitionCount] in partitionCount($0) })
            groups[id] = group
            if !gone.isEmpty { recordMembers(group) }
            for m in gone {
                // As in Kafka, what it holds stays locked until the locks run out.
                logger.info("member \(m.memberId) of share group \(id) left: no heartbeat for \(s.sessionTimeoutMs) ms")
            }
        }
        for key in Array(partitions.keys) where partitions[key]!.acquired > 0 {
            var letters: [DeadLetter] = []
            if partitions[key]!.expireLocks(now: now, limits: settings(of: key.group).limits, deadLetters: &letters) > 0 {
                dirty.insert(key)
                released = true
            }
            deadLetter(key, letters)
        }
        if !dirty.isEmpty { _ = try? writeDirty() }
        if released { wakeWaiters() }
    }

    /// A topic's partition count changed: assignments are recomputed.
    public func partitionsChanged() {
        for id in Array(groups.keys) { groups[id]!.partitionsChanged { [partitionCount] in partitionCount($0) } }
    }

    // MARK: Describe

    public func describe(_ groupId: String) -> ShareGroupDescription? {
        guard isShareGroup(groupId) else { return nil }
        let g = groups[groupId]
        let members = (g?.members.values.sorted { $0.memberId < $1.memberId } ?? [])
        var names: [Int32: String] = [:]
        for (id, slot) in slots[groupId] ?? [:] { names[slot] = id }
        let parts = partitions.filter { $0.key.group == groupId }.sorted { $0.key.tp < $1.key.tp }.map { key, state in
            var counts: [ShareRecordState: Int] = [:]
            var by: [String: Int] = [:]
            var offset = state.startOffset
            while offset < state.endOffset {
                let s = state.state(at: offset)!
                counts[s.state, default: 0] += 1
                if s.state == .acquired { by[names[s.owner] ?? "?", default: 0] += 1 }
                offset += 1
            }
            let end = (try? partitionHandle(key.tp).highWatermark) ?? state.endOffset
            return ShareGroupDescription.Partition(topicPartition: key.tp, startOffset: state.startOffset, endOffset: state.endOffset, logEndOffset: end,
                inFlight: state.inFlight, available: counts[.available] ?? 0, acquired: counts[.acquired] ?? 0,
                acknowledged: counts[.acknowledged] ?? 0, archived: counts[.archived] ?? 0, acquiredBy: by)
        }
        return ShareGroupDescription(groupId: groupId, epoch: g?.epoch ?? 0, settings: settings(of: groupId),
            members: members.map { .init(memberId: $0.memberId, clientId: $0.clientId, clientHost: $0.clientHost, epoch: $0.epoch, topics: $0.topics, assignment: $0.assignment) },
            partitions: parts)
    }

    /// Records dead-lettered per group since this process started.
    public func deadLetterCount(_ groupId: String) -> Int { deadLettered[groupId] ?? 0 }

    // MARK: Durability

    /// Records the group's members for `sluice queue describe` (not restored: members rejoin).
    private func recordMembers(_ group: ShareGroupMembership) {
        var w = WireWriter()
        w.int16(3)
        w.string(group.groupId)
        let stored = StoredShareMembers(epoch: group.epoch, members: group.members.values.sorted { $0.memberId < $1.memberId }.map {
            .init(memberId: $0.memberId, clientId: $0.clientId, clientHost: $0.clientHost, topics: $0.topics, assignment: $0.assignment.map(\.description))
        }, timestamp: currentTimeMillis())
        guard let json = try? JSONEncoder().encode(stored) else { return }
        do { _ = try store.append([(w.bytes, Array(json))]) } catch { logger.warning("could not record the members of share group \(group.groupId): \(error)") }
    }

    /// Appends the snapshots of changed partitions as one batch; returns its last offset.
    @discardableResult
    private func writeDirty() throws -> Int64? {
        guard !dirty.isEmpty else { return nil }
        var changes: [([UInt8], [UInt8]?)] = []
        changes.reserveCapacity(dirty.count)
        for key in dirty {
            guard let state = partitions[key] else { continue }
            var w = WireWriter()
            w.int16(1)
            w.string(key.group)
            w.string(key.tp.topic.rawValue)
            w.int32(key.tp.partition)
            let names = slots[key.group] ?? [:]
            changes.append((w.bytes, Self.encodeSnapshot(state.snapshot) { slot in names.first { $0.value == slot }?.key }))
        }
        dirty.removeAll(keepingCapacity: true)
        return try store.append(changes)
    }

    /// v1: int16 1, int64 start offset, int32 runs, each: int64 first, int64 last, int16 state,
    /// int16 delivery count, nullable string holder.
    static func encodeSnapshot(_ s: SharePartitionState.Snapshot, name: (Int32) -> String?) -> [UInt8] {
        var w = WireWriter()
        w.int16(1)
        w.int64(s.startOffset)
        w.int32(Int32(s.runs.count))
        for run in s.runs {
            w.int64(run.first)
            w.int64(run.last)
            w.int16(Int16(run.state.rawValue))
            w.int16(run.deliveryCount)
            w.nullableString(run.owner >= 0 ? name(run.owner) : nil)
        }
        return w.bytes
    }

    static func decodeSnapshot(_ bytes: [UInt8]) throws -> (snapshot: SharePartitionState.Snapshot, holders: [String?]) {
        var r = WireReader(bytes)
        let version = try r.int16()
        let start = try r.int64()
        let n = try r.int32()
        guard n >= 0 && Int(n) <= bytes.count / 20 else { throw BrokerError(.metadata, "a share-partition snapshot claims \(n) runs in \(bytes.count) bytes") }
        var runs: [SharePartitionState.Snapshot.Run] = []
        var holders: [String?] = []
        for _ in 0..<n {
            let first = try r.int64(), last = try r.int64()
            guard let state = ShareRecordState(rawValue: UInt8(clamping: try r.int16())), last >= first else {
                throw BrokerError(.metadata, "a share-partition snapshot has an invalid run")
            }
            runs.append(.init(first: first, last: last, state: state, deliveryCount: try r.int16()))
            holders.append(version >= 1 ? try r.nullableString() : nil)
        }
        return (.init(startOffset: start, runs: runs), holders)
    }

    // MARK: Dead letters

    /// Copies archived records to the group's dead-letter topic (when it names one), with
    /// headers saying where they came from and why.
    private func deadLetter(_ key: Key, _ letters: [DeadLetter], errors: [Int64: String] = [:]) {
        guard !letters.isEmpty else { return }
        let s = settings(of: key.group)
        guard let topic = s.deadLetterTopic else {
            for l in letters { logger.info("share group \(key.group) archived \(key.tp)@\(l.offset) (\(l.reason.rawValue), \(l.deliveryCount) deliveries)") }
            return
        }
        do {
            try createTopic(topic, 1)
            let source = try partitionHandle(key.tp)
            let target = try partitionHandle(TopicPartition(try TopicName(topic), 0))
            var builder = RecordBatchBuilder(capacity: 64 << 10)
            var wanted = letters.sorted { $0.offset < $1.offset }[...]
            let now = currentTimeMillis()
            while let firstWanted = wanted.first {
                let data = try source.read(from: firstWanted.offset, maxBytes: 1 << 20, isolation: .readUncommitted)
                if data.isEmpty { break }
                try data.forEachRecord(from: firstWanted.offset) { r in
                    while let w = wanted.first, w.offset < r.offset { wanted.removeFirst() }
                    guard let w = wanted.first, w.offset == r.offset else { return }
                    wanted.removeFirst()
                    var headers: [RecordHeader] = []
                    r.forEachHeader { name, value in
                        headers.append(RecordHeader(name: String(decoding: name, as: UTF8.self), value: value.map { Array($0) }))
                    }
                    headers.append(RecordHeader(name: "sluice.dlq.reason", value: Array(w.reason.rawValue.utf8)))
                    headers.append(RecordHeader(name: "sluice.dlq.delivery.count", value: Array(String(w.deliveryCount).utf8)))
                    headers.append(RecordHeader(name: "sluice.dlq.group", value: Array(key.group.utf8)))
                    headers.append(RecordHeader(name: "sluice.dlq.topic", value: Array(key.tp.topic.rawValue.utf8)))
                    headers.append(RecordHeader(name: "sluice.dlq.partition", value: Array(String(key.tp.partition).utf8)))
                    headers.append(RecordHeader(name: "sluice.dlq.offset", value: Array(String(r.offset).utf8)))
                    if let e = errors[r.offset] { headers.append(RecordHeader(name: "sluice.dlq.error", value: Array(e.utf8))) }
                    builder.append(key: r.key.map { Array($0) }, value: r.value.map { Array($0) }, timestamp: now, headers: headers)
                }
                if data.nextOffset <= firstWanted.offset { break }
                // Offsets the read covered without a record (control records) have nothing to copy.
                while let w = wanted.first, w.offset < data.nextOffset { wanted.removeFirst() }
            }
            if !builder.isEmpty { _ = try target.append(&builder) }
            deadLettered[key.group, default: 0] += letters.count
            logger.info("share group \(key.group) dead-lettered \(letters.count) record\(letters.count == 1 ? "" : "s") of \(key.tp) to \(topic)")
        } catch {
            logger.error("share group \(key.group) could not dead-letter \(letters.count) record(s) of \(key.tp) to \(topic): \(error)")
        }
    }
}

/// A share group's members as the coordinator last recorded them.
struct StoredShareMembers: Codable {
    struct Member: Codable {
        var memberId: String
        var clientId: String
        var clientHost: String
        var topics: [String]
        var assignment: [String]
    }
    var epoch: Int32
    var members: [Member]
    var timestamp: Int64
}
