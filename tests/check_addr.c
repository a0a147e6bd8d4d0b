/* Check suite for proto/addr.c: RFC 5321 mailbox and domain validation and canonical forms.
 *
 * Table-driven: valid mailboxes and domains with their canonical forms (exactly at every length
 * limit), invalid ones (one past every limit, every kind of control byte, 8-bit bytes, embedded
 * NUL, broken quoting, bad address literals, brackets), output buffers that are too small, and a
 * seeded random attack that checks every accepted value is safe to put into an SMTP command and
 * that canonicalization is idempotent. Lengths are always passed explicitly so that embedded NUL
 * bytes reach the parser. */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "mxc_err.h"

#define S(lit) lit, sizeof(lit) - 1 /* a literal with its length, embedded NULs included */

/* ---- long strings built at run time (exactly at and one past the limits) ---- */

static char local64[ADDR_MAX_LOCAL + 1], local65[ADDR_MAX_LOCAL + 2];
static char label63[ADDR_MAX_LABEL + 1], label64[ADDR_MAX_LABEL + 2];
static char dom255[ADDR_MAX_DOMAIN + 1], dom255dot[ADDR_MAX_DOMAIN + 2], dom256[ADDR_MAX_DOMAIN + 2];
static char path254[ADDR_MAX_PATH], path255[ADDR_MAX_PATH + 1], path254_canon[ADDR_MAX_PATH];

static void fill(char *dst, char c, size_t n)
{
    memset(dst, c, n);
    dst[n] = '\0';
}

static void build_long(void)
{
    char l61[62];

    fill(local64, 'l', 64);
    fill(local65, 'l', 65);
    fill(label63, 'a', 63);
    fill(label64, 'a', 64);
    /* 4 labels of 63 = 252 + 3 dots = 255 */
    snprintf(dom255, sizeof dom255, "%s.%s.%s.%s", label63, label63, label63, label63);
    ck_assert_uint_eq(strlen(dom255), 255);
    snprintf(dom255dot, sizeof dom255dot, "%s.", dom255);
    snprintf(dom256, sizeof dom256, "b%s", dom255);
    ck_assert_uint_eq(strlen(dom256), 256);
    /* 64 + '@' + 63.63.61 (189) = 254 */
    fill(l61, 'c', 61);
    snprintf(path254, sizeof path254, "%s@%s.%s.%s", local64, label63, label63, l61);
    ck_assert_uint_eq(strlen(path254), 254);
    snprintf(path254_canon, sizeof path254_canon, "%s", path254);
    snprintf(path255, sizeof path255, "%s@%s.%s.c%s", local64, label63, label63, l61);
    ck_assert_uint_eq(strlen(path255), 255);
}

/* ---- addr_domain_canon ---- */

struct dom_case {
    const char *in;
    size_t len;
    const char *out; /* NULL: must be rejected */
};

static const struct dom_case dom_cases[] = {
    {S("example.com"), "example.com"},
    {S("EXAMPLE.Com"), "example.com"},
    {S("Mail.Example.COM."), "mail.example.com"},
    {S("a"), "a"},
    {S("a."), "a"},
    {S("a-b.c--d.e"), "a-b.c--d.e"},
    {S("0.1.2.example"), "0.1.2.example"},
    {S("xn--bcher-kva.example"), "xn--bcher-kva.example"},
    /* invalid */
    {S(""), NULL},
    {S("."), NULL},
    {S(".."), NULL},
    {S(".example.com"), NULL},
    {S("example..com"), NULL},
    {S("example.com.."), NULL},
    {S("-example.com"), NULL},
    {S("example-.com"), NULL},
    {S("example.-com"), NULL},
    {S("example.com-"), NULL},
    {S("example.com-."), NULL},
    {S("-"), NULL},
    {S("ex_ample.com"), NULL},
    {S("exa mple.com"), NULL},
    {S(" example.com"), NULL},
    {S("example.com "), NULL},
    {S("exa\tmple.com"), NULL},
    {S("example.com\r\n"), NULL},
    {S("exa\rmple.com"), NULL},
    {S("exa\nmple.com"), NULL},
    {S("exa\0mple.com"), NULL},
    {S("example.com\0"), NULL},
    {S("exa\x01mple.com"), NULL},
    {S("exa\x7fmple.com"), NULL},
    {S("ex\xc3\xa4mple.com"), NULL},
    {S("exa\xffmple.com"), NULL},
    {S("[192.0.2.1]"), NULL},
    {S("user@example.com"), NULL},
    {S("example.com/"), NULL},
    {S("example.com:25"), NULL},
};

