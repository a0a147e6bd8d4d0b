/* The monitoring HTTP endpoint (see httpd.h) on libmicrohttpd's internal polling thread.
 * Owns the daemon and a copy of the handlers; trusts the handlers to be quick and thread-safe,
 * and nothing of the request but its method and path. Replies are built in memory and handed to
 * MHD, so the HTTP thread waits only on its sockets and on the callbacks. */
#include "httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HTTPD_LISTEN_MAX 64 /* "[" + IPv6 (45) + "]:" + port (5), with room to spare */
#define HTTPD_WHY_MAX 256   /* the ready callback's reason */

struct httpd {
    struct MHD_Daemon *mhd;
    struct httpd_handlers h;
    unsigned port;
};

struct listen_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    bool v6;
};

/* show - listen made printable and capped, for messages (it comes from a config file). */
static void show(char *out, size_t outlen, const char *s)
{
    size_t i = 0;

    for (; *s && i + 1 < outlen && i < 80; s++)
        out[i++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
    out[i] = '\0';
}

/* parse_port - 1 to 5 decimal digits up to 65535, nothing after. */
static bool parse_port(const char *s, unsigned *port)
{
    unsigned v = 0;
    size_t n = 0;

    for (; s[n]; n++) {
        if (s[n] < '0' || s[n] > '9' || n >= 5)
            return false;
        v = v * 10 + (unsigned)(s[n] - '0');
    }
    if (n == 0 || v > 65535)
        return false;
    *port = v;
    return true;
}

/* parse_listen - "a.b.c.d:port" or "[v6]:port" into a socket address; false with why. */
static bool parse_listen(const char *listen, struct listen_addr *a, char *why, size_t whylen)
{
    char host[HTTPD_LISTEN_MAX];
    const char *colon, *port_s;
    size_t hostlen;
    unsigned port;

    memset(a, 0, sizeof *a);
    if (!listen || !*listen) {
        snprintf(why, whylen, "empty address");
        return false;
    }
    if (strlen(listen) >= HTTPD_LISTEN_MAX) {
        snprintf(why, whylen, "address too long");
        return false;
    }
    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');
        if (!close) {
            snprintf(why, whylen, "missing ']' after the IPv6 address");
            return false;
        }
        if (close[1] != ':') {
            snprintf(why, whylen, "missing \":PORT\" after the IPv6 address");
            return false;
        }
        hostlen = (size_t)(close - listen - 1);
        memcpy(host, listen + 1, hostlen);
        host[hostlen] = '\0';
        port_s = close + 2;
        a->v6 = true;
    } else {
        colon = strchr(listen, ':');
        if (!colon) {
            snprintf(why, whylen, "missing \":PORT\"");
            return false;
        }
        if (strchr(colon + 1, ':')) {
            snprintf(why, whylen, "an IPv6 address must be written \"[ADDRESS]:PORT\"");
            return false;
        }
        hostlen = (size_t)(colon - listen);
        memcpy(host, listen, hostlen);
        host[hostlen] = '\0';
        port_s = colon + 1;
    }
    if (!parse_port(port_s, &port)) {
        snprintf(why, whylen, "bad port (0 to 65535)");
        return false;
    }
    if (a->v6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->ss;
        if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1) {
            snprintf(why, whylen, "not an IPv6 address (host names are not resolved)");
            return false;
        }
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        a->len = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&a->ss;
        if (inet_pton(AF_INET, host, &s4->sin_addr) != 1) {
            snprintf(why, whylen, "not an IPv4 address (host names are not resolved)");
            return false;
        }
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        a->len = sizeof *s4;
    }
    return true;
}

/* httpd_listen_valid - whether httpd_start accepts the form of listen. */
bool httpd_listen_valid(const char *listen, char *why, size_t whylen)
{
    struct listen_addr a;

    return parse_listen(listen, &a, why, whylen);
}

/* reply - queues a reply whose body MHD copies or frees (mode); false when MHD is out of memory. */
static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *ctype, void *body, size_t len,
                             enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
    enum MHD_Result ret;

    if (!r) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* reply_text - a reply with a constant text body. */
static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *text)
{
    return reply(c, status, "text/plain; charset=utf-8", (void *)text, strlen(text), MHD_RESPMEM_PERSISTENT);
}

/* serve_metrics - the daemon's metrics, or 500 when they could not be built whole. */
static enum MHD_Result serve_metrics(struct httpd *d, struct MHD_Connection *c)
{
    struct prom_buf b;
    char *body;
    size_t len;

    prom_init(&b);
    if (d->h.metrics)
        d->h.metrics(d->h.arg, &b);
    if (b.failed) {
        prom_fini(&b);
        return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "metrics unavailable (out of memory)\n");
    }
    /* The text goes to MHD, which frees it with free() after sending. */
    body = b.data;
    len = b.len;
    b.data = NULL;
    prom_fini(&b);
    return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body, len, MHD_RESPMEM_MUST_FREE);
}

