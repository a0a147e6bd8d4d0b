/* policy_conf - loads, checks and prints mxcache-policy's settings (interface in policy_conf.h).
 *
 * Driven by the POLICY_PARAMS table: it is expanded once into params[], and every value, from
 * the file or from the default text, goes through the same param_set(), so defaults are parsed
 * and range-checked by the code that checks the operator's values and are written in exactly one
 * place. A default that fails its own checks is our bug: policy_conf_defaults() aborts.
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
#include <errno.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>

#include "duration.h"
#include "mxc_err.h"
#include "mxcache.h"
#include "policy_proto.h"

struct param {
    const char *group;
    const char *name;
    enum policy_conf_type type;
    size_t offset;
    const char *def;
    long long min, max;
    const char *choices;
    const char *help;
};

#define PARAM_ROW(g, n, t, f, d, mn, mx, ch, h) \
    {g, n, PCONF_##t, offsetof(struct policy_conf, f), d, mn, mx, ch, h},
static const struct param params[] = {POLICY_PARAMS(PARAM_ROW)};
#undef PARAM_ROW

#define PARAM_INDEX(g, n, t, f, d, mn, mx, ch, h) P_##f,
enum { POLICY_PARAMS(PARAM_INDEX) NPARAMS };
#undef PARAM_INDEX

/* In the order of log.facility's choices. */
static const int facilities[] = {LOG_MAIL,   LOG_DAEMON, LOG_LOCAL0, LOG_LOCAL1, LOG_LOCAL2,
                                 LOG_LOCAL3, LOG_LOCAL4, LOG_LOCAL5, LOG_LOCAL6, LOG_LOCAL7};
static const int levels[] = {LOG_DEBUG, LOG_INFO, LOG_NOTICE, LOG_WARNING, LOG_ERR};

/* A value before it is checked: what the file or the default text said. */
enum raw_kind { RAW_INT, RAW_STRING, RAW_LIST, RAW_OTHER };
struct raw {
    enum raw_kind kind;
    long long i;
    const char *s;
    const char **items; /* owned array, borrowed strings */
    size_t n;
    char *own;          /* scratch copy of a default list */
    const char *what;   /* RAW_OTHER: what it was */
};

struct load {
    struct policy_conf *cfg;
    struct policy_conf_errors *errs;
    size_t nerr;
    const char *path;
    bool set[NPARAMS];
    const char *file[NPARAMS];
    int line[NPARAMS];
    bool bad[NPARAMS];
};

static void *field_of(const struct policy_conf *c, const struct param *p)
{
    return (char *)c + p->offset;
}

/* quote - s in double quotes, bytes outside printable ASCII, '"' and '\\' as \xNN, capped. */
static char *quote(const char *s, char *buf, size_t buflen)
{
    size_t o = 0;

    buf[o++] = '"';
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (o + 8 >= buflen) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
            o += (size_t)snprintf(buf + o, buflen - o, "\\x%02x", c);
        else
            buf[o++] = (char)c;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

/* choice_index - index of name among '|'-separated choices (case-insensitive), or -1. */
static int choice_index(const char *choices, const char *name)
{
    size_t len = strlen(name);

    for (int idx = 0;; idx++) {
        const char *end = strchr(choices, '|');
        size_t n = end ? (size_t)(end - choices) : strlen(choices);
        if (n == len && strncasecmp(choices, name, n) == 0)
            return idx;
        if (!end)
            return -1;
        choices = end + 1;
    }
}

static char *choice_name(const char *choices, int idx, char *buf, size_t buflen)
{
    for (int i = 0; choices; i++) {
        const char *end = strchr(choices, '|');
        int n = end ? (int)(end - choices) : (int)strlen(choices);
        if (i == idx) {
            snprintf(buf, buflen, "%.*s", n, choices);
            return buf;
        }
        choices = end ? end + 1 : NULL;
    }
    snprintf(buf, buflen, "?");
    return buf;
}

/* choices_text - "a, b, c" from "a|b|c". */
static char *choices_text(const char *choices, char *buf, size_t buflen)
{
    size_t o = 0;

    for (; *choices && o + 3 < buflen; choices++) {
        if (*choices == '|') {
            buf[o++] = ',';
            buf[o++] = ' ';
        } else {
            buf[o++] = *choices;
        }
    }
    buf[o] = '\0';
    return buf;
}

static int param_find(const char *group, const char *name)
{
    for (size_t i = 0; i < NPARAMS; i++)
        if ((!group || strcmp(params[i].group, group) == 0) && strcmp(params[i].name, name) == 0)
            return (int)i;
    return -1;
}

static bool group_known(const char *g)
{
    for (size_t i = 0; i < NPARAMS; i++)
        if (strcmp(params[i].group, g) == 0)
            return true;
    return false;
}

/* names_text - the groups ("server, service, log") or, with group set, its settings. */
static char *names_text(const char *group, char *buf, size_t buflen)
{
    size_t o = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < NPARAMS; i++) {
        const char *name;
        if (group) {
            if (strcmp(params[i].group, group) != 0)
                continue;
            name = params[i].name;
        } else {
            if (i > 0 && strcmp(params[i - 1].group, params[i].group) == 0)
                continue;
            name = params[i].group;
        }
        int n = snprintf(buf + o, buflen - o, "%s%s", o ? ", " : "", name);
        if (n < 0 || (size_t)n >= buflen - o)
            break;
        o += (size_t)n;
    }
    return buf;
}

