/* In-memory mirror of the static whitelists and their canonical keys (see whitelist.h).
 *
 * Client networks are found with one hash lookup per prefix length in use: the map holds the
 * canonical "client:<net>/<len>" strings, and per family a count of entries of each length tells
 * which lengths to try. */
#include "whitelist.h"

#include <arpa/inet.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "mxc_err.h"
#include "record.h"
#include "strmap.h"
#include "wire.h"

struct whitelist {
    pthread_rwlock_t lock;       /* readers: wl_match; writers: changes of the map */
    pthread_mutex_t sync_lock;   /* orders wl_sync_key and wl_load among themselves */
    strmap *map;                 /* key -> expires_at_ms (0: never) */
    atomic_bool stale;           /* a sync failed: the copy may differ from the store */
    unsigned prefixes4[33];      /* entries per IPv4 prefix length */
    unsigned prefixes6[129];
};

struct whitelist *wl_create(void)
{
    struct whitelist *wl = calloc(1, sizeof *wl);
    if (!wl)
        return NULL;
    wl->map = strmap_create();
    if (!wl->map || pthread_rwlock_init(&wl->lock, NULL) != 0) {
        strmap_destroy(wl->map);
        free(wl);
        return NULL;
    }
    pthread_mutex_init(&wl->sync_lock, NULL);
    return wl;
}

void wl_destroy(struct whitelist *wl)
{
    if (!wl)
        return;
    pthread_rwlock_destroy(&wl->lock);
    pthread_mutex_destroy(&wl->sync_lock);
    strmap_destroy(wl->map);
    free(wl);
}

static void mask_bits(unsigned char *a, size_t bytes, unsigned len)
{
    for (size_t i = 0; i < bytes; i++) {
        unsigned keep = len >= 8 * (i + 1) ? 8 : (len > 8 * i ? len - 8 * i : 0);
        a[i] &= (unsigned char)(0xff00u >> keep);
    }
}

/* parse_ip - an IPv4 or IPv6 address; IPv4-mapped IPv6 addresses count as IPv4, as Postfix
 * reports them either way. Returns the family or 0. */
static int parse_ip(const char *s, unsigned char addr[16])
{
    if (inet_pton(AF_INET, s, addr) == 1)
        return AF_INET;
    if (inet_pton(AF_INET6, s, addr) != 1)
        return 0;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(addr, mapped, 12) == 0) {
        memmove(addr, addr + 12, 4);
        return AF_INET;
    }
    return AF_INET6;
}

static int net_key(int af, const unsigned char *addr, unsigned len, char *key, size_t keylen)
{
    unsigned char a[16];
    char text[INET6_ADDRSTRLEN];

    memcpy(a, addr, af == AF_INET ? 4 : 16);
    mask_bits(a, af == AF_INET ? 4 : 16, len);
    inet_ntop(af, a, text, sizeof text);
    return snprintf(key, keylen, "client:%s/%u", text, len);
}

int wl_key(Mxcache__WhitelistKind kind, const char *value, char *key, size_t keylen, char *err,
           size_t errlen)
{
    char canon[ADDR_MAX_PATH + 1];
    const char *kname = wire_wlkind_name(kind);
    size_t vlen = value ? strlen(value) : 0;

    if (!value || vlen == 0) {
        snprintf(err, errlen, "empty value");
        return MXC_EINVAL;
    }
    switch (kind) {
    case MXCACHE__WHITELIST_KIND__WHITELIST_CLIENT: {
        char ip[INET6_ADDRSTRLEN + 1];
        unsigned char addr[16];
        const char *slash = strchr(value, '/');
        size_t iplen = slash ? (size_t)(slash - value) : vlen;
        unsigned long len;
        int af;

        if (iplen >= sizeof ip) {
            snprintf(err, errlen, "not an IP address or network");
            return MXC_EINVAL;
        }
        memcpy(ip, value, iplen);
        ip[iplen] = '\0';
        af = parse_ip(ip, addr);
        if (!af) {
            snprintf(err, errlen, "not an IP address or network");
            return MXC_EINVAL;
        }
        len = af == AF_INET ? 32 : 128;
        if (slash) {
            /* Only 1-3 plain digits: strtoul alone would take blanks, signs and negation. */
            size_t digits = strspn(slash + 1, "0123456789");
            len = (digits >= 1 && digits <= 3 && !slash[1 + digits]) ? strtoul(slash + 1, NULL, 10)
                                                                     : ULONG_MAX;
            if (len > (af == AF_INET ? 32u : 128u)) {
                snprintf(err, errlen, "bad prefix length (1-%d)", af == AF_INET ? 32 : 128);
                return MXC_EINVAL;
            }
            /* Security: a /0 would exempt every client from every check. */
            if (len == 0) {
                snprintf(err, errlen, "a /0 network would whitelist every client");
                return MXC_EINVAL;
            }
        }
        if ((size_t)net_key(af, addr, (unsigned)len, key, keylen) >= keylen) {
            snprintf(err, errlen, "value too long");
            return MXC_EINVAL;
        }
        return MXC_OK;
    }
    case MXCACHE__WHITELIST_KIND__WHITELIST_CLIENT_NAME:
        if (addr_domain_canon(value, vlen, canon, sizeof canon) != MXC_OK) {
            snprintf(err, errlen, "not a host or domain name");
            return MXC_EINVAL;
        }
        if (!strchr(canon, '.')) {
            snprintf(err, errlen, "a single-label name (a top-level domain) would cover too much");
            return MXC_EINVAL;
        }
        break;
    case MXCACHE__WHITELIST_KIND__WHITELIST_SENDER:
    case MXCACHE__WHITELIST_KIND__WHITELIST_RECIPIENT:
        if (strchr(value, '@') ? addr_mailbox_canon(value, vlen, true, canon, sizeof canon)
                               : addr_domain_canon(value, vlen, canon, sizeof canon)) {
            snprintf(err, errlen, "not a mail address or domain");
            return MXC_EINVAL;
        }
        if (!strchr(canon, '.') && !strchr(canon, '@')) {
            snprintf(err, errlen, "a single-label domain (a top-level domain) would cover too much");
            return MXC_EINVAL;
        }
        break;
    default:
        snprintf(err, errlen, "unknown whitelist kind");
        return MXC_EINVAL;
    }
    if ((size_t)snprintf(key, keylen, "%s:%s", kname, canon) >= keylen) {
        snprintf(err, errlen, "value too long");
        return MXC_EINVAL;
    }
    return MXC_OK;
}

