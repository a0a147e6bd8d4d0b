/* Requests and replies of mxcache-bench (see bench.h): pre-packed templates, the per-request
 * envelope, and decoding of replies without malloc; greylisting triplets and the Postfix policy
 * protocol's requests and replies, as text, without I/O.
 *
 * Owns nothing but the templates' bytes. A request is the template's body, packed once by
 * protobuf-c, with the envelope (version, id, body tag and length) written in front and the one
 * varying field appended behind. Protobuf lets a field appear after the others, so the result is
 * a well-formed Request; bench_req_init decodes a sample with wire_request_unpack to prove it.
 * Replies are untrusted: they are decoded by protobuf-c into a bounded arena, and one that does
 * not fit counts as unexpected. */
#include "bench.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mxc_err.h"
#include "wire.h"

#define WIRETYPE_LEN 2u
#define REQ_FIELD_VERSION 1u
#define REQ_FIELD_ID 2u
#define CHECK_FIELD_CLIENT 1u
#define CHECK_FIELD_SENDER 4u
#define CHECK_FIELD_RECIPIENT 5u
#define WLADD_FIELD_VALUE 2u
#define HIT_CLIENT "198.18.0.1"
#define HIT_NETWORK "198.18.0.0/15"  /* RFC 2544 benchmarking range, never routed */
#define MISS_CLIENT "192.0.2.1"      /* RFC 5737 TEST-NET-1 */
#define RCPT_DOMAIN "@example.com"
#define VALUE_MAX 192                /* longest varying value: "vnew<6 letters>x<20 digits>@"
                                      * and a domain of BENCH_DOMAIN_MAX */
#define VPOOL_PREFIX "vpool"         /* verify-*: pool addresses vpool<k>@D */
#define VNEW_PREFIX "vnew"           /* verify-probe: vnew<nonce>x<n>@D */
#define TRIP_HELO "mail.sender.example.net"
#define TRIP_SENDER_DOMAIN "@sender.example.net"
#define TRIP_RCPT_DOMAIN "@example.com"
#define LETTERS "ghijklmnopqrstuvwxyz" /* no digits, no hex: nothing a normalization folds */
#define NLETTERS 20u
#define NONCE_LETTERS 6u             /* the nonce is below 20^6 */
#define NEW_NETS (89u << 16)         /* /24s of 11.0.0.0-99.255.255.255 for new triplets */

