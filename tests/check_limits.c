/* Integration tests of mxcached's admission limits and of CURVE, seen through libmxcache: the
 * real daemon ($MXCACHED) per test, with its own temporary directory, a free loopback port for
 * ZeroMQ and a free port for /metrics (read with a plain socket), and for recipient verification
 * a tarpit backend (mxtest-smtpd, $MXTEST_SMTPD, "greeting stall").
 *
 * What is asserted: server.max_connections_per_client and server.max_connections refuse the
 * handshake of one connection too many (no answer, the handle says it was refused, the counts on
 * /metrics), a slot frees when a client leaves, and a refused handle gets in by itself once there
 * is room; server.max_inflight_per_client answers the requests over the limit at once with
 * ERROR_UNAVAILABLE and takes the rest, per connection, with no leak of the count; security.allow
 * by address on IPv4 and on an IPv6 endpoint (and that a handle reaches an IPv6 endpoint at all);
 * admin.list_page_max cuts pages; the CURVE options of libmxcache: bad key sets refused at
 * create, and against a CURVE service the right keys, a wrong server key, an unlisted client key
 * and no keys, each with the text the handle gives. Beside the library's texts, a raw DEALER with
 * a socket monitor records the ZeroMQ events of each kind of refusal, so that what libzmq really
 * reports is asserted too (MXTEST_VERBOSE=1 prints the sequences).
 *
 * Processes: every mxcached is started in a process group of its own with PR_SET_PDEATHSIG
 * SIGTERM and its PID written to a registry; the test stops it by PID (SIGTERM, then SIGKILL)
 * and asserts a clean exit (status 0: under ASan, no leak report). A failed assertion ends the
 * test process without its teardown, so main() is a child subreaper and the unchecked teardown
 * of every test case, in the runner process, stops by PID (SIGTERM, then SIGKILL) whatever a
 * failed test left running and removes its directories. Every wait is bounded; nothing asserts
 * how fast something happens, only that it does within a generous bound, or in which order. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "keyfile.h"
#include "mxcache.h"
#include "smtpd/smtpd_run.h"
#include "testutil.h"

/* Bounds, in milliseconds: generous, the machine is shared and the sanitizer build is slow. */
#define READY_MS 20000      /* from fork to /readyz 200 */
#define STOP_MS 15000       /* from SIGTERM to exit, before SIGKILL */
#define ANSWER_MS 5000      /* a ping that must be answered */
#define SILENCE_MS 1000     /* how long a refused client waits for the answer that must not come */
#define SETTLE_MS 8000      /* a count on /metrics that must move after a connect or a close */
#define POLL_MS 25          /* between two looks */
#define START_TRIES 3       /* daemon starts when the free port was taken meanwhile */
#define VERIFY_WAIT_MS 3000 /* verify.wait of the tarpit test */
#define CHECK_TIMEOUT_MS 15000 /* the deadline of an asynchronous Check: far above verify.wait */
#define INFLIGHT_MAX 4      /* server.max_inflight_per_client of the tarpit test */

static bool verbose;          /* MXTEST_VERBOSE: print what was observed */
static char run_dir[64];      /* made by main: the registry and every test's directories */
static char registry[128];    /* "pid N" and "dir PATH" lines, for the runner's teardown */

/* note - prints a line of observations with MXTEST_VERBOSE. */
__attribute__((format(printf, 1, 2))) static void note(const char *fmt, ...)
{
    va_list ap;

    if (!verbose)
        return;
    va_start(ap, fmt);
    fputs("check_limits: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- the registry of processes and directories, and the runner's cleanup ---- */

/* registry_add - appends one line ("pid 123", "dir /tmp/...") for cleanup_strays. */
__attribute__((format(printf, 1, 2))) static void registry_add(const char *fmt, ...)
{
    char line[256];
    va_list ap;
    int fd = open(registry, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);

    ck_assert_msg(fd >= 0, "%s: %s", registry, strerror(errno));
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    ck_assert(n > 0 && (size_t)n < sizeof line - 1);
    line[n++] = '\n';
    ck_assert_int_eq(write(fd, line, (size_t)n), n);
    close(fd);
}

/* stop_stray - SIGTERM, then SIGKILL after STOP_MS, for pid when it is still a child of this
 * process (an orphan of a failed test, reparented to us as subreaper). A pid the test reaped
 * itself is not our child any more (ECHILD) and is left alone, so a reused pid is never hit. */
static void stop_stray(pid_t pid)
{
    long deadline = test_now_ms() + STOP_MS;
    pid_t r = waitpid(pid, NULL, WNOHANG);

    if (r != 0)
        return; /* it had exited (reaped now), or it is not ours */
    fprintf(stderr, "check_limits: stopping pid %d left running by a failed test\n", (int)pid);
    kill(pid, SIGTERM);
    while ((r = waitpid(pid, NULL, WNOHANG)) == 0 && test_now_ms() < deadline)
        test_sleep_ms(POLL_MS);
    if (r == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
}

/* remove_tree - rm -rf of a directory this test made (under /tmp/mxcache-, nothing else). */
static void remove_tree(const char *path)
{
    char cmd[300];

    if (strncmp(path, "/tmp/mxcache-", 13) != 0 || strchr(path, '\'') || strstr(path, ".."))
        return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0)
        fprintf(stderr, "check_limits: cannot remove %s\n", path);
}

/* cleanup_strays - the unchecked teardown of every test case, run by the runner process after
 * the test process ended however it ended: stops what the registry names, reaps orphans,
 * removes the directories, empties the registry. Uses no ck_assert (not inside a test). */
static void cleanup_strays(void)
{
    FILE *f = fopen(registry, "r");
    char line[256];

    while (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "pid ", 4) == 0)
            stop_stray((pid_t)atoi(line + 4));
    }
    if (f)
        rewind(f);
    while (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "dir ", 4) == 0)
            remove_tree(line + 4);
    }
    if (f)
        fclose(f);
    /* Orphans killed by their death signal (mxtest-smtpd) are zombies of ours now. */
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    unlink(registry);
}

/* ---- HTTP and /metrics ---- */

/* ---- one mxcached ---- */

struct daemon {
    pid_t pid;                       /* 0: not running */
    char dir[96], cfg[128], log[128];
    unsigned port, port6, http_port; /* ZeroMQ on 127.0.0.1 and [::1], /metrics on 127.0.0.1 */
    char ep[48], ep6[48];            /* "tcp://127.0.0.1:P", "tcp://[::1]:P" */
};

/* What a test sets in the daemon's config, setting lines inside their groups ("" or NULL: the
 * defaults). v4 and v6 choose the endpoints. */
struct conf {
    bool v4, v6;
    const char *server, *greylist, *verify, *admin, *security;
};

/* free_port - a port of the loopback address of family that was free a moment ago. For AF_INET6
 * it is also the test that ::1 exists: the IPv6 tests need it and fail clearly without it. */
static unsigned free_port(int family)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    memset(&ss, 0, sizeof ss);
    if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *a;
    }
    if (bind(fd, (struct sockaddr *)&ss, len) != 0) {
        int e = errno;
        close(fd);
        ck_abort_msg("cannot bind a TCP socket to %s port 0: %s%s", family == AF_INET6 ? "[::1]" : "127.0.0.1",
                     strerror(e), family == AF_INET6 ? ": this test needs IPv6 on loopback (see `ip -6 addr show lo`)" : "");
    }
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
    unsigned port = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
    close(fd);
    return port;
}

