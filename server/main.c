/* mxcached: the mxcache service. Loads its config, opens the store, mirrors the static
 * whitelists into memory, and serves requests until SIGTERM or SIGINT; SIGHUP reloads the
 * policy settings.
 *
 * SECURITY: listens on the ZeroMQ endpoints of server.listen (loopback tcp by default), with
 * CURVE and a ZAP allowlist of client keys when security.key_file is set (service.c, zap.c);
 * every request is hostile input to service.c and handler.c. Serves /metrics, /healthz and
 * /readyz over HTTP without authentication on metrics.listen (loopback by default; "" turns it
 * off). Refuses to run as root unless told to (server.allow_root, --allow-root); started as root
 * with server.user it reads its keys and binds its endpoints, then becomes that user for good
 * before it opens the store or serves metrics. The systemd unit starts it as the mxcache user. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "keyfile.h"
#include "metrics.h"
#include "privs.h"
#include "policy.h"
#include "log.h"
#include "mxc_err.h"
#include "service.h"
#include "store.h"
#include "whitelist.h"

#define EXIT_USAGE 2

struct daemon_state {
    const char *config_path; /* NULL: embedded defaults */
    struct service *svc;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mxcached [--config FILE] [--foreground] [--check-config] [--print-config]\n"
            "                [--user USER] [--allow-root]\n"
            "\n"
            "  -c, --config FILE   read settings from FILE (default: the embedded defaults;\n"
            "                      see mxcached.conf for every setting)\n"
            "  -f, --foreground    do not detach; log to stderr unless log.target says otherwise\n"
            "  -t, --check-config  check the config, print each error with file and line, exit 1\n"
            "                      on errors and 0 when it is valid\n"
            "  -p, --print-config  print the effective settings and exit\n"
            "  -u, --user USER     started as root: bind, then run as USER (server.user)\n"
            "  -R, --allow-root    run as root instead of refusing to (server.allow_root)\n"
            "  -V, --version       print the version and exit\n"
            "\n"
            "Signals: TERM/INT finish the requests in flight and stop; HUP reloads the settings\n"
            "marked reloadable (a config with errors is refused and the running one stays).\n");
}

static struct config *load(const char *path)
{
    struct config_errors errs = {0};
    struct config *cfg = path ? config_load(path, &errs) : config_defaults();

    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "mxcached: %s\n", errs.msg[i]);
    if (!cfg && errs.n == 0)
        fprintf(stderr, "mxcached: out of memory\n");
    config_errors_fini(&errs);
    return cfg;
}

static void log_reload_error(void *arg, const char *msg)
{
    (void)arg;
    log_msg(LOG_ERR, "RELOAD", "error=\"%s\"", msg);
}

static void print_error(void *arg, const char *msg)
{
    (void)arg;
    fprintf(stderr, "mxcached: %s\n", msg);
}

static void reload(struct daemon_state *ds)
{
    struct config_errors errs = {0};
    const struct config *old = service_config(ds->svc);
    struct config *cfg;
    struct policy *pol;
    char diff[512];

    if (!ds->config_path) {
        log_msg(LOG_NOTICE, "RELOAD", "result=unchanged reason=\"no config file, embedded defaults\"");
        return;
    }
    cfg = config_load(ds->config_path, &errs);
    if (!cfg) {
        for (size_t i = 0; i < errs.n; i++)
            log_msg(LOG_ERR, "RELOAD", "error=\"%s\"", errs.msg[i]);
        log_msg(LOG_ERR, "RELOAD", "result=refused reason=\"config has errors; the running config stays\"");
        config_errors_fini(&errs);
        return;
    }
    config_reload_diff(old, cfg, diff, sizeof diff);
    if (diff[0])
        log_msg(LOG_WARNING, "RELOAD", "restart_needed=\"%s\"", diff);
    /* Settings that only take effect at start keep their running values, so that what the
     * workers read stays consistent with the sockets and threads that exist. */
    if (config_keep_static(cfg, old) != MXC_OK) {
        log_msg(LOG_ERR, "RELOAD", "result=refused reason=\"out of memory\"");
        config_free(cfg);
        return;
    }
    /* What the config names outside itself (the greylist key, whitelist files) is read here, so
     * that a file that cannot be read or has errors refuses the reload like any config error. */
    int level = log_level_from_index(cfg->log_level);
    pol = policy_create(cfg, log_reload_error, NULL);
    if (!pol) {
        log_msg(LOG_ERR, "RELOAD", "result=refused reason=\"config has errors; the running config stays\"");
        return;
    }
    log_set_level(level);
    service_reload(ds->svc, pol);
    log_msg(LOG_NOTICE, "RELOAD", "result=ok file=%s", ds->config_path);
}

