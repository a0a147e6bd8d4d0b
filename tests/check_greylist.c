/* check_greylist - unit tests of server/greylist.c: the greylisting decision against a real
 * RocksDB store in a mkdtemp directory, with a test clock (store_options.now_ms) that moves
 * time without sleeping. Covers each rule (new, early, pass with its header, known, start over
 * after the retry window, auto-whitelist after N passes and not before), client grouping (IPv4
 * /24, IPv6 /64, IPv4-mapped, other prefixes, registered domains of forward-confirmed names),
 * sender normalization in the key, greylist.domains and exempt_domains, hashed keys, delay 0,
 * explain (which must write nothing: the store is compared before and after), hostile fields,
 * and the handler's Check through handler_request (explanation, counters). */
#include <check.h>
#include <ftw.h>
#include <stdbool.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "counters.h"
#include "greylist.h"
#include "handler.h"
#include "mxc_err.h"
#include "store.h"
#include "whitelist.h"
#include "wire.h"

#define KS_GREYLIST MXCACHE__KEYSPACE__KEYSPACE_GREYLIST
#define KS_AWL MXCACHE__KEYSPACE__KEYSPACE_AWL
#define T0 1800000000000ull /* 2027-01-15T08:00:00Z */
#define SEC 1000ull
#define MIN (60ull * SEC)
#define DAY (86400ull * SEC)

static char dir[PATH_MAX];
static uint64_t clock_now;
static store *st;
static store_batch *batch;
static struct config *cfg;
static struct greylist *gl;
static char err[512];

