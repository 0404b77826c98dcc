// ExpressionParser: tokens → syntax tree, by recursive descent. Precedence, lowest first:
//   if C then A else B   (as an operand it takes everything to its right)
//   or ||
//   and &&
//   not                  (Python-like: `not a == b` is `not (a == b)`)
//   == != < <= > >=      (left-associative)
//   ??                   (right-associative; `a ?? 0 > 5` is `(a ?? 0) > 5`)
//   + -
//   * / %
//   - !                  (unary; `!a == b` is `(!a) == b`)
//   .name [index]        (postfix)
// Every node keeps the byte offsets of its first token and of its operator for messages.
//
// Hostile input: chains (`a + a + …`, `a and a and …`, `a.b.b…`, `a[0][0]…`) are parsed by
// loops, not recursion, but they build a tree as deep as they are long, and compiling and
// evaluating recurse over that tree. So every node records its depth as it is built (leaves
// 0, anything else 1 + its deepest child) and no node deeper than `Expression.maxDepth` is
// ever built; the recursive paths (parentheses, prefix operators, `??`, `if`, calls, lists,
// indexes) also count their nesting against the same limit, so the parser's own recursion is
// bounded too, and the text of one expression is at most `Expression.maxLength` bytes.

enum UnaryOperator {
    case negate, not
}

enum BinaryOperator {
    case add, subtract, multiply, divide, remainder
    case equal, notEqual, less, lessEqual, greater, greaterEqual
    case and, or, coalesce

    var isComparison: Bool {
        switch self {
        case .equal, .notEqual, .less, .lessEqual, .greater, .greaterEqual: return true
        default: return false
        }
    }
}

enum MetaField: String, CaseIterable {
    case key, partition, offset, timestamp, topic, headers
}

struct SyntaxNode {
    indirect enum Kind {
        case literal(Value)
        case list([SyntaxNode])
        case this
        case field(String)
        case member(SyntaxNode, String)
        case index(SyntaxNode, SyntaxNode)
        case meta(MetaField)
        case unary(UnaryOperator, SyntaxNode)
        case binary(BinaryOperator, SyntaxNode, SyntaxNode)
        case conditional(SyntaxNode, SyntaxNode, SyntaxNode)
        case call(String, [SyntaxNode])
    }

    var kind: Kind
    /// Byte offset of the node's first token.
    var start: Int
    /// Byte offset of the token that names what the node does: the operator, the function
    /// or field name, the '['.
    var anchor: Int
    /// How the operator was spelled (`and` or `&&`), for messages.
    var spelling: String
    /// Levels of operators below and including this node: 0 for a leaf (a literal, a field
    /// name, `this`, `meta.x`), else 1 + its deepest child's. Computed from the children's
    /// as the node is built, so measuring a tree never walks it.
    let depth: Int

    init(kind: Kind, start: Int, anchor: Int, spelling: String = "") {
        self.kind = kind
        self.start = start
        self.anchor = anchor
        self.spelling = spelling
        switch kind {
        case .literal, .this, .field, .meta:
            depth = 0
        case .list(let items), .call(_, let items):
            depth = 1 + (items.map(\.depth).max() ?? 0)
        case .member(let base, _), .unary(_, let base):
            depth = 1 + base.depth
        case .index(let a, let b), .binary(_, let a, let b):
            depth = 1 + max(a.depth, b.depth)
        case .conditional(let c, let a, let b):
            depth = 1 + max(c.depth, a.depth, b.depth)
        }
    }
}

struct ExpressionParser {
    let bytes: [UInt8]
    let tokens: [Token]
    var i = 0
    /// Nested expressions and prefix operators being parsed right now (the recursion).
    var depth = 0

    init(bytes: [UInt8], tokens: [Token]) {
        self.bytes = bytes
        self.tokens = tokens
    }

