/* Check suite of libmxcache (client/mxcache.c).
 *
 * The library is tested against real ZeroMQ ROUTER sockets run by a small responder in a test
 * thread, which decodes each Request like mxcached does and answers with a Reply carrying the same
 * id. The responder's behaviour is chosen per test: answer, stay silent, answer with an error,
 * hold a batch and answer it in reverse order, answer late, or send junk before the real answer.
 * A CheckReply's text echoes the request's recipient, so every test can tell which request a reply
 * belongs to. Loopback and a private ipc directory only; every loop is bounded by a clock and every
 * thread is joined. Timing assertions are one-sided with generous slack. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mxcache.h"
#include "wire.h"
#include "testutil.h"

#define SLACK_MS 2000          /* allowed lateness of a timeout, for slow (sanitized) builds */
#define RESP_LIFETIME_MS 60000 /* a responder thread ends by itself after this */
#define RESP_MAX_HELD 1024     /* requests a responder can hold back */
#define LOOP_MAX_MS 20000      /* bound of the tests' own event loops */

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the responder ---- */

enum resp_mode {
    RESP_ANSWER,  /* a CheckReply echoing the recipient */
    RESP_SILENT,  /* reads requests, never answers */
    RESP_ERROR,   /* an error reply (ERROR_INVALID_ARGUMENT) */
    RESP_REVERSE, /* holds `batch` requests, then answers them last first */
    RESP_DELAY,   /* answers each request delay_ms after it arrived */
    RESP_GARBAGE, /* junk, a wrong version and a two-frame message before the real answer */
};

struct held {
    uint8_t ident[256];
    size_t identlen;
    uint64_t id;
    char text[128];
    int64_t due_ms;
};

struct responder {
    void *ctx;
    void *sock;
    char endpoint[512];
    enum resp_mode mode;
    int batch;
    int delay_ms;
    struct held *held;
    int nheld;
    atomic_int stop;
    atomic_int received;
    pthread_t thread;
};

static void resp_send(struct responder *r, const uint8_t *ident, size_t identlen,
                      const Mxcache__Reply *rep)
{
    uint8_t *buf;
    size_t len;

    ck_assert_int_eq(wire_reply_pack(rep, &buf, &len), MXC_OK);
    zmq_send(r->sock, ident, identlen, ZMQ_SNDMORE);
    zmq_send(r->sock, buf, len, 0);
    free(buf);
}

static void resp_send_check(struct responder *r, const uint8_t *ident, size_t identlen,
                            uint64_t id, const char *text, uint32_t version)
{
    Mxcache__Reply rep = MXCACHE__REPLY__INIT;
    Mxcache__CheckReply chk = MXCACHE__CHECK_REPLY__INIT;

    chk.action = MXCACHE__ACTION__ACTION_DUNNO;
    chk.text = (char *)text;
    chk.rule = "test";
    rep.version = version;
    rep.id = id;
    rep.body_case = MXCACHE__REPLY__BODY_CHECK;
    rep.check = &chk;
    resp_send(r, ident, identlen, &rep);
}

static void resp_send_error(struct responder *r, const uint8_t *ident, size_t identlen,
                            uint64_t id, Mxcache__ErrorCode code, const char *msg)
{
    Mxcache__Reply rep = MXCACHE__REPLY__INIT;
    Mxcache__Error e = MXCACHE__ERROR__INIT;

    e.code = code;
    e.message = (char *)msg;
    rep.version = WIRE_VERSION;
    rep.id = id;
    rep.body_case = MXCACHE__REPLY__BODY_ERROR;
    rep.error = &e;
    resp_send(r, ident, identlen, &rep);
}

static void resp_hold(struct responder *r, const uint8_t *ident, size_t identlen, uint64_t id,
                      const char *text)
{
    struct held *h;

    ck_assert_int_lt(r->nheld, RESP_MAX_HELD);
    h = &r->held[r->nheld++];
    memcpy(h->ident, ident, identlen);
    h->identlen = identlen;
    h->id = id;
    snprintf(h->text, sizeof(h->text), "%s", text);
    h->due_ms = mono_ms() + r->delay_ms;
}

