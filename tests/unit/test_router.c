/* The router: static and parameter routes, 404 vs 405 with Allow. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "net/net_internal.h"

static void h_a(struct hd_exchange *x)
{
    (void)x;
}

static void h_b(struct hd_exchange *x)
{
    (void)x;
}

static struct hd_router *make(void)
{
    struct hd_router *r = hd__router_new();
    cr_assert_eq(hd__router_add(r, HTTP_GET, "/api/keys/{id}", h_b, NULL), 0);
    cr_assert_eq(hd__router_add(r, HTTP_GET, "/api/keys/mine", h_a, NULL), 0);
    cr_assert_eq(hd__router_add(r, HTTP_DELETE, "/api/keys/{id}", h_a, NULL), 0);
    cr_assert_eq(hd__router_add(r, HTTP_GET, "/healthz", h_a, NULL), 0);
    return r;
}

static enum hd_match match(struct hd_router *r, int method, const char *path,
                           const struct hd_route **rt, struct hd_param *p, int *np, char *allow)
{
    return hd__router_match(r, method, path, strlen(path), rt, p, np, allow, 128);
}

Test(router, static_route_wins_over_parameter_route)
{
    struct hd_router *r = make();
    const struct hd_route *rt = NULL;
    struct hd_param p[HD_MAX_PARAMS];
    int np = -1;
    char allow[128];
    cr_assert_eq(match(r, HTTP_GET, "/api/keys/mine", &rt, p, &np, allow), HD_MATCH_FOUND);
    cr_expect_eq(rt->fn, h_a);
    cr_expect_eq(np, 0);
    hd__router_free(r);
}

Test(router, parameter_is_captured)
{
    struct hd_router *r = make();
    const struct hd_route *rt = NULL;
    struct hd_param p[HD_MAX_PARAMS];
    int np = 0;
    char allow[128];
    cr_assert_eq(match(r, HTTP_GET, "/api/keys/k_123", &rt, p, &np, allow), HD_MATCH_FOUND);
    cr_expect_eq(rt->fn, h_b);
    cr_assert_eq(np, 1);
    cr_expect_eq(p[0].name_len, 2);
    cr_expect_eq(memcmp(p[0].name, "id", 2), 0);
    cr_expect_eq(p[0].value_len, 5);
    cr_expect_eq(memcmp(p[0].value, "k_123", 5), 0);
    hd__router_free(r);
}

Test(router, empty_segment_or_extra_segment_is_not_found)
{
    struct hd_router *r = make();
    const struct hd_route *rt = NULL;
    struct hd_param p[HD_MAX_PARAMS];
    int np = 0;
    char allow[128];
    cr_expect_eq(match(r, HTTP_GET, "/api/keys/", &rt, p, &np, allow), HD_MATCH_NOT_FOUND);
    cr_expect_eq(match(r, HTTP_GET, "/api/keys/a/b", &rt, p, &np, allow), HD_MATCH_NOT_FOUND);
    cr_expect_eq(match(r, HTTP_GET, "/healthz/", &rt, p, &np, allow), HD_MATCH_NOT_FOUND);
    cr_expect_eq(match(r, HTTP_GET, "/health", &rt, p, &np, allow), HD_MATCH_NOT_FOUND);
    hd__router_free(r);
}

Test(router, wrong_method_lists_allowed_methods)
{
    struct hd_router *r = make();
    const struct hd_route *rt = NULL;
    struct hd_param p[HD_MAX_PARAMS];
    int np = 0;
    char allow[128];
    cr_assert_eq(match(r, HTTP_POST, "/api/keys/k1", &rt, p, &np, allow), HD_MATCH_WRONG_METHOD);
    cr_expect(strstr(allow, "GET") != NULL, "allow=%s", allow);
    cr_expect(strstr(allow, "DELETE") != NULL, "allow=%s", allow);
    cr_expect(strstr(allow, "HEAD") != NULL, "allow=%s", allow);
    cr_expect(strstr(allow, "POST") == NULL, "allow=%s", allow);
    hd__router_free(r);
}

Test(router, head_is_served_by_get_route)
{
    struct hd_router *r = make();
    const struct hd_route *rt = NULL;
    struct hd_param p[HD_MAX_PARAMS];
    int np = 0;
    char allow[128];
    cr_assert_eq(match(r, HTTP_HEAD, "/healthz", &rt, p, &np, allow), HD_MATCH_FOUND);
    cr_expect_eq(rt->method, HTTP_GET);
    hd__router_free(r);
}

Test(router, malformed_patterns_are_refused)
{
    struct hd_router *r = hd__router_new();
    cr_expect_eq(hd__router_add(r, HTTP_GET, "no-slash", h_a, NULL), -EINVAL);
    cr_expect_eq(hd__router_add(r, HTTP_GET, "/a/{}", h_a, NULL), -EINVAL);
    cr_expect_eq(hd__router_add(r, HTTP_GET, "/a/{x", h_a, NULL), -EINVAL);
    cr_expect_eq(hd__router_add(r, HTTP_GET, "/a/{x}", h_a, NULL), 0);
    hd__router_free(r);
}
