// Topic admin over the wire: CreateTopics, DeleteTopics, CreatePartitions and DescribeConfigs.
// Each handler decodes the generated request struct (Messages/), acts on the broker's topics,
// then fills and encodes the generated response struct.
import SluiceBroker
import SluiceLog

extension KafkaRequestHandler {
    func createTopics(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let request = try CreateTopicsRequest(from: &r, version: v)
        // Replication factors and manual assignments are ignored (one node); so is the timeout.
        var response = CreateTopicsResponse()
        for t in request.topics {
            var code: Int16 = 0
            var message: String?
            var created: TopicConfig?
            do {
                let name = try TopicName(t.name)
                if name.isInternal { throw name.reservedError }
                guard t.numPartitions != 0, t.numPartitions >= -1 else { throw BrokerError(.invalidPartition, "a topic needs at least one partition") }
                // -1 (v4+): the broker's default, num.partitions.
                var config = TopicConfig(partitions: t.numPartitions > 0 ? t.numPartitions : max(1, self.config.autoCreatePartitions))
                for c in t.configs {
                    switch c.name {
                    case "retention.ms": if let v = c.value.flatMap(Int64.init) { config.retentionMs = v }
                    case "retention.bytes": if let v = c.value.flatMap(Int64.init) { config.retentionBytes = v }
                    case "segment.bytes": if let v = c.value.flatMap(Int.init) { config.segmentBytes = v }
                    case "segment.ms": if let v = c.value.flatMap(Int64.init) { config.segmentMs = v }
                    case "sluice.flush": if let v = c.value { config.flush = v }
                    // Kafka's flush settings: fsync each message, every N ms, or (Long.MAX,
                    // Kafka's default) leave it to the OS.
                    case "flush.messages": if c.value == "1" { config.flush = "always" }
                    case "flush.ms":
                        if let v = c.value.flatMap(Int64.init), v > 0 {
                            if v == Int64.max { config.flush = "never" } else {
                                config.flush = "interval"
                                config.flushIntervalMs = v
                            }
                        }
                    default: break  // other Kafka configs are accepted and ignored
                    }
                }
                if !request.validateOnly {
                    if broker.topics.exists(name) { throw BrokerError(.topicExists, "topic '\(t.name)' already exists") }
                    try broker.topics.create(name, config: config)
                }
                created = config
            } catch let e as BrokerError {
                code = e.code == .invalidPartition ? KafkaErrorCode.invalidPartitions : Self.code(e)
                message = e.message
            }
            // KIP-525 (v5+): the created topic's partition count, replication factor and configs.
            response.topics.append(CreateTopicsResponse.CreatableTopicResult(
                name: t.name,
                topicId: v >= 7 && created != nil ? topicId(t.name) : KafkaUUID.zero,  // v7+ (looked up only then: it may assign one)
                errorCode: code,
                errorMessage: message,
                topicConfigErrorCode: 0,
                numPartitions: created?.partitions ?? -1,
                replicationFactor: created == nil ? -1 : 1,
                configs: created.map { c in
                    Self.topicConfigEntries(c).map { e in
                        CreateTopicsResponse.CreatableTopicConfigs(name: e.0, value: e.1, readOnly: true, configSource: 1, isSensitive: false)
                    }
                }))
        }
        return Self.encoded(response, answering: r, v)
    }

    func deleteTopics(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let request = try DeleteTopicsRequest(from: &r, version: v)
        // v6 names topics by name or by id; earlier versions by name only. The timeout is ignored.
        let wanted: [(name: String?, id: KafkaUUID)]
        if v >= 6 {
            wanted = request.topics.map { t -> (name: String?, id: KafkaUUID) in (name: t.name, id: t.topicId) }
        } else {
            wanted = request.topicNames.map { name -> (name: String?, id: KafkaUUID) in (name: name, id: KafkaUUID.zero) }
        }
        var response = DeleteTopicsResponse()
        for t in wanted {
            let name = t.name ?? topicName(forId: t.id)
            var code: Int16 = 0
            var message: String?
            var id = KafkaUUID.zero
            if let name {
                id = topicId(name)
                do {
                    let topic = try TopicName(name)
                    if topic.isInternal { throw topic.reservedError }
                    try broker.deleteTopic(topic)
                } catch {
                    code = Self.code(error); message = "\(error)"
                }
            } else {
                code = KafkaErrorCode.unknownTopicId; message = "no topic has id \(t.id)"
            }
            response.responses.append(DeleteTopicsResponse.DeletableTopicResult(name: name, topicId: id, errorCode: code, errorMessage: message))
        }
        return Self.encoded(response, answering: r, v)
    }

