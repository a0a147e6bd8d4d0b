/* mxcache-policy: the Postfix policy delegation server of mxcache. Postfix asks it through
 * check_policy_service; it forwards the question to mxcached over ZeroMQ and hands the service's
 * answer back word for word, or its fallback when the service cannot answer in time.
 *
 * Options, config, logging and signals live here; the loop is policy_server.c, the protocol
 * policy_proto.c, the settings table policy_conf.h.
 *
 * SECURITY: listens on the addresses of server.listen (loopback TCP by default; unix sockets with
 * server.unix_mode), or serves stdin/stdout with --stdio (Postfix spawn(8)). Every byte from a
 * connection is hostile; a bad connection is closed, never the process. Needs no privileges:
 * refuses to run as root unless told to (server.allow_root, --allow-root); started as root with
 * server.user it reads its key file and opens its listeners, then becomes that user for good
 * (the systemd unit starts it as an unprivileged user to begin with). With service.server_key
 * and service.key_file it talks to the service over CURVE. With
 * --stdio, stderr may be the Postfix connection itself, so logs always go to syslog then.
 * metrics.listen (loopback by default) serves /metrics, /healthz and /readyz without
 * authentication, in a thread of its own that reads only the loop's atomics; --stdio serves none
 * (one process per connection would collide on the port). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "httpd.h"
#include "keyfile.h"
#include "mxc_err.h"
#include "policy_conf.h"
#include "privs.h"
#include "policy_listen.h"
#include "log.h"
#include "policy_metrics.h"
#include "policy_server.h"

#define EXIT_USAGE 2
#define FD_RESERVE 64 /* descriptors beyond the connections: listeners, ZeroMQ, syslog */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mxcache-policy [--config FILE] [--foreground] [--stdio] [--check-config]\n"
            "                      [--print-config] [--user USER] [--allow-root]\n"
            "\n"
            "  -c, --config FILE   read settings from FILE (default: the embedded defaults: listen\n"
            "                      on inet:127.0.0.1:10040, ask tcp://127.0.0.1:10041)\n"
            "  -f, --foreground    do not detach; log to stderr unless log.target says otherwise\n"
            "  -s, --stdio         serve one connection on stdin/stdout (Postfix spawn(8)) and\n"
            "                      exit when it ends; logs go to syslog\n"
            "  -t, --check-config  check the config, print each error with file and line, exit 1\n"
            "                      on errors and 0 when it is valid\n"
            "  -p, --print-config  print the effective settings and exit\n"
            "  -u, --user USER     started as root: listen, then run as USER (server.user)\n"
            "  -R, --allow-root    run as root instead of refusing to (server.allow_root)\n"
            "  -V, --version       print the version and exit\n"
            "\n"
            "Signals: TERM/INT stop accepting, answer what is in flight (at most\n"
            "server.shutdown_timeout) and exit; HUP is ignored (restart to change settings).\n");
}

static struct policy_conf *load(const char *path)
{
    struct policy_conf_errors errs = {0};
    struct policy_conf *c = path ? policy_conf_load(path, &errs) : policy_conf_defaults();

    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "mxcache-policy: %s\n", errs.msg[i]);
    if (!c && errs.n == 0)
        fprintf(stderr, "mxcache-policy: out of memory\n");
    policy_conf_errors_fini(&errs);
    return c;
}

/* raise_fd_limit - makes room for max_connections descriptors, up to the hard limit. */
static void raise_fd_limit(const struct policy_conf *c)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)c->max_connections + FD_RESERVE;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
        return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < want)
        log_msg(LOG_WARNING, "FD_LIMIT", "open_files=%llu needed=%llu",
                   (unsigned long long)rl.rlim_cur, (unsigned long long)want);
}

