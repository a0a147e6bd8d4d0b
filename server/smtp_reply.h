/* Parser of SMTP replies as a client reads them (RFC 5321 section 4.2): one reply is one or more
 * lines "CODE-text" ending with a line "CODE text" (or a bare "CODE"), all with the same
 * three-digit code; an enhanced status code (RFC 3463, "5.1.1") may start each line's text.
 *
 * The parser is incremental (feed it what the socket gave, in any pieces) and bounded in
 * everything, because the peer is a backend we do not control: a line longer than
 * SMTP_REPLY_LINE_MAX, more than SMTP_REPLY_LINES_MAX lines, codes that change between lines,
 * a line that does not start with a code (three digits, the first 1 to 5, then ' ', '-' or the
 * line's end), NUL or other control bytes (but TAB, and CR just before LF) in it: the reply is
 * malformed (SMTP_PARSE_BAD), which the prober treats as a temporary failure, never as an
 * answer. LF without CR ends a line as CRLF does (some servers send it). The second and third
 * digits of a code are not checked further.
 *
 * The reply's text is kept cleaned, so that it can be passed on word for word in a policy
 * answer: the texts of all lines joined with one space (a line with no text adds nothing), the
 * first line's enhanced status code removed from every line that repeats it (with the blanks
 * after it), cut at SMTP_REPLY_TEXT_MAX - 1 bytes, a TAB made a space and every byte above 0x7e
 * (DEL and 8-bit bytes) made '?', so that it can go into a policy answer and a log line as it is.
 * A status is "C.S.D": class 2, 4 or 5, subject and detail 1 to 3 digits, ending the text or
 * followed by a blank; anything else ("6.1.1", "5.1", "5.1.1x") stays in the text.
 *
 * Thread-safety: a parser is used by one thread; there is no global state. */
#ifndef MXCACHED_SMTP_REPLY_H
#define MXCACHED_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>

#define SMTP_REPLY_LINE_MAX 1000  /* bytes of one line with its CRLF; RFC 5321 says 512 */
#define SMTP_REPLY_LINES_MAX 100  /* lines of one reply (an EHLO reply has a dozen) */
#define SMTP_REPLY_TEXT_MAX 512   /* bytes of the kept text, with its NUL */
#define SMTP_STATUS_MAX 16        /* "5.1.1" and the like, with the NUL: class.subject.detail,
                                     subject and detail up to 3 digits */

struct smtp_reply {
    unsigned code;                   /* 100 to 599 */
    char status[SMTP_STATUS_MAX];    /* enhanced status code of the first line, "" if none */
    char text[SMTP_REPLY_TEXT_MAX];  /* cleaned text (see above), "" if none */
    unsigned lines;                  /* lines the reply had */
};

enum smtp_parse {
    SMTP_PARSE_MORE, /* the reply is not complete: feed more */
    SMTP_PARSE_DONE, /* *out holds a complete reply */
    SMTP_PARSE_BAD,  /* malformed; the reason is in the parser (smtp_parser_error) */
};

/* The parser's state; embed it, initialise with smtp_parser_init. Opaque in use. */
struct smtp_parser {
    char line[SMTP_REPLY_LINE_MAX];
    size_t linelen;
    struct smtp_reply cur;
    size_t textlen;
    bool failed;
    char error[128];
};

/* smtp_parser_init - ready for the first byte of a reply: before the first, or to start over
 * after BAD or on a new connection (not needed after DONE). */
void smtp_parser_init(struct smtp_parser *p);

/* smtp_parser_feed - consumes bytes of buf (len) up to the end of the first reply they complete,
 * and tells how many in *used (the rest belongs to the next reply: a pipelining server, or
 * garbage). DONE: *out is the reply (*used counts up to and including its last LF), and the
 * parser is ready for the next one. MORE: all len bytes were used. BAD: *used counts up to and
 * including the byte found wrong, and later calls say BAD (*used 0) until smtp_parser_init. Reads
 * only buf[0..len), never blocks; used and out may be NULL when the caller does not need them. */
enum smtp_parse smtp_parser_feed(struct smtp_parser *p, const char *buf, size_t len, size_t *used,
                                 struct smtp_reply *out);

/* smtp_parser_error - why the parser said BAD, for logs ("" otherwise). */
const char *smtp_parser_error(const struct smtp_parser *p);

/* smtp_reply_class - 2, 4 or 5 (the first digit of the code), the others as they are. */
static inline unsigned smtp_reply_class(const struct smtp_reply *r)
{
    return r->code / 100;
}

#endif
