/* Fixed-bucket histograms (see histo.h): the three bucket layouts the daemons use, the single
 * writer's observe and the readers' snapshots. Owns nothing but the bucket tables. */
#include "histo.h"

#include <string.h>

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Roughly 1-2.5-5 per decade, so that a quantile estimate is off by at most a factor of 2.5. */
static const uint64_t latency_us_le[] = {
    50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000,
    100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
};
/* An SMTP dialogue is bounded by its step timeouts, at most a few minutes in total. */
static const uint64_t dialogue_ms_le[] = {
    10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000, 300000,
};
/* Postfix retries on its queue run schedule (minutes to hours); the steps follow it. */
static const uint64_t delay_s_le[] = {
    60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 14400, 28800, 43200, 86400, 172800,
};

_Static_assert(NELEM(latency_us_le) <= HISTO_MAX_BUCKETS, "latency buckets");
_Static_assert(NELEM(dialogue_ms_le) <= HISTO_MAX_BUCKETS, "dialogue buckets");
_Static_assert(NELEM(delay_s_le) <= HISTO_MAX_BUCKETS, "delay buckets");

const struct histo_spec histo_latency_us = {NELEM(latency_us_le), latency_us_le, 1e-6};
const struct histo_spec histo_dialogue_ms = {NELEM(dialogue_ms_le), dialogue_ms_le, 1e-3};
const struct histo_spec histo_delay_s = {NELEM(delay_s_le), delay_s_le, 1.0};

/* histo_init - an empty histogram of the spec's buckets. */
void histo_init(struct histo *h, const struct histo_spec *spec)
{
    h->spec = spec;
    for (size_t i = 0; i < HISTO_MAX_BUCKETS + 1; i++)
        atomic_init(&h->bucket[i], 0);
    atomic_init(&h->sum, 0);
}

/* histo_observe - records one value; the owning thread only. */
void histo_observe(struct histo *h, uint64_t v)
{
    const struct histo_spec *s = h->spec;
    size_t lo = 0, hi = s->n; /* the first bound >= v; s->n is the +Inf bucket */

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->le[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    /* Single writer: a load and a store instead of a locked add; readers see either value. */
    atomic_store_explicit(&h->bucket[lo], atomic_load_explicit(&h->bucket[lo], memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_store_explicit(&h->sum, atomic_load_explicit(&h->sum, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

/* histo_snapshot_init - an empty snapshot of spec's buckets. */
void histo_snapshot_init(struct histo_snapshot *s, const struct histo_spec *spec)
{
    memset(s, 0, sizeof *s);
    s->spec = spec;
}

/* histo_snapshot_add - adds h into s; any thread. */
void histo_snapshot_add(struct histo_snapshot *s, const struct histo *h)
{
    size_t n = s->spec->n;

    /* +Inf lives at index n of the spec, whatever HISTO_MAX_BUCKETS is. */
    for (size_t i = 0; i <= n; i++)
        s->bucket[i] += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
    s->sum += atomic_load_explicit(&h->sum, memory_order_relaxed);
}

/* histo_snapshot_count - the number of observations in s. */
uint64_t histo_snapshot_count(const struct histo_snapshot *s)
{
    uint64_t c = 0;

    for (size_t i = 0; i <= s->spec->n; i++)
        c += s->bucket[i];
    return c;
}
