/* probe - the SMTP probe engine of mxcached (see probe.h).
 *
 * Owns: a copy of the routes with their resolved addresses, one thread with its epoll instance,
 * two eventfds (submissions in, results out), every session socket and every probe until
 * probe_take hands its result over. The submit and result queues are the only state shared
 * between threads, under one mutex with the statistics; everything else belongs to the engine
 * thread. Trusts the routes (operator configuration, checked once here) and nothing that comes
 * from a backend: replies go through smtp_reply.c, are bounded in bytes and in time, and any
 * surprise breaks the session and fails the probe temporarily. Addresses are checked again at
 * submit so that no caller can put a CR, LF or '>' into a command. */
#include "probe.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mxc_err.h"

#define PROBE_DEFAULT_PORT 25
#define PROBE_ADDRESS_MAX 254     /* bytes of an address: RFC 5321's path (256) without <> */
#define PROBE_HELO_MAX 255        /* bytes of the EHLO name: a domain name */
#define PROBE_NAME_MAX 255        /* bytes of a route's name */
#define PROBE_ADDRS_MAX 4         /* resolved addresses of one host tried, each with connect_ms */
#define PROBE_SESSIONS_MAX 1024   /* max_sessions of one host */
#define PROBE_TIMEOUT_MAX 3600000 /* ms: any stage timeout or the idle time */
#define PROBE_QUIT_WAIT_MS 1000   /* longest wait for the 221 (and never above command_ms) */
#define PROBE_OUT_MAX 512         /* one command with CRLF: "MAIL FROM:<254 bytes>" is 267 */
#define PROBE_READ_CHUNK 4096     /* bytes read from a session per event */
#define PROBE_HELLO_MAX 2560      /* greeting, EHLO and HELO lines kept per session for
                                     transcripts: 3 replies and 2 commands of the longest */
#define PROBE_EVENTS_MAX 64       /* epoll events handled per wakeup */
#define PROBE_LINE_MAX 640        /* one transcript line: "S: " + code + status + text + LF */

/* Session states, in dialogue order. A session past S_HELO is established: the host works. */
enum sstate {
    S_CONNECT,  /* TCP connect in progress */
    S_GREETING, /* waiting for the 220 */
    S_EHLO,
    S_HELO,
    S_IDLE,     /* established, no probe, no command outstanding */
    S_RSET,
    S_MAIL,
    S_RCPT,
    S_QUIT,     /* QUIT sent; closed on any reply, EOF or a short timeout */
    S_DEAD,     /* closed; freed at the end of the loop round */
};

static const char *const stage_names[] = {
    "connect", "greeting", "EHLO", "HELO", "idle", "RSET", "MAIL FROM", "RCPT TO", "QUIT", "closed",
};

struct job {
    struct job *next;
    uint64_t token;
    unsigned route;
    const struct host *last; /* the host tried last, for the result's backend */
    char address[PROBE_ADDRESS_MAX + 1];
    uint64_t submitted_ms;
    enum probe_outcome outcome;
    struct smtp_reply reply;
    char detail[PROBE_DETAIL_MAX];
    char *transcript;       /* PROBE_TRANSCRIPT_MAX bytes when asked for, else NULL */
    size_t tlen;
    bool tfull;
    bool reused;
    bool requeued;          /* put back once after a reused session broke before MAIL FROM */
    uint64_t duration_ms;
};

struct jobq {
    struct job *head, *tail;
    size_t n;
};

struct route;
struct probe_engine;

struct host {
    struct probe_engine *eng;
    struct route *route;
    unsigned idx;                   /* position in the route */
    char name[PROBE_BACKEND_MAX];   /* "host:port" or "[v6]:port" */
    struct sockaddr_storage addr[PROBE_ADDRS_MAX];
    socklen_t addrlen[PROBE_ADDRS_MAX];
    unsigned naddr;
    struct jobq wait;               /* probes for this host that no session runs yet */
    struct session *sessions;       /* every open session of this host */
    unsigned nsessions;
    bool pending;                   /* the waiting queue or the session count changed */
};

struct route {
    char name[PROBE_NAME_MAX + 1];
    char helo[PROBE_HELO_MAX + 1];
    char mail_from[PROBE_ADDRESS_MAX + 1];
    uint64_t connect_ms, greeting_ms, command_ms, session_idle_ms;
    unsigned max_sessions, session_probes;
    struct host hosts[PROBE_HOSTS_MAX];
    unsigned nhosts;
};

struct session {
    struct host *host;
    struct session *prev, *next; /* the host's list, or the dead list */
    int fd;
    enum sstate state;
    uint64_t deadline;           /* monotonic ms when the current stage times out */
    size_t heap_idx;
    unsigned addr_idx;           /* the host's address being connected or used */
    int werr;                    /* an error found while sending or connecting, handled by the timer */
    struct job *job;
    unsigned probes;             /* MAIL FROMs sent in this session */
    bool dirty;                  /* a MAIL FROM since the last RSET */
    bool want_out;               /* EPOLLOUT is registered */
    struct smtp_parser parser;
    char out[PROBE_OUT_MAX];
    size_t outlen;
    char hello[PROBE_HELLO_MAX]; /* transcript lines of the greeting and EHLO/HELO */
    size_t hellolen;
    bool hellofull;
};

struct probe_engine {
    struct route *routes;
    size_t nroutes;
    unsigned max_queued;
    int epfd, submit_fd, result_fd;
    pthread_t thread;
    bool started;

    /* Between threads, under lock: the queues, the stop flag and the statistics. */
    pthread_mutex_t lock;
    struct jobq submitq, resultq;
    unsigned unfinished;
    bool stop;
    struct probe_stats st;

    /* The engine thread's own. */
    struct session **heap;       /* every open session, earliest deadline first */
    size_t nheap, heapcap;
    struct session *dead;
};

