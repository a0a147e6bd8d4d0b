/* mxcachectl output: times (ISO-8601 UTC and "30d 23h" spans), escaping of untrusted text, an
 * aligned table printer, JSON helpers, how one store entry looks as a table row, as "field value"
 * lines and as a JSON object, and the replies of explain and verify. Prints only where its callers
 * say; owns the tables it creates. Trusts nothing in the entries or replies (a probe's transcript
 * holds what a backend sent): every string is escaped for the terminal. */
#include "ctl.h"

#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mxc_err.h"
#include "wire.h"

uint64_t ctl_fmt_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

char *ctl_fmt_time(uint64_t ms, char *buf)
{
    time_t t = (time_t)(ms / 1000u);
    struct tm tm;

    if (ms == 0 || !gmtime_r(&t, &tm) || strftime(buf, CTL_TIME_BUFSIZE, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        strcpy(buf, "-");
    return buf;
}

char *ctl_fmt_span(uint64_t ms, char *buf)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}};
    size_t n = sizeof units / sizeof units[0], i;

    if (ms < 1000) {
        snprintf(buf, CTL_SPAN_BUFSIZE, "%llums", (unsigned long long)ms);
        return buf;
    }
    /* Round to the smaller of the two units shown, so that "30d" minus a few milliseconds
     * still reads "30d"; rounding may carry into the larger unit (23h 59m 50s -> 1d). */
    for (i = 0; ms < units[i].ms; i++)
        ;
    uint64_t step = i + 1 < n ? units[i + 1].ms : units[i].ms;
    if (ms <= UINT64_MAX - step / 2)
        ms = (ms + step / 2) / step * step;
    for (i = 0; ms < units[i].ms; i++)
        ;
    unsigned long long big = ms / units[i].ms;
    unsigned long long small = i + 1 < n ? (ms % units[i].ms) / units[i + 1].ms : 0;
    if (small)
        snprintf(buf, CTL_SPAN_BUFSIZE, "%llu%s %llu%s", big, units[i].unit, small, units[i + 1].unit);
    else
        snprintf(buf, CTL_SPAN_BUFSIZE, "%llu%s", big, units[i].unit);
    return buf;
}

char *ctl_fmt_expiry(uint64_t expires_at_ms, uint64_t now_ms, char *buf)
{
    char span[CTL_SPAN_BUFSIZE];

    if (expires_at_ms == 0)
        strcpy(buf, "never");
    else if (expires_at_ms <= now_ms)
        strcpy(buf, "expired");
    else
        snprintf(buf, CTL_EXPIRY_BUFSIZE, "in %s", ctl_fmt_span(expires_at_ms - now_ms, span));
    return buf;
}

char *ctl_fmt_clean(const char *s)
{
    size_t n = 0, len;
    char *out, *p;

    if (!s)
        s = "";
    len = strlen(s);
    if (len > CTL_MAX_CELL)
        len = CTL_MAX_CELL;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        n += (c < 0x20 || c == 0x7f || c == '\\') ? 4 : 1;
    }
    if (!(out = malloc(n + 4)))
        return NULL;
    p = out;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == '\\')
            p += sprintf(p, "\\x%02x", c);
        else
            *p++ = (char)c;
    }
    if (len < strlen(s))
        p += sprintf(p, "...");
    *p = '\0';
    return out;
}

/* ---- tables ---- */

struct ctl_table {
    size_t ncols;
    char **headers;      /* ncols cleaned strings, or NULL */
    char *align;         /* ncols of 'l'/'r' */
    size_t *width;
    char **cells;        /* nrows * ncols buffered, cleaned */
    size_t nrows, cap;
    bool header_done;
};

struct ctl_table *ctl_table_create(size_t ncols, const char *const *headers, const char *align)
{
    struct ctl_table *t = calloc(1, sizeof *t);

    if (!t || !(t->align = calloc(ncols + 1, 1)) || !(t->width = calloc(ncols, sizeof *t->width)))
        goto fail;
    t->ncols = ncols;
    for (size_t i = 0; i < ncols; i++)
        t->align[i] = (align && align[i] == 'r') ? 'r' : 'l';
    if (headers) {
        if (!(t->headers = calloc(ncols, sizeof *t->headers)))
            goto fail;
        for (size_t i = 0; i < ncols; i++) {
            if (!(t->headers[i] = ctl_fmt_clean(headers[i])))
                goto fail;
            t->width[i] = strlen(t->headers[i]);
        }
    }
    return t;
fail:
    ctl_table_destroy(t);
    return NULL;
}

