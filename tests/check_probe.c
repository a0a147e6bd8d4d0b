/* check_probe - the SMTP probe engine (server/probe.c) against a real SMTP server on loopback:
 * mxtest-smtpd (MXTEST_SMTPD), started per test with the script the test needs by
 * smtpd/smtpd_run.c, which reads its port from its port file and kills it by PID at the end (and
 * by PR_SET_PDEATHSIG if the test dies first).
 * Its log, one line per connection event and command, shows what the engine really sent. A few
 * byte-level cases that the scripted server cannot produce (bytes after a complete reply, a
 * reply nobody asked for) use a small raw server thread in this file. Every wait is bounded. */
#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mxc_err.h"
#include "probe.h"
#include "smtpd/smtpd_run.h"
#include "testutil.h"

#define RESULT_TIMEOUT_MS 10000 /* a probe that should finish has this long */
#define LOG_TIMEOUT_MS 3000    /* a log line that should come */
#define SLACK_MS 1500          /* scheduling noise allowed above a timeout */

/* ---- helpers: time, counts ---- */

static unsigned count_str(const char *hay, const char *needle)
{
    unsigned n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* count_fds - open file descriptors of this process: an engine must leave none behind. */
static unsigned count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    unsigned n = 0;

    ck_assert_ptr_nonnull(d);
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* ---- mxtest-smtpd (smtpd/smtpd_run.h) ---- */

/* log_max_open - the most connections open at once according to the log's open/close lines. */
static unsigned log_max_open(const char *log)
{
    int open_now = 0, max = 0;

    for (const char *p = log; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        unsigned c;
        char what[8];
        if (sscanf(p, "conn=%u %7[a-z]", &c, what) == 2 && strcmp(what, "open") == 0)
            open_now++;
        else if (sscanf(p, "conn=%u %7[a-z]", &c, what) == 2 && strcmp(what, "close") == 0)
            open_now--;
        if (open_now > max)
            max = open_now;
        p += len + (nl ? 1 : 0);
    }
    return (unsigned)max;
}

/* ---- the engine ---- */

static struct probe_route route_for(const char *host)
{
    struct probe_route r = {
        .name = "example.test",
        .hosts = {host},
        .nhosts = 1,
        .helo = "probe.test",
        .mail_from = "",
        .connect_ms = 2000,
        .greeting_ms = 2000,
        .command_ms = 2000,
        .max_sessions = 2,
        .session_probes = 50,
        .session_idle_ms = 300,
    };
    return r;
}

static struct probe_engine *engine(const struct probe_route *routes, size_t n, unsigned max_queued)
{
    struct probe_options o = {.routes = routes, .nroutes = n, .max_queued = max_queued};
    char err[256] = "";
    struct probe_engine *e = probe_engine_create(&o, err, sizeof err);

    ck_assert_msg(e != NULL, "probe_engine_create: %s", err);
    return e;
}

static bool fd_readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

/* collect - takes up to n results within ms, waiting on the engine's fd; the count taken. */
static size_t collect(struct probe_engine *e, struct probe_result *res, size_t n, long ms)
{
    long deadline = test_now_ms() + ms;
    size_t got = 0;

    while (got < n) {
        long left = deadline - test_now_ms();
        if (probe_take(e, &res[got]) == MXC_OK) {
            got++;
            continue;
        }
        if (left <= 0)
            break;
        fd_readable(probe_engine_fd(e), (int)(left < 100 ? left : 100));
    }
    return got;
}

/* wait_closed - waits until the engine has no session open; the last stats seen. */
static void wait_closed(struct probe_engine *e, long ms, struct probe_stats *st)
{
    long deadline = test_now_ms() + ms;

    for (;;) {
        probe_engine_stats(e, st);
        if (st->sessions_open == 0 || test_now_ms() > deadline)
            return;
        test_sleep_ms(10);
    }
}

/* probe_one - submits one probe and waits for its result. */
static void probe_one(struct probe_engine *e, unsigned route, const char *addr, bool transcript,
                      struct probe_result *res)
{
    ck_assert_int_eq(probe_submit(e, route, addr, 42, transcript), MXC_OK);
    ck_assert_msg(collect(e, res, 1, RESULT_TIMEOUT_MS) == 1, "no result for %s", addr);
    ck_assert_uint_eq(res->token, 42);
}

static const char *outcome_name(enum probe_outcome o)
{
    static const char *const names[] = {"ACCEPTED", "REJECTED", "TEMPFAIL", "FAILED"};
    return (unsigned)o < 4 ? names[o] : "?";
}

#define ck_assert_outcome(res, want)                                                               \
    ck_assert_msg((res)->outcome == (want), "outcome %s, want %s (detail \"%s\", reply %u)",        \
                  outcome_name((res)->outcome), outcome_name(want), (res)->detail, (res)->reply.code)

/* ---- tests ---- */

/* Scripted answers come back as they were sent: code, enhanced status and text word for word. */
START_TEST(test_answers)
{
    static const struct {
        const char *addr;
        enum probe_outcome outcome;
        unsigned code;
        const char *status, *text;
    } cases[] = {
        {"ok@example.test", PROBE_ACCEPTED, 250, "2.1.5", "Ok"},
        {"nobody@example.test", PROBE_REJECTED, 550, "5.1.1",
         "Recipient address rejected: User unknown in virtual mailbox table"},
        {"full@example.test", PROBE_TEMPFAIL, 450, "4.2.2", "Mailbox full, try again later"},
        {"plain@example.test", PROBE_REJECTED, 553, "", "Sorry, no mailbox here by that name."},
    };
    struct smtpd_run d;
    struct probe_result res[4];
    struct probe_stats st;

    smtpd_run_start(&d, "rcpt ok@example.test 250 2.1.5 Ok\n"
                    "rcpt full@example.test 450 4.2.2 Mailbox full, try again later\n"
                    "rcpt plain@example.test 553 Sorry, no mailbox here by that name.\n"
                    "rcpt * 550 5.1.1 Recipient address rejected: User unknown in virtual mailbox table\n");
    struct probe_route r = route_for(d.host);
    struct probe_engine *e = engine(&r, 1, 100);

    ck_assert(!fd_readable(probe_engine_fd(e), 0));
    for (size_t i = 0; i < 4; i++)
        ck_assert_int_eq(probe_submit(e, 0, cases[i].addr, i, false), MXC_OK);
    ck_assert_uint_eq(collect(e, res, 4, RESULT_TIMEOUT_MS), 4);
    for (size_t i = 0; i < 4; i++) {
        const struct probe_result *p = &res[i];
        ck_assert_uint_lt(p->token, 4);
        ck_assert_outcome(p, cases[p->token].outcome);
        ck_assert_uint_eq(p->reply.code, cases[p->token].code);
        ck_assert_str_eq(p->reply.status, cases[p->token].status);
        ck_assert_str_eq(p->reply.text, cases[p->token].text);
        ck_assert_str_eq(p->backend, d.host);
        ck_assert_str_eq(p->detail, "");
        ck_assert_str_eq(p->transcript, "");
    }
    /* Level-triggered: readable only while results wait. */
    ck_assert(!fd_readable(probe_engine_fd(e), 0));
    ck_assert_int_eq(probe_take(e, &res[0]), MXC_EAGAIN);
    probe_engine_stats(e, &st);
    ck_assert_uint_eq(st.submitted, 4);
    ck_assert_uint_eq(st.accepted, 1);
    ck_assert_uint_eq(st.rejected, 2);
    ck_assert_uint_eq(st.tempfail, 1);
    ck_assert_uint_eq(st.failed, 0);
    ck_assert_uint_eq(st.inflight, 0);
    probe_engine_destroy(e);
    smtpd_run_stop(&d);
}
END_TEST

/* <ADDR> in a scripted reply shows that the address the server received is the one submitted. */
START_TEST(test_address_echo)
{
    struct smtpd_run d;
    struct probe_result res;

    smtpd_run_start(&d, "rcpt * 550 5.1.1 <ADDR>: Recipient address rejected\n");
    struct probe_route r = route_for(d.host);
    struct probe_engine *e = engine(&r, 1, 10);
    probe_one(e, 0, "Some.One+tag@Example.TEST", false, &res);
    ck_assert_outcome(&res, PROBE_REJECTED);
    ck_assert_ptr_nonnull(strstr(res.reply.text, "Some.One+tag@Example.TEST"));
    probe_engine_destroy(e);
    char *log = smtpd_run_log(&d);
    ck_assert_uint_eq(count_str(log, "cmd=RCPT TO:<Some.One+tag@Example.TEST>"), 1);
    free(log);
    smtpd_run_stop(&d);
}
END_TEST

#define MANY 200

/* Many probes to one host: every one answered once, never more than max_sessions connections,
 * at most session_probes per connection, RSET between the probes of a connection. */
START_TEST(test_many_probes)
{
    struct smtpd_run d;
    struct probe_result *res = calloc(MANY, sizeof *res);
    unsigned seen[MANY] = {0}, reused = 0, rcpts[512] = {0};
    struct probe_stats st;
    char addr[64];

    ck_assert_ptr_nonnull(res);
    smtpd_run_start(&d, "rcpt * 250 2.1.5 Ok\n");
    struct probe_route r = route_for(d.host);
    r.max_sessions = 2;
    r.session_probes = 50;
    r.session_idle_ms = 200;
    struct probe_engine *e = engine(&r, 1, MANY);
    long t0 = test_now_ms();
    for (unsigned i = 0; i < MANY; i++) {
        snprintf(addr, sizeof addr, "user%u@example.test", i);
        ck_assert_int_eq(probe_submit(e, 0, addr, i, false), MXC_OK);
    }
    ck_assert_uint_eq(collect(e, res, MANY, 30000), MANY);
    for (unsigned i = 0; i < MANY; i++) {
        ck_assert_outcome(&res[i], PROBE_ACCEPTED);
        ck_assert_uint_lt(res[i].token, MANY);
        seen[res[i].token]++;
        reused += res[i].reused;
    }
    for (unsigned i = 0; i < MANY; i++)
        ck_assert_uint_eq(seen[i], 1);
    probe_engine_stats(e, &st);
    ck_assert_uint_eq(st.accepted, MANY);
    ck_assert_uint_ge(st.sessions_opened, MANY / 50);
    ck_assert_uint_le(st.sessions_opened, MANY);
    ck_assert_uint_eq(reused, MANY - st.sessions_opened);
    ck_assert_uint_eq(st.sessions_reused, reused);
    /* Let the idle sessions QUIT, so that the log is complete. */
    ck_assert_uint_ge(smtpd_run_wait(&d, "cmd=QUIT", (unsigned)st.sessions_opened, LOG_TIMEOUT_MS),
                      st.sessions_opened);
    probe_engine_destroy(e);
    fprintf(stderr, "many: %d probes in %ld ms, %llu sessions\n", MANY, test_now_ms() - t0,
            (unsigned long long)st.sessions_opened);

    char *log = smtpd_run_log(&d);
    ck_assert_uint_eq(count_str(log, "cmd=RCPT TO:<"), MANY);
    for (unsigned i = 0; i < MANY; i++) {
        char needle[80];
        snprintf(needle, sizeof needle, "cmd=RCPT TO:<user%u@example.test>\n", i);
        ck_assert_msg(count_str(log, needle) == 1, "%s", needle);
    }
    ck_assert_uint_le(log_max_open(log), 2);
    /* Per connection: MAIL, RCPT, then (RSET, MAIL, RCPT)*, each RCPT after a MAIL, each MAIL
     * but the first after an RSET. */
    char last[512] = {0}; /* per connection: H EHLO, M MAIL, T RCPT, S RSET */
    for (const char *p = log; *p;) {
        unsigned c;
        char cmd[64];
        const char *nl = strchr(p, '\n');
        if (sscanf(p, "conn=%u cmd=%63[^\n]", &c, cmd) == 2 && c < 512) {
            if (strncmp(cmd, "MAIL", 4) == 0) {
                ck_assert_msg(last[c] == 'S' || (last[c] == 'H' && rcpts[c] == 0), "conn %u: MAIL after %c", c,
                              last[c]);
                last[c] = 'M';
            } else if (strncmp(cmd, "RCPT", 4) == 0) {
                ck_assert_msg(last[c] == 'M', "conn %u: RCPT not after MAIL", c);
                rcpts[c]++;
                last[c] = 'T';
            } else if (strncmp(cmd, "RSET", 4) == 0) {
                ck_assert_msg(last[c] == 'T', "conn %u: RSET not after RCPT", c);
                last[c] = 'S';
            } else if (strncmp(cmd, "EHLO", 4) == 0) {
                last[c] = 'H';
            }
        }
        p = nl ? nl + 1 : p + strlen(p);
    }
    for (unsigned c = 0; c < 512; c++)
        ck_assert_uint_le(rcpts[c], 50);
    free(log);
    free(res);
    smtpd_run_stop(&d);
}
END_TEST

/* A session that goes idle is reused by the next probe (with RSET), then QUITs after
 * session_idle_ms. */
START_TEST(test_idle_reuse)
{
    struct smtpd_run d;
    struct probe_result res;
    struct probe_stats st;

    smtpd_run_start(&d, "rcpt * 250 2.1.5 Ok\n");
    struct probe_route r = route_for(d.host);
    r.session_idle_ms = 1500;
    struct probe_engine *e = engine(&r, 1, 10);
    probe_one(e, 0, "a@example.test", false, &res);
    ck_assert(!res.reused);
    long t0 = test_now_ms(); /* the idle time starts after this probe's answer, so after t0 */
    probe_one(e, 0, "b@example.test", true, &res);
    ck_assert(res.reused);
    ck_assert_ptr_nonnull(strstr(res.transcript, "C: RSET\nS: 250"));
    char *log = smtpd_run_log(&d);
    ck_assert_uint_eq(count_str(log, " open peer="), 1);
    ck_assert_uint_eq(count_str(log, "cmd=RSET"), 1);
    ck_assert_uint_eq(count_str(log, "cmd=QUIT"), 0);
    free(log);
    /* Idle: QUIT and close after 1500 ms, not before. */
    ck_assert_uint_eq(smtpd_run_wait(&d, "cmd=QUIT", 1, 1500 + SLACK_MS), 1);
    ck_assert_int_ge(test_now_ms() - t0, 1490);
    ck_assert_uint_eq(smtpd_run_wait(&d, " close reason=", 1, LOG_TIMEOUT_MS), 1);
    /* The server logs its close before the engine has read the 221. */
    wait_closed(e, LOG_TIMEOUT_MS, &st);
    ck_assert_uint_eq(st.sessions_opened, 1);
    ck_assert_uint_eq(st.sessions_reused, 1);
    ck_assert_uint_eq(st.sessions_open, 0);
    probe_engine_destroy(e);
    smtpd_run_stop(&d);
}
END_TEST

/* session_idle_ms 0 and session_probes 1: one probe per connection, QUIT right after. */
START_TEST(test_no_reuse)
{
    struct smtpd_run d;
    struct probe_result res[3];

    smtpd_run_start(&d, "rcpt * 250 2.1.5 Ok\n");
    struct probe_route r = route_for(d.host);
    r.session_idle_ms = 0;
    r.session_probes = 1;
    r.max_sessions = 1;
    struct probe_engine *e = engine(&r, 1, 10);
    for (unsigned i = 0; i < 3; i++)
        ck_assert_int_eq(probe_submit(e, 0, "x@example.test", i, false), MXC_OK);
    ck_assert_uint_eq(collect(e, res, 3, RESULT_TIMEOUT_MS), 3);
    for (unsigned i = 0; i < 3; i++) {
        ck_assert_outcome(&res[i], PROBE_ACCEPTED);
        ck_assert(!res[i].reused);
    }
    ck_assert_uint_eq(smtpd_run_wait(&d, "cmd=QUIT", 3, LOG_TIMEOUT_MS), 3);
    char *log = smtpd_run_log(&d);
    ck_assert_uint_eq(count_str(log, " open peer="), 3);
    ck_assert_uint_eq(count_str(log, "cmd=RSET"), 0);
    ck_assert_uint_le(log_max_open(log), 1);
    free(log);
    probe_engine_destroy(e);
    smtpd_run_stop(&d);
}
END_TEST

/* EHLO refused with 5xx: HELO, and the probe goes on. */
START_TEST(test_helo_fallback)
{
    struct smtpd_run d;
    struct probe_result res;

    smtpd_run_start(&d, "ehlo 502 5.5.2 Error: command not recognized\nrcpt * 250 2.1.5 Ok\n");
    struct probe_route r = route_for(d.host);
    struct probe_engine *e = engine(&r, 1, 10);
    probe_one(e, 0, "a@example.test", true, &res);
    ck_assert_outcome(&res, PROBE_ACCEPTED);
    ck_assert_ptr_nonnull(strstr(res.transcript, "C: EHLO probe.test\nS: 502 5.5.2 Error: command not recognized\n"
                                                 "C: HELO probe.test\nS: 250"));
    probe_engine_destroy(e);
    char *log = smtpd_run_log(&d);
    ck_assert_uint_eq(count_str(log, "cmd=EHLO probe.test\n"), 1);
    ck_assert_uint_eq(count_str(log, "cmd=HELO probe.test\n"), 1);
    free(log);
    smtpd_run_stop(&d);
}
END_TEST

/* A refused EHLO and HELO, or a 4xx to EHLO: FAILED with the refusal, never REJECTED; no MAIL. */
START_TEST(test_hello_refused)
{
    static const struct {
        const char *script;
        unsigned code;
    } cases[] = {
        {"ehlo 550 5.7.1 go away\nhelo 550 5.7.1 go away too\n", 550},
        {"ehlo 421 4.3.2 shutting down\n", 421},
    };
    struct smtpd_run d;
    struct probe_result res;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        smtpd_run_start(&d, cases[i].script);
        struct probe_route r = route_for(d.host);
        struct probe_engine *e = engine(&r, 1, 10);
        probe_one(e, 0, "a@example.test", false, &res);
        ck_assert_outcome(&res, PROBE_FAILED);
        ck_assert_uint_eq(res.reply.code, cases[i].code);
        ck_assert_ptr_nonnull(strstr(res.detail, d.host));
        probe_engine_destroy(e);
        char *log = smtpd_run_log(&d);
        ck_assert_uint_eq(count_str(log, "cmd=MAIL"), 0);
        free(log);
        smtpd_run_stop(&d);
    }
}
END_TEST