/* ---- small helpers ---- */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* fmt - vsnprintf into buf, truncating: details and messages are cut, never overflowed. */
static void fmt(char *buf, size_t len, const char *f, ...) __attribute__((format(printf, 3, 4)));
static void fmt(char *buf, size_t len, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, len, f, ap);
    va_end(ap);
}

/* is_safe_word - whether s (at most max bytes, at least min) can go between the angle brackets or
 * after EHLO of a command as it is. Security: a byte <= 0x20 could end the command or add one
 * (CR, LF, NUL) or split it (space); '<' and '>' could close the path early; bytes above 0x7e
 * need SMTPUTF8, which a probe does not negotiate. */
static bool is_safe_word(const char *s, size_t min, size_t max)
{
    size_t n = 0;

    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (n >= max || c <= 0x20 || c >= 0x7f || c == '<' || c == '>')
            return false;
    }
    return n >= min;
}

static void jobq_push(struct jobq *q, struct job *j)
{
    j->next = NULL;
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
    q->n++;
}

static void jobq_push_front(struct jobq *q, struct job *j)
{
    j->next = q->head;
    q->head = j;
    if (!q->tail)
        q->tail = j;
    q->n++;
}

static struct job *jobq_pop(struct jobq *q)
{
    struct job *j = q->head;

    if (j) {
        q->head = j->next;
        if (!q->head)
            q->tail = NULL;
        j->next = NULL;
        q->n--;
    }
    return j;
}

static void job_free(struct job *j)
{
    if (j) {
        free(j->transcript);
        free(j);
    }
}

static void jobq_free(struct jobq *q)
{
    struct job *j;
    while ((j = jobq_pop(q)))
        job_free(j);
}

/* text_add - appends prefix, body and LF to buf (cap bytes with the NUL) when the whole line
 * fits; once one does not, nothing more is added, so that a transcript is always a prefix of
 * the dialogue cut between two lines, never inside one. */
static void text_add(char *buf, size_t cap, size_t *len, bool *full, const char *prefix,
                     const char *body, size_t bodylen)
{
    size_t pl = strlen(prefix);

    if (*full)
        return;
    if (*len + pl + bodylen + 2 > cap) {
        *full = true;
        return;
    }
    memcpy(buf + *len, prefix, pl);
    memcpy(buf + *len + pl, body, bodylen);
    *len += pl + bodylen;
    buf[(*len)++] = '\n';
    buf[*len] = '\0';
}

/* reply_format - "CODE STATUS TEXT" of a parsed reply, for transcripts and details. */
static void reply_format(const struct smtp_reply *r, char *out, size_t len)
{
    fmt(out, len, "%u%s%s%s%s", r->code, r->status[0] ? " " : "", r->status, r->text[0] ? " " : "",
        r->text);
}

/* ---- the deadline heap: every open session, earliest deadline on top ---- */

static void heap_set(struct probe_engine *e, size_t i, struct session *s)
{
    e->heap[i] = s;
    s->heap_idx = i;
}

static void heap_up(struct probe_engine *e, size_t i)
{
    struct session *s = e->heap[i];

    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (e->heap[p]->deadline <= s->deadline)
            break;
        heap_set(e, i, e->heap[p]);
        i = p;
    }
    heap_set(e, i, s);
}

static void heap_down(struct probe_engine *e, size_t i)
{
    struct session *s = e->heap[i];

    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= e->nheap)
            break;
        if (c + 1 < e->nheap && e->heap[c + 1]->deadline < e->heap[c]->deadline)
            c++;
        if (s->deadline <= e->heap[c]->deadline)
            break;
        heap_set(e, i, e->heap[c]);
        i = c;
    }
    heap_set(e, i, s);
}

/* heap_insert - there is always room: the heap was sized at create for every session that
 * max_sessions allows. */
static void heap_insert(struct probe_engine *e, struct session *s)
{
    heap_set(e, e->nheap++, s);
    heap_up(e, s->heap_idx);
}

static void heap_remove(struct probe_engine *e, struct session *s)
{
    size_t i = s->heap_idx;
    struct session *last = e->heap[--e->nheap];

    if (last != s) {
        heap_set(e, i, last);
        heap_up(e, i);
        heap_down(e, last->heap_idx);
    }
}

/* session_deadline - the current stage ends ms from now. */
static void session_deadline(struct session *s, uint64_t ms)
{
    struct probe_engine *e = s->host->eng;

    s->deadline = mono_ms() + ms;
    heap_up(e, s->heap_idx);
    heap_down(e, s->heap_idx);
}

/* session_due - the timer handles this session in the next round (errors found where handling
 * them at once would re-enter the dispatcher). */
static void session_due(struct session *s, int err)
{
    struct probe_engine *e = s->host->eng;

    s->werr = err;
    s->deadline = 0;
    heap_up(e, s->heap_idx);
}

/* ---- results ---- */

static void stat_add(struct probe_engine *e, uint64_t *field, uint64_t n)
{
    pthread_mutex_lock(&e->lock);
    *field += n;
    pthread_mutex_unlock(&e->lock);
}

/* job_finish - hands j over to probe_take. For FAILED, detail says why and j->reply keeps the
 * last unexpected reply; otherwise the reply is the RCPT TO reply. */
