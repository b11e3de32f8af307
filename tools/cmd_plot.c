/* ldmc plot: line plots of CSV columns (a training run's DIR/log.csv, or any
 * table with a header) through runtime/plot.h, as SVG or PNG. Several CSV
 * files share one plot, their series named after each file's folder. The
 * CSV reader is strict where a mistake would mislead (cell counts, numbers)
 * and lenient where a file is normally incomplete (empty cells; a last line
 * that training is still writing). */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/plot.h"
#include "support/fileio.h"
#include "tools/cli_args.h"
#include "tools/cli_io.h"
#include "tools/commands.h"

enum { F_OUT, F_X, F_Y, F_LOG_X, F_LOG_Y, F_TITLE, F_XLABEL, F_YLABEL, F_SMOOTH, F_LABELS, F_SIZE, F_COUNT };

static ldmc_cli_flag k_flags[F_COUNT] = {
    [F_OUT] = {"out", "FILE", "the plot: FILE.svg (vector) or FILE.png (800 x 500 pixels unless --size), written\n"
                              "atomically: on any error no file (an existing one stays as it was)"},
    [F_X] = {"x", "COLUMN", "the x column (default step)"},
    [F_Y] = {"y", "COL[,COL..]", "the columns to plot (default: loss, and val_loss when it has values)"},
    [F_LOG_X] = {"log-x", NULL, "logarithmic x axis (points with x <= 0 are left out)"},
    [F_LOG_Y] = {"log-y", NULL, "logarithmic y axis (points with y <= 0 are left out)"},
    [F_TITLE] = {"title", "TEXT", "the title (default: the CSV's path when there is one file)"},
    [F_XLABEL] = {"xlabel", "TEXT", "the x axis label (default: the x column's name)"},
    [F_YLABEL] = {"ylabel", "TEXT", "the y axis label (default: the y column's name, or the names joined)"},
    [F_SMOOTH] = {"smooth", "N", "also draw each column that has a value on every row as a centred moving\n"
                                 "average over N rows, the raw values faint behind it"},
    [F_LABELS] = {"labels", "NAME,..", "one name per CSV, in order, for its series (default: the CSV's folder name)"},
    [F_SIZE] = {"size", "WxH", "the figure's size in pixels (PNG) or points (SVG), each in [100, 10000]"},
};

static ldmc_cli_cmd k_cmd = {
    .name = "plot",
    .usage = "CSV... --out FILE.svg|FILE.png [--x COLUMN] [--y COL[,COL..]] [--log-x] [--log-y] [--smooth N]\n"
             " [--title TEXT] [--xlabel TEXT] [--ylabel TEXT] [--labels NAME,..] [--size WxH]",
    .summary = "line plots of CSV columns (training logs: loss, validation) as SVG or PNG",
    .details = "CSV: up to 8 files with a header line naming the columns, numeric cells, empty cells for missing\n"
               "values (a column's missing rows are skipped, so the validation points join up); a last line\n"
               "without a newline that does not parse is skipped with a warning (a log still being written).\n"
               "With several files (or --labels) each series is named 'NAME: COLUMN', NAME the file's folder;\n"
               "each file gets a color and each column a dash pattern. Series of at most 50 points get markers.\n"
               "Examples:\n"
               "  ldmc plot runs/cls/log.csv --out loss.svg\n"
               "  ldmc plot runs/cls/log.csv --y val_accuracy --out acc.png\n"
               "  ldmc plot runs/w32/log.csv runs/w64/log.csv --log-y --smooth 20 --out widths.svg\n",
    .flags = k_flags,
    .n_flags = F_COUNT,
    .min_pos = 1,
    .max_pos = 8,
};

/* ---- CSV ---- */

typedef struct table {
  const char *path;
  char **names;
  int ncol;
  double *v; /* nrows x ncol, NaN where a cell is empty */
  int64_t nrows, cap;
} table;

