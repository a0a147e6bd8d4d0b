/* mxtest-smtpd - a scriptable SMTP server for tests: the real backend (not a mock) that the
 * probe engine of mxcached (server/probe.h) and the end-to-end tests talk to over loopback TCP.
 * A script says, per command and per recipient, what to answer and how (late, never, endlessly,
 * too long); SIGHUP re-reads it. One thread, poll() over non-blocking sockets; every buffer,
 * count and wait is bounded. Self-contained: it links no project library.
 *
 * SECURITY: listens on one loopback address only (127.0.0.0/8 or ::1; anything else is refused
 * at startup). Every byte from a connection is hostile: command lines are capped, logged escaped,
 * and a bad connection is closed, never the process. Output is produced only as fast as the peer
 * reads it. The script is the test's own file, checked strictly. Needs no privileges. */

/*
 * USAGE
 *   mxtest-smtpd --listen 127.0.0.1:PORT [--script FILE] [--log FILE] [--port-file FILE]
 *   --listen ADDR:PORT   127.0.0.0/8 or [::1]; PORT 0 picks a free port. The port is printed on
 *                        stdout as "port=N" (stdout flushed) and, with --port-file, written as
 *                        "N\n" to a temporary name renamed onto FILE (never seen half-written).
 *   --script FILE        the behaviour (below); without it, every default applies.
 *   --log FILE           events, appended (default: stderr).
 *   SIGTERM, SIGINT: every connection is closed (reason=shutdown) and the process exits 0.
 *   SIGHUP: re-reads the script; on an error the old script stays and the error is logged.
 *   Exit status: 0 after SIGTERM/SIGINT, 1 on a system error (bind, log file), 2 on a bad
 *   command line or script (the message on stderr, with FILE:LINE for the script).
 *
 * SCRIPT LANGUAGE (the reference for test writers)
 *   One directive per line. Blank lines and lines whose first non-blank character is '#' are
 *   ignored ('#' elsewhere is text: a reply may contain it). Directive names and behaviour
 *   keywords are case-insensitive. Each directive may appear once (rcpt: once per ADDRESS);
 *   anything malformed is an error "FILE:LINE: what" (exit 2 at start, "reload error=" on HUP).
 *
 *   greeting BEHAVIOUR       on connect               [220 mxtest.test ESMTP]
 *   ehlo BEHAVIOUR           EHLO                     [250-mxtest.test, 250-PIPELINING,
 *                                                      250-ENHANCEDSTATUSCODES, 250 8BITMIME]
 *       A reply given here replaces the whole EHLO answer: "ehlo 502 5.5.1 Command not
 *       implemented" makes a client fall back to HELO.
 *   helo BEHAVIOUR           HELO                     [250 mxtest.test]
 *   mail BEHAVIOUR           MAIL FROM:               [250 2.1.0 Ok]
 *   rcpt ADDRESS BEHAVIOUR   RCPT TO: of ADDRESS, compared case-insensitively ("<a@b>" is the
 *                            same as "a@b"); ADDRESS "*" is every recipient without a rule
 *                            [rcpt * 550 5.1.1 <ADDR>: Recipient address rejected: User unknown
 *                             in local recipient table]
 *   rset BEHAVIOUR           RSET                     [250 2.0.0 Ok]
 *   quit BEHAVIOUR           QUIT; the connection is closed (reason=quit) once the answer is
 *                            sent, whatever it is     [221 2.0.0 Bye]
 *
 *   BEHAVIOUR is one of:
 *   CODE text            a reply line, sent with CRLF. CODE is any three digits (a bad code
 *                        such as "699" is allowed, to test a client's parser), then nothing or
 *                        a space and text; at most REPLY_MAX (512) bytes in all, no control
 *                        byte but TAB. In a rcpt reply the token <ADDR> (angle brackets
 *                        included) is replaced by the recipient address as received, without
 *                        its angle brackets: "RCPT TO:<Bob@x.test>" and "550 <ADDR> unknown"
 *                        give "550 Bob@x.test unknown", and the default rcpt * answer gives
 *                        "550 5.1.1 Bob@x.test: Recipient address rejected: ..."; write
 *                        "<<ADDR>>" to keep brackets. The address is what is inside <...>
 *                        after TO:, or else the word after TO:; its bytes outside printable
 *                        ASCII become '?'.
 *   stall                never answer; nothing more is read; the connection stays open until
 *                        the client closes it (reason=peer) or the server stops.
 *   drop                 close the connection without answering this command (reason=drop);
 *                        replies already queued for earlier commands are sent first.
 *   slow MS REPLY        answer REPLY (a "CODE text" line) after MS milliseconds (0 to
 *                        86400000), without holding up other connections.
 *   multiline N REPLY    N lines (1 to 100000): N-1 lines "CODE-text", then "CODE text".
 *   endless              "250-x" lines forever, 4 per millisecond (ENDLESS_LINES_PER_TICK), no
 *                        faster than the client reads; nothing more is read; ends when the client
 *                        closes (reason=peer) or the server stops.
 *   overlong N           one line of N bytes (4 to 16777216), CRLF not counted:
 *                        "250 " then 'x' up to N bytes; produced as the client reads it.
 *
 *   Whether a command changes the session's state depends on its answer: HELO/EHLO open the
 *   session, MAIL a transaction and RSET ends it only when the answer's code is 2xx (overlong
 *   counts as 250; stall, drop and endless count as no answer). EHLO and HELO also end a
 *   transaction. Answers that are not scripted:
 *     NOOP                                    250 2.0.0 Ok
 *     EHLO / HELO without a name              501 5.5.4 Syntax: EHLO hostname (HELO hostname)
 *     MAIL before a 2xx HELO/EHLO             503 5.5.1 Error: send HELO/EHLO first
 *     MAIL inside a transaction               503 5.5.1 Error: nested MAIL command
 *     MAIL without FROM:                      501 5.5.4 Syntax: MAIL FROM:<address>
 *     RCPT outside a transaction              503 5.5.1 Error: need MAIL command
 *     RCPT without TO:, or with "<" unclosed  501 5.5.4 Syntax: RCPT TO:<address>
 *     DATA, VRFY, anything else, a NUL byte   502 5.5.1 Command not implemented
 *     a line over 1000 bytes (CMD_LINE_MAX;   500 5.5.2 Line too long, and the connection is
 *       its CR LF not counted)                closed (reason=overlong)
 *   Commands are case-insensitive and end with LF (CR before it removed). Pipelined commands
 *   are answered in order: a command waits while an earlier answer is slow or still being
 *   produced. A partial line at the client's EOF is ignored.
 *
 * LOG (one line per event, flushed after each; tests count them)
 *   listen ADDR:PORT
 *   conn=N open peer=127.0.0.1:PORT          N counts connections from 1 ([::1]:PORT for v6)
 *   conn=N cmd=LINE                          the line as received without its CR LF, each byte
 *                                            outside printable ASCII and '\' as \xHH (lowercase)
 *   conn=N close reason=quit|peer|drop|error|overlong|shutdown
 *   refuse peer=ADDR:PORT reason=limit|nomem CONN_MAX (1024) connections are open, closing
 *                                            ones included (the peer got a 421 and no conn
 *                                            number), or no memory for one more
 *   reload ok | reload error=FILE:LINE: what
 *   stop                                     on SIGTERM/SIGINT, after the close lines
 *   A close line is written when the server decides to close, before the client sees EOF:
 *   queued answers are sent, then the write side is shut down, and the socket is drained for
 *   at most LINGER_MS (2 s) so that the client reads every answer rather than a reset.
 *
 * BUGS: no DATA, no TLS, no AUTH; a 421 reply does not close the connection (script quit or drop
 * for that). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE 2                /* bad command line or script */
