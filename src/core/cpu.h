/* What the CPU can run, detected once with CPUID (x86-64; every feature is
 * absent elsewhere). Kernels that need instructions beyond the build's
 * baseline are compiled with target attributes and chosen at run time. */
#ifndef NN_CPU_H
#define NN_CPU_H

#include <stdbool.h>

/* AVX-512 F/BW/VL and AVX512_BF16 (vdpbf16ps, vcvtne2ps2bf16), with the OS
 * saving the zmm and mask registers. */
bool nn_cpu_has_avx512_bf16(void);

/* AMX-TILE and AMX-BF16 (tdpbf16ps) with the OS saving the tile state
 * (XCR0) and, on Linux, this process allowed to use it: the first call asks
 * for that once, for the whole process (arch_prctl ARCH_REQ_XCOMP_PERM);
 * without it the first tile instruction faults. Implies
 * nn_cpu_has_avx512_bf16 (the AMX kernel packs with AVX-512). */
bool nn_cpu_has_amx_bf16(void);

/* Why nn_cpu_has_amx_bf16 says false, in one line (for skips and
 * benchmarks); NULL when it says true. */
const char *nn_cpu_amx_bf16_missing(void);

/* For tests of the fallback: while on, nn_cpu_has_avx512_bf16 (and so
 * nn_cpu_has_amx_bf16) says false whatever the CPU has. */
void nn_cpu_pretend_no_bf16(bool on);

/* While on, nn_cpu_has_amx_bf16 says false: the AVX512_BF16 kernel runs on
 * a CPU with AMX. */
void nn_cpu_pretend_no_amx(bool on);

#endif
