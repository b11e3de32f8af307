/* tpusim targets: the built-in presets and the JSON target file, every field
 * required, typed and range-checked, with messages naming file and field.
 * The sources of the preset figures, and which are assumptions, are in
 * docs/backends/tpusim.md ("Presets"). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/tpusim/target.h"
#include "support/fileio.h"

static const char *const k_trans[LDMC_TPU_T_COUNT] = {"exp", "log", "sqrt", "rsqrt", "recip", "tanh", "erf", "sigmoid"};
const char *ldmc_tpu_trans_name(ldmc_tpu_trans t) { return (unsigned)t < LDMC_TPU_T_COUNT ? k_trans[t] : "<bad>"; }

#define MIB (UINT64_C(1) << 20)
/* transcendental costs (cycles per vreg): assumptions, the same for every preset */
#define TRANS_CYCLES {4, 4, 4, 4, 4, 4, 8, 4}

static const ldmc_tpu_target k_presets[] = {
    {.name = "v1", .clock_hz = 700e6, .cores_per_chip = 1, .mxu_count = 1, .mxu_rows = 256, .mxu_cols = 256,
     .vec_lanes = 256, .vec_sublanes = 1, .vec_ops_per_cycle = 1, .vec_latency = 4, .vec_cycles = TRANS_CYCLES,
     .vmem_bytes = 24 * MIB, .vmem_banks = 1, .acc_bytes = 4 * MIB, .hbm_bytes_per_s = 34e9, .hbm_latency_ns = 100,
     .dma_engines = 2},
    {.name = "v4", .clock_hz = 1050e6, .cores_per_chip = 2, .mxu_count = 4, .mxu_rows = 128, .mxu_cols = 128,
     .vec_lanes = 128, .vec_sublanes = 8, .vec_ops_per_cycle = 2, .vec_latency = 4, .vec_cycles = TRANS_CYCLES,
     .vmem_bytes = 16 * MIB, .vmem_banks = 16, .acc_bytes = 4 * MIB, .hbm_bytes_per_s = 600e9, .hbm_latency_ns = 500,
     .dma_engines = 4},
    {.name = "v5e", .clock_hz = 1500e6, .cores_per_chip = 1, .mxu_count = 4, .mxu_rows = 128, .mxu_cols = 128,
     .vec_lanes = 128, .vec_sublanes = 8, .vec_ops_per_cycle = 2, .vec_latency = 4, .vec_cycles = TRANS_CYCLES,
     .vmem_bytes = 128 * MIB, .vmem_banks = 16, .acc_bytes = 4 * MIB, .hbm_bytes_per_s = 819e9, .hbm_latency_ns = 500,
     .dma_engines = 4},
};
#define NPRESETS (sizeof k_presets / sizeof k_presets[0])
static const char *const k_preset_names[NPRESETS + 1] = {"v1", "v4", "v5e", NULL};

const char *const *ldmc_tpu_target_preset_names(void) { return k_preset_names; }

ldmc_status ldmc_tpu_target_preset(const char *name, ldmc_tpu_target *out) {
  for (size_t i = 0; name && i < NPRESETS; i++)
    if (strcmp(name, k_presets[i].name) == 0) {
      *out = k_presets[i];
      return LDMC_OK;
    }
  char q[64];
  return ldmc_error(LDMC_ERR_INVALID, "unknown tpusim target preset '%s' (available: v1, v4, v5e)",
                    ldmc_quote(name ? name : "(null)", q, sizeof q));
}

uint32_t ldmc_tpu_target_acc_rows(const ldmc_tpu_target *t) { return (uint32_t)(t->acc_bytes / (4u * (uint64_t)t->mxu_cols)); }
double ldmc_tpu_target_bytes_per_cycle(const ldmc_tpu_target *t) { return t->hbm_bytes_per_s / t->clock_hz; }
uint64_t ldmc_tpu_target_latency_cycles(const ldmc_tpu_target *t) {
  /* the small slack keeps 100 ns at 1 GHz at 100 cycles despite rounding */
  return (uint64_t)ceil(t->hbm_latency_ns * t->clock_hz / 1e9 - 1e-6);
}
uint64_t ldmc_tpu_target_peak_macs_per_cycle(const ldmc_tpu_target *t) {
  return (uint64_t)t->mxu_count * (uint64_t)t->mxu_rows * (uint64_t)t->mxu_cols;
}

