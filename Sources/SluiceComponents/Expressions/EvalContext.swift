// EvalContext: what an expression sees of one record, its parsed value and its metadata.
// Built once per record by the runtime; building one stores what it is given and allocates
// nothing (decoding the key or a header happens only when an expression reads it).

/// The record an expression evaluates against.
///
/// ```swift
/// let ctx = EvalContext(value: try JSON.parse(record.value), key: record.key,
///                       topic: "orders", partition: 3, offset: 42, timestamp: record.timestamp,
///                       headers: [("source", Array("web".utf8))])
/// try where.test(ctx)
/// ```
public struct EvalContext: @unchecked Sendable {
    /// The parsed record value as a tree (`.null` when there is none, or when `document`
    /// holds it as bytes instead).
    public var value: Value
    /// The record value as JSON bytes with its top-level fields indexed: fields are read from
    /// it without building a tree. Valid only inside the call that made the context.
    public var document: JSONDocument?
    /// The key as bytes of a batch (instead of `key`), valid only inside that call.
    var rawKey: UnsafeRawBufferPointer?
    /// `meta.key`, as UTF-8 text (invalid bytes become U+FFFD).
    public var key: [UInt8]?
    public var topic: String?
    public var partition: Int32
    public var offset: Int64
    /// Milliseconds since the Unix epoch.
    public var timestamp: Int64
    /// `meta.headers.NAME`, in record order; when a name repeats, the last one wins.
    public var headers: [(String, [UInt8]?)]

    public init(
        value: Value,
        key: [UInt8]? = nil,
        topic: String? = nil,
        partition: Int32 = -1,
        offset: Int64 = -1,
        timestamp: Int64 = 0,
        headers: [(String, [UInt8]?)] = []
    ) {
        self.value = value
        self.key = key
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.timestamp = timestamp
        self.headers = headers
    }

    /// The context of a batch's record (`RecordBatch.withContext`).
    @usableFromInline
    init(document: JSONDocument?, value: Value, rawKey: UnsafeRawBufferPointer?, lane: SourceLane, offset: Int64, timestamp: Int64, headers: [(String, [UInt8]?)]) {
        self.value = value
        self.document = document
        self.rawKey = rawKey
        self.key = nil
        self.topic = lane.topic
        self.partition = lane.partition
        self.offset = offset
        self.timestamp = timestamp
        self.headers = headers
    }

    /// The whole value as a tree: built from `document` when the record has one (the slow
    /// path, for `this` and paths below a top-level field that is not read in place).
    var root: Value { document?.tree ?? value }

    /// `meta.key` as text.
    func keyText() -> Value {
        if let rawKey { return .string(String(decoding: rawKey, as: UTF8.self)) }
        guard let key else { return .null }
        return .string(String(decoding: key, as: UTF8.self))
    }

    /// The last header named `name`: `.string` of its bytes, `.null` when it has no value or
    /// is absent.
    func header(_ name: String) -> Value {
        var i = headers.count
        while i > 0 {
            i -= 1
            if headers[i].0 == name {
                guard let bytes = headers[i].1 else { return .null }
                return .string(String(decoding: bytes, as: UTF8.self))
            }
        }
        return .null
    }

    /// All headers as an object (`meta.headers` on its own).
    func headerObject() -> Value {
        var o = ValueObject(minimumCapacity: headers.count)
        for (name, bytes) in headers {
            let v: Value = bytes.map { Value.string(String(decoding: $0, as: UTF8.self)) } ?? .null
            o.updateValue(v, forKey: name)
        }
        return .object(o)
    }
}
