/* Check suite for server/record.c: the expiry time read from packed record bytes (well-formed
 * records of every keyspace, repeated and absent field 1, hostile bytes), the liveness boundary,
 * and the conversion of stored values to Entry messages. No I/O. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mxc_err.h"
#include "record.h"

struct blob {
    uint8_t *p;
    size_t n;
};

/* pack - a malloc'd packed copy of any message. */
static struct blob pack(const ProtobufCMessage *m)
{
    struct blob b;

    b.n = protobuf_c_message_get_packed_size(m);
    b.p = malloc(b.n ? b.n : 1);
    ck_assert_ptr_nonnull(b.p);
    ck_assert_uint_eq(protobuf_c_message_pack(m, b.p), b.n);
    return b;
}

static struct blob pack_verify(uint64_t exp, Mxcache__RecordState st)
{
    Mxcache__VerifyRecord r = MXCACHE__VERIFY_RECORD__INIT;

    r.expires_at_ms = exp;
    r.state = st;
    r.smtp_code = 550;
    r.enhanced_status = "5.1.1";
    r.text = "no such user";
    r.probed_at_ms = 1700000000000ULL;
    r.refresh_at_ms = 1700000600000ULL;
    r.backend = "backend.example:25";
    r.first_seen_ms = 1690000000000ULL;
    return pack(&r.base);
}

static struct blob pack_greylist(uint64_t exp, Mxcache__RecordState st)
{
    Mxcache__GreylistRecord r = MXCACHE__GREYLIST_RECORD__INIT;

    r.expires_at_ms = exp;
    r.state = st;
    r.first_seen_ms = 1000;
    r.last_seen_ms = 2000;
    r.attempts = 3;
    r.passes = 1;
    r.passed_at_ms = 1500;
    return pack(&r.base);
}

static struct blob pack_awl(uint64_t exp)
{
    Mxcache__AwlRecord r = MXCACHE__AWL_RECORD__INIT;

    r.expires_at_ms = exp;
    r.first_seen_ms = 10;
    r.last_seen_ms = UINT64_MAX; /* a 10-byte varint before nothing else */
    r.passes = 7;
    return pack(&r.base);
}

static struct blob pack_whitelist(uint64_t exp)
{
    Mxcache__WhitelistRecord r = MXCACHE__WHITELIST_RECORD__INIT;

    r.expires_at_ms = exp;
    r.kind = MXCACHE__WHITELIST_KIND__WHITELIST_CLIENT;
    r.value = "192.0.2.0/24";
    r.comment = "partner relay";
    r.added_at_ms = 42;
    return pack(&r.base);
}

static struct blob pack_kind(int kind, uint64_t exp)
{
    switch (kind) {
    case MXCACHE__KEYSPACE__KEYSPACE_VERIFY:
        return pack_verify(exp, MXCACHE__RECORD_STATE__STATE_POSITIVE);
    case MXCACHE__KEYSPACE__KEYSPACE_GREYLIST:
        return pack_greylist(exp, MXCACHE__RECORD_STATE__STATE_PENDING);
    case MXCACHE__KEYSPACE__KEYSPACE_AWL:
        return pack_awl(exp);
    default:
        return pack_whitelist(exp);
    }
}

/* ---- record_expiry on well-formed records ---- */

static const uint64_t expiry_values[] = {
    1, 1700000000000ULL, 0x0102030405060708ULL, UINT64_MAX,
};

START_TEST(t_expiry_packed)
{
    int kind = _i + 1; /* keyspaces 1..4 */

    for (size_t j = 0; j < sizeof expiry_values / sizeof expiry_values[0]; j++) {
        struct blob b = pack_kind(kind, expiry_values[j]);
        uint64_t got = 12345;
        ck_assert_int_eq(record_expiry(b.p, b.n, &got), MXC_OK);
        ck_assert_msg(got == expiry_values[j], "kind %d: %llu != %llu", kind,
                      (unsigned long long)got, (unsigned long long)expiry_values[j]);
        free(b.p);
    }
    /* proto3 does not write a zero field: absent field 1 means "never expires". */
    struct blob b = pack_kind(kind, 0);
    uint64_t got = 12345;
    ck_assert_int_eq(record_expiry(b.p, b.n, &got), MXC_OK);
    ck_assert_uint_eq(got, 0);
    ck_assert(b.n > 0); /* the other fields are there */
    free(b.p);
}
END_TEST

