/* config - loads, checks and prints mxcached's configuration (interface in config.h).
 *
 * Everything is driven by the settings table in params.h. The X-macro is expanded once into
 * params[], one conftab row per setting (group, name, type, offset of its field in struct
 * config, default text, bounds, choices, reload flag, help), and route_params[] for the
 * elements of verify.routes. conftab parses a value from the file and a default text through the
 * same checks, so defaults are range-checked by the very code that handles the operator's values
 * and are written in exactly one place. A default that fails its own checks is our bug, not the
 * operator's: config_defaults() panics. What is mxcached's own stays here: the groups and
 * verify.routes, and the checks that involve a value's meaning or several settings.
 *
 * Owns: the struct config it returns and every string in it. Trusts: nothing in the file; libconfig
 * only for the syntax. Strings from libconfig are copied before its config_t is destroyed.
 *
 * DIAGNOSTICS: each error is one "FILE:LINE: group.name: text" message (a setting outside any
 * group is named by itself). Loading goes on after an error so that one run reports them all.
 *
 * BUGS: libconfig 1.5 silently truncates integer literals wider than 32 bits that lack the L
 * suffix (4294967396 reads as 100), so a large size must be written as a string ("1T") or with
 * L. libconfig 1.5 appends every @include name to the include directory (here the config file's
 * directory), so absolute @include paths do not work; an @include of anything but a regular file
 * made its scanner exit the process, so conftab_read refuses one first. libconfig 1.5 leaks a few
 * bytes per file refused for a syntax error (libconfig#142, fixed in 1.7.3). */
#include "config.h"

#include "auth.h"

#include <arpa/inet.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

#include "addr.h"
#include "conftab.h"
#include "duration.h"
#include "httpd.h"
#include "mxc_err.h"