int ctl_table_add(struct ctl_table *t, const char *const *cells)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        char **c = realloc(t->cells, cap * t->ncols * sizeof *c);
        if (!c)
            return MXC_ENOMEM;
        t->cells = c;
        t->cap = cap;
    }
    char **row = t->cells + t->nrows * t->ncols;
    for (size_t i = 0; i < t->ncols; i++) {
        if (!(row[i] = ctl_fmt_clean(cells[i] ? cells[i] : "-"))) {
            while (i-- > 0)
                free(row[i]);
            return MXC_ENOMEM;
        }
    }
    t->nrows++;
    return 0;
}

int ctl_table_addv(struct ctl_table *t, ...)
{
    const char *cells[16];
    va_list ap;

    if (t->ncols > sizeof cells / sizeof cells[0])
        return MXC_EINVAL;
    va_start(ap, t);
    for (size_t i = 0; i < t->ncols; i++)
        cells[i] = va_arg(ap, const char *);
    va_end(ap);
    return ctl_table_add(t, cells);
}

size_t ctl_table_pending(const struct ctl_table *t)
{
    return t->nrows;
}

/* table_line - prints one row (or the header) padded to the column widths. */
static void table_line(const struct ctl_table *t, char *const *cells, FILE *out)
{
    size_t last = t->ncols - 1;

    for (size_t i = 0; i < t->ncols; i++) {
        int w = (int)t->width[i];
        if (i)
            fputs("  ", out);
        if (t->align[i] == 'r')
            fprintf(out, "%*s", w, cells[i]);
        else if (i == last)
            fputs(cells[i], out);
        else
            fprintf(out, "%-*s", w, cells[i]);
    }
    fputc('\n', out);
}

void ctl_table_flush(struct ctl_table *t, FILE *out)
{
    if (t->nrows == 0)
        return;
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t i = 0; i < t->ncols; i++) {
            size_t w = strlen(t->cells[r * t->ncols + i]);
            if (w > t->width[i])
                t->width[i] = w;
        }
    if (t->headers && !t->header_done)
        table_line(t, t->headers, out);
    t->header_done = true;
    for (size_t r = 0; r < t->nrows; r++) {
        table_line(t, t->cells + r * t->ncols, out);
        for (size_t i = 0; i < t->ncols; i++)
            free(t->cells[r * t->ncols + i]);
    }
    t->nrows = 0;
}

void ctl_table_destroy(struct ctl_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    if (t->headers)
        for (size_t i = 0; i < t->ncols; i++)
            free(t->headers[i]);
    free(t->headers);
    free(t->cells);
    free(t->width);
    free(t->align);
    free(t);
}

/* ---- JSON ---- */

json_t *ctl_json_string(const char *s)
{
    json_t *j = json_string(s ? s : "");

    if (!j) {
        /* Robustness: jansson refuses invalid UTF-8; show such bytes escaped instead. */
        char *c = ctl_fmt_clean(s);
        if (c) {
            for (char *p = c; *p; p++)
                if ((unsigned char)*p >= 0x80)
                    *p = '?';
            j = json_string(c);
        }
        free(c);
    }
    return j;
}

json_t *ctl_json_uint(uint64_t v)
{
    return json_integer(v > (uint64_t)LLONG_MAX ? (json_int_t)LLONG_MAX : (json_int_t)v);
}

void ctl_json_set_time(json_t *obj, const char *name, uint64_t ms)
{
    char key[64], buf[CTL_TIME_BUFSIZE];

    snprintf(key, sizeof key, "%s_ms", name);
    json_object_set_new(obj, key, ctl_json_uint(ms));
    json_object_set_new(obj, name, ms ? json_string(ctl_fmt_time(ms, buf)) : json_null());
}

int ctl_json_print(json_t *obj, FILE *out)
{
    if (!obj)
        return MXC_ENOMEM;
    json_dumpf(obj, out, JSON_COMPACT | JSON_PRESERVE_ORDER);
    fputc('\n', out);
    json_decref(obj);
    return 0;
}

/* ---- entries ---- */