static void job_finish(struct probe_engine *e, struct job *j, enum probe_outcome outcome,
                       const struct smtp_reply *reply)
{
    uint64_t one = 1;
    bool was_empty;

    j->outcome = outcome;
    if (reply)
        j->reply = *reply;
    if (outcome != PROBE_FAILED)
        j->detail[0] = '\0';
    j->duration_ms = mono_ms() - j->submitted_ms;
    pthread_mutex_lock(&e->lock);
    was_empty = e->resultq.head == NULL;
    jobq_push(&e->resultq, j);
    e->unfinished--;
    switch (outcome) {
    case PROBE_ACCEPTED: e->st.accepted++; break;
    case PROBE_REJECTED: e->st.rejected++; break;
    case PROBE_TEMPFAIL: e->st.tempfail++; break;
    case PROBE_FAILED: e->st.failed++; break;
    }
    /* Written under the lock with the queue, so that the fd is readable exactly while the
     * queue is not empty (probe_take drains it under the same lock). */
    if (was_empty && write(e->result_fd, &one, sizeof one) < 0)
        log_msg(LOG_ERR, "PROBE_ENGINE", "error=\"result eventfd: %s\"", strerror(errno));
    pthread_mutex_unlock(&e->lock);
}

static void job_note(struct job *j, const char *prefix, const char *line)
{
    if (j->transcript)
        text_add(j->transcript, PROBE_TRANSCRIPT_MAX, &j->tlen, &j->tfull, prefix, line, strlen(line));
}

/* job_note_hello - copies the session's greeting and EHLO lines into j's transcript, line by
 * line so that the cut stays clean. */
static void job_note_hello(struct job *j, const struct session *s)
{
    const char *p = s->hello, *end = s->hello + s->hellolen;

    if (!j->transcript)
        return;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        text_add(j->transcript, PROBE_TRANSCRIPT_MAX, &j->tlen, &j->tfull, "", p, (size_t)(nl - p));
        p = nl + 1;
    }
}

/* job_failover - j could not be run on host h (detail says why): it waits for the route's next
 * host, or fails when h was the last. */
static void job_failover(struct probe_engine *e, struct job *j, struct host *h, const char *detail)
{
    struct route *r = h->route;

    fmt(j->detail, sizeof j->detail, "%s", detail);
    j->last = h;
    if (h->idx + 1 < r->nhosts) {
        struct host *next = &r->hosts[h->idx + 1];
        jobq_push(&next->wait, j);
        next->pending = true;
    } else {
        job_finish(e, j, PROBE_FAILED, NULL);
    }
}

/* ---- sessions ---- */

static bool session_established(const struct session *s)
{
    return s->state >= S_IDLE && s->state <= S_RCPT;
}

/* session_note - a transcript line: into the session's hello lines until the hello is done,
 * then into its probe's transcript. */
static void session_note(struct session *s, const char *prefix, const char *line)
{
    if (s->state == S_GREETING || s->state == S_EHLO || s->state == S_HELO)
        text_add(s->hello, sizeof s->hello, &s->hellolen, &s->hellofull, prefix, line, strlen(line));
    else if (s->job)
        job_note(s->job, prefix, line);
}

static void session_epoll(struct session *s, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = s};
    epoll_ctl(s->host->eng->epfd, EPOLL_CTL_MOD, s->fd, &ev);
}

/* session_close - closes the socket at once (no QUIT: callers that want one send it first) and
 * defers the free to the end of the round, since events of this round may still name s. The
 * session's probe must have been given a fate already. */
static void session_close(struct session *s)
{
    struct host *h = s->host;
    struct probe_engine *e = h->eng;

    if (s->fd >= 0) {
        epoll_ctl(e->epfd, EPOLL_CTL_DEL, s->fd, NULL);
        close(s->fd);
        s->fd = -1;
    }
    heap_remove(e, s);
    if (s->prev)
        s->prev->next = s->next;
    else
        h->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    h->nsessions--;
    h->pending = true;
    s->state = S_DEAD;
    s->prev = NULL;
    s->next = e->dead;
    e->dead = s;
    pthread_mutex_lock(&e->lock);
    e->st.sessions_open--;
    pthread_mutex_unlock(&e->lock);
}

/* session_flush - sends what the output buffer holds; what the socket does not take waits for
 * EPOLLOUT. A send error is left to the timer (session_due). */
static void session_flush(struct session *s)
{
    while (s->outlen > 0) {
        ssize_t n = send(s->fd, s->out, s->outlen, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            session_due(s, errno);
            return;
        }
        memmove(s->out, s->out + n, s->outlen - (size_t)n);
        s->outlen -= (size_t)n;
    }
    if ((s->outlen > 0) != s->want_out) {
        s->want_out = s->outlen > 0;
        session_epoll(s, EPOLLIN | (s->want_out ? EPOLLOUT : 0));
    }
}

/* session_command - sends one command (cmd without CRLF) and waits ms for its reply in state. */
static void session_command(struct session *s, enum sstate state, uint64_t ms, const char *cmd)
{
    size_t n = strlen(cmd);

    s->state = state;
    session_note(s, "C: ", cmd);
    /* One command at a time and each shorter than the buffer: the routes and addresses were
     * bounded at create and submit. */
    if (s->outlen + n + 2 > sizeof s->out) {
        log_msg(LOG_ERR, "PROBE_ENGINE", "error=\"command too long\" backend=%s", s->host->name);
        session_due(s, EMSGSIZE);
        return;
    }
    memcpy(s->out + s->outlen, cmd, n);
    memcpy(s->out + s->outlen + n, "\r\n", 2);
    s->outlen += n + 2;
    smtp_parser_init(&s->parser);
    s->werr = 0;
    session_deadline(s, ms);
    session_flush(s);
}

static void session_quit(struct session *s)
{
    const struct route *r = s->host->route;
    session_command(s, S_QUIT, r->command_ms < PROBE_QUIT_WAIT_MS ? r->command_ms : PROBE_QUIT_WAIT_MS,
                    "QUIT");
}

/* session_start - the established session s runs its probe: RSET first when a transaction
 * happened, else MAIL FROM. */
