/* greylist - the greylisting decision of mxcached (see greylist.h).
 *
 * Owns: the canonical copies of greylist.domains and exempt_domains, the Public Suffix List
 * context (client_identity = domain only) and the secret hash key (hash_keys only), all read
 * once in greylist_create. Borrows the config. Trusts nothing in the question: every string
 * that goes into a key or an explanation is either validated (addresses, names, IP addresses)
 * or cleaned to printable ASCII (sender_raw_text). Writes only into the caller's batch. */
#include "greylist.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libpsl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "duration.h"
#include "mxc_err.h"
#include "record.h"
#include "sender.h"
#include "wire.h"

#define HASH_BYTES 32 /* BLAKE2b-256: 64 hex digits */

struct greylist {
    const struct config *cfg;
    psl_ctx_t *psl;
    unsigned char key[GREYLIST_KEY_FILE_BYTES];
    char **domains, **exempt; /* canonical: lower-case, no trailing dot */
    size_t ndomains, nexempt;
};

/* ---- create / destroy ---- */

/* domains_free - frees a list made by domains_copy. */
static void domains_free(char **d, size_t n)
{
    for (size_t i = 0; d && i < n; i++)
        free(d[i]);
    free(d);
}

/* domains_copy - canonical copies of the list's items; an item that is not a domain name (the
 * config check refuses those) is skipped. 0 or MXC_ENOMEM. */
static int domains_copy(const struct config_list *l, char ***out, size_t *n)
{
    char canon[ADDR_MAX_DOMAIN + 1];

    *n = 0;
    *out = calloc(l->n ? l->n : 1, sizeof **out);
    if (!*out)
        return MXC_ENOMEM;
    for (size_t i = 0; i < l->n; i++) {
        if (addr_domain_canon(l->items[i], strlen(l->items[i]), canon, sizeof canon) != MXC_OK)
            continue;
        if (!((*out)[*n] = strdup(canon)))
            return MXC_ENOMEM;
        (*n)++;
    }
    return MXC_OK;
}

/* load_key - reads the first GREYLIST_KEY_FILE_BYTES of path into gl->key. */
static int load_key(struct greylist *gl, const char *path, char *err, size_t errlen)
{
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        snprintf(err, errlen, "greylist.key_file %s: cannot read: %s", path, strerror(errno));
        return MXC_ECONFIG;
    }
    while (got < sizeof gl->key) {
        ssize_t n = read(fd, gl->key + got, sizeof gl->key - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errlen, "greylist.key_file %s: cannot read: %s", path, strerror(errno));
            close(fd);
            return MXC_ECONFIG;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (got < sizeof gl->key) {
        snprintf(err, errlen,
                 "greylist.key_file %s: holds %zu bytes; the key needs at least %zu (for example "
                 "head -c 32 /dev/urandom > FILE)",
                 path, got, sizeof gl->key);
        return MXC_ECONFIG;
    }
    return MXC_OK;
}

struct greylist *greylist_create(const struct config *cfg, char *err, size_t errlen)
{
    struct greylist *gl = calloc(1, sizeof *gl);

    if (!gl) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    gl->cfg = cfg;
    if (domains_copy(&cfg->greylist_domains, &gl->domains, &gl->ndomains) != MXC_OK ||
        domains_copy(&cfg->greylist_exempt_domains, &gl->exempt, &gl->nexempt) != MXC_OK) {
        snprintf(err, errlen, "out of memory");
        greylist_destroy(gl);
        return NULL;
    }
    if (cfg->greylist_client_identity == GREYLIST_IDENTITY_DOMAIN) {
        /* The newer of the list built into libpsl and the one the publicsuffix package
         * installs. */
        gl->psl = psl_latest(NULL);
        if (!gl->psl) {
            snprintf(err, errlen,
                     "greylist.client_identity domain: cannot load the Public Suffix List");
            greylist_destroy(gl);
            return NULL;
        }
    }
    if (cfg->greylist_hash_keys) {
        if (sodium_init() < 0) {
            snprintf(err, errlen, "greylist.hash_keys: libsodium cannot initialize");
            greylist_destroy(gl);
            return NULL;
        }
        if (!cfg->greylist_key_file || !cfg->greylist_key_file[0]) {
            snprintf(err, errlen, "greylist.hash_keys needs greylist.key_file");
            greylist_destroy(gl);
            return NULL;
        }
        if (load_key(gl, cfg->greylist_key_file, err, errlen) != MXC_OK) {
            greylist_destroy(gl);
            return NULL;
        }
    }
    return gl;
}

