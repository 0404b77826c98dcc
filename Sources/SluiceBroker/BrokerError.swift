// The one error type of SluiceBroker.
import SluiceLog

public struct BrokerError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        /// Kafka's numeric error code for this failure, where Kafka has one.
        public let kafkaCode: Int16?
        init(name: String, kafka: Int16? = nil) {
            self.name = name
            self.kafkaCode = kafka
        }
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
        // Producers and transactions.
        public static let outOfOrderSequence = Code(name: "out-of-order-sequence", kafka: 45)
        public static let producerFenced = Code(name: "producer-fenced", kafka: 90)
        public static let invalidProducerEpoch = Code(name: "invalid-producer-epoch", kafka: 47)
        public static let unknownProducerId = Code(name: "unknown-producer-id", kafka: 59)
        public static let invalidTransactionState = Code(name: "invalid-txn-state", kafka: 48)
        public static let concurrentTransactions = Code(name: "concurrent-transactions", kafka: 51)
        public static let invalidTransactionTimeout = Code(name: "invalid-transaction-timeout", kafka: 50)
        public static let transactionalIdNotFound = Code(name: "transactional-id-not-found", kafka: 105)
        // Groups.
        public static let unknownMemberId = Code(name: "unknown-member-id", kafka: 25)
        public static let illegalGeneration = Code(name: "illegal-generation", kafka: 22)
        public static let rebalanceInProgress = Code(name: "rebalance-in-progress", kafka: 27)
        public static let fencedInstanceId = Code(name: "fenced-instance-id", kafka: 82)
        public static let inconsistentGroupProtocol = Code(name: "inconsistent-group-protocol", kafka: 23)
        public static let invalidSessionTimeout = Code(name: "invalid-session-timeout", kafka: 26)
        public static let groupNotEmpty = Code(name: "non-empty-group", kafka: 68)
        public static let unknownGroup = Code(name: "group-id-not-found", kafka: 69)
        public static let invalidGroupId = Code(name: "invalid-group-id", kafka: 24)
        public static let notAssigned = Code(name: "not-assigned")
        public static let offsetOutOfRange = Code(name: "offset-out-of-range", kafka: 1)
        // Share groups and the consumer group protocol.
        public static let invalidRequest = Code(name: "invalid-request", kafka: 42)
        public static let fencedMemberEpoch = Code(name: "fenced-member-epoch", kafka: 110)
        public static let unreleasedInstanceId = Code(name: "unreleased-instance-id", kafka: 111)
        public static let unsupportedAssignor = Code(name: "unsupported-assignor", kafka: 112)
        public static let staleMemberEpoch = Code(name: "stale-member-epoch", kafka: 113)
        public static let invalidRecordState = Code(name: "invalid-record-state", kafka: 121)
        public static let shareSessionNotFound = Code(name: "share-session-not-found", kafka: 122)
        public static let invalidShareSessionEpoch = Code(name: "invalid-share-session-epoch", kafka: 123)
        public static let closed = Code(name: "closed")
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
        [.unknownTopic, .topicExists, .invalidTopicName, .invalidConfig, .invalidPartition, .dataDirectoryLocked,
         .groupNotEmpty, .unknownGroup, .invalidGroupId, .offsetOutOfRange].contains(code)
    }
}
