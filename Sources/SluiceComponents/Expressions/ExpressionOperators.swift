// What the operators of the expression language do to runtime values: arithmetic with
// int/double promotion and overflow checks, numeric equality across ints and doubles,
// ordering of numbers and strings, and lenient field/element access (missing → null).
// Pure functions; mismatches throw `ExpressionRuntimeError`, nothing traps.

enum PathStep: Sendable, Hashable {
    case key(String)
    case index(Int)
}

enum ExprOps {
    typealias Failure = ExpressionRuntimeError

    static func mismatch(_ verb: Failure.Verb, _ a: Value, _ b: Value) -> Failure {
        Failure(.mismatch(verb, .of(a), .of(b)))
    }

    static func overflow(_ symbol: Failure.Symbol) -> Failure {
        Failure(.overflow(symbol))
    }

    static let divisionByZero = Failure(.divisionByZero)

    // MARK: Arithmetic

    static func add(_ a: Value, _ b: Value) throws(Failure) -> Value {
        switch a {
        case .int(let x):
            switch b {
            case .int(let y):
                let (r, o) = x.addingReportingOverflow(y)
                if o { throw overflow(.plus) }
                return .int(r)
            case .double(let y): return .double(Double(x) + y)
            default: break
            }
        case .double(let x):
            switch b {
            case .int(let y): return .double(x + Double(y))
            case .double(let y): return .double(x + y)
            default: break
            }
        case .string(let x):
            if case .string(let y) = b { return .string(x + y) }
        default: break
        }
        throw mismatch(.add, a, b)
    }

    static func subtract(_ a: Value, _ b: Value) throws(Failure) -> Value {
        switch a {
        case .int(let x):
            switch b {
            case .int(let y):
                let (r, o) = x.subtractingReportingOverflow(y)
                if o { throw overflow(.minus) }
                return .int(r)
            case .double(let y): return .double(Double(x) - y)
            default: break
            }
        case .double(let x):
            switch b {
            case .int(let y): return .double(x - Double(y))
            case .double(let y): return .double(x - y)
            default: break
            }
        default: break
        }
        throw mismatch(.subtract, a, b)
    }

    static func multiply(_ a: Value, _ b: Value) throws(Failure) -> Value {
        switch a {
        case .int(let x):
            switch b {
            case .int(let y):
                let (r, o) = x.multipliedReportingOverflow(by: y)
                if o { throw overflow(.times) }
                return .int(r)
            case .double(let y): return .double(Double(x) * y)
            default: break
            }
        case .double(let x):
            switch b {
            case .int(let y): return .double(x * Double(y))
            case .double(let y): return .double(x * y)
            default: break
            }
        default: break
        }
        throw mismatch(.multiply, a, b)
    }

    /// int / int stays an int when the division is exact (`6 / 3` is 2), else gives a double
    /// (`7 / 2` is 3.5).
    static func divide(_ a: Value, _ b: Value) throws(Failure) -> Value {
        switch a {
        case .int(let x):
            switch b {
            case .int(let y):
                if y == 0 { throw divisionByZero }
                let (q, o) = x.dividedReportingOverflow(by: y)
                if !o && q &* y == x { return .int(q) }
                return .double(Double(x) / Double(y))
            case .double(let y):
                if y == 0 { throw divisionByZero }
                return .double(Double(x) / y)
            default: break
            }
        case .double(let x):
            switch b {
            case .int(let y):
                if y == 0 { throw divisionByZero }
                return .double(x / Double(y))
            case .double(let y):
                if y == 0 { throw divisionByZero }
                return .double(x / y)
            default: break
            }
        default: break
        }
        throw mismatch(.divide, a, b)
    }

    /// The remainder takes the sign of the dividend, as in Swift and C (`-7 % 3` is -1).
    static func remainder(_ a: Value, _ b: Value) throws(Failure) -> Value {
        switch a {
        case .int(let x):
            switch b {
            case .int(let y):
                if y == 0 { throw divisionByZero }
                return .int(x.remainderReportingOverflow(dividingBy: y).partialValue)
            case .double(let y):
                if y == 0 { throw divisionByZero }
                return .double(Double(x).truncatingRemainder(dividingBy: y))
            default: break
            }
        case .double(let x):
            switch b {
            case .int(let y):
                if y == 0 { throw divisionByZero }
                return .double(x.truncatingRemainder(dividingBy: Double(y)))
            case .double(let y):
                if y == 0 { throw divisionByZero }
                return .double(x.truncatingRemainder(dividingBy: y))
            default: break
            }
        default: break
        }
        throw mismatch(.remainder, a, b)
    }

