/* Latency and duration histograms with fixed buckets, in the shape Prometheus exposes them.
 *
 * Like the daemons' counters, a struct histo has one writing thread: histo_observe is a few
 * relaxed loads and stores, no locked instruction. Any thread may read it at any time (a scrape
 * in the HTTP thread) and sums the sets of several threads with histo_snapshot_add; a snapshot
 * may be a few observations apart between buckets and sum, which Prometheus tolerates. */
#ifndef MXC_HISTO_H
#define MXC_HISTO_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define HISTO_MAX_BUCKETS 24 /* finite upper bounds of one histogram; +Inf comes on top */

/* The buckets of a kind of histogram: n increasing upper bounds ("le") in the unit the caller
 * observes in, and how many seconds one unit is (1e-6 for microseconds, 1 for seconds), since
 * Prometheus wants base units in the exposition. */
struct histo_spec {
    size_t n;
    const uint64_t *le;
    double unit_seconds;
};

/* Request and store latencies, observed in microseconds: 50 us .. 10 s. */
extern const struct histo_spec histo_latency_us;
/* Durations of network dialogues (SMTP probes), observed in milliseconds: 10 ms .. 5 min. */
extern const struct histo_spec histo_dialogue_ms;
/* Delays that greylisting imposed, observed in seconds: 1 min .. 2 days. */
extern const struct histo_spec histo_delay_s;

struct histo {
    const struct histo_spec *spec;
    _Atomic uint64_t bucket[HISTO_MAX_BUCKETS + 1]; /* observations per bucket (not cumulative); the last: +Inf */
    _Atomic uint64_t sum;                           /* of the observed values, in the spec's unit */
};

/* histo_init - an empty histogram of the spec's buckets (spec->n <= HISTO_MAX_BUCKETS). */
void histo_init(struct histo *h, const struct histo_spec *spec);

/* histo_observe - records one value (in the spec's unit); the owning thread only. */
void histo_observe(struct histo *h, uint64_t v);

/* A reading of one or more histograms of the same spec. */
struct histo_snapshot {
    const struct histo_spec *spec;
    uint64_t bucket[HISTO_MAX_BUCKETS + 1]; /* not cumulative, like struct histo */
    uint64_t sum;
};

/* histo_snapshot_init - an empty snapshot of spec's buckets. */
void histo_snapshot_init(struct histo_snapshot *s, const struct histo_spec *spec);

/* histo_snapshot_add - adds h (of the snapshot's spec) into s; any thread. */
void histo_snapshot_add(struct histo_snapshot *s, const struct histo *h);

/* histo_snapshot_count - the number of observations in s. */
uint64_t histo_snapshot_count(const struct histo_snapshot *s);

#endif