void greylist_destroy(struct greylist *gl)
{
    if (!gl)
        return;
    /* Security: the key does not outlive its use in freed memory. */
    sodium_memzero(gl->key, sizeof gl->key);
    psl_free(gl->psl);
    domains_free(gl->domains, gl->ndomains);
    domains_free(gl->exempt, gl->nexempt);
    free(gl);
}

const char *greylist_rule_name(enum greylist_rule rule)
{
    switch (rule) {
    case GREYLIST_AWL: return "awl";
    case GREYLIST_NEW: return "greylist_new";
    case GREYLIST_EARLY: return "greylist_early";
    case GREYLIST_PASS: return "greylist_pass";
    case GREYLIST_KNOWN: return "greylist_known";
    case GREYLIST_SKIPPED: break;
    }
    return "";
}

/* ---- text helpers ---- */

/* say - appends to the explanation (when there is one), cut when it is full. */
__attribute__((format(printf, 3, 4))) static void say(char *expl, size_t expllen, const char *fmt,
                                                      ...)
{
    va_list ap;

    if (!expl || expllen == 0)
        return;
    size_t used = strnlen(expl, expllen);
    if (used + 1 >= expllen)
        return;
    va_start(ap, fmt);
    vsnprintf(expl + used, expllen - used, fmt, ap);
    va_end(ap);
}

/* SAY - say, with the arguments evaluated only when there is an explanation: formatting times
 * and durations for nobody would cost every Check. */
#define SAY(expl, expllen, ...)                  \
    do {                                         \
        if (expl)                                \
            say(expl, expllen, __VA_ARGS__);     \
    } while (0)

/* iso_time - unix ms as "2026-11-27T22:33:20Z". */
static char *iso_time(uint64_t ms, char *buf, size_t buflen)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    if (!gmtime_r(&t, &tm) || strftime(buf, buflen, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, buflen, "@%llu", (unsigned long long)(ms / 1000));
    return buf;
}

/* rfc5322_date - unix ms as "Fri, 27 Nov 2026 22:33:20 +0000", independent of the locale. */
static char *rfc5322_date(uint64_t ms, char *buf, size_t buflen)
{
    static const char days[][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    if (!gmtime_r(&t, &tm)) {
        buf[0] = '\0';
        return buf;
    }
    snprintf(buf, buflen, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday % 7],
             tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
             tm.tm_sec);
    return buf;
}

/* since - a - b, or 0 when b is later (a record from a clock that ran ahead). */
static uint64_t since(uint64_t a, uint64_t b)
{
    return a > b ? a - b : 0;
}

/* ceil_s - ms rounded up to whole seconds. */
static uint64_t ceil_s(uint64_t ms)
{
    return ms / 1000 + (ms % 1000 != 0);
}

