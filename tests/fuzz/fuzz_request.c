/* fuzz_request - libFuzzer target for mxcached's request path: the bytes of ZeroMQ request
 * payloads go through the real routing peek (wire_peek_body, wire_peek_id), decoding
 * (wire_request_unpack) and dispatch (server/handler.c: Check with whitelists, greylisting and
 * recipient verification, and every admin request: get, list, delete, flush, stats, whitelist
 * add/remove/list, compact, verify, ping) against a real RocksDB store in a private temporary
 * directory, opened once, with a test clock.
 *
 * Input: a series of frames, each "ctl (1 byte), len (2 bytes, little-endian), payload (len
 * bytes, fewer at the end of the input)", at most MAX_FRAMES. ctl:
 *   bits 0-2  clock step before the round this frame starts: 0, 1 s, 61 s, 301 s, 1 h, 8 d,
 *             32 d, 36 d (greylist delay, AWL, refresh and expiry times are all reachable)
 *   bit 3     the round ends after this frame (the last frame always ends one)
 *   bits 4-6  how a Check or Verify waiting for a probe ends: 0 accepted (250), 1 rejected
 *             (550 5.1.1), 2 tempfail (451), 3 failed (no answer), 4 verify.wait ran out, 5 no
 *             probe may start, 6 the domain accepts anything, 7 the cache lost the result
 *   bit 7     the round decides with policy B instead of A (see the configs below)
 * A round is handler_begin, the frames' handler_request, handler_commit (A) or
 * handler_commit_nowait (B), then the deferred compactions, then each waiting Check or Verify in
 * a round of its own, as service.c and service_verify.c run them. tests/fuzz/gen_request_seeds.c
 * writes the seed corpus in this format.
 *
 * Invariants: every request gets exactly one reply (now, deferred, or after its probe) that
 * decodes, carries the request's id (wire_peek_id's when it does not decode), and, for a Check,
 * an action whose SMTP code has the action's class (defer 4xx, reject 5xx) and texts without
 * control characters; the routing peek agrees with the decoder about the body, since the service
 * runs Checks and Verifies on its main thread and everything else on workers, which cannot park a
 * Check for a probe.
 *
 * Bounded: the store is synced never, and emptied after each input (every key of every
 * keyspace deleted, compacted now and then), so every input starts from the same empty store and
 * the store does not grow during a run. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "counters.h"
#include "fuzz_util.h"
#include "handler.h"
#include "log.h"
#include "mxc_err.h"
#include "policy.h"
#include "store.h"
#include "whitelist.h"
#include "wire.h"

#define MAX_FRAMES 64
#define T0_MS 1700000000000ull /* the test clock at the start of every input */
#define COMPACT_EVERY 1000     /* inputs between two compactions of the emptied store */

static uint64_t clock_now;
static store *st;
static struct whitelist *wl;
static struct counters ctr;
static struct handler_env env;
static struct handler *h;
static struct policy *pol_a, *pol_b;
static unsigned long inputs;

static const uint64_t clock_steps[8] = {
    0, 1000, 61000, 301000, 3600000, 8 * 86400000ull, 32 * 86400000ull, 36 * 86400000ull,
};

static uint64_t test_clock(void *arg)
{
    (void)arg;
    return clock_now;
}

static void counters_fn(void *arg, uint64_t out[CTR_COUNT])
{
    (void)arg;
    struct counters *sets[] = {&ctr};
    counters_sum(sets, 1, out);
}

static void report(void *arg, const char *msg)
{
    (void)arg;
    fprintf(fuzz_report, "fuzz_request: policy: %s\n", msg);
}

/* Policy A: greylisting by network (AWL after 2 passes), verification after it for routed
 * domains, whitelist files, the default answer dunno. Policy B: verification before
 * greylisting, greylisting by registered domain with hashed keys, default answer defer. */
