/* Image grids as PNG files (libpng), e.g. one row of samples per prompt.
 * Writes are atomic: a failure leaves no partial file. */
#ifndef LDMC_RUNTIME_PNG_GRID_H
#define LDMC_RUNTIME_PNG_GRID_H

#include <stdint.h>

#include "support/status.h"

typedef struct ldmc_png_grid {
  const float *images; /* [n, channels, height, width], values in [lo, hi] */
  int64_t n, channels, height, width;
  double lo, hi;       /* the value range mapped to 0..255 (clipped): -1, 1 for samples */
  int rows, cols;      /* cells; images fill them row by row (missing ones stay background) */
  int scale;           /* each pixel drawn scale x scale (nearest), >= 1 */
  int pad;             /* background pixels between cells and around the grid */
  uint8_t background;  /* gray level of the padding */
  const char *const *row_labels; /* NULL, or rows strings drawn left of the rows (cairo), black on the background */
} ldmc_png_grid;

/* channels 1 (gray) or 3 (RGB); 8-bit PNG. The message names path. */
ldmc_status ldmc_png_grid_write(const char *path, const ldmc_png_grid *g);

/* The pixel size a grid will have, its label column included (tests). */
void ldmc_png_grid_size(const ldmc_png_grid *g, int64_t *width, int64_t *height);

#endif
