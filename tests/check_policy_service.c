/* check_policy_service - integration tests of mxcache-policy: the real mxcached ($MXCACHED, on an
 * ipc socket in a mkdtemp directory, with a default answer "defer 450 4.7.1 test" so that the
 * service's decision is visible, greylisting off) and the real hook ($MXCACHE_POLICY, on a free
 * loopback TCP port and a unix socket), driven like Postfix drives a policy service: name=value
 * lines, an empty line, one answer per request, connections kept open.
 *
 * Covered: answers over TCP and unix sockets, DUNNO for states that are not asked, a whitelisted
 * client ($MXCACHECTL), 200 concurrent connections with several requests each, pipelined requests
 * answered in order, bad input closing only its own connection, the fallback while mxcached is
 * down and the answers coming back after its restart, idle and max_connections limits, SIGTERM
 * answering what is in flight, --stdio, and --check-config. Every process is started by fork+exec
 * and stopped by its PID; every wait is bounded; timing assertions are one-sided with slack.
 * Both daemons run with their metrics endpoints off (metrics.listen = ""), so that tests running
 * in parallel do not collide on the default ports; tests/metrics/ covers the endpoints. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mxcache.h"
#include "testutil.h"

#define READY_TIMEOUT_MS 20000
#define STOP_TIMEOUT_MS 20000
#define ANSWER_TIMEOUT_MS 10000
#define SERVICE_TIMEOUT "1s"     /* the hook's service.timeout in these tests */
#define SERVICE_TIMEOUT_MS 1000
#define SLACK_MS 4000            /* allowed lateness, for slow sanitized builds */
#define NCONN 200
#define PER_CONN 3

static char base_dir[] = "/tmp/mxcache-pol-XXXXXX"; /* made in main(), removed at its end */
static char dir[256];
static char ipc_ep[300];
static char mx_conf[300], mx_log[300];
static char pol_conf[300], pol_log[300], pol_sock[300];
static pid_t mx_pid, pol_pid;
static const char *svc_timeout = SERVICE_TIMEOUT; /* service.timeout of the next start_policy */
static int pol_port;

/* spawn - fork+exec of argv with stderr appended to log (NULL: /dev/null), stdout to /dev/null
 * unless keep_stdio. Returns the PID. */
