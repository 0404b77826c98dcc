// The topic sink: encodes each partition's share of a batch straight from the batch's views
// into one outgoing record batch (the only copy of the bytes), picks partitions by key as
// Kafka does, and writes through the lane's transactional producer under exactly-once, else
// through its own output. It knows the broker only as a `LaneOutput`.
import SluiceBroker  // Murmur2: the partition of a key, as Kafka picks it
import SluiceLog
import Synchronization

final class TopicSink: Sink {
    let id: String
    /// The output outside transactions.
    let output: any LaneOutput
    let topic: String
    let key: CompiledExpression?
    let partition: Int32?
    /// Partitions of the topic, read once (a topic's partitions are not changed under a
    /// running pipeline).
    private let partitions = Mutex<Int32?>(nil)
    /// Keyless records of one write go to one partition, the next write to the next one.
    private let sticky = Mutex<Int32>(0)

    init(id: String, output: any LaneOutput, topic: String, key: CompiledExpression?, partition: Int32?) {
        self.id = id
        self.output = output
        self.topic = topic
        self.key = key
        self.partition = partition
    }

    func write(_ batch: RecordBatch, context: LaneContext) async throws {
        guard !batch.isEmpty else { return }
        let txn = context.transaction
        let producer = txn?.producer ?? output
        let count: Int32
        if let known = partitions.withLock({ $0 }) { count = known } else {
            count = try await output.partitionCount(topic)
            partitions.withLock { $0 = count }
        }
        if let partition, partition >= count { throw ComponentError(component: id, "topic '\(topic)' has no partition \(partition)") }
        let keyless = sticky.withLock { p -> Int32 in defer { p = (p + 1) % max(count, 1) }; return p % max(count, 1) }
        // Exactly-once: records of the lane below this offset were written by an earlier
        // committed transaction (the lane resumed from a lower offset); skip them.
        let skipBelow = txn?.committedBelow ?? -1
        let txnLane = txn.map { batch.lanes.firstIndex(of: $0.lane).map(Int32.init) ?? -1 } ?? -1
        var builders = [RecordBatchBuilder?](repeating: nil, count: Int(count))
        var valueBytes = 0
        for s in batch.slots { valueBytes += max(0, Int(s.value.count)) + max(0, Int(s.key.count)) }
        let capacity = valueBytes / Int(max(1, count)) + batch.count * 24 / Int(max(1, count)) + 256
        let evaluateKey = key?.valueFunction
        for i in 0..<batch.count {
            let s = batch.slots[i]
            if s.offset < skipBelow && s.lane == txnLane { continue }
            var computedKey: [UInt8]?
            if let evaluateKey {
                do { computedKey = KeyTransform.bytes(try batch.withContext(i) { try evaluateKey($0) }) } catch {
                    let lane = batch.lane(i)
                    throw ComponentError(component: id, "key: \(expressionMessage(error)) (record \(lane.topic ?? "-")/\(lane.partition)@\(s.offset))")
                }
            }
            let headers = s.headerCount > 0 ? batch.recordHeaders(i) : []
            batch.withBytes(s.value) { value in
                func add(_ k: UnsafeRawBufferPointer?) {
                    let p: Int32
                    if let partition { p = partition } else if let k { p = Murmur2.partition(forKey: k, partitions: count) } else { p = keyless }
                    if builders[Int(p)] == nil { builders[Int(p)] = RecordBatchBuilder(capacity: capacity) }
                    builders[Int(p)]!.append(key: k, value: value, timestamp: s.timestamp, headers: headers)
                }
                if key != nil {
                    if let computedKey { computedKey.withUnsafeBytes { add($0) } } else { add(nil) }
                } else {
                    batch.withBytes(s.key) { add($0) }
                }
            }
        }
        // In a transaction the records are durable when the lane commits; outside one, at
        // the next `flush`.
        for p in 0..<Int(count) where builders[p] != nil {
            try await producer.send(&builders[p]!, topic: topic, partition: Int32(p))
        }
    }

    func flush() async throws { try await output.flush() }

    func close() async throws { try await flush() }
}
