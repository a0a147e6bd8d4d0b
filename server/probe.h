/* The SMTP probe engine of mxcached: asks a backend whether it would accept mail for an address,
 * the way Postfix's address verification does (EHLO, MAIL FROM, RCPT TO, then RSET or QUIT), and
 * reports the backend's answer. It decides nothing and caches nothing (verify.c does); it only
 * runs dialogues, many at once.
 *
 * One thread runs every dialogue in an epoll loop over non-blocking sockets: thousands of probes
 * in flight cost one thread. Callers in other threads submit probes (probe_submit) and collect
 * results (probe_take) when probe_engine_fd is readable. A probe goes to the first host of its
 * route; when a host cannot be reached (connect fails or times out, the greeting is not 2xx or
 * does not come), the probe moves to the next host in the route's order. Each host has at most
 * max_sessions sessions open; a session runs one probe at a time, and reuses itself for the next
 * probe queued for its host with RSET (at most session_probes per session), stays open idle for
 * session_idle_ms at most, and ends with QUIT. Every stage has its timeout (connect, greeting,
 * each command), so no probe can hang.
 *
 * SECURITY: the address goes into "RCPT TO:<address>" as it is: the caller must have validated
 * it (addr.h: RFC 5321 syntax and lengths, no CR, LF, NUL or other controls); the engine checks
 * again and refuses any control byte. Nothing else from a client reaches a dialogue. Replies are
 * hostile input: parsed by smtp_reply.c, bounded in size and time; anything unexpected makes the
 * probe PROBE_FAILED (a temporary failure), never REJECTED.
 *
 * Thread-safety: probe_submit, probe_take, probe_engine_fd and probe_engine_stats may be called
 * from any thread (a mutex guards the queues); create and destroy from one. */
#ifndef MXCACHED_PROBE_H
#define MXCACHED_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtp_reply.h"

#define PROBE_HOSTS_MAX 8            /* hosts of one route */
#define PROBE_BACKEND_MAX 272        /* "host:port" with its NUL */
#define PROBE_DETAIL_MAX 256
#define PROBE_TRANSCRIPT_MAX 4096    /* the dialogue kept for mxcachectl verify, with the NUL */

/* A route: where the addresses of some domains are verified, and how. Strings are copied by
 * probe_engine_create. */
struct probe_route {
    const char *name;                /* for logs and results, e.g. the route's first domain */
    const char *hosts[PROBE_HOSTS_MAX]; /* "host:port" (port 25 if left out), "[v6]:port"; in order */
    size_t nhosts;
    const char *helo;                /* the EHLO/HELO name */
    const char *mail_from;           /* the MAIL FROM address, "" for the null sender <> */
    uint64_t connect_ms;             /* TCP connect */
    uint64_t greeting_ms;            /* the 220 greeting after connect */
    uint64_t command_ms;             /* each reply after a command */
    unsigned max_sessions;           /* sessions open at once per host of this route (>= 1; a
                                        host named in two routes has a count in each) */
    unsigned session_probes;         /* probes per session, RSET between them (>= 1) */
    uint64_t session_idle_ms;        /* an idle session is closed after this; 0: at once */
};

struct probe_options {
    const struct probe_route *routes; /* copied */
    size_t nroutes;
    unsigned max_queued;             /* probes submitted and not finished, in all; beyond: EAGAIN */
};

enum probe_outcome {
    PROBE_ACCEPTED, /* RCPT TO got 2xx */
    PROBE_REJECTED, /* RCPT TO got 5xx */
    PROBE_TEMPFAIL, /* RCPT TO got 4xx */
    PROBE_FAILED,   /* no answer to RCPT TO: no host reachable, a timeout, a refused EHLO/HELO or
                       MAIL FROM, a dropped connection, a malformed reply, the engine stopping */
};

struct probe_result {
    uint64_t token;                  /* the caller's, from probe_submit */
    enum probe_outcome outcome;
    struct smtp_reply reply;         /* the RCPT TO reply; for FAILED the last reply seen that
                                        was not the expected one (code 0 when none came) */
    char backend[PROBE_BACKEND_MAX]; /* host:port that answered, or the last one tried */
    char detail[PROBE_DETAIL_MAX];   /* FAILED: why, e.g. "127.0.0.1:2525: greeting: timeout
                                        after 5000 ms"; "" otherwise */
    char transcript[PROBE_TRANSCRIPT_MAX]; /* "C: MAIL FROM:<>\nS: 250 2.1.0 Ok\n..." when asked
                                        for: the session's greeting and EHLO first, each reply
                                        as parsed (one line, cleaned text), cut between two
                                        lines when full; "" otherwise */
    uint64_t duration_ms;            /* from submit to result */
    bool reused;                     /* ran in a session opened for an earlier probe */
};

struct probe_stats {
    uint64_t submitted, accepted, rejected, tempfail, failed;
    uint64_t sessions_opened, sessions_reused, connect_failures;
    unsigned inflight;               /* submitted and not yet taken as results */
    unsigned sessions_open;
};

struct probe_engine;

/* probe_engine_create - copies the routes, resolves every host name (getaddrinfo, once: a name
 * that does not resolve is an error here) and starts the thread. NULL with a message in err. */
struct probe_engine *probe_engine_create(const struct probe_options *opt, char *err, size_t errlen);

/* probe_engine_destroy - stops the thread and closes every session at once (no QUIT waited
 * for); results not taken are dropped. NULL-safe. */
void probe_engine_destroy(struct probe_engine *e);

/* probe_engine_fd - readable (level-triggered) while results wait for probe_take. */
int probe_engine_fd(const struct probe_engine *e);

/* probe_submit - queues a probe of address (a mailbox without <>, validated by the caller) on
 * route (an index into the options' routes). With transcript, the result carries the dialogue.
 * Returns 0, MXC_EAGAIN when max_queued probes are unfinished, MXC_ENOMEM, MXC_EINVAL for a bad
 * route or an address that is empty, longer than 254 bytes, or has a control byte, space, angle
 * bracket or a byte above 0x7e (a probe does not negotiate SMTPUTF8). Never blocks. */
int probe_submit(struct probe_engine *e, unsigned route, const char *address, uint64_t token,
                 bool transcript);

/* probe_take - moves the oldest finished result into *out. 0, or MXC_EAGAIN when none waits. */
int probe_take(struct probe_engine *e, struct probe_result *out);

void probe_engine_stats(struct probe_engine *e, struct probe_stats *out);

#endif