static void session_start(struct session *s)
{
    const struct route *r = s->host->route;
    char cmd[PROBE_OUT_MAX];

    if (s->dirty) {
        session_command(s, S_RSET, r->command_ms, "RSET");
        return;
    }
    fmt(cmd, sizeof cmd, "MAIL FROM:<%s>", r->mail_from);
    s->dirty = true;
    s->probes++;
    session_command(s, S_MAIL, r->command_ms, cmd);
}

/* session_attach - gives the established session s the probe j. */
static void session_attach(struct session *s, struct job *j)
{
    struct probe_engine *e = s->host->eng;

    s->job = j;
    j->last = s->host;
    j->reused = true;
    job_note_hello(j, s);
    stat_add(e, &e->st.sessions_reused, 1);
    session_start(s);
}

/* session_next - s has finished a probe: the next waiting one, idle, or QUIT. */
static void session_next(struct session *s)
{
    struct host *h = s->host;
    const struct route *r = h->route;

    if (s->probes >= r->session_probes) {
        session_quit(s);
    } else if (h->wait.head) {
        session_attach(s, jobq_pop(&h->wait));
    } else if (r->session_idle_ms == 0) {
        session_quit(s);
    } else {
        s->state = S_IDLE;
        session_deadline(s, r->session_idle_ms);
    }
}

/* session_log - a session error, for the operator (rare: a backend that misbehaves), and the
 * detail of a failed probe: "host:port: stage: what". */
static void session_log(const struct session *s, const char *what, char *detail, size_t len)
{
    char esc[LOG_FIELD_MAX], name[LOG_FIELD_MAX];
    log_msg(LOG_INFO, "PROBE_SESSION", "backend=%s route=\"%s\" stage=%s error=\"%s\"", s->host->name,
            log_str(s->host->route->name, name, sizeof name), stage_names[s->state],
            log_str(what, esc, sizeof esc));
    fmt(detail, len, "%s: %s: %s", s->host->name, stage_names[s->state], what);
}

/* session_host_failed - the host could not be used (connect, greeting): the session's probe,
 * and the waiting ones when no other session shows that the host works, go to the next host.
 * With quit, a QUIT is sent (the host spoke SMTP), else the session is closed at once. */
static void session_host_failed(struct session *s, const char *what, bool quit)
{
    struct host *h = s->host;
    struct probe_engine *e = h->eng;
    struct job *j = s->job;
    char detail[PROBE_DETAIL_MAX];
    bool works = false;

    session_log(s, what, detail, sizeof detail);
    s->job = NULL;
    if (j) {
        job_note_hello(j, s);
        job_failover(e, j, h, detail);
    }
    for (const struct session *o = h->sessions; o; o = o->next)
        works = works || (o != s && session_established(o));
    /* Robustness: without this, probes queued behind a dead host would each wait for their own
     * connect timeout before they move on. */
    if (!works)
        while ((j = jobq_pop(&h->wait)))
            job_failover(e, j, h, detail);
    if (quit)
        session_quit(s);
    else
        session_close(s);
}

/* session_probe_failed - the probe of s failed (a temporary failure); the session is closed,
 * with QUIT when the dialogue is still in step. A probe that broke a reused session before its
 * MAIL FROM is put back once instead: it has not been tried. */
static void session_probe_failed(struct session *s, const char *what, bool quit)
{
    struct job *j = s->job;
    char detail[PROBE_DETAIL_MAX];

    session_log(s, what, detail, sizeof detail);
    s->job = NULL;
    if (j) {
        j->last = s->host;
        if (s->state == S_RSET && !j->requeued) {
            j->requeued = true;
            jobq_push_front(&s->host->wait, j);
            s->host->pending = true;
        } else {
            if (s->state == S_EHLO || s->state == S_HELO)
                job_note_hello(j, s);
            fmt(j->detail, sizeof j->detail, "%s", detail);
            job_finish(s->host->eng, j, PROBE_FAILED, NULL);
        }
    }
    if (quit)
        session_quit(s);
    else
        session_close(s);
}

static void session_connect(struct session *s);

/* session_broken - a failure that is not a reply (timeout, closed connection, socket error,
 * malformed reply, bytes nobody asked for): what it means depends on the stage. */
static void session_broken(struct session *s, const char *what)
{
    char detail[PROBE_DETAIL_MAX];

    switch (s->state) {
    case S_CONNECT:
        /* A name with several addresses (localhost: ::1 and 127.0.0.1) is one host: each
         * address is tried, with its own connect_ms, before the probe moves on. */
        stat_add(s->host->eng, &s->host->eng->st.connect_failures, 1);
        if (s->addr_idx + 1 < s->host->naddr) {
            s->addr_idx++;
            session_connect(s);
        } else {
            session_host_failed(s, what, false);
        }
        break;
    case S_GREETING:
        session_host_failed(s, what, false);
        break;
    case S_EHLO:
    case S_HELO:
    case S_RSET:
    case S_MAIL:
    case S_RCPT:
        session_probe_failed(s, what, false);
        break;
    case S_IDLE:
        session_log(s, what, detail, sizeof detail);
        session_close(s);
        break;
    case S_QUIT:
        session_close(s);
        break;
    case S_DEAD:
        break;
    }
}

/* session_connect - starts the connect to the session's current address; an error is left to
 * the timer (so that failover never runs inside the dispatcher). */
static void session_connect(struct session *s)
{
    struct host *h = s->host;
    struct probe_engine *e = h->eng;
    const struct sockaddr_storage *a = &h->addr[s->addr_idx];
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = s};

    if (s->fd >= 0) {
        epoll_ctl(e->epfd, EPOLL_CTL_DEL, s->fd, NULL);
        close(s->fd);
    }
    s->state = S_CONNECT;
    s->want_out = true;
    session_deadline(s, h->route->connect_ms);
    s->fd = socket(a->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        session_due(s, errno);
        return;
    }
    if (connect(s->fd, (const struct sockaddr *)a, h->addrlen[s->addr_idx]) != 0 && errno != EINPROGRESS) {
        session_due(s, errno);
        return;
    }
    /* Even a connect that completed at once reports EPOLLOUT, so one path handles both. */
    if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, s->fd, &ev) != 0)
        session_due(s, errno);
}

