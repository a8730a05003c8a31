/*
 * @cairn/posix: the few POSIX calls Node's fs lacks and a file backup needs (extended
 * attributes, nanosecond times on symlinks, device nodes, SEEK_DATA/SEEK_HOLE, user and group
 * names). Every call is synchronous and cheap (one or a few syscalls); errors are thrown as
 * Node's fs errors are: an Error with `code` (errno name), `errno` (negative, as libuv and fs
 * report it), `syscall` and `path`.
 */
#include <node_api.h>
#include <uv.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/falloc.h>
#include <malloc.h>
#include <pwd.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>

#define CHECK(call)                                                                            \
  do {                                                                                         \
    if ((call) != napi_ok) return NULL;                                                        \
  } while (0)

/* A path taken from a Buffer (bytes as they are) or a string (UTF-8), NUL-terminated. */
typedef struct {
  char *bytes;
  size_t length;
} c_path;

static napi_value throw_errno(napi_env env, int err, const char *syscall, const c_path *path) {
  const char *name = uv_err_name(-err);
  const char *text = uv_strerror(-err);
  size_t size = strlen(name) + strlen(text) + strlen(syscall) + (path ? path->length : 0) + 16;
  char *message = malloc(size);
  if (message == NULL) {
    napi_throw_error(env, name, text);
    return NULL;
  }
  if (path)
    snprintf(message, size, "%s: %s, %s '%s'", name, text, syscall, path->bytes);
  else
    snprintf(message, size, "%s: %s, %s", name, text, syscall);
  napi_value js_message, error, value;
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &js_message);
  free(message);
  napi_create_error(env, NULL, js_message, &error);
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &value);
  napi_set_named_property(env, error, "code", value);
  napi_create_int32(env, -err, &value);
  napi_set_named_property(env, error, "errno", value);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &value);
  napi_set_named_property(env, error, "syscall", value);
  if (path) {
    napi_create_string_utf8(env, path->bytes, path->length, &value);
    napi_set_named_property(env, error, "path", value);
  }
  napi_throw(env, error);
  return NULL;
}

/* Throws a TypeError (code ERR_INVALID_ARG_TYPE); returns NULL. Shared with the other sources. */
napi_value throw_type(napi_env env, const char *message) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
  return NULL;
}

/* The bytes of a Uint8Array (over an ArrayBuffer or a SharedArrayBuffer); false when `value` is none. Shared with the other sources. */
bool uint8_array_bytes(napi_env env, napi_value value, uint8_t **data, size_t *length) {
  bool is_typedarray = false;
  napi_typedarray_type type;
  void *bytes;
  if (napi_is_typedarray(env, value, &is_typedarray) != napi_ok || !is_typedarray) return false;
  if (napi_get_typedarray_info(env, value, &type, length, &bytes, NULL, NULL) != napi_ok || type != napi_uint8_array) return false;
  *data = bytes;
  return true;
}

/* Reads argument `value` as a path; returns 0 and throws a TypeError on a wrong type or a NUL byte. */
static int get_path(napi_env env, napi_value value, c_path *out) {
  bool is_buffer = false;
  napi_is_buffer(env, value, &is_buffer);
  if (is_buffer) {
    void *data;
    size_t length;
    if (napi_get_buffer_info(env, value, &data, &length) != napi_ok) return 0;
    out->bytes = malloc(length + 1);
    if (out->bytes == NULL) return throw_type(env, "out of memory"), 0;
    memcpy(out->bytes, data, length);
    out->bytes[length] = 0;
    out->length = length;
  } else {
    napi_valuetype type;
    napi_typeof(env, value, &type);
    if (type != napi_string) return throw_type(env, "path must be a Buffer or a string"), 0;
    size_t length;
    napi_get_value_string_utf8(env, value, NULL, 0, &length);
    out->bytes = malloc(length + 1);
    if (out->bytes == NULL) return throw_type(env, "out of memory"), 0;
    napi_get_value_string_utf8(env, value, out->bytes, length + 1, &out->length);
  }
  if (memchr(out->bytes, 0, out->length) != NULL) {
    free(out->bytes);
    return throw_type(env, "path must not contain NUL bytes"), 0;
  }
  return 1;
}

static int get_bigint_or_number(napi_env env, napi_value value, int64_t *out) {
  napi_valuetype type;
  napi_typeof(env, value, &type);
  if (type == napi_bigint) {
    bool lossless;
    return napi_get_value_bigint_int64(env, value, out, &lossless) == napi_ok && lossless;
  }
  if (type == napi_number) return napi_get_value_int64(env, value, out) == napi_ok;
  return 0;
}

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return 0;
  if (argc < want) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS", "too few arguments");
    return 0;
  }
  return 1;
}

/* ---- extended attributes ------------------------------------------------------------ */

static int compare_names(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* llistxattr into a growing buffer; returns the list length, or -1 with errno set. */
static ssize_t list_names(const char *path, char **list) {
  for (int attempt = 0; attempt < 8; attempt++) {
    ssize_t size = llistxattr(path, NULL, 0);
    if (size <= 0) return size;
    *list = malloc(size);
    if (*list == NULL) return errno = ENOMEM, -1;
    ssize_t got = llistxattr(path, *list, size);
    if (got >= 0) return got;
    free(*list);
    *list = NULL;
    if (errno != ERANGE) return -1; /* ERANGE: the list grew in between; ask again */
  }
  return errno = ERANGE, -1;
}

/* lgetxattr of one name; returns the value length, or -1 with errno set (*value malloc'ed). */
static ssize_t get_value(const char *path, const char *name, char **value) {
  for (int attempt = 0; attempt < 8; attempt++) {
    ssize_t size = lgetxattr(path, name, NULL, 0);
    if (size < 0) return -1;
    *value = malloc(size > 0 ? size : 1);
    if (*value == NULL) return errno = ENOMEM, -1;
    if (size == 0) return 0; /* asking again with size 0 would return a length, not the value */
    ssize_t got = lgetxattr(path, name, *value, size);
    if (got >= 0) return got;
    free(*value);
    *value = NULL;
    if (errno != ERANGE) return -1;
  }
  return errno = ERANGE, -1;
}

static napi_value make_xattr(napi_env env, const char *name, const char *value, size_t length) {
  napi_value entry, js_name, js_value;
  void *copy;
  CHECK(napi_create_object(env, &entry));
  CHECK(napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &js_name));
  CHECK(napi_create_buffer_copy(env, length, value, &copy, &js_value));
  CHECK(napi_set_named_property(env, entry, "name", js_name));
  CHECK(napi_set_named_property(env, entry, "value", js_value));
  return entry;
}

/* Fills `array` with {name, value} of each name in `names` (sorted); returns 0 and sets errno on failure. */
static int fill_xattrs(napi_env env, const c_path *path, char **names, size_t count, napi_value array) {
  uint32_t index = 0;
  for (size_t i = 0; i < count; i++) {
    char *value = NULL;
    ssize_t length = get_value(path->bytes, names[i], &value);
    if (length < 0) {
      if (errno == ENODATA) continue; /* removed since it was listed */
      return 0;
    }
    napi_value entry = make_xattr(env, names[i], value, (size_t)length);
    free(value);
    if (entry == NULL) return errno = EIO, 0;
    napi_set_element(env, array, index++, entry);
  }
  return 1;
}

