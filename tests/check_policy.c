/* check_policy - unit tests of mxcache-policy's pure modules, without sockets: the policy
 * protocol parser and answer renderer (client/policy_proto.c), and the settings loader and listen
 * address parser (client/policy_conf.c), and the rendering of the monitoring figures and the
 * readiness verdict (client/policy_metrics.c).
 *
 * The parser table is run three ways for every row: the whole input in one feed, split in two at
 * every byte boundary, and one byte per feed; each way must give exactly the expected summary
 * (the requests with their known attributes, then END or the error with its line). Hostile rows:
 * over-long lines and requests, too many attributes, lines without '=', NUL and other binary
 * bytes, a CR inside a line, a request cut off by EOF. */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mxc_err.h"
#include "policy_conf.h"
#include "policy_metrics.h"
#include "policy_proto.h"
#include "prom.h"

#define DEF_LINE 2048
#define DEF_REQUEST 16384
#define DEF_ATTRS 100

/* ---- parser ---- */

struct prow {
    const char *name;
    const char *in;
    size_t len;              /* 0: strlen(in) */
    size_t max_line, max_request;
    unsigned max_attrs;      /* 0: the defaults above */
    const char *want;        /* "{attr=value ... #nattrs};...;END" or ";ERR:reason:line" */
};

static const struct prow prows[] = {
    {"postfix request",
     "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
     "client_address=192.0.2.10\nclient_name=mail.example.org\nreverse_client_name=mail.example.org\n"
     "helo_name=mail.example.org\nsender=alice@example.org\nrecipient=bob@example.net\n"
     "recipient_count=0\nqueue_id=\ninstance=123.456.7\nsize=0\netrn_domain=\nstress=\n"
     "sasl_method=\nsasl_username=\nsasl_sender=\nccert_subject=\nccert_issuer=\n"
     "ccert_fingerprint=\nencryption_protocol=TLSv1.3\nencryption_cipher=TLS_AES_256_GCM_SHA384\n"
     "encryption_keysize=256\n\n",
     0, 0, 0, 0,
     "{request=smtpd_access_policy protocol_state=RCPT protocol_name=ESMTP client_address=192.0.2.10 "
     "client_name=mail.example.org reverse_client_name=mail.example.org helo_name=mail.example.org "
     "sender=alice@example.org recipient=bob@example.net queue_id= instance=123.456.7 #24};END"},
    {"three requests in one buffer",
     "protocol_state=RCPT\nrecipient=a@x\n\nprotocol_state=DATA\n\nprotocol_state=RCPT\nrecipient=c@x\n\n",
     0, 0, 0, 0,
     "{protocol_state=RCPT recipient=a@x #2};{protocol_state=DATA #1};{protocol_state=RCPT recipient=c@x #2};END"},
    {"CRLF line ends", "protocol_state=RCPT\r\nsender=s@x\r\n\r\n", 0, 0, 0, 0,
     "{protocol_state=RCPT sender=s@x #2};END"},
    {"mixed CRLF and LF", "protocol_state=RCPT\r\nsender=s@x\n\r\nrecipient=r@x\n\n", 0, 0, 0, 0,
     "{protocol_state=RCPT sender=s@x #2};{recipient=r@x #1};END"},
    {"empty values", "sender=\nrecipient=\nclient_name=\n\n", 0, 0, 0, 0,
     "{client_name= sender= recipient= #3};END"},
    {"unknown attributes are ignored", "foo=bar\nx-y.z=1\nrecipient=r@x\nRECIPIENT=upper@x\n\n", 0, 0, 0, 0,
     "{recipient=r@x #4};END"},
    {"repeated attribute: the last wins", "sender=a@x\nsender=b@x\n\n", 0, 0, 0, 0,
     "{sender=b@x #2};END"},
    {"value with '='", "sender=prvs=1234=a@x\n\n", 0, 0, 0, 0, "{sender=prvs=1234=a@x #1};END"},
    {"TAB and UTF-8 are data", "helo_name=a\tb\nsender=j\xc3\xb6rg@x\n\n", 0, 0, 0, 0,
     "{helo_name=a\tb sender=j\xc3\xb6rg@x #2};END"},
    {"empty request", "\n", 0, 0, 0, 0, "{#0};END"},
    {"nothing at all", "", 0, 0, 0, 0, "END"},
    {"line of exactly max_line", "sender=0123456789abcdef0123456789abcdef0123456789abcdef012345678\n\n",
     0, 64, 0, 0, "{sender=0123456789abcdef0123456789abcdef0123456789abcdef012345678 #1};END"},
    {"line of max_line with CRLF",
     "sender=0123456789abcdef0123456789abcdef0123456789abcdef012345678\r\n\r\n", 0, 64, 0, 0,
     "{sender=0123456789abcdef0123456789abcdef0123456789abcdef012345678 #1};END"},
    {"line one longer than max_line",
     "sender=0123456789abcdef0123456789abcdef0123456789abcdef0123456789\n\n", 0, 64, 0, 0,
     "ERR:line_too_long:1"},
    {"endless line", "protocol_state=RCPT\nsender=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
     0, 64, 0, 0, "ERR:line_too_long:2"},
    {"line longer than max_line, CR at max_line+1",
     "sender=0123456789abcdef0123456789abcdef0123456789abcdef0123456789\r\n\n", 0, 64, 0, 0,
     "ERR:line_too_long:1"},
    {"exactly max_attributes", "a=1\nb=2\nc=3\n\n", 0, 0, 0, 3, "{#3};END"},
    {"too many attributes", "a=1\nb=2\nc=3\nd=4\n\n", 0, 0, 0, 3, "ERR:too_many_attributes:4"},
    {"too many attributes, second request", "a=1\n\na=1\nb=2\nc=3\nd=4\n\n", 0, 0, 0, 3,
     "{#1};ERR:too_many_attributes:4"},
    {"request of exactly max_request", "sender=0123456789\nrecipient=0123456789\n\n", 0, 0, 40, 0,
     "{sender=0123456789 recipient=0123456789 #2};END"},
    {"request over max_request", "sender=0123456789\nrecipient=0123456789x\n\n", 0, 0, 40, 0,
     "ERR:request_too_big:3"},
    {"missing '='", "protocol_state=RCPT\nthis is not an attribute\n\n", 0, 0, 0, 0,
     "ERR:no_equals_sign:2"},
    {"HTTP request", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0, 0, 0, 0, "ERR:no_equals_sign:1"},
    {"empty name", "=value\n\n", 0, 0, 0, 0, "ERR:empty_attribute_name:1"},
    {"NUL in a value", "sender=a\0b@x\n\n", 14, 0, 0, 0, "ERR:binary_data:1"},
    {"NUL at the start", "\0\n\n", 3, 0, 0, 0, "ERR:binary_data:1"},
    {"control byte", "protocol_state=RCPT\nsender=a\x01@x\n\n", 0, 0, 0, 0, "ERR:binary_data:2"},
    {"escape sequence", "sender=\x1b[31mred\n\n", 0, 0, 0, 0, "ERR:binary_data:1"},
    {"DEL", "sender=a\x7f\n\n", 0, 0, 0, 0, "ERR:binary_data:1"},
    {"CR inside a line", "sender=a\rrecipient=b\n\n", 0, 0, 0, 0, "ERR:binary_data:1"},
    {"binary garbage", "\xff\xfe\x00\x01\x02\x03", 6, 0, 0, 0, "ERR:binary_data:1"},
    {"good request, then garbage", "sender=a@x\n\nnonsense\n", 0, 0, 0, 0,
     "{sender=a@x #1};ERR:no_equals_sign:1"},
    {"EOF inside a request", "protocol_state=RCPT\nsender=a@x\n", 0, 0, 0, 0, "ERR:eof_in_request:3"},
    {"EOF inside a line", "protocol_state=RC", 0, 0, 0, 0, "ERR:eof_in_request:1"},
    {"EOF after a request and a partial one", "sender=a@x\n\nsender=b", 0, 0, 0, 0,
     "{sender=a@x #1};ERR:eof_in_request:1"},
};

