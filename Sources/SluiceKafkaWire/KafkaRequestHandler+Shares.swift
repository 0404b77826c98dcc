// Share-group APIs (KIP-932, Kafka 4.2's v1): ShareGroupHeartbeat, ShareGroupDescribe,
// ShareFetch and ShareAcknowledge, over the broker's ShareCoordinator. A share session lives on
// the connection that opened it (epoch 0 opens, each request names the next epoch, -1
// closes); when the connection drops, the member's acquired records are released, as Kafka does.
import SluiceBroker
import SluiceLog

/// What one connection carries between requests.
public struct ConnectionState: Sendable {
    public var sasl = SASLState()
    /// The peer's address, for share-group member descriptions.
    public var peer: String
    /// Share sessions opened on this connection, by group and member.
    var shareSessions: [ShareSessionKey: ShareSession] = [:]

    public init(peer: String = "") { self.peer = peer }
}

struct ShareSessionKey: Hashable, Sendable {
    var group: String
    var member: String
}

struct ShareSession: Sendable {
    var nextEpoch: Int32
    var partitions: [TopicPartition]

    mutating func add(_ tps: [TopicPartition]) {
        for tp in tps where !partitions.contains(tp) { partitions.append(tp) }
    }
}

extension KafkaRequestHandler {
    /// Releases what the connection's share sessions hold (the connection closed).
    public func connectionClosed(_ connection: ConnectionState) async {
        for key in connection.shareSessions.keys {
            await broker.shares.releaseSession(groupId: key.group, memberId: key.member)
            logger.debug("kafka: released the share session of \(key.member) in \(key.group): the connection from \(connection.peer) closed")
        }
    }

    // MARK: ShareGroupHeartbeat

    func shareGroupHeartbeat(_ r: inout KafkaReader, _ v: Int16, clientId: String, connection: ConnectionState) async throws -> KafkaWriter {
        let request = try ShareGroupHeartbeatRequest(from: &r, version: v)
        var response = ShareGroupHeartbeatResponse()
        response.memberId = request.memberId
        if await broker.groups.hasMembers(request.groupId) {
            response.errorCode = KafkaErrorCode.groupIdNotFound
            response.errorMessage = "group '\(request.groupId)' is a consumer group, not a share group"
            return Self.encoded(response, answering: r, v)
        }
        do {
            let (result, interval) = try await broker.shares.heartbeat(groupId: request.groupId, memberId: request.memberId, epoch: request.memberEpoch,
                                                                      topics: request.subscribedTopicNames, clientId: clientId, clientHost: connection.peer, rackId: request.rackId)
            response.memberEpoch = result.memberEpoch
            response.heartbeatIntervalMs = interval
            if let assignment = result.assignment {
                response.assignment = .init(topicPartitions: Self.byTopic(assignment).map { .init(topicId: topicId($0.0), partitions: $0.1) })
            }
        } catch {
            response.errorCode = Self.code(error)
            response.errorMessage = "\(error)"
        }
        return Self.encoded(response, answering: r, v)
    }

    // MARK: ShareGroupDescribe

    func shareGroupDescribe(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let request = try ShareGroupDescribeRequest(from: &r, version: v)
        var response = ShareGroupDescribeResponse()
        for id in request.groupIds {
            guard let d = await broker.shares.describe(id) else {
                response.groups.append(.init(errorCode: KafkaErrorCode.groupIdNotFound, errorMessage: "share group '\(id)' does not exist", groupId: id, groupState: "Dead"))
                continue
            }
            response.groups.append(.init(
                groupId: id, groupState: d.state, groupEpoch: d.epoch, assignmentEpoch: d.epoch, assignorName: "simple",
                members: d.members.map { m in
                    .init(memberId: m.memberId, memberEpoch: m.epoch, clientId: m.clientId, clientHost: m.clientHost, subscribedTopicNames: m.topics,
                          assignment: .init(topicPartitions: Self.byTopic(m.assignment).map { .init(topicId: topicId($0.0), topicName: $0.0, partitions: $0.1) }))
                }))
        }
        return Self.encoded(response, answering: r, v)
    }

    // MARK: DescribeShareGroupOffsets

