/* conftab - settings tables for libconfig files (interface in conftab.h).
 *
 * A value, whether it comes from the file or from a row's default text, first becomes a struct
 * raw (what was written) and then goes through the same param_set(), so defaults are parsed,
 * range-checked and stored by the very code that handles the operator's values. Fields are
 * reached at base + offset; lists through their members, so a user's own list struct of the same
 * layout works. Owns only the strings it stores; trusts nothing in a value. */
#include "conftab.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "duration.h"
#include "mxc_err.h"

/* A value before it is checked against its setting: what the file (or the default text) said. */
enum raw_kind { RAW_BOOL, RAW_INT, RAW_STRING, RAW_LIST, RAW_OTHER };
struct raw {
    enum raw_kind kind;
    bool b;
    long long i;
    const char *s;      /* RAW_STRING; borrowed */
    const char **items; /* RAW_LIST; the array is owned (freed by raw_fini), the strings not */
    size_t n;
    const char *what;   /* RAW_OTHER: what it is, for the wrong-type message */
    char *own;          /* scratch copy of a default list, freed by raw_fini */
};

/* field_of - p's field in base. */
static void *field_of(const void *base, const struct conftab_param *p)
{
    return (char *)base + p->offset;
}

/* list_items, list_n - the members of a LIST field, reached by their own types so that a
 * user's struct of the same layout is accessed through its members' types. */
static char ***list_items(const void *f)
{
    return (char ***)((char *)f + offsetof(struct conftab_list, items));
}

static size_t *list_n(const void *f)
{
    return (size_t *)((char *)f + offsetof(struct conftab_list, n));
}

/* panic - a broken invariant of a table: our bug, never the operator's. */
static _Noreturn void panic(const char *what)
{
    fprintf(stderr, "PANIC conftab: %s\n", what);
    abort();
}

char *conftab_quote(const char *s, char *buf, size_t buflen)
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

int conftab_choice_index(const char *choices, const char *name)
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

char *conftab_choices_text(const char *choices, char *buf, size_t buflen)
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

bool conftab_group_known(const struct conftab *t, const char *g)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->params[i].group, g) == 0)
            return true;
    return false;
}

int conftab_find(const struct conftab *t, const char *group, const char *name)
{
    for (size_t i = 0; i < t->n; i++)
        if ((!group || strcmp(t->params[i].group, group) == 0) &&
            strcmp(t->params[i].name, name) == 0)
            return (int)i;
    return -1;
}

char *conftab_names_text(const struct conftab *t, const char *group, char *buf, size_t buflen)
{
    const struct conftab_param *params = t->params;
    size_t o = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < t->n; i++) {
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

/* list_free - frees the LIST field f and leaves it empty. */
static void list_free(void *f)
{
    char **items = *list_items(f);

    for (size_t i = 0; i < *list_n(f); i++)
        free(items[i]);
    free(items);
    *list_items(f) = NULL;
    *list_n(f) = 0;
}

/* list_replace - the LIST field f gets copies of the n strings; 0 or MXC_ENOMEM (f untouched). */
static int list_replace(void *f, const char *const *items, size_t n)
{
    struct conftab_list l = {calloc(n ? n : 1, sizeof(char *)), 0};

    if (!l.items)
        return MXC_ENOMEM;
    for (; l.n < n; l.n++) {
        l.items[l.n] = strdup(items[l.n]);
        if (!l.items[l.n]) {
            list_free(&l);
            return MXC_ENOMEM;
        }
    }
    list_free(f);
    *list_items(f) = l.items;
    *list_n(f) = l.n;
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

const char *conftab_setting_what(int type)
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
static int raw_from_setting(const struct conftab *t, const config_setting_t *s, struct raw *v)
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
            v->what = nints == n && !(t->flags & CONFTAB_TERSE)
                          ? "a list of integers"
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
        v->what = conftab_setting_what(type);
        return MXC_OK;
    }
}

/* raw_from_default - the default text of p as the file would have given it: INT an integer, BOOL
 * a boolean, LIST the '|'-separated items, the rest a string. A default that is none of these
 * stays a string, so param_set refuses it like any wrong value. 0 or MXC_ENOMEM. */
