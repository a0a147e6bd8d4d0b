/* Whitelists from postgrey-format files (see wlfile.h): the loader and the two lookups.
 *
 * A loaded set holds, per kind (client, recipient), a hash set of exact keys, a list of compiled
 * regexes, and for clients a hash set of networks. Exact keys are lower-cased host names for
 * clients, and "user@domain", "user@" or "domain" for recipients (these three never collide: a
 * domain has no '@', and only "user@" ends in one). A network is the binary key
 * {4|6, prefix length, masked address}; a lookup tries each prefix length in use, longest first,
 * so it costs at most 33 (IPv4) or 129 (IPv6) hash probes. Each entry remembers where it came
 * from as (file index << 48 | line), which the lookups turn into "FILE:LINE".
 *
 * Nothing is written after wlfile_load returns, so lookups need no locks: strmap_get only reads,
 * the PCRE2 codes and the match context are read-only in pcre2_match, and each lookup that runs
 * regexes creates its own match data. */
#include "wlfile.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "strmap.h"

#define ORIGIN_LINE_BITS 48
#define ORIGIN_MAX_FILES 65535u               /* file index fits in the top 16 bits */
#define ORIGIN_MAX_LINE ((1ull << ORIGIN_LINE_BITS) - 1)
#define NET_KEY_MAX 18                        /* family, length, 16 address bytes */
#define SHOW_MAX 64                           /* bytes of an offending entry quoted in a message */

struct wl_re {
    pcre2_code *code;
    uint64_t origin;
};

/* The entries of one kind. */
struct wl_list {
    strmap *keys;       /* exact names or recipient keys -> origin */
    strmap *nets;       /* clients only: network keys -> origin */
    bool has4[33];      /* IPv4 prefix lengths in nets */
    bool has6[129];
    struct wl_re *re;   /* regexes in file order */
    size_t nre, capre;
    size_t count;       /* entries read, duplicates included */
};

struct wlfile {
    char **files;       /* names as given, indexed by origin >> ORIGIN_LINE_BITS */
    size_t nfiles;
    struct wl_list client, rcpt;
    pcre2_match_context *mctx;
};

/* The state of one wlfile_load. */
struct loader {
    struct wlfile *wf;
    struct wlfile_errors *errs;  /* may be NULL */
    size_t nerr;                 /* errors in this load */
    const char *file;            /* the file being read */
    size_t fidx;
};

/* ---- errors ---- */

void wlfile_errors_init(struct wlfile_errors *errs)
{
    memset(errs, 0, sizeof *errs);
}

void wlfile_errors_fini(struct wlfile_errors *errs)
{
    if (!errs)
        return;
    for (size_t i = 0; i < errs->nmsg; i++)
        free(errs->msg[i]);
    memset(errs, 0, sizeof *errs);
}

/* printable - copies at most max bytes of s (len bytes) into out (4 * max + 4 bytes), escaping
 * bytes outside printable ASCII as \xNN and appending "..." when cut. Returns out. */
static char *printable(const char *s, size_t len, size_t max, char *out)
{
    char *p = out;

    for (size_t i = 0; i < len && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f || c == '\\')
            p += sprintf(p, "\\x%02x", c);
        else
            *p++ = (char)c;
    }
    if (len > max)
        p += sprintf(p, "...");
    *p = '\0';
    return out;
}

/* lerr - records an error of the current file at line (0: about the whole file). */
static void lerr(struct loader *ld, unsigned long long line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void lerr(struct loader *ld, unsigned long long line, const char *fmt, ...)
{
    char body[1024], file[4 * 256 + 4], where[32] = "";
    va_list ap;
    int n;

    ld->nerr++;
    if (!ld->errs)
        return;
    ld->errs->count++;
    if (ld->errs->nmsg >= WLFILE_MAX_ERRORS)
        return;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    printable(ld->file, strlen(ld->file), 256, file);
    if (line)
        snprintf(where, sizeof where, ":%llu", line);
    n = snprintf(NULL, 0, "%s%s: %s", file, where, body);
    char *msg = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (!msg)
        return; /* Robustness: still counted, and the load fails anyway. */
    snprintf(msg, (size_t)n + 1, "%s%s: %s", file, where, body);
    ld->errs->msg[ld->errs->nmsg++] = msg;
}

/* ---- helpers ---- */

static bool is_space(char c)
{
    /* Perl's \s, which postgrey trims with. */
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static void lower(char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] >= 'A' && s[i] <= 'Z')
            s[i] = (char)(s[i] - 'A' + 'a');
}

