// WireShareConsumer: a share-group member (KIP-932, Kafka 4.2's v1 APIs) over one connection
// to a Kafka-protocol broker, for processes that do not hold the log themselves: `sluice run
// --broker kafka://…` queue sources. It does what the in-process ShareConsumer does with
// ShareGroupHeartbeat, ShareFetch and ShareAcknowledge: joins with a member id of its own,
// opens a share session on its connection, acquires records under the group's lock and
// acknowledges them one by one. It talks to the broker it connected to, which must be the
// group's coordinator and the partitions' leader (`sluice serve`, a one-broker cluster).
import Foundation
import Logging
import SluiceBroker
import SluiceLog
import Synchronization

public final class WireShareConsumer: Sendable {
    public let config: ShareConsumerConfig
    public let topics: [TopicName]
    let connection: KafkaClientConnection
    let logger: Logger
    /// Most bytes one fetch asks for.
    static let maxFetchBytes: Int32 = 64 << 20

    struct State {
        var epoch: Int32 = 0
        var joined = false
        var assignment: [TopicPartition] = []
        var lastHeartbeat = ContinuousClock.now
        var intervalMs: Int32 = 5_000
        /// The share session's next epoch; 0 opens one.
        var session: Int32 = 0
        var inSession: Set<TopicPartition> = []
        var ids: [TopicName: KafkaUUID] = [:]
        var names: [KafkaUUID: TopicName] = [:]
        var nextBatch: UInt64 = 0
        var outstanding: ShareBatch?
        var closed = false
    }
    private let state = Mutex(State())

    public init(connection: KafkaClientConnection, config: ShareConsumerConfig, topics: [TopicName], logger: Logger) {
        self.connection = connection
        self.config = config
        self.topics = topics
        self.logger = logger
    }

    /// Connects to the broker at `host:port` (the member joins at its first poll).
    public static func connect(host: String, port: Int, config: ShareConsumerConfig, topics: [TopicName], logger: Logger = Logger(label: "sluice.share-consumer")) async throws -> WireShareConsumer {
        let c = try await KafkaClientConnection.connect(host: host, port: port, clientId: config.clientId)
        return WireShareConsumer(connection: c, config: config, topics: topics, logger: logger)
    }

    public var peer: String { connection.peer }
    public var assignment: [TopicPartition] { state.withLock { $0.assignment } }

    private func refused(_ what: String, _ code: Int16, _ message: String?) -> KafkaClientError {
        KafkaClientError("broker \(connection.peer) refused \(what) for share group '\(config.groupId)': \(message ?? "error code \(code)") (error code \(code))")
    }

    /// The subscribed topics' ids (share-group assignments and fetches name topics by id).
    private func loadTopicIds() async throws {
        var request = MetadataRequest()
        request.topics = topics.map { MetadataRequest.Topic(topicId: .zero, name: $0.rawValue) }
        request.allowAutoTopicCreation = false
        let response = try await connection.send(request, version: 12)
        var ids: [TopicName: KafkaUUID] = [:]
        for t in response.topics {
            guard let n = t.name, let name = try? TopicName(n) else { continue }
            guard t.errorCode == 0 else { throw refused("metadata of topic '\(n)'", t.errorCode, nil) }
            ids[name] = t.topicId
        }
        state.withLock { s in
            for (name, id) in ids {
                s.ids[name] = id
                s.names[id] = name
            }
        }
    }

    /// Joins the group (or heartbeats when one is due) and takes the assignment it gets back.
    private func heartbeatIfDue(force: Bool = false) async throws {
        let (joined, epoch, due, known) = state.withLock { s in
            (s.joined, s.epoch, force || !s.joined || ContinuousClock.now - s.lastHeartbeat >= .milliseconds(Int64(s.intervalMs)), !s.ids.isEmpty)
        }
        guard due else { return }
        if !known { try await loadTopicIds() }
        let request = ShareGroupHeartbeatRequest(groupId: config.groupId, memberId: config.memberId, memberEpoch: joined ? epoch : 0,
                                                 subscribedTopicNames: joined ? nil : topics.map(\.rawValue))
        let response = try await connection.send(request, version: 1)
        switch response.errorCode {
        case KafkaErrorCode.none:
            break
        case KafkaErrorCode.unknownMemberId, KafkaErrorCode.fencedMemberEpoch:
            guard joined else { throw refused("a share-group heartbeat", response.errorCode, response.errorMessage) }
            logger.info("share consumer \(config.memberId) rejoins \(config.groupId) at \(connection.peer): \(response.errorMessage ?? "error \(response.errorCode)")")
            state.withLock { $0.joined = false }
            try await heartbeatIfDue(force: true)
            return
        default:
            throw refused("a share-group heartbeat", response.errorCode, response.errorMessage)
        }
        if let a = response.assignment, a.topicPartitions.contains(where: { id in state.withLock { $0.names[id.topicId] == nil } }) {
            try await loadTopicIds()
        }
        state.withLock { s in
            s.joined = true
            s.epoch = response.memberEpoch
            s.intervalMs = max(100, response.heartbeatIntervalMs)
            s.lastHeartbeat = .now
            if let a = response.assignment {
                s.assignment = a.topicPartitions.flatMap { t in s.names[t.topicId].map { name in t.partitions.map { TopicPartition(name, $0) } } ?? [] }
            }
        }
    }

