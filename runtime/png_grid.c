/* PNG grids through libpng (png_grid.h). */
#include <cairo.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/plot.h"
#include "runtime/png_grid.h"
#include "support/fileio.h"

/* Text size of the labels: a third of a cell's height, at least 10 px. */
static double label_font(const ldmc_png_grid *g) {
  double f = (double)(g->height * (g->scale > 0 ? g->scale : 1)) / 3.0;
  return f < 10 ? 10 : f;
}

/* Width of the label column: the widest label plus a margin, 0 without labels. */
static int64_t label_width(const ldmc_png_grid *g) {
  if (!g->row_labels) return 0;
  cairo_surface_t *sf = cairo_image_surface_create(CAIRO_FORMAT_A8, 1, 1);
  cairo_t *cr = cairo_create(sf);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, label_font(g));
  double w = 0;
  for (int r = 0; r < g->rows; r++) {
    cairo_text_extents_t e;
    cairo_text_extents(cr, g->row_labels[r] ? g->row_labels[r] : "", &e);
    if (e.x_advance > w) w = e.x_advance;
  }
  cairo_destroy(cr);
  cairo_surface_destroy(sf);
  ldmc_plot_release_fonts();
  return (int64_t)ceil(w) + 2 * (g->pad > 4 ? g->pad : 4);
}

void ldmc_png_grid_size(const ldmc_png_grid *g, int64_t *width, int64_t *height) {
  int s = g->scale > 0 ? g->scale : 1;
  *width = label_width(g) + (int64_t)g->cols * g->width * s + (int64_t)(g->cols + 1) * g->pad;
  *height = (int64_t)g->rows * g->height * s + (int64_t)(g->rows + 1) * g->pad;
}

/* Draws the labels into the first lw columns of px (gray or RGB rows of stride bytes). */
static ldmc_status draw_labels(const ldmc_png_grid *g, uint8_t *px, int64_t stride, int64_t cpp, int64_t lw,
                               int64_t H) {
  cairo_surface_t *sf = cairo_image_surface_create(CAIRO_FORMAT_A8, (int)lw, (int)H);
  if (cairo_surface_status(sf) != CAIRO_STATUS_SUCCESS) {
    cairo_surface_destroy(sf);
    return ldmc_error(LDMC_ERR_NOMEM, "grid labels: cairo: out of memory");
  }
  cairo_t *cr = cairo_create(sf);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, label_font(g));
  int s = g->scale;
  for (int r = 0; r < g->rows; r++) {
    const char *t = g->row_labels[r] ? g->row_labels[r] : "";
    cairo_text_extents_t e;
    cairo_text_extents(cr, t, &e);
    double cy = g->pad + r * (double)(g->height * s + g->pad) + (double)(g->height * s) / 2;
    cairo_move_to(cr, (g->pad > 4 ? g->pad : 4), cy - e.y_bearing - e.height / 2);
    cairo_show_text(cr, t);
  }
  cairo_surface_flush(sf);
  const uint8_t *a = cairo_image_surface_get_data(sf);
  int as = cairo_image_surface_get_stride(sf);
  for (int64_t y = 0; y < H; y++) /* coverage a: ink over the background */
    for (int64_t x = 0; x < lw; x++) {
      uint8_t v = (uint8_t)((int)g->background * (255 - a[y * as + x]) / 255);
      for (int64_t ch = 0; ch < cpp; ch++) px[y * stride + x * cpp + ch] = v;
    }
  cairo_destroy(cr);
  cairo_surface_destroy(sf);
  return LDMC_OK;
}

typedef struct sink {
  ldmc_atomic_file *f;
  ldmc_status st;
} sink;

static void on_write(png_structp png, png_bytep data, size_t len) {
  sink *s = png_get_io_ptr(png);
  if (s->st == LDMC_OK) s->st = ldmc_atomic_write(s->f, data, len);
}

static void on_flush(png_structp png) { (void)png; }

