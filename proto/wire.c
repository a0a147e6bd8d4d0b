/* Envelope packing and enum names for the mxcache wire protocol (see wire.h). */
#include "wire.h"

#include <stdlib.h>
#include <strings.h>

#include "mxc_err.h"

int wire_message_pack(const ProtobufCMessage *m, uint8_t **buf, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(m);

    if (n > WIRE_MAX_MESSAGE)
        return MXC_ETOOBIG;
    /* malloc(0) may return NULL; an empty message is still a valid buffer. */
    uint8_t *b = malloc(n ? n : 1);
    if (!b)
        return MXC_ENOMEM;
    *len = protobuf_c_message_pack(m, b);
    *buf = b;
    return MXC_OK;
}

int wire_request_pack(const Mxcache__Request *req, uint8_t **buf, size_t *len)
{
    return wire_message_pack(&req->base, buf, len);
}

int wire_reply_pack(const Mxcache__Reply *rep, uint8_t **buf, size_t *len)
{
    return wire_message_pack(&rep->base, buf, len);
}

/* Robustness: protobuf-c accepts any varint for an enum field; refuse values we do not know so
 * that switch statements downstream never see them. */
static int enum_ok(const ProtobufCEnumDescriptor *d, int v)
{
    return protobuf_c_enum_descriptor_get_value(d, v) != NULL;
}

static int message_enums_ok(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;

    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *p = (const char *)m + f->offset;

        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t which = *(const uint32_t *)((const char *)m + f->quantifier_offset);
            if (which != f->id)
                continue;
        }
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
            void *const *arr = *(void *const *const *)p;
            for (size_t j = 0; j < n; j++) {
                if (f->type == PROTOBUF_C_TYPE_MESSAGE && !message_enums_ok(arr[j]))
                    return 0;
                if (f->type == PROTOBUF_C_TYPE_ENUM && !enum_ok(f->descriptor, ((const int *)arr)[j]))
                    return 0;
            }
            continue;
        }
        if (f->type == PROTOBUF_C_TYPE_ENUM && !enum_ok(f->descriptor, *(const int *)p))
            return 0;
        if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
            const ProtobufCMessage *sub = *(ProtobufCMessage *const *)p;
            if (sub && !message_enums_ok(sub))
                return 0;
        }
    }
    return 1;
}

Mxcache__Request *wire_request_unpack(const uint8_t *buf, size_t len)
{
    Mxcache__Request *r;

    if (len > WIRE_MAX_MESSAGE)
        return NULL;
    r = mxcache__request__unpack(NULL, len, buf);
    if (r && !message_enums_ok(&r->base)) {
        mxcache__request__free_unpacked(r, NULL);
        return NULL;
    }
    return r;
}

Mxcache__Reply *wire_reply_unpack(const uint8_t *buf, size_t len)
{
    Mxcache__Reply *r;

    if (len > WIRE_MAX_MESSAGE)
        return NULL;
    r = mxcache__reply__unpack(NULL, len, buf);
    if (r && !message_enums_ok(&r->base)) {
        mxcache__reply__free_unpacked(r, NULL);
        return NULL;
    }
    return r;
}

#define WIRE_VARINT_MAX 10        /* bytes of the longest valid varint (64 bits / 7) */
#define WIRE_FIELD_MAX 536870911u /* 2^29 - 1, the largest field number */

/* read_varint - decodes one varint at *p (not past end) and advances *p. Bits past 64 in the
 * 10th byte are dropped, as protobuf's own decoders do. */
static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;

    for (int i = 0; i < WIRE_VARINT_MAX; i++) {
        if (*p >= end)
            return MXC_EPROTO;
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            return MXC_OK;
        }
    }
    return MXC_EPROTO; /* an 11th byte would follow */
}

int wire_scalar_field(const uint8_t *buf, size_t len, uint32_t field, int wire_type, uint64_t *value)
{
    int found = 0;

    if (!buf && len)
        return MXC_EINVAL;
    /* Portability: NULL + 0 is undefined in C (clang's UBSan says so): an empty buffer may come
     * as NULL, so the end is only computed for a real one. */
    if (!buf)
        return MXC_ENOENT;
    const uint8_t *p = buf, *end = buf + len;
    while (p < end) {
        uint64_t tag, v = 0;
        if (read_varint(&p, end, &tag) != MXC_OK || (tag >> 3) == 0 || (tag >> 3) > WIRE_FIELD_MAX)
            return MXC_EPROTO;
        int wt = (int)(tag & 7);
        /* Robustness: the wanted field under another wire type would not unpack with protobuf-c
         * either; calling it absent could make a corrupt record look like one that never expires. */
        if ((tag >> 3) == field && wt != wire_type)
            return MXC_EPROTO;
        switch (wt) {
        case 0:
            if (read_varint(&p, end, &v) != MXC_OK)
                return MXC_EPROTO;
            break;
        case 1:
            if (end - p < 8)
                return MXC_EPROTO;
            for (int i = 7; i >= 0; i--)
                v = (v << 8) | p[i];
            p += 8;
            break;
        case 2:
            if (read_varint(&p, end, &v) != MXC_OK || v > (uint64_t)(end - p))
                return MXC_EPROTO;
            p += v;
            break;
        case 5:
            if (end - p < 4)
                return MXC_EPROTO;
            for (int i = 3; i >= 0; i--)
                v = (v << 8) | p[i];
            p += 4;
            break;
        default: /* 3 and 4 are groups, which proto3 never writes; 6 and 7 do not exist */
            return MXC_EPROTO;
        }
        /* A repeated scalar is legal protobuf; as protobuf-c does, the last one wins. */
        if ((tag >> 3) == field) {
            *value = v;
            found = 1;
        }
    }
    return found ? MXC_OK : MXC_ENOENT;
}

