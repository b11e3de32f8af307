/* What the builder's files share (frontend-internal). */
#ifndef LDMC_FRONTEND_BUILDER_INTERNAL_H
#define LDMC_FRONTEND_BUILDER_INTERNAL_H
#include "frontend/frontend.h"

#define LDMC_BUILDER_MAX_DEPTH 32

struct ldmc_builder {
  ldmc_graph *g;
  ldmc_status status; /* first error, sticky */
  char *error;
  char *scope; /* dotted path, NUL-terminated */
  size_t scope_len, scope_cap;
  size_t marks[LDMC_BUILDER_MAX_DEPTH];
  int depth;
};

/* Records the current message (ldmc_last_error) as the first error; returns -1. */
ldmc_value ldmc_builder_fail(ldmc_builder *b, ldmc_status code);
ldmc_value ldmc_builder_failf(ldmc_builder *b, ldmc_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* False (and the error set) if the builder failed or an operand is not a value. */
bool ldmc_builder_ok(ldmc_builder *b, int n, const ldmc_value *vs);
/* Appends a type-checked node in the current scope. */
ldmc_value ldmc_builder_node(ldmc_builder *b, ldmc_op op, ldmc_dtype dt, const ldmc_shape *shape, int n,
                             const ldmc_value *operands, const ldmc_attrs *attrs);
#endif
