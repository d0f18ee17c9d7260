/* `herald admin create`: bootstraps an organization and its first admin from
 * a terminal or a script, without a running server.
 *
 * The password comes from stdin (one line; echo off on a terminal), never
 * from argv, where other users of the machine could read it in the process
 * list. Everything runs on the calling thread: one hash, one store
 * connection opened through the backend, one op. */
#include "api/api.h"
#include "api/routes.h"

#include "store/backend.h"

#include "herald/config.h"
#include "herald/core.h"
#include "herald/password.h"
#include "herald/store.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define EXIT_CREATED  0
#define EXIT_STORE    1
#define EXIT_BAD_USE  2
#define NAME_MAX_LEN  128
#define WAIT_STORE_MS 10000

struct create_args {
    const char *email;
    const char *org;
    const char *username;
    const char *display_name;
};

static void usage(void)
{
    fprintf(stderr, "usage: herald admin create --email EMAIL --org NAME [--username NAME]\n"
                    "                           [--display-name NAME] --config FILE\n"
                    "       the password is read from stdin (one line)\n");
}

const char *hd_admin_cli_config_path(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--config") == 0)
            return argv[i + 1];
    }
    return NULL;
}

/* Parses argv[3..] of `herald admin create`. Returns false (after saying
 * why) on anything unknown or incomplete. */
static bool parse_args(int argc, char **argv, struct create_args *a)
{
    for (int i = 3; i < argc; i++) {
        const char *opt = argv[i];
        const char **dst = NULL;
        if (strcmp(opt, "--email") == 0)
            dst = &a->email;
        else if (strcmp(opt, "--org") == 0)
            dst = &a->org;
        else if (strcmp(opt, "--username") == 0)
            dst = &a->username;
        else if (strcmp(opt, "--display-name") == 0)
            dst = &a->display_name;
        else if (strcmp(opt, "--config") == 0)
            dst = NULL; /* loaded by the caller */
        else if (strncmp(opt, "--password", 10) == 0) {
            fprintf(stderr, "herald: the password is read from stdin, never from arguments\n");
            return false;
        } else {
            fprintf(stderr, "herald: unknown argument: %s\n", opt);
            return false;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "herald: %s needs a value\n", opt);
            return false;
        }
        i++;
        if (dst)
            *dst = argv[i];
    }
    if (!a->email || !a->org) {
        fprintf(stderr, "herald: --email and --org are required\n");
        return false;
    }
    return true;
}

static bool check_args(const struct create_args *a)
{
    size_t org_len = strlen(a->org);
    if (strlen(a->email) > 254 || !hd_api_email_valid(a->email)) {
        fprintf(stderr, "herald: --email: not an email address\n");
        return false;
    }
    if (org_len < 1 || org_len > NAME_MAX_LEN) {
        fprintf(stderr, "herald: --org: 1 to %d bytes\n", NAME_MAX_LEN);
        return false;
    }
    if (a->username && !hd__api_username_valid(a->username)) {
        fprintf(stderr, "herald: --username: 3 to 32 of A-Z a-z 0-9 _ . -\n");
        return false;
    }
    if (a->display_name && (!a->display_name[0] || strlen(a->display_name) > NAME_MAX_LEN)) {
        fprintf(stderr, "herald: --display-name: 1 to %d bytes\n", NAME_MAX_LEN);
        return false;
    }
    return true;
}

/* Reads one line from stdin into @pw (capacity @cap) without its line end;
 * NUL bytes are kept (the password check refuses them). A line longer than
 * @cap - 1 bytes reports @cap (too long for any password). Returns the
 * length, or -1 when stdin had nothing. */
static long read_line(char *pw, size_t cap)
{
    size_t len = 0;
    int ch = EOF;
    bool any = false;
    while ((ch = getchar()) != EOF) {
        any = true;
        if (ch == '\n')
            break;
        if (len < cap)
            pw[len] = (char)ch;
        len++;
    }
    if (!any)
        return -1;
    if (len > cap)
        len = cap;
    if (len > 0 && len < cap && pw[len - 1] == '\r')
        len--;
    return (long)len;
}

