// The plugin surface: what sources, transforms and sinks implement. Built-ins use exactly
// these protocols; nothing here mentions NIO or the broker: what a component may do to the
// broker goes through `LaneOutput` and `ComponentServices`, which the runtime implements.
import SluiceLog

/// A record as an owned value: what components that are not on a hot path read from a
/// batch (`RecordBatch.records`) and build batches from (`RecordBatch(_:)`). On the hot path
/// records stay in their batch as views (`RecordSlot`).
public struct PipelineRecord: Sendable {
    public var key: [UInt8]?
    public var value: [UInt8]?
    public var headers: [RecordHeader]
    public var timestamp: Int64
    public var topic: String?
    public var partition: Int32
    public var offset: Int64
    public var parsed: Value?

    public init(key: [UInt8]? = nil, value: [UInt8]?, headers: [RecordHeader] = [], timestamp: Int64 = currentTimeMillis(), topic: String? = nil, partition: Int32 = -1, offset: Int64 = -1, parsed: Value? = nil) {
        self.key = key
        self.value = value
        self.headers = headers
        self.timestamp = timestamp
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.parsed = parsed
    }

    /// The expression context for this record.
    public var context: EvalContext {
        EvalContext(value: parsed ?? .null, key: key, topic: topic, partition: partition, offset: offset, timestamp: timestamp, headers: headers.map { ($0.name, $0.value) })
    }

    /// The value as it leaves a transform that changed `parsed`: JSON text of the fields.
    public mutating func syncValueFromParsed() {
        if let parsed { value = JSON.serialize(parsed) }
    }
}

/// What a component is told about the records it is given: the lane they belong to and, under
/// `guarantee: exactly-once`, that lane's open transaction. Passed explicitly with every
/// batch; nothing is read from task-locals.
public struct LaneContext: Sendable {
    /// The source partition whose records these are (nil for sources that are not topics).
    public var lane: SourceLane?
    /// The lane's open transaction under exactly-once; nil otherwise.
    public var transaction: LaneTransaction?

    public init(lane: SourceLane? = nil, transaction: LaneTransaction? = nil) {
        self.lane = lane
        self.transaction = transaction
    }

    /// Records of no particular lane, outside any transaction (plain sources, tests).
    public static let none = LaneContext()
}

/// Where a transform puts what it produced: the main output, the error output, or a named
/// output (`route` cases). Made for one input batch, the outputs share its stores, so a
/// transform passes a record on by appending its slot.
public struct TransformOutput: Sendable {
    public var out: RecordBatch
    public var errors: RecordBatch
    public var named: [String: RecordBatch] = [:]
    /// An empty batch sharing the input's stores, for named outputs.
    let template: RecordBatch

    /// Outputs for records of `input`.
    public init(for input: RecordBatch) {
        template = input.emptied()
        out = template
        errors = template
    }

    public init() { self.init(for: RecordBatch()) }

    /// Passes slot `i` of the input on unchanged.
    @inlinable
    public mutating func pass(_ slot: RecordSlot) { out.slots.append(slot) }

    /// Sends slot `slot` (of the input) to output `name`.
    public mutating func route(_ name: String, _ slot: RecordSlot) {
        named[name, default: template].slots.append(slot)
    }

    /// Sends the input's record `slot` to `<component>.errors` with headers saying what went
    /// wrong (`sluice.error`, `sluice.error.component`).
    public mutating func fail(_ slot: RecordSlot, component: String, _ message: String) {
        errors.slots.append(slot)
        let i = errors.count - 1
        errors.addHeader(i, name: "sluice.error", value: message)
        errors.addHeader(i, name: "sluice.error.component", value: component)
    }

    /// Sends an owned record to `<component>.errors` (components that work on owned records).
    public mutating func fail(_ record: PipelineRecord, component: String, _ message: String) {
        var r = record
        r.headers.append(RecordHeader(name: "sluice.error", value: Array(message.utf8)))
        r.headers.append(RecordHeader(name: "sluice.error.component", value: Array(component.utf8)))
        errors.append(r)
    }
}

public protocol Transform: Sendable {
    /// Processes a batch, in order; `context` says which lane it belongs to.
    func process(_ batch: RecordBatch, into output: inout TransformOutput, context: LaneContext) async throws
    /// Releases what the transform holds outside the process (plugin processes); called
    /// once when the pipeline stops.
    func close() async
}

extension Transform {
    public func close() async {}
}

public protocol Sink: Sendable {
    /// Writes a batch (it may still be buffered or not yet durable). Under exactly-once,
    /// `context.transaction` is the lane's open transaction.
    func write(_ batch: RecordBatch, context: LaneContext) async throws
    /// Returns once everything written so far is durable; the runner commits source offsets
    /// only after every sink downstream has flushed (Kafka Connect's put/flush).
    func flush() async throws
    /// Flushes and releases resources.
    func close() async throws
}

