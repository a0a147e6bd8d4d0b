/* Integration tests of mxcached: the real daemon binary ($MXCACHED) with a real RocksDB in a
 * temporary directory, driven through libmxcache over ipc and loopback tcp, and through raw
 * ZeroMQ sockets for requests that libmxcache would never send. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "mxcache.h"
#include "smtpd/smtpd_run.h"
#include "store.h"
#include "wire.h"
#include "testutil.h"

#define READY_TIMEOUT_MS 15000
#define STOP_TIMEOUT_MS 20000

static char dir[256];
static char ipc_ep[300];
static char cfg_path[300];
static char log_path[300];
static pid_t daemon_pid;
static struct smtpd_run smtpd; /* mxtest-smtpd of the verification tests */

/* write_full_config - the test config with the extras (NULL: none) in their groups. */
static void write_verify_config(const char *store_extra, const char *policy_extra,
                                const char *greylist_extra, const char *verify_extra)
{
    FILE *f = fopen(cfg_path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "server: { listen = [\"%s\"]; workers = 2; max_request_size = \"4K\"; };\n"
            "store: { path = \"%s/db\"; sync = true; %s };\n"
            "log: { target = \"stderr\"; level = \"info\"; };\n"
            "policy: { %s };\n"
            "greylist: { %s };\n"
            "verify: { %s };\n"
            "metrics: { listen = \"\"; };\n", /* tests run in parallel: not on the default port */
            ipc_ep, dir, store_extra ? store_extra : "", policy_extra ? policy_extra : "",
            greylist_extra ? greylist_extra : "", verify_extra ? verify_extra : "");
    fclose(f);
}

static void write_full_config(const char *store_extra, const char *policy_extra,
                              const char *greylist_extra)
{
    write_verify_config(store_extra, policy_extra, greylist_extra, NULL);
}

/* write_greylist_config - the test config with policy_extra in its policy group and
 * greylist_extra in its greylist group. */
static void write_greylist_config(const char *policy_extra, const char *greylist_extra)
{
    write_full_config(NULL, policy_extra, greylist_extra);
}

/* write_config - the test config, greylisting off (so that the default answer shows), with
 * policy_extra in its policy group. */
static void write_config(const char *policy_extra)
{
    write_greylist_config(policy_extra, "enabled = false;");
}

static mxc_client *client(void)
{
    const char *eps[] = {ipc_ep};
    char err[256];
    mxc_client *c = mxc_client_create(eps, 1, NULL, err, sizeof err);
    ck_assert_msg(c != NULL, "client: %s", err);
    return c;
}

/* pump - runs c's event loop until no request is in flight or ms have passed. */
static void pump(mxc_client *c, long ms)
{
    long deadline = test_now_ms() + ms;
    while (mxc_inflight(c) > 0 && test_now_ms() < deadline) {
        zmq_pollitem_t items[MXC_MAX_ENDPOINTS];
        int n = mxc_pollitems(c, items, MXC_MAX_ENDPOINTS);
        zmq_poll(items, n, 50);
        mxc_dispatch(c);
    }
}

static int call(mxc_client *c, Mxcache__Request *req, Mxcache__Reply **rep)
{
    return mxc_call(c, req, 3000, rep);
}

static int stats_ok(mxc_client *c)
{
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__StatsRequest sr = MXCACHE__STATS_REQUEST__INIT;
    Mxcache__Reply *rep = NULL;
    req.body_case = MXCACHE__REQUEST__BODY_STATS;
    req.stats = &sr;
    int rc = mxc_call(c, &req, 300, &rep);
    mxc_reply_free(rep);
    return rc == MXC_OK;
}

static void start_daemon(void)
{
    const char *bin = getenv("MXCACHED");
    ck_assert_msg(bin != NULL, "MXCACHED not set");
    daemon_pid = fork();
    ck_assert_int_ge(daemon_pid, 0);
    if (daemon_pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 2);
        execl(bin, "mxcached", "--config", cfg_path, "--foreground", "--allow-root", (char *)NULL);
        _exit(127);
    }
    mxc_client *c = client();
    long deadline = test_now_ms() + READY_TIMEOUT_MS;
    while (!stats_ok(c)) {
        ck_assert_msg(test_now_ms() < deadline, "mxcached did not become ready");
        ck_assert_int_eq(waitpid(daemon_pid, NULL, WNOHANG), 0);
    }
    mxc_client_destroy(c);
}

