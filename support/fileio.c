/* POSIX file helpers: bounded reads, read-only maps, atomic replacement. */
#include "support/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static ldmc_status io_error(const char *what, const char *path) {
  return ldmc_error(LDMC_ERR_IO, "%s '%s': %s", what, path, strerror(errno));
}

static const char *file_kind_name(mode_t m) {
  if (S_ISDIR(m)) return "a directory";
  if (S_ISFIFO(m)) return "a named pipe";
  if (S_ISSOCK(m)) return "a socket";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  return "a special file";
}

static ldmc_status not_regular(const char *path, mode_t m) {
  return ldmc_error(LDMC_ERR_IO, "'%s' is %s, not a regular file", path, file_kind_name(m));
}

/* stat first, so a FIFO, socket or device is refused without opening it; then
 * open with O_NONBLOCK (a FIFO swapped in after the stat does not block the
 * open) and check the opened file again with fstat. */
static ldmc_status open_regular(const char *path, int *fd_out, size_t *size_out) {
  struct stat st;
  if (stat(path, &st) != 0) return io_error("cannot open", path);
  if (!S_ISREG(st.st_mode)) return not_regular(path, st.st_mode);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return io_error("cannot open", path);
  if (fstat(fd, &st) != 0) {
    ldmc_status s = io_error("cannot stat", path);
    close(fd);
    return s;
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return not_regular(path, st.st_mode);
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0) (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  if ((uint64_t)st.st_size > SIZE_MAX) {
    close(fd);
    return ldmc_error(LDMC_ERR_IO, "'%s' is too large to address", path);
  }
  *fd_out = fd;
  *size_out = (size_t)st.st_size;
  return LDMC_OK;
}

ldmc_status ldmc_file_read_head(const char *path, void *buf, size_t cap, size_t *got) {
  int fd;
  size_t size;
  *got = 0;
  LDMC_TRY(open_regular(path, &fd, &size));
  size_t n = 0;
  while (n < cap) {
    ssize_t r = read(fd, (uint8_t *)buf + n, cap - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      ldmc_status s = io_error("cannot read", path);
      close(fd);
      return s;
    }
    if (r == 0) break;
    n += (size_t)r;
  }
  close(fd);
  *got = n;
  return LDMC_OK;
}

ldmc_status ldmc_file_read(const char *path, size_t max_bytes, uint8_t **out, size_t *out_len) {
  int fd;
  size_t size;
  *out = NULL;
  *out_len = 0;
  LDMC_TRY(open_regular(path, &fd, &size));
  if (size > max_bytes) {
    close(fd);
    return ldmc_error(LDMC_ERR_IO, "'%s' is %zu bytes, more than the %zu-byte limit", path, size, max_bytes);
  }
  uint8_t *buf = malloc(size + 1);
  if (!buf) {
    close(fd);
    return ldmc_error(LDMC_ERR_NOMEM, "cannot allocate %zu bytes to read '%s'", size + 1, path);
  }
  size_t got = 0;
  while (got < size) {
    ssize_t r = read(fd, buf + got, size - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      ldmc_status s = io_error("cannot read", path);
      free(buf);
      close(fd);
      return s;
    }
    if (r == 0) break; /* the file shrank while we read it */
    got += (size_t)r;
  }
  close(fd);
  buf[got] = 0;
  *out = buf;
  *out_len = got;
  return LDMC_OK;
}

ldmc_status ldmc_file_map_open(const char *path, ldmc_file_map **out) {
  int fd;
  size_t size;
  *out = NULL;
  LDMC_TRY(open_regular(path, &fd, &size));
  ldmc_file_map *m = calloc(1, sizeof *m);
  if (!m) {
    close(fd);
    return ldmc_error(LDMC_ERR_NOMEM, "out of memory mapping '%s'", path);
  }
  if (size > 0) {
    void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ldmc_status s = io_error("cannot map", path);
      free(m);
      close(fd);
      return s;
    }
    m->data = p;
    m->len = size;
  }
  close(fd); /* the mapping keeps the file alive */
  *out = m;
  return LDMC_OK;
}

