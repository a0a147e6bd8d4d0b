/* Stored records: the protobuf message of each keyspace, its expiry time, and the conversion to
 * the Entry shown by admin requests.
 *
 * Every record message keeps its expiry (unix ms) in field 1 as fixed64, so record_expiry reads it
 * straight from the packed bytes: the store's read path and compaction filter need no unpacking.
 * An absent field 1 means 0: the record never expires (only whitelist entries may do that). */
#ifndef MXCACHED_RECORD_H
#define MXCACHED_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mxcache.pb-c.h"
#include "store.h"

/* record_expiry - the expiry time in packed record bytes. Returns 0 and sets *expires_at_ms, or
 * MXC_EPROTO when the bytes are not a well-formed protobuf message. */
int record_expiry(const void *buf, size_t len, uint64_t *expires_at_ms);

/* record_is_live - true when the packed record has not expired at now_ms. A record whose bytes are
 * corrupt counts as expired (it is never returned, and compaction removes it). */
bool record_is_live(const void *buf, size_t len, uint64_t now_ms);

/* record_to_entry - unpacks a stored value of keyspace ks into a new Entry with key copied; the
 * result is freed with record_entry_free. NULL when the bytes do not unpack or out of memory. */
Mxcache__Entry *record_to_entry(Mxcache__Keyspace ks, const char *key, size_t keylen,
                                const void *val, size_t vallen);
void record_entry_free(Mxcache__Entry *e); /* NULL-safe */

/* record_state - the RecordState of a packed record (STATE_ANY for keyspaces without states or
 * bytes that do not unpack). */
Mxcache__RecordState record_state(Mxcache__Keyspace ks, const void *val, size_t vallen);

/* record_batch_get - the live value of key (a C string) in ks, seen through batch b: *val
 * malloc'd (caller frees), or NULL when there is none. Returns 0, or MXC_ESTORE/MXC_EINVAL with
 * err filled. */
int record_batch_get(store_batch *b, Mxcache__Keyspace ks, const char *key, char **val,
                     size_t *vallen, char *err, size_t errlen);

/* record_batch_put - packs m and puts it under key into batch b. Returns 0, MXC_ENOMEM, or
 * MXC_EINVAL with err filled. */
int record_batch_put(store_batch *b, Mxcache__Keyspace ks, const char *key, const ProtobufCMessage *m,
                     char *err, size_t errlen);

#endif
