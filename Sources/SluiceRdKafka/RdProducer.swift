// A librdkafka producer: idempotent by default, transactional with a transactional id. As a
// LaneOutput it takes the runtime's record batches: each record is handed to librdkafka
// (which batches and compresses on its own), and `flush` waits for every delivery report.
#if RdKafka
import CRdKafka
import Foundation
import Logging
import SluiceComponents
import SluiceLog
import Synchronization

public final class RdProducer: LaneOutput, @unchecked Sendable {
    let handle: RdHandle
    let name: String
    private let delivery = DeliveryTracker()
    /// Transaction calls block: they run here, in order.
    private let worker: BlockingWorker
    /// Serves delivery reports: a thread that waits in rd_kafka_poll.
    private let poller: Thread
    private let stopping = StopFlag()
    private let pollerDone = ExitSignal()
    private let metadata: RdMetadata
    let transactional: Bool

    /// `transactionalId` nil: an idempotent producer.
    public init(_ settings: RdKafkaSettings, name: String, transactionalId: String? = nil, logger: Logger) throws {
        var own: [(String, String)] = [
            ("client.id", name),
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", "5"),
            // Keyed records land where Kafka's Java clients and the embedded broker put them.
            ("partitioner", "murmur2_random"),
            ("queue.buffering.max.messages", "1000000"),
            ("queue.buffering.max.kbytes", "1048576"),
            ("batch.size", "1048576"),
            ("message.max.bytes", "16777216"),
        ]
        if let transactionalId {
            own.append(("transactional.id", transactionalId))
            own.append(("transaction.timeout.ms", "60000"))
        }
        let conf = try makeConf(settings, own)
        rd_kafka_conf_set_dr_msg_cb(conf) { rk, message, _ in
            guard let cb = RdCallbacks.from(rk), let message else { return }
            let m = message.pointee
            cb.delivery?.delivered(error: m.err == RD_KAFKA_RESP_ERR_NO_ERROR ? nil
                : "\(m.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? "?")/\(m.partition): \(String(cString: rd_kafka_err2str(m.err)))")
        }
        let callbacks = RdCallbacks(logger: logger, name: name, delivery: delivery)
        handle = try RdHandle(RD_KAFKA_PRODUCER, conf: conf, callbacks: callbacks)
        self.name = name
        transactional = transactionalId != nil
        worker = BlockingWorker(name: "\(name)-txn")
        metadata = RdMetadata(handle: handle)
        let h = handle, stop = stopping, done = pollerDone
        poller = Thread {
            let rk = h.rk
            while !stop.isSet { rd_kafka_poll(rk, 100) }
            done.signal()
        }
        poller.name = "\(name)-poll"
        poller.start()
    }

    // MARK: LaneOutput

    public func send(_ builder: inout RecordBatchBuilder, topic: String, partition: Int32) async throws {
        guard !builder.isEmpty else { return }
        builder.seal()
        let count = Int(builder.recordCount)
        delivery.add(count)
        var handed = 0
        defer {
            // Records never handed over will have no report.
            for _ in handed..<count { delivery.delivered(error: nil) }
            builder.reset()
        }
        let rk = handle.rk
        try await withBatchRecords(builder.bytes) { record in
            var headers: OpaquePointer?
            if record.headerCount > 0 {
                headers = rd_kafka_headers_new(record.headerCount)
                record.forEachHeader { name, value in
                    let n = String(decoding: name, as: UTF8.self)
                    if let value {
                        _ = rd_kafka_header_add(headers, n, -1, value.baseAddress, value.count)
                    } else {
                        _ = rd_kafka_header_add(headers, n, -1, nil, 0)
                    }
                }
            }
            while true {
                let err = sluice_rdk_produce(rk, topic, partition,
                                             record.key?.baseAddress, record.key?.count ?? 0,
                                             record.value?.baseAddress, record.value?.count ?? 0,
                                             record.timestamp, headers, nil)
                if err == RD_KAFKA_RESP_ERR_NO_ERROR { break }
                if let headers { rd_kafka_headers_destroy(headers) }
                if err == RD_KAFKA_RESP_ERR__QUEUE_FULL { return false }  // wait for room, retry this record
                throw RdKafkaError("producing to \(topic)/\(partition)", code: err)
            }
            handed += 1
            return true
        }
    }