void ldmc_file_map_release(void *map) {
  ldmc_file_map *m = map;
  if (!m) return;
  if (m->len) munmap((void *)m->data, m->len);
  free(m);
}

/* ---- atomic writes ---- */
struct ldmc_atomic_file {
  int fd;
  bool failed;
  char *path, *tmp;
};

static atomic_uint g_tmp_counter;

/* Temp files being written, for the signal handler: a fixed table of lock-free
 * atomic pointers, so the handler only loads pointers and calls unlink (both
 * async-signal-safe). A path is registered once its file exists and removed
 * from the table only after the file was renamed or unlinked, just before its
 * string is freed; an unlink after a rename fails harmlessly with ENOENT. */
#define TMP_SLOTS 64
static char *_Atomic g_tmp_slots[TMP_SLOTS];

static void tmp_register(char *p) {
  for (int i = 0; i < TMP_SLOTS; i++) {
    char *expected = NULL;
    if (atomic_compare_exchange_strong(&g_tmp_slots[i], &expected, p)) return;
  }
  /* table full (64 writes at once): this one is not cleaned up on a signal */
}

static void tmp_unregister(const char *p) {
  for (int i = 0; i < TMP_SLOTS; i++) {
    char *expected = (char *)p;
    if (atomic_compare_exchange_strong(&g_tmp_slots[i], &expected, NULL)) return;
  }
}

void ldmc_file_remove_temps(void) {
  for (int i = 0; i < TMP_SLOTS; i++) {
    char *p = atomic_load(&g_tmp_slots[i]);
    if (p) (void)unlink(p);
  }
}

static void on_fatal_signal(int sig) {
  int saved = errno;
  ldmc_file_remove_temps();
  errno = saved;
  /* SA_RESETHAND restored the default action: raise it again, so the process
   * ends by the signal as it would have (exit status 128 + sig in a shell). */
  raise(sig);
}

void ldmc_file_install_signal_cleanup(void) {
  static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
    struct sigaction old;
    if (sigaction(sigs[i], NULL, &old) != 0 || old.sa_handler == SIG_IGN) continue; /* keep nohup's ignore */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = (int)SA_RESETHAND;
    (void)sigaction(sigs[i], &sa, NULL);
  }
}

ldmc_status ldmc_atomic_open(const char *path, ldmc_atomic_file **out) {
  *out = NULL;
  ldmc_atomic_file *f = calloc(1, sizeof *f);
  size_t n = strlen(path) + 64;
  if (!f || !(f->path = strdup(path)) || !(f->tmp = malloc(n))) {
    if (f) free(f->path);
    free(f);
    return ldmc_error(LDMC_ERR_NOMEM, "out of memory opening '%s'", path);
  }
  /* O_EXCL on our own unique name instead of mkstemp: the file gets the usual
   * 0666 & ~umask mode rather than mkstemp's 0600. */
  for (int attempt = 0;; attempt++) {
    snprintf(f->tmp, n, "%s.tmp.%ld.%u", path, (long)getpid(), atomic_fetch_add(&g_tmp_counter, 1));
    f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (f->fd >= 0) {
      tmp_register(f->tmp);
      break;
    }
    if (errno != EEXIST || attempt > 100) {
      ldmc_status s = io_error("cannot create temporary file", f->tmp);
      free(f->tmp);
      free(f->path);
      free(f);
      return s;
    }
  }
  *out = f;
  return LDMC_OK;
}

const char *ldmc_atomic_temp_path(const ldmc_atomic_file *f) { return f->tmp; }

ldmc_status ldmc_atomic_write(ldmc_atomic_file *f, const void *data, size_t len) {
  if (f->failed) return ldmc_error(LDMC_ERR_IO, "write to '%s' after an earlier failure", f->tmp);
  const uint8_t *p = data;
  while (len > 0) {
    ssize_t w = write(f->fd, p, len > (1u << 30) ? (1u << 30) : len);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      f->failed = true;
      return io_error("cannot write", f->tmp);
    }
    p += w;
    len -= (size_t)w;
  }
  return LDMC_OK;
}