static napi_value list_xattrs(napi_env env, napi_callback_info info) {
  napi_value argv[1], array;
  c_path path;
  if (!get_args(env, info, 1, argv) || !get_path(env, argv[0], &path)) return NULL;
  CHECK(napi_create_array(env, &array));
  char *list = NULL;
  ssize_t size = list_names(path.bytes, &list);
  if (size < 0) {
    int err = errno;
    napi_value result = err == ENOTSUP ? array : throw_errno(env, err, "llistxattr", &path);
    free(path.bytes);
    return result;
  }
  size_t count = 0;
  for (ssize_t at = 0; at < size; at += strlen(list + at) + 1) count++;
  char **names = malloc((count ? count : 1) * sizeof(char *));
  size_t i = 0;
  for (ssize_t at = 0; names && at < size; at += strlen(list + at) + 1) names[i++] = list + at;
  int ok = names != NULL;
  if (ok) {
    qsort(names, count, sizeof(char *), compare_names);
    ok = fill_xattrs(env, &path, names, count, array);
  } else {
    errno = ENOMEM;
  }
  napi_value result = ok ? array : throw_errno(env, errno, "lgetxattr", &path);
  free(names);
  free(list);
  free(path.bytes);
  return result;
}

static napi_value set_xattr(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  c_path path, name;
  void *value;
  size_t length;
  bool is_buffer = false;
  if (!get_args(env, info, 3, argv) || !get_path(env, argv[0], &path)) return NULL;
  napi_is_buffer(env, argv[2], &is_buffer);
  if (!is_buffer) {
    free(path.bytes);
    return throw_type(env, "value must be a Buffer");
  }
  napi_get_buffer_info(env, argv[2], &value, &length);
  if (!get_path(env, argv[1], &name)) {
    free(path.bytes);
    return NULL;
  }
  napi_value result = NULL;
  if (lsetxattr(path.bytes, name.bytes, value, length, 0) != 0) throw_errno(env, errno, "lsetxattr", &path);
  else napi_get_undefined(env, &result);
  free(name.bytes);
  free(path.bytes);
  return result;
}

/* ---- times and device nodes ------------------------------------------------------------ */

static struct timespec timespec_of(int64_t ns) {
  int64_t seconds = ns / 1000000000, rest = ns % 1000000000;
  if (rest < 0) seconds -= 1, rest += 1000000000; /* times before 1970 */
  struct timespec ts = {.tv_sec = (time_t)seconds, .tv_nsec = (long)rest};
  return ts;
}

static napi_value set_times(napi_env env, napi_callback_info info) {
  napi_value argv[3], result = NULL;
  c_path path;
  int64_t atime, mtime;
  if (!get_args(env, info, 3, argv)) return NULL;
  if (!get_bigint_or_number(env, argv[1], &atime) || !get_bigint_or_number(env, argv[2], &mtime))
    return throw_type(env, "times must be bigint nanoseconds");
  if (!get_path(env, argv[0], &path)) return NULL;
  struct timespec times[2] = {timespec_of(atime), timespec_of(mtime)};
  if (utimensat(AT_FDCWD, path.bytes, times, AT_SYMLINK_NOFOLLOW) != 0) throw_errno(env, errno, "utimensat", &path);
  else napi_get_undefined(env, &result);
  free(path.bytes);
  return result;
}

static napi_value make_node(napi_env env, napi_callback_info info) {
  napi_value argv[3], result = NULL;
  c_path path;
  uint32_t mode;
  int64_t rdev;
  if (!get_args(env, info, 3, argv)) return NULL;
  if (napi_get_value_uint32(env, argv[1], &mode) != napi_ok) return throw_type(env, "mode must be a number");
  if (!get_bigint_or_number(env, argv[2], &rdev)) return throw_type(env, "rdev must be a bigint");
  if (!get_path(env, argv[0], &path)) return NULL;
  if (mknod(path.bytes, (mode_t)mode, (dev_t)rdev) != 0) throw_errno(env, errno, "mknod", &path);
  else napi_get_undefined(env, &result);
  free(path.bytes);
  return result;
}

/* ---- sparse files ------------------------------------------------------------------ */

static int push_range(napi_env env, napi_value array, uint32_t index, double offset, double length) {
  napi_value range, value;
  if (napi_create_object(env, &range) != napi_ok) return 0;
  napi_create_double(env, offset, &value);
  napi_set_named_property(env, range, "offset", value);
  napi_create_double(env, length, &value);
  napi_set_named_property(env, range, "length", value);
  return napi_set_element(env, array, index, range) == napi_ok;
}

/* The next stretch of data in [at, end): 1 with it in [*data, *hole), 0 when none is left, -1 with errno set. */
static int next_data_stretch(int fd, off_t at, off_t end, off_t *data, off_t *hole) {
  *data = lseek(fd, at, SEEK_DATA);
  if (*data < 0) return errno == ENXIO ? 0 : -1;
  if (*data >= end) return 0;
  *hole = lseek(fd, *data, SEEK_HOLE);
  if (*hole < 0) return -1;
  if (*hole > end) *hole = end;
  return 1;
}

static napi_value data_ranges(napi_env env, napi_callback_info info) {
  napi_value argv[2], array;
  int32_t fd;
  int64_t size;
  if (!get_args(env, info, 2, argv)) return NULL;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok) return throw_type(env, "fd must be a number");
  if (!get_bigint_or_number(env, argv[1], &size) || size < 0) return throw_type(env, "size must be a number >= 0");
  CHECK(napi_create_array(env, &array));
  uint32_t count = 0;
  for (off_t at = 0, data, hole; at < size; at = hole) {
    int found = next_data_stretch(fd, at, size, &data, &hole);
    if (found == 0) break; /* only a hole from here to the end */
    if (found < 0 && count == 0 && (errno == EINVAL || errno == ENOTSUP)) {
      push_range(env, array, count++, 0, (double)size); /* the file system cannot tell */
      break;
    }
    if (found < 0) return throw_errno(env, errno, "lseek", NULL);
    if (!push_range(env, array, count++, (double)data, (double)(hole - data))) return NULL;
  }
  return array;
}

/* ---- user and group names ---------------------------------------------------------- */

static napi_value name_or_undefined(napi_env env, const char *name) {
  napi_value value;
  if (name) napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &value);
  else napi_get_undefined(env, &value);
  return value;
}

static napi_value user_name(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  uint32_t uid;
  if (!get_args(env, info, 1, argv)) return NULL;
  if (napi_get_value_uint32(env, argv[0], &uid) != napi_ok) return throw_type(env, "uid must be a number");
  struct passwd entry, *found = NULL;
  size_t size = 1024;
  for (;;) {
    char *buffer = malloc(size);
    if (buffer == NULL) return throw_errno(env, ENOMEM, "getpwuid_r", NULL);
    int err = getpwuid_r((uid_t)uid, &entry, buffer, size, &found);
    if (err == ERANGE && size < (1 << 20)) {
      free(buffer);
      size *= 4;
      continue;
    }
    napi_value result = name_or_undefined(env, err == 0 && found ? found->pw_name : NULL);
    free(buffer);
    return result;
  }
}

static napi_value group_name(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  uint32_t gid;
  if (!get_args(env, info, 1, argv)) return NULL;
  if (napi_get_value_uint32(env, argv[0], &gid) != napi_ok) return throw_type(env, "gid must be a number");
  struct group entry, *found = NULL;
  size_t size = 1024;
  for (;;) {
    char *buffer = malloc(size);
    if (buffer == NULL) return throw_errno(env, ENOMEM, "getgrgid_r", NULL);
    int err = getgrgid_r((gid_t)gid, &entry, buffer, size, &found);
    if (err == ERANGE && size < (1 << 24)) {
      free(buffer);
      size *= 4;
      continue;
    }
    napi_value result = name_or_undefined(env, err == 0 && found ? found->gr_name : NULL);
    free(buffer);
    return result;
  }
}

/* ---- the metadata of many children of one folder, off the main thread ------------------ */

/*
 * A backup stats every entry of every folder. One trip to libuv's thread pool per entry (what
 * fs.lstat costs) is far slower than the syscalls themselves; listChildren does a folder's
 * readdir, fstatat, readlinkat, llistxattr and lgetxattr calls in one trip and hands back
 * compact results.
 */

