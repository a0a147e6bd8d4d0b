/* libmxcache: the client side of the mxcache service.
 *
 * A handle (mxc_client) holds one ZeroMQ DEALER socket per service endpoint and sends each request
 * to the current endpoint; when no reply comes within the failover time it resends the request to
 * the next endpoint, and gives up with MXC_ETIMEDOUT at the request's deadline. ZeroMQ reconnects
 * in the background; a reply is matched to its request by id, so many requests can be in flight at
 * once, and a late or duplicate reply is dropped. Requests and replies are the protobuf-c messages
 * of mxcache.proto (mxcache.pb-c.h is installed beside this header).
 *
 * Two ways to use it:
 *  - synchronous: mxc_call() sends one request and blocks until its reply or its deadline;
 *  - asynchronous: mxc_submit() queues a request with a callback; an event loop adds the handle's
 *    sockets (mxc_pollitems) to its zmq_poll, waits at most mxc_next_timeout_ms(), and then calls
 *    mxc_dispatch(), which runs the callbacks of the replies that arrived and of the requests whose
 *    deadline passed.
 *
 * Thread-safety: a handle may be used by one thread at a time (no locks inside); separate handles
 * are independent and may be used from separate threads. There is no global state. The library
 * never exits, never prints and never logs: every failure is a return code (MXC_E*, mxc_err.h)
 * with a text available from mxc_client_error(). */
#ifndef MXCACHE_H
#define MXCACHE_H

#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "mxc_err.h"
#include "mxcache.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mxc_client mxc_client;

/* Defaults of struct mxc_options, in milliseconds and counts. */
#define MXC_DEFAULT_TIMEOUT_MS 2000        /* a request's whole deadline */
#define MXC_DEFAULT_FAILOVER_MS 500        /* silence after which a request moves to the next endpoint */
#define MXC_DEFAULT_MAX_INFLIGHT 4096      /* requests in flight per handle */
#define MXC_DEFAULT_RECONNECT_MS 100       /* first reconnect interval */
#define MXC_DEFAULT_RECONNECT_MAX_MS 2000  /* reconnect interval backs off up to this */
#define MXC_MAX_ENDPOINTS 16

struct mxc_options {
    int timeout_ms;
    int failover_ms;          /* only used with more than one endpoint */
    int max_inflight;
    int reconnect_ms;
    int reconnect_max_ms;
    /* CURVE: all three or none (NULL: plain ZeroMQ). Z85 texts of 40 characters, copied: the
     * service's public key and this client's key pair (mxcachectl keygen). */
    const char *server_key;
    const char *public_key;
    const char *secret_key;
};

/* mxc_options_init - fills opt with the defaults above. */
MXC_API void mxc_options_init(struct mxc_options *opt);

/* mxc_client_create - a handle for the endpoints (tcp://HOST:PORT or ipc://PATH, in order of
 * preference; the strings are copied). opt NULL means defaults. Does not block and does not wait
 * for a connection. Returns NULL with a message in err (errlen bytes) on invalid arguments or
 * failure to set up a socket. */
MXC_API mxc_client *mxc_client_create(const char *const *endpoints, size_t n,
                                      const struct mxc_options *opt, char *err, size_t errlen);

/* mxc_client_destroy - closes the sockets; callbacks of requests still in flight are called with
 * MXC_ECLOSED before it returns. NULL-safe. */
MXC_API void mxc_client_destroy(mxc_client *c);

/* mxc_client_error - text of the handle's last failure; never NULL, valid until the next call. */
MXC_API const char *mxc_client_error(const mxc_client *c);

/* mxc_call - sends req and waits for its reply, at most the handle's timeout (or timeout_ms when
 * it is > 0). The library sets req->version and req->id (req is otherwise borrowed). On 0, *reply
 * holds the reply. When the service answered with an error reply, returns MXC_ESERVER and *reply
 * still holds it (body error: code and message). The caller frees *reply with mxc_reply_free.
 * Other returns: MXC_ETIMEDOUT, MXC_EINVAL, MXC_ENOMEM, MXC_ETOOBIG, MXC_EIO; *reply is NULL then.
 * Replies to other (asynchronous) requests that arrive meanwhile are dispatched to their callbacks. */