json_t *ctl_entry_json(const Mxcache__Entry *e)
{
    json_t *o = json_object();

    if (!o)
        return NULL;
    json_object_set_new(o, "keyspace", json_string(wire_keyspace_name(e->keyspace)));
    json_object_set_new(o, "key", ctl_json_string(e->key));
    switch (e->record_case) {
    case MXCACHE__ENTRY__RECORD_VERIFY: {
        const Mxcache__VerifyRecord *v = e->verify;
        json_object_set_new(o, "state", json_string(wire_state_name(v->state)));
        json_object_set_new(o, "smtp_code", json_integer(v->smtp_code));
        json_object_set_new(o, "enhanced_status", ctl_json_string(v->enhanced_status));
        json_object_set_new(o, "text", ctl_json_string(v->text));
        json_object_set_new(o, "backend", ctl_json_string(v->backend));
        ctl_json_set_time(o, "probed_at", v->probed_at_ms);
        ctl_json_set_time(o, "refresh_at", v->refresh_at_ms);
        ctl_json_set_time(o, "first_seen", v->first_seen_ms);
        ctl_json_set_time(o, "expires_at", v->expires_at_ms);
        break;
    }
    case MXCACHE__ENTRY__RECORD_GREYLIST: {
        const Mxcache__GreylistRecord *g = e->greylist;
        json_object_set_new(o, "state", json_string(wire_state_name(g->state)));
        json_object_set_new(o, "attempts", json_integer(g->attempts));
        json_object_set_new(o, "passes", json_integer(g->passes));
        ctl_json_set_time(o, "first_seen", g->first_seen_ms);
        ctl_json_set_time(o, "last_seen", g->last_seen_ms);
        ctl_json_set_time(o, "passed_at", g->passed_at_ms);
        ctl_json_set_time(o, "expires_at", g->expires_at_ms);
        break;
    }
    case MXCACHE__ENTRY__RECORD_AWL: {
        const Mxcache__AwlRecord *a = e->awl;
        json_object_set_new(o, "passes", json_integer(a->passes));
        ctl_json_set_time(o, "first_seen", a->first_seen_ms);
        ctl_json_set_time(o, "last_seen", a->last_seen_ms);
        ctl_json_set_time(o, "expires_at", a->expires_at_ms);
        break;
    }
    case MXCACHE__ENTRY__RECORD_WHITELIST: {
        const Mxcache__WhitelistRecord *w = e->whitelist;
        json_object_set_new(o, "kind", json_string(wire_wlkind_name(w->kind)));
        json_object_set_new(o, "value", ctl_json_string(w->value));
        json_object_set_new(o, "comment", ctl_json_string(w->comment));
        ctl_json_set_time(o, "added_at", w->added_at_ms);
        ctl_json_set_time(o, "expires_at", w->expires_at_ms);
        break;
    }
    default:
        break;
    }
    return o;
}

struct ctl_table *ctl_entry_table(Mxcache__Keyspace ks)
{
    static const char *const verify[] = {"KEY", "STATE", "CODE", "STATUS", "PROBED", "EXPIRES", "TEXT"};
    static const char *const grey[] = {"KEY", "STATE", "ATTEMPTS", "PASSES", "FIRST_SEEN", "LAST_SEEN", "EXPIRES"};
    static const char *const awl[] = {"KEY", "PASSES", "FIRST_SEEN", "LAST_SEEN", "EXPIRES"};
    static const char *const wl[] = {"KIND", "VALUE", "ADDED", "EXPIRES", "COMMENT"};

    switch (ks) {
    case MXCACHE__KEYSPACE__KEYSPACE_VERIFY: return ctl_table_create(7, verify, "llrllll");
    case MXCACHE__KEYSPACE__KEYSPACE_GREYLIST: return ctl_table_create(7, grey, "llrrlll");
    case MXCACHE__KEYSPACE__KEYSPACE_AWL: return ctl_table_create(5, awl, "lrlll");
    default: return ctl_table_create(5, wl, "lllll");
    }
}