/* params.h expanded into conftab rows: min/max in the stored unit (milliseconds, bytes). */
#define PARAM_ROW(g, n, t, f, d, mn, mx, ch, rl, h) \
    {g, n, CONFTAB_##t, offsetof(struct config, f), d, mn, mx, ch, rl, h},
static const struct conftab_param params[] = {MXCACHED_PARAMS(PARAM_ROW)};
#undef PARAM_ROW
static const struct conftab table = {params, sizeof params / sizeof params[0], 0};

/* The settings of a route: offsets into struct config_route. */
#define ROUTE_ROW(g, n, t, f, d, mn, mx, ch, rl, h) \
    {g, n, CONFTAB_##t, offsetof(struct config_route, f), d, mn, mx, ch, rl, h},
static const struct conftab_param route_params[] = {MXCACHED_ROUTE_PARAMS(ROUTE_ROW)};
#undef ROUTE_ROW
#define NROUTE_PARAMS (sizeof route_params / sizeof route_params[0])
static const struct conftab route_table = {route_params, NROUTE_PARAMS, 0};

/* conftab stores LIST fields as struct conftab_list; config.h keeps its own name for it. */
_Static_assert(sizeof(struct config_list) == sizeof(struct conftab_list) &&
                   offsetof(struct config_list, items) == offsetof(struct conftab_list, items) &&
                   offsetof(struct config_list, n) == offsetof(struct conftab_list, n),
               "struct config_list must have the layout of struct conftab_list");

/* P_<field>: the index of each setting in params[], for the cross-setting checks. */
#define PARAM_INDEX(g, n, t, f, d, mn, mx, ch, rl, h) P_##f,
enum { MXCACHED_PARAMS(PARAM_INDEX) NPARAMS };
#undef PARAM_INDEX

/* In the order of log.facility's choices in params.h. */
static const int facilities[] = {LOG_MAIL,   LOG_DAEMON, LOG_LOCAL0, LOG_LOCAL1, LOG_LOCAL2,
                                 LOG_LOCAL3, LOG_LOCAL4, LOG_LOCAL5, LOG_LOCAL6, LOG_LOCAL7};

/* One load in progress: the config being filled and where each setting came from. */
struct load {
    struct config *cfg;
    struct conftab_log log; /* errors of this load (the caller's may already hold others) */
    const char *path;       /* the file as given, or "(defaults)" */
    const char *incdir;     /* the directory @include names are relative to */
    struct conftab_mark mark[NPARAMS];
};

/* panic - a broken invariant of this file or of params.h: our bug, never the operator's. */
static _Noreturn void panic(const char *what)
{
    fprintf(stderr, "mxcached: PANIC config: %s\n", what);
    abort();
}

/* display_file - the file name to print for libconfig's name f of the main file or an include. */
static const char *display_file(const struct load *ld, const char *f, char *buf, size_t buflen)
{
    return conftab_display_file(ld->path, ld->incdir, f, buf, buflen);
}

/* ---- verify.routes ---- */

static void route_free(struct config_route *r)
{
    conftab_fields_free(&route_table, r);
}

static void routes_free(struct config_route *routes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        route_free(&routes[i]);
    free(routes);
}

/* route_defaults - *r with every route setting at its default. 0 or MXC_ENOMEM. */
static int route_defaults(struct config_route *r)
{
    char err[768];

    const struct conftab_param *bad;
    int rc;

    memset(r, 0, sizeof *r);
    rc = conftab_set_defaults(&route_table, r, &bad, err, sizeof err);
    if (rc == MXC_ECONFIG) {
        fprintf(stderr, "mxcached: params.h: default of route setting %s: %s\n", bad->name, err);
        panic("a route default in params.h is invalid");
    }
    return rc;
}

int config_route_host(const char *host, char *name, size_t namelen, unsigned *port)
{
    const char *start = host, *end, *portstr = NULL;
    unsigned long pn = 25;
    char canon[ADDR_MAX_DOMAIN + 1];
    unsigned char bin[16];
    size_t n;

    if (host[0] == '[') {
        start = host + 1;
        if (!(end = strchr(start, ']')) || (end[1] != '\0' && end[1] != ':'))
            return MXC_EINVAL;
        if (end[1] == ':')
            portstr = end + 2;
    } else {
        end = strchr(host, ':');
        if (end)
            portstr = end + 1;
        else
            end = host + strlen(host);
    }
    n = (size_t)(end - start);
    if (n == 0 || n >= namelen)
        return MXC_EINVAL;
    memcpy(name, start, n);
    name[n] = '\0';
    if (portstr) {
        char *e;
        if (portstr[0] < '0' || portstr[0] > '9')
            return MXC_EINVAL;
        pn = strtoul(portstr, &e, 10);
        if (*e || pn < 1 || pn > 65535)
            return MXC_EINVAL;
    }
    if (host[0] == '[' ? inet_pton(AF_INET6, name, bin) != 1
                       : inet_pton(AF_INET, name, bin) != 1 &&
                             addr_domain_canon(name, n, canon, sizeof canon) != MXC_OK)
        return MXC_EINVAL;
    *port = (unsigned)pn;
    return MXC_OK;
}

int config_route_for(const struct config *cfg, const char *domain)
{
    size_t dlen = strlen(domain), bestlen = 0;
    int best = -1;

    for (size_t r = 0; r < cfg->nroutes; r++) {
        const struct config_list *l = &cfg->routes[r].domains;
        for (size_t i = 0; i < l->n; i++) {
            const char *d = l->items[i];
            size_t len = strlen(d);
            if (d[0] != '.') {
                if (strcasecmp(domain, d) == 0)
                    return (int)r;
            } else if (dlen > len && len > bestlen && strcasecmp(domain + dlen - len, d) == 0) {
                best = (int)r;
                bestlen = len;
            }
        }
    }
    return best;
}

/* route_names_text - the names of a route's settings, for an error message. */
static char *route_names_text(char *buf, size_t buflen)
{
    size_t used = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < NROUTE_PARAMS && used < buflen; i++) {
        int n = snprintf(buf + used, buflen - used, "%s%s", i ? ", " : "", route_params[i].name);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    return buf;
}

/* check_route - the checks of one route that one setting cannot make alone; canonicalises its
 * domains. i: its index, at file:line. */
static void check_route(struct load *ld, struct config_route *routes, size_t i, const char *file,
                        int line)
{
    struct config_route *r = &routes[i];
    char canon[ADDR_MAX_DOMAIN + 2], name[ADDR_MAX_DOMAIN + 1], q[96];
    unsigned port;

    if (r->domains.n == 0)
        conftab_error(&ld->log, file, line, "verify.routes[%zu].domains: empty: give the recipient domains this route verifies", i);
    if (r->domains.n > CONFIG_ROUTE_DOMAINS_MAX)
        conftab_error(&ld->log, file, line, "verify.routes[%zu].domains: %zu domains, at most %d (use \".domain\" for subdomains)",
                   i, r->domains.n, CONFIG_ROUTE_DOMAINS_MAX);
    for (size_t k = 0; k < r->domains.n; k++) {
        const char *d = r->domains.items[k];
        bool sub = d[0] == '.';
        if (addr_domain_canon(d + sub, strlen(d + sub), canon + 1, sizeof canon - 1) != MXC_OK) {
            conftab_error(&ld->log, file, line, "verify.routes[%zu].domains: %s is not a domain name", i,
                       conftab_quote(d, q, sizeof q));
            continue;
        }
        canon[0] = '.';
        char *c = strdup(sub ? canon : canon + 1);
        if (!c) {
            conftab_error(&ld->log, file, line, "verify.routes[%zu].domains: out of memory", i);
            continue;
        }
        free(r->domains.items[k]);
        r->domains.items[k] = c;
        /* One domain, one route: otherwise which backend decides would depend on the order. */
        for (size_t j = 0; j <= i; j++)
            for (size_t m = 0; m < (j == i ? k : routes[j].domains.n); m++)
                if (strcmp(routes[j].domains.items[m], c) == 0)
                    conftab_error(&ld->log, file, line, "verify.routes[%zu].domains: %s is also in verify.routes[%zu]",
                               i, conftab_quote(c, q, sizeof q), j);
    }
    if (r->hosts.n == 0)
        conftab_error(&ld->log, file, line, "verify.routes[%zu].hosts: empty: give the backend hosts, such as [ \"10.0.0.5:25\" ]", i);
    if (r->hosts.n > CONFIG_ROUTE_HOSTS_MAX)
        conftab_error(&ld->log, file, line, "verify.routes[%zu].hosts: %zu hosts, at most %d", i, r->hosts.n,
                   CONFIG_ROUTE_HOSTS_MAX);
    for (size_t k = 0; k < r->hosts.n; k++)
        if (config_route_host(r->hosts.items[k], name, sizeof name, &port) != MXC_OK)
            conftab_error(&ld->log, file, line, "verify.routes[%zu].hosts: bad host %s: expected host:port, "
                       "[IPv6]:port or host (port 25)", i, conftab_quote(r->hosts.items[k], q, sizeof q));
    if (addr_domain_canon(r->helo, strlen(r->helo), name, sizeof name) != MXC_OK)
        conftab_error(&ld->log, file, line, "verify.routes[%zu].helo: %s is not a host name", i,
                   conftab_quote(r->helo, q, sizeof q));
    char box[ADDR_MAX_PATH + 1];
    if (r->mail_from[0] && addr_mailbox_canon(r->mail_from, strlen(r->mail_from), false, box, sizeof box) != MXC_OK)
        conftab_error(&ld->log, file, line, "verify.routes[%zu].mail_from: %s is not a mail address (\"\" is the null sender)",
                   i, conftab_quote(r->mail_from, q, sizeof q));
}

/* load_routes - verify.routes = ( { ... }, ... ): each element a group of route settings. */
static void load_routes(struct load *ld, const config_setting_t *s)
{
    char lbuf[4096], fbuf[4096], err[768], names[512];
    const char *file = display_file(ld, config_setting_source_file(s), lbuf, sizeof lbuf);
    int line = (int)config_setting_source_line(s);
    struct config_route *routes;
    size_t n;

    if (!config_setting_is_list(s)) {
        conftab_error(&ld->log, file, line, "verify.routes: wrong type: expected a list of groups, "
                   "routes = ( { domains = [...]; hosts = [...]; } ); got %s",
                   conftab_setting_what(config_setting_type(s)));
        return;
    }
    n = (size_t)config_setting_length(s);
    if (!(routes = calloc(n ? n : 1, sizeof *routes))) {
        conftab_error(&ld->log, file, line, "verify.routes: out of memory");
        return;
    }
    routes_free(ld->cfg->routes, ld->cfg->nroutes);
    ld->cfg->routes = routes;
    ld->cfg->nroutes = 0;
    for (size_t i = 0; i < n; i++) {
        const config_setting_t *g = config_setting_get_elem(s, (unsigned)i);
        int gline = (int)config_setting_source_line(g);
        const char *gfile = display_file(ld, config_setting_source_file(g), fbuf, sizeof fbuf);
        if (route_defaults(&routes[i]) != MXC_OK) {
            conftab_error(&ld->log, gfile, gline, "verify.routes[%zu]: out of memory", i);
            return;
        }
        ld->cfg->nroutes = i + 1;
        if (!config_setting_is_group(g)) {
            /* libconfig gives a scalar element the line after it: name the list's instead. */
            conftab_error(&ld->log, file, line, "verify.routes[%zu]: wrong type: expected a group "
                       "{ domains = [...]; hosts = [...]; }; got %s",
                       i, conftab_setting_what(config_setting_type(g)));
            continue;
        }
        unsigned nm = (unsigned)config_setting_length(g);
        for (unsigned k = 0; k < nm; k++) {
            const config_setting_t *m = config_setting_get_elem(g, k);
            const char *name = config_setting_name(m);
            const char *mfile = display_file(ld, config_setting_source_file(m), fbuf, sizeof fbuf);
            int mline = (int)config_setting_source_line(m);
            size_t p = 0;
            while (p < NROUTE_PARAMS && strcmp(route_params[p].name, name) != 0)
                p++;
            if (p == NROUTE_PARAMS) {
                conftab_error(&ld->log, mfile, mline, "verify.routes[%zu].%s: unknown setting (settings of a route: %s)",
                           i, name, route_names_text(names, sizeof names));
                continue;
            }
            int rc = conftab_set_setting(&route_table, &route_params[p], m, &routes[i], err,
                                         sizeof err);
            if (rc != MXC_OK)
                conftab_error(&ld->log, mfile, mline, "verify.routes[%zu].%s: %s", i, name,
                           rc == MXC_ENOMEM ? "out of memory" : err);
        }
        check_route(ld, routes, i, display_file(ld, config_setting_source_file(g), fbuf, sizeof fbuf),
                    gline);
    }
}

/* load_root - walks the top level: every member must be a known group, every group member a
 * known setting. */
static void load_root(struct load *ld, const config_setting_t *root)
{
    unsigned ngroups = (unsigned)config_setting_length(root);
    char fbuf[4096], names[512];

    for (unsigned gi = 0; gi < ngroups; gi++) {
        const config_setting_t *g = config_setting_get_elem(root, gi);
        const char *gname = config_setting_name(g);
        const char *file = display_file(ld, config_setting_source_file(g), fbuf, sizeof fbuf);
        int line = (int)config_setting_source_line(g);

        if (!conftab_group_known(&table, gname)) {
            int k = conftab_find(&table, NULL, gname);
            if (config_setting_is_group(g))
                conftab_error(&ld->log, file, line, "unknown group %s (groups: %s)", gname,
                           conftab_names_text(&table, NULL, names, sizeof names));
            else if (k >= 0)
                conftab_error(&ld->log, file, line,
                           "%s: setting outside any group; write it inside %s = { ... }", gname,
                           params[k].group);
            else
                conftab_error(&ld->log, file, line, "%s: unknown setting outside any group (groups: %s)",
                           gname, conftab_names_text(&table, NULL, names, sizeof names));
            continue;
        }
        if (!config_setting_is_group(g)) {
            conftab_error(&ld->log, file, line, "%s: wrong type: expected a group, %s = { ... }; got %s",
                       gname, gname, conftab_setting_what(config_setting_type(g)));
            continue;
        }
        unsigned n = (unsigned)config_setting_length(g);
        for (unsigned i = 0; i < n; i++) {
            const config_setting_t *s = config_setting_get_elem(g, i);
            const char *name = config_setting_name(s);
            if (strcmp(gname, "verify") == 0 && strcmp(name, "routes") == 0) {
                load_routes(ld, s);
                continue;
            }
            int idx = conftab_find(&table, gname, name);
            if (idx < 0) {
                conftab_error(&ld->log, display_file(ld, config_setting_source_file(s), fbuf, sizeof fbuf),
                           (int)config_setting_source_line(s),
                           "%s.%s: unknown setting (settings of %s: %s)", gname, name, gname,
                           conftab_names_text(&table, gname, names, sizeof names));
                continue;
            }
            conftab_apply(&table, (size_t)idx, s, ld->cfg, ld->path, ld->incdir, &ld->mark[idx],
                          &ld->log);
        }
    }
}

/* check_error - an error about a combination of settings, reported at the line of primary if the
 * file set it, else at secondary's (-1: none), else without a line. */
__attribute__((format(printf, 4, 5))) static void check_error(struct load *ld, int primary,
                                                              int secondary, const char *fmt, ...)
{
    char fbuf[4096], *body = NULL;
    const char *file = ld->path;
    int line = 0, at = -1;
    va_list ap;

    if (ld->mark[primary].set)
        at = primary;
    else if (secondary >= 0 && ld->mark[secondary].set)
        at = secondary;
    if (at >= 0) {
        file = display_file(ld, ld->mark[at].file, fbuf, sizeof fbuf);
        line = ld->mark[at].line;
    }
    va_start(ap, fmt);
    if (vasprintf(&body, fmt, ap) < 0)
        body = NULL;
    va_end(ap);
    conftab_error(&ld->log, file, line, "%s", body ? body : "out of memory");
    free(body);
}

/* status_ok - whether s looks like an enhanced status code: class.subject.detail, 1-3 digits
 * each (RFC 3463). */
static bool status_ok(const char *s)
{
    for (int part = 0; part < 3; part++) {
        int digits = 0;
        while (*s >= '0' && *s <= '9' && digits < 4) {
            s++;
            digits++;
        }
        if (digits < 1 || digits > 3)
            return false;
        if (part < 2 && *s++ != '.')
            return false;
    }
    return *s == '\0';
}

/* check_domain_list - every item of LIST setting idx must be a domain name. */
static void check_domain_list(struct load *ld, int idx, const struct config_list *l)
{
    char canon[ADDR_MAX_DOMAIN + 1], q[96];

    if (ld->mark[idx].bad)
        return;
    for (size_t i = 0; i < l->n; i++)
        if (addr_domain_canon(l->items[i], strlen(l->items[i]), canon, sizeof canon) != MXC_OK)
            check_error(ld, idx, -1, "%s.%s: %s is not a domain name", params[idx].group,
                        params[idx].name, conftab_quote(l->items[i], q, sizeof q));
}

/* check_greylist - the greylist group's rules. */
static void check_greylist(struct load *ld)
{
    const struct config *c = ld->cfg;
    char q[96], a[32], b[32];

    /* Robustness: a deferral must stay temporary, whatever the operator wrote. */
    if (!ld->mark[P_greylist_reply_status].bad &&
        (!status_ok(c->greylist_reply_status) || strncmp(c->greylist_reply_status, "4.", 2) != 0))
        check_error(ld, P_greylist_reply_status, -1,
                    "greylist.reply_status: %s is not an enhanced status code of class 4 "
                    "(\"4.x.y\", such as \"4.7.1\")",
                    conftab_quote(c->greylist_reply_status, q, sizeof q));
    /* An SMTP reply line is at most 512 bytes (RFC 5321 4.5.3.1.5), code and status included;
     * {remaining} is longer than any number it becomes, so the text only shrinks. */
    if (!ld->mark[P_greylist_reply_text].bad && strlen(c->greylist_reply_text) > 400)
        check_error(ld, P_greylist_reply_text, -1,
                    "greylist.reply_text: %zu bytes; at most 400 fit in an SMTP reply line",
                    strlen(c->greylist_reply_text));
    /* A pending triplet expires at the end of the retry window: with a delay as long, no
     * retry could ever pass. */
    if (!ld->mark[P_greylist_delay].bad && !ld->mark[P_greylist_retry_window].bad &&
        c->greylist_delay >= c->greylist_retry_window)
        check_error(ld, P_greylist_delay, P_greylist_retry_window,
                    "greylist.delay %s is not shorter than greylist.retry_window %s: no retry "
                    "could pass",
                    duration_format(c->greylist_delay, a, sizeof a),
                    duration_format(c->greylist_retry_window, b, sizeof b));
    if (!ld->mark[P_greylist_hash_keys].bad && !ld->mark[P_greylist_key_file].bad &&
        c->greylist_hash_keys && c->greylist_key_file[0] == '\0')
        check_error(ld, P_greylist_key_file, P_greylist_hash_keys,
                    "greylist.hash_keys needs greylist.key_file: a file with a secret key of at "
                    "least 32 bytes");
    check_domain_list(ld, P_greylist_domains, &c->greylist_domains);
    check_domain_list(ld, P_greylist_exempt_domains, &c->greylist_exempt_domains);
}

/* endpoint_is_local - whether a ZeroMQ endpoint can only be reached from this host: ipc, or tcp
 * on a loopback address. */
static bool endpoint_is_local(const char *e)
{
    if (strncmp(e, "ipc://", 6) == 0)
        return true;
    if (strncmp(e, "tcp://", 6) != 0)
        return false;
    e += 6;
    if (strncmp(e, "localhost:", 10) == 0 || strncmp(e, "[::1]:", 6) == 0)
        return true;
    if (strncmp(e, "127.", 4) != 0)
        return false;
    const char *colon = strrchr(e, ':');
    char host[INET_ADDRSTRLEN];
    uint8_t bin[4];
    if (!colon || (size_t)(colon - e) >= sizeof host)
        return false;
    memcpy(host, e, (size_t)(colon - e));
    host[colon - e] = '\0';
    return inet_pton(AF_INET, host, bin) == 1;
}

/* check_security - keys only with a key pair of the service's own, some key when there is one,
 * and plain ZeroMQ only where nobody else can reach it unless the operator says otherwise. */
static void check_security(struct load *ld)
{
    const struct config *c = ld->cfg;
    bool curve = !ld->mark[P_security_key_file].bad && c->security_key_file[0] != '\0';
    char q[96], why[96];

    if (!ld->mark[P_security_key_file].bad && !curve &&
        (c->security_client_keys.n > 0 || c->security_admin_keys.n > 0))
        check_error(ld, P_security_key_file, c->security_client_keys.n ? P_security_client_keys : P_security_admin_keys,
                    "security.client_keys and admin_keys need security.key_file: the service's own "
                    "key pair (mxcachectl keygen)");
    if (curve && c->security_client_keys.n == 0 && c->security_admin_keys.n == 0 &&
        !ld->mark[P_security_client_keys].bad && !ld->mark[P_security_admin_keys].bad)
        check_error(ld, P_security_key_file, -1,
                    "security.key_file is set but neither security.client_keys nor admin_keys "
                    "lists a key: no client could connect");
    if (!ld->mark[P_security_allow].bad)
        for (size_t i = 0; i < c->security_allow.n; i++) {
            struct auth_net n;
            if (auth_net_parse(c->security_allow.items[i], &n, why, sizeof why) != MXC_OK)
                check_error(ld, P_security_allow, -1,
                            "security.allow: %s: %s (expected an address or a network such as "
                            "\"192.0.2.0/24\" or \"2001:db8::/32\")",
                            conftab_quote(c->security_allow.items[i], q, sizeof q), why);
        }
    if (!ld->mark[P_listen].bad && !ld->mark[P_security_key_file].bad && !curve &&
        !c->security_allow_insecure)
        for (size_t i = 0; i < c->listen.n; i++)
            if (strncmp(c->listen.items[i], "tcp://", 6) == 0 && !endpoint_is_local(c->listen.items[i]))
                check_error(ld, P_listen, P_security_key_file,
                            "server.listen: %s is reachable from other hosts but security.key_file "
                            "is empty: set up CURVE keys (mxcachectl keygen), or set "
                            "security.allow_insecure = true to serve it without authentication",
                            conftab_quote(c->listen.items[i], q, sizeof q));
}

/* check_config - the rules that involve the meaning of a value or more than one setting. A
 * setting whose own value was refused is skipped, so one mistake gives one message. */
static void check_config(struct load *ld)
{
    const struct config *c = ld->cfg;
    char q[96];

    if (!ld->mark[P_listen].bad) {
        if (c->listen.n == 0)
            check_error(ld, P_listen, -1,
                        "server.listen: empty: give at least one endpoint, such as "
                        "[ \"tcp://127.0.0.1:10041\" ]");
        for (size_t i = 0; i < c->listen.n; i++) {
            const char *e = c->listen.items[i];
            if ((strncmp(e, "tcp://", 6) != 0 && strncmp(e, "ipc://", 6) != 0) || e[6] == '\0')
                check_error(ld, P_listen, -1,
                            "server.listen: bad endpoint %s: expected tcp://HOST:PORT or "
                            "ipc://PATH",
                            conftab_quote(e, q, sizeof q));
        }
    }
    if (!ld->mark[P_store_path].bad && c->store_path[0] == '\0')
        check_error(ld, P_store_path, -1, "store.path: empty");
    if (!ld->mark[P_metrics_listen].bad && c->metrics_listen[0] != '\0') {
        char why[160];
        if (!httpd_listen_valid(c->metrics_listen, why, sizeof why))
            check_error(ld, P_metrics_listen, -1,
                        "metrics.listen: bad address %s: %s (\"HOST:PORT\" with an IPv4 address, "
                        "\"[IPv6]:PORT\", or \"\" for no endpoint)",
                        conftab_quote(c->metrics_listen, q, sizeof q), why);
    }

    bool status_valid = !ld->mark[P_default_status].bad && status_ok(c->default_status);
    if (!ld->mark[P_default_status].bad && !status_valid)
        check_error(ld, P_default_status, -1,
                    "policy.default_status: %s is not an enhanced status code "
                    "(class.subject.detail, 1-3 digits each, such as \"4.7.1\")",
                    conftab_quote(c->default_status, q, sizeof q));
    if (!ld->mark[P_default_action].bad && c->default_action != DEFAULT_ACTION_DUNNO) {
        /* Robustness: a defer must never carry a permanent code, nor a reject a temporary one:
         * Postfix and the remote client act on the code, whatever the action word says. */
        bool defer = c->default_action == DEFAULT_ACTION_DEFER;
        const char *action = defer ? "defer" : "reject";
        long long lo = defer ? 400 : 500;
        char cls = defer ? '4' : '5';
        if (!ld->mark[P_default_code].bad && (c->default_code < lo || c->default_code > lo + 99))
            check_error(ld, P_default_code, P_default_action,
                        "policy.default_action %s needs a %cxx policy.default_code, not %lld",
                        action, cls, c->default_code);
        if (status_valid && (c->default_status[0] != cls || c->default_status[1] != '.'))
            check_error(ld, P_default_status, P_default_action,
                        "policy.default_action %s needs a policy.default_status of class %c "
                        "(\"%c.x.y\"), not %s",
                        action, cls, cls, conftab_quote(c->default_status, q, sizeof q));
    }
    if (!ld->mark[P_list_page_size].bad && !ld->mark[P_list_page_max].bad &&
        c->list_page_size > c->list_page_max)
        check_error(ld, P_list_page_size, P_list_page_max,
                    "admin.list_page_size %lld is larger than admin.list_page_max %lld",
                    c->list_page_size, c->list_page_max);
    check_greylist(ld);
    check_security(ld);
}

struct config *config_defaults(void)
{
    struct config_errors errs = {0};
    struct load ld = {.log = {&errs.msg, &errs.n, 0}, .path = "(defaults)", .incdir = "."};
    const struct conftab_param *bad;
    char err[768];
    int rc;

    size_t nfacilities = 1;
    for (const char *c = params[P_log_facility].choices; *c; c++)
        nfacilities += *c == '|';
    if (nfacilities != sizeof facilities / sizeof facilities[0])
        panic("log.facility's choices in params.h do not match facilities[] in config.c");

    ld.cfg = calloc(1, sizeof *ld.cfg);
    if (!ld.cfg)
        return NULL;
    rc = conftab_set_defaults(&table, ld.cfg, &bad, err, sizeof err);
    if (rc == MXC_ENOMEM) {
        config_free(ld.cfg);
        return NULL;
    }
    if (rc != MXC_OK) {
        fprintf(stderr, "mxcached: params.h: default of %s.%s: %s\n", bad->group, bad->name, err);
        panic("a default in params.h is invalid");
    }
    check_config(&ld);
    if (ld.log.nerr) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "mxcached: params.h: %s\n", errs.msg[i]);
        panic("the defaults in params.h are inconsistent");
    }
    return ld.cfg;
}