/* summary - appends "{...}" for a request to out. */
static void add_request(const struct policy_request *r, char *out, size_t outlen)
{
    size_t o = strlen(out);
    o += (size_t)snprintf(out + o, outlen - o, "{");
    for (int a = 0; a < POLICY_ATTR_COUNT; a++)
        if (r->val[a])
            o += (size_t)snprintf(out + o, outlen - o, "%s=%s ", policy_attr_name((enum policy_attr)a),
                                  r->val[a]);
    snprintf(out + o, outlen - o, "#%u};", r->nattrs);
}

/* run - feeds in[0..len) in pieces that end at the cut offsets (sorted, ncut of them; the rest
 * goes last) and writes the summary into out. */
static void run(const struct prow *row, size_t len, const size_t *cuts, size_t ncut, char *out,
                size_t outlen)
{
    struct policy_limits lim = {row->max_line ? row->max_line : DEF_LINE,
                                row->max_request ? row->max_request : DEF_REQUEST,
                                row->max_attrs ? row->max_attrs : DEF_ATTRS};
    policy_parser *p = policy_parser_create(&lim);
    size_t start = 0;
    bool bad = false;

    ck_assert_ptr_nonnull(p);
    out[0] = '\0';
    for (size_t k = 0; k <= ncut && !bad; k++) {
        size_t end = k < ncut ? cuts[k] : len;
        size_t off = start;
        while (off < end) {
            size_t used = 99999;
            enum policy_status st = policy_parser_feed(p, row->in + off, end - off, &used);
            ck_assert_uint_le(used, end - off);
            off += used;
            if (st == POLICY_REQUEST) {
                ck_assert_ptr_nonnull(policy_parser_request(p));
                add_request(policy_parser_request(p), out, outlen);
                ck_assert(!policy_parser_pending(p));
                continue;
            }
            if (st == POLICY_BAD) {
                bad = true;
                break;
            }
            ck_assert_int_eq(st, POLICY_MORE);
            ck_assert_uint_eq(off, end); /* MORE takes everything */
        }
        start = end;
    }
    if (!bad && policy_parser_finish(p) == POLICY_BAD)
        bad = true;
    if (bad) {
        unsigned line;
        enum policy_error e = policy_parser_error(p, &line, NULL, NULL);
        size_t o = strlen(out);
        snprintf(out + o, outlen - o, "ERR:%s:%u", policy_error_name(e), line);
        /* A failed parser stays failed. */
        size_t used = 7;
        ck_assert_int_eq(policy_parser_feed(p, "a=b\n\n", 5, &used), POLICY_BAD);
        ck_assert_uint_eq(used, 0);
    } else {
        strncat(out, "END", outlen - strlen(out) - 1);
    }
    policy_parser_destroy(p);
}

