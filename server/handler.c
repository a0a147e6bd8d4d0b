/* Request handling of one mxcached worker (see handler.h).
 *
 * Security: every request is hostile until decoded and checked: its size is bounded before it is
 * unpacked, enums are range-checked by wire_request_unpack, and every string field has a length
 * limit below. Replies to bad requests carry the request id when it can be read, so that the
 * client gets the error instead of waiting for its timeout. */
#include "handler.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"
#include "mxc_err.h"
#include "record.h"
#include "wire.h"

/* Limits on the fields of a Check question: Postfix never sends longer values (RFC 5321 paths
 * are 256 bytes, host names 255), so anything longer is an error, not something to truncate. */
#define CHECK_MAX_ADDRESS 64   /* client_address: an IPv6 text form is at most 45 */
#define CHECK_MAX_NAME 255     /* client_name, helo_name, mx_name */
#define CHECK_MAX_PATH 256     /* sender, recipient */
#define CHECK_MAX_TOKEN 64     /* protocol_state, queue_id */
#define ADMIN_MAX_KEY 1024     /* keys, prefixes, cursors of admin requests */
#define SCAN_FACTOR 10         /* a list or flush examines at most this many records (live or
                                  expired) per one it may return or delete, then returns a cursor */
#define LIST_MAX_REPLY_BYTES (4u << 20) /* a list page ends early rather than exceed this */
#define MAX_DEFERRED 16        /* compactions queued on one worker */
#define WL_MAX_TTL_MS (3650ull * 86400000ull) /* ten years: longer is a typo, not a lifetime */
#define EXPLAIN_MAX 4096       /* bytes of a Check's explanation; a longer one is cut */

struct wl_touch {
    char key[WL_KEY_MAX];
    size_t len;
};

struct deferred {
    uint64_t id;
    Mxcache__Keyspace keyspace;
};

struct handler {
    bool durable; /* the round wrote something a reply depends on: commit with fsync */
    bool rerun;   /* handler_rerun: the request was counted when it first came */
    bool error;   /* the current request's reply is an error reply */
    const struct handler_env *env;
    struct counters *ctr;
    store_batch *batch;
    const struct config *cfg;
    const struct greylist *gl;
    const struct wlfile *wf;
    struct verify_conf vconf;
    const uint8_t *cur_msg;  /* the request being handled, for a Check decided again later */
    size_t cur_len;
    uint64_t now_ms;
    /* whitelist keys written in this round, mirrored into memory after the commit */
    struct wl_touch *touched;
    size_t ntouched, touchedcap;
    struct deferred deferred[MAX_DEFERRED];
    size_t ndeferred;
};

struct handler *handler_create(const struct handler_env *env, struct counters *ctr)
{
    struct handler *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->env = env;
    h->ctr = ctr;
    h->batch = store_batch_create(env->st);
    if (!h->batch) {
        free(h);
        return NULL;
    }
    return h;
}

void handler_watch(struct handler *h, store_watch_fn fn, void *arg)
{
    store_batch_watch(h->batch, fn, arg);
}

void handler_destroy(struct handler *h)
{
    if (!h)
        return;
    store_batch_destroy(h->batch);
    free(h->touched);
    free(h);
}

void handler_begin(struct handler *h, const struct policy *pol)
{
    char err[256];

    h->cfg = pol->cfg;
    h->gl = pol->gl;
    h->wf = pol->wf;
    h->vconf = (struct verify_conf){
        .positive_ttl_ms = pol->cfg->verify_positive_ttl,
        .refresh_after_ms = pol->cfg->verify_refresh_after,
        .negative_ttl_ms = pol->cfg->verify_negative_ttl,
        .tempfail_ttl_ms = pol->cfg->verify_tempfail_ttl,
        .reject_5xx = pol->cfg->verify_reject_5xx,
    };
    h->now_ms = store_now_ms(h->env->st);
    h->ntouched = 0;
    h->durable = false;
    /* Robustness: a whitelist change that committed but could not be mirrored must not leave
     * Check deciding on a stale copy until the next restart. */
    if (wl_refresh(h->env->wl, h->env->st, err, sizeof err) != MXC_OK)
        log_msg(LOG_ERR, "WHITELIST", "op=reload error=\"%s\"", err);
}

/* ---- reply building ---- */

static int pack_reply(Mxcache__Reply *rep, uint64_t id, struct handler_reply *out)
{
    rep->version = WIRE_VERSION;
    rep->id = id;
    out->id = id;
    return wire_reply_pack(rep, &out->buf, &out->len);
}

static int error_reply(struct handler *h, uint64_t id, Mxcache__ErrorCode code, const char *msg,
                       struct handler_reply *out)
{
    Mxcache__Reply rep = MXCACHE__REPLY__INIT;
    Mxcache__Error e = MXCACHE__ERROR__INIT;
    static const enum counter_id ctr_of[] = {
        [MXCACHE__ERROR_CODE__ERROR_MALFORMED] = CTR_ERR_MALFORMED,
        [MXCACHE__ERROR_CODE__ERROR_TOO_LARGE] = CTR_ERR_TOO_LARGE,
        [MXCACHE__ERROR_CODE__ERROR_VERSION] = CTR_ERR_VERSION,
        [MXCACHE__ERROR_CODE__ERROR_INVALID_ARGUMENT] = CTR_ERR_INVALID,
        [MXCACHE__ERROR_CODE__ERROR_STORE] = CTR_ERR_STORE_REPLY,
        [MXCACHE__ERROR_CODE__ERROR_UNAVAILABLE] = CTR_ERR_UNAVAILABLE,
        [MXCACHE__ERROR_CODE__ERROR_INTERNAL] = CTR_ERR_INTERNAL,
    };

    if ((size_t)code < sizeof ctr_of / sizeof ctr_of[0] && ctr_of[code])
        ctr_add(h->ctr, ctr_of[code], 1);
    h->error = true;
    e.code = code;
    e.message = (char *)msg;
    rep.body_case = MXCACHE__REPLY__BODY_ERROR;
    rep.error = &e;
    return pack_reply(&rep, id, out);
}

static int reply_store_error(struct handler *h, uint64_t id, const char *what, const char *err,
                             struct handler_reply *out)
{
    char msg[512];
    snprintf(msg, sizeof msg, "%s: store error: %s", what, err);
    log_msg(LOG_ERR, "STORE", "op=%s error=\"%s\"", what, err);
    ctr_add(h->ctr, CTR_ERR_STORE, 1);
    return error_reply(h, id, MXCACHE__ERROR_CODE__ERROR_STORE, msg, out);
}

/* ---- Check ---- */

static bool field_ok(const char *s, size_t max)
{
    return s && strnlen(s, max + 1) <= max;
}

/* no_controls - true when s has no control characters. Security: stored text ends up in admin
 * output and logs; a CR, LF or escape sequence there could forge lines or drive a terminal. */