    /// Each share-partition's start offset and lag: the records from the start offset to the
    /// log's end not yet acknowledged or archived. Partitions the group has not read are
    /// answered with start offset -1, as Kafka does.
    func describeShareGroupOffsets(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let request = try DescribeShareGroupOffsetsRequest(from: &r, version: v)
        var response = DescribeShareGroupOffsetsResponse()
        for g in request.groups {
            var group = DescribeShareGroupOffsetsResponse.Group(groupId: g.groupId)
            guard let d = await broker.shares.describe(g.groupId) else {
                group.errorCode = KafkaErrorCode.groupIdNotFound
                group.errorMessage = "share group '\(g.groupId)' does not exist"
                response.groups.append(group)
                continue
            }
            let wanted: [(String, [Int32])] = g.topics.map { $0.map { ($0.topicName, $0.partitions) } }
                ?? Self.byTopic(d.partitions.map(\.topicPartition))
            for (topic, partitions) in wanted {
                var t = DescribeShareGroupOffsetsResponse.Topic(topicName: topic, topicId: topicId(topic))
                for p in partitions {
                    var out = DescribeShareGroupOffsetsResponse.Partition(partitionIndex: p, startOffset: -1, leaderEpoch: 0, lag: -1)
                    if let name = try? TopicName(topic), let s = d.partitions.first(where: { $0.topicPartition == TopicPartition(name, p) }) {
                        out.startOffset = s.startOffset
                        out.lag = max(0, s.logEndOffset - s.startOffset - Int64(s.acknowledged + s.archived))
                    } else if (try? TopicName(topic)).map({ (try? broker.partitionCount($0)).map { p >= 0 && p < $0 } ?? false }) != true {
                        out.errorCode = KafkaErrorCode.unknownTopicOrPartition
                        out.errorMessage = "\(topic)/\(p) does not exist"
                    }
                    t.partitions.append(out)
                }
                group.topics.append(t)
            }
            response.groups.append(group)
        }
        return Self.encoded(response, answering: r, v)
    }

    static func byTopic(_ tps: [TopicPartition]) -> [(String, [Int32])] {
        var out: [(String, [Int32])] = []
        for tp in tps {
            if let i = out.firstIndex(where: { $0.0 == tp.topic.rawValue }) { out[i].1.append(tp.partition) } else { out.append((tp.topic.rawValue, [tp.partition])) }
        }
        return out
    }

    // MARK: ShareFetch

    /// Acknowledgement batches as Kafka checks them: one type for the whole range or one per
    /// offset, types 0...3 (gap, accept, release, reject). Returns nil when malformed.
    static func acknowledgements(_ first: Int64, _ last: Int64, _ types: [Int8]) -> [AcknowledgementBatch]? {
        guard first <= last, !types.isEmpty else { return nil }
        let kinds = types.map { AcknowledgeType(rawValue: $0) }
        guard !kinds.contains(where: { $0 == nil }) else { return nil }
        if kinds.count == 1 { return [AcknowledgementBatch(first: first, last: last, type: kinds[0]!)] }
        guard Int64(kinds.count) == last - first + 1 else { return nil }
        var out: [AcknowledgementBatch] = []
        for (i, k) in kinds.enumerated() {
            let offset = first + Int64(i)
            if let l = out.last, l.type == k!, l.last + 1 == offset { out[out.count - 1].last = offset } else { out.append(AcknowledgementBatch(first: offset, last: offset, type: k!)) }
        }
        return out
    }

    private struct NamedPartition {
        var tp: TopicPartition?
        var topicId: KafkaUUID
        var partition: Int32
    }

    /// Resolves a request's topics (by id, repeated ids merged) and their acknowledgements.
    private func shareTopics(_ topics: [(KafkaUUID, [(Int32, [(Int64, Int64, [Int8])])])])
        -> (partitions: [NamedPartition], acks: [TopicPartition: [AcknowledgementBatch]], invalid: [TopicPartition: String])
    {
        var parts: [NamedPartition] = []
        var acks: [TopicPartition: [AcknowledgementBatch]] = [:]
        var invalid: [TopicPartition: String] = [:]
        for (id, partitions) in topics {
            let name = topicName(forId: id).flatMap { try? TopicName($0) }
            for (p, batches) in partitions {
                let tp = name.map { TopicPartition($0, p) }
                if !parts.contains(where: { $0.topicId == id && $0.partition == p }) { parts.append(NamedPartition(tp: tp, topicId: id, partition: p)) }
                guard let tp, !batches.isEmpty else { continue }
                for (first, last, types) in batches {
                    if let list = Self.acknowledgements(first, last, types) {
                        acks[tp, default: []].append(contentsOf: list)
                    } else {
                        invalid[tp] = "acknowledgement batch \(first)...\(last) with \(types.count) types is malformed"
                    }
                }
            }
        }
        for tp in invalid.keys { acks.removeValue(forKey: tp) }
        return (parts, acks, invalid)
    }

