/* ldmc IR: dtypes, shapes, the op table, graphs, tensors, and their text and
 * binary forms. The one public header of ir/. Nothing here touches files,
 * threads or LLVM. */
#ifndef LDMC_IR_H
#define LDMC_IR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "support/status.h"

#define LDMC_MAX_RANK 8

/* ---- dtypes ---------------------------------------------------------------- */
typedef enum ldmc_dtype {
  LDMC_F32,
  LDMC_BF16,
  LDMC_F16,
  LDMC_I32,
  LDMC_I64,
  LDMC_PRED,
  LDMC_F64, /* appended: the numbers of the dtypes above stay as they were */
  LDMC_DTYPE_COUNT
} ldmc_dtype;

/* dtype classes, used as bit masks over (1 << dtype) */
#define LDMC_DT_FLOAT ((1u << LDMC_F32) | (1u << LDMC_BF16) | (1u << LDMC_F16) | (1u << LDMC_F64))
#define LDMC_DT_INT ((1u << LDMC_I32) | (1u << LDMC_I64))
#define LDMC_DT_NUMERIC (LDMC_DT_FLOAT | LDMC_DT_INT)
#define LDMC_DT_PRED (1u << LDMC_PRED)
#define LDMC_DT_ANY (LDMC_DT_NUMERIC | LDMC_DT_PRED)

const char *ldmc_dtype_name(ldmc_dtype dt);            /* "f32", ... */
bool ldmc_dtype_parse(const char *s, size_t len, ldmc_dtype *out);
size_t ldmc_dtype_size(ldmc_dtype dt);                 /* bytes per element; pred = 1 */
bool ldmc_dtype_is_float(ldmc_dtype dt);

/* ---- shapes ---------------------------------------------------------------- */
typedef struct ldmc_shape {
  int rank; /* 0..LDMC_MAX_RANK */
  int64_t dims[LDMC_MAX_RANK];
} ldmc_shape;

ldmc_shape ldmc_shape_make(int rank, const int64_t *dims);
bool ldmc_shape_equal(const ldmc_shape *a, const ldmc_shape *b);
/* Element count; fails (with a message) on a negative dim, rank > 8, or overflow
 * of int64. Also checks numel * elem_size fits in int64 when elem_size > 0. */
ldmc_status ldmc_shape_numel(const ldmc_shape *s, size_t elem_size, int64_t *out);
/* Writes e.g. "[2,320,64,64]"; returns buf. */
char *ldmc_shape_str(const ldmc_shape *s, char *buf, size_t len);

/* ---- attributes -------------------------------------------------------------- */
typedef struct ldmc_ints {
  int n;
  int64_t v[LDMC_MAX_RANK];
} ldmc_ints;

typedef struct ldmc_literal { /* constant data, dtype and shape are the node's */
  void *data;
  size_t nbytes;
} ldmc_literal;

typedef enum ldmc_compare { LDMC_CMP_EQ, LDMC_CMP_NE, LDMC_CMP_LT, LDMC_CMP_LE, LDMC_CMP_GT, LDMC_CMP_GE, LDMC_CMP_COUNT } ldmc_compare;
typedef enum ldmc_reduce_kind { LDMC_REDUCE_SUM, LDMC_REDUCE_MAX, LDMC_REDUCE_MIN, LDMC_REDUCE_COUNT } ldmc_reduce_kind;
const char *ldmc_compare_name(ldmc_compare c);          /* "eq" ... */
const char *ldmc_reduce_kind_name(ldmc_reduce_kind k);  /* "sum" ... */

typedef enum ldmc_attr_kind {
  LDMC_AK_INT, LDMC_AK_FLOAT, LDMC_AK_INTS, LDMC_AK_STRING, LDMC_AK_LITERAL, LDMC_AK_COMPARE, LDMC_AK_REDUCE
} ldmc_attr_kind;

