/* The measured run of mxcache-bench over the Postfix policy delegation protocol (see bench.h):
 * what Postfix smtpd does with check_policy_service, many times over, against mxcache-policy,
 * postgrey or any other policy server.
 *
 * Owns the run's connections, threads and epoll instances. Connection j belongs to thread
 * j % threads for the whole run. Each connection keeps --inflight requests outstanding (Postfix
 * keeps one; more are pipelined, and the protocol answers them in order, so the send times are a
 * ring and the oldest one belongs to the next reply). A reply is parsed by bench_req.c, counted by
 * its action, and its connection is refilled and written at once (closed-loop load).
 *
 * Sockets are non-blocking and level-triggered in epoll; a thread never blocks but in
 * epoll_wait, for at most BENCH_POLL_SLICE_MS, so a run never outlives its bounds. A connection
 * that fails (refused, closed by the server, a malformed reply, a reply without a request, a
 * request unanswered for BENCH_LOST_AFTER_NS) counts its outstanding requests as lost and is
 * reopened after BENCH_RECONNECT_MS, like an smtpd that reconnects after a policy server error.
 *
 * Replies are untrusted: they are parsed in a bounded buffer per connection, and a reply longer
 * than BENCH_POLICY_REPLY_MAX ends its connection. */
#include "bench.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define IN_SIZE (2 * BENCH_POLICY_REPLY_MAX) /* room for a full reply plus what follows it */
#define NS_PER_MS 1000000u

/* Where the policy server listens, resolved once before the run. */
struct target {
    struct sockaddr_storage addr;
    socklen_t len;
    int family;
};

enum pstate {
    PC_DOWN,       /* closed; reopened by the sweep at retry_ns */
    PC_CONNECTING, /* non-blocking connect in progress since since_ns */
    PC_UP,
};

struct pconn {
    int fd;
    enum pstate state;
    uint64_t since_ns;  /* PC_CONNECTING: connect start; PC_DOWN: earliest reopen */
    uint64_t *sent_ns;  /* ring of --inflight send times; head is the oldest outstanding */
    unsigned head, count;
    bool want_out;      /* EPOLLOUT is registered: output is waiting */
    char *out;          /* --inflight x BENCH_POLICY_REQ_MAX bytes */
    size_t outlen, outoff;
    size_t inlen;
    char in[IN_SIZE];
};

struct pshared {
    const struct bench_opts *o;
    struct target tg;
    uint64_t t_measure, t_end;  /* absolute, ns */
    atomic_uint_fast64_t counted;
    atomic_bool stop;           /* set by the thread that takes reply number --requests */
    atomic_uint_fast64_t stop_ns;
    _Atomic uint64_t prewarm_key;
};

struct pworker {
    struct pshared *sh;
    unsigned index;
    pthread_t thread;
    bool started;
    int ep;
    struct pconn *conns;
    unsigned nconns;
    struct bench_picker pick;
    uint64_t seq;
    uint64_t replies, unexpected, sent, lost, disconnects;
    uint64_t classes[BENCH_CLASSES];
    int sys_errno;              /* an epoll_wait failure ended the thread early */
    struct bench_hist hist;
};

/* ---- the server's address ---- */

/* target_parse - o->server as tcp://HOST:PORT, inet:HOST:PORT, HOST:PORT, [V6]:PORT, unix:PATH
 * or ipc://PATH into tg. Returns 0, or -1 after a message (a usage error). */
static int target_parse(const char *server, struct target *tg)
{
    char host[256];
    const char *s = server, *port;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res = NULL;
    int e;

    memset(tg, 0, sizeof *tg);
    if (strncmp(s, "unix:", 5) == 0 || strncmp(s, "ipc://", 6) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)&tg->addr;
        s += s[0] == 'u' ? 5 : 6;
        if (!*s || strlen(s) >= sizeof un->sun_path) {
            fprintf(stderr, BENCH_PROGNAME ": --server %s: the socket path is empty or too long\n",
                    server);
            return -1;
        }
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, s, strlen(s) + 1);
        tg->len = (socklen_t)sizeof *un;
        tg->family = AF_UNIX;
        return 0;
    }
    if (strncmp(s, "tcp://", 6) == 0)
        s += 6;
    else if (strncmp(s, "inet:", 5) == 0)
        s += 5;
    if (*s == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':' || (size_t)(end - s - 1) >= sizeof host)
            goto bad;
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = '\0';
        port = end + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon || colon == s || (size_t)(colon - s) >= sizeof host)
            goto bad;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        port = colon + 1;
    }
    if (!*port || strspn(port, "0123456789") != strlen(port))
        goto bad;
    if ((e = getaddrinfo(host, port, &hints, &res)) != 0) {
        fprintf(stderr, BENCH_PROGNAME ": --server %s: %s\n", server, gai_strerror(e));
        return -1;
    }
    memcpy(&tg->addr, res->ai_addr, res->ai_addrlen);
    tg->len = res->ai_addrlen;
    tg->family = res->ai_family;
    freeaddrinfo(res);
    return 0;
