/* libmxcache: requests to mxcached over ZeroMQ, with timeouts and failover (see mxcache.h).
 *
 * A handle owns one ZeroMQ context (no global state), one DEALER socket per endpoint, all connected
 * at create time, and a table of pending requests keyed by request id. Each pending request keeps
 * its packed bytes, so that it can be sent again to another endpoint, its callback, its deadline
 * and the time it next needs attention (failover, or a retry when no endpoint could take it).
 * Times are CLOCK_MONOTONIC nanoseconds.
 *
 * Routing: new requests go to the current endpoint. Because every socket has ZMQ_IMMEDIATE, a send
 * to an endpoint without a completed connection fails at once with EAGAIN, and the request moves to
 * the next endpoint, which becomes the current one. A request that no endpoint accepts stays
 * pending ("unsent") and is retried every MXC_UNSENT_RETRY_MS (and, inside mxc_call, as soon as a
 * socket becomes writable) until its deadline. With more than one endpoint, a request that gets no
 * reply within the failover time is sent again to the next endpoint, which becomes current; the
 * first reply wins and later ones are dropped. There is no fail-back: the current endpoint stays
 * where it is until it fails.
 *
 * Security: with CURVE options every socket is a CURVE client of the service's public key, so
 * a service without the matching secret key cannot complete a handshake. A socket monitor per
 * endpoint reports handshake failures, which libzmq otherwise only retries in silence; they are
 * read when a request times out, when the caller asks (mxc_handshake_error, mxc_connected) and
 * at most every MXC_MONITOR_READ_MS while requests are pending. libzmq gives up on an endpoint
 * that refused a handshake (ZAP status, protocol error) for good; the handle dials it anew after
 * MXC_REDIAL_MS, doubling up to MXC_REDIAL_MAX_MS, so that a key listed later or a connection
 * slot freed later is found without a restart of the caller.
 *
 * Trust: replies are untrusted input. ZMQ_MAXMSGSIZE bounds their size before they reach us; a
 * reply that does not unpack, has another protocol version, has more than one frame or carries an
 * id we are not waiting for is dropped and counted, never passed to a caller.
 *
 * Reentrancy: callbacks run only after their request has left the table, and timed-out requests
 * are collected into a private list before any callback runs, so a callback may submit (or even
 * call) without invalidating an iteration in progress. A callback must not destroy the handle;
 * during mxc_client_destroy, submits are refused with MXC_ECLOSED.
 *
 * DIAGNOSTICS: every failure is a negative MXC_E* code plus a text in the handle (or in the err
 * buffer of mxc_client_create). The library never prints, logs, exits or aborts.
 *
 * BUGS: the counts of dropped replies are kept in the handle but not exported by the public API.
 * A reply with id 0 (the service could not decode a request) cannot be matched; the request then
 * runs into its deadline. */
#include "mxcache.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wire.h"

/* Limits and fixed transport settings, milliseconds unless stated. */
#define MXC_MAX_OPTION_MS (24 * 3600 * 1000) /* upper bound of every time option */
#define MXC_MAX_INFLIGHT_LIMIT (1 << 20)     /* upper bound of max_inflight */
#define MXC_ENDPOINT_MAX 512                 /* bytes of one endpoint string */
#define MXC_UNSENT_RETRY_MS 20               /* retry of a request no endpoint accepted */
#define MXC_HEARTBEAT_IVL_MS 1000            /* ZMTP PING interval, so a dead peer is noticed */
#define MXC_HEARTBEAT_TIMEOUT_MS 3000        /* no traffic this long after a PING: connection dead */
#define MXC_HEARTBEAT_TTL_MS 3000            /* asks the service to drop us after this silence */
#define MXC_CONNECT_TIMEOUT_MS 2000          /* a TCP connect to a black hole gives up after this */
#define MXC_HWM_SLACK 1024                   /* HWM above max_inflight: resends and mxc_call */
#define MXC_DISPATCH_BATCH 4096              /* replies read per socket per mxc_dispatch */
#define MXC_MAX_BUCKETS 65536                /* hash buckets of the pending table, at most */
#define MXC_ERRTEXT_MAX 96                   /* bytes of untrusted text copied into messages */
#define MXC_MONITOR_HWM 256                  /* socket monitor events queued per endpoint */
#define MXC_MONITOR_READ_MS 100              /* least time between two reads of the monitors */
#define MXC_REDIAL_MS 1000                   /* after a refused handshake, dial again after this, */
#define MXC_REDIAL_MAX_MS 30000              /* doubled at each refusal up to this */

#define NS_PER_MS INT64_C(1000000)

/* One request waiting for its reply. cb NULL marks a blocking mxc_call, whose arg is then its
 * struct call_state and which gets the reply itself instead of a callback. */
struct pending {
    struct pending *hnext; /* hash chain, or the private list of completed requests */
    uint64_t id;
    uint8_t *buf;          /* the packed request, kept for resending */
    size_t len;
    mxc_callback cb;
    void *arg;
    int64_t deadline_ns;
    int64_t next_ns;       /* failover (sent) or retry (unsent) time; INT64_MAX: none */
    int ep;                /* endpoint it was last sent to; -1: no endpoint took it yet */
};

