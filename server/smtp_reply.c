/* smtp_reply - incremental, bounded parser of the SMTP replies a backend sends to the prober (see
 * smtp_reply.h).
 *
 * Owns nothing but the caller's struct smtp_parser: no allocation, no I/O, no global state. Trusts
 * nothing in the bytes: each byte is checked as it arrives (control bytes, the reply code's
 * position, the line's length), so a hostile or broken peer is refused at the first byte that
 * cannot belong to a valid reply, and a complete line is only ever held within p->line. */
#include "smtp_reply.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define CODE_DIGITS 3          /* "250" */
#define TEXT_START (CODE_DIGITS + 1) /* the text follows "250-" or "250 " */
#define STATUS_PART_DIGITS 3   /* RFC 3463: subject and detail are 1 to 3 digits */

/* ---- errors ---- */

/* fail - makes the parser BAD with a reason for logs; the reason never quotes the peer's bytes
 * (they may be anything), only numbers. */
__attribute__((format(printf, 2, 3))) static enum smtp_parse fail(struct smtp_parser *p,
                                                                  const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(p->error, sizeof p->error, fmt, ap);
    va_end(ap);
    p->failed = true;
    return SMTP_PARSE_BAD;
}

/* ---- enhanced status codes ---- */

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* digits_len - length of the run of 1 to STATUS_PART_DIGITS digits at s (n bytes), 0 if there is
 * none or it is longer. */
static size_t digits_len(const char *s, size_t n)
{
    size_t i = 0;

    while (i < n && is_digit((unsigned char)s[i]))
        i++;
    return i > STATUS_PART_DIGITS ? 0 : i;
}

/* status_len - length of the enhanced status code ("5.1.1", RFC 3463 / RFC 2034) that starts the
 * text s (n bytes), 0 if the text does not start with one. It must end the text or be followed
 * by a space or TAB: "5.1.1x" or "5.1.1000" is text.
 * XXX the class is not matched against the reply code ("250 5.1.1" keeps 5.1.1), as RFC 3463
 * asks; the prober decides on the reply code alone, and the status only goes into texts. */
