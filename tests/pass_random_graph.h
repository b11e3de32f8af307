/* Random graphs for the pass tests: chains of elementwise math, splats that
 * are identities (x+0, x*1) or not, transposes and reshapes that undo each
 * other, broadcasts of biases, reductions, contractions, softmax,
 * duplicates (CSE bait), dead nodes (DCE bait), constant chains (folding
 * bait) and, with composites, group_norm / layer_norm / attention. Values
 * stay in a safe range (no exp of sums, no log), so every graph runs on the
 * interpreter without overflow. */
#ifndef LDMC_TESTS_PASS_RANDOM_GRAPH_H
#define LDMC_TESTS_PASS_RANDOM_GRAPH_H

#include "pass_test_util.h"

typedef struct prg {
  ldmc_graph *g;
  int32_t pool[256];
  int n;
  bool ok;
} prg;

static inline int32_t prg_add(prg *r, ldmc_op op, ldmc_dtype dt, const ldmc_shape *s, int n, const int32_t *ops,
                              const ldmc_attrs *at) {
  if (!r->ok) return -1;
  int32_t id = ldmc_graph_add_checked(r->g, op, dt, s, n, ops, at, "random");
  if (id < 0) {
    r->ok = false;
    fprintf(stderr, "random graph: %s\n", ldmc_last_error());
    return -1;
  }
  if (r->n < 256) r->pool[r->n++] = id;
  return id;
}

static inline int32_t prg_pick(prg *r) { return r->pool[(int)(ptu_uniform() * r->n)]; }

/* A value with the same shape as x, or x itself. */
static inline int32_t prg_same(prg *r, int32_t x) {
  for (int tries = 0; tries < 8; tries++) {
    int32_t y = prg_pick(r);
    if (ldmc_shape_equal(&r->g->nodes[y].shape, &r->g->nodes[x].shape) && r->g->nodes[y].dtype == r->g->nodes[x].dtype)
      return y;
  }
  return x;
}

static inline int32_t prg_splat(prg *r, double v, const ldmc_shape *s) {
  float f = (float)v;
  ldmc_attrs at = {0};
  at.value.data = &f;
  at.value.nbytes = 4;
  ldmc_shape sc = {0};
  int32_t c = ldmc_graph_add(r->g, LDMC_OP_CONSTANT, LDMC_F32, &sc, 0, NULL, &at, NULL);
  ldmc_attrs b = {0};
  return c < 0 ? -1 : prg_add(r, LDMC_OP_BROADCAST_IN_DIM, LDMC_F32, s, 1, &c, &b);
}