    /// Checks and advances the share session a request names; returns the error to answer with.
    private func advanceSession(_ key: ShareSessionKey, epoch: Int32, adding: [TopicPartition], forgetting: [TopicPartition], connection: inout ConnectionState) -> (Int16, String)? {
        switch epoch {
        case 0:
            var s = ShareSession(nextEpoch: 1, partitions: [])
            s.add(adding)
            connection.shareSessions[key] = s
        case -1:
            guard connection.shareSessions.removeValue(forKey: key) != nil else {
                return (KafkaErrorCode.shareSessionNotFound, "no share session for member \(key.member) of \(key.group) on this connection")
            }
        default:
            guard var s = connection.shareSessions[key] else {
                return (KafkaErrorCode.shareSessionNotFound, "no share session for member \(key.member) of \(key.group) on this connection")
            }
            guard s.nextEpoch == epoch else {
                return (KafkaErrorCode.invalidShareSessionEpoch, "share session epoch \(epoch), expected \(s.nextEpoch)")
            }
            s.add(adding)
            s.partitions.removeAll { forgetting.contains($0) }
            s.nextEpoch = epoch == Int32.max ? 1 : epoch + 1
            connection.shareSessions[key] = s
        }
        return nil
    }

    func shareFetch(_ r: inout KafkaReader, _ v: Int16, connection: inout ConnectionState) async throws -> KafkaWriter {
        let request = try ShareFetchRequest(from: &r, version: v)
        var response = ShareFetchResponse()
        guard let group = request.groupId, !group.isEmpty, let member = request.memberId, !member.isEmpty else {
            response.errorCode = KafkaErrorCode.invalidRequest
            response.errorMessage = "a share fetch must name its group and member"
            return Self.encoded(response, answering: r, v)
        }
        let key = ShareSessionKey(group: group, member: member)
        let (named, requestedAcks, invalid) = shareTopics(request.topics.map { t in
            (t.topicId, t.partitions.map { p in (p.partitionIndex, p.acknowledgementBatches.map { ($0.firstOffset, $0.lastOffset, $0.acknowledgeTypes) }) })
        })
        var forgotten: [TopicPartition] = []
        for f in request.forgottenTopicsData {
            if let name = topicName(forId: f.topicId).flatMap({ try? TopicName($0) }) { forgotten += f.partitions.map { TopicPartition(name, $0) } }
        }
        let epoch = request.shareSessionEpoch
        if let (code, message) = advanceSession(key, epoch: epoch, adding: named.compactMap(\.tp), forgetting: forgotten, connection: &connection) {
            response.errorCode = code
            response.errorMessage = message
            return Self.encoded(response, answering: r, v)
        }
        var ackErrors: [TopicPartition: (Int16, String)] = invalid.mapValues { (KafkaErrorCode.invalidRequest, $0) }
        var acks = requestedAcks
        if epoch == 0 && !acks.isEmpty {
            for tp in acks.keys { ackErrors[tp] = (KafkaErrorCode.invalidRequest, "acknowledgements cannot be sent when opening a share session (epoch 0)") }
            acks = [:]
        }
        let fetchList = epoch == -1 ? [] : (connection.shareSessions[key]?.partitions ?? [])
        let maxRecords = Int(request.maxRecords > 0 ? request.maxRecords : 500)
        var acquired: [ShareAcquisition] = []
        do {
            let first = try await broker.shares.fetch(groupId: group, memberId: member, fetch: fetchList, maxRecords: maxRecords, acknowledgements: acks)
            for (tp, e) in first.ackErrors { ackErrors[tp] = (e.kind == .invalidRequest ? KafkaErrorCode.invalidRequest : KafkaErrorCode.invalidRecordState, e.message) }
            acquired = first.acquired
            if epoch == -1 { await broker.shares.releaseSession(groupId: group, memberId: member) }
            let waitMs = min(request.maxWaitMs, Self.maxFetchWaitMs)
            if !acquired.contains(where: { !$0.ranges.isEmpty }) && waitMs > 0 && !fetchList.isEmpty {
                if await broker.waitForShareRecords(group, fetchList, until: .now + .milliseconds(Int64(waitMs))) {
                    acquired = try await broker.shares.fetch(groupId: group, memberId: member, fetch: fetchList, maxRecords: maxRecords).acquired
                }
            }
            try await broker.shares.waitUntilDurable(first.durableAt)
        } catch {
            response.errorCode = Self.code(error)
            response.errorMessage = "\(error)"
            return Self.encoded(response, answering: r, v)
        }
        response.acquisitionLockTimeoutMs = Int32(clamping: await broker.shares.settings(of: group).lockMs)
        // Partitions in the order the request named them, then the session's others that got records.
        var order: [(KafkaUUID, Int32, TopicPartition?)] = named.map { ($0.topicId, $0.partition, $0.tp) }
        for a in acquired where !order.contains(where: { $0.2 == a.topicPartition }) {
            order.append((topicId(a.topicPartition.topic.rawValue), a.topicPartition.partition, a.topicPartition))
        }
        var budget = max(0, Int(request.maxBytes))
        var total = 0
        for (id, partition, tp) in order {
            var data = ShareFetchResponse.PartitionData(partitionIndex: partition)
            data.currentLeader = .init(leaderId: Self.nodeId, leaderEpoch: 0)
            guard let tp else {
                data.errorCode = KafkaErrorCode.unknownTopicId
                data.errorMessage = "no topic has id \(id)"
                append(&response, id, data)
                continue
            }
            if let (code, message) = ackErrors[tp] {
                data.acknowledgeErrorCode = code
                data.acknowledgeErrorMessage = message
            }
            if let a = acquired.first(where: { $0.topicPartition == tp }) {
                if let e = a.error {
                    data.errorCode = Self.code(e)
                    data.errorMessage = e.message
                } else if !a.ranges.isEmpty {
                    do {
                        data.records = try shareRecords(tp, a.ranges, budget: &budget)
                        total += data.records.count
                        data.acquiredRecords = a.ranges.map { .init(firstOffset: $0.first, lastOffset: $0.last, deliveryCount: $0.deliveryCount) }
                    } catch {
                        data.errorCode = Self.code(error)
                        data.errorMessage = "\(error)"
                    }
                }
            }
            append(&response, id, data)
        }
        logger.debug("kafka: share fetch by \(member) of \(group) (epoch \(epoch)): acks \(acks.mapValues { $0.map { "\($0.first)-\($0.last):\($0.type)" } }) acquired \(acquired.map { $0.ranges.map { "\($0.first)-\($0.last)x\($0.deliveryCount)" } }), \(total) bytes")
        return Self.encoded(response, answering: r, v, capacity: 256 + total)
    }

