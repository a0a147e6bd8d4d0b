/* Event counters and latency histograms of mxcached, reported by the Stats request (the named
 * counters) and by /metrics (everything, see metrics.c).
 *
 * Each thread owns one struct counters and is its only writer, so an increment is a relaxed
 * load and store, with no locked instruction and no cache line shared between workers; readers
 * in other threads sum the sets with counters_sum and counters_totals. Besides the named
 * counters a set holds two matrices that would flood the Stats list (requests by type and
 * outcome, decisions by action and rule) and the thread's histograms (histo.h). */
#ifndef MXCACHED_COUNTERS_H
#define MXCACHED_COUNTERS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "histo.h"

#define COUNTERS(X)                                                           \
    X(CTR_REQ_CHECK, "requests_check")                                        \
    X(CTR_REQ_GET, "requests_get")                                            \
    X(CTR_REQ_LIST, "requests_list")                                          \
    X(CTR_REQ_DELETE, "requests_delete")                                      \
    X(CTR_REQ_FLUSH, "requests_flush")                                        \
    X(CTR_REQ_STATS, "requests_stats")                                        \
    X(CTR_REQ_WHITELIST_ADD, "requests_whitelist_add")                        \
    X(CTR_REQ_WHITELIST_REMOVE, "requests_whitelist_remove")                  \
    X(CTR_REQ_WHITELIST_LIST, "requests_whitelist_list")                      \
    X(CTR_REQ_COMPACT, "requests_compact")                                    \
    X(CTR_REQ_VERIFY, "requests_verify")                                      \
    X(CTR_REQ_PING, "requests_ping")                                          \
    X(CTR_ERR_MALFORMED, "requests_malformed")                                \
    X(CTR_ERR_TOO_LARGE, "requests_too_large")                                \
    X(CTR_ERR_VERSION, "requests_bad_version")                                \
    X(CTR_ERR_INVALID, "requests_invalid_argument")                           \
    X(CTR_ERR_STORE_REPLY, "requests_store_error")  /* answered ERROR_STORE */ \
    X(CTR_ERR_UNAVAILABLE, "requests_unavailable")  /* answered ERROR_UNAVAILABLE */ \
    X(CTR_ERR_INTERNAL, "requests_internal_error")  /* answered ERROR_INTERNAL */ \
    X(CTR_ERR_STORE, "store_errors")          /* failed store reads, commits, syncs */ \
    X(CTR_BAD_FRAMES, "messages_bad_framing")                                 \
    X(CTR_REPLIES_DROPPED, "replies_dropped")                                 \
    X(CTR_DECISION_DUNNO, "decisions_dunno")                                  \
    X(CTR_DECISION_DEFER, "decisions_defer")                                  \
    X(CTR_DECISION_REJECT, "decisions_reject")                                \
    X(CTR_RULE_WHITELIST, "decisions_rule_whitelist")                         \
    X(CTR_RULE_DEFAULT, "decisions_rule_default")                             \
    X(CTR_RULE_AWL, "decisions_rule_awl")                                     \
    X(CTR_RULE_GREYLIST_NEW, "decisions_rule_greylist_new")                   \
    X(CTR_RULE_GREYLIST_EARLY, "decisions_rule_greylist_early")               \
    X(CTR_RULE_GREYLIST_PASS, "decisions_rule_greylist_pass")                 \
    X(CTR_RULE_GREYLIST_KNOWN, "decisions_rule_greylist_known")               \
    X(CTR_RULE_VERIFY_POSITIVE, "decisions_rule_verify_positive")             \
    X(CTR_RULE_VERIFY_NEGATIVE, "decisions_rule_verify_negative")             \
    X(CTR_RULE_VERIFY_TEMPFAIL, "decisions_rule_verify_tempfail")             \
    X(CTR_RULE_VERIFY_PENDING, "decisions_rule_verify_pending")               \
    X(CTR_RULE_VERIFY_REFUSED, "decisions_rule_verify_refused")               \
    X(CTR_RULE_VERIFY_ACCEPTALL, "decisions_rule_verify_acceptall")           \
    X(CTR_RULE_VERIFY_BAD_ADDRESS, "decisions_rule_verify_bad_address")       \
    X(CTR_VERIFY_WAITED, "verify_checks_waited")    /* Checks that waited for a probe */ \
    X(CTR_VERIFY_TIMED_OUT, "verify_checks_timed_out") /* ... whose verify.wait ran out */ \
    X(CTR_VERIFY_CACHE_POSITIVE, "verify_cache_positive") /* Checks answered from the cache */ \
    X(CTR_VERIFY_CACHE_NEGATIVE, "verify_cache_negative")                     \
    X(CTR_VERIFY_CACHE_TEMPFAIL, "verify_cache_tempfail")                     \
    X(CTR_VERIFY_CACHE_MISSES, "verify_cache_misses") /* ... that found nothing cached */ \
    X(CTR_VERIFY_ASKED, "verify_probe_questions")   /* questions to the prober */ \
    X(CTR_VERIFY_JOINED, "verify_probe_joined")     /* ... that joined a running probe */ \
    X(CTR_VERIFY_STARTED, "verify_probes_started")                            \
    X(CTR_VERIFY_REFUSED_CLIENT, "verify_refused_client_limit")               \
    X(CTR_VERIFY_REFUSED_ROUTE, "verify_refused_route_limit")                 \
    X(CTR_VERIFY_REFUSED_CIRCUIT, "verify_refused_circuit_open")              \
    X(CTR_VERIFY_REFUSED_BUSY, "verify_refused_busy")                         \
    X(CTR_VERIFY_REFUSED_ACCEPTALL, "verify_refused_accept_all") /* not probed: accept-all */ \
    X(CTR_VERIFY_REFUSED_INVALID, "verify_refused_invalid")   /* refused by the engine */ \
    X(CTR_VERIFY_ACCEPTALL_PROBES, "verify_acceptall_probes")                 \
    X(CTR_PROBE_ACCEPTED, "probe_results_accepted")                           \
    X(CTR_PROBE_REJECTED, "probe_results_rejected")                           \
    X(CTR_PROBE_TEMPFAIL, "probe_results_tempfail")                           \
    X(CTR_PROBE_FAILED, "probe_results_failed")                               \
    X(CTR_PROBE_SESSIONS, "probe_sessions_opened")                            \
    X(CTR_PROBE_SESSIONS_REUSED, "probe_sessions_reused")                     \
    X(CTR_PROBE_CONNECT_FAILURES, "probe_connect_failures")                   \
    X(CTR_GAUGE_PROBES_RUNNING, "verify_probes_running")      /* now, not a total */ \
    X(CTR_GAUGE_CIRCUITS_OPEN, "verify_circuits_open")        /* now */ \
    X(CTR_GAUGE_ACCEPT_ALL, "verify_domains_accept_all")      /* now */ \
    X(CTR_GAUGE_CLIENTS, "verify_client_buckets")             /* now */ \
    X(CTR_VERIFY_REFRESHES, "verify_refreshes_due") /* cached positives due for refresh */ \
    X(CTR_GREYLIST_NEW, "greylist_new")             /* new triplets deferred */ \
    X(CTR_GREYLIST_DEFERRED, "greylist_deferred")   /* early retries deferred */ \
    X(CTR_GREYLIST_PASSED, "greylist_passed")       /* retries after the delay */ \
    X(CTR_GREYLIST_KNOWN, "greylist_known")         /* triplets that had passed */ \
    X(CTR_GREYLIST_AWL, "greylist_awl")             /* passed by the auto-whitelist */ \
    X(CTR_GREYLIST_SKIPPED, "greylist_skipped")     /* off, or off for the domain */ \
    X(CTR_CHECK_EXPLAIN, "requests_check_explain")  /* dry runs, not decisions */ \
    X(CTR_ROUNDS, "worker_rounds")                                            \
    X(CTR_COMMITS, "store_commits")                                           \
    X(CTR_COMMITS_LAZY, "store_commits_lazy")                                 \
    X(CTR_COMMIT_WRITES, "store_commit_writes")                               \
    X(CTR_COMMIT_USEC, "store_commit_microseconds")                           \
    X(CTR_WAL_SYNCS, "store_wal_syncs")       /* pipelined syncs of Check rounds */ \
    X(CTR_WAL_SYNC_USEC, "store_wal_sync_microseconds")                       \
    X(CTR_REPLIES_HELD, "replies_held_for_sync")                              \
    X(CTR_CONNECTIONS, "connections_accepted")                                \
    X(CTR_GAUGE_CONNECTIONS, "connections_open")           /* now */          \
    X(CTR_AUTH_DENIED_KEY, "auth_denied_unknown_key")      /* at the handshake */ \
    X(CTR_AUTH_DENIED_ADDRESS, "auth_denied_address")      /* not in security.allow */ \
    X(CTR_AUTH_DENIED_REVOKED, "auth_denied_revoked_key")  /* key unlisted by a reload */ \
    X(CTR_AUTH_DENIED_ADMIN, "auth_denied_admin_request")  /* client key, admin request */ \
    X(CTR_LIMIT_CONNECTIONS, "limit_max_connections")                         \
    X(CTR_LIMIT_CONNECTIONS_CLIENT, "limit_max_connections_per_client")       \
    X(CTR_LIMIT_INFLIGHT_CLIENT, "limit_max_inflight_per_client")             \
    X(CTR_LIMIT_QUEUED, "limit_max_queued")     /* times reading paused at max_queued */ \
    X(CTR_LIMIT_LIST_PAGE, "limit_list_page_max")  /* list pages cut to list_page_max */