/* daemon_init - a directory of the daemon's own (registered for removal); nothing runs yet, so
 * that the test can put key files into d->dir before daemon_start. */
static void daemon_init(struct daemon *d, const char *name)
{
    memset(d, 0, sizeof *d);
    snprintf(d->dir, sizeof d->dir, "%s/%s-XXXXXX", run_dir, name);
    ck_assert_msg(mkdtemp(d->dir) != NULL, "mkdtemp: %s", strerror(errno));
    registry_add("dir %s", d->dir);
    snprintf(d->cfg, sizeof d->cfg, "%s/mxcached.conf", d->dir);
    snprintf(d->log, sizeof d->log, "%s/mxcached.log", d->dir);
}

static void write_conf(struct daemon *d, const struct conf *c)
{
    char listen[128] = "";
    FILE *f = fopen(d->cfg, "w");

    ck_assert_ptr_nonnull(f);
    if (c->v4)
        snprintf(listen, sizeof listen, "\"%s\"", d->ep);
    if (c->v6)
        snprintf(listen + strlen(listen), sizeof listen - strlen(listen), "%s\"%s\"", c->v4 ? ", " : "", d->ep6);
    fprintf(f,
            "server: { listen = [ %s ]; workers = 2; shutdown_timeout = \"3s\"; %s };\n"
            "store: { path = \"%s/db\"; sync = false; };\n"
            "log: { target = \"stderr\"; level = \"info\"; };\n"
            "greylist: { %s };\n"
            "verify: { acceptall_interval = 0; %s };\n"
            "admin: { %s };\n"
            "metrics: { listen = \"127.0.0.1:0\"; };\n"
            "security: { %s };\n",
            listen, c->server ? c->server : "", d->dir, c->greylist ? c->greylist : "",
            c->verify ? c->verify : "", c->admin ? c->admin : "", c->security ? c->security : "");
    ck_assert_int_eq(fclose(f), 0);
}

/* spawn - forks and execs mxcached on d->cfg, its output appended to d->log. The child leaves
 * Check's process group (so that the runner's SIGKILL of the group does not come first) and is
 * sent SIGTERM if the test process dies; its pid goes into the registry. */
static void spawn(struct daemon *d)
{
    const char *bin = getenv("MXCACHED");
    pid_t parent = getpid();

    ck_assert_msg(bin != NULL && *bin, "MXCACHED not set (ctest sets it)");
    d->pid = fork();
    ck_assert_int_ge(d->pid, 0);
    if (d->pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(127);
        int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(bin, "mxcached", "--config", d->cfg, "--foreground", "--allow-root", (char *)NULL);
        _exit(127);
    }
    setpgid(d->pid, d->pid); /* either side may win; the other fails harmlessly */
    registry_add("pid %d", (int)d->pid);
}

/* log_text - the daemon's log so far (malloc'd). */
static char *log_text(const struct daemon *d)
{
    return test_file_text(d->log);
}

/* wait_ready - until the log names the metrics port and /readyz answers 200. Returns false when
 * the daemon exited at start because its port was taken meanwhile (the caller tries again);
 * fails the test, with the log, on any other exit or after READY_MS. */
static bool wait_ready(struct daemon *d)
{
    long deadline = test_now_ms() + READY_MS;
    int status;

    for (;;) {
        if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
            char *log = log_text(d);
            d->pid = 0;
            if (strstr(log, "Address already in use")) {
                free(log);
                return false;
            }
            const char *hint = strstr(log, "[::1]") && strstr(log, "No such device")
                                   ? "\n(libzmq refuses to bind an IPv6 address on a socket without ZMQ_IPV6: "
                                     "server/service.c service_bind does not set it)"
                                   : "";
            ck_abort_msg("mxcached exited at start (%s %d); its log:\n%s%s",
                         WIFEXITED(status) ? "status" : "signal",
                         WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), log, hint);
        }
        if (!d->http_port) {
            char *log = log_text(d), *p = strstr(log, "endpoint=http://");
            if (p && (p = strstr(p, " port=")))
                d->http_port = (unsigned)strtoul(p + 6, NULL, 10);
            free(log);
        }
        if (d->http_port) {
            char *body;
            int st = test_http_get(d->http_port, "/readyz", &body);
            free(body);
            if (st == 200)
                return true;
        }
        if (test_now_ms() > deadline) {
            char *log = log_text(d);
            ck_abort_msg("mxcached was not ready within %d ms; its log:\n%s", READY_MS, log);
        }
        test_sleep_ms(POLL_MS);
    }
}

/* daemon_start - writes the config of c and starts the daemon on free ports; returns once it
 * serves. Fails the test when it does not. */
static void daemon_start(struct daemon *d, const struct conf *c)
{
    for (int attempt = 0; attempt < START_TRIES; attempt++) {
        d->http_port = 0;
        d->port = c->v4 ? free_port(AF_INET) : 0;
        d->port6 = c->v6 ? free_port(AF_INET6) : 0;
        snprintf(d->ep, sizeof d->ep, "tcp://127.0.0.1:%u", d->port);
        snprintf(d->ep6, sizeof d->ep6, "tcp://[::1]:%u", d->port6);
        write_conf(d, c);
        unlink(d->log);
        spawn(d);
        if (wait_ready(d))
            return;
    }
    ck_abort_msg("mxcached found its port taken %d times", START_TRIES);
}

/* daemon_stop - SIGTERM, SIGKILL after STOP_MS (and the test fails); the exit must be clean:
 * status 0, which under ASan also means no leak report. */
static void daemon_stop(struct daemon *d)
{
    long deadline = test_now_ms() + STOP_MS;
    int status;
    pid_t r;

    ck_assert_msg(d->pid > 0, "mxcached is not running");
    kill(d->pid, SIGTERM);
    while ((r = waitpid(d->pid, &status, WNOHANG)) == 0 && test_now_ms() < deadline)
        test_sleep_ms(POLL_MS);
    if (r == 0) {
        kill(d->pid, SIGKILL);
        waitpid(d->pid, &status, 0);
        d->pid = 0;
        ck_abort_msg("mxcached did not stop within %d ms of SIGTERM (killed)", STOP_MS);
    }
    d->pid = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char *log = log_text(d);
        ck_abort_msg("mxcached did not exit cleanly (%s %d); its log:\n%s", WIFEXITED(status) ? "status" : "signal",
                     WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), log);
    }
    remove_tree(d->dir);
}

/* scrape - the daemon's /metrics now (malloc'd); fails the test without a 200. */
static char *scrape(const struct daemon *d)
{
    char *body;
    int st = test_http_get(d->http_port, "/metrics", &body);

    ck_assert_msg(st == 200, "GET /metrics: status %d", st);
    return body;
}

/* metric - one sample of a fresh scrape; fails the test when the series is missing. */
static double metric(const struct daemon *d, const char *series)
{
    char *text = scrape(d);
    double v = test_metric_sample(text, series);

    ck_assert_msg(!isnan(v), "no sample %s on /metrics:\n%s", series, text);
    free(text);
    return v;
}

/* wait_metric - until series equals want (a count that follows connects and closes), at most
 * SETTLE_MS; fails the test with the last value and why. */
