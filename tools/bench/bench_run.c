/* The measured run of mxcache-bench (see bench.h): the probe, the client DEALER sockets, the
 * client threads and the merging of their results.
 *
 * Owns the ZeroMQ context and every socket of a run. Socket j belongs to thread j % threads for
 * the whole run (ZeroMQ sockets are not thread-safe; pthread_create is the barrier that hands a
 * socket to its thread). Each socket has --inflight slots; a slot is one request outstanding, and
 * a reply frees its slot, which is refilled at once with the next request, so each socket keeps
 * exactly W requests in flight (closed-loop load).
 *
 * With --workload triplets each request's triplet comes from the thread's picker (bench_req.c);
 * with --prewarm the pool keys come from one shared counter, so each is asked exactly once.
 * --workload verify-hit first runs prewarm passes of its own shape (BENCH_PREWARM_SOCKETS x
 * BENCH_PREWARM_INFLIGHT), each asking every pool address once from that shared counter, until a
 * pass finds all of them cached; verify-probe numbers its new addresses per thread (thread,
 * thread + T, ...), so no two requests of a run share one. A thread whose shared counter ran out
 * ends as soon as nothing of its own is outstanding.
 *
 * Request ids are (per-thread sequence << 32) | global slot number, so a reply finds its slot and
 * send time without a search, and a stale or duplicated reply (sequence differs) is recognised as
 * unexpected. Replies are untrusted: they are decoded into a bounded arena (bench_req.c).
 *
 * Time: CLOCK_MONOTONIC in ns. Warmup replies are not measured; the window is [start + warmup,
 * start + warmup + duration), or shorter when --requests replies arrive first. Every loop
 * rechecks the clock at least every BENCH_POLL_SLICE_MS, so a run never outlives its bounds. */
#include "bench.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "mxc_err.h"
#include "wire.h"

#define PROBE_ID 1u          /* the probe's id; run ids always have a sequence above 0 */
#define SLOT_BITS 32
#define SLOT_MASK ((UINT64_C(1) << SLOT_BITS) - 1)
#define MIN_HWM 1000

struct slot {
    uint64_t id;       /* 0: idle */
    uint64_t sent_ns;
};

struct bsock {
    void *zs;
    unsigned index;    /* global socket number */
    struct slot *slots;
    unsigned idle;     /* idle slots that should hold a request (a send failed) */
};

struct shared {
    const struct bench_opts *o;
    const struct bench_req *req;
    uint64_t t_measure, t_end;  /* absolute, ns */
    atomic_uint_fast64_t counted;
    atomic_bool stop;           /* set by the thread that receives reply number --requests */
    atomic_uint_fast64_t stop_ns;
    _Atomic uint64_t prewarm_key; /* --prewarm: next pool key to hand out */
};

struct worker {
    struct shared *sh;
    unsigned index;
    pthread_t thread;
    bool started;
    struct bsock *socks;
    unsigned nsocks;
    zmq_pollitem_t *items;
    uint64_t seq, key;
    struct bench_picker pick;   /* triplets */
    struct bench_triplet trip;  /* triplets: the next request's, when trip_ready */
    bool trip_ready;
    uint64_t next_key;          /* verify-hit prewarm: the next request's pool key, when key_ready */
    bool key_ready;
    bool exhausted;             /* a shared counter (prewarm) ran out: nothing more to send */
    uint64_t replies, errors, unexpected, sent, lost;
    uint64_t classes[BENCH_CLASSES];
    uint64_t rules[BENCH_RULES];
    int sys_errno;              /* a zmq_poll failure ended the thread early */
    char first_error[160];
    char first_other[BENCH_RULE_NAME_MAX];
    uint8_t buf[BENCH_REQ_MAX];
    struct bench_arena arena;
    struct bench_hist hist;
};

static void set_int(void *s, int opt, int v)
{
    zmq_setsockopt(s, opt, &v, sizeof v);
}

