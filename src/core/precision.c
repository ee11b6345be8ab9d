/* The process-wide precision of the linear layers' products. */
#include "core/precision.h"

#include "core/cpu.h"
#include "nn/error.h"

#include <string.h>

static nn_precision current = NN_PRECISION_FP32;

bool nn_precision_supported(nn_precision p) {
    switch (p) {
    case NN_PRECISION_FP32: return true;
    case NN_PRECISION_BF16: return nn_cpu_has_avx512_bf16();
    }
    return false;
}

int nn_set_precision(nn_precision p) {
    if (p != NN_PRECISION_FP32 && p != NN_PRECISION_BF16) return nn_error("precision: unknown value %d", (int)p);
    if (!nn_precision_supported(p))
        return nn_error("bf16 needs the AVX512_BF16 instructions (vdpbf16ps), which this CPU lacks; staying in fp32");
    current = p;
    return 0;
}

nn_precision nn_get_precision(void) { return current; }

void nn_precision_force(nn_precision p) { current = p; }

const char *nn_precision_name(nn_precision p) { return p == NN_PRECISION_BF16 ? "bf16" : "fp32"; }

int nn_precision_parse(const char *name, nn_precision *p) {
    for (nn_precision q = NN_PRECISION_FP32; q <= NN_PRECISION_BF16; q++)
        if (strcmp(name, nn_precision_name(q)) == 0) {
            *p = q;
            return 0;
        }
    return nn_error("unknown precision '%s' (one of: fp32, bf16)", name);
}