    private static func next(_ epoch: Int32) -> Int32 { epoch == Int32.max ? 1 : epoch + 1 }

    /// Settles what is outstanding from the last poll (accepted in implicit mode, released in
    /// explicit mode) in the fetch itself, then acquires records, waiting up to `maxWait`.
    public func poll(maxRecords: Int? = nil, maxWait: Duration = .milliseconds(500)) async throws -> ShareBatch {
        let deadline = ContinuousClock.now + maxWait
        var pending = state.withLock { s -> [TopicPartition: [AcknowledgementBatch]] in
            defer { s.outstanding = nil }
            guard let b = s.outstanding else { return [:] }
            return ShareAcknowledgements(batch: b, fill: config.acknowledgement == .implicit ? .accept : .release).batches
        }
        while true {
            try Task.checkCancellation()
            try await heartbeatIfDue()
            let (assigned, session, inSession, ids, interval) = state.withLock { ($0.assignment, $0.session, $0.inSession, $0.ids, $0.intervalMs) }
            if session == 0 && !pending.isEmpty {
                // A new session cannot carry the old one's acknowledgements; the broker
                // released those records when the old session ended.
                logger.info("share consumer \(config.memberId): acknowledgements of \(pending.count) partitions were dropped with the share session; their records come back")
                pending = [:]
            }
            var include = session == 0 ? assigned : assigned.filter { !inSession.contains($0) }
            for tp in pending.keys.sorted() where !include.contains(tp) { include.append(tp) }
            let forgotten = session == 0 ? [] : inSession.filter { !assigned.contains($0) }.sorted()
            var request = ShareFetchRequest()
            request.groupId = config.groupId
            request.memberId = config.memberId
            request.shareSessionEpoch = session
            let remaining = deadline - .now
            request.maxWaitMs = Int32(clamping: max(0, min(remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000, Int64(interval))))
            request.minBytes = 1
            request.maxBytes = Self.maxFetchBytes
            request.maxRecords = Int32(clamping: maxRecords ?? config.maxRecords)
            request.batchSize = request.maxRecords
            for (topic, parts) in Self.byTopic(include) {
                guard let id = ids[topic] else { continue }
                var t = ShareFetchRequest.FetchTopic(topicId: id)
                for p in parts {
                    var fp = ShareFetchRequest.FetchPartition(partitionIndex: p)
                    for b in pending[TopicPartition(topic, p)] ?? [] {
                        fp.acknowledgementBatches.append(ShareFetchRequest.AcknowledgementBatch(firstOffset: b.first, lastOffset: b.last, acknowledgeTypes: [b.type.rawValue]))
                    }
                    t.partitions.append(fp)
                }
                request.topics.append(t)
            }
            for (topic, parts) in Self.byTopic(forgotten) {
                if let id = ids[topic] { request.forgottenTopicsData.append(.init(topicId: id, partitions: parts)) }
            }
            let response = try await connection.send(request, version: 1, timeout: .milliseconds(Int64(request.maxWaitMs)) + .seconds(30))
            pending = [:]
            switch response.errorCode {
            case KafkaErrorCode.none:
                break
            case KafkaErrorCode.shareSessionNotFound, KafkaErrorCode.invalidShareSessionEpoch:
                logger.info("share consumer \(config.memberId): the share session at \(connection.peer) is gone (\(response.errorMessage ?? "error \(response.errorCode)")); opening a new one")
                state.withLock { $0.session = 0; $0.inSession = [] }
                continue
            case KafkaErrorCode.unknownMemberId, KafkaErrorCode.fencedMemberEpoch:
                state.withLock { $0.joined = false; $0.session = 0; $0.inSession = [] }
                continue
            default:
                throw refused("a share fetch", response.errorCode, response.errorMessage)
            }
            state.withLock { s in
                if session == 0 { s.inSession = Set(include) } else {
                    s.inSession.formUnion(include)
                    s.inSession.subtract(forgotten)
                }
                s.session = Self.next(session)
            }
            let batch = try read(response)
            if !batch.isEmpty {
                state.withLock { $0.outstanding = batch }
                return batch
            }
            if ContinuousClock.now >= deadline { return emptyBatch() }
        }
    }