/* dealer_open - a DEALER connected to the server. NULL with errno set on failure. */
static void *dealer_open(void *zctx, const struct bench_opts *o)
{
    int64_t maxmsg = BENCH_MAX_REPLY;
    int hwm = 2 * (int)o->inflight > MIN_HWM ? 2 * (int)o->inflight : MIN_HWM;
    void *s = zmq_socket(zctx, ZMQ_DEALER);

    if (!s)
        return NULL;
    /* Robustness: nothing is left to flush at the end; closing must never wait for the service. */
    set_int(s, ZMQ_LINGER, 0);
    set_int(s, ZMQ_SNDHWM, hwm);
    set_int(s, ZMQ_RCVHWM, hwm);
    set_int(s, ZMQ_SNDTIMEO, BENCH_PROBE_TIMEOUT_MS);
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (zmq_connect(s, o->server) != 0) {
        int e = errno;
        zmq_close(s);
        errno = e;
        return NULL;
    }
    return s;
}

/* verify_setup_warn - says on stderr why the verification run will not measure what it should,
 * from the rule of the setup Check (pool address 0). Prints nothing when it looks right. */
static void verify_setup_warn(const struct bench_req *req, const char *rule)
{
    char name[BENCH_RULE_NAME_MAX];
    const char *why;

    snprintf(name, sizeof name, "%s", rule ? rule : "(none)");
    for (char *p = name; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
    if (strcmp(name, "verify_positive") == 0 || strcmp(name, "verify_negative") == 0 ||
        strcmp(name, "verify_pending") == 0)
        return;
    if (strncmp(name, "verify_", 7) != 0)
        why = "the recipient was not verified: greylisting on (greylist.enabled = false), or no "
              "verify.routes entry for the --domain?";
    else if (strcmp(name, "verify_refused") == 0)
        why = "a limit refused the probe: set verify.client_probes_per_minute = 0 and the route's "
              "probes_per_second = 0 for a benchmark";
    else if (strcmp(name, "verify_acceptall") == 0)
        why = "the domain is marked accept-all (verify.acceptall_interval = 0 keeps a benchmark "
              "backend that accepts everything from being marked)";
    else
        why = "the backend failed the probe (is it running? verify.tempfail_ttl keeps the failure)";
    fprintf(stderr, BENCH_PROGNAME ": warning: the setup Check of vpool0%.*s was answered by rule "
            "\"%s\": %s\n", (int)req->domainlen, req->domain, name, why);
}

/* probe - sends the workload's setup request and waits BENCH_PROBE_TIMEOUT_MS for its reply. */
static int probe(void *zctx, const struct bench_opts *o, const struct bench_req *req)
{
    uint8_t *buf = NULL;
    size_t len;
    int rc = BENCH_EXIT_UNAVAILABLE;
    void *s = dealer_open(zctx, o);

    if (!s) {
        int e = errno;
        fprintf(stderr, BENCH_PROGNAME ": cannot connect to %s: %s\n", o->server, zmq_strerror(e));
        /* A malformed or unsupported endpoint is the command line's fault. */
        return e == ENOMEM || e == EMFILE ? BENCH_EXIT_FAIL : BENCH_EXIT_USAGE;
    }
    if (bench_req_setup(req, PROBE_ID, &buf, &len) != MXC_OK) {
        fprintf(stderr, BENCH_PROGNAME ": out of memory\n");
        zmq_close(s);
        return BENCH_EXIT_FAIL;
    }
    uint64_t deadline = bench_mono_ns() + (uint64_t)BENCH_PROBE_TIMEOUT_MS * 1000000u;
    if (zmq_send(s, buf, len, 0) < 0)
        goto out;
    for (;;) {
        uint64_t now = bench_mono_ns();
        zmq_pollitem_t it = {.socket = s, .events = ZMQ_POLLIN};
        zmq_msg_t m;

        if (now >= deadline)
            break;
        if (zmq_poll(&it, 1, (long)((deadline - now) / 1000000u) + 1) <= 0)
            continue; /* timeout or EINTR: the deadline check decides */
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            continue;
        }
        if (o->echo) { /* the request itself comes back: its id is all there is to check */
            bool mine = wire_peek_id(zmq_msg_data(&m), zmq_msg_size(&m)) == PROBE_ID;
            zmq_msg_close(&m);
            if (!mine)
                continue;
            rc = BENCH_EXIT_OK;
            break;
        }
        Mxcache__Reply *r = wire_reply_unpack(zmq_msg_data(&m), zmq_msg_size(&m));
        zmq_msg_close(&m);
        if (!r || r->id != PROBE_ID) {
            if (r)
                mxcache__reply__free_unpacked(r, NULL);
            continue;
        }
        if (r->body_case == MXCACHE__REPLY__BODY_ERROR) {
            fprintf(stderr, BENCH_PROGNAME ": the service refused the %s request: %s: %.200s\n",
                    req->workload == BENCH_CHECK_HIT ? "whitelist setup" : "first",
                    wire_error_name(r->error->code), r->error->message ? r->error->message : "");
            rc = BENCH_EXIT_FAIL;
        } else {
            rc = BENCH_EXIT_OK;
            /* check-miss expects the default answer: with greylisting on, every reply would
             * count as unexpected, so say why before the run. */
            if (req->workload == BENCH_CHECK_MISS && r->body_case == MXCACHE__REPLY__BODY_CHECK &&
                r->check->rule && strcmp(r->check->rule, "default") != 0)
                fprintf(stderr, BENCH_PROGNAME ": warning: the service decided by rule \"%.40s\", not "
                        "\"default\": check-miss replies will count as unexpected (greylisting on? "
                        "use --workload triplets, or greylist.enabled = false)\n", r->check->rule);
            if (bench_is_verify(req->workload) && r->body_case == MXCACHE__REPLY__BODY_CHECK)
                verify_setup_warn(req, r->check->rule);
        }
        mxcache__reply__free_unpacked(r, NULL);
        break;
    }
out:
    if (rc == BENCH_EXIT_UNAVAILABLE)
        fprintf(stderr, BENCH_PROGNAME ": no reply from %s within %d s\n", o->server,
                BENCH_PROBE_TIMEOUT_MS / 1000);
    free(buf);
    zmq_close(s);
    return rc;
}

