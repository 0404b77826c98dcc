// A librdkafka group consumer with the cooperative-sticky assignor. Every call that blocks
// runs on the consumer's own thread, and so do the rebalance callbacks librdkafka makes
// inside its poll: the driver polls only between batches, so a revoked partition never has
// records in flight. A poll returns each partition's records as one RecordBatch (the bytes
// copied once out of librdkafka's messages).
#if RdKafka
import CRdKafka
import Foundation
import Logging
import SluiceComponents
import Synchronization

final class RdConsumer: @unchecked Sendable {
    struct Part: @unchecked Sendable {
        var lane: SourceLane
        /// Offset of the first record, and the one after the last.
        var from: Int64
        var next: Int64
        var batches: [RecordBatch]
    }

    private struct Shared {
        var assignment: Set<SourceLane> = []
        /// Partitions whose end the consumer has reached (no record since).
        var atEnd: Set<SourceLane> = []
        var assigned: [SourceLane] = []
        var revoked: [SourceLane] = []
    }

    let handle: RdHandle
    let name: String
    private let worker: BlockingWorker
    private let shared = Mutex(Shared())
    /// The poll in progress (worker thread only): records per partition so far.
    private var building: [SourceLane: Part] = [:]
    private let logger: Logger

    /// `group` nil: a consumer of assigned partitions only (no subscription, no commits).
    /// librdkafka's consumer wants a group id even then; one made up for the process is
    /// never joined or committed to, so the broker never hears of it.
    init(_ settings: RdKafkaSettings, group: String?, clientId: String, earliest: Bool, readCommitted: Bool, fetchBytes: Int, logger: Logger) throws {
        let own: [(String, String)] = [
            ("group.id", group ?? "sluice-unjoined-\(getpid())"),
            ("client.id", clientId),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", earliest ? "earliest" : "latest"),
            ("isolation.level", readCommitted ? "read_committed" : "read_uncommitted"),
            ("partition.assignment.strategy", "cooperative-sticky"),
            ("enable.partition.eof", "true"),
            ("session.timeout.ms", "6000"),
            ("heartbeat.interval.ms", "500"),
            ("max.partition.fetch.bytes", "\(max(1024, fetchBytes))"),
            ("fetch.max.bytes", "\(max(2 << 20, fetchBytes * 4))"),  // at least message.max.bytes (1 MB)
            ("fetch.wait.max.ms", "100"),
            // librdkafka (2.0) stops fetching a partition whose local queue holds this many
            // messages and looks again only about a second later: at the default, 100000, a
            // worker reading a backlog idled most of that second, every time (a 1M-record
            // backlog read in 5.8 s against kcat's 1.0 s). The queue stays bounded by
            // queued.max.messages.kbytes (64 MiB by default).
            ("queued.min.messages", "1000000"),
        ]
        let conf = try makeConf(settings, own)
        self.name = clientId
        self.logger = logger
        worker = BlockingWorker(name: "\(clientId)-consumer")
        var rebalance: (@Sendable (OpaquePointer, rd_kafka_resp_err_t, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) -> Void)?
        let box = WeakBox<RdConsumer>()
        rebalance = { rk, err, list in box.value?.rebalanced(rk, err, list) }
        rd_kafka_conf_set_rebalance_cb(conf) { rk, err, list, _ in
            guard let cb = RdCallbacks.from(rk), let rk, let list else { return }
            cb.rebalance?(rk, err, list)
        }
        handle = try RdHandle(RD_KAFKA_CONSUMER, conf: conf, callbacks: RdCallbacks(logger: logger, name: clientId, rebalance: rebalance))
        box.value = self
        rd_kafka_poll_set_consumer(handle.rk)
    }