START_TEST(test_parse_table)
{
    const struct prow *row = &prows[_i];
    size_t len = row->len ? row->len : strlen(row->in);
    char got[4096];
    size_t *cuts = calloc(len + 1, sizeof *cuts);

    ck_assert_ptr_nonnull(cuts);
    run(row, len, NULL, 0, got, sizeof got);
    ck_assert_msg(strcmp(got, row->want) == 0, "%s (one feed):\n got  %s\n want %s", row->name, got,
                  row->want);
    for (size_t i = 0; i <= len; i++) {
        cuts[0] = i;
        run(row, len, cuts, 1, got, sizeof got);
        ck_assert_msg(strcmp(got, row->want) == 0, "%s (split at %zu):\n got  %s\n want %s",
                      row->name, i, got, row->want);
    }
    for (size_t i = 0; i < len; i++)
        cuts[i] = i + 1;
    run(row, len, cuts, len, got, sizeof got);
    ck_assert_msg(strcmp(got, row->want) == 0, "%s (byte by byte):\n got  %s\n want %s", row->name,
                  got, row->want);
    free(cuts);
}
END_TEST

static policy_parser *parser(size_t line, size_t req, unsigned attrs)
{
    struct policy_limits lim = {line, req, attrs};
    policy_parser *p = policy_parser_create(&lim);
    ck_assert_ptr_nonnull(p);
    return p;
}

START_TEST(test_feed_stops_after_each_request)
{
    policy_parser *p = parser(DEF_LINE, DEF_REQUEST, DEF_ATTRS);
    const char *in = "sender=a\n\nsender=b\n\nsend";
    size_t used;

    ck_assert_int_eq(policy_parser_feed(p, in, strlen(in), &used), POLICY_REQUEST);
    ck_assert_uint_eq(used, 10);
    ck_assert_str_eq(policy_parser_request(p)->val[POLICY_ATTR_SENDER], "a");
    ck_assert_uint_eq(policy_parser_request(p)->bytes, 10);
    ck_assert_int_eq(policy_parser_feed(p, in + 10, strlen(in) - 10, &used), POLICY_REQUEST);
    ck_assert_uint_eq(used, 10);
    ck_assert_str_eq(policy_parser_request(p)->val[POLICY_ATTR_SENDER], "b");
    ck_assert_int_eq(policy_parser_feed(p, in + 20, 4, &used), POLICY_MORE);
    ck_assert_uint_eq(used, 4);
    ck_assert_ptr_null(policy_parser_request(p));
    ck_assert(policy_parser_pending(p));
    ck_assert_int_eq(policy_parser_feed(p, "er=c\n\n", 6, &used), POLICY_REQUEST);
    ck_assert_str_eq(policy_parser_request(p)->val[POLICY_ATTR_SENDER], "c");
    ck_assert_int_eq(policy_parser_finish(p), POLICY_MORE);
    policy_parser_destroy(p);
}
END_TEST

START_TEST(test_error_excerpt_and_reset)
{
    policy_parser *p = parser(64, DEF_REQUEST, DEF_ATTRS);
    const char *ex;
    size_t exlen, used;
    unsigned line;
    char big[300];

    ck_assert_int_eq(policy_parser_feed(p, "sender=a\nrcpt\0evil\n\n", 20, &used), POLICY_BAD);
    ck_assert_uint_eq(used, 13); /* up to the NUL, not past it */
    ck_assert_int_eq(policy_parser_error(p, &line, &ex, &exlen), POLICY_ERR_BINARY);
    ck_assert_uint_eq(line, 2);
    ck_assert_uint_eq(exlen, 5);
    ck_assert(memcmp(ex, "rcpt\0", 5) == 0);

    policy_parser_reset(p);
    ck_assert_int_eq(policy_parser_error(p, &line, &ex, &exlen), POLICY_ERR_NONE);
    ck_assert_int_eq(policy_parser_feed(p, "sender=ok\n\n", 11, &used), POLICY_REQUEST);
    ck_assert_str_eq(policy_parser_request(p)->val[POLICY_ATTR_SENDER], "ok");

    /* The excerpt of an over-long line is capped. */
    memset(big, 'A', sizeof big);
    ck_assert_int_eq(policy_parser_feed(p, big, sizeof big, &used), POLICY_BAD);
    ck_assert_int_eq(policy_parser_error(p, &line, &ex, &exlen), POLICY_ERR_LINE_TOO_LONG);
    ck_assert_uint_eq(exlen, POLICY_EXCERPT_MAX);
    ck_assert_uint_le(used, 66);
    policy_parser_destroy(p);

    struct policy_limits zero = {0, 1, 1};
    ck_assert_ptr_null(policy_parser_create(&zero));
    ck_assert_ptr_null(policy_parser_create(NULL));
    policy_parser_destroy(NULL);
}
END_TEST

START_TEST(test_request_to_check_and_states)
{
    policy_parser *p = parser(DEF_LINE, DEF_REQUEST, DEF_ATTRS);
    const char *in = "protocol_state=RCPT\nclient_address=192.0.2.1\nsender=\nrecipient=r@x\nqueue_id=ABC\n\n";
    const char *states[] = {"RCPT", "DATA"};
    Mxcache__CheckRequest q = MXCACHE__CHECK_REQUEST__INIT;
    size_t used;

    ck_assert_int_eq(policy_parser_feed(p, in, strlen(in), &used), POLICY_REQUEST);
    policy_request_to_check(policy_parser_request(p), "mx01.example", &q);
    ck_assert_str_eq(q.client_address, "192.0.2.1");
    ck_assert_str_eq(q.client_name, "");
    ck_assert_str_eq(q.helo_name, "");
    ck_assert_str_eq(q.sender, "");
    ck_assert_str_eq(q.recipient, "r@x");
    ck_assert_str_eq(q.protocol_state, "RCPT");
    ck_assert_str_eq(q.queue_id, "ABC");
    ck_assert_str_eq(q.mx_name, "mx01.example");
    ck_assert(!q.explain);

    ck_assert(policy_state_in("RCPT", states, 2));
    ck_assert(policy_state_in("rcpt", states, 2));
    ck_assert(policy_state_in("DATA", states, 2));
    ck_assert(!policy_state_in("MAIL", states, 2));
    ck_assert(!policy_state_in("", states, 2));
    ck_assert(!policy_state_in(NULL, states, 2));
    ck_assert(!policy_state_in("RCPT", states, 0));
    policy_parser_destroy(p);
}
END_TEST