struct config *config_load(const char *path, struct config_errors *errs)
{
    struct load ld = {.log = CONFTAB_LOG(errs), .path = path ? path : "(null)"};
    config_t lc;

    if (conftab_readable(path, &ld.log) != MXC_OK)
        return NULL;

    /* @include names are relative to the file's own directory, not to the working directory. */
    const char *slash = strrchr(path, '/');
    char *dir = !slash ? strdup(".") : strndup(path, slash == path ? 1 : (size_t)(slash - path));
    ld.cfg = config_defaults();
    if (!ld.cfg || !dir || !(ld.cfg->source = strdup(path))) {
        free(dir);
        config_free(ld.cfg);
        conftab_error(&ld.log, path, 0, "out of memory");
        return NULL;
    }
    ld.incdir = dir;

    config_init(&lc);
    if (conftab_read(&lc, path, dir, &ld.log) == MXC_OK) {
        load_root(&ld, config_root_setting(&lc));
        check_config(&ld);
    }
    /* Last use of libconfig's strings (ld.mark[].file points into lc): messages are all written. */
    config_destroy(&lc);
    free(dir);
    if (ld.log.nerr) {
        config_free(ld.cfg);
        return NULL;
    }
    return ld.cfg;
}

void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    conftab_fields_free(&table, cfg);
    routes_free(cfg->routes, cfg->nroutes);
    free(cfg->source);
    free(cfg);
}

