/* One rendering of a notification for REST, live SSE and replay. */
#include "herald/notification.h"

#include "herald/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_t *hd_notification_json(const struct hd_notification *n, int with_read)
{
    json_t *data = NULL;
    if (n->data)
        data = json_loads(n->data, JSON_REJECT_DUPLICATES, NULL);
    if (data && !json_is_object(data)) {
        json_decref(data);
        data = NULL;
    }
    json_t *j =
        json_pack("{s:I, s:s, s:s?, s:s, s:s, s:s, s:o?, s:I}", "id", (json_int_t)n->id,
                  "organization_id", n->org_id, "user_id", n->user_id[0] ? n->user_id : NULL,
                  "type", n->type ? n->type : "", "title", n->title ? n->title : "", "body",
                  n->body ? n->body : "", "data", data, "created_at", (json_int_t)n->created_at);
    HD_ASSERT(j);
    if (!data)
        json_object_set_new(j, "data", json_null());
    if (!n->user_id[0])
        json_object_set_new(j, "user_id", json_null());
    if (with_read)
        json_object_set_new(j, "read", json_boolean(n->read));
    return j;
}

char *hd_notification_sse(const struct hd_notification *n, size_t *len)
{
    json_t *j = hd_notification_json(n, 0);
    char *text = json_dumps(j, JSON_COMPACT); /* one line: newlines are escaped */
    json_decref(j);
    HD_ASSERT(text);
    size_t tlen = strlen(text);
    size_t cap = tlen + 64;
    char *out = hd_malloc(cap);
    int head = snprintf(out, cap, "id: %lld\nevent: notification\ndata: ", (long long)n->id);
    memcpy(out + head, text, tlen);
    memcpy(out + head + tlen, "\n\n", 3);
    *len = (size_t)head + tlen + 2;
    free(text);
    return out;
}