static uint64_t clock_fn(void *arg)
{
    (void)arg;
    return clock_now;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* use_config - (re)makes the greylist from cfg after a test changed it. */
static void use_config(void)
{
    greylist_destroy(gl);
    gl = greylist_create(cfg, err, sizeof err);
    ck_assert_msg(gl != NULL, "greylist_create: %s", err);
}

static void setup(void)
{
    const char *tmp = getenv("TMPDIR");
    char db[PATH_MAX + 8];

    snprintf(dir, sizeof dir, "%s/check_greylist.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(db, sizeof db, "%s/db", dir);
    struct store_options o = {
        .path = db,
        .sync = false,
        .block_cache_bytes = 1 << 20,
        .write_buffer_bytes = 1 << 20,
        .max_background_jobs = 1,
        .now_ms = clock_fn,
    };
    clock_now = T0;
    st = store_open(&o, err, sizeof err);
    ck_assert_msg(st != NULL, "store_open: %s", err);
    batch = store_batch_create(st);
    ck_assert_ptr_nonnull(batch);
    cfg = config_defaults();
    ck_assert_ptr_nonnull(cfg);
    use_config();
}

static void teardown(void)
{
    greylist_destroy(gl);
    gl = NULL;
    store_batch_destroy(batch);
    store_close(st);
    config_free(cfg);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static Mxcache__CheckRequest question(const char *ip, const char *name, const char *sender,
                                      const char *rcpt)
{
    Mxcache__CheckRequest q = MXCACHE__CHECK_REQUEST__INIT;
    q.client_address = (char *)ip;
    q.client_name = (char *)name;
    q.sender = (char *)sender;
    q.recipient = (char *)rcpt;
    q.protocol_state = "RCPT";
    q.mx_name = "mx1.example.net";
    return q;
}

/* decide - one question at the test clock, committed; the result in *res (may be NULL). */
static enum greylist_rule decide_full(const char *ip, const char *name, const char *sender,
                                      const char *rcpt, bool explain, struct greylist_result *res,
                                      char *expl, size_t expllen)
{
    static struct greylist_result scratch;
    Mxcache__CheckRequest q = question(ip, name, sender, rcpt);
    if (!res)
        res = &scratch;
    int rc = greylist_check(gl, batch, &q, clock_now, explain, res, expl, expllen, err, sizeof err);
    ck_assert_msg(rc == MXC_OK, "greylist_check: %d %s", rc, err);
    ck_assert_int_eq(store_batch_commit(batch, err, sizeof err), MXC_OK);
    return res->rule;
}

static enum greylist_rule decide(const char *ip, const char *sender, const char *rcpt,
                                 struct greylist_result *res)
{
    return decide_full(ip, "unknown", sender, rcpt, false, res, NULL, 0);
}

static Mxcache__GreylistRecord *greylist_record(const char *ip, const char *name,
                                                const char *sender, const char *rcpt)
{
    char key[GREYLIST_KEY_MAX], awl[GREYLIST_KEY_MAX], *val;
    size_t len;
    Mxcache__CheckRequest q = question(ip, name, sender, rcpt);
    greylist_keys(gl, &q, key, awl);
    if (store_get(st, KS_GREYLIST, key, strlen(key), &val, &len, err, sizeof err) != MXC_OK)
        return NULL;
    Mxcache__GreylistRecord *r = mxcache__greylist_record__unpack(NULL, len, (uint8_t *)val);
    free(val);
    ck_assert_ptr_nonnull(r);
    return r;
}

static uint32_t awl_passes(const char *ip)
{
    char key[GREYLIST_KEY_MAX], awl[GREYLIST_KEY_MAX], *val;
    size_t len;
    Mxcache__CheckRequest q = question(ip, "unknown", "", "x@example.net");
    greylist_keys(gl, &q, key, awl);
    if (store_get(st, KS_AWL, awl, strlen(awl), &val, &len, err, sizeof err) != MXC_OK)
        return 0;
    Mxcache__AwlRecord *r = mxcache__awl_record__unpack(NULL, len, (uint8_t *)val);
    free(val);
    ck_assert_ptr_nonnull(r);
    uint32_t n = r->passes;
    mxcache__awl_record__free_unpacked(r, NULL);
    return n;
}

static const char *key_of(const char *ip, const char *name, const char *sender, const char *rcpt)
{
    static char key[GREYLIST_KEY_MAX];
    char awl[GREYLIST_KEY_MAX];
    Mxcache__CheckRequest q = question(ip, name, sender, rcpt);
    greylist_keys(gl, &q, key, awl);
    return key;
}

/* set_list - replaces a LIST setting of cfg with the given items. */
static void set_list(struct config_list *l, const char *const *items, size_t n)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    l->items = calloc(n ? n : 1, sizeof *l->items);
    for (size_t i = 0; i < n; i++)
        l->items[i] = strdup(items[i]);
    l->n = n;
}

/* ---- the rules ---- */

START_TEST(test_new_early_pass_known)
{
    struct greylist_result r;
    const char *ip = "192.0.2.10", *s = "alice@sender.example", *rc = "bob@example.net";

    ck_assert_int_eq(decide(ip, s, rc, &r), GREYLIST_NEW);
    ck_assert(r.defer);
    ck_assert_uint_eq(r.smtp_code, 450);
    ck_assert_str_eq(r.status, "4.7.1");
    ck_assert_str_eq(r.text, "Greylisted, please try again in 300 seconds");
    ck_assert_uint_eq(r.remaining_s, 300);
    ck_assert_uint_eq(r.fact_age_ms, 0);
    ck_assert_str_eq(r.prepend, "");
    ck_assert_str_eq(greylist_rule_name(r.rule), "greylist_new");
    Mxcache__GreylistRecord *g = greylist_record(ip, "unknown", s, rc);
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(g->state, MXCACHE__RECORD_STATE__STATE_PENDING);
    ck_assert_uint_eq(g->first_seen_ms, T0);
    ck_assert_uint_eq(g->last_seen_ms, T0);
    ck_assert_uint_eq(g->attempts, 1);
    ck_assert_uint_eq(g->expires_at_ms, T0 + 2 * DAY);
    mxcache__greylist_record__free_unpacked(g, NULL);

    /* Early retry: deferred with what is left; last_seen and attempts move, expiry stays. */
    clock_now = T0 + 100 * SEC + 400;
    ck_assert_int_eq(decide(ip, s, rc, &r), GREYLIST_EARLY);
    ck_assert(r.defer);
    ck_assert_str_eq(r.text, "Greylisted, please try again in 200 seconds"); /* 199.6 s, up */
    ck_assert_uint_eq(r.fact_age_ms, 100 * SEC + 400);
    g = greylist_record(ip, "unknown", s, rc);
    ck_assert_int_eq(g->state, MXCACHE__RECORD_STATE__STATE_PENDING);
    ck_assert_uint_eq(g->first_seen_ms, T0);
    ck_assert_uint_eq(g->last_seen_ms, clock_now);
    ck_assert_uint_eq(g->attempts, 2);
    ck_assert_uint_eq(g->expires_at_ms, T0 + 2 * DAY);
    mxcache__greylist_record__free_unpacked(g, NULL);
    ck_assert_uint_eq(awl_passes(ip), 0);

    /* One millisecond before the delay is over: still early, 1 second left. */
    clock_now = T0 + 300 * SEC - 1;
    ck_assert_int_eq(decide(ip, s, rc, &r), GREYLIST_EARLY);
    ck_assert_uint_eq(r.remaining_s, 1);

    /* After the delay: passes, with the header. */
    clock_now = T0 + 301 * SEC;
    ck_assert_int_eq(decide(ip, s, rc, &r), GREYLIST_PASS);
    ck_assert(!r.defer);
    ck_assert_uint_eq(r.fact_age_ms, 301 * SEC);
    ck_assert_str_eq(r.prepend, "X-Greylist: delayed 301 seconds by mxcache at mx1.example.net; "
                                "Fri, 15 Jan 2027 08:05:01 +0000");
    g = greylist_record(ip, "unknown", s, rc);
    ck_assert_int_eq(g->state, MXCACHE__RECORD_STATE__STATE_PASSED);
    ck_assert_uint_eq(g->first_seen_ms, T0);
    ck_assert_uint_eq(g->passed_at_ms, clock_now);
    ck_assert_uint_eq(g->passes, 1);
    ck_assert_uint_eq(g->attempts, 4);
    ck_assert_uint_eq(g->expires_at_ms, clock_now + 35 * DAY);
    mxcache__greylist_record__free_unpacked(g, NULL);
    ck_assert_uint_eq(awl_passes(ip), 1);

    /* Known: passes without header, refreshed. */
    clock_now = T0 + 30 * DAY;
    ck_assert_int_eq(decide(ip, s, rc, &r), GREYLIST_KNOWN);
    ck_assert(!r.defer);
    ck_assert_str_eq(r.prepend, "");
    ck_assert_uint_eq(r.fact_age_ms, 30 * DAY);
    g = greylist_record(ip, "unknown", s, rc);
    ck_assert_int_eq(g->state, MXCACHE__RECORD_STATE__STATE_PASSED);
    ck_assert_uint_eq(g->passes, 2);
    ck_assert_uint_eq(g->last_seen_ms, clock_now);
    ck_assert_uint_eq(g->passed_at_ms, T0 + 301 * SEC);
    ck_assert_uint_eq(g->expires_at_ms, clock_now + 35 * DAY);
    mxcache__greylist_record__free_unpacked(g, NULL);
    ck_assert_uint_eq(awl_passes(ip), 2);

    /* Within the hour after a refresh, a known triplet passes without being rewritten... */
    clock_now = T0 + 30 * DAY + 59 * MIN;
    ck_assert_int_eq(decide(ip, s, rc, &r), GREYLIST_KNOWN);
    g = greylist_record(ip, "unknown", s, rc);
    ck_assert_uint_eq(g->passes, 2);
    ck_assert_uint_eq(g->last_seen_ms, T0 + 30 * DAY);
    mxcache__greylist_record__free_unpacked(g, NULL);
    /* ... and an hour after it, the next pass refreshes it again. */
    clock_now = T0 + 30 * DAY + 60 * MIN;
    ck_assert_int_eq(decide(ip, s, rc, &r), GREYLIST_KNOWN);
    g = greylist_record(ip, "unknown", s, rc);
    ck_assert_uint_eq(g->passes, 3);
    ck_assert_uint_eq(g->last_seen_ms, clock_now);
    ck_assert_uint_eq(g->expires_at_ms, clock_now + 35 * DAY);
    mxcache__greylist_record__free_unpacked(g, NULL);

    /* The refresh keeps it alive past the first max_age. */
    clock_now = T0 + 60 * DAY;
    ck_assert_int_eq(decide(ip, s, rc, &r), GREYLIST_KNOWN);
    /* Forgotten max_age after it was last seen. */
    clock_now = T0 + 60 * DAY + 35 * DAY;
    ck_assert_int_eq(decide(ip, s, rc, &r), GREYLIST_NEW);
}
END_TEST

START_TEST(test_retry_window)
{
    struct greylist_result r;
    const char *ip = "192.0.2.10", *s = "alice@sender.example", *rc = "bob@example.net";

    ck_assert_int_eq(decide(ip, s, rc, &r), GREYLIST_NEW);
    /* A retry after the window starts over: the pending record has expired. */
    clock_now = T0 + 2 * DAY;
    ck_assert_int_eq(decide(ip, s, rc, &r), GREYLIST_NEW);
    ck_assert_str_eq(r.text, "Greylisted, please try again in 300 seconds");
    Mxcache__GreylistRecord *g = greylist_record(ip, "unknown", s, rc);
    ck_assert_uint_eq(g->first_seen_ms, clock_now);
    ck_assert_uint_eq(g->attempts, 1);
    mxcache__greylist_record__free_unpacked(g, NULL);

    /* A record still live under the old, longer window starts over under a shorter one. */
    uint64_t start = clock_now;
    cfg->greylist_retry_window = 3600 * SEC;
    use_config();
    clock_now = start + 3600 * SEC;
    ck_assert_int_eq(decide(ip, s, rc, &r), GREYLIST_NEW);
    g = greylist_record(ip, "unknown", s, rc);
    ck_assert_uint_eq(g->first_seen_ms, clock_now);
    ck_assert_uint_eq(g->expires_at_ms, clock_now + 3600 * SEC);
    mxcache__greylist_record__free_unpacked(g, NULL);
    /* ... and within it, it passes. */
    clock_now += 3599 * SEC;
    ck_assert_int_eq(decide(ip, s, rc, &r), GREYLIST_PASS);
}
END_TEST

/* pass_triplet - makes a triplet pass: new, then a retry after the delay. */
static void pass_triplet(const char *ip, const char *s, const char *rc)
{
    ck_assert_int_eq(decide(ip, s, rc, NULL), GREYLIST_NEW);
    clock_now += 301 * SEC;
    ck_assert_int_eq(decide(ip, s, rc, NULL), GREYLIST_PASS);
}

START_TEST(test_awl)
{
    struct greylist_result r;
    const char *ip = "192.0.2.10", *s = "alice@sender.example";

    pass_triplet(ip, s, "bob@example.net"); /* pass 1 */
    /* Passes within the hour after a counted one do not count: a burst buys nothing. */
    for (int i = 0; i < 5; i++) {
        clock_now += 60 * SEC;
        ck_assert_int_eq(decide(ip, s, "bob@example.net", NULL), GREYLIST_KNOWN);
    }
    ck_assert_uint_eq(awl_passes(ip), 1);
    for (int i = 0; i < 3; i++) {           /* passes 2..4, an hour apart */
        clock_now += 3600 * SEC;
        ck_assert_int_eq(decide(ip, s, "bob@example.net", NULL), GREYLIST_KNOWN);
    }
    ck_assert_uint_eq(awl_passes(ip), 4);
    /* Four passes: not yet whitelisted; a new triplet of the client is greylisted. */
    ck_assert_int_eq(decide("192.0.2.11", s, "carol@example.net", &r), GREYLIST_NEW);
    ck_assert_uint_eq(awl_passes(ip), 4); /* a deferral counts nothing */
    clock_now += 3600 * SEC;
    ck_assert_int_eq(decide(ip, s, "bob@example.net", NULL), GREYLIST_KNOWN); /* pass 5 */
    ck_assert_uint_eq(awl_passes(ip), 5);
    /* Five: every triplet of the network passes as "awl", new ones included. */
    ck_assert_int_eq(decide("192.0.2.99", "other@else.example", "dave@example.net", &r),
                     GREYLIST_AWL);
    ck_assert(!r.defer);
    ck_assert_str_eq(greylist_rule_name(r.rule), "awl");
    ck_assert_ptr_null(greylist_record("192.0.2.99", "unknown", "other@else.example",
                                       "dave@example.net"));
    ck_assert_int_eq(decide("192.0.2.11", s, "carol@example.net", &r), GREYLIST_AWL);
    /* Another network is not. */
    ck_assert_int_eq(decide("192.0.3.1", s, "bob@example.net", &r), GREYLIST_NEW);

    /* The AWL entry outlives awl_max_age only when the client keeps coming: hits refresh it
     * (at most hourly), so 30 days of silence and then a hit keep it for 35 more. */
    clock_now += 30 * DAY;
    ck_assert_int_eq(decide(ip, "x@y.example", "z@example.net", &r), GREYLIST_AWL);
    clock_now += 30 * DAY;
    ck_assert_int_eq(decide(ip, "x@y.example", "z@example.net", &r), GREYLIST_AWL);
    clock_now += 36 * DAY;
    ck_assert_int_eq(decide(ip, "x@y.example", "z@example.net", &r), GREYLIST_NEW);
}
END_TEST

START_TEST(test_awl_off)
{
    cfg->greylist_awl_passes = 0;
    use_config();
    pass_triplet("192.0.2.10", "a@b.example", "c@example.net");
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(decide("192.0.2.10", "a@b.example", "c@example.net", NULL), GREYLIST_KNOWN);
    ck_assert_uint_eq(awl_passes("192.0.2.10"), 0); /* no AWL records written at all */
    ck_assert_int_eq(decide("192.0.2.10", "new@b.example", "c@example.net", NULL), GREYLIST_NEW);
}
END_TEST

START_TEST(test_delay_zero)
{
    struct greylist_result r;

    cfg->greylist_delay = 0;
    use_config();
    ck_assert_int_eq(decide("192.0.2.1", "a@b.example", "c@example.net", &r), GREYLIST_PASS);
    ck_assert(!r.defer);
    ck_assert_str_eq(r.prepend, ""); /* nothing was delayed */
    Mxcache__GreylistRecord *g = greylist_record("192.0.2.1", "unknown", "a@b.example",
                                                 "c@example.net");
    ck_assert_int_eq(g->state, MXCACHE__RECORD_STATE__STATE_PASSED);
    ck_assert_uint_eq(g->passes, 1);
    ck_assert_uint_eq(g->first_seen_ms, T0);
    mxcache__greylist_record__free_unpacked(g, NULL);
    ck_assert_int_eq(decide("192.0.2.1", "a@b.example", "c@example.net", &r), GREYLIST_KNOWN);
}
END_TEST

START_TEST(test_disabled_and_settings)
{
    struct greylist_result r;

    cfg->greylist_enabled = false;
    use_config();
    ck_assert_int_eq(decide("192.0.2.1", "a@b.example", "c@example.net", &r), GREYLIST_SKIPPED);
    ck_assert_str_eq(greylist_rule_name(r.rule), "");

    cfg->greylist_enabled = true;
    cfg->greylist_header = false;
    cfg->greylist_reply_code = 451;
    free(cfg->greylist_reply_status);
    cfg->greylist_reply_status = strdup("4.2.0");
    free(cfg->greylist_reply_text);
    cfg->greylist_reply_text = strdup("{remaining}s: wait {remaining} seconds {remain}");
    cfg->greylist_delay = 90 * SEC;
    use_config();
    ck_assert_int_eq(decide("192.0.2.1", "a@b.example", "c@example.net", &r), GREYLIST_NEW);
    ck_assert_uint_eq(r.smtp_code, 451);
    ck_assert_str_eq(r.status, "4.2.0");
    ck_assert_str_eq(r.text, "90s: wait 90 seconds {remain}");
    clock_now += 91 * SEC;
    ck_assert_int_eq(decide("192.0.2.1", "a@b.example", "c@example.net", &r), GREYLIST_PASS);
    ck_assert_str_eq(r.prepend, ""); /* header = false */
}
END_TEST

/* ---- keys ---- */

START_TEST(test_networks)
{
    const char *s = "a@b.example", *rc = "c@example.net";

    ck_assert_str_eq(key_of("192.0.2.77", "unknown", s, rc), "192.0.2.0/24/a@b.example/c@example.net");
    ck_assert_str_eq(key_of("::ffff:192.0.2.5", "unknown", s, rc),
                     "192.0.2.0/24/a@b.example/c@example.net");
    ck_assert_str_eq(key_of("2001:db8:1:2:3:4:5:6", "unknown", s, rc),
                     "2001:db8:1:2::/64/a@b.example/c@example.net");

    /* Another address of the same /24 shares the triplet. */
    ck_assert_int_eq(decide("192.0.2.10", s, rc, NULL), GREYLIST_NEW);
    ck_assert_int_eq(decide("192.0.2.200", s, rc, NULL), GREYLIST_EARLY);
    ck_assert_int_eq(decide("192.0.3.1", s, rc, NULL), GREYLIST_NEW);
    ck_assert_int_eq(decide("2001:db8:1:2::1", s, rc, NULL), GREYLIST_NEW);
    ck_assert_int_eq(decide("2001:db8:1:2:ffff::5", s, rc, NULL), GREYLIST_EARLY);
    ck_assert_int_eq(decide("2001:db8:1:3::1", s, rc, NULL), GREYLIST_NEW);
    clock_now += 301 * SEC;
    ck_assert_int_eq(decide("::ffff:192.0.2.33", s, rc, NULL), GREYLIST_PASS);
    ck_assert_int_eq(decide("2001:db8:1:2:aaaa::", s, rc, NULL), GREYLIST_PASS);

    /* Other prefix lengths. */
    cfg->greylist_ipv4_prefix = 16;
    cfg->greylist_ipv6_prefix = 48;
    use_config();
    ck_assert_str_eq(key_of("192.0.99.77", "unknown", s, rc), "192.0.0.0/16/a@b.example/c@example.net");
    ck_assert_str_eq(key_of("2001:db8:1:ffff::1", "unknown", s, rc),
                     "2001:db8:1::/48/a@b.example/c@example.net");
    cfg->greylist_ipv4_prefix = 32;
    cfg->greylist_ipv6_prefix = 128;
    use_config();
    ck_assert_str_eq(key_of("192.0.2.77", "unknown", s, rc), "192.0.2.77/32/a@b.example/c@example.net");
    ck_assert_str_eq(key_of("2001:db8::1", "unknown", s, rc), "2001:db8::1/128/a@b.example/c@example.net");
}
END_TEST

START_TEST(test_client_identity_domain)
{
    const char *s = "a@b.example", *rc = "c@example.net";

    /* With identity network, names play no part. */
    ck_assert_str_eq(key_of("198.51.100.1", "mail-out1.example.co.uk", s, rc),
                     "198.51.100.0/24/a@b.example/c@example.net");

    cfg->greylist_client_identity = GREYLIST_IDENTITY_DOMAIN;
    use_config();
    ck_assert_str_eq(key_of("198.51.100.1", "Mail-Out1.pool.Example.CO.UK.", s, rc),
                     "example.co.uk/a@b.example/c@example.net");
    ck_assert_str_eq(key_of("198.51.100.1", "unknown", s, rc),
                     "198.51.100.0/24/a@b.example/c@example.net");
    ck_assert_str_eq(key_of("198.51.100.1", "", s, rc), "198.51.100.0/24/a@b.example/c@example.net");
    ck_assert_str_eq(key_of("198.51.100.1", NULL, s, rc), "198.51.100.0/24/a@b.example/c@example.net");
    /* a public suffix itself, or not a host name: the network */
    ck_assert_str_eq(key_of("198.51.100.1", "co.uk", s, rc), "198.51.100.0/24/a@b.example/c@example.net");
    ck_assert_str_eq(key_of("198.51.100.1", "bad_name!.example.com", s, rc),
                     "198.51.100.0/24/a@b.example/c@example.net");

    /* A pool: two hosts of one registered domain in different networks share the triplet. */
    ck_assert_int_eq(decide_full("198.51.100.1", "out1.mail.example.com", s, rc, false, NULL, NULL, 0),
                     GREYLIST_NEW);
    clock_now += 400 * SEC;
    ck_assert_int_eq(decide_full("203.0.113.7", "out2.mx.example.com", s, rc, false, NULL, NULL, 0),
                     GREYLIST_PASS);
    /* ... while "unknown" from the first host's network is another client. */
    ck_assert_int_eq(decide_full("198.51.100.1", "unknown", s, rc, false, NULL, NULL, 0), GREYLIST_NEW);
}
END_TEST

START_TEST(test_sender_normalization_in_key)
{
    static const char *const retries[][2] = {
        {"prvs=1234abcdef=news@sender.example", "PRVS=9999aaaaaa=News@Sender.Example"},
        {"SRS0=aaaa=T1=orig.example=alice@fwd.example", "SRS0=bbbb=T2=orig.example=alice@fwd.example"},
        {"bounce-12345-678@lists.example", "bounce-12399-999@lists.example"},
        {"", "<>"},
    };
    for (size_t i = 0; i < sizeof retries / sizeof retries[0]; i++) {
        clock_now = T0 + i * DAY;
        ck_assert_int_eq(decide("192.0.2.1", retries[i][0], "rcpt@example.net", NULL), GREYLIST_NEW);
        clock_now += 301 * SEC;
        ck_assert_msg(decide("192.0.2.1", retries[i][1], "RCPT@Example.NET", NULL) == GREYLIST_PASS,
                      "retry %zu did not match", i);
    }
    ck_assert_str_eq(key_of("192.0.2.1", "unknown", "", "rcpt@example.net"),
                     "192.0.2.0/24/<>/rcpt@example.net");
    ck_assert_str_eq(key_of("192.0.2.1", "unknown", "SRS0=a=b=orig.example=x@f.example", "R@Example.NET"),
                     "192.0.2.0/24/x@orig.example/r@example.net");
}
END_TEST

START_TEST(test_domains)
{
    static const char *const only[] = {"example.net", "Example.ORG."};
    static const char *const exempt[] = {"vip.example.net"};
    const char *s = "a@b.example";
    struct greylist_result r;
    char expl[4096];

    set_list(&cfg->greylist_domains, only, 2);
    set_list(&cfg->greylist_exempt_domains, exempt, 1);
    use_config();
    ck_assert_int_eq(decide("192.0.2.1", s, "u@example.net", &r), GREYLIST_NEW);
    ck_assert_int_eq(decide("192.0.2.1", s, "u@sub.example.net", &r), GREYLIST_NEW);
    ck_assert_int_eq(decide("192.0.2.1", s, "u@example.org", &r), GREYLIST_NEW);
    ck_assert_int_eq(decide("192.0.2.1", s, "u@notexample.net", &r), GREYLIST_SKIPPED);
    ck_assert_int_eq(decide("192.0.2.1", s, "u@other.test", &r), GREYLIST_SKIPPED);
    ck_assert_int_eq(decide("192.0.2.1", s, "u@vip.example.net", &r), GREYLIST_SKIPPED);
    ck_assert_int_eq(decide("192.0.2.1", s, "u@a.vip.example.net", &r), GREYLIST_SKIPPED);
    ck_assert_int_eq(decide("192.0.2.1", s, "u@notvip.example.net", &r), GREYLIST_NEW);
    ck_assert_int_eq(decide("192.0.2.1", s, "no address", &r), GREYLIST_SKIPPED);
    expl[0] = '\0';
    decide_full("192.0.2.1", "unknown", s, "u@vip.example.net", true, &r, expl, sizeof expl);
    ck_assert_msg(strstr(expl, "greylisting is off for domain vip.example.net") != NULL, "%s", expl);
    expl[0] = '\0';
    decide_full("192.0.2.1", "unknown", s, "u@other.test", true, &r, expl, sizeof expl);
    ck_assert_msg(strstr(expl, "greylisting is off for domain other.test (not in greylist.domains)") != NULL,
                  "%s", expl);

    /* Exempt domains alone: everything else is greylisted. */
    set_list(&cfg->greylist_domains, NULL, 0);
    use_config();
    ck_assert_int_eq(decide("192.0.2.1", s, "u@other.test", &r), GREYLIST_NEW);
    ck_assert_int_eq(decide("192.0.2.1", s, "u@vip.example.net", &r), GREYLIST_SKIPPED);
}
END_TEST

struct scan_ctx {
    char buf[65536];
    size_t len, n;
    int bad_keys; /* keys that are not 64 hex digits */
};

static int snapshot_one(void *arg, const char *key, size_t keylen, const char *val, size_t vallen)
{
    struct scan_ctx *sc = arg;
    sc->n++;
    bool hex = keylen == 64;
    for (size_t i = 0; i < keylen && hex; i++)
        hex = strchr("0123456789abcdef", key[i]) != NULL;
    sc->bad_keys += !hex;
    if (sc->len + keylen + vallen + 2 < sizeof sc->buf) {
        memcpy(sc->buf + sc->len, key, keylen);
        sc->len += keylen;
        sc->buf[sc->len++] = '=';
        memcpy(sc->buf + sc->len, val, vallen);
        sc->len += vallen;
        sc->buf[sc->len++] = '\n';
    }
    return 0;
}

/* snapshot - every record of the greylist and AWL keyspaces, expired ones included. */
static void snapshot(struct scan_ctx *sc)
{
    memset(sc, 0, sizeof *sc);
    ck_assert_int_eq(store_scan(st, KS_GREYLIST, NULL, 0, NULL, 0, true, snapshot_one, sc, err,
                                sizeof err), 0);
    ck_assert_int_eq(store_scan(st, KS_AWL, NULL, 0, NULL, 0, true, snapshot_one, sc, err,
                                sizeof err), 0);
}

START_TEST(test_hashed_keys)
{
    char path[PATH_MAX + 16];
    struct scan_ctx sc;
    struct greylist_result r;

    /* A missing or short key file is an error of greylist_create, with the reason. */
    snprintf(path, sizeof path, "%s/key", dir);
    cfg->greylist_hash_keys = true;
    free(cfg->greylist_key_file);
    cfg->greylist_key_file = strdup(path);
    greylist_destroy(gl);
    gl = greylist_create(cfg, err, sizeof err);
    ck_assert_ptr_null(gl);
    ck_assert_msg(strstr(err, "greylist.key_file") && strstr(err, "cannot read"), "%s", err);
    FILE *f = fopen(path, "w");
    fputs("too short", f);
    fclose(f);
    gl = greylist_create(cfg, err, sizeof err);
    ck_assert_ptr_null(gl);
    ck_assert_msg(strstr(err, "holds 9 bytes"), "%s", err);
    f = fopen(path, "w");
    fputs("0123456789abcdef0123456789abcdef and more", f);
    fclose(f);
    use_config();

    /* The same decisions ... */
    const char *ip = "192.0.2.10", *s = "alice@sender.example", *rc = "bob@example.net";
    ck_assert_int_eq(decide(ip, s, rc, &r), GREYLIST_NEW);
    clock_now += 10 * SEC;
    ck_assert_int_eq(decide("192.0.2.11", s, rc, &r), GREYLIST_EARLY);
    ck_assert_str_eq(r.text, "Greylisted, please try again in 290 seconds");
    clock_now += 300 * SEC;
    ck_assert_int_eq(decide(ip, s, rc, &r), GREYLIST_PASS);
    clock_now += 3600 * SEC;
    ck_assert_int_eq(decide(ip, s, rc, &r), GREYLIST_KNOWN);
    ck_assert_uint_eq(awl_passes(ip), 2);
    /* ... and no address in the store: every key is 64 hex digits. */
    snapshot(&sc);
    ck_assert_uint_eq(sc.n, 2);
    ck_assert_int_eq(sc.bad_keys, 0);
    char k[GREYLIST_KEY_MAX];
    snprintf(k, sizeof k, "%s", key_of(ip, "unknown", s, rc));
    ck_assert_uint_eq(strlen(k), 64);
    ck_assert_ptr_null(strchr(k, '@'));

    /* Another secret, other keys: the old triplets are forgotten. */
    f = fopen(path, "w");
    fputs("ANOTHER-KEY-ANOTHER-KEY-ANOTHER-KEY", f);
    fclose(f);
    use_config();
    ck_assert_str_ne(key_of(ip, "unknown", s, rc), k);
    ck_assert_int_eq(decide(ip, s, rc, &r), GREYLIST_NEW);
}
END_TEST

/* ---- explain ---- */

/* explain_same - asks with explain, then for real: same rule, and explain changed nothing. */
static enum greylist_rule explain_same(const char *ip, const char *s, const char *rc, char *expl,
                                       size_t expllen)
{
    struct scan_ctx before, after;
    struct greylist_result x, r;
    Mxcache__CheckRequest q = question(ip, "unknown", s, rc);

    snapshot(&before);
    expl[0] = '\0';
    ck_assert_int_eq(greylist_check(gl, batch, &q, clock_now, true, &x, expl, expllen, err, sizeof err),
                     MXC_OK);
    ck_assert_uint_eq(store_batch_count(batch), 0);
    snapshot(&after);
    ck_assert_uint_eq(before.n, after.n);
    ck_assert_uint_eq(before.len, after.len);
    ck_assert(memcmp(before.buf, after.buf, before.len) == 0);
    ck_assert_msg(strlen(expl) > 0 && expl[strlen(expl) - 1] == '\n', "explanation: %s", expl);
    decide(ip, s, rc, &r);
    ck_assert_int_eq(x.rule, r.rule);
    ck_assert_int_eq(x.defer, r.defer);
    ck_assert_str_eq(x.text, r.text);
    return x.rule;
}

START_TEST(test_explain_writes_nothing)
{
    char expl[4096];
    const char *ip = "192.0.2.10", *s = "prvs=1234abcdef=alice@sender.example", *rc = "bob@example.net";

    ck_assert_int_eq(explain_same(ip, s, rc, expl, sizeof expl), GREYLIST_NEW);
    ck_assert_msg(strstr(expl, "greylist: client 192.0.2.0/24 (network of 192.0.2.10)"), "%s", expl);
    ck_assert_msg(strstr(expl, "greylist: sender prvs=1234abcdef=alice@sender.example normalized to "
                               "alice@sender.example"), "%s", expl);
    ck_assert_msg(strstr(expl, "greylist: key 192.0.2.0/24/alice@sender.example/bob@example.net"),
                  "%s", expl);
    ck_assert_msg(strstr(expl, "awl: no record for 192.0.2.0/24 (0 of 5 passes)"), "%s", expl);
    ck_assert_msg(strstr(expl, "greylist: new triplet: deferred for 5m"), "%s", expl);

    clock_now += 120 * SEC;
    ck_assert_int_eq(explain_same(ip, s, rc, expl, sizeof expl), GREYLIST_EARLY);
    ck_assert_msg(strstr(expl, "180 s left"), "%s", expl);
    clock_now += 300 * SEC;
    ck_assert_int_eq(explain_same(ip, s, rc, expl, sizeof expl), GREYLIST_PASS);
    ck_assert_msg(strstr(expl, "the delay of 5m is over: passes"), "%s", expl);
    ck_assert_msg(strstr(expl, "awl: this pass would make 1 of the 5"), "%s", expl);
    for (int i = 0; i < 4; i++) {
        clock_now += 2 * 3600 * SEC;
        ck_assert_int_eq(explain_same(ip, s, rc, expl, sizeof expl), GREYLIST_KNOWN);
    }
    ck_assert_msg(strstr(expl, "known triplet"), "%s", expl);
    clock_now += 2 * 3600 * SEC;
    ck_assert_int_eq(explain_same(ip, "x@y.example", rc, expl, sizeof expl), GREYLIST_AWL);
    ck_assert_msg(strstr(expl, "auto-whitelisted"), "%s", expl);

    /* A tiny buffer is filled and terminated, never overrun. */
    char small[16];
    struct greylist_result x;
    Mxcache__CheckRequest q = question(ip, "unknown", s, rc);
    memset(small, 0, sizeof small);
    ck_assert_int_eq(greylist_check(gl, batch, &q, clock_now, true, &x, small, sizeof small, err,
                                    sizeof err), MXC_OK);
    ck_assert_uint_eq(strlen(small), sizeof small - 1);
}
END_TEST

/* Hostile and malformed fields: greylisted like any other, keyed by their cleaned text. */
START_TEST(test_hostile_fields)
{
    struct greylist_result r;
    char expl[4096] = "";

    ck_assert_int_eq(decide("not-an-ip", "bad sender", "bad rcpt", &r), GREYLIST_NEW);
    ck_assert_str_eq(key_of("not-an-ip", "unknown", "bad sender", "bad rcpt"),
                     "not-an-ip/bad sender/bad rcpt");
    ck_assert_str_eq(key_of("", "unknown", "A\r\nB", "X\x1b@Y"), "/ab/x@y");
    ck_assert_int_eq(decide_full(NULL, NULL, NULL, NULL, true, &r, expl, sizeof expl), GREYLIST_NEW);
    for (const char *p = expl; *p; p++)
        ck_assert_msg(*p == '\n' || ((unsigned char)*p >= 0x20 && *p != 0x7f), "control in %s", expl);
    /* Control characters in fields never reach the explanation. */
    expl[0] = '\0';
    decide_full("192.0.2.1\n", "x\ny", "a\r\n@b.example", "c\x1b[2J@example.net", true, &r, expl,
                sizeof expl);
    for (const char *p = expl; *p; p++)
        ck_assert_msg(*p == '\n' || ((unsigned char)*p >= 0x20 && *p != 0x7f), "control in %s", expl);
    ck_assert_ptr_null(strstr(expl, "\n@"));
    /* An MX name that is not a host name stays out of the header. */
    Mxcache__CheckRequest q = question("192.0.2.50", "unknown", "h@x.example", "h@example.net");
    q.mx_name = "mx\r\nX-Injected: yes";
    ck_assert_int_eq(greylist_check(gl, batch, &q, clock_now, false, &r, NULL, 0, err, sizeof err),
                     MXC_OK);
    clock_now += 301 * SEC;
    ck_assert_int_eq(greylist_check(gl, batch, &q, clock_now, false, &r, NULL, 0, err, sizeof err),
                     MXC_OK);
    ck_assert_int_eq(r.rule, GREYLIST_PASS);
    ck_assert_msg(starts_with(r.prepend, "X-Greylist: delayed 301 seconds by mxcache at unknown; "),
                  "%s", r.prepend);
    ck_assert_ptr_null(strchr(r.prepend, '\n'));
}
END_TEST

/* ---- through the handler ---- */

static uint64_t counter_sum[CTR_COUNT];
static struct counters ctr;

static void counters_fn(void *arg, uint64_t out[CTR_COUNT])
{
    (void)arg;
    struct counters *sets[] = {&ctr};
    counters_sum(sets, 1, out);
}

static Mxcache__Reply *handler_check_with(struct handler *h, const struct greylist *g,
                                          const char *ip, const char *sender, const char *rcpt,
                                          bool explain)
{
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__CheckRequest q = question(ip, "unknown", sender, rcpt);
    struct handler_reply out;
    uint8_t *buf;
    size_t len;

    q.explain = explain;
    req.version = WIRE_VERSION;
    req.id = 7;
    req.body_case = MXCACHE__REQUEST__BODY_CHECK;
    req.check = &q;
    ck_assert_int_eq(wire_request_pack(&req, &buf, &len), MXC_OK);
    struct policy pol = {.cfg = cfg, .gl = (struct greylist *)g}; /* borrowed: never policy_free'd */
    handler_begin(h, &pol);
    ck_assert_int_eq(handler_request(h, buf, len, &out), MXC_OK);
    ck_assert_int_eq(handler_commit(h, &out, 1), MXC_OK);
    free(buf);
    Mxcache__Reply *rep = wire_reply_unpack(out.buf, out.len);
    free(out.buf);
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq(rep->body_case, MXCACHE__REPLY__BODY_CHECK);
    return rep;
}

static Mxcache__Reply *handler_check(struct handler *h, const char *ip, const char *sender,
                                     const char *rcpt, bool explain)
{
    return handler_check_with(h, gl, ip, sender, rcpt, explain);
}

START_TEST(test_handler)
{
    struct whitelist *wl = wl_create();
    ck_assert_int_eq(wl_load(wl, st, err, sizeof err), MXC_OK);
    struct handler_env env = {.st = st, .wl = wl, .workers = 1, .counters_fn = counters_fn};
    struct handler *h = handler_create(&env, &ctr);
    struct scan_ctx before, after;
    Mxcache__Reply *rep;

    /* explain first: the decision, an account, nothing written, no decision counted */
    snapshot(&before);
    rep = handler_check(h, "192.0.2.1", "a@b.example", "c@example.net", true);
    ck_assert_int_eq(rep->check->action, MXCACHE__ACTION__ACTION_DEFER);
    ck_assert_str_eq(rep->check->rule, "greylist_new");
    ck_assert_msg(starts_with(rep->check->explanation, "whitelist: no entry matches\n"), "%s",
                  rep->check->explanation);
    ck_assert_msg(strstr(rep->check->explanation,
                         "result: defer 450 4.7.1 Greylisted, please try again in 300 seconds "
                         "(rule greylist_new); explain changed nothing"),
                  "%s", rep->check->explanation);
    mxcache__reply__free_unpacked(rep, NULL);
    snapshot(&after);
    ck_assert_uint_eq(before.n, after.n);
    counters_fn(NULL, counter_sum);
    ck_assert_uint_eq(counter_sum[CTR_CHECK_EXPLAIN], 1);
    ck_assert_uint_eq(counter_sum[CTR_DECISION_DEFER], 0);
    ck_assert_uint_eq(counter_sum[CTR_GREYLIST_NEW], 0);

    /* for real: deferred, counted, written */
    rep = handler_check(h, "192.0.2.1", "a@b.example", "c@example.net", false);
    ck_assert_str_eq(rep->check->rule, "greylist_new");
    ck_assert_uint_eq(rep->check->smtp_code, 450);
    ck_assert_str_eq(rep->check->text, "Greylisted, please try again in 300 seconds");
    ck_assert_str_eq(rep->check->explanation, "");
    mxcache__reply__free_unpacked(rep, NULL);
    clock_now += 301 * SEC;
    rep = handler_check(h, "192.0.2.1", "a@b.example", "c@example.net", false);
    ck_assert_int_eq(rep->check->action, MXCACHE__ACTION__ACTION_DUNNO);
    ck_assert_str_eq(rep->check->rule, "greylist_pass");
    ck_assert_msg(starts_with(rep->check->prepend,
                              "X-Greylist: delayed 301 seconds by mxcache at mx1.example.net; "),
                  "%s", rep->check->prepend);
    ck_assert_uint_eq(rep->check->fact_age_ms, 301 * SEC);
    mxcache__reply__free_unpacked(rep, NULL);
    counters_fn(NULL, counter_sum);
    ck_assert_uint_eq(counter_sum[CTR_GREYLIST_NEW], 1);
    ck_assert_uint_eq(counter_sum[CTR_RULE_GREYLIST_NEW], 1);
    ck_assert_uint_eq(counter_sum[CTR_GREYLIST_PASSED], 1);
    ck_assert_uint_eq(counter_sum[CTR_RULE_GREYLIST_PASS], 1);
    ck_assert_uint_eq(counter_sum[CTR_DECISION_DEFER], 1);
    ck_assert_uint_eq(counter_sum[CTR_DECISION_DUNNO], 1);

    /* greylisting skipped for the domain: the default decides, and says so */
    static const char *const exempt[] = {"example.org"};
    set_list(&cfg->greylist_exempt_domains, exempt, 1);
    use_config();
    rep = handler_check(h, "192.0.2.1", "a@b.example", "c@example.org", true);
    ck_assert_str_eq(rep->check->rule, "default");
    ck_assert_msg(strstr(rep->check->explanation, "greylisting is off for domain example.org") &&
                      strstr(rep->check->explanation, "default: no check decided; policy.default_action is dunno"),
                  "%s", rep->check->explanation);
    mxcache__reply__free_unpacked(rep, NULL);

    /* a whitelist entry explains itself */
    char key[WL_KEY_MAX];
    ck_assert_int_eq(wl_key(MXCACHE__WHITELIST_KIND__WHITELIST_CLIENT, "198.51.100.0/24", key,
                            sizeof key, err, sizeof err), MXC_OK);
    Mxcache__WhitelistRecord wr = MXCACHE__WHITELIST_RECORD__INIT;
    wr.kind = MXCACHE__WHITELIST_KIND__WHITELIST_CLIENT;
    wr.value = strchr(key, ':') + 1;
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq(wire_message_pack(&wr.base, &buf, &len), MXC_OK);
    ck_assert_int_eq(store_batch_put(batch, MXCACHE__KEYSPACE__KEYSPACE_WHITELIST, key, strlen(key), buf, len), MXC_OK);
    free(buf);
    ck_assert_int_eq(store_batch_commit(batch, err, sizeof err), MXC_OK);
    ck_assert_int_eq(wl_load(wl, st, err, sizeof err), MXC_OK);
    rep = handler_check(h, "198.51.100.9", "a@b.example", "c@example.net", true);
    ck_assert_str_eq(rep->check->rule, "whitelist");
    ck_assert_msg(strstr(rep->check->explanation, "whitelist: entry client:198.51.100.0/24 matches"),
                  "%s", rep->check->explanation);
    mxcache__reply__free_unpacked(rep, NULL);

    /* without a greylist (NULL), the default decides */
    rep = handler_check_with(h, NULL, "192.0.2.99", "new@b.example", "c@example.net", false);
    ck_assert_str_eq(rep->check->rule, "default");
    mxcache__reply__free_unpacked(rep, NULL);
    handler_destroy(h);
    wl_destroy(wl);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("greylist");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_new_early_pass_known);
    tcase_add_test(tc, test_retry_window);
    tcase_add_test(tc, test_awl);
    tcase_add_test(tc, test_awl_off);
    tcase_add_test(tc, test_delay_zero);
    tcase_add_test(tc, test_disabled_and_settings);
    tcase_add_test(tc, test_networks);
    tcase_add_test(tc, test_client_identity_domain);
    tcase_add_test(tc, test_sender_normalization_in_key);
    tcase_add_test(tc, test_domains);
    tcase_add_test(tc, test_hashed_keys);
    tcase_add_test(tc, test_explain_writes_nothing);
    tcase_add_test(tc, test_hostile_fields);
    tcase_add_test(tc, test_handler);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