/* ---- checks ----------------------------------------------------------------------- */
static ldmc_status bad(const char *where, const char *field, const char *what) {
  return ldmc_error(LDMC_ERR_INVALID, "%s: field %s: %s", where, field, what);
}
#define RANGE(v, lo, hi, field)                                                          \
  do {                                                                                   \
    if (!((v) >= (lo) && (v) <= (hi))) {                                                 \
      char m_[96];                                                                       \
      snprintf(m_, sizeof m_, "%.17g is out of range [%.17g, %.17g]", (double)(v), (double)(lo), (double)(hi)); \
      return bad(where, field, m_);                                                      \
    }                                                                                    \
  } while (0)

ldmc_status ldmc_tpu_target_check(const ldmc_tpu_target *t, const char *where) {
  if (!t->name[0] || memchr(t->name, 0, sizeof t->name) == NULL) return bad(where, "name", "empty or longer than 31 bytes");
  RANGE(t->clock_hz, 1e3, 1e12, "clock_hz");
  RANGE(t->cores_per_chip, 1, 1024, "cores_per_chip");
  RANGE(t->mxu_count, 1, LDMC_TPU_MAX_MXU, "matrix.units");
  RANGE(t->mxu_rows, 1, 4096, "matrix.rows");
  RANGE(t->mxu_cols, 1, 4096, "matrix.cols");
  RANGE(t->vec_lanes, 1, 65535, "vector.lanes");
  RANGE(t->vec_sublanes, 1, 65535, "vector.sublanes");
  RANGE(t->vec_ops_per_cycle, 1, 1024, "vector.ops_per_cycle");
  RANGE(t->vec_latency, 0, 1 << 20, "vector.latency_cycles");
  for (int i = 0; i < LDMC_TPU_T_COUNT; i++) {
    char f[48];
    snprintf(f, sizeof f, "vector.cycles.%s", k_trans[i]);
    RANGE(t->vec_cycles[i], 1, 1 << 20, f);
  }
  RANGE(t->vmem_bytes, 1, UINT64_C(1) << 32, "scratchpad.bytes");
  RANGE(t->vmem_banks, 1, 1 << 16, "scratchpad.banks");
  RANGE(t->acc_bytes, 4.0 * t->mxu_cols, 4.0 * t->mxu_cols * 4294967295.0, "accumulator.bytes");
  if (t->acc_bytes % (4u * (uint64_t)t->mxu_cols))
    return bad(where, "accumulator.bytes", "not a whole number of rows of matrix.cols f32 values");
  RANGE(t->hbm_bytes_per_s, 1.0, 1e16, "offchip.bytes_per_s");
  RANGE(t->hbm_latency_ns, 0.0, 1e9, "offchip.latency_ns");
  RANGE(t->dma_engines, 1, 64, "offchip.dma_engines");
  return LDMC_OK;
}

/* ---- JSON --------------------------------------------------------------------------- */
typedef struct jctx {
  const char *where;
} jctx;

static const char *jtype(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT: return "an object";
  case JSON_ARRAY: return "an array";
  case JSON_STRING: return "a string";
  case JSON_INTEGER: return "an integer";
  case JSON_REAL: return "a real number";
  case JSON_TRUE:
  case JSON_FALSE: return "a boolean";
  default: return "null";
  }
}

/* obj must hold exactly the keys in names (NULL-terminated): a typo is an error. */
static ldmc_status only_keys(const jctx *c, const json_t *obj, const char *path, const char *const *names) {
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)obj, key, v) {
    bool known = false;
    for (int i = 0; names[i]; i++) known |= strcmp(key, names[i]) == 0;
    if (!known) {
      char q[64];
      return ldmc_error(LDMC_ERR_INVALID, "%s: unknown field %s%s%s", c->where, path, *path ? "." : "", ldmc_quote(key, q, sizeof q));
    }
  }
  return LDMC_OK;
}