/* Where a blocking mxc_call finds its result. */
struct call_state {
    int done;
    int status;
    Mxcache__Reply *reply;
};

/* What the socket monitor of one endpoint said about its handshakes. */
struct handshake {
    void *mon;          /* PAIR connected to the socket's monitor */
    int connected;      /* a TCP/ipc connection is up, its handshake not yet done */
    int ok;             /* the last handshake succeeded */
    int64_t redial_ns;  /* > 0: dial the endpoint anew at this time (see read_monitors) */
    int redial_ms;      /* the next wait before a redial: doubles while refusals go on */
    char error[300];    /* the last failure, "" when none since the last success */
};

struct mxc_client {
    void *ctx;
    size_t n;
    void *socks[MXC_MAX_ENDPOINTS];
    char *endpoints[MXC_MAX_ENDPOINTS];
    struct handshake hs[MXC_MAX_ENDPOINTS];
    int64_t monitor_read_ns;    /* when the monitors were last read */
    char curve_server[41], curve_public[41], curve_secret[41]; /* "" without CURVE */
    char hs_text[300];          /* mxc_handshake_error's text */
    size_t cur;                 /* the current endpoint */
    struct mxc_options opt;
    uint64_t next_id;           /* never 0 */
    struct pending **buckets;   /* nbuckets chains, nbuckets a power of two */
    size_t nbuckets;
    int inflight;               /* entries in the table, blocking calls included */
    int unsent;                 /* of those, how many no endpoint has taken yet */
    int64_t next_due_ns;        /* no entry needs attention before this (may be early, never late) */
    int closing;                /* mxc_client_destroy is running callbacks */
    uint64_t dropped_unknown;   /* replies for ids not pending: late, duplicate, or id 0 */
    uint64_t dropped_bad;       /* replies that did not unpack, wrong version, multi-frame */
    char err[256];
};