enum { STAT_FIELDS = 11 }; /* mode uid gid size ino dev nlink rdev atimeNs mtimeNs ctimeNs */

typedef struct {
  char *name;  /* the xattr's name, NUL-terminated */
  char *value;
  size_t length;
} xattr_t;

typedef struct {
  char *name;          /* NUL-terminated, in the batch's names */
  size_t name_length;
  struct stat st;
  int err;             /* 0, or the errno of `syscall` */
  const char *syscall;
  char *target;        /* symlinks: the target (not NUL-terminated) */
  size_t target_length;
  xattr_t *xattrs;
  size_t xattr_count;
  unsigned char d_type; /* what readdir said the child is (DT_UNKNOWN where the file system does not say) */
} child_t;

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  c_path folder;
  child_t *children;
  size_t count;
  char *names;         /* what the children's names point into */
  int err;             /* opening or reading the folder failed */
  const char *syscall; /* the call that failed with `err` */
} stat_batch_t;

static int64_t ns_of(struct timespec ts) {
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int read_target(int dirfd, child_t *child) {
  size_t size = child->st.st_size > 0 ? (size_t)child->st.st_size + 1 : 256;
  for (;;) {
    child->target = malloc(size);
    if (child->target == NULL) return ENOMEM;
    ssize_t got = readlinkat(dirfd, child->name, child->target, size);
    if (got < 0) return errno;
    if ((size_t)got < size) {
      child->target_length = (size_t)got;
      return 0;
    }
    free(child->target); /* it grew since fstatat: try a larger buffer */
    child->target = NULL;
    size *= 2;
  }
}

/* folder/name, malloc'ed (NULL when out of memory). */
static c_path child_path(const stat_batch_t *batch, const child_t *child) {
  const char *folder = batch->folder.length == 1 && batch->folder.bytes[0] == '/' ? "" : batch->folder.bytes;
  size_t length = strlen(folder) + 1 + child->name_length;
  c_path path = {malloc(length + 1), length};
  if (path.bytes != NULL) snprintf(path.bytes, length + 1, "%s/%s", folder, child->name);
  return path;
}

/* The child's xattrs (sorted by name); returns 0 or an errno. */
static int read_xattrs(const stat_batch_t *batch, child_t *child) {
  char *path = child_path(batch, child).bytes;
  if (path == NULL) return ENOMEM;
  char *list = NULL;
  ssize_t size = list_names(path, &list);
  int err = size < 0 ? (errno == ENOTSUP ? 0 : errno) : 0;
  size_t count = 0;
  for (ssize_t at = 0; size > 0 && at < size; at += strlen(list + at) + 1) count++;
  if (count > 0) {
    char **names = malloc(count * sizeof(char *));
    child->xattrs = calloc(count, sizeof(xattr_t));
    if (names == NULL || child->xattrs == NULL) err = ENOMEM;
    size_t i = 0;
    for (ssize_t at = 0; err == 0 && at < size; at += strlen(list + at) + 1) names[i++] = list + at;
    if (err == 0) qsort(names, count, sizeof(char *), compare_names);
    for (i = 0; err == 0 && i < count; i++) {
      char *value = NULL;
      ssize_t got = get_value(path, names[i], &value);
      if (got < 0 && errno == ENODATA) continue; /* removed since it was listed */
      if (got < 0) {
        err = errno;
        break;
      }
      xattr_t *x = &child->xattrs[child->xattr_count++];
      x->name = strdup(names[i]);
      x->value = value;
      x->length = (size_t)got;
      if (x->name == NULL) err = ENOMEM;
    }
    free(names);
  }
  free(list);
  free(path);
  return err;
}

static void stat_child(const stat_batch_t *batch, int dirfd, child_t *child) {
  if (fstatat(dirfd, child->name, &child->st, AT_SYMLINK_NOFOLLOW) != 0) {
    child->err = errno, child->syscall = "lstat";
    return;
  }
  if (S_ISLNK(child->st.st_mode) && (child->err = read_target(dirfd, child)) != 0) {
    child->syscall = "readlink";
    return;
  }
  if (!S_ISSOCK(child->st.st_mode) && (child->err = read_xattrs(batch, child)) != 0) child->syscall = "llistxattr";
}

static int compare_children(const void *a, const void *b) {
  return strcmp(((const child_t *)a)->name, ((const child_t *)b)->name);
}

/* Appends `bytes` to the list, growing it; 0 or ENOMEM. */
static int append_bytes(char **list, size_t *used, size_t *capacity, const void *bytes, size_t length) {
  if (*used + length > *capacity) {
    size_t grown = *capacity ? *capacity : 4096;
    while (grown < *used + length) grown *= 2;
    char *larger = realloc(*list, grown);
    if (larger == NULL) return ENOMEM;
    *list = larger, *capacity = grown;
  }
  memcpy(*list + *used, bytes, length);
  *used += length;
  return 0;
}

/*
 * Reads the folder's names but . and .. into one list (each as its d_type, the name and a NUL:
 * one growing allocation, not one per name); 0 or an errno.
 */
static int read_dirents(int dirfd, char **list, size_t *used, size_t *count) {
  int fd = dup(dirfd); /* closedir closes it; dirfd stays open for the *at calls */
  DIR *dir = fd < 0 ? NULL : fdopendir(fd);
  if (dir == NULL) {
    int err = errno;
    if (fd >= 0) close(fd);
    return err;
  }
  size_t capacity = 0;
  int err = 0;
  for (struct dirent *entry; err == 0;) {
    errno = 0;
    if ((entry = readdir(dir)) == NULL) {
      err = errno;
      break;
    }
    const char *name = entry->d_name;
    if (name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0))) continue;
    err = append_bytes(list, used, &capacity, &entry->d_type, 1);
    if (err == 0) err = append_bytes(list, used, &capacity, name, strlen(name) + 1);
    if (err == 0) ++*count;
  }
  closedir(dir);
  return err;
}

/* The folder's children by name, sorted bytewise (as Node's readdir gives them); 0 or an errno. */
static int read_names(int dirfd, stat_batch_t *batch) {
  size_t used = 0, count = 0;
  int err = read_dirents(dirfd, &batch->names, &used, &count);
  if (err == 0 && (batch->children = calloc(count ? count : 1, sizeof(child_t))) == NULL) err = ENOMEM;
  for (size_t at = 0; err == 0 && at < used; batch->count++) {
    child_t *child = &batch->children[batch->count];
    child->d_type = (unsigned char)batch->names[at];
    child->name = batch->names + at + 1;
    child->name_length = strlen(child->name);
    at += 1 + child->name_length + 1;
  }
  if (err == 0 && batch->count > 1) qsort(batch->children, batch->count, sizeof(child_t), compare_children);
  return err;
}

static void list_children_execute(napi_env env, void *data) {
  stat_batch_t *batch = data;
  /* O_NOFOLLOW: a folder replaced by a symlink since its parent was listed is refused, not followed */
  int dirfd = open(batch->folder.bytes, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  batch->err = dirfd < 0 ? errno : read_names(dirfd, batch);
  if (batch->err != 0) batch->syscall = "scandir"; /* as Node's readdir names its failures */
  for (size_t i = 0; batch->err == 0 && i < batch->count; i++) stat_child(batch, dirfd, &batch->children[i]);
  if (dirfd >= 0) close(dirfd);
}

static void free_batch(stat_batch_t *batch) {
  for (size_t i = 0; i < batch->count; i++) {
    child_t *child = &batch->children[i];
    for (size_t k = 0; k < child->xattr_count; k++) free(child->xattrs[k].name), free(child->xattrs[k].value);
    free(child->xattrs);
    free(child->target);
  }
  free(batch->children);
  free(batch->names);
  free(batch->folder.bytes);
  free(batch);
}

/* The error thrown by throw_errno, as a value: created by throwing it and taking it back. */
static napi_value errno_value(napi_env env, int err, const char *syscall, const c_path *path) {
  napi_value error = NULL;
  throw_errno(env, err, syscall, path);
  napi_get_and_clear_last_exception(env, &error);
  return error;
}

/*
 * Settles an async job's promise: rejected with errno `err` when it is set, else with the
 * pending exception (or "<name> failed") when `value`, the result, could not be made, else
 * resolved with `value`.
 */
static void settle_job(napi_env env, napi_deferred deferred, int err, const char *syscall, const c_path *path, napi_value value, const char *name) {
  if (err != 0) return (void)napi_reject_deferred(env, deferred, errno_value(env, err, syscall, path));
  if (value != NULL) return (void)napi_resolve_deferred(env, deferred, value);
  napi_value error = NULL, message;
  napi_get_and_clear_last_exception(env, &error);
  if (error == NULL) {
    char text[64];
    snprintf(text, sizeof text, "%s failed", name);
    napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, NULL, message, &error);
  }
  napi_reject_deferred(env, deferred, error);
}

