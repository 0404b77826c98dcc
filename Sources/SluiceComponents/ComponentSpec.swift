// The one declaration of a component: its fields (name, kind, default, doc), from which the
// loader validates pipeline files, `sluice validate` words its messages, and
// docs/components.md is generated. Built-ins and plugins register the same way.
import SluiceLog

public enum ComponentKind: String, Sendable, CaseIterable {
    case source, transform, sink
    package var plural: String { rawValue + "s" }
}

public enum FieldKind: Sendable, Hashable {
    case string
    case int
    case bool
    /// "500ms", "10s", "5m"...: stored as milliseconds.
    case duration
    /// "64KiB", "10MB"...: stored as bytes.
    case size
    /// An expression over the record (`amount > 50`).
    case expression
    /// A string with `{{ expression }}` parts.
    case template
    case stringList
    /// name → expression (`set:`), in file order.
    case expressionMap
    /// One of these words.
    case choice([String])
    /// The name of a topic the pipeline declares.
    case topic
    /// name → string, in file order.
    case stringMap

    public var noun: String {
        switch self {
        case .string, .topic: "a string"
        case .int: "an integer"
        case .bool: "true or false"
        case .duration: "a duration such as 500ms, 10s or 5m"
        case .size: "a size such as 64KiB or 10MB"
        case .expression: "an expression"
        case .template: "a template string"
        case .stringList: "a list of strings"
        case .expressionMap: "a mapping of names to expressions"
        case .choice(let options): "one of " + options.joined(separator: ", ")
        case .stringMap: "a mapping of names to strings"
        }
    }
}

public struct FieldSpec: Sendable {
    public var name: String
    public var kind: FieldKind
    public var required: Bool
    /// Shown in docs and used when the field is absent (parsed like a value from the file).
    public var defaultValue: String?
    public var doc: String

    public init(_ name: String, _ kind: FieldKind, required: Bool = false, default defaultValue: String? = nil, _ doc: String) {
        self.name = name
        self.kind = kind
        self.required = required
        self.defaultValue = defaultValue
        self.doc = doc
    }
}

/// A field's value after validation.
public enum FieldValue: Sendable {
    case string(String)
    case int(Int64)
    case bool(Bool)
    case milliseconds(Int64)
    case bytes(Int64)
    case expression(CompiledExpression)
    case stringList([String])
    case expressionMap([(name: String, expression: CompiledExpression)])
    case stringMap([(name: String, value: String)])
}

/// A component's validated configuration, as its builder receives it.
public struct ComponentConfig: Sendable {
    public var id: String
    public var type: String
    public var kind: ComponentKind
    public var values: [String: FieldValue]
    public var pipelineName: String
    public var file: String
    public var line: Int

    public init(id: String, type: String, kind: ComponentKind, values: [String: FieldValue], pipelineName: String, file: String, line: Int) {
        self.id = id
        self.type = type
        self.kind = kind
        self.values = values
        self.pipelineName = pipelineName
        self.file = file
        self.line = line
    }

    public func string(_ name: String) -> String? { if case .string(let s)? = values[name] { return s }; return nil }
    public func int(_ name: String) -> Int64? { if case .int(let v)? = values[name] { return v }; return nil }
    public func bool(_ name: String) -> Bool? { if case .bool(let v)? = values[name] { return v }; return nil }
    public func milliseconds(_ name: String) -> Int64? { if case .milliseconds(let v)? = values[name] { return v }; return nil }
    public func bytes(_ name: String) -> Int64? { if case .bytes(let v)? = values[name] { return v }; return nil }
    public func expression(_ name: String) -> CompiledExpression? { if case .expression(let e)? = values[name] { return e }; return nil }
    public func stringList(_ name: String) -> [String]? { if case .stringList(let v)? = values[name] { return v }; return nil }
    public func stringMap(_ name: String) -> [(name: String, value: String)]? {
        if case .stringMap(let v)? = values[name] { return v }; return nil
    }
    public func expressionMap(_ name: String) -> [(name: String, expression: CompiledExpression)]? {
        if case .expressionMap(let v)? = values[name] { return v }; return nil
    }
}

/// What the runtime offers a component being built, besides its fields. Built-ins that
/// keep state in topics (dedupe's changelog) or write topics ask for it; plugins do not.
public protocol ComponentServices: Sendable {
    /// Creates `topic` when it does not exist (a component's own internal topic).
    func ensureTopic(_ topic: String, partitions: Int32, retentionMs: Int64) async throws
    /// Number of partitions of `topic`, or nil when there is no such topic.
    func partitionCount(_ topic: String) async -> Int32?
    /// A non-transactional output for topic sinks outside exactly-once.
    func output() async throws -> any LaneOutput
}

