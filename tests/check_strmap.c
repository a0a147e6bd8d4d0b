/* Check suite for server/strmap.c: the string -> uint64 open-addressing map with tombstones.
 *
 * Table-driven basics (put/get/replace/del, binary keys with embedded NUL bytes, keys that are
 * prefixes of each other, the empty key, extreme values), then scale: 200k inserts all found, and
 * long random insert/replace/delete runs checked step by step against a plain array model, which
 * drive the map through growth, tombstone reuse and rehashing at the same size. */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mxc_err.h"
#include "strmap.h"

#define S(lit) lit, sizeof(lit) - 1

/* REQUIRE - an assertion for hot loops: Check's ck_assert records a mark point (a write to its
 * results file) on every success, which would dominate the run time here. */
#define REQUIRE(cond, ...)                                                                          \
    do {                                                                                            \
        if (!(cond)) {                                                                              \
            char require_msg_[256];                                                                 \
            snprintf(require_msg_, sizeof require_msg_, __VA_ARGS__);                               \
            ck_abort_msg("%s failed: %s", #cond, require_msg_);                                     \
        }                                                                                           \
    } while (0)

static uint64_t rng_state;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* clear empties the map, keeps it usable, and frees every key (ASan would see a leak). */
START_TEST(clear_and_reuse)
{
    strmap *m = strmap_create();
    char key[32];

    ck_assert_ptr_nonnull(m);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 1000; i++) {
            snprintf(key, sizeof key, "k%d-%d", round, i);
            ck_assert_int_eq(strmap_put(m, key, strlen(key), (uint64_t)i), MXC_OK);
        }
        ck_assert(strmap_del(m, S("k0-0")) == (round == 0));
        ck_assert_uint_eq(strmap_count(m), round == 0 ? 999 : 1000);
        strmap_clear(m);
        ck_assert_uint_eq(strmap_count(m), 0);
        snprintf(key, sizeof key, "k%d-%d", round, 5);
        ck_assert(!strmap_get(m, key, strlen(key), NULL));
    }
    strmap_clear(m); /* an empty map */
    ck_assert_int_eq(strmap_put(m, S("again"), 7), MXC_OK);
    uint64_t v = 0;
    ck_assert(strmap_get(m, S("again"), &v));
    ck_assert_uint_eq(v, 7);
    strmap_destroy(m);
}
END_TEST

START_TEST(create_destroy)
{
    strmap *m = strmap_create();
    ck_assert_ptr_nonnull(m);
    ck_assert_uint_eq(strmap_count(m), 0);
    uint64_t v = 7;
    ck_assert(!strmap_get(m, S("x"), &v));
    ck_assert_uint_eq(v, 7); /* untouched on a miss */
    ck_assert(!strmap_get(m, S(""), NULL));
    ck_assert(!strmap_del(m, S("x")));
    strmap_destroy(m);
    strmap_destroy(NULL);
}
END_TEST

/* Distinct keys that a C-string map would confuse: embedded NULs, prefixes, the empty key. */
struct key_case {
    const char *key;
    size_t len;
};

static const struct key_case keys[] = {
    {S("")},
    {S("\0")},
    {S("\0\0")},
    {S("a")},
    {S("a\0")},
    {S("a\0b")},
    {S("a\0c")},
    {S("\0a")},
    {S("ab")},
    {S("abc")},
    {S("abcd")},
    {S("A")},
    {S("client:192.0.2.0/24")},
    {S("client:192.0.2.0/2")},
    {S("client:192.0.2.0")},
    {S("\xff\xfe\x80\x01")},
    {S("\xff\xfe\x80\x01\0")},
};
#define NKEYS (sizeof keys / sizeof keys[0])

START_TEST(distinct_keys)
{
    strmap *m = strmap_create();
    uint64_t v;

    for (size_t i = 0; i < NKEYS; i++) {
        ck_assert_int_eq(strmap_put(m, keys[i].key, keys[i].len, 100 + i), MXC_OK);
        ck_assert_uint_eq(strmap_count(m), i + 1);
    }
    for (size_t i = 0; i < NKEYS; i++) {
        ck_assert_msg(strmap_get(m, keys[i].key, keys[i].len, &v), "key %zu missing", i);
        ck_assert_uint_eq(v, 100 + i);
        ck_assert(strmap_get(m, keys[i].key, keys[i].len, NULL));
    }
    /* The map copies keys: a caller's buffer may change afterwards. */
    char buf[8] = "zz\0zz";
    ck_assert_int_eq(strmap_put(m, buf, 5, 9), MXC_OK);
    memset(buf, 'q', sizeof buf);
    ck_assert(strmap_get(m, S("zz\0zz"), &v));
    ck_assert_uint_eq(v, 9);
    ck_assert(strmap_del(m, S("zz\0zz")));

    /* Deleting each key in turn leaves every other key intact. */
    for (size_t i = 0; i < NKEYS; i++) {
        ck_assert(strmap_del(m, keys[i].key, keys[i].len));
        ck_assert(!strmap_del(m, keys[i].key, keys[i].len)); /* twice: absent */
        ck_assert(!strmap_get(m, keys[i].key, keys[i].len, &v));
        ck_assert_uint_eq(strmap_count(m), NKEYS - i - 1);
        for (size_t j = i + 1; j < NKEYS; j++) {
            ck_assert_msg(strmap_get(m, keys[j].key, keys[j].len, &v), "key %zu lost", j);
            ck_assert_uint_eq(v, 100 + j);
        }
    }
    strmap_destroy(m);
}
END_TEST

