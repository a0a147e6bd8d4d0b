/* policy_proto - parser and renderer of the Postfix policy delegation protocol (see policy_proto.h).
 *
 * The parser is a byte-at-a-time state machine over one line buffer: a byte is checked (binary,
 * line length, request size) before it is stored, so no limit can be passed by more than one
 * byte, however the input is split. A finished line is split at its first '='; the values of the
 * attributes we know are copied into an arena (offsets, not pointers, until the request is
 * complete, because the arena may move while it grows). The arena never holds more than the
 * request's own bytes, so max_request bounds it.
 *
 * Pure: no I/O, no logging, no global state; thread-safe for separate parsers. */
#include "policy_proto.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ATTR(a, name) [a] = {name, sizeof name - 1}
static const struct {
    const char *name;
    size_t len;
} attrs[POLICY_ATTR_COUNT] = {
    ATTR(POLICY_ATTR_REQUEST, "request"),
    ATTR(POLICY_ATTR_PROTOCOL_STATE, "protocol_state"),
    ATTR(POLICY_ATTR_PROTOCOL_NAME, "protocol_name"),
    ATTR(POLICY_ATTR_CLIENT_ADDRESS, "client_address"),
    ATTR(POLICY_ATTR_CLIENT_NAME, "client_name"),
    ATTR(POLICY_ATTR_REVERSE_CLIENT_NAME, "reverse_client_name"),
    ATTR(POLICY_ATTR_HELO_NAME, "helo_name"),
    ATTR(POLICY_ATTR_SENDER, "sender"),
    ATTR(POLICY_ATTR_RECIPIENT, "recipient"),
    ATTR(POLICY_ATTR_QUEUE_ID, "queue_id"),
    ATTR(POLICY_ATTR_INSTANCE, "instance"),
};
#undef ATTR

#define NO_VALUE SIZE_MAX

struct policy_parser {
    struct policy_limits lim;
    char *line;                /* the line being read, without its LF; max_line + 1 bytes (CR) */
    size_t linelen;
    char *arena;               /* values of known attributes, each NUL-terminated */
    size_t arenalen, arenacap;
    size_t off[POLICY_ATTR_COUNT]; /* offset of each value in the arena, or NO_VALUE */
    size_t reqbytes;           /* bytes of the current request so far */
    unsigned lines;            /* complete lines of the current request */
    unsigned nattrs;
    bool done;                 /* req holds a complete request; the next feed starts anew */
    bool failed;
    struct policy_request req;
    enum policy_error err;
    unsigned errline;
    char excerpt[POLICY_EXCERPT_MAX];
    size_t excerptlen;
};

/* policy_attr_name - the wire name of a known attribute. */
const char *policy_attr_name(enum policy_attr a)
{
    return (unsigned)a < POLICY_ATTR_COUNT ? attrs[a].name : "?";
}

/* policy_error_name - the reason word used in log lines. */
const char *policy_error_name(enum policy_error e)
{
    switch (e) {
    case POLICY_ERR_NONE: return "none";
    case POLICY_ERR_LINE_TOO_LONG: return "line_too_long";
    case POLICY_ERR_REQUEST_TOO_BIG: return "request_too_big";
    case POLICY_ERR_TOO_MANY_ATTRS: return "too_many_attributes";
    case POLICY_ERR_NO_EQUALS: return "no_equals_sign";
    case POLICY_ERR_EMPTY_NAME: return "empty_attribute_name";
    case POLICY_ERR_BINARY: return "binary_data";
    case POLICY_ERR_EOF: return "eof_in_request";
    case POLICY_ERR_NOMEM: return "out_of_memory";
    }
    return "?";
}

/* start_request - forgets the previous request (not an error). */
static void start_request(policy_parser *p)
{
    p->linelen = 0;
    p->arenalen = 0;
    p->reqbytes = 0;
    p->lines = 0;
    p->nattrs = 0;
    p->done = false;
    for (int a = 0; a < POLICY_ATTR_COUNT; a++)
        p->off[a] = NO_VALUE;
    memset(&p->req, 0, sizeof p->req);
}

/* policy_parser_create - limits must all be nonzero. */
policy_parser *policy_parser_create(const struct policy_limits *lim)
{
    policy_parser *p;

    if (!lim || lim->max_line == 0 || lim->max_request == 0 || lim->max_attributes == 0 ||
        lim->max_line > SIZE_MAX / 2)
        return NULL;
    p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->lim = *lim;
    /* The line buffer is small (max_line + 1) and always needed: allocate it now. */
    p->line = malloc(lim->max_line + 1);
    if (!p->line) {
        free(p);
        return NULL;
    }
    start_request(p);
    return p;
}

