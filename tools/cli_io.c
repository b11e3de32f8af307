/* File handling shared by the driver's commands (see cli_io.h). */
#include "tools/cli_io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "frontend/weights_io.h"
#include "support/fileio.h"

#define TEXT_IR_MAX_BYTES ((size_t)1 << 30)

const char *ldmc_file_kind_name(ldmc_file_kind k) {
  switch (k) {
    case LDMC_KIND_TEXT: return "text IR";
    case LDMC_KIND_LDMC: return "ldmc module";
    case LDMC_KIND_SAFETENSORS: return "safetensors";
  }
  return "?";
}

ldmc_status ldmc_tool_sniff(const char *path, ldmc_file_kind *out) {
  unsigned char head[9];
  size_t n;
  LDMC_TRY(ldmc_file_read_head(path, head, sizeof head, &n)); /* refuses FIFOs, devices, folders */
  *out = LDMC_KIND_TEXT;
  if (n >= 4 && memcmp(head, "LDMC", 4) == 0) {
    *out = LDMC_KIND_LDMC;
  } else if (n == 9 && head[8] == '{') {
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | head[i];
    if (hl >= 2 && hl <= LDMC_SAFETENSORS_MAX_HEADER) *out = LDMC_KIND_SAFETENSORS;
  }
  return LDMC_OK;
}

static bool ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a > b && strcmp(s + a - b, suffix) == 0 && s[a - b - 1] != '/';
}

bool ldmc_tool_kind_from_ext(const char *path, ldmc_file_kind *out) {
  if (ends_with(path, ".ldmc")) *out = LDMC_KIND_LDMC;
  else if (ends_with(path, ".safetensors")) *out = LDMC_KIND_SAFETENSORS;
  else if (ends_with(path, ".txt") || ends_with(path, ".ldmcir")) *out = LDMC_KIND_TEXT;
  else return false;
  return true;
}

bool ldmc_tool_kind_from_name(const char *name, ldmc_file_kind *out) {
  if (strcmp(name, "ldmc") == 0) *out = LDMC_KIND_LDMC;
  else if (strcmp(name, "safetensors") == 0) *out = LDMC_KIND_SAFETENSORS;
  else if (strcmp(name, "text") == 0) *out = LDMC_KIND_TEXT;
  else return false;
  return true;
}

static ldmc_status load_text(const char *path, ldmc_graph **out) {
  uint8_t *buf;
  size_t len;
  LDMC_TRY(ldmc_file_read(path, TEXT_IR_MAX_BYTES, &buf, &len));
  ldmc_status s = ldmc_graph_parse((const char *)buf, len, out);
  free(buf);
  if (s != LDMC_OK) ldmc_error_prefix("%s:", path); /* "path:line:col: ..." */
  return s;
}

ldmc_status ldmc_tool_load(const char *path, ldmc_module *out, ldmc_file_kind *kind) {
  memset(out, 0, sizeof *out);
  LDMC_TRY(ldmc_tool_sniff(path, kind));
  ldmc_status s;
  switch (*kind) {
    case LDMC_KIND_LDMC: s = ldmc_module_load(path, out); break;
    case LDMC_KIND_SAFETENSORS: s = ldmc_safetensors_load(path, &out->tensors); break;
    default: s = load_text(path, &out->graph); break;
  }
  if (s == LDMC_OK && out->graph && (s = ldmc_graph_verify(out->graph)) != LDMC_OK)
    ldmc_error_prefix("%s: invalid graph: ", path);
  if (s != LDMC_OK) ldmc_module_free(out);
  return s;
}

ldmc_status ldmc_tool_read_tensors(const char *path, ldmc_tensor_set *out) {
  ldmc_file_kind kind;
  memset(out, 0, sizeof *out);
  LDMC_TRY(ldmc_tool_sniff(path, &kind));
  if (kind == LDMC_KIND_LDMC) {
    /* a module's tensors serve as well (e.g. a checkpoint) */
    ldmc_module m;
    LDMC_TRY(ldmc_module_load(path, &m));
    *out = m.tensors;
    memset(&m.tensors, 0, sizeof m.tensors);
    ldmc_module_free(&m);
    return LDMC_OK;
  }
  if (kind != LDMC_KIND_SAFETENSORS)
    return ldmc_error(LDMC_ERR_FORMAT, "%s: not a safetensors file (no 8-byte header length followed by '{')", path);
  return ldmc_safetensors_load(path, out);
}

ldmc_status ldmc_tool_write_text(const char *path, const char *text) {
  return ldmc_file_write_atomic(path, text, strlen(text));
}

ldmc_status ldmc_tool_write_tensors(const char *path, const ldmc_tensor_set *s) {
  return ldmc_safetensors_save(path, s, 0, NULL, NULL);
}

ldmc_status ldmc_tool_save(const char *path, ldmc_file_kind kind, const ldmc_module *m) {
  switch (kind) {
    case LDMC_KIND_LDMC: return ldmc_module_save(path, m);
    case LDMC_KIND_SAFETENSORS: return ldmc_tool_write_tensors(path, &m->tensors);
    case LDMC_KIND_TEXT: {
      if (!m->graph) return ldmc_error(LDMC_ERR_INVALID, "%s: no graph to write as text IR", path);
      char *text = ldmc_graph_print(m->graph);
      if (!text) {
        ldmc_error_prefix("%s: ", path);
        return LDMC_ERR_NOMEM;
      }
      ldmc_status s = ldmc_tool_write_text(path, text);
      free(text);
      return s;
    }
  }
  return ldmc_error(LDMC_ERR_INVALID, "%s: unknown output kind", path);
}

