/* Private to the session actor: the RCU-published map of live sessions.
 * Readers: any RCU-registered thread (lookup). Writer: the session actor
 * only (publish, unpublish). */
#ifndef HERALD_SESSION_MAP_H
#define HERALD_SESSION_MAP_H

#include <stdbool.h>
#include <stdint.h>

#include <urcu.h>
#include <urcu/rculfhash.h>

#include "herald/session.h"

struct sess_node {
    struct cds_lfht_node node;
    struct rcu_head rcu;
    struct hd_session_info info; /* immutable once published */
    int64_t last_seen_ms;        /* atomic: readers move it forward */
    int64_t touch_posted_ms;     /* atomic: last time a touch was asked of the actor */
    bool revoked;                /* atomic: set before the node is unpublished */
    /* actor thread only: the user's list of sessions, oldest first */
    struct sess_node *user_prev, *user_next;
};

struct sess_map;

struct sess_map *sess_map_new(void);
/** Frees the map; every node must have been removed. Actor thread, not in a
 * read-side section. */
void sess_map_free(struct sess_map *m);

/** Publishes @n (owned by the map from now on). Actor thread. */
void sess_map_publish(struct sess_map *m, struct sess_node *n);
/** Unpublishes @n; it is freed after a grace period. Actor thread. */
void sess_map_unpublish(struct sess_map *m, struct sess_node *n);

/** Finds @sid; call under rcu_read_lock, the node valid until unlock. */
struct sess_node *sess_map_find(struct sess_map *m, const char *sid);

/** Calls @fn for every published node (actor thread; @fn may unpublish). */
void sess_map_each(struct sess_map *m, void (*fn)(void *arg, struct sess_node *n), void *arg);

/** Published nodes. Any thread. */
long sess_map_count(struct sess_map *m);

/* Profiles: the rendered public JSON of each user with a live session, for
 * GET /api/me without a store round trip. Readers: any RCU thread. */
struct prof_node {
    struct cds_lfht_node node;
    struct rcu_head rcu;
    char user_id[HD_ID_LEN + 1];
    int64_t version; /* the user's updated_at: an older rendering never replaces a newer */
    size_t len;
    char json[]; /* NUL-terminated */
};

/** Publishes @json (rendered at @version, the user's updated_at) as the
 * profile of @user_id unless a newer one is published. Actor thread. */
void prof_publish(struct sess_map *m, const char *user_id, const char *json, int64_t version);
/** Removes the profile of @user_id if any. Actor thread. */
void prof_unpublish(struct sess_map *m, const char *user_id);
/** Finds a profile; under rcu_read_lock, valid until unlock. */
struct prof_node *prof_find(struct sess_map *m, const char *user_id);

/* The actor's per-user index (actor thread only). */
int sess_user_count(struct sess_map *m, const char *user_id);
struct sess_node *sess_user_oldest(struct sess_map *m, const char *user_id);
/** Collects up to @cap live nodes of @user_id into @out; returns how many. */
int sess_user_nodes(struct sess_map *m, const char *user_id, struct sess_node **out, int cap);

#endif