    func createPartitions(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let request = try CreatePartitionsRequest(from: &r, version: v)
        // Manual assignments are ignored (one node); so is the timeout.
        var response = CreatePartitionsResponse()
        for t in request.topics {
            var code: Int16 = 0
            var message: String?
            do {
                let name = try TopicName(t.name)
                let current = try broker.partitionCount(name)
                guard t.count > current else {
                    throw BrokerError(.invalidPartition, "topic '\(t.name)' has \(current) partitions; the new count must be larger")
                }
                if !request.validateOnly { try await broker.addPartitions(name, total: t.count) }
            } catch let e as BrokerError where e.code == .invalidPartition {
                code = KafkaErrorCode.invalidPartitions; message = e.message
            } catch {
                code = Self.code(error); message = "\(error)"
            }
            response.results.append(CreatePartitionsResponse.CreatePartitionsTopicResult(name: t.name, errorCode: code, errorMessage: message))
        }
        return Self.encoded(response, answering: r, v)
    }

    /// Group configs of share groups (resource type 32); other resources are refused, naming why.
    func incrementalAlterConfigs(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let request = try IncrementalAlterConfigsRequest(from: &r, version: v)
        var response = IncrementalAlterConfigsResponse()
        for res in request.resources {
            var code: Int16 = 0
            var message: String?
            if res.resourceType == 32 {
                do {
                    var changes: [(name: String, value: String?)] = []
                    for c in res.configs {
                        switch c.configOperation {
                        case 0: changes.append((c.name, c.value))  // SET
                        case 1: changes.append((c.name, nil))  // DELETE: back to the default
                        default: throw BrokerError(.invalidRequest, "\(c.name): only SET and DELETE apply to group configs (operation \(c.configOperation))")
                        }
                    }
                    try await broker.shares.alterConfigs(res.resourceName, changes, validateOnly: request.validateOnly)
                    if !request.validateOnly { logger.info("kafka: share group \(res.resourceName) configs set: \(changes.map { "\($0.name)=\($0.value ?? "(default)")" }.joined(separator: ", "))") }
                } catch let e as BrokerError where e.code == .invalidConfig || e.code == .invalidTopicName {
                    code = KafkaErrorCode.invalidConfig; message = e.message
                } catch {
                    code = Self.code(error); message = "\(error)"
                }
            } else {
                code = KafkaErrorCode.invalidRequest
                message = "IncrementalAlterConfigs applies to share group configs (resource type 32) here; resource type \(res.resourceType) is not supported"
            }
            response.responses.append(.init(errorCode: code, errorMessage: message, resourceType: res.resourceType, resourceName: res.resourceName))
        }
        return Self.encoded(response, answering: r, v)
    }

    static func topicConfigEntries(_ c: TopicConfig) -> [(String, String)] {
        [("cleanup.policy", "delete"), ("retention.ms", "\(c.retentionMs)"), ("retention.bytes", "\(c.retentionBytes)"),
         ("segment.bytes", "\(c.segmentBytes)"), ("segment.ms", "\(c.segmentMs)"), ("flush.ms", "\(c.flushIntervalMs)"),
         ("sluice.flush", c.flush), ("compression.type", "producer")]
    }

    func describeConfigs(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let request = try DescribeConfigsRequest(from: &r, version: v)
        // Synonyms (v1+) and documentation (v3+) are never sent, whatever the request asks.
        var response = DescribeConfigsResponse()
        for res in request.resources {
            var entries: [(String, String)] = []
            var code: Int16 = 0
            var message: String?
            switch res.resourceType {
            case 2:  // topic
                do {
                    entries = Self.topicConfigEntries(try broker.topics.config(try TopicName(res.resourceName)))
                } catch {
                    code = Self.code(error); message = "\(error)"
                }
            case 4:  // broker
                entries = [("num.partitions", "\(config.autoCreatePartitions)"), ("auto.create.topics.enable", config.autoCreatePartitions > 0 ? "true" : "false"),
                           ("message.max.bytes", "\(config.maxRequestBytes)"), ("advertised.listeners", "PLAINTEXT://\(config.advertisedHost):\(advertisedPort)")]
            case 32:  // group: a share group's settings
                entries = await broker.shares.settings(of: res.resourceName).configEntries.map { ($0.name, $0.value) }
            default:
                code = KafkaErrorCode.invalidRequest; message = "resource type \(res.resourceType) is not supported"
            }
            if let keys = res.configurationKeys, !keys.isEmpty { entries = entries.filter { keys.contains($0.0) } }
            let source: Int8 = res.resourceType == 2 ? 1 : 4  // v1+: topic / static broker config
            response.results.append(DescribeConfigsResponse.DescribeConfigsResult(
                errorCode: code,
                errorMessage: message,
                resourceType: res.resourceType,
                resourceName: res.resourceName,
                configs: entries.map { e in
                    DescribeConfigsResponse.DescribeConfigsResourceResult(
                        name: e.0,
                        value: e.1,
                        readOnly: true,  // read-only over the wire
                        isDefault: false,  // v0
                        configSource: source,
                        isSensitive: false,
                        synonyms: [],
                        configType: e.1.allSatisfy(\.isNumber) ? 5 : 2,  // v3+: LONG or STRING
                        documentation: nil)
                }))
        }
        return Self.encoded(response, answering: r, v)
    }
}