void policy_parser_destroy(policy_parser *p)
{
    if (!p)
        return;
    free(p->line);
    free(p->arena);
    free(p);
}

void policy_parser_reset(policy_parser *p)
{
    start_request(p);
    p->failed = false;
    p->err = POLICY_ERR_NONE;
    p->errline = 0;
    p->excerptlen = 0;
}

/* fail - records the reason and an excerpt of the current line plus extra (the offending byte,
 * when it was not stored). Returns POLICY_BAD. */
static enum policy_status fail(policy_parser *p, enum policy_error e, const char *extra,
                               size_t extralen)
{
    size_t n = p->linelen < POLICY_EXCERPT_MAX ? p->linelen : POLICY_EXCERPT_MAX;

    memcpy(p->excerpt, p->line, n);
    if (extralen > POLICY_EXCERPT_MAX - n)
        extralen = POLICY_EXCERPT_MAX - n;
    if (extralen > 0)
        memcpy(p->excerpt + n, extra, extralen);
    p->excerptlen = n + extralen;
    p->err = e;
    p->errline = p->lines + 1;
    p->failed = true;
    return POLICY_BAD;
}

/* arena_add - appends value and a NUL; returns its offset, or NO_VALUE when out of memory. The
 * arena never needs more than max_request bytes: each line costs at least its value plus '=' and
 * LF, and a value plus its NUL is shorter. */
static size_t arena_add(policy_parser *p, const char *value, size_t len)
{
    size_t need = p->arenalen + len + 1;

    if (need > p->arenacap) {
        size_t cap = p->arenacap ? p->arenacap : 256;
        while (cap < need)
            cap *= 2;
        char *a = realloc(p->arena, cap);
        if (!a)
            return NO_VALUE;
        p->arena = a;
        p->arenacap = cap;
    }
    memcpy(p->arena + p->arenalen, value, len);
    p->arena[p->arenalen + len] = '\0';
    size_t off = p->arenalen;
    p->arenalen = need;
    return off;
}

/* finish_request - makes req point at the arena; the request is complete. */
static void finish_request(policy_parser *p)
{
    for (int a = 0; a < POLICY_ATTR_COUNT; a++)
        p->req.val[a] = p->off[a] == NO_VALUE ? NULL : p->arena + p->off[a];
    p->req.nattrs = p->nattrs;
    p->req.bytes = p->reqbytes;
    p->done = true;
}

/* line_done - a line ended with LF: checks it and stores it. POLICY_REQUEST when it was the
 * empty line that ends a request, POLICY_MORE when it was an attribute, POLICY_BAD on error. */
static enum policy_status line_done(policy_parser *p)
{
    size_t n = p->linelen;
    const char *eq;

    if (n > 0 && p->line[n - 1] == '\r')
        n--;
    if (memchr(p->line, '\r', n))
        return fail(p, POLICY_ERR_BINARY, NULL, 0);
    if (n > p->lim.max_line)
        return fail(p, POLICY_ERR_LINE_TOO_LONG, NULL, 0);
    if (n == 0) {
        p->lines++;
        p->linelen = 0;
        finish_request(p);
        return POLICY_REQUEST;
    }
    if (p->nattrs + 1 > p->lim.max_attributes)
        return fail(p, POLICY_ERR_TOO_MANY_ATTRS, NULL, 0);
    eq = memchr(p->line, '=', n);
    if (!eq)
        return fail(p, POLICY_ERR_NO_EQUALS, NULL, 0);
    if (eq == p->line)
        return fail(p, POLICY_ERR_EMPTY_NAME, NULL, 0);
    size_t namelen = (size_t)(eq - p->line);
    for (int a = 0; a < POLICY_ATTR_COUNT; a++) {
        if (attrs[a].len == namelen && memcmp(attrs[a].name, p->line, namelen) == 0) {
            /* A repeated attribute: the last one wins; the earlier value stays as dead bytes. */
            size_t off = arena_add(p, eq + 1, n - namelen - 1);
            if (off == NO_VALUE)
                return fail(p, POLICY_ERR_NOMEM, NULL, 0);
            p->off[a] = off;
            break;
        }
    }
    p->nattrs++;
    p->lines++;
    p->linelen = 0;
    return POLICY_MORE;
}

/* stop_byte - the bytes that end the scan of a line: LF, and the bytes refused anywhere.
 * Security: NUL would cut a value short, other controls could forge log or reply lines. TAB is
 * harmless; CR is legal only right before LF (checked in line_done). Bytes above 0x7f are
 * allowed: SMTPUTF8 addresses are UTF-8. A table, since every byte of every request passes. */