static void wait_metric(const struct daemon *d, const char *series, double want, const char *why)
{
    long deadline = test_now_ms() + SETTLE_MS;
    double v;

    while ((v = metric(d, series)) != want) {
        ck_assert_msg(test_now_ms() < deadline, "%s: %s is %g, expected %g within %d ms", why, series, v,
                      want, SETTLE_MS);
        test_sleep_ms(POLL_MS * 2);
    }
}

/* ---- libmxcache handles and requests ---- */

struct keys {
    const char *server, *public_key, *secret; /* all NULL: plain ZeroMQ */
};

/* handle - a libmxcache handle for one endpoint, with keys (NULL: none); fails the test when
 * the library refuses. */
static mxc_client *handle(const char *ep, const struct keys *k)
{
    struct mxc_options o;
    char err[256];

    mxc_options_init(&o);
    if (k) {
        o.server_key = k->server;
        o.public_key = k->public_key;
        o.secret_key = k->secret;
    }
    mxc_client *c = mxc_client_create(&ep, 1, &o, err, sizeof err);
    ck_assert_msg(c != NULL, "mxc_client_create %s: %s", ep, err);
    return c;
}

/* ping - one synchronous Ping with timeout ms; returns mxc_call's code (the reply, when there is
 * one, must be a Ping reply). */
static int ping(mxc_client *c, int ms)
{
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__PingRequest pr = MXCACHE__PING_REQUEST__INIT;
    Mxcache__Reply *rep = NULL;

    req.body_case = MXCACHE__REQUEST__BODY_PING;
    req.ping = &pr;
    int rc = mxc_call(c, &req, ms, &rep);
    bool is_ping = rep && rep->body_case == MXCACHE__REPLY__BODY_PING;
    mxc_reply_free(rep);
    ck_assert_msg(rc != MXC_OK || is_ping, "ping answered with something else than a Ping reply");
    return rc;
}

static const char *or_none(const char *s)
{
    return s ? s : "(none)";
}

/* expect_answered - a Ping on c is answered. */
static void expect_answered(mxc_client *c, const char *what)
{
    int rc = ping(c, ANSWER_MS);
    ck_assert_msg(rc == MXC_OK, "%s: ping not answered: %s (handshake: %s)", what, mxc_client_error(c),
                  or_none(mxc_handshake_error(c)));
}

/* expect_refused - a Ping on c gets no answer (MXC_ETIMEDOUT after SILENCE_MS), and the handle's
 * handshake text, once it has one (polled a bounded while: the refusal may be read after the
 * timeout), contains want. Returns nothing; the text goes to the verbose notes as what. */
static void expect_refused(mxc_client *c, const char *want, const char *what)
{
    const char *hs;
    long deadline;
    int rc = ping(c, SILENCE_MS);

    ck_assert_msg(rc == MXC_ETIMEDOUT, "%s: ping returned %d (%s), expected no answer (MXC_ETIMEDOUT)", what,
                  rc, mxc_client_error(c));
    /* mxc_call adds the handshake text, when it already had one, to the timeout's text. */
    const char *callerr = mxc_client_error(c);
    ck_assert_msg(strstr(callerr, "no reply from the service within") != NULL, "%s: call error \"%s\"", what,
                  callerr);
    ck_assert_msg(!strstr(callerr, " (") || strstr(callerr, want), "%s: call error \"%s\" lacks \"%s\"", what,
                  callerr, want);
    note("%s: mxc_call: %s", what, callerr);
    deadline = test_now_ms() + SETTLE_MS;
    while (!(hs = mxc_handshake_error(c)) && test_now_ms() < deadline)
        test_sleep_ms(POLL_MS);
    ck_assert_msg(hs && strstr(hs, want), "%s: mxc_handshake_error is \"%s\", expected it to contain \"%s\"", what,
                  or_none(hs), want);
    note("%s: mxc_handshake_error: %s", what, hs);
}

/* ---- what libzmq itself reports: a raw DEALER with a monitor ---- */

struct hs_trace {
    int outcome;      /* first of HANDSHAKE_SUCCEEDED / _FAILED_*; DISCONNECTED when none came
                         before it; 0 when nothing happened within SETTLE_MS */
    unsigned value;   /* the outcome event's value: ZAP status, errno or protocol error */
    char events[512]; /* every event seen, "NAME(value) ...", for messages and notes */
};

static const char *event_name(unsigned ev)
{
    switch (ev) {
    case ZMQ_EVENT_CONNECTED: return "CONNECTED";
    case ZMQ_EVENT_CONNECT_DELAYED: return "CONNECT_DELAYED";
    case ZMQ_EVENT_CONNECT_RETRIED: return "CONNECT_RETRIED";
    case ZMQ_EVENT_CLOSED: return "CLOSED";
    case ZMQ_EVENT_DISCONNECTED: return "DISCONNECTED";
    case ZMQ_EVENT_MONITOR_STOPPED: return "MONITOR_STOPPED";
    case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL: return "HANDSHAKE_FAILED_NO_DETAIL";
    case ZMQ_EVENT_HANDSHAKE_SUCCEEDED: return "HANDSHAKE_SUCCEEDED";
    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL: return "HANDSHAKE_FAILED_PROTOCOL";
    case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH: return "HANDSHAKE_FAILED_AUTH";
    default: return "OTHER";
    }
}

/* raw_handshake - connects a DEALER (with keys, NULL: plain) to ep and records its monitor's
 * events until the first handshake outcome (plus 200 ms more, for what follows it) or
 * SETTLE_MS. The connection is closed before returning. */
static void raw_handshake(const char *ep, const struct keys *k, struct hs_trace *t)
{
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_DEALER), *mon = zmq_socket(ctx, ZMQ_PAIR);
    int zero = 0, one = 1;
    char mep[64];
    long deadline = test_now_ms() + SETTLE_MS, stop = 0;
    bool connected = false;

    memset(t, 0, sizeof *t);
    ck_assert(ctx && s && mon);
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(mon, ZMQ_LINGER, &zero, sizeof zero);
    if (strchr(ep, '['))
        zmq_setsockopt(s, ZMQ_IPV6, &one, sizeof one);
    if (k) {
        ck_assert_int_eq(zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, k->server, 40), 0);
        ck_assert_int_eq(zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, k->public_key, 40), 0);
        ck_assert_int_eq(zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, k->secret, 40), 0);
    }
    snprintf(mep, sizeof mep, "inproc://raw-monitor-%p", s);
    ck_assert_int_eq(zmq_socket_monitor(s, mep, ZMQ_EVENT_ALL), 0);
    ck_assert_int_eq(zmq_connect(mon, mep), 0);
    ck_assert_int_eq(zmq_connect(s, ep), 0);
    while (test_now_ms() < (stop ? stop : deadline)) {
        zmq_pollitem_t it = {.socket = mon, .events = ZMQ_POLLIN};
        zmq_msg_t m;
        uint16_t ev = 0;
        uint32_t value = 0;

        if (zmq_poll(&it, 1, POLL_MS) <= 0)
            continue;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, mon, 0) < 0) {
            zmq_msg_close(&m);
            continue;
        }
        bool ok = zmq_msg_size(&m) == 6, more = zmq_msg_more(&m);
        if (ok) {
            memcpy(&ev, zmq_msg_data(&m), 2);
            memcpy(&value, (char *)zmq_msg_data(&m) + 2, 4);
        }
        zmq_msg_close(&m);
        while (more) { /* the endpoint frame */
            zmq_msg_init(&m);
            more = zmq_msg_recv(&m, mon, 0) >= 0 && zmq_msg_more(&m);
            zmq_msg_close(&m);
        }
        if (!ok)
            continue;
        size_t len = strlen(t->events);
        snprintf(t->events + len, sizeof t->events - len, "%s%s(%#x)", len ? " " : "", event_name(ev),
                 (unsigned)value);
        if (ev == ZMQ_EVENT_CONNECTED)
            connected = true;
        bool outcome = ev == ZMQ_EVENT_HANDSHAKE_SUCCEEDED || ev == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ||
                       ev == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL || ev == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL ||
                       (connected && ev == ZMQ_EVENT_DISCONNECTED);
        if (outcome && !t->outcome) {
            t->outcome = ev;
            t->value = value;
            stop = test_now_ms() + 200;
        }
    }
    zmq_socket_monitor(s, NULL, 0);
    zmq_close(s);
    zmq_close(mon);
    zmq_ctx_term(ctx);
}