#define CONN_MAX 1024               /* connections open at once, closing ones included */
#define CMD_LINE_MAX 1000           /* bytes of a command line, its CR LF not counted */
#define IN_BUF_SIZE (CMD_LINE_MAX + 2) /* a full line with CR LF */
#define REPLY_MAX 512               /* bytes of a scripted "CODE text", CRLF not counted */
#define RENDER_MAX 4096             /* bytes of one answer with <ADDR> replaced, with its CRLF */
#define OUT_BUF_SIZE 16384          /* bytes queued for one connection (>= 2 * RENDER_MAX) */
#define ADDRESS_MAX 512             /* bytes of a rcpt ADDRESS in the script */
#define SCRIPT_LINE_MAX 2048        /* bytes of a script line */
#define SCRIPT_RCPT_MAX 4096        /* rcpt directives in a script */
#define SLOW_MS_MAX 86400000u       /* slow: at most one day, in milliseconds */
#define MULTILINE_MAX 100000u       /* multiline: lines of one answer */
#define OVERLONG_MIN 4u             /* overlong: bytes of the line ("250 "), CRLF not counted */
#define OVERLONG_MAX 16777216u
#define ENDLESS_LINE "250-x\r\n"
#define ENDLESS_LINES_PER_TICK 4    /* endless: "a few per millisecond" */
#define ENDLESS_TICK_MS 1
#define LINGER_MS 2000              /* a closing connection: to flush and see the peer's close */
#define ACCEPT_BATCH 64             /* accept() calls per loop round */
#define ACCEPT_PAUSE_MS 100         /* listener rest after EMFILE/ENFILE */
#define FD_RESERVE 16               /* descriptors besides connections: listener, pipe, log */
#define LISTEN_BACKLOG 1024
#define LOG_LINE_MAX (CMD_LINE_MAX * 4 + 256) /* a cmd line fully escaped fits */
#define ERR_MAX 512                 /* bytes of an error message */
#define PEER_MAX 64                 /* "[v6]:port" with its NUL */

#define STR_LEN(s) (sizeof(s) - 1)

/* ---- script ---------------------------------------------------------------------------- */

enum bkind { B_REPLY, B_STALL, B_DROP, B_SLOW, B_MULTILINE, B_ENDLESS, B_OVERLONG };

/* One behaviour. text is "CODE text" without CRLF (lines inside joined by CRLF for the
 * built-in EHLO answer) for B_REPLY, B_SLOW and B_MULTILINE, NULL otherwise; owned. */
struct behaviour {
    enum bkind kind;
    unsigned code;  /* the answer's code (250 for overlong), 0 when there is none */
    unsigned n;     /* slow: ms; multiline: lines; overlong: bytes */
    char *text;
};

struct rcpt_rule {
    char *address;  /* without angle brackets; owned */
    struct behaviour b;
    unsigned line;
};

/* The behaviours of one script; replaced as a whole on reload, never referenced by a
 * connection after the command that used it (answers are copied into the connection). */
struct script {
    struct behaviour greeting, ehlo, helo, mail, rset, quit, rcpt_any;
    struct rcpt_rule *rcpt;
    size_t nrcpt;
};

static const struct directive {
    const char *name;
    size_t offset;
    const char *dflt;  /* NULL: built apart (ehlo) */
} directives[] = {
    {"greeting", offsetof(struct script, greeting), "220 mxtest.test ESMTP"},
    {"ehlo", offsetof(struct script, ehlo), NULL},
    {"helo", offsetof(struct script, helo), "250 mxtest.test"},
    {"mail", offsetof(struct script, mail), "250 2.1.0 Ok"},
    {"rset", offsetof(struct script, rset), "250 2.0.0 Ok"},
    {"quit", offsetof(struct script, quit), "221 2.0.0 Bye"},
    {"rcpt", offsetof(struct script, rcpt_any),
     "550 5.1.1 <ADDR>: Recipient address rejected: User unknown in local recipient table"},
};
#define DIRECTIVES (sizeof(directives) / sizeof(directives[0]))
#define EHLO_DEFAULT "250-mxtest.test\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME"