/* name_ok - whether s (lower-cased, no trailing dot) is a host or domain name: dot-separated
 * labels of 1-63 letters, digits, '-' or '_', 253 bytes at most. */
static bool name_ok(const char *s, size_t len)
{
    size_t label = 0;

    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return label > 0;
}

/* mask - clears the bits of addr (bytes long) after the first len. */
static void mask(unsigned char *addr, size_t bytes, unsigned len)
{
    for (size_t i = 0; i < bytes; i++) {
        unsigned keep = len >= 8 * (i + 1) ? 8 : (len > 8 * i ? len - 8 * (unsigned)i : 0);
        addr[i] &= (unsigned char)(0xff00u >> keep);
    }
}

/* net_key - the map key of (family, masked address, len) into key; returns its length. */
static size_t net_key(int v6, const unsigned char *addr, unsigned len, unsigned char key[NET_KEY_MAX])
{
    size_t bytes = v6 ? 16 : 4;

    key[0] = v6 ? 6 : 4;
    key[1] = (unsigned char)len;
    memcpy(key + 2, addr, bytes);
    mask(key + 2, bytes, len);
    return 2 + bytes;
}

static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* origin_why - "FILE:LINE" of origin into why (whylen bytes; nothing when why is NULL). */
static void origin_why(const struct wlfile *wf, uint64_t origin, char *why, size_t whylen)
{
    size_t f = (size_t)(origin >> ORIGIN_LINE_BITS);

    if (why && whylen)
        snprintf(why, whylen, "%s:%llu", f < wf->nfiles ? wf->files[f] : "?",
                 (unsigned long long)(origin & ORIGIN_MAX_LINE));
}

/* ---- adding entries ---- */

/* put_key - adds key to map unless present (the first entry wins). 0 or -1 (out of memory). */
static int put_key(strmap *map, const void *key, size_t len, uint64_t origin)
{
    if (strmap_get(map, key, len, NULL))
        return 0;
    return strmap_put(map, key, len, origin) == 0 ? 0 : -1;
}