/* now_ns - CLOCK_MONOTONIC in nanoseconds. */
static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * INT64_C(1000000000) + ts.tv_nsec;
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* errf - formats a message into a caller's buffer; tolerates err NULL or errlen 0. */
static void errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* set_error - records the handle's last failure and returns code, for one-line error returns. */
static int set_error(struct mxc_client *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int set_error(struct mxc_client *c, int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
    return code;
}

/* printable - copies s into out (outlen bytes), controls and non-ASCII replaced by '?', capped.
 * Security: endpoint strings and service messages end up in operators' logs. */
static const char *printable(const char *s, char *out, size_t outlen)
{
    size_t i = 0;

    if (outlen == 0)
        return "";
    for (; s && *s && i + 1 < outlen; s++)
        out[i++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
    out[i] = '\0';
    return out;
}

/* ---- pending table ---- */

static size_t bucket_of(const struct mxc_client *c, uint64_t id)
{
    /* Ids are consecutive, so their low bits spread them evenly. */
    return (size_t)(id & (c->nbuckets - 1));
}

/* table_insert - links p in; the caller has already counted it in unsent when ep < 0. */
static void table_insert(struct mxc_client *c, struct pending *p)
{
    size_t b = bucket_of(c, p->id);

    p->hnext = c->buckets[b];
    c->buckets[b] = p;
    c->inflight++;
    c->next_due_ns = min64(c->next_due_ns, min64(p->deadline_ns, p->next_ns));
}

/* table_remove - unlinks and returns the entry with this id, or NULL. */
static struct pending *table_remove(struct mxc_client *c, uint64_t id)
{
    struct pending **pp = &c->buckets[bucket_of(c, id)];

    for (; *pp; pp = &(*pp)->hnext) {
        struct pending *p = *pp;
        if (p->id == id) {
            *pp = p->hnext;
            p->hnext = NULL;
            c->inflight--;
            if (p->ep < 0)
                c->unsent--;
            return p;
        }
    }
    return NULL;
}

static void pending_free(struct pending *p)
{
    free(p->buf);
    free(p);
}

/* complete - hands the outcome of an unlinked request to its owner and frees the entry; takes
 * reply. Returns 1 when a user callback ran. */
static int complete(struct pending *p, int status, Mxcache__Reply *reply)
{
    int ran = 0;

    if (p->cb) {
        p->cb(p->arg, status, reply);
        mxcache__reply__free_unpacked(reply, NULL);
        ran = 1;
    } else {
        struct call_state *st = p->arg;
        st->done = 1;
        st->status = status;
        st->reply = reply;
    }
    pending_free(p);
    return ran;
}

/* ---- routing ---- */

/* route - sends p to the first endpoint, from start on, that takes it without waiting, and makes
 * that endpoint current. When none does, p stays unsent and is retried soon. Never blocks. */
static void route(struct mxc_client *c, struct pending *p, size_t start, int64_t now)
{
    int was_unsent = p->ep < 0;

    for (size_t i = 0; i < c->n; i++) {
        size_t k = (start + i) % c->n;
        /* Robustness: ZMQ_IMMEDIATE makes this fail with EAGAIN when k has no live connection
         * (or its HWM is reached), so a dead endpoint costs nothing here; any other error of
         * one socket is treated the same way, the next endpoint may still work. */
        if (zmq_send(c->socks[k], p->buf, p->len, ZMQ_DONTWAIT) >= 0) {
            p->ep = (int)k;
            c->cur = k;
            if (was_unsent)
                c->unsent--;
            p->next_ns = c->n > 1 ? now + (int64_t)c->opt.failover_ms * NS_PER_MS : INT64_MAX;
            return;
        }
    }
    if (!was_unsent)
        c->unsent++;
    p->ep = -1;
    p->next_ns = now + MXC_UNSENT_RETRY_MS * NS_PER_MS;
}

/* any_writable - whether some socket has a live connection with room, for unsent requests. */
static int any_writable(struct mxc_client *c)
{
    for (size_t k = 0; k < c->n; k++) {
        int ev = 0;
        size_t sz = sizeof(ev);
        if (zmq_getsockopt(c->socks[k], ZMQ_EVENTS, &ev, &sz) == 0 && (ev & ZMQ_POLLOUT))
            return 1;
    }
    return 0;
}

/* scan - walks the table: unlinks requests whose deadline passed into *expired, resends those
 * whose failover or retry time passed (all unsent ones when force_unsent), and recomputes
 * next_due_ns. Runs no callback, so the walk cannot be disturbed. */
static void scan(struct mxc_client *c, int64_t now, int force_unsent, struct pending **expired)
{
    int64_t due = INT64_MAX;

    for (size_t b = 0; b < c->nbuckets; b++) {
        struct pending **pp = &c->buckets[b];
        while (*pp) {
            struct pending *p = *pp;
            if (now >= p->deadline_ns) {
                *pp = p->hnext;
                c->inflight--;
                if (p->ep < 0)
                    c->unsent--;
                p->hnext = *expired;
                *expired = p;
                continue;
            }
            if (p->ep < 0 && (force_unsent || now >= p->next_ns)) {
                route(c, p, c->cur, now);
            } else if (p->ep >= 0 && now >= p->next_ns) {
                /* Failover: when an earlier request has already moved the handle away from the
                 * endpoint this one went to, follow it rather than advancing once more. */
                size_t start = c->cur != (size_t)p->ep ? c->cur : ((size_t)p->ep + 1) % c->n;
                route(c, p, start, now);
            }
            due = min64(due, min64(p->deadline_ns, p->next_ns));
            pp = &p->hnext;
        }
    }
    c->next_due_ns = due;
}

/* discard_rest - reads and drops the remaining frames of a multi-frame message. */
static void discard_rest(void *sock)
{
    int more = 1;

    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
}

/* drain - receives the replies waiting on every socket (a bounded batch per socket) and completes
 * their requests. Adds the callbacks run to *ran. Returns 0 or MXC_EIO. */
static int drain(struct mxc_client *c, int *ran)
{
    for (size_t k = 0; k < c->n; k++) {
        for (int i = 0; i < MXC_DISPATCH_BATCH; i++) {
            zmq_msg_t m;
            Mxcache__Reply *r = NULL;
            int more;

            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, c->socks[k], ZMQ_DONTWAIT) < 0) {
                int e = errno;
                zmq_msg_close(&m);
                if (e == EAGAIN)
                    break;
                if (e == EINTR)
                    continue;
                return set_error(c, MXC_EIO, "receive from %s: %s", c->endpoints[k],
                                 zmq_strerror(e));
            }
            more = zmq_msg_more(&m);
            if (!more)
                r = wire_reply_unpack(zmq_msg_data(&m), zmq_msg_size(&m));
            zmq_msg_close(&m);
            if (more) {
                discard_rest(c->socks[k]);
                c->dropped_bad++;
                continue;
            }
            if (!r || r->version != WIRE_VERSION) {
                mxcache__reply__free_unpacked(r, NULL);
                c->dropped_bad++;
                continue;
            }
            struct pending *p = table_remove(c, r->id);
            if (!p) {
                /* Late (after its deadline), duplicate (after a failover), or id 0. */
                mxcache__reply__free_unpacked(r, NULL);
                c->dropped_unknown++;
                continue;
            }
            *ran += complete(p, r->body_case == MXCACHE__REPLY__BODY_ERROR ? MXC_ESERVER : MXC_OK, r);
        }
    }
    return MXC_OK;
}

/* ---- creation ---- */

/* mxc_options_init - the defaults of mxcache.h; NULL-safe. */
void mxc_options_init(struct mxc_options *opt)
{
    if (!opt)
        return;
    opt->timeout_ms = MXC_DEFAULT_TIMEOUT_MS;
    opt->failover_ms = MXC_DEFAULT_FAILOVER_MS;
    opt->max_inflight = MXC_DEFAULT_MAX_INFLIGHT;
    opt->reconnect_ms = MXC_DEFAULT_RECONNECT_MS;
    opt->reconnect_max_ms = MXC_DEFAULT_RECONNECT_MAX_MS;
    opt->server_key = opt->public_key = opt->secret_key = NULL;
}