static bool no_controls(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

/* explain_add - appends a line to a Check's explanation (when it has one), cut when full. */
__attribute__((format(printf, 2, 3))) static void explain_add(char *expl, const char *fmt, ...)
{
    va_list ap;

    if (!expl)
        return;
    size_t used = strnlen(expl, EXPLAIN_MAX);
    if (used + 1 >= EXPLAIN_MAX)
        return;
    va_start(ap, fmt);
    vsnprintf(expl + used, EXPLAIN_MAX - used, fmt, ap);
    va_end(ap);
}

static const enum counter_id greylist_counter[] = {
    [GREYLIST_AWL] = CTR_GREYLIST_AWL,       [GREYLIST_NEW] = CTR_GREYLIST_NEW,
    [GREYLIST_EARLY] = CTR_GREYLIST_DEFERRED, [GREYLIST_PASS] = CTR_GREYLIST_PASSED,
    [GREYLIST_KNOWN] = CTR_GREYLIST_KNOWN,
};
static const enum counter_id greylist_rule_counter[] = {
    [GREYLIST_AWL] = CTR_RULE_AWL,
    [GREYLIST_NEW] = CTR_RULE_GREYLIST_NEW,
    [GREYLIST_EARLY] = CTR_RULE_GREYLIST_EARLY,
    [GREYLIST_PASS] = CTR_RULE_GREYLIST_PASS,
    [GREYLIST_KNOWN] = CTR_RULE_GREYLIST_KNOWN,
};

/* count_decision - one decided Check: its rule (a CTR_RULE_* id), its action, and the pair. */
static void count_decision(struct handler *h, Mxcache__Action action, enum counter_id rule)
{
    unsigned a = action == MXCACHE__ACTION__ACTION_DUNNO   ? 0
                 : action == MXCACHE__ACTION__ACTION_DEFER ? 1
                                                           : 2;
    static const enum counter_id by_action[] = {CTR_DECISION_DUNNO, CTR_DECISION_DEFER,
                                                CTR_DECISION_REJECT};

    if (rule < CTR_RULE_WHITELIST || rule > CTR_RULE_VERIFY_BAD_ADDRESS)
        rule = CTR_RULE_DEFAULT; /* XXX: a path of do_check that set no rule; never seen */
    ctr_add(h->ctr, rule, 1);
    ctr_add(h->ctr, by_action[a], 1);
    ctr_inc(&h->ctr->decisions[a][rule - CTR_RULE_WHITELIST]);
}

/* ---- the decision log ---- */

/* log_decision - the DECISION line of an answered Check, at log.decisions' level: greppable the
 * way Postfix's own lines are, each field escaped (they come from the client). */
static void log_decision(const struct handler *h, uint64_t id, const char *mx, const char *queue_id,
                         const char *client, const char *sender, const char *rcpt,
                         const Mxcache__CheckReply *cr)
{
    static const int prio[] = {[LOG_DECISIONS_OFF] = -1, [LOG_DECISIONS_DEBUG] = LOG_DEBUG,
                               [LOG_DECISIONS_INFO] = LOG_INFO, [LOG_DECISIONS_NOTICE] = LOG_NOTICE};
    int p = prio[h->cfg->log_decisions];
    char m[80], qid[80], c[80], s[LOG_FIELD_MAX], r[LOG_FIELD_MAX], t[LOG_FIELD_MAX], reply[LOG_FIELD_MAX + 32];

    if (p < 0 || !log_enabled(p))
        return;
#define ESC(x, buf) log_escape((x) ? (x) : "", strlen((x) ? (x) : ""), buf, sizeof buf)
    reply[0] = '\0';
    if (cr->action != MXCACHE__ACTION__ACTION_DUNNO)
        snprintf(reply, sizeof reply, " reply=\"%u %s %s\"", cr->smtp_code,
                 cr->enhanced_status ? cr->enhanced_status : "", ESC(cr->text, t));
    log_msg(p, "DECISION", "id=%llu mx=%s queue=%s client=%s sender=<%s> recipient=<%s> action=%s rule=%s%s",
            (unsigned long long)id, ESC(mx, m), ESC(queue_id, qid), ESC(client, c), ESC(sender, s),
            ESC(rcpt, r), wire_action_name(cr->action), cr->rule ? cr->rule : "", reply);
#undef ESC
}

/* ---- verification ---- */

enum { VSTEP_NONE, VSTEP_DECIDED, VSTEP_PARKED };

void handler_verify_free(struct handler_verify *v)
{
    if (!v)
        return;
    free(v->request);
    free(v);
}

/* verify_to_reply - cr from the cache's answer a for address (not a miss): a pass keeps prepend;
 * vr holds the texts cr points at. */
static void verify_to_reply(struct handler *h, const struct verify_answer *a, const char *address,
                            const char *prepend, struct verify_reply *vr, Mxcache__CheckReply *cr)
{
    verify_reply(&h->vconf, a, address, vr);
    cr->fact_age_ms = h->now_ms > a->probed_at_ms ? h->now_ms - a->probed_at_ms : 0;
    if (!vr->reject && !vr->defer) {
        cr->action = MXCACHE__ACTION__ACTION_DUNNO;
        cr->rule = "verify_positive";
        cr->prepend = (char *)prepend;
        return;
    }
    cr->action = vr->reject ? MXCACHE__ACTION__ACTION_REJECT : MXCACHE__ACTION__ACTION_DEFER;
    cr->smtp_code = vr->code;
    cr->enhanced_status = vr->status;
    cr->text = vr->text;
    cr->prepend = "";
    cr->rule = a->state == VERIFY_NEGATIVE ? "verify_negative" : "verify_tempfail";
}

/* verify_defer - cr as a temporary refusal by verification with rule and text. */
static void verify_defer(Mxcache__CheckReply *cr, const char *rule, const char *text)
{
    cr->action = MXCACHE__ACTION__ACTION_DEFER;
    cr->smtp_code = VERIFY_DEFER_CODE;
    cr->enhanced_status = VERIFY_DEFER_STATUS;
    cr->text = (char *)text;
    cr->prepend = "";
    cr->rule = (char *)rule;
}

static enum counter_id verify_rule_counter(const char *rule)
{
    static const struct {
        const char *rule;
        enum counter_id ctr;
    } map[] = {
        {"verify_positive", CTR_RULE_VERIFY_POSITIVE}, {"verify_negative", CTR_RULE_VERIFY_NEGATIVE},
        {"verify_tempfail", CTR_RULE_VERIFY_TEMPFAIL}, {"verify_pending", CTR_RULE_VERIFY_PENDING},
        {"verify_refused", CTR_RULE_VERIFY_REFUSED},   {"verify_acceptall", CTR_RULE_VERIFY_ACCEPTALL},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i].rule, rule) == 0)
            return map[i].ctr;
    return CTR_RULE_VERIFY_BAD_ADDRESS;
}

/* verify_step - the verification of q's recipient after the cheap checks passed (prepend:
 * greylisting's header, "" if none). VSTEP_NONE: it does not apply (off, no route for the
 * domain); VSTEP_DECIDED: cr is the answer (from the cache, or a bad address), and out->verify
 * asks for a refresh when one is due; VSTEP_PARKED: out->verify says which probe the Check waits
 * for. Negative: an MXC_E* code (err filled for a store error). */
static int verify_step(struct handler *h, const Mxcache__CheckRequest *q, const char *prepend,
                       bool rerun, Mxcache__CheckReply *cr, struct verify_reply *vr, char *expl,
                       struct handler_reply *out, char *err, size_t errlen)
{
    const struct config *cfg = h->cfg;
    const char *rcpt = q->recipient ? q->recipient : "";
    char addr[ADDR_MAX_PATH + 1], dom[ADDR_MAX_DOMAIN + 1];
    struct verify_answer a;
    int route, rc;

    if (!cfg->verify_enabled || cfg->nroutes == 0) {
        explain_add(expl, "verify: %s\n", cfg->verify_enabled ? "no routes" : "off (verify.enabled = false)");
        return VSTEP_NONE;
    }
    if (addr_mailbox_canon(rcpt, strlen(rcpt), false, addr, sizeof addr) != MXC_OK) {
        /* Security: nothing that fails the syntax check may reach a probe. It is refused only
         * for a routed domain, and only temporarily: the syntax check may be stricter than the
         * backend (the sender's MTA then gives up and bounces, not us). */
        const char *at = strrchr(rcpt, '@');
        if (!at || addr_domain_canon(at + 1, strlen(at + 1), dom, sizeof dom) != MXC_OK ||
            config_route_for(cfg, dom) < 0) {
            explain_add(expl, "verify: the recipient is no mail address of a routed domain\n");
            return VSTEP_NONE;
        }
        verify_defer(cr, "verify_bad_address", "Recipient address cannot be verified");
        cr->enhanced_status = "4.1.3";
        explain_add(expl, "verify: the recipient of routed domain %s is no valid mail address: "
                    "no probe\n", dom);
        return VSTEP_DECIDED;
    }
    const char *domain = addr_domain_of(addr);
    if ((route = config_route_for(cfg, domain)) < 0) {
        explain_add(expl, "verify: no route for domain %s\n", domain);
        return VSTEP_NONE;
    }
    if ((rc = verify_lookup(h->batch, addr, h->now_ms, &a, err, errlen)) != MXC_OK) {
        ctr_add(h->ctr, CTR_ERR_STORE, 1);
        return rc;
    }
    if (!q->explain && !h->rerun) {
        static const enum counter_id by_state[] = {
            [VERIFY_MISS] = CTR_VERIFY_CACHE_MISSES, [VERIFY_POSITIVE] = CTR_VERIFY_CACHE_POSITIVE,
            [VERIFY_NEGATIVE] = CTR_VERIFY_CACHE_NEGATIVE, [VERIFY_TEMPFAIL] = CTR_VERIFY_CACHE_TEMPFAIL,
        };
        ctr_add(h->ctr, by_state[a.state], 1);
    }
    if (a.state == VERIFY_MISS || a.refresh) {
        struct handler_verify *v = calloc(1, sizeof *v);
        if (!v)
            return MXC_ENOMEM;
        v->park = a.state == VERIFY_MISS;
        v->count = !q->explain;
        v->route = (unsigned)route;
        snprintf(v->address, sizeof v->address, "%s", addr);
        snprintf(v->domain, sizeof v->domain, "%s", domain);
        snprintf(v->prepend, sizeof v->prepend, "%s", prepend);
        snprintf(v->mx, sizeof v->mx, "%s", q->mx_name ? q->mx_name : "");
        snprintf(v->queue_id, sizeof v->queue_id, "%s", q->queue_id ? q->queue_id : "");
        snprintf(v->client_address, sizeof v->client_address, "%s", q->client_address ? q->client_address : "");
        snprintf(v->sender, sizeof v->sender, "%s", q->sender ? q->sender : "");
        if (h->gl)
            greylist_client(h->gl, q, v->client, sizeof v->client);
        else
            snprintf(v->client, sizeof v->client, "%s", q->client_address ? q->client_address : "");
        if (q->explain) {
            explain_add(expl, "verify: %s for %s (route %d, backend %s); a Check would %s\n",
                        v->park ? "no cached answer" : "the positive answer is due for refresh",
                        addr, route, cfg->routes[route].hosts.n ? cfg->routes[route].hosts.items[0] : "",
                        v->park ? "wait for a probe (verify.wait), and get 450 4.1.1 if it takes longer"
                                : "pass and start one background probe");
            handler_verify_free(v);
            if (a.state == VERIFY_MISS) {
                verify_defer(cr, "verify_probe", cfg->verify_pending_text);
                return VSTEP_DECIDED;
            }
        } else {
            out->verify = v;
            if (v->park) {
                if (rerun) {
                    if (!(v->request = malloc(h->cur_len ? h->cur_len : 1))) {
                        handler_verify_free(v);
                        out->verify = NULL;
                        return MXC_ENOMEM;
                    }
                    memcpy(v->request, h->cur_msg, h->cur_len);
                    v->request_len = h->cur_len;
                }
                ctr_add(h->ctr, CTR_VERIFY_WAITED, 1);
                return VSTEP_PARKED;
            }
            ctr_add(h->ctr, CTR_VERIFY_REFRESHES, 1);
        }
    }
    verify_to_reply(h, &a, addr, prepend, vr, cr);
    explain_add(expl, "verify: cached %s answer for %s from %s%s%s\n",
                a.state == VERIFY_POSITIVE ? "positive" : a.state == VERIFY_NEGATIVE ? "negative" : "tempfail",
                addr, a.backend, a.code ? ": " : "", a.code ? a.text : "");
    return VSTEP_DECIDED;
}

