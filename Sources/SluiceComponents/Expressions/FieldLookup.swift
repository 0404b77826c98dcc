// FieldLookup: a top-level field name compiled into an expression, with the position where
// it was last found. Records of one stream usually keep their fields in one order, so the
// next record almost always has the field at the same position: one string comparison
// instead of a search. The position is a shared, racy hint (relaxed atomic), always verified.
import Synchronization

final class FieldLookup: Sendable {
    let key: String
    let keyBytes: [UInt8]
    let lastIndex = Atomic<Int>(0)

    init(_ key: String) {
        self.key = key
        self.keyBytes = Array(key.utf8)
    }

    /// The position of the field among a document's indexed fields, or nil.
    @inline(__always)
    func index(in doc: JSONDocument) -> Int? {
        let hint = lastIndex.load(ordering: .relaxed)
        let found = keyBytes.withUnsafeBytes { JSONIndex.find($0, in: doc.fields, bytes: doc.bytes, hint: hint) }
        if let i = found, i != hint { lastIndex.store(i, ordering: .relaxed) }
        return found
    }

    /// The field of the context's record, read in place from its bytes when it has them.
    @inline(__always)
    func value(in ctx: EvalContext) -> Value {
        if let doc = ctx.document {
            guard let i = index(in: doc) else { return .null }
            return JSONIndex.value(doc.fields[i], in: doc.bytes)
        }
        return value(in: ctx.value)
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
