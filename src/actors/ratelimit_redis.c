/* The rate-limit actor's Redis client: connection life cycle, the limiter
 * script, pipelined checks, deadlines. See ratelimit_redis.h. */
#include "actors/ratelimit_redis.h"

#include "herald/buf.h"
#include "herald/core.h"
#include "herald/ratelimit.h"

#include <errno.h>
#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEADLINE_US    250000 /* oldest pending reply older than this: Redis is down */
#define TICK_MS        50     /* how often the deadline is looked at */
#define IDLE_PING_US   1000000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define MAX_INFLIGHT   10000 /* pending checks beyond this are answered by the fallback */
#define KEY_PREFIX     "herald:rl:"
#define KEY_BYTES      (sizeof(KEY_PREFIX) + HD_RL_POLICY_MAX + 1 + HD_RL_KEY_MAX)
#define MAX_ARGS       (4 + 5 * HD_RL_MAX_ITEMS)

/* The limiter: gcra() and peek() of gcra.c / ratelimit.c, item by item, in
 * integer microseconds on Redis's clock. KEYS[i] is item i's key; ARGV[1]
 * the cost; then for item i, from o = 2 + 4 * (i - 1): limit, window_s,
 * burst, peek (0|1). Returns per item {allowed, remaining, reset_us,
 * retry_after_us}.
 *
 * Lua numbers are doubles: every quantity here is an integer below 2^53 µs
 * (285 years) for any rule gcra.h allows short of a year-long window with
 * a 100,000 burst, so the arithmetic is exact; idiv corrects the one
 * rounding a floating division could make. A TAT (a 16-digit µs timestamp)
 * is stored with %.0f: Redis would print a number with %.14g and lose it.
 * Each key expires when its TAT passes (an expired TAT equals no key). */
static const char SCRIPT[] =
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    "local function idiv(a, b)\n"
    "  local q = math.floor(a / b)\n"
    "  if q * b > a then q = q - 1 elseif (q + 1) * b <= a then q = q + 1 end\n"
    "  return q\n"
    "end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local cost = tonumber(ARGV[1])\n"
    "local out = {}\n"
    "for i = 1, #KEYS do\n"
    "  local o = 2 + (i - 1) * 4\n"
    "  local limit, window = tonumber(ARGV[o]), tonumber(ARGV[o + 1])\n"
    "  local burst, peek = tonumber(ARGV[o + 2]), ARGV[o + 3] == '1'\n"
    "  local T = idiv(window * 1000000 + idiv(limit, 2), limit)\n"
    "  if T < 1 then T = 1 end\n"
    "  local tol = T * (burst + 1)\n"
    "  local tat = tonumber(redis.call('GET', KEYS[i]))\n"
    "  local base = now\n"
    "  if tat and tat > now then base = tat end\n"
    "  local c = cost\n"
    "  if peek then c = 0 end\n"
    "  local cc = c\n"
    "  if cc > burst + 1 then cc = burst + 2 end\n"
    "  local nxt = base + T * cc\n"
    "  local allowed = nxt - now <= tol\n"
    "  local ahead = base - now\n"
    "  if allowed then ahead = nxt - now end\n"
    "  local room = tol - ahead\n"
    "  local remaining = 0\n"
    "  if room > 0 then remaining = idiv(room, T) end\n"
    "  local retry = 0\n"
    "  if peek then\n"
    "    allowed = remaining >= 1\n"
    "    if not allowed then\n"
    "      retry = math.ceil(ahead - window * 1000000 / limit * burst)\n"
    "      if retry < 1 then retry = 1 end\n"
    "    end\n"
    "  elseif not allowed then\n"
    "    retry = base - now + T * c - tol\n"
    "  elseif cc > 0 then\n"
    "    redis.call('SET', KEYS[i], string.format('%.0f', nxt), 'PX',\n"
    "               string.format('%.0f', math.ceil((nxt - now) / 1000)))\n"
    "  end\n"
    "  out[i] = {allowed and 1 or 0, remaining, ahead, retry}\n"
    "end\n"
    "return out\n";

/* Round-trip histogram bounds, microseconds (rendered in seconds). */
static const uint64_t BUCKETS_US[] = {500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000};
#define N_BUCKETS HD_ARRAY_LEN(BUCKETS_US)

enum state { DOWN, CONNECTING, UP };
enum req_kind { REQ_AUTH, REQ_SELECT, REQ_LOAD, REQ_PING, REQ_CHECK };