START_TEST(t_expiry_last_wins)
{
    /* field 1 = A, field 2 = 1, field 1 = B, field 5 fixed32: B wins. */
    static const uint8_t buf[] = {
        0x09, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
        0x10, 0x01,
        0x09, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
        0x2d, 0xaa, 0xbb, 0xcc, 0xdd,
    };
    uint64_t got = 0;

    ck_assert_int_eq(record_expiry(buf, sizeof buf, &got), MXC_OK);
    ck_assert(got == 0x0102030405060708ULL);

    /* What protobuf-c makes of the same bytes agrees. */
    Mxcache__GreylistRecord *r = mxcache__greylist_record__unpack(NULL, sizeof buf - 5, buf);
    ck_assert_ptr_nonnull(r);
    ck_assert(r->expires_at_ms == got);
    mxcache__greylist_record__free_unpacked(r, NULL);
}
END_TEST

/* ---- record_expiry on hostile bytes ---- */

struct wire_case {
    const char *name;
    const uint8_t *buf;
    size_t len;
    int rc;
    uint64_t expires; /* when rc == MXC_OK */
};

#define B(...) (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})

static const struct wire_case wire_cases[] = {
    {"empty buffer", (const uint8_t *)"", 0, MXC_OK, 0},
    {"only other fields", B(0x10, 0x05, 0x22, 0x01, 'x'), MXC_OK, 0},
    {"field 1 then unknown fields", B(0x09, 1, 0, 0, 0, 0, 0, 0, 0, 0xf8, 0x7f, 0x00), MXC_OK, 1},
    {"10-byte varint", B(0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), MXC_OK, 0},
    {"empty length-delimited", B(0x22, 0x00), MXC_OK, 0},
    {"truncated tag varint", B(0x80), MXC_EPROTO, 0},
    {"truncated varint value", B(0x10, 0x80), MXC_EPROTO, 0},
    {"tag without value", B(0x10), MXC_EPROTO, 0},
    {"truncated fixed64", B(0x09, 1, 2, 3, 4, 5, 6, 7), MXC_EPROTO, 0},
    {"field 1 tag only", B(0x09), MXC_EPROTO, 0},
    {"truncated fixed32", B(0x1d, 1, 2, 3), MXC_EPROTO, 0},
    {"length past end", B(0x22, 0x05, 'a', 'b'), MXC_EPROTO, 0},
    {"length one past end", B(0x22, 0x02, 'a'), MXC_EPROTO, 0},
    {"huge length", B(0x22, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 'a'), MXC_EPROTO, 0},
    {"truncated length varint", B(0x22, 0x80), MXC_EPROTO, 0},
    {"start group", B(0x13, 0x14), MXC_EPROTO, 0},
    {"end group", B(0x14), MXC_EPROTO, 0},
    {"wire type 6", B(0x16, 0x00), MXC_EPROTO, 0},
    {"wire type 7", B(0x17, 0x00), MXC_EPROTO, 0},
    {"11-byte varint value", B(0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), MXC_EPROTO, 0},
    {"11-byte tag", B(0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00), MXC_EPROTO, 0},
    {"field number 0", B(0x01, 0, 0, 0, 0, 0, 0, 0, 0), MXC_EPROTO, 0},
    {"field number too large", B(0xf9, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0), MXC_EPROTO, 0},
    {"field 1 as varint", B(0x08, 0x01), MXC_EPROTO, 0},
    {"field 1 as fixed32", B(0x0d, 1, 0, 0, 0), MXC_EPROTO, 0},
    {"valid field 1, garbage after", B(0x09, 1, 0, 0, 0, 0, 0, 0, 0, 0x13), MXC_EPROTO, 0},
};

START_TEST(t_expiry_wire)
{
    const struct wire_case *c = &wire_cases[_i];
    uint64_t got = 777;
    /* A private heap copy, so that ASan catches any read past len. */
    uint8_t *copy = malloc(c->len ? c->len : 1);

    ck_assert_ptr_nonnull(copy);
    memcpy(copy, c->buf, c->len);
    int rc = record_expiry(copy, c->len, &got);
    ck_assert_msg(rc == c->rc, "%s: rc %d, want %d", c->name, rc, c->rc);
    if (c->rc == MXC_OK)
        ck_assert_msg(got == c->expires, "%s: expires %llu", c->name, (unsigned long long)got);
    else
        ck_assert_msg(!record_is_live(copy, c->len, 0), "%s: corrupt bytes must count as expired",
                      c->name);
    free(copy);
}
END_TEST