/* ---- client threads ---- */

/* send_slot - sends the next request in slot s of bs. A failed send (high-water mark, no peer)
 * leaves the slot idle for the loop to retry. */
static void send_slot(struct worker *w, struct bsock *bs, unsigned s)
{
    const struct bench_opts *o = w->sh->o;
    struct slot *sl = &bs->slots[s];
    uint64_t id = ((w->seq + 1) << SLOT_BITS) | ((uint64_t)bs->index * o->inflight + s);
    size_t len;

    if (o->workload == BENCH_TRIPLETS) {
        /* Robustness: a triplet whose send failed is kept for the retry, so --prewarm skips none. */
        if (!w->trip_ready && !bench_pick_next(&w->pick, &w->trip)) {
            sl->id = 0; /* --prewarm handed out every key: the slot stays empty */
            w->exhausted = true;
            return;
        }
        w->trip_ready = true;
        len = bench_req_build_triplet(w->sh->req, id, &w->trip, w->buf);
    } else if (o->workload == BENCH_VERIFY_HIT && o->prewarm) {
        /* Robustness: as for triplets, a key whose send failed is kept for the retry. */
        if (!w->key_ready) {
            uint64_t k = atomic_fetch_add(&w->sh->prewarm_key, 1);
            if (k >= o->keys) {
                sl->id = 0;
                w->exhausted = true;
                return;
            }
            w->next_key = k;
            w->key_ready = true;
        }
        len = bench_req_build_pool(w->sh->req, id, w->next_key, w->buf);
    } else if (o->workload == BENCH_VERIFY_PROBE) {
        len = bench_req_build(w->sh->req, id, w->pick.new_next, w->buf);
    } else {
        len = bench_req_build(w->sh->req, id, w->key, w->buf);
    }
    sl->sent_ns = bench_mono_ns();
    if (zmq_send(bs->zs, w->buf, len, ZMQ_DONTWAIT) < 0) {
        /* Callers pass a slot that is free and not yet counted in bs->idle. */
        sl->id = 0;
        bs->idle++;
        return;
    }
    sl->id = id;
    w->trip_ready = false;
    w->key_ready = false;
    if (o->workload == BENCH_VERIFY_PROBE)
        w->pick.new_next += w->pick.new_step;
    w->seq++;
    w->sent++;
    if (++w->key == o->keys)
        w->key = 0;
}

static void refill(struct worker *w, struct bsock *bs)
{
    unsigned want = bs->idle;

    bs->idle = 0;
    for (unsigned s = 0; s < w->sh->o->inflight && want; s++)
        if (bs->slots[s].id == 0) {
            want--;
            send_slot(w, bs, s);
        }
}