START_TEST(domain_table)
{
    const struct dom_case *c = &dom_cases[_i];
    char out[ADDR_MAX_DOMAIN + 1];

    memset(out, 'X', sizeof out);
    int rc = addr_domain_canon(c->in, c->len, out, sizeof out);
    if (c->out) {
        ck_assert_msg(rc == MXC_OK, "case %d: rejected", _i);
        ck_assert_str_eq(out, c->out);
    } else {
        ck_assert_msg(rc == MXC_EINVAL, "case %d: accepted as \"%s\"", _i, out);
        ck_assert_str_eq(out, "");
    }
}
END_TEST

START_TEST(domain_lengths)
{
    char out[ADDR_MAX_DOMAIN + 2];
    char name[300];

    build_long();
    ck_assert_int_eq(addr_domain_canon(label63, strlen(label63), out, sizeof out), MXC_OK);
    ck_assert_str_eq(out, label63);
    ck_assert_int_eq(addr_domain_canon(label64, strlen(label64), out, sizeof out), MXC_EINVAL);
    ck_assert_str_eq(out, "");
    snprintf(name, sizeof name, "x.%s.y", label63);
    ck_assert_int_eq(addr_domain_canon(name, strlen(name), out, sizeof out), MXC_OK);
    snprintf(name, sizeof name, "x.%s.y", label64);
    ck_assert_int_eq(addr_domain_canon(name, strlen(name), out, sizeof out), MXC_EINVAL);
    snprintf(name, sizeof name, "x.%s", label64);
    ck_assert_int_eq(addr_domain_canon(name, strlen(name), out, sizeof out), MXC_EINVAL);

    ck_assert_int_eq(addr_domain_canon(dom255, 255, out, sizeof out), MXC_OK);
    ck_assert_str_eq(out, dom255);
    /* The trailing dot does not count and is removed. */
    ck_assert_int_eq(addr_domain_canon(dom255dot, 256, out, sizeof out), MXC_OK);
    ck_assert_str_eq(out, dom255);
    ck_assert_int_eq(addr_domain_canon(dom256, 256, out, sizeof out), MXC_EINVAL);
    ck_assert_str_eq(out, "");
    /* A very long hostile value. */
    char *big = malloc(100000);
    ck_assert_ptr_nonnull(big);
    memset(big, 'a', 100000);
    ck_assert_int_eq(addr_domain_canon(big, 100000, out, sizeof out), MXC_EINVAL);
    free(big);
}
END_TEST

START_TEST(domain_outbuf)
{
    char out[32];

    /* Exactly enough: strlen + 1 (the trailing dot needs no room). */
    ck_assert_int_eq(addr_domain_canon(S("example.com"), out, 12), MXC_OK);
    ck_assert_str_eq(out, "example.com");
    ck_assert_int_eq(addr_domain_canon(S("example.com."), out, 12), MXC_OK);
    ck_assert_str_eq(out, "example.com");
    memset(out, 'X', sizeof out);
    ck_assert_int_eq(addr_domain_canon(S("example.com"), out, 11), MXC_EINVAL);
    ck_assert_str_eq(out, "");
    memset(out, 'X', sizeof out);
    ck_assert_int_eq(addr_domain_canon(S("example.com"), out, 1), MXC_EINVAL);
    ck_assert_str_eq(out, "");
    /* outlen 0: nothing may be written at all. */
    memset(out, 'X', sizeof out);
    ck_assert_int_eq(addr_domain_canon(S("example.com"), out, 0), MXC_EINVAL);
    ck_assert_int_eq(out[0], 'X');
}
END_TEST

/* ---- addr_mailbox_canon ---- */

struct mbox_case {
    const char *in;
    size_t len;
    const char *out;       /* canonical form with the local part kept; NULL: rejected */
    const char *out_lower; /* with lower_local; NULL: same as out */
};

