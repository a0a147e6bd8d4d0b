/* mxfault-policy - concurrent Postfix policy-protocol clients for the fault tests
 * (tests/fault/test_restart.sh): what many smtpd processes do with check_policy_service, with
 * every answer classified and every wait bounded, so that a test can tell that each question was
 * answered in time and never with a 5xx.
 *
 * USAGE
 *   mxfault-policy --server HOST:PORT [--server HOST:PORT ...] [--conns N] --duration-ms D
 *                  --deadline-ms B --service-text TEXT [--whitelisted IP] [--whitelisted-every K]
 *                  [--tail-ms T] [--report-ms R] [--tag TAG]
 *   N connections (default 16), spread over the servers in turn, each with one request in flight
 *   (as smtpd): RCPT questions with never-seen triplets (client 203.0.113.x, sender
 *   s<i>@<TAG>.pol.test); every K-th one (default 4, 0: none) from the client --whitelisted. Runs
 *   D ms, or until SIGTERM or SIGINT (then the run's end is that moment); a request not answered
 *   within B ms counts as a hang (its connection is closed and opened again, as smtpd does after
 *   its policy timeout). Answers are classified:
 *     service    action=DUNNO / PREPEND ..., or action=4xx containing TEXT (the service's own)
 *     fallback   action=451 4.3.0 ... (the hook's answer without the service)
 *     bad5xx     action=5xx ... or REJECT (nobody said 5xx here: always wrong)
 *     other      anything else (another 4xx, DEFER_IF_PERMIT, a malformed answer)
 *   A connection the server closes or refuses counts as a disconnect.
 *   Prints one line per R ms (default 500): "t=FROM-TO service=.. fallback=.. bad5xx=.. other=..
 *   hangs=.. disconnects=.." and at the end one summary line:
 *     total=N service=N fallback=N bad5xx=N other=N hangs=N disconnects=N max_ms=N
 *     tail_service=N tail_fallback=N tail_bad=N
 *   where tail_* count the last T ms (default 2000) and tail_bad is everything but service there.
 *   The first few "other" and "bad5xx" answers go to stderr. Exit 0, or 2 on a usage error; the
 *   test judges the figures.
 *
 * Test code: one thread, non-blocking sockets, poll() with bounded timeouts; untrusted answers are
 * read into a bounded buffer per connection (a longer answer counts as other). */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 512
#define MAX_SERVERS 8
#define REPLY_MAX 2048
#define RECONNECT_MS 100
#define SHOW_MAX 5
#define MAX_BUCKETS 4096

static volatile sig_atomic_t stop_flag;

static void on_stop(int sig)
{
    (void)sig;
    stop_flag = 1;
}

enum cls { C_SERVICE, C_FALLBACK, C_BAD5XX, C_OTHER, C_HANG, C_DISCONNECT, C_COUNT };
static const char *const cls_name[C_COUNT] = {"service", "fallback", "bad5xx", "other", "hangs",
                                              "disconnects"};

struct conn {
    int fd;
    int server;
    bool connecting, waiting;
    long sent_ms, retry_ms;
    size_t inlen;
    char in[REPLY_MAX];
};

struct run {
    struct sockaddr_in srv[MAX_SERVERS];
    int nsrv;
    struct conn c[MAX_CONNS];
    int nconns;
    long start_ms, duration_ms, deadline_ms, tail_ms, report_ms;
    const char *service_text, *whitelisted, *tag;
    long wl_every;
    uint64_t seq;
    uint64_t total[C_COUNT], tail[C_COUNT];
    uint64_t (*bucket)[C_COUNT];
    long nbuckets;
    long max_ms;
    unsigned shown;
};

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void count(struct run *r, enum cls k, long at_ms)
{
    long rel = at_ms - r->start_ms, b = rel / r->report_ms;

    r->total[k]++;
    if (rel >= r->duration_ms - r->tail_ms)
        r->tail[k]++;
    if (b >= 0 && b < r->nbuckets)
        r->bucket[b][k]++;
}

/* recount_tail - the tail counts again from the buckets, for a run that ended early: whole
 * buckets that lie in the last tail_ms (rounded to the report interval, never longer). */
static void recount_tail(struct run *r)
{
    long first = (r->duration_ms - r->tail_ms + r->report_ms - 1) / r->report_ms;

    memset(r->tail, 0, sizeof r->tail);
    for (long b = first < 0 ? 0 : first; b < r->nbuckets; b++)
        for (int k = 0; k < C_COUNT; k++)
            r->tail[k] += r->bucket[b][k];
}

static void conn_close(struct run *r, struct conn *c, long now)
{
    (void)r;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->connecting = c->waiting = false;
    c->inlen = 0;
    c->retry_ms = now + RECONNECT_MS;
}

static void conn_open(struct run *r, struct conn *c, long now)
{
    int one = 1;

    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        c->retry_ms = now + RECONNECT_MS;
        return;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->inlen = 0;
    c->waiting = false;
    if (connect(c->fd, (struct sockaddr *)&r->srv[c->server], sizeof r->srv[c->server]) == 0) {
        c->connecting = false;
    } else if (errno == EINPROGRESS) {
        c->connecting = true;
        c->sent_ms = now; /* a connect counts against the deadline too */
    } else {
        count(r, C_DISCONNECT, now);
        conn_close(r, c, now);
    }
}

