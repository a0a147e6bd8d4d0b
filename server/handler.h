/* Request handling of one mxcached thread (the main thread's Check rounds, or a worker):
 * decodes a request, answers it from the store and the in-memory whitelist, and collects its
 * writes into the thread's batch for the round.
 *
 * A round is handler_begin, any number of handler_request, then handler_commit, which makes the
 * round's writes durable (one WriteBatch, WAL synced) before the caller sends any of the round's
 * replies. A request never makes the worker fail: a bad request gets an error reply. Work per
 * request is bounded: scans stop after a budget of records and reply bytes and return a cursor.
 *
 * Thread-safety: a handler belongs to one thread; the env it points to is shared. */
#ifndef MXCACHED_HANDLER_H
#define MXCACHED_HANDLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "counters.h"
#include "greylist.h"
#include "policy.h"
#include "store.h"
#include "whitelist.h"

/* What all workers share, owned by the service. */
struct handler_env {
    store *st;
    struct whitelist *wl;
    unsigned workers;
    uint64_t started_ms;
    /* counters_fn sums the counters of every thread into out (for Stats). */
    void (*counters_fn)(void *arg, uint64_t out[CTR_COUNT]);
    void *counters_arg;
};

/* One packed reply; buf is malloc'd and owned by whoever holds the struct. A deferred reply has
 * no buf yet: it comes later from handler_run_deferred. durable: the request made a write that
 * decides what later requests are told (a new triplet, a pass), so its reply may only leave once
 * that write is durable. */
struct handler_reply {
    uint8_t *buf;
    size_t len;
    uint64_t id;
    bool deferred;
    bool durable;
};

struct handler;

/* handler_create - a handler using env (borrowed, must outlive it) and counting into ctr
 * (borrowed). NULL when out of memory. */
struct handler *handler_create(const struct handler_env *env, struct counters *ctr);
void handler_destroy(struct handler *h); /* NULL-safe */

/* handler_watch - fn is told of every key the handler's requests read and write in the store
 * (store_batch_watch); for the main thread's per-reply sync tracking. */
void handler_watch(struct handler *h, store_watch_fn fn, void *arg);

/* handler_begin - starts a round that decides with pol (borrowed until the round's last
 * handler_run_deferred or handler_commit). */
void handler_begin(struct handler *h, const struct policy *pol);

/* handler_request - handles one request of len bytes. Always produces a reply in *out (an error
 * reply for a bad request) unless out of memory, which returns MXC_ENOMEM and leaves *out empty. */
int handler_request(struct handler *h, const uint8_t *msg, size_t len, struct handler_reply *out);

/* handler_commit - commits the round's writes. On a store failure every reply of the round
 * (replies[0..n-1], the round's replies in order) is replaced by a temporary ERROR_STORE error
 * reply, since any of them may depend on what was not written. Returns 0 or MXC_ESTORE. */
int handler_commit(struct handler *h, struct handler_reply *replies, size_t n);

/* handler_commit_nowait - like handler_commit, but never waits for an fsync: the writes are
 * committed (visible to every thread) and *need_sync says whether the replies depend on some of
 * them, in which case they may be sent only after a store_sync_wal that started after this
 * returned. A failed sync is handler_fail_replies. */
int handler_commit_nowait(struct handler *h, struct handler_reply *replies, size_t n, bool *need_sync);

/* handler_fail_replies - replaces each reply (except deferred ones) by a temporary ERROR_STORE
 * error, for replies whose writes did not become durable. */
void handler_fail_replies(struct handler *h, struct handler_reply *replies, size_t n);

/* Slow requests (compaction) are not run inside a round: handler_request marks their reply
 * deferred, and after the round's replies are out the worker runs them one by one with
 * handler_run_deferred, which fills *out. handler_has_deferred says whether one is waiting. */
bool handler_has_deferred(const struct handler *h);
int handler_run_deferred(struct handler *h, struct handler_reply *out);

#endif