/* A greeting that does not come: FAILED after greeting_ms (a temporary failure), and with a
 * second host, failover to it. */
START_TEST(test_greeting_stall_failover)
{
    struct smtpd_run a, b;
    struct probe_result res;

    smtpd_run_start(&a, "greeting stall\n");
    smtpd_run_start(&b, "rcpt * 250 2.1.5 Ok\n");
    struct probe_route r[2] = {route_for(a.host), route_for(a.host)};
    r[0].greeting_ms = r[1].greeting_ms = 400;
    r[1].hosts[1] = b.host;
    r[1].nhosts = 2;
    struct probe_engine *e = engine(r, 2, 10);

    long t0 = test_now_ms();
    probe_one(e, 0, "a@example.test", false, &res);
    long took = test_now_ms() - t0;
    ck_assert_outcome(&res, PROBE_FAILED);
    ck_assert_uint_eq(res.reply.code, 0);
    ck_assert_ptr_nonnull(strstr(res.detail, "greeting"));
    ck_assert_ptr_nonnull(strstr(res.detail, "timeout"));
    ck_assert_str_eq(res.backend, a.host);
    ck_assert_int_ge(took, 390);
    ck_assert_int_le(took, 400 + SLACK_MS);

    t0 = test_now_ms();
    probe_one(e, 1, "a@example.test", false, &res);
    took = test_now_ms() - t0;
    ck_assert_outcome(&res, PROBE_ACCEPTED);
    ck_assert_str_eq(res.backend, b.host);
    ck_assert_int_ge(took, 390);
    ck_assert_int_le(took, 400 + SLACK_MS);
    probe_engine_destroy(e);
    char *log = smtpd_run_log(&a);
    ck_assert_uint_eq(count_str(log, "cmd="), 0);
    free(log);
    smtpd_run_stop(&a);
    smtpd_run_stop(&b);
}
END_TEST