/* ---- huge pages for long-lived buffers ------------------------------------------------- */

#define HUGE_PAGE ((uintptr_t)2 * 1024 * 1024)

/* madvise(advice) on the whole pages of `page` bytes inside the Uint8Array argument; true when done. */
static napi_value advise_whole_pages(napi_env env, napi_callback_info info, uintptr_t page, int advice) {
  napi_value argv[1], result;
  if (!get_args(env, info, 1, argv)) return NULL;
  uint8_t *data;
  size_t length;
  if (!uint8_array_bytes(env, argv[0], &data, &length)) return throw_type(env, "buffer must be a Uint8Array");
  uintptr_t start = ((uintptr_t)data + page - 1) & ~(page - 1);
  uintptr_t end = ((uintptr_t)data + length) & ~(page - 1);
  int advised = end > start && madvise((void *)start, end - start, advice) == 0;
  CHECK(napi_get_boolean(env, advised, &result));
  return result;
}

/*
 * Asks the kernel to back the whole 2 MiB pages inside a buffer with transparent huge pages
 * (madvise MADV_HUGEPAGE; the default THP mode "madvise" gives them only where asked). Each
 * first touch of a 4 KiB page costs a fault, about 11 us under this virtualisation, 45 ms for
 * a 16 MiB pack buffer; a huge page costs one fault per 2 MiB. True when advised.
 */
static napi_value advise_huge_pages(napi_env env, napi_callback_info info) {
  return advise_whole_pages(env, info, HUGE_PAGE, MADV_HUGEPAGE);
}

/*
 * Gives the whole 4 KiB pages inside a buffer back to the kernel (madvise MADV_DONTNEED):
 * they read as zeros afterwards and count in RSS again only once touched. For a long-lived
 * buffer whose tail a rare large piece filled (a chunk slot sized for the largest chunk),
 * so that one such piece does not keep its pages resident for the rest of the run. True
 * when pages were released.
 */
static napi_value release_pages(napi_env env, napi_callback_info info) {
  return advise_whole_pages(env, info, (uintptr_t)sysconf(_SC_PAGESIZE), MADV_DONTNEED);
}

/*
 * Caps the malloc arenas glibc makes from now on (mallopt M_ARENA_MAX): the MALLOC_ARENA_MAX
 * environment variable is read only when a process starts, but glibc consults the cap each time
 * a thread needs an arena (each thread that allocates gets one of its own until the cap, by
 * default eight per core, is reached). Arenas made before stay.
 * False where the C library has no such setting.
 */
static napi_value limit_malloc_arenas(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  double count;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || napi_get_value_double(env, argv[0], &count) != napi_ok || !(count >= 1 && count <= 1024) || count != (double)(int)count) {
    napi_throw_type_error(env, NULL, "limitMallocArenas(count): count must be a positive integer");
    return NULL;
  }
#ifdef M_ARENA_MAX
  CHECK(napi_get_boolean(env, mallopt(M_ARENA_MAX, (int)count) == 1, &result));
#else
  CHECK(napi_get_boolean(env, false, &result));
#endif
  return result;
}

/* ---- ranges made zeros off the main thread ----------------------------------------------- */

/*
 * Makes a range of an open file read as zeros without writing it, the size kept, in the thread
 * pool (freeing or converting a chunk's extents takes the file system up to milliseconds, which
 * on the main thread stalled a delta restore's reads and hashes). Resolves false when the file
 * system cannot: the caller falls back to another way.
 *   punch:      FALLOC_FL_PUNCH_HOLE, the blocks freed (and, on a file system mounted with
 *               `discard`, discarded: about 2 ms per 4 MiB here).
 *   zero range: FALLOC_FL_ZERO_RANGE over each stretch of data in the range (SEEK_DATA), so the
 *               blocks the file holds there become unwritten extents and its holes stay holes:
 *               nothing is freed or allocated (about 0.2 ms per 4 MiB).
 */

typedef enum { ZERO_BY_PUNCH, ZERO_BY_ZERO_RANGE } zero_mode_t;

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  zero_mode_t mode;
  int fd;
  int64_t offset, length;
  int done;
  int err;
  const char *syscall;
} zero_job_t;

/*
 * FALLOC_FL_ZERO_RANGE over the data in [offset, end); 0, or -1 with errno set and the failed
 * call in job->syscall. A file system whose lseek knows no SEEK_DATA (EINVAL) counts as one
 * without zero ranges.
 */
static int zero_data_in(zero_job_t *job, off_t offset, off_t end) {
  for (off_t data, hole; offset < end; offset = hole) {
    job->syscall = "lseek";
    int found = next_data_stretch(job->fd, offset, end, &data, &hole);
    if (found == 0) return 0;
    if (found < 0 && errno == EINVAL) errno = EOPNOTSUPP;
    if (found < 0) return -1;
    job->syscall = "fallocate";
    if (fallocate(job->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, data, hole - data) != 0) return -1;
  }
  return 0;
}

static void zero_job_execute(napi_env env, void *data) {
  zero_job_t *job = data;
  off_t offset = (off_t)job->offset, length = (off_t)job->length;
  job->syscall = "fallocate";
  int failed = job->mode == ZERO_BY_PUNCH
    ? fallocate(job->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) != 0
    : zero_data_in(job, offset, offset + length) != 0;
  job->done = !failed;
  if (failed && errno != EOPNOTSUPP && errno != ENOSYS) job->err = errno;
}

static void zero_job_complete(napi_env env, napi_status status, void *data) {
  zero_job_t *job = data;
  napi_value value = NULL;
  if (job->err == 0 && status == napi_ok) napi_get_boolean(env, job->done, &value);
  settle_job(env, job->deferred, job->err, job->syscall, NULL, value,
             job->mode == ZERO_BY_PUNCH ? "punchHole" : "zeroRange");
  napi_delete_async_work(env, job->work);
  free(job);
}

static napi_value queue_zero_job(napi_env env, napi_callback_info info, zero_mode_t mode) {
  napi_value argv[3], promise, resource_name;
  int32_t fd;
  int64_t offset, length;
  if (!get_args(env, info, 3, argv)) return NULL;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok) return throw_type(env, "fd must be a number");
  if (!get_bigint_or_number(env, argv[1], &offset) || offset < 0) return throw_type(env, "offset must be a number >= 0");
  if (!get_bigint_or_number(env, argv[2], &length) || length < 0) return throw_type(env, "length must be a number >= 0");
  zero_job_t *job = calloc(1, sizeof(zero_job_t));
  if (job == NULL) return throw_type(env, "out of memory");
  job->mode = mode, job->fd = fd, job->offset = offset, job->length = length;
  CHECK(napi_create_promise(env, &job->deferred, &promise));
  CHECK(napi_create_string_utf8(env, mode == ZERO_BY_PUNCH ? "cairn:punchHole" : "cairn:zeroRange", NAPI_AUTO_LENGTH, &resource_name));
  CHECK(napi_create_async_work(env, NULL, resource_name, zero_job_execute, zero_job_complete, job, &job->work));
  CHECK(napi_queue_async_work(env, job->work));
  return promise;
}

