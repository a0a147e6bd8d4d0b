/* The ROUTER loop, Check rounds, sync thread and worker pool of mxcached (see service.h). */
#include "service.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>
#include <rocksdb/c.h>

#include "counters.h"
#include "handler.h"
#include "log.h"
#include "mxc_err.h"
#include "parked.h"
#include "syncer.h"
#include "unsynced.h"
#include "verifier.h"
#include "wire.h"

/* ZeroMQ drops a connection whose message exceeds ZMQ_MAXMSGSIZE without a word to the peer, so
 * the transport limit is set this many times above server.max_request_size: requests between the
 * two get a proper ERROR_TOO_LARGE reply, only absurd ones cost the sender its connection. */
#define SERVICE_TRANSPORT_FACTOR 4
#define SERVICE_HEARTBEAT_IVL_MS 5000      /* ZMTP heartbeats find dead client connections */
#define SERVICE_HEARTBEAT_TIMEOUT_MS 15000
#define SERVICE_LINGER_MS 1000             /* at close, time to flush the last replies */
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
};

/* A reply waiting for a WAL sync: sent once the sync of generation gen has finished. A reply that
 * depends on that generation's own writes (must_sync) becomes an error when the sync fails. */
struct held {
    zmq_msg_t ident, body;
    uint64_t id;
    uint64_t gen;
    bool must_sync;
};

struct service {
    void *zctx;
    void *router;
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
    pthread_mutex_t cfg_lock;
    struct cfgref *cfg;
    bool stopped;
};

static struct cfgref *cfgref_new(struct policy *pol)
{
    struct cfgref *r = malloc(sizeof *r);
    if (!r)
        return NULL;
    r->pol = pol;
    atomic_init(&r->refs, 1);
    return r;
}

static void cfgref_release(struct cfgref *r)
{
    if (r && atomic_fetch_sub(&r->refs, 1) == 1) {
        policy_free(r->pol);
        free(r);
    }
}

static struct cfgref *cfg_acquire(struct service *svc)
{
    pthread_mutex_lock(&svc->cfg_lock);
    struct cfgref *r = svc->cfg;
    atomic_fetch_add(&r->refs, 1);
    pthread_mutex_unlock(&svc->cfg_lock);
    return r;
}

void service_reload(struct service *svc, struct policy *pol)
{
    struct cfgref *r = cfgref_new(pol);
    if (!r) {
        log_msg(LOG_ERR, "RELOAD", "error=\"out of memory\"");
        policy_free(pol);
        return;
    }
    pthread_mutex_lock(&svc->cfg_lock);
    struct cfgref *old = svc->cfg;
    svc->cfg = r;
    pthread_mutex_unlock(&svc->cfg_lock);
    cfgref_release(old);
}

