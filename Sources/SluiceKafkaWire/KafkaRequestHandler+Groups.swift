// Consumer-group APIs: coordinator lookup, membership (join, sync, heartbeat, leave), offsets
// (commit, fetch) and group admin (describe, list, delete). Every request is answered from
// the broker's one GroupCoordinator, which in-process pipelines use too. Field layouts follow
// Kafka's message definitions version by version; `r.flexible` / `w.flexible` pick the
// compact encodings and tagged-field sections of flexible versions.
import SluiceBroker
import SluiceLog

extension KafkaRequestHandler {
    func findCoordinator(_ r: inout KafkaReader, _ v: Int16) throws -> KafkaWriter {
        var w = KafkaWriter(responseTo: r)
        if v >= 4 {
            // Batched lookups (KIP-699): every key has the same coordinator, this node.
            _ = try r.int8()
            let keys = try r.array { (r: inout KafkaReader) throws(WireError) -> String in try r.string() }
            try r.taggedFields()
            w.int32(0)
            w.array(keys) { w, key in
                w.string(key)
                w.int32(Self.nodeId)
                w.string(config.advertisedHost)
                w.int32(config.advertisedPort)
                w.int16(0)
                w.string(nil)
                w.taggedFields()
            }
            w.taggedFields()
            return w
        }
        _ = try r.string()
        if v >= 1 { _ = try r.int8() }
        try r.finish()
        if v >= 1 { w.int32(0) }
        w.int16(0)
        if v >= 1 { w.string(nil) }
        w.int32(Self.nodeId)
        w.string(config.advertisedHost)
        w.int32(config.advertisedPort)
        w.taggedFields()
        return w
    }

    func joinGroup(_ r: inout KafkaReader, _ v: Int16, clientId: String) async throws -> KafkaWriter {
        let group = try r.string()
        let session = try r.int32()
        let rebalance = v >= 1 ? try r.int32() : session
        let member = try r.string()
        let instance = v >= 5 ? try r.nullableString() : nil
        let protocolType = try r.string()
        let protocols = try r.array { (r: inout KafkaReader) throws(WireError) -> GroupProtocol in
            let p = GroupProtocol(name: try r.string(), metadata: Array(try r.nullableBytes() ?? []))
            try r.taggedFields()
            return p
        }
        let reason = v >= 8 ? try r.nullableString() : nil
        try r.finish()
        if let reason { logger.debug("member \(member.isEmpty ? "(new)" : member) joins \(group): \(reason)") }
        var w = KafkaWriter(responseTo: r)
        if v >= 2 { w.int32(0) }
        do {
            let resp = try await broker.groups.join(JoinGroupRequest(groupId: group, memberId: member, groupInstanceId: instance, clientId: clientId, sessionTimeoutMs: session, rebalanceTimeoutMs: rebalance, protocolType: protocolType, protocols: protocols))
            w.int16(0)
            w.int32(resp.generation)
            if v >= 7 { w.string(protocolType) }
            w.string(resp.protocolName ?? "")
            w.string(resp.leader)
            if v >= 9 { w.bool(false) }  // skip assignment: the leader always assigns
            w.string(resp.memberId)
            w.array(resp.isLeader ? resp.members : []) { w, m in
                w.string(m.memberId)
                if v >= 5 { w.string(m.groupInstanceId) }
                w.bytes(m.metadata)
                w.taggedFields()
            }
        } catch {
            w.int16(Self.code(error))
            w.int32(-1)
            if v >= 7 { w.string(nil) }
            w.string(v >= 7 ? nil : "")
            w.string("")
            if v >= 9 { w.bool(false) }
            w.string(member)
            w.arrayCount(0)
        }
        w.taggedFields()
        return w
    }

    func syncGroup(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let group = try r.string()
        let generation = try r.int32()
        let member = try r.string()
        let instance = v >= 3 ? try r.nullableString() : nil
        if v >= 5 { _ = try r.nullableString(); _ = try r.nullableString() }  // protocol type and name: the coordinator knows them
        let assignments = try r.array { (r: inout KafkaReader) throws(WireError) -> (String, [UInt8]) in
            let a = (try r.string(), Array(try r.nullableBytes() ?? []))
            try r.taggedFields()
            return a
        }
        try r.finish()
        var w = KafkaWriter(responseTo: r)
        if v >= 1 { w.int32(0) }
        do {
            let assignment = try await broker.groups.sync(groupId: group, generation: generation, memberId: member, groupInstanceId: instance, assignments: Dictionary(assignments, uniquingKeysWith: { a, _ in a }))
            w.int16(0)
            if v >= 5 {
                let d = await broker.groups.describe(groupId: group)
                w.string(d?.protocolType)
                w.string(d?.protocolName)
            }
            w.bytes(assignment)
        } catch {
            w.int16(Self.code(error))
            if v >= 5 { w.string(nil); w.string(nil) }
            w.bytes([UInt8]())
        }
        w.taggedFields()
        return w
    }

