/* check_duration - unit tests of proto/duration.c: duration and size parsing as operators write
 * them, hostile spellings included, and duration_format (which must parse back to its input).
 * Table-driven: each row is one input and its expected result. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "duration.h"
#include "mxc_err.h"

static const struct duration_case {
    const char *in;
    uint64_t unit_ms; /* default unit */
    int rc;
    uint64_t ms;
} duration_cases[] = {
    {"500ms", 1000, MXC_OK, 500},
    {"30s", 1000, MXC_OK, 30000},
    {"5m", 1000, MXC_OK, 300000},
    {"3h", 1000, MXC_OK, 10800000},
    {"31d", 1000, MXC_OK, 2678400000ull},
    {"2w", 1000, MXC_OK, 1209600000ull},
    {"0", 1000, MXC_OK, 0},
    {"0s", 1000, MXC_OK, 0},
    {"007s", 1000, MXC_OK, 7000},
    /* no unit: the caller's default unit */
    {"45", 1000, MXC_OK, 45000},
    {"45", 1, MXC_OK, 45},
    {"45", 60000, MXC_OK, 2700000},
    /* the edges of uint64_t */
    {"18446744073709551615", 1, MXC_OK, UINT64_MAX},
    {"18446744073709551615ms", 1000, MXC_OK, UINT64_MAX},
    {"18446744073709551616", 1, MXC_EINVAL, 0},      /* the number itself overflows */
    {"18446744073709551615s", 1000, MXC_EINVAL, 0},  /* the unit multiplication overflows */
    {"18446744073709552", 1000, MXC_EINVAL, 0},      /* the default unit overflows */
    {"30500568904944w", 1000, MXC_EINVAL, 0},
    {"99999999999999999999999999d", 1000, MXC_EINVAL, 0},
    /* not a duration */
    {"", 1000, MXC_EINVAL, 0},
    {"s", 1000, MXC_EINVAL, 0},
    {"ms", 1000, MXC_EINVAL, 0},
    {"-5s", 1000, MXC_EINVAL, 0},
    {"+5s", 1000, MXC_EINVAL, 0},
    {"1.5s", 1000, MXC_EINVAL, 0},
    {"0x10", 1000, MXC_EINVAL, 0},
    {"5x", 1000, MXC_EINVAL, 0},
    {"5sec", 1000, MXC_EINVAL, 0},
    {"5ms5", 1000, MXC_EINVAL, 0},
    {"5s5", 1000, MXC_EINVAL, 0},
    {"5S", 1000, MXC_EINVAL, 0},  /* units are lower case: "5M" would be minutes or months? */
    {"5M", 1000, MXC_EINVAL, 0},
    {" 5s", 1000, MXC_EINVAL, 0},
    {"5 s", 1000, MXC_EINVAL, 0},
    {"5s ", 1000, MXC_EINVAL, 0},
    {"5s\n", 1000, MXC_EINVAL, 0},
    {"\t5", 1000, MXC_EINVAL, 0},
};

START_TEST(test_duration_parse)
{
    const struct duration_case *c = &duration_cases[_i];
    uint64_t ms = 12345;
    int rc = duration_parse(c->in, c->unit_ms, &ms);

    ck_assert_msg(rc == c->rc, "duration_parse(\"%s\", %llu): rc %d, expected %d", c->in,
                  (unsigned long long)c->unit_ms, rc, c->rc);
    if (c->rc == MXC_OK)
        ck_assert_msg(ms == c->ms, "duration_parse(\"%s\"): %llu ms, expected %llu", c->in,
                      (unsigned long long)ms, (unsigned long long)c->ms);
}
END_TEST

START_TEST(test_duration_parse_null)
{
    uint64_t ms;

    ck_assert_int_eq(duration_parse(NULL, 1000, &ms), MXC_EINVAL);
}
END_TEST