static bool has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

static void list_free(struct policy_conf_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static void raw_fini(struct raw *v)
{
    free(v->items);
    free(v->own);
}

static const char *raw_what(const struct raw *v)
{
    switch (v->kind) {
    case RAW_INT: return "an integer";
    case RAW_STRING: return "a string";
    case RAW_LIST: return "a list of strings";
    case RAW_OTHER: break;
    }
    return v->what;
}

static const char *setting_what(int type)
{
    switch (type) {
    case CONFIG_TYPE_GROUP: return "a group";
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64: return "an integer";
    case CONFIG_TYPE_FLOAT: return "a floating-point number";
    case CONFIG_TYPE_STRING: return "a string";
    case CONFIG_TYPE_BOOL: return "a boolean";
    case CONFIG_TYPE_ARRAY:
    case CONFIG_TYPE_LIST: return "a list";
    default: return "an unknown kind of value";
    }
}

/* raw_from_setting - what libconfig read; 0 or MXC_ENOMEM. */
static int raw_from_setting(const config_setting_t *s, struct raw *v)
{
    int type = config_setting_type(s);

    memset(v, 0, sizeof *v);
    switch (type) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        v->kind = RAW_INT;
        v->i = config_setting_get_int64(s);
        return MXC_OK;
    case CONFIG_TYPE_STRING:
        v->kind = RAW_STRING;
        v->s = config_setting_get_string(s);
        return MXC_OK;
    case CONFIG_TYPE_ARRAY:
    case CONFIG_TYPE_LIST: {
        size_t n = (size_t)config_setting_length(s);
        for (size_t i = 0; i < n; i++)
            if (config_setting_type(config_setting_get_elem(s, (unsigned)i)) != CONFIG_TYPE_STRING) {
                v->kind = RAW_OTHER;
                v->what = "a list with elements that are not strings";
                return MXC_OK;
            }
        v->kind = RAW_LIST;
        v->items = calloc(n ? n : 1, sizeof *v->items);
        if (!v->items)
            return MXC_ENOMEM;
        for (size_t i = 0; i < n; i++)
            v->items[i] = config_setting_get_string_elem(s, (int)i);
        v->n = n;
        return MXC_OK;
    }
    default:
        v->kind = RAW_OTHER;
        v->what = setting_what(type);
        return MXC_OK;
    }
}

/* raw_from_default - p's default text as the file would give it. 0 or MXC_ENOMEM. */
static int raw_from_default(const struct param *p, struct raw *v)
{
    memset(v, 0, sizeof *v);
    v->kind = RAW_STRING;
    v->s = p->def;
    if (p->type == PCONF_INT) {
        char *end;
        errno = 0;
        long long i = strtoll(p->def, &end, 10);
        if (errno == 0 && end != p->def && *end == '\0') {
            v->kind = RAW_INT;
            v->i = i;
        }
    } else if (p->type == PCONF_LIST) {
        size_t n = *p->def ? 1 : 0;
        for (const char *c = p->def; *c; c++)
            n += *c == '|';
        v->own = strdup(p->def);
        v->items = calloc(n ? n : 1, sizeof *v->items);
        if (!v->own || !v->items) {
            raw_fini(v);
            return MXC_ENOMEM;
        }
        char *c = v->own;
        for (size_t i = 0; i < n; i++) {
            v->items[i] = c;
            c = strchr(c, '|');
            if (c)
                *c++ = '\0';
        }
        v->kind = RAW_LIST;
        v->n = n;
    }
    return MXC_OK;
}

