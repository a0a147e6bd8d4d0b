/* Recipient verification in mxcached's request loop (see service_int.h): starting the prober
 * for the configured routes, parking the Checks that wait for a probe, writing each probe's result
 * to the cache in a round of its own and answering its waiters, and the answers of Checks whose
 * wait ran out. Runs in the main thread. */
#include "service_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mxc_err.h"
#include "syncer.h"
#include "unsynced.h"
#include "verifier.h"

_Static_assert(CONFIG_ROUTE_HOSTS_MAX <= PROBE_HOSTS_MAX, "a route's hosts must fit a probe route");
_Static_assert(CONFIG_ROUTE_DOMAINS_MAX <= VERIFIER_DOMAINS_MAX, "a route's domains must fit");

/* service_verify_start - the prober for cfg's routes (none: no verification, nothing started). */
int service_verify_start(struct service *svc, const struct config *cfg, char *err, size_t errlen)
{
    struct verifier_route *vr;

    if (cfg->nroutes == 0)
        return MXC_OK;
    if (!(vr = calloc(cfg->nroutes, sizeof *vr)) || !(svc->parked = parked_create())) {
        free(vr);
        snprintf(err, errlen, "out of memory");
        return MXC_ENOMEM;
    }
    for (size_t r = 0; r < cfg->nroutes; r++) {
        const struct config_route *c = &cfg->routes[r];
        struct probe_route *p = &vr[r].probe;
        p->name = c->domains.n ? c->domains.items[0] : "";
        for (size_t h = 0; h < c->hosts.n; h++)
            p->hosts[h] = c->hosts.items[h];
        p->nhosts = c->hosts.n;
        p->helo = c->helo;
        p->mail_from = c->mail_from;
        p->connect_ms = c->connect_timeout;
        p->greeting_ms = c->greeting_timeout;
        p->command_ms = c->command_timeout;
        p->max_sessions = (unsigned)c->max_sessions;
        p->session_probes = (unsigned)c->session_probes;
        p->session_idle_ms = c->session_idle;
        for (size_t d = 0; d < c->domains.n; d++)
            vr[r].domains[d] = c->domains.items[d];
        vr[r].ndomains = c->domains.n;
        vr[r].probes_per_second = (unsigned)c->probes_per_second;
    }
    struct verifier_conf vc = {
        .routes = vr,
        .nroutes = cfg->nroutes,
        .max_probes = (unsigned)cfg->verify_max_probes,
        .client_probes_per_minute = (unsigned)cfg->verify_client_probes_per_minute,
        .circuit_failures = (unsigned)cfg->verify_circuit_failures,
        .circuit_open_ms = cfg->verify_circuit_open,
        .acceptall_interval_ms = cfg->verify_acceptall_interval,
    };
    svc->verifier = verifier_create(&vc, err, errlen);
    free(vr);
    return svc->verifier ? MXC_OK : MXC_EIO;
}

/* answer_parked - sends the reply of a Check that waited for the prober (ident consumed, v
 * freed), once the sync it depends on (its own, or gen) has finished. Inside a round: the
 * handler must have begun one with the current policy. */
static void answer_parked(struct service *svc, struct parked_entry *e, enum handler_verify_end end,
                          const struct verify_answer *a, const struct probe_result *res,
                          uint64_t gen)
{
    struct handler_reply r;
    zmq_msg_t body;
    int rc = e->v->kind == HANDLER_VERIFY_CHECK
                 ? handler_verify_reply(svc->handler, e->v, e->id, end, a, &r)
                 : handler_verify_probe_reply(svc->handler, e->v, e->id, res, a,
                                              end != HANDLER_VERIFY_REFUSED, &r);

    if (rc != MXC_OK) {
        service_drop_reply(svc, &e->ident, NULL);
    } else {
        uint64_t wait = e->dep_gen > gen ? e->dep_gen : gen;
        zmq_msg_init_data(&body, r.buf, r.len, service_free_reply, NULL);
        service_deliver(svc, &e->ident, &body, e->id, wait, wait != 0, e->v->received_us,
                        CTR_KIND_CHECK);
    }
    handler_verify_free(e->v);
}

/* service_verify_park - a Check whose recipient has no cached answer: it waits (at most wait_ms) for the
 * probe the prober runs or starts for it; when no probe may start, it is answered at once.
 * ident is consumed, v taken. */
void service_verify_park(struct service *svc, zmq_msg_t *ident, uint64_t id, uint64_t dep_gen,
                       struct handler_verify *v, uint64_t now, uint64_t wait_ms)
{
    enum handler_verify_end end = HANDLER_VERIFY_REFUSED;
    struct parked_entry e = {.id = id, .dep_gen = dep_gen, .v = v};
    uint64_t token;

