/* CPU feature detection with CPUID and XGETBV. The instruction set bits are
 * not enough: the OS must also save the AVX-512 state (XCR0), or the first
 * zmm instruction faults. */
#include "core/cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <stddef.h>

static bool detect_avx512_bf16(void) {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & (1u << 27))) return false; /* OSXSAVE */
    unsigned xcr0_lo, xcr0_hi;
    __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    /* SSE, AVX, opmask, upper halves of zmm0-15, zmm16-31 */
    const unsigned want_state = (1u << 1) | (1u << 2) | (1u << 5) | (1u << 6) | (1u << 7);
    if ((xcr0_lo & want_state) != want_state) return false;
    if (__get_cpuid_max(0, NULL) < 7) return false;
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    const unsigned f_bw_vl = (1u << 16) | (1u << 30) | (1u << 31);
    if ((ebx & f_bw_vl) != f_bw_vl) return false;
    __cpuid_count(7, 1, eax, ebx, ecx, edx);
    return (eax & (1u << 5)) != 0; /* AVX512_BF16 */
}
#else
static bool detect_avx512_bf16(void) { return false; }
#endif

static int detected = -1; /* -1 = not yet */
static bool pretend_missing;

bool nn_cpu_has_avx512_bf16(void) {
    if (detected < 0) detected = detect_avx512_bf16();
    return detected && !pretend_missing;
}

void nn_cpu_pretend_no_bf16(bool on) { pretend_missing = on; }
