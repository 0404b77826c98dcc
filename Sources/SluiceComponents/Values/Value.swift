// Value: the in-memory form of a record's parsed fields. JSON's data model, except that
// integers that fit Int64 stay apart from doubles so ids and counters survive round trips.
// An immutable value type: safe to share between lanes and tasks.

/// A parsed field value.
///
/// Equality (`==`, `Hashable`) is structural: `.int(1) != .double(1)`, and objects compare
/// by their set of keys, not by key order. The expression language compares numbers
/// numerically instead (`1 == 1.0` is true there).
///
/// ```swift
/// let v = try JSON.parse(Array(#"{"user": {"name": "ada"}, "n": 3}"#.utf8))
/// v["user"]?["name"]?.asString   // "ada"
/// v["n"]?.asDouble               // 3.0
/// v.description                  // {"user":{"name":"ada"},"n":3}
/// ```
public enum Value: Sendable, Hashable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([Value])
    case object(ValueObject)
}

extension Value {
    /// The field `key` of an object; nil when this is not an object or has no such key.
    @inlinable
    public subscript(key: String) -> Value? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    /// The element at `index` of an array; nil when this is not an array or out of bounds.
    @inlinable
    public subscript(index: Int) -> Value? {
        if case .array(let a) = self, index >= 0, index < a.count { return a[index] }
        return nil
    }

    /// The number as a Double (ints convert); nil for other kinds.
    @inlinable
    public var asDouble: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    /// The number as an Int64 when it is an int, or a double with an exact Int64 value.
    @inlinable
    public var asInt: Int64? {
        switch self {
        case .int(let i): return i
        case .double(let d): return Int64(exactly: d)
        default: return nil
        }
    }

    /// The string payload; nil for other kinds (no conversion: see `textForm` for that).
    @inlinable
    public var asString: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    @inlinable
    public var asBool: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    @inlinable
    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// Truthiness as `where` and `if` see it: `false`, `null`, `0`, `0.0`, NaN and `""` are
    /// false; everything else (including empty lists and objects) is true.
    @inlinable
    public var isTruthy: Bool {
        switch self {
        case .null: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .double(let d): return d != 0 && !d.isNaN
        case .string(let s): return !s.isEmpty
        case .array, .object: return true
        }
    }

    /// The kind as the expression language names it: number, string, bool, null, list, object.
    public var kindName: String {
        switch self {
        case .null: return "null"
        case .bool: return "bool"
        case .int, .double: return "number"
        case .string: return "string"
        case .array: return "list"
        case .object: return "object"
        }
    }

    /// The text a template or `concat` puts in place of this value: strings as they are,
    /// null as nothing, everything else as its JSON text.
    public var textForm: String {
        switch self {
        case .null: return ""
        case .string(let s): return s
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        default: return description
        }
    }
}

extension Value: CustomStringConvertible {
    /// Compact JSON text.
    public var description: String {
        String(decoding: JSON.serialize(self), as: UTF8.self)
    }
}

extension Value: ExpressibleByBooleanLiteral {
    public init(booleanLiteral value: Bool) { self = .bool(value) }
}

extension Value: ExpressibleByIntegerLiteral {
    public init(integerLiteral value: Int64) { self = .int(value) }
}

extension Value: ExpressibleByFloatLiteral {
    public init(floatLiteral value: Double) { self = .double(value) }
}

extension Value: ExpressibleByStringLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
}

extension Value: ExpressibleByArrayLiteral {
    public init(arrayLiteral elements: Value...) { self = .array(elements) }
}

extension Value: ExpressibleByDictionaryLiteral {
    /// Keeps the literal's key order.
    public init(dictionaryLiteral elements: (String, Value)...) {
        var o = ValueObject(minimumCapacity: elements.count)
        for (k, v) in elements { o[k] = v }
        self = .object(o)
    }
}
