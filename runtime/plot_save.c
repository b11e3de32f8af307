/* Plot files (see plot.h): the figure is drawn into an SVG or image surface
 * that writes to memory; the bytes then go to the destination in one atomic
 * write, so no failure leaves a partial file. */
#include <cairo-svg.h>
#include <cairo.h>
#include <fontconfig/fontconfig.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/plot_internal.h"
#include "support/fileio.h"

typedef struct membuf {
  unsigned char *data;
  size_t len, cap;
} membuf;

static cairo_status_t mem_write(void *closure, const unsigned char *data, unsigned int len) {
  membuf *b = closure;
  if (b->len + len > b->cap) {
    size_t cap = b->cap ? b->cap : 1 << 16;
    while (cap < b->len + len) cap *= 2;
    unsigned char *d = realloc(b->data, cap);
    if (!d) return CAIRO_STATUS_NO_MEMORY;
    b->data = d, b->cap = cap;
  }
  memcpy(b->data + b->len, data, len);
  b->len += len;
  return CAIRO_STATUS_SUCCESS;
}

static bool mem_puts(membuf *b, const char *s) {
  return mem_write(b, (const unsigned char *)s, (unsigned)strlen(s)) == CAIRO_STATUS_SUCCESS;
}

static bool mem_puts_xml(membuf *b, const char *s) {
  for (; *s; s++) {
    const char *e = *s == '&' ? "&amp;" : *s == '<' ? "&lt;" : *s == '>' ? "&gt;" : NULL;
    if (mem_write(b, (const unsigned char *)(e ? e : s), e ? (unsigned)strlen(e) : 1) != CAIRO_STATUS_SUCCESS)
      return false;
  }
  return true;
}

/* cairo draws text as glyph outlines: <title> and <desc> keep the figure's
 * words in the file (searchable, read by screen readers), right after <svg ...>. */
static ldmc_status svg_metadata(const ldmc_plot *p, membuf *in, membuf *out) {
  const unsigned char *svg = NULL;
  for (size_t i = 0; i + 4 < in->len && !svg; i++)
    if (memcmp(in->data + i, "<svg", 4) == 0) svg = in->data + i;
  const unsigned char *gt = svg ? memchr(svg, '>', in->len - (size_t)(svg - in->data)) : NULL;
  if (!gt) return ldmc_error(LDMC_ERR_INTERNAL, "cairo's SVG output has no <svg> element");
  size_t head = (size_t)(gt + 1 - in->data);
  bool ok = mem_write(out, in->data, (unsigned)head) == CAIRO_STATUS_SUCCESS &&
            mem_puts(out, "\n<title>") && mem_puts_xml(out, p->title ? p->title : "plot") &&
            mem_puts(out, "</title>\n<desc>legend:");
  for (int i = 0, k = 0; i < p->n && ok; i++)
    if (!p->s[i].st.no_legend) ok = mem_puts(out, k++ ? "; " : " ") && mem_puts_xml(out, p->s[i].name);
  ok = ok && mem_puts(out, "</desc>") &&
       mem_write(out, in->data + head, (unsigned)(in->len - head)) == CAIRO_STATUS_SUCCESS;
  return ok ? LDMC_OK : ldmc_error(LDMC_ERR_NOMEM, "out of memory writing the SVG");
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n > k && strcmp(s + n - k, suffix) == 0;
}

ldmc_status ldmc_plot_save(const ldmc_plot *p, const char *path) {
  char q[512];
  ldmc_quote(path, q, sizeof q);
  bool svg = ends_with(path, ".svg"), png = ends_with(path, ".png");
  if (!svg && !png) return ldmc_error(LDMC_ERR_INVALID, "plot '%s': unknown extension (expected .svg or .png)", q);
  if (p->n == 0) return ldmc_error(LDMC_ERR_INVALID, "plot '%s': no series to draw", q);
  membuf buf = {0}, out = {0};
  cairo_surface_t *surf = svg ? cairo_svg_surface_create_for_stream(mem_write, &buf, p->w, p->h)
                              : cairo_image_surface_create(CAIRO_FORMAT_RGB24, p->w, p->h);
  cairo_t *cr = cairo_create(surf);
  ldmc_status rc = ldmc_plot_draw(p, cr); /* errors here name the series, not the file */
  if (rc != LDMC_OK) ldmc_error_prefix("plot '%s': ", q);
  cairo_status_t cs = cairo_status(cr);
  cairo_destroy(cr);
  if (rc == LDMC_OK && cs == CAIRO_STATUS_SUCCESS) {
    if (svg) cairo_surface_finish(surf);
    else cs = cairo_surface_write_to_png_stream(surf, mem_write, &buf);
    if (cs == CAIRO_STATUS_SUCCESS) cs = cairo_surface_status(surf);
  }
  cairo_surface_destroy(surf);
  ldmc_plot_release_fonts();
  if (rc == LDMC_OK && cs != CAIRO_STATUS_SUCCESS)
    rc = ldmc_error(cs == CAIRO_STATUS_NO_MEMORY ? LDMC_ERR_NOMEM : LDMC_ERR_INTERNAL, "plot '%s': cairo: %s", q,
                    cairo_status_to_string(cs));
  if (rc == LDMC_OK && svg) rc = svg_metadata(p, &buf, &out);
  if (rc == LDMC_OK) {
    const membuf *b = svg ? &out : &buf;
    rc = ldmc_file_write_atomic(path, b->data, b->len);
  }
  free(buf.data);
  free(out.data);
  return rc;
}

static cairo_status_t discard(void *closure, const unsigned char *data, unsigned int len) {
  (void)closure, (void)data, (void)len;
  return CAIRO_STATUS_SUCCESS;
}

ldmc_status ldmc_plot_locate(const ldmc_plot *p, const char *path, double x, double y, double *px, double *py) {
  char q[512];
  ldmc_quote(path, q, sizeof q);
  bool svg = ends_with(path, ".svg"), png = ends_with(path, ".png");
  if (!svg && !png) return ldmc_error(LDMC_ERR_INVALID, "plot '%s': unknown extension (expected .svg or .png)", q);
  /* the same kind of surface as ldmc_plot_save's: their font metrics differ */
  cairo_surface_t *surf = svg ? cairo_svg_surface_create_for_stream(discard, NULL, p->w, p->h)
                              : cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1);
  cairo_t *cr = cairo_create(surf);
  ldmc_status rc = ldmc_plot_place(p, cr, x, y, px, py);
  if (rc != LDMC_OK) ldmc_error_prefix("plot '%s': ", q);
  cairo_status_t cs = cairo_status(cr);
  cairo_destroy(cr);
  cairo_surface_destroy(surf);
  ldmc_plot_release_fonts();
  if (rc == LDMC_OK && cs != CAIRO_STATUS_SUCCESS)
    rc = ldmc_error(LDMC_ERR_INTERNAL, "plot '%s': cairo: %s", q, cairo_status_to_string(cs));
  return rc;
}

/* cairo's font caches and fontconfig's configuration would otherwise stay
 * allocated for the life of the process (reported by LeakSanitizer); the
 * next use reloads them, a few milliseconds */
void ldmc_plot_release_fonts(void) {
  cairo_debug_reset_static_data();
  FcFini();
}
