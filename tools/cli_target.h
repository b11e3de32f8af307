/* Target names for the driver's --target flags (ldmc compile, ldmc stats). */
#ifndef LDMC_TOOLS_CLI_TARGET_H
#define LDMC_TOOLS_CLI_TARGET_H

/* "interp, cpu, cpu-nchw, ..." from the pass library's target table, so help
 * texts never drift from what ldmc_target_find accepts. Static storage. */
const char *ldmc_cli_target_names(void);

/* The help line of a --target flag: "<what> (one of: <names>; default cpu)". */
const char *ldmc_cli_target_help(const char *what);

#endif