/* Keeps the per-length counts of client networks in step with the map (called under the write
 * lock, delta +1 for an inserted key, -1 for a removed one). key is not NUL-terminated: it may
 * point into a RocksDB iterator's buffer. */
static void count_prefix(struct whitelist *wl, const char *key, size_t keylen, int delta)
{
    unsigned char addr[16];
    char buf[WL_KEY_MAX], *slash;
    unsigned len;

    if (keylen >= sizeof buf || keylen < 7 || memcmp(key, "client:", 7) != 0)
        return;
    memcpy(buf, key, keylen);
    buf[keylen] = '\0';
    if (!(slash = strrchr(buf, '/')))
        return;
    *slash = '\0';
    len = (unsigned)atoi(slash + 1);
    int af = parse_ip(buf + 7, addr);
    if (af == AF_INET && len <= 32)
        wl->prefixes4[len] += (unsigned)delta;
    else if (af == AF_INET6 && len <= 128)
        wl->prefixes6[len] += (unsigned)delta;
}

static int set_locked(struct whitelist *wl, const char *key, size_t keylen, uint64_t expires)
{
    bool had = strmap_get(wl->map, key, keylen, NULL);
    int rc = strmap_put(wl->map, key, keylen, expires);
    if (rc == MXC_OK && !had)
        count_prefix(wl, key, keylen, +1);
    return rc;
}

static void del_locked(struct whitelist *wl, const char *key, size_t keylen)
{
    if (strmap_del(wl->map, key, keylen))
        count_prefix(wl, key, keylen, -1);
}

struct load_ctx {
    struct whitelist *wl;
    int rc;
};

static int load_one(void *arg, const char *key, size_t keylen, const char *val, size_t vallen)
{
    struct load_ctx *lc = arg;
    uint64_t expires;

    /* Keys reach the map NUL-free: they were made by wl_key. */
    if (record_expiry(val, vallen, &expires) != MXC_OK || keylen >= WL_KEY_MAX)
        return 0;
    if (set_locked(lc->wl, key, keylen, expires) != MXC_OK)
        return lc->rc = MXC_ENOMEM;
    return 0;
}

int wl_load(struct whitelist *wl, store *st, char *err, size_t errlen)
{
    struct load_ctx lc = {wl, 0};
    strmap *fresh = strmap_create();
    if (!fresh) {
        snprintf(err, errlen, "out of memory");
        return MXC_ENOMEM;
    }
    pthread_mutex_lock(&wl->sync_lock);
    pthread_rwlock_wrlock(&wl->lock);
    strmap *old = wl->map;
    wl->map = fresh;
    memset(wl->prefixes4, 0, sizeof wl->prefixes4);
    memset(wl->prefixes6, 0, sizeof wl->prefixes6);
    int rc = store_scan(st, MXCACHE__KEYSPACE__KEYSPACE_WHITELIST, NULL, 0, NULL, 0, false,
                        load_one, &lc, err, errlen);
    pthread_rwlock_unlock(&wl->lock);
    pthread_mutex_unlock(&wl->sync_lock);
    strmap_destroy(old);
    if (rc == MXC_OK && lc.rc != MXC_OK) {
        snprintf(err, errlen, "out of memory");
        rc = lc.rc;
    }
    return rc;
}