    func heartbeat(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let group = try r.string()
        let generation = try r.int32()
        let member = try r.string()
        let instance = v >= 3 ? try r.nullableString() : nil
        try r.finish()
        return await errorCodeResponse(r, throttle: v >= 1) {
            try await broker.groups.heartbeat(groupId: group, generation: generation, memberId: member, groupInstanceId: instance)
        }
    }

    func leaveGroup(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let group = try r.string()
        var w = KafkaWriter(responseTo: r)
        guard v >= 3 else {
            let member = try r.string()
            try r.finish()
            await broker.groups.leave(groupId: group, memberId: member)
            if v >= 1 { w.int32(0) }
            w.int16(0)
            return w
        }
        // v3+: a batch of members, each by member id and/or static instance id.
        let members = try r.array { (r: inout KafkaReader) throws(WireError) -> (String, String?) in
            let m = (try r.string(), try r.nullableString())
            if v >= 5 { _ = try r.nullableString() }  // reason
            try r.taggedFields()
            return m
        }
        try r.finish()
        var left: [Bool] = []
        for (member, instance) in members { left.append(await broker.groups.leave(groupId: group, memberId: member, groupInstanceId: instance)) }
        w.int32(0)
        w.int16(0)
        w.array(Array(zip(members, left))) { w, m in
            w.string(m.0.0)
            w.string(m.0.1)
            w.int16(m.1 ? 0 : KafkaErrorCode.unknownMemberId)
            w.taggedFields()
        }
        w.taggedFields()
        return w
    }

    func offsetCommit(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let group = try r.string()
        let generation = try r.int32()
        let member = try r.string()
        let instance = v >= 7 ? try r.nullableString() : nil
        if v >= 2 && v <= 4 { _ = try r.int64() }  // retention
        let request = try readCommittedOffsets(&r, leaderEpoch: v >= 6)
        try r.finish()
        var failure: Int16 = 0
        do {
            try await broker.groups.commit(groupId: group, generation: generation, memberId: member, groupInstanceId: instance, offsets: request.offsets)
        } catch {
            failure = Self.code(error)
        }
        var w = KafkaWriter(responseTo: r)
        if v >= 3 { w.int32(0) }
        writePartitionErrors(&w, request.layout) { topic, _ in request.invalid.contains(topic) ? KafkaErrorCode.invalidTopic : failure }
        w.taggedFields()
        return w
    }

    func offsetFetch(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        struct GroupQuery { var group: String; var topics: [(String, [Int32])]? }
        func topics(_ r: inout KafkaReader) throws(WireError) -> [(String, [Int32])]? {
            let count = try r.arrayCount()
            guard count >= 0 else { return nil }
            var out: [(String, [Int32])] = []
            for _ in 0..<count {
                let name = try r.string()
                out.append((name, try r.array { (r: inout KafkaReader) throws(WireError) -> Int32 in try r.int32() }))
                try r.taggedFields()
            }
            return out
        }
        var queries: [GroupQuery] = []
        if v >= 8 {
            let count = try r.arrayCount()
            for _ in 0..<max(0, count) {
                let group = try r.string()
                if v >= 9 { _ = try r.nullableString(); _ = try r.int32() }  // member id and epoch (KIP-848 groups only)
                queries.append(GroupQuery(group: group, topics: try topics(&r)))
                try r.taggedFields()
            }
        } else {
            let group = try r.string()
            queries.append(GroupQuery(group: group, topics: try topics(&r)))
        }
        let requireStable = v >= 7 ? try r.bool() : false
        try r.finish()

        struct Answer { var topics: [(String, [(Int32, CommittedOffset?, Int16)])] }
        var answers: [Answer] = []
        for q in queries {
            let committed = await broker.groups.committedOffsets(groupId: q.group)
            // With require_stable, a partition whose offset an open transaction is about to
            // change answers UNSTABLE_OFFSET_COMMIT, and the client retries (KIP-447).
            let unstable = requireStable ? await broker.transactions.pendingOffsetPartitions(groupId: q.group) : []
            var wanted = q.topics ?? []
            if q.topics == nil {
                var byTopic: [String: [Int32]] = [:]
                for tp in committed.keys.sorted() { byTopic[tp.topic.rawValue, default: []].append(tp.partition) }
                wanted = byTopic.keys.sorted().map { ($0, byTopic[$0]!) }
            }
            answers.append(Answer(topics: wanted.map { name, partitions in
                let topic = try? TopicName(name)
                return (name, partitions.map { p in
                    guard let topic else { return (p, nil, KafkaErrorCode.none) }
                    let tp = TopicPartition(topic, p)
                    return (p, committed[tp], unstable.contains(tp) ? KafkaErrorCode.unstableOffsetCommit : KafkaErrorCode.none)
                })
            }))
        }
        var w = KafkaWriter(responseTo: r)
        if v >= 3 { w.int32(0) }
        func writeTopics(_ w: inout KafkaWriter, _ a: Answer) {
            w.array(a.topics) { w, t in
                w.string(t.0)
                w.array(t.1) { w, p in
                    w.int32(p.0)
                    w.int64(p.2 == 0 ? p.1?.offset ?? -1 : -1)
                    if v >= 5 { w.int32(-1) }
                    w.string(p.1?.metadata ?? "")
                    w.int16(p.2)
                    w.taggedFields()
                }
                w.taggedFields()
            }
        }
        if v >= 8 {
            w.arrayCount(queries.count)
            for (q, a) in zip(queries, answers) {
                w.string(q.group)
                writeTopics(&w, a)
                w.int16(0)
                w.taggedFields()
            }
        } else {
            writeTopics(&w, answers[0])
            if v >= 2 { w.int16(0) }
        }
        w.taggedFields()
        return w
    }

