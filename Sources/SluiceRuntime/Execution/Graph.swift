// The wiring of a pipeline's components, and the walk of one batch through it. The graph
// knows its components and what their specs declare; it counts records itself and knows
// nothing of the runner or the lane drivers that feed it.
import Logging
import SluiceLog
import Synchronization

/// Records per component: in for sources, written for sinks.
final class RunCounters: Sendable {
    private let counts = Mutex<[String: Int]>([:])
    func add(_ id: String, _ n: Int) { counts.withLock { $0[id, default: 0] += n } }
    var snapshot: [String: Int] { counts.withLock { $0 } }
}

package struct Graph: Sendable {
    let pipeline: Pipeline
    let built: [String: BuiltComponent]
    let counters: RunCounters
    /// Outputs someone reads.
    let wired: Set<InputRef>
    /// Sinks that store their own source offsets (SQLite).
    package let exactlyOnceSinks: [any ExactlyOnceSink]
    /// True when, under exactly-once, part of the output is committed in the lanes' Kafka
    /// transactions (components declaring `.transactionalEffects`): the group's committed
    /// offset then marks how far those effects got.
    package let hasTransactionalEffects: Bool
    /// Transforms that hold records across batches, in topological order.
    package let buffering: [(id: String, transform: any BufferingTransform)]

    init(pipeline: Pipeline, built: [String: BuiltComponent], specs: [String: ComponentSpec], counters: RunCounters) {
        self.pipeline = pipeline
        self.built = built
        self.counters = counters
        wired = Set(pipeline.nodes.flatMap(\.inputs))
        exactlyOnceSinks = pipeline.sinks.compactMap { node in
            if case .sink(let s)? = built[node.id] { return s as? any ExactlyOnceSink }
            return nil
        }
        hasTransactionalEffects = pipeline.nodes.contains { specs[$0.id]?.capabilities.contains(.transactionalEffects) == true }
        buffering = pipeline.nodes.compactMap { node in
            guard specs[node.id]?.capabilities.contains(.buffering) == true else { return nil }
            if case .transform(let t)? = built[node.id], let b = t as? any BufferingTransform { return (node.id, b) }
            return nil
        }
    }

    package func process(_ batch: RecordBatch, from sourceId: String, context: LaneContext) async throws {
        counters.add(sourceId, batch.count)
        try await process(batch, at: InputRef(component: sourceId, output: "out"), context: context)
    }

    /// Sends what buffering transforms have ready (everything when `force`) downstream.
    /// Callers keep one lane's calls in order: this runs between polls, never beside a lane.
    package func release(force: Bool) async throws {
        for (id, t) in buffering {
            var out = TransformOutput()
            t.release(force: force, into: &out)
            if !out.out.isEmpty { try await process(out.out, at: InputRef(component: id, output: "out"), context: .none) }
        }
    }

    /// The lowest source offset held by any buffering transform, per lane.
    package func heldOffsets() -> [SourceLane: Int64] {
        var held: [SourceLane: Int64] = [:]
        for (_, t) in buffering {
            for (lane, o) in t.heldOffsets() { held[lane] = min(held[lane] ?? .max, o) }
        }
        return held
    }

    package func discard(_ lanes: Set<SourceLane>) {
        for (_, t) in buffering { t.discard(lanes) }
    }

    /// Walks `batch`, which appeared on output `ref`, through every node downstream of it.
    func process(_ batch: RecordBatch, at ref: InputRef, context: LaneContext) async throws {
        var buffers: [InputRef: RecordBatch] = [ref: batch]
        for node in pipeline.nodes where node.kind != .source {
            var input: RecordBatch
            if node.inputs.count == 1 {
                guard let b = buffers[node.inputs[0]] else { continue }
                input = b  // shares the stores and tables, no per-record copy
            } else {
                input = RecordBatch()
                for ref in node.inputs {
                    if let b = buffers[ref] { input.append(contentsOf: b) }
                }
            }
            if input.isEmpty { continue }
            switch built[node.id]! {
            case .transform(let t):
                var out = TransformOutput(for: input)
                do {
                    try await t.process(input, into: &out, context: context)
                } catch {
                    throw PipelineRunError(pipeline: pipeline.name, message: "transform '\(node.id)' failed: \(error)")
                }
                if !out.errors.isEmpty {
                    let errorsRef = InputRef(component: node.id, output: "errors")
                    guard wired.contains(errorsRef) else {
                        let why = out.errors.header(0, "sluice.error") ?? "error"
                        let lane = out.errors.lane(0), offset = out.errors.slots[0].offset
                        let at = lane.topic.map { "\($0)/\(lane.partition) offset \(offset)" } ?? "record \(offset)"
                        throw PipelineRunError(pipeline: pipeline.name, message: "transform '\(node.id)' failed on \(at): \(why); wire '\(node.id).errors' to a sink to keep such records", retryable: false)
                    }
                    buffers[errorsRef] = out.errors
                }
                buffers[InputRef(component: node.id, output: "out")] = out.out
                for (name, list) in out.named { buffers[InputRef(component: node.id, output: name)] = list }
            case .sink(let s):
                do {
                    if let rejecting = s as? any RejectingSink {
                        let refused = try await rejecting.writeReturningRefused(input, context: context)
                        if !refused.isEmpty {
                            let errorsRef = InputRef(component: node.id, output: "errors")
                            guard wired.contains(errorsRef) else {
                                let why = refused.header(0, "sluice.error") ?? "refused"
                                throw PipelineRunError(pipeline: pipeline.name, message: "sink '\(node.id)' refused \(refused.count) record\(refused.count == 1 ? "" : "s"): \(why); wire '\(node.id).errors' to a sink to keep such records", retryable: false)
                            }
                            buffers[errorsRef] = refused
                        }
                    } else {
                        try await s.write(input, context: context)
                    }
                } catch let e as PipelineRunError {
                    throw e
                } catch {
                    throw PipelineRunError(pipeline: pipeline.name, message: "sink '\(node.id)' failed: \(error)")
                }
                counters.add(node.id, input.count)
            default:
                break
            }
        }
    }

    package func flushSinks() async throws {
        for (id, component) in built {
            if case .sink(let s) = component {
                do { try await s.flush() } catch { throw PipelineRunError(pipeline: pipeline.name, message: "sink '\(id)' failed to flush: \(error)") }
            }
        }
    }

    func closeSinks(_ logger: Logger) async {
        for (id, component) in built {
            if case .sink(let s) = component {
                do { try await s.close() } catch { logger.error("closing sink '\(id)' failed: \(error)") }
            }
        }
    }

    /// Stops what transforms hold outside the process (plugin processes).
    func closeTransforms() async {
        for (_, component) in built {
            if case .transform(let t) = component { await t.close() }
        }
    }
}
