/*
 * AES-256-GCM into buffers the caller owns, with the OpenSSL that Node is built with (its
 * symbols are exported to addons). Node's cipher returns a new buffer from every update:
 * zero-filled first, then written, then copied by the caller into the chunk slot. In a volume
 * backup that allocation and its page faults were 5-6 % of all CPU time, and the copy more.
 * These write the ciphertext (or plaintext) straight where it belongs. The format is the
 * cipher's own: the same bytes as Node's aes-256-gcm with a 12-byte nonce and a 16-byte tag.
 */
#include <node_api.h>
#include <openssl/evp.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEY_LENGTH 32
#define NONCE_LENGTH 12
#define TAG_LENGTH 16

typedef struct {
  uint8_t *data;
  size_t length;
} bytes_t;

napi_value throw_type(napi_env env, const char *message); /* posix.c */
bool uint8_array_bytes(napi_env env, napi_value value, uint8_t **data, size_t *length); /* posix.c */

static napi_value range_error(napi_env env, const char *message) {
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", message);
  return NULL;
}

/* A Uint8Array argument's bytes (any backing: ArrayBuffer or SharedArrayBuffer); false if it is none. */
static bool get_bytes(napi_env env, napi_value value, bytes_t *out) {
  return uint8_array_bytes(env, value, &out->data, &out->length);
}

static bool get_fixed(napi_env env, napi_value value, size_t length, bytes_t *out) {
  return get_bytes(env, value, out) && out->length == length;
}

static EVP_CIPHER_CTX *start(const uint8_t *key, const uint8_t *nonce, int encrypt) {
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  if (ctx == NULL) return NULL;
  if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, encrypt) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LENGTH, NULL) == 1 &&
      EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, encrypt) == 1)
    return ctx;
  EVP_CIPHER_CTX_free(ctx);
  return NULL;
}

/* Runs `length` bytes at `in` through the cipher into `out`, in pieces that fit an int. */
static bool update(EVP_CIPHER_CTX *ctx, uint8_t *out, const uint8_t *in, size_t length, size_t *written) {
  for (size_t done = 0; done < length;) {
    size_t piece = length - done > INT_MAX / 2 ? INT_MAX / 2 : length - done;
    int n = 0;
    if (EVP_CipherUpdate(ctx, out + *written, &n, in + done, (int)piece) != 1) return false;
    *written += (size_t)n;
    done += piece;
  }
  return true;
}

/*
 * sealInto(key, nonce, parts, out, offset): encrypts the parts, in order, as one message into
 * out at offset, the tag after the ciphertext; returns the bytes written. A part must not
 * overlap out other than exactly in place.
 */
static napi_value seal_into(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], result;
  bytes_t key, nonce, out;
  bool is_array = false;
  int64_t offset;
  uint32_t count;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 5) return throw_type(env, "sealInto takes key, nonce, parts, out and offset");
  if (!get_fixed(env, argv[0], KEY_LENGTH, &key)) return throw_type(env, "key must be a Uint8Array of 32 bytes");
  if (!get_fixed(env, argv[1], NONCE_LENGTH, &nonce)) return throw_type(env, "nonce must be a Uint8Array of 12 bytes");
  if (napi_is_array(env, argv[2], &is_array) != napi_ok || !is_array || napi_get_array_length(env, argv[2], &count) != napi_ok) return throw_type(env, "parts must be an array");
  if (!get_bytes(env, argv[3], &out)) return throw_type(env, "out must be a Uint8Array");
  if (napi_get_value_int64(env, argv[4], &offset) != napi_ok || offset < 0 || (uint64_t)offset > out.length) return range_error(env, "offset must be within out");
  bytes_t parts[8];
  size_t total = 0;
  if (count > 8) return range_error(env, "at most 8 parts");
  for (uint32_t i = 0; i < count; i++) {
    napi_value part;
    if (napi_get_element(env, argv[2], i, &part) != napi_ok || !get_bytes(env, part, &parts[i])) return throw_type(env, "every part must be a Uint8Array");
    total += parts[i].length;
  }
  if (total + TAG_LENGTH > out.length - (size_t)offset) return range_error(env, "out has no room for the ciphertext and its tag");
  EVP_CIPHER_CTX *ctx = start(key.data, nonce.data, 1);
  if (ctx == NULL) return throw_type(env, "the cipher could not be set up");
  uint8_t *at = out.data + offset;
  size_t written = 0;
  bool ok = true;
  for (uint32_t i = 0; ok && i < count; i++) ok = update(ctx, at, parts[i].data, parts[i].length, &written);
  int n = 0;
  ok = ok && EVP_CipherFinal_ex(ctx, at + written, &n) == 1;
  written += (size_t)n;
  ok = ok && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LENGTH, at + written) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!ok) return throw_type(env, "encryption failed");
  napi_create_double(env, (double)(written + TAG_LENGTH), &result);
  return result;
}

/*
 * openInto(key, nonce, ciphertext, tag, out): decrypts into out (room for the ciphertext's
 * length; not overlapping it other than exactly in place) and checks the tag; false when the
 * message is not authentic, and out must then be treated as garbage.
 */
static napi_value open_into(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], result;
  bytes_t key, nonce, ciphertext, tag, out;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 5) return throw_type(env, "openInto takes key, nonce, ciphertext, tag and out");
  if (!get_fixed(env, argv[0], KEY_LENGTH, &key)) return throw_type(env, "key must be a Uint8Array of 32 bytes");
  if (!get_fixed(env, argv[1], NONCE_LENGTH, &nonce)) return throw_type(env, "nonce must be a Uint8Array of 12 bytes");
  if (!get_bytes(env, argv[2], &ciphertext)) return throw_type(env, "ciphertext must be a Uint8Array");
  if (!get_fixed(env, argv[3], TAG_LENGTH, &tag)) return throw_type(env, "tag must be a Uint8Array of 16 bytes");
  if (!get_bytes(env, argv[4], &out)) return throw_type(env, "out must be a Uint8Array");
  if (out.length < ciphertext.length) return range_error(env, "out has no room for the plaintext");
  EVP_CIPHER_CTX *ctx = start(key.data, nonce.data, 0);
  if (ctx == NULL) return throw_type(env, "the cipher could not be set up");
  size_t written = 0;
  int n = 0;
  bool ok = update(ctx, out.data, ciphertext.data, ciphertext.length, &written) &&
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LENGTH, tag.data) == 1 &&
            EVP_CipherFinal_ex(ctx, out.data + written, &n) == 1;
  EVP_CIPHER_CTX_free(ctx);
  napi_get_boolean(env, ok, &result);
  return result;
}

napi_status define_aes_gcm(napi_env env, napi_value exports) {
  napi_property_descriptor properties[] = {
      {"aesGcmSealInto", NULL, seal_into, NULL, NULL, NULL, napi_enumerable, NULL},
      {"aesGcmOpenInto", NULL, open_into, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof(properties) / sizeof(properties[0]), properties);
}
