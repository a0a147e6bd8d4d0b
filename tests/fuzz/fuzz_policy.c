/* fuzz_policy - libFuzzer target for client/policy_proto.c: the parser of the Postfix policy
 * delegation protocol (the bytes smtpd sends to mxcache-policy) and what the hook makes of a
 * parsed request: the Check question, and the answer it writes back.
 *
 * The input is the byte stream of one connection. It is parsed with the hook's default limits
 * and with tiny ones (so that every limit is hit), each time twice: fed whole, and fed in pieces
 * whose sizes come from a generator seeded by the input, each piece copied into a heap block of
 * exactly its size. A failed parser is reset and goes on after the offending byte, so that one
 * input exercises many requests. Both feeds must give the same requests and errors at the same
 * offsets. Every request must keep the parser's promises (values without NUL, CR, LF or other
 * controls but TAB, within the limits); its Check question must survive a protobuf round trip;
 * and answers rendered from its values (the recipient as the text, the sender as a header, the
 * helo name as the status, the queue id as the code) must be one line of printable ASCII that
 * never turns a deferral into a permanent refusal, as must the fallback answer. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz_util.h"
#include "mxc_err.h"
#include "policy_proto.h"
#include "wire.h"

struct event {
    enum policy_status st;   /* REQUEST or BAD */
    size_t end;              /* stream offset just past the bytes the feed used */
    char *val[POLICY_ATTR_COUNT];
    unsigned nattrs;
    size_t bytes;
    enum policy_error err;
    unsigned line;
    char excerpt[POLICY_EXCERPT_MAX];
    size_t excerpt_len;
};

struct events {
    struct event *ev;
    size_t n, cap;
};

static struct event *add_event(struct events *e)
{
    if (e->n == e->cap) {
        e->cap = e->cap ? 2 * e->cap : 16;
        e->ev = realloc(e->ev, e->cap * sizeof *e->ev);
        FUZZ_REQUIRE(e->ev != NULL, "out of memory");
    }
    memset(&e->ev[e->n], 0, sizeof e->ev[0]);
    return &e->ev[e->n++];
}

static void free_events(struct events *e)
{
    for (size_t i = 0; i < e->n; i++)
        for (int a = 0; a < POLICY_ATTR_COUNT; a++)
            free(e->ev[i].val[a]);
    free(e->ev);
}

/* ---- answers ---- */

/* check_answer - one rendered answer of n bytes: "action=...\n\n", printable ASCII otherwise. */
static void check_answer(const char *out, size_t n, size_t outlen)
{
    FUZZ_REQUIRE(n > 0 && n < outlen, "answer of %zu bytes", n);
    FUZZ_REQUIRE(strlen(out) == n, "answer length %zu, says %zu", strlen(out), n);
    FUZZ_REQUIRE(strncmp(out, "action=", 7) == 0, "answer \"%s\"", out);
    FUZZ_REQUIRE(n >= 9 && out[n - 1] == '\n' && out[n - 2] == '\n', "answer does not end in an empty line");
    for (size_t i = 0; i < n - 2; i++)
        FUZZ_REQUIRE((unsigned char)out[i] >= 0x20 && (unsigned char)out[i] < 0x7f,
                     "byte 0x%02x at %zu of the answer", (unsigned char)out[i], i);
    FUZZ_REQUIRE(out[n - 3] != ' ', "answer ends in a space");
}

/* code_of - the SMTP code an answer "action=DDD ..." gives, 0 for DUNNO or PREPEND. */
static unsigned code_of(const char *out)
{
    const char *a = out + 7;
    if (strncmp(a, "DUNNO\n", 6) == 0 || strncmp(a, "PREPEND ", 8) == 0)
        return 0;
    FUZZ_REQUIRE(a[0] >= '4' && a[0] <= '5' && a[1] >= '0' && a[1] <= '9' && a[2] >= '0' &&
                     a[2] <= '9' && a[3] == ' ',
                 "answer \"%s\" has no code", out);
    /* the enhanced status: the class of the code, then .D{1,3}.D{1,3} */
    const char *s = a + 4;
    FUZZ_REQUIRE(s[0] == a[0] && s[1] == '.', "status of another class: \"%s\"", out);
    return (unsigned)(a[0] - '0') * 100 + (unsigned)(a[1] - '0') * 10 + (unsigned)(a[2] - '0');
}