/* Connection refused (a closed port) and a 554 greeting: the probe moves to the next host; when
 * no host is left, FAILED with the last reason. */
START_TEST(test_refused_failover)
{
    struct smtpd_run b, g;
    struct probe_result res;
    struct probe_stats st;
    char closed[64];
    unsigned port;
    int fd = smtpd_run_refusing_port(&port);

    snprintf(closed, sizeof closed, "127.0.0.1:%u", port);
    smtpd_run_start(&b, "rcpt * 250 2.1.5 Ok\n");
    smtpd_run_start(&g, "greeting 554 5.3.2 No SMTP service here\n");
    struct probe_route r[3] = {route_for(closed), route_for(closed), route_for(closed)};
    r[0].hosts[1] = g.host;          /* closed, 554, b */
    r[0].hosts[2] = b.host;
    r[0].nhosts = 3;
    r[1].hosts[1] = g.host;          /* closed, 554: nothing left */
    r[1].nhosts = 2;
    struct probe_engine *e = engine(r, 3, 10);

    probe_one(e, 0, "a@example.test", false, &res);
    ck_assert_outcome(&res, PROBE_ACCEPTED);
    ck_assert_str_eq(res.backend, b.host);

    probe_one(e, 1, "a@example.test", false, &res);
    ck_assert_outcome(&res, PROBE_FAILED);
    ck_assert_str_eq(res.backend, g.host);
    ck_assert_uint_eq(res.reply.code, 554);
    ck_assert_ptr_nonnull(strstr(res.detail, "greeting"));
    ck_assert_ptr_nonnull(strstr(res.detail, "554"));

    probe_one(e, 2, "a@example.test", false, &res);
    ck_assert_outcome(&res, PROBE_FAILED);
    ck_assert_str_eq(res.backend, closed);
    ck_assert_ptr_nonnull(strstr(res.detail, "connect"));
    ck_assert_ptr_nonnull(strstr(res.detail, closed));

    probe_engine_stats(e, &st);
    ck_assert_uint_ge(st.connect_failures, 3);
    probe_engine_destroy(e);
    close(fd);
    smtpd_run_stop(&b);
    smtpd_run_stop(&g);
}
END_TEST