static int wrong_type(const struct param *p, const struct raw *v, char *err, size_t errlen)
{
    char ch[256];
    const char *want = "";

    switch (p->type) {
    case PCONF_INT: want = "an integer"; break;
    case PCONF_SIZE: want = "a size: bytes as an integer, or a string such as \"16K\""; break;
    case PCONF_DURATION:
        want = "a duration: seconds as an integer, or a string such as \"5s\" or \"500ms\"";
        break;
    case PCONF_STRING: want = "a string"; break;
    case PCONF_MODE: want = "an octal mode as a string, such as \"0660\""; break;
    case PCONF_ENUM:
        snprintf(err, errlen, "wrong type: expected a string, one of %s; got %s",
                 choices_text(p->choices, ch, sizeof ch), raw_what(v));
        return MXC_ECONFIG;
    case PCONF_LIST: want = "a list of strings, such as [ \"a\", \"b\" ]"; break;
    }
    snprintf(err, errlen, "wrong type: expected %s; got %s", want, raw_what(v));
    return MXC_ECONFIG;
}

/* param_set - checks v against p and stores it. 0, MXC_ECONFIG (reason in err), MXC_ENOMEM. */
static int param_set(const struct param *p, const struct raw *v, struct policy_conf *cfg, char *err,
                     size_t errlen)
{
    void *field = field_of(cfg, p);
    char a[96], b[32], c[32];
    uint64_t u;

    switch (p->type) {
    case PCONF_INT:
        if (v->kind != RAW_INT)
            return wrong_type(p, v, err, errlen);
        if (v->i < p->min || v->i > p->max) {
            snprintf(err, errlen, "%lld is out of range: allowed %lld to %lld", v->i, p->min, p->max);
            return MXC_ECONFIG;
        }
        *(long long *)field = v->i;
        return MXC_OK;

    case PCONF_SIZE:
    case PCONF_DURATION: {
        bool dur = p->type == PCONF_DURATION;
        if (v->kind == RAW_INT) {
            if (v->i < 0 || (uint64_t)v->i > UINT64_MAX / 1000) {
                snprintf(err, errlen, "%lld is out of range", v->i);
                return MXC_ECONFIG;
            }
            u = (uint64_t)v->i * (dur ? 1000 : 1);
        } else if (v->kind == RAW_STRING) {
            if ((dur ? duration_parse(v->s, 1000, &u) : size_parse(v->s, &u)) != MXC_OK) {
                snprintf(err, errlen,
                         dur ? "bad duration %s: expected a number with an optional unit ms, s, m, "
                               "h, d or w (no unit: seconds)"
                             : "bad size %s: expected a number of bytes with an optional suffix K, "
                               "M or G",
                         quote(v->s, a, sizeof a));
                return MXC_ECONFIG;
            }
        } else {
            return wrong_type(p, v, err, errlen);
        }
        if (u < (uint64_t)p->min || u > (uint64_t)p->max) {
            if (dur)
                snprintf(err, errlen, "%s is out of range: allowed %s to %s",
                         duration_format(u, a, sizeof a), duration_format((uint64_t)p->min, b, sizeof b),
                         duration_format((uint64_t)p->max, c, sizeof c));
            else
                snprintf(err, errlen, "%llu bytes is out of range: allowed %lld to %lld",
                         (unsigned long long)u, p->min, p->max);
            return MXC_ECONFIG;
        }
        *(uint64_t *)field = u;
        return MXC_OK;
    }

    case PCONF_STRING: {
        if (v->kind != RAW_STRING)
            return wrong_type(p, v, err, errlen);
        /* Security: these strings go into policy answers and log lines, where a CR or LF would
         * start a line we did not write. */
        if (has_control(v->s)) {
            snprintf(err, errlen, "%s contains control characters", quote(v->s, a, sizeof a));
            return MXC_ECONFIG;
        }
        char *s = strdup(v->s);
        if (!s)
            return MXC_ENOMEM;
        free(*(char **)field);
        *(char **)field = s;
        return MXC_OK;
    }

    case PCONF_MODE: {
        char *end;
        if (v->kind != RAW_STRING)
            return wrong_type(p, v, err, errlen);
        errno = 0;
        long m = strtol(v->s, &end, 8);
        if (errno || end == v->s || *end || v->s[0] == '-' || m < p->min || m > p->max) {
            snprintf(err, errlen, "bad mode %s: expected octal digits from 0 to 0777, such as \"0660\"",
                     quote(v->s, a, sizeof a));
            return MXC_ECONFIG;
        }
        *(int *)field = (int)m;
        return MXC_OK;
    }

    case PCONF_ENUM: {
        if (v->kind != RAW_STRING)
            return wrong_type(p, v, err, errlen);
        int idx = choice_index(p->choices, v->s);
        if (idx < 0) {
            char ch[256];
            snprintf(err, errlen, "unknown value %s: choices are %s", quote(v->s, a, sizeof a),
                     choices_text(p->choices, ch, sizeof ch));
            return MXC_ECONFIG;
        }
        *(int *)field = idx;
        return MXC_OK;
    }

    case PCONF_LIST: {
        struct policy_conf_list l = {0};
        if (v->kind != RAW_LIST)
            return wrong_type(p, v, err, errlen);
        for (size_t i = 0; i < v->n; i++)
            if (has_control(v->items[i])) {
                snprintf(err, errlen, "item %zu, %s, contains control characters", i + 1,
                         quote(v->items[i], a, sizeof a));
                return MXC_ECONFIG;
            }
        l.items = calloc(v->n ? v->n : 1, sizeof *l.items);
        if (!l.items)
            return MXC_ENOMEM;
        for (; l.n < v->n; l.n++)
            if (!(l.items[l.n] = strdup(v->items[l.n]))) {
                list_free(&l);
                return MXC_ENOMEM;
            }
        list_free((struct policy_conf_list *)field);
        *(struct policy_conf_list *)field = l;
        return MXC_OK;
    }
    }
    abort(); /* a type the table does not have: our bug */
}

