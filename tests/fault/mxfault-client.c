/* mxfault-client - the libmxcache client of the fault and crash tests (tests/fault/): a load
 * client that keeps many durable writes in flight at mxcached and records every one whose reply
 * it saw (acknowledged), a checker that asks a (restarted) mxcached whether each recorded write
 * is there, and a single Check. Built on libmxcache's asynchronous API (mxc_submit,
 * mxc_dispatch).
 *
 * USAGE
 *   mxfault-client load --server EP --out FILE --tag TAG [--handles H] [--inflight N]
 *                      [--whitelist-every K] [--started FILE] [--max-seconds S] [--errors-ok]
 *     Sends, as fast as the service answers, Checks with never-seen greylist triplets (client
 *     192.0.2.x, sender s<i>@<TAG>.load.test, recipient r<i>@dest.test) and, every K-th request,
 *     a whitelist add (sender domain w<i>.<TAG>.wl.test): H handles with N requests in flight
 *     each. With greylisting on and a long delay the service answers every Check with rule
 *     greylist_new, a write that must be on disk before that reply leaves (store.sync).
 *     On the first acknowledged write it creates --started FILE (for the test to time its kill).
 *     Runs until SIGTERM or SIGINT (or --max-seconds), then stops sending, takes the replies
 *     that still arrive for DRAIN_MS, and writes every acknowledged write to FILE, one per line:
 *       C <TAB> client <TAB> sender <TAB> recipient     a Check answered greylist_new
 *       W <TAB> key                                     a whitelist add, its stored key
 *     Prints one line: submitted=N acked_checks=N acked_whitelist=N unanswered=N errors=N
 *     unexpected=N. Exit 0; 1 when a reply was unexpected (an error reply, or a Check rule other
 *     than greylist_new: every triplet is new; with --errors-ok error replies are only counted);
 *     2 on a usage or system error.
 *   mxfault-client verify --server EP [--inflight N] FILE...
 *     For each recorded write: a Check of the same triplet with explain set (decided like a real
 *     one, changes nothing) must answer greylist_early (seen, still within the delay), and a
 *     whitelist key must be found by Get. Prints "checked=N missing=M" and up to 10 missing
 *     writes; exit 0 when none is missing, 1 when some is, 2 on a usage or system error.
 *   mxfault-client check --server EP [--timeout-ms T] CLIENT SENDER RECIPIENT
 *     One Check (a real one: it may write), as an MX would ask it. Prints one line:
 *     "rule=R action=A code=C status=S text=T", or "error=CODE message=M" for an error reply, or
 *     "timeout" (T ms, default 10000). Exit 0 for an answer, 1 for an error reply or a timeout.
 *
 * Test code: every wait is bounded (request deadlines, DRAIN_MS, --max-seconds). */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "mxcache.h"

#define DRAIN_MS 300             /* after the stop: replies already on their way still count */
#define LOAD_TIMEOUT_MS 10000    /* a load request's deadline (the kill ends the run first) */
#define VERIFY_TIMEOUT_MS 20000  /* a verify request's deadline */
#define VERIFY_RETRIES 3         /* a verify request that timed out is asked again */
#define MAX_HANDLES 16
#define SHOW_MISSING 10
#define FIELD_MAX 128

static volatile sig_atomic_t stop_flag;

static void on_stop(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* An acknowledged write, kept until the end of the run. */
struct ack {
    char kind; /* 'C' or 'W' */
    char a[FIELD_MAX], b[FIELD_MAX], c[FIELD_MAX];
};

struct acks {
    struct ack *v;
    size_t n, cap;
};

static int acks_add(struct acks *l, char kind, const char *a, const char *b, const char *c)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4096;
        struct ack *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    struct ack *e = &l->v[l->n++];
    e->kind = kind;
    snprintf(e->a, sizeof e->a, "%s", a);
    snprintf(e->b, sizeof e->b, "%s", b ? b : "");
    snprintf(e->c, sizeof e->c, "%s", c ? c : "");
    return 0;
}

