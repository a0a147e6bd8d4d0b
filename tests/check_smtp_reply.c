/* Check suite for server/smtp_reply.c: the incremental parser of SMTP replies the prober reads.
 *
 * Table-driven: valid replies (single and multi-line, with and without enhanced status codes,
 * bare codes, LF-only line ends, 1xx to 5xx, statuses that must and must not be taken) with the
 * fields they give, and malformed ones with the byte where the parser must stop and the reason it
 * must give. Every case is fed whole, one byte at a time and in random pieces, each piece copied
 * into a heap block of exactly its size so that AddressSanitizer sees any read past it, and must
 * give the same result every time. Then the limits exactly at and one past their values (line
 * length, line count, kept text), pipelined replies, the parser's state after DONE and BAD, and a
 * seeded random attack that checks the parser's promises on hostile bytes in hostile pieces. */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_reply.h"

#define S(lit) lit, sizeof(lit) - 1 /* a literal with its length, embedded NULs included */
/* An assertion for hot loops: Check records every passing ck_assert with a write, which would
 * make the random attack take minutes; this one costs nothing until it fails. */
#define REQUIRE(cond, ...)                                                                         \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ck_abort_msg(__VA_ARGS__);                                                             \
    } while (0)

#define RANDOM_PIECE_MAX 16    /* most random pieces are short, to split lines everywhere */
#define RANDOM_ROUNDS 3        /* random splits tried per table case */
#define ATTACK_ROUNDS 4000     /* random byte strings of the attack */
#define ATTACK_LINES_MAX 8     /* lines of an ordinary attack string */
#define ATTACK_BODY_MAX 30     /* tokens and bytes in one attack line */

/* ---- a seeded generator, so that a failure can be replayed ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* ---- feeding in pieces ---- */

enum split {
    SPLIT_WHOLE,  /* all at once */
    SPLIT_BYTES,  /* one byte per call */
    SPLIT_RANDOM, /* pieces of random sizes, mostly short, sometimes the rest */
};

static const char *const split_names[] = {"whole", "bytes", "random"};

/* piece_size - how much the next call gets out of left bytes. */
static size_t piece_size(enum split how, size_t left)
{
    size_t k;

    if (how == SPLIT_WHOLE)
        return left;
    if (how == SPLIT_BYTES)
        return left ? 1 : 0;
    k = rng() % 8 == 0 ? left : 1 + rng() % RANDOM_PIECE_MAX;
    return k < left ? k : left;
}

/* feed_at - one smtp_parser_feed of len bytes at buf, which the caller has made end where a heap
 * block ends; checks the promises on *used that hold whatever the bytes are. */
static enum smtp_parse feed_at(struct smtp_parser *p, const char *buf, size_t len, size_t *used,
                               struct smtp_reply *out)
{
    enum smtp_parse r;

    *used = (size_t)-1;
    r = smtp_parser_feed(p, buf, len, used, out);
    REQUIRE(r == SMTP_PARSE_MORE || r == SMTP_PARSE_DONE || r == SMTP_PARSE_BAD,
            "feed returned %d", (int)r);
    REQUIRE(*used <= len, "used %zu of %zu", *used, len);
    REQUIRE(r != SMTP_PARSE_MORE || *used == len, "MORE but used %zu of %zu", *used, len);
    return r;
}

/* feed_piece - feed_at on a heap copy of exactly len bytes. */
static enum smtp_parse feed_piece(struct smtp_parser *p, const char *buf, size_t len, size_t *used,
                                  struct smtp_reply *out)
{
    char *piece = calloc(len ? len : 1, 1);
    enum smtp_parse r;

    REQUIRE(piece, "out of memory");
    if (len)
        memcpy(piece, buf, len);
    r = feed_at(p, piece, len, used, out);
    free(piece);
    return r;
}

/* feed_rest - feeds the next piece of heap block (len bytes) from off: a piece that reaches the
 * block's end is fed in place (ASan guards its end already), a shorter one copied, so that long
 * inputs cut in many pieces cost no quadratic copying. */
static enum smtp_parse feed_rest(struct smtp_parser *p, const char *block, size_t len, size_t off,
                                 enum split how, size_t *used, struct smtp_reply *out)
{
    size_t k = piece_size(how, len - off);

    if (off + k == len)
        return feed_at(p, block + off, k, used, out);
    return feed_piece(p, block + off, k, used, out);
}

/* feed_split - feeds buf in pieces until the parser says DONE or BAD or buf runs out (at least
 * one call, even for len 0). *used: the bytes consumed in all. */
static enum smtp_parse feed_split(struct smtp_parser *p, const char *buf, size_t len,
                                  enum split how, size_t *used, struct smtp_reply *out)
{
    char *block = calloc(len ? len : 1, 1); /* calloc: GCC warns of a block never written */
    size_t off = 0, u;
    enum smtp_parse r;

    REQUIRE(block, "out of memory");
    if (len)
        memcpy(block, buf, len);
    do {
        r = feed_rest(p, block, len, off, how, &u, out);
        off += u;
    } while (r == SMTP_PARSE_MORE && off < len);
    free(block);
    *used = off;
    return r;
}