bad:
    fprintf(stderr, BENCH_PROGNAME ": --server %s: not HOST:PORT, tcp://HOST:PORT or unix:PATH\n",
            server);
    return -1;
}

/* sock_open - a non-blocking socket connecting to tg. Returns the descriptor with *pending true
 * while the connect is in progress, or -1 with errno set. */
static int sock_open(const struct target *tg, bool *pending)
{
    int fd = socket(tg->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;

    if (fd < 0)
        return -1;
    /* Requests are written whole; pipelined ones must not wait for an ACK. */
    if (tg->family != AF_UNIX)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    *pending = false;
    if (connect(fd, (const struct sockaddr *)&tg->addr, tg->len) == 0)
        return fd;
    if (errno == EINPROGRESS) {
        *pending = true;
        return fd;
    }
    int e = errno;
    close(fd);
    errno = e;
    return -1;
}

/* wait_fd - polls fd for events until deadline_ns. Returns the revents, 0 on timeout. */
static int wait_fd(int fd, short events, uint64_t deadline_ns)
{
    for (;;) {
        uint64_t now = bench_mono_ns();
        struct pollfd p = {.fd = fd, .events = events};
        if (now >= deadline_ns)
            return 0;
        int n = poll(&p, 1, (int)((deadline_ns - now) / NS_PER_MS) + 1);
        if (n > 0)
            return p.revents;
        if (n < 0 && errno != EINTR)
            return POLLERR;
    }
}

/* probe - one request on one connection, answered within BENCH_PROBE_TIMEOUT_MS, before the
 * run: the server is there and speaks the protocol. */
static int probe(const struct bench_opts *o, const struct target *tg)
{
    uint64_t deadline = bench_mono_ns() + (uint64_t)BENCH_PROBE_TIMEOUT_MS * NS_PER_MS;
    struct bench_triplet t;
    char req[BENCH_POLICY_REQ_MAX], in[BENCH_POLICY_REPLY_MAX + 1];
    size_t len, off = 0, inlen = 0;
    enum bench_class cls;
    bool pending;
    int err = 0, fd = sock_open(tg, &pending);
    socklen_t errlen = sizeof err;
    long r;

    if (fd < 0) {
        err = errno;
        goto unavailable;
    }
    if (pending) {
        if (!(wait_fd(fd, POLLOUT, deadline) & (POLLOUT | POLLERR | POLLHUP))) {
            err = ETIMEDOUT;
            goto unavailable;
        }
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen);
        if (err)
            goto unavailable;
    }
    bench_triplet_make(false, 0, 0, &t);
    len = bench_req_policy_build(&t, 0, req);
    while (off < len) {
        ssize_t n = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (!wait_fd(fd, POLLOUT, deadline)) {
                err = ETIMEDOUT;
                goto unavailable;
            }
        } else {
            err = errno;
            goto unavailable;
        }
    }
    for (;;) {
        ssize_t n = recv(fd, in + inlen, sizeof in - 1 - inlen, 0);
        if (n > 0) {
            inlen += (size_t)n;
            if ((r = bench_req_policy_reply(in, inlen, &cls)) != 0)
                break;
        } else if (n == 0) {
            fprintf(stderr, BENCH_PROGNAME ": %s closed the connection without answering\n", o->server);
            close(fd);
            return BENCH_EXIT_FAIL;
        } else if (errno == EAGAIN || errno == EINTR) {
            if (!wait_fd(fd, POLLIN, deadline)) {
                err = ETIMEDOUT;
                goto unavailable;
            }
        } else {
            err = errno;
            goto unavailable;
        }
    }
    close(fd);
    if (r < 0) {
        for (size_t i = 0; i < inlen; i++)
            if ((unsigned char)in[i] < 0x20 || in[i] == 0x7f)
                in[i] = '?';
        in[inlen < 200 ? inlen : 200] = '\0';
        fprintf(stderr, BENCH_PROGNAME ": %s does not answer as a policy server: %s\n", o->server, in);
        return BENCH_EXIT_FAIL;
    }
    return BENCH_EXIT_OK;
