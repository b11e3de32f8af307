/* The independent buffer checker. It trusts nothing the buffer pass computed
 * besides the offsets: kernel membership comes from the kernels' node lists,
 * reads from the graph's operands, lifetimes from the order. It proves
 *   - the order is a permutation of the kernels that respects every read;
 *   - every materialized kernel output has a 64-byte aligned range inside
 *     the arena (alias kernels sit exactly on their operand's range; prepack
 *     outputs and aliases of sources are outside it);
 *   - two outputs whose byte ranges overlap are never live at once, except
 *     an alias and its source, or a legal in-place pair: the later kernel is
 *     the earlier value's last reader, sizes and element sizes match, and
 *     every use of it in that kernel is an elementwise op at the output's
 *     index;
 *   - a donated kernel (state updated in place) has no arena range, runs
 *     after every other reader of its parameter's bytes, and reads them only
 *     elementwise at its output's index;
 *   - a kernel's scratch (the temporaries of the backend steps running it)
 *     is aligned, inside the arena, and overlaps no output live while that
 *     kernel runs (its own output and inputs included). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "passes/pass_util.h"

typedef struct chk {
  const ldmc_plan *p;
  const ldmc_graph *g;
  int32_t *kof;   /* node -> kernel, from the node lists */
  int32_t *pos;   /* kernel -> position */
  int32_t *def, *last; /* per node (kernel roots): lifetime; last = INT32_MAX for outputs */
  int32_t *alias_src;  /* per root: the root it aliases (reshape of a materialized value), else -1 */
} chk;

static ldmc_status fail(const char *fmt, int64_t a, int64_t b) {
  return ldmc_error(LDMC_ERR_INTERNAL, fmt, a, b);
}

static int32_t alias_base(const chk *c, int32_t r) {
  while (c->alias_src[r] >= 0) r = c->alias_src[r];
  return r;
}

/* Bytes of the storage a root occupies: an alias or view spans its source's,
 * a view of a member's result that result's. */
static int64_t range_bytes(const chk *c, int32_t r) {
  r = alias_base(c, r);
  const ldmc_kernel *kr = c->kof[r] >= 0 ? &c->p->kernels[c->kof[r]] : NULL;
  int32_t held = kr && kr->root == r && kr->storage_of >= 0 ? kr->storage_of : r;
  return ldmc_node_bytes(&c->g->nodes[held]);
}

/* a strided view is not read at the output's index: nothing may overwrite it in place */
static bool is_view_root(const chk *c, int32_t r) {
  const ldmc_kernel *kr = c->kof[r] >= 0 ? &c->p->kernels[c->kof[r]] : NULL;
  return kr && (kr->view_of >= 0 || kr->storage_of >= 0);
}

/* Every node of kernel k reachable from x through k's nodes is elementwise or
 * a reshape with the root's element count. Quadratic in the kernel size,
 * which stays small. */
static bool inplace_legal(const chk *c, int32_t k, int32_t x) {
  const ldmc_kernel *kr = &c->p->kernels[k];
  const ldmc_node *root = &c->g->nodes[kr->root];
  int64_t numel = ldmc_node_numel(root);
  int32_t n = kr->n_nodes;
  bool *reach = calloc((size_t)n + 1, sizeof *reach);
  if (!reach) return false;
  bool ok = true;
  for (int32_t j = 0; j < n && ok; j++) { /* node lists are ascending: one forward sweep */
    const ldmc_node *nd = &c->g->nodes[kr->nodes[j]];
    for (int o = 0; o < nd->n_operands && !reach[j]; o++) {
      int32_t src = nd->operands[o];
      if (src == x) reach[j] = true;
      for (int32_t q = 0; q < j && !reach[j]; q++) reach[j] = reach[q] && kr->nodes[q] == src;
    }
    if (reach[j]) {
      bool ew = (ldmc_op_table[nd->op].flags & LDMC_OPF_ELEMENTWISE) || nd->op == LDMC_OP_RESHAPE;
      ok = ew && ldmc_node_numel(nd) == numel;
    }
  }
  free(reach);
  const ldmc_node *xn = &c->g->nodes[x];
  return ok && ldmc_node_bytes(xn) == ldmc_node_bytes(root) && ldmc_dtype_size(xn->dtype) == ldmc_dtype_size(root->dtype);
}