/* conn_send - the next question; a short write on a fresh loopback socket does not happen with
 * requests this small, and counts as a disconnect if it does. */
static void conn_send(struct run *r, struct conn *c, long now)
{
    char buf[1024];
    uint64_t i = r->seq++;
    bool wl = r->wl_every > 0 && r->whitelisted && i % (uint64_t)r->wl_every == 0;
    char client[64];

    if (wl)
        snprintf(client, sizeof client, "%s", r->whitelisted);
    else
        snprintf(client, sizeof client, "203.0.113.%llu", (unsigned long long)(i % 250 + 1));
    int n = snprintf(buf, sizeof buf,
                     "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
                     "client_address=%s\nclient_name=unknown\nreverse_client_name=unknown\n"
                     "helo_name=client.pol.test\nsender=s%llu@%s.pol.test\n"
                     "recipient=r%llu@dest.test\nqueue_id=\ninstance=%llx.1\nsize=0\n\n",
                     client, (unsigned long long)i, r->tag, (unsigned long long)i,
                     (unsigned long long)i);
    if (write(c->fd, buf, (size_t)n) != n) {
        count(r, C_DISCONNECT, now);
        conn_close(r, c, now);
        return;
    }
    c->waiting = true;
    c->sent_ms = now;
}

static void show(struct run *r, const char *what, const char *text)
{
    if (r->shown++ < SHOW_MAX)
        fprintf(stderr, "mxfault-policy: %s answer: %.200s\n", what, text);
}

/* classify - one complete answer (the bytes up to the empty line, NUL-terminated). */
static enum cls classify(struct run *r, const char *a)
{
    const char *v = a + 7;

    /* Exactly one line is expected: "action=...\n". */
    if (strncmp(a, "action=", 7) != 0 || strchr(a, '\n') != a + strlen(a) - 1)
        goto other;
    if (strncasecmp(v, "DUNNO\n", 6) == 0 || strncasecmp(v, "PREPEND ", 8) == 0)
        return C_SERVICE;
    if (v[0] == '5' || strncasecmp(v, "REJECT", 6) == 0) {
        show(r, "5xx", a);
        return C_BAD5XX;
    }
    if (strncmp(v, "451 4.3.0 ", 10) == 0)
        return C_FALLBACK;
    if (v[0] == '4' && strstr(v, r->service_text))
        return C_SERVICE;
other:
    show(r, "unexpected", a);
    return C_OTHER;
}

/* conn_read - takes what arrived; a complete answer is classified and the next question sent. */
static void conn_read(struct run *r, struct conn *c, long now)
{
    ssize_t n = read(c->fd, c->in + c->inlen, sizeof c->in - 1 - c->inlen);

    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        count(r, C_DISCONNECT, now);
        conn_close(r, c, now);
        return;
    }
    c->inlen += (size_t)n;
    c->in[c->inlen] = '\0';
    char *end = strstr(c->in, "\n\n");
    if (!end) {
        if (c->inlen == sizeof c->in - 1) {
            show(r, "over-long", c->in);
            count(r, C_OTHER, now);
            conn_close(r, c, now);
        }
        return;
    }
    if (!c->waiting || end + 2 != c->in + c->inlen) {
        show(r, "unasked or extra", c->in);
        count(r, C_OTHER, now);
        conn_close(r, c, now);
        return;
    }
    end[1] = '\0';
    long took = now - c->sent_ms;
    if (took > r->max_ms)
        r->max_ms = took;
    count(r, classify(r, c->in), now);
    c->inlen = 0;
    c->waiting = false;
    if (now - r->start_ms < r->duration_ms)
        conn_send(r, c, now);
}

static int usage(void)
{
    fprintf(stderr, "usage: mxfault-policy --server HOST:PORT [--server ...] [--conns N] --duration-ms D\n"
                    "                      --deadline-ms B --service-text TEXT [--whitelisted IP]\n"
                    "                      [--whitelisted-every K] [--tail-ms T] [--report-ms R] [--tag TAG]\n");
    return 2;
}

static int parse_server(const char *s, struct sockaddr_in *sa)
{
    char host[64];
    const char *colon = strrchr(s, ':');

    if (!colon || (size_t)(colon - s) >= sizeof host)
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)atoi(colon + 1));
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 && sa->sin_port ? 0 : -1;
}

