/* check_wire - unit tests of proto/wire.c: Request and Reply round trips with every body kind,
 * hostile bytes (garbage, truncation, oversize, enum values nobody defined) and the enum name
 * tables in both directions. No sockets: the parser is fed bytes. */
#include <check.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "mxc_err.h"
#include "wire.h"

/* pack_request - packs r with wire_request_pack, failing the test on error; free() the result. */
static uint8_t *pack_request(const Mxcache__Request *r, size_t *len)
{
    uint8_t *buf = NULL;

    ck_assert_int_eq(wire_request_pack(r, &buf, len), MXC_OK);
    ck_assert_ptr_nonnull(buf);
    return buf;
}

static uint8_t *pack_reply(const Mxcache__Reply *r, size_t *len)
{
    uint8_t *buf = NULL;

    ck_assert_int_eq(wire_reply_pack(r, &buf, len), MXC_OK);
    ck_assert_ptr_nonnull(buf);
    return buf;
}

static Mxcache__Request *roundtrip_request(const Mxcache__Request *r)
{
    size_t len;
    uint8_t *buf = pack_request(r, &len);
    Mxcache__Request *back = wire_request_unpack(buf, len);

    free(buf);
    ck_assert_ptr_nonnull(back);
    ck_assert_uint_eq(back->version, r->version);
    ck_assert_uint_eq(back->id, r->id);
    ck_assert_int_eq(back->body_case, r->body_case);
    return back;
}

static Mxcache__Reply *roundtrip_reply(const Mxcache__Reply *r)
{
    size_t len;
    uint8_t *buf = pack_reply(r, &len);
    Mxcache__Reply *back = wire_reply_unpack(buf, len);

    free(buf);
    ck_assert_ptr_nonnull(back);
    ck_assert_uint_eq(back->version, r->version);
    ck_assert_uint_eq(back->id, r->id);
    ck_assert_int_eq(back->body_case, r->body_case);
    return back;
}

/* ---- requests, one test per body kind (the loop index selects it) ---- */

START_TEST(test_request_roundtrip)
{
    Mxcache__Request r = MXCACHE__REQUEST__INIT;
    Mxcache__CheckRequest check = MXCACHE__CHECK_REQUEST__INIT;
    Mxcache__GetRequest get = MXCACHE__GET_REQUEST__INIT;
    Mxcache__ListRequest list = MXCACHE__LIST_REQUEST__INIT;
    Mxcache__DeleteRequest del = MXCACHE__DELETE_REQUEST__INIT;
    Mxcache__FlushRequest flush = MXCACHE__FLUSH_REQUEST__INIT;
    Mxcache__StatsRequest stats = MXCACHE__STATS_REQUEST__INIT;
    Mxcache__WhitelistAddRequest wladd = MXCACHE__WHITELIST_ADD_REQUEST__INIT;
    Mxcache__WhitelistRemoveRequest wlrm = MXCACHE__WHITELIST_REMOVE_REQUEST__INIT;
    Mxcache__WhitelistListRequest wllist = MXCACHE__WHITELIST_LIST_REQUEST__INIT;
    Mxcache__CompactRequest compact = MXCACHE__COMPACT_REQUEST__INIT;
    Mxcache__Request *b;

    r.version = WIRE_VERSION;
    r.id = 0x123456789abcdefull + (uint64_t)_i;
    switch (_i) {
    case 0:
        check.client_address = "192.0.2.1";
        check.client_name = "mail.example.org";
        check.helo_name = "mail.example.org";
        check.sender = "";
        check.recipient = "user@example.com";
        check.protocol_state = "RCPT";
        check.mx_name = "mx01";
        check.queue_id = "4ABCDE";
        r.body_case = MXCACHE__REQUEST__BODY_CHECK;
        r.check = &check;
        b = roundtrip_request(&r);
        ck_assert_str_eq(b->check->client_address, "192.0.2.1");
        ck_assert_str_eq(b->check->client_name, "mail.example.org");
        ck_assert_str_eq(b->check->helo_name, "mail.example.org");
        ck_assert_str_eq(b->check->sender, "");
        ck_assert_str_eq(b->check->recipient, "user@example.com");
        ck_assert_str_eq(b->check->protocol_state, "RCPT");
        ck_assert_str_eq(b->check->mx_name, "mx01");
        ck_assert_str_eq(b->check->queue_id, "4ABCDE");
        break;
    case 1:
        get.keyspace = MXCACHE__KEYSPACE__KEYSPACE_VERIFY;
        get.key = "user@example.com";
        r.body_case = MXCACHE__REQUEST__BODY_GET;
        r.get = &get;
        b = roundtrip_request(&r);
        ck_assert_int_eq(b->get->keyspace, MXCACHE__KEYSPACE__KEYSPACE_VERIFY);
        ck_assert_str_eq(b->get->key, "user@example.com");
        break;
    case 2:
        list.keyspace = MXCACHE__KEYSPACE__KEYSPACE_GREYLIST;
        list.prefix = "192.0.2.";
        list.start_after = "192.0.2.0/24";
        list.limit = 500;
        r.body_case = MXCACHE__REQUEST__BODY_LIST;
        r.list = &list;
        b = roundtrip_request(&r);
        ck_assert_int_eq(b->list->keyspace, MXCACHE__KEYSPACE__KEYSPACE_GREYLIST);
        ck_assert_str_eq(b->list->prefix, "192.0.2.");
        ck_assert_str_eq(b->list->start_after, "192.0.2.0/24");
        ck_assert_uint_eq(b->list->limit, 500);
        break;
    case 3:
        del.keyspace = MXCACHE__KEYSPACE__KEYSPACE_AWL;
        del.key = "198.51.100.0/24";
        r.body_case = MXCACHE__REQUEST__BODY_DELETE;
        r.delete_ = &del;
        b = roundtrip_request(&r);
        ck_assert_int_eq(b->delete_->keyspace, MXCACHE__KEYSPACE__KEYSPACE_AWL);
        ck_assert_str_eq(b->delete_->key, "198.51.100.0/24");
        break;
    case 4:
        flush.keyspace = MXCACHE__KEYSPACE__KEYSPACE_VERIFY;
        flush.domain = "example.com";
        flush.state = MXCACHE__RECORD_STATE__STATE_NEGATIVE;
        flush.start_after = "a@example.com";
        flush.dry_run = 1;
        r.body_case = MXCACHE__REQUEST__BODY_FLUSH;
        r.flush = &flush;
        b = roundtrip_request(&r);
        ck_assert_int_eq(b->flush->keyspace, MXCACHE__KEYSPACE__KEYSPACE_VERIFY);
        ck_assert_str_eq(b->flush->domain, "example.com");
        ck_assert_int_eq(b->flush->state, MXCACHE__RECORD_STATE__STATE_NEGATIVE);
        ck_assert_str_eq(b->flush->start_after, "a@example.com");
        ck_assert(b->flush->dry_run);
        break;
    case 5:
        r.body_case = MXCACHE__REQUEST__BODY_STATS;
        r.stats = &stats;
        b = roundtrip_request(&r);
        ck_assert_ptr_nonnull(b->stats);
        break;
    case 6:
        wladd.kind = MXCACHE__WHITELIST_KIND__WHITELIST_CLIENT;
        wladd.value = "2001:db8::/32";
        wladd.comment = "partner";
        wladd.ttl_ms = 86400000;
        r.body_case = MXCACHE__REQUEST__BODY_WHITELIST_ADD;
        r.whitelist_add = &wladd;
        b = roundtrip_request(&r);
        ck_assert_int_eq(b->whitelist_add->kind, MXCACHE__WHITELIST_KIND__WHITELIST_CLIENT);
        ck_assert_str_eq(b->whitelist_add->value, "2001:db8::/32");
        ck_assert_str_eq(b->whitelist_add->comment, "partner");
        ck_assert_uint_eq(b->whitelist_add->ttl_ms, 86400000);
        break;
    case 7:
        wlrm.kind = MXCACHE__WHITELIST_KIND__WHITELIST_SENDER;
        wlrm.value = "example.net";
        r.body_case = MXCACHE__REQUEST__BODY_WHITELIST_REMOVE;
        r.whitelist_remove = &wlrm;
        b = roundtrip_request(&r);
        ck_assert_int_eq(b->whitelist_remove->kind, MXCACHE__WHITELIST_KIND__WHITELIST_SENDER);
        ck_assert_str_eq(b->whitelist_remove->value, "example.net");
        break;
    case 8:
        wllist.kind = MXCACHE__WHITELIST_KIND__WHITELIST_RECIPIENT;
        wllist.start_after = "recipient:a@example.com";
        wllist.limit = 7;
        r.body_case = MXCACHE__REQUEST__BODY_WHITELIST_LIST;
        r.whitelist_list = &wllist;
        b = roundtrip_request(&r);
        ck_assert_int_eq(b->whitelist_list->kind, MXCACHE__WHITELIST_KIND__WHITELIST_RECIPIENT);
        ck_assert_str_eq(b->whitelist_list->start_after, "recipient:a@example.com");
        ck_assert_uint_eq(b->whitelist_list->limit, 7);
        break;
    case 9:
        compact.keyspace = MXCACHE__KEYSPACE__KEYSPACE_UNSPECIFIED;  /* all keyspaces */
        r.body_case = MXCACHE__REQUEST__BODY_COMPACT;
        r.compact = &compact;
        b = roundtrip_request(&r);
        ck_assert_int_eq(b->compact->keyspace, MXCACHE__KEYSPACE__KEYSPACE_UNSPECIFIED);
        break;
    default:
        ck_abort_msg("no request case %d", _i);
        return;
    }
    mxcache__request__free_unpacked(b, NULL);
}
END_TEST

