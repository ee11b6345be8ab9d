/* The version of nn: MAJOR changes break the API or the ABI, MINOR adds to
 * them, PATCH fixes. The shared library's soname carries MAJOR. */
#ifndef NN_VERSION_H
#define NN_VERSION_H

#include "nn/api.h"

#define NN_VERSION_MAJOR 2
#define NN_VERSION_MINOR 0
#define NN_VERSION_PATCH 0
#define NN_VERSION_STRING "2.0.0"

NN_BEGIN_DECLS

/* The version of the library the program runs with, e.g. "1.0.0" (the
 * header's NN_VERSION_STRING is the one it was compiled against). */
const char *nn_version(void);

NN_END_DECLS

#endif