extension Sink {
    public func flush() async throws {}
}

/// A sink that can refuse records (an HTTP endpoint answering 4xx): refused records go to
/// `<sink>.errors` when that is wired, and stop the pipeline otherwise.
public protocol RejectingSink: Sink {
    /// Writes a batch and returns the records the destination refused.
    func writeReturningRefused(_ batch: RecordBatch, context: LaneContext) async throws -> RecordBatch
}

extension RejectingSink {
    public func write(_ batch: RecordBatch, context: LaneContext) async throws {
        let refused = try await writeReturningRefused(batch, context: context)
        if !refused.isEmpty { throw ComponentError(component: "sink", "\(refused.count) records were refused") }
    }
}

public protocol Source: Sendable {
    /// Emits batches until the source ends (bounded sources) or the task is cancelled.
    func run(_ emit: @escaping @Sendable (RecordBatch) async throws -> Void) async throws
    /// When true, `emit` returns only once every sink made the batch durable (an HTTP source
    /// answers its client after that).
    var acknowledgesDurably: Bool { get }
    /// How much of a bounded source has been read (0...1); nil when unknown or unbounded.
    var fractionDone: Double? { get }
}

extension Source {
    public var acknowledgesDurably: Bool { false }
    public var fractionDone: Double? { nil }
}

/// A failure inside a component, with the component named.
public struct ComponentError: Error, Sendable, CustomStringConvertible {
    public var component: String
    public var message: String
    public var description: String { "\(component): \(message)" }
    public init(component: String, _ message: String) {
        self.component = component
        self.message = message
    }
}

/// The source partition a record came from (`topic` is nil for sources that are not topics).
public struct SourceLane: Sendable, Hashable {
    public var topic: String?
    public var partition: Int32
    public init(topic: String?, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }
}

/// A transform that holds records across batches (`batch`). The runner asks it for what is
/// due after each poll, commits no source offset it still holds, and tells it which lanes
/// moved away (their held records are processed again by the new owner).
public protocol BufferingTransform: Transform {
    /// Hands over the groups that are complete or whose period ran out (every held record
    /// when `force`).
    func release(force: Bool, into output: inout TransformOutput)
    /// The lowest source offset still held, per lane.
    func heldOffsets() -> [SourceLane: Int64]
    /// Forgets what is held for lanes this worker no longer owns.
    func discard(_ lanes: Set<SourceLane>)
}

/// Writes record batches to topics, inside the lane's transaction when it has one. The
/// runtime implements it over each broker client's producer.
public protocol LaneOutput: Sendable {
    /// Hands the records in `builder` to `topic`'s `partition` (the builder is reset). In a
    /// transaction they are durable when it commits; outside one, after `flush`.
    func send(_ builder: inout RecordBatchBuilder, topic: String, partition: Int32) async throws
    /// Returns once everything sent outside a transaction is acknowledged and durable under
    /// the topic's flush policy.
    func flush() async throws
    /// Partitions of `topic` (cached by the caller).
    func partitionCount(_ topic: String) async throws -> Int32
}

/// The open transaction of the lane whose records are flowing, under `guarantee:
/// exactly-once`. The runner passes it in each batch's `LaneContext`; topic sinks write
/// through its output, and exactly-once sinks buffer what they are given until the runner
/// commits the lane.
public struct LaneTransaction: Sendable {
    public let lane: SourceLane
    /// The lane's transactional producer (transactional id `<pipeline>/<group>/<topic>/<partition>`).
    public let producer: any LaneOutput
    /// Records of the lane below this offset were written by an earlier committed
    /// transaction; topic sinks skip them when the lane resumes from a lower offset.
    public let committedBelow: Int64

    public init(lane: SourceLane, producer: any LaneOutput, committedBelow: Int64) {
        self.lane = lane
        self.producer = producer
        self.committedBelow = committedBelow
    }
}

/// A sink outside the broker that stores each lane's source offset together with its output
/// (SQLite: in the same database transaction), so it can be exactly-once on its own.
public protocol ExactlyOnceSink: Sink {
    /// The next source offset whose effects the sink already holds for `lane`, if it has any.
    func appliedOffset(_ lane: SourceLane) async throws -> Int64?
    /// Makes the lane's writes since its last commit durable together with `next`, atomically.
    func commit(_ lane: SourceLane, next: Int64) async throws
    /// Forgets the lane's writes since its last commit.
    func abort(_ lane: SourceLane) async
}