static const struct mbox_case mbox_cases[] = {
    {S("user@example.com"), "user@example.com", NULL},
    {S("User@Example.COM"), "User@example.com", "user@example.com"},
    {S("First.Last@EXAMPLE.com."), "First.Last@example.com", "first.last@example.com"},
    {S("a.b.c.d@x.example"), "a.b.c.d@x.example", NULL},
    {S("a@b"), "a@b", NULL},
    /* every atext special */
    {S("!#$%&'*+-/=?^_`{|}~@example.com"), "!#$%&'*+-/=?^_`{|}~@example.com", NULL},
    {S("a!b#c$d%e&f'g*h+i-j/k=l?m^n_o`p{q|r}s~t@example.com"),
     "a!b#c$d%e&f'g*h+i-j/k=l?m^n_o`p{q|r}s~t@example.com", NULL},
    {S("user+tag@example.com"), "user+tag@example.com", NULL},
    /* quoted local parts */
    {S("\"a@b\"@Example.com"), "\"a@b\"@example.com", NULL},
    {S("\"@\"@example.com"), "\"@\"@example.com", NULL},
    {S("\"John Doe\"@Example.com"), "\"John Doe\"@example.com", "\"john doe\"@example.com"},
    {S("\"a\\\"b\"@example.com"), "\"a\\\"b\"@example.com", NULL},
    {S("\"a\\\\b\"@example.com"), "\"a\\\\b\"@example.com", NULL},
    {S("\"\\\\\"@example.com"), "\"\\\\\"@example.com", NULL},
    {S("\"a..b\"@example.com"), "\"a..b\"@example.com", NULL},
    {S("\".a.\"@example.com"), "\".a.\"@example.com", NULL},
    {S("\"a<b>c(d)e,f;g:h[i]j\"@example.com"), "\"a<b>c(d)e,f;g:h[i]j\"@example.com", NULL},
    {S("\"\\A\"@example.com"), "\"\\A\"@example.com", "\"\\a\"@example.com"},
    /* address literals */
    {S("user@[192.0.2.1]"), "user@[192.0.2.1]", NULL},
    {S("user@[IPv6:2001:db8::1]"), "user@[ipv6:2001:db8::1]", NULL},
    {S("user@[ipv6:2001:DB8::1]"), "user@[ipv6:2001:db8::1]", NULL},
    {S("user@[IPv6:::ffff:192.0.2.1]"), "user@[ipv6:::ffff:192.0.2.1]", NULL},
    {S("\"x@[1.2.3.4]\"@[192.0.2.1]"), "\"x@[1.2.3.4]\"@[192.0.2.1]", NULL},

    /* invalid: structure */
    {S(""), NULL, NULL},
    {S("user"), NULL, NULL},
    {S("@"), NULL, NULL},
    {S("@example.com"), NULL, NULL},
    {S("user@"), NULL, NULL},
    {S("user@."), NULL, NULL},
    {S("user@@example.com"), NULL, NULL},
    {S("a@b@example.com"), NULL, NULL},
    {S("<user@example.com>"), NULL, NULL},
    {S("<user@example.com"), NULL, NULL},
    {S("user@example.com>"), NULL, NULL},
    {S("<>"), NULL, NULL},
    /* invalid: dots */
    {S(".user@example.com"), NULL, NULL},
    {S("user.@example.com"), NULL, NULL},
    {S("us..er@example.com"), NULL, NULL},
    {S(".@example.com"), NULL, NULL},
    {S("user@.example.com"), NULL, NULL},
    {S("user@example..com"), NULL, NULL},
    {S("user@example.com.."), NULL, NULL},
    /* invalid: hyphens and other domain characters */
    {S("user@-example.com"), NULL, NULL},
    {S("user@example-.com"), NULL, NULL},
    {S("user@example.com-"), NULL, NULL},
    {S("user@ex_ample.com"), NULL, NULL},
    {S("user@exa mple.com"), NULL, NULL},
    {S("user@example.com:25"), NULL, NULL},
    /* invalid: controls, space, DEL, 8-bit, NUL */
    {S("us\rer@example.com"), NULL, NULL},
    {S("us\ner@example.com"), NULL, NULL},
    {S("user@example.com\r\n"), NULL, NULL},
    {S("user@example.com\r\nRCPT TO:<victim@example.org>"), NULL, NULL},
    {S("user\r\n@example.com"), NULL, NULL},
    {S("us\0er@example.com"), NULL, NULL},
    {S("user@exa\0mple.com"), NULL, NULL},
    {S("user@example.com\0"), NULL, NULL},
    {S("\0user@example.com"), NULL, NULL},
    {S("us er@example.com"), NULL, NULL},
    {S(" user@example.com"), NULL, NULL},
    {S("user@example.com "), NULL, NULL},
    {S("user @example.com"), NULL, NULL},
    {S("us\ter@example.com"), NULL, NULL},
    {S("us\x01er@example.com"), NULL, NULL},
    {S("us\x1b[31mer@example.com"), NULL, NULL},
    {S("us\x7f" "er@example.com"), NULL, NULL},
    {S("us\x80" "er@example.com"), NULL, NULL},
    {S("\xc3\xbcser@example.com"), NULL, NULL},
    {S("user@\xc3\xa9xample.com"), NULL, NULL},
    {S("user@example.com\xff"), NULL, NULL},
    /* invalid: characters that are not atext outside quotes */
    {S("a\\b@example.com"), NULL, NULL},
    {S("a\"b@example.com"), NULL, NULL},
    {S("a(b)@example.com"), NULL, NULL},
    {S("a,b@example.com"), NULL, NULL},
    {S("a:b@example.com"), NULL, NULL},
    {S("a;b@example.com"), NULL, NULL},
    {S("a[b]@example.com"), NULL, NULL},
    {S("a<b@example.com"), NULL, NULL},
    /* invalid: quoting */
    {S("\"@example.com"), NULL, NULL},
    {S("\"user@example.com"), NULL, NULL},
    {S("user\"@example.com"), NULL, NULL},
    {S("\"a\"b\"@example.com"), NULL, NULL},
    {S("\"a\"\"b\"@example.com"), NULL, NULL},
    {S("\"a\".b@example.com"), NULL, NULL},
    {S("b.\"a\"@example.com"), NULL, NULL},
    {S("\"abc\\\"@example.com"), NULL, NULL},
    {S("\"\\\"@example.com"), NULL, NULL},
    {S("\"a\rb\"@example.com"), NULL, NULL},
    {S("\"a\nb\"@example.com"), NULL, NULL},
    {S("\"a\tb\"@example.com"), NULL, NULL},
    {S("\"a\0b\"@example.com"), NULL, NULL},
    {S("\"a\x7f" "b\"@example.com"), NULL, NULL},
    {S("\"a\x80" "b\"@example.com"), NULL, NULL},
    {S("\"a\\\rb\"@example.com"), NULL, NULL},
    {S("\"a\\\nb\"@example.com"), NULL, NULL},
    {S("\"a\\\x01" "b\"@example.com"), NULL, NULL},
    {S("\"a\\\x80" "b\"@example.com"), NULL, NULL},
    /* invalid: address literals */
    {S("user@[]"), NULL, NULL},
    {S("user@["), NULL, NULL},
    {S("user@[192.0.2.1"), NULL, NULL},
    {S("user@192.0.2.1]"), NULL, NULL},
    {S("user@[192.0.2.1]x"), NULL, NULL},
    {S("user@[192.0.2.1]."), NULL, NULL},
    {S("user@[192.0.2]"), NULL, NULL},
    {S("user@[192.0.2.256]"), NULL, NULL},
    {S("user@[192.0.2.1.5]"), NULL, NULL},
    {S("user@[ 192.0.2.1]"), NULL, NULL},
    {S("user@[192.0.2.1 ]"), NULL, NULL},
    {S("user@[IPv4:192.0.2.1]"), NULL, NULL},
    {S("user@[IPv6:192.0.2.1]"), NULL, NULL},
    {S("user@[IPv6:]"), NULL, NULL},
    {S("user@[IPv6:zz::1]"), NULL, NULL},
    {S("user@[IPv6:2001:db8::1::2]"), NULL, NULL},
    {S("user@[IPv6:2001:db8::1%eth0]"), NULL, NULL},
    {S("user@[2001:db8::1]"), NULL, NULL},
    {S("user@[example.com]"), NULL, NULL},
    {S("user@[192.0.2.1\0]"), NULL, NULL},
    {S("user@[192.0.2.1\r\n]"), NULL, NULL},
    {S("user@[IPv6:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0001]"), NULL, NULL},
};

