// Expression: the entry points of the expression language used by `where`, `set`, `key`,
// `route` and templates. Compiles text once; reports the first problem with its line and
// column in the pipeline file.

/// Compiling expressions and templates.
///
/// The language: literals (`42`, `2.5`, `"text"`, `'text'`, `true`, `false`, `null`,
/// `[1, 2]`); field paths on the record's parsed value (`user.address.city`, `items[0].sku`,
/// `a["weird key"]`, `this` for the whole value); `meta.key`, `meta.partition`,
/// `meta.offset`, `meta.timestamp`, `meta.topic`, `meta.headers.NAME`,
/// `meta.headers["x-y"]`; operators `+ - * / %`, unary `-`, `== != < <= > >=`,
/// `and or not` (also `&& || !`), `??`, `if C then A else B`, parentheses; and the
/// functions in `functionNames`.
///
/// ```swift
/// let e = try Expression.compile("amount > 50", at: SourcePosition(line: 12, column: 14))
/// let t = try Expression.compileTemplate("order {{id}} of {{upper(user)}}", at: position)
/// ```
public enum Expression {
    /// How deep an expression's tree may be: every operator, `.field`, `[index]`, call, list
    /// and `if` is one level more than its deepest operand, so a chain `a + b + c` is two
    /// levels, and the recursive parts (parentheses, prefix operators, `??`, arguments) may
    /// not nest deeper either. Beyond it the expression does not compile (compiling and
    /// evaluating recurse over the tree; this keeps the stack they need small and bounded).
    public static let maxDepth = 256

    /// The longest one expression may be, in UTF-8 bytes; in a template, each `{{ }}` part.
    public static let maxLength = 16 * 1024

    static let tooDeepMessage = "expression is nested more than \(maxDepth) levels deep "
        + "(each operator counts one level, also in a chain like 'a + b + c'); "
        + "split it into several fields or use a function"

    static let tooLongMessage = "expression is longer than \(maxLength) bytes; "
        + "split it into several fields or use a function"

    /// Parses, type-checks and compiles `source`, which starts at `start` in its file.
    ///
    /// Error positions count from `start`: on the first line columns add to `start.column`;
    /// after a newline in `source` they restart at 1 on the following lines.
    public static func compile(
        _ source: String,
        at start: SourcePosition = SourcePosition(line: 1, column: 1)
    ) throws(ExpressionError) -> CompiledExpression {
        let bytes = Array(source.utf8)
        do throws(ExpressionFailure) {
            let tree = try ExpressionParser.parse(bytes, range: 0..<bytes.count)
            let node = try ExpressionCompiler.compile(tree)
            return CompiledExpression(source: source, node: node)
        } catch {
            throw ExpressionError(error.message, at: position(of: error.offset, in: bytes, from: start))
        }
    }

    /// Templates: text with `{{ expression }}` parts, e.g. `"order {{id}} of {{upper(user)}}"`.
    /// The result is a string: each part's value as text (strings as they are, null as
    /// nothing, other values as JSON). Error positions point into the template.
    public static func compileTemplate(
        _ source: String,
        at start: SourcePosition = SourcePosition(line: 1, column: 1)
    ) throws(ExpressionError) -> CompiledExpression {
        try compileTemplate(source, literal: [], at: start)
    }

    /// A template some of whose text is literal: `literal` are byte ranges of `source`'s UTF-8
    /// (the values of `${VAR}` in a pipeline file) in which no brace opens or closes a `{{ }}`
    /// part. Between parts they stay text as they are; inside a part they are expression text.
    package static func compileTemplate(
        _ source: String,
        literal: [Range<Int>],
        at start: SourcePosition
    ) throws(ExpressionError) -> CompiledExpression {
        let bytes = Array(source.utf8)
        do throws(ExpressionFailure) {
            let node = try templateNode(bytes, literal: literal)
            return CompiledExpression(source: source, node: node)
        } catch {
            throw ExpressionError(error.message, at: position(of: error.offset, in: bytes, from: start))
        }
    }

    /// The built-in functions, sorted.
    public static var functionNames: [String] { sortedFunctionNames }

    static let sortedFunctionNames = ExpressionFunctions.all.map(\.name).sorted()

    /// Line and column of byte `offset` of `bytes`, counting characters (Unicode scalars).
    static func position(of offset: Int, in bytes: [UInt8], from start: SourcePosition) -> SourcePosition {
        var line = start.line
        var column = start.column
        var i = 0
        let end = min(offset, bytes.count)
        while i < end {
            let b = bytes[i]
            if b == 0x0A {
                line += 1
                column = 1
            } else if b & 0xC0 != 0x80 {
                column += 1
            }
            i += 1
        }
        return SourcePosition(line: line, column: column)
    }

    enum TemplatePart: Sendable {
        case text(String)
        case value(ValueFunction)
    }

    static func templateNode(_ bytes: [UInt8], literal: [Range<Int>] = []) throws(ExpressionFailure) -> CompiledNode {
        let open = UInt8(ascii: "{")
        let close = UInt8(ascii: "}")
        var parts: [TemplatePart] = []
        var text = ""
        var i = 0
        var textStart = 0
        let n = bytes.count
        // A brace at these offsets is text, never half of a "{{" or "}}".
        var marks = [Bool](repeating: false, count: literal.isEmpty ? 0 : n)
        for r in literal {
            for k in r where k >= 0 && k < n { marks[k] = true }
        }
        let isLiteral = marks
        func delimits(_ k: Int) -> Bool { isLiteral.isEmpty || (!isLiteral[k] && !isLiteral[k + 1]) }
        while i < n {
            guard bytes[i] == open, i + 1 < n, bytes[i + 1] == open, delimits(i) else {
                i += 1
                continue
            }
            text += String(decoding: bytes[textStart..<i], as: UTF8.self)
            let start = i
            // The matching "}}", skipping over string literals that might contain one.
            var j = i + 2
            var quote: UInt8?
            var end: Int?
            while j < n {
                let c = bytes[j]
                if let q = quote {
                    if c == UInt8(ascii: "\\") { j += 2; continue }
                    if c == q { quote = nil }
                } else if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") {
                    quote = c
                } else if c == close, j + 1 < n, bytes[j + 1] == close, delimits(j) {
                    end = j
                    break
                }
                j += 1
            }
            guard let end else { throw ExpressionFailure("unclosed '{{' in template", at: start) }
            if bytes[(start + 2)..<end].allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }) {
                throw ExpressionFailure("empty '{{ }}' in template", at: start)
            }
            let tree = try ExpressionParser.parse(bytes, range: (start + 2)..<end)
            let node = try ExpressionCompiler.compile(tree)
            if let c = node.constant {
                text += c.textForm
            } else {
                if !text.isEmpty { parts.append(.text(text)) }
                text = ""
                parts.append(.value(node.value))
            }
            i = end + 2
            textStart = i
        }
        text += String(decoding: bytes[textStart..<n], as: UTF8.self)
        if parts.isEmpty { return .constant(.string(text)) }
        if !text.isEmpty { parts.append(.text(text)) }
        let frozen = parts
        return CompiledNode(type: .string, value: { (ctx: EvalContext) throws(ExpressionRuntimeError) in
            var s = ""
            for part in frozen {
                switch part {
                case .text(let t): s += t
                case .value(let f): s += try f(ctx).textForm
                }
            }
            return .string(s)
        })
    }
}
