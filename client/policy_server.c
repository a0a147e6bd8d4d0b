/* policy_server - the event loop of mxcache-policy (see policy_server.h).
 *
 * Objects: a conn per Postfix connection (its fds, parser, input leftover, output buffer and a
 * FIFO of slots), a slot per request (its answer once known). A slot waiting for the service is
 * the callback argument of its libmxcache request; when its connection closes first, the slot is
 * orphaned (conn = NULL) and the callback frees it, so a late reply never touches freed memory.
 * Closed conns are freed at the end of the loop round (deferred free), so callbacks and item
 * handlers of the same round may still look at them.
 *
 * Per connection at most POLICY_MAX_PIPELINE requests are queued and at most POLICY_CONN_OUT_MAX
 * answer bytes wait to be sent; beyond either the connection is not read, so a client that
 * pipelines or does not read cannot make us buffer without bound. Answers leave in request order:
 * only the done slots at the head of the FIFO are moved to the output buffer.
 *
 * Service health: the first fallback (or failed ping) after a good reply logs SERVICE_DOWN, the
 * first good reply after that logs SERVICE_UP with the outage's length and count; fallbacks are
 * counted always. Reconnecting is libmxcache's (ZeroMQ's) business: requests keep being submitted
 * during an outage and the first one that gets through ends it. An idle hook would know nothing,
 * so after service.ping_interval without an answer the loop sends a ping (one at a time, with the
 * questions' timeout); its outcome sets service_up like a question's.
 *
 * Figures for monitoring (policy_metrics.h) are written here only, with relaxed atomics, because
 * the HTTP thread reads them while the loop runs. Answers are counted and timed when they are
 * moved to a connection's output, so every count is of answers Postfix was sent. */
#include "policy_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "mxcache.h"
#include "log.h"
#include "policy_metrics.h"
#include "policy_proto.h"
#include "wire.h"

struct conn;

/* What an epoll event is about: its data.ptr points at one of these. */
enum src_kind { SRC_SIGNAL, SRC_LISTENER, SRC_SERVICE, SRC_CONN };
struct evsrc {
    enum src_kind kind;
    void *ptr; /* the listener or the conn */
};

struct slot {
    struct slot *next;
    struct conn *conn;        /* NULL: orphaned, its connection closed while it was in flight */
    struct policy_server *srv;
    bool done;
    uint8_t kind;             /* enum policy_answer_kind of the answer, once done */
    uint8_t reason;           /* enum policy_fallback_reason, for a fallback */
    uint64_t id;              /* libmxcache request id; 0 when not asked */
    int64_t start_ms;
    int64_t start_us;         /* the request's empty line, for the latency histogram */
    size_t len;
    char answer[POLICY_ANSWER_MAX];
};

struct conn {
    uint64_t serial;
    int rfd, wfd;             /* the same socket, or stdin and stdout */
    bool is_socket;
    struct evsrc src;
    uint32_t ev_r, ev_w;      /* epoll interest registered for rfd and, when apart, wfd */
    bool always_r, always_w;  /* not pollable (a regular file): tried on every round */
    bool eof;                 /* nothing more will be read (the peer's EOF, or stopping) */
    bool peer_eof;            /* the peer closed its side */
    bool closing;             /* closed; freed at the end of the round */
    char peer[96];
    policy_parser *parser;
    char in[POLICY_CONN_IN_MAX];
    size_t inlen;             /* bytes read but not yet fed (the pipeline was full) */
    struct slot *head, *tail;
    unsigned nslots;
    char *out;
    size_t outlen, outoff, outcap;
    int64_t last_ms;          /* last byte read or written */
    uint64_t requests;
};

struct policy_server {
    char handshake_error[300]; /* the last one logged, "" when none */
    const struct policy_conf *conf;
    char *mx_name;
    struct policy_listener *ls;
    size_t nls;
    bool stdio;
    mxc_client *mxc;
    struct policy_limits limits;
    struct conn **conns;
    size_t nconns, maxconns;
    uint64_t next_serial;
    int epfd;
    struct epoll_event *events;
    struct evsrc sig_src, svc_src, *ls_src;
    bool listening;           /* the listeners are in the epoll set */
    bool stopping;
    int64_t stop_deadline_ms;
    int64_t accept_pause_until_ms;
    int64_t refused_log_ms;
    uint64_t refused_unlogged;
    bool down;                /* an outage is in progress */
    int64_t down_since_ms;
    uint64_t down_fallbacks;
    bool ping_on;             /* service.ping_interval > 0, and not --stdio */
    bool ping_inflight;
    int64_t last_answer_ms;   /* the service's last answer (a reply or a ping) */
    int64_t ping_done_ms;     /* the last ping's end, answered or not */
    struct policy_metrics m;  /* read by the HTTP thread: written here only */
};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- service health ---- */

/* service_good - the service answered: it is up, and an outage ends. */
static void service_good(struct policy_server *s)
{
    s->last_answer_ms = now_ms();
    pm_set(&s->m.service_up, 1);
    pm_set(&s->m.down_cause, PM_DOWN_NONE);
    if (!s->down)
        return;
    s->down = false;
    log_msg(LOG_NOTICE, "SERVICE_UP", "endpoint=%s down_ms=%lld fallbacks=%llu",
               mxc_current_endpoint(s->mxc), (long long)(now_ms() - s->down_since_ms),
               (unsigned long long)s->down_fallbacks);
}

