// ExpressionCompiler: syntax tree → type-checked tree of closures. Each node's type is
// checked as it is built (errors carry the byte offset of the offending token), constant
// sub-expressions are evaluated once here, field paths with literal keys become precomputed
// paths, and boolean nodes also get a direct `Bool` closure so `where` predicates never box
// their result. Comparing a top-level field with a literal is specialised so it allocates
// nothing and makes no nested closure calls.

package typealias ValueFunction = @Sendable (EvalContext) throws(ExpressionRuntimeError) -> Value
package typealias TestFunction = @Sendable (EvalContext) throws(ExpressionRuntimeError) -> Bool

struct CompiledNode {
    var type: ExprType
    var value: ValueFunction
    /// A direct truthiness test, for boolean nodes; others test `value`'s truthiness.
    var test: TestFunction? = nil
    /// Set when the node does not depend on the record.
    var constant: Value? = nil
    /// Set when the node reads `ctx.value` along literal keys and indexes.
    var path: [PathStep]? = nil
    /// `meta.headers` itself: `.NAME` and `["NAME"]` on it become header lookups.
    var isHeaders = false

    var testFunction: TestFunction {
        if let test { return test }
        let f = value
        return { (ctx: EvalContext) throws(ExpressionRuntimeError) in try f(ctx).isTruthy }
    }

    static func constant(_ v: Value) -> CompiledNode {
        let truth = v.isTruthy
        return CompiledNode(type: .of(v), value: { _ in v }, test: { _ in truth }, constant: v)
    }
}

enum ExpressionCompiler {
    typealias Failure = ExpressionFailure

    static func compile(_ node: SyntaxNode) throws(Failure) -> CompiledNode {
        switch node.kind {
        case .literal(let v): return .constant(v)
        case .list(let items): return try list(items, node)
        case .this: return pathNode([])
        case .field(let name): return pathNode([.key(name)])
        case .member(let base, let name): return try member(base, name, node)
        case .index(let base, let position): return try indexNode(base, position, node)
        case .meta(let field): return meta(field)
        case .unary(let op, let operand): return try unary(op, operand, node)
        case .binary(let op, let l, let r): return try binary(op, l, r, node)
        case .conditional(let c, let a, let b): return try conditional(c, a, b, node)
        case .call(let name, let args): return try call(name, args, node)
        }
    }

    /// Evaluates, now, a node whose inputs are all constants; a failure (say `1 / 0`) is a
    /// compile error at `offset`.
    static func folded(_ n: CompiledNode, at offset: Int) throws(Failure) -> CompiledNode {
        do throws(ExpressionRuntimeError) {
            return .constant(try n.value(EvalContext(value: .null)))
        } catch {
            throw Failure(error.message, at: offset)
        }
    }

    // MARK: Values and paths

    static func pathNode(_ path: [PathStep]) -> CompiledNode {
        CompiledNode(type: .any, value: reader(path), path: path)
    }

    static func reader(_ path: [PathStep]) -> ValueFunction {
        switch path.count {
        case 0:
            return { (ctx: EvalContext) throws(ExpressionRuntimeError) in ctx.root }
        case 1:
            switch path[0] {
            case .key(let key):
                let field = FieldLookup(key)
                return { (ctx: EvalContext) throws(ExpressionRuntimeError) in field.value(in: ctx) }
            case .index(let n):
                return { (ctx: EvalContext) throws(ExpressionRuntimeError) in ExprOps.element(ctx.root, n) }
            }
        default:
            if case .key(let key) = path[0] {
                // The first step is read in place; only that field's value becomes a tree.
                let field = FieldLookup(key)
                let rest = Array(path.dropFirst())
                return { (ctx: EvalContext) throws(ExpressionRuntimeError) in ExprOps.resolve(field.value(in: ctx), rest) }
            }
            return { (ctx: EvalContext) throws(ExpressionRuntimeError) in ExprOps.resolve(ctx.root, path) }
        }
    }

