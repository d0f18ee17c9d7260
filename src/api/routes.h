/* Private to herald: the account, admin, API-key and notification routes,
 * and the `herald admin` command. Route adders run on the main thread
 * before the server starts; @api (borrowed) must outlive the server. Each
 * returns 0, or -EINVAL when a route could not be added. */
#ifndef HERALD_API_ROUTES_H
#define HERALD_API_ROUTES_H

#include <stdbool.h>

struct hd_api;
struct hd_config;
struct hd_exchange;
struct hd_server;
struct hd_user;

/* Prefix of every publisher API key; the key is this plus 32 random bytes in
 * base64url without padding (43 characters). The store keeps the lowercase
 * hex SHA-256 of the whole key, "hk_" included (hd_token_hash_hex), and
 * HD_API_KEY_PREFIX_LEN characters after "hk_" for display. */
#define HD_API_KEY_PREFIX     "hk_"
#define HD_API_KEY_LEN        46
#define HD_API_KEY_PREFIX_LEN 8

/** True when @u (NUL-terminated) is a valid username: 3 to 32 of A-Z a-z
 * 0-9 _ . - (the rule of register). Any thread. */
bool hd__api_username_valid(const char *u);

/** Answers @status with the public view of @u (hd_api_user_json). I/O thread. */
void hd__api_respond_user(struct hd_exchange *x, int status, const struct hd_user *u);

struct hd_api_caller;
/** Authenticates @x (hd_api_authenticate) and requires the access token's
 * role to be admin: answers 401 or 403 forbidden and returns false
 * otherwise. I/O thread. */
bool hd__api_require_admin(struct hd_exchange *x, struct hd_api_caller *who);

/** PATCH /api/me and POST /api/me/password. */
int hd_api_account_routes(struct hd_api *api, struct hd_server *s);

/** POST /api/admin/users, POST /api/admin/users/{id}/disable and /enable
 * (admins of the user's organization only). */
int hd_api_admin_routes(struct hd_api *api, struct hd_server *s);

/** POST /api/keys, GET /api/keys, DELETE /api/keys/{id} (admins only,
 * scoped to the caller's organization). */
int hd_api_keys_routes(struct hd_api *api, struct hd_server *s);

/**
 * The notification routes: POST /api/notifications (publish: an admin's
 * access token, or an API key with the "publish" scope as `Authorization:
 * Bearer hk_…` or `X-API-Key`; only inside the caller's organization; 201
 * once the store committed it, then fanned out by api->broadcaster), GET
 * /api/notifications (the caller's own and organization-wide ones, newest
 * first, ?limit=&before=&unread=), POST /api/notifications/{id}/read and
 * POST /api/notifications/read-all (204). api->broadcaster may be set after
 * this call but before the server starts; a publish without one answers
 * 503.
 */
int hd_api_notification_routes(struct hd_api *api, struct hd_server *s);

/**
 * `herald admin create --email E --org NAME [--username U]
 * [--display-name D] --config FILE`: creates an organization and its first
 * admin. @argv is main's (argv[1] == "admin"); --config is accepted and
 * ignored (the caller loaded @cfg from it). The password is one line on
 * stdin (echo turned off on a terminal), never an argument. Checks the
 * schema (applies it when store.auto_migrate), opens one store connection
 * on the calling thread, prints the new user id on stdout.
 *
 * Returns the exit code: 0 created; 1 the store failed or refused it (the
 * email or username is taken: said on stderr as email_taken /
 * username_taken); 2 bad usage or input. Main thread; call sodium_init()
 * first. Hashes in-process (this is a command, not an I/O thread).
 */
int hd_admin_cli(int argc, char **argv, const struct hd_config *cfg);

/** The value after --config in @argv, or NULL: lets main load the config
 * before calling hd_admin_cli. */
const char *hd_admin_cli_config_path(int argc, char **argv);

#endif