/* check_options - 0, or -1 with the reason in err. */
static int check_options(const struct mxc_options *o, char *err, size_t errlen)
{
    static const struct {
        const char *name;
        size_t off;
        int min, max;
    } bounds[] = {
        {"timeout_ms", offsetof(struct mxc_options, timeout_ms), 1, MXC_MAX_OPTION_MS},
        {"failover_ms", offsetof(struct mxc_options, failover_ms), 1, MXC_MAX_OPTION_MS},
        {"max_inflight", offsetof(struct mxc_options, max_inflight), 1, MXC_MAX_INFLIGHT_LIMIT},
        {"reconnect_ms", offsetof(struct mxc_options, reconnect_ms), 1, MXC_MAX_OPTION_MS},
        /* 0: no backoff, as in ZeroMQ */
        {"reconnect_max_ms", offsetof(struct mxc_options, reconnect_max_ms), 0, MXC_MAX_OPTION_MS},
    };

    for (size_t i = 0; i < sizeof(bounds) / sizeof(bounds[0]); i++) {
        int v = *(const int *)((const char *)o + bounds[i].off);
        if (v < bounds[i].min || v > bounds[i].max) {
            errf(err, errlen, "option %s=%d out of range [%d, %d]", bounds[i].name, v,
                 bounds[i].min, bounds[i].max);
            return -1;
        }
    }
    return 0;
}

/* check_tcp_port - whether a tcp endpoint's address ends in HOST:PORT with a port in 1..65535. */
static int check_tcp_port(const char *addr)
{
    const char *colon = strrchr(addr, ':');
    long port = 0;

    if (!colon || colon == addr || colon[1] == '\0' || strlen(colon + 1) > 5)
        return 0;
    for (const char *s = colon + 1; *s; s++) {
        if (*s < '0' || *s > '9')
            return 0;
        port = port * 10 + (*s - '0');
    }
    return port >= 1 && port <= 65535;
}

/* check_endpoint - 0, or -1 with the reason in err; the zmq_connect later checks the rest. */
static int check_endpoint(size_t i, const char *ep, char *err, size_t errlen)
{
    char shown[MXC_ERRTEXT_MAX];
    size_t len;

    if (!ep) {
        errf(err, errlen, "endpoint %zu is NULL", i);
        return -1;
    }
    len = strlen(ep);
    printable(ep, shown, sizeof(shown));
    if (len > MXC_ENDPOINT_MAX) {
        errf(err, errlen, "endpoint %zu \"%s...\" longer than %d bytes", i, shown, MXC_ENDPOINT_MAX);
        return -1;
    }
    for (const char *s = ep; *s; s++) {
        if ((unsigned char)*s <= 0x20 || *s == 0x7f) {
            errf(err, errlen, "endpoint %zu \"%s\" contains a space or control character", i, shown);
            return -1;
        }
    }
    if (strncmp(ep, "tcp://", 6) == 0) {
        if (!check_tcp_port(ep + 6)) {
            errf(err, errlen, "endpoint %zu \"%s\": expected tcp://HOST:PORT (port 1-65535)", i, shown);
            return -1;
        }
    } else if (strncmp(ep, "ipc://", 6) == 0) {
        if (ep[6] == '\0') {
            errf(err, errlen, "endpoint %zu \"%s\": empty address", i, shown);
            return -1;
        }
    } else {
        /* inproc:// too: a handle has its own ZeroMQ context, so nothing could ever answer. */
        errf(err, errlen, "endpoint %zu \"%s\": unsupported transport (expected tcp://HOST:PORT "
             "or ipc://PATH)", i, shown);
        return -1;
    }
    return 0;
}