/// A pipeline's delivery guarantee.
public enum Guarantee: String, Sendable, CaseIterable {
    case atLeastOnce = "at-least-once"
    case exactlyOnce = "exactly-once"
}

/// Everything a builder may need besides its own fields.
public struct BuildContext: Sendable {
    public var services: (any ComponentServices)?
    public var guarantee: Guarantee
    public var pipelineName: String

    public init(services: (any ComponentServices)?, guarantee: Guarantee, pipelineName: String) {
        self.services = services
        self.guarantee = guarantee
        self.pipelineName = pipelineName
    }
}

/// Where a topic source starts when its group has no committed offset.
public enum StartPosition: Sendable { case earliest, latest }
/// Whether a topic source sees records of open and aborted transactions.
public enum ReadIsolation: Sendable { case readUncommitted, readCommitted }

public enum BuiltComponent: Sendable {
    case source(any Source)
    /// Topic sources are driven by the executor through a consumer group.
    case topicSource(TopicSourceSettings)
    /// Queue sources are driven by the executor as share-group members.
    case queueSource(QueueSourceSettings)
    case transform(any Transform)
    case sink(any Sink)
}

public struct TopicSourceSettings: Sendable {
    public var fetchBytes: Int
    public var topic: String
    public var group: String
    public var start: StartPosition
    public var isolation: ReadIsolation
    public var maxBatchRecords: Int
    /// Only records whose key matches this pattern (`*` any run) go downstream: the
    /// `channel` source's channels. Nil passes every record.
    public var keyPattern: [UInt8]?

    public init(fetchBytes: Int, topic: String, group: String, start: StartPosition, isolation: ReadIsolation, maxBatchRecords: Int, keyPattern: String? = nil) {
        self.keyPattern = keyPattern.map { Array($0.utf8) }
        self.fetchBytes = fetchBytes
        self.topic = topic
        self.group = group
        self.start = start
        self.isolation = isolation
        self.maxBatchRecords = maxBatchRecords
    }
}

/// A queue source: members of a share group, each record handed to one of them.
public struct QueueSourceSettings: Sendable {
    public var topic: String
    public var group: String
    public var lockMs: Int64
    public var maxDeliveries: Int
    public var deadLetter: String?
    public var start: StartPosition
    public var instances: Int
    public var maxBatchRecords: Int

    public init(topic: String, group: String, lockMs: Int64, maxDeliveries: Int, deadLetter: String?, start: StartPosition, instances: Int, maxBatchRecords: Int) {
        self.topic = topic
        self.group = group
        self.lockMs = lockMs
        self.maxDeliveries = maxDeliveries
        self.deadLetter = deadLetter
        self.start = start
        self.instances = instances
        self.maxBatchRecords = maxBatchRecords
    }
}

/// What a component does besides turning records into records, declared on its spec so the
/// runner needs no knowledge of particular types.
public struct ComponentCapabilities: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// A sink that can take part in exactly-once.
    public static let exactlyOnce = ComponentCapabilities(rawValue: 1)
    /// Under exactly-once, writes into the lane's Kafka transaction (a topic sink, a
    /// changelog): where there is such an effect, the group's committed offset marks how far
    /// the effects got.
    public static let transactionalEffects = ComponentCapabilities(rawValue: 2)
    /// Keeps state across records (shared by all lanes).
    public static let state = ComponentCapabilities(rawValue: 4)
    /// Holds records across polls (a `BufferingTransform`).
    public static let buffering = ComponentCapabilities(rawValue: 8)
}

public struct ComponentSpec: Sendable {
    public var kind: ComponentKind
    public var type: String
    public var summary: String
    public var fields: [FieldSpec]
    /// Outputs besides `out` and `errors` (a route's cases), from its configuration.
    public var extraOutputs: @Sendable (ComponentConfig) -> [String]
    public var capabilities: ComponentCapabilities
    /// For sinks: whether the sink can take part in exactly-once.
    public var exactlyOnceCapable: Bool { capabilities.contains(.exactlyOnce) }
    public var build: @Sendable (ComponentConfig, BuildContext) async throws -> BuiltComponent

    public init(kind: ComponentKind, type: String, summary: String, fields: [FieldSpec], exactlyOnceCapable: Bool = false, capabilities: ComponentCapabilities = [],
                extraOutputs: @escaping @Sendable (ComponentConfig) -> [String] = { _ in [] },
                build: @escaping @Sendable (ComponentConfig, BuildContext) async throws -> BuiltComponent) {
        self.kind = kind
        self.type = type
        self.summary = summary
        self.fields = fields
        self.capabilities = exactlyOnceCapable ? capabilities.union(.exactlyOnce) : capabilities
        self.extraOutputs = extraOutputs
        self.build = build
    }
}

