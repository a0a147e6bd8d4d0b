/* The probe coordinator of mxcached: which recipient addresses get probed, when, and who waits
 * for each probe. It runs in the main thread on top of the probe engine (probe.h) and knows
 * nothing of the cache (verify.h) or of requests: callers hand it an address and a waiter token
 * and get the probe's result back with every token that waited for it.
 *
 * One probe per address for the whole cluster: asking for an address whose probe runs joins it.
 * Protection, checked before a new probe starts (a joined probe costs nothing):
 *  - per client: at most client_probes_per_minute new probes per client key (the caller's
 *    client network) in any minute (token bucket): dictionary attacks get 4xx without probes;
 *  - per route: at most route_probes_per_second new probes (token bucket), so that a spam wave
 *    never looks like address harvesting to the backend;
 *  - circuit breaker per route: circuit_failures consecutive PROBE_FAILED results (no answer to
 *    RCPT: the backend is unreachable or broken; a 4xx to RCPT is an answer) open the circuit:
 *    new probes are refused at once; after circuit_open_ms one trial probe is let through, and
 *    its answer closes the circuit (a failure keeps it open for another circuit_open_ms); an
 *    answer to a probe started before the circuit opened closes it as well;
 *  - at most max_probes probes unfinished in all (a probe counts until verifier_take).
 * Accept-all detection: for each domain of each route, every acceptall_interval_ms (and on
 * demand), the coordinator probes an address that cannot exist (a random local part); a backend
 * that accepts it marks the domain accept-all until a later such probe is rejected. Those probes
 * are internal: their results are not returned by verifier_take, and never cached. The schedule
 * starts at the first verifier_tick (verifier_next_ms says 0 until then), spread over one
 * interval so that the domains do not all fire at once. Accept-all and operator probes are
 * rare and bypass the route rate limit; every other protection applies to them.
 *
 * Memory is bounded: at most max_probes probes with their waiters (VERIFIER_WAITERS_MAX each),
 * at most VERIFIER_CLIENTS_MAX client buckets (a bucket idle for a minute is full again and is
 * dropped; when the table is full, a new client gets CLIENT_LIMIT: conservative, never a probe
 * more), and the configured domains. Time is the caller's monotonic now_ms everywhere, so the
 * limits can be driven by tests; only the probe engine's own timeouts read the clock.
 *
 * Thread-safety: one thread (the caller of verifier_create) uses it, except the per-route
 * figures (verifier_nroutes, verifier_route_name, verifier_route_stats), which any thread may read
 * while the verifier exists: that thread writes them with relaxed atomics (the route's probes
 * started and finished, their durations, its circuit), the monitoring endpoint reads them. */
#ifndef MXCACHED_VERIFIER_H
#define MXCACHED_VERIFIER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "histo.h"
#include "probe.h"

#define VERIFIER_ADDR_MAX 256        /* a canonical address with its NUL */
#define VERIFIER_CLIENT_MAX 256      /* a client key with its NUL */
#define VERIFIER_DOMAINS_MAX 64      /* domains of one route */
#define VERIFIER_CLIENTS_MAX 100000  /* client buckets kept at once */
#define VERIFIER_WAITERS_MAX 65536   /* waiters of one probe; beyond, a join is refused BUSY */
#define VERIFIER_RATE_MAX 1000000    /* client_probes_per_minute, probes_per_second */
#define VERIFIER_PROBES_MAX 1000000  /* max_probes */
#define VERIFIER_ACCEPTALL_RETRY_MS 60000 /* a due accept-all probe that was refused */
#define VERIFIER_MS_MAX 31536000000ull /* circuit_open_ms, acceptall_interval_ms: a year */

/* A route as the coordinator needs it: the probe engine's settings and the domains it serves
 * (for accept-all probes; choosing the route of an address is the caller's business). Domains
 * are compared without case; a domain may belong to one route only. A wildcard ".example.com"
 * is accepted and never probed for accept-all (XXX: its subdomains are not checked). */
struct verifier_route {
    struct probe_route probe;
    const char *domains[VERIFIER_DOMAINS_MAX];
    size_t ndomains;
    unsigned probes_per_second;      /* new probes to this route's backends; 0: no limit */
};

struct verifier_conf {
    const struct verifier_route *routes; /* copied */
    size_t nroutes;
    unsigned max_probes;             /* unfinished probes in all */
    unsigned client_probes_per_minute; /* 0: no limit */
    unsigned circuit_failures;       /* consecutive failures that open a route's circuit (>= 1) */
    uint64_t circuit_open_ms;
    uint64_t acceptall_interval_ms;  /* 0: only on demand */
};

enum verifier_ask {
    VERIFIER_JOINED,        /* a probe for the address runs: the waiter gets its result */
    VERIFIER_STARTED,       /* a new probe started: the waiter gets its result */
    VERIFIER_CLIENT_LIMIT,  /* refused: the client started too many probes this minute */
    VERIFIER_ROUTE_LIMIT,   /* refused: the route's probe rate is used up */
    VERIFIER_CIRCUIT_OPEN,  /* refused: the route's backends are failing */
    VERIFIER_BUSY,          /* refused: max_probes unfinished */
    VERIFIER_ACCEPT_ALL,    /* refused: the domain's backend accepts any address, a probe
                               would say nothing */
    VERIFIER_INVALID,       /* refused: a bad route index or address (the caller's bug: the
                               address was not validated); answer 4xx */
};

