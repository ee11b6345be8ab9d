/* The library's version, for programs that check what they run with. */
#include "nn/version.h"

const char *nn_version(void) { return NN_VERSION_STRING; }
