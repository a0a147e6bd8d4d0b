/* policy_proto - the Postfix policy delegation protocol (SMTPD_POLICY_README), without I/O.
 *
 * A request is a series of "name=value" lines ended by an empty line; the answer is one
 * "action=..." line plus an empty line. The parser is fed bytes exactly as they came from the
 * socket, in pieces of any size, and yields one complete request at a time; it touches no socket,
 * allocates only its own bounded buffers, and never logs. The renderer turns a CheckReply from
 * mxcached (or a fallback) into the answer text.
 *
 * Owns: the parser's line buffer and value arena. Trusts: nothing in the bytes it is fed (every
 * line, request and count is bounded before it is stored); the CheckReply only as far as the
 * protocol enums go (its texts are cleaned before they are written).
 *
 * DIAGNOSTICS: a bad request makes the parser return POLICY_BAD with a reason code, the line
 * number and an excerpt of the offending bytes (raw: the caller escapes them for its log). */
#ifndef MXCACHE_POLICY_PROTO_H
#define MXCACHE_POLICY_PROTO_H

#include <stdbool.h>
#include <stddef.h>

#include "mxcache.pb-c.h"

/* Limits, bytes unless stated. The parser's own limits come from struct policy_limits. */
#define POLICY_EXCERPT_MAX 64     /* raw bytes of an offending line kept for the log */
#define POLICY_TEXT_MAX 400       /* SMTP reply text in an answer, after cleaning */
#define POLICY_PREPEND_MAX 900    /* header line of a PREPEND answer, after cleaning */
#define POLICY_STATUS_MAX 16      /* enhanced status code ("4.7.1" is 5) */
#define POLICY_ANSWER_MAX 1024    /* a whole answer, "action=" to the empty line; fits the above */

/* The attributes the hook reads; every other attribute is accepted and ignored. */
enum policy_attr {
    POLICY_ATTR_REQUEST,          /* smtpd_access_policy */
    POLICY_ATTR_PROTOCOL_STATE,   /* CONNECT, EHLO, HELO, MAIL, RCPT, DATA, END-OF-MESSAGE, ... */
    POLICY_ATTR_PROTOCOL_NAME,    /* SMTP, ESMTP */
    POLICY_ATTR_CLIENT_ADDRESS,
    POLICY_ATTR_CLIENT_NAME,      /* forward-confirmed, or "unknown" */
    POLICY_ATTR_REVERSE_CLIENT_NAME,
    POLICY_ATTR_HELO_NAME,
    POLICY_ATTR_SENDER,           /* empty for the null sender */
    POLICY_ATTR_RECIPIENT,
    POLICY_ATTR_QUEUE_ID,
    POLICY_ATTR_INSTANCE,
    POLICY_ATTR_COUNT
};

/* policy_attr_name - the attribute's name on the wire ("client_address"); never NULL. */
const char *policy_attr_name(enum policy_attr a);

struct policy_limits {
    size_t max_line;          /* bytes of one line without its LF or CRLF */
    size_t max_request;       /* bytes of one request, every line with its line end */
    unsigned max_attributes;  /* lines of one request, the empty line not counted */
};

/* One parsed request. val[a] is NULL when the attribute was absent (an empty value is ""); the
 * strings belong to the parser and stay valid until its next feed or reset. When an attribute
 * appears twice, the last one wins. */
struct policy_request {
    const char *val[POLICY_ATTR_COUNT];
    unsigned nattrs;          /* attribute lines, known or not */
    size_t bytes;             /* bytes of the request, its empty line included */
};

/* Why a request was refused. */
enum policy_error {
    POLICY_ERR_NONE,
    POLICY_ERR_LINE_TOO_LONG,   /* a line longer than max_line */
    POLICY_ERR_REQUEST_TOO_BIG, /* more than max_request bytes before the empty line */
    POLICY_ERR_TOO_MANY_ATTRS,  /* more than max_attributes lines */
    POLICY_ERR_NO_EQUALS,       /* a line without '=' */
    POLICY_ERR_EMPTY_NAME,      /* a line starting with '=' */
    POLICY_ERR_BINARY,          /* NUL, a control byte other than TAB, DEL, or a CR inside a line */
    POLICY_ERR_EOF,             /* the stream ended inside a request */
    POLICY_ERR_NOMEM,
};

/* policy_error_name - "line_too_long", "request_too_big", ...; never NULL. */
const char *policy_error_name(enum policy_error e);

/* Results of policy_parser_feed. */
enum policy_status {
    POLICY_MORE = 0,     /* every byte taken, the request is not complete yet */
    POLICY_REQUEST = 1,  /* a request is complete: policy_parser_request() */
    POLICY_BAD = -1,     /* the input is not acceptable: policy_parser_error() */
};