START_TEST(mailbox_table)
{
    const struct mbox_case *c = &mbox_cases[_i];
    char out[ADDR_MAX_PATH + 8];

    for (int lower = 0; lower <= 1; lower++) {
        memset(out, 'X', sizeof out);
        int rc = addr_mailbox_canon(c->in, c->len, lower, out, sizeof out);
        if (c->out) {
            const char *want = lower && c->out_lower ? c->out_lower : c->out;
            ck_assert_msg(rc == MXC_OK, "case %d lower=%d: rejected", _i, lower);
            ck_assert_str_eq(out, want);
        } else {
            ck_assert_msg(rc == MXC_EINVAL, "case %d lower=%d: accepted as \"%s\"", _i, lower, out);
            ck_assert_str_eq(out, "");
        }
    }
}
END_TEST

START_TEST(mailbox_lengths)
{
    char in[ADDR_MAX_PATH * 2], out[ADDR_MAX_PATH * 2];

    build_long();
    /* local part exactly 64, then 65 */
    snprintf(in, sizeof in, "%s@example.com", local64);
    ck_assert_int_eq(addr_mailbox_canon(in, strlen(in), false, out, sizeof out), MXC_OK);
    ck_assert_str_eq(out, in);
    snprintf(in, sizeof in, "%s@example.com", local65);
    ck_assert_int_eq(addr_mailbox_canon(in, strlen(in), false, out, sizeof out), MXC_EINVAL);
    ck_assert_str_eq(out, "");
    /* a quoted local part counts its quotes: 62 + 2 = 64, then 63 + 2 = 65 */
    snprintf(in, sizeof in, "\"%.62s\"@example.com", local64);
    ck_assert_int_eq(addr_mailbox_canon(in, strlen(in), false, out, sizeof out), MXC_OK);
    snprintf(in, sizeof in, "\"%.63s\"@example.com", local64);
    ck_assert_int_eq(addr_mailbox_canon(in, strlen(in), false, out, sizeof out), MXC_EINVAL);
    /* domain label exactly 63, then 64 */
    snprintf(in, sizeof in, "u@%s.example", label63);
    ck_assert_int_eq(addr_mailbox_canon(in, strlen(in), false, out, sizeof out), MXC_OK);
    snprintf(in, sizeof in, "u@%s.example", label64);
    ck_assert_int_eq(addr_mailbox_canon(in, strlen(in), false, out, sizeof out), MXC_EINVAL);
    snprintf(in, sizeof in, "u@example.%s", label64);
    ck_assert_int_eq(addr_mailbox_canon(in, strlen(in), false, out, sizeof out), MXC_EINVAL);
    /* path exactly 254 (256 with the angle brackets), then 255 */
    ck_assert_int_eq(addr_mailbox_canon(path254, 254, false, out, sizeof out), MXC_OK);
    ck_assert_str_eq(out, path254_canon);
    ck_assert_int_eq(addr_mailbox_canon(path255, 255, false, out, sizeof out), MXC_EINVAL);
    ck_assert_str_eq(out, "");
    /* a domain of 255 is fine alone but never fits in a path */
    snprintf(in, sizeof in, "u@%s", dom255);
    ck_assert_int_eq(addr_mailbox_canon(in, strlen(in), false, out, sizeof out), MXC_EINVAL);
    /* huge hostile input */
    char *big = malloc(1 << 20);
    ck_assert_ptr_nonnull(big);
    memset(big, 'a', 1 << 20);
    big[500] = '@';
    ck_assert_int_eq(addr_mailbox_canon(big, 1 << 20, false, out, sizeof out), MXC_EINVAL);
    ck_assert_str_eq(out, "");
    free(big);
}
END_TEST

