// Consumer-group APIs: coordinator lookup, membership (join, sync, heartbeat, leave), offsets
// (commit, fetch) and group admin (describe, list, delete). Every request is answered from
// the broker's one GroupCoordinator, which in-process pipelines use too. Each handler decodes
// the generated request struct (Messages/), calls the coordinator with typed values, then
// fills and encodes the generated response struct; the structs know which fields, encodings
// and tagged-field sections each version has.
import SluiceBroker
import SluiceLog

extension KafkaRequestHandler {
    func findCoordinator(_ r: inout KafkaReader, _ v: Int16) throws -> KafkaWriter {
        let request = try FindCoordinatorRequest(from: &r, version: v)
        // Whatever the key (group or transactional id) and its type, the coordinator is this node.
        var response = FindCoordinatorResponse()
        if v >= 4 {
            // Batched lookups (KIP-699): every key has the same coordinator.
            response.coordinators = request.coordinatorKeys.map { key in
                FindCoordinatorResponse.Coordinator(key: key, nodeId: Self.nodeId, host: config.advertisedHost, port: advertisedPort, errorCode: 0, errorMessage: nil)
            }
        } else {
            response.errorCode = 0
            response.errorMessage = nil
            response.nodeId = Self.nodeId
            response.host = config.advertisedHost
            response.port = advertisedPort
        }
        return Self.encoded(response, answering: r, v)
    }

    func joinGroup(_ r: inout KafkaReader, _ v: Int16, clientId: String) async throws -> KafkaWriter {
        let request = try JoinGroupRequest(from: &r, version: v)
        let member = request.memberId
        if let reason = request.reason { logger.debug("member \(member.isEmpty ? "(new)" : member) joins \(request.groupId): \(reason)") }
        var response = JoinGroupResponse()
        do {
            let joined = try await broker.groups.join(SluiceBroker.JoinGroupRequest(
                groupId: request.groupId, memberId: member, groupInstanceId: request.groupInstanceId, clientId: clientId,
                sessionTimeoutMs: request.sessionTimeoutMs,
                rebalanceTimeoutMs: v >= 1 ? request.rebalanceTimeoutMs : request.sessionTimeoutMs,  // v0: the session timeout
                protocolType: request.protocolType,
                protocols: request.protocols.map { GroupProtocol(name: $0.name, metadata: $0.metadata) }))
            response.errorCode = 0
            response.generationId = joined.generation
            response.protocolType = request.protocolType
            response.protocolName = joined.protocolName ?? ""
            response.leader = joined.leader
            response.skipAssignment = false  // the leader always assigns
            response.memberId = joined.memberId
            response.members = (joined.isLeader ? joined.members : []).map { m in
                JoinGroupResponse.Member(memberId: m.memberId, groupInstanceId: m.groupInstanceId, metadata: m.metadata)
            }
        } catch {
            response.errorCode = Self.code(error)
            response.generationId = -1
            response.protocolType = nil
            response.protocolName = v >= 7 ? nil : ""
            response.leader = ""
            response.skipAssignment = false
            response.memberId = member
            response.members = []
        }
        return Self.encoded(response, answering: r, v)
    }

    func syncGroup(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let request = try SyncGroupRequest(from: &r, version: v)
        // v5+ also names the protocol type and name: the coordinator knows them.
        let assignments = Dictionary(request.assignments.map { ($0.memberId, $0.assignment) }, uniquingKeysWith: { a, _ in a })
        var response = SyncGroupResponse()
        do {
            let assignment = try await broker.groups.sync(groupId: request.groupId, generation: request.generationId, memberId: request.memberId, groupInstanceId: request.groupInstanceId, assignments: assignments)
            response.errorCode = 0
            if v >= 5 {
                let d = await broker.groups.describe(groupId: request.groupId)
                // A classic member of a consumer-protocol group: the names its JoinGroup gave.
                response.protocolType = d?.protocolType ?? request.protocolType
                response.protocolName = d?.protocolName ?? request.protocolName
            }
            response.assignment = assignment
        } catch {
            response.errorCode = Self.code(error)
            response.protocolType = nil
            response.protocolName = nil
            response.assignment = []
        }
        return Self.encoded(response, answering: r, v)
    }

    func heartbeat(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let request = try HeartbeatRequest(from: &r, version: v)
        var response = HeartbeatResponse()
        do {
            try await broker.groups.heartbeat(groupId: request.groupId, generation: request.generationId, memberId: request.memberId, groupInstanceId: request.groupInstanceId)
        } catch {
            response.errorCode = Self.code(error)
        }
        return Self.encoded(response, answering: r, v)
    }