/* put_varint - writes v as a protobuf varint at p; returns the bytes written (1-10). */
static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* put_decimal - writes v in decimal at p without a terminator; returns the digits written. */
static size_t put_decimal(char *p, uint64_t v)
{
    char tmp[20];
    size_t n = 0, i;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

/* put_letters - writes v in base 20 with the letters g-z at p, at least width letters (padded
 * with 'g'); returns the letters written (at most 15 for 64 bits). */
static size_t put_letters(char *p, uint64_t v, size_t width)
{
    char tmp[16];
    size_t n = 0, i;

    do {
        tmp[n++] = LETTERS[v % NLETTERS];
        v /= NLETTERS;
    } while (v);
    while (n < width)
        tmp[n++] = LETTERS[0];
    for (i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

/* put_verify_addr - pool address k (is_new false) or new address k of the run (is_new true) in
 * t's domain at v (VALUE_MAX bytes, not terminated); returns its length. */
static size_t put_verify_addr(const struct bench_req *t, bool is_new, uint64_t k, char *v)
{
    size_t n;

    if (is_new) {
        memcpy(v, VNEW_PREFIX, sizeof VNEW_PREFIX - 1);
        n = sizeof VNEW_PREFIX - 1;
        n += put_letters(v + n, t->nonce, NONCE_LETTERS);
        v[n++] = 'x';
    } else {
        memcpy(v, VPOOL_PREFIX, sizeof VPOOL_PREFIX - 1);
        n = sizeof VPOOL_PREFIX - 1;
    }
    n += put_decimal(v + n, k);
    memcpy(v + n, t->domain, t->domainlen);
    return n + t->domainlen;
}

/* var_value - the varying field's text for key into v (VALUE_MAX bytes, not terminated). */
static size_t var_value(const struct bench_req *t, uint64_t key, char *v)
{
    size_t n = 0;

    if (bench_is_verify(t->workload))
        return put_verify_addr(t, t->workload == BENCH_VERIFY_PROBE, key, v);
    if (t->workload == BENCH_WHITELIST_ADD) {
        /* Distinct host addresses 10.a.b.c, one per key (BENCH_MAX_KEYS < 2^24). */
        memcpy(v, "10.", 3);
        n = 3;
        n += put_decimal(v + n, (key >> 16) & 0xff);
        v[n++] = '.';
        n += put_decimal(v + n, (key >> 8) & 0xff);
        v[n++] = '.';
        n += put_decimal(v + n, key & 0xff);
        return n;
    }
    memcpy(v, "user", 4);
    n = 4;
    n += put_decimal(v + n, key);
    memcpy(v + n, RCPT_DOMAIN, sizeof RCPT_DOMAIN - 1);
    return n + sizeof RCPT_DOMAIN - 1;
}

/* build_value - the request with this id and the varying field value (vlen bytes) into buf. */
static size_t build_value(const struct bench_req *t, uint64_t id, const char *value, size_t vlen,
                          uint8_t *buf)
{
    uint64_t vtag = ((uint64_t)t->var_field << 3) | WIRETYPE_LEN;
    size_t varlen = varint_len(vtag) + varint_len(vlen) + vlen;
    size_t n = 0;

    n += put_varint(buf + n, (REQ_FIELD_VERSION << 3) | 0);
    n += put_varint(buf + n, WIRE_VERSION);
    n += put_varint(buf + n, (REQ_FIELD_ID << 3) | 0);
    n += put_varint(buf + n, id);
    n += put_varint(buf + n, ((uint64_t)t->body_field << 3) | WIRETYPE_LEN);
    n += put_varint(buf + n, t->bodylen + varlen);
    memcpy(buf + n, t->body, t->bodylen);
    n += t->bodylen;
    n += put_varint(buf + n, vtag);
    n += put_varint(buf + n, vlen);
    memcpy(buf + n, value, vlen);
    return n + vlen;
}

size_t bench_req_build(const struct bench_req *t, uint64_t id, uint64_t key, uint8_t *buf)
{
    char value[VALUE_MAX];

    return build_value(t, id, value, var_value(t, key, value), buf);
}

size_t bench_req_build_pool(const struct bench_req *t, uint64_t id, uint64_t k, uint8_t *buf)
{
    char value[VALUE_MAX];

    if (!bench_is_verify(t->workload))
        return bench_req_build(t, id, k, buf);
    return build_value(t, id, value, put_verify_addr(t, false, k, value), buf);
}

/* put_field - writes string field number field (len bytes of s) at p; returns the bytes written. */
static size_t put_field(uint8_t *p, uint32_t field, const char *s, size_t len)
{
    size_t n = put_varint(p, ((uint64_t)field << 3) | WIRETYPE_LEN);
    n += put_varint(p + n, len);
    memcpy(p + n, s, len);
    return n + len;
}

static size_t field_len(uint32_t field, size_t len)
{
    return varint_len(((uint64_t)field << 3) | WIRETYPE_LEN) + varint_len(len) + len;
}

size_t bench_req_build_triplet(const struct bench_req *t, uint64_t id, const struct bench_triplet *tr,
                               uint8_t *buf)
{
    size_t varlen = field_len(CHECK_FIELD_CLIENT, tr->clientlen) +
                    field_len(CHECK_FIELD_SENDER, tr->senderlen) +
                    field_len(CHECK_FIELD_RECIPIENT, tr->recipientlen);
    size_t n = 0;

    n += put_varint(buf + n, (REQ_FIELD_VERSION << 3) | 0);
    n += put_varint(buf + n, WIRE_VERSION);
    n += put_varint(buf + n, (REQ_FIELD_ID << 3) | 0);
    n += put_varint(buf + n, id);
    n += put_varint(buf + n, ((uint64_t)t->body_field << 3) | WIRETYPE_LEN);
    n += put_varint(buf + n, t->bodylen + varlen);
    memcpy(buf + n, t->body, t->bodylen);
    n += t->bodylen;
    n += put_field(buf + n, CHECK_FIELD_CLIENT, tr->client, tr->clientlen);
    n += put_field(buf + n, CHECK_FIELD_SENDER, tr->sender, tr->senderlen);
    n += put_field(buf + n, CHECK_FIELD_RECIPIENT, tr->recipient, tr->recipientlen);
    return n;
}

/* self_test_triplet - decodes a built triplet Check and compares it with what was meant. */
static int self_test_triplet(const struct bench_req *t, char *err, size_t errlen)
{
    uint8_t buf[BENCH_REQ_MAX];
    struct bench_triplet tr;
    const uint64_t id = 0x1234567890ull;
    Mxcache__Request *r;
    int ok;

    bench_triplet_make(true, UINT64_MAX, BENCH_MAX_KEYS, &tr); /* the longest there is */
    r = wire_request_unpack(buf, bench_req_build_triplet(t, id, &tr, buf));
    ok = r && r->version == WIRE_VERSION && r->id == id &&
         r->body_case == MXCACHE__REQUEST__BODY_CHECK &&
         strcmp(r->check->client_address, tr.client) == 0 &&
         strcmp(r->check->sender, tr.sender) == 0 && strcmp(r->check->recipient, tr.recipient) == 0 &&
         strcmp(r->check->protocol_state, "RCPT") == 0;
    if (r)
        mxcache__request__free_unpacked(r, NULL);
    if (!ok) {
        snprintf(err, errlen, "internal error: a built triplet request does not decode as intended");
        return MXC_EPROTO;
    }
    return MXC_OK;
}

/* self_test - decodes a built request and compares it with what was meant. */
static int self_test(const struct bench_req *t, char *err, size_t errlen)
{
    uint8_t buf[BENCH_REQ_MAX];
    char want[VALUE_MAX + 1];
    const uint64_t id = 0x1234567890ull;
    const uint64_t key = t->workload == BENCH_VERIFY_PROBE ? UINT64_MAX : 4242; /* the longest */
    size_t len = bench_req_build(t, id, key, buf);
    Mxcache__Request *r = wire_request_unpack(buf, len);
    const char *got = NULL;
    int ok;

    want[var_value(t, key, want)] = '\0';
    if (r && r->body_case == MXCACHE__REQUEST__BODY_CHECK)
        got = r->check->recipient;
    else if (r && r->body_case == MXCACHE__REQUEST__BODY_WHITELIST_ADD)
        got = r->whitelist_add->value;
    ok = r && r->version == WIRE_VERSION && r->id == id && (uint32_t)r->body_case == t->body_field &&
         got && strcmp(got, want) == 0;
    if (r)
        mxcache__request__free_unpacked(r, NULL);
    if (!ok) {
        snprintf(err, errlen, "internal error: a built request does not decode as intended");
        return MXC_EPROTO;
    }
    return MXC_OK;
}

int bench_req_init(struct bench_req *t, const struct bench_opts *o, char *err, size_t errlen)
{
    const ProtobufCMessage *body;
    Mxcache__CheckRequest cq = MXCACHE__CHECK_REQUEST__INIT;
    Mxcache__WhitelistAddRequest aq = MXCACHE__WHITELIST_ADD_REQUEST__INIT;
    enum bench_workload w = o->workload;

    memset(t, 0, sizeof *t);
    t->workload = w;
    if (bench_is_verify(w)) {
        const char *d = o->domain ? o->domain : BENCH_DEFAULT_DOMAIN;
        size_t dl = strlen(d);
        if (dl == 0 || dl > BENCH_DOMAIN_MAX) {
            snprintf(err, errlen, "internal error: --domain of %zu bytes", dl);
            return MXC_EPROTO;
        }
        t->domain[0] = '@';
        memcpy(t->domain + 1, d, dl);
        t->domainlen = dl + 1;
        t->nonce = o->nonce;
    }
    if (w == BENCH_WHITELIST_ADD) {
        aq.kind = MXCACHE__WHITELIST_KIND__WHITELIST_CLIENT;
        aq.comment = "mxcache-bench";
        aq.ttl_ms = BENCH_WL_TTL_MS;
        t->body_field = MXCACHE__REQUEST__BODY_WHITELIST_ADD;
        t->var_field = WLADD_FIELD_VALUE;
        body = &aq.base;
    } else if (w == BENCH_TRIPLETS) {
        /* What Postfix sends for a RCPT from a client without a confirmed name; client, sender
         * and recipient are appended per request. */
        cq.client_name = "unknown";
        cq.helo_name = TRIP_HELO;
        cq.protocol_state = "RCPT";
        cq.mx_name = "mxcache-bench";
        t->body_field = MXCACHE__REQUEST__BODY_CHECK;
        t->var_field = CHECK_FIELD_RECIPIENT;
        body = &cq.base;
    } else {
        /* What Postfix sends for a RCPT; only the recipient changes between requests. The
         * verification workloads come from one client, as a benchmark with
         * verify.client_probes_per_minute = 0 may. */
        cq.client_address = w == BENCH_CHECK_HIT ? HIT_CLIENT : MISS_CLIENT;
        cq.client_name = "mx.bench.example";
        cq.helo_name = "mx.bench.example";
        cq.sender = "sender@bench.example";
        cq.protocol_state = "RCPT";
        cq.mx_name = "mxcache-bench";
        cq.queue_id = "BENCH0001";
        t->body_field = MXCACHE__REQUEST__BODY_CHECK;
        t->var_field = CHECK_FIELD_RECIPIENT;
        body = &cq.base;
    }
    /* The template plus the envelope and value must fit BENCH_REQ_MAX: 32 bytes of envelope and
     * tags, VALUE_MAX of value (a triplet: three values with their tags). */
    if (protobuf_c_message_get_packed_size(body) > sizeof t->body ||
        protobuf_c_message_get_packed_size(body) + 32 + VALUE_MAX > BENCH_REQ_MAX ||
        protobuf_c_message_get_packed_size(body) + 32 + 3 * (BENCH_TRIPLET_ADDR_MAX + 4) >
            BENCH_REQ_MAX) {
        snprintf(err, errlen, "internal error: request template too large");
        return MXC_EPROTO;
    }
    t->bodylen = protobuf_c_message_pack(body, t->body);
    return w == BENCH_TRIPLETS ? self_test_triplet(t, err, errlen) : self_test(t, err, errlen);
}

int bench_req_setup(const struct bench_req *t, uint64_t id, uint8_t **buf, size_t *len)
{
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__WhitelistAddRequest aq = MXCACHE__WHITELIST_ADD_REQUEST__INIT;

    if (t->workload == BENCH_TRIPLETS) {
        struct bench_triplet tr;
        bench_triplet_make(false, 0, 0, &tr);
        *buf = malloc(BENCH_REQ_MAX);
        if (!*buf)
            return MXC_ENOMEM;
        *len = bench_req_build_triplet(t, id, &tr, *buf);
        return MXC_OK;
    }
    if (t->workload != BENCH_CHECK_HIT) {
        *buf = malloc(BENCH_REQ_MAX);
        if (!*buf)
            return MXC_ENOMEM;
        *len = bench_req_build_pool(t, id, 0, *buf);
        return MXC_OK;
    }
    aq.kind = MXCACHE__WHITELIST_KIND__WHITELIST_CLIENT;
    aq.value = HIT_NETWORK;
    aq.comment = "mxcache-bench check-hit";
    aq.ttl_ms = BENCH_WL_TTL_MS;
    req.version = WIRE_VERSION;
    req.id = id;
    req.body_case = MXCACHE__REQUEST__BODY_WHITELIST_ADD;
    req.whitelist_add = &aq;
    return wire_request_pack(&req, buf, len);
}

/* ---- replies ---- */

static void *arena_alloc(void *data, size_t size)
{
    struct bench_arena *a = data;
    size_t at = (a->used + 15) & ~(size_t)15;

    if (size > sizeof a->mem || at > sizeof a->mem - size)
        return NULL;
    a->used = at + size;
    return a->mem + at;
}

static void arena_free(void *data, void *p)
{
    /* Everything goes at once when the arena is reset for the next reply. */
    (void)data;
    (void)p;
}

/* clean_rule - the rule name s, characters outside printable ASCII replaced, capped, into out. */
static void clean_rule(const char *s, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s", s ? s : "(none)");
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
}

static const char *const rule_names[BENCH_RULES] = {
    [BENCH_RULE_POSITIVE] = "verify_positive", [BENCH_RULE_NEGATIVE] = "verify_negative",
    [BENCH_RULE_PENDING] = "verify_pending",   [BENCH_RULE_TEMPFAIL] = "verify_tempfail",
    [BENCH_RULE_REFUSED] = "verify_refused",   [BENCH_RULE_ACCEPTALL] = "verify_acceptall",
    [BENCH_RULE_OTHER] = "other",
};

const char *bench_rule_name(enum bench_rule r)
{
    return r < BENCH_RULES ? rule_names[r] : "other";
}

bool bench_rule_expected(enum bench_workload w, enum bench_rule r)
{
    if (w == BENCH_VERIFY_HIT)
        return r == BENCH_RULE_POSITIVE;
    return w == BENCH_VERIFY_PROBE && (r == BENCH_RULE_POSITIVE || r == BENCH_RULE_NEGATIVE);
}

/* rule_of - the class of rule name s (NULL: none). */
static enum bench_rule rule_of(const char *s)
{
    if (s)
        for (int r = 0; r < BENCH_RULE_OTHER; r++)
            if (strcmp(s, rule_names[r]) == 0)
                return (enum bench_rule)r;
    return BENCH_RULE_OTHER;
}

/* clean_copy - "name: message" of an error reply, control characters replaced, into out. */
static void clean_copy(const Mxcache__Error *e, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s: %s", wire_error_name(e->code), e->message ? e->message : "");
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
}

enum bench_verdict bench_req_classify(const struct bench_req *t, struct bench_arena *arena,
                                      const uint8_t *buf, size_t len, uint64_t *id,
                                      char *errtext, size_t errlen, enum bench_class *cls,
                                      enum bench_rule *rule)
{
    ProtobufCAllocator alloc = {.alloc = arena_alloc, .free = arena_free, .allocator_data = arena};
    Mxcache__Reply *r;

    arena->used = 0;
    *id = 0;
    r = mxcache__reply__unpack(&alloc, len, buf);
    if (!r)
        return BENCH_REPLY_UNEXPECTED;
    *id = r->id;
    if (r->version != WIRE_VERSION)
        return BENCH_REPLY_UNEXPECTED;
    switch (r->body_case) {
    case MXCACHE__REPLY__BODY_ERROR:
        if (errtext && errlen)
            clean_copy(r->error, errtext, errlen);
        return BENCH_REPLY_ERROR;
    case MXCACHE__REPLY__BODY_CHECK: {
        if (bench_is_verify(t->workload)) {
            *rule = rule_of(r->check->rule);
            if (*rule == BENCH_RULE_OTHER && errtext && errlen)
                clean_rule(r->check->rule, errtext, errlen < BENCH_RULE_NAME_MAX ? errlen : BENCH_RULE_NAME_MAX);
            return BENCH_REPLY_OK;
        }
        if (t->workload == BENCH_TRIPLETS) {
            *cls = r->check->action == MXCACHE__ACTION__ACTION_DUNNO    ? BENCH_CLASS_ACCEPT
                   : r->check->action == MXCACHE__ACTION__ACTION_DEFER  ? BENCH_CLASS_DEFER
                   : r->check->action == MXCACHE__ACTION__ACTION_REJECT ? BENCH_CLASS_REJECT
                                                                        : BENCH_CLASS_OTHER;
            return BENCH_REPLY_OK;
        }
        const char *want = t->workload == BENCH_CHECK_HIT ? "whitelist" : "default";
        if (t->workload == BENCH_WHITELIST_ADD || !r->check->rule || strcmp(r->check->rule, want) != 0)
            return BENCH_REPLY_UNEXPECTED;
        return BENCH_REPLY_OK;
    }
    case MXCACHE__REPLY__BODY_WHITELIST_ADD:
        return t->workload == BENCH_WHITELIST_ADD ? BENCH_REPLY_OK : BENCH_REPLY_UNEXPECTED;
    default:
        return BENCH_REPLY_UNEXPECTED;
    }
}

/* ---- greylisting triplets ---- */

/* put_quad - writes a.b.c.d at p; returns the length. */
static size_t put_quad(char *p, unsigned a, unsigned b, unsigned c, unsigned d)
{
    size_t n = put_decimal(p, a);
    p[n++] = '.';
    n += put_decimal(p + n, b);
    p[n++] = '.';
    n += put_decimal(p + n, c);
    p[n++] = '.';
    return n + put_decimal(p + n, d);
}

/* put_addr - writes prefix letter, the nonce (new triplets), k in letters and domain at p. */
static size_t put_addr(char *p, char prefix, bool is_new, uint64_t nonce, uint64_t k,
                       const char *domain, size_t domainlen)
{
    size_t n = 0;

    p[n++] = prefix;
    if (is_new)
        n += put_letters(p + n, nonce, NONCE_LETTERS);
    n += put_letters(p + n, k, 1);
    memcpy(p + n, domain, domainlen);
    n += domainlen;
    p[n] = '\0';
    return n;
}

void bench_triplet_make(bool is_new, uint64_t k, uint64_t nonce, struct bench_triplet *t)
{
    if (is_new) {
        uint32_t net = (uint32_t)(k % NEW_NETS);
        t->clientlen = (uint8_t)put_quad(t->client, 11 + (net >> 16), (net >> 8) & 0xff, net & 0xff,
                                         1 + (unsigned)(k % 254));
    } else {
        t->clientlen = (uint8_t)put_quad(t->client, 10, (k >> 8) & 0xff, k & 0xff,
                                         1 + (unsigned)((k >> 16) % 254));
    }
    t->client[t->clientlen] = '\0';
    t->senderlen = (uint8_t)put_addr(t->sender, is_new ? 'n' : 'p', is_new, nonce, k,
                                     TRIP_SENDER_DOMAIN, sizeof TRIP_SENDER_DOMAIN - 1);
    t->recipientlen = (uint8_t)put_addr(t->recipient, is_new ? 'm' : 'r', is_new, nonce, k,
                                        TRIP_RCPT_DOMAIN, sizeof TRIP_RCPT_DOMAIN - 1);
}

/* next_random - xorshift64*: fast, and plenty for choosing between new and repeated. */
static uint64_t next_random(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * UINT64_C(0x2545F4914F6CDD1D);
}

void bench_pick_init(struct bench_picker *p, const struct bench_opts *o, unsigned thread,
                     _Atomic uint64_t *shared_key)
{
    memset(p, 0, sizeof *p);
    p->rng = (o->nonce + 1) * UINT64_C(0x9E3779B97F4A7C15) + thread + 1;
    p->all_new = o->new_ratio >= 1.0;
    p->threshold = o->new_ratio <= 0 ? 0 : (uint64_t)(o->new_ratio * 18446744073709551616.0);
    if (o->prewarm)
        p->all_new = false, p->threshold = 0;
    p->keys = o->keys;
    p->key = (uint64_t)thread * (o->keys / o->threads);
    p->new_next = thread;
    p->new_step = o->threads;
    p->nonce = o->nonce;
    p->shared_key = o->prewarm ? shared_key : NULL;
}

bool bench_pick_next(struct bench_picker *p, struct bench_triplet *t)
{
    if (p->shared_key) {
        uint64_t k = atomic_fetch_add(p->shared_key, 1);
        if (k >= p->keys)
            return false;
        bench_triplet_make(false, k, 0, t);
        return true;
    }
    if (p->all_new || (p->threshold && next_random(&p->rng) < p->threshold)) {
        bench_triplet_make(true, p->new_next, p->nonce, t);
        p->new_next += p->new_step;
        return true;
    }
    bench_triplet_make(false, p->key, 0, t);
    if (++p->key == p->keys)
        p->key = 0;
    return true;
}

/* ---- the Postfix policy protocol ---- */

#define APPEND(lit)                                                                                \
    do {                                                                                           \
        memcpy(buf + n, lit, sizeof lit - 1);                                                      \
        n += sizeof lit - 1;                                                                       \
    } while (0)

/* put_hex - writes v in lower-case hex at p; returns the digits written. */
static size_t put_hex(char *p, uint64_t v)
{
    char tmp[16];
    size_t n = 0, i;

    do {
        tmp[n++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    for (i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

size_t bench_req_policy_build(const struct bench_triplet *t, uint64_t seq, char *buf)
{
    size_t n = 0;

    /* Every attribute of SMTPD_POLICY_README (Postfix 2.1 to 3.7), in its order, with the values
     * of a plain ESMTP session at RCPT TO: no TLS, no SASL, no queue file yet (the default
     * smtpd_delay_open_until_valid_rcpt), recipient_count 0 before DATA. */
    APPEND("request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nhelo_name=" TRIP_HELO
           "\nqueue_id=\nsender=");
    memcpy(buf + n, t->sender, t->senderlen);
    n += t->senderlen;
    APPEND("\nrecipient=");
    memcpy(buf + n, t->recipient, t->recipientlen);
    n += t->recipientlen;
    APPEND("\nrecipient_count=0\nclient_address=");
    memcpy(buf + n, t->client, t->clientlen);
    n += t->clientlen;
    APPEND("\nclient_name=unknown\nreverse_client_name=unknown\ninstance=");
    /* Postfix's instance: hex numbers that stay the same for every recipient of one message;
     * here every request is a message of its own. */
    n += put_hex(buf + n, 0x1000 + (seq >> 32));
    buf[n++] = '.';
    n += put_hex(buf + n, seq & 0xffffffffu);
    APPEND(".0\nsasl_method=\nsasl_username=\nsasl_sender=\nsize=");
    n += put_decimal(buf + n, 1000 + seq % 50000);
    APPEND("\nccert_subject=\nccert_issuer=\nccert_fingerprint=\nencryption_protocol=\n"
           "encryption_cipher=\nencryption_keysize=0\netrn_domain=\nstress=\n"
           "ccert_pubkey_fingerprint=\nclient_port=");
    n += put_decimal(buf + n, 1024 + seq % 64000);
    APPEND("\npolicy_context=\nserver_address=127.0.0.1\nserver_port=25\n\n");
    return n;
}

/* word_is - whether the len bytes at s are the word w, ignoring case. */
static bool word_is(const char *s, size_t len, const char *w)
{
    return strlen(w) == len && strncasecmp(s, w, len) == 0;
}

enum bench_class bench_req_action_class(const char *action, size_t len)
{
    size_t i = 0, w;

    while (i < len && (action[i] == ' ' || action[i] == '\t'))
        i++;
    action += i;
    len -= i;
    for (w = 0; w < len && action[w] != ' ' && action[w] != '\t'; w++)
        ;
    if (w == 3 && action[0] >= '2' && action[0] <= '5' && action[1] >= '0' && action[1] <= '9' &&
        action[2] >= '0' && action[2] <= '9')
        return action[0] == '4'   ? BENCH_CLASS_DEFER
               : action[0] == '5' ? BENCH_CLASS_REJECT
                                  : BENCH_CLASS_OTHER;
    if (word_is(action, w, "DUNNO") || word_is(action, w, "OK") || word_is(action, w, "PREPEND"))
        return BENCH_CLASS_ACCEPT;
    if (word_is(action, w, "DEFER") || word_is(action, w, "DEFER_IF_PERMIT") ||
        word_is(action, w, "DEFER_IF_REJECT"))
        return BENCH_CLASS_DEFER;
    if (word_is(action, w, "REJECT"))
        return BENCH_CLASS_REJECT;
    return BENCH_CLASS_OTHER;
}

long bench_req_policy_reply(const char *buf, size_t len, enum bench_class *cls)
{
    size_t pos = 0;
    bool have_action = false, full = len >= BENCH_POLICY_REPLY_MAX;

    if (full)
        len = BENCH_POLICY_REPLY_MAX;
    while (pos < len) {
        const char *line = buf + pos;
        const char *nl = memchr(line, '\n', len - pos);
        if (!nl)
            break;
        size_t ll = (size_t)(nl - line);
        if (memchr(line, '\0', ll))
            return -1;
        pos += ll + 1;
        if (ll == 0)
            return have_action ? (long)pos : -1;
        const char *eq = memchr(line, '=', ll);
        if (!eq)
            return -1;
        if (eq - line == 6 && memcmp(line, "action", 6) == 0 && !have_action) {
            *cls = bench_req_action_class(eq + 1, ll - 7);
            have_action = true;
        }
    }
    /* An incomplete line: wait for more, unless the reply is already too long. */
    return full || memchr(buf + pos, '\0', len - pos) ? -1 : 0;
}
