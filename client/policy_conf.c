/* policy_conf - loads, checks and prints mxcache-policy's settings (interface in policy_conf.h).
 *
 * Driven by the POLICY_PARAMS table: it is expanded once into params[], conftab rows, and conftab
 * parses every value, from the file or from the default text, through the same checks, so
 * defaults are range-checked by the code that checks the operator's values and are written in
 * exactly one place. A default that fails its own checks is our bug: policy_conf_defaults()
 * aborts. What is the hook's own stays here: the groups, the listen addresses and the checks of
 * a value's meaning or of several settings.
 *
 * Owns: the struct policy_conf it returns and every string in it. Strings from libconfig are
 * copied before its config_t is destroyed.
 *
 * DIAGNOSTICS: "FILE:LINE: group.name: text", one per error; loading goes on after an error so
 * that one run reports them all.
 *
 * BUGS: libconfig 1.5 truncates integer literals wider than 32 bits without the L suffix; no
 * setting here needs such values. */
#include "policy_conf.h"

#include <ctype.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "conftab.h"
#include "httpd.h"
#include "mxc_err.h"
#include "mxcache.h"
#include "policy_proto.h"

/* POLICY_PARAMS expanded into conftab rows; nothing here is reloaded, so reload is 0. */
#define PARAM_ROW(g, n, t, f, d, mn, mx, ch, h) \
    {g, n, CONFTAB_##t, offsetof(struct policy_conf, f), d, mn, mx, ch, false, h},
static const struct conftab_param params[] = {POLICY_PARAMS(PARAM_ROW)};
#undef PARAM_ROW
/* CONFTAB_TERSE: this loader's messages have always had the shorter wording (see conftab.h). */
static const struct conftab table = {params, sizeof params / sizeof params[0], CONFTAB_TERSE};

/* conftab stores LIST fields as struct conftab_list; policy_conf.h keeps its own name for it. */
_Static_assert(sizeof(struct policy_conf_list) == sizeof(struct conftab_list) &&
                   offsetof(struct policy_conf_list, items) == offsetof(struct conftab_list, items) &&
                   offsetof(struct policy_conf_list, n) == offsetof(struct conftab_list, n),
               "struct policy_conf_list must have the layout of struct conftab_list");

#define PARAM_INDEX(g, n, t, f, d, mn, mx, ch, h) P_##f,
enum { POLICY_PARAMS(PARAM_INDEX) NPARAMS };
#undef PARAM_INDEX

/* In the order of log.facility's choices. */
static const int facilities[] = {LOG_MAIL,   LOG_DAEMON, LOG_LOCAL0, LOG_LOCAL1, LOG_LOCAL2,
                                 LOG_LOCAL3, LOG_LOCAL4, LOG_LOCAL5, LOG_LOCAL6, LOG_LOCAL7};
static const int levels[] = {LOG_DEBUG, LOG_INFO, LOG_NOTICE, LOG_WARNING, LOG_ERR};

struct load {
    struct policy_conf *cfg;
    struct conftab_log log; /* errors of this load (the caller's may already hold others) */
    const char *path;       /* the file as given, or "(defaults)" */
    struct conftab_mark mark[NPARAMS];
};

static const char *file_of(const struct load *ld, const config_setting_t *s)
{
    const char *f = config_setting_source_file(s);
    return f ? f : ld->path;
}

static void load_root(struct load *ld, const config_setting_t *root)
{
    unsigned ngroups = (unsigned)config_setting_length(root);
    char names[512];

    for (unsigned gi = 0; gi < ngroups; gi++) {
        const config_setting_t *g = config_setting_get_elem(root, gi);
        const char *gname = config_setting_name(g);
        int line = (int)config_setting_source_line(g);

        if (!conftab_group_known(&table, gname)) {
            int k = conftab_find(&table, NULL, gname);
            if (k >= 0 && !config_setting_is_group(g))
                conftab_error(&ld->log, file_of(ld, g), line,
                           "%s: setting outside any group; write it inside %s = { ... }", gname,
                           params[k].group);
            else
                conftab_error(&ld->log, file_of(ld, g), line, "unknown %s %s (groups: %s)",
                           config_setting_is_group(g) ? "group" : "setting", gname,
                           conftab_names_text(&table, NULL, names, sizeof names));
            continue;
        }
        if (!config_setting_is_group(g)) {
            conftab_error(&ld->log, file_of(ld, g), line, "%s: wrong type: expected a group, %s = { ... }",
                       gname, gname);
            continue;
        }
        unsigned n = (unsigned)config_setting_length(g);
        for (unsigned i = 0; i < n; i++) {
            const config_setting_t *s = config_setting_get_elem(g, i);
            const char *name = config_setting_name(s);
            int idx = conftab_find(&table, gname, name);
            if (idx < 0) {
                conftab_error(&ld->log, file_of(ld, s), (int)config_setting_source_line(s),
                           "%s.%s: unknown setting (settings of %s: %s)", gname, name, gname,
                           conftab_names_text(&table, gname, names, sizeof names));
                continue;
            }
            conftab_apply(&table, (size_t)idx, s, ld->cfg, ld->path, ".", &ld->mark[idx], &ld->log);
        }
    }
}

/* check_error - an error about a setting's meaning, at its line when the file set it. */
__attribute__((format(printf, 3, 4))) static void check_error(struct load *ld, int idx,
                                                              const char *fmt, ...)
{
    char *body = NULL;
    va_list ap;

    va_start(ap, fmt);
    if (vasprintf(&body, fmt, ap) < 0)
        body = NULL;
    va_end(ap);
    conftab_error(&ld->log, ld->mark[idx].set ? ld->mark[idx].file : ld->path, ld->mark[idx].set ? ld->mark[idx].line : 0,
               "%s.%s: %s", params[idx].group, params[idx].name, body ? body : "out of memory");
    free(body);
}

int policy_listen_parse(const char *spec, struct policy_listen_addr *out, char *err, size_t errlen)
{
    char q[96];
    const char *s = spec;

    memset(out, 0, sizeof *out);
    if (strncmp(s, "unix:", 5) == 0 || s[0] == '/') {
        if (s[0] != '/')
            s += 5;
        if (*s == '\0' || strlen(s) >= sizeof out->path) {
            snprintf(err, errlen, "bad unix socket %s: the path must have 1 to %zu bytes",
                     conftab_quote(spec, q, sizeof q), sizeof out->path - 1);
            return MXC_EINVAL;
        }
        out->kind = POLICY_LISTEN_UNIX;
        snprintf(out->path, sizeof out->path, "%s", s);
        return MXC_OK;
    }
    if (strncmp(s, "inet:", 5) == 0)
        s += 5;
    const char *colon = strrchr(s, ':');
    const char *host = s, *hend = colon;
    if (!colon || colon[1] == '\0' || strlen(colon + 1) > 5) {
        snprintf(err, errlen, "bad listen address %s: expected inet:HOST:PORT, HOST:PORT, "
                 "[IPV6]:PORT, unix:PATH or /PATH", conftab_quote(spec, q, sizeof q));
        return MXC_EINVAL;
    }
    long port = 0;
    for (const char *d = colon + 1; *d; d++) {
        if (!isdigit((unsigned char)*d)) {
            port = -1;
            break;
        }
        port = port * 10 + (*d - '0');
    }
    if (port < 1 || port > 65535) {
        snprintf(err, errlen, "bad port in %s: expected 1 to 65535", conftab_quote(spec, q, sizeof q));
        return MXC_EINVAL;
    }
    if (host[0] == '[') {
        host++;
        if (hend == host || hend[-1] != ']') {
            snprintf(err, errlen, "bad listen address %s: an IPv6 address needs [ and ]",
                     conftab_quote(spec, q, sizeof q));
            return MXC_EINVAL;
        }
        hend--;
    } else if (memchr(host, ':', (size_t)(hend - host))) {
        snprintf(err, errlen, "bad listen address %s: write IPv6 addresses as [ADDR]:PORT",
                 conftab_quote(spec, q, sizeof q));
        return MXC_EINVAL;
    }
    size_t hlen = (size_t)(hend - host);
    if (hlen == 0 || hlen >= sizeof out->host) {
        snprintf(err, errlen, "bad listen address %s: no host (use 127.0.0.1 or 0.0.0.0)",
                 conftab_quote(spec, q, sizeof q));
        return MXC_EINVAL;
    }
    out->kind = POLICY_LISTEN_INET;
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    snprintf(out->port, sizeof out->port, "%ld", port);
    return MXC_OK;
}

/* check_config - the rules about a value's meaning or about several settings. */
static void check_config(struct load *ld)
{
    struct policy_conf *c = ld->cfg;
    struct policy_listen_addr la;
    char err[256], q[96];

    if (!ld->mark[P_listen].bad) {
        if (c->listen.n == 0)
            check_error(ld, P_listen, "empty: give at least one address, such as [ \"inet:127.0.0.1:10040\" ]");
        for (size_t i = 0; i < c->listen.n; i++)
            if (policy_listen_parse(c->listen.items[i], &la, err, sizeof err) != MXC_OK)
                check_error(ld, P_listen, "%s", err);
    }
    if (!ld->mark[P_endpoints].bad) {
        if (c->endpoints.n == 0 || c->endpoints.n > MXC_MAX_ENDPOINTS)
            check_error(ld, P_endpoints, "give 1 to %d endpoints, such as [ \"tcp://127.0.0.1:10041\" ]",
                        MXC_MAX_ENDPOINTS);
        for (size_t i = 0; i < c->endpoints.n; i++) {
            const char *e = c->endpoints.items[i];
            struct policy_listen_addr ta;
            bool ok = strncmp(e, "ipc://", 6) == 0 ? e[6] != '\0'
                      : strncmp(e, "tcp://", 6) == 0
                          ? policy_listen_parse(e + 6, &ta, err, sizeof err) == MXC_OK &&
                                ta.kind == POLICY_LISTEN_INET
                          : false;
            if (!ok || strchr(e, ' '))
                check_error(ld, P_endpoints, "bad endpoint %s: expected tcp://HOST:PORT or ipc://PATH",
                            conftab_quote(e, q, sizeof q));
        }
    }
    if (!ld->mark[P_states].bad) {
        if (c->states.n == 0)
            check_error(ld, P_states, "empty: name at least one state, such as [ \"RCPT\" ]");
        for (size_t i = 0; i < c->states.n; i++) {
            char *st = c->states.items[i];
            if (conftab_choice_index(POLICY_KNOWN_STATES, st) < 0) {
                char ch[256];
                check_error(ld, P_states, "unknown state %s: states are %s", conftab_quote(st, q, sizeof q),
                            conftab_choices_text(POLICY_KNOWN_STATES, ch, sizeof ch));
                continue;
            }
            for (char *s = st; *s; s++)
                *s = (char)toupper((unsigned char)*s);
        }
    }
    if (!ld->mark[P_mx_name].bad) {
        if (strlen(c->mx_name) > 253 || strchr(c->mx_name, ' '))
            check_error(ld, P_mx_name, "%s: expected a host name (no spaces, at most 253 bytes)",
                        conftab_quote(c->mx_name, q, sizeof q));
    }
    if (!ld->mark[P_fallback_text].bad) {
        const unsigned char *t = (const unsigned char *)c->fallback_text;
        bool printable = *t != '\0';
        for (; *t; t++)
            printable = printable && *t >= 0x20 && *t < 0x7f;
        if (!printable || strlen(c->fallback_text) > POLICY_TEXT_MAX)
            check_error(ld, P_fallback_text, "expected 1 to %d printable ASCII characters",
                        POLICY_TEXT_MAX);
    }
    if (!ld->mark[P_metrics_listen].bad && c->metrics_listen[0] != '\0' &&
        !httpd_listen_valid(c->metrics_listen, err, sizeof err))
        check_error(ld, P_metrics_listen, "bad address %s: %s", conftab_quote(c->metrics_listen, q, sizeof q),
                    err);
    /* CURVE: both keys or neither (a syntax check only; the files are read at start). */
    if (!ld->mark[P_server_key].bad && !ld->mark[P_key_file].bad &&
        (c->server_key[0] == '\0') != (c->key_file[0] == '\0'))
        check_error(ld, c->server_key[0] ? P_server_key : P_key_file,
                    "service.server_key and service.key_file go together: the service's public key "
                    "and this hook's key pair (mxcachectl keygen), or neither for plain ZeroMQ");
    if (!ld->mark[P_max_line].bad && !ld->mark[P_max_request].bad && c->max_line > c->max_request)
        check_error(ld, ld->mark[P_max_line].set ? P_max_line : P_max_request,
                    "server.max_line (%llu) is larger than server.max_request (%llu)",
                    (unsigned long long)c->max_line, (unsigned long long)c->max_request);
}

struct policy_conf *policy_conf_defaults(void)
{
    struct policy_conf_errors errs = {0};
    struct load ld = {.log = {&errs.msg, &errs.n, 0}, .path = "(defaults)"};
    const struct conftab_param *bad;
    char err[512];
    int rc;

    ld.cfg = calloc(1, sizeof *ld.cfg);
    if (!ld.cfg)
        return NULL;
    rc = conftab_set_defaults(&table, ld.cfg, &bad, err, sizeof err);
    if (rc == MXC_ENOMEM) {
        policy_conf_free(ld.cfg);
        return NULL;
    }
    if (rc != MXC_OK) {
        fprintf(stderr, "mxcache-policy: PANIC default of %s.%s: %s\n", bad->group, bad->name,
                err);
        abort();
    }
    check_config(&ld);
    if (ld.log.nerr) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "mxcache-policy: PANIC defaults: %s\n", errs.msg[i]);
        abort();
    }
    return ld.cfg;
}

