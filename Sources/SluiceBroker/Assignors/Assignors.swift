// The registry of built-in partition assignors, looked up by Kafka protocol name.

/// The built-in partition assignors.
///
/// ```swift
/// let assignor = Assignors.named("cooperative-sticky")   // CooperativeStickyAssignor
/// ```
public enum Assignors {
    /// Range, round robin and cooperative sticky, in that order.
    public static let all: [any PartitionAssignor] = [RangeAssignor(), RoundRobinAssignor(), CooperativeStickyAssignor()]

    /// The built-in assignor with Kafka protocol name `name` (case-sensitive, as in Kafka),
    /// or nil when there is none.
    public static func named(_ name: String) -> (any PartitionAssignor)? {
        all.first { $0.name == name }
    }
}
