/* convolution on the matrix units by implicit im2col in the scratchpad.
 *
 * NCHW input, OIHW weights, NCHW output, two spatial dims, any stride and
 * padding, feature groups, no dilation. Per image n and group g the
 * convolution is the product
 *   out[o][p] = sum_k W[o][k] B[k][p],  k = (c, kh, kw), p = (oy, ox),
 *   B[k][p] = X[n][g Cg + c][oy sh + kh - ph][ox sw + kw - pw] (0 outside),
 * with W the weights as stored ([O][Cg KH KW], every row contiguous) and B
 * the im2col matrix, which never exists off chip: for each K block of a
 * pixel tile it is built in the scratchpad by DMA straight from the image.
 * For each tap (kh, kw), the channels of the block whose row k = c KH KW +
 * kh KW + kw falls in the block are one DMA per output row of the tile:
 * rows = channels (off-chip stride H W), columns = the output row's pixels
 * (contiguous in the image at stride 1), the image's left and right border
 * by the DMA's pad_left / pad_right, a row above or below the image by a
 * padding-only load; at stride > 1 a pixel run is not contiguous, so it is
 * one DMA per channel with the pixels as rows (off-chip stride sw) and the
 * border as pad_top / pad_bottom. B's block is the weight tile of the
 * matrix units (k x n: R rows of the K block, C pixels per unit), W's rows
 * stream through them as activations (one per output channel), and the
 * taps and channel blocks accumulate in the accumulator, as in lower_dot.c.
 * The orientation (W as activations, windows as weight tiles) follows from
 * the layouts: in OIHW a row of W is contiguous along (c, kh, kw) and in
 * NCHW an output row is contiguous along the pixels, so both operands are
 * plain 2-D DMAs and the output tile [o][p] leaves as one DMA; windows as
 * activations would need a DMA per channel, tap and output row, and a
 * transposed store.
 *
 * Tiles as for dot_general, with M = output channels per group, K = Cg KH
 * KW and N = output pixels: tn <= C x units, tk <= R x units, tm <=
 * accumulator rows / (2 x chunks), halved largest first until two buffer
 * sets and two output tiles fit the scratchpad. With a chain (lower_epi.c)
 * each output tile gets the chain's vector ops after acc_move. */
#include <inttypes.h>
#include <stdio.h>

#include "backends/tpusim/lower.h"

typedef struct conv_geom {
  int64_t N, C, H, W, O, Cg, KH, KW, OH, OW, G, Og, K, P;
  int64_t sh, sw, ph, pw;
} conv_geom;

static bool is_identity4(const ldmc_ints *v) {
  if (v->n != 4) return false;
  for (int i = 0; i < 4; i++)
    if (v->v[i] != i) return false;
  return true;
}

static bool all_one(const ldmc_ints *v) {
  for (int i = 0; i < v->n; i++)
    if (v->v[i] != 1) return false;
  return true;
}

const char *tpk_conv_why_not(const ldmc_node *n) {
  const ldmc_attrs *a = &n->attrs;
  if (n->shape.rank != 4) return "only 2 spatial dims are lowered";
  if (!is_identity4(&a->input_dims) || !is_identity4(&a->kernel_dims) || !is_identity4(&a->output_dims))
    return "only NCHW input, OIHW weights and NCHW output are lowered";
  if (!all_one(&a->lhs_dilation) || !all_one(&a->rhs_dilation)) return "dilated convolutions are not lowered";
  for (int i = 0; i < a->window_stride.n; i++)
    if (a->window_stride.v[i] < 1) return "a window stride below 1";
  return NULL;
}

static int64_t at_or(const ldmc_ints *v, int i, int64_t d) { return i < v->n ? v->v[i] : d; }

/* Pad value (0) over rows x cols of the scratchpad (bf16), row stride vstride elements. */
static void pad_fill(tpk_em *e, uint32_t vaddr, uint64_t rows, uint64_t cols, uint32_t vstride) {
  for (uint64_t r = 0; r < rows; r += TPK_MAX_PAD)
    for (uint64_t c = 0; c < cols; c += TPK_MAX_DIM) {
      ldmc_tpu_insn in = ldmc_tpu_insn_make(LDMC_TPU_DMA_LOAD, 0);
      uint64_t nr = rows - r < TPK_MAX_PAD ? rows - r : TPK_MAX_PAD, nc = cols - c < TPK_MAX_DIM ? cols - c : TPK_MAX_DIM;
      in.u.dma = (ldmc_tpu_dma){.buf = 0, .mem_dtype = LDMC_TPU_F32, .vmem_dtype = LDMC_TPU_BF16, .pad_top = (uint8_t)nr,
                                .rows = 0, .cols = (uint16_t)nc, .vmem_addr = (uint32_t)(vaddr + 2 * (r * vstride + c)),
                                .vmem_stride = vstride};
      tpk_push(e, &in);
    }
}