/* ---- load ---- */

struct load {
    mxc_client *h[MAX_HANDLES];
    int nh, inflight, wl_every;
    const char *tag, *started;
    bool started_done;
    uint64_t seq, submitted, acked_checks, acked_wl, errors, unexpected;
    struct acks acks;
    int oom;
};

/* One request in flight: what it wrote, so the reply can record it. */
struct lreq {
    struct load *ld;
    char kind;
    char client[32], sender[FIELD_MAX], rcpt[FIELD_MAX];
};

static void mark_started(struct load *ld)
{
    if (ld->started_done || !ld->started)
        return;
    ld->started_done = true;
    FILE *f = fopen(ld->started, "w");
    if (f)
        fclose(f);
}

static void load_cb(void *arg, int status, const Mxcache__Reply *rep)
{
    struct lreq *r = arg;
    struct load *ld = r->ld;

    if (status == MXC_ETIMEDOUT || status == MXC_ECLOSED) {
        free(r); /* never answered: not acknowledged, may or may not be stored */
        return;
    }
    if (status != MXC_OK || !rep) {
        ld->errors++;
        if (rep && rep->body_case == MXCACHE__REPLY__BODY_ERROR && ld->errors <= 5)
            fprintf(stderr, "mxfault-client: error reply: %s\n",
                    rep->error->message ? rep->error->message : "");
        free(r);
        return;
    }
    if (r->kind == 'C') {
        if (rep->body_case == MXCACHE__REPLY__BODY_CHECK && rep->check->rule &&
            strcmp(rep->check->rule, "greylist_new") == 0) {
            if (acks_add(&ld->acks, 'C', r->client, r->sender, r->rcpt) != 0)
                ld->oom = 1;
            ld->acked_checks++;
            mark_started(ld);
        } else {
            ld->unexpected++;
            if (ld->unexpected <= 5)
                fprintf(stderr, "mxfault-client: Check of %s %s %s answered rule %s\n", r->client,
                        r->sender, r->rcpt,
                        rep->body_case == MXCACHE__REPLY__BODY_CHECK && rep->check->rule
                            ? rep->check->rule : "(no check reply)");
        }
    } else {
        if (rep->body_case == MXCACHE__REPLY__BODY_WHITELIST_ADD && rep->whitelist_add->entry &&
            rep->whitelist_add->entry->key) {
            if (acks_add(&ld->acks, 'W', rep->whitelist_add->entry->key, NULL, NULL) != 0)
                ld->oom = 1;
            ld->acked_wl++;
            mark_started(ld);
        } else {
            ld->unexpected++;
        }
    }
    free(r);
}

/* load_submit - one more write on handle h; 0, or -1 when the handle is full or failed. */
static int load_submit(struct load *ld, mxc_client *h)
{
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__CheckRequest cq = MXCACHE__CHECK_REQUEST__INIT;
    Mxcache__WhitelistAddRequest wq = MXCACHE__WHITELIST_ADD_REQUEST__INIT;
    char value[FIELD_MAX];
    struct lreq *r = calloc(1, sizeof *r);
    uint64_t i = ld->seq++;

    if (!r)
        return -1;
    r->ld = ld;
    if (ld->wl_every > 0 && i % (uint64_t)ld->wl_every == (uint64_t)ld->wl_every - 1) {
        r->kind = 'W';
        snprintf(value, sizeof value, "w%llu.%s.wl.test", (unsigned long long)i, ld->tag);
        wq.kind = MXCACHE__WHITELIST_KIND__WHITELIST_SENDER;
        wq.value = value;
        wq.comment = "crash test";
        req.body_case = MXCACHE__REQUEST__BODY_WHITELIST_ADD;
        req.whitelist_add = &wq;
    } else {
        r->kind = 'C';
        snprintf(r->client, sizeof r->client, "192.0.2.%llu", (unsigned long long)(i % 250 + 1));
        snprintf(r->sender, sizeof r->sender, "s%llu@%s.load.test", (unsigned long long)i, ld->tag);
        snprintf(r->rcpt, sizeof r->rcpt, "r%llu@dest.test", (unsigned long long)i);
        cq.client_address = r->client;
        cq.client_name = "unknown";
        cq.helo_name = "client.load.test";
        cq.sender = r->sender;
        cq.recipient = r->rcpt;
        cq.protocol_state = "RCPT";
        cq.mx_name = "mx.crash.test";
        req.body_case = MXCACHE__REQUEST__BODY_CHECK;
        req.check = &cq;
    }
    if (mxc_submit(h, &req, LOAD_TIMEOUT_MS, load_cb, r, NULL) != MXC_OK) {
        free(r);
        ld->seq--;
        return -1;
    }
    ld->submitted++;
    return 0;
}