/* session_open - a new session on h for the probe j. */
static void session_open(struct probe_engine *e, struct host *h, struct job *j)
{
    struct session *s = calloc(1, sizeof *s);

    j->last = h;
    if (!s) {
        fmt(j->detail, sizeof j->detail, "%s: connect: out of memory", h->name);
        job_finish(e, j, PROBE_FAILED, NULL);
        return;
    }
    s->host = h;
    s->fd = -1;
    s->job = j;
    s->deadline = UINT64_MAX;
    heap_insert(e, s);
    s->next = h->sessions;
    if (h->sessions)
        h->sessions->prev = s;
    h->sessions = s;
    h->nsessions++;
    pthread_mutex_lock(&e->lock);
    e->st.sessions_open++;
    pthread_mutex_unlock(&e->lock);
    session_connect(s);
}

/* session_connected - the connect finished, well or not. */
static void session_connected(struct session *s)
{
    struct probe_engine *e = s->host->eng;
    int err = 0;
    socklen_t len = sizeof err;

    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err != 0) {
        session_broken(s, strerror(err));
        return;
    }
    stat_add(e, &e->st.sessions_opened, 1);
    s->state = S_GREETING;
    s->want_out = false;
    session_epoll(s, EPOLLIN);
    smtp_parser_init(&s->parser);
    session_deadline(s, s->host->route->greeting_ms);
}

/* session_ready - the hello is done: the session runs the probe it was opened for. */
static void session_ready(struct session *s)
{
    s->state = S_IDLE;
    if (s->job) {
        job_note_hello(s->job, s);
        session_start(s);
    } else {
        session_next(s);
    }
}

/* session_reply - a complete reply came in the current stage. */
static void session_reply(struct session *s, const struct smtp_reply *rep)
{
    const struct route *r = s->host->route;
    char line[PROBE_LINE_MAX], cmd[PROBE_OUT_MAX];
    unsigned cls = smtp_reply_class(rep);
    struct job *j = s->job;

    reply_format(rep, line, sizeof line);
    session_note(s, "S: ", line);
    switch (s->state) {
    case S_GREETING:
        if (cls == 2) {
            fmt(cmd, sizeof cmd, "EHLO %s", r->helo);
            session_command(s, S_EHLO, r->command_ms, cmd);
        } else {
            if (j)
                j->reply = *rep;
            session_host_failed(s, line, true);
        }
        break;
    case S_EHLO:
        if (cls == 2) {
            session_ready(s);
        } else if (cls == 5) {
            /* An old or minimal server: RFC 5321 4.1.4 says try HELO. */
            fmt(cmd, sizeof cmd, "HELO %s", r->helo);
            session_command(s, S_HELO, r->command_ms, cmd);
        } else {
            if (j)
                j->reply = *rep;
            session_probe_failed(s, line, true);
        }
        break;
    case S_HELO:
    case S_RSET:
    case S_MAIL:
        if (cls != 2) {
            if (j)
                j->reply = *rep;
            session_probe_failed(s, line, true);
        } else if (s->state == S_HELO) {
            session_ready(s);
        } else if (s->state == S_RSET) {
            s->dirty = false;
            session_start(s);
        } else {
            fmt(cmd, sizeof cmd, "RCPT TO:<%s>", j->address);
            session_command(s, S_RCPT, r->command_ms, cmd);
        }
        break;
    case S_RCPT:
        if (cls != 2 && cls != 4 && cls != 5) {
            j->reply = *rep;
            session_probe_failed(s, line, false);
            break;
        }
        s->job = NULL;
        s->state = S_IDLE;
        job_finish(s->host->eng, j, cls == 2 ? PROBE_ACCEPTED : cls == 4 ? PROBE_TEMPFAIL : PROBE_REJECTED, rep);
        session_next(s);
        break;
    case S_QUIT:
        session_close(s);
        break;
    case S_CONNECT:
    case S_IDLE:
    case S_DEAD:
        break; /* session_readable never parses in these states */
    }
}

/* session_readable - reads what the backend sent and acts on a complete reply. */
static void session_readable(struct session *s)
{
    char buf[PROBE_READ_CHUNK], what[PROBE_DETAIL_MAX];
    struct smtp_reply rep;
    size_t used = 0;
    ssize_t n;

    while ((n = recv(s->fd, buf, sizeof buf, MSG_DONTWAIT)) < 0 && errno == EINTR)
        ;
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            session_broken(s, strerror(errno));
        return;
    }
    if (n == 0) {
        if (s->state == S_IDLE) /* the backend's own idle timeout: not an error */
            session_close(s);
        else
            session_broken(s, "connection closed");
        return;
    }
    if (s->state == S_QUIT) {
        session_close(s);
        return;
    }
    /* Security: a reply nobody asked for (or the rest of one after its end) means the dialogue
     * is out of step, and the next reply could be taken for the answer to the next command. */
    if (s->state == S_IDLE || s->state == S_CONNECT) {
        session_broken(s, "unexpected bytes from the server");
        return;
    }
    switch (smtp_parser_feed(&s->parser, buf, (size_t)n, &used, &rep)) {
    case SMTP_PARSE_MORE:
        break;
    case SMTP_PARSE_BAD:
        fmt(what, sizeof what, "malformed reply: %s", smtp_parser_error(&s->parser));
        session_broken(s, what);
        break;
    case SMTP_PARSE_DONE:
        if (used < (size_t)n)
            session_broken(s, "unexpected bytes after the reply");
        else
            session_reply(s, &rep);
        break;
    }
}

