// A validated topic name, by Kafka's rules.

/// A topic name: 1 to 249 characters of `[A-Za-z0-9._-]`, and neither `.` nor `..`.
public struct TopicName: Hashable, Sendable, Comparable, CustomStringConvertible, Codable {
    public let rawValue: String

    public static let maxLength = 249

    public init(_ name: String) throws {
        if let problem = TopicName.problem(with: name) {
            throw BrokerError(.invalidTopicName, "invalid topic name '\(name)': \(problem)")
        }
        rawValue = name
    }

    /// Why `name` is not a valid topic name, or nil when it is.
    public static func problem(with name: String) -> String? {
        if name.isEmpty { return "it is empty" }
        if name == "." || name == ".." { return "'.' and '..' are not allowed" }
        if name.utf8.count > maxLength { return "it is \(name.utf8.count) characters long, the limit is \(maxLength)" }
        for c in name.unicodeScalars {
            let ok = (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9") || c == "." || c == "_" || c == "-"
            if !ok { return "character '\(c)' is not allowed (use letters, digits, '.', '_' and '-')" }
        }
        return nil
    }

    /// Names starting with `__` belong to Sluice itself (`__consumer_offsets`,
    /// `__transaction_state`), as in Kafka; users may not create or delete them.
    public var isInternal: Bool { rawValue.hasPrefix("__") }

    /// The refusal for a user creating or deleting an internal topic.
    public var reservedError: BrokerError {
        BrokerError(.invalidTopicName, "topic '\(rawValue)' is internal: names starting with '__' are reserved for Sluice's own topics (__consumer_offsets, __transaction_state)")
    }

    public var description: String { rawValue }
    public static func < (a: TopicName, b: TopicName) -> Bool { a.rawValue < b.rawValue }

    public init(from decoder: any Decoder) throws {
        try self.init(try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }
}

/// A partition number within a topic.
public typealias PartitionID = Int32