/* ---- replies, one test per body kind ---- */

START_TEST(test_reply_roundtrip)
{
    Mxcache__Reply r = MXCACHE__REPLY__INIT;
    Mxcache__Error error = MXCACHE__ERROR__INIT;
    Mxcache__CheckReply check = MXCACHE__CHECK_REPLY__INIT;
    Mxcache__GetReply get = MXCACHE__GET_REPLY__INIT;
    Mxcache__ListReply list = MXCACHE__LIST_REPLY__INIT;
    Mxcache__DeleteReply del = MXCACHE__DELETE_REPLY__INIT;
    Mxcache__FlushReply flush = MXCACHE__FLUSH_REPLY__INIT;
    Mxcache__StatsReply stats = MXCACHE__STATS_REPLY__INIT;
    Mxcache__WhitelistAddReply wladd = MXCACHE__WHITELIST_ADD_REPLY__INIT;
    Mxcache__CompactReply compact = MXCACHE__COMPACT_REPLY__INIT;
    Mxcache__Entry e1 = MXCACHE__ENTRY__INIT, e2 = MXCACHE__ENTRY__INIT;
    Mxcache__VerifyRecord vr = MXCACHE__VERIFY_RECORD__INIT;
    Mxcache__GreylistRecord gr = MXCACHE__GREYLIST_RECORD__INIT;
    Mxcache__WhitelistRecord wr = MXCACHE__WHITELIST_RECORD__INIT;
    Mxcache__KeyspaceStats ks1 = MXCACHE__KEYSPACE_STATS__INIT, ks2 = MXCACHE__KEYSPACE_STATS__INIT;
    Mxcache__Counter c1 = MXCACHE__COUNTER__INIT;
    Mxcache__Entry *entries[2] = {&e1, &e2};
    Mxcache__KeyspaceStats *kss[2] = {&ks1, &ks2};
    Mxcache__Counter *counters[1] = {&c1};
    Mxcache__Reply *b;

    vr.expires_at_ms = 1700000000000ull;
    vr.state = MXCACHE__RECORD_STATE__STATE_POSITIVE;
    vr.smtp_code = 250;
    vr.enhanced_status = "2.1.5";
    vr.text = "OK";
    vr.backend = "backend1:25";
    e1.keyspace = MXCACHE__KEYSPACE__KEYSPACE_VERIFY;
    e1.key = "user@example.com";
    e1.record_case = MXCACHE__ENTRY__RECORD_VERIFY;
    e1.verify = &vr;
    gr.state = MXCACHE__RECORD_STATE__STATE_PENDING;
    gr.attempts = 3;
    e2.keyspace = MXCACHE__KEYSPACE__KEYSPACE_GREYLIST;
    e2.key = "192.0.2.0/24|a@example.org|b@example.com";
    e2.record_case = MXCACHE__ENTRY__RECORD_GREYLIST;
    e2.greylist = &gr;

    r.version = WIRE_VERSION;
    r.id = 42 + (uint64_t)_i;
    switch (_i) {
    case 0:
        error.code = MXCACHE__ERROR_CODE__ERROR_TOO_LARGE;
        error.message = "request of 70000 bytes exceeds 65536";
        r.body_case = MXCACHE__REPLY__BODY_ERROR;
        r.error = &error;
        b = roundtrip_reply(&r);
        ck_assert_int_eq(b->error->code, MXCACHE__ERROR_CODE__ERROR_TOO_LARGE);
        ck_assert_str_eq(b->error->message, "request of 70000 bytes exceeds 65536");
        break;
    case 1:
        check.action = MXCACHE__ACTION__ACTION_DEFER;
        check.smtp_code = 450;
        check.enhanced_status = "4.7.1";
        check.text = "Greylisted, try again later";
        check.rule = "greylist";
        check.fact_age_ms = 1234;
        r.body_case = MXCACHE__REPLY__BODY_CHECK;
        r.check = &check;
        b = roundtrip_reply(&r);
        ck_assert_int_eq(b->check->action, MXCACHE__ACTION__ACTION_DEFER);
        ck_assert_uint_eq(b->check->smtp_code, 450);
        ck_assert_str_eq(b->check->enhanced_status, "4.7.1");
        ck_assert_str_eq(b->check->text, "Greylisted, try again later");
        ck_assert_str_eq(b->check->rule, "greylist");
        ck_assert_uint_eq(b->check->fact_age_ms, 1234);
        break;
    case 2:
        get.found = 1;
        get.entry = &e1;
        r.body_case = MXCACHE__REPLY__BODY_GET;
        r.get = &get;
        b = roundtrip_reply(&r);
        ck_assert(b->get->found);
        ck_assert_ptr_nonnull(b->get->entry);
        ck_assert_int_eq(b->get->entry->keyspace, MXCACHE__KEYSPACE__KEYSPACE_VERIFY);
        ck_assert_str_eq(b->get->entry->key, "user@example.com");
        ck_assert_int_eq(b->get->entry->record_case, MXCACHE__ENTRY__RECORD_VERIFY);
        ck_assert_uint_eq(b->get->entry->verify->expires_at_ms, 1700000000000ull);
        ck_assert_int_eq(b->get->entry->verify->state, MXCACHE__RECORD_STATE__STATE_POSITIVE);
        ck_assert_uint_eq(b->get->entry->verify->smtp_code, 250);
        ck_assert_str_eq(b->get->entry->verify->enhanced_status, "2.1.5");
        ck_assert_str_eq(b->get->entry->verify->text, "OK");
        ck_assert_str_eq(b->get->entry->verify->backend, "backend1:25");
        break;
    case 3:
        list.n_entries = 2;
        list.entries = entries;
        list.next = "next-key";
        r.body_case = MXCACHE__REPLY__BODY_LIST;
        r.list = &list;
        b = roundtrip_reply(&r);
        ck_assert_uint_eq(b->list->n_entries, 2);
        ck_assert_str_eq(b->list->entries[0]->key, "user@example.com");
        ck_assert_int_eq(b->list->entries[1]->keyspace, MXCACHE__KEYSPACE__KEYSPACE_GREYLIST);
        ck_assert_int_eq(b->list->entries[1]->record_case, MXCACHE__ENTRY__RECORD_GREYLIST);
        ck_assert_int_eq(b->list->entries[1]->greylist->state,
                         MXCACHE__RECORD_STATE__STATE_PENDING);
        ck_assert_uint_eq(b->list->entries[1]->greylist->attempts, 3);
        ck_assert_str_eq(b->list->next, "next-key");
        break;
    case 4:
        del.deleted = 1;
        r.body_case = MXCACHE__REPLY__BODY_DELETE;
        r.delete_ = &del;
        b = roundtrip_reply(&r);
        ck_assert(b->delete_->deleted);
        break;
    case 5:
        flush.matched = 10000;
        flush.more = 1;
        flush.next = "k10000";
        r.body_case = MXCACHE__REPLY__BODY_FLUSH;
        r.flush = &flush;
        b = roundtrip_reply(&r);
        ck_assert_uint_eq(b->flush->matched, 10000);
        ck_assert(b->flush->more);
        ck_assert_str_eq(b->flush->next, "k10000");
        break;
    case 6:
        ks1.keyspace = MXCACHE__KEYSPACE__KEYSPACE_VERIFY;
        ks1.keys_estimate = 1000;
        ks1.disk_bytes = 65536;
        ks2.keyspace = MXCACHE__KEYSPACE__KEYSPACE_WHITELIST;
        ks2.keys_estimate = 3;
        c1.name = "requests_total";
        c1.value = 99;
        stats.version = "0.1.0";
        stats.uptime_s = 3600;
        stats.workers = 4;
        stats.n_keyspaces = 2;
        stats.keyspaces = kss;
        stats.n_counters = 1;
        stats.counters = counters;
        r.body_case = MXCACHE__REPLY__BODY_STATS;
        r.stats = &stats;
        b = roundtrip_reply(&r);
        ck_assert_str_eq(b->stats->version, "0.1.0");
        ck_assert_uint_eq(b->stats->uptime_s, 3600);
        ck_assert_uint_eq(b->stats->workers, 4);
        ck_assert_uint_eq(b->stats->n_keyspaces, 2);
        ck_assert_int_eq(b->stats->keyspaces[0]->keyspace, MXCACHE__KEYSPACE__KEYSPACE_VERIFY);
        ck_assert_uint_eq(b->stats->keyspaces[0]->keys_estimate, 1000);
        ck_assert_uint_eq(b->stats->keyspaces[0]->disk_bytes, 65536);
        ck_assert_int_eq(b->stats->keyspaces[1]->keyspace, MXCACHE__KEYSPACE__KEYSPACE_WHITELIST);
        ck_assert_uint_eq(b->stats->n_counters, 1);
        ck_assert_str_eq(b->stats->counters[0]->name, "requests_total");
        ck_assert_uint_eq(b->stats->counters[0]->value, 99);
        break;
    case 7:
        wr.kind = MXCACHE__WHITELIST_KIND__WHITELIST_CLIENT_NAME;
        wr.value = "example.org";
        wr.comment = "partner";
        wr.added_at_ms = 5;
        e1.keyspace = MXCACHE__KEYSPACE__KEYSPACE_WHITELIST;
        e1.key = "client_name:example.org";
        e1.record_case = MXCACHE__ENTRY__RECORD_WHITELIST;
        e1.whitelist = &wr;
        wladd.entry = &e1;
        r.body_case = MXCACHE__REPLY__BODY_WHITELIST_ADD;
        r.whitelist_add = &wladd;
        b = roundtrip_reply(&r);
        ck_assert_str_eq(b->whitelist_add->entry->key, "client_name:example.org");
        ck_assert_int_eq(b->whitelist_add->entry->record_case, MXCACHE__ENTRY__RECORD_WHITELIST);
        ck_assert_int_eq(b->whitelist_add->entry->whitelist->kind,
                         MXCACHE__WHITELIST_KIND__WHITELIST_CLIENT_NAME);
        ck_assert_str_eq(b->whitelist_add->entry->whitelist->value, "example.org");
        ck_assert_str_eq(b->whitelist_add->entry->whitelist->comment, "partner");
        ck_assert_uint_eq(b->whitelist_add->entry->whitelist->added_at_ms, 5);
        break;
    case 8:
        compact.duration_ms = 1500;
        compact.disk_bytes_before = 1ull << 33;
        compact.disk_bytes_after = 1ull << 32;
        r.body_case = MXCACHE__REPLY__BODY_COMPACT;
        r.compact = &compact;
        b = roundtrip_reply(&r);
        ck_assert_uint_eq(b->compact->duration_ms, 1500);
        ck_assert_uint_eq(b->compact->disk_bytes_before, 1ull << 33);
        ck_assert_uint_eq(b->compact->disk_bytes_after, 1ull << 32);
        break;
    default:
        ck_abort_msg("no reply case %d", _i);
        return;
    }
    mxcache__reply__free_unpacked(b, NULL);
}
END_TEST