static void session_event(struct session *s, uint32_t events)
{
    if (s->state == S_DEAD || s->werr != 0)
        return; /* closed earlier in this round, or an error the timer will report */
    if (s->state == S_CONNECT) {
        session_connected(s);
        return;
    }
    if ((events & EPOLLOUT) && s->outlen > 0) {
        session_flush(s);
        if (s->werr != 0)
            return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        session_readable(s);
}

/* session_timeout - the current stage of s is over: its deadline passed, or an error was left
 * for the timer. */
static void session_timeout(struct session *s)
{
    char what[PROBE_DETAIL_MAX];
    const struct route *r = s->host->route;
    uint64_t ms;

    if (s->werr != 0) {
        fmt(what, sizeof what, "%s", strerror(s->werr));
        s->werr = 0;
        session_broken(s, what);
        return;
    }
    switch (s->state) {
    case S_IDLE:
        session_quit(s);
        return;
    case S_QUIT:
        session_close(s);
        return;
    case S_CONNECT: ms = r->connect_ms; break;
    case S_GREETING: ms = r->greeting_ms; break;
    default: ms = r->command_ms; break;
    }
    fmt(what, sizeof what, "timeout after %llu ms", (unsigned long long)ms);
    session_broken(s, what);
}

/* ---- the engine thread ---- */

/* host_dispatch - gives the waiting probes of h to its idle sessions, then to new sessions as
 * far as max_sessions allows. */
static void host_dispatch(struct probe_engine *e, struct host *h)
{
    while (h->wait.head) {
        struct session *s = h->sessions;
        while (s && s->state != S_IDLE)
            s = s->next;
        if (s)
            session_attach(s, jobq_pop(&h->wait));
        else if (h->nsessions < h->route->max_sessions)
            session_open(e, h, jobq_pop(&h->wait));
        else
            break;
    }
}

/* take_submitted - moves the submitted probes to the first host of their route. Returns
 * whether the engine is stopping. */
static bool take_submitted(struct probe_engine *e)
{
    uint64_t v;
    struct jobq q;
    struct job *j;
    bool stop;

    while (read(e->submit_fd, &v, sizeof v) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&e->lock);
    q = e->submitq;
    e->submitq = (struct jobq){0};
    stop = e->stop;
    pthread_mutex_unlock(&e->lock);
    while ((j = jobq_pop(&q))) {
        struct host *h = &e->routes[j->route].hosts[0];
        j->last = h;
        jobq_push(&h->wait, j);
        h->pending = true;
    }
    return stop;
}

static void *probe_main(void *arg)
{
    struct probe_engine *e = arg;
    struct epoll_event evs[PROBE_EVENTS_MAX];

    pthread_setname_np(pthread_self(), "mxcached-probe"); /* for top -H and perf */
    for (;;) {
        int timeout = -1, n;
        uint64_t now;

        if (e->nheap > 0) {
            uint64_t d = e->heap[0]->deadline;
            now = mono_ms();
            timeout = d <= now ? 0 : d - now > INT_MAX ? INT_MAX : (int)(d - now);
        }
        n = epoll_wait(e->epfd, evs, PROBE_EVENTS_MAX, timeout);
        if (n < 0 && errno != EINTR) {
            /* Our bug (a bad epoll fd): say so, and do not spin while it lasts. */
            struct timespec pause = {.tv_nsec = 10 * 1000000L};
            log_msg(LOG_ERR, "PROBE_ENGINE", "error=\"epoll_wait: %s\"", strerror(errno));
            nanosleep(&pause, NULL);
        }
        if (n < 0)
            n = 0;
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) {
                if (take_submitted(e))
                    return NULL;
            } else {
                session_event(evs[i].data.ptr, evs[i].events);
            }
        }
        now = mono_ms();
        while (e->nheap > 0 && e->heap[0]->deadline <= now)
            session_timeout(e->heap[0]);
        /* Batched: dispatch after the round, so that failover and closes never re-enter it. */
        for (bool again = true; again;) {
            again = false;
            for (size_t r = 0; r < e->nroutes; r++)
                for (unsigned k = 0; k < e->routes[r].nhosts; k++) {
                    struct host *h = &e->routes[r].hosts[k];
                    if (h->pending) {
                        h->pending = false;
                        host_dispatch(e, h);
                        again = true;
                    }
                }
        }
        while (e->dead) {
            struct session *s = e->dead;
            e->dead = s->next;
            free(s);
        }
    }
}

/* ---- create / destroy ---- */