int ctl_entry_row(struct ctl_table *t, Mxcache__Keyspace ks, const Mxcache__Entry *e, uint64_t now_ms)
{
    char t1[CTL_TIME_BUFSIZE], t2[CTL_TIME_BUFSIZE], ex[CTL_EXPIRY_BUFSIZE], n1[16], n2[16];

    switch (ks) {
    case MXCACHE__KEYSPACE__KEYSPACE_VERIFY: {
        const Mxcache__VerifyRecord *v = e->record_case == MXCACHE__ENTRY__RECORD_VERIFY ? e->verify : NULL;
        if (!v)
            return ctl_table_addv(t, e->key, NULL, NULL, NULL, NULL, NULL, NULL);
        snprintf(n1, sizeof n1, "%u", v->smtp_code);
        return ctl_table_addv(t, e->key, wire_state_name(v->state), n1,
                              *v->enhanced_status ? v->enhanced_status : "-", ctl_fmt_time(v->probed_at_ms, t1),
                              ctl_fmt_expiry(v->expires_at_ms, now_ms, ex), *v->text ? v->text : "-");
    }
    case MXCACHE__KEYSPACE__KEYSPACE_GREYLIST: {
        const Mxcache__GreylistRecord *g = e->record_case == MXCACHE__ENTRY__RECORD_GREYLIST ? e->greylist : NULL;
        if (!g)
            return ctl_table_addv(t, e->key, NULL, NULL, NULL, NULL, NULL, NULL);
        snprintf(n1, sizeof n1, "%u", g->attempts);
        snprintf(n2, sizeof n2, "%u", g->passes);
        return ctl_table_addv(t, e->key, wire_state_name(g->state), n1, n2, ctl_fmt_time(g->first_seen_ms, t1),
                              ctl_fmt_time(g->last_seen_ms, t2), ctl_fmt_expiry(g->expires_at_ms, now_ms, ex));
    }
    case MXCACHE__KEYSPACE__KEYSPACE_AWL: {
        const Mxcache__AwlRecord *a = e->record_case == MXCACHE__ENTRY__RECORD_AWL ? e->awl : NULL;
        if (!a)
            return ctl_table_addv(t, e->key, NULL, NULL, NULL, NULL);
        snprintf(n1, sizeof n1, "%u", a->passes);
        return ctl_table_addv(t, e->key, n1, ctl_fmt_time(a->first_seen_ms, t1), ctl_fmt_time(a->last_seen_ms, t2),
                              ctl_fmt_expiry(a->expires_at_ms, now_ms, ex));
    }
    default: {
        const Mxcache__WhitelistRecord *w =
            e->record_case == MXCACHE__ENTRY__RECORD_WHITELIST ? e->whitelist : NULL;
        if (!w)
            return ctl_table_addv(t, NULL, e->key, NULL, NULL, NULL);
        return ctl_table_addv(t, wire_wlkind_name(w->kind), w->value, ctl_fmt_time(w->added_at_ms, t1),
                              ctl_fmt_expiry(w->expires_at_ms, now_ms, ex), *w->comment ? w->comment : "-");
    }
    }
}

/* detail_expiry - "ISO (in 30d 23h)", "ISO (expired)" or "never" into buf. */
static const char *detail_expiry(uint64_t ms, uint64_t now_ms, char *buf, size_t len)
{
    char iso[CTL_TIME_BUFSIZE], rel[CTL_EXPIRY_BUFSIZE];

    if (ms == 0)
        return "never";
    snprintf(buf, len, "%s (%s)", ctl_fmt_time(ms, iso), ctl_fmt_expiry(ms, now_ms, rel));
    return buf;
}