/* take - whether a reply at now counts toward the results; the one that reaches --requests
 * stops the run. */
static bool take(struct worker *w, uint64_t now)
{
    struct shared *sh = w->sh;

    if (now < sh->t_measure || now >= sh->t_end || atomic_load(&sh->stop))
        return false;
    if (!sh->o->requests)
        return true;
    uint64_t c = atomic_fetch_add(&sh->counted, 1);
    if (c + 1 == sh->o->requests) {
        atomic_store(&sh->stop_ns, now);
        atomic_store(&sh->stop, true);
    }
    return c < sh->o->requests;
}

/* drain - handles the replies waiting on bs, at most two rounds of its slots so that one busy
 * socket does not starve the others. */
static void drain(struct worker *w, struct bsock *bs, zmq_msg_t *m)
{
    const struct bench_opts *o = w->sh->o;
    int more;
    size_t moresz = sizeof more;

    for (unsigned k = 0; k < 2 * o->inflight; k++) {
        uint64_t id;
        char errtext[sizeof w->first_error];
        enum bench_class cls = BENCH_CLASS_OTHER;
        enum bench_rule rule = BENCH_RULE_OTHER;

        if (zmq_msg_recv(m, bs->zs, ZMQ_DONTWAIT) < 0)
            return;
        uint64_t now = bench_mono_ns();
        zmq_getsockopt(bs->zs, ZMQ_RCVMORE, &more, &moresz);
        if (more) {
            /* A reply is one frame; skip the rest of a multi-frame message. */
            while (more && zmq_msg_recv(m, bs->zs, ZMQ_DONTWAIT) >= 0)
                zmq_getsockopt(bs->zs, ZMQ_RCVMORE, &more, &moresz);
            w->unexpected++;
            continue;
        }
        errtext[0] = '\0';
        enum bench_verdict v = BENCH_REPLY_OK;
        if (o->echo) {
            id = wire_peek_id(zmq_msg_data(m), zmq_msg_size(m));
            cls = BENCH_CLASS_ACCEPT;
        } else {
            v = bench_req_classify(w->sh->req, &w->arena, zmq_msg_data(m), zmq_msg_size(m), &id,
                                   errtext, sizeof errtext, &cls, &rule);
        }
        uint64_t gslot = id & SLOT_MASK;
        unsigned s = (unsigned)(gslot % o->inflight);
        if (id == 0 || gslot / o->inflight != bs->index || bs->slots[s].id != id) {
            w->unexpected++;
            continue;
        }
        uint64_t latency = now - bs->slots[s].sent_ns;
        bs->slots[s].id = 0;
        if (v == BENCH_REPLY_UNEXPECTED) {
            w->unexpected++;
        } else if (v == BENCH_REPLY_OK && bench_is_verify(o->workload)) {
            bool expected = bench_rule_expected(o->workload, rule);
            /* verify-probe: a 450 verify_pending is the service's answer under this load, not a
             * mistake; it is counted by rule only. */
            if (!expected && !(o->workload == BENCH_VERIFY_PROBE && rule == BENCH_RULE_PENDING))
                w->unexpected++;
            if (rule == BENCH_RULE_OTHER && !w->first_other[0])
                snprintf(w->first_other, sizeof w->first_other, "%.*s",
                         (int)sizeof w->first_other - 1, errtext);
            if (take(w, now)) {
                w->rules[rule]++;
                if (expected) {
                    w->replies++;
                    bench_hist_record(&w->hist, latency);
                }
            }
        } else if (take(w, now)) {
            if (v == BENCH_REPLY_OK) {
                w->replies++;
                w->classes[cls]++;
                bench_hist_record(&w->hist, latency);
            } else {
                w->errors++;
                if (!w->first_error[0])
                    memcpy(w->first_error, errtext, sizeof errtext);
            }
        }
        if (now < w->sh->t_end && !atomic_load(&w->sh->stop))
            send_slot(w, bs, s);
    }
}

/* sweep - gives up on requests outstanding longer than BENCH_LOST_AFTER_NS, as a policy client
 * would time out, and reuses their slots so that the load stays at S x W. A reply that comes
 * later no longer matches its slot and counts as unexpected. */
