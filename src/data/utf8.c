/* Strict UTF-8 (RFC 3629), both ways.
 *
 *   bytes                                 code points
 *   0xxxxxxx                              U+0000..U+007F
 *   110xxxxx 10xxxxxx                     U+0080..U+07FF
 *   1110xxxx 10xxxxxx 10xxxxxx            U+0800..U+FFFF but not U+D800..U+DFFF
 *   11110xxx 10xxxxxx 10xxxxxx 10xxxxxx   U+10000..U+10FFFF
 *
 * Anything else is refused: a continuation byte with no lead, a lead byte
 * without all its continuation bytes, a longer form than the value needs
 * (overlong: "/" as C0 AF), a surrogate, a value above U+10FFFF, and the bytes
 * F8..FF that start no sequence. */
#include <stdint.h>
#include <stdlib.h>

#include "nn/error.h"
#include "nn/text.h"
#include "core/util.h"

int nn_utf8_decode(uint32_t **cps, size_t *n, const char *bytes, size_t len, const char *source) {
    static const uint32_t min_of_len[5] = {0, 0, 0x80, 0x800, 0x10000};
    const unsigned char *b = (const unsigned char *)bytes;
    uint32_t *out = nn_xmalloc((len ? len : 1) * sizeof *out); /* at most one per byte */
    size_t count = 0, i = 0;
    *cps = NULL;
    *n = 0;
    while (i < len) {
        unsigned lead = b[i];
        if (lead < 0x80) {
            out[count++] = lead;
            i++;
            continue;
        }
        int seq;
        uint32_t cp;
        if (lead < 0xC0) {
            nn_error("%s: invalid UTF-8 at byte %zu: continuation byte 0x%02X without a lead byte",
                     source, i, lead);
            goto fail;
        } else if (lead < 0xE0) {
            seq = 2, cp = lead & 0x1F;
        } else if (lead < 0xF0) {
            seq = 3, cp = lead & 0x0F;
        } else if (lead < 0xF8) {
            seq = 4, cp = lead & 0x07;
        } else {
            nn_error("%s: invalid UTF-8 at byte %zu: byte 0x%02X never occurs in UTF-8", source, i,
                     lead);
            goto fail;
        }
        for (int k = 1; k < seq; k++) {
            if (i + (size_t)k >= len) {
                nn_error("%s: invalid UTF-8 at byte %zu: truncated: the data ends %d byte(s) "
                         "into a %d-byte sequence",
                         source, i, k, seq);
                goto fail;
            }
            unsigned c = b[i + (size_t)k];
            if ((c & 0xC0) != 0x80) {
                nn_error("%s: invalid UTF-8 at byte %zu: truncated: a %d-byte sequence whose byte "
                         "%d is 0x%02X, not a continuation byte",
                         source, i, seq, k + 1, c);
                goto fail;
            }
            cp = cp << 6 | (c & 0x3F);
        }
        if (cp < min_of_len[seq]) {
            nn_error("%s: invalid UTF-8 at byte %zu: overlong %d-byte encoding of U+%04X", source,
                     i, seq, (unsigned)cp);
            goto fail;
        }
        if (cp >= 0xD800 && cp <= 0xDFFF) {
            nn_error("%s: invalid UTF-8 at byte %zu: surrogate U+%04X (not a character)", source,
                     i, (unsigned)cp);
            goto fail;
        }
        if (cp > 0x10FFFF) {
            nn_error("%s: invalid UTF-8 at byte %zu: U+%X is above U+10FFFF", source, i,
                     (unsigned)cp);
            goto fail;
        }
        out[count++] = cp;
        i += (size_t)seq;
    }
    *cps = out;
    *n = count;
    return 0;
fail:
    free(out);
    return -1;
}

int nn_utf8_encode(char *buf, size_t cap, uint32_t cp) {
    unsigned char tmp[4];
    int len;
    if (cp < 0x80) {
        tmp[0] = (unsigned char)cp;
        len = 1;
    } else if (cp < 0x800) {
        tmp[0] = (unsigned char)(0xC0 | cp >> 6);
        tmp[1] = (unsigned char)(0x80 | (cp & 0x3F));
        len = 2;
    } else if (cp < 0x10000) {
        if (cp >= 0xD800 && cp <= 0xDFFF)
            return nn_error("U+%04X is a surrogate, not a character", (unsigned)cp);
        tmp[0] = (unsigned char)(0xE0 | cp >> 12);
        tmp[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        tmp[2] = (unsigned char)(0x80 | (cp & 0x3F));
        len = 3;
    } else if (cp <= 0x10FFFF) {
        tmp[0] = (unsigned char)(0xF0 | cp >> 18);
        tmp[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
        tmp[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        tmp[3] = (unsigned char)(0x80 | (cp & 0x3F));
        len = 4;
    } else {
        return nn_error("U+%X is above U+10FFFF, not a character", (unsigned)cp);
    }
    if ((size_t)len > cap)
        return nn_error("U+%04X needs %d bytes of UTF-8, the buffer holds %zu", (unsigned)cp, len,
                        cap);
    for (int k = 0; k < len; k++) buf[k] = (char)tmp[k];
    return len;
}
