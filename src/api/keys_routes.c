/* Publisher API keys: POST /api/keys (the key is shown once, in this
 * answer), GET /api/keys (never a secret nor its hash), DELETE
 * /api/keys/{id}. Admins only; every key belongs to the caller's
 * organization, and one of another organization is answered as unknown.
 *
 * A key is "hk_" + 32 random bytes in base64url without padding. The store
 * keeps only the SHA-256 (hex) of the whole key and a short prefix for
 * display, so a leaked database does not leak usable keys. */
#include "api/api.h"
#include "api/routes.h"

#include "herald/core.h"
#include "herald/server.h"
#include "herald/store_http.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_RANDOM_BYTES 32
#define KEY_NAME_MAX     128
#define SCOPES_MAX       8

/* The scopes a key may carry; the first is the default. */
static const char *const known_scopes[] = {"publish"};

/* ---- helpers ---------------------------------------------------------------- */

/* Fills @key (HD_API_KEY_LEN + 1 bytes) with a new random key. */
static void make_key(char key[HD_API_KEY_LEN + 1])
{
    unsigned char raw[KEY_RANDOM_BYTES];
    size_t pre = strlen(HD_API_KEY_PREFIX);
    randombytes_buf(raw, sizeof(raw));
    memcpy(key, HD_API_KEY_PREFIX, pre);
    sodium_bin2base64(key + pre, HD_API_KEY_LEN + 1 - pre, raw, sizeof(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof(raw));
}

/* The space-separated scopes of the store as a JSON array. */
static json_t *scopes_json(const char *scopes)
{
    json_t *a = json_array();
    for (const char *p = scopes ? scopes : ""; *p;) {
        size_t n = strcspn(p, " ");
        if (n > 0)
            json_array_append_new(a, json_stringn(p, n));
        p += n;
        while (*p == ' ')
            p++;
    }
    return a;
}

/* The public view of @k: never the secret, never its hash. */
static json_t *key_json(const struct hd_api_key *k)
{
    return json_pack("{s:s, s:s, s:s, s:o, s:I}", "id", k->id, "name", k->name ? k->name : "",
                     "prefix", k->prefix ? k->prefix : "", "scopes", scopes_json(k->scopes),
                     "created_at", (json_int_t)k->created_at);
}

static void respond_json(struct hd_exchange *x, int status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (!text)
        hd_respond_error(x, 500, "internal_error", "could not render the answer", NULL);
    else
        hd_respond_json(x, status, text, strlen(text));
    free(text);
    json_decref(body);
}

/* The index of scope @s in known_scopes, or -1. */
static int scope_index(const char *s)
{
    for (size_t i = 0; i < HD_ARRAY_LEN(known_scopes); i++) {
        if (strcmp(s, known_scopes[i]) == 0)
            return (int)i;
    }
    return -1;
}

/* Reads "scopes" (absent: the default) into a space-separated string of
 * known scopes, each once, that the caller frees. Answers 400 and returns
 * NULL when it is not a non-empty array of known scope names. */
static char *read_scopes(struct hd_exchange *x, json_t *body)
{
    json_t *v = json_object_get(body, "scopes");
    if (!v || json_is_null(v))
        return hd_strdup(known_scopes[0]);
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > SCOPES_MAX) {
        hd_respond_error(x, 400, "validation_failed", "a non-empty array of scopes: publish",
                         "scopes");
        return NULL;
    }
    bool wanted[HD_ARRAY_LEN(known_scopes)] = {false};
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s)
    {
        int k = json_is_string(s) ? scope_index(json_string_value(s)) : -1;
        if (k < 0) {
            hd_respond_error(x, 400, "validation_failed", "unknown scope (known: publish)",
                             "scopes");
            return NULL;
        }
        wanted[k] = true;
    }
    char buf[256] = "";
    for (size_t k = 0; k < HD_ARRAY_LEN(known_scopes); k++) {
        if (wanted[k])
            snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s%s", buf[0] ? " " : "",
                     known_scopes[k]);
    }
    return hd_strdup(buf);
}

/* ---- POST /api/keys ------------------------------------------------------------ */

/* The key between its creation and the answer: shown once, then wiped. */
struct new_key {
    char key[HD_API_KEY_LEN + 1];
};

static void new_key_free(void *p)
{
    sodium_memzero(p, sizeof(struct new_key));
    free(p);
}

