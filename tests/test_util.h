/* The tiny harness every test executable uses: CHECK-style assertions that
 * count, print failures with file:line, and a summary line for ctest logs. */
#ifndef LDMC_TEST_UTIL_H
#define LDMC_TEST_UTIL_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int t_passed, t_failed;

#define CHECK(cond)                                                     \
  do {                                                                  \
    if (cond) {                                                         \
      t_passed++;                                                       \
    } else {                                                            \
      t_failed++;                                                       \
      fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);   \
    }                                                                   \
  } while (0)

#define CHECK_MSG(cond, ...)                                            \
  do {                                                                  \
    if (cond) {                                                         \
      t_passed++;                                                       \
    } else {                                                            \
      t_failed++;                                                       \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);   \
      fprintf(stderr, __VA_ARGS__);                                     \
      fputc('\n', stderr);                                              \
    }                                                                   \
  } while (0)

#define CHECK_NEAR(a, b, tol)                                                                       \
  do {                                                                                              \
    double ca_ = (double)(a), cb_ = (double)(b);                                                    \
    CHECK_MSG(fabs(ca_ - cb_) <= (tol), "%s = %.9g, %s = %.9g, tol %g", #a, ca_, #b, cb_, (double)(tol)); \
  } while (0)

/* Prints "<name>: N passed, M failed" and returns the process exit status. */
static inline int test_summary(const char *name) {
  printf("%s: %d passed, %d failed\n", name, t_passed, t_failed);
  return t_failed ? 1 : 0;
}
#endif
