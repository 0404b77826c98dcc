// Strong identifier for a position in a partition log.

/// The position of a record in one partition's log. Offsets start at 0 and grow by one per
/// record (control records included); they are never reused.
public struct Offset: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: Int64

    @inlinable public init(rawValue: Int64) { self.rawValue = rawValue }
    @inlinable public init(_ value: Int64) { self.rawValue = value }

    @inlinable public static func < (lhs: Offset, rhs: Offset) -> Bool { lhs.rawValue < rhs.rawValue }
    @inlinable public static func + (lhs: Offset, rhs: Int64) -> Offset { Offset(lhs.rawValue + rhs) }
    @inlinable public static func - (lhs: Offset, rhs: Offset) -> Int64 { lhs.rawValue - rhs.rawValue }

    public var description: String { String(rawValue) }

    /// The first offset of a fresh log.
    public static let zero = Offset(0)
}