/* One DMA of rows x cols (bf16 in the scratchpad) with padding around it;
 * padding wider than the 8-bit fields is filled by separate loads. `cols_pad`
 * selects left/right (true) or top/bottom (false) for lo / hi. */
static void load_padded(tpk_em *e, uint64_t off, uint64_t mstride, uint32_t rows, uint32_t cols, uint64_t lo, uint64_t hi,
                        bool cols_pad, uint32_t vaddr, uint32_t vstride) {
  uint64_t prow = cols_pad ? rows : 1; /* extent of the padded strips across */
  if (lo > TPK_MAX_PAD) {
    if (cols_pad) pad_fill(e, vaddr, prow, lo, vstride);
    else pad_fill(e, vaddr, lo, cols, vstride);
    vaddr += (uint32_t)(2 * (cols_pad ? lo : lo * vstride));
    lo = 0;
  }
  if (hi > TPK_MAX_PAD) {
    uint32_t at = vaddr + (uint32_t)(2 * (cols_pad ? lo + cols : (lo + rows) * vstride));
    if (cols_pad) pad_fill(e, at, prow, hi, vstride);
    else pad_fill(e, at, hi, cols, vstride);
    hi = 0;
  }
  ldmc_tpu_insn in = ldmc_tpu_insn_make(LDMC_TPU_DMA_LOAD, 0);
  in.u.dma = (ldmc_tpu_dma){.buf = 0, .mem_dtype = LDMC_TPU_F32, .vmem_dtype = LDMC_TPU_BF16, .rows = (uint16_t)rows,
                            .cols = (uint16_t)cols, .mem_offset = (uint32_t)off, .mem_stride = (uint32_t)mstride,
                            .vmem_addr = vaddr, .vmem_stride = vstride};
  if (cols_pad) in.u.dma.pad_left = (uint8_t)lo, in.u.dma.pad_right = (uint8_t)hi;
  else in.u.dma.pad_top = (uint8_t)lo, in.u.dma.pad_bottom = (uint8_t)hi;
  tpk_push(e, &in);
}

static int64_t ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }
static int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