static void sweep(struct worker *w, uint64_t now)
{
    for (unsigned i = 0; i < w->nsocks; i++) {
        struct bsock *bs = &w->socks[i];
        for (unsigned s = 0; s < w->sh->o->inflight; s++)
            if (bs->slots[s].id && now - bs->slots[s].sent_ns > BENCH_LOST_AFTER_NS) {
                w->lost++;
                bs->slots[s].id = 0;
                send_slot(w, bs, s);
            }
    }
}

/* outstanding - whether any request of w waits for its reply. */
static bool outstanding(const struct worker *w)
{
    for (unsigned i = 0; i < w->nsocks; i++)
        for (unsigned s = 0; s < w->sh->o->inflight; s++)
            if (w->socks[i].slots[s].id)
                return true;
    return false;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct shared *sh = w->sh;
    uint64_t next_sweep = 0;
    zmq_msg_t m;

    zmq_msg_init(&m);
    for (unsigned i = 0; i < w->nsocks; i++) {
        w->socks[i].idle = sh->o->inflight;
        refill(w, &w->socks[i]);
    }
    while (!atomic_load(&sh->stop)) {
        uint64_t now = bench_mono_ns();
        bool idle = false;

        if (now >= sh->t_end)
            break;
        if (now >= next_sweep) {
            sweep(w, now);
            next_sweep = now + (uint64_t)BENCH_POLL_SLICE_MS * 1000000u;
        }
        for (unsigned i = 0; i < w->nsocks; i++)
            if (w->socks[i].idle) {
                refill(w, &w->socks[i]);
                idle = idle || w->socks[i].idle;
            }
        long timeout = (long)((sh->t_end - now + 999999u) / 1000000u);
        if (timeout > BENCH_POLL_SLICE_MS)
            timeout = BENCH_POLL_SLICE_MS;
        if (idle)
            timeout = 1; /* a send failed: retry soon */
        if (zmq_poll(w->items, (int)w->nsocks, timeout) < 0) {
            if (errno == EINTR)
                continue;
            w->sys_errno = errno;
            break;
        }
        for (unsigned i = 0; i < w->nsocks; i++)
            if (w->items[i].revents & ZMQ_POLLIN)
                drain(w, &w->socks[i], &m);
        /* A prewarm whose keys ran out ends without waiting for lost replies (a later pass
         * asks their keys again). */
        if (w->exhausted && !outstanding(w))
            break;
    }
    zmq_msg_close(&m);
    return NULL;
}

/* ---- setup and teardown ---- */

static void workers_free(struct worker *ws, unsigned n)
{
    for (unsigned t = 0; ws && t < n; t++) {
        for (unsigned i = 0; i < ws[t].nsocks; i++) {
            if (ws[t].socks[i].zs)
                zmq_close(ws[t].socks[i].zs);
            free(ws[t].socks[i].slots);
        }
        free(ws[t].socks);
        free(ws[t].items);
    }
    free(ws);
}

/* workers_create - the threads' structures and every socket, connected. NULL after a message. */
static struct worker *workers_create(void *zctx, struct shared *sh)
{
    const struct bench_opts *o = sh->o;
    struct worker *ws = calloc(o->threads, sizeof *ws);

    if (!ws)
        goto nomem;
    for (unsigned t = 0; t < o->threads; t++) {
        struct worker *w = &ws[t];
        unsigned n = o->sockets / o->threads + (t < o->sockets % o->threads);

        w->sh = sh;
        w->index = t;
        w->key = (uint64_t)t * (o->keys / o->threads);
        bench_pick_init(&w->pick, o, t, &sh->prewarm_key);
        bench_hist_init(&w->hist);
        w->socks = calloc(n, sizeof *w->socks);
        w->items = calloc(n, sizeof *w->items);
        if (!w->socks || !w->items)
            goto nomem;
        for (unsigned i = 0; i < n; i++) {
            struct bsock *bs = &w->socks[i];
            bs->index = t + i * o->threads;
            bs->slots = calloc(o->inflight, sizeof *bs->slots);
            if (!bs->slots)
                goto nomem;
            w->nsocks = i + 1;
            bs->zs = dealer_open(zctx, o);
            if (!bs->zs) {
                fprintf(stderr, BENCH_PROGNAME ": cannot open socket %u: %s\n", bs->index,
                        zmq_strerror(errno));
                workers_free(ws, o->threads);
                return NULL;
            }
            w->items[i].socket = bs->zs;
            w->items[i].events = ZMQ_POLLIN;
        }
    }
    return ws;
nomem:
    fprintf(stderr, BENCH_PROGNAME ": out of memory\n");
    workers_free(ws, o->threads);
    return NULL;
}