/* ---- renderer ---- */

struct rrow {
    const char *name;
    Mxcache__Action action;
    uint32_t code;
    const char *status, *text, *prepend;
    const char *want; /* NULL: no usable answer (length 0) */
};

static const struct rrow rrows[] = {
    {"dunno", MXCACHE__ACTION__ACTION_DUNNO, 0, "", "", "", "action=DUNNO\n\n"},
    {"dunno ignores text", MXCACHE__ACTION__ACTION_DUNNO, 0, "", "whitelisted", "", "action=DUNNO\n\n"},
    {"prepend", MXCACHE__ACTION__ACTION_DUNNO, 0, "", "", "X-Greylist: delayed 301 seconds by mxcache",
     "action=PREPEND X-Greylist: delayed 301 seconds by mxcache\n\n"},
    {"prepend with CRLF injection", MXCACHE__ACTION__ACTION_DUNNO, 0, "", "",
     "X-Greylist: a\r\nX-Evil: b\n\naction=REJECT", "action=PREPEND X-Greylist: a X-Evil: b action=REJECT\n\n"},
    {"prepend that is no header", MXCACHE__ACTION__ACTION_DUNNO, 0, "", "", "no header here",
     "action=DUNNO\n\n"},
    {"prepend with empty name", MXCACHE__ACTION__ACTION_DUNNO, 0, "", "", ": value", "action=DUNNO\n\n"},
    {"defer", MXCACHE__ACTION__ACTION_DEFER, 450, "4.7.1", "Greylisted, please try again in 300 seconds", "",
     "action=450 4.7.1 Greylisted, please try again in 300 seconds\n\n"},
    {"defer 451 4.3.0", MXCACHE__ACTION__ACTION_DEFER, 451, "4.3.0", "verification in progress", "",
     "action=451 4.3.0 verification in progress\n\n"},
    {"defer never permanent", MXCACHE__ACTION__ACTION_DEFER, 550, "5.1.1", "User unknown", "",
     "action=450 4.7.1 User unknown\n\n"},
    {"defer with status of the wrong class", MXCACHE__ACTION__ACTION_DEFER, 451, "5.1.1", "x", "",
     "action=451 4.7.1 x\n\n"},
    {"defer without code", MXCACHE__ACTION__ACTION_DEFER, 0, "", "later", "", "action=450 4.7.1 later\n\n"},
    {"defer without text", MXCACHE__ACTION__ACTION_DEFER, 450, "4.7.1", "", "",
     "action=450 4.7.1 Try again later\n\n"},
    {"reject", MXCACHE__ACTION__ACTION_REJECT, 550, "5.1.1", "<bob@example.net>: User unknown", "",
     "action=550 5.1.1 <bob@example.net>: User unknown\n\n"},
    {"reject 554", MXCACHE__ACTION__ACTION_REJECT, 554, "5.7.1", "Access denied", "",
     "action=554 5.7.1 Access denied\n\n"},
    {"reject with a 4xx code", MXCACHE__ACTION__ACTION_REJECT, 450, "4.1.1", "try later", "",
     "action=450 4.1.1 try later\n\n"},
    {"reject without code", MXCACHE__ACTION__ACTION_REJECT, 0, "5.1.1", "no", "", "action=550 5.1.1 no\n\n"},
    {"reject with a 2xx code", MXCACHE__ACTION__ACTION_REJECT, 250, "2.0.0", "ok?", "",
     "action=550 5.7.1 ok?\n\n"},
    {"reject with a bad status", MXCACHE__ACTION__ACTION_REJECT, 550, "5.1", "x", "", "action=550 5.7.1 x\n\n"},
    {"reject with a long status", MXCACHE__ACTION__ACTION_REJECT, 550, "5.1234.1", "x", "",
     "action=550 5.7.1 x\n\n"},
    {"reject with status junk", MXCACHE__ACTION__ACTION_REJECT, 550, "5.1.1 extra", "x", "",
     "action=550 5.7.1 x\n\n"},
    {"reject without text", MXCACHE__ACTION__ACTION_REJECT, 550, "5.7.1", "  \r\n ", "",
     "action=550 5.7.1 Rejected by policy\n\n"},
    {"text with line injection", MXCACHE__ACTION__ACTION_REJECT, 550, "5.1.1", "bad\r\n\r\naction=OK", "",
     "action=550 5.1.1 bad action=OK\n\n"},
    {"text with controls and UTF-8", MXCACHE__ACTION__ACTION_DEFER, 450, "4.7.1",
     "\tcaf\xc3\xa9 \x01\x1b[0m  end  ", "", "action=450 4.7.1 caf?? ??[0m end\n\n"},
    {"unspecified action", MXCACHE__ACTION__ACTION_UNSPECIFIED, 450, "4.7.1", "x", "", NULL},
};

