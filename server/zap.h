/* zap - the ZeroMQ authentication handler (ZAP, ZeroMQ RFC 27) of mxcached's ROUTER socket and
 * the count of its connections, in a thread of its own.
 *
 * libzmq asks ZAP once per new connection, after the CURVE handshake has proved that the client
 * holds the secret key of the public key it shows: the handler answers 200 with the key (Z85) as
 * the connection's User-Id when the key is listed in the current policy's table (auth.h) and the
 * address is allowed, else 400: libzmq sends the client an ERROR with that status (never our
 * reason: the client cannot tell a key from an address or a limit) and closes the connection.
 * Without CURVE the handler still sees every connection (the NULL mechanism) and applies the
 * address allowlist and the connection limits.
 *
 * Connection limits: a socket monitor reports every accepted and every closed connection (by file
 * descriptor); the handler keeps the count in all and per client address and refuses a handshake
 * past server.max_connections or (tcp only) server.max_connections_per_client. ZeroMQ has no way to refuse
 * a TCP connection before its handshake, so a refused one costs one accept and one close.
 *
 * Owns its thread and sockets; reads the policy through service_cfg_acquire. Denials are logged
 * (AUTH lines, at most ZAP_LOG_PER_SECOND a second, then a count of the ones left out). */
#ifndef MXCACHED_ZAP_H
#define MXCACHED_ZAP_H

#include <stddef.h>

#include "counters.h"

struct service;
struct zap;

#define ZAP_DOMAIN "mxcache"
#define ZAP_LOG_PER_SECOND 10

/* zap_start - binds the ZAP endpoint in zctx and starts watching router (not yet bound: the
 * handler must exist before the first connection, or libzmq would let it in unasked). Limits
 * come from the service's current config. Returns NULL with err filled. */
struct zap *zap_start(struct service *svc, void *zctx, void *router, char *err, size_t errlen);

/* zap_counters - the thread's counters (connections, denials, limit hits). */
struct counters *zap_counters(struct zap *z);

/* zap_stop - stops and joins the thread, closes its sockets; call before the router is closed.
 * NULL-safe. */
void zap_stop(struct zap *z);

#endif