/* collect - merges the threads' figures into r. */
static void collect(const struct shared *sh, struct worker *ws, struct bench_result *r)
{
    uint64_t stop_ns = atomic_load(&sh->stop_ns);

    for (unsigned t = 0; t < sh->o->threads; t++) {
        struct worker *w = &ws[t];
        r->replies += w->replies;
        r->errors += w->errors;
        r->unexpected += w->unexpected;
        r->sent += w->sent;
        r->lost += w->lost;
        for (int c = 0; c < BENCH_CLASSES; c++)
            r->classes[c] += w->classes[c];
        for (int c = 0; c < BENCH_RULES; c++)
            r->rules[c] += w->rules[c];
        bench_hist_merge(&r->hist, &w->hist);
        if (!r->first_error[0] && w->first_error[0])
            memcpy(r->first_error, w->first_error, sizeof r->first_error);
        if (!r->first_other[0] && w->first_other[0])
            memcpy(r->first_other, w->first_other, sizeof r->first_other);
    }
    r->count_limited = stop_ns != 0;
    r->elapsed_ns = (stop_ns ? stop_ns : sh->t_end) - sh->t_measure;
}

/* run_phase - one run of o (workers, sockets, threads) on zctx, its figures merged into r (which
 * the caller initialised). Returns BENCH_EXIT_OK or BENCH_EXIT_FAIL after a message. */
static int run_phase(void *zctx, const struct bench_opts *o, const struct bench_req *req,
                     struct bench_result *r)
{
    struct shared sh = {.o = o, .req = req};
    struct worker *ws;
    int rc = BENCH_EXIT_OK;

    if (!(ws = workers_create(zctx, &sh)))
        return BENCH_EXIT_FAIL;
    atomic_init(&sh.counted, 0);
    atomic_init(&sh.prewarm_key, 0);
    atomic_init(&sh.stop, false);
    atomic_init(&sh.stop_ns, 0);
    sh.t_measure = bench_mono_ns() + o->warmup_ms * 1000000u;
    sh.t_end = sh.t_measure + o->duration_ms * 1000000u;
    for (unsigned t = 0; t < o->threads; t++) {
        if (pthread_create(&ws[t].thread, NULL, worker_main, &ws[t]) != 0) {
            fprintf(stderr, BENCH_PROGNAME ": cannot start thread %u\n", t);
            /* The threads already started stop at once and are joined below. */
            atomic_store(&sh.stop, true);
            rc = BENCH_EXIT_FAIL;
            break;
        }
        ws[t].started = true;
    }
    for (unsigned t = 0; t < o->threads; t++)
        if (ws[t].started)
            pthread_join(ws[t].thread, NULL);
    for (unsigned t = 0; t < o->threads; t++)
        if (ws[t].sys_errno) {
            fprintf(stderr, BENCH_PROGNAME ": thread %u: poll failed: %s\n", t,
                    zmq_strerror(ws[t].sys_errno));
            rc = BENCH_EXIT_FAIL;
        }
    if (rc == BENCH_EXIT_OK)
        collect(&sh, ws, r);
    workers_free(ws, o->threads);
    return rc;
}

/* prewarm - verify-hit: asks every pool address once per pass, BENCH_PREWARM_SOCKETS x
 * BENCH_PREWARM_INFLIGHT at a time, until a pass finds all of them cached (answered
 * verify_positive or verify_negative), within o->prewarm_ms and BENCH_PREWARM_PASSES passes.
 * A pass that leaves some unsettled while it makes progress or sees verify_pending (the probe
 * still runs; asking again joins it) is followed, BENCH_PREWARM_PAUSE_MS later, by another; one
 * that does neither (tempfail, refused, another rule: asking again changes nothing) ends the
 * prewarm. Fills the prewarm fields of r; a pool not all cached is a warning, not a failure (the
 * run counts those answers as other). */
