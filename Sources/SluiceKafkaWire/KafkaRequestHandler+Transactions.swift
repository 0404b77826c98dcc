// Producer ids and transactions: InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn
// and TxnOffsetCommit, answered by the broker's TransactionCoordinator. Each handler decodes
// the generated request struct (Messages/), calls the coordinator, then fills and encodes the
// generated response struct.
import SluiceBroker
import SluiceLog

extension KafkaRequestHandler {
    /// PRODUCER_FENCED exists from InitProducerId v4 and AddPartitions/AddOffsets/EndTxn v2;
    /// older versions report the same condition as INVALID_PRODUCER_EPOCH, as Kafka does.
    static func transactionCode(_ error: any Error, fencedCodeSince: Int16, _ v: Int16) -> Int16 {
        let c = code(error)
        return c == KafkaErrorCode.producerFenced && v < fencedCodeSince ? KafkaErrorCode.invalidProducerEpoch : c
    }

    func initProducerId(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let request = try InitProducerIdRequest(from: &r, version: v)
        // v3+ names the producer id and epoch to resume (KIP-360); a new id or epoch is issued
        // either way, which such clients accept.
        var response = InitProducerIdResponse()
        do {
            let (pid, epoch) = try await broker.transactions.initProducerId(transactionalId: request.transactionalId, timeoutMs: Int64(request.transactionTimeoutMs))
            response.errorCode = 0
            response.producerId = pid
            response.producerEpoch = epoch
        } catch {
            response.errorCode = Self.transactionCode(error, fencedCodeSince: 4, v)
            response.producerId = -1
            response.producerEpoch = -1
        }
        return Self.encoded(response, answering: r, v)
    }

    func addPartitionsToTxn(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let request = try AddPartitionsToTxnRequest(from: &r, version: v)
        let topics = request.v3AndBelowTopics
        var tps: [TopicPartition] = []
        var invalid = Set<String>()
        for t in topics {
            guard let name = try? TopicName(t.name), broker.topics.exists(name) else { invalid.insert(t.name); continue }
            for p in t.partitions { tps.append(TopicPartition(name, p)) }
        }
        var code: Int16 = 0
        if invalid.isEmpty {
            do {
                try await broker.transactions.addPartitions(transactionalId: request.v3AndBelowTransactionalId, producerId: request.v3AndBelowProducerId, epoch: request.v3AndBelowProducerEpoch, partitions: tps)
            } catch {
                code = Self.transactionCode(error, fencedCodeSince: 2, v)
            }
        }
        var response = AddPartitionsToTxnResponse()
        response.resultsByTopicV3AndBelow = topics.map { t -> AddPartitionsToTxnResponse.AddPartitionsToTxnTopicResult in
            // Kafka answers OPERATION_NOT_ATTEMPTED (55) for the valid partitions of a request with an invalid one.
            let c: Int16 = invalid.isEmpty ? code : (invalid.contains(t.name) ? KafkaErrorCode.unknownTopicOrPartition : 55)
            return AddPartitionsToTxnResponse.AddPartitionsToTxnTopicResult(name: t.name, resultsByPartition: t.partitions.map { p in
                AddPartitionsToTxnResponse.AddPartitionsToTxnPartitionResult(partitionIndex: p, partitionErrorCode: c)
            })
        }
        return Self.encoded(response, answering: r, v)
    }

    func addOffsetsToTxn(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let request = try AddOffsetsToTxnRequest(from: &r, version: v)
        var response = AddOffsetsToTxnResponse()
        do {
            try await broker.transactions.addOffsets(transactionalId: request.transactionalId, producerId: request.producerId, epoch: request.producerEpoch, groupId: request.groupId)
        } catch {
            response.errorCode = Self.transactionCode(error, fencedCodeSince: 2, v)
        }
        return Self.encoded(response, answering: r, v)
    }

    func endTxn(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let request = try EndTxnRequest(from: &r, version: v)
        var response = EndTxnResponse()
        do {
            try await broker.transactions.endTransaction(transactionalId: request.transactionalId, producerId: request.producerId, epoch: request.producerEpoch, commit: request.committed)
        } catch {
            response.errorCode = Self.transactionCode(error, fencedCodeSince: 2, v)
        }
        return Self.encoded(response, answering: r, v)
    }

    func txnOffsetCommit(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let request = try TxnOffsetCommitRequest(from: &r, version: v)
        // v3+ names the consuming member (KIP-447), checked against the group; before v3 the
        // generated defaults (generation -1, member "", no instance) skip that check.
        let offsets = Self.offsetsToCommit(request.topics.flatMap { t -> [OffsetToCommit] in
            t.partitions.map { p in (topic: t.name, partition: p.partitionIndex, offset: p.committedOffset, metadata: p.committedMetadata) }
        })
        var code: Int16 = 0
        do {
            try await broker.groups.checkTransactionalCommit(groupId: request.groupId, memberId: request.memberId, groupInstanceId: request.groupInstanceId, generation: request.generationId)
            try await broker.transactions.txnOffsetCommit(transactionalId: request.transactionalId, producerId: request.producerId, epoch: request.producerEpoch, groupId: request.groupId, offsets: offsets)
        } catch {
            code = Self.code(error)
        }
        var response = TxnOffsetCommitResponse()
        response.topics = request.topics.map { t -> TxnOffsetCommitResponse.Topic in
            let c = Self.isValidTopicName(t.name) ? code : KafkaErrorCode.invalidTopic
            return TxnOffsetCommitResponse.Topic(name: t.name, partitions: t.partitions.map { p in
                TxnOffsetCommitResponse.Partition(partitionIndex: p.partitionIndex, errorCode: c)
            })
        }
        return Self.encoded(response, answering: r, v)
    }
}