/* pump - one turn of the event loop over every handle: wait at most wait_ms, dispatch. */
static void pump(mxc_client **h, int nh, long wait_ms)
{
    zmq_pollitem_t items[MAX_HANDLES * MXC_MAX_ENDPOINTS];
    int n = 0;

    for (int i = 0; i < nh; i++) {
        long t = mxc_next_timeout_ms(h[i]);
        if (t >= 0 && t < wait_ms)
            wait_ms = t;
        n += mxc_pollitems(h[i], items + n, MXC_MAX_ENDPOINTS);
    }
    if (zmq_poll(items, n, wait_ms) < 0 && errno != EINTR)
        return;
    for (int i = 0; i < nh; i++)
        mxc_dispatch(h[i]);
}

static int write_acks(const struct acks *l, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "mxfault-client: %s: %s\n", path, strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < l->n; i++) {
        const struct ack *e = &l->v[i];
        if (e->kind == 'C')
            fprintf(f, "C\t%s\t%s\t%s\n", e->a, e->b, e->c);
        else
            fprintf(f, "W\t%s\n", e->a);
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "mxfault-client: %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static mxc_client *open_handle(const char *ep, int max_inflight)
{
    struct mxc_options o;
    char err[256];
    const char *eps[1] = {ep};

    mxc_options_init(&o);
    o.max_inflight = max_inflight;
    o.reconnect_max_ms = 200;
    mxc_client *c = mxc_client_create(eps, 1, &o, err, sizeof err);
    if (!c)
        fprintf(stderr, "mxfault-client: %s: %s\n", ep, err);
    return c;
}

static int run_load(const char *ep, const char *out, const char *tag, int nh, int inflight,
                    int wl_every, const char *started, long max_s, bool errors_ok)
{
    struct load ld = {.nh = nh, .inflight = inflight, .wl_every = wl_every, .tag = tag,
                      .started = started};
    struct sigaction sa = {0};
    long end = now_ms() + max_s * 1000;
    uint64_t unanswered = 0;

    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    for (int i = 0; i < nh; i++)
        if (!(ld.h[i] = open_handle(ep, inflight)))
            return 2;
    while (!stop_flag && now_ms() < end && !ld.oom) {
        for (int i = 0; i < nh; i++)
            while (mxc_inflight(ld.h[i]) < inflight && load_submit(&ld, ld.h[i]) == 0)
                ;
        pump(ld.h, nh, 50);
    }
    /* Replies the service sent before it died may still be on their way. */
    long drain_end = now_ms() + DRAIN_MS;
    while (now_ms() < drain_end)
        pump(ld.h, nh, 20);
    for (int i = 0; i < nh; i++) {
        unanswered += (uint64_t)mxc_inflight(ld.h[i]);
        mxc_client_destroy(ld.h[i]); /* the rest: MXC_ECLOSED, not acknowledged */
    }
    int rc = write_acks(&ld.acks, out) == 0 && !ld.oom ? 0 : 2;
    printf("submitted=%llu acked_checks=%llu acked_whitelist=%llu unanswered=%llu errors=%llu "
           "unexpected=%llu\n",
           (unsigned long long)ld.submitted, (unsigned long long)ld.acked_checks,
           (unsigned long long)ld.acked_wl, (unsigned long long)unanswered,
           (unsigned long long)ld.errors, (unsigned long long)ld.unexpected);
    free(ld.acks.v);
    if (rc == 0 && ((ld.errors && !errors_ok) || ld.unexpected))
        rc = 1;
    return rc;
}

/* ---- verify ---- */

struct verify {
    mxc_client *h;
    struct acks acks;
    size_t next;         /* next ack to ask about */
    size_t *retry;       /* indexes to ask again (timed out) */
    size_t nretry;
    unsigned *tries;
    uint64_t checked, missing, failed;
};

struct vreq {
    struct verify *v;
    size_t idx;
};

static void report_missing(struct verify *v, const struct ack *e, const char *why)
{
    v->missing++;
    if (v->missing <= SHOW_MISSING) {
        if (e->kind == 'C')
            printf("MISSING triplet %s %s %s: %s\n", e->a, e->b, e->c, why);
        else
            printf("MISSING whitelist %s: %s\n", e->a, why);
    }
}

static void verify_cb(void *arg, int status, const Mxcache__Reply *rep)
{
    struct vreq *r = arg;
    struct verify *v = r->v;
    const struct ack *e = &v->acks.v[r->idx];
    char why[256];

    if (status == MXC_ETIMEDOUT) {
        if (++v->tries[r->idx] < VERIFY_RETRIES) {
            v->retry[v->nretry++] = r->idx;
        } else {
            v->failed++;
            report_missing(v, e, "no answer from the service");
        }
        free(r);
        return;
    }
    v->checked++;
    if (status != MXC_OK || !rep) {
        snprintf(why, sizeof why, "error reply: %s",
                 rep && rep->body_case == MXCACHE__REPLY__BODY_ERROR && rep->error->message
                     ? rep->error->message : mxc_strerror(status));
        v->failed++;
        report_missing(v, e, why);
    } else if (e->kind == 'C') {
        const char *rule = rep->body_case == MXCACHE__REPLY__BODY_CHECK && rep->check->rule
                               ? rep->check->rule : "(no check reply)";
        if (strcmp(rule, "greylist_early") != 0) {
            snprintf(why, sizeof why, "answered rule %s, want greylist_early", rule);
            report_missing(v, e, why);
        }
    } else if (rep->body_case != MXCACHE__REPLY__BODY_GET || !rep->get->found) {
        report_missing(v, e, "not found");
    }
    free(r);
}

static int verify_submit(struct verify *v, size_t idx)
{
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__CheckRequest cq = MXCACHE__CHECK_REQUEST__INIT;
    Mxcache__GetRequest gq = MXCACHE__GET_REQUEST__INIT;
    struct ack *e = &v->acks.v[idx];
    struct vreq *r = malloc(sizeof *r);

    if (!r)
        return -1;
    r->v = v;
    r->idx = idx;
    if (e->kind == 'C') {
        cq.client_address = e->a;
        cq.client_name = "unknown";
        cq.helo_name = "client.load.test";
        cq.sender = e->b;
        cq.recipient = e->c;
        cq.protocol_state = "RCPT";
        cq.mx_name = "mx.crash.test";
        cq.explain = 1;
        req.body_case = MXCACHE__REQUEST__BODY_CHECK;
        req.check = &cq;
    } else {
        gq.keyspace = MXCACHE__KEYSPACE__KEYSPACE_WHITELIST;
        gq.key = e->a;
        req.body_case = MXCACHE__REQUEST__BODY_GET;
        req.get = &gq;
    }
    if (mxc_submit(v->h, &req, VERIFY_TIMEOUT_MS, verify_cb, r, NULL) != MXC_OK) {
        free(r);
        return -1;
    }
    return 0;
}

/* read_acks - appends the lines of path to l; 0 or -1. */
static int read_acks(const char *path, struct acks *l)
{
    char line[4 * FIELD_MAX];
    FILE *f = fopen(path, "r");

    if (!f) {
        fprintf(stderr, "mxfault-client: %s: %s\n", path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof line, f)) {
        char *save = NULL, *kind = strtok_r(line, "\t\n", &save);
        char *a = strtok_r(NULL, "\t\n", &save), *b = strtok_r(NULL, "\t\n", &save);
        char *c = strtok_r(NULL, "\t\n", &save);
        if (!kind || !a || (kind[0] == 'C' && (!b || !c)) || (kind[0] != 'C' && kind[0] != 'W')) {
            fprintf(stderr, "mxfault-client: %s: a malformed line\n", path);
            fclose(f);
            return -1;
        }
        if (acks_add(l, kind[0], a, b, c) != 0) {
            fclose(f);
            return -1;
        }
    }
    fclose(f);
    return 0;
}

static int run_verify(const char *ep, int inflight, char **files, int nfiles)
{
    struct verify v = {0};
    long end;

    for (int i = 0; i < nfiles; i++)
        if (read_acks(files[i], &v.acks) != 0)
            return 2;
    if (!(v.h = open_handle(ep, inflight)))
        return 2;
    v.retry = calloc(v.acks.n + 1, sizeof *v.retry);
    v.tries = calloc(v.acks.n + 1, sizeof *v.tries);
    if (!v.retry || !v.tries)
        return 2;
    /* Bounded: every request has a deadline and at most VERIFY_RETRIES tries. */
    end = now_ms() + (long)VERIFY_TIMEOUT_MS * (VERIFY_RETRIES + 1) + 60000;
    while ((v.next < v.acks.n || v.nretry > 0 || mxc_inflight(v.h) > 0) && now_ms() < end) {
        while (mxc_inflight(v.h) < inflight) {
            size_t idx;
            if (v.nretry > 0)
                idx = v.retry[--v.nretry];
            else if (v.next < v.acks.n)
                idx = v.next++;
            else
                break;
            if (verify_submit(&v, idx) != 0) {
                v.retry[v.nretry++] = idx;
                break;
            }
        }
        pump(&v.h, 1, 50);
    }
    uint64_t unasked = (uint64_t)(v.acks.n - v.next) + v.nretry + (uint64_t)mxc_inflight(v.h);
    mxc_client_destroy(v.h);
    printf("checked=%llu missing=%llu\n", (unsigned long long)v.checked,
           (unsigned long long)(v.missing + unasked));
    int rc = v.missing || unasked ? 1 : 0;
    free(v.acks.v);
    free(v.retry);
    free(v.tries);
    return rc;
}

/* ---- command line ---- */

/* ---- check ---- */

struct one {
    bool done;
    int rc;
};

static void check_cb(void *arg, int status, const Mxcache__Reply *rep)
{
    struct one *o = arg;

    o->done = true;
    o->rc = 1;
    if (status == MXC_ETIMEDOUT || status == MXC_ECLOSED || !rep) {
        printf("timeout\n");
    } else if (rep->body_case == MXCACHE__REPLY__BODY_ERROR) {
        printf("error=%d message=%s\n", (int)rep->error->code,
               rep->error->message ? rep->error->message : "");
    } else if (rep->body_case == MXCACHE__REPLY__BODY_CHECK) {
        const Mxcache__CheckReply *c = rep->check;
        printf("rule=%s action=%s code=%u status=%s text=%s\n", c->rule ? c->rule : "",
               c->action == MXCACHE__ACTION__ACTION_DUNNO   ? "dunno"
               : c->action == MXCACHE__ACTION__ACTION_DEFER ? "defer"
               : c->action == MXCACHE__ACTION__ACTION_REJECT ? "reject" : "unspecified",
               c->smtp_code, c->enhanced_status ? c->enhanced_status : "", c->text ? c->text : "");
        o->rc = 0;
    } else {
        printf("error=unexpected-reply\n");
    }
}

static int run_check(const char *ep, long timeout_ms, char *client, char *sender, char *rcpt)
{
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__CheckRequest cq = MXCACHE__CHECK_REQUEST__INIT;
    struct one o = {0};
    mxc_client *h = open_handle(ep, 16);

    if (!h)
        return 2;
    cq.client_address = client;
    cq.client_name = "unknown";
    cq.helo_name = "client.fault.test";
    cq.sender = sender;
    cq.recipient = rcpt;
    cq.protocol_state = "RCPT";
    cq.mx_name = "mx.fault.test";
    req.body_case = MXCACHE__REQUEST__BODY_CHECK;
    req.check = &cq;
    if (mxc_submit(h, &req, (int)timeout_ms, check_cb, &o, NULL) != MXC_OK) {
        fprintf(stderr, "mxfault-client: %s\n", mxc_client_error(h));
        mxc_client_destroy(h);
        return 2;
    }
    /* Bounded by the request's deadline, which mxc_dispatch enforces. */
    while (!o.done)
        pump(&h, 1, 50);
    mxc_client_destroy(h);
    return o.rc;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: mxfault-client load --server EP --out FILE --tag TAG [--handles H] [--inflight N]\n"
            "                           [--whitelist-every K] [--started FILE] [--max-seconds S]\n"
            "                           [--errors-ok]\n"
            "       mxfault-client verify --server EP [--inflight N] FILE...\n"
            "       mxfault-client check --server EP [--timeout-ms T] CLIENT SENDER RECIPIENT\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *ep = NULL, *out = NULL, *tag = NULL, *started = NULL;
    long handles = 4, inflight = 64, wl_every = 8, max_s = 60, timeout_ms = 10000;
    bool errors_ok = false;
    int i;

    if (argc < 2)
        return usage();
    bool load = strcmp(argv[1], "load") == 0, check = strcmp(argv[1], "check") == 0;
    if (!load && !check && strcmp(argv[1], "verify") != 0)
        return usage();
    for (i = 2; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(opt, "--errors-ok") == 0) {
            errors_ok = true;
            continue;
        }
        if (!val)
            return usage();
        i++;
        if (strcmp(opt, "--server") == 0)
            ep = val;
        else if (strcmp(opt, "--out") == 0)
            out = val;
        else if (strcmp(opt, "--tag") == 0)
            tag = val;
        else if (strcmp(opt, "--started") == 0)
            started = val;
        else if (strcmp(opt, "--handles") == 0)
            handles = strtol(val, NULL, 10);
        else if (strcmp(opt, "--inflight") == 0)
            inflight = strtol(val, NULL, 10);
        else if (strcmp(opt, "--whitelist-every") == 0)
            wl_every = strtol(val, NULL, 10);
        else if (strcmp(opt, "--max-seconds") == 0)
            max_s = strtol(val, NULL, 10);
        else if (strcmp(opt, "--timeout-ms") == 0)
            timeout_ms = strtol(val, NULL, 10);
        else
            return usage();
    }
    if (!ep || handles < 1 || handles > MAX_HANDLES || inflight < 1 || inflight > 4096 ||
        wl_every < 0 || max_s < 1 || timeout_ms < 1 || timeout_ms > 600000)
        return usage();
    if (load) {
        if (!out || !tag || i != argc)
            return usage();
        return run_load(ep, out, tag, (int)handles, (int)inflight, (int)wl_every, started, max_s,
                        errors_ok);
    }
    if (check) {
        if (argc - i != 3)
            return usage();
        return run_check(ep, timeout_ms, argv[i], argv[i + 1], argv[i + 2]);
    }
    if (i == argc)
        return usage();
    return run_verify(ep, (int)inflight * (int)handles, argv + i, argc - i);
}
