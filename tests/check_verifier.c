/* check_verifier - the probe coordinator (server/verifier.c) over the real probe engine and a
 * real SMTP server on loopback: mxtest-smtpd (MXTEST_SMTPD), started per test with the script
 * the test needs by smtpd/smtpd_run.c, which reads its port from its port file and kills it by
 * PID at the end (and by PR_SET_PDEATHSIG if the test dies first). Its log, one line per
 * command, is the proof of what reached the backend: one RCPT per address however many asked.
 * The coordinator's limits run on a clock the tests drive (now); only the engine's own timeouts
 * are real. Every wait is bounded. */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mxc_err.h"
#include "smtpd/smtpd_run.h"
#include "verifier.h"
#include "testutil.h"

#define RESULT_TIMEOUT_MS 10000 /* a probe that should finish has this long */
#define LOG_TIMEOUT_MS 3000     /* a log line that should come */
#define QUIET_MS 500            /* how long "nothing more comes" is watched */
#define T0 1000000              /* the tests' clock at the start: any monotonic value */

/* ---- helpers: time ---- */

static long real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* ---- the coordinator ---- */

static struct verifier_route route_for(const char *host)
{
    struct verifier_route r = {
        .probe = {
            .name = "example.test",
            .hosts = {host},
            .nhosts = 1,
            .helo = "probe.test",
            .mail_from = "",
            .connect_ms = 2000,
            .greeting_ms = 2000,
            .command_ms = 2000,
            .max_sessions = 4,
            .session_probes = 100,
            .session_idle_ms = 300,
        },
        .domains = {"example.test"},
        .ndomains = 1,
        .probes_per_second = 0,
    };
    return r;
}

static struct verifier_conf conf_for(const struct verifier_route *r)
{
    struct verifier_conf c = {
        .routes = r,
        .nroutes = 1,
        .max_probes = 100,
        .client_probes_per_minute = 0,
        .circuit_failures = 5,
        .circuit_open_ms = 5000,
        .acceptall_interval_ms = 0,
    };
    return c;
}

static struct verifier *make(const struct verifier_conf *c)
{
    char err[256] = "";
    struct verifier *v = verifier_create(c, err, sizeof err);

    ck_assert_msg(v != NULL, "verifier_create: %s", err);
    return v;
}

static bool fd_readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

static bool is_acceptall_address(const char *a)
{
    return strncmp(a, "mxcache-probe-", 14) == 0;
}

/* collect - takes up to n finished probes within ms, waiting on the verifier's fd; the count.
 * An accept-all probe must never come out. */
static size_t collect(struct verifier *v, struct verifier_done *out, size_t n, long ms, uint64_t now)
{
    long deadline = real_ms() + ms;
    size_t got = 0;

    while (got < n) {
        long left = deadline - real_ms();
        if (verifier_take(v, &out[got], now) == MXC_OK) {
            ck_assert_msg(!is_acceptall_address(out[got].address), "accept-all probe %s came out",
                          out[got].address);
            got++;
            continue;
        }
        if (left <= 0)
            break;
        fd_readable(verifier_fd(v), (int)(left < 100 ? left : 100));
    }
    return got;
}

/* take_one - the next finished probe, which must come within RESULT_TIMEOUT_MS. */
static void take_one(struct verifier *v, struct verifier_done *d, uint64_t now)
{
    ck_assert_msg(collect(v, d, 1, RESULT_TIMEOUT_MS, now) == 1, "no probe finished");
}

/* assert_quiet - nothing finishes within ms. */
static void assert_quiet(struct verifier *v, long ms, uint64_t now)
{
    struct verifier_done d;
    size_t n = collect(v, &d, 1, ms, now);

    if (n > 0) {
        ck_assert_msg(0, "unexpected result for %s", d.address);
        verifier_done_fini(&d);
    }
}

/* wait_accept_all - takes results (none may come out) until domain's state is want. */
static void wait_accept_all(struct verifier *v, const char *domain, bool want, uint64_t now)
{
    long deadline = real_ms() + RESULT_TIMEOUT_MS;
    struct verifier_done d;

    while (verifier_is_accept_all(v, domain) != want) {
        ck_assert_msg(real_ms() < deadline, "%s: accept-all never became %d", domain, want);
        ck_assert_msg(verifier_take(v, &d, now) == MXC_EAGAIN, "a result came out: %s", d.address);
        fd_readable(verifier_fd(v), 100);
    }
}

static const char *ask_name(enum verifier_ask a)
{
    static const char *const names[] = {"JOINED", "STARTED", "CLIENT_LIMIT", "ROUTE_LIMIT",
                                        "CIRCUIT_OPEN", "BUSY", "ACCEPT_ALL", "INVALID"};
    return (unsigned)a < sizeof names / sizeof names[0] ? names[a] : "?";
}