/* setup_socket - a DEALER with our options, connected to ep. 0, or -1 with the reason in err. */
static int setup_socket(struct mxc_client *c, size_t k, char *err, size_t errlen)
{
    const struct mxc_options *o = &c->opt;
    const int hwm = o->max_inflight + MXC_HWM_SLACK;
    const struct {
        const char *name;
        int option;
        int value;
    } ints[] = {
        /* Robustness: never let zmq_ctx_term wait for unsent requests of a dead service. */
        {"ZMQ_LINGER", ZMQ_LINGER, 0},
        /* Sends fail at once when the endpoint has no live connection, so routing can move on. */
        {"ZMQ_IMMEDIATE", ZMQ_IMMEDIATE, 1},
        {"ZMQ_RECONNECT_IVL", ZMQ_RECONNECT_IVL, o->reconnect_ms},
        {"ZMQ_RECONNECT_IVL_MAX", ZMQ_RECONNECT_IVL_MAX, o->reconnect_max_ms},
        /* Robustness: a dead TCP peer (no RST) is noticed by heartbeats, not after minutes. */
        {"ZMQ_HEARTBEAT_IVL", ZMQ_HEARTBEAT_IVL, MXC_HEARTBEAT_IVL_MS},
        {"ZMQ_HEARTBEAT_TIMEOUT", ZMQ_HEARTBEAT_TIMEOUT, MXC_HEARTBEAT_TIMEOUT_MS},
        {"ZMQ_HEARTBEAT_TTL", ZMQ_HEARTBEAT_TTL, MXC_HEARTBEAT_TTL_MS},
        {"ZMQ_CONNECT_TIMEOUT", ZMQ_CONNECT_TIMEOUT, MXC_CONNECT_TIMEOUT_MS},
        {"ZMQ_IPV6", ZMQ_IPV6, 1}, /* tcp://[::1]:P, and names with AAAA records */
        /* A full queue must mean backpressure from the peer, not a burst of our own requests. */
        {"ZMQ_SNDHWM", ZMQ_SNDHWM, hwm},
        {"ZMQ_RCVHWM", ZMQ_RCVHWM, hwm},
    };
    /* Security: a reply is bounded before it is read; a bigger one drops the connection. */
    const int64_t maxmsg = WIRE_MAX_MESSAGE;
    char shown[MXC_ERRTEXT_MAX];
    void *s;

    s = c->socks[k] = zmq_socket(c->ctx, ZMQ_DEALER);
    if (!s) {
        errf(err, errlen, "zmq_socket: %s", zmq_strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        if (zmq_setsockopt(s, ints[i].option, &ints[i].value, sizeof(ints[i].value)) != 0) {
            errf(err, errlen, "zmq_setsockopt %s: %s", ints[i].name, zmq_strerror(errno));
            return -1;
        }
    }
    if (zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg)) != 0) {
        errf(err, errlen, "zmq_setsockopt ZMQ_MAXMSGSIZE: %s", zmq_strerror(errno));
        return -1;
    }
    if (c->curve_server[0] &&
        (zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, c->curve_server, 40) != 0 ||
         zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, c->curve_public, 40) != 0 ||
         zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, c->curve_secret, 40) != 0)) {
        errf(err, errlen, "cannot set the CURVE keys: %s (libzmq without libsodium?)", zmq_strerror(errno));
        return -1;
    }
    char mon_ep[64];
    const int mon_hwm = MXC_MONITOR_HWM, zero = 0;
    snprintf(mon_ep, sizeof mon_ep, "inproc://mxc-monitor-%p-%zu", (void *)c, k);
    c->hs[k].mon = zmq_socket(c->ctx, ZMQ_PAIR);
    if (!c->hs[k].mon || zmq_setsockopt(c->hs[k].mon, ZMQ_RCVHWM, &mon_hwm, sizeof mon_hwm) != 0 ||
        zmq_setsockopt(c->hs[k].mon, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_socket_monitor(s, mon_ep, ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED |
                                          ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                                          ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) != 0 ||
        zmq_connect(c->hs[k].mon, mon_ep) != 0) {
        errf(err, errlen, "cannot monitor the socket: %s", zmq_strerror(errno));
        return -1;
    }
    if (zmq_connect(s, c->endpoints[k]) != 0) {
        errf(err, errlen, "endpoint %zu \"%s\": cannot connect: %s", k,
             printable(c->endpoints[k], shown, sizeof(shown)), zmq_strerror(errno));
        return -1;
    }
    return 0;
}