/* service_bad - the service failed a question (fallback set: it was a request, which got the
 * fallback) or a ping (reason: a word; cause: for /readyz); starts an outage. */
static void service_bad(struct policy_server *s, const char *reason, enum policy_down_cause cause,
                        bool fallback)
{
    pm_set(&s->m.service_up, 0);
    pm_set(&s->m.down_cause, (int)cause);
    if (!s->down) {
        s->down = true;
        s->down_since_ms = now_ms();
        s->down_fallbacks = 0;
        log_msg(LOG_WARNING, "SERVICE_DOWN",
                   "reason=%s endpoint=%s fallback=%s timeout_ms=%llu",
                   reason, mxc_current_endpoint(s->mxc),
                   s->conf->fallback == PCONF_FALLBACK_DUNNO ? "dunno" : "defer",
                   (unsigned long long)s->conf->timeout);
    }
    if (fallback)
        s->down_fallbacks++;
}

/* outage_code - whether an error reply says the service cannot serve at all (rather than that it
 * refused this one question). */
static bool outage_code(Mxcache__ErrorCode code)
{
    return code == MXCACHE__ERROR_CODE__ERROR_STORE ||
           code == MXCACHE__ERROR_CODE__ERROR_UNAVAILABLE ||
           code == MXCACHE__ERROR_CODE__ERROR_INTERNAL;
}

/* timed_out - a question or ping ran out of time: tells "no connection" from "no answer", since
 * a stopped service and a stuck one call for different fixes. Returns whether connected. */
static bool timed_out(struct policy_server *s, bool ping, bool fallback)
{
    bool connected = mxc_connected(s->mxc) > 0;
    const char *hs = mxc_handshake_error(s->mxc);

    /* A handshake that keeps failing (wrong keys) is said once per change, not per question. */
    if (hs && strcmp(hs, s->handshake_error) != 0)
        log_msg(LOG_ERR, "HANDSHAKE", "error=\"%s\"", hs);
    snprintf(s->handshake_error, sizeof s->handshake_error, "%s", hs ? hs : "");

    service_bad(s,
                ping ? (connected ? "ping_timeout" : "ping_unreachable")
                     : (connected ? "timeout" : "unreachable"),
                connected ? PM_DOWN_TIMEOUT : PM_DOWN_UNREACHABLE, fallback);
    return connected;
}

/* answer_fallback - the slot gets the configured fallback; counted when it is written. */
static void answer_fallback(struct policy_server *s, struct slot *sl,
                            enum policy_fallback_reason why)
{
    enum policy_fallback fb =
        s->conf->fallback == PCONF_FALLBACK_DUNNO ? POLICY_FALLBACK_DUNNO : POLICY_FALLBACK_DEFER;

    sl->len = policy_render_fallback(fb, s->conf->fallback_text, sl->answer, sizeof sl->answer);
    sl->done = true;
    sl->kind = PM_ANSWER_FALLBACK;
    sl->reason = (uint8_t)why;
}

/* ---- the epoll set ---- */

/* watch - adds (EPOLL_CTL_ADD), changes or removes fd's interest; 0 or -1 with errno. */
static int watch(struct policy_server *s, int op, int fd, uint32_t events, struct evsrc *src)
{
    struct epoll_event ev = {.events = events, .data.ptr = src};
    return epoll_ctl(s->epfd, op, fd, &ev);
}

/* watch_fd - sets fd's interest to want: an fd is in the epoll set only while something is
 * wanted, so that a hangup or error it reports is always about what this side waits for. */
static void watch_fd(struct policy_server *s, struct conn *c, int fd, uint32_t want, uint32_t *cur,
                     bool always)
{
    if (always) {
        *cur = want; /* not pollable: the loop tries it while this says so */
        return;
    }
    if (want == *cur)
        return;
    int op = *cur == 0 ? EPOLL_CTL_ADD : want == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    if (watch(s, op, fd, want, &c->src) == 0)
        *cur = want;
}

/* conn_watch - makes the epoll interest of c what it wants now: input while its pipeline and
 * output buffer have room, output while answers wait to be sent. */
static void conn_watch(struct policy_server *s, struct conn *c)
{
    bool want_in = !c->eof && !s->stopping && c->nslots < POLICY_MAX_PIPELINE &&
                   c->inlen < sizeof c->in && c->outlen - c->outoff < POLICY_CONN_OUT_MAX;
    uint32_t r = want_in ? EPOLLIN : 0, w = c->outlen > c->outoff ? EPOLLOUT : 0;

    if (c->closing)
        return;
    if (c->rfd == c->wfd) {
        watch_fd(s, c, c->rfd, r | w, &c->ev_r, c->always_r);
        return;
    }
    watch_fd(s, c, c->rfd, r, &c->ev_r, c->always_r);
    watch_fd(s, c, c->wfd, w, &c->ev_w, c->always_w);
}

/* conn_register - checks whether c's fds can be polled; a regular file (EPERM) cannot and is
 * tried on every round instead. conn_watch then adds them as needed. Returns 0 or -1. */