/* Queued probes behind a host that is down move on with it, not one connect timeout each. */
START_TEST(test_failover_queue)
{
    struct smtpd_run a, b;
    struct probe_result res[20];

    smtpd_run_start(&a, "greeting stall\n");
    smtpd_run_start(&b, "rcpt * 250 2.1.5 Ok\n");
    struct probe_route r = route_for(a.host);
    r.hosts[1] = b.host;
    r.nhosts = 2;
    r.greeting_ms = 500;
    r.max_sessions = 1;
    struct probe_engine *e = engine(&r, 1, 100);
    long t0 = test_now_ms();
    for (unsigned i = 0; i < 20; i++)
        ck_assert_int_eq(probe_submit(e, 0, "a@example.test", i, false), MXC_OK);
    ck_assert_uint_eq(collect(e, res, 20, RESULT_TIMEOUT_MS), 20);
    for (unsigned i = 0; i < 20; i++) {
        ck_assert_outcome(&res[i], PROBE_ACCEPTED);
        ck_assert_str_eq(res[i].backend, b.host);
    }
    ck_assert_int_le(test_now_ms() - t0, 500 + SLACK_MS);
    probe_engine_destroy(e);
    smtpd_run_stop(&a);
    smtpd_run_stop(&b);
}
END_TEST

/* Failures during a probe: FAILED (never REJECTED) within their timeout, and the engine goes on
 * with the next probe. */
