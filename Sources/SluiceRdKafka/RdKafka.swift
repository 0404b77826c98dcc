// The plumbing under the librdkafka client: errors, configuration, the threads that make
// librdkafka's blocking calls (never the cooperative pool or an event loop), and the
// callbacks that carry its log lines into swift-log. Compiled only with the RdKafka trait.
#if RdKafka
import CRdKafka
import Foundation
import Logging
import Synchronization

/// A librdkafka failure, in one sentence naming what failed.
public struct RdKafkaError: Error, Sendable, CustomStringConvertible {
    public var code: Int32
    public var message: String
    /// The producer was fenced by a newer instance of its transactional id.
    public var isFenced: Bool
    /// A transaction step that must be followed by an abort.
    public var requiresAbort: Bool
    public var isRetriable: Bool
    public var description: String { message }

    /// The request was wrong (a topic that does not exist or already does, a bad setting, a
    /// group that is not empty), not the cluster or the connection.
    public var isUserError: Bool {
        [RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS, RD_KAFKA_RESP_ERR_INVALID_PARTITIONS,
         RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR, RD_KAFKA_RESP_ERR_INVALID_CONFIG, RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION,
         RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND, RD_KAFKA_RESP_ERR_NON_EMPTY_GROUP, RD_KAFKA_RESP_ERR_POLICY_VIOLATION,
         RD_KAFKA_RESP_ERR__INVALID_ARG, RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC, RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION,
         RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE].map(\.rawValue).contains(code)
    }

    init(_ what: String, code: rd_kafka_resp_err_t) {
        self.code = code.rawValue
        message = "\(what): \(String(cString: rd_kafka_err2str(code)))"
        isFenced = code == RD_KAFKA_RESP_ERR__FENCED || code == RD_KAFKA_RESP_ERR_PRODUCER_FENCED
        requiresAbort = false
        isRetriable = false
    }

    /// Takes (and destroys) an rd_kafka_error_t.
    init(_ what: String, error: OpaquePointer) {
        let code = rd_kafka_error_code(error)
        self.code = code.rawValue
        message = "\(what): \(String(cString: rd_kafka_error_string(error)))"
        isFenced = code == RD_KAFKA_RESP_ERR__FENCED || code == RD_KAFKA_RESP_ERR_PRODUCER_FENCED || code == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH
        requiresAbort = rd_kafka_error_txn_requires_abort(error) != 0
        isRetriable = rd_kafka_error_is_retriable(error) != 0
        rd_kafka_error_destroy(error)
    }

    init(code: rd_kafka_resp_err_t, _ message: String) {
        self.code = code.rawValue
        self.message = message
        isFenced = false
        requiresAbort = false
        isRetriable = false
    }

    init(_ message: String) {
        code = -1
        self.message = message
        isFenced = false
        requiresAbort = false
        isRetriable = false
    }
}

/// Where to connect and with what settings: `kafka://host:port[,host:port]` plus any
/// librdkafka property (`broker_options:` in a pipeline file).
public struct RdKafkaSettings: Sendable {
    public var bootstrap: String
    public var properties: [String: String]
    /// Where the properties came from, for an error about one.
    public var propertiesLabel = "broker_options"

    public init(url: String, properties: [String: String] = [:]) throws {
        guard url.hasPrefix("kafka://") else { throw RdKafkaError("broker '\(url)' is not a kafka://host:port URL") }
        let hosts = url.dropFirst("kafka://".count).split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        guard !hosts.isEmpty, hosts.allSatisfy({ h in h.split(separator: ":").count == 2 && Int(h.split(separator: ":")[1]) != nil }) else {
            throw RdKafkaError("broker '\(url)' must list host:port pairs, e.g. kafka://127.0.0.1:9092,10.0.0.2:9092")
        }
        bootstrap = hosts.joined(separator: ",")
        self.properties = properties
    }
}

/// The NUL-terminated text librdkafka wrote into an error buffer.
func cText(_ buffer: [CChar]) -> String {
    let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}