/* add_regex - compiles the entry s ("/.../", len bytes) into l. Returns 0, or -1 after reporting. */
static int add_regex(struct loader *ld, struct wl_list *l, const char *s, size_t len, unsigned long long line,
                     uint64_t origin)
{
    char shown[4 * SHOW_MAX + 4], emsg[256];
    int ecode;
    PCRE2_SIZE eoff;
    pcre2_code *code;

    if (len < 2 || s[len - 1] != '/') {
        lerr(ld, line, "unterminated /regex/ (it must end with '/'): '%s'", printable(s, len, SHOW_MAX, shown));
        return -1;
    }
    if (len == 2) {
        lerr(ld, line, "empty /regex/");
        return -1;
    }
    code = pcre2_compile((PCRE2_SPTR)(s + 1), len - 2, PCRE2_CASELESS, &ecode, &eoff, NULL);
    if (!code) {
        if (pcre2_get_error_message(ecode, (PCRE2_UCHAR *)emsg, sizeof emsg) < 0)
            snprintf(emsg, sizeof emsg, "error %d", ecode);
        lerr(ld, line, "bad /regex/ '%s': %s at offset %zu", printable(s, len, SHOW_MAX, shown), emsg, (size_t)eoff);
        return -1;
    }
    /* JIT when this PCRE2 has it; without it (or when it fails) pcre2_match interprets. */
    (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
    if (l->nre == l->capre) {
        size_t cap = l->capre ? l->capre * 2 : 16;
        struct wl_re *re = realloc(l->re, cap * sizeof *re);
        if (!re) {
            pcre2_code_free(code);
            lerr(ld, line, "out of memory");
            return -1;
        }
        l->re = re;
        l->capre = cap;
    }
    l->re[l->nre].code = code;
    l->re[l->nre].origin = origin;
    l->nre++;
    return 0;
}

/* parse_ipv4 - an IPv4 entry: a full address with an optional /len, or one to three octets with
 * an optional trailing dot (a /8, /16 or /24). Octets are decimal without leading zeros (which
 * some parsers read as octal). Returns 0 with addr and *len, or -1. */
static int parse_ipv4(const char *s, unsigned char addr[4], unsigned *len)
{
    const char *p = s;
    size_t n = 0;

    memset(addr, 0, 4);
    for (;;) {
        unsigned v = 0, digits = 0;
        if (*p < '0' || *p > '9')
            return -1;
        if (p[0] == '0' && p[1] >= '0' && p[1] <= '9')
            return -1;
        while (*p >= '0' && *p <= '9' && digits < 4) {
            v = v * 10 + (unsigned)(*p++ - '0');
            digits++;
        }
        if (digits > 3 || v > 255)
            return -1;
        addr[n++] = (unsigned char)v;
        if (*p != '.')
            break;
        p++;
        if (*p == '\0') {
            if (n == 4)
                return -1; /* "192.0.2.7." */
            break;
        }
        if (n == 4)
            return -1;
    }
    if (*p == '/') {
        unsigned v = 0, digits = 0;
        if (n != 4)
            return -1;
        for (p++; *p >= '0' && *p <= '9' && digits < 3; p++, digits++)
            v = v * 10 + (unsigned)(*p - '0');
        if (digits == 0 || *p || v > 32)
            return -1;
        *len = v;
        return 0;
    }
    if (*p)
        return -1;
    *len = 8 * (unsigned)n;
    return 0;
}

/* parse_ipv6 - an IPv6 address with an optional /len. Returns 0 with addr and *len, or -1. */
static int parse_ipv6(const char *s, unsigned char addr[16], unsigned *len)
{
    char buf[INET6_ADDRSTRLEN];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);

    if (alen == 0 || alen >= sizeof buf)
        return -1;
    memcpy(buf, s, alen);
    buf[alen] = '\0';
    if (inet_pton(AF_INET6, buf, addr) != 1)
        return -1;
    *len = 128;
    if (slash) {
        unsigned v = 0, digits = 0;
        const char *p;
        for (p = slash + 1; *p >= '0' && *p <= '9' && digits < 4; p++, digits++)
            v = v * 10 + (unsigned)(*p - '0');
        if (digits == 0 || digits > 3 || *p || v > 128)
            return -1;
        *len = v;
    }
    return 0;
}

/* add_net - adds a network to l. 0 or -1 (out of memory). */
static int add_net(struct wl_list *l, int v6, const unsigned char *addr, unsigned len, uint64_t origin)
{
    unsigned char key[NET_KEY_MAX];
    size_t klen = net_key(v6, addr, len, key);

    if (put_key(l->nets, key, klen, origin) != 0)
        return -1;
    if (v6)
        l->has6[len] = true;
    else
        l->has4[len] = true;
    return 0;
}

/* parse_client - one entry of a client file (s: len bytes, trimmed, no white space or controls). */
static int parse_client(struct loader *ld, char *s, size_t len, unsigned long long line, uint64_t origin)
{
    struct wl_list *l = &ld->wf->client;
    char shown[4 * SHOW_MAX + 4];
    unsigned char addr[16];
    unsigned plen;

    if (s[0] == '/')
        return add_regex(ld, l, s, len, line, origin);
    if (strchr(s, ':')) {
        if (parse_ipv6(s, addr, &plen) != 0) {
            lerr(ld, line, "bad IPv6 address or network '%s'", printable(s, len, SHOW_MAX, shown));
            return -1;
        }
        /* An IPv4-mapped entry means its IPv4 address, as client addresses do. */
        if (plen >= 96 && memcmp(addr, v4mapped, 12) == 0) {
            if (add_net(l, 0, addr + 12, plen - 96, origin) != 0)
                goto oom;
        } else if (add_net(l, 1, addr, plen, origin) != 0) {
            goto oom;
        }
        return 0;
    }
    if (strspn(s, "0123456789./") == len) {
        if (parse_ipv4(s, addr, &plen) != 0) {
            lerr(ld, line, "bad IPv4 address or network '%s' (a.b.c.d, a.b.c.d/len, or a partial address a.b.c)",
                 printable(s, len, SHOW_MAX, shown));
            return -1;
        }
        if (add_net(l, 0, addr, plen, origin) != 0)
            goto oom;
        return 0;
    }
    printable(s, len, SHOW_MAX, shown);
    lower(s, len);
    if (len > 1 && s[len - 1] == '.')
        s[--len] = '\0';
    if (!name_ok(s, len)) {
        lerr(ld, line, "not an IP address, network, host name or /regex/: '%s'", shown);
        return -1;
    }
    if (put_key(l->keys, s, len, origin) != 0)
        goto oom;
    return 0;
oom:
    lerr(ld, line, "out of memory");
    return -1;
}

