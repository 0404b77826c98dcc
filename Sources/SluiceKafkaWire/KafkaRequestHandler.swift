// Answers Kafka requests from the embedded broker: one frame in, one frame out (none for
// acks=0 produces). Record batches travel as stored: produce appends the client's batch bytes
// (validated, offsets assigned in place), fetch returns the log's bytes without re-encoding.
import Foundation
import Logging
import SluiceBroker
import SluiceLog

public struct KafkaListenerConfig: Sendable {
    /// Host and port advertised in Metadata (what clients connect back to).
    public var advertisedHost: String
    public var advertisedPort: Int32
    /// Largest request accepted; larger frames close the connection.
    public var maxRequestBytes: Int = 100 << 20
    /// Topics named in Metadata but missing are created with this many partitions (0: never).
    public var autoCreatePartitions: Int32 = 1
    public var clusterId = "sluice"
    /// When set, every connection must authenticate (SASL PLAIN or SCRAM-SHA-256) before any
    /// request other than ApiVersions, SaslHandshake and SaslAuthenticate.
    public var sasl: SASLUsers?

    public init(advertisedHost: String, advertisedPort: Int32) {
        self.advertisedHost = advertisedHost
        self.advertisedPort = advertisedPort
    }
}

public struct RequestHeader: Sendable {
    public var apiKey: Int16
    public var apiVersion: Int16
    public var correlationId: Int32
    public var clientId: String?
}

/// A request this listener cannot answer; the connection is closed with this reason.
public struct ProtocolViolation: Error, Sendable, CustomStringConvertible {
    public var description: String
}

public final class KafkaRequestHandler: Sendable {
    let broker: EmbeddedBroker
    let config: KafkaListenerConfig
    let logger: Logger
    static let nodeId: Int32 = 0
    static let maxFetchWaitMs: Int32 = 30_000

    public init(broker: EmbeddedBroker, config: KafkaListenerConfig, logger: Logger) {
        self.broker = broker
        self.config = config
        self.logger = logger
    }

    /// Parses the header; throws for unknown APIs and versions (except ApiVersions, which is
    /// answered with UNSUPPORTED_VERSION as Kafka does, so the client can retry lower).
    public static func header(_ frame: [UInt8]) throws -> (RequestHeader, KafkaReader) {
        var r = KafkaReader(frame)
        do {
            let key = try r.int16(), version = try r.int16(), correlation = try r.int32()
            let clientId = try r.nullableString()  // always an int16-length string
            let header = RequestHeader(apiKey: key, apiVersion: version, correlationId: correlation, clientId: clientId)
            if let api = ApiKey(rawValue: key), api.versions.contains(version), api.isFlexible(version) {
                r.flexible = true
                try r.taggedFields()
            }
            return (header, r)
        } catch {
            throw ProtocolViolation(description: "malformed request header: \(error)")
        }
    }

    /// A response and what must be durable before it may be sent (acks=all produces).
    public struct Response: Sendable {
        public var bytes: [UInt8]
        public var durable: [(PartitionHandle, Int64)]

        /// Waits until every write the response acknowledges is durable.
        public func waitUntilDurable() async throws {
            for (handle, offset) in durable { try await handle.log.waitUntilDurable(offset) }
        }
    }

    /// The response frame (size prefix included), or nil when none is sent (acks=0).
    public func handle(_ frame: [UInt8]) async throws -> [UInt8]? {
        var state = SASLState()
        return try await respond(frame, sasl: &state)?.bytes
    }

    /// Like `handle`, but an acks=all produce is answered before its records are durable: the
    /// caller waits for `durable` before sending, so the next requests of the connection can be
    /// processed meanwhile (responses still leave in request order).
    public func respond(_ frame: [UInt8], sasl: inout SASLState) async throws -> Response? {
        var durable: [(PartitionHandle, Int64)] = []
        guard let bytes = try await respond(frame, durable: &durable, sasl: &sasl) else { return nil }
        return Response(bytes: bytes, durable: durable)
    }

