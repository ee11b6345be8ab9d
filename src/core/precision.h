/* Internal side of nn/precision.h. */
#ifndef NN_CORE_PRECISION_H
#define NN_CORE_PRECISION_H

#include "nn/precision.h"

/* For tests: sets p without asking the CPU. bf16 on a CPU without
 * AVX512_BF16 then runs the portable kernel (slow, same bits). */
void nn_precision_force(nn_precision p);

#endif