struct policy_conf *policy_conf_load(const char *path, struct policy_conf_errors *errs)
{
    struct load ld = {.log = CONFTAB_LOG(errs), .path = path ? path : "(null)"};
    config_t lc;

    if (conftab_readable(path, &ld.log) != MXC_OK)
        return NULL;
    ld.cfg = policy_conf_defaults();
    if (!ld.cfg || !(ld.cfg->source = strdup(path))) {
        policy_conf_free(ld.cfg);
        conftab_error(&ld.log, path, 0, "out of memory");
        return NULL;
    }
    config_init(&lc);
    if (conftab_read(&lc, path, NULL, &ld.log) == MXC_OK) {
        load_root(&ld, config_root_setting(&lc));
        check_config(&ld);
    }
    config_destroy(&lc); /* ld.mark[].file points into lc: every message is written by now */
    if (ld.log.nerr) {
        policy_conf_free(ld.cfg);
        return NULL;
    }
    return ld.cfg;
}

void policy_conf_free(struct policy_conf *c)
{
    if (!c)
        return;
    conftab_fields_free(&table, c);
    free(c->source);
    free(c);
}

void policy_conf_errors_fini(struct policy_conf_errors *errs)
{
    if (errs)
        conftab_errors_fini(&errs->msg, &errs->n);
}