/* expect_reply - the reply's fields are the ones wanted; label names the case in a failure. */
static void expect_reply(const struct smtp_reply *r, unsigned code, const char *status,
                         const char *text, unsigned lines, const char *label)
{
    ck_assert_msg(r->code == code, "%s: code %u, want %u", label, r->code, code);
    ck_assert_msg(strcmp(r->status, status) == 0, "%s: status \"%s\", want \"%s\"", label,
                  r->status, status);
    ck_assert_msg(strcmp(r->text, text) == 0, "%s: text \"%s\", want \"%s\"", label, r->text,
                  text);
    ck_assert_msg(r->lines == lines, "%s: %u lines, want %u", label, r->lines, lines);
}

/* check_safe_reply - what any reply the parser says DONE for must satisfy. */
static void check_safe_reply(const struct smtp_reply *r)
{
    size_t n = strnlen(r->text, sizeof r->text);

    REQUIRE(n < SMTP_REPLY_TEXT_MAX, "text not terminated");
    REQUIRE(strnlen(r->status, sizeof r->status) < SMTP_STATUS_MAX, "status not terminated");
    REQUIRE(r->code >= 100 && r->code <= 599, "code %u", r->code);
    REQUIRE(r->lines >= 1 && r->lines <= SMTP_REPLY_LINES_MAX, "%u lines", r->lines);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)r->text[i];
        REQUIRE(c >= 0x20 && c <= 0x7e, "byte 0x%02x in a kept text", c);
    }
}

/* ---- valid replies ---- */

struct good_case {
    const char *in;
    size_t len; /* exactly one reply: all of it is used */
    unsigned code;
    const char *status;
    const char *text;
    unsigned lines;
};

static const struct good_case good_cases[] = {
    /* single line, with and without status and text */
    {S("250 OK\r\n"), 250, "", "OK", 1},
    {S("250 2.1.0 Ok\r\n"), 250, "2.1.0", "Ok", 1},
    {S("250 2.0.0\r\n"), 250, "2.0.0", "", 1},
    {S("250\r\n"), 250, "", "", 1},
    {S("250\n"), 250, "", "", 1},
    {S("250 \r\n"), 250, "", "", 1},
    {S("221 2.0.0 Bye\r\n"), 221, "2.0.0", "Bye", 1},
    {S("220 mx.example.com ESMTP Postfix\r\n"), 220, "", "mx.example.com ESMTP Postfix", 1},
    {S("550 5.1.1 <u@example.com>: Recipient address rejected: User unknown\r\n"), 550, "5.1.1",
     "<u@example.com>: Recipient address rejected: User unknown", 1},
    {S("450 4.2.0 <u@example.com>: Recipient address rejected: Greylisted\r\n"), 450, "4.2.0",
     "<u@example.com>: Recipient address rejected: Greylisted", 1},
    {S("421 4.3.2 Service shutting down\n"), 421, "4.3.2", "Service shutting down", 1},
    /* multi-line */
    {S("250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n"
       "250-ENHANCEDSTATUSCODES\r\n250 SMTPUTF8\r\n"),
     250, "", "mx.example.com PIPELINING SIZE 10240000 8BITMIME ENHANCEDSTATUSCODES SMTPUTF8", 6},
    {S("550-5.1.1 a\r\n550 5.1.1 b\r\n"), 550, "5.1.1", "a b", 2},
    {S("550-5.1.1 The email account that you tried to reach does not exist.\r\n"
       "550-5.1.1 Please try double-checking the recipient's email address.\r\n"
       "550 5.1.1 https://support.example/mail\r\n"),
     550, "5.1.1",
     "The email account that you tried to reach does not exist. Please try double-checking the "
     "recipient's email address. https://support.example/mail",
     3},
    {S("550-5.1.1 a\r\n550 5.1.1\r\n"), 550, "5.1.1", "a", 2},
    {S("550-5.1.1 a\r\n550 5.1.1\tb\r\n"), 550, "5.1.1", "a b", 2},
    {S("250-a\n250 b\n"), 250, "", "a b", 2},
    {S("250-a\r\n250 b\n"), 250, "", "a b", 2},
    {S("250-a\n250-b\r\n250 c\r\n"), 250, "", "a b c", 3},
    {S("250-a\r\n250\r\n"), 250, "", "a", 2},
    {S("250-\r\n250-a\r\n250-\r\n250 \r\n"), 250, "", "a", 4},
    {S("250-\r\n250\r\n"), 250, "", "", 2},
    /* only a repeat of the first line's status is removed */
    {S("550-5.1.1 a\r\n550 5.7.1 b\r\n"), 550, "5.1.1", "a 5.7.1 b", 2},
    {S("550-a\r\n550 5.1.1 b\r\n"), 550, "", "a 5.1.1 b", 2},
    {S("550-5.1.1 a\r\n550 5.1.10 b\r\n"), 550, "5.1.1", "a 5.1.10 b", 2},
    {S("550-5.1.1 a\r\n550 5.1.1b\r\n"), 550, "5.1.1", "a 5.1.1b", 2},
    {S("550-5.1.1 a\r\n550 b 5.1.1\r\n"), 550, "5.1.1", "a b 5.1.1", 2},
    /* other classes */
    {S("354 End data with <CR><LF>.<CR><LF>\r\n"), 354, "", "End data with <CR><LF>.<CR><LF>", 1},
    {S("334 VXNlcm5hbWU6\r\n"), 334, "", "VXNlcm5hbWU6", 1},
    {S("101 hello\r\n"), 101, "", "hello", 1},
    {S("100\r\n"), 100, "", "", 1},
    {S("599 x\r\n"), 599, "", "x", 1},
    /* what is and is not an enhanced status code */
    {S("550 5.1.10 x\r\n"), 550, "5.1.10", "x", 1},
    {S("550 5.123.456 x\r\n"), 550, "5.123.456", "x", 1},
    {S("550 5.1.1   x\r\n"), 550, "5.1.1", "x", 1},
    {S("550 5.1.1\tx\r\n"), 550, "5.1.1", "x", 1},
    {S("550 5.1.1\r\n"), 550, "5.1.1", "", 1},
    {S("450 4.7.1 x\r\n"), 450, "4.7.1", "x", 1},
    {S("550 6.1.1 x\r\n"), 550, "", "6.1.1 x", 1},
    {S("550 3.1.1 x\r\n"), 550, "", "3.1.1 x", 1},
    {S("550 5.1 x\r\n"), 550, "", "5.1 x", 1},
    {S("550 5.1\r\n"), 550, "", "5.1", 1},
    {S("550 5.1.1x\r\n"), 550, "", "5.1.1x", 1},
    {S("550 5.1.1.1 x\r\n"), 550, "", "5.1.1.1 x", 1},
    {S("550 5.1234.1 x\r\n"), 550, "", "5.1234.1 x", 1},
    {S("550 5.1.1000 x\r\n"), 550, "", "5.1.1000 x", 1},
    {S("550 5..1 x\r\n"), 550, "", "5..1 x", 1},
    {S("550 5.1. x\r\n"), 550, "", "5.1. x", 1},
    {S("550 .5.1.1 x\r\n"), 550, "", ".5.1.1 x", 1},
    {S("550 55.1.1 x\r\n"), 550, "", "55.1.1 x", 1},
    {S("550 x 5.1.1\r\n"), 550, "", "x 5.1.1", 1},
    /* cleaning: TAB made a space, DEL and 8-bit bytes made '?' */
    {S("250 a\tb\r\n"), 250, "", "a b", 1},
    {S("250 caf\xc3\xa9 \x7f\xff\x80 !\r\n"), 250, "", "caf?? ??? !", 1},
    {S("250-\xe2\x9c\x93\r\n250 ok\r\n"), 250, "", "??? ok", 2},
};