    public func flush() async throws {
        try await delivery.waitForAll()
    }

    /// Hands one record to librdkafka (copied), waiting while its queue is full. A delivery
    /// failure is reported by the next `flush`. Blocks only the calling thread, and only when
    /// the queue is full: for a command's own thread, not the cooperative pool.
    public func produce(topic: String, partition: Int32?, key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer?, timestamp: Int64) throws {
        delivery.add(1)
        // An empty key or value is not a null one: it needs a pointer, whatever its count.
        let k = key.map { $0.baseAddress ?? emptyBytes } ?? nil
        let v = value.map { $0.baseAddress ?? emptyBytes } ?? nil
        while true {
            let err = sluice_rdk_produce(handle.rk, topic, partition ?? RD_KAFKA_PARTITION_UA,
                                         k, key?.count ?? 0, v, value?.count ?? 0,
                                         timestamp, nil, nil)
            if err == RD_KAFKA_RESP_ERR_NO_ERROR { return }
            if err == RD_KAFKA_RESP_ERR__QUEUE_FULL { usleep(1_000); continue }
            delivery.delivered(error: nil)
            throw RdKafkaError("producing to \(topic)\(partition.map { "/\($0)" } ?? "")", code: err)
        }
    }

    /// `flush` for a command's own thread: blocks until every record handed over has its
    /// delivery report, then throws the first failure.
    public func flushBlocking() throws {
        while delivery.pending > 0 { _ = rd_kafka_flush(handle.rk, 100) }
        if let e = delivery.takeError() { throw e }
    }

    /// The last error librdkafka reported for this client (a refused connection, say).
    public var lastBrokerError: String? { handle.callbacks.lastError.withLock { $0 } }

    public func partitionCount(_ topic: String) async throws -> Int32 {
        try await metadata.partitionCount(topic)
    }

    // MARK: Transactions

    public func initTransactions(timeoutMs: Int32 = 30_000) async throws {
        let h = handle
        try await worker.run {
            let rk = h.rk
            if let e = rd_kafka_init_transactions(rk, Int32(timeoutMs)) { throw RdKafkaError("init_transactions", error: e) }
        }
    }

    public func beginTransaction() throws {
        if let e = rd_kafka_begin_transaction(handle.rk) { throw RdKafkaError("begin_transaction", error: e) }
    }

    /// Adds the consumer's next offsets to the open transaction (KIP-447: fenced by the
    /// consumer's group generation).
    func sendOffsets(_ offsets: [(topic: String, partition: Int32, offset: Int64)], consumer: RdConsumer) async throws {
        let h = handle
        let groupMetadata = try await consumer.groupMetadata()
        try await worker.run {
            let rk = h.rk
            let list = partitionList(offsets)
            defer {
                rd_kafka_topic_partition_list_destroy(list)
                rd_kafka_consumer_group_metadata_destroy(groupMetadata.pointer)
            }
            if let e = rd_kafka_send_offsets_to_transaction(rk, list, groupMetadata.pointer, 30_000) {
                throw RdKafkaError("send_offsets_to_transaction", error: e)
            }
        }
    }

    public func commitTransaction() async throws {
        let h = handle
        try await worker.run {
            let rk = h.rk
            if let e = rd_kafka_commit_transaction(rk, 60_000) { throw RdKafkaError("commit_transaction", error: e) }
        }
    }

    public func abortTransaction() async throws {
        let h = handle
        try await worker.run {
            let rk = h.rk
            if let e = rd_kafka_abort_transaction(rk, 60_000) { throw RdKafkaError("abort_transaction", error: e) }
        }
    }