/// Builds an rd_kafka_conf_t: the bootstrap servers, Sluice's own settings, then the
/// user's properties (which win). An unknown property or bad value is an error naming it.
func makeConf(_ settings: RdKafkaSettings, _ own: [(String, String)]) throws -> OpaquePointer {
    let conf = rd_kafka_conf_new()!
    var errstr = [CChar](repeating: 0, count: 512)
    func set(_ name: String, _ value: String, user: Bool) throws {
        if rd_kafka_conf_set(conf, name, value, &errstr, errstr.count) != RD_KAFKA_CONF_OK {
            let why = cText(errstr)
            rd_kafka_conf_destroy(conf)
            throw RdKafkaError(user ? "\(settings.propertiesLabel): \(name): \(why)" : "librdkafka setting \(name)=\(value): \(why)")
        }
    }
    try set("bootstrap.servers", settings.bootstrap, user: false)
    for (k, v) in own { try set(k, v, user: false) }
    for (k, v) in settings.properties.sorted(by: { $0.key < $1.key }) { try set(k, v, user: true) }
    return conf
}

/// What librdkafka's C callbacks reach through the handle's opaque pointer.
final class RdCallbacks: @unchecked Sendable {
    let logger: Logger
    let name: String
    /// Set for producers: counts messages in flight.
    let delivery: DeliveryTracker?
    /// Set for consumers: called on the consumer's thread inside its poll.
    let rebalance: (@Sendable (OpaquePointer, rd_kafka_resp_err_t, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) -> Void)?
    /// The last error librdkafka reported (a refused connection, say), for a timeout's sentence.
    let lastError = Mutex<String?>(nil)

    init(logger: Logger, name: String, delivery: DeliveryTracker? = nil,
         rebalance: (@Sendable (OpaquePointer, rd_kafka_resp_err_t, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) -> Void)? = nil) {
        self.logger = logger
        self.name = name
        self.delivery = delivery
        self.rebalance = rebalance
    }

    static func from(_ rk: OpaquePointer?) -> RdCallbacks? {
        guard let rk, let p = rd_kafka_opaque(rk) else { return nil }
        return Unmanaged<RdCallbacks>.fromOpaque(p).takeUnretainedValue()
    }
}

/// Installs the log and error callbacks (librdkafka's lines go to swift-log with the
/// client's name) and the opaque; returns the retained opaque, released by `RdHandle`.
func installCallbacks(_ conf: OpaquePointer, _ callbacks: RdCallbacks) -> Unmanaged<RdCallbacks> {
    let retained = Unmanaged.passRetained(callbacks)
    rd_kafka_conf_set_opaque(conf, retained.toOpaque())
    rd_kafka_conf_set_log_cb(conf) { rk, level, facility, line in
        guard let cb = RdCallbacks.from(rk) else { return }
        let fac = facility.map { String(cString: $0) } ?? "-"
        let text = "\(cb.name): librdkafka \(fac): \(line.map { String(cString: $0) } ?? "")"
        // A failed connection is retried by librdkafka itself: a warning, not an error.
        // `broker_options` go to a pipeline's consumers and producers alike, so a consumer
        // property ignored by a producer (or the reverse) is expected, not a warning.
        let other = fac == "CONFWARN" && text.contains(" property and will be ignored by this ")
        // A failed transaction is the caller's to handle (the lane drivers abort it and read
        // the records again, and log that themselves).
        switch fac == "FAIL" ? max(level, 4) : other ? 7 : fac == "TXNERR" ? 6 : level {
        case ...3: cb.logger.error("\(text)")
        case 4: cb.logger.warning("\(text)")
        case 5: cb.logger.notice("\(text)")
        case 6: cb.logger.info("\(text)")
        default: cb.logger.debug("\(text)")
        }
    }
    rd_kafka_conf_set_error_cb(conf) { rk, err, reason, _ in
        guard let cb = RdCallbacks.from(rk) else { return }
        let why = reason.map { String(cString: $0) } ?? String(cString: rd_kafka_err2str(rd_kafka_resp_err_t(err)))
        cb.lastError.withLock { $0 = why }
        // Connection trouble is retried by librdkafka itself; only fatal errors end a client.
        if rd_kafka_resp_err_t(err) == RD_KAFKA_RESP_ERR__FATAL {
            cb.logger.error("\(cb.name): fatal librdkafka error: \(why)")
        } else {
            cb.logger.info("\(cb.name): librdkafka: \(why)")
        }
    }
    return retained
}

/// A handle and what its callbacks need, destroyed together.
final class RdHandle: @unchecked Sendable {
    let rk: OpaquePointer
    private let retainedCallbacks: Unmanaged<RdCallbacks>
    private let destroyed = Mutex(false)
    var callbacks: RdCallbacks { retainedCallbacks.takeUnretainedValue() }