static void check_clean(const char *in, size_t max)
{
    char out[POLICY_TEXT_MAX + 1];
    size_t n = policy_clean_text(in, max, out, sizeof out);

    FUZZ_REQUIRE(n == strlen(out), "clean_text length");
    FUZZ_REQUIRE(n <= max && n < sizeof out, "clean_text kept %zu of at most %zu", n, max);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out[i];
        FUZZ_REQUIRE(c >= 0x20 && c < 0x7f, "clean_text kept 0x%02x", c);
        FUZZ_REQUIRE(c != ' ' || (i > 0 && i + 1 < n && out[i - 1] != ' '),
                     "clean_text kept a space at %zu of \"%s\"", i, out);
    }
}

/* render - answers made from the request's values, as if mxcached had sent them. */
static void render(const struct policy_request *req)
{
    static const Mxcache__Action actions[] = {
        MXCACHE__ACTION__ACTION_UNSPECIFIED, MXCACHE__ACTION__ACTION_DUNNO,
        MXCACHE__ACTION__ACTION_DEFER, MXCACHE__ACTION__ACTION_REJECT,
    };
    Mxcache__CheckReply r = MXCACHE__CHECK_REPLY__INIT;
    char out[POLICY_ANSWER_MAX];
#define V(a) (req->val[a] ? req->val[a] : "")
    const char *qid = V(POLICY_ATTR_QUEUE_ID);

    r.text = (char *)V(POLICY_ATTR_RECIPIENT);
    r.prepend = (char *)V(POLICY_ATTR_SENDER);
    r.enhanced_status = (char *)V(POLICY_ATTR_HELO_NAME);
    r.smtp_code = (uint32_t)strtoul(qid, NULL, 10);
    for (size_t i = 0; i < sizeof actions / sizeof actions[0]; i++) {
        r.action = actions[i];
        size_t n = policy_render_reply(&r, out, sizeof out);
        if (r.action == MXCACHE__ACTION__ACTION_UNSPECIFIED) {
            FUZZ_REQUIRE(n == 0, "an answer for no action");
            continue;
        }
        check_answer(out, n, sizeof out);
        unsigned code = code_of(out);
        if (r.action == MXCACHE__ACTION__ACTION_DUNNO) {
            FUZZ_REQUIRE(code == 0, "DUNNO became \"%s\"", out);
        } else if (r.action == MXCACHE__ACTION__ACTION_DEFER) {
            /* Robustness: a temporary answer never becomes a permanent one. */
            FUZZ_REQUIRE(code >= 400 && code <= 499, "DEFER became \"%s\"", out);
        } else {
            FUZZ_REQUIRE(code >= 400 && code <= 599, "REJECT became \"%s\"", out);
        }
    }
    size_t n = policy_render_fallback(POLICY_FALLBACK_DEFER, r.text, out, sizeof out);
    check_answer(out, n, sizeof out);
    FUZZ_REQUIRE(strncmp(out, "action=451 4.3.0 ", 17) == 0, "fallback \"%s\"", out);
    n = policy_render_fallback(POLICY_FALLBACK_DUNNO, r.text, out, sizeof out);
    FUZZ_REQUIRE(n == 14 && strcmp(out, "action=DUNNO\n\n") == 0, "fallback \"%s\"", out);
    check_clean(r.text, POLICY_TEXT_MAX);
    check_clean(r.prepend, (size_t)(r.smtp_code % (POLICY_TEXT_MAX + 1)));
#undef V
}

