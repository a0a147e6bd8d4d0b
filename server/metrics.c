/* The scrape of mxcached (see metrics.h): the names, types and labels of every family, and
 * where each figure comes from. A figure the Stats request also reports is the same counter
 * (counters.h), so mxcachectl stats and /metrics never disagree about what they both show. Label
 * values come from fixed tables here, from wire.h's names, or from the config (route names),
 * which prom.c escapes. */
#include "metrics.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "counters.h"
#include "httpd.h"
#include "store.h"
#include "verifier.h"
#include "wire.h"

struct metrics {
    struct service *svc;
    struct httpd *httpd;
};

/* In the order of CTR_RULE_WHITELIST .. CTR_RULE_VERIFY_BAD_ADDRESS. */
static const char *const rule_names[] = {
    "whitelist",       "default",         "awl",
    "greylist_new",    "greylist_early",  "greylist_pass",
    "greylist_known",  "verify_positive", "verify_negative",
    "verify_tempfail", "verify_pending",  "verify_refused",
    "verify_accept_all", "verify_bad_address",
};
_Static_assert(sizeof rule_names / sizeof rule_names[0] == CTR_RULES, "a name for every rule");
/* A request type added to the protocol must get its own row, not be counted as "unknown". */
_Static_assert(CTR_REQ_TYPE_BASE + CTR_REQ_TYPES - 1 == MXCACHE__REQUEST__BODY_PING,
               "CTR_REQ_TYPES covers every request body");

/* In the order of enum probe_outcome. */
static const char *const probe_results[] = {"accepted", "rejected", "tempfail", "failed"};

struct labelled {
    const char *value;
    enum counter_id id;
};

/* labelled_family - one counter family with one label, a sample per (value, counter). */
static void labelled_family(struct prom_buf *b, const struct counters_totals *t, const char *name,
                            const char *type, const char *help, const char *label,
                            const struct labelled *rows, size_t n)
{
    prom_family(b, name, type, help);
    for (size_t i = 0; i < n; i++) {
        struct prom_label l = {label, rows[i].value};
        prom_u64(b, name, &l, 1, t->v[rows[i].id]);
    }
}

static void render_requests(struct prom_buf *b, const struct counters_totals *t)
{
    static const char *const outcomes[] = {"ok", "error"};
    static const struct labelled reasons[] = {
        {"malformed", CTR_ERR_MALFORMED},     {"too_large", CTR_ERR_TOO_LARGE},
        {"bad_version", CTR_ERR_VERSION},     {"invalid_argument", CTR_ERR_INVALID},
        {"store", CTR_ERR_STORE_REPLY},       {"internal", CTR_ERR_INTERNAL},
        {"unavailable", CTR_ERR_UNAVAILABLE}, {"bad_framing", CTR_BAD_FRAMES},
    };

    prom_family(b, "mxcache_requests_total", "counter",
                "Requests answered, by request type and whether the answer was an error reply.");
    for (unsigned type = 0; type < CTR_REQ_TYPES; type++) {
        const char *name = type == 0 ? "unknown"
                                     : wire_body_name((Mxcache__Request__BodyCase)(type + CTR_REQ_TYPE_BASE));
        for (int o = 0; o < 2; o++) {
            struct prom_label l[] = {{"type", name}, {"outcome", outcomes[o]}};
            prom_u64(b, "mxcache_requests_total", l, 2, t->requests[type][o]);
        }
    }
    labelled_family(b, t, "mxcache_request_errors_total", "counter",
                    "Error replies, by reason (bad_framing: a message that was not one frame from a DEALER).",
                    "reason", reasons, sizeof reasons / sizeof reasons[0]);
    prom_single(b, "mxcache_requests_timed_out_total", "counter",
           "Checks whose verify.wait ran out before their probe finished (answered 450 4.1.1).",
           t->v[CTR_VERIFY_TIMED_OUT]);
    prom_single(b, "mxcache_replies_dropped_total", "counter",
           "Replies not sent: the client was gone or not reading, or out of memory.",
           t->v[CTR_REPLIES_DROPPED]);
    prom_single(b, "mxcache_replies_held_for_sync_total", "counter",
           "Replies that waited for a WAL sync because they rest on a write not yet durable.",
           t->v[CTR_REPLIES_HELD]);
    prom_family(b, "mxcache_request_duration_seconds", "histogram",
                "From the service reading a request to sending its reply; check: Check and Verify "
                "(main thread, waits for a probe or a sync included), admin: the workers' requests.");
    struct prom_label check = {"type", "check"}, admin = {"type", "admin"};
    prom_histogram(b, "mxcache_request_duration_seconds", &check, 1, &t->req_check);
    prom_histogram(b, "mxcache_request_duration_seconds", &admin, 1, &t->req_admin);
}

