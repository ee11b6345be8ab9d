/* CPU feature detection with CPUID and XGETBV. The instruction set bits are
 * not enough: the OS must also save the AVX-512 state (XCR0), or the first
 * zmm instruction faults; AMX's tile data must in addition be granted to the
 * process (Linux 5.16+), since it makes every signal frame 8 KiB larger. */
#include "core/cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

static unsigned xcr0(void) {
    unsigned lo, hi;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return lo;
}

static bool detect_avx512_bf16(void) {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & (1u << 27))) return false; /* OSXSAVE */
    /* SSE, AVX, opmask, upper halves of zmm0-15, zmm16-31 */
    const unsigned want_state = (1u << 1) | (1u << 2) | (1u << 5) | (1u << 6) | (1u << 7);
    if ((xcr0() & want_state) != want_state) return false;
    if (__get_cpuid_max(0, NULL) < 7) return false;
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    const unsigned f_bw_vl = (1u << 16) | (1u << 30) | (1u << 31);
    if ((ebx & f_bw_vl) != f_bw_vl) return false;
    __cpuid_count(7, 1, eax, ebx, ecx, edx);
    return (eax & (1u << 5)) != 0; /* AVX512_BF16 */
}

static char amx_missing[128];

/* Called once, after detect_avx512_bf16 said yes (so CPUID leaf 7 and
 * XGETBV exist); says why not in amx_missing. */
static bool detect_amx_bf16(void) {
    unsigned eax, ebx, ecx, edx;
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    const unsigned bf16_tile = (1u << 22) | (1u << 24); /* AMX-BF16, AMX-TILE */
    if ((edx & bf16_tile) != bf16_tile) {
        snprintf(amx_missing, sizeof amx_missing, "this CPU has no AMX-BF16 (grep amx_bf16 /proc/cpuinfo)");
        return false;
    }
    const unsigned tile_state = (1u << 17) | (1u << 18); /* XTILECFG, XTILEDATA */
    if ((xcr0() & tile_state) != tile_state) {
        snprintf(amx_missing, sizeof amx_missing, "the OS does not enable the AMX tile state (XCR0)");
        return false;
    }
#if defined(__linux__) && defined(SYS_arch_prctl)
    enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0) return true;
    snprintf(amx_missing, sizeof amx_missing, "Linux refused the AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM: %s)",
             strerror(errno));
#else
    snprintf(amx_missing, sizeof amx_missing, "no way known on this OS to ask for the AMX tile state");
#endif
    return false;
}
#else
static const char amx_missing[] = "not an x86-64 CPU";
static bool detect_avx512_bf16(void) { return false; }
static bool detect_amx_bf16(void) { return false; }
#endif

/* -1 = not yet. Two threads asking at once both detect, with the same answer
 * (the permission request can be repeated). */
static int detected = -1, detected_amx = -1;
static bool pretend_missing, pretend_no_amx;

bool nn_cpu_has_avx512_bf16(void) {
    if (detected < 0) detected = detect_avx512_bf16();
    return detected && !pretend_missing;
}

bool nn_cpu_has_amx_bf16(void) {
    if (!nn_cpu_has_avx512_bf16()) return false;
    if (detected_amx < 0) detected_amx = detect_amx_bf16();
    return detected_amx && !pretend_no_amx;
}

const char *nn_cpu_amx_bf16_missing(void) {
    if (pretend_missing) return "pretending there is no AVX512_BF16 (nn_cpu_pretend_no_bf16)";
    if (!nn_cpu_has_avx512_bf16()) return "this CPU has no AVX512_BF16, which the AMX kernel packs with";
    if (pretend_no_amx) return "pretending there is no AMX (nn_cpu_pretend_no_amx)";
    return nn_cpu_has_amx_bf16() ? NULL : amx_missing;
}

void nn_cpu_pretend_no_bf16(bool on) { pretend_missing = on; }

void nn_cpu_pretend_no_amx(bool on) { pretend_no_amx = on; }
