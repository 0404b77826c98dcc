// Test cases of a pipeline (`tests:` in the pipeline file, or `NAME.test.yaml` beside it):
// records given to sources, and what each sink must receive — exact values, a count, or an
// expression every record satisfies.
import Foundation
import Yams

public struct PipelineTestCase: Sendable {
    public struct Input: Sendable {
        public var key: String?
        public var value: String
    }

    public struct Expectation: Sendable {
        public var sink: String
        /// Exact values in order (JSON values compare as JSON, other text as text).
        public var values: [String]?
        public var count: Int?
        /// Every record must satisfy this.
        public var condition: CompiledExpression?
        public var line: Int
    }

    public var name: String
    public var line: Int
    public var inputs: [String: [Input]]
    public var expectations: [Expectation]
}

extension PipelineLoader {
    /// The test cases of `pipeline`: its own `tests:` and those of `<name>.test.yaml` beside
    /// its file. Problems are reported like any load error. Each file is read as `load`
    /// reads one (size limit, node budget, depth, `${VAR}` inside scalars), so a document
    /// whose aliases expand without bound is refused before any record is built from it.
    public func tests(for pipeline: Pipeline) throws -> [PipelineTestCase] {
        var cases: [PipelineTestCase] = []
        var diagnostics: [Diagnostic] = []
        let companion = pipeline.file.replacingOccurrences(of: ".yaml", with: ".test.yaml").replacingOccurrences(of: ".yml", with: ".test.yml")
        for file in [pipeline.file, companion] where FileManager.default.fileExists(atPath: file) {
            let text: String
            do {
                text = try Self.readText(file: file)
            } catch let e as PipelineLoadError {
                diagnostics += e.diagnostics
                continue
            }
            var context = LoadContext(file: file, registry: registry)
            guard let document = context.document(text, environment: environment) else {
                diagnostics += context.diagnostics
                continue
            }
            guard let root = document.root, case .mapping(let top) = root,
                  let testsNode = top.first(where: { $0.key.string == "tests" })?.value else {
                diagnostics += context.diagnostics
                continue
            }
            cases += context.testCases(testsNode, pipeline: pipeline)
            diagnostics += context.diagnostics
        }
        if diagnostics.contains(where: { $0.severity == .error }) { throw PipelineLoadError(diagnostics: diagnostics.sorted()) }
        return cases
    }
}

extension LoadContext {
    mutating func testCases(_ node: Node, pipeline: Pipeline) -> [PipelineTestCase] {
        guard case .sequence(let list) = node else { error(at: node, "tests must be a list of cases, each with name, inputs and expect"); return [] }
        var out: [PipelineTestCase] = []
        for item in list {
            guard case .mapping(let m) = item else { error(at: item, "a test case must be a mapping with name, inputs and expect"); continue }
            var fields: [String: Node] = [:]
            for (k, v) in m {
                guard let key = k.string else { continue }
                if !["name", "inputs", "expect"].contains(key) { error(at: k, "unknown test field '\(key)'", hint: Spelling.didYouMean(key, ["name", "inputs", "expect"])) }
                fields[key] = v
            }
            let name = fields["name"]?.string ?? "case at line \(item.mark?.line ?? 0)"
            var inputs: [String: [PipelineTestCase.Input]] = [:]
            if case .mapping(let sources)? = fields["inputs"] {
                for (k, v) in sources {
                    guard let id = k.string else { continue }
                    guard pipeline.node(id)?.kind == .source else {
                        error(at: k, "test '\(name)' gives records to '\(id)', which is not a source of pipeline '\(pipeline.name)'", hint: Spelling.didYouMean(id, pipeline.sources.map(\.id)))
                        continue
                    }
                    guard case .sequence(let records) = v else { error(at: v, "inputs of '\(id)' must be a list of records"); continue }
                    inputs[id] = records.compactMap { record(of: $0) }
                }
            } else {
                error(at: item, "test '\(name)' has no inputs")
            }
            var expectations: [PipelineTestCase.Expectation] = []
            if case .mapping(let sinks)? = fields["expect"] {
                for (k, v) in sinks {
                    guard let id = k.string else { continue }
                    guard pipeline.node(id)?.kind == .sink else {
                        error(at: k, "test '\(name)' expects records at '\(id)', which is not a sink of pipeline '\(pipeline.name)'", hint: Spelling.didYouMean(id, pipeline.sinks.map(\.id)))
                        continue
                    }
                    var e = PipelineTestCase.Expectation(sink: id, line: k.mark?.line ?? 1)
                    switch v {
                    case .sequence(let values):
                        e.values = values.compactMap { jsonText(of: $0) }
                    case .mapping(let spec):
                        for (sk, sv) in spec {
                            switch sk.string {
                            case "count": e.count = sv.string.flatMap(Int.init)
                            case "where":
                                if let text = sv.string {
                                    do { e.condition = try Expression.compile(text, at: expressionStart(sv)) } catch { expressionError(error) }
                                }
                            case "values":
                                if case .sequence(let values) = sv { e.values = values.compactMap { jsonText(of: $0) } }
                            default:
                                error(at: sk, "unknown expectation '\(sk.string ?? "")'", hint: "use values, count or where")
                            }
                        }
                    default:
                        error(at: v, "expectations of '\(id)' must be a list of values or { count, where, values }")
                    }
                    expectations.append(e)
                }
            } else {
                error(at: item, "test '\(name)' has no expect")
            }
            out.append(PipelineTestCase(name: name, line: item.mark?.line ?? 1, inputs: inputs, expectations: expectations))
        }
        return out
    }

    /// A record: a string value, a mapping written as JSON, or { key, value }.
    mutating func record(of node: Node) -> PipelineTestCase.Input? {
        if case .mapping(let m) = node, m.count <= 2, m.contains(where: { $0.key.string == "value" }) {
            let key = m.first { $0.key.string == "key" }?.value.string
            guard let v = m.first(where: { $0.key.string == "value" })?.value, let text = jsonText(of: v) else { return nil }
            return PipelineTestCase.Input(key: key, value: text)
        }
        return jsonText(of: node).map { PipelineTestCase.Input(key: nil, value: $0) }
    }

    /// Text of a scalar, or JSON of a mapping or list written in YAML.
    func jsonText(of node: Node) -> String? {
        switch node {
        case .scalar(let s): return s.string
        default: return String(decoding: JSON.serialize(yamlValue(node)), as: UTF8.self)
        }
    }

    func yamlValue(_ node: Node) -> Value {
        switch node {
        case .scalar(let s):
            if s.style == .plain {
                if let i = Int64(s.string) { return .int(i) }
                if let d = Double(s.string) { return .double(d) }
                if s.string == "true" { return .bool(true) }
                if s.string == "false" { return .bool(false) }
                if s.string == "null" || s.string == "~" { return .null }
            }
            return .string(s.string)
        case .mapping(let m):
            var o = ValueObject()
            for (k, v) in m { o[k.string ?? ""] = yamlValue(v) }
            return .object(o)
        case .sequence(let seq):
            return .array(seq.map { yamlValue($0) })
        default:
            return .null
        }
    }
}
