/* The driver's flag parser: long flags `--x VALUE` and `--x=VALUE`, switches
 * `--x`, positionals, `--` to end flags, `-o FILE` for `--out FILE` in every
 * command that has --out, and `-h`/`--help` printing the
 * command's help. Usage errors print one line and give exit status 2. */
#ifndef LDMC_TOOLS_CLI_ARGS_H
#define LDMC_TOOLS_CLI_ARGS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Exit statuses of every subcommand. */
enum { LDMC_EXIT_OK = 0, LDMC_EXIT_FAIL = 1, LDMC_EXIT_USAGE = 2 };

/* Parse results of ldmc_cli_parse that are not exit statuses. */
#define LDMC_CLI_CONTINUE (-1)

typedef struct ldmc_cli_flag {
  const char *name;    /* long name without dashes: "inputs" */
  const char *metavar; /* "FILE"; NULL: a switch that takes no value */
  const char *help;    /* one or more lines, shown in --help */
  const char *value;   /* out: the value ("1" for a given switch), NULL if absent */
} ldmc_cli_flag;
#define LDMC_CLI_MAX_REPEAT 16

typedef struct ldmc_cli_cmd {
  const char *name;    /* "run" */
  const char *usage;   /* usage line(s) after "ldmc run ", '\n'-separated for several forms */
  const char *summary; /* one line, shown in `ldmc --help` too */
  const char *details; /* text after the flag list (positionals, examples); may be NULL */
  ldmc_cli_flag *flags;
  int n_flags;
  int min_pos, max_pos; /* positional argument count bounds */
  const char *pos[8];   /* out: positionals */
  int n_pos;            /* out */
  const char *repeatable; /* the one flag that may be given several times (NULL: none): every value in */
  const char *repeated[LDMC_CLI_MAX_REPEAT]; /* out, in order (its `value` is the last) */
  int n_repeated;         /* out */
} ldmc_cli_cmd;

/* Parses argv[1..argc) (argv[0] is the command name). Returns LDMC_CLI_CONTINUE
 * when the command should run, 0 after printing --help, or 2 after printing a
 * one-line usage error. */
int ldmc_cli_parse(ldmc_cli_cmd *c, int argc, char **argv);
void ldmc_cli_print_help(const ldmc_cli_cmd *c, FILE *f);

/* The value of flag `name` (NULL if not given), and whether it was given. */
const char *ldmc_cli_get(const ldmc_cli_cmd *c, const char *name);
bool ldmc_cli_has(const ldmc_cli_cmd *c, const char *name);

/* Usage error: prints "ldmc CMD: <msg>" and returns 2. */
int ldmc_cli_usage_error(const ldmc_cli_cmd *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Runtime error: prints "ldmc CMD: <msg>" and returns 1. */
int ldmc_cli_fail(const ldmc_cli_cmd *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Typed flag values. Each returns LDMC_CLI_CONTINUE on success (or when the
 * flag is absent, leaving *out unchanged) and 2 with a one-line message when
 * the value is malformed or outside [lo, hi]. */
int ldmc_cli_int(const ldmc_cli_cmd *c, const char *name, int64_t lo, int64_t hi, int64_t *out);
/* A finite decimal number in [lo, hi]. */
int ldmc_cli_real(const ldmc_cli_cmd *c, const char *name, double lo, double hi, double *out);
/* "64x64x4" -> n dims (exactly n, each in [1, hi]). */
int ldmc_cli_dims(const ldmc_cli_cmd *c, const char *name, int n, int64_t hi, int64_t *out);

/* Parses a decimal int64 from the whole string; false on junk or overflow. */
bool ldmc_cli_parse_i64(const char *s, int64_t *out);

#endif