    /// Parses the tokens of `range` of `bytes` as one whole expression.
    static func parse(_ bytes: [UInt8], range: Range<Int>) throws(ExpressionFailure) -> SyntaxNode {
        if range.count > Expression.maxLength {
            // At the first character past the limit.
            var cut = range.lowerBound + Expression.maxLength
            while cut > range.lowerBound && bytes[cut] & 0xC0 == 0x80 { cut -= 1 }
            throw ExpressionFailure(Expression.tooLongMessage, at: cut)
        }
        let tokens = try ExpressionLexer.tokenize(bytes, range: range)
        var parser = ExpressionParser(bytes: bytes, tokens: tokens)
        guard tokens[0].kind != .end else { throw ExpressionFailure("empty expression", at: tokens[0].start) }
        // The whole expression is level 0; what nests inside it counts from 1.
        let node = try parser.parseOr()
        guard parser.current.kind == .end else { throw parser.unexpected() }
        return node
    }

    var current: Token { tokens[i] }

    func text(_ t: Token) -> String { String(decoding: bytes[t.start..<t.end], as: UTF8.self) }

    func isKeyword(_ word: String) -> Bool {
        if case .identifier(let name) = current.kind { return name == word }
        return false
    }

    mutating func advance() -> Token {
        let t = tokens[i]
        if i < tokens.count - 1 { i += 1 }
        return t
    }

    func unexpected() -> ExpressionFailure {
        let t = current
        if t.kind == .end { return ExpressionFailure("unexpected end of expression", at: t.start) }
        return ExpressionFailure("unexpected '\(text(t))'", at: t.start)
    }

    mutating func expect(_ kind: TokenKind, _ what: String) throws(ExpressionFailure) {
        guard current.kind == kind else {
            if current.kind == .end { throw ExpressionFailure("expected \(what), found end of expression", at: current.start) }
            throw ExpressionFailure("expected \(what), found '\(text(current))'", at: current.start)
        }
        _ = advance()
    }

    /// One level deeper into the recursion, opened by the token at `offset` (a '(', a prefix
    /// operator, …): past `Expression.maxDepth` levels, the error is at that token.
    mutating func nest(at offset: Int) throws(ExpressionFailure) {
        depth += 1
        if depth > Expression.maxDepth { throw ExpressionFailure(Expression.tooDeepMessage, at: offset) }
    }

    /// `node` as built, unless it is more than `Expression.maxDepth` levels deep: then the
    /// error, at `t`, the token that made it one level too deep (the 257th '+' of a chain).
    func bounded(_ node: SyntaxNode, at t: Token) throws(ExpressionFailure) -> SyntaxNode {
        guard node.depth > Expression.maxDepth else { return node }
        throw ExpressionFailure(Expression.tooDeepMessage, at: t.start)
    }

    // MARK: Levels

    /// A whole expression nested inside another, opened by `opening` (a '(', a call's '(',
    /// an index's or a list's '[', an `if`): one level of nesting.
    mutating func parseExpression(opening: Token) throws(ExpressionFailure) -> SyntaxNode {
        try nest(at: opening.start)
        defer { depth -= 1 }
        return try parseOr()
    }

    mutating func parseOr() throws(ExpressionFailure) -> SyntaxNode {
        var left = try parseAnd()
        while isKeyword("or") || current.kind == .orOr {
            let op = advance()
            let right = try parseAnd()
            let node = SyntaxNode(kind: .binary(.or, left, right), start: left.start, anchor: op.start, spelling: text(op))
            left = try bounded(node, at: op)
        }
        return left
    }

    mutating func parseAnd() throws(ExpressionFailure) -> SyntaxNode {
        var left = try parseNot()
        while isKeyword("and") || current.kind == .andAnd {
            let op = advance()
            let right = try parseNot()
            let node = SyntaxNode(kind: .binary(.and, left, right), start: left.start, anchor: op.start, spelling: text(op))
            left = try bounded(node, at: op)
        }
        return left
    }

    mutating func parseNot() throws(ExpressionFailure) -> SyntaxNode {
        if isKeyword("not") {
            let op = advance()
            try nest(at: op.start)
            defer { depth -= 1 }
            let operand = try parseNot()
            let node = SyntaxNode(kind: .unary(.not, operand), start: op.start, anchor: op.start, spelling: "not")
            return try bounded(node, at: op)
        }
        return try parseComparison()
    }