    private func respond(_ frame: [UInt8], durable: inout [(PartitionHandle, Int64)], sasl: inout SASLState) async throws -> [UInt8]? {
        let (header, body) = try Self.header(frame)
        guard let api = ApiKey(rawValue: header.apiKey) else {
            throw ProtocolViolation(description: "unknown API key \(header.apiKey)")
        }
        if api == .apiVersions && !api.versions.contains(header.apiVersion) {
            var w = KafkaWriter(responseTo: body, headerTaggedFields: false)
            apiVersions(&w, version: 0, error: KafkaErrorCode.unsupportedVersion)
            return w.fillResponseHeader(correlationId: header.correlationId)
        }
        guard api.versions.contains(header.apiVersion) else {
            throw ProtocolViolation(description: "\(api) version \(header.apiVersion) is not supported (supported: \(api.versions.lowerBound)...\(api.versions.upperBound))")
        }
        if config.sasl != nil && sasl.authenticatedUser == nil && ![.apiVersions, .saslHandshake, .saslAuthenticate].contains(api) {
            throw ProtocolViolation(description: "\(api) before authenticating; this listener requires SASL (PLAIN or SCRAM-SHA-256)")
        }
        var r = body
        let v = header.apiVersion
        do {
            let body: KafkaWriter
            switch api {
            case .apiVersions:
                if v >= 3 { _ = try r.nullableString(); _ = try r.nullableString(); try r.taggedFields() }
                // ApiVersions responses always use header v0.
                var w = KafkaWriter(responseTo: r, headerTaggedFields: false)
                apiVersions(&w, version: v, error: 0)
                return w.fillResponseHeader(correlationId: header.correlationId)
            case .metadata:
                body = try await metadata(&r, v)
            case .produce:
                guard let produced = try await produce(&r, v, durable: &durable) else { return nil }
                body = produced
            case .fetch:
                body = try await fetch(&r, v)
            case .listOffsets:
                body = try listOffsets(&r, v)
            case .initProducerId:
                body = try await initProducerId(&r, v)
            case .findCoordinator:
                body = try findCoordinator(&r, v)
            case .joinGroup:
                body = try await joinGroup(&r, v, clientId: header.clientId ?? "")
            case .syncGroup:
                body = try await syncGroup(&r, v)
            case .heartbeat:
                body = try await heartbeat(&r, v)
            case .leaveGroup:
                body = try await leaveGroup(&r, v)
            case .offsetCommit:
                body = try await offsetCommit(&r, v)
            case .offsetFetch:
                body = try await offsetFetch(&r, v)
            case .describeGroups:
                body = try await describeGroups(&r, v)
            case .listGroups:
                body = try await listGroups(&r, v)
            case .createTopics:
                body = try await createTopics(&r, v)
            case .deleteTopics:
                body = try await deleteTopics(&r, v)
            case .saslHandshake:
                body = try saslHandshake(&r, sasl: &sasl)
            case .saslAuthenticate:
                body = try saslAuthenticate(&r, v, sasl: &sasl)
            case .describeConfigs:
                body = try describeConfigs(&r, v)
            case .createPartitions:
                body = try await createPartitions(&r, v)
            case .deleteGroups:
                body = try await deleteGroups(&r, v)
            case .addPartitionsToTxn:
                body = try await addPartitionsToTxn(&r, v)
            case .addOffsetsToTxn:
                body = try await addOffsetsToTxn(&r, v)
            case .endTxn:
                body = try await endTxn(&r, v)
            case .txnOffsetCommit:
                body = try await txnOffsetCommit(&r, v)
            }
            // Every field of the version was read; anything left means the request does not
            // match the version it claims.
            guard r.remaining == 0 else {
                throw ProtocolViolation(description: "\(r.remaining) bytes left over after the \(api) v\(v) request")
            }
            // The body was written after room for the response header: fill it in place rather
            // than copying the body (a fetch's records) into a new frame.
            var response = body
            return response.fillResponseHeader(correlationId: header.correlationId)
        } catch let e as WireError {
            throw ProtocolViolation(description: "malformed \(api) v\(v) request: \(e)")
        }
    }