START_TEST(mailbox_outbuf)
{
    char out[64];
    static const char in[] = "User@Example.com"; /* 16 bytes */

    ck_assert_int_eq(addr_mailbox_canon(in, 16, false, out, 17), MXC_OK);
    ck_assert_str_eq(out, "User@example.com");
    for (size_t n = 1; n <= 16; n++) {
        memset(out, 'X', sizeof out);
        ck_assert_int_eq(addr_mailbox_canon(in, 16, true, out, n), MXC_EINVAL);
        ck_assert_str_eq(out, "");
        ck_assert_int_eq(out[n], 'X'); /* nothing written past outlen */
    }
    memset(out, 'X', sizeof out);
    ck_assert_int_eq(addr_mailbox_canon(in, 16, false, out, 0), MXC_EINVAL);
    ck_assert_int_eq(out[0], 'X');
    /* an address literal needs the same room */
    ck_assert_int_eq(addr_mailbox_canon(S("u@[192.0.2.1]"), false, out, 14), MXC_OK);
    ck_assert_str_eq(out, "u@[192.0.2.1]");
    ck_assert_int_eq(addr_mailbox_canon(S("u@[192.0.2.1]"), false, out, 13), MXC_EINVAL);
    ck_assert_str_eq(out, "");
    /* invalid input with a large buffer also leaves out empty */
    memset(out, 'X', sizeof out);
    ck_assert_int_eq(addr_mailbox_canon(S("Goodlocal@bad..domain"), false, out, sizeof out),
                     MXC_EINVAL);
    ck_assert_str_eq(out, "");
}
END_TEST

/* ---- addr_domain_of ---- */