static inline void prg_step(prg *r, bool composites) {
  ldmc_graph *g = r->g;
  int32_t x = prg_pick(r);
  ldmc_shape s = g->nodes[x].shape;
  int rank = s.rank;
  ldmc_attrs at = {0};
  int choice = (int)(ptu_uniform() * (composites ? 17 : 14));
  switch (choice) {
    case 0: case 1: { /* bounded unary */
      static const ldmc_op un[] = {LDMC_OP_NEG, LDMC_OP_ABS, LDMC_OP_TANH, LDMC_OP_LOGISTIC, LDMC_OP_SIN,
                                   LDMC_OP_COS, LDMC_OP_SILU, LDMC_OP_GELU};
      prg_add(r, un[(int)(ptu_uniform() * 8)], LDMC_F32, NULL, 1, &x, NULL);
      break;
    }
    case 2: case 3: { /* binary with a value of the same shape */
      static const ldmc_op bin[] = {LDMC_OP_ADD, LDMC_OP_SUB, LDMC_OP_MUL, LDMC_OP_MAX, LDMC_OP_MIN};
      int32_t ops[2] = {x, prg_same(r, x)};
      int32_t y = prg_add(r, bin[(int)(ptu_uniform() * 5)], LDMC_F32, NULL, 2, ops, NULL);
      if (y >= 0 && ptu_uniform() < 0.5) prg_add(r, LDMC_OP_TANH, LDMC_F32, NULL, 1, &y, NULL); /* keep bounded */
      break;
    }
    case 4: { /* with a splat: identities and not */
      static const double vals[] = {0, 1, -1, 0.5, 2};
      static const ldmc_op bin[] = {LDMC_OP_ADD, LDMC_OP_MUL, LDMC_OP_SUB, LDMC_OP_DIV};
      double v = vals[(int)(ptu_uniform() * 5)];
      ldmc_op op = bin[(int)(ptu_uniform() * 4)];
      if (op == LDMC_OP_DIV && v == 0) op = LDMC_OP_ADD;
      int32_t sp = prg_splat(r, v, &s);
      bool left = op != LDMC_OP_DIV && ptu_uniform() < 0.5;
      int32_t ops[2] = {left ? sp : x, left ? x : sp};
      prg_add(r, op, LDMC_F32, NULL, 2, ops, NULL);
      break;
    }
    case 5: { /* transpose by a random permutation, sometimes undone */
      at.dims.n = rank;
      for (int i = 0; i < rank; i++) at.dims.v[i] = i;
      for (int i = rank - 1; i > 0; i--) {
        int j = (int)(ptu_uniform() * (i + 1));
        int64_t t = at.dims.v[i];
        at.dims.v[i] = at.dims.v[j];
        at.dims.v[j] = t;
      }
      int32_t t = prg_add(r, LDMC_OP_TRANSPOSE, LDMC_F32, NULL, 1, &x, &at);
      if (t >= 0 && ptu_uniform() < 0.5) {
        ldmc_attrs inv = {0};
        inv.dims.n = rank;
        for (int i = 0; i < rank; i++) inv.dims.v[at.dims.v[i]] = i;
        prg_add(r, LDMC_OP_TRANSPOSE, LDMC_F32, NULL, 1, &t, &inv);
      }
      break;
    }
    case 6: { /* reshape to flat and back */
      int64_t n = 1;
      for (int i = 0; i < rank; i++) n *= s.dims[i];
      ldmc_shape flat = {.rank = 1, .dims = {n}};
      int32_t f = prg_add(r, LDMC_OP_RESHAPE, LDMC_F32, &flat, 1, &x, NULL);
      if (f >= 0 && ptu_uniform() < 0.7) prg_add(r, LDMC_OP_RESHAPE, LDMC_F32, &s, 1, &f, NULL);
      break;
    }
    case 7: { /* bias over the last dim */
      if (rank == 0) break;
      ldmc_shape bs = {.rank = 1, .dims = {s.dims[rank - 1]}};
      char name[32];
      snprintf(name, sizeof name, "bias%d", (int)g->n_nodes);
      ldmc_attrs pa = {0};
      pa.name = name;
      int32_t b = prg_add(r, LDMC_OP_PARAMETER, LDMC_F32, &bs, 0, NULL, &pa);
      at.dims.n = 1;
      at.dims.v[0] = rank - 1;
      int32_t bb = prg_add(r, LDMC_OP_BROADCAST_IN_DIM, LDMC_F32, &s, 1, &b, &at);
      int32_t ops[2] = {x, bb};
      prg_add(r, LDMC_OP_ADD, LDMC_F32, NULL, 2, ops, NULL);
      break;
    }
    case 8: { /* x - mean(x) over the last dim */
      if (rank == 0) break;
      at.reduce = LDMC_REDUCE_SUM;
      at.dims.n = 1;
      at.dims.v[0] = rank - 1;
      int32_t red = prg_add(r, LDMC_OP_REDUCE, LDMC_F32, NULL, 1, &x, &at);
      ldmc_attrs b = {0};
      b.dims.n = rank - 1;
      for (int i = 0; i < rank - 1; i++) b.dims.v[i] = i;
      int32_t bb = prg_add(r, LDMC_OP_BROADCAST_IN_DIM, LDMC_F32, &s, 1, &red, &b);
      int32_t sc = prg_splat(r, 1.0 / (double)s.dims[rank - 1], &s);
      int32_t m[2] = {bb, sc};
      int32_t mean = prg_add(r, LDMC_OP_MUL, LDMC_F32, NULL, 2, m, NULL);
      int32_t d[2] = {x, mean};
      prg_add(r, LDMC_OP_SUB, LDMC_F32, NULL, 2, d, NULL);
      break;
    }
    case 9: { /* contraction over the last dim with itself or a same-shape value: [.., n, k] x [.., m, k] */
      if (rank < 2) break;
      int32_t ops[2] = {x, prg_same(r, x)};
      at.lhs_batch.n = at.rhs_batch.n = rank - 2;
      for (int i = 0; i < rank - 2; i++) at.lhs_batch.v[i] = at.rhs_batch.v[i] = i;
      at.lhs_contract.n = at.rhs_contract.n = 1;
      at.lhs_contract.v[0] = at.rhs_contract.v[0] = rank - 1;
      int32_t dd = prg_add(r, LDMC_OP_DOT_GENERAL, LDMC_F32, NULL, 2, ops, &at);
      if (dd >= 0) prg_add(r, LDMC_OP_TANH, LDMC_F32, NULL, 1, &dd, NULL);
      break;
    }
    case 10: { /* softmax over the last dim */
      if (rank == 0) break;
      at.axis = rank - 1;
      prg_add(r, LDMC_OP_SOFTMAX, LDMC_F32, NULL, 1, &x, &at);
      break;
    }
    case 11: { /* a duplicate of an existing node */
      int32_t y = prg_pick(r);
      const ldmc_node *n = &g->nodes[y];
      if (n->op == LDMC_OP_PARAMETER || n->op == LDMC_OP_CONSTANT) break;
      ldmc_node copy = *n;
      prg_add(r, copy.op, copy.dtype, &copy.shape, copy.n_operands, copy.operands, &copy.attrs);
      break;
    }
    case 12: { /* constants folded into a splat chain, then used */
      int32_t a = prg_splat(r, 0.25, &s), b = prg_splat(r, 3, &s);
      int32_t ab[2] = {a, b};
      int32_t c = prg_add(r, LDMC_OP_MUL, LDMC_F32, NULL, 2, ab, NULL);
      int32_t xc[2] = {x, c};
      prg_add(r, LDMC_OP_MUL, LDMC_F32, NULL, 2, xc, NULL);
      break;
    }
    case 13: { /* neg(neg(x)) or a concatenate-then-slice round trip */
      if (ptu_uniform() < 0.5 || rank == 0) {
        int32_t a = prg_add(r, LDMC_OP_NEG, LDMC_F32, NULL, 1, &x, NULL);
        prg_add(r, LDMC_OP_NEG, LDMC_F32, NULL, 1, &a, NULL);
      } else {
        int32_t xs[2] = {x, prg_same(r, x)};
        at.axis = 0;
        int32_t c = prg_add(r, LDMC_OP_CONCATENATE, LDMC_F32, NULL, 2, xs, &at);
        ldmc_attrs sl = {0};
        sl.start.n = sl.limit.n = sl.stride.n = rank;
        for (int i = 0; i < rank; i++) {
          sl.start.v[i] = i == 0 ? s.dims[0] : 0;
          sl.limit.v[i] = i == 0 ? 2 * s.dims[0] : s.dims[i];
          sl.stride.v[i] = 1;
        }
        if (c >= 0) prg_add(r, LDMC_OP_SLICE, LDMC_F32, NULL, 1, &c, &sl);
      }
      break;
    }
    case 14: { /* layer_norm over the last dim */
      if (rank == 0) break;
      ldmc_shape ps = {.rank = 1, .dims = {s.dims[rank - 1]}};
      ldmc_attrs pa = {0};
      char name[32];
      snprintf(name, sizeof name, "ln%d", (int)g->n_nodes);
      pa.name = name;
      int32_t gm = prg_add(r, LDMC_OP_PARAMETER, LDMC_F32, &ps, 0, NULL, &pa);
      at.axis = rank - 1;
      at.eps = 1e-5;
      int32_t ops[3] = {x, gm, gm};
      prg_add(r, LDMC_OP_LAYER_NORM, LDMC_F32, NULL, 3, ops, &at);
      break;
    }
    case 15: { /* group_norm when dim 1 is even */
      if (rank < 3 || s.dims[1] % 2) break;
      ldmc_shape ps = {.rank = 1, .dims = {s.dims[1]}};
      ldmc_attrs pa = {0};
      char name[32];
      snprintf(name, sizeof name, "gn%d", (int)g->n_nodes);
      pa.name = name;
      int32_t gm = prg_add(r, LDMC_OP_PARAMETER, LDMC_F32, &ps, 0, NULL, &pa);
      at.groups = 2;
      at.eps = 1e-5;
      int32_t ops[3] = {x, gm, gm};
      prg_add(r, LDMC_OP_GROUP_NORM, LDMC_F32, NULL, 3, ops, &at);
      break;
    }
    default: { /* attention with q = k = v = x */
      if (rank < 2) break;
      at.scale = 0.5;
      int32_t ops[3] = {x, x, prg_same(r, x)};
      prg_add(r, LDMC_OP_ATTENTION, LDMC_F32, NULL, 3, ops, &at);
      break;
    }
  }
}