#define ck_assert_ask(expr, want)                                                                  \
    do {                                                                                           \
        enum verifier_ask got_ = (expr);                                                           \
        ck_assert_msg(got_ == (want), "%s: %s, want %s", #expr, ask_name(got_), ask_name(want));   \
    } while (0)

/* ask - a question from client about address in example.test (route 0). */
static enum verifier_ask ask(struct verifier *v, const char *address, const char *client, uint64_t waiter,
                             uint64_t now)
{
    return verifier_ask(v, 0, NULL, address, client, waiter, now);
}

/* ---- tests ---- */

#define N_JOIN 20

/* N questions about one unknown address from several clients, all asked before the backend
 * answers: one probe, one RCPT at the backend, and one result carrying all N waiters. */
START_TEST(test_join)
{
    struct smtpd_run d;
    struct verifier_done done;
    struct verifier_stats st;
    bool seen[N_JOIN + 1] = {false};
    char client[32];

    smtpd_run_start(&d, "rcpt * slow 300 550 5.1.1 <ADDR>: Recipient address rejected: User unknown\n");
    struct verifier_route r = route_for(d.host);
    struct verifier_conf c = conf_for(&r);
    c.client_probes_per_minute = 2; /* a join costs no token: every client may join */
    struct verifier *v = make(&c);

    for (unsigned i = 1; i <= N_JOIN; i++) {
        snprintf(client, sizeof client, "192.0.2.%u/32", i % 5);
        ck_assert_ask(ask(v, "nobody@example.test", client, i, T0), i == 1 ? VERIFIER_STARTED : VERIFIER_JOINED);
    }
    /* All asked before the answer: nothing has finished yet. */
    ck_assert_int_eq(verifier_take(v, &done, T0), MXC_EAGAIN);
    verifier_done_fini(&done);
    verifier_stats(v, &st);
    ck_assert_uint_eq(st.running, 1);

    take_one(v, &done, T0);
    ck_assert_str_eq(done.address, "nobody@example.test");
    ck_assert_uint_eq(done.route, 0);
    ck_assert(!done.background);
    ck_assert_int_eq(done.result.outcome, PROBE_REJECTED);
    ck_assert_uint_eq(done.result.reply.code, 550);
    ck_assert_str_eq(done.result.reply.status, "5.1.1");
    ck_assert_str_eq(done.result.transcript, "");
    ck_assert_uint_eq(done.nwaiters, N_JOIN);
    for (size_t i = 0; i < done.nwaiters; i++) {
        ck_assert_uint_ge(done.waiters[i], 1);
        ck_assert_uint_le(done.waiters[i], N_JOIN);
        ck_assert_msg(!seen[done.waiters[i]], "waiter %llu twice", (unsigned long long)done.waiters[i]);
        seen[done.waiters[i]] = true;
    }
    verifier_done_fini(&done);
    assert_quiet(v, QUIET_MS, T0);
    ck_assert_uint_eq(smtpd_run_count(&d, "cmd=RCPT TO:<nobody@example.test>"), 1);

    verifier_stats(v, &st);
    ck_assert_uint_eq(st.asked, N_JOIN);
    ck_assert_uint_eq(st.started, 1);
    ck_assert_uint_eq(st.joined, N_JOIN - 1);
    ck_assert_uint_eq(st.running, 0);
    ck_assert_uint_eq(st.refused_client, 0);

    /* Finished: the next question is a new probe. */
    ck_assert_ask(ask(v, "nobody@example.test", "192.0.2.9/32", 99, T0), VERIFIER_STARTED);
    take_one(v, &done, T0);
    ck_assert_uint_eq(done.nwaiters, 1);
    ck_assert_uint_eq(done.waiters[0], 99);
    verifier_done_fini(&done);
    ck_assert_uint_eq(smtpd_run_wait(&d, "cmd=RCPT TO:<nobody@example.test>", 2, LOG_TIMEOUT_MS), 2);
    verifier_destroy(v);
    smtpd_run_stop(&d);
}
END_TEST

/* A client may start client_probes_per_minute probes a minute (a token bucket): the next is
 * refused without a probe, another client is not affected, and time gives tokens back. */
START_TEST(test_client_limit)
{
    struct smtpd_run d;
    struct verifier_stats st;
    struct verifier_done done[16];
    const char *a = "192.0.2.0/24", *b = "198.51.100.0/24";

    smtpd_run_start(&d, "rcpt * slow 300 550 5.1.1 unknown\n");
    struct verifier_route r = route_for(d.host);
    struct verifier_conf c = conf_for(&r);
    c.client_probes_per_minute = 3;
    struct verifier *v = make(&c);

    ck_assert_ask(ask(v, "a1@example.test", a, 1, T0), VERIFIER_STARTED);
    ck_assert_ask(ask(v, "a2@example.test", a, 2, T0), VERIFIER_STARTED);
    ck_assert_ask(ask(v, "a3@example.test", a, 3, T0), VERIFIER_STARTED);
    ck_assert_ask(ask(v, "a4@example.test", a, 4, T0), VERIFIER_CLIENT_LIMIT);
    ck_assert_ask(ask(v, "a4@example.test", a, 4, T0 + 1000), VERIFIER_CLIENT_LIMIT);
    /* Joining a running probe costs nothing, even for a client at its limit. */
    ck_assert_ask(ask(v, "a1@example.test", a, 5, T0 + 1000), VERIFIER_JOINED);
    ck_assert_ask(ask(v, "b1@example.test", b, 6, T0 + 1000), VERIFIER_STARTED);
    verifier_stats(v, &st);
    ck_assert_uint_eq(st.clients, 2);
    /* 3 a minute: one token every 20 s. */
    ck_assert_ask(ask(v, "a4@example.test", a, 7, T0 + 20000), VERIFIER_STARTED);
    ck_assert_ask(ask(v, "a5@example.test", a, 8, T0 + 20000), VERIFIER_CLIENT_LIMIT);
    /* A minute after: a full bucket again, and no more. */
    ck_assert_ask(ask(v, "a5@example.test", a, 9, T0 + 80000), VERIFIER_STARTED);
    ck_assert_ask(ask(v, "a6@example.test", a, 10, T0 + 80000), VERIFIER_STARTED);
    ck_assert_ask(ask(v, "a7@example.test", a, 11, T0 + 80000), VERIFIER_STARTED);
    ck_assert_ask(ask(v, "a8@example.test", a, 12, T0 + 80000), VERIFIER_CLIENT_LIMIT);

    verifier_stats(v, &st);
    ck_assert_uint_eq(st.started, 8);
    ck_assert_uint_eq(st.refused_client, 4);
    ck_assert_uint_eq(st.joined, 1);
    ck_assert_uint_eq(st.clients, 1); /* b's, idle for a minute, was swept by a question */
    ck_assert_uint_eq(collect(v, done, 8, RESULT_TIMEOUT_MS, T0 + 80000), 8);
    for (size_t i = 0; i < 8; i++)
        verifier_done_fini(&done[i]);
    /* Refused questions never reached the backend. */
    ck_assert_uint_eq(smtpd_run_count(&d, "cmd=RCPT TO:<a8@"), 0);
    ck_assert_uint_eq(smtpd_run_count(&d, "cmd=RCPT TO:<"), 8);

    /* Idle buckets are dropped: a minute later, a tick sweeps them. */
    verifier_tick(v, T0 + 200000);
    verifier_stats(v, &st);
    ck_assert_uint_eq(st.clients, 0);
    ck_assert_int_eq(verifier_next_ms(v, T0 + 200000), -1);
    verifier_destroy(v);
    smtpd_run_stop(&d);
}
END_TEST

/* The client table is bounded: when it is full, a new client is refused conservatively (no
 * probe), a known one is not; idle buckets are swept and the table serves again. */
START_TEST(test_client_table_full)
{
    struct smtpd_run d;
    struct verifier_stats st;
    struct verifier_done done;
    char client[32];

    smtpd_run_start(&d, "rcpt * 550 5.1.1 unknown\n");
    struct verifier_route r = route_for(d.host);
    r.probes_per_second = 1; /* after the first probe, questions make buckets, not probes */
    struct verifier_conf c = conf_for(&r);
    c.client_probes_per_minute = 10;
    struct verifier *v = make(&c);

    ck_assert_ask(ask(v, "first@example.test", "c-first", 1, T0), VERIFIER_STARTED);
    for (unsigned i = 1; i < VERIFIER_CLIENTS_MAX; i++) {
        snprintf(client, sizeof client, "c%u", i);
        enum verifier_ask got = ask(v, "x@example.test", client, 2, T0);
        if (got != VERIFIER_ROUTE_LIMIT)
            ck_assert_ask(got, VERIFIER_ROUTE_LIMIT);
    }
    verifier_stats(v, &st);
    ck_assert_uint_eq(st.clients, VERIFIER_CLIENTS_MAX);
    ck_assert_ask(ask(v, "x@example.test", "c-new", 3, T0 + 1000), VERIFIER_CLIENT_LIMIT);
    ck_assert_ask(ask(v, "x@example.test", "c7", 4, T0 + 1000), VERIFIER_STARTED);
    take_one(v, &done, T0 + 1000);
    verifier_done_fini(&done);
    take_one(v, &done, T0 + 1000);
    verifier_done_fini(&done);

    /* A minute idle: ticks (as verifier_next_ms asks for them) empty the table. */
    uint64_t now = T0 + 1000 + 60000;
    long next = verifier_next_ms(v, now);
    ck_assert_int_ge(next, 0);
    ck_assert_int_le(next, 1000);
    for (unsigned i = 0; i < 1000 && verifier_next_ms(v, now) >= 0; i++) {
        now += (uint64_t)verifier_next_ms(v, now);
        verifier_tick(v, now);
    }
    verifier_stats(v, &st);
    ck_assert_uint_eq(st.clients, 0);
    ck_assert_ask(ask(v, "y@example.test", "c-new", 5, now), VERIFIER_STARTED);
    take_one(v, &done, now);
    verifier_done_fini(&done);
    verifier_destroy(v);
    smtpd_run_stop(&d);
}
END_TEST

/* probes_per_second per route: beyond, ROUTE_LIMIT; a join still works; time refills. */
START_TEST(test_route_limit)
{
    struct smtpd_run d;
    struct verifier_stats st;
    struct verifier_done done[16];
    char addr[64];
    size_t started = 0;

    smtpd_run_start(&d, "rcpt * slow 300 550 5.1.1 unknown\n");
    struct verifier_route r = route_for(d.host);
    r.probes_per_second = 5;
    struct verifier *v = make(&(struct verifier_conf){.routes = &r, .nroutes = 1, .max_probes = 100,
                                                      .client_probes_per_minute = 7, .circuit_failures = 5,
                                                      .circuit_open_ms = 5000});

    for (unsigned i = 0; i < 5; i++) {
        snprintf(addr, sizeof addr, "r%u@example.test", i);
        ck_assert_ask(ask(v, addr, "c1", i, T0), VERIFIER_STARTED);
        started++;
    }
    ck_assert_ask(ask(v, "r5@example.test", "c2", 5, T0), VERIFIER_ROUTE_LIMIT);
    ck_assert_ask(ask(v, "r0@example.test", "c2", 6, T0), VERIFIER_JOINED);
    ck_assert(!verifier_refresh(v, 0, NULL, "r6@example.test", T0));
    /* 5 a second: one token every 200 ms. */
    ck_assert_ask(ask(v, "r5@example.test", "c2", 7, T0 + 199), VERIFIER_ROUTE_LIMIT);
    ck_assert_ask(ask(v, "r5@example.test", "c2", 8, T0 + 200), VERIFIER_STARTED);
    started++;
    ck_assert_ask(ask(v, "r6@example.test", "c2", 9, T0 + 200), VERIFIER_ROUTE_LIMIT);
    /* A refusal uses up nothing: c2 was refused 3 times and may still start 5 more of its 7. */
    for (unsigned i = 0; i < 5; i++) {
        snprintf(addr, sizeof addr, "s%u@example.test", i);
        ck_assert_ask(ask(v, addr, "c2", 10 + i, T0 + 1200), VERIFIER_STARTED);
        started++;
    }
    ck_assert_ask(ask(v, "s5@example.test", "c2", 20, T0 + 1200), VERIFIER_ROUTE_LIMIT);
    verifier_stats(v, &st);
    ck_assert_uint_eq(st.started, started);
    ck_assert_uint_eq(st.refused_route, 4);
    ck_assert_uint_eq(st.refused_client, 0);
    ck_assert_uint_eq(collect(v, done, started, RESULT_TIMEOUT_MS, T0 + 1200), started);
    for (size_t i = 0; i < started; i++)
        verifier_done_fini(&done[i]);
    ck_assert_uint_eq(smtpd_run_count(&d, "cmd=RCPT TO:<"), started);
    verifier_destroy(v);
    smtpd_run_stop(&d);
}
END_TEST

/* max_probes unfinished: BUSY for every kind of new probe; a join still works; a probe taken
 * frees its place. */
START_TEST(test_busy)
{
    struct smtpd_run d;
    struct verifier_stats st;
    struct verifier_done done[4];

    smtpd_run_start(&d, "rcpt * slow 500 550 5.1.1 unknown\n");
    struct verifier_route r = route_for(d.host);
    struct verifier_conf c = conf_for(&r);
    c.max_probes = 3;
    struct verifier *v = make(&c);

    ck_assert_ask(ask(v, "b1@example.test", "c", 1, T0), VERIFIER_STARTED);
    ck_assert_ask(ask(v, "b2@example.test", "c", 2, T0), VERIFIER_STARTED);
    ck_assert_ask(ask(v, "b3@example.test", "c", 3, T0), VERIFIER_STARTED);
    ck_assert_ask(ask(v, "b4@example.test", "c", 4, T0), VERIFIER_BUSY);
    ck_assert_ask(ask(v, "b2@example.test", "c", 5, T0), VERIFIER_JOINED);
    ck_assert_ask(verifier_probe_now(v, 0, "b5@example.test", 6, T0), VERIFIER_BUSY);
    ck_assert(!verifier_refresh(v, 0, NULL, "b6@example.test", T0));
    ck_assert(!verifier_check_accept_all(v, 0, "example.test", T0));
    verifier_stats(v, &st);
    ck_assert_uint_eq(st.running, 3);
    ck_assert_uint_eq(st.refused_busy, 1);
    ck_assert_uint_eq(st.acceptall_probes, 0);

    /* A finished probe counts until it is taken (its result holds a slot), though the engine
     * has forgotten it. */
    for (long deadline = real_ms() + RESULT_TIMEOUT_MS; st.probe.rejected < 3 && real_ms() < deadline;) {
        test_sleep_ms(10);
        verifier_stats(v, &st);
    }
    ck_assert_uint_eq(st.probe.rejected, 3);
    ck_assert_ask(ask(v, "b4@example.test", "c", 4, T0), VERIFIER_BUSY);
    take_one(v, &done[0], T0);
    ck_assert_ask(ask(v, "b4@example.test", "c", 7, T0), VERIFIER_STARTED);
    ck_assert_ask(ask(v, "b7@example.test", "c", 8, T0), VERIFIER_BUSY);
    ck_assert_uint_eq(collect(v, &done[1], 3, RESULT_TIMEOUT_MS, T0), 3);
    size_t waiters = 0;
    for (size_t i = 0; i < 4; i++) {
        waiters += done[i].nwaiters;
        verifier_done_fini(&done[i]);
    }
    ck_assert_uint_eq(waiters, 5);
    ck_assert_uint_eq(smtpd_run_count(&d, "cmd=RCPT TO:<b5@"), 0);
    ck_assert_uint_eq(smtpd_run_count(&d, "cmd=RCPT TO:<"), 4);
    verifier_destroy(v);
    smtpd_run_stop(&d);
}
END_TEST

/* The circuit breaker: circuit_failures consecutive failures (a greeting that never comes)
 * open it; while open every new probe is refused at once; after circuit_open_ms exactly one
 * trial goes through; a failed trial keeps it open for another period; an answer closes it. */
START_TEST(test_circuit)
{
    struct smtpd_run d;
    struct verifier_stats st;
    struct verifier_done done;
    uint64_t now = T0;

    smtpd_run_start(&d, "greeting stall\n");
    struct verifier_route r = route_for(d.host);
    r.probe.greeting_ms = 200;
    struct verifier_conf c = conf_for(&r);
    c.circuit_failures = 3;
    c.circuit_open_ms = 5000;
    struct verifier *v = make(&c);

    ck_assert_ask(ask(v, "f1@example.test", "c", 1, now), VERIFIER_STARTED);
    ck_assert_ask(ask(v, "f2@example.test", "c", 2, now), VERIFIER_STARTED);
    ck_assert_ask(ask(v, "f3@example.test", "c", 3, now), VERIFIER_STARTED);
    for (unsigned i = 1; i <= 3; i++) {
        take_one(v, &done, now);
        ck_assert_int_eq(done.result.outcome, PROBE_FAILED);
        ck_assert_uint_eq(done.nwaiters, 1);
        verifier_done_fini(&done);
        verifier_stats(v, &st);
        ck_assert_uint_eq(st.circuits_open, i == 3 ? 1 : 0);
    }

    /* Open: refused at once, every kind, and nothing reaches the backend. */
    unsigned conns = smtpd_run_count(&d, " open peer=");
    ck_assert_ask(ask(v, "f4@example.test", "c", 4, now), VERIFIER_CIRCUIT_OPEN);
    ck_assert_ask(verifier_probe_now(v, 0, "f4@example.test", 5, now), VERIFIER_CIRCUIT_OPEN);
    ck_assert(!verifier_refresh(v, 0, NULL, "f4@example.test", now));
    ck_assert(!verifier_check_accept_all(v, 0, "example.test", now));
    ck_assert_ask(ask(v, "f4@example.test", "c", 6, now + 4999), VERIFIER_CIRCUIT_OPEN);
    verifier_stats(v, &st);
    ck_assert_uint_eq(st.refused_circuit, 2);
    ck_assert_uint_eq(st.running, 0);

    /* Half-open: one trial, the others still refused while it runs. */
    now += 5000;
    ck_assert_ask(ask(v, "t1@example.test", "c", 7, now), VERIFIER_STARTED);
    ck_assert_ask(ask(v, "t2@example.test", "c", 8, now), VERIFIER_CIRCUIT_OPEN);
    ck_assert_ask(verifier_probe_now(v, 0, "t2@example.test", 9, now), VERIFIER_CIRCUIT_OPEN);
    ck_assert_ask(ask(v, "t1@example.test", "c", 10, now), VERIFIER_JOINED);
    take_one(v, &done, now);
    ck_assert_str_eq(done.address, "t1@example.test");
    ck_assert_int_eq(done.result.outcome, PROBE_FAILED);
    ck_assert_uint_eq(done.nwaiters, 2);
    verifier_done_fini(&done);
    ck_assert_uint_eq(smtpd_run_count(&d, " open peer="), conns + 1);

    /* The trial failed: open for another circuit_open_ms from then. */
    ck_assert_ask(ask(v, "t3@example.test", "c", 11, now), VERIFIER_CIRCUIT_OPEN);
    ck_assert_ask(ask(v, "t3@example.test", "c", 12, now + 4999), VERIFIER_CIRCUIT_OPEN);

    /* The backend works again: the next trial's answer (a 5xx is an answer) closes it. */
    smtpd_run_reload(&d, "rcpt * 550 5.1.1 unknown\n");
    now += 5000;
    ck_assert_ask(ask(v, "t3@example.test", "c", 13, now), VERIFIER_STARTED);
    ck_assert_ask(ask(v, "t4@example.test", "c", 14, now), VERIFIER_CIRCUIT_OPEN);
    take_one(v, &done, now);
    ck_assert_int_eq(done.result.outcome, PROBE_REJECTED);
    verifier_done_fini(&done);
    verifier_stats(v, &st);
    ck_assert_uint_eq(st.circuits_open, 0);
    ck_assert_ask(ask(v, "t4@example.test", "c", 15, now), VERIFIER_STARTED);
    ck_assert_ask(ask(v, "t5@example.test", "c", 16, now), VERIFIER_STARTED);
    take_one(v, &done, now);
    verifier_done_fini(&done);
    take_one(v, &done, now);
    verifier_done_fini(&done);
    verifier_destroy(v);
    smtpd_run_stop(&d);
}
END_TEST

/* A closed port (connection refused) counts as a failure too. */
START_TEST(test_circuit_refused)
{
    struct verifier_stats st;
    struct verifier_done done;
    char host[64];
    unsigned port;
    int fd = smtpd_run_refusing_port(&port);

    snprintf(host, sizeof host, "127.0.0.1:%u", port);
    struct verifier_route r = route_for(host);
    struct verifier_conf c = conf_for(&r);
    c.circuit_failures = 2;
    struct verifier *v = make(&c);

    ck_assert_ask(ask(v, "f1@example.test", "c", 1, T0), VERIFIER_STARTED);
    take_one(v, &done, T0);
    ck_assert_int_eq(done.result.outcome, PROBE_FAILED);
    verifier_done_fini(&done);
    ck_assert_ask(ask(v, "f2@example.test", "c", 2, T0), VERIFIER_STARTED);
    take_one(v, &done, T0);
    ck_assert_int_eq(done.result.outcome, PROBE_FAILED);
    verifier_done_fini(&done);
    ck_assert_ask(ask(v, "f3@example.test", "c", 3, T0), VERIFIER_CIRCUIT_OPEN);
    verifier_stats(v, &st);
    ck_assert_uint_eq(st.circuits_open, 1);
    verifier_destroy(v);
    close(fd);
}
END_TEST

/* Only consecutive failures count: a 4xx to RCPT is an answer and starts the count again. */
START_TEST(test_circuit_reset)
{
    struct smtpd_run d;
    struct verifier_stats st;
    struct verifier_done done;
    static const struct {
        const char *addr;
        enum probe_outcome outcome;
        unsigned open;
    } steps[] = {
        {"drop1@example.test", PROBE_FAILED, 0},
        {"temp@example.test", PROBE_TEMPFAIL, 0},
        {"drop2@example.test", PROBE_FAILED, 0},
        {"drop3@example.test", PROBE_FAILED, 1},
    };

    smtpd_run_start(&d, "rcpt temp@example.test 450 4.2.0 try again later\nrcpt * drop\n");
    struct verifier_route r = route_for(d.host);
    struct verifier_conf c = conf_for(&r);
    c.circuit_failures = 2;
    struct verifier *v = make(&c);

    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        ck_assert_ask(ask(v, steps[i].addr, "c", i, T0), VERIFIER_STARTED);
        take_one(v, &done, T0);
        ck_assert_str_eq(done.address, steps[i].addr);
        ck_assert_int_eq(done.result.outcome, steps[i].outcome);
        verifier_done_fini(&done);
        verifier_stats(v, &st);
        ck_assert_msg(st.circuits_open == steps[i].open, "step %zu: circuits_open %u", i, st.circuits_open);
    }
    verifier_destroy(v);
    smtpd_run_stop(&d);
}
END_TEST

