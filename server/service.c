/* The ROUTER loop, Check rounds, held replies, sync thread and worker pool of mxcached (see
 * service.h); recipient verification lives in service_verify.c, behind service_int.h. */
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
#include "keyfile.h"
#include "log.h"
#include "mxc_err.h"
#include "parked.h"
#include "service_int.h"
#include "syncer.h"
#include "unsynced.h"
#include "verifier.h"
#include "wire.h"
#include "zap.h"

/* ZeroMQ drops a connection whose message exceeds ZMQ_MAXMSGSIZE without a word to the peer, so
 * the transport limit is set this many times above server.max_request_size: requests between the
 * two get a proper ERROR_TOO_LARGE reply, only absurd ones cost the sender its connection. */
#define SERVICE_TRANSPORT_FACTOR 4
#define SERVICE_HEARTBEAT_IVL_MS 5000      /* ZMTP heartbeats find dead client connections */
#define SERVICE_HEARTBEAT_TIMEOUT_MS 15000
#define SERVICE_LINGER_MS 1000             /* at close, time to flush the last replies */
#define SERVICE_HANDSHAKE_IVL_MS 10000     /* a connection's ZMTP/CURVE handshake, at most */
#define SERVICE_EXTRA_SETS 3  /* counter sets besides the workers': main thread, sync, ZAP */

static struct cfgref *cfgref_new(struct policy *pol)
{
    struct cfgref *r = malloc(sizeof *r);
    if (!r)
        return NULL;
    r->pol = pol;
    atomic_init(&r->refs, 1);
    return r;
}

void service_cfgref_release(struct cfgref *r)
{
    if (r && atomic_fetch_sub(&r->refs, 1) == 1) {
        policy_free(r->pol);
        free(r);
    }
}

struct cfgref *service_cfg_acquire(struct service *svc)
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
    service_cfgref_release(old);
}

const struct config *service_config(struct service *svc)
{
    return svc->cfg->pol->cfg;
}

uint64_t service_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t service_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void sum_counters(void *arg, uint64_t out[CTR_COUNT])
{
    struct service *svc = arg;
    counters_sum(svc->ctrsets, svc->nworkers + SERVICE_EXTRA_SETS, out);
}

/* ---- worker ---- */

void service_free_reply(void *data, void *hint)
{
    (void)hint;
    free(data);
}

/* A round's requests: identities and payloads as received, so identities go back unchanged. */
struct round {
    zmq_msg_t *ident;
    zmq_msg_t *payload;
    uint64_t *received_us; /* the main thread's stamp of each request, returned with its reply */
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
    uint64_t *t = realloc(r->received_us, cap * sizeof *t);
    if (t)
        r->received_us = t;
    if (!i || !p || !rep || !t)
        return MXC_ENOMEM;
    r->cap = cap;
    return MXC_OK;
}

/* worker_recv - appends one batch to r. Returns 1 for a batch, 0 for the stop message,
 * MXC_EAGAIN when flags has ZMQ_DONTWAIT and nothing is queued, <0 on error. The main thread
 * only sends well-formed batches: (identity, stamp, payload) triples in one multipart message,
 * the stamp being the 8-byte time the main thread read the request. */
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
        r->received_us[r->n] = 0;
        zmq_recv(w->pair_worker, &r->received_us[r->n], sizeof r->received_us[r->n], 0);
        zmq_msg_init(&r->payload[r->n]);
        zmq_msg_recv(&r->payload[r->n], w->pair_worker, 0);
        if (!zmq_msg_more(&r->payload[r->n++]))
            return 1;
    }
}

/* send_reply - one (identity, stamp, reply) triple to the main thread; the identity is
 * consumed. An empty reply (out of memory) still travels, so that the main thread's count of
 * requests in flight stays exact; it is not forwarded to the client. */
static void send_reply(struct worker *w, zmq_msg_t *ident, uint64_t received_us,
                       struct handler_reply *rep, bool last)
{
    zmq_msg_t m;

    if (rep->buf)
        zmq_msg_init_data(&m, rep->buf, rep->len, service_free_reply, NULL);
    else
        zmq_msg_init(&m);
    rep->buf = NULL;
    zmq_msg_send(ident, w->pair_worker, ZMQ_SNDMORE);
    zmq_send(w->pair_worker, &received_us, sizeof received_us, ZMQ_SNDMORE);
    zmq_msg_send(&m, w->pair_worker, last ? 0 : ZMQ_SNDMORE);
}

