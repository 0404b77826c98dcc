// Partitioners: Kafka's murmur2 for keyed records (byte-for-byte the Java client's
// `Utils.murmur2` and `toPositive`), sticky and round-robin for keyless ones.
import Synchronization

public enum Murmur2 {
    /// Kafka's murmur2 hash (seed 0x9747b28c), as the Java client computes it.
    public static func hash(_ data: UnsafeRawBufferPointer) -> Int32 {
        let length = data.count
        let m: UInt32 = 0x5bd1_e995
        let r: UInt32 = 24
        var h: UInt32 = 0x9747_b28c ^ UInt32(truncatingIfNeeded: length)
        let blocks = length / 4
        for i in 0..<blocks {
            var k = UInt32(littleEndian: data.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))
            k = k &* m
            k ^= k >> r
            k = k &* m
            h = h &* m
            h ^= k
        }
        let tail = blocks * 4
        switch length & 3 {
        case 3:
            h ^= UInt32(data[tail + 2]) << 16
            h ^= UInt32(data[tail + 1]) << 8
            h ^= UInt32(data[tail])
            h = h &* m
        case 2:
            h ^= UInt32(data[tail + 1]) << 8
            h ^= UInt32(data[tail])
            h = h &* m
        case 1:
            h ^= UInt32(data[tail])
            h = h &* m
        default:
            break
        }
        h ^= h >> 13
        h = h &* m
        h ^= h >> 15
        return Int32(bitPattern: h)
    }

    public static func hash(_ bytes: [UInt8]) -> Int32 {
        bytes.withUnsafeBytes { hash($0) }
    }

    /// Kafka's `Utils.toPositive`: clears the sign bit (not `abs`).
    @inlinable public static func toPositive(_ v: Int32) -> Int32 { v & 0x7fff_ffff }

    /// The partition Kafka's default partitioner picks for a keyed record.
    public static func partition(forKey key: UnsafeRawBufferPointer, partitions: Int32) -> PartitionID {
        toPositive(hash(key)) % partitions
    }

    public static func partition(forKey key: [UInt8], partitions: Int32) -> PartitionID {
        key.withUnsafeBytes { partition(forKey: $0, partitions: partitions) }
    }
}

/// Picks partitions for keyless records: `sticky` keeps one partition until the current
/// batch is full, then moves to another (Kafka's default since 2.4); `roundRobin` moves on
/// with every record. Thread-safe.
public final class KeylessPartitioner: Sendable {
    public enum Strategy: Sendable { case sticky, roundRobin }

    public let strategy: Strategy
    private let state: Mutex<(current: Int32, counter: UInt64, rng: UInt64)>

    public init(strategy: Strategy = .sticky, seed: UInt64 = UInt64.random(in: 1...UInt64.max)) {
        self.strategy = strategy
        state = Mutex((current: -1, counter: 0, rng: seed))
    }

    /// The partition for the next keyless record.
    public func partition(partitions: Int32) -> PartitionID {
        state.withLock { s in
            switch strategy {
            case .roundRobin:
                s.counter &+= 1
                return Int32(truncatingIfNeeded: s.counter % UInt64(partitions))
            case .sticky:
                if s.current < 0 || s.current >= partitions { s.current = Self.pick(&s.rng, partitions, avoiding: -1) }
                return s.current
            }
        }
    }

    /// Called when the batch for the sticky partition is full: move to another partition.
    public func batchCompleted(partitions: Int32) {
        guard strategy == .sticky else { return }
        state.withLock { s in s.current = Self.pick(&s.rng, partitions, avoiding: s.current) }
    }

    private static func pick(_ rng: inout UInt64, _ partitions: Int32, avoiding: Int32) -> Int32 {
        // xorshift64*
        rng ^= rng >> 12; rng ^= rng << 25; rng ^= rng >> 27
        let r = Int32(truncatingIfNeeded: (rng &* 0x2545_F491_4F6C_DD1D) >> 33)
        guard partitions > 1 else { return 0 }
        var p = r % partitions
        if p == avoiding { p = (p + 1) % partitions }
        return p
    }
}