    /// Flushes what is in flight (up to 30 s), then destroys the handle.
    public func close() async {
        let h = handle, stop = stopping, done = pollerDone
        _ = try? await worker.run {
            let rk = h.rk
            _ = rd_kafka_flush(rk, 30_000)
            stop.set()
            done.wait(seconds: 1)
            h.destroy()
        }
        worker.stop()
    }
}

/// Where an empty (not null) key or value points: one byte, never written or read.
nonisolated(unsafe) private let emptyBytes = UnsafeRawPointer(UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 1))

/// A consumer group metadata pointer carried from the consumer's thread to a producer's.
struct GroupMetadata: @unchecked Sendable {
    let pointer: OpaquePointer
}

/// Calls `body` with each record of a sealed batch; `body` returns false to be called again
/// with the same record after a short wait (librdkafka's queue is full).
func withBatchRecords(_ bytes: [UInt8], _ body: (RecordView) throws -> Bool) async throws {
    var records: [Record] = []
    var retryFrom = -1
    // Decode once; a full queue is rare, so the records are materialized only then.
    try bytes.withUnsafeBytes { p in
        let view = RecordBatchView(header: BatchHeader(p), bytes: p)
        var index = 0
        try view.forEachRecord { r in
            if retryFrom >= 0 { records.append(r.materialize()); return }
            if try !body(r) {
                retryFrom = index
                records.append(r.materialize())
            }
            index += 1
        }
    }
    guard retryFrom >= 0 else { return }
    var i = 0
    while i < records.count {
        let r = records[i]
        let handed = try r.withView { try body($0) }
        if handed { i += 1 } else { try await Task.sleep(for: .milliseconds(2)) }
    }
}

extension Record {
    func withView<T>(_ body: (RecordView) throws -> T) rethrows -> T {
        var b = RecordBatchBuilder(capacity: 64 + (key?.count ?? 0) + (value?.count ?? 0))
        b.append(key: key, value: value, timestamp: timestamp, headers: headers)
        b.seal()
        return try b.bytes.withUnsafeBytes { p in
            var out: T?
            try RecordBatchView(header: BatchHeader(p), bytes: p).forEachRecord { out = try body($0) }
            return out!
        }
    }
}

/// Topic metadata through a handle (blocking calls on their own thread).
final class RdMetadata: Sendable {
    let handle: RdHandle
    private let worker = BlockingWorker(name: "sluice-rdkafka-metadata")
    init(handle: RdHandle) { self.handle = handle }
    deinit { worker.stop() }

    func partitionCount(_ topic: String) async throws -> Int32 {
        let h = handle
        return try await worker.run {
            let rk = h.rk
            guard let rkt = rd_kafka_topic_new(rk, topic, nil) else { throw RdKafkaError("could not open topic '\(topic)'") }
            defer { rd_kafka_topic_destroy(rkt) }
            var md: UnsafePointer<rd_kafka_metadata>?
            let err = rd_kafka_metadata(rk, 0, rkt, &md, 10_000)
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let md else { throw RdKafkaError("metadata of topic '\(topic)'", code: err) }
            defer { rd_kafka_metadata_destroy(md) }
            guard md.pointee.topic_cnt > 0 else { throw RdKafkaError("topic '\(topic)' does not exist") }
            let t = md.pointee.topics[0]
            if t.err != RD_KAFKA_RESP_ERR_NO_ERROR { throw RdKafkaError("topic '\(topic)'", code: t.err) }
            return t.partition_cnt
        }
    }
}
#endif

#if RdKafka
/// A thread's exit, waited for by another (at most a given time).
final class ExitSignal: @unchecked Sendable {
    private let condition = NSCondition()
    private var exited = false  // guarded by `condition`

    func signal() {
        condition.lock()
        exited = true
        condition.broadcast()
        condition.unlock()
    }

    func wait(seconds: Double) {
        let deadline = Date().addingTimeInterval(seconds)
        condition.lock()
        while !exited && condition.wait(until: deadline) {}
        condition.unlock()
    }
}

/// A flag one thread sets and another polls.
final class StopFlag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .acquiring) }
    func set() { value.store(true, ordering: .releasing) }
}
#endif