/* Accept-all: a backend that accepts an address that cannot exist marks the domain; its
 * questions are refused ACCEPT_ALL; a later rejection unmarks it. The probes are internal. */
START_TEST(test_accept_all)
{
    struct smtpd_run d;
    struct verifier_stats st;
    struct verifier_done done;
    uint64_t now = T0;

    smtpd_run_start(&d, "rcpt * 250 2.1.5 Ok\n");
    struct verifier_route r = route_for(d.host);
    r.domains[1] = "Other.Test";
    r.ndomains = 2;
    struct verifier_conf c = conf_for(&r);
    c.acceptall_interval_ms = 10000;
    struct verifier *v = make(&c);

    /* The schedule starts at the first tick, spread over one interval. */
    ck_assert_int_eq(verifier_next_ms(v, now), 0);
    verifier_tick(v, now);
    ck_assert_int_eq(verifier_next_ms(v, now), 5000);
    verifier_stats(v, &st);
    ck_assert_uint_eq(st.acceptall_probes, 0);
    now += 5000;
    verifier_tick(v, now);
    verifier_stats(v, &st);
    ck_assert_uint_eq(st.acceptall_probes, 1);
    ck_assert_int_eq(verifier_next_ms(v, now), 5000); /* other.test, at one interval */
    wait_accept_all(v, "example.test", true, now);
    ck_assert(verifier_is_accept_all(v, "EXAMPLE.test"));
    ck_assert(!verifier_is_accept_all(v, "other.test"));
    ck_assert(!verifier_is_accept_all(v, "unknown.test"));

    /* The probe was a random local part that cannot exist. */
    char *log = smtpd_run_log(&d), hex[17] = "";
    const char *p = strstr(log, "cmd=RCPT TO:<mxcache-probe-");
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(sscanf(p, "cmd=RCPT TO:<mxcache-probe-%16[0-9a-f]@example.test>", hex), 1);
    ck_assert_uint_eq(strlen(hex), 16);
    free(log);

    ck_assert_ask(ask(v, "someone@example.test", "c", 1, now), VERIFIER_ACCEPT_ALL);
    ck_assert_ask(verifier_ask(v, 0, "Example.TEST", "Someone@Example.TEST", "c", 2, now), VERIFIER_ACCEPT_ALL);
    ck_assert(!verifier_refresh(v, 0, NULL, "someone@example.test", now));
    verifier_stats(v, &st);
    ck_assert_uint_eq(st.domains_accept_all, 1);
    ck_assert_uint_eq(st.refused_accept_all, 2);
    /* Another domain of the route is not affected, and its results do come out. */
    ck_assert_ask(ask(v, "someone@other.test", "c", 3, now), VERIFIER_STARTED);
    take_one(v, &done, now);
    ck_assert_str_eq(done.address, "someone@other.test");
    ck_assert_int_eq(done.result.outcome, PROBE_ACCEPTED);
    verifier_done_fini(&done);

    /* other.test's turn: accepted too. */
    now += 5000;
    verifier_tick(v, now);
    wait_accept_all(v, "other.test", true, now);
    verifier_stats(v, &st);
    ck_assert_uint_eq(st.acceptall_probes, 2);
    ck_assert_uint_eq(st.domains_accept_all, 2);

    /* The backend rejects unknown addresses again: on demand, example.test is cleared. */
    smtpd_run_reload(&d, "rcpt * 550 5.1.1 unknown\n");
    ck_assert(verifier_check_accept_all(v, 0, "example.test", now));
    ck_assert(verifier_check_accept_all(v, 0, "example.test", now)); /* runs already: no second */
    ck_assert(!verifier_check_accept_all(v, 0, "nowhere.test", now));
    wait_accept_all(v, "example.test", false, now);
    verifier_stats(v, &st);
    ck_assert_uint_eq(st.acceptall_probes, 3);
    ck_assert_uint_eq(st.domains_accept_all, 1);
    ck_assert(verifier_is_accept_all(v, "other.test"));
    ck_assert_ask(ask(v, "someone@example.test", "c", 4, now), VERIFIER_STARTED);
    take_one(v, &done, now);
    ck_assert_int_eq(done.result.outcome, PROBE_REJECTED);
    verifier_done_fini(&done);
    assert_quiet(v, QUIET_MS, now);
    ck_assert_uint_eq(smtpd_run_count(&d, "cmd=RCPT TO:<mxcache-probe-"), 3);
    verifier_stats(v, &st);
    ck_assert_uint_eq(st.running, 0);
    verifier_destroy(v);
    smtpd_run_stop(&d);
}
END_TEST

