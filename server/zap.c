/* The ZAP handler and connection counter of mxcached (zap.h). */
#include "zap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <zmq.h>

#include "auth.h"
#include "log.h"
#include "mxc_err.h"
#include "service_int.h"
#include "strmap.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01" /* fixed by the ZAP specification */
#define ZAP_FRAMES 7                          /* of a request: version .. credentials */
#define ZAP_ADDR_MAX 64                       /* an address as text, with room to spare */
#define ZAP_LOCAL "local"                     /* the client "address" of ipc connections */

struct zap {
    struct service *svc;
    void *router;      /* watched only; owned by the service */
    void *rep;         /* ZAP requests */
    void *monitor;     /* events of the router's connections */
    void *ctl_main, *ctl_zap;
    pthread_t thread;
    bool started;
    char monitor_ep[64];
    struct counters ctr;
    /* The thread's own: the client address of each open connection by descriptor, and the
     * count of open connections per address. */
    char (*fd_addr)[ZAP_ADDR_MAX];
    size_t fd_cap;
    strmap *per_addr;
    uint64_t open;
    /* Rate limit of the AUTH lines. */
    time_t log_second;
    unsigned log_count, log_left_out;
};

/* canon_addr - an IP address as one text whatever its source (getpeername, ZAP): IPv4-mapped
 * IPv6 becomes plain IPv4; anything not an address, ipc included, is ZAP_LOCAL. */
static void canon_addr(const char *in, char out[ZAP_ADDR_MAX])
{
    uint8_t a6[16];
    struct in_addr a4;

    if (inet_pton(AF_INET, in, &a4) == 1) {
        inet_ntop(AF_INET, &a4, out, ZAP_ADDR_MAX);
        return;
    }
    if (inet_pton(AF_INET6, in, a6) != 1) {
        snprintf(out, ZAP_ADDR_MAX, "%s", ZAP_LOCAL);
        return;
    }
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(a6, mapped, 12) == 0)
        inet_ntop(AF_INET, a6 + 12, out, ZAP_ADDR_MAX);
    else
        inet_ntop(AF_INET6, a6, out, ZAP_ADDR_MAX);
}

/* peer_addr - the canonical client address of a connected descriptor. */
static void peer_addr(int fd, char out[ZAP_ADDR_MAX])
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char text[INET6_ADDRSTRLEN] = "";

    /* Robustness: the event is read after the fact; a descriptor already closed (or reused by a
     * connection whose own events come later, in order) still gets a consistent entry. */
    if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, text, sizeof text);
        else if (ss.ss_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, text, sizeof text);
    }
    canon_addr(text, out);
}

static uint64_t addr_count(struct zap *z, const char *addr)
{
    uint64_t n = 0;
    strmap_get(z->per_addr, addr, strlen(addr), &n);
    return n;
}

static void addr_add(struct zap *z, const char *addr, int delta)
{
    uint64_t n = addr_count(z, addr);

    if (delta < 0 && n <= 1)
        strmap_del(z->per_addr, addr, strlen(addr));
    else if (strmap_put(z->per_addr, addr, strlen(addr), delta < 0 ? n - 1 : n + 1) != MXC_OK)
        log_msg(LOG_WARNING, "AUTH", "error=\"out of memory counting connections\"");
}

/* on_event - one monitor event: counts of connections opened and closed. */
static void on_event(struct zap *z, uint16_t event, uint32_t value)
{
    int fd = (int)value;

    if (fd < 0)
        return;
    if (event == ZMQ_EVENT_ACCEPTED) {
        if ((size_t)fd >= z->fd_cap) {
            size_t cap = (size_t)fd * 2 + 64;
            char (*p)[ZAP_ADDR_MAX] = realloc(z->fd_addr, cap * sizeof *p);
            if (!p)
                return;
            memset(p + z->fd_cap, 0, (cap - z->fd_cap) * sizeof *p);
            z->fd_addr = p;
            z->fd_cap = cap;
        }
        peer_addr(fd, z->fd_addr[fd]);
        addr_add(z, z->fd_addr[fd], +1);
        z->open++;
        ctr_add(&z->ctr, CTR_CONNECTIONS, 1);
    } else if (event == ZMQ_EVENT_DISCONNECTED) {
        if ((size_t)fd >= z->fd_cap || !z->fd_addr[fd][0])
            return; /* a connection of ours never counted (connects are not watched) */
        addr_add(z, z->fd_addr[fd], -1);
        z->fd_addr[fd][0] = '\0';
        if (z->open > 0)
            z->open--;
    }
    ctr_set(&z->ctr, CTR_GAUGE_CONNECTIONS, z->open);
}