START_TEST(test_render_table)
{
    const struct rrow *row = &rrows[_i];
    Mxcache__CheckReply r = MXCACHE__CHECK_REPLY__INIT;
    char out[POLICY_ANSWER_MAX];

    r.action = row->action;
    r.smtp_code = row->code;
    r.enhanced_status = (char *)row->status;
    r.text = (char *)row->text;
    r.prepend = (char *)row->prepend;
    size_t n = policy_render_reply(&r, out, sizeof out);
    if (!row->want) {
        ck_assert_msg(n == 0, "%s: answer %s", row->name, out);
        return;
    }
    ck_assert_msg(n > 0, "%s: no answer", row->name);
    ck_assert_uint_eq(n, strlen(out));
    ck_assert_msg(strcmp(out, row->want) == 0, "%s:\n got  %s\n want %s", row->name, out, row->want);
}
END_TEST

/* Every answer is one line plus the empty line, printable, bounded, whatever the service says. */
START_TEST(test_render_bounds)
{
    static char huge[5000];
    Mxcache__CheckReply r = MXCACHE__CHECK_REPLY__INIT;
    char out[POLICY_ANSWER_MAX];

    for (size_t i = 0; i < sizeof huge - 1; i++)
        huge[i] = (char)(1 + (i * 7919) % 255);
    huge[0] = 'X';
    huge[1] = ':';
    for (int a = MXCACHE__ACTION__ACTION_DUNNO; a <= MXCACHE__ACTION__ACTION_REJECT; a++) {
        r.action = (Mxcache__Action)a;
        r.smtp_code = 451;
        r.enhanced_status = huge;
        r.text = huge;
        r.prepend = huge;
        size_t n = policy_render_reply(&r, out, sizeof out);
        ck_assert_uint_gt(n, 0);
        ck_assert_uint_lt(n, sizeof out);
        ck_assert(strncmp(out, "action=", 7) == 0);
        ck_assert(strcmp(out + n - 2, "\n\n") == 0);
        for (size_t i = 0; i < n - 2; i++)
            ck_assert_msg(out[i] >= 0x20 && out[i] < 0x7f, "byte %zu is 0x%02x", i, (unsigned char)out[i]);
        if (a != MXCACHE__ACTION__ACTION_DUNNO)
            ck_assert_uint_le(n, strlen("action=451 4.7.1 ") + POLICY_TEXT_MAX + 2);
    }
    /* A buffer that is too small gives no answer, never a truncated one. */
    r.action = MXCACHE__ACTION__ACTION_DEFER;
    r.text = "Greylisted";
    r.enhanced_status = "4.7.1";
    ck_assert_uint_eq(policy_render_reply(&r, out, 10), 0);
    ck_assert_uint_eq(policy_render_dunno(out, 5), 0);
    ck_assert_uint_eq(policy_render_reply(NULL, out, sizeof out), 0);
}
END_TEST

START_TEST(test_render_fallback)
{
    char out[POLICY_ANSWER_MAX];

    policy_render_fallback(POLICY_FALLBACK_DEFER, "Temporary policy service failure, try again later",
                           out, sizeof out);
    ck_assert_str_eq(out, "action=451 4.3.0 Temporary policy service failure, try again later\n\n");
    policy_render_fallback(POLICY_FALLBACK_DUNNO, "ignored", out, sizeof out);
    ck_assert_str_eq(out, "action=DUNNO\n\n");
    policy_render_fallback(POLICY_FALLBACK_DEFER, "two\nlines", out, sizeof out);
    ck_assert_str_eq(out, "action=451 4.3.0 two lines\n\n");
    policy_render_fallback(POLICY_FALLBACK_DEFER, "", out, sizeof out);
    ck_assert_str_eq(out, "action=451 4.3.0 Try again later\n\n");
    ck_assert_uint_eq(policy_render_dunno(out, sizeof out), 14);
    ck_assert_str_eq(out, "action=DUNNO\n\n");
}
END_TEST

struct crow {
    const char *in;
    size_t max;
    const char *want;
};

static const struct crow crows[] = {
    {"plain", 100, "plain"},
    {"  lead and trail  ", 100, "lead and trail"},
    {"a \t\r\n b", 100, "a b"},
    {"a\x01" "b\x7f" "c\xff", 100, "a?b?c?"},
    {"abcdef", 3, "abc"},
    {"abc   def", 4, "abc"},
    {"", 10, ""},
    {"\r\n\t ", 10, ""},
};

START_TEST(test_clean_text)
{
    const struct crow *row = &crows[_i];
    char out[64];
    size_t n = policy_clean_text(row->in, row->max, out, sizeof out);

    ck_assert_str_eq(out, row->want);
    ck_assert_uint_eq(n, strlen(row->want));
    ck_assert_uint_eq(policy_clean_text("abcdef", 100, out, 4), 3); /* outlen bounds too */
    ck_assert_str_eq(out, "abc");
    ck_assert_uint_eq(policy_clean_text(NULL, 10, out, sizeof out), 0);
}
END_TEST

/* ---- settings ---- */

struct lrow {
    const char *spec;
    int ok;
    enum policy_listen_kind kind;
    const char *host, *port, *path;
};