START_TEST(t_expiry_args)
{
    uint64_t got = 5;

    ck_assert_int_eq(record_expiry(NULL, 0, &got), MXC_OK);
    ck_assert_uint_eq(got, 0);
    ck_assert_int_ne(record_expiry(NULL, 3, &got), MXC_OK);
    ck_assert_int_ne(record_expiry("", 0, NULL), MXC_OK);
}
END_TEST

START_TEST(t_expiry_truncations)
{
    /* Every strict prefix of a real record either parses (it ends on a field boundary) or is
     * refused; none is read past its end (ASan). */
    struct blob b = pack_verify(1700000000000ULL, MXCACHE__RECORD_STATE__STATE_NEGATIVE);

    for (size_t n = 0; n < b.n; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        uint64_t got = 0;
        memcpy(copy, b.p, n);
        int rc = record_expiry(copy, n, &got);
        ck_assert(rc == MXC_OK || rc == MXC_EPROTO);
        if (n == 0 || n < 9)
            ck_assert(rc == MXC_EPROTO || got == 0);
        free(copy);
    }
    free(b.p);
}
END_TEST

/* ---- record_is_live ---- */

static const struct {
    uint64_t expires, now;
    bool live;
} live_cases[] = {
    {0, 0, true},
    {0, UINT64_MAX, true},
    {1000, 999, true},
    {1000, 1000, false}, /* now == expires: expired */
    {1000, 1001, false},
    {UINT64_MAX, UINT64_MAX - 1, true},
    {UINT64_MAX, UINT64_MAX, false},
    {1, 0, true},
};

START_TEST(t_is_live)
{
    struct blob b = pack_awl(live_cases[_i].expires);

    ck_assert_msg(record_is_live(b.p, b.n, live_cases[_i].now) == live_cases[_i].live,
                  "expires %llu now %llu", (unsigned long long)live_cases[_i].expires,
                  (unsigned long long)live_cases[_i].now);
    free(b.p);
}
END_TEST

START_TEST(t_is_live_corrupt)
{
    static const uint8_t bad[] = {0x09, 0x01, 0x02};

    ck_assert(!record_is_live(bad, sizeof bad, 0));
    ck_assert(record_is_live(NULL, 0, 12345)); /* empty: never expires */
}
END_TEST

/* ---- record_to_entry ---- */

/* entry_roundtrip - packs e and unpacks it again, as an admin reply would travel. */
static Mxcache__Entry *entry_roundtrip(const Mxcache__Entry *e)
{
    struct blob b = pack(&e->base);
    Mxcache__Entry *back = mxcache__entry__unpack(NULL, b.n, b.p);

    free(b.p);
    ck_assert_ptr_nonnull(back);
    return back;
}

START_TEST(t_entry_verify)
{
    struct blob b = pack_verify(99, MXCACHE__RECORD_STATE__STATE_NEGATIVE);
    /* keylen shorter than the buffer: the key must be cut and NUL-terminated. */
    Mxcache__Entry *e = record_to_entry(MXCACHE__KEYSPACE__KEYSPACE_VERIFY, "user@example.orgXXX",
                                        16, b.p, b.n);

    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(e->keyspace, MXCACHE__KEYSPACE__KEYSPACE_VERIFY);
    ck_assert_str_eq(e->key, "user@example.org");
    ck_assert_int_eq(e->record_case, MXCACHE__ENTRY__RECORD_VERIFY);
    ck_assert(e->verify->expires_at_ms == 99);
    ck_assert_int_eq(e->verify->state, MXCACHE__RECORD_STATE__STATE_NEGATIVE);
    ck_assert_uint_eq(e->verify->smtp_code, 550);
    ck_assert_str_eq(e->verify->enhanced_status, "5.1.1");
    ck_assert_str_eq(e->verify->text, "no such user");
    ck_assert_str_eq(e->verify->backend, "backend.example:25");
    ck_assert(e->verify->first_seen_ms == 1690000000000ULL);

    Mxcache__Entry *back = entry_roundtrip(e);
    ck_assert_str_eq(back->key, "user@example.org");
    ck_assert_int_eq(back->record_case, MXCACHE__ENTRY__RECORD_VERIFY);
    struct blob again = pack(&back->verify->base);
    ck_assert_uint_eq(again.n, b.n);
    ck_assert_mem_eq(again.p, b.p, b.n);
    free(again.p);
    mxcache__entry__free_unpacked(back, NULL);
    record_entry_free(e);
    free(b.p);
}
END_TEST