static int conn_register(struct policy_server *s, struct conn *c)
{
    int fds[2] = {c->rfd, c->wfd};
    bool *always[2] = {&c->always_r, &c->always_w};

    c->src = (struct evsrc){.kind = SRC_CONN, .ptr = c};
    for (int i = 0; i < (c->rfd == c->wfd ? 1 : 2); i++) {
        if (watch(s, EPOLL_CTL_ADD, fds[i], 0, &c->src) != 0) {
            if (errno != EPERM)
                return -1;
            *always[i] = true;
        } else {
            watch(s, EPOLL_CTL_DEL, fds[i], 0, NULL);
        }
    }
    conn_watch(s, c);
    return 0;
}

/* ---- connections ---- */

static void conn_close(struct policy_server *s, struct conn *c, int prio, const char *reason);

/* conn_write - sends what the output buffer holds, without blocking. Returns false when the
 * connection had to be closed. */
static bool conn_write(struct policy_server *s, struct conn *c)
{
    while (c->outoff < c->outlen) {
        ssize_t n = c->is_socket
                        ? send(c->wfd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL)
                        : write(c->wfd, c->out + c->outoff, c->outlen - c->outoff);
        if (n > 0) {
            c->outoff += (size_t)n;
            c->last_ms = now_ms();
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return true;
        log_msg(LOG_INFO, "CLOSE", "conn=%llu peer=%s reason=write_failed error=\"%s\"",
                   (unsigned long long)c->serial, c->peer, n < 0 ? strerror(errno) : "short write");
        conn_close(s, c, -1, NULL);
        return false;
    }
    c->outoff = c->outlen = 0;
    return true;
}

/* conn_flush - moves the done answers at the head of the FIFO into the output buffer, in order,
 * and sends; closes a connection whose reading side ended once all is answered. */
static void conn_flush(struct policy_server *s, struct conn *c)
{
    if (c->closing)
        return;
    while (c->head && c->head->done) {
        struct slot *sl = c->head;
        if (c->outlen + sl->len > c->outcap) {
            size_t cap = c->outcap ? c->outcap : 1024;
            while (cap < c->outlen + sl->len)
                cap *= 2;
            char *o = realloc(c->out, cap);
            if (!o) {
                conn_close(s, c, LOG_ERR, "out_of_memory");
                return;
            }
            c->out = o;
            c->outcap = cap;
        }
        memcpy(c->out + c->outlen, sl->answer, sl->len);
        c->outlen += sl->len;
        /* Counted here, where the answer leaves: an orphan's answer reaches nobody, and the
         * latency includes waiting behind earlier answers of the same connection. */
        int64_t us = now_us() - sl->start_us;
        histo_observe(&s->m.latency, us > 0 ? (uint64_t)us : 0);
        pm_inc(&s->m.answers[sl->kind]);
        if (sl->kind == PM_ANSWER_FALLBACK)
            pm_inc(&s->m.fallbacks[sl->reason]);
        c->head = sl->next;
        if (!c->head)
            c->tail = NULL;
        c->nslots--;
        free(sl);
    }
    if (!conn_write(s, c))
        return;
    /* Input left over after the peer's EOF is still to be answered; when stopping it is not. */
    if (c->eof && c->nslots == 0 && c->outlen == 0 && (c->inlen == 0 || s->stopping))
        conn_close(s, c, LOG_DEBUG, "eof");
}

/* log_answer - the debug line of a finished request. */
static void log_answer(const struct slot *sl, const char *source, const char *rule)
{
    char ans[LOG_FIELD_MAX], r[64];
    size_t n = sl->len;

    if (!log_enabled(LOG_DEBUG) || !sl->conn)
        return;
    while (n > 0 && sl->answer[n - 1] == '\n')
        n--;
    log_msg(LOG_DEBUG, "ANSWER", "conn=%llu id=%llu source=%s rule=\"%s\" ms=%lld answer=\"%s\"",
               (unsigned long long)sl->conn->serial, (unsigned long long)sl->id, source,
               log_str(rule, r, sizeof r), (long long)(now_ms() - sl->start_ms),
               log_escape(sl->answer, n, ans, sizeof ans));
}

/* on_reply - libmxcache's callback for a slot's question. */
static void on_reply(void *arg, int status, const Mxcache__Reply *rep)
{
    struct slot *sl = arg;
    struct policy_server *s = sl->srv;
    const char *rule = NULL, *source = "service";

    if (status == MXC_ECLOSED) { /* the handle is being destroyed at exit */
        if (!sl->conn) {
            free(sl);
            return;
        }
        answer_fallback(s, sl, PM_FB_SEND_FAILED);
        source = "shutdown";
    } else if (status == MXC_OK && rep && rep->body_case == MXCACHE__REPLY__BODY_CHECK) {
        sl->len = policy_render_reply(rep->check, sl->answer, sizeof sl->answer);
        service_good(s);
        if (sl->len > 0) {
            sl->done = true;
            sl->kind = PM_ANSWER_SERVICE;
            rule = rep->check->rule;
        } else {
            log_msg(LOG_WARNING, "SERVICE_ERROR", "id=%llu reason=\"reply without an action\"",
                       (unsigned long long)sl->id);
            answer_fallback(s, sl, PM_FB_ERROR);
            source = "fallback";
        }
    } else if (status == MXC_ESERVER && rep && rep->body_case == MXCACHE__REPLY__BODY_ERROR) {
        Mxcache__ErrorCode code = rep->error->code;
        if (outage_code(code)) {
            service_bad(s, wire_error_name(code), PM_DOWN_UNAVAILABLE, true);
        } else {
            /* The service is up but refused this one question (a field too long, say). */
            char msg[LOG_FIELD_MAX];
            service_good(s);
            log_msg(LOG_WARNING, "SERVICE_ERROR", "conn=%llu id=%llu code=%s message=\"%s\"",
                       sl->conn ? (unsigned long long)sl->conn->serial : 0ull,
                       (unsigned long long)sl->id, wire_error_name(code),
                       log_str(rep->error->message, msg, sizeof msg));
        }
        answer_fallback(s, sl, PM_FB_ERROR);
        source = "fallback";
    } else if (status == MXC_ETIMEDOUT) {
        bool connected = timed_out(s, false, true);
        answer_fallback(s, sl, connected ? PM_FB_TIMEOUT : PM_FB_UNREACHABLE);
        source = "fallback";
    } else {
        service_bad(s, "bad_reply", PM_DOWN_UNAVAILABLE, true);
        answer_fallback(s, sl, PM_FB_ERROR);
        source = "fallback";
    }
    log_answer(sl, source, rule);
    if (!sl->conn) {
        free(sl);
        return;
    }
    conn_flush(s, sl->conn);
}

/* on_ping - libmxcache's callback for a ping: any answer means the service is reachable. */
static void on_ping(void *arg, int status, const Mxcache__Reply *rep)
{
    struct policy_server *s = arg;

    s->ping_inflight = false;
    s->ping_done_ms = now_ms();
    if (status == MXC_ECLOSED)
        return;
    if (status == MXC_OK) {
        service_good(s);
    } else if (status == MXC_ESERVER && rep && rep->body_case == MXCACHE__REPLY__BODY_ERROR) {
        if (outage_code(rep->error->code))
            service_bad(s, "ping_unavailable", PM_DOWN_UNAVAILABLE, false);
        else
            service_good(s); /* e.g. a service too old to know pings: it did answer */
    } else if (status == MXC_ETIMEDOUT) {
        timed_out(s, true, false);
    } else {
        service_bad(s, "ping_bad_reply", PM_DOWN_UNAVAILABLE, false);
    }
}

/* ping_tick - sends a ping when the service has not answered for service.ping_interval (since
 * its last answer or the last ping's end, so that an outage costs one ping per interval), so an
 * idle hook knows whether its service is reachable. Returns the ms until the next ping is due,
 * or -1 when none is (off, stopping, or one in flight). */
static long ping_tick(struct policy_server *s, int64_t now)
{
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__PingRequest ping = MXCACHE__PING_REQUEST__INIT;
    int64_t last = s->last_answer_ms > s->ping_done_ms ? s->last_answer_ms : s->ping_done_ms;
    int64_t due = last + (int64_t)s->conf->ping_interval;

    if (!s->ping_on || s->stopping || s->ping_inflight)
        return -1;
    if (now < due)
        return (long)(due - now);
    req.body_case = MXCACHE__REQUEST__BODY_PING;
    req.ping = &ping;
    int rc = mxc_submit(s->mxc, &req, (int)s->conf->timeout, on_ping, s, NULL);
    if (rc != MXC_OK) {
        /* Robustness: a full handle is busy with questions, whose outcome says as much. */
        s->ping_done_ms = now;
        log_msg(LOG_DEBUG, "PING_FAILED", "error=\"%s\"", mxc_client_error(s->mxc));
        return (long)s->conf->ping_interval;
    }
    s->ping_inflight = true;
    pm_inc(&s->m.pings);
    return -1;
}

/* handle_request - queues a slot for a complete request and asks the service, or answers. */
static void handle_request(struct policy_server *s, struct conn *c, const struct policy_request *r)
{
    struct slot *sl = calloc(1, sizeof *sl);
    const struct policy_conf *cf = s->conf;

    if (!sl) {
        conn_close(s, c, LOG_ERR, "out_of_memory");
        return;
    }
    sl->conn = c;
    sl->srv = s;
    sl->start_ms = now_ms();
    sl->start_us = now_us();
    if (c->tail)
        c->tail->next = sl;
    else
        c->head = sl;
    c->tail = sl;
    c->nslots++;
    c->requests++;
    pm_inc(&s->m.requests);

    const char *state = r->val[POLICY_ATTR_PROTOCOL_STATE];
    if (!policy_state_in(state, (const char *const *)cf->states.items, cf->states.n)) {
        sl->len = policy_render_dunno(sl->answer, sizeof sl->answer);
        sl->done = true;
        sl->kind = PM_ANSWER_LOCAL;
        log_answer(sl, "state", NULL);
        return;
    }

    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__CheckRequest q = MXCACHE__CHECK_REQUEST__INIT;
    policy_request_to_check(r, s->mx_name, &q);
    req.body_case = MXCACHE__REQUEST__BODY_CHECK;
    req.check = &q;
    int rc = mxc_submit(s->mxc, &req, (int)cf->timeout, on_reply, sl, &sl->id);
    if (rc != MXC_OK) {
        service_bad(s, rc == MXC_EAGAIN ? "too_many_in_flight" : "submit_failed",
                    PM_DOWN_UNAVAILABLE, true);
        answer_fallback(s, sl, rc == MXC_EAGAIN ? PM_FB_OVERLOAD : PM_FB_SEND_FAILED);
        log_answer(sl, "fallback", NULL);
        return;
    }
    pm_inc(&s->m.asked);
    if (log_enabled(LOG_DEBUG)) {
        char ca[64], se[LOG_FIELD_MAX], rc_[LOG_FIELD_MAX], st[32];
        log_msg(LOG_DEBUG, "ASK", "conn=%llu id=%llu state=\"%s\" client=\"%s\" sender=\"%s\" recipient=\"%s\"",
                   (unsigned long long)c->serial, (unsigned long long)sl->id,
                   log_str(state, st, sizeof st), log_str(q.client_address, ca, sizeof ca),
                   log_str(q.sender, se, sizeof se), log_str(q.recipient, rc_, sizeof rc_));
    }
}

/* bad_input - logs why the parser refused the connection's input and closes it. */
static void bad_input(struct policy_server *s, struct conn *c)
{
    const char *ex;
    size_t exlen;
    unsigned line;
    char esc[LOG_FIELD_MAX];
    enum policy_error e = policy_parser_error(c->parser, &line, &ex, &exlen);

    /* Robustness: a limit hit is told apart from garbage, since raising a limit is the fix for
     * the one and not for the other. */
    if (e == POLICY_ERR_LINE_TOO_LONG || e == POLICY_ERR_REQUEST_TOO_BIG ||
        e == POLICY_ERR_TOO_MANY_ATTRS)
        pm_inc(&s->m.oversized);
    else
        pm_inc(&s->m.malformed);
    log_msg(LOG_WARNING, "BADINPUT", "conn=%llu peer=%s reason=%s line=%u excerpt=\"%s\"",
               (unsigned long long)c->serial, c->peer, policy_error_name(e), line,
               log_escape(ex, exlen, esc, sizeof esc));
    conn_close(s, c, -1, NULL);
}

/* conn_process - feeds the buffered input to the parser while the pipeline has room. */
static void conn_process(struct policy_server *s, struct conn *c)
{
    while (!c->closing && c->inlen > 0 && c->nslots < POLICY_MAX_PIPELINE &&
           c->outlen - c->outoff < POLICY_CONN_OUT_MAX) {
        size_t used = 0;
        enum policy_status st = policy_parser_feed(c->parser, c->in, c->inlen, &used);
        memmove(c->in, c->in + used, c->inlen - used);
        c->inlen -= used;
        if (st == POLICY_BAD) {
            bad_input(s, c);
            return;
        }
        if (st == POLICY_REQUEST)
            handle_request(s, c, policy_parser_request(c->parser));
    }
    /* The peer ended its side: a partial request left now is cut off. */
    if (c->peer_eof && c->inlen == 0 && !c->closing && policy_parser_finish(c->parser) == POLICY_BAD) {
        bad_input(s, c);
        return;
    }
    conn_flush(s, c); /* closes it after the peer's EOF once everything is answered */
}

/* conn_read - reads what the connection has and processes it. */
static void conn_read(struct policy_server *s, struct conn *c)
{
    ssize_t n;

    if (c->closing || c->eof)
        return;
    do
        n = read(c->rfd, c->in + c->inlen, sizeof c->in - c->inlen);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        log_msg(LOG_INFO, "CLOSE", "conn=%llu peer=%s reason=read_failed error=\"%s\"",
                   (unsigned long long)c->serial, c->peer, strerror(errno));
        conn_close(s, c, -1, NULL);
        return;
    }
    if (n == 0) {
        c->eof = c->peer_eof = true;
        conn_process(s, c);
        return;
    }
    c->inlen += (size_t)n;
    c->last_ms = now_ms();
    conn_process(s, c);
}