static void render_decisions(struct prom_buf *b, const struct counters_totals *t)
{
    static const char *const actions[] = {"dunno", "defer", "reject"};
    static const struct labelled triplets[] = {
        {"new", CTR_GREYLIST_NEW},       {"deferred", CTR_GREYLIST_DEFERRED},
        {"passed", CTR_GREYLIST_PASSED}, {"known", CTR_GREYLIST_KNOWN},
        {"auto_whitelisted", CTR_GREYLIST_AWL}, {"skipped", CTR_GREYLIST_SKIPPED},
    };

    prom_family(b, "mxcache_decisions_total", "counter",
                "Checks decided (explain dry runs excluded), by action and by the rule that decided.");
    for (int a = 0; a < CTR_ACTIONS; a++)
        for (int r = 0; r < CTR_RULES; r++) {
            struct prom_label l[] = {{"action", actions[a]}, {"rule", rule_names[r]}};
            prom_u64(b, "mxcache_decisions_total", l, 2, t->decisions[a][r]);
        }
    labelled_family(b, t, "mxcache_greylist_triplets_total", "counter",
                    "Greylisting outcomes of Checks: new (deferred first attempt), deferred (early "
                    "retry), passed (retry after the delay), known (had passed), auto_whitelisted, "
                    "skipped (greylisting off for the recipient).",
                    "result", triplets, sizeof triplets / sizeof triplets[0]);
    prom_family(b, "mxcache_greylist_delay_seconds", "histogram",
                "For triplets that passed: from their first attempt to the pass, what greylisting "
                "cost mail that was later accepted.");
    prom_histogram(b, "mxcache_greylist_delay_seconds", NULL, 0, &t->greylist_delay);
}

