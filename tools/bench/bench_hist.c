/* Log-linear latency histogram of mxcache-bench (see bench.h), and the clock it is fed from.
 *
 * Owns nothing outside the struct. Bucket b < 2^(SUB_BITS+1) holds exactly the value b; above
 * that, the value's top SUB_BITS+1 bits select the bucket, as in HdrHistogram, so recording is a
 * count-leading-zeros and a shift, cheap enough to run on every reply. */
#include "bench.h"

#include <string.h>
#include <time.h>

#define SUB (1u << BENCH_HIST_SUB_BITS)

/* bucket_of - the bucket index of v. */
static size_t bucket_of(uint64_t v)
{
    if (v < 2 * SUB)
        return (size_t)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - BENCH_HIST_SUB_BITS;
    return (size_t)(shift + 1) * SUB + (size_t)((v >> shift) - SUB);
}

/* bucket_high - the highest value that falls in bucket b. */
static uint64_t bucket_high(size_t b)
{
    if (b < 2 * SUB)
        return b;
    unsigned shift = (unsigned)(b / SUB) - 1;
    uint64_t low = ((uint64_t)(b % SUB) + SUB) << shift;
    return low + ((uint64_t)1 << shift) - 1;
}

void bench_hist_init(struct bench_hist *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

void bench_hist_record(struct bench_hist *h, uint64_t v)
{
    h->buckets[bucket_of(v)]++;
    h->count++;
    h->sum += v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src)
{
    for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t bench_hist_percentile(const struct bench_hist *h, double p)
{
    uint64_t rank, seen = 0;

    if (h->count == 0)
        return 0;
    /* The sample of rank ceil(p% of count), counting from 1, as nearest-rank percentiles do. */
    rank = (uint64_t)(p / 100.0 * (double)h->count);
    if ((double)rank < p / 100.0 * (double)h->count)
        rank++;
    if (rank == 0)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    for (size_t b = 0; b < BENCH_HIST_BUCKETS; b++) {
        seen += h->buckets[b];
        if (seen >= rank) {
            uint64_t v = bucket_high(b);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}

uint64_t bench_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