/* conn_new - a connection on rfd/wfd; NULL when out of memory or when the fds cannot be
 * watched (they are then not closed). */
static struct conn *conn_new(struct policy_server *s, int rfd, int wfd, bool is_socket,
                             const char *peer)
{
    struct conn *c = calloc(1, sizeof *c);

    if (!c)
        return NULL;
    c->parser = policy_parser_create(&s->limits);
    if (!c->parser) {
        free(c);
        return NULL;
    }
    c->serial = ++s->next_serial;
    c->rfd = rfd;
    c->wfd = wfd;
    c->is_socket = is_socket;
    c->last_ms = now_ms();
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    if (conn_register(s, c) != 0) {
        policy_parser_destroy(c->parser);
        free(c);
        return NULL;
    }
    s->conns[s->nconns++] = c;
    pm_inc(&s->m.connections);
    pm_add_i64(&s->m.open, 1);
    return c;
}

/* conn_close - closes the fds and orphans the slots in flight; the conn itself is freed by
 * reap_conns. prio < 0: the caller has logged already. */
static void conn_close(struct policy_server *s, struct conn *c, int prio, const char *reason)
{
    if (c->closing)
        return;
    if (prio >= 0)
        log_msg(prio, "CLOSE", "conn=%llu peer=%s reason=%s requests=%llu",
                   (unsigned long long)c->serial, c->peer, reason, (unsigned long long)c->requests);
    c->closing = true;
    pm_add_i64(&s->m.open, -1);
    /* Explicitly: epoll forgets an fd only when every fd of its file is closed, and stdin and
     * stdout may share one with stderr. */
    if (c->ev_r && !c->always_r)
        watch(s, EPOLL_CTL_DEL, c->rfd, 0, NULL);
    close(c->rfd);
    if (c->wfd != c->rfd) {
        if (c->ev_w && !c->always_w)
            watch(s, EPOLL_CTL_DEL, c->wfd, 0, NULL);
        close(c->wfd);
    }
    while (c->head) {
        struct slot *sl = c->head;
        c->head = sl->next;
        if (sl->done || sl->id == 0)
            free(sl);
        else
            sl->conn = NULL; /* on_reply frees it */
    }
    c->tail = NULL;
    c->nslots = 0;
}