/* mxc_client_create - validates everything first, then builds; a failure frees what was built. */
mxc_client *mxc_client_create(const char *const *endpoints, size_t n,
                              const struct mxc_options *opt, char *err, size_t errlen)
{
    struct mxc_options o;
    struct mxc_client *c;

    errf(err, errlen, "%s", "");
    if (!endpoints || n == 0) {
        errf(err, errlen, "no endpoints given");
        return NULL;
    }
    if (n > MXC_MAX_ENDPOINTS) {
        errf(err, errlen, "%zu endpoints given, at most %d", n, MXC_MAX_ENDPOINTS);
        return NULL;
    }
    if (opt)
        o = *opt;
    else
        mxc_options_init(&o);
    if (check_options(&o, err, errlen) != 0)
        return NULL;
    int nkeys = (o.server_key != NULL) + (o.public_key != NULL) + (o.secret_key != NULL);
    if (nkeys != 0 && nkeys != 3) {
        errf(err, errlen, "CURVE needs all three keys: server_key, public_key and secret_key");
        return NULL;
    }
    const char *const keys[3] = {o.server_key, o.public_key, o.secret_key};
    static const char *const key_names[3] = {"server_key", "public_key", "secret_key"};
    for (int i = 0; i < nkeys; i++) {
        uint8_t raw[32];
        if (strlen(keys[i]) != 40 || !zmq_z85_decode(raw, keys[i])) {
            errf(err, errlen, "%s is not a Z85 CURVE key (40 characters)", key_names[i]);
            return NULL;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (check_endpoint(i, endpoints[i], err, errlen) != 0)
            return NULL;

    c = calloc(1, sizeof(*c));
    if (!c) {
        errf(err, errlen, "out of memory");
        return NULL;
    }
    c->opt = o;
    if (nkeys == 3) {
        memcpy(c->curve_server, o.server_key, 41);
        memcpy(c->curve_public, o.public_key, 41);
        memcpy(c->curve_secret, o.secret_key, 41);
    }
    /* The key strings are the caller's; the copy above is what the handle uses. */
    c->opt.server_key = c->opt.public_key = c->opt.secret_key = NULL;
    c->next_id = 1;
    c->next_due_ns = INT64_MAX;
    snprintf(c->err, sizeof(c->err), "no error");
    /* The table never grows: max_inflight bounds it, and past MXC_MAX_BUCKETS chains lengthen. */
    c->nbuckets = 16;
    while (c->nbuckets < (size_t)o.max_inflight && c->nbuckets < MXC_MAX_BUCKETS)
        c->nbuckets *= 2;
    c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
    c->ctx = zmq_ctx_new();
    if (!c->buckets || !c->ctx) {
        errf(err, errlen, "%s", !c->buckets ? "out of memory" : "zmq_ctx_new failed");
        mxc_client_destroy(c);
        return NULL;
    }
    for (size_t k = 0; k < n; k++) {
        c->endpoints[k] = strdup(endpoints[k]);
        c->n = k + 1; /* so that destroy closes what exists */
        if (!c->endpoints[k]) {
            errf(err, errlen, "out of memory");
            mxc_client_destroy(c);
            return NULL;
        }
        if (setup_socket(c, k, err, errlen) != 0) {
            mxc_client_destroy(c);
            return NULL;
        }
    }
    return c;
}

/* mxc_client_destroy - fails what is pending with MXC_ECLOSED, then closes the sockets. */
void mxc_client_destroy(mxc_client *c)
{
    struct pending *all = NULL;

    if (!c)
        return;
    /* Unlink everything first: the callbacks below may call mxc_submit, which is refused. */
    c->closing = 1;
    for (size_t b = 0; c->buckets && b < c->nbuckets; b++) {
        while (c->buckets[b]) {
            struct pending *p = c->buckets[b];
            c->buckets[b] = p->hnext;
            p->hnext = all;
            all = p;
        }
    }
    c->inflight = 0;
    c->unsent = 0;
    while (all) {
        struct pending *p = all;
        all = p->hnext;
        complete(p, MXC_ECLOSED, NULL);
    }
    for (size_t k = 0; k < c->n; k++) {
        if (c->socks[k]) {
            if (c->hs[k].mon)
                zmq_socket_monitor(c->socks[k], NULL, 0);
            zmq_close(c->socks[k]);
        }
        if (c->hs[k].mon)
            zmq_close(c->hs[k].mon);
        free(c->endpoints[k]);
    }
    memset(c->curve_secret, 0, sizeof c->curve_secret);
    if (c->ctx) {
        /* ZMQ_LINGER 0 on every socket, so this does not wait for the network. */
        for (int i = 0; i < 100 && zmq_ctx_term(c->ctx) != 0 && errno == EINTR; i++)
            ;
    }
    free(c->buckets);
    free(c);
}

/* mxc_client_error - the handle's last failure text. */
const char *mxc_client_error(const mxc_client *c)
{
    return c ? c->err : "no handle";
}

/* ---- requests ---- */

/* submit - the common part of mxc_submit and mxc_call (cb NULL: blocking, arg a call_state). */
static int submit(struct mxc_client *c, Mxcache__Request *req, int timeout_ms, mxc_callback cb,
                  void *arg, uint64_t *id)
{
    struct pending *p;
    int64_t now;
    int rc;

    if (c->closing)
        return set_error(c, MXC_ECLOSED, "handle is being destroyed");
    if (!req || req->base.descriptor != &mxcache__request__descriptor)
        return set_error(c, MXC_EINVAL, "request is not an Mxcache__Request");
    if (req->body_case == MXCACHE__REQUEST__BODY__NOT_SET)
        return set_error(c, MXC_EINVAL, "request has no body");
    /* A blocking call is exempt: there is at most one per call frame, so it cannot pile up. */
    if (cb && c->inflight >= c->opt.max_inflight)
        return set_error(c, MXC_EAGAIN, "%d requests in flight (max_inflight)", c->inflight);

    p = calloc(1, sizeof(*p));
    if (!p)
        return set_error(c, MXC_ENOMEM, "out of memory");
    p->id = c->next_id++;
    if (c->next_id == 0)
        c->next_id = 1;
    req->version = WIRE_VERSION;
    req->id = p->id;
    rc = wire_request_pack(req, &p->buf, &p->len);
    if (rc != MXC_OK) {
        free(p);
        return set_error(c, rc, "cannot pack request: %s", mxc_strerror(rc));
    }
    p->cb = cb;
    p->arg = arg;
    now = now_ns();
    p->deadline_ns = now + (int64_t)(timeout_ms > 0 ? timeout_ms : c->opt.timeout_ms) * NS_PER_MS;
    /* Counted as unsent until route finds an endpoint that takes it. */
    p->ep = -1;
    c->unsent++;
    route(c, p, c->cur, now);
    table_insert(c, p);
    if (id)
        *id = p->id;
    return MXC_OK;
}

/* mxc_submit - an asynchronous request; see submit. */
int mxc_submit(mxc_client *c, Mxcache__Request *req, int timeout_ms, mxc_callback cb, void *arg,
               uint64_t *id)
{
    if (!c)
        return MXC_EINVAL;
    if (!cb)
        return set_error(c, MXC_EINVAL, "no callback");
    return submit(c, req, timeout_ms, cb, arg, id);
}

/* schedule_redial - the next dial of a refused endpoint, with a doubling wait, so that a
 * client the service keeps refusing does not knock every second. */
static void schedule_redial(struct mxc_client *c, struct handshake *h)
{
    h->redial_ms = h->redial_ms ? h->redial_ms * 2 : MXC_REDIAL_MS;
    if (h->redial_ms > MXC_REDIAL_MAX_MS)
        h->redial_ms = MXC_REDIAL_MAX_MS;
    h->redial_ns = c->monitor_read_ns + (int64_t)h->redial_ms * NS_PER_MS;
}

/* read_monitors - takes every event the endpoints' monitors have queued into c->hs. */
static void read_monitors(struct mxc_client *c)
{
    c->monitor_read_ns = now_ns();
    for (size_t k = 0; k < c->n; k++) {
        struct handshake *h = &c->hs[k];
        for (;;) {
            zmq_msg_t m;
            uint8_t head[6];
            uint16_t event;
            uint32_t value;
            zmq_msg_init(&m);
            if (!h->mon || zmq_msg_recv(&m, h->mon, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&m);
                break;
            }
            int ok = zmq_msg_size(&m) == sizeof head, more = zmq_msg_more(&m);
            if (ok)
                memcpy(head, zmq_msg_data(&m), sizeof head);
            zmq_msg_close(&m);
            if (more) /* the endpoint's address: not needed */
                discard_rest(h->mon);
            if (!ok)
                continue;
            memcpy(&event, head, 2);
            memcpy(&value, head + 2, 4);
            switch (event) {
            case ZMQ_EVENT_CONNECTED:
                h->connected = 1;
                break;
            case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
                h->connected = 0;
                h->ok = 1;
                h->redial_ms = 0;
                h->error[0] = '\0';
                break;
            case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
                h->connected = 0;
                h->ok = 0;
                /* Robustness: libzmq never dials a refused endpoint again by itself, yet the
                 * refusal may end (a key listed by a reload, a connection limit freed). */
                schedule_redial(c, h);
                snprintf(h->error, sizeof h->error,
                         "the service refused this client (status %u): its public key is not in the "
                         "service's security.client_keys or admin_keys, its address is not in "
                         "security.allow, or it has server.max_connections(_per_client) connections",
                         (unsigned)value);
                break;
            case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
            case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                h->connected = 0;
                h->ok = 0;
                if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) /* not retried by libzmq either */
                    schedule_redial(c, h);
                char why[64];
                if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)
                    snprintf(why, sizeof why, "protocol error 0x%x", (unsigned)value);
                else
                    snprintf(why, sizeof why, "%s", zmq_strerror((int)value));
                snprintf(h->error, sizeof h->error, "ZeroMQ handshake failed (%s): %s", why,
                         c->curve_server[0] ? "the service's key is not the configured server key, "
                                              "or the service does not use CURVE"
                                            : "the service uses CURVE: configure its public key and "
                                              "a key pair for this client");
                break;
            case ZMQ_EVENT_DISCONNECTED:
                /* Closed before the handshake ended: what a CURVE server does to a HELLO made for
                 * another server key, and a plain server to a CURVE client. */
                if (h->connected && !h->error[0])
                    snprintf(h->error, sizeof h->error, "the service closed the connection during "
                             "the handshake: %s",
                             c->curve_server[0] ? "wrong server key (the service's public key), or "
                                                  "the service does not use CURVE"
                                                : "the service probably requires CURVE keys");
                h->connected = 0;
                h->ok = 0;
                break;
            default:
                break;
            }
        }
        if (h->redial_ns > 0 && c->monitor_read_ns >= h->redial_ns) {
            /* A second zmq_connect to the same endpoint does nothing: the old, given-up session
             * has to go first. Requests queued for it move on through the usual failover. */
            h->redial_ns = 0;
            zmq_disconnect(c->socks[k], c->endpoints[k]);
            zmq_connect(c->socks[k], c->endpoints[k]);
        }
    }
}

