/* Stored records (see record.h): the expiry time read straight from packed bytes, and the
 * conversion of a stored value into the Entry that admin requests show.
 *
 * Owns nothing between calls. Trusts nothing about the bytes it is given: a value on disk may be
 * truncated or written by a broken build, so record_expiry walks the whole message with bounds
 * checks (wire_scalar_field) and reports anything that is not well-formed protobuf as MXC_EPROTO.
 * It allocates nothing, because it runs on every read and in the compaction filter. */
#include "record.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mxc_err.h"
#include "wire.h"

#define RECORD_FIELD_EXPIRES 1 /* expires_at_ms of every record message */

int record_expiry(const void *buf, size_t len, uint64_t *expires_at_ms)
{
    uint64_t expires = 0;
    int rc;

    if (!expires_at_ms || (!buf && len))
        return MXC_EINVAL;
    rc = wire_scalar_field(buf, len, RECORD_FIELD_EXPIRES, WIRE_TYPE_FIXED64, &expires);
    if (rc != MXC_OK && rc != MXC_ENOENT)
        return rc;
    /* Absent: every field at its default, expiry 0, never expires. */
    *expires_at_ms = rc == MXC_OK ? expires : 0;
    return MXC_OK;
}

bool record_is_live(const void *buf, size_t len, uint64_t now_ms)
{
    uint64_t expires;

    if (record_expiry(buf, len, &expires) != MXC_OK)
        return false;
    return expires == 0 || now_ms < expires;
}

Mxcache__Entry *record_to_entry(Mxcache__Keyspace ks, const char *key, size_t keylen,
                                const void *val, size_t vallen)
{
    Mxcache__Entry *e;
    const uint8_t *data = val;

    if ((!key && keylen) || (!val && vallen))
        return NULL;
    if (!(e = malloc(sizeof *e)))
        return NULL;
    mxcache__entry__init(e);
    e->keyspace = ks;
    switch (ks) {
    case MXCACHE__KEYSPACE__KEYSPACE_VERIFY:
        e->verify = mxcache__verify_record__unpack(NULL, vallen, data);
        e->record_case = e->verify ? MXCACHE__ENTRY__RECORD_VERIFY : MXCACHE__ENTRY__RECORD__NOT_SET;
        break;
    case MXCACHE__KEYSPACE__KEYSPACE_GREYLIST:
        e->greylist = mxcache__greylist_record__unpack(NULL, vallen, data);
        e->record_case = e->greylist ? MXCACHE__ENTRY__RECORD_GREYLIST : MXCACHE__ENTRY__RECORD__NOT_SET;
        break;
    case MXCACHE__KEYSPACE__KEYSPACE_AWL:
        e->awl = mxcache__awl_record__unpack(NULL, vallen, data);
        e->record_case = e->awl ? MXCACHE__ENTRY__RECORD_AWL : MXCACHE__ENTRY__RECORD__NOT_SET;
        break;
    case MXCACHE__KEYSPACE__KEYSPACE_WHITELIST:
        e->whitelist = mxcache__whitelist_record__unpack(NULL, vallen, data);
        e->record_case = e->whitelist ? MXCACHE__ENTRY__RECORD_WHITELIST : MXCACHE__ENTRY__RECORD__NOT_SET;
        break;
    default:
        break;
    }
    if (e->record_case == MXCACHE__ENTRY__RECORD__NOT_SET) {
        free(e);
        return NULL;
    }
    /* The key is a proto3 string, so it needs its own NUL-terminated copy. */
    if (!(e->key = malloc(keylen + 1))) {
        e->key = (char *)protobuf_c_empty_string;
        record_entry_free(e);
        return NULL;
    }
    if (keylen)
        memcpy(e->key, key, keylen);
    e->key[keylen] = '\0';
    return e;
}

void record_entry_free(Mxcache__Entry *e)
{
    if (!e)
        return;
    /* Frees exactly what record_to_entry made: the key copy, the sub-record that protobuf-c
     * unpacked (with its own free_unpacked), and the Entry itself. */
    switch (e->record_case) {
    case MXCACHE__ENTRY__RECORD_VERIFY:
        mxcache__verify_record__free_unpacked(e->verify, NULL);
        break;
    case MXCACHE__ENTRY__RECORD_GREYLIST:
        mxcache__greylist_record__free_unpacked(e->greylist, NULL);
        break;
    case MXCACHE__ENTRY__RECORD_AWL:
        mxcache__awl_record__free_unpacked(e->awl, NULL);
        break;
    case MXCACHE__ENTRY__RECORD_WHITELIST:
        mxcache__whitelist_record__free_unpacked(e->whitelist, NULL);
        break;
    default:
        break;
    }
    if (e->key && e->key != protobuf_c_empty_string)
        free(e->key);
    free(e);
}

Mxcache__RecordState record_state(Mxcache__Keyspace ks, const void *val, size_t vallen)
{
    Mxcache__RecordState st = MXCACHE__RECORD_STATE__STATE_ANY;
    const uint8_t *data = val;

    if (!val && vallen)
        return st;
    if (ks == MXCACHE__KEYSPACE__KEYSPACE_VERIFY) {
        Mxcache__VerifyRecord *r = mxcache__verify_record__unpack(NULL, vallen, data);
        if (r) {
            st = r->state;
            mxcache__verify_record__free_unpacked(r, NULL);
        }
    } else if (ks == MXCACHE__KEYSPACE__KEYSPACE_GREYLIST) {
        Mxcache__GreylistRecord *r = mxcache__greylist_record__unpack(NULL, vallen, data);
        if (r) {
            st = r->state;
            mxcache__greylist_record__free_unpacked(r, NULL);
        }
    }
    return st;
}

int record_batch_get(store_batch *b, Mxcache__Keyspace ks, const char *key, char **val,
                     size_t *vallen, char *err, size_t errlen)
{
    int rc = store_batch_get(b, ks, key, strlen(key), val, vallen, err, errlen);

    if (rc == MXC_ENOENT) {
        *val = NULL;
        return MXC_OK;
    }
    return rc;
}

int record_batch_put(store_batch *b, Mxcache__Keyspace ks, const char *key, const ProtobufCMessage *m,
                     char *err, size_t errlen)
{
    uint8_t *buf;
    size_t len;
    int rc = wire_message_pack(m, &buf, &len);

    if (rc != MXC_OK)
        return rc;
    rc = store_batch_put(b, ks, key, strlen(key), buf, len);
    free(buf);
    if (rc != MXC_OK)
        snprintf(err, errlen, "the batch refused a %s write", wire_keyspace_name(ks));
    return rc;
}
