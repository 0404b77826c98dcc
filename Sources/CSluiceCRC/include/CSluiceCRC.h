// CSluiceCRC: CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum Kafka's
// v2 RecordBatch uses. Hardware instructions when the CPU has them, tables otherwise.
#ifndef CSLUICE_CRC_H
#define CSLUICE_CRC_H

#include <stddef.h>
#include <stdint.h>

/// Continues a CRC32C: pass 0 to start. The value returned is final (already inverted),
/// so `sluice_crc32c(sluice_crc32c(0, a), b) == crc32c(a ++ b)`.
uint32_t sluice_crc32c(uint32_t crc, const void *data, size_t length);

/// 1 when the hardware path is in use, 0 for the portable table path.
int sluice_crc32c_hardware(void);

/// The portable path alone, so tests can check both paths agree.
uint32_t sluice_crc32c_portable(uint32_t crc, const void *data, size_t length);

#endif