/* err_set - formats an error message into err (errlen bytes); returns -1. */
static int err_set(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int err_set(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* shown - s cut to 40 bytes with control bytes as '?', for echoing script text in messages. */
static const char *shown(const char *s, char *buf, size_t buflen)
{
    size_t o = 0;

    for (; *s && o + 4 < buflen && o < 40; s++)
        buf[o++] = (unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s;
    if (*s && o + 4 < buflen) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
    return buf;
}

/* behaviour_fini - releases what b owns; b may be zeroed or already released. */
static void behaviour_fini(struct behaviour *b)
{
    free(b->text);
    b->text = NULL;
}

/* script_free - releases s and everything in it. NULL-safe. */
static void script_free(struct script *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < DIRECTIVES; i++)
        behaviour_fini((struct behaviour *)((char *)s + directives[i].offset));
    for (size_t i = 0; i < s->nrcpt; i++) {
        free(s->rcpt[i].address);
        behaviour_fini(&s->rcpt[i].b);
    }
    free(s->rcpt);
    free(s);
}

/* next_word - the next blank-separated word of *p (NUL-terminated in place, *p moved past it
 * and the blanks after it), or NULL at the end. */
static char *next_word(char **p)
{
    char *s = *p, *w;

    while (*s == ' ' || *s == '\t')
        s++;
    if (!*s)
        return NULL;
    w = s;
    while (*s && *s != ' ' && *s != '\t')
        s++;
    if (*s)
        *s++ = '\0';
    while (*s == ' ' || *s == '\t')
        s++;
    *p = s;
    return w;
}

/* number_parse - w as a decimal in [min, max] into *out; 0, or -1 with a message naming what. */
static int number_parse(const char *w, const char *what, unsigned min, unsigned max,
                        unsigned *out, char *err, size_t errlen)
{
    unsigned long long v = 0;
    char buf[64];

    if (!w)
        return err_set(err, errlen, "%s: missing number", what);
    for (const char *p = w; *p; p++) {
        if (*p < '0' || *p > '9')
            return err_set(err, errlen, "%s: not a number: '%s'", what, shown(w, buf, sizeof buf));
        if (v <= UINT32_MAX)
            v = v * 10 + (unsigned)(*p - '0');
    }
    if (!*w || v < min || v > max)
        return err_set(err, errlen, "%s: '%s' is out of range %u to %u", what,
                       shown(w, buf, sizeof buf), min, max);
    *out = (unsigned)v;
    return 0;
}

/* reply_parse - checks that s is "CODE" or "CODE text" (three digits, at most REPLY_MAX bytes,
 * no control byte but TAB) and stores a copy in b->text, its code in b->code. 0 or -1. */
static int reply_parse(const char *s, struct behaviour *b, char *err, size_t errlen)
{
    size_t len = strlen(s);
    char buf[64];

    if (len < 3 || s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9' || s[2] < '0' ||
        s[2] > '9' || (s[3] != '\0' && s[3] != ' '))
        return err_set(err, errlen,
                       "bad reply '%s': expected a three-digit code, then a space and text",
                       shown(s, buf, sizeof buf));
    if (len > REPLY_MAX)
        return err_set(err, errlen, "reply longer than %d bytes", REPLY_MAX);
    for (const char *p = s; *p; p++)
        if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f)
            return err_set(err, errlen, "control byte 0x%02x in reply", (unsigned char)*p);
    b->text = strdup(s);
    if (!b->text)
        return err_set(err, errlen, "out of memory");
    b->code = (unsigned)((s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0'));
    return 0;
}

/* behaviour_parse - the BEHAVIOUR s (modified in place) into *b (zeroed by the caller);
 * 0, or -1 with a message (nothing allocated then). */
static int behaviour_parse(char *s, struct behaviour *b, char *err, size_t errlen)
{
    char *p = s, *w, buf[64];

    while (*p == ' ' || *p == '\t')
        p++;
    if (!*p)
        return err_set(err, errlen, "missing BEHAVIOUR");
    if (p[0] >= '0' && p[0] <= '9') {
        b->kind = B_REPLY;
        return reply_parse(p, b, err, errlen);
    }
    w = next_word(&p);
    if (!strcasecmp(w, "stall") || !strcasecmp(w, "drop") || !strcasecmp(w, "endless")) {
        b->kind = !strcasecmp(w, "stall") ? B_STALL : !strcasecmp(w, "drop") ? B_DROP : B_ENDLESS;
        if (*p)
            return err_set(err, errlen, "%s takes no argument (found '%s')", w,
                           shown(p, buf, sizeof buf));
        return 0;
    }
    if (!strcasecmp(w, "slow")) {
        b->kind = B_SLOW;
        if (number_parse(next_word(&p), "slow MS", 0, SLOW_MS_MAX, &b->n, err, errlen) != 0)
            return -1;
        if (!*p)
            return err_set(err, errlen, "slow MS: missing REPLY");
        return reply_parse(p, b, err, errlen);
    }
    if (!strcasecmp(w, "multiline")) {
        b->kind = B_MULTILINE;
        if (number_parse(next_word(&p), "multiline N", 1, MULTILINE_MAX, &b->n, err, errlen) != 0)
            return -1;
        if (!*p)
            return err_set(err, errlen, "multiline N: missing REPLY");
        return reply_parse(p, b, err, errlen);
    }
    if (!strcasecmp(w, "overlong")) {
        b->kind = B_OVERLONG;
        b->code = 250;
        if (number_parse(next_word(&p), "overlong N", OVERLONG_MIN, OVERLONG_MAX, &b->n, err,
                         errlen) != 0)
            return -1;
        if (*p)
            return err_set(err, errlen, "overlong N takes nothing after N (found '%s')",
                           shown(p, buf, sizeof buf));
        return 0;
    }
    return err_set(err, errlen,
                   "unknown behaviour '%s' (expected a reply 'CODE text', stall, drop, slow MS "
                   "REPLY, multiline N REPLY, endless or overlong N)",
                   shown(w, buf, sizeof buf));
}

/* script_defaults - a script with every default; NULL with a message (out of memory). */
static struct script *script_defaults(char *err, size_t errlen)
{
    struct script *s = calloc(1, sizeof *s);

    if (!s) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < DIRECTIVES; i++) {
        struct behaviour *b = (struct behaviour *)((char *)s + directives[i].offset);
        char text[REPLY_MAX + 1];

        if (!directives[i].dflt) {
            b->kind = B_REPLY;
            b->code = 250;
            if (!(b->text = strdup(EHLO_DEFAULT))) {
                err_set(err, errlen, "out of memory");
                script_free(s);
                return NULL;
            }
            continue;
        }
        snprintf(text, sizeof text, "%s", directives[i].dflt);
        if (behaviour_parse(text, b, err, errlen) != 0) {
            script_free(s);
            return NULL;
        }
    }
    return s;
}

/* script_line - applies one directive (line, modified in place) to s; seen[] holds the line of
 * each directive already given. 0, or -1 with a message (without FILE:LINE). */
static int script_line(struct script *s, char *line, unsigned lineno, unsigned seen[DIRECTIVES],
                       char *err, size_t errlen)
{
    char *p = line, *w = next_word(&p), buf[64];
    size_t d;

    for (d = 0; d < DIRECTIVES; d++)
        if (!strcasecmp(w, directives[d].name))
            break;
    if (d == DIRECTIVES)
        return err_set(err, errlen,
                       "unknown directive '%s' (expected greeting, ehlo, helo, mail, rcpt, rset "
                       "or quit)",
                       shown(w, buf, sizeof buf));
    if (strcasecmp(w, "rcpt") != 0) {
        struct behaviour nb = {0}, *b = (struct behaviour *)((char *)s + directives[d].offset);

        if (seen[d])
            return err_set(err, errlen, "duplicate %s (first at line %u)", directives[d].name,
                           seen[d]);
        if (behaviour_parse(p, &nb, err, errlen) != 0) {
            behaviour_fini(&nb);
            return -1;
        }
        behaviour_fini(b);
        *b = nb;
        seen[d] = lineno;
        return 0;
    }

    char *addr = next_word(&p);
    size_t alen;
    struct behaviour nb = {0};

    if (!addr)
        return err_set(err, errlen, "rcpt: missing ADDRESS and BEHAVIOUR");
    alen = strlen(addr);
    if (alen >= 2 && addr[0] == '<' && addr[alen - 1] == '>') {
        addr[alen - 1] = '\0';
        addr++;
        alen -= 2;
    }
    if (alen == 0 || alen > ADDRESS_MAX || strpbrk(addr, "<>"))
        return err_set(err, errlen, "rcpt: bad ADDRESS '%s' (1 to %d bytes, no angle brackets "
                       "inside)", shown(addr, buf, sizeof buf), ADDRESS_MAX);
    if (!*p)
        return err_set(err, errlen, "rcpt %s: missing BEHAVIOUR", shown(addr, buf, sizeof buf));
    if (!strcmp(addr, "*")) {
        if (seen[d])
            return err_set(err, errlen, "duplicate rcpt * (first at line %u)", seen[d]);
    } else {
        for (size_t i = 0; i < s->nrcpt; i++)
            if (!strcasecmp(s->rcpt[i].address, addr))
                return err_set(err, errlen, "duplicate rcpt %s (first at line %u)",
                               shown(addr, buf, sizeof buf), s->rcpt[i].line);
        if (s->nrcpt >= SCRIPT_RCPT_MAX)
            return err_set(err, errlen, "more than %d rcpt directives", SCRIPT_RCPT_MAX);
    }
    if (behaviour_parse(p, &nb, err, errlen) != 0) {
        behaviour_fini(&nb);
        return -1;
    }
    if (!strcmp(addr, "*")) {
        behaviour_fini(&s->rcpt_any);
        s->rcpt_any = nb;
        seen[d] = lineno;
        return 0;
    }

    struct rcpt_rule *r = realloc(s->rcpt, (s->nrcpt + 1) * sizeof *r);
    char *copy = strdup(addr);

    if (r)
        s->rcpt = r;
    if (!r || !copy) {
        free(copy);
        behaviour_fini(&nb);
        return err_set(err, errlen, "out of memory");
    }
    s->rcpt[s->nrcpt++] = (struct rcpt_rule){.address = copy, .b = nb, .line = lineno};
    return 0;
}

/* script_load - reads the script at path over the defaults. NULL with "FILE:LINE: what" (or
 * "FILE: what") in err; the caller frees the result with script_free. Blocks on the file. */
static struct script *script_load(const char *path, char *err, size_t errlen)
{
    struct script *s = script_defaults(err, errlen);
    FILE *f;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    unsigned lineno = 0, seen[DIRECTIVES] = {0};
    char msg[ERR_MAX];

    if (!s)
        return NULL;
    if (!(f = fopen(path, "re"))) {
        err_set(err, errlen, "%s: %s", path, strerror(errno));
        script_free(s);
        return NULL;
    }
    while ((len = getline(&line, &cap, f)) >= 0) {
        char *p = line;

        lineno++;
        if ((size_t)len > SCRIPT_LINE_MAX) {
            err_set(err, errlen, "%s:%u: line longer than %d bytes", path, lineno, SCRIPT_LINE_MAX);
            goto fail;
        }
        if (memchr(line, '\0', (size_t)len)) {
            err_set(err, errlen, "%s:%u: NUL byte in line", path, lineno);
            goto fail;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' ||
                           line[len - 1] == ' ' || line[len - 1] == '\t'))
            line[--len] = '\0';
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p || *p == '#')
            continue;
        if (script_line(s, p, lineno, seen, msg, sizeof msg) != 0) {
            err_set(err, errlen, "%s:%u: %s", path, lineno, msg);
            goto fail;
        }
    }
    if (ferror(f)) {
        err_set(err, errlen, "%s: %s", path, strerror(errno));
        goto fail;
    }
    free(line);
    fclose(f);
    return s;
fail:
    free(line);
    fclose(f);
    script_free(s);
    return NULL;
}

