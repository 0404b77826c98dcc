// Producer ids and transactions: InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn
// and TxnOffsetCommit, answered by the broker's TransactionCoordinator.
import SluiceBroker
import SluiceLog

extension KafkaRequestHandler {
    /// PRODUCER_FENCED exists from InitProducerId v4 and AddPartitions/AddOffsets/EndTxn v2;
    /// older versions report the same condition as INVALID_PRODUCER_EPOCH, as Kafka does.
    static func transactionCode(_ error: any Error, fencedCodeSince: Int16, _ v: Int16) -> Int16 {
        let c = code(error)
        return c == KafkaErrorCode.producerFenced && v < fencedCodeSince ? KafkaErrorCode.invalidProducerEpoch : c
    }

    /// The response of requests that answer with only an error code (AddOffsetsToTxn, EndTxn,
    /// Heartbeat): [throttle time,] the code of what `call` threw (0 when it succeeded), tagged
    /// fields.
    func errorCodeResponse(_ r: KafkaReader, throttle: Bool, code: (any Error) -> Int16 = { KafkaRequestHandler.code($0) }, _ call: () async throws -> Void) async -> KafkaWriter {
        var w = KafkaWriter(responseTo: r)
        if throttle { w.int32(0) }
        do {
            try await call()
            w.int16(0)
        } catch {
            w.int16(code(error))
        }
        w.taggedFields()
        return w
    }

    func initProducerId(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let transactionalId = try r.nullableString()
        let timeout = try r.int32()
        // v3+ names the producer id and epoch to resume (KIP-360); a new id or epoch is issued
        // either way, which such clients accept.
        if v >= 3 { _ = try r.int64(); _ = try r.int16() }
        try r.finish()
        var w = KafkaWriter(responseTo: r)
        w.int32(0)
        do {
            let (pid, epoch) = try await broker.transactions.initProducerId(transactionalId: transactionalId, timeoutMs: Int64(timeout))
            w.int16(0); w.int64(pid); w.int16(epoch)
        } catch {
            w.int16(Self.transactionCode(error, fencedCodeSince: 4, v)); w.int64(-1); w.int16(-1)
        }
        w.taggedFields()
        return w
    }

    func addPartitionsToTxn(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let id = try r.string()
        let pid = try r.int64()
        let epoch = try r.int16()
        let topics = try r.array { (r: inout KafkaReader) throws(WireError) -> (String, [Int32]) in
            let t = (try r.string(), try r.array { (r: inout KafkaReader) throws(WireError) -> Int32 in try r.int32() })
            try r.taggedFields()
            return t
        }
        try r.finish()
        var tps: [TopicPartition] = []
        var invalid = Set<String>()
        for (name, parts) in topics {
            guard let t = try? TopicName(name), broker.topics.exists(t) else { invalid.insert(name); continue }
            for p in parts { tps.append(TopicPartition(t, p)) }
        }
        var code: Int16 = 0
        if invalid.isEmpty {
            do { try await broker.transactions.addPartitions(transactionalId: id, producerId: pid, epoch: epoch, partitions: tps) } catch { code = Self.transactionCode(error, fencedCodeSince: 2, v) }
        }
        var w = KafkaWriter(responseTo: r)
        w.int32(0)
        // Kafka answers OPERATION_NOT_ATTEMPTED (55) for the valid partitions of a request with an invalid one.
        writePartitionErrors(&w, topics) { topic, _ in invalid.isEmpty ? code : (invalid.contains(topic) ? KafkaErrorCode.unknownTopicOrPartition : 55) }
        w.taggedFields()
        return w
    }

    func addOffsetsToTxn(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let id = try r.string()
        let pid = try r.int64()
        let epoch = try r.int16()
        let group = try r.string()
        try r.finish()
        return await errorCodeResponse(r, throttle: true, code: { Self.transactionCode($0, fencedCodeSince: 2, v) }) {
            try await broker.transactions.addOffsets(transactionalId: id, producerId: pid, epoch: epoch, groupId: group)
        }
    }

    func endTxn(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let id = try r.string()
        let pid = try r.int64()
        let epoch = try r.int16()
        let commit = try r.bool()
        try r.finish()
        return await errorCodeResponse(r, throttle: true, code: { Self.transactionCode($0, fencedCodeSince: 2, v) }) {
            try await broker.transactions.endTransaction(transactionalId: id, producerId: pid, epoch: epoch, commit: commit)
        }
    }

    func txnOffsetCommit(_ r: inout KafkaReader, _ v: Int16) async throws -> KafkaWriter {
        let id = try r.string()
        let group = try r.string()
        let pid = try r.int64()
        let epoch = try r.int16()
        var member: (generation: Int32, id: String, instance: String?) = (-1, "", nil)
        if v >= 3 { member = (try r.int32(), try r.string(), try r.nullableString()) }
        let request = try readCommittedOffsets(&r, leaderEpoch: v >= 2)
        try r.finish()
        var code: Int16 = 0
        do {
            try await broker.groups.checkTransactionalCommit(groupId: group, memberId: member.id, groupInstanceId: member.instance, generation: member.generation)
            try await broker.transactions.txnOffsetCommit(transactionalId: id, producerId: pid, epoch: epoch, groupId: group, offsets: request.offsets)
        } catch {
            code = Self.code(error)
        }
        var w = KafkaWriter(responseTo: r)
        w.int32(0)
        writePartitionErrors(&w, request.layout) { topic, _ in request.invalid.contains(topic) ? KafkaErrorCode.invalidTopic : code }
        w.taggedFields()
        return w
    }
}
