// The one error type of SluiceLog: an extensible code, one clear sentence, and where it happened.

/// An error raised by the log layer. `message` is one sentence meant for people; `file` and
/// `offset` say where the problem is when it concerns data on disk.
public struct LogError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is. New codes may be added; switch with a `default`.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        public var description: String { name }
        public static let io = Code(name: "io")
        public static let diskFull = Code(name: "disk-full")
        public static let corruptBatch = Code(name: "corrupt-batch")
        public static let invalidBatch = Code(name: "invalid-batch")
        /// A batch whose framing and CRC are right but whose contents are not (record count,
        /// offsets, records, compression): Kafka's INVALID_RECORD, where `corruptBatch` (length,
        /// magic, CRC) is its CORRUPT_MESSAGE.
        public static let invalidRecord = Code(name: "invalid-record")
        public static let offsetOutOfRange = Code(name: "offset-out-of-range")
        public static let closed = Code(name: "closed")
        public static let readOnly = Code(name: "read-only")
        public static let invalidArgument = Code(name: "invalid-argument")
    }

    public var code: Code
    public var message: String
    public var file: String?
    public var offset: Int64?
    public var errno: Int32?

    public init(_ code: Code, _ message: String, file: String? = nil, offset: Int64? = nil, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.file = file
        self.offset = offset
        self.errno = errno
    }

    public var description: String { message }
}
