/* mxbench-null-policy - the reference Postfix policy server of the benchmarks: it reads each
 * policy request (attribute lines up to an empty line) and answers "action=DUNNO" at once,
 * deciding nothing. What mxcache-bench --protocol policy measures against it is the limit of the
 * policy protocol path on this machine (sockets, parsing, one answer per request), the reference
 * for mxcache-policy in front of mxcached (tools/bench/compare.sh).
 *
 * Usage: mxbench-null-policy --listen HOST:PORT
 *   HOST an IPv4 address (127.0.0.1 for the benchmarks); one epoll loop, non-blocking sockets.
 * Prints "listening HOST:PORT" once bound; SIGTERM or SIGINT stops it (exit 0). Exit 1 when it
 * cannot listen, 2 on a bad command line.
 *
 * Limits: NULL_MAX_CONNS connections (more are closed at once), NULL_MAX_REQUEST bytes of one
 * request (a longer one closes its connection), answers to pipelined requests queue up to
 * NULL_MAX_OUT bytes per connection. SECURITY: a benchmark tool; bind it to loopback. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define NULL_MAX_CONNS 4096
#define NULL_MAX_REQUEST 16384   /* as mxcache-policy's server.max_request */
#define NULL_MAX_OUT 65536
#define NULL_EVENTS 256

static const char answer[] = "action=DUNNO\n\n";

struct conn {
    int fd;
    size_t in_len, out_len, out_off;
    char in[NULL_MAX_REQUEST];
    char out[NULL_MAX_OUT];
};

static int usage(void)
{
    fprintf(stderr, "usage: mxbench-null-policy --listen HOST:PORT\n");
    return 2;
}

static void conn_close(int ep, struct conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

/* flush - writes what is queued; false when the connection failed. */
static bool flush(int ep, struct conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0) {
            if (errno == EAGAIN) {
                struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                return true;
            }
            return errno == EINTR ? true : false;
        }
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    return true;
}

/* serve - reads what is waiting, answers every complete request; false: close. */
static bool serve(int ep, struct conn *c)
{
    for (;;) {
        if (c->in_len == sizeof c->in)
            return false; /* a request over NULL_MAX_REQUEST */
        ssize_t n = read(c->fd, c->in + c->in_len, sizeof c->in - c->in_len);
        if (n == 0)
            return false;
        if (n < 0)
            return errno == EAGAIN || errno == EINTR;
        size_t scan = c->in_len > 0 ? c->in_len - 1 : 0, start = 0;
        c->in_len += (size_t)n;
        /* A request ends with an empty line: "\n\n". */
        for (size_t i = scan; i + 1 < c->in_len; i++) {
            if (c->in[i] == '\n' && c->in[i + 1] == '\n') {
                if (c->out_len + sizeof answer - 1 > sizeof c->out)
                    return false; /* the client does not read its answers */
                memcpy(c->out + c->out_len, answer, sizeof answer - 1);
                c->out_len += sizeof answer - 1;
                start = i + 2;
                i++;
            }
        }
        memmove(c->in, c->in + start, c->in_len - start);
        c->in_len -= start;
        if (c->out_len > c->out_off && !flush(ep, c))
            return false;
    }
}

int main(int argc, char **argv)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sigset_t sigs;
    int one = 1, nconns = 0;

    if (argc != 3 || strcmp(argv[1], "--listen") != 0)
        return usage();
    char host[64];
    const char *colon = strrchr(argv[2], ':');
    if (!colon || (size_t)(colon - argv[2]) >= sizeof host)
        return usage();
    memcpy(host, argv[2], (size_t)(colon - argv[2]));
    host[colon - argv[2]] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 1 || port > 65535 || inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return usage();
    sa.sin_port = htons((uint16_t)port);

    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sigfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (sigfd < 0 || lfd < 0 || ep < 0) {
        fprintf(stderr, "mxbench-null-policy: setup failed: %s\n", strerror(errno));
        return 1;
    }
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 1024) != 0) {
        fprintf(stderr, "mxbench-null-policy: cannot listen on %s: %s\n", argv[2], strerror(errno));
        return 1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    ev.data.ptr = &sigfd;
    epoll_ctl(ep, EPOLL_CTL_ADD, sigfd, &ev);
    printf("listening %s\n", argv[2]);
    fflush(stdout);

    struct epoll_event evs[NULL_EVENTS];
    for (bool running = true; running;) {
        int n = epoll_wait(ep, evs, NULL_EVENTS, -1);
        if (n < 0 && errno != EINTR)
            break;
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &sigfd) {
                running = false;
            } else if (!evs[i].data.ptr) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    struct conn *c = nconns < NULL_MAX_CONNS ? malloc(sizeof *c) : NULL;
                    if (!c) {
                        close(fd);
                        continue;
                    }
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c->fd = fd;
                    c->in_len = c->out_len = c->out_off = 0;
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                    nconns++;
                }
            } else {
                struct conn *c = evs[i].data.ptr;
                bool ok = true;
                if (evs[i].events & EPOLLOUT)
                    ok = flush(ep, c);
                if (ok && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                    ok = serve(ep, c);
                if (!ok) {
                    conn_close(ep, c);
                    nconns--;
                }
            }
        }
    }
    close(lfd);
    close(ep);
    close(sigfd);
    return 0;
}