    /// `type` is RD_KAFKA_PRODUCER or RD_KAFKA_CONSUMER; takes ownership of `conf`.
    init(_ type: rd_kafka_type_t, conf: OpaquePointer, callbacks: RdCallbacks) throws {
        let retained = installCallbacks(conf, callbacks)
        var errstr = [CChar](repeating: 0, count: 512)
        guard let rk = rd_kafka_new(type, conf, &errstr, errstr.count) else {
            rd_kafka_conf_destroy(conf)
            retained.release()
            throw RdKafkaError("could not create the librdkafka \(type == RD_KAFKA_PRODUCER ? "producer" : "consumer") \(callbacks.name): \(cText(errstr))")
        }
        self.rk = rk
        self.retainedCallbacks = retained
    }

    /// Destroys the handle (blocking: librdkafka joins its threads).
    func destroy() {
        guard destroyed.withLock({ d in defer { d = true }; return !d }) else { return }
        rd_kafka_destroy(rk)
        retainedCallbacks.release()
    }

    deinit { destroy() }
}

/// One thread that runs blocking jobs in order, so librdkafka's blocking calls (commits,
/// transactions, polls) never hold a cooperative-pool thread.
final class BlockingWorker: @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [() -> Void] = []
    private var stopping = false
    private var finished = false

    init(name: String) {
        let thread = Thread { [self] in loop() }
        thread.name = name
        thread.start()
    }

    private func loop() {
        while true {
            condition.lock()
            while jobs.isEmpty && !stopping { condition.wait() }
            if jobs.isEmpty && stopping {
                finished = true
                condition.broadcast()
                condition.unlock()
                return
            }
            let job = jobs.removeFirst()
            condition.unlock()
            job()
        }
    }

    private func enqueue(_ job: @escaping () -> Void) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard !stopping else { return false }
        jobs.append(job)
        condition.signal()
        return true
    }

    /// Runs `body` on the worker's thread and returns its result.
    func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<T, any Error>) in
            if !enqueue({ c.resume(with: Result { try body() }) }) {
                c.resume(throwing: RdKafkaError("the client is closed"))
            }
        }
    }

    /// Lets queued jobs finish, then ends the thread (returns at once).
    func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
    }
}

/// Messages a producer has handed to librdkafka and not yet had a delivery report for.
final class DeliveryTracker: Sendable {
    private let outstanding = Atomic<Int>(0)
    private let state = Mutex<(error: String?, waiters: [CheckedContinuation<Void, Never>])>((nil, []))

    func add(_ n: Int) { outstanding.add(n, ordering: .relaxed) }

    /// A delivery report (from librdkafka's thread).
    func delivered(error: String?) {
        if let error { state.withLock { if $0.error == nil { $0.error = error } } }
        if outstanding.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
            let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in defer { s.waiters = [] }; return s.waiters }
            for w in waiters { w.resume() }
        }
    }

    var pending: Int { outstanding.load(ordering: .acquiring) }

    /// The first delivery failure since the last call.
    func takeError() -> RdKafkaError? {
        state.withLock { s -> String? in defer { s.error = nil }; return s.error }.map { RdKafkaError("a produced record was not delivered: \($0)") }
    }

    /// Waits until every message handed over has its report; throws the first failure.
    func waitForAll() async throws {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { s -> Bool in
                if outstanding.load(ordering: .acquiring) == 0 { return true }
                s.waiters.append(c)
                return false
            }
            if ready { c.resume() }
        }
        if let error = state.withLock({ s -> String? in defer { s.error = nil }; return s.error }) {
            throw RdKafkaError("a produced record was not delivered: \(error)")
        }
    }
}

extension rd_kafka_topic_partition_list_t {
    /// (topic, partition, offset) of every element.
    var entries: [(topic: String, partition: Int32, offset: Int64)] {
        (0..<Int(cnt)).map { i in
            let e = elems[i]
            return (String(cString: e.topic), e.partition, e.offset)
        }
    }
}

/// A new partition list of `offsets` (free with rd_kafka_topic_partition_list_destroy).
func partitionList(_ offsets: [(topic: String, partition: Int32, offset: Int64)]) -> UnsafeMutablePointer<rd_kafka_topic_partition_list_t> {
    let list = rd_kafka_topic_partition_list_new(Int32(max(1, offsets.count)))!
    for o in offsets {
        let e = rd_kafka_topic_partition_list_add(list, o.topic, o.partition)!
        e.pointee.offset = o.offset
    }
    return list
}
#endif