static void worker_round(struct worker *w, struct round *r)
{
    struct cfgref *cfg = service_cfg_acquire(w->svc);
    size_t last = 0;

    handler_begin(w->handler, cfg->pol);
    for (size_t i = 0; i < r->n; i++) {
        if (handler_request(w->handler, zmq_msg_data(&r->payload[i]), zmq_msg_size(&r->payload[i]),
                            &r->replies[i]) != MXC_OK)
            memset(&r->replies[i], 0, sizeof r->replies[i]);
        zmq_msg_close(&r->payload[i]);
        /* Robustness: only the main thread can wait for a probe. read_requests routes Checks
         * there by the same body the decoder sees, so this cannot happen; if it did, the
         * question is dropped (its client's timeout answers 4xx) rather than leaked. */
        handler_verify_free(r->replies[i].verify);
        r->replies[i].verify = NULL;
        if (!r->replies[i].deferred)
            last = i;
    }
    handler_commit(w->handler, r->replies, r->n);
    service_cfgref_release(cfg);
    ctr_add(&w->ctr, CTR_ROUNDS, 1);
    for (size_t i = 0; i < r->n; i++)
        if (!r->replies[i].deferred)
            send_reply(w, &r->ident[i], r->received_us[i], &r->replies[i], i == last);
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
        send_reply(w, &r->ident[i], r->received_us[i], &rep, true);
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
    atomic_store(&w->alive, false);
    free(r.ident);
    free(r.payload);
    free(r.replies);
    free(r.received_us);
    return NULL;
}

/* ---- main thread ---- */

static int set_int(void *sock, int opt, int value)
{
    return zmq_setsockopt(sock, opt, &value, sizeof value);
}

/* service_bind - creates the ROUTER socket, makes it a CURVE server with the key pair of
 * security.key_file (when set), starts the ZAP handler (before any bind: a connection that
 * arrived before it would be let in unasked) and binds every endpoint. */