#define NGOOD ((int)(sizeof good_cases / sizeof good_cases[0]))

START_TEST(good_table)
{
    const struct good_case *c = &good_cases[_i];
    struct smtp_parser p;
    struct smtp_reply out;
    char label[64];
    size_t used;

    for (int how = SPLIT_WHOLE; how <= SPLIT_RANDOM; how++) {
        for (int round = 0; round < (how == SPLIT_RANDOM ? RANDOM_ROUNDS : 1); round++) {
            snprintf(label, sizeof label, "case %d %s", _i, split_names[how]);
            smtp_parser_init(&p);
            memset(&out, 0xa5, sizeof out);
            enum smtp_parse r = feed_split(&p, c->in, c->len, how, &used, &out);
            ck_assert_msg(r == SMTP_PARSE_DONE, "%s: %d (%s)", label, (int)r,
                          smtp_parser_error(&p));
            ck_assert_msg(used == c->len, "%s: used %zu of %zu", label, used, c->len);
            expect_reply(&out, c->code, c->status, c->text, c->lines, label);
            check_safe_reply(&out);
            ck_assert_str_eq(smtp_parser_error(&p), "");
        }
    }
    /* Without its last byte (the final LF) the reply is not complete. */
    smtp_parser_init(&p);
    ck_assert_int_eq(feed_split(&p, c->in, c->len - 1, SPLIT_WHOLE, &used, &out),
                     SMTP_PARSE_MORE);
    ck_assert_uint_eq(used, c->len - 1);
}
END_TEST

/* Every case twice in one buffer: the first DONE stops at its end, and the parser reads the
 * second without smtp_parser_init. */
START_TEST(good_table_twice)
{
    const struct good_case *c = &good_cases[_i];
    struct smtp_parser p;
    struct smtp_reply out;
    char *two = malloc(2 * c->len);
    size_t used;

    ck_assert_ptr_nonnull(two);
    memcpy(two, c->in, c->len);
    memcpy(two + c->len, c->in, c->len);
    for (int how = SPLIT_WHOLE; how <= SPLIT_RANDOM; how++) {
        smtp_parser_init(&p);
        ck_assert_int_eq(feed_split(&p, two, 2 * c->len, how, &used, &out), SMTP_PARSE_DONE);
        ck_assert_uint_eq(used, c->len);
        expect_reply(&out, c->code, c->status, c->text, c->lines, "first");
        memset(&out, 0xa5, sizeof out);
        ck_assert_int_eq(feed_split(&p, two + used, c->len, how, &used, &out), SMTP_PARSE_DONE);
        ck_assert_uint_eq(used, c->len);
        expect_reply(&out, c->code, c->status, c->text, c->lines, "second");
    }
    free(two);
}
END_TEST

/* ---- malformed replies ---- */