/* B's rows [k0, k0 + ks) x pixels [p0, p0 + ns) of image n, group g into vB (row stride tn, bf16). */
static void load_windows(tpk_em *e, const conv_geom *f, int64_t n, int64_t g, int64_t k0, int64_t ks, int64_t p0,
                         int64_t ns, uint32_t vB, uint32_t tn, uint32_t vstage, uint64_t stage_bytes) {
  int64_t KK = f->KH * f->KW;
  uint32_t stage_at = vstage; /* bump pointer over this step's staging area (strided windows) */
  if (f->sw == 1 && f->sh == 1 && f->OW == f->W && (uint64_t)KK * tn <= TPK_MAX_DIM) {
    /* stride 1 and an output as wide as the input: tap (kh, kw) reads the tile's pixels shifted by the
     * constant (kh - ph) W + (kw - pw), so its channels are ONE DMA of the whole pixel run (pixels before
     * or after the image as padding); the run wraps across rows where a window leaves the image on the
     * left or right, and those columns are zeroed on chip (vector fills, after the loads) */
    int64_t HW = f->H * f->W;
    for (int64_t t = 0; t < KK && e->st == LDMC_OK; t++) {
      int64_t kh = t / f->KW, kw = t % f->KW;
      int64_t c_lo = k0 > t ? ceil_div(k0 - t, KK) : 0, c_hi = k0 + ks - 1 >= t ? (k0 + ks - 1 - t) / KK + 1 : 0;
      if (c_hi > f->Cg) c_hi = f->Cg;
      if (c_hi <= c_lo) continue;
      uint32_t nc = (uint32_t)(c_hi - c_lo), rstride = (uint32_t)(KK * tn);
      int64_t krow = c_lo * KK + t - k0;
      uint64_t chan0 = (uint64_t)((n * f->C + g * f->Cg + c_lo) * f->H) * (uint64_t)f->W;
      uint32_t vrow = vB + (uint32_t)(2 * krow * (int64_t)tn);
      int64_t shift = (kh - f->ph) * f->W + (kw - f->pw), a = p0 + shift, z = p0 + ns + shift; /* run [a, z) */
      int64_t lo = a < 0 ? -a : 0, hi = z > HW ? z - HW : 0;
      if (lo > ns) lo = ns;
      if (hi > ns - lo) hi = ns - lo;
      if (ns - lo - hi <= 0) pad_fill(e, vrow, nc, (uint64_t)ns, rstride);
      else
        load_padded(e, chan0 + (uint64_t)(a + lo), (uint64_t)HW, nc, (uint32_t)(ns - lo - hi), (uint64_t)lo, (uint64_t)hi,
                    true, vrow, rstride);
      /* columns whose window is left (x < pw - kw) or right (x >= W + pw - kw) of the image */
      int64_t xl = f->pw - kw, xr = f->W + f->pw - kw;
      for (int64_t oy = p0 / f->OW; oy <= (p0 + ns - 1) / f->OW && e->st == LDMC_OK; oy++) {
        int64_t xa = oy == p0 / f->OW ? p0 % f->OW : 0, xb = oy == (p0 + ns - 1) / f->OW ? (p0 + ns - 1) % f->OW + 1 : f->OW;
        int64_t rng[2][2] = {{xa, xl < xb ? xl : xb}, {xr > xa ? xr : xa, xb}};
        for (int q = 0; q < 2; q++) {
          if (rng[q][1] <= rng[q][0]) continue;
          int64_t col = oy * f->OW + rng[q][0] - p0;
          ldmc_tpu_insn in = ldmc_tpu_insn_make(LDMC_TPU_VEC_UNARY, 0);
          in.u.vec = (ldmc_tpu_vec){.func = LDMC_TPU_U_FILL, .rows = (uint16_t)nc, .cols = (uint16_t)(rng[q][1] - rng[q][0]),
                                    .dst = vrow + (uint32_t)(2 * col), .a = vrow + (uint32_t)(2 * col),
                                    .dst_stride = (uint16_t)rstride, .a_stride = (uint16_t)rstride, .imm = 0.0f,
                                    .dst_dtype = LDMC_TPU_BF16, .a_dtype = LDMC_TPU_BF16, .b_dtype = LDMC_TPU_F32};
          tpk_push(e, &in);
        }
      }
    }
    return;
  }
  for (int64_t t = 0; t < KK && e->st == LDMC_OK; t++) {
    int64_t kh = t / f->KW, kw = t % f->KW;
    int64_t c_lo = k0 > t ? ceil_div(k0 - t, KK) : 0, c_hi = k0 + ks - 1 >= t ? (k0 + ks - 1 - t) / KK + 1 : 0;
    if (c_hi > f->Cg) c_hi = f->Cg;
    if (c_hi <= c_lo) continue;
    uint32_t nc = (uint32_t)(c_hi - c_lo), rstride = (uint32_t)(KK * tn);
    int64_t krow = c_lo * KK + t - k0; /* B row of channel c_lo, tap t */
    uint64_t chan0 = (uint64_t)((n * f->C + g * f->Cg + c_lo) * f->H) * (uint64_t)f->W;
    for (int64_t oy = p0 / f->OW; oy <= (p0 + ns - 1) / f->OW && e->st == LDMC_OK; oy++) {
      int64_t xa = oy == p0 / f->OW ? p0 % f->OW : 0, xb = oy == (p0 + ns - 1) / f->OW ? (p0 + ns - 1) % f->OW + 1 : f->OW;
      int64_t col = oy * f->OW + xa - p0, iy = oy * f->sh + kh - f->ph;
      uint32_t vrow = vB + (uint32_t)(2 * (krow * (int64_t)tn + col));
      /* valid x: 0 <= x sw + kw - pw < W */
      int64_t xl = ceil_div(f->pw - kw, f->sw), xr = floor_div(f->W - 1 + f->pw - kw, f->sw) + 1;
      if (xl < xa) xl = xa;
      if (xr > xb) xr = xb;
      if (iy < 0 || iy >= f->H || xr <= xl) {
        pad_fill(e, vrow, nc, (uint64_t)(xb - xa), rstride);
        continue;
      }
      uint64_t ix0 = (uint64_t)(xl * f->sw + kw - f->pw), row0 = chan0 + (uint64_t)iy * (uint64_t)f->W + ix0;
      if (f->sw == 1) {
        load_padded(e, row0, (uint64_t)(f->H * f->W), nc, (uint32_t)(xr - xl), (uint64_t)(xl - xa), (uint64_t)(xb - xr),
                    true, vrow, rstride);
      } else if (vstage) {
        /* the input rows' contiguous span for all channels in one DMA, every sw-th pixel picked on chip
         * (one vector copy per channel); the border by padding-only loads */
        uint32_t np = (uint32_t)(xr - xl), span = (np - 1) * (uint32_t)f->sw + 1;
        tpk_dma_load(e, 0, (uint32_t)row0, (uint32_t)(f->H * f->W), nc, span, stage_at, span, LDMC_TPU_BF16);
        if (xl > xa) pad_fill(e, vrow, nc, (uint64_t)(xl - xa), rstride);
        if (xb > xr) pad_fill(e, vrow + (uint32_t)(2 * (xr - xa)), nc, (uint64_t)(xb - xr), rstride);
        for (uint32_t c = 0; c < nc && e->st == LDMC_OK; c++) {
          ldmc_tpu_insn in = ldmc_tpu_insn_make(LDMC_TPU_VEC_UNARY, 0);
          in.u.vec = (ldmc_tpu_vec){.func = LDMC_TPU_U_COPY, .rows = (uint16_t)np, .cols = 1,
                                    .dst = vrow + (uint32_t)(2 * ((int64_t)c * rstride + (xl - xa))), .dst_stride = 1,
                                    .a = stage_at + 2 * c * span, .a_stride = (uint16_t)f->sw,
                                    .dst_dtype = LDMC_TPU_BF16, .a_dtype = LDMC_TPU_BF16, .b_dtype = LDMC_TPU_F32};
          tpk_push(e, &in);
        }
        stage_at += (2 * nc * span + 63) & ~63u;
        if (stage_at - vstage > stage_bytes && e->st == LDMC_OK)
          e->st = ldmc_error(LDMC_ERR_INTERNAL, "tpusim: convolution: window staging past its %" PRIu64 " bytes", stage_bytes);
      } else {
        for (uint32_t c = 0; c < nc && e->st == LDMC_OK; c++)
          load_padded(e, row0 + (uint64_t)c * (uint64_t)(f->H * f->W), (uint64_t)f->sw, (uint32_t)(xr - xl), 1,
                      (uint64_t)(xl - xa), (uint64_t)(xb - xr), false, vrow + 2 * c * rstride, 1);
      }
    }
  }
}