/* resp_handle - reads one request (identity frame, body frame) and acts on it; 0 when none. */
static int resp_handle(struct responder *r)
{
    uint8_t ident[256];
    uint8_t body[65536];
    int more = 0;
    size_t sz = sizeof(more);
    int il, bl;
    Mxcache__Request *req;
    const char *rcpt;

    il = zmq_recv(r->sock, ident, sizeof(ident), ZMQ_DONTWAIT);
    if (il < 0)
        return 0;
    ck_assert_int_le(il, (int)sizeof(ident));
    zmq_getsockopt(r->sock, ZMQ_RCVMORE, &more, &sz);
    ck_assert_int_eq(more, 1); /* one frame per request after the identity, never zero */
    bl = zmq_recv(r->sock, body, sizeof(body), 0);
    ck_assert_int_ge(bl, 0);
    ck_assert_int_le(bl, (int)sizeof(body));
    zmq_getsockopt(r->sock, ZMQ_RCVMORE, &more, &sz);
    ck_assert_int_eq(more, 0); /* the library sends exactly one frame */
    atomic_fetch_add(&r->received, 1);

    req = wire_request_unpack(body, (size_t)bl);
    if (!req) {
        resp_send_error(r, ident, (size_t)il, 0, MXCACHE__ERROR_CODE__ERROR_MALFORMED, "malformed");
        return 1;
    }
    ck_assert_uint_eq(req->version, WIRE_VERSION);
    ck_assert_uint_ne(req->id, 0);
    rcpt = req->body_case == MXCACHE__REQUEST__BODY_CHECK ? req->check->recipient : "";
    switch (r->mode) {
    case RESP_ANSWER:
        resp_send_check(r, ident, (size_t)il, req->id, rcpt, WIRE_VERSION);
        break;
    case RESP_SILENT:
        break;
    case RESP_ERROR:
        resp_send_error(r, ident, (size_t)il, req->id, MXCACHE__ERROR_CODE__ERROR_INVALID_ARGUMENT,
                        "recipient refused");
        break;
    case RESP_REVERSE:
        resp_hold(r, ident, (size_t)il, req->id, rcpt);
        if (r->nheld == r->batch) {
            while (r->nheld > 0) {
                struct held *h = &r->held[--r->nheld];
                resp_send_check(r, h->ident, h->identlen, h->id, h->text, WIRE_VERSION);
            }
        }
        break;
    case RESP_DELAY:
        resp_hold(r, ident, (size_t)il, req->id, rcpt);
        break;
    case RESP_GARBAGE: {
        static const uint8_t junk[] = {0xff, 0xff, 0xff, 0x01, 0x02};
        uint8_t *buf;
        size_t len;
        Mxcache__Reply rep = MXCACHE__REPLY__INIT;
        Mxcache__CheckReply chk = MXCACHE__CHECK_REPLY__INIT;

        zmq_send(r->sock, ident, (size_t)il, ZMQ_SNDMORE);
        zmq_send(r->sock, junk, sizeof(junk), 0);
        resp_send_check(r, ident, (size_t)il, req->id, "wrong version", WIRE_VERSION + 1);
        chk.text = "two frames";
        rep.version = WIRE_VERSION;
        rep.id = req->id;
        rep.body_case = MXCACHE__REPLY__BODY_CHECK;
        rep.check = &chk;
        ck_assert_int_eq(wire_reply_pack(&rep, &buf, &len), MXC_OK);
        zmq_send(r->sock, ident, (size_t)il, ZMQ_SNDMORE);
        zmq_send(r->sock, buf, len, ZMQ_SNDMORE);
        zmq_send(r->sock, buf, len, 0);
        free(buf);
        resp_send_check(r, ident, (size_t)il, 0, "id zero", WIRE_VERSION);
        resp_send_check(r, ident, (size_t)il, req->id, rcpt, WIRE_VERSION);
        break;
    }
    }
    mxcache__request__free_unpacked(req, NULL);
    return 1;
}

/* resp_flush_due - RESP_DELAY: sends the held replies whose time has come, in arrival order. */
static void resp_flush_due(struct responder *r)
{
    int64_t now = mono_ms();
    int kept = 0;

    for (int i = 0; i < r->nheld; i++) {
        struct held *h = &r->held[i];
        if (h->due_ms <= now)
            resp_send_check(r, h->ident, h->identlen, h->id, h->text, WIRE_VERSION);
        else
            r->held[kept++] = *h;
    }
    r->nheld = kept;
}

static void *resp_main(void *arg)
{
    struct responder *r = arg;
    int64_t end = mono_ms() + RESP_LIFETIME_MS;

    while (!atomic_load(&r->stop) && mono_ms() < end) {
        zmq_pollitem_t it = {r->sock, 0, ZMQ_POLLIN, 0};
        zmq_poll(&it, 1, 10);
        for (int i = 0; i < 1000 && resp_handle(r); i++)
            ;
        if (r->mode == RESP_DELAY)
            resp_flush_due(r);
    }
    return NULL;
}

/* resp_start - binds a ROUTER to addr ("tcp://127.0.0.1:*" or an ipc://) and starts answering. */
static struct responder *resp_start(enum resp_mode mode, const char *addr)
{
    struct responder *r = calloc(1, sizeof(*r));
    size_t sz;
    int zero = 0;

    ck_assert_ptr_nonnull(r);
    r->mode = mode;
    r->batch = 1;
    r->held = calloc(RESP_MAX_HELD, sizeof(*r->held));
    ck_assert_ptr_nonnull(r->held);
    r->ctx = zmq_ctx_new();
    ck_assert_ptr_nonnull(r->ctx);
    r->sock = zmq_socket(r->ctx, ZMQ_ROUTER);
    ck_assert_ptr_nonnull(r->sock);
    zmq_setsockopt(r->sock, ZMQ_LINGER, &zero, sizeof(zero));
    ck_assert_int_eq(zmq_bind(r->sock, addr), 0);
    sz = sizeof(r->endpoint);
    ck_assert_int_eq(zmq_getsockopt(r->sock, ZMQ_LAST_ENDPOINT, r->endpoint, &sz), 0);
    atomic_init(&r->stop, 0);
    atomic_init(&r->received, 0);
    return r;
}

static void resp_run(struct responder *r)
{
    /* pthread_create orders the socket's setup before the thread's first use of it. */
    ck_assert_int_eq(pthread_create(&r->thread, NULL, resp_main, r), 0);
}

static void resp_stop(struct responder *r)
{
    atomic_store(&r->stop, 1);
    ck_assert_int_eq(pthread_join(r->thread, NULL), 0);
    zmq_close(r->sock);
    zmq_ctx_term(r->ctx);
    free(r->held);
    free(r);
}

/* free_tcp_endpoint - a loopback endpoint where nobody listens (bound, then released). */
static void free_tcp_endpoint(char *out, size_t outlen)
{
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_ROUTER);
    int zero = 0;

    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
    ck_assert_int_eq(zmq_bind(s, "tcp://127.0.0.1:*"), 0);
    ck_assert_int_eq(zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, out, &outlen), 0);
    zmq_close(s);
    zmq_ctx_term(ctx);
}

/* ---- client helpers ---- */