    /// A refused produce: batches that are malformed or fail their CRC are the client's
    /// (CORRUPT_MESSAGE); a full disk or an I/O error is the broker's (KAFKA_STORAGE_ERROR,
    /// which clients retry).
    static func produceCode(_ error: BrokerError) -> Int16 {
        guard error.code == .log else { return code(error) }
        if let cause = error.cause as? LogError, [.diskFull, .io, .closed, .readOnly].contains(cause.code) {
            return KafkaErrorCode.kafkaStorageError
        }
        return KafkaErrorCode.corruptMessage
    }

    static func code(_ error: any Error) -> Int16 {
        if let e = error as? BrokerError {
            if let k = e.code.kafkaCode { return k }
            switch e.code {
            case .unknownTopic, .invalidPartition: return KafkaErrorCode.unknownTopicOrPartition
            case .topicExists: return KafkaErrorCode.topicAlreadyExists
            case .invalidTopicName: return KafkaErrorCode.invalidTopic
            case .log: return KafkaErrorCode.kafkaStorageError
            default: return KafkaErrorCode.unknownServerError
            }
        }
        return KafkaErrorCode.unknownServerError
    }

    // MARK: ApiVersions

    private func apiVersions(_ w: inout KafkaWriter, version: Int16, error: Int16) {
        w.flexible = version >= 3
        w.int16(error)
        w.array(ApiKey.allCases) { w, api in
            w.int16(api.rawValue)
            w.int16(api.versions.lowerBound)
            w.int16(api.versions.upperBound)
            w.taggedFields()
        }
        if version >= 1 { w.int32(0) }  // throttle
        w.taggedFields()
    }

    // MARK: Metadata

    private func metadata(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let count = try r.arrayCount()
        var requested: [String]?
        if count >= 0 {
            var names: [String] = []
            for _ in 0..<count {
                let id = v >= 10 ? try r.uuid() : KafkaUUID.zero
                if let name = try r.nullableString() {
                    names.append(name)
                } else if id != KafkaUUID.zero {
                    names.append(topicName(forId: id) ?? "")  // an unknown id: answered as an unknown topic
                }
                try r.taggedFields()
            }
            requested = names
        }
        if v == 0 && requested?.isEmpty == true { requested = nil }  // v0: empty means all
        let autoCreate = v >= 4 ? try r.bool() : true
        if v >= 8 && v <= 10 { _ = try r.bool() }  // include cluster authorized operations
        if v >= 8 { _ = try r.bool() }  // include topic authorized operations
        try r.finish()
        var w = KafkaWriter(responseTo: r, capacity: 1024)
        if v >= 3 { w.int32(0) }
        w.arrayCount(1)
        w.int32(Self.nodeId)
        w.string(config.advertisedHost)
        w.int32(config.advertisedPort)
        if v >= 1 { w.string(nil) }  // rack
        w.taggedFields()
        if v >= 2 { w.string(config.clusterId) }
        if v >= 1 { w.int32(Self.nodeId) }  // controller
        var topics: [(String, Int16, Int32)] = []
        if let requested {
            for name in requested {
                do {
                    let topic = try TopicName(name)
                    if !broker.topics.exists(topic) && autoCreate && config.autoCreatePartitions > 0 {
                        do {
                            try broker.topics.create(topic, config: TopicConfig(partitions: config.autoCreatePartitions))
                            logger.info("created topic \(name) with \(config.autoCreatePartitions) partitions for a Metadata request")
                        } catch let e as BrokerError where e.code == .topicExists {}
                    }
                    topics.append((name, 0, try broker.partitionCount(topic)))
                } catch let e as BrokerError where e.code == .invalidTopicName {
                    topics.append((name, KafkaErrorCode.invalidTopic, 0))
                } catch {
                    topics.append((name, Self.code(error), 0))
                }
            }
        } else {
            for topic in try broker.topics.list() {
                topics.append((topic.rawValue, 0, (try? broker.partitionCount(topic)) ?? 0))
            }
        }
        w.array(topics) { w, t in
            w.int16(t.1)
            w.string(t.0)
            if v >= 10 { w.uuid(t.1 == 0 ? topicId(t.0) : KafkaUUID.zero) }
            if v >= 1 { w.bool(t.0.hasPrefix("__")) }
            w.array(0..<Int(t.2)) { w, p in
                w.int16(0)
                w.int32(Int32(p))
                w.int32(Self.nodeId)
                if v >= 7 { w.int32(0) }  // leader epoch
                w.array([Self.nodeId]) { $0.int32($1) }
                w.array([Self.nodeId]) { $0.int32($1) }
                if v >= 5 { w.arrayCount(0) }  // offline replicas
                w.taggedFields()
            }
            if v >= 8 { w.int32(Int32.min) }  // authorized operations: not computed
            w.taggedFields()
        }
        if v >= 8 && v <= 10 { w.int32(Int32.min) }
        w.taggedFields()
        return w
    }