static void drain_monitor(struct zap *z)
{
    for (;;) {
        zmq_msg_t m;
        uint8_t head[6];
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, z->monitor, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        bool ok = zmq_msg_size(&m) == sizeof head;
        if (ok)
            memcpy(head, zmq_msg_data(&m), sizeof head);
        /* The second frame is the endpoint: not needed. */
        while (zmq_msg_more(&m)) {
            zmq_msg_close(&m);
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, z->monitor, 0) < 0)
                break;
        }
        zmq_msg_close(&m);
        if (ok) {
            uint16_t event;
            uint32_t value;
            memcpy(&event, head, 2);
            memcpy(&value, head + 2, 4);
            on_event(z, event, value);
        }
    }
}

/* log_denial - an AUTH line, within the rate limit. */
__attribute__((format(printf, 2, 3))) static void log_denial(struct zap *z, const char *fmt, ...)
{
    time_t now = time(NULL);
    char line[512];
    va_list ap;

    if (now != z->log_second) {
        if (z->log_left_out)
            log_msg(LOG_WARNING, "AUTH", "result=denied left_out=%u reason=\"rate limit of the log\"",
                    z->log_left_out);
        z->log_second = now;
        z->log_count = 0;
        z->log_left_out = 0;
    }
    if (z->log_count >= ZAP_LOG_PER_SECOND) {
        z->log_left_out++;
        return;
    }
    z->log_count++;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    log_msg(LOG_WARNING, "AUTH", "%s", line);
}

/* decide - the answer to one ZAP request: status code, text and user id. */
static const char *decide(struct zap *z, const char *mechanism, const char *address,
                          const uint8_t *cred, size_t credlen, char *user, size_t userlen,
                          const char **text)
{
    struct cfgref *ref = service_cfg_acquire(z->svc);
    const struct config *cfg = ref->pol->cfg;
    const struct auth *a = ref->pol->auth;
    const char *code = "200";
    char addr[ZAP_ADDR_MAX], key[KEYFILE_Z85_LEN + 1] = "";

    user[0] = '\0';
    *text = "OK";
    canon_addr(address, addr);
    if (strcmp(mechanism, "CURVE") == 0 && credlen == 32)
        zmq_z85_encode(key, cred, 32);
    const struct auth_key *k = a->curve ? auth_find(a, key) : NULL;
    bool local = strcmp(addr, ZAP_LOCAL) == 0;
    if (!auth_address_allowed(a, local ? "" : addr)) {
        code = "400";
        *text = "address not allowed";
        ctr_add(&z->ctr, CTR_AUTH_DENIED_ADDRESS, 1);
        log_denial(z, "result=denied reason=address address=%s mechanism=%s", addr, mechanism);
    } else if (a->curve && !k) {
        code = "400";
        *text = "unknown key";
        ctr_add(&z->ctr, CTR_AUTH_DENIED_KEY, 1);
        log_denial(z, "result=denied reason=unknown_key address=%s mechanism=%s key=%s", addr,
                   mechanism, key[0] ? key : "-");
    } else if (z->open > (uint64_t)cfg->max_connections) {
        code = "400";
        *text = "too many connections";
        ctr_add(&z->ctr, CTR_LIMIT_CONNECTIONS, 1);
        log_denial(z, "result=denied reason=max_connections address=%s open=%llu", addr,
                   (unsigned long long)z->open);
    } else if (!local && addr_count(z, addr) > (uint64_t)cfg->max_connections_per_client) {
        /* ipc clients are local processes of the service host, each one a "client" of its own
         * that an address cannot tell apart: only max_connections bounds them. */
        code = "400";
        *text = "too many connections from this address";
        ctr_add(&z->ctr, CTR_LIMIT_CONNECTIONS_CLIENT, 1);
        log_denial(z, "result=denied reason=max_connections_per_client address=%s open=%llu", addr,
                   (unsigned long long)addr_count(z, addr));
    } else if (k) {
        snprintf(user, userlen, "%s", key);
        log_msg(LOG_DEBUG, "AUTH", "result=ok name=%s admin=%s address=%s", k->name,
                k->admin ? "yes" : "no", addr);
    }
    service_cfgref_release(ref);
    return code;
}

