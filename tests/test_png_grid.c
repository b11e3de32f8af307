/* PNG grids (runtime/png_grid.c): the file read back with libpng's own
 * reader has the computed size, the background in the padding, each cell's
 * pixels mapped from [-1, 1] to 0..255 (hand-computed values, nearest
 * upscaling), RGB channels in place; bad arguments and an unwritable path
 * give errors and leave no file. */
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/png_grid.h"
#include "test_util.h"

/* The file as rows of bytes (gray or RGB), via libpng's simplified API. */
static uint8_t *read_png(const char *path, int *w, int *h, int *channels) {
  png_image im;
  memset(&im, 0, sizeof im);
  im.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&im, path)) return NULL;
  *channels = (im.format & PNG_FORMAT_FLAG_COLOR) ? 3 : 1;
  im.format = *channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  uint8_t *buf = malloc(PNG_IMAGE_SIZE(im));
  if (!buf || !png_image_finish_read(&im, NULL, buf, 0, NULL)) {
    free(buf);
    return NULL;
  }
  *w = (int)im.width, *h = (int)im.height;
  return buf;
}

int main(void) {
  char dir[] = "/tmp/ldmc-png.XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char path[256];
  snprintf(path, sizeof path, "%s/grid.png", dir);

  /* 3 gray 2x2 images in a 2x2 grid (the 4th cell empty), scale 2, pad 1 */
  const float ims[12] = {-1, 1, 0, 0.5f, /* image 0 */ 1, 1, 1, 1, /* 1 */ -1, -1, -1, -2 /* 2: -2 clips */};
  ldmc_png_grid g = {.images = ims, .n = 3, .channels = 1, .height = 2, .width = 2, .lo = -1, .hi = 1, .rows = 2,
                     .cols = 2, .scale = 2, .pad = 1, .background = 200};
  CHECK_MSG(ldmc_png_grid_write(path, &g) == LDMC_OK, "%s", ldmc_last_error());
  int w = 0, h = 0, ch = 0;
  uint8_t *px = read_png(path, &w, &h, &ch);
  CHECK_MSG(px != NULL, "libpng cannot read %s back", path);
  if (px) {
    CHECK_MSG(w == 2 * 4 + 3 && h == 2 * 4 + 3 && ch == 1, "size %dx%d, %d channels", w, h, ch);
    CHECK(px[0] == 200 && px[w * h - 1] == 200);           /* corners: padding */
    CHECK(px[1 * w + 1] == 0 && px[2 * w + 2] == 0);       /* image 0 (0,0) = -1, upscaled 2x */
    CHECK(px[1 * w + 3] == 255 && px[2 * w + 4] == 255);   /* (0,1) = 1 */
    CHECK(px[3 * w + 1] == 128);                           /* (1,0) = 0 -> 127.5 rounds to even 128 */
    CHECK(px[3 * w + 3] == 191);                           /* (1,1) = 0.5 -> 191.25 */
    CHECK(px[1 * w + 6] == 255);                           /* image 1, cell (0,1) from x = 1 + 4 + 1 */
    CHECK(px[6 * w + 1] == 0 && px[7 * w + 3] == 0);       /* image 2, cell (1,0); -2 clips to 0 */
    CHECK(px[6 * w + 6] == 200);                           /* the empty cell is background */
    free(px);
  }

  /* RGB */
  float rgb[3] = {1, -1, 0}; /* one 1x1 image: R 255, G 0, B 128 */
  ldmc_png_grid c = {.images = rgb, .n = 1, .channels = 3, .height = 1, .width = 1, .lo = -1, .hi = 1, .rows = 1,
                     .cols = 1, .scale = 1, .pad = 0};
  CHECK(ldmc_png_grid_write(path, &c) == LDMC_OK);
  px = read_png(path, &w, &h, &ch);
  CHECK(px && w == 1 && h == 1 && ch == 3 && px[0] == 255 && px[1] == 0 && px[2] == 128);
  free(px);

  /* labels: a column left of the cells, ink (dark pixels) only there, the cells unchanged */
  const char *labels[2] = {"sneaker", "bag"};
  ldmc_png_grid l = g;
  l.row_labels = labels;
  int64_t lw64 = 0, lh64 = 0;
  ldmc_png_grid_size(&l, &lw64, &lh64);
  CHECK_MSG(lw64 > 11 && lh64 == 11, "labelled grid %lldx%lld", (long long)lw64, (long long)lh64);
  CHECK(ldmc_png_grid_write(path, &l) == LDMC_OK);
  px = read_png(path, &w, &h, &ch);
  CHECK(px && w == lw64 && h == lh64);
  if (px) {
    int lab = w - 11, dark = 0;
    for (int y = 0; y < h; y++)
      for (int x = 0; x < lab; x++) dark += px[y * w + x] < 100;
    CHECK_MSG(dark > 5, "the label column has %d dark pixels", dark);
    CHECK(px[1 * w + lab + 1] == 0 && px[1 * w + lab + 3] == 255); /* image 0 as before, shifted */
    free(px);
  }

  /* errors: nothing written */
  ldmc_png_grid bad = g;
  bad.channels = 2;
  CHECK(ldmc_png_grid_write(path, &bad) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "channels"));
  bad = g;
  bad.scale = 0;
  CHECK(ldmc_png_grid_write(path, &bad) == LDMC_ERR_INVALID);
  char nodir[300];
  snprintf(nodir, sizeof nodir, "%s/missing/grid.png", dir);
  CHECK(ldmc_png_grid_write(nodir, &g) != LDMC_OK && strstr(ldmc_last_error(), "missing"));
  CHECK(access(nodir, F_OK) != 0);
  unlink(path);
  rmdir(dir);
  return test_summary("png_grid");
}