START_TEST(test_probe_failures)
{
    static const struct {
        const char *script;      /* for bad@example.test; everyone else gets 250 */
        uint64_t command_ms;
        const char *detail;      /* in the detail */
        long min_ms, max_ms;     /* the failed probe's duration */
        unsigned code;           /* reply kept */
    } cases[] = {
        {"rcpt bad@example.test stall\n", 400, "RCPT TO: timeout after 400 ms", 390, 400 + SLACK_MS, 0},
        {"rcpt bad@example.test drop\n", 5000, "RCPT TO: ", 0, SLACK_MS, 0},
        {"rcpt bad@example.test endless\n", 5000, "RCPT TO: malformed", 0, SLACK_MS, 0},
        {"rcpt bad@example.test overlong 5000\n", 5000, "RCPT TO: malformed", 0, SLACK_MS, 0},
        {"rcpt bad@example.test multiline 150 250 2.1.5 Ok\n", 5000, "RCPT TO: malformed", 0, SLACK_MS, 0},
        {"rcpt bad@example.test 354 go ahead\n", 5000, "RCPT TO: 354", 0, SLACK_MS, 354},
        {"rcpt bad@example.test slow 1000 250 2.1.5 Ok\n", 300, "RCPT TO: timeout", 290, 300 + SLACK_MS, 0},
        {"mail 553 5.7.1 Sender address rejected\n", 5000, "MAIL FROM: 553 5.7.1", 0, SLACK_MS, 553},
        {"mail 452 4.3.1 Insufficient system storage\n", 5000, "MAIL FROM: 452", 0, SLACK_MS, 452},
        {"mail stall\n", 300, "MAIL FROM: timeout", 290, 300 + SLACK_MS, 0},
        {"ehlo endless\n", 5000, "EHLO: malformed", 0, SLACK_MS, 0},
        {"ehlo multiline 101 250 mxtest\n", 5000, "EHLO: malformed", 0, SLACK_MS, 0},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct smtpd_run d;
        struct probe_result res;
        char script[256];
        bool mail_or_ehlo = strncmp(cases[i].script, "rcpt", 4) != 0;

        snprintf(script, sizeof script, "%srcpt * 250 2.1.5 Ok\n", cases[i].script);
        smtpd_run_start(&d, script);
        struct probe_route r = route_for(d.host);
        r.command_ms = cases[i].command_ms;
        r.max_sessions = 1;
        struct probe_engine *e = engine(&r, 1, 10);

        probe_one(e, 0, "bad@example.test", false, &res);
        ck_assert_msg(res.outcome == PROBE_FAILED, "case %zu: %s", i, outcome_name(res.outcome));
        ck_assert_msg(strstr(res.detail, cases[i].detail) != NULL, "case %zu: detail \"%s\"", i, res.detail);
        ck_assert_msg(strncmp(res.detail, d.host, strlen(d.host)) == 0, "case %zu: %s", i, res.detail);
        ck_assert_msg((long)res.duration_ms >= cases[i].min_ms && (long)res.duration_ms <= cases[i].max_ms,
                      "case %zu: %llu ms", i, (unsigned long long)res.duration_ms);
        ck_assert_uint_eq(res.reply.code, cases[i].code);
        /* The server is not hung and the engine not stuck: the next probe works (unless the
         * server refuses every MAIL or EHLO). */
        if (!mail_or_ehlo) {
            probe_one(e, 0, "good@example.test", false, &res);
            ck_assert_msg(res.outcome == PROBE_ACCEPTED, "case %zu: next probe %s (%s)", i,
                          outcome_name(res.outcome), res.detail);
        }
        probe_engine_destroy(e);
        if (strstr(cases[i].script, "mail 5") || strstr(cases[i].script, "mail 4")) {
            char *log = smtpd_run_log(&d);
            ck_assert_uint_eq(count_str(log, "cmd=RCPT"), 0);
            free(log);
        }
        smtpd_run_stop(&d);
    }
}
END_TEST

/* The MAIL FROM and EHLO names of the route are what the server sees. */
START_TEST(test_mail_from)
{
    struct smtpd_run d;
    struct probe_result res;

    smtpd_run_start(&d, "rcpt * 250 2.1.5 Ok\n");
    struct probe_route r[2] = {route_for(d.host), route_for(d.host)};
    r[1].mail_from = "postmaster@probe.example.test";
    r[1].helo = "mx-verify.example.test";
    struct probe_engine *e = engine(r, 2, 10);
    probe_one(e, 0, "a@example.test", false, &res);
    ck_assert_outcome(&res, PROBE_ACCEPTED);
    probe_one(e, 1, "b@example.test", false, &res);
    ck_assert_outcome(&res, PROBE_ACCEPTED);
    probe_engine_destroy(e);
    char *log = smtpd_run_log(&d);
    ck_assert_uint_eq(count_str(log, "cmd=MAIL FROM:<>\n"), 1);
    ck_assert_uint_eq(count_str(log, "cmd=MAIL FROM:<postmaster@probe.example.test>\n"), 1);
    ck_assert_uint_eq(count_str(log, "cmd=EHLO probe.test\n"), 1);
    ck_assert_uint_eq(count_str(log, "cmd=EHLO mx-verify.example.test\n"), 1);
    free(log);
    smtpd_run_stop(&d);
}
END_TEST

/* Security: an address that could inject or split a command is refused at submit and never
 * reaches the server. */
START_TEST(test_bad_addresses)
{
    char longaddr[300], maxaddr[300];
    const char *bad[] = {
        "",
        "a@example.test\r\nRSET",
        "a@example.test\nINJECTED",
        "a\r@example.test",
        "a b@example.test",
        "\"a b\"@example.test",
        "<a@example.test>",
        "a@example.test>",
        "a@example.test> NOTIFY=NEVER",
        "a<b@example.test",
        "a\t@example.test",
        "a\x7f@example.test",
        "a\x01@example.test",
        "\xc3\xa9@example.test",
        longaddr,
    };
    struct smtpd_run d;
    struct probe_result res;
    struct probe_stats st;

    memset(longaddr, 'a', 255);
    longaddr[255] = '\0';
    memcpy(longaddr + 241, "@example.test", 13); /* 255 bytes */
    memset(maxaddr, 'a', 254);
    maxaddr[254] = '\0';
    memcpy(maxaddr + 240, "@example.test", 13);  /* 254 bytes: the longest accepted */
    ck_assert_uint_eq(strlen(longaddr), 255);
    ck_assert_uint_eq(strlen(maxaddr), 254);

    smtpd_run_start(&d, "rcpt * 250 2.1.5 Ok\n");
    struct probe_route r = route_for(d.host);
    struct probe_engine *e = engine(&r, 1, 10);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(probe_submit(e, 0, bad[i], i, true) == MXC_EINVAL, "address %zu accepted", i);
    ck_assert_int_eq(probe_submit(e, 0, NULL, 0, false), MXC_EINVAL);
    ck_assert_int_eq(probe_submit(e, 1, "a@example.test", 0, false), MXC_EINVAL);
    ck_assert_int_eq(probe_submit(e, 99, "a@example.test", 0, false), MXC_EINVAL);
    probe_engine_stats(e, &st);
    ck_assert_uint_eq(st.submitted, 0);
    ck_assert(!fd_readable(probe_engine_fd(e), 50));

    probe_one(e, 0, maxaddr, false, &res);
    ck_assert_outcome(&res, PROBE_ACCEPTED);
    probe_engine_destroy(e);
    char *log = smtpd_run_log(&d);
    ck_assert_uint_eq(count_str(log, "cmd=RCPT"), 1);
    ck_assert_ptr_nonnull(strstr(log, maxaddr));
    ck_assert_ptr_null(strstr(log, "INJECTED"));
    ck_assert_ptr_null(strstr(log, "NOTIFY"));
    ck_assert_uint_eq(count_str(log, "cmd=RSET"), 0);
    free(log);
    smtpd_run_stop(&d);
}
END_TEST