const struct config *service_config(struct service *svc)
{
    return svc->cfg->pol->cfg;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sum_counters(void *arg, uint64_t out[CTR_COUNT])
{
    struct service *svc = arg;
    counters_sum(svc->ctrsets, svc->nworkers + 2, out);
}

/* ---- worker ---- */

static void free_reply(void *data, void *hint)
{
    (void)hint;
    free(data);
}

/* A round's requests: identities and payloads as received, so identities go back unchanged. */
struct round {
    zmq_msg_t *ident;
    zmq_msg_t *payload;
    struct handler_reply *replies;
    size_t n, cap;
};

static int round_grow(struct round *r)
{
    size_t cap = r->cap ? r->cap * 2 : 64;
    zmq_msg_t *i = realloc(r->ident, cap * sizeof *i);
    if (i)
        r->ident = i;
    zmq_msg_t *p = realloc(r->payload, cap * sizeof *p);
    if (p)
        r->payload = p;
    struct handler_reply *rep = realloc(r->replies, cap * sizeof *rep);
    if (rep)
        r->replies = rep;
    if (!i || !p || !rep)
        return MXC_ENOMEM;
    r->cap = cap;
    return MXC_OK;
}

/* worker_recv - appends one batch to r. Returns 1 for a batch, 0 for the stop message,
 * MXC_EAGAIN when flags has ZMQ_DONTWAIT and nothing is queued, <0 on error. The main thread
 * only sends well-formed batches: (identity, payload) pairs in one multipart message. */
static int worker_recv(struct worker *w, struct round *r, int flags)
{
    size_t first = r->n;

    for (;;) {
        if (r->n == r->cap && round_grow(r) != MXC_OK)
            return MXC_ENOMEM;
        zmq_msg_init(&r->ident[r->n]);
        /* Frames of a multipart message arrive together: only its first may find nothing. */
        if (zmq_msg_recv(&r->ident[r->n], w->pair_worker, r->n == first ? flags : 0) < 0) {
            zmq_msg_close(&r->ident[r->n]);
            if (errno == EAGAIN)
                return MXC_EAGAIN;
            if (errno == EINTR)
                continue;
            return MXC_EIO;
        }
        if (!zmq_msg_more(&r->ident[r->n])) {
            /* Only the stop message is a lone frame. */
            zmq_msg_close(&r->ident[r->n]);
            return r->n == first ? 0 : MXC_EPROTO;
        }
        zmq_msg_init(&r->payload[r->n]);
        zmq_msg_recv(&r->payload[r->n], w->pair_worker, 0);
        if (!zmq_msg_more(&r->payload[r->n++]))
            return 1;
    }
}

/* send_reply - one (identity, reply) pair to the main thread; the identity is consumed. An
 * empty reply (out of memory) still travels, so that the main thread's count of requests in
 * flight stays exact; it is not forwarded to the client. */
static void send_reply(struct worker *w, zmq_msg_t *ident, struct handler_reply *rep, bool last)
{
    zmq_msg_t m;

    if (rep->buf)
        zmq_msg_init_data(&m, rep->buf, rep->len, free_reply, NULL);
    else
        zmq_msg_init(&m);
    rep->buf = NULL;
    zmq_msg_send(ident, w->pair_worker, ZMQ_SNDMORE);
    zmq_msg_send(&m, w->pair_worker, last ? 0 : ZMQ_SNDMORE);
}

static void worker_round(struct worker *w, struct round *r)
{
    struct cfgref *cfg = cfg_acquire(w->svc);
    size_t last = 0;

    handler_begin(w->handler, cfg->pol);
    for (size_t i = 0; i < r->n; i++) {
        if (handler_request(w->handler, zmq_msg_data(&r->payload[i]), zmq_msg_size(&r->payload[i]),
                            &r->replies[i]) != MXC_OK)
            memset(&r->replies[i], 0, sizeof r->replies[i]);
        zmq_msg_close(&r->payload[i]);
        if (!r->replies[i].deferred)
            last = i;
    }
    handler_commit(w->handler, r->replies, r->n);
    cfgref_release(cfg);
    ctr_add(&w->ctr, CTR_ROUNDS, 1);
    for (size_t i = 0; i < r->n; i++)
        if (!r->replies[i].deferred)
            send_reply(w, &r->ident[i], &r->replies[i], i == last);
    if (!handler_has_deferred(w->handler))
        return;
    /* Slow requests run after the round's replies are out, with the main thread told to send
     * this worker nothing new meanwhile, so that Checks never wait behind a compaction. */
    atomic_store(&w->slow, true);
    for (size_t i = 0; i < r->n; i++) {
        if (!r->replies[i].deferred)
            continue;
        struct handler_reply rep;
        if (handler_run_deferred(w->handler, &rep) != MXC_OK)
            memset(&rep, 0, sizeof rep);
        send_reply(w, &r->ident[i], &rep, true);
    }
    atomic_store(&w->slow, false);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct round r = {0};
    bool stop = false;
    int rc = 0;
    char name[16];

    snprintf(name, sizeof name, "mxcached-w%u", w->index); /* for top -H and perf */
    pthread_setname_np(pthread_self(), name);

    while (!stop) {
        r.n = 0;
        if ((rc = worker_recv(w, &r, 0)) != 1)
            break;
        /* Group commit: every batch that queued up while the last round was busy (typically
         * waiting for its fsync) joins this round, so one fsync serves them all. */
        while (r.n < w->svc->max_batch) {
            rc = worker_recv(w, &r, ZMQ_DONTWAIT);
            if (rc == 0)
                stop = true;
            if (rc != 1)
                break;
        }
        /* Robustness: requests already taken are answered even when receiving failed, so the
         * main thread's count of requests in flight stays exact. */
        worker_round(w, &r);
        if (rc < 0 && rc != MXC_EAGAIN)
            break;
        rc = 0;
    }
    if (rc < 0)
        log_msg(LOG_ERR, "WORKER", "index=%u error=\"%s\"", w->index, mxc_strerror(rc));
    free(r.ident);
    free(r.payload);
    free(r.replies);
    return NULL;
}

/* ---- main thread ---- */

static int set_int(void *sock, int opt, int value)
{
    return zmq_setsockopt(sock, opt, &value, sizeof value);
}

/* service_bind - creates the ROUTER socket and binds every endpoint. */
static int service_bind(struct service *svc, const struct config *cfg, char *err, size_t errlen)
{
    int64_t maxmsg = (int64_t)cfg->max_request_size * SERVICE_TRANSPORT_FACTOR;

    if (maxmsg > (int64_t)WIRE_MAX_MESSAGE)
        maxmsg = WIRE_MAX_MESSAGE;
    svc->router = zmq_socket(svc->zctx, ZMQ_ROUTER);
    if (!svc->router) {
        snprintf(err, errlen, "cannot create socket: %s", zmq_strerror(errno));
        return MXC_EIO;
    }
    set_int(svc->router, ZMQ_ROUTER_MANDATORY, 1);
    set_int(svc->router, ZMQ_SNDHWM, (int)cfg->socket_hwm);
    set_int(svc->router, ZMQ_RCVHWM, (int)cfg->socket_hwm);
    set_int(svc->router, ZMQ_LINGER, SERVICE_LINGER_MS);
    set_int(svc->router, ZMQ_HEARTBEAT_IVL, SERVICE_HEARTBEAT_IVL_MS);
    set_int(svc->router, ZMQ_HEARTBEAT_TIMEOUT, SERVICE_HEARTBEAT_TIMEOUT_MS);
    set_int(svc->router, ZMQ_TCP_KEEPALIVE, 1);
    zmq_setsockopt(svc->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    for (size_t i = 0; i < cfg->listen.n; i++) {
        if (zmq_bind(svc->router, cfg->listen.items[i]) != 0) {
            snprintf(err, errlen, "cannot listen on %s: %s", cfg->listen.items[i], zmq_strerror(errno));
            return MXC_EIO;
        }
        log_msg(LOG_INFO, "LISTEN", "endpoint=%s", cfg->listen.items[i]);
    }
    return MXC_OK;
}

static int start_workers(struct service *svc, char *err, size_t errlen)
{
    for (unsigned i = 0; i < svc->nworkers; i++) {
        struct worker *w = &svc->workers[i];
        char ep[64];

        w->svc = svc;
        w->index = i;
        snprintf(ep, sizeof ep, "inproc://worker-%p-%u", (void *)svc, i);
        w->pair_main = zmq_socket(svc->zctx, ZMQ_PAIR);
        w->pair_worker = zmq_socket(svc->zctx, ZMQ_PAIR);
        if (!w->pair_main || !w->pair_worker)
            goto fail;
        /* inproc pipes between threads of one process: no HWM, nothing is ever dropped here. */
        set_int(w->pair_main, ZMQ_SNDHWM, 0);
        set_int(w->pair_main, ZMQ_RCVHWM, 0);
        set_int(w->pair_worker, ZMQ_SNDHWM, 0);
        set_int(w->pair_worker, ZMQ_RCVHWM, 0);
        if (zmq_bind(w->pair_main, ep) != 0 || zmq_connect(w->pair_worker, ep) != 0)
            goto fail;
        w->handler = handler_create(&svc->env, &w->ctr);
        if (!w->handler)
            goto fail;
        int rc = pthread_create(&w->thread, NULL, worker_main, w);
        if (rc != 0) {
            snprintf(err, errlen, "cannot start worker: %s", strerror(rc));
            return MXC_EIO;
        }
        w->started = true;
    }
    return MXC_OK;
fail:
    snprintf(err, errlen, "cannot start worker: %s", zmq_strerror(errno));
    return MXC_EIO;
}

_Static_assert(CONFIG_ROUTE_HOSTS_MAX <= PROBE_HOSTS_MAX, "a route's hosts must fit a probe route");
_Static_assert(CONFIG_ROUTE_DOMAINS_MAX <= VERIFIER_DOMAINS_MAX, "a route's domains must fit");

/* start_verifier - the prober for cfg's routes (none: no verification, nothing started). */
static int start_verifier(struct service *svc, const struct config *cfg, char *err, size_t errlen)
{
    struct verifier_route *vr;

    if (cfg->nroutes == 0)
        return MXC_OK;
    if (!(vr = calloc(cfg->nroutes, sizeof *vr)) || !(svc->parked = parked_create())) {
        free(vr);
        snprintf(err, errlen, "out of memory");
        return MXC_ENOMEM;
    }
    for (size_t r = 0; r < cfg->nroutes; r++) {
        const struct config_route *c = &cfg->routes[r];
        struct probe_route *p = &vr[r].probe;
        p->name = c->domains.n ? c->domains.items[0] : "";
        for (size_t h = 0; h < c->hosts.n; h++)
            p->hosts[h] = c->hosts.items[h];
        p->nhosts = c->hosts.n;
        p->helo = c->helo;
        p->mail_from = c->mail_from;
        p->connect_ms = c->connect_timeout;
        p->greeting_ms = c->greeting_timeout;
        p->command_ms = c->command_timeout;
        p->max_sessions = (unsigned)c->max_sessions;
        p->session_probes = (unsigned)c->session_probes;
        p->session_idle_ms = c->session_idle;
        for (size_t d = 0; d < c->domains.n; d++)
            vr[r].domains[d] = c->domains.items[d];
        vr[r].ndomains = c->domains.n;
        vr[r].probes_per_second = (unsigned)c->probes_per_second;
    }
    struct verifier_conf vc = {
        .routes = vr,
        .nroutes = cfg->nroutes,
        .max_probes = (unsigned)cfg->verify_max_probes,
        .client_probes_per_minute = (unsigned)cfg->verify_client_probes_per_minute,
        .circuit_failures = (unsigned)cfg->verify_circuit_failures,
        .circuit_open_ms = cfg->verify_circuit_open,
        .acceptall_interval_ms = cfg->verify_acceptall_interval,
    };
    svc->verifier = verifier_create(&vc, err, errlen);
    free(vr);
    return svc->verifier ? MXC_OK : MXC_EIO;
}

/* watch_key - the store's report of each key the main thread's handler reads or writes: notes
 * which not yet durable write the current request depends on. */
static void watch_key(void *arg, Mxcache__Keyspace ks, const char *key, size_t keylen, bool write)
{
    struct service *svc = arg;

    if (write) {
        unsynced_write(svc->unsynced, ks, key, keylen);
        return;
    }
    uint64_t gen = unsynced_read(svc->unsynced, ks, key, keylen, &svc->cur_this_round);
    if (gen > svc->synced_gen && gen > svc->cur_dep)
        svc->cur_dep = gen;
}

struct service *service_create(struct policy *pol, store *st, struct whitelist *wl, char *err,
                               size_t errlen)
{
    struct service *svc = calloc(1, sizeof *svc);
    const struct config *cfg = pol->cfg;
    long cpus;

    if (!svc) {
        policy_free(pol);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&svc->cfg_lock, NULL);
    svc->cfg = cfgref_new(pol);
    if (!svc->cfg) {
        policy_free(pol);
        snprintf(err, errlen, "out of memory");
        free(svc);
        return NULL;
    }
    cpus = sysconf(_SC_NPROCESSORS_ONLN);
    svc->nworkers = cfg->workers ? (unsigned)cfg->workers : (unsigned)(cpus > 0 ? cpus : 1);
    svc->max_batch = (unsigned)cfg->max_batch;
    svc->max_queued = (size_t)cfg->max_queued;
    svc->shutdown_timeout_ms = cfg->shutdown_timeout;
    svc->env.st = st;
    svc->env.wl = wl;
    svc->env.workers = svc->nworkers;
    svc->env.started_ms = store_now_ms(st);
    svc->env.counters_fn = sum_counters;
    svc->env.counters_arg = svc;
    svc->workers = calloc(svc->nworkers, sizeof *svc->workers);
    svc->ctrsets = calloc(svc->nworkers + 2, sizeof *svc->ctrsets);
    svc->in_ident = calloc(svc->max_batch, sizeof *svc->in_ident);
    svc->in_payload = calloc(svc->max_batch, sizeof *svc->in_payload);
    svc->check_replies = calloc(svc->max_batch, sizeof *svc->check_replies);
    svc->check_index = calloc(svc->max_batch, sizeof *svc->check_index);
    svc->check_dep = calloc(svc->max_batch, sizeof *svc->check_dep);
    svc->check_this_round = calloc(svc->max_batch, sizeof *svc->check_this_round);
    svc->unsynced = unsynced_create();
    svc->handler = handler_create(&svc->env, &svc->ctr);
    svc->zctx = zmq_ctx_new();
    if (!svc->workers || !svc->ctrsets || !svc->zctx || !svc->in_ident || !svc->in_payload ||
        !svc->check_replies || !svc->check_index || !svc->check_dep || !svc->check_this_round ||
        !svc->unsynced || !svc->handler) {
        snprintf(err, errlen, "out of memory");
        service_destroy(svc);
        return NULL;
    }
    handler_watch(svc->handler, watch_key, svc);
    if (start_verifier(svc, cfg, err, errlen) != MXC_OK) {
        service_destroy(svc);
        return NULL;
    }
    if (!(svc->syncer = syncer_create(svc->zctx, st, cfg->store_sync_interval * 1000, err, errlen))) {
        service_destroy(svc);
        return NULL;
    }
    svc->ctrsets[0] = &svc->ctr;
    for (unsigned i = 0; i < svc->nworkers; i++)
        svc->ctrsets[i + 1] = &svc->workers[i].ctr;
    svc->ctrsets[svc->nworkers + 1] = syncer_counters(svc->syncer);
    if (service_bind(svc, cfg, err, errlen) != MXC_OK || start_workers(svc, err, errlen) != MXC_OK) {
        service_destroy(svc);
        return NULL;
    }
    return svc;
}

static void stop_workers(struct service *svc)
{
    if (svc->stopped)
        return;
    svc->stopped = true;
    for (unsigned i = 0; i < svc->nworkers; i++) {
        struct worker *w = &svc->workers[i];
        if (w->started) {
            zmq_send(w->pair_main, "", 0, 0);
            pthread_join(w->thread, NULL);
            w->started = false;
        }
    }
}

void service_destroy(struct service *svc)
{
    if (!svc)
        return;
    if (svc->workers) {
        stop_workers(svc);
        for (unsigned i = 0; i < svc->nworkers; i++) {
            struct worker *w = &svc->workers[i];
            handler_destroy(w->handler);
            if (w->pair_main)
                zmq_close(w->pair_main);
            if (w->pair_worker)
                zmq_close(w->pair_worker);
        }
    }
    syncer_destroy(svc->syncer);
    verifier_destroy(svc->verifier);
    parked_destroy(svc->parked);
    handler_destroy(svc->handler);
    for (; svc->nheld > 0; svc->nheld--) { /* only after a failed drain */
        struct held *e = &svc->held[svc->held_head++ % svc->held_cap];
        zmq_msg_close(&e->ident);
        zmq_msg_close(&e->body);
    }
    if (svc->router)
        zmq_close(svc->router);
    if (svc->zctx)
        zmq_ctx_term(svc->zctx);
    cfgref_release(svc->cfg);
    pthread_mutex_destroy(&svc->cfg_lock);
    free(svc->workers);
    free(svc->ctrsets);
    free(svc->in_ident);
    free(svc->in_payload);
    free(svc->check_replies);
    free(svc->check_index);
    free(svc->check_dep);
    free(svc->check_this_round);
    unsynced_destroy(svc->unsynced);
    free(svc->held);
    free(svc);
}

/* discard_rest - drops the remaining frames of a message with a bad frame count. */
static void discard_rest(void *sock)
{
    int more = 1;
    size_t moresz = sizeof more;
    zmq_msg_t m;

    while (more) {
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        zmq_msg_close(&m);
        zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &moresz);
    }
}

/* least_busy - the worker with the fewest requests in flight, passing over workers busy with a
 * slow request unless all of them are. */
static struct worker *least_busy(struct service *svc)
{
    struct worker *best = NULL;
    bool best_slow = true;

    for (unsigned i = 0; i < svc->nworkers; i++) {
        struct worker *w = &svc->workers[i];
        bool slow = atomic_load_explicit(&w->slow, memory_order_relaxed);
        if (!best || (best_slow && !slow) || (slow == best_slow && w->inflight < best->inflight)) {
            best = w;
            best_slow = slow;
        }
    }
    return best;
}

/* reply_error - answers a request the main thread refuses itself (bad framing, shutting down):
 * an error reply to the same envelope, id from the payload when it can be read. */
static void reply_error(struct service *svc, zmq_msg_t *ident, bool req_delimiter, const uint8_t *payload,
                        size_t len, Mxcache__ErrorCode code, const char *text)
{
    Mxcache__Reply rep = MXCACHE__REPLY__INIT;
    Mxcache__Error e = MXCACHE__ERROR__INIT;
    uint8_t *buf;
    size_t buflen;
    zmq_msg_t m;

    e.code = code;
    e.message = (char *)text;
    rep.version = WIRE_VERSION;
    rep.id = payload ? wire_peek_id(payload, len) : 0;
    rep.body_case = MXCACHE__REPLY__BODY_ERROR;
    rep.error = &e;
    if (wire_reply_pack(&rep, &buf, &buflen) != MXC_OK) {
        zmq_msg_close(ident);
        return;
    }
    zmq_msg_init_data(&m, buf, buflen, free_reply, NULL);
    if (zmq_msg_send(ident, svc->router, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        (req_delimiter && zmq_send(svc->router, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) ||
        zmq_msg_send(&m, svc->router, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(ident);
        zmq_msg_close(&m);
        ctr_add(&svc->ctr, CTR_REPLIES_DROPPED, 1);
    }
}

/* recv_request - takes one message from the ROUTER into id and pl (initialised here).
 * FRAME_NONE: nothing is waiting, and there is nothing to close. FRAME_OK: (identity, payload),
 * our framing. FRAME_BAD: any other framing; pl holds the message's last frame and *delim says
 * whether a REQ socket's empty delimiter came before it; the caller answers with reply_error
 * (which takes id) and closes pl. */
enum frame_kind { FRAME_NONE, FRAME_OK, FRAME_BAD };
static enum frame_kind recv_request(struct service *svc, zmq_msg_t *id, zmq_msg_t *pl, bool *delim)
{
    zmq_msg_init(id);
    if (zmq_msg_recv(id, svc->router, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(id);
        return FRAME_NONE;
    }
    zmq_msg_init(pl);
    *delim = false;
    if (!zmq_msg_more(id))
        return FRAME_BAD;
    zmq_msg_recv(pl, svc->router, ZMQ_DONTWAIT);
    if (!zmq_msg_more(pl))
        return FRAME_OK;
    *delim = zmq_msg_size(pl) == 0;
    zmq_msg_close(pl);
    zmq_msg_init(pl);
    zmq_msg_recv(pl, svc->router, ZMQ_DONTWAIT);
    if (zmq_msg_more(pl))
        discard_rest(svc->router);
    return FRAME_BAD;
}

/* send_to_client - sends (identity, body) on the ROUTER; both are consumed. A client that went
 * away (EHOSTUNREACH) or stopped reading (EAGAIN at the high-water mark) loses its reply: the
 * loop never blocks on one peer. */
static void send_to_client(struct service *svc, zmq_msg_t *id, zmq_msg_t *body)
{
    if (zmq_msg_send(id, svc->router, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(id);
        zmq_msg_close(body);
        ctr_add(&svc->ctr, CTR_REPLIES_DROPPED, 1);
        return;
    }
    if (zmq_msg_send(body, svc->router, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(body);
        ctr_add(&svc->ctr, CTR_REPLIES_DROPPED, 1);
    }
}

static int held_grow(struct service *svc)
{
    size_t cap = svc->held_cap ? svc->held_cap * 2 : 256;
    struct held *h = calloc(cap, sizeof *h);

    if (!h)
        return MXC_ENOMEM;
    /* zmq_msg_t is moved with zmq_msg_move, never copied as bytes. */
    for (size_t i = 0; i < svc->nheld; i++) {
        struct held *from = &svc->held[(svc->held_head + i) % svc->held_cap];
        h[i] = *from;
        zmq_msg_init(&h[i].ident);
        zmq_msg_init(&h[i].body);
        zmq_msg_move(&h[i].ident, &from->ident);
        zmq_msg_move(&h[i].body, &from->body);
        zmq_msg_close(&from->ident);
        zmq_msg_close(&from->body);
    }
    free(svc->held);
    svc->held = h;
    svc->held_cap = cap;
    svc->held_head = 0;
    return MXC_OK;
}

/* deliver - sends a reply (identity and body consumed) when every write it rests on is durable,
 * that is the sync of generation gen has finished, or holds it until then: a reply sent earlier
 * might rest on a write that a crash could still undo. id and must_sync: see struct held. */
static void deliver(struct service *svc, zmq_msg_t *ident, zmq_msg_t *body, uint64_t id,
                    uint64_t gen, bool must_sync)
{
    if (gen <= svc->synced_gen) {
        send_to_client(svc, ident, body);
        return;
    }
    if (svc->nheld == svc->held_cap && held_grow(svc) != MXC_OK) {
        /* Robustness: without memory to hold it the reply is dropped, never sent early; the
         * client's timeout gives a temporary answer. */
        zmq_msg_close(ident);
        zmq_msg_close(body);
        ctr_add(&svc->ctr, CTR_REPLIES_DROPPED, 1);
        return;
    }
    struct held *e = &svc->held[(svc->held_head + svc->nheld++) % svc->held_cap];
    zmq_msg_init(&e->ident);
    zmq_msg_init(&e->body);
    zmq_msg_move(&e->ident, ident);
    zmq_msg_move(&e->body, body);
    zmq_msg_close(ident);
    zmq_msg_close(body);
    e->id = id;
    e->gen = gen;
    e->must_sync = must_sync;
    ctr_add(&svc->ctr, CTR_REPLIES_HELD, 1);
}

/* release_held - a sync up to generation gen finished (ok: the writes are durable): sends the
 * replies that waited for it; those that depended on writes it failed to sync become errors. */
static void release_held(struct service *svc, uint64_t gen, bool ok)
{
    if (gen > svc->synced_gen)
        svc->synced_gen = gen;
    unsynced_done(svc->unsynced, gen);
    /* FIFO: a reply behind one that waits for a later sync waits with it (one sync at most). */
    while (svc->nheld > 0 && svc->held[svc->held_head].gen <= gen) {
        struct held *e = &svc->held[svc->held_head];
        if (!ok && e->must_sync) {
            struct handler_reply r = {.id = e->id};
            handler_fail_replies(svc->handler, &r, 1);
            zmq_msg_close(&e->body);
            if (r.buf)
                zmq_msg_init_data(&e->body, r.buf, r.len, free_reply, NULL);
            else
                zmq_msg_init(&e->body);
        }
        if (zmq_msg_size(&e->body) > 0) {
            send_to_client(svc, &e->ident, &e->body);
        } else {
            zmq_msg_close(&e->ident);
            zmq_msg_close(&e->body);
            ctr_add(&svc->ctr, CTR_REPLIES_DROPPED, 1);
        }
        svc->held_head = (svc->held_head + 1) % svc->held_cap;
        svc->nheld--;
    }
}

/* answer_parked - sends the reply of a Check that waited for the prober (ident consumed, v
 * freed), once the sync it depends on (its own, or gen) has finished. Inside a round: the
 * handler must have begun one with the current policy. */
static void answer_parked(struct service *svc, struct parked_entry *e, enum handler_verify_end end,
                          const struct verify_answer *a, const struct probe_result *res,
                          uint64_t gen)
{
    struct handler_reply r;
    zmq_msg_t body;
    int rc = e->v->kind == HANDLER_VERIFY_CHECK
                 ? handler_verify_reply(svc->handler, e->v, e->id, end, a, &r)
                 : handler_verify_probe_reply(svc->handler, e->v, e->id, res, a,
                                              end != HANDLER_VERIFY_REFUSED, &r);

    if (rc != MXC_OK) {
        zmq_msg_close(&e->ident);
        ctr_add(&svc->ctr, CTR_REPLIES_DROPPED, 1);
    } else {
        uint64_t wait = e->dep_gen > gen ? e->dep_gen : gen;
        zmq_msg_init_data(&body, r.buf, r.len, free_reply, NULL);
        deliver(svc, &e->ident, &body, e->id, wait, wait != 0);
    }
    handler_verify_free(e->v);
}

/* park_check - a Check whose recipient has no cached answer: it waits (at most wait_ms) for the
 * probe the prober runs or starts for it; when no probe may start, it is answered at once.
 * ident is consumed, v taken. */
static void park_check(struct service *svc, zmq_msg_t *ident, uint64_t id, uint64_t dep_gen,
                       struct handler_verify *v, uint64_t now, uint64_t wait_ms)
{
    enum handler_verify_end end = HANDLER_VERIFY_REFUSED;
    struct parked_entry e = {.id = id, .dep_gen = dep_gen, .v = v};
    uint64_t token;

    if (v->kind == HANDLER_VERIFY_OPERATOR)
        wait_ms = VERIFY_OPERATOR_WAIT_MS;
    if (v->kind == HANDLER_VERIFY_ACCEPT_ALL_CHECK) {
        if (svc->verifier && verifier_check_accept_all(svc->verifier, v->route, v->domain, now))
            end = HANDLER_VERIFY_ANSWER; /* started */
    } else if (svc->verifier &&
               (token = parked_add(svc->parked, ident, id, dep_gen, now + wait_ms, v))) {
        enum verifier_ask a = v->kind == HANDLER_VERIFY_OPERATOR
                                  ? verifier_probe_now(svc->verifier, v->route, v->address, token, now)
                                  : verifier_ask(svc->verifier, v->route, v->domain, v->address,
                                                 v->client, token, now);
        if (a == VERIFIER_JOINED || a == VERIFIER_STARTED)
            return;
        parked_take(svc->parked, token, &e);
        end = a == VERIFIER_ACCEPT_ALL ? HANDLER_VERIFY_ACCEPT_ALL : HANDLER_VERIFY_REFUSED;
        answer_parked(svc, &e, end, NULL, NULL, 0);
        return;
    }
    zmq_msg_init(&e.ident);
    zmq_msg_move(&e.ident, ident);
    zmq_msg_close(ident);
    answer_parked(svc, &e, end, NULL, NULL, 0);
}

/* rerun_check - a Check parked under verify.before_greylist whose recipient turned out to
 * exist: decided again from its request (verification from the cache now, then greylisting),
 * inside the current round. Its reply into *out; false when it cannot be decided again. */
static bool rerun_check(struct service *svc, const struct handler_verify *v, struct handler_reply *out)
{
    if (handler_request(svc->handler, v->request, v->request_len, out) != MXC_OK || !out->buf) {
        handler_verify_free(out->verify);
        return false;
    }
    handler_verify_free(out->verify); /* a refresh cannot be due on a fresh answer */
    out->verify = NULL;
    return true;
}

/* verify_results - every finished probe: its result goes into the cache (one round each, synced
 * when it decides something), and each Check that waited for it gets the cache's answer (or,
 * under verify.before_greylist, is decided again when the recipient exists). */
static void verify_results(struct service *svc)
{
    struct verifier_done d;

    while (verifier_take(svc->verifier, &d, mono_ms()) == MXC_OK) {
        struct cfgref *cfg = cfg_acquire(svc);
        struct verify_answer a;
        struct parked_entry *e = calloc(d.nwaiters ? d.nwaiters : 1, sizeof *e);
        struct handler_reply *reps = calloc(d.nwaiters ? d.nwaiters : 1, sizeof *reps);
        bool need_sync = false, *rerun = calloc(d.nwaiters ? d.nwaiters : 1, sizeof *rerun);
        uint64_t gen = 0;
        size_t n = 0;

        handler_begin(svc->handler, cfg->pol);
        int rc = handler_verify_result(svc->handler, d.address, &d.result, &a);
        if (rc != MXC_OK)
            memset(&a, 0, sizeof a); /* a miss: the waiters get a temporary answer */
        for (size_t i = 0; e && reps && rerun && i < d.nwaiters; i++) {
            if (!parked_take(svc->parked, d.waiters[i], &e[n]))
                continue;
            svc->cur_dep = 0;
            rerun[n] = e[n].v->request && a.state == VERIFY_POSITIVE && rerun_check(svc, e[n].v, &reps[n]);
            if (rerun[n] && svc->cur_dep > e[n].dep_gen)
                e[n].dep_gen = svc->cur_dep; /* what it read of earlier rounds, not yet durable */
            n++;
        }
        if (handler_commit_nowait(svc->handler, reps, n, &need_sync) != MXC_OK)
            memset(&a, 0, sizeof a);
        if (need_sync) {
            if (syncer_request(svc->syncer, svc->write_gen + 1) == MXC_OK) {
                gen = ++svc->write_gen;
            } else {
                log_msg(LOG_ERR, "STORE", "op=sync error=\"cannot reach the sync thread\"");
                memset(&a, 0, sizeof a);
                handler_fail_replies(svc->handler, reps, n);
            }
        }
        unsynced_end_round(svc->unsynced, gen);
        static const char *const outcome[] = {"accepted", "rejected", "tempfail", "failed"};
        log_msg(LOG_INFO, "PROBE", "recipient=%s result=%s code=%u backend=%s ms=%llu waiters=%zu%s%s",
                d.address, outcome[d.result.outcome], d.result.reply.code, d.result.backend,
                (unsigned long long)d.result.duration_ms, d.nwaiters,
                d.result.detail[0] ? " detail=" : "", d.result.detail);
        for (size_t i = 0; i < n; i++) {
            if (!rerun[i]) {
                answer_parked(svc, &e[i], HANDLER_VERIFY_ANSWER, &a, &d.result, gen);
                continue;
            }
            zmq_msg_t body;
            uint64_t wait = e[i].dep_gen > gen ? e[i].dep_gen : gen;
            zmq_msg_init_data(&body, reps[i].buf, reps[i].len, free_reply, NULL);
            deliver(svc, &e[i].ident, &body, e[i].id, wait, wait != 0);
            handler_verify_free(e[i].v);
        }
        if (!e || !reps || !rerun) { /* out of memory: the waiters time out at their clients */
            for (size_t i = 0; i < d.nwaiters; i++) {
                struct parked_entry x;
                if (parked_take(svc->parked, d.waiters[i], &x)) {
                    zmq_msg_close(&x.ident);
                    handler_verify_free(x.v);
                    ctr_add(&svc->ctr, CTR_REPLIES_DROPPED, 1);
                }
            }
        }
        free(e);
        free(reps);
        free(rerun);
        cfgref_release(cfg);
        verifier_done_fini(&d);
    }
}

/* mirror_verifier - copies the prober's figures into the main thread's counters, where Stats
 * reads them (the prober itself is the main thread's alone). */
static void mirror_verifier(struct service *svc)
{
    struct verifier_stats s;
    struct counters *c = &svc->ctr;

    verifier_stats(svc->verifier, &s);
    ctr_set(c, CTR_VERIFY_ASKED, s.asked);
    ctr_set(c, CTR_VERIFY_JOINED, s.joined);
    ctr_set(c, CTR_VERIFY_STARTED, s.started);
    ctr_set(c, CTR_VERIFY_REFUSED_CLIENT, s.refused_client);
    ctr_set(c, CTR_VERIFY_REFUSED_ROUTE, s.refused_route);
    ctr_set(c, CTR_VERIFY_REFUSED_CIRCUIT, s.refused_circuit);
    ctr_set(c, CTR_VERIFY_REFUSED_BUSY, s.refused_busy);
    ctr_set(c, CTR_VERIFY_REFUSED_ACCEPTALL, s.refused_accept_all);
    ctr_set(c, CTR_VERIFY_REFUSED_INVALID, s.refused_invalid);
    ctr_set(c, CTR_GAUGE_CLIENTS, s.clients);
    ctr_set(c, CTR_VERIFY_ACCEPTALL_PROBES, s.acceptall_probes);
    ctr_set(c, CTR_PROBE_ACCEPTED, s.probe.accepted);
    ctr_set(c, CTR_PROBE_REJECTED, s.probe.rejected);
    ctr_set(c, CTR_PROBE_TEMPFAIL, s.probe.tempfail);
    ctr_set(c, CTR_PROBE_FAILED, s.probe.failed);
    ctr_set(c, CTR_PROBE_SESSIONS, s.probe.sessions_opened);
    ctr_set(c, CTR_PROBE_SESSIONS_REUSED, s.probe.sessions_reused);
    ctr_set(c, CTR_PROBE_CONNECT_FAILURES, s.probe.connect_failures);
    ctr_set(c, CTR_GAUGE_PROBES_RUNNING, s.running);
    ctr_set(c, CTR_GAUGE_CIRCUITS_OPEN, s.circuits_open);
    ctr_set(c, CTR_GAUGE_ACCEPT_ALL, s.domains_accept_all);
}

/* expire_parked - the Checks whose verify.wait ran out before their probe: 450 4.1.1. */
static void expire_parked(struct service *svc, uint64_t now)
{
    struct cfgref *cfg = NULL;
    struct parked_entry e;

    while (parked_expired(svc->parked, now, &e)) {
        if (!cfg) {
            cfg = cfg_acquire(svc);
            handler_begin(svc->handler, cfg->pol);
        }
        answer_parked(svc, &e, HANDLER_VERIFY_PENDING, NULL, NULL, 0);
    }
    if (cfg)
        cfgref_release(cfg);
}

/* check_round - decides the n Checks just read (check_index) on this thread as one round. Its
 * writes are committed without waiting for the disk; when some are decisive, a sync of a new
 * generation is asked for, and the replies that rest on them (the request wrote one, or read a
 * key written before it in the round) wait for it; a reply that read a write of an earlier round
 * not yet durable waits for that round's sync; the others leave at once. */
static void check_round(struct service *svc, size_t n)
{
    struct cfgref *cfg = cfg_acquire(svc);
    struct handler_reply *reps = svc->check_replies;
    bool need_sync = false;

    handler_begin(svc->handler, cfg->pol);
    for (size_t i = 0; i < n; i++) {
        zmq_msg_t *pl = &svc->in_payload[svc->check_index[i]];
        svc->cur_dep = 0;
        svc->cur_this_round = false;
        if (handler_request(svc->handler, zmq_msg_data(pl), zmq_msg_size(pl), &reps[i]) != MXC_OK)
            memset(&reps[i], 0, sizeof reps[i]);
        zmq_msg_close(pl);
        svc->check_dep[i] = svc->cur_dep;
        svc->check_this_round[i] = svc->cur_this_round;
    }
    handler_commit_nowait(svc->handler, reps, n, &need_sync);
    ctr_add(&svc->ctr, CTR_ROUNDS, 1);
    uint64_t gen = 0;
    if (need_sync) {
        if (syncer_request(svc->syncer, svc->write_gen + 1) == MXC_OK) {
            gen = ++svc->write_gen;
        } else {
            log_msg(LOG_ERR, "STORE", "op=sync error=\"cannot reach the sync thread\"");
            handler_fail_replies(svc->handler, reps, n);
        }
    }
    unsynced_end_round(svc->unsynced, gen);
    uint64_t now = mono_ms(), wait_ms = cfg->pol->cfg->verify_wait;
    for (size_t i = 0; i < n; i++) {
        zmq_msg_t *id = &svc->in_ident[svc->check_index[i]], body;
        struct handler_verify *v = reps[i].verify;
        bool mine = gen != 0 && (reps[i].durable || svc->check_this_round[i]);
        uint64_t wait = mine ? gen : svc->check_dep[i];
        reps[i].verify = NULL;
        if (v && v->park && !reps[i].buf) {
            park_check(svc, id, reps[i].id, wait, v, now, wait_ms);
            continue;
        }
        if (v && svc->verifier) /* a cached positive due for refresh */
            verifier_refresh(svc->verifier, v->route, v->domain, v->address, now);
        handler_verify_free(v);
        if (!reps[i].buf) { /* out of memory: the client's timeout answers */
            zmq_msg_close(id);
            ctr_add(&svc->ctr, CTR_REPLIES_DROPPED, 1);
            continue;
        }
        zmq_msg_init_data(&body, reps[i].buf, reps[i].len, free_reply, NULL);
        deliver(svc, id, &body, reps[i].id, wait, wait != 0);
    }
    cfgref_release(cfg);
}

/* read_requests - takes up to max_batch waiting requests from the ROUTER: Checks are decided
 * here (check_round), everything else (admin requests, some of them long scans) goes to the
 * least busy worker as one multipart message. A message must be exactly (identity, payload):
 * DEALER clients send one frame. */
static void read_requests(struct service *svc)
{
    size_t n = 0, nchecks = 0, prev = SIZE_MAX;
    struct worker *w = NULL;

    while (n < svc->max_batch) {
        zmq_msg_t *id = &svc->in_ident[n], *pl = &svc->in_payload[n];
        bool delim;
        enum frame_kind k = recv_request(svc, id, pl, &delim);
        if (k == FRAME_NONE)
            break;
        if (k == FRAME_BAD) {
            /* A REQ socket's delimiter is answered in kind, so that it gets the error too. */
            reply_error(svc, id, delim, zmq_msg_data(pl), zmq_msg_size(pl),
                        MXCACHE__ERROR_CODE__ERROR_MALFORMED,
                        "a request is one frame from a DEALER socket, without delimiter");
            zmq_msg_close(pl);
            ctr_add(&svc->ctr, CTR_BAD_FRAMES, 1);
            continue;
        }
        Mxcache__Request__BodyCase body = wire_peek_body(zmq_msg_data(pl), zmq_msg_size(pl));
        if (body == MXCACHE__REQUEST__BODY_CHECK || body == MXCACHE__REQUEST__BODY_VERIFY) {
            svc->check_index[nchecks++] = n++;
            continue;
        }
        /* The batch for the worker: each pair is sent once the next one shows it is not last. */
        if (prev != SIZE_MAX) {
            zmq_msg_send(&svc->in_ident[prev], w->pair_main, ZMQ_SNDMORE);
            zmq_msg_send(&svc->in_payload[prev], w->pair_main, ZMQ_SNDMORE);
        } else {
            w = least_busy(svc);
        }
        prev = n++;
        w->inflight++;
    }
    if (prev != SIZE_MAX) {
        zmq_msg_send(&svc->in_ident[prev], w->pair_main, ZMQ_SNDMORE);
        zmq_msg_send(&svc->in_payload[prev], w->pair_main, 0);
    }
    if (nchecks > 0)
        check_round(svc, nchecks);
}

/* refuse_queued - answers every request still queued on the ROUTER with ERROR_UNAVAILABLE, so
 * that clients move to another endpoint at once instead of waiting for their timeout. */
static void refuse_queued(struct service *svc)
{
    for (;;) {
        zmq_msg_t id, pl;
        bool delim;
        if (recv_request(svc, &id, &pl, &delim) == FRAME_NONE)
            return;
        reply_error(svc, &id, delim, zmq_msg_data(&pl), zmq_msg_size(&pl),
                    MXCACHE__ERROR_CODE__ERROR_UNAVAILABLE, "the service is shutting down");
        zmq_msg_close(&pl);
    }
}

/* forward_replies - sends every reply batch waiting from worker w to the clients. */
static void forward_replies(struct service *svc, struct worker *w)
{
    zmq_msg_t id, rep;

    for (;;) {
        zmq_msg_init(&id);
        if (zmq_msg_recv(&id, w->pair_main, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&id);
            return;
        }
        zmq_msg_init(&rep);
        zmq_msg_recv(&rep, w->pair_main, 0);
        w->inflight--;
        if (zmq_msg_size(&rep) == 0) {
            zmq_msg_close(&id);
            zmq_msg_close(&rep);
            ctr_add(&svc->ctr, CTR_REPLIES_DROPPED, 1);
            continue;
        }
        /* A worker's own writes are synced before it replies, but what it read may be a
         * Check round's write still waiting for its sync. */
        deliver(svc, &id, &rep, 0, svc->write_gen, false);
    }
}

/* total_inflight - requests taken and not yet answered: at workers, waiting for a probe or
 * for a sync. */
static size_t total_inflight(const struct service *svc)
{
    size_t n = svc->nheld + (svc->parked ? parked_count(svc->parked) : 0);
    for (unsigned i = 0; i < svc->nworkers; i++)
        n += svc->workers[i].inflight;
    return n;
}

int service_run(struct service *svc, int sigfd,
                enum service_signal_action (*on_signal)(void *arg, int signo), void *arg)
{
    size_t nitems = svc->nworkers + 4;
    zmq_pollitem_t *items = calloc(nitems, sizeof *items);
    bool draining = false;
    uint64_t deadline = 0;
    int rc = MXC_OK;

    if (!items)
        return MXC_ENOMEM;
    /* 1 is kDisable: RocksDB's per-thread perf counters, which nothing here reads, are not
     * kept on every Get of the Check rounds. */
    rocksdb_set_perf_level(1);
    items[0].fd = sigfd;
    items[0].events = ZMQ_POLLIN;
    items[1].socket = svc->router;
    items[1].events = ZMQ_POLLIN;
    items[2].socket = syncer_socket(svc->syncer);
    items[2].events = ZMQ_POLLIN;
    for (unsigned i = 0; i < svc->nworkers; i++) {
        items[i + 3].socket = svc->workers[i].pair_main;
        items[i + 3].events = ZMQ_POLLIN;
    }
    zmq_pollitem_t *vitem = &items[svc->nworkers + 3];
    vitem->fd = svc->verifier ? verifier_fd(svc->verifier) : -1;
    vitem->events = svc->verifier ? ZMQ_POLLIN : 0;
    if (!svc->verifier)
        nitems--;
    for (;;) {
        long timeout = -1;
        if (draining) {
            uint64_t now = mono_ms();
            if (total_inflight(svc) == 0)
                break;
            if (now >= deadline) {
                log_msg(LOG_WARNING, "SHUTDOWN", "unanswered=%zu error=\"shutdown timeout\"",
                        total_inflight(svc));
                rc = MXC_ETIMEDOUT;
                break;
            }
            timeout = (long)(deadline - now);
        }
        if (svc->verifier) {
            uint64_t now = mono_ms();
            long t = parked_next_ms(svc->parked, now), v = verifier_next_ms(svc->verifier, now);
            if (t >= 0 && (timeout < 0 || t < timeout))
                timeout = t;
            if (v >= 0 && (timeout < 0 || v < timeout))
                timeout = v;
        }
        /* Backpressure: past max_queued the ROUTER is not read, so clients' queues fill and
         * ZeroMQ's high-water marks push back instead of this process growing. */
        items[1].events = (!draining && total_inflight(svc) < svc->max_queued) ? ZMQ_POLLIN : 0;
        if (zmq_poll(items, (int)nitems, timeout) < 0) {
            if (errno == EINTR)
                continue;
            log_msg(LOG_ERR, "POLL", "error=\"%s\"", zmq_strerror(errno));
            rc = MXC_EIO;
            break;
        }
        if (items[2].revents & ZMQ_POLLIN) {
            uint64_t gen;
            bool ok;
            while (syncer_result(svc->syncer, &gen, &ok) == MXC_OK)
                release_held(svc, gen, ok);
        }
        for (unsigned i = 0; i < svc->nworkers; i++)
            if (items[i + 3].revents & ZMQ_POLLIN)
                forward_replies(svc, &svc->workers[i]);
        if (svc->verifier) {
            uint64_t now = mono_ms();
            if (vitem->revents & ZMQ_POLLIN)
                verify_results(svc);
            expire_parked(svc, now);
            if (verifier_next_ms(svc->verifier, now) == 0)
                verifier_tick(svc->verifier, now);
            mirror_verifier(svc);
        }
        if (items[1].revents & ZMQ_POLLIN)
            read_requests(svc);
        if (items[0].revents & ZMQ_POLLIN) {
            struct signalfd_siginfo si;
            if (read(sigfd, &si, sizeof si) == (ssize_t)sizeof si && !draining &&
                on_signal(arg, (int)si.ssi_signo) == SERVICE_STOP) {
                draining = true;
                deadline = mono_ms() + svc->shutdown_timeout_ms;
                /* Stop taking new requests; the ones already read are answered, a compaction
                 * among them cut short. */
                refuse_queued(svc);
                store_cancel_compaction(svc->env.st);
                log_msg(LOG_INFO, "DRAIN", "inflight=%zu", total_inflight(svc));
            }
        }
    }
    free(items);
    /* A compaction in progress would hold its worker (and the join below) past the deadline. */
    store_cancel_compaction(svc->env.st);
    stop_workers(svc);
    return rc;
}