static int prewarm(void *zctx, const struct bench_opts *o, const struct bench_req *req,
                   struct bench_result *r)
{
    struct bench_opts po = *o;
    struct bench_result *pr = malloc(sizeof *pr);
    uint64_t t0 = bench_mono_ns(), deadline = t0 + o->prewarm_ms * 1000000u;
    int rc = BENCH_EXIT_OK;

    if (!pr) {
        fprintf(stderr, BENCH_PROGNAME ": out of memory\n");
        return BENCH_EXIT_FAIL;
    }
    po.prewarm = true;
    po.sockets = BENCH_PREWARM_SOCKETS;
    po.inflight = BENCH_PREWARM_INFLIGHT;
    po.threads = 1;
    po.warmup_ms = 0;
    po.requests = o->keys;
    while (r->prewarm_passes < BENCH_PREWARM_PASSES) {
        uint64_t now = bench_mono_ns(), before = r->prewarm_settled;
        if (r->prewarm_passes > 0) {
            struct timespec pause = {BENCH_PREWARM_PAUSE_MS / 1000, (BENCH_PREWARM_PAUSE_MS % 1000) * 1000000L};
            nanosleep(&pause, NULL);
            now = bench_mono_ns();
        }
        if (now + 100000000u > deadline) /* less than 100 ms left: not worth a pass */
            break;
        po.duration_ms = (deadline - now) / 1000000u;
        memset(pr, 0, sizeof *pr);
        bench_hist_init(&pr->hist);
        if ((rc = run_phase(zctx, &po, req, pr)) != BENCH_EXIT_OK)
            break;
        if (r->prewarm_passes++ == 0)
            memcpy(r->prewarm_rules, pr->rules, sizeof r->prewarm_rules);
        r->prewarm_settled = pr->rules[BENCH_RULE_POSITIVE] + pr->rules[BENCH_RULE_NEGATIVE];
        if (r->prewarm_settled >= o->keys ||
            (r->prewarm_settled <= before && pr->rules[BENCH_RULE_PENDING] == 0 && pr->lost == 0))
            break;
    }
    r->prewarm_ns = bench_mono_ns() - t0;
    if (rc == BENCH_EXIT_OK && r->prewarm_settled < o->keys)
        fprintf(stderr, BENCH_PROGNAME ": warning: prewarm: %" PRIu64 " of %" PRIu64 " pool addresses "
                "cached after %" PRIu64 " passes and %.1f s; last pass: pending %" PRIu64 ", tempfail %"
                PRIu64 ", refused %" PRIu64 ", other %" PRIu64 ", errors %" PRIu64 ", lost %" PRIu64 "\n",
                r->prewarm_settled, o->keys, r->prewarm_passes, (double)r->prewarm_ns / 1e9,
                pr->rules[BENCH_RULE_PENDING], pr->rules[BENCH_RULE_TEMPFAIL],
                pr->rules[BENCH_RULE_REFUSED], pr->rules[BENCH_RULE_OTHER], pr->errors, pr->lost);
    free(pr);
    return rc;
}

int bench_run(const struct bench_opts *o, struct bench_result *r)
{
    struct bench_req req;
    char err[256];
    void *zctx;
    int rc;

    memset(r, 0, sizeof *r);
    bench_hist_init(&r->hist);
    if (bench_req_init(&req, o, err, sizeof err) != MXC_OK) {
        fprintf(stderr, BENCH_PROGNAME ": %s\n", err);
        return BENCH_EXIT_FAIL;
    }
    zctx = zmq_ctx_new();
    if (!zctx) {
        fprintf(stderr, BENCH_PROGNAME ": cannot create a ZeroMQ context: %s\n", zmq_strerror(errno));
        return BENCH_EXIT_FAIL;
    }
    /* One I/O thread per client thread, so the generator's own I/O scales with --threads. */
    zmq_ctx_set(zctx, ZMQ_IO_THREADS, (int)o->threads);
    if ((rc = probe(zctx, o, &req)) != BENCH_EXIT_OK)
        goto out;
    if (o->workload == BENCH_VERIFY_HIT && (rc = prewarm(zctx, o, &req, r)) != BENCH_EXIT_OK)
        goto out;
    rc = run_phase(zctx, o, &req, r);
out:
    zmq_ctx_term(zctx);
    return rc;
}