int handler_verify_result(struct handler *h, const char *address, const struct probe_result *r,
                          struct verify_answer *a)
{
    char err[256];
    bool decisive = false;
    int rc = verify_record(&h->vconf, h->batch, address, r, h->now_ms, &decisive, err, sizeof err);

    if (rc == MXC_OK)
        rc = verify_lookup(h->batch, address, h->now_ms, a, err, sizeof err);
    if (rc != MXC_OK) {
        log_msg(LOG_ERR, "STORE", "op=verify_record error=\"%s\"", err);
        ctr_add(h->ctr, CTR_ERR_STORE, 1);
        return rc;
    }
    if (decisive)
        h->durable = true;
    return MXC_OK;
}

int handler_verify_reply(struct handler *h, const struct handler_verify *v, uint64_t id,
                         enum handler_verify_end end, const struct verify_answer *a,
                         struct handler_reply *out)
{
    Mxcache__Reply rep = MXCACHE__REPLY__INIT;
    Mxcache__CheckReply cr = MXCACHE__CHECK_REPLY__INIT;
    struct verify_reply vr;

    memset(out, 0, sizeof *out);
    switch (end) {
    case HANDLER_VERIFY_ANSWER:
        if (a->state != VERIFY_MISS) {
            verify_to_reply(h, a, v->address, v->prepend, &vr, &cr);
            break;
        }
        /* A result the cache could not keep (a store error): temporary, like any failure. */
        verify_defer(&cr, "verify_tempfail", VERIFY_TEMPFAIL_TEXT);
        break;
    case HANDLER_VERIFY_PENDING: verify_defer(&cr, "verify_pending", h->cfg->verify_pending_text); break;
    case HANDLER_VERIFY_REFUSED: verify_defer(&cr, "verify_refused", VERIFY_TEMPFAIL_TEXT); break;
    case HANDLER_VERIFY_ACCEPT_ALL:
        cr.action = MXCACHE__ACTION__ACTION_DUNNO;
        cr.rule = "verify_acceptall";
        cr.prepend = (char *)v->prepend;
        break;
    }
    if (v->count) {
        count_decision(h, cr.action, verify_rule_counter(cr.rule));
        log_decision(h, id, v->mx, v->queue_id, v->client_address, v->sender, v->address, &cr);
    }
    ctr_request(h->ctr, ctr_req_type(MXCACHE__REQUEST__BODY_CHECK), false);
    rep.body_case = MXCACHE__REPLY__BODY_CHECK;
    rep.check = &cr;
    return pack_reply(&rep, id, out);
}

/* verify_stop - what do_check returns when verify_step ended the Check (rc: an error, or
 * VSTEP_PARKED: the reply comes later); frees expl. */
static int verify_stop(struct handler *h, uint64_t id, int rc, char *expl, const char *err,
                       struct handler_reply *out)
{
    free(expl);
    if (rc == VSTEP_PARKED) {
        out->id = id;
        return MXC_OK;
    }
    return rc == MXC_ENOMEM ? rc : reply_store_error(h, id, "check", err, out);
}

/* do_check - the policy question: whitelists, then greylisting, then recipient verification (or
 * verification first, verify.before_greylist), then the configured default. A Check waiting for
 * a probe leaves with out->verify and no reply (see handler.h). With q->explain the same
 * decision is made, nothing is written and nothing counted as a decision, no probe is asked,
 * and the reply carries an account of each step. */
static int do_check(struct handler *h, uint64_t id, const Mxcache__CheckRequest *q,
                    struct handler_reply *out)
{
    Mxcache__Reply rep = MXCACHE__REPLY__INIT;
    Mxcache__CheckReply cr = MXCACHE__CHECK_REPLY__INIT;
    const struct config *cfg = h->cfg;
    struct greylist_result gr;
    struct verify_reply vr;
    char matched[WL_KEY_MAX], err[256];
    char *expl = NULL;
    bool count = !q->explain, greylisted = false;
    enum counter_id rule = CTR_COUNT; /* the CTR_RULE_* of the decision */
    int rc;

    if (!field_ok(q->client_address, CHECK_MAX_ADDRESS) || !field_ok(q->client_name, CHECK_MAX_NAME) ||
        !field_ok(q->helo_name, CHECK_MAX_NAME) || !field_ok(q->mx_name, CHECK_MAX_NAME) ||
        !field_ok(q->sender, CHECK_MAX_PATH) || !field_ok(q->recipient, CHECK_MAX_PATH) ||
        !field_ok(q->protocol_state, CHECK_MAX_TOKEN) || !field_ok(q->queue_id, CHECK_MAX_TOKEN))
        return error_reply(h, id, MXCACHE__ERROR_CODE__ERROR_INVALID_ARGUMENT,
                           "check: a field exceeds its length limit", out);
    if (q->explain) {
        ctr_add(h->ctr, CTR_CHECK_EXPLAIN, 1);
        if (!(expl = calloc(1, EXPLAIN_MAX)))
            return MXC_ENOMEM;
    }

    if (wl_match(h->env->wl, q, h->now_ms, matched, sizeof matched)) {
        cr.action = MXCACHE__ACTION__ACTION_DUNNO;
        cr.rule = "whitelist";
        cr.text = matched;
        explain_add(expl, "whitelist: entry %s matches\n", matched);
        rule = CTR_RULE_WHITELIST;
        goto reply;
    }
    if (h->wf && (wlfile_match_client(h->wf, q->client_address, q->client_name, matched, sizeof matched) ||
                  wlfile_match_recipient(h->wf, q->recipient, matched, sizeof matched))) {
        cr.action = MXCACHE__ACTION__ACTION_DUNNO;
        cr.rule = "whitelist";
        cr.text = matched;
        explain_add(expl, "whitelist: the file entry at %s matches\n", matched);
        rule = CTR_RULE_WHITELIST;
        goto reply;
    }
    explain_add(expl, "whitelist: no entry matches\n");

    /* verify.before_greylist: an unknown recipient is refused at once; a known one goes on to
     * greylisting (a Check that waits for a probe is decided again after it). */
    bool verified = false;
    if (cfg->verify_before_greylist) {
        rc = verify_step(h, q, "", true, &cr, &vr, expl, out, err, sizeof err);
        if (rc < 0 || rc == VSTEP_PARKED)
            return verify_stop(h, id, rc, expl, err, out);
        if (rc == VSTEP_DECIDED && cr.action != MXCACHE__ACTION__ACTION_DUNNO) {
            rule = verify_rule_counter(cr.rule);
            goto reply;
        }
        verified = rc == VSTEP_DECIDED;
    }

