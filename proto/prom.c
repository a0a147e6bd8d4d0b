/* Prometheus text exposition 0.0.4 (see prom.h): escaping, number formatting that Prometheus
 * parses back to the same value, histograms in base units, and the process_* families read
 * from /proc/self. Owns the scrape buffer; trusts names and label names (the caller's
 * constants) but not label values or help text. */
#include "prom.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define PROM_INITIAL_CAP 4096
/* Robustness: a scrape larger than this is a bug (a label set gone wild), not a reason to eat memory. */
#define PROM_MAX_CAP (64u * 1024 * 1024)

/* prom_init - an empty buffer; failed at once when even the first allocation fails. */
void prom_init(struct prom_buf *b)
{
    b->len = 0;
    b->failed = false;
    b->cap = PROM_INITIAL_CAP;
    b->data = malloc(b->cap);
    if (!b->data) {
        b->cap = 0;
        b->failed = true;
        return;
    }
    b->data[0] = '\0';
}

/* prom_fini - frees the text; the buffer can be initialized again. */
void prom_fini(struct prom_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* reserve - room for n more bytes and the NUL; false (and failed) when there is none. */
static bool reserve(struct prom_buf *b, size_t n)
{
    size_t cap;
    char *p;

    if (b->failed)
        return false;
    if (b->len + n + 1 <= b->cap)
        return true;
    if (n > PROM_MAX_CAP || b->len + n + 1 > PROM_MAX_CAP) {
        b->failed = true;
        return false;
    }
    cap = b->cap ? b->cap : PROM_INITIAL_CAP;
    while (cap < b->len + n + 1)
        cap *= 2;
    if (cap > PROM_MAX_CAP)
        cap = PROM_MAX_CAP;
    p = realloc(b->data, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->data = p;
    b->cap = cap;
    return true;
}

/* put - appends n bytes of s. */
static void put(struct prom_buf *b, const char *s, size_t n)
{
    if (!reserve(b, n))
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

/* puts_ - appends the string s. */
static void puts_(struct prom_buf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* put_escaped - s with backslash and newline escaped, and the double quote too when quote. */
static void put_escaped(struct prom_buf *b, const char *s, bool quote)
{
    const char *run = s;

    for (; *s; s++) {
        const char *esc = NULL;
        if (*s == '\\')
            esc = "\\\\";
        else if (*s == '\n')
            esc = "\\n";
        else if (*s == '"' && quote)
            esc = "\\\"";
        if (esc) {
            put(b, run, (size_t)(s - run));
            put(b, esc, 2);
            run = s + 1;
        }
    }
    put(b, run, (size_t)(s - run));
}

/* fmt_double - v as Prometheus parses it back exactly: the shortest %g that round-trips. */
static void fmt_double(char *out, size_t outlen, double v)
{
    if (isnan(v)) {
        snprintf(out, outlen, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(out, outlen, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, outlen, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

/* fmt_scaled - v * 10^-k as an exact decimal ("0.00005", "2.5", "60"), no float rounding. */
static void fmt_scaled(char *out, size_t outlen, uint64_t v, int k)
{
    uint64_t p = 1;
    uint64_t frac;
    int len;

    for (int i = 0; i < k; i++)
        p *= 10;
    frac = v % p;
    len = snprintf(out, outlen, "%llu", (unsigned long long)(v / p));
    if (frac == 0 || len < 0 || (size_t)len >= outlen)
        return;
    snprintf(out + len, outlen - (size_t)len, ".%0*llu", k, (unsigned long long)frac);
    len = (int)strlen(out);
    while (out[len - 1] == '0')
        out[--len] = '\0';
}

/* unit_exponent - k when unit_seconds is exactly 10^-k (0..9), else -1. */
static int unit_exponent(double unit_seconds)
{
    static const double pow10neg[] = {1, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9};

    for (int k = 0; k < (int)(sizeof pow10neg / sizeof pow10neg[0]); k++)
        if (unit_seconds == pow10neg[k])
            return k;
    return -1;
}

/* fmt_seconds - v units of unit_seconds in seconds: exact for decimal units. */
static void fmt_seconds(char *out, size_t outlen, uint64_t v, double unit_seconds)
{
    int k = unit_exponent(unit_seconds);

    if (k >= 0)
        fmt_scaled(out, outlen, v, k);
    else
        fmt_double(out, outlen, (double)v * unit_seconds);
}

/* put_labels - {a="v",...} with an optional extra label last (le); nothing when there are none. */
static void put_labels(struct prom_buf *b, const struct prom_label *l, size_t nl, const char *xname,
                       const char *xvalue)
{
    if (nl == 0 && !xname)
        return;
    put(b, "{", 1);
    for (size_t i = 0; i < nl; i++) {
        if (i)
            put(b, ",", 1);
        puts_(b, l[i].name);
        put(b, "=\"", 2);
        put_escaped(b, l[i].value ? l[i].value : "", true);
        put(b, "\"", 1);
    }
    if (xname) {
        if (nl)
            put(b, ",", 1);
        puts_(b, xname);
        put(b, "=\"", 2);
        put_escaped(b, xvalue, true);
        put(b, "\"", 1);
    }
    put(b, "}", 1);
}

/* sample - one line "name[suffix]{labels} value". */
static void sample(struct prom_buf *b, const char *name, const char *suffix, const struct prom_label *l,
                   size_t nl, const char *xname, const char *xvalue, const char *value)
{
    puts_(b, name);
    if (suffix)
        puts_(b, suffix);
    put_labels(b, l, nl, xname, xvalue);
    put(b, " ", 1);
    puts_(b, value);
    put(b, "\n", 1);
}

/* prom_family - the # HELP and # TYPE lines of a metric family. */
void prom_family(struct prom_buf *b, const char *name, const char *type, const char *help)
{
    puts_(b, "# HELP ");
    puts_(b, name);
    put(b, " ", 1);
    put_escaped(b, help ? help : "", false);
    puts_(b, "\n# TYPE ");
    puts_(b, name);
    put(b, " ", 1);
    puts_(b, type);
    put(b, "\n", 1);
}

/* prom_u64 - one integer sample, printed exactly. */
void prom_u64(struct prom_buf *b, const char *name, const struct prom_label *l, size_t nl, uint64_t v)
{
    char num[24];

    snprintf(num, sizeof num, "%llu", (unsigned long long)v);
    sample(b, name, NULL, l, nl, NULL, NULL, num);
}

/* prom_double - one floating sample, round-trippable. */
void prom_double(struct prom_buf *b, const char *name, const struct prom_label *l, size_t nl, double v)
{
    char num[40];

    fmt_double(num, sizeof num, v);
    sample(b, name, NULL, l, nl, NULL, NULL, num);
}

/* prom_histogram - cumulative buckets with le last, +Inf, sum in seconds and count. */
void prom_single(struct prom_buf *b, const char *name, const char *type, const char *help, uint64_t v)
{
    prom_family(b, name, type, help);
    prom_u64(b, name, NULL, 0, v);
}

void prom_histogram(struct prom_buf *b, const char *name, const struct prom_label *l, size_t nl,
                    const struct histo_snapshot *s)
{
    const struct histo_spec *spec = s->spec;
    uint64_t cum = 0;
    char le[40], num[40];

    for (size_t i = 0; i < spec->n; i++) {
        cum += s->bucket[i];
        fmt_seconds(le, sizeof le, spec->le[i], spec->unit_seconds);
        snprintf(num, sizeof num, "%llu", (unsigned long long)cum);
        sample(b, name, "_bucket", l, nl, "le", le, num);
    }
    /* +Inf is the count by definition, so _count is written from the same sum. */
    cum += s->bucket[spec->n];
    snprintf(num, sizeof num, "%llu", (unsigned long long)cum);
    sample(b, name, "_bucket", l, nl, "le", "+Inf", num);
    fmt_seconds(le, sizeof le, s->sum, spec->unit_seconds);
    sample(b, name, "_sum", l, nl, NULL, NULL, le);
    sample(b, name, "_count", l, nl, NULL, NULL, num);
}

/* read_small - the start of a /proc file into buf (NUL-terminated); false when unreadable. */
static bool read_small(const char *path, char *buf, size_t buflen)
{
    FILE *f = fopen(path, "re");
    size_t n;

    if (!f)
        return false;
    n = fread(buf, 1, buflen - 1, f);
    fclose(f);
    buf[n] = '\0';
    return n > 0;
}

/* boot_time - btime from /proc/stat (seconds since the epoch); 0 when unknown. */
static unsigned long long boot_time(void)
{
    FILE *f = fopen("/proc/stat", "re");
    char line[256];
    unsigned long long bt = 0;

    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "btime %llu", &bt) == 1)
            break;
    fclose(f);
    return bt;
}

/* count_fds - entries of /proc/self/fd other than the one reading it; -1 when unreadable. */
static long count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    long n = 0;
    char self[24];

    if (!d)
        return -1;
    snprintf(self, sizeof self, "%d", dirfd(d));
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && strcmp(e->d_name, self) != 0)
            n++;
    closedir(d);
    return n;
}

/* prom_process - the standard process_* families from /proc/self. */
void prom_process(struct prom_buf *b)
{
    char buf[1024];
    long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    long fds;
    struct rlimit rl;

    if (tick > 0 && read_small("/proc/self/stat", buf, sizeof buf)) {
        /* The command name may contain spaces and parentheses: fields count from the last ')'. */
        const char *p = strrchr(buf, ')');
        unsigned long long utime, stime, start;
        if (p && sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d %llu",
                        &utime, &stime, &start) == 3) {
            unsigned long long bt = boot_time();
            prom_family(b, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
            prom_double(b, "process_cpu_seconds_total", NULL, 0, (double)(utime + stime) / (double)tick);
            if (bt) {
                prom_family(b, "process_start_time_seconds", "gauge",
                            "Start time of the process since unix epoch in seconds.");
                prom_double(b, "process_start_time_seconds", NULL, 0, (double)bt + (double)start / (double)tick);
            }
        }
    }
    if (page > 0 && read_small("/proc/self/statm", buf, sizeof buf)) {
        unsigned long long size, resident;
        if (sscanf(buf, "%llu %llu", &size, &resident) == 2) {
            prom_family(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
            prom_u64(b, "process_virtual_memory_bytes", NULL, 0, (uint64_t)size * (uint64_t)page);
            prom_family(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
            prom_u64(b, "process_resident_memory_bytes", NULL, 0, (uint64_t)resident * (uint64_t)page);
        }
    }
    fds = count_fds();
    if (fds >= 0) {
        prom_family(b, "process_open_fds", "gauge", "Number of open file descriptors.");
        prom_u64(b, "process_open_fds", NULL, 0, (uint64_t)fds);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        prom_family(b, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
        if (rl.rlim_cur == RLIM_INFINITY)
            prom_double(b, "process_max_fds", NULL, 0, INFINITY);
        else
            prom_u64(b, "process_max_fds", NULL, 0, (uint64_t)rl.rlim_cur);
    }
}