/* parse_recipient - one entry of a recipient file (as parse_client). */
static int parse_recipient(struct loader *ld, char *s, size_t len, unsigned long long line, uint64_t origin)
{
    struct wl_list *l = &ld->wf->rcpt;
    char shown[4 * SHOW_MAX + 4];
    char *at;

    if (s[0] == '/')
        return add_regex(ld, l, s, len, line, origin);
    printable(s, len, SHOW_MAX, shown);
    lower(s, len);
    if ((at = strchr(s, '@'))) {
        char *dom = at + 1;
        size_t dlen = len - (size_t)(dom - s);
        if (at == s) {
            lerr(ld, line, "no local part before '@' in '%s' (a domain alone covers the domain and its subdomains)",
                 shown);
            return -1;
        }
        if (strchr(dom, '@')) {
            lerr(ld, line, "more than one '@' in '%s'", shown);
            return -1;
        }
        if (dlen > 1 && dom[dlen - 1] == '.')
            dom[--dlen] = '\0', len--;
        if (dlen && !name_ok(dom, dlen)) {
            lerr(ld, line, "bad domain in '%s'", shown);
            return -1;
        }
    } else {
        if (len > 1 && s[len - 1] == '.')
            s[--len] = '\0';
        if (!name_ok(s, len)) {
            lerr(ld, line, "not an address, user@, domain or /regex/: '%s'", shown);
            return -1;
        }
    }
    if (put_key(l->keys, s, len, origin) != 0) {
        lerr(ld, line, "out of memory");
        return -1;
    }
    return 0;
}

/* ---- reading files ---- */

/* read_line - reads one line (without its newline) into buf (WLFILE_MAX_LINE + 1 bytes); sets
 * *len, and *toolong / *nul when the line was cut or held a NUL byte. Returns 1 for a line, 0 at
 * the end of the file, -1 on a read error (errno). */
static int read_line(FILE *f, char *buf, size_t *len, bool *toolong, bool *nul)
{
    size_t n = 0;
    bool any = false;
    int c;

    *toolong = *nul = false;
    while ((c = getc_unlocked(f)) != EOF) {
        any = true;
        if (c == '\n')
            break;
        if (c == '\0')
            *nul = true;
        if (n < WLFILE_MAX_LINE)
            buf[n++] = (char)c;
        else
            *toolong = true;
    }
    if (ferror(f))
        return -1;
    buf[n] = '\0';
    *len = n;
    return any ? 1 : 0;
}

/* load_file - reads one file of either kind into ld->wf. Errors are reported, not returned. */
static void load_file(struct loader *ld, const char *path, size_t fidx, bool client)
{
    char buf[WLFILE_MAX_LINE + 1], shown[4 * SHOW_MAX + 4];
    struct wl_list *l = client ? &ld->wf->client : &ld->wf->rcpt;
    unsigned long long line = 0;
    size_t entries = 0, len;
    bool toolong, nul;
    FILE *f;
    int rc;

    ld->file = path;
    ld->fidx = fidx;
    if (!(f = fopen(path, "re"))) {
        lerr(ld, 0, "cannot open: %s", strerror(errno));
        return;
    }
    while ((rc = read_line(f, buf, &len, &toolong, &nul)) == 1) {
        char *s = buf, *hash, *p;
        uint64_t origin;

        if (++line > ORIGIN_MAX_LINE) {
            lerr(ld, 0, "too many lines");
            break;
        }
        if (toolong) {
            lerr(ld, line, "line longer than %d bytes", WLFILE_MAX_LINE);
            continue;
        }
        if (nul) {
            lerr(ld, line, "NUL byte in line");
            continue;
        }
        if ((hash = strchr(s, '#')))
            *hash = '\0', len = (size_t)(hash - s);
        while (len && is_space(s[len - 1]))
            s[--len] = '\0';
        while (is_space(*s))
            s++, len--;
        if (len == 0)
            continue;
        if (++entries > WLFILE_MAX_ENTRIES) {
            lerr(ld, line, "more than %d entries in one file", WLFILE_MAX_ENTRIES);
            break;
        }
        for (p = s; *p; p++)
            if (is_space(*p) || (unsigned char)*p < 0x20 || *p == 0x7f)
                break;
        if (*p) {
            if (is_space(*p) && s[0] == '/')
                lerr(ld, line, "white space in a /regex/ (write \\s or \\x20): '%s'", printable(s, len, SHOW_MAX, shown));
            else if (is_space(*p))
                lerr(ld, line, "white space inside an entry (one entry per line): '%s'",
                     printable(s, len, SHOW_MAX, shown));
            else
                lerr(ld, line, "control character 0x%02x in '%s'", (unsigned char)*p, printable(s, len, SHOW_MAX, shown));
            continue;
        }
        origin = (uint64_t)fidx << ORIGIN_LINE_BITS | line;
        if ((client ? parse_client(ld, s, len, line, origin) : parse_recipient(ld, s, len, line, origin)) == 0)
            l->count++;
    }
    if (rc < 0)
        lerr(ld, 0, "read error: %s", strerror(errno));
    fclose(f);
}