/* reap_conns - frees the connections closed during this round. */
static void reap_conns(struct policy_server *s)
{
    size_t k = 0;

    for (size_t i = 0; i < s->nconns; i++) {
        struct conn *c = s->conns[i];
        if (c->closing) {
            policy_parser_destroy(c->parser);
            free(c->out);
            free(c);
        } else {
            s->conns[k++] = c;
        }
    }
    s->nconns = k;
}

/* peer_name - "127.0.0.1:40312", "[::1]:40312" or "unix:pid=123". */
static void peer_name(int fd, const struct sockaddr_storage *ss, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN] = "?";

    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(out, outlen, "%s:%u", host, ntohs(in->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(out, outlen, "[%s]:%u", host, ntohs(in6->sin6_port));
    } else {
        struct ucred cr;
        socklen_t len = sizeof cr;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0)
            snprintf(out, outlen, "unix:pid=%ld", (long)cr.pid);
        else
            snprintf(out, outlen, "unix");
    }
}

/* do_accept - takes the waiting connections of listener l. */
static void do_accept(struct policy_server *s, struct policy_listener *l)
{
    for (int i = 0; i < POLICY_ACCEPT_BATCH; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        char peer[96];
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                /* Robustness: EMFILE and the like leave the connection in the backlog, so the
                 * listener stays readable; pause instead of spinning. */
                log_msg(LOG_WARNING, "ACCEPT_FAILED", "listener=%s error=\"%s\" pause_ms=%d",
                           l->name, strerror(errno), POLICY_ACCEPT_PAUSE_MS);
                s->accept_pause_until_ms = now_ms() + POLICY_ACCEPT_PAUSE_MS;
            }
            return;
        }
        peer_name(fd, &ss, peer, sizeof peer);
        if (s->nconns >= s->maxconns) {
            int64_t now = now_ms();
            pm_inc(&s->m.refused);
            if (now - s->refused_log_ms >= POLICY_REFUSED_LOG_MS) {
                log_msg(LOG_WARNING, "REFUSED",
                           "peer=%s listener=%s reason=max_connections limit=%zu also_refused=%llu",
                           peer, l->name, s->maxconns, (unsigned long long)s->refused_unlogged);
                s->refused_log_ms = now;
                s->refused_unlogged = 0;
            } else {
                s->refused_unlogged++;
            }
            close(fd);
            continue;
        }
        struct conn *c = conn_new(s, fd, fd, true, peer);
        if (!c) {
            log_msg(LOG_ERR, "REFUSED", "peer=%s listener=%s reason=out_of_memory", peer, l->name);
            close(fd);
            continue;
        }
        log_msg(LOG_DEBUG, "CONNECT", "conn=%llu peer=%s listener=%s",
                   (unsigned long long)c->serial, peer, l->name);
    }
}

