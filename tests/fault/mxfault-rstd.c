/* mxfault-rstd - an SMTP backend for the fault tests that resets the connection (TCP RST, not a
 * FIN) in the middle of the dialogue: what a crashing or firewalled backend does to a probe.
 * mxtest-smtpd's "drop" closes politely; this one aborts. Self-contained, no project library.
 *
 * USAGE
 *   mxfault-rstd --listen 127.0.0.1:PORT [--reset-at VERB] [--log FILE]
 *   Greets with "220 rstd.test ESMTP", answers EHLO and HELO with 250, and resets the connection
 *   (SO_LINGER 0, close) when a command starting with VERB (default MAIL, case-insensitive)
 *   arrives, before answering it; any other command gets "250 2.0.0 Ok". PORT 0 picks a free
 *   port; the port is printed on stdout as "port=N". Each reset is logged as "reset verb=VERB"
 *   (to FILE, default stderr). SIGTERM or SIGINT: exit 0.
 *
 * SECURITY: listens on 127.0.0.0/8 only; every input line is capped (a longer one resets the
 * connection too); at most MAX_CONNS connections, more are closed at once. Test code. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CONNS 64
#define LINE_MAX_BYTES 1024

static volatile sig_atomic_t stop_flag;

static void on_stop(int sig)
{
    (void)sig;
    stop_flag = 1;
}

struct conn {
    int fd;
    size_t len;
    char buf[LINE_MAX_BYTES];
};

static void say(int fd, const char *s)
{
    ssize_t n = write(fd, s, strlen(s)); /* tiny replies on loopback: never short */
    (void)n;
}

static void reset(struct conn *c, FILE *log, const char *verb)
{
    struct linger l = {.l_onoff = 1, .l_linger = 0};

    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(c->fd);
    c->fd = -1;
    c->len = 0;
    fprintf(log, "reset verb=%s\n", verb);
    fflush(log);
}

/* on_line - one command line (without its line end). */
static void on_line(struct conn *c, const char *line, const char *verb, FILE *log)
{
    if (strncasecmp(line, verb, strlen(verb)) == 0)
        reset(c, log, verb);
    else if (strncasecmp(line, "EHLO", 4) == 0 || strncasecmp(line, "HELO", 4) == 0)
        say(c->fd, "250 rstd.test\r\n");
    else if (strncasecmp(line, "QUIT", 4) == 0)
        say(c->fd, "221 2.0.0 Bye\r\n");
    else
        say(c->fd, "250 2.0.0 Ok\r\n");
}

int main(int argc, char **argv)
{
    const char *listen_at = NULL, *verb = "MAIL", *logpath = NULL;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    struct conn conns[MAX_CONNS];
    struct pollfd pfd[MAX_CONNS + 1];
    struct sigaction sact = {0};
    socklen_t salen = sizeof sa;
    FILE *log = stderr;
    int one = 1, lfd;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--listen") == 0)
            listen_at = argv[i + 1];
        else if (strcmp(argv[i], "--reset-at") == 0)
            verb = argv[i + 1];
        else if (strcmp(argv[i], "--log") == 0)
            logpath = argv[i + 1];
    }
    const char *colon = listen_at ? strrchr(listen_at, ':') : NULL;
    char host[64];
    if (!colon || (size_t)(colon - listen_at) >= sizeof host || argc % 2 != 1) {
        fprintf(stderr, "usage: mxfault-rstd --listen 127.0.0.1:PORT [--reset-at VERB] [--log FILE]\n");
        return 2;
    }
    memcpy(host, listen_at, (size_t)(colon - listen_at));
    host[colon - listen_at] = '\0';
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1 || (ntohl(sa.sin_addr.s_addr) >> 24) != 127) {
        fprintf(stderr, "mxfault-rstd: %s: not a 127.0.0.0/8 address\n", host);
        return 2;
    }
    sa.sin_port = htons((unsigned short)atoi(colon + 1));
    if (logpath && !(log = fopen(logpath, "a"))) {
        perror(logpath);
        return 1;
    }
    sact.sa_handler = on_stop;
    sigaction(SIGTERM, &sact, NULL);
    sigaction(SIGINT, &sact, NULL);
    signal(SIGPIPE, SIG_IGN);
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 64) != 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &salen) != 0) {
        perror("mxfault-rstd: listen");
        return 1;
    }
    printf("port=%u\n", ntohs(sa.sin_port));
    fflush(stdout);
    for (int i = 0; i < MAX_CONNS; i++)
        conns[i].fd = -1;

    while (!stop_flag) {
        pfd[0] = (struct pollfd){.fd = lfd, .events = POLLIN};
        for (int i = 0; i < MAX_CONNS; i++)
            pfd[i + 1] = (struct pollfd){.fd = conns[i].fd, .events = POLLIN};
        if (poll(pfd, MAX_CONNS + 1, 200) < 0)
            continue; /* EINTR: the flag is checked above */
        if (pfd[0].revents & POLLIN) {
            int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
            int slot = -1;
            for (int i = 0; fd >= 0 && i < MAX_CONNS && slot < 0; i++)
                if (conns[i].fd < 0)
                    slot = i;
            if (fd >= 0 && slot < 0) {
                close(fd);
            } else if (fd >= 0) {
                conns[slot].fd = fd;
                conns[slot].len = 0;
                say(fd, "220 rstd.test ESMTP\r\n");
            }
        }
        for (int i = 0; i < MAX_CONNS; i++) {
            struct conn *c = &conns[i];
            if (c->fd < 0 || !(pfd[i + 1].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t n = read(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
            if (n <= 0) {
                if (n < 0 && errno == EINTR)
                    continue;
                close(c->fd);
                c->fd = -1;
                continue;
            }
            c->len += (size_t)n;
            c->buf[c->len] = '\0';
            char *nl;
            while (c->fd >= 0 && (nl = strchr(c->buf, '\n'))) {
                *nl = '\0';
                if (nl > c->buf && nl[-1] == '\r')
                    nl[-1] = '\0';
                on_line(c, c->buf, verb, log);
                if (c->fd < 0)
                    break;
                size_t used = (size_t)(nl + 1 - c->buf);
                memmove(c->buf, nl + 1, c->len - used + 1);
                c->len -= used;
            }
            if (c->fd >= 0 && c->len == sizeof c->buf - 1)
                reset(c, log, "(line too long)");
        }
    }
    for (int i = 0; i < MAX_CONNS; i++)
        if (conns[i].fd >= 0)
            close(conns[i].fd);
    close(lfd);
    return 0;
}
