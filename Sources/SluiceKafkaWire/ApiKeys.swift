// The Kafka APIs this listener implements, with the versions it accepts. ApiVersions
// advertises exactly these ranges; a client picks the highest version both sides know.

public enum ApiKey: Int16, Sendable, CaseIterable {
    case produce = 0
    case fetch = 1
    case listOffsets = 2
    case metadata = 3
    case offsetCommit = 8
    case offsetFetch = 9
    case findCoordinator = 10
    case joinGroup = 11
    case heartbeat = 12
    case leaveGroup = 13
    case syncGroup = 14
    case describeGroups = 15
    case listGroups = 16
    case saslHandshake = 17
    case apiVersions = 18
    case createTopics = 19
    case deleteTopics = 20
    case initProducerId = 22
    case addPartitionsToTxn = 24
    case addOffsetsToTxn = 25
    case endTxn = 26
    case txnOffsetCommit = 28
    case describeConfigs = 32
    case saslAuthenticate = 36
    case createPartitions = 37
    case deleteGroups = 42
    case incrementalAlterConfigs = 44
    case consumerGroupHeartbeat = 68
    case consumerGroupDescribe = 69
    case shareGroupHeartbeat = 76
    case shareGroupDescribe = 77
    case shareFetch = 78
    case shareAcknowledge = 79
    case describeShareGroupOffsets = 90

    /// Versions accepted.
    public var versions: ClosedRange<Int16> {
        switch self {
        case .produce: 3...11
        case .fetch: 4...16
        case .listOffsets: 1...9
        case .metadata: 0...12
        case .offsetCommit: 2...9
        case .offsetFetch: 1...9
        case .findCoordinator: 0...5
        case .joinGroup: 0...9
        case .heartbeat: 0...4
        case .leaveGroup: 0...5
        case .syncGroup: 0...5
        case .describeGroups: 0...5
        case .listGroups: 0...5
        case .apiVersions: 0...4
        case .createTopics: 0...7
        case .deleteTopics: 0...6
        case .initProducerId: 0...5
        case .addPartitionsToTxn: 0...3
        case .addOffsetsToTxn: 0...4
        case .endTxn: 0...4
        case .txnOffsetCommit: 0...4
        case .saslHandshake: 0...1  // v0 is advertised (librdkafka looks for it); its raw-token mode is not served
        case .saslAuthenticate: 0...2
        case .describeConfigs: 0...4
        case .createPartitions: 0...3
        case .deleteGroups: 0...2
        case .incrementalAlterConfigs: 0...1
        // KIP-848; librdkafka 2.16 needs v1 of the heartbeat.
        case .consumerGroupHeartbeat, .consumerGroupDescribe: 0...1
        // Kafka 4.2's versions (v0 was 4.0's early access, removed in 4.1); librdkafka 2.16 sends v1.
        case .shareGroupHeartbeat, .shareGroupDescribe, .shareFetch, .shareAcknowledge: 1...1
        // v1 adds each partition's lag (KIP-1226).
        case .describeShareGroupOffsets: 0...1
        }
    }

    /// The first version that uses flexible encodings (compact strings and arrays, tagged
    /// fields, request header v2).
    public var firstFlexibleVersion: Int16 {
        switch self {
        case .produce: 9
        case .fetch: 12
        case .listOffsets: 6
        case .metadata: 9
        case .offsetCommit: 8
        case .offsetFetch: 6
        case .findCoordinator: 3
        case .joinGroup: 6
        case .heartbeat: 4
        case .leaveGroup: 4
        case .syncGroup: 4
        case .describeGroups: 5
        case .listGroups: 3
        case .apiVersions: 3
        case .createTopics: 5
        case .deleteTopics: 4
        case .initProducerId: 2
        case .addPartitionsToTxn: 3
        case .addOffsetsToTxn: 3
        case .endTxn: 3
        case .txnOffsetCommit: 3
        case .saslHandshake: 100  // never flexible
        case .saslAuthenticate: 2
        case .describeConfigs: 4
        case .createPartitions: 2
        case .deleteGroups: 2
        case .incrementalAlterConfigs: 1
        case .consumerGroupHeartbeat, .consumerGroupDescribe: 0
        case .shareGroupHeartbeat, .shareGroupDescribe, .shareFetch, .shareAcknowledge, .describeShareGroupOffsets: 0
        }
    }

    public func isFlexible(_ version: Int16) -> Bool { version >= firstFlexibleVersion }
}

