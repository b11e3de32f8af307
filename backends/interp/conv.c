/* convolution, StableHLO semantics:
 *   out[n, o, y...] = sum_{ci, k...} P[n, g*Cg + ci, y*stride + k*rhs_dil] * W[o, ci, k...]
 * where g = o / (O / groups), Cg = C / groups, and P is the input dilated by
 * lhs_dilation (ldil - 1 zeros between elements) then padded by pad_low/high
 * (negative = cropped): P[q] = X[(q - pad_low) / ldil] when that divides and is
 * in range, else 0. Operands are packed into canonical [N,C,spatial] /
 * [O,Cg,spatial] double arrays, whatever their layout and float dtype; each
 * (batch, group) gathers its input patches (im2col) and every output channel
 * is a row of weights times the patch matrix, accumulated in double. The
 * result is rounded once into the output layout. */
#include <stdlib.h>
#include <string.h>

#include "backends/interp/interp.h"

#define MAXS LDMC_MAX_RANK

typedef struct conv_geom {
  int s;                                   /* spatial dims (>= 1; a 0-spatial conv gets one of size 1) */
  int64_t N, C, O, Cg, Og;
  int64_t I[MAXS], K[MAXS], Y[MAXS];       /* input, kernel, output spatial sizes */
  int64_t Itot, Ktot, Ytot;
  int64_t *tab[MAXS];                      /* tab[j][k * Y[j] + y]: input index, or -1 (padding / hole) */
} conv_geom;

static int64_t attr_or(const ldmc_ints *v, int j, int64_t dflt) { return j < v->n ? v->v[j] : dflt; }

/* Offsets of canonical [A, B, spatial...] in a tensor whose dims are given by
 * map = {dim of A, dim of B, spatial dims...}. */
static void layout_strides(const ldmc_shape *s, const ldmc_ints *map, int ns, int64_t *sa, int64_t *sb, int64_t *ss) {
  int64_t st[LDMC_MAX_RANK];
  ldmc_interp_strides(s, st);
  *sa = st[map->v[0]];
  *sb = st[map->v[1]];
  for (int j = 0; j < ns; j++) ss[j] = st[map->v[2 + j]];
}

/* Copies between a tensor and a canonical double array [A][B][spatial].
 * to_canon: tensor -> canon; else canon -> tensor (rounding once). */
static void canon_copy(ldmc_tensor *t, double *canon, const ldmc_ints *map, int ns, int64_t A, int64_t B,
                       const int64_t *sp, bool to_canon) {
  int64_t sa, sb, ss[MAXS] = {0}, idx[MAXS] = {0}, stot = 1;
  layout_strides(&t->shape, map, ns, &sa, &sb, ss);
  for (int j = 0; j < ns; j++) stot *= sp[j];
  for (int64_t a = 0; a < A; a++)
    for (int64_t b = 0; b < B; b++) {
      double *c = canon + (a * B + b) * stot;
      int64_t off = a * sa + b * sb;
      memset(idx, 0, sizeof idx);
      for (int64_t i = 0; i < stot; i++) {
        if (to_canon)
          c[i] = ldmc_interp_getf(t, off);
        else
          ldmc_interp_setf(t, off, c[i]);
        for (int j = ns - 1; j >= 0; j--) {
          off += ss[j];
          if (++idx[j] < sp[j]) break;
          off -= ss[j] * sp[j];
          idx[j] = 0;
        }
      }
    }
}

static ldmc_status geom_make(const ldmc_attrs *at, const ldmc_tensor *x, const ldmc_tensor *w, const ldmc_tensor *out,
                             conv_geom *g) {
  memset(g, 0, sizeof *g);
  int ns = x->shape.rank - 2;
  g->s = ns > 0 ? ns : 1;
  g->N = x->shape.dims[at->input_dims.v[0]];
  g->C = x->shape.dims[at->input_dims.v[1]];
  g->O = w->shape.dims[at->kernel_dims.v[0]];
  g->Cg = w->shape.dims[at->kernel_dims.v[1]];
  int64_t groups = at->groups > 0 ? at->groups : 1;
  g->Og = g->O / groups;
  g->Itot = g->Ktot = g->Ytot = 1;
  for (int j = 0; j < g->s; j++) {
    if (ns > 0) {
      g->I[j] = x->shape.dims[at->input_dims.v[2 + j]];
      g->K[j] = w->shape.dims[at->kernel_dims.v[2 + j]];
      g->Y[j] = out->shape.dims[at->output_dims.v[2 + j]];
    } else {
      g->I[j] = g->K[j] = g->Y[j] = 1;
    }
    g->Itot *= g->I[j];
    g->Ktot *= g->K[j];
    g->Ytot *= g->Y[j];
    int64_t stride = attr_or(&at->window_stride, j, 1), lo = attr_or(&at->pad_low, j, 0);
    int64_t ldil = attr_or(&at->lhs_dilation, j, 1), rdil = attr_or(&at->rhs_dilation, j, 1);
    int64_t n = g->K[j] * g->Y[j];
    g->tab[j] = malloc((size_t)(n ? n : 1) * sizeof *g->tab[j]);
    if (!g->tab[j]) return ldmc_error(LDMC_ERR_NOMEM, "convolution: out of memory");
    for (int64_t k = 0; k < g->K[j]; k++)
      for (int64_t y = 0; y < g->Y[j]; y++) {
        int64_t q = y * stride + k * rdil - lo, i = -1;
        if (q >= 0 && q % ldil == 0 && q / ldil < g->I[j]) i = q / ldil;
        g->tab[j][k * g->Y[j] + y] = i;
      }
  }
  return LDMC_OK;
}