int ctl_entry_detail(const Mxcache__Entry *e, uint64_t now_ms, FILE *out)
{
    char t1[CTL_TIME_BUFSIZE], t2[CTL_TIME_BUFSIZE], t3[CTL_TIME_BUFSIZE], ex[96], n1[16], n2[16];
    struct ctl_table *t = ctl_table_create(2, NULL, NULL);
    int rc = 0;

    if (!t)
        return MXC_ENOMEM;
    rc |= ctl_table_addv(t, "keyspace", wire_keyspace_name(e->keyspace));
    rc |= ctl_table_addv(t, "key", e->key);
    switch (e->record_case) {
    case MXCACHE__ENTRY__RECORD_VERIFY: {
        const Mxcache__VerifyRecord *v = e->verify;
        snprintf(n1, sizeof n1, "%u", v->smtp_code);
        rc |= ctl_table_addv(t, "state", wire_state_name(v->state));
        rc |= ctl_table_addv(t, "smtp_code", n1);
        rc |= ctl_table_addv(t, "enhanced_status", *v->enhanced_status ? v->enhanced_status : "-");
        rc |= ctl_table_addv(t, "text", *v->text ? v->text : "-");
        rc |= ctl_table_addv(t, "backend", *v->backend ? v->backend : "-");
        rc |= ctl_table_addv(t, "probed_at", ctl_fmt_time(v->probed_at_ms, t1));
        rc |= ctl_table_addv(t, "refresh_at", ctl_fmt_time(v->refresh_at_ms, t2));
        rc |= ctl_table_addv(t, "first_seen", ctl_fmt_time(v->first_seen_ms, t3));
        rc |= ctl_table_addv(t, "expires", detail_expiry(v->expires_at_ms, now_ms, ex, sizeof ex));
        break;
    }
    case MXCACHE__ENTRY__RECORD_GREYLIST: {
        const Mxcache__GreylistRecord *g = e->greylist;
        snprintf(n1, sizeof n1, "%u", g->attempts);
        snprintf(n2, sizeof n2, "%u", g->passes);
        rc |= ctl_table_addv(t, "state", wire_state_name(g->state));
        rc |= ctl_table_addv(t, "attempts", n1);
        rc |= ctl_table_addv(t, "passes", n2);
        rc |= ctl_table_addv(t, "first_seen", ctl_fmt_time(g->first_seen_ms, t1));
        rc |= ctl_table_addv(t, "last_seen", ctl_fmt_time(g->last_seen_ms, t2));
        rc |= ctl_table_addv(t, "passed_at", ctl_fmt_time(g->passed_at_ms, t3));
        rc |= ctl_table_addv(t, "expires", detail_expiry(g->expires_at_ms, now_ms, ex, sizeof ex));
        break;
    }
    case MXCACHE__ENTRY__RECORD_AWL: {
        const Mxcache__AwlRecord *a = e->awl;
        snprintf(n1, sizeof n1, "%u", a->passes);
        rc |= ctl_table_addv(t, "passes", n1);
        rc |= ctl_table_addv(t, "first_seen", ctl_fmt_time(a->first_seen_ms, t1));
        rc |= ctl_table_addv(t, "last_seen", ctl_fmt_time(a->last_seen_ms, t2));
        rc |= ctl_table_addv(t, "expires", detail_expiry(a->expires_at_ms, now_ms, ex, sizeof ex));
        break;
    }
    case MXCACHE__ENTRY__RECORD_WHITELIST: {
        const Mxcache__WhitelistRecord *w = e->whitelist;
        rc |= ctl_table_addv(t, "kind", wire_wlkind_name(w->kind));
        rc |= ctl_table_addv(t, "value", w->value);
        rc |= ctl_table_addv(t, "comment", *w->comment ? w->comment : "-");
        rc |= ctl_table_addv(t, "added_at", ctl_fmt_time(w->added_at_ms, t1));
        rc |= ctl_table_addv(t, "expires", detail_expiry(w->expires_at_ms, now_ms, ex, sizeof ex));
        break;
    }
    default:
        rc |= ctl_table_addv(t, "record", "-");
        break;
    }
    ctl_table_flush(t, out);
    ctl_table_destroy(t);
    return rc ? MXC_ENOMEM : 0;
}

/* ---- check and verify replies (explain, verify) ---- */

/* reply_join - the reply as an MTA sends it, "450 4.7.1 text", leaving out what is empty (code 0,
 * empty strings). Sets *out to a malloc'd string, or to NULL when all three are empty. Returns 0 or
 * MXC_ENOMEM. */
static int reply_join(uint32_t smtp_code, const char *status, const char *text, char **out)
{
    char code[16];
    const char *parts[3];
    size_t nparts = 0, len = 0;

    *out = NULL;
    if (smtp_code) {
        snprintf(code, sizeof code, "%u", smtp_code);
        parts[nparts++] = code;
    }
    if (status && *status)
        parts[nparts++] = status;
    if (text && *text)
        parts[nparts++] = text;
    if (nparts == 0)
        return 0;
    for (size_t i = 0; i < nparts; i++)
        len += strlen(parts[i]) + 1;
    if (!(*out = malloc(len)))
        return MXC_ENOMEM;
    (*out)[0] = '\0';
    for (size_t i = 0; i < nparts; i++) {
        if (i)
            strcat(*out, " ");
        strcat(*out, parts[i]);
    }
    return 0;
}

/* table_add_lines - adds text (NULL: "") to a two-column table as one row per line, the name on
 * the first ("-" for empty text; a final newline makes no empty row). Returns 0 or MXC_ENOMEM. */
static int table_add_lines(struct ctl_table *t, const char *name, const char *text)
{
    const char *p = text ? text : "";
    int rc = 0;

    if (!*p)
        return ctl_table_addv(t, name, "-");
    for (bool first = true; *p && rc == 0; first = false) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char *line = strndup(p, n);
        if (!line)
            return MXC_ENOMEM;
        rc = ctl_table_addv(t, first ? name : "", line);
        free(line);
        p += n + (nl ? 1 : 0);
    }
    return rc;
}