    // MARK: Produce

    private func produce(_ r: inout KafkaReader, _ v: Int16, durable waits: inout [(PartitionHandle, Int64)]) async throws -> KafkaWriter? {
        let transactionalId = try r.nullableString()
        let acks = try r.int16()
        _ = try r.int32()  // timeout
        struct PartitionResult { var index: Int32; var error: Int16; var baseOffset: Int64; var logStart: Int64; var message: String? }
        var results: [(String, [PartitionResult])] = []
        var durable: [(PartitionHandle, Int64)] = []
        // The whole request is read before anything is appended.
        let topics = try r.array { (r: inout KafkaReader) throws(WireError) -> (String, [(Int32, ArraySlice<UInt8>?)]) in
            let name = try r.string()
            let partitions = try r.array { (r: inout KafkaReader) throws(WireError) -> (Int32, ArraySlice<UInt8>?) in
                let p = (try r.int32(), try r.nullableBytes())
                try r.taggedFields()
                return p
            }
            try r.taggedFields()
            return (name, partitions)
        }
        try r.finish()
        for (name, partitions) in topics {
            var parts: [PartitionResult] = []
            for (index, records) in partitions {
                var result = PartitionResult(index: index, error: 0, baseOffset: -1, logStart: -1, message: nil)
                guard acks == 0 || acks == 1 || acks == -1 else {
                    result.error = KafkaErrorCode.invalidRequiredAcks
                    parts.append(result)
                    continue
                }
                do {
                    let topic = try TopicName(name)
                    let handle = try broker.partition(TopicPartition(topic, index))
                    guard var bytes = records.map(Array.init), !bytes.isEmpty else { throw BrokerError(.log, "empty record set") }
                    var at = 0
                    var last: AppendResult?
                    while at < bytes.count {
                        guard bytes.count - at >= 17 else { throw BrokerError(.log, "a truncated batch header at byte \(at) of the record set") }
                        let length = Int(UInt32(bytes[at + 8]) << 24 | UInt32(bytes[at + 9]) << 16 | UInt32(bytes[at + 10]) << 8 | UInt32(bytes[at + 11])) + 12
                        let magic = bytes[at + 16]
                        guard magic == 2 else {
                            result.error = KafkaErrorCode.unsupportedForMessageFormat
                            result.message = "message format v\(magic) is not supported; use a client that writes record batches (v2)"
                            break
                        }
                        guard length >= 61, at + length <= bytes.count else { throw BrokerError(.log, "a batch of \(length) bytes at byte \(at) overruns the \(bytes.count)-byte record set") }
                        let appended = try bytes.withUnsafeMutableBytes { buf in
                            try handle.append(batch: UnsafeMutableRawBufferPointer(rebasing: buf[at..<at + length]))
                        }
                        if last == nil { result.baseOffset = appended.baseOffset }
                        last = appended
                        at += length
                    }
                    if let last { durable.append((handle, last.lastOffset)) }
                    result.logStart = handle.logStartOffset
                } catch let e as BrokerError {
                    result.error = Self.produceCode(e)
                    result.message = e.message
                    if result.error == KafkaErrorCode.kafkaStorageError {
                        // The broker's fault, not the client's (a full disk, an I/O error): the
                        // operator needs to hear it. Nothing of the batch was acknowledged.
                        logger.warning("kafka: produce to \(name)/\(index) failed: \(e.message)")
                    } else {
                        logger.debug("produce to \(name)/\(index) refused: \(e.message)")
                    }
                } catch {
                    result.error = KafkaErrorCode.unknownServerError
                    result.message = "\(error)"
                }
                parts.append(result)
            }
            results.append((name, parts))
        }
        _ = transactionalId
        if acks == 0 { return nil }
        // acks=all: the answer leaves once the records are durable under the topic's flush policy.
        if acks == -1 { waits = durable }
        var w = KafkaWriter(responseTo: r, capacity: 256)
        w.array(results) { w, t in
            w.string(t.0)
            w.array(t.1) { w, p in
                w.int32(p.index)
                w.int16(p.error)
                w.int64(p.baseOffset)
                w.int64(-1)  // log append time: CreateTime topics
                if v >= 5 { w.int64(p.logStart) }
                if v >= 8 {
                    w.arrayCount(0)
                    w.string(p.message)
                }
                w.taggedFields()
            }
            w.taggedFields()
        }
        w.int32(0)  // throttle
        w.taggedFields()
        return w
    }

