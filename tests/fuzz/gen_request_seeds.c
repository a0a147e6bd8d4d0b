/* gen_request_seeds - writes the seed corpus of fuzz_request (tests/fuzz/corpus/fuzz_request/):
 * one file per scenario, each a series of frames in fuzz_request's input format (ctl byte, 2-byte
 * little-endian length, a packed mxcache Request), so that the fuzzer starts from every request
 * kind and from the sequences that reach the deeper states (a greylisted triplet that passes, an
 * address that waits for a probe, a whitelist entry that decides the next Check).
 *
 * Usage: gen_request_seeds DIR (files are overwritten; the integrator checks them in).
 * Regenerate after a change of the wire schema or of the input format. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mxc_err.h"
#include "wire.h"

/* ctl bits of fuzz_request.c */
#define STEP_301S 3u
#define STEP_1H 4u
#define STEP_8D 5u
#define END 0x08u
#define PROBE(n) ((unsigned)(n) << 4)
#define POLICY_B 0x80u

static const char *outdir;

struct seed {
    unsigned char buf[65536];
    size_t len;
};

static void add_raw(struct seed *s, unsigned ctl, const void *p, size_t n)
{
    if (s->len + 3 + n > sizeof s->buf) {
        fprintf(stderr, "gen_request_seeds: seed too large\n");
        exit(1);
    }
    s->buf[s->len++] = (unsigned char)ctl;
    s->buf[s->len++] = (unsigned char)(n & 0xff);
    s->buf[s->len++] = (unsigned char)(n >> 8);
    memcpy(s->buf + s->len, p, n);
    s->len += n;
}

static void add(struct seed *s, unsigned ctl, Mxcache__Request *r)
{
    uint8_t *buf;
    size_t len;

    if (!r->version)
        r->version = WIRE_VERSION;
    if (wire_request_pack(r, &buf, &len) != MXC_OK) {
        fprintf(stderr, "gen_request_seeds: pack failed\n");
        exit(1);
    }
    add_raw(s, ctl, buf, len);
    free(buf);
}

static void save(struct seed *s, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", outdir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(s->buf, 1, s->len, f) != s->len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
    s->len = 0;
}

/* ---- requests ---- */

static Mxcache__Request req(uint64_t id)
{
    Mxcache__Request r = MXCACHE__REQUEST__INIT;
    r.version = WIRE_VERSION;
    r.id = id;
    return r;
}

static void check(struct seed *s, unsigned ctl, uint64_t id, const char *ip, const char *name,
                  const char *sender, const char *rcpt, int explain)
{
    Mxcache__Request r = req(id);
    Mxcache__CheckRequest q = MXCACHE__CHECK_REQUEST__INIT;
    q.client_address = (char *)ip;
    q.client_name = (char *)name;
    q.helo_name = "mail.sender.example";
    q.sender = (char *)sender;
    q.recipient = (char *)rcpt;
    q.protocol_state = "RCPT";
    q.queue_id = "4F2A1B3C";
    q.mx_name = "mx1.example.net";
    q.explain = explain;
    r.body_case = MXCACHE__REQUEST__BODY_CHECK;
    r.check = &q;
    add(s, ctl, &r);
}

static void get(struct seed *s, unsigned ctl, uint64_t id, Mxcache__Keyspace ks, const char *key)
{
    Mxcache__Request r = req(id);
    Mxcache__GetRequest g = MXCACHE__GET_REQUEST__INIT;
    g.keyspace = ks;
    g.key = (char *)key;
    r.body_case = MXCACHE__REQUEST__BODY_GET;
    r.get = &g;
    add(s, ctl, &r);
}

static void list(struct seed *s, unsigned ctl, uint64_t id, Mxcache__Keyspace ks, const char *prefix,
                 const char *domain, Mxcache__RecordState state, const char *after, uint32_t limit)
{
    Mxcache__Request r = req(id);
    Mxcache__ListRequest l = MXCACHE__LIST_REQUEST__INIT;
    l.keyspace = ks;
    l.prefix = (char *)prefix;
    l.domain = (char *)domain;
    l.state = state;
    l.start_after = (char *)after;
    l.limit = limit;
    r.body_case = MXCACHE__REQUEST__BODY_LIST;
    r.list = &l;
    add(s, ctl, &r);
}

static void del(struct seed *s, unsigned ctl, uint64_t id, Mxcache__Keyspace ks, const char *key)
{
    Mxcache__Request r = req(id);
    Mxcache__DeleteRequest d = MXCACHE__DELETE_REQUEST__INIT;
    d.keyspace = ks;
    d.key = (char *)key;
    r.body_case = MXCACHE__REQUEST__BODY_DELETE;
    r.delete_ = &d;
    add(s, ctl, &r);
}