/* max_queued unfinished probes: the next submit gets EAGAIN, and room comes back as they end. */
START_TEST(test_max_queued)
{
    struct smtpd_run d;
    struct probe_result res[4];
    struct probe_stats st;

    smtpd_run_start(&d, "rcpt * slow 500 250 2.1.5 Ok\n");
    struct probe_route r = route_for(d.host);
    r.max_sessions = 1; /* one probe ends every 500 ms: the room left is known */
    struct probe_engine *e = engine(&r, 1, 3);
    for (unsigned i = 0; i < 3; i++)
        ck_assert_int_eq(probe_submit(e, 0, "a@example.test", i, false), MXC_OK);
    ck_assert_int_eq(probe_submit(e, 0, "a@example.test", 3, false), MXC_EAGAIN);
    probe_engine_stats(e, &st);
    ck_assert_uint_eq(st.submitted, 3);
    ck_assert_uint_eq(st.inflight, 3);
    ck_assert_uint_eq(collect(e, res, 1, RESULT_TIMEOUT_MS), 1);
    ck_assert_int_eq(probe_submit(e, 0, "a@example.test", 3, false), MXC_OK);
    ck_assert_int_eq(probe_submit(e, 0, "a@example.test", 4, false), MXC_EAGAIN);
    ck_assert_uint_eq(collect(e, res, 3, RESULT_TIMEOUT_MS), 3);
    for (unsigned i = 0; i < 3; i++)
        ck_assert_outcome(&res[i], PROBE_ACCEPTED);
    probe_engine_stats(e, &st);
    ck_assert_uint_eq(st.inflight, 0);
    ck_assert_uint_eq(st.submitted, 4);
    probe_engine_destroy(e);
    smtpd_run_stop(&d);
}
END_TEST

/* is_dialogue_line - every line of a transcript is "C: ..." or "S: ...", complete. */
static void assert_transcript_lines(const char *t)
{
    size_t n = strlen(t);

    ck_assert_uint_lt(n, PROBE_TRANSCRIPT_MAX);
    ck_assert_msg(n == 0 || t[n - 1] == '\n', "transcript does not end with a line end");
    for (const char *p = t; *p;) {
        const char *nl = strchr(p, '\n');
        ck_assert_msg(strncmp(p, "C: ", 3) == 0 || strncmp(p, "S: ", 3) == 0, "line \"%.40s\"", p);
        p = nl + 1;
    }
}

START_TEST(test_transcript)
{
    struct smtpd_run d;
    struct probe_result res;

    smtpd_run_start(&d, "greeting 220 mx.example.test ESMTP\n"
                    "rcpt * 550 5.1.1 Recipient address rejected: User unknown\n");
    struct probe_route r = route_for(d.host);
    r.session_idle_ms = 5000; /* the second probe must find the session still open */
    struct probe_engine *e = engine(&r, 1, 10);
    probe_one(e, 0, "x@example.test", true, &res);
    ck_assert_outcome(&res, PROBE_REJECTED);
    assert_transcript_lines(res.transcript);
    const char *want[] = {
        "S: 220 mx.example.test ESMTP\n",
        "C: EHLO probe.test\n",
        "S: 250 ",
        "C: MAIL FROM:<>\n",
        "S: 250",
        "C: RCPT TO:<x@example.test>\n",
        "S: 550 5.1.1 Recipient address rejected: User unknown\n",
    };
    const char *p = res.transcript;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const char *q = strstr(p, want[i]);
        ck_assert_msg(q != NULL, "no \"%s\" in order in:\n%s", want[i], res.transcript);
        p = q + strlen(want[i]);
    }
    ck_assert_int_eq(strncmp(res.transcript, "S: 220 mx.example.test ESMTP\n", 29), 0);
    ck_assert_uint_eq(count_str(res.transcript, "\n"), 7);

    /* A reused session's probe: the session's greeting and EHLO, then RSET. */
    probe_one(e, 0, "y@example.test", true, &res);
    ck_assert(res.reused);
    assert_transcript_lines(res.transcript);
    ck_assert_ptr_nonnull(strstr(res.transcript, "C: EHLO probe.test\n"));
    ck_assert_ptr_nonnull(strstr(res.transcript, "C: RSET\nS: 250"));
    ck_assert_ptr_nonnull(strstr(res.transcript, "C: RCPT TO:<y@example.test>\nS: 550 5.1.1"));
    ck_assert_ptr_null(strstr(res.transcript, "x@example.test"));

    /* Not asked for: empty. */
    probe_one(e, 0, "z@example.test", false, &res);
    ck_assert_str_eq(res.transcript, "");
    probe_engine_destroy(e);
    smtpd_run_stop(&d);
}
END_TEST

/* A transcript longer than PROBE_TRANSCRIPT_MAX is cut between two lines: eight hosts that each
 * greet with 554 and a long text. */
START_TEST(test_transcript_cut)
{
    struct smtpd_run d;
    struct probe_result res;
    char script[700], text[501];

    memset(text, 'x', 500);
    text[500] = '\0';
    snprintf(script, sizeof script, "greeting 554 5.3.2 %s\n", text);
    smtpd_run_start(&d, script);
    struct probe_route r = route_for(d.host);
    for (unsigned i = 0; i < PROBE_HOSTS_MAX; i++)
        r.hosts[i] = d.host;
    r.nhosts = PROBE_HOSTS_MAX;
    struct probe_engine *e = engine(&r, 1, 10);
    probe_one(e, 0, "x@example.test", true, &res);
    ck_assert_outcome(&res, PROBE_FAILED);
    assert_transcript_lines(res.transcript);
    size_t line = strlen("S: 554 5.3.2 ") + 500 + 1, lines = count_str(res.transcript, "\n");
    ck_assert_uint_eq(strlen(res.transcript), lines * line);
    ck_assert_uint_ge(lines, 1);
    ck_assert_uint_lt(lines, PROBE_HOSTS_MAX);   /* it was cut... */
    ck_assert_uint_gt((lines + 1) * line, PROBE_TRANSCRIPT_MAX - 1); /* ...only where it had to */
    probe_engine_destroy(e);
    smtpd_run_stop(&d);
}
END_TEST