/* The schedule: one domain after another over the interval, each again one interval later;
 * a wildcard domain is never probed; interval 0 means on demand only. */
START_TEST(test_acceptall_schedule)
{
    struct smtpd_run d;
    struct verifier_stats st;
    uint64_t now = T0;

    smtpd_run_start(&d, "rcpt * 550 5.1.1 unknown\n");
    struct verifier_route r = route_for(d.host);
    r.domains[1] = "b.test";
    r.domains[2] = ".sub.test";
    r.domains[3] = "c.test";
    r.domains[4] = "d.test";
    r.ndomains = 5;
    struct verifier_conf c = conf_for(&r);
    c.acceptall_interval_ms = 4000;
    struct verifier *v = make(&c);

    verifier_tick(v, now);
    for (unsigned i = 1; i <= 8; i++) {
        ck_assert_int_eq(verifier_next_ms(v, now), 1000);
        now += 1000;
        verifier_tick(v, now);
        verifier_stats(v, &st);
        ck_assert_uint_eq(st.acceptall_probes, i);
        ck_assert_uint_eq(smtpd_run_wait(&d, "cmd=RCPT TO:<mxcache-probe-", i, LOG_TIMEOUT_MS), i);
        /* let the result in, so that the next probe is not "one runs already" */
        for (long deadline = real_ms() + RESULT_TIMEOUT_MS; st.running > 0 && real_ms() < deadline;) {
            struct verifier_done done;
            ck_assert_int_eq(verifier_take(v, &done, now), MXC_EAGAIN);
            fd_readable(verifier_fd(v), 50);
            verifier_stats(v, &st);
        }
        ck_assert_uint_eq(st.running, 0);
    }
    ck_assert_uint_eq(smtpd_run_count(&d, "sub.test"), 0);
    ck_assert_uint_eq(smtpd_run_count(&d, "@d.test>"), 2);
    verifier_destroy(v);

    c.acceptall_interval_ms = 0;
    v = make(&c);
    ck_assert_int_eq(verifier_next_ms(v, now), -1);
    verifier_tick(v, now + 1000000);
    verifier_stats(v, &st);
    ck_assert_uint_eq(st.acceptall_probes, 0);
    ck_assert(!verifier_check_accept_all(v, 0, ".sub.test", now));
    verifier_destroy(v);
    smtpd_run_stop(&d);
}
END_TEST

