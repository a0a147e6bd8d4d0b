/* Names and summing of the per-thread counters (see counters.h). */
#include "counters.h"

#include <string.h>

#define COUNTER_NAME(id, name) name,
static const char *const names[CTR_COUNT] = {COUNTERS(COUNTER_NAME)};
#undef COUNTER_NAME

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