    if (h->gl) {
        rc = greylist_check(h->gl, h->batch, q, h->now_ms, q->explain, &gr, expl, EXPLAIN_MAX, err,
                            sizeof err);
        if (rc != MXC_OK) {
            free(expl);
            return rc == MXC_ENOMEM ? rc : reply_store_error(h, id, "check", err, out);
        }
        /* A new triplet and a pass change what the next attempt is told: their writes must be
         * on disk before this reply. Refreshes of known triplets and counters need not wait
         * for an fsync (a crash may lose the last of them, never a decision). */
        if (gr.rule == GREYLIST_NEW || gr.rule == GREYLIST_PASS)
            h->durable = out->durable = true;
        if (gr.rule != GREYLIST_SKIPPED) {
            cr.rule = (char *)greylist_rule_name(gr.rule);
            cr.fact_age_ms = gr.fact_age_ms;
            if (gr.defer) {
                cr.action = MXCACHE__ACTION__ACTION_DEFER;
                cr.smtp_code = gr.smtp_code;
                cr.enhanced_status = (char *)gr.status;
                cr.text = gr.text;
            } else {
                cr.action = MXCACHE__ACTION__ACTION_DUNNO;
                cr.prepend = gr.prepend;
            }
            if (count)
                ctr_add(h->ctr, greylist_counter[gr.rule], 1);
            /* What greylisting cost the mail that got through: first attempt to the pass. */
            if (count && gr.rule == GREYLIST_PASS)
                ctr_observe(&h->ctr->greylist_delay, gr.fact_age_ms / 1000);
            if (gr.defer) {
                rule = greylist_rule_counter[gr.rule];
                goto reply;
            }
            greylisted = true; /* passed: verification may still refuse the recipient */
        } else if (count) {
            ctr_add(h->ctr, CTR_GREYLIST_SKIPPED, 1);
        }
    }

    /* Verification comes after the cheap checks: the backend is asked only about mail that
     * survived them. */
    if (!cfg->verify_before_greylist) {
        rc = verify_step(h, q, greylisted ? gr.prepend : "", false, &cr, &vr, expl, out, err, sizeof err);
        if (rc < 0 || rc == VSTEP_PARKED)
            return verify_stop(h, id, rc, expl, err, out);
        verified = rc == VSTEP_DECIDED;
    }
    /* The last check that decided gives the rule: verification after greylisting, or
     * greylisting after a verification that passed. */
    if (verified && (!cfg->verify_before_greylist || !greylisted)) {
        rule = verify_rule_counter(cr.rule);
        goto reply;
    }
    if (greylisted) {
        rule = greylist_rule_counter[gr.rule];
        goto reply;
    }

    static const Mxcache__Action actions[] = {
        [DEFAULT_ACTION_DUNNO] = MXCACHE__ACTION__ACTION_DUNNO,
        [DEFAULT_ACTION_DEFER] = MXCACHE__ACTION__ACTION_DEFER,
        [DEFAULT_ACTION_REJECT] = MXCACHE__ACTION__ACTION_REJECT,
    };
    cr.action = actions[cfg->default_action];
    if (cr.action != MXCACHE__ACTION__ACTION_DUNNO) {
        cr.smtp_code = (uint32_t)cfg->default_code;
        cr.enhanced_status = cfg->default_status;
        cr.text = cfg->default_text;
    }
    cr.rule = "default";
    explain_add(expl, "default: no check decided; policy.default_action is %s\n",
                wire_action_name(cr.action));
    rule = CTR_RULE_DEFAULT;

reply:
    if (count)
        count_decision(h, cr.action, rule);
    if (count)
        log_decision(h, id, q->mx_name, q->queue_id, q->client_address, q->sender, q->recipient, &cr);
    if (expl) {
        if (cr.smtp_code)
            explain_add(expl, "result: %s %u %s %s (rule %s); explain changed nothing",
                        wire_action_name(cr.action), cr.smtp_code, cr.enhanced_status, cr.text,
                        cr.rule);
        else
            explain_add(expl, "result: %s (rule %s); explain changed nothing",
                        wire_action_name(cr.action), cr.rule);
        cr.explanation = expl;
    }
    rep.body_case = MXCACHE__REPLY__BODY_CHECK;
    rep.check = &cr;
    rc = pack_reply(&rep, id, out);
    free(expl);
    return rc;
}

/* ---- admin ---- */

static bool keyspace_ok(Mxcache__Keyspace ks)
{
    return ks >= MXCACHE__KEYSPACE__KEYSPACE_VERIFY && ks <= MXCACHE__KEYSPACE__KEYSPACE_WHITELIST;
}

static int touch_whitelist(struct handler *h, const char *key, size_t len)
{
    if (len >= WL_KEY_MAX)
        return MXC_OK; /* never a key wl_key made; nothing in memory to mirror */
    if (h->ntouched == h->touchedcap) {
        size_t cap = h->touchedcap ? h->touchedcap * 2 : 16;
        struct wl_touch *t = realloc(h->touched, cap * sizeof *t);
        if (!t)
            return MXC_ENOMEM;
        h->touched = t;
        h->touchedcap = cap;
    }
    memcpy(h->touched[h->ntouched].key, key, len);
    h->touched[h->ntouched++].len = len;
    return MXC_OK;
}

static int do_get(struct handler *h, uint64_t id, const Mxcache__GetRequest *q,
                  struct handler_reply *out)
{
    Mxcache__Reply rep = MXCACHE__REPLY__INIT;
    Mxcache__GetReply gr = MXCACHE__GET_REPLY__INIT;
    char *val = NULL, err[256];
    size_t vallen;
    int rc;

    if (!keyspace_ok(q->keyspace) || !field_ok(q->key, ADMIN_MAX_KEY) || !*q->key)
        return error_reply(h, id, MXCACHE__ERROR_CODE__ERROR_INVALID_ARGUMENT,
                           "get: needs a keyspace and a key", out);
    rc = store_batch_get(h->batch, q->keyspace, q->key, strlen(q->key), &val, &vallen, err, sizeof err);
    if (rc != MXC_OK && rc != MXC_ENOENT)
        return reply_store_error(h, id, "get", err, out);
    if (rc == MXC_OK) {
        gr.entry = record_to_entry(q->keyspace, q->key, strlen(q->key), val, vallen);
        free(val);
        gr.found = gr.entry != NULL;
    }
    rep.body_case = MXCACHE__REPLY__BODY_GET;
    rep.get = &gr;
    rc = pack_reply(&rep, id, out);
    record_entry_free(gr.entry);
    return rc;
}

struct list_ctx {
    Mxcache__Keyspace ks;
    uint64_t now_ms;
    const char *domain;         /* filter: keys whose (last) address is in it; "" for any */
    size_t domainlen;
    Mxcache__RecordState state; /* filter: STATE_ANY for any */
    Mxcache__Entry **entries;
    size_t n, limit, examined, max_examine, bytes;
    char *last; /* last key examined (malloc'd), the cursor when the budget ends a page */
    bool more;
    int rc;
};

/* remember_key - keeps a copy of the last key a scan examined, for its cursor. */
static int remember_key(char **last, const char *key, size_t keylen)
{
    char *copy = realloc(*last, keylen + 1);
    if (!copy)
        return MXC_ENOMEM;
    memcpy(copy, key, keylen);
    copy[keylen] = '\0';
    *last = copy;
    return MXC_OK;
}

static bool flush_domain_matches(const char *key, size_t keylen, const char *domain, size_t dlen);

static int list_one(void *arg, const char *key, size_t keylen, const char *val, size_t vallen)
{
    struct list_ctx *lc = arg;

    /* Robustness: expired records and records the filters skip count toward the budget too, so
     * a page never walks an unbounded run of records that compaction has not removed yet or
     * that do not match; it ends early with the last key examined as its cursor. */
    if (lc->n == lc->limit || lc->examined == lc->max_examine || lc->bytes >= LIST_MAX_REPLY_BYTES) {
        lc->more = true;
        return 1;
    }
    lc->examined++;
    if (remember_key(&lc->last, key, keylen) != MXC_OK)
        return lc->rc = MXC_ENOMEM;
    if (!record_is_live(val, vallen, lc->now_ms) ||
        !flush_domain_matches(key, keylen, lc->domain, lc->domainlen))
        return 0;
    if (lc->state != MXCACHE__RECORD_STATE__STATE_ANY && record_state(lc->ks, val, vallen) != lc->state)
        return 0;
    Mxcache__Entry *e = record_to_entry(lc->ks, key, keylen, val, vallen);
    if (!e)
        return 0; /* a value that does not unpack is skipped; compaction removes it */
    lc->bytes += mxcache__entry__get_packed_size(e) + 8;
    lc->entries[lc->n++] = e;
    return 0;
}