static void geom_free(conv_geom *g) {
  for (int j = 0; j < MAXS; j++) free(g->tab[j]);
}

/* Patches of one (n, group) for output positions [y0, y0 + yc):
 * P[r][y] = P_in[n, g*Cg + ci, y*stride + k*rdil] for r = ci*Ktot + kpos
 * (0 in padding and dilation holes). */
static void build_patches(const conv_geom *g, const double *X, int64_t n, int64_t grp, int64_t y0, int64_t yc,
                          double *P) {
  int s = g->s;
  int64_t ist[MAXS], a = 1;
  for (int j = s - 1; j >= 0; j--) {
    ist[j] = a;
    a *= g->I[j];
  }
  int64_t R = g->Cg * g->Ktot;
#pragma omp parallel for schedule(static) if (R * yc > LDMC_INTERP_PAR_MIN / 4)
  for (int64_t r = 0; r < R; r++) {
    int64_t ci = r / g->Ktot, kp = r % g->Ktot, kk[MAXS], yy[MAXS];
    for (int j = s - 1; j >= 0; j--) { /* kernel position and first output position as multi-indices */
      kk[j] = kp % g->K[j];
      kp /= g->K[j];
    }
    int64_t rem = y0;
    for (int j = s - 1; j >= 0; j--) {
      yy[j] = rem % g->Y[j];
      rem /= g->Y[j];
    }
    const double *xp = X + (n * g->C + grp * g->Cg + ci) * g->Itot;
    double *pr = P + r * yc;
    for (int64_t y = 0; y < yc; y++) {
      int64_t off = 0;
      bool ok = true;
      for (int j = 0; j < s && ok; j++) {
        int64_t i = g->tab[j][kk[j] * g->Y[j] + yy[j]];
        ok = i >= 0;
        off += i * ist[j];
      }
      pr[y] = ok ? xp[off] : 0.0;
      for (int j = s - 1; j >= 0; j--) { /* next output position */
        if (++yy[j] < g->Y[j]) break;
        yy[j] = 0;
      }
    }
  }
}

/* Y[n, o, :] for every o: a row-times-matrix product over the patches,
 * chunked over output positions to bound the patch buffer. Each output is
 * summed in a fixed order (over ci, then kernel position), so results do not
 * depend on the thread count. */
static ldmc_status conv_compute(const conv_geom *g, const double *X, const double *W, double *Y) {
  int64_t R = g->Cg * g->Ktot, groups = g->O / (g->Og ? g->Og : 1);
  if (R == 0 || g->Ytot == 0) return LDMC_OK;
  int64_t yc = g->Ytot, cap = (INT64_C(1) << 22) / R; /* patch buffer <= 4M doubles (or one column) */
  if (yc > cap) yc = cap > 0 ? cap : 1;
  double *P = malloc((size_t)(R * yc) * sizeof *P);
  if (!P) return ldmc_error(LDMC_ERR_NOMEM, "convolution: out of memory for %lld x %lld patches", (long long)R,
                            (long long)yc);
  for (int64_t n = 0; n < g->N; n++)
    for (int64_t grp = 0; grp < groups; grp++)
      for (int64_t y0 = 0; y0 < g->Ytot; y0 += yc) {
        int64_t m = g->Ytot - y0 < yc ? g->Ytot - y0 : yc;
        build_patches(g, X, n, grp, y0, m, P);
#pragma omp parallel for schedule(static) if (g->Og * R * m > LDMC_INTERP_PAR_MIN)
        for (int64_t oi = 0; oi < g->Og; oi++) {
          int64_t o = grp * g->Og + oi;
          const double *w = W + o * R;
          double *acc = Y + (n * g->O + o) * g->Ytot + y0;
          for (int64_t r = 0; r < R; r++) {
            double wv = w[r];
            const double *pr = P + r * m;
            for (int64_t y = 0; y < m; y++) acc[y] += wv * pr[y];
          }
        }
      }
  free(P);
  return LDMC_OK;
}

ldmc_status ldmc_interp_convolution(const ldmc_interp_args *a) {
  const ldmc_attrs *at = &a->node->attrs;
  ldmc_tensor *x = (ldmc_tensor *)a->in[0], *w = (ldmc_tensor *)a->in[1], *out = a->out;
  conv_geom g;
  ldmc_status st = geom_make(at, x, w, out, &g);
  if (st != LDMC_OK) {
    geom_free(&g);
    return st;
  }
  int ns = x->shape.rank - 2;
  size_t nx = (size_t)(g.N * g.C * g.Itot), nw = (size_t)(g.O * g.Cg * g.Ktot), ny = (size_t)(g.N * g.O * g.Ytot);
  double *X = malloc((nx ? nx : 1) * sizeof *X), *W = malloc((nw ? nw : 1) * sizeof *W);
  double *Y = calloc(ny ? ny : 1, sizeof *Y);
  if (!X || !W || !Y) {
    st = ldmc_error(LDMC_ERR_NOMEM, "convolution: out of memory for %zu + %zu + %zu doubles", nx, nw, ny);
    goto done;
  }
  canon_copy(x, X, &at->input_dims, ns, g.N, g.C, ns > 0 ? g.I : NULL, true);
  canon_copy(w, W, &at->kernel_dims, ns, g.O, g.Cg, ns > 0 ? g.K : NULL, true);
  st = conv_compute(&g, X, W, Y);
  if (st == LDMC_OK) canon_copy(out, Y, &at->output_dims, ns, g.N, g.O, ns > 0 ? g.Y : NULL, false);
done:
  free(X);
  free(W);
  free(Y);
  geom_free(&g);
  return st;
}