/* One acceptable first outcome of a raw handshake: the event, and its value (-1: any). */
struct outcome {
    unsigned event;
    long value;
};

/* expect_raw - the raw DEALER's first handshake outcome against ep is one of want[0..n-1]. Some
 * refusals race: the side that reads the other's greeting first reports a protocol error, the
 * other only sees the connection closed under its write. */
static void expect_raw(const char *ep, const struct keys *k, const struct outcome *want, size_t n, const char *what)
{
    struct hs_trace t;
    char expected[160] = "";

    raw_handshake(ep, k, &t);
    note("%s: raw DEALER events: %s", what, t.events[0] ? t.events : "(none)");
    for (size_t i = 0; i < n; i++) {
        if (t.outcome == (int)want[i].event && (want[i].value < 0 || t.value == (unsigned long)want[i].value))
            return;
        size_t len = strlen(expected);
        snprintf(expected + len, sizeof expected - len, "%s%s(%#lx)", i ? " or " : "", event_name(want[i].event),
                 (unsigned long)want[i].value);
    }
    ck_abort_msg("%s: expected %s first, libzmq reported: %s", what, expected, t.events[0] ? t.events : "(no event)");
}

/* What libzmq 4.3 reports to a client refused by ZAP (the server sends an ERROR command with the
 * status), to one whose CURVE HELLO the server cannot open (closed at once), and to mechanisms
 * that do not match (either side may notice first). */
static const struct outcome ZAP_400[] = {{ZMQ_EVENT_HANDSHAKE_FAILED_AUTH, 400}};
static const struct outcome CLOSED_IN_HANDSHAKE[] = {{ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL, -1}};
static const struct outcome MISMATCH[] = {
    {ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL, ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH},
    {ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL, -1},
};
static const struct outcome SUCCEEDED[] = {{ZMQ_EVENT_HANDSHAKE_SUCCEEDED, -1}};
#define OUTCOMES(a) a, sizeof a / sizeof a[0]

/* ---- asynchronous requests ---- */

struct answer {
    bool done;
    int status, seq;     /* mxc status; order of arrival among all answers, from 1 */
    long at_ms;          /* test_now_ms() when it came */
    Mxcache__ErrorCode code;
    char message[256];   /* of an error reply */
    Mxcache__Action action;
    uint32_t smtp_code;
    char enhanced[16], rule[40], text[256];
};

static int answers_seen;

static void on_answer(void *arg, int status, const Mxcache__Reply *r)
{
    struct answer *a = arg;

    a->done = true;
    a->status = status;
    a->seq = ++answers_seen;
    a->at_ms = test_now_ms();
    if (r && r->body_case == MXCACHE__REPLY__BODY_ERROR) {
        a->code = r->error->code;
        snprintf(a->message, sizeof a->message, "%s", r->error->message ? r->error->message : "");
    } else if (r && r->body_case == MXCACHE__REPLY__BODY_CHECK) {
        a->action = r->check->action;
        a->smtp_code = r->check->smtp_code;
        snprintf(a->enhanced, sizeof a->enhanced, "%s", r->check->enhanced_status);
        snprintf(a->rule, sizeof a->rule, "%s", r->check->rule);
        snprintf(a->text, sizeof a->text, "%s", r->check->text);
    } else if (r && r->body_case == MXCACHE__REPLY__BODY_PING) {
        snprintf(a->rule, sizeof a->rule, "ping");
    }
}

/* submit_check - an asynchronous Check of rcpt (from a fixed SMTP client and sender). */
static void submit_check(mxc_client *c, const char *rcpt, struct answer *a)
{
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__CheckRequest q = MXCACHE__CHECK_REQUEST__INIT;

    memset(a, 0, sizeof *a);
    q.client_address = "192.0.2.10";
    q.client_name = "unknown";
    q.sender = "s@sender.example";
    q.recipient = (char *)rcpt;
    q.protocol_state = "RCPT";
    q.mx_name = "mx01.test";
    req.body_case = MXCACHE__REQUEST__BODY_CHECK;
    req.check = &q;
    ck_assert_msg(mxc_submit(c, &req, CHECK_TIMEOUT_MS, on_answer, a, NULL) == MXC_OK, "submit %s: %s", rcpt,
                  mxc_client_error(c));
}

static void submit_ping(mxc_client *c, struct answer *a)
{
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__PingRequest pr = MXCACHE__PING_REQUEST__INIT;

    memset(a, 0, sizeof *a);
    req.body_case = MXCACHE__REQUEST__BODY_PING;
    req.ping = &pr;
    ck_assert_msg(mxc_submit(c, &req, CHECK_TIMEOUT_MS, on_answer, a, NULL) == MXC_OK, "submit ping: %s",
                  mxc_client_error(c));
}

/* pump - runs the event loop of n handles until none has a request in flight (each request has
 * its own deadline, so this ends; ms is a second bound). */
static void pump(mxc_client *const *cs, int n, long ms)
{
    long deadline = test_now_ms() + ms;

    for (;;) {
        zmq_pollitem_t items[8 * MXC_MAX_ENDPOINTS];
        int k = 0, busy = 0;
        long wait = 50;
        for (int i = 0; i < n; i++) {
            busy += mxc_inflight(cs[i]) > 0;
            long t = mxc_next_timeout_ms(cs[i]);
            if (t >= 0 && t < wait)
                wait = t;
            k += mxc_pollitems(cs[i], items + k, MXC_MAX_ENDPOINTS);
        }
        if (!busy)
            return;
        ck_assert_msg(test_now_ms() < deadline, "requests still in flight after %ld ms", ms);
        zmq_poll(items, k, wait);
        for (int i = 0; i < n; i++)
            ck_assert_int_ge(mxc_dispatch(cs[i]), 0);
    }
}

/* expect_pending - the answer of a Check whose probe is stuck in the tarpit: after verify.wait,
 * 450 4.1.1 "verification in progress" (a deferral, never a 5xx). */
