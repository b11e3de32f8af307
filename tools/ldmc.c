/* Placeholder entry point until the driver lands. */
#include <stdio.h>
int main(void) {
  puts("ldmc " LDMC_VERSION);
  return 0;
}
