// Requests, responses and descriptions of Kafka's classic group protocol.

public enum GroupState: String, Sendable, Codable {
    case empty = "Empty"
    case preparingRebalance = "PreparingRebalance"
    case completingRebalance = "CompletingRebalance"
    case stable = "Stable"
    case dead = "Dead"
}

public struct GroupProtocol: Sendable, Hashable {
    public var name: String
    public var metadata: [UInt8]
    public init(name: String, metadata: [UInt8]) {
        self.name = name
        self.metadata = metadata
    }
}

public struct JoinGroupRequest: Sendable {
    public var groupId: String
    /// Empty on a member's first join; the coordinator assigns one.
    public var memberId: String
    public var groupInstanceId: String?
    public var clientId: String
    public var sessionTimeoutMs: Int32
    public var rebalanceTimeoutMs: Int32
    public var protocolType: String
    /// In the member's order of preference.
    public var protocols: [GroupProtocol]

    public init(groupId: String, memberId: String = "", groupInstanceId: String? = nil, clientId: String = "sluice", sessionTimeoutMs: Int32 = 10_000, rebalanceTimeoutMs: Int32 = 30_000, protocolType: String = "consumer", protocols: [GroupProtocol]) {
        self.groupId = groupId
        self.memberId = memberId
        self.groupInstanceId = groupInstanceId
        self.clientId = clientId
        self.sessionTimeoutMs = sessionTimeoutMs
        self.rebalanceTimeoutMs = rebalanceTimeoutMs
        self.protocolType = protocolType
        self.protocols = protocols
    }
}

public struct JoinedMember: Sendable, Hashable {
    public var memberId: String
    public var groupInstanceId: String?
    public var metadata: [UInt8]
}

public struct JoinGroupResponse: Sendable {
    public var generation: Int32
    public var protocolName: String?
    public var protocolType: String
    public var leader: String
    public var memberId: String
    /// Every member with its metadata for the chosen protocol: only for the leader.
    public var members: [JoinedMember]
    public var isLeader: Bool { leader == memberId }
}

public struct GroupMemberDescription: Sendable, Hashable {
    public var memberId: String
    public var groupInstanceId: String?
    public var clientId: String
    public var metadata: [UInt8]
    public var assignment: [UInt8]
}

public struct GroupDescription: Sendable, Hashable {
    public var groupId: String
    public var state: GroupState
    public var generation: Int32
    public var protocolType: String
    public var protocolName: String?
    public var leader: String?
    public var members: [GroupMemberDescription]
}

public struct GroupConfig: Sendable {
    public var minSessionTimeoutMs: Int32 = 1
    public var maxSessionTimeoutMs: Int32 = 1_800_000
    /// Wait this long after the first member joins an empty group for others (Kafka's
    /// group.initial.rebalance.delay.ms).
    public var initialRebalanceDelayMs: Int64 = 0
    /// Offsets of a group with no members expire after this long without commits.
    public var offsetsRetentionMs: Int64 = 7 * 86_400_000
    /// Consumer-protocol (KIP-848) members heartbeat this often (Kafka's
    /// group.consumer.heartbeat.interval.ms) and leave after this long without one
    /// (group.consumer.session.timeout.ms).
    public var consumerHeartbeatIntervalMs: Int64 = 5_000
    public var consumerSessionTimeoutMs: Int64 = 45_000
    /// Whether a group changes protocol while it has members (Kafka's
    /// group.consumer.migration.policy): a consumer-protocol member joining a classic group
    /// upgrades it, the last one leaving a group of classic members downgrades it.
    public var migrationPolicy: GroupMigrationPolicy = .bidirectional
    public init() {}
}

/// Kafka's group.consumer.migration.policy.
public enum GroupMigrationPolicy: String, Sendable, CaseIterable {
    case bidirectional, upgrade, downgrade, disabled
    public var upgrades: Bool { self == .bidirectional || self == .upgrade }
    public var downgrades: Bool { self == .bidirectional || self == .downgrade }
}
