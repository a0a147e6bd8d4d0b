/* The private interface between the parts of mxcached's request loop: service.c (the ROUTER
 * loop, Check rounds, held replies, workers) and service_verify.c (recipient verification: the
 * prober and the Checks that wait for it). Not for other modules: they use service.h. Everything
 * here belongs to the main thread unless a field says otherwise. */
#ifndef MXCACHED_SERVICE_INT_H
#define MXCACHED_SERVICE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "config.h"
#include "counters.h"
#include "handler.h"
#include "parked.h"
#include "service.h"
#include "strmap.h"

#define VERIFY_OPERATOR_WAIT_MS 300000     /* an operator's probe: every stage's timeout, in all */

/* A policy shared by the workers, freed when the last round using it ends. */
struct cfgref {
    struct policy *pol;
    atomic_uint refs;
};

struct worker {
    struct service *svc;
    unsigned index;
    pthread_t thread;
    bool started;
    void *pair_main;   /* main thread's end */
    void *pair_worker; /* worker thread's end */
    struct handler *handler;
    struct counters ctr;
    size_t inflight;   /* requests handed over and not yet answered (main thread only) */
    atomic_bool slow;  /* running a deferred request (compaction): send it nothing new */
    atomic_bool alive; /* its thread runs (for /readyz) */
};

/* A reply waiting for a WAL sync: sent once the sync of generation gen has finished. A reply that
 * depends on that generation's own writes (must_sync) becomes an error when the sync fails. */
struct held {
    zmq_msg_t ident, body;
    uint64_t id;
    uint64_t gen;
    bool must_sync;
    uint64_t received_us;      /* when the request was read, for its duration */
    enum ctr_req_kind kind;
};

struct service {
    void *zctx;
    void *router;
    struct zap *zap;       /* authentication and connection counts (zap.h) */
    bool curve;            /* the ROUTER is a CURVE server: requests carry a User-Id */
    /* Requests taken and not yet answered, per client connection (ROUTER identity -> count),
     * for server.max_inflight_per_client. Main thread. */
    strmap *client_inflight;
    uint64_t max_inflight_per_client;
    bool paused;          /* reading stopped at max_queued (counted once per pause) */
    struct worker *workers;
    unsigned nworkers;
    /* Checks are decided on the main thread (no hand-over to a worker and back); their rounds
     * commit without waiting and the syncer makes the writes durable while the next rounds run. */
    struct handler *handler;
    struct syncer *syncer;
    /* Recipient verification (only with verify.routes): the prober and the Checks that wait
     * for it. */
    struct verifier *verifier;
    struct parked *parked;
    struct handler_reply *check_replies; /* max_batch */
    size_t *check_index;                 /* max_batch: which read request each Check is */
    /* What each Check of the round read that is not durable yet (see unsynced.h). */
    struct unsynced *unsynced;
    uint64_t *check_dep;                 /* max_batch: the sync of an earlier round it waits for */
    bool *check_this_round;              /* max_batch: it read a key written earlier in the round */
    uint64_t cur_dep;                    /* of the request being handled */
    bool cur_this_round;
    uint64_t write_gen;   /* generations of writes asked to be synced */
    uint64_t synced_gen;  /* every write up to this generation is durable */
    struct held *held;    /* FIFO ring of replies waiting for a sync, gen non-decreasing */
    size_t held_head, nheld, held_cap;
    unsigned max_batch;
    size_t max_queued;
    uint64_t shutdown_timeout_ms;
    struct handler_env env;
    struct counters ctr; /* the main thread's */
    struct counters **ctrsets;
    zmq_msg_t *in_ident, *in_payload; /* read_requests' buffers, max_batch each */
    uint64_t read_us;     /* when read_requests took the current batch (monotonic) */
    atomic_bool running;  /* the request loop runs and is not draining (for /readyz) */
    pthread_mutex_t cfg_lock;
    struct cfgref *cfg;
    bool stopped;
};

/* service_cfg_acquire - the current policy, held until service_cfgref_release (any thread). */
struct cfgref *service_cfg_acquire(struct service *svc);
void service_cfgref_release(struct cfgref *r);

/* service_mono_ms, service_mono_us - the monotonic clock in milliseconds, microseconds. */
uint64_t service_mono_ms(void);
uint64_t service_mono_us(void);

/* service_free_reply - ZeroMQ's free function of a reply buffer (malloc'd). */
void service_free_reply(void *data, void *hint);

/* service_drop_reply - gives up on answering a request: closes ident and body (may be NULL),
 * ends the request's count against its client's max_inflight_per_client, counts the drop. */
void service_drop_reply(struct service *svc, zmq_msg_t *ident, zmq_msg_t *body);

/* service_deliver - sends a reply (identity and body consumed) once the sync of generation gen
 * has finished, at once when it has; id and must_sync: see struct held. When it leaves, the
 * time since received_us goes into the request duration histogram of kind. */
void service_deliver(struct service *svc, zmq_msg_t *ident, zmq_msg_t *body, uint64_t id,
                     uint64_t gen, bool must_sync, uint64_t received_us, enum ctr_req_kind kind);

/* ---- service_verify.c ---- */

/* service_verify_start - the prober for cfg's routes (none: nothing started). 0, or an MXC_E*
 * code with err filled. */
int service_verify_start(struct service *svc, const struct config *cfg, char *err, size_t errlen);

/* service_verify_park - a Check (or an operator's Verify) that needs the prober: it waits, at
 * most wait_ms, for the probe that runs or starts for it, or is answered at once when no probe
 * may start. ident is consumed, v taken; dep_gen: the sync its reply depends on. */
void service_verify_park(struct service *svc, zmq_msg_t *ident, uint64_t id, uint64_t dep_gen,
                         struct handler_verify *v, uint64_t now, uint64_t wait_ms);

/* service_verify_results - every finished probe: into the cache, and to the Checks that waited. */
void service_verify_results(struct service *svc);

/* service_verify_expire - the Checks whose verify.wait ran out before their probe: 450 4.1.1. */
void service_verify_expire(struct service *svc, uint64_t now);

/* service_verify_mirror - the prober's figures into the main thread's counters. */
void service_verify_mirror(struct service *svc);

#endif