    if (v->kind == HANDLER_VERIFY_OPERATOR)
        wait_ms = VERIFY_OPERATOR_WAIT_MS;
    if (v->kind == HANDLER_VERIFY_ACCEPT_ALL_CHECK) {
        if (svc->verifier && verifier_check_accept_all(svc->verifier, v->route, v->domain, now))
            end = HANDLER_VERIFY_ANSWER; /* started */
    } else if (svc->verifier &&
               (token = parked_add(svc->parked, ident, id, dep_gen, now + wait_ms, v))) {
        enum verifier_ask a = v->kind == HANDLER_VERIFY_OPERATOR
                                  ? verifier_probe_now(svc->verifier, v->route, v->address, token, now)
                                  : verifier_ask(svc->verifier, v->route, v->domain, v->address,
                                                 v->client, token, now);
        if (a == VERIFIER_JOINED || a == VERIFIER_STARTED)
            return;
        parked_take(svc->parked, token, &e);
        end = a == VERIFIER_ACCEPT_ALL ? HANDLER_VERIFY_ACCEPT_ALL : HANDLER_VERIFY_REFUSED;
        answer_parked(svc, &e, end, NULL, NULL, 0);
        return;
    }
    zmq_msg_init(&e.ident);
    zmq_msg_move(&e.ident, ident);
    zmq_msg_close(ident);
    answer_parked(svc, &e, end, NULL, NULL, 0);
}

/* rerun_check - a Check parked under verify.before_greylist whose recipient turned out to
 * exist: decided again from its request (verification from the cache now, then greylisting),
 * inside the current round. Its reply into *out; false when it cannot be decided again. */
static bool rerun_check(struct service *svc, const struct handler_verify *v, struct handler_reply *out)
{
    if (handler_rerun(svc->handler, v->request, v->request_len, out) != MXC_OK || !out->buf) {
        handler_verify_free(out->verify);
        return false;
    }
    handler_verify_free(out->verify); /* a refresh cannot be due on a fresh answer */
    out->verify = NULL;
    return true;
}

/* service_verify_results - every finished probe: its result goes into the cache (one round each, synced
 * when it decides something), and each Check that waited for it gets the cache's answer (or,
 * under verify.before_greylist, is decided again when the recipient exists). */
void service_verify_results(struct service *svc)
{
    struct verifier_done d;

    while (verifier_take(svc->verifier, &d, service_mono_ms()) == MXC_OK) {
        struct cfgref *cfg = service_cfg_acquire(svc);
        struct verify_answer a;
        struct parked_entry *e = calloc(d.nwaiters ? d.nwaiters : 1, sizeof *e);
        struct handler_reply *reps = calloc(d.nwaiters ? d.nwaiters : 1, sizeof *reps);
        bool need_sync = false, *rerun = calloc(d.nwaiters ? d.nwaiters : 1, sizeof *rerun);
        uint64_t gen = 0;
        size_t n = 0;

        handler_begin(svc->handler, cfg->pol);
        int rc = handler_verify_result(svc->handler, d.address, &d.result, &a);
        if (rc != MXC_OK)
            memset(&a, 0, sizeof a); /* a miss: the waiters get a temporary answer */
        for (size_t i = 0; e && reps && rerun && i < d.nwaiters; i++) {
            if (!parked_take(svc->parked, d.waiters[i], &e[n]))
                continue;
            svc->cur_dep = 0;
            rerun[n] = e[n].v->request && a.state == VERIFY_POSITIVE && rerun_check(svc, e[n].v, &reps[n]);
            if (rerun[n] && svc->cur_dep > e[n].dep_gen)
                e[n].dep_gen = svc->cur_dep; /* what it read of earlier rounds, not yet durable */
            n++;
        }
        if (handler_commit_nowait(svc->handler, reps, n, &need_sync) != MXC_OK)
            memset(&a, 0, sizeof a);
        if (need_sync) {
            if (syncer_request(svc->syncer, svc->write_gen + 1) == MXC_OK) {
                gen = ++svc->write_gen;
            } else {
                log_msg(LOG_ERR, "STORE", "op=sync error=\"cannot reach the sync thread\"");
                memset(&a, 0, sizeof a);
                handler_fail_replies(svc->handler, reps, n);
            }
        }
        unsynced_end_round(svc->unsynced, gen);
        static const char *const outcome[] = {"accepted", "rejected", "tempfail", "failed"};
        log_msg(LOG_INFO, "PROBE", "recipient=%s result=%s code=%u backend=%s ms=%llu waiters=%zu%s%s",
                d.address, outcome[d.result.outcome], d.result.reply.code, d.result.backend,
                (unsigned long long)d.result.duration_ms, d.nwaiters,
                d.result.detail[0] ? " detail=" : "", d.result.detail);
        for (size_t i = 0; i < n; i++) {
            if (!rerun[i]) {
                answer_parked(svc, &e[i], HANDLER_VERIFY_ANSWER, &a, &d.result, gen);
                continue;
            }
            zmq_msg_t body;
            uint64_t wait = e[i].dep_gen > gen ? e[i].dep_gen : gen;
            zmq_msg_init_data(&body, reps[i].buf, reps[i].len, service_free_reply, NULL);
            service_deliver(svc, &e[i].ident, &body, e[i].id, wait, wait != 0, e[i].v->received_us,
                            CTR_KIND_CHECK);
            handler_verify_free(e[i].v);
        }
        if (!e || !reps || !rerun) { /* out of memory: the waiters time out at their clients */
            for (size_t i = 0; i < d.nwaiters; i++) {
                struct parked_entry x;
                if (parked_take(svc->parked, d.waiters[i], &x)) {
                    service_drop_reply(svc, &x.ident, NULL);
                    handler_verify_free(x.v);
                }
            }
        }
        free(e);
        free(reps);
        free(rerun);
        service_cfgref_release(cfg);
        verifier_done_fini(&d);
    }
}