/* One command waiting for its reply. hiredis answers in order, so these form
 * a FIFO that mirrors hiredis's own callback list. */
struct req {
    struct req *next;
    struct hd__rl_redis *r;
    enum req_kind kind;
    bool eval; /* a check sent with EVAL (the script text) */
    uint64_t sent_us;
    struct hd_rl_check *check;
};

struct hd__rl_redis {
    struct hd__rl_redis_url url; /* password wiped on free */
    char target[300];            /* host:port/db */
    hd__rl_redis_reply_fn reply_fn;
    hd__rl_redis_state_fn state_fn;
    void *ctx;
    /* actor thread only: */
    struct event_base *base;
    redisAsyncContext *ac; /* NULL while down */
    enum state state;
    bool outage; /* down has been reported; cleared when up again */
    bool stopping;
    int backoff_ms;
    struct event *tick, *reconnect;
    struct req *head, *tail;
    int inflight; /* REQ_CHECK in the FIFO */
    uint64_t last_send_us;
    char sha[41];
    /* any thread (atomic): */
    bool up;
    uint64_t errors;
    uint64_t buckets[N_BUCKETS + 1]; /* per bucket, not cumulative; last = +Inf */
    uint64_t sum_us;
};

/* ---- URL ------------------------------------------------------------------ */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes [s, s + n) into @out (cap bytes with the NUL). */
static bool pct_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= n)
                return false;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return false;
            c = hi * 16 + lo;
            i += 2;
        }
        if (o + 1 >= cap)
            return false;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return true;
}

/* Reads a decimal in [lo, hi] from [s, s + n). */
static bool parse_int(const char *s, size_t n, long lo, long hi, int *out)
{
    long v = 0;
    if (n == 0 || n > 10)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi)
        return false;
    *out = (int)v;
    return true;
}

static int parse_userinfo(const char *s, size_t n, struct hd__rl_redis_url *out, const char **why)
{
    const char *colon = memchr(s, ':', n);
    if (!colon) {
        *why = "a user needs a password: redis://[user]:password@host";
        return -EINVAL;
    }
    size_t ulen = (size_t)(colon - s);
    if (!pct_decode(s, ulen, out->user, sizeof(out->user)) ||
        !pct_decode(colon + 1, n - ulen - 1, out->password, sizeof(out->password))) {
        *why = "bad percent-encoding or too long a user or password";
        return -EINVAL;
    }
    return 0;
}

static int parse_hostport(const char *s, size_t n, struct hd__rl_redis_url *out, const char **why)
{
    const char *host = s, *port = NULL;
    size_t hlen = n;
    if (n > 0 && s[0] == '[') { /* [IPv6]:port */
        const char *close = memchr(s, ']', n);
        if (!close) {
            *why = "unterminated [IPv6] host";
            return -EINVAL;
        }
        host = s + 1;
        hlen = (size_t)(close - host);
        if (close + 1 < s + n) {
            if (close[1] != ':') {
                *why = "unexpected text after the [IPv6] host";
                return -EINVAL;
            }
            port = close + 2;
        }
    } else {
        const char *colon = memchr(s, ':', n);
        if (colon) {
            hlen = (size_t)(colon - s);
            port = colon + 1;
        }
    }
    if (hlen == 0 || hlen >= sizeof(out->host)) {
        *why = "missing or too long a host";
        return -EINVAL;
    }
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    out->port = 6379;
    if (port && !parse_int(port, (size_t)(s + n - port), 1, 65535, &out->port)) {
        *why = "the port must be 1..65535";
        return -EINVAL;
    }
    return 0;
}

int hd__rl_redis_url_parse(const char *url, struct hd__rl_redis_url *out, const char **why)
{
    const char *dummy;
    why = why ? why : &dummy;
    memset(out, 0, sizeof(*out));
    if (strncasecmp(url, "redis://", 8) != 0) {
        *why = "must start with redis:// (rediss:// and unix sockets are not supported)";
        return -EINVAL;
    }
    const char *p = url + 8;
    if (strpbrk(p, "?#")) {
        *why = "query parameters are not supported: put the db in the path";
        return -EINVAL;
    }
    const char *slash = strchr(p, '/');
    const char *end = slash ? slash : p + strlen(p);
    const char *at = NULL; /* the last '@' of the authority: passwords may hold '@' encoded */
    for (const char *q = p; q < end; q++)
        at = *q == '@' ? q : at;
    if (at && parse_userinfo(p, (size_t)(at - p), out, why) < 0)
        return -EINVAL;
    const char *hp = at ? at + 1 : p;
    if (parse_hostport(hp, (size_t)(end - hp), out, why) < 0)
        return -EINVAL;
    if (slash && slash[1] && !parse_int(slash + 1, strlen(slash + 1), 0, 1000000, &out->db)) {
        *why = "the path must be a database number, as in /0";
        return -EINVAL;
    }
    return 0;
}

