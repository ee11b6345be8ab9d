/* Inside the model: specs to layers (spec.c). */
#ifndef NN_NN_SPEC_H
#define NN_NN_SPEC_H

#include "nn/model.h"

/* The layers of a spec, arguments checked but shapes not yet known: returns
 * how many, with *layers (the caller's to free) holding them; -1 with the
 * error set and *layers NULL. */
int spec_parse(const char *spec, nn_layer **layers);

#endif