/* set_listening - puts the listeners into the epoll set, or takes them out (accepting paused). */
static void set_listening(struct policy_server *s, bool on)
{
    if (on == s->listening)
        return;
    for (size_t i = 0; i < s->nls; i++)
        watch(s, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, s->ls[i].fd, EPOLLIN, &s->ls_src[i]);
    s->listening = on;
}

/* stop_listening - closes the listeners (and removes unix socket files). */
static void stop_listening(struct policy_server *s)
{
    set_listening(s, false);
    policy_listeners_close(s->ls, s->nls);
    s->ls = NULL;
    s->nls = 0;
}

/* begin_stop - stop accepting and reading; answer what is queued until the deadline. */
static void begin_stop(struct policy_server *s, const char *why)
{
    size_t pending = 0;

    if (s->stopping)
        return;
    s->stopping = true;
    pm_set(&s->m.listening, 0);
    s->stop_deadline_ms = now_ms() + (int64_t)s->conf->shutdown_timeout;
    stop_listening(s);
    for (size_t i = 0; i < s->nconns; i++) {
        struct conn *c = s->conns[i];
        if (c->closing)
            continue;
        pending += c->nslots;
        c->eof = true; /* read nothing more */
        conn_flush(s, c);
    }
    log_msg(LOG_NOTICE, "STOP", "reason=%s connections=%zu pending=%zu", why, s->nconns, pending);
}