__attribute__((format(printf, 4, 5))) static void load_error(struct load *ld, const char *file,
                                                             int line, const char *fmt, ...)
{
    char *body = NULL, *msg = NULL;
    va_list ap;

    ld->nerr++;
    if (!ld->errs)
        return;
    va_start(ap, fmt);
    if (vasprintf(&body, fmt, ap) < 0)
        body = NULL;
    va_end(ap);
    if (!body)
        return;
    if ((line > 0 ? asprintf(&msg, "%s:%d: %s", file, line, body) : asprintf(&msg, "%s: %s", file, body)) < 0)
        msg = NULL;
    free(body);
    if (!msg)
        return;
    char **grown = realloc(ld->errs->msg, (ld->errs->n + 1) * sizeof *grown);
    if (!grown) {
        free(msg);
        return;
    }
    grown[ld->errs->n++] = msg;
    ld->errs->msg = grown;
}

static const char *file_of(const struct load *ld, const config_setting_t *s)
{
    const char *f = config_setting_source_file(s);
    return f ? f : ld->path;
}

static void apply_setting(struct load *ld, int idx, const config_setting_t *s)
{
    const struct param *p = &params[idx];
    int line = (int)config_setting_source_line(s);
    char err[512];
    struct raw v;
    int rc = raw_from_setting(s, &v);

    if (rc == MXC_OK)
        rc = param_set(p, &v, ld->cfg, err, sizeof err);
    raw_fini(&v);
    if (rc == MXC_OK) {
        ld->set[idx] = true;
        ld->file[idx] = file_of(ld, s);
        ld->line[idx] = line;
        ld->bad[idx] = false;
        return;
    }
    ld->bad[idx] = true;
    load_error(ld, file_of(ld, s), line, "%s.%s: %s", p->group, p->name,
               rc == MXC_ENOMEM ? "out of memory" : err);
}