int main(int argc, char **argv)
{
    static struct run r;
    struct pollfd pfd[MAX_CONNS];

    r.nconns = 16;
    r.tail_ms = 2000;
    r.report_ms = 500;
    r.wl_every = 4;
    r.tag = "t";
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return usage();
        i++;
        if (strcmp(o, "--server") == 0) {
            if (r.nsrv == MAX_SERVERS || parse_server(v, &r.srv[r.nsrv++]) != 0)
                return usage();
        } else if (strcmp(o, "--conns") == 0) {
            r.nconns = atoi(v);
        } else if (strcmp(o, "--duration-ms") == 0) {
            r.duration_ms = atol(v);
        } else if (strcmp(o, "--deadline-ms") == 0) {
            r.deadline_ms = atol(v);
        } else if (strcmp(o, "--tail-ms") == 0) {
            r.tail_ms = atol(v);
        } else if (strcmp(o, "--report-ms") == 0) {
            r.report_ms = atol(v);
        } else if (strcmp(o, "--service-text") == 0) {
            r.service_text = v;
        } else if (strcmp(o, "--whitelisted") == 0) {
            r.whitelisted = v;
        } else if (strcmp(o, "--whitelisted-every") == 0) {
            r.wl_every = atol(v);
        } else if (strcmp(o, "--tag") == 0) {
            r.tag = v;
        } else {
            return usage();
        }
    }
    if (r.nsrv == 0 || r.nconns < 1 || r.nconns > MAX_CONNS || r.duration_ms <= 0 ||
        r.deadline_ms <= 0 || !r.service_text || !*r.service_text || r.report_ms <= 0 ||
        r.tail_ms < 0 || r.wl_every < 0)
        return usage();
    r.nbuckets = r.duration_ms / r.report_ms + 2;
    if (r.nbuckets > MAX_BUCKETS)
        return usage();
    r.bucket = calloc((size_t)r.nbuckets, sizeof *r.bucket);
    if (!r.bucket)
        return 2;

    struct sigaction sa = {0};
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    r.start_ms = now_ms();
    for (int i = 0; i < r.nconns; i++) {
        r.c[i].fd = -1;
        r.c[i].server = i % r.nsrv;
        conn_open(&r, &r.c[i], r.start_ms);
    }
    /* Until the duration is over and every question asked has its answer or its deadline. */
    for (;;) {
        long now = now_ms(), wait = 50;
        if (stop_flag && now - r.start_ms < r.duration_ms) {
            /* Stopped early: the run ends now, and the tail is counted back from here. The
             * answers so far were counted against the planned end, so they are recounted. */
            r.duration_ms = now - r.start_ms;
            recount_tail(&r);
        }
        bool running = now - r.start_ms < r.duration_ms, busy = false;
        int n = 0;
        for (int i = 0; i < r.nconns; i++) {
            struct conn *c = &r.c[i];
            if (c->fd < 0 && running && now >= c->retry_ms)
                conn_open(&r, c, now);
            if (c->fd >= 0 && !c->connecting && !c->waiting && running)
                conn_send(&r, c, now);
            if (c->fd >= 0 && (c->waiting || c->connecting) && now - c->sent_ms >= r.deadline_ms) {
                if (c->waiting)
                    count(&r, C_HANG, now);
                else
                    count(&r, C_DISCONNECT, now);
                conn_close(&r, c, now);
            }
            if (c->fd >= 0 && (c->waiting || c->connecting))
                busy = true;
            pfd[i].fd = c->fd;
            pfd[i].events = c->fd < 0 ? 0 : c->connecting ? POLLOUT : POLLIN;
            pfd[i].revents = 0;
            n = i + 1;
        }
        if (!running && !busy)
            break;
        if (poll(pfd, (nfds_t)n, (int)wait) < 0 && errno != EINTR)
            return 2;
        now = now_ms();
        for (int i = 0; i < n; i++) {
            struct conn *c = &r.c[i];
            if (c->fd < 0 || !pfd[i].revents)
                continue;
            if (c->connecting) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err) {
                    count(&r, C_DISCONNECT, now);
                    conn_close(&r, c, now);
                } else {
                    c->connecting = false;
                }
                continue;
            }
            conn_read(&r, c, now);
        }
    }
    for (int i = 0; i < r.nconns; i++)
        if (r.c[i].fd >= 0)
            close(r.c[i].fd);

    long last = 0; /* the last interval with an answer, or the end of the run */
    for (long b = 0; b < r.nbuckets; b++)
        for (int k = 0; k < C_COUNT; k++)
            if (r.bucket[b][k] || b * r.report_ms < r.duration_ms)
                last = b;
    for (long b = 0; b <= last; b++) {
        printf("t=%ld-%ld", b * r.report_ms, (b + 1) * r.report_ms);
        for (int k = 0; k < C_COUNT; k++)
            printf(" %s=%llu", cls_name[k], (unsigned long long)r.bucket[b][k]);
        printf("\n");
    }
    uint64_t all = 0, tail_bad = 0;
    for (int k = 0; k < C_COUNT; k++) {
        all += k < C_HANG ? r.total[k] : 0;
        tail_bad += k != C_SERVICE ? r.tail[k] : 0;
    }
    printf("total=%llu", (unsigned long long)all);
    for (int k = 0; k < C_COUNT; k++)
        printf(" %s=%llu", cls_name[k], (unsigned long long)r.total[k]);
    printf(" max_ms=%ld tail_service=%llu tail_fallback=%llu tail_bad=%llu\n", r.max_ms,
           (unsigned long long)r.tail[C_SERVICE], (unsigned long long)r.tail[C_FALLBACK],
           (unsigned long long)tail_bad);
    free(r.bucket);
    return 0;
}
