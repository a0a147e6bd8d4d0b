/* Writer of the Prometheus text exposition format (version 0.0.4) for the daemons' /metrics.
 *
 * A scrape is built into one growable buffer: a family header (# HELP, # TYPE) followed by its
 * samples. Label values are escaped here (backslash, double quote, newline), so a value from
 * the config (a route's domain) cannot break the format. Names and label names are the
 * caller's constants and are not checked. Out of memory marks the buffer failed; the scrape
 * then answers 500 instead of a truncated text. Not thread-safe: one buffer per scrape. */
#ifndef MXC_PROM_H
#define MXC_PROM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "histo.h"

struct prom_buf {
    char *data; /* NUL-terminated */
    size_t len, cap;
    bool failed;
};

struct prom_label {
    const char *name;
    const char *value; /* escaped on output */
};

void prom_init(struct prom_buf *b);
void prom_fini(struct prom_buf *b);

/* prom_family - the # HELP and # TYPE lines of a metric family; type is "counter", "gauge" or
 * "histogram". Every sample of the family follows before the next family. */
void prom_family(struct prom_buf *b, const char *name, const char *type, const char *help);

/* prom_u64, prom_double - one sample "name{labels} value"; nl labels (0: no braces). */
void prom_u64(struct prom_buf *b, const char *name, const struct prom_label *l, size_t nl, uint64_t v);
void prom_double(struct prom_buf *b, const char *name, const struct prom_label *l, size_t nl, double v);

/* prom_single - a whole family of one unlabelled sample: its header and "name v". */
void prom_single(struct prom_buf *b, const char *name, const char *type, const char *help, uint64_t v);

/* prom_histogram - the samples of one histogram: name_bucket{labels,le="..."} (cumulative, le
 * in seconds, ending with +Inf), name_sum (seconds) and name_count. */
void prom_histogram(struct prom_buf *b, const char *name, const struct prom_label *l, size_t nl,
                    const struct histo_snapshot *s);

/* prom_process - the standard process_* families of the calling process (from /proc/self):
 * process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes,
 * process_open_fds, process_max_fds, process_start_time_seconds. A figure that cannot be read
 * is left out. */
void prom_process(struct prom_buf *b);

#endif