    static func list(_ items: [SyntaxNode], _ node: SyntaxNode) throws(Failure) -> CompiledNode {
        var compiled: [CompiledNode] = []
        for item in items { compiled.append(try compile(item)) }
        if compiled.allSatisfy({ $0.constant != nil }) {
            return .constant(.array(compiled.map { $0.constant! }))
        }
        let fs = compiled.map(\.value)
        return CompiledNode(type: .list, value: { (ctx: EvalContext) throws(ExpressionRuntimeError) in
            var out: [Value] = []
            out.reserveCapacity(fs.count)
            for f in fs { out.append(try f(ctx)) }
            return .array(out)
        })
    }

    static func member(_ baseNode: SyntaxNode, _ name: String, _ node: SyntaxNode) throws(Failure) -> CompiledNode {
        let base = try compile(baseNode)
        if base.isHeaders { return CompiledNode(type: .any, value: { (ctx: EvalContext) throws(ExpressionRuntimeError) in ctx.header(name) }) }
        guard base.type.fits([.object]) else {
            throw Failure("cannot read field '\(name)' of \(base.type.withArticle)", at: node.anchor)
        }
        if let path = base.path { return pathNode(path + [.key(name)]) }
        if let c = base.constant { return .constant(ExprOps.member(c, name)) }
        let f = base.value
        return CompiledNode(type: .any, value: { (ctx: EvalContext) throws(ExpressionRuntimeError) in ExprOps.member(try f(ctx), name) })
    }

    static func indexNode(_ baseNode: SyntaxNode, _ indexNode: SyntaxNode, _ node: SyntaxNode) throws(Failure) -> CompiledNode {
        let base = try compile(baseNode)
        let index = try compile(indexNode)
        guard base.type.fits([.list, .object]) else {
            throw Failure("cannot index \(base.type.withArticle)", at: node.anchor)
        }
        guard index.type.fits([.number, .string]) else {
            throw Failure("an index must be a number or a string, not \(index.type.withArticle)", at: indexNode.start)
        }
        if base.isHeaders, case .string(let name)? = index.constant {
            return CompiledNode(type: .any, value: { (ctx: EvalContext) throws(ExpressionRuntimeError) in ctx.header(name) })
        }
        if let path = base.path, let c = index.constant {
            switch c {
            case .string(let key): return pathNode(path + [.key(key)])
            case .int(let n): if let n = Int(exactly: n) { return pathNode(path + [.index(n)]) }
            default: break
            }
        }
        if let b = base.constant, let i = index.constant { return .constant(ExprOps.index(b, i)) }
        let bf = base.value
        let xf = index.value
        return CompiledNode(type: .any, value: { (ctx: EvalContext) throws(ExpressionRuntimeError) in ExprOps.index(try bf(ctx), try xf(ctx)) })
    }

    static func meta(_ field: MetaField) -> CompiledNode {
        switch field {
        case .key:
            return CompiledNode(type: .any, value: { (ctx: EvalContext) throws(ExpressionRuntimeError) in
                ctx.keyText()
            })
        case .topic:
            return CompiledNode(type: .any, value: { (ctx: EvalContext) throws(ExpressionRuntimeError) in
                guard let topic = ctx.topic else { return .null }
                return .string(topic)
            })
        case .partition:
            return CompiledNode(type: .number, value: { (ctx: EvalContext) throws(ExpressionRuntimeError) in .int(Int64(ctx.partition)) })
        case .offset:
            return CompiledNode(type: .number, value: { (ctx: EvalContext) throws(ExpressionRuntimeError) in .int(ctx.offset) })
        case .timestamp:
            return CompiledNode(type: .number, value: { (ctx: EvalContext) throws(ExpressionRuntimeError) in .int(ctx.timestamp) })
        case .headers:
            return CompiledNode(type: .object, value: { (ctx: EvalContext) throws(ExpressionRuntimeError) in ctx.headerObject() }, isHeaders: true)
        }
    }

    // MARK: Operators

    /// Conditions (`not`, `and`, `or`, `if`) take bools; null counts as false; `any` passes.
    static func requireCondition(_ n: CompiledNode, _ what: String, at offset: Int) throws(Failure) {
        guard n.type.fits([.bool, .null]) else { throw Failure("\(what), not \(n.type.withArticle)", at: offset) }
    }

