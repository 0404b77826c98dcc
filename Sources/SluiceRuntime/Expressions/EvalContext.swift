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
public struct EvalContext: Sendable {
    /// The parsed record value; field paths read from it (`.null` when there is none).
    public var value: Value
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
