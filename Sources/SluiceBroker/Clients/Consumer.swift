// Consumer: the in-process client that reads from the embedded broker, by manual assignment
// or as a member of a consumer group. Group membership follows Kafka's consumer: join with a
// subscription per assignor, the leader assigns, everyone syncs; eager assignors revoke
// everything before rejoining, cooperative ones revoke only what moves and rejoin once more.
// The coordinator tells in-process members of a rebalance at once, and heartbeats keep the
// session alive. Positions advance as records are returned; offsets are committed
// explicitly (commitSync / commitAsync), fenced by generation. Thread-safe.
import Logging
import SluiceLog
import Synchronization

public enum OffsetResetPolicy: String, Sendable { case earliest, latest }

public struct ConsumerConfig: Sendable {
    public var groupId: String?
    public var groupInstanceId: String?
    public var clientId = "sluice-consumer"
    public var sessionTimeoutMs: Int32 = 10_000
    public var heartbeatIntervalMs: Int64 = 3_000
    public var rebalanceTimeoutMs: Int32 = 30_000
    /// In order of preference; the group picks one all members support.
    public var assignors: [any PartitionAssignor] = [RangeAssignor(), CooperativeStickyAssignor()]
    public var isolation: IsolationLevel = .readUncommitted
    public var autoOffsetReset: OffsetResetPolicy = .latest
    /// Most bytes read from one partition per poll.
    public var maxPartitionFetchBytes = 1 << 20
    /// Most bytes one poll returns over all partitions.
    public var maxPollBytes = 8 << 20

    public init(groupId: String? = nil) { self.groupId = groupId }
}

/// Callbacks for partition ownership changes, run inside `poll` before it returns.
public struct RebalanceListener: Sendable {
    public var assigned: @Sendable ([TopicPartition]) async -> Void
    /// Called before partitions move away (commit here); the consumer is still a member.
    public var revoked: @Sendable ([TopicPartition]) async -> Void
    /// Called when partitions were taken away without a clean revoke (session expiry).
    public var lost: @Sendable ([TopicPartition]) async -> Void

    public init(assigned: @escaping @Sendable ([TopicPartition]) async -> Void = { _ in },
                revoked: @escaping @Sendable ([TopicPartition]) async -> Void = { _ in },
                lost: @escaping @Sendable ([TopicPartition]) async -> Void = { _ in }) {
        self.assigned = assigned
        self.revoked = revoked
        self.lost = lost
    }
}

/// Records returned by one poll: per partition, the fetched batches and the first offset
/// to deliver from them.
public struct ConsumerRecords: Sendable {
    public struct Part: Sendable {
        public let data: FetchedData
        public let from: Int64
        public init(data: FetchedData, from: Int64) {
            self.data = data
            self.from = from
        }
    }

    public let parts: [Part]
    public var isEmpty: Bool { parts.isEmpty }

    /// Every record, partition by partition, in offset order within a partition.
    public func forEach(_ body: (TopicPartition, RecordView) throws -> Void) throws {
        for part in parts {
            // Taken once per part: copying it per record would retain and release its name.
            let tp = part.data.topicPartition
            try part.data.forEachRecord(from: part.from) { try body(tp, $0) }
        }
    }

    public var count: Int {
        var n = 0
        try? forEach { _, _ in n += 1 }
        return n
    }
}

public final class Consumer: Sendable {
    public let config: ConsumerConfig
    let broker: EmbeddedBroker
    let listener: RebalanceListener
    let logger: Logger
    private let state: Mutex<State>
    private let wake = AppendNotifier()
    private let heartbeats = Mutex<Task<Void, Never>?>(nil)
    /// Membership changes (join, sync, revoke) run one at a time.
    private let membership = AsyncLock()

    struct PartitionState {
        var position: Int64?
        var paused = false
        var listenerToken: UInt64?
    }

    struct State {
        var subscription: [TopicName] = []
        var manual = false
        var partitions: [TopicPartition: PartitionState] = [:]
        var memberId = ""
        var generation: Int32 = -1
        var needsJoin = false
        var lostPending = false
        var protocolName: String?
        var closed = false
        var nextStart = 0
    }