void config_errors_fini(struct config_errors *errs)
{
    if (errs)
        conftab_errors_fini(&errs->msg, &errs->n);
}

/* print_routes - verify.routes in the file's syntax; with none, a commented example that lists
 * every setting of a route with its explanation. */
static void print_routes(const struct config *cfg, FILE *out)
{
    char bounds[320];

    fputs("  # where the recipients of some domains are verified, and how; a domain without a\n"
          "  # route is not verified. Read at start only.\n", out);
    if (cfg->nroutes == 0) {
        fputs("  # routes = ( {\n", out);
        for (size_t i = 0; i < NROUTE_PARAMS; i++)
            fprintf(out, "  #   %s = ...; # %s%s\n", route_params[i].name, route_params[i].help,
                    conftab_bounds_text(&route_params[i], bounds, sizeof bounds));
        fputs("  # } );\n  routes = ( );\n", out);
        return;
    }
    fputs("  routes = (\n", out);
    for (size_t r = 0; r < cfg->nroutes; r++) {
        fputs("    {\n", out);
        for (size_t i = 0; i < NROUTE_PARAMS; i++) {
            fprintf(out, "      # %s%s\n      %s = ", route_params[i].help,
                    conftab_bounds_text(&route_params[i], bounds, sizeof bounds), route_params[i].name);
            conftab_print_value(&route_params[i], &cfg->routes[r], out);
            fputs(";\n", out);
        }
        fputs(r + 1 < cfg->nroutes ? "    },\n" : "    }\n", out);
    }
    fputs("  );\n", out);
}

