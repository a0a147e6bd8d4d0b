/* policy_listen - the listening sockets of mxcache-policy: TCP (IPv4 or IPv6) and unix sockets
 * as server.listen names them, opened non-blocking and close-on-exec.
 *
 * Opened before the daemon detaches, so that a taken port or a bad path is reported on the
 * terminal; closed (unix socket files removed) when the server stops accepting. Owns the socket
 * files it created and nothing else: an existing unix socket is replaced only when nobody answers
 * on it (a stale file of a dead instance). */
#ifndef MXCACHE_POLICY_LISTEN_H
#define MXCACHE_POLICY_LISTEN_H

#include <stddef.h>

#include "policy_conf.h"

#define POLICY_LISTEN_MAX 64  /* sockets in all: a host name may give several addresses */
#define POLICY_BACKLOG 1024   /* listen(2) backlog, capped by net.core.somaxconn */

struct policy_listener {
    int fd;
    enum policy_listen_kind kind;
    char name[300];                   /* "127.0.0.1:10040", "[::1]:10040", "unix:/path" */
    char path[POLICY_PATH_MAX];       /* unix: the file to remove on close */
};

/* policy_listeners_open - one socket per address of every server.listen entry (unix sockets get
 * mode server.unix_mode). Returns 0 and a malloc'd array in *out (*n entries), or MXC_EIO /
 * MXC_EINVAL / MXC_ENOMEM with the reason in err; on failure nothing stays open. */
int policy_listeners_open(const struct policy_conf *c, struct policy_listener **out, size_t *n,
                          char *err, size_t errlen);

/* policy_listeners_close - closes every socket, removes the unix socket files, frees the array.
 * NULL-safe. */
void policy_listeners_close(struct policy_listener *l, size_t n);

#endif