    static func negate(_ a: Value) throws(Failure) -> Value {
        switch a {
        case .int(let x):
            if x == .min { throw overflow(.negate) }
            return .int(-x)
        case .double(let x):
            return .double(-x)
        default:
            throw Failure(.negate(.of(a)))
        }
    }

    // MARK: Comparison

    /// Compares an int with a double exactly (no rounding of large ints); nil when the
    /// double is NaN.
    @inline(__always)
    static func order(_ i: Int64, _ d: Double) -> Int? {
        if d.isNaN { return nil }
        if d >= 9_223_372_036_854_775_808.0 { return -1 }
        if d < -9_223_372_036_854_775_808.0 { return 1 }
        let t = d.rounded(.towardZero)
        let ti = Int64(t)
        if i < ti { return -1 }
        if i > ti { return 1 }
        return d > t ? -1 : (d < t ? 1 : 0)
    }

    /// Equality as `==` sees it: numbers by value across int and double, lists element-wise,
    /// objects by keys regardless of order, different kinds never equal.
    static func equals(_ a: Value, _ b: Value) -> Bool {
        switch a {
        case .null:
            if case .null = b { return true }
        case .bool(let x):
            if case .bool(let y) = b { return x == y }
        case .int(let x):
            switch b {
            case .int(let y): return x == y
            case .double(let y): return order(x, y) == 0
            default: break
            }
        case .double(let x):
            switch b {
            case .int(let y): return order(y, x) == 0
            case .double(let y): return x == y
            default: break
            }
        case .string(let x):
            if case .string(let y) = b { return x == y }
        case .array(let x):
            guard case .array(let y) = b, x.count == y.count else { return false }
            for i in 0..<x.count where !equals(x[i], y[i]) { return false }
            return true
        case .object(let x):
            guard case .object(let y) = b, x.count == y.count else { return false }
            for (k, v) in x.entries {
                guard let w = y[k], equals(v, w) else { return false }
            }
            return true
        }
        return false
    }

    /// -1, 0 or 1 for two numbers or two strings; nil when unordered (NaN); throws for
    /// anything else ("cannot compare string and number").
    static func order(_ a: Value, _ b: Value) throws(Failure) -> Int? {
        switch a {
        case .int(let x):
            switch b {
            case .int(let y): return x < y ? -1 : (x == y ? 0 : 1)
            case .double(let y): return order(x, y)
            default: break
            }
        case .double(let x):
            switch b {
            case .int(let y): return order(y, x).map { -$0 }
            case .double(let y):
                if x < y { return -1 }
                if x > y { return 1 }
                return x == y ? 0 : nil
            default: break
            }
        case .string(let x):
            if case .string(let y) = b { return x < y ? -1 : (x == y ? 0 : 1) }
        default: break
        }
        throw mismatch(.compare, a, b)
    }

    @inline(__always)
    static func holds(_ op: BinaryOperator, _ order: Int?) -> Bool {
        guard let order else { return op == .notEqual }
        switch op {
        case .less: return order < 0
        case .lessEqual: return order <= 0
        case .greater: return order > 0
        case .greaterEqual: return order >= 0
        case .equal: return order == 0
        case .notEqual: return order != 0
        default: return false
        }
    }

    static func compare(_ a: Value, _ b: Value, _ op: BinaryOperator) throws(Failure) -> Bool {
        switch op {
        case .equal: return equals(a, b)
        case .notEqual: return !equals(a, b)
        default: return holds(op, try order(a, b))
        }
    }

    // MARK: Access

    /// `v.key`: the field of an object, null for anything else.
    @inline(__always)
    static func member(_ v: Value, _ key: String) -> Value {
        if case .object(let o) = v, let i = o.index(forKey: key) { return o.entries[i].value }
        return .null
    }

    /// `v[n]`: an element of a list (negative counts from the end), null when out of range.
    @inline(__always)
    static func element(_ v: Value, _ n: Int) -> Value {
        guard case .array(let a) = v else { return .null }
        let i = n < 0 ? a.count + n : n
        return i >= 0 && i < a.count ? a[i] : .null
    }

    /// `v[i]` with a computed index: a number into a list, a string into an object.
    static func index(_ v: Value, _ i: Value) -> Value {
        switch i {
        case .string(let k): return member(v, k)
        case .int(let n): return Int(exactly: n).map { element(v, $0) } ?? .null
        case .double(let d): return Int(exactly: d).map { element(v, $0) } ?? .null
        default: return .null
        }
    }

    static func resolve(_ root: Value, _ path: [PathStep]) -> Value {
        var v = root
        for step in path {
            switch step {
            case .key(let k): v = member(v, k)
            case .index(let n): v = element(v, n)
            }
            if case .null = v { return .null }
        }
        return v
    }
}
