// The built-in functions of the expression language: each one's signature (for the type
// checker) and body (for evaluation). Bodies are pure except `now()` and `uuid()`.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The names of the built-in functions.
enum BuiltinFunction: String, CaseIterable, Hashable, Sendable {
    case lower, upper, trim, contains
    case startsWith = "starts_with"
    case endsWith = "ends_with"
    case len, now, uuid
    case toString = "to_string"
    case toNumber = "to_number"
    case parseTime = "parse_time"
    case concat, round, floor, ceil, abs, min, max
}

struct FunctionSpec: Sendable {
    typealias Failure = ExpressionRuntimeError

    enum Body: Sendable {
        case nullary(@Sendable () -> Value)
        case unary(@Sendable (Value) throws(Failure) -> Value)
        case binary(@Sendable (Value, Value) throws(Failure) -> Value)
        case variadic(@Sendable ([Value]) throws(Failure) -> Value)
    }

    var function: BuiltinFunction
    var name: String { function.rawValue }
    var arity: ClosedRange<Int>
    /// Accepted static types per argument (`nil`: any); the last entry covers the rest.
    var parameters: [[ExprType]?]
    var result: ExprType
    /// Same arguments, same result (so constant arguments fold at compile time).
    var pure: Bool = true
    var body: Body

    func accepted(at index: Int) -> [ExprType]? {
        parameters.isEmpty ? nil : parameters[min(index, parameters.count - 1)]
    }

    /// "'lower' takes 1 argument, got 2"
    func arityMessage(got: Int) -> String {
        let takes: String
        if arity.upperBound == .max {
            takes = "at least \(arity.lowerBound) argument\(arity.lowerBound == 1 ? "" : "s")"
        } else if arity.lowerBound == 0 && arity.upperBound == 0 {
            takes = "no arguments"
        } else if arity.lowerBound == arity.upperBound {
            takes = "\(arity.lowerBound) argument\(arity.lowerBound == 1 ? "" : "s")"
        } else {
            takes = "\(arity.lowerBound) to \(arity.upperBound) arguments"
        }
        return "'\(name)' takes \(takes), got \(got)"
    }
}

enum ExpressionFunctions {
    typealias Failure = ExpressionRuntimeError

    static func wrongKind(_ f: BuiltinFunction, _ needs: Failure.Needs, _ got: Value) -> Failure {
        Failure(.argument(f, needs, .of(got)))
    }

    static func string(_ f: BuiltinFunction, _ v: Value) throws(Failure) -> String {
        if case .string(let s) = v { return s }
        throw wrongKind(f, .string, v)
    }