int policy_conf_print(const struct policy_conf *c, FILE *out)
{
    struct policy_conf *def = policy_conf_defaults();
    const char *group = NULL;
    char bounds[320];

    fprintf(out, "# mxcache-policy configuration: %s\n", c->source ? c->source : "the embedded defaults");
    for (size_t i = 0; i < NPARAMS; i++) {
        const struct conftab_param *p = &params[i];
        if (!group || strcmp(group, p->group) != 0) {
            fprintf(out, "%s\n%s = {\n", group ? "};\n" : "", p->group);
            group = p->group;
        }
        fprintf(out, "  # %s%s\n", p->help, conftab_bounds_text(p, bounds, sizeof bounds));
        if (def && !conftab_field_equal(p, c, def)) {
            fputs("  # default: ", out);
            conftab_print_value(p, def, out);
            fputc('\n', out);
        }
        fprintf(out, "  %s = ", p->name);
        conftab_print_value(p, c, out);
        fputs(";\n", out);
    }
    if (group)
        fputs("};\n", out);
    policy_conf_free(def);
    if (fflush(out) != 0 || ferror(out))
        return MXC_EIO;
    return MXC_OK;
}

int policy_conf_facility(const struct policy_conf *c)
{
    size_t n = sizeof facilities / sizeof facilities[0];
    return c->log_facility >= 0 && (size_t)c->log_facility < n ? facilities[c->log_facility] : LOG_MAIL;
}

int policy_conf_level(const struct policy_conf *c)
{
    size_t n = sizeof levels / sizeof levels[0];
    return c->log_level >= 0 && (size_t)c->log_level < n ? levels[c->log_level] : LOG_INFO;
}