/* Donated kernel k overwrites its parameter's storage: every other kernel
 * reading the parameter (or a reshape of it, which shares its bytes) runs
 * before k, and k itself reads it only elementwise at the output's index. */
static ldmc_status check_donated(const chk *c, int32_t k) {
  const ldmc_graph *g = c->g;
  const ldmc_kernel *kr = &c->p->kernels[k];
  int32_t pn = ldmc_graph_param_node(g, kr->donated_to);
  if (pn < 0) return fail("buffers: kernel %" PRId64 " is donated to parameter %" PRId64 ", which does not exist", k,
                          kr->donated_to);
  const ldmc_node *root = &g->nodes[kr->root];
  if (ldmc_node_bytes(root) != ldmc_node_bytes(&g->nodes[pn]) || root->dtype != g->nodes[pn].dtype)
    return fail("buffers: donated kernel %" PRId64 " output does not have parameter %%%" PRId64 "'s type", k, pn);
  bool *shares = calloc((size_t)g->n_nodes + 1, sizeof *shares);
  if (!shares) return ldmc_error(LDMC_ERR_NOMEM, "check: out of memory");
  shares[pn] = true;
  ldmc_status s = LDMC_OK;
  for (int32_t i = pn + 1; i < g->n_nodes; i++) /* reshapes of it outside k are its bytes too */
    if (g->nodes[i].op == LDMC_OP_RESHAPE && shares[g->nodes[i].operands[0]] && c->kof[i] != k) shares[i] = true;
  for (int32_t i = 0; i < g->n_nodes && s == LDMC_OK; i++) {
    int32_t ki = c->kof[i];
    if (ki < 0 || shares[i]) continue;
    for (int o = 0; o < g->nodes[i].n_operands && s == LDMC_OK; o++) {
      int32_t x = g->nodes[i].operands[o];
      if (!shares[x]) continue;
      if (ki == k) {
        if (!inplace_legal(c, k, x))
          s = fail("buffers: donated kernel %" PRId64 " reads its parameter's storage (%%%" PRId64
                   ") other than elementwise at the output's index",
                   k, x);
      } else if (c->pos[ki] > c->pos[k]) {
        s = fail("buffers: %%%" PRId64 " reads donated state after kernel %" PRId64 " overwrote it", i, k);
      }
    }
  }
  free(shares);
  return s;
}

/* a and b (roots, a defined no later than b) overlap in bytes; is it legal? */
static ldmc_status pair_ok(const chk *c, int32_t a, int32_t b) {
  if (c->def[a] > c->def[b]) {
    int32_t t = a;
    a = b;
    b = t;
  }
  if (alias_base(c, a) == alias_base(c, b) && (c->alias_src[a] >= 0 || c->alias_src[b] >= 0)) {
    /* an alias chain shares storage by construction; offsets were checked equal */
    return LDMC_OK;
  }
  if (c->last[a] < c->def[b]) return LDMC_OK; /* a is dead before b is written */
  if (c->last[a] > c->def[b])
    return fail("buffers: %%%" PRId64 " and %%%" PRId64 " overlap in the arena while both are live", a, b);
  /* last[a] == def[b]: b's kernel is a's last reader; legal only in place */
  int32_t kb = c->kof[b];
  bool reads = false;
  const ldmc_kernel *kr = &c->p->kernels[kb];
  for (int32_t j = 0; j < kr->n_nodes && !reads; j++) {
    const ldmc_node *nd = &c->g->nodes[kr->nodes[j]];
    for (int o = 0; o < nd->n_operands && !reads; o++) reads = nd->operands[o] == a;
  }
  if (!reads || c->p->offset[a] != c->p->offset[b] || is_view_root(c, a) || c->p->kernels[kb].no_inplace ||
      !inplace_legal(c, kb, a))
    return fail("buffers: %%%" PRId64 " is overwritten by %%%" PRId64 " while its kernel still reads it (illegal in-place)",
                a, b);
  return LDMC_OK;
}

