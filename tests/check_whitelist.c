/* Check suite for server/whitelist.c: canonical whitelist keys and matching against a real store.
 *
 * wl_key is table-driven (networks masked to their prefix, IPv4-mapped IPv6, names and addresses
 * lower-cased, every kind of malformed or over-long value). Matching writes whitelist records into
 * a real RocksDB store (in a mkdtemp directory, removed afterwards) the way the handler's
 * whitelist add does, mirrors them with wl_sync_key or wl_load, and runs a table of CheckRequests:
 * networks of many prefix lengths at once, names and their subdomains, addresses and domains,
 * malformed fields, expiry, deletion. Keys handed to wl_sync_key are never NUL-terminated: they
 * are followed by garbage such as "/15xyz", as keys read from a RocksDB iterator are followed by
 * other bytes (regression: prefix counting once ran strrchr over the unterminated key). */
#include <check.h>
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mxc_err.h"
#include "store.h"
#include "whitelist.h"
#include "wire.h"

#define KS_WL MXCACHE__KEYSPACE__KEYSPACE_WHITELIST
#define K_ANY MXCACHE__WHITELIST_KIND__WHITELIST_ANY
#define K_CLIENT MXCACHE__WHITELIST_KIND__WHITELIST_CLIENT
#define K_NAME MXCACHE__WHITELIST_KIND__WHITELIST_CLIENT_NAME
#define K_SENDER MXCACHE__WHITELIST_KIND__WHITELIST_SENDER
#define K_RCPT MXCACHE__WHITELIST_KIND__WHITELIST_RECIPIENT

/* The store's clock: records expiring after NOW are live in the store; wl_match gets its own
 * now_ms, so an entry can be live in the store and expired for matching. */
#define NOW 1700000000000ull

