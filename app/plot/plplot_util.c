/* The PLplot session shared by the report's pictures: see plplot_util.h. */
#define _POSIX_C_SOURCE 200809L /* open_memstream */
#include "plot/plplot_util.h"

#include <errno.h>
#include <plplot.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "nn/error.h"
#include "core/util.h"

bool nn_is_picture_path(const char *path) {
    const char *ext = path ? strrchr(path, '.') : NULL;
    return ext && (strcasecmp(ext, ".svg") == 0 || strcasecmp(ext, ".png") == 0);
}

int report_image_format(const char *path) {
    const char *ext = path ? strrchr(path, '.') : NULL;
    if (ext && strcasecmp(ext, ".svg") == 0) return 1;
    if (ext && strcasecmp(ext, ".png") == 0) return 0;
    return nn_error("%s: unsupported plot format (use .png or .svg)", path ? path : "");
}

char *report_pl_text(const char *s) {
    if (!s) s = "";
    char *out = nn_xmalloc(2 * strlen(s) + 1), *o = out;
    for (; *s; s++) {
        if (*s == '#') *o++ = '#';
        *o++ = *s;
    }
    *o = '\0';
    return out;
}

double report_text_width_px(const char *s, size_t len, double px) {
    double em = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) em += 0.62;
        else if (c >= 0xc0) em += 0.85; /* the lead byte of a multi-byte character */
    }
    return em * px;
}

static jmp_buf plplot_exit;
static char plplot_msg[1024]; /* why PLplot stopped; plabort needs >= 160 bytes */
static PLINT plplot_aborted;

bool report_aborted(void) { return plplot_aborted != 0; }

/* Called by PLplot instead of exit(): note why and go back to run_plplot. */
static int on_plplot_exit(const char *msg) {
    snprintf(plplot_msg, sizeof plplot_msg, "%s", msg);
    longjmp(plplot_exit, 1);
}

/* One PLplot session, from plinit to plend, writing the image to out (which
 * PLplot closes). Returns 0, or -1 with the reason in plplot_msg. */
static int run_plplot(const char *device, FILE *out, const report_picture *pic) {
    plplot_aborted = 0;
    plplot_msg[0] = '\0';
    plsexit(on_plplot_exit);
    if (setjmp(plplot_exit) != 0) {
        /* PLplot gave up inside a call. plend tidies the device, closing
         * out, only if the device got initialised; else close it here. */
        PLINT level = 0;
        plglevel(&level);
        if (level == 0) fclose(out);
        if (setjmp(plplot_exit) == 0) plend();
        plsexit(NULL);
        return -1;
    }
    plsdev(device);
    plsfile(out);
    plspage(0, 0, pic->width, pic->height, 0, 0);
    pic->set_colours(pic->user);
    plsError(&plplot_aborted, plplot_msg); /* "aborting operation" messages */
    plinit();
    pic->draw(pic->user);
    plend(); /* writes the image and closes out */
    plsexit(NULL);
    if (plplot_aborted) {
        plplot_msg[strcspn(plplot_msg, "\n")] = '\0';
        return -1;
    }
    return 0;
}

static int device_available(const char *dev) {
    enum { MAX_DEVICES = 128 };
    const char *menus[MAX_DEVICES], *names[MAX_DEVICES];
    const char **pm = menus, **pn = names;
    int n = MAX_DEVICES;
    plgDevs(&pm, &pn, &n);
    for (int i = 0; i < n; i++)
        if (names[i] && strcmp(names[i], dev) == 0) return 1;
    return 0;
}

/* Checks that the image is complete: the format's signature at the start and
 * its closing mark at the end (a PNG's IEND chunk, an SVG's </svg>). */
static int image_complete(const char *buf, size_t len, int svg) {
    if (svg) return len > 16 && strstr(buf, "<svg") && strstr(buf, "</svg>");
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    return len > 64 && memcmp(buf, sig, 8) == 0 && memcmp(buf + len - 8, "IEND", 4) == 0;
}

int report_render(const char *path, const report_picture *pic) {
    int svg = report_image_format(path);
    if (svg < 0) return -1;
    const char *device = svg ? "svgcairo" : "pngcairo";
    /* Without its driver PLplot would list devices on stdout and prompt. */
    if (!device_available(device))
        return nn_error("%s: PLplot driver %s is not installed (Debian: plplot-driver-cairo)", path, device);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    if (!out) return nn_error("%s: %s", path, strerror(errno));
    int rc;
    if (run_plplot(device, out, pic) != 0)
        rc = nn_error("%s: PLplot: %s", path, plplot_msg);
    else if (!buf || !image_complete(buf, len, svg))
        rc = nn_error("%s: PLplot produced an incomplete %s image", path, svg ? "SVG" : "PNG");
    else
        rc = nn_write_file_atomic(path, buf, len);
    free(buf);
    return rc;
}
