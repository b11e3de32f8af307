/* File handling shared by the driver's commands: recognizing a file's kind,
 * loading any of them into a module, and writing modules, text IR and
 * safetensors atomically (never a partial output file). */
#ifndef LDMC_TOOLS_CLI_IO_H
#define LDMC_TOOLS_CLI_IO_H

#include <stdbool.h>
#include <stdio.h>

#include "ir/ir.h"
#include "tools/cli_args.h"

typedef enum ldmc_file_kind {
  LDMC_KIND_TEXT,        /* text IR: .txt, .ldmcir */
  LDMC_KIND_LDMC,        /* binary module: .ldmc */
  LDMC_KIND_SAFETENSORS, /* tensors: .safetensors */
} ldmc_file_kind;

const char *ldmc_file_kind_name(ldmc_file_kind k); /* "text IR", ... */
/* The kind an existing file holds, by its first bytes ("LDMC" magic, the
 * safetensors header-length + '{' prelude, anything else is text). */
ldmc_status ldmc_tool_sniff(const char *path, ldmc_file_kind *out);
/* The kind an output path asks for by its extension; false if unknown. */
bool ldmc_tool_kind_from_ext(const char *path, ldmc_file_kind *out);
/* "text", "ldmc", "safetensors" -> kind; false if unknown. */
bool ldmc_tool_kind_from_name(const char *name, ldmc_file_kind *out);

/* Loads any kind into a module: text gives a graph and no tensors, safetensors
 * tensors and no graph. Graphs are verified. Messages name the file. */
ldmc_status ldmc_tool_load(const char *path, ldmc_module *out, ldmc_file_kind *kind);
/* Reads a .safetensors file (memory-mapped) into a tensor set. */
ldmc_status ldmc_tool_read_tensors(const char *path, ldmc_tensor_set *out);

/* Writers, each atomic. Text needs a graph, safetensors writes the tensors. */
ldmc_status ldmc_tool_save(const char *path, ldmc_file_kind kind, const ldmc_module *m);
ldmc_status ldmc_tool_write_tensors(const char *path, const ldmc_tensor_set *s);
ldmc_status ldmc_tool_write_text(const char *path, const char *text);

/* Output paths, checked by every command before it reads or computes anything,
 * so a refused path leaves an existing file untouched.
 * ldmc_tool_check_output: path (given as flag, e.g. "--out"; NULL for a
 * positional) must end in one of exts (NULL-terminated, e.g. {".safetensors",
 * NULL}); else a usage error naming the extensions (exit 2). NULL path: fine. */
int ldmc_tool_check_output(const ldmc_cli_cmd *c, const char *flag, const char *path, const char *const *exts);
/* Whether two paths name the same file: st_dev + st_ino when both exist, else
 * their normalized absolute spellings. */
bool ldmc_tool_same_file(const char *a, const char *b);
/* No two of the n paths (NULLs skipped) may be the same file: else a usage
 * error naming both flags (what[i], e.g. "--out"). */
int ldmc_tool_check_distinct(const ldmc_cli_cmd *c, int n, const char *const *what, const char *const *paths);
/* One line "wrote PATH: N bytes, WHAT". */
void ldmc_tool_print_wrote(FILE *f, const char *path, const char *what);
/* What ldmc_tool_save(kind, m) writes, for that line: "ldmc module: graph 'unet'
 * (1234 nodes) and 686 tensors", "text IR: graph 'axpy' (8 nodes)". */
void ldmc_tool_describe(const ldmc_module *m, ldmc_file_kind kind, char *buf, size_t len);

/* A non-owning view of t under its own name (for merging tensor sets). */
ldmc_status ldmc_tool_tensor_view(const ldmc_tensor *t, ldmc_tensor *out);
/* "f32" or the raw safetensors dtype name ("U8") of a tensor. */
const char *ldmc_tool_dtype_str(const ldmc_tensor *t);
/* "1.5 KiB" style sizes. */
void ldmc_tool_format_bytes(double bytes, char *buf, size_t len);
/* "1.234 GFLOP" style counts with a unit suffix. */
void ldmc_tool_format_count(double n, const char *unit, char *buf, size_t len);

#endif