/* REQUIRE - an assertion for hot loops (ck_assert writes a mark point on every success). */
#define REQUIRE(cond, ...)                                                                          \
    do {                                                                                            \
        if (!(cond)) {                                                                              \
            char require_msg_[1024];                                                                 \
            snprintf(require_msg_, sizeof require_msg_, __VA_ARGS__);                               \
            ck_abort_msg("%s failed: %s", #cond, require_msg_);                                     \
        }                                                                                           \
    } while (0)

static char base_dir[PATH_MAX];
static store *st;
static char errbuf[512];

static uint64_t clock_fn(void *arg)
{
    (void)arg;
    return NOW;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* The base directory is made and removed by an unchecked fixture (in the parent process), so
 * it goes even when a test fails in its forked child; each test opens a store of its own in it. */
static void base_setup(void)
{
    const char *tmp = getenv("TMPDIR");

    snprintf(base_dir, sizeof base_dir, "%s/check_whitelist.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(base_dir)) {
        perror("mkdtemp");
        abort();
    }
}

static void base_teardown(void)
{
    nftw(base_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void store_setup(void)
{
    char path[PATH_MAX + 16];

    snprintf(path, sizeof path, "%s/db.XXXXXX", base_dir);
    ck_assert_ptr_nonnull(mkdtemp(path));
    struct store_options o = {
        .path = path,
        .sync = false,
        .block_cache_bytes = 8 << 20,
        .write_buffer_bytes = 4 << 20,
        .max_background_jobs = 2,
        .now_ms = clock_fn,
    };
    st = store_open(&o, errbuf, sizeof errbuf);
    ck_assert_msg(st != NULL, "store_open: %s", errbuf);
}

static void store_teardown(void)
{
    store_close(st);
    st = NULL;
}

/* ---- helpers ---- */

/* make_key - wl_key that must succeed. */
static size_t make_key(Mxcache__WhitelistKind kind, const char *value, char key[WL_KEY_MAX])
{
    char err[256] = "";
    int rc = wl_key(kind, value, key, WL_KEY_MAX, err, sizeof err);
    REQUIRE(rc == MXC_OK, "wl_key(%d, \"%s\"): %s", kind, value, err);
    return strlen(key);
}

/* batch_put_record - packs a WhitelistRecord as do_whitelist_add does and queues it in b. */
static void batch_put_record(store_batch *b, Mxcache__WhitelistKind kind, const char *key,
                             size_t keylen, uint64_t expires_at_ms)
{
    Mxcache__WhitelistRecord wr = MXCACHE__WHITELIST_RECORD__INIT;
    uint8_t *buf;
    size_t len;

    wr.kind = kind;
    wr.value = strchr(key, ':') + 1;
    wr.comment = "check_whitelist";
    wr.added_at_ms = NOW;
    wr.expires_at_ms = expires_at_ms;
    REQUIRE(wire_message_pack(&wr.base, &buf, &len) == MXC_OK, "pack");
    REQUIRE(store_batch_put(b, KS_WL, key, keylen, buf, len) == MXC_OK, "put %s", key);
    free(buf);
}

static void commit(store_batch *b)
{
    REQUIRE(store_batch_commit(b, errbuf, sizeof errbuf) == MXC_OK, "commit: %s", errbuf);
}

/* sync_unterminated - wl_sync_key with the key copied into a larger buffer and followed by
 * garbage instead of a NUL (variant picks the garbage). */
static void sync_unterminated(struct whitelist *wl, const char *key, size_t keylen, unsigned variant)
{
    static const char *const garbage[] = {"/15xyz", "0123/8", "/", "9", "\xff/32\x01"};
    const char *g = garbage[variant % (sizeof garbage / sizeof garbage[0])];
    char buf[WL_KEY_MAX + 16];

    memcpy(buf, key, keylen);
    memcpy(buf + keylen, g, strlen(g)); /* no NUL anywhere after the key */
    memset(buf + keylen + strlen(g), 'Z', sizeof buf - keylen - strlen(g));
    REQUIRE(wl_sync_key(wl, st, buf, keylen) == MXC_OK, "sync %.*s", (int)keylen, key);
}

/* add_entry - the whole whitelist add: key, record, commit, then sync the mirror (when wl). */
static void add_entry(struct whitelist *wl, Mxcache__WhitelistKind kind, const char *value,
                      uint64_t expires_at_ms)
{
    char key[WL_KEY_MAX];
    size_t keylen = make_key(kind, value, key);
    store_batch *b = store_batch_create(st);

    ck_assert_ptr_nonnull(b);
    batch_put_record(b, kind, key, keylen, expires_at_ms);
    commit(b);
    store_batch_destroy(b);
    if (wl)
        sync_unterminated(wl, key, keylen, (unsigned)keylen);
}

static void del_entry(struct whitelist *wl, Mxcache__WhitelistKind kind, const char *value)
{
    char key[WL_KEY_MAX];
    size_t keylen = make_key(kind, value, key);
    store_batch *b = store_batch_create(st);

    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(store_batch_delete(b, KS_WL, key, keylen), MXC_OK);
    commit(b);
    store_batch_destroy(b);
    sync_unterminated(wl, key, keylen, 0);
}

/* match - wl_match on one request; returns the matched key or NULL (static buffer). */
static const char *match(struct whitelist *wl, const char *client, const char *name,
                         const char *sender, const char *rcpt, uint64_t now_ms)
{
    static char matched[WL_KEY_MAX];
    Mxcache__CheckRequest q = MXCACHE__CHECK_REQUEST__INIT;

    q.client_address = (char *)client;
    q.client_name = (char *)name;
    q.sender = (char *)sender;
    q.recipient = (char *)rcpt;
    memset(matched, 'X', sizeof matched);
    int hit = wl_match(wl, &q, now_ms, matched, sizeof matched);
    REQUIRE(hit == 0 || hit == 1, "wl_match returned %d", hit);
    /* The contract says nothing of matched after a miss (an empty whitelist leaves it as is). */
    return hit ? matched : NULL;
}

#define EXPECT_MATCH(got, want, what)                                                               \
    do {                                                                                            \
        const char *g_ = (got), *w_ = (want);                                                       \
        if (w_)                                                                                     \
            ck_assert_msg(g_ && strcmp(g_, w_) == 0, "%s: matched \"%s\", want \"%s\"", what,       \
                          g_ ? g_ : "(none)", w_);                                                  \
        else                                                                                        \
            ck_assert_msg(!g_, "%s: matched \"%s\", want none", what, g_);                          \
    } while (0)

/* ---- wl_key ---- */

struct key_case {
    Mxcache__WhitelistKind kind;
    const char *value;
    const char *key; /* NULL: rejected */
};

static const struct key_case key_cases[] = {
    /* client: single addresses, networks masked to their prefix */
    {K_CLIENT, "192.0.2.1", "client:192.0.2.1/32"},
    {K_CLIENT, "192.0.2.77/24", "client:192.0.2.0/24"},
    {K_CLIENT, "192.0.2.77/32", "client:192.0.2.77/32"},
    {K_CLIENT, "192.0.2.77/25", "client:192.0.2.0/25"},
    {K_CLIENT, "192.0.2.200/25", "client:192.0.2.128/25"},
    {K_CLIENT, "10.20.30.40/8", "client:10.0.0.0/8"},
    {K_CLIENT, "10.255.255.255/15", "client:10.254.0.0/15"},
    {K_CLIENT, "172.16.5.5/16", "client:172.16.0.0/16"},
    {K_CLIENT, "255.255.255.255/1", "client:128.0.0.0/1"},
    {K_CLIENT, "192.0.2.77/0", NULL}, /* would whitelist every client */
    {K_CLIENT, "192.0.2.77/1", "client:128.0.0.0/1"},
    {K_CLIENT, "192.0.2.77/024", "client:192.0.2.0/24"},
    {K_CLIENT, "2001:db8::1", "client:2001:db8::1/128"},
    {K_CLIENT, "2001:db8::1/128", "client:2001:db8::1/128"},
    {K_CLIENT, "2001:db8::1/32", "client:2001:db8::/32"},
    {K_CLIENT, "2001:DB8:1:2:3:4:5:6/64", "client:2001:db8:1:2::/64"},
    {K_CLIENT, "2001:db8:abcd:12ff::1/57", "client:2001:db8:abcd:1280::/57"},
    {K_CLIENT, "2001:db8:1:0:ffff::1/48", "client:2001:db8:1::/48"},
    {K_CLIENT, "2001:db8::1/0", NULL},
    {K_NAME, "com", NULL}, /* a top-level domain covers too much */
    {K_SENDER, "com.", NULL},
    {K_RCPT, "net", NULL},
    {K_CLIENT, "::1", "client:::1/128"},
    {K_CLIENT, "::", "client:::/128"},
    {K_CLIENT, "::ffff:192.0.2.1", "client:192.0.2.1/32"},
    {K_CLIENT, "::FFFF:192.0.2.1", "client:192.0.2.1/32"},
    {K_CLIENT, "::ffff:192.0.2.77/24", "client:192.0.2.0/24"},
    /* client: bad prefix lengths */
    {K_CLIENT, "192.0.2.1/33", NULL},
    {K_CLIENT, "192.0.2.1/-1", NULL},
    {K_CLIENT, "192.0.2.1/", NULL},
    {K_CLIENT, "192.0.2.1/abc", NULL},
    {K_CLIENT, "192.0.2.1/24x", NULL},
    {K_CLIENT, "192.0.2.1/24/8", NULL},
    {K_CLIENT, "192.0.2.1/4294967320", NULL},
    {K_CLIENT, "192.0.2.1/18446744073709551616", NULL},
    {K_CLIENT, "192.0.2.1/99999999999999999999999999", NULL},
    {K_CLIENT, "2001:db8::1/129", NULL},
    {K_CLIENT, "2001:db8::1/-1", NULL},
    {K_CLIENT, "2001:db8::1/", NULL},
    {K_CLIENT, "::ffff:192.0.2.1/120", NULL}, /* mapped: counts as IPv4, so 0..32 */
    /* client: junk addresses */
    {K_CLIENT, "192.0.2", NULL},
    {K_CLIENT, "192.0.2.256", NULL},
    {K_CLIENT, "192.0.2.1.1", NULL},
    {K_CLIENT, "192.0.2.1 ", NULL},
    {K_CLIENT, " 192.0.2.1", NULL},
    {K_CLIENT, "192.0.2.1\r\n", NULL},
    {K_CLIENT, "[192.0.2.1]", NULL},
    {K_CLIENT, "/24", NULL},
    {K_CLIENT, "/", NULL},
    {K_CLIENT, "example.com", NULL},
    {K_CLIENT, "2001:db8::1::2", NULL},
    {K_CLIENT, "2001:db8::g", NULL},
    {K_CLIENT, "2001:db8::1%eth0", NULL},
    {K_CLIENT, "0000:0000:0000:0000:0000:0000:0000:0000:0001", NULL},
    {K_CLIENT, "1111111111111111111111111111111111111111111111111111111111111111111111/8", NULL},
    /* client_name: lower-cased, trailing dot removed */
    {K_NAME, "Mail.Example.COM.", "client_name:mail.example.com"},
    {K_NAME, "example.com", "client_name:example.com"},
    {K_NAME, "localhost", NULL}, /* single label: refused */
    {K_NAME, "exa mple.com", NULL},
    {K_NAME, "-bad.example.com", NULL},
    {K_NAME, "bad-.example.com", NULL},
    {K_NAME, "a..example.com", NULL},
    {K_NAME, ".example.com", NULL},
    {K_NAME, "example.com..", NULL},
    {K_NAME, "ex_ample.com", NULL},
    {K_NAME, "example.com\r\n", NULL},
    {K_NAME, "[192.0.2.1]", NULL},
    {K_NAME, "user@example.com", NULL},
    {K_NAME, "*.example.com", NULL},
    {K_NAME, "ex\xc3\xa4mple.com", NULL},
    /* sender / recipient: addresses (local part lower-cased too) or domains */
    {K_SENDER, "User@Example.COM", "sender:user@example.com"},
    {K_SENDER, "user@example.com.", "sender:user@example.com"},
    {K_SENDER, "Example.COM.", "sender:example.com"},
    {K_SENDER, "\"Quoted Name\"@Example.com", "sender:\"quoted name\"@example.com"},
    {K_SENDER, "\"a@b\"@example.com", "sender:\"a@b\"@example.com"},
    {K_SENDER, "user@[192.0.2.1]", "sender:user@[192.0.2.1]"},
    {K_RCPT, "PostMaster@OUR.example", "recipient:postmaster@our.example"},
    {K_RCPT, "Abuse.Example", "recipient:abuse.example"},
    {K_SENDER, "user@", NULL},
    {K_SENDER, "@example.com", NULL},
    {K_SENDER, "@", NULL},
    {K_SENDER, "user@@example.com", NULL},
    {K_SENDER, "us er@example.com", NULL},
    {K_SENDER, "user@example..com", NULL},
    {K_SENDER, "<user@example.com>", NULL},
    {K_SENDER, "user@example.com\r\nRCPT TO:<x@y>", NULL},
    {K_SENDER, "ex_ample.com", NULL},
    {K_SENDER, "-example.com", NULL},
    {K_RCPT, "user@ex_ample.com", NULL},
    {K_RCPT, "\"unbalanced@example.com", NULL},
    {K_RCPT, "us\x7fr@example.com", NULL},
    {K_RCPT, "example.com\t", NULL},
    /* unknown kinds */
    {K_ANY, "192.0.2.1", NULL},
    {K_ANY, "example.com", NULL},
    {(Mxcache__WhitelistKind)5, "example.com", NULL},
    {(Mxcache__WhitelistKind)99, "example.com", NULL},
    {(Mxcache__WhitelistKind)-1, "example.com", NULL},
    /* NULL or empty values */
    {K_CLIENT, NULL, NULL},
    {K_CLIENT, "", NULL},
    {K_NAME, NULL, NULL},
    {K_NAME, "", NULL},
    {K_SENDER, NULL, NULL},
    {K_SENDER, "", NULL},
    {K_RCPT, "", NULL},
};

START_TEST(key_table)
{
    const struct key_case *c = &key_cases[_i];
    char key[WL_KEY_MAX], err[256];

    memset(err, 0, sizeof err);
    int rc = wl_key(c->kind, c->value, key, sizeof key, err, sizeof err);
    if (c->key) {
        ck_assert_msg(rc == MXC_OK, "case %d \"%s\": rejected: %s", _i, c->value, err);
        ck_assert_str_eq(key, c->key);
    } else {
        ck_assert_msg(rc == MXC_EINVAL, "case %d \"%s\": rc %d key \"%s\"", _i,
                      c->value ? c->value : "(null)", rc, rc == MXC_OK ? key : "");
        ck_assert_msg(err[0] != '\0', "case %d: no reason given", _i);
    }
    /* The canonical key is a fixed point: its value maps to itself. */
    if (c->key) {
        char again[WL_KEY_MAX];
        ck_assert_int_eq(wl_key(c->kind, strchr(key, ':') + 1, again, sizeof again, err, sizeof err),
                         MXC_OK);
        ck_assert_str_eq(again, key);
    }
}
END_TEST

START_TEST(key_lengths)
{
    char value[320], key[WL_KEY_MAX], want[sizeof value + 16], err[256];
    char l63[64], l64[65], l61[62];

    memset(l63, 'a', 63), l63[63] = '\0';
    memset(l64, 'a', 64), l64[64] = '\0';
    memset(l61, 'c', 61), l61[61] = '\0';

    /* client_name: 255 is the limit (key "client_name:" + 255 fits), 256 is not */
    snprintf(value, sizeof value, "%s.%s.%s.%s", l63, l63, l63, l63);
    ck_assert_uint_eq(strlen(value), 255);
    ck_assert_int_eq(wl_key(K_NAME, value, key, sizeof key, err, sizeof err), MXC_OK);
    snprintf(want, sizeof want, "client_name:%s", value);
    ck_assert_str_eq(key, want);
    snprintf(value, sizeof value, "b%s.%s.%s.%s", l63, l63, l63, l63);
    ck_assert_int_eq(wl_key(K_NAME, value, key, sizeof key, err, sizeof err), MXC_EINVAL);
    snprintf(value, sizeof value, "%s.example", l64);
    ck_assert_int_eq(wl_key(K_NAME, value, key, sizeof key, err, sizeof err), MXC_EINVAL);

    /* recipient: an address of 254 (local part 64) is the limit, 255 is not */
    snprintf(value, sizeof value, "%s@%s.%s.%s", l64, l63, l63, l61);
    ck_assert_uint_eq(strlen(value), 254);
    ck_assert_int_eq(wl_key(K_RCPT, value, key, sizeof key, err, sizeof err), MXC_OK);
    snprintf(want, sizeof want, "recipient:%s", value);
    ck_assert_str_eq(key, want);
    snprintf(value, sizeof value, "%s@%s.%s.c%s", l64, l63, l63, l61);
    ck_assert_int_eq(wl_key(K_RCPT, value, key, sizeof key, err, sizeof err), MXC_EINVAL);
    ck_assert_int_eq(wl_key(K_SENDER, value, key, sizeof key, err, sizeof err), MXC_EINVAL);
    snprintf(value, sizeof value, "%sx@example.com", l64);
    ck_assert_int_eq(wl_key(K_SENDER, value, key, sizeof key, err, sizeof err), MXC_EINVAL);

    /* huge values of every kind */
    char *big = malloc(100001);
    ck_assert_ptr_nonnull(big);
    memset(big, 'a', 100000);
    big[100000] = '\0';
    for (int k = K_CLIENT; k <= K_RCPT; k++)
        ck_assert_int_eq(wl_key((Mxcache__WhitelistKind)k, big, key, sizeof key, err, sizeof err),
                         MXC_EINVAL);
    big[50000] = '@';
    big[50001] = '/';
    for (int k = K_CLIENT; k <= K_RCPT; k++)
        ck_assert_int_eq(wl_key((Mxcache__WhitelistKind)k, big, key, sizeof key, err, sizeof err),
                         MXC_EINVAL);
    free(big);

    /* a key buffer too small for a name or address is refused, not truncated */
    ck_assert_int_eq(wl_key(K_SENDER, "user@example.com", key, 10, err, sizeof err), MXC_EINVAL);
    ck_assert_int_eq(wl_key(K_NAME, "example.com", key, 12, err, sizeof err), MXC_EINVAL);
    /* errors with no room for a reason do not crash */
    ck_assert_int_eq(wl_key(K_CLIENT, "junk", key, sizeof key, NULL, 0), MXC_EINVAL);
    ck_assert_int_eq(wl_key(K_CLIENT, "junk", key, sizeof key, err, 1), MXC_EINVAL);
    ck_assert_str_eq(err, "");
}
END_TEST

/* ---- matching ---- */

struct entry {
    Mxcache__WhitelistKind kind;
    const char *value;
};

static const struct entry entries[] = {
    {K_CLIENT, "10.20.30.40/8"},
    {K_CLIENT, "172.16.5.5/16"},
    {K_CLIENT, "192.0.2.77/24"},
    {K_CLIENT, "198.51.100.7"},
    {K_CLIENT, "203.0.113.0/24"},
    {K_CLIENT, "203.0.113.9/32"},
    {K_CLIENT, "2001:db8:1:0:ffff::1/48"},
    {K_CLIENT, "2001:DB8:2:3::abcd/64"},
    {K_CLIENT, "2001:db8:ffff::1"},
    {K_NAME, "Example.COM"},
    {K_SENDER, "Boss@Partner.example"},
    {K_SENDER, "Trusted.example."},
    {K_RCPT, "PostMaster@our.example"},
    {K_RCPT, "abuse.example"},
};
#define NENTRIES (sizeof entries / sizeof entries[0])

struct match_case {
    const char *client, *name, *sender, *rcpt;
    const char *want; /* NULL: no match */
};

static const struct match_case match_cases[] = {
    /* client networks: every prefix length in use, the longest first, neighbours outside */
    {"10.1.2.3", NULL, NULL, NULL, "client:10.0.0.0/8"},
    {"10.0.0.0", NULL, NULL, NULL, "client:10.0.0.0/8"},
    {"10.255.255.255", NULL, NULL, NULL, "client:10.0.0.0/8"},
    {"9.255.255.255", NULL, NULL, NULL, NULL},
    {"11.0.0.0", NULL, NULL, NULL, NULL},
    {"172.16.200.1", NULL, NULL, NULL, "client:172.16.0.0/16"},
    {"172.15.255.255", NULL, NULL, NULL, NULL},
    {"172.17.0.0", NULL, NULL, NULL, NULL},
    {"192.0.2.0", NULL, NULL, NULL, "client:192.0.2.0/24"},
    {"192.0.2.255", NULL, NULL, NULL, "client:192.0.2.0/24"},
    {"192.0.1.255", NULL, NULL, NULL, NULL},
    {"192.0.3.0", NULL, NULL, NULL, NULL},
    {"198.51.100.7", NULL, NULL, NULL, "client:198.51.100.7/32"},
    {"198.51.100.6", NULL, NULL, NULL, NULL},
    {"198.51.100.8", NULL, NULL, NULL, NULL},
    {"203.0.113.9", NULL, NULL, NULL, "client:203.0.113.9/32"},
    {"203.0.113.10", NULL, NULL, NULL, "client:203.0.113.0/24"},
    {"203.0.113.8", NULL, NULL, NULL, "client:203.0.113.0/24"},
    {"::ffff:192.0.2.9", NULL, NULL, NULL, "client:192.0.2.0/24"},
    {"::ffff:198.51.100.7", NULL, NULL, NULL, "client:198.51.100.7/32"},
    {"::ffff:10.9.9.9", NULL, NULL, NULL, "client:10.0.0.0/8"},
    {"::10.9.9.9", NULL, NULL, NULL, NULL}, /* IPv4-compatible, not mapped: an IPv6 address */
    {"2001:db8:1::1", NULL, NULL, NULL, "client:2001:db8:1::/48"},
    {"2001:db8:1:ffff:ffff:ffff:ffff:ffff", NULL, NULL, NULL, "client:2001:db8:1::/48"},
    {"2001:DB8:1::5", NULL, NULL, NULL, "client:2001:db8:1::/48"},
    {"2001:db8:0:ffff:ffff:ffff:ffff:ffff", NULL, NULL, NULL, NULL},
    {"2001:db8:2::1", NULL, NULL, NULL, NULL},
    {"2001:db8:2:3:abcd::1", NULL, NULL, NULL, "client:2001:db8:2:3::/64"},
    {"2001:db8:2:3::", NULL, NULL, NULL, "client:2001:db8:2:3::/64"},
    {"2001:db8:2:2:ffff:ffff:ffff:ffff", NULL, NULL, NULL, NULL},
    {"2001:db8:2:4::", NULL, NULL, NULL, NULL},
    {"2001:db8:ffff::1", NULL, NULL, NULL, "client:2001:db8:ffff::1/128"},
    {"2001:db8:ffff::", NULL, NULL, NULL, NULL},
    {"2001:db8:ffff::2", NULL, NULL, NULL, NULL},
    {"::", NULL, NULL, NULL, NULL},
    {"0.0.0.0", NULL, NULL, NULL, NULL},
    /* malformed client addresses match nothing */
    {"10.1.2.3/8", NULL, NULL, NULL, NULL},
    {"10.1.2", NULL, NULL, NULL, NULL},
    {"999.1.1.1", NULL, NULL, NULL, NULL},
    {" 10.1.2.3", NULL, NULL, NULL, NULL},
    {"10.1.2.3 ", NULL, NULL, NULL, NULL},
    {"10.1.2.3\r\n", NULL, NULL, NULL, NULL},
    {"[10.1.2.3]", NULL, NULL, NULL, NULL},
    {"not-an-ip", NULL, NULL, NULL, NULL},
    {"unknown", NULL, NULL, NULL, NULL},
    {"2001:db8:1::1%eth0", NULL, NULL, NULL, NULL},
    {"", NULL, NULL, NULL, NULL},
    {"client:10.0.0.0/8", NULL, NULL, NULL, NULL},
    /* client names: the name and its subdomains */
    {NULL, "example.com", NULL, NULL, "client_name:example.com"},
    {NULL, "mail.example.com", NULL, NULL, "client_name:example.com"},
    {NULL, "MAIL.Example.COM.", NULL, NULL, "client_name:example.com"},
    {NULL, "a.b.c.example.com", NULL, NULL, "client_name:example.com"},
    {NULL, "example.com.evil.test", NULL, NULL, NULL},
    {NULL, "notexample.com", NULL, NULL, NULL},
    {NULL, "example.co", NULL, NULL, NULL},
    {NULL, "com", NULL, NULL, NULL},
    {NULL, "unknown", NULL, NULL, NULL}, /* Postfix's "no name": never matches */
    {"", "unknown", "", "", NULL},
    {NULL, "exa mple.com", NULL, NULL, NULL},
    {NULL, "x..example.com", NULL, NULL, NULL},
    {NULL, ".example.com", NULL, NULL, NULL},
    {NULL, "-x.example.com", NULL, NULL, NULL},
    {NULL, "x.example.com\r\n", NULL, NULL, NULL},
    {NULL, "x_y.example.com", NULL, NULL, NULL},
    {NULL, "", NULL, NULL, NULL},
    /* senders: address (case-insensitive) and domain with subdomains */
    {NULL, NULL, "boss@partner.example", NULL, "sender:boss@partner.example"},
    {NULL, NULL, "BOSS@Partner.EXAMPLE", NULL, "sender:boss@partner.example"},
    {NULL, NULL, "boss@partner.example.", NULL, "sender:boss@partner.example"},
    {NULL, NULL, "other@partner.example", NULL, NULL},
    {NULL, NULL, "boss@sub.partner.example", NULL, NULL},
    {NULL, NULL, "x@trusted.example", NULL, "sender:trusted.example"},
    {NULL, NULL, "X@Sub.TRUSTED.example", NULL, "sender:trusted.example"},
    {NULL, NULL, "\"x@y\"@trusted.example", NULL, "sender:trusted.example"},
    {NULL, NULL, "x@untrusted.example", NULL, NULL},
    {NULL, NULL, "x@nottrusted.example", NULL, NULL},
    {NULL, NULL, "x@trusted.example.evil", NULL, NULL},
    {NULL, NULL, "\"x@trusted.example\"@evil.test", NULL, NULL},
    {NULL, NULL, "trusted.example", NULL, NULL},
    {NULL, NULL, "", NULL, NULL}, /* the null sender */
    {NULL, NULL, "<x@trusted.example>", NULL, NULL},
    {NULL, NULL, "x@@trusted.example", NULL, NULL},
    {NULL, NULL, "x@trusted..example", NULL, NULL},
    {NULL, NULL, "x y@trusted.example", NULL, NULL},
    {NULL, NULL, "x@trusted.example\r\nDATA", NULL, NULL},
    {NULL, NULL, "x@[192.0.2.1]", NULL, NULL},
    {NULL, NULL, "@trusted.example", NULL, NULL},
    /* recipients */
    {NULL, NULL, NULL, "postmaster@our.example", "recipient:postmaster@our.example"},
    {NULL, NULL, NULL, "POSTMASTER@OUR.EXAMPLE", "recipient:postmaster@our.example"},
    {NULL, NULL, NULL, "root@our.example", NULL},
    {NULL, NULL, NULL, "x@abuse.example", "recipient:abuse.example"},
    {NULL, NULL, NULL, "x@a.b.ABUSE.example", "recipient:abuse.example"},
    {NULL, NULL, NULL, "x@abuse.example.com", NULL},
    {NULL, NULL, NULL, "x@notabuse.example", NULL},
    {NULL, NULL, NULL, "", NULL},
    {NULL, NULL, NULL, "abuse.example", NULL},
    /* kinds do not cross */
    {NULL, NULL, NULL, "boss@partner.example", NULL},
    {NULL, NULL, NULL, "x@trusted.example", NULL},
    {NULL, NULL, "postmaster@our.example", NULL, NULL},
    {NULL, NULL, "x@abuse.example", NULL, NULL},
    {NULL, "trusted.example", NULL, NULL, NULL},
    /* order: client, client_name, sender, recipient */
    {"10.1.2.3", "mail.example.com", "boss@partner.example", "postmaster@our.example",
     "client:10.0.0.0/8"},
    {"11.0.0.1", "mail.example.com", "boss@partner.example", "postmaster@our.example",
     "client_name:example.com"},
    {"11.0.0.1", "unknown", "boss@partner.example", "postmaster@our.example",
     "sender:boss@partner.example"},
    {"junk", "bad..name", "", "x@abuse.example", "recipient:abuse.example"},
    {"junk", "bad..name", "bad address", "also bad", NULL},
    {"", "", "", "", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};
#define NMATCH (sizeof match_cases / sizeof match_cases[0])

static void run_match_table(struct whitelist *wl, const char *how)
{
    for (size_t i = 0; i < NMATCH; i++) {
        const struct match_case *c = &match_cases[i];
        char what[64];
        snprintf(what, sizeof what, "%s case %zu", how, i);
        EXPECT_MATCH(match(wl, c->client, c->name, c->sender, c->rcpt, NOW), c->want, what);
    }
}

static void add_all(struct whitelist *wl)
{
    for (size_t i = 0; i < NENTRIES; i++)
        add_entry(wl, entries[i].kind, entries[i].value, 0);
}

START_TEST(match_empty)
{
    struct whitelist *wl = wl_create();
    ck_assert_ptr_nonnull(wl);
    ck_assert_uint_eq(wl_count(wl), 0);
    EXPECT_MATCH(match(wl, "10.1.2.3", "example.com", "a@b.c", "d@e.f", NOW), NULL, "empty");
    ck_assert_int_eq(wl_load(wl, st, errbuf, sizeof errbuf), MXC_OK);
    ck_assert_uint_eq(wl_count(wl), 0);
    wl_destroy(wl);
    wl_destroy(NULL);
}
END_TEST

START_TEST(match_synced)
{
    struct whitelist *wl = wl_create();
    ck_assert_ptr_nonnull(wl);
    add_all(wl);
    ck_assert_uint_eq(wl_count(wl), NENTRIES);
    run_match_table(wl, "sync");
    /* syncing every key again changes nothing (no double counting) */
    for (size_t i = 0; i < NENTRIES; i++) {
        char key[WL_KEY_MAX];
        size_t n = make_key(entries[i].kind, entries[i].value, key);
        sync_unterminated(wl, key, n, (unsigned)i);
    }
    ck_assert_uint_eq(wl_count(wl), NENTRIES);
    run_match_table(wl, "resync");
    wl_destroy(wl);
}
END_TEST

START_TEST(match_loaded)
{
    struct whitelist *wl = wl_create();
    ck_assert_ptr_nonnull(wl);
    add_all(NULL);
    ck_assert_int_eq(wl_load(wl, st, errbuf, sizeof errbuf), MXC_OK);
    ck_assert_uint_eq(wl_count(wl), NENTRIES);
    run_match_table(wl, "load");
    /* loading again replaces rather than adds */
    ck_assert_int_eq(wl_load(wl, st, errbuf, sizeof errbuf), MXC_OK);
    ck_assert_uint_eq(wl_count(wl), NENTRIES);
    run_match_table(wl, "reload");
    wl_destroy(wl);
}
END_TEST

START_TEST(match_all_networks)
{
    struct whitelist *wl = wl_create();
    add_entry(wl, K_CLIENT, "0.0.0.0/1", 0);
    add_entry(wl, K_CLIENT, "128.0.0.0/1", 0);
    EXPECT_MATCH(match(wl, "192.0.2.1", NULL, NULL, NULL, NOW), "client:128.0.0.0/1", "v4 /1");
    EXPECT_MATCH(match(wl, "::ffff:1.2.3.4", NULL, NULL, NULL, NOW), "client:0.0.0.0/1", "mapped");
    EXPECT_MATCH(match(wl, "2001:db8::1", NULL, NULL, NULL, NOW), NULL, "v6 vs v4 /1");
    add_entry(wl, K_CLIENT, "::/1", 0);
    EXPECT_MATCH(match(wl, "2001:db8::1", NULL, NULL, NULL, NOW), "client:::/1", "v6 /1");
    /* a longer prefix still wins */
    add_entry(wl, K_CLIENT, "192.0.2.1", 0);
    EXPECT_MATCH(match(wl, "192.0.2.1", NULL, NULL, NULL, NOW), "client:192.0.2.1/32", "/32 over /1");
    /* every IPv4 prefix length at once: an address matches its own /32, its neighbours the
     * longest prefix they share */
    struct whitelist *w2 = wl_create();
    char v[64], want[64];
    for (int len = 1; len <= 32; len++) {
        snprintf(v, sizeof v, "170.170.170.170/%d", len); /* 10101010... */
        add_entry(w2, K_CLIENT, v, 0);
    }
    ck_assert_uint_eq(wl_count(w2), 32);
    EXPECT_MATCH(match(w2, "170.170.170.170", NULL, NULL, NULL, NOW), "client:170.170.170.170/32",
                 "own /32");
    EXPECT_MATCH(match(w2, "170.170.170.171", NULL, NULL, NULL, NOW), "client:170.170.170.170/31",
                 "last bit");
    EXPECT_MATCH(match(w2, "42.0.0.0", NULL, NULL, NULL, NOW), NULL, "first bit differs");
    for (int bit = 1; bit < 32; bit++) {
        uint32_t a = 0xaaaaaaaau ^ (1u << (31 - bit)); /* flip bit number `bit` */
        snprintf(v, sizeof v, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
        uint32_t net = a & (0xffffffffu << (32 - bit));
        snprintf(want, sizeof want, "client:%u.%u.%u.%u/%d", net >> 24, (net >> 16) & 255,
                 (net >> 8) & 255, net & 255, bit);
        EXPECT_MATCH(match(w2, v, NULL, NULL, NULL, NOW), want, v);
    }
    wl_destroy(w2);
    wl_destroy(wl);
}
END_TEST

START_TEST(match_expiry)
{
    struct whitelist *wl = wl_create();
    add_entry(wl, K_CLIENT, "100.64.0.1", NOW + 1000);
    add_entry(wl, K_SENDER, "temp@exp.example", NOW + 1000);
    add_entry(wl, K_NAME, "temp.example", NOW + 1000);
    add_entry(wl, K_RCPT, "forever@exp.example", 0);
    /* already expired in the store: never mirrored */
    add_entry(wl, K_CLIENT, "100.64.0.2", NOW - 1);
    add_entry(wl, K_SENDER, "old@exp.example", NOW - 1);
    ck_assert_uint_eq(wl_count(wl), 4);

    EXPECT_MATCH(match(wl, "100.64.0.1", NULL, NULL, NULL, NOW + 999), "client:100.64.0.1/32", "live");
    EXPECT_MATCH(match(wl, "100.64.0.1", NULL, NULL, NULL, NOW + 1000), NULL, "at expiry");
    EXPECT_MATCH(match(wl, "100.64.0.1", NULL, NULL, NULL, UINT64_MAX), NULL, "far future");
    EXPECT_MATCH(match(wl, NULL, "x.temp.example", NULL, NULL, NOW), "client_name:temp.example", "name live");
    EXPECT_MATCH(match(wl, NULL, "x.temp.example", NULL, NULL, NOW + 5000), NULL, "name expired");
    EXPECT_MATCH(match(wl, NULL, NULL, "temp@exp.example", NULL, NOW), "sender:temp@exp.example", "sender live");
    EXPECT_MATCH(match(wl, NULL, NULL, "temp@exp.example", NULL, NOW + 1001), NULL, "sender expired");
    EXPECT_MATCH(match(wl, NULL, NULL, NULL, "forever@exp.example", UINT64_MAX),
                 "recipient:forever@exp.example", "expires 0");
    EXPECT_MATCH(match(wl, NULL, NULL, NULL, "forever@exp.example", 0),
                 "recipient:forever@exp.example", "expires 0 at 0");
    EXPECT_MATCH(match(wl, "100.64.0.2", NULL, "old@exp.example", NULL, 0), NULL, "expired in store");
    /* an expired entry does not hide a live one of another kind behind it */
    EXPECT_MATCH(match(wl, "100.64.0.1", NULL, NULL, "forever@exp.example", NOW + 2000),
                 "recipient:forever@exp.example", "fall through");

    /* renewing an entry (a new record for the same key) updates its expiry */
    add_entry(wl, K_CLIENT, "100.64.0.1", 0);
    ck_assert_uint_eq(wl_count(wl), 4);
    EXPECT_MATCH(match(wl, "100.64.0.1", NULL, NULL, NULL, UINT64_MAX), "client:100.64.0.1/32", "renewed");
    add_entry(wl, K_CLIENT, "100.64.0.1", NOW + 10);
    EXPECT_MATCH(match(wl, "100.64.0.1", NULL, NULL, NULL, NOW + 10), NULL, "shortened");

    /* wl_load sees the same */
    struct whitelist *w2 = wl_create();
    ck_assert_int_eq(wl_load(w2, st, errbuf, sizeof errbuf), MXC_OK);
    ck_assert_uint_eq(wl_count(w2), 4);
    EXPECT_MATCH(match(w2, "100.64.0.1", NULL, NULL, NULL, NOW + 9), "client:100.64.0.1/32", "load live");
    EXPECT_MATCH(match(w2, "100.64.0.1", NULL, NULL, NULL, NOW + 10), NULL, "load expired");
    EXPECT_MATCH(match(w2, "100.64.0.2", NULL, "old@exp.example", NULL, 0), NULL, "load expired in store");
    wl_destroy(w2);
    wl_destroy(wl);
}
END_TEST

START_TEST(match_delete)
{
    struct whitelist *wl = wl_create();
    add_all(wl);
    EXPECT_MATCH(match(wl, "192.0.2.5", NULL, NULL, NULL, NOW), "client:192.0.2.0/24", "before");
    EXPECT_MATCH(match(wl, "203.0.113.10", NULL, NULL, NULL, NOW), "client:203.0.113.0/24", "before");

    /* delete one of the two /24s: it stops matching, the other /24 still does */
    del_entry(wl, K_CLIENT, "192.0.2.0/24");
    ck_assert_uint_eq(wl_count(wl), NENTRIES - 1);
    EXPECT_MATCH(match(wl, "192.0.2.5", NULL, NULL, NULL, NOW), NULL, "deleted /24");
    EXPECT_MATCH(match(wl, "203.0.113.10", NULL, NULL, NULL, NOW), "client:203.0.113.0/24", "other /24");
    /* syncing the deleted key again must not count it down twice */
    del_entry(wl, K_CLIENT, "192.0.2.0/24");
    del_entry(wl, K_CLIENT, "192.0.2.0/24");
    ck_assert_uint_eq(wl_count(wl), NENTRIES - 1);
    EXPECT_MATCH(match(wl, "203.0.113.10", NULL, NULL, NULL, NOW), "client:203.0.113.0/24", "after 2x");
    /* a key that never existed */
    del_entry(wl, K_CLIENT, "192.0.2.0/23");
    EXPECT_MATCH(match(wl, "203.0.113.10", NULL, NULL, NULL, NOW), "client:203.0.113.0/24", "never");

    /* the /32 inside the remaining /24: deleting it leaves the /24 in charge */
    EXPECT_MATCH(match(wl, "203.0.113.9", NULL, NULL, NULL, NOW), "client:203.0.113.9/32", "/32");
    del_entry(wl, K_CLIENT, "203.0.113.9");
    EXPECT_MATCH(match(wl, "203.0.113.9", NULL, NULL, NULL, NOW), "client:203.0.113.0/24", "/32 gone");
    del_entry(wl, K_CLIENT, "203.0.113.0/24");
    EXPECT_MATCH(match(wl, "203.0.113.9", NULL, NULL, NULL, NOW), NULL, "/24 gone");
    /* re-adding counts up again */
    add_entry(wl, K_CLIENT, "192.0.2.1/24", 0);
    EXPECT_MATCH(match(wl, "192.0.2.5", NULL, NULL, NULL, NOW), "client:192.0.2.0/24", "re-added");

    /* v6 and the other kinds */
    del_entry(wl, K_CLIENT, "2001:db8:1::/48");
    EXPECT_MATCH(match(wl, "2001:db8:1::1", NULL, NULL, NULL, NOW), NULL, "v6 deleted");
    EXPECT_MATCH(match(wl, "2001:db8:2:3::1", NULL, NULL, NULL, NOW), "client:2001:db8:2:3::/64", "v6 other");
    del_entry(wl, K_NAME, "example.com");
    EXPECT_MATCH(match(wl, NULL, "mail.example.com", NULL, NULL, NOW), NULL, "name deleted");
    del_entry(wl, K_SENDER, "trusted.example");
    EXPECT_MATCH(match(wl, NULL, NULL, "x@trusted.example", NULL, NOW), NULL, "sender deleted");
    EXPECT_MATCH(match(wl, NULL, NULL, "boss@partner.example", NULL, NOW), "sender:boss@partner.example",
                 "sender other");
    del_entry(wl, K_RCPT, "postmaster@our.example");
    EXPECT_MATCH(match(wl, NULL, NULL, NULL, "postmaster@our.example", NOW), NULL, "rcpt deleted");

    /* wl_load of the store agrees with the synced mirror */
    struct whitelist *w2 = wl_create();
    ck_assert_int_eq(wl_load(w2, st, errbuf, sizeof errbuf), MXC_OK);
    ck_assert_uint_eq(wl_count(w2), wl_count(wl));
    for (size_t i = 0; i < NMATCH; i++) {
        const struct match_case *c = &match_cases[i];
        char a[WL_KEY_MAX] = "", what[32];
        const char *g = match(wl, c->client, c->name, c->sender, c->rcpt, NOW);
        if (g)
            snprintf(a, sizeof a, "%s", g);
        snprintf(what, sizeof what, "agree %zu", i);
        EXPECT_MATCH(match(w2, c->client, c->name, c->sender, c->rcpt, NOW), g ? a : NULL, what);
    }
    wl_destroy(w2);
    wl_destroy(wl);
}
END_TEST

START_TEST(sync_bad_args)
{
    struct whitelist *wl = wl_create();
    char key[WL_KEY_MAX + 10];

    memset(key, 'a', sizeof key);
    ck_assert_int_eq(wl_sync_key(wl, st, key, WL_KEY_MAX), MXC_EINVAL);
    ck_assert_int_eq(wl_sync_key(wl, st, "", 0), MXC_OK); /* an absent key: nothing to mirror */
    ck_assert_uint_eq(wl_count(wl), 0);
    /* a record whose bytes are not a whitelist record is not mirrored */
    store_batch *b = store_batch_create(st);
    ck_assert_int_eq(store_batch_put(b, KS_WL, "client:192.0.2.1/32", 19, "\xff\xff\xff", 3), MXC_OK);
    commit(b);
    store_batch_destroy(b);
    sync_unterminated(wl, "client:192.0.2.1/32", 19, 1);
    ck_assert_uint_eq(wl_count(wl), 0);
    EXPECT_MATCH(match(wl, "192.0.2.1", NULL, NULL, NULL, NOW), NULL, "corrupt record");
    ck_assert_int_eq(wl_load(wl, st, errbuf, sizeof errbuf), MXC_OK);
    EXPECT_MATCH(match(wl, "192.0.2.1", NULL, NULL, NULL, NOW), NULL, "corrupt record loaded");
    wl_destroy(wl);
}
END_TEST

/* Regression: prefix counting must use keylen, not look for a NUL. Many /32s and one /15, keys
 * synced from buffers that continue with "/15xyz" and other garbage, and loaded from RocksDB. */
#define MANY 50000

static void many_value(size_t i, char *v, size_t n)
{
    snprintf(v, n, "172.20.%zu.%zu", i >> 8, i & 255);
}

static void check_many(struct whitelist *wl, const char *how)
{
    char v[64], want[80];

    REQUIRE(wl_count(wl) == MANY + 2, "%s: count %zu", how, wl_count(wl));
    EXPECT_MATCH(match(wl, "10.254.0.0", NULL, NULL, NULL, NOW), "client:10.254.0.0/15", how);
    EXPECT_MATCH(match(wl, "10.255.200.1", NULL, NULL, NULL, NOW), "client:10.254.0.0/15", how);
    EXPECT_MATCH(match(wl, "10.253.255.255", NULL, NULL, NULL, NOW), NULL, how);
    EXPECT_MATCH(match(wl, "10.0.0.1", NULL, NULL, NULL, NOW), NULL, how);
    EXPECT_MATCH(match(wl, "2001:db8:fe00::1", NULL, NULL, NULL, NOW), "client:2001:db8:fe00::/39", how);
    EXPECT_MATCH(match(wl, "2001:db8:fc00::1", NULL, NULL, NULL, NOW), NULL, how);
    for (size_t i = 0; i < MANY; i++) {
        many_value(i, v, sizeof v);
        snprintf(want, sizeof want, "client:%s/32", v);
        const char *g = match(wl, v, NULL, NULL, NULL, NOW);
        REQUIRE(g && strcmp(g, want) == 0, "%s: %s matched %s", how, v, g ? g : "(none)");
    }
    EXPECT_MATCH(match(wl, "172.20.200.0", NULL, NULL, NULL, NOW), NULL, how);
}

START_TEST(unterminated_keys_many)
{
    char key[WL_KEY_MAX], v[64];
    static char keys[MANY + 2][32];
    static size_t keylens[MANY + 2];
    store_batch *b = store_batch_create(st);

    for (size_t i = 0; i < MANY + 2; i++) {
        if (i == MANY)
            snprintf(v, sizeof v, "10.255.1.2/15");
        else if (i == MANY + 1)
            snprintf(v, sizeof v, "2001:db8:fe01::1/39");
        else
            many_value(i, v, sizeof v);
        keylens[i] = make_key(K_CLIENT, v, key);
        memcpy(keys[i], key, keylens[i] + 1);
        batch_put_record(b, K_CLIENT, key, keylens[i], 0);
        if (store_batch_count(b) >= 5000)
            commit(b);
    }
    commit(b);
    store_batch_destroy(b);
    ck_assert_str_eq(keys[MANY], "client:10.254.0.0/15");
    ck_assert_str_eq(keys[MANY + 1], "client:2001:db8:fe00::/39");

    /* mirrored key by key from unterminated buffers */
    struct whitelist *synced = wl_create();
    for (size_t i = 0; i < MANY + 2; i++)
        sync_unterminated(synced, keys[i], keylens[i], (unsigned)i);
    check_many(synced, "sync");

    /* loaded from the store: keys come from the iterator, followed by other bytes */
    struct whitelist *loaded = wl_create();
    ck_assert_int_eq(wl_load(loaded, st, errbuf, sizeof errbuf), MXC_OK);
    check_many(loaded, "load");

    /* deleting the /15 through an unterminated key removes it and its count */
    struct whitelist *wls[2] = {synced, loaded};
    b = store_batch_create(st);
    ck_assert_int_eq(store_batch_delete(b, KS_WL, keys[MANY], keylens[MANY]), MXC_OK);
    commit(b);
    store_batch_destroy(b);
    for (int w = 0; w < 2; w++) {
        sync_unterminated(wls[w], keys[MANY], keylens[MANY], 0);
        ck_assert_uint_eq(wl_count(wls[w]), MANY + 1);
        EXPECT_MATCH(match(wls[w], "10.255.200.1", NULL, NULL, NULL, NOW), NULL, "/15 deleted");
        EXPECT_MATCH(match(wls[w], "172.20.1.1", NULL, NULL, NULL, NOW), "client:172.20.1.1/32",
                     "/32 kept");
    }
    wl_destroy(synced);
    wl_destroy(loaded);
}
END_TEST

/* Regression: prefix lengths were parsed with strtoul alone. */
START_TEST(bug_prefix_strtoul)
{
    /* strtoul skips blanks, takes a sign and negates: none of these may pass. */
    static const char *const bad[] = {"192.0.2.1/ 24", "192.0.2.1/+24", "192.0.2.1/-0",
                                      "192.0.2.1/\t8", "192.0.2.1/-18446744073709551615"};
    char key[WL_KEY_MAX], err[128];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(wl_key(K_CLIENT, bad[i], key, sizeof key, err, sizeof err) == MXC_EINVAL,
                      "\"%s\" accepted as %s", bad[i], key);
}
END_TEST

START_TEST(bug_client_key_truncated)
{
    /* Regression: a client key was truncated where the other kinds refuse a short buffer. */
    char key[WL_KEY_MAX], err[128];
    int rc = wl_key(K_CLIENT, "192.0.2.1", key, 10, err, sizeof err);
    ck_assert_msg(rc == MXC_EINVAL, "rc %d key \"%s\"", rc, key);
}
END_TEST

static Suite *whitelist_suite(void)
{
    Suite *s = suite_create("whitelist");
    TCase *tc = tcase_create("key");
    tcase_add_loop_test(tc, key_table, 0, (int)(sizeof key_cases / sizeof key_cases[0]));
    tcase_add_test(tc, key_lengths);
    tcase_add_test(tc, bug_prefix_strtoul);
    tcase_add_test(tc, bug_client_key_truncated);
    suite_add_tcase(s, tc);

    tc = tcase_create("match");
    tcase_add_unchecked_fixture(tc, base_setup, base_teardown);
    tcase_add_checked_fixture(tc, store_setup, store_teardown);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, match_empty);
    tcase_add_test(tc, match_synced);
    tcase_add_test(tc, match_loaded);
    tcase_add_test(tc, match_all_networks);
    tcase_add_test(tc, match_expiry);
    tcase_add_test(tc, match_delete);
    tcase_add_test(tc, sync_bad_args);
    tcase_add_test(tc, unterminated_keys_many);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(whitelist_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
