/* The recipient-verification cache of mxcached: what a backend's answer to a probe means, how long
 * it is kept, and what every MX is told while it is. It decides on cached answers and records
 * probe results; it does not probe (probe.c does) and does not choose when to (the service does).
 *
 * Records (keyspace verify, key: the canonical recipient address, VerifyRecord):
 *   backend said 2xx to RCPT  -> positive, lives positive_ttl; after refresh_after it is still
 *                                served, and the caller probes once in the background to refresh
 *   backend said 5xx          -> negative, lives negative_ttl, keeps the backend's code, enhanced
 *                                status and text, which every MX returns word for word
 *   4xx, timeout, no backend,
 *   broken dialogue           -> tempfail, lives tempfail_ttl (protects the backend from a retry
 *                                storm), always answered with 4xx, never stored as negative, and
 *                                never written over a live positive: a failed refresh keeps the
 *                                old positive and only moves its next refresh tempfail_ttl ahead
 *
 * A negative or positive record decides what later Checks are told: the caller makes its write
 * durable before answering. A tempfail record does not: losing it costs one probe.
 *
 * Thread-safety: functions take everything as arguments; a verify_conf is read-only. */
#ifndef MXCACHED_VERIFY_H
#define MXCACHED_VERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "probe.h"
#include "store.h"

#define VERIFY_TEXT_MAX SMTP_REPLY_TEXT_MAX
#define VERIFY_DEFER_CODE 450
#define VERIFY_DEFER_STATUS "4.1.1" /* as Postfix answers for an address it could not verify */
#define VERIFY_TEMPFAIL_TEXT "Recipient address verification failed temporarily"

struct verify_conf {
    uint64_t positive_ttl_ms;   /* 31 days */
    uint64_t refresh_after_ms;  /* 7 days */
    uint64_t negative_ttl_ms;   /* 3 hours */
    uint64_t tempfail_ttl_ms;   /* 1 minute */
    bool reject_5xx;            /* pass a backend's 5xx on as 5xx; false: softened to 4xx */
};

enum verify_state { VERIFY_MISS, VERIFY_POSITIVE, VERIFY_NEGATIVE, VERIFY_TEMPFAIL };

/* What the cache holds for an address. */
struct verify_answer {
    enum verify_state state;
    bool refresh;                        /* positive due for a background refresh */
    unsigned code;                       /* the backend's reply code (0 when none came) */
    char status[SMTP_STATUS_MAX];        /* its enhanced status code, "" if none */
    char text[VERIFY_TEXT_MAX];          /* its text, cleaned */
    char backend[PROBE_BACKEND_MAX];     /* host:port that answered */
    uint64_t probed_at_ms;
};

/* What a Check is told. */
struct verify_reply {
    bool reject;                         /* 5xx */
    bool defer;                          /* 4xx */
    unsigned code;                       /* for reject and defer */
    char status[SMTP_STATUS_MAX];
    char text[VERIFY_TEXT_MAX];
};

/* verify_lookup - the live record of address (canonical) seen through batch b, into *out
 * (state VERIFY_MISS when there is none or it does not unpack). Returns 0 or MXC_ESTORE with err. */
int verify_lookup(store_batch *b, const char *address, uint64_t now_ms, struct verify_answer *out,
                  char *err, size_t errlen);

/* verify_record - stores the result r of a probe of address by the rules above, into batch b.
 * *decisive says whether the write changes what a Check is told (positive or negative), so
 * that the caller makes it durable before answering. Returns 0, or an MXC_E* code with err. */
int verify_record(const struct verify_conf *c, store_batch *b, const char *address,
                  const struct probe_result *r, uint64_t now_ms, bool *decisive, char *err,
                  size_t errlen);

/* verify_reply - what a Check about address is told for answer a: positive (and a miss) passes;
 * negative is the backend's reply word for word (5xx, or with reject_5xx off the same text as 450
 * and a 4.x.x status); tempfail is 450 4.1.1 with a text saying that verification failed
 * temporarily. Postfix's smtpd puts "<address>: Recipient address rejected: " before the text
 * of a policy's answer: when the backend (a Postfix too) said exactly that already, it is left
 * out here, so that the client reads the backend's words once. */
void verify_reply(const struct verify_conf *c, const struct verify_answer *a, const char *address,
                  struct verify_reply *out);

#endif
