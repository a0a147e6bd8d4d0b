/* The key and network table of mxcached's clients (auth.h). */
#include "auth.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "mxc_err.h"

int auth_net_parse(const char *s, struct auth_net *out, char *why, size_t whylen)
{
    char buf[64];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    uint8_t v4[4];
    unsigned max = 128, off = 0;

    memset(out, 0, sizeof *out);
    if (alen == 0 || alen >= sizeof buf) {
        snprintf(why, whylen, "not an address or network");
        return MXC_EINVAL;
    }
    memcpy(buf, s, alen);
    buf[alen] = '\0';
    if (inet_pton(AF_INET, buf, v4) == 1) {
        out->addr[10] = out->addr[11] = 0xff;
        memcpy(out->addr + 12, v4, 4);
        max = 32;
        off = 96;
    } else if (inet_pton(AF_INET6, buf, out->addr) != 1) {
        snprintf(why, whylen, "not an IPv4 or IPv6 address");
        return MXC_EINVAL;
    }
    out->prefix = max;
    if (slash) {
        char *end;
        unsigned long p = strtoul(slash + 1, &end, 10);
        if (slash[1] < '0' || slash[1] > '9' || *end != '\0' || p > max) {
            snprintf(why, whylen, "bad prefix length (0 to %u)", max);
            return MXC_EINVAL;
        }
        out->prefix = (unsigned)p;
    }
    out->prefix += off;
    for (unsigned bit = out->prefix; bit < 128; bit++)
        if (out->addr[bit / 8] & (0x80 >> (bit % 8))) {
            snprintf(why, whylen, "host bits set below the prefix length");
            return MXC_EINVAL;
        }
    return MXC_OK;
}

static bool net_holds(const struct auth_net *n, const uint8_t addr[16])
{
    unsigned full = n->prefix / 8, rest = n->prefix % 8;

    if (memcmp(n->addr, addr, full) != 0)
        return false;
    return rest == 0 || ((n->addr[full] ^ addr[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

bool auth_address_allowed(const struct auth *a, const char *ip)
{
    struct auth_net host;
    char why[64];

    if (!ip || !ip[0] || a->nnets == 0)
        return true;
    if (auth_net_parse(ip, &host, why, sizeof why) != MXC_OK)
        return false;
    for (size_t i = 0; i < a->nnets; i++)
        if (net_holds(&a->nets[i], host.addr))
            return true;
    return false;
}

static int key_cmp(const void *x, const void *y)
{
    return strcmp(((const struct auth_key *)x)->key, ((const struct auth_key *)y)->key);
}

const struct auth_key *auth_find(const struct auth *a, const char *z85)
{
    struct auth_key probe;

    if (!z85 || strlen(z85) != KEYFILE_Z85_LEN || a->nkeys == 0)
        return NULL;
    memcpy(probe.key, z85, KEYFILE_Z85_LEN + 1);
    return bsearch(&probe, a->keys, a->nkeys, sizeof *a->keys, key_cmp);
}

bool auth_needs_admin(Mxcache__Request__BodyCase body)
{
    switch (body) {
    case MXCACHE__REQUEST__BODY_CHECK:
    case MXCACHE__REQUEST__BODY_PING:
    case MXCACHE__REQUEST__BODY_GET:
    case MXCACHE__REQUEST__BODY_LIST:
    case MXCACHE__REQUEST__BODY_STATS:
    case MXCACHE__REQUEST__BODY_WHITELIST_LIST:
        return false;
    default:
        /* Security: anything new or unknown is an admin request until said otherwise. */
        return true;
    }
}

/* add_keys - the entries of one list into a->keys; a key listed again keeps one entry, an
 * admin if either listing says so. */
static int add_keys(struct auth *a, const struct config_list *l, const char *setting, bool admin,
                    void (*report)(void *, const char *), void *arg)
{
    int bad = 0;

    for (size_t i = 0; i < l->n; i++) {
        struct auth_key k = {.admin = admin};
        char err[512], msg[700];
        if (keyfile_public(l->items[i], k.key, k.name, sizeof k.name, err, sizeof err) != MXC_OK) {
            snprintf(msg, sizeof msg, "security.%s[%zu]: %s", setting, i, err);
            report(arg, msg);
            bad = 1;
            continue;
        }
        size_t j = 0;
        while (j < a->nkeys && strcmp(a->keys[j].key, k.key) != 0)
            j++;
        if (j < a->nkeys)
            a->keys[j].admin = a->keys[j].admin || admin;
        else
            a->keys[a->nkeys++] = k;
    }
    return bad;
}

struct auth *auth_create(const struct config *cfg, void (*report)(void *arg, const char *msg), void *arg)
{
    struct auth *a = calloc(1, sizeof *a);
    size_t nk = cfg->security_client_keys.n + cfg->security_admin_keys.n;
    int bad = 0;

    if (a) {
        a->keys = calloc(nk ? nk : 1, sizeof *a->keys);
        a->nets = calloc(cfg->security_allow.n ? cfg->security_allow.n : 1, sizeof *a->nets);
    }
    if (!a || !a->keys || !a->nets) {
        report(arg, "out of memory");
        auth_free(a);
        return NULL;
    }
    a->curve = cfg->security_key_file[0] != '\0';
    bad |= add_keys(a, &cfg->security_client_keys, "client_keys", false, report, arg);
    bad |= add_keys(a, &cfg->security_admin_keys, "admin_keys", true, report, arg);
    qsort(a->keys, a->nkeys, sizeof *a->keys, key_cmp);
    for (size_t i = 0; i < cfg->security_allow.n; i++) {
        char why[96], msg[256];
        /* config_load checked the syntax; a failure here would be our bug, reported all the same. */
        if (auth_net_parse(cfg->security_allow.items[i], &a->nets[a->nnets], why, sizeof why) != MXC_OK) {
            snprintf(msg, sizeof msg, "security.allow[%zu]: %s", i, why);
            report(arg, msg);
            bad = 1;
            continue;
        }
        a->nnets++;
    }
    if (bad) {
        auth_free(a);
        return NULL;
    }
    return a;
}

void auth_free(struct auth *a)
{
    if (!a)
        return;
    free(a->keys);
    free(a->nets);
    free(a);
}