    func leaveGroup(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let request = try LeaveGroupRequest(from: &r, version: v)
        var response = LeaveGroupResponse()
        if v < 3 {
            // One member, by member id; the answer is 0 whether or not the group had it.
            await broker.groups.leave(groupId: request.groupId, memberId: request.memberId)
        } else {
            // v3+: a batch of members, each by member id and/or static instance id, answered
            // per member (UNKNOWN_MEMBER_ID for one the group does not have). Reasons (v5+) are
            // not used.
            for m in request.members {
                let left = await broker.groups.leave(groupId: request.groupId, memberId: m.memberId, groupInstanceId: m.groupInstanceId)
                response.members.append(LeaveGroupResponse.MemberResponse(memberId: m.memberId, groupInstanceId: m.groupInstanceId, errorCode: left ? 0 : KafkaErrorCode.unknownMemberId))
            }
        }
        response.errorCode = 0
        return Self.encoded(response, answering: r, v)
    }

    func offsetCommit(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let request = try OffsetCommitRequest(from: &r, version: v)
        // The retention time (v2-4) and leader epochs (v6+) are not used.
        let offsets = Self.offsetsToCommit(request.topics.flatMap { t -> [OffsetToCommit] in
            t.partitions.map { p in (topic: t.name, partition: p.partitionIndex, offset: p.committedOffset, metadata: p.committedMetadata) }
        })
        var failure: Int16 = 0
        do {
            try await broker.groups.commit(groupId: request.groupId, generation: request.generationIdOrMemberEpoch, memberId: request.memberId, groupInstanceId: request.groupInstanceId, offsets: offsets)
        } catch {
            failure = Self.code(error)
        }
        var response = OffsetCommitResponse()
        response.topics = request.topics.map { t -> OffsetCommitResponse.Topic in
            let code = Self.isValidTopicName(t.name) ? failure : KafkaErrorCode.invalidTopic
            return OffsetCommitResponse.Topic(name: t.name, partitions: t.partitions.map { p in
                OffsetCommitResponse.Partition(partitionIndex: p.partitionIndex, errorCode: code)
            })
        }
        return Self.encoded(response, answering: r, v)
    }

    func offsetFetch(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let request = try OffsetFetchRequest(from: &r, version: v)
        // v8+ asks about several groups (their member ids and epochs, v9+, concern KIP-848
        // groups only), earlier versions about one. Topics nil: every partition the group has
        // committed an offset for.
        struct Query { var group: String; var topics: [(name: String, partitions: [Int32])]? }
        let queries: [Query]
        if v >= 8 {
            queries = request.groups.map { g in
                Query(group: g.groupId, topics: g.topics?.map { (name: $0.name, partitions: $0.partitionIndexes) })
            }
        } else {
            queries = [Query(group: request.groupId, topics: request.topics?.map { (name: $0.name, partitions: $0.partitionIndexes) })]
        }

        struct Answer {
            var partition: Int32
            var committed: CommittedOffset?
            var code: Int16
            var offset: Int64 { code == KafkaErrorCode.none ? committed?.offset ?? -1 : -1 }
            var metadata: String { committed?.metadata ?? "" }
        }
        var answers: [[(name: String, partitions: [Answer])]] = []
        for q in queries {
            let committed = await broker.groups.committedOffsets(groupId: q.group)
            // With require_stable, a partition whose offset an open transaction is about to
            // change answers UNSTABLE_OFFSET_COMMIT, and the client retries (KIP-447).
            let unstable = request.requireStable ? await broker.transactions.pendingOffsetPartitions(groupId: q.group) : []
            let wanted: [(name: String, partitions: [Int32])]
            if let topics = q.topics {
                wanted = topics
            } else {
                var byTopic: [String: [Int32]] = [:]
                for tp in committed.keys.sorted() { byTopic[tp.topic.rawValue, default: []].append(tp.partition) }
                wanted = byTopic.keys.sorted().map { (name: $0, partitions: byTopic[$0]!) }
            }
            answers.append(wanted.map { t -> (name: String, partitions: [Answer]) in
                let topic = try? TopicName(t.name)
                return (name: t.name, partitions: t.partitions.map { p -> Answer in
                    guard let topic else { return Answer(partition: p, committed: nil, code: KafkaErrorCode.none) }
                    let tp = TopicPartition(topic, p)
                    return Answer(partition: p, committed: committed[tp], code: unstable.contains(tp) ? KafkaErrorCode.unstableOffsetCommit : KafkaErrorCode.none)
                })
            })
        }

        var response = OffsetFetchResponse()
        if v >= 8 {
            for (q, topics) in zip(queries, answers) {
                response.groups.append(OffsetFetchResponse.Group(groupId: q.group, topics: topics.map { t in
                    OffsetFetchResponse.Topics(name: t.name, partitions: t.partitions.map { p in
                        OffsetFetchResponse.Partitions(partitionIndex: p.partition, committedOffset: p.offset, committedLeaderEpoch: -1, metadata: p.metadata, errorCode: p.code)
                    })
                }, errorCode: 0))
            }
        } else {
            response.topics = answers[0].map { t in
                OffsetFetchResponse.Topic(name: t.name, partitions: t.partitions.map { p in
                    OffsetFetchResponse.Partition(partitionIndex: p.partition, committedOffset: p.offset, committedLeaderEpoch: -1, metadata: p.metadata, errorCode: p.code)
                })
            }
            response.errorCode = 0
        }
        return Self.encoded(response, answering: r, v)
    }