static void table_free(table *t) {
  for (int i = 0; i < t->ncol; i++) free(t->names[i]);
  free(t->names);
  free(t->v);
  memset(t, 0, sizeof *t);
}

/* The cell [s, e) without surrounding blanks. */
static void trim(const char **s, const char **e) {
  while (*s < *e && (**s == ' ' || **s == '\t')) (*s)++;
  while (*e > *s && ((*e)[-1] == ' ' || (*e)[-1] == '\t')) (*e)--;
}

static int count_cells(const char *s, const char *e) {
  int n = 1;
  for (; s < e; s++) n += *s == ',';
  return n;
}

static bool parse_number(const char *s, const char *e, double *out) {
  char buf[64];
  size_t n = (size_t)(e - s);
  if (n == 0 || n >= sizeof buf) return false;
  memcpy(buf, s, n);
  buf[n] = '\0';
  char *end = NULL;
  errno = 0;
  double v = strtod(buf, &end);
  if (end != buf + n || (errno == ERANGE && fabs(v) > 1)) return false; /* underflow to 0 is fine */
  *out = v;
  return true;
}

/* "columns: a, b, c" for messages (names quoted, the list cut to fit). */
static void column_list(const table *t, char *buf, size_t len) {
  size_t w = (size_t)snprintf(buf, len, "columns:");
  for (int i = 0; i < t->ncol && w < len; i++) {
    char q[80];
    w += (size_t)snprintf(buf + w, len - w, "%s %s", i ? "," : "", ldmc_quote(t->names[i], q, sizeof q));
  }
}

static ldmc_status read_header(table *t, const char *qp, int64_t line, const char *s, const char *e) {
  t->ncol = count_cells(s, e);
  if (!(t->names = calloc((size_t)t->ncol, sizeof *t->names))) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  for (int c = 0; c < t->ncol; c++) {
    const char *ce = memchr(s, ',', (size_t)(e - s));
    if (!ce) ce = e;
    const char *cs = s, *cend = ce;
    trim(&cs, &cend);
    double num;
    char q[80];
    if (cs == cend)
      return ldmc_error(LDMC_ERR_PARSE, "%s:%lld: column %d of the header has no name", qp, (long long)line, c + 1);
    if (parse_number(cs, cend, &num))
      return ldmc_error(LDMC_ERR_PARSE,
                        "%s:%lld: column %d of the header is the number '%.*s': the first line must name the columns",
                        qp, (long long)line, c + 1, (int)(cend - cs), cs);
    if (!(t->names[c] = strndup(cs, (size_t)(cend - cs)))) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
    for (int k = 0; k < c; k++)
      if (strcmp(t->names[k], t->names[c]) == 0)
        return ldmc_error(LDMC_ERR_PARSE, "%s:%lld: column '%s' appears twice (columns %d and %d)", qp,
                          (long long)line, ldmc_quote(t->names[c], q, sizeof q), k + 1, c + 1);
    s = ce + 1;
  }
  return LDMC_OK;
}

/* One data line into the next row. */
static ldmc_status read_row(table *t, const char *qp, int64_t line, const char *s, const char *e) {
  int n = count_cells(s, e);
  if (n != t->ncol)
    return ldmc_error(LDMC_ERR_PARSE, "%s:%lld: %d cell%s, the header names %d columns", qp, (long long)line, n,
                      n == 1 ? "" : "s", t->ncol);
  if (t->nrows == t->cap) {
    int64_t cap = t->cap ? 2 * t->cap : 256;
    double *v = realloc(t->v, (size_t)cap * (size_t)t->ncol * sizeof *v);
    if (!v) return ldmc_error(LDMC_ERR_NOMEM, "%s: out of memory at line %lld", qp, (long long)line);
    t->v = v, t->cap = cap;
  }
  double *row = t->v + t->nrows * t->ncol;
  for (int c = 0; c < t->ncol; c++) {
    const char *ce = memchr(s, ',', (size_t)(e - s));
    if (!ce) ce = e;
    const char *cs = s, *cend = ce;
    trim(&cs, &cend);
    row[c] = NAN;
    if (cs != cend && !parse_number(cs, cend, &row[c])) {
      char q[80], cell[48], qc[200];
      int k = (int)(cend - cs);
      snprintf(cell, sizeof cell, "%.*s", k > 40 ? 40 : k, cs);
      return ldmc_error(LDMC_ERR_PARSE, "%s:%lld: column %d '%s': '%s%s' is not a number", qp, (long long)line, c + 1,
                        ldmc_quote(t->names[c], q, sizeof q), ldmc_quote(cell, qc, sizeof qc), k > 40 ? "..." : "");
    }
    s = ce + 1;
  }
  t->nrows++;
  return LDMC_OK;
}

