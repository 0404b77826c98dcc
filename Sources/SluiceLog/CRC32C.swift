// CRC32C (Castagnoli), as Kafka's v2 RecordBatch uses it.
import CSluiceCRC

public enum CRC32C {
    /// The checksum of `bytes`, continuing from `crc` (0 to start).
    @inlinable
    public static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress else { return crc }
        return sluice_crc32c(crc, base, bytes.count)
    }

    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0) }
    }

    /// The portable table-driven path, for tests that compare it with the hardware path.
    public static func portableChecksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { buf in
            guard let base = buf.baseAddress else { return 0 }
            return sluice_crc32c_portable(0, base, buf.count)
        }
    }

    /// Whether the CPU's CRC instructions are in use.
    public static var usesHardware: Bool { sluice_crc32c_hardware() != 0 }
}