const char *mxc_handshake_error(mxc_client *c)
{
    if (!c)
        return NULL;
    read_monitors(c);
    for (size_t k = 0; k < c->n; k++) {
        if (c->hs[k].ok || !c->hs[k].error[0])
            continue;
        char shown[MXC_ERRTEXT_MAX];
        snprintf(c->hs_text, sizeof c->hs_text, "%s: %s",
                 printable(c->endpoints[k], shown, sizeof shown), c->hs[k].error);
        return c->hs_text;
    }
    return NULL;
}

/* mxc_call - mxc_submit plus a zmq_poll loop over the handle's own sockets until the reply. */
int mxc_call(mxc_client *c, Mxcache__Request *req, int timeout_ms, Mxcache__Reply **reply)
{
    struct call_state st = {0, 0, NULL};
    zmq_pollitem_t items[MXC_MAX_ENDPOINTS];
    uint64_t id;
    int rc;

    if (reply)
        *reply = NULL;
    if (!c)
        return MXC_EINVAL;
    if (!reply)
        return set_error(c, MXC_EINVAL, "reply pointer is NULL");
    rc = submit(c, req, timeout_ms, NULL, &st, &id);
    if (rc != MXC_OK)
        return rc;
    /* Bounded: dispatch completes the request at its deadline at the latest. */
    while (!st.done) {
        long t = mxc_next_timeout_ms(c);
        for (size_t k = 0; k < c->n; k++) {
            items[k].socket = c->socks[k];
            items[k].fd = 0;
            /* Waiting for POLLOUT while a request is unsent sends it the moment a connection
             * completes, instead of at the next retry tick. */
            items[k].events = ZMQ_POLLIN | (c->unsent > 0 ? ZMQ_POLLOUT : 0);
            items[k].revents = 0;
        }
        if (zmq_poll(items, (int)c->n, t < 0 ? MXC_UNSENT_RETRY_MS : t) < 0 && errno != EINTR) {
            rc = set_error(c, MXC_EIO, "zmq_poll: %s", zmq_strerror(errno));
            break;
        }
        rc = mxc_dispatch(c);
        if (rc < 0)
            break;
    }
    if (!st.done) {
        struct pending *p = table_remove(c, id);
        if (p)
            pending_free(p);
        return rc;
    }
    *reply = st.reply;
    if (st.status == MXC_ETIMEDOUT) {
        const char *hs = mxc_handshake_error(c);
        set_error(c, MXC_ETIMEDOUT, "no reply from the service within %d ms%s%s%s",
                  timeout_ms > 0 ? timeout_ms : c->opt.timeout_ms, hs ? " (" : "", hs ? hs : "",
                  hs ? ")" : "");
    } else if (st.status == MXC_ESERVER && st.reply && st.reply->error) {
        char shown[MXC_ERRTEXT_MAX];
        set_error(c, MXC_ESERVER, "service error %s: %s", wire_error_name(st.reply->error->code),
                  printable(st.reply->error->message, shown, sizeof(shown)));
    }
    return st.status;
}

