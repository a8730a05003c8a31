/*
 * @cairn/posix: the few POSIX calls Node's fs lacks and a file backup needs (extended
 * attributes, nanosecond times on symlinks, device nodes, SEEK_DATA/SEEK_HOLE, user and group
 * names). Every call is synchronous and cheap (one or a few syscalls); errors are thrown as
 * Node's fs errors are: an Error with `code` (errno name), `errno` (negative, as libuv and fs
 * report it), `syscall` and `path`.
 */
#include <node_api.h>
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
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

static napi_value throw_type(napi_env env, const char *message) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
  return NULL;
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

static napi_value data_ranges(napi_env env, napi_callback_info info) {
  napi_value argv[2], array;
  int32_t fd;
  int64_t size;
  if (!get_args(env, info, 2, argv)) return NULL;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok) return throw_type(env, "fd must be a number");
  if (!get_bigint_or_number(env, argv[1], &size) || size < 0) return throw_type(env, "size must be a number >= 0");
  CHECK(napi_create_array(env, &array));
  uint32_t count = 0;
  for (off_t at = 0; at < size;) {
    off_t data = lseek(fd, at, SEEK_DATA);
    if (data < 0 && errno == ENXIO) break; /* only a hole from here to the end */
    if (data < 0 && count == 0 && (errno == EINVAL || errno == ENOTSUP)) {
      push_range(env, array, count++, 0, (double)size); /* the file system cannot tell */
      break;
    }
    if (data < 0) return throw_errno(env, errno, "lseek", NULL);
    if (data >= size) break;
    off_t hole = lseek(fd, data, SEEK_HOLE);
    if (hole < 0) return throw_errno(env, errno, "lseek", NULL);
    if (hole > size) hole = size;
    if (!push_range(env, array, count++, (double)data, (double)(hole - data))) return NULL;
    at = hole;
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

/* ---- module ---------------------------------------------------------------------------- */

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor properties[] = {
      {"listXattrs", NULL, list_xattrs, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setXattr", NULL, set_xattr, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setTimes", NULL, set_times, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mknod", NULL, make_node, NULL, NULL, NULL, napi_enumerable, NULL},
      {"dataRanges", NULL, data_ranges, NULL, NULL, NULL, napi_enumerable, NULL},
      {"userName", NULL, user_name, NULL, NULL, NULL, napi_enumerable, NULL},
      {"groupName", NULL, group_name, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof(properties) / sizeof(properties[0]), properties));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