static void expect_pending(const struct answer *a, const char *what)
{
    ck_assert_msg(a->done && a->status == MXC_OK, "%s: status %d, code %d \"%s\"", what, a->status, (int)a->code,
                  a->message);
    ck_assert_msg(a->smtp_code / 100 != 5 && a->action != MXCACHE__ACTION__ACTION_REJECT, "%s: a 5xx: %u %s",
                  what, a->smtp_code, a->text);
    ck_assert_msg(a->action == MXCACHE__ACTION__ACTION_DEFER && a->smtp_code == 450 &&
                      strcmp(a->enhanced, "4.1.1") == 0 && strcmp(a->rule, "verify_pending") == 0 &&
                      strstr(a->text, "verification in progress") != NULL,
                  "%s: answer %u %s \"%s\" (rule %s), expected 450 4.1.1 verification in progress", what,
                  a->smtp_code, a->enhanced, a->text, a->rule);
}

/* expect_inflight_refusal - an error reply ERROR_UNAVAILABLE naming the setting. */
static void expect_inflight_refusal(const struct answer *a, const char *what)
{
    ck_assert_msg(a->done && a->status == MXC_ESERVER && a->code == MXCACHE__ERROR_CODE__ERROR_UNAVAILABLE &&
                      strstr(a->message, "max_inflight_per_client") != NULL,
                  "%s: status %d code %d \"%s\" (rule %s), expected ERROR_UNAVAILABLE naming "
                  "max_inflight_per_client", what, a->status, (int)a->code, a->message, a->rule);
}

/* ---- tests ---- */

/* wait_refused - until c's handshake text says it was refused (no request needed), at most
 * SETTLE_MS. */
static void wait_refused(mxc_client *c, const char *what)
{
    long deadline = test_now_ms() + SETTLE_MS;
    const char *hs;

    while (!(hs = mxc_handshake_error(c)) && test_now_ms() < deadline)
        test_sleep_ms(POLL_MS);
    ck_assert_msg(hs && strstr(hs, "the service refused this client (status 400)"), "%s: handshake text %s", what,
                  or_none(hs));
}

/* connection_limit - one more connection than allowed is refused at its handshake; a slot
 * frees when a client leaves. server: the limit's setting; allowed: connections it lets in;
 * limit: its label on mxcache_limit_hits_total; other: the label that must stay 0. */
static void connection_limit(const char *server, int allowed, const char *limit, const char *other)
{
    struct daemon d;
    struct conf c = {.v4 = true, .server = server};
    mxc_client *h[8], *extra;
    char series[128], other_series[128], what[64];

    ck_assert(allowed <= 8);
    daemon_init(&d, "t-conn");
    daemon_start(&d, &c);
    snprintf(series, sizeof series, "mxcache_limit_hits_total{limit=\"%s\"}", limit);
    snprintf(other_series, sizeof other_series, "mxcache_limit_hits_total{limit=\"%s\"}", other);
    ck_assert_int_eq(metric(&d, "mxcache_connections_open"), 0);

    /* One handle (one DEALER connection) at a time, each answered. */
    for (int i = 0; i < allowed; i++) {
        h[i] = handle(d.ep, NULL);
        snprintf(what, sizeof what, "handle %d of %d allowed", i + 1, allowed);
        expect_answered(h[i], what);
    }
    wait_metric(&d, "mxcache_connections_open", allowed, "the allowed handles");
    ck_assert_int_eq(metric(&d, series), 0);

    /* One more: refused at the handshake (NULL mechanism, ZAP 400): no answer, and it says so. */
    extra = handle(d.ep, NULL);
    expect_refused(extra, "the service refused this client (status 400)", "one connection too many");
    ck_assert_msg(metric(&d, series) >= 1, "%s did not count the refusal", series);
    ck_assert_int_eq(metric(&d, other_series), 0);
    /* The refused connection was closed: it is not counted as open. */
    wait_metric(&d, "mxcache_connections_open", allowed, "the refused handle is not counted as open");
    /* What libzmq itself reports to a refused client of the NULL mechanism. */
    expect_raw(d.ep, NULL, OUTCOMES(ZAP_400), "NULL mechanism, ZAP 400 (connection limit)");
    mxc_client_destroy(extra);

    /* One allowed handle leaves: its slot is free again (the count went down on disconnect). */
    mxc_client_destroy(h[0]);
    wait_metric(&d, "mxcache_connections_open", allowed - 1, "after a handle went away");
    h[0] = handle(d.ep, NULL);
    expect_answered(h[0], "a new handle after one left");
    for (int i = 1; i < allowed; i++)
        expect_answered(h[i], "the handles that stayed");
    wait_metric(&d, "mxcache_connections_open", allowed, "the new handle");

    double hits = metric(&d, series), accepted = metric(&d, "mxcache_connections_accepted_total");
    note("%s: %g refusals, %g connections accepted in all", limit, hits, accepted);
    ck_assert_msg(accepted >= allowed + 3, "accepted_total %g counts every connection, the refused ones too",
                  accepted);

    /* Everyone leaves: nothing stays counted. */
    for (int i = 0; i < allowed; i++)
        mxc_client_destroy(h[i]);
    wait_metric(&d, "mxcache_connections_open", 0, "after every handle went away");
    daemon_stop(&d);
}

START_TEST(test_max_connections_per_client)
{
    connection_limit("max_connections_per_client = 2;", 2, "max_connections_per_client", "max_connections");
}
END_TEST

START_TEST(test_max_connections)
{
    connection_limit("max_connections = 3; max_connections_per_client = 1000;", 3, "max_connections",
                     "max_connections_per_client");
}
END_TEST

/* A handle refused at the handshake (here: a connection limit) gets in by itself once there is
 * room, as it would after any other connection failure: a policy hook keeps its handle for
 * days, and a limit hit during a reconnect storm must not cut it off for good. */
START_TEST(test_refused_handle_recovers)
{
    struct daemon d;
    struct conf c = {.v4 = true, .server = "max_connections_per_client = 1;"};

    daemon_init(&d, "t-recover");
    daemon_start(&d, &c);
    mxc_client *first = handle(d.ep, NULL), *second;
    expect_answered(first, "the first handle");
    second = handle(d.ep, NULL);
    wait_refused(second, "the second handle");
    double accepted = metric(&d, "mxcache_connections_accepted_total");
    mxc_client_destroy(first);
    wait_metric(&d, "mxcache_connections_open", 0, "after the first handle went away");
    long deadline = test_now_ms() + SETTLE_MS;
    int rc;
    while ((rc = ping(second, 1000)) != MXC_OK && test_now_ms() < deadline)
        ;
    double again = metric(&d, "mxcache_connections_accepted_total");
    ck_assert_msg(rc == MXC_OK, "a handle refused once (ZAP 400) was not answered within %d ms of a free slot, "
                  "and made %g connection attempts meanwhile (libzmq ends a connecter whose handshake got an "
                  "ERROR command; client/mxcache.c does not connect it again): %s", SETTLE_MS, again - accepted,
                  or_none(mxc_handshake_error(second)));
    mxc_client_destroy(second);
    daemon_stop(&d);
}
END_TEST

/* max_inflight_per_client against a tarpit backend: the Checks over the limit are refused at
 * once, those taken wait verify.wait and get 450 4.1.1; the count is per connection and goes
 * back to zero. */
