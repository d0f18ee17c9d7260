/* The RCU hash map of live sessions (liburcu rculfhash), plus the actor's
 * private per-user index used for session.max_per_user. */
#include "actors/session_map.h"

#include "core/tsan.h"
#include "herald/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The per-user index: a plain chained hash, touched by the actor only. */
#define USER_BUCKETS 4096

struct user_entry {
    char user_id[HD_ID_LEN + 1];
    int count;
    struct sess_node *oldest, *newest;
    struct user_entry *next;
};

struct sess_map {
    struct cds_lfht *ht;
    struct cds_lfht *profiles;
    long count; /* atomic */
    struct user_entry *users[USER_BUCKETS];
};

static int match_id(struct cds_lfht_node *node, const void *key)
{
    const struct sess_node *n = caa_container_of(node, struct sess_node, node);
    return strcmp(n->info.id, key) == 0;
}

struct sess_map *sess_map_new(void)
{
    struct sess_map *m = hd_calloc(1, sizeof(*m));
    m->ht = cds_lfht_new(1024, 1024, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, NULL);
    m->profiles = cds_lfht_new(1024, 1024, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, NULL);
    if (!m->ht || !m->profiles) {
        if (m->ht)
            cds_lfht_destroy(m->ht, NULL);
        if (m->profiles)
            cds_lfht_destroy(m->profiles, NULL);
        free(m);
        return NULL;
    }
    return m;
}

void sess_map_free(struct sess_map *m)
{
    if (!m)
        return;
    HD_ASSERT(cds_lfht_destroy(m->ht, NULL) == 0);
    HD_ASSERT(cds_lfht_destroy(m->profiles, NULL) == 0);
    for (int i = 0; i < USER_BUCKETS; i++) {
        while (m->users[i]) {
            struct user_entry *u = m->users[i];
            m->users[i] = u->next;
            free(u);
        }
    }
    free(m);
}

static struct user_entry **user_slot(struct sess_map *m, const char *user_id)
{
    struct user_entry **p = &m->users[hd_hash_str(user_id) % USER_BUCKETS];
    while (*p && strcmp((*p)->user_id, user_id) != 0)
        p = &(*p)->next;
    return p;
}

static void user_link(struct sess_map *m, struct sess_node *n)
{
    struct user_entry **p = user_slot(m, n->info.user_id);
    if (!*p) {
        *p = hd_calloc(1, sizeof(**p));
        memcpy((*p)->user_id, n->info.user_id, sizeof((*p)->user_id));
    }
    struct user_entry *u = *p;
    n->user_prev = u->newest;
    n->user_next = NULL;
    if (u->newest)
        u->newest->user_next = n;
    else
        u->oldest = n;
    u->newest = n;
    u->count++;
}

static void user_unlink(struct sess_map *m, struct sess_node *n)
{
    struct user_entry **p = user_slot(m, n->info.user_id);
    struct user_entry *u = *p;
    HD_ASSERT(u);
    if (n->user_prev)
        n->user_prev->user_next = n->user_next;
    else
        u->oldest = n->user_next;
    if (n->user_next)
        n->user_next->user_prev = n->user_prev;
    else
        u->newest = n->user_prev;
    if (--u->count == 0) { /* the user's last session: its profile goes too */
        prof_unpublish(m, u->user_id);
        *p = u->next;
        free(u);
    }
}

void sess_map_publish(struct sess_map *m, struct sess_node *n)
{
    cds_lfht_node_init(&n->node);
    HD_TSAN_RELEASE(n); /* rculfhash publishes with atomics TSan cannot see */
    rcu_read_lock();
    struct cds_lfht_node *old =
        cds_lfht_add_replace(m->ht, hd_hash_str(n->info.id), match_id, n->info.id, &n->node);
    rcu_read_unlock();
    HD_ASSERT(old == NULL); /* ids are random UUIDs: a duplicate is a bug */
    __atomic_add_fetch(&m->count, 1, __ATOMIC_RELAXED);
    user_link(m, n);
}

static void free_node(struct rcu_head *head)
{
    free(caa_container_of(head, struct sess_node, rcu));
}

