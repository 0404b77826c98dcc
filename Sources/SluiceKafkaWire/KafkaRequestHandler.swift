// Answers Kafka requests from the embedded broker: one frame in, one frame out (none for
// acks=0 produces). Record batches travel as stored: produce appends the client's batch bytes
// (validated, offsets assigned in place), fetch returns the log's bytes without re-encoding.
import Foundation
import Logging
import SluiceBroker
import SluiceLog
import Synchronization

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
    /// The most one fetch answers with, whatever it asks (Kafka's `fetch.max.bytes` default,
    /// 55 MiB), beyond the first batch: bounds the memory one request can take.
    public static let maxFetchResponseBytes = 55 << 20
    /// The port the listener bound, for a configured advertised port of 0 (listen on 0).
    private let boundPort = Atomic<Int32>(0)

    public init(broker: EmbeddedBroker, config: KafkaListenerConfig, logger: Logger) {
        self.broker = broker
        self.config = config
        self.logger = logger
    }

    /// Tells the handler where the listener is: with an advertised port of 0 (`--kafka
    /// HOST:0`), Metadata and FindCoordinator then name the port the system chose.
    public func listening(on port: Int) { boundPort.store(Int32(port), ordering: .releasing) }

    /// The port clients are told to connect to.
    var advertisedPort: Int32 { config.advertisedPort != 0 ? config.advertisedPort : boundPort.load(ordering: .acquiring) }

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
        var state = ConnectionState()
        return try await respond(frame, connection: &state)?.bytes
    }

    /// Like `handle`, but an acks=all produce is answered before its records are durable: the
    /// caller waits for `durable` before sending, so the next requests of the connection can be
    /// processed meanwhile (responses still leave in request order).
    public func respond(_ frame: [UInt8], connection: inout ConnectionState) async throws -> Response? {
        var durable: [(PartitionHandle, Int64)] = []
        guard let bytes = try await respond(frame, durable: &durable, connection: &connection) else { return nil }
        return Response(bytes: bytes, durable: durable)
    }

    private func respond(_ frame: [UInt8], durable: inout [(PartitionHandle, Int64)], connection: inout ConnectionState) async throws -> [UInt8]? {
        let (header, body) = try Self.header(frame)
        guard let api = ApiKey(rawValue: header.apiKey) else {
            throw ProtocolViolation(description: "unknown API key \(header.apiKey)")
        }
        if api == .apiVersions && !api.versions.contains(header.apiVersion) {
            // Answered in v0's layout, as Kafka does, so the client can retry with a version we know.
            var w = KafkaWriter(responseTo: body, headerTaggedFields: false)
            apiVersionsResponse(error: KafkaErrorCode.unsupportedVersion).encode(to: &w, version: 0)
            return w.fillResponseHeader(correlationId: header.correlationId)
        }
        guard api.versions.contains(header.apiVersion) else {
            throw ProtocolViolation(description: "\(api) version \(header.apiVersion) is not supported (supported: \(api.versions.lowerBound)...\(api.versions.upperBound))")
        }
        if config.sasl != nil && connection.sasl.authenticatedUser == nil && ![.apiVersions, .saslHandshake, .saslAuthenticate].contains(api) {
            throw ProtocolViolation(description: "\(api) before authenticating; this listener requires SASL (PLAIN or SCRAM-SHA-256)")
        }
        var r = body
        let v = header.apiVersion
        do {
            let body: KafkaWriter
            switch api {
            case .apiVersions:
                _ = try ApiVersionsRequest(from: &r, version: v)
                // ApiVersions responses always use header v0.
                var w = KafkaWriter(responseTo: r, headerTaggedFields: false)
                apiVersionsResponse(error: 0).encode(to: &w, version: v)
                body = w
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
                body = try saslHandshake(&r, v, sasl: &connection.sasl)
            case .saslAuthenticate:
                body = try saslAuthenticate(&r, v, sasl: &connection.sasl)
            case .describeConfigs:
                body = try await describeConfigs(&r, v)
            case .incrementalAlterConfigs:
                body = try await incrementalAlterConfigs(&r, v)
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
            case .consumerGroupHeartbeat:
                body = try await consumerGroupHeartbeat(&r, v, clientId: header.clientId ?? "", connection: connection)
            case .consumerGroupDescribe:
                body = try await consumerGroupDescribe(&r, v)
            case .shareGroupHeartbeat:
                body = try await shareGroupHeartbeat(&r, v, clientId: header.clientId ?? "", connection: connection)
            case .shareGroupDescribe:
                body = try await shareGroupDescribe(&r, v)
            case .shareFetch:
                body = try await shareFetch(&r, v, connection: &connection)
            case .shareAcknowledge:
                body = try await shareAcknowledge(&r, v, connection: &connection)
            case .describeShareGroupOffsets:
                body = try await describeShareGroupOffsets(&r, v)
            }
            // Bytes after the last field are ignored, as Kafka's brokers ignore them: librdkafka
            // 2.x sends three in an all-topics Metadata v9+ request (a 4-byte placeholder where
            // its 1-byte null array count belongs). A request that ends too early never gets here.
            if r.remaining > 0 {
                logger.debug("kafka: \(r.remaining) bytes after the last field of a \(api) v\(v) request (ignored, as Kafka does)")
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

    /// A response body encoded after room for its header, in the request's version.
    static func encoded(_ response: some KafkaMessage, answering r: KafkaReader, _ v: Int16, capacity: Int = 256) -> KafkaWriter {
        var w = KafkaWriter(responseTo: r, capacity: capacity)
        response.encode(to: &w, version: v)
        return w
    }

    // MARK: ApiVersions

    private func apiVersionsResponse(error: Int16) -> ApiVersionsResponse {
        var response = ApiVersionsResponse()
        response.errorCode = error
        response.apiKeys = ApiKey.allCases.map {
            ApiVersionsResponse.ApiVersion(apiKey: $0.rawValue, minVersion: $0.versions.lowerBound, maxVersion: $0.versions.upperBound)
        }
        return response
    }

    // MARK: Metadata

    private func metadata(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let request = try MetadataRequest(from: &r, version: v)
        // nil: every topic. A topic named by id (v10+) is looked up; an unknown id is answered
        // as an unknown topic.
        var requested: [String]? = request.topics.map { topics in
            topics.compactMap { t in
                if let name = t.name { return name }
                return t.topicId == KafkaUUID.zero ? nil : (topicName(forId: t.topicId) ?? "")
            }
        }
        if v == 0 && requested?.isEmpty == true { requested = nil }  // v0: empty means all
        let autoCreate = request.allowAutoTopicCreation  // true before v4, as Kafka defaults it
        var topics: [(name: String, error: Int16, partitions: Int32)] = []
        if let requested {
            for name in requested {
                do {
                    let topic = try TopicName(name)
                    if !broker.topics.exists(topic) && autoCreate && config.autoCreatePartitions > 0 && !topic.isInternal {
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
        var response = MetadataResponse()
        response.brokers = [.init(nodeId: Self.nodeId, host: config.advertisedHost, port: advertisedPort)]
        response.clusterId = config.clusterId
        response.controllerId = Self.nodeId
        response.topics = topics.map { t in
            MetadataResponse.Topic(
                errorCode: t.error, name: t.name, topicId: t.error == 0 ? topicId(t.name) : KafkaUUID.zero,
                isInternal: t.name.hasPrefix("__"),
                partitions: (0..<t.partitions).map { p in
                    .init(partitionIndex: p, leaderId: Self.nodeId, leaderEpoch: 0, replicaNodes: [Self.nodeId], isrNodes: [Self.nodeId])
                })
        }
        return Self.encoded(response, answering: r, v, capacity: 1024)
    }

    // MARK: Produce

    private func produce(_ r: inout KafkaReader, _ v: Int16, durable waits: inout [(PartitionHandle, Int64)]) async throws -> KafkaWriter? {
        // The whole request is read, and every batch in it checked, before anything is appended:
        // a request is applied whole or not at all, so a client's retry cannot duplicate part of it.
        let request = try ProduceRequest(from: &r, version: v)
        let acks = request.acks
        var checked: [[CheckedRecordSet]] = []
        var refused = false
        for topicData in request.topicData {
            checked.append(topicData.partitionData.map { checkRecordSet(topic: topicData.name, $0, acks: acks) })
            refused = refused || checked.last!.contains { $0.refusal != nil }
        }
        var durable: [(PartitionHandle, Int64)] = []
        var response = ProduceResponse()
        for (topicData, sets) in zip(request.topicData, checked) {
            var answer = ProduceResponse.TopicProduceResponse(name: topicData.name)
            for set in sets {
                if let refusal = set.refusal {
                    answer.partitionResponses.append(refusal)
                } else if refused {
                    // Valid, but the request holds an invalid batch elsewhere: not appended.
                    answer.partitionResponses.append(.init(
                        index: set.index, errorCode: KafkaErrorCode.invalidRecord, baseOffset: -1,
                        errorMessage: "not appended: another partition of this request holds an invalid batch"))
                } else {
                    answer.partitionResponses.append(appendChecked(set, topic: topicData.name, durable: &durable))
                }
            }
            response.responses.append(answer)
        }
        if refused { logger.debug("kafka: refused a produce request with an invalid batch; nothing of it was appended") }
        if acks == 0 { return nil }
        // acks=all: the answer leaves once the records are durable under the topic's flush policy.
        if acks == -1 { waits = durable }
        return Self.encoded(response, answering: r, v)
    }

    /// One partition's record set of a produce request, checked: its batches' ranges in a
    /// private copy (offsets are assigned in place), or the answer refusing it.
    struct CheckedRecordSet {
        var index: Int32
        var handle: PartitionHandle?
        var bytes: [UInt8] = []
        var batches: [Range<Int>] = []
        var refusal: ProduceResponse.PartitionProduceResponse?
    }

    /// Splits a record set into batches and checks every one whole (framing, CRC, every record,
    /// compressed payloads decompressed) without appending anything.
    private func checkRecordSet(topic name: String, _ data: ProduceRequest.PartitionProduceData, acks: Int16) -> CheckedRecordSet {
        var set = CheckedRecordSet(index: data.index)
        func refuse(_ code: Int16, _ message: String) -> CheckedRecordSet {
            set.refusal = .init(index: data.index, errorCode: code, baseOffset: -1, errorMessage: message)
            logger.debug("kafka: produce to \(name)/\(data.index) refused: \(message)")
            return set
        }
        guard acks == 0 || acks == 1 || acks == -1 else { return refuse(KafkaErrorCode.invalidRequiredAcks, "acks must be -1, 0 or 1, not \(acks)") }
        do {
            set.handle = try broker.partition(TopicPartition(try TopicName(name), data.index))
        } catch {
            return refuse(Self.code(error), "\(error)")
        }
        guard let records = data.records, !records.isEmpty else { return refuse(KafkaErrorCode.corruptMessage, "empty record set") }
        set.bytes = Array(records.slice)
        typealias L = RecordBatchLayout
        var at = 0
        while at < set.bytes.count {
            guard set.bytes.count - at > L.magic else {
                return refuse(KafkaErrorCode.corruptMessage, "a truncated batch header at byte \(at) of the record set")
            }
            let p = at + L.batchLength
            let declared = UInt32(set.bytes[p]) << 24 | UInt32(set.bytes[p + 1]) << 16 | UInt32(set.bytes[p + 2]) << 8 | UInt32(set.bytes[p + 3])
            let length = Int(declared) + L.logOverhead
            let magic = set.bytes[at + L.magic]
            guard magic == L.currentMagic else {
                return refuse(KafkaErrorCode.unsupportedForMessageFormat, "message format v\(magic) is not supported; use a client that writes record batches (v2)")
            }
            guard length >= L.headerSize, at + length <= set.bytes.count else {
                return refuse(KafkaErrorCode.corruptMessage, "a batch of \(length) bytes at byte \(at) overruns the \(set.bytes.count)-byte record set")
            }
            guard length <= LogConfig.defaultMaxBatchBytes else {
                return refuse(KafkaErrorCode.messageTooLarge, "a batch of \(length) bytes is larger than the limit of \(LogConfig.defaultMaxBatchBytes) bytes")
            }
            let problem = set.bytes.withUnsafeBytes { raw -> LogError? in
                do throws(LogError) {
                    _ = try RecordBatchValidator.validate(UnsafeRawBufferPointer(rebasing: raw[at..<at + length]))
                    return nil
                } catch { return error }
            }
            if let error = problem {
                let code = error.code == .invalidRecord ? KafkaErrorCode.invalidRecord
                    : error.code == .corruptBatch ? KafkaErrorCode.corruptMessage : KafkaErrorCode.unsupportedCompressionType
                return refuse(code, "batch \(set.batches.count) (byte \(at) of the record set): \(error.message)")
            }
            set.batches.append(at..<at + length)
            at += length
        }
        return set
    }

    /// Appends a checked record set, batch by batch, and answers for it.
    private func appendChecked(_ set: CheckedRecordSet, topic name: String, durable: inout [(PartitionHandle, Int64)]) -> ProduceResponse.PartitionProduceResponse {
        var result = ProduceResponse.PartitionProduceResponse(index: set.index, baseOffset: -1)
        guard let handle = set.handle else { return result }
        var bytes = set.bytes
        do {
            var last: AppendResult?
            for range in set.batches {
                let appended = try bytes.withUnsafeMutableBytes { buf in
                    try handle.append(batch: UnsafeMutableRawBufferPointer(rebasing: buf[range]))
                }
                if last == nil { result.baseOffset = appended.baseOffset }
                last = appended
            }
            if let last { durable.append((handle, last.lastOffset)) }
            result.logStartOffset = handle.logStartOffset
        } catch let e as BrokerError {
            result.errorCode = Self.produceCode(e)
            result.errorMessage = e.message
            if result.errorCode == KafkaErrorCode.kafkaStorageError {
                // The broker's fault, not the client's (a full disk, an I/O error): the
                // operator needs to hear it. Nothing of the batch was acknowledged.
                logger.warning("kafka: produce to \(name)/\(set.index) failed: \(e.message)")
            } else {
                logger.debug("produce to \(name)/\(set.index) refused: \(e.message)")
            }
        } catch {
            result.errorCode = KafkaErrorCode.unknownServerError
            result.errorMessage = "\(error)"
        }
        return result
    }

    // MARK: Fetch

    private func fetch(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let request = try FetchRequest(from: &r, version: v)
        // A long poll waits at most 30 s (clients' default request timeout: a longer wait
        // would outlive the request anyway); answering sooner is always allowed. This bounds
        // how long a poll outlives a client that went away.
        let maxWaitMs = min(request.maxWaitMs, Self.maxFetchWaitMs)
        let isolation: IsolationLevel = request.isolationLevel == 1 ? .readCommitted : .readUncommitted
        // Every fetch is a full fetch (no sessions): forgotten topics and the rack change nothing.
        struct Wanted { var topic: String; var partition: Int32; var offset: Int64; var maxBytes: Int32 }
        var wanted: [Wanted] = []
        for t in request.topics {
            // v13+ names topics by id; an unknown id is answered with UNKNOWN_TOPIC_ID.
            let topic = v >= 13 ? (topicName(forId: t.topicId) ?? "") : t.topic
            for p in t.partitions {
                wanted.append(Wanted(topic: topic, partition: p.partition, offset: p.fetchOffset, maxBytes: p.partitionMaxBytes))
            }
        }
        typealias PartitionData = FetchResponse.PartitionData
        let responseBudget = Swift.min(Swift.max(0, Int(request.maxBytes)), Self.maxFetchResponseBytes)
        func readAll() -> (answers: [PartitionData], bytes: Int) {
            var total = 0
            var out: [PartitionData] = []
            out.reserveCapacity(wanted.count)
            for f in wanted {
                if v >= 13 && f.topic.isEmpty {
                    out.append(PartitionData(partitionIndex: f.partition, errorCode: KafkaErrorCode.unknownTopicId, highWatermark: -1,
                                             lastStableOffset: -1, logStartOffset: -1, records: RecordBytes()))
                    continue
                }
                do {
                    let tp = TopicPartition(try TopicName(f.topic), f.partition)
                    let handle = try broker.partition(tp)
                    // KIP-74: the first batch of the first partition with data comes whatever
                    // the limits; after it, the response's budget is kept strictly (a partition
                    // whose next batch does not fit is answered without records this time).
                    let left = responseBudget - total
                    let limit = Swift.min(Swift.max(0, Int(f.maxBytes)), left)
                    guard total == 0 || limit > 0 else {
                        out.append(PartitionData(
                            partitionIndex: f.partition, highWatermark: handle.highWatermark,
                            lastStableOffset: isolation == .readCommitted ? handle.lastStableOffset : handle.highWatermark,
                            logStartOffset: handle.logStartOffset, records: RecordBytes()))
                        continue
                    }
                    var d = try handle.read(from: f.offset, maxBytes: limit, isolation: isolation)
                    if total > 0 && d.result.byteCount > left {
                        d = FetchedData(emptyAt: f.offset, like: d)
                    }
                    total += d.result.byteCount
                    out.append(PartitionData(
                        partitionIndex: f.partition, highWatermark: d.highWatermark, lastStableOffset: d.lastStableOffset,
                        logStartOffset: d.logStartOffset,
                        abortedTransactions: isolation == .readCommitted
                            ? d.abortedTransactions.map { .init(producerId: $0.producerId, firstOffset: $0.firstOffset) } : nil,
                        records: RecordBytes(storage: d.result.bytes, range: d.result.range)))
                } catch {
                    let handle = (try? TopicName(f.topic)).flatMap { try? broker.partition(TopicPartition($0, f.partition)) }
                    let hw = handle?.highWatermark ?? -1
                    out.append(PartitionData(partitionIndex: f.partition, errorCode: Self.code(error), highWatermark: hw,
                                             lastStableOffset: hw, logStartOffset: handle?.logStartOffset ?? -1, records: RecordBytes()))
                }
            }
            return (out, total)
        }
        var (answers, total) = readAll()
        var waited = false
        if total < Int(request.minBytes), maxWaitMs > 0, !wanted.isEmpty {
            var positions: [(TopicPartition, Int64)] = []
            for f in wanted { if let t = try? TopicName(f.topic) { positions.append((TopicPartition(t, f.partition), f.offset)) } }
            await broker.waitForData(positions, isolation: isolation, until: .now + .milliseconds(Int64(maxWaitMs)))
            (answers, total) = readAll()
            waited = true
        }
        logger.trace("kafka: fetch v\(v) of \(wanted.count) partitions (max \(request.maxBytes) bytes, min \(request.minBytes), wait \(maxWaitMs) ms): \(total) bytes\(waited ? " after a wait" : "")")
        // Topics and partitions in the request's order and grouping.
        var response = FetchResponse()
        var next = 0
        response.responses = request.topics.map { t in
            let range = next..<next + t.partitions.count
            next = range.upperBound
            return FetchResponse.FetchableTopicResponse(topic: t.topic, topicId: t.topicId, partitions: Array(answers[range]))
        }
        return Self.encoded(response, answering: r, v, capacity: 256 + total)
    }

    // MARK: ListOffsets

    private func listOffsets(_ r: inout KafkaReader, _ v: Int16) throws -> KafkaWriter {
        let request = try ListOffsetsRequest(from: &r, version: v)
        let isolation: IsolationLevel = request.isolationLevel == 1 ? .readCommitted : .readUncommitted
        var response = ListOffsetsResponse()
        response.topics = request.topics.map { t in
            ListOffsetsResponse.ListOffsetsTopicResponse(name: t.name, partitions: t.partitions.map { q in
                var answer = ListOffsetsResponse.ListOffsetsPartitionResponse(partitionIndex: q.partitionIndex, leaderEpoch: 0)
                do {
                    let handle = try broker.partition(TopicPartition(try TopicName(t.name), q.partitionIndex))
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
                    answer.timestamp = timestamp
                    answer.offset = offset
                } catch {
                    answer.errorCode = Self.code(error)
                }
                return answer
            })
        }
        return Self.encoded(response, answering: r, v, capacity: 256)
    }

    // MARK: SASL

    private func saslHandshake(_ r: inout KafkaReader, _ v: Int16, sasl: inout SASLState) throws -> KafkaWriter {
        let request = try SaslHandshakeRequest(from: &r, version: v)
        var response = SaslHandshakeResponse()
        if config.sasl == nil {
            response.errorCode = KafkaErrorCode.illegalSaslState
        } else if SASLUsers.mechanisms.contains(request.mechanism) {
            sasl.mechanism = request.mechanism
        } else {
            response.errorCode = KafkaErrorCode.unsupportedSaslMechanism
        }
        response.mechanisms = config.sasl == nil ? [] : SASLUsers.mechanisms
        return Self.encoded(response, answering: r, v)
    }

    private func saslAuthenticate(_ r: inout KafkaReader, _ v: Int16, sasl: inout SASLState) throws -> KafkaWriter {
        let request = try SaslAuthenticateRequest(from: &r, version: v)
        var response = SaslAuthenticateResponse()
        if let users = config.sasl {
            switch users.authenticate(request.authBytes, state: &sasl) {
            case .success(let reply):
                response.authBytes = reply
                if let user = sasl.authenticatedUser { logger.info("kafka: \(user) authenticated with \(sasl.mechanism ?? "?")") }
            case .failure(let f):
                response.errorCode = KafkaErrorCode.saslAuthenticationFailed
                response.errorMessage = f.message
                sasl.closeAfterResponse = true
                logger.warning("kafka: \(f.message) (\(sasl.mechanism ?? "no mechanism"))")
            }
        } else {
            response.errorCode = KafkaErrorCode.illegalSaslState
            response.errorMessage = "this listener does not use SASL"
            sasl.closeAfterResponse = true
        }
        return Self.encoded(response, answering: r, v)
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