    /// On the worker thread, inside rd_kafka_consumer_poll.
    private func rebalanced(_ rk: OpaquePointer, _ err: rd_kafka_resp_err_t, _ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) {
        let cooperative = String(cString: rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE"
        let lanes = list.pointee.entries.map { SourceLane(topic: $0.topic, partition: $0.partition) }
        switch err {
        case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
            if cooperative {
                if let e = rd_kafka_incremental_assign(rk, list) { logger.error("\(name): \(RdKafkaError("incremental_assign", error: e))") }
            } else {
                _ = rd_kafka_assign(rk, list)
            }
            shared.withLock { s in
                s.assignment.formUnion(lanes)
                s.assigned += lanes
            }
            logger.info("\(name): assigned \(lanes.map(\.text).joined(separator: ", "))")
        case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
            let lost = rd_kafka_assignment_lost(rk) != 0
            if cooperative {
                if let e = rd_kafka_incremental_unassign(rk, list) { logger.error("\(name): \(RdKafkaError("incremental_unassign", error: e))") }
            } else {
                _ = rd_kafka_assign(rk, nil)
            }
            for lane in lanes { building[lane] = nil }
            shared.withLock { s in
                s.assignment.subtract(lanes)
                s.atEnd.subtract(lanes)
                s.revoked += lanes
            }
            logger.info("\(name): \(lost ? "lost" : "revoked") \(lanes.map(\.text).joined(separator: ", "))")
        default:
            logger.error("\(name): rebalance error: \(String(cString: rd_kafka_err2str(err)))")
            _ = rd_kafka_assign(rk, nil)
            shared.withLock { s in
                s.revoked += Array(s.assignment)
                s.assignment = []
                s.atEnd = []
            }
        }
    }

    func subscribe(_ topics: [String]) async throws {
        let h = handle
        try await worker.run {
            let rk = h.rk
            let list = partitionList(topics.map { ($0, RD_KAFKA_PARTITION_UA, 0) })
            defer { rd_kafka_topic_partition_list_destroy(list) }
            let err = rd_kafka_subscribe(rk, list)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw RdKafkaError("subscribing to \(topics.joined(separator: ", "))", code: err) }
        }
    }

