/* The daemons' HTTP endpoint for monitoring (libmicrohttpd, its own thread):
 *
 *   GET /metrics   Prometheus text format, built by the daemon's metrics callback
 *   GET /healthz   200 "ok": the process is alive and its HTTP thread answers
 *   GET /readyz    200 "ready", or 503 with the reason from the ready callback
 *
 * Anything else is 404 (405 for a method other than GET or HEAD). The callbacks run in the HTTP
 * thread, so they must read only state that is safe to read from another thread (atomics,
 * snapshots). Connections, their idle time and request sizes are bounded (HTTPD_* below).
 *
 * SECURITY: the endpoint has no authentication; bind it to loopback or a management network. */
#ifndef MXC_HTTPD_H
#define MXC_HTTPD_H

#include <stdbool.h>
#include <stddef.h>

#include "prom.h"

#define HTTPD_MAX_CONNECTIONS 16    /* scrapers and probes at once; more are refused */
#define HTTPD_CONNECTION_TIMEOUT_S 10 /* an idle or slow connection is closed after this */
#define HTTPD_MEMORY_LIMIT (64 * 1024) /* per connection, for the request; replies are built apart */

struct httpd_handlers {
    void *arg;
    /* metrics - appends the daemon's metrics to b. */
    void (*metrics)(void *arg, struct prom_buf *b);
    /* ready - true when the daemon can serve; otherwise false with a one-line reason in why. */
    bool (*ready)(void *arg, char *why, size_t whylen);
};

struct httpd;

/* httpd_start - serves on listen: "HOST:PORT" with an IPv4 address, or "[IPv6]:PORT" (port 0:
 * any free port, see httpd_port). Host names are not resolved. h is copied. NULL with a message
 * in err when the address is malformed or cannot be bound. */
struct httpd *httpd_start(const char *listen, const struct httpd_handlers *h, char *err, size_t errlen);

/* httpd_port - the port actually bound. */
unsigned httpd_port(const struct httpd *d);

/* httpd_stop - stops the thread and closes every connection; NULL-safe. */
void httpd_stop(struct httpd *d);

/* httpd_listen_valid - whether listen is in a form httpd_start accepts (for config checks);
 * with a reason in why when not. "" is not valid (the caller treats it as "off"). */
bool httpd_listen_valid(const char *listen, char *why, size_t whylen);

#endif