static const struct size_case {
    const char *in;
    int rc;
    uint64_t bytes;
} size_cases[] = {
    {"0", MXC_OK, 0},
    {"1024", MXC_OK, 1024},
    {"64K", MXC_OK, 65536},
    {"64k", MXC_OK, 65536},
    {"64KB", MXC_OK, 65536},
    {"64kb", MXC_OK, 65536},
    {"64Kb", MXC_OK, 65536},
    {"16M", MXC_OK, 16ull << 20},
    {"16m", MXC_OK, 16ull << 20},
    {"16MB", MXC_OK, 16ull << 20},
    {"1G", MXC_OK, 1ull << 30},
    {"1g", MXC_OK, 1ull << 30},
    {"2T", MXC_OK, 2ull << 40},
    {"2TB", MXC_OK, 2ull << 40},
    {"10B", MXC_OK, 10},
    {"10b", MXC_OK, 10},
    {"16777215T", MXC_OK, 16777215ull << 40},
    {"18446744073709551615", MXC_OK, UINT64_MAX},
    {"18446744073709551615B", MXC_OK, UINT64_MAX},
    /* overflow */
    {"16777216T", MXC_EINVAL, 0},
    {"18014398509481984K", MXC_EINVAL, 0},
    {"18446744073709551616", MXC_EINVAL, 0},
    /* not a size */
    {"", MXC_EINVAL, 0},
    {"K", MXC_EINVAL, 0},
    {"B", MXC_EINVAL, 0},
    {"-1", MXC_EINVAL, 0},
    {"-1K", MXC_EINVAL, 0},
    {"1.5M", MXC_EINVAL, 0},
    {"64 M", MXC_EINVAL, 0},
    {" 64M", MXC_EINVAL, 0},
    {"64M ", MXC_EINVAL, 0},
    {"64KBB", MXC_EINVAL, 0},
    {"64BB", MXC_EINVAL, 0},
    {"64BK", MXC_EINVAL, 0},
    {"64P", MXC_EINVAL, 0},
    {"64KiB", MXC_EINVAL, 0},
    {"64Kx", MXC_EINVAL, 0},
    {"0x40", MXC_EINVAL, 0},
};

START_TEST(test_size_parse)
{
    const struct size_case *c = &size_cases[_i];
    uint64_t bytes = 12345;
    int rc = size_parse(c->in, &bytes);

    ck_assert_msg(rc == c->rc, "size_parse(\"%s\"): rc %d, expected %d", c->in, rc, c->rc);
    if (c->rc == MXC_OK)
        ck_assert_msg(bytes == c->bytes, "size_parse(\"%s\"): %llu, expected %llu", c->in,
                      (unsigned long long)bytes, (unsigned long long)c->bytes);
}
END_TEST

START_TEST(test_size_parse_null)
{
    uint64_t bytes;

    ck_assert_int_eq(size_parse(NULL, &bytes), MXC_EINVAL);
}
END_TEST

static const struct format_case {
    uint64_t ms;
    const char *out;
} format_cases[] = {
    {0, "0s"},
    {1, "1ms"},
    {500, "500ms"},
    {1000, "1s"},
    {1500, "1500ms"},
    {90000, "90s"},
    {60000, "1m"},
    {5400000, "90m"},
    {3600000, "1h"},
    {86400000, "1d"},
    {604800000, "7d"},  /* days, never weeks: TTLs read "31d" */
    {2678400000ull, "31d"},
    {UINT64_MAX, "18446744073709551615ms"},
};

START_TEST(test_duration_format)
{
    const struct format_case *c = &format_cases[_i];
    char buf[64];
    uint64_t back;

    ck_assert_ptr_eq(duration_format(c->ms, buf, sizeof buf), buf);
    ck_assert_str_eq(buf, c->out);
    /* whatever it writes must parse back to the same value */
    ck_assert_int_eq(duration_parse(buf, 1000, &back), MXC_OK);
    ck_assert_msg(back == c->ms, "\"%s\" parses back to %llu", buf, (unsigned long long)back);
}
END_TEST

START_TEST(test_duration_format_small_buffer)
{
    char buf[8];

    memset(buf, 'X', sizeof buf);
    duration_format(2678400000ull, buf, 3);  /* "31d" does not fit in 3 bytes */
    ck_assert_str_eq(buf, "31");
    ck_assert_int_eq(buf[3], 'X');  /* nothing written past buflen */
}
END_TEST

static Suite *duration_suite(void)
{
    Suite *s = suite_create("duration");
    TCase *tc = tcase_create("core");

    tcase_add_loop_test(tc, test_duration_parse, 0,
                        (int)(sizeof duration_cases / sizeof duration_cases[0]));
    tcase_add_test(tc, test_duration_parse_null);
    tcase_add_loop_test(tc, test_size_parse, 0, (int)(sizeof size_cases / sizeof size_cases[0]));
    tcase_add_test(tc, test_size_parse_null);
    tcase_add_loop_test(tc, test_duration_format, 0,
                        (int)(sizeof format_cases / sizeof format_cases[0]));
    tcase_add_test(tc, test_duration_format_small_buffer);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(duration_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
