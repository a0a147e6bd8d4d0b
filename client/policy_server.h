/* policy_server - the event loop of mxcache-policy: Postfix's connections on one side, one
 * libmxcache handle to mxcached on the other, in one thread.
 *
 * Every wait is one zmq_poll over the signal fd, the listening sockets, the connections and the
 * handle's sockets, bounded by the handle's next deadline and the connections' idle deadlines.
 * Requests of one connection are answered in the order they came, however the service's replies
 * arrive. Owns the connections, the handle and (once created) the listeners; borrows the config.
 *
 * SECURITY: every byte from a connection is hostile (policy_proto bounds and checks it); a bad
 * connection is logged and closed, the others go on. The service's replies are checked by
 * libmxcache (size, version, id) and cleaned by policy_proto before Postfix sees them. */
#ifndef MXCACHE_POLICY_SERVER_H
#define MXCACHE_POLICY_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "policy_conf.h"
#include "policy_listen.h"
#include "policy_metrics.h"

#define POLICY_MAX_PIPELINE 16          /* requests of one connection queued at once */
#define POLICY_CONN_IN_MAX 4096         /* bytes read from a connection at a time */
#define POLICY_CONN_OUT_MAX 65536       /* unsent answer bytes before we stop reading requests */
#define POLICY_ACCEPT_BATCH 64          /* connections accepted per listener per round */
#define POLICY_EPOLL_EVENTS 256         /* events taken from epoll per round */
#define POLICY_ACCEPT_PAUSE_MS 100      /* pause of accept() after EMFILE and the like */
#define POLICY_REFUSED_LOG_MS 1000      /* at most one REFUSED line per this interval */

struct policy_stats {
    uint64_t connections;  /* accepted and served */
    uint64_t refused;      /* accepted and closed at once: max_connections */
    uint64_t requests;     /* complete requests */
    uint64_t asked;        /* sent to the service */
    uint64_t answered;     /* answered with the service's decision (written to a connection) */
    uint64_t local_dunno;  /* answered DUNNO at once: state not in service.states (written) */
    uint64_t fallbacks;    /* answered with the fallback (written) */
    uint64_t bad_input;    /* connections closed for bad input */
    uint64_t idle_closed;  /* connections closed after idle_timeout */
};

typedef struct policy_server policy_server;

/* CURVE keys of the hook's connection to the service (Z85 texts), read by the caller from
 * service.server_key and service.key_file while it may still read them. */
struct policy_curve {
    char server_key[41];
    char public_key[41];
    char secret_key[41];
};

/* policy_server_create - a server answering on the listeners (consumed: the server closes them,
 * even on failure) or, with stdio set, on the one connection stdin/stdout (ls must then be NULL).
 * mx_name is copied; curve (NULL: plain ZeroMQ) is copied. Creates the libmxcache handle (which
 * connects in the background), so call it after any fork. NULL with the reason in err. */
policy_server *policy_server_create(const struct policy_conf *conf, struct policy_listener *ls,
                                    size_t nls, int stdio, const char *mx_name,
                                    const struct policy_curve *curve, char *err, size_t errlen);

/* policy_server_run - serves until SIGTERM or SIGINT arrives on sigfd (a signalfd; -1: none) or,
 * with stdio, until the connection ends; then stops accepting, answers what is in flight for at
 * most server.shutdown_timeout and closes every connection. SIGHUP is logged and ignored.
 * Returns 0 or a negative MXC_E* code on a failure of the loop itself (zmq_poll). */
int policy_server_run(policy_server *s, int sigfd);

/* policy_server_stats - the counters so far (a summary of policy_server_metrics); the loop's
 * thread. */
void policy_server_stats(const policy_server *s, struct policy_stats *out);

/* policy_server_metrics - the figures the loop keeps, for the HTTP thread to read (atomics; see
 * policy_metrics.h); valid until policy_server_destroy. */
const struct policy_metrics *policy_server_metrics(const policy_server *s);

/* policy_server_destroy - closes everything; NULL-safe. */
void policy_server_destroy(policy_server *s);

#endif