typedef enum ldmc_attr_field {
#define LDMC_ATTR(E, NAME, KIND, MEMBER) LDMC_ATTR_##E,
#include "ir/attrs.def"
#undef LDMC_ATTR
  LDMC_ATTR_COUNT
} ldmc_attr_field;
#define LDMC_AM(E) (UINT64_C(1) << LDMC_ATTR_##E)

/* Every attribute a node can carry; an op reads the fields in its mask. */
typedef struct ldmc_attrs {
  char *name;
  ldmc_literal value;
  int64_t axis;
  ldmc_ints dims;
  ldmc_compare direction;
  ldmc_reduce_kind reduce;
  ldmc_ints start, limit, stride;
  ldmc_ints low, high, interior;
  ldmc_ints lhs_batch, rhs_batch, lhs_contract, rhs_contract;
  ldmc_ints window_stride, pad_low, pad_high, lhs_dilation, rhs_dilation;
  ldmc_ints input_dims, kernel_dims, output_dims;
  int64_t groups;
  double eps;
  double scale;
  int64_t factor;
} ldmc_attrs;

typedef struct ldmc_attr_info {
  const char *name;
  ldmc_attr_kind kind;
  size_t offset; /* of the member in ldmc_attrs */
} ldmc_attr_info;
extern const ldmc_attr_info ldmc_attr_table[LDMC_ATTR_COUNT];
bool ldmc_attr_lookup(const char *name, size_t len, ldmc_attr_field *out);

/* Deep copy (name and literal data are owned by the copy). */
ldmc_status ldmc_attrs_copy(ldmc_attrs *dst, const ldmc_attrs *src);
void ldmc_attrs_free(ldmc_attrs *a);

/* ---- ops ----------------------------------------------------------------------- */
typedef enum ldmc_op {
#define LDMC_OP(E, NAME, ARITY, ATTRS, SHAPE, FLOPS, DTYPES, FLAGS) LDMC_OP_##E,
#include "ir/ops.def"
#undef LDMC_OP
  LDMC_OP_COUNT
} ldmc_op;

enum {
  LDMC_OPF_SOURCE = 1u << 0,      /* no operands carry data in (parameter, constant, iota) */
  LDMC_OPF_ELEMENTWISE = 1u << 1, /* out[i] depends on in[i] only, all shapes equal */
  LDMC_OPF_COMPOSITE = 1u << 2,   /* has a decomposition into primitives */
  LDMC_OPF_DIFFERENTIABLE = 1u << 3, /* float result differentiable in its float operands: has a VJP rule */
};

typedef struct ldmc_flops {
  int64_t mac; /* 2 x multiply-adds of convolutions and matrix products */
  int64_t other; /* elementwise, normalization, softmax, reductions */
} ldmc_flops;

/* The operand types an op is checked against, and the result type it gives.
 * dtype/shape enter as the declared result type (used by ops whose result is
 * not implied by operands: parameter, constant, iota, convert, reshape,
 * broadcast_in_dim, rng) and leave as the inferred one. */
typedef struct ldmc_type_query {
  ldmc_op op;
  const ldmc_attrs *attrs;
  int n_operands;
  const ldmc_dtype *operand_dtypes;
  const ldmc_shape *operand_shapes;
  ldmc_dtype dtype;
  ldmc_shape shape;
} ldmc_type_query;

typedef ldmc_status (*ldmc_shape_rule)(ldmc_type_query *q);
typedef void (*ldmc_flop_rule)(const ldmc_type_query *q, ldmc_flops *out);

typedef struct ldmc_op_info {
  const char *name;
  int arity;           /* -1: one or more */
  uint64_t attr_mask;  /* LDMC_AM(...) */
  ldmc_shape_rule shape_rule;
  ldmc_flop_rule flop_rule;
  uint32_t dtypes;     /* LDMC_DT_* allowed result dtypes */
  uint32_t flags;      /* LDMC_OPF_* */
} ldmc_op_info;

extern const ldmc_op_info ldmc_op_table[LDMC_OP_COUNT];
const char *ldmc_op_name(ldmc_op op);
bool ldmc_op_lookup(const char *name, size_t len, ldmc_op *out);