static void make_check(Mxcache__Request *req, Mxcache__CheckRequest *chk, const char *rcpt)
{
    mxcache__request__init(req);
    mxcache__check_request__init(chk);
    chk->client_address = "192.0.2.1";
    chk->sender = "sender@example.org";
    chk->recipient = (char *)rcpt;
    chk->protocol_state = "RCPT";
    req->body_case = MXCACHE__REQUEST__BODY_CHECK;
    req->check = chk;
}

static mxc_client *client_for(const char *const *eps, size_t n, const struct mxc_options *opt)
{
    char err[256];
    mxc_client *c = mxc_client_create(eps, n, opt, err, sizeof(err));

    ck_assert_msg(c != NULL, "mxc_client_create: %s", err);
    return c;
}

/* What an asynchronous callback saw. */
struct cb_rec {
    uint64_t id;      /* expected reply id */
    char rcpt[64];    /* expected echo */
    int calls;
    int status;
    int matched;      /* reply id and echo were the expected ones */
    int errcode;
    mxc_client *c;    /* for callbacks that submit */
    int submit_rc;
    int *done;        /* incremented on each call */
};

static void record_cb(void *arg, int status, const Mxcache__Reply *reply)
{
    struct cb_rec *rec = arg;

    rec->calls++;
    rec->status = status;
    if (status == MXC_OK) {
        ck_assert_ptr_nonnull(reply);
        rec->matched = reply->id == rec->id && reply->body_case == MXCACHE__REPLY__BODY_CHECK &&
                       strcmp(reply->check->text, rec->rcpt) == 0;
    } else if (status == MXC_ESERVER) {
        ck_assert_ptr_nonnull(reply);
        ck_assert_int_eq(reply->body_case, MXCACHE__REPLY__BODY_ERROR);
        rec->matched = reply->id == rec->id;
        rec->errcode = reply->error->code;
    } else {
        ck_assert_ptr_null(reply);
    }
    if (rec->done)
        (*rec->done)++;
}

/* run_until - the event loop of an asynchronous user, until *done reaches want (bounded). */
static void run_until(mxc_client *c, const int *done, int want)
{
    zmq_pollitem_t items[MXC_MAX_ENDPOINTS];
    int64_t end = mono_ms() + LOOP_MAX_MS;

    while (*done < want && mono_ms() < end) {
        int n = mxc_pollitems(c, items, MXC_MAX_ENDPOINTS);
        long t = mxc_next_timeout_ms(c);
        ck_assert_int_ge(n, 1);
        if (t < 0 || t > 100)
            t = 100;
        zmq_poll(items, n, t);
        ck_assert_int_ge(mxc_dispatch(c), 0);
    }
    ck_assert_int_eq(*done, want);
}

/* run_until_epoll - the same with epoll on mxc_fds, edge-triggered: the strictest reading of
 * ZMQ_FD, so a reply that arrives without a new edge would hang here (bounded) if
 * mxc_next_timeout_ms did not report it. */
static void run_until_epoll(mxc_client *c, const int *done, int want)
{
    int fds[MXC_MAX_ENDPOINTS], ep = epoll_create1(EPOLL_CLOEXEC);
    int n = mxc_fds(c, fds, MXC_MAX_ENDPOINTS);
    int64_t end = mono_ms() + LOOP_MAX_MS;

    ck_assert_int_ge(ep, 0);
    ck_assert_int_ge(n, 1);
    for (int i = 0; i < n; i++) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u32 = (uint32_t)i};
        ck_assert_int_eq(epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev), 0);
    }
    while (*done < want && mono_ms() < end) {
        struct epoll_event evs[MXC_MAX_ENDPOINTS];
        long t = mxc_next_timeout_ms(c);
        if (t < 0 || t > 100)
            t = 100;
        epoll_wait(ep, evs, MXC_MAX_ENDPOINTS, (int)t);
        ck_assert_int_ge(mxc_dispatch(c), 0);
    }
    close(ep);
    ck_assert_int_eq(*done, want);
}

/* ---- tests ---- */

START_TEST(test_options_defaults)
{
    struct mxc_options o;

    memset(&o, 0xff, sizeof(o));
    mxc_options_init(&o);
    ck_assert_int_eq(o.timeout_ms, MXC_DEFAULT_TIMEOUT_MS);
    ck_assert_int_eq(o.failover_ms, MXC_DEFAULT_FAILOVER_MS);
    ck_assert_int_eq(o.max_inflight, MXC_DEFAULT_MAX_INFLIGHT);
    ck_assert_int_eq(o.reconnect_ms, MXC_DEFAULT_RECONNECT_MS);
    ck_assert_int_eq(o.reconnect_max_ms, MXC_DEFAULT_RECONNECT_MAX_MS);
    mxc_options_init(NULL);
}
END_TEST

/* Endpoint lists that mxc_client_create must refuse, each with a message. */
static const struct {
    const char *ep[2];
    size_t n;
} bad_endpoints[] = {
    {{NULL}, 1},
    {{""}, 1},
    {{"foo://x"}, 1},
    {{"127.0.0.1:5555"}, 1},
    {{"tcp://"}, 1},
    {{"tcp://127.0.0.1"}, 1},
    {{"tcp://127.0.0.1:"}, 1},
    {{"tcp://127.0.0.1:0"}, 1},
    {{"tcp://127.0.0.1:65536"}, 1},
    {{"tcp://127.0.0.1:12ab"}, 1},
    {{"tcp://127.0.0.1: 5555"}, 1},
    {{"tcp://127.0.0.1:5555\r\nQUIT"}, 1},
    {{"tcp://-bad$host:5555"}, 1}, /* passes our checks, refused by zmq_connect */
    {{"ipc://"}, 1},
    {{"inproc://"}, 1},
    {{"inproc://mxc-none"}, 1}, /* a private context per handle: nothing could answer */
    {{"tcp://127.0.0.1:5555", "udp://127.0.0.1:5555"}, 2},
};