/* ---- metrics (any thread reads) -------------------------------------------- */

static void count_error(struct hd__rl_redis *r)
{
    __atomic_add_fetch(&r->errors, 1, __ATOMIC_RELAXED);
}

static void observe(struct hd__rl_redis *r, uint64_t us)
{
    size_t i = 0;
    while (i < N_BUCKETS && us > BUCKETS_US[i])
        i++;
    __atomic_add_fetch(&r->buckets[i], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&r->sum_us, us, __ATOMIC_RELAXED);
}

void hd__rl_redis_collect(struct hd__rl_redis *r, struct hd_buf *out)
{
    hd_buf_appendf(out,
                   "# HELP herald_ratelimit_redis_up 1 while rate-limit checks are decided by "
                   "Redis, 0 while the fallback answers.\n"
                   "# TYPE herald_ratelimit_redis_up gauge\nherald_ratelimit_redis_up %d\n"
                   "# HELP herald_ratelimit_redis_errors_total Redis failures of the rate "
                   "limiter: failed connects, lost connections, error replies, missed "
                   "deadlines.\n# TYPE herald_ratelimit_redis_errors_total counter\n"
                   "herald_ratelimit_redis_errors_total %llu\n",
                   hd__rl_redis_up(r) ? 1 : 0,
                   (unsigned long long)__atomic_load_n(&r->errors, __ATOMIC_RELAXED));
    hd_buf_puts(out, "# HELP herald_ratelimit_redis_seconds Round trip of one rate-limit "
                     "script call.\n# TYPE herald_ratelimit_redis_seconds histogram\n");
    uint64_t cum = 0;
    for (size_t i = 0; i <= N_BUCKETS; i++) {
        cum += __atomic_load_n(&r->buckets[i], __ATOMIC_RELAXED);
        if (i < N_BUCKETS)
            hd_buf_appendf(out, "herald_ratelimit_redis_seconds_bucket{le=\"%g\"} %llu\n",
                           (double)BUCKETS_US[i] / 1e6, (unsigned long long)cum);
        else
            hd_buf_appendf(out, "herald_ratelimit_redis_seconds_bucket{le=\"+Inf\"} %llu\n",
                           (unsigned long long)cum);
    }
    hd_buf_appendf(out,
                   "herald_ratelimit_redis_seconds_sum %.6f\n"
                   "herald_ratelimit_redis_seconds_count %llu\n",
                   (double)__atomic_load_n(&r->sum_us, __ATOMIC_RELAXED) / 1e6,
                   (unsigned long long)cum);
}

bool hd__rl_redis_up(const struct hd__rl_redis *r)
{
    return __atomic_load_n(&r->up, __ATOMIC_RELAXED);
}

const char *hd__rl_redis_target(const struct hd__rl_redis *r)
{
    return r->target;
}

/* ---- pending FIFO ----------------------------------------------------------- */

static void push(struct hd__rl_redis *r, struct req *q)
{
    q->next = NULL;
    if (r->tail)
        r->tail->next = q;
    else
        r->head = q;
    r->tail = q;
    r->inflight += q->kind == REQ_CHECK;
    r->last_send_us = q->sent_us;
}

/* hiredis runs callbacks in the order it sent the commands: @q is the head. */
static void pop(struct hd__rl_redis *r, struct req *q)
{
    HD_ASSERT(r->head == q);
    r->head = q->next;
    if (!r->head)
        r->tail = NULL;
    r->inflight -= q->kind == REQ_CHECK;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata);

/* Sends @argv with @q as its callback data; takes ownership of @q. */
static bool send_req(struct hd__rl_redis *r, struct req *q, int argc, const char **argv,
                     const size_t *lens)
{
    q->r = r;
    q->sent_us = hd_now_us();
    if (!r->ac || redisAsyncCommandArgv(r->ac, on_reply, q, argc, argv, lens) != REDIS_OK) {
        free(q);
        return false;
    }
    push(r, q);
    return true;
}