unavailable:
    if (fd >= 0)
        close(fd);
    if (err == ETIMEDOUT)
        fprintf(stderr, BENCH_PROGNAME ": no reply from %s within %d s\n", o->server,
                BENCH_PROBE_TIMEOUT_MS / 1000);
    else
        fprintf(stderr, BENCH_PROGNAME ": cannot reach %s: %s\n", o->server, strerror(err));
    return BENCH_EXIT_UNAVAILABLE;
}

/* ---- client threads ---- */

/* take - whether a reply at now counts toward the results; the one that reaches --requests
 * stops the run (as in bench_run.c). */
static bool take(struct pworker *w, uint64_t now)
{
    struct pshared *sh = w->sh;

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

static void set_events(struct pworker *w, struct pconn *c, bool out)
{
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0),
                             .data.u32 = (uint32_t)(c - w->conns)};
    epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = out;
}

/* conn_down - closes c; its outstanding requests are lost. It is reopened by the sweep. */
static void conn_down(struct pworker *w, struct pconn *c, uint64_t now)
{
    if (c->state == PC_UP)
        w->disconnects++;
    w->lost += c->count;
    close(c->fd); /* also removes it from the epoll set */
    c->fd = -1;
    c->state = PC_DOWN;
    c->since_ns = now + (uint64_t)BENCH_RECONNECT_MS * NS_PER_MS;
    c->head = c->count = 0;
    c->outlen = c->outoff = c->inlen = 0;
    c->want_out = false;
}

/* conn_fill - queues requests until --inflight are outstanding (or, with --prewarm, the pool is
 * handed out). Their send time is now: they are written right after. */
static void conn_fill(struct pworker *w, struct pconn *c, uint64_t now)
{
    const struct bench_opts *o = w->sh->o;
    struct bench_triplet t;

    if (now >= w->sh->t_end || atomic_load(&w->sh->stop))
        return;
    /* Robustness: the unwritten bytes belong to outstanding requests, so after this compaction
     * the buffer has room for --inflight requests in all. */
    if (c->outoff) {
        memmove(c->out, c->out + c->outoff, c->outlen - c->outoff);
        c->outlen -= c->outoff;
        c->outoff = 0;
    }
    while (c->count < o->inflight && bench_pick_next(&w->pick, &t)) {
        c->outlen += bench_req_policy_build(&t, w->seq++, c->out + c->outlen);
        c->sent_ns[(c->head + c->count) % o->inflight] = now;
        c->count++;
        w->sent++;
    }
}

/* conn_flush - writes what is queued; registers for EPOLLOUT while some is left. */
static void conn_flush(struct pworker *w, struct pconn *c, uint64_t now)
{
    while (c->outoff < c->outlen) {
        ssize_t n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c->outoff += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            if (!c->want_out)
                set_events(w, c, true);
            return;
        } else {
            conn_down(w, c, now);
            return;
        }
    }
    c->outoff = c->outlen = 0;
    if (c->want_out)
        set_events(w, c, false);
}

/* conn_start - opens c and, once connected, sends its first requests. */
static void conn_start(struct pworker *w, struct pconn *c, uint64_t now)
{
    struct epoll_event ev = {.data.u32 = (uint32_t)(c - w->conns)};
    bool pending;

    c->fd = sock_open(&w->sh->tg, &pending);
    if (c->fd < 0) {
        c->state = PC_DOWN;
        c->since_ns = now + (uint64_t)BENCH_RECONNECT_MS * NS_PER_MS;
        w->disconnects++;
        return;
    }
    c->state = pending ? PC_CONNECTING : PC_UP;
    c->since_ns = now;
    c->want_out = pending;
    ev.events = EPOLLIN | (pending ? EPOLLOUT : 0);
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        c->state = PC_CONNECTING; /* not counted as a disconnect */
        conn_down(w, c, now);
        return;
    }
    if (!pending) {
        conn_fill(w, c, now);
        conn_flush(w, c, now);
    }
}

