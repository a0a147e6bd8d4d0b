/* The WAL sync thread of mxcached: pipelined group commit for the main thread's rounds.
 *
 * The main thread commits a round's writes without waiting for the disk and asks for a sync,
 * labelled with a generation number that grows by one per request; while the disk syncs, the
 * main thread goes on deciding the next rounds. Requests that queue up during a sync, or during
 * the pause that keeps syncs store.sync_interval apart, are served by one sync, so under load
 * one fsync covers many rounds. The thread reports each finished sync
 * with the highest generation it covers; replies that depend on writes up to that generation
 * may then leave.
 *
 * Thread-safety: syncer_request, syncer_result and syncer_socket are for the one thread that
 * created the syncer. The syncer's counters are written by its thread, read by anyone. */
#ifndef MXCACHED_SYNCER_H
#define MXCACHED_SYNCER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "counters.h"
#include "store.h"

struct syncer;

/* syncer_create - starts the thread; st is borrowed and must outlive the syncer, zctx is the
 * ZeroMQ context of the caller's inproc sockets. Two syncs start at least interval_us apart
 * (store.sync_interval). NULL with a message in err on failure. */
struct syncer *syncer_create(void *zctx, store *st, uint64_t interval_us, char *err, size_t errlen);

/* syncer_destroy - lets a running sync finish, stops and joins the thread. NULL-safe. */
void syncer_destroy(struct syncer *s);

/* syncer_socket - the ZeroMQ socket to poll (ZMQ_POLLIN) for finished syncs. */
void *syncer_socket(struct syncer *s);

/* syncer_request - asks for a sync of every write committed before the call, as generation gen
 * (greater than every earlier one). Returns 0 or MXC_EIO. */
int syncer_request(struct syncer *s, uint64_t gen);

/* syncer_result - a finished sync: *gen, the highest generation it covers, and *ok, whether the
 * writes up to it are durable. Returns 0, or MXC_EAGAIN when no result is waiting. */
int syncer_result(struct syncer *s, uint64_t *gen, bool *ok);

/* syncer_counters - the thread's counters (CTR_WAL_SYNCS, CTR_WAL_SYNC_USEC, the wal_sync
 * histogram). */
struct counters *syncer_counters(struct syncer *s);

#endif
