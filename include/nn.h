/* nn: a small deep-learning toolkit in C11. This header pulls in the whole
 * public API; each part can also be included on its own. */
#ifndef NN_H
#define NN_H

#include "nn/version.h"
#include "nn/error.h"
#include "nn/rng.h"
#include "nn/core.h"
#include "nn/precision.h"
#include "nn/data.h"
#include "nn/text.h"
#include "nn/seq2seq.h"
#include "nn/augment.h"
#include "nn/image.h"
#include "nn/csv.h"
#include "nn/safetensors.h"
#include "nn/model.h"
#include "nn/optim.h"
#include "nn/train.h"
#include "nn/linreg.h"
#include "nn/study.h"
#include "nn/report.h"

#endif
