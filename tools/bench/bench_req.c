/* Requests and replies of mxcache-bench (see bench.h): pre-packed templates, the per-request
 * envelope, and decoding of replies without malloc.
 *
 * Owns nothing but the templates' bytes. A request is the template's body, packed once by
 * protobuf-c, with the envelope (version, id, body tag and length) written in front and the one
 * varying field appended behind. Protobuf lets a field appear after the others, so the result is
 * a well-formed Request; bench_req_init decodes a sample with wire_request_unpack to prove it.
 * Replies are untrusted: they are decoded by protobuf-c into a bounded arena, and one that does
 * not fit counts as unexpected. */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mxc_err.h"
#include "wire.h"

#define WIRETYPE_LEN 2u
#define REQ_FIELD_VERSION 1u
#define REQ_FIELD_ID 2u
#define CHECK_FIELD_RECIPIENT 5u
#define WLADD_FIELD_VALUE 2u
#define HIT_CLIENT "198.18.0.1"
#define HIT_NETWORK "198.18.0.0/15"  /* RFC 2544 benchmarking range, never routed */
#define MISS_CLIENT "192.0.2.1"      /* RFC 5737 TEST-NET-1 */
#define RCPT_DOMAIN "@example.com"
#define VALUE_MAX 64                 /* longest varying value: "user<20 digits>@example.com" */

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

/* var_value - the varying field's text for key into v (VALUE_MAX bytes, not terminated). */
static size_t var_value(const struct bench_req *t, uint64_t key, char *v)
{
    size_t n = 0;

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

size_t bench_req_build(const struct bench_req *t, uint64_t id, uint64_t key, uint8_t *buf)
{
    char value[VALUE_MAX];
    size_t vlen = var_value(t, key, value);
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

/* self_test - decodes a built request and compares it with what was meant. */
static int self_test(const struct bench_req *t, char *err, size_t errlen)
{
    uint8_t buf[BENCH_REQ_MAX];
    char want[VALUE_MAX + 1];
    const uint64_t id = 0x1234567890ull, key = 4242;
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

int bench_req_init(struct bench_req *t, enum bench_workload w, char *err, size_t errlen)
{
    const ProtobufCMessage *body;
    Mxcache__CheckRequest cq = MXCACHE__CHECK_REQUEST__INIT;
    Mxcache__WhitelistAddRequest aq = MXCACHE__WHITELIST_ADD_REQUEST__INIT;

    memset(t, 0, sizeof *t);
    t->workload = w;
    if (w == BENCH_WHITELIST_ADD) {
        aq.kind = MXCACHE__WHITELIST_KIND__WHITELIST_CLIENT;
        aq.comment = "mxcache-bench";
        aq.ttl_ms = BENCH_WL_TTL_MS;
        t->body_field = MXCACHE__REQUEST__BODY_WHITELIST_ADD;
        t->var_field = WLADD_FIELD_VALUE;
        body = &aq.base;
    } else {
        /* What Postfix sends for a RCPT; only the recipient changes between requests. */
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
     * tags, VALUE_MAX of value. */
    if (protobuf_c_message_get_packed_size(body) > sizeof t->body ||
        protobuf_c_message_get_packed_size(body) + 32 + VALUE_MAX > BENCH_REQ_MAX) {
        snprintf(err, errlen, "internal error: request template too large");
        return MXC_EPROTO;
    }
    t->bodylen = protobuf_c_message_pack(body, t->body);
    return self_test(t, err, errlen);
}

int bench_req_setup(const struct bench_req *t, uint64_t id, uint8_t **buf, size_t *len)
{
    Mxcache__Request req = MXCACHE__REQUEST__INIT;
    Mxcache__WhitelistAddRequest aq = MXCACHE__WHITELIST_ADD_REQUEST__INIT;

    if (t->workload != BENCH_CHECK_HIT) {
        *buf = malloc(BENCH_REQ_MAX);
        if (!*buf)
            return MXC_ENOMEM;
        *len = bench_req_build(t, id, 0, *buf);
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
                                      char *errtext, size_t errlen)
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