/* list_filtered - one page of ks after start_after: keys starting with prefix whose (last)
 * address is in domain ("" for any), records in state (STATE_ANY for any). */
static int list_filtered(struct handler *h, uint64_t id, Mxcache__Keyspace ks, const char *prefix,
                         const char *domain, Mxcache__RecordState state, const char *start_after,
                         uint32_t limit, struct handler_reply *out)
{
    Mxcache__Reply rep = MXCACHE__REPLY__INIT;
    Mxcache__ListReply lr = MXCACHE__LIST_REPLY__INIT;
    struct list_ctx lc = {.ks = ks, .now_ms = h->now_ms, .domain = domain, .domainlen = strlen(domain),
                          .state = state};
    char err[256];
    int rc;

    lc.limit = limit ? limit : (size_t)h->cfg->list_page_size;
    if (lc.limit > (size_t)h->cfg->list_page_max) {
        lc.limit = (size_t)h->cfg->list_page_max;
        ctr_add(h->ctr, CTR_LIMIT_LIST_PAGE, 1);
    }
    lc.max_examine = lc.limit * SCAN_FACTOR;
    lc.entries = calloc(lc.limit, sizeof *lc.entries);
    if (!lc.entries)
        return MXC_ENOMEM;
    rc = store_scan(h->env->st, ks, prefix, strlen(prefix), start_after, strlen(start_after), true,
                    list_one, &lc, err, sizeof err);
    if (rc == MXC_ENOMEM || lc.rc == MXC_ENOMEM) {
        rc = MXC_ENOMEM;
    } else if (rc != MXC_OK) {
        rc = reply_store_error(h, id, "list", err, out);
    } else {
        lr.entries = lc.entries;
        lr.n_entries = lc.n;
        lr.next = (lc.more && lc.last) ? lc.last : "";
        rep.body_case = MXCACHE__REPLY__BODY_LIST;
        rep.list = &lr;
        rc = pack_reply(&rep, id, out);
    }
    for (size_t i = 0; i < lc.n; i++)
        record_entry_free(lc.entries[i]);
    free(lc.entries);
    free(lc.last);
    return rc;
}

/* list_page - one page of ks after start_after, keys starting with prefix. */
static int list_page(struct handler *h, uint64_t id, Mxcache__Keyspace ks, const char *prefix,
                     const char *start_after, uint32_t limit, struct handler_reply *out)
{
    return list_filtered(h, id, ks, prefix, "", MXCACHE__RECORD_STATE__STATE_ANY, start_after, limit, out);
}

static int do_list(struct handler *h, uint64_t id, const Mxcache__ListRequest *q,
                   struct handler_reply *out)
{
    Mxcache__RecordState st = q->state;
    bool verify_state = st == MXCACHE__RECORD_STATE__STATE_POSITIVE ||
                        st == MXCACHE__RECORD_STATE__STATE_NEGATIVE ||
                        st == MXCACHE__RECORD_STATE__STATE_TEMPFAIL;

    if (!keyspace_ok(q->keyspace) || !field_ok(q->prefix, ADMIN_MAX_KEY) ||
        !field_ok(q->start_after, ADMIN_MAX_KEY) || !field_ok(q->domain, ADMIN_MAX_KEY))
        return error_reply(h, id, MXCACHE__ERROR_CODE__ERROR_INVALID_ARGUMENT,
                           "list: needs a keyspace; prefix, domain and cursor at most 1024 bytes", out);
    /* A state the keyspace never holds would scan it all for nothing, page by page. */
    if (st != MXCACHE__RECORD_STATE__STATE_ANY &&
        q->keyspace != (verify_state ? MXCACHE__KEYSPACE__KEYSPACE_VERIFY : MXCACHE__KEYSPACE__KEYSPACE_GREYLIST))
        return error_reply(h, id, MXCACHE__ERROR_CODE__ERROR_INVALID_ARGUMENT,
                           "list: the state filter does not apply to this keyspace", out);
    return list_filtered(h, id, q->keyspace, q->prefix, q->domain, st, q->start_after, q->limit, out);
}

static int delete_reply(struct handler *h, uint64_t id, bool deleted, struct handler_reply *out)
{
    Mxcache__Reply rep = MXCACHE__REPLY__INIT;
    Mxcache__DeleteReply dr = MXCACHE__DELETE_REPLY__INIT;

    (void)h;
    dr.deleted = deleted;
    rep.body_case = MXCACHE__REPLY__BODY_DELETE;
    rep.delete_ = &dr;
    return pack_reply(&rep, id, out);
}

/* delete_key - deletes a live key (through the batch); *deleted says whether there was one. */
static int delete_key(struct handler *h, Mxcache__Keyspace ks, const char *key, bool *deleted,
                      char *err, size_t errlen)
{
    char *val = NULL;
    size_t vallen, keylen = strlen(key);
    int rc = store_batch_get(h->batch, ks, key, keylen, &val, &vallen, err, errlen);

    free(val);
    *deleted = rc == MXC_OK;
    if (rc == MXC_ENOENT)
        return MXC_OK;
    if (rc != MXC_OK)
        return rc;
    h->durable = true;
    if ((rc = store_batch_delete(h->batch, ks, key, keylen)) != MXC_OK)
        return rc;
    if (ks == MXCACHE__KEYSPACE__KEYSPACE_WHITELIST)
        return touch_whitelist(h, key, keylen);
    return MXC_OK;
}

static int do_delete(struct handler *h, uint64_t id, const Mxcache__DeleteRequest *q,
                     struct handler_reply *out)
{
    char err[256];
    bool deleted;
    int rc;

    if (!keyspace_ok(q->keyspace) || !field_ok(q->key, ADMIN_MAX_KEY) || !*q->key)
        return error_reply(h, id, MXCACHE__ERROR_CODE__ERROR_INVALID_ARGUMENT,
                           "delete: needs a keyspace and a key", out);
    rc = delete_key(h, q->keyspace, q->key, &deleted, err, sizeof err);
    if (rc == MXC_ENOMEM)
        return rc;
    if (rc != MXC_OK)
        return reply_store_error(h, id, "delete", err, out);
    return delete_reply(h, id, deleted, out);
}

struct flush_ctx {
    struct handler *h;
    const Mxcache__FlushRequest *q;
    size_t domainlen;
    uint64_t matched, examined, max_match, max_examine;
    char *last;   /* last key examined (malloc'd) */
    bool more;
    int rc;
};

/* flush_domain_matches - whether the key's last address or name is in domain: the key ends in
 * "@domain" or ".domain", or its value after "kind:" is the domain itself. */
static bool flush_domain_matches(const char *key, size_t keylen, const char *domain, size_t dlen)
{
    if (dlen == 0)
        return true;
    if (keylen <= dlen || strncasecmp(key + keylen - dlen, domain, dlen) != 0)
        return false;
    char before = key[keylen - dlen - 1];
    return before == '@' || before == '.' || before == ':';
}

static int flush_one(void *arg, const char *key, size_t keylen, const char *val, size_t vallen)
{
    struct flush_ctx *fc = arg;
    struct handler *h = fc->h;

    if (fc->matched == fc->max_match || fc->examined == fc->max_examine) {
        fc->more = true;
        return 1;
    }
    fc->examined++;
    if (remember_key(&fc->last, key, keylen) != MXC_OK)
        return fc->rc = MXC_ENOMEM;
    if (!record_is_live(val, vallen, h->now_ms) ||
        !flush_domain_matches(key, keylen, fc->q->domain, fc->domainlen))
        return 0;
    if (fc->q->state != MXCACHE__RECORD_STATE__STATE_ANY &&
        record_state(fc->q->keyspace, val, vallen) != fc->q->state)
        return 0;
    fc->matched++;
    if (fc->q->dry_run)
        return 0;
    h->durable = true;
    if (store_batch_delete(h->batch, fc->q->keyspace, key, keylen) != MXC_OK)
        return fc->rc = MXC_EINVAL;
    if (fc->q->keyspace == MXCACHE__KEYSPACE__KEYSPACE_WHITELIST &&
        touch_whitelist(h, key, keylen) != MXC_OK)
        return fc->rc = MXC_ENOMEM;
    return 0;
}

static int do_flush(struct handler *h, uint64_t id, const Mxcache__FlushRequest *q,
                    struct handler_reply *out)
{
    Mxcache__Reply rep = MXCACHE__REPLY__INIT;
    Mxcache__FlushReply fr = MXCACHE__FLUSH_REPLY__INIT;
    struct flush_ctx fc = {.h = h, .q = q};
    char err[256];
    int rc;