typedef struct policy_parser policy_parser;

/* policy_parser_create - a parser with the given limits (copied; every limit must be > 0).
 * NULL when out of memory or on a zero limit. Allocates at most about max_line + max_request
 * bytes, lazily. */
policy_parser *policy_parser_create(const struct policy_limits *lim);

/* policy_parser_destroy - NULL-safe. */
void policy_parser_destroy(policy_parser *p);

/* policy_parser_feed - takes bytes from buf (len of them, any split) and stops after the empty
 * line of the first complete request. *used gets the bytes taken: all of len with POLICY_MORE;
 * up to and including the request's empty line with POLICY_REQUEST (the rest belongs to later
 * requests: feed it again); with POLICY_BAD, up to the offending byte. After POLICY_BAD the parser
 * stays failed (every feed returns POLICY_BAD) until policy_parser_reset. Never blocks. */
enum policy_status policy_parser_feed(policy_parser *p, const char *buf, size_t len, size_t *used);

/* policy_parser_finish - the stream ended: POLICY_MORE when no partial request is pending (a clean
 * end), else POLICY_BAD with POLICY_ERR_EOF. */
enum policy_status policy_parser_finish(policy_parser *p);

/* policy_parser_pending - whether part of a request has been fed but not completed. */
bool policy_parser_pending(const policy_parser *p);

/* policy_parser_request - the request completed by the last feed (NULL if it did not complete
 * one); borrowed, valid until the next feed or reset. */
const struct policy_request *policy_parser_request(const policy_parser *p);

/* policy_parser_error - the reason of the last POLICY_BAD (POLICY_ERR_NONE if none); *line gets
 * the 1-based line number inside the request, *excerpt and *excerpt_len the first bytes
 * (at most POLICY_EXCERPT_MAX, raw, unescaped) of the offending line. Pointers may be NULL. */
enum policy_error policy_parser_error(const policy_parser *p, unsigned *line, const char **excerpt,
                                      size_t *excerpt_len);

/* policy_parser_reset - forgets any partial request and any error. */
void policy_parser_reset(policy_parser *p);

/* ---- building the question ---- */

/* policy_request_to_check - fills q (initialised by the caller with MXCACHE__CHECK_REQUEST__INIT)
 * from the request's attributes; absent attributes become "". mx_name is borrowed. The strings in
 * q are borrowed from req and mx_name: q is valid as long as both are. */
void policy_request_to_check(const struct policy_request *req, const char *mx_name,
                             Mxcache__CheckRequest *q);

/* policy_state_in - whether state (NULL: absent) is one of the n names (case-insensitive). */
bool policy_state_in(const char *state, const char *const *states, size_t n);

/* ---- answers ---- */

/* policy_clean_text - copies in into out (outlen bytes, NUL-terminated) as one line: CR, LF and
 * TAB become spaces, other bytes outside printable ASCII become '?', leading and trailing spaces
 * go, runs of spaces shrink to one, and at most max characters are kept. Returns the length.
 * Security: service texts and configured texts go into a line-based protocol. */
size_t policy_clean_text(const char *in, size_t max, char *out, size_t outlen);

/* policy_render_dunno - "action=DUNNO\n\n" into out; returns its length, 0 if outlen is too small. */
size_t policy_render_dunno(char *out, size_t outlen);

/* policy_render_reply - the answer for the service's decision, word for word:
 *   DUNNO    "action=DUNNO", or "action=PREPEND <header>" when r->prepend is a valid header line
 *            ("Name: value"; an invalid one is dropped);
 *   DEFER    "action=<code> <status> <text>"; the code must be 4xx (else 450) and the status of
 *            class 4 (else 4.7.1): a temporary answer never becomes a permanent one;
 *   REJECT   "action=<code> <status> <text>"; a 4xx or 5xx code (else 550), a status of the
 *            code's class (else 4.7.1 or 5.7.1).
 * An empty text is replaced by a generic one. Returns the length, or 0 when the reply carries no
 * usable action (ACTION_UNSPECIFIED): the caller answers its fallback instead. */
size_t policy_render_reply(const Mxcache__CheckReply *r, char *out, size_t outlen);

/* What to answer when the service cannot. */
enum policy_fallback { POLICY_FALLBACK_DEFER, POLICY_FALLBACK_DUNNO };
#define POLICY_FALLBACK_CODE "451"
#define POLICY_FALLBACK_STATUS "4.3.0"

/* policy_render_fallback - "action=451 4.3.0 <text>" (text cleaned) or "action=DUNNO". */
size_t policy_render_fallback(enum policy_fallback fb, const char *text, char *out, size_t outlen);

#endif