/* script_rcpt - the behaviour for recipient addr (case-insensitive), else the rcpt * one. */
static const struct behaviour *script_rcpt(const struct script *s, const char *addr)
{
    for (size_t i = 0; i < s->nrcpt; i++)
        if (!strcasecmp(s->rcpt[i].address, addr))
            return &s->rcpt[i].b;
    return &s->rcpt_any;
}

/* ---- server ---------------------------------------------------------------------------- */

enum cmode {
    M_CMD,     /* reading and answering commands */
    M_WAIT,    /* a slow answer waits for its time (text, due) */
    M_GEN,     /* a multiline or overlong answer is being produced */
    M_ENDLESS, /* endless: produce lines forever, read nothing */
    M_STALL,   /* read nothing, answer nothing, until the peer closes */
    M_CLOSING, /* close logged: flush, shutdown(SHUT_WR), drain until EOF or due */
};

struct conn {
    int fd;                  /* -1 once closed: reaped at the end of the loop round */
    unsigned long long id;
    enum cmode mode;
    bool helo;               /* a HELO/EHLO got 2xx */
    bool mail;               /* inside a transaction */
    bool peer_eof;           /* read saw EOF: answer what is buffered, then close */
    bool quit;               /* close (reason quit) once the answer in progress is out */
    bool shut;               /* M_CLOSING: shutdown(SHUT_WR) done */
    bool gen_multi;          /* M_GEN: multiline (else overlong) */
    unsigned gen_stage;      /* M_GEN overlong: 0 "250 ", 1 the x's, 2 CRLF */
    uint64_t gen_left;       /* M_GEN: lines, or x's, still to produce */
    uint64_t due;            /* M_WAIT: answer time; M_ENDLESS: next burst; M_CLOSING: end */
    size_t inlen, outlen, textlen;
    char text[RENDER_MAX];   /* M_WAIT: the answer with CRLF; M_GEN multiline: "CODE text" */
    char in[IN_BUF_SIZE];
    char out[OUT_BUF_SIZE];
    char peer[PEER_MAX];
};

struct server {
    int lfd;
    int sig_r, sig_w;        /* self-pipe woken by the signal handlers */
    FILE *log;
    const char *script_path; /* NULL: defaults */
    struct script *script;
    struct conn *conns[CONN_MAX];
    size_t nconns;
    size_t conn_limit;       /* CONN_MAX, or less when descriptors are short */
    unsigned long long last_id;
    uint64_t accept_resume;  /* 0, or when the listener is polled again after EMFILE */
    struct pollfd pfd[CONN_MAX + 2];
};

static volatile sig_atomic_t sig_stop, sig_reload;
static int sig_fd = -1;

/* on_signal - records the signal and wakes the loop through the self-pipe. */
static void on_signal(int sig)
{
    int saved = errno;

    if (sig == SIGHUP)
        sig_reload = 1;
    else
        sig_stop = 1;
    if (sig_fd >= 0 && write(sig_fd, "", 1) < 0) {
        /* Robustness: a full pipe already wakes the loop. */
    }
    errno = saved;
}

/* now_ms - the monotonic clock in milliseconds. */
static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* log_event - writes one event line and flushes it; write errors are ignored. */
static void log_event(struct server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_event(struct server *s, const char *fmt, ...)
{
    char line[LOG_LINE_MAX];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof line - 2)
        n = (int)(sizeof line - 2);
    line[n++] = '\n';
    fwrite(line, 1, (size_t)n, s->log);
    fflush(s->log);
}

/* escape - buf gets the len bytes of s with every byte outside printable ASCII and '\' as
 * \xhh; buf must hold 4 * len + 1 bytes. Returns buf. */
static char *escape(const char *s, size_t len, char *buf)
{
    static const char hex[] = "0123456789abcdef";
    char *o = buf;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f || c == '\\') {
            *o++ = '\\';
            *o++ = 'x';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        } else {
            *o++ = (char)c;
        }
    }
    *o = '\0';
    return buf;
}

/* out_put - queues len bytes; the caller made sure they fit (panic otherwise: our bug). */
static void out_put(struct conn *c, const char *p, size_t len)
{
    if (len > OUT_BUF_SIZE - c->outlen) {
        fprintf(stderr, "mxtest-smtpd: panic: output overflow on conn=%llu\n", c->id);
        abort();
    }
    memcpy(c->out + c->outlen, p, len);
    c->outlen += len;
}

#define OUT_LIT(c, s) out_put((c), (s), STR_LEN(s))

/* render - dst (RENDER_MAX bytes) gets text with each "<ADDR>" replaced by addr (when not
 * NULL; bytes outside printable ASCII as '?'), cut to fit, and CRLF. Returns its length. */