/* verifier_refresh starts no second probe for an address that runs; a refresh's probe is
 * joined by a later question and comes out marked background. */
START_TEST(test_refresh)
{
    struct smtpd_run d;
    struct verifier_done done[2];

    smtpd_run_start(&d, "rcpt * slow 300 250 2.1.5 Ok\n");
    struct verifier_route r = route_for(d.host);
    struct verifier_conf c = conf_for(&r);
    struct verifier *v = make(&c);

    ck_assert_ask(ask(v, "a@example.test", "c", 1, T0), VERIFIER_STARTED);
    ck_assert(!verifier_refresh(v, 0, NULL, "a@example.test", T0));
    ck_assert(verifier_refresh(v, 0, "example.test", "b@example.test", T0));
    ck_assert(!verifier_refresh(v, 0, NULL, "b@example.test", T0));
    ck_assert_ask(ask(v, "b@example.test", "c", 2, T0), VERIFIER_JOINED);
    ck_assert_uint_eq(collect(v, done, 2, RESULT_TIMEOUT_MS, T0), 2);
    for (size_t i = 0; i < 2; i++) {
        bool is_a = strcmp(done[i].address, "a@example.test") == 0;
        ck_assert(is_a || strcmp(done[i].address, "b@example.test") == 0);
        ck_assert(done[i].background == !is_a);
        ck_assert_int_eq(done[i].result.outcome, PROBE_ACCEPTED);
        ck_assert_uint_eq(done[i].nwaiters, 1);
        ck_assert_uint_eq(done[i].waiters[0], is_a ? 1 : 2);
        verifier_done_fini(&done[i]);
    }
    assert_quiet(v, QUIET_MS, T0);
    ck_assert_uint_eq(smtpd_run_count(&d, "cmd=RCPT TO:<a@example.test>"), 1);
    ck_assert_uint_eq(smtpd_run_count(&d, "cmd=RCPT TO:<b@example.test>"), 1);

    /* A refresh with nobody waiting still comes out, with no waiters. */
    ck_assert(verifier_refresh(v, 0, NULL, "c@example.test", T0));
    ck_assert_uint_eq(collect(v, done, 1, RESULT_TIMEOUT_MS, T0), 1);
    ck_assert(done[0].background);
    ck_assert_uint_eq(done[0].nwaiters, 0);
    verifier_done_fini(&done[0]);
    verifier_destroy(v);
    smtpd_run_stop(&d);
}
END_TEST