    static func unary(_ op: UnaryOperator, _ operandNode: SyntaxNode, _ node: SyntaxNode) throws(Failure) -> CompiledNode {
        let operand = try compile(operandNode)
        let n: CompiledNode
        switch op {
        case .negate:
            guard operand.type.fits([.number]) else {
                throw Failure("cannot negate \(operand.type.withArticle)", at: operandNode.start)
            }
            let f = operand.value
            n = CompiledNode(type: .number, value: { (ctx: EvalContext) throws(ExpressionRuntimeError) in try ExprOps.negate(try f(ctx)) })
        case .not:
            try requireCondition(operand, "'\(node.spelling)' needs a bool", at: operandNode.start)
            let t = operand.testFunction
            n = CompiledNode(type: .bool, value: { (ctx: EvalContext) throws(ExpressionRuntimeError) in .bool(try !t(ctx)) }, test: { (ctx: EvalContext) throws(ExpressionRuntimeError) in try !t(ctx) })
        }
        return operand.constant != nil ? try folded(n, at: node.anchor) : n
    }

    static func binary(_ op: BinaryOperator, _ lhs: SyntaxNode, _ rhs: SyntaxNode, _ node: SyntaxNode) throws(Failure) -> CompiledNode {
        let l = try compile(lhs)
        let r = try compile(rhs)
        let n: CompiledNode
        switch op {
        case .add, .subtract, .multiply, .divide, .remainder:
            n = try arithmetic(op, l, r, lhs, rhs, node)
        case .equal, .notEqual, .less, .lessEqual, .greater, .greaterEqual:
            n = try comparison(op, l, r, lhs, rhs, node)
        case .and, .or:
            try requireCondition(l, "'\(node.spelling)' needs bools", at: lhs.start)
            try requireCondition(r, "'\(node.spelling)' needs bools", at: rhs.start)
            let lt = l.testFunction
            let rt = r.testFunction
            let test: TestFunction
            if op == .and {
                test = { (ctx: EvalContext) throws(ExpressionRuntimeError) in
                    if try !lt(ctx) { return false }
                    return try rt(ctx)
                }
            } else {
                test = { (ctx: EvalContext) throws(ExpressionRuntimeError) in
                    if try lt(ctx) { return true }
                    return try rt(ctx)
                }
            }
            n = CompiledNode(type: .bool, value: { (ctx: EvalContext) throws(ExpressionRuntimeError) in .bool(try test(ctx)) }, test: test)
        case .coalesce:
            if let c = l.constant { return c.isNull ? r : l }
            let lf = l.value
            let rf = r.value
            let type: ExprType = l.type == .null ? r.type : (l.type == .any ? .any : l.type)
            return CompiledNode(type: type, value: { (ctx: EvalContext) throws(ExpressionRuntimeError) in
                let v = try lf(ctx)
                if case .null = v { return try rf(ctx) }
                return v
            })
        }
        if l.constant != nil && r.constant != nil { return try folded(n, at: node.anchor) }
        return n
    }

    static func verb(_ op: BinaryOperator) -> String {
        switch op {
        case .add: return "add"
        case .subtract: return "subtract"
        case .multiply: return "multiply"
        case .divide: return "divide"
        default: return "take the remainder of"
        }
    }

    static func arithmetic(
        _ op: BinaryOperator, _ l: CompiledNode, _ r: CompiledNode,
        _ lhs: SyntaxNode, _ rhs: SyntaxNode, _ node: SyntaxNode
    ) throws(Failure) -> CompiledNode {
        let allowed: [ExprType] = op == .add ? [.number, .string] : [.number]
        guard l.type.fits(allowed) else { throw Failure("cannot \(verb(op)) \(l.type.withArticle)", at: lhs.start) }
        guard r.type.fits(allowed) else { throw Failure("cannot \(verb(op)) \(r.type.withArticle)", at: rhs.start) }
        var type = ExprType.number
        if op == .add {
            switch (l.type, r.type) {
            case (.number, .string), (.string, .number):
                throw Failure("cannot add \(l.type) and \(r.type)", at: node.anchor)
            case (.string, _), (_, .string): type = .string
            case (.number, _), (_, .number): type = .number
            default: type = .any
            }
        }
        let lf = l.value
        let rf = r.value
        let value: ValueFunction
        switch op {
        case .add: value = { (ctx: EvalContext) throws(ExpressionRuntimeError) in try ExprOps.add(try lf(ctx), try rf(ctx)) }
        case .subtract: value = { (ctx: EvalContext) throws(ExpressionRuntimeError) in try ExprOps.subtract(try lf(ctx), try rf(ctx)) }
        case .multiply: value = { (ctx: EvalContext) throws(ExpressionRuntimeError) in try ExprOps.multiply(try lf(ctx), try rf(ctx)) }
        case .divide: value = { (ctx: EvalContext) throws(ExpressionRuntimeError) in try ExprOps.divide(try lf(ctx), try rf(ctx)) }
        default: value = { (ctx: EvalContext) throws(ExpressionRuntimeError) in try ExprOps.remainder(try lf(ctx), try rf(ctx)) }
        }
        return CompiledNode(type: type, value: value)
    }