static size_t render(char *dst, const char *text, const char *addr)
{
    const size_t room = RENDER_MAX - 2;
    size_t o = 0;

    for (const char *p = text; *p && o < room;) {
        if (addr && !strncmp(p, "<ADDR>", STR_LEN("<ADDR>"))) {
            for (const char *a = addr; *a && o < room; a++)
                dst[o++] = (unsigned char)*a < 0x20 || (unsigned char)*a >= 0x7f ? '?' : *a;
            p += STR_LEN("<ADDR>");
        } else {
            dst[o++] = *p++;
        }
    }
    dst[o++] = '\r';
    dst[o++] = '\n';
    return o;
}

/* conn_finish - logs the close and starts a graceful one: what is queued is sent, then
 * shutdown(SHUT_WR), then the connection lingers (reading and discarding) until the peer
 * closes or LINGER_MS. */
static void conn_finish(struct server *s, struct conn *c, const char *reason, uint64_t now)
{
    if (c->mode == M_CLOSING || c->fd < 0)
        return;
    log_event(s, "conn=%llu close reason=%s", c->id, reason);
    c->mode = M_CLOSING;
    c->due = now + LINGER_MS;
    c->inlen = 0;
}

/* conn_abort - closes at once; logs the close unless a close was logged already. */
static void conn_abort(struct server *s, struct conn *c, const char *reason)
{
    if (c->fd < 0)
        return;
    if (c->mode != M_CLOSING)
        log_event(s, "conn=%llu close reason=%s", c->id, reason);
    close(c->fd);
    c->fd = -1;
}

/* errno_reason - the close reason for a socket error: the peer's doing, or ours. */
static const char *errno_reason(int err)
{
    return err == ECONNRESET || err == EPIPE || err == ETIMEDOUT ? "peer" : "error";
}

/* conn_respond - starts answering with behaviour b; addr (NULL but for RCPT) replaces <ADDR>;
 * quit closes the connection once the answer is out. */
static void conn_respond(struct server *s, struct conn *c, const struct behaviour *b,
                         const char *addr, bool quit, uint64_t now)
{
    c->quit = quit;
    switch (b->kind) {
    case B_REPLY:
        c->textlen = render(c->text, b->text, addr);
        out_put(c, c->text, c->textlen);
        if (quit)
            conn_finish(s, c, "quit", now);
        return;
    case B_STALL:
        c->mode = M_STALL;
        return;
    case B_DROP:
        conn_finish(s, c, "drop", now);
        return;
    case B_SLOW:
        c->textlen = render(c->text, b->text, addr);
        c->mode = M_WAIT;
        c->due = now + b->n;
        return;
    case B_MULTILINE:
        c->textlen = render(c->text, b->text, addr) - 2;
        c->mode = M_GEN;
        c->gen_multi = true;
        c->gen_left = b->n;
        return;
    case B_OVERLONG:
        c->mode = M_GEN;
        c->gen_multi = false;
        c->gen_stage = 0;
        c->gen_left = b->n - STR_LEN("250 ");
        return;
    case B_ENDLESS:
        c->mode = M_ENDLESS;
        c->due = now;
        return;
    }
}

/* verb_is - whether the command's first word (len bytes) is name, case-insensitively. */
static bool verb_is(const char *verb, size_t len, const char *name)
{
    return len == strlen(name) && !strncasecmp(verb, name, len);
}

/* rcpt_address - the address of "TO:..." in arg (modified in place): inside the angle
 * brackets, or the word after TO:. NULL when the syntax is wrong. */
static char *rcpt_address(char *arg)
{
    char *p, *end;

    if (strncasecmp(arg, "TO:", 3) != 0)
        return NULL;
    p = arg + 3;
    while (*p == ' ')
        p++;
    if (*p == '<') {
        if (!(end = strchr(++p, '>')))
            return NULL;
    } else {
        end = p + strcspn(p, " ");
    }
    *end = '\0';
    return p;
}

/* conn_command - logs and answers one command line (len bytes, NUL-terminated). */
static void conn_command(struct server *s, struct conn *c, char *line, size_t len, uint64_t now)
{
    char esc[CMD_LINE_MAX * 4 + 1];
    const struct script *sc = s->script;
    size_t vlen;
    char *arg;

    log_event(s, "conn=%llu cmd=%s", c->id, escape(line, len, esc));
    if (memchr(line, '\0', len)) {
        OUT_LIT(c, "502 5.5.1 Command not implemented\r\n");
        return;
    }
    vlen = strcspn(line, " ");
    arg = line + vlen;
    while (*arg == ' ')
        arg++;

    if (verb_is(line, vlen, "EHLO") || verb_is(line, vlen, "HELO")) {
        bool ehlo = verb_is(line, vlen, "EHLO");
        const struct behaviour *b = ehlo ? &sc->ehlo : &sc->helo;

        if (!*arg) {
            if (ehlo)
                OUT_LIT(c, "501 5.5.4 Syntax: EHLO hostname\r\n");
            else
                OUT_LIT(c, "501 5.5.4 Syntax: HELO hostname\r\n");
            return;
        }
        if (b->code / 100 == 2) {
            c->helo = true;
            c->mail = false;
        }
        conn_respond(s, c, b, NULL, false, now);
    } else if (verb_is(line, vlen, "MAIL")) {
        if (!c->helo)
            OUT_LIT(c, "503 5.5.1 Error: send HELO/EHLO first\r\n");
        else if (c->mail)
            OUT_LIT(c, "503 5.5.1 Error: nested MAIL command\r\n");
        else if (strncasecmp(arg, "FROM:", 5) != 0)
            OUT_LIT(c, "501 5.5.4 Syntax: MAIL FROM:<address>\r\n");
        else {
            if (sc->mail.code / 100 == 2)
                c->mail = true;
            conn_respond(s, c, &sc->mail, NULL, false, now);
        }
    } else if (verb_is(line, vlen, "RCPT")) {
        char *addr;

        if (!c->mail)
            OUT_LIT(c, "503 5.5.1 Error: need MAIL command\r\n");
        else if (!(addr = rcpt_address(arg)))
            OUT_LIT(c, "501 5.5.4 Syntax: RCPT TO:<address>\r\n");
        else
            conn_respond(s, c, script_rcpt(sc, addr), addr, false, now);
    } else if (verb_is(line, vlen, "RSET")) {
        if (sc->rset.code / 100 == 2)
            c->mail = false;
        conn_respond(s, c, &sc->rset, NULL, false, now);
    } else if (verb_is(line, vlen, "NOOP")) {
        OUT_LIT(c, "250 2.0.0 Ok\r\n");
    } else if (verb_is(line, vlen, "QUIT")) {
        conn_respond(s, c, &sc->quit, NULL, true, now);
    } else {
        OUT_LIT(c, "502 5.5.1 Command not implemented\r\n");
    }
}

/* conn_lines - answers the complete lines buffered, while in M_CMD and room is left for an
 * answer; an overlong line gets 500 and starts the close. Returns whether it did anything. */