static bool send_simple(struct hd__rl_redis *r, enum req_kind kind, int argc, const char **argv)
{
    size_t lens[4];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    struct req *q = hd_calloc(1, sizeof(*q));
    q->kind = kind;
    return send_req(r, q, argc, argv, lens);
}

/* ---- connection life cycle (actor thread) ---------------------------------- */

static void set_state(struct hd__rl_redis *r, enum state st)
{
    r->state = st;
    __atomic_store_n(&r->up, st == UP, __ATOMIC_RELAXED);
}

static void schedule_reconnect(struct hd__rl_redis *r)
{
    if (r->stopping || evtimer_pending(r->reconnect, NULL))
        return;
    struct timeval tv = {r->backoff_ms / 1000, (r->backoff_ms % 1000) * 1000};
    evtimer_add(r->reconnect, &tv);
    r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
}

/* The connection is gone or unusable (r->ac already NULL): report the first
 * failure of an outage, count every one, retry later. */
static void went_down(struct hd__rl_redis *r, const char *reason)
{
    if (r->stopping)
        return;
    count_error(r);
    set_state(r, DOWN);
    if (!r->outage) {
        r->outage = true;
        r->state_fn(r->ctx, false, reason);
    }
    schedule_reconnect(r);
}

/* Closes the connection on our side. Pending callbacks run without a reply,
 * now or (inside a hiredis callback) as soon as that callback returns. */
static void drop(struct hd__rl_redis *r, const char *reason)
{
    redisAsyncContext *ac = r->ac;
    if (!ac)
        return;
    r->ac = NULL;
    went_down(r, reason);
    redisAsyncFree(ac);
}

/* hiredis frees the context after these two return: forget it. */
static void on_connect(const redisAsyncContext *ac, int status)
{
    struct hd__rl_redis *r = ac->data;
    if (status == REDIS_OK || r->ac != ac)
        return;
    char reason[200];
    snprintf(reason, sizeof(reason), "connect: %s", ac->errstr ? ac->errstr : "failed");
    r->ac = NULL;
    went_down(r, reason);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct hd__rl_redis *r = ac->data;
    if (r->ac != ac)
        return; /* we closed it: already handled */
    char reason[200];
    snprintf(reason, sizeof(reason), "connection lost: %s",
             ac->err && ac->errstr ? ac->errstr : "closed by the server");
    r->ac = NULL;
    went_down(r, reason);
}

/* Pipelines the hand-shake: AUTH, SELECT, SCRIPT LOAD. */
static bool handshake(struct hd__rl_redis *r)
{
    bool ok = true;
    if (r->url.password[0] && r->url.user[0])
        ok = send_simple(r, REQ_AUTH, 3, (const char *[]){"AUTH", r->url.user, r->url.password});
    else if (r->url.password[0])
        ok = send_simple(r, REQ_AUTH, 2, (const char *[]){"AUTH", r->url.password});
    if (ok && r->url.db != 0) {
        char db[16];
        snprintf(db, sizeof(db), "%d", r->url.db);
        ok = send_simple(r, REQ_SELECT, 2, (const char *[]){"SELECT", db});
    }
    return ok && send_simple(r, REQ_LOAD, 3, (const char *[]){"SCRIPT", "LOAD", SCRIPT});
}

static void connect_now(struct hd__rl_redis *r)
{
    HD_ASSERT(!r->ac && !r->head);
    set_state(r, CONNECTING);
    redisAsyncContext *ac = redisAsyncConnect(r->url.host, r->url.port);
    if (!ac || ac->err) {
        char reason[200];
        snprintf(reason, sizeof(reason), "connect: %s", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac); /* nothing queued, not connected: no callback runs */
        went_down(r, reason);
        return;
    }
    ac->data = r;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (redisLibeventAttach(ac, r->base) != REDIS_OK) {
        redisAsyncFree(ac);
        went_down(r, "connect: cannot attach to the event loop");
        return;
    }
    r->ac = ac;
    if (!handshake(r))
        drop(r, "connect: cannot queue the hand-shake");
}

static void on_reconnect_timer(evutil_socket_t fd, short what, void *arg)
{
    connect_now(arg);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct hd__rl_redis *r = arg;
    uint64_t now = hd_now_us();
    if (r->head && now - r->head->sent_us > DEADLINE_US) {
        drop(r, r->state == UP ? "no reply within 250 ms" : "connect: no answer within 250 ms");
        return;
    }
    if (r->state == UP && !r->head && now - r->last_send_us > IDLE_PING_US)
        send_simple(r, REQ_PING, 1, (const char *[]){"PING"});
}