static ldmc_status field(const jctx *c, const json_t *obj, const char *path, const char *key, json_t **out) {
  *out = json_object_get(obj, key);
  if (!*out) return ldmc_error(LDMC_ERR_INVALID, "%s: missing field %s%s%s", c->where, path, *path ? "." : "", key);
  return LDMC_OK;
}

static ldmc_status get_obj(const jctx *c, const json_t *obj, const char *path, const char *key, json_t **out) {
  LDMC_TRY(field(c, obj, path, key, out));
  if (!json_is_object(*out))
    return ldmc_error(LDMC_ERR_INVALID, "%s: field %s%s%s: expected an object, found %s", c->where, path, *path ? "." : "", key, jtype(*out));
  return LDMC_OK;
}

/* An integer >= min (the finer ranges are ldmc_tpu_target_check's). */
static ldmc_status get_int(const jctx *c, const json_t *obj, const char *path, const char *key, int64_t min, int64_t *out) {
  json_t *v;
  LDMC_TRY(field(c, obj, path, key, &v));
  const char *dot = *path ? "." : "";
  if (!json_is_integer(v))
    return ldmc_error(LDMC_ERR_INVALID, "%s: field %s%s%s: expected an integer, found %s", c->where, path, dot, key, jtype(v));
  int64_t x = (int64_t)json_integer_value(v);
  if (x < min)
    return ldmc_error(LDMC_ERR_INVALID, "%s: field %s%s%s: %lld is below the minimum %lld", c->where, path, dot, key, (long long)x,
                      (long long)min);
  *out = x;
  return LDMC_OK;
}

static ldmc_status get_i32(const jctx *c, const json_t *obj, const char *path, const char *key, int64_t min, int *out) {
  int64_t x;
  LDMC_TRY(get_int(c, obj, path, key, min, &x));
  if (x > INT32_MAX)
    return ldmc_error(LDMC_ERR_INVALID, "%s: field %s%s%s: %lld is too large", c->where, path, *path ? "." : "", key, (long long)x);
  *out = (int)x;
  return LDMC_OK;
}

static ldmc_status get_num(const jctx *c, const json_t *obj, const char *path, const char *key, double min, double *out) {
  json_t *v;
  LDMC_TRY(field(c, obj, path, key, &v));
  const char *dot = *path ? "." : "";
  if (!json_is_number(v))
    return ldmc_error(LDMC_ERR_INVALID, "%s: field %s%s%s: expected a number, found %s", c->where, path, dot, key, jtype(v));
  double x = json_number_value(v);
  if (!(x >= min) || !isfinite(x))
    return ldmc_error(LDMC_ERR_INVALID, "%s: field %s%s%s: %g is below the minimum %g", c->where, path, dot, key, x, min);
  *out = x;
  return LDMC_OK;
}