    mutating func parseComparison() throws(ExpressionFailure) -> SyntaxNode {
        var left = try parseCoalesce()
        while true {
            let op: BinaryOperator
            switch current.kind {
            case .equal: op = .equal
            case .notEqual: op = .notEqual
            case .less: op = .less
            case .lessEqual: op = .lessEqual
            case .greater: op = .greater
            case .greaterEqual: op = .greaterEqual
            default: return left
            }
            let t = advance()
            let right = try parseCoalesce()
            let node = SyntaxNode(kind: .binary(op, left, right), start: left.start, anchor: t.start, spelling: text(t))
            left = try bounded(node, at: t)
        }
    }

    mutating func parseCoalesce() throws(ExpressionFailure) -> SyntaxNode {
        let left = try parseAdditive()
        guard current.kind == .coalesce else { return left }
        let t = advance()
        try nest(at: t.start)
        defer { depth -= 1 }
        let right = try parseCoalesce()
        let node = SyntaxNode(kind: .binary(.coalesce, left, right), start: left.start, anchor: t.start, spelling: "??")
        return try bounded(node, at: t)
    }

    mutating func parseAdditive() throws(ExpressionFailure) -> SyntaxNode {
        var left = try parseMultiplicative()
        while true {
            let op: BinaryOperator
            switch current.kind {
            case .plus: op = .add
            case .minus: op = .subtract
            default: return left
            }
            let t = advance()
            let right = try parseMultiplicative()
            let node = SyntaxNode(kind: .binary(op, left, right), start: left.start, anchor: t.start, spelling: text(t))
            left = try bounded(node, at: t)
        }
    }

    mutating func parseMultiplicative() throws(ExpressionFailure) -> SyntaxNode {
        var left = try parseUnary()
        while true {
            let op: BinaryOperator
            switch current.kind {
            case .star: op = .multiply
            case .slash: op = .divide
            case .percent: op = .remainder
            default: return left
            }
            let t = advance()
            let right = try parseUnary()
            let node = SyntaxNode(kind: .binary(op, left, right), start: left.start, anchor: t.start, spelling: text(t))
            left = try bounded(node, at: t)
        }
    }

    mutating func parseUnary() throws(ExpressionFailure) -> SyntaxNode {
        let op: UnaryOperator
        switch current.kind {
        case .minus: op = .negate
        case .bang: op = .not
        default: return try parsePostfix()
        }
        let t = advance()
        try nest(at: t.start)
        defer { depth -= 1 }
        let operand = try parseUnary()
        // A literal number with a minus in front is just a negative literal.
        if op == .negate, case .literal(let v) = operand.kind {
            if case .int(let n) = v, n != .min { return SyntaxNode(kind: .literal(.int(-n)), start: t.start, anchor: t.start) }
            if case .double(let d) = v { return SyntaxNode(kind: .literal(.double(-d)), start: t.start, anchor: t.start) }
        }
        let node = SyntaxNode(kind: .unary(op, operand), start: t.start, anchor: t.start, spelling: text(t))
        return try bounded(node, at: t)
    }

    mutating func parsePostfix() throws(ExpressionFailure) -> SyntaxNode {
        var node = try parsePrimary()
        while true {
            switch current.kind {
            case .dot:
                let dot = advance()
                guard case .identifier(let name) = current.kind else {
                    if current.kind == .end { throw ExpressionFailure("expected a field name after '.', found end of expression", at: current.start) }
                    throw ExpressionFailure("expected a field name after '.', found '\(text(current))'", at: current.start)
                }
                let t = advance()
                node = try bounded(SyntaxNode(kind: .member(node, name), start: node.start, anchor: t.start), at: dot)
            case .leftBracket:
                let t = advance()
                let index = try parseExpression(opening: t)
                try expect(.rightBracket, "']'")
                node = try bounded(SyntaxNode(kind: .index(node, index), start: node.start, anchor: t.start), at: t)
            case .leftParen:
                throw ExpressionFailure("only functions can be called", at: current.start)
            default:
                return node
            }
        }
    }