/* render_text - tmpl with every "{remaining}" replaced by the number. */
static void render_text(const char *tmpl, uint64_t remaining, char *out, size_t outlen)
{
    static const char var[] = "{remaining}";
    char num[24];
    size_t o = 0;

    snprintf(num, sizeof num, "%llu", (unsigned long long)remaining);
    for (const char *p = tmpl; *p && o + 1 < outlen;) {
        if (strncmp(p, var, sizeof var - 1) == 0) {
            for (const char *n = num; *n && o + 1 < outlen; n++)
                out[o++] = *n;
            p += sizeof var - 1;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
}

/* ---- keys ---- */

/* domain_in - whether domain is one of list's or below one of them; the match into *which. */
static bool domain_in(const char *domain, char *const *list, size_t n, const char **which)
{
    size_t dlen = strlen(domain);

    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(list[i]);
        if (dlen == len ? strcmp(domain, list[i]) == 0
                        : dlen > len && domain[dlen - len - 1] == '.' &&
                              strcmp(domain + dlen - len, list[i]) == 0) {
            *which = list[i];
            return true;
        }
    }
    return false;
}

/* parse_ip - an IPv4 or IPv6 address; IPv4-mapped IPv6 addresses count as IPv4, as Postfix
 * reports them either way. Returns the family or 0. */
static int parse_ip(const char *s, unsigned char addr[16])
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    if (inet_pton(AF_INET, s, addr) == 1)
        return AF_INET;
    if (inet_pton(AF_INET6, s, addr) != 1)
        return 0;
    if (memcmp(addr, mapped, 12) == 0) {
        memmove(addr, addr + 12, 4);
        return AF_INET;
    }
    return AF_INET6;
}

/* network - the client's masked network "192.0.2.0/24" into out; a line on it into expl. */
static void network(const struct greylist *gl, const char *address, char *out, size_t outlen,
                    char *expl, size_t expllen)
{
    unsigned char a[16];
    char text[INET6_ADDRSTRLEN];
    int af = parse_ip(address, a);

    if (!af) {
        sender_raw_text(address, out, outlen);
        SAY(expl, expllen, "greylist: client address \"%s\" is no IP address; keyed as its text\n",
            out);
        return;
    }
    unsigned bits = (unsigned)(af == AF_INET ? gl->cfg->greylist_ipv4_prefix
                                             : gl->cfg->greylist_ipv6_prefix);
    size_t bytes = af == AF_INET ? 4 : 16;
    for (size_t i = 0; i < bytes; i++) {
        unsigned keep = bits >= 8 * (i + 1) ? 8 : (bits > 8 * i ? bits - 8 * i : 0);
        a[i] &= (unsigned char)(0xff00u >> keep);
    }
    inet_ntop(af, a, text, sizeof text);
    snprintf(out, outlen, "%s/%u", text, bits);
    SAY(expl, expllen, "greylist: client %s (network of %s)\n", out, address);
}

/* client_identity - CLIENT of the key (greylist.h) into out (GREYLIST_CLIENT_MAX + 1 bytes). */
static void client_identity(const struct greylist *gl, const Mxcache__CheckRequest *q, char *out,
                            size_t outlen, char *expl, size_t expllen)
{
    const char *name = q->client_name ? q->client_name : "";
    char canon[ADDR_MAX_DOMAIN + 1];

    if (gl->psl && name[0] && strcasecmp(name, "unknown") != 0 &&
        addr_domain_canon(name, strlen(name), canon, sizeof canon) == MXC_OK) {
        const char *reg = psl_registrable_domain(gl->psl, canon);
        if (reg) {
            snprintf(out, outlen, "%s", reg);
            SAY(expl, expllen, "greylist: client %s (registered domain of the client name %s)\n",
                out, canon);
            return;
        }
        SAY(expl, expllen, "greylist: the client name %s has no registered domain; using the "
            "network\n", canon);
    } else if (gl->psl) {
        SAY(expl, expllen, "greylist: no forward-confirmed client name; using the network\n");
    }
    network(gl, q->client_address ? q->client_address : "", out, outlen, expl, expllen);
}

/* stored_key - key as stored: itself, or the hex of its keyed hash. */
static void stored_key(const struct greylist *gl, const char *key, char *out, size_t outlen)
{
    unsigned char h[HASH_BYTES];

    if (!gl->cfg->greylist_hash_keys) {
        snprintf(out, outlen, "%s", key);
        return;
    }
    crypto_generichash(h, sizeof h, (const unsigned char *)key, strlen(key), gl->key,
                       sizeof gl->key);
    sodium_bin2hex(out, outlen, h, sizeof h);
}