static ldmc_status read_csv(const char *path, table *t) {
  memset(t, 0, sizeof *t);
  t->path = path;
  char qp[256];
  ldmc_quote(path, qp, sizeof qp);
  uint8_t *data;
  size_t len;
  LDMC_TRY(ldmc_file_read(path, (size_t)1 << 30, &data, &len));
  const char *buf = (const char *)data, *end = buf + len;
  ldmc_status s = LDMC_OK;
  if (memchr(buf, '\0', len))
    s = ldmc_error(LDMC_ERR_PARSE, "%s: not a text file (a NUL byte at offset %ld)", qp,
                   (long)((const char *)memchr(buf, '\0', len) - buf));
  bool header = false;
  int64_t line = 0;
  for (const char *p = buf; s == LDMC_OK && p < end; line++) {
    const char *nl = memchr(p, '\n', (size_t)(end - p)), *e = nl ? nl : end, *next = nl ? nl + 1 : end;
    if (e > p && e[-1] == '\r') e--;
    const char *ts = p, *te = e;
    trim(&ts, &te);
    p = next;
    if (ts == te) continue; /* blank lines */
    if (!header) {
      s = read_header(t, qp, line + 1, ts, te);
      header = true;
      continue;
    }
    s = read_row(t, qp, line + 1, ts, te);
    if (s != LDMC_OK && !nl) { /* the last line, unterminated: a writer may be in the middle of it */
      fprintf(stderr, "ldmc plot: warning: %s (an unfinished last line: skipped)\n", ldmc_last_error());
      s = LDMC_OK;
    }
  }
  if (s == LDMC_OK && !header) s = ldmc_error(LDMC_ERR_PARSE, "%s: empty (no header line naming the columns)", qp);
  free(data);
  return s;
}

static int find_column(const table *t, const char *name) {
  for (int c = 0; c < t->ncol; c++)
    if (strcmp(t->names[c], name) == 0) return c;
  return -1;
}

static int64_t count_values(const table *t, int c) {
  int64_t n = 0;
  for (int64_t r = 0; r < t->nrows; r++) n += isfinite(t->v[r * t->ncol + c]);
  return n;
}

/* ---- series ---- */

#define MAX_Y 16

/* The parent folder's name of path ("runs/w32/log.csv" -> "w32"). */
static void folder_name(const char *path, char *buf, size_t len) {
  char dir[PATH_MAX], real[PATH_MAX];
  const char *slash = strrchr(path, '/');
  if (!slash) snprintf(dir, sizeof dir, ".");
  else if (slash == path) snprintf(dir, sizeof dir, "/");
  else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
  const char *d = realpath(dir, real) ? real : dir;
  const char *base = strrchr(d, '/');
  base = base && base[1] ? base + 1 : d;
  snprintf(buf, len, "%.*s", (int)(len - 1), base);
}

