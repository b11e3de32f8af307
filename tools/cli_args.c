/* The driver's flag parser (see cli_args.h). */
#include "tools/cli_args.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/dist.h"

static ldmc_cli_flag *find_flag(ldmc_cli_cmd *c, const char *name, size_t len) {
  for (int i = 0; i < c->n_flags; i++)
    if (strlen(c->flags[i].name) == len && strncmp(c->flags[i].name, name, len) == 0) return &c->flags[i];
  return NULL;
}

static void vreport(const ldmc_cli_cmd *c, const char *fmt, va_list ap) {
  if (ldmc_dist_rank() != 0) fprintf(stderr, "ldmc %s (rank %d): ", c->name, ldmc_dist_rank());
  else fprintf(stderr, "ldmc %s: ", c->name);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
}

int ldmc_cli_usage_error(const ldmc_cli_cmd *c, const char *fmt, ...) {
  if (ldmc_dist_rank() != 0) return LDMC_EXIT_USAGE; /* the flags are every rank's: rank 0 says it */
  va_list ap;
  va_start(ap, fmt);
  vreport(c, fmt, ap);
  va_end(ap);
  return LDMC_EXIT_USAGE;
}

int ldmc_cli_fail(const ldmc_cli_cmd *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vreport(c, fmt, ap);
  va_end(ap);
  return LDMC_EXIT_FAIL;
}

/* Prints text indented by `indent` after the first line, which starts at `col`. */
static void print_wrapped(FILE *f, const char *text, int indent) {
  for (const char *p = text; *p; p++) {
    fputc(*p, f);
    if (*p == '\n' && p[1]) fprintf(f, "%*s", indent, "");
  }
  fputc('\n', f);
}

void ldmc_cli_print_help(const ldmc_cli_cmd *c, FILE *f) {
  /* usage: one line per '\n'-separated form */
  const char *u = c->usage ? c->usage : "";
  bool first = true;
  while (first || *u) {
    const char *nl = strchr(u, '\n');
    size_t n = nl ? (size_t)(nl - u) : strlen(u);
    if (!first && (*u == ' ')) /* a continuation of the previous form */
      fprintf(f, "       %*s%.*s\n", (int)strlen(c->name) + 5, "", (int)n, u);
    else
      fprintf(f, "%s ldmc %s%s%.*s\n", first ? "usage:" : "      ", c->name, n ? " " : "", (int)n, u);
    u += n + (nl ? 1 : 0);
    first = false;
  }
  fprintf(f, "\n%s\n", c->summary);
  fprintf(f, "\nflags:\n");
  for (int i = 0; i < c->n_flags; i++) {
    char lhs[64];
    const ldmc_cli_flag *fl = &c->flags[i];
    bool o = strcmp(fl->name, "out") == 0 && fl->metavar; /* -o FILE is the same */
    snprintf(lhs, sizeof lhs, "--%s%s%s%s%s", fl->name, fl->metavar ? " " : "", fl->metavar ? fl->metavar : "",
             o ? ", -o " : "", o ? fl->metavar : "");
    if (strlen(lhs) > 22)
      fprintf(f, "  %s\n%26s", lhs, "");
    else
      fprintf(f, "  %-22s  ", lhs);
    print_wrapped(f, fl->help, 26);
  }
  fprintf(f, "  %-22s  %s\n", "-h, --help", "show this help and exit");
  if (c->details) fprintf(f, "\n%s", c->details);
  fprintf(f, "\nExit status: 0 success, 1 runtime or file error, 2 usage error.\n");
}

