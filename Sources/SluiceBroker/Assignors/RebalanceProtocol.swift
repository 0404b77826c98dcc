// Which rebalance protocol an assignor's output is meant for.

/// How members hand partitions over during a rebalance.
public enum RebalanceProtocol: String, Sendable {
    /// Every member revokes everything before the assignment; the assignment may move any
    /// partition straight to its new owner.
    case eager
    /// Members keep consuming what they keep; a partition that changes owner is first revoked
    /// by its old owner and only handed to the new one in a follow-up rebalance.
    case cooperative
}