/* Splits "a,b,c" into at most max non-empty parts (pointers into a copy). */
static int split_list(const ldmc_cli_cmd *c, const char *flag, const char *s, char *copy, size_t cap, char **parts,
                      int max, int *n) {
  *n = 0;
  if (strlen(s) >= cap) return ldmc_cli_usage_error(c, "--%s: the list is too long", flag);
  strcpy(copy, s);
  for (char *p = copy;;) {
    char *comma = strchr(p, ',');
    if (comma) *comma = '\0';
    if (!*p) return ldmc_cli_usage_error(c, "--%s %s: an empty name in the list", flag, s);
    if (*n == max) return ldmc_cli_usage_error(c, "--%s %s: more than %d names", flag, s, max);
    parts[(*n)++] = p;
    if (!comma) break;
    p = comma + 1;
  }
  return LDMC_CLI_CONTINUE;
}

/* The centred moving average of v over w rows (fewer at the ends). */
static void moving_average(const double *v, int64_t n, int64_t w, double *out) {
  int64_t before = (w - 1) / 2, after = w / 2;
  double sum = 0;
  int64_t lo = 0, hi = 0; /* sum over v[lo, hi) */
  for (int64_t i = 0; i < n; i++) {
    int64_t a = i - before < 0 ? 0 : i - before, b = i + after + 1 > n ? n : i + after + 1;
    while (hi < b) sum += v[hi++];
    while (lo < a) sum -= v[lo++];
    out[i] = sum / (double)(b - a);
  }
}

typedef struct plot_job {
  ldmc_plot *plot;
  int64_t smooth;
  bool several;
  int n_series;
  int64_t n_points;
} plot_job;

/* Adds column yc of t against column xc (rows where either is missing are left out). */
static ldmc_status add_column(plot_job *job, const table *t, const char *prefix, int xc, int yc, int file, int col) {
  int64_t n = 0, rows_with_x = 0;
  double *x = malloc((size_t)(t->nrows ? t->nrows : 1) * sizeof *x * 3);
  if (!x) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  double *y = x + t->nrows, *avg = y + t->nrows;
  for (int64_t r = 0; r < t->nrows; r++) {
    double xv = t->v[r * t->ncol + xc], yv = t->v[r * t->ncol + yc];
    rows_with_x += isfinite(xv);
    if (!isfinite(xv) || !isfinite(yv)) continue;
    x[n] = xv, y[n] = yv, n++;
  }
  char name[256], q[200], qn[80], qx[80];
  ldmc_quote(t->names[yc], qn, sizeof qn);
  ldmc_quote(t->names[xc], qx, sizeof qx);
  if (job->several) snprintf(name, sizeof name, "%.100s: %.100s", prefix, t->names[yc]);
  else snprintf(name, sizeof name, "%.200s", t->names[yc]);
  ldmc_status s = LDMC_OK;
  if (n == 0) {
    s = ldmc_error(LDMC_ERR_INVALID, "%s: column '%s' has no value on a row with a '%s' value (%lld rows)",
                   ldmc_quote(t->path, q, sizeof q), qn, qx, (long long)t->nrows);
    free(x);
    return s;
  }
  static const ldmc_plot_dash k_dash[3] = {LDMC_PLOT_SOLID, LDMC_PLOT_DASHED, LDMC_PLOT_DOTTED};
  ldmc_plot_style st = {.draw = n <= 50 ? LDMC_PLOT_LINE | LDMC_PLOT_MARKERS : LDMC_PLOT_LINE};
  if (job->several) st.color = LDMC_PLOT_COLOR(file), st.dash = k_dash[col % 3];
  bool smooth = job->smooth > 1 && n == rows_with_x; /* dense columns only */
  if (smooth) {
    ldmc_plot_style raw = st;
    raw.opacity = 0.25, raw.no_legend = true, raw.draw = LDMC_PLOT_LINE, raw.line_width = 1;
    int idx = 0;
    s = ldmc_plot_add_series(job->plot, name, x, y, n, &raw, &idx);
    if (s == LDMC_OK) {
      st.color = LDMC_PLOT_COLOR(ldmc_plot_series_color(job->plot, idx));
      moving_average(y, n, job->smooth, avg);
      size_t k = strlen(name);
      snprintf(name + k, sizeof name - k, " (mean of %lld)", (long long)job->smooth);
      s = ldmc_plot_add_series(job->plot, name, x, avg, n, &st, NULL);
      job->n_series++;
    }
  } else {
    s = ldmc_plot_add_series(job->plot, name, x, y, n, &st, NULL);
  }
  if (s == LDMC_OK) job->n_series++, job->n_points += n;
  free(x);
  return s;
}

