/* Integration test of mxcached's monitoring endpoint (/metrics, /healthz, /readyz): the real
 * daemon ($MXCACHED) with a temporary store, greylisting with a 2 s delay for one domain, and a
 * verification route to mxtest-smtpd ($MXTEST_SMTPD, a scripted SMTP backend on loopback). Known
 * requests go in through libmxcache (and a raw DEALER for a malformed one); the scrape, taken with
 * curl, must pass `promtool check metrics` without a word, and every figure must move exactly as
 * those requests predict (deltas against a scrape taken before them). Also: /healthz and /readyz
 * answer 200 while the daemon runs, a second daemon on the same metrics port stops at start with a
 * clear error, --check-config refuses a bad metrics.listen, and after SIGTERM the endpoint is gone.
 * Needs curl and promtool on PATH. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "mxcache.h"
#include "smtpd/smtpd_run.h"
#include "wire.h"
#include "../testutil.h"

#define READY_TIMEOUT_MS 15000
#define STOP_TIMEOUT_MS 20000
#define DELAY_S 2 /* greylist.delay */

static char dir[256];
static char ipc_ep[300];
static char cfg_path[300];
static char log_path[300];
static pid_t daemon_pid;
static unsigned http_port;
static struct smtpd_run smtpd;

/* write_config - a daemon config: store under dir/store_dir, ZeroMQ on ep, metrics on listen. */
static void write_config(const char *path, const char *ep, const char *store_dir, const char *listen)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    /* Greylisting applies to grey.test only and verification to example.com only, so each
     * request exercises one of them; no scheduled accept-all probes disturb the counts. */
    fprintf(f,
            "server: { listen = [\"%s\"]; workers = 2; };\n"
            "store: { path = \"%s/%s\"; sync = true; };\n"
            "log: { target = \"stderr\"; level = \"info\"; };\n"
            "greylist: { delay = %d; domains = [ \"grey.test\" ]; header = false; };\n"
            "verify: { wait = \"2s\"; acceptall_interval = 0;\n"
            "  routes = ( { domains = [ \"example.com\" ]; hosts = [ \"%s\" ]; helo = \"mx.test\"; } ); };\n"
            "metrics: { listen = \"%s\"; };\n",
            ep, dir, store_dir, DELAY_S, smtpd.host, listen);
    fclose(f);
}

