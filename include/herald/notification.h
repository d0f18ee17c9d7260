/* The public JSON of a notification and its SSE frame. One rendering serves
 * the REST list, the live fan-out and the resume replay, so a client sees
 * the same bytes whichever way an event reached it. Pure; any thread. */
#ifndef HERALD_NOTIFICATION_H
#define HERALD_NOTIFICATION_H

#include <jansson.h>
#include <stddef.h>

#include "herald/store.h"

/**
 * {"id":N,"organization_id":"…","user_id":"…"|null,"type":"…","title":"…",
 *  "body":"…","data":{…}|null,"created_at":ms[,"read":bool]} — "read" only
 * when @with_read. n->data must be a JSON object text (validated on
 * publish); one that does not parse renders as null. New reference.
 */
json_t *hd_notification_json(const struct hd_notification *n, int with_read);

/**
 * Renders the SSE event of @n: "id: N\nevent: notification\ndata: <compact
 * JSON of hd_notification_json without read>\n\n". Returns a malloc'd
 * string (its length in *len), never NULL.
 */
char *hd_notification_sse(const struct hd_notification *n, size_t *len);

#endif