START_TEST(test_create_bad_endpoint)
{
    char err[256];
    mxc_client *c;

    strcpy(err, "untouched");
    c = mxc_client_create(bad_endpoints[_i].ep, bad_endpoints[_i].n, NULL, err, sizeof(err));
    ck_assert_ptr_null(c);
    ck_assert_msg(err[0] != '\0' && strcmp(err, "untouched") != 0, "case %d: no message", _i);
    /* No err buffer: still refused, nothing written. */
    ck_assert_ptr_null(mxc_client_create(bad_endpoints[_i].ep, bad_endpoints[_i].n, NULL, NULL, 0));
}
END_TEST

START_TEST(test_create_bad_args)
{
    const char *one[] = {"tcp://127.0.0.1:5555"};
    const char *many[MXC_MAX_ENDPOINTS + 1];
    struct mxc_options o;
    char err[256];
    char tiny[8];

    ck_assert_ptr_null(mxc_client_create(NULL, 1, NULL, err, sizeof(err)));
    ck_assert_str_ne(err, "");
    ck_assert_ptr_null(mxc_client_create(one, 0, NULL, err, sizeof(err)));
    ck_assert_str_ne(err, "");
    for (int i = 0; i <= MXC_MAX_ENDPOINTS; i++)
        many[i] = one[0];
    ck_assert_ptr_null(mxc_client_create(many, MXC_MAX_ENDPOINTS + 1, NULL, err, sizeof(err)));
    ck_assert_str_ne(err, "");
    /* A short buffer is truncated, never overrun. */
    ck_assert_ptr_null(mxc_client_create(one, 0, NULL, tiny, sizeof(tiny)));
    ck_assert_uint_lt(strlen(tiny), sizeof(tiny));

    struct {
        int *field;
        int value;
    } bad[] = {
        {&o.timeout_ms, 0},   {&o.timeout_ms, -5},   {&o.failover_ms, 0},
        {&o.max_inflight, 0}, {&o.reconnect_ms, 0},  {&o.reconnect_max_ms, -1},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        mxc_options_init(&o);
        *bad[i].field = bad[i].value;
        err[0] = '\0';
        ck_assert_ptr_null(mxc_client_create(one, 1, &o, err, sizeof(err)));
        ck_assert_msg(strstr(err, "out of range") != NULL, "option case %zu: %s", i, err);
    }

    /* The full set of endpoints is accepted, and so are both transports. */
    mxc_client *c = client_for(many, MXC_MAX_ENDPOINTS, NULL);
    mxc_client_destroy(c);
    const char *kinds[] = {"tcp://127.0.0.1:5555", "tcp://[::1]:5555", "ipc:///tmp/mxc-none/s",
                           "tcp://localhost:5555"};
    c = client_for(kinds, 4, NULL);
    ck_assert_str_eq(mxc_current_endpoint(c), kinds[0]);
    mxc_client_destroy(c);
    mxc_client_destroy(NULL);
}
END_TEST

START_TEST(test_handle_bad_args)
{
    char ep[256];
    const char *eps[1] = {ep};
    Mxcache__Request req, raw;
    Mxcache__CheckRequest chk;
    Mxcache__Reply *rep = (Mxcache__Reply *)&rep; /* must be reset to NULL */
    zmq_pollitem_t items[2];
    struct cb_rec rec = {0};
    mxc_client *c;

    free_tcp_endpoint(ep, sizeof(ep));
    c = client_for(eps, 1, NULL);
    make_check(&req, &chk, "a@example.com");

    ck_assert_int_eq(mxc_call(NULL, &req, 0, &rep), MXC_EINVAL);
    ck_assert_ptr_null(rep);
    ck_assert_int_eq(mxc_call(c, NULL, 0, &rep), MXC_EINVAL);
    ck_assert_ptr_null(rep);
    ck_assert_int_eq(mxc_call(c, &req, 0, NULL), MXC_EINVAL);
    mxcache__request__init(&raw); /* no body */
    ck_assert_int_eq(mxc_call(c, &raw, 0, &rep), MXC_EINVAL);
    ck_assert_ptr_nonnull(strstr(mxc_client_error(c), "body"));
    memset(&raw, 0, sizeof(raw)); /* not initialised at all */
    ck_assert_int_eq(mxc_submit(c, &raw, 0, record_cb, &rec, NULL), MXC_EINVAL);
    ck_assert_int_eq(mxc_submit(c, &req, 0, NULL, &rec, NULL), MXC_EINVAL);
    ck_assert_int_eq(mxc_submit(NULL, &req, 0, record_cb, &rec, NULL), MXC_EINVAL);
    ck_assert_int_eq(mxc_inflight(c), 0);
    ck_assert_int_eq(rec.calls, 0);

    ck_assert_int_eq(mxc_pollitems(NULL, items, 2), MXC_EINVAL);
    ck_assert_int_eq(mxc_pollitems(c, NULL, 2), MXC_EINVAL);
    ck_assert_int_eq(mxc_pollitems(c, items, 2), 1);
    ck_assert_int_eq(items[0].events, ZMQ_POLLIN);
    int fds[2] = {-1, -1};
    ck_assert_int_eq(mxc_fds(NULL, fds, 2), MXC_EINVAL);
    ck_assert_int_eq(mxc_fds(c, NULL, 2), MXC_EINVAL);
    ck_assert_int_eq(mxc_fds(c, fds, -1), MXC_EINVAL);
    ck_assert_int_eq(mxc_fds(c, fds, 2), 1);
    ck_assert_int_ge(fds[0], 0);
    ck_assert_int_eq(fds[1], -1);
    ck_assert_int_eq(mxc_dispatch(NULL), MXC_EINVAL);
    ck_assert_int_eq(mxc_dispatch(c), 0);
    ck_assert_int_eq(mxc_next_timeout_ms(c), -1);
    ck_assert_int_eq(mxc_next_timeout_ms(NULL), -1);
    ck_assert_int_eq(mxc_inflight(NULL), MXC_EINVAL);
    ck_assert_ptr_nonnull(mxc_client_error(NULL));
    ck_assert_ptr_null(mxc_current_endpoint(NULL));
    mxc_reply_free(NULL);
    mxc_client_destroy(c);
}
END_TEST

