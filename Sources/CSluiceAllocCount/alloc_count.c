// The sluice executable's malloc, calloc and realloc: glibc's own (__libc_*), each call
// counted with one relaxed atomic add, so benchmarks can print allocations per record. Linked
// into the executable only (no library or test binary carries it); the dynamic linker binds
// every library's malloc to these. posix_memalign and aligned_alloc are not counted: the
// Swift runtime uses them only for over-aligned objects.
#include "CSluiceAllocCount.h"
#include <stdatomic.h>
#include <malloc.h>
#include <stddef.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *pointer, size_t size);

static _Atomic uint64_t allocations;

void *malloc(size_t size) {
    atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
    return __libc_malloc(size);
}

void *calloc(size_t count, size_t size) {
    atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
    return __libc_calloc(count, size);
}

void *realloc(void *pointer, size_t size) {
    atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
    return __libc_realloc(pointer, size);
}

uint64_t sluice_allocation_count(void) {
    return atomic_load_explicit(&allocations, memory_order_relaxed);
}

void sluice_keep_large_blocks_in_heap(void) {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);  // the largest threshold glibc accepts on 64-bit
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
}
