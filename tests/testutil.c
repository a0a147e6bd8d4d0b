/* Helpers shared by the Check tests (see testutil.h). */
#include "testutil.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

void test_sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

long test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

char *test_file_text(const char *path)
{
    FILE *f = fopen(path, "r");
    char *text = NULL;
    size_t cap = 0;

    if (!f || getdelim(&text, &cap, '\0', f) < 0) {
        free(text);
        text = strdup("");
    }
    if (f)
        fclose(f);
    ck_assert_ptr_nonnull(text);
    return text;
}

int test_http_get(unsigned port, const char *path, char **body)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {.tv_sec = TEST_HTTP_MS / 1000, .tv_usec = (TEST_HTTP_MS % 1000) * 1000};
    long deadline = test_now_ms() + TEST_HTTP_MS;
    size_t len = 0, cap = 65536;
    char *buf = malloc(cap), req[256];
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), status = 0;

    ck_assert_ptr_nonnull(buf);
    ck_assert_int_ge(fd, 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0 && send(fd, req, (size_t)n, MSG_NOSIGNAL) == n) {
        while (test_now_ms() < deadline) {
            if (cap - len < 4096) {
                char *p = realloc(buf, cap *= 2);
                ck_assert_ptr_nonnull(p);
                buf = p;
            }
            ssize_t got = recv(fd, buf + len, cap - len - 1, 0);
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0)
                break;
            len += (size_t)got;
        }
    }
    close(fd);
    buf[len] = '\0';
    char *head_end = strstr(buf, "\r\n\r\n");
    if (head_end && sscanf(buf, "HTTP/%*d.%*d %d", &status) != 1)
        status = 0;
    *body = strdup(head_end ? head_end + 4 : "");
    ck_assert_ptr_nonnull(*body);
    free(buf);
    return head_end ? status : 0;
}

double test_metric_sample(const char *text, const char *series)
{
    size_t n = strlen(series);

    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return NAN;
}