/* The password from stdin; on a terminal with a prompt and echo off. */
static long read_password(char *pw, size_t cap)
{
    struct termios saved, quiet;
    bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
    if (tty) {
        fprintf(stderr, "password: ");
        fflush(stderr);
        quiet = saved;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    long n = read_line(pw, cap);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
        fprintf(stderr, "\n");
    }
    return n;
}

/* Runs CREATE_ORG_AND_USER on one connection. Returns the exit code. */
static int create(const struct hd_config *cfg, const struct create_args *a, const char *hash)
{
    const char *target = NULL;
    const struct hd_store_backend *b =
        hd__store_backend_for(cfg->store.database_url, cfg->store.sqlite_path, &target);
    if (!b) {
        fprintf(stderr, "herald: store.database_url: unsupported\n");
        return EXIT_STORE;
    }
    char err[256] = "";
    struct hd_store_conn *c = b->open(target, cfg->store.query_timeout_ms, err, sizeof(err));
    if (!c) {
        fprintf(stderr, "herald: cannot connect to the store (%s): %s\n", b->name, err);
        return EXIT_STORE;
    }
    struct hd_store_op *op = hd_store_op_new(HD_OP_CREATE_ORG_AND_USER);
    op->org_name = hd_strdup(a->org);
    op->user.email = hd_strdup(a->email);
    op->user.username = a->username ? hd_strdup(a->username) : NULL;
    op->user.display_name = a->display_name ? hd_strdup(a->display_name) : NULL;
    op->user.password_hash = hd_strdup(hash);
    b->exec(c, op);
    int rc = EXIT_STORE;
    if (op->status == HD_STORE_OK) {
        printf("%s\n", op->user.id);
        fflush(stdout);
        rc = EXIT_CREATED;
    } else if (op->status == HD_STORE_CONFLICT) {
        const char *field = op->conflict_field ? op->conflict_field : "value";
        fprintf(stderr, "herald: %s_taken: an account with this %s already exists\n", field, field);
    } else {
        fprintf(stderr, "herald: the store failed: %s\n", hd_store_status_name(op->status));
    }
    hd_store_op_free(op);
    b->close(c);
    return rc;
}

int hd_admin_cli(int argc, char **argv, const struct hd_config *cfg)
{
    struct create_args a = {0};
    if (argc < 3 || strcmp(argv[2], "create") != 0) {
        usage();
        return EXIT_BAD_USE;
    }
    if (!parse_args(argc, argv, &a) || !check_args(&a)) {
        usage();
        return EXIT_BAD_USE;
    }
    char pw[HD_PASSWORD_MAX_BYTES + 2]; /* room for a "\r" before the "\n" */
    char hash[crypto_pwhash_STRBYTES] = "";
    int rc = EXIT_BAD_USE;
    long n = read_password(pw, sizeof(pw));
    if (n < 0) {
        fprintf(stderr, "herald: no password on stdin (one line)\n");
        goto out;
    }
    enum hd_password_problem p = hd_password_check(pw, (size_t)n, a.email);
    if (p != HD_PASSWORD_OK) {
        fprintf(stderr, "herald: password: %s\n", hd_password_problem_message(p));
        goto out;
    }
    rc = EXIT_STORE;
    enum hd_schema_mode mode = cfg->store.auto_migrate ? HD_SCHEMA_APPLY : HD_SCHEMA_CHECK;
    if (hd_store_schema(cfg, mode, WAIT_STORE_MS) != HD_SCHEMA_OK)
        goto out; /* logged, naming `herald migrate` when outdated */
    struct hd_password_params params;
    hd_password_params_from_config(cfg, &params);
    if (hd_password_hash(pw, (size_t)n, &params, hash) != 0) {
        fprintf(stderr, "herald: could not hash the password (out of memory)\n");
        goto out;
    }
    rc = create(cfg, &a, hash);
out:
    sodium_memzero(pw, sizeof(pw));
    sodium_memzero(hash, sizeof(hash));
    return rc;
}