/* An empty buffer is a valid Request with every field at its default: no body, version 0, which
 * the service answers with ERROR_VERSION. */
START_TEST(test_empty_request)
{
    Mxcache__Request *r = wire_request_unpack((const uint8_t *)"", 0);

    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->version, 0);
    ck_assert_int_eq(r->body_case, MXCACHE__REQUEST__BODY__NOT_SET);
    mxcache__request__free_unpacked(r, NULL);
}
END_TEST

/* ---- hostile bytes ---- */

static const struct {
    const char *bytes;
    size_t len;
} garbage[] = {
    {"\xff", 1},
    {"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11},      /* a varint that never ends */
    {"\x08", 1},                                              /* a tag without its value */
    {"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12}, /* an 11-byte varint */
    {"\x52\x05" "ab", 4},                                     /* body of 5 bytes, 2 given */
    {"\x52\xff\xff\xff\xff\x0f" "ab", 8},                     /* body length near 4G */
    {"\x0f\x01", 2},                                          /* wire type 7 does not exist */
    {"\x00\x01", 2},                                          /* field number 0 */
    {"\x52\x02\x0a\x05", 4},                                  /* nested string overruns */
    {"\x12\x01", 2},                                          /* id as length-delimited */
    {"GET / HTTP/1.0\r\n\r\n", 18},
};

START_TEST(test_garbage)
{
    const uint8_t *b = (const uint8_t *)garbage[_i].bytes;
    size_t len = garbage[_i].len;

    ck_assert_msg(wire_request_unpack(b, len) == NULL, "garbage %d unpacked as a Request", _i);
    ck_assert_msg(wire_reply_unpack(b, len) == NULL, "garbage %d unpacked as a Reply", _i);
}
END_TEST

/* Every cut inside the body leaves a length or a varint that overruns the buffer. */
START_TEST(test_truncated)
{
    Mxcache__Request r = MXCACHE__REQUEST__INIT, head = MXCACHE__REQUEST__INIT;
    Mxcache__CheckRequest check = MXCACHE__CHECK_REQUEST__INIT;
    size_t len, hlen;
    uint8_t *buf, *hbuf;

    r.version = head.version = WIRE_VERSION;
    r.id = head.id = 77;
    check.client_address = "192.0.2.1";
    check.recipient = "user@example.com";
    r.body_case = MXCACHE__REQUEST__BODY_CHECK;
    r.check = &check;
    buf = pack_request(&r, &len);
    hbuf = pack_request(&head, &hlen);  /* the bytes before the body */
    ck_assert_uint_gt(len, hlen + 2);
    for (size_t cut = hlen + 1; cut < len; cut++) {
        /* a copy of exactly cut bytes, so that ASan sees any read past the end */
        uint8_t *part = malloc(cut);
        memcpy(part, buf, cut);
        Mxcache__Request *u = wire_request_unpack(part, cut);
        ck_assert_msg(u == NULL, "request cut to %zu of %zu bytes was accepted", cut, len);
        free(part);
    }
    free(hbuf);
    free(buf);
}
END_TEST

START_TEST(test_too_large)
{
    Mxcache__Request r = MXCACHE__REQUEST__INIT;
    Mxcache__CheckRequest check = MXCACHE__CHECK_REQUEST__INIT;
    char *big = malloc(WIRE_MAX_MESSAGE + 1);
    uint8_t *buf = NULL;
    size_t len = 0;

    memset(big, 'a', WIRE_MAX_MESSAGE);
    big[WIRE_MAX_MESSAGE] = '\0';
    check.recipient = big;
    r.version = WIRE_VERSION;
    r.body_case = MXCACHE__REQUEST__BODY_CHECK;
    r.check = &check;
    ck_assert_int_eq(wire_request_pack(&r, &buf, &len), MXC_ETOOBIG);
    ck_assert_ptr_null(buf);

    /* a valid message that is too large is refused on the way in too */
    len = mxcache__request__get_packed_size(&r);
    buf = malloc(len);
    mxcache__request__pack(&r, buf);
    ck_assert_ptr_null(wire_request_unpack(buf, len));
    free(buf);
    free(big);
}
END_TEST

/* patch_byte - finds the packed sub-message sub (sublen bytes) inside buf and replaces the
 * one-byte value at offset at of it with v (< 128, so the length does not change). */
static void patch_byte(uint8_t *buf, size_t len, const uint8_t *sub, size_t sublen, size_t at,
                       uint8_t v)
{
    uint8_t *p = memmem(buf, len, sub, sublen);

    ck_assert_ptr_nonnull(p);
    ck_assert_uint_lt(at, sublen);
    ck_assert_uint_lt(p[at], 0x80);
    p[at] = v;
}

/* Robustness: protobuf-c accepts any varint in an enum field; wire.c must refuse values that the
 * schema does not define, at any depth: in the body, in an entry of a repeated field, in a
 * record inside a oneof inside an entry. Each case packs a valid message, checks that it unpacks,
 * then patches the enum byte to a value nobody defined. */
START_TEST(test_unknown_enum)
{
    uint8_t *buf, sub[64];
    size_t len, sublen;
    int valid_value, bad_value;

    if (_i == 0) { /* Reply.check.action = 99 */
        Mxcache__Reply r = MXCACHE__REPLY__INIT;
        Mxcache__CheckReply c = MXCACHE__CHECK_REPLY__INIT;
        c.action = MXCACHE__ACTION__ACTION_DEFER;
        r.version = WIRE_VERSION;
        r.body_case = MXCACHE__REPLY__BODY_CHECK;
        r.check = &c;
        sublen = mxcache__check_reply__pack(&c, sub); /* 08 02: field 1, varint 2 */
        buf = pack_reply(&r, &len);
        valid_value = MXCACHE__ACTION__ACTION_REJECT;
        bad_value = 99;
        patch_byte(buf, len, sub, sublen, 1, (uint8_t)valid_value);
        Mxcache__Reply *u = wire_reply_unpack(buf, len);
        ck_assert_ptr_nonnull(u);
        ck_assert_int_eq(u->check->action, valid_value); /* the patch hit the right byte */
        mxcache__reply__free_unpacked(u, NULL);
        sub[1] = (uint8_t)valid_value;
        patch_byte(buf, len, sub, sublen, 1, (uint8_t)bad_value);
        ck_assert_ptr_null(wire_reply_unpack(buf, len));
    } else if (_i == 1) { /* Request.get.keyspace = 42 */
        Mxcache__Request r = MXCACHE__REQUEST__INIT;
        Mxcache__GetRequest g = MXCACHE__GET_REQUEST__INIT;
        g.keyspace = MXCACHE__KEYSPACE__KEYSPACE_VERIFY;
        g.key = "k";
        r.version = WIRE_VERSION;
        r.body_case = MXCACHE__REQUEST__BODY_GET;
        r.get = &g;
        sublen = mxcache__get_request__pack(&g, sub); /* 08 01 12 01 6b */
        buf = pack_request(&r, &len);
        valid_value = MXCACHE__KEYSPACE__KEYSPACE_WHITELIST;
        bad_value = 42;
        patch_byte(buf, len, sub, sublen, 1, (uint8_t)valid_value);
        Mxcache__Request *u = wire_request_unpack(buf, len);
        ck_assert_ptr_nonnull(u);
        ck_assert_int_eq(u->get->keyspace, valid_value);
        mxcache__request__free_unpacked(u, NULL);
        sub[1] = (uint8_t)valid_value;
        patch_byte(buf, len, sub, sublen, 1, (uint8_t)bad_value);
        ck_assert_ptr_null(wire_request_unpack(buf, len));
    } else if (_i == 2) { /* Reply.list.entries[1].keyspace = 42 (a repeated message field) */
        Mxcache__Reply r = MXCACHE__REPLY__INIT;
        Mxcache__ListReply l = MXCACHE__LIST_REPLY__INIT;
        Mxcache__Entry e0 = MXCACHE__ENTRY__INIT, e1 = MXCACHE__ENTRY__INIT;
        Mxcache__Entry *es[2] = {&e0, &e1};
        e0.keyspace = MXCACHE__KEYSPACE__KEYSPACE_VERIFY;
        e0.key = "first";
        e1.keyspace = MXCACHE__KEYSPACE__KEYSPACE_AWL;
        e1.key = "second";
        l.n_entries = 2;
        l.entries = es;
        r.body_case = MXCACHE__REPLY__BODY_LIST;
        r.list = &l;
        sublen = mxcache__entry__pack(&e1, sub); /* 08 03 12 06 "second" */
        buf = pack_reply(&r, &len);
        valid_value = MXCACHE__KEYSPACE__KEYSPACE_GREYLIST;
        bad_value = 42;
        patch_byte(buf, len, sub, sublen, 1, (uint8_t)valid_value);
        Mxcache__Reply *u = wire_reply_unpack(buf, len);
        ck_assert_ptr_nonnull(u);
        ck_assert_int_eq(u->list->entries[1]->keyspace, valid_value);
        mxcache__reply__free_unpacked(u, NULL);
        sub[1] = (uint8_t)valid_value;
        patch_byte(buf, len, sub, sublen, 1, (uint8_t)bad_value);
        ck_assert_ptr_null(wire_reply_unpack(buf, len));
    } else { /* Reply.get.entry.verify.state = 99 (a record inside a oneof inside an entry) */
        Mxcache__Reply r = MXCACHE__REPLY__INIT;
        Mxcache__GetReply g = MXCACHE__GET_REPLY__INIT;
        Mxcache__Entry e = MXCACHE__ENTRY__INIT;
        Mxcache__VerifyRecord v = MXCACHE__VERIFY_RECORD__INIT;
        v.state = MXCACHE__RECORD_STATE__STATE_NEGATIVE;
        v.smtp_code = 550;
        e.keyspace = MXCACHE__KEYSPACE__KEYSPACE_VERIFY;
        e.key = "x@example.com";
        e.record_case = MXCACHE__ENTRY__RECORD_VERIFY;
        e.verify = &v;
        g.found = 1;
        g.entry = &e;
        r.body_case = MXCACHE__REPLY__BODY_GET;
        r.get = &g;
        sublen = mxcache__verify_record__pack(&v, sub); /* 10 02 18 a6 04 */
        buf = pack_reply(&r, &len);
        valid_value = MXCACHE__RECORD_STATE__STATE_TEMPFAIL;
        bad_value = 99;
        patch_byte(buf, len, sub, sublen, 1, (uint8_t)valid_value);
        Mxcache__Reply *u = wire_reply_unpack(buf, len);
        ck_assert_ptr_nonnull(u);
        ck_assert_int_eq(u->get->entry->verify->state, valid_value);
        mxcache__reply__free_unpacked(u, NULL);
        sub[1] = (uint8_t)valid_value;
        patch_byte(buf, len, sub, sublen, 1, (uint8_t)bad_value);
        ck_assert_ptr_null(wire_reply_unpack(buf, len));
    }
    free(buf);
}
END_TEST

/* ---- reading single fields without unpacking ---- */

static const struct scalar_case {
    const char *bytes;
    size_t len;
    uint32_t field;
    int wire_type;
    int rc;
    uint64_t value;
} scalar_cases[] = {
    {"", 0, 1, WIRE_TYPE_VARINT, MXC_ENOENT, 0},
    {"\x08\x05", 2, 1, WIRE_TYPE_VARINT, MXC_OK, 5},
    {"\x08\x01\x08\x02", 4, 1, WIRE_TYPE_VARINT, MXC_OK, 2}, /* the last occurrence wins */
    {"\x08\x05", 2, 1, WIRE_TYPE_FIXED64, MXC_EPROTO, 0},     /* same number, other type */
    {"\x08\x05", 2, 2, WIRE_TYPE_VARINT, MXC_ENOENT, 0},
    {"\x09\x08\x07\x06\x05\x04\x03\x02\x01", 9, 1, WIRE_TYPE_FIXED64, MXC_OK,
     0x0102030405060708ull},                                   /* little-endian */
    {"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11, 1, WIRE_TYPE_VARINT, MXC_OK, UINT64_MAX},
    /* other fields are skipped, whatever their type */
    {"\x12\x03" "abc" "\x1d\x01\x02\x03\x04" "\x21\x01\x02\x03\x04\x05\x06\x07\x08" "\x28\x07",
     21, 5, WIRE_TYPE_VARINT, MXC_OK, 7},
    /* malformed anywhere, even after the field: EPROTO */
    {"\x08\x05\xff", 3, 1, WIRE_TYPE_VARINT, MXC_EPROTO, 0},
    {"\x09\x01\x02\x03\x04\x05\x06\x07", 8, 1, WIRE_TYPE_FIXED64, MXC_EPROTO, 0},
    {"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12, 1, WIRE_TYPE_VARINT, MXC_EPROTO, 0},
    {"\x0b\x0c", 2, 1, WIRE_TYPE_VARINT, MXC_EPROTO, 0}, /* group wire types */
    {"\x0e", 1, 1, WIRE_TYPE_VARINT, MXC_EPROTO, 0},     /* wire type 6 */
    {"\x00\x01", 2, 1, WIRE_TYPE_VARINT, MXC_EPROTO, 0}, /* field number 0 */
    {"\x22\x05" "ab", 4, 1, WIRE_TYPE_VARINT, MXC_EPROTO, 0},
    {"\x22\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 10, 1, WIRE_TYPE_VARINT, MXC_EPROTO, 0},
    {"\x0d\x01\x02\x03", 4, 1, WIRE_TYPE_VARINT, MXC_EPROTO, 0},
};

START_TEST(test_scalar_field)
{
    const struct scalar_case *c = &scalar_cases[_i];
    uint8_t *copy = malloc(c->len ? c->len : 1); /* exactly len bytes, for ASan */
    uint64_t v = 12345;
    int rc;

    memcpy(copy, c->bytes, c->len);
    rc = wire_scalar_field(copy, c->len, c->field, c->wire_type, &v);
    free(copy);
    ck_assert_msg(rc == c->rc, "case %d: rc %d, expected %d", _i, rc, c->rc);
    if (c->rc == MXC_OK)
        ck_assert_msg(v == c->value, "case %d: %llu, expected %llu", _i, (unsigned long long)v,
                      (unsigned long long)c->value);
}
END_TEST

/* A stored record's expiry is field 1, fixed64: readable without unpacking the record. */
START_TEST(test_scalar_field_record)
{
    Mxcache__VerifyRecord r = MXCACHE__VERIFY_RECORD__INIT;
    uint8_t *buf;
    size_t len;
    uint64_t v;

    r.expires_at_ms = 1700000000123ull;
    r.state = MXCACHE__RECORD_STATE__STATE_NEGATIVE;
    r.smtp_code = 550;
    r.text = "5.1.1 no such user";
    ck_assert_int_eq(wire_message_pack(&r.base, &buf, &len), MXC_OK);
    ck_assert_int_eq(wire_scalar_field(buf, len, 1, WIRE_TYPE_FIXED64, &v), MXC_OK);
    ck_assert_uint_eq(v, 1700000000123ull);
    ck_assert_int_eq(wire_scalar_field(buf, len, 2, WIRE_TYPE_VARINT, &v), MXC_OK);
    ck_assert_uint_eq(v, MXCACHE__RECORD_STATE__STATE_NEGATIVE);
    ck_assert_int_eq(wire_scalar_field(buf, len, 3, WIRE_TYPE_VARINT, &v), MXC_OK);
    ck_assert_uint_eq(v, 550);
    ck_assert_int_eq(wire_scalar_field(buf, len, 9, WIRE_TYPE_VARINT, &v), MXC_ENOENT);
    ck_assert_int_eq(wire_scalar_field(buf, len - 1, 1, WIRE_TYPE_FIXED64, &v), MXC_EPROTO);
    free(buf);
}
END_TEST

START_TEST(test_peek_id)
{
    Mxcache__Request r = MXCACHE__REQUEST__INIT;
    Mxcache__CheckRequest check = MXCACHE__CHECK_REQUEST__INIT;
    uint8_t *buf;
    size_t len;

    r.version = WIRE_VERSION;
    r.id = 77;
    check.recipient = "a-rather-long-recipient-address-to-push-the-body-past-64-bytes@example.com";
    r.body_case = MXCACHE__REQUEST__BODY_CHECK;
    r.check = &check;
    buf = pack_request(&r, &len);
    ck_assert_uint_gt(len, 64);
    ck_assert_uint_eq(wire_peek_id(buf, len), 77);
    ck_assert_uint_eq(wire_peek_id(buf, 10), 77); /* a truncated request still has its id */
    buf[len - 1] ^= 0xff;                          /* and so does a corrupt one */
    ck_assert_uint_eq(wire_peek_id(buf, len), 77);
    free(buf);

    r.id = UINT64_MAX; /* a 10-byte varint */
    buf = pack_request(&r, &len);
    ck_assert_uint_eq(wire_peek_id(buf, len), UINT64_MAX);
    free(buf);

    r.id = 0;
    buf = pack_request(&r, &len);
    ck_assert_uint_eq(wire_peek_id(buf, len), 0);
    free(buf);

    ck_assert_uint_eq(wire_peek_id((const uint8_t *)"", 0), 0);
    ck_assert_uint_eq(wire_peek_id((const uint8_t *)"\xff", 1), 0);
    ck_assert_uint_eq(wire_peek_id((const uint8_t *)"\x08", 1), 0);
    ck_assert_uint_eq(wire_peek_id((const uint8_t *)"\x0a\x01x\x10\x05", 5), 0);
}
END_TEST

START_TEST(test_peek_body)
{
    Mxcache__Request r = MXCACHE__REQUEST__INIT;
    Mxcache__CheckRequest check = MXCACHE__CHECK_REQUEST__INIT;
    Mxcache__FlushRequest flush = MXCACHE__FLUSH_REQUEST__INIT;
    uint8_t *buf;
    size_t len;

    r.version = WIRE_VERSION;
    r.id = UINT64_MAX;
    r.body_case = MXCACHE__REQUEST__BODY_CHECK;
    r.check = &check;
    buf = pack_request(&r, &len);
    ck_assert_int_eq(wire_peek_body(buf, len), MXCACHE__REQUEST__BODY_CHECK);
    ck_assert_int_eq(wire_peek_body(buf, 14), MXCACHE__REQUEST__BODY_CHECK); /* tag seen, cut */
    free(buf);

    r.body_case = MXCACHE__REQUEST__BODY_FLUSH;
    r.flush = &flush;
    buf = pack_request(&r, &len);
    ck_assert_int_eq(wire_peek_body(buf, len), MXCACHE__REQUEST__BODY_FLUSH);
    free(buf);

    r.body_case = MXCACHE__REQUEST__BODY__NOT_SET;
    buf = pack_request(&r, &len);
    ck_assert_int_eq(wire_peek_body(buf, len), MXCACHE__REQUEST__BODY__NOT_SET);
    free(buf);

    ck_assert_int_eq(wire_peek_body((const uint8_t *)"", 0), MXCACHE__REQUEST__BODY__NOT_SET);
    ck_assert_int_eq(wire_peek_body((const uint8_t *)"\xff", 1), MXCACHE__REQUEST__BODY__NOT_SET);
    /* Field 3 (not a body), field 99 (unknown), a fixed64 where a varint belongs. */
    ck_assert_int_eq(wire_peek_body((const uint8_t *)"\x1a\x00", 2), MXCACHE__REQUEST__BODY__NOT_SET);
    ck_assert_int_eq(wire_peek_body((const uint8_t *)"\x9a\x06\x00", 3), MXCACHE__REQUEST__BODY__NOT_SET);
    ck_assert_int_eq(wire_peek_body((const uint8_t *)"\x09\x01\x02\x03\x04\x05\x06\x07\x08\x52\x00", 11),
                     MXCACHE__REQUEST__BODY__NOT_SET);
}
END_TEST

/* ---- enum names, both ways ---- */

struct name_case {
    int value;
    const char *name;
};

static const struct name_case keyspace_names[] = {
    {MXCACHE__KEYSPACE__KEYSPACE_VERIFY, "verify"},
    {MXCACHE__KEYSPACE__KEYSPACE_GREYLIST, "greylist"},
    {MXCACHE__KEYSPACE__KEYSPACE_AWL, "awl"},
    {MXCACHE__KEYSPACE__KEYSPACE_WHITELIST, "whitelist"},
};
static const struct name_case action_names[] = {
    {MXCACHE__ACTION__ACTION_DUNNO, "dunno"},
    {MXCACHE__ACTION__ACTION_DEFER, "defer"},
    {MXCACHE__ACTION__ACTION_REJECT, "reject"},
};
static const struct name_case state_names[] = {
    {MXCACHE__RECORD_STATE__STATE_ANY, "any"},
    {MXCACHE__RECORD_STATE__STATE_POSITIVE, "positive"},
    {MXCACHE__RECORD_STATE__STATE_NEGATIVE, "negative"},
    {MXCACHE__RECORD_STATE__STATE_TEMPFAIL, "tempfail"},
    {MXCACHE__RECORD_STATE__STATE_PENDING, "pending"},
    {MXCACHE__RECORD_STATE__STATE_PASSED, "passed"},
};
static const struct name_case wlkind_names[] = {
    {MXCACHE__WHITELIST_KIND__WHITELIST_ANY, "any"},
    {MXCACHE__WHITELIST_KIND__WHITELIST_CLIENT, "client"},
    {MXCACHE__WHITELIST_KIND__WHITELIST_CLIENT_NAME, "client_name"},
    {MXCACHE__WHITELIST_KIND__WHITELIST_SENDER, "sender"},
    {MXCACHE__WHITELIST_KIND__WHITELIST_RECIPIENT, "recipient"},
};
static const struct name_case error_names[] = {
    {MXCACHE__ERROR_CODE__ERROR_UNSPECIFIED, "unspecified"},
    {MXCACHE__ERROR_CODE__ERROR_MALFORMED, "malformed"},
    {MXCACHE__ERROR_CODE__ERROR_TOO_LARGE, "too_large"},
    {MXCACHE__ERROR_CODE__ERROR_VERSION, "version"},
    {MXCACHE__ERROR_CODE__ERROR_INVALID_ARGUMENT, "invalid_argument"},
    {MXCACHE__ERROR_CODE__ERROR_STORE, "store"},
    {MXCACHE__ERROR_CODE__ERROR_UNAVAILABLE, "unavailable"},
    {MXCACHE__ERROR_CODE__ERROR_DENIED, "denied"},
    {MXCACHE__ERROR_CODE__ERROR_INTERNAL, "internal"},
};
static const struct name_case body_names[] = {
    {MXCACHE__REQUEST__BODY_CHECK, "check"},
    {MXCACHE__REQUEST__BODY_GET, "get"},
    {MXCACHE__REQUEST__BODY_LIST, "list"},
    {MXCACHE__REQUEST__BODY_DELETE, "delete"},
    {MXCACHE__REQUEST__BODY_FLUSH, "flush"},
    {MXCACHE__REQUEST__BODY_STATS, "stats"},
    {MXCACHE__REQUEST__BODY_WHITELIST_ADD, "whitelist_add"},
    {MXCACHE__REQUEST__BODY_WHITELIST_REMOVE, "whitelist_remove"},
    {MXCACHE__REQUEST__BODY_WHITELIST_LIST, "whitelist_list"},
    {MXCACHE__REQUEST__BODY_COMPACT, "compact"},
};

/* Adapters so that one loop drives every table. */
static const char *ks_name(int v) { return wire_keyspace_name((Mxcache__Keyspace)v); }
static const char *act_name(int v) { return wire_action_name((Mxcache__Action)v); }
static const char *st_name(int v) { return wire_state_name((Mxcache__RecordState)v); }
static const char *wk_name(int v) { return wire_wlkind_name((Mxcache__WhitelistKind)v); }
static const char *err_name(int v) { return wire_error_name((Mxcache__ErrorCode)v); }
static const char *body_name(int v) { return wire_body_name((Mxcache__Request__BodyCase)v); }

static int ks_parse(const char *n, int *out)
{
    Mxcache__Keyspace v = (Mxcache__Keyspace)-1;
    int rc = wire_keyspace_parse(n, &v);
    *out = (int)v;
    return rc;
}
static int act_parse(const char *n, int *out)
{
    Mxcache__Action v = (Mxcache__Action)-1;
    int rc = wire_action_parse(n, &v);
    *out = (int)v;
    return rc;
}
static int st_parse(const char *n, int *out)
{
    Mxcache__RecordState v = (Mxcache__RecordState)-1;
    int rc = wire_state_parse(n, &v);
    *out = (int)v;
    return rc;
}
static int wk_parse(const char *n, int *out)
{
    Mxcache__WhitelistKind v = (Mxcache__WhitelistKind)-1;
    int rc = wire_wlkind_parse(n, &v);
    *out = (int)v;
    return rc;
}

static const struct enum_table {
    const char *what;
    const struct name_case *cases;
    size_t n;
    const char *(*name)(int);
    int (*parse)(const char *, int *); /* NULL: the enum has no parser */
} enum_tables[] = {
    {"keyspace", keyspace_names, sizeof keyspace_names / sizeof keyspace_names[0], ks_name,
     ks_parse},
    {"action", action_names, sizeof action_names / sizeof action_names[0], act_name, act_parse},
    {"state", state_names, sizeof state_names / sizeof state_names[0], st_name, st_parse},
    {"wlkind", wlkind_names, sizeof wlkind_names / sizeof wlkind_names[0], wk_name, wk_parse},
    {"error", error_names, sizeof error_names / sizeof error_names[0], err_name, NULL},
    {"body", body_names, sizeof body_names / sizeof body_names[0], body_name, NULL},
};

/* The body the service routes on is the body the decoder takes, wherever it is: after more
 * than 64 bytes of other fields, and the last of two (protobuf's rule for a oneof). A Check
 * routed as an admin request went to a worker, which cannot park it for a probe
 * (tests/fuzz/regressions/fuzz_request/peek_body_second_oneof). */
START_TEST(test_peek_body_like_decoder)
{
    static const struct {
        const char *bytes;
        size_t len;
        Mxcache__Request__BodyCase want;
    } rows[] = {
        /* version, id, 70 bytes of unknown field 99, then a Check */
        {"\x08\x01\x10\x07\x9a\x06\x46"
         "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
         "\x52\x00", 79, MXCACHE__REQUEST__BODY_CHECK},
        /* Stats, then a Check: the Check wins */
        {"\x08\x01\x10\x07\x7a\x00\x52\x00", 8, MXCACHE__REQUEST__BODY_CHECK},
        /* a Check, then a Get: the Get wins */
        {"\x08\x01\x52\x00\x5a\x00", 6, MXCACHE__REQUEST__BODY_GET},
        /* fixed64 and fixed32 unknown fields before a Verify */
        {"\x08\x01\xf9\x06\x01\x02\x03\x04\x05\x06\x07\x08\xfd\x06\x01\x02\x03\x04\xa2\x01\x00", 21,
         MXCACHE__REQUEST__BODY_VERIFY},
        /* a Ping, then a Check, then field 3 (no body) */
        {"\xaa\x01\x00\x52\x00\x1a\x01z", 8, MXCACHE__REQUEST__BODY_CHECK},
    };

    /* an empty message may come as NULL: no arithmetic on it (clang's UBSan) */
    ck_assert_int_eq(wire_peek_body(NULL, 0), MXCACHE__REQUEST__BODY__NOT_SET);
    ck_assert_uint_eq(wire_peek_id(NULL, 0), 0);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const uint8_t *b = (const uint8_t *)rows[i].bytes;
        Mxcache__Request *r = wire_request_unpack(b, rows[i].len);
        ck_assert_msg(r != NULL, "row %zu does not decode", i);
        ck_assert_int_eq(r->body_case, rows[i].want);
        ck_assert_int_eq(wire_peek_body(b, rows[i].len), rows[i].want);
        mxcache__request__free_unpacked(r, NULL);
    }
}
END_TEST

START_TEST(test_enum_names)
{
    const struct enum_table *t = &enum_tables[_i];

    for (size_t j = 0; j < t->n; j++) {
        const struct name_case *c = &t->cases[j];
        char upper[64];
        int v;

        ck_assert_msg(strcmp(t->name(c->value), c->name) == 0, "%s name of %d: \"%s\", not \"%s\"",
                      t->what, c->value, t->name(c->value), c->name);
        if (!t->parse)
            continue;
        ck_assert_int_eq(t->parse(c->name, &v), MXC_OK);
        ck_assert_msg(v == c->value, "%s \"%s\" parsed as %d", t->what, c->name, v);
        /* case-insensitive */
        for (size_t k = 0; k <= strlen(c->name); k++)
            upper[k] = (char)toupper((unsigned char)c->name[k]);
        ck_assert_int_eq(t->parse(upper, &v), MXC_OK);
        ck_assert_msg(v == c->value, "%s \"%s\" parsed as %d", t->what, upper, v);
    }
    /* values nobody defined have a name, never NULL */
    ck_assert_str_eq(t->name(99), "?");
    ck_assert_str_eq(t->name(-1), "?");
    if (t->parse) {
        static const char *const unknown[] = {"", "bogus", "verify ", " defer", "any\n",
                                              "client-name", "positives", "unspecified"};
        int v = 12345;
        for (size_t k = 0; k < sizeof unknown / sizeof unknown[0]; k++) {
            ck_assert_msg(t->parse(unknown[k], &v) == MXC_EINVAL, "%s parsed \"%s\"", t->what,
                          unknown[k]);
        }
        ck_assert_int_eq(t->parse(NULL, &v), MXC_EINVAL);
    }
}
END_TEST

/* A failed parse leaves *out alone. */
START_TEST(test_enum_parse_keeps_out)
{
    Mxcache__Action a = MXCACHE__ACTION__ACTION_REJECT;

    ck_assert_int_eq(wire_action_parse("maybe", &a), MXC_EINVAL);
    ck_assert_int_eq(a, MXCACHE__ACTION__ACTION_REJECT);
}
END_TEST

static Suite *wire_suite(void)
{
    Suite *s = suite_create("wire");
    TCase *tc = tcase_create("core");

    tcase_add_loop_test(tc, test_request_roundtrip, 0, 10);
    tcase_add_loop_test(tc, test_reply_roundtrip, 0, 9);
    tcase_add_test(tc, test_empty_request);
    tcase_add_loop_test(tc, test_garbage, 0, (int)(sizeof garbage / sizeof garbage[0]));
    tcase_add_test(tc, test_truncated);
    tcase_add_test(tc, test_too_large);
    tcase_add_loop_test(tc, test_unknown_enum, 0, 4);
    tcase_add_loop_test(tc, test_scalar_field, 0,
                        (int)(sizeof scalar_cases / sizeof scalar_cases[0]));
    tcase_add_test(tc, test_scalar_field_record);
    tcase_add_test(tc, test_peek_id);
    tcase_add_test(tc, test_peek_body);
    tcase_add_test(tc, test_peek_body_like_decoder);
    tcase_add_loop_test(tc, test_enum_names, 0, (int)(sizeof enum_tables / sizeof enum_tables[0]));
    tcase_add_test(tc, test_enum_parse_keeps_out);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(wire_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