/* The parts of one question's keys. */
struct triplet {
    char client[GREYLIST_CLIENT_MAX + 1];
    char sender[SENDER_KEY_MAX + 1];
    char rcpt[SENDER_KEY_MAX + 1];
    const char *rdomain; /* inside rcpt; "" when there is none */
    char key[GREYLIST_KEY_MAX], awl_key[GREYLIST_KEY_MAX]; /* as stored */
};

/* recipient - the RECIPIENT of the key and its domain. */
static void recipient(const Mxcache__CheckRequest *q, struct triplet *t)
{
    const char *r = q->recipient ? q->recipient : "";

    if (addr_mailbox_canon(r, strlen(r), true, t->rcpt, sizeof t->rcpt) != MXC_OK)
        sender_raw_text(r, t->rcpt, sizeof t->rcpt);
    const char *at = strrchr(t->rcpt, '@');
    t->rdomain = at ? at + 1 : "";
}

/* make_keys - every part of t from q; lines on them into expl. */
static void make_keys(const struct greylist *gl, const Mxcache__CheckRequest *q, struct triplet *t,
                      char *expl, size_t expllen)
{
    char clear[GREYLIST_KEY_MAX], raw[SENDER_KEY_MAX + 1];

    client_identity(gl, q, t->client, sizeof t->client, expl, expllen);
    enum sender_kind kind = sender_normalize(q->sender, t->sender, sizeof t->sender);
    sender_raw_text(q->sender, raw, sizeof raw);
    if (kind == SENDER_RAW)
        SAY(expl, expllen, "greylist: sender \"%s\" is no mail address; keyed as its text\n", raw);
    else if (kind == SENDER_MAILBOX && strcmp(raw, t->sender) != 0)
        SAY(expl, expllen, "greylist: sender %s normalized to %s\n", raw, t->sender);
    snprintf(clear, sizeof clear, "%s/%s/%s", t->client, t->sender, t->rcpt);
    stored_key(gl, clear, t->key, sizeof t->key);
    stored_key(gl, t->client, t->awl_key, sizeof t->awl_key);
    SAY(expl, expllen, "greylist: key %s\n", clear);
    if (gl->cfg->greylist_hash_keys)
        SAY(expl, expllen, "greylist: stored hashed: greylist key %s, awl key %s\n", t->key,
            t->awl_key);
}

void greylist_client(const struct greylist *gl, const Mxcache__CheckRequest *q, char *out,
                     size_t outlen)
{
    client_identity(gl, q, out, outlen, NULL, 0);
}

int greylist_keys(const struct greylist *gl, const Mxcache__CheckRequest *q, char *key,
                  char *awl_key)
{
    struct triplet t;

    recipient(q, &t);
    make_keys(gl, q, &t, NULL, 0);
    memcpy(key, t.key, sizeof t.key);
    memcpy(awl_key, t.awl_key, sizeof t.awl_key);
    return MXC_OK;
}

/* ---- records ---- */


/* plus_one - n + 1, saturating. */
static uint32_t plus_one(uint32_t n)
{
    return n == UINT32_MAX ? n : n + 1;
}

/* count_awl_pass - the AWL pass that a greylist pass or a known triplet counts. */
static int count_awl_pass(const struct greylist *gl, store_batch *b, const struct triplet *t,
                          const Mxcache__AwlRecord *old, uint64_t now, bool explain, char *expl,
                          size_t expllen, char *err, size_t errlen)
{
    const struct config *c = gl->cfg;
    Mxcache__AwlRecord r = MXCACHE__AWL_RECORD__INIT;

    if (c->greylist_awl_passes == 0)
        return MXC_OK;
    /* Security: as postgrey, at most one pass of a client counts per GREYLIST_AWL_COUNT_MS, so
     * a burst of mails from one source (a spam run that got through once) cannot buy it an
     * auto-whitelisting in seconds; a real MTA earns it over hours of traffic. */
    if (old && since(now, old->last_seen_ms) < GREYLIST_AWL_COUNT_MS) {
        SAY(expl, expllen, "awl: a pass of %s was counted less than %s ago; this one is not (%u of %lld)\n",
            t->client, "1h", old->passes, c->greylist_awl_passes);
        return MXC_OK;
    }
    r.first_seen_ms = old ? old->first_seen_ms : now;
    r.last_seen_ms = now;
    r.passes = old ? plus_one(old->passes) : 1;
    r.expires_at_ms = now + c->greylist_awl_max_age;
    SAY(expl, expllen, "awl: this pass %s %u of the %lld that auto-whitelist %s\n",
        explain ? "would make" : "makes", r.passes, c->greylist_awl_passes, t->client);
    if (explain)
        return MXC_OK;
    return record_batch_put(b, MXCACHE__KEYSPACE__KEYSPACE_AWL, t->awl_key, &r.base, err, errlen);
}

