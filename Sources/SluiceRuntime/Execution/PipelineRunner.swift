// PipelineRunner: runs one pipeline. It creates the declared topics, builds the components,
// wires them into a graph and starts one driver per source: topic sources run under the lane
// driver of the pipeline's guarantee (LaneDrivers.swift), other sources feed their batches
// through the same graph. Cancelling the run stops fetching, finishes the batch, commits and
// leaves the group.
import Foundation
import Logging
import SluiceBroker
import SluiceLog
import Synchronization

public struct RunOptions: Sendable {
    /// Stop topic sources once they have caught up with the end of their partitions.
    public var drain = false
    public init(drain: Bool = false) {
        self.drain = drain
    }
}

/// A component failed in a way that stops the pipeline (or, under a queue source, fails the
/// records for this delivery).
public struct PipelineRunError: Error, Sendable, CustomStringConvertible {
    public var pipeline: String
    public var message: String
    /// False when the records themselves are at fault and another delivery would fail the
    /// same way: a transform's per-record error or a sink's refusal with no `.errors` output
    /// wired. True for failures of the component or what it talks to (a sink that cannot be
    /// reached, a plugin that died), which may pass.
    public var retryable: Bool
    public var description: String { "pipeline '\(pipeline)': \(message)" }
    public init(pipeline: String, message: String, retryable: Bool = true) {
        self.pipeline = pipeline
        self.message = message
        self.retryable = retryable
    }
}

public final class PipelineRunner: Sendable {
    public let pipeline: Pipeline
    let client: any BrokerClient
    let registry: ComponentRegistry
    let options: RunOptions
    let logger: Logger
    private let counters = RunCounters()

    /// Components to use instead of building them from the registry (`sluice test` swaps
    /// sources and sinks for in-memory ones).
    let overrides: [String: BuiltComponent]

    public convenience init(pipeline: Pipeline, broker: EmbeddedBroker, registry: ComponentRegistry? = nil, options: RunOptions = RunOptions(), overrides: [String: BuiltComponent] = [:], logger: Logger = Logger(label: "sluice.run")) {
        self.init(pipeline: pipeline, client: EmbeddedBrokerClient(broker), registry: registry, options: options, overrides: overrides, logger: logger)
    }

    public init(pipeline: Pipeline, client: any BrokerClient, registry: ComponentRegistry? = nil, options: RunOptions = RunOptions(), overrides: [String: BuiltComponent] = [:], logger: Logger = Logger(label: "sluice.run")) {
        self.overrides = overrides
        self.pipeline = pipeline
        self.client = client
        self.registry = registry ?? pipeline.registry
        self.options = options
        self.logger = logger
    }

    private let plainSources = Mutex<[any Source]>([])

    /// How far the pipeline is through its input when every source is bounded and knows
    /// (generators with a count, files not followed); nil otherwise.
    public var fractionDone: Double? {
        let sources = plainSources.withLock { $0 }
        guard !sources.isEmpty, sources.count == pipeline.sources.count else { return nil }
        var least = 1.0
        for s in sources {
            guard let f = s.fractionDone else { return nil }
            least = min(least, f)
        }
        return least
    }

    /// Records per component so far: in for sources, written for sinks.
    public var counts: [String: Int] { counters.snapshot }

    /// Runs until every source has ended (bounded sources, or drained topic sources) or the
    /// task is cancelled; then closes the sinks.
    public func run() async throws {
        do { try await client.createTopics(pipeline.topics) } catch let e as BrokerError { throw e } catch {
            throw PipelineRunError(pipeline: pipeline.name, message: "creating its topics on broker \(client.name): \(error)")
        }
        let graph = try await buildGraph()
        plainSources.withLock { list in
            list = pipeline.sources.compactMap { if case .source(let s)? = graph.built[$0.id] { return s }; return nil }
        }
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for node in pipeline.sources {
                    switch graph.built[node.id]! {
                    case .topicSource(let settings):
                        let source = TopicSourceRun(id: node.id, settings: settings, graph: graph, options: options, logger: logger, pipelineName: pipeline.name, guarantee: pipeline.guarantee)
                        if pipeline.guarantee == .exactlyOnce, let b = graph.buffering.first {
                            throw PipelineRunError(pipeline: pipeline.name, message: "transform '\(b.id)' holds records across polls, which guarantee: exactly-once does not support yet")
                        }
                        let client = self.client
                        group.addTask { try await client.runTopicSource(source) }
                    case .queueSource(let settings):
                        let source = QueueSourceRun(id: node.id, settings: settings, graph: graph, options: options, logger: logger, pipelineName: pipeline.name)
                        let client = self.client
                        group.addTask { try await client.runQueueSource(source) }
                    case .source(let source):
                        group.addTask { try await Self.drive(source, id: node.id, graph: graph) }
                    default:
                        break
                    }
                }
                try await group.waitForAll()
            }
        } catch {
            await graph.closeSinks(logger)
            await graph.closeTransforms()
            throw error
        }
        await graph.closeSinks(logger)
        await graph.closeTransforms()
    }

    private func buildGraph() async throws -> Graph {
        let context = BuildContext(services: client.services, guarantee: pipeline.guarantee, pipelineName: pipeline.name)
        var built: [String: BuiltComponent] = [:]
        var specs: [String: ComponentSpec] = [:]
        for node in pipeline.nodes {
            let spec = registry.spec(node.kind, node.type)
            specs[node.id] = spec
            if let replacement = overrides[node.id] {
                built[node.id] = replacement
                continue
            }
            guard let spec else { throw PipelineRunError(pipeline: pipeline.name, message: "unknown \(node.kind.rawValue) type '\(node.type)'") }
            built[node.id] = try await spec.build(node.config, context)
        }
        return Graph(pipeline: pipeline, built: built, specs: specs, counters: counters)
    }

    /// A source that is not a topic: its batches go through the graph as they come; what
    /// buffering transforms hold is released after each, and everything at the end.
    private static func drive(_ source: any Source, id: String, graph: Graph) async throws {
        let durable = source.acknowledgesDurably
        try await source.run { batch in
            try await graph.process(batch, from: id, context: .none)
            try await graph.release(force: false)
            if durable { try await graph.flushSinks() }
        }
        try await graph.release(force: true)
        try await graph.flushSinks()
    }
}