    private func append(_ response: inout ShareFetchResponse, _ id: KafkaUUID, _ data: ShareFetchResponse.PartitionData) {
        if let i = response.responses.firstIndex(where: { $0.topicId == id }) {
            response.responses[i].partitions.append(data)
        } else {
            response.responses.append(.init(topicId: id, partitions: [data]))
        }
    }

    /// The log's batches that hold the acquired ranges, as stored (the client keeps only the
    /// acquired offsets). One range read in one piece is sent without a copy.
    private func shareRecords(_ tp: TopicPartition, _ ranges: [AcquiredRange], budget: inout Int) throws -> RecordBytes {
        let handle = try broker.partition(tp)
        var pieces: [RecordBytes] = []
        var covered = Int64.min  // batches up to this offset are in already
        for range in ranges {
            var from = max(range.first, covered + 1)
            while from <= range.last {
                let d = try handle.read(from: from, maxBytes: min(max(budget, 1), 8 << 20), isolation: .readUncommitted)
                if d.isEmpty || d.nextOffset <= from { break }
                // Only the batches up to the range's last offset.
                let (cut, end) = Self.batches(d.result.bytes, d.result.range, through: range.last, after: covered)
                if !cut.isEmpty { pieces.append(RecordBytes(storage: d.result.bytes, range: cut)) }
                budget -= cut.count
                covered = max(covered, end)
                from = end + 1
                if budget <= 0 { break }
            }
            if budget <= 0 { break }
        }
        if pieces.count == 1 { return pieces[0] }
        var all: [UInt8] = []
        all.reserveCapacity(pieces.reduce(0) { $0 + $1.count })
        for p in pieces { all += p.slice }
        return RecordBytes(all)
    }

