/* verifier - the probe coordinator of mxcached (see verifier.h).
 *
 * Owns: the probe engine, a table of running probes (slots; a slot's index and generation make
 * the engine token, so a stale or foreign token is recognised), the index of running probes by
 * address (strmap address -> slot) with each probe's waiters, the client buckets (a dense array
 * indexed by a strmap client -> position, swept round-robin for idle ones), one state per route
 * (rate bucket, circuit breaker) and one per configured domain (accept-all state, schedule).
 * Trusts the configuration (checked once here) and its caller's addresses (validated before;
 * the engine checks again); client keys and probe texts are only ever logged escaped. Every
 * limit is a conf field or a constant below or in verifier.h; time is the caller's now_ms. */
#include "verifier.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "log.h"
#include "mxc_err.h"
#include "strmap.h"

#define VERIFIER_CLIENT_PERIOD_MS 60000 /* client_probes_per_minute is per this */
#define VERIFIER_ROUTE_PERIOD_MS 1000   /* probes_per_second is per this */
#define VERIFIER_SWEEP_ASK 8            /* client buckets looked at per question */
#define VERIFIER_SWEEP_TICK 4096        /* client buckets looked at per tick */
#define VERIFIER_SWEEP_MS 1000          /* ticks while client buckets exist */
#define VERIFIER_WAITERS_INIT 4         /* waiters allocated first; doubled up to WAITERS_MAX */
#define VERIFIER_CLIENTS_INIT 64        /* client buckets allocated first; doubled up to CLIENTS_MAX */
#define VERIFIER_RUNS_INIT 64           /* slots allocated first; doubled up to max_probes */
#define VERIFIER_DOMAIN_MAX 253         /* bytes of a domain name */
#define VERIFIER_NAME_MAX 64            /* bytes of a route's name kept for logs */
#define VERIFIER_PROBE_PREFIX "mxcache-probe-" /* local part of accept-all probes, + 16 hex */
#define VERIFIER_PROBE_RANDOM 8         /* random bytes in that local part */
#define NO_SLOT UINT32_MAX

enum run_kind {
    RUN_ASK,        /* a question or a refresh: indexed by address, joined by later questions */
    RUN_NOW,        /* an operator's probe: one waiter, a transcript, never joined */
    RUN_ACCEPT_ALL, /* internal: its result goes to a domain's state, never out */
};

struct run {
    bool used;
    enum run_kind kind;
    bool background;      /* started by verifier_refresh */
    bool indexed;         /* in v->by_address (RUN_ASK, once submitted) */
    uint32_t gen;         /* bumped at each release: a token of an earlier use is stale */
    uint32_t next_free;
    unsigned route;
    size_t domain;        /* RUN_ACCEPT_ALL: index in v->domains */
    char address[VERIFIER_ADDR_MAX];
    uint64_t *waiters;
    size_t nwaiters, capwaiters;
};

/* A token bucket in integer units: a token is `period` units, refilled at `rate` units per ms,
 * so that rate tokens per period come back exactly, without fractions. */
struct bucket {
    uint64_t level;
    uint64_t last_ms;
};

struct client {
    char *key;
    size_t keylen;
    struct bucket b;
};

struct vroute {
    char name[VERIFIER_NAME_MAX + 1];
    struct verifier_route_stats stats; /* read by other threads: atomics only */
    unsigned pps;         /* probes_per_second, 0: no limit */
    struct bucket rate;
    unsigned failures;    /* consecutive PROBE_FAILED */
    bool open;
    bool trial_running;
    uint64_t trial_token; /* of the trial probe: no other result is taken for it */
    uint64_t open_until;
};

struct vdomain {
    char name[VERIFIER_DOMAIN_MAX + 1]; /* lowercase */
    unsigned route;
    bool wildcard;        /* ".example.com": nothing to probe */
    bool accept_all;
    bool probing;         /* an accept-all probe runs */
    uint64_t next_ms;     /* the next scheduled accept-all probe */
};

struct verifier {
    struct probe_engine *eng;
    struct vroute *routes;
    size_t nroutes;
    unsigned max_probes, client_ppm, circuit_failures;
    uint64_t circuit_open_ms, acceptall_interval_ms;

    struct run *runs;     /* slots; a realloc moves them: never keep a pointer across one */
    uint32_t nruns, capruns, free_head;
    unsigned running;
    strmap *by_address;   /* RUN_ASK address -> slot */

    struct client *clients;
    size_t nclients, capclients, sweep;
    strmap *by_client;    /* client key -> position in clients */
    bool clients_full;    /* logged once per episode */

