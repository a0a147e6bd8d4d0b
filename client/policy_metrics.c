/* policy_metrics - renders mxcache-policy's figures for /metrics and judges /readyz (interface
 * in policy_metrics.h). The names follow the shared plan of the mxcache daemons (prefix
 * mxcache_policy_, base units, counters ending in _total); every label value comes from a fixed
 * table here, so a scrape's size does not depend on the traffic. Runs in the HTTP thread and only
 * reads the loop's atomics. */
#include "policy_metrics.h"

#include <stdio.h>

#include "prom.h"

static const char *const answer_names[PM_ANSWER_N] = {"service", "local", "fallback"};
static const char *const fallback_names[PM_FB_N] = {"timeout", "unreachable", "error", "overload",
                                                     "send_failed"};

void policy_metrics_init(struct policy_metrics *m)
{
    atomic_init(&m->connections, 0);
    atomic_init(&m->refused, 0);
    atomic_init(&m->timed_out, 0);
    atomic_init(&m->malformed, 0);
    atomic_init(&m->oversized, 0);
    atomic_init(&m->requests, 0);
    atomic_init(&m->asked, 0);
    for (int i = 0; i < PM_ANSWER_N; i++)
        atomic_init(&m->answers[i], 0);
    for (int i = 0; i < PM_FB_N; i++)
        atomic_init(&m->fallbacks[i], 0);
    atomic_init(&m->pings, 0);
    atomic_init(&m->open, 0);
    atomic_init(&m->service_up, 0);
    atomic_init(&m->down_cause, PM_DOWN_NO_ANSWER_YET);
    atomic_init(&m->listening, 0);
    histo_init(&m->latency, &histo_latency_us);
}

const char *policy_answer_name(enum policy_answer_kind a)
{
    return (unsigned)a < PM_ANSWER_N ? answer_names[a] : "?";
}

const char *policy_fallback_reason_name(enum policy_fallback_reason r)
{
    return (unsigned)r < PM_FB_N ? fallback_names[r] : "?";
}

/* counter - a family of one unlabelled counter. */
static void counter(struct prom_buf *b, const char *name, const char *help,
                    const _Atomic uint64_t *v)
{
    prom_single(b, name, "counter", help, pm_get(v));
}

void policy_metrics_render(const struct policy_metrics *m, struct prom_buf *b)
{
    struct prom_label l;
    struct histo_snapshot snap;
    int64_t open = atomic_load_explicit(&m->open, memory_order_relaxed);

    prom_family(b, "mxcache_policy_build_info", "gauge", "The running version of mxcache-policy.");
    l = (struct prom_label){"version", MXCACHE_VERSION};
    prom_u64(b, "mxcache_policy_build_info", &l, 1, 1);

    counter(b, "mxcache_policy_connections_total", "Postfix connections accepted and served.",
            &m->connections);
    prom_single(b, "mxcache_policy_connections_open", "gauge", "Postfix connections open now.",
                open > 0 ? (uint64_t)open : 0);
    counter(b, "mxcache_policy_connections_refused_total",
            "Connections closed at once because server.max_connections were open.", &m->refused);
    counter(b, "mxcache_policy_connections_timed_out_total",
            "Connections closed after server.idle_timeout without a request.", &m->timed_out);

    prom_family(b, "mxcache_policy_requests_total", "counter",
                "Policy requests answered, by where the answer came from.");
    for (int i = 0; i < PM_ANSWER_N; i++) {
        l = (struct prom_label){"answer", answer_names[i]};
        prom_u64(b, "mxcache_policy_requests_total", &l, 1, pm_get(&m->answers[i]));
    }
    prom_family(b, "mxcache_policy_fallback_answers_total", "counter",
                "Requests answered with service.fallback, by why the service's answer was "
                "missing.");
    for (int i = 0; i < PM_FB_N; i++) {
        l = (struct prom_label){"reason", fallback_names[i]};
        prom_u64(b, "mxcache_policy_fallback_answers_total", &l, 1, pm_get(&m->fallbacks[i]));
    }
    counter(b, "mxcache_policy_requests_malformed_total",
            "Connections closed for input that is not the policy protocol.", &m->malformed);
    counter(b, "mxcache_policy_requests_oversized_total",
            "Connections closed for a line, request or attribute count over its limit.",
            &m->oversized);

    histo_snapshot_init(&snap, &histo_latency_us);
    histo_snapshot_add(&snap, &m->latency);
    prom_family(b, "mxcache_policy_request_duration_seconds", "histogram",
                "Time from the end of a request to its answer written to Postfix.");
    prom_histogram(b, "mxcache_policy_request_duration_seconds", NULL, 0, &snap);

    counter(b, "mxcache_policy_service_pings_total",
            "Pings sent to the service after service.ping_interval without an answer.", &m->pings);
    prom_single(b, "mxcache_policy_service_up", "gauge",
                "1 when the service answered the last request or ping, else 0.",
                atomic_load_explicit(&m->service_up, memory_order_relaxed) ? 1 : 0);

    prom_process(b);
}

bool policy_metrics_ready(const struct policy_metrics *m, char *why, size_t whylen)
{
    if (!atomic_load_explicit(&m->listening, memory_order_relaxed)) {
        snprintf(why, whylen, "not listening: stopping");
        return false;
    }
    if (atomic_load_explicit(&m->service_up, memory_order_relaxed))
        return true;
    switch (atomic_load_explicit(&m->down_cause, memory_order_relaxed)) {
    case PM_DOWN_NO_ANSWER_YET:
        snprintf(why, whylen, "service unreachable: no answer yet");
        break;
    case PM_DOWN_UNREACHABLE:
        snprintf(why, whylen, "service unreachable: no connection to any endpoint");
        break;
    case PM_DOWN_UNAVAILABLE:
        snprintf(why, whylen, "service unreachable: the service answered that it is unavailable");
        break;
    default:
        snprintf(why, whylen, "service unreachable: no answer within service.timeout");
        break;
    }
    return false;
}

/* on_metrics, on_ready - httpd's callbacks; arg is the struct policy_metrics. */
static void on_metrics(void *arg, struct prom_buf *b)
{
    policy_metrics_render(arg, b);
}

static bool on_ready(void *arg, char *why, size_t whylen)
{
    return policy_metrics_ready(arg, why, whylen);
}

void policy_metrics_handlers(const struct policy_metrics *m, struct httpd_handlers *h)
{
    h->arg = (void *)m; /* only read: the callbacks take it back as const */
    h->metrics = on_metrics;
    h->ready = on_ready;
}