static void on_error(png_structp png, png_const_charp msg) {
  ldmc_error(LDMC_ERR_IO, "libpng: %s", msg);
  png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg) {
  (void)png, (void)msg;
}

static uint8_t to_byte(double v, double lo, double hi) {
  double t = (v - lo) / (hi - lo) * 255.0;
  if (!(t > 0)) return 0; /* NaN too */
  return t >= 255 ? 255 : (uint8_t)lrint(t);
}

ldmc_status ldmc_png_grid_write(const char *path, const ldmc_png_grid *g) {
  if (!g->images || g->n < 1 || (g->channels != 1 && g->channels != 3) || g->height < 1 || g->width < 1 ||
      g->rows < 1 || g->cols < 1 || g->scale < 1 || g->pad < 0 || !(g->hi > g->lo))
    return ldmc_error(LDMC_ERR_INVALID, "%s: a grid needs images, 1 or 3 channels, rows, cols, scale >= 1 and lo < hi",
                      path);
  int64_t W, H;
  ldmc_png_grid_size(g, &W, &H);
  if (W > 1 << 16 || H > 1 << 16)
    return ldmc_error(LDMC_ERR_INVALID, "%s: a %lldx%lld grid is larger than 65536 pixels a side", path, (long long)W,
                      (long long)H);
  int64_t cpp = g->channels, stride = W * cpp;
  uint8_t *px = malloc((size_t)(stride * H));
  png_bytep *rows = malloc((size_t)H * sizeof *rows);
  if (!px || !rows) {
    free(px), free(rows);
    return ldmc_error(LDMC_ERR_NOMEM, "%s: out of memory for a %lldx%lld grid", path, (long long)W, (long long)H);
  }
  memset(px, g->background, (size_t)(stride * H));
  int s = g->scale;
  int64_t cells = (int64_t)g->rows * g->cols, lw = label_width(g);
  for (int64_t i = 0; i < g->n && i < cells; i++) {
    int64_t r = i / g->cols, c = i % g->cols;
    int64_t x0 = lw + g->pad + c * (g->width * s + g->pad), y0 = g->pad + r * (g->height * s + g->pad);
    const float *im = g->images + i * g->channels * g->height * g->width;
    for (int64_t y = 0; y < g->height * s; y++)
      for (int64_t x = 0; x < g->width * s; x++)
        for (int64_t ch = 0; ch < cpp; ch++)
          px[(y0 + y) * stride + (x0 + x) * cpp + ch] =
              to_byte(im[(ch * g->height + y / s) * g->width + x / s], g->lo, g->hi);
  }
  for (int64_t y = 0; y < H; y++) rows[y] = px + y * stride;
  if (lw > 0) {
    ldmc_status ls = draw_labels(g, px, stride, cpp, lw, H);
    ldmc_plot_release_fonts();
    if (ls != LDMC_OK) {
      free(px), free(rows);
      return ls;
    }
  }

  ldmc_atomic_file *f = NULL;
  ldmc_status st = ldmc_atomic_open(path, &f);
  png_structp png = st == LDMC_OK ? png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, on_error, on_warning) : NULL;
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (st == LDMC_OK && (!png || !info)) st = ldmc_error(LDMC_ERR_NOMEM, "%s: libpng: out of memory", path);
  sink sk = {f, LDMC_OK};
  if (st == LDMC_OK) {
    if (setjmp(png_jmpbuf(png))) {
      st = LDMC_ERR_IO;
      ldmc_error_prefix("%s: ", path);
    } else {
      png_set_write_fn(png, &sk, on_write, on_flush);
      png_set_IHDR(png, info, (png_uint_32)W, (png_uint_32)H, 8, cpp == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB,
                   PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
      png_write_info(png, info);
      png_write_image(png, rows);
      png_write_end(png, info);
      st = sk.st;
    }
  }
  if (png) png_destroy_write_struct(&png, info ? &info : NULL);
  if (st == LDMC_OK) st = ldmc_atomic_commit(f);
  else ldmc_atomic_abort(f);
  free(px), free(rows);
  return st;
}