ldmc_status ldmc_tool_tensor_view(const ldmc_tensor *t, ldmc_tensor *out) {
  *out = *t;
  out->owns_data = false;
  out->name = strdup(t->name ? t->name : "");
  if (!out->name) return ldmc_error(LDMC_ERR_NOMEM, "out of memory copying the name of tensor '%s'", t->name);
  return LDMC_OK;
}

const char *ldmc_tool_dtype_str(const ldmc_tensor *t) {
  if (t->raw_dtype[0]) return t->raw_dtype;
  return t->dtype < LDMC_DTYPE_COUNT ? ldmc_dtype_name(t->dtype) : "?";
}

void ldmc_tool_format_bytes(double b, char *buf, size_t len) {
  static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    u++;
  }
  snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", b, units[u]);
}

void ldmc_tool_format_count(double n, const char *unit, char *buf, size_t len) {
  static const char *prefix[] = {"", "K", "M", "G", "T", "P"};
  int p = 0;
  while (n >= 1000 && p < 5) {
    n /= 1000;
    p++;
  }
  const char *sep = unit[0] || p ? " " : "";
  snprintf(buf, len, p ? "%.3f%s%s%s" : "%.0f%s%s%s", n, sep, prefix[p], unit);
}

/* ---- output paths ---- */

static const char *ext_of(const char *path) {
  const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path, *dot = strrchr(base, '.');
  return dot && dot != base ? dot : NULL;
}

int ldmc_tool_check_output(const ldmc_cli_cmd *c, const char *flag, const char *path, const char *const *exts) {
  if (!path) return LDMC_CLI_CONTINUE;
  for (int i = 0; exts[i]; i++)
    if (ends_with(path, exts[i])) return LDMC_CLI_CONTINUE;
  char want[160] = "";
  size_t w = 0;
  int n = 0;
  while (exts[n]) n++;
  for (int i = 0; i < n && w < sizeof want; i++)
    w += (size_t)snprintf(want + w, sizeof want - w, "%s%s", i == 0 ? "" : i == n - 1 ? (n > 2 ? ", or " : " or ") : ", ",
                          exts[i]);
  const char *ext = ext_of(path);
  char q[256];
  ldmc_quote(path, q, sizeof q);
  if (!ext)
    return ldmc_cli_usage_error(c, "%s%s%s: no file extension; ldmc %s writes %s here (nothing was written)",
                                flag ? flag : "", flag ? " " : "", q, c->name, want);
  char qe[64];
  ldmc_quote(ext, qe, sizeof qe);
  return ldmc_cli_usage_error(c, "%s%s%s: ldmc %s cannot write '%s' files here, only %s (nothing was written)",
                              flag ? flag : "", flag ? " " : "", q, c->name, qe, want);
}

/* The path as an absolute, normalized string: the real path of its folder
 * (when that exists) and its last component. */
static void normalized(const char *path, char *buf, size_t len) {
  char dir[4096], real[4096];
  const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
  if (!slash) snprintf(dir, sizeof dir, ".");
  else if (slash == path) snprintf(dir, sizeof dir, "/");
  else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
  if (realpath(dir, real)) snprintf(buf, len, "%s/%s", strcmp(real, "/") ? real : "", base);
  else snprintf(buf, len, "%s", path);
}

bool ldmc_tool_same_file(const char *a, const char *b) {
  struct stat sa, sb;
  if (stat(a, &sa) == 0 && stat(b, &sb) == 0) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
  char na[4352], nb[4352];
  normalized(a, na, sizeof na);
  normalized(b, nb, sizeof nb);
  return strcmp(na, nb) == 0;
}

int ldmc_tool_check_distinct(const ldmc_cli_cmd *c, int n, const char *const *what, const char *const *paths) {
  for (int i = 0; i < n; i++)
    for (int j = i + 1; paths[i] && j < n; j++)
      if (paths[j] && ldmc_tool_same_file(paths[i], paths[j])) {
        char qa[256], qb[256];
        ldmc_quote(paths[i], qa, sizeof qa);
        ldmc_quote(paths[j], qb, sizeof qb);
        return ldmc_cli_usage_error(c, "%s %s and %s %s are the same file: one would overwrite the other "
                                       "(nothing was written)", what[i], qa, what[j], qb);
      }
  return LDMC_CLI_CONTINUE;
}

void ldmc_tool_print_wrote(FILE *f, const char *path, const char *what) {
  struct stat st;
  char q[512];
  ldmc_quote(path, q, sizeof q);
  if (stat(path, &st) == 0)
    fprintf(f, "wrote %s: %lld bytes, %s\n", q, (long long)st.st_size, what);
  else
    fprintf(f, "wrote %s: %s\n", q, what);
}

void ldmc_tool_describe(const ldmc_module *m, ldmc_file_kind kind, char *buf, size_t len) {
  char name[200];
  const ldmc_graph *g = kind == LDMC_KIND_SAFETENSORS ? NULL : m->graph;
  int32_t nt = kind == LDMC_KIND_TEXT ? 0 : m->tensors.n;
  int w = snprintf(buf, len, "%s", ldmc_file_kind_name(kind));
  if (g && w >= 0 && (size_t)w < len)
    w += snprintf(buf + w, len - (size_t)w, ": graph '%s' (%d nodes)", ldmc_quote(g->name, name, sizeof name),
                  (int)g->n_nodes);
  if ((nt || kind != LDMC_KIND_TEXT) && w >= 0 && (size_t)w < len)
  {
    if (nt) snprintf(buf + w, len - (size_t)w, "%s%d tensor%s", g ? " and " : ": ", (int)nt, nt == 1 ? "" : "s");
    else snprintf(buf + w, len - (size_t)w, "%sno tensors", g ? ", " : ": ");
  }
}

/* ---- quoting names from files ---- */

