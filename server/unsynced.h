/* The keys written by the main thread's Check rounds whose WAL sync has not finished yet, each
 * with the generation of the sync that will make it durable (see syncer.h): a Check that reads
 * one of them rests on a write that a crash could still undo, so its reply must wait for that
 * sync; a Check that reads none of them is answered at once.
 *
 * Use per round: unsynced_read and unsynced_write for each key a request touches (from the
 * store's watch hook), then unsynced_end_round with the generation the round's writes are synced
 * with (0 when the round asked for no sync: its writes decide nothing and are forgotten). As
 * syncs finish, unsynced_done drops what they covered, oldest first, so the set holds what a few
 * milliseconds of writes touched.
 *
 * When memory runs out, or a key is longer than UNSYNCED_KEY_MAX, the answers become
 * conservative (every read depends on the newest such write), never wrong.
 *
 * Thread-safety: one thread (the main thread) owns it. */
#ifndef MXCACHED_UNSYNCED_H
#define MXCACHED_UNSYNCED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mxcache.pb-c.h"

#define UNSYNCED_KEY_MAX 1024 /* keyspace byte + key */

struct unsynced;

struct unsynced *unsynced_create(void);  /* NULL when out of memory */
void unsynced_destroy(struct unsynced *u); /* NULL-safe */

/* unsynced_write - the current round wrote key of ks. */
void unsynced_write(struct unsynced *u, Mxcache__Keyspace ks, const char *key, size_t keylen);

/* unsynced_read - a request of the current round reads key of ks: returns the generation of an
 * earlier round's sync it must wait for (0: none), and sets *this_round when a request before it
 * in this round wrote the key (it then waits for this round's sync, if the round has one). */
uint64_t unsynced_read(const struct unsynced *u, Mxcache__Keyspace ks, const char *key, size_t keylen,
                       bool *this_round);

/* unsynced_end_round - the round's writes become durable with the sync of generation gen (not
 * smaller than any earlier one), or decide nothing (gen 0). */
void unsynced_end_round(struct unsynced *u, uint64_t gen);

/* unsynced_done - the syncs up to gen finished: forgets what they covered. */
void unsynced_done(struct unsynced *u, uint64_t gen);

/* unsynced_count - keys of finished rounds waiting for their sync. */
size_t unsynced_count(const struct unsynced *u);

#endif