static napi_value punch_hole(napi_env env, napi_callback_info info) {
  return queue_zero_job(env, info, ZERO_BY_PUNCH);
}

static napi_value zero_range(napi_env env, napi_callback_info info) {
  return queue_zero_job(env, info, ZERO_BY_ZERO_RANGE);
}

static napi_value child_errors_and_extras(napi_env env, stat_batch_t *batch, napi_value result) {
  napi_value targets, xattrs, errors;
  CHECK(napi_create_array_with_length(env, batch->count, &targets));
  CHECK(napi_create_array_with_length(env, batch->count, &xattrs));
  CHECK(napi_create_array_with_length(env, batch->count, &errors));
  for (size_t i = 0; i < batch->count; i++) {
    child_t *child = &batch->children[i];
    if (child->err != 0) {
      c_path path = child_path(batch, child);
      if (path.bytes == NULL) return NULL;
      napi_set_element(env, errors, (uint32_t)i, errno_value(env, child->err, child->syscall, &path));
      free(path.bytes);
      continue;
    }
    if (child->target != NULL) {
      napi_value target;
      void *copy;
      CHECK(napi_create_buffer_copy(env, child->target_length, child->target, &copy, &target));
      napi_set_element(env, targets, (uint32_t)i, target);
    }
    if (child->xattr_count > 0) {
      napi_value list;
      CHECK(napi_create_array_with_length(env, child->xattr_count, &list));
      for (size_t k = 0; k < child->xattr_count; k++) {
        napi_value entry = make_xattr(env, child->xattrs[k].name, child->xattrs[k].value, child->xattrs[k].length);
        if (entry == NULL) return NULL;
        napi_set_element(env, list, (uint32_t)k, entry);
      }
      napi_set_element(env, xattrs, (uint32_t)i, list);
    }
  }
  CHECK(napi_set_named_property(env, result, "targets", targets));
  CHECK(napi_set_named_property(env, result, "xattrs", xattrs));
  CHECK(napi_set_named_property(env, result, "errors", errors));
  return result;
}

static napi_value batch_result(napi_env env, stat_batch_t *batch) {
  napi_value result, buffer, stats;
  int64_t *fields;
  CHECK(napi_create_object(env, &result));
  CHECK(napi_create_arraybuffer(env, batch->count * STAT_FIELDS * sizeof(int64_t), (void **)&fields, &buffer));
  for (size_t i = 0; i < batch->count; i++) {
    const struct stat *st = &batch->children[i].st;
    int64_t *f = fields + i * STAT_FIELDS;
    f[0] = st->st_mode, f[1] = st->st_uid, f[2] = st->st_gid, f[3] = st->st_size, f[4] = (int64_t)st->st_ino;
    f[5] = (int64_t)st->st_dev, f[6] = (int64_t)st->st_nlink, f[7] = (int64_t)st->st_rdev;
    f[8] = ns_of(st->st_atim), f[9] = ns_of(st->st_mtim), f[10] = ns_of(st->st_ctim);
  }
  CHECK(napi_create_typedarray(env, napi_bigint64_array, batch->count * STAT_FIELDS, buffer, 0, &stats));
  CHECK(napi_set_named_property(env, result, "stats", stats));
  return child_errors_and_extras(env, batch, result);
}

/*
 * The children's lstat fields, symlink targets and xattrs, and their names: one Buffer of them
 * all, where each ends in it, and each one's type as readdir gave it (d_type).
 */
static napi_value listed_result(napi_env env, stat_batch_t *batch) {
  napi_value result = batch_result(env, batch), names, ends_buffer, ends, types_buffer, types;
  if (result == NULL) return NULL;
  size_t total = 0;
  for (size_t i = 0; i < batch->count; i++) total += batch->children[i].name_length;
  char *bytes;
  uint32_t *end;
  uint8_t *type;
  CHECK(napi_create_buffer(env, total, (void **)&bytes, &names));
  CHECK(napi_create_arraybuffer(env, batch->count * sizeof(uint32_t), (void **)&end, &ends_buffer));
  CHECK(napi_create_arraybuffer(env, batch->count, (void **)&type, &types_buffer));
  size_t at = 0;
  for (size_t i = 0; i < batch->count; i++) {
    memcpy(bytes + at, batch->children[i].name, batch->children[i].name_length);
    end[i] = (uint32_t)(at += batch->children[i].name_length);
    type[i] = batch->children[i].d_type;
  }
  CHECK(napi_create_typedarray(env, napi_uint32_array, batch->count, ends_buffer, 0, &ends));
  CHECK(napi_create_typedarray(env, napi_uint8_array, batch->count, types_buffer, 0, &types));
  CHECK(napi_set_named_property(env, result, "names", names));
  CHECK(napi_set_named_property(env, result, "nameEnds", ends));
  CHECK(napi_set_named_property(env, result, "direntTypes", types));
  return result;
}

static void list_children_complete(napi_env env, napi_status status, void *data) {
  stat_batch_t *batch = data;
  napi_value value = batch->err == 0 && status == napi_ok ? listed_result(env, batch) : NULL;
  settle_job(env, batch->deferred, batch->err, batch->syscall, &batch->folder, value, "listChildren");
  napi_delete_async_work(env, batch->work);
  free_batch(batch);
}

/*
 * A folder's names and, for each, its lstat fields, symlink target and xattrs, in one trip:
 * Node's readdir is a trip of its own and makes a Dirent and a Buffer for every name.
 */
static napi_value list_children(napi_env env, napi_callback_info info) {
  napi_value argv[1], promise, resource_name;
  if (!get_args(env, info, 1, argv)) return NULL;
  stat_batch_t *batch = calloc(1, sizeof(stat_batch_t));
  if (batch == NULL) return throw_type(env, "out of memory");
  if (!get_path(env, argv[0], &batch->folder)) return free(batch), NULL;
  CHECK(napi_create_promise(env, &batch->deferred, &promise));
  CHECK(napi_create_string_utf8(env, "cairn:listChildren", NAPI_AUTO_LENGTH, &resource_name));
  CHECK(napi_create_async_work(env, NULL, resource_name, list_children_execute, list_children_complete, batch, &batch->work));
  CHECK(napi_queue_async_work(env, batch->work));
  return promise;
}

/* ---- a small file read whole, off the main thread ------------------------------------ */

/*
 * Reading a small file through fs takes four trips to the thread pool (open, read, fstat,
 * close), each costing more than the syscalls; readWhole makes it one.
 */

/* One file to read whole: where to, and what happened. */
typedef struct {
  c_path path;
  uint8_t *into;
  size_t length;
  size_t done;
  struct stat after;
  int err;
  const char *syscall;
} whole_file_t;

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref into_ref;   /* keeps the destination alive while the pool thread writes into it */
  whole_file_t file;
} read_whole_t;

static int open_for_reading(const char *path) {
  const int flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
  int fd = open(path, flags | O_NOATIME);
  /* O_NOATIME needs ownership or CAP_FOWNER */
  if (fd < 0 && errno == EPERM) fd = open(path, flags);
  return fd;
}

static void read_whole_file(whole_file_t *file) {
  int fd = open_for_reading(file->path.bytes);
  if (fd < 0) {
    file->err = errno, file->syscall = "open";
    return;
  }
  while (file->done < file->length) {
    ssize_t got = pread(fd, file->into + file->done, file->length - file->done, (off_t)file->done);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      file->err = errno, file->syscall = "read";
      break;
    }
    if (got == 0) break;
    file->done += (size_t)got;
  }
  if (file->err == 0 && fstat(fd, &file->after) != 0) file->err = errno, file->syscall = "fstat";
  close(fd);
}