static void list_fini(struct wl_list *l)
{
    strmap_destroy(l->keys);
    strmap_destroy(l->nets);
    for (size_t i = 0; i < l->nre; i++)
        pcre2_code_free(l->re[i].code);
    free(l->re);
}

void wlfile_free(struct wlfile *wf)
{
    if (!wf)
        return;
    list_fini(&wf->client);
    list_fini(&wf->rcpt);
    for (size_t i = 0; i < wf->nfiles; i++)
        free(wf->files[i]);
    free(wf->files);
    pcre2_match_context_free(wf->mctx);
    free(wf);
}

struct wlfile *wlfile_load(const char *const *client_files, size_t nclient, const char *const *recipient_files,
                           size_t nrcpt, struct wlfile_errors *errs)
{
    struct loader ld = {.errs = errs, .file = "wlfile"};
    struct wlfile *wf;

    if (nclient > ORIGIN_MAX_FILES || nrcpt > ORIGIN_MAX_FILES - nclient) {
        lerr(&ld, 0, "too many files (at most %u)", ORIGIN_MAX_FILES);
        return NULL;
    }
    if (!(wf = calloc(1, sizeof *wf)) || !(wf->files = calloc(nclient + nrcpt + 1, sizeof *wf->files)) ||
        !(wf->client.keys = strmap_create()) || !(wf->client.nets = strmap_create()) ||
        !(wf->rcpt.keys = strmap_create()) || !(wf->mctx = pcre2_match_context_create(NULL)))
        goto oom;
    pcre2_set_match_limit(wf->mctx, WLFILE_MATCH_LIMIT);
    pcre2_set_depth_limit(wf->mctx, WLFILE_DEPTH_LIMIT);
    ld.wf = wf;
    for (size_t i = 0; i < nclient + nrcpt; i++) {
        const char *name = i < nclient ? client_files[i] : recipient_files[i - nclient];
        if (!(wf->files[i] = strdup(name ? name : "")))
            goto oom;
        wf->nfiles++;
    }
    for (size_t i = 0; i < nclient + nrcpt; i++)
        load_file(&ld, wf->files[i], i, i < nclient);
    if (ld.nerr) {
        wlfile_free(wf);
        return NULL;
    }
    return wf;
oom:
    ld.file = "wlfile";
    lerr(&ld, 0, "out of memory");
    wlfile_free(wf);
    return NULL;
}

/* ---- lookups ---- */

/* match_regexes - whether subject matches one of l's regexes; *origin of the first that does.
 * XXX: when the match data cannot be allocated, the regexes match nothing. */
static bool match_regexes(const struct wlfile *wf, const struct wl_list *l, const char *subject, size_t len,
                          uint64_t *origin)
{
    pcre2_match_data *md;
    bool found = false;

    if (l->nre == 0 || !(md = pcre2_match_data_create(1, NULL)))
        return false;
    for (size_t i = 0; i < l->nre && !found; i++) {
        /* A match that hits the match or depth limit returns an error: no match. */
        if (pcre2_match(l->re[i].code, (PCRE2_SPTR)subject, len, 0, 0, md, wf->mctx) >= 0) {
            *origin = l->re[i].origin;
            found = true;
        }
    }
    pcre2_match_data_free(md);
    return found;
}