static void render_verify(struct prom_buf *b, const struct counters_totals *t, const struct verifier *v)
{
    static const struct labelled answers[] = {
        {"positive", CTR_VERIFY_CACHE_POSITIVE},
        {"negative", CTR_VERIFY_CACHE_NEGATIVE},
        {"tempfail", CTR_VERIFY_CACHE_TEMPFAIL},
    };
    static const struct labelled refused[] = {
        {"client_limit", CTR_VERIFY_REFUSED_CLIENT}, {"route_limit", CTR_VERIFY_REFUSED_ROUTE},
        {"circuit_open", CTR_VERIFY_REFUSED_CIRCUIT}, {"busy", CTR_VERIFY_REFUSED_BUSY},
        {"accept_all", CTR_VERIFY_REFUSED_ACCEPTALL}, {"invalid", CTR_VERIFY_REFUSED_INVALID},
    };

    labelled_family(b, t, "mxcache_verify_cache_answers_total", "counter",
                    "Checks of a routed recipient answered from the verification cache, by the "
                    "cached state.", "state", answers, sizeof answers / sizeof answers[0]);
    prom_single(b, "mxcache_verify_cache_misses_total", "counter",
           "Checks of a routed recipient with nothing cached: they wait for a probe.",
           t->v[CTR_VERIFY_CACHE_MISSES]);
    prom_single(b, "mxcache_verify_questions_total", "counter",
           "Questions to the prober (Checks that missed the cache).", t->v[CTR_VERIFY_ASKED]);
    prom_single(b, "mxcache_verify_questions_joined_total", "counter",
           "Questions that joined a probe already running for the address.", t->v[CTR_VERIFY_JOINED]);
    labelled_family(b, t, "mxcache_verify_refused_total", "counter",
                    "Questions for which no probe could start, by reason (the Check gets 4xx).",
                    "reason", refused, sizeof refused / sizeof refused[0]);
    prom_single(b, "mxcache_verify_refreshes_total", "counter",
           "Cached positive answers found due for a background refresh.", t->v[CTR_VERIFY_REFRESHES]);

    size_t nroutes = v ? verifier_nroutes(v) : 0;
    /* Without routes these families carry their headers and no sample, so that the alert
     * rules and dashboards that name them find them on every service. */
    prom_family(b, "mxcache_probes_started_total", "counter",
                "SMTP probes started, by route (its first domain): Checks', refreshes, "
                "operators' and accept-all probes.");
    for (size_t r = 0; r < nroutes; r++) {
        struct prom_label l = {"route", verifier_route_name(v, r)};
        prom_u64(b, "mxcache_probes_started_total", &l, 1,
                 atomic_load_explicit(&verifier_route_stats(v, r)->started, memory_order_relaxed));
    }
    prom_family(b, "mxcache_probes_finished_total", "counter",
                "SMTP probes finished, by route and result (accepted: 2xx to RCPT, rejected: "
                "5xx, tempfail: 4xx, failed: no answer to RCPT).");
    for (size_t r = 0; r < nroutes; r++)
        for (int o = 0; o < 4; o++) {
            struct prom_label l[] = {{"route", verifier_route_name(v, r)}, {"result", probe_results[o]}};
            prom_u64(b, "mxcache_probes_finished_total", l, 2,
                     atomic_load_explicit(&verifier_route_stats(v, r)->finished[o], memory_order_relaxed));
        }
    prom_family(b, "mxcache_probe_duration_seconds", "histogram",
                "SMTP probes from start to result, by route.");
    for (size_t r = 0; r < nroutes; r++) {
        struct histo_snapshot s;
        struct prom_label l = {"route", verifier_route_name(v, r)};
        histo_snapshot_init(&s, &histo_dialogue_ms);
        histo_snapshot_add(&s, &verifier_route_stats(v, r)->duration);
        prom_histogram(b, "mxcache_probe_duration_seconds", &l, 1, &s);
    }
    prom_family(b, "mxcache_verify_circuit_open", "gauge",
                "1 while the route's circuit breaker is open (its backends get no probes).");
    for (size_t r = 0; r < nroutes; r++) {
        struct prom_label l = {"route", verifier_route_name(v, r)};
        prom_u64(b, "mxcache_verify_circuit_open", &l, 1,
                 atomic_load_explicit(&verifier_route_stats(v, r)->circuit_open, memory_order_relaxed));
    }
    prom_single(b, "mxcache_probes_in_flight", "gauge", "SMTP probes started and not finished.",
           t->v[CTR_GAUGE_PROBES_RUNNING]);
    prom_single(b, "mxcache_probe_sessions_opened_total", "counter", "SMTP sessions opened to backends.",
           t->v[CTR_PROBE_SESSIONS]);
    prom_single(b, "mxcache_probe_sessions_reused_total", "counter",
           "Probes that ran in a session opened for an earlier probe.", t->v[CTR_PROBE_SESSIONS_REUSED]);
    prom_single(b, "mxcache_probe_connect_failures_total", "counter",
           "Backend hosts that could not be reached or did not greet.", t->v[CTR_PROBE_CONNECT_FAILURES]);
    prom_single(b, "mxcache_verify_accept_all_domains", "gauge",
           "Routed domains whose backend was last found accepting any address.",
           t->v[CTR_GAUGE_ACCEPT_ALL]);
}

static void render_store(struct prom_buf *b, const struct counters_totals *t, store *st)
{
    uint64_t keys[4] = {0}, bytes[4] = {0};

    for (int i = 0; i < 4; i++)
        store_stats(st, (Mxcache__Keyspace)(i + 1), &keys[i], &bytes[i]);
    prom_family(b, "mxcache_store_keys", "gauge", "Keys per keyspace (RocksDB's estimate).");
    for (int i = 0; i < 4; i++) {
        struct prom_label l = {"keyspace", wire_keyspace_name((Mxcache__Keyspace)(i + 1))};
        prom_u64(b, "mxcache_store_keys", &l, 1, keys[i]);
    }
    prom_family(b, "mxcache_store_disk_bytes", "gauge", "Bytes of SST files per keyspace.");
    for (int i = 0; i < 4; i++) {
        struct prom_label l = {"keyspace", wire_keyspace_name((Mxcache__Keyspace)(i + 1))};
        prom_u64(b, "mxcache_store_disk_bytes", &l, 1, bytes[i]);
    }
    prom_family(b, "mxcache_store_commit_duration_seconds", "histogram",
                "Writing one round's batch into the store (with its fsync for admin rounds).");
    prom_histogram(b, "mxcache_store_commit_duration_seconds", NULL, 0, &t->commit);
    prom_family(b, "mxcache_store_wal_sync_duration_seconds", "histogram",
                "One fsync of the write-ahead log by the sync thread.");
    prom_histogram(b, "mxcache_store_wal_sync_duration_seconds", NULL, 0, &t->wal_sync);
    prom_single(b, "mxcache_store_errors_total", "counter", "Store reads, commits and syncs that failed.",
           t->v[CTR_ERR_STORE]);
    prom_single(b, "mxcache_store_writes_total", "counter", "Writes (puts and deletes) committed.",
           t->v[CTR_COMMIT_WRITES]);
}

