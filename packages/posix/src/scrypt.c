/*
 * scrypt (RFC 7914) in the thread pool, with its large block V in transparent huge pages.
 * Node's crypto.scrypt is OpenSSL's, which mallocs V afresh on every call: 32 MiB for a
 * repository key (N = 2^15, r = 8), that is 8192 first touches of a 4 KiB page, each a page
 * fault of about 11 us on the virtual machines measured. There the faults were half of the
 * 150-190 ms a key took to derive, on every command that opens a repository; with V in 2 MiB
 * pages it takes 60-70 ms. PBKDF2-HMAC-SHA256 is OpenSSL's (Node's, whose symbols addons
 * reach); the mixing below follows the RFC. The bytes are the same as Node's (tests compare).
 */
#include <node_api.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

napi_value throw_type(napi_env env, const char *message); /* posix.c */
bool uint8_array_bytes(napi_env env, napi_value value, uint8_t **data, size_t *length); /* posix.c */

/* The largest parameters derived here; others are left to Node's scrypt. */
#define MOST_MEMORY ((uint64_t)1 << 30)
#define MOST_PARALLEL 64
#define MOST_KEY_LENGTH 1024
#define HUGE_PAGE ((size_t)2 * 1024 * 1024)

static inline uint32_t rotl(uint32_t value, int bits) {
  return (value << bits) | (value >> (32 - bits));
}

static inline uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void put_le32(uint8_t *p, uint32_t value) {
  p[0] = (uint8_t)value, p[1] = (uint8_t)(value >> 8), p[2] = (uint8_t)(value >> 16), p[3] = (uint8_t)(value >> 24);
}

#define QUARTER(a, b, c, d) (x[b] ^= rotl(x[a] + x[d], 7), x[c] ^= rotl(x[b] + x[a], 9), x[d] ^= rotl(x[c] + x[b], 13), x[a] ^= rotl(x[d] + x[c], 18))

/* Salsa20/8 core (RFC 7914, section 3): `block` becomes its hash. */
static void salsa20_8(uint32_t block[16]) {
  uint32_t x[16];
  memcpy(x, block, sizeof x);
  for (int round = 0; round < 8; round += 2) {
    QUARTER(0, 4, 8, 12), QUARTER(5, 9, 13, 1), QUARTER(10, 14, 2, 6), QUARTER(15, 3, 7, 11);
    QUARTER(0, 1, 2, 3), QUARTER(5, 6, 7, 4), QUARTER(10, 11, 8, 9), QUARTER(15, 12, 13, 14);
  }
  for (int i = 0; i < 16; i++) block[i] += x[i];
}

/* scryptBlockMix (section 4) of the 2r 64-byte blocks `in` into `out` (not overlapping). */
static void block_mix(const uint32_t *in, uint32_t *out, uint32_t r) {
  uint32_t x[16];
  memcpy(x, in + (2 * r - 1) * 16, sizeof x);
  for (uint32_t i = 0; i < 2 * r; i++) {
    for (int k = 0; k < 16; k++) x[k] ^= in[i * 16 + k];
    salsa20_8(x);
    /* Even blocks go to the first half of the output, odd ones to the second. */
    memcpy(out + ((i & 1) * r + i / 2) * 16, x, sizeof x);
  }
}

/* scryptROMix (section 5) of one 128r-byte block in place; `v` holds N blocks, `x` and `t` one each. */
static void ro_mix(uint8_t *bytes, uint32_t r, uint64_t n, uint32_t *v, uint32_t *x, uint32_t *t) {
  const size_t words = 32 * (size_t)r;
  for (size_t k = 0; k < words; k++) x[k] = le32(bytes + 4 * k);
  for (uint64_t i = 0; i < n; i++) {
    memcpy(v + i * words, x, words * 4);
    block_mix(x, t, r);
    memcpy(x, t, words * 4);
  }
  for (uint64_t i = 0; i < n; i++) {
    /* Integerify: the first 64 bits of the last 64-byte block, little-endian. */
    const uint32_t *last = x + (2 * r - 1) * 16;
    uint64_t j = ((uint64_t)last[1] << 32 | last[0]) & (n - 1);
    for (size_t k = 0; k < words; k++) x[k] ^= v[j * words + k];
    block_mix(x, t, r);
    memcpy(x, t, words * 4);
  }
  for (size_t k = 0; k < words; k++) put_le32(bytes + 4 * k, x[k]);
}

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  uint8_t *password, *salt, *key;
  size_t password_length, salt_length, key_length;
  uint64_t n;
  uint32_t r, p;
  bool failed;
} scrypt_job_t;

static bool pbkdf2(const uint8_t *password, size_t password_length, const uint8_t *salt, size_t salt_length, uint8_t *out, size_t out_length) {
  return PKCS5_PBKDF2_HMAC((const char *)password, (int)password_length, salt, (int)salt_length, 1, EVP_sha256(), (int)out_length, out) == 1;
}