struct bad_case {
    const char *in;
    size_t len;
    size_t used;     /* up to and including the byte found wrong */
    const char *why; /* a part of smtp_parser_error */
};

static const struct bad_case bad_cases[] = {
    /* no code */
    {S("\r\n"), 2, "line 1: no reply code"},
    {S("\n"), 1, "no reply code"},
    {S("25\r\n"), 4, "no reply code"},
    {S("2\n"), 2, "no reply code"},
    {S("25a ok\r\n"), 3, "no reply code"},
    {S("abc\r\n"), 1, "no reply code"},
    {S(" 250 ok\r\n"), 1, "no reply code"},
    {S("\xff\xfe"), 1, "no reply code"},
    {S("EHLO x\r\n"), 1, "no reply code"},
    /* not ' ', '-' or the end after the code */
    {S("2500 ok\r\n"), 4, "after the reply code"},
    {S("250x\r\n"), 4, "after the reply code"},
    {S("250:ok\r\n"), 4, "after the reply code"},
    {S("250\t ok\r\n"), 4, "after the reply code"},
    {S("250\xff\r\n"), 4, "after the reply code"},
    /* first digit outside 1..5 */
    {S("650 no\r\n"), 1, "starts with 6"},
    {S("050 no\r\n"), 1, "starts with 0"},
    {S("950 no\r\n"), 1, "starts with 9"},
    /* the code changes */
    {S("250-a\r\n251 b\r\n"), 14, "line 2: reply code 251 after 250"},
    {S("250-a\r\n550 b\r\n"), 14, "reply code 550 after 250"},
    {S("250-a\r\n250-b\r\n252\r\n"), 19, "line 3: reply code 252 after 250"},
    /* a later line without a code */
    {S("250-a\r\nxyz\r\n"), 8, "line 2: no reply code"},
    {S("250-a\r\n\r\n"), 9, "line 2: no reply code"},
    {S("250-a\n\n"), 7, "line 2: no reply code"},
    {S("250-a\r\n 250 b\r\n"), 8, "line 2: no reply code"},
    {S("250-a\r\n650 b\r\n"), 8, "line 2: reply code starts with 6"},
    {S("250-a\r\n2500 b\r\n"), 11, "line 2: no ' ' or '-'"},
    /* control bytes */
    {S("250 a\0b\r\n"), 6, "line 1: control byte 0x00"},
    {S("250 a\x01" "b\r\n"), 6, "control byte 0x01"},
    {S("250 a\x1b[31m\r\n"), 6, "control byte 0x1b"},
    {S("250 a\x0b" "b\r\n"), 6, "control byte 0x0b"},
    {S("250 a\x0c" "b\r\n"), 6, "control byte 0x0c"},
    {S("250 \x1f\r\n"), 5, "control byte 0x1f"},
    {S("2\x00" "50 ok\r\n"), 2, "control byte 0x00"},
    {S("\0"), 1, "control byte 0x00"},
    {S("250-ok\r\n250-ok\r\n\x00"), 17, "line 3: control byte 0x00"},
    /* CR only before LF */
    {S("250 a\rb\r\n"), 7, "CR not followed by LF"},
    {S("250 a\r\r\n"), 7, "CR not followed by LF"},
    {S("250\r250 a\r\n"), 5, "CR not followed by LF"},
    {S("\r\r\n"), 2, "CR not followed by LF"},
};

#define NBAD ((int)(sizeof bad_cases / sizeof bad_cases[0]))

START_TEST(bad_table)
{
    const struct bad_case *c = &bad_cases[_i];
    struct smtp_parser p;
    struct smtp_reply out;
    char label[64];
    size_t used;

    for (int how = SPLIT_WHOLE; how <= SPLIT_RANDOM; how++) {
        for (int round = 0; round < (how == SPLIT_RANDOM ? RANDOM_ROUNDS : 1); round++) {
            snprintf(label, sizeof label, "case %d %s", _i, split_names[how]);
            smtp_parser_init(&p);
            enum smtp_parse r = feed_split(&p, c->in, c->len, how, &used, &out);
            ck_assert_msg(r == SMTP_PARSE_BAD, "%s: %d, not BAD", label, (int)r);
            ck_assert_msg(used == c->used, "%s: used %zu, want %zu", label, used, c->used);
            ck_assert_msg(strstr(smtp_parser_error(&p), c->why), "%s: error \"%s\", want \"%s\"",
                          label, smtp_parser_error(&p), c->why);
        }
    }
}
END_TEST

/* ---- limits ---- */

/* make_line - "250 xxx...EOL" or "250-xxx...EOL" of exactly total bytes with its end. */
static size_t make_line(char *dst, size_t total, char sep, const char *eol)
{
    size_t e = strlen(eol);

    ck_assert_uint_ge(total, 4 + e);
    memcpy(dst, "250", 3);
    dst[3] = sep;
    memset(dst + 4, 'x', total - 4 - e);
    memcpy(dst + total - e, eol, e);
    return total;
}