int config_print(const struct config *cfg, FILE *out)
{
    struct config *def = config_defaults();
    const char *group = NULL;
    char bounds[320];

    fprintf(out, "# mxcached configuration: %s\n",
            cfg->source ? cfg->source : "the embedded defaults");
    fputs("# Settings marked [SIGHUP] are reloaded on SIGHUP; the others need a restart.\n", out);
    for (size_t i = 0; i < NPARAMS; i++) {
        const struct conftab_param *p = &params[i];
        if (!group || strcmp(group, p->group) != 0) {
            if (group && strcmp(group, "verify") == 0)
                print_routes(cfg, out);
            fprintf(out, "%s\n%s = {\n", group ? "};\n" : "", p->group);
            group = p->group;
        }
        fprintf(out, "  # %s%s%s\n", p->help, conftab_bounds_text(p, bounds, sizeof bounds),
                p->reload ? " [SIGHUP]" : "");
        /* A flag prints defaults and overrides: say what an override replaced. */
        if (def && !conftab_field_equal(p, cfg, def)) {
            fputs("  # default: ", out);
            conftab_print_value(p, def, out);
            fputc('\n', out);
        }
        fprintf(out, "  %s = ", p->name);
        conftab_print_value(p, cfg, out);
        fputs(";\n", out);
    }
    if (group)
        fputs("};\n", out);
    config_free(def);
    if (fflush(out) != 0 || ferror(out))
        return MXC_EIO;
    return MXC_OK;
}

