/* check_sender - unit tests of server/sender.c: a table of senders and the greylist form each
 * must get (case, null sender, BATV, SRS, VERP numbers and hex, '+' extensions, nesting, and
 * rewritings that must be left alone), hostile and malformed input (never a crash, never a
 * control character, never more than SENDER_KEY_MAX bytes), and retries of one mail with
 * different tags that must give one key. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sender.h"

static const struct {
    const char *in, *want;
    enum sender_kind kind;
} cases[] = {
    /* case and the null sender */
    {"John.Doe@Example.COM", "john.doe@example.com", SENDER_MAILBOX},
    {"", "<>", SENDER_NULL},
    {NULL, "<>", SENDER_NULL},
    {"<>", "<>", SENDER_NULL},
    {"<Alice@Example.org>", "alice@example.org", SENDER_MAILBOX},
    {"alice@example.org.", "alice@example.org", SENDER_MAILBOX},
    /* BATV */
    {"prvs=1234abcdef=bounce@example.com", "bounce@example.com", SENDER_MAILBOX},
    {"PRVS=0123456789=Bounce@Example.com", "bounce@example.com", SENDER_MAILBOX},
    {"prvs=bounce/1234abcdef@example.com", "bounce@example.com", SENDER_MAILBOX},
    {"msprvs1=17abcdefgh=bounces-xyz@example.com", "bounces-xyz@example.com", SENDER_MAILBOX},
    {"btv1==0a5f9c7a2e4==user@example.com", "user@example.com", SENDER_MAILBOX},
    /* SRS */
    {"SRS0=HHH=TT=orig.example=alice@fwd.example", "alice@orig.example", SENDER_MAILBOX},
    {"srs0=x7Yq=4T=Orig.Example=Alice@fwd.example", "alice@orig.example", SENDER_MAILBOX},
    {"SRS0+HHH=TT=orig.example=alice@fwd.example", "alice@orig.example", SENDER_MAILBOX},
    {"SRS1=HHH=fwd1.example==HHH=TT=orig.example=alice@fwd2.example", "alice@orig.example",
     SENDER_MAILBOX},
    /* an SRS address whose original was BATV-tagged: both layers go */
    {"SRS0=HHH=TT=orig.example=prvs=1234abcdef=alice@fwd.example", "alice@orig.example",
     SENDER_MAILBOX},
    /* a BATV tag around an SRS address */
    {"prvs=1234abcdef=SRS0=HHH=TT=orig.example=alice@fwd.example", "alice@orig.example",
     SENDER_MAILBOX},
    /* VERP numbers and hex */
    {"bounce-12345-678@lists.example", "bounce-#-#@lists.example", SENDER_MAILBOX},
    {"msg-0a1b2c3d4e@x.example", "msg-#@x.example", SENDER_MAILBOX},
    {"user123@example.com", "user#@example.com", SENDER_MAILBOX},
    {"deadbeefcafe@example.com", "deadbeefcafe@example.com", SENDER_MAILBOX}, /* no digit */
    {"a1b2c3d4@example.com", "#@example.com", SENDER_MAILBOX},           /* 8 hex with digits */
    {"ab12cd@example.com", "ab#cd@example.com", SENDER_MAILBOX},         /* short: digits only */
    {"bounces+1a2b3c4d5e-user=example.net@lists.example", "bounces@lists.example", SENDER_MAILBOX},
    {"+tag@example.com", "+tag@example.com", SENDER_MAILBOX}, /* would be empty: kept */
    {"user@192.0.2.1.example", "user@192.0.2.1.example", SENDER_MAILBOX}, /* domain untouched */
    {"user@[192.0.2.1]", "user@[192.0.2.1]", SENDER_MAILBOX},
    {"\"john 99\"@example.com", "\"john 99\"@example.com", SENDER_MAILBOX}, /* quoted: as is */
    /* rewritings that are not what they seem: left alone (then VERP applies) */
    {"srs0=broken@fwd.example", "srs#=broken@fwd.example", SENDER_MAILBOX},
    {"SRS0=HHH=TT=not_a_domain=alice@fwd.example", "srs#=hhh=tt=not_a_domain=alice@fwd.example",
     SENDER_MAILBOX},
    {"SRS0=HHH=TT=orig.example=@fwd.example", "srs#=hhh=tt=orig.example=@fwd.example",
     SENDER_MAILBOX},
    {"prvs=@example.com", "prvs=@example.com", SENDER_MAILBOX},
    {"prvs=tag=@example.com", "prvs=tag=@example.com", SENDER_MAILBOX},
    {"btv1==tag==@example.com", "btv#==tag==@example.com", SENDER_MAILBOX},
    {"prvsuser@example.com", "prvsuser@example.com", SENDER_MAILBOX},
    /* not mailboxes: the raw text, lower-cased, controls dropped */
    {"Not An Address", "not an address", SENDER_RAW},
    {"user@", "user@", SENDER_RAW},
    {"@example.com", "@example.com", SENDER_RAW},
    {"a@b@C", "a@b@c", SENDER_RAW},
    {"x@exa\r\nmple.com", "x@example.com", SENDER_RAW},
    {"x@ex\x1b[31mample", "x@ex[31mample", SENDER_RAW},
    {"\xc3\xa9t\xc3\xa9@example.com", "??t??@example.com", SENDER_RAW},
    {"<", "<", SENDER_RAW},
    /* the brackets around a value that is no mailbox go too (fuzz_addr found "<com>" keyed as
     * "com>": tests/fuzz/regressions/fuzz_addr/bracketed_raw_sender) */
    {"<com>", "com", SENDER_RAW},
    {"<Not An Address>", "not an address", SENDER_RAW},
    {"<<>>", "<>", SENDER_RAW},
};