/* question - the Check question of req through a protobuf round trip, as the hook sends it. */
static void question(const struct policy_request *req)
{
    Mxcache__Request rq = MXCACHE__REQUEST__INIT;
    Mxcache__CheckRequest q = MXCACHE__CHECK_REQUEST__INIT;
    uint8_t *buf;
    size_t len;

    policy_request_to_check(req, "mx1.example.net", &q);
    rq.version = WIRE_VERSION;
    rq.id = 1;
    rq.body_case = MXCACHE__REQUEST__BODY_CHECK;
    rq.check = &q;
    FUZZ_REQUIRE(wire_request_pack(&rq, &buf, &len) == MXC_OK, "pack");
    Mxcache__Request *back = wire_request_unpack(buf, len);
    FUZZ_REQUIRE(back && back->body_case == MXCACHE__REQUEST__BODY_CHECK, "unpack");
    const char *want[] = {q.client_address, q.client_name, q.helo_name, q.sender,
                          q.recipient, q.protocol_state, q.queue_id, q.mx_name};
    const char *got[] = {back->check->client_address, back->check->client_name,
                         back->check->helo_name, back->check->sender, back->check->recipient,
                         back->check->protocol_state, back->check->queue_id, back->check->mx_name};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        FUZZ_REQUIRE(strcmp(want[i], got[i]) == 0, "field %zu: \"%s\" came back as \"%s\"", i,
                     want[i], got[i]);
    mxcache__request__free_unpacked(back, NULL);
    free(buf);

    static const char *const states[] = {"RCPT", "DATA", "END-OF-MESSAGE"};
    const char *st = req->val[POLICY_ATTR_PROTOCOL_STATE];
    bool in = false;
    for (size_t i = 0; st && i < sizeof states / sizeof states[0]; i++)
        in |= strcasecmp(st, states[i]) == 0;
    FUZZ_REQUIRE(policy_state_in(st, states, 3) == in, "policy_state_in(\"%s\")", st ? st : "(null)");
}

/* check_request - the parser's promises about one request of a parser with limits lim. */
static void check_request(const struct policy_request *req, const struct policy_limits *lim,
                          size_t start, size_t end)
{
    FUZZ_REQUIRE(req->nattrs <= lim->max_attributes, "%u attributes", req->nattrs);
    FUZZ_REQUIRE(req->bytes <= lim->max_request, "%zu bytes", req->bytes);
    FUZZ_REQUIRE(req->bytes == end - start, "request of %zu bytes in %zu", req->bytes, end - start);
    for (int a = 0; a < POLICY_ATTR_COUNT; a++) {
        const char *v = req->val[a];
        if (!v)
            continue;
        size_t n = strlen(v);
        FUZZ_REQUIRE(n <= lim->max_line, "value of %zu bytes", n);
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)v[i];
            FUZZ_REQUIRE(c == '\t' || (c >= 0x20 && c != 0x7f), "byte 0x%02x in %s", c,
                         policy_attr_name((enum policy_attr)a));
        }
    }
}

/* record - what a feed that ended a request or failed gave, as an event. */
static void record(struct event *e, policy_parser *p, enum policy_status st, size_t end)
{
    const char *ex;

    e->st = st;
    e->end = end;
    if (st == POLICY_REQUEST) {
        const struct policy_request *req = policy_parser_request(p);
        FUZZ_REQUIRE(req != NULL, "REQUEST without a request");
        for (int a = 0; a < POLICY_ATTR_COUNT; a++)
            if (req->val[a] && !(e->val[a] = strdup(req->val[a])))
                abort();
        e->nattrs = req->nattrs;
        e->bytes = req->bytes;
        return;
    }
    e->err = policy_parser_error(p, &e->line, &ex, &e->excerpt_len);
    FUZZ_REQUIRE(e->err != POLICY_ERR_NONE, "BAD without a reason");
    FUZZ_REQUIRE(e->excerpt_len <= POLICY_EXCERPT_MAX, "excerpt of %zu bytes", e->excerpt_len);
    FUZZ_REQUIRE(e->line >= 1, "error on line %u", e->line);
    memcpy(e->excerpt, ex, e->excerpt_len);
}

static bool same_event(const struct event *a, const struct event *b)
{
    if (a->st != b->st || a->end != b->end)
        return false;
    if (a->st == POLICY_BAD)
        return a->err == b->err && a->line == b->line && a->excerpt_len == b->excerpt_len &&
               memcmp(a->excerpt, b->excerpt, a->excerpt_len) == 0;
    for (int i = 0; i < POLICY_ATTR_COUNT; i++)
        if ((a->val[i] == NULL) != (b->val[i] == NULL) || (a->val[i] && strcmp(a->val[i], b->val[i])))
            return false;
    return a->nattrs == b->nattrs && a->bytes == b->bytes;
}