    /// ShareAcknowledge's topics for `batches` (one type per batch of offsets).
    static func acknowledgeTopics(_ batches: [TopicPartition: [AcknowledgementBatch]], _ ids: [TopicName: KafkaUUID]) -> [ShareAcknowledgeRequest.AcknowledgeTopic] {
        var out: [ShareAcknowledgeRequest.AcknowledgeTopic] = []
        for (topic, parts) in byTopic(batches.keys.sorted()) {
            guard let id = ids[topic] else { continue }
            var t = ShareAcknowledgeRequest.AcknowledgeTopic(topicId: id)
            for p in parts {
                var ap = ShareAcknowledgeRequest.AcknowledgePartition(partitionIndex: p)
                for b in batches[TopicPartition(topic, p)] ?? [] {
                    ap.acknowledgementBatches.append(ShareAcknowledgeRequest.AcknowledgementBatch(firstOffset: b.first, lastOffset: b.last, acknowledgeTypes: [b.type.rawValue]))
                }
                t.partitions.append(ap)
            }
            out.append(t)
        }
        return out
    }

    static func byTopic(_ tps: [TopicPartition]) -> [(TopicName, [Int32])] {
        var out: [(TopicName, [Int32])] = []
        for tp in tps {
            if let i = out.firstIndex(where: { $0.0 == tp.topic }) { out[i].1.append(tp.partition) } else { out.append((tp.topic, [tp.partition])) }
        }
        return out
    }

    private func emptyBatch() -> ShareBatch {
        ShareBatch(id: state.withLock { s -> UInt64 in s.nextBatch += 1; return s.nextBatch }, parts: [], count: 0, gaps: [])
    }

    /// The acquired records of a fetch response, over the response's bytes (checked first).
    private func read(_ response: ShareFetchResponse) throws -> ShareBatch {
        var parts: [ShareBatch.Part] = []
        var gaps: [Int] = [], unfetched: [Int] = []
        var base = 0
        let names = state.withLock { $0.names }
        for topic in response.responses {
            for p in topic.partitions {
                guard let name = names[topic.topicId] else { continue }
                let tp = TopicPartition(name, p.partitionIndex)
                if p.acknowledgeErrorCode != 0 {
                    logger.warning("share consumer \(config.memberId): acknowledgements for \(tp) were refused by \(connection.peer): \(p.acknowledgeErrorMessage ?? "error \(p.acknowledgeErrorCode)")")
                }
                if p.errorCode != 0 {
                    throw refused("a share fetch of \(tp)", p.errorCode, p.errorMessage)
                }
                guard !p.acquiredRecords.isEmpty else { continue }
                let records = p.records
                // The batches as sent, checked (CRC, framing) before anything reads them.
                var covered = Int64.min
                var controls: [(Int64, Int64)] = []
                var failure: String?
                records.storage.withUnsafeBytes { all in
                    var it = RecordBatchIterator(UnsafeRawBufferPointer(rebasing: all[records.range]), verifyCRC: true)
                    while let b = it.next() {
                        covered = max(covered, b.header.lastOffset)
                        if b.header.isControl { controls.append((b.header.baseOffset, b.header.lastOffset)) }
                    }
                    failure = it.failure
                }
                if let failure { throw KafkaClientError("broker \(connection.peer) sent a malformed record batch for \(tp): \(failure)") }
                let result = LogReadResult(bytes: records.storage, range: records.range, highWatermark: -1, logStartOffset: -1, nextOffset: covered == .min ? 0 : covered + 1)
                let data = FetchedData(topicPartition: tp, result: result, highWatermark: -1, lastStableOffset: -1, logStartOffset: -1, abortedTransactions: [], isolation: .readUncommitted)
                var ranges: [ShareBatch.Range] = []
                for a in p.acquiredRecords {
                    guard a.firstOffset <= a.lastOffset, a.lastOffset - a.firstOffset < 1 << 20 else {
                        throw KafkaClientError("broker \(connection.peer) sent an acquired range \(a.firstOffset)...\(a.lastOffset) for \(tp)")
                    }
                    let r = AcquiredRange(first: a.firstOffset, last: a.lastOffset, deliveryCount: a.deliveryCount)
                    for (first, last) in controls where last >= r.first && first <= r.last {
                        for o in max(first, r.first)...min(last, r.last) { gaps.append(base + Int(o - r.first)) }
                    }
                    // Offsets past the bytes that came (a response cut short) go back.
                    if covered < r.last { for o in max(r.first, covered + 1)...r.last { unfetched.append(base + Int(o - r.first)) } }
                    ranges.append(ShareBatch.Range(acquired: r, data: [data], ackBase: base))
                    base += Int(r.last - r.first + 1)
                }
                parts.append(ShareBatch.Part(topicPartition: tp, ranges: ranges))
            }
        }
        let id = state.withLock { s -> UInt64 in s.nextBatch += 1; return s.nextBatch }
        return ShareBatch(id: id, parts: parts, count: base, gaps: gaps, unfetched: unfetched)
    }