json_t *ctl_check_json(const Mxcache__CheckReply *c)
{
    json_t *o = json_object();

    if (!o)
        return NULL;
    json_object_set_new(o, "action", json_string(wire_action_name(c->action)));
    json_object_set_new(o, "smtp_code", json_integer(c->smtp_code));
    json_object_set_new(o, "enhanced_status", ctl_json_string(c->enhanced_status));
    json_object_set_new(o, "text", ctl_json_string(c->text));
    json_object_set_new(o, "rule", ctl_json_string(c->rule));
    json_object_set_new(o, "fact_age_ms", ctl_json_uint(c->fact_age_ms));
    json_object_set_new(o, "prepend", ctl_json_string(c->prepend));
    json_object_set_new(o, "explanation", ctl_json_string(c->explanation));
    return o;
}

int ctl_check_detail(const Mxcache__CheckReply *c, FILE *out)
{
    struct ctl_table *t = ctl_table_create(2, NULL, NULL);
    char age[CTL_SPAN_BUFSIZE], *reply = NULL;
    int rc = 0;

    if (!t)
        return MXC_ENOMEM;
    rc |= reply_join(c->smtp_code, c->enhanced_status, c->text, &reply);
    rc |= ctl_table_addv(t, "action", wire_action_name(c->action));
    rc |= ctl_table_addv(t, "reply", reply ? reply : "-");
    rc |= ctl_table_addv(t, "rule", c->rule && *c->rule ? c->rule : "-");
    rc |= ctl_table_addv(t, "fact_age", c->fact_age_ms ? ctl_fmt_span(c->fact_age_ms, age) : "-");
    if (c->prepend && *c->prepend)
        rc |= ctl_table_addv(t, "prepend", c->prepend);
    /* The explanation may have several lines: one row each, the name on the first. */
    if (rc == 0)
        rc = table_add_lines(t, "explanation", c->explanation);
    free(reply);
    if (rc == 0)
        ctl_table_flush(t, out);
    ctl_table_destroy(t);
    return rc ? MXC_ENOMEM : 0;
}

/* cached_name - what a VerifyReply says the cache holds: a state name, or "none". */
static const char *cached_name(Mxcache__RecordState s)
{
    return s == MXCACHE__RECORD_STATE__STATE_ANY ? "none" : wire_state_name(s);
}

json_t *ctl_verify_json(const Mxcache__VerifyReply *v, const char *address)
{
    json_t *o = json_object();

    if (!o)
        return NULL;
    json_object_set_new(o, "address", ctl_json_string(address));
    json_object_set_new(o, "result", ctl_json_string(v->result));
    json_object_set_new(o, "smtp_code", json_integer(v->smtp_code));
    json_object_set_new(o, "enhanced_status", ctl_json_string(v->enhanced_status));
    json_object_set_new(o, "text", ctl_json_string(v->text));
    json_object_set_new(o, "backend", ctl_json_string(v->backend));
    json_object_set_new(o, "detail", ctl_json_string(v->detail));
    json_object_set_new(o, "transcript", ctl_json_string(v->transcript));
    json_object_set_new(o, "duration_ms", ctl_json_uint(v->duration_ms));
    json_object_set_new(o, "cached", json_string(cached_name(v->cached)));
    return o;
}

int ctl_verify_detail(const Mxcache__VerifyReply *v, const char *address, FILE *out)
{
    struct ctl_table *t = ctl_table_create(2, NULL, NULL);
    char dur[CTL_SPAN_BUFSIZE], *reply = NULL;
    int rc = 0;

    if (!t)
        return MXC_ENOMEM;
    rc |= reply_join(v->smtp_code, v->enhanced_status, v->text, &reply);
    rc |= ctl_table_addv(t, "address", address);
    rc |= ctl_table_addv(t, "result", v->result && *v->result ? v->result : "-");
    rc |= ctl_table_addv(t, "reply", reply ? reply : "-");
    rc |= ctl_table_addv(t, "backend", v->backend && *v->backend ? v->backend : "-");
    rc |= ctl_table_addv(t, "duration", ctl_fmt_span(v->duration_ms, dur));
    rc |= ctl_table_addv(t, "cached", cached_name(v->cached));
    if (v->detail && *v->detail)
        rc |= ctl_table_addv(t, "detail", v->detail);
    /* The dialogue, "C: ..." and "S: ..." lines as the service recorded them: one row each. */
    if (rc == 0)
        rc = table_add_lines(t, "transcript", v->transcript);
    free(reply);
    if (rc == 0)
        ctl_table_flush(t, out);
    ctl_table_destroy(t);
    return rc ? MXC_ENOMEM : 0;
}