/* An operator's probe is its own probe (not joined, none joins it) and carries the dialogue;
 * the client limit does not apply to it. */
START_TEST(test_probe_now)
{
    struct smtpd_run d;
    struct verifier_done done[3];

    smtpd_run_start(&d, "rcpt * slow 300 550 5.1.1 <ADDR>: Recipient address rejected\n");
    struct verifier_route r = route_for(d.host);
    struct verifier_conf c = conf_for(&r);
    c.client_probes_per_minute = 1;
    struct verifier *v = make(&c);

    ck_assert_ask(ask(v, "x@example.test", "c", 1, T0), VERIFIER_STARTED);
    ck_assert_ask(verifier_probe_now(v, 0, "x@example.test", 2, T0), VERIFIER_STARTED);
    ck_assert_ask(verifier_probe_now(v, 0, "y@example.test", 3, T0), VERIFIER_STARTED);
    ck_assert_ask(ask(v, "x@example.test", "c", 4, T0), VERIFIER_JOINED); /* the question's */
    ck_assert_uint_eq(collect(v, done, 3, RESULT_TIMEOUT_MS, T0), 3);
    for (size_t i = 0; i < 3; i++) {
        uint64_t w = done[i].waiters[0];
        ck_assert_int_eq(done[i].result.outcome, PROBE_REJECTED);
        ck_assert(!done[i].background);
        if (w == 1) {
            ck_assert_uint_eq(done[i].nwaiters, 2);
            ck_assert_str_eq(done[i].result.transcript, "");
        } else {
            ck_assert_uint_eq(done[i].nwaiters, 1);
            ck_assert_str_eq(done[i].address, w == 2 ? "x@example.test" : "y@example.test");
            ck_assert_ptr_nonnull(strstr(done[i].result.transcript, "C: MAIL FROM:<>\n"));
            char want[2 * VERIFIER_ADDR_MAX + 64];
            snprintf(want, sizeof want, "C: RCPT TO:<%.255s>\nS: 550 5.1.1 %.255s", done[i].address, done[i].address);
            ck_assert_msg(strstr(done[i].result.transcript, want) != NULL, "no \"%s\" in:\n%s", want,
                          done[i].result.transcript);
        }
        verifier_done_fini(&done[i]);
    }
    ck_assert_uint_eq(smtpd_run_count(&d, "cmd=RCPT TO:<x@example.test>"), 2);
    verifier_destroy(v);
    smtpd_run_stop(&d);
}
END_TEST