    if (!keyspace_ok(q->keyspace) || !field_ok(q->domain, ADMIN_MAX_KEY) ||
        !field_ok(q->start_after, ADMIN_MAX_KEY))
        return error_reply(h, id, MXCACHE__ERROR_CODE__ERROR_INVALID_ARGUMENT,
                           "flush: needs a keyspace; domain and cursor at most 1024 bytes", out);
    fc.domainlen = strlen(q->domain);
    fc.max_match = (uint64_t)h->cfg->flush_batch;
    fc.max_examine = fc.max_match * SCAN_FACTOR;
    /* Robustness: the scan reads the committed store; deletes go to the batch. A flush that
     * raced with a write of this round may miss that one key, as if it had come just after. */
    rc = store_scan(h->env->st, q->keyspace, NULL, 0, q->start_after, strlen(q->start_after), true,
                    flush_one, &fc, err, sizeof err);
    if (rc == MXC_ENOMEM || fc.rc == MXC_ENOMEM) {
        free(fc.last);
        return MXC_ENOMEM;
    }
    if (fc.rc != MXC_OK || rc != MXC_OK) {
        free(fc.last);
        return reply_store_error(h, id, "flush", fc.rc != MXC_OK ? "batch rejected a delete" : err, out);
    }
    fr.matched = fc.matched;
    fr.more = fc.more;
    fr.next = (fc.more && fc.last) ? fc.last : "";
    rep.body_case = MXCACHE__REPLY__BODY_FLUSH;
    rep.flush = &fr;
    rc = pack_reply(&rep, id, out);
    free(fc.last);
    return rc;
}

static int do_ping(struct handler *h, uint64_t id, struct handler_reply *out)
{
    Mxcache__Reply rep = MXCACHE__REPLY__INIT;
    Mxcache__PingReply pr = MXCACHE__PING_REPLY__INIT;

    pr.version = MXCACHE_VERSION;
    pr.uptime_s = (h->now_ms - h->env->started_ms) / 1000;
    rep.body_case = MXCACHE__REPLY__BODY_PING;
    rep.ping = &pr;
    return pack_reply(&rep, id, out);
}

static int do_stats(struct handler *h, uint64_t id, struct handler_reply *out)
{
    Mxcache__Reply rep = MXCACHE__REPLY__INIT;
    Mxcache__StatsReply sr = MXCACHE__STATS_REPLY__INIT;
    Mxcache__KeyspaceStats ks[4], *ksp[4];
    Mxcache__Counter ctrs[CTR_COUNT], *ctrp[CTR_COUNT];
    uint64_t values[CTR_COUNT];

    sr.version = MXCACHE_VERSION;
    sr.uptime_s = (h->now_ms - h->env->started_ms) / 1000;
    sr.workers = h->env->workers;
    for (int i = 0; i < 4; i++) {
        mxcache__keyspace_stats__init(&ks[i]);
        ks[i].keyspace = (Mxcache__Keyspace)(i + 1);
        store_stats(h->env->st, ks[i].keyspace, &ks[i].keys_estimate, &ks[i].disk_bytes);
        ksp[i] = &ks[i];
    }
    sr.keyspaces = ksp;
    sr.n_keyspaces = 4;
    h->env->counters_fn(h->env->counters_arg, values);
    for (int i = 0; i < CTR_COUNT; i++) {
        mxcache__counter__init(&ctrs[i]);
        ctrs[i].name = (char *)counters_name((enum counter_id)i);
        ctrs[i].value = values[i];
        ctrp[i] = &ctrs[i];
    }
    sr.counters = ctrp;
    sr.n_counters = CTR_COUNT;
    rep.body_case = MXCACHE__REPLY__BODY_STATS;
    rep.stats = &sr;
    return pack_reply(&rep, id, out);
}

static int do_whitelist_add(struct handler *h, uint64_t id, const Mxcache__WhitelistAddRequest *q,
                            struct handler_reply *out)
{
    Mxcache__Reply rep = MXCACHE__REPLY__INIT;
    Mxcache__WhitelistAddReply ar = MXCACHE__WHITELIST_ADD_REPLY__INIT;
    Mxcache__WhitelistRecord wr = MXCACHE__WHITELIST_RECORD__INIT;
    Mxcache__Entry e = MXCACHE__ENTRY__INIT;
    char key[WL_KEY_MAX], err[256], msg[320];
    uint8_t *buf;
    size_t len, keylen;
    int rc;

    if (!field_ok(q->value, WL_MAX_VALUE) || !field_ok(q->comment, WL_MAX_COMMENT))
        return error_reply(h, id, MXCACHE__ERROR_CODE__ERROR_INVALID_ARGUMENT,
                           "whitelist add: value or comment too long", out);
    if (!no_controls(q->comment))
        return error_reply(h, id, MXCACHE__ERROR_CODE__ERROR_INVALID_ARGUMENT,
                           "whitelist add: the comment has control characters", out);
    if (q->ttl_ms > WL_MAX_TTL_MS)
        return error_reply(h, id, MXCACHE__ERROR_CODE__ERROR_INVALID_ARGUMENT,
                           "whitelist add: ttl longer than ten years; omit it for an entry that never expires", out);
    if (wl_key(q->kind, q->value, key, sizeof key, err, sizeof err) != MXC_OK) {
        snprintf(msg, sizeof msg, "whitelist add: %s", err);
        return error_reply(h, id, MXCACHE__ERROR_CODE__ERROR_INVALID_ARGUMENT, msg, out);
    }
    keylen = strlen(key);
    wr.kind = q->kind;
    wr.value = strchr(key, ':') + 1;
    wr.comment = q->comment;
    wr.added_at_ms = h->now_ms;
    wr.expires_at_ms = q->ttl_ms ? h->now_ms + q->ttl_ms : 0;
    if ((rc = wire_message_pack(&wr.base, &buf, &len)) != MXC_OK)
        return rc;
    h->durable = true;
    rc = store_batch_put(h->batch, MXCACHE__KEYSPACE__KEYSPACE_WHITELIST, key, keylen, buf, len);
    free(buf);
    if (rc == MXC_OK)
        rc = touch_whitelist(h, key, keylen);
    if (rc != MXC_OK)
        return rc;
    e.keyspace = MXCACHE__KEYSPACE__KEYSPACE_WHITELIST;
    e.key = key;
    e.record_case = MXCACHE__ENTRY__RECORD_WHITELIST;
    e.whitelist = &wr;
    ar.entry = &e;
    rep.body_case = MXCACHE__REPLY__BODY_WHITELIST_ADD;
    rep.whitelist_add = &ar;
    return pack_reply(&rep, id, out);
}

static int do_whitelist_remove(struct handler *h, uint64_t id,
                               const Mxcache__WhitelistRemoveRequest *q, struct handler_reply *out)
{
    char key[WL_KEY_MAX], err[256], msg[320];
    bool deleted;
    int rc;

    if (!field_ok(q->value, WL_MAX_VALUE))
        return error_reply(h, id, MXCACHE__ERROR_CODE__ERROR_INVALID_ARGUMENT,
                           "whitelist remove: value too long", out);
    if (wl_key(q->kind, q->value, key, sizeof key, err, sizeof err) != MXC_OK) {
        snprintf(msg, sizeof msg, "whitelist remove: %s", err);
        return error_reply(h, id, MXCACHE__ERROR_CODE__ERROR_INVALID_ARGUMENT, msg, out);
    }
    rc = delete_key(h, MXCACHE__KEYSPACE__KEYSPACE_WHITELIST, key, &deleted, err, sizeof err);
    if (rc == MXC_ENOMEM)
        return rc;
    if (rc != MXC_OK)
        return reply_store_error(h, id, "whitelist remove", err, out);
    return delete_reply(h, id, deleted, out);
}

static int do_whitelist_list(struct handler *h, uint64_t id, const Mxcache__WhitelistListRequest *q,
                             struct handler_reply *out)
{
    char prefix[32] = "";

    if (!field_ok(q->start_after, ADMIN_MAX_KEY))
        return error_reply(h, id, MXCACHE__ERROR_CODE__ERROR_INVALID_ARGUMENT,
                           "whitelist list: cursor too long", out);
    if (q->kind != MXCACHE__WHITELIST_KIND__WHITELIST_ANY)
        snprintf(prefix, sizeof prefix, "%s:", wire_wlkind_name(q->kind));
    return list_page(h, id, MXCACHE__KEYSPACE__KEYSPACE_WHITELIST, prefix, q->start_after, q->limit, out);
}