static void flush(struct seed *s, unsigned ctl, uint64_t id, Mxcache__Keyspace ks, const char *domain,
                  Mxcache__RecordState state, int dry_run)
{
    Mxcache__Request r = req(id);
    Mxcache__FlushRequest f = MXCACHE__FLUSH_REQUEST__INIT;
    f.keyspace = ks;
    f.domain = (char *)domain;
    f.state = state;
    f.dry_run = dry_run;
    r.body_case = MXCACHE__REQUEST__BODY_FLUSH;
    r.flush = &f;
    add(s, ctl, &r);
}

static void wl_add(struct seed *s, unsigned ctl, uint64_t id, Mxcache__WhitelistKind kind,
                   const char *value, const char *comment, uint64_t ttl_ms)
{
    Mxcache__Request r = req(id);
    Mxcache__WhitelistAddRequest a = MXCACHE__WHITELIST_ADD_REQUEST__INIT;
    a.kind = kind;
    a.value = (char *)value;
    a.comment = (char *)comment;
    a.ttl_ms = ttl_ms;
    r.body_case = MXCACHE__REQUEST__BODY_WHITELIST_ADD;
    r.whitelist_add = &a;
    add(s, ctl, &r);
}

static void wl_remove(struct seed *s, unsigned ctl, uint64_t id, Mxcache__WhitelistKind kind, const char *value)
{
    Mxcache__Request r = req(id);
    Mxcache__WhitelistRemoveRequest a = MXCACHE__WHITELIST_REMOVE_REQUEST__INIT;
    a.kind = kind;
    a.value = (char *)value;
    r.body_case = MXCACHE__REQUEST__BODY_WHITELIST_REMOVE;
    r.whitelist_remove = &a;
    add(s, ctl, &r);
}

static void wl_list(struct seed *s, unsigned ctl, uint64_t id, Mxcache__WhitelistKind kind, const char *after)
{
    Mxcache__Request r = req(id);
    Mxcache__WhitelistListRequest a = MXCACHE__WHITELIST_LIST_REQUEST__INIT;
    a.kind = kind;
    a.start_after = (char *)after;
    r.body_case = MXCACHE__REQUEST__BODY_WHITELIST_LIST;
    r.whitelist_list = &a;
    add(s, ctl, &r);
}

static void verify(struct seed *s, unsigned ctl, uint64_t id, const char *address, const char *domain)
{
    Mxcache__Request r = req(id);
    Mxcache__VerifyRequest v = MXCACHE__VERIFY_REQUEST__INIT;
    v.address = (char *)address;
    v.accept_all_domain = (char *)domain;
    r.body_case = MXCACHE__REQUEST__BODY_VERIFY;
    r.verify = &v;
    add(s, ctl, &r);
}

static void simple(struct seed *s, unsigned ctl, uint64_t id, Mxcache__Request__BodyCase body)
{
    Mxcache__Request r = req(id);
    Mxcache__StatsRequest st = MXCACHE__STATS_REQUEST__INIT;
    Mxcache__PingRequest p = MXCACHE__PING_REQUEST__INIT;
    Mxcache__CompactRequest c = MXCACHE__COMPACT_REQUEST__INIT;
    r.body_case = body;
    if (body == MXCACHE__REQUEST__BODY_STATS)
        r.stats = &st;
    else if (body == MXCACHE__REQUEST__BODY_PING)
        r.ping = &p;
    else if (body == MXCACHE__REQUEST__BODY_COMPACT)
        r.compact = &c;
    add(s, ctl, &r);
}

#define KS_VERIFY MXCACHE__KEYSPACE__KEYSPACE_VERIFY
#define KS_GREY MXCACHE__KEYSPACE__KEYSPACE_GREYLIST
#define KS_AWL MXCACHE__KEYSPACE__KEYSPACE_AWL
#define KS_WL MXCACHE__KEYSPACE__KEYSPACE_WHITELIST
#define ANY MXCACHE__RECORD_STATE__STATE_ANY
#define WL(k) MXCACHE__WHITELIST_KIND__WHITELIST_##k