/* list_text - "a,b,c" of a settings list, for the START line. */
static char *list_text(const struct policy_conf_list *l, char *buf, size_t buflen)
{
    size_t o = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < l->n && o < buflen; i++) {
        int n = snprintf(buf + o, buflen - o, "%s%s", i ? "," : "", l->items[i]);
        if (n < 0)
            break;
        o += (size_t)n;
    }
    return buf;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"foreground", no_argument, NULL, 'f'},
        {"stdio", no_argument, NULL, 's'},        {"check-config", no_argument, NULL, 't'},
        {"print-config", no_argument, NULL, 'p'}, {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},         {"user", required_argument, NULL, 'u'},
        {"allow-root", no_argument, NULL, 'R'},   {NULL, 0, NULL, 0},
    };
    const char *user = NULL;
    bool allow_root = false;
    struct privs privs;
    struct policy_curve curve;
    bool use_curve = false;
    const char *path = NULL;
    bool foreground = false, stdio = false, check = false, print = false;
    struct policy_listener *ls = NULL;
    size_t nls = 0;
    char err[512], host[256], lbuf[512], ebuf[512];
    sigset_t sigs;
    int c;

    while ((c = getopt_long(argc, argv, "c:fstpVhu:R", opts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'f': foreground = true; break;
        case 's': stdio = true; break;
        case 't': check = true; break;
        case 'p': print = true; break;
        case 'u': user = optarg; break;
        case 'R': allow_root = true; break;
        case 'V': printf("mxcache-policy %s\n", MXCACHE_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    struct policy_conf *cf = load(path);
    if (!cf)
        return 1;
    /* The key files are read here, while they still can be (before any change of user), and
     * --check-config reads them too. */
    memset(&curve, 0, sizeof curve);
    if (cf->key_file[0]) {
        struct keyfile kf;
        const char *setting = "key_file";
        int rc = keyfile_read(cf->key_file, true, &kf, err, sizeof err);
        if (rc == MXC_OK) {
            setting = "server_key";
            rc = keyfile_public(cf->server_key, curve.server_key, NULL, 0, err, sizeof err);
        }
        if (rc != MXC_OK) {
            fprintf(stderr, "mxcache-policy: service.%s: %s\n", setting, err);
            memset(&kf, 0, sizeof kf);
            policy_conf_free(cf);
            return 1;
        }
        memcpy(curve.public_key, kf.public_key, sizeof curve.public_key);
        memcpy(curve.secret_key, kf.secret_key, sizeof curve.secret_key);
        memset(&kf, 0, sizeof kf);
        use_curve = true;
    }
    if (check || print) {
        if (print)
            policy_conf_print(cf, stdout);
        else
            printf("%s: OK\n", path ? path : "(embedded defaults)");
        memset(&curve, 0, sizeof curve);
        policy_conf_free(cf);
        return 0;
    }
    if (privs_plan(user ? user : cf->user, allow_root || cf->allow_root, &privs, err, sizeof err) != MXC_OK) {
        fprintf(stderr, "mxcache-policy: %s\n", err);
        policy_conf_free(cf);
        return 1;
    }

    const char *mx_name = cf->mx_name;
    if (!*mx_name) {
        if (gethostname(host, sizeof host) != 0)
            snprintf(host, sizeof host, "unknown");
        host[sizeof host - 1] = '\0';
        mx_name = host;
    }
    int target = cf->log_target;
    if (stdio)
        target = PCONF_TARGET_SYSLOG; /* Security: stderr may be the Postfix connection */
    else if (target == PCONF_TARGET_AUTO)
        target = foreground && !log_stderr_is_journal() ? PCONF_TARGET_STDERR : PCONF_TARGET_SYSLOG;
    log_open("mxcache-policy", target == PCONF_TARGET_SYSLOG ? LOG_TO_SYSLOG : LOG_TO_STDERR,
                    policy_conf_facility(cf), policy_conf_level(cf));
    umask(027);
    raise_fd_limit(cf);
    signal(SIGPIPE, SIG_IGN);

    /* Signals come through a signalfd in the loop. They are blocked before anything listens
     * (a SIGTERM that arrives as soon as a client can connect must not kill the process
     * unannounced) and before ZeroMQ's threads start, which inherit the mask. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    if (!stdio && policy_listeners_open(cf, &ls, &nls, err, sizeof err) != MXC_OK) {
        fprintf(stderr, "mxcache-policy: cannot listen: %s\n", err);
        log_msg(LOG_ERR, "FATAL", "error=\"cannot listen: %s\"", err);
        policy_conf_free(cf);
        return 1;
    }
    const char *mlisten = stdio ? "" : cf->metrics_listen;
    if (stdio && cf->metrics_listen[0])
        log_msg(LOG_DEBUG, "METRICS_OFF", "reason=stdio listen=%s", cf->metrics_listen);
    /* The endpoint's thread would not survive daemon(): it starts after it, but a bind that is
     * bound to fail is tried here, while the operator still sees the error and the exit code. */
    if (!foreground && mlisten[0]) {
        struct httpd_handlers none = {0};
        struct httpd *probe = httpd_start(mlisten, &none, err, sizeof err);
        if (!probe) {
            fprintf(stderr, "mxcache-policy: cannot serve metrics on %s: %s\n", mlisten, err);
            log_msg(LOG_ERR, "FATAL", "error=\"cannot serve metrics on %s: %s\"", mlisten, err);
            policy_listeners_close(ls, nls);
            policy_conf_free(cf);
            return 1;
        }
        httpd_stop(probe);
    }
    /* Detach before ZeroMQ starts its threads, which a fork would not carry over. */
    if (!foreground && !stdio && daemon(1, 0) != 0) {
        fprintf(stderr, "mxcache-policy: cannot detach: %s\n", strerror(errno));
        policy_listeners_close(ls, nls);
        policy_conf_free(cf);
        return 1;
    }
    /* Security: the listeners are open and the keys read; nothing past this point needs root. */
    if (privs_drop(&privs, err, sizeof err) != MXC_OK) {
        fprintf(stderr, "mxcache-policy: %s\n", err);
        log_msg(LOG_ERR, "FATAL", "error=\"%s\"", err);
        policy_listeners_close(ls, nls);
        policy_conf_free(cf);
        return 1;
    }
    if (privs.drop)
        log_msg(LOG_INFO, "PRIVILEGES", "user=%s uid=%u gid=%u", privs.user, (unsigned)privs.uid,
                (unsigned)privs.gid);
    int sigfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sigfd < 0) {
        log_msg(LOG_ERR, "FATAL", "error=\"signalfd: %s\"", strerror(errno));
        policy_listeners_close(ls, nls);
        policy_conf_free(cf);
        return 1;
    }

    for (size_t i = 0; i < nls; i++)
        log_msg(LOG_INFO, "LISTEN", "address=%s", ls[i].name);
    policy_server *srv = policy_server_create(cf, ls, nls, stdio, mx_name, use_curve ? &curve : NULL,
                                              err, sizeof err);
    memset(&curve, 0, sizeof curve);
    if (!srv) { /* the listeners are closed by now */
        if (!stdio && foreground)
            fprintf(stderr, "mxcache-policy: %s\n", err);
        log_msg(LOG_ERR, "FATAL", "error=\"%s\"", err);
        close(sigfd);
        policy_conf_free(cf);
        return 1;
    }
    struct httpd *http = NULL;
    if (mlisten[0]) {
        struct httpd_handlers h;
        policy_metrics_handlers(policy_server_metrics(srv), &h);
        http = httpd_start(mlisten, &h, err, sizeof err);
        if (!http) {
            if (foreground)
                fprintf(stderr, "mxcache-policy: cannot serve metrics on %s: %s\n", mlisten, err);
            log_msg(LOG_ERR, "FATAL", "error=\"cannot serve metrics on %s: %s\"", mlisten, err);
            policy_server_destroy(srv);
            close(sigfd);
            policy_conf_free(cf);
            return 1;
        }
        log_msg(LOG_INFO, "METRICS", "address=%s port=%u", mlisten, httpd_port(http));
    }
    log_msg(stdio ? LOG_DEBUG : LOG_NOTICE, "START",
               "version=%s config=%s mode=%s listen=%s service=%s security=%s timeout_ms=%llu fallback=%s mx_name=%s",
               MXCACHE_VERSION, path ? path : "(embedded defaults)", stdio ? "stdio" : "daemon",
               stdio ? "-" : list_text(&cf->listen, lbuf, sizeof lbuf),
               list_text(&cf->endpoints, ebuf, sizeof ebuf), use_curve ? "curve" : "none",
               (unsigned long long)cf->timeout,
               cf->fallback == PCONF_FALLBACK_DUNNO ? "dunno" : "defer", mx_name);

    int rc = policy_server_run(srv, sigfd);
    struct policy_stats st;
    policy_server_stats(srv, &st);
    httpd_stop(http); /* before the figures it reads go */
    policy_server_destroy(srv);
    close(sigfd);
    log_msg(stdio ? LOG_DEBUG : LOG_NOTICE, "EXIT",
               "result=%s connections=%llu refused=%llu requests=%llu asked=%llu answered=%llu "
               "local_dunno=%llu fallbacks=%llu bad_input=%llu idle_closed=%llu",
               rc == MXC_OK ? "clean" : mxc_strerror(rc), (unsigned long long)st.connections,
               (unsigned long long)st.refused, (unsigned long long)st.requests,
               (unsigned long long)st.asked, (unsigned long long)st.answered,
               (unsigned long long)st.local_dunno, (unsigned long long)st.fallbacks,
               (unsigned long long)st.bad_input, (unsigned long long)st.idle_closed);
    log_close();
    policy_conf_free(cf);
    return rc == MXC_OK ? 0 : 1;
}