    // MARK: Fetch

    private func fetch(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        if v < 15 { _ = try r.int32() }  // replica id (v15+: a tagged field)
        // A long poll waits at most 30 s (clients' default request timeout: a longer wait
        // would outlive the request anyway); answering sooner is always allowed. This bounds
        // how long a poll outlives a client that went away.
        let maxWaitMs = min(try r.int32(), Self.maxFetchWaitMs)
        let minBytes = try r.int32()
        let maxBytes = try r.int32()
        let isolation: IsolationLevel = try r.int8() == 1 ? .readCommitted : .readUncommitted
        if v >= 7 { _ = try r.int32(); _ = try r.int32() }  // fetch sessions: always full fetches
        struct Wanted { var topic: String; var topicId: KafkaUUID; var partition: Int32; var offset: Int64; var maxBytes: Int32 }
        var wanted: [Wanted] = []
        // The request's topics in order, each with its partitions' range in `wanted`: the
        // response lists them the same way.
        var topics: [(name: String, id: KafkaUUID, partitions: Range<Int>)] = []
        let topicCount = try r.arrayCount()
        for _ in 0..<max(0, topicCount) {
            // v13+ names topics by id; an unknown id is answered with UNKNOWN_TOPIC_ID.
            var topicId = KafkaUUID.zero
            let topic: String
            if v >= 13 {
                topicId = try r.uuid()
                topic = topicName(forId: topicId) ?? ""
            } else {
                topic = try r.string()
            }
            let first = wanted.count
            let partitionCount = try r.arrayCount()
            for _ in 0..<max(0, partitionCount) {
                let p = try r.int32()
                if v >= 9 { _ = try r.int32() }
                let offset = try r.int64()
                if v >= 12 { _ = try r.int32() }  // last fetched epoch
                if v >= 5 { _ = try r.int64() }
                let max = try r.int32()
                try r.taggedFields()
                wanted.append(Wanted(topic: topic, topicId: topicId, partition: p, offset: offset, maxBytes: max))
            }
            try r.taggedFields()
            topics.append((topic, topicId, first..<wanted.count))
        }
        // Forgotten topics and the rack id change nothing here: every fetch is a full fetch.
        if v >= 7 {
            let forgotten = try r.arrayCount()
            for _ in 0..<max(0, forgotten) {
                if v >= 13 { _ = try r.uuid() } else { _ = try r.string() }
                _ = try r.array { (r: inout KafkaReader) throws(WireError) -> Int32 in try r.int32() }
                try r.taggedFields()
            }
        }
        if v >= 11 { _ = try r.string() }
        try r.finish()
        enum Outcome { case data(FetchedData), error(Int16, hw: Int64, logStart: Int64) }
        func readAll() -> (outcomes: [Outcome], bytes: Int) {
            var total = 0
            var out: [Outcome] = []
            for f in wanted {
                if v >= 13 && f.topic.isEmpty {
                    out.append(.error(KafkaErrorCode.unknownTopicId, hw: -1, logStart: -1))
                    continue
                }
                do {
                    let tp = TopicPartition(try TopicName(f.topic), f.partition)
                    let handle = try broker.partition(tp)
                    let budget = Swift.max(0, Int(maxBytes) - total)
                    let data = try handle.read(from: f.offset, maxBytes: total == 0 ? Int(f.maxBytes) : Swift.min(Int(f.maxBytes), budget), isolation: isolation)
                    total += data.result.byteCount
                    out.append(.data(data))
                } catch {
                    let handle = (try? TopicName(f.topic)).flatMap { try? broker.partition(TopicPartition($0, f.partition)) }
                    out.append(.error(Self.code(error), hw: handle?.highWatermark ?? -1, logStart: handle?.logStartOffset ?? -1))
                }
            }
            return (out, total)
        }
        var (outcomes, total) = readAll()
        if total < Int(minBytes), maxWaitMs > 0, !wanted.isEmpty {
            var positions: [(TopicPartition, Int64)] = []
            for f in wanted { if let t = try? TopicName(f.topic) { positions.append((TopicPartition(t, f.partition), f.offset)) } }
            await broker.waitForData(positions, isolation: isolation, until: .now + .milliseconds(Int64(maxWaitMs)))
            (outcomes, total) = readAll()
        }
        var w = KafkaWriter(responseTo: r, capacity: 256 + total)
        w.int32(0)  // throttle
        if v >= 7 { w.int16(0); w.int32(0) }  // error, session id
        // Topics and partitions in the request's order and grouping.
        w.array(topics) { w, topic in
            if v >= 13 { w.uuid(topic.id) } else { w.string(topic.name) }
            w.array(topic.partitions) { w, i in
                w.int32(wanted[i].partition)
                switch outcomes[i] {
                case .data(let d):
                    w.int16(0)
                    w.int64(d.highWatermark)
                    w.int64(d.lastStableOffset)
                    if v >= 5 { w.int64(d.logStartOffset) }
                    if isolation == .readCommitted {
                        w.array(d.abortedTransactions) { w, a in w.int64(a.producerId); w.int64(a.firstOffset); w.taggedFields() }
                    } else {
                        w.arrayCount(-1)
                    }
                    if v >= 11 { w.int32(-1) }
                    w.bytes(d.result.bytes[d.result.range])
                case .error(let code, let hw, let logStart):
                    w.int16(code)
                    w.int64(hw)
                    w.int64(hw)
                    if v >= 5 { w.int64(logStart) }
                    w.arrayCount(-1)
                    if v >= 11 { w.int32(-1) }
                    w.bytes([UInt8]())
                }
                w.taggedFields()
            }
            w.taggedFields()
        }
        w.taggedFields()
        return w
    }