/* stop_daemon - sends sig and returns the exit status (or -signal). */
static int stop_daemon(int sig)
{
    int status;
    long deadline = test_now_ms() + STOP_TIMEOUT_MS;
    kill(daemon_pid, sig);
    while (waitpid(daemon_pid, &status, WNOHANG) == 0) {
        if (test_now_ms() > deadline) {
            kill(daemon_pid, SIGKILL);
            waitpid(daemon_pid, &status, 0);
            ck_abort_msg("mxcached did not stop on signal %d", sig);
        }
        test_sleep_ms(20);
    }
    daemon_pid = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

static void setup(void)
{
    strcpy(dir, "/tmp/mxcache-svc-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(ipc_ep, sizeof ipc_ep, "ipc://%s/mxcached.sock", dir);
    snprintf(cfg_path, sizeof cfg_path, "%s/mxcached.conf", dir);
    snprintf(log_path, sizeof log_path, "%s/mxcached.log", dir);
    write_config(NULL);
    start_daemon();
}

static void teardown(void)
{
    char cmd[300];
    if (daemon_pid > 0)
        stop_daemon(SIGKILL);
    smtpd_run_stop(&smtpd);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

/* ---- request helpers ---- */

static Mxcache__Reply *check(mxc_client *c, const char *ip, const char *name, const char *sender,
                             const char *rcpt)
{
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__CheckRequest q = MXCACHE__CHECK_REQUEST__INIT;
    Mxcache__Reply *rep = NULL;
    q.client_address = (char *)ip;
    q.client_name = (char *)name;
    q.sender = (char *)sender;
    q.recipient = (char *)rcpt;
    q.protocol_state = "RCPT";
    q.mx_name = "mx01.test";
    req.body_case = MXCACHE__REQUEST__BODY_CHECK;
    req.check = &q;
    int rc = call(c, &req, &rep);
    ck_assert_msg(rc == MXC_OK, "check: %s", mxc_client_error(c));
    ck_assert_int_eq(rep->body_case, MXCACHE__REPLY__BODY_CHECK);
    return rep;
}

static int wl_add(mxc_client *c, const char *kind, const char *value, uint64_t ttl_ms,
                  Mxcache__Reply **out)
{
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__WhitelistAddRequest q = MXCACHE__WHITELIST_ADD_REQUEST__INIT;
    Mxcache__Reply *rep = NULL;
    ck_assert_int_eq(wire_wlkind_parse(kind, &q.kind), 0);
    q.value = (char *)value;
    q.comment = "test";
    q.ttl_ms = ttl_ms;
    req.body_case = MXCACHE__REQUEST__BODY_WHITELIST_ADD;
    req.whitelist_add = &q;
    int rc = call(c, &req, &rep);
    if (out)
        *out = rep;
    else
        mxc_reply_free(rep);
    return rc;
}

static bool get_found(mxc_client *c, Mxcache__Keyspace ks, const char *key)
{
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__GetRequest q = MXCACHE__GET_REQUEST__INIT;
    Mxcache__Reply *rep = NULL;
    q.keyspace = ks;
    q.key = (char *)key;
    req.body_case = MXCACHE__REQUEST__BODY_GET;
    req.get = &q;
    ck_assert_int_eq(call(c, &req, &rep), MXC_OK);
    ck_assert_int_eq(rep->body_case, MXCACHE__REPLY__BODY_GET);
    bool found = rep->get->found;
    mxc_reply_free(rep);
    return found;
}

static uint64_t counter(mxc_client *c, const char *name)
{
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__StatsRequest sr = MXCACHE__STATS_REQUEST__INIT;
    Mxcache__Reply *rep = NULL;
    uint64_t v = UINT64_MAX;
    req.body_case = MXCACHE__REQUEST__BODY_STATS;
    req.stats = &sr;
    ck_assert_int_eq(call(c, &req, &rep), MXC_OK);
    for (size_t i = 0; i < rep->stats->n_counters; i++)
        if (strcmp(rep->stats->counters[i]->name, name) == 0)
            v = rep->stats->counters[i]->value;
    mxc_reply_free(rep);
    ck_assert_msg(v != UINT64_MAX, "no counter %s", name);
    return v;
}

static Mxcache__Reply *check_explain(mxc_client *c, const char *ip, const char *name,
                                     const char *sender, const char *rcpt)
{
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__CheckRequest q = MXCACHE__CHECK_REQUEST__INIT;
    Mxcache__Reply *rep = NULL;
    q.client_address = (char *)ip;
    q.client_name = (char *)name;
    q.sender = (char *)sender;
    q.recipient = (char *)rcpt;
    q.protocol_state = "RCPT";
    q.mx_name = "mx01.test";
    q.explain = true;
    req.body_case = MXCACHE__REQUEST__BODY_CHECK;
    req.check = &q;
    ck_assert_int_eq(call(c, &req, &rep), MXC_OK);
    ck_assert_int_eq(rep->body_case, MXCACHE__REPLY__BODY_CHECK);
    return rep;
}

static int log_contains(const char *needle)
{
    char buf[65536];
    FILE *f = fopen(log_path, "r");
    size_t n;
    if (!f)
        return 0;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, needle) != NULL;
}

/* ---- tests ---- */

START_TEST(test_default_answer_and_whitelists)
{
    mxc_client *c = client();
    Mxcache__Reply *rep = check(c, "192.0.2.77", "unknown", "a@example.org", "b@example.net");
    ck_assert_int_eq(rep->check->action, MXCACHE__ACTION__ACTION_DUNNO);
    ck_assert_str_eq(rep->check->rule, "default");
    mxc_reply_free(rep);

    Mxcache__Reply *added = NULL;
    ck_assert_int_eq(wl_add(c, "client", "192.0.2.9/24", 0, &added), MXC_OK);
    ck_assert_str_eq(added->whitelist_add->entry->key, "client:192.0.2.0/24");
    mxc_reply_free(added);
    ck_assert_int_eq(wl_add(c, "client", "2001:db8:1::5/48", 0, NULL), MXC_OK);
    ck_assert_int_eq(wl_add(c, "client_name", "Mail.Example.COM.", 0, NULL), MXC_OK);
    ck_assert_int_eq(wl_add(c, "sender", "lists.example.org", 0, NULL), MXC_OK);
    ck_assert_int_eq(wl_add(c, "recipient", "Postmaster@Example.NET", 0, NULL), MXC_OK);

    static const struct {
        const char *ip, *name, *sender, *rcpt, *rule, *matched;
    } cases[] = {
        {"192.0.2.200", "unknown", "x@y.test", "u@example.net", "whitelist", "client:192.0.2.0/24"},
        {"::ffff:192.0.2.1", "unknown", "x@y.test", "u@example.net", "whitelist", "client:192.0.2.0/24"},
        {"192.0.3.1", "unknown", "x@y.test", "u@example.net", "default", ""},
        {"2001:db8:1:ff::1", "unknown", "x@y.test", "u@example.net", "whitelist", "client:2001:db8:1::/48"},
        {"2001:db8:2::1", "unknown", "x@y.test", "u@example.net", "default", ""},
        {"198.51.100.1", "out.mail.example.com", "x@y.test", "u@example.net", "whitelist", "client_name:mail.example.com"},
        {"198.51.100.1", "mail.example.com.evil.test", "x@y.test", "u@example.net", "default", ""},
        {"198.51.100.1", "unknown", "news@bounce.lists.example.org", "u@example.net", "whitelist", "sender:lists.example.org"},
        {"198.51.100.1", "unknown", "x@notlists.example.org", "u@example.net", "default", ""},
        {"198.51.100.1", "unknown", "", "POSTMASTER@example.net", "whitelist", "recipient:postmaster@example.net"},
        {"198.51.100.1", "unknown", "", "other@example.net", "default", ""},
        {"not-an-ip", "unknown", "bad address", "also bad", "default", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rep = check(c, cases[i].ip, cases[i].name, cases[i].sender, cases[i].rcpt);
        ck_assert_msg(strcmp(rep->check->rule, cases[i].rule) == 0, "case %zu: rule %s", i, rep->check->rule);
        if (*cases[i].matched)
            ck_assert_str_eq(rep->check->text, cases[i].matched);
        ck_assert_int_eq(rep->check->action, MXCACHE__ACTION__ACTION_DUNNO);
        mxc_reply_free(rep);
    }

    /* Hostile or malformed values are refused with a reason, and nothing is stored. */
    static const char *const bad[][2] = {
        {"client", "192.0.2.1/33"}, {"client", "300.1.1.1"}, {"client", "192.0.2.1/"},
        {"client_name", "bad_name.example"}, {"client_name", "-lead.example"},
        {"sender", "a b@example.com"}, {"sender", "x@exa\r\nmple.com"}, {"recipient", "@example.com"},
        {"recipient", ""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        Mxcache__Reply *r = NULL;
        ck_assert_msg(wl_add(c, bad[i][0], bad[i][1], 0, &r) == MXC_ESERVER, "bad case %zu accepted", i);
        ck_assert_int_eq(r->error->code, MXCACHE__ERROR_CODE__ERROR_INVALID_ARGUMENT);
        mxc_reply_free(r);
    }
    ck_assert_uint_eq(counter(c, "decisions_rule_whitelist"), 6);
    ck_assert_uint_eq(counter(c, "requests_check"), 13);
    mxc_client_destroy(c);
}
END_TEST

/* raw_request - sends frames on a DEALER socket and returns the reply (or NULL after timeout). */
static Mxcache__Reply *raw_request(const void *data, size_t len, int nframes)
{
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0, tmo = 2000;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    ck_assert_int_eq(zmq_connect(s, ipc_ep), 0);
    for (int i = 1; i < nframes; i++)
        zmq_send(s, "x", 1, ZMQ_SNDMORE);
    zmq_send(s, data, len, 0);
    Mxcache__Reply *rep = NULL;
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, s, 0) >= 0)
        rep = wire_reply_unpack(zmq_msg_data(&m), zmq_msg_size(&m));
    zmq_msg_close(&m);
    zmq_close(s);
    zmq_ctx_term(ctx);
    return rep;
}

static size_t pack_check(uint32_t version, uint64_t id, const char *recipient, uint8_t **buf)
{
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__CheckRequest q = MXCACHE__CHECK_REQUEST__INIT;
    size_t len;
    req.version = version;
    req.id = id;
    q.recipient = (char *)recipient;
    q.client_address = "192.0.2.1";
    req.body_case = MXCACHE__REQUEST__BODY_CHECK;
    req.check = &q;
    ck_assert_int_eq(wire_request_pack(&req, buf, &len), 0);
    return len;
}

START_TEST(test_bad_requests_get_error_replies)
{
    mxc_client *c = client();
    uint8_t *buf;
    size_t len;
    Mxcache__Reply *rep;

    /* Garbage: error reply, id 0 (nothing to read it from). */
    rep = raw_request("\xff\xff\xff\xff\xff", 5, 1);
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq(rep->body_case, MXCACHE__REPLY__BODY_ERROR);
    ck_assert_int_eq(rep->error->code, MXCACHE__ERROR_CODE__ERROR_MALFORMED);
    mxcache__reply__free_unpacked(rep, NULL);

    /* A valid prefix cut short: malformed, but the id is read from the prefix. */
    len = pack_check(WIRE_VERSION, 4242, "someone@example.com", &buf);
    rep = raw_request(buf, len - 3, 1);
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq(rep->error->code, MXCACHE__ERROR_CODE__ERROR_MALFORMED);
    ck_assert_uint_eq(rep->id, 4242);
    mxcache__reply__free_unpacked(rep, NULL);
    free(buf);

    /* Wrong protocol version. */
    len = pack_check(99, 77, "someone@example.com", &buf);
    rep = raw_request(buf, len, 1);
    ck_assert_int_eq(rep->error->code, MXCACHE__ERROR_CODE__ERROR_VERSION);
    ck_assert_uint_eq(rep->id, 77);
    mxcache__reply__free_unpacked(rep, NULL);
    free(buf);

    /* Over max_request_size (4K here) but under the transport limit: TOO_LARGE with its id. */
    char big[6000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    len = pack_check(WIRE_VERSION, 99, big, &buf);
    rep = raw_request(buf, len, 1);
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq(rep->error->code, MXCACHE__ERROR_CODE__ERROR_TOO_LARGE);
    ck_assert_uint_eq(rep->id, 99);
    mxcache__reply__free_unpacked(rep, NULL);
    free(buf);

    /* A field over its own limit inside an acceptable request. */
    char longrcpt[1000];
    memset(longrcpt, 'b', sizeof longrcpt - 1);
    longrcpt[sizeof longrcpt - 1] = '\0';
    len = pack_check(WIRE_VERSION, 5, longrcpt, &buf);
    rep = raw_request(buf, len, 1);
    ck_assert_int_eq(rep->error->code, MXCACHE__ERROR_CODE__ERROR_INVALID_ARGUMENT);
    mxcache__reply__free_unpacked(rep, NULL);
    free(buf);

    /* Two frames from a DEALER: not our framing; an error reply with the id, counted. */
    len = pack_check(WIRE_VERSION, 6, "x@example.com", &buf);
    rep = raw_request(buf, len, 2);
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq(rep->error->code, MXCACHE__ERROR_CODE__ERROR_MALFORMED);
    ck_assert_uint_eq(rep->id, 6);
    mxcache__reply__free_unpacked(rep, NULL);
    free(buf);

    /* The daemon kept serving, and counted each case. */
    rep = check(c, "192.0.2.1", "unknown", "", "x@example.com");
    ck_assert_str_eq(rep->check->rule, "default");
    mxc_reply_free(rep);
    ck_assert_uint_eq(counter(c, "requests_malformed"), 2);
    ck_assert_uint_eq(counter(c, "requests_bad_version"), 1);
    ck_assert_uint_eq(counter(c, "requests_too_large"), 1);
    ck_assert_uint_eq(counter(c, "requests_invalid_argument"), 1);
    ck_assert_uint_eq(counter(c, "messages_bad_framing"), 1);
    mxc_client_destroy(c);
}
END_TEST

/* Every whitelist entry that a client saw acknowledged survives SIGKILL right after the reply. */
START_TEST(test_acknowledged_writes_survive_sigkill)
{
    char value[64], key[80];
    for (int round = 0; round < 3; round++) {
        mxc_client *c = client();
        for (int i = 0; i < 20; i++) {
            snprintf(value, sizeof value, "10.%d.%d.0/24", round, i);
            ck_assert_int_eq(wl_add(c, "client", value, 0, NULL), MXC_OK);
        }
        mxc_client_destroy(c);
        ck_assert_int_eq(stop_daemon(SIGKILL), -SIGKILL);
        start_daemon();
        c = client();
        for (int r = 0; r <= round; r++)
            for (int i = 0; i < 20; i++) {
                snprintf(key, sizeof key, "client:10.%d.%d.0/24", r, i);
                ck_assert_msg(get_found(c, MXCACHE__KEYSPACE__KEYSPACE_WHITELIST, key), "lost %s", key);
            }
        /* ... and the restarted daemon mirrors them into its whitelist. */
        Mxcache__Reply *rep = check(c, "10.0.3.9", "unknown", "", "x@example.com");
        ck_assert_str_eq(rep->check->rule, "whitelist");
        mxc_reply_free(rep);
        mxc_client_destroy(c);
    }
}
END_TEST

struct count_ctx {
    size_t n;
};

static int count_one(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    (void)k, (void)kl, (void)v, (void)vl;
    ((struct count_ctx *)arg)->n++;
    return 0;
}

static size_t on_disk(void)
{
    struct store_options so = {0};
    char path[300], err[256];
    struct count_ctx cc = {0};
    snprintf(path, sizeof path, "%s/db", dir);
    so.path = path;
    so.block_cache_bytes = 1 << 20;
    so.write_buffer_bytes = 1 << 20;
    so.max_background_jobs = 1;
    store *st = store_open(&so, err, sizeof err);
    ck_assert_msg(st != NULL, "%s", err);
    ck_assert_int_eq(store_scan(st, MXCACHE__KEYSPACE__KEYSPACE_WHITELIST, NULL, 0, NULL, 0, true,
                                count_one, &cc, err, sizeof err), 0);
    store_close(st);
    return cc.n;
}

/* The "done when": an entry with a 2-second lifetime vanishes from get after it expires
 * and from disk after compact; a permanent entry survives SIGTERM and restart. */
START_TEST(test_expiry_compaction_and_restart)
{
    mxc_client *c = client();
    ck_assert_int_eq(wl_add(c, "sender", "short.example", 2000, NULL), MXC_OK);
    ck_assert_int_eq(wl_add(c, "sender", "long.example", 0, NULL), MXC_OK);
    ck_assert(get_found(c, MXCACHE__KEYSPACE__KEYSPACE_WHITELIST, "sender:short.example"));
    Mxcache__Reply *rep = check(c, "192.0.2.1", "unknown", "a@short.example", "x@example.com");
    ck_assert_str_eq(rep->check->rule, "whitelist");
    mxc_reply_free(rep);
    test_sleep_ms(2300);
    ck_assert(!get_found(c, MXCACHE__KEYSPACE__KEYSPACE_WHITELIST, "sender:short.example"));
    rep = check(c, "192.0.2.1", "unknown", "a@short.example", "x@example.com");
    ck_assert_str_eq(rep->check->rule, "default");
    mxc_reply_free(rep);
    mxc_client_destroy(c);

    /* Still on disk before compaction ... */
    ck_assert_int_eq(stop_daemon(SIGTERM), 0);
    ck_assert(log_contains("EXIT result=clean"));
    ck_assert_uint_eq(on_disk(), 2);
    start_daemon();
    c = client();
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__CompactRequest cq = MXCACHE__COMPACT_REQUEST__INIT;
    req.body_case = MXCACHE__REQUEST__BODY_COMPACT;
    req.compact = &cq;
    ck_assert_int_eq(call(c, &req, &rep), MXC_OK);
    ck_assert_int_eq(rep->body_case, MXCACHE__REPLY__BODY_COMPACT);
    mxc_reply_free(rep);
    ck_assert(get_found(c, MXCACHE__KEYSPACE__KEYSPACE_WHITELIST, "sender:long.example"));
    mxc_client_destroy(c);
    ck_assert_int_eq(stop_daemon(SIGTERM), 0);
    /* ... and gone after it, while the permanent entry stays. */
    ck_assert_uint_eq(on_disk(), 1);
    start_daemon();
    c = client();
    ck_assert(get_found(c, MXCACHE__KEYSPACE__KEYSPACE_WHITELIST, "sender:long.example"));
    mxc_client_destroy(c);
}
END_TEST

static Mxcache__Reply *list_page(mxc_client *c, Mxcache__Keyspace ks, const char *after, uint32_t limit)
{
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__ListRequest q = MXCACHE__LIST_REQUEST__INIT;
    Mxcache__Reply *rep = NULL;
    q.keyspace = ks;
    q.start_after = (char *)after;
    q.limit = limit;
    req.body_case = MXCACHE__REQUEST__BODY_LIST;
    req.list = &q;
    ck_assert_int_eq(call(c, &req, &rep), MXC_OK);
    ck_assert_int_eq(rep->body_case, MXCACHE__REPLY__BODY_LIST);
    return rep;
}

/* A page examines a bounded number of records, expired ones included, and says where to go on;
 * paging still reaches every live entry exactly once. */
START_TEST(test_list_is_bounded_by_expired_records)
{
    mxc_client *c = client();
    char value[64];
    for (int i = 0; i < 40; i++) {
        snprintf(value, sizeof value, "10.1.%d.0/24", i);
        ck_assert_int_eq(wl_add(c, "client", value, 1000, NULL), MXC_OK);
    }
    ck_assert_int_eq(wl_add(c, "client", "10.9.0.0/16", 0, NULL), MXC_OK);
    test_sleep_ms(1300);
    /* limit 2: at most 20 records examined, all expired: an empty page with a cursor. */
    Mxcache__Reply *rep = list_page(c, MXCACHE__KEYSPACE__KEYSPACE_WHITELIST, "", 2);
    ck_assert_uint_eq(rep->list->n_entries, 0);
    ck_assert_str_ne(rep->list->next, "");
    char next[256];
    snprintf(next, sizeof next, "%s", rep->list->next);
    mxc_reply_free(rep);
    int live = 0, pages = 1;
    while (next[0] && pages < 100) {
        rep = list_page(c, MXCACHE__KEYSPACE__KEYSPACE_WHITELIST, next, 2);
        for (size_t i = 0; i < rep->list->n_entries; i++, live++)
            ck_assert_str_eq(rep->list->entries[i]->key, "client:10.9.0.0/16");
        snprintf(next, sizeof next, "%s", rep->list->next);
        mxc_reply_free(rep);
        pages++;
    }
    ck_assert_int_eq(live, 1);
    ck_assert_int_lt(pages, 100);
    mxc_client_destroy(c);
}
END_TEST

START_TEST(test_whitelist_ttl_bounds)
{
    mxc_client *c = client();
    Mxcache__Reply *rep = NULL;
    /* A TTL that would wrap the clock is refused, not stored as already expired. */
    ck_assert_int_eq(wl_add(c, "client", "198.51.100.7", UINT64_MAX, &rep), MXC_ESERVER);
    ck_assert_int_eq(rep->error->code, MXCACHE__ERROR_CODE__ERROR_INVALID_ARGUMENT);
    mxc_reply_free(rep);
    ck_assert_int_eq(wl_add(c, "client", "198.51.100.7", 3650ull * 86400000ull, NULL), MXC_OK);
    ck_assert(get_found(c, MXCACHE__KEYSPACE__KEYSPACE_WHITELIST, "client:198.51.100.7/32"));
    mxc_client_destroy(c);
}
END_TEST

struct compact_ctx {
    int done, status;
};

static void on_compact(void *arg, int status, const Mxcache__Reply *rep)
{
    struct compact_ctx *cc = arg;
    cc->done = 1;
    cc->status = (status == MXC_OK && rep->body_case == MXCACHE__REPLY__BODY_COMPACT) ? MXC_OK : status;
}

/* A compaction queued among Checks (it runs after its round, on a worker the main thread then
 * passes over) is answered, and so is every Check around it. */
START_TEST(test_compact_while_checking)
{
    mxc_client *c = client();
    char value[64];
    for (int i = 0; i < 200; i++) {
        snprintf(value, sizeof value, "10.2.%d.%d", i / 250, i % 250);
        ck_assert_int_eq(wl_add(c, "client", value, 0, NULL), MXC_OK);
    }
    struct compact_ctx compact = {0, 0};
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__CompactRequest cq = MXCACHE__COMPACT_REQUEST__INIT;
    req.body_case = MXCACHE__REQUEST__BODY_COMPACT;
    req.compact = &cq;
    ck_assert_int_eq(mxc_submit(c, &req, 20000, on_compact, &compact, NULL), MXC_OK);
    for (int i = 0; i < 50; i++) {
        Mxcache__Reply *rep = check(c, "10.2.0.7", "unknown", "", "x@example.com");
        ck_assert_str_eq(rep->check->rule, "whitelist");
        mxc_reply_free(rep);
    }
    pump(c, 20000);
    ck_assert_int_eq(compact.done, 1);
    ck_assert_int_eq(compact.status, MXC_OK);
    mxc_client_destroy(c);
}
END_TEST

START_TEST(test_sighup_reload)
{
    mxc_client *c = client();
    Mxcache__Reply *rep;

    write_config("default_action = \"defer\"; default_code = 451; default_status = \"4.7.1\"; "
                 "default_text = \"Try again later\";");
    kill(daemon_pid, SIGHUP);
    long deadline = test_now_ms() + 10000;
    for (;;) {
        rep = check(c, "192.0.2.1", "unknown", "", "x@example.com");
        if (rep->check->action == MXCACHE__ACTION__ACTION_DEFER)
            break;
        mxc_reply_free(rep);
        ck_assert_msg(test_now_ms() < deadline, "reload not applied");
        test_sleep_ms(50);
    }
    ck_assert_uint_eq(rep->check->smtp_code, 451);
    ck_assert_str_eq(rep->check->enhanced_status, "4.7.1");
    ck_assert_str_eq(rep->check->text, "Try again later");
    mxc_reply_free(rep);

    /* A config with errors is refused and the running one stays. */
    write_config("default_action = \"reject\"; default_code = 450;");
    kill(daemon_pid, SIGHUP);
    deadline = test_now_ms() + 10000;
    while (!log_contains("result=refused")) {
        ck_assert_msg(test_now_ms() < deadline, "refusal not logged");
        test_sleep_ms(50);
    }
    rep = check(c, "192.0.2.1", "unknown", "", "x@example.com");
    ck_assert_int_eq(rep->check->action, MXCACHE__ACTION__ACTION_DEFER);
    mxc_reply_free(rep);
    mxc_client_destroy(c);
}
END_TEST

START_TEST(test_failover_from_unreachable_endpoint)
{
    char err[256];
    struct mxc_options opt;
    mxc_options_init(&opt);
    opt.timeout_ms = 3000;
    opt.failover_ms = 200;
    /* Port 9 (discard) on loopback: nobody listens there in a test environment. */
    const char *eps[] = {"tcp://127.0.0.1:9", ipc_ep};
    mxc_client *c = mxc_client_create(eps, 2, &opt, err, sizeof err);
    ck_assert_ptr_nonnull(c);
    long t0 = test_now_ms();
    ck_assert(stats_ok(c) || stats_ok(c));
    ck_assert_msg(test_now_ms() - t0 < 3000, "failover took too long");
    ck_assert_str_eq(mxc_current_endpoint(c), ipc_ep);
    mxc_client_destroy(c);

    /* Nothing reachable: a bounded wait, then MXC_ETIMEDOUT. */
    const char *dead[] = {"tcp://127.0.0.1:9"};
    opt.timeout_ms = 300;
    c = mxc_client_create(dead, 1, &opt, err, sizeof err);
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__StatsRequest sr = MXCACHE__STATS_REQUEST__INIT;
    Mxcache__Reply *rep = NULL;
    req.body_case = MXCACHE__REQUEST__BODY_STATS;
    req.stats = &sr;
    t0 = test_now_ms();
    ck_assert_int_eq(mxc_call(c, &req, 0, &rep), MXC_ETIMEDOUT);
    ck_assert_ptr_null(rep);
    ck_assert_msg(test_now_ms() - t0 < 2300, "timeout not bounded");
    mxc_client_destroy(c);
}
END_TEST

struct async_ctx {
    int ok, failed;
};

static void on_reply(void *arg, int status, const Mxcache__Reply *rep)
{
    struct async_ctx *ac = arg;
    if (status == MXC_OK && rep->body_case == MXCACHE__REPLY__BODY_CHECK)
        ac->ok++;
    else
        ac->failed++;
}

struct ordered {
    int n;
    char order[8];      /* tags in the order the replies came */
    char rule[8][32];   /* the rule of each tag's reply */
};

struct tagged {
    struct ordered *o;
    char tag;
};

static void on_ordered(void *arg, int status, const Mxcache__Reply *rep)
{
    struct tagged *t = arg;
    struct ordered *o = t->o;
    ck_assert_int_eq(status, MXC_OK);
    ck_assert_int_eq(rep->body_case, MXCACHE__REPLY__BODY_CHECK);
    snprintf(o->rule[t->tag - 'A'], sizeof o->rule[0], "%s", rep->check->rule);
    o->order[o->n++] = t->tag;
}

/* A reply waits only for the sync of the writes it rests on. Syncs are held 100 ms apart: right
 * after one, a new triplet (A, a decisive write) and its immediate retry (B, which reads A's
 * write) must wait for the next sync, while a whitelisted client's Check (C), sent after them
 * and resting on nothing unsynced, is answered before them. Exactly A and B count as held. */
START_TEST(test_replies_wait_only_for_their_sync)
{
    stop_daemon(SIGTERM);
    write_full_config("sync_interval = \"100ms\";", NULL, NULL);
    start_daemon();
    mxc_client *c = client();
    ck_assert_int_eq(wl_add(c, "client", "198.51.100.0/24", 0, NULL), MXC_OK);
    Mxcache__Reply *rep = check(c, "192.0.2.1", "unknown", "s@sender.example", "first@example.net");
    ck_assert_str_eq(rep->check->rule, "greylist_new"); /* its sync starts the 100 ms */
    mxc_reply_free(rep);
    uint64_t held = counter(c, "replies_held_for_sync");

    struct ordered o = {0};
    struct tagged t[3] = {{&o, 'A'}, {&o, 'B'}, {&o, 'C'}};
    const char *ip[3] = {"192.0.2.2", "192.0.2.2", "198.51.100.7"};
    for (int i = 0; i < 3; i++) {
        Mxcache__Request req = MXCACHE__REQUEST__INIT;
        Mxcache__CheckRequest q = MXCACHE__CHECK_REQUEST__INIT;
        q.client_address = (char *)ip[i];
        q.client_name = "unknown";
        q.sender = "s@sender.example";
        q.recipient = "second@example.net";
        q.protocol_state = "RCPT";
        req.body_case = MXCACHE__REQUEST__BODY_CHECK;
        req.check = &q;
        ck_assert_int_eq(mxc_submit(c, &req, 10000, on_ordered, &t[i], NULL), MXC_OK);
    }
    pump(c, 10000);
    ck_assert_int_eq(o.n, 3);
    ck_assert_msg(o.order[0] == 'C', "replies came as %.3s", o.order);
    ck_assert_str_eq(o.rule[0], "greylist_new");
    ck_assert_str_eq(o.rule[1], "greylist_early");
    ck_assert_str_eq(o.rule[2], "whitelist");
    ck_assert_uint_eq(counter(c, "replies_held_for_sync") - held, 2);
    mxc_client_destroy(c);
}
END_TEST

/* ---- recipient verification against the test SMTP server ---- */

struct vctx {
    int done;
    int rejects;
    int other;
};

static void on_verify(void *arg, int status, const Mxcache__Reply *rep)
{
    struct vctx *v = arg;
    v->done++;
    if (status == MXC_OK && rep->body_case == MXCACHE__REPLY__BODY_CHECK &&
        rep->check->action == MXCACHE__ACTION__ACTION_REJECT && rep->check->smtp_code == 550 &&
        strcmp(rep->check->rule, "verify_negative") == 0)
        v->rejects++;
    else
        v->other++;
}

/* Verification through the service: a known recipient passes, an unknown one gets the
 * backend's 550 word for word on every ask and from the cache; many questions about one
 * address from several clients while its probe runs make one RCPT; a probe slower than
 * verify.wait gives 450 4.1.1 and its result serves the retry; a hostile address and a domain
 * without a route never reach the backend; with the backend gone, a new recipient gets 4xx. */
START_TEST(test_verify_flow)
{
    smtpd_run_start(&smtpd, "rcpt alice@example.com 250 2.1.5 Ok\n"
                            "rcpt carol@example.com slow 400 550 5.1.1 <ADDR>: no such user\n"
                            "rcpt slow@example.com slow 1500 250 2.1.5 Ok\n");
    char verify[512];
    snprintf(verify, sizeof verify,
             "wait = \"700ms\"; routes = ( { domains = [ \"example.com\" ]; "
             "hosts = [ \"127.0.0.1:%u\" ]; helo = \"mx.test\"; connect_timeout = \"1s\"; } );",
             smtpd.port);
    stop_daemon(SIGTERM);
    write_verify_config(NULL, NULL, "enabled = false;", verify);
    start_daemon();
    mxc_client *c = client();
    Mxcache__Reply *rep;

    rep = check(c, "192.0.2.1", "unknown", "s@sender.example", "alice@example.com");
    ck_assert_int_eq(rep->check->action, MXCACHE__ACTION__ACTION_DUNNO);
    ck_assert_str_eq(rep->check->rule, "verify_positive");
    mxc_reply_free(rep);
    for (int i = 0; i < 2; i++) { /* probed, then from the cache */
        rep = check(c, "192.0.2.1", "unknown", "s@sender.example", "bob@example.com");
        ck_assert_int_eq(rep->check->action, MXCACHE__ACTION__ACTION_REJECT);
        ck_assert_uint_eq(rep->check->smtp_code, 550);
        ck_assert_str_eq(rep->check->enhanced_status, "5.1.1");
        ck_assert_str_eq(rep->check->text,
                         "bob@example.com: Recipient address rejected: User unknown in local recipient table");
        mxc_reply_free(rep);
    }
    ck_assert_int_eq(smtpd_run_count(&smtpd, "cmd=RCPT TO:<bob@example.com>"), 1);

    /* Twelve questions about carol from three clients while her probe runs: one RCPT. */
    struct vctx v = {0};
    static const char *const ips[] = {"192.0.2.7", "198.51.100.7", "203.0.113.7"};
    for (int i = 0; i < 12; i++) {
        Mxcache__Request req = MXCACHE__REQUEST__INIT;
        Mxcache__CheckRequest q = MXCACHE__CHECK_REQUEST__INIT;
        q.client_address = (char *)ips[i % 3];
        q.sender = "s@sender.example";
        q.recipient = "carol@example.com";
        q.protocol_state = "RCPT";
        req.body_case = MXCACHE__REQUEST__BODY_CHECK;
        req.check = &q;
        ck_assert_int_eq(mxc_submit(c, &req, 10000, on_verify, &v, NULL), MXC_OK);
    }
    pump(c, 10000);
    ck_assert_int_eq(v.done, 12);
    ck_assert_int_eq(v.rejects, 12);
    ck_assert_int_eq(smtpd_run_count(&smtpd, "cmd=RCPT TO:<carol@example.com>"), 1);
    /* One DECISION line per answer, for those that waited for the probe too. */
    ck_assert(log_contains(" mx=mx01.test queue= client=192.0.2.1 sender=<s@sender.example> "
                           "recipient=<bob@example.com> action=reject rule=verify_negative "
                           "reply=\"550 5.1.1 bob@example.com: Recipient address rejected: User "
                           "unknown in local recipient table\""));
    ck_assert(log_contains("client=203.0.113.7 sender=<s@sender.example> "
                           "recipient=<carol@example.com> action=reject rule=verify_negative"));

    /* Slower than verify.wait: 450 4.1.1 now, the answer for the retry. */
    rep = check(c, "192.0.2.1", "unknown", "s@sender.example", "slow@example.com");
    ck_assert_int_eq(rep->check->action, MXCACHE__ACTION__ACTION_DEFER);
    ck_assert_uint_eq(rep->check->smtp_code, 450);
    ck_assert_str_eq(rep->check->enhanced_status, "4.1.1");
    ck_assert_str_eq(rep->check->rule, "verify_pending");
    mxc_reply_free(rep);
    long deadline = test_now_ms() + 10000;
    for (;;) {
        rep = check(c, "192.0.2.1", "unknown", "s@sender.example", "slow@example.com");
        bool passed = strcmp(rep->check->rule, "verify_positive") == 0;
        mxc_reply_free(rep);
        if (passed)
            break;
        ck_assert_msg(test_now_ms() < deadline, "the slow probe's result never served the retry");
        test_sleep_ms(200);
    }
    ck_assert_int_eq(smtpd_run_count(&smtpd, "cmd=RCPT TO:<slow@example.com>"), 1);

    /* Hostile and unrouted recipients never reach the backend. */
    rep = check(c, "192.0.2.1", "unknown", "s@sender.example", "evil\r\nDATA@example.com");
    ck_assert_int_eq(rep->check->action, MXCACHE__ACTION__ACTION_DEFER);
    ck_assert_str_eq(rep->check->rule, "verify_bad_address");
    mxc_reply_free(rep);
    rep = check(c, "192.0.2.1", "unknown", "s@sender.example", "x@example.org");
    ck_assert_str_eq(rep->check->rule, "default");
    mxc_reply_free(rep);
    ck_assert_int_eq(smtpd_run_count(&smtpd, "DATA"), 0);
    ck_assert(log_contains("recipient=<evil\\x0d\\x0aDATA@example.com> action=defer rule=verify_bad_address"));
    ck_assert_int_eq(smtpd_run_count(&smtpd, "example.org"), 0);

    /* The backend goes away: a new recipient gets 4xx, never 5xx; cached answers still serve. */
    smtpd_run_stop(&smtpd);
    rep = check(c, "192.0.2.1", "unknown", "s@sender.example", "dave@example.com");
    ck_assert_int_eq(rep->check->action, MXCACHE__ACTION__ACTION_DEFER);
    ck_assert_uint_eq(rep->check->smtp_code / 100, 4);
    mxc_reply_free(rep);
    rep = check(c, "192.0.2.1", "unknown", "s@sender.example", "bob@example.com");
    ck_assert_int_eq(rep->check->action, MXCACHE__ACTION__ACTION_REJECT);
    mxc_reply_free(rep);
    ck_assert_uint_ge(counter(c, "decisions_rule_verify_negative"), 14);
    mxc_client_destroy(c);
}
END_TEST

/* verify.before_greylist: an unknown recipient is refused at once, without a greylisting entry;
 * a known one, once its probe says so, is greylisted as usual (the waiting Check is decided
 * again), and from then on verification passes and greylisting decides. */
START_TEST(test_verify_before_greylist)
{
    smtpd_run_start(&smtpd, "rcpt alice@example.com 250 2.1.5 Ok\n");
    char verify[512];
    snprintf(verify, sizeof verify,
             "before_greylist = true; routes = ( { domains = [ \"example.com\" ]; "
             "hosts = [ \"127.0.0.1:%u\" ]; } );", smtpd.port);
    stop_daemon(SIGTERM);
    write_verify_config(NULL, NULL, NULL, verify);
    start_daemon();
    mxc_client *c = client();
    Mxcache__Reply *rep;

    rep = check(c, "192.0.2.1", "unknown", "s@sender.example", "bob@example.com");
    ck_assert_int_eq(rep->check->action, MXCACHE__ACTION__ACTION_REJECT);
    ck_assert_str_eq(rep->check->rule, "verify_negative");
    mxc_reply_free(rep);
    ck_assert(!get_found(c, MXCACHE__KEYSPACE__KEYSPACE_GREYLIST,
                         "192.0.2.0/24/s@sender.example/bob@example.com"));

    for (int i = 0; i < 2; i++) { /* after the probe, then from the cache */
        rep = check(c, "192.0.2.1", "unknown", "s@sender.example", "alice@example.com");
        ck_assert_int_eq(rep->check->action, MXCACHE__ACTION__ACTION_DEFER);
        ck_assert_str_eq(rep->check->rule, i == 0 ? "greylist_new" : "greylist_early");
        ck_assert_str_eq(rep->check->enhanced_status, "4.7.1");
        mxc_reply_free(rep);
    }
    ck_assert_int_eq(smtpd_run_count(&smtpd, "cmd=RCPT TO:<alice@example.com>"), 1);
    mxc_client_destroy(c);
}
END_TEST

/* A positive due for refresh is served at once while one background probe refreshes it: the
 * backend, now slow, delays no answer, and two Checks of a due address make one probe. */
START_TEST(test_verify_refresh_ahead)
{
    char verify[512];
    smtpd_run_start(&smtpd, "rcpt alice@example.com 250 2.1.5 Ok\n");
    snprintf(verify, sizeof verify,
             "refresh_after = \"1s\"; routes = ( { domains = [ \"example.com\" ]; "
             "hosts = [ \"127.0.0.1:%u\" ]; } );", smtpd.port);
    stop_daemon(SIGTERM);
    write_verify_config(NULL, NULL, "enabled = false;", verify);
    start_daemon();
    mxc_client *c = client();
    Mxcache__Reply *rep = check(c, "192.0.2.1", "unknown", "s@sender.example", "alice@example.com");
    ck_assert_str_eq(rep->check->rule, "verify_positive");
    mxc_reply_free(rep);
    ck_assert_uint_eq(smtpd_run_count(&smtpd, "cmd=RCPT TO:<alice@example.com>"), 1);

    smtpd_run_reload(&smtpd, "rcpt alice@example.com slow 3000 250 2.1.5 Ok\n");
    test_sleep_ms(1200); /* the positive is now due for refresh */
    for (int i = 0; i < 2; i++) {
        rep = check(c, "192.0.2.1", "unknown", "s@sender.example", "alice@example.com");
        ck_assert_int_eq(rep->check->action, MXCACHE__ACTION__ACTION_DUNNO);
        ck_assert_str_eq(rep->check->rule, "verify_positive");
        mxc_reply_free(rep);
    }
    /* Both answered while the refresh still waits for the slow backend. */
    ck_assert_uint_eq(counter(c, "verify_probes_running"), 1);
    ck_assert_uint_eq(smtpd_run_wait(&smtpd, "cmd=RCPT TO:<alice@example.com>", 2, 10000), 2);
    long deadline = test_now_ms() + 10000;
    while (counter(c, "verify_probes_running") != 0) {
        ck_assert_msg(test_now_ms() < deadline, "the refresh probe did not finish");
        test_sleep_ms(100);
    }
    ck_assert_uint_eq(smtpd_run_count(&smtpd, "cmd=RCPT TO:<alice@example.com>"), 2);
    ck_assert_uint_eq(counter(c, "verify_refreshes_due"), 2);
    mxc_client_destroy(c);
}
END_TEST

START_TEST(test_many_in_flight)
{
    mxc_client *c = client();
    struct async_ctx ac = {0};
    enum { N = 2000 };
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__CheckRequest q = MXCACHE__CHECK_REQUEST__INIT;
    char rcpt[64];
    q.client_address = "192.0.2.1";
    q.recipient = rcpt;
    req.body_case = MXCACHE__REQUEST__BODY_CHECK;
    req.check = &q;
    for (int i = 0; i < N; i++) {
        snprintf(rcpt, sizeof rcpt, "user%d@example.com", i);
        ck_assert_int_eq(mxc_submit(c, &req, 10000, on_reply, &ac, NULL), MXC_OK);
    }
    pump(c, 20000);
    ck_assert_int_eq(ac.ok, N);
    ck_assert_int_eq(ac.failed, 0);
    mxc_client_destroy(c);
}
END_TEST

/* Whitelists from files in postgrey's formats: Debian's own postgrey lists load as they are, an
 * operator's file matches with its FILE:LINE, a reload picks up a changed file, and a file with
 * errors refuses the reload (and fails --check-config) with its FILE:LINE. */
START_TEST(test_whitelist_files)
{
    const char *src = getenv("MXCACHE_SOURCE_DIR");
    char clients[300], rcpts[300], extra[1200], cmd[900], out[2048];
    ck_assert_ptr_nonnull(src);
    snprintf(clients, sizeof clients, "%s/clients", dir);
    snprintf(rcpts, sizeof rcpts, "%s/recipients", dir);
    FILE *f = fopen(clients, "w");
    fprintf(f, "# partner relays\n198.51.100.0/24\nrelay.partner.example\n/^mx[0-9]+\\.bulk\\.example$/\n");
    fclose(f);
    f = fopen(rcpts, "w");
    fprintf(f, "postmaster@\nabuse@our.example\n");
    fclose(f);
    snprintf(extra, sizeof extra,
             "};\nwhitelist: { client_files = [\"%s/tests/data/postgrey/whitelist_clients\", \"%s\"];"
             " recipient_files = [\"%s/tests/data/postgrey/whitelist_recipients\", \"%s\"]; ",
             src, clients, src, rcpts);
    write_greylist_config(NULL, extra); /* greylisting on, files named */
    kill(daemon_pid, SIGHUP);
    mxc_client *c = client();
    long deadline = test_now_ms() + 10000;
    Mxcache__Reply *rep;
    for (;;) {
        rep = check(c, "198.51.100.7", "unknown", "a@b.example", "user@our.example");
        if (strcmp(rep->check->rule, "whitelist") == 0)
            break;
        mxc_reply_free(rep);
        ck_assert_msg(test_now_ms() < deadline, "whitelist files not loaded");
        test_sleep_ms(50);
    }
    char want[400];
    snprintf(want, sizeof want, "%s:2", clients);
    ck_assert_str_eq(rep->check->text, want);
    mxc_reply_free(rep);
    static const struct {
        const char *ip, *name, *rcpt, *rule;
    } cases[] = {
        {"192.0.2.1", "relay.partner.example", "user@our.example", "whitelist"},
        {"192.0.2.1", "mx12.bulk.example", "user@our.example", "whitelist"},
        {"192.0.2.1", "mx12.bulk.example.evil", "user@our.example", "greylist_new"},
        {"192.0.2.2", "unknown", "postmaster@anything.example", "whitelist"},
        {"192.0.2.3", "unknown", "abuse@our.example", "whitelist"},
        {"192.0.2.4", "unknown", "sales@our.example", "greylist_new"},
        {"192.0.2.6", "unknown", "abuse@their.example", "whitelist"}, /* Debian: abuse@ */
        {"192.0.2.5", "lists.debian.org", "user@our.example", "whitelist"}, /* Debian's file */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rep = check(c, cases[i].ip, cases[i].name, "a@b.example", cases[i].rcpt);
        ck_assert_msg(strcmp(rep->check->rule, cases[i].rule) == 0, "case %zu: rule %s", i, rep->check->rule);
        mxc_reply_free(rep);
    }

    /* A broken file: --check-config names it with its line; SIGHUP keeps the running lists. */
    f = fopen(clients, "a");
    fprintf(f, "/unbalanced(/\n");
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s --check-config --config %s 2>&1; echo exit=$?", getenv("MXCACHED"), cfg_path);
    FILE *p = popen(cmd, "r");
    size_t n = fread(out, 1, sizeof out - 1, p);
    pclose(p);
    out[n] = '\0';
    snprintf(want, sizeof want, "%s:5:", clients);
    ck_assert_msg(strstr(out, want) && strstr(out, "exit=1"), "check-config said: %s", out);
    kill(daemon_pid, SIGHUP);
    deadline = test_now_ms() + 10000;
    while (!log_contains("result=refused")) {
        ck_assert_msg(test_now_ms() < deadline, "refusal not logged");
        test_sleep_ms(50);
    }
    rep = check(c, "198.51.100.8", "unknown", "a@b.example", "user@our.example");
    ck_assert_str_eq(rep->check->rule, "whitelist");
    mxc_reply_free(rep);
    mxc_client_destroy(c);
}
END_TEST

START_TEST(test_check_config_reports_lines)
{
    char cmd[700], out[2048];
    FILE *f = fopen(cfg_path, "w");
    fprintf(f, "server: {\n  workers = 1;\n  bogus = 3;\n};\nstore: { sync = \"maybe\"; };\n");
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s --check-config --config %s 2>&1; echo exit=$?", getenv("MXCACHED"), cfg_path);
    FILE *p = popen(cmd, "r");
    size_t n = fread(out, 1, sizeof out - 1, p);
    pclose(p);
    out[n] = '\0';
    char want[400];
    snprintf(want, sizeof want, "%s:3:", cfg_path);
    ck_assert_msg(strstr(out, want) != NULL, "no line 3 error in: %s", out);
    snprintf(want, sizeof want, "%s:5:", cfg_path);
    ck_assert_msg(strstr(out, want) != NULL, "no line 5 error in: %s", out);
    ck_assert_msg(strstr(out, "exit=1") != NULL, "exit status: %s", out);
}
END_TEST

/* wait_rule - repeats a Check until its rule is want (a SIGHUP is applied by the next round). */
static void wait_rule(mxc_client *c, const char *rcpt, const char *want)
{
    long deadline = test_now_ms() + 10000;
    for (;;) {
        Mxcache__Reply *rep = check(c, "198.51.100.200", "unknown", "probe@example.org", rcpt);
        int done = strcmp(rep->check->rule, want) == 0;
        mxc_reply_free(rep);
        if (done)
            return;
        ck_assert_msg(test_now_ms() < deadline, "reload to rule %s not applied", want);
        test_sleep_ms(50);
    }
}

/* One greylisted mail through the real daemon: switched on by SIGHUP with a 2-second delay,
 * deferred, deferred again on an early retry (with another BATV tag, from another address of
 * the /24), explained without a change, passed with the X-Greylist header after the delay,
 * then known; the triplet survives a restart, and SIGHUP switches greylisting off again. */
START_TEST(test_greylist_flow)
{
    static const char *const sender1 = "prvs=1234abcdef=Bounce@Sender.Example";
    static const char *const sender2 = "prvs=9876fedcba=bounce@sender.example";
    static const char *const key = "192.0.2.0/24/bounce@sender.example/user@example.net";
    mxc_client *c = client();
    Mxcache__Reply *rep;

    write_greylist_config(NULL, "delay = \"2s\"; retry_window = \"1h\";");
    kill(daemon_pid, SIGHUP);
    wait_rule(c, "reload@example.net", "greylist_new");

    long t0 = test_now_ms();
    rep = check(c, "192.0.2.10", "unknown", sender1, "User@Example.NET");
    ck_assert_int_eq(rep->check->action, MXCACHE__ACTION__ACTION_DEFER);
    ck_assert_str_eq(rep->check->rule, "greylist_new");
    ck_assert_uint_eq(rep->check->smtp_code, 450);
    ck_assert_str_eq(rep->check->enhanced_status, "4.7.1");
    ck_assert_str_eq(rep->check->text, "Greylisted, please try again in 2 seconds");
    ck_assert_str_eq(rep->check->prepend, "");
    mxc_reply_free(rep);
    ck_assert(get_found(c, MXCACHE__KEYSPACE__KEYSPACE_GREYLIST, key));

    rep = check(c, "192.0.2.77", "unknown", sender2, "user@example.net");
    ck_assert_int_eq(rep->check->action, MXCACHE__ACTION__ACTION_DEFER);
    ck_assert_str_eq(rep->check->rule, "greylist_early");
    mxc_reply_free(rep);

    rep = check_explain(c, "192.0.2.77", "unknown", sender2, "user@example.net");
    ck_assert_str_eq(rep->check->rule, "greylist_early");
    ck_assert_msg(strstr(rep->check->explanation, key) != NULL, "explanation: %s",
                  rep->check->explanation);
    ck_assert_msg(strstr(rep->check->explanation, "whitelist: no entry matches") != NULL,
                  "explanation: %s", rep->check->explanation);
    mxc_reply_free(rep);

    long left = t0 + 2100 - test_now_ms();
    if (left > 0)
        test_sleep_ms(left);
    rep = check(c, "192.0.2.200", "unknown", sender2, "user@example.net");
    ck_assert_int_eq(rep->check->action, MXCACHE__ACTION__ACTION_DUNNO);
    ck_assert_str_eq(rep->check->rule, "greylist_pass");
    static const char *const want[] = {"X-Greylist: delayed 2 seconds by mxcache at mx01.test; ",
                                       "X-Greylist: delayed 3 seconds by mxcache at mx01.test; "};
    ck_assert_msg(strncmp(rep->check->prepend, want[0], strlen(want[0])) == 0 ||
                      strncmp(rep->check->prepend, want[1], strlen(want[1])) == 0,
                  "prepend: %s", rep->check->prepend);
    ck_assert_uint_ge(rep->check->fact_age_ms, 2000);
    mxc_reply_free(rep);

    rep = check(c, "192.0.2.10", "unknown", sender1, "user@example.net");
    ck_assert_int_eq(rep->check->action, MXCACHE__ACTION__ACTION_DUNNO);
    ck_assert_str_eq(rep->check->rule, "greylist_known");
    ck_assert_str_eq(rep->check->prepend, "");
    mxc_reply_free(rep);

    ck_assert_uint_eq(counter(c, "greylist_deferred"), 1);
    ck_assert_uint_eq(counter(c, "greylist_passed"), 1);
    ck_assert_uint_eq(counter(c, "greylist_known"), 1);
    ck_assert_uint_eq(counter(c, "decisions_rule_greylist_pass"), 1);
    ck_assert_uint_eq(counter(c, "requests_check_explain"), 1);
    mxc_client_destroy(c);

    /* Durable: the passed triplet is known after a restart. */
    ck_assert_int_eq(stop_daemon(SIGTERM), 0);
    start_daemon();
    c = client();
    rep = check(c, "192.0.2.10", "unknown", sender1, "user@example.net");
    ck_assert_str_eq(rep->check->rule, "greylist_known");
    mxc_reply_free(rep);

    /* SIGHUP switches it off again: the default answer decides. */
    write_config(NULL);
    kill(daemon_pid, SIGHUP);
    wait_rule(c, "off@example.net", "default");
    mxc_client_destroy(c);
}
END_TEST

/* A greylist.key_file that cannot be read stops the start (and --check-config) with the reason,
 * and refuses a reload while the running config stays. */
START_TEST(test_greylist_key_file)
{
    char cmd[800], out[2048], extra[700];
    snprintf(extra, sizeof extra, "hash_keys = true; key_file = \"%s/missing.key\";", dir);
    write_greylist_config(NULL, extra);
    snprintf(cmd, sizeof cmd, "%s --check-config --config %s 2>&1; echo exit=$?", getenv("MXCACHED"),
             cfg_path);
    FILE *p = popen(cmd, "r");
    size_t n = fread(out, 1, sizeof out - 1, p);
    pclose(p);
    out[n] = '\0';
    ck_assert_msg(strstr(out, "greylist.key_file") != NULL && strstr(out, "exit=1") != NULL,
                  "check-config: %s", out);

    kill(daemon_pid, SIGHUP);
    long deadline = test_now_ms() + 10000;
    while (!log_contains("result=refused")) {
        ck_assert_msg(test_now_ms() < deadline, "refusal not logged");
        test_sleep_ms(50);
    }
    mxc_client *c = client();
    Mxcache__Reply *rep = check(c, "192.0.2.1", "unknown", "", "x@example.com");
    ck_assert_str_eq(rep->check->rule, "default");
    mxc_reply_free(rep);
    mxc_client_destroy(c);

    /* With a key of 32 bytes it loads, and the stored key is a hash. */
    char keypath[400];
    snprintf(keypath, sizeof keypath, "%s/greylist.key", dir);
    FILE *f = fopen(keypath, "w");
    ck_assert_ptr_nonnull(f);
    fputs("0123456789abcdef0123456789abcdef", f);
    fclose(f);
    snprintf(extra, sizeof extra, "hash_keys = true; key_file = \"%s\";", keypath);
    write_greylist_config(NULL, extra);
    kill(daemon_pid, SIGHUP);
    c = client();
    wait_rule(c, "hashed@example.net", "greylist_new");
    ck_assert(!get_found(c, MXCACHE__KEYSPACE__KEYSPACE_GREYLIST,
                         "198.51.100.0/24/probe@example.org/hashed@example.net"));
    mxc_client_destroy(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("service");
    TCase *tc = tcase_create("mxcached");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_default_answer_and_whitelists);
    tcase_add_test(tc, test_bad_requests_get_error_replies);
    tcase_add_test(tc, test_acknowledged_writes_survive_sigkill);
    tcase_add_test(tc, test_expiry_compaction_and_restart);
    tcase_add_test(tc, test_sighup_reload);
    tcase_add_test(tc, test_failover_from_unreachable_endpoint);
    tcase_add_test(tc, test_many_in_flight);
    tcase_add_test(tc, test_replies_wait_only_for_their_sync);
    tcase_add_test(tc, test_verify_flow);
    tcase_add_test(tc, test_verify_before_greylist);
    tcase_add_test(tc, test_verify_refresh_ahead);
    tcase_add_test(tc, test_check_config_reports_lines);
    tcase_add_test(tc, test_whitelist_files);
    tcase_add_test(tc, test_list_is_bounded_by_expired_records);
    tcase_add_test(tc, test_whitelist_ttl_bounds);
    tcase_add_test(tc, test_compact_while_checking);
    tcase_add_test(tc, test_greylist_flow);
    tcase_add_test(tc, test_greylist_key_file);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