    mutating func parsePrimary() throws(ExpressionFailure) -> SyntaxNode {
        let t = current
        switch t.kind {
        case .int(let n):
            _ = advance()
            return SyntaxNode(kind: .literal(.int(n)), start: t.start, anchor: t.start)
        case .double(let d):
            _ = advance()
            return SyntaxNode(kind: .literal(.double(d)), start: t.start, anchor: t.start)
        case .string(let s):
            _ = advance()
            return SyntaxNode(kind: .literal(.string(s)), start: t.start, anchor: t.start)
        case .leftParen:
            _ = advance()
            let inner = try parseExpression(opening: t)
            try expect(.rightParen, "')'")
            return inner
        case .leftBracket:
            _ = advance()
            var items: [SyntaxNode] = []
            if current.kind != .rightBracket {
                while true {
                    items.append(try parseExpression(opening: t))
                    if current.kind == .comma {
                        _ = advance()
                        continue
                    }
                    break
                }
            }
            try expect(.rightBracket, "',' or ']'")
            return try bounded(SyntaxNode(kind: .list(items), start: t.start, anchor: t.start), at: t)
        case .identifier(let name):
            return try parseWord(name, t)
        default:
            throw unexpected()
        }
    }

    mutating func parseWord(_ name: String, _ t: Token) throws(ExpressionFailure) -> SyntaxNode {
        switch name {
        case "true", "false":
            _ = advance()
            return SyntaxNode(kind: .literal(.bool(name == "true")), start: t.start, anchor: t.start)
        case "null":
            _ = advance()
            return SyntaxNode(kind: .literal(.null), start: t.start, anchor: t.start)
        case "this":
            _ = advance()
            return SyntaxNode(kind: .this, start: t.start, anchor: t.start)
        case "meta":
            return try parseMeta()
        case "not":
            return try parseNot()
        case "if":
            _ = advance()
            let condition = try parseExpression(opening: t)
            guard isKeyword("then") else { throw expectedKeyword("then") }
            _ = advance()
            let then = try parseExpression(opening: t)
            guard isKeyword("else") else { throw expectedKeyword("else") }
            _ = advance()
            let otherwise = try parseExpression(opening: t)
            let node = SyntaxNode(kind: .conditional(condition, then, otherwise), start: t.start, anchor: t.start)
            return try bounded(node, at: t)
        case "then", "else", "and", "or":
            throw unexpected()
        default:
            _ = advance()
            guard current.kind == .leftParen else {
                return SyntaxNode(kind: .field(name), start: t.start, anchor: t.start)
            }
            let paren = advance()
            var args: [SyntaxNode] = []
            if current.kind != .rightParen {
                while true {
                    args.append(try parseExpression(opening: paren))
                    if current.kind == .comma {
                        _ = advance()
                        continue
                    }
                    break
                }
            }
            try expect(.rightParen, "',' or ')'")
            return try bounded(SyntaxNode(kind: .call(name, args), start: t.start, anchor: t.start), at: paren)
        }
    }

    func expectedKeyword(_ word: String) -> ExpressionFailure {
        if current.kind == .end { return ExpressionFailure("expected '\(word)', found end of expression", at: current.start) }
        return ExpressionFailure("expected '\(word)', found '\(text(current))'", at: current.start)
    }

    mutating func parseMeta() throws(ExpressionFailure) -> SyntaxNode {
        let t = advance()
        let fields = MetaField.allCases.map(\.rawValue)
        guard current.kind == .dot else {
            throw ExpressionFailure("'meta' must be followed by a field: meta.\(fields.joined(separator: ", meta."))", at: t.start)
        }
        _ = advance()
        guard case .identifier(let name) = current.kind else {
            throw ExpressionFailure("expected a meta field (\(fields.joined(separator: ", "))) after 'meta.'", at: current.start)
        }
        let nameToken = advance()
        guard let field = MetaField(rawValue: name) else {
            var message = "unknown meta field '\(name)'"
            if let hint = ExpressionHints.closest(to: name, in: fields) { message += " (did you mean '\(hint)'?)" }
            throw ExpressionFailure(message, at: nameToken.start)
        }
        return SyntaxNode(kind: .meta(field), start: t.start, anchor: nameToken.start)
    }
}