/* read_signal - handles what the signalfd holds. */
static void read_signal(struct policy_server *s, int sigfd)
{
    struct signalfd_siginfo si;

    while (read(sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGHUP)
            log_msg(LOG_NOTICE, "SIGHUP", "result=ignored reason=\"restart to change settings\"");
        else
            begin_stop(s, si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
    }
}

/* check_idle - closes idle connections; returns the ms until the next idle deadline (-1: none). */
static long check_idle(struct policy_server *s, int64_t now)
{
    int64_t next = -1;
    int64_t idle = (int64_t)s->conf->idle_timeout;

    for (size_t i = 0; i < s->nconns; i++) {
        struct conn *c = s->conns[i];
        if (c->closing || c->nslots > 0)
            continue; /* waiting for the service is not idle: its timeout bounds it */
        int64_t due = c->last_ms + idle;
        if (now >= due) {
            pm_inc(&s->m.timed_out);
            conn_close(s, c, policy_parser_pending(c->parser) ? LOG_WARNING : LOG_INFO,
                       policy_parser_pending(c->parser) ? "idle_in_request" : "idle");
            continue;
        }
        if (next < 0 || due - now < next)
            next = due - now;
    }
    return (long)next;
}

/* min_timeout - the smaller of two poll timeouts where -1 means none. */
static long min_timeout(long a, long b)
{
    if (a < 0)
        return b;
    if (b < 0)
        return a;
    return a < b ? a : b;
}

policy_server *policy_server_create(const struct policy_conf *conf, struct policy_listener *ls,
                                    size_t nls, int stdio, const char *mx_name,
                                    const struct policy_curve *curve, char *err,
                                    size_t errlen)
{
    struct policy_server *s = calloc(1, sizeof *s);
    struct mxc_options o;

    if (!s) {
        policy_listeners_close(ls, nls);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->conf = conf;
    s->ls = ls;
    s->nls = nls;
    s->stdio = stdio != 0;
    s->limits.max_line = (size_t)conf->max_line;
    s->limits.max_request = (size_t)conf->max_request;
    s->limits.max_attributes = (unsigned)conf->max_attributes;
    s->maxconns = s->stdio ? 1 : (size_t)conf->max_connections;
    s->mx_name = strdup(mx_name ? mx_name : "");
    s->conns = calloc(s->maxconns, sizeof *s->conns);
    s->events = calloc(POLICY_EPOLL_EVENTS, sizeof *s->events);
    s->ls_src = calloc(nls ? nls : 1, sizeof *s->ls_src);
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!s->mx_name || !s->conns || !s->events || !s->ls_src) {
        snprintf(err, errlen, "out of memory");
        policy_server_destroy(s);
        return NULL;
    }
    if (s->epfd < 0) {
        snprintf(err, errlen, "epoll_create1: %s", strerror(errno));
        policy_server_destroy(s);
        return NULL;
    }
    policy_metrics_init(&s->m);
    s->ping_on = !s->stdio && conf->ping_interval > 0;
    /* Without pings nothing would ever say "up" to an idle hook: assume it until a failure. */
    pm_set(&s->m.service_up, s->ping_on ? 0 : 1);
    pm_set(&s->m.down_cause, s->ping_on ? PM_DOWN_NO_ANSWER_YET : PM_DOWN_NONE);
    pm_set(&s->m.listening, !s->stdio && nls > 0);
    /* The first ping goes out at once, so that readiness is known soon after the start. */
    s->last_answer_ms = s->ping_done_ms = now_ms() - (int64_t)conf->ping_interval;
    s->sig_src.kind = SRC_SIGNAL;
    s->svc_src.kind = SRC_SERVICE;
    for (size_t i = 0; i < nls; i++)
        s->ls_src[i] = (struct evsrc){.kind = SRC_LISTENER, .ptr = &ls[i]};

    mxc_options_init(&o);
    if (curve) {
        o.server_key = curve->server_key;
        o.public_key = curve->public_key;
        o.secret_key = curve->secret_key;
    }
    o.timeout_ms = (int)conf->timeout;
    o.failover_ms = (int)conf->failover;
    /* Every queued request of every connection may be in flight at once. */
    long long inflight = (long long)s->maxconns * POLICY_MAX_PIPELINE + 64;
    o.max_inflight = inflight > (1 << 20) ? (1 << 20) : (int)inflight;
    s->mxc = mxc_client_create((const char *const *)conf->endpoints.items, conf->endpoints.n, &o,
                               err, errlen);
    if (!s->mxc) {
        policy_server_destroy(s);
        return NULL;
    }
    int fds[MXC_MAX_ENDPOINTS];
    int nfds = mxc_fds(s->mxc, fds, MXC_MAX_ENDPOINTS);
    for (int i = 0; i < nfds; i++) {
        if (watch(s, EPOLL_CTL_ADD, fds[i], EPOLLIN, &s->svc_src) != 0) {
            snprintf(err, errlen, "epoll_ctl: %s", strerror(errno));
            policy_server_destroy(s);
            return NULL;
        }
    }
    if (nfds < 0) {
        snprintf(err, errlen, "%s", mxc_client_error(s->mxc));
        policy_server_destroy(s);
        return NULL;
    }

    if (s->stdio) {
        fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
        fcntl(1, F_SETFL, fcntl(1, F_GETFL) | O_NONBLOCK);
        /* read(2) and write(2): stdin and stdout may be pipes; SIGPIPE is ignored by main. */
        if (!conn_new(s, 0, 1, false, "stdio")) {
            snprintf(err, errlen, "out of memory");
            policy_server_destroy(s);
            return NULL;
        }
    }
    return s;
}

/* handle_conn_event - what epoll said about one of c's fds (registered only while wanted). */
static void handle_conn_event(struct policy_server *s, struct conn *c, uint32_t ev)
{
    if (!c->closing && (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && c->outlen > c->outoff)
        conn_flush(s, c); /* an error shows as a failed send, and closes */
    if (!c->closing && (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) && (c->ev_r & EPOLLIN))
        conn_read(s, c);  /* reads data, the EOF, or the error */
}

int policy_server_run(policy_server *s, int sigfd)
{
    int rc = MXC_OK;

    if (sigfd >= 0 && watch(s, EPOLL_CTL_ADD, sigfd, EPOLLIN, &s->sig_src) != 0) {
        log_msg(LOG_ERR, "FATAL", "error=\"epoll_ctl: %s\"", strerror(errno));
        return MXC_EIO;
    }
    for (;;) {
        int64_t now = now_ms();
        long timeout = -1;

        /* Input left over while a pipeline was full: go on with it now that there may be room. */
        for (size_t i = 0; i < s->nconns; i++)
            if (!s->conns[i]->closing && s->conns[i]->inlen > 0 && !s->stopping)
                conn_process(s, s->conns[i]);
        reap_conns(s);

        if (s->stopping) {
            bool busy = false;
            for (size_t i = 0; i < s->nconns; i++) {
                struct conn *c = s->conns[i];
                if (c->nslots > 0 || c->outlen > c->outoff)
                    busy = true;
                else
                    conn_close(s, c, LOG_DEBUG, "shutdown");
            }
            reap_conns(s);
            if (!busy)
                break;
            if (now >= s->stop_deadline_ms) {
                size_t unanswered = 0;
                for (size_t i = 0; i < s->nconns; i++) {
                    unanswered += s->conns[i]->nslots;
                    conn_close(s, s->conns[i], LOG_DEBUG, "shutdown_timeout");
                }
                reap_conns(s);
                log_msg(LOG_WARNING, "STOP_TIMEOUT", "unanswered=%zu", unanswered);
                break;
            }
            timeout = (long)(s->stop_deadline_ms - now);
        } else if (s->stdio && s->nconns == 0) {
            break; /* the one connection has ended */
        }
        timeout = min_timeout(timeout, check_idle(s, now));
        reap_conns(s);

        bool accepting = !s->stopping && now >= s->accept_pause_until_ms;
        if (s->ls)
            set_listening(s, accepting);
        if (!accepting && !s->stopping)
            timeout = min_timeout(timeout, (long)(s->accept_pause_until_ms - now));
        for (size_t i = 0; i < s->nconns; i++) {
            struct conn *c = s->conns[i];
            conn_watch(s, c);
            if ((c->always_r && c->ev_r) || (c->always_w && c->ev_w))
                timeout = 0;
        }
        if (!s->stopping)
            timeout = min_timeout(timeout, ping_tick(s, now));
        /* 0 when a reply came in while this round was busy, which ZMQ_FD may not signal. */
        timeout = min_timeout(timeout, mxc_next_timeout_ms(s->mxc));

        int n = epoll_wait(s->epfd, s->events, POLICY_EPOLL_EVENTS, (int)timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_msg(LOG_ERR, "FATAL", "error=\"epoll_wait: %s\"", strerror(errno));
            rc = MXC_EIO;
            break;
        }
        /* Replies first: they free pipeline room and are what Postfix waits for. */
        if (mxc_dispatch(s->mxc) < 0)
            log_msg(LOG_ERR, "SERVICE_ERROR", "reason=\"%s\"", mxc_client_error(s->mxc));
        for (int i = 0; i < n; i++) {
            struct evsrc *src = s->events[i].data.ptr;
            uint32_t ev = s->events[i].events;
            switch (src->kind) {
            case SRC_SIGNAL: read_signal(s, sigfd); break;
            case SRC_LISTENER:
                if (s->ls)
                    do_accept(s, src->ptr);
                break;
            case SRC_SERVICE: break; /* mxc_dispatch above */
            case SRC_CONN: handle_conn_event(s, src->ptr, ev); break;
            }
        }
        /* Regular files cannot be polled: they are simply tried. */
        for (size_t i = 0; i < s->nconns; i++) {
            struct conn *c = s->conns[i];
            if (c->always_w && !c->closing && c->ev_w)
                conn_flush(s, c);
            if (c->always_r && !c->closing && (c->ev_r & EPOLLIN))
                conn_read(s, c);
        }
        reap_conns(s);
    }
    if (sigfd >= 0)
        watch(s, EPOLL_CTL_DEL, sigfd, 0, NULL);
    return rc;
}

void policy_server_stats(const policy_server *s, struct policy_stats *out)
{
    const struct policy_metrics *m = &s->m;
    uint64_t fb = 0;

    for (int i = 0; i < PM_FB_N; i++)
        fb += pm_get(&m->fallbacks[i]);
    *out = (struct policy_stats){
        .connections = pm_get(&m->connections),
        .refused = pm_get(&m->refused),
        .requests = pm_get(&m->requests),
        .asked = pm_get(&m->asked),
        .answered = pm_get(&m->answers[PM_ANSWER_SERVICE]),
        .local_dunno = pm_get(&m->answers[PM_ANSWER_LOCAL]),
        .fallbacks = fb,
        .bad_input = pm_get(&m->malformed) + pm_get(&m->oversized),
        .idle_closed = pm_get(&m->timed_out),
    };
}

const struct policy_metrics *policy_server_metrics(const policy_server *s)
{
    return &s->m;
}

void policy_server_destroy(policy_server *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nconns; i++)
        conn_close(s, s->conns[i], -1, NULL);
    reap_conns(s);
    /* Orphaned slots still in flight are freed by their callbacks (MXC_ECLOSED) here. */
    mxc_client_destroy(s->mxc);
    stop_listening(s);
    free(s->conns);
    free(s->events);
    free(s->ls_src);
    if (s->epfd >= 0)
        close(s->epfd);
    free(s->mx_name);
    free(s);
}
