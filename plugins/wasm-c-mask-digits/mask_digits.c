/* wasm-c-mask-digits: a Sluice WebAssembly transform in C. Replaces every ASCII digit in each
 * record's value with the `with` character (default '#'). Built without a C library:
 * build.sh runs clang --target=wasm32 -nostdlib. The ABI is in docs/plugins.md. */
#include <stdint.h>

extern unsigned char __heap_base;
static uint32_t heap = 0;
static unsigned char mask = '#';

#define PAGE 65536u

/* Bump allocation that grows linear memory as needed; 0 when it cannot. */
__attribute__((export_name("sluice_alloc")))
uint32_t sluice_alloc(uint32_t size) {
    if (heap == 0) heap = (uint32_t)(uintptr_t)&__heap_base;
    uint32_t at = (heap + 7u) & ~7u;
    uint32_t end = at + size;
    uint32_t have = (uint32_t)__builtin_wasm_memory_size(0) * PAGE;
    if (end > have) {
        if (__builtin_wasm_memory_grow(0, (end - have + PAGE - 1) / PAGE) == (__SIZE_TYPE__)-1) return 0;
    }
    heap = end;
    return at;
}

/* The configuration is JSON such as {"with":"*"}: take the first character of "with". */
__attribute__((export_name("sluice_configure")))
int32_t sluice_configure(const unsigned char *json, uint32_t len) {
    static const char key[] = "\"with\":\"";
    for (uint32_t i = 0; i + sizeof key - 1 < len; i++) {
        uint32_t k = 0;
        while (k < sizeof key - 1 && json[i + k] == (unsigned char)key[k]) k++;
        if (k == sizeof key - 1) {
            unsigned char c = json[i + k];
            if (c == '"' || c == '\\' || c >= 0x80) return 1; /* one plain ASCII character, please */
            mask = c;
            return 0;
        }
    }
    return 0;
}

static uint32_t load32(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static void store32(unsigned char *p, uint32_t v) { p[0] = v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24; }

/* One call per batch. Records without digits are kept as they are (op 0); the others are
 * answered with their new value (op 1). */
__attribute__((export_name("sluice_transform")))
uint32_t sluice_transform(const unsigned char *in, uint32_t len) {
    (void)len;
    uint32_t n = load32(in);
    uint32_t need = 8;
    for (uint32_t i = 0; i < n; i++) {
        int32_t vlen = (int32_t)load32(in + 8 + i * 48 + 12);
        need += 12 + (vlen > 0 ? ((uint32_t)vlen + 3u) & ~3u : 0);
    }
    unsigned char *out = (unsigned char *)(uintptr_t)sluice_alloc(need);
    if (!out) return 0;
    unsigned char *p = out + 8;
    for (uint32_t i = 0; i < n; i++) {
        const unsigned char *d = in + 8 + i * 48;
        int32_t vlen = (int32_t)load32(d + 12);
        const unsigned char *value = in + load32(d + 8);
        int digits = 0;
        for (int32_t j = 0; j < vlen; j++) digits |= value[j] >= '0' && value[j] <= '9';
        if (!digits) {
            store32(p, 0); store32(p + 4, i); p += 8;
            continue;
        }
        store32(p, 1); store32(p + 4, i); store32(p + 8, (uint32_t)vlen);
        unsigned char *w = p + 12;
        for (int32_t j = 0; j < vlen; j++) w[j] = value[j] >= '0' && value[j] <= '9' ? mask : value[j];
        p = w + (((uint32_t)vlen + 3u) & ~3u);
    }
    store32(out, (uint32_t)(p - out));
    store32(out + 4, n);
    heap = (uint32_t)(uintptr_t)out; /* the answer is read before the next call: reuse its space */
    return (uint32_t)(uintptr_t)out;
}