static void read_whole_execute(napi_env env, void *data) {
  read_whole_file(&((read_whole_t *)data)->file);
}

static napi_value read_whole_result(napi_env env, const whole_file_t *file) {
  napi_value result, value;
  CHECK(napi_create_object(env, &result));
  CHECK(napi_create_double(env, (double)file->done, &value));
  CHECK(napi_set_named_property(env, result, "bytesRead", value));
  CHECK(napi_create_double(env, (double)file->after.st_size, &value));
  CHECK(napi_set_named_property(env, result, "size", value));
  CHECK(napi_create_bigint_int64(env, ns_of(file->after.st_mtim), &value));
  CHECK(napi_set_named_property(env, result, "mtimeNs", value));
  CHECK(napi_create_bigint_int64(env, ns_of(file->after.st_ctim), &value));
  CHECK(napi_set_named_property(env, result, "ctimeNs", value));
  return result;
}

static void read_whole_complete(napi_env env, napi_status status, void *data) {
  read_whole_t *job = data;
  whole_file_t *file = &job->file;
  napi_value value = file->err == 0 && status == napi_ok ? read_whole_result(env, file) : NULL;
  settle_job(env, job->deferred, file->err, file->syscall, &file->path, value, "readWhole");
  napi_delete_reference(env, job->into_ref);
  napi_delete_async_work(env, job->work);
  free(file->path.bytes);
  free(job);
}

/* Takes a path and a Uint8Array to read it into; 0 with an exception pending on failure. */
static int take_whole_file(napi_env env, napi_value path, napi_value into, whole_file_t *file) {
  uint8_t *data;
  size_t length;
  if (!uint8_array_bytes(env, into, &data, &length)) return throw_type(env, "into must be a Uint8Array"), 0;
  if (!get_path(env, path, &file->path)) return 0;
  file->into = data, file->length = length;
  return 1;
}

static napi_value read_whole(napi_env env, napi_callback_info info) {
  napi_value argv[2], promise, resource_name;
  if (!get_args(env, info, 2, argv)) return NULL;
  read_whole_t *job = calloc(1, sizeof(read_whole_t));
  if (job == NULL) return throw_type(env, "out of memory");
  if (!take_whole_file(env, argv[0], argv[1], &job->file)) return free(job), NULL;
  CHECK(napi_create_reference(env, argv[1], 1, &job->into_ref));
  CHECK(napi_create_promise(env, &job->deferred, &promise));
  CHECK(napi_create_string_utf8(env, "cairn:readWhole", NAPI_AUTO_LENGTH, &resource_name));
  CHECK(napi_create_async_work(env, NULL, resource_name, read_whole_execute, read_whole_complete, job, &job->work));
  CHECK(napi_queue_async_work(env, job->work));
  return promise;
}

/*
 * Several small files in one trip: on a 2-core virtual machine, waking a pool thread for each
 * file cost the main thread a third of a small-files backup (the wake-up, and the woken thread
 * taking the core from it).
 */
typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref intos_ref;
  whole_file_t *files;
  size_t count;
} read_many_t;

static void free_read_many(read_many_t *job) {
  for (size_t i = 0; i < job->count; i++) free(job->files[i].path.bytes);
  free(job->files);
  free(job);
}

static void read_many_execute(napi_env env, void *data) {
  read_many_t *job = data;
  for (size_t i = 0; i < job->count; i++) read_whole_file(&job->files[i]);
}

static napi_value read_many_result(napi_env env, read_many_t *job) {
  napi_value results;
  CHECK(napi_create_array_with_length(env, job->count, &results));
  for (size_t i = 0; i < job->count; i++) {
    const whole_file_t *file = &job->files[i];
    napi_value value = file->err != 0 ? errno_value(env, file->err, file->syscall, &file->path) : read_whole_result(env, file);
    if (value == NULL) return NULL;
    CHECK(napi_set_element(env, results, (uint32_t)i, value));
  }
  return results;
}

static void read_many_complete(napi_env env, napi_status status, void *data) {
  read_many_t *job = data;
  napi_value value = status == napi_ok ? read_many_result(env, job) : NULL;
  settle_job(env, job->deferred, 0, NULL, NULL, value, "readWholeMany");
  napi_delete_reference(env, job->intos_ref);
  napi_delete_async_work(env, job->work);
  free_read_many(job);
}

static napi_value read_whole_many(napi_env env, napi_callback_info info) {
  napi_value argv[2], promise, resource_name;
  uint32_t count, into_count;
  bool paths_array = false, intos_array = false;
  if (!get_args(env, info, 2, argv)) return NULL;
  napi_is_array(env, argv[0], &paths_array);
  napi_is_array(env, argv[1], &intos_array);
  if (!paths_array || !intos_array || napi_get_array_length(env, argv[0], &count) != napi_ok || napi_get_array_length(env, argv[1], &into_count) != napi_ok || count != into_count)
    return throw_type(env, "paths and intos must be arrays of one length");
  read_many_t *job = calloc(1, sizeof(read_many_t));
  if (job == NULL || (job->files = calloc(count ? count : 1, sizeof(whole_file_t))) == NULL) return free(job), throw_type(env, "out of memory");
  for (uint32_t i = 0; i < count; i++) {
    napi_value path, into;
    if (napi_get_element(env, argv[0], i, &path) != napi_ok || napi_get_element(env, argv[1], i, &into) != napi_ok || !take_whole_file(env, path, into, &job->files[i]))
      return free_read_many(job), NULL;
    job->count = i + 1;
  }
  CHECK(napi_create_reference(env, argv[1], 1, &job->intos_ref));
  CHECK(napi_create_promise(env, &job->deferred, &promise));
  CHECK(napi_create_string_utf8(env, "cairn:readWholeMany", NAPI_AUTO_LENGTH, &resource_name));
  CHECK(napi_create_async_work(env, NULL, resource_name, read_many_execute, read_many_complete, job, &job->work));
  CHECK(napi_queue_async_work(env, job->work));
  return promise;
}

/* ---- writing a file in one trip --------------------------------------------------------- */
/*
 * A restored small file took five trips to the thread pool through fs (open, write, close,
 * lchown, rename; times and xattrs by path on the main thread), each a wake-up of a pool
 * thread and of the event loop: in a restore of 60,000 files, 850,000 futex calls against
 * restic's 87,000. writeFileAndRename makes it one trip: the file is made at its temporary
 * name, written, given its metadata through its descriptor, closed and renamed to its name
 * only then, so a killed restore leaves no half-written file under a real name.
 */

typedef struct {
  const uint8_t *data;
  size_t length;
  off_t offset;
} piece_t;

typedef struct {
  char *name;
  const void *value;
  size_t length;
  int err;
} xattr_set_t;

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref pieces_ref, xattrs_ref; /* keep the data alive while the pool thread uses it */
  c_path temp, path;
  piece_t *pieces;
  uint32_t piece_count;
  xattr_set_t *xattrs;
  uint32_t xattr_count;
  off_t size;
  uint32_t mode;
  bool set_owner;
  int64_t uid, gid, atime, mtime;
  int err, owner_err, mode_err, times_err;
  const char *syscall;
} new_file_t;

static int write_piece(int fd, const piece_t *piece) {
  size_t done = 0;
  while (done < piece->length) {
    ssize_t wrote = pwrite(fd, piece->data + done, piece->length - done, piece->offset + (off_t)done);
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote < 0) return -1;
    done += (size_t)wrote;
  }
  return 0;
}

