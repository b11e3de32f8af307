/* .ldmc files: the ir/ codec streamed into an atomic file, and read back
 * through a read-only map so a large module is never held twice. */
#include "frontend/weights_io.h"
#include "support/fileio.h"

static ldmc_status file_write(void *ctx, const void *data, size_t len) {
  return ldmc_atomic_write(ctx, data, len);
}

static ldmc_status file_patch(void *ctx, uint64_t offset, const void *data, size_t len) {
  return ldmc_atomic_pwrite(ctx, offset, data, len);
}

ldmc_status ldmc_module_save(const char *path, const ldmc_module *m) {
  /* the reader verifies the graph: never write one it would refuse (the
   * encoder checks the tensors: names, dtypes, sizes, duplicates) */
  if (m->graph && ldmc_graph_verify(m->graph) != LDMC_OK) {
    ldmc_error_prefix("%s: not written: graph '%s': ", path, m->graph->name ? m->graph->name : "");
    return LDMC_ERR_INVALID;
  }
  ldmc_atomic_file *f;
  LDMC_TRY(ldmc_atomic_open(path, &f));
  ldmc_byte_sink sink = {file_write, file_patch, f};
  ldmc_status s = ldmc_module_encode_to(m, &sink);
  if (s != LDMC_OK) {
    ldmc_atomic_abort(f);
    ldmc_error_prefix("%s: ", path);
    return s;
  }
  return ldmc_atomic_commit(f);
}

ldmc_status ldmc_module_load(const char *path, ldmc_module *out) {
  ldmc_file_map *map;
  LDMC_TRY(ldmc_file_map_open(path, &map));
  ldmc_status s = ldmc_module_decode(map->data, map->len, out);
  ldmc_file_map_release(map);
  if (s != LDMC_OK) ldmc_error_prefix("%s: ", path);
  return s;
}