START_TEST(test_max_inflight_per_client)
{
    struct smtpd_run tarpit;
    struct daemon d;
    char server[96], verify[512], rcpt[64], what[64];
    struct answer a[10], b[INFLIGHT_MAX - 1], b_ping, again[INFLIGHT_MAX];
    mxc_client *ha, *hb;
    long t0;

    smtpd_run_start(&tarpit, "greeting stall\n");
    registry_add("pid %d", (int)tarpit.pid);
    registry_add("dir %s", tarpit.dir);
    snprintf(server, sizeof server, "max_inflight_per_client = %d;", INFLIGHT_MAX);
    snprintf(verify, sizeof verify,
             "wait = \"%dms\"; client_probes_per_minute = 0;\n"
             "  routes = ( { domains = [ \"tarpit.test\" ]; hosts = [ \"%s\" ]; helo = \"mx.test\";\n"
             "    greeting_timeout = \"60s\"; probes_per_second = 0; } );",
             VERIFY_WAIT_MS, tarpit.host);
    struct conf c = {.v4 = true, .server = server, .greylist = "enabled = false;", .verify = verify};
    daemon_init(&d, "t-inflight");
    daemon_start(&d, &c);

    ha = handle(d.ep, NULL);
    hb = handle(d.ep, NULL);
    expect_answered(ha, "handle A"); /* both connected before the burst */
    expect_answered(hb, "handle B");
    mxc_client *both[2] = {ha, hb};

    /* Ten Checks at once on A, then on B (another connection, same address) a ping and Checks,
     * as many requests as its own limit allows, while A's are held. */
    answers_seen = 0;
    t0 = test_now_ms();
    for (int i = 0; i < 10; i++) {
        snprintf(rcpt, sizeof rcpt, "a%d@tarpit.test", i);
        submit_check(ha, rcpt, &a[i]);
    }
    submit_ping(hb, &b_ping);
    for (int i = 0; i < INFLIGHT_MAX - 1; i++) {
        snprintf(rcpt, sizeof rcpt, "b%d@tarpit.test", i);
        submit_check(hb, rcpt, &b[i]);
    }
    pump(both, 2, CHECK_TIMEOUT_MS + 5000);

    /* A: the first four taken (one connection: in order), the six after them refused. */
    int first_pending = 1 << 30, last_refusal = 0;
    for (int i = 0; i < 10; i++) {
        snprintf(what, sizeof what, "A's Check %d", i + 1);
        if (i < INFLIGHT_MAX) {
            expect_pending(&a[i], what);
            ck_assert_msg(a[i].at_ms - t0 >= VERIFY_WAIT_MS * 3 / 4, "%s answered after %ld ms, before verify.wait",
                          what, a[i].at_ms - t0);
            first_pending = a[i].seq < first_pending ? a[i].seq : first_pending;
        } else {
            expect_inflight_refusal(&a[i], what);
            last_refusal = a[i].seq > last_refusal ? a[i].seq : last_refusal;
        }
    }
    /* "At once": every refusal came back before the first held Check was answered. */
    ck_assert_msg(last_refusal < first_pending, "a refusal (#%d) came after a held answer (#%d)", last_refusal,
                  first_pending);
    /* B, meanwhile: its ping answered before A's held Checks, its own Checks all taken. */
    ck_assert_msg(b_ping.done && b_ping.status == MXC_OK, "B's ping: status %d \"%s\"", b_ping.status, b_ping.message);
    ck_assert_msg(b_ping.seq < first_pending, "B's ping (#%d) came after A's held answers (#%d)", b_ping.seq,
                  first_pending);
    for (int i = 0; i < INFLIGHT_MAX - 1; i++) {
        snprintf(what, sizeof what, "B's Check %d", i + 1);
        expect_pending(&b[i], what);
    }
    ck_assert_int_eq(metric(&d, "mxcache_limit_hits_total{limit=\"max_inflight_per_client\"}"), 6);
    ck_assert_int_eq(metric(&d, "mxcache_request_errors_total{reason=\"unavailable\"}"), 6);
    ck_assert_int_eq(metric(&d, "mxcache_requests_total{type=\"check\",outcome=\"error\"}"), 6);

    /* A's count is back to zero: as many new Checks as the limit, all taken. */
    for (int i = 0; i < INFLIGHT_MAX; i++) {
        snprintf(rcpt, sizeof rcpt, "c%d@tarpit.test", i);
        submit_check(ha, rcpt, &again[i]);
    }
    pump(both, 2, CHECK_TIMEOUT_MS + 5000);
    for (int i = 0; i < INFLIGHT_MAX; i++) {
        snprintf(what, sizeof what, "A's later Check %d", i + 1);
        expect_pending(&again[i], what);
    }
    ck_assert_int_eq(metric(&d, "mxcache_limit_hits_total{limit=\"max_inflight_per_client\"}"), 6);
    ck_assert_msg(metric(&d, "mxcache_probes_in_flight") >= 1, "the tarpit holds the probes");

    mxc_client_destroy(ha);
    mxc_client_destroy(hb);
    /* Stopped while its probes hang in the tarpit: the daemon must still exit cleanly. */
    daemon_stop(&d);
    smtpd_run_stop(&tarpit);
}
END_TEST

/* One row of the allowlist tests: security.allow and whether each endpoint's client gets in. */
struct allow_row {
    const char *allow;
    bool v4_in, v6_in;
};

static void allow_rows(const struct allow_row *rows, size_t n, bool v6)
{
    for (size_t i = 0; i < n; i++) {
        struct daemon d;
        char security[128], what[128];
        struct conf c = {.v4 = true, .v6 = v6, .security = security};
        double denied = 0;

        snprintf(security, sizeof security, "allow = [ %s ];", rows[i].allow);
        daemon_init(&d, "t-allow");
        daemon_start(&d, &c);
        for (int fam = 0; fam < (v6 ? 2 : 1); fam++) {
            const char *ep = fam ? d.ep6 : d.ep;
            bool in = fam ? rows[i].v6_in : rows[i].v4_in;
            mxc_client *h = handle(ep, NULL);
            snprintf(what, sizeof what, "allow = [ %s ], client on %s", rows[i].allow, ep);
            if (in) {
                expect_answered(h, what);
            } else {
                expect_refused(h, "the service refused this client (status 400)", what);
                expect_raw(ep, NULL, OUTCOMES(ZAP_400), what);
                denied++;
            }
            mxc_client_destroy(h);
        }
        double got = metric(&d, "mxcache_auth_denied_total{reason=\"address\"}");
        ck_assert_msg(denied ? got >= denied : got == 0, "allow = [ %s ]: auth_denied{address} %g, %g refused",
                      rows[i].allow, got, denied);
        ck_assert_int_eq(metric(&d, "mxcache_auth_denied_total{reason=\"unknown_key\"}"), 0);
        daemon_stop(&d);
    }
}

START_TEST(test_allow_ipv4)
{
    static const struct allow_row rows[] = {
        {"\"10.0.0.0/8\"", false, false},
        {"\"127.0.0.0/8\", \"::1\"", true, true},
    };
    allow_rows(rows, sizeof rows / sizeof rows[0], false);
}
END_TEST

/* The same on an IPv6 endpoint tcp://[::1]:PORT beside the IPv4 one. */
START_TEST(test_allow_ipv6)
{
    static const struct allow_row rows[] = {
        {"\"127.0.0.0/8\"", true, false},
        {"\"::1\"", false, true},
        {"\"127.0.0.0/8\", \"::1\"", true, true},
    };
    free_port(AF_INET6); /* ::1 must exist: fails here, clearly, when it does not */
    allow_rows(rows, sizeof rows / sizeof rows[0], true);
}
END_TEST