static bool derive(scrypt_job_t *job) {
  const size_t block = 128 * (size_t)job->r;
  const size_t v_size = block * job->n;
  const size_t v_mapped = (v_size + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
  uint8_t *b = malloc(block * job->p);
  uint32_t *x = malloc(2 * block);
  /* Anonymous memory starts zeroed and page-aligned; advised, it faults in 2 MiB at a time. */
  void *v = mmap(NULL, v_mapped + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  bool ok = b != NULL && x != NULL && v != MAP_FAILED;
  if (ok) {
    uint8_t *aligned = (uint8_t *)(((uintptr_t)v + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    madvise(aligned, v_mapped, MADV_HUGEPAGE);
    ok = pbkdf2(job->password, job->password_length, job->salt, job->salt_length, b, block * job->p);
    for (uint32_t i = 0; ok && i < job->p; i++) ro_mix(b + i * block, job->r, job->n, (uint32_t *)aligned, x, x + block / 4);
    ok = ok && pbkdf2(job->password, job->password_length, b, block * job->p, job->key, job->key_length);
  }
  if (v != MAP_FAILED) munmap(v, v_mapped + HUGE_PAGE);
  /* OPENSSL_cleanse: a memset before free may be optimised away. */
  if (b != NULL) OPENSSL_cleanse(b, block * job->p);
  if (x != NULL) OPENSSL_cleanse(x, 2 * block);
  free(b);
  free(x);
  return ok;
}

static void scrypt_execute(napi_env env, void *data) {
  scrypt_job_t *job = data;
  job->failed = !derive(job);
}

static void free_job(scrypt_job_t *job) {
  if (job->password != NULL) OPENSSL_cleanse(job->password, job->password_length);
  if (job->key != NULL) OPENSSL_cleanse(job->key, job->key_length);
  free(job->password);
  free(job->salt);
  free(job->key);
  free(job);
}

static void scrypt_complete(napi_env env, napi_status status, void *data) {
  scrypt_job_t *job = data;
  napi_value result = NULL, message;
  void *copy;
  if (status == napi_ok && !job->failed && napi_create_buffer_copy(env, job->key_length, job->key, &copy, &result) == napi_ok) {
    napi_resolve_deferred(env, job->deferred, result);
  } else {
    napi_create_string_utf8(env, "scrypt failed", NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, NULL, message, &result);
    napi_reject_deferred(env, job->deferred, result);
  }
  napi_delete_async_work(env, job->work);
  free_job(job);
}

/* A copy of a Uint8Array's bytes (the derivation runs after the call returns); false when it is none or memory ran out. */
static bool copy_bytes(napi_env env, napi_value value, uint8_t **out, size_t *length) {
  uint8_t *data;
  if (!uint8_array_bytes(env, value, &data, length)) return false;
  *out = malloc(*length > 0 ? *length : 1);
  if (*out != NULL) memcpy(*out, data, *length);
  return *out != NULL;
}

static bool get_u32(napi_env env, napi_value value, uint32_t *out) {
  double number;
  if (napi_get_value_double(env, value, &number) != napi_ok || number < 0 || number > UINT32_MAX || number != (double)(uint32_t)number) return false;
  *out = (uint32_t)number;
  return true;
}

/*
 * Whether N, r and p are ones this file derives: N a power of two below 2^(16r) (RFC 7914;
 * it binds only for r = 1 here), V and B at most 1 GiB.
 */
static bool supported(uint32_t n, uint32_t r, uint32_t p) {
  if (n < 2 || (n & (n - 1)) != 0 || r == 0 || p == 0 || p > MOST_PARALLEL) return false;
  if (r == 1 && n >= (1u << 16)) return false;
  return (uint64_t)128 * r * n <= MOST_MEMORY && (uint64_t)128 * r * p <= MOST_MEMORY;
}

/* scrypt(password, salt, N, r, p, keyLength): a promise of the key (a Buffer). */
napi_value scrypt_derive(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6], promise, resource_name;
  uint32_t n, r, p, key_length;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 6) return throw_type(env, "scrypt takes password, salt, N, r, p and keyLength");
  if (!get_u32(env, argv[2], &n) || !get_u32(env, argv[3], &r) || !get_u32(env, argv[4], &p) || !supported(n, r, p))
    return throw_type(env, "N must be a power of two below 2^(16r), 128 * r * N and 128 * r * p at most 1 GiB, p at most 64");
  if (!get_u32(env, argv[5], &key_length) || key_length == 0 || key_length > MOST_KEY_LENGTH) return throw_type(env, "keyLength must be 1 to 1024");
  scrypt_job_t *job = calloc(1, sizeof(scrypt_job_t));
  if (job == NULL) return throw_type(env, "out of memory");
  job->n = n, job->r = r, job->p = p, job->key_length = key_length;
  job->key = malloc(key_length);
  if (job->key == NULL || !copy_bytes(env, argv[0], &job->password, &job->password_length) || !copy_bytes(env, argv[1], &job->salt, &job->salt_length)) {
    free_job(job);
    return throw_type(env, "password and salt must be Uint8Arrays");
  }
  if (napi_create_promise(env, &job->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, "cairn:scrypt", NAPI_AUTO_LENGTH, &resource_name) != napi_ok ||
      napi_create_async_work(env, NULL, resource_name, scrypt_execute, scrypt_complete, job, &job->work) != napi_ok ||
      napi_queue_async_work(env, job->work) != napi_ok) {
    free_job(job);
    return throw_type(env, "scrypt could not be queued");
  }
  return promise;
}