/* routes_equal - whether a and b have the same routes. */
static bool routes_equal(const struct config *a, const struct config *b)
{
    if (a->nroutes != b->nroutes)
        return false;
    for (size_t r = 0; r < a->nroutes; r++)
        for (size_t i = 0; i < NROUTE_PARAMS; i++)
            if (!conftab_field_equal(&route_params[i], &a->routes[r], &b->routes[r]))
                return false;
    return true;
}

char *config_reload_diff(const struct config *old, const struct config *new_, char *buf,
                         size_t buflen)
{
    size_t used = 0;

    if (buflen == 0)
        return buf;
    buf[0] = '\0';
    if (!routes_equal(old, new_))
        used = (size_t)snprintf(buf, buflen, "verify.routes");
    if (used >= buflen)
        return buf;
    for (size_t i = 0; i < NPARAMS; i++) {
        const struct conftab_param *p = &params[i];
        if (p->reload || conftab_field_equal(p, old, new_))
            continue;
        int n = snprintf(buf + used, buflen - used, "%s%s.%s", used ? ", " : "", p->group,
                         p->name);
        if (n < 0 || (size_t)n >= buflen - used) {
            /* Truncated: end with "..." so that nobody takes the list for complete. */
            if (buflen >= 4)
                memcpy(buf + buflen - 4, "...", 4);
            break;
        }
        used += (size_t)n;
    }
    return buf;
}