/* defer - res as a deferral with remaining_ms to go. */
static void defer(const struct greylist *gl, struct greylist_result *res, enum greylist_rule rule,
                  uint64_t remaining_ms)
{
    res->rule = rule;
    res->defer = true;
    res->smtp_code = (uint32_t)gl->cfg->greylist_reply_code;
    res->status = gl->cfg->greylist_reply_status;
    res->remaining_s = ceil_s(remaining_ms);
    render_text(gl->cfg->greylist_reply_text, res->remaining_s, res->text, sizeof res->text);
}

/* header - the X-Greylist header of a pass after delayed_ms. The MX's name goes in only when it
 * is a host name: Security: anything else could break the header line. */
static void header(const Mxcache__CheckRequest *q, uint64_t delayed_ms, uint64_t now, char *out,
                   size_t outlen)
{
    char mx[ADDR_MAX_DOMAIN + 1], date[64];
    const char *name = q->mx_name ? q->mx_name : "";

    if (addr_domain_canon(name, strlen(name), mx, sizeof mx) != MXC_OK)
        snprintf(mx, sizeof mx, "unknown");
    snprintf(out, outlen, "X-Greylist: delayed %llu seconds by mxcache at %s; %s",
             (unsigned long long)(delayed_ms / 1000), mx, rfc5322_date(now, date, sizeof date));
}