/* Runs the op's shape rule (and the arity, attribute and dtype checks). */
ldmc_status ldmc_infer_type(ldmc_type_query *q);

/* ---- graphs ---------------------------------------------------------------------- */
typedef struct ldmc_node {
  ldmc_op op;
  ldmc_dtype dtype;
  ldmc_shape shape;
  int n_operands;
  int32_t *operands; /* ids of earlier nodes */
  ldmc_attrs attrs;
  char *scope;       /* model block the node came from, e.g. "down_blocks.1.attentions.0"; may be NULL */
} ldmc_node;

/* SSA graph: node i may only use nodes < i. Parameters are the inputs, in
 * order of appearance; outputs are named. */
typedef struct ldmc_graph {
  char *name;
  ldmc_node *nodes;
  int32_t n_nodes, cap_nodes;
  int32_t *outputs;
  char **output_names;
  int32_t n_outputs, cap_outputs;
} ldmc_graph;

ldmc_graph *ldmc_graph_new(const char *name);
void ldmc_graph_free(ldmc_graph *g);
ldmc_graph *ldmc_graph_clone(const ldmc_graph *g);
/* Appends a node (attrs and scope are deep-copied) without checking types;
 * returns its id, or -1 with an error message. Builders use
 * ldmc_graph_add_checked, which infers the result type first. */
int32_t ldmc_graph_add(ldmc_graph *g, ldmc_op op, ldmc_dtype dtype, const ldmc_shape *shape, int n_operands,
                       const int32_t *operands, const ldmc_attrs *attrs, const char *scope);
/* Infers the result type with ldmc_infer_type (dtype/shape are the declared
 * type for the ops that need one, else ignored) and appends. -1 on error. */
int32_t ldmc_graph_add_checked(ldmc_graph *g, ldmc_op op, ldmc_dtype dtype, const ldmc_shape *shape, int n_operands,
                               const int32_t *operands, const ldmc_attrs *attrs, const char *scope);
ldmc_status ldmc_graph_add_output(ldmc_graph *g, int32_t node, const char *name);
/* Number of parameter nodes, and the id of the i-th one (-1 if none). */
int32_t ldmc_graph_num_params(const ldmc_graph *g);
int32_t ldmc_graph_find_param(const ldmc_graph *g, const char *name);
/* Node id of the k-th parameter (run input k), -1 if there is none. */
int32_t ldmc_graph_param_node(const ldmc_graph *g, int32_t k);

/* Checks SSA order, arity, attributes, dtypes and shapes of every node, output
 * ids and names. The message names the node (%id op) and the rule broken. */
ldmc_status ldmc_graph_verify(const ldmc_graph *g);

/* FLOPs of one node (through the op table's rule) and of the whole graph. */
ldmc_flops ldmc_node_flops(const ldmc_graph *g, int32_t id);
ldmc_flops ldmc_graph_flops(const ldmc_graph *g);

/* ---- text form ------------------------------------------------------------------- */
/* Prints the HLO-like text form into a malloc'd string (caller frees). */
char *ldmc_graph_print(const ldmc_graph *g);
/* Parses text into a new graph; errors read "line:col: expected X, found Y". */
ldmc_status ldmc_graph_parse(const char *text, size_t len, ldmc_graph **out);

/* ---- tensors --------------------------------------------------------------------- */
typedef struct ldmc_tensor {
  char *name;
  ldmc_dtype dtype;
  ldmc_shape shape;
  void *data;      /* 64-byte aligned when owned */
  size_t nbytes;
  bool owns_data;
  /* Non-empty for tensors of a safetensors dtype ldmc does not compute with
   * ("U8", "U64", "F8_E4M3", ...): data holds those raw bytes, nbytes =
   * numel x ldmc_raw_dtype_size(raw_dtype), and dtype is LDMC_DTYPE_COUNT so
   * dtype-dispatching code refuses it instead of misreading it. */
  char raw_dtype[12];
} ldmc_tensor;