static void load_root(struct load *ld, const config_setting_t *root)
{
    unsigned ngroups = (unsigned)config_setting_length(root);
    char names[512];

    for (unsigned gi = 0; gi < ngroups; gi++) {
        const config_setting_t *g = config_setting_get_elem(root, gi);
        const char *gname = config_setting_name(g);
        int line = (int)config_setting_source_line(g);

        if (!group_known(gname)) {
            int k = param_find(NULL, gname);
            if (k >= 0 && !config_setting_is_group(g))
                load_error(ld, file_of(ld, g), line,
                           "%s: setting outside any group; write it inside %s = { ... }", gname,
                           params[k].group);
            else
                load_error(ld, file_of(ld, g), line, "unknown %s %s (groups: %s)",
                           config_setting_is_group(g) ? "group" : "setting", gname,
                           names_text(NULL, names, sizeof names));
            continue;
        }
        if (!config_setting_is_group(g)) {
            load_error(ld, file_of(ld, g), line, "%s: wrong type: expected a group, %s = { ... }",
                       gname, gname);
            continue;
        }
        unsigned n = (unsigned)config_setting_length(g);
        for (unsigned i = 0; i < n; i++) {
            const config_setting_t *s = config_setting_get_elem(g, i);
            const char *name = config_setting_name(s);
            int idx = param_find(gname, name);
            if (idx < 0) {
                load_error(ld, file_of(ld, s), (int)config_setting_source_line(s),
                           "%s.%s: unknown setting (settings of %s: %s)", gname, name, gname,
                           names_text(gname, names, sizeof names));
                continue;
            }
            apply_setting(ld, idx, s);
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
    load_error(ld, ld->set[idx] ? ld->file[idx] : ld->path, ld->set[idx] ? ld->line[idx] : 0,
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
                     quote(spec, q, sizeof q), sizeof out->path - 1);
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
                 "[IPV6]:PORT, unix:PATH or /PATH", quote(spec, q, sizeof q));
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
        snprintf(err, errlen, "bad port in %s: expected 1 to 65535", quote(spec, q, sizeof q));
        return MXC_EINVAL;
    }
    if (host[0] == '[') {
        host++;
        if (hend == host || hend[-1] != ']') {
            snprintf(err, errlen, "bad listen address %s: an IPv6 address needs [ and ]",
                     quote(spec, q, sizeof q));
            return MXC_EINVAL;
        }
        hend--;
    } else if (memchr(host, ':', (size_t)(hend - host))) {
        snprintf(err, errlen, "bad listen address %s: write IPv6 addresses as [ADDR]:PORT",
                 quote(spec, q, sizeof q));
        return MXC_EINVAL;
    }
    size_t hlen = (size_t)(hend - host);
    if (hlen == 0 || hlen >= sizeof out->host) {
        snprintf(err, errlen, "bad listen address %s: no host (use 127.0.0.1 or 0.0.0.0)",
                 quote(spec, q, sizeof q));
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

    if (!ld->bad[P_listen]) {
        if (c->listen.n == 0)
            check_error(ld, P_listen, "empty: give at least one address, such as [ \"inet:127.0.0.1:10040\" ]");
        for (size_t i = 0; i < c->listen.n; i++)
            if (policy_listen_parse(c->listen.items[i], &la, err, sizeof err) != MXC_OK)
                check_error(ld, P_listen, "%s", err);
    }
    if (!ld->bad[P_endpoints]) {
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
                            quote(e, q, sizeof q));
        }
    }
    if (!ld->bad[P_states]) {
        if (c->states.n == 0)
            check_error(ld, P_states, "empty: name at least one state, such as [ \"RCPT\" ]");
        for (size_t i = 0; i < c->states.n; i++) {
            char *st = c->states.items[i];
            if (choice_index(POLICY_KNOWN_STATES, st) < 0) {
                char ch[256];
                check_error(ld, P_states, "unknown state %s: states are %s", quote(st, q, sizeof q),
                            choices_text(POLICY_KNOWN_STATES, ch, sizeof ch));
                continue;
            }
            for (char *s = st; *s; s++)
                *s = (char)toupper((unsigned char)*s);
        }
    }
    if (!ld->bad[P_mx_name]) {
        if (strlen(c->mx_name) > 253 || strchr(c->mx_name, ' '))
            check_error(ld, P_mx_name, "%s: expected a host name (no spaces, at most 253 bytes)",
                        quote(c->mx_name, q, sizeof q));
    }
    if (!ld->bad[P_fallback_text]) {
        const unsigned char *t = (const unsigned char *)c->fallback_text;
        bool printable = *t != '\0';
        for (; *t; t++)
            printable = printable && *t >= 0x20 && *t < 0x7f;
        if (!printable || strlen(c->fallback_text) > POLICY_TEXT_MAX)
            check_error(ld, P_fallback_text, "expected 1 to %d printable ASCII characters",
                        POLICY_TEXT_MAX);
    }
    if (!ld->bad[P_max_line] && !ld->bad[P_max_request] && c->max_line > c->max_request)
        check_error(ld, ld->set[P_max_line] ? P_max_line : P_max_request,
                    "server.max_line (%llu) is larger than server.max_request (%llu)",
                    (unsigned long long)c->max_line, (unsigned long long)c->max_request);
}