    struct vdomain *domains;
    size_t ndomains;
    strmap *by_domain;    /* lowercase domain -> index */
    bool scheduled;       /* the accept-all schedule started (first tick) */
    uint64_t random_state; /* fallback when getrandom fails */

    struct verifier_stats st;
};

/* ---- small helpers ---- */

/* bump - adds 1 to a figure other threads read; this thread is its only writer. */
static void bump(_Atomic uint64_t *x)
{
    atomic_store_explicit(x, atomic_load_explicit(x, memory_order_relaxed) + 1, memory_order_relaxed);
}

static void set_open(struct vroute *r, bool open)
{
    r->open = open;
    atomic_store_explicit(&r->stats.circuit_open, open ? 1u : 0u, memory_order_relaxed);
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static void bucket_init(struct bucket *b, uint64_t rate, uint64_t period, uint64_t now)
{
    b->level = rate * period;
    b->last_ms = now;
}

/* bucket_refill - the bucket as of now. Robustness: a clock that goes back refills nothing. */
static void bucket_refill(struct bucket *b, uint64_t rate, uint64_t period, uint64_t now)
{
    uint64_t cap = rate * period;

    if (now <= b->last_ms)
        return;
    if (now - b->last_ms >= period)
        b->level = cap;
    else if ((b->level += rate * (now - b->last_ms)) > cap)
        b->level = cap;
    b->last_ms = now;
}

static bool bucket_has(const struct bucket *b, uint64_t period)
{
    return b->level >= period;
}

/* lower - domain in lowercase into out; false when it is empty or too long. */
static bool lower(const char *domain, char *out)
{
    size_t n = domain ? strlen(domain) : 0;

    if (n == 0 || n > VERIFIER_DOMAIN_MAX)
        return false;
    for (size_t i = 0; i <= n; i++)
        out[i] = (char)tolower((unsigned char)domain[i]);
    return true;
}

static bool domain_ok(const char *d)
{
    size_t n = strlen(d);

    if (n == 0 || n > VERIFIER_DOMAIN_MAX || d[n - 1] == '.' || (d[0] == '.' && n == 1))
        return false;
    for (const char *c = d; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '-' && *c != '.' && *c != '_')
            return false;
    return true;
}

static struct vdomain *domain_find(const struct verifier *v, const char *domain)
{
    char low[VERIFIER_DOMAIN_MAX + 1];
    uint64_t i;

    if (!lower(domain, low) || !strmap_get(v->by_domain, low, strlen(low), &i))
        return NULL;
    return &v->domains[i];
}

/* address_ok - an address the coordinator can hold; the engine checks its bytes. */
static bool address_ok(const char *address)
{
    size_t n = address ? strnlen(address, VERIFIER_ADDR_MAX) : 0;
    return n > 0 && n < VERIFIER_ADDR_MAX;
}

/* domain_of - the domain given, or the address's part after its last '@'. */
static const char *domain_of(const char *domain, const char *address)
{
    const char *at;

    if (domain)
        return domain;
    at = strrchr(address, '@');
    return at ? at + 1 : NULL;
}

/* ---- running probes ---- */

static uint64_t token_of(const struct verifier *v, uint32_t slot)
{
    return (uint64_t)v->runs[slot].gen << 32 | slot;
}

/* run_alloc - a free slot, growing the table up to max_probes; NO_SLOT when none. */
static uint32_t run_alloc(struct verifier *v)
{
    uint32_t i;

    if (v->free_head != NO_SLOT) {
        i = v->free_head;
        v->free_head = v->runs[i].next_free;
    } else {
        if (v->nruns == v->capruns) {
            uint32_t cap = v->capruns ? v->capruns * 2 : VERIFIER_RUNS_INIT;
            struct run *r;
            if (cap > v->max_probes)
                cap = v->max_probes;
            if (cap <= v->capruns || !(r = realloc(v->runs, (size_t)cap * sizeof *r)))
                return NO_SLOT;
            memset(r + v->capruns, 0, (size_t)(cap - v->capruns) * sizeof *r);
            v->runs = r;
            v->capruns = cap;
        }
        i = v->nruns++;
    }
    struct run *r = &v->runs[i];
    uint32_t gen = r->gen;
    memset(r, 0, sizeof *r);
    r->gen = gen;
    r->used = true;
    return i;
}

/* run_release - frees slot i (its waiters too, unless they were moved out). */
static void run_release(struct verifier *v, uint32_t i)
{
    struct run *r = &v->runs[i];

    if (r->indexed)
        strmap_del(v->by_address, r->address, strlen(r->address));
    r->indexed = false;
    free(r->waiters);
    r->waiters = NULL;
    r->nwaiters = r->capwaiters = 0;
    r->used = false;
    r->gen++;
    r->next_free = v->free_head;
    v->free_head = i;
}

static int run_add_waiter(struct run *r, uint64_t waiter)
{
    if (r->nwaiters == r->capwaiters) {
        size_t cap = r->capwaiters ? r->capwaiters * 2 : VERIFIER_WAITERS_INIT;
        uint64_t *w;
        if (cap > VERIFIER_WAITERS_MAX)
            cap = VERIFIER_WAITERS_MAX;
        if (cap <= r->capwaiters || !(w = realloc(r->waiters, cap * sizeof *w)))
            return MXC_ENOMEM;
        r->waiters = w;
        r->capwaiters = cap;
    }
    r->waiters[r->nwaiters++] = waiter;
    return MXC_OK;
}

/* gate - whether route may get a new probe now: VERIFIER_STARTED when it may (*trial: as the
 * trial of its open circuit), else CIRCUIT_OPEN or BUSY. */
static enum verifier_ask gate(const struct verifier *v, const struct vroute *r, uint64_t now, bool *trial)
{
    *trial = false;
    if (r->open) {
        if (r->trial_running || now < r->open_until)
            return VERIFIER_CIRCUIT_OPEN;
        *trial = true;
    }
    if (v->running >= v->max_probes)
        return VERIFIER_BUSY;
    return VERIFIER_STARTED;
}

/* start - submits a probe of address on route. Returns STARTED (the slot in *slot), BUSY (no
 * slot, no memory, the engine full) or INVALID (the engine refused the address). */
static enum verifier_ask start(struct verifier *v, unsigned route, enum run_kind kind, const char *address,
                               bool waiter_given, uint64_t waiter, bool trial, uint32_t *slot)
{
    uint32_t i = run_alloc(v);
    struct run *r;
    int rc;

    if (i == NO_SLOT)
        return VERIFIER_BUSY;
    r = &v->runs[i];
    r->kind = kind;
    r->route = route;
    snprintf(r->address, sizeof r->address, "%s", address);
    if ((waiter_given && run_add_waiter(r, waiter) != MXC_OK) ||
        (kind == RUN_ASK && !(r->indexed = strmap_put(v->by_address, address, strlen(address), i) == MXC_OK))) {
        run_release(v, i);
        return VERIFIER_BUSY;
    }
    rc = probe_submit(v->eng, route, address, token_of(v, i), kind == RUN_NOW);
    if (rc != MXC_OK) {
        run_release(v, i);
        if (rc == MXC_EINVAL) {
            char esc[LOG_FIELD_MAX];
            log_msg(LOG_WARNING, "BADINPUT", "what=probe_address route=%s address=\"%s\"",
                    v->routes[route].name, log_str(address, esc, sizeof esc));
            return VERIFIER_INVALID;
        }
        return VERIFIER_BUSY;
    }
    v->running++;
    bump(&v->routes[route].stats.started);
    if (trial) {
        v->routes[route].trial_running = true;
        v->routes[route].trial_token = token_of(v, i);
        log_msg(LOG_INFO, "CIRCUIT", "route=%s state=trial", v->routes[route].name);
    }
    *slot = i;
    return VERIFIER_STARTED;
}

/* ---- circuit breaker ---- */

static void circuit_result(struct verifier *v, unsigned route, const struct probe_result *res, uint64_t now)
{
    struct vroute *r = &v->routes[route];
    bool trial = r->trial_running && r->trial_token == res->token;
    char esc[LOG_FIELD_MAX];

    if (res->outcome != PROBE_FAILED) {
        r->failures = 0;
        if (r->open) {
            set_open(r, false);
            r->trial_running = false;
            v->st.circuits_open--;
            log_msg(LOG_NOTICE, "CIRCUIT", "route=%s state=closed backend=%s code=%u", r->name,
                    log_str(res->backend, esc, sizeof esc), res->reply.code);
        }
        return;
    }
    if (r->open) {
        /* A failure of a probe that started before the circuit opened says nothing new. */
        if (trial) {
            r->trial_running = false;
            r->open_until = add_sat(now, v->circuit_open_ms);
            log_msg(LOG_WARNING, "CIRCUIT", "route=%s state=open reason=trial_failed detail=\"%s\"",
                    r->name, log_str(res->detail, esc, sizeof esc));
        }
        return;
    }
    if (++r->failures >= v->circuit_failures) {
        set_open(r, true);
        r->trial_running = false;
        r->open_until = add_sat(now, v->circuit_open_ms);
        v->st.circuits_open++;
        log_msg(LOG_WARNING, "CIRCUIT", "route=%s state=open failures=%u open_ms=%llu detail=\"%s\"",
                r->name, r->failures, (unsigned long long)v->circuit_open_ms,
                log_str(res->detail, esc, sizeof esc));
    }
}

/* ---- accept-all ---- */

static void random_hex(struct verifier *v, char *out)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char rnd[VERIFIER_PROBE_RANDOM];

    if (getrandom(rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd) {
        /* XXX: without the kernel's randomness (very early boot) the name is only unusual, not
         * unguessable; a backend would have to special-case it to fool us. splitmix64. */
        uint64_t z = (v->random_state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        memcpy(rnd, &z, sizeof rnd);
    }
    for (size_t i = 0; i < sizeof rnd; i++) {
        out[2 * i] = hex[rnd[i] >> 4];
        out[2 * i + 1] = hex[rnd[i] & 15];
    }
    out[2 * sizeof rnd] = '\0';
}

/* acceptall_start - an accept-all probe of domain d; true when one started or runs already. */
static bool acceptall_start(struct verifier *v, size_t d, uint64_t now)
{
    struct vdomain *dom = &v->domains[d];
    char hex[2 * VERIFIER_PROBE_RANDOM + 1], address[VERIFIER_ADDR_MAX];
    uint32_t slot;
    bool trial;

    if (dom->probing)
        return true;
    if (dom->wildcard || gate(v, &v->routes[dom->route], now, &trial) != VERIFIER_STARTED)
        return false;
    random_hex(v, hex);
    if ((size_t)snprintf(address, sizeof address, "%s%s@%s", VERIFIER_PROBE_PREFIX, hex, dom->name) >=
        sizeof address)
        return false;
    if (start(v, dom->route, RUN_ACCEPT_ALL, address, false, 0, trial, &slot) != VERIFIER_STARTED)
        return false;
    v->runs[slot].domain = d;
    dom->probing = true;
    v->st.acceptall_probes++;
    return true;
}

static void acceptall_result(struct verifier *v, const struct run *run, const struct probe_result *res)
{
    struct vdomain *dom = &v->domains[run->domain];
    char esc[LOG_FIELD_MAX], text[LOG_FIELD_MAX];

    dom->probing = false;
    if (res->outcome == PROBE_ACCEPTED && !dom->accept_all) {
        dom->accept_all = true;
        v->st.domains_accept_all++;
        log_msg(LOG_WARNING, "ACCEPT_ALL", "domain=%s route=%s state=on backend=%s probe=%s code=%u "
                "text=\"%s\" note=\"verification says nothing for this domain\"", dom->name,
                v->routes[run->route].name, log_str(res->backend, esc, sizeof esc), run->address,
                res->reply.code, log_str(res->reply.text, text, sizeof text));
    } else if (res->outcome == PROBE_REJECTED && dom->accept_all) {
        dom->accept_all = false;
        v->st.domains_accept_all--;
        log_msg(LOG_NOTICE, "ACCEPT_ALL", "domain=%s route=%s state=off backend=%s code=%u", dom->name,
                v->routes[run->route].name, log_str(res->backend, esc, sizeof esc), res->reply.code);
    } else if (res->outcome == PROBE_TEMPFAIL || res->outcome == PROBE_FAILED) {
        log_msg(LOG_INFO, "ACCEPT_ALL", "domain=%s route=%s state=%s result=unknown code=%u detail=\"%s\"",
                dom->name, v->routes[run->route].name, dom->accept_all ? "on" : "off", res->reply.code,
                log_str(res->detail, esc, sizeof esc));
    }
}

/* ---- client buckets ---- */

static void client_remove(struct verifier *v, size_t i)
{
    struct client *c = &v->clients[i];

    strmap_del(v->by_client, c->key, c->keylen);
    free(c->key);
    if (i != v->nclients - 1) {
        *c = v->clients[v->nclients - 1];
        strmap_put(v->by_client, c->key, c->keylen, i); /* replaces: needs no memory */
    }
    v->nclients--;
}

/* clients_sweep - looks at up to n buckets from the cursor and drops those idle for a period:
 * such a bucket is full again, the same as none. */
static void clients_sweep(struct verifier *v, size_t n, uint64_t now)
{
    for (; n > 0 && v->nclients > 0; n--) {
        if (v->sweep >= v->nclients)
            v->sweep = 0;
        if (now >= v->clients[v->sweep].b.last_ms &&
            now - v->clients[v->sweep].b.last_ms >= VERIFIER_CLIENT_PERIOD_MS)
            client_remove(v, v->sweep); /* the last one moved here: look at it next */
        else
            v->sweep++;
    }
    /* Hysteresis: a table at its limit would otherwise log full/ok at every bucket swept. */
    if (v->clients_full && v->nclients < VERIFIER_CLIENTS_MAX / 10 * 9) {
        v->clients_full = false;
        log_msg(LOG_NOTICE, "CLIENT_TABLE", "state=ok clients=%zu", v->nclients);
    }
}

/* client_get - the bucket of key, created full; NULL when the table is full or out of memory. */
static struct client *client_get(struct verifier *v, const char *key, uint64_t now)
{
    size_t len = strnlen(key, VERIFIER_CLIENT_MAX - 1);
    uint64_t i;
    struct client *c;

    if (strmap_get(v->by_client, key, len, &i)) {
        c = &v->clients[i];
        bucket_refill(&c->b, v->client_ppm, VERIFIER_CLIENT_PERIOD_MS, now);
        return c;
    }
    if (v->nclients >= VERIFIER_CLIENTS_MAX) {
        if (!v->clients_full) {
            v->clients_full = true;
            log_msg(LOG_WARNING, "CLIENT_TABLE", "state=full clients=%zu note=\"new clients get no probes\"",
                    v->nclients);
        }
        return NULL;
    }
    if (v->nclients == v->capclients) {
        size_t cap = v->capclients ? v->capclients * 2 : VERIFIER_CLIENTS_INIT;
        if (cap > VERIFIER_CLIENTS_MAX)
            cap = VERIFIER_CLIENTS_MAX;
        if (!(c = realloc(v->clients, cap * sizeof *c)))
            return NULL;
        v->clients = c;
        v->capclients = cap;
    }
    c = &v->clients[v->nclients];
    if (!(c->key = malloc(len + 1)))
        return NULL;
    memcpy(c->key, key, len);
    c->key[len] = '\0';
    c->keylen = len;
    if (strmap_put(v->by_client, c->key, len, v->nclients) != MXC_OK) {
        free(c->key);
        return NULL;
    }
    bucket_init(&c->b, v->client_ppm, VERIFIER_CLIENT_PERIOD_MS, now);
    v->nclients++;
    return c;
}

/* ---- create / destroy ---- */

static int conf_check(const struct verifier_conf *c, char *err, size_t errlen)
{
    if (!c || (c->nroutes > 0 && !c->routes)) {
        snprintf(err, errlen, "verifier: no configuration or routes");
        return MXC_EINVAL;
    }
    if (c->max_probes < 1 || c->max_probes > VERIFIER_PROBES_MAX) {
        snprintf(err, errlen, "verifier: max_probes %u (1 to %d)", c->max_probes, VERIFIER_PROBES_MAX);
        return MXC_EINVAL;
    }
    if (c->client_probes_per_minute > VERIFIER_RATE_MAX) {
        snprintf(err, errlen, "verifier: client_probes_per_minute above %d", VERIFIER_RATE_MAX);
        return MXC_EINVAL;
    }
    if (c->circuit_failures < 1) {
        snprintf(err, errlen, "verifier: circuit_failures must be at least 1");
        return MXC_EINVAL;
    }
    if (c->circuit_open_ms > VERIFIER_MS_MAX || c->acceptall_interval_ms > VERIFIER_MS_MAX) {
        snprintf(err, errlen, "verifier: circuit_open_ms or acceptall_interval_ms above %llu ms",
                 (unsigned long long)VERIFIER_MS_MAX);
        return MXC_EINVAL;
    }
    for (size_t i = 0; i < c->nroutes; i++) {
        const struct verifier_route *r = &c->routes[i];
        if (r->ndomains > VERIFIER_DOMAINS_MAX || r->probes_per_second > VERIFIER_RATE_MAX) {
            snprintf(err, errlen, "verifier: route %zu: at most %d domains and %d probes per second", i,
                     VERIFIER_DOMAINS_MAX, VERIFIER_RATE_MAX);
            return MXC_EINVAL;
        }
        for (size_t k = 0; k < r->ndomains; k++)
            if (!r->domains[k] || !domain_ok(r->domains[k])) {
                snprintf(err, errlen, "verifier: route %zu: bad domain \"%.64s\"", i,
                         r->domains[k] ? r->domains[k] : "");
                return MXC_EINVAL;
            }
    }
    return MXC_OK;
}

struct verifier *verifier_create(const struct verifier_conf *c, char *err, size_t errlen)
{
    struct verifier *v;
    struct probe_route *pr = NULL;
    size_t ndomains = 0;

    if (conf_check(c, err, errlen) != MXC_OK)
        return NULL;
    if (!(v = calloc(1, sizeof *v)))
        goto nomem;
    v->free_head = NO_SLOT;
    v->max_probes = c->max_probes;
    v->client_ppm = c->client_probes_per_minute;
    v->circuit_failures = c->circuit_failures;
    v->circuit_open_ms = c->circuit_open_ms;
    v->acceptall_interval_ms = c->acceptall_interval_ms;
    v->random_state = (uint64_t)(uintptr_t)v ^ 0x6d78636163686521ull;
    for (size_t i = 0; i < c->nroutes; i++)
        ndomains += c->routes[i].ndomains;
    if (!(v->by_address = strmap_create()) || !(v->by_client = strmap_create()) ||
        !(v->by_domain = strmap_create()))
        goto nomem;
    if (c->nroutes > 0 && (!(v->routes = calloc(c->nroutes, sizeof *v->routes)) ||
                           !(pr = calloc(c->nroutes, sizeof *pr))))
        goto nomem;
    if (ndomains > 0 && !(v->domains = calloc(ndomains, sizeof *v->domains)))
        goto nomem;
    v->nroutes = c->nroutes;
    for (size_t i = 0; i < c->nroutes; i++) {
        const struct verifier_route *in = &c->routes[i];
        struct vroute *r = &v->routes[i];
        if (in->probe.name && *in->probe.name)
            snprintf(r->name, sizeof r->name, "%s", in->probe.name);
        else
            snprintf(r->name, sizeof r->name, "route%zu", i);
        /* Route names are the operator's, but they end up in log lines: keep them one word. */
        for (char *p = r->name; *p; p++)
            if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f || *p == '"')
                *p = '?';
        r->pps = in->probes_per_second;
        histo_init(&r->stats.duration, &histo_dialogue_ms);
        bucket_init(&r->rate, r->pps, VERIFIER_ROUTE_PERIOD_MS, 0);
        pr[i] = in->probe;
        for (size_t k = 0; k < in->ndomains; k++) {
            struct vdomain *d = &v->domains[v->ndomains];
            uint64_t other;
            lower(in->domains[k], d->name);
            if (strmap_get(v->by_domain, d->name, strlen(d->name), &other)) {
                snprintf(err, errlen, "verifier: domain %s is in routes %u and %zu", d->name,
                         v->domains[other].route, i);
                goto fail;
            }
            if (strmap_put(v->by_domain, d->name, strlen(d->name), v->ndomains) != MXC_OK)
                goto nomem;
            d->route = (unsigned)i;
            d->wildcard = d->name[0] == '.';
            v->ndomains++;
        }
    }
    struct probe_options o = {.routes = pr, .nroutes = c->nroutes, .max_queued = c->max_probes};
    if (!(v->eng = probe_engine_create(&o, err, errlen)))
        goto fail;
    free(pr);
    return v;
nomem:
    snprintf(err, errlen, "verifier: out of memory");
fail:
    free(pr);
    verifier_destroy(v);
    return NULL;
}

void verifier_destroy(struct verifier *v)
{
    if (!v)
        return;
    /* The engine first: after it, no thread holds a token of ours. */
    probe_engine_destroy(v->eng);
    for (uint32_t i = 0; i < v->nruns; i++)
        free(v->runs[i].waiters);
    free(v->runs);
    for (size_t i = 0; i < v->nclients; i++)
        free(v->clients[i].key);
    free(v->clients);
    strmap_destroy(v->by_address);
    strmap_destroy(v->by_client);
    strmap_destroy(v->by_domain);
    free(v->domains);
    free(v->routes);
    free(v);
}

int verifier_fd(const struct verifier *v)
{
    return probe_engine_fd(v->eng);
}

/* ---- questions ---- */

enum verifier_ask verifier_ask(struct verifier *v, unsigned route, const char *domain,
                               const char *address, const char *client, uint64_t waiter,
                               uint64_t now_ms)
{
    const struct vdomain *dom;
    struct vroute *r;
    struct client *cl = NULL;
    enum verifier_ask a;
    uint64_t slot64;
    uint32_t slot;
    bool trial;

    v->st.asked++;
    if (route >= v->nroutes || !address_ok(address)) {
        v->st.refused_invalid++;
        return VERIFIER_INVALID;
    }
    r = &v->routes[route];
    if (v->client_ppm > 0)
        clients_sweep(v, VERIFIER_SWEEP_ASK, now_ms);
    if (strmap_get(v->by_address, address, strlen(address), &slot64)) {
        if (run_add_waiter(&v->runs[slot64], waiter) != MXC_OK) {
            v->st.refused_busy++;
            return VERIFIER_BUSY;
        }
        v->st.joined++;
        return VERIFIER_JOINED;
    }
    if ((dom = domain_find(v, domain_of(domain, address))) && dom->accept_all) {
        v->st.refused_accept_all++;
        return VERIFIER_ACCEPT_ALL;
    }
    if ((a = gate(v, r, now_ms, &trial)) != VERIFIER_STARTED) {
        if (a == VERIFIER_CIRCUIT_OPEN)
            v->st.refused_circuit++;
        else
            v->st.refused_busy++;
        return a;
    }
    if (v->client_ppm > 0 &&
        (!(cl = client_get(v, client ? client : "", now_ms)) || !bucket_has(&cl->b, VERIFIER_CLIENT_PERIOD_MS))) {
        v->st.refused_client++;
        return VERIFIER_CLIENT_LIMIT;
    }
    if (r->pps > 0) {
        bucket_refill(&r->rate, r->pps, VERIFIER_ROUTE_PERIOD_MS, now_ms);
        if (!bucket_has(&r->rate, VERIFIER_ROUTE_PERIOD_MS)) {
            v->st.refused_route++;
            return VERIFIER_ROUTE_LIMIT;
        }
    }
    if ((a = start(v, route, RUN_ASK, address, true, waiter, trial, &slot)) != VERIFIER_STARTED) {
        if (a == VERIFIER_INVALID)
            v->st.refused_invalid++;
        else
            v->st.refused_busy++;
        return a;
    }
    /* Tokens are taken only now, so that a refusal further down cost the client nothing. The
     * client pointer is still good: start() does not touch the client table. */
    if (cl)
        cl->b.level -= VERIFIER_CLIENT_PERIOD_MS;
    if (r->pps > 0)
        r->rate.level -= VERIFIER_ROUTE_PERIOD_MS;
    v->st.started++;
    return VERIFIER_STARTED;
}

bool verifier_refresh(struct verifier *v, unsigned route, const char *domain, const char *address,
                      uint64_t now_ms)
{
    const struct vdomain *dom;
    struct vroute *r;
    uint32_t slot;
    bool trial;

    if (route >= v->nroutes || !address_ok(address) || strmap_get(v->by_address, address, strlen(address), NULL))
        return false;
    r = &v->routes[route];
    if ((dom = domain_find(v, domain_of(domain, address))) && dom->accept_all)
        return false;
    if (gate(v, r, now_ms, &trial) != VERIFIER_STARTED)
        return false;
    if (r->pps > 0) {
        bucket_refill(&r->rate, r->pps, VERIFIER_ROUTE_PERIOD_MS, now_ms);
        if (!bucket_has(&r->rate, VERIFIER_ROUTE_PERIOD_MS))
            return false;
    }
    if (start(v, route, RUN_ASK, address, false, 0, trial, &slot) != VERIFIER_STARTED)
        return false;
    v->runs[slot].background = true;
    if (r->pps > 0)
        r->rate.level -= VERIFIER_ROUTE_PERIOD_MS;
    return true;
}

enum verifier_ask verifier_probe_now(struct verifier *v, unsigned route, const char *address,
                                     uint64_t waiter, uint64_t now_ms)
{
    enum verifier_ask a;
    uint32_t slot;
    bool trial;

    if (route >= v->nroutes || !address_ok(address))
        return VERIFIER_INVALID;
    if ((a = gate(v, &v->routes[route], now_ms, &trial)) != VERIFIER_STARTED)
        return a;
    return start(v, route, RUN_NOW, address, true, waiter, trial, &slot);
}

/* ---- results ---- */

int verifier_take(struct verifier *v, struct verifier_done *out, uint64_t now_ms)
{
    for (;;) {
        uint32_t slot, gen;
        struct run *run;

        memset(out, 0, sizeof *out);
        /* Into out->result directly: a result with its transcript is 5 KB, copied once. */
        if (probe_take(v->eng, &out->result) != MXC_OK) {
            memset(&out->result, 0, sizeof out->result);
            return MXC_EAGAIN;
        }
        slot = (uint32_t)(out->result.token & UINT32_MAX);
        gen = (uint32_t)(out->result.token >> 32);
        if (slot >= v->nruns || !v->runs[slot].used || v->runs[slot].gen != gen) {
            log_msg(LOG_ERR, "INTERNAL", "what=probe_token token=%llu note=\"a result nobody waits for\"",
                    (unsigned long long)out->result.token);
            continue;
        }
        run = &v->runs[slot];
        v->running--;
        struct verifier_route_stats *rs = &v->routes[run->route].stats;
        if ((unsigned)out->result.outcome < 4)
            bump(&rs->finished[out->result.outcome]);
        histo_observe(&rs->duration, out->result.duration_ms);
        circuit_result(v, run->route, &out->result, now_ms);
        if (run->kind == RUN_ACCEPT_ALL) {
            acceptall_result(v, run, &out->result);
            run_release(v, slot);
            continue;
        }
        memcpy(out->address, run->address, sizeof out->address);
        out->route = run->route;
        out->background = run->background;
        out->waiters = run->waiters; /* moved */
        out->nwaiters = run->nwaiters;
        run->waiters = NULL;
        run_release(v, slot);
        return MXC_OK;
    }
}

void verifier_done_fini(struct verifier_done *d)
{
    if (!d)
        return;
    free(d->waiters);
    d->waiters = NULL;
    d->nwaiters = 0;
}

/* ---- timer ---- */

void verifier_tick(struct verifier *v, uint64_t now_ms)
{
    if (v->acceptall_interval_ms > 0 && !v->scheduled) {
        /* Spread over one interval, the last domain at a full interval: a restart does not
         * send every domain's probe to the backends at once. */
        size_t n = 0, k = 0;
        for (size_t i = 0; i < v->ndomains; i++)
            n += !v->domains[i].wildcard;
        for (size_t i = 0; i < v->ndomains; i++)
            if (!v->domains[i].wildcard)
                v->domains[i].next_ms = add_sat(now_ms, v->acceptall_interval_ms * ++k / n);
        v->scheduled = true;
    } else if (v->acceptall_interval_ms > 0) {
        for (size_t i = 0; i < v->ndomains; i++) {
            struct vdomain *d = &v->domains[i];
            uint64_t wait = v->acceptall_interval_ms;
            if (d->wildcard || now_ms < d->next_ms)
                continue;
            if (!acceptall_start(v, i, now_ms) && wait > VERIFIER_ACCEPTALL_RETRY_MS)
                wait = VERIFIER_ACCEPTALL_RETRY_MS;
            d->next_ms = add_sat(now_ms, wait);
        }
    }
    if (v->client_ppm > 0)
        clients_sweep(v, VERIFIER_SWEEP_TICK, now_ms);
}

long verifier_next_ms(const struct verifier *v, uint64_t now_ms)
{
    uint64_t best = UINT64_MAX;

    if (v->acceptall_interval_ms > 0) {
        for (size_t i = 0; i < v->ndomains; i++) {
            const struct vdomain *d = &v->domains[i];
            if (d->wildcard)
                continue;
            if (!v->scheduled)
                return 0;
            uint64_t ms = d->next_ms <= now_ms ? 0 : d->next_ms - now_ms;
            if (ms < best)
                best = ms;
        }
    }
    if (v->nclients > 0 && best > VERIFIER_SWEEP_MS)
        best = VERIFIER_SWEEP_MS;
    if (best == UINT64_MAX)
        return -1;
    return best > LONG_MAX ? LONG_MAX : (long)best;
}

/* ---- accept-all on demand, state, statistics ---- */

bool verifier_check_accept_all(struct verifier *v, unsigned route, const char *domain, uint64_t now_ms)
{
    const struct vdomain *d = domain_find(v, domain);

    if (!d || d->route != route)
        return false;
    return acceptall_start(v, (size_t)(d - v->domains), now_ms);
}

bool verifier_is_accept_all(const struct verifier *v, const char *domain)
{
    const struct vdomain *d = domain_find(v, domain);
    return d && d->accept_all;
}

size_t verifier_nroutes(const struct verifier *v)
{
    return v->nroutes;
}

const char *verifier_route_name(const struct verifier *v, size_t route)
{
    return v->routes[route].name;
}

const struct verifier_route_stats *verifier_route_stats(const struct verifier *v, size_t route)
{
    return &v->routes[route].stats;
}

void verifier_stats(const struct verifier *v, struct verifier_stats *out)
{
    *out = v->st;
    out->running = v->running;
    out->clients = (unsigned)v->nclients;
    probe_engine_stats(v->eng, &out->probe);
}
