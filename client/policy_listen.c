/* policy_listen - opening and closing the hook's listening sockets (see policy_listen.h). */
#include "policy_listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "mxc_err.h"

/* unix_in_use - whether something accepts connections on path (a live instance). */
static int unix_in_use(const struct sockaddr_un *sa)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int live;

    if (fd < 0)
        return 0;
    live = connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0;
    close(fd);
    return live;
}

static int open_unix(const struct policy_conf *c, const struct policy_listen_addr *a,
                     struct policy_listener *l, char *err, size_t errlen)
{
    struct sockaddr_un sa;
    struct stat st;
    int fd;

    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", a->path);
    if (lstat(a->path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "unix:%s exists and is not a socket", a->path);
            return MXC_EIO;
        }
        if (unix_in_use(&sa)) {
            snprintf(err, errlen, "unix:%s: another process is listening there", a->path);
            return MXC_EIO;
        }
        unlink(a->path); /* stale socket of a dead instance */
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return MXC_EIO;
    }
    /* Security: the socket is created with the configured permissions, never wider for a moment. */
    mode_t old = umask((mode_t)(0777 & ~c->unix_mode));
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    int e = errno;
    umask(old);
    if (rc != 0 || chmod(a->path, (mode_t)c->unix_mode) != 0 || listen(fd, POLICY_BACKLOG) != 0) {
        if (rc == 0)
            e = errno;
        snprintf(err, errlen, "unix:%s: %s", a->path, strerror(e));
        if (rc == 0)
            unlink(a->path);
        close(fd);
        return MXC_EIO;
    }
    l->fd = fd;
    l->kind = POLICY_LISTEN_UNIX;
    snprintf(l->name, sizeof l->name, "unix:%s", a->path);
    snprintf(l->path, sizeof l->path, "%s", a->path);
    return MXC_OK;
}

/* open_inet - one listener per address of a; appends to l from *n on. */
static int open_inet(const struct policy_listen_addr *a, struct policy_listener *l, size_t *n,
                     char *err, size_t errlen)
{
    struct addrinfo hints, *res = NULL;
    int rc;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    rc = getaddrinfo(a->host, a->port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "%s:%s: %s", a->host, a->port, gai_strerror(rc));
        return MXC_EINVAL;
    }
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        char host[INET6_ADDRSTRLEN] = "?";
        int one = 1, fd;

        if (*n >= POLICY_LISTEN_MAX) {
            snprintf(err, errlen, "more than %d listening sockets", POLICY_LISTEN_MAX);
            freeaddrinfo(res);
            return MXC_EINVAL;
        }
        if (ai->ai_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, host, sizeof host);
        else if (ai->ai_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, host, sizeof host);
        else
            continue;
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            snprintf(err, errlen, "socket: %s", strerror(errno));
            freeaddrinfo(res);
            return MXC_EIO;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (ai->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, POLICY_BACKLOG) != 0) {
            snprintf(err, errlen, "%s%s%s:%s: %s", ai->ai_family == AF_INET6 ? "[" : "", host,
                     ai->ai_family == AF_INET6 ? "]" : "", a->port, strerror(errno));
            close(fd);
            freeaddrinfo(res);
            return MXC_EIO;
        }
        l[*n].fd = fd;
        l[*n].kind = POLICY_LISTEN_INET;
        l[*n].path[0] = '\0';
        snprintf(l[*n].name, sizeof l[*n].name, "%s%s%s:%s", ai->ai_family == AF_INET6 ? "[" : "",
                 host, ai->ai_family == AF_INET6 ? "]" : "", a->port);
        (*n)++;
    }
    freeaddrinfo(res);
    return MXC_OK;
}

int policy_listeners_open(const struct policy_conf *c, struct policy_listener **out, size_t *n,
                          char *err, size_t errlen)
{
    struct policy_listener *l = calloc(POLICY_LISTEN_MAX, sizeof *l);
    size_t k = 0;
    int rc = MXC_OK;

    *out = NULL;
    *n = 0;
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return MXC_ENOMEM;
    }
    for (size_t i = 0; i < c->listen.n && rc == MXC_OK; i++) {
        struct policy_listen_addr a;
        rc = policy_listen_parse(c->listen.items[i], &a, err, errlen);
        if (rc != MXC_OK)
            break;
        if (a.kind == POLICY_LISTEN_UNIX) {
            if (k >= POLICY_LISTEN_MAX) {
                snprintf(err, errlen, "more than %d listening sockets", POLICY_LISTEN_MAX);
                rc = MXC_EINVAL;
                break;
            }
            rc = open_unix(c, &a, &l[k], err, errlen);
            if (rc == MXC_OK)
                k++;
        } else {
            rc = open_inet(&a, l, &k, err, errlen);
        }
    }
    if (rc != MXC_OK) {
        policy_listeners_close(l, k);
        return rc;
    }
    *out = l;
    *n = k;
    return MXC_OK;
}

void policy_listeners_close(struct policy_listener *l, size_t n)
{
    if (!l)
        return;
    for (size_t i = 0; i < n; i++) {
        if (l[i].fd >= 0)
            close(l[i].fd);
        if (l[i].kind == POLICY_LISTEN_UNIX && l[i].path[0])
            unlink(l[i].path);
    }
    free(l);
}