    public init(broker: EmbeddedBroker, config: ConsumerConfig = ConsumerConfig(), listener: RebalanceListener = RebalanceListener(), logger: Logger = Logger(label: "sluice.consumer")) {
        self.broker = broker
        self.config = config
        self.listener = listener
        self.logger = logger
        state = Mutex(State())
    }

    public var memberId: String { state.withLock { $0.memberId } }
    public var generation: Int32 { state.withLock { $0.generation } }
    public var assignment: Set<TopicPartition> { state.withLock { Set($0.partitions.keys) } }

    // MARK: Assignment

    /// Reads exactly these partitions, without group membership.
    public func assign(_ partitions: [TopicPartition]) throws {
        for tp in partitions { _ = try broker.partition(tp) }
        let old = state.withLock { s -> [UInt64] in
            s.manual = true
            s.subscription = []
            let tokens = s.partitions.values.compactMap(\.listenerToken)
            s.partitions = [:]
            return tokens
        }
        _ = old
        addPartitions(partitions)
    }

    /// Joins the consumer group and reads whatever partitions of `topics` it assigns.
    public func subscribe(_ topics: [TopicName]) throws {
        guard config.groupId != nil else {
            throw BrokerError(.invalidGroupId, "subscribe needs a group id; use assign for manual partitions")
        }
        for t in topics { _ = try broker.partitionCount(t) }
        state.withLock { s in
            s.subscription = topics
            s.manual = false
            s.needsJoin = true
        }
        startHeartbeats()
    }

    private func addPartitions(_ tps: [TopicPartition]) {
        for tp in tps {
            let token = try? broker.partition(tp).log.addAppendListener { [wake] _ in wake.signal() }
            state.withLock { s in s.partitions[tp] = PartitionState(position: nil, paused: false, listenerToken: token) }
        }
        wake.signal()
    }

    private func removePartitions(_ tps: [TopicPartition]) {
        for tp in tps {
            let token = state.withLock { $0.partitions.removeValue(forKey: tp)?.listenerToken }
            if let token, let h = try? broker.partition(tp) { h.log.removeAppendListener(token) }
        }
    }

    // MARK: Positions

    public func seek(_ tp: TopicPartition, to offset: Int64) {
        state.withLock { $0.partitions[tp]?.position = offset }
        wake.signal()
    }

    /// The next offset this consumer will read from `tp` (resolving it first if needed).
    public func position(_ tp: TopicPartition) async throws -> Int64 {
        if let p = state.withLock({ $0.partitions[tp]?.position }) { return p }
        let p = try await resolvePosition(tp)
        state.withLock { $0.partitions[tp]?.position = p }
        return p
    }

    public func pause(_ tps: [TopicPartition]) { state.withLock { s in for tp in tps { s.partitions[tp]?.paused = true } } }
    public func resume(_ tps: [TopicPartition]) {
        state.withLock { s in for tp in tps { s.partitions[tp]?.paused = false } }
        wake.signal()
    }

    private func resolvePosition(_ tp: TopicPartition) async throws -> Int64 {
        let handle = try broker.partition(tp)
        if let group = config.groupId, let c = await broker.groups.committedOffsets(groupId: group)[tp] {
            if c.offset >= handle.logStartOffset && c.offset <= handle.highWatermark { return c.offset }
            logger.warning("committed offset \(c.offset) of \(tp) is outside the log (\(handle.logStartOffset)..<\(handle.highWatermark)); resetting to \(config.autoOffsetReset.rawValue)")
        }
        return config.autoOffsetReset == .earliest ? handle.logStartOffset : handle.highWatermark
    }

    // MARK: Poll

    /// Returns the records available on the assigned, unpaused partitions, waiting up to
    /// `maxWait` for some. Rebalances (and their listener callbacks) happen here.
    public func poll(maxWait: Duration = .milliseconds(500)) async throws -> ConsumerRecords {
        let deadline = ContinuousClock.now + maxWait
        while true {
            try await ensureMembership()
            let ticket = wake.ticket()
            let records = try await fetchOnce()
            if !records.isEmpty || ContinuousClock.now >= deadline { return records }
            if state.withLock({ $0.needsJoin || $0.closed }) { if state.withLock({ $0.closed }) { return records }; continue }
            await wake.wait(ticket, until: deadline)
        }
    }