/* host_init - parses spec ("host", "host:port", "[v6]", "[v6]:port") and resolves it. */
static int host_init(struct host *h, const char *spec, char *err, size_t errlen)
{
    char name[PROBE_BACKEND_MAX], port[8];
    const char *colon, *p = spec;
    size_t n;
    bool v6 = false;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV}, *res = NULL, *ai;
    int rc;

    if (!spec || (n = strlen(spec)) == 0 || n >= PROBE_BACKEND_MAX) {
        fmt(err, errlen, "host \"%.*s\": empty or too long", 64, spec ? spec : "");
        return MXC_EINVAL;
    }
    fmt(port, sizeof port, "%d", PROBE_DEFAULT_PORT);
    if (*p == '[') {
        const char *end = strchr(p, ']');
        if (!end || end == p + 1) {
            fmt(err, errlen, "host \"%s\": bad [address]", spec);
            return MXC_EINVAL;
        }
        fmt(name, sizeof name, "%.*s", (int)(end - p - 1), p + 1);
        colon = end[1] == ':' ? end + 1 : NULL;
        if (end[1] != '\0' && !colon) {
            fmt(err, errlen, "host \"%s\": junk after ]", spec);
            return MXC_EINVAL;
        }
        v6 = true;
        hints.ai_flags |= AI_NUMERICHOST;
    } else {
        colon = strchr(p, ':');
        if (colon && strchr(colon + 1, ':')) {
            fmt(err, errlen, "host \"%s\": write an IPv6 address as [address]:port", spec);
            return MXC_EINVAL;
        }
        fmt(name, sizeof name, "%.*s", (int)(colon ? (size_t)(colon - p) : n), p);
        if (!name[0]) {
            fmt(err, errlen, "host \"%s\": no host name", spec);
            return MXC_EINVAL;
        }
    }
    if (colon) {
        const char *q = colon + 1;
        unsigned long v = 0;
        size_t digits = strspn(q, "0123456789");
        if (digits == 0 || digits > 5 || q[digits] != '\0' || (v = strtoul(q, NULL, 10)) == 0 || v > 65535) {
            fmt(err, errlen, "host \"%s\": bad port", spec);
            return MXC_EINVAL;
        }
        fmt(port, sizeof port, "%lu", v);
    }
    for (const char *c = name; *c; c++)
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f) {
            fmt(err, errlen, "host \"%.*s\": bad byte in the name", 64, spec);
            return MXC_EINVAL;
        }
    if (strlen(name) + strlen(port) + (v6 ? 3 : 1) >= sizeof h->name) {
        fmt(err, errlen, "host \"%.*s...\": too long", 64, spec);
        return MXC_EINVAL;
    }
    fmt(h->name, sizeof h->name, v6 ? "[%s]:%s" : "%s:%s", name, port);
    if ((rc = getaddrinfo(name, port, &hints, &res)) != 0) {
        fmt(err, errlen, "host \"%s\": %s", spec, rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return MXC_EINVAL;
    }
    for (ai = res; ai && h->naddr < PROBE_ADDRS_MAX; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof h->addr[0] || (ai->ai_family != AF_INET && ai->ai_family != AF_INET6))
            continue;
        memcpy(&h->addr[h->naddr], ai->ai_addr, ai->ai_addrlen);
        h->addrlen[h->naddr++] = ai->ai_addrlen;
    }
    freeaddrinfo(res);
    if (h->naddr == 0) {
        fmt(err, errlen, "host \"%s\": no IPv4 or IPv6 address", spec);
        return MXC_EINVAL;
    }
    return MXC_OK;
}

static bool timeout_ok(uint64_t ms, uint64_t min)
{
    return ms >= min && ms <= PROBE_TIMEOUT_MAX;
}

/* route_init - checks and copies route i. */
static int route_init(struct probe_engine *e, struct route *r, const struct probe_route *in, size_t i,
                      char *err, size_t errlen)
{
    const char *name = in->name ? in->name : "";
    char msg[256];
    int rc;

    if (strlen(name) > PROBE_NAME_MAX || !in->helo || !is_safe_word(in->helo, 1, PROBE_HELO_MAX) ||
        !in->mail_from || !is_safe_word(in->mail_from, 0, PROBE_ADDRESS_MAX)) {
        fmt(err, errlen, "route %zu: bad name, helo or mail_from (printable, no space or <>)", i);
        return MXC_EINVAL;
    }
    if (in->nhosts < 1 || in->nhosts > PROBE_HOSTS_MAX) {
        fmt(err, errlen, "route %zu: %zu hosts (1 to %d)", i, in->nhosts, PROBE_HOSTS_MAX);
        return MXC_EINVAL;
    }
    if (!timeout_ok(in->connect_ms, 1) || !timeout_ok(in->greeting_ms, 1) || !timeout_ok(in->command_ms, 1) ||
        !timeout_ok(in->session_idle_ms, 0)) {
        fmt(err, errlen, "route %zu: timeouts must be 1 to %d ms (idle 0 to %d)", i, PROBE_TIMEOUT_MAX,
            PROBE_TIMEOUT_MAX);
        return MXC_EINVAL;
    }
    if (in->max_sessions < 1 || in->max_sessions > PROBE_SESSIONS_MAX || in->session_probes < 1) {
        fmt(err, errlen, "route %zu: max_sessions 1 to %d and session_probes >= 1", i, PROBE_SESSIONS_MAX);
        return MXC_EINVAL;
    }
    fmt(r->name, sizeof r->name, "%s", name);
    fmt(r->helo, sizeof r->helo, "%s", in->helo);
    fmt(r->mail_from, sizeof r->mail_from, "%s", in->mail_from);
    r->connect_ms = in->connect_ms;
    r->greeting_ms = in->greeting_ms;
    r->command_ms = in->command_ms;
    r->session_idle_ms = in->session_idle_ms;
    r->max_sessions = in->max_sessions;
    r->session_probes = in->session_probes;
    for (size_t k = 0; k < in->nhosts; k++) {
        struct host *h = &r->hosts[k];
        h->eng = e;
        h->route = r;
        h->idx = (unsigned)k;
        if ((rc = host_init(h, in->hosts[k], msg, sizeof msg)) != MXC_OK) {
            fmt(err, errlen, "route %zu: %s", i, msg);
            return rc;
        }
    }
    r->nhosts = (unsigned)in->nhosts;
    return MXC_OK;
}

struct probe_engine *probe_engine_create(const struct probe_options *opt, char *err, size_t errlen)
{
    struct probe_engine *e;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    sigset_t all, old;
    int rc;