static bool conn_lines(struct server *s, struct conn *c, uint64_t now)
{
    bool progress = false;

    while (c->mode == M_CMD && OUT_BUF_SIZE - c->outlen >= RENDER_MAX) {
        char *lf = memchr(c->in, '\n', c->inlen), line[CMD_LINE_MAX + 1];
        size_t used, len;

        if (!lf) {
            if (c->inlen >= IN_BUF_SIZE) {
                OUT_LIT(c, "500 5.5.2 Line too long\r\n");
                conn_finish(s, c, "overlong", now);
                return true;
            }
            if (c->peer_eof) {
                conn_finish(s, c, "peer", now);
                return true;
            }
            return progress;
        }
        used = (size_t)(lf - c->in) + 1;
        len = used - 1;
        if (len > 0 && c->in[len - 1] == '\r')
            len--;
        if (len > CMD_LINE_MAX) {
            OUT_LIT(c, "500 5.5.2 Line too long\r\n");
            conn_finish(s, c, "overlong", now);
            return true;
        }
        memcpy(line, c->in, len);
        line[len] = '\0';
        memmove(c->in, c->in + used, c->inlen - used);
        c->inlen -= used;
        conn_command(s, c, line, len, now);
        progress = true;
    }
    return progress;
}

/* conn_generate - produces what fits of a multiline, overlong or endless answer; ends M_GEN
 * when done. Returns whether it produced anything. */
static bool conn_generate(struct server *s, struct conn *c, uint64_t now)
{
    size_t room = OUT_BUF_SIZE - c->outlen;
    bool progress = false;

    if (c->mode == M_ENDLESS) {
        if (now < c->due || room < ENDLESS_LINES_PER_TICK * STR_LEN(ENDLESS_LINE))
            return false;
        for (int i = 0; i < ENDLESS_LINES_PER_TICK; i++)
            OUT_LIT(c, ENDLESS_LINE);
        c->due = now + ENDLESS_TICK_MS;
        return true;
    }
    if (c->mode != M_GEN)
        return false;
    if (c->gen_multi) {
        /* c->text is "CODE" or "CODE text": "CODE-text" for every line but the last. */
        while (c->gen_left > 0 && OUT_BUF_SIZE - c->outlen >= c->textlen + 3) {
            char sep = c->gen_left > 1 ? '-' : ' ';
            out_put(c, c->text, 3);
            if (c->textlen > 3 || sep == '-')
                out_put(c, &sep, 1);
            if (c->textlen > 4)
                out_put(c, c->text + 4, c->textlen - 4);
            OUT_LIT(c, "\r\n");
            c->gen_left--;
            progress = true;
        }
    } else {
        if (c->gen_stage == 0 && room >= 4) {
            OUT_LIT(c, "250 ");
            c->gen_stage = 1;
            progress = true;
        }
        if (c->gen_stage == 1) {
            size_t n = OUT_BUF_SIZE - c->outlen;
            if (n > c->gen_left)
                n = (size_t)c->gen_left;
            memset(c->out + c->outlen, 'x', n);
            c->outlen += n;
            c->gen_left -= n;
            progress |= n > 0;
            if (c->gen_left == 0)
                c->gen_stage = 2;
        }
        if (c->gen_stage == 2 && OUT_BUF_SIZE - c->outlen >= 2) {
            OUT_LIT(c, "\r\n");
            c->gen_stage = 3;
            c->gen_left = 0;
            progress = true;
        }
        if (c->gen_stage != 3)
            return progress;
    }
    if (c->gen_left == 0) {
        c->mode = M_CMD;
        if (c->quit)
            conn_finish(s, c, "quit", now);
        progress = true;
    }
    return progress;
}

/* conn_flush - sends what is queued, as much as the socket takes. Returns whether it sent
 * anything; on a socket error the connection is closed (fd -1). */
static bool conn_flush(struct server *s, struct conn *c)
{
    ssize_t n;

    if (c->outlen == 0)
        return false;
    n = send(c->fd, c->out, c->outlen, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            conn_abort(s, c, errno_reason(errno));
        return false;
    }
    memmove(c->out, c->out + n, c->outlen - (size_t)n);
    c->outlen -= (size_t)n;
    return n > 0;
}

/* conn_advance - does everything the connection can do now without blocking: fire a due slow
 * answer, produce, answer buffered lines, send, and finish a close. Each round consumes input
 * or sends output, so the loop ends when the socket or the buffers are full or empty. */
static void conn_advance(struct server *s, struct conn *c, uint64_t now)
{
    for (;;) {
        bool progress = false;

        if (c->fd < 0)
            return;
        if (c->mode == M_WAIT && now >= c->due) {
            out_put(c, c->text, c->textlen);
            c->mode = M_CMD;
            if (c->quit)
                conn_finish(s, c, "quit", now);
            progress = true;
        }
        progress |= conn_generate(s, c, now);
        if (c->mode == M_CMD)
            progress |= conn_lines(s, c, now);
        progress |= conn_flush(s, c);
        if (c->fd < 0)
            return;
        if (c->mode == M_CLOSING && c->outlen == 0 && !c->shut) {
            shutdown(c->fd, SHUT_WR);
            c->shut = true;
        }
        if (c->mode == M_CLOSING && now >= c->due) {
            close(c->fd);
            c->fd = -1;
            return;
        }
        if (!progress)
            return;
    }
}

/* conn_read - reads what the socket has into the line buffer (discarded when closing). */
static void conn_read(struct server *s, struct conn *c)
{
    char scratch[4096];
    ssize_t n;

    if (c->mode == M_CLOSING) {
        n = recv(c->fd, scratch, sizeof scratch, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            close(c->fd);
            c->fd = -1;
        }
        return;
    }
    if (c->inlen >= IN_BUF_SIZE)
        return;
    n = recv(c->fd, c->in + c->inlen, IN_BUF_SIZE - c->inlen, MSG_DONTWAIT);
    if (n > 0)
        c->inlen += (size_t)n;
    else if (n == 0)
        c->peer_eof = true;
    else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        conn_abort(s, c, errno_reason(errno));
}

/* conn_events - the poll events the connection waits for in its mode. */
static short conn_events(const struct conn *c)
{
    short ev = c->outlen > 0 ? POLLOUT : 0;

    switch (c->mode) {
    case M_STALL:
    case M_ENDLESS:
        /* Nothing is read: RDHUP tells that the peer closed. */
        return (short)(ev | POLLRDHUP);
    case M_CLOSING:
        return (short)(ev | POLLIN);
    default:
        if (!c->peer_eof && c->inlen < IN_BUF_SIZE)
            ev |= POLLIN;
        return ev;
    }
}

/* conn_io - handles the poll events of a connection, then advances it. */
static void conn_io(struct server *s, struct conn *c, short revents, uint64_t now)
{
    if ((c->mode == M_STALL || c->mode == M_ENDLESS) && (revents & (POLLRDHUP | POLLHUP))) {
        conn_abort(s, c, "peer");
        return;
    }
    if (revents & POLLIN) {
        conn_read(s, c);
    } else if (revents & (POLLERR | POLLHUP | POLLNVAL)) {
        int err = 0;
        socklen_t len = sizeof err;

        if (c->mode == M_CLOSING) {
            close(c->fd);
            c->fd = -1;
            return;
        }
        if ((revents & POLLERR) && getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err)
            conn_abort(s, c, errno_reason(err));
        else
            conn_abort(s, c, revents & POLLNVAL ? "error" : "peer");
        return;
    }
    conn_advance(s, c, now);
}