    /// Reads the partitions from the given offsets (RD_KAFKA_OFFSET_BEGINNING and _END too),
    /// outside any group's assignment.
    func assign(_ starts: [(topic: String, partition: Int32, offset: Int64)]) async throws {
        let h = handle
        try await worker.run {
            let list = partitionList(starts)
            defer { rd_kafka_topic_partition_list_destroy(list) }
            let err = rd_kafka_assign(h.rk, list)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw RdKafkaError("assigning \(starts.map { "\($0.topic)-\($0.partition)" }.joined(separator: ", "))", code: err) }
        }
        shared.withLock { s in s.assignment = Set(starts.map { SourceLane(topic: $0.topic, partition: $0.partition) }) }
    }

    /// Records that arrive within `maxWaitMs` (returning as soon as some did and nothing
    /// more is ready at once), up to `maxRecords`/`maxBytes`, per partition in batches of
    /// at most `batchRecords`.
    func poll(maxWaitMs: Int, maxRecords: Int, maxBytes: Int, batchRecords: Int) async throws -> [Part] {
        try await worker.run { [self] in
            try pollOnThread(maxWaitMs: maxWaitMs, maxRecords: maxRecords, maxBytes: maxBytes, batchRecords: batchRecords)
        }
    }

    private func pollOnThread(maxWaitMs: Int, maxRecords: Int, maxBytes: Int, batchRecords: Int) throws -> [Part] {
        let rk = handle.rk
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(maxWaitMs) * 1_000_000
        var count = 0, bytes = 0
        building = [:]
        while count < maxRecords && bytes < maxBytes {
            let now = DispatchTime.now().uptimeNanoseconds
            let wait = count == 0 && now < deadline ? Int32((deadline - now) / 1_000_000) : 0
            guard let msg = rd_kafka_consumer_poll(rk, wait) else {
                if count == 0 && DispatchTime.now().uptimeNanoseconds < deadline { continue }
                break
            }
            defer { rd_kafka_message_destroy(msg) }
            let m = msg.pointee
            let topic = m.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? ""
            let lane = SourceLane(topic: topic, partition: m.partition)
            if m.err == RD_KAFKA_RESP_ERR__PARTITION_EOF {
                shared.withLock { s in if s.assignment.contains(lane) { s.atEnd.insert(lane) } }
                continue
            }
            if m.err != RD_KAFKA_RESP_ERR_NO_ERROR {
                let why = String(cString: rd_kafka_err2str(m.err))
                if m.err == RD_KAFKA_RESP_ERR__FATAL { throw RdKafkaError("\(name): fatal consumer error: \(why)") }
                logger.warning("\(name): consumer error\(topic.isEmpty ? "" : " on \(lane.text)"): \(why)")
                continue
            }
            if building[lane] == nil {
                shared.withLock { _ = $0.atEnd.remove(lane) }
                building[lane] = Part(lane: lane, from: m.offset, next: m.offset, batches: [])
            }
            var tstype = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
            let timestamp = rd_kafka_message_timestamp(msg, &tstype)
            building[lane]!.append(msg, timestamp: timestamp, batchRecords: batchRecords)
            count += 1
            bytes += m.len + m.key_len
        }
        let parts = building.values.filter { !$0.batches.isEmpty }.sorted { ($0.lane.topic ?? "", $0.lane.partition) < ($1.lane.topic ?? "", $1.lane.partition) }
        building = [:]
        return parts
    }

    /// Partitions assigned and revoked since the last call.
    func takeRebalanceEvents() -> (assigned: [SourceLane], revoked: [SourceLane]) {
        shared.withLock { s in
            defer { s.assigned = []; s.revoked = [] }
            return (s.assigned, s.revoked)
        }
    }

    var assignment: Set<SourceLane> { shared.withLock { $0.assignment } }

    /// Every assigned partition has been read to its end.
    var caughtUp: Bool {
        shared.withLock { s in !s.assignment.isEmpty && s.assignment.isSubset(of: s.atEnd) }
    }

    /// Commits the next offsets synchronously. A commit refused because the group moved on
    /// (rebalance, generation, member) is logged and skipped: the new owner resumes from the
    /// last commit.
    func commit(_ offsets: [SourceLane: Int64]) async throws {
        guard !offsets.isEmpty else { return }
        let h = handle, name = self.name, logger = self.logger
        try await worker.run {
            let rk = h.rk
            let list = partitionList(offsets.map { ($0.key.topic ?? "", $0.key.partition, $0.value) })
            defer { rd_kafka_topic_partition_list_destroy(list) }
            let err = rd_kafka_commit(rk, list, 0)
            switch err {
            case RD_KAFKA_RESP_ERR_NO_ERROR: return
            case RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS, RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION, RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID, RD_KAFKA_RESP_ERR__NO_OFFSET:
                logger.info("\(name): commit skipped after a rebalance: \(String(cString: rd_kafka_err2str(err)))")
            default:
                throw RdKafkaError("\(name): committing offsets", code: err)
            }
        }
    }

    /// The group's committed offset of each partition (nil: none).
    func committed(_ lanes: [SourceLane]) async throws -> [SourceLane: Int64] {
        let h = handle
        return try await worker.run {
            let rk = h.rk
            let list = partitionList(lanes.map { ($0.topic ?? "", $0.partition, Int64(RD_KAFKA_OFFSET_INVALID)) })
            defer { rd_kafka_topic_partition_list_destroy(list) }
            let err = rd_kafka_committed(rk, list, 30_000)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw RdKafkaError("reading committed offsets", code: err) }
            var out: [SourceLane: Int64] = [:]
            for e in list.pointee.entries where e.offset >= 0 { out[SourceLane(topic: e.topic, partition: e.partition)] = e.offset }
            return out
        }
    }

    func seek(_ lane: SourceLane, to offset: Int64) async throws {
        let h = handle
        try await worker.run {
            let rk = h.rk
            let list = partitionList([(lane.topic ?? "", lane.partition, offset)])
            defer { rd_kafka_topic_partition_list_destroy(list) }
            if let e = rd_kafka_seek_partitions(rk, list, 30_000) { throw RdKafkaError("seeking \(lane.text) to \(offset)", error: e) }
        }
    }

    /// The group metadata a transactional producer sends with the offsets (KIP-447).
    func groupMetadata() async throws -> GroupMetadata {
        let h = handle
        return try await worker.run {
            let rk = h.rk
            guard let m = rd_kafka_consumer_group_metadata(rk) else { throw RdKafkaError("the consumer has no group metadata") }
            return GroupMetadata(pointer: m)
        }
    }

    /// Leaves the group (the final revoke runs here), then destroys the handle.
    func close() async {
        let handle = self.handle, name = self.name, logger = self.logger
        _ = try? await worker.run {
            let err = rd_kafka_consumer_close(handle.rk)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR { logger.warning("\(name): closing the consumer: \(String(cString: rd_kafka_err2str(err)))") }
            handle.destroy()
        }
        worker.stop()
    }
}

