/* policy_metrics - mxcache-policy's figures for monitoring: the counters, gauges and request
 * latency histogram the event loop keeps, their Prometheus rendering (/metrics) and the readiness
 * verdict (/readyz).
 *
 * One writer: only the loop thread changes a struct policy_metrics, with relaxed loads and stores
 * (pm_inc, pm_set), no locked instruction on the request path. The HTTP thread reads it at any
 * time; a scrape may see one counter a step ahead of another, which Prometheus tolerates. Owns
 * nothing; renders nothing but its own fixed names and label values. */
#ifndef MXCACHE_POLICY_METRICS_H
#define MXCACHE_POLICY_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "histo.h"
#include "httpd.h"
#include "prom.h"

/* How a complete request was answered: label answer of mxcache_policy_requests_total. */
enum policy_answer_kind {
    PM_ANSWER_SERVICE,  /* the service's decision */
    PM_ANSWER_LOCAL,    /* DUNNO without asking: protocol_state not in service.states */
    PM_ANSWER_FALLBACK, /* the configured fallback (reason below) */
    PM_ANSWER_N
};

/* Why a request got the fallback: label reason of mxcache_policy_fallback_answers_total. */
enum policy_fallback_reason {
    PM_FB_TIMEOUT,     /* sent, but no answer within service.timeout (a connection existed) */
    PM_FB_UNREACHABLE, /* no endpoint had a connection when service.timeout ran out */
    PM_FB_ERROR,       /* the service answered with an error, or an answer without an action */
    PM_FB_OVERLOAD,    /* not sent: too many questions in flight */
    PM_FB_SEND_FAILED, /* not sent: the question could not be built (memory, size) */
    PM_FB_N
};

/* Why the service counts as down, for /readyz's reason. */
enum policy_down_cause {
    PM_DOWN_NONE,
    PM_DOWN_NO_ANSWER_YET, /* started, the first ping is not answered yet */
    PM_DOWN_TIMEOUT,       /* a question or ping went unanswered within service.timeout */
    PM_DOWN_UNREACHABLE,   /* ... and no endpoint had a connection */
    PM_DOWN_UNAVAILABLE,   /* the service answered that it cannot serve (store, internal) */
};

struct policy_metrics {
    _Atomic uint64_t connections;    /* accepted and served */
    _Atomic uint64_t refused;        /* accepted and closed at once: max_connections */
    _Atomic uint64_t timed_out;      /* closed after idle_timeout */
    _Atomic uint64_t malformed;      /* closed for input that is not the policy protocol */
    _Atomic uint64_t oversized;      /* closed for a line, request or attribute count too big */
    _Atomic uint64_t requests;       /* complete requests */
    _Atomic uint64_t asked;          /* sent to the service */
    _Atomic uint64_t answers[PM_ANSWER_N];   /* answers that reached an open connection */
    _Atomic uint64_t fallbacks[PM_FB_N];     /* sums to answers[PM_ANSWER_FALLBACK] */
    _Atomic uint64_t pings;          /* pings sent */
    _Atomic int64_t open;            /* connections open now */
    _Atomic int service_up;          /* 1: the last question or ping was answered */
    _Atomic int down_cause;          /* enum policy_down_cause; PM_DOWN_NONE while up */
    _Atomic int listening;           /* 1 while the listeners accept (not stopping) */
    struct histo latency;            /* end of a request to its answer written, microseconds */
};

/* policy_metrics_init - all zero, the service not known to be up, not listening. */
void policy_metrics_init(struct policy_metrics *m);

/* pm_inc, pm_set - the writer's updates: relaxed, no read-modify-write instruction, since only
 * the loop thread writes. */
static inline void pm_inc(_Atomic uint64_t *c)
{
    uint64_t v = atomic_load_explicit(c, memory_order_relaxed);
    atomic_store_explicit(c, v + 1, memory_order_relaxed);
}
static inline void pm_add_i64(_Atomic int64_t *g, int64_t d)
{
    int64_t v = atomic_load_explicit(g, memory_order_relaxed);
    atomic_store_explicit(g, v + d, memory_order_relaxed);
}
static inline void pm_set(_Atomic int *g, int v)
{
    atomic_store_explicit(g, v, memory_order_relaxed);
}
static inline uint64_t pm_get(const _Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* policy_answer_name, policy_fallback_reason_name - the label values; "?" out of range. */
const char *policy_answer_name(enum policy_answer_kind a);
const char *policy_fallback_reason_name(enum policy_fallback_reason r);

/* policy_metrics_render - every mxcache_policy_* family and the process_* families into b, for
 * /metrics; any thread. */
void policy_metrics_render(const struct policy_metrics *m, struct prom_buf *b);

/* policy_metrics_ready - whether the hook can serve: listening and the service reachable; when
 * not, a one-line reason ("service unreachable: ...") in why. Any thread. */
bool policy_metrics_ready(const struct policy_metrics *m, char *why, size_t whylen);

/* policy_metrics_handlers - the /metrics and /readyz callbacks over m (borrowed: it must
 * outlive the endpoint), for httpd_start. */
void policy_metrics_handlers(const struct policy_metrics *m, struct httpd_handlers *h);

#endif