void sess_map_unpublish(struct sess_map *m, struct sess_node *n)
{
    __atomic_store_n(&n->revoked, true, __ATOMIC_RELEASE);
    rcu_read_lock();
    int rc = cds_lfht_del(m->ht, &n->node);
    rcu_read_unlock();
    HD_ASSERT(rc == 0);
    __atomic_sub_fetch(&m->count, 1, __ATOMIC_RELAXED);
    user_unlink(m, n);
    call_rcu(&n->rcu, free_node);
}

struct sess_node *sess_map_find(struct sess_map *m, const char *sid)
{
    struct cds_lfht_iter iter;
    cds_lfht_lookup(m->ht, hd_hash_str(sid), match_id, sid, &iter);
    struct cds_lfht_node *node = cds_lfht_iter_get_node(&iter);
    if (!node)
        return NULL;
    struct sess_node *n = caa_container_of(node, struct sess_node, node);
    HD_TSAN_ACQUIRE(n);
    return n;
}

void sess_map_each(struct sess_map *m, void (*fn)(void *arg, struct sess_node *n), void *arg)
{
    struct cds_lfht_iter iter;
    struct sess_node *n;
    rcu_read_lock();
    cds_lfht_for_each_entry(m->ht, &iter, n, node)
    {
        fn(arg, n);
    }
    rcu_read_unlock();
}

static int match_user(struct cds_lfht_node *node, const void *key)
{
    const struct prof_node *n = caa_container_of(node, struct prof_node, node);
    return strcmp(n->user_id, key) == 0;
}

static void free_profile(struct rcu_head *head)
{
    free(caa_container_of(head, struct prof_node, rcu));
}

void prof_publish(struct sess_map *m, const char *user_id, const char *json, int64_t version)
{
    rcu_read_lock();
    struct prof_node *cur = prof_find(m, user_id);
    bool newer_published = cur && cur->version > version;
    rcu_read_unlock();
    if (newer_published) /* only the actor publishes: no race with this check */
        return;
    size_t len = strlen(json);
    struct prof_node *n = hd_malloc(sizeof(*n) + len + 1);
    cds_lfht_node_init(&n->node);
    snprintf(n->user_id, sizeof(n->user_id), "%s", user_id);
    n->len = len;
    n->version = version;
    memcpy(n->json, json, len + 1);
    HD_TSAN_RELEASE(n);
    rcu_read_lock();
    struct cds_lfht_node *old =
        cds_lfht_add_replace(m->profiles, hd_hash_str(user_id), match_user, user_id, &n->node);
    rcu_read_unlock();
    if (old)
        call_rcu(&caa_container_of(old, struct prof_node, node)->rcu, free_profile);
}

struct prof_node *prof_find(struct sess_map *m, const char *user_id)
{
    struct cds_lfht_iter iter;
    cds_lfht_lookup(m->profiles, hd_hash_str(user_id), match_user, user_id, &iter);
    struct cds_lfht_node *node = cds_lfht_iter_get_node(&iter);
    if (!node)
        return NULL;
    struct prof_node *n = caa_container_of(node, struct prof_node, node);
    HD_TSAN_ACQUIRE(n);
    return n;
}

void prof_unpublish(struct sess_map *m, const char *user_id)
{
    rcu_read_lock();
    struct prof_node *n = prof_find(m, user_id);
    if (n && cds_lfht_del(m->profiles, &n->node) == 0)
        call_rcu(&n->rcu, free_profile);
    rcu_read_unlock();
}

long sess_map_count(struct sess_map *m)
{
    return __atomic_load_n(&m->count, __ATOMIC_RELAXED);
}

int sess_user_count(struct sess_map *m, const char *user_id)
{
    struct user_entry *u = *user_slot(m, user_id);
    return u ? u->count : 0;
}

struct sess_node *sess_user_oldest(struct sess_map *m, const char *user_id)
{
    struct user_entry *u = *user_slot(m, user_id);
    return u ? u->oldest : NULL;
}

int sess_user_nodes(struct sess_map *m, const char *user_id, struct sess_node **out, int cap)
{
    struct user_entry *u = *user_slot(m, user_id);
    int k = 0;
    for (struct sess_node *n = u ? u->oldest : NULL; n && k < cap; n = n->user_next)
        out[k++] = n;
    return k;
}