/* handle_request - reads one ZAP request (all its frames) and answers it. */
static void handle_request(struct zap *z)
{
    zmq_msg_t f[ZAP_FRAMES];
    size_t n = 0;
    bool more = true;

    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, z->rep, 0) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (n < ZAP_FRAMES) {
            zmq_msg_init(&f[n]);
            zmq_msg_move(&f[n++], &m);
        }
        zmq_msg_close(&m);
    }
    char version[8] = "", mech[16] = "", addr[ZAP_ADDR_MAX] = "", user[KEYFILE_Z85_LEN + 1];
    const char *code = "500", *text = "malformed ZAP request";
    if (n >= 6) {
        snprintf(version, sizeof version, "%.*s", (int)zmq_msg_size(&f[0]), (char *)zmq_msg_data(&f[0]));
        snprintf(addr, sizeof addr, "%.*s", (int)zmq_msg_size(&f[3]), (char *)zmq_msg_data(&f[3]));
        snprintf(mech, sizeof mech, "%.*s", (int)zmq_msg_size(&f[5]), (char *)zmq_msg_data(&f[5]));
    }
    user[0] = '\0';
    if (n >= 6 && strcmp(version, "1.0") == 0) {
        drain_monitor(z); /* this connection's own ACCEPTED came before its handshake */
        code = decide(z, mech, addr, n >= 7 ? zmq_msg_data(&f[6]) : NULL, n >= 7 ? zmq_msg_size(&f[6]) : 0,
                      user, sizeof user, &text);
    }
    zmq_send(z->rep, "1.0", 3, ZMQ_SNDMORE);
    if (n >= 2)
        zmq_send(z->rep, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), ZMQ_SNDMORE);
    else
        zmq_send(z->rep, "", 0, ZMQ_SNDMORE);
    zmq_send(z->rep, code, 3, ZMQ_SNDMORE);
    zmq_send(z->rep, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(z->rep, user, strlen(user), ZMQ_SNDMORE);
    zmq_send(z->rep, "", 0, 0);
    for (size_t i = 0; i < n; i++)
        zmq_msg_close(&f[i]);
}

static void *zap_main(void *arg)
{
    struct zap *z = arg;
    zmq_pollitem_t items[3] = {
        {.socket = z->ctl_zap, .events = ZMQ_POLLIN},
        {.socket = z->monitor, .events = ZMQ_POLLIN},
        {.socket = z->rep, .events = ZMQ_POLLIN},
    };

    for (;;) {
        if (zmq_poll(items, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (items[0].revents & ZMQ_POLLIN)
            break;
        if (items[1].revents & ZMQ_POLLIN)
            drain_monitor(z);
        if (items[2].revents & ZMQ_POLLIN)
            handle_request(z);
    }
    return NULL;
}

struct zap *zap_start(struct service *svc, void *zctx, void *router, char *err, size_t errlen)
{
    struct zap *z = calloc(1, sizeof *z);
    char ctl_ep[64];
    int zero = 0, rc;

    if (!z || !(z->per_addr = strmap_create())) {
        snprintf(err, errlen, "out of memory");
        free(z);
        return NULL;
    }
    z->svc = svc;
    z->router = router;
    counters_init(&z->ctr);
    snprintf(z->monitor_ep, sizeof z->monitor_ep, "inproc://zap-monitor-%p", (void *)z);
    snprintf(ctl_ep, sizeof ctl_ep, "inproc://zap-ctl-%p", (void *)z);
    z->rep = zmq_socket(zctx, ZMQ_REP);
    z->monitor = zmq_socket(zctx, ZMQ_PAIR);
    z->ctl_main = zmq_socket(zctx, ZMQ_PAIR);
    z->ctl_zap = zmq_socket(zctx, ZMQ_PAIR);
    if (!z->rep || !z->monitor || !z->ctl_main || !z->ctl_zap)
        goto fail;
    zmq_setsockopt(z->rep, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(z->monitor, ZMQ_LINGER, &zero, sizeof zero);
    /* Robustness: monitor events must never be dropped, or the counts drift. */
    zmq_setsockopt(z->monitor, ZMQ_RCVHWM, &zero, sizeof zero);
    if (zmq_bind(z->rep, ZAP_ENDPOINT) != 0 ||
        zmq_socket_monitor(router, z->monitor_ep, ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) != 0 ||
        zmq_connect(z->monitor, z->monitor_ep) != 0 || zmq_bind(z->ctl_main, ctl_ep) != 0 ||
        zmq_connect(z->ctl_zap, ctl_ep) != 0)
        goto fail;
    rc = pthread_create(&z->thread, NULL, zap_main, z);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the ZAP thread: %s", strerror(rc));
        zap_stop(z);
        return NULL;
    }
    z->started = true;
    return z;
fail:
    snprintf(err, errlen, "cannot set up the ZAP handler: %s", zmq_strerror(errno));
    zap_stop(z);
    return NULL;
}

struct counters *zap_counters(struct zap *z)
{
    return &z->ctr;
}

void zap_stop(struct zap *z)
{
    if (!z)
        return;
    if (z->started) {
        zmq_send(z->ctl_main, "", 0, 0);
        pthread_join(z->thread, NULL);
    }
    if (z->router)
        zmq_socket_monitor(z->router, NULL, 0);
    if (z->rep)
        zmq_close(z->rep);
    if (z->monitor)
        zmq_close(z->monitor);
    if (z->ctl_main)
        zmq_close(z->ctl_main);
    if (z->ctl_zap)
        zmq_close(z->ctl_zap);
    strmap_destroy(z->per_addr);
    free(z->fd_addr);
    free(z);
}
