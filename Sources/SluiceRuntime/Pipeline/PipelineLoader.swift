// PipelineLoader: reads a pipeline file with Yams.compose so every node keeps its position,
// checks it against the component registry, and collects every problem as a Diagnostic.
// Reading the file and its YAML (limits, `${VAR}`) is PipelineDocument.swift.
import Foundation
import SluiceBroker
import Yams

public struct PipelineLoader: Sendable {
    public let registry: ComponentRegistry
    public let environment: [String: String]

    static let topLevelKeys = ["name", "description", "broker", "broker_options", "guarantee", "topics", "sources", "transforms", "sinks", "tests"]
    static let topicKeys = ["partitions", "flush", "retention"]

    public init(registry: ComponentRegistry = .builtIns(), environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.registry = registry
        self.environment = environment
    }

    /// Loads and validates one file; throws `PipelineLoadError` with every problem. A file
    /// larger than `maxFileBytes` is refused before it is read whole.
    public func load(file path: String) throws -> Pipeline {
        try load(text: try Self.readText(file: path), file: path)
    }

    /// Loads and validates the text of a file. Refused before anything else: text larger
    /// than `maxFileBytes`, a document that expands (aliases counted each time they are used)
    /// to more than `maxYAMLNodes` nodes or nests more than `maxYAMLDepth` levels. `${VAR}`
    /// and `${VAR:-default}` are substituted inside the parsed scalars, so a value is always
    /// text (never YAML), and a template takes a value's braces as text.
    public func load(text raw: String, file: String) throws -> Pipeline {
        var context = LoadContext(file: file, registry: registry)
        guard let document = context.document(raw, environment: environment) else {
            throw PipelineLoadError(diagnostics: context.sorted)
        }
        guard let root = document.root, case .mapping(let top) = root else {
            context.error(1, 1, "a pipeline file must be a mapping with name, sources, transforms and sinks")
            throw PipelineLoadError(diagnostics: context.sorted)
        }
        let pipeline = context.pipeline(top)
        // A missing variable explains everything else wrong on its line.
        let missingLines = document.missingLines
        context.diagnostics.removeAll { missingLines.contains($0.line) && !$0.message.hasPrefix("environment variable") }
        if context.hasErrors { throw PipelineLoadError(diagnostics: context.sorted) }
        return pipeline!
    }
}

/// Mutable state of one load: the diagnostics so far.
struct LoadContext {
    let file: String
    let registry: ComponentRegistry
    var diagnostics: [Diagnostic] = []
    var mentioned: Set<String> = []
    var hasSinks = true
    /// Where `${VAR}` values are in each scalar that holds one (by the scalar's position):
    /// UTF-8 ranges of its text, which a template takes as text.
    var substitutedSpans: [SourcePosition: [Range<Int>]] = [:]

    var hasErrors: Bool { diagnostics.contains { $0.severity == .error } }
    var sorted: [Diagnostic] { diagnostics.sorted() }

    mutating func error(_ line: Int, _ column: Int, _ message: String, hint: String? = nil) {
        diagnostics.append(Diagnostic(file: file, line: line, column: column, message: message, hint: hint))
    }

    mutating func error(at node: Node, _ message: String, hint: String? = nil) {
        let m = node.mark
        error(m?.line ?? 1, m?.column ?? 1, message, hint: hint)
    }

    mutating func warning(at node: Node, _ message: String) {
        let m = node.mark
        diagnostics.append(Diagnostic(file: file, line: m?.line ?? 1, column: m?.column ?? 1, severity: .warning, message: message))
    }