/* Hostile or broken arguments are refused, never probed; bad configurations fail to create. */
START_TEST(test_invalid)
{
    struct smtpd_run d;
    struct verifier_stats st;
    char longaddr[400];

    smtpd_run_start(&d, "rcpt * 250 2.1.5 Ok\n");
    struct verifier_route r = route_for(d.host);
    struct verifier_conf c = conf_for(&r);
    struct verifier *v = make(&c);

    memset(longaddr, 'a', sizeof longaddr - 1);
    longaddr[sizeof longaddr - 1] = '\0';
    memcpy(longaddr + 300, "@example.test", 14);
    ck_assert_ask(verifier_ask(v, 1, NULL, "a@example.test", "c", 1, T0), VERIFIER_INVALID);
    ck_assert_ask(ask(v, "", "c", 1, T0), VERIFIER_INVALID);
    ck_assert_ask(ask(v, NULL, "c", 1, T0), VERIFIER_INVALID);
    ck_assert_ask(ask(v, longaddr, "c", 1, T0), VERIFIER_INVALID);
    ck_assert_ask(ask(v, "a@example.test>\r\nDATA", "c", 1, T0), VERIFIER_INVALID);
    ck_assert_ask(ask(v, "a b@example.test", "c", 1, T0), VERIFIER_INVALID);
    ck_assert_ask(verifier_probe_now(v, 7, "a@example.test", 1, T0), VERIFIER_INVALID);
    ck_assert_ask(verifier_probe_now(v, 0, "a\n@example.test", 1, T0), VERIFIER_INVALID);
    ck_assert(!verifier_refresh(v, 3, NULL, "a@example.test", T0));
    ck_assert(!verifier_refresh(v, 0, NULL, "a\r@example.test", T0));
    ck_assert(!verifier_check_accept_all(v, 2, "example.test", T0));
    ck_assert(!verifier_check_accept_all(v, 0, NULL, T0));
    ck_assert(!verifier_is_accept_all(v, NULL));
    verifier_stats(v, &st);
    ck_assert_uint_eq(st.refused_invalid, 6);
    ck_assert_uint_eq(st.running, 0);
    ck_assert_uint_eq(st.probe.submitted, 0);
    /* The index was not left holding a refused address: a valid question still starts. */
    ck_assert_ask(ask(v, "a@example.test", "c", 1, T0), VERIFIER_STARTED);
    struct verifier_done done;
    take_one(v, &done, T0);
    verifier_done_fini(&done);
    verifier_done_fini(NULL);
    ck_assert_uint_eq(smtpd_run_count(&d, "cmd=RCPT TO:<"), 1);
    ck_assert_uint_eq(smtpd_run_count(&d, "DATA"), 0);
    verifier_destroy(v);
    verifier_destroy(NULL);
    smtpd_run_stop(&d);
}
END_TEST