START_TEST(test_table)
{
    char out[SENDER_KEY_MAX + 1];
    enum sender_kind kind = sender_normalize(cases[_i].in, out, sizeof out);

    ck_assert_msg(strcmp(out, cases[_i].want) == 0, "case %d (%s): got \"%s\", want \"%s\"", _i,
                  cases[_i].in ? cases[_i].in : "NULL", out, cases[_i].want);
    ck_assert_msg(kind == cases[_i].kind, "case %d (%s): kind %d, want %d", _i,
                  cases[_i].in ? cases[_i].in : "NULL", kind, cases[_i].kind);
}
END_TEST

/* Retries of one mail carry fresh tags; all must give one key. */
START_TEST(test_retries_match)
{
    static const char *const groups[][4] = {
        {"prvs=1111aaaaaa=news@example.com", "prvs=2222bbbbbb=news@example.com",
         "PRVS=3333CCCCCC=News@Example.com", "news@example.com"},
        {"SRS0=aaaa=T1=orig.example=alice@fwd.example", "SRS0=bbbb=T2=orig.example=alice@fwd.example",
         "SRS1=cccc=fwd1.example==dddd=T3=orig.example=alice@fwd2.example", "alice@orig.example"},
        {"bounce-1001-77@lists.example", "bounce-1002-78@lists.example",
         "bounce-99999-1@lists.example", "bounce-#-#@lists.example"},
        {"m-0f1e2d3c4b5a@esp.example", "m-a9b8c7d6e5f4@esp.example", "m-12345678@esp.example",
         "m-#@esp.example"},
    };
    char a[SENDER_KEY_MAX + 1];

    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++)
        for (int i = 0; i < 3; i++) {
            sender_normalize(groups[g][i], a, sizeof a);
            ck_assert_msg(strcmp(a, groups[g][3]) == 0, "group %zu item %d: %s -> %s, want %s", g,
                          i, groups[g][i], a, groups[g][3]);
        }
}
END_TEST

static void assert_clean(const char *s)
{
    ck_assert_uint_le(strlen(s), SENDER_KEY_MAX);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        ck_assert_msg(*p >= 0x20 && *p < 0x7f, "byte 0x%02x in \"%s\"", *p, s);
}

/* Hostile input: over-long, every byte value, nested tags past the unwrap limit. */
START_TEST(test_hostile)
{
    char in[4096], out[SENDER_KEY_MAX + 1];

    memset(in, 'A', sizeof in - 1);
    in[sizeof in - 1] = '\0';
    ck_assert_int_eq(sender_normalize(in, out, sizeof out), SENDER_RAW);
    ck_assert_uint_eq(strlen(out), SENDER_KEY_MAX);
    assert_clean(out);

    /* Every byte value at every position of a short address. */
    for (int pos = 0; pos < 12; pos++)
        for (int c = 1; c < 256; c++) {
            snprintf(in, sizeof in, "user12@a.example");
            in[pos] = (char)c;
            sender_normalize(in, out, sizeof out);
            assert_clean(out);
        }

    /* Many BATV layers: at most SENDER_MAX_UNWRAP come off, the rest stays. */
    snprintf(in, sizeof in, "prvs=a=prvs=b=prvs=c=prvs=d=prvs=e=prvs=f=user@example.com");
    ck_assert_int_eq(sender_normalize(in, out, sizeof out), SENDER_MAILBOX);
    ck_assert_str_eq(out, "prvs=e=prvs=f=user@example.com");

    /* The longest valid mailbox stays within bounds. */
    char local[65];
    memset(local, 'x', 64);
    local[64] = '\0';
    char domain[256] = "";
    for (int i = 0; i < 3; i++)
        strcat(domain, "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghij.");
    strcat(domain, "example");
    snprintf(in, sizeof in, "%s@%s", local, domain);
    sender_normalize(in, out, sizeof out);
    assert_clean(out);

    /* Small output buffers: cut, terminated, never overrun. */
    char small[8];
    memset(small, 'Z', sizeof small);
    sender_normalize("someone@example.com", small, sizeof small);
    ck_assert_str_eq(small, "someone");
    sender_raw_text("ABCDEFGHIJ", small, sizeof small);
    ck_assert_str_eq(small, "abcdefg");
    char one[1] = {'Z'};
    sender_raw_text("abc", one, sizeof one);
    ck_assert_int_eq(one[0], '\0');
    ck_assert_int_eq(sender_normalize("a@b.example", one, sizeof one), SENDER_RAW);
}
END_TEST

START_TEST(test_raw_text)
{
    char out[SENDER_KEY_MAX + 1];

    ck_assert_str_eq(sender_raw_text(NULL, out, sizeof out), "");
    ck_assert_str_eq(sender_raw_text("User@Example.NET", out, sizeof out), "user@example.net");
    ck_assert_str_eq(sender_raw_text("a\tb\x7f" "c\x01", out, sizeof out), "abc");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sender");
    TCase *tc = tcase_create("core");
    tcase_add_loop_test(tc, test_table, 0, (int)(sizeof cases / sizeof cases[0]));
    tcase_add_test(tc, test_retries_match);
    tcase_add_test(tc, test_hostile);
    tcase_add_test(tc, test_raw_text);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