START_TEST(test_call_ok)
{
    struct responder *r = resp_start(RESP_ANSWER, "tcp://127.0.0.1:*");
    const char *eps[1] = {r->endpoint};
    Mxcache__Request req;
    Mxcache__CheckRequest chk;
    Mxcache__Reply *rep = NULL;
    mxc_client *c;
    uint64_t first = 0;

    resp_run(r);
    c = client_for(eps, 1, NULL);
    for (int i = 0; i < 20; i++) {
        char rcpt[64];
        snprintf(rcpt, sizeof(rcpt), "user%d@example.com", i);
        make_check(&req, &chk, rcpt);
        ck_assert_int_eq(mxc_call(c, &req, 0, &rep), MXC_OK);
        ck_assert_ptr_nonnull(rep);
        ck_assert_uint_eq(req.version, WIRE_VERSION);
        if (i == 0)
            first = req.id;
        ck_assert_uint_eq(req.id, first + (uint64_t)i); /* ids per handle, increasing */
        ck_assert_uint_ne(req.id, 0);
        ck_assert_uint_eq(rep->id, req.id);
        ck_assert_int_eq(rep->body_case, MXCACHE__REPLY__BODY_CHECK);
        ck_assert_int_eq(rep->check->action, MXCACHE__ACTION__ACTION_DUNNO);
        ck_assert_str_eq(rep->check->text, rcpt);
        mxc_reply_free(rep);
        ck_assert_int_eq(mxc_inflight(c), 0);
    }
    ck_assert_int_eq(mxc_next_timeout_ms(c), -1);
    mxc_client_destroy(c);
    resp_stop(r);
}
END_TEST

START_TEST(test_timeout_dead)
{
    char ep[256];
    const char *eps[1] = {ep};
    struct mxc_options o;
    Mxcache__Request req;
    Mxcache__CheckRequest chk;
    Mxcache__Reply *rep = (Mxcache__Reply *)&rep;
    mxc_client *c;
    int64_t t0, elapsed;

    free_tcp_endpoint(ep, sizeof(ep));
    mxc_options_init(&o);
    o.timeout_ms = 5000;
    c = client_for(eps, 1, &o);
    make_check(&req, &chk, "a@example.com");

    /* The per-call timeout overrides the handle's. */
    t0 = mono_ms();
    ck_assert_int_eq(mxc_call(c, &req, 300, &rep), MXC_ETIMEDOUT);
    elapsed = mono_ms() - t0;
    ck_assert_ptr_null(rep);
    ck_assert_int_ge(elapsed, 250);
    ck_assert_int_lt(elapsed, 300 + SLACK_MS);
    ck_assert_int_eq(mxc_inflight(c), 0);
    ck_assert_ptr_nonnull(strstr(mxc_client_error(c), "300 ms"));

    /* The same through the asynchronous interface. */
    struct cb_rec rec = {0};
    int done = 0;
    rec.done = &done;
    t0 = mono_ms();
    ck_assert_int_eq(mxc_submit(c, &req, 300, record_cb, &rec, &rec.id), MXC_OK);
    ck_assert_int_eq(mxc_inflight(c), 1);
    ck_assert_int_ge(mxc_next_timeout_ms(c), 0);
    ck_assert_int_le(mxc_next_timeout_ms(c), 300);
    run_until(c, &done, 1);
    elapsed = mono_ms() - t0;
    ck_assert_int_eq(rec.calls, 1);
    ck_assert_int_eq(rec.status, MXC_ETIMEDOUT);
    ck_assert_int_lt(elapsed, 300 + SLACK_MS);
    ck_assert_int_eq(mxc_inflight(c), 0);
    ck_assert_int_eq(mxc_next_timeout_ms(c), -1);
    mxc_client_destroy(c);
}
END_TEST

START_TEST(test_failover_dead_live)
{
    char dead[256];
    struct responder *r = resp_start(RESP_ANSWER, "tcp://127.0.0.1:*");
    const char *eps[2] = {dead, r->endpoint};
    struct mxc_options o;
    Mxcache__Request req;
    Mxcache__CheckRequest chk;
    Mxcache__Reply *rep = NULL;
    mxc_client *c;
    int64_t t0;

    resp_run(r);
    free_tcp_endpoint(dead, sizeof(dead));
    mxc_options_init(&o);
    o.failover_ms = 4000;
    o.timeout_ms = 8000;
    c = client_for(eps, 2, &o);
    ck_assert_str_eq(mxc_current_endpoint(c), dead);
    make_check(&req, &chk, "a@example.com");
    t0 = mono_ms();
    ck_assert_int_eq(mxc_call(c, &req, 0, &rep), MXC_OK);
    /* ZMQ_IMMEDIATE: the dead endpoint is skipped at once, not after the failover time. */
    ck_assert_int_lt(mono_ms() - t0, o.failover_ms);
    ck_assert_str_eq(rep->check->text, "a@example.com");
    mxc_reply_free(rep);
    ck_assert_str_eq(mxc_current_endpoint(c), r->endpoint);
    /* Sticky: the next calls go straight to the live endpoint. */
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(mxc_call(c, &req, 0, &rep), MXC_OK);
        mxc_reply_free(rep);
    }
    ck_assert_str_eq(mxc_current_endpoint(c), r->endpoint);
    ck_assert_int_eq(atomic_load(&r->received), 6);
    mxc_client_destroy(c);
    resp_stop(r);
}
END_TEST

