/* Check suite for server/verify.c: the recipient-verification cache on a real RocksDB store with
 * a test clock. Each probe outcome is recorded and read back as a Check would see it over time:
 * positive (31 d, refreshed after 7 d), negative (3 h, the backend's reply word for word, or
 * softened to 450 by setting), tempfail (1 min, always 4xx, never a code that could pass for a
 * rejection), and the rules between them: a failed refresh keeps the positive and only moves its
 * next refresh, a tempfail never replaces a negative, a 5xx replaces a positive. */
#include <check.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mxc_err.h"
#include "verify.h"

#define T0 1800000000000ull /* 2027-01-15T08:00:00Z */
#define SEC 1000ull
#define MIN (60ull * SEC)
#define HOUR (60ull * MIN)
#define DAY (24ull * HOUR)

static char dir[PATH_MAX];
static uint64_t clock_now;
static store *st;
static store_batch *batch;
static char err[512];
static const struct verify_conf conf = {
    .positive_ttl_ms = 31 * DAY,
    .refresh_after_ms = 7 * DAY,
    .negative_ttl_ms = 3 * HOUR,
    .tempfail_ttl_ms = 1 * MIN,
    .reject_5xx = true,
};

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

static void setup(void)
{
    const char *tmp = getenv("TMPDIR");
    char db[PATH_MAX + 8];

    snprintf(dir, sizeof dir, "%s/check_verify.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(db, sizeof db, "%s/db", dir);
    struct store_options o = {.path = db, .block_cache_bytes = 1 << 20, .write_buffer_bytes = 1 << 20,
                              .max_background_jobs = 1, .now_ms = clock_fn};
    clock_now = T0;
    st = store_open(&o, err, sizeof err);
    ck_assert_msg(st != NULL, "store_open: %s", err);
    batch = store_batch_create(st);
    ck_assert_ptr_nonnull(batch);
}

static void teardown(void)
{
    store_batch_destroy(batch);
    store_close(st);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* result - a probe result as the engine reports it. */
static struct probe_result result(enum probe_outcome o, unsigned code, const char *status,
                                  const char *text)
{
    struct probe_result r;
    memset(&r, 0, sizeof r);
    r.outcome = o;
    r.reply.code = code;
    snprintf(r.reply.status, sizeof r.reply.status, "%s", status);
    snprintf(r.reply.text, sizeof r.reply.text, "%s", text);
    snprintf(r.backend, sizeof r.backend, "127.0.0.1:2525");
    if (o == PROBE_FAILED)
        snprintf(r.detail, sizeof r.detail, "127.0.0.1:2525: greeting: timeout after 5000 ms");
    return r;
}

/* record - records r for addr (committed, as the service does) and returns *decisive. */
static bool record(const char *addr, struct probe_result r)
{
    bool decisive = true;
    ck_assert_int_eq(verify_record(&conf, batch, addr, &r, clock_now, &decisive, err, sizeof err), MXC_OK);
    ck_assert_int_eq(store_batch_commit(batch, err, sizeof err), MXC_OK);
    return decisive;
}

static struct verify_answer lookup(const char *addr)
{
    struct verify_answer a;
    ck_assert_int_eq(verify_lookup(batch, addr, clock_now, &a, err, sizeof err), MXC_OK);
    return a;
}

START_TEST(test_positive_lives_and_refreshes)
{
    ck_assert_int_eq(lookup("a@example.com").state, VERIFY_MISS);
    ck_assert(record("a@example.com", result(PROBE_ACCEPTED, 250, "2.1.5", "Ok")));
    struct verify_answer a = lookup("a@example.com");
    ck_assert_int_eq(a.state, VERIFY_POSITIVE);
    ck_assert(!a.refresh);
    ck_assert_str_eq(a.backend, "127.0.0.1:2525");
    ck_assert_uint_eq(a.probed_at_ms, T0);
    struct verify_reply r;
    verify_reply(&conf, &a, "x@example.com", &r);
    ck_assert(!r.reject && !r.defer);

    clock_now = T0 + 7 * DAY - 1;
    ck_assert(!lookup("a@example.com").refresh);
    clock_now = T0 + 7 * DAY;
    a = lookup("a@example.com");
    ck_assert_int_eq(a.state, VERIFY_POSITIVE); /* still served ... */
    ck_assert(a.refresh);                        /* ... and due for one background probe */

    /* The refresh fails: the positive stays, its next refresh moves a tempfail TTL ahead. */
    ck_assert(!record("a@example.com", result(PROBE_FAILED, 0, "", "")));
    a = lookup("a@example.com");
    ck_assert_int_eq(a.state, VERIFY_POSITIVE);
    ck_assert(!a.refresh);
    ck_assert_uint_eq(a.probed_at_ms, T0);
    clock_now += MIN;
    ck_assert(lookup("a@example.com").refresh);
    /* A 4xx refresh keeps it too; the expiry is the first probe's. */
    ck_assert(!record("a@example.com", result(PROBE_TEMPFAIL, 451, "4.3.0", "try later")));
    ck_assert_int_eq(lookup("a@example.com").state, VERIFY_POSITIVE);
    clock_now = T0 + 31 * DAY - 1;
    ck_assert_int_eq(lookup("a@example.com").state, VERIFY_POSITIVE);
    clock_now = T0 + 31 * DAY;
    ck_assert_int_eq(lookup("a@example.com").state, VERIFY_MISS);

    /* A successful refresh is not decisive (positive stays positive) but extends the life. */
    clock_now = T0 + 40 * DAY;
    ck_assert(record("b@example.com", result(PROBE_ACCEPTED, 250, "", "Ok")));
    clock_now += 8 * DAY;
    ck_assert(!record("b@example.com", result(PROBE_ACCEPTED, 250, "", "Ok")));
    clock_now += 30 * DAY;
    ck_assert_int_eq(lookup("b@example.com").state, VERIFY_POSITIVE);
}
END_TEST

START_TEST(test_negative_word_for_word)
{
    static const char *const text = "<x@example.com>... No such user here, sorry";
    ck_assert(record("x@example.com", result(PROBE_REJECTED, 550, "5.1.1", text)));
    struct verify_answer a = lookup("x@example.com");
    ck_assert_int_eq(a.state, VERIFY_NEGATIVE);
    struct verify_reply r;
    verify_reply(&conf, &a, "x@example.com", &r);
    ck_assert(r.reject && !r.defer);
    ck_assert_uint_eq(r.code, 550);
    ck_assert_str_eq(r.status, "5.1.1");
    ck_assert_str_eq(r.text, text);

    /* Softened by setting: the same words, 450 and a class-4 status. */
    struct verify_conf soft = conf;
    soft.reject_5xx = false;
    verify_reply(&soft, &a, "x@example.com", &r);
    ck_assert(!r.reject && r.defer);
    ck_assert_uint_eq(r.code, 450);
    ck_assert_str_eq(r.status, "4.1.1");
    ck_assert_str_eq(r.text, text);

    /* A Postfix backend's own "<rcpt>: Recipient address rejected: " is not given twice: the
     * MX's smtpd puts it before a policy's text anyway. Another address's is kept. */
    ck_assert(record("p@example.com", result(PROBE_REJECTED, 550, "5.1.1",
                     "<P@example.com>: Recipient address rejected: User unknown in virtual mailbox table")));
    a = lookup("p@example.com");
    verify_reply(&conf, &a, "p@example.com", &r);
    ck_assert_str_eq(r.text, "User unknown in virtual mailbox table");
    verify_reply(&conf, &a, "q@example.com", &r);
    ck_assert_str_eq(r.text, "<P@example.com>: Recipient address rejected: User unknown in virtual mailbox table");

    /* A tempfail does not replace it; it expires after 3 hours. */
    ck_assert(!record("x@example.com", result(PROBE_TEMPFAIL, 421, "4.4.2", "closing")));
    ck_assert_int_eq(lookup("x@example.com").state, VERIFY_NEGATIVE);
    clock_now = T0 + 3 * HOUR - 1;
    ck_assert_int_eq(lookup("x@example.com").state, VERIFY_NEGATIVE);
    clock_now = T0 + 3 * HOUR;
    ck_assert_int_eq(lookup("x@example.com").state, VERIFY_MISS);

    /* A 5xx replaces a positive (the mailbox was removed), decisively. */
    ck_assert(record("y@example.com", result(PROBE_ACCEPTED, 250, "2.1.5", "Ok")));
    ck_assert(record("y@example.com", result(PROBE_REJECTED, 550, "5.1.1", "gone")));
    ck_assert_int_eq(lookup("y@example.com").state, VERIFY_NEGATIVE);
}
END_TEST

START_TEST(test_tempfail_never_5xx)
{
    struct verify_answer a;
    struct verify_reply r;

    /* The backend's 4xx: kept, passed on as 450 with its words. */
    ck_assert(!record("t@example.com", result(PROBE_TEMPFAIL, 452, "4.2.2", "Mailbox full")));
    a = lookup("t@example.com");
    ck_assert_int_eq(a.state, VERIFY_TEMPFAIL);
    ck_assert_uint_eq(a.code, 452);
    verify_reply(&conf, &a, "x@example.com", &r);
    ck_assert(r.defer && !r.reject);
    ck_assert_uint_eq(r.code, 450);
    ck_assert_str_eq(r.status, "4.1.1");
    ck_assert_str_eq(r.text, "Recipient address verification failed temporarily: Mailbox full");
    clock_now = T0 + MIN;
    ck_assert_int_eq(lookup("t@example.com").state, VERIFY_MISS);

    /* No answer to RCPT, even with a 5xx earlier in the dialogue: no code kept, a plain 450,
     * and the reason only for operators. */
    ck_assert(!record("u@example.com", result(PROBE_FAILED, 553, "5.7.1", "sender refused")));
    a = lookup("u@example.com");
    ck_assert_int_eq(a.state, VERIFY_TEMPFAIL);
    ck_assert_uint_eq(a.code, 0);
    ck_assert_str_eq(a.status, "");
    ck_assert_ptr_nonnull(strstr(a.text, "greeting: timeout"));
    verify_reply(&conf, &a, "x@example.com", &r);
    ck_assert(r.defer && !r.reject);
    ck_assert_uint_eq(r.code, 450);
    ck_assert_str_eq(r.text, "Recipient address verification failed temporarily");

    /* A tempfail becomes a definitive answer with the next good probe. */
    ck_assert(record("u@example.com", result(PROBE_REJECTED, 550, "5.1.1", "unknown")));
    ck_assert_int_eq(lookup("u@example.com").state, VERIFY_NEGATIVE);
}
END_TEST

/* A long backend text is cut, never overflows, and the tempfail prefix still fits. */
START_TEST(test_long_texts)
{
    struct probe_result p = result(PROBE_TEMPFAIL, 450, "4.2.0", "");
    memset(p.reply.text, 'x', sizeof p.reply.text - 1);
    p.reply.text[sizeof p.reply.text - 1] = '\0';
    ck_assert(!record("l@example.com", p));
    struct verify_answer a = lookup("l@example.com");
    struct verify_reply r;
    verify_reply(&conf, &a, "x@example.com", &r);
    ck_assert_uint_eq(strlen(r.text), sizeof r.text - 1);
    ck_assert(strncmp(r.text, "Recipient address verification failed temporarily: xxx", 54) == 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("verify");
    TCase *tc = tcase_create("cache");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_positive_lives_and_refreshes);
    tcase_add_test(tc, test_negative_word_for_word);
    tcase_add_test(tc, test_tempfail_never_5xx);
    tcase_add_test(tc, test_long_texts);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