uint64_t wire_peek_id(const uint8_t *buf, size_t len)
{
    if (!buf)
        return 0; /* an empty message; NULL + 0 is undefined */
    const uint8_t *p = buf, *end = buf + (len < 64 ? len : 64);
    uint64_t tag, v;

    /* Security: a malformed or oversized request is not walked in full; the id comes right after
     * the version at the start of every Request we pack, so a short prefix is enough. */
    while (p < end) {
        if (read_varint(&p, end, &tag) != MXC_OK || (tag & 7) != 0 || read_varint(&p, end, &v) != MXC_OK)
            return 0;
        if (tag >> 3 == 2)
            return v;
    }
    return 0;
}

Mxcache__Request__BodyCase wire_peek_body(const uint8_t *buf, size_t len)
{
    Mxcache__Request__BodyCase body = MXCACHE__REQUEST__BODY__NOT_SET;
    uint64_t tag, v;

    if (!buf)
        return body; /* an empty message; NULL + 0 is undefined */
    const uint8_t *p = buf, *end = buf + len;

    /* Robustness: protobuf lets the last member of a oneof win, and a client may put other
     * fields (unknown ones too) before the body, or two bodies: only a walk over every top-level
     * field agrees with the decoder. The service routes on this answer, and a Check routed as
     * an admin request ran on a worker, which cannot park it for a probe (its reply was lost
     * and its probe request leaked: fuzz_request found it). The walk reads tags and skips
     * values, allocates nothing, and the request's size is bounded before it gets here. */
    while (p < end) {
        if (read_varint(&p, end, &tag) != MXC_OK || (tag >> 3) == 0 || (tag >> 3) > WIRE_FIELD_MAX)
            return body;
        unsigned field = (unsigned)(tag >> 3);
        /* version or id under another wire type: the request does not decode */
        if (field <= 2 && (tag & 7) != 0)
            return MXCACHE__REQUEST__BODY__NOT_SET;
        switch (tag & 7) {
        case 0:
            if (read_varint(&p, end, &v) != MXC_OK)
                return body;
            break;
        case 1:
            if (end - p < 8)
                return body;
            p += 8;
            break;
        case 2: {
            const ProtobufCFieldDescriptor *f =
                protobuf_c_message_descriptor_get_field(&mxcache__request__descriptor, field);
            if (f && (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
                body = (Mxcache__Request__BodyCase)field; /* even if cut short right here */
            if (read_varint(&p, end, &v) != MXC_OK || v > (uint64_t)(end - p))
                return body;
            p += v;
            break;
        }
        case 5:
            if (end - p < 4)
                return body;
            p += 4;
            break;
        default: /* groups (3, 4) and 6, 7: not a Request protobuf-c decodes */
            return body;
        }
    }
    return body;
}

struct name_map {
    int value;
    const char *name;
};

static const char *map_name(const struct name_map *m, int v)
{
    for (; m->name; m++)
        if (m->value == v)
            return m->name;
    return "?";
}

static int map_parse(const struct name_map *m, const char *name, int *out)
{
    if (!name)
        return MXC_EINVAL;
    for (; m->name; m++)
        if (strcasecmp(m->name, name) == 0) {
            *out = m->value;
            return MXC_OK;
        }
    return MXC_EINVAL;
}

static const struct name_map keyspaces[] = {
    {MXCACHE__KEYSPACE__KEYSPACE_VERIFY, "verify"},
    {MXCACHE__KEYSPACE__KEYSPACE_GREYLIST, "greylist"},
    {MXCACHE__KEYSPACE__KEYSPACE_AWL, "awl"},
    {MXCACHE__KEYSPACE__KEYSPACE_WHITELIST, "whitelist"},
    {0, NULL},
};

static const struct name_map actions[] = {
    {MXCACHE__ACTION__ACTION_DUNNO, "dunno"},
    {MXCACHE__ACTION__ACTION_DEFER, "defer"},
    {MXCACHE__ACTION__ACTION_REJECT, "reject"},
    {0, NULL},
};

static const struct name_map states[] = {
    {MXCACHE__RECORD_STATE__STATE_ANY, "any"},
    {MXCACHE__RECORD_STATE__STATE_POSITIVE, "positive"},
    {MXCACHE__RECORD_STATE__STATE_NEGATIVE, "negative"},
    {MXCACHE__RECORD_STATE__STATE_TEMPFAIL, "tempfail"},
    {MXCACHE__RECORD_STATE__STATE_PENDING, "pending"},
    {MXCACHE__RECORD_STATE__STATE_PASSED, "passed"},
    {0, NULL},
};

static const struct name_map wlkinds[] = {
    {MXCACHE__WHITELIST_KIND__WHITELIST_ANY, "any"},
    {MXCACHE__WHITELIST_KIND__WHITELIST_CLIENT, "client"},
    {MXCACHE__WHITELIST_KIND__WHITELIST_CLIENT_NAME, "client_name"},
    {MXCACHE__WHITELIST_KIND__WHITELIST_SENDER, "sender"},
    {MXCACHE__WHITELIST_KIND__WHITELIST_RECIPIENT, "recipient"},
    {0, NULL},
};

static const struct name_map errors[] = {
    {MXCACHE__ERROR_CODE__ERROR_UNSPECIFIED, "unspecified"},
    {MXCACHE__ERROR_CODE__ERROR_MALFORMED, "malformed"},
    {MXCACHE__ERROR_CODE__ERROR_TOO_LARGE, "too_large"},
    {MXCACHE__ERROR_CODE__ERROR_VERSION, "version"},
    {MXCACHE__ERROR_CODE__ERROR_INVALID_ARGUMENT, "invalid_argument"},
    {MXCACHE__ERROR_CODE__ERROR_STORE, "store"},
    {MXCACHE__ERROR_CODE__ERROR_UNAVAILABLE, "unavailable"},
    {MXCACHE__ERROR_CODE__ERROR_DENIED, "denied"},
    {MXCACHE__ERROR_CODE__ERROR_INTERNAL, "internal"},
    {0, NULL},
};

static const struct name_map bodies[] = {
    {MXCACHE__REQUEST__BODY_CHECK, "check"},
    {MXCACHE__REQUEST__BODY_GET, "get"},
    {MXCACHE__REQUEST__BODY_LIST, "list"},
    {MXCACHE__REQUEST__BODY_DELETE, "delete"},
    {MXCACHE__REQUEST__BODY_FLUSH, "flush"},
    {MXCACHE__REQUEST__BODY_STATS, "stats"},
    {MXCACHE__REQUEST__BODY_WHITELIST_ADD, "whitelist_add"},
    {MXCACHE__REQUEST__BODY_WHITELIST_REMOVE, "whitelist_remove"},
    {MXCACHE__REQUEST__BODY_WHITELIST_LIST, "whitelist_list"},
    {MXCACHE__REQUEST__BODY_COMPACT, "compact"},
    {MXCACHE__REQUEST__BODY_VERIFY, "verify"},
    {MXCACHE__REQUEST__BODY_PING, "ping"},
    {0, NULL},
};

const char *wire_keyspace_name(Mxcache__Keyspace ks) { return map_name(keyspaces, ks); }
const char *wire_action_name(Mxcache__Action a) { return map_name(actions, a); }
const char *wire_state_name(Mxcache__RecordState s) { return map_name(states, s); }
const char *wire_wlkind_name(Mxcache__WhitelistKind k) { return map_name(wlkinds, k); }
const char *wire_error_name(Mxcache__ErrorCode c) { return map_name(errors, c); }
const char *wire_body_name(Mxcache__Request__BodyCase c) { return map_name(bodies, c); }

int wire_keyspace_parse(const char *name, Mxcache__Keyspace *out)
{
    int v;
    int rc = map_parse(keyspaces, name, &v);
    if (rc == MXC_OK)
        *out = (Mxcache__Keyspace)v;
    return rc;
}

int wire_action_parse(const char *name, Mxcache__Action *out)
{
    int v;
    int rc = map_parse(actions, name, &v);
    if (rc == MXC_OK)
        *out = (Mxcache__Action)v;
    return rc;
}

int wire_state_parse(const char *name, Mxcache__RecordState *out)
{
    int v;
    int rc = map_parse(states, name, &v);
    if (rc == MXC_OK)
        *out = (Mxcache__RecordState)v;
    return rc;
}

int wire_wlkind_parse(const char *name, Mxcache__WhitelistKind *out)
{
    int v;
    int rc = map_parse(wlkinds, name, &v);
    if (rc == MXC_OK)
        *out = (Mxcache__WhitelistKind)v;
    return rc;
}