/* do_compact - checks the request and queues it; the compaction runs after the round. */
static int do_compact(struct handler *h, uint64_t id, const Mxcache__CompactRequest *q,
                      struct handler_reply *out)
{
    if (q->keyspace != MXCACHE__KEYSPACE__KEYSPACE_UNSPECIFIED && !keyspace_ok(q->keyspace))
        return error_reply(h, id, MXCACHE__ERROR_CODE__ERROR_INVALID_ARGUMENT,
                           "compact: unknown keyspace", out);
    if (h->ndeferred == MAX_DEFERRED)
        return error_reply(h, id, MXCACHE__ERROR_CODE__ERROR_UNAVAILABLE,
                           "compact: too many compactions queued; try again later", out);
    h->deferred[h->ndeferred].id = id;
    h->deferred[h->ndeferred++].keyspace = q->keyspace;
    out->id = id;
    out->deferred = true;
    return MXC_OK;
}

bool handler_has_deferred(const struct handler *h)
{
    return h->ndeferred > 0;
}

int handler_run_deferred(struct handler *h, struct handler_reply *out)
{
    Mxcache__Reply rep = MXCACHE__REPLY__INIT;
    Mxcache__CompactReply cr = MXCACHE__COMPACT_REPLY__INIT;
    struct timespec t0, t1;
    uint64_t keys;
    char err[256];

    memset(out, 0, sizeof *out);
    if (h->ndeferred == 0)
        return MXC_EINVAL;
    struct deferred d = h->deferred[0];
    memmove(h->deferred, h->deferred + 1, --h->ndeferred * sizeof h->deferred[0]);
    store_stats(h->env->st, d.keyspace, &keys, &cr.disk_bytes_before);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (store_compact(h->env->st, d.keyspace, err, sizeof err) != MXC_OK) {
        ctr_request(h->ctr, ctr_req_type(MXCACHE__REQUEST__BODY_COMPACT), true);
        return reply_store_error(h, d.id, "compact", err, out);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    store_stats(h->env->st, d.keyspace, &keys, &cr.disk_bytes_after);
    cr.duration_ms = (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000);
    log_msg(LOG_NOTICE, "COMPACT", "keyspace=%s duration_ms=%llu bytes_before=%llu bytes_after=%llu",
            d.keyspace ? wire_keyspace_name(d.keyspace) : "all",
            (unsigned long long)cr.duration_ms, (unsigned long long)cr.disk_bytes_before,
            (unsigned long long)cr.disk_bytes_after);
    ctr_request(h->ctr, ctr_req_type(MXCACHE__REQUEST__BODY_COMPACT), false);
    rep.body_case = MXCACHE__REPLY__BODY_COMPACT;
    rep.compact = &cr;
    return pack_reply(&rep, d.id, out);
}

/* do_verify - an operator's probe: checked here, run by the service (out->verify parks it). */
static int do_verify(struct handler *h, uint64_t id, const Mxcache__VerifyRequest *q,
                     struct handler_reply *out)
{
    const struct config *cfg = h->cfg;
    const char *addr = q->address ? q->address : "", *dom = q->accept_all_domain ? q->accept_all_domain : "";
    struct handler_verify *v;
    char text[ADDR_MAX_PATH + 128];
    int route;

    if ((addr[0] != '\0') == (dom[0] != '\0'))
        return error_reply(h, id, MXCACHE__ERROR_CODE__ERROR_INVALID_ARGUMENT,
                           "verify: give an address or an accept-all domain", out);
    if (!(v = calloc(1, sizeof *v)))
        return MXC_ENOMEM;
    v->park = true;
    if (addr[0]) {
        v->kind = HANDLER_VERIFY_OPERATOR;
        if (!field_ok(addr, CHECK_MAX_PATH) ||
            addr_mailbox_canon(addr, strlen(addr), false, v->address, sizeof v->address) != MXC_OK) {
            free(v);
            return error_reply(h, id, MXCACHE__ERROR_CODE__ERROR_INVALID_ARGUMENT,
                               "verify: not a valid mail address (nothing was probed)", out);
        }
        snprintf(v->domain, sizeof v->domain, "%s", addr_domain_of(v->address));
    } else {
        v->kind = HANDLER_VERIFY_ACCEPT_ALL_CHECK;
        if (!field_ok(dom, ADDR_MAX_DOMAIN) ||
            addr_domain_canon(dom, strlen(dom), v->domain, sizeof v->domain) != MXC_OK) {
            free(v);
            return error_reply(h, id, MXCACHE__ERROR_CODE__ERROR_INVALID_ARGUMENT,
                               "verify: not a valid domain name", out);
        }
    }
    if (!cfg->verify_enabled || (route = config_route_for(cfg, v->domain)) < 0) {
        snprintf(text, sizeof text, "verify: %s", cfg->verify_enabled ? "no route covers the domain" : "verification is off (verify.enabled)");
        free(v);
        return error_reply(h, id, MXCACHE__ERROR_CODE__ERROR_INVALID_ARGUMENT, text, out);
    }
    v->route = (unsigned)route;
    out->verify = v;
    out->id = id;
    return MXC_OK;
}

int handler_verify_probe_reply(struct handler *h, const struct handler_verify *v, uint64_t id,
                               const struct probe_result *r, const struct verify_answer *a,
                               bool started, struct handler_reply *out)
{
    static const char *const results[] = {"accepted", "rejected", "tempfail", "failed"};
    static const Mxcache__RecordState states[] = {
        [VERIFY_MISS] = MXCACHE__RECORD_STATE__STATE_ANY,
        [VERIFY_POSITIVE] = MXCACHE__RECORD_STATE__STATE_POSITIVE,
        [VERIFY_NEGATIVE] = MXCACHE__RECORD_STATE__STATE_NEGATIVE,
        [VERIFY_TEMPFAIL] = MXCACHE__RECORD_STATE__STATE_TEMPFAIL,
    };
    Mxcache__Reply rep = MXCACHE__REPLY__INIT;
    Mxcache__VerifyReply vr = MXCACHE__VERIFY_REPLY__INIT;
    unsigned type = ctr_req_type(MXCACHE__REQUEST__BODY_VERIFY);

    memset(out, 0, sizeof *out);
    ctr_request(h->ctr, type, (v->kind == HANDLER_VERIFY_ACCEPT_ALL_CHECK && !started) ||
                                  (v->kind != HANDLER_VERIFY_ACCEPT_ALL_CHECK && !r));
    if (v->kind == HANDLER_VERIFY_ACCEPT_ALL_CHECK) {
        if (!started)
            return error_reply(h, id, MXCACHE__ERROR_CODE__ERROR_UNAVAILABLE,
                               "verify: the accept-all probe cannot start now (busy, or the "
                               "route's circuit is open)", out);
        vr.result = "started";
    } else if (!r) {
        return error_reply(h, id, MXCACHE__ERROR_CODE__ERROR_UNAVAILABLE,
                           started ? "verify: the probe did not finish in time"
                                   : "verify: no probe can start now (busy, or the route's "
                                     "circuit is open)", out);
    } else {
        vr.result = (char *)results[r->outcome];
        vr.smtp_code = r->reply.code;
        vr.enhanced_status = (char *)r->reply.status;
        vr.text = (char *)r->reply.text;
        vr.backend = (char *)r->backend;
        vr.detail = (char *)r->detail;
        vr.transcript = (char *)r->transcript;
        vr.duration_ms = r->duration_ms;
        vr.cached = a ? states[a->state] : MXCACHE__RECORD_STATE__STATE_ANY;
    }
    rep.body_case = MXCACHE__REPLY__BODY_VERIFY;
    rep.verify = &vr;
    return pack_reply(&rep, id, out);
}

/* ---- dispatch ---- */

static const enum counter_id request_counter[] = {
    [MXCACHE__REQUEST__BODY_CHECK] = CTR_REQ_CHECK,
    [MXCACHE__REQUEST__BODY_GET] = CTR_REQ_GET,
    [MXCACHE__REQUEST__BODY_LIST] = CTR_REQ_LIST,
    [MXCACHE__REQUEST__BODY_DELETE] = CTR_REQ_DELETE,
    [MXCACHE__REQUEST__BODY_FLUSH] = CTR_REQ_FLUSH,
    [MXCACHE__REQUEST__BODY_STATS] = CTR_REQ_STATS,
    [MXCACHE__REQUEST__BODY_WHITELIST_ADD] = CTR_REQ_WHITELIST_ADD,
    [MXCACHE__REQUEST__BODY_WHITELIST_REMOVE] = CTR_REQ_WHITELIST_REMOVE,
    [MXCACHE__REQUEST__BODY_WHITELIST_LIST] = CTR_REQ_WHITELIST_LIST,
    [MXCACHE__REQUEST__BODY_COMPACT] = CTR_REQ_COMPACT,
    [MXCACHE__REQUEST__BODY_VERIFY] = CTR_REQ_VERIFY,
    [MXCACHE__REQUEST__BODY_PING] = CTR_REQ_PING,
};

int handler_request(struct handler *h, const uint8_t *msg, size_t len, struct handler_reply *out)
{
    Mxcache__Request *req;
    uint64_t id;
    char text[128];
    int rc;

    memset(out, 0, sizeof *out);
    h->error = false;
    if (len > h->cfg->max_request_size) {
        snprintf(text, sizeof text, "request of %zu bytes exceeds the limit of %llu", len,
                 (unsigned long long)h->cfg->max_request_size);
        ctr_request(h->ctr, 0, true);
        return error_reply(h, wire_peek_id(msg, len), MXCACHE__ERROR_CODE__ERROR_TOO_LARGE, text, out);
    }
    h->cur_msg = msg;
    h->cur_len = len;
    req = wire_request_unpack(msg, len);
    if (!req) {
        ctr_request(h->ctr, 0, true);
        return error_reply(h, wire_peek_id(msg, len), MXCACHE__ERROR_CODE__ERROR_MALFORMED,
                           "request does not decode", out);
    }
    id = req->id;
    unsigned type = ctr_req_type(req->body_case);
    if (req->version != WIRE_VERSION) {
        snprintf(text, sizeof text, "protocol version %u is not supported (this service speaks %u)",
                 req->version, WIRE_VERSION);
        rc = error_reply(h, id, MXCACHE__ERROR_CODE__ERROR_VERSION, text, out);
        ctr_request(h->ctr, type, true);
        mxcache__request__free_unpacked(req, NULL);
        return rc;
    }
    if (req->body_case != MXCACHE__REQUEST__BODY__NOT_SET && !h->rerun)
        ctr_add(h->ctr, request_counter[req->body_case], 1);
    switch (req->body_case) {
    case MXCACHE__REQUEST__BODY_CHECK: rc = do_check(h, id, req->check, out); break;
    case MXCACHE__REQUEST__BODY_GET: rc = do_get(h, id, req->get, out); break;
    case MXCACHE__REQUEST__BODY_LIST: rc = do_list(h, id, req->list, out); break;
    case MXCACHE__REQUEST__BODY_DELETE: rc = do_delete(h, id, req->delete_, out); break;
    case MXCACHE__REQUEST__BODY_FLUSH: rc = do_flush(h, id, req->flush, out); break;
    case MXCACHE__REQUEST__BODY_STATS: rc = do_stats(h, id, out); break;
    case MXCACHE__REQUEST__BODY_WHITELIST_ADD: rc = do_whitelist_add(h, id, req->whitelist_add, out); break;
    case MXCACHE__REQUEST__BODY_WHITELIST_REMOVE: rc = do_whitelist_remove(h, id, req->whitelist_remove, out); break;
    case MXCACHE__REQUEST__BODY_WHITELIST_LIST: rc = do_whitelist_list(h, id, req->whitelist_list, out); break;
    case MXCACHE__REQUEST__BODY_COMPACT: rc = do_compact(h, id, req->compact, out); break;
    case MXCACHE__REQUEST__BODY_VERIFY: rc = do_verify(h, id, req->verify, out); break;
    case MXCACHE__REQUEST__BODY_PING: rc = do_ping(h, id, out); break;
    default:
        rc = error_reply(h, id, MXCACHE__ERROR_CODE__ERROR_INVALID_ARGUMENT, "request has no body", out);
        break;
    }
    mxcache__request__free_unpacked(req, NULL);
    if (rc != MXC_OK && rc != MXC_ENOMEM) {
        /* Every request gets an answer: a reply that could not be built becomes an error. */
        log_msg(LOG_ERR, "INTERNAL", "id=%llu error=\"%s\"", (unsigned long long)id, mxc_strerror(rc));
        free(out->buf);
        handler_verify_free(out->verify);
        memset(out, 0, sizeof *out);
        rc = error_reply(h, id, MXCACHE__ERROR_CODE__ERROR_INTERNAL, "the reply could not be built", out);
    }
    /* A reply still to come (a Check waiting for a probe, a Verify, a compaction) is counted
     * where it is made: handler_verify_reply, handler_verify_probe_reply, handler_run_deferred. */
    if (rc == MXC_OK && out->buf)
        ctr_request(h->ctr, type, h->error);
    return rc;
}

int handler_rerun(struct handler *h, const uint8_t *msg, size_t len, struct handler_reply *out)
{
    h->rerun = true;
    int rc = handler_request(h, msg, len, out);
    h->rerun = false;
    return rc;
}

void handler_fail_replies(struct handler *h, struct handler_reply *replies, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (replies[i].deferred)
            continue; /* answered later by handler_run_deferred, which reads the store */
        free(replies[i].buf);
        replies[i].buf = NULL;
        replies[i].len = 0;
        /* Out of memory here leaves the reply empty; the caller then drops it and the client's
         * timeout gives the same temporary answer. */
        error_reply(h, replies[i].id, MXCACHE__ERROR_CODE__ERROR_STORE,
                    "the store could not write; try again later", &replies[i]);
    }
}

