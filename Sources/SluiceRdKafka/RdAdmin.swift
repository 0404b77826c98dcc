// What the CLI asks a Kafka cluster for `sluice topic|group|produce|consume --broker
// kafka://…`: metadata and watermarks, topics, consumer groups and their offsets. One
// producer handle serves the admin requests (its poll thread also serves librdkafka's error
// callbacks, so a timeout can say why); every blocking call runs on the admin's own thread.
#if RdKafka
import CRdKafka
import Foundation
import Logging
import Synchronization

public struct RdTopicPartition: Sendable, Hashable, Comparable {
    public var topic: String
    public var partition: Int32
    public init(_ topic: String, _ partition: Int32) {
        self.topic = topic
        self.partition = partition
    }
    public static func < (a: Self, b: Self) -> Bool { (a.topic, a.partition) < (b.topic, b.partition) }
    public var text: String { "\(topic)-\(partition)" }
}

public struct RdTopicInfo: Sendable {
    public var name: String
    /// Partition ids with their leader broker id.
    public var partitions: [(partition: Int32, leader: Int32)]
}

public struct RdGroupListing: Sendable {
    public var id: String
    public var state: String
}

public struct RdGroupMember: Sendable {
    public var memberId: String
    public var clientId: String
    public var host: String
    public var instanceId: String?
    public var assignment: [RdTopicPartition]
}

public struct RdGroupDescription: Sendable {
    public var id: String
    public var state: String
    public var assignor: String
    public var members: [RdGroupMember]
}

public struct RdConfigEntry: Sendable {
    public var name: String
    public var value: String?
    public var isDefault: Bool
}

public final class RdAdmin: @unchecked Sendable {
    public let url: String
    /// The handle for admin requests; also a producer (`sluice produce --broker`).
    public let producer: RdProducer
    private let worker = BlockingWorker(name: "sluice-rdkafka-admin")
    /// How long a request may take before the command gives up on the broker.
    let timeoutMs: Int32 = 10_000

    /// `label` names where `properties` came from, for an error about one.
    public init(url: String, properties: [String: String] = [:], label: String = "broker_options", logger: Logger) throws {
        self.url = url
        var settings = try RdKafkaSettings(url: url, properties: properties)
        settings.propertiesLabel = label
        producer = try RdProducer(settings, name: "sluice-cli", logger: logger)
    }

    public func close() async {
        worker.stop()
        await producer.close()
    }

    /// "broker URL did not answer within 10 s (last error: …)".
    private func unanswered(_ what: String) -> RdKafkaError {
        let last = producer.lastBrokerError.map { " (last error: \($0))" } ?? ""
        return RdKafkaError("broker \(url) did not answer \(what) within \(timeoutMs / 1000) s\(last)")
    }

    private func run<T: Sendable>(_ body: @escaping @Sendable (OpaquePointer) throws -> T) async throws -> T {
        let h = producer.handle
        return try await worker.run { try body(h.rk) }
    }

    // MARK: Metadata and offsets

    /// Every topic the cluster has (internal ones too), sorted by name.
    public func topics() async throws -> [RdTopicInfo] {
        try await run { rk in try self.metadata(rk, topic: nil) }
    }

    /// One topic; an error naming it when it does not exist.
    public func topic(_ name: String) async throws -> RdTopicInfo {
        try await run { rk in
            guard let t = try self.metadata(rk, topic: name).first else {
                throw RdKafkaError(code: RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, "topic '\(name)' does not exist on \(self.url)")
            }
            return t
        }
    }

    /// Always asks for every topic: a request naming one makes a producer's metadata ask the
    /// broker to create it (and brokers with auto.create.topics.enable do).
    private func metadata(_ rk: OpaquePointer, topic: String?) throws -> [RdTopicInfo] {
        var md: UnsafePointer<rd_kafka_metadata>?
        let err = rd_kafka_metadata(rk, 1, nil, &md, timeoutMs)
        if err == RD_KAFKA_RESP_ERR__TIMED_OUT || err == RD_KAFKA_RESP_ERR__TRANSPORT { throw unanswered("a metadata request") }
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let md else { throw RdKafkaError("metadata from \(url)", code: err) }
        defer { rd_kafka_metadata_destroy(md) }
        var out: [RdTopicInfo] = []
        for i in 0..<Int(md.pointee.topic_cnt) {
            let t = md.pointee.topics[i]
            let name = String(cString: t.topic)
            if let topic, name != topic { continue }
            if t.err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART { continue }
            if t.err != RD_KAFKA_RESP_ERR_NO_ERROR { throw RdKafkaError("topic '\(name)' on \(url)", code: t.err) }
            let parts = (0..<Int(t.partition_cnt)).map { (t.partitions[$0].id, t.partitions[$0].leader) }.sorted { $0.0 < $1.0 }
            out.append(RdTopicInfo(name: name, partitions: parts))
        }
        return out.sorted { $0.name < $1.name }
    }