/* Owner first (it clears setuid bits and capabilities), then mode, xattrs, times; each failure is kept, none stops the others. */
static void set_new_file_metadata(new_file_t *job, int fd) {
  if (job->set_owner && fchown(fd, (uid_t)job->uid, (gid_t)job->gid) != 0) job->owner_err = errno;
  if (fchmod(fd, (mode_t)job->mode) != 0) job->mode_err = errno;
  for (uint32_t i = 0; i < job->xattr_count; i++) {
    xattr_set_t *x = &job->xattrs[i];
    if (fsetxattr(fd, x->name, x->value, x->length, 0) != 0) x->err = errno;
  }
  struct timespec times[2] = {timespec_of(job->atime), timespec_of(job->mtime)};
  if (futimens(fd, times) != 0) job->times_err = errno;
}

static void new_file_execute(napi_env env, void *data) {
  new_file_t *job = data;
  int fd = open(job->temp.bytes, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    job->err = errno, job->syscall = "open";
    return;
  }
  off_t end = 0;
  for (uint32_t i = 0; i < job->piece_count && job->err == 0; i++) {
    if (write_piece(fd, &job->pieces[i]) != 0) job->err = errno, job->syscall = "write";
    if (job->pieces[i].offset + (off_t)job->pieces[i].length > end) end = job->pieces[i].offset + (off_t)job->pieces[i].length;
  }
  /* A hole at the end: the size says where the file ends. */
  if (job->err == 0 && end < job->size && ftruncate(fd, job->size) != 0) job->err = errno, job->syscall = "ftruncate";
  if (job->err == 0) set_new_file_metadata(job, fd);
  if (close(fd) != 0 && job->err == 0) job->err = errno, job->syscall = "close";
  if (job->err == 0 && rename(job->temp.bytes, job->path.bytes) != 0) job->err = errno, job->syscall = "rename";
  if (job->err != 0) unlink(job->temp.bytes);
}

static int push_failure(napi_env env, napi_value failures, const char *what, const char *name, int err, const char *syscall, const c_path *path) {
  napi_value failure, value;
  uint32_t length;
  if (napi_create_object(env, &failure) != napi_ok || napi_get_array_length(env, failures, &length) != napi_ok) return 0;
  napi_create_string_utf8(env, what, NAPI_AUTO_LENGTH, &value);
  napi_set_named_property(env, failure, "what", value);
  if (name != NULL) {
    napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &value);
    napi_set_named_property(env, failure, "name", value);
  }
  napi_set_named_property(env, failure, "error", errno_value(env, err, syscall, path));
  return napi_set_element(env, failures, length, failure) == napi_ok;
}

static napi_value new_file_failures(napi_env env, new_file_t *job) {
  napi_value failures;
  CHECK(napi_create_array(env, &failures));
  if (job->owner_err && !push_failure(env, failures, "owner", NULL, job->owner_err, "fchown", &job->path)) return NULL;
  if (job->mode_err && !push_failure(env, failures, "mode", NULL, job->mode_err, "fchmod", &job->path)) return NULL;
  for (uint32_t i = 0; i < job->xattr_count; i++) {
    xattr_set_t *x = &job->xattrs[i];
    if (x->err && !push_failure(env, failures, "xattr", x->name, x->err, "fsetxattr", &job->path)) return NULL;
  }
  if (job->times_err && !push_failure(env, failures, "times", NULL, job->times_err, "futimens", &job->path)) return NULL;
  return failures;
}

static void free_new_file(napi_env env, new_file_t *job) {
  if (job->pieces_ref) napi_delete_reference(env, job->pieces_ref);
  if (job->xattrs_ref) napi_delete_reference(env, job->xattrs_ref);
  for (uint32_t i = 0; i < job->xattr_count; i++) free(job->xattrs[i].name);
  free(job->xattrs);
  free(job->pieces);
  free(job->temp.bytes);
  free(job->path.bytes);
  free(job);
}

static void new_file_complete(napi_env env, napi_status status, void *data) {
  new_file_t *job = data;
  napi_value value = job->err == 0 && status == napi_ok ? new_file_failures(env, job) : NULL;
  settle_job(env, job->deferred, job->err, job->syscall, &job->path, value, "writeFileAndRename");
  napi_delete_async_work(env, job->work);
  free_new_file(env, job);
}

/* pieces[i] (a Uint8Array) goes at offsets[i]. */
static int take_pieces(napi_env env, napi_value pieces, napi_value offsets, new_file_t *job) {
  uint32_t count, offset_count;
  if (napi_get_array_length(env, pieces, &count) != napi_ok || napi_get_array_length(env, offsets, &offset_count) != napi_ok || count != offset_count)
    return throw_type(env, "pieces and offsets must be arrays of one length"), 0;
  job->pieces = calloc(count ? count : 1, sizeof(piece_t));
  if (job->pieces == NULL) return throw_type(env, "out of memory"), 0;
  job->piece_count = count;
  for (uint32_t i = 0; i < count; i++) {
    napi_value piece, offset;
    uint8_t *data;
    size_t length;
    int64_t at;
    if (napi_get_element(env, pieces, i, &piece) != napi_ok || napi_get_element(env, offsets, i, &offset) != napi_ok) return 0;
    if (!uint8_array_bytes(env, piece, &data, &length)) return throw_type(env, "each piece must be a Uint8Array"), 0;
    if (!get_bigint_or_number(env, offset, &at) || at < 0) return throw_type(env, "offsets must be numbers from 0"), 0;
    job->pieces[i] = (piece_t){.data = data, .length = length, .offset = (off_t)at};
  }
  return napi_create_reference(env, pieces, 1, &job->pieces_ref) == napi_ok;
}

static int take_xattrs(napi_env env, napi_value xattrs, new_file_t *job) {
  uint32_t count;
  if (napi_get_array_length(env, xattrs, &count) != napi_ok) return throw_type(env, "xattrs must be an array"), 0;
  job->xattrs = calloc(count ? count : 1, sizeof(xattr_set_t));
  if (job->xattrs == NULL) return throw_type(env, "out of memory"), 0;
  for (uint32_t i = 0; i < count; i++) {
    napi_value xattr, name, value;
    c_path name_bytes;
    void *data;
    size_t length;
    bool is_buffer = false;
    if (napi_get_element(env, xattrs, i, &xattr) != napi_ok || napi_get_named_property(env, xattr, "name", &name) != napi_ok ||
        napi_get_named_property(env, xattr, "value", &value) != napi_ok)
      return 0;
    napi_is_buffer(env, value, &is_buffer);
    if (!is_buffer || napi_get_buffer_info(env, value, &data, &length) != napi_ok) return throw_type(env, "an xattr's value must be a Buffer"), 0;
    if (!get_path(env, name, &name_bytes)) return 0;
    job->xattrs[i] = (xattr_set_t){.name = name_bytes.bytes, .value = data, .length = length};
    job->xattr_count = i + 1;
  }
  return napi_create_reference(env, xattrs, 1, &job->xattrs_ref) == napi_ok;
}

static int get_named_int64(napi_env env, napi_value object, const char *name, int64_t *out) {
  napi_value value;
  return napi_get_named_property(env, object, name, &value) == napi_ok && get_bigint_or_number(env, value, out);
}

/* meta: { mode, uid?, gid?, atimeNs, mtimeNs, xattrs }; the owner is set only when uid is a number. */
static int take_meta(napi_env env, napi_value meta, new_file_t *job) {
  napi_value uid, xattrs;
  napi_valuetype uid_type;
  int64_t mode;
  if (!get_named_int64(env, meta, "mode", &mode) || !get_named_int64(env, meta, "atimeNs", &job->atime) || !get_named_int64(env, meta, "mtimeNs", &job->mtime))
    return throw_type(env, "meta needs mode, atimeNs and mtimeNs"), 0;
  job->mode = (uint32_t)mode & 07777;
  if (napi_get_named_property(env, meta, "uid", &uid) != napi_ok || napi_typeof(env, uid, &uid_type) != napi_ok) return 0;
  job->set_owner = uid_type != napi_undefined;
  if (job->set_owner && (!get_named_int64(env, meta, "uid", &job->uid) || !get_named_int64(env, meta, "gid", &job->gid)))
    return throw_type(env, "meta.uid and meta.gid must be numbers"), 0;
  if (napi_get_named_property(env, meta, "xattrs", &xattrs) != napi_ok) return 0;
  return take_xattrs(env, xattrs, job);
}

