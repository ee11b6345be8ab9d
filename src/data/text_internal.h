/* What the text files of src/data/ share and libnn does not export. */
#ifndef NN_DATA_TEXT_INTERNAL_H
#define NN_DATA_TEXT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "nn/text.h"

/* Room for text_char_name's longest name, NUL included. */
#define TEXT_CHAR_NAME_CAP 32

/* Names a character for a one-line message, as itself and as U+XXXX:
 * "'é' (U+00E9)", or for a control character its C escape: "'\n' (U+000A)". */
void text_char_name(char buf[TEXT_CHAR_NAME_CAP], uint32_t cp);

/* A copy of *src into *dst. */
void text_vocab_copy(nn_vocab *dst, const nn_vocab *src);

#endif
