/* Names, initialisation and summing of the per-thread counters (see counters.h). */
#include "counters.h"

#include <string.h>

#define COUNTER_NAME(id, name) name,
static const char *const names[CTR_COUNT] = {COUNTERS(COUNTER_NAME)};
#undef COUNTER_NAME

void counters_init(struct counters *c)
{
    memset(c, 0, sizeof *c);
    histo_init(&c->req_check, &histo_latency_us);
    histo_init(&c->req_admin, &histo_latency_us);
    histo_init(&c->commit, &histo_latency_us);
    histo_init(&c->wal_sync, &histo_latency_us);
    histo_init(&c->greylist_delay, &histo_delay_s);
}

const char *counters_name(enum counter_id id)
{
    return (unsigned)id < CTR_COUNT ? names[id] : "?";
}

void counters_sum(struct counters *const *sets, size_t n, uint64_t out[CTR_COUNT])
{
    memset(out, 0, sizeof(uint64_t) * CTR_COUNT);
    for (size_t s = 0; s < n; s++)
        for (int i = 0; i < CTR_COUNT; i++)
            out[i] += atomic_load_explicit(&sets[s]->v[i], memory_order_relaxed);
}

/* add_histo - h into s, unless h was never initialised (a zeroed set). */
static void add_histo(struct histo_snapshot *s, const struct histo *h)
{
    if (h->spec == s->spec)
        histo_snapshot_add(s, h);
}

void counters_totals(struct counters *const *sets, size_t n, struct counters_totals *out)
{
    memset(out, 0, sizeof *out);
    counters_sum(sets, n, out->v);
    histo_snapshot_init(&out->req_check, &histo_latency_us);
    histo_snapshot_init(&out->req_admin, &histo_latency_us);
    histo_snapshot_init(&out->commit, &histo_latency_us);
    histo_snapshot_init(&out->wal_sync, &histo_latency_us);
    histo_snapshot_init(&out->greylist_delay, &histo_delay_s);
    for (size_t s = 0; s < n; s++) {
        const struct counters *c = sets[s];
        for (int t = 0; t < CTR_REQ_TYPES; t++)
            for (int o = 0; o < 2; o++)
                out->requests[t][o] += atomic_load_explicit(&c->requests[t][o], memory_order_relaxed);
        for (int a = 0; a < CTR_ACTIONS; a++)
            for (int r = 0; r < CTR_RULES; r++)
                out->decisions[a][r] += atomic_load_explicit(&c->decisions[a][r], memory_order_relaxed);
        add_histo(&out->req_check, &c->req_check);
        add_histo(&out->req_admin, &c->req_admin);
        add_histo(&out->commit, &c->commit);
        add_histo(&out->wal_sync, &c->wal_sync);
        add_histo(&out->greylist_delay, &c->greylist_delay);
    }
}