START_TEST(test_failover_silent_live)
{
    struct responder *silent = resp_start(RESP_SILENT, "tcp://127.0.0.1:*");
    struct responder *live = resp_start(RESP_ANSWER, "tcp://127.0.0.1:*");
    const char *eps[2] = {silent->endpoint, live->endpoint};
    struct mxc_options o;
    Mxcache__Request req;
    Mxcache__CheckRequest chk;
    Mxcache__Reply *rep = NULL;
    mxc_client *c;
    int64_t t0, elapsed;

    resp_run(silent);
    resp_run(live);
    mxc_options_init(&o);
    o.failover_ms = 200;
    o.timeout_ms = 5000;
    c = client_for(eps, 2, &o);
    /* Let both connections complete, so the request really goes to the silent one first. */
    test_sleep_ms(300);
    make_check(&req, &chk, "b@example.com");
    t0 = mono_ms();
    ck_assert_int_eq(mxc_call(c, &req, 0, &rep), MXC_OK);
    elapsed = mono_ms() - t0;
    ck_assert_uint_eq(rep->id, req.id);
    ck_assert_str_eq(rep->check->text, "b@example.com");
    mxc_reply_free(rep);
    ck_assert_int_eq(atomic_load(&silent->received), 1);
    ck_assert_int_eq(atomic_load(&live->received), 1);
    ck_assert_int_ge(elapsed, 150);
    ck_assert_int_lt(elapsed, o.timeout_ms + SLACK_MS);
    ck_assert_str_eq(mxc_current_endpoint(c), live->endpoint);
    mxc_client_destroy(c);
    resp_stop(silent);
    resp_stop(live);
}
END_TEST

#define MANY 500

START_TEST(test_many_reverse)
{
    struct responder *r = resp_start(RESP_REVERSE, "tcp://127.0.0.1:*");
    const char *eps[1] = {r->endpoint};
    struct mxc_options o;
    struct cb_rec *recs = calloc(MANY, sizeof(*recs));
    Mxcache__Request req;
    Mxcache__CheckRequest chk;
    mxc_client *c;
    int done = 0;

    ck_assert_ptr_nonnull(recs);
    r->batch = MANY;
    resp_run(r);
    mxc_options_init(&o);
    o.timeout_ms = 15000;
    c = client_for(eps, 1, &o);
    for (int i = 0; i < MANY; i++) {
        snprintf(recs[i].rcpt, sizeof(recs[i].rcpt), "rcpt%d@example.com", i);
        recs[i].done = &done;
        make_check(&req, &chk, recs[i].rcpt);
        ck_assert_int_eq(mxc_submit(c, &req, 0, record_cb, &recs[i], &recs[i].id), MXC_OK);
        ck_assert_uint_eq(recs[i].id, req.id);
        if (i > 0)
            ck_assert_uint_gt(recs[i].id, recs[i - 1].id);
    }
    ck_assert_int_eq(mxc_inflight(c), MANY);
    /* _i: the caller's event loop: zmq_poll on mxc_pollitems, or epoll on mxc_fds. */
    if (_i == 0)
        run_until(c, &done, MANY);
    else
        run_until_epoll(c, &done, MANY);
    for (int i = 0; i < MANY; i++) {
        ck_assert_int_eq(recs[i].calls, 1);
        ck_assert_int_eq(recs[i].status, MXC_OK);
        ck_assert_msg(recs[i].matched, "request %d got another request's reply", i);
    }
    ck_assert_int_eq(mxc_inflight(c), 0);
    ck_assert_int_eq(atomic_load(&r->received), MANY);
    mxc_client_destroy(c);
    resp_stop(r);
    free(recs);
}
END_TEST

START_TEST(test_late_reply_dropped)
{
    struct responder *r = resp_start(RESP_DELAY, "tcp://127.0.0.1:*");
    const char *eps[1] = {r->endpoint};
    Mxcache__Request req;
    Mxcache__CheckRequest chk;
    Mxcache__Reply *rep = (Mxcache__Reply *)&rep;
    mxc_client *c;
    uint64_t id1;

    r->delay_ms = 700;
    resp_run(r);
    c = client_for(eps, 1, NULL);
    make_check(&req, &chk, "first@example.com");
    ck_assert_int_eq(mxc_call(c, &req, 200, &rep), MXC_ETIMEDOUT);
    ck_assert_ptr_null(rep);
    id1 = req.id;
    /* The reply to the first request arrives while the second waits; it must not be taken. */
    make_check(&req, &chk, "second@example.com");
    ck_assert_int_eq(mxc_call(c, &req, 5000, &rep), MXC_OK);
    ck_assert_uint_ne(req.id, id1);
    ck_assert_uint_eq(rep->id, req.id);
    ck_assert_str_eq(rep->check->text, "second@example.com");
    mxc_reply_free(rep);
    ck_assert_int_eq(mxc_inflight(c), 0);
    ck_assert_int_eq(atomic_load(&r->received), 2);
    mxc_client_destroy(c);
    resp_stop(r);
}
END_TEST

START_TEST(test_bad_replies_dropped)
{
    struct responder *r = resp_start(RESP_GARBAGE, "tcp://127.0.0.1:*");
    const char *eps[1] = {r->endpoint};
    Mxcache__Request req;
    Mxcache__CheckRequest chk;
    Mxcache__Reply *rep = NULL;
    mxc_client *c;

    resp_run(r);
    c = client_for(eps, 1, NULL);
    for (int i = 0; i < 3; i++) {
        make_check(&req, &chk, "c@example.com");
        ck_assert_int_eq(mxc_call(c, &req, 0, &rep), MXC_OK);
        ck_assert_uint_eq(rep->id, req.id);
        ck_assert_uint_eq(rep->version, WIRE_VERSION);
        ck_assert_str_eq(rep->check->text, "c@example.com");
        mxc_reply_free(rep);
    }
    ck_assert_int_eq(mxc_inflight(c), 0);
    mxc_client_destroy(c);
    resp_stop(r);
}
END_TEST