    /// The consumer as an endless sequence of polls (ends when the consumer is closed).
    public func batches(maxWait: Duration = .milliseconds(500)) -> AsyncThrowingStream<ConsumerRecords, any Error> {
        AsyncThrowingStream { [self] in
            while true {
                if state.withLock({ $0.closed }) { return nil }
                let r = try await poll(maxWait: maxWait)
                if !r.isEmpty { return r }
            }
        }
    }

    private func fetchOnce() async throws -> ConsumerRecords {
        let (tps, start) = state.withLock { s -> ([TopicPartition], Int) in
            let list = s.partitions.filter { !$0.value.paused }.keys.sorted()
            s.nextStart &+= 1
            return (list, s.nextStart)
        }
        guard !tps.isEmpty else { return ConsumerRecords(parts: []) }
        var parts: [ConsumerRecords.Part] = []
        var bytes = 0
        for i in 0..<tps.count {
            let tp = tps[(i + start) % tps.count]
            guard bytes < config.maxPollBytes else { break }
            let position = try await self.position(tp)
            let data: FetchedData
            do {
                data = try broker.partition(tp).read(from: position, maxBytes: config.maxPartitionFetchBytes, isolation: config.isolation)
            } catch let e as BrokerError where e.code == .offsetOutOfRange {
                let reset = try await resolveAfterOutOfRange(tp)
                logger.warning("\(e.message); resetting \(tp) to \(reset)")
                state.withLock { $0.partitions[tp]?.position = reset }
                continue
            }
            if data.nextOffset > position {
                // Only advance if the partition is still ours (a rebalance may have run).
                let kept = state.withLock { s -> Bool in
                    guard s.partitions[tp]?.position == position else { return false }
                    s.partitions[tp]!.position = data.nextOffset
                    return true
                }
                if kept && !data.isEmpty {
                    parts.append(ConsumerRecords.Part(data: data, from: position))
                    bytes += data.result.byteCount
                }
            }
        }
        return ConsumerRecords(parts: parts)
    }

    private func resolveAfterOutOfRange(_ tp: TopicPartition) async throws -> Int64 {
        let h = try broker.partition(tp)
        return config.autoOffsetReset == .earliest ? h.logStartOffset : h.highWatermark
    }

    // MARK: Commit

    /// Commits `offsets` (next offsets to read), or every assigned partition's position.
    public func commitSync(_ offsets: [TopicPartition: Int64]? = nil) async throws {
        guard let group = config.groupId else { throw BrokerError(.invalidGroupId, "committing needs a group id") }
        let (toCommit, memberId, generation, manual) = state.withLock { s in
            (offsets ?? s.partitions.compactMapValues(\.position), s.memberId, s.generation, s.manual)
        }
        guard !toCommit.isEmpty else { return }
        do {
            try await broker.groups.commit(groupId: group, generation: manual ? -1 : generation, memberId: manual ? "" : memberId,
                                           groupInstanceId: manual ? nil : config.groupInstanceId, offsets: toCommit.mapValues { CommittedOffset(offset: $0) })
        } catch let e as BrokerError where [.unknownMemberId, .illegalGeneration, .fencedInstanceId].contains(e.code) {
            markLost()
            throw e
        }
    }

    /// Commits without waiting; `completion` gets the outcome.
    public func commitAsync(_ offsets: [TopicPartition: Int64]? = nil, completion: @escaping @Sendable ((any Error)?) -> Void = { _ in }) {
        Task {
            do {
                try await commitSync(offsets)
                completion(nil)
            } catch {
                completion(error)
            }
        }
    }

    // MARK: Membership

    private func markLost() {
        state.withLock { s in
            s.lostPending = true
            s.needsJoin = true
        }
        wake.signal()
    }

