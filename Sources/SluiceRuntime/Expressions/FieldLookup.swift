// FieldLookup: a top-level field name compiled into an expression, with the position where
// it was last found. Records of one stream usually keep their fields in one order, so the
// next record almost always has the field at the same position: one string comparison
// instead of a search. The position is a shared, racy hint (relaxed atomic), always verified.
import Synchronization

final class FieldLookup: Sendable {
    let key: String
    let lastIndex = Atomic<Int>(0)

    init(_ key: String) {
        self.key = key
    }

    /// The position of the field in `object`, or nil.
    @inline(__always)
    func index(in object: ValueObject) -> Int? {
        let hint = lastIndex.load(ordering: .relaxed)
        guard let i = object.index(forKey: key, hint: hint) else { return nil }
        if i != hint { lastIndex.store(i, ordering: .relaxed) }
        return i
    }

    /// The field of `value`, null when it is missing or `value` is not an object.
    @inline(__always)
    func value(in value: Value) -> Value {
        if case .object(let o) = value, let i = index(in: o) { return o.entries[i].value }
        return .null
    }
}