int ldmc_cmd_plot(int argc, char **argv) {
  int rc = ldmc_cli_parse(&k_cmd, argc, argv);
  if (rc != LDMC_CLI_CONTINUE) return rc;
  const char *out = k_flags[F_OUT].value;
  if (!out) return ldmc_cli_usage_error(&k_cmd, "missing --out FILE.svg|FILE.png (see ldmc plot --help)");
  static const char *const exts[] = {".svg", ".png", NULL};
  if ((rc = ldmc_tool_check_output(&k_cmd, "--out", out, exts)) != LDMC_CLI_CONTINUE) return rc;
  int64_t smooth = 0, size[2] = {0, 0};
  if ((rc = ldmc_cli_int(&k_cmd, "smooth", 1, 1000000, &smooth)) != LDMC_CLI_CONTINUE) return rc;
  if ((rc = ldmc_cli_dims(&k_cmd, "size", 2, 10000, size)) != LDMC_CLI_CONTINUE) return rc;
  if (size[0] && (size[0] < 100 || size[1] < 100))
    return ldmc_cli_usage_error(&k_cmd, "--size %s: each side must be in [100, 10000]", k_flags[F_SIZE].value);
  char ycopy[1024], lcopy[1024], *ycols[MAX_Y], *labels[8];
  int ny = 0, nl = 0, nf = k_cmd.n_pos;
  if (k_flags[F_Y].value &&
      (rc = split_list(&k_cmd, "y", k_flags[F_Y].value, ycopy, sizeof ycopy, ycols, MAX_Y, &ny)) != LDMC_CLI_CONTINUE)
    return rc;
  if (k_flags[F_LABELS].value) {
    if ((rc = split_list(&k_cmd, "labels", k_flags[F_LABELS].value, lcopy, sizeof lcopy, labels, 8, &nl)) !=
        LDMC_CLI_CONTINUE)
      return rc;
    if (nl != nf)
      return ldmc_cli_usage_error(&k_cmd, "--labels %s: %d name%s for %d CSV file%s", k_flags[F_LABELS].value, nl,
                                  nl == 1 ? "" : "s", nf, nf == 1 ? "" : "s");
  }
  for (int i = 0; i < nf; i++)
    if (ldmc_tool_same_file(k_cmd.pos[i], out))
      return ldmc_cli_usage_error(&k_cmd, "--out %s is also an input CSV", out);
  const char *xname = k_flags[F_X].value ? k_flags[F_X].value : "step";

  table tabs[8];
  memset(tabs, 0, sizeof tabs);
  char prefix[8][128];
  plot_job job = {.smooth = smooth, .several = nf > 1 || nl > 0};
  ldmc_status s = ldmc_plot_create((int)size[0], (int)size[1], &job.plot);
  char cols[1024], q[200], qn[80];
  for (int i = 0; i < nf && s == LDMC_OK; i++) {
    if ((s = read_csv(k_cmd.pos[i], &tabs[i])) != LDMC_OK) break;
    if (nl) snprintf(prefix[i], sizeof prefix[i], "%s", labels[i]);
    else folder_name(k_cmd.pos[i], prefix[i], sizeof prefix[i]);
  }
  /* two files in folders of the same name: their paths as given tell them apart */
  for (int i = 0; i < nf && s == LDMC_OK && !nl; i++)
    for (int j = 0; j < i; j++)
      if (strcmp(prefix[i], prefix[j]) == 0) {
        for (int k = 0; k < nf; k++) snprintf(prefix[k], sizeof prefix[k], "%s", k_cmd.pos[k]);
        i = nf;
        break;
      }
  for (int i = 0; i < nf && s == LDMC_OK; i++) {
    const table *t = &tabs[i];
    ldmc_quote(t->path, q, sizeof q);
    int xc = find_column(t, xname);
    if (xc < 0) {
      column_list(t, cols, sizeof cols);
      s = ldmc_error(LDMC_ERR_INVALID, "%s has no x column '%s' (%s)", q, ldmc_quote(xname, qn, sizeof qn), cols);
      break;
    }
    int yc[MAX_Y], n = 0;
    if (ny) {
      for (int k = 0; k < ny && s == LDMC_OK; k++)
        if ((yc[n++] = find_column(t, ycols[k])) < 0) {
          column_list(t, cols, sizeof cols);
          s = ldmc_error(LDMC_ERR_INVALID, "%s has no column '%s' (%s)", q, ldmc_quote(ycols[k], qn, sizeof qn), cols);
        }
    } else {
      if ((yc[0] = find_column(t, "loss")) < 0) {
        column_list(t, cols, sizeof cols);
        s = ldmc_error(LDMC_ERR_INVALID, "%s has no column 'loss' to plot by default: choose with --y (%s)", q, cols);
      }
      n = 1;
      int v = find_column(t, "val_loss");
      if (v >= 0 && count_values(t, v) > 0) yc[n++] = v;
    }
    for (int k = 0; k < n && s == LDMC_OK; k++) s = add_column(&job, t, prefix[i], xc, yc[k], i, k);
  }
  /* texts: the user's, or what the data suggests */
  if (s == LDMC_OK) s = ldmc_plot_set_label(job.plot, LDMC_PLOT_X, k_flags[F_XLABEL].value ? k_flags[F_XLABEL].value : xname);
  if (s == LDMC_OK && k_flags[F_YLABEL].value) s = ldmc_plot_set_label(job.plot, LDMC_PLOT_Y, k_flags[F_YLABEL].value);
  else if (s == LDMC_OK) {
    char yl[128] = "";
    const char *one = ny ? ycols[0] : "loss";
    if (ny <= 1) snprintf(yl, sizeof yl, "%s", one);
    for (int k = 0; k < ny && ny > 1; k++) {
      size_t w = strlen(yl);
      snprintf(yl + w, sizeof yl - w, "%s%s", k ? ", " : "", ycols[k]);
    }
    if (strlen(yl) < 60) s = ldmc_plot_set_label(job.plot, LDMC_PLOT_Y, yl);
  }
  if (s == LDMC_OK && k_flags[F_TITLE].value) s = ldmc_plot_set_title(job.plot, k_flags[F_TITLE].value);
  else if (s == LDMC_OK && nf == 1 && ldmc_plot_set_title(job.plot, k_cmd.pos[0]) != LDMC_OK)
    ldmc_error_clear(); /* an unprintable path: no title */
  if (s == LDMC_OK) {
    ldmc_plot_set_log(job.plot, LDMC_PLOT_X, k_flags[F_LOG_X].value != NULL);
    ldmc_plot_set_log(job.plot, LDMC_PLOT_Y, k_flags[F_LOG_Y].value != NULL);
    s = ldmc_plot_save(job.plot, out);
  }
  ldmc_plot_free(job.plot);
  for (int i = 0; i < nf; i++) table_free(&tabs[i]);
  if (s != LDMC_OK) return ldmc_cli_fail(&k_cmd, "%s", ldmc_last_error());
  char what[160];
  snprintf(what, sizeof what, "plot of %d series (%lld points) from %d CSV file%s", job.n_series,
           (long long)job.n_points, nf, nf == 1 ? "" : "s");
  ldmc_tool_print_wrote(stdout, out, what);
  return LDMC_EXIT_OK;
}