/* Robustness: once the store refuses every write (store_failed: disk full or read-only) each
 * round that writes fails the same way; logging each one wrote 12,000 lines in 5 s in
 * tests/fault/test_store_errors.sh, into a log that may sit on the same full disk. The refusals
 * are logged once per STORE_REFUSED_LOG_MS with how many there were; the failure that stopped
 * the store is always logged, with RocksDB's own words. */
#define STORE_REFUSED_LOG_MS 10000
static _Atomic uint64_t refused_logged_ms; /* monotonic ms of the last refusal logged */
static _Atomic uint64_t refused_quiet;     /* refusals not logged since */

/* log_commit_error - the STORE line of a failed commit; refused: the store had stopped writes
 * before this commit (the line is rate-limited). Any thread. */
static void log_commit_error(size_t writes, const char *err, bool refused)
{
    struct timespec ts;
    uint64_t now, last;

    if (!refused) {
        log_msg(LOG_ERR, "STORE", "op=commit writes=%zu error=\"%s\"", writes, err);
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &ts);
    now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    last = atomic_load(&refused_logged_ms);
    if ((last != 0 && now - last < STORE_REFUSED_LOG_MS) ||
        !atomic_compare_exchange_strong(&refused_logged_ms, &last, now)) {
        atomic_fetch_add(&refused_quiet, 1);
        return;
    }
    log_msg(LOG_ERR, "STORE", "op=commit writes=%zu refused_since_last=%llu error=\"%s\"", writes,
            (unsigned long long)atomic_exchange(&refused_quiet, 0), err);
}

/* commit_round - commits the round's writes; with wait, a durable round waits for its fsync,
 * without, *need_sync says whether it still has to be made durable (store_sync_wal). */
static int commit_round(struct handler *h, struct handler_reply *replies, size_t n, bool wait,
                        bool *need_sync)
{
    size_t writes = store_batch_count(h->batch);
    bool sync = h->durable && wait;
    char err[256];
    struct timespec t0, t1;

    if (need_sync)
        *need_sync = false;
    if (writes == 0)
        return MXC_OK;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bool refused = store_failed(h->env->st);
    int rc = sync ? store_batch_commit(h->batch, err, sizeof err)
                  : store_batch_commit_lazy(h->batch, err, sizeof err);
    if (rc != MXC_OK) {
        log_commit_error(writes, err, refused);
        ctr_add(h->ctr, CTR_ERR_STORE, 1);
        handler_fail_replies(h, replies, n);
        h->ntouched = 0;
        return MXC_ESTORE;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ctr_add(h->ctr, sync ? CTR_COMMITS : CTR_COMMITS_LAZY, 1);
    ctr_add(h->ctr, CTR_COMMIT_WRITES, writes);
    uint64_t usec = (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000000 + (t1.tv_nsec - t0.tv_nsec) / 1000);
    ctr_add(h->ctr, CTR_COMMIT_USEC, usec);
    ctr_observe(&h->ctr->commit, usec);
    if (need_sync)
        *need_sync = h->durable && store_syncs(h->env->st);
    for (size_t i = 0; i < h->ntouched; i++)
        if (wl_sync_key(h->env->wl, h->env->st, h->touched[i].key, h->touched[i].len) != MXC_OK)
            log_msg(LOG_ERR, "WHITELIST", "op=sync error=\"cannot re-read a changed entry; reloading\"");
    h->ntouched = 0;
    return MXC_OK;
}

int handler_commit(struct handler *h, struct handler_reply *replies, size_t n)
{
    return commit_round(h, replies, n, true, NULL);
}

int handler_commit_nowait(struct handler *h, struct handler_reply *replies, size_t n, bool *need_sync)
{
    return commit_round(h, replies, n, false, need_sync);
}