static ldmc_status parse_root(const jctx *c, const json_t *root, ldmc_tpu_target *t) {
  static const char *const top[] = {"name", "clock_hz", "cores_per_chip", "matrix", "vector", "scratchpad", "accumulator", "offchip", NULL};
  static const char *const mat[] = {"units", "rows", "cols", NULL};
  static const char *const vec[] = {"lanes", "sublanes", "ops_per_cycle", "latency_cycles", "cycles", NULL};
  static const char *const spm[] = {"bytes", "banks", NULL};
  static const char *const acc[] = {"bytes", NULL};
  static const char *const off[] = {"bytes_per_s", "latency_ns", "dma_engines", NULL};
  if (!json_is_object(root)) return ldmc_error(LDMC_ERR_INVALID, "%s: expected a JSON object, found %s", c->where, jtype(root));
  LDMC_TRY(only_keys(c, root, "", top));
  json_t *v, *o;
  LDMC_TRY(field(c, root, "", "name", &v));
  if (!json_is_string(v)) return ldmc_error(LDMC_ERR_INVALID, "%s: field name: expected a string, found %s", c->where, jtype(v));
  const char *name = json_string_value(v);
  if (!*name || strlen(name) >= sizeof t->name) return bad(c->where, "name", "empty or longer than 31 bytes");
  snprintf(t->name, sizeof t->name, "%s", name);
  LDMC_TRY(get_num(c, root, "", "clock_hz", 1, &t->clock_hz));
  LDMC_TRY(get_i32(c, root, "", "cores_per_chip", 1, &t->cores_per_chip));

  LDMC_TRY(get_obj(c, root, "", "matrix", &o));
  LDMC_TRY(only_keys(c, o, "matrix", mat));
  LDMC_TRY(get_i32(c, o, "matrix", "units", 1, &t->mxu_count));
  LDMC_TRY(get_i32(c, o, "matrix", "rows", 1, &t->mxu_rows));
  LDMC_TRY(get_i32(c, o, "matrix", "cols", 1, &t->mxu_cols));

  LDMC_TRY(get_obj(c, root, "", "vector", &o));
  LDMC_TRY(only_keys(c, o, "vector", vec));
  LDMC_TRY(get_i32(c, o, "vector", "lanes", 1, &t->vec_lanes));
  LDMC_TRY(get_i32(c, o, "vector", "sublanes", 1, &t->vec_sublanes));
  LDMC_TRY(get_i32(c, o, "vector", "ops_per_cycle", 1, &t->vec_ops_per_cycle));
  LDMC_TRY(get_i32(c, o, "vector", "latency_cycles", 0, &t->vec_latency));
  json_t *cy;
  LDMC_TRY(get_obj(c, o, "vector", "cycles", &cy));
  static const char *trans_keys[LDMC_TPU_T_COUNT + 1];
  for (int i = 0; i < LDMC_TPU_T_COUNT; i++) trans_keys[i] = k_trans[i];
  LDMC_TRY(only_keys(c, cy, "vector.cycles", trans_keys));
  for (int i = 0; i < LDMC_TPU_T_COUNT; i++) LDMC_TRY(get_i32(c, cy, "vector.cycles", k_trans[i], 1, &t->vec_cycles[i]));

  int64_t x;
  LDMC_TRY(get_obj(c, root, "", "scratchpad", &o));
  LDMC_TRY(only_keys(c, o, "scratchpad", spm));
  LDMC_TRY(get_int(c, o, "scratchpad", "bytes", 1, &x));
  t->vmem_bytes = (uint64_t)x;
  LDMC_TRY(get_i32(c, o, "scratchpad", "banks", 1, &t->vmem_banks));

  LDMC_TRY(get_obj(c, root, "", "accumulator", &o));
  LDMC_TRY(only_keys(c, o, "accumulator", acc));
  LDMC_TRY(get_int(c, o, "accumulator", "bytes", 1, &x));
  t->acc_bytes = (uint64_t)x;

  LDMC_TRY(get_obj(c, root, "", "offchip", &o));
  LDMC_TRY(only_keys(c, o, "offchip", off));
  LDMC_TRY(get_num(c, o, "offchip", "bytes_per_s", 1, &t->hbm_bytes_per_s));
  LDMC_TRY(get_num(c, o, "offchip", "latency_ns", 0, &t->hbm_latency_ns));
  LDMC_TRY(get_i32(c, o, "offchip", "dma_engines", 1, &t->dma_engines));
  return ldmc_tpu_target_check(t, c->where);
}

ldmc_status ldmc_tpu_target_parse(const char *text, size_t len, const char *where, ldmc_tpu_target *out) {
  jctx c = {where ? where : "<target>"};
  json_error_t err;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
  if (!root) return ldmc_error(LDMC_ERR_PARSE, "%s:%d:%d: %s", c.where, err.line, err.column, err.text);
  ldmc_tpu_target t;
  memset(&t, 0, sizeof t);
  ldmc_status st = parse_root(&c, root, &t);
  json_decref(root);
  if (st == LDMC_OK) *out = t;
  return st;
}

ldmc_status ldmc_tpu_target_load(const char *path, ldmc_tpu_target *out) {
  uint8_t *data;
  size_t len;
  LDMC_TRY(ldmc_file_read(path, 1 << 20, &data, &len));
  ldmc_status st = ldmc_tpu_target_parse((const char *)data, len, path, out);
  free(data);
  return st;
}
