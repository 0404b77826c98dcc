// Topic admin over the wire: CreateTopics, DeleteTopics, CreatePartitions and DescribeConfigs.
import SluiceBroker
import SluiceLog

extension KafkaRequestHandler {
    func createTopics(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        struct Wanted { var name: String; var partitions: Int32; var configs: [(String, String?)] }
        let topics = try r.array { (r: inout KafkaReader) throws(WireError) -> Wanted in
            let name = try r.string()
            let partitions = try r.int32()
            _ = try r.int16()  // replication factor
            _ = try r.array { (r: inout KafkaReader) throws(WireError) -> Int32 in
                let p = try r.int32()
                _ = try r.array { (r: inout KafkaReader) throws(WireError) -> Int32 in try r.int32() }
                try r.taggedFields()
                return p
            }
            let configs = try r.array { (r: inout KafkaReader) throws(WireError) -> (String, String?) in
                let c = (try r.string(), try r.nullableString())
                try r.taggedFields()
                return c
            }
            try r.taggedFields()
            return Wanted(name: name, partitions: partitions, configs: configs)
        }
        _ = try r.int32()  // timeout
        let validateOnly = v >= 1 ? try r.bool() : false
        try r.finish()
        var w = KafkaWriter(responseTo: r)
        if v >= 2 { w.int32(0) }
        w.arrayCount(topics.count)
        for t in topics {
            var code: Int16 = 0
            var message: String?
            var created: TopicConfig?
            do {
                let name = try TopicName(t.name)
                guard t.partitions != 0, t.partitions >= -1 else { throw BrokerError(.invalidPartition, "a topic needs at least one partition") }
                // -1 (v4+): the broker's default, num.partitions.
                var config = TopicConfig(partitions: t.partitions > 0 ? t.partitions : max(1, self.config.autoCreatePartitions))
                for (key, value) in t.configs {
                    switch key {
                    case "retention.ms": if let v = value.flatMap(Int64.init) { config.retentionMs = v }
                    case "retention.bytes": if let v = value.flatMap(Int64.init) { config.retentionBytes = v }
                    case "segment.bytes": if let v = value.flatMap(Int.init) { config.segmentBytes = v }
                    case "sluice.flush": if let v = value { config.flush = v }
                    default: break  // other Kafka configs are accepted and ignored
                    }
                }
                if !validateOnly {
                    if broker.topics.exists(name) { throw BrokerError(.topicExists, "topic '\(t.name)' already exists") }
                    try broker.topics.create(name, config: config)
                }
                created = config
            } catch let e as BrokerError {
                code = e.code == .invalidPartition ? KafkaErrorCode.invalidPartitions : Self.code(e)
                message = e.message
            }
            w.string(t.name)
            if v >= 7 { w.uuid(created == nil ? KafkaUUID.zero : topicId(t.name)) }
            w.int16(code)
            if v >= 1 { w.string(message) }
            if v >= 5 {
                // KIP-525: the created topic's partition count, replication factor and configs.
                w.int32(created?.partitions ?? -1)
                w.int16(created == nil ? -1 : 1)
                if let created {
                    w.array(Self.topicConfigEntries(created)) { w, e in
                        w.string(e.0); w.string(e.1); w.bool(true); w.int8(1); w.bool(false); w.taggedFields()
                    }
                } else {
                    w.arrayCount(-1)
                }
            }
            w.taggedFields()
        }
        w.taggedFields()
        return w
    }

    func deleteTopics(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        // v6 names topics by name or by id; earlier versions by name only.
        var wanted: [(name: String?, id: KafkaUUID)] = []
        if v >= 6 {
            wanted = try r.array { (r: inout KafkaReader) throws(WireError) -> (name: String?, id: KafkaUUID) in
                let t = (name: try r.nullableString(), id: try r.uuid())
                try r.taggedFields()
                return t
            }
        } else {
            wanted = try r.array { (r: inout KafkaReader) throws(WireError) -> (name: String?, id: KafkaUUID) in (name: try r.string(), id: KafkaUUID.zero) }
        }
        _ = try r.int32()
        try r.finish()
        var w = KafkaWriter(responseTo: r)
        if v >= 1 { w.int32(0) }
        w.arrayCount(wanted.count)
        for t in wanted {
            let name = t.name ?? topicName(forId: t.id)
            var code: Int16 = 0
            var message: String?
            var id = KafkaUUID.zero
            if let name {
                id = topicId(name)
                do { try broker.deleteTopic(try TopicName(name)) } catch {
                    code = Self.code(error); message = "\(error)"
                }
            } else {
                code = KafkaErrorCode.unknownTopicId; message = "no topic has id \(t.id)"
            }
            w.string(name)
            if v >= 6 { w.uuid(id) }
            w.int16(code)
            if v >= 5 { w.string(message) }
            w.taggedFields()
        }
        w.taggedFields()
        return w
    }