static size_t status_len(const char *s, size_t n)
{
    size_t i, d;

    if (n < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
        return 0;
    i = 2;
    if (!(d = digits_len(s + i, n - i)))
        return 0;
    i += d;
    if (i >= n || s[i] != '.')
        return 0;
    i++;
    if (!(d = digits_len(s + i, n - i)))
        return 0;
    i += d;
    if (i < n && s[i] != ' ' && s[i] != '\t')
        return 0;
    return i;
}

/* skip_blanks - how many spaces and TABs start s (n bytes). */
static size_t skip_blanks(const char *s, size_t n)
{
    size_t i = 0;

    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    return i;
}

/* ---- the kept text ---- */

/* text_append - adds one line's text to the reply's, cleaned. A line with no text adds nothing,
 * not even the joining space, so that "250-" lines leave no double spaces. */
static void text_append(struct smtp_parser *p, const char *s, size_t n)
{
    const size_t cap = SMTP_REPLY_TEXT_MAX - 1; /* room for the NUL */
    char *t = p->cur.text;

    if (n == 0)
        return;
    if (p->textlen > 0) {
        /* A joining space is only worth its byte if something can follow it. */
        if (p->textlen + 1 >= cap)
            return;
        t[p->textlen++] = ' ';
    }
    for (size_t i = 0; i < n && p->textlen < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        /* Security: the text goes into policy answers and log lines as it is. Control bytes
         * other than TAB never get here (the line was refused). */
        t[p->textlen++] = c == '\t' ? ' ' : c > 0x7e ? '?' : (char)c;
    }
    t[p->textlen] = '\0';
}

/* ---- lines ---- */

/* reply_reset - ready for the first line of the next reply; the error stays "". */
static void reply_reset(struct smtp_parser *p)
{
    memset(&p->cur, 0, sizeof p->cur);
    p->textlen = 0;
    p->linelen = 0;
}

/* line_end - a line ended (its LF seen): checks it against the reply so far and keeps its text.
 * MORE when the reply goes on, DONE when this was its last line, BAD. The code's digits and the
 * byte after them were checked as they arrived; only a line too short for a code is left. */
static enum smtp_parse line_end(struct smtp_parser *p)
{
    size_t n = p->linelen;
    const char *s = p->line;
    unsigned code;
    bool last;

    if (n > 0 && s[n - 1] == '\r')
        n--;
    p->linelen = 0;
    if (n < CODE_DIGITS)
        return fail(p, "line %u: no reply code", p->cur.lines + 1);
    code = (unsigned)(s[0] - '0') * 100 + (unsigned)(s[1] - '0') * 10 + (unsigned)(s[2] - '0');
    last = n == CODE_DIGITS || s[CODE_DIGITS] == ' ';
    if (p->cur.lines == 0)
        p->cur.code = code;
    else if (code != p->cur.code)
        return fail(p, "line %u: reply code %u after %u", p->cur.lines + 1, code, p->cur.code);
    p->cur.lines++;

    s += n > CODE_DIGITS ? TEXT_START : n;
    n -= n > CODE_DIGITS ? TEXT_START : n;
    if (p->cur.lines == 1) {
        size_t st = status_len(s, n);
        if (st) {
            memcpy(p->cur.status, s, st);
            p->cur.status[st] = '\0';
            st += skip_blanks(s + st, n - st);
            s += st;
            n -= st;
        }
    } else if (p->cur.status[0]) {
        /* Only the first line's status is removed again: another one is news worth keeping. */
        size_t st = status_len(s, n);
        if (st && st == strlen(p->cur.status) && memcmp(s, p->cur.status, st) == 0) {
            st += skip_blanks(s + st, n - st);
            s += st;
            n -= st;
        }
    }
    text_append(p, s, n);

    if (last)
        return SMTP_PARSE_DONE;
    /* Robustness: refused as soon as the reply cannot end within the limit. */
    if (p->cur.lines >= SMTP_REPLY_LINES_MAX)
        return fail(p, "more than %d lines", SMTP_REPLY_LINES_MAX);
    return SMTP_PARSE_MORE;
}

/* line_byte - takes one byte of a line that is not its LF: MORE or BAD. */
static enum smtp_parse line_byte(struct smtp_parser *p, unsigned char c)
{
    size_t at = p->linelen;
    unsigned line = p->cur.lines + 1;

    if (at > 0 && p->line[at - 1] == '\r')
        return fail(p, "line %u: CR not followed by LF", line);
    if (c < 0x20 && c != '\t' && c != '\r')
        return fail(p, "line %u: control byte 0x%02x", line, c);
    if (c != '\r') {
        if (at < CODE_DIGITS && !is_digit(c))
            return fail(p, "line %u: no reply code", line);
        if (at == 0 && (c < '1' || c > '5'))
            return fail(p, "line %u: reply code starts with %c", line, c);
        if (at == CODE_DIGITS && c != ' ' && c != '-')
            return fail(p, "line %u: no ' ' or '-' after the reply code", line);
    }
    /* Robustness: this byte and the LF still to come must fit in SMTP_REPLY_LINE_MAX. */
    if (at + 1 >= SMTP_REPLY_LINE_MAX)
        return fail(p, "line %u: longer than %d bytes", line, SMTP_REPLY_LINE_MAX);
    p->line[p->linelen++] = (char)c;
    return SMTP_PARSE_MORE;
}

/* ---- interface ---- */

void smtp_parser_init(struct smtp_parser *p)
{
    memset(p, 0, sizeof *p);
}

enum smtp_parse smtp_parser_feed(struct smtp_parser *p, const char *buf, size_t len, size_t *used,
                                 struct smtp_reply *out)
{
    size_t i = 0;
    enum smtp_parse r = SMTP_PARSE_MORE;

    if (p->failed) {
        if (used)
            *used = 0;
        return SMTP_PARSE_BAD;
    }
    while (i < len && r == SMTP_PARSE_MORE) {
        unsigned char c = (unsigned char)buf[i++];
        r = c == '\n' ? line_end(p) : line_byte(p, c);
    }
    if (r == SMTP_PARSE_DONE) {
        if (out)
            *out = p->cur;
        reply_reset(p);
    }
    if (used)
        *used = i;
    return r;
}

const char *smtp_parser_error(const struct smtp_parser *p)
{
    return p->failed ? p->error : "";
}