    if (!opt || (opt->nroutes > 0 && !opt->routes) || opt->max_queued == 0) {
        fmt(err, errlen, "probe: no options, routes or max_queued");
        return NULL;
    }
    if (!(e = calloc(1, sizeof *e))) {
        fmt(err, errlen, "probe: out of memory");
        return NULL;
    }
    e->epfd = e->submit_fd = e->result_fd = -1;
    pthread_mutex_init(&e->lock, NULL);
    e->max_queued = opt->max_queued;
    if (opt->nroutes > 0 && !(e->routes = calloc(opt->nroutes, sizeof *e->routes))) {
        fmt(err, errlen, "probe: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < opt->nroutes; i++) {
        if (route_init(e, &e->routes[i], &opt->routes[i], i, err, errlen) != MXC_OK)
            goto fail;
        e->nroutes++;
        e->heapcap += (size_t)e->routes[i].nhosts * e->routes[i].max_sessions;
    }
    if (e->heapcap > 0 && !(e->heap = calloc(e->heapcap, sizeof *e->heap))) {
        fmt(err, errlen, "probe: out of memory");
        goto fail;
    }
    e->epfd = epoll_create1(EPOLL_CLOEXEC);
    e->submit_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    e->result_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (e->epfd < 0 || e->submit_fd < 0 || e->result_fd < 0 ||
        epoll_ctl(e->epfd, EPOLL_CTL_ADD, e->submit_fd, &ev) != 0) {
        fmt(err, errlen, "probe: epoll or eventfd: %s", strerror(errno));
        goto fail;
    }
    /* The engine thread takes no signals: they belong to the daemon's main thread. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&e->thread, NULL, probe_main, e);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        fmt(err, errlen, "probe: cannot start the thread: %s", strerror(rc));
        goto fail;
    }
    e->started = true;
    return e;
fail:
    probe_engine_destroy(e);
    return NULL;
}

void probe_engine_destroy(struct probe_engine *e)
{
    uint64_t one = 1;

    if (!e)
        return;
    if (e->started) {
        pthread_mutex_lock(&e->lock);
        e->stop = true;
        pthread_mutex_unlock(&e->lock);
        while (write(e->submit_fd, &one, sizeof one) < 0 && errno == EINTR)
            ;
        pthread_join(e->thread, NULL);
    }
    /* The thread is gone: everything below is ours alone. */
    for (size_t r = 0; r < e->nroutes; r++)
        for (unsigned k = 0; k < e->routes[r].nhosts; k++) {
            struct host *h = &e->routes[r].hosts[k];
            jobq_free(&h->wait);
            while (h->sessions) {
                struct session *s = h->sessions;
                h->sessions = s->next;
                if (s->fd >= 0)
                    close(s->fd);
                job_free(s->job);
                free(s);
            }
        }
    while (e->dead) {
        struct session *s = e->dead;
        e->dead = s->next;
        free(s);
    }
    jobq_free(&e->submitq);
    jobq_free(&e->resultq);
    if (e->epfd >= 0)
        close(e->epfd);
    if (e->submit_fd >= 0)
        close(e->submit_fd);
    if (e->result_fd >= 0)
        close(e->result_fd);
    pthread_mutex_destroy(&e->lock);
    free(e->heap);
    free(e->routes);
    free(e);
}

int probe_engine_fd(const struct probe_engine *e)
{
    return e->result_fd;
}

int probe_submit(struct probe_engine *e, unsigned route, const char *address, uint64_t token,
                 bool transcript)
{
    struct job *j;
    uint64_t one = 1;
    bool was_empty;

    if (!e || route >= e->nroutes || !address || !is_safe_word(address, 1, PROBE_ADDRESS_MAX))
        return MXC_EINVAL;
    if (!(j = calloc(1, sizeof *j)))
        return MXC_ENOMEM;
    if (transcript && !(j->transcript = malloc(PROBE_TRANSCRIPT_MAX))) {
        free(j);
        return MXC_ENOMEM;
    }
    if (j->transcript)
        j->transcript[0] = '\0';
    j->token = token;
    j->route = route;
    memcpy(j->address, address, strlen(address) + 1);
    j->submitted_ms = mono_ms();
    pthread_mutex_lock(&e->lock);
    if (e->unfinished >= e->max_queued) {
        pthread_mutex_unlock(&e->lock);
        job_free(j);
        return MXC_EAGAIN;
    }
    was_empty = e->submitq.head == NULL;
    jobq_push(&e->submitq, j);
    e->unfinished++;
    e->st.inflight++;
    e->st.submitted++;
    if (was_empty && write(e->submit_fd, &one, sizeof one) < 0)
        log_msg(LOG_ERR, "PROBE_ENGINE", "error=\"submit eventfd: %s\"", strerror(errno));
    pthread_mutex_unlock(&e->lock);
    return MXC_OK;
}

int probe_take(struct probe_engine *e, struct probe_result *out)
{
    struct job *j;
    uint64_t v;

    pthread_mutex_lock(&e->lock);
    j = jobq_pop(&e->resultq);
    if (j) {
        e->st.inflight--;
        if (!e->resultq.head && read(e->result_fd, &v, sizeof v) < 0 && errno != EAGAIN)
            log_msg(LOG_ERR, "PROBE_ENGINE", "error=\"result eventfd: %s\"", strerror(errno));
    }
    pthread_mutex_unlock(&e->lock);
    if (!j)
        return MXC_EAGAIN;
    memset(out, 0, sizeof *out);
    out->token = j->token;
    out->outcome = j->outcome;
    out->reply = j->reply;
    fmt(out->backend, sizeof out->backend, "%s", j->last ? j->last->name : "");
    memcpy(out->detail, j->detail, sizeof out->detail);
    if (j->transcript)
        memcpy(out->transcript, j->transcript, j->tlen + 1);
    out->duration_ms = j->duration_ms;
    out->reused = j->reused;
    job_free(j);
    return MXC_OK;
}

void probe_engine_stats(struct probe_engine *e, struct probe_stats *out)
{
    pthread_mutex_lock(&e->lock);
    *out = e->st;
    pthread_mutex_unlock(&e->lock);
}