static const char conf_a[] =
    "store = { path = \"%s/db\"; sync = false; block_cache_size = \"1M\"; write_buffer_size = \"1M\";\n"
    "          max_background_jobs = 1; };\n"
    "log = { level = \"debug\"; decisions = \"info\"; };\n"
    "greylist = { enabled = true; delay = \"300s\"; awl_passes = 2; header = true;\n"
    "             exempt_domains = [ \"exempt.example\" ]; };\n"
    "whitelist = { client_files = [ \"%s/clients\" ]; recipient_files = [ \"%s/recipients\" ]; };\n"
    "verify = { enabled = true;\n"
    "  routes = ( { domains = [ \"example.com\", \".example.net\" ]; hosts = [ \"127.0.0.1:2525\" ]; } ); };\n"
    "admin = { list_page_size = 20; list_page_max = 50; flush_batch = 100; };\n";
static const char conf_b[] =
    "store = { path = \"%s/db\"; sync = false; };\n"
    "log = { decisions = \"notice\"; };\n"
    "policy = { default_action = \"defer\"; default_code = 451; default_status = \"4.7.1\";\n"
    "           default_text = \"Try later\"; };\n"
    "greylist = { enabled = true; delay = \"60s\"; client_identity = \"domain\"; hash_keys = true;\n"
    "             key_file = \"%s/key\"; domains = [ \"example.com\", \"example.org\" ];\n"
    "             reply_text = \"Wait {remaining}s\"; header = false; awl_passes = 0; };\n"
    "verify = { enabled = true; before_greylist = true; reject_5xx = false;\n"
    "  routes = ( { domains = [ \".example.com\", \"example.org\" ]; hosts = [ \"[::1]:2525\" ]; } ); };\n"
    "admin = { list_page_size = 5; list_page_max = 5; flush_batch = 3; };\n";
static const char clients[] = "192.0.2.7\n198.51.100.0/24\nexample.edu\n/^mx[0-9]+\\.example\\.org$/\n";
static const char recipients[] = "postmaster@example.com\nabuse@\nwhite.example\n";