    mutating func yamlError(_ e: YamlError) {
        switch e {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _), .composer(_, let problem, let mark, _):
            error(mark.line, mark.column, "invalid YAML: \(problem)")
        case .duplicatedKeysInMapping(let duplicates, _):
            error(1, 1, "duplicate keys: \(duplicates.joined(separator: ", "))")
        default:
            error(1, 1, "invalid YAML: \(e)")
        }
    }

    // MARK: Pipeline

    mutating func pipeline(_ top: Node.Mapping) -> Pipeline? {
        var seen: [String: Node] = [:]
        var aliases: [String: Node] = [:]
        for (k, v) in top {
            guard let key = k.string else { error(at: k, "keys must be strings"); continue }
            if seen[key] != nil { error(at: k, "'\(key)' appears twice") }
            seen[key] = v
            if !PipelineLoader.topLevelKeys.contains(key) {
                let guess = Spelling.suggestion(for: key, in: PipelineLoader.topLevelKeys)
                error(at: k, "unknown top-level key '\(key)'", hint: guess.map { "did you mean '\($0)'?" } ?? "expected one of \(PipelineLoader.topLevelKeys.joined(separator: ", "))")
                // Read a misspelled section as the one meant, so one typo gives one error.
                if let guess, ["topics", "sources", "transforms", "sinks"].contains(guess) { aliases[guess] = v }
            }
        }
        for (key, v) in aliases where seen[key] == nil { seen[key] = v }
        var name = "pipeline"
        if let n = seen["name"] {
            if let s = scalarString(n), !s.isEmpty, s.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) { name = s } else {
                error(at: n, "name must be letters, digits, '-', '_' or '.'")
            }
        } else {
            error(1, 1, "the pipeline has no 'name'", hint: "add name: my-pipeline")
        }
        var broker = "embedded"
        if let b = seen["broker"] {
            if let s = scalarString(b), s == "embedded" || PipelineLoader.isKafkaURL(s) { broker = s } else {
                error(at: b, "broker must be 'embedded' or kafka://host:port[,host:port]")
            }
        }
        var brokerOptions: [String: String] = [:]
        if let o = seen["broker_options"] {
            if case .mapping(let m) = o {
                for (k, v) in m {
                    if let name = scalarString(k), let value = scalarString(v) { brokerOptions[name] = value } else {
                        error(at: v, "broker_options maps librdkafka property names to values, e.g. security.protocol: SASL_SSL")
                    }
                }
            } else {
                error(at: o, "broker_options must map librdkafka property names to values")
            }
        }
        var guarantee = Guarantee.atLeastOnce
        if let g = seen["guarantee"] {
            if let s = scalarString(g), let value = Guarantee(rawValue: s) { guarantee = value } else {
                error(at: g, "guarantee must be at-least-once or exactly-once", hint: scalarString(g).flatMap { Spelling.didYouMean($0, Guarantee.allCases.map(\.rawValue)) })
            }
        }
        let topics = seen["topics"].map { declaredTopics($0) } ?? []
        var raw: [(ComponentKind, String, Node, Node.Mapping)] = []
        for kind in ComponentKind.allCases {
            guard let section = seen[kind.plural] else { continue }
            guard case .mapping(let m) = section else { error(at: section, "'\(kind.plural)' must map component names to their settings"); continue }
            for (k, v) in m {
                guard let id = k.string, !id.isEmpty, id.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) else {
                    error(at: k, "component names use letters, digits, '_' and '-'")
                    continue
                }
                if raw.contains(where: { $0.1 == id }) { error(at: k, "component name '\(id)' is used twice"); continue }
                guard case .mapping(let body) = v else { error(at: v, "\(kind.rawValue) '\(id)' must be a mapping with a 'type'"); continue }
                raw.append((kind, id, k, body))
            }
        }
        if !raw.contains(where: { $0.0 == .source }) { error(1, 1, "the pipeline has no sources") }
        if !raw.contains(where: { $0.0 == .sink }) { error(1, 1, "the pipeline has no sinks") }
        // Every component some input names, even in components that fail to load, so that
        // one mistake does not also report its source as unused.
        mentioned = Set(raw.flatMap { entry -> [String] in
            guard let inputs = entry.3.first(where: { $0.key.string == "inputs" })?.value else { return [] }
            switch inputs {
            case .sequence(let seq): return seq.compactMap { $0.string.map { String($0.split(separator: ".").first ?? "") } }
            case .scalar(let one): return [String(one.string.split(separator: ".").first ?? "")]
            default: return []
            }
        })
        hasSinks = raw.contains { $0.0 == .sink }

        var nodes: [ComponentNode] = []
        var outputs: [String: Set<String>] = [:]
        for (kind, id, keyNode, body) in raw {
            guard let node = component(kind, id, keyNode, body, topics: topics, pipelineName: name, guarantee: guarantee) else { continue }
            nodes.append(node.0)
            outputs[id] = node.1
        }
        let ids = raw.map(\.1)
        for i in nodes.indices {
            var kept: [(InputRef, SourcePosition)] = []
            for (ref, at) in zip(nodes[i].inputs, nodes[i].inputPositions) {
                guard let refOutputs = outputs[ref.component] else {
                    if !ids.contains(ref.component) {
                        let guess = Spelling.suggestion(for: ref.component, in: ids)
                        // The component a typo meant is read, as far as "unused" goes: one
                        // mistake, one error.
                        if let guess { mentioned.insert(guess) }
                        error(at.line, at.column, "\(nodes[i].kind.rawValue) '\(nodes[i].id)' reads from '\(ref)', which is not a component of this pipeline", hint: guess.map { "did you mean '\($0)'?" })
                    }
                    continue
                }
                if !refOutputs.contains(ref.output) {
                    error(at.line, at.column, "'\(ref.component)' has no output '\(ref.output)'", hint: "its outputs are " + refOutputs.sorted().joined(separator: ", "))
                    continue
                }
                if let source = nodes.first(where: { $0.id == ref.component }), source.kind == .sink, ref.output != "errors" {
                    error(at.line, at.column, "'\(ref.component)' is a sink; a sink's only output is '\(ref.component).errors'")
                    continue
                }
                kept.append((ref, at))
            }
            nodes[i].inputs = kept.map(\.0)
            nodes[i].inputPositions = kept.map(\.1)
        }
        let ordered = checkGraph(nodes)
        var pipeline = Pipeline(name: name, file: file, broker: broker, guarantee: guarantee, topics: topics, nodes: ordered, registry: registry)
        pipeline.brokerOptions = brokerOptions
        return pipeline
    }

    // MARK: Topics

    mutating func declaredTopics(_ node: Node) -> [TopicDeclaration] {
        guard case .mapping(let m) = node else { error(at: node, "'topics' must map topic names to their settings"); return [] }
        var out: [TopicDeclaration] = []
        for (k, v) in m {
            guard let name = k.string else { continue }
            if let problem = TopicName.problem(with: name) { error(at: k, "invalid topic name '\(name)': \(problem)"); continue }
            var decl = TopicDeclaration(name: name, partitions: 1, flush: "interval", retentionMs: 7 * 86_400_000)
            if case .mapping(let settings) = v {
                for (sk, sv) in settings {
                    guard let key = sk.string else { continue }
                    switch key {
                    case "partitions":
                        if let n = scalarString(sv).flatMap(Int32.init), n >= 1, n <= 10_000 { decl.partitions = n } else { error(at: sv, "partitions of topic '\(name)' must be an integer from 1 to 10000") }
                    case "flush":
                        if let f = scalarString(sv), ["always", "interval", "never"].contains(f) { decl.flush = f } else { error(at: sv, "flush of topic '\(name)' must be always, interval or never") }
                    case "retention":
                        if let ms = scalarString(sv).flatMap(Durations.milliseconds) { decl.retentionMs = ms } else { error(at: sv, "retention of topic '\(name)' must be a duration such as 7d or forever") }
                    default:
                        error(at: sk, "unknown topic setting '\(key)'", hint: Spelling.didYouMean(key, PipelineLoader.topicKeys) ?? "expected one of \(PipelineLoader.topicKeys.joined(separator: ", "))")
                    }
                }
            } else if !(v.string?.isEmpty ?? true) || v.scalar == nil {
                error(at: v, "settings of topic '\(name)' must be a mapping such as { partitions: 3 }")
            }
            out.append(decl)
        }
        return out
    }

    // MARK: Components

    mutating func component(_ kind: ComponentKind, _ id: String, _ keyNode: Node, _ body: Node.Mapping, topics: [TopicDeclaration], pipelineName: String, guarantee: Guarantee) -> (ComponentNode, Set<String>)? {
        var fields: [String: (Node, Node)] = [:]
        for (k, v) in body {
            guard let key = k.string else { continue }
            fields[key] = (k, v)
        }
        guard let (typeKey, typeNode) = fields["type"] else {
            error(at: keyNode, "\(kind.rawValue) '\(id)' has no 'type'", hint: "one of " + registry.types(kind).joined(separator: ", "))
            return nil
        }
        _ = typeKey
        guard let type = scalarString(typeNode) else { error(at: typeNode, "type must be a string"); return nil }
        guard let spec = registry.spec(kind, type) else {
            var hint: String?
            if let other = ComponentKind.allCases.first(where: { $0 != kind && registry.spec($0, type) != nil }) {
                hint = "'\(type)' is a \(other.rawValue); declare it under \(other.plural):"
            } else {
                hint = Spelling.didYouMean(type, registry.types(kind))
            }
            error(at: typeNode, "unknown \(kind.rawValue) type '\(type)'", hint: hint ?? "known \(kind.plural): " + registry.types(kind).joined(separator: ", "))
            return nil
        }
        var values: [String: FieldValue] = [:]
        var inputs: [(InputRef, SourcePosition)] = []
        let allowed = spec.fields.map(\.name) + ["type", "inputs"] + (kind == .sink ? ["delivery"] : [])
        var delivery: String?
        var suggested = Set<String>()
        for (key, (k, v)) in fields.sorted(by: { ($0.value.0.mark?.line ?? 0) < ($1.value.0.mark?.line ?? 0) }) {
            if key == "type" { continue }
            if key == "inputs" {
                if kind == .source { error(at: k, "source '\(id)' cannot have inputs; sources read from outside the pipeline"); continue }
                inputs = parseInputs(v)
                continue
            }
            if key == "delivery" && kind == .sink {
                if let d = scalarString(v), d == "at-least-once" || d == "exactly-once" { delivery = d } else { error(at: v, "delivery must be at-least-once or exactly-once") }
                continue
            }
            guard let field = spec.fields.first(where: { $0.name == key }) else {
                let guess = Spelling.suggestion(for: key, in: allowed)
                if let guess { suggested.insert(guess) }
                error(at: k, "unknown field '\(key)' for \(kind.rawValue) type '\(type)'", hint: guess.map { "did you mean '\($0)'?" } ?? "its fields are " + spec.fields.map(\.name).joined(separator: ", "))
                continue
            }
            if let value = fieldValue(field, v, component: "\(kind.rawValue) '\(id)' (\(type))", topics: topics) { values[key] = value }
        }
        for field in spec.fields where values[field.name] == nil && fields[field.name] == nil {
            if field.required && !suggested.contains(field.name) {
                error(at: keyNode, "\(kind.rawValue) '\(id)' (\(type)) is missing the required field '\(field.name)'", hint: field.doc)
            } else if let def = field.defaultValue, let value = defaultValue(field, def) {
                values[field.name] = value
            }
        }
        if kind != .source && inputs.isEmpty && fields["inputs"] == nil && !suggested.contains("inputs") {
            error(at: keyNode, "\(kind.rawValue) '\(id)' has no inputs", hint: "add inputs: [<component>]")
        }
        if kind == .source && type == "queue" && guarantee == .exactlyOnce {
            error(at: keyNode, "source '\(id)' is a queue, which cannot be exactly-once: records are handed out in no order and one that fails, or whose worker dies, is delivered again", hint: "use guarantee: at-least-once, with a dead_letter topic for records that keep failing, or a topic source for exactly-once")
        }
        if kind == .sink && guarantee == .exactlyOnce && !spec.exactlyOnceCapable && delivery != "at-least-once" {
            error(at: keyNode, "sink '\(id)' (\(type)) cannot be exactly-once, but the pipeline's guarantee is exactly-once", hint: "set delivery: at-least-once on this sink to accept duplicates after a crash")
        }
        let config = ComponentConfig(id: id, type: type, kind: kind, values: values, pipelineName: pipelineName, file: file, line: keyNode.mark?.line ?? 1)
        var outs: Set<String> = ["out", "errors"]
        for o in spec.extraOutputs(config) { outs.insert(o) }
        let node = ComponentNode(
            id: id, kind: kind, type: type, config: config, inputs: inputs.map(\.0), inputPositions: inputs.map(\.1),
            line: keyNode.mark?.line ?? 1, column: keyNode.mark?.column ?? 1)
        return (node, outs)
    }

    /// The input list's references, each with the position of its own list element.
    mutating func parseInputs(_ v: Node) -> [(InputRef, SourcePosition)] {
        var items: [Node] = []
        switch v {
        case .sequence(let s): items = Array(s)
        case .scalar: items = [v]
        default:
            error(at: v, "inputs must be a list of component names")
            return []
        }
        return items.compactMap { item in
            guard let s = scalarString(item), !s.isEmpty else { error(at: item, "an input must be a component name"); return nil }
            let parts = s.split(separator: ".", maxSplits: 1).map(String.init)
            let at = SourcePosition(line: item.mark?.line ?? 1, column: item.mark?.column ?? 1)
            return (InputRef(component: parts[0], output: parts.count > 1 ? parts[1] : "out"), at)
        }
    }

    /// The position where an expression's text starts inside a scalar.
    func expressionStart(_ node: Node) -> SourcePosition {
        let line = node.mark?.line ?? 1
        var column = node.mark?.column ?? 1
        if let style = node.scalar?.style, style == .singleQuoted || style == .doubleQuoted { column += 1 }
        return SourcePosition(line: line, column: column)
    }

    mutating func fieldValue(_ field: FieldSpec, _ v: Node, component: String, topics: [TopicDeclaration]) -> FieldValue? {
        let what = "field '\(field.name)' of \(component)"
        switch field.kind {
        case .expressionMap:
            guard case .mapping(let m) = v else { error(at: v, "\(what) must be \(field.kind.noun)"); return nil }
            var out: [(name: String, expression: CompiledExpression)] = []
            for (k, e) in m {
                guard let name = k.string, let text = scalarString(e) else { error(at: e, "\(what): each entry must be name: expression"); continue }
                do { out.append((name, try Expression.compile(text, at: expressionStart(e)))) } catch { self.expressionError(error) }
            }
            return .expressionMap(out)
        case .stringMap:
            guard case .mapping(let m) = v else { error(at: v, "\(what) must be \(field.kind.noun)"); return nil }
            var out: [(name: String, value: String)] = []
            for (k, e) in m {
                guard let name = k.string, let text = scalarString(e) else { error(at: e, "\(what): each entry must be name: string"); continue }
                out.append((name, text))
            }
            return .stringMap(out)
        case .stringList:
            if case .sequence(let s) = v {
                let items = s.compactMap { scalarString($0) }
                guard items.count == s.count else { error(at: v, "\(what) must be a list of strings"); return nil }
                return .stringList(items)
            }
            if let one = scalarString(v) { return .stringList([one]) }
            error(at: v, "\(what) must be a list of strings")
            return nil
        default:
            break
        }
        guard let text = scalarString(v) else {
            error(at: v, "\(what) must be \(field.kind.noun), not a \(v.mapping != nil ? "mapping" : "list")")
            return nil
        }
        switch field.kind {
        case .string: return .string(text)
        case .int:
            guard let n = Int64(text) else { error(at: v, "\(what) must be an integer, got '\(text)'"); return nil }
            return .int(n)
        case .bool:
            guard let b = ["true": true, "false": false, "yes": true, "no": false][text.lowercased()] else { error(at: v, "\(what) must be true or false, got '\(text)'"); return nil }
            return .bool(b)
        case .duration:
            guard let ms = Durations.milliseconds(text) else { error(at: v, "\(what) must be a duration such as 500ms, 10s or 5m, got '\(text)'"); return nil }
            return .milliseconds(ms)
        case .size:
            guard let b = Durations.bytes(text) else { error(at: v, "\(what) must be a size such as 64KiB or 10MB, got '\(text)'"); return nil }
            return .bytes(b)
        case .choice(let options):
            guard options.contains(text) else { error(at: v, "\(what) must be one of \(options.joined(separator: ", ")), got '\(text)'", hint: Spelling.didYouMean(text, options)); return nil }
            return .string(text)
        case .topic:
            if !topics.contains(where: { $0.name == text }) {
                error(at: v, "topic '\(text)' is not declared under topics:", hint: Spelling.didYouMean(text, topics.map(\.name)) ?? "declare it: topics: { \(text): { partitions: 1 } }")
                return nil
            }
            return .string(text)
        case .expression:
            do { return .expression(try Expression.compile(text, at: expressionStart(v))) } catch { expressionError(error); return nil }
        case .template:
            // A `${VAR}` value in a template is text: its braces never open or close `{{ }}`.
            do {
                return .expression(try Expression.compileTemplate(text, literal: literalSpans(of: v), at: expressionStart(v)))
            } catch {
                expressionError(error)
                return nil
            }
        case .stringList, .expressionMap, .stringMap:
            return nil
        }
    }

    mutating func expressionError(_ e: ExpressionError) {
        error(e.position.line, e.position.column, e.message)
    }

    func defaultValue(_ field: FieldSpec, _ text: String) -> FieldValue? {
        switch field.kind {
        case .string, .choice, .topic: return .string(text)
        case .int: return Int64(text).map { .int($0) }
        case .bool: return .bool(text == "true")
        case .duration: return Durations.milliseconds(text).map { .milliseconds($0) }
        case .size: return Durations.bytes(text).map { .bytes($0) }
        case .expression: return (try? Expression.compile(text)).map { .expression($0) }
        case .template: return (try? Expression.compileTemplate(text, at: SourcePosition(line: 1, column: 1))).map { .expression($0) }
        case .stringList: return .stringList(text.isEmpty ? [] : [text])
        case .expressionMap: return .expressionMap([])
        case .stringMap: return .stringMap([])
        }
    }

    // MARK: Graph

    /// Reports cycles and unused sources; returns sources, transforms in dependency order, sinks.
    mutating func checkGraph(_ nodes: [ComponentNode]) -> [ComponentNode] {
        let byId = Dictionary(uniqueKeysWithValues: nodes.map { ($0.id, $0) })
        var state: [String: Int] = [:]  // 1 visiting, 2 done
        var order: [ComponentNode] = []
        var reported = Set<String>()
        // `at` is where the input that led here is written: a cycle is reported at the element
        // that closes it.
        func visit(_ id: String, _ path: [String], at: SourcePosition?) {
            guard let node = byId[id] else { return }
            if state[id] == 2 { return }
            if state[id] == 1 {
                let cycle = Array((path.drop { $0 != id } + [id]).reversed())
                if !reported.contains(id) {
                    reported.formUnion(cycle)
                    let where_ = at ?? SourcePosition(line: node.line, column: node.column)
                    error(where_.line, where_.column, "the pipeline has a cycle: " + cycle.joined(separator: " -> "), hint: "a component cannot read, directly or not, from its own output")
                }
                return
            }
            state[id] = 1
            for (ref, position) in zip(node.inputs, node.inputPositions) { visit(ref.component, path + [id], at: position) }
            state[id] = 2
            order.append(node)
        }
        for n in nodes { visit(n.id, [], at: nil) }
        let used = Set(nodes.flatMap { $0.inputs.map(\.component) }).union(mentioned)
        for n in nodes where n.kind == .source && !used.contains(n.id) && hasSinks {
            error(n.line, n.column, "source '\(n.id)' is not read by any transform or sink", hint: "wire it: inputs: [\(n.id)]")
        }
        for n in nodes where n.kind == .transform && !used.contains(n.id) {
            diagnostics.append(Diagnostic(file: file, line: n.line, column: n.column, severity: .warning, message: "the output of transform '\(n.id)' is not used"))
        }
        return order.filter { $0.kind == .source } + order.filter { $0.kind == .transform } + order.filter { $0.kind == .sink }
    }

    func scalarString(_ n: Node) -> String? {
        guard case .scalar(let s) = n else { return nil }
        return s.string
    }
}

extension PipelineLoader {
    /// kafka://host:port, or several host:port separated by commas.
    public static func isKafkaURL(_ s: String) -> Bool {
        guard s.hasPrefix("kafka://") else { return false }
        let hosts = s.dropFirst(8).split(separator: ",", omittingEmptySubsequences: false)
        return !hosts.isEmpty && hosts.allSatisfy { h in
            let parts = h.split(separator: ":")
            return parts.count == 2 && !parts[0].isEmpty && Int(parts[1]).map { $0 > 0 && $0 < 65536 } == true
        }
    }
}