static const struct lrow lrows[] = {
    {"inet:127.0.0.1:10040", 1, POLICY_LISTEN_INET, "127.0.0.1", "10040", ""},
    {"127.0.0.1:10040", 1, POLICY_LISTEN_INET, "127.0.0.1", "10040", ""},
    {"localhost:1", 1, POLICY_LISTEN_INET, "localhost", "1", ""},
    {"[::1]:65535", 1, POLICY_LISTEN_INET, "::1", "65535", ""},
    {"inet:[::1]:10040", 1, POLICY_LISTEN_INET, "::1", "10040", ""},
    {"unix:/run/mxcache/policy.sock", 1, POLICY_LISTEN_UNIX, "", "", "/run/mxcache/policy.sock"},
    {"unix:private/mxcache", 1, POLICY_LISTEN_UNIX, "", "", "private/mxcache"},
    {"/var/spool/postfix/private/mxcache", 1, POLICY_LISTEN_UNIX, "", "", "/var/spool/postfix/private/mxcache"},
    {"127.0.0.1", 0, 0, NULL, NULL, NULL},
    {"127.0.0.1:", 0, 0, NULL, NULL, NULL},
    {"127.0.0.1:0", 0, 0, NULL, NULL, NULL},
    {"127.0.0.1:65536", 0, 0, NULL, NULL, NULL},
    {"127.0.0.1:12a", 0, 0, NULL, NULL, NULL},
    {":10040", 0, 0, NULL, NULL, NULL},
    {"::1:10040", 0, 0, NULL, NULL, NULL},
    {"[::1:10040", 0, 0, NULL, NULL, NULL},
    {"unix:", 0, 0, NULL, NULL, NULL},
    {"unix:/a/very/long/path/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
     0, 0, NULL, NULL, NULL},
    {"", 0, 0, NULL, NULL, NULL},
};

START_TEST(test_listen_parse)
{
    const struct lrow *row = &lrows[_i];
    struct policy_listen_addr a;
    char err[256] = "";
    int rc = policy_listen_parse(row->spec, &a, err, sizeof err);

    if (!row->ok) {
        ck_assert_msg(rc == MXC_EINVAL, "%s accepted", row->spec);
        ck_assert_msg(err[0] != '\0', "%s: no reason", row->spec);
        return;
    }
    ck_assert_msg(rc == MXC_OK, "%s: %s", row->spec, err);
    ck_assert_int_eq(a.kind, row->kind);
    ck_assert_str_eq(a.host, row->host);
    ck_assert_str_eq(a.port, row->port);
    ck_assert_str_eq(a.path, row->path);
}
END_TEST

static char tmpdir[] = "/tmp/check_policy-XXXXXX";

/* load_text - writes text to a file and loads it; *errs gets the messages joined by '\n'. */
static struct policy_conf *load_text(const char *text, char *errs, size_t errlen)
{
    char path[128];
    struct policy_conf_errors e = {0};