    static let all: [FunctionSpec] = [
        FunctionSpec(function: .lower, arity: 1...1, parameters: [[.string]], result: .string, body: .unary { v throws(Failure) in
            .string(try string(.lower, v).lowercased())
        }),
        FunctionSpec(function: .upper, arity: 1...1, parameters: [[.string]], result: .string, body: .unary { v throws(Failure) in
            .string(try string(.upper, v).uppercased())
        }),
        FunctionSpec(function: .trim, arity: 1...1, parameters: [[.string]], result: .string, body: .unary { v throws(Failure) in
            .string(trim(try string(.trim, v)))
        }),
        FunctionSpec(function: .contains, arity: 2...2, parameters: [[.string, .list], nil], result: .bool, body: .binary { a, b throws(Failure) in
            switch a {
            case .string(let s):
                guard case .string(let sub) = b else { throw wrongKind(.contains, .stringToFind, b) }
                return .bool(sub.isEmpty || s.contains(sub))
            case .array(let items):
                return .bool(items.contains { ExprOps.equals($0, b) })
            default:
                throw wrongKind(.contains, .stringOrList, a)
            }
        }),
        FunctionSpec(function: .startsWith, arity: 2...2, parameters: [[.string]], result: .bool, body: .binary { a, b throws(Failure) in
            .bool(try string(.startsWith, a).hasPrefix(try string(.startsWith, b)))
        }),
        FunctionSpec(function: .endsWith, arity: 2...2, parameters: [[.string]], result: .bool, body: .binary { a, b throws(Failure) in
            .bool(try string(.endsWith, a).hasSuffix(try string(.endsWith, b)))
        }),
        FunctionSpec(function: .len, arity: 1...1, parameters: [[.string, .list, .object]], result: .number, body: .unary { v throws(Failure) in
            switch v {
            case .string(let s): return .int(Int64(s.count))
            case .array(let a): return .int(Int64(a.count))
            case .object(let o): return .int(Int64(o.count))
            default: throw wrongKind(.len, .stringListOrObject, v)
            }
        }),
        FunctionSpec(function: .now, arity: 0...0, parameters: [], result: .number, pure: false, body: .nullary {
            .int(currentMillis())
        }),
        FunctionSpec(function: .uuid, arity: 0...0, parameters: [], result: .string, pure: false, body: .nullary {
            .string(randomUUID())
        }),
        FunctionSpec(function: .toString, arity: 1...1, parameters: [nil], result: .string, body: .unary { v in
            if case .string = v { return v }
            return .string(v.description)
        }),
        FunctionSpec(function: .toNumber, arity: 1...1, parameters: [nil], result: .any, body: .unary { v in
            switch v {
            case .int, .double: return v
            case .bool(let b): return .int(b ? 1 : 0)
            case .string(let s): return number(from: s) ?? .null
            default: return .null
            }
        }),
        FunctionSpec(function: .parseTime, arity: 1...1, parameters: [[.string]], result: .any, body: .unary { v in
            guard case .string(let s) = v, let ms = TimestampParser.milliseconds(s) else { return .null }
            return .int(ms)
        }),
        FunctionSpec(function: .concat, arity: 1...Int.max, parameters: [nil], result: .string, body: .variadic { values in
            var s = ""
            for v in values { s += v.textForm }
            return .string(s)
        }),
        FunctionSpec(function: .round, arity: 1...1, parameters: [[.number]], result: .number, body: .unary { v throws(Failure) in
            try integral(.round, v, .toNearestOrAwayFromZero)
        }),
        FunctionSpec(function: .floor, arity: 1...1, parameters: [[.number]], result: .number, body: .unary { v throws(Failure) in
            try integral(.floor, v, .down)
        }),
        FunctionSpec(function: .ceil, arity: 1...1, parameters: [[.number]], result: .number, body: .unary { v throws(Failure) in
            try integral(.ceil, v, .up)
        }),
        FunctionSpec(function: .abs, arity: 1...1, parameters: [[.number]], result: .number, body: .unary { v throws(Failure) in
            switch v {
            case .int(let i):
                if i == .min { throw ExprOps.overflow(.abs) }
                return .int(Swift.abs(i))
            case .double(let d): return .double(Swift.abs(d))
            default: throw wrongKind(.abs, .number, v)
            }
        }),
        FunctionSpec(function: .min, arity: 2...2, parameters: [[.number]], result: .number, body: .binary { a, b throws(Failure) in
            try extreme(.min, a, b, pickSecondWhen: 1)
        }),
        FunctionSpec(function: .max, arity: 2...2, parameters: [[.number]], result: .number, body: .binary { a, b throws(Failure) in
            try extreme(.max, a, b, pickSecondWhen: -1)
        }),
    ]

    static let byName: [String: FunctionSpec] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })

    // MARK: Helpers

    static func trim(_ s: String) -> String {
        var sub = Substring(s)
        while let c = sub.first, c.isWhitespace { sub.removeFirst() }
        while let c = sub.last, c.isWhitespace { sub.removeLast() }
        return String(sub)
    }

    /// round/floor/ceil: an int stays as it is; a double is rounded and becomes an int when
    /// the result fits Int64.
    static func integral(_ f: BuiltinFunction, _ v: Value, _ rule: FloatingPointRoundingRule) throws(Failure) -> Value {
        switch v {
        case .int: return v
        case .double(let d):
            let r = d.rounded(rule)
            if let i = Int64(exactly: r) { return .int(i) }
            return .double(r)
        default: throw wrongKind(f, .number, v)
        }
    }

    static func extreme(_ f: BuiltinFunction, _ a: Value, _ b: Value, pickSecondWhen sign: Int) throws(Failure) -> Value {
        guard a.asDouble != nil else { throw wrongKind(f, .numbers, a) }
        guard b.asDouble != nil else { throw wrongKind(f, .numbers, b) }
        guard let order = try ExprOps.order(a, b) else { return .double(.nan) }
        return order == sign ? b : a
    }

    /// A number from text, as JSON writes numbers (surrounding whitespace and a leading '+'
    /// allowed); nil when the text is not one.
    static func number(from text: String) -> Value? {
        var t = Substring(trim(text))
        if t.first == "+" { t = t.dropFirst() }
        guard let first = t.utf8.first, first == UInt8(ascii: "-") || (first >= UInt8(ascii: "0") && first <= UInt8(ascii: "9")) else { return nil }
        guard let v = try? JSON.parse(String(t)) else { return nil }
        switch v {
        case .int, .double: return v
        default: return nil
        }
    }

    static func currentMillis() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    /// A random (version 4) UUID in lowercase hex: "0f8fad5b-d9cb-469f-a165-70867728950e".
    static func randomUUID() -> String {
        var rng = SystemRandomNumberGenerator()
        var bytes = [UInt8](repeating: 0, count: 16)
        for i in 0..<16 { bytes[i] = rng.next() }
        bytes[6] = bytes[6] & 0x0F | 0x40
        bytes[8] = bytes[8] & 0x3F | 0x80
        let hex = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(36)
        for (i, b) in bytes.enumerated() {
            if i == 4 || i == 6 || i == 8 || i == 10 { out.append(UInt8(ascii: "-")) }
            out.append(hex[Int(b >> 4)])
            out.append(hex[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