/* routes_copy - replaces dst's routes by copies of src's. 0 or MXC_ENOMEM (dst unchanged). */
static int routes_copy(struct config *dst, const struct config *src)
{
    struct config_route *r = calloc(src->nroutes ? src->nroutes : 1, sizeof *r);

    if (!r)
        return MXC_ENOMEM;
    for (size_t k = 0; k < src->nroutes; k++)
        for (size_t i = 0; i < NROUTE_PARAMS; i++)
            if (conftab_field_copy(&route_params[i], &r[k], &src->routes[k]) != MXC_OK) {
                routes_free(r, src->nroutes);
                return MXC_ENOMEM;
            }
    routes_free(dst->routes, dst->nroutes);
    dst->routes = r;
    dst->nroutes = src->nroutes;
    return MXC_OK;
}

int config_keep_static(struct config *new_, const struct config *old)
{
    if (!routes_equal(old, new_) && routes_copy(new_, old) != MXC_OK)
        return MXC_ENOMEM;
    for (size_t i = 0; i < NPARAMS; i++) {
        const struct conftab_param *p = &params[i];
        if (p->reload || conftab_field_equal(p, old, new_))
            continue;
        int rc = conftab_field_copy(p, new_, old);
        if (rc != MXC_OK)
            return rc;
    }
    return MXC_OK;
}

int config_facility(const struct config *cfg)
{
    if (cfg->log_facility < 0 ||
        (size_t)cfg->log_facility >= sizeof facilities / sizeof facilities[0])
        return LOG_MAIL;
    return facilities[cfg->log_facility];
}