/* A new file's job from its arguments; NULL with an exception pending on failure. */
static new_file_t *take_new_file(napi_env env, napi_value temp, napi_value path, napi_value pieces, napi_value offsets, napi_value size_value, napi_value meta) {
  int64_t size;
  if (!get_bigint_or_number(env, size_value, &size) || size < 0) return throw_type(env, "size must be a number from 0"), NULL;
  new_file_t *job = calloc(1, sizeof(new_file_t));
  if (job == NULL) return throw_type(env, "out of memory"), NULL;
  job->size = (off_t)size;
  if (!get_path(env, temp, &job->temp) || !get_path(env, path, &job->path) || !take_pieces(env, pieces, offsets, job) || !take_meta(env, meta, job))
    return free_new_file(env, job), NULL;
  return job;
}

static napi_value write_file_and_rename(napi_env env, napi_callback_info info) {
  napi_value argv[6], promise, resource_name;
  if (!get_args(env, info, 6, argv)) return NULL;
  new_file_t *job = take_new_file(env, argv[0], argv[1], argv[2], argv[3], argv[4], argv[5]);
  if (job == NULL) return NULL;
  if (napi_create_promise(env, &job->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, "cairn:writeFileAndRename", NAPI_AUTO_LENGTH, &resource_name) != napi_ok ||
      napi_create_async_work(env, NULL, resource_name, new_file_execute, new_file_complete, job, &job->work) != napi_ok ||
      napi_queue_async_work(env, job->work) != napi_ok)
    return free_new_file(env, job), NULL;
  return promise;
}

/*
 * Several files in one trip, one after the other on the pool thread: a trip per small file
 * woke a pool thread each time (see readWholeMany).
 */
typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  new_file_t **files;
  uint32_t count;
} new_files_t;

static void free_new_files(napi_env env, new_files_t *batch) {
  for (uint32_t i = 0; i < batch->count; i++) free_new_file(env, batch->files[i]);
  free(batch->files);
  free(batch);
}

static void new_files_execute(napi_env env, void *data) {
  new_files_t *batch = data;
  for (uint32_t i = 0; i < batch->count; i++) new_file_execute(env, batch->files[i]);
}

static napi_value new_files_result(napi_env env, new_files_t *batch) {
  napi_value results;
  CHECK(napi_create_array_with_length(env, batch->count, &results));
  for (uint32_t i = 0; i < batch->count; i++) {
    new_file_t *job = batch->files[i];
    napi_value value = job->err != 0 ? errno_value(env, job->err, job->syscall, &job->path) : new_file_failures(env, job);
    if (value == NULL) return NULL;
    CHECK(napi_set_element(env, results, i, value));
  }
  return results;
}

static void new_files_complete(napi_env env, napi_status status, void *data) {
  new_files_t *batch = data;
  napi_value value = status == napi_ok ? new_files_result(env, batch) : NULL;
  settle_job(env, batch->deferred, 0, NULL, NULL, value, "writeFilesAndRename");
  napi_delete_async_work(env, batch->work);
  free_new_files(env, batch);
}

/* files[i]: { temp, path, pieces, offsets, size, metadata }, as writeFileAndRename takes them. */
static int take_new_files(napi_env env, napi_value files, new_files_t *batch) {
  static const char *const NAMES[6] = {"temp", "path", "pieces", "offsets", "size", "metadata"};
  uint32_t count;
  bool is_array = false;
  napi_is_array(env, files, &is_array);
  if (!is_array || napi_get_array_length(env, files, &count) != napi_ok) return throw_type(env, "files must be an array"), 0;
  if ((batch->files = calloc(count ? count : 1, sizeof(new_file_t *))) == NULL) return throw_type(env, "out of memory"), 0;
  for (uint32_t i = 0; i < count; i++) {
    napi_value file, fields[6];
    if (napi_get_element(env, files, i, &file) != napi_ok) return 0;
    for (int k = 0; k < 6; k++)
      if (napi_get_named_property(env, file, NAMES[k], &fields[k]) != napi_ok) return 0;
    new_file_t *job = take_new_file(env, fields[0], fields[1], fields[2], fields[3], fields[4], fields[5]);
    if (job == NULL) return 0;
    batch->files[batch->count++] = job;
  }
  return 1;
}

static napi_value write_files_and_rename(napi_env env, napi_callback_info info) {
  napi_value argv[1], promise, resource_name;
  if (!get_args(env, info, 1, argv)) return NULL;
  new_files_t *batch = calloc(1, sizeof(new_files_t));
  if (batch == NULL) return throw_type(env, "out of memory");
  if (!take_new_files(env, argv[0], batch)) return free_new_files(env, batch), NULL;
  if (napi_create_promise(env, &batch->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, "cairn:writeFilesAndRename", NAPI_AUTO_LENGTH, &resource_name) != napi_ok ||
      napi_create_async_work(env, NULL, resource_name, new_files_execute, new_files_complete, batch, &batch->work) != napi_ok ||
      napi_queue_async_work(env, batch->work) != napi_ok)
    return free_new_files(env, batch), NULL;
  return promise;
}

/* ---- module ---------------------------------------------------------------------------- */

napi_status define_aes_gcm(napi_env env, napi_value exports); /* aes-gcm.c */
napi_value scrypt_derive(napi_env env, napi_callback_info info); /* scrypt.c */
napi_value gear_cut(napi_env env, napi_callback_info info); /* gear-cut.c */

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor properties[] = {
      {"listXattrs", NULL, list_xattrs, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setXattr", NULL, set_xattr, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setTimes", NULL, set_times, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mknod", NULL, make_node, NULL, NULL, NULL, napi_enumerable, NULL},
      {"dataRanges", NULL, data_ranges, NULL, NULL, NULL, napi_enumerable, NULL},
      {"punchHole", NULL, punch_hole, NULL, NULL, NULL, napi_enumerable, NULL},
      {"zeroRange", NULL, zero_range, NULL, NULL, NULL, napi_enumerable, NULL},
      {"adviseHugePages", NULL, advise_huge_pages, NULL, NULL, NULL, napi_enumerable, NULL},
      {"releasePages", NULL, release_pages, NULL, NULL, NULL, napi_enumerable, NULL},
      {"limitMallocArenas", NULL, limit_malloc_arenas, NULL, NULL, NULL, napi_enumerable, NULL},
      {"userName", NULL, user_name, NULL, NULL, NULL, napi_enumerable, NULL},
      {"groupName", NULL, group_name, NULL, NULL, NULL, napi_enumerable, NULL},
      {"listChildren", NULL, list_children, NULL, NULL, NULL, napi_enumerable, NULL},
      {"readWhole", NULL, read_whole, NULL, NULL, NULL, napi_enumerable, NULL},
      {"readWholeMany", NULL, read_whole_many, NULL, NULL, NULL, napi_enumerable, NULL},
      {"writeFilesAndRename", NULL, write_files_and_rename, NULL, NULL, NULL, napi_enumerable, NULL},
      {"writeFileAndRename", NULL, write_file_and_rename, NULL, NULL, NULL, napi_enumerable, NULL},
      {"scrypt", NULL, scrypt_derive, NULL, NULL, NULL, napi_enumerable, NULL},
      {"gearCut", NULL, gear_cut, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof(properties) / sizeof(properties[0]), properties));
  CHECK(define_aes_gcm(env, exports));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