static pid_t spawn(char *const argv[], const char *log)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        dup2(fd, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* stop_pid - sends sig to pid and reaps it; returns the exit status, or -signal. */
static int stop_pid(pid_t pid, int sig)
{
    int status;
    long deadline = test_now_ms() + STOP_TIMEOUT_MS;

    kill(pid, sig);
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (test_now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            ck_abort_msg("process %d did not stop on signal %d", (int)pid, sig);
        }
        test_sleep_ms(10);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

static const char *env(const char *name)
{
    const char *v = getenv(name);
    ck_assert_msg(v != NULL, "%s not set", name);
    return v;
}

/* file_text - the file's contents (at most 64K) in a static buffer. */
static const char *file_text(const char *path)
{
    static char buf[65536];
    size_t n = 0;
    FILE *f = fopen(path, "r");

    if (f) {
        n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
    return buf;
}

/* wait_log - waits (bounded) until the hook's log holds needle. */
static void wait_log(const char *needle)
{
    long deadline = test_now_ms() + READY_TIMEOUT_MS;

    while (!strstr(file_text(pol_log), needle)) {
        ck_assert_msg(test_now_ms() < deadline, "no \"%s\" in the log:\n%s", needle, file_text(pol_log));
        test_sleep_ms(10);
    }
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* ---- mxcached ---- */

/* mxcached_knows - whether this mxcached's --print-config has group (a "GROUP = {" line) and, with
 * setting set, that setting in it: to switch greylisting off (so the configured default answer is
 * what the hook gets) and the metrics endpoint off, where the build has them. */
static bool mxcached_knows(const char *group, const char *setting)
{
    char cmd[600], line[512], head[80], needle[80];
    bool found = false;

    snprintf(cmd, sizeof cmd, "'%s' --print-config 2>/dev/null", env("MXCACHED"));
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    bool in_group = false;
    snprintf(head, sizeof head, "%s = {", group);
    snprintf(needle, sizeof needle, " %s = ", setting ? setting : "");
    while (fgets(line, sizeof line, p)) {
        if (strncmp(line, head, strlen(head)) == 0) {
            in_group = true;
            if (!setting)
                found = true;
        } else if (line[0] == '}') {
            in_group = false;
        } else if (in_group && setting && strstr(line, needle)) {
            found = true;
        }
    }
    pclose(p);
    return found;
}

static void write_mx_config(void)
{
    FILE *f = fopen(mx_conf, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "server: { listen = [\"%s\"]; workers = 2; };\n"
            "store: { path = \"%s/db\"; sync = false; };\n"
            "log: { target = \"stderr\"; level = \"info\"; };\n"
            "policy: { default_action = \"defer\"; default_code = 450; default_status = \"4.7.1\";"
            " default_text = \"test\"; };\n",
            ipc_ep, dir);
    if (mxcached_knows("greylist", "enabled"))
        fprintf(f, "greylist: { enabled = false; };\n");
    if (mxcached_knows("metrics", "listen"))
        fprintf(f, "metrics: { listen = \"\"; };\n");
    fclose(f);
}

static bool service_ready(void)
{
    const char *eps[] = {ipc_ep};
    char err[256];
    mxc_client *c = mxc_client_create(eps, 1, NULL, err, sizeof err);
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__StatsRequest sr = MXCACHE__STATS_REQUEST__INIT;
    Mxcache__Reply *rep = NULL;

    ck_assert_msg(c != NULL, "%s", err);
    req.body_case = MXCACHE__REQUEST__BODY_STATS;
    req.stats = &sr;
    int rc = mxc_call(c, &req, 300, &rep);
    mxc_reply_free(rep);
    mxc_client_destroy(c);
    return rc == MXC_OK;
}

static void start_mxcached(void)
{
    char *argv[] = {(char *)env("MXCACHED"), "--config", mx_conf, "--foreground", "--allow-root", NULL};
    long deadline = test_now_ms() + READY_TIMEOUT_MS;

    mx_pid = spawn(argv, mx_log);
    while (!service_ready()) {
        ck_assert_msg(test_now_ms() < deadline, "mxcached did not become ready:\n%s", file_text(mx_log));
        ck_assert_msg(waitpid(mx_pid, NULL, WNOHANG) == 0, "mxcached exited:\n%s", file_text(mx_log));
    }
}

static void stop_mxcached(void)
{
    ck_assert_int_eq(stop_pid(mx_pid, SIGTERM), 0);
    mx_pid = 0;
}

/* ---- the hook ---- */

static int free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* write_policy_config - server_extra and service_extra go into their groups. */
static void write_policy_config(const char *server_extra, const char *service_extra)
{
    FILE *f = fopen(pol_conf, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "server: { listen = [\"inet:127.0.0.1:%d\", \"unix:%s\"]; unix_mode = \"0600\";"
            " shutdown_timeout = \"5s\"; %s };\n"
            "service: { endpoints = [\"%s\"]; timeout = \"%s\";"
            " mx_name = \"mx-test\"; %s };\n"
            "metrics: { listen = \"\"; };\n"
            "log: { target = \"stderr\"; level = \"debug\"; };\n",
            pol_port, pol_sock, server_extra ? server_extra : "", ipc_ep, svc_timeout,
            service_extra ? service_extra : "");
    fclose(f);
}

static int tcp_connect(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int unix_connect(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    ck_assert_uint_lt(strlen(path), sizeof sa.sun_path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void start_policy(const char *server_extra, const char *service_extra)
{
    char *argv[] = {(char *)env("MXCACHE_POLICY"), "--config", pol_conf, "--foreground", "--allow-root", NULL};
    long deadline = test_now_ms() + READY_TIMEOUT_MS;
    int fd;

    write_policy_config(server_extra, service_extra);
    pol_pid = spawn(argv, pol_log);
    while ((fd = tcp_connect(pol_port)) < 0) {
        ck_assert_msg(test_now_ms() < deadline, "mxcache-policy did not listen:\n%s", file_text(pol_log));
        ck_assert_msg(waitpid(pol_pid, NULL, WNOHANG) == 0, "mxcache-policy exited:\n%s",
                      file_text(pol_log));
        test_sleep_ms(20);
    }
    close(fd);
}

static void stop_policy(void)
{
    int rc = stop_pid(pol_pid, SIGTERM);
    pol_pid = 0;
    ck_assert_msg(rc == 0, "mxcache-policy exit status %d:\n%s", rc, file_text(pol_log));
}

/* ---- a Postfix-like client ---- */

struct pconn {
    int fd;
    size_t len;
    char buf[8192];
};

static void pc_open(struct pconn *pc, int fd)
{
    ck_assert_int_ge(fd, 0);
    pc->fd = fd;
    pc->len = 0;
}

static void send_all(int fd, const char *s, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
        ck_assert_msg(n > 0, "send: %s", strerror(errno));
        s += n;
        len -= (size_t)n;
    }
}

/* request_text - a request as Postfix's smtpd sends it. */
static int request_text(char *out, size_t outlen, const char *state, const char *client,
                        const char *sender, const char *rcpt)
{
    return snprintf(out, outlen,
                    "request=smtpd_access_policy\nprotocol_state=%s\nprotocol_name=ESMTP\n"
                    "client_address=%s\nclient_name=unknown\nreverse_client_name=unknown\n"
                    "helo_name=client.example\nsender=%s\nrecipient=%s\nrecipient_count=0\n"
                    "queue_id=\ninstance=1a2b.3c4d.1\nsize=0\netrn_domain=\nstress=\n"
                    "sasl_method=\nsasl_username=\nsasl_sender=\nccert_subject=\nccert_issuer=\n"
                    "ccert_fingerprint=\nencryption_protocol=\nencryption_cipher=\n"
                    "encryption_keysize=0\n\n",
                    state, client, sender, rcpt);
}

static void pc_send(struct pconn *pc, const char *state, const char *client, const char *rcpt)
{
    char req[2048];
    int n = request_text(req, sizeof req, state, client, "sender@example.org", rcpt);
    send_all(pc->fd, req, (size_t)n);
}

/* pc_answer - the next answer without its "\n\n" into out: 1; 0 on EOF (nothing pending);
 * -1 when nothing came within timeout_ms. */
static int pc_answer(struct pconn *pc, char *out, size_t outlen, long timeout_ms)
{
    long deadline = test_now_ms() + timeout_ms;

    for (;;) {
        char *end = memmem(pc->buf, pc->len, "\n\n", 2);
        if (end) {
            size_t n = (size_t)(end - pc->buf);
            snprintf(out, outlen, "%.*s", (int)n, pc->buf);
            memmove(pc->buf, end + 2, pc->len - n - 2);
            pc->len -= n + 2;
            return 1;
        }
        long left = deadline - test_now_ms();
        if (left <= 0)
            return -1;
        struct pollfd p = {.fd = pc->fd, .events = POLLIN};
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        ck_assert_uint_lt(pc->len, sizeof pc->buf);
        ssize_t r = read(pc->fd, pc->buf + pc->len, sizeof pc->buf - pc->len);
        if (r == 0 || (r < 0 && errno == ECONNRESET)) {
            ck_assert_msg(pc->len == 0, "partial answer before EOF: %.*s", (int)pc->len, pc->buf);
            return 0;
        }
        ck_assert_int_gt(r, 0);
        pc->len += (size_t)r;
    }
}

/* ask - one request, its answer. */
static const char *ask(struct pconn *pc, const char *state, const char *client, const char *rcpt)
{
    static char ans[1024];

    pc_send(pc, state, client, rcpt);
    int rc = pc_answer(pc, ans, sizeof ans, ANSWER_TIMEOUT_MS);
    ck_assert_msg(rc == 1, "no answer (%d) to %s from %s:\n%s", rc, state, client, file_text(pol_log));
    return ans;
}

/* expect_closed - the hook closes pc without an answer. */
static void expect_closed(struct pconn *pc, const char *what)
{
    char ans[1024];
    int rc = pc_answer(pc, ans, sizeof ans, ANSWER_TIMEOUT_MS);
    ck_assert_msg(rc == 0, "%s: connection not closed (%d, %s)", what, rc, rc == 1 ? ans : "");
    close(pc->fd);
}

static const char *const ANSWER_TEST = "action=450 4.7.1 test";
static const char *const ANSWER_FALLBACK = "action=451 4.3.0 Temporary policy service failure, try again later";

/* ---- fixture ---- */

static void setup(void)
{
    /* Under base_dir, so that main removes it even when a failed test skipped its teardown. */
    snprintf(dir, sizeof dir, "%s/t-XXXXXX", base_dir);
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(ipc_ep, sizeof ipc_ep, "ipc://%s/mxcached.sock", dir);
    snprintf(mx_conf, sizeof mx_conf, "%s/mxcached.conf", dir);
    snprintf(mx_log, sizeof mx_log, "%s/mxcached.log", dir);
    snprintf(pol_conf, sizeof pol_conf, "%s/policy.conf", dir);
    snprintf(pol_log, sizeof pol_log, "%s/policy.log", dir);
    snprintf(pol_sock, sizeof pol_sock, "%s/policy.sock", dir);
    pol_port = free_port();
    svc_timeout = SERVICE_TIMEOUT;
    write_mx_config();
    start_mxcached();
    start_policy(NULL, NULL);
}

static void teardown(void)
{
    char cmd[300];

    if (pol_pid > 0)
        stop_pid(pol_pid, SIGKILL);
    if (mx_pid > 0) {
        kill(mx_pid, SIGCONT);
        stop_pid(mx_pid, SIGKILL);
    }
    pol_pid = mx_pid = 0;
    if (getenv("MXCACHE_TEST_VERBOSE")) {
        fprintf(stderr, "---- %s\n%s", pol_log, file_text(pol_log));
        fprintf(stderr, "---- %s\n%s", mx_log, file_text(mx_log));
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

/* ---- tests ---- */

START_TEST(test_rcpt_over_tcp_and_unix)
{
    struct pconn t, u;

    pc_open(&t, tcp_connect(pol_port));
    ck_assert_str_eq(ask(&t, "RCPT", "192.0.2.10", "bob@example.net"), ANSWER_TEST);
    /* Postfix keeps the connection and asks again. */
    ck_assert_str_eq(ask(&t, "RCPT", "192.0.2.10", "carol@example.net"), ANSWER_TEST);
    ck_assert_str_eq(ask(&t, "RCPT", "2001:db8::1", "dave@example.net"), ANSWER_TEST);

    pc_open(&u, unix_connect(pol_sock));
    ck_assert_str_eq(ask(&u, "RCPT", "192.0.2.11", "bob@example.net"), ANSWER_TEST);
    struct stat st;
    ck_assert_int_eq(stat(pol_sock, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);

    /* CRLF line ends work too. */
    const char *crlf = "protocol_state=RCPT\r\nclient_address=192.0.2.12\r\nrecipient=x@example.net\r\n\r\n";
    char ans[1024];
    send_all(t.fd, crlf, strlen(crlf));
    ck_assert_int_eq(pc_answer(&t, ans, sizeof ans, ANSWER_TIMEOUT_MS), 1);
    ck_assert_str_eq(ans, ANSWER_TEST);
    close(t.fd);
    close(u.fd);
    ck_assert_ptr_nonnull(strstr(file_text(pol_log), "mx_name=mx-test"));
}
END_TEST

START_TEST(test_other_states_get_dunno)
{
    struct pconn t;
    static const char *const states[] = {"CONNECT", "EHLO", "HELO", "MAIL", "DATA",
                                         "END-OF-MESSAGE", "VRFY", "ETRN", ""};

    pc_open(&t, tcp_connect(pol_port));
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
        ck_assert_str_eq(ask(&t, states[i], "192.0.2.20", "bob@example.net"), "action=DUNNO");
    /* No protocol_state at all, and an empty request. */
    char ans[1024];
    send_all(t.fd, "client_address=192.0.2.20\n\n\n", 28);
    ck_assert_int_eq(pc_answer(&t, ans, sizeof ans, ANSWER_TIMEOUT_MS), 1);
    ck_assert_str_eq(ans, "action=DUNNO");
    ck_assert_int_eq(pc_answer(&t, ans, sizeof ans, ANSWER_TIMEOUT_MS), 1);
    ck_assert_str_eq(ans, "action=DUNNO");
    ck_assert_str_eq(ask(&t, "RCPT", "192.0.2.20", "bob@example.net"), ANSWER_TEST);
    close(t.fd);
}
END_TEST

START_TEST(test_whitelisted_client_gets_dunno)
{
    char *argv[] = {(char *)env("MXCACHECTL"), "--server", ipc_ep, "whitelist", "add", "client",
                    "192.0.2.99", "--comment", "test", NULL};
    int status;
    pid_t pid = spawn(argv, pol_log);
    long deadline = test_now_ms() + 20000;
    struct pconn t;

    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (test_now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            ck_abort_msg("mxcachectl did not finish");
        }
        test_sleep_ms(10);
    }
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "mxcachectl failed: %s",
                  file_text(pol_log));
    pc_open(&t, tcp_connect(pol_port));
    ck_assert_str_eq(ask(&t, "RCPT", "192.0.2.99", "bob@example.net"), "action=DUNNO");
    ck_assert_str_eq(ask(&t, "RCPT", "192.0.2.98", "bob@example.net"), ANSWER_TEST);
    close(t.fd);
}
END_TEST

START_TEST(test_pipelined_requests_answered_in_order)
{
    struct pconn t;
    char buf[16384], ans[1024];
    int n = 0;
    static const char *const states[] = {"RCPT", "DATA", "RCPT", "MAIL", "RCPT", "RCPT", "CONNECT", "RCPT"};
    const size_t ns = sizeof states / sizeof states[0];

    pc_open(&t, tcp_connect(pol_port));
    /* Several requests in one write, twice over, the second batch split in the middle of a line. */
    for (int round = 0; round < 2; round++) {
        n = 0;
        for (size_t i = 0; i < ns; i++)
            n += request_text(buf + n, sizeof buf - (size_t)n, states[i], "192.0.2.30", "s@example.org",
                              "r@example.net");
        if (round == 0) {
            send_all(t.fd, buf, (size_t)n);
        } else {
            send_all(t.fd, buf, 100);
            test_sleep_ms(50);
            send_all(t.fd, buf + 100, (size_t)n - 100);
        }
        for (size_t i = 0; i < ns; i++) {
            ck_assert_int_eq(pc_answer(&t, ans, sizeof ans, ANSWER_TIMEOUT_MS), 1);
            ck_assert_str_eq(ans, strcmp(states[i], "RCPT") == 0 ? ANSWER_TEST : "action=DUNNO");
        }
    }
    close(t.fd);
}
END_TEST

START_TEST(test_many_concurrent_connections)
{
    struct pconn *pc = calloc(NCONN, sizeof *pc);
    char ans[1024], client[32], rcpt[64];
    long t0 = test_now_ms();

    ck_assert_ptr_nonnull(pc);
    for (int i = 0; i < NCONN; i++)
        pc_open(&pc[i], i % 2 ? tcp_connect(pol_port) : unix_connect(pol_sock));
    for (int r = 0; r < PER_CONN; r++) {
        /* All connections ask at once, then all answers are read. */
        for (int i = 0; i < NCONN; i++) {
            snprintf(client, sizeof client, "198.51.100.%d", i % 250);
            snprintf(rcpt, sizeof rcpt, "user%d.%d@example.net", i, r);
            pc_send(&pc[i], r == 1 && i % 10 == 0 ? "DATA" : "RCPT", client, rcpt);
        }
        for (int i = 0; i < NCONN; i++) {
            int rc = pc_answer(&pc[i], ans, sizeof ans, ANSWER_TIMEOUT_MS);
            ck_assert_msg(rc == 1, "connection %d round %d: no answer (%d)", i, r, rc);
            ck_assert_str_eq(ans, r == 1 && i % 10 == 0 ? "action=DUNNO" : ANSWER_TEST);
        }
    }
    for (int i = 0; i < NCONN; i++)
        close(pc[i].fd);
    free(pc);
    fprintf(stderr, "%d connections x %d requests: %ld ms\n", NCONN, PER_CONN, test_now_ms() - t0);
    ck_assert_int_eq(count_of(file_text(pol_log), "SERVICE_DOWN"), 0);
}
END_TEST

START_TEST(test_bad_input_closes_only_that_connection)
{
    struct pconn good, bad;
    char line[3000];
#define BYTES(s) s, sizeof(s) - 1
    static const struct {
        const char *bytes;
        size_t len;
        const char *reason;
    } cases[] = {
        {BYTES("protocol_state=RCPT\nsender=a\0b\n\n"), "reason=binary_data"},
        {BYTES("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), "reason=binary_data"}, /* TLS */
        {BYTES("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "reason=no_equals_sign"},
        {BYTES("protocol_state=RCPT\n=oops\n\n"), "reason=empty_attribute_name"},
        {BYTES("protocol_state=RCPT\nsender=a@b\n"), "reason=eof_in_request"},
    };
#undef BYTES

    pc_open(&good, tcp_connect(pol_port));
    ck_assert_str_eq(ask(&good, "RCPT", "192.0.2.40", "a@example.net"), ANSWER_TEST);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pc_open(&bad, i % 2 ? unix_connect(pol_sock) : tcp_connect(pol_port));
        send_all(bad.fd, cases[i].bytes, cases[i].len);
        if (strstr(cases[i].reason, "eof"))
            shutdown(bad.fd, SHUT_WR);
        expect_closed(&bad, cases[i].reason);
        ck_assert_str_eq(ask(&good, "RCPT", "192.0.2.40", "b@example.net"), ANSWER_TEST);
    }
    /* An over-long line, and a request with too many attributes. */
    pc_open(&bad, tcp_connect(pol_port));
    memset(line, 'x', sizeof line);
    memcpy(line, "sender=", 7);
    send_all(bad.fd, line, sizeof line);
    expect_closed(&bad, "over-long line");
    pc_open(&bad, tcp_connect(pol_port));
    for (int i = 0; i < 101; i++) {
        char attr[32];
        int n = snprintf(attr, sizeof attr, "x%d=1\n", i);
        send_all(bad.fd, attr, (size_t)n);
    }
    expect_closed(&bad, "too many attributes");
    ck_assert_str_eq(ask(&good, "RCPT", "192.0.2.40", "c@example.net"), ANSWER_TEST);
    close(good.fd);

    const char *log = file_text(pol_log);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_msg(strstr(log, cases[i].reason), "no %s in the log:\n%s", cases[i].reason, log);
    ck_assert_ptr_nonnull(strstr(log, "reason=line_too_long"));
    ck_assert_ptr_nonnull(strstr(log, "reason=too_many_attributes"));
    /* The offending bytes are logged escaped: no raw control byte reaches the log. */
    ck_assert_ptr_nonnull(strstr(log, "excerpt=\"sender=a\\x00\""));
    for (const char *p = log; *p; p++)
        ck_assert_msg(*p == '\n' || (*p >= 0x20 && *p < 0x7f), "raw byte 0x%02x in the log",
                      (unsigned char)*p);
    ck_assert_int_eq(count_of(log, "BADINPUT"), (int)(sizeof cases / sizeof cases[0]) + 2);
}
END_TEST

START_TEST(test_fallback_while_service_is_down)
{
    struct pconn t;

    pc_open(&t, tcp_connect(pol_port));
    ck_assert_str_eq(ask(&t, "RCPT", "192.0.2.50", "a@example.net"), ANSWER_TEST);
    stop_mxcached();

    for (int i = 0; i < 3; i++) {
        long t0 = test_now_ms();
        ck_assert_str_eq(ask(&t, "RCPT", "192.0.2.50", "a@example.net"), ANSWER_FALLBACK);
        long took = test_now_ms() - t0;
        ck_assert_msg(took <= SERVICE_TIMEOUT_MS + SLACK_MS, "fallback after %ld ms", took);
    }
    /* A state that is not asked does not wait for the service at all. */
    long t0 = test_now_ms();
    ck_assert_str_eq(ask(&t, "DATA", "192.0.2.50", "a@example.net"), "action=DUNNO");
    ck_assert_int_lt(test_now_ms() - t0, SERVICE_TIMEOUT_MS);
    ck_assert_int_eq(count_of(file_text(pol_log), "SERVICE_DOWN"), 1); /* once per outage */

    start_mxcached();
    long deadline = test_now_ms() + READY_TIMEOUT_MS;
    const char *a;
    while (strcmp((a = ask(&t, "RCPT", "192.0.2.50", "a@example.net")), ANSWER_TEST) != 0) {
        ck_assert_str_eq(a, ANSWER_FALLBACK);
        ck_assert_msg(test_now_ms() < deadline, "answers did not come back:\n%s", file_text(pol_log));
    }
    /* A new connection works too, and the outage was logged as over. */
    struct pconn u;
    pc_open(&u, unix_connect(pol_sock));
    ck_assert_str_eq(ask(&u, "RCPT", "192.0.2.51", "a@example.net"), ANSWER_TEST);
    const char *log = file_text(pol_log);
    ck_assert_int_eq(count_of(log, "SERVICE_DOWN"), 1);
    ck_assert_int_eq(count_of(log, "SERVICE_UP"), 1);
    close(t.fd);
    close(u.fd);
    stop_policy();
    /* Every fallback happened during the one outage, and all were counted. */
    log = file_text(pol_log);
    const char *up = strstr(log, "SERVICE_UP"), *ex = strstr(log, "EXIT ");
    ck_assert_ptr_nonnull(up);
    ck_assert_ptr_nonnull(ex);
    const char *fu = strstr(up, " fallbacks="), *fe = strstr(ex, " fallbacks=");
    ck_assert_ptr_nonnull(fu);
    ck_assert_ptr_nonnull(fe);
    long nu = strtol(fu + 11, NULL, 10), ne = strtol(fe + 11, NULL, 10);
    ck_assert_int_ge(nu, 3);
    ck_assert_int_eq(nu, ne);
}
END_TEST

/* An error reply from the service (here: a recipient longer than the service accepts) gets the
 * fallback too, but is no outage. */
START_TEST(test_service_error_reply_gets_fallback)
{
    struct pconn t;
    char rcpt[400];

    memset(rcpt, 'r', sizeof rcpt);
    memcpy(rcpt + sizeof rcpt - 13, "@example.net", 13);
    pc_open(&t, tcp_connect(pol_port));
    ck_assert_str_eq(ask(&t, "RCPT", "192.0.2.52", rcpt), ANSWER_FALLBACK);
    ck_assert_str_eq(ask(&t, "RCPT", "192.0.2.52", "ok@example.net"), ANSWER_TEST);
    close(t.fd);
    const char *log = file_text(pol_log);
    ck_assert_ptr_nonnull(strstr(log, "SERVICE_ERROR"));
    ck_assert_ptr_nonnull(strstr(log, "code=invalid_argument"));
    ck_assert_int_eq(count_of(log, "SERVICE_DOWN"), 0);
}
END_TEST

START_TEST(test_fallback_dunno)
{
    struct pconn t;

    stop_policy();
    start_policy(NULL, "fallback = \"dunno\";");
    stop_mxcached();
    pc_open(&t, tcp_connect(pol_port));
    long t0 = test_now_ms();
    ck_assert_str_eq(ask(&t, "RCPT", "192.0.2.55", "a@example.net"), "action=DUNNO");
    ck_assert_int_le(test_now_ms() - t0, SERVICE_TIMEOUT_MS + SLACK_MS);
    ck_assert_int_ge(test_now_ms() - t0, SERVICE_TIMEOUT_MS / 2); /* it did wait for the service */
    close(t.fd);
}
END_TEST

START_TEST(test_idle_timeout_and_max_connections)
{
    struct pconn c[4], extra;
    char ans[64];

    stop_policy();
    /* idle_timeout is far above the active connection's gaps (300 ms plus one answer), so a
     * loaded machine (sanitizers, parallel tests) cannot idle it out by being slow. */
    start_policy("idle_timeout = \"2s\"; max_connections = 4;", NULL);
    test_sleep_ms(300); /* start_policy's probe connection is gone by now */
    for (int i = 0; i < 4; i++)
        pc_open(&c[i], tcp_connect(pol_port));
    for (int i = 0; i < 4; i++)
        ck_assert_str_eq(ask(&c[i], "RCPT", "192.0.2.60", "a@example.net"), ANSWER_TEST);
    /* A fifth connection is accepted and closed at once; the others go on. */
    pc_open(&extra, unix_connect(pol_sock));
    ck_assert_int_eq(pc_answer(&extra, ans, sizeof ans, ANSWER_TIMEOUT_MS), 0);
    close(extra.fd);
    ck_assert_ptr_nonnull(strstr(file_text(pol_log), "REFUSED"));
    /* Connections that stay silent are closed after idle_timeout; an active one is not. */
    for (int k = 0; k < 8; k++) { /* 2.4 s and more: the silent ones are past idle_timeout */
        test_sleep_ms(300);
        ck_assert_str_eq(ask(&c[0], "RCPT", "192.0.2.60", "b@example.net"), ANSWER_TEST);
    }
    for (int i = 1; i < 4; i++)
        expect_closed(&c[i], "idle connection");
    ck_assert_str_eq(ask(&c[0], "RCPT", "192.0.2.60", "c@example.net"), ANSWER_TEST);
    close(c[0].fd);
    ck_assert_ptr_nonnull(strstr(file_text(pol_log), "reason=idle"));
}
END_TEST

START_TEST(test_sigterm_answers_what_is_in_flight)
{
    struct pconn t;
    char ans[1024];
    struct stat st;

    /* A long service timeout: the answer in flight must be the service's, however slow we are. */
    stop_policy();
    svc_timeout = "30s";
    start_policy(NULL, NULL);
    pc_open(&t, tcp_connect(pol_port));
    ck_assert_str_eq(ask(&t, "RCPT", "192.0.2.70", "a@example.net"), ANSWER_TEST);
    /* The service pauses, so the next question stays in flight across the SIGTERM. */
    kill(mx_pid, SIGSTOP);
    pc_send(&t, "RCPT", "192.0.2.70", "b@example.net");
    wait_log("recipient=\"b@example.net\""); /* the hook has asked */
    kill(pol_pid, SIGTERM);
    wait_log("STOP reason=SIGTERM connections=1 pending=1");
    kill(mx_pid, SIGCONT);
    ck_assert_int_eq(pc_answer(&t, ans, sizeof ans, ANSWER_TIMEOUT_MS), 1);
    ck_assert_str_eq(ans, ANSWER_TEST);
    expect_closed(&t, "after the answer in flight");
    int status;
    long deadline = test_now_ms() + STOP_TIMEOUT_MS;
    while (waitpid(pol_pid, &status, WNOHANG) == 0) {
        ck_assert_msg(test_now_ms() < deadline, "mxcache-policy did not exit after SIGTERM");
        test_sleep_ms(10);
    }
    pol_pid = 0;
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert_int_eq(stat(pol_sock, &st), -1); /* the unix socket is removed */
    ck_assert_int_lt(tcp_connect(pol_port), 0);
    const char *log = file_text(pol_log);
    ck_assert_ptr_nonnull(strstr(log, "STOP reason=SIGTERM"));
    ck_assert_ptr_nonnull(strstr(log, "EXIT result=clean"));
}
END_TEST

START_TEST(test_stdio_mode)
{
    int sv[2];
    char *argv[] = {(char *)env("MXCACHE_POLICY"), "--config", pol_conf, "--stdio", "--allow-root", NULL};
    struct pconn t;
    int status;

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* As Postfix's spawn(8) does: stdin, stdout and stderr are the connection. */
        dup2(sv[1], 0);
        dup2(sv[1], 1);
        dup2(sv[1], 2);
        execv(argv[0], argv);
        _exit(127);
    }
    close(sv[1]);
    pc_open(&t, sv[0]);
    ck_assert_str_eq(ask(&t, "RCPT", "192.0.2.80", "a@example.net"), ANSWER_TEST);
    ck_assert_str_eq(ask(&t, "EHLO", "192.0.2.80", "a@example.net"), "action=DUNNO");
    ck_assert_str_eq(ask(&t, "RCPT", "192.0.2.80", "b@example.net"), ANSWER_TEST);
    shutdown(t.fd, SHUT_WR); /* Postfix goes away: the hook exits */
    char ans[64];
    ck_assert_int_eq(pc_answer(&t, ans, sizeof ans, ANSWER_TIMEOUT_MS), 0);
    long deadline = test_now_ms() + STOP_TIMEOUT_MS;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (test_now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            ck_abort_msg("mxcache-policy --stdio did not exit");
        }
        test_sleep_ms(10);
    }
    close(t.fd);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
END_TEST

/* run_out - runs a shell command, returns its output (static buffer). */
static const char *run_out(const char *cmd)
{
    static char out[8192];
    FILE *p = popen(cmd, "r");
    size_t n;

    ck_assert_ptr_nonnull(p);
    n = fread(out, 1, sizeof out - 1, p);
    pclose(p);
    out[n] = '\0';
    return out;
}

START_TEST(test_check_and_print_config)
{
    char cmd[1200], bad[400], want[500];
    const char *bin = env("MXCACHE_POLICY");

    snprintf(cmd, sizeof cmd, "'%s' --check-config --config '%s' 2>&1; echo exit=$?", bin, pol_conf);
    ck_assert_ptr_nonnull(strstr(run_out(cmd), "exit=0"));

    snprintf(bad, sizeof bad, "%s/bad.conf", dir);
    FILE *f = fopen(bad, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "server: {\n  listen = [\"nowhere\"];\n};\nservice: {\n  timeout = \"1h\";\n  bogus = 1;\n};\n"
               "metrics: {\n  listen = \"localhost:10043\";\n};\n");
    fclose(f);
    snprintf(cmd, sizeof cmd, "'%s' --check-config --config '%s' 2>&1; echo exit=$?", bin, bad);
    const char *out = run_out(cmd);
    ck_assert_msg(strstr(out, "exit=1"), "%s", out);
    snprintf(want, sizeof want, "%s:2: server.listen", bad);
    ck_assert_msg(strstr(out, want), "%s", out);
    snprintf(want, sizeof want, "%s:5: service.timeout", bad);
    ck_assert_msg(strstr(out, want), "%s", out);
    snprintf(want, sizeof want, "%s:6: service.bogus", bad);
    ck_assert_msg(strstr(out, want), "%s", out);
    snprintf(want, sizeof want, "%s:9: metrics.listen: bad address", bad);
    ck_assert_msg(strstr(out, want), "%s", out);

    /* --print-config shows the effective values, and the overrides' defaults. */
    snprintf(cmd, sizeof cmd, "'%s' --print-config --config '%s' 2>&1", bin, pol_conf);
    out = run_out(cmd);
    ck_assert_msg(strstr(out, "timeout = \"1s\";") && strstr(out, "# default: \"5s\"") &&
                      strstr(out, "mx_name = \"mx-test\";"),
                  "%s", out);
    snprintf(cmd, sizeof cmd, "'%s' --print-config 2>&1", bin);
    out = run_out(cmd);
    ck_assert_msg(strstr(out, "listen = [ \"inet:127.0.0.1:10040\" ];") &&
                      strstr(out, "endpoints = [ \"tcp://127.0.0.1:10041\" ];") &&
                      strstr(out, "metrics = {\n") && strstr(out, "  listen = \"127.0.0.1:10043\";") &&
                      strstr(out, "  ping_interval = \"5s\";"),
                  "%s", out);

    /* The example file in deploy/ is valid and shows every setting with its default. */
    const char *src = getenv("MXCACHE_SOURCE_DIR");
    if (src) {
        snprintf(cmd, sizeof cmd, "'%s' --check-config --config '%s/deploy/mxcache-policy.conf' 2>&1; echo exit=$?",
                 bin, src);
        out = run_out(cmd);
        ck_assert_msg(strstr(out, "exit=0"), "%s", out);
        snprintf(cmd, sizeof cmd, "'%s' --print-config --config '%s/deploy/mxcache-policy.conf' 2>&1", bin, src);
        ck_assert_msg(!strstr(run_out(cmd), "# default:"), "the example file differs from the defaults");
        char path[600];
        snprintf(path, sizeof path, "%s/deploy/mxcache-policy.conf", src);
        char example[65536];
        snprintf(example, sizeof example, "%s", file_text(path));
        snprintf(cmd, sizeof cmd, "'%s' --print-config 2>&1", bin);
        char *printed = strdup(run_out(cmd)), *save = NULL;
        ck_assert_ptr_nonnull(printed);
        for (char *line = strtok_r(printed, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            char name[64];
            if (strncmp(line, "  ", 2) == 0 && sscanf(line + 2, "%63[a-z_] =", name) == 1) {
                char needle[80];
                snprintf(needle, sizeof needle, "\n  %s = ", name);
                ck_assert_msg(strstr(example, needle), "%s is not shown in deploy/mxcache-policy.conf", name);
            }
        }
        free(printed);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("policy_service");
    TCase *tc = tcase_create("mxcache-policy");
    char cmd[128];

    if (!mkdtemp(base_dir)) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    signal(SIGPIPE, SIG_IGN);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_rcpt_over_tcp_and_unix);
    tcase_add_test(tc, test_other_states_get_dunno);
    tcase_add_test(tc, test_whitelisted_client_gets_dunno);
    tcase_add_test(tc, test_pipelined_requests_answered_in_order);
    tcase_add_test(tc, test_many_concurrent_connections);
    tcase_add_test(tc, test_bad_input_closes_only_that_connection);
    tcase_add_test(tc, test_fallback_while_service_is_down);
    tcase_add_test(tc, test_service_error_reply_gets_fallback);
    tcase_add_test(tc, test_fallback_dunno);
    tcase_add_test(tc, test_idle_timeout_and_max_connections);
    tcase_add_test(tc, test_sigterm_answers_what_is_in_flight);
    tcase_add_test(tc, test_stdio_mode);
    tcase_add_test(tc, test_check_and_print_config);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", base_dir);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