/* conn_connected - the outcome of a non-blocking connect. */
static void conn_connected(struct pworker *w, struct pconn *c, uint64_t now)
{
    int err = 0;
    socklen_t len = sizeof err;

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err) {
        w->disconnects++;
        conn_down(w, c, now);
        return;
    }
    c->state = PC_UP;
    set_events(w, c, false);
    conn_fill(w, c, now);
    conn_flush(w, c, now);
}

/* conn_read - reads and handles the replies waiting on c, then refills it. */
static void conn_read(struct pworker *w, struct pconn *c)
{
    const struct bench_opts *o = w->sh->o;
    size_t room = IN_SIZE - c->inlen, off = 0;
    ssize_t n = recv(c->fd, c->in + c->inlen, room, 0);
    uint64_t now = bench_mono_ns();
    enum bench_class cls;
    long r;

    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        conn_down(w, c, now);
        return;
    }
    if (n < 0)
        return;
    c->inlen += (size_t)n;
    while ((r = bench_req_policy_reply(c->in + off, c->inlen - off, &cls)) > 0) {
        off += (size_t)r;
        if (c->count == 0) {
            /* A reply without a request: the stream is out of step, start over. */
            w->unexpected++;
            conn_down(w, c, now);
            return;
        }
        uint64_t latency = now - c->sent_ns[c->head];
        c->head = (c->head + 1) % o->inflight;
        c->count--;
        if (take(w, now)) {
            w->replies++;
            w->classes[cls]++;
            bench_hist_record(&w->hist, latency);
        }
    }
    if (r < 0) {
        w->unexpected++;
        conn_down(w, c, now);
        return;
    }
    if (off) {
        memmove(c->in, c->in + off, c->inlen - off);
        c->inlen -= off;
    }
    conn_fill(w, c, now);
    conn_flush(w, c, now);
}

/* sweep - reopens closed connections that are due, and gives up on connects and requests that
 * take too long. */
static void sweep(struct pworker *w, uint64_t now)
{
    for (unsigned i = 0; i < w->nconns; i++) {
        struct pconn *c = &w->conns[i];
        switch (c->state) {
        case PC_DOWN:
            if (now >= c->since_ns)
                conn_start(w, c, now);
            break;
        case PC_CONNECTING:
            if (now - c->since_ns > (uint64_t)BENCH_CONNECT_TIMEOUT_MS * NS_PER_MS) {
                w->disconnects++;
                conn_down(w, c, now);
            }
            break;
        case PC_UP:
            if (c->count && now - c->sent_ns[c->head] > BENCH_LOST_AFTER_NS)
                conn_down(w, c, now);
            break;
        }
    }
}

static void *worker_main(void *arg)
{
    struct pworker *w = arg;
    struct pshared *sh = w->sh;
    struct epoll_event evs[MAX_EVENTS];
    uint64_t next_sweep = 0;

    for (unsigned i = 0; i < w->nconns; i++)
        conn_start(w, &w->conns[i], bench_mono_ns());
    while (!atomic_load(&sh->stop)) {
        uint64_t now = bench_mono_ns();

        if (now >= sh->t_end)
            break;
        if (now >= next_sweep) {
            sweep(w, now);
            next_sweep = now + (uint64_t)BENCH_POLL_SLICE_MS * NS_PER_MS;
        }
        long timeout = (long)((sh->t_end - now + NS_PER_MS - 1) / NS_PER_MS);
        if (timeout > BENCH_POLL_SLICE_MS)
            timeout = BENCH_POLL_SLICE_MS;
        int n = epoll_wait(w->ep, evs, MAX_EVENTS, (int)timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            w->sys_errno = errno;
            break;
        }
        for (int i = 0; i < n; i++) {
            struct pconn *c = &w->conns[evs[i].data.u32];
            uint32_t e = evs[i].events;
            if (c->state == PC_CONNECTING) {
                conn_connected(w, c, bench_mono_ns());
            } else if (c->state == PC_UP) {
                /* Stale events of a connection closed earlier in this batch are skipped. */
                if (e & (EPOLLIN | EPOLLHUP | EPOLLERR))
                    conn_read(w, c);
                if (c->state == PC_UP && (e & EPOLLOUT))
                    conn_flush(w, c, bench_mono_ns());
            }
        }
    }
    return NULL;
}

/* ---- setup and teardown ---- */

