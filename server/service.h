/* The request loop of mxcached: a ZeroMQ ROUTER socket bound to the configured endpoints, read by
 * the main thread, a WAL sync thread, and a pool of worker threads for admin requests.
 *
 * The main thread reads whatever requests are waiting (up to server.max_batch). Checks, the
 * requests every MX sends for every recipient, are decided right there as one round: no hand-over
 * to another thread and back. The round's writes are committed without waiting for the disk and
 * the sync thread makes them durable while the main thread goes on; a reply that may depend on a
 * write not yet synced waits for the sync (pipelined group commit). Other requests (admin, some
 * of them long scans or a compaction) go to the least busy worker as one multipart message of
 * (peer identity, request) pairs; a worker handles them as one round with its own synced commit
 * and returns the replies. Every request gets exactly one reply.
 *
 * Shutdown (service_run returns): the main thread stops reading new requests, waits until every
 * request taken has been answered (at most server.shutdown_timeout), stops the threads and
 * returns; the caller then closes the store.
 *
 * SECURITY: binds the endpoints in the config (loopback and ipc by default). With
 * security.key_file the ROUTER is a CURVE server: the ZAP handler (zap.h) lets in only the keys
 * and networks of the policy's table (auth.h), and each request is checked against its key's
 * rights before it is served. Requests are hostile input; frames are counted and bounded
 * (ZMQ_MAXMSGSIZE) before they are decoded, and each connection may have at most
 * server.max_inflight_per_client requests unanswered. */
#ifndef MXCACHED_SERVICE_H
#define MXCACHED_SERVICE_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "counters.h"
#include "policy.h"
#include "store.h"
#include "whitelist.h"

struct service;
struct verifier;

/* service_create - makes the ROUTER socket (a CURVE server with security.key_file), starts the
 * ZAP handler and binds every endpoint of pol->cfg->listen: everything that may need the
 * privileges the daemon starts with, and nothing that touches the store. Takes ownership of
 * pol, also on failure. Returns NULL with a message in err when a key or an endpoint fails. */
struct service *service_create(struct policy *pol, char *err, size_t errlen);

/* service_start - after service_create (and after privileges are dropped): the Check handler,
 * the prober, the sync thread and the workers over st and wl (borrowed; they must outlive the
 * service). Returns 0, or an MXC_E* code with err filled; then only service_destroy remains. */
int service_start(struct service *svc, store *st, struct whitelist *wl, char *err, size_t errlen);

/* Actions of a signal callback. */
enum service_signal_action { SERVICE_CONTINUE, SERVICE_STOP };

/* service_run - runs the loop until on_signal (called in the main thread for each signal read
 * from sigfd, a signalfd) returns SERVICE_STOP, then drains as described above. Returns 0, or
 * MXC_ETIMEDOUT when requests were still unanswered at the shutdown deadline. */
int service_run(struct service *svc, int sigfd,
                enum service_signal_action (*on_signal)(void *arg, int signo), void *arg);

/* service_reload - makes pol (ownership taken) the policy of the next rounds; rounds in
 * progress finish with the one they started with. Thread-safe. */
void service_reload(struct service *svc, struct policy *pol);

/* service_config - the current config (borrowed; valid until the next service_reload from the
 * caller's own thread). */
const struct config *service_config(struct service *svc);

/* The monitoring endpoint's view (metrics.c). These may be called from any thread while the
 * service exists, and return only what is safe to read there. */

/* service_ready - whether the service serves: the store open, the request loop running and not
 * draining, every worker alive. Otherwise false with a one-line reason in why. */
bool service_ready(struct service *svc, char *why, size_t whylen);

/* service_counter_sets - the counter sets of every thread (*n of them): the main thread's, the
 * workers', the sync thread's. Fixed for the service's life; sum them with counters_totals. */
struct counters *const *service_counter_sets(const struct service *svc, size_t *n);

/* service_verifier - the prober (NULL without verify.routes); other threads may only use its
 * per-route figures (verifier_route_stats and friends). */
const struct verifier *service_verifier(const struct service *svc);

/* service_store - the store the service was created with (borrowed). */
store *service_store(const struct service *svc);

/* service_destroy - stops and joins the workers if service_run did not, closes the sockets.
 * NULL-safe. */
void service_destroy(struct service *svc);

#endif