int ldmc_cli_parse(ldmc_cli_cmd *c, int argc, char **argv) {
  c->n_pos = 0;
  for (int i = 0; i < c->n_flags; i++) c->flags[i].value = NULL;
  c->n_repeated = 0;
  bool flags_done = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    /* -o FILE is --out FILE in every command that has --out */
    if (!flags_done && strcmp(a, "-o") == 0 && find_flag(c, "out", 3)) a = "--out";
    if (!flags_done && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
      ldmc_cli_print_help(c, stdout);
      return LDMC_EXIT_OK;
    }
    if (!flags_done && strcmp(a, "--") == 0) {
      flags_done = true;
      continue;
    }
    if (!flags_done && a[0] == '-' && a[1] == '-') {
      const char *name = a + 2, *eq = strchr(name, '=');
      size_t len = eq ? (size_t)(eq - name) : strlen(name);
      ldmc_cli_flag *fl = find_flag(c, name, len);
      if (!fl)
        return ldmc_cli_usage_error(c, "unknown flag '--%.*s' (see ldmc %s --help)", (int)len, name, c->name);
      bool rep = c->repeatable && strcmp(c->repeatable, fl->name) == 0;
      if (fl->value && !rep)
        return ldmc_cli_usage_error(c, "flag '--%s' given twice (see ldmc %s --help)", fl->name, c->name);
      if (rep && c->n_repeated >= LDMC_CLI_MAX_REPEAT)
        return ldmc_cli_usage_error(c, "flag '--%s' given more than %d times", fl->name, LDMC_CLI_MAX_REPEAT);
      if (!fl->metavar) {
        if (eq) return ldmc_cli_usage_error(c, "flag '--%s' takes no value (see ldmc %s --help)", fl->name, c->name);
        fl->value = "1";
      } else if (eq) {
        fl->value = eq + 1;
      } else {
        if (i + 1 >= argc)
          return ldmc_cli_usage_error(c, "flag '--%s' needs a value %s (see ldmc %s --help)", fl->name, fl->metavar,
                                      c->name);
        fl->value = argv[++i];
      }
      if (fl->metavar && !fl->value[0])
        return ldmc_cli_usage_error(c, "flag '--%s' needs a non-empty value %s (see ldmc %s --help)", fl->name,
                                    fl->metavar, c->name);
      if (rep) c->repeated[c->n_repeated++] = fl->value;
      continue;
    }
    if (!flags_done && a[0] == '-' && a[1] != '\0')
      return ldmc_cli_usage_error(c, "unknown flag '%s' (see ldmc %s --help)", a, c->name);
    if (c->n_pos >= c->max_pos || c->n_pos >= (int)(sizeof c->pos / sizeof c->pos[0]))
      return ldmc_cli_usage_error(c, "unexpected argument '%s' (see ldmc %s --help)", a, c->name);
    c->pos[c->n_pos++] = a;
  }
  if (c->n_pos < c->min_pos)
    return ldmc_cli_usage_error(c, "missing argument: usage: ldmc %s %.*s", c->name,
                                (int)strcspn(c->usage ? c->usage : "", "\n"), c->usage ? c->usage : "");
  return LDMC_CLI_CONTINUE;
}

static const ldmc_cli_flag *get_flag(const ldmc_cli_cmd *c, const char *name) {
  for (int i = 0; i < c->n_flags; i++)
    if (strcmp(c->flags[i].name, name) == 0) return &c->flags[i];
  return NULL;
}

const char *ldmc_cli_get(const ldmc_cli_cmd *c, const char *name) {
  const ldmc_cli_flag *f = get_flag(c, name);
  return f ? f->value : NULL;
}

bool ldmc_cli_has(const ldmc_cli_cmd *c, const char *name) { return ldmc_cli_get(c, name) != NULL; }

bool ldmc_cli_parse_i64(const char *s, int64_t *out) {
  if (!s || !*s) return false;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end || end == s || s[0] == ' ' || s[0] == '\t' || s[0] == '+') return false;
  *out = (int64_t)v;
  return true;
}

int ldmc_cli_int(const ldmc_cli_cmd *c, const char *name, int64_t lo, int64_t hi, int64_t *out) {
  const char *v = ldmc_cli_get(c, name);
  if (!v) return LDMC_CLI_CONTINUE;
  int64_t x;
  if (!ldmc_cli_parse_i64(v, &x) || x < lo || x > hi)
    return ldmc_cli_usage_error(c, "flag '--%s' expects an integer in [%lld, %lld], got '%s'", name, (long long)lo,
                                (long long)hi, v);
  *out = x;
  return LDMC_CLI_CONTINUE;
}

int ldmc_cli_dims(const ldmc_cli_cmd *c, const char *name, int n, int64_t hi, int64_t *out) {
  const char *v = ldmc_cli_get(c, name);
  if (!v) return LDMC_CLI_CONTINUE;
  int64_t tmp[8];
  int k = 0;
  const char *p = v;
  while (k < 8) {
    size_t len = strcspn(p, "x");
    char buf[32];
    if (len == 0 || len >= sizeof buf) break;
    memcpy(buf, p, len);
    buf[len] = '\0';
    if (!ldmc_cli_parse_i64(buf, &tmp[k]) || tmp[k] < 1 || tmp[k] > hi) break;
    k++;
    p += len;
    if (*p == '\0') {
      if (k != n) break;
      memcpy(out, tmp, (size_t)n * sizeof *out);
      return LDMC_CLI_CONTINUE;
    }
    p++; /* the 'x' */
  }
  char form[64] = "";
  for (int i = 0; i < n && i < 8; i++) strcat(form, i ? "xN" : "N");
  return ldmc_cli_usage_error(c, "flag '--%s' expects %s with each N in [1, %lld], got '%s'", name, form,
                              (long long)hi, v);
}

int ldmc_cli_real(const ldmc_cli_cmd *c, const char *name, double lo, double hi, double *out) {
  const char *s = ldmc_cli_get(c, name);
  if (!s) return LDMC_CLI_CONTINUE;
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || !end || *end || end == s || !(v >= lo && v <= hi))
    return ldmc_cli_usage_error(c, "--%s %s: expected a number in [%g, %g]", name, s, lo, hi);
  *out = v;
  return LDMC_CLI_CONTINUE;
}