static pid_t spawn(const char *cfg, const char *log, const char *mode)
{
    const char *bin = getenv("MXCACHED");
    ck_assert_msg(bin != NULL, "MXCACHED not set (ctest sets it)");
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(bin, "mxcached", "--config", cfg, mode, "--allow-root", (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* wait_exit - the exit status of pid (-signal), waiting at most ms; SIGKILL and fail after. */
static int wait_exit(pid_t pid, long ms)
{
    int status;
    long deadline = test_now_ms() + ms;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (test_now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            ck_abort_msg("mxcached (pid %d) did not exit in time", (int)pid);
        }
        test_sleep_ms(20);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

static mxc_client *client(void)
{
    const char *eps[] = {ipc_ep};
    char err[256];
    mxc_client *c = mxc_client_create(eps, 1, NULL, err, sizeof err);
    ck_assert_msg(c != NULL, "client: %s", err);
    return c;
}

static bool ping_ok(mxc_client *c)
{
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__PingRequest pr = MXCACHE__PING_REQUEST__INIT;
    Mxcache__Reply *rep = NULL;
    req.body_case = MXCACHE__REQUEST__BODY_PING;
    req.ping = &pr;
    int rc = mxc_call(c, &req, 300, &rep);
    bool ok = rc == MXC_OK && rep && rep->body_case == MXCACHE__REPLY__BODY_PING;
    mxc_reply_free(rep);
    return ok;
}

/* start_daemon - starts the test's daemon and waits until it answers and has logged its
 * metrics port (metrics.listen uses port 0: any free port, so parallel tests never collide). */
static void start_daemon(void)
{
    daemon_pid = spawn(cfg_path, log_path, "--foreground");
    mxc_client *c = client();
    long deadline = test_now_ms() + READY_TIMEOUT_MS;
    while (!ping_ok(c)) {
        ck_assert_msg(test_now_ms() < deadline, "mxcached did not become ready");
        ck_assert_msg(waitpid(daemon_pid, NULL, WNOHANG) == 0, "mxcached exited:\n%s", test_file_text(log_path));
    }
    mxc_client_destroy(c);
    char *log = test_file_text(log_path), *p = strstr(log, "endpoint=http://");
    ck_assert_msg(p && (p = strstr(p, " port=")), "no metrics LISTEN line in the log:\n%s", log);
    http_port = (unsigned)strtoul(p + 6, NULL, 10);
    ck_assert_uint_gt(http_port, 0);
    free(log);
}

static void setup(void)
{
    strcpy(dir, "/tmp/mxcache-met-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(ipc_ep, sizeof ipc_ep, "ipc://%s/mxcached.sock", dir);
    snprintf(cfg_path, sizeof cfg_path, "%s/mxcached.conf", dir);
    snprintf(log_path, sizeof log_path, "%s/mxcached.log", dir);
    smtpd_run_start(&smtpd, "rcpt alice@example.com 250 2.1.5 Ok\n"
                            "rcpt carol@example.com 450 4.2.1 Mailbox busy\n"
                            "rcpt slow@example.com slow 3500 250 2.1.5 Ok\n");
    write_config(cfg_path, ipc_ep, "db", "127.0.0.1:0");
    start_daemon();
}

static void teardown(void)
{
    char cmd[300];
    if (daemon_pid > 0) {
        kill(daemon_pid, SIGKILL);
        waitpid(daemon_pid, NULL, 0);
        daemon_pid = 0;
    }
    smtpd_run_stop(&smtpd);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

/* ---- HTTP and the scrape ---- */

/* http_get - GET path on the daemon's endpoint. */
static int http_get(const char *path, char **body)
{
    return test_http_get(http_port, path, body);
}

static char *scrape(void)
{
    char *body;
    int status = http_get("/metrics", &body);
    ck_assert_msg(status == 200, "GET /metrics: status %d", status);
    return body;
}

/* value - the value of the sample "series" (name with its labels, exactly as written) in text;
 * fails the test when it is not there. */
static double value(const char *text, const char *series)
{
    double v = test_metric_sample(text, series);
    ck_assert_msg(!isnan(v), "no sample %s in the scrape:\n%s", series, text);
    return v;
}

/* delta - how much series grew from before to after. */
static double delta(const char *before, const char *after, const char *series)
{
    return value(after, series) - value(before, series);
}

#define ASSERT_DELTA(series, want)                                                               \
    do {                                                                                         \
        double d_ = delta(s0, s1, series);                                                       \
        ck_assert_msg(d_ == (double)(want), "%s grew by %g, expected %g", series, d_,             \
                      (double)(want));                                                           \
    } while (0)

/* promtool_check - runs `promtool check metrics` on text: it must pass and say nothing (a lint
 * warning about a name or a unit is printed, with status 0 or 3 by version). */
static void promtool_check(const char *text)
{
    char in[300], out[300], cmd[700];
    snprintf(in, sizeof in, "%s/scrape.txt", dir);
    snprintf(out, sizeof out, "%s/promtool.out", dir);
    FILE *f = fopen(in, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "promtool check metrics <'%s' >'%s' 2>&1", in, out);
    int rc = system(cmd);
    char *said = test_file_text(out);
    ck_assert_msg(rc == 0 && said[0] == '\0', "promtool check metrics (status %d):\n%s", rc, said);
    free(said);
}

/* ---- requests ---- */

static Mxcache__Reply *check(mxc_client *c, const char *ip, const char *rcpt)
{
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__CheckRequest q = MXCACHE__CHECK_REQUEST__INIT;
    Mxcache__Reply *rep = NULL;
    q.client_address = (char *)ip;
    q.client_name = "unknown";
    q.sender = "s@sender.example";
    q.recipient = (char *)rcpt;
    q.protocol_state = "RCPT";
    q.mx_name = "mx01.test";
    req.body_case = MXCACHE__REQUEST__BODY_CHECK;
    req.check = &q;
    ck_assert_msg(mxc_call(c, &req, 5000, &rep) == MXC_OK, "check: %s", mxc_client_error(c));
    ck_assert_int_eq(rep->body_case, MXCACHE__REPLY__BODY_CHECK);
    return rep;
}

/* expect_check - a Check of rcpt from ip must be answered with rule. */
static void expect_check(mxc_client *c, const char *ip, const char *rcpt, const char *rule)
{
    Mxcache__Reply *rep = check(c, ip, rcpt);
    ck_assert_msg(strcmp(rep->check->rule, rule) == 0, "check %s: rule %s, expected %s", rcpt,
                  rep->check->rule, rule);
    mxc_reply_free(rep);
}

/* malformed - bytes that do not decode, from a raw DEALER: an ERROR_MALFORMED reply. */
static void malformed(void)
{
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0, tmo = 3000;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    ck_assert_int_eq(zmq_connect(s, ipc_ep), 0);
    zmq_send(s, "\xff\xff\xff\xff\xff", 5, 0);
    zmq_msg_t m;
    zmq_msg_init(&m);
    ck_assert_int_ge(zmq_msg_recv(&m, s, 0), 0);
    Mxcache__Reply *rep = wire_reply_unpack(zmq_msg_data(&m), zmq_msg_size(&m));
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq(rep->body_case, MXCACHE__REPLY__BODY_ERROR);
    ck_assert_int_eq(rep->error->code, MXCACHE__ERROR_CODE__ERROR_MALFORMED);
    mxcache__reply__free_unpacked(rep, NULL);
    zmq_msg_close(&m);
    zmq_close(s);
    zmq_ctx_term(ctx);
}

/* ---- tests ---- */

START_TEST(test_figures_follow_requests)
{
    char *body, *s0, *s1;
    mxc_client *c = client();

    ck_assert_int_eq(http_get("/healthz", &body), 200);
    ck_assert_msg(strncmp(body, "ok", 2) == 0, "/healthz said %s", body);
    free(body);
    ck_assert_int_eq(http_get("/readyz", &body), 200);
    free(body);
    ck_assert_int_eq(http_get("/nothing-here", &body), 404);
    free(body);

    s0 = scrape();
    promtool_check(s0);
    ck_assert_int_eq(value(s0, "mxcache_ready"), 1);
    ck_assert_int_eq(value(s0, "mxcache_build_info{version=\"" MXCACHE_VERSION "\"}"), 1);
    ck_assert_int_eq(value(s0, "mxcache_verify_circuit_open{route=\"example.com\"}"), 0);

    /* Three new triplets, deferred; after the delay one retry passes. */
    expect_check(c, "192.0.2.1", "r1@grey.test", "greylist_new");
    expect_check(c, "192.0.2.1", "r2@grey.test", "greylist_new");
    expect_check(c, "192.0.2.1", "r3@grey.test", "greylist_new");
    test_sleep_ms(DELAY_S * 1000 + 300);
    expect_check(c, "192.0.2.1", "r1@grey.test", "greylist_pass");
    /* Verification (greylisting skipped): probed and accepted, probed and rejected (the
     * backend's default 550), accepted from the cache, and one slower than verify.wait. */
    expect_check(c, "192.0.2.1", "alice@example.com", "verify_positive");
    expect_check(c, "192.0.2.1", "bob@example.com", "verify_negative");
    expect_check(c, "192.0.2.1", "alice@example.com", "verify_positive");
    expect_check(c, "192.0.2.1", "slow@example.com", "verify_pending");
    /* An operator's probe (Verify): 450 from the backend. */
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__VerifyRequest vq = MXCACHE__VERIFY_REQUEST__INIT;
    Mxcache__Reply *rep = NULL;
    vq.address = "carol@example.com";
    req.body_case = MXCACHE__REQUEST__BODY_VERIFY;
    req.verify = &vq;
    ck_assert_int_eq(mxc_call(c, &req, 10000, &rep), MXC_OK);
    ck_assert_int_eq(rep->body_case, MXCACHE__REPLY__BODY_VERIFY);
    ck_assert_str_eq(rep->verify->result, "tempfail");
    mxc_reply_free(rep);
    malformed();
    ck_assert(ping_ok(c));
    /* The slow probe finishes in the background (3.5 s after it started). */
    ck_assert_uint_eq(smtpd_run_wait(&smtpd, "cmd=RCPT TO:<slow@example.com>", 1, 5000), 1);
    long deadline = test_now_ms() + 10000;
    for (;;) {
        s1 = scrape();
        if (value(s1, "mxcache_probes_in_flight") == 0 &&
            delta(s0, s1, "mxcache_probes_finished_total{route=\"example.com\",result=\"accepted\"}") == 2)
            break;
        ck_assert_msg(test_now_ms() < deadline, "the slow probe did not finish:\n%s", s1);
        free(s1);
        test_sleep_ms(100);
    }

    promtool_check(s1);
    /* requests */
    ASSERT_DELTA("mxcache_requests_total{type=\"check\",outcome=\"ok\"}", 8);
    ASSERT_DELTA("mxcache_requests_total{type=\"check\",outcome=\"error\"}", 0);
    ASSERT_DELTA("mxcache_requests_total{type=\"verify\",outcome=\"ok\"}", 1);
    ASSERT_DELTA("mxcache_requests_total{type=\"ping\",outcome=\"ok\"}", 1);
    ASSERT_DELTA("mxcache_requests_total{type=\"unknown\",outcome=\"error\"}", 1);
    ASSERT_DELTA("mxcache_request_errors_total{reason=\"malformed\"}", 1);
    ASSERT_DELTA("mxcache_request_errors_total{reason=\"bad_framing\"}", 0);
    ASSERT_DELTA("mxcache_requests_timed_out_total", 1);
    ASSERT_DELTA("mxcache_request_duration_seconds_count{type=\"check\"}", 9);
    ASSERT_DELTA("mxcache_request_duration_seconds_count{type=\"admin\"}", 2); /* malformed, ping */
    ASSERT_DELTA("mxcache_request_duration_seconds_bucket{type=\"check\",le=\"+Inf\"}", 9);
    ck_assert(delta(s0, s1, "mxcache_replies_held_for_sync_total") >= 1); /* the new triplets */
    ASSERT_DELTA("mxcache_replies_dropped_total", 0);
    /* decisions */
    ASSERT_DELTA("mxcache_decisions_total{action=\"defer\",rule=\"greylist_new\"}", 3);
    ASSERT_DELTA("mxcache_decisions_total{action=\"dunno\",rule=\"greylist_pass\"}", 1);
    ASSERT_DELTA("mxcache_decisions_total{action=\"dunno\",rule=\"verify_positive\"}", 2);
    ASSERT_DELTA("mxcache_decisions_total{action=\"reject\",rule=\"verify_negative\"}", 1);
    ASSERT_DELTA("mxcache_decisions_total{action=\"defer\",rule=\"verify_pending\"}", 1);
    ASSERT_DELTA("mxcache_decisions_total{action=\"dunno\",rule=\"default\"}", 0);
    ASSERT_DELTA("mxcache_greylist_triplets_total{result=\"new\"}", 3);
    ASSERT_DELTA("mxcache_greylist_triplets_total{result=\"passed\"}", 1);
    ASSERT_DELTA("mxcache_greylist_triplets_total{result=\"deferred\"}", 0);
    ASSERT_DELTA("mxcache_greylist_triplets_total{result=\"skipped\"}", 4);
    ASSERT_DELTA("mxcache_greylist_delay_seconds_count", 1);
    ck_assert_msg(delta(s0, s1, "mxcache_greylist_delay_seconds_sum") >= DELAY_S,
                  "greylist_delay_seconds_sum grew by %g", delta(s0, s1, "mxcache_greylist_delay_seconds_sum"));
    /* verification */
    ASSERT_DELTA("mxcache_verify_cache_misses_total", 3);
    ASSERT_DELTA("mxcache_verify_cache_answers_total{state=\"positive\"}", 1);
    ASSERT_DELTA("mxcache_verify_cache_answers_total{state=\"negative\"}", 0);
    ASSERT_DELTA("mxcache_verify_questions_total", 3);
    ASSERT_DELTA("mxcache_verify_questions_joined_total", 0);
    ASSERT_DELTA("mxcache_verify_refused_total{reason=\"circuit_open\"}", 0);
    ASSERT_DELTA("mxcache_probes_started_total{route=\"example.com\"}", 4);
    ASSERT_DELTA("mxcache_probes_finished_total{route=\"example.com\",result=\"accepted\"}", 2);
    ASSERT_DELTA("mxcache_probes_finished_total{route=\"example.com\",result=\"rejected\"}", 1);
    ASSERT_DELTA("mxcache_probes_finished_total{route=\"example.com\",result=\"tempfail\"}", 1);
    ASSERT_DELTA("mxcache_probes_finished_total{route=\"example.com\",result=\"failed\"}", 0);
    ASSERT_DELTA("mxcache_probe_duration_seconds_count{route=\"example.com\"}", 4);
    ck_assert(delta(s0, s1, "mxcache_probe_duration_seconds_sum{route=\"example.com\"}") >= 3.5);
    ck_assert(delta(s0, s1, "mxcache_probe_sessions_opened_total") >= 1);
    ck_assert_int_eq(value(s1, "mxcache_verify_circuit_open{route=\"example.com\"}"), 0);
    ck_assert_int_eq(value(s1, "mxcache_verify_accept_all_domains"), 0);
    /* the store */
    ck_assert(delta(s0, s1, "mxcache_store_writes_total") >= 4);
    ck_assert(delta(s0, s1, "mxcache_store_wal_sync_duration_seconds_count") >= 1);
    ck_assert(delta(s0, s1, "mxcache_store_commit_duration_seconds_count") >= 1);
    ASSERT_DELTA("mxcache_store_errors_total", 0);
    ck_assert(value(s1, "mxcache_store_keys{keyspace=\"greylist\"}") >= 3);
    ck_assert(value(s1, "mxcache_store_keys{keyspace=\"verify\"}") >= 1);
    ck_assert(value(s1, "mxcache_store_disk_bytes{keyspace=\"whitelist\"}") >= 0);
    ck_assert(value(s1, "process_resident_memory_bytes") > 0);
    free(s0);
    free(s1);
    mxc_client_destroy(c);
}
END_TEST

/* A second daemon whose metrics address is taken stops at start, with the reason in its log. */
START_TEST(test_port_in_use)
{
    char cfg2[300], log2[300], ep2[300], listen[64];
    snprintf(cfg2, sizeof cfg2, "%s/second.conf", dir);
    snprintf(log2, sizeof log2, "%s/second.log", dir);
    snprintf(ep2, sizeof ep2, "ipc://%s/second.sock", dir);
    snprintf(listen, sizeof listen, "127.0.0.1:%u", http_port);
    write_config(cfg2, ep2, "db2", listen);
    pid_t pid = spawn(cfg2, log2, "--foreground");
    ck_assert_int_eq(wait_exit(pid, 15000), 1);
    char *log = test_file_text(log2), want[128];
    snprintf(want, sizeof want, "FATAL error=\"cannot serve metrics on %s: ", listen);
    ck_assert_msg(strstr(log, want) != NULL, "no \"%s\" in the log:\n%s", want, log);
    free(log);

    /* The first one serves on. */
    char *body;
    ck_assert_int_eq(http_get("/readyz", &body), 200);
    free(body);
}
END_TEST

/* --check-config checks the address's syntax with the file's line. */
START_TEST(test_check_config)
{
    char cfg2[300], log2[300];
    snprintf(cfg2, sizeof cfg2, "%s/bad.conf", dir);
    snprintf(log2, sizeof log2, "%s/bad.log", dir);
    FILE *f = fopen(cfg2, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "server: { workers = 1; };\nmetrics: {\n  listen = \"localhost:10042\";\n};\n");
    fclose(f);
    pid_t pid = spawn(cfg2, log2, "--check-config");
    ck_assert_int_eq(wait_exit(pid, 10000), 1);
    char *log = test_file_text(log2), want[400];
    snprintf(want, sizeof want, "%s:3: metrics.listen: bad address \"localhost:10042\"", cfg2);
    ck_assert_msg(strstr(log, want) != NULL, "no \"%s\" in:\n%s", want, log);
    free(log);
}
END_TEST

/* After SIGTERM the daemon exits cleanly and its endpoint is gone. */
START_TEST(test_stop)
{
    char *body;
    kill(daemon_pid, SIGTERM);
    ck_assert_int_eq(wait_exit(daemon_pid, STOP_TIMEOUT_MS), 0);
    daemon_pid = 0;
    ck_assert_int_eq(http_get("/healthz", &body), 0);
    free(body);
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics_server");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_figures_follow_requests);
    tcase_add_test(tc, test_port_in_use);
    tcase_add_test(tc, test_check_config);
    tcase_add_test(tc, test_stop);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(metrics_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