struct policy_conf *policy_conf_defaults(void)
{
    struct policy_conf_errors errs = {0};
    struct load ld = {.errs = &errs, .path = "(defaults)"};
    char err[512];

    ld.cfg = calloc(1, sizeof *ld.cfg);
    if (!ld.cfg)
        return NULL;
    for (size_t i = 0; i < NPARAMS; i++) {
        struct raw v;
        int rc = raw_from_default(&params[i], &v);
        if (rc == MXC_OK)
            rc = param_set(&params[i], &v, ld.cfg, err, sizeof err);
        raw_fini(&v);
        if (rc == MXC_ENOMEM) {
            policy_conf_free(ld.cfg);
            return NULL;
        }
        if (rc != MXC_OK) {
            fprintf(stderr, "mxcache-policy: PANIC default of %s.%s: %s\n", params[i].group,
                    params[i].name, err);
            abort();
        }
    }
    check_config(&ld);
    if (ld.nerr) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "mxcache-policy: PANIC defaults: %s\n", errs.msg[i]);
        abort();
    }
    return ld.cfg;
}

struct policy_conf *policy_conf_load(const char *path, struct policy_conf_errors *errs)
{
    struct load ld = {.errs = errs, .path = path ? path : "(null)"};
    struct stat st;
    config_t lc;
    FILE *fp;

    if (!path) {
        load_error(&ld, ld.path, 0, "no configuration file given");
        return NULL;
    }
    /* Robustness: libconfig says only "file I/O error"; open it ourselves for errno. */
    fp = fopen(path, "r");
    if (!fp) {
        load_error(&ld, path, 0, "cannot read: %s", strerror(errno));
        return NULL;
    }
    if (fstat(fileno(fp), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(fp);
        load_error(&ld, path, 0, "cannot read: %s", strerror(EISDIR));
        return NULL;
    }
    fclose(fp);
    ld.cfg = policy_conf_defaults();
    if (!ld.cfg || !(ld.cfg->source = strdup(path))) {
        policy_conf_free(ld.cfg);
        load_error(&ld, path, 0, "out of memory");
        return NULL;
    }
    config_init(&lc);
    if (!config_read_file(&lc, path)) {
        if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
            load_error(&ld, path, 0, "cannot read: %s", config_error_text(&lc));
        else
            load_error(&ld, config_error_file(&lc) ? config_error_file(&lc) : path,
                       config_error_line(&lc), "%s", config_error_text(&lc));
    } else {
        load_root(&ld, config_root_setting(&lc));
        check_config(&ld);
    }
    config_destroy(&lc); /* ld.file[] points into lc: every message is written by now */
    if (ld.nerr) {
        policy_conf_free(ld.cfg);
        return NULL;
    }
    return ld.cfg;
}

void policy_conf_free(struct policy_conf *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < NPARAMS; i++) {
        if (params[i].type == PCONF_STRING)
            free(*(char **)field_of(c, &params[i]));
        else if (params[i].type == PCONF_LIST)
            list_free((struct policy_conf_list *)field_of(c, &params[i]));
    }
    free(c->source);
    free(c);
}

void policy_conf_errors_fini(struct policy_conf_errors *errs)
{
    if (!errs)
        return;
    for (size_t i = 0; i < errs->n; i++)
        free(errs->msg[i]);
    free(errs->msg);
    errs->msg = NULL;
    errs->n = 0;
}