    /// The partition's first offset and its end (high watermark).
    public func watermarks(_ topic: String, _ partition: Int32) async throws -> (low: Int64, high: Int64) {
        try await run { rk in
            var low: Int64 = -1, high: Int64 = -1
            let err = rd_kafka_query_watermark_offsets(rk, topic, partition, &low, &high, self.timeoutMs)
            if err == RD_KAFKA_RESP_ERR__TIMED_OUT { throw self.unanswered("for the offsets of \(topic)-\(partition)") }
            if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw RdKafkaError("offsets of \(topic)-\(partition) on \(self.url)", code: err) }
            return (low, high)
        }
    }

    /// Per partition, the first offset whose timestamp is at or after the time (ms), or nil
    /// when every record is older.
    public func offsetsForTimes(_ topic: String, _ times: [Int32: Int64]) async throws -> [Int32: Int64?] {
        try await run { rk in
            let list = partitionList(times.map { (topic, $0.key, $0.value) })
            defer { rd_kafka_topic_partition_list_destroy(list) }
            let err = rd_kafka_offsets_for_times(rk, list, self.timeoutMs)
            if err == RD_KAFKA_RESP_ERR__TIMED_OUT { throw self.unanswered("for offsets by time in \(topic)") }
            if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw RdKafkaError("offsets by time in \(topic) on \(self.url)", code: err) }
            var out: [Int32: Int64?] = [:]
            for i in 0..<Int(list.pointee.cnt) {
                let e = list.pointee.elems[i]
                if e.err != RD_KAFKA_RESP_ERR_NO_ERROR { throw RdKafkaError("offset by time in \(topic)-\(e.partition)", code: e.err) }
                out[e.partition] = e.offset >= 0 ? e.offset : nil
            }
            return out
        }
    }

    // MARK: Admin requests

    /// Sends one admin request and waits for its result event (destroyed after `result`).
    private func request<T>(_ rk: OpaquePointer, _ what: String, _ op: rd_kafka_admin_op_t,
                            send: (OpaquePointer?, OpaquePointer?) -> Void,
                            result: (OpaquePointer) throws -> T) throws -> T {
        var errstr = [CChar](repeating: 0, count: 512)
        let options = rd_kafka_AdminOptions_new(rk, op)
        defer { rd_kafka_AdminOptions_destroy(options) }
        _ = rd_kafka_AdminOptions_set_request_timeout(options, timeoutMs, &errstr, errstr.count)
        let queue = rd_kafka_queue_new(rk)
        defer { rd_kafka_queue_destroy(queue) }
        send(options, queue)
        guard let event = rd_kafka_queue_poll(queue, Int32(timeoutMs) + 5_000) else { throw unanswered(what) }
        defer { rd_kafka_event_destroy(event) }
        let err = rd_kafka_event_error(event)
        if err == RD_KAFKA_RESP_ERR__TIMED_OUT { throw unanswered(what) }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw RdKafkaError("\(what) on \(url): \(String(cString: rd_kafka_event_error_string(event)))")
        }
        return try result(event)
    }

    /// Creates a topic; it must not exist yet.
    public func createTopic(_ name: String, partitions: Int32, configs: [String: String]) async throws {
        try await run { rk in
            var errstr = [CChar](repeating: 0, count: 512)
            guard let nt = rd_kafka_NewTopic_new(name, partitions, -1, &errstr, errstr.count) else {
                throw RdKafkaError("topic '\(name)': \(cText(errstr))")
            }
            defer { rd_kafka_NewTopic_destroy(nt) }
            for (k, v) in configs.sorted(by: { $0.key < $1.key }) {
                let err = rd_kafka_NewTopic_set_config(nt, k, v)
                if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw RdKafkaError("topic config \(k)=\(v)", code: err) }
            }
            try self.request(rk, "the creation of topic '\(name)'", RD_KAFKA_ADMIN_OP_CREATETOPICS, send: { options, queue in
                var topics: [OpaquePointer?] = [nt]
                topics.withUnsafeMutableBufferPointer { rd_kafka_CreateTopics(rk, $0.baseAddress, 1, options, queue) }
            }, result: { event in
                var count = 0
                guard let r = rd_kafka_event_CreateTopics_result(event), let results = rd_kafka_CreateTopics_result_topics(r, &count), count > 0 else { return }
                try Self.check(results[0], "creating topic '\(name)' on \(self.url)")
            })
        }
    }

    public func deleteTopic(_ name: String) async throws {
        try await run { rk in
            let dt = rd_kafka_DeleteTopic_new(name)
            defer { rd_kafka_DeleteTopic_destroy(dt) }
            try self.request(rk, "the deletion of topic '\(name)'", RD_KAFKA_ADMIN_OP_DELETETOPICS, send: { options, queue in
                var topics: [OpaquePointer?] = [dt]
                topics.withUnsafeMutableBufferPointer { rd_kafka_DeleteTopics(rk, $0.baseAddress, 1, options, queue) }
            }, result: { event in
                var count = 0
                guard let r = rd_kafka_event_DeleteTopics_result(event), let results = rd_kafka_DeleteTopics_result_topics(r, &count), count > 0 else { return }
                try Self.check(results[0], "deleting topic '\(name)' on \(self.url)")
            })
        }
    }

    private static func check(_ result: OpaquePointer?, _ what: String) throws {
        let err = rd_kafka_topic_result_error(result)
        guard err != RD_KAFKA_RESP_ERR_NO_ERROR else { return }
        let why = rd_kafka_topic_result_error_string(result).map { String(cString: $0) } ?? String(cString: rd_kafka_err2str(err))
        throw RdKafkaError(code: err, "\(what): \(why)")
    }

    /// The topic's configuration entries, as the broker reports them.
    public func topicConfigs(_ name: String) async throws -> [RdConfigEntry] {
        try await run { rk in
            let resource = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, name)
            defer { rd_kafka_ConfigResource_destroy(resource) }
            return try self.request(rk, "for the configuration of topic '\(name)'", RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS, send: { options, queue in
                var resources: [OpaquePointer?] = [resource]
                resources.withUnsafeMutableBufferPointer { rd_kafka_DescribeConfigs(rk, $0.baseAddress, 1, options, queue) }
            }, result: { event in
                var count = 0
                guard let r = rd_kafka_event_DescribeConfigs_result(event), let results = rd_kafka_DescribeConfigs_result_resources(r, &count), count > 0 else { return [] }
                let res = results[0]
                let err = rd_kafka_ConfigResource_error(res)
                if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                    throw RdKafkaError(code: err, "configuration of topic '\(name)': \(rd_kafka_ConfigResource_error_string(res).map { String(cString: $0) } ?? String(cString: rd_kafka_err2str(err)))")
                }
                var n = 0
                guard let entries = rd_kafka_ConfigResource_configs(res, &n) else { return [] }
                return (0..<n).map { i in
                    let e = entries[i]
                    return RdConfigEntry(name: String(cString: rd_kafka_ConfigEntry_name(e)), value: rd_kafka_ConfigEntry_value(e).map { String(cString: $0) },
                                         isDefault: rd_kafka_ConfigEntry_is_default(e) != 0)
                }.sorted { $0.name < $1.name }
            })
        }
    }

    // MARK: Consumer groups

    public func groups() async throws -> [RdGroupListing] {
        try await run { rk in
            try self.request(rk, "for its consumer groups", RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPS, send: { options, queue in
                rd_kafka_ListConsumerGroups(rk, options, queue)
            }, result: { event in
                guard let r = rd_kafka_event_ListConsumerGroups_result(event) else { return [] }
                var n = 0
                if let errors = rd_kafka_ListConsumerGroups_result_errors(r, &n), n > 0, let e = errors[0] {
                    throw RdKafkaError("listing consumer groups on \(self.url): \(String(cString: rd_kafka_error_string(e)))")
                }
                guard let valid = rd_kafka_ListConsumerGroups_result_valid(r, &n) else { return [] }
                return (0..<n).map { i in
                    RdGroupListing(id: String(cString: rd_kafka_ConsumerGroupListing_group_id(valid[i])),
                                   state: String(cString: rd_kafka_consumer_group_state_name(rd_kafka_ConsumerGroupListing_state(valid[i]))))
                }.sorted { $0.id < $1.id }
            })
        }
    }

    public func describeGroups(_ ids: [String]) async throws -> [RdGroupDescription] {
        guard !ids.isEmpty else { return [] }
        return try await run { rk in
            let names = ids.map { strdup($0) }
            defer { for n in names { free(n) } }
            return try self.request(rk, "for its consumer groups", RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS, send: { options, queue in
                var pointers = names.map { UnsafePointer<CChar>($0) }
                pointers.withUnsafeMutableBufferPointer { rd_kafka_DescribeConsumerGroups(rk, $0.baseAddress, $0.count, options, queue) }
            }, result: { event in
                guard let r = rd_kafka_event_DescribeConsumerGroups_result(event) else { return [] }
                var n = 0
                guard let groups = rd_kafka_DescribeConsumerGroups_result_groups(r, &n) else { return [] }
                return try (0..<n).map { i in
                    let g = groups[i]
                    let id = String(cString: rd_kafka_ConsumerGroupDescription_group_id(g))
                    if let e = rd_kafka_ConsumerGroupDescription_error(g), rd_kafka_error_code(e) != RD_KAFKA_RESP_ERR_NO_ERROR {
                        throw RdKafkaError("describing group '\(id)' on \(self.url): \(String(cString: rd_kafka_error_string(e)))")
                    }
                    let members = (0..<rd_kafka_ConsumerGroupDescription_member_count(g)).map { m -> RdGroupMember in
                        let d = rd_kafka_ConsumerGroupDescription_member(g, m)
                        var assigned: [RdTopicPartition] = []
                        if let a = rd_kafka_MemberDescription_assignment(d), let list = rd_kafka_MemberAssignment_partitions(a) {
                            assigned = list.pointee.entries.map { RdTopicPartition($0.topic, $0.partition) }.sorted()
                        }
                        return RdGroupMember(memberId: String(cString: rd_kafka_MemberDescription_consumer_id(d)),
                                             clientId: String(cString: rd_kafka_MemberDescription_client_id(d)),
                                             host: String(cString: rd_kafka_MemberDescription_host(d)),
                                             instanceId: rd_kafka_MemberDescription_group_instance_id(d).map { String(cString: $0) },
                                             assignment: assigned)
                    }
                    return RdGroupDescription(id: id, state: String(cString: rd_kafka_consumer_group_state_name(rd_kafka_ConsumerGroupDescription_state(g))),
                                              assignor: rd_kafka_ConsumerGroupDescription_partition_assignor(g).map { String(cString: $0) } ?? "",
                                              members: members)
                }
            })
        }
    }

    /// Every committed offset of the group.
    public func committedOffsets(_ group: String) async throws -> [RdTopicPartition: Int64] {
        try await run { rk in
            let request = rd_kafka_ListConsumerGroupOffsets_new(group, nil)
            defer { rd_kafka_ListConsumerGroupOffsets_destroy(request) }
            return try self.request(rk, "for the offsets of group '\(group)'", RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS, send: { options, queue in
                var requests: [OpaquePointer?] = [request]
                requests.withUnsafeMutableBufferPointer { rd_kafka_ListConsumerGroupOffsets(rk, $0.baseAddress, 1, options, queue) }
            }, result: { event in
                var n = 0
                guard let r = rd_kafka_event_ListConsumerGroupOffsets_result(event), let groups = rd_kafka_ListConsumerGroupOffsets_result_groups(r, &n), n > 0 else { return [:] }
                return try Self.offsets(groups[0], "offsets of group '\(group)' on \(self.url)")
            })
        }
    }

    /// Sets the group's committed offsets (the group must have no members).
    public func alterOffsets(_ group: String, _ offsets: [RdTopicPartition: Int64]) async throws {
        try await run { rk in
            let list = partitionList(offsets.sorted { $0.key < $1.key }.map { ($0.key.topic, $0.key.partition, $0.value) })
            defer { rd_kafka_topic_partition_list_destroy(list) }
            let request = rd_kafka_AlterConsumerGroupOffsets_new(group, list)
            defer { rd_kafka_AlterConsumerGroupOffsets_destroy(request) }
            try self.request(rk, "the new offsets of group '\(group)'", RD_KAFKA_ADMIN_OP_ALTERCONSUMERGROUPOFFSETS, send: { options, queue in
                var requests: [OpaquePointer?] = [request]
                requests.withUnsafeMutableBufferPointer { rd_kafka_AlterConsumerGroupOffsets(rk, $0.baseAddress, 1, options, queue) }
            }, result: { event in
                var n = 0
                guard let r = rd_kafka_event_AlterConsumerGroupOffsets_result(event), let groups = rd_kafka_AlterConsumerGroupOffsets_result_groups(r, &n), n > 0 else { return }
                _ = try Self.offsets(groups[0], "setting the offsets of group '\(group)' on \(self.url)")
            })
        }
    }

    private static func offsets(_ result: OpaquePointer?, _ what: String) throws -> [RdTopicPartition: Int64] {
        if let e = rd_kafka_group_result_error(result), rd_kafka_error_code(e) != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw RdKafkaError("\(what): \(String(cString: rd_kafka_error_string(e)))")
        }
        var out: [RdTopicPartition: Int64] = [:]
        guard let list = rd_kafka_group_result_partitions(result) else { return out }
        for i in 0..<Int(list.pointee.cnt) {
            let e = list.pointee.elems[i]
            if e.err != RD_KAFKA_RESP_ERR_NO_ERROR { throw RdKafkaError("\(what): \(String(cString: e.topic))-\(e.partition)", code: e.err) }
            if e.offset >= 0 { out[RdTopicPartition(String(cString: e.topic), e.partition)] = e.offset }
        }
        return out
    }
}
#endif