    private func ensureMembership() async throws {
        guard state.withLock({ !$0.manual && !$0.subscription.isEmpty && ($0.needsJoin || $0.lostPending) && !$0.closed }) else { return }
        try await membership.run { try await self.rejoinUntilStable() }
    }

    private func rejoinUntilStable() async throws {
        while state.withLock({ ($0.needsJoin || $0.lostPending) && !$0.closed }) {
            try await rejoin()
        }
    }

    private var rebalanceProtocol: RebalanceProtocol {
        let name = state.withLock { $0.protocolName }
        return config.assignors.first { $0.name == name }?.rebalanceProtocol ?? config.assignors.first?.rebalanceProtocol ?? .eager
    }

    private func rejoin() async throws {
        guard let group = config.groupId else { return }
        // Partitions lost (session expired, fenced): no commit, no revoke.
        let lost = state.withLock { s -> [TopicPartition] in
            guard s.lostPending else { return [] }
            s.lostPending = false
            s.memberId = config.groupInstanceId == nil ? "" : s.memberId
            s.generation = -1
            return Array(s.partitions.keys)
        }
        if !lost.isEmpty {
            removePartitions(lost)
            await listener.lost(lost.sorted())
        }
        // Eager: give everything back before joining.
        if rebalanceProtocol == .eager {
            let owned = state.withLock { Array($0.partitions.keys) }
            if !owned.isEmpty {
                await listener.revoked(owned.sorted())
                removePartitions(owned)
            }
        }
        state.withLock { $0.needsJoin = false }
        let (topics, memberId, owned, generation) = state.withLock { s in (s.subscription, s.memberId, Array(s.partitions.keys), s.generation) }
        let protocols = config.assignors.map { a in
            GroupProtocol(name: a.name, metadata: ConsumerSubscription(topics: topics.map(\.rawValue), ownedPartitions: a.rebalanceProtocol == .cooperative ? owned : [], generation: generation).encode())
        }
        let response: JoinGroupResponse
        do {
            response = try await broker.groups.join(JoinGroupRequest(groupId: group, memberId: memberId, groupInstanceId: config.groupInstanceId, clientId: config.clientId, sessionTimeoutMs: config.sessionTimeoutMs, rebalanceTimeoutMs: config.rebalanceTimeoutMs, protocols: protocols))
        } catch let e as BrokerError where e.code == .unknownMemberId || e.code == .rebalanceInProgress {
            state.withLock { s in
                if e.code == .unknownMemberId { s.memberId = ""; s.lostPending = !s.partitions.isEmpty }
                s.needsJoin = true
            }
            return
        }
        state.withLock { s in
            s.memberId = response.memberId
            s.protocolName = response.protocolName
        }
        let watchedGroup = group
        await broker.groups.watch(groupId: watchedGroup, memberId: response.memberId) { [weak self] in self?.rebalanceRequested() }

        var assignments: [String: [UInt8]] = [:]
        if response.isLeader {
            assignments = try leaderAssign(response)
        }
        let bytes: [UInt8]
        do {
            bytes = try await broker.groups.sync(groupId: group, generation: response.generation, memberId: response.memberId, groupInstanceId: config.groupInstanceId, assignments: assignments)
        } catch let e as BrokerError where [.rebalanceInProgress, .illegalGeneration, .unknownMemberId].contains(e.code) {
            state.withLock { s in
                s.needsJoin = true
                if e.code == .unknownMemberId { s.memberId = "" }
            }
            return
        }
        let assigned = Set(try ConsumerAssignment.decode(bytes).partitions)
        let current = state.withLock { Set($0.partitions.keys) }
        let revoked = current.subtracting(assigned)
        let added = assigned.subtracting(current)
        state.withLock { $0.generation = response.generation }
        if !revoked.isEmpty {
            await listener.revoked(revoked.sorted())
            removePartitions(Array(revoked))
            // Cooperative: what we gave up can now be assigned to others in one more round.
            state.withLock { $0.needsJoin = true }
        }
        addPartitions(Array(added))
        if !added.isEmpty { await listener.assigned(added.sorted()) }
        logger.debug("member \(response.memberId) of \(group) at generation \(response.generation) owns \(assigned.sorted())")
    }