    snprintf(path, sizeof path, "%s/p.conf", tmpdir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    struct policy_conf *c = policy_conf_load(path, &e);
    errs[0] = '\0';
    for (size_t i = 0; i < e.n; i++) {
        strncat(errs, e.msg[i], errlen - strlen(errs) - 2);
        strcat(errs, "\n");
    }
    policy_conf_errors_fini(&e);
    return c;
}

START_TEST(test_conf_defaults_and_overrides)
{
    char errs[4096];
    struct policy_conf *d = policy_conf_defaults();

    ck_assert_ptr_nonnull(d);
    ck_assert_uint_eq(d->listen.n, 1);
    ck_assert_str_eq(d->listen.items[0], "inet:127.0.0.1:10040");
    ck_assert_str_eq(d->endpoints.items[0], "tcp://127.0.0.1:10041");
    ck_assert_uint_eq(d->timeout, 5000);
    ck_assert_int_eq(d->fallback, PCONF_FALLBACK_DEFER);
    ck_assert_uint_eq(d->states.n, 1);
    ck_assert_str_eq(d->states.items[0], "RCPT");
    ck_assert_int_eq(d->max_connections, 1000);
    ck_assert_uint_eq(d->idle_timeout, 300000);
    ck_assert_uint_eq(d->max_line, 2048);
    ck_assert_uint_eq(d->max_request, 16384);
    ck_assert_int_eq(d->max_attributes, 100);
    ck_assert_int_eq(d->unix_mode, 0660);
    ck_assert_str_eq(d->mx_name, "");
    ck_assert_uint_eq(d->ping_interval, 5000);
    ck_assert_str_eq(d->metrics_listen, "127.0.0.1:10043");

    struct policy_conf *c = load_text(
        "server: { listen = [\"inet:127.0.0.1:1\", \"unix:/tmp/x.sock\"]; unix_mode = \"0666\";\n"
        "  max_line = \"1K\"; idle_timeout = 60; };\n"
        "service: { endpoints = [\"ipc:///tmp/a\", \"tcp://10.0.0.1:10041\", \"tcp://[::1]:10041\"];\n"
        "  timeout = \"1500ms\";\n"
        "  fallback = \"dunno\"; states = [\"rcpt\", \"Data\"]; mx_name = \"mx01\"; ping_interval = 0; };\n"
        "metrics: { listen = \"[::1]:9100\"; };\n"
        "log: { level = \"debug\"; target = \"stderr\"; };\n",
        errs, sizeof errs);
    ck_assert_msg(c != NULL, "%s", errs);
    ck_assert_uint_eq(c->listen.n, 2);
    ck_assert_int_eq(c->unix_mode, 0666);
    ck_assert_uint_eq(c->max_line, 1024);
    ck_assert_uint_eq(c->idle_timeout, 60000);
    ck_assert_uint_eq(c->endpoints.n, 3);
    ck_assert_uint_eq(c->timeout, 1500);
    ck_assert_int_eq(c->fallback, PCONF_FALLBACK_DUNNO);
    ck_assert_str_eq(c->states.items[0], "RCPT");
    ck_assert_str_eq(c->states.items[1], "DATA");
    ck_assert_str_eq(c->mx_name, "mx01");
    ck_assert_uint_eq(c->ping_interval, 0);
    ck_assert_str_eq(c->metrics_listen, "[::1]:9100");

    /* --print-config output loads back to the same values. */
    char path[128];
    snprintf(path, sizeof path, "%s/printed.conf", tmpdir);
    FILE *f = fopen(path, "w");
    ck_assert_int_eq(policy_conf_print(c, f), MXC_OK);
    fclose(f);
    struct policy_conf_errors e = {0};
    struct policy_conf *back = policy_conf_load(path, &e);
    ck_assert_msg(back != NULL, "%s", e.n ? e.msg[0] : "?");
    ck_assert_uint_eq(back->timeout, 1500);
    ck_assert_int_eq(back->unix_mode, 0666);
    ck_assert_uint_eq(back->max_line, 1024);
    ck_assert_str_eq(back->endpoints.items[1], "tcp://10.0.0.1:10041");
    ck_assert_uint_eq(back->ping_interval, 0);
    ck_assert_str_eq(back->metrics_listen, "[::1]:9100");
    policy_conf_free(back);
    policy_conf_errors_fini(&e);
    policy_conf_free(c);
    policy_conf_free(d);
}
END_TEST

struct erow {
    const char *text;
    const char *want; /* a substring of the messages, with the line number */
};

static const struct erow erows[] = {
    {"server: {\n  bogus = 1;\n};\n", "p.conf:2: server.bogus: unknown setting"},
    {"nosuch: { a = 1; };\n", "p.conf:1: unknown group nosuch"},
    {"timeout = \"1s\";\n", "p.conf:1: timeout: setting outside any group"},
    {"service: {\n\n  timeout = \"2m\";\n};\n", "p.conf:3: service.timeout: 2m is out of range"},
    {"service: { timeout = \"soon\"; };\n", "p.conf:1: service.timeout: bad duration"},
    {"service: { fallback = \"accept\"; };\n", "p.conf:1: service.fallback: unknown value"},
    {"service: { states = [\"RCTP\"]; };\n", "p.conf:1: service.states: unknown state"},
    {"service: { states = []; };\n", "service.states: empty"},
    {"service: { endpoints = [\"http://x\"]; };\n", "p.conf:1: service.endpoints: bad endpoint"},
    {"service: { endpoints = [\"tcp://127.0.0.1\"]; };\n", "p.conf:1: service.endpoints: bad endpoint"},
    {"service: { endpoints = [\"ipc://\"]; };\n", "p.conf:1: service.endpoints: bad endpoint"},
    {"service: { fallback_text = \"caf\xc3\xa9\"; };\n", "service.fallback_text: expected 1 to"},
    {"service: { mx_name = \"a b\"; };\n", "service.mx_name"},
    {"server: { listen = [\"127.0.0.1\"]; };\n", "p.conf:1: server.listen: bad listen address"},
    {"server: { listen = []; };\n", "server.listen: empty"},
    {"server: { unix_mode = \"0999\"; };\n", "p.conf:1: server.unix_mode: bad mode"},
    {"server: { unix_mode = 660; };\n", "server.unix_mode: wrong type"},
    {"server: { max_connections = 0; };\n", "server.max_connections: 0 is out of range"},
    {"server: {\n max_line = \"8K\";\n max_request = \"4K\";\n};\n", "p.conf:2: server.max_line: server.max_line (8192) is larger"},
    {"server: { max_line = 2048 \n", "p.conf:2: syntax error"},
    {"log: { level = 3; };\n", "log.level: wrong type"},
    {"service: { ping_interval = \"2h\"; };\n", "p.conf:1: service.ping_interval: 2h is out of range"},
    {"metrics: {\n listen = \"localhost:10043\";\n};\n", "p.conf:2: metrics.listen: bad address \"localhost:10043\""},
    {"metrics: { listen = \"127.0.0.1\"; };\n", "p.conf:1: metrics.listen: bad address"},
    {"metrics: { listen = \"127.0.0.1:65536\"; };\n", "p.conf:1: metrics.listen: bad address"},
    {"metrics: { listen = \"::1:80\"; };\n", "p.conf:1: metrics.listen: bad address"},
    {"metrics: { listen = 10043; };\n", "p.conf:1: metrics.listen: wrong type"},
    /* a directory: libconfig 1.5 would call exit(2) from its scanner (fuzz_config found it) */
    {"service: {\n@include \"/\"\n};\n", "p.conf:2: @include \"/\": not a regular file"},
};

START_TEST(test_conf_errors)
{
    const struct erow *row = &erows[_i];
    char errs[4096];
    struct policy_conf *c = load_text(row->text, errs, sizeof errs);

    ck_assert_msg(c == NULL, "accepted: %s", row->text);
    ck_assert_msg(strstr(errs, row->want) != NULL, "want \"%s\" in:\n%s", row->want, errs);
}
END_TEST

START_TEST(test_conf_reports_every_error)
{
    char errs[4096];
    struct policy_conf *c =
        load_text("server: {\n max_connections = -1;\n};\nservice: {\n timeout = 0;\n fallback = 1;\n};\n",
                  errs, sizeof errs);

    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(errs, "p.conf:2:") && strstr(errs, "p.conf:5:") && strstr(errs, "p.conf:6:"),
                  "%s", errs);
    struct policy_conf_errors e = {0};
    ck_assert_ptr_null(policy_conf_load("/nonexistent/p.conf", &e));
    ck_assert_uint_eq(e.n, 1);
    ck_assert_ptr_nonnull(strstr(e.msg[0], "cannot read"));
    policy_conf_errors_fini(&e);
}
END_TEST

/* ---- monitoring ---- */

/* has_line - whether text holds line as a whole line. */
static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = strstr(text, line); p; p = strstr(p + 1, line))
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
            return true;
    return false;
}

