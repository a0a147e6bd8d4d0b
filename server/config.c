/* config - loads, checks and prints mxcached's configuration (interface in config.h).
 *
 * Everything is driven by the settings table in params.h. The X-macro is expanded once into
 * params[], one descriptor per setting: group, name, type, offset of its field in struct config,
 * default text, bounds, choices, reload flag and help. A value, whether it comes from the file or
 * from the default text, becomes a struct raw and goes through the same param_set(), so defaults
 * are parsed, range-checked and stored by the very code that handles the operator's values, and
 * they are written in exactly one place. A default that fails its own checks is our bug, not the
 * operator's: config_defaults() panics.
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
 * directory), so absolute @include paths do not work. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>

#include "addr.h"
#include "duration.h"
#include "mxc_err.h"

/* One row of params.h. min/max are in the stored unit (milliseconds, bytes). */
struct param {
    const char *group;
    const char *name;
    enum config_type type;
    size_t offset;
    const char *def;
    long long min;
    long long max;
    const char *choices;
    bool reload;
    const char *help;
};

#define PARAM_ROW(g, n, t, f, d, mn, mx, ch, rl, h) \
    {g, n, CONFIG_##t, offsetof(struct config, f), d, mn, mx, ch, rl, h},
static const struct param params[] = {MXCACHED_PARAMS(PARAM_ROW)};
#undef PARAM_ROW

/* The settings of a route: offsets into struct config_route. */
#define ROUTE_ROW(g, n, t, f, d, mn, mx, ch, rl, h) \
    {g, n, CONFIG_##t, offsetof(struct config_route, f), d, mn, mx, ch, rl, h},
static const struct param route_params[] = {MXCACHED_ROUTE_PARAMS(ROUTE_ROW)};
#undef ROUTE_ROW
#define NROUTE_PARAMS (sizeof route_params / sizeof route_params[0])

/* P_<field>: the index of each setting in params[], for the cross-setting checks. */
#define PARAM_INDEX(g, n, t, f, d, mn, mx, ch, rl, h) P_##f,
enum { MXCACHED_PARAMS(PARAM_INDEX) NPARAMS };
#undef PARAM_INDEX

/* In the order of log.facility's choices in params.h. */
static const int facilities[] = {LOG_MAIL,   LOG_DAEMON, LOG_LOCAL0, LOG_LOCAL1, LOG_LOCAL2,
                                 LOG_LOCAL3, LOG_LOCAL4, LOG_LOCAL5, LOG_LOCAL6, LOG_LOCAL7};

/* A value before it is checked against its setting: what the file (or the default text) said. */
enum raw_kind { RAW_BOOL, RAW_INT, RAW_STRING, RAW_LIST, RAW_OTHER };
struct raw {
    enum raw_kind kind;
    bool b;
    long long i;
    const char *s;          /* RAW_STRING; borrowed */
    const char **items;     /* RAW_LIST; the array is owned (freed by raw_fini), the strings not */
    size_t n;
    const char *what;       /* RAW_OTHER: what it is, for the wrong-type message */
    char *own;              /* scratch copy of a default list, freed by raw_fini */
};

/* One load in progress: the config being filled and where each setting came from. */
struct load {
    struct config *cfg;
    struct config_errors *errs;
    size_t nerr;            /* errors of this load (errs may already hold others, or be NULL) */
    const char *path;       /* the file as given, or "(defaults)" */
    const char *incdir;     /* the directory @include names are relative to */
    bool set[NPARAMS];      /* the file set it, at file[] (libconfig's string) line[] */
    const char *file[NPARAMS];
    int line[NPARAMS];
    bool bad[NPARAMS];      /* its value was refused, so the cross-checks leave it alone */
};

/* field_of - p's field in base, a struct config or (route_params) a struct config_route. */
static void *field_of(const void *base, const struct param *p)
{
    return (char *)base + p->offset;
}

/* panic - a broken invariant of this file or of params.h: our bug, never the operator's. */
static _Noreturn void panic(const char *what)
{
    fprintf(stderr, "mxcached: PANIC config: %s\n", what);
    abort();
}

/* quote - s in double quotes with every byte outside printable ASCII, '"' and '\\' as \xNN,
 * truncated with "..." to fit buf; for echoing operator text in messages. Returns buf. */
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

/* size_text - "16M (16777216 bytes)" when a binary suffix divides n exactly, else "300 bytes". */
static char *size_text(uint64_t n, char *buf, size_t buflen)
{
    static const char suffix[] = "KMGT";

    for (int i = 3; i >= 0; i--) {
        uint64_t unit = 1ull << (10 * (i + 1));
        if (n && n % unit == 0) {
            snprintf(buf, buflen, "%llu%c (%llu bytes)", (unsigned long long)(n / unit), suffix[i],
                     (unsigned long long)n);
            return buf;
        }
    }
    snprintf(buf, buflen, "%llu bytes", (unsigned long long)n);
    return buf;
}

/* choice_index - index of name among the '|'-separated choices (case-insensitive), or -1. */
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

/* choice_name - writes choice idx into buf ("?" if there is none); returns buf. */
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

/* choices_text - "debug, info, notice" from "debug|info|notice". */
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

/* group_known - whether any setting lives in group g. */
static bool group_known(const char *g)
{
    for (size_t i = 0; i < NPARAMS; i++)
        if (strcmp(params[i].group, g) == 0)
            return true;
    return false;
}

/* param_find - index of group.name in params[], or -1; group NULL matches any group. */
static int param_find(const char *group, const char *name)
{
    for (size_t i = 0; i < NPARAMS; i++)
        if ((!group || strcmp(params[i].group, group) == 0) && strcmp(params[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* names_text - the group names ("server, log, ...") or, with group set, that group's settings. */
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

static void list_free(struct config_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

/* list_copy - *out gets copies of the n strings; 0 or MXC_ENOMEM (out untouched). */
static int list_copy(const char *const *items, size_t n, struct config_list *out)
{
    struct config_list l = {calloc(n ? n : 1, sizeof(char *)), 0};

    if (!l.items)
        return MXC_ENOMEM;
    for (; l.n < n; l.n++) {
        l.items[l.n] = strdup(items[l.n]);
        if (!l.items[l.n]) {
            list_free(&l);
            return MXC_ENOMEM;
        }
    }
    *out = l;
    return MXC_OK;
}

static void raw_fini(struct raw *v)
{
    free(v->items);
    free(v->own);
}

static const char *raw_what(const struct raw *v)
{
    switch (v->kind) {
    case RAW_BOOL: return "a boolean";
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

/* raw_from_setting - what libconfig read. 0 or MXC_ENOMEM; v is released with raw_fini. */
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
    case CONFIG_TYPE_BOOL:
        v->kind = RAW_BOOL;
        v->b = config_setting_get_bool(s);
        return MXC_OK;
    case CONFIG_TYPE_ARRAY:
    case CONFIG_TYPE_LIST: {
        size_t n = (size_t)config_setting_length(s);
        size_t nstrings = 0, nints = 0;
        for (size_t i = 0; i < n; i++) {
            int et = config_setting_type(config_setting_get_elem(s, (unsigned)i));
            nstrings += et == CONFIG_TYPE_STRING;
            nints += et == CONFIG_TYPE_INT || et == CONFIG_TYPE_INT64;
        }
        if (nstrings < n) {
            v->kind = RAW_OTHER;
            v->what = nints == n ? "a list of integers"
                                 : "a list with elements that are not strings";
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

/* raw_from_default - the default text of p as the file would have given it: INT an integer, BOOL
 * a boolean, LIST the '|'-separated items, the rest a string. A default that is none of these
 * stays a string, so param_set refuses it like any wrong value. 0 or MXC_ENOMEM. */
static int raw_from_default(const struct param *p, struct raw *v)
{
    memset(v, 0, sizeof *v);
    v->kind = RAW_STRING;
    v->s = p->def;
    if (p->type == CONFIG_INT) {
        char *end;
        errno = 0;
        long long i = strtoll(p->def, &end, 10);
        if (errno == 0 && end != p->def && *end == '\0') {
            v->kind = RAW_INT;
            v->i = i;
        }
    } else if (p->type == CONFIG_BOOL) {
        if (strcmp(p->def, "true") == 0 || strcmp(p->def, "false") == 0) {
            v->kind = RAW_BOOL;
            v->b = p->def[0] == 't';
        }
    } else if (p->type == CONFIG_LIST) {
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

/* wrong_type - the message for a value of the wrong kind; returns MXC_ECONFIG. */
static int wrong_type(const struct param *p, const struct raw *v, char *err, size_t errlen)
{
    char ch[256];
    const char *want = "";

    switch (p->type) {
    case CONFIG_BOOL: want = "true or false"; break;
    case CONFIG_INT: want = "an integer"; break;
    case CONFIG_SIZE: want = "a size: bytes as an integer, or a string such as \"64M\""; break;
    case CONFIG_DURATION:
        want = "a duration: seconds as an integer, or a string such as \"30s\" or \"500ms\"";
        break;
    case CONFIG_STRING: want = "a string"; break;
    case CONFIG_ENUM:
        snprintf(err, errlen, "wrong type: expected a string, one of %s; got %s",
                 choices_text(p->choices, ch, sizeof ch), raw_what(v));
        return MXC_ECONFIG;
    case CONFIG_LIST: want = "a list of strings, such as [ \"a\", \"b\" ]"; break;
    }
    snprintf(err, errlen, "wrong type: expected %s; got %s", want, raw_what(v));
    return MXC_ECONFIG;
}

/* param_set - checks v against p and stores it in cfg's field. Returns 0; MXC_ECONFIG with the
 * reason in err (the field keeps its previous value); or MXC_ENOMEM. */
static int param_set(const struct param *p, const struct raw *v, void *base, char *err,
                     size_t errlen)
{
    void *field = field_of(base, p);
    char a[96], b[64], c[64];
    uint64_t u;

    switch (p->type) {
    case CONFIG_BOOL:
        if (v->kind != RAW_BOOL)
            return wrong_type(p, v, err, errlen);
        *(bool *)field = v->b;
        return MXC_OK;

    case CONFIG_INT:
        if (v->kind != RAW_INT)
            return wrong_type(p, v, err, errlen);
        if (v->i < p->min || v->i > p->max) {
            snprintf(err, errlen, "%lld is out of range: allowed %lld to %lld", v->i, p->min,
                     p->max);
            return MXC_ECONFIG;
        }
        *(long long *)field = v->i;
        return MXC_OK;

    case CONFIG_DURATION:
        if (v->kind == RAW_INT) {
            if (v->i < 0 || (uint64_t)v->i > UINT64_MAX / 1000) {
                snprintf(err, errlen, "%lld seconds is out of range: allowed %s to %s", v->i,
                         duration_format((uint64_t)p->min, b, sizeof b),
                         duration_format((uint64_t)p->max, c, sizeof c));
                return MXC_ECONFIG;
            }
            u = (uint64_t)v->i * 1000;
        } else if (v->kind == RAW_STRING) {
            if (duration_parse(v->s, 1000, &u) != MXC_OK) {
                snprintf(err, errlen,
                         "bad duration %s: expected a number with an optional unit ms, s, m, h, "
                         "d or w (no unit: seconds)",
                         quote(v->s, a, sizeof a));
                return MXC_ECONFIG;
            }
        } else {
            return wrong_type(p, v, err, errlen);
        }
        if (u < (uint64_t)p->min || u > (uint64_t)p->max) {
            snprintf(err, errlen, "%s is out of range: allowed %s to %s",
                     duration_format(u, a, sizeof a),
                     duration_format((uint64_t)p->min, b, sizeof b),
                     duration_format((uint64_t)p->max, c, sizeof c));
            return MXC_ECONFIG;
        }
        *(uint64_t *)field = u;
        return MXC_OK;

    case CONFIG_SIZE:
        if (v->kind == RAW_INT) {
            if (v->i < 0) {
                snprintf(err, errlen, "%lld is out of range: allowed %s to %s", v->i,
                         size_text((uint64_t)p->min, b, sizeof b),
                         size_text((uint64_t)p->max, c, sizeof c));
                return MXC_ECONFIG;
            }
            u = (uint64_t)v->i;
        } else if (v->kind == RAW_STRING) {
            if (size_parse(v->s, &u) != MXC_OK) {
                snprintf(err, errlen,
                         "bad size %s: expected a number of bytes with an optional suffix K, M, "
                         "G or T",
                         quote(v->s, a, sizeof a));
                return MXC_ECONFIG;
            }
        } else {
            return wrong_type(p, v, err, errlen);
        }
        if (u < (uint64_t)p->min || u > (uint64_t)p->max) {
            /* XXX libconfig 1.5 truncates integers wider than 32 bits; say how to avoid it. */
            snprintf(err, errlen, "%s is out of range: allowed %s to %s%s",
                     size_text(u, a, sizeof a), size_text((uint64_t)p->min, b, sizeof b),
                     size_text((uint64_t)p->max, c, sizeof c),
                     v->kind == RAW_INT ? " (write large sizes as strings, such as \"2G\")" : "");
            return MXC_ECONFIG;
        }
        *(uint64_t *)field = u;
        return MXC_OK;

    case CONFIG_STRING: {
        if (v->kind != RAW_STRING)
            return wrong_type(p, v, err, errlen);
        /* Security: these strings end up in SMTP replies, policy answers and log lines, where a
         * CR or LF would start a new line that we did not write. */
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

    case CONFIG_ENUM: {
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

    case CONFIG_LIST: {
        struct config_list l;
        if (v->kind != RAW_LIST)
            return wrong_type(p, v, err, errlen);
        for (size_t i = 0; i < v->n; i++)
            if (has_control(v->items[i])) {
                snprintf(err, errlen, "item %zu, %s, contains control characters", i + 1,
                         quote(v->items[i], a, sizeof a));
                return MXC_ECONFIG;
            }
        if (list_copy(v->items, v->n, &l) != MXC_OK)
            return MXC_ENOMEM;
        list_free((struct config_list *)field);
        *(struct config_list *)field = l;
        return MXC_OK;
    }
    }
    panic("a setting of unknown type in params.h");
}

/* load_error - appends "FILE:LINE: text" (line 0: "FILE: text") to the load's errors. */
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
    if ((line > 0 ? asprintf(&msg, "%s:%d: %s", file, line, body)
                  : asprintf(&msg, "%s: %s", file, body)) < 0)
        msg = NULL;
    free(body);
    if (!msg)
        return;
    /* Robustness: out of memory here loses the text, not the error: nerr still counts it. */
    char **grown = realloc(ld->errs->msg, (ld->errs->n + 1) * sizeof *grown);
    if (!grown) {
        free(msg);
        return;
    }
    grown[ld->errs->n++] = msg;
    ld->errs->msg = grown;
}

/* display_file - the file name to print for libconfig's name f of the main file or an include.
 * libconfig keeps an @include name as written, relative to the include directory. */
static const char *display_file(const struct load *ld, const char *f, char *buf, size_t buflen)
{
    if (!f || strcmp(f, ld->path) == 0)
        return ld->path;
    if (f[0] == '/' || strcmp(ld->incdir, ".") == 0)
        return f;
    snprintf(buf, buflen, "%s/%s", ld->incdir, f);
    return buf;
}

/* apply_setting - stores setting s (a member of a known group) into params[idx]. */
static void apply_setting(struct load *ld, int idx, const config_setting_t *s)
{
    const struct param *p = &params[idx];
    char fbuf[4096], err[768];
    const char *file = display_file(ld, config_setting_source_file(s), fbuf, sizeof fbuf);
    int line = (int)config_setting_source_line(s);
    struct raw v;
    int rc = raw_from_setting(s, &v);

    if (rc == MXC_OK)
        rc = param_set(p, &v, ld->cfg, err, sizeof err);
    raw_fini(&v);
    if (rc == MXC_OK) {
        ld->set[idx] = true;
        ld->file[idx] = config_setting_source_file(s);
        ld->line[idx] = line;
        ld->bad[idx] = false;
        return;
    }
    ld->bad[idx] = true;
    if (rc == MXC_ENOMEM)
        load_error(ld, file, line, "%s.%s: out of memory", p->group, p->name);
    else
        load_error(ld, file, line, "%s.%s: %s", p->group, p->name, err);
}

/* ---- verify.routes ---- */

static void route_free(struct config_route *r)
{
    for (size_t i = 0; i < NROUTE_PARAMS; i++) {
        if (route_params[i].type == CONFIG_STRING)
            free(*(char **)field_of(r, &route_params[i]));
        else if (route_params[i].type == CONFIG_LIST)
            list_free((struct config_list *)field_of(r, &route_params[i]));
    }
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

    memset(r, 0, sizeof *r);
    for (size_t i = 0; i < NROUTE_PARAMS; i++) {
        struct raw v;
        int rc = raw_from_default(&route_params[i], &v);
        if (rc == MXC_OK)
            rc = param_set(&route_params[i], &v, r, err, sizeof err);
        raw_fini(&v);
        if (rc == MXC_ENOMEM)
            return rc;
        if (rc != MXC_OK) {
            fprintf(stderr, "mxcached: params.h: default of route setting %s: %s\n",
                    route_params[i].name, err);
            panic("a route default in params.h is invalid");
        }
    }
    return MXC_OK;
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
        load_error(ld, file, line, "verify.routes[%zu].domains: empty: give the recipient domains this route verifies", i);
    if (r->domains.n > CONFIG_ROUTE_DOMAINS_MAX)
        load_error(ld, file, line, "verify.routes[%zu].domains: %zu domains, at most %d (use \".domain\" for subdomains)",
                   i, r->domains.n, CONFIG_ROUTE_DOMAINS_MAX);
    for (size_t k = 0; k < r->domains.n; k++) {
        const char *d = r->domains.items[k];
        bool sub = d[0] == '.';
        if (addr_domain_canon(d + sub, strlen(d + sub), canon + 1, sizeof canon - 1) != MXC_OK) {
            load_error(ld, file, line, "verify.routes[%zu].domains: %s is not a domain name", i,
                       quote(d, q, sizeof q));
            continue;
        }
        canon[0] = '.';
        char *c = strdup(sub ? canon : canon + 1);
        if (!c) {
            load_error(ld, file, line, "verify.routes[%zu].domains: out of memory", i);
            continue;
        }
        free(r->domains.items[k]);
        r->domains.items[k] = c;
        /* One domain, one route: otherwise which backend decides would depend on the order. */
        for (size_t j = 0; j <= i; j++)
            for (size_t m = 0; m < (j == i ? k : routes[j].domains.n); m++)
                if (strcmp(routes[j].domains.items[m], c) == 0)
                    load_error(ld, file, line, "verify.routes[%zu].domains: %s is also in verify.routes[%zu]",
                               i, quote(c, q, sizeof q), j);
    }
    if (r->hosts.n == 0)
        load_error(ld, file, line, "verify.routes[%zu].hosts: empty: give the backend hosts, such as [ \"10.0.0.5:25\" ]", i);
    if (r->hosts.n > CONFIG_ROUTE_HOSTS_MAX)
        load_error(ld, file, line, "verify.routes[%zu].hosts: %zu hosts, at most %d", i, r->hosts.n,
                   CONFIG_ROUTE_HOSTS_MAX);
    for (size_t k = 0; k < r->hosts.n; k++)
        if (config_route_host(r->hosts.items[k], name, sizeof name, &port) != MXC_OK)
            load_error(ld, file, line, "verify.routes[%zu].hosts: bad host %s: expected host:port, "
                       "[IPv6]:port or host (port 25)", i, quote(r->hosts.items[k], q, sizeof q));
    if (addr_domain_canon(r->helo, strlen(r->helo), name, sizeof name) != MXC_OK)
        load_error(ld, file, line, "verify.routes[%zu].helo: %s is not a host name", i,
                   quote(r->helo, q, sizeof q));
    char box[ADDR_MAX_PATH + 1];
    if (r->mail_from[0] && addr_mailbox_canon(r->mail_from, strlen(r->mail_from), false, box, sizeof box) != MXC_OK)
        load_error(ld, file, line, "verify.routes[%zu].mail_from: %s is not a mail address (\"\" is the null sender)",
                   i, quote(r->mail_from, q, sizeof q));
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
        load_error(ld, file, line, "verify.routes: wrong type: expected a list of groups, "
                   "routes = ( { domains = [...]; hosts = [...]; } ); got %s",
                   setting_what(config_setting_type(s)));
        return;
    }
    n = (size_t)config_setting_length(s);
    if (!(routes = calloc(n ? n : 1, sizeof *routes))) {
        load_error(ld, file, line, "verify.routes: out of memory");
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
            load_error(ld, gfile, gline, "verify.routes[%zu]: out of memory", i);
            return;
        }
        ld->cfg->nroutes = i + 1;
        if (!config_setting_is_group(g)) {
            /* libconfig gives a scalar element the line after it: name the list's instead. */
            load_error(ld, file, line, "verify.routes[%zu]: wrong type: expected a group "
                       "{ domains = [...]; hosts = [...]; }; got %s",
                       i, setting_what(config_setting_type(g)));
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
                load_error(ld, mfile, mline, "verify.routes[%zu].%s: unknown setting (settings of a route: %s)",
                           i, name, route_names_text(names, sizeof names));
                continue;
            }
            struct raw v;
            int rc = raw_from_setting(m, &v);
            if (rc == MXC_OK)
                rc = param_set(&route_params[p], &v, &routes[i], err, sizeof err);
            raw_fini(&v);
            if (rc != MXC_OK)
                load_error(ld, mfile, mline, "verify.routes[%zu].%s: %s", i, name,
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

        if (!group_known(gname)) {
            int k = param_find(NULL, gname);
            if (config_setting_is_group(g))
                load_error(ld, file, line, "unknown group %s (groups: %s)", gname,
                           names_text(NULL, names, sizeof names));
            else if (k >= 0)
                load_error(ld, file, line,
                           "%s: setting outside any group; write it inside %s = { ... }", gname,
                           params[k].group);
            else
                load_error(ld, file, line, "%s: unknown setting outside any group (groups: %s)",
                           gname, names_text(NULL, names, sizeof names));
            continue;
        }
        if (!config_setting_is_group(g)) {
            load_error(ld, file, line, "%s: wrong type: expected a group, %s = { ... }; got %s",
                       gname, gname, setting_what(config_setting_type(g)));
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
            int idx = param_find(gname, name);
            if (idx < 0) {
                load_error(ld, display_file(ld, config_setting_source_file(s), fbuf, sizeof fbuf),
                           (int)config_setting_source_line(s),
                           "%s.%s: unknown setting (settings of %s: %s)", gname, name, gname,
                           names_text(gname, names, sizeof names));
                continue;
            }
            apply_setting(ld, idx, s);
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

    if (ld->set[primary])
        at = primary;
    else if (secondary >= 0 && ld->set[secondary])
        at = secondary;
    if (at >= 0) {
        file = display_file(ld, ld->file[at], fbuf, sizeof fbuf);
        line = ld->line[at];
    }
    va_start(ap, fmt);
    if (vasprintf(&body, fmt, ap) < 0)
        body = NULL;
    va_end(ap);
    load_error(ld, file, line, "%s", body ? body : "out of memory");
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

    if (ld->bad[idx])
        return;
    for (size_t i = 0; i < l->n; i++)
        if (addr_domain_canon(l->items[i], strlen(l->items[i]), canon, sizeof canon) != MXC_OK)
            check_error(ld, idx, -1, "%s.%s: %s is not a domain name", params[idx].group,
                        params[idx].name, quote(l->items[i], q, sizeof q));
}

/* check_greylist - the greylist group's rules. */
static void check_greylist(struct load *ld)
{
    const struct config *c = ld->cfg;
    char q[96], a[32], b[32];

    /* Robustness: a deferral must stay temporary, whatever the operator wrote. */
    if (!ld->bad[P_greylist_reply_status] &&
        (!status_ok(c->greylist_reply_status) || strncmp(c->greylist_reply_status, "4.", 2) != 0))
        check_error(ld, P_greylist_reply_status, -1,
                    "greylist.reply_status: %s is not an enhanced status code of class 4 "
                    "(\"4.x.y\", such as \"4.7.1\")",
                    quote(c->greylist_reply_status, q, sizeof q));
    /* An SMTP reply line is at most 512 bytes (RFC 5321 4.5.3.1.5), code and status included;
     * {remaining} is longer than any number it becomes, so the text only shrinks. */
    if (!ld->bad[P_greylist_reply_text] && strlen(c->greylist_reply_text) > 400)
        check_error(ld, P_greylist_reply_text, -1,
                    "greylist.reply_text: %zu bytes; at most 400 fit in an SMTP reply line",
                    strlen(c->greylist_reply_text));
    /* A pending triplet expires at the end of the retry window: with a delay as long, no
     * retry could ever pass. */
    if (!ld->bad[P_greylist_delay] && !ld->bad[P_greylist_retry_window] &&
        c->greylist_delay >= c->greylist_retry_window)
        check_error(ld, P_greylist_delay, P_greylist_retry_window,
                    "greylist.delay %s is not shorter than greylist.retry_window %s: no retry "
                    "could pass",
                    duration_format(c->greylist_delay, a, sizeof a),
                    duration_format(c->greylist_retry_window, b, sizeof b));
    if (!ld->bad[P_greylist_hash_keys] && !ld->bad[P_greylist_key_file] &&
        c->greylist_hash_keys && c->greylist_key_file[0] == '\0')
        check_error(ld, P_greylist_key_file, P_greylist_hash_keys,
                    "greylist.hash_keys needs greylist.key_file: a file with a secret key of at "
                    "least 32 bytes");
    check_domain_list(ld, P_greylist_domains, &c->greylist_domains);
    check_domain_list(ld, P_greylist_exempt_domains, &c->greylist_exempt_domains);
}

/* check_config - the rules that involve the meaning of a value or more than one setting. A
 * setting whose own value was refused is skipped, so one mistake gives one message. */
static void check_config(struct load *ld)
{
    const struct config *c = ld->cfg;
    char q[96];

    if (!ld->bad[P_listen]) {
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
                            quote(e, q, sizeof q));
        }
    }
    if (!ld->bad[P_store_path] && c->store_path[0] == '\0')
        check_error(ld, P_store_path, -1, "store.path: empty");

    bool status_valid = !ld->bad[P_default_status] && status_ok(c->default_status);
    if (!ld->bad[P_default_status] && !status_valid)
        check_error(ld, P_default_status, -1,
                    "policy.default_status: %s is not an enhanced status code "
                    "(class.subject.detail, 1-3 digits each, such as \"4.7.1\")",
                    quote(c->default_status, q, sizeof q));
    if (!ld->bad[P_default_action] && c->default_action != DEFAULT_ACTION_DUNNO) {
        /* Robustness: a defer must never carry a permanent code, nor a reject a temporary one:
         * Postfix and the remote client act on the code, whatever the action word says. */
        bool defer = c->default_action == DEFAULT_ACTION_DEFER;
        const char *action = defer ? "defer" : "reject";
        long long lo = defer ? 400 : 500;
        char cls = defer ? '4' : '5';
        if (!ld->bad[P_default_code] && (c->default_code < lo || c->default_code > lo + 99))
            check_error(ld, P_default_code, P_default_action,
                        "policy.default_action %s needs a %cxx policy.default_code, not %lld",
                        action, cls, c->default_code);
        if (status_valid && (c->default_status[0] != cls || c->default_status[1] != '.'))
            check_error(ld, P_default_status, P_default_action,
                        "policy.default_action %s needs a policy.default_status of class %c "
                        "(\"%c.x.y\"), not %s",
                        action, cls, cls, quote(c->default_status, q, sizeof q));
    }
    if (!ld->bad[P_list_page_size] && !ld->bad[P_list_page_max] &&
        c->list_page_size > c->list_page_max)
        check_error(ld, P_list_page_size, P_list_page_max,
                    "admin.list_page_size %lld is larger than admin.list_page_max %lld",
                    c->list_page_size, c->list_page_max);
    check_greylist(ld);
}

struct config *config_defaults(void)
{
    struct config_errors errs = {0};
    struct load ld = {.errs = &errs, .path = "(defaults)", .incdir = "."};
    char err[768];

    size_t nfacilities = 1;
    for (const char *c = params[P_log_facility].choices; *c; c++)
        nfacilities += *c == '|';
    if (nfacilities != sizeof facilities / sizeof facilities[0])
        panic("log.facility's choices in params.h do not match facilities[] in config.c");

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
            config_free(ld.cfg);
            return NULL;
        }
        if (rc != MXC_OK) {
            fprintf(stderr, "mxcached: params.h: default of %s.%s: %s\n", params[i].group,
                    params[i].name, err);
            panic("a default in params.h is invalid");
        }
    }
    check_config(&ld);
    if (ld.nerr) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "mxcached: params.h: %s\n", errs.msg[i]);
        panic("the defaults in params.h are inconsistent");
    }
    return ld.cfg;
}

struct config *config_load(const char *path, struct config_errors *errs)
{
    struct load ld = {.errs = errs, .path = path ? path : "(null)"};
    struct stat st;
    config_t lc;
    FILE *fp;

    if (!path) {
        load_error(&ld, ld.path, 0, "no configuration file given");
        return NULL;
    }
    /* Robustness: libconfig says only "file I/O error"; open it ourselves first for errno. */
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

    /* @include names are relative to the file's own directory, not to the working directory. */
    const char *slash = strrchr(path, '/');
    char *dir = !slash ? strdup(".") : strndup(path, slash == path ? 1 : (size_t)(slash - path));
    ld.cfg = config_defaults();
    if (!ld.cfg || !dir || !(ld.cfg->source = strdup(path))) {
        free(dir);
        config_free(ld.cfg);
        load_error(&ld, path, 0, "out of memory");
        return NULL;
    }
    ld.incdir = dir;

    config_init(&lc);
    config_set_include_dir(&lc, dir);
    if (!config_read_file(&lc, path)) {
        char fbuf[4096];
        if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
            load_error(&ld, path, 0, "cannot read: %s", config_error_text(&lc));
        else
            load_error(&ld, display_file(&ld, config_error_file(&lc), fbuf, sizeof fbuf),
                       config_error_line(&lc), "%s", config_error_text(&lc));
    } else {
        load_root(&ld, config_root_setting(&lc));
        check_config(&ld);
    }
    /* Last use of libconfig's strings (ld.file[] points into lc): messages are all written. */
    config_destroy(&lc);
    free(dir);
    if (ld.nerr) {
        config_free(ld.cfg);
        return NULL;
    }
    return ld.cfg;
}

void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < NPARAMS; i++) {
        if (params[i].type == CONFIG_STRING)
            free(*(char **)field_of(cfg, &params[i]));
        else if (params[i].type == CONFIG_LIST)
            list_free((struct config_list *)field_of(cfg, &params[i]));
    }
    routes_free(cfg->routes, cfg->nroutes);
    free(cfg->source);
    free(cfg);
}

void config_errors_fini(struct config_errors *errs)
{
    if (!errs)
        return;
    for (size_t i = 0; i < errs->n; i++)
        free(errs->msg[i]);
    free(errs->msg);
    errs->msg = NULL;
    errs->n = 0;
}

/* field_equal - whether p's field is the same in a and b. */
static bool field_equal(const struct param *p, const void *a, const void *b)
{
    const void *x = field_of(a, p), *y = field_of(b, p);

    switch (p->type) {
    case CONFIG_BOOL: return *(const bool *)x == *(const bool *)y;
    case CONFIG_INT: return *(const long long *)x == *(const long long *)y;
    case CONFIG_SIZE:
    case CONFIG_DURATION: return *(const uint64_t *)x == *(const uint64_t *)y;
    case CONFIG_ENUM: return *(const int *)x == *(const int *)y;
    case CONFIG_STRING: {
        const char *s = *(char *const *)x, *t = *(char *const *)y;
        return s == t || (s && t && strcmp(s, t) == 0);
    }
    case CONFIG_LIST: {
        const struct config_list *l = x, *m = y;
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

/* print_string - s as a libconfig string literal. */
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

/* size_short - n as the file would say it: "16M", or "300" when no suffix divides it. */
static char *size_short(uint64_t n, char *buf, size_t buflen)
{
    int shift = 0;

    while (shift < 40 && n && n % (1ull << (shift + 10)) == 0)
        shift += 10;
    snprintf(buf, buflen, "%llu", (unsigned long long)(n >> shift));
    if (shift)
        strncat(buf, &"KMGT"[shift / 10 - 1], 1);
    return buf;
}

/* bounds_text - " (0 to 256)", " (256 to 16M)", " (0s to 10m)", " (one of a, b)" or "". */
static char *bounds_text(const struct param *p, char *buf, size_t buflen)
{
    char a[32], b[32], ch[256];

    switch (p->type) {
    case CONFIG_INT: snprintf(buf, buflen, " (%lld to %lld)", p->min, p->max); break;
    case CONFIG_SIZE:
        snprintf(buf, buflen, " (%s to %s)", size_short((uint64_t)p->min, a, sizeof a),
                 size_short((uint64_t)p->max, b, sizeof b));
        break;
    case CONFIG_DURATION:
        snprintf(buf, buflen, " (%s to %s)", duration_format((uint64_t)p->min, a, sizeof a),
                 duration_format((uint64_t)p->max, b, sizeof b));
        break;
    case CONFIG_ENUM:
        snprintf(buf, buflen, " (one of %s)", choices_text(p->choices, ch, sizeof ch));
        break;
    default: buf[0] = '\0'; break;
    }
    return buf;
}

/* print_value - p's field of cfg in the file's syntax. Sizes and durations are strings with a
 * unit, which read better and dodge libconfig's 32-bit integer literals. */
static void print_value(const struct param *p, const void *cfg, FILE *out)
{
    const void *f = field_of(cfg, p);
    char buf[64];

    switch (p->type) {
    case CONFIG_BOOL: fputs(*(const bool *)f ? "true" : "false", out); break;
    case CONFIG_INT: {
        long long v = *(const long long *)f;
        fprintf(out, "%lld%s", v, v < INT32_MIN || v > INT32_MAX ? "L" : "");
        break;
    }
    case CONFIG_SIZE: print_string(size_short(*(const uint64_t *)f, buf, sizeof buf), out); break;
    case CONFIG_DURATION:
        print_string(duration_format(*(const uint64_t *)f, buf, sizeof buf), out);
        break;
    case CONFIG_STRING: print_string(*(char *const *)f, out); break;
    case CONFIG_ENUM:
        print_string(choice_name(p->choices, *(const int *)f, buf, sizeof buf), out);
        break;
    case CONFIG_LIST: {
        const struct config_list *l = f;
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
                    bounds_text(&route_params[i], bounds, sizeof bounds));
        fputs("  # } );\n  routes = ( );\n", out);
        return;
    }
    fputs("  routes = (\n", out);
    for (size_t r = 0; r < cfg->nroutes; r++) {
        fputs("    {\n", out);
        for (size_t i = 0; i < NROUTE_PARAMS; i++) {
            fprintf(out, "      # %s%s\n      %s = ", route_params[i].help,
                    bounds_text(&route_params[i], bounds, sizeof bounds), route_params[i].name);
            print_value(&route_params[i], &cfg->routes[r], out);
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
        const struct param *p = &params[i];
        if (!group || strcmp(group, p->group) != 0) {
            if (group && strcmp(group, "verify") == 0)
                print_routes(cfg, out);
            fprintf(out, "%s\n%s = {\n", group ? "};\n" : "", p->group);
            group = p->group;
        }
        fprintf(out, "  # %s%s%s\n", p->help, bounds_text(p, bounds, sizeof bounds),
                p->reload ? " [SIGHUP]" : "");
        /* A flag prints defaults and overrides: say what an override replaced. */
        if (def && !field_equal(p, cfg, def)) {
            fputs("  # default: ", out);
            print_value(p, def, out);
            fputc('\n', out);
        }
        fprintf(out, "  %s = ", p->name);
        print_value(p, cfg, out);
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
            if (!field_equal(&route_params[i], &a->routes[r], &b->routes[r]))
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
        const struct param *p = &params[i];
        if (p->reload || field_equal(p, old, new_))
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

/* field_copy - replaces p's field in dst by a copy of src's. */
static int field_copy(const struct param *p, void *dst, const void *src)
{
    void *x = field_of(dst, p);
    const void *y = field_of(src, p);

    switch (p->type) {
    case CONFIG_BOOL: *(bool *)x = *(const bool *)y; return MXC_OK;
    case CONFIG_INT: *(long long *)x = *(const long long *)y; return MXC_OK;
    case CONFIG_SIZE:
    case CONFIG_DURATION: *(uint64_t *)x = *(const uint64_t *)y; return MXC_OK;
    case CONFIG_ENUM: *(int *)x = *(const int *)y; return MXC_OK;
    case CONFIG_STRING: {
        const char *t = *(char *const *)y;
        char *copy = t ? strdup(t) : NULL;
        if (t && !copy)
            return MXC_ENOMEM;
        free(*(char **)x);
        *(char **)x = copy;
        return MXC_OK;
    }
    case CONFIG_LIST: {
        const struct config_list *from = y;
        struct config_list copy = {calloc(from->n ? from->n : 1, sizeof(char *)), 0};
        if (!copy.items)
            return MXC_ENOMEM;
        for (; copy.n < from->n; copy.n++)
            if (!(copy.items[copy.n] = strdup(from->items[copy.n]))) {
                list_free(&copy);
                return MXC_ENOMEM;
            }
        list_free((struct config_list *)x);
        *(struct config_list *)x = copy;
        return MXC_OK;
    }
    }
    return MXC_EINVAL;
}

/* routes_copy - replaces dst's routes by copies of src's. 0 or MXC_ENOMEM (dst unchanged). */
static int routes_copy(struct config *dst, const struct config *src)
{
    struct config_route *r = calloc(src->nroutes ? src->nroutes : 1, sizeof *r);

    if (!r)
        return MXC_ENOMEM;
    for (size_t k = 0; k < src->nroutes; k++)
        for (size_t i = 0; i < NROUTE_PARAMS; i++)
            if (field_copy(&route_params[i], &r[k], &src->routes[k]) != MXC_OK) {
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
        const struct param *p = &params[i];
        if (p->reload || field_equal(p, old, new_))
            continue;
        int rc = field_copy(p, new_, old);
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