START_TEST(domain_of)
{
    ck_assert_str_eq(addr_domain_of("user@example.com"), "example.com");
    ck_assert_str_eq(addr_domain_of("\"a@b\"@example.com"), "example.com");
    ck_assert_str_eq(addr_domain_of("u@[192.0.2.1]"), "[192.0.2.1]");
    ck_assert_str_eq(addr_domain_of("user@"), "");
    ck_assert_ptr_null(addr_domain_of("example.com"));
    ck_assert_ptr_null(addr_domain_of(""));
    /* on the output of addr_mailbox_canon */
    char out[ADDR_MAX_PATH + 1];
    ck_assert_int_eq(addr_mailbox_canon(S("\"x@Y\"@Sub.Example.COM."), true, out, sizeof out),
                     MXC_OK);
    ck_assert_str_eq(addr_domain_of(out), "sub.example.com");
}
END_TEST

/* ---- random hostile input ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* safe_output - what every accepted mailbox must satisfy: length within the path limit, printable
 * ASCII only (space only inside a quoted local part), exactly one unquoted '@'. */
static void check_safe(const char *out)
{
    size_t n = strlen(out);
    ck_assert_uint_le(n, ADDR_MAX_PATH - 2);
    const char *at = strrchr(out, '@');
    ck_assert_ptr_nonnull(at);
    ck_assert_uint_le((size_t)(at - out), ADDR_MAX_LOCAL);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out[i];
        ck_assert_msg(c >= 0x20 && c < 0x7f, "byte 0x%02x in accepted \"%s\"", c, out);
        if (c == ' ')
            ck_assert_msg(out[0] == '"' && out + i < at, "space outside quotes: \"%s\"", out);
    }
}

START_TEST(random_attack)
{
    static const char alphabet[] = "aZ09.-_@@@\"\"\\[]:. \t\r\n\x01\x7f\x80\xff<>IPv6fF";
    char in[300], out[ADDR_MAX_PATH + 1], again[ADDR_MAX_PATH + 1];
    unsigned accepted = 0;

    for (int round = 0; round < 200000; round++) {
        size_t n = rng() % 40;
        for (size_t i = 0; i < n; i++)
            in[i] = (rng() % 8 == 0) ? (char)(rng() & 0xff)
                                     : alphabet[rng() % (sizeof alphabet - 1)];
        bool lower = rng() & 1;
        memset(out, 'X', sizeof out);
        int rc = addr_mailbox_canon(in, n, lower, out, sizeof out);
        if (rc != MXC_OK) {
            ck_assert_int_eq(rc, MXC_EINVAL);
            ck_assert_str_eq(out, "");
        } else {
            accepted++;
            check_safe(out);
            ck_assert_int_eq(addr_mailbox_canon(out, strlen(out), lower, again, sizeof again),
                             MXC_OK);
            ck_assert_str_eq(again, out);
        }
        memset(out, 'X', sizeof out);
        rc = addr_domain_canon(in, n, out, sizeof out);
        if (rc != MXC_OK) {
            ck_assert_str_eq(out, "");
        } else {
            for (const char *p = out; *p; p++)
                ck_assert(((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
                           *p == '.'));
            ck_assert(out[0] != '.' && out[0] != '-' && out[strlen(out) - 1] != '.');
            ck_assert_ptr_null(strstr(out, ".."));
            ck_assert_int_eq(addr_domain_canon(out, strlen(out), again, sizeof again), MXC_OK);
            ck_assert_str_eq(again, out);
        }
    }
    ck_assert_uint_gt(accepted, 0); /* the alphabet does reach the accepting paths */
}
END_TEST

static Suite *addr_suite(void)
{
    Suite *s = suite_create("addr");
    TCase *tc = tcase_create("domain");
    tcase_add_loop_test(tc, domain_table, 0, (int)(sizeof dom_cases / sizeof dom_cases[0]));
    tcase_add_test(tc, domain_lengths);
    tcase_add_test(tc, domain_outbuf);
    suite_add_tcase(s, tc);

    tc = tcase_create("mailbox");
    tcase_add_loop_test(tc, mailbox_table, 0, (int)(sizeof mbox_cases / sizeof mbox_cases[0]));
    tcase_add_test(tc, mailbox_lengths);
    tcase_add_test(tc, mailbox_outbuf);
    tcase_add_test(tc, domain_of);
    suite_add_tcase(s, tc);

    tc = tcase_create("hostile");
    tcase_add_test(tc, random_attack);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(addr_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