START_TEST(test_metrics_render)
{
    struct policy_metrics m;
    struct prom_buf b;

    policy_metrics_init(&m);
    pm_inc(&m.connections);
    pm_inc(&m.connections);
    pm_add_i64(&m.open, 2);
    pm_add_i64(&m.open, -1);
    pm_inc(&m.answers[PM_ANSWER_SERVICE]);
    pm_inc(&m.answers[PM_ANSWER_FALLBACK]);
    pm_inc(&m.fallbacks[PM_FB_UNREACHABLE]);
    pm_inc(&m.oversized);
    pm_set(&m.service_up, 1);
    histo_observe(&m.latency, 1500);  /* 1.5 ms */
    histo_observe(&m.latency, 20000); /* 20 ms */
    prom_init(&b);
    policy_metrics_render(&m, &b);
    ck_assert(!b.failed);
    static const char *const want[] = {
        "# TYPE mxcache_policy_connections_total counter",
        "mxcache_policy_connections_total 2",
        "mxcache_policy_connections_open 1",
        "mxcache_policy_connections_refused_total 0",
        "mxcache_policy_connections_timed_out_total 0",
        "mxcache_policy_requests_total{answer=\"service\"} 1",
        "mxcache_policy_requests_total{answer=\"local\"} 0",
        "mxcache_policy_requests_total{answer=\"fallback\"} 1",
        "mxcache_policy_fallback_answers_total{reason=\"timeout\"} 0",
        "mxcache_policy_fallback_answers_total{reason=\"unreachable\"} 1",
        "mxcache_policy_fallback_answers_total{reason=\"error\"} 0",
        "mxcache_policy_fallback_answers_total{reason=\"overload\"} 0",
        "mxcache_policy_fallback_answers_total{reason=\"send_failed\"} 0",
        "mxcache_policy_requests_malformed_total 0",
        "mxcache_policy_requests_oversized_total 1",
        "# TYPE mxcache_policy_request_duration_seconds histogram",
        "mxcache_policy_request_duration_seconds_count 2",
        "mxcache_policy_request_duration_seconds_bucket{le=\"+Inf\"} 2",
        "mxcache_policy_service_pings_total 0",
        "mxcache_policy_service_up 1",
        "# TYPE mxcache_policy_build_info gauge",
        "mxcache_policy_build_info{version=\"" MXCACHE_VERSION "\"} 1",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        ck_assert_msg(has_line(b.data, want[i]), "no line \"%s\" in:\n%s", want[i], b.data);
    prom_fini(&b);
}
END_TEST

START_TEST(test_metrics_ready)
{
    struct policy_metrics m;
    char why[128];

    policy_metrics_init(&m);
    ck_assert(!policy_metrics_ready(&m, why, sizeof why));
    ck_assert_str_eq(why, "not listening: stopping");
    pm_set(&m.listening, 1);
    ck_assert(!policy_metrics_ready(&m, why, sizeof why));
    ck_assert_str_eq(why, "service unreachable: no answer yet");
    pm_set(&m.down_cause, PM_DOWN_UNREACHABLE);
    ck_assert(!policy_metrics_ready(&m, why, sizeof why));
    ck_assert_str_eq(why, "service unreachable: no connection to any endpoint");
    pm_set(&m.down_cause, PM_DOWN_TIMEOUT);
    ck_assert(!policy_metrics_ready(&m, why, sizeof why));
    ck_assert_str_eq(why, "service unreachable: no answer within service.timeout");
    pm_set(&m.service_up, 1);
    pm_set(&m.down_cause, PM_DOWN_NONE);
    ck_assert(policy_metrics_ready(&m, why, sizeof why));
    ck_assert_str_eq(policy_fallback_reason_name(PM_FB_OVERLOAD), "overload");
    ck_assert_str_eq(policy_fallback_reason_name((enum policy_fallback_reason)99), "?");
    ck_assert_str_eq(policy_answer_name(PM_ANSWER_LOCAL), "local");
}
END_TEST

int main(void)
{
    char cmd[128];

    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    Suite *s = suite_create("policy");
    TCase *tp = tcase_create("parser");
    tcase_add_loop_test(tp, test_parse_table, 0, (int)(sizeof prows / sizeof prows[0]));
    tcase_add_test(tp, test_feed_stops_after_each_request);
    tcase_add_test(tp, test_error_excerpt_and_reset);
    tcase_add_test(tp, test_request_to_check_and_states);
    suite_add_tcase(s, tp);
    TCase *tr = tcase_create("renderer");
    tcase_add_loop_test(tr, test_render_table, 0, (int)(sizeof rrows / sizeof rrows[0]));
    tcase_add_test(tr, test_render_bounds);
    tcase_add_test(tr, test_render_fallback);
    tcase_add_loop_test(tr, test_clean_text, 0, (int)(sizeof crows / sizeof crows[0]));
    suite_add_tcase(s, tr);
    TCase *tc = tcase_create("config");
    tcase_add_loop_test(tc, test_listen_parse, 0, (int)(sizeof lrows / sizeof lrows[0]));
    tcase_add_test(tc, test_conf_defaults_and_overrides);
    tcase_add_loop_test(tc, test_conf_errors, 0, (int)(sizeof erows / sizeof erows[0]));
    tcase_add_test(tc, test_conf_reports_every_error);
    suite_add_tcase(s, tc);
    TCase *tm = tcase_create("metrics");
    tcase_add_test(tm, test_metrics_render);
    tcase_add_test(tm, test_metrics_ready);
    suite_add_tcase(s, tm);

    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", tmpdir);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