static int raw_from_default(const struct conftab_param *p, struct raw *v)
{
    memset(v, 0, sizeof *v);
    v->kind = RAW_STRING;
    v->s = p->def;
    if (p->type == CONFTAB_INT) {
        char *end;
        errno = 0;
        long long i = strtoll(p->def, &end, 10);
        if (errno == 0 && end != p->def && *end == '\0') {
            v->kind = RAW_INT;
            v->i = i;
        }
    } else if (p->type == CONFTAB_BOOL) {
        if (strcmp(p->def, "true") == 0 || strcmp(p->def, "false") == 0) {
            v->kind = RAW_BOOL;
            v->b = p->def[0] == 't';
        }
    } else if (p->type == CONFTAB_LIST) {
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
static int wrong_type(const struct conftab *t, const struct conftab_param *p, const struct raw *v,
                      char *err, size_t errlen)
{
    bool terse = t->flags & CONFTAB_TERSE;
    char ch[256];
    const char *want = "";

    switch (p->type) {
    case CONFTAB_BOOL: want = "true or false"; break;
    case CONFTAB_INT: want = "an integer"; break;
    case CONFTAB_SIZE:
        want = terse ? "a size: bytes as an integer, or a string such as \"16K\""
                     : "a size: bytes as an integer, or a string such as \"64M\"";
        break;
    case CONFTAB_DURATION:
        want = terse ? "a duration: seconds as an integer, or a string such as \"5s\" or "
                       "\"500ms\""
                     : "a duration: seconds as an integer, or a string such as \"30s\" or "
                       "\"500ms\"";
        break;
    case CONFTAB_STRING: want = "a string"; break;
    case CONFTAB_MODE: want = "an octal mode as a string, such as \"0660\""; break;
    case CONFTAB_ENUM:
        snprintf(err, errlen, "wrong type: expected a string, one of %s; got %s",
                 conftab_choices_text(p->choices, ch, sizeof ch), raw_what(v));
        return MXC_ECONFIG;
    case CONFTAB_LIST: want = "a list of strings, such as [ \"a\", \"b\" ]"; break;
    }
    snprintf(err, errlen, "wrong type: expected %s; got %s", want, raw_what(v));
    return MXC_ECONFIG;
}

/* set_duration - a DURATION value: an integer counts seconds, a string has a unit. */
static int set_duration(const struct conftab *t, const struct conftab_param *p, const struct raw *v,
                        void *field, char *err, size_t errlen)
{
    char a[96], b[64], c[64];
    uint64_t u;

    if (v->kind == RAW_INT) {
        if (v->i < 0 || (uint64_t)v->i > UINT64_MAX / 1000) {
            if (t->flags & CONFTAB_TERSE)
                snprintf(err, errlen, "%lld is out of range", v->i);
            else
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
                     conftab_quote(v->s, a, sizeof a));
            return MXC_ECONFIG;
        }
    } else {
        return wrong_type(t, p, v, err, errlen);
    }
    if (u < (uint64_t)p->min || u > (uint64_t)p->max) {
        snprintf(err, errlen, "%s is out of range: allowed %s to %s",
                 duration_format(u, a, sizeof a), duration_format((uint64_t)p->min, b, sizeof b),
                 duration_format((uint64_t)p->max, c, sizeof c));
        return MXC_ECONFIG;
    }
    *(uint64_t *)field = u;
    return MXC_OK;
}

/* set_size - a SIZE value: an integer counts bytes, a string may have a binary suffix. */
static int set_size(const struct conftab *t, const struct conftab_param *p, const struct raw *v,
                    void *field, char *err, size_t errlen)
{
    bool terse = t->flags & CONFTAB_TERSE;
    char a[96], b[64], c[64];
    uint64_t u;

    if (v->kind == RAW_INT) {
        if (v->i < 0 || (terse && (uint64_t)v->i > UINT64_MAX / 1000)) {
            if (terse)
                snprintf(err, errlen, "%lld is out of range", v->i);
            else
                snprintf(err, errlen, "%lld is out of range: allowed %s to %s", v->i,
                         size_text((uint64_t)p->min, b, sizeof b),
                         size_text((uint64_t)p->max, c, sizeof c));
            return MXC_ECONFIG;
        }
        u = (uint64_t)v->i;
    } else if (v->kind == RAW_STRING) {
        if (size_parse(v->s, &u) != MXC_OK) {
            snprintf(err, errlen,
                     terse ? "bad size %s: expected a number of bytes with an optional suffix K, "
                             "M or G"
                           : "bad size %s: expected a number of bytes with an optional suffix K, "
                             "M, G or T",
                     conftab_quote(v->s, a, sizeof a));
            return MXC_ECONFIG;
        }
    } else {
        return wrong_type(t, p, v, err, errlen);
    }
    if (u < (uint64_t)p->min || u > (uint64_t)p->max) {
        if (terse)
            snprintf(err, errlen, "%llu bytes is out of range: allowed %lld to %lld",
                     (unsigned long long)u, p->min, p->max);
        else
            /* XXX libconfig 1.5 truncates integers wider than 32 bits; say how to avoid it. */
            snprintf(err, errlen, "%s is out of range: allowed %s to %s%s",
                     size_text(u, a, sizeof a), size_text((uint64_t)p->min, b, sizeof b),
                     size_text((uint64_t)p->max, c, sizeof c),
                     v->kind == RAW_INT ? " (write large sizes as strings, such as \"2G\")" : "");
        return MXC_ECONFIG;
    }
    *(uint64_t *)field = u;
    return MXC_OK;
}

/* param_set - checks v against p and stores it in p's field of base. Returns 0; MXC_ECONFIG
 * with the reason in err (the field keeps its previous value); or MXC_ENOMEM. */
static int param_set(const struct conftab *t, const struct conftab_param *p, const struct raw *v,
                     void *base, char *err, size_t errlen)
{
    void *field = field_of(base, p);
    char a[96];

    switch (p->type) {
    case CONFTAB_BOOL:
        if (v->kind != RAW_BOOL)
            return wrong_type(t, p, v, err, errlen);
        *(bool *)field = v->b;
        return MXC_OK;

    case CONFTAB_INT:
        if (v->kind != RAW_INT)
            return wrong_type(t, p, v, err, errlen);
        if (v->i < p->min || v->i > p->max) {
            snprintf(err, errlen, "%lld is out of range: allowed %lld to %lld", v->i, p->min,
                     p->max);
            return MXC_ECONFIG;
        }
        *(long long *)field = v->i;
        return MXC_OK;

    case CONFTAB_DURATION: return set_duration(t, p, v, field, err, errlen);
    case CONFTAB_SIZE: return set_size(t, p, v, field, err, errlen);

    case CONFTAB_STRING: {
        if (v->kind != RAW_STRING)
            return wrong_type(t, p, v, err, errlen);
        /* Security: these strings end up in SMTP replies, policy answers and log lines, where a
         * CR or LF would start a new line that we did not write. */
        if (has_control(v->s)) {
            snprintf(err, errlen, "%s contains control characters",
                     conftab_quote(v->s, a, sizeof a));
            return MXC_ECONFIG;
        }
        char *s = strdup(v->s);
        if (!s)
            return MXC_ENOMEM;
        free(*(char **)field);
        *(char **)field = s;
        return MXC_OK;
    }

    case CONFTAB_MODE: {
        char *end;
        if (v->kind != RAW_STRING)
            return wrong_type(t, p, v, err, errlen);
        errno = 0;
        long m = strtol(v->s, &end, 8);
        if (errno || end == v->s || *end || v->s[0] == '-' || m < p->min || m > p->max) {
            snprintf(err, errlen,
                     "bad mode %s: expected octal digits from 0 to 0777, such as \"0660\"",
                     conftab_quote(v->s, a, sizeof a));
            return MXC_ECONFIG;
        }
        *(int *)field = (int)m;
        return MXC_OK;
    }

    case CONFTAB_ENUM: {
        if (v->kind != RAW_STRING)
            return wrong_type(t, p, v, err, errlen);
        int idx = conftab_choice_index(p->choices, v->s);
        if (idx < 0) {
            char ch[256];
            snprintf(err, errlen, "unknown value %s: choices are %s",
                     conftab_quote(v->s, a, sizeof a),
                     conftab_choices_text(p->choices, ch, sizeof ch));
            return MXC_ECONFIG;
        }
        *(int *)field = idx;
        return MXC_OK;
    }

    case CONFTAB_LIST:
        if (v->kind != RAW_LIST)
            return wrong_type(t, p, v, err, errlen);
        for (size_t i = 0; i < v->n; i++)
            if (has_control(v->items[i])) {
                snprintf(err, errlen, "item %zu, %s, contains control characters", i + 1,
                         conftab_quote(v->items[i], a, sizeof a));
                return MXC_ECONFIG;
            }
        return list_replace(field, v->items, v->n);
    }
    panic("a setting of unknown type in a table");
}

int conftab_set_setting(const struct conftab *t, const struct conftab_param *p,
                        const config_setting_t *s, void *base, char *err, size_t errlen)
{
    struct raw v;
    int rc = raw_from_setting(t, s, &v);

    if (rc == MXC_OK)
        rc = param_set(t, p, &v, base, err, errlen);
    raw_fini(&v);
    return rc;
}

int conftab_set_default(const struct conftab *t, const struct conftab_param *p, void *base,
                        char *err, size_t errlen)
{
    struct raw v;
    int rc = raw_from_default(p, &v);

    if (rc == MXC_OK)
        rc = param_set(t, p, &v, base, err, errlen);
    raw_fini(&v);
    return rc;
}

int conftab_set_defaults(const struct conftab *t, void *base, const struct conftab_param **failed,
                         char *err, size_t errlen)
{
    for (size_t i = 0; i < t->n; i++) {
        int rc = conftab_set_default(t, &t->params[i], base, err, errlen);
        if (rc != MXC_OK) {
            *failed = &t->params[i];
            return rc;
        }
    }
    return MXC_OK;
}

void conftab_apply(const struct conftab *t, size_t idx, const config_setting_t *s, void *base,
                   const char *path, const char *incdir, struct conftab_mark *mark,
                   struct conftab_log *log)
{
    const struct conftab_param *p = &t->params[idx];
    const char *f = config_setting_source_file(s);
    int line = (int)config_setting_source_line(s);
    char fbuf[4096], err[768];
    int rc = conftab_set_setting(t, p, s, base, err, sizeof err);

    if (rc == MXC_OK) {
        *mark = (struct conftab_mark){true, f ? f : path, line, false};
        return;
    }
    mark->bad = true;
    conftab_error(log, conftab_display_file(path, incdir, f, fbuf, sizeof fbuf), line,
                  "%s.%s: %s", p->group, p->name, rc == MXC_ENOMEM ? "out of memory" : err);
}

void conftab_fields_free(const struct conftab *t, void *base)
{
    if (!base)
        return;
    for (size_t i = 0; i < t->n; i++) {
        const struct conftab_param *p = &t->params[i];
        if (p->type == CONFTAB_STRING) {
            free(*(char **)field_of(base, p));
            *(char **)field_of(base, p) = NULL;
        } else if (p->type == CONFTAB_LIST) {
            list_free(field_of(base, p));
        }
    }
}

bool conftab_field_equal(const struct conftab_param *p, const void *a, const void *b)
{
    const void *x = field_of(a, p), *y = field_of(b, p);

    switch (p->type) {
    case CONFTAB_BOOL: return *(const bool *)x == *(const bool *)y;
    case CONFTAB_INT: return *(const long long *)x == *(const long long *)y;
    case CONFTAB_SIZE:
    case CONFTAB_DURATION: return *(const uint64_t *)x == *(const uint64_t *)y;
    case CONFTAB_MODE:
    case CONFTAB_ENUM: return *(const int *)x == *(const int *)y;
    case CONFTAB_STRING: {
        const char *s = *(char *const *)x, *t = *(char *const *)y;
        return s == t || (s && t && strcmp(s, t) == 0);
    }
    case CONFTAB_LIST: {
        size_t n = *list_n(x);
        char **l = *list_items(x), **m = *list_items(y);
        if (n != *list_n(y))
            return false;
        for (size_t i = 0; i < n; i++)
            if (strcmp(l[i], m[i]) != 0)
                return false;
        return true;
    }
    }
    return false;
}

int conftab_field_copy(const struct conftab_param *p, void *dst, const void *src)
{
    void *x = field_of(dst, p);
    const void *y = field_of(src, p);

    switch (p->type) {
    case CONFTAB_BOOL: *(bool *)x = *(const bool *)y; return MXC_OK;
    case CONFTAB_INT: *(long long *)x = *(const long long *)y; return MXC_OK;
    case CONFTAB_SIZE:
    case CONFTAB_DURATION: *(uint64_t *)x = *(const uint64_t *)y; return MXC_OK;
    case CONFTAB_MODE:
    case CONFTAB_ENUM: *(int *)x = *(const int *)y; return MXC_OK;
    case CONFTAB_STRING: {
        const char *s = *(char *const *)y;
        char *copy = s ? strdup(s) : NULL;
        if (s && !copy)
            return MXC_ENOMEM;
        free(*(char **)x);
        *(char **)x = copy;
        return MXC_OK;
    }
    case CONFTAB_LIST:
        return list_replace(x, (const char *const *)*list_items(y), *list_n(y));
    }
    return MXC_EINVAL;
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

char *conftab_bounds_text(const struct conftab_param *p, char *buf, size_t buflen)
{
    char a[32], b[32], ch[256];

    switch (p->type) {
    case CONFTAB_INT: snprintf(buf, buflen, " (%lld to %lld)", p->min, p->max); break;
    case CONFTAB_SIZE:
        snprintf(buf, buflen, " (%s to %s)", size_short((uint64_t)p->min, a, sizeof a),
                 size_short((uint64_t)p->max, b, sizeof b));
        break;
    case CONFTAB_DURATION:
        snprintf(buf, buflen, " (%s to %s)", duration_format((uint64_t)p->min, a, sizeof a),
                 duration_format((uint64_t)p->max, b, sizeof b));
        break;
    case CONFTAB_ENUM:
        snprintf(buf, buflen, " (one of %s)", conftab_choices_text(p->choices, ch, sizeof ch));
        break;
    case CONFTAB_MODE:
        snprintf(buf, buflen, " (octal, 0 to 0%llo)", (unsigned long long)p->max);
        break;
    default: buf[0] = '\0'; break;
    }
    return buf;
}

/* Sizes and durations print as strings with a unit, which read better and dodge libconfig's
 * 32-bit integer literals; an INT beyond 32 bits gets the L suffix for the same reason. */
void conftab_print_value(const struct conftab_param *p, const void *base, FILE *out)
{
    const void *f = field_of(base, p);
    char buf[64];

    switch (p->type) {
    case CONFTAB_BOOL: fputs(*(const bool *)f ? "true" : "false", out); break;
    case CONFTAB_INT: {
        long long v = *(const long long *)f;
        fprintf(out, "%lld%s", v, v < INT32_MIN || v > INT32_MAX ? "L" : "");
        break;
    }
    case CONFTAB_SIZE: print_string(size_short(*(const uint64_t *)f, buf, sizeof buf), out); break;
    case CONFTAB_DURATION:
        print_string(duration_format(*(const uint64_t *)f, buf, sizeof buf), out);
        break;
    case CONFTAB_STRING: print_string(*(char *const *)f, out); break;
    case CONFTAB_MODE:
        snprintf(buf, sizeof buf, "0%o", (unsigned)*(const int *)f);
        print_string(buf, out);
        break;
    case CONFTAB_ENUM:
        print_string(choice_name(p->choices, *(const int *)f, buf, sizeof buf), out);
        break;
    case CONFTAB_LIST: {
        char **items = *list_items(f);
        fputs("[", out);
        for (size_t i = 0; i < *list_n(f); i++) {
            fputs(i ? ", " : " ", out);
            print_string(items[i], out);
        }
        fputs(" ]", out);
        break;
    }
    }
}

void conftab_error(struct conftab_log *log, const char *file, int line, const char *fmt, ...)
{
    char *body = NULL, *msg = NULL;
    va_list ap;

    log->nerr++;
    if (!log->msg)
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
    char **grown = realloc(*log->msg, (*log->n + 1) * sizeof *grown);
    if (!grown) {
        free(msg);
        return;
    }
    grown[(*log->n)++] = msg;
    *log->msg = grown;
}

void conftab_errors_fini(char ***msgs, size_t *n)
{
    for (size_t i = 0; i < *n; i++)
        free((*msgs)[i]);
    free(*msgs);
    *msgs = NULL;
    *n = 0;
}

const char *conftab_display_file(const char *path, const char *incdir, const char *f, char *buf,
                                 size_t buflen)
{
    if (!f || strcmp(f, path) == 0)
        return path;
    if (f[0] == '/' || strcmp(incdir, ".") == 0)
        return f;
    snprintf(buf, buflen, "%s/%s", incdir, f);
    return buf;
}

int conftab_readable(const char *path, struct conftab_log *log)
{
    struct stat st;
    FILE *fp;

    if (!path) {
        conftab_error(log, "(null)", 0, "no configuration file given");
        return MXC_EIO;
    }
    fp = fopen(path, "r");
    if (!fp) {
        conftab_error(log, path, 0, "cannot read: %s", strerror(errno));
        return MXC_EIO;
    }
    if (fstat(fileno(fp), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(fp);
        conftab_error(log, path, 0, "cannot read: %s", strerror(EISDIR));
        return MXC_EIO;
    }
    fclose(fp);
    return MXC_OK;
}

/* ---- @include targets that would end the process ---- */

#define INCLUDE_DEPTH_MAX 10              /* libconfig's own limit of nested @include */
#define INCLUDE_SCAN_MAX (16u << 20)      /* bytes of one file looked at for @include lines */

/* How the walk over the @include lines goes on. */
enum inc { INC_ON, INC_STOP, INC_REFUSED };

static enum inc includes_check(const char *file, const char *shown, const char *path,
                               const char *incdir, int depth, struct conftab_log *log);

/* include_target - one @include "name" at line of shown, in a file depth includes deep, as
 * libconfig 1.5 takes it: past the depth limit, or when the target cannot be opened, libconfig
 * stops with its own error (INC_STOP: nothing more to check); a target that is no regular file
 * is refused (INC_REFUSED, logged); a regular file is walked in turn. */
static enum inc include_target(const char *name, int line, const char *shown, const char *path,
                               const char *incdir, int depth, struct conftab_log *log)
{
    char *full = NULL, q[96], fbuf[4096];
    struct stat st;
    enum inc r = INC_STOP;

    if (depth >= INCLUDE_DEPTH_MAX)
        return INC_STOP;
    /* libconfig 1.5 opens incdir + "/" + name, or name as it is without an include dir. */
    if (incdir ? asprintf(&full, "%s/%s", incdir, name) < 0 : !(full = strdup(name)))
        return INC_STOP; /* out of memory: libconfig decides */
    if (stat(full, &st) != 0) {
        r = INC_STOP;
    } else if (!S_ISREG(st.st_mode)) {
        conftab_error(log, shown, line, "@include %s: not a regular file", conftab_quote(name, q, sizeof q));
        r = INC_REFUSED;
    } else {
        r = includes_check(full, conftab_display_file(path, incdir ? incdir : ".", name, fbuf, sizeof fbuf),
                           path, incdir, depth + 1, log);
    }
    free(full);
    return r;
}

/* includes_check - walks the @include lines of file (shown as shown in messages; depth includes
 * deep) in libconfig's order, depth first, the way its scanner sees them: a line that starts
 * with blanks, "@include", blanks and a quoted name, outside comments and strings.
 * Robustness: libconfig 1.5 opens an @include target with fopen, which succeeds for a
 * directory; the scanner's read then fails and flex's fatal-error handler calls exit(2), so an
 * '@include "conf.d"' (or a FIFO, or a device) ended the daemon, on a SIGHUP reload too, where it
 * must be refused (fuzz_config found it). Such a target is refused here, before libconfig reads
 * anything. The walk stops where libconfig would stop (too deep, a target it cannot open), so it
 * costs what libconfig's own reading costs. */
static enum inc includes_check(const char *file, const char *shown, const char *path,
                               const char *incdir, int depth, struct conftab_log *log)
{
    FILE *fp = fopen(file, "r");
    struct stat st;
    char *t, *name;
    size_t n, i = 0;
    int line = 1;
    bool bol = true;
    enum inc r = INC_ON;

    if (!fp)
        return INC_STOP; /* libconfig says why */
    n = fstat(fileno(fp), &st) == 0 && S_ISREG(st.st_mode) ? (size_t)st.st_size : 0;
    if (n > INCLUDE_SCAN_MAX)
        n = INCLUDE_SCAN_MAX;
    t = malloc(n + 1);
    name = malloc(n + 1);
    if (!t || !name) {
        fclose(fp);
        free(t);
        free(name);
        return INC_STOP;
    }
    n = fread(t, 1, n, fp);
    fclose(fp);
    while (i < n && r == INC_ON) {
        if (bol) {
            size_t j = i, k;
            while (j < n && (t[j] == ' ' || t[j] == '\t'))
                j++;
            if (n - j > 8 && memcmp(t + j, "@include", 8) == 0) {
                k = j + 8;
                while (k < n && (t[k] == ' ' || t[k] == '\t'))
                    k++;
                if (k > j + 8 && k < n && t[k] == '"') {
                    size_t len = 0;
                    int at = line;
                    /* the name: \\ and \" are escapes; another backslash is dropped */
                    for (k++; k < n && t[k] != '"'; k++) {
                        if (t[k] == '\\') {
                            if (k + 1 < n && (t[k + 1] == '\\' || t[k + 1] == '"'))
                                name[len++] = t[++k];
                            continue;
                        }
                        line += t[k] == '\n';
                        name[len++] = t[k];
                    }
                    if (k >= n)
                        break; /* unterminated: libconfig's syntax error */
                    name[len] = '\0';
                    /* a NUL in the name: libconfig's C string stops there */
                    r = include_target(name, at, shown, path, incdir, depth, log);
                    i = k + 1;
                    bol = false;
                    continue;
                }
            }
        }
        char c = t[i++];
        bol = c == '\n';
        line += c == '\n';
        if (c == '"') { /* a string: a backslash escapes the next byte */
            while (i < n && t[i] != '"') {
                if (t[i] == '\\' && i + 1 < n)
                    i++;
                line += t[i++] == '\n';
            }
            i++;
        } else if (c == '/' && i < n && t[i] == '*') { /* a comment */
            for (i++; i < n && !(t[i] == '*' && i + 1 < n && t[i + 1] == '/'); i++)
                line += t[i] == '\n';
            i += 2;
        } else if (c == '#' || (c == '/' && i < n && t[i] == '/')) {
            while (i < n && t[i] != '\n')
                i++;
        }
    }
    free(name);
    free(t);
    return r;
}

int conftab_read(config_t *lc, const char *path, const char *incdir, struct conftab_log *log)
{
    char fbuf[4096];

    if (includes_check(path, path, path, incdir, 0, log) == INC_REFUSED)
        return MXC_ECONFIG;
    if (incdir)
        config_set_include_dir(lc, incdir);
    if (config_read_file(lc, path))
        return MXC_OK;
    if (config_error_type(lc) == CONFIG_ERR_FILE_IO)
        conftab_error(log, path, 0, "cannot read: %s", config_error_text(lc));
    else
        conftab_error(log,
                      conftab_display_file(path, incdir ? incdir : ".", config_error_file(lc),
                                           fbuf, sizeof fbuf),
                      config_error_line(lc), "%s", config_error_text(lc));
    return MXC_ECONFIG;
}