/// Kafka's error codes used here.
public enum KafkaErrorCode {
    public static let none: Int16 = 0
    public static let unknownServerError: Int16 = -1
    public static let offsetOutOfRange: Int16 = 1
    public static let corruptMessage: Int16 = 2
    public static let unknownTopicOrPartition: Int16 = 3
    public static let invalidFetchSize: Int16 = 4
    public static let messageTooLarge: Int16 = 10
    public static let notCoordinator: Int16 = 16
    public static let invalidTopic: Int16 = 17
    public static let recordListTooLarge: Int16 = 18
    public static let invalidRequiredAcks: Int16 = 21
    public static let unknownMemberId: Int16 = 25
    public static let fencedMemberEpoch: Int16 = 110
    public static let topicAlreadyExists: Int16 = 36
    public static let invalidPartitions: Int16 = 37
    public static let unsupportedVersion: Int16 = 35
    public static let invalidRequest: Int16 = 42
    public static let unsupportedForMessageFormat: Int16 = 43
    public static let kafkaStorageError: Int16 = 56
    public static let groupIdNotFound: Int16 = 69
    public static let nonEmptyGroup: Int16 = 68
    public static let unstableOffsetCommit: Int16 = 88
    public static let unknownTopicId: Int16 = 100
    public static let invalidConfig: Int16 = 40
    public static let invalidRecordState: Int16 = 121
    public static let invalidRegularExpression: Int16 = 128
    public static let shareSessionNotFound: Int16 = 122
    public static let invalidShareSessionEpoch: Int16 = 123
    public static let unsupportedCompressionType: Int16 = 76
    public static let invalidRecord: Int16 = 87
    public static let invalidProducerEpoch: Int16 = 47
    public static let producerFenced: Int16 = 90
    public static let unsupportedSaslMechanism: Int16 = 33
    public static let illegalSaslState: Int16 = 34
    public static let saslAuthenticationFailed: Int16 = 58
}

extension ApiKey {
    /// Decodes a request body of this API with its generated message type (for tests, fuzzing
    /// and tools; the handler decodes each API where it answers it).
    public func decodeRequest(_ r: inout KafkaReader, version: Int16) throws(WireError) -> any KafkaMessage {
        switch self {
        case .produce: try ProduceRequest(from: &r, version: version)
        case .fetch: try FetchRequest(from: &r, version: version)
        case .listOffsets: try ListOffsetsRequest(from: &r, version: version)
        case .metadata: try MetadataRequest(from: &r, version: version)
        case .offsetCommit: try OffsetCommitRequest(from: &r, version: version)
        case .offsetFetch: try OffsetFetchRequest(from: &r, version: version)
        case .findCoordinator: try FindCoordinatorRequest(from: &r, version: version)
        case .joinGroup: try JoinGroupRequest(from: &r, version: version)
        case .heartbeat: try HeartbeatRequest(from: &r, version: version)
        case .leaveGroup: try LeaveGroupRequest(from: &r, version: version)
        case .syncGroup: try SyncGroupRequest(from: &r, version: version)
        case .describeGroups: try DescribeGroupsRequest(from: &r, version: version)
        case .listGroups: try ListGroupsRequest(from: &r, version: version)
        case .saslHandshake: try SaslHandshakeRequest(from: &r, version: version)
        case .apiVersions: try ApiVersionsRequest(from: &r, version: version)
        case .createTopics: try CreateTopicsRequest(from: &r, version: version)
        case .deleteTopics: try DeleteTopicsRequest(from: &r, version: version)
        case .initProducerId: try InitProducerIdRequest(from: &r, version: version)
        case .addPartitionsToTxn: try AddPartitionsToTxnRequest(from: &r, version: version)
        case .addOffsetsToTxn: try AddOffsetsToTxnRequest(from: &r, version: version)
        case .endTxn: try EndTxnRequest(from: &r, version: version)
        case .txnOffsetCommit: try TxnOffsetCommitRequest(from: &r, version: version)
        case .describeConfigs: try DescribeConfigsRequest(from: &r, version: version)
        case .saslAuthenticate: try SaslAuthenticateRequest(from: &r, version: version)
        case .createPartitions: try CreatePartitionsRequest(from: &r, version: version)
        case .deleteGroups: try DeleteGroupsRequest(from: &r, version: version)
        case .incrementalAlterConfigs: try IncrementalAlterConfigsRequest(from: &r, version: version)
        case .consumerGroupHeartbeat: try ConsumerGroupHeartbeatRequest(from: &r, version: version)
        case .consumerGroupDescribe: try ConsumerGroupDescribeRequest(from: &r, version: version)
        case .shareGroupHeartbeat: try ShareGroupHeartbeatRequest(from: &r, version: version)
        case .shareGroupDescribe: try ShareGroupDescribeRequest(from: &r, version: version)
        case .shareFetch: try ShareFetchRequest(from: &r, version: version)
        case .shareAcknowledge: try ShareAcknowledgeRequest(from: &r, version: version)
        case .describeShareGroupOffsets: try DescribeShareGroupOffsetsRequest(from: &r, version: version)
        }
    }
}