START_TEST(replace_and_values)
{
    static const uint64_t values[] = {0, 1, UINT64_MAX, UINT64_MAX - 1, 1ull << 63, 42};
    strmap *m = strmap_create();
    uint64_t v;

    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        ck_assert_int_eq(strmap_put(m, S("key"), values[i]), MXC_OK);
        ck_assert_uint_eq(strmap_count(m), 1); /* a replace does not count twice */
        ck_assert(strmap_get(m, S("key"), &v));
        ck_assert_uint_eq(v, values[i]);
    }
    ck_assert(!strmap_get(m, S("ke"), &v));
    ck_assert(!strmap_get(m, S("key\0"), &v));
    ck_assert(!strmap_get(m, S("keyy"), &v));
    /* delete, re-insert with another value */
    ck_assert(strmap_del(m, S("key")));
    ck_assert_uint_eq(strmap_count(m), 0);
    ck_assert_int_eq(strmap_put(m, S("key"), 5), MXC_OK);
    ck_assert(strmap_get(m, S("key"), &v));
    ck_assert_uint_eq(v, 5);
    ck_assert_uint_eq(strmap_count(m), 1);
    strmap_destroy(m);
}
END_TEST

START_TEST(long_keys)
{
    strmap *m = strmap_create();
    size_t n = 1 << 16;
    char *a = malloc(n), *b = malloc(n);
    uint64_t v;

    ck_assert(a && b);
    memset(a, 'k', n);
    memcpy(b, a, n);
    b[n - 1] = 'j'; /* differs only in the last byte */
    ck_assert_int_eq(strmap_put(m, a, n, 1), MXC_OK);
    ck_assert_int_eq(strmap_put(m, b, n, 2), MXC_OK);
    ck_assert_int_eq(strmap_put(m, a, n - 1, 3), MXC_OK); /* a prefix of both */
    ck_assert(strmap_get(m, a, n, &v) && v == 1);
    ck_assert(strmap_get(m, b, n, &v) && v == 2);
    ck_assert(strmap_get(m, b, n - 1, &v) && v == 3);
    ck_assert_uint_eq(strmap_count(m), 3);
    free(a);
    free(b);
    strmap_destroy(m);
}
END_TEST

/* ---- scale ---- */

static size_t make_key(char *buf, size_t i)
{
    /* Binary-ish keys: a NUL byte in the middle, varying lengths, shared prefixes. */
    int n = snprintf(buf, 40, "k%zu", i);
    buf[n] = '\0';
    n++;
    n += snprintf(buf + n, 40, "%zx", i * 2654435761u);
    return (size_t)n;
}

START_TEST(many_inserts)
{
    enum { N = 200000 };
    strmap *m = strmap_create();
    char key[96];
    uint64_t v;

    for (size_t i = 0; i < N; i++) {
        size_t n = make_key(key, i);
        REQUIRE(strmap_put(m, key, n, i * 3 + 1) == MXC_OK, "put");
    }
    REQUIRE(strmap_count(m) == N, "%llu", (unsigned long long)strmap_count(m));
    for (size_t i = 0; i < N; i++) {
        size_t n = make_key(key, i);
        REQUIRE(strmap_get(m, key, n, &v), "key %zu missing", i);
        REQUIRE(v == i * 3 + 1, "%llu", (unsigned long long)v);
        /* a prefix of the key (up to its NUL) is not present */
        REQUIRE(!strmap_get(m, key, strlen(key), NULL), "-");
    }
    for (size_t i = N; i < N + 1000; i++) {
        size_t n = make_key(key, i);
        REQUIRE(!strmap_get(m, key, n, NULL), "-");
    }
    /* delete the even ones; the odd ones stay */
    for (size_t i = 0; i < N; i += 2) {
        size_t n = make_key(key, i);
        REQUIRE(strmap_del(m, key, n), "-");
    }
    REQUIRE(strmap_count(m) == N / 2, "%llu", (unsigned long long)strmap_count(m));
    for (size_t i = 0; i < N; i++) {
        size_t n = make_key(key, i);
        bool found = strmap_get(m, key, n, &v);
        REQUIRE(found == (i % 2 == 1), "%d", found);
        if (found)
            REQUIRE(v == i * 3 + 1, "%llu", (unsigned long long)v);
    }
    strmap_destroy(m);
}
END_TEST

/* The model: slot i of the key universe is present with value vals[i] when present[i]. */
struct model {
    size_t universe;
    bool *present;
    uint64_t *vals;
    size_t count;
};

