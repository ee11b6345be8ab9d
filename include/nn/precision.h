/* The arithmetic of the linear layers' matrix products: the forward product
 * x W^T, the input gradient dy W and the weight gradient dy^T x.
 *
 *   fp32  cblas_sgemm (OpenBLAS), the default;
 *   bf16  both operands rounded to bfloat16 (round to nearest, ties to even),
 *         products accumulated in fp32: Intel AMX's tdpbf16ps where the CPU
 *         has AMX-BF16 (several times the fp32 rate), else AVX512_BF16's
 *         vdpbf16ps (twice the fp32 FMA rate on AMD Zen 4; no faster than
 *         fp32 on Intel, whose two fp32 FMA ports match it). The sums'
 *         rounding differs between the two kernels.
 *
 * Weights, gradients, optimiser state and every other op stay fp32 either
 * way: bf16 only changes what the three products see. The setting is global
 * to the process and is read when an op runs (a backward uses the precision
 * its forward ran in). */
#ifndef NN_PRECISION_H
#define NN_PRECISION_H

#include <stdbool.h>

#include "nn/api.h"

NN_BEGIN_DECLS

typedef enum nn_precision { NN_PRECISION_FP32, NN_PRECISION_BF16 } nn_precision;

/* Returns 0, or -1 with the error set when this CPU cannot run p (bf16 needs
 * AVX512_BF16); the precision is then left as it was. */
int nn_set_precision(nn_precision p);
nn_precision nn_get_precision(void);
/* Whether nn_set_precision(p) would succeed on this CPU. */
bool nn_precision_supported(nn_precision p);
/* "fp32" or "bf16". */
const char *nn_precision_name(nn_precision p);
/* "fp32", "bf16" -> precision (the names of nn_precision_name); -1 with the
 * error for an unknown name. */
int nn_precision_parse(const char *name, nn_precision *p);

NN_END_DECLS

#endif