START_TEST(test_create_errors)
{
    struct verifier_route r[2] = {route_for("127.0.0.1:2525"), route_for("127.0.0.1:2526")};
    static const char *const bad_domains[] = {"", "a b.test", "x.test.", ".", "a@b.test", "a\r\n.test"};
    char err[256];

    r[1].domains[0] = "second.test";
    struct verifier_conf good = conf_for(r);
    good.nroutes = 2;
    struct verifier *v = make(&good);
    verifier_destroy(v);

    struct verifier_conf c = good;
    c.max_probes = 0;
    ck_assert_ptr_null(verifier_create(&c, err, sizeof err));
    c = good;
    c.max_probes = VERIFIER_PROBES_MAX + 1;
    ck_assert_ptr_null(verifier_create(&c, err, sizeof err));
    c = good;
    c.circuit_failures = 0;
    ck_assert_ptr_null(verifier_create(&c, err, sizeof err));
    c = good;
    c.circuit_open_ms = VERIFIER_MS_MAX + 1;
    ck_assert_ptr_null(verifier_create(&c, err, sizeof err));
    c = good;
    c.client_probes_per_minute = VERIFIER_RATE_MAX + 1;
    ck_assert_ptr_null(verifier_create(&c, err, sizeof err));
    ck_assert_ptr_null(verifier_create(NULL, err, sizeof err));
    for (size_t i = 0; i < sizeof bad_domains / sizeof bad_domains[0]; i++) {
        struct verifier_route rr[2] = {r[0], r[1]};
        rr[1].domains[0] = bad_domains[i];
        c = good;
        c.routes = rr;
        err[0] = '\0';
        ck_assert_msg(verifier_create(&c, err, sizeof err) == NULL, "domain \"%s\" accepted", bad_domains[i]);
        ck_assert_str_ne(err, "");
    }
    /* A domain in two routes (any case) is ambiguous. */
    struct verifier_route rr[2] = {r[0], r[1]};
    rr[1].domains[0] = "EXAMPLE.test";
    c = good;
    c.routes = rr;
    ck_assert_ptr_null(verifier_create(&c, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "example.test"));
    /* The engine's own checks come through. */
    rr[1] = r[1];
    rr[1].probe.nhosts = 0;
    ck_assert_ptr_null(verifier_create(&c, err, sizeof err));
    ck_assert_str_ne(err, "");
}
END_TEST

/* Destroy with probes running, joined, and results not taken: no leak, no hang (ASan). */
START_TEST(test_destroy_running)
{
    struct smtpd_run d;
    struct verifier_stats st;
    char addr[64];

    smtpd_run_start(&d, "rcpt fast@example.test 250 2.1.5 Ok\nrcpt * stall\n");
    struct verifier_route r = route_for(d.host);
    r.probe.command_ms = 60000;
    r.domains[1] = "other.test";
    r.ndomains = 2;
    struct verifier_conf c = conf_for(&r);
    c.acceptall_interval_ms = 1000;
    struct verifier *v = make(&c);

    ck_assert_ask(ask(v, "fast@example.test", "c", 0, T0), VERIFIER_STARTED);
    ck_assert(fd_readable(verifier_fd(v), RESULT_TIMEOUT_MS)); /* a result waits, untaken */
    for (unsigned i = 1; i < 50; i++) {
        snprintf(addr, sizeof addr, "slow%u@example.test", i % 10);
        enum verifier_ask a = ask(v, addr, "c", i, T0);
        ck_assert(a == VERIFIER_STARTED || a == VERIFIER_JOINED);
    }
    ck_assert_ask(verifier_probe_now(v, 0, "slow1@example.test", 99, T0), VERIFIER_STARTED);
    ck_assert(verifier_refresh(v, 0, NULL, "slow10@example.test", T0));
    ck_assert(verifier_check_accept_all(v, 0, "other.test", T0));
    verifier_tick(v, T0);
    verifier_tick(v, T0 + 1000);
    ck_assert_uint_ge(smtpd_run_wait(&d, "cmd=RCPT TO:<slow", 3, LOG_TIMEOUT_MS), 3);
    verifier_stats(v, &st);
    ck_assert_uint_eq(st.joined, 39);
    ck_assert_uint_ge(st.running, 14);
    long t0 = real_ms();
    verifier_destroy(v);
    ck_assert_int_lt(real_ms() - t0, 3000);
    smtpd_run_stop(&d);
}
END_TEST

static Suite *verifier_suite(void)
{
    Suite *s = suite_create("verifier");
    TCase *tc = tcase_create("coordinator");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_join);
    tcase_add_test(tc, test_client_limit);
    tcase_add_test(tc, test_client_table_full);
    tcase_add_test(tc, test_route_limit);
    tcase_add_test(tc, test_busy);
    tcase_add_test(tc, test_circuit);
    tcase_add_test(tc, test_circuit_refused);
    tcase_add_test(tc, test_circuit_reset);
    tcase_add_test(tc, test_accept_all);
    tcase_add_test(tc, test_acceptall_schedule);
    tcase_add_test(tc, test_refresh);
    tcase_add_test(tc, test_probe_now);
    tcase_add_test(tc, test_invalid);
    tcase_add_test(tc, test_create_errors);
    tcase_add_test(tc, test_destroy_running);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(verifier_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