int greylist_check(const struct greylist *gl, store_batch *b, const Mxcache__CheckRequest *q,
                   uint64_t now_ms, bool explain, struct greylist_result *res, char *expl,
                   size_t expllen, char *err, size_t errlen)
{
    const struct config *c = gl->cfg;
    const uint64_t now = now_ms;
    Mxcache__AwlRecord *awl = NULL;
    Mxcache__GreylistRecord *old = NULL;
    Mxcache__GreylistRecord r = MXCACHE__GREYLIST_RECORD__INIT;
    char *val = NULL, t1[32], t2[32], t3[32], d1[32];
    size_t vallen;
    const char *which;
    struct triplet *t;
    int rc = MXC_OK;

    memset(res, 0, sizeof *res);
    res->rule = GREYLIST_SKIPPED;
    if (!c->greylist_enabled) {
        SAY(expl, expllen, "greylist: off (greylist.enabled = false)\n");
        return MXC_OK;
    }
    if (!(t = malloc(sizeof *t)))
        return MXC_ENOMEM;
    recipient(q, t);
    if (gl->ndomains && !domain_in(t->rdomain, gl->domains, gl->ndomains, &which)) {
        SAY(expl, expllen, "greylist: greylisting is off for domain %s (not in greylist.domains)\n",
            t->rdomain[0] ? t->rdomain : "(none)");
        free(t);
        return MXC_OK;
    }
    if (domain_in(t->rdomain, gl->exempt, gl->nexempt, &which)) {
        SAY(expl, expllen,
            "greylist: greylisting is off for domain %s (greylist.exempt_domains has %s)\n",
            t->rdomain, which);
        free(t);
        return MXC_OK;
    }
    make_keys(gl, q, t, expl, expllen);

    /* The auto-whitelist first: a client that passed often enough skips the rest. */
    if (c->greylist_awl_passes > 0) {
        if ((rc = record_batch_get(b, MXCACHE__KEYSPACE__KEYSPACE_AWL, t->awl_key, &val, &vallen, err,
                             errlen)) != MXC_OK)
            goto out;
        if (val) {
            awl = mxcache__awl_record__unpack(NULL, vallen, (const uint8_t *)val);
            free(val);
            val = NULL;
            if (!awl)
                SAY(expl, expllen, "awl: the record does not unpack; taken as absent\n");
        }
        if (!awl) {
            SAY(expl, expllen, "awl: no record for %s (0 of %lld passes)\n", t->client,
                c->greylist_awl_passes);
        } else if (awl->passes < (uint64_t)c->greylist_awl_passes) {
            SAY(expl, expllen, "awl: %s has %u of %lld passes\n", t->client, awl->passes,
                c->greylist_awl_passes);
        } else {
            res->rule = GREYLIST_AWL;
            res->fact_age_ms = since(now, awl->first_seen_ms);
            SAY(expl, expllen,
                "awl: %s has %u passes (at least %lld): auto-whitelisted; first seen %s, last "
                "pass %s\n",
                t->client, awl->passes, c->greylist_awl_passes,
                iso_time(awl->first_seen_ms, t1, sizeof t1),
                iso_time(awl->last_seen_ms, t2, sizeof t2));
            /* Robustness: an active client stays whitelisted, at one write per hour at most. */
            if (!explain && since(now, awl->last_seen_ms) >= GREYLIST_REFRESH_MS) {
                awl->last_seen_ms = now;
                awl->expires_at_ms = now + c->greylist_awl_max_age;
                rc = record_batch_put(b, MXCACHE__KEYSPACE__KEYSPACE_AWL, t->awl_key, &awl->base, err,
                                errlen);
            }
            goto out;
        }
    } else {
        SAY(expl, expllen, "awl: off (greylist.awl_passes = 0)\n");
    }

    /* XXX Read, decide, write is not atomic across workers: two rounds deciding this triplet
     * at once both write, the later commit wins. Benign, see greylist.h. */
    if ((rc = record_batch_get(b, MXCACHE__KEYSPACE__KEYSPACE_GREYLIST, t->key, &val, &vallen, err,
                         errlen)) != MXC_OK)
        goto out;
    if (val) {
        old = mxcache__greylist_record__unpack(NULL, vallen, (const uint8_t *)val);
        free(val);
        val = NULL;
        if (!old)
            SAY(expl, expllen, "greylist: the record does not unpack; taken as absent\n");
    }
    if (expl)
        duration_format(c->greylist_delay, d1, sizeof d1);

    if (old && old->state == MXCACHE__RECORD_STATE__STATE_PASSED) {
        res->rule = GREYLIST_KNOWN;
        res->fact_age_ms = since(now, old->first_seen_ms);
        /* Performance: a busy triplet is rewritten at most once per GREYLIST_REFRESH_MS, not
         * on every mail; its expiry moves by max_age anyway, an hour more or less is nothing. */
        bool refresh = since(now, old->last_seen_ms) >= GREYLIST_REFRESH_MS;
        SAY(expl, expllen,
            "greylist: known triplet: passed at %s, first seen %s, last refreshed %s, %u passes; %s\n",
            iso_time(old->passed_at_ms, t1, sizeof t1), iso_time(old->first_seen_ms, t2, sizeof t2),
            iso_time(old->last_seen_ms, t3, sizeof t3), old->passes,
            !refresh ? "refreshed less than 1h ago, not again"
                     : explain ? "a pass would refresh it" : "refreshed");
        r = *old;
        r.base = (ProtobufCMessage)PROTOBUF_C_MESSAGE_INIT(&mxcache__greylist_record__descriptor);
        r.last_seen_ms = now;
        r.attempts = plus_one(old->attempts);
        r.passes = plus_one(old->passes);
        r.expires_at_ms = now + c->greylist_max_age;
        if (!explain && refresh &&
            (rc = record_batch_put(b, MXCACHE__KEYSPACE__KEYSPACE_GREYLIST, t->key, &r.base, err,
                             errlen)) != MXC_OK)
            goto out;
        rc = count_awl_pass(gl, b, t, awl, now, explain, expl, expllen, err, errlen);
        goto out;
    }

    /* A pending record past the retry window: normally expired already (its expiry is the end
     * of the window); this catches one written under a longer retry_window before a reload. */
    bool stale = old && now >= old->first_seen_ms + c->greylist_retry_window;
    if (old && stale)
        SAY(expl, expllen, "greylist: pending since %s, past the retry window of %s: starts over\n",
            iso_time(old->first_seen_ms, t1, sizeof t1),
            duration_format(c->greylist_retry_window, t2, sizeof t2));
    if (!old || stale) {
        r.state = MXCACHE__RECORD_STATE__STATE_PENDING;
        r.first_seen_ms = r.last_seen_ms = now;
        r.attempts = 1;
        if (c->greylist_delay > 0) {
            r.expires_at_ms = now + c->greylist_retry_window;
            defer(gl, res, GREYLIST_NEW, c->greylist_delay);
            SAY(expl, expllen, "greylist: new triplet: deferred for %s\n", d1);
            if (!explain)
                rc = record_batch_put(b, MXCACHE__KEYSPACE__KEYSPACE_GREYLIST, t->key, &r.base, err,
                                errlen);
            goto out;
        }
        /* greylist.delay 0: the first attempt passes at once, without a header. */
        SAY(expl, expllen, "greylist: new triplet, and greylist.delay is 0: passes\n");
    } else {
        uint64_t ready = old->first_seen_ms + c->greylist_delay;
        r = *old;
        r.base = (ProtobufCMessage)PROTOBUF_C_MESSAGE_INIT(&mxcache__greylist_record__descriptor);
        r.last_seen_ms = now;
        r.attempts = plus_one(old->attempts);
        if (now < ready) {
            uint64_t left = ready - now;
            if (left > c->greylist_delay)
                left = c->greylist_delay; /* a first_seen in the future: never wait longer */
            defer(gl, res, GREYLIST_EARLY, left);
            res->fact_age_ms = since(now, old->first_seen_ms);
            SAY(expl, expllen,
                "greylist: pending since %s, %u attempts, last %s; delay %s: %llu s left\n",
                iso_time(old->first_seen_ms, t1, sizeof t1), old->attempts,
                iso_time(old->last_seen_ms, t2, sizeof t2), d1,
                (unsigned long long)res->remaining_s);
            if (!explain)
                rc = record_batch_put(b, MXCACHE__KEYSPACE__KEYSPACE_GREYLIST, t->key, &r.base, err,
                                errlen);
            goto out;
        }
        SAY(expl, expllen, "greylist: pending since %s, %u attempts; the delay of %s is over: "
            "passes\n", iso_time(old->first_seen_ms, t1, sizeof t1), old->attempts, d1);
    }

    /* The pass: the first retry after the delay (or the first attempt with delay 0). */
    uint64_t delayed = since(now, r.first_seen_ms);
    res->rule = GREYLIST_PASS;
    res->fact_age_ms = delayed;
    if (c->greylist_header && delayed > 0)
        header(q, delayed, now, res->prepend, sizeof res->prepend);
    r.state = MXCACHE__RECORD_STATE__STATE_PASSED;
    r.passed_at_ms = now;
    r.passes = 1;
    r.expires_at_ms = now + c->greylist_max_age;
    if (!explain &&
        (rc = record_batch_put(b, MXCACHE__KEYSPACE__KEYSPACE_GREYLIST, t->key, &r.base, err, errlen)) !=
            MXC_OK)
        goto out;
    rc = count_awl_pass(gl, b, t, awl, now, explain, expl, expllen, err, errlen);
out:
    if (old)
        mxcache__greylist_record__free_unpacked(old, NULL);
    if (awl)
        mxcache__awl_record__free_unpacked(awl, NULL);
    free(t);
    if (rc != MXC_OK)
        memset(res, 0, sizeof *res);
    return rc;
}