    // MARK: ListOffsets

    private func listOffsets(_ r: inout KafkaReader, _ v: Int16) throws -> KafkaWriter {
        _ = try r.int32()  // replica
        let isolation: IsolationLevel = v >= 2 ? (try r.int8() == 1 ? .readCommitted : .readUncommitted) : .readUncommitted
        struct Query { var partition: Int32; var timestamp: Int64 }
        let topics = try r.array { (r: inout KafkaReader) throws(WireError) -> (String, [Query]) in
            let name = try r.string()
            let partitions = try r.array { (r: inout KafkaReader) throws(WireError) -> Query in
                let p = try r.int32()
                if v >= 4 { _ = try r.int32() }  // current leader epoch
                let q = Query(partition: p, timestamp: try r.int64())
                try r.taggedFields()
                return q
            }
            try r.taggedFields()
            return (name, partitions)
        }
        try r.finish()
        var w = KafkaWriter(responseTo: r, capacity: 256)
        if v >= 2 { w.int32(0) }
        w.array(topics) { w, t in
            w.string(t.0)
            w.array(t.1) { w, q in
                w.int32(q.partition)
                do {
                    let handle = try broker.partition(TopicPartition(try TopicName(t.0), q.partition))
                    var timestamp: Int64 = -1
                    let offset: Int64
                    switch q.timestamp {
                    case -1: offset = isolation == .readCommitted ? handle.lastStableOffset : handle.highWatermark  // latest
                    case -2, -4: offset = handle.logStartOffset  // earliest; earliest local (all of the log is local)
                    case -3:  // the record with the largest timestamp (v7+)
                        let max = handle.log.maxTimestamp
                        let found = max < 0 ? nil : try handle.log.record(atOrAfter: max)
                        (offset, timestamp) = (found?.offset ?? -1, found?.timestamp ?? -1)
                    case -5: offset = -1  // last tiered offset: nothing is tiered
                    default:  // by time: the first record at or after it, with its own timestamp
                        let found = try handle.log.record(atOrAfter: q.timestamp)
                        (offset, timestamp) = (found?.offset ?? -1, found?.timestamp ?? -1)
                    }
                    w.int16(0)
                    w.int64(timestamp)
                    w.int64(offset)
                } catch {
                    w.int16(Self.code(error))
                    w.int64(-1)
                    w.int64(-1)
                }
                if v >= 4 { w.int32(0) }  // leader epoch
                w.taggedFields()
            }
            w.taggedFields()
        }
        w.taggedFields()
        return w
    }