START_TEST(test_error_reply)
{
    struct responder *r = resp_start(RESP_ERROR, "tcp://127.0.0.1:*");
    const char *eps[1] = {r->endpoint};
    Mxcache__Request req;
    Mxcache__CheckRequest chk;
    Mxcache__Reply *rep = NULL;
    struct cb_rec rec = {0};
    int done = 0;
    mxc_client *c;

    resp_run(r);
    c = client_for(eps, 1, NULL);
    make_check(&req, &chk, "d@example.com");
    ck_assert_int_eq(mxc_call(c, &req, 0, &rep), MXC_ESERVER);
    ck_assert_ptr_nonnull(rep);
    ck_assert_uint_eq(rep->id, req.id);
    ck_assert_int_eq(rep->body_case, MXCACHE__REPLY__BODY_ERROR);
    ck_assert_int_eq(rep->error->code, MXCACHE__ERROR_CODE__ERROR_INVALID_ARGUMENT);
    ck_assert_str_eq(rep->error->message, "recipient refused");
    ck_assert_ptr_nonnull(strstr(mxc_client_error(c), "recipient refused"));
    mxc_reply_free(rep);

    rec.done = &done;
    ck_assert_int_eq(mxc_submit(c, &req, 0, record_cb, &rec, &rec.id), MXC_OK);
    run_until(c, &done, 1);
    ck_assert_int_eq(rec.status, MXC_ESERVER);
    ck_assert_int_eq(rec.matched, 1);
    ck_assert_int_eq(rec.errcode, MXCACHE__ERROR_CODE__ERROR_INVALID_ARGUMENT);
    mxc_client_destroy(c);
    resp_stop(r);
}
END_TEST

START_TEST(test_max_inflight)
{
    struct responder *r = resp_start(RESP_SILENT, "tcp://127.0.0.1:*");
    const char *eps[1] = {r->endpoint};
    struct mxc_options o;
    Mxcache__Request req;
    Mxcache__CheckRequest chk;
    struct cb_rec recs[4];
    int done = 0;
    mxc_client *c;

    memset(recs, 0, sizeof(recs));
    resp_run(r);
    mxc_options_init(&o);
    o.max_inflight = 3;
    o.timeout_ms = 10000;
    c = client_for(eps, 1, &o);
    make_check(&req, &chk, "e@example.com");
    for (int i = 0; i < 3; i++) {
        recs[i].done = &done;
        ck_assert_int_eq(mxc_submit(c, &req, 0, record_cb, &recs[i], NULL), MXC_OK);
    }
    recs[3].done = &done;
    ck_assert_int_eq(mxc_submit(c, &req, 0, record_cb, &recs[3], NULL), MXC_EAGAIN);
    ck_assert_ptr_nonnull(strstr(mxc_client_error(c), "max_inflight"));
    ck_assert_int_eq(mxc_inflight(c), 3);
    ck_assert_int_ge(mxc_dispatch(c), 0);
    ck_assert_int_eq(done, 0);
    mxc_client_destroy(c);
    /* The refused request's callback is never called; the others see the handle close. */
    ck_assert_int_eq(done, 3);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(recs[i].status, MXC_ECLOSED);
    ck_assert_int_eq(recs[3].calls, 0);
    resp_stop(r);
}
END_TEST

/* A callback that tries to submit again while the handle is being destroyed. */
static void resubmit_cb(void *arg, int status, const Mxcache__Reply *reply)
{
    struct cb_rec *rec = arg;
    Mxcache__Request req;
    Mxcache__CheckRequest chk;

    record_cb(arg, status, reply);
    make_check(&req, &chk, "again@example.com");
    rec->submit_rc = mxc_submit(rec->c, &req, 0, record_cb, rec, NULL);
}

START_TEST(test_destroy_pending)
{
    struct responder *r = resp_start(RESP_SILENT, "tcp://127.0.0.1:*");
    char dead[256];
    const char *eps[2] = {r->endpoint, dead};
    Mxcache__Request req;
    Mxcache__CheckRequest chk;
    struct cb_rec recs[5];
    int done = 0;
    mxc_client *c;

    memset(recs, 0, sizeof(recs));
    resp_run(r);
    free_tcp_endpoint(dead, sizeof(dead));
    c = client_for(eps, 2, NULL);
    make_check(&req, &chk, "f@example.com");
    for (int i = 0; i < 5; i++) {
        recs[i].done = &done;
        recs[i].c = c;
        ck_assert_int_eq(mxc_submit(c, &req, 0, resubmit_cb, &recs[i], &recs[i].id), MXC_OK);
    }
    ck_assert_int_eq(mxc_inflight(c), 5);
    mxc_client_destroy(c);
    ck_assert_int_eq(done, 5);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(recs[i].calls, 1);
        ck_assert_int_eq(recs[i].status, MXC_ECLOSED);
        ck_assert_int_eq(recs[i].submit_rc, MXC_ECLOSED);
    }
    resp_stop(r);
}
END_TEST