static uint64_t conv_vmem(uint64_t tm, uint64_t tk, uint64_t tn) {
  return TPK_NBUF * (2 * tm * tk + 2 * tk * tn + 4 * tm * tn) + 64 * 3 * TPK_NBUF;
}

ldmc_status tpk_lower_conv(const ldmc_graph *g, int32_t id, const ldmc_tpu_target *t, tpk_kernel *k) {
  return tpk_lower_conv_chain(g, id, NULL, t, k);
}

ldmc_status tpk_lower_conv_chain(const ldmc_graph *g, int32_t id, const tpk_chain *ch, const ldmc_tpu_target *t,
                                 tpk_kernel *k) {
  const ldmc_node *n = &g->nodes[id];
  const char *why = tpk_conv_why_not(n);
  if (why) return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: %%%d convolution: %s", (int)id, why);
  uint32_t numel, xn, wn;
  LDMC_TRY(tpk_numel32(g, id, &numel));
  LDMC_TRY(tpk_numel32(g, n->operands[0], &xn));
  LDMC_TRY(tpk_numel32(g, n->operands[1], &wn));
  const ldmc_shape *xs = &g->nodes[n->operands[0]].shape, *ws = &g->nodes[n->operands[1]].shape;
  const ldmc_attrs *a = &n->attrs;
  conv_geom f = {.N = xs->dims[0], .C = xs->dims[1], .H = xs->dims[2], .W = xs->dims[3], .O = ws->dims[0],
                 .Cg = ws->dims[1], .KH = ws->dims[2], .KW = ws->dims[3], .OH = n->shape.dims[2],
                 .OW = n->shape.dims[3], .G = a->groups > 0 ? a->groups : 1, .sh = at_or(&a->window_stride, 0, 1),
                 .sw = at_or(&a->window_stride, 1, 1), .ph = at_or(&a->pad_low, 0, 0), .pw = at_or(&a->pad_low, 1, 0)};
  f.Og = f.O / f.G;
  f.K = f.Cg * f.KH * f.KW;
  f.P = f.OH * f.OW;
  k->node = id;
  k->n_bufs = 2;
  k->buf_node[0] = n->operands[0];
  k->buf_node[1] = n->operands[1];
  tpk_epi ep = {0};
  if (ch) {
    const uint64_t view[4] = {(uint64_t)f.N, (uint64_t)f.G, (uint64_t)f.Og, (uint64_t)f.P};
    LDMC_TRY(tpk_epi_init(&ep, g, ch, view, k));
    k->node = ch->nodes[ch->n - 1];
    k->epilogue = true;
  }
  int out_buf = k->n_bufs;
  k->buf_node[k->n_bufs++] = k->node;
  if (numel == 0) return LDMC_OK;
  if (f.K == 0)
    return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: %%%d convolution: an empty window is not lowered", (int)id);
  uint64_t R = (uint64_t)t->mxu_rows, Cc = (uint64_t)t->mxu_cols, U = (uint64_t)t->mxu_count,
           acc_rows = ldmc_tpu_target_acc_rows(t), M = (uint64_t)f.Og, K = (uint64_t)f.K, P = (uint64_t)f.P;
  uint64_t tn = P < Cc * U ? P : Cc * U, tk = K < R * U ? K : R * U;
  uint64_t nch = (tn + Cc - 1) / Cc, tm = acc_rows / (TPK_NBUF * nch);
  if (tm < 1) tm = 1;
  if (tm > M) tm = M;
  if (tm > TPK_MAX_DIM) tm = TPK_MAX_DIM;
  if (tk > TPK_MAX_DIM) tk = TPK_MAX_DIM;
  while (conv_vmem(tm, tk, tn) + (ch ? tpk_epi_vmem(&ep, tm, tn) : 0) > t->vmem_bytes || nch * tm > acc_rows) {
    if (tm == 1 && tk == 1 && tn == 1)
      return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: %%%d convolution: the scratchpad (%" PRIu64 " bytes) holds no tile",
                        (int)id, t->vmem_bytes);
    if (tm >= tk && tm >= tn) tm = (tm + 1) / 2;
    else if (tk >= tn) tk = (tk + 1) / 2;
    else tn = (tn + 1) / 2, nch = (tn + Cc - 1) / Cc;
  }
  int tl = snprintf(k->tile_desc, sizeof k->tile_desc,
                    "tile o%" PRIu64 " k%" PRIu64 " px%" PRIu64 " (%" PRId64 "x%" PRId64 " s%" PRId64 ")", tm, tk, tn,
                    f.KH, f.KW, f.sh);
  if (ch && tl > 0 && (size_t)tl < sizeof k->tile_desc)
    snprintf(k->tile_desc + tl, sizeof k->tile_desc - (size_t)tl, ", epilogue %d nodes", ch->n);
  uint64_t nacc = acc_rows >= TPK_NBUF * nch * tm ? TPK_NBUF : 1;
  /* strided windows: a staging area per buffer set for the input spans (every tap's channels x the
   * tile's output rows x a row's span, 64-byte aligned each), used when it fits beside the tiles and
   * the span fits an operand field; else one DMA per channel, tap and output row */
  uint64_t span = (uint64_t)(f.OW - 1) * (uint64_t)f.sw + 1, orows = (tn + (uint64_t)f.OW - 1) / (uint64_t)f.OW + 1;
  uint64_t stage = f.sw > 1 ? (uint64_t)f.KH * f.KW * orows * ((2 * ((tk + f.KH * f.KW - 1) / (f.KH * f.KW) + 1) * span + 63) & ~63ull) : 0;
  if (stage && (conv_vmem(tm, tk, tn) + (ch ? tpk_epi_vmem(&ep, tm, tn) : 0) + TPK_NBUF * (stage + 64) > t->vmem_bytes ||
                span > TPK_MAX_DIM ||
                f.sw > TPK_MAX_DIM))
    stage = 0;
  if (k->pack_ok) k->pk_buf = 1, k->pk_elems = (uint64_t)f.G * M * K;
  tpk_em e;
  tpk_em_init(&e, t, &k->prog);
  uint32_t vA[TPK_NBUF], vB[TPK_NBUF], vO[TPK_NBUF], vS[TPK_NBUF] = {0};
  for (int s = 0; s < TPK_NBUF; s++) {
    vA[s] = tpk_vmem_alloc(&e, 2 * tm * tk);
    vB[s] = tpk_vmem_alloc(&e, 2 * tk * tn);
    vO[s] = tpk_vmem_alloc(&e, 4 * tm * tn);
    if (stage) vS[s] = tpk_vmem_alloc(&e, stage);
  }
  if (ch) tpk_epi_alloc(&ep, &e, (uint32_t)tm, (uint32_t)tn);
  int64_t nm = (int64_t)((M + tm - 1) / tm), nn = (int64_t)((P + tn - 1) / tn), nk = (int64_t)((K + tk - 1) / tk);
  int64_t ntiles = f.N * f.G * nm * nn, nsteps = ntiles * nk, step = 0, tile = 0;
  for (int64_t b = 0; b < f.N && e.st == LDMC_OK; b++)
    for (int64_t gi = 0; gi < f.G && e.st == LDMC_OK; gi++)
      for (int64_t mi = 0; mi < nm && e.st == LDMC_OK; mi++)
        for (int64_t ni = 0; ni < nn && e.st == LDMC_OK; ni++, tile++) {
          uint64_t m0 = (uint64_t)mi * tm, p0 = (uint64_t)ni * tn;
          uint32_t ms = tpk_min32(tm, M - m0), ns = tpk_min32(tn, P - p0), nchunks = (uint32_t)((ns + Cc - 1) / Cc);
          uint32_t acc0 = (uint32_t)((uint64_t)(tile % (int64_t)nacc) * nch * tm);
          int o = (int)(tile % TPK_NBUF);
          uint64_t orow = (uint64_t)gi * M + m0; /* first output channel */
          for (int64_t ki = 0; ki < nk && e.st == LDMC_OK; ki++, step++) {
            int s = (int)(step % TPK_NBUF);
            uint64_t k0 = (uint64_t)ki * tk;
            uint32_t ks = tpk_min32(tk, K - k0);
            size_t begin = k->prog.count;
            if (k->pack_ok) /* packed: tile (g, mi, ki) at orow K + k0 ms, back to back */
              tpk_dma_load_packed(&e, k, 1, (uint32_t)(orow * K + k0 * ms), ms, ks, vA[s], (uint32_t)tk, b == 0 && ni == 0,
                                  (uint32_t)(orow * K + k0), (uint32_t)K);
            else
              tpk_dma_load(&e, 1, (uint32_t)(orow * K + k0), (uint32_t)K, ms, ks, vA[s], (uint32_t)tk, LDMC_TPU_BF16);
            load_windows(&e, &f, b, gi, (int64_t)k0, ks, (int64_t)p0, ns, vB[s], (uint32_t)tn, vS[s], stage);
            uint32_t nsub = (uint32_t)((ks + R - 1) / R);
            for (uint32_t j = 0; j < nsub; j++) {
              uint32_t kk0 = j * (uint32_t)R, kk = tpk_min32(R, ks - kk0);
              for (uint32_t u = 0; u < nchunks; u++) {
                uint32_t c0 = u * (uint32_t)Cc, nsz = tpk_min32(Cc, ns - c0);
                ldmc_tpu_insn in = ldmc_tpu_insn_make(LDMC_TPU_LOAD_W, 0);
                in.u.loadw = (ldmc_tpu_loadw){.mxu = (uint8_t)u, .dtype = LDMC_TPU_BF16, .k = (uint16_t)kk,
                                              .n = (uint16_t)nsz, .vmem_addr = vB[s] + 2 * (kk0 * (uint32_t)tn + c0),
                                              .vmem_stride = (uint32_t)tn};
                tpk_push(&e, &in);
              }
              tpk_matmul_units(&e, nchunks, (uint32_t)ms, vA[s] + 2 * kk0, (uint32_t)tk, acc0, (uint32_t)tm,
                               !(ki == 0 && j == 0));
            }
            bool last = ki + 1 == nk;
            if (last) {
              if (ch) tpk_epi_load(&ep, &e, s, (uint64_t)b, (uint64_t)gi, m0, p0, ms, ns);
              tpk_acc_to_vmem(&e, nchunks, (uint32_t)ms, (uint32_t)Cc, (uint32_t)ns, acc0, (uint32_t)tm, vO[o], (uint32_t)tn);
              if (ch) tpk_epi_compute(&ep, &e, s, vO[o], ms, ns);
              tpk_dma_store(&e, out_buf, (uint32_t)(((uint64_t)b * (uint64_t)f.O + orow) * P + p0), (uint32_t)P, ms, ns,
                            vO[o], (uint32_t)tn);
            }
            tpk_step_tokens(&e, begin, step, nsteps, tile, ki == 0, last, ntiles);
          }
        }
  (void)xn, (void)wn;
  return e.st;
}