/* ---- replies (actor thread) ------------------------------------------------ */

static void on_handshake_reply(struct hd__rl_redis *r, struct req *q, redisReply *rep)
{
    static const char *const what[] = {[REQ_AUTH] = "AUTH",
                                       [REQ_SELECT] = "SELECT",
                                       [REQ_LOAD] = "SCRIPT LOAD",
                                       [REQ_PING] = "PING"};
    char reason[200];
    if (!rep)
        return; /* the connection is going: already handled */
    if (rep->type == REDIS_REPLY_ERROR) {
        snprintf(reason, sizeof(reason), "%s: %.150s", what[q->kind], rep->str);
        drop(r, reason);
        return;
    }
    if (q->kind != REQ_LOAD)
        return;
    if (rep->type != REDIS_REPLY_STRING || rep->len != 40) {
        drop(r, "SCRIPT LOAD: unexpected reply");
        return;
    }
    memcpy(r->sha, rep->str, 40);
    r->sha[40] = '\0';
    r->backoff_ms = BACKOFF_MIN_MS;
    set_state(r, UP);
    r->outage = false;
    r->state_fn(r->ctx, true, NULL);
}

static bool is_int(const redisReply *e)
{
    return e->type == REDIS_REPLY_INTEGER;
}

/* Fills the check's verdicts from the script's reply; false if malformed. */
static bool fill_verdicts(struct hd_rl_check *c, const redisReply *rep)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != (size_t)c->n)
        return false;
    for (int i = 0; i < c->n; i++) {
        const redisReply *e = rep->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 4 || !is_int(e->element[0]) ||
            !is_int(e->element[1]) || !is_int(e->element[2]) || !is_int(e->element[3]))
            return false;
    }
    for (int i = 0; i < c->n; i++) {
        redisReply **v = rep->element[i]->element;
        struct hd_rl_item *it = &c->items[i];
        it->verdict = (struct hd_gcra_verdict){
            .allowed = v[0]->integer != 0,
            .limit = it->rule.limit,
            .remaining = (int)v[1]->integer,
            .reset_s = (double)v[2]->integer / 1e6,
            .retry_after_s = (double)v[3]->integer / 1e6,
        };
    }
    return true;
}

static bool send_check(struct hd__rl_redis *r, struct hd_rl_check *c, bool eval);