static const int64_t *g_off;
static int cmp_off(const void *x, const void *y) {
  int64_t a = g_off[*(const int32_t *)x], b = g_off[*(const int32_t *)y];
  return (a > b) - (a < b);
}

static ldmc_status check(chk *c) {
  const ldmc_plan *p = c->p;
  const ldmc_graph *g = c->g;
  int32_t nk = p->n_kernels, nn = g->n_nodes;
  for (int32_t i = 0; i < nn; i++) c->kof[i] = -1;
  for (int32_t k = 0; k < nk; k++)
    for (int32_t j = 0; j < p->kernels[k].n_nodes; j++) {
      int32_t id = p->kernels[k].nodes[j];
      if (id < 0 || id >= nn || c->kof[id] >= 0) return fail("buffers: node %%%" PRId64 " in kernel %" PRId64 " twice or out of range", id, k);
      c->kof[id] = k;
    }
  for (int32_t k = 0; k < nk; k++) c->pos[k] = -1;
  for (int32_t t = 0; t < nk; t++) {
    int32_t k = p->order[t];
    if (k < 0 || k >= nk || c->pos[k] >= 0) return fail("buffers: order entry %" PRId64 " (kernel %" PRId64 ") is not a permutation", t, k);
    c->pos[k] = t;
  }
  for (int32_t i = 0; i < nn; i++) {
    c->def[i] = c->last[i] = -1;
    c->alias_src[i] = -1;
  }
  for (int32_t k = 0; k < nk; k++) {
    int32_t r = p->kernels[k].root;
    if (c->kof[r] != k) return fail("buffers: root %%%" PRId64 " of kernel %" PRId64 " is not its member", r, k);
    c->def[r] = c->last[r] = c->pos[k];
  }
  /* reads: a node reading a value of another kernel; that value must be its root and come earlier */
  for (int32_t i = 0; i < nn; i++) {
    int32_t k = c->kof[i];
    if (k < 0) continue;
    for (int o = 0; o < g->nodes[i].n_operands; o++) {
      int32_t x = g->nodes[i].operands[o], kx = c->kof[x];
      if (kx < 0 || kx == k) continue;
      if (p->kernels[kx].root != x) return fail("buffers: %%%" PRId64 " reads %%%" PRId64 ", an inner node of another kernel", i, x);
      if (c->pos[kx] >= c->pos[k]) return fail("buffers: %%%" PRId64 " runs before %%%" PRId64 ", which it reads", i, x);
      if (c->pos[k] > c->last[x]) c->last[x] = c->pos[k];
    }
  }
  for (int32_t i = 0; i < g->n_outputs; i++)
    if (c->kof[g->outputs[i]] >= 0) c->last[g->outputs[i]] = INT32_MAX;
  /* ranges */
  int32_t *roots = malloc(((size_t)nk + 1) * sizeof *roots), nr = 0;
  if (!roots) return ldmc_error(LDMC_ERR_NOMEM, "check: out of memory");
  ldmc_status s = LDMC_OK;
  for (int32_t k = 0; k < nk && s == LDMC_OK; k++) {
    const ldmc_kernel *kr = &p->kernels[k];
    int32_t r = kr->root;
    int64_t off = p->offset[r], bytes = ldmc_node_bytes(&g->nodes[r]);
    if (kr->kind == LDMC_KERNEL_PREPACK) {
      if (off >= 0) s = fail("buffers: prepack kernel %" PRId64 " output has an arena offset %" PRId64, k, off);
      continue;
    }
    if (kr->donated_to >= 0) { /* lives in the caller's state: written only after every read of the old value */
      if (off >= 0) s = fail("buffers: donated kernel %" PRId64 " output has an arena offset %" PRId64, k, off);
      if (s == LDMC_OK) s = check_donated(c, k);
      continue;
    }
    if (kr->kind == LDMC_KERNEL_ALIAS || kr->view_of >= 0) {
      int32_t src = kr->view_of >= 0 ? kr->view_of : g->nodes[r].operands[0];
      if (c->kof[src] < 0) {
        if (off >= 0) s = fail("buffers: alias %%%" PRId64 " of a source has an arena offset %" PRId64, r, off);
        continue;
      }
      if (off != p->offset[src]) s = fail("buffers: alias %%%" PRId64 " is not at its source %%%" PRId64 "'s offset", r, src);
      c->alias_src[r] = src;
    } else if (off < 0) {
      s = fail("buffers: kernel %" PRId64 " output %%%" PRId64 " has no arena offset", k, r);
    }
    if (s != LDMC_OK) break;
    bytes = range_bytes(c, r);
    if (off % 64 != 0) s = fail("buffers: %%%" PRId64 " offset %" PRId64 " is not 64-byte aligned", r, off);
    else if (off + bytes > p->arena_bytes) s = fail("buffers: %%%" PRId64 " ends past the arena at %" PRId64, r, off + bytes);
    roots[nr++] = r;
  }
  if (s == LDMC_OK) {
    g_off = p->offset; /* single-threaded qsort without context */
    qsort(roots, (size_t)nr, sizeof *roots, cmp_off);
    for (int32_t i = 0; i < nr && s == LDMC_OK; i++) {
      int32_t a = roots[i];
      int64_t end = p->offset[a] + range_bytes(c, a);
      for (int32_t j = i + 1; j < nr && s == LDMC_OK && p->offset[roots[j]] < end; j++) {
        int32_t b = roots[j];
        if (range_bytes(c, b) == 0 || end == p->offset[a]) continue;
        s = pair_ok(c, a, b);
      }
    }
  }
  /* scratch: live only at its kernel's position */
  for (int32_t k = 0; k < nk && s == LDMC_OK; k++) {
    const ldmc_kernel *kr = &p->kernels[k];
    if (kr->scratch_bytes <= 0) continue;
    int64_t so = kr->scratch_offset, se = so + kr->scratch_bytes;
    if (so < 0 || so % 64 != 0 || se > p->arena_bytes) {
      s = fail("buffers: kernel %" PRId64 " scratch at %" PRId64 " is unaligned or outside the arena", k, so);
      break;
    }
    for (int32_t i = 0; i < nr && s == LDMC_OK; i++) {
      int32_t r = roots[i];
      int64_t ro = p->offset[r], re = ro + range_bytes(c, r);
      if (re <= so || ro >= se || re == ro) continue;
      if (c->def[r] <= c->pos[k] && c->pos[k] <= c->last[r])
        s = fail("buffers: kernel %" PRId64 " scratch overlaps %%%" PRId64 ", live while the kernel runs", k, r);
    }
  }
  free(roots);
  return s;
}

ldmc_status ldmc_plan_check_buffers(const ldmc_plan *p, const ldmc_graph *g) {
  if (!p || !g || !p->assigned || !p->order || !p->offset || p->n_nodes != g->n_nodes)
    return ldmc_error(LDMC_ERR_INVALID, "check: the plan has no buffer assignment for this graph");
  size_t nn = (size_t)g->n_nodes + 1, nk = (size_t)p->n_kernels + 1;
  chk c = {.p = p, .g = g};
  c.kof = malloc(nn * sizeof *c.kof);
  c.pos = malloc(nk * sizeof *c.pos);
  c.def = malloc(nn * sizeof *c.def);
  c.last = malloc(nn * sizeof *c.last);
  c.alias_src = malloc(nn * sizeof *c.alias_src);
  ldmc_status s = (!c.kof || !c.pos || !c.def || !c.last || !c.alias_src)
                      ? ldmc_error(LDMC_ERR_NOMEM, "check: out of memory")
                      : check(&c);
  free(c.kof);
  free(c.pos);
  free(c.def);
  free(c.last);
  free(c.alias_src);
  return s;
}
