/* What plot.c (the figure and its drawing) and plot_save.c (the files)
 * share; not part of plot.h's API. */
#ifndef LDMC_RUNTIME_PLOT_INTERNAL_H
#define LDMC_RUNTIME_PLOT_INTERNAL_H

#include <cairo.h>

#include "runtime/plot.h"

typedef struct plot_series {
  char *name;
  double *x, *y;
  double *size;  /* a scatter's marker areas in square points; NULL: the style's marker */
  char **label;  /* a scatter's per-point texts (NULL entries: none); NULL: none at all */
  int64_t n;
  bool scatter;       /* added by ldmc_plot_add_scatter */
  ldmc_plot_style st; /* normalized: draw != 0, opacity and line_width set */
  int color;          /* cycle index */
} plot_series;

struct ldmc_plot {
  int w, h;
  char *title, *label[2];
  bool log[2];
  double lo[2], hi[2]; /* NaN: automatic */
  plot_series *s;
  int n, cap;
};

/* Draws the figure onto cr, whose target is p->w x p->h; errors name the
 * series, not the file. */
ldmc_status ldmc_plot_draw(const ldmc_plot *p, cairo_t *cr);
/* Where (x, y) lands when the figure is drawn onto cr (its layout depends on
 * the target's font metrics). */
ldmc_status ldmc_plot_place(const ldmc_plot *p, cairo_t *cr, double x, double y, double *dx, double *dy);

#endif
