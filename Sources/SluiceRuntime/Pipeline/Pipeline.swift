// The validated form of a pipeline file.
import SluiceBroker


public struct TopicDeclaration: Sendable, Hashable {
    public var name: String
    public var partitions: Int32
    public var flush: String
    public var retentionMs: Int64

    public init(name: String, partitions: Int32, flush: String = "interval", retentionMs: Int64 = 7 * 86_400_000) {
        self.name = name
        self.partitions = partitions
        self.flush = flush
        self.retentionMs = retentionMs
    }
}

/// A wire from one component's output into another: `parse`, `parse.errors`, `route.big`.
public struct InputRef: Sendable, Hashable, CustomStringConvertible {
    public var component: String
    public var output: String
    public var description: String { output == "out" ? component : "\(component).\(output)" }
}

public struct ComponentNode: Sendable {
    public var id: String
    public var kind: ComponentKind
    public var type: String
    public var config: ComponentConfig
    public var inputs: [InputRef]
    /// Where each of `inputs` is written in the file (the list element), for diagnostics.
    public var inputPositions: [SourcePosition]
    public var line: Int
    public var column: Int
}

public struct Pipeline: Sendable {
    public var name: String
    public var file: String
    /// "embedded" or "kafka://host:port[,host:port]".
    public var broker: String
    /// Client settings for a Kafka broker (`broker_options:`): any librdkafka property, e.g.
    /// security.protocol, sasl.mechanism, sasl.username.
    public var brokerOptions: [String: String] = [:]
    public var guarantee: Guarantee
    public var topics: [TopicDeclaration]
    /// Sources first, then transforms in dependency order, then sinks.
    public var nodes: [ComponentNode]
    /// The registry the file was validated against; the runner builds from the same one, so
    /// a type that validated is a type that runs.
    public var registry: ComponentRegistry

    public func node(_ id: String) -> ComponentNode? { nodes.first { $0.id == id } }
    public var sources: [ComponentNode] { nodes.filter { $0.kind == .source } }
    public var sinks: [ComponentNode] { nodes.filter { $0.kind == .sink } }
}