/* match_address - whether the address is in one of the client networks. */
static bool match_address(const struct wl_list *l, const char *address, uint64_t *origin)
{
    unsigned char addr[16], key[NET_KEY_MAX];
    int v6;

    if (!address || !*address)
        return false;
    if (inet_pton(AF_INET, address, addr) == 1) {
        v6 = 0;
    } else if (inet_pton(AF_INET6, address, addr) == 1) {
        v6 = 1;
        if (memcmp(addr, v4mapped, 12) == 0) {
            memmove(addr, addr + 12, 4);
            v6 = 0;
        }
    } else {
        return false;
    }
    const bool *has = v6 ? l->has6 : l->has4;
    for (int len = v6 ? 128 : 32; len >= 0; len--) {
        if (!has[len])
            continue;
        size_t klen = net_key(v6, addr, (unsigned)len, key);
        if (strmap_get(l->nets, (const char *)key, klen, origin))
            return true;
    }
    return false;
}

bool wlfile_match_client(const struct wlfile *wf, const char *client_address, const char *client_name, char *why,
                         size_t whylen)
{
    char name[WLFILE_MAX_NAME + 1];
    uint64_t origin = 0;
    size_t len;

    if (!wf)
        return false;
    if (match_address(&wf->client, client_address, &origin))
        goto found;
    len = client_name ? strlen(client_name) : 0;
    if (len == 0 || len > WLFILE_MAX_NAME || strcasecmp(client_name, "unknown") == 0)
        return false;
    memcpy(name, client_name, len + 1);
    lower(name, len);
    if (len > 1 && name[len - 1] == '.')
        name[--len] = '\0';
    for (const char *s = name; s;) {
        if (strmap_get(wf->client.keys, s, len - (size_t)(s - name), &origin))
            goto found;
        s = strchr(s, '.');
        if (s)
            s++;
    }
    if (match_regexes(wf, &wf->client, client_name, strlen(client_name), &origin))
        goto found;
    return false;
found:
    origin_why(wf, origin, why, whylen);
    return true;
}

bool wlfile_match_recipient(const struct wlfile *wf, const char *recipient, char *why, size_t whylen)
{
    char buf[WLFILE_MAX_RECIPIENT + 1], key[WLFILE_MAX_RECIPIENT + 2];
    const struct wl_list *l;
    uint64_t origin = 0;
    size_t len;
    char *at;

    if (!wf || !recipient || !*recipient || (len = strlen(recipient)) > WLFILE_MAX_RECIPIENT)
        return false;
    l = &wf->rcpt;
    memcpy(buf, recipient, len + 1);
    lower(buf, len);
    if ((at = strrchr(buf, '@'))) {
        size_t llen = (size_t)(at - buf), dlen = len - llen - 1;
        const char *dom = at + 1;

        /* user@domain, then user@: the full local part, then each form without a "+ext" (postgrey:
         * user(\+[^@]+)?@), i.e. cut at a '+' followed by at least one byte and no '@'. */
        for (int pass = 0; pass < 2; pass++) {
            for (size_t cut = llen + 1; cut-- > 0;) {
                if (cut < llen && (buf[cut] != '+' || cut + 1 == llen || memchr(buf + cut + 1, '@', llen - cut - 1)))
                    continue;
                if (cut == 0)
                    continue;
                memcpy(key, buf, cut);
                key[cut] = '@';
                size_t klen = cut + 1;
                if (pass == 0) {
                    memcpy(key + klen, dom, dlen);
                    klen += dlen;
                }
                if (strmap_get(l->keys, key, klen, &origin))
                    goto found;
            }
        }
        for (const char *s = dom; s && *s;) {
            if (strmap_get(l->keys, s, dlen - (size_t)(s - dom), &origin))
                goto found;
            s = strchr(s, '.');
            if (s)
                s++;
        }
    }
    if (match_regexes(wf, l, recipient, len, &origin))
        goto found;
    return false;
found:
    origin_why(wf, origin, why, whylen);
    return true;
}

size_t wlfile_count(const struct wlfile *wf, enum wlfile_which which)
{
    if (!wf)
        return 0;
    return ((which & WLFILE_CLIENTS) ? wf->client.count : 0) + ((which & WLFILE_RECIPIENTS) ? wf->rcpt.count : 0);
}