int main(int argc, char **argv)
{
    static struct seed s;

    if (argc != 2) {
        fprintf(stderr, "usage: gen_request_seeds DIR\n");
        return 2;
    }
    outdir = argv[1];

    /* Greylisting: a new triplet, its early retry, its pass, then a known triplet and the AWL. */
    check(&s, END, 1, "192.0.2.10", "unknown", "alice@sender.example", "bob@dest.example", 0);
    save(&s, "check_greylist_new");
    check(&s, END, 1, "192.0.2.10", "unknown", "alice@sender.example", "bob@dest.example", 0);
    check(&s, 1 | END, 2, "192.0.2.11", "unknown", "alice@sender.example", "bob@dest.example", 0);
    check(&s, STEP_301S | END, 3, "192.0.2.12", "unknown", "alice@sender.example", "bob@dest.example", 0);
    check(&s, STEP_1H | END, 4, "192.0.2.12", "unknown", "alice@sender.example", "carol@dest.example", 0);
    check(&s, STEP_301S | END, 5, "192.0.2.12", "unknown", "alice@sender.example", "carol@dest.example", 0);
    check(&s, STEP_1H | END, 6, "192.0.2.13", "unknown", "dave@sender.example", "erin@dest.example", 0);
    save(&s, "check_greylist_pass_awl");
    check(&s, END, 7, "2001:db8:1:2::25", "mail.sender.example", "SRS0=HHH=TT=orig.example=user@fwd.example",
          "Bob@Dest.Example", 1);
    save(&s, "check_explain_ipv6_srs");
    check(&s, END, 8, "192.0.2.14", "unknown", "", "postmaster@example.com", 0);
    check(&s, END, 9, "192.0.2.7", "unknown", "<>", "x@exempt.example", 0);
    check(&s, END, 10, "203.0.113.9", "mx3.example.org", "prvs=1234567890=user@sender.example", "y@white.example", 0);
    save(&s, "check_whitelist_files");
    check(&s, 0, 11, "not-an-ip", "", "bad sender\x7f", "not a mailbox", 0);
    check(&s, END, 12, "::ffff:192.0.2.1", "unknown", "bounce-12345-678@lists.example", "@", 0);
    save(&s, "check_malformed_fields");

    /* Verification: a routed recipient waits for a probe, ending each way. */
    for (unsigned how = 0; how < 8; how++) {
        char name[64];
        check(&s, PROBE(how) | END, 20 + how, "192.0.2.20", "unknown", "a@sender.example", "user@example.com", 0);
        check(&s, STEP_301S | PROBE(how) | END, 30 + how, "192.0.2.20", "unknown", "a@sender.example",
              "user@example.com", 0);
        check(&s, STEP_8D | END, 40 + how, "192.0.2.20", "unknown", "a@sender.example", "user@example.com", 0);
        snprintf(name, sizeof name, "check_verify_probe_%u", how);
        save(&s, name);
    }
    check(&s, POLICY_B | PROBE(0) | END, 50, "192.0.2.21", "mail.sub.sender.co.uk", "a@sender.example",
          "user@sub.example.com", 0);
    check(&s, POLICY_B | STEP_301S | PROBE(1) | END, 51, "192.0.2.21", "mail.sub.sender.co.uk",
          "a@sender.example", "user@sub.example.com", 0);
    check(&s, POLICY_B | END, 52, "192.0.2.21", "unknown", "a@sender.example", "nobody@example.org", 0);
    save(&s, "check_policy_b_verify_first");
    check(&s, END, 53, "192.0.2.22", "unknown", "a@sender.example", "\"quoted local\"@example.com", 1);
    check(&s, END, 54, "192.0.2.22", "unknown", "a@sender.example", "bad..dots@example.com", 0);
    save(&s, "check_verify_bad_address");

    /* Operators' probes. */
    verify(&s, PROBE(1) | END, 60, "user@example.com", "");
    verify(&s, PROBE(4) | END, 61, "other@host.example.net", "");
    verify(&s, PROBE(0) | END, 62, "", "example.com");
    verify(&s, END, 63, "user@unrouted.example", "");
    verify(&s, END, 64, "", "");
    save(&s, "verify_requests");

    /* Whitelist entries deciding Checks in the same round, listed and removed. */
    wl_add(&s, 0, 70, WL(CLIENT), "198.51.100.0/24", "a network", 0);
    wl_add(&s, 0, 71, WL(CLIENT_NAME), "Mail.Example.ORG.", "", 3600000);
    wl_add(&s, 0, 72, WL(SENDER), "friend@sender.example", "sender", 0);
    wl_add(&s, 0, 73, WL(RECIPIENT), "example.net", "", 0);
    check(&s, END, 74, "198.51.100.77", "unknown", "x@y.example", "z@dest.example", 0);
    wl_list(&s, 0, 75, WL(ANY), "");
    wl_list(&s, 0, 76, WL(CLIENT), "");
    wl_remove(&s, 0, 77, WL(CLIENT), "198.51.100.0/24");
    wl_remove(&s, STEP_1H | END, 78, WL(SENDER), "nobody@sender.example");
    check(&s, END, 79, "198.51.100.77", "unknown", "friend@sender.example", "z@dest.example", 0);
    save(&s, "whitelist_add_list_remove");
    wl_add(&s, END, 80, WL(CLIENT), "0.0.0.0/0", "everyone", 0);
    wl_add(&s, END, 81, WL(CLIENT), "2001:db8::/32", "comment\nwith newline", 0);
    wl_add(&s, END, 82, WL(ANY), "x", "", 0);
    wl_add(&s, END, 83, WL(CLIENT_NAME), "com", "", 400000000000000ull);
    save(&s, "whitelist_add_refused");

    /* Admin reads and writes after some Checks wrote records. */
    check(&s, 0, 90, "192.0.2.30", "unknown", "a@sender.example", "b@dest.example", 0);
    check(&s, END, 91, "192.0.2.31", "unknown", "a@sender.example", "c@other.example", 0);
    get(&s, 0, 92, KS_GREY, "192.0.2.0/24/a@sender.example/b@dest.example");
    get(&s, 0, 93, KS_AWL, "192.0.2.0/24");
    list(&s, 0, 94, KS_GREY, "", "", ANY, "", 0);
    list(&s, 0, 95, KS_GREY, "192.0.2.", "dest.example", MXCACHE__RECORD_STATE__STATE_PENDING, "", 1);
    list(&s, 0, 96, KS_VERIFY, "", "", MXCACHE__RECORD_STATE__STATE_POSITIVE, "", 2);
    list(&s, 0, 97, KS_AWL, "", "", MXCACHE__RECORD_STATE__STATE_NEGATIVE, "", 0);
    del(&s, 0, 98, KS_GREY, "192.0.2.0/24/a@sender.example/c@other.example");
    del(&s, END, 99, KS_VERIFY, "nobody@example.com");
    flush(&s, 0, 100, KS_GREY, "dest.example", ANY, 1);
    flush(&s, 0, 101, KS_GREY, "", MXCACHE__RECORD_STATE__STATE_PENDING, 0);
    flush(&s, END, 102, KS_AWL, "", ANY, 0);
    list(&s, END, 103, KS_GREY, "", "", ANY, "", 0);
    save(&s, "admin_get_list_delete_flush");
    for (int i = 0; i < 12; i++) {
        char rcpt[64];
        snprintf(rcpt, sizeof rcpt, "user%d@dest%d.example", i, i % 3);
        check(&s, 0, 110 + (uint64_t)i, "192.0.2.40", "unknown", "a@sender.example", rcpt, 0);
    }
    list(&s, POLICY_B, 130, KS_GREY, "", "", ANY, "", 0);
    flush(&s, POLICY_B | END, 131, KS_GREY, "", ANY, 0);
    list(&s, POLICY_B | END, 132, KS_GREY, "", "", ANY, "192.0.2.0/24/a@sender.example/user3@dest0.example", 3);
    save(&s, "admin_pages_and_cursors");
    simple(&s, 0, 140, MXCACHE__REQUEST__BODY_STATS);
    simple(&s, 0, 141, MXCACHE__REQUEST__BODY_PING);
    simple(&s, END, 142, MXCACHE__REQUEST__BODY_COMPACT);
    save(&s, "stats_ping_compact");

    /* Bad requests: another version, no body, bad keyspace, a field over its limit, garbage. */
    {
        Mxcache__Request r = req(150);
        r.version = 99;
        simple(&s, 0, 150, MXCACHE__REQUEST__BODY_PING);
        s.len = 0;
        r.body_case = MXCACHE__REQUEST__BODY_PING;
        Mxcache__PingRequest p = MXCACHE__PING_REQUEST__INIT;
        r.ping = &p;
        add(&s, 0, &r);
        Mxcache__Request none = req(151);
        add(&s, 0, &none);
        get(&s, 0, 152, MXCACHE__KEYSPACE__KEYSPACE_UNSPECIFIED, "k");
        char longaddr[400];
        memset(longaddr, 'a', sizeof longaddr - 1);
        longaddr[sizeof longaddr - 1] = '\0';
        check(&s, 0, 153, "192.0.2.50", "unknown", longaddr, "b@dest.example", 0);
        add_raw(&s, 0, "\x08\x01\x10\x9a\x01\x52\x05garbage", 14);
        add_raw(&s, END, "\xff\xff\xff", 3);
        save(&s, "bad_requests");
    }
    return 0;
}