/* A finished probe and who waited for it. */
struct verifier_done {
    char address[VERIFIER_ADDR_MAX];
    unsigned route;
    struct probe_result result;
    uint64_t *waiters;               /* malloc'd; freed by verifier_done_fini */
    size_t nwaiters;
    bool background;                 /* started by verifier_refresh (it may also have waiters
                                        that joined later) */
};

struct verifier_stats {
    uint64_t asked, joined, started, refused_client, refused_route, refused_circuit, refused_busy,
        refused_accept_all, refused_invalid, acceptall_probes;
    unsigned running;                /* probes unfinished */
    unsigned circuits_open;
    unsigned domains_accept_all;
    unsigned clients;                /* client buckets kept */
    struct probe_stats probe;
};

/* One route's probes, every kind (Checks', refreshes, operators', accept-all), written by the
 * verifier's thread only. */
struct verifier_route_stats {
    _Atomic uint64_t started;        /* submitted to the engine */
    _Atomic uint64_t finished[4];    /* results taken, by enum probe_outcome */
    _Atomic unsigned circuit_open;   /* 1 while the route's circuit is open */
    struct histo duration;           /* submit to result, milliseconds (histo_dialogue_ms) */
};

struct verifier;

/* verifier_create - starts the probe engine for the routes. NULL with a message in err. */
struct verifier *verifier_create(const struct verifier_conf *c, char *err, size_t errlen);
void verifier_destroy(struct verifier *v); /* NULL-safe; waiters are dropped, not answered */

/* verifier_fd - readable while finished probes wait for verifier_take (the engine's fd, level-
 * triggered): call verifier_take until MXC_EAGAIN (accept-all results make it readable too). */
int verifier_fd(const struct verifier *v);

/* verifier_ask - a question about address (canonical and validated: see probe_submit) in
 * domain (its domain, one of route's), from client (a key such as "192.0.2.0/24"). On JOINED
 * or STARTED, waiter comes back with the probe's result; otherwise nothing was started and the
 * caller answers at once. now_ms: a monotonic clock in milliseconds. A JOINED question
 * costs no token; refusals are checked in the order ACCEPT_ALL, CIRCUIT_OPEN, BUSY,
 * CLIENT_LIMIT, ROUTE_LIMIT, and a refused question uses up nothing. domain NULL: the part
 * after the address's last '@'. client NULL: "" (one bucket); keys are cut at
 * VERIFIER_CLIENT_MAX - 1 bytes. */
enum verifier_ask verifier_ask(struct verifier *v, unsigned route, const char *domain,
                               const char *address, const char *client, uint64_t waiter,
                               uint64_t now_ms);

/* verifier_refresh - a background probe of address (a cached positive due for refresh), unless
 * one runs already; limits apply but the client limit (a refused refresh is simply tried by a
 * later Check), and none is started for an accept-all domain. Returns true when a probe
 * started. */
bool verifier_refresh(struct verifier *v, unsigned route, const char *domain, const char *address,
                      uint64_t now_ms);

/* verifier_probe_now - an operator's probe of address (mxcachectl verify): always a new probe,
 * with the transcript, not joined with others, not subject to the client limit, refused only
 * when BUSY or the circuit is open (or INVALID). Returns VERIFIER_STARTED or the refusal. */
enum verifier_ask verifier_probe_now(struct verifier *v, unsigned route, const char *address,
                                     uint64_t waiter, uint64_t now_ms);

/* verifier_take - a finished probe into *out (fini it after use; out is zeroed, so safe to fini,
 * on MXC_EAGAIN too). 0, or MXC_EAGAIN when none waits. Results of accept-all probes are
 * consumed here and never returned. Every result updates its route's circuit (now_ms dates
 * an opening). */
int verifier_take(struct verifier *v, struct verifier_done *out, uint64_t now_ms);
void verifier_done_fini(struct verifier_done *d);

/* verifier_tick - starts the accept-all probes that are due (a refused one is retried after
 * VERIFIER_ACCEPTALL_RETRY_MS at most) and drops idle client buckets; call when
 * verifier_next_ms says. */
void verifier_tick(struct verifier *v, uint64_t now_ms);

/* verifier_next_ms - milliseconds until verifier_tick has something to do (-1: nothing). */
long verifier_next_ms(const struct verifier *v, uint64_t now_ms);

/* verifier_check_accept_all - starts an accept-all probe of domain (of route) now (mxcachectl).
 * Returns false when it cannot start (BUSY, circuit open, a domain not configured for route or
 * a wildcard); true too when one runs already for the domain (its result will do). */
bool verifier_check_accept_all(struct verifier *v, unsigned route, const char *domain, uint64_t now_ms);

/* verifier_is_accept_all - whether domain was last found accepting any address. */
bool verifier_is_accept_all(const struct verifier *v, const char *domain);

void verifier_stats(const struct verifier *v, struct verifier_stats *out);

/* verifier_nroutes, verifier_route_name, verifier_route_stats - the routes (in the order of the
 * conf), each route's name (its probe.name, made one printable word, or "routeN") and figures.
 * Any thread (see above); route < verifier_nroutes. */
size_t verifier_nroutes(const struct verifier *v);
const char *verifier_route_name(const struct verifier *v, size_t route);
const struct verifier_route_stats *verifier_route_stats(const struct verifier *v, size_t route);

#endif