/* A callback that submits the next request of a chain from inside mxc_dispatch. */
static void chain_cb(void *arg, int status, const Mxcache__Reply *reply)
{
    struct cb_rec *rec = arg;
    Mxcache__Request req;
    Mxcache__CheckRequest chk;

    record_cb(arg, status, reply);
    if (*rec->done < 3) {
        snprintf(rec->rcpt, sizeof(rec->rcpt), "chain%d@example.com", *rec->done);
        make_check(&req, &chk, rec->rcpt);
        rec->submit_rc = mxc_submit(rec->c, &req, 0, chain_cb, rec, &rec->id);
        ck_assert_int_eq(rec->submit_rc, MXC_OK);
    }
}

START_TEST(test_callback_submits)
{
    struct responder *r = resp_start(RESP_ANSWER, "tcp://127.0.0.1:*");
    const char *eps[1] = {r->endpoint};
    Mxcache__Request req;
    Mxcache__CheckRequest chk;
    Mxcache__Reply *rep = NULL;
    struct cb_rec rec = {0};
    int done = 0;
    mxc_client *c;

    resp_run(r);
    c = client_for(eps, 1, NULL);
    rec.c = c;
    rec.done = &done;
    strcpy(rec.rcpt, "chain@example.com");
    make_check(&req, &chk, rec.rcpt);
    ck_assert_int_eq(mxc_submit(c, &req, 0, chain_cb, &rec, &rec.id), MXC_OK);
    /* A blocking call dispatches the asynchronous chain while it waits. */
    make_check(&req, &chk, "sync@example.com");
    ck_assert_int_eq(mxc_call(c, &req, 0, &rep), MXC_OK);
    ck_assert_str_eq(rep->check->text, "sync@example.com");
    mxc_reply_free(rep);
    run_until(c, &done, 3);
    ck_assert_int_eq(rec.calls, 3);
    ck_assert_int_eq(rec.status, MXC_OK);
    ck_assert_int_eq(rec.matched, 1);
    ck_assert_int_eq(mxc_inflight(c), 0);
    mxc_client_destroy(c);
    resp_stop(r);
}
END_TEST

START_TEST(test_ipc)
{
    char dir[] = "/tmp/mxc-check-XXXXXX";
    char path[256], ep[300];
    struct responder *r;
    const char *eps[1] = {ep};
    Mxcache__Request req;
    Mxcache__CheckRequest chk;
    Mxcache__Reply *rep = NULL;
    mxc_client *c;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/mxcached.sock", dir);
    snprintf(ep, sizeof(ep), "ipc://%s", path);
    r = resp_start(RESP_ANSWER, ep);
    resp_run(r);
    c = client_for(eps, 1, NULL);
    make_check(&req, &chk, "g@example.com");
    ck_assert_int_eq(mxc_call(c, &req, 0, &rep), MXC_OK);
    ck_assert_str_eq(rep->check->text, "g@example.com");
    mxc_reply_free(rep);
    ck_assert_str_eq(mxc_current_endpoint(c), ep);
    mxc_client_destroy(c);
    resp_stop(r);
    unlink(path);
    ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

/* One handle per thread, used concurrently: the library has no shared state to race on. */
struct worker {
    const char *endpoint;
    int ok;
    uint64_t last_id;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    const char *eps[1] = {w->endpoint};
    Mxcache__Request req;
    Mxcache__CheckRequest chk;
    Mxcache__Reply *rep = NULL;
    mxc_client *c = mxc_client_create(eps, 1, NULL, NULL, 0);

    if (!c)
        return NULL;
    for (int i = 0; i < 50; i++) {
        char rcpt[64];
        snprintf(rcpt, sizeof(rcpt), "w%p-%d@example.com", (void *)w, i);
        make_check(&req, &chk, rcpt);
        if (mxc_call(c, &req, 5000, &rep) == MXC_OK && rep->id == req.id &&
            strcmp(rep->check->text, rcpt) == 0)
            w->ok++;
        mxc_reply_free(rep);
        w->last_id = req.id;
    }
    mxc_client_destroy(c);
    return NULL;
}

START_TEST(test_handles_in_threads)
{
    struct responder *r = resp_start(RESP_ANSWER, "tcp://127.0.0.1:*");
    struct worker w[2] = {{r->endpoint, 0, 0}, {r->endpoint, 0, 0}};
    pthread_t t[2];

    resp_run(r);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_join(t[i], NULL), 0);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(w[i].ok, 50);
        ck_assert_uint_eq(w[i].last_id, w[0].last_id); /* ids are per handle */
    }
    ck_assert_int_eq(atomic_load(&r->received), 100);
    resp_stop(r);
}
END_TEST

static Suite *client_suite(void)
{
    Suite *s = suite_create("client");
    TCase *args = tcase_create("arguments");
    TCase *net = tcase_create("network");

    tcase_add_test(args, test_options_defaults);
    tcase_add_loop_test(args, test_create_bad_endpoint, 0,
                        (int)(sizeof(bad_endpoints) / sizeof(bad_endpoints[0])));
    tcase_add_test(args, test_create_bad_args);
    tcase_add_test(args, test_handle_bad_args);
    suite_add_tcase(s, args);

    tcase_set_timeout(net, 60);
    tcase_add_test(net, test_call_ok);
    tcase_add_test(net, test_timeout_dead);
    tcase_add_test(net, test_failover_dead_live);
    tcase_add_test(net, test_failover_silent_live);
    tcase_add_loop_test(net, test_many_reverse, 0, 2);
    tcase_add_test(net, test_late_reply_dropped);
    tcase_add_test(net, test_bad_replies_dropped);
    tcase_add_test(net, test_error_reply);
    tcase_add_test(net, test_max_inflight);
    tcase_add_test(net, test_destroy_pending);
    tcase_add_test(net, test_callback_submits);
    tcase_add_test(net, test_ipc);
    tcase_add_test(net, test_handles_in_threads);
    suite_add_tcase(s, net);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(client_suite());
    int failed;

    srunner_run_all(sr, CK_ENV); /* CK_VERBOSITY=verbose lists every test */
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
