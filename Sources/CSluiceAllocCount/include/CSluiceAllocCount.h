// The sluice executable's allocator: heap allocations counted for the benchmarks'
// allocations per record, and glibc's thresholds for large blocks.
#ifndef CSLUICE_ALLOC_COUNT_H
#define CSLUICE_ALLOC_COUNT_H
#include <stdint.h>

/// malloc, calloc and realloc calls so far, in every thread of the process.
uint64_t sluice_allocation_count(void);

/// Serve blocks up to 32 MiB from the heap instead of mmap, and keep up to 256 MiB of freed
/// heap before trimming, so fetch buffers of a few MiB are reused instead of faulted in anew.
void sluice_keep_large_blocks_in_heap(void);

#endif