int wl_sync_key(struct whitelist *wl, store *st, const char *key, size_t keylen)
{
    char *val = NULL;
    size_t vallen = 0;
    char err[256];
    uint64_t expires = 0;
    int rc;

    if (keylen >= WL_KEY_MAX)
        return MXC_EINVAL;
    /* The store read and the change happen under sync_lock, so the last sync of a key reads
     * after the last commit of it; Check waits only for the map change itself. */
    pthread_mutex_lock(&wl->sync_lock);
    rc = store_get(st, MXCACHE__KEYSPACE__KEYSPACE_WHITELIST, key, keylen, &val, &vallen, err,
                   sizeof err);
    if (rc == MXC_OK && record_expiry(val, vallen, &expires) != MXC_OK)
        rc = MXC_ENOENT; /* a value that does not decode is not an entry */
    if (rc == MXC_OK || rc == MXC_ENOENT) {
        pthread_rwlock_wrlock(&wl->lock);
        if (rc == MXC_OK)
            rc = set_locked(wl, key, keylen, expires);
        else
            del_locked(wl, key, keylen), rc = MXC_OK;
        pthread_rwlock_unlock(&wl->lock);
    }
    if (rc != MXC_OK)
        atomic_store(&wl->stale, true);
    pthread_mutex_unlock(&wl->sync_lock);
    free(val);
    return rc;
}

int wl_refresh(struct whitelist *wl, store *st, char *err, size_t errlen)
{
    if (!atomic_load_explicit(&wl->stale, memory_order_relaxed))
        return MXC_OK;
    /* Cleared first: a sync failing during the reload marks it again. */
    atomic_store(&wl->stale, false);
    int rc = wl_load(wl, st, err, errlen);
    if (rc != MXC_OK)
        atomic_store(&wl->stale, true);
    return rc;
}

static bool live(const struct whitelist *wl, const char *key, uint64_t now_ms)
{
    uint64_t expires;
    return strmap_get(wl->map, key, strlen(key), &expires) && (expires == 0 || now_ms < expires);
}

/* match_domain - tries "<kind>:<name>" and then each parent domain of name. */
static bool match_domain(const struct whitelist *wl, const char *kind, const char *name,
                         uint64_t now_ms, char *matched, size_t matchedlen)
{
    for (const char *d = name; d; d = strchr(d, '.'), d = d ? d + 1 : NULL) {
        snprintf(matched, matchedlen, "%s:%s", kind, d);
        if (live(wl, matched, now_ms))
            return true;
    }
    return false;
}

static bool match_client(const struct whitelist *wl, const char *ip, uint64_t now_ms,
                         char *matched, size_t matchedlen)
{
    unsigned char addr[16];
    int af = parse_ip(ip, addr);
    const unsigned *counts = af == AF_INET ? wl->prefixes4 : wl->prefixes6;
    int maxlen = af == AF_INET ? 32 : 128;

    if (!af)
        return false;
    for (int len = maxlen; len >= 0; len--) {
        if (!counts[len])
            continue;
        net_key(af, addr, (unsigned)len, matched, matchedlen);
        if (live(wl, matched, now_ms))
            return true;
    }
    return false;
}

static bool match_address(const struct whitelist *wl, const char *kind, const char *addr,
                          uint64_t now_ms, char *matched, size_t matchedlen)
{
    char canon[ADDR_MAX_PATH + 1];

    if (!addr || !*addr || addr_mailbox_canon(addr, strlen(addr), true, canon, sizeof canon))
        return false;
    snprintf(matched, matchedlen, "%s:%s", kind, canon);
    if (live(wl, matched, now_ms))
        return true;
    return match_domain(wl, kind, addr_domain_of(canon), now_ms, matched, matchedlen);
}

int wl_match(struct whitelist *wl, const Mxcache__CheckRequest *q, uint64_t now_ms, char *matched,
             size_t matchedlen)
{
    char name[ADDR_MAX_DOMAIN + 1];
    bool hit = false;

    if (matchedlen)
        matched[0] = '\0';
    pthread_rwlock_rdlock(&wl->lock);
    if (strmap_count(wl->map) == 0) {
        pthread_rwlock_unlock(&wl->lock);
        return 0;
    }
    if (q->client_address && *q->client_address)
        hit = match_client(wl, q->client_address, now_ms, matched, matchedlen);
    if (!hit && q->client_name && strcmp(q->client_name, "unknown") != 0 &&
        addr_domain_canon(q->client_name, strlen(q->client_name), name, sizeof name) == MXC_OK)
        hit = match_domain(wl, "client_name", name, now_ms, matched, matchedlen);
    if (!hit)
        hit = match_address(wl, "sender", q->sender, now_ms, matched, matchedlen);
    if (!hit)
        hit = match_address(wl, "recipient", q->recipient, now_ms, matched, matchedlen);
    pthread_rwlock_unlock(&wl->lock);
    if (!hit && matchedlen)
        matched[0] = '\0';
    return hit;
}

size_t wl_count(struct whitelist *wl)
{
    pthread_rwlock_rdlock(&wl->lock);
    size_t n = strmap_count(wl->map);
    pthread_rwlock_unlock(&wl->lock);
    return n;
}
