// Reading one pipeline or test file into a YAML tree with hostile input in mind. The file's
// size is bounded before it is read whole; `${VAR}` references are masked before parsing and
// their values put into the parsed scalars (EnvironmentSubstitution), so a value never
// becomes YAML; and the tree is walked once, as a reader that expands every alias sees it,
// stopping at the first node past a budget, before anything converts it to values. (A
// "billion laughs" file composes into a few nodes that share storage, and expands into
// billions when turned into values.) `sluice validate`, `run` and `test` all read through here.
import Foundation
import Yams

extension PipelineLoader {
    /// The largest pipeline or test file Sluice reads, in bytes (8 MiB).
    public static let maxFileBytes = 8 * 1024 * 1024

    /// The most YAML nodes a document may hold, counting a node once for each time an alias
    /// repeats it (so what a reader expanding the aliases would see).
    public static let maxYAMLNodes = 100_000

    /// The deepest a document's YAML tree may nest; the top-level mapping is level 1.
    public static let maxYAMLDepth = 64

    /// The most text (UTF-8 bytes of its scalars, keys included) a document may hold, counting
    /// a scalar once for each time an alias repeats it: a few large strings repeated by aliases
    /// stay within the node budget and would still expand into gigabytes.
    public static let maxYAMLTextBytes = 16 * 1024 * 1024

    static let tooLargeMessage = "the file is larger than \(maxFileBytes) bytes (\(maxFileBytes >> 20) MiB); "
        + "Sluice refuses files this large"

    static let tooManyNodesMessage = "the document expands to more than \(maxYAMLNodes) YAML nodes "
        + "(YAML aliases repeated inside each other?); Sluice refuses documents this large"

    static let tooDeepMessage = "the document nests more than \(maxYAMLDepth) levels deep; "
        + "Sluice refuses documents this deep"

    static let tooMuchTextMessage = "the document expands to more than \(maxYAMLTextBytes) bytes of text "
        + "(YAML aliases repeated inside each other?); Sluice refuses documents this large"

    /// The text of the file at `path`, never holding more than `maxFileBytes + 1` bytes of it.
    static func readText(file path: String) throws -> String {
        func failure(_ message: String) -> PipelineLoadError {
            PipelineLoadError(diagnostics: [Diagnostic(file: path, line: 1, column: 1, message: message)])
        }
        var isDirectory: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
        guard exists, !isDirectory.boolValue, let handle = FileHandle(forReadingAtPath: path) else {
            throw failure("cannot read the pipeline file: \(exists ? "permission denied" : "no such file")")
        }
        defer { try? handle.close() }
        // In chunks until the end or one byte past the limit, whatever one read returns.
        var data = Data()
        do {
            while data.count <= maxFileBytes {
                guard let chunk = try handle.read(upToCount: maxFileBytes + 1 - data.count), !chunk.isEmpty else { break }
                data.append(chunk)
            }
        } catch {
            throw failure("cannot read the pipeline file: permission denied")
        }
        if data.count > maxFileBytes { throw failure(tooLargeMessage) }
        guard let text = String(data: data, encoding: .utf8) else { throw failure("the pipeline file is not UTF-8 text") }
        return text
    }

    /// Walks `root` as a reader that expands every alias would, without expanding anything,
    /// and stops at the first node past `maxYAMLNodes` or `maxYAMLTextBytes`, or deeper than
    /// `maxYAMLDepth`: nil when the document is within all three, else the message and where
    /// to report it. Past a budget that is the collection that uses the outermost alias on the
    /// way to the node where the budget ran out (the line that multiplies), or that node if no
    /// alias is on the way. Iterative: the stack holds one frame per level, whatever the document.
    static func sizeProblem(_ root: Node) -> (message: String, mark: Mark?)? {
        struct Frame {
            var node: Node
            var children: Int
            var next = 0
            /// The collection that holds the outermost alias on the way here, if any.
            var aliasedAt: Mark?
        }
        // Node.Mapping's count walks it: counted once per frame.
        func childCount(_ node: Node) -> Int {
            switch node {
            case .mapping(let m): return 2 * m.count
            case .sequence(let s): return s.count
            default: return 0
            }
        }
        func child(_ node: Node, _ k: Int) -> Node {
            switch node {
            case .mapping(let m):
                let pair = m[m.startIndex + k / 2]
                return k % 2 == 0 ? pair.key : pair.value
            case .sequence(let s):
                return s[s.startIndex + k]
            default:
                return node
            }
        }
        func before(_ a: Mark, _ b: Mark) -> Bool { (a.line, a.column) < (b.line, b.column) }
        func textBytes(_ node: Node) -> Int {
            if case .scalar(let s) = node { return s.string.utf8.count }
            return 0
        }

        var count = 1
        var bytes = textBytes(root)
        if bytes > maxYAMLTextBytes { return (tooMuchTextMessage, root.mark) }
        // Nodes come in file order, except where an alias repeats an earlier one: the last
        // position seen so far tells them apart.
        var frontier = root.mark
        var stack: [Frame] = []
        let rootChildren = childCount(root)
        if rootChildren > 0 { stack.append(Frame(node: root, children: rootChildren, aliasedAt: nil)) }
        while let top = stack.indices.last {
            let k = stack[top].next
            guard k < stack[top].children else {
                stack.removeLast()
                continue
            }
            stack[top].next = k + 1
            let parent = stack[top].node
            let node = child(parent, k)
            count += 1
            var aliasedAt = stack[top].aliasedAt
            if let m = node.mark {
                if let f = frontier {
                    if aliasedAt == nil && before(m, f) { aliasedAt = parent.mark }
                    if before(f, m) { frontier = m }
                } else {
                    frontier = m
                }
            }
            if count > maxYAMLNodes { return (tooManyNodesMessage, aliasedAt ?? node.mark) }
            bytes += textBytes(node)
            if bytes > maxYAMLTextBytes { return (tooMuchTextMessage, aliasedAt ?? node.mark) }
            let depth = stack.count + 1
            if depth > maxYAMLDepth { return (tooDeepMessage, node.mark) }
            let children = childCount(node)
            if children > 0 { stack.append(Frame(node: node, children: children, aliasedAt: aliasedAt)) }
        }
        return nil
    }
}