    static func comparison(
        _ op: BinaryOperator, _ l: CompiledNode, _ r: CompiledNode,
        _ lhs: SyntaxNode, _ rhs: SyntaxNode, _ node: SyntaxNode
    ) throws(Failure) -> CompiledNode {
        if op != .equal && op != .notEqual {
            guard l.type.fits([.number, .string]) else {
                throw Failure("'\(node.spelling)' needs numbers or strings, not \(l.type.withArticle)", at: lhs.start)
            }
            guard r.type.fits([.number, .string]) else {
                throw Failure("'\(node.spelling)' needs numbers or strings, not \(r.type.withArticle)", at: rhs.start)
            }
            if l.type != .any && r.type != .any && l.type != r.type {
                throw Failure("cannot compare \(l.type) and \(r.type)", at: node.anchor)
            }
        }
        let test = comparisonTest(op, l, r)
        return CompiledNode(type: .bool, value: { (ctx: EvalContext) throws(ExpressionRuntimeError) in .bool(try test(ctx)) }, test: test)
    }

    static func comparisonTest(_ op: BinaryOperator, _ l: CompiledNode, _ r: CompiledNode) -> TestFunction {
        if let path = l.path, path.count == 1, case .key(let key) = path[0], let c = r.constant {
            return fieldTest(key, op, c)
        }
        let lf = l.value
        if let c = r.constant {
            switch op {
            case .equal: return { (ctx: EvalContext) throws(ExpressionRuntimeError) in ExprOps.equals(try lf(ctx), c) }
            case .notEqual: return { (ctx: EvalContext) throws(ExpressionRuntimeError) in !ExprOps.equals(try lf(ctx), c) }
            default: return { (ctx: EvalContext) throws(ExpressionRuntimeError) in ExprOps.holds(op, try ExprOps.order(try lf(ctx), c)) }
            }
        }
        let rf = r.value
        switch op {
        case .equal: return { (ctx: EvalContext) throws(ExpressionRuntimeError) in ExprOps.equals(try lf(ctx), try rf(ctx)) }
        case .notEqual: return { (ctx: EvalContext) throws(ExpressionRuntimeError) in !ExprOps.equals(try lf(ctx), try rf(ctx)) }
        default: return { (ctx: EvalContext) throws(ExpressionRuntimeError) in ExprOps.holds(op, try ExprOps.order(try lf(ctx), try rf(ctx))) }
        }
    }

    /// `field OP literal`, the common shape of a `where`: reads the field in place, from the
    /// record's bytes when it has them (a string compared without being decoded, a number
    /// decoded without allocating).
    static func fieldTest(_ key: String, _ op: BinaryOperator, _ c: Value) -> TestFunction {
        let field = FieldLookup(key)
        if op == .equal || op == .notEqual {
            let expected = op == .equal
            if case .string(let s) = c {
                let literal = Array(s.utf8)
                return { (ctx: EvalContext) throws(ExpressionRuntimeError) in
                    if let doc = ctx.document {
                        guard let i = field.index(in: doc) else { return !expected }
                        return literal.withUnsafeBytes { JSONIndex.stringEquals(doc.fields[i], $0, in: doc.bytes) } == expected
                    }
                    if case .object(let o) = ctx.value, let i = field.index(in: o), case .string(let x) = o.entries[i].value {
                        return (x == s) == expected
                    }
                    return !expected
                }
            }
            return { (ctx: EvalContext) throws(ExpressionRuntimeError) in ExprOps.equals(field.value(in: ctx), c) == expected }
        }
        if case .int(let n) = c {
            return { (ctx: EvalContext) throws(ExpressionRuntimeError) in
                let v: Value
                if ctx.document != nil {
                    v = field.value(in: ctx)
                } else if case .object(let o) = ctx.value, let i = field.index(in: o) {
                    v = o.entries[i].value
                } else {
                    v = .null
                }
                switch v {
                case .int(let x): return ExprOps.holds(op, x < n ? -1 : (x == n ? 0 : 1))
                case .double(let x): return ExprOps.holds(op, ExprOps.order(n, x).map { -$0 })
                default: return ExprOps.holds(op, try ExprOps.order(v, c))
                }
            }
        }
        return { (ctx: EvalContext) throws(ExpressionRuntimeError) in ExprOps.holds(op, try ExprOps.order(field.value(in: ctx), c)) }
    }