static int service_bind(struct service *svc, const struct config *cfg, char *err, size_t errlen)
{
    int64_t maxmsg = (int64_t)cfg->max_request_size * SERVICE_TRANSPORT_FACTOR;
    struct keyfile kf;

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
    set_int(svc->router, ZMQ_IPV6, 1); /* IPv6 endpoints, and dual-stack wildcard ones */
    /* Security: a connection that never completes its greeting holds a max_connections slot for
     * this long at most (libzmq's default is 30 s). */
    set_int(svc->router, ZMQ_HANDSHAKE_IVL, SERVICE_HANDSHAKE_IVL_MS);
    zmq_setsockopt(svc->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    svc->curve = cfg->security_key_file[0] != '\0';
    if (svc->curve) {
        char kerr[512];
        int rc = keyfile_read(cfg->security_key_file, true, &kf, kerr, sizeof kerr);
        if (rc != MXC_OK) {
            snprintf(err, errlen, "security.key_file: %s", kerr);
            return rc;
        }
        if (set_int(svc->router, ZMQ_CURVE_SERVER, 1) != 0 ||
            zmq_setsockopt(svc->router, ZMQ_CURVE_SECRETKEY, kf.secret_key, KEYFILE_Z85_LEN) != 0) {
            snprintf(err, errlen, "cannot make the socket a CURVE server: %s (libzmq without "
                     "libsodium?)", zmq_strerror(errno));
            memset(&kf, 0, sizeof kf);
            return MXC_EIO;
        }
        log_msg(LOG_INFO, "CURVE", "key=%s name=%s", kf.public_key, kf.name);
        memset(&kf, 0, sizeof kf);
    }
    zmq_setsockopt(svc->router, ZMQ_ZAP_DOMAIN, ZAP_DOMAIN, strlen(ZAP_DOMAIN));
    svc->zap = zap_start(svc, svc->zctx, svc->router, err, errlen);
    if (!svc->zap)
        return MXC_EIO;
    for (size_t i = 0; i < cfg->listen.n; i++) {
        if (zmq_bind(svc->router, cfg->listen.items[i]) != 0) {
            snprintf(err, errlen, "cannot listen on %s: %s", cfg->listen.items[i], zmq_strerror(errno));
            return MXC_EIO;
        }
        log_msg(LOG_INFO, "LISTEN", "endpoint=%s security=%s", cfg->listen.items[i],
                svc->curve ? "curve" : "none");
        if (!svc->curve)
            log_msg(LOG_WARNING, "INSECURE",
                    "endpoint=%s reason=\"no security.key_file: whoever can connect may ask and "
                    "administer, unencrypted\"", cfg->listen.items[i]);
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
        atomic_store(&w->alive, true);
        int rc = pthread_create(&w->thread, NULL, worker_main, w);
        if (rc != 0) {
            atomic_store(&w->alive, false);
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

struct service *service_create(struct policy *pol, char *err, size_t errlen)
{
    struct service *svc = calloc(1, sizeof *svc);
    const struct config *cfg = pol->cfg;

    if (!svc) {
        policy_free(pol);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&svc->cfg_lock, NULL);
    counters_init(&svc->ctr);
    atomic_init(&svc->running, false);
    svc->cfg = cfgref_new(pol);
    if (!svc->cfg) {
        policy_free(pol);
        snprintf(err, errlen, "out of memory");
        free(svc);
        return NULL;
    }
    svc->max_batch = (unsigned)cfg->max_batch;
    svc->max_queued = (size_t)cfg->max_queued;
    svc->max_inflight_per_client = (uint64_t)cfg->max_inflight_per_client;
    svc->shutdown_timeout_ms = cfg->shutdown_timeout;
    svc->zctx = zmq_ctx_new();
    svc->client_inflight = strmap_create();
    if (!svc->zctx || !svc->client_inflight) {
        snprintf(err, errlen, "out of memory");
        service_destroy(svc);
        return NULL;
    }
    if (service_bind(svc, cfg, err, errlen) != MXC_OK) {
        service_destroy(svc);
        return NULL;
    }
    return svc;
}

int service_start(struct service *svc, store *st, struct whitelist *wl, char *err, size_t errlen)
{
    const struct config *cfg = svc->cfg->pol->cfg;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    svc->nworkers = cfg->workers ? (unsigned)cfg->workers : (unsigned)(cpus > 0 ? cpus : 1);
    svc->env.st = st;
    svc->env.wl = wl;
    svc->env.workers = svc->nworkers;
    svc->env.started_ms = store_now_ms(st);
    svc->env.counters_fn = sum_counters;
    svc->env.counters_arg = svc;
    svc->workers = calloc(svc->nworkers, sizeof *svc->workers);
    svc->ctrsets = calloc(svc->nworkers + SERVICE_EXTRA_SETS, sizeof *svc->ctrsets);
    svc->in_ident = calloc(svc->max_batch, sizeof *svc->in_ident);
    svc->in_payload = calloc(svc->max_batch, sizeof *svc->in_payload);
    svc->check_replies = calloc(svc->max_batch, sizeof *svc->check_replies);
    svc->check_index = calloc(svc->max_batch, sizeof *svc->check_index);
    svc->check_dep = calloc(svc->max_batch, sizeof *svc->check_dep);
    svc->check_this_round = calloc(svc->max_batch, sizeof *svc->check_this_round);
    svc->unsynced = unsynced_create();
    svc->handler = handler_create(&svc->env, &svc->ctr);
    if (!svc->workers || !svc->ctrsets || !svc->in_ident || !svc->in_payload ||
        !svc->check_replies || !svc->check_index || !svc->check_dep || !svc->check_this_round ||
        !svc->unsynced || !svc->handler) {
        snprintf(err, errlen, "out of memory");
        return MXC_ENOMEM;
    }
    handler_watch(svc->handler, watch_key, svc);
    if (service_verify_start(svc, cfg, err, errlen) != MXC_OK)
        return MXC_EIO;
    if (!(svc->syncer = syncer_create(svc->zctx, st, cfg->store_sync_interval * 1000, err, errlen)))
        return MXC_EIO;
    svc->ctrsets[0] = &svc->ctr;
    for (unsigned i = 0; i < svc->nworkers; i++) {
        counters_init(&svc->workers[i].ctr);
        svc->ctrsets[i + 1] = &svc->workers[i].ctr;
    }
    svc->ctrsets[svc->nworkers + 1] = syncer_counters(svc->syncer);
    svc->ctrsets[svc->nworkers + 2] = zap_counters(svc->zap);
    return start_workers(svc, err, errlen);
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
    zap_stop(svc->zap);
    strmap_destroy(svc->client_inflight);
    for (; svc->nheld > 0; svc->nheld--) { /* only after a failed drain */
        struct held *e = &svc->held[svc->held_head++ % svc->held_cap];
        zmq_msg_close(&e->ident);
        zmq_msg_close(&e->body);
    }
    if (svc->router)
        zmq_close(svc->router);
    if (svc->zctx)
        zmq_ctx_term(svc->zctx);
    service_cfgref_release(svc->cfg);
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

/* client_take - counts a request taken from the client connection ident; false (nothing
 * counted) when the connection already has max_inflight_per_client requests unanswered. */
static bool client_take(struct service *svc, const zmq_msg_t *ident)
{
    const char *k = zmq_msg_data((zmq_msg_t *)ident);
    size_t klen = zmq_msg_size((zmq_msg_t *)ident);
    uint64_t n = 0;

    strmap_get(svc->client_inflight, k, klen, &n);
    if (n >= svc->max_inflight_per_client)
        return false;
    /* Robustness: without memory to count it the request is still served; its done() finds no
     * entry and does nothing. */
    strmap_put(svc->client_inflight, k, klen, n + 1);
    return true;
}

/* client_done - the end of a request counted by client_take (answered or given up). */
static void client_done(struct service *svc, const zmq_msg_t *ident)
{
    const char *k = zmq_msg_data((zmq_msg_t *)ident);
    size_t klen = zmq_msg_size((zmq_msg_t *)ident);
    uint64_t n = 0;

    if (!strmap_get(svc->client_inflight, k, klen, &n))
        return;
    if (n <= 1)
        strmap_del(svc->client_inflight, k, klen);
    else
        strmap_put(svc->client_inflight, k, klen, n - 1);
}

void service_drop_reply(struct service *svc, zmq_msg_t *ident, zmq_msg_t *body)
{
    client_done(svc, ident);
    zmq_msg_close(ident);
    if (body)
        zmq_msg_close(body);
    ctr_add(&svc->ctr, CTR_REPLIES_DROPPED, 1);
}

/* reply_error - answers a request the main thread refuses itself (bad framing, shutting down,
 * a limit, a key without the right): an error reply to the same envelope, id from the payload
 * when it can be read. counted: the request was counted by client_take. */
static void reply_error(struct service *svc, zmq_msg_t *ident, bool counted, bool req_delimiter,
                        const uint8_t *payload, size_t len, Mxcache__ErrorCode code, const char *text)
{
    Mxcache__Reply rep = MXCACHE__REPLY__INIT;
    Mxcache__Error e = MXCACHE__ERROR__INIT;
    uint8_t *buf;
    size_t buflen;
    zmq_msg_t m;

    if (counted)
        client_done(svc, ident);
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
    zmq_msg_init_data(&m, buf, buflen, service_free_reply, NULL);
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
static void send_to_client(struct service *svc, zmq_msg_t *id, zmq_msg_t *body,
                           uint64_t received_us, enum ctr_req_kind kind)
{
    client_done(svc, id);
    if (zmq_msg_send(id, svc->router, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(id);
        zmq_msg_close(body);
        ctr_add(&svc->ctr, CTR_REPLIES_DROPPED, 1);
        return;
    }
    if (zmq_msg_send(body, svc->router, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(body);
        ctr_add(&svc->ctr, CTR_REPLIES_DROPPED, 1);
        return;
    }
    if (kind != CTR_KIND_NONE) {
        /* Performance: one clock read per reply; the read side stamps a whole batch with one. */
        uint64_t now = service_mono_us(), d = now > received_us ? now - received_us : 0;
        ctr_observe(kind == CTR_KIND_CHECK ? &svc->ctr.req_check : &svc->ctr.req_admin, d);
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

/* service_deliver - sends a reply (identity and body consumed) when every write it rests on is durable,
 * that is the sync of generation gen has finished, or holds it until then: a reply sent earlier
 * might rest on a write that a crash could still undo. id and must_sync: see struct held. */
void service_deliver(struct service *svc, zmq_msg_t *ident, zmq_msg_t *body, uint64_t id,
                    uint64_t gen, bool must_sync, uint64_t received_us, enum ctr_req_kind kind)
{
    if (gen <= svc->synced_gen) {
        send_to_client(svc, ident, body, received_us, kind);
        return;
    }
    if (svc->nheld == svc->held_cap && held_grow(svc) != MXC_OK) {
        /* Robustness: without memory to hold it the reply is dropped, never sent early; the
         * client's timeout gives a temporary answer. */
        service_drop_reply(svc, ident, body);
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
    e->received_us = received_us;
    e->kind = kind;
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
                zmq_msg_init_data(&e->body, r.buf, r.len, service_free_reply, NULL);
            else
                zmq_msg_init(&e->body);
        }
        if (zmq_msg_size(&e->body) > 0)
            send_to_client(svc, &e->ident, &e->body, e->received_us, e->kind);
        else
            service_drop_reply(svc, &e->ident, &e->body);
        svc->held_head = (svc->held_head + 1) % svc->held_cap;
        svc->nheld--;
    }
}

/* check_round - decides the n Checks just read (check_index) on this thread as one round. Its
 * writes are committed without waiting for the disk; when some are decisive, a sync of a new
 * generation is asked for, and the replies that rest on them (the request wrote one, or read a
 * key written before it in the round) wait for it; a reply that read a write of an earlier round
 * not yet durable waits for that round's sync; the others leave at once. */
static void check_round(struct service *svc, size_t n)
{
    struct cfgref *cfg = service_cfg_acquire(svc);
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
    uint64_t now = service_mono_ms(), wait_ms = cfg->pol->cfg->verify_wait;
    for (size_t i = 0; i < n; i++) {
        zmq_msg_t *id = &svc->in_ident[svc->check_index[i]], body;
        struct handler_verify *v = reps[i].verify;
        bool mine = gen != 0 && (reps[i].durable || svc->check_this_round[i]);
        uint64_t wait = mine ? gen : svc->check_dep[i];
        reps[i].verify = NULL;
        if (v && v->park && !reps[i].buf) {
            v->received_us = svc->read_us;
            service_verify_park(svc, id, reps[i].id, wait, v, now, wait_ms);
            continue;
        }
        if (v && svc->verifier) /* a cached positive due for refresh */
            verifier_refresh(svc->verifier, v->route, v->domain, v->address, now);
        handler_verify_free(v);
        if (!reps[i].buf) { /* out of memory: the client's timeout answers */
            service_drop_reply(svc, id, NULL);
            continue;
        }
        zmq_msg_init_data(&body, reps[i].buf, reps[i].len, service_free_reply, NULL);
        service_deliver(svc, id, &body, reps[i].id, wait, wait != 0, svc->read_us, CTR_KIND_CHECK);
    }
    service_cfgref_release(cfg);
}

/* admit - whether a request just read may be served: its key is still listed (a reload may
 * have removed it since the handshake: the request gets no answer, like an unknown key at the
 * handshake), an admin request comes from an admin key, and its connection is within
 * max_inflight_per_client. Refused requests are answered (or dropped) and closed here. cfg: the
 * policy of the batch when CURVE is on, else NULL. */
static bool admit(struct service *svc, struct cfgref *cfg, zmq_msg_t *id, zmq_msg_t *pl,
                  Mxcache__Request__BodyCase body)
{
    const char *why = NULL;

    if (cfg) {
        const char *user = zmq_msg_gets(pl, "User-Id");
        const struct auth_key *k = auth_find(cfg->pol->auth, user);
        if (!k) {
            zmq_msg_close(id);
            zmq_msg_close(pl);
            ctr_add(&svc->ctr, CTR_AUTH_DENIED_REVOKED, 1);
            return false;
        }
        /* A request without a readable body goes on to the handler, which answers it
         * ERROR_MALFORMED like anybody's. */
        if (!k->admin && body != MXCACHE__REQUEST__BODY__NOT_SET && auth_needs_admin(body)) {
            why = "this client's key may not send admin requests (security.admin_keys)";
            ctr_add(&svc->ctr, CTR_AUTH_DENIED_ADMIN, 1);
            log_msg(LOG_WARNING, "AUTH", "result=denied reason=admin_request name=%s type=%u", k->name,
                    ctr_req_type(body));
            reply_error(svc, id, false, false, zmq_msg_data(pl), zmq_msg_size(pl),
                        MXCACHE__ERROR_CODE__ERROR_DENIED, why);
        }
    }
    if (!why && !client_take(svc, id)) {
        why = "too many requests in flight on this connection (server.max_inflight_per_client)";
        ctr_add(&svc->ctr, CTR_LIMIT_INFLIGHT_CLIENT, 1);
        ctr_add(&svc->ctr, CTR_ERR_UNAVAILABLE, 1);
        reply_error(svc, id, false, false, zmq_msg_data(pl), zmq_msg_size(pl),
                    MXCACHE__ERROR_CODE__ERROR_UNAVAILABLE, why);
    }
    if (!why)
        return true;
    ctr_request(&svc->ctr, ctr_req_type(body), true);
    zmq_msg_close(pl);
    return false;
}

/* read_requests - takes up to max_batch waiting requests from the ROUTER: Checks are decided
 * here (check_round), everything else (admin requests, some of them long scans) goes to the
 * least busy worker as one multipart message. A message must be exactly (identity, payload):
 * DEALER clients send one frame. */
static void read_requests(struct service *svc)
{
    size_t n = 0, nchecks = 0, prev = SIZE_MAX;
    struct worker *w = NULL;
    struct cfgref *cfg = svc->curve ? service_cfg_acquire(svc) : NULL;

    /* The batch is read within microseconds: one stamp serves all its requests. */
    svc->read_us = service_mono_us();
    while (n < svc->max_batch) {
        zmq_msg_t *id = &svc->in_ident[n], *pl = &svc->in_payload[n];
        bool delim;
        enum frame_kind k = recv_request(svc, id, pl, &delim);
        if (k == FRAME_NONE)
            break;
        if (k == FRAME_BAD) {
            /* A REQ socket's delimiter is answered in kind, so that it gets the error too. */
            reply_error(svc, id, false, delim, zmq_msg_data(pl), zmq_msg_size(pl),
                        MXCACHE__ERROR_CODE__ERROR_MALFORMED,
                        "a request is one frame from a DEALER socket, without delimiter");
            zmq_msg_close(pl);
            ctr_add(&svc->ctr, CTR_BAD_FRAMES, 1);
            ctr_request(&svc->ctr, 0, true);
            continue;
        }
        Mxcache__Request__BodyCase body = wire_peek_body(zmq_msg_data(pl), zmq_msg_size(pl));
        if (!admit(svc, cfg, id, pl, body))
            continue;
        if (body == MXCACHE__REQUEST__BODY_CHECK || body == MXCACHE__REQUEST__BODY_VERIFY) {
            svc->check_index[nchecks++] = n++;
            continue;
        }
        /* The batch for the worker: each pair is sent once the next one shows it is not last. */
        if (prev != SIZE_MAX) {
            zmq_msg_send(&svc->in_ident[prev], w->pair_main, ZMQ_SNDMORE);
            zmq_send(w->pair_main, &svc->read_us, sizeof svc->read_us, ZMQ_SNDMORE);
            zmq_msg_send(&svc->in_payload[prev], w->pair_main, ZMQ_SNDMORE);
        } else {
            w = least_busy(svc);
        }
        prev = n++;
        w->inflight++;
    }
    if (prev != SIZE_MAX) {
        zmq_msg_send(&svc->in_ident[prev], w->pair_main, ZMQ_SNDMORE);
        zmq_send(w->pair_main, &svc->read_us, sizeof svc->read_us, ZMQ_SNDMORE);
        zmq_msg_send(&svc->in_payload[prev], w->pair_main, 0);
    }
    if (nchecks > 0)
        check_round(svc, nchecks);
    if (cfg)
        service_cfgref_release(cfg);
}

/* refuse_queued - answers every request still queued on the ROUTER with ERROR_UNAVAILABLE, so
 * that clients move to another endpoint at once instead of waiting for their timeout. */
static void refuse_queued(struct service *svc)
{
    for (;;) {
        zmq_msg_t id, pl;
        bool delim;
        enum frame_kind k = recv_request(svc, &id, &pl, &delim);
        if (k == FRAME_NONE)
            return;
        ctr_add(&svc->ctr, CTR_ERR_UNAVAILABLE, 1);
        ctr_request(&svc->ctr, k == FRAME_OK ? ctr_req_type(wire_peek_body(zmq_msg_data(&pl), zmq_msg_size(&pl))) : 0,
                    true);
        reply_error(svc, &id, false, delim, zmq_msg_data(&pl), zmq_msg_size(&pl),
                    MXCACHE__ERROR_CODE__ERROR_UNAVAILABLE, "the service is shutting down");
        zmq_msg_close(&pl);
    }
}

/* forward_replies - sends every reply batch waiting from worker w to the clients. */
static void forward_replies(struct service *svc, struct worker *w)
{
    zmq_msg_t id, rep;
    uint64_t received_us;

    for (;;) {
        zmq_msg_init(&id);
        if (zmq_msg_recv(&id, w->pair_main, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&id);
            return;
        }
        received_us = 0;
        zmq_recv(w->pair_main, &received_us, sizeof received_us, 0);
        zmq_msg_init(&rep);
        zmq_msg_recv(&rep, w->pair_main, 0);
        w->inflight--;
        if (zmq_msg_size(&rep) == 0) {
            service_drop_reply(svc, &id, &rep);
            continue;
        }
        /* A worker's own writes are synced before it replies, but what it read may be a
         * Check round's write still waiting for its sync. */
        service_deliver(svc, &id, &rep, 0, svc->write_gen, false, received_us, CTR_KIND_ADMIN);
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
    atomic_store(&svc->running, true);
    for (;;) {
        long timeout = -1;
        if (draining) {
            uint64_t now = service_mono_ms();
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
            uint64_t now = service_mono_ms();
            long t = parked_next_ms(svc->parked, now), v = verifier_next_ms(svc->verifier, now);
            if (t >= 0 && (timeout < 0 || t < timeout))
                timeout = t;
            if (v >= 0 && (timeout < 0 || v < timeout))
                timeout = v;
        }
        /* Backpressure: past max_queued the ROUTER is not read, so clients' queues fill and
         * ZeroMQ's high-water marks push back instead of this process growing. */
        bool full = total_inflight(svc) >= svc->max_queued;
        if (full && !svc->paused)
            ctr_add(&svc->ctr, CTR_LIMIT_QUEUED, 1);
        svc->paused = full;
        items[1].events = (!draining && !full) ? ZMQ_POLLIN : 0;
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
            uint64_t now = service_mono_ms();
            if (vitem->revents & ZMQ_POLLIN)
                service_verify_results(svc);
            service_verify_expire(svc, now);
            if (verifier_next_ms(svc->verifier, now) == 0)
                verifier_tick(svc->verifier, now);
            service_verify_mirror(svc);
        }
        if (items[1].revents & ZMQ_POLLIN)
            read_requests(svc);
        if (items[0].revents & ZMQ_POLLIN) {
            struct signalfd_siginfo si;
            if (read(sigfd, &si, sizeof si) == (ssize_t)sizeof si && !draining &&
                on_signal(arg, (int)si.ssi_signo) == SERVICE_STOP) {
                draining = true;
                atomic_store(&svc->running, false);
                deadline = service_mono_ms() + svc->shutdown_timeout_ms;
                /* Stop taking new requests; the ones already read are answered, a compaction
                 * among them cut short. */
                refuse_queued(svc);
                store_cancel_compaction(svc->env.st);
                log_msg(LOG_INFO, "DRAIN", "inflight=%zu", total_inflight(svc));
            }
        }
    }
    atomic_store(&svc->running, false);
    free(items);
    /* A compaction in progress would hold its worker (and the join below) past the deadline. */
    store_cancel_compaction(svc->env.st);
    stop_workers(svc);
    return rc;
}

bool service_ready(struct service *svc, char *why, size_t whylen)
{
    if (!svc->env.st) {
        snprintf(why, whylen, "the store is not open");
        return false;
    }
    if (store_failed(svc->env.st)) {
        snprintf(why, whylen, "the store refuses writes after a write error (disk full or "
                 "read-only?): restart mxcached once the disk is fixed");
        return false;
    }
    if (!atomic_load(&svc->running)) {
        snprintf(why, whylen, "the request loop is not running (starting or stopping)");
        return false;
    }
    for (unsigned i = 0; i < svc->nworkers; i++)
        if (!atomic_load(&svc->workers[i].alive)) {
            snprintf(why, whylen, "worker %u has stopped", i);
            return false;
        }
    return true;
}

struct counters *const *service_counter_sets(const struct service *svc, size_t *n)
{
    *n = svc->nworkers + SERVICE_EXTRA_SETS;
    return svc->ctrsets;
}

const struct verifier *service_verifier(const struct service *svc)
{
    return svc->verifier;
}

store *service_store(const struct service *svc)
{
    return svc->env.st;
}