START_TEST(line_length)
{
    static const char *const eols[] = {"\r\n", "\n"};
    char buf[2 * SMTP_REPLY_LINE_MAX + 64], want[SMTP_REPLY_TEXT_MAX], too_long[64];
    struct smtp_parser p;
    struct smtp_reply out;
    size_t n, used;

    snprintf(too_long, sizeof too_long, "line 1: longer than %d bytes", SMTP_REPLY_LINE_MAX);
    memset(want, 'x', SMTP_REPLY_TEXT_MAX - 1);
    want[SMTP_REPLY_TEXT_MAX - 1] = '\0';
    for (size_t e = 0; e < sizeof eols / sizeof eols[0]; e++) {
        for (int how = SPLIT_WHOLE; how <= SPLIT_RANDOM; how++) {
            /* exactly SMTP_REPLY_LINE_MAX with the line end: accepted */
            n = make_line(buf, SMTP_REPLY_LINE_MAX, ' ', eols[e]);
            smtp_parser_init(&p);
            ck_assert_int_eq(feed_split(&p, buf, n, how, &used, &out), SMTP_PARSE_DONE);
            ck_assert_uint_eq(used, n);
            expect_reply(&out, 250, "", want, 1, "at the limit");

            /* one byte more: refused at the byte that cannot fit */
            n = make_line(buf, SMTP_REPLY_LINE_MAX + 1, ' ', eols[e]);
            smtp_parser_init(&p);
            ck_assert_int_eq(feed_split(&p, buf, n, how, &used, &out), SMTP_PARSE_BAD);
            ck_assert_uint_eq(used, SMTP_REPLY_LINE_MAX);
            ck_assert_ptr_nonnull(strstr(smtp_parser_error(&p), too_long));

            /* the same on a later line */
            n = make_line(buf, SMTP_REPLY_LINE_MAX, '-', eols[e]);
            n += make_line(buf + n, SMTP_REPLY_LINE_MAX, ' ', eols[e]);
            smtp_parser_init(&p);
            ck_assert_int_eq(feed_split(&p, buf, n, how, &used, &out), SMTP_PARSE_DONE);
            ck_assert_uint_eq(used, n);
            ck_assert_uint_eq(out.lines, 2);
            n = make_line(buf, 10, '-', eols[e]);
            n += make_line(buf + n, SMTP_REPLY_LINE_MAX + 1, ' ', eols[e]);
            smtp_parser_init(&p);
            ck_assert_int_eq(feed_split(&p, buf, n, how, &used, &out), SMTP_PARSE_BAD);
            ck_assert_uint_eq(used, 10 + SMTP_REPLY_LINE_MAX);
            ck_assert_ptr_nonnull(strstr(smtp_parser_error(&p), "line 2: longer than"));
        }
    }
    /* A hostile endless line is refused at the limit, not read to its end. */
    char *big = malloc(1 << 20);
    ck_assert_ptr_nonnull(big);
    memcpy(big, "250 ", 4);
    memset(big + 4, 'x', (1 << 20) - 4);
    smtp_parser_init(&p);
    ck_assert_int_eq(smtp_parser_feed(&p, big, 1 << 20, &used, &out), SMTP_PARSE_BAD);
    ck_assert_uint_eq(used, SMTP_REPLY_LINE_MAX);
    free(big);
}
END_TEST

/* many_lines - a reply of nlines lines "250-l" ... "250 end" into buf; its length. */
static size_t many_lines(char *buf, unsigned nlines)
{
    size_t n = 0;

    for (unsigned i = 1; i < nlines; i++) {
        memcpy(buf + n, "250-l\r\n", 7);
        n += 7;
    }
    memcpy(buf + n, "250 end\r\n", 9);
    return n + 9;
}

START_TEST(line_count)
{
    char buf[(SMTP_REPLY_LINES_MAX + 2) * 9], too_many[64];
    struct smtp_parser p;
    struct smtp_reply out;
    size_t n, used;

    snprintf(too_many, sizeof too_many, "more than %d lines", SMTP_REPLY_LINES_MAX);

    for (int how = SPLIT_WHOLE; how <= SPLIT_RANDOM; how++) {
        n = many_lines(buf, SMTP_REPLY_LINES_MAX);
        smtp_parser_init(&p);
        ck_assert_int_eq(feed_split(&p, buf, n, how, &used, &out), SMTP_PARSE_DONE);
        ck_assert_uint_eq(used, n);
        ck_assert_uint_eq(out.lines, SMTP_REPLY_LINES_MAX);
        ck_assert_uint_eq(strlen(out.text), 2 * (SMTP_REPLY_LINES_MAX - 1) + 3); /* "l l ... end" */

        /* SMTP_REPLY_LINES_MAX continuation lines: refused at the end of the last of them, as
         * the reply can no longer end within the limit. */
        n = many_lines(buf, SMTP_REPLY_LINES_MAX + 1);
        smtp_parser_init(&p);
        ck_assert_int_eq(feed_split(&p, buf, n, how, &used, &out), SMTP_PARSE_BAD);
        ck_assert_uint_eq(used, 7 * SMTP_REPLY_LINES_MAX);
        ck_assert_str_eq(smtp_parser_error(&p), too_many);
    }
}
END_TEST

/* parse_text - the text of the one reply in buf, which must be DONE. */
static void parse_text(const char *buf, size_t len, struct smtp_reply *out)
{
    struct smtp_parser p;
    size_t used;

    smtp_parser_init(&p);
    ck_assert_int_eq(feed_split(&p, buf, len, SPLIT_WHOLE, &used, out), SMTP_PARSE_DONE);
    ck_assert_uint_eq(used, len);
    check_safe_reply(out);
}