    func describeGroups(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let request = try DescribeGroupsRequest(from: &r, version: v)
        var response = DescribeGroupsResponse()
        for g in request.groups {
            let d = await broker.groups.describe(groupId: g)
            response.groups.append(DescribeGroupsResponse.DescribedGroup(
                errorCode: 0,
                groupId: g,
                groupState: d?.state.rawValue ?? "Dead",
                protocolType: d?.protocolType ?? "",
                protocolData: d?.protocolName ?? "",
                members: (d?.members ?? []).map { m in
                    DescribeGroupsResponse.DescribedGroupMember(memberId: m.memberId, groupInstanceId: m.groupInstanceId, clientId: m.clientId, clientHost: "/127.0.0.1", memberMetadata: m.metadata, memberAssignment: m.assignment)
                },
                authorizedOperations: Int32.min))  // authorized operations: not computed
        }
        return Self.encoded(response, answering: r, v)
    }

    func listGroups(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let request = try ListGroupsRequest(from: &r, version: v)
        let states = Set(request.statesFilter.map { $0.lowercased() })  // v4+
        let types = Set(request.typesFilter.map { $0.lowercased() })  // v5+
        // Consumer groups use the classic protocol; share groups are listed with type "share".
        var listed = await broker.groups.listGroups().map { g in
            ListGroupsResponse.ListedGroup(groupId: g.groupId, protocolType: g.protocolType, groupState: g.state.rawValue, groupType: "classic")
        }
        for (id, state) in await broker.groups.listConsumerGroups() {
            listed.append(.init(groupId: id, protocolType: "consumer", groupState: state, groupType: "consumer"))
        }
        for id in await broker.shares.groupIds() where !listed.contains(where: { $0.groupId == id }) {
            let state = await broker.shares.describe(id)?.state ?? "Empty"
            listed.append(.init(groupId: id, protocolType: "share", groupState: state, groupType: "share"))
        }
        var response = ListGroupsResponse()
        response.errorCode = 0
        response.groups = listed.filter { g in
            (states.isEmpty || states.contains(g.groupState.lowercased())) && (types.isEmpty || types.contains(g.groupType.lowercased()))
        }.sorted { $0.groupId < $1.groupId }
        return Self.encoded(response, answering: r, v)
    }

    func deleteGroups(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let request = try DeleteGroupsRequest(from: &r, version: v)
        var response = DeleteGroupsResponse()
        for g in request.groupsNames {
            var code: Int16 = 0
            do { try await broker.groups.deleteGroup(g) } catch { code = Self.code(error) }
            response.results.append(DeleteGroupsResponse.DeletableGroupResult(groupId: g, errorCode: code))
        }
        return Self.encoded(response, answering: r, v)
    }

    // MARK: Shared by offset commits

    /// One partition's offset in an OffsetCommit or TxnOffsetCommit request.
    typealias OffsetToCommit = (topic: String, partition: Int32, offset: Int64, metadata: String?)

    /// The offsets an OffsetCommit or TxnOffsetCommit request commits (a null metadata is
    /// stored as empty; a partition named twice keeps its last offset). Partitions of topics
    /// whose names are not valid are left out: they are answered with INVALID_TOPIC_EXCEPTION.
    static func offsetsToCommit(_ partitions: [OffsetToCommit]) -> [TopicPartition: CommittedOffset] {
        var offsets: [TopicPartition: CommittedOffset] = [:]
        for p in partitions {
            guard let topic = try? TopicName(p.topic) else { continue }
            offsets[TopicPartition(topic, p.partition)] = CommittedOffset(offset: p.offset, metadata: p.metadata ?? "")
        }
        return offsets
    }

    static func isValidTopicName(_ name: String) -> Bool { (try? TopicName(name)) != nil }
}