/* libmxcache reaches an IPv6 endpoint: a raw ROUTER (ZMQ_IPV6) on [::1] stands in for the
 * service; a handle must complete its connection to it as a raw DEALER with ZMQ_IPV6 does. */
START_TEST(test_client_ipv6_endpoint)
{
    void *ctx = zmq_ctx_new(), *router = zmq_socket(ctx, ZMQ_ROUTER);
    int one = 1, zero = 0;
    char ep[64];
    size_t len = sizeof ep;
    struct hs_trace t;

    free_port(AF_INET6);
    zmq_setsockopt(router, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(router, ZMQ_IPV6, &one, sizeof one);
    ck_assert_int_eq(zmq_bind(router, "tcp://[::1]:*"), 0);
    ck_assert_int_eq(zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, ep, &len), 0);
    raw_handshake(ep, NULL, &t);
    ck_assert_msg(t.outcome == ZMQ_EVENT_HANDSHAKE_SUCCEEDED, "raw DEALER to %s: %s", ep, t.events);

    mxc_client *h = handle(ep, NULL);
    long deadline = test_now_ms() + SETTLE_MS;
    int up;
    while ((up = mxc_connected(h)) == 0 && test_now_ms() < deadline)
        test_sleep_ms(POLL_MS);
    mxc_client_destroy(h);
    zmq_close(router);
    zmq_ctx_term(ctx);
    ck_assert_msg(up == 1, "a libmxcache handle did not connect to %s within %d ms (mxc_connected %d) while a "
                  "raw DEALER with ZMQ_IPV6 did: client/mxcache.c setup_socket does not set ZMQ_IPV6",
                  ep, SETTLE_MS, up);
}
END_TEST

/* list_request - a List of the whitelist keyspace (or WhitelistList when wl) with limit after
 * start_after; returns the entries' count and copies next into next (cap bytes). */
static size_t list_request(mxc_client *c, bool wl, uint32_t limit, const char *start_after, char *next, size_t cap)
{
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__ListRequest lq = MXCACHE__LIST_REQUEST__INIT;
    Mxcache__WhitelistListRequest wq = MXCACHE__WHITELIST_LIST_REQUEST__INIT;
    Mxcache__Reply *rep = NULL;

    if (wl) {
        wq.kind = MXCACHE__WHITELIST_KIND__WHITELIST_ANY;
        wq.limit = limit;
        wq.start_after = (char *)start_after;
        req.body_case = MXCACHE__REQUEST__BODY_WHITELIST_LIST;
        req.whitelist_list = &wq;
    } else {
        lq.keyspace = MXCACHE__KEYSPACE__KEYSPACE_WHITELIST;
        lq.limit = limit;
        lq.start_after = (char *)start_after;
        req.body_case = MXCACHE__REQUEST__BODY_LIST;
        req.list = &lq;
    }
    ck_assert_msg(mxc_call(c, &req, ANSWER_MS, &rep) == MXC_OK, "list: %s", mxc_client_error(c));
    ck_assert_int_eq(rep->body_case, MXCACHE__REPLY__BODY_LIST);
    size_t n = rep->list->n_entries;
    snprintf(next, cap, "%s", rep->list->next);
    mxc_reply_free(rep);
    return n;
}

/* admin.list_page_max cuts a page asked bigger, and counts it; paging still reaches the end. */
START_TEST(test_list_page_max)
{
    struct daemon d;
    struct conf c = {.v4 = true, .admin = "list_page_size = 5; list_page_max = 5;"};
    const char *hits = "mxcache_limit_hits_total{limit=\"list_page_max\"}";
    char value[32], next[256], next2[256];

    daemon_init(&d, "t-list");
    daemon_start(&d, &c);
    mxc_client *h = handle(d.ep, NULL);
    for (int i = 1; i <= 8; i++) {
        Mxcache__Request req = MXCACHE__REQUEST__INIT;
        Mxcache__WhitelistAddRequest q = MXCACHE__WHITELIST_ADD_REQUEST__INIT;
        Mxcache__Reply *rep = NULL;
        snprintf(value, sizeof value, "192.0.2.%d", i);
        q.kind = MXCACHE__WHITELIST_KIND__WHITELIST_CLIENT;
        q.value = value;
        q.comment = "limits test";
        req.body_case = MXCACHE__REQUEST__BODY_WHITELIST_ADD;
        req.whitelist_add = &q;
        ck_assert_msg(mxc_call(h, &req, ANSWER_MS, &rep) == MXC_OK, "whitelist add %s: %s", value,
                      mxc_client_error(h));
        mxc_reply_free(rep);
    }
    ck_assert_int_eq(metric(&d, hits), 0);

    static const struct {
        bool wl;          /* WhitelistList instead of List */
        uint32_t limit;
        bool second_page; /* start after the first page's next */
        size_t entries;
        int hits;         /* cumulative mxcache_limit_hits_total{limit="list_page_max"} */
    } steps[] = {
        {false, 50, false, 5, 1}, /* asked 50: at most 5, counted */
        {false, 50, true, 3, 2},  /* the rest; cut again (to 5, holding 3), counted */
        {false, 5, false, 5, 2},  /* asked exactly the maximum: not a hit */
        {false, 0, false, 5, 2},  /* the default page size: not a hit */
        {true, 50, false, 5, 3},  /* WhitelistList obeys the same maximum */
        {true, 50, true, 3, 4},
    };
    next[0] = '\0';
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        size_t n = list_request(h, steps[i].wl, steps[i].limit, steps[i].second_page ? next : "", next2, sizeof next2);
        ck_assert_msg(n == steps[i].entries, "step %zu: %zu entries, expected %zu", i, n, steps[i].entries);
        ck_assert_msg((n == 5) == (next2[0] != '\0'), "step %zu: next \"%s\" with %zu entries", i, next2, n);
        double got = metric(&d, hits);
        ck_assert_msg(got == steps[i].hits, "step %zu: %s is %g, expected %d", i, hits, got, steps[i].hits);
        if (!steps[i].second_page)
            memcpy(next, next2, sizeof next);
    }
    mxc_client_destroy(h);
    daemon_stop(&d);
}
END_TEST