START_TEST(text_limit)
{
    const size_t cap = SMTP_REPLY_TEXT_MAX - 1;
    char buf[4 * SMTP_REPLY_LINE_MAX], want[SMTP_REPLY_TEXT_MAX];
    struct smtp_reply out;
    int n;

    /* one line of exactly cap, cap + 1 and many more bytes of text */
    n = snprintf(buf, sizeof buf, "250 %0*d\r\n", (int)cap, 0);
    parse_text(buf, (size_t)n, &out);
    ck_assert_uint_eq(strlen(out.text), cap);
    n = snprintf(buf, sizeof buf, "250 %0*d1\r\n", (int)cap, 0);
    parse_text(buf, (size_t)n, &out);
    ck_assert_uint_eq(strlen(out.text), cap);
    ck_assert_int_eq(out.text[cap - 1], '0'); /* the '1' past the limit is cut */
    ck_assert_uint_eq(out.lines, 1);          /* nothing written past text[] */
    n = snprintf(buf, sizeof buf, "250 %0*d\r\n", SMTP_REPLY_LINE_MAX - 6, 0);
    parse_text(buf, (size_t)n, &out);
    ck_assert_uint_eq(strlen(out.text), cap);
    ck_assert_uint_eq(out.lines, 1);
    ck_assert_uint_eq(out.code, 250);

    /* joining at the limit: the space goes in only if a byte can follow it */
    n = snprintf(buf, sizeof buf, "250-%0*d\r\n250 bc\r\n", (int)(cap - 2), 0);
    parse_text(buf, (size_t)n, &out);
    snprintf(want, sizeof want, "%0*d b", (int)(cap - 2), 0);
    ck_assert_str_eq(out.text, want);
    n = snprintf(buf, sizeof buf, "250-%0*d\r\n250 b\r\n", (int)(cap - 1), 0);
    parse_text(buf, (size_t)n, &out);
    ck_assert_uint_eq(strlen(out.text), cap - 1);
    ck_assert_int_eq(out.text[cap - 2], '0');
    n = snprintf(buf, sizeof buf, "250-%0*d\r\n250 b\r\n", (int)cap, 0);
    parse_text(buf, (size_t)n, &out);
    ck_assert_uint_eq(strlen(out.text), cap);
    ck_assert_uint_eq(out.lines, 2);

    /* many lines of text cut at the limit, the status removed from each before the cut */
    n = 0;
    for (int i = 0; i < 90; i++)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "550-5.1.1 line%02d\r\n", i);
    n += snprintf(buf + n, sizeof buf - (size_t)n, "550 5.1.1 end\r\n");
    parse_text(buf, (size_t)n, &out);
    /* 73 words of 6 bytes and 72 spaces make 510; a 74th joining space would end the text */
    ck_assert_uint_eq(strlen(out.text), cap - 1);
    ck_assert(strncmp(out.text + cap - 8, " line72", 7) == 0);
    ck_assert_str_eq(out.status, "5.1.1");
    ck_assert_uint_eq(out.lines, 91);
    ck_assert(strncmp(out.text, "line00 line01 line02 ", 21) == 0);
    ck_assert_ptr_null(strstr(out.text, "5.1.1"));
}
END_TEST

/* ---- pipelining and the parser's state ---- */

START_TEST(two_replies)
{
    static const char two[] = "250-mx.example.com\r\n250 PIPELINING\r\n550 5.1.1 no\r\n";
    const size_t first = 36, len = sizeof two - 1;
    struct smtp_parser p;
    struct smtp_reply out;
    size_t used;

    smtp_parser_init(&p);
    ck_assert_int_eq(feed_piece(&p, two, len, &used, &out), SMTP_PARSE_DONE);
    ck_assert_uint_eq(used, first);
    expect_reply(&out, 250, "", "mx.example.com PIPELINING", 2, "first");
    ck_assert_int_eq(feed_piece(&p, two + used, len - used, &used, &out), SMTP_PARSE_DONE);
    ck_assert_uint_eq(used, len - first);
    expect_reply(&out, 550, "5.1.1", "no", 1, "second");

    /* one byte at a time: DONE exactly at each reply's last LF */
    smtp_parser_init(&p);
    for (size_t i = 0; i < len; i++) {
        enum smtp_parse r = feed_piece(&p, two + i, 1, &used, &out);
        ck_assert_uint_eq(used, 1);
        ck_assert_int_eq(r, i == first - 1 || i == len - 1 ? SMTP_PARSE_DONE : SMTP_PARSE_MORE);
        if (i == first - 1)
            expect_reply(&out, 250, "", "mx.example.com PIPELINING", 2, "first byte-wise");
    }
    expect_reply(&out, 550, "5.1.1", "no", 1, "second byte-wise");

    /* a reply, then garbage: the reply is good, the garbage BAD on its own */
    smtp_parser_init(&p);
    ck_assert_int_eq(feed_piece(&p, S("220 hi\r\nxyz"), &used, &out), SMTP_PARSE_DONE);
    ck_assert_uint_eq(used, 8);
    expect_reply(&out, 220, "", "hi", 1, "before garbage");
    ck_assert_int_eq(feed_piece(&p, S("xyz"), &used, &out), SMTP_PARSE_BAD);
    ck_assert_uint_eq(used, 1);
}
END_TEST