/* steps random steps over two parameters of shape s; 1-3 outputs. */
static inline ldmc_graph *prg_build_shape(int steps, bool composites, ldmc_shape s) {
  prg r = {.g = ldmc_graph_new("random"), .ok = true};
  ldmc_attrs a = {0}, b = {0};
  a.name = "x";
  b.name = "y";
  prg_add(&r, LDMC_OP_PARAMETER, LDMC_F32, &s, 0, NULL, &a);
  prg_add(&r, LDMC_OP_PARAMETER, LDMC_F32, &s, 0, NULL, &b);
  for (int i = 0; i < steps && r.ok; i++) prg_step(&r, composites);
  int nout = 1 + (int)(ptu_uniform() * 3);
  for (int i = 0; i < nout && r.ok; i++) {
    char name[16];
    snprintf(name, sizeof name, "out%d", i);
    int32_t o = i == 0 ? r.g->n_nodes - 1 : prg_pick(&r);
    if (r.g->nodes[o].op == LDMC_OP_PARAMETER && i > 0) continue;
    ldmc_graph_add_output(r.g, o, name);
  }
  if (!r.ok || ldmc_graph_verify(r.g) != LDMC_OK) {
    ldmc_graph_free(r.g);
    return NULL;
  }
  return r.g;
}

/* steps random steps over two parameters of shape [2,4,6]; 1-3 outputs. */
static inline ldmc_graph *prg_build(int steps, bool composites) {
  ldmc_shape s = {.rank = 3, .dims = {2, 4, 6}};
  return prg_build_shape(steps, composites, s);
}

#endif