    /// Sends `acks` for the batch they were made from (ShareAcknowledge, answered once
    /// durable). Returns the partitions whose acknowledgements were refused, with why. Reject
    /// reasons stay here: the protocol has no field for them.
    @discardableResult
    public func acknowledge(_ acks: ShareAcknowledgements) async throws -> [TopicPartition: String] {
        let session = state.withLock { s -> Int32 in
            if s.outstanding?.id == acks.batchId { s.outstanding = nil }
            return s.session
        }
        let batches = acks.batches
        guard !batches.isEmpty else { return [:] }
        guard session > 0 else {
            logger.info("share consumer \(config.memberId): no share session to acknowledge in; the records come back after their lock")
            return [:]
        }
        let ids = state.withLock { $0.ids }
        var request = ShareAcknowledgeRequest()
        request.groupId = config.groupId
        request.memberId = config.memberId
        request.shareSessionEpoch = session
        request.topics = Self.acknowledgeTopics(batches, ids)
        let response = try await connection.send(request, version: 1)
        switch response.errorCode {
        case KafkaErrorCode.none:
            state.withLock { $0.session = Self.next(session) }
        case KafkaErrorCode.shareSessionNotFound, KafkaErrorCode.invalidShareSessionEpoch:
            state.withLock { $0.session = 0; $0.inSession = [] }
            return Dictionary(uniqueKeysWithValues: batches.keys.map { ($0, response.errorMessage ?? "the share session is gone") })
        default:
            throw refused("acknowledgements", response.errorCode, response.errorMessage)
        }
        var errors: [TopicPartition: String] = [:]
        let names = state.withLock { $0.names }
        for t in response.responses {
            for p in t.partitions where p.errorCode != 0 {
                if let name = names[t.topicId] { errors[TopicPartition(name, p.partitionIndex)] = p.errorMessage ?? "error code \(p.errorCode)" }
            }
        }
        return errors
    }

    /// Settles the outstanding batch as a poll would and closes the share session (the
    /// broker releases what else the member holds), leaves the group and disconnects.
    public func close() async {
        let (outstanding, joined, closed, session) = state.withLock { s in
            defer { s.closed = true; s.outstanding = nil }
            return (s.outstanding, s.joined, s.closed, s.session)
        }
        guard !closed else { return }
        if joined && session > 0 {
            var request = ShareAcknowledgeRequest()
            request.groupId = config.groupId
            request.memberId = config.memberId
            request.shareSessionEpoch = -1
            if let b = outstanding {
                let batches = ShareAcknowledgements(batch: b, fill: config.acknowledgement == .implicit ? .accept : .release).batches
                request.topics = Self.acknowledgeTopics(batches, state.withLock { $0.ids })
            }
            _ = try? await connection.send(request, version: 1, timeout: .seconds(10))
        }
        if joined {
            _ = try? await connection.send(ShareGroupHeartbeatRequest(groupId: config.groupId, memberId: config.memberId, memberEpoch: -1), version: 1, timeout: .seconds(10))
        }
        await connection.close()
    }
}