START_TEST(parser_state)
{
    struct smtp_parser p;
    struct smtp_reply out;
    size_t used;

    smtp_parser_init(&p);
    ck_assert_str_eq(smtp_parser_error(&p), "");
    /* nothing to read is no error; buf is not read at all */
    ck_assert_int_eq(smtp_parser_feed(&p, NULL, 0, &used, &out), SMTP_PARSE_MORE);
    ck_assert_uint_eq(used, 0);

    /* a partial line, then the state carries over between calls */
    ck_assert_int_eq(feed_piece(&p, S("25"), &used, &out), SMTP_PARSE_MORE);
    ck_assert_int_eq(feed_piece(&p, S("0-a\r"), &used, &out), SMTP_PARSE_MORE);
    ck_assert_int_eq(feed_piece(&p, S("\n250 b\r\n"), &used, &out), SMTP_PARSE_DONE);
    expect_reply(&out, 250, "", "a b", 2, "split");
    ck_assert_str_eq(smtp_parser_error(&p), "");

    /* used and out may be NULL */
    ck_assert_int_eq(smtp_parser_feed(&p, S("250 ok\r\n"), NULL, NULL), SMTP_PARSE_DONE);
    /* the next reply starts clean: nothing of the last one's status or text */
    ck_assert_int_eq(feed_piece(&p, S("250 x\r\n"), &used, &out), SMTP_PARSE_DONE);
    expect_reply(&out, 250, "", "x", 1, "after NULLs");

    /* BAD stays BAD and uses nothing more, with its reason, until smtp_parser_init */
    ck_assert_int_eq(feed_piece(&p, S("250-a\r\n251 b\r\n"), &used, &out), SMTP_PARSE_BAD);
    ck_assert_str_eq(smtp_parser_error(&p), "line 2: reply code 251 after 250");
    ck_assert_int_eq(feed_piece(&p, S("250 ok\r\n"), &used, &out), SMTP_PARSE_BAD);
    ck_assert_uint_eq(used, 0);
    ck_assert_int_eq(smtp_parser_feed(&p, S("250 ok\r\n"), NULL, NULL), SMTP_PARSE_BAD);
    ck_assert_str_eq(smtp_parser_error(&p), "line 2: reply code 251 after 250");
    smtp_parser_init(&p);
    ck_assert_str_eq(smtp_parser_error(&p), "");
    ck_assert_int_eq(feed_piece(&p, S("250 ok\r\n"), &used, &out), SMTP_PARSE_DONE);
    expect_reply(&out, 250, "", "ok", 1, "after init");

    /* init also drops a reply half read (a new connection) */
    ck_assert_int_eq(feed_piece(&p, S("550-5.1.1 gone\r\n550"), &used, &out), SMTP_PARSE_MORE);
    smtp_parser_init(&p);
    ck_assert_int_eq(feed_piece(&p, S("220 hi\r\n"), &used, &out), SMTP_PARSE_DONE);
    expect_reply(&out, 220, "", "hi", 1, "after init mid-reply");
    ck_assert_uint_eq(smtp_reply_class(&out), 2);
}
END_TEST

/* ---- random hostile input ---- */

/* attack_string - random bytes shaped like replies often enough to reach DONE as well as every
 * refusal: lines mostly start with a code, bodies mix tokens and random bytes, ends vary, and
 * now and then a line is very long or a reply has very many lines. Returns the length. */
static size_t attack_string(char *buf, size_t size)
{
    static const char *const codes[] = {"250-", "250 ", "250", "550-", "550 ", "251 ", "354 ",
                                        "650 ", "25",   "",     "2500", "1",    "599-"};
    static const char *const tokens[] = {"ok",  " ",    "\t",     "5.1.1 ", "2.0.0", "5.1",
                                         "x",   "-",    "\r",     "\xff",   "\x7f",  "5.1.10 ",
                                         "250", "\r\n", "\n250-", "6.1.1",  "<a@b>", "\xc3\xa9"};
    static const char *const eols[] = {"\r\n", "\r\n", "\r\n", "\n", "\n", "\r", ""};
    size_t n = 0;
    unsigned nlines = rng() % 16 == 0 ? SMTP_REPLY_LINES_MAX + rng() % 3 - 1
                                      : 1 + rng() % ATTACK_LINES_MAX;

/* s is evaluated once: it is a random pick. */
#define PUT(s)                                                                                     \
    do {                                                                                           \
        const char *s_ = (s);                                                                      \
        size_t l_ = strlen(s_);                                                                    \
        if (n + l_ > size)                                                                         \
            return n;                                                                              \
        memcpy(buf + n, s_, l_);                                                                   \
        n += l_;                                                                                   \
    } while (0)

    for (unsigned line = 0; line < nlines; line++) {
        PUT(codes[rng() % (sizeof codes / sizeof codes[0])]);
        if (rng() % 32 == 0) {
            size_t run = SMTP_REPLY_LINE_MAX - 8 + rng() % 16;
            if (n + run > size)
                return n;
            memset(buf + n, 'y', run);
            n += run;
        }
        for (unsigned b = rng() % ATTACK_BODY_MAX; b > 0; b--) {
            if (rng() % 16 == 0) {
                if (n + 1 > size)
                    return n;
                buf[n++] = (char)(rng() & 0xff);
            } else {
                PUT(tokens[rng() % (sizeof tokens / sizeof tokens[0])]);
            }
        }
        PUT(eols[rng() % (sizeof eols / sizeof eols[0])]);
    }
#undef PUT
    return n;
}