START_TEST(t_entry_greylist)
{
    struct blob b = pack_greylist(5000, MXCACHE__RECORD_STATE__STATE_PASSED);
    const char key[] = "192.0.2.0/24\x1fsender@example.com\x1frcpt@example.org";
    Mxcache__Entry *e = record_to_entry(MXCACHE__KEYSPACE__KEYSPACE_GREYLIST, key, strlen(key),
                                        b.p, b.n);

    ck_assert_ptr_nonnull(e);
    ck_assert_str_eq(e->key, key);
    ck_assert_int_eq(e->record_case, MXCACHE__ENTRY__RECORD_GREYLIST);
    ck_assert(e->greylist->expires_at_ms == 5000);
    ck_assert_int_eq(e->greylist->state, MXCACHE__RECORD_STATE__STATE_PASSED);
    ck_assert_uint_eq(e->greylist->attempts, 3);
    ck_assert_uint_eq(e->greylist->passes, 1);
    ck_assert(e->greylist->passed_at_ms == 1500);
    Mxcache__Entry *back = entry_roundtrip(e);
    ck_assert(back->greylist->last_seen_ms == 2000);
    mxcache__entry__free_unpacked(back, NULL);
    record_entry_free(e);
    free(b.p);
}
END_TEST

START_TEST(t_entry_awl)
{
    struct blob b = pack_awl(0);
    Mxcache__Entry *e = record_to_entry(MXCACHE__KEYSPACE__KEYSPACE_AWL, "2001:db8::/64", 13,
                                        b.p, b.n);

    ck_assert_ptr_nonnull(e);
    ck_assert_str_eq(e->key, "2001:db8::/64");
    ck_assert_int_eq(e->record_case, MXCACHE__ENTRY__RECORD_AWL);
    ck_assert(e->awl->expires_at_ms == 0);
    ck_assert(e->awl->last_seen_ms == UINT64_MAX);
    ck_assert_uint_eq(e->awl->passes, 7);
    Mxcache__Entry *back = entry_roundtrip(e);
    ck_assert_uint_eq(back->awl->passes, 7);
    mxcache__entry__free_unpacked(back, NULL);
    record_entry_free(e);
    free(b.p);
}
END_TEST

START_TEST(t_entry_whitelist)
{
    struct blob b = pack_whitelist(123);
    Mxcache__Entry *e = record_to_entry(MXCACHE__KEYSPACE__KEYSPACE_WHITELIST, "client:192.0.2.0/24",
                                        19, b.p, b.n);

    ck_assert_ptr_nonnull(e);
    ck_assert_str_eq(e->key, "client:192.0.2.0/24");
    ck_assert_int_eq(e->record_case, MXCACHE__ENTRY__RECORD_WHITELIST);
    ck_assert_int_eq(e->whitelist->kind, MXCACHE__WHITELIST_KIND__WHITELIST_CLIENT);
    ck_assert_str_eq(e->whitelist->value, "192.0.2.0/24");
    ck_assert_str_eq(e->whitelist->comment, "partner relay");
    Mxcache__Entry *back = entry_roundtrip(e);
    ck_assert_str_eq(back->whitelist->comment, "partner relay");
    mxcache__entry__free_unpacked(back, NULL);
    record_entry_free(e);
    free(b.p);
}
END_TEST

START_TEST(t_entry_empty_value)
{
    /* An empty value is a record with every field at its default. */
    Mxcache__Entry *e = record_to_entry(MXCACHE__KEYSPACE__KEYSPACE_AWL, "k", 1, "", 0);

    ck_assert_ptr_nonnull(e);
    ck_assert(e->awl->expires_at_ms == 0);
    record_entry_free(e);
    e = record_to_entry(MXCACHE__KEYSPACE__KEYSPACE_WHITELIST, "", 0, NULL, 0);
    ck_assert_ptr_nonnull(e);
    ck_assert_str_eq(e->key, "");
    record_entry_free(e);
}
END_TEST

static const struct {
    const char *name;
    int ks;
    const uint8_t *buf;
    size_t len;
} bad_entries[] = {
    {"group", MXCACHE__KEYSPACE__KEYSPACE_VERIFY, B(0x13, 0x14)},
    {"truncated fixed64", MXCACHE__KEYSPACE__KEYSPACE_GREYLIST, B(0x09, 1, 2)},
    {"string past end", MXCACHE__KEYSPACE__KEYSPACE_WHITELIST, B(0x1a, 0x10, 'a')},
    {"truncated varint", MXCACHE__KEYSPACE__KEYSPACE_AWL, B(0x10, 0xff)},
    {"field 1 as varint", MXCACHE__KEYSPACE__KEYSPACE_VERIFY, B(0x08, 0x01)},
    {"keyspace unspecified", MXCACHE__KEYSPACE__KEYSPACE_UNSPECIFIED, B(0x10, 0x01)},
    {"keyspace out of range", 42, B(0x10, 0x01)},
    {"negative keyspace", -1, B(0x10, 0x01)},
};