/* Destroy with probes in flight (and results not taken) returns at once; ASan finds no leak. */
START_TEST(test_destroy_inflight)
{
    struct smtpd_run d;
    struct probe_stats st;
    char addr[64];

    smtpd_run_start(&d, "rcpt fast@example.test 250 2.1.5 Ok\nrcpt * stall\n");
    unsigned fds = count_fds();
    struct probe_route r = route_for(d.host);
    r.max_sessions = 4;
    r.command_ms = 60000;
    struct probe_engine *e = engine(&r, 1, 1000);
    ck_assert_int_eq(probe_submit(e, 0, "fast@example.test", 0, true), MXC_OK);
    ck_assert(fd_readable(probe_engine_fd(e), RESULT_TIMEOUT_MS));
    for (unsigned i = 1; i < 100; i++) {
        snprintf(addr, sizeof addr, "slow%u@example.test", i);
        ck_assert_int_eq(probe_submit(e, 0, addr, i, i % 2 == 0), MXC_OK);
    }
    ck_assert_uint_ge(smtpd_run_wait(&d, "cmd=RCPT TO:<slow", 4, LOG_TIMEOUT_MS), 4);
    probe_engine_stats(e, &st);
    ck_assert_uint_eq(st.inflight, 100);
    ck_assert_uint_eq(st.sessions_open, 4);
    long t0 = test_now_ms();
    probe_engine_destroy(e);
    ck_assert_int_le(test_now_ms() - t0, 500);
    ck_assert_uint_eq(count_fds(), fds);
    smtpd_run_stop(&d);
}
END_TEST

/* Create refuses what it cannot use, with a message; NULL-safe destroy. */
START_TEST(test_create_errors)
{
    static const struct {
        const char *host, *helo, *mail_from;
        unsigned max_sessions;
        uint64_t command_ms;
    } bad[] = {
        {"no-such-host.invalid:25", "probe.test", "", 2, 1000},
        {"[::1", "probe.test", "", 2, 1000},
        {"[::1]x", "probe.test", "", 2, 1000},
        {"127.0.0.1:0", "probe.test", "", 2, 1000},
        {"127.0.0.1:65536", "probe.test", "", 2, 1000},
        {"127.0.0.1:25x", "probe.test", "", 2, 1000},
        {"127.0.0.1:", "probe.test", "", 2, 1000},
        {":25", "probe.test", "", 2, 1000},
        {"::1:25", "probe.test", "", 2, 1000},
        {"", "probe.test", "", 2, 1000},
        {"127.0.0.1:25", "probe test", "", 2, 1000},
        {"127.0.0.1:25", "", "", 2, 1000},
        {"127.0.0.1:25", "probe.test\r\nRSET", "", 2, 1000},
        {"127.0.0.1:25", "probe.test", "a@b>", 2, 1000},
        {"127.0.0.1:25", "probe.test", "a\n@b", 2, 1000},
        {"127.0.0.1:25", "probe.test", "", 0, 1000},
        {"127.0.0.1:25", "probe.test", "", 2, 0},
    };
    char err[256];

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct probe_route r = route_for(bad[i].host);
        r.helo = bad[i].helo;
        r.mail_from = bad[i].mail_from;
        r.max_sessions = bad[i].max_sessions;
        r.command_ms = bad[i].command_ms;
        struct probe_options o = {.routes = &r, .nroutes = 1, .max_queued = 10};
        err[0] = '\0';
        ck_assert_msg(probe_engine_create(&o, err, sizeof err) == NULL, "case %zu created", i);
        ck_assert_msg(err[0] != '\0', "case %zu: no message", i);
    }
    struct probe_route r = route_for("127.0.0.1:25");
    r.nhosts = 0;
    struct probe_options o = {.routes = &r, .nroutes = 1, .max_queued = 10};
    ck_assert_ptr_null(probe_engine_create(&o, err, sizeof err));
    r.nhosts = PROBE_HOSTS_MAX + 1;
    ck_assert_ptr_null(probe_engine_create(&o, err, sizeof err));
    r.nhosts = 1;
    o.max_queued = 0;
    ck_assert_ptr_null(probe_engine_create(&o, err, sizeof err));

    /* Accepted forms: port 25 by default, [v6]:port, a name from /etc/hosts. */
    const char *good[] = {"127.0.0.1", "127.0.0.1:2525", "[::1]:2525", "[::1]", "localhost:2525"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        struct probe_route g = route_for(good[i]);
        struct probe_options go = {.routes = &g, .nroutes = 1, .max_queued = 10};
        struct probe_engine *e = probe_engine_create(&go, err, sizeof err);
        ck_assert_msg(e != NULL, "%s: %s", good[i], err);
        probe_engine_destroy(e);
    }
    probe_engine_destroy(NULL);
}
END_TEST

/* The backend the result names is "host:port", port 25 written out when left out. */
START_TEST(test_backend_name)
{
    struct probe_result res;
    unsigned port;
    int fd = smtpd_run_refusing_port(&port);
    char host[64];

    snprintf(host, sizeof host, "127.0.0.1:%u", port);
    struct probe_route r = route_for(host);
    struct probe_engine *e = engine(&r, 1, 10);
    probe_one(e, 0, "a@example.test", false, &res);
    ck_assert_outcome(&res, PROBE_FAILED);
    ck_assert_str_eq(res.backend, host);
    probe_engine_destroy(e);
    close(fd);

    /* Port 25 left out: only where nothing listens there, so that no real MTA is probed. */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(25), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int c = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(c, 0);
    bool refused = connect(c, (struct sockaddr *)&a, sizeof a) != 0 && errno == ECONNREFUSED;
    close(c);
    if (!refused) {
        fprintf(stderr, "test_backend_name: 127.0.0.1:25 does not refuse; default port not checked\n");
        return;
    }
    r = route_for("127.0.0.1");
    e = engine(&r, 1, 10);
    probe_one(e, 0, "a@example.test", false, &res);
    ck_assert_outcome(&res, PROBE_FAILED);
    ck_assert_str_eq(res.backend, "127.0.0.1:25");
    ck_assert_ptr_nonnull(strstr(res.detail, "127.0.0.1:25: connect: "));
    probe_engine_destroy(e);
}
END_TEST