/* mxc_client_create refuses a partial key set and keys that are not Z85, and says which. */
START_TEST(test_curve_options)
{
    static const char good[] = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"; /* libzmq's test vector */
    static const struct {
        const char *server, *public_key, *secret, *want;
    } cases[] = {
        {good, NULL, NULL, "CURVE needs all three keys"},
        {good, good, NULL, "CURVE needs all three keys"},
        {NULL, good, good, "CURVE needs all three keys"},
        {NULL, NULL, good, "CURVE needs all three keys"},
        {"Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hI", good, good, "server_key is not a Z85 CURVE key"},   /* 39 */
        {good, "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hIDx", good, "public_key is not a Z85 CURVE key"}, /* 41 */
        {good, good, "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{h~D", "secret_key is not a Z85 CURVE key"},  /* '~' */
        {good, good, "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{h D", "secret_key is not a Z85 CURVE key"},  /* ' ' */
        {"", good, good, "server_key is not a Z85 CURVE key"},
        {good, "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{h\"D", good, "public_key is not a Z85 CURVE key"},
    };
    const char *ep = "tcp://127.0.0.1:9";

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct mxc_options o;
        char err[256] = "untouched";
        mxc_options_init(&o);
        o.server_key = cases[i].server;
        o.public_key = cases[i].public_key;
        o.secret_key = cases[i].secret;
        mxc_client *c = mxc_client_create(&ep, 1, &o, err, sizeof err);
        if (c)
            mxc_client_destroy(c);
        ck_assert_msg(c == NULL, "case %zu: the handle was created", i);
        ck_assert_msg(strstr(err, cases[i].want) != NULL, "case %zu: err \"%s\", expected \"%s\"", i, err,
                      cases[i].want);
    }
    /* The good vector as all three is accepted (no connection is needed to create a handle). */
    struct mxc_options o;
    char err[256];
    mxc_options_init(&o);
    o.server_key = o.public_key = o.secret_key = good;
    mxc_client *c = mxc_client_create(&ep, 1, &o, err, sizeof err);
    ck_assert_msg(c != NULL, "three valid keys refused: %s", err);
    mxc_client_destroy(c);
}
END_TEST

/* A CURVE service: the right keys are answered; a wrong server key, an unlisted client key and
 * no keys at all are not, each with its own text. */
START_TEST(test_curve_service)
{
    struct daemon d;
    struct keyfile svc, cli, stranger;
    char err[512], security[512], pubpath[160];

    daemon_init(&d, "t-curve");
    ck_assert_msg(keyfile_generate(d.dir, "service", false, &svc, err, sizeof err) == 0, "keygen: %s", err);
    ck_assert_msg(keyfile_generate(d.dir, "client", false, &cli, err, sizeof err) == 0, "keygen: %s", err);
    ck_assert_msg(keyfile_generate(d.dir, "stranger", false, &stranger, err, sizeof err) == 0, "keygen: %s", err);
    snprintf(pubpath, sizeof pubpath, "%s/client.pub", d.dir);
    snprintf(security, sizeof security, "key_file = \"%s/service.key\"; client_keys = [ \"%s\" ];", d.dir, pubpath);
    struct conf c = {.v4 = true, .security = security};
    daemon_start(&d, &c);

    struct keys right = {svc.public_key, cli.public_key, cli.secret_key};
    struct keys wrong_server = {stranger.public_key, cli.public_key, cli.secret_key};
    struct keys unlisted = {svc.public_key, stranger.public_key, stranger.secret_key};

    mxc_client *ok = handle(d.ep, &right);
    expect_answered(ok, "the listed client key");
    ck_assert_ptr_null(mxc_handshake_error(ok));
    expect_raw(d.ep, &right, OUTCOMES(SUCCEEDED), "CURVE, listed key");

    mxc_client *h = handle(d.ep, &wrong_server);
    expect_refused(h, "handshake failed", "CURVE, wrong server key");
    ck_assert_msg(strstr(mxc_handshake_error(h), "is not the configured server key"), "CURVE, wrong server key: %s",
                  mxc_handshake_error(h));
    mxc_client_destroy(h);
    expect_raw(d.ep, &wrong_server, OUTCOMES(CLOSED_IN_HANDSHAKE), "CURVE, wrong server key");

    double before = metric(&d, "mxcache_auth_denied_total{reason=\"unknown_key\"}");
    h = handle(d.ep, &unlisted);
    expect_refused(h, "the service refused this client (status 400)", "CURVE, unlisted client key");
    mxc_client_destroy(h);
    expect_raw(d.ep, &unlisted, OUTCOMES(ZAP_400), "CURVE, unlisted client key (ZAP 400)");
    double after = metric(&d, "mxcache_auth_denied_total{reason=\"unknown_key\"}");
    ck_assert_msg(after >= before + 2, "auth_denied{unknown_key} %g -> %g for two refused clients", before, after);

    h = handle(d.ep, NULL);
    expect_refused(h, "the service uses CURVE", "plain client, CURVE service");
    mxc_client_destroy(h);
    expect_raw(d.ep, NULL, OUTCOMES(MISMATCH), "plain client, CURVE service");
    ck_assert_int_eq(metric(&d, "mxcache_auth_denied_total{reason=\"address\"}"), 0);

    /* The listed client is still served, and it is the only connection left. */
    expect_answered(ok, "the listed client key, at the end");
    wait_metric(&d, "mxcache_connections_open", 1, "only the listed client stays connected");
    mxc_client_destroy(ok);
    daemon_stop(&d);
}
END_TEST

/* A CURVE handle against a plain service: no answer, and the text says what may be wrong. */
START_TEST(test_curve_client_plain_service)
{
    struct daemon d;
    struct keyfile svc, cli;
    char err[512];
    struct conf c = {.v4 = true};

    daemon_init(&d, "t-plain");
    ck_assert_msg(keyfile_generate(d.dir, "service", false, &svc, err, sizeof err) == 0, "keygen: %s", err);
    ck_assert_msg(keyfile_generate(d.dir, "client", false, &cli, err, sizeof err) == 0, "keygen: %s", err);
    daemon_start(&d, &c);
    struct keys k = {svc.public_key, cli.public_key, cli.secret_key};
    mxc_client *h = handle(d.ep, &k);
    expect_refused(h, "does not use CURVE", "CURVE client, plain service");
    mxc_client_destroy(h);
    expect_raw(d.ep, &k, OUTCOMES(MISMATCH), "CURVE client, plain service");
    h = handle(d.ep, NULL);
    expect_answered(h, "a plain client of the plain service");
    mxc_client_destroy(h);
    daemon_stop(&d);
}
END_TEST

/* add_case - one test in a test case of its own, so that the unchecked teardown (in the runner)
 * cleans up right after it. */
static void add_case(Suite *s, const char *name, const TTest *test)
{
    TCase *tc = tcase_create(name);

    tcase_add_unchecked_fixture(tc, NULL, cleanup_strays);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test);
    suite_add_tcase(s, tc);
}

int main(void)
{
    Suite *s = suite_create("limits");

    verbose = getenv("MXTEST_VERBOSE") && *getenv("MXTEST_VERBOSE");
    strcpy(run_dir, "/tmp/mxcache-limits-XXXXXX");
    if (!mkdtemp(run_dir)) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    snprintf(registry, sizeof registry, "%s/registry", run_dir);
    /* Robustness: the daemons of a test process that died are reparented to us, so that
     * cleanup_strays can still stop them by PID and reap them. */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
        perror("PR_SET_CHILD_SUBREAPER");
    add_case(s, "curve_options", test_curve_options);
    add_case(s, "max_connections_per_client", test_max_connections_per_client);
    add_case(s, "max_connections", test_max_connections);
    add_case(s, "refused_handle_recovers", test_refused_handle_recovers);
    add_case(s, "max_inflight_per_client", test_max_inflight_per_client);
    add_case(s, "allow_ipv4", test_allow_ipv4);
    add_case(s, "allow_ipv6", test_allow_ipv6);
    add_case(s, "client_ipv6_endpoint", test_client_ipv6_endpoint);
    add_case(s, "list_page_max", test_list_page_max);
    add_case(s, "curve_service", test_curve_service);
    add_case(s, "curve_client_plain_service", test_curve_client_plain_service);

    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    cleanup_strays();
    remove_tree(run_dir);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