/* hash_mix - FNV-1a over bytes, to compare what two feedings gave without keeping it all. */
static uint64_t hash_mix(uint64_t h, const void *data, size_t n)
{
    const unsigned char *b = data;

    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ull;
    }
    return h;
}

struct attack_tally {
    unsigned done, bad;
};

/* attack_feed - feeds all of buf (a heap block of exactly len bytes) as split says, starting over
 * after each BAD, and checks every promise on the way. Returns a hash of the replies and refusals
 * with their offsets, which must not depend on the split. */
static uint64_t attack_feed(const char *buf, size_t len, enum split how, struct attack_tally *t)
{
    struct smtp_parser p;
    struct smtp_reply out;
    uint64_t h = 1469598103934665603ull;
    size_t off = 0, used;

    smtp_parser_init(&p);
    while (off < len) {
        enum smtp_parse r = feed_rest(&p, buf, len, off, how, &used, &out);
        off += used;
        if (r == SMTP_PARSE_DONE) {
            REQUIRE(used > 0, "DONE on no bytes");
            check_safe_reply(&out);
            REQUIRE(!*smtp_parser_error(&p), "an error after DONE");
            t->done++;
            h = hash_mix(h, "D", 1);
            h = hash_mix(h, &off, sizeof off);
            h = hash_mix(h, &out.code, sizeof out.code);
            h = hash_mix(h, &out.lines, sizeof out.lines);
            h = hash_mix(h, out.status, strlen(out.status) + 1);
            h = hash_mix(h, out.text, strlen(out.text) + 1);
        } else if (r == SMTP_PARSE_BAD) {
            const char *e = smtp_parser_error(&p);
            REQUIRE(used > 0, "BAD on no bytes");
            REQUIRE(*e && strnlen(e, sizeof p.error) < sizeof p.error, "no reason for BAD");
            REQUIRE(smtp_parser_feed(&p, buf, len, &used, &out) == SMTP_PARSE_BAD && used == 0,
                    "BAD did not stay BAD");
            t->bad++;
            h = hash_mix(h, "B", 1);
            h = hash_mix(h, &off, sizeof off);
            h = hash_mix(h, e, strlen(e) + 1);
            smtp_parser_init(&p);
        }
    }
    return h;
}

START_TEST(random_attack)
{
    const size_t size = (SMTP_REPLY_LINES_MAX + 2) * (SMTP_REPLY_LINE_MAX + 128);
    char *buf = malloc(size);
    struct attack_tally whole = {0, 0}, pieces = {0, 0}, bytes = {0, 0};

    ck_assert_ptr_nonnull(buf);
    for (int round = 0; round < ATTACK_ROUNDS; round++) {
        size_t len = attack_string(buf, rng() % 4 == 0 ? size : 2 * SMTP_REPLY_LINE_MAX);
        char *exact = calloc(len ? len : 1, 1);
        REQUIRE(exact, "out of memory");
        if (len)
            memcpy(exact, buf, len);
        uint64_t h = attack_feed(exact, len, SPLIT_WHOLE, &whole);
        REQUIRE(attack_feed(exact, len, SPLIT_RANDOM, &pieces) == h,
                "round %d: random pieces parse differently", round);
        if (round % 16 == 0)
            REQUIRE(attack_feed(exact, len, SPLIT_BYTES, &bytes) == h,
                    "round %d: single bytes parse differently", round);
        free(exact);
    }
    free(buf);
    /* The strings do reach both ends, or the test would prove little. */
    ck_assert_uint_gt(whole.done, ATTACK_ROUNDS / 10);
    ck_assert_uint_gt(whole.bad, ATTACK_ROUNDS / 10);
    ck_assert_uint_eq(whole.done, pieces.done);
    ck_assert_uint_eq(whole.bad, pieces.bad);
}
END_TEST

static Suite *smtp_reply_suite(void)
{
    Suite *s = suite_create("smtp_reply");
    TCase *tc = tcase_create("valid");
    tcase_add_loop_test(tc, good_table, 0, NGOOD);
    tcase_add_loop_test(tc, good_table_twice, 0, NGOOD);
    suite_add_tcase(s, tc);

    tc = tcase_create("malformed");
    tcase_add_loop_test(tc, bad_table, 0, NBAD);
    suite_add_tcase(s, tc);

    tc = tcase_create("limits");
    tcase_add_test(tc, line_length);
    tcase_add_test(tc, line_count);
    tcase_add_test(tc, text_limit);
    suite_add_tcase(s, tc);

    tc = tcase_create("state");
    tcase_add_test(tc, two_replies);
    tcase_add_test(tc, parser_state);
    suite_add_tcase(s, tc);

    tc = tcase_create("hostile");
    tcase_add_test(tc, random_attack);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(smtp_reply_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