#define COUNTER_ENUM(id, name) id,
enum counter_id { COUNTERS(COUNTER_ENUM) CTR_COUNT };
#undef COUNTER_ENUM

/* The decision rules, in the order of CTR_RULE_WHITELIST .. CTR_RULE_VERIFY_BAD_ADDRESS. */
#define CTR_RULES (CTR_RULE_VERIFY_BAD_ADDRESS - CTR_RULE_WHITELIST + 1)
#define CTR_ACTIONS 3 /* dunno, defer, reject: Mxcache__Action 1..3 */

/* Request types: 0 for a request that did not decode or has no body, else the index of its
 * Mxcache__Request__BodyCase (10 check .. 21 ping) minus CTR_REQ_TYPE_BASE. */
#define CTR_REQ_TYPE_BASE 9
#define CTR_REQ_TYPES 13

/* The kinds of requests whose duration is measured from receipt to reply. */
enum ctr_req_kind {
    CTR_KIND_NONE,  /* not measured (bad framing, refused while stopping) */
    CTR_KIND_CHECK, /* Check and Verify: decided on the main thread */
    CTR_KIND_ADMIN, /* everything a worker answers */
};

struct counters {
    _Atomic uint64_t v[CTR_COUNT];
    _Atomic uint64_t requests[CTR_REQ_TYPES][2];          /* [type][0 ok, 1 error reply] */
    _Atomic uint64_t decisions[CTR_ACTIONS][CTR_RULES];   /* [action - 1][rule] */
    struct histo req_check, req_admin; /* receipt to reply sent, microseconds (main thread) */
    struct histo commit;               /* a round's write, microseconds */
    struct histo wal_sync;             /* an fsync of the WAL, microseconds (sync thread) */
    struct histo greylist_delay;       /* first seen to pass, seconds */
};

