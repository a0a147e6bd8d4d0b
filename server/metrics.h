/* The monitoring endpoint of mxcached: /metrics (every figure of the service in the Prometheus
 * text format), /healthz and /readyz, served by httpd.h's thread on metrics.listen.
 *
 * Owns the HTTP endpoint; borrows the service, which must outlive it (stop the endpoint before
 * service_destroy, and so before the store closes). A scrape reads only what other threads may
 * read while the service runs: the threads' counter sets and histograms (relaxed atomics), the
 * prober's per-route figures (atomics), RocksDB's properties (thread-safe) and /proc/self.
 *
 * SECURITY: the endpoint has no authentication and tells anyone who can reach it the service's
 * load and its routes' domains: bind it to loopback (the default) or a management network. */
#ifndef MXCACHED_METRICS_H
#define MXCACHED_METRICS_H

#include <stddef.h>

#include "prom.h"
#include "service.h"

struct metrics;

/* metrics_start - serves svc's figures on listen ("HOST:PORT", "[IPv6]:PORT"; port 0: any free
 * port). Returns NULL with a message in err when the address is malformed or cannot be bound
 * (in use, no permission). Pair with metrics_stop. */
struct metrics *metrics_start(const char *listen, struct service *svc, char *err, size_t errlen);

/* metrics_port - the port the endpoint listens on. */
unsigned metrics_port(const struct metrics *m);

/* metrics_stop - stops the endpoint; no callback runs after it returns. NULL-safe. */
void metrics_stop(struct metrics *m);

/* metrics_render - appends the scrape of svc to b; any thread (the HTTP thread, tests). */
void metrics_render(struct service *svc, struct prom_buf *b);

#endif
