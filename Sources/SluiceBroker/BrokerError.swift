// The one error type of SluiceBroker.
import SluiceLog

public struct BrokerError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        public var description: String { name }
        public static let unknownTopic = Code(name: "unknown-topic")
        public static let topicExists = Code(name: "topic-exists")
        public static let invalidTopicName = Code(name: "invalid-topic-name")
        public static let invalidConfig = Code(name: "invalid-config")
        public static let invalidPartition = Code(name: "invalid-partition")
        public static let dataDirectoryLocked = Code(name: "data-directory-locked")
        public static let dataDirectory = Code(name: "data-directory")
        public static let metadata = Code(name: "metadata")
        public static let log = Code(name: "log")
    }

    public var code: Code
    public var message: String
    public var cause: (any Error)?

    public init(_ code: Code, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String { message }

    /// True for mistakes the user can fix by changing the command (exit code 1).
    public var isUserError: Bool {
        [.unknownTopic, .topicExists, .invalidTopicName, .invalidConfig, .invalidPartition, .dataDirectoryLocked].contains(code)
    }
}