/* ctr_add - adds n to counter id; only the owning thread calls it. */
static inline void ctr_add(struct counters *c, enum counter_id id, uint64_t n)
{
    atomic_store_explicit(&c->v[id], atomic_load_explicit(&c->v[id], memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* ctr_set - sets counter id (a figure copied from elsewhere, or a gauge); owning thread only. */
static inline void ctr_set(struct counters *c, enum counter_id id, uint64_t v)
{
    atomic_store_explicit(&c->v[id], v, memory_order_relaxed);
}

/* ctr_inc - adds 1 to one cell of a matrix; owning thread only. */
static inline void ctr_inc(_Atomic uint64_t *cell)
{
    atomic_store_explicit(cell, atomic_load_explicit(cell, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* ctr_req_type - the request type index of a body case (Mxcache__Request__BodyCase). */
static inline unsigned ctr_req_type(int body_case)
{
    return body_case > CTR_REQ_TYPE_BASE && body_case < CTR_REQ_TYPE_BASE + CTR_REQ_TYPES
               ? (unsigned)(body_case - CTR_REQ_TYPE_BASE)
               : 0;
}

/* ctr_request - counts one answered request of type (ctr_req_type) with an error reply or not. */
static inline void ctr_request(struct counters *c, unsigned type, bool error)
{
    ctr_inc(&c->requests[type < CTR_REQ_TYPES ? type : 0][error ? 1 : 0]);
}

/* ctr_observe - records v in histogram h of c (the owning thread); a set that was never
 * initialised (a test's zeroed struct) records nothing. */
static inline void ctr_observe(struct histo *h, uint64_t v)
{
    if (h->spec)
        histo_observe(h, v);
}

/* counters_init - an empty set with its histograms' buckets. */
void counters_init(struct counters *c);

/* counters_name - the counter's name as the Stats request reports it. */
const char *counters_name(enum counter_id id);

/* counters_sum - adds the n sets in sets[] into out[CTR_COUNT] (zeroed first). Any thread. */
void counters_sum(struct counters *const *sets, size_t n, uint64_t out[CTR_COUNT]);

/* Everything of several sets added up, for a scrape. */
struct counters_totals {
    uint64_t v[CTR_COUNT];
    uint64_t requests[CTR_REQ_TYPES][2];
    uint64_t decisions[CTR_ACTIONS][CTR_RULES];
    struct histo_snapshot req_check, req_admin, commit, wal_sync, greylist_delay;
};

/* counters_totals - sums the n sets into *out (overwritten). Any thread. */
void counters_totals(struct counters *const *sets, size_t n, struct counters_totals *out);

#endif