static void model_check_all(const struct model *mo, const strmap *m)
{
    char key[96];
    uint64_t v;

    REQUIRE(strmap_count(m) == mo->count, "%zu != %zu", strmap_count(m), mo->count);
    for (size_t i = 0; i < mo->universe; i++) {
        size_t n = make_key(key, i);
        bool found = strmap_get(m, key, n, &v);
        REQUIRE(found == mo->present[i], "key %zu: map %d, model %d", i, found,
                      mo->present[i]);
        if (found)
            REQUIRE(v == mo->vals[i], "%llu", (unsigned long long)v);
    }
}

/* churn - rounds of random operations on keys drawn from a universe of the given size; with a
 * small universe the live set stays small while deletes pile up tombstones. */
static void churn(size_t universe, size_t rounds, unsigned del_pct, uint64_t seed)
{
    struct model mo = {universe, calloc(universe, sizeof(bool)), calloc(universe, sizeof(uint64_t)), 0};
    strmap *m = strmap_create();
    char key[96];
    uint64_t v;

    REQUIRE(mo.present && mo.vals && m, "-");
    rng_state = seed;
    for (size_t r = 0; r < rounds; r++) {
        size_t i = rng() % universe;
        size_t n = make_key(key, i);
        if (rng() % 100 < del_pct) {
            bool was = strmap_del(m, key, n);
            REQUIRE(was == (mo.present[i]), "%d", was);
            if (mo.present[i])
                mo.count--;
            mo.present[i] = false;
        } else {
            uint64_t val = rng();
            REQUIRE(strmap_put(m, key, n, val) == MXC_OK, "put");
            if (!mo.present[i])
                mo.count++;
            mo.present[i] = true;
            mo.vals[i] = val;
        }
        REQUIRE(strmap_count(m) == mo.count, "%llu", (unsigned long long)strmap_count(m));
        /* spot-check a random key every round */
        size_t j = rng() % universe;
        n = make_key(key, j);
        bool found = strmap_get(m, key, n, &v);
        REQUIRE(found == (mo.present[j]), "%d", found);
        if (found)
            REQUIRE(v == mo.vals[j], "%llu", (unsigned long long)v);
        if (r % 10000 == 9999)
            model_check_all(&mo, m);
    }
    model_check_all(&mo, m);
    strmap_destroy(m);
    free(mo.present);
    free(mo.vals);
}

START_TEST(churn_small_set)
{
    /* A live set of a few dozen keys, half the operations deletes: tombstones fill the table,
     * which is then rehashed at the same size again and again. */
    churn(64, 100000, 50, 0x1234567887654321ull);
}
END_TEST

START_TEST(churn_large_set)
{
    /* Thousands of live keys, growth interleaved with deletes and tombstone reuse. */
    churn(20000, 100000, 40, 0xdeadbeefcafef00dull);
}
END_TEST

START_TEST(churn_growing)
{
    /* Mostly inserts: growth with tombstones present. */
    churn(150000, 150000, 15, 0x0badc0ffee0ddf00ull);
}
END_TEST

START_TEST(insert_delete_unique)
{
    /* Every round inserts a brand-new key and deletes it again: the live count never exceeds one,
     * every slot the map ever had becomes a tombstone, and only rehashing at the same size keeps
     * probing bounded. Then the same with a slowly growing live set. */
    strmap *m = strmap_create();
    char key[96];
    uint64_t v;

    for (size_t i = 0; i < 100000; i++) {
        size_t n = make_key(key, i);
        REQUIRE(strmap_put(m, key, n, i) == MXC_OK, "put");
        REQUIRE(strmap_get(m, key, n, &v) && v == i, "-");
        REQUIRE(strmap_del(m, key, n), "-");
        REQUIRE(strmap_count(m) == 0, "%llu", (unsigned long long)strmap_count(m));
        REQUIRE(!strmap_get(m, key, n, NULL), "-");
    }
    for (size_t i = 0; i < 100000; i++) {
        size_t n = make_key(key, 1000000 + i);
        REQUIRE(strmap_put(m, key, n, i) == MXC_OK, "put");
        if (i % 10 != 0)
            REQUIRE(strmap_del(m, key, n), "-");
    }
    REQUIRE(strmap_count(m) == 10000, "%llu", (unsigned long long)strmap_count(m));
    for (size_t i = 0; i < 100000; i++) {
        size_t n = make_key(key, 1000000 + i);
        bool found = strmap_get(m, key, n, &v);
        REQUIRE(found == (i % 10 == 0), "%d", found);
        if (found)
            REQUIRE(v == i, "%llu", (unsigned long long)v);
    }
    strmap_destroy(m);
}
END_TEST

static Suite *strmap_suite(void)
{
    Suite *s = suite_create("strmap");
    TCase *tc = tcase_create("basic");
    tcase_add_test(tc, create_destroy);
    tcase_add_test(tc, clear_and_reuse);
    tcase_add_test(tc, distinct_keys);
    tcase_add_test(tc, replace_and_values);
    tcase_add_test(tc, long_keys);
    suite_add_tcase(s, tc);

    tc = tcase_create("scale");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, many_inserts);
    tcase_add_test(tc, churn_small_set);
    tcase_add_test(tc, churn_large_set);
    tcase_add_test(tc, churn_growing);
    tcase_add_test(tc, insert_delete_unique);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(strmap_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