    func describeGroups(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let groups = try r.array { (r: inout KafkaReader) throws(WireError) -> String in try r.string() }
        if v >= 3 { _ = try r.bool() }
        try r.finish()
        var w = KafkaWriter(responseTo: r)
        if v >= 1 { w.int32(0) }
        w.arrayCount(groups.count)
        for g in groups {
            let d = await broker.groups.describe(groupId: g)
            w.int16(0)
            w.string(g)
            w.string(d?.state.rawValue ?? "Dead")
            w.string(d?.protocolType ?? "")
            w.string(d?.protocolName ?? "")
            w.array(d?.members ?? []) { w, m in
                w.string(m.memberId)
                if v >= 4 { w.string(m.groupInstanceId) }
                w.string(m.clientId)
                w.string("/127.0.0.1")
                w.bytes(m.metadata)
                w.bytes(m.assignment)
                w.taggedFields()
            }
            if v >= 3 { w.int32(Int32.min) }  // authorized operations: not computed
            w.taggedFields()
        }
        w.taggedFields()
        return w
    }

    func listGroups(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        var states: Set<String> = []
        var types: Set<String> = []
        if v >= 4 { states = Set(try r.array { (r: inout KafkaReader) throws(WireError) -> String in try r.string() }.map { $0.lowercased() }) }
        if v >= 5 { types = Set(try r.array { (r: inout KafkaReader) throws(WireError) -> String in try r.string() }.map { $0.lowercased() }) }
        try r.finish()
        // Every group here uses the classic protocol.
        let groups = await broker.groups.listGroups().filter { g in
            (states.isEmpty || states.contains(g.state.rawValue.lowercased())) && (types.isEmpty || types.contains("classic"))
        }
        var w = KafkaWriter(responseTo: r)
        if v >= 1 { w.int32(0) }
        w.int16(0)
        w.array(groups) { w, g in
            w.string(g.groupId)
            w.string(g.protocolType)
            if v >= 4 { w.string(g.state.rawValue) }
            if v >= 5 { w.string("classic") }
            w.taggedFields()
        }
        w.taggedFields()
        return w
    }

    func deleteGroups(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let groups = try r.array { (r: inout KafkaReader) throws(WireError) -> String in try r.string() }
        try r.finish()
        var w = KafkaWriter(responseTo: r)
        w.int32(0)
        w.arrayCount(groups.count)
        for g in groups {
            w.string(g)
            do { try await broker.groups.deleteGroup(g); w.int16(0) } catch { w.int16(Self.code(error)) }
            w.taggedFields()
        }
        w.taggedFields()
        return w
    }

    // MARK: Shapes shared by offset commits

    /// The topics → partitions → (offset, leader epoch, metadata) list of OffsetCommit and
    /// TxnOffsetCommit. Topics with invalid names are kept in the layout (they are answered
    /// with INVALID_TOPIC_EXCEPTION) but not in `offsets`.
    func readCommittedOffsets(_ r: inout KafkaReader, leaderEpoch: Bool) throws(WireError) -> (offsets: [TopicPartition: CommittedOffset], layout: [(String, [Int32])], invalid: Set<String>) {
        var offsets: [TopicPartition: CommittedOffset] = [:]
        var layout: [(String, [Int32])] = []
        var invalid: Set<String> = []
        let topicCount = try r.arrayCount()
        for _ in 0..<max(0, topicCount) {
            let name = try r.string()
            let topic = try? TopicName(name)
            if topic == nil { invalid.insert(name) }
            var partitions: [Int32] = []
            let partitionCount = try r.arrayCount()
            for _ in 0..<max(0, partitionCount) {
                let p = try r.int32()
                let offset = try r.int64()
                if leaderEpoch { _ = try r.int32() }
                let metadata = try r.nullableString() ?? ""
                try r.taggedFields()
                partitions.append(p)
                if let topic { offsets[TopicPartition(topic, p)] = CommittedOffset(offset: offset, metadata: metadata) }
            }
            try r.taggedFields()
            layout.append((name, partitions))
        }
        return (offsets, layout, invalid)
    }

    /// The topics → partitions → error code answer of OffsetCommit, TxnOffsetCommit and
    /// AddPartitionsToTxn.
    func writePartitionErrors(_ w: inout KafkaWriter, _ layout: [(String, [Int32])], _ code: (String, Int32) -> Int16) {
        w.array(layout) { w, t in
            w.string(t.0)
            w.array(t.1) { w, p in
                w.int32(p)
                w.int16(code(t.0, p))
                w.taggedFields()
            }
            w.taggedFields()
        }
    }
}
