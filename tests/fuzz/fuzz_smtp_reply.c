/* fuzz_smtp_reply - libFuzzer target for server/smtp_reply.c, the parser of the replies a backend
 * sends to the prober (the backend is a peer we do not control).
 *
 * The input is the byte stream a backend sends. It is parsed twice: fed whole (each call gets all
 * that is left), and fed in pieces whose sizes come from a generator seeded by the input, each
 * piece copied into a heap block of exactly its size so that AddressSanitizer sees any read past
 * it. After a malformed reply (BAD) the parser is started over on the next byte, as a new
 * connection would. Both runs must give the same replies and failures at the same offsets, and
 * every reply must keep the header's promises: a code of 100 to 599, 1 to SMTP_REPLY_LINES_MAX
 * lines, a text of printable ASCII shorter than SMTP_REPLY_TEXT_MAX, an enhanced status that is
 * "" or class.subject.detail. A parser that said BAD keeps saying BAD, using nothing. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "smtp_reply.h"

struct event {
    enum smtp_parse r; /* DONE or BAD */
    size_t end;        /* offset in the stream just past the bytes the call used */
    struct smtp_reply reply;
};

struct events {
    struct event *ev;
    size_t n, cap;
};

static void add_event(struct events *e, enum smtp_parse r, size_t end, const struct smtp_reply *rep)
{
    if (e->n == e->cap) {
        e->cap = e->cap ? 2 * e->cap : 16;
        e->ev = realloc(e->ev, e->cap * sizeof *e->ev);
        FUZZ_REQUIRE(e->ev != NULL, "out of memory");
    }
    struct event *x = &e->ev[e->n++];
    memset(x, 0, sizeof *x);
    x->r = r;
    x->end = end;
    if (rep)
        x->reply = *rep;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* status_ok - "" or C.S.D: class 2, 4 or 5, subject and detail of 1 to 3 digits. */
static bool status_ok(const char *s)
{
    if (!s[0])
        return true;
    if ((s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
        return false;
    s += 2;
    for (int part = 0; part < 2; part++) {
        int d = 0;
        while (is_digit(*s) && d <= 3) {
            s++;
            d++;
        }
        if (d < 1 || d > 3)
            return false;
        if (part == 0 && *s++ != '.')
            return false;
    }
    return *s == '\0';
}

static void check_reply(const struct smtp_reply *r)
{
    size_t n = strnlen(r->text, sizeof r->text);

    FUZZ_REQUIRE(r->code >= 100 && r->code <= 599, "code %u", r->code);
    FUZZ_REQUIRE(r->lines >= 1 && r->lines <= SMTP_REPLY_LINES_MAX, "lines %u", r->lines);
    FUZZ_REQUIRE(n < SMTP_REPLY_TEXT_MAX, "text not terminated");
    for (size_t i = 0; i < n; i++)
        FUZZ_REQUIRE((unsigned char)r->text[i] >= 0x20 && (unsigned char)r->text[i] <= 0x7e,
                     "byte 0x%02x in the text", (unsigned char)r->text[i]);
    FUZZ_REQUIRE(strnlen(r->status, sizeof r->status) < SMTP_STATUS_MAX, "status not terminated");
    FUZZ_REQUIRE(status_ok(r->status), "status \"%s\"", r->status);
}

/* after_bad - a parser that said BAD says it again and uses nothing, until smtp_parser_init. */
static void after_bad(struct smtp_parser *p, const char *rest, size_t left)
{
    size_t used = 99;
    FUZZ_REQUIRE(smtp_parser_feed(p, rest, left, &used, NULL) == SMTP_PARSE_BAD && used == 0,
                 "a failed parser took more");
    FUZZ_REQUIRE(smtp_parser_error(p)[0] != '\0', "BAD without a reason");
    smtp_parser_init(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    struct events whole = {0};
    struct smtp_parser p;
    struct smtp_reply rep;
    size_t off = 0, used, k = 0;

    /* Fed whole: each call gets everything that is left. */
    smtp_parser_init(&p);
    while (off < size) {
        enum smtp_parse r = smtp_parser_feed(&p, buf + off, size - off, &used, &rep);
        FUZZ_REQUIRE(used >= 1 && used <= size - off, "used %zu of %zu", used, size - off);
        off += used;
        if (r == SMTP_PARSE_MORE) {
            FUZZ_REQUIRE(off == size, "MORE with bytes left");
            break;
        }
        if (r == SMTP_PARSE_DONE) {
            FUZZ_REQUIRE(buf[off - 1] == '\n', "DONE not at a line end");
            check_reply(&rep);
            add_event(&whole, r, off, &rep);
        } else {
            FUZZ_REQUIRE(r == SMTP_PARSE_BAD, "result %d", (int)r);
            add_event(&whole, r, off, NULL);
            after_bad(&p, buf + off, size - off);
        }
    }

    /* Fed in pieces, each in a heap block of its own size. */
    struct fuzz_rng rng = fuzz_rng_seed(data, size);
    smtp_parser_init(&p);
    off = 0;
    while (off < size) {
        size_t n = fuzz_piece(&rng, size - off), o = 0;
        char *piece = malloc(n);
        FUZZ_REQUIRE(piece != NULL, "out of memory");
        memcpy(piece, buf + off, n);
        while (o < n) {
            enum smtp_parse r = smtp_parser_feed(&p, piece + o, n - o, &used, &rep);
            FUZZ_REQUIRE(used <= n - o, "used %zu of %zu", used, n - o);
            o += used;
            if (r == SMTP_PARSE_MORE) {
                FUZZ_REQUIRE(o == n, "MORE with bytes left in the piece");
                break;
            }
            FUZZ_REQUIRE(used >= 1, "DONE or BAD without using a byte");
            FUZZ_REQUIRE(k < whole.n, "a reply or failure more than fed whole, at %zu", off + o);
            const struct event *w = &whole.ev[k++];
            FUZZ_REQUIRE(w->r == r && w->end == off + o,
                         "pieces: result %d at %zu, whole: %d at %zu", (int)r, off + o, (int)w->r,
                         w->end);
            if (r == SMTP_PARSE_DONE) {
                FUZZ_REQUIRE(memcmp(&w->reply, &rep, sizeof rep) == 0 ||
                                 (w->reply.code == rep.code && w->reply.lines == rep.lines &&
                                  strcmp(w->reply.text, rep.text) == 0 &&
                                  strcmp(w->reply.status, rep.status) == 0),
                             "pieces gave another reply: \"%s\" vs \"%s\"", rep.text, w->reply.text);
            } else {
                after_bad(&p, piece + o, n - o);
            }
        }
        free(piece);
        off += n;
    }
    FUZZ_REQUIRE(k == whole.n, "pieces gave %zu results, whole %zu", k, whole.n);
    free(whole.ev);
    return 0;
}