/* ---- a raw server, for bytes the scripted server does not send ---- */

struct raw {
    int lfd;
    unsigned port;
    const char *const *replies; /* the greeting, then one per command read; NULL ends */
    const char *after;          /* sent 100 ms after the last reply, or NULL */
    pthread_t th;
};

/* raw_line - reads one command line (bounded in time and size); false on EOF or timeout. */
static bool raw_line(int fd)
{
    char c;
    size_t n = 0;

    for (long deadline = test_now_ms() + 3000; test_now_ms() < deadline && n < 1000;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) != 1)
            continue;
        if (read(fd, &c, 1) != 1)
            return false;
        n++;
        if (c == '\n')
            return true;
    }
    return false;
}

static void *raw_main(void *arg)
{
    struct raw *r = arg;
    struct pollfd p = {.fd = r->lfd, .events = POLLIN};
    int fd;

    if (poll(&p, 1, 5000) != 1 || (fd = accept(r->lfd, NULL, NULL)) < 0)
        return NULL;
    for (size_t i = 0; r->replies[i]; i++) {
        if (i > 0 && !raw_line(fd))
            break;
        if (write(fd, r->replies[i], strlen(r->replies[i])) < 0)
            break;
    }
    if (r->after) {
        test_sleep_ms(100);
        if (write(fd, r->after, strlen(r->after)) < 0)
            goto out;
    }
    /* Wait (bounded) for the engine to close, so that the test sees what it did. */
    for (long deadline = test_now_ms() + 3000; test_now_ms() < deadline;) {
        char buf[256];
        struct pollfd q = {.fd = fd, .events = POLLIN};
        if (poll(&q, 1, 100) == 1 && read(fd, buf, sizeof buf) <= 0)
            break;
    }
out:
    close(fd);
    return NULL;
}

static void raw_start(struct raw *r)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;

    r->lfd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(r->lfd, 0);
    ck_assert_int_eq(bind(r->lfd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(r->lfd, 4), 0);
    ck_assert_int_eq(getsockname(r->lfd, (struct sockaddr *)&a, &len), 0);
    r->port = ntohs(a.sin_port);
    ck_assert_int_eq(pthread_create(&r->th, NULL, raw_main, r), 0);
}

static void raw_stop(struct raw *r)
{
    pthread_join(r->th, NULL);
    close(r->lfd);
}

/* Security: bytes after a complete reply mean the dialogue is out of step: FAILED, even though
 * the reply itself said 250. */
START_TEST(test_extra_bytes)
{
    static const char *const replies[] = {"220 raw\r\n", "250 raw\r\n", "250 ok\r\n",
                                          "250 ok\r\n250 and more\r\n", NULL};
    struct raw rs = {.replies = replies};
    struct probe_result res;
    char host[64];

    raw_start(&rs);
    snprintf(host, sizeof host, "127.0.0.1:%u", rs.port);
    struct probe_route r = route_for(host);
    struct probe_engine *e = engine(&r, 1, 10);
    probe_one(e, 0, "a@example.test", false, &res);
    ck_assert_outcome(&res, PROBE_FAILED);
    ck_assert_ptr_nonnull(strstr(res.detail, "RCPT TO: unexpected bytes"));
    probe_engine_destroy(e);
    raw_stop(&rs);
}
END_TEST

/* A reply nobody asked for, sent to an idle session: the session is closed at once, long
 * before its idle time. */
START_TEST(test_unsolicited)
{
    static const char *const replies[] = {"220 raw\r\n", "250 raw\r\n", "250 ok\r\n", "250 ok\r\n", NULL};
    struct raw rs = {.replies = replies, .after = "250 surprise\r\n"};
    struct probe_result res;
    struct probe_stats st;
    char host[64];

    raw_start(&rs);
    snprintf(host, sizeof host, "127.0.0.1:%u", rs.port);
    struct probe_route r = route_for(host);
    r.session_idle_ms = 30000;
    struct probe_engine *e = engine(&r, 1, 10);
    probe_one(e, 0, "a@example.test", false, &res);
    ck_assert_outcome(&res, PROBE_ACCEPTED);
    wait_closed(e, 2000, &st);
    ck_assert_uint_eq(st.sessions_open, 0);
    probe_engine_destroy(e);
    raw_stop(&rs);
}
END_TEST

static Suite *probe_suite(void)
{
    Suite *s = suite_create("probe");
    TCase *tc = tcase_create("engine");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_answers);
    tcase_add_test(tc, test_address_echo);
    tcase_add_test(tc, test_many_probes);
    tcase_add_test(tc, test_idle_reuse);
    tcase_add_test(tc, test_no_reuse);
    tcase_add_test(tc, test_helo_fallback);
    tcase_add_test(tc, test_hello_refused);
    tcase_add_test(tc, test_greeting_stall_failover);
    tcase_add_test(tc, test_refused_failover);
    tcase_add_test(tc, test_failover_queue);
    tcase_add_test(tc, test_probe_failures);
    tcase_add_test(tc, test_mail_from);
    tcase_add_test(tc, test_bad_addresses);
    tcase_add_test(tc, test_max_queued);
    tcase_add_test(tc, test_transcript);
    tcase_add_test(tc, test_transcript_cut);
    tcase_add_test(tc, test_destroy_inflight);
    tcase_add_test(tc, test_create_errors);
    tcase_add_test(tc, test_backend_name);
    tcase_add_test(tc, test_extra_bytes);
    tcase_add_test(tc, test_unsolicited);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(probe_suite());
    int failed;

    /* A dead peer must not kill the test with SIGPIPE (the engine uses MSG_NOSIGNAL; the raw
     * server thread writes plainly). */
    signal(SIGPIPE, SIG_IGN);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