/* service_verify_mirror - copies the prober's figures into the main thread's counters, where Stats
 * reads them (the prober itself is the main thread's alone). */
void service_verify_mirror(struct service *svc)
{
    struct verifier_stats s;
    struct counters *c = &svc->ctr;

    verifier_stats(svc->verifier, &s);
    ctr_set(c, CTR_VERIFY_ASKED, s.asked);
    ctr_set(c, CTR_VERIFY_JOINED, s.joined);
    ctr_set(c, CTR_VERIFY_STARTED, s.started);
    ctr_set(c, CTR_VERIFY_REFUSED_CLIENT, s.refused_client);
    ctr_set(c, CTR_VERIFY_REFUSED_ROUTE, s.refused_route);
    ctr_set(c, CTR_VERIFY_REFUSED_CIRCUIT, s.refused_circuit);
    ctr_set(c, CTR_VERIFY_REFUSED_BUSY, s.refused_busy);
    ctr_set(c, CTR_VERIFY_REFUSED_ACCEPTALL, s.refused_accept_all);
    ctr_set(c, CTR_VERIFY_REFUSED_INVALID, s.refused_invalid);
    ctr_set(c, CTR_GAUGE_CLIENTS, s.clients);
    ctr_set(c, CTR_VERIFY_ACCEPTALL_PROBES, s.acceptall_probes);
    ctr_set(c, CTR_PROBE_ACCEPTED, s.probe.accepted);
    ctr_set(c, CTR_PROBE_REJECTED, s.probe.rejected);
    ctr_set(c, CTR_PROBE_TEMPFAIL, s.probe.tempfail);
    ctr_set(c, CTR_PROBE_FAILED, s.probe.failed);
    ctr_set(c, CTR_PROBE_SESSIONS, s.probe.sessions_opened);
    ctr_set(c, CTR_PROBE_SESSIONS_REUSED, s.probe.sessions_reused);
    ctr_set(c, CTR_PROBE_CONNECT_FAILURES, s.probe.connect_failures);
    ctr_set(c, CTR_GAUGE_PROBES_RUNNING, s.running);
    ctr_set(c, CTR_GAUGE_CIRCUITS_OPEN, s.circuits_open);
    ctr_set(c, CTR_GAUGE_ACCEPT_ALL, s.domains_accept_all);
}

/* service_verify_expire - the Checks whose verify.wait ran out before their probe: 450 4.1.1. */
void service_verify_expire(struct service *svc, uint64_t now)
{
    struct cfgref *cfg = NULL;
    struct parked_entry e;

    while (parked_expired(svc->parked, now, &e)) {
        if (!cfg) {
            cfg = service_cfg_acquire(svc);
            handler_begin(svc->handler, cfg->pol);
        }
        if (e.v->kind == HANDLER_VERIFY_CHECK)
            ctr_add(&svc->ctr, CTR_VERIFY_TIMED_OUT, 1);
        answer_parked(svc, &e, HANDLER_VERIFY_PENDING, NULL, NULL, 0);
    }
    if (cfg)
        service_cfgref_release(cfg);
}

