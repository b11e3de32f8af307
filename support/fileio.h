/* Whole-file reads, read-only memory maps, and atomic writes (a temp file in
 * the same directory, fsync, rename), so a crash or error never leaves a
 * partial file at the destination path. Errors name the path and errno. */
#ifndef LDMC_SUPPORT_FILEIO_H
#define LDMC_SUPPORT_FILEIO_H

#include <stddef.h>
#include <stdint.h>

#include "support/status.h"

/* Every reader opens only regular files: a directory, FIFO, socket or device
 * is refused by name and kind, without blocking (stat, then O_NONBLOCK open and
 * fstat). */

/* Reads up to cap bytes from the start of a regular file (for sniffing its kind). */
ldmc_status ldmc_file_read_head(const char *path, void *buf, size_t cap, size_t *got);

/* Reads all of path into a malloc'd buffer (NUL-terminated one past *out_len,
 * so text can be parsed in place). Fails if the file is larger than max_bytes. */
ldmc_status ldmc_file_read(const char *path, size_t max_bytes, uint8_t **out, size_t *out_len);

/* A read-only mapping of a whole file. An empty file gives data == NULL, len 0. */
typedef struct ldmc_file_map {
  const uint8_t *data;
  size_t len;
} ldmc_file_map;

ldmc_status ldmc_file_map_open(const char *path, ldmc_file_map **out);
/* Unmaps and frees; takes void * so it can be a ldmc_tensor_set release callback. */
void ldmc_file_map_release(void *map);

/* Streaming atomic writer: bytes go to "<path>.tmp.<pid>.<n>"; commit fsyncs,
 * renames over path and fsyncs the directory; abort (or any failed call)
 * removes the temp file. After a failed write/pwrite only abort is allowed. */
typedef struct ldmc_atomic_file ldmc_atomic_file;

ldmc_status ldmc_atomic_open(const char *path, ldmc_atomic_file **out);
ldmc_status ldmc_atomic_write(ldmc_atomic_file *f, const void *data, size_t len);
ldmc_status ldmc_atomic_pwrite(ldmc_atomic_file *f, uint64_t offset, const void *data, size_t len);
ldmc_status ldmc_atomic_commit(ldmc_atomic_file *f); /* frees f, success or not */
void ldmc_atomic_abort(ldmc_atomic_file *f);          /* frees f; NULL is fine */
const char *ldmc_atomic_temp_path(const ldmc_atomic_file *f);

/* Removes the temp files of every atomic write in progress (async-signal-safe). */
void ldmc_file_remove_temps(void);
/* Installs SIGINT/SIGTERM/SIGHUP/SIGQUIT handlers (not over an ignored signal)
 * that remove those temp files and then re-raise the signal with its default
 * action. For executables (the ldmc driver); a library never installs them. */
void ldmc_file_install_signal_cleanup(void);

/* One-shot atomic write of a buffer. */
ldmc_status ldmc_file_write_atomic(const char *path, const void *data, size_t len);

/* mkdir -p: creates the missing folders of dir with mode (existing ones are
 * kept). The error names the component that could not be made, or that is
 * not a folder. */
ldmc_status ldmc_make_dirs(const char *dir, unsigned mode);

#endif