/* serve_ready - 200, or 503 with the ready callback's reason. */
static enum MHD_Result serve_ready(struct httpd *d, struct MHD_Connection *c)
{
    char why[HTTPD_WHY_MAX] = "";
    char body[HTTPD_WHY_MAX + 16];

    if (!d->h.ready || d->h.ready(d->h.arg, why, sizeof why))
        return reply_text(c, MHD_HTTP_OK, "ready\n");
    why[sizeof why - 1] = '\0';
    /* Robustness: the reason is promised to be one line; make sure of it. */
    for (char *p = why; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    snprintf(body, sizeof body, "not ready: %s\n", why[0] ? why : "unknown");
    return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", body, strlen(body),
                 MHD_RESPMEM_MUST_COPY);
}

/* has_body - whether the request announces a body (none of our routes takes one). */
static bool has_body(struct MHD_Connection *c)
{
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH) != NULL ||
           MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL;
}

/* answer - MHD's request handler. A plain GET or HEAD is answered at the second call, once the
 * request is complete, so that the connection can be kept alive for the next scrape. Anything
 * with a body or another method is answered at the first call, which makes MHD close the
 * connection instead of reading a body nobody wants. */
static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_data_size,
                              void **con_cls)
{
    static int seen, answered;
    struct httpd *d = cls;
    bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;

    (void)version;
    (void)upload_data;
    if (*con_cls == &answered) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*con_cls == NULL && get && !has_body(c)) {
        *con_cls = &seen;
        return MHD_YES;
    }
    *con_cls = &answered;
    if (!get)
        return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
    if (strcmp(url, "/metrics") == 0)
        return serve_metrics(d, c);
    if (strcmp(url, "/healthz") == 0)
        return reply_text(c, MHD_HTTP_OK, "ok\n");
    if (strcmp(url, "/readyz") == 0)
        return serve_ready(d, c);
    return reply_text(c, MHD_HTTP_NOT_FOUND, "not found\n");
}

/* bind_error - why a->ss cannot be bound, found by trying it the way MHD does; NULL if it can. */
static const char *bind_error(const struct listen_addr *a)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1, e = 0;

    if (fd < 0)
        return strerror(errno);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (a->v6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) != 0)
        e = errno;
    close(fd);
    return e ? strerror(e) : NULL;
}

/* httpd_start - serves on listen in a thread of its own; NULL with err when it cannot. */
struct httpd *httpd_start(const char *listen, const struct httpd_handlers *h, char *err, size_t errlen)
{
    char shown[HTTPD_LISTEN_MAX + 24], why[128];
    struct listen_addr a;
    struct httpd *d;
    const union MHD_DaemonInfo *info;
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ITC;

    show(shown, sizeof shown, listen ? listen : "");
    if (!parse_listen(listen, &a, why, sizeof why)) {
        snprintf(err, errlen, "invalid listen address \"%s\": %s", shown, why);
        return NULL;
    }
    d = calloc(1, sizeof *d);
    if (!d) {
        snprintf(err, errlen, "cannot listen on %s: out of memory", shown);
        return NULL;
    }
    if (h)
        d->h = *h;
    if (a.v6)
        flags |= MHD_USE_IPv6;
    /* No MHD_USE_ERROR_LOG: MHD would write to stderr; failures are reported through err. */
    d->mhd = MHD_start_daemon(flags, 0, NULL, NULL, answer, d,
                              MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)&a.ss,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned int)HTTPD_MAX_CONNECTIONS,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)HTTPD_CONNECTION_TIMEOUT_S,
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTPD_MEMORY_LIMIT,
                              MHD_OPTION_END);
    if (!d->mhd) {
        int saved = errno;
        /* MHD does not say why; errno may be from any of its calls, so ask bind itself. */
        const char *e = bind_error(&a);
        if (!e)
            e = saved ? strerror(saved) : "the HTTP server did not start";
        snprintf(err, errlen, "cannot listen on %s: %s", shown, e);
        free(d);
        return NULL;
    }
    info = MHD_get_daemon_info(d->mhd, MHD_DAEMON_INFO_BIND_PORT);
    d->port = info ? info->port : 0;
    if (d->port == 0)
        d->port = a.v6 ? ntohs(((struct sockaddr_in6 *)&a.ss)->sin6_port)
                       : ntohs(((struct sockaddr_in *)&a.ss)->sin_port);
    return d;
}

/* httpd_port - the port actually bound. */
unsigned httpd_port(const struct httpd *d)
{
    return d->port;
}

/* httpd_stop - stops the thread and closes every connection; NULL-safe. */
void httpd_stop(struct httpd *d)
{
    if (!d)
        return;
    MHD_stop_daemon(d->mhd);
    free(d);
}