    /// The byte range of whole batches in `bytes[range]` that start at or before `last` and
    /// end after `after`, and the last offset they cover.
    static func batches(_ bytes: [UInt8], _ range: Range<Int>, through last: Int64, after: Int64) -> (Range<Int>, Int64) {
        var pos = range.lowerBound
        var start: Int?
        var end = pos
        var lastOffset = after
        while pos + 61 <= range.upperBound {
            let base = bytes[pos..<pos + 8].reduce(Int64(0)) { $0 << 8 | Int64($1) }
            let length = Int(bytes[pos + 8..<pos + 12].reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
            let delta = Int64(bytes[pos + 23..<pos + 27].reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
            let size = 12 + length
            guard pos + size <= range.upperBound, base <= last else { break }
            if base + delta > after {
                if start == nil { start = pos }
                end = pos + size
                lastOffset = base + delta
            }
            pos += size
        }
        return ((start ?? end)..<end, lastOffset)
    }

    // MARK: ShareAcknowledge

    func shareAcknowledge(_ r: inout KafkaReader, _ v: Int16, connection: inout ConnectionState) async throws -> KafkaWriter {
        let request = try ShareAcknowledgeRequest(from: &r, version: v)
        var response = ShareAcknowledgeResponse()
        guard let group = request.groupId, !group.isEmpty, let member = request.memberId, !member.isEmpty else {
            response.errorCode = KafkaErrorCode.invalidRequest
            response.errorMessage = "a share acknowledgement must name its group and member"
            return Self.encoded(response, answering: r, v)
        }
        let key = ShareSessionKey(group: group, member: member)
        let epoch = request.shareSessionEpoch
        guard epoch != 0 else {
            response.errorCode = KafkaErrorCode.invalidShareSessionEpoch
            response.errorMessage = "acknowledgements need an open share session (epoch 0 opens one with ShareFetch)"
            return Self.encoded(response, answering: r, v)
        }
        let (named, acks, invalid) = shareTopics(request.topics.map { t in
            (t.topicId, t.partitions.map { p in (p.partitionIndex, p.acknowledgementBatches.map { ($0.firstOffset, $0.lastOffset, $0.acknowledgeTypes) }) })
        })
        if let (code, message) = advanceSession(key, epoch: epoch, adding: [], forgetting: [], connection: &connection) {
            response.errorCode = code
            response.errorMessage = message
            return Self.encoded(response, answering: r, v)
        }
        var errors: [TopicPartition: (Int16, String)] = invalid.mapValues { (KafkaErrorCode.invalidRequest, $0) }
        logger.debug("kafka: share acknowledge by \(member) of \(group) (epoch \(epoch)): \(acks.mapValues { $0.map { "\($0.first)-\($0.last):\($0.type)" } })")
        do {
            let result = try await broker.shares.fetch(groupId: group, memberId: member, fetch: [], maxRecords: 0, acknowledgements: acks)
            for (tp, e) in result.ackErrors { errors[tp] = (e.kind == .invalidRequest ? KafkaErrorCode.invalidRequest : KafkaErrorCode.invalidRecordState, e.message) }
            if epoch == -1 { await broker.shares.releaseSession(groupId: group, memberId: member) }
            try await broker.shares.waitUntilDurable(result.durableAt)
        } catch {
            response.errorCode = Self.code(error)
            response.errorMessage = "\(error)"
            return Self.encoded(response, answering: r, v)
        }
        for p in named {
            var data = ShareAcknowledgeResponse.PartitionData(partitionIndex: p.partition)
            data.currentLeader = .init(leaderId: Self.nodeId, leaderEpoch: 0)
            if let tp = p.tp {
                if let (code, message) = errors[tp] { data.errorCode = code; data.errorMessage = message }
            } else {
                data.errorCode = KafkaErrorCode.unknownTopicId
                data.errorMessage = "no topic has id \(p.topicId)"
            }
            if let i = response.responses.firstIndex(where: { $0.topicId == p.topicId }) {
                response.responses[i].partitions.append(data)
            } else {
                response.responses.append(.init(topicId: p.topicId, partitions: [data]))
            }
        }
        return Self.encoded(response, answering: r, v)
    }
}
