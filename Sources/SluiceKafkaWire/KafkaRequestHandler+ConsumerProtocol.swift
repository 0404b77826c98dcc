// The consumer group protocol (KIP-848): ConsumerGroupHeartbeat v0–v1 and
// ConsumerGroupDescribe v0–v1, over the broker's GroupCoordinator (the same groups and
// offsets as the classic protocol). Assignments are computed by the broker and named by
// topic id; regular-expression subscriptions are refused.
import SluiceBroker
import SluiceLog

extension KafkaRequestHandler {
    func consumerGroupHeartbeat(_ r: inout KafkaReader, _ v: Int16, clientId: String, connection: ConnectionState) async throws -> KafkaWriter {
        let request = try ConsumerGroupHeartbeatRequest(from: &r, version: v)
        var response = ConsumerGroupHeartbeatResponse()
        response.memberId = request.memberId
        if let regex = request.subscribedTopicRegex, !regex.isEmpty {
            response.errorCode = KafkaErrorCode.invalidRegularExpression
            response.errorMessage = "regular-expression subscriptions ('\(regex)') are not supported; subscribe by topic names"
            return Self.encoded(response, answering: r, v)
        }
        if await broker.shares.isShareGroup(request.groupId) {
            response.errorCode = KafkaErrorCode.groupIdNotFound
            response.errorMessage = "group '\(request.groupId)' is a share group, not a consumer group"
            return Self.encoded(response, answering: r, v)
        }
        // Owned partitions arrive by topic id; unknown ids are dropped (the topic was deleted).
        let owned: [TopicPartition]? = request.topicPartitions.map { list in
            list.flatMap { t -> [TopicPartition] in
                guard let name = topicName(forId: t.topicId).flatMap({ try? TopicName($0) }) else { return [] }
                return t.partitions.map { TopicPartition(name, $0) }
            }
        }
        do {
            let (result, interval) = try await broker.groups.consumerHeartbeat(
                groupId: request.groupId, memberId: request.memberId, epoch: request.memberEpoch, instanceId: request.instanceId, rackId: request.rackId,
                rebalanceTimeoutMs: request.rebalanceTimeoutMs, topics: request.subscribedTopicNames, serverAssignor: request.serverAssignor,
                owned: owned, clientId: clientId, clientHost: connection.peer)
            response.memberId = result.memberId
            response.memberEpoch = result.memberEpoch
            response.heartbeatIntervalMs = interval
            if let assignment = result.assignment {
                response.assignment = .init(topicPartitions: Self.byTopic(assignment).map { .init(topicId: topicId($0.0), partitions: $0.1) })
            }
        } catch {
            response.errorCode = Self.code(error)
            response.errorMessage = "\(error)"
            logger.debug("ConsumerGroupHeartbeat of member \(request.memberId.isEmpty ? "(new)" : request.memberId) in \(request.groupId) at epoch \(request.memberEpoch) from \(connection.peer): \(error)")
        }
        return Self.encoded(response, answering: r, v)
    }

    func consumerGroupDescribe(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let request = try ConsumerGroupDescribeRequest(from: &r, version: v)
        var response = ConsumerGroupDescribeResponse()
        for id in request.groupIds {
            guard let g = await broker.groups.consumerGroup(id) else {
                response.groups.append(.init(errorCode: KafkaErrorCode.groupIdNotFound, errorMessage: "consumer-protocol group '\(id)' does not exist", groupId: id, groupState: "Dead"))
                continue
            }
            func assignment(_ tps: [TopicPartition]) -> ConsumerGroupDescribeResponse.Assignment {
                .init(topicPartitions: Self.byTopic(tps.sorted()).map { .init(topicId: topicId($0.0), topicName: $0.0, partitions: $0.1) })
            }
            response.groups.append(.init(
                groupId: id, groupState: g.state, groupEpoch: g.epoch, assignmentEpoch: g.assignmentEpoch, assignorName: g.assignor,
                members: g.members.values.sorted { $0.memberId < $1.memberId }.map { m in
                    .init(memberId: m.memberId, instanceId: m.instanceId, rackId: m.rackId, memberEpoch: m.epoch, clientId: m.clientId, clientHost: m.clientHost,
                          subscribedTopicNames: m.topics, assignment: assignment(m.owned), targetAssignment: assignment(g.target[m.memberId] ?? []), memberType: m.classic == nil ? 1 : 0)
                }))
        }
        return Self.encoded(response, answering: r, v)
    }
}