static void on_check_reply(struct hd__rl_redis *r, struct req *q, redisReply *rep)
{
    struct hd_rl_check *c = q->check;
    if (!rep) {
        r->reply_fn(r->ctx, c, false);
        return;
    }
    observe(r, hd_now_us() - q->sent_us);
    if (rep->type == REDIS_REPLY_ERROR && !q->eval && strncmp(rep->str, "NOSCRIPT", 8) == 0) {
        if (!send_check(r, c, true))
            r->reply_fn(r->ctx, c, false);
        return;
    }
    if (rep->type == REDIS_REPLY_ERROR || !fill_verdicts(c, rep)) {
        char reason[200];
        snprintf(reason, sizeof(reason), "script: %.150s",
                 rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
        r->reply_fn(r->ctx, c, false);
        drop(r, reason);
        return;
    }
    r->reply_fn(r->ctx, c, true);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct req *q = privdata;
    struct hd__rl_redis *r = q->r;
    pop(r, q);
    if (q->kind == REQ_CHECK)
        on_check_reply(r, q, reply);
    else
        on_handshake_reply(r, q, reply);
    free(q);
}

/* ---- checks (actor thread) ------------------------------------------------- */

/* The argument vector of one script call, built on the stack. */
struct call {
    int argc;
    const char *argv[MAX_ARGS];
    size_t lens[MAX_ARGS];
    char keys[HD_RL_MAX_ITEMS][KEY_BYTES];
    char nums[1 + 4 * HD_RL_MAX_ITEMS][16];
    int n_nums;
};

static void arg(struct call *k, const char *s, size_t len)
{
    HD_ASSERT(k->argc < MAX_ARGS);
    k->argv[k->argc] = s;
    k->lens[k->argc++] = len;
}

static void arg_int(struct call *k, int v)
{
    char *s = k->nums[k->n_nums++];
    arg(k, s, (size_t)snprintf(s, sizeof(k->nums[0]), "%d", v));
}

/* "herald:rl:" policy ":" key: the same key space per policy as the local table. */
static void arg_key(struct call *k, int i, const struct hd_rl_item *it)
{
    char *s = k->keys[i];
    size_t plen = strnlen(it->policy, sizeof(it->policy));
    size_t klen = it->key_len < HD_RL_KEY_MAX ? it->key_len : HD_RL_KEY_MAX;
    size_t n = sizeof(KEY_PREFIX) - 1;
    memcpy(s, KEY_PREFIX, n);
    memcpy(s + n, it->policy, plen);
    s[n + plen] = ':';
    memcpy(s + n + plen + 1, it->key, klen);
    arg(k, s, n + plen + 1 + klen);
}

static bool send_check(struct hd__rl_redis *r, struct hd_rl_check *c, bool eval)
{
    struct call k = {0};
    char numkeys[8];
    arg(&k, eval ? "EVAL" : "EVALSHA", eval ? 4 : 7);
    arg(&k, eval ? SCRIPT : r->sha, eval ? sizeof(SCRIPT) - 1 : 40);
    arg(&k, numkeys, (size_t)snprintf(numkeys, sizeof(numkeys), "%d", c->n));
    for (int i = 0; i < c->n; i++)
        arg_key(&k, i, &c->items[i]);
    arg_int(&k, c->cost);
    for (int i = 0; i < c->n; i++) {
        const struct hd_rl_item *it = &c->items[i];
        HD_ASSERT(it->rule.limit > 0 && it->rule.window_s > 0 && it->rule.burst >= 0);
        arg_int(&k, it->rule.limit);
        arg_int(&k, it->rule.window_s);
        arg_int(&k, it->rule.burst);
        arg(&k, it->peek ? "1" : "0", 1);
    }
    struct req *q = hd_calloc(1, sizeof(*q));
    q->kind = REQ_CHECK;
    q->eval = eval;
    q->check = c;
    return send_req(r, q, k.argc, k.argv, k.lens);
}

bool hd__rl_redis_submit(struct hd__rl_redis *r, struct hd_rl_check *c)
{
    HD_ASSERT(c->n > 0 && c->n <= HD_RL_MAX_ITEMS && c->cost >= 0);
    bool usable = r->state == UP || (r->state == CONNECTING && !r->outage);
    if (!usable || r->inflight >= MAX_INFLIGHT)
        return false;
    /* Before the script is loaded (first connect) the check carries it. */
    return send_check(r, c, r->state != UP);
}

/* ---- life cycle -------------------------------------------------------------- */

static void format_target(struct hd__rl_redis *r)
{
    bool v6 = strchr(r->url.host, ':') != NULL;
    snprintf(r->target, sizeof(r->target), "%s%s%s:%d/%d", v6 ? "[" : "", r->url.host,
             v6 ? "]" : "", r->url.port, r->url.db);
}

struct hd__rl_redis *hd__rl_redis_new(const struct hd__rl_redis_url *url,
                                      hd__rl_redis_reply_fn reply, hd__rl_redis_state_fn state,
                                      void *ctx)
{
    struct hd__rl_redis *r = hd_calloc(1, sizeof(*r));
    r->url = *url;
    r->reply_fn = reply;
    r->state_fn = state;
    r->ctx = ctx;
    r->backoff_ms = BACKOFF_MIN_MS;
    r->state = DOWN;
    format_target(r);
    return r;
}

void hd__rl_redis_start(struct hd__rl_redis *r, struct event_base *base)
{
    r->base = base;
    r->tick = event_new(base, -1, EV_PERSIST, on_tick, r);
    r->reconnect = evtimer_new(base, on_reconnect_timer, r);
    HD_ASSERT(r->tick && r->reconnect);
    struct timeval every = {0, TICK_MS * 1000};
    event_add(r->tick, &every);
    connect_now(r);
}

void hd__rl_redis_stop(struct hd__rl_redis *r)
{
    r->stopping = true;
    redisAsyncContext *ac = r->ac;
    r->ac = NULL;
    if (ac)
        redisAsyncFree(ac); /* pending checks: reply_fn(ok = false), now */
    HD_ASSERT(!r->head);
    set_state(r, DOWN);
    if (r->tick)
        event_free(r->tick);
    if (r->reconnect)
        event_free(r->reconnect);
    r->tick = r->reconnect = NULL;
}

void hd__rl_redis_free(struct hd__rl_redis *r)
{
    if (!r)
        return;
    explicit_bzero(r->url.password, sizeof(r->url.password));
    free(r);
}