    // MARK: SASL

    private func saslHandshake(_ r: inout KafkaReader, sasl: inout SASLState) throws -> KafkaWriter {
        let mechanism = try r.string()
        try r.finish()
        var w = KafkaWriter(responseTo: r)
        if config.sasl == nil {
            w.int16(KafkaErrorCode.illegalSaslState)
        } else if SASLUsers.mechanisms.contains(mechanism) {
            sasl.mechanism = mechanism
            w.int16(0)
        } else {
            w.int16(KafkaErrorCode.unsupportedSaslMechanism)
        }
        w.array(config.sasl == nil ? [] : SASLUsers.mechanisms) { $0.string($1) }
        return w
    }

    private func saslAuthenticate(_ r: inout KafkaReader, _ v: Int16, sasl: inout SASLState) throws -> KafkaWriter {
        let token = Array(try r.nullableBytes() ?? [])
        try r.finish()
        var w = KafkaWriter(responseTo: r)
        if let users = config.sasl {
            switch users.authenticate(token, state: &sasl) {
            case .success(let reply):
                w.int16(0); w.string(nil); w.bytes(reply)
                if let user = sasl.authenticatedUser { logger.info("kafka: \(user) authenticated with \(sasl.mechanism ?? "?")") }
            case .failure(let f):
                w.int16(KafkaErrorCode.saslAuthenticationFailed); w.string(f.message); w.bytes([UInt8]())
                sasl.closeAfterResponse = true
                logger.warning("kafka: \(f.message) (\(sasl.mechanism ?? "no mechanism"))")
            }
        } else {
            w.int16(KafkaErrorCode.illegalSaslState); w.string("this listener does not use SASL"); w.bytes([UInt8]())
            sasl.closeAfterResponse = true
        }
        if v >= 1 { w.int64(0) }
        w.taggedFields()
        return w
    }

    // MARK: Topic ids

    /// The topic's id, or the zero id when it has none (unknown topic).
    func topicId(_ name: String) -> KafkaUUID {
        guard let topic = try? TopicName(name), let id = try? broker.topics.topicId(topic) else { return KafkaUUID.zero }
        return id
    }

    func topicName(forId id: KafkaUUID) -> String? {
        guard id != KafkaUUID.zero else { return nil }
        return (try? broker.topics.topic(withId: id))??.rawValue
    }
}
