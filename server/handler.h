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
#include "addr.h"
#include "store.h"
#include "verify.h"
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
    struct handler_verify *verify; /* malloc'd, owned by the holder: see below */
};

/* A Check that needs the prober. With park, it has no reply yet (no buf): it waits for a probe
 * of address, and its reply comes from handler_verify_reply. Without park, its reply is final,
 * and a cached positive for address is due for a background refresh. */
enum handler_verify_kind {
    HANDLER_VERIFY_CHECK,     /* a Check's recipient */
    HANDLER_VERIFY_OPERATOR,  /* an operator's fresh probe (Verify request) */
    HANDLER_VERIFY_ACCEPT_ALL_CHECK, /* an operator's accept-all probe of domain */
};

struct handler_verify {
    enum handler_verify_kind kind;
    bool park;
    bool count;                          /* a decision to count (not an explain run) */
    unsigned route;                      /* index into the config's verify.routes */
    char address[ADDR_MAX_PATH + 1];     /* canonical recipient */
    char domain[ADDR_MAX_DOMAIN + 1];
    char client[GREYLIST_CLIENT_MAX + 1]; /* the per-client probe limit's key */
    uint64_t received_us;                /* when the service read the request (monotonic), for
                                            its duration; set by the service */
    char prepend[GREYLIST_TEXT_MAX];     /* greylisting's header, for a final pass */
    /* for the decision's log line */
    char mx[ADDR_MAX_DOMAIN + 1];
    char queue_id[65];
    char client_address[65];
    char sender[ADDR_MAX_PATH + 1];
    /* verify.before_greylist: a positive answer is not final, the Check is decided again
     * (greylisting next) from this copy of the request. */
    uint8_t *request;
    size_t request_len;
};

/* handler_verify_free - frees v and what it owns; NULL-safe. */
void handler_verify_free(struct handler_verify *v);

/* How a parked Check ends. */
enum handler_verify_end {
    HANDLER_VERIFY_ANSWER,    /* the probe's result is in the cache: answer from it */
    HANDLER_VERIFY_PENDING,   /* verify.wait ran out first: 450 4.1.1 verify.pending_text */
    HANDLER_VERIFY_REFUSED,   /* no probe may start (a limit, an open circuit): 450 4.1.1 */
    HANDLER_VERIFY_ACCEPT_ALL, /* the domain's backend accepts anything: nothing to verify */
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

/* handler_rerun - handler_request for a request already counted when it first came (a Check
 * decided again after its probe): the same, but not counted as a new request again. */
int handler_rerun(struct handler *h, const uint8_t *msg, size_t len, struct handler_reply *out);

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

/* handler_verify_result - in a round: records the result r of the probe of address in the cache,
 * and gives the cache's answer for it now in *a (a failed refresh keeps a positive). A result
 * that changes what Checks are told makes the round durable. Returns 0 or an MXC_E* code. */
int handler_verify_result(struct handler *h, const char *address, const struct probe_result *r,
                          struct verify_answer *a);

/* handler_verify_reply - the reply of parked Check v (request id) ending as end; a: the cache's
 * answer for HANDLER_VERIFY_ANSWER (else unused). Counts the decision. 0 or MXC_ENOMEM. */
int handler_verify_reply(struct handler *h, const struct handler_verify *v, uint64_t id,
                         enum handler_verify_end end, const struct verify_answer *a,
                         struct handler_reply *out);

/* handler_verify_probe_reply - the reply of an operator's Verify request v (request id): the probe
 * r and the cache's answer a after it; r NULL: it did not finish in time (started) or could
 * not start; for an accept-all check, whether it started. 0 or MXC_ENOMEM. */
int handler_verify_probe_reply(struct handler *h, const struct handler_verify *v, uint64_t id,
                               const struct probe_result *r, const struct verify_answer *a,
                               bool started, struct handler_reply *out);

/* Slow requests (compaction) are not run inside a round: handler_request marks their reply
 * deferred, and after the round's replies are out the worker runs them one by one with
 * handler_run_deferred, which fills *out. handler_has_deferred says whether one is waiting. */
bool handler_has_deferred(const struct handler *h);
int handler_run_deferred(struct handler *h, struct handler_reply *out);

#endif
