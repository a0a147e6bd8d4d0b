/* The operators' static whitelists: canonical keys for entries, and an in-memory copy of the
 * whitelist keyspace that Check consults without touching RocksDB.
 *
 * The whitelist keyspace in the store is the truth; this module mirrors it. Entries are keyed
 * "<kind>:<value>" with kind one of client, client_name, sender, recipient (wire_wlkind_name) and
 * value canonical: a client network masked to its prefix ("192.0.2.0/24", "2001:db8::/32"; a
 * single address becomes /32 or /128), names and domains lower-cased without a trailing dot,
 * addresses with the domain lower-cased. A domain entry of client_name, sender or recipient also
 * covers its subdomains.
 *
 * Thread-safety: one whitelist is shared by all workers; matching takes a read lock, changes a
 * write lock. */
#ifndef MXCACHED_WHITELIST_H
#define MXCACHED_WHITELIST_H

#include <stddef.h>
#include <stdint.h>

#include "mxcache.pb-c.h"
#include "store.h"

/* Largest canonical key: "client_name:" plus a full domain, or "recipient:" plus a mailbox. */
#define WL_KEY_MAX 300
#define WL_MAX_VALUE 256   /* longest value accepted in a request (an RFC 5321 path) */
#define WL_MAX_COMMENT 256 /* longest operator comment stored with an entry */

struct whitelist;

struct whitelist *wl_create(void);          /* NULL when out of memory */
void wl_destroy(struct whitelist *wl);      /* NULL-safe */

/* wl_key - the canonical key for (kind, value) into key (WL_KEY_MAX bytes). Returns 0, or
 * MXC_EINVAL with a reason in err (an unknown kind, a malformed network, name or address). */
int wl_key(Mxcache__WhitelistKind kind, const char *value, char *key, size_t keylen, char *err,
           size_t errlen);

/* wl_load - replaces the in-memory copy with the live entries of the store's whitelist keyspace.
 * Returns 0 or MXC_ESTORE / MXC_ENOMEM with err filled. */
int wl_load(struct whitelist *wl, store *st, char *err, size_t errlen);

/* wl_sync_key - after a commit that wrote key, makes the in-memory copy of key equal to the
 * store's. Robustness: syncs are serialized and each re-reads the store, so the copy ends right
 * when two workers commit changes of one key in either order. Returns 0 or MXC_ESTORE (copy left unchanged). */
int wl_sync_key(struct whitelist *wl, store *st, const char *key, size_t keylen);

/* wl_refresh - reloads the copy from the store when a wl_sync_key failed since the last load
 * (otherwise returns at the cost of one atomic load). Returns 0, or wl_load's error with err
 * filled, in which case it tries again on the next call. */
int wl_refresh(struct whitelist *wl, store *st, char *err, size_t errlen);

/* wl_match - the key of the first entry (in the order client, client_name, sender, recipient)
 * that covers the question and has not expired at now_ms, copied into matched (WL_KEY_MAX bytes);
 * returns 1 on a match, 0 otherwise. Fields that are empty or malformed match nothing. */
int wl_match(struct whitelist *wl, const Mxcache__CheckRequest *q, uint64_t now_ms, char *matched,
             size_t matchedlen);

size_t wl_count(struct whitelist *wl);

#endif