static struct policy *load_policy(const char *dir, const char *fmt, const char *name)
{
    char path[PATH_MAX + 32], *text;
    struct config_errors errs = {0};

    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (asprintf(&text, fmt, dir, dir, dir) < 0)
        abort();
    fuzz_write_file(path, text, strlen(text));
    free(text);
    struct config *cfg = config_load(path, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(fuzz_report, "fuzz_request: %s\n", errs.msg[i]);
    FUZZ_REQUIRE(cfg != NULL, "config_load %s", path);
    config_errors_fini(&errs);
    struct policy *pol = policy_create(cfg, report, NULL);
    FUZZ_REQUIRE(pol != NULL, "policy_create %s", path);
    return pol;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *dir = fuzz_tmpdir("fuzz_request");
    char path[PATH_MAX + 32], err[512];

    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    /* Every log line is built (escaping hostile fields included) and thrown away. */
    log_open("fuzz_request", LOG_TO_STDERR, LOG_MAIL, LOG_DEBUG);
    snprintf(path, sizeof path, "%s/clients", dir);
    fuzz_write_file(path, clients, sizeof clients - 1);
    snprintf(path, sizeof path, "%s/recipients", dir);
    fuzz_write_file(path, recipients, sizeof recipients - 1);
    snprintf(path, sizeof path, "%s/key", dir);
    fuzz_write_file(path, "0123456789abcdef0123456789abcdef", 32);
    pol_a = load_policy(dir, conf_a, "a.conf");
    pol_b = load_policy(dir, conf_b, "b.conf");

    const struct config *c = pol_a->cfg;
    struct store_options o = {
        .path = c->store_path,
        .sync = false, /* bounded: a fuzz run never waits for the disk */
        .block_cache_bytes = c->store_block_cache_size,
        .write_buffer_bytes = c->store_write_buffer_size,
        .max_background_jobs = (int)c->store_max_background_jobs,
        .now_ms = test_clock,
    };
    clock_now = T0_MS;
    st = store_open(&o, err, sizeof err);
    FUZZ_REQUIRE(st != NULL, "store_open: %s", err);
    wl = wl_create();
    FUZZ_REQUIRE(wl && wl_load(wl, st, err, sizeof err) == MXC_OK, "wl_load: %s", err);
    counters_init(&ctr);
    env = (struct handler_env){.st = st, .wl = wl, .workers = 1, .started_ms = T0_MS,
                               .counters_fn = counters_fn};
    h = handler_create(&env, &ctr);
    FUZZ_REQUIRE(h != NULL, "handler_create");
    return 0;
}

/* ---- checking replies ---- */

static bool clean_text(const char *s)
{
    for (; s && *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

/* check_reply - a reply r to the request with id that body (NOT_SET: did not decode) asked. */
static void check_reply(const struct handler_reply *r, uint64_t id, Mxcache__Request__BodyCase body)
{
    FUZZ_REQUIRE(r->buf != NULL && r->len > 0, "no reply");
    Mxcache__Reply *rep = wire_reply_unpack(r->buf, r->len);
    FUZZ_REQUIRE(rep != NULL, "the reply does not decode");
    FUZZ_REQUIRE(rep->version == WIRE_VERSION, "reply version %u", rep->version);
    FUZZ_REQUIRE(rep->id == id && r->id == id, "reply id %llu (%llu) for request %llu",
                 (unsigned long long)rep->id, (unsigned long long)r->id, (unsigned long long)id);
    if (rep->body_case == MXCACHE__REPLY__BODY_ERROR) {
        FUZZ_REQUIRE(rep->error->code != MXCACHE__ERROR_CODE__ERROR_STORE &&
                         rep->error->code != MXCACHE__ERROR_CODE__ERROR_INTERNAL,
                     "error %s: %s", wire_error_name(rep->error->code), rep->error->message);
    } else if (rep->body_case == MXCACHE__REPLY__BODY_CHECK) {
        const Mxcache__CheckReply *c = rep->check;
        FUZZ_REQUIRE(body == MXCACHE__REQUEST__BODY_CHECK, "a Check reply to body %d", (int)body);
        switch (c->action) {
        case MXCACHE__ACTION__ACTION_DUNNO: break;
        case MXCACHE__ACTION__ACTION_DEFER:
            /* A temporary problem is never turned into a permanent one. */
            FUZZ_REQUIRE(c->smtp_code >= 400 && c->smtp_code <= 499, "defer with %u", c->smtp_code);
            break;
        case MXCACHE__ACTION__ACTION_REJECT:
            FUZZ_REQUIRE(c->smtp_code >= 500 && c->smtp_code <= 599, "reject with %u", c->smtp_code);
            break;
        default: FUZZ_REQUIRE(0, "Check reply without an action (%d)", (int)c->action);
        }
        if (c->smtp_code && c->enhanced_status && c->enhanced_status[0])
            FUZZ_REQUIRE(c->enhanced_status[0] == (char)('0' + c->smtp_code / 100),
                         "code %u with status %s", c->smtp_code, c->enhanced_status);
        FUZZ_REQUIRE(clean_text(c->text) && clean_text(c->prepend) && clean_text(c->rule) &&
                         clean_text(c->enhanced_status),
                     "control characters in a Check reply");
        FUZZ_REQUIRE(c->rule && c->rule[0], "a decision without a rule");
    } else {
        FUZZ_REQUIRE(body != MXCACHE__REQUEST__BODY_CHECK && body != MXCACHE__REQUEST__BODY__NOT_SET,
                     "reply %d to body %d", (int)rep->body_case, (int)body);
    }
    mxcache__reply__free_unpacked(rep, NULL);
}

/* ---- rounds ---- */

struct frame {
    uint8_t ctl;
    const uint8_t *payload; /* a heap block of exactly len bytes */
    size_t len;
    uint64_t id;            /* the id its reply must carry */
    Mxcache__Request__BodyCase body; /* as decoded; NOT_SET when it does not decode */
};

/* expect - what a frame's reply must say: decodes it (as the handler will) and checks that the
 * service's routing peek agrees with the decoder. */
static void expect(struct frame *f)
{
    Mxcache__Request *req = wire_request_unpack(f->payload, f->len);
    Mxcache__Request__BodyCase peek = wire_peek_body(f->payload, f->len);

    bool too_large = f->len > pol_a->cfg->max_request_size;
    f->id = req && !too_large ? req->id : wire_peek_id(f->payload, f->len);
    f->body = req ? req->body_case : MXCACHE__REQUEST__BODY__NOT_SET;
    if (req) {
        /* service.c routes on the peek: Check and Verify stay on the main thread, which can
         * park them for a probe; a worker cannot. */
        bool main_peek = peek == MXCACHE__REQUEST__BODY_CHECK || peek == MXCACHE__REQUEST__BODY_VERIFY;
        bool main_body = f->body == MXCACHE__REQUEST__BODY_CHECK || f->body == MXCACHE__REQUEST__BODY_VERIFY;
        FUZZ_REQUIRE(main_peek == main_body && (peek == f->body || peek == MXCACHE__REQUEST__BODY__NOT_SET),
                     "routed as body %d, decoded as body %d", (int)peek, (int)f->body);
        if (!too_large && req->version != WIRE_VERSION)
            f->body = MXCACHE__REQUEST__BODY__NOT_SET; /* answered with an error */
        mxcache__request__free_unpacked(req, NULL);
    }
    if (too_large)
        f->body = MXCACHE__REQUEST__BODY__NOT_SET;
}

/* probe - a backend's answer to RCPT TO for outcome 0-3 of the ctl bits. */
static void probe(unsigned how, struct probe_result *r)
{
    static const struct {
        enum probe_outcome outcome;
        unsigned code;
        const char *status, *text;
    } rows[] = {
        {PROBE_ACCEPTED, 250, "2.1.5", "Ok"},
        {PROBE_REJECTED, 550, "5.1.1", "<x@example.com>: Recipient address rejected: User unknown"},
        {PROBE_TEMPFAIL, 451, "4.3.0", "Try again later"},
        {PROBE_FAILED, 0, "", ""},
    };
    memset(r, 0, sizeof *r);
    how &= 3;
    r->outcome = rows[how].outcome;
    r->reply.code = rows[how].code;
    r->reply.lines = rows[how].code ? 1 : 0;
    snprintf(r->reply.status, sizeof r->reply.status, "%s", rows[how].status);
    snprintf(r->reply.text, sizeof r->reply.text, "%s", rows[how].text);
    snprintf(r->backend, sizeof r->backend, "127.0.0.1:2525");
    if (r->outcome == PROBE_FAILED)
        snprintf(r->detail, sizeof r->detail, "127.0.0.1:2525: connect: Connection refused");
    snprintf(r->transcript, sizeof r->transcript, "C: RCPT TO:<x>\nS: %u %s\n", r->reply.code, r->reply.text);
    r->duration_ms = 12;
}

/* finish_probe - the end of a Check or Verify that waited for a probe (v, taken), in a round of
 * its own as service_verify.c runs it. */
static void finish_probe(const struct policy *pol, struct handler_verify *v, uint64_t id, unsigned how)
{
    struct handler_reply out = {0};
    struct probe_result r;
    struct verify_answer a;
    int rc = MXC_OK;

    memset(&a, 0, sizeof a);
    handler_begin(h, pol);
    if (v->kind == HANDLER_VERIFY_ACCEPT_ALL_CHECK) {
        rc = handler_verify_probe_reply(h, v, id, NULL, NULL, how != 5, &out);
    } else if (how <= 3 || how == 7) {
        probe(how == 7 ? 0 : how, &r);
        FUZZ_REQUIRE(handler_verify_result(h, v->address, &r, &a) == MXC_OK, "handler_verify_result");
        if (how == 7)
            memset(&a, 0, sizeof a); /* the cache could not keep it: a miss */
        if (v->kind == HANDLER_VERIFY_OPERATOR) {
            rc = handler_verify_probe_reply(h, v, id, &r, &a, true, &out);
        } else if (v->request && a.state == VERIFY_POSITIVE) {
            /* verify.before_greylist: decided again, greylisting next */
            rc = handler_rerun(h, v->request, v->request_len, &out);
            FUZZ_REQUIRE(rc != MXC_OK || !out.verify || !out.verify->park, "parked again after a positive");
            handler_verify_free(out.verify);
            out.verify = NULL;
        } else {
            rc = handler_verify_reply(h, v, id, HANDLER_VERIFY_ANSWER, &a, &out);
        }
    } else if (v->kind == HANDLER_VERIFY_OPERATOR) {
        rc = handler_verify_probe_reply(h, v, id, NULL, NULL, how == 4, &out);
    } else {
        enum handler_verify_end end = how == 4 ? HANDLER_VERIFY_PENDING
                                      : how == 5 ? HANDLER_VERIFY_REFUSED
                                                 : HANDLER_VERIFY_ACCEPT_ALL;
        rc = handler_verify_reply(h, v, id, end, NULL, &out);
    }
    FUZZ_REQUIRE(rc == MXC_OK, "the reply after a probe: %d", rc);
    FUZZ_REQUIRE(handler_commit(h, &out, 1) == MXC_OK, "handler_commit after a probe");
    check_reply(&out, id, v->kind == HANDLER_VERIFY_CHECK ? MXCACHE__REQUEST__BODY_CHECK
                                                          : MXCACHE__REQUEST__BODY_VERIFY);
    free(out.buf);
    handler_verify_free(v);
}

static void round_run(struct frame *f, size_t n)
{
    struct handler_reply reps[MAX_FRAMES];
    const struct policy *pol = (f[0].ctl & 0x80) ? pol_b : pol_a;
    size_t ndeferred = 0;

    clock_now += clock_steps[f[0].ctl & 7];
    handler_begin(h, pol);
    for (size_t i = 0; i < n; i++) {
        expect(&f[i]);
        FUZZ_REQUIRE(handler_request(h, f[i].payload, f[i].len, &reps[i]) == MXC_OK, "handler_request");
        ndeferred += reps[i].deferred;
    }
    if (pol == pol_a) {
        FUZZ_REQUIRE(handler_commit(h, reps, n) == MXC_OK, "handler_commit");
    } else {
        bool need_sync = true;
        FUZZ_REQUIRE(handler_commit_nowait(h, reps, n, &need_sync) == MXC_OK && !need_sync,
                     "handler_commit_nowait");
    }
    FUZZ_REQUIRE(handler_has_deferred(h) == (ndeferred > 0), "deferred requests lost");
    for (size_t i = 0; i < n; i++) {
        struct handler_reply *r = &reps[i];
        if (r->deferred) {
            FUZZ_REQUIRE(!r->buf && !r->verify && f[i].body == MXCACHE__REQUEST__BODY_COMPACT,
                         "a deferred reply to body %d", (int)f[i].body);
            struct handler_reply out;
            FUZZ_REQUIRE(handler_run_deferred(h, &out) == MXC_OK, "handler_run_deferred");
            FUZZ_REQUIRE(out.id == r->id, "deferred replies out of order");
            check_reply(&out, f[i].id, f[i].body);
            free(out.buf);
            continue;
        }
        if (r->verify && r->verify->park) {
            FUZZ_REQUIRE(!r->buf, "a reply and a probe to wait for");
            FUZZ_REQUIRE(f[i].body == MXCACHE__REQUEST__BODY_CHECK || f[i].body == MXCACHE__REQUEST__BODY_VERIFY,
                         "body %d waits for a probe", (int)f[i].body);
            continue; /* after the round, as the service does */
        }
        check_reply(r, f[i].id, f[i].body);
        free(r->buf);
        r->buf = NULL;
        handler_verify_free(r->verify); /* a background refresh: the prober's business */
        r->verify = NULL;
    }
    FUZZ_REQUIRE(!handler_has_deferred(h), "a deferred request without a reply");
    for (size_t i = 0; i < n; i++)
        if (reps[i].verify)
            finish_probe(pol, reps[i].verify, f[i].id, (f[i].ctl >> 4) & 7);
}

/* ---- emptying the store ---- */

struct keys {
    char **k;
    size_t *len, n, cap;
};

static int collect(void *arg, const char *key, size_t keylen, const char *val, size_t vallen)
{
    struct keys *ks = arg;
    (void)val;
    (void)vallen;
    if (ks->n == ks->cap) {
        ks->cap = ks->cap ? 2 * ks->cap : 64;
        ks->k = realloc(ks->k, ks->cap * sizeof *ks->k);
        ks->len = realloc(ks->len, ks->cap * sizeof *ks->len);
        FUZZ_REQUIRE(ks->k && ks->len, "out of memory");
    }
    FUZZ_REQUIRE((ks->k[ks->n] = malloc(keylen ? keylen : 1)) != NULL, "out of memory");
    memcpy(ks->k[ks->n], key, keylen);
    ks->len[ks->n++] = keylen;
    return 0;
}

static void empty_store(void)
{
    char err[256];
    store_batch *b = store_batch_create(st);
    bool whitelist = false;

    FUZZ_REQUIRE(b != NULL, "store_batch_create");
    for (int ks = MXCACHE__KEYSPACE__KEYSPACE_VERIFY; ks <= MXCACHE__KEYSPACE__KEYSPACE_WHITELIST; ks++) {
        struct keys keys = {0};
        FUZZ_REQUIRE(store_scan(st, (Mxcache__Keyspace)ks, NULL, 0, NULL, 0, true, collect, &keys, err,
                                sizeof err) == MXC_OK,
                     "store_scan: %s", err);
        for (size_t i = 0; i < keys.n; i++) {
            FUZZ_REQUIRE(store_batch_delete(b, (Mxcache__Keyspace)ks, keys.k[i], keys.len[i]) == MXC_OK,
                         "store_batch_delete");
            free(keys.k[i]);
        }
        whitelist |= ks == MXCACHE__KEYSPACE__KEYSPACE_WHITELIST && keys.n > 0;
        free(keys.k);
        free(keys.len);
    }
    FUZZ_REQUIRE(store_batch_commit(b, err, sizeof err) == MXC_OK, "store_batch_commit: %s", err);
    store_batch_destroy(b);
    if (whitelist)
        FUZZ_REQUIRE(wl_load(wl, st, err, sizeof err) == MXC_OK, "wl_load: %s", err);
    FUZZ_REQUIRE(wl_count(wl) == 0, "whitelist entries left");
    /* Deletes leave tombstones that every scan walks: drop them now and then. */
    if (++inputs % COMPACT_EVERY == 0)
        FUZZ_REQUIRE(store_compact(st, MXCACHE__KEYSPACE__KEYSPACE_UNSPECIFIED, err, sizeof err) == MXC_OK,
                     "store_compact: %s", err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct frame f[MAX_FRAMES];
    size_t n = 0, start = 0, off = 0;

    clock_now = T0_MS;
    while (off < size && n < MAX_FRAMES) {
        f[n].ctl = data[off++];
        size_t len = off < size ? data[off++] : 0;
        if (off < size)
            len |= (size_t)data[off++] << 8;
        if (len > size - off)
            len = size - off;
        uint8_t *copy = malloc(len ? len : 1);
        FUZZ_REQUIRE(copy != NULL, "out of memory");
        memcpy(copy, data + off, len);
        f[n].payload = copy;
        f[n].len = len;
        off += len;
        n++;
        if ((f[n - 1].ctl & 0x08) || off >= size || n == MAX_FRAMES) {
            round_run(f + start, n - start);
            start = n;
        }
    }
    for (size_t i = 0; i < n; i++)
        free((void *)f[i].payload);
    empty_store();
    return 0;
}