ldmc_status ldmc_atomic_pwrite(ldmc_atomic_file *f, uint64_t offset, const void *data, size_t len) {
  if (f->failed) return ldmc_error(LDMC_ERR_IO, "write to '%s' after an earlier failure", f->tmp);
  const uint8_t *p = data;
  while (len > 0) {
    if (offset > (uint64_t)INT64_MAX) {
      f->failed = true;
      return ldmc_error(LDMC_ERR_IO, "offset %llu is too large for '%s'", (unsigned long long)offset, f->tmp);
    }
    ssize_t w = pwrite(f->fd, p, len > (1u << 30) ? (1u << 30) : len, (off_t)offset);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      f->failed = true;
      return io_error("cannot write", f->tmp);
    }
    p += w;
    len -= (size_t)w;
    offset += (uint64_t)w;
  }
  return LDMC_OK;
}

static void atomic_free(ldmc_atomic_file *f) {
  tmp_unregister(f->tmp); /* after the rename or unlink */
  free(f->tmp);
  free(f->path);
  free(f);
}

void ldmc_atomic_abort(ldmc_atomic_file *f) {
  if (!f) return;
  if (f->fd >= 0) close(f->fd);
  unlink(f->tmp);
  atomic_free(f);
}

/* Makes the rename itself durable. Best effort: the new file is already in
 * place, and some directories cannot be opened or synced (no read permission,
 * file systems that refuse fsync on directories), which is not data loss. */
static void fsync_parent(const char *path) {
  char *dir = strdup(path);
  if (!dir) return;
  char *slash = strrchr(dir, '/');
  const char *d = dir;
  if (!slash) d = ".";
  else if (slash == dir) slash[1] = 0; /* "/file" -> "/" */
  else *slash = 0;
  int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)fsync(fd);
    close(fd);
  }
  free(dir);
}

ldmc_status ldmc_atomic_commit(ldmc_atomic_file *f) {
  ldmc_status s = LDMC_OK;
  if (f->failed) s = ldmc_error(LDMC_ERR_IO, "not committing '%s' after a failed write", f->path);
  else if (fsync(f->fd) != 0) s = io_error("cannot sync", f->tmp);
  int fd = f->fd;
  f->fd = -1;
  if (close(fd) != 0 && s == LDMC_OK) s = io_error("cannot close", f->tmp);
  if (s == LDMC_OK && rename(f->tmp, f->path) != 0) s = io_error("cannot rename temporary file onto", f->path);
  if (s != LDMC_OK) {
    unlink(f->tmp);
    atomic_free(f);
    return s;
  }
  fsync_parent(f->path);
  atomic_free(f);
  return LDMC_OK;
}

ldmc_status ldmc_file_write_atomic(const char *path, const void *data, size_t len) {
  ldmc_atomic_file *f;
  LDMC_TRY(ldmc_atomic_open(path, &f));
  ldmc_status s = ldmc_atomic_write(f, data, len);
  if (s != LDMC_OK) {
    ldmc_atomic_abort(f);
    return s;
  }
  return ldmc_atomic_commit(f);
}

ldmc_status ldmc_make_dirs(const char *dir, unsigned mode) {
  char path[4096];
  size_t n = strlen(dir);
  if (n >= sizeof path) return ldmc_error(LDMC_ERR_IO, "folder '%.64s...': path too long", dir);
  memcpy(path, dir, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (path[i] != '/' && path[i] != '\0') continue;
    char save = path[i];
    path[i] = '\0';
    struct stat st;
    if (stat(path, &st) != 0) {
      if (mkdir(path, (mode_t)mode) != 0 && errno != EEXIST)
        return ldmc_error(LDMC_ERR_IO, "cannot create folder '%s': %s", path, strerror(errno));
    } else if (!S_ISDIR(st.st_mode)) {
      return ldmc_error(LDMC_ERR_IO, "'%s' is not a folder", path);
    }
    path[i] = save;
  }
  return LDMC_OK;
}
