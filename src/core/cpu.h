/* What the CPU can run, detected once with CPUID (x86-64; every feature is
 * absent elsewhere). Kernels that need instructions beyond the build's
 * baseline are compiled with target attributes and chosen at run time. */
#ifndef NN_CPU_H
#define NN_CPU_H

#include <stdbool.h>

/* AVX-512 F/BW/VL and AVX512_BF16 (vdpbf16ps, vcvtne2ps2bf16), with the OS
 * saving the zmm and mask registers. */
bool nn_cpu_has_avx512_bf16(void);

/* For tests of the fallback: while on, nn_cpu_has_avx512_bf16 says false
 * whatever the CPU has. */
void nn_cpu_pretend_no_bf16(bool on);

#endif