/* mxc_reply_free - frees a reply that mxc_call handed over. */
void mxc_reply_free(Mxcache__Reply *reply)
{
    if (reply)
        mxcache__reply__free_unpacked(reply, NULL);
}

/* mxc_pollitems - the sockets for a caller's zmq_poll. With max below the endpoint count only
 * the first max are written; mxc_dispatch still reads every socket. */
int mxc_pollitems(mxc_client *c, zmq_pollitem_t *items, int max)
{
    int n;

    if (!c || (!items && max > 0) || max < 0)
        return MXC_EINVAL;
    n = (size_t)max < c->n ? max : (int)c->n;
    for (int k = 0; k < n; k++) {
        items[k].socket = c->socks[k];
        items[k].fd = 0;
        items[k].events = ZMQ_POLLIN;
        items[k].revents = 0;
    }
    return n;
}

int mxc_fds(mxc_client *c, int *fds, int max)
{
    int n;

    if (!c || (!fds && max > 0) || max < 0)
        return MXC_EINVAL;
    n = (size_t)max < c->n ? max : (int)c->n;
    for (int k = 0; k < n; k++) {
        size_t len = sizeof fds[k];
        if (zmq_getsockopt(c->socks[k], ZMQ_FD, &fds[k], &len) != 0)
            return set_error(c, MXC_EIO, "ZMQ_FD: %s", zmq_strerror(errno));
    }
    return n;
}

/* mxc_next_timeout_ms - milliseconds until the earliest deadline, failover or retry; 0 when a
 * socket already has a reply (or room for an unsent request), since ZMQ_FD only signals what
 * changes after the last operation on the socket. */
long mxc_next_timeout_ms(mxc_client *c)
{
    int64_t now, left;

    if (!c || c->inflight == 0)
        return -1;
    for (size_t k = 0; k < c->n; k++) {
        int ev = 0;
        size_t len = sizeof ev;
        if (zmq_getsockopt(c->socks[k], ZMQ_EVENTS, &ev, &len) == 0 &&
            ((ev & ZMQ_POLLIN) || (c->unsent > 0 && (ev & ZMQ_POLLOUT))))
            return 0;
    }
    now = now_ns();
    if (c->next_due_ns <= now)
        return 0;
    left = c->next_due_ns - now;
    /* Round up: waking a little before a deadline would only make the caller spin. */
    left = (left + NS_PER_MS - 1) / NS_PER_MS;
    return left > MXC_MAX_OPTION_MS ? MXC_MAX_OPTION_MS : (long)left;
}

/* mxc_dispatch - replies first, then the timers, when one is due or an unsent request can go. */
int mxc_dispatch(mxc_client *c)
{
    struct pending *expired = NULL;
    int ran = 0;
    int rc;
    int force;
    int64_t now;

    if (!c)
        return MXC_EINVAL;
    rc = drain(c, &ran);
    if (rc < 0)
        return rc;
    if (c->inflight == 0)
        return ran;
    now = now_ns();
    /* The monitors' queues stay short while the handle is busy and unconnected. */
    if (now - c->monitor_read_ns >= MXC_MONITOR_READ_MS * NS_PER_MS)
        read_monitors(c);
    force = c->unsent > 0 && any_writable(c);
    if (now < c->next_due_ns && !force)
        return ran;
    scan(c, now, force, &expired);
    /* The table is consistent again; callbacks may now submit. */
    while (expired) {
        struct pending *p = expired;
        expired = p->hnext;
        ran += complete(p, MXC_ETIMEDOUT, NULL);
    }
    return ran;
}

/* mxc_inflight - pending requests, blocking calls included. */
int mxc_inflight(const mxc_client *c)
{
    return c ? c->inflight : MXC_EINVAL;
}

/* mxc_connected - any_writable, for callers that tell "no connection" from "no answer". */
int mxc_connected(mxc_client *c)
{
    if (!c)
        return MXC_EINVAL;
    read_monitors(c);
    return any_writable(c);
}

/* mxc_current_endpoint - where new requests go first. */
const char *mxc_current_endpoint(const mxc_client *c)
{
    return c ? c->endpoints[c->cur] : NULL;
}