    /// The leader runs the group's assignor over every member's subscription.
    private func leaderAssign(_ response: JoinGroupResponse) throws -> [String: [UInt8]] {
        guard let name = response.protocolName, let assignor = config.assignors.first(where: { $0.name == name }) ?? Assignors.named(name) else {
            throw BrokerError(.inconsistentGroupProtocol, "the group chose assignor '\(response.protocolName ?? "none")', which this consumer does not have")
        }
        var members: [AssignorMember] = []
        var topics = Set<TopicName>()
        for m in response.members {
            let sub = try ConsumerSubscription.decode(m.metadata)
            let names = sub.topics.compactMap { try? TopicName($0) }
            topics.formUnion(names)
            members.append(AssignorMember(memberId: m.memberId, groupInstanceId: m.groupInstanceId, topics: names, ownedPartitions: sub.ownedPartitions, generation: sub.generation))
        }
        var counts: [TopicName: Int32] = [:]
        for t in topics { if let n = try? broker.partitionCount(t) { counts[t] = n } }
        let result = assignor.assign(members: members, partitionsPerTopic: counts)
        return result.mapValues { ConsumerAssignment(partitions: $0.sorted()).encode() }
    }

    private func rebalanceRequested() {
        state.withLock { $0.needsJoin = true }
        wake.signal()
    }

    private func startHeartbeats() {
        let interval = config.heartbeatIntervalMs
        heartbeats.withLock { task in
            guard task == nil else { return }
            task = Task { [weak self] in
                while !Task.isCancelled {
                    // Stopped heartbeats stop: no last one after the cancel.
                    do { try await Task.sleep(for: .milliseconds(interval)) } catch { return }
                    guard let self else { return }
                    await self.heartbeatOnce()
                }
            }
        }
    }

    /// One heartbeat (public so a test or a paused worker can drive it by hand).
    public func heartbeatOnce() async {
        guard let group = config.groupId else { return }
        let (memberId, generation, joining) = state.withLock { ($0.memberId, $0.generation, $0.needsJoin) }
        guard !memberId.isEmpty, generation >= 0, !joining else { return }
        do {
            try await broker.groups.heartbeat(groupId: group, generation: generation, memberId: memberId, groupInstanceId: config.groupInstanceId)
        } catch let e as BrokerError {
            switch e.code {
            case .rebalanceInProgress: rebalanceRequested()
            case .unknownMemberId, .illegalGeneration, .fencedInstanceId: markLost()
            default: logger.warning("heartbeat failed: \(e.message)")
            }
        } catch {}
    }

    /// Stops heartbeats (the member will be expired after its session timeout), for tests
    /// that simulate a member that hangs.
    public func stopHeartbeats() {
        heartbeats.withLock { t in t?.cancel(); t = nil }
    }

    /// Leaves the group (revoking first, so the listener can commit) and stops.
    public func close() async {
        let (group, memberId, owned, alreadyClosed) = state.withLock { s in
            defer { s.closed = true }
            return (config.groupId, s.memberId, Array(s.partitions.keys), s.closed)
        }
        guard !alreadyClosed else { return }
        stopHeartbeats()
        if let group, !memberId.isEmpty {
            if !owned.isEmpty { await listener.revoked(owned.sorted()) }
            await broker.groups.unwatch(groupId: group, memberId: memberId)
            await broker.groups.leave(groupId: group, memberId: memberId, groupInstanceId: config.groupInstanceId)
        }
        removePartitions(owned)
        wake.signal()
    }
}

/// A lock for async code: one holder at a time, waiters resumed in order.
final class AsyncLock: Sendable {
    private let state = Mutex<(locked: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func run<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        await acquire()
        defer { release() }
        return try await body()
    }

    private func acquire() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let acquired = state.withLock { s -> Bool in
                if !s.locked { s.locked = true; return true }
                s.waiters.append(c)
                return false
            }
            if acquired { c.resume() }
        }
    }

    private func release() {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if s.waiters.isEmpty { s.locked = false; return nil }
            return s.waiters.removeFirst()
        }
        next?.resume()
    }
}