static const bool stop_byte[256] = {
    [0x00] = 1, [0x01] = 1, [0x02] = 1, [0x03] = 1, [0x04] = 1, [0x05] = 1, [0x06] = 1,
    [0x07] = 1, [0x08] = 1, ['\n'] = 1, [0x0b] = 1, [0x0c] = 1, [0x0e] = 1, [0x0f] = 1,
    [0x10] = 1, [0x11] = 1, [0x12] = 1, [0x13] = 1, [0x14] = 1, [0x15] = 1, [0x16] = 1,
    [0x17] = 1, [0x18] = 1, [0x19] = 1, [0x1a] = 1, [0x1b] = 1, [0x1c] = 1, [0x1d] = 1,
    [0x1e] = 1, [0x1f] = 1, [0x7f] = 1,
};

/* policy_parser_feed - see policy_proto.h. */
enum policy_status policy_parser_feed(policy_parser *p, const char *buf, size_t len, size_t *used)
{
    size_t i = 0;

    *used = 0;
    if (p->failed)
        return POLICY_BAD;
    if (p->done)
        start_request(p);
    while (i < len) {
        /* Every limit is checked, in this order, before a byte is stored or acted on: the
         * request's size, then end of line, then binary bytes, then the line's length. */
        size_t req_room = p->lim.max_request - p->reqbytes;
        if (req_room == 0) {
            *used = i;
            return fail(p, POLICY_ERR_REQUEST_TOO_BIG, NULL, 0);
        }
        /* Room for max_line bytes plus a CR that may precede the LF. */
        size_t line_room = p->lim.max_line + 1 - p->linelen;
        size_t n = len - i < req_room ? len - i : req_room;
        size_t k = 0, stop = n < line_room ? n : line_room;
        unsigned char c = 0;
        while (k < stop && !stop_byte[(unsigned char)buf[i + k]])
            k++;
        if (k < n)
            c = (unsigned char)buf[i + k];
        memcpy(p->line + p->linelen, buf + i, k); /* k <= line_room: it fits */
        p->linelen += k;
        p->reqbytes += k;
        i += k;
        if (k == n)
            continue; /* all taken, or the request's room is used up: checked above */
        if (c == '\n') {
            p->reqbytes++;
            i++;
            enum policy_status st = line_done(p);
            if (st != POLICY_MORE) {
                *used = i;
                return st;
            }
            continue;
        }
        *used = i;
        if (c != '\t' && c != '\r' && (c < 0x20 || c == 0x7f))
            return fail(p, POLICY_ERR_BINARY, (const char *)&buf[i], 1);
        return fail(p, POLICY_ERR_LINE_TOO_LONG, NULL, 0);
    }
    *used = len;
    return POLICY_MORE;
}

bool policy_parser_pending(const policy_parser *p)
{
    return !p->done && p->reqbytes > 0;
}

enum policy_status policy_parser_finish(policy_parser *p)
{
    if (p->failed)
        return POLICY_BAD;
    if (policy_parser_pending(p))
        return fail(p, POLICY_ERR_EOF, NULL, 0);
    return POLICY_MORE;
}

const struct policy_request *policy_parser_request(const policy_parser *p)
{
    return p->done ? &p->req : NULL;
}

enum policy_error policy_parser_error(const policy_parser *p, unsigned *line, const char **excerpt,
                                      size_t *excerpt_len)
{
    if (line)
        *line = p->failed ? p->errline : 0;
    if (excerpt)
        *excerpt = p->excerpt;
    if (excerpt_len)
        *excerpt_len = p->failed ? p->excerptlen : 0;
    return p->failed ? p->err : POLICY_ERR_NONE;
}

/* ---- the question ---- */

void policy_request_to_check(const struct policy_request *req, const char *mx_name,
                             Mxcache__CheckRequest *q)
{
#define V(a) (char *)(req->val[a] ? req->val[a] : "")
    q->client_address = V(POLICY_ATTR_CLIENT_ADDRESS);
    q->client_name = V(POLICY_ATTR_CLIENT_NAME);
    q->helo_name = V(POLICY_ATTR_HELO_NAME);
    q->sender = V(POLICY_ATTR_SENDER);
    q->recipient = V(POLICY_ATTR_RECIPIENT);
    q->protocol_state = V(POLICY_ATTR_PROTOCOL_STATE);
    q->queue_id = V(POLICY_ATTR_QUEUE_ID);
#undef V
    q->mx_name = (char *)(mx_name ? mx_name : "");
    q->explain = 0;
}

bool policy_state_in(const char *state, const char *const *states, size_t n)
{
    if (!state || !*state)
        return false;
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(state, states[i]) == 0)
            return true;
    return false;
}

