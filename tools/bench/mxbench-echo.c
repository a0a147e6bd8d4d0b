/* mxbench-echo - the reference ZeroMQ request/reply server of the benchmarks: a ROUTER socket
 * that sends every request straight back to its sender, as it came, and does nothing else. What
 * mxcache-bench --echo measures against it is the most any ZeroMQ request/reply service can do
 * on this machine with the same sockets and message sizes: the limit mxcached's Check path is
 * compared to (tools/bench/compare.sh).
 *
 * Usage: mxbench-echo --listen ENDPOINT [--batch N]
 *   ENDPOINT   tcp://HOST:PORT or ipc://PATH (as mxcached's server.listen)
 *   --batch N  messages taken from the socket per wake-up (default 256, as mxcached's
 *              server.max_batch)
 * Prints "listening ENDPOINT" once bound; SIGTERM or SIGINT stops it (exit 0). Exit 1 when the
 * endpoint cannot be bound, 2 on a bad command line.
 *
 * Frames are moved, never copied (zmq_msg_send of the received messages). Sends never block: a
 * peer that does not read its replies loses them at the high-water mark, as with mxcached.
 * SECURITY: a benchmark tool; no authentication. Bind it to loopback or ipc. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <zmq.h>

#define ECHO_DEFAULT_BATCH 256
#define ECHO_MAX_BATCH 65536
#define ECHO_HWM 100000             /* as mxcached's server.socket_hwm */
#define ECHO_MAX_MESSAGE 262144     /* bytes; as the service's transport limit */

static int usage(void)
{
    fprintf(stderr, "usage: mxbench-echo --listen tcp://HOST:PORT|ipc://PATH [--batch N]\n");
    return 2;
}

/* echo_batch - sends back up to batch waiting messages (every frame as it came). */
static void echo_batch(void *sock, int batch)
{
    for (int i = 0; i < batch; i++) {
        zmq_msg_t m;
        bool more = true, first = true;
        while (more) {
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&m);
                if (first)
                    return; /* nothing waiting */
                break;      /* cannot happen: ZeroMQ delivers a message whole */
            }
            first = false;
            more = zmq_msg_more(&m);
            if (zmq_msg_send(&m, sock, (more ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT) < 0)
                zmq_msg_close(&m); /* the peer is gone or does not read: its reply is lost */
        }
    }
}

int main(int argc, char **argv)
{
    const char *listen = NULL;
    int batch = ECHO_DEFAULT_BATCH, hwm = ECHO_HWM, linger = 0, v6 = 1;
    int64_t maxmsg = ECHO_MAX_MESSAGE;
    sigset_t sigs;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen = argv[++i];
        } else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) {
            char *end;
            long n = strtol(argv[++i], &end, 10);
            if (*end || n < 1 || n > ECHO_MAX_BATCH)
                return usage();
            batch = (int)n;
        } else {
            return usage();
        }
    }
    if (!listen)
        return usage();
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* before ZeroMQ's threads, which inherit it */
    int sigfd = signalfd(-1, &sigs, SFD_CLOEXEC);
    void *ctx = zmq_ctx_new();
    void *sock = ctx ? zmq_socket(ctx, ZMQ_ROUTER) : NULL;
    if (sigfd < 0 || !sock) {
        fprintf(stderr, "mxbench-echo: setup failed: %s\n", sigfd < 0 ? strerror(errno) : zmq_strerror(errno));
        return 1;
    }
    zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sock, ZMQ_IPV6, &v6, sizeof v6);
    zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (zmq_bind(sock, listen) != 0) {
        fprintf(stderr, "mxbench-echo: cannot listen on %s: %s\n", listen, zmq_strerror(errno));
        zmq_close(sock);
        zmq_ctx_term(ctx);
        return 1;
    }
    printf("listening %s\n", listen);
    fflush(stdout);
    zmq_pollitem_t items[2] = {{.fd = sigfd, .events = ZMQ_POLLIN}, {.socket = sock, .events = ZMQ_POLLIN}};
    for (;;) {
        if (zmq_poll(items, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (items[0].revents & ZMQ_POLLIN)
            break;
        if (items[1].revents & ZMQ_POLLIN)
            echo_batch(sock, batch);
    }
    zmq_close(sock);
    zmq_ctx_term(ctx);
    close(sigfd);
    return 0;
}