START_TEST(t_entry_garbage)
{
    ck_assert_msg(record_to_entry((Mxcache__Keyspace)bad_entries[_i].ks, "key", 3,
                                  bad_entries[_i].buf, bad_entries[_i].len) == NULL,
                  "%s", bad_entries[_i].name);
}
END_TEST

START_TEST(t_entry_free_null)
{
    record_entry_free(NULL);
}
END_TEST

/* ---- record_state ---- */

START_TEST(t_state)
{
    static const Mxcache__RecordState vstates[] = {
        MXCACHE__RECORD_STATE__STATE_POSITIVE, MXCACHE__RECORD_STATE__STATE_NEGATIVE,
        MXCACHE__RECORD_STATE__STATE_TEMPFAIL,
    };
    static const Mxcache__RecordState gstates[] = {
        MXCACHE__RECORD_STATE__STATE_PENDING, MXCACHE__RECORD_STATE__STATE_PASSED,
    };

    for (size_t i = 0; i < sizeof vstates / sizeof vstates[0]; i++) {
        struct blob b = pack_verify(10, vstates[i]);
        ck_assert_int_eq(record_state(MXCACHE__KEYSPACE__KEYSPACE_VERIFY, b.p, b.n), vstates[i]);
        free(b.p);
    }
    for (size_t i = 0; i < sizeof gstates / sizeof gstates[0]; i++) {
        struct blob b = pack_greylist(10, gstates[i]);
        ck_assert_int_eq(record_state(MXCACHE__KEYSPACE__KEYSPACE_GREYLIST, b.p, b.n), gstates[i]);
        free(b.p);
    }
    struct blob b = pack_awl(10);
    ck_assert_int_eq(record_state(MXCACHE__KEYSPACE__KEYSPACE_AWL, b.p, b.n),
                     MXCACHE__RECORD_STATE__STATE_ANY);
    free(b.p);
    b = pack_whitelist(10);
    ck_assert_int_eq(record_state(MXCACHE__KEYSPACE__KEYSPACE_WHITELIST, b.p, b.n),
                     MXCACHE__RECORD_STATE__STATE_ANY);
    ck_assert_int_eq(record_state(MXCACHE__KEYSPACE__KEYSPACE_UNSPECIFIED, b.p, b.n),
                     MXCACHE__RECORD_STATE__STATE_ANY);
    free(b.p);
    /* Bytes that do not unpack have no state. */
    static const uint8_t bad[] = {0x10, 0x80};
    ck_assert_int_eq(record_state(MXCACHE__KEYSPACE__KEYSPACE_VERIFY, bad, sizeof bad),
                     MXCACHE__RECORD_STATE__STATE_ANY);
    ck_assert_int_eq(record_state(MXCACHE__KEYSPACE__KEYSPACE_GREYLIST, bad, sizeof bad),
                     MXCACHE__RECORD_STATE__STATE_ANY);
    ck_assert_int_eq(record_state(MXCACHE__KEYSPACE__KEYSPACE_VERIFY, "", 0),
                     MXCACHE__RECORD_STATE__STATE_ANY);
}
END_TEST

#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

static Suite *record_suite(void)
{
    Suite *s = suite_create("record");
    TCase *tc;

    tc = tcase_create("expiry");
    tcase_add_loop_test(tc, t_expiry_packed, 0, 4);
    tcase_add_test(tc, t_expiry_last_wins);
    tcase_add_loop_test(tc, t_expiry_wire, 0, NELEM(wire_cases));
    tcase_add_test(tc, t_expiry_args);
    tcase_add_test(tc, t_expiry_truncations);
    suite_add_tcase(s, tc);

    tc = tcase_create("live");
    tcase_add_loop_test(tc, t_is_live, 0, NELEM(live_cases));
    tcase_add_test(tc, t_is_live_corrupt);
    suite_add_tcase(s, tc);

    tc = tcase_create("entry");
    tcase_add_test(tc, t_entry_verify);
    tcase_add_test(tc, t_entry_greylist);
    tcase_add_test(tc, t_entry_awl);
    tcase_add_test(tc, t_entry_whitelist);
    tcase_add_test(tc, t_entry_empty_value);
    tcase_add_loop_test(tc, t_entry_garbage, 0, NELEM(bad_entries));
    tcase_add_test(tc, t_entry_free_null);
    tcase_add_test(tc, t_state);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(record_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