/* peer_text - "127.0.0.1:PORT" or "[::1]:PORT" of sa into buf (PEER_MAX bytes). */
static void peer_text(const struct sockaddr_storage *sa, char *buf)
{
    char host[INET6_ADDRSTRLEN] = "?";

    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        snprintf(buf, PEER_MAX, "[%s]:%u", host, (unsigned)ntohs(a->sin6_port));
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        snprintf(buf, PEER_MAX, "%s:%u", host, (unsigned)ntohs(a->sin_port));
    }
}

/* server_accept - accepts up to ACCEPT_BATCH connections and sends their greetings. */
static void server_accept(struct server *s, uint64_t now)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage sa;
        socklen_t salen = sizeof sa;
        char peer[PEER_MAX];
        struct conn *c;
        int fd = accept4(s->lfd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Robustness: the listener stays readable; rest it rather than spin. */
                log_event(s, "accept error=%s", strerror(errno));
                s->accept_resume = now + ACCEPT_PAUSE_MS;
            }
            return;
        }
        peer_text(&sa, peer);
        if (s->nconns >= s->conn_limit || !(c = malloc(sizeof *c))) {
            static const char busy[] = "421 4.3.2 Too many connections, try again later\r\n";
            bool limit = s->nconns >= s->conn_limit;

            if (send(fd, busy, STR_LEN(busy), MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
                /* Robustness: a refused peer that is gone needs nothing more. */
            }
            close(fd);
            log_event(s, "refuse peer=%s reason=%s", peer, limit ? "limit" : "nomem");
            continue;
        }
        memset(c, 0, offsetof(struct conn, text));
        c->fd = fd;
        c->id = ++s->last_id;
        c->mode = M_CMD;
        memcpy(c->peer, peer, sizeof peer);
        s->conns[s->nconns++] = c;
        log_event(s, "conn=%llu open peer=%s", c->id, c->peer);
        conn_respond(s, c, &s->script->greeting, NULL, false, now);
        conn_advance(s, c, now);
    }
}

/* server_reload - replaces the script by a fresh read of the file (or the defaults); on an
 * error the old script stays. */
static void server_reload(struct server *s)
{
    char err[ERR_MAX];
    struct script *n = s->script_path ? script_load(s->script_path, err, sizeof err)
                                      : script_defaults(err, sizeof err);

    if (!n) {
        log_event(s, "reload error=%s", err);
        return;
    }
    script_free(s->script);
    s->script = n;
    log_event(s, "reload ok");
}

/* server_timeout - the poll timeout: until the nearest deadline of any connection (or of the
 * listener's rest), -1 when there is none. */
static int server_timeout(const struct server *s, uint64_t now)
{
    uint64_t next = UINT64_MAX;

    if (s->accept_resume)
        next = s->accept_resume;
    for (size_t i = 0; i < s->nconns; i++) {
        const struct conn *c = s->conns[i];
        bool timed = c->mode == M_WAIT || c->mode == M_CLOSING ||
                     (c->mode == M_ENDLESS &&
                      OUT_BUF_SIZE - c->outlen >= ENDLESS_LINES_PER_TICK * STR_LEN(ENDLESS_LINE));
        if (timed && c->due < next)
            next = c->due;
    }
    if (next == UINT64_MAX)
        return -1;
    if (next <= now)
        return 0;
    return next - now > INT32_MAX ? INT32_MAX : (int)(next - now);
}

/* server_run - the loop, until SIGTERM or SIGINT; then closes every connection. 0, or -1 when
 * poll fails. */
static int server_run(struct server *s)
{
    int rc = 0;

    while (!sig_stop) {
        uint64_t now = now_ms();
        size_t polled = s->nconns;
        nfds_t n = 0;

        if (s->accept_resume && now >= s->accept_resume)
            s->accept_resume = 0;
        s->pfd[n++] = (struct pollfd){.fd = s->sig_r, .events = POLLIN};
        s->pfd[n++] = (struct pollfd){.fd = s->accept_resume ? -1 : s->lfd, .events = POLLIN};
        for (size_t i = 0; i < polled; i++) {
            const struct conn *c = s->conns[i];
            s->pfd[n++] = (struct pollfd){.fd = c->fd, .events = conn_events(c)};
        }
        if (poll(s->pfd, n, server_timeout(s, now)) < 0) {
            if (errno == EINTR)
                continue;
            log_event(s, "poll error=%s", strerror(errno));
            rc = -1;
            break;
        }
        if (s->pfd[0].revents & POLLIN) {
            char drain[64];
            while (read(s->sig_r, drain, sizeof drain) > 0)
                ;
        }
        if (sig_stop)
            break;
        if (sig_reload) {
            sig_reload = 0;
            server_reload(s);
        }
        now = now_ms();
        for (size_t i = 0; i < polled; i++) {
            struct conn *c = s->conns[i];
            if (c->fd >= 0 && s->pfd[2 + i].revents)
                conn_io(s, c, s->pfd[2 + i].revents, now);
            else if (c->fd >= 0 && (c->mode == M_WAIT || c->mode == M_ENDLESS ||
                                    c->mode == M_CLOSING) && now >= c->due)
                conn_advance(s, c, now);
        }
        if (s->pfd[1].revents & POLLIN)
            server_accept(s, now);
        for (size_t i = 0; i < s->nconns;) {
            if (s->conns[i]->fd < 0) {
                free(s->conns[i]);
                s->conns[i] = s->conns[--s->nconns];
            } else {
                i++;
            }
        }
    }
    for (size_t i = 0; i < s->nconns; i++) {
        conn_abort(s, s->conns[i], "shutdown");
        free(s->conns[i]);
    }
    s->nconns = 0;
    log_event(s, "stop");
    return rc;
}

/* listen_parse - "127.x.y.z:PORT" or "[::1]:PORT" into *sa; anything not loopback is refused.
 * 0, or -1 with a message. */
static int listen_parse(const char *spec, struct sockaddr_storage *sa, socklen_t *salen,
                        char *err, size_t errlen)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon, *port;
    unsigned portnum;
    size_t hlen;

    memset(sa, 0, sizeof *sa);
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (!close || close[1] != ':')
            return err_set(err, errlen, "--listen %s: expected [::1]:PORT", spec);
        hlen = (size_t)(close - spec - 1);
        colon = close + 1;
        if (hlen >= sizeof host)
            return err_set(err, errlen, "--listen %s: bad IPv6 address", spec);
        memcpy(host, spec + 1, hlen);
    } else {
        if (!(colon = strrchr(spec, ':')))
            return err_set(err, errlen, "--listen %s: expected 127.0.0.1:PORT or [::1]:PORT", spec);
        hlen = (size_t)(colon - spec);
        if (hlen >= sizeof host)
            return err_set(err, errlen, "--listen %s: bad IPv4 address", spec);
        memcpy(host, spec, hlen);
    }
    host[hlen] = '\0';
    port = colon + 1;
    if (number_parse(port, "--listen PORT", 0, 65535, &portnum, err, errlen) != 0)
        return -1;
    if (spec[0] == '[') {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)sa;
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
            return err_set(err, errlen, "--listen %s: bad IPv6 address", spec);
        if (!IN6_IS_ADDR_LOOPBACK(&a->sin6_addr))
            return err_set(err, errlen, "--listen %s: not a loopback address (only 127.0.0.0/8 "
                           "and [::1] are allowed)", spec);
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)portnum);
        *salen = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)sa;
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
            return err_set(err, errlen, "--listen %s: bad IPv4 address (a name is not accepted)",
                           spec);
        if ((ntohl(a->sin_addr.s_addr) >> 24) != 127)
            return err_set(err, errlen, "--listen %s: not a loopback address (only 127.0.0.0/8 "
                           "and [::1] are allowed)", spec);
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)portnum);
        *salen = sizeof *a;
    }
    return 0;
}