/* ---- answers ---- */

size_t policy_clean_text(const char *in, size_t max, char *out, size_t outlen)
{
    size_t o = 0;
    bool space = false;

    if (outlen == 0)
        return 0;
    if (max > outlen - 1)
        max = outlen - 1;
    for (; in && *in && o < max; in++) {
        unsigned char c = (unsigned char)*in;
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            space = o > 0; /* leading spaces go; inner runs become one */
            continue;
        }
        if (space) {
            out[o++] = ' ';
            space = false;
            if (o >= max)
                break;
        }
        out[o++] = (c > 0x20 && c < 0x7f) ? (char)c : '?';
    }
    while (o > 0 && out[o - 1] == ' ')
        o--;
    out[o] = '\0';
    return o;
}

/* status_ok - whether s is an enhanced status code of class cls ('4' or '5'): cls.D{1,3}.D{1,3}
 * (RFC 3463). */
static bool status_ok(const char *s, char cls)
{
    if (!s || s[0] != cls || s[1] != '.')
        return false;
    s += 2;
    for (int part = 0; part < 2; part++) {
        int digits = 0;
        while (*s >= '0' && *s <= '9') {
            s++;
            if (++digits > 3)
                return false;
        }
        if (digits == 0)
            return false;
        if (part == 0 && *s++ != '.')
            return false;
    }
    return *s == '\0';
}

/* header_ok - whether h is "Name: value" with a name of printable characters without ':'. */
static bool header_ok(const char *h)
{
    size_t n = 0;

    while (h[n] && h[n] != ':') {
        unsigned char c = (unsigned char)h[n];
        if (c <= 0x20 || c >= 0x7f)
            return false;
        n++;
    }
    return n > 0 && h[n] == ':';
}

/* finish - the snprintf result as an answer length: 0 when it did not fit. */
static size_t finish(int n, size_t outlen)
{
    return (n < 0 || (size_t)n >= outlen) ? 0 : (size_t)n;
}

size_t policy_render_dunno(char *out, size_t outlen)
{
    return finish(snprintf(out, outlen, "action=DUNNO\n\n"), outlen);
}

size_t policy_render_reply(const Mxcache__CheckReply *r, char *out, size_t outlen)
{
    char text[POLICY_TEXT_MAX + 1], hdr[POLICY_PREPEND_MAX + 1];
    const char *status, *deftext;
    unsigned code;

    if (!r)
        return 0;
    switch (r->action) {
    case MXCACHE__ACTION__ACTION_DUNNO:
        /* PREPEND makes no decision either: Postfix goes on as with DUNNO. */
        if (r->prepend && *r->prepend &&
            policy_clean_text(r->prepend, POLICY_PREPEND_MAX, hdr, sizeof hdr) > 0 &&
            header_ok(hdr))
            return finish(snprintf(out, outlen, "action=PREPEND %s\n\n", hdr), outlen);
        return policy_render_dunno(out, outlen);
    case MXCACHE__ACTION__ACTION_DEFER:
        /* Robustness: a temporary answer never becomes a permanent one. */
        code = r->smtp_code >= 400 && r->smtp_code <= 499 ? r->smtp_code : 450;
        break;
    case MXCACHE__ACTION__ACTION_REJECT:
        code = r->smtp_code >= 400 && r->smtp_code <= 599 ? r->smtp_code : 550;
        break;
    default:
        return 0;
    }
    char cls = code >= 500 ? '5' : '4';
    status = status_ok(r->enhanced_status, cls) ? r->enhanced_status
                                                 : (cls == '5' ? "5.7.1" : "4.7.1");
    deftext = cls == '5' ? "Rejected by policy" : "Try again later";
    if (policy_clean_text(r->text, POLICY_TEXT_MAX, text, sizeof text) == 0)
        snprintf(text, sizeof text, "%s", deftext);
    return finish(snprintf(out, outlen, "action=%u %s %s\n\n", code, status, text), outlen);
}

size_t policy_render_fallback(enum policy_fallback fb, const char *text, char *out, size_t outlen)
{
    char clean[POLICY_TEXT_MAX + 1];

    if (fb == POLICY_FALLBACK_DUNNO)
        return policy_render_dunno(out, outlen);
    if (policy_clean_text(text, POLICY_TEXT_MAX, clean, sizeof clean) == 0)
        snprintf(clean, sizeof clean, "Try again later");
    return finish(snprintf(out, outlen, "action=" POLICY_FALLBACK_CODE " " POLICY_FALLBACK_STATUS
                                        " %s\n\n", clean),
                  outlen);
}
