/* Inside the model: specs to layers (spec.c). */
#ifndef NN_NN_SPEC_H
#define NN_NN_SPEC_H

#include "nn/model.h"

/* The layers of a spec, arguments checked but shapes not yet known: returns
 * how many, with *layers (the caller's to free) holding them; -1 with the
 * error set and *layers NULL. */
int spec_parse(const char *spec, nn_layer **layers);
/* The canonical spec of the n layers from l (a block counts with the layers
 * it holds), for the caller to free. */
char *spec_string(const nn_layer *l, int n);
/* A layer as messages and summaries name it: nn_layer_str's form, a block
 * without its layers ("residual(...)", "repeat(4, ...)"). Returns buf. */
const char *spec_layer_brief(const nn_layer *l, char *buf, size_t cap);

#endif