    func createPartitions(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        struct Wanted { var name: String; var count: Int32 }
        let n = try r.arrayCount()
        var wanted: [Wanted] = []
        for _ in 0..<max(0, n) {
            let name = try r.string()
            let count = try r.int32()
            let assignments = try r.arrayCount()
            for _ in 0..<max(0, assignments) {
                _ = try r.array { (r: inout KafkaReader) throws(WireError) -> Int32 in try r.int32() }
                try r.taggedFields()
            }
            try r.taggedFields()
            wanted.append(Wanted(name: name, count: count))
        }
        _ = try r.int32()
        let validateOnly = try r.bool()
        try r.finish()
        var w = KafkaWriter(responseTo: r)
        w.int32(0)
        w.arrayCount(wanted.count)
        for t in wanted {
            w.string(t.name)
            do {
                let name = try TopicName(t.name)
                let current = try broker.partitionCount(name)
                guard t.count > current else {
                    throw BrokerError(.invalidPartition, "topic '\(t.name)' has \(current) partitions; the new count must be larger")
                }
                if !validateOnly { try await broker.addPartitions(name, total: t.count) }
                w.int16(0); w.string(nil)
            } catch let e as BrokerError where e.code == .invalidPartition {
                w.int16(KafkaErrorCode.invalidPartitions); w.string(e.message)
            } catch {
                w.int16(Self.code(error)); w.string("\(error)")
            }
            w.taggedFields()
        }
        w.taggedFields()
        return w
    }

    static func topicConfigEntries(_ c: TopicConfig) -> [(String, String)] {
        [("cleanup.policy", "delete"), ("retention.ms", "\(c.retentionMs)"), ("retention.bytes", "\(c.retentionBytes)"),
         ("segment.bytes", "\(c.segmentBytes)"), ("segment.ms", "\(c.segmentMs)"), ("flush.ms", "\(c.flushIntervalMs)"),
         ("sluice.flush", c.flush), ("compression.type", "producer")]
    }

    func describeConfigs(_ r: inout KafkaReader, _ v: Int16) throws -> KafkaWriter {
        struct Resource { var type: Int8; var name: String; var keys: [String]? }
        let count = try r.arrayCount()
        var resources: [Resource] = []
        for _ in 0..<max(0, count) {
            let type = try r.int8()
            let name = try r.string()
            let n = try r.arrayCount()
            var keys: [String]?
            if n >= 0 { keys = []; for _ in 0..<n { keys!.append(try r.string()) } }
            try r.taggedFields()
            resources.append(Resource(type: type, name: name, keys: keys))
        }
        if v >= 1 { _ = try r.bool() }  // include synonyms: there are none
        if v >= 3 { _ = try r.bool() }  // include documentation: none is sent
        try r.finish()
        var w = KafkaWriter(responseTo: r)
        w.int32(0)
        w.arrayCount(resources.count)
        for res in resources {
            var entries: [(String, String)] = []
            var code: Int16 = 0
            var message: String?
            switch res.type {
            case 2:  // topic
                do {
                    entries = Self.topicConfigEntries(try broker.topics.config(try TopicName(res.name)))
                } catch {
                    code = Self.code(error); message = "\(error)"
                }
            case 4:  // broker
                entries = [("num.partitions", "\(config.autoCreatePartitions)"), ("auto.create.topics.enable", config.autoCreatePartitions > 0 ? "true" : "false"),
                           ("message.max.bytes", "\(config.maxRequestBytes)"), ("advertised.listeners", "PLAINTEXT://\(config.advertisedHost):\(config.advertisedPort)")]
            default:
                code = KafkaErrorCode.invalidRequest; message = "resource type \(res.type) is not supported"
            }
            if let keys = res.keys, !keys.isEmpty { entries = entries.filter { keys.contains($0.0) } }
            w.int16(code)
            w.string(message)
            w.int8(res.type)
            w.string(res.name)
            w.array(entries) { w, e in
                w.string(e.0)
                w.string(e.1)
                w.bool(true)  // read-only over the wire
                if v == 0 { w.bool(false) } else { w.int8(res.type == 2 ? 1 : 4) }  // source: topic / static broker config
                w.bool(false)  // sensitive
                if v >= 1 { w.arrayCount(0) }
                if v >= 3 { w.int8(e.1.allSatisfy(\.isNumber) ? 5 : 2); w.string(nil) }  // LONG or STRING
                w.taggedFields()
            }
            w.taggedFields()
        }
        w.taggedFields()
        return w
    }
}