static void workers_free(struct pworker *ws, unsigned n)
{
    for (unsigned t = 0; ws && t < n; t++) {
        for (unsigned i = 0; ws[t].conns && i < ws[t].nconns; i++) {
            if (ws[t].conns[i].fd >= 0)
                close(ws[t].conns[i].fd);
            free(ws[t].conns[i].sent_ns);
            free(ws[t].conns[i].out);
        }
        free(ws[t].conns);
        if (ws[t].ep >= 0)
            close(ws[t].ep);
    }
    free(ws);
}

/* workers_create - the threads' structures, epoll instances and connection buffers (the
 * connections are opened by the threads). NULL after a message. */
static struct pworker *workers_create(struct pshared *sh)
{
    const struct bench_opts *o = sh->o;
    struct pworker *ws = calloc(o->threads, sizeof *ws);

    if (!ws)
        goto nomem;
    for (unsigned t = 0; t < o->threads; t++)
        ws[t].ep = -1;
    for (unsigned t = 0; t < o->threads; t++) {
        struct pworker *w = &ws[t];
        unsigned n = o->sockets / o->threads + (t < o->sockets % o->threads);

        w->sh = sh;
        w->index = t;
        bench_hist_init(&w->hist);
        bench_pick_init(&w->pick, o, t, &sh->prewarm_key);
        if ((w->ep = epoll_create1(EPOLL_CLOEXEC)) < 0) {
            fprintf(stderr, BENCH_PROGNAME ": epoll_create1: %s\n", strerror(errno));
            workers_free(ws, o->threads);
            return NULL;
        }
        if (!(w->conns = calloc(n, sizeof *w->conns)))
            goto nomem;
        for (unsigned i = 0; i < n; i++) {
            struct pconn *c = &w->conns[i];
            c->fd = -1;
            w->nconns = i + 1;
            c->sent_ns = calloc(o->inflight, sizeof *c->sent_ns);
            c->out = malloc((size_t)o->inflight * BENCH_POLICY_REQ_MAX);
            if (!c->sent_ns || !c->out)
                goto nomem;
        }
    }
    return ws;
nomem:
    fprintf(stderr, BENCH_PROGNAME ": out of memory\n");
    workers_free(ws, o->threads);
    return NULL;
}

static void collect(const struct pshared *sh, struct pworker *ws, struct bench_result *r)
{
    uint64_t stop_ns = atomic_load(&sh->stop_ns);

    for (unsigned t = 0; t < sh->o->threads; t++) {
        struct pworker *w = &ws[t];
        r->replies += w->replies;
        r->unexpected += w->unexpected;
        r->sent += w->sent;
        r->disconnects += w->disconnects;
        /* Requests still outstanding when the run ended are neither answered nor lost. */
        r->lost += w->lost;
        for (int c = 0; c < BENCH_CLASSES; c++)
            r->classes[c] += w->classes[c];
        bench_hist_merge(&r->hist, &w->hist);
    }
    r->count_limited = stop_ns != 0;
    r->elapsed_ns = (stop_ns ? stop_ns : sh->t_end) - sh->t_measure;
}

int bench_policy_run(const struct bench_opts *o, struct bench_result *r)
{
    struct pshared sh = {.o = o};
    struct pworker *ws;
    int rc;

    memset(r, 0, sizeof *r);
    bench_hist_init(&r->hist);
    if (target_parse(o->server, &sh.tg) != 0)
        return BENCH_EXIT_USAGE;
    if ((rc = probe(o, &sh.tg)) != BENCH_EXIT_OK)
        return rc;
    if (!(ws = workers_create(&sh)))
        return BENCH_EXIT_FAIL;
    atomic_init(&sh.counted, 0);
    atomic_init(&sh.stop, false);
    atomic_init(&sh.stop_ns, 0);
    atomic_init(&sh.prewarm_key, 0);
    sh.t_measure = bench_mono_ns() + o->warmup_ms * NS_PER_MS;
    sh.t_end = sh.t_measure + o->duration_ms * NS_PER_MS;
    for (unsigned t = 0; t < o->threads; t++) {
        if (pthread_create(&ws[t].thread, NULL, worker_main, &ws[t]) != 0) {
            fprintf(stderr, BENCH_PROGNAME ": cannot start thread %u\n", t);
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
            fprintf(stderr, BENCH_PROGNAME ": thread %u: epoll_wait failed: %s\n", t,
                    strerror(ws[t].sys_errno));
            rc = BENCH_EXIT_FAIL;
        }
    if (rc == BENCH_EXIT_OK)
        collect(&sh, ws, r);
    workers_free(ws, o->threads);
    return rc;
}