/* after_bad - a failed parser stays failed (every feed BAD, nothing used) until reset. */
static void after_bad(policy_parser *p)
{
    size_t used = 7;
    FUZZ_REQUIRE(policy_parser_feed(p, "a=b\n\n", 5, &used) == POLICY_BAD && used == 0,
                 "a failed parser took more");
    FUZZ_REQUIRE(policy_parser_finish(p) == POLICY_BAD, "a failed parser finished cleanly");
    policy_parser_reset(p);
    FUZZ_REQUIRE(policy_parser_error(p, NULL, NULL, NULL) == POLICY_ERR_NONE, "reset kept the error");
}

/* run - parses the stream with limits lim, fed whole (pieces NULL: events recorded into ev) or
 * in pieces (events compared with ev). */
static void run(const char *buf, size_t size, const struct policy_limits *lim, struct fuzz_rng *pieces,
                struct events *ev)
{
    policy_parser *p = policy_parser_create(lim);
    size_t off = 0, start = 0, k = 0;
    char *piece = NULL;
    size_t plen = 0, poff = 0; /* the current piece: its length, its offset in the stream */

    FUZZ_REQUIRE(p != NULL, "policy_parser_create");
    while (off < size) {
        size_t used, avail;
        const char *at;
        if (pieces) {
            if (off >= poff + plen) {
                free(piece);
                poff = off;
                plen = fuzz_piece(pieces, size - off);
                if (!(piece = malloc(plen)))
                    abort();
                memcpy(piece, buf + off, plen);
            }
            at = piece + (off - poff);
            avail = poff + plen - off;
        } else {
            at = buf + off;
            avail = size - off;
        }
        enum policy_status st = policy_parser_feed(p, at, avail, &used);
        FUZZ_REQUIRE(used <= avail, "used %zu of %zu", used, avail);
        off += used;
        if (st == POLICY_MORE) {
            FUZZ_REQUIRE(used == avail, "MORE with bytes left");
            continue;
        }
        struct event e = {0};
        record(&e, p, st, off);
        if (st == POLICY_REQUEST) {
            FUZZ_REQUIRE(used >= 1 && buf[off - 1] == '\n', "a request that does not end in LF");
            FUZZ_REQUIRE(!policy_parser_pending(p), "pending after a request");
            check_request(policy_parser_request(p), lim, start, off);
            if (!pieces) {
                question(policy_parser_request(p));
                render(policy_parser_request(p));
            }
        } else {
            FUZZ_REQUIRE(st == POLICY_BAD, "status %d", (int)st);
            after_bad(p);
            off++; /* the connection would close; go on after the offending byte */
        }
        start = off;
        if (pieces) {
            FUZZ_REQUIRE(k < ev->n, "pieces gave more results than the whole stream, at %zu", e.end);
            FUZZ_REQUIRE(same_event(&ev->ev[k], &e), "pieces and whole differ at result %zu (offset %zu)",
                         k, e.end);
            k++;
            for (int a = 0; a < POLICY_ATTR_COUNT; a++)
                free(e.val[a]);
        } else {
            *add_event(ev) = e;
        }
    }
    free(piece);
    /* The end of the stream: clean, or inside a request. */
    bool pending = policy_parser_pending(p);
    enum policy_status fin = policy_parser_finish(p);
    FUZZ_REQUIRE(fin == (pending ? POLICY_BAD : POLICY_MORE), "finish %d, pending %d", (int)fin, pending);
    if (fin == POLICY_BAD)
        FUZZ_REQUIRE(policy_parser_error(p, NULL, NULL, NULL) == POLICY_ERR_EOF, "finish error");
    if (pieces)
        FUZZ_REQUIRE(k == ev->n, "pieces gave %zu results, whole %zu", k, ev->n);
    policy_parser_destroy(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* mxcache-policy's defaults, and limits small enough that the fuzzer meets each one. */
    static const struct policy_limits limits[] = {{2048, 16384, 100}, {24, 120, 4}};

    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        struct events ev = {0};
        struct fuzz_rng rng = fuzz_rng_seed(data, size);
        run((const char *)data, size, &limits[i], NULL, &ev);
        run((const char *)data, size, &limits[i], &rng, &ev);
        free_events(&ev);
    }
    return 0;
}