static enum service_signal_action on_signal(void *arg, int signo)
{
    struct daemon_state *ds = arg;

    if (signo == SIGHUP) {
        reload(ds);
        return SERVICE_CONTINUE;
    }
    log_msg(LOG_NOTICE, "STOP", "signal=%s", signo == SIGTERM ? "TERM" : "INT");
    return SERVICE_STOP;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},  {"foreground", no_argument, NULL, 'f'},
        {"check-config", no_argument, NULL, 't'},  {"print-config", no_argument, NULL, 'p'},
        {"version", no_argument, NULL, 'V'},       {"help", no_argument, NULL, 'h'},
        {"user", required_argument, NULL, 'u'},    {"allow-root", no_argument, NULL, 'R'},
        {NULL, 0, NULL, 0},
    };
    const char *user = NULL;
    bool allow_root = false;
    struct privs privs;
    struct daemon_state ds = {0};
    bool foreground = false, check = false, print = false;
    struct config *cfg;
    struct policy *pol;
    struct store_options so = {0};
    char err[512];
    sigset_t sigs;
    int c, sigfd, rc;

    while ((c = getopt_long(argc, argv, "c:ftpVhu:R", opts, NULL)) != -1) {
        switch (c) {
        case 'c': ds.config_path = optarg; break;
        case 'f': foreground = true; break;
        case 't': check = true; break;
        case 'p': print = true; break;
        case 'u': user = optarg; break;
        case 'R': allow_root = true; break;
        case 'V': printf("mxcached %s\n", MXCACHE_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    cfg = load(ds.config_path);
    if (!cfg)
        return 1;
    if (print) {
        config_print(cfg, stdout);
        config_free(cfg);
        return 0;
    }
    /* What the config names outside itself (the greylist key, whitelist files) is read here
     * too, so that --check-config finds its errors and they stop a start before it detaches. */
    pol = policy_create(cfg, print_error, NULL);
    if (!pol)
        return 1;
    if (check && cfg->security_key_file[0]) {
        /* The start reads it too (service_bind); a check that skipped it would pass a config
         * that cannot start. */
        struct keyfile kf;
        if (keyfile_read(cfg->security_key_file, true, &kf, err, sizeof err) != MXC_OK) {
            fprintf(stderr, "mxcached: security.key_file: %s\n", err);
            policy_free(pol);
            return 1;
        }
        memset(&kf, 0, sizeof kf);
    }
    if (check) {
        printf("%s: OK\n", ds.config_path ? ds.config_path : "(embedded defaults)");
        policy_free(pol);
        return 0;
    }
    if (privs_plan(user ? user : cfg->user, allow_root || cfg->allow_root, &privs, err, sizeof err) != MXC_OK) {
        fprintf(stderr, "mxcached: %s\n", err);
        policy_free(pol);
        return 1;
    }

    int target = cfg->log_target;
    if (target == LOG_TARGET_AUTO)
        target = foreground && !log_stderr_is_journal() ? LOG_TARGET_STDERR : LOG_TARGET_SYSLOG;
    log_open("mxcached", target == LOG_TARGET_SYSLOG ? LOG_TO_SYSLOG : LOG_TO_STDERR,
             config_facility(cfg), log_level_from_index(cfg->log_level));
    /* Security: the database and ipc sockets are for the service's user and group only (the
     * group needs write access to connect to an ipc socket). */
    umask(007);
    if (!foreground && daemon(1, 0) != 0) {
        fprintf(stderr, "mxcached: cannot detach: %s\n", strerror(errno));
        policy_free(pol);
        return 1;
    }

    /* Signals are taken from a signalfd in the main loop; block them before RocksDB and ZeroMQ
     * start threads, which inherit the mask. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigfd = signalfd(-1, &sigs, SFD_CLOEXEC);
    if (sigfd < 0) {
        log_msg(LOG_ERR, "FATAL", "error=\"signalfd: %s\"", strerror(errno));
        policy_free(pol);
        return 1;
    }

    /* Copied: the service owns cfg from here, and a reload frees it. */
    char *path = strdup(cfg->store_path);
    char *metrics_listen = strdup(cfg->metrics_listen);
    bool sync = cfg->store_sync, greylisting = cfg->greylist_enabled;
    so.path = path;
    so.sync = cfg->store_sync;
    so.block_cache_bytes = cfg->store_block_cache_size;
    so.write_buffer_bytes = cfg->store_write_buffer_size;
    so.max_background_jobs = (int)cfg->store_max_background_jobs;
    store *st = NULL;
    struct whitelist *wl = NULL;
    ds.svc = service_create(pol, err, sizeof err); /* owns pol (and cfg) from here */
    if (!ds.svc || !path || !metrics_listen) {
        log_msg(LOG_ERR, "FATAL", "error=\"%s\"", ds.svc ? "out of memory" : err);
        goto fail;
    }
    /* Security: the keys are read and the endpoints bound; nothing past this point needs root. */
    if (privs_drop(&privs, err, sizeof err) != MXC_OK) {
        log_msg(LOG_ERR, "FATAL", "error=\"%s\"", err);
        goto fail;
    }
    if (privs.drop)
        log_msg(LOG_INFO, "PRIVILEGES", "user=%s uid=%u gid=%u", privs.user, (unsigned)privs.uid,
                (unsigned)privs.gid);
    else if (geteuid() == 0)
        log_msg(LOG_WARNING, "PRIVILEGES", "user=root reason=\"server.allow_root\"");
    st = store_open(&so, err, sizeof err);
    if (!st) {
        log_msg(LOG_ERR, "FATAL", "error=\"cannot open store %s: %s\"", path, err);
        goto fail;
    }
    wl = wl_create();
    if (!wl || wl_load(wl, st, err, sizeof err) != MXC_OK) {
        log_msg(LOG_ERR, "FATAL", "error=\"cannot load whitelists: %s\"", wl ? err : "out of memory");
        goto fail;
    }
    if (service_start(ds.svc, st, wl, err, sizeof err) != MXC_OK) {
        log_msg(LOG_ERR, "FATAL", "error=\"%s\"", err);
        goto fail;
    }
    /* The endpoint reads the service's figures: it starts once the service runs and stops
     * before it (and the store) goes away. */
    struct metrics *metrics = NULL;
    if (metrics_listen[0] != '\0') {
        metrics = metrics_start(metrics_listen, ds.svc, err, sizeof err);
        if (!metrics) {
            log_msg(LOG_ERR, "FATAL", "error=\"cannot serve metrics on %s: %s\"", metrics_listen, err);
            goto fail;
        }
    }
    if (metrics)
        log_msg(LOG_INFO, "LISTEN", "endpoint=http://%s/metrics port=%u", metrics_listen,
                metrics_port(metrics));
    free(metrics_listen);
    log_msg(LOG_NOTICE, "START",
            "version=%s config=%s store=%s sync=%s whitelist_entries=%zu greylisting=%s",
            MXCACHE_VERSION, ds.config_path ? ds.config_path : "(embedded defaults)",
            path ? path : "?", sync ? "yes" : "no", wl_count(wl), greylisting ? "on" : "off");
    free(path);

    rc = service_run(ds.svc, sigfd, on_signal, &ds);
    metrics_stop(metrics);
    service_destroy(ds.svc);
    wl_destroy(wl);
    store_close(st);
    close(sigfd);
    log_msg(LOG_NOTICE, "EXIT", "result=%s", rc == MXC_OK ? "clean" : mxc_strerror(rc));
    log_close();
    return rc == MXC_OK ? 0 : 1;

fail:
    free(path);
    free(metrics_listen);
    service_destroy(ds.svc);
    wl_destroy(wl);
    store_close(st);
    close(sigfd);
    log_close();
    return 1;
}