/// A file parsed by `LoadContext.document`.
struct PipelineDocument {
    var root: Node?
    /// Lines holding an unset variable: it explains everything else wrong on its line.
    var missingLines: Set<Int> = []
}

extension LoadContext {
    /// Parses `raw`: refuses it when it is too large, is not YAML, expands past the node
    /// budget or nests too deeply (nil, with the diagnostic), else substitutes `${VAR}` in
    /// its scalars, reporting unset variables at their `$`.
    mutating func document(_ raw: String, environment: [String: String]) -> PipelineDocument? {
        if raw.utf8.count > PipelineLoader.maxFileBytes {
            error(1, 1, PipelineLoader.tooLargeMessage)
            return nil
        }
        let masked = EnvironmentSubstitution.mask(raw, environment: environment)
        let composed: Node?
        do {
            composed = try Yams.compose(yaml: masked.text)
        } catch let e as YamlError {
            yamlError(e)
            return nil
        } catch {
            self.error(1, 1, "the file is not valid YAML: \(error)")
            return nil
        }
        guard let root = composed else { return PipelineDocument(root: nil) }
        if let problem = PipelineLoader.sizeProblem(root) {
            error(problem.mark?.line ?? 1, problem.mark?.column ?? 1, problem.message)
            return nil
        }
        if masked.references.isEmpty { return PipelineDocument(root: root) }
        var state = SubstitutionState(references: masked.references)
        let substituted = substitute(root, &state) ?? root
        return PipelineDocument(root: substituted, missingLines: state.missingLines)
    }

    struct SubstitutionState {
        var references: [EnvironmentSubstitution.Reference]
        var reported: Set<Int> = []
        var missingLines: Set<Int> = []
    }

    /// `node` with the values of the references in its scalars, keys included; nil when it
    /// holds none. Recursive: `sizeProblem` has bounded the depth (and the expanded size).
    mutating func substitute(_ node: Node, _ state: inout SubstitutionState) -> Node? {
        switch node {
        case .scalar(let s):
            guard let result = EnvironmentSubstitution.substitute(s.string, state.references) else { return nil }
            for k in result.used where state.references[k].value == nil {
                let r = state.references[k]
                state.missingLines.insert(r.line)
                if state.reported.insert(k).inserted {
                    error(
                        r.line, r.column, "environment variable '\(r.name)' is not set",
                        hint: "set it, or give a default: ${\(r.name):-value}")
                }
            }
            if let m = s.mark, !result.literal.isEmpty {
                substitutedSpans[SourcePosition(line: m.line, column: m.column)] = result.literal
            }
            return .scalar(Node.Scalar(result.text, s.tag, s.style, s.mark))
        case .mapping(var m):
            var changed = false
            for k in m.startIndex..<m.endIndex {
                let pair = m[k]
                let key = substitute(pair.key, &state)
                let value = substitute(pair.value, &state)
                if key != nil || value != nil {
                    m[k] = (key: key ?? pair.key, value: value ?? pair.value)
                    changed = true
                }
            }
            return changed ? .mapping(m) : nil
        case .sequence(var seq):
            var changed = false
            for k in seq.startIndex..<seq.endIndex {
                if let item = substitute(seq[k], &state) {
                    seq[k] = item
                    changed = true
                }
            }
            return changed ? .sequence(seq) : nil
        case .alias:
            return nil
        }
    }

    /// The UTF-8 ranges of a scalar's text that `${VAR}` values filled, for templates.
    func literalSpans(of node: Node) -> [Range<Int>] {
        guard let m = node.mark else { return [] }
        return substitutedSpans[SourcePosition(line: m.line, column: m.column)] ?? []
    }
}