static void print_string(const char *s, FILE *out)
{
    fputc('"', out);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            fprintf(out, "\\x%02x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

/* size_short - "16K", or the plain number when no suffix divides it. */
static char *size_short(uint64_t n, char *buf, size_t buflen)
{
    int shift = 0;

    while (shift < 30 && n && n % (1ull << (shift + 10)) == 0)
        shift += 10;
    snprintf(buf, buflen, "%llu", (unsigned long long)(n >> shift));
    if (shift)
        strncat(buf, &"KMG"[shift / 10 - 1], 1);
    return buf;
}

static void print_value(const struct param *p, const struct policy_conf *c, FILE *out)
{
    const void *f = field_of(c, p);
    char buf[64];

    switch (p->type) {
    case PCONF_INT: fprintf(out, "%lld", *(const long long *)f); break;
    case PCONF_SIZE: print_string(size_short(*(const uint64_t *)f, buf, sizeof buf), out); break;
    case PCONF_DURATION: print_string(duration_format(*(const uint64_t *)f, buf, sizeof buf), out); break;
    case PCONF_STRING: print_string(*(char *const *)f, out); break;
    case PCONF_MODE:
        snprintf(buf, sizeof buf, "0%o", (unsigned)*(const int *)f);
        print_string(buf, out);
        break;
    case PCONF_ENUM: print_string(choice_name(p->choices, *(const int *)f, buf, sizeof buf), out); break;
    case PCONF_LIST: {
        const struct policy_conf_list *l = f;
        fputs("[", out);
        for (size_t i = 0; i < l->n; i++) {
            fputs(i ? ", " : " ", out);
            print_string(l->items[i], out);
        }
        fputs(" ]", out);
        break;
    }
    }
}

static bool field_equal(const struct param *p, const struct policy_conf *a, const struct policy_conf *b)
{
    const void *x = field_of(a, p), *y = field_of(b, p);

    switch (p->type) {
    case PCONF_INT: return *(const long long *)x == *(const long long *)y;
    case PCONF_SIZE:
    case PCONF_DURATION: return *(const uint64_t *)x == *(const uint64_t *)y;
    case PCONF_MODE:
    case PCONF_ENUM: return *(const int *)x == *(const int *)y;
    case PCONF_STRING: return strcmp(*(char *const *)x, *(char *const *)y) == 0;
    case PCONF_LIST: {
        const struct policy_conf_list *l = x, *m = y;
        if (l->n != m->n)
            return false;
        for (size_t i = 0; i < l->n; i++)
            if (strcmp(l->items[i], m->items[i]) != 0)
                return false;
        return true;
    }
    }
    return false;
}

/* bounds_text - " (1 to 100000)", " (100ms to 90s)", " (one of a, b)" or "". */
static char *bounds_text(const struct param *p, char *buf, size_t buflen)
{
    char a[32], b[32], ch[256];

    switch (p->type) {
    case PCONF_INT: snprintf(buf, buflen, " (%lld to %lld)", p->min, p->max); break;
    case PCONF_SIZE:
        snprintf(buf, buflen, " (%s to %s)", size_short((uint64_t)p->min, a, sizeof a),
                 size_short((uint64_t)p->max, b, sizeof b));
        break;
    case PCONF_DURATION:
        snprintf(buf, buflen, " (%s to %s)", duration_format((uint64_t)p->min, a, sizeof a),
                 duration_format((uint64_t)p->max, b, sizeof b));
        break;
    case PCONF_ENUM: snprintf(buf, buflen, " (one of %s)", choices_text(p->choices, ch, sizeof ch)); break;
    case PCONF_MODE: snprintf(buf, buflen, " (octal, 0 to 0%llo)", (unsigned long long)p->max); break;
    default: buf[0] = '\0'; break;
    }
    return buf;
}

int policy_conf_print(const struct policy_conf *c, FILE *out)
{
    struct policy_conf *def = policy_conf_defaults();
    const char *group = NULL;
    char bounds[320];

    fprintf(out, "# mxcache-policy configuration: %s\n", c->source ? c->source : "the embedded defaults");
    for (size_t i = 0; i < NPARAMS; i++) {
        const struct param *p = &params[i];
        if (!group || strcmp(group, p->group) != 0) {
            fprintf(out, "%s\n%s = {\n", group ? "};\n" : "", p->group);
            group = p->group;
        }
        fprintf(out, "  # %s%s\n", p->help, bounds_text(p, bounds, sizeof bounds));
        if (def && !field_equal(p, c, def)) {
            fputs("  # default: ", out);
            print_value(p, def, out);
            fputc('\n', out);
        }
        fprintf(out, "  %s = ", p->name);
        print_value(p, c, out);
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