/* listen_open - a non-blocking listening socket on sa; the port it got goes into *port and
 * into sa. -1 with a message. */
static int listen_open(struct sockaddr_storage *sa, socklen_t salen, unsigned *port, char *err,
                       size_t errlen)
{
    struct sockaddr_storage got;
    socklen_t gotlen = sizeof got;
    int one = 1;
    int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return err_set(err, errlen, "socket: %s", strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (sa->ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)sa, salen) != 0 || listen(fd, LISTEN_BACKLOG) != 0 ||
        getsockname(fd, (struct sockaddr *)&got, &gotlen) != 0) {
        err_set(err, errlen, "bind/listen: %s", strerror(errno));
        close(fd);
        return -1;
    }
    *port = ntohs(got.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&got)->sin6_port
                                            : ((struct sockaddr_in *)&got)->sin_port);
    *sa = got;
    return fd;
}

/* port_file_write - writes "PORT\n" to path through a temporary name and rename(2), so a
 * reader sees no file or the whole one. 0 or -1 with a message. */
static int port_file_write(const char *path, unsigned port, char *err, size_t errlen)
{
    char tmp[4096], text[16];
    int fd, len = snprintf(text, sizeof text, "%u\n", port);

    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp)
        return err_set(err, errlen, "--port-file %s: name too long", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return err_set(err, errlen, "%s: %s", tmp, strerror(errno));
    if (write(fd, text, (size_t)len) != len || close(fd) != 0) {
        err_set(err, errlen, "%s: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        err_set(err, errlen, "rename %s to %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* signals_init - the self-pipe and the handlers: TERM and INT stop, HUP reloads, PIPE is
 * ignored. Handlers are installed even where the parent ignored the signal (a background job
 * of a shell ignores INT). 0 or -1 with a message. */
static int signals_init(struct server *s, char *err, size_t errlen)
{
    int p[2];
    struct sigaction sa;

    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0)
        return err_set(err, errlen, "pipe: %s", strerror(errno));
    s->sig_r = p[0];
    s->sig_w = p[1];
    sig_fd = p[1];
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    return 0;
}

/* conn_limit - CONN_MAX, raising the descriptor limit for it when needed and allowed; less
 * when the hard limit is lower. */
static size_t conn_limit(void)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)CONN_MAX + FD_RESERVE;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return CONN_MAX;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want)
        return CONN_MAX;
    return rl.rlim_cur > 2 * FD_RESERVE ? (size_t)(rl.rlim_cur - FD_RESERVE) : FD_RESERVE;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mxtest-smtpd --listen 127.0.0.1:PORT [--script FILE] [--log FILE]\n"
            "                    [--port-file FILE]\n"
            "\n"
            "  -l, --listen ADDR:PORT  127.0.0.0/8 or [::1] only; PORT 0 picks a free port,\n"
            "                          printed on stdout as \"port=N\"\n"
            "  -s, --script FILE       per-command behaviour (see the header of mxtest-smtpd.c)\n"
            "  -L, --log FILE          events, appended (default: stderr)\n"
            "  -p, --port-file FILE    also write the port to FILE (atomically)\n"
            "\n"
            "Signals: TERM/INT close every connection and exit 0; HUP re-reads the script.\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},   {"script", required_argument, NULL, 's'},
        {"log", required_argument, NULL, 'L'},      {"port-file", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    const char *listen_spec = NULL, *log_path = NULL, *port_file = NULL;
    struct server *s;
    struct sockaddr_storage sa;
    socklen_t salen = 0;
    char err[ERR_MAX];
    unsigned port = 0;
    int opt, rc;

    s = calloc(1, sizeof *s);
    if (!s) {
        fprintf(stderr, "mxtest-smtpd: out of memory\n");
        return 1;
    }
    s->lfd = s->sig_r = s->sig_w = -1;
    while ((opt = getopt_long(argc, argv, "l:s:L:p:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'l':
            listen_spec = optarg;
            break;
        case 's':
            s->script_path = optarg;
            break;
        case 'L':
            log_path = optarg;
            break;
        case 'p':
            port_file = optarg;
            break;
        case 'h':
            usage(stdout);
            free(s);
            return 0;
        default:
            usage(stderr);
            free(s);
            return EXIT_USAGE;
        }
    }
    if (optind < argc || !listen_spec) {
        fprintf(stderr, "mxtest-smtpd: %s\n",
                optind < argc ? "unexpected argument" : "--listen is required");
        usage(stderr);
        free(s);
        return EXIT_USAGE;
    }
    if (listen_parse(listen_spec, &sa, &salen, err, sizeof err) != 0) {
        fprintf(stderr, "mxtest-smtpd: %s\n", err);
        free(s);
        return EXIT_USAGE;
    }
    s->script = s->script_path ? script_load(s->script_path, err, sizeof err)
                               : script_defaults(err, sizeof err);
    if (!s->script) {
        fprintf(stderr, "mxtest-smtpd: %s\n", err);
        free(s);
        return EXIT_USAGE;
    }
    s->log = stderr;
    if (log_path) {
        if (!(s->log = fopen(log_path, "ae"))) {
            fprintf(stderr, "mxtest-smtpd: %s: %s\n", log_path, strerror(errno));
            script_free(s->script);
            free(s);
            return 1;
        }
        setvbuf(s->log, NULL, _IOLBF, 0);
    }
    s->conn_limit = conn_limit();
    rc = 1;
    if (signals_init(s, err, sizeof err) != 0 ||
        (s->lfd = listen_open(&sa, salen, &port, err, sizeof err)) < 0 ||
        (port_file && port_file_write(port_file, port, err, sizeof err) != 0)) {
        fprintf(stderr, "mxtest-smtpd: %s\n", err);
        goto out;
    }
    printf("port=%u\n", port);
    fflush(stdout);
    peer_text(&sa, err);
    log_event(s, "listen %s", err);
    rc = server_run(s) == 0 ? 0 : 1;
out:
    if (s->lfd >= 0)
        close(s->lfd);
    if (s->sig_r >= 0) {
        sig_fd = -1;
        close(s->sig_r);
        close(s->sig_w);
    }
    if (s->log != stderr)
        fclose(s->log);
    script_free(s->script);
    free(s);
    return rc;
}