static void render_security(struct prom_buf *b, const struct counters_totals *t)
{
    static const struct labelled denied[] = {
        {"unknown_key", CTR_AUTH_DENIED_KEY},     {"address", CTR_AUTH_DENIED_ADDRESS},
        {"revoked_key", CTR_AUTH_DENIED_REVOKED}, {"admin_request", CTR_AUTH_DENIED_ADMIN},
    };
    /* One family for every limit, named after its setting, so that one alert covers them. */
    static const struct labelled limits[] = {
        {"max_connections", CTR_LIMIT_CONNECTIONS},
        {"max_connections_per_client", CTR_LIMIT_CONNECTIONS_CLIENT},
        {"max_inflight_per_client", CTR_LIMIT_INFLIGHT_CLIENT},
        {"max_queued", CTR_LIMIT_QUEUED},
        {"max_request_size", CTR_ERR_TOO_LARGE},
        {"list_page_max", CTR_LIMIT_LIST_PAGE},
        {"verify_max_probes", CTR_VERIFY_REFUSED_BUSY},
        {"verify_client_probes_per_minute", CTR_VERIFY_REFUSED_CLIENT},
    };

    prom_single(b, "mxcache_connections_accepted_total", "counter",
                "Client connections accepted (before their handshake).", t->v[CTR_CONNECTIONS]);
    prom_single(b, "mxcache_connections_open", "gauge", "Client connections open now.",
                t->v[CTR_GAUGE_CONNECTIONS]);
    labelled_family(b, t, "mxcache_auth_denied_total", "counter",
                    "Clients refused: unknown_key and address at the handshake (no answer), "
                    "revoked_key for requests of a key a reload removed (no answer), admin_request "
                    "for a client key's admin request (ERROR_DENIED).",
                    "reason", denied, sizeof denied / sizeof denied[0]);
    labelled_family(b, t, "mxcache_limit_hits_total", "counter",
                    "Times a limit was reached, by its setting: a connection refused, a request "
                    "answered ERROR_UNAVAILABLE or ERROR_TOO_LARGE, reading paused (max_queued), a "
                    "list page cut short, a probe refused (the Check gets 4xx).",
                    "limit", limits, sizeof limits / sizeof limits[0]);
}

void metrics_render(struct service *svc, struct prom_buf *b)
{
    struct counters_totals *t = malloc(sizeof *t); /* a few KB: not on the HTTP thread's stack */
    struct prom_label version = {"version", MXCACHE_VERSION};
    char why[128];
    size_t nsets;

    if (!t) {
        b->failed = true;
        return;
    }
    struct counters *const *sets = service_counter_sets(svc, &nsets);
    counters_totals(sets, nsets, t);
    prom_single(b, "mxcache_ready", "gauge", "1 when the service serves requests (see /readyz).",
           service_ready(svc, why, sizeof why) ? 1 : 0);
    prom_family(b, "mxcache_build_info", "gauge", "The running mxcached version, always 1.");
    prom_u64(b, "mxcache_build_info", &version, 1, 1);
    render_requests(b, t);
    render_decisions(b, t);
    render_verify(b, t, service_verifier(svc));
    render_store(b, t, service_store(svc));
    render_security(b, t);
    prom_process(b);
    free(t);
}

static void on_metrics(void *arg, struct prom_buf *b)
{
    struct metrics *m = arg;
    metrics_render(m->svc, b);
}

static bool on_ready(void *arg, char *why, size_t whylen)
{
    struct metrics *m = arg;
    return service_ready(m->svc, why, whylen);
}

struct metrics *metrics_start(const char *listen, struct service *svc, char *err, size_t errlen)
{
    struct metrics *m = calloc(1, sizeof *m);

    if (!m) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    m->svc = svc;
    struct httpd_handlers h = {.arg = m, .metrics = on_metrics, .ready = on_ready};
    if (!(m->httpd = httpd_start(listen, &h, err, errlen))) {
        free(m);
        return NULL;
    }
    return m;
}

unsigned metrics_port(const struct metrics *m)
{
    return httpd_port(m->httpd);
}

void metrics_stop(struct metrics *m)
{
    if (!m)
        return;
    httpd_stop(m->httpd);
    free(m);
}
