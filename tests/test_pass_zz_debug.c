#include "pass_test_util.h"
#include "passes/decompose.h"
static void one(const char *txt) {
  ldmc_graph *ref = ptu_parse(txt);
  ldmc_graph *g = NULL;
  ldmc_decompose_composites(ref, 0, &g);
  ptu_same_results(txt, ref, g, 1e-4, 1e-3);
  ldmc_graph_free(g); ldmc_graph_free(ref);
}
int main(void) {
  one("graph t {\n %0 = f32[1,16,8,8] parameter() name=\"x\"\n %1 = f32[16] parameter() name=\"g\"\n %2 = f32[16] parameter() name=\"b\"\n %3 = f32[1,16,8,8] group_norm(%0, %1, %2) groups=4 eps=1e-5\n return %3 \"y\"\n}\n");
  one("graph t {\n %0 = f32[1,8,4,4] parameter() name=\"x\"\n %1 = f32[8] parameter() name=\"g\"\n %2 = f32[8] parameter() name=\"b\"\n %3 = f32[1,8,4,4] group_norm(%0, %1, %2) groups=2 eps=1e-5\n return %3 \"y\"\n}\n");
  one("graph t {\n %0 = f32[1,16,1,1] parameter() name=\"x\"\n %1 = f32[16] parameter() name=\"g\"\n %2 = f32[16] parameter() name=\"b\"\n %3 = f32[1,16,1,1] group_norm(%0, %1, %2) groups=4 eps=1e-5\n return %3 \"y\"\n}\n");
  one("graph t {\n %0 = f32[1,64,1,1] parameter() name=\"x\"\n %1 = f32[64] parameter() name=\"g\"\n %2 = f32[64] parameter() name=\"b\"\n %3 = f32[1,64,1,1] group_norm(%0, %1, %2) groups=4 eps=1e-5\n return %3 \"y\"\n}\n");
  return test_summary("dbg");
}
