/* Check suite for server/unsynced.c: which reads wait for which WAL sync. Rounds of writes and
 * reads as the main thread makes them, then syncs finishing in order, checked against what a
 * reply may rely on: a key written in a round that asked for sync G is pending until G is done
 * (and a later write moves it to the later sync), a round without sync leaves nothing behind,
 * a key written earlier in the same round is reported as such, and over-long keys make every
 * read wait (conservative, never early). */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unsynced.h"

#define GL MXCACHE__KEYSPACE__KEYSPACE_GREYLIST
#define AWL MXCACHE__KEYSPACE__KEYSPACE_AWL
#define S(lit) lit, sizeof(lit) - 1

static uint64_t rd(struct unsynced *u, Mxcache__Keyspace ks, const char *k, bool *this_round)
{
    bool tr = false;
    uint64_t g = unsynced_read(u, ks, k, strlen(k), &tr);
    if (this_round)
        *this_round = tr;
    return g;
}

START_TEST(test_rounds_and_syncs)
{
    struct unsynced *u = unsynced_create();
    bool tr;

    ck_assert_ptr_nonnull(u);
    /* Round 1 writes a and b, asks for sync 1. Inside the round, a read of a sees it. */
    ck_assert_uint_eq(rd(u, GL, "a", &tr), 0);
    ck_assert(!tr);
    unsynced_write(u, GL, S("a"));
    ck_assert_uint_eq(rd(u, GL, "a", &tr), 0);
    ck_assert(tr);
    ck_assert_uint_eq(rd(u, AWL, "a", &tr), 0); /* another keyspace: another key */
    ck_assert(!tr);
    unsynced_write(u, GL, S("b"));
    unsynced_end_round(u, 1);
    ck_assert_uint_eq(unsynced_count(u), 2);
    ck_assert_uint_eq(rd(u, GL, "a", &tr), 1);
    ck_assert(!tr);

    /* Round 2 writes only lazily (no sync): forgotten at its end. */
    unsynced_write(u, GL, S("c"));
    unsynced_end_round(u, 0);
    ck_assert_uint_eq(rd(u, GL, "c", &tr), 0);
    ck_assert(!tr);

    /* Round 3 rewrites b: it now waits for sync 3. */
    unsynced_write(u, GL, S("b"));
    unsynced_end_round(u, 3);
    ck_assert_uint_eq(rd(u, GL, "b", NULL), 3);

    /* Sync 1 finishes: a is durable, b still waits for 3. */
    unsynced_done(u, 1);
    ck_assert_uint_eq(rd(u, GL, "a", NULL), 0);
    ck_assert_uint_eq(rd(u, GL, "b", NULL), 3);
    ck_assert_uint_eq(unsynced_count(u), 1);
    unsynced_done(u, 3);
    ck_assert_uint_eq(rd(u, GL, "b", NULL), 0);
    ck_assert_uint_eq(unsynced_count(u), 0);
    unsynced_destroy(u);
}
END_TEST

START_TEST(test_long_keys_are_conservative)
{
    struct unsynced *u = unsynced_create();
    char *big = malloc(UNSYNCED_KEY_MAX + 10);
    bool tr = false;

    ck_assert_ptr_nonnull(big);
    memset(big, 'x', UNSYNCED_KEY_MAX + 9);
    big[UNSYNCED_KEY_MAX + 9] = '\0';
    unsynced_write(u, GL, big, strlen(big));
    /* Any read of this round may depend on it... */
    ck_assert_uint_eq(rd(u, GL, "unrelated", &tr), 0);
    ck_assert(tr);
    unsynced_end_round(u, 5);
    /* ... and of later rounds, until sync 5 is done. */
    ck_assert_uint_eq(rd(u, GL, "unrelated", &tr), 5);
    ck_assert(!tr);
    ck_assert_uint_eq(unsynced_read(u, GL, big, strlen(big), &tr), 5);
    unsynced_done(u, 4);
    ck_assert_uint_eq(rd(u, GL, "unrelated", NULL), 5);
    unsynced_done(u, 5);
    ck_assert_uint_eq(rd(u, GL, "unrelated", NULL), 0);
    free(big);
    unsynced_destroy(u);
}
END_TEST

/* Many rounds, syncs finishing behind: the answer always equals a plain model's. */
START_TEST(test_against_model)
{
    enum { KEYS = 50, ROUNDS = 3000 };
    uint64_t model[KEYS] = {0}, done = 0, gen = 0, rng = 12345;
    struct unsynced *u = unsynced_create();
    char key[16];

    for (int r = 0; r < ROUNDS; r++) {
        bool written[KEYS] = {false};
        for (int op = 0; op < 8; op++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            int k = (int)((rng >> 33) % KEYS);
            snprintf(key, sizeof key, "key%d", k);
            if ((rng >> 20) & 1) {
                unsynced_write(u, GL, key, strlen(key));
                written[k] = true;
            } else {
                bool tr = false;
                uint64_t g = unsynced_read(u, GL, key, strlen(key), &tr);
                ck_assert_uint_eq(tr, written[k]);
                ck_assert_uint_eq(g, model[k] > done ? model[k] : 0);
            }
        }
        bool sync = (rng >> 40) % 3 != 0;
        uint64_t g = sync ? ++gen : 0;
        unsynced_end_round(u, g);
        for (int k = 0; k < KEYS; k++)
            if (written[k] && sync)
                model[k] = g;
        if ((rng >> 45) % 4 == 0 && done < gen) {
            done += 1 + (rng >> 50) % (gen - done);
            unsynced_done(u, done);
        }
    }
    unsynced_done(u, gen);
    ck_assert_uint_eq(unsynced_count(u), 0);
    unsynced_destroy(u);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("unsynced");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_rounds_and_syncs);
    tcase_add_test(tc, test_long_keys_are_conservative);
    tcase_add_test(tc, test_against_model);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
