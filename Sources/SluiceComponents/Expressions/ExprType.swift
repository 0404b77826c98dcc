// ExprType: the static types the expression checker works with. `any` is what a field of a
// record has (its kind is known only per record); it passes every check.

public enum ExprType: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case number, string, bool, null, list, object, any

    public var description: String { rawValue }

    /// "a number", "an object", "null"
    var withArticle: String {
        switch self {
        case .null: return "null"
        case .any: return "any value"
        case .object: return "an object"
        default: return "a \(rawValue)"
        }
    }

    /// The type of a known value.
    static func of(_ value: Value) -> ExprType {
        switch value {
        case .null: return .null
        case .bool: return .bool
        case .int, .double: return .number
        case .string: return .string
        case .array: return .list
        case .object: return .object
        }
    }

    /// Whether a value of this type may be used where one of `allowed` is needed.
    func fits(_ allowed: [ExprType]) -> Bool {
        self == .any || allowed.contains(self)
    }

    /// "a string", "a string or list", "a string, list or object"
    static func phrase(_ types: [ExprType]) -> String {
        guard let first = types.first else { return "nothing" }
        var names = types.map(\.rawValue)
        names[0] = first.withArticle
        if names.count == 1 { return names[0] }
        return names.dropLast().joined(separator: ", ") + " or " + names[names.count - 1]
    }
}