    static func conditional(_ cNode: SyntaxNode, _ aNode: SyntaxNode, _ bNode: SyntaxNode, _ node: SyntaxNode) throws(Failure) -> CompiledNode {
        let c = try compile(cNode)
        try requireCondition(c, "'if' needs a bool condition", at: cNode.start)
        let a = try compile(aNode)
        let b = try compile(bNode)
        if let constant = c.constant { return constant.isTruthy ? a : b }
        let type: ExprType = a.type == b.type ? a.type : .any
        let ct = c.testFunction
        let af = a.value
        let bf = b.value
        let at = a.testFunction
        let bt = b.testFunction
        return CompiledNode(
            type: type,
            value: { (ctx: EvalContext) throws(ExpressionRuntimeError) in
                if try ct(ctx) { return try af(ctx) }
                return try bf(ctx)
            },
            test: { (ctx: EvalContext) throws(ExpressionRuntimeError) in
                if try ct(ctx) { return try at(ctx) }
                return try bt(ctx)
            }
        )
    }

    // MARK: Calls

    static func call(_ name: String, _ args: [SyntaxNode], _ node: SyntaxNode) throws(Failure) -> CompiledNode {
        guard let spec = ExpressionFunctions.byName[name] else {
            var message = "unknown function '\(name)'"
            if let hint = ExpressionHints.closest(to: name, in: Expression.functionNames) {
                message += " (did you mean '\(hint)'?)"
            }
            throw Failure(message, at: node.anchor)
        }
        guard spec.arity.contains(args.count) else { throw Failure(spec.arityMessage(got: args.count), at: node.anchor) }
        var compiled: [CompiledNode] = []
        for (i, arg) in args.enumerated() {
            let c = try compile(arg)
            if let accepted = spec.accepted(at: i), !c.type.fits(accepted) {
                throw Failure("argument \(i + 1) of '\(name)' must be \(ExprType.phrase(accepted)), not \(c.type.withArticle)", at: arg.start)
            }
            compiled.append(c)
        }
        if name == "contains", compiled[0].type == .string, !compiled[1].type.fits([.string]) {
            throw Failure("argument 2 of 'contains' must be a string when argument 1 is one, not \(compiled[1].type.withArticle)", at: args[1].start)
        }
        let n: CompiledNode
        switch spec.body {
        case .nullary(let f):
            n = CompiledNode(type: spec.result, value: { _ in f() })
        case .unary(let f):
            let a = compiled[0].value
            n = CompiledNode(type: spec.result, value: { (ctx: EvalContext) throws(ExpressionRuntimeError) in try f(try a(ctx)) })
        case .binary(let f):
            let a = compiled[0].value
            let b = compiled[1].value
            n = CompiledNode(type: spec.result, value: { (ctx: EvalContext) throws(ExpressionRuntimeError) in try f(try a(ctx), try b(ctx)) })
        case .variadic(let f):
            let fs = compiled.map(\.value)
            n = CompiledNode(type: spec.result, value: { (ctx: EvalContext) throws(ExpressionRuntimeError) in
                var values: [Value] = []
                values.reserveCapacity(fs.count)
                for g in fs { values.append(try g(ctx)) }
                return try f(values)
            })
        }
        if spec.pure && compiled.allSatisfy({ $0.constant != nil }) { return try folded(n, at: node.anchor) }
        return n
    }
}