/* Element size of a raw (non-native) safetensors dtype name, 0 if unknown. */
size_t ldmc_raw_dtype_size(const char *name);

/* Allocates zeroed, 64-byte aligned storage for dtype x shape. */
ldmc_status ldmc_tensor_alloc(ldmc_tensor *t, const char *name, ldmc_dtype dtype, const ldmc_shape *shape);
void ldmc_tensor_release(ldmc_tensor *t);
/* Element access across dtypes (floats widened exactly; ints as doubles). */
double ldmc_tensor_get(const ldmc_tensor *t, int64_t i);
/* Rounds to nearest even for bf16/f16 (correctly, from the double); ints
 * truncate toward zero and saturate, NaN -> 0. */
void ldmc_tensor_set_elem(ldmc_tensor *t, int64_t i, double v);

/* An ordered list of named tensors (safetensors file, module weights, inputs). */
typedef struct ldmc_tensor_set {
  ldmc_tensor *items;
  int32_t n, cap;
  void (*release)(void *ctx); /* frees shared backing storage (e.g. an mmap) */
  void *release_ctx;
} ldmc_tensor_set;

/* Takes ownership of *t (its name, and data if owned). Rejects duplicate names. */
ldmc_status ldmc_tensor_set_add(ldmc_tensor_set *s, ldmc_tensor *t);
ldmc_tensor *ldmc_tensor_set_find(const ldmc_tensor_set *s, const char *name);
void ldmc_tensor_set_free(ldmc_tensor_set *s);

/* ---- binary form (.ldmc) ------------------------------------------------------------ */
/* A module: an optional graph and named tensors (weights, checkpoints). */
typedef struct ldmc_module {
  ldmc_graph *graph;          /* may be NULL */
  ldmc_tensor_set tensors;
} ldmc_module;

/* Serializes to a malloc'd buffer / parses from memory; every size, offset,
 * dtype and shape in the input is validated. Files: see runtime/ and tools/. */
ldmc_status ldmc_module_encode(const ldmc_module *m, uint8_t **out, size_t *out_len);
ldmc_status ldmc_module_decode(const uint8_t *data, size_t len, ldmc_module *out);
void ldmc_module_free(ldmc_module *m);
/* As ldmc_module_decode, but refuses (LDMC_ERR_FORMAT) files whose tensors and
 * constants would take more than max_bytes once decompressed; 0 = no limit.
 * For untrusted input, where a small file could expand enormously. */
ldmc_status ldmc_module_decode_limited(const uint8_t *data, size_t len, uint64_t max_bytes, ldmc_module *out);
/* Streaming encode, so a large module never sits in memory twice: write()
 * receives the file's bytes in order, then patch() rewrites the fixed-size
 * prelude at offset 0 (a seekable destination: a file, a buffer). */
typedef struct ldmc_byte_sink {
  ldmc_status (*write)(void *ctx, const void *data, size_t len);
  ldmc_status (*patch)(void *ctx, uint64_t offset, const void *data, size_t len);
  void *ctx;
} ldmc_byte_sink;
ldmc_status ldmc_module_encode_to(const ldmc_module *m, const ldmc_byte_sink *sink);
/* A sink into a growing malloc'd buffer (b->p, b->len; the caller frees p). */
typedef struct ldmc_membuf {
  uint8_t *p;
  size_t len, cap;
} ldmc_membuf;
ldmc_byte_sink ldmc_membuf_sink(ldmc_membuf *b);
/* For containers that carry more than a module (checkpoints: runtime/): once
 * every chunk is written, extra() receives the Header the encoder packed and
 * returns further Header fields, packed, in a malloc'd buffer that is written
 * right after it (protobuf merges concatenated messages). */
typedef struct ldmc_header_extra {
  ldmc_status (*extra)(void *ctx, const uint8_t *header, size_t len, uint8_t **out, size_t *out_len);
  void *ctx;
} ldmc_header_extra;
ldmc_status ldmc_module_encode_ext(const ldmc_module *m, const ldmc_header_extra *x, const ldmc_byte_sink *sink);

#endif
