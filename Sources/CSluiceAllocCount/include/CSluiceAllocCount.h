// Counts heap allocations of the sluice executable, for the benchmarks' allocations per record.
#ifndef CSLUICE_ALLOC_COUNT_H
#define CSLUICE_ALLOC_COUNT_H
#include <stdint.h>

/// malloc, calloc and realloc calls so far, in every thread of the process.
uint64_t sluice_allocation_count(void);

#endif
