// PipelineTestRunner: runs a pipeline's test cases, each on a throw-away embedded broker,
// with the sources replaced by the case's records and the sinks by captures.
import Foundation
import Logging
import SluiceBroker
import SluiceLog
import Synchronization

public struct PipelineTestResult: Sendable {
    public var name: String
    public var line: Int
    /// Empty when the case passed.
    public var failures: [String]
    public var passed: Bool { failures.isEmpty }
}

struct ListSource: Source {
    let records: [PipelineRecord]
    func run(_ emit: @escaping @Sendable (RecordBatch) async throws -> Void) async throws {
        if !records.isEmpty { try await emit(RecordBatch(records)) }
    }
}

final class CaptureSink: Sink {
    private let captured = Mutex<[PipelineRecord]>([])
    var records: [PipelineRecord] { captured.withLock { $0 } }
    func write(_ batch: RecordBatch, context: LaneContext) async throws {
        let records = batch.records
        captured.withLock { $0 += records }
    }
    func close() async throws {}
}

public enum PipelineTestRunner {
    public static func run(_ pipeline: Pipeline, cases: [PipelineTestCase], registry: ComponentRegistry? = nil) async -> [PipelineTestResult] {
        var results: [PipelineTestResult] = []
        for c in cases {
            results.append(await run(pipeline, c, registry: registry ?? pipeline.registry))
        }
        return results
    }

    static func run(_ pipeline: Pipeline, _ c: PipelineTestCase, registry: ComponentRegistry) async -> PipelineTestResult {
        let dir = NSTemporaryDirectory() + "sluice-test-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var result = PipelineTestResult(name: c.name, line: c.line, failures: [])
        do {
            var logger = Logger(label: "sluice.test")
            logger.logLevel = .error
            let broker = try await EmbeddedBroker.open(path: dir, logger: logger)
            var overrides: [String: BuiltComponent] = [:]
            var captures: [String: CaptureSink] = [:]
            let now = currentTimeMillis()
            for source in pipeline.sources {
                let topic = source.config.string("topic")
                let records = (c.inputs[source.id] ?? []).enumerated().map { i, input in
                    PipelineRecord(key: input.key.map { Array($0.utf8) }, value: Array(input.value.utf8), timestamp: now, topic: topic, partition: topic == nil ? -1 : 0, offset: Int64(i))
                }
                overrides[source.id] = .source(ListSource(records: records))
            }
            for sink in pipeline.sinks {
                let capture = CaptureSink()
                captures[sink.id] = capture
                overrides[sink.id] = .sink(capture)
            }
            let runner = PipelineRunner(pipeline: pipeline, broker: broker, registry: registry, overrides: overrides, logger: logger)
            do {
                try await runner.run()
            } catch {
                result.failures.append("the pipeline failed: \(error)")
            }
            await broker.close()
            for e in c.expectations {
                let got = captures[e.sink]?.records ?? []
                if let count = e.count, got.count != count {
                    result.failures.append("sink '\(e.sink)' got \(got.count) record\(got.count == 1 ? "" : "s"), expected \(count)")
                }
                if let values = e.values {
                    let actual = got.map { String(decoding: $0.value ?? [], as: UTF8.self) }
                    if actual.count != values.count || zip(actual, values).contains(where: { !sameValue($0, $1) }) {
                        result.failures.append("sink '\(e.sink)' got [\(actual.joined(separator: ", "))], expected [\(values.joined(separator: ", "))]")
                    }
                }
                if let condition = e.condition {
                    for r in got {
                        var record = r
                        if record.parsed == nil, let v = record.value { record.parsed = try? JSON.parse(v) }
                        if (try? condition.test(record.context)) != true {
                            result.failures.append("sink '\(e.sink)' got \(String(decoding: r.value ?? [], as: UTF8.self)), for which '\(condition.source)' is not true")
                            break
                        }
                    }
                }
            }
        } catch {
            result.failures.append("could not run: \(error)")
        }
        return result
    }

    /// JSON texts compare as JSON values; other texts as text.
    static func sameValue(_ a: String, _ b: String) -> Bool {
        if a == b { return true }
        guard let x = try? JSON.parse(Array(a.utf8)), let y = try? JSON.parse(Array(b.utf8)) else { return false }
        return x == y
    }
}