extension RdConsumer.Part {
    /// Copies one message into the last batch (a new one every `batchRecords` records).
    mutating func append(_ msg: UnsafeMutablePointer<rd_kafka_message_t>, timestamp: Int64, batchRecords: Int) {
        if batches.isEmpty || batches[batches.count - 1].count >= batchRecords {
            var b = RecordBatch()
            _ = b.laneIndex(lane)
            batches.append(b)
        }
        let m = msg.pointee
        let i = batches.count - 1
        let key = m.key.map { UnsafeRawBufferPointer(start: $0, count: m.key_len) }
        let value = m.payload.map { UnsafeRawBufferPointer(start: $0, count: m.len) }
        let headerStart = Int32(batches[i].headers.count)
        var headers: OpaquePointer?
        if rd_kafka_message_headers(msg, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR, let headers {
            var idx = 0
            var name: UnsafePointer<CChar>?
            var v: UnsafeRawPointer?
            var size = 0
            while rd_kafka_header_get_all(headers, idx, &name, &v, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
                let n = name.map { UnsafeRawBufferPointer(start: $0, count: strlen($0)) } ?? UnsafeRawBufferPointer(start: nil, count: 0)
                let nameSpan = batches[i].store(n)
                let valueSpan = v.map { batches[i].store(UnsafeRawBufferPointer(start: $0, count: size)) } ?? .null
                batches[i].headers.append(HeaderSlot(name: nameSpan, value: valueSpan))
                idx += 1
            }
        }
        batches[i].appendCopied(key: key, value: value, offset: m.offset, timestamp: timestamp, headerStart: headerStart)
        next = m.offset + 1
    }
}

final class WeakBox<T: AnyObject>: @unchecked Sendable {
    weak var value: T?
}

extension SourceLane {
    var text: String { "\(topic ?? "-")/\(partition)" }
}
#endif

#if RdKafka
/// Reads a group's committed offsets without joining it (for benchmarks and tools).
public final class RdConsumerProbe: Sendable {
    private let consumer: RdConsumer
    private let topic: String

    public init(_ client: RdKafkaClient, group: String, topic: String = "bench-in") throws {
        consumer = try RdConsumer(client.settings, group: group, clientId: "sluice-probe", earliest: true, readCommitted: false, fetchBytes: 1 << 20, logger: client.logger)
        self.topic = topic
    }

    /// The sum of the group's committed offsets over partitions 0..<partitions.
    public func committed(partitions: Int32) async throws -> Int {
        let lanes = (0..<partitions).map { SourceLane(topic: topic, partition: $0) }
        return Int(try await consumer.committed(lanes).values.reduce(0, +))
    }

    public func close() async { await consumer.close() }
}
#endif

#if RdKafka
/// A consumer for `sluice consume --broker kafka://…`: assigned partitions from chosen
/// offsets, or a group member (subscribed, committing what was printed).
public final class RdConsoleConsumer: Sendable {
    public enum Start: Sendable {
        case earliest, latest
        case offset(Int64)
        /// The group's committed offset (earliest or latest without one, as configured).
        case committed
    }

    public struct Part: Sendable {
        public var partition: Int32
        public var from: Int64
        public var next: Int64
        public var batches: [RecordBatch]
    }

    private let consumer: RdConsumer
    private let topic: String

    public init(url: String, properties: [String: String], label: String = "broker_options", topic: String, group: String?, earliest: Bool, readCommitted: Bool, logger: Logger) throws {
        var settings = try RdKafkaSettings(url: url, properties: properties)
        settings.propertiesLabel = label
        consumer = try RdConsumer(settings, group: group,
                                  clientId: "sluice-consume@\(ProcessInfo.processInfo.hostName):\(getpid())",
                                  earliest: earliest, readCommitted: readCommitted, fetchBytes: 1 << 20, logger: logger)
        self.topic = topic
    }

    public func assign(_ starts: [(partition: Int32, start: Start)]) async throws {
        try await consumer.assign(starts.map { p in
            let offset: Int64
            switch p.start {
            case .earliest: offset = Int64(RD_KAFKA_OFFSET_BEGINNING)
            case .latest: offset = Int64(RD_KAFKA_OFFSET_END)
            case .offset(let o): offset = o
            case .committed: offset = Int64(RD_KAFKA_OFFSET_STORED)
            }
            return (topic, p.partition, offset)
        })
    }

    public func subscribe() async throws { try await consumer.subscribe([topic]) }

    /// Up to `maxRecords` records, per partition in offset order.
    public func poll(maxWaitMs: Int, maxRecords: Int) async throws -> [Part] {
        try await consumer.poll(maxWaitMs: maxWaitMs, maxRecords: maxRecords, maxBytes: 4 << 20, batchRecords: 10_000).map {
            Part(partition: $0.lane.partition, from: $0.from, next: $0.next, batches: $0.batches)
        }
    }

    /// Every assigned partition has been read to its end.
    public var caughtUp: Bool { consumer.caughtUp }
    public var hasAssignment: Bool { !consumer.assignment.isEmpty }

    /// Commits the next offsets (a group member only).
    public func commit(_ next: [Int32: Int64]) async throws {
        try await consumer.commit(Dictionary(uniqueKeysWithValues: next.map { (SourceLane(topic: topic, partition: $0.key), $0.value) }))
    }

    public func close() async { await consumer.close() }
}
#endif