static void key_created(struct hd_exchange *x, struct hd_store_op *op)
{
    struct new_key *k = hd_exchange_state(x);
    if (op->status != HD_STORE_OK) {
        hd_store_respond_failure(x, op);
        return;
    }
    json_t *body = key_json(&op->api_key);
    json_object_set_new(body, "key", json_string(k->key));
    hd_respond_header(x, "Cache-Control", "no-store");
    respond_json(x, 201, body);
}

static void handle_create(struct hd_exchange *x)
{
    struct hd_api_caller who;
    if (!hd__api_require_admin(x, &who))
        return;
    json_t *body = hd_api_body(x);
    if (!body)
        return;
    const char *name;
    char *scopes = NULL;
    if (!hd_api_string(x, body, "name", true, 1, KEY_NAME_MAX, &name) ||
        !(scopes = read_scopes(x, body)))
        goto out;
    struct new_key *k = hd_calloc(1, sizeof(*k));
    make_key(k->key);
    hd_exchange_set_state(x, k, new_key_free);
    struct hd_store_op *op = hd_store_op_new(HD_OP_API_KEY_CREATE);
    struct hd_api_key *ak = &op->api_key;
    memcpy(ak->org_id, who.claims.org, sizeof(ak->org_id));
    ak->name = hd_strdup(name);
    ak->key_hash = hd_malloc(65);
    hd_token_hash_hex(k->key, strlen(k->key), ak->key_hash);
    ak->prefix = hd_strndup(k->key + strlen(HD_API_KEY_PREFIX), HD_API_KEY_PREFIX_LEN);
    ak->scopes = scopes;
    scopes = NULL;
    hd_store_call(hd_api_of(x)->store, x, op, key_created);
out:
    free(scopes);
    json_decref(body);
}

/* ---- GET /api/keys ---------------------------------------------------------------- */

static void keys_listed(struct hd_exchange *x, struct hd_store_op *op)
{
    if (op->status != HD_STORE_OK) {
        hd_store_respond_failure(x, op);
        return;
    }
    json_t *list = json_array();
    for (size_t i = 0; i < op->n_api_keys; i++)
        json_array_append_new(list, key_json(&op->api_keys[i]));
    respond_json(x, 200, json_pack("{s:o}", "keys", list));
}

static void handle_list(struct hd_exchange *x)
{
    struct hd_api_caller who;
    if (!hd__api_require_admin(x, &who))
        return;
    struct hd_store_op *op = hd_store_op_new(HD_OP_API_KEYS_LIST);
    memcpy(op->org_id, who.claims.org, sizeof(op->org_id));
    hd_store_call(hd_api_of(x)->store, x, op, keys_listed);
}

/* ---- DELETE /api/keys/{id} -------------------------------------------------------- */

static void no_such_key(struct hd_exchange *x)
{
    hd_respond_error(x, 404, "not_found", "no such API key", NULL);
}

static void key_revoked(struct hd_exchange *x, struct hd_store_op *op)
{
    if (op->status == HD_STORE_NOT_FOUND) {
        no_such_key(x); /* unknown, another organization's, or already revoked */
        return;
    }
    if (op->status != HD_STORE_OK) {
        hd_store_respond_failure(x, op);
        return;
    }
    hd_respond(x, 204, NULL, NULL, 0);
}

static void handle_revoke(struct hd_exchange *x)
{
    struct hd_api_caller who;
    if (!hd__api_require_admin(x, &who))
        return;
    size_t len;
    const char *id = hd_req_param(x, "id", &len);
    if (!id || len != HD_ID_LEN) {
        no_such_key(x);
        return;
    }
    struct hd_store_op *op = hd_store_op_new(HD_OP_API_KEY_REVOKE);
    memcpy(op->id, id, HD_ID_LEN);
    memcpy(op->org_id, who.claims.org, sizeof(op->org_id));
    hd_store_call(hd_api_of(x)->store, x, op, key_revoked);
}

int hd_api_keys_routes(struct hd_api *api, struct hd_server *s)
{
    int rc = 0;
    rc |= hd_api_route(api, s, "POST", "/api/keys", handle_create, true);
    rc |= hd_api_route(api, s, "GET", "/api/keys", handle_list, true);
    rc |= hd_api_route(api, s, "DELETE", "/api/keys/{id}", handle_revoke, true);
    return rc ? -EINVAL : 0;
}
