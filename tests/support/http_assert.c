/* Checks of herald's response contract: see http_assert.h. */
#include "http_assert.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <criterion/criterion.h>

bool hd_request_id_valid(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n < 1 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = id[i];
        bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
        if (!ok)
            return false;
    }
    return true;
}

void hd_assert_common_headers(const struct hd_http_response *r)
{
    const char *rid = hd_http_header(r, "X-Request-Id");
    cr_assert(rid, "no X-Request-Id (status %d, body %s)", r->status, r->body);
    cr_assert(hd_request_id_valid(rid), "malformed X-Request-Id '%s'", rid);
    const char *nosniff = hd_http_header(r, "X-Content-Type-Options");
    cr_assert(nosniff && strcasecmp(nosniff, "nosniff") == 0,
              "X-Content-Type-Options is '%s', want nosniff (status %d)",
              nosniff ? nosniff : "(none)", r->status);
    const char *cl = hd_http_header(r, "Content-Length");
    cr_assert(cl, "no Content-Length (status %d)", r->status);
    cr_assert_eq(strtoull(cl, NULL, 10), r->body_len, "Content-Length %s, body %zu bytes", cl,
                 r->body_len);
}

void hd_assert_json_response(const struct hd_http_response *r, int status)
{
    cr_assert_eq(r->status, status, "status %d, want %d; body: %s", r->status, status, r->body);
    hd_assert_common_headers(r);
    const char *ct = hd_http_header(r, "Content-Type");
    cr_assert(ct && strncasecmp(ct, "application/json", 16) == 0,
              "Content-Type '%s', want application/json", ct ? ct : "(none)");
    cr_assert(hd_http_header_has_token(r, "Cache-Control", "no-store"),
              "Cache-Control '%s' lacks no-store", hd_http_header(r, "Cache-Control"));
    json_t *j = hd_http_response_json(r);
    cr_assert(j, "body is not JSON: %s", r->body);
    json_decref(j);
}

void hd_assert_error(const struct hd_http_response *r, int status, const char *code)
{
    hd_assert_json_response(r, status);
    json_t *j = hd_http_response_json(r);
    json_t *err = json_object_get(j, "error");
    cr_assert(json_is_object(err), "no \"error\" object: %s", r->body);
    const char *got = json_string_value(json_object_get(err, "code"));
    cr_assert(got && *got, "no error.code: %s", r->body);
    cr_assert(!code || strcmp(got, code) == 0, "error.code '%s', want '%s': %s", got, code,
              r->body);
    cr_assert(json_is_string(json_object_get(err, "message")), "no error.message: %s", r->body);
    json_t *field = json_object_get(err, "field");
    cr_assert(!field || json_is_string(field), "error.field is not a string: %s", r->body);
    const char *rid = json_string_value(json_object_get(j, "request_id"));
    const char *hdr = hd_http_header(r, "X-Request-Id");
    cr_assert(rid && hdr && strcmp(rid, hdr) == 0, "request_id '%s' != X-Request-Id '%s'",
              rid ? rid : "(none)", hdr ? hdr : "(none)");
    json_decref(j);
}

void hd_assert_healthy(int port)
{
    struct hd_http_response r;
    int rc = hd_http_get(port, "/healthz", &r, 5000);
    cr_assert_eq(rc, 0, "GET /healthz on a new connection failed: %d (%s)", rc, strerror(-rc));
    cr_assert_eq(r.status, 200, "GET /healthz answered %d: %s", r.status, r.body);
    hd_http_response_free(&r);
}