MXC_API int mxc_call(mxc_client *c, Mxcache__Request *req, int timeout_ms, Mxcache__Reply **reply);

/* mxc_reply_free - frees a reply from mxc_call; NULL-safe. */
MXC_API void mxc_reply_free(Mxcache__Reply *reply);

/* Callback of an asynchronous request. status is 0 (reply holds the service's answer),
 * MXC_ESERVER (reply holds the error reply), MXC_ETIMEDOUT or MXC_ECLOSED (reply NULL). The
 * library frees reply after the callback returns; the callback may submit new requests but must
 * not destroy the handle. */
typedef void (*mxc_callback)(void *arg, int status, const Mxcache__Reply *reply);

/* mxc_submit - packs and sends req (setting its version and id; req is borrowed and may be freed
 * on return) and registers cb. timeout_ms > 0 overrides the handle's timeout. Returns 0 and the
 * request id in *id (may be NULL), or MXC_EINVAL, MXC_ENOMEM, MXC_ETOOBIG, or MXC_EAGAIN when
 * max_inflight requests are already pending, or MXC_ECLOSED when called from a callback that
 * mxc_client_destroy runs; on failure cb is never called. */
MXC_API int mxc_submit(mxc_client *c, Mxcache__Request *req, int timeout_ms, mxc_callback cb,
                       void *arg, uint64_t *id);

/* mxc_pollitems - writes the handle's sockets (ZMQ_POLLIN) into items (at most max) and returns
 * how many, for the caller's zmq_poll. */
MXC_API int mxc_pollitems(mxc_client *c, zmq_pollitem_t *items, int max);

/* mxc_fds - the file descriptors (ZMQ_FD) of the handle's sockets, at most max, for a caller
 * that waits with epoll or its own event loop instead of zmq_poll: wait until one is readable
 * (it signals any change, level or edge) or mxc_next_timeout_ms() passes, then mxc_dispatch().
 * Returns how many, or a negative MXC_E* code. */
MXC_API int mxc_fds(mxc_client *c, int *fds, int max);

/* mxc_next_timeout_ms - how long the caller may sleep before mxc_dispatch has work: -1 when
 * nothing is in flight, 0 when a reply is already waiting (ZMQ_FD does not always say so after
 * a send), else the time to the next deadline. */
MXC_API long mxc_next_timeout_ms(mxc_client *c);

/* mxc_dispatch - without blocking, receives every reply waiting on the handle's sockets, runs
 * their callbacks, moves requests whose failover time passed to the next endpoint, and fails
 * those whose deadline passed. Returns the number of callbacks run, or a negative MXC_E* code. */
MXC_API int mxc_dispatch(mxc_client *c);

/* mxc_inflight - requests submitted and not yet answered or timed out. */
MXC_API int mxc_inflight(const mxc_client *c);

/* mxc_connected - 1 when some endpoint has a live connection that could take a request now, 0
 * when none has (the service is down or unreachable: ZMQ_IMMEDIATE lets a socket write only to a
 * completed connection), or a negative MXC_E* code. Does not block. */
MXC_API int mxc_connected(mxc_client *c);

/* mxc_handshake_error - why the last connection attempt to some endpoint failed its ZeroMQ
 * handshake, when none has succeeded since: a wrong server key, a key the service does not
 * list, a CURVE client against a plain service or the reverse. NULL when there is nothing to
 * say. The text (valid until the next call on the handle) names the endpoint. Does not block;
 * mxc_call adds it to the text of a timeout. */
MXC_API const char *mxc_handshake_error(mxc_client *c);

/* mxc_current_endpoint - the endpoint new requests go to first (borrowed string). */
MXC_API const char *mxc_current_endpoint(const mxc_client *c);

#ifdef __cplusplus
}
#endif
#endif
