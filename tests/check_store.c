/* Check suite for server/store.c against a real RocksDB in a temporary directory: writes through
 * batches, read-your-writes, expiry on read with a test clock, prefix scans and paging, the
 * compaction filter removing expired records from disk, restart, durability of a synced commit
 * across a killed process, the database lock, stats and argument checks.
 *
 * The crash test runs this same binary as the writer (argv[1] == "--crash-writer"), started with
 * fork+exec so that the writer gets fresh RocksDB threads and a process of its own to kill. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mxc_err.h"
#include "record.h"
#include "store.h"

#define KS_VERIFY MXCACHE__KEYSPACE__KEYSPACE_VERIFY
#define KS_GREYLIST MXCACHE__KEYSPACE__KEYSPACE_GREYLIST
#define KS_AWL MXCACHE__KEYSPACE__KEYSPACE_AWL
#define KS_WHITELIST MXCACHE__KEYSPACE__KEYSPACE_WHITELIST
#define KS_ALL MXCACHE__KEYSPACE__KEYSPACE_UNSPECIFIED

#define CRASH_ROUNDS 10
#define CRASH_KEYS 5

static char base_dir[PATH_MAX]; /* per TCase, removed by the unchecked teardown */
static _Atomic uint64_t test_clock = 1000000;
static char errbuf[512];

static uint64_t clock_fn(void *arg)
{
    (void)arg;
    return atomic_load(&test_clock);
}

/* ---- fixtures and helpers ---- */

static void base_setup(void)
{
    const char *tmp = getenv("TMPDIR");

    snprintf(base_dir, sizeof base_dir, "%s/check_store.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(base_dir)) {
        perror("mkdtemp");
        abort();
    }
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void rm_tree(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void base_teardown(void)
{
    rm_tree(base_dir);
}

/* new_dir - a fresh database path under base_dir for one test. */
static void new_dir(char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s/db.XXXXXX", base_dir);
    ck_assert(n > 0 && (size_t)n < outlen);
    ck_assert_ptr_nonnull(mkdtemp(out));
}

static store *open_at(const char *path, bool sync)
{
    struct store_options o = {
        .path = path,
        .sync = sync,
        .block_cache_bytes = 8 << 20,
        .write_buffer_bytes = 4 << 20,
        .max_background_jobs = 2,
        .now_ms = clock_fn,
        .now_arg = NULL,
    };
    store *st = store_open(&o, errbuf, sizeof errbuf);

    ck_assert_msg(st != NULL, "store_open %s: %s", path, errbuf);
    return st;
}

struct blob {
    uint8_t *p;
    size_t n;
};

/* rec_raw - a packed AwlRecord: expires (0: never) and a tag that makes values distinct; p is
 * NULL when out of memory. Free of Check calls, so that the crash writer can use it too. */
static struct blob rec_raw(uint64_t expires, uint32_t tag)
{
    Mxcache__AwlRecord r = MXCACHE__AWL_RECORD__INIT;
    struct blob b;

    r.expires_at_ms = expires;
    r.first_seen_ms = 1;
    r.last_seen_ms = 2;
    r.passes = tag;
    b.n = mxcache__awl_record__get_packed_size(&r);
    if ((b.p = malloc(b.n ? b.n : 1)))
        mxcache__awl_record__pack(&r, b.p);
    return b;
}

static struct blob rec(uint64_t expires, uint32_t tag)
{
    struct blob b = rec_raw(expires, tag);

    ck_assert_ptr_nonnull(b.p);
    return b;
}

static void put(store_batch *b, Mxcache__Keyspace ks, const char *key, struct blob v)
{
    ck_assert_int_eq(store_batch_put(b, ks, key, strlen(key), v.p, v.n), MXC_OK);
}

static void commit(store_batch *b)
{
    int rc = store_batch_commit(b, errbuf, sizeof errbuf);

    ck_assert_msg(rc == MXC_OK, "commit: %d %s", rc, errbuf);
    ck_assert_uint_eq(store_batch_count(b), 0);
}

/* expect_get - store_get (b NULL) or store_batch_get returns exactly want. */
static void expect_value(store *st, store_batch *b, Mxcache__Keyspace ks, const char *key,
                         struct blob want)
{
    char *v = NULL;
    size_t n = 0;
    int rc = b ? store_batch_get(b, ks, key, strlen(key), &v, &n, errbuf, sizeof errbuf)
               : store_get(st, ks, key, strlen(key), &v, &n, errbuf, sizeof errbuf);

    ck_assert_msg(rc == MXC_OK, "get %s: %d", key, rc);
    ck_assert_uint_eq(n, want.n);
    ck_assert_mem_eq(v, want.p, n);
    free(v);
}

static void expect_missing(store *st, store_batch *b, Mxcache__Keyspace ks, const char *key)
{
    char *v = (char *)"untouched";
    size_t n = 0;
    int rc = b ? store_batch_get(b, ks, key, strlen(key), &v, &n, errbuf, sizeof errbuf)
               : store_get(st, ks, key, strlen(key), &v, &n, errbuf, sizeof errbuf);

    ck_assert_msg(rc == MXC_ENOENT, "get %s: %d, want MXC_ENOENT", key, rc);
}

/* Scan collector: copies keys, stops after limit (0: no limit). */
struct collect {
    char keys[1000][32];
    size_t n;
    size_t limit;
    int ret_at_limit; /* what fn returns when the limit is reached */
};

static int collect_fn(void *arg, const char *key, size_t keylen, const char *val, size_t vallen)
{
    struct collect *c = arg;

    (void)val, (void)vallen;
    ck_assert_uint_lt(keylen, sizeof c->keys[0]);
    ck_assert_uint_lt(c->n, sizeof c->keys / sizeof c->keys[0]);
    memcpy(c->keys[c->n], key, keylen);
    c->keys[c->n][keylen] = '\0';
    c->n++;
    if (c->limit && c->n == c->limit)
        return c->ret_at_limit;
    return 0;
}

static size_t scan_count(store *st, Mxcache__Keyspace ks, const char *prefix, bool include_expired)
{
    struct collect *c = calloc(1, sizeof *c);
    size_t n;

    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(store_scan(st, ks, prefix, prefix ? strlen(prefix) : 0, NULL, 0,
                                include_expired, collect_fn, c, errbuf, sizeof errbuf),
                     MXC_OK);
    n = c->n;
    free(c);
    return n;
}

/* ---- tests ---- */

START_TEST(t_put_get)
{
    char dir[PATH_MAX];
    new_dir(dir, sizeof dir);
    store *st = open_at(dir, false);
    store_batch *b = store_batch_create(st);
    struct blob v1 = rec(0, 1), v2 = rec(0, 2);

    ck_assert_ptr_nonnull(b);
    put(b, KS_VERIFY, "alice@example.org", v1);
    put(b, KS_GREYLIST, "alice@example.org", v2);
    ck_assert_uint_eq(store_batch_count(b), 2);
    /* Not visible to other readers before the commit. */
    expect_missing(st, NULL, KS_VERIFY, "alice@example.org");
    commit(b);
    expect_value(st, NULL, KS_VERIFY, "alice@example.org", v1);
    /* Keyspaces are separate. */
    expect_value(st, NULL, KS_GREYLIST, "alice@example.org", v2);
    expect_missing(st, NULL, KS_AWL, "alice@example.org");
    expect_missing(st, NULL, KS_VERIFY, "bob@example.org");
    expect_missing(st, NULL, KS_VERIFY, "alice@example.or");

    /* Overwrite and delete, committed. */
    put(b, KS_VERIFY, "alice@example.org", v2);
    commit(b);
    expect_value(st, NULL, KS_VERIFY, "alice@example.org", v2);
    ck_assert_int_eq(store_batch_delete(b, KS_VERIFY, "alice@example.org", 17), MXC_OK);
    commit(b);
    expect_missing(st, NULL, KS_VERIFY, "alice@example.org");
    expect_value(st, NULL, KS_GREYLIST, "alice@example.org", v2);

    /* Binary keys with NUL bytes are keys like any other. */
    ck_assert_int_eq(store_batch_put(b, KS_AWL, "a\0b", 3, v1.p, v1.n), MXC_OK);
    commit(b);
    char *v;
    size_t n;
    ck_assert_int_eq(store_get(st, KS_AWL, "a\0b", 3, &v, &n, errbuf, sizeof errbuf), MXC_OK);
    ck_assert_uint_eq(n, v1.n);
    free(v);
    ck_assert_int_eq(store_get(st, KS_AWL, "a", 1, &v, &n, errbuf, sizeof errbuf), MXC_ENOENT);

    /* An empty value is a record that never expires. */
    ck_assert_int_eq(store_batch_put(b, KS_WHITELIST, "client:x", 8, NULL, 0), MXC_OK);
    commit(b);
    ck_assert_int_eq(store_get(st, KS_WHITELIST, "client:x", 8, &v, &n, errbuf, sizeof errbuf), MXC_OK);
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_nonnull(v);
    free(v);

    store_batch_destroy(b);
    store_close(st);
    free(v1.p);
    free(v2.p);
}
END_TEST

START_TEST(t_expiry_on_read)
{
    char dir[PATH_MAX];
    new_dir(dir, sizeof dir);
    atomic_store(&test_clock, 1000);
    store *st = open_at(dir, false);
    store_batch *b = store_batch_create(st);
    struct blob soon = rec(2000, 1), never = rec(0, 2), gone = rec(500, 3);
    static const uint8_t corrupt[] = {0x09, 0x01};

    ck_assert_uint_eq(store_now_ms(st), 1000);
    put(b, KS_GREYLIST, "soon", soon);
    put(b, KS_GREYLIST, "never", never);
    put(b, KS_GREYLIST, "gone", gone);
    ck_assert_int_eq(store_batch_put(b, KS_GREYLIST, "corrupt", 7, corrupt, sizeof corrupt), MXC_OK);
    /* Pending writes are filtered too. */
    expect_value(st, b, KS_GREYLIST, "soon", soon);
    expect_missing(st, b, KS_GREYLIST, "gone");
    expect_missing(st, b, KS_GREYLIST, "corrupt");
    commit(b);

    expect_value(st, NULL, KS_GREYLIST, "soon", soon);
    expect_missing(st, NULL, KS_GREYLIST, "gone");
    expect_missing(st, NULL, KS_GREYLIST, "corrupt");
    ck_assert_uint_eq(scan_count(st, KS_GREYLIST, NULL, false), 2);
    ck_assert_uint_eq(scan_count(st, KS_GREYLIST, NULL, true), 4);

    atomic_store(&test_clock, 1999);
    expect_value(st, NULL, KS_GREYLIST, "soon", soon);
    atomic_store(&test_clock, 2000); /* now == expires: expired */
    expect_missing(st, NULL, KS_GREYLIST, "soon");
    expect_missing(st, b, KS_GREYLIST, "soon");
    ck_assert_uint_eq(scan_count(st, KS_GREYLIST, NULL, false), 1);
    ck_assert_uint_eq(scan_count(st, KS_GREYLIST, NULL, true), 4);
    atomic_store(&test_clock, UINT64_MAX);
    expect_value(st, NULL, KS_GREYLIST, "never", never);
    expect_value(st, b, KS_GREYLIST, "never", never);

    store_batch_destroy(b);
    store_close(st);
    free(soon.p);
    free(never.p);
    free(gone.p);
    atomic_store(&test_clock, 1000000);
}
END_TEST

START_TEST(t_batch_read_your_writes)
{
    char dir[PATH_MAX];
    new_dir(dir, sizeof dir);
    store *st = open_at(dir, false);
    store_batch *b = store_batch_create(st), *other = store_batch_create(st);
    struct blob v1 = rec(0, 1), v2 = rec(0, 2), v3 = rec(0, 3);

    put(b, KS_AWL, "a", v1);
    put(b, KS_AWL, "b", v1);
    commit(b);

    put(b, KS_AWL, "c", v2);
    expect_value(st, b, KS_AWL, "c", v2);      /* the batch sees its pending put */
    expect_missing(st, NULL, KS_AWL, "c");     /* nobody else does */
    expect_missing(st, other, KS_AWL, "c");    /* not even another batch */
    expect_value(st, b, KS_AWL, "a", v1);      /* committed values show through */

    ck_assert_int_eq(store_batch_delete(b, KS_AWL, "a", 1), MXC_OK);
    expect_missing(st, b, KS_AWL, "a");        /* a pending delete hides the committed value */
    expect_value(st, NULL, KS_AWL, "a", v1);
    expect_value(st, other, KS_AWL, "a", v1);

    put(b, KS_AWL, "b", v2);
    put(b, KS_AWL, "b", v3);                   /* the last pending write of a key wins */
    expect_value(st, b, KS_AWL, "b", v3);
    put(b, KS_AWL, "a", v2);                   /* put after delete resurrects */
    expect_value(st, b, KS_AWL, "a", v2);
    ck_assert_int_eq(store_batch_delete(b, KS_AWL, "c", 1), MXC_OK);
    expect_missing(st, b, KS_AWL, "c");
    ck_assert_uint_gt(store_batch_count(b), 0);
    commit(b);

    expect_value(st, NULL, KS_AWL, "a", v2);
    expect_value(st, NULL, KS_AWL, "b", v3);
    expect_missing(st, NULL, KS_AWL, "c");
    expect_value(st, other, KS_AWL, "b", v3);

    /* Destroying a batch drops its pending writes. */
    put(other, KS_AWL, "d", v1);
    store_batch_destroy(other);
    expect_missing(st, NULL, KS_AWL, "d");

    store_batch_destroy(b);
    store_batch_destroy(NULL);
    store_close(st);
    free(v1.p);
    free(v2.p);
    free(v3.p);
}
END_TEST

struct watched {
    char log[256];
};

static void watch_cb(void *arg, Mxcache__Keyspace ks, const char *key, size_t keylen, bool write)
{
    struct watched *w = arg;
    size_t used = strlen(w->log);
    snprintf(w->log + used, sizeof w->log - used, "%s%d:%.*s ", write ? "w" : "r", (int)ks,
             (int)keylen, key);
}

/* The watch hook sees every read and write of the batch, in order, and nothing after removal. */
START_TEST(t_batch_watch)
{
    char dir[PATH_MAX];
    new_dir(dir, sizeof dir);
    store *st = open_at(dir, false);
    store_batch *b = store_batch_create(st);
    struct blob v1 = rec(0, 1);
    struct watched w = {""};
    char *val;
    size_t vallen;
    char err[256];

    store_batch_watch(b, watch_cb, &w);
    put(b, KS_AWL, "a", v1);
    ck_assert_int_eq(store_batch_get(b, KS_GREYLIST, "b", 1, &val, &vallen, err, sizeof err), MXC_ENOENT);
    ck_assert_int_eq(store_batch_delete(b, KS_AWL, "a", 1), MXC_OK);
    ck_assert_str_eq(w.log, "w3:a r2:b w3:a ");
    store_batch_watch(b, NULL, NULL);
    put(b, KS_AWL, "c", v1);
    ck_assert_str_eq(w.log, "w3:a r2:b w3:a ");
    store_batch_destroy(b);
    store_close(st);
    free(v1.p);
}
END_TEST

START_TEST(t_commit_empty)
{
    char dir[PATH_MAX];
    new_dir(dir, sizeof dir);
    store *st = open_at(dir, true);
    store_batch *b = store_batch_create(st);

    errbuf[0] = '\0';
    ck_assert_uint_eq(store_batch_count(b), 0);
    ck_assert_int_eq(store_batch_commit(b, errbuf, sizeof errbuf), MXC_OK);
    ck_assert_int_eq(store_batch_commit(b, NULL, 0), MXC_OK);
    ck_assert_str_eq(errbuf, "");
    /* Rejected writes do not enter the batch. */
    ck_assert_int_eq(store_batch_put(b, KS_AWL, "", 0, "x", 1), MXC_EINVAL);
    ck_assert_int_eq(store_batch_put(b, KS_AWL, NULL, 3, "x", 1), MXC_EINVAL);
    ck_assert_int_eq(store_batch_delete(b, KS_AWL, "", 0), MXC_EINVAL);
    ck_assert_uint_eq(store_batch_count(b), 0);
    ck_assert_int_eq(store_batch_commit(b, errbuf, sizeof errbuf), MXC_OK);
    ck_assert_uint_eq(scan_count(st, KS_AWL, NULL, true), 0);
    store_batch_destroy(b);
    store_close(st);
}
END_TEST

/* A commit that RocksDB refuses: the WAL cannot grow past RLIMIT_FSIZE. The batch must come back
 * empty with MXC_ESTORE and a message, and none of it may be visible, now or after a reopen. */
START_TEST(t_commit_failure)
{
    char dir[PATH_MAX];
    new_dir(dir, sizeof dir);
    store *st = open_at(dir, false);
    store_batch *b = store_batch_create(st);
    struct blob small = rec(0, 1);
    size_t bign = 1 << 20;
    char *big = calloc(1, bign);
    struct rlimit old, lim;
    void (*oldsig)(int);

    ck_assert_ptr_nonnull(big);
    put(b, KS_VERIFY, "before", small);
    commit(b);

    put(b, KS_VERIFY, "doomed", small);
    ck_assert_int_eq(store_batch_put(b, KS_VERIFY, "big", 3, big, bign), MXC_OK);
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 256 << 10;
    oldsig = signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    errbuf[0] = '\0';
    int rc = store_batch_commit(b, errbuf, sizeof errbuf);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, oldsig);

    ck_assert_int_eq(rc, MXC_ESTORE);
    ck_assert_msg(strstr(errbuf, "commit") != NULL, "message: %s", errbuf);
    ck_assert_uint_eq(store_batch_count(b), 0);
    expect_missing(st, b, KS_VERIFY, "doomed");
    expect_missing(st, NULL, KS_VERIFY, "doomed");
    expect_value(st, NULL, KS_VERIFY, "before", small);
    store_batch_destroy(b);
    store_close(st);

    st = open_at(dir, false);
    expect_missing(st, NULL, KS_VERIFY, "doomed");
    expect_missing(st, NULL, KS_VERIFY, "big");
    expect_value(st, NULL, KS_VERIFY, "before", small);
    store_close(st);
    free(big);
    free(small.p);
}
END_TEST

START_TEST(t_scan)
{
    char dir[PATH_MAX];
    new_dir(dir, sizeof dir);
    atomic_store(&test_clock, 1000);
    store *st = open_at(dir, false);
    store_batch *b = store_batch_create(st);
    struct blob live = rec(5000, 1), dead = rec(500, 2);
    char key[32];
    struct collect *c = calloc(1, sizeof *c);

    ck_assert_ptr_nonnull(c);
    for (int i = 0; i < 250; i++) {
        snprintf(key, sizeof key, "k%03d", i);
        put(b, KS_VERIFY, key, live);
        snprintf(key, sizeof key, "k%03dx", i); /* expired neighbours inside the prefix */
        if (i % 10 == 0)
            put(b, KS_VERIFY, key, dead);
    }
    put(b, KS_VERIFY, "j999", live);  /* just before the prefix */
    put(b, KS_VERIFY, "k", live);     /* the prefix itself is a key */
    put(b, KS_VERIFY, "l000", live);  /* just after */
    put(b, KS_GREYLIST, "k500", live); /* another keyspace */
    commit(b);

    /* Paging through the prefix "k0".."k2" keys in pages of 100. */
    char start[32] = "";
    size_t total = 0, pages = 0;
    char (*seen)[32] = calloc(300, 32);
    for (;;) {
        c->n = 0;
        c->limit = 100;
        c->ret_at_limit = 1;
        ck_assert_int_eq(store_scan(st, KS_VERIFY, "k", 1, start, strlen(start), false,
                                    collect_fn, c, errbuf, sizeof errbuf),
                         MXC_OK);
        for (size_t i = 0; i < c->n; i++)
            memcpy(seen[total + i], c->keys[i], 32);
        total += c->n;
        pages++;
        if (c->n < 100)
            break;
        snprintf(start, sizeof start, "%s", c->keys[c->n - 1]);
    }
    ck_assert_uint_eq(total, 251); /* "k" and k000..k249 */
    ck_assert_uint_eq(pages, 3);
    ck_assert_str_eq(seen[0], "k");
    for (int i = 0; i < 250; i++) {
        snprintf(key, sizeof key, "k%03d", i);
        ck_assert_str_eq(seen[i + 1], key);
    }
    free(seen);

    /* With expired records. */
    ck_assert_uint_eq(scan_count(st, KS_VERIFY, "k", true), 251 + 25);
    ck_assert_uint_eq(scan_count(st, KS_VERIFY, "k1", false), 100);
    ck_assert_uint_eq(scan_count(st, KS_VERIFY, "k24", false), 10);
    ck_assert_uint_eq(scan_count(st, KS_VERIFY, "k249", false), 1);
    ck_assert_uint_eq(scan_count(st, KS_VERIFY, "k2499", false), 0);
    ck_assert_uint_eq(scan_count(st, KS_VERIFY, NULL, false), 253);
    ck_assert_uint_eq(scan_count(st, KS_VERIFY, "", false), 253);
    ck_assert_uint_eq(scan_count(st, KS_GREYLIST, "k", false), 1);
    ck_assert_uint_eq(scan_count(st, KS_AWL, NULL, true), 0);

    static const struct {
        const char *prefix, *start_after;
        size_t n;
        const char *first;
    } cases[] = {
        {"k", "a", 251, "k"},            /* start_after before the prefix: from the prefix */
        {"k", "k", 250, "k000"},         /* the start_after key itself is skipped */
        {"k", "k1235", 126, "k124"},     /* not a key: from the next one */
        {"k", "k249", 0, NULL},
        {"k", "z", 0, NULL},             /* past the prefix */
        {"", "k249", 1, "l000"},
        {"", "", 253, "j999"},
        {"k00", "k005", 4, "k006"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        c->n = 0;
        c->limit = 0;
        ck_assert_int_eq(store_scan(st, KS_VERIFY, cases[i].prefix, strlen(cases[i].prefix),
                                    cases[i].start_after, strlen(cases[i].start_after), false,
                                    collect_fn, c, errbuf, sizeof errbuf),
                         MXC_OK);
        ck_assert_msg(c->n == cases[i].n, "case %zu: %zu keys", i, c->n);
        if (cases[i].first)
            ck_assert_str_eq(c->keys[0], cases[i].first);
    }

    /* Early stop, and a negative code from the callback comes back unchanged. */
    c->n = 0;
    c->limit = 3;
    c->ret_at_limit = 1;
    ck_assert_int_eq(store_scan(st, KS_VERIFY, "k", 1, NULL, 0, false, collect_fn, c, errbuf,
                                sizeof errbuf),
                     MXC_OK);
    ck_assert_uint_eq(c->n, 3);
    c->n = 0;
    c->ret_at_limit = MXC_ENOMEM;
    ck_assert_int_eq(store_scan(st, KS_VERIFY, "k", 1, NULL, 0, false, collect_fn, c, errbuf,
                                sizeof errbuf),
                     MXC_ENOMEM);
    ck_assert_uint_eq(c->n, 3);

    store_batch_destroy(b);
    store_close(st);
    free(c);
    free(live.p);
    free(dead.p);
    atomic_store(&test_clock, 1000000);
}
END_TEST

/* Prefixes ending in 0xff bytes have no simple successor; the scan must still be exact. */
START_TEST(t_scan_high_bytes)
{
    char dir[PATH_MAX];
    new_dir(dir, sizeof dir);
    store *st = open_at(dir, false);
    store_batch *b = store_batch_create(st);
    struct blob v = rec(0, 1);
    static const char *const keys[] = {
        "a", "a\xff", "a\xff\x01", "a\xff\xff", "a\xff\xff\xff", "b", "\xff", "\xff\x01", "\xff\xff",
    };

    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        put(b, KS_WHITELIST, keys[i], v);
    commit(b);
    ck_assert_uint_eq(scan_count(st, KS_WHITELIST, "a", false), 5);
    ck_assert_uint_eq(scan_count(st, KS_WHITELIST, "a\xff", false), 4);
    ck_assert_uint_eq(scan_count(st, KS_WHITELIST, "a\xff\xff", false), 2);
    ck_assert_uint_eq(scan_count(st, KS_WHITELIST, "\xff", false), 3);
    ck_assert_uint_eq(scan_count(st, KS_WHITELIST, "\xff\xff", false), 1);
    ck_assert_uint_eq(scan_count(st, KS_WHITELIST, "b", false), 1);
    store_batch_destroy(b);
    store_close(st);
    free(v.p);
}
END_TEST

START_TEST(t_compact)
{
    char dir[PATH_MAX];
    new_dir(dir, sizeof dir);
    atomic_store(&test_clock, 1000);
    store *st = open_at(dir, false);
    store_batch *b = store_batch_create(st);
    struct blob soon = rec(2000, 1), later = rec(1000000000, 2), never = rec(0, 3);
    static const uint8_t corrupt[] = {0x13};
    char key[32];
    uint64_t keys, bytes;

    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "soon%02d", i);
        put(b, KS_VERIFY, key, soon);
        snprintf(key, sizeof key, "later%02d", i);
        put(b, KS_VERIFY, key, later);
        snprintf(key, sizeof key, "other%02d", i);
        put(b, KS_AWL, key, soon);
    }
    for (int i = 0; i < 5; i++) {
        snprintf(key, sizeof key, "never%02d", i);
        put(b, KS_VERIFY, key, never);
    }
    ck_assert_int_eq(store_batch_put(b, KS_VERIFY, "corrupt", 7, corrupt, sizeof corrupt), MXC_OK);
    commit(b);
    ck_assert_uint_eq(scan_count(st, KS_VERIFY, NULL, true), 106);

    /* Expired but still on disk until a compaction. */
    atomic_store(&test_clock, 5000);
    ck_assert_uint_eq(scan_count(st, KS_VERIFY, NULL, false), 55);
    ck_assert_uint_eq(scan_count(st, KS_VERIFY, NULL, true), 106);
    /* From the memtable into one L0 file and through the filter. */
    ck_assert_int_eq(store_compact(st, KS_VERIFY, errbuf, sizeof errbuf), MXC_OK);
    ck_assert_uint_eq(scan_count(st, KS_VERIFY, NULL, true), 55);
    ck_assert_uint_eq(scan_count(st, KS_VERIFY, "soon", true), 0);
    ck_assert_uint_eq(scan_count(st, KS_VERIFY, "corrupt", true), 0);
    ck_assert_uint_eq(scan_count(st, KS_VERIFY, "later", false), 50);
    expect_value(st, NULL, KS_VERIFY, "later07", later);
    ck_assert_int_eq(store_stats(st, KS_VERIFY, &keys, &bytes), MXC_OK);
    ck_assert_uint_gt(bytes, 0);
    /* Only the keyspace asked for was compacted. */
    ck_assert_uint_eq(scan_count(st, KS_AWL, NULL, true), 50);

    /* The survivors now sit in the bottommost level, alone: compaction must still filter them. */
    atomic_store(&test_clock, 2000000000);
    ck_assert_uint_eq(scan_count(st, KS_VERIFY, NULL, true), 55);
    ck_assert_int_eq(store_compact(st, KS_VERIFY, errbuf, sizeof errbuf), MXC_OK);
    ck_assert_uint_eq(scan_count(st, KS_VERIFY, NULL, true), 5);
    expect_value(st, NULL, KS_VERIFY, "never03", never);

    /* All keyspaces at once. */
    ck_assert_int_eq(store_compact(st, KS_ALL, errbuf, sizeof errbuf), MXC_OK);
    ck_assert_uint_eq(scan_count(st, KS_AWL, NULL, true), 0);
    ck_assert_uint_eq(scan_count(st, KS_VERIFY, NULL, true), 5);
    ck_assert_int_eq(store_compact(st, (Mxcache__Keyspace)9, errbuf, sizeof errbuf), MXC_EINVAL);

    /* Still gone after a restart. */
    store_batch_destroy(b);
    store_close(st);
    st = open_at(dir, false);
    ck_assert_uint_eq(scan_count(st, KS_VERIFY, NULL, true), 5);
    store_close(st);
    free(soon.p);
    free(later.p);
    free(never.p);
    atomic_store(&test_clock, 1000000);
}
END_TEST

START_TEST(t_restart)
{
    char dir[PATH_MAX];
    new_dir(dir, sizeof dir);
    store *st = open_at(dir, false);
    store_batch *b = store_batch_create(st);
    struct blob v[20];
    char key[32];
    static const Mxcache__Keyspace ks[] = {KS_VERIFY, KS_GREYLIST, KS_AWL, KS_WHITELIST};

    for (int i = 0; i < 20; i++) {
        v[i] = rec(i % 2 ? 0 : 900000000000ULL, (uint32_t)i);
        snprintf(key, sizeof key, "key%02d", i);
        put(b, ks[i % 4], key, v[i]);
    }
    commit(b);
    /* Half of them in an SST, half only in the WAL. */
    ck_assert_int_eq(store_compact(st, KS_VERIFY, errbuf, sizeof errbuf), MXC_OK);
    store_batch_destroy(b);
    store_close(st);

    for (int round = 0; round < 2; round++) {
        st = open_at(dir, false);
        for (int i = 0; i < 20; i++) {
            snprintf(key, sizeof key, "key%02d", i);
            expect_value(st, NULL, ks[i % 4], key, v[i]);
            expect_missing(st, NULL, ks[(i + 1) % 4], key);
        }
        ck_assert_uint_eq(scan_count(st, KS_AWL, NULL, true), 5);
        store_close(st);
    }
    for (int i = 0; i < 20; i++)
        free(v[i].p);
}
END_TEST

/* crash_key - the i-th key written in crash round r. */
static void crash_key(char *out, size_t outlen, int r, int i)
{
    snprintf(out, outlen, "crash-%02d-%d", r, i);
}

static struct blob crash_value(int r, int i)
{
    return rec_raw(0, (uint32_t)(r * 100 + i));
}

/* crash_writer - the child: commit one synced batch, report, wait to be killed. */
static int crash_writer(const char *dir, int round, int fd)
{
    char err[512], key[32];
    struct store_options o = {
        .path = dir, .sync = true, .block_cache_bytes = 1 << 20, .write_buffer_bytes = 1 << 20,
        .max_background_jobs = 2,
    };
    store *st;
    store_batch *b;

    alarm(60); /* Robustness: never outlive a parent that died */
    if (!(st = store_open(&o, err, sizeof err))) {
        fprintf(stderr, "crash writer: %s\n", err);
        return 2;
    }
    b = store_batch_create(st);
    for (int i = 0; i < CRASH_KEYS; i++) {
        struct blob v = crash_value(round, i);
        crash_key(key, sizeof key, round, i);
        if (!v.p || store_batch_put(b, (Mxcache__Keyspace)(1 + i % 4), key, strlen(key), v.p, v.n) != 0)
            return 3;
        free(v.p);
    }
    if (store_batch_commit(b, err, sizeof err) != 0) {
        fprintf(stderr, "crash writer: %s\n", err);
        return 4;
    }
    if (write(fd, "k", 1) != 1)
        return 5;
    for (;;)
        pause();
}

START_TEST(t_crash_durability)
{
    char dir[PATH_MAX], key[32], round_s[16], fd_s[16];
    new_dir(dir, sizeof dir);

    for (int r = 0; r < CRASH_ROUNDS; r++) {
        int p[2], status;
        char byte = 0;
        pid_t pid;

        ck_assert_int_eq(pipe(p), 0);
        snprintf(round_s, sizeof round_s, "%d", r);
        snprintf(fd_s, sizeof fd_s, "%d", p[1]);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            close(p[0]);
            execl("/proc/self/exe", "check_store", "--crash-writer", dir, round_s, fd_s, (char *)NULL);
            _exit(127);
        }
        close(p[1]);
        ssize_t n = read(p[0], &byte, 1);
        if (r == 0 && n == 1) {
            /* While the writer lives, its lock keeps another process out. */
            char err[512] = "";
            struct store_options o = {.path = dir};
            store *other = store_open(&o, err, sizeof err);
            if (other) {
                store_close(other);
                kill(pid, SIGKILL);
                ck_abort_msg("opened a database that another process holds");
            }
            if (!strstr(err, "LOCK"))
                kill(pid, SIGKILL);
            ck_assert_msg(strstr(err, "LOCK") != NULL, "message: %s", err);
        }
        /* Kill at once: whatever the commit did not make durable is lost now. */
        kill(pid, SIGKILL);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        close(p[0]);
        ck_assert_msg(n == 1 && byte == 'k', "round %d: writer failed (status %d)", r, status);
        ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

        store *st = open_at(dir, false);
        for (int rr = 0; rr <= r; rr++)
            for (int i = 0; i < CRASH_KEYS; i++) {
                struct blob v = crash_value(rr, i);
                crash_key(key, sizeof key, rr, i);
                expect_value(st, NULL, (Mxcache__Keyspace)(1 + i % 4), key, v);
                free(v.p);
            }
        crash_key(key, sizeof key, r + 1, 0);
        expect_missing(st, NULL, KS_VERIFY, key);
        store_close(st);
    }
}
END_TEST

START_TEST(t_double_open)
{
    char dir[PATH_MAX], err[512] = "";
    new_dir(dir, sizeof dir);
    store *st = open_at(dir, false);
    struct store_options o = {.path = dir};

    ck_assert_ptr_null(store_open(&o, err, sizeof err));
    ck_assert_msg(strstr(err, dir) != NULL && (strstr(err, "lock") || strstr(err, "LOCK")),
                  "message: %s", err);
    /* The first one still works. */
    store_batch *b = store_batch_create(st);
    struct blob v = rec(0, 1);
    put(b, KS_AWL, "x", v);
    commit(b);
    store_batch_destroy(b);
    store_close(st);
    /* And the lock is released on close. */
    st = open_at(dir, false);
    expect_value(st, NULL, KS_AWL, "x", v);
    store_close(st);
    free(v.p);
}
END_TEST

START_TEST(t_open_errors)
{
    char dir[PATH_MAX], path[PATH_MAX + 32], err[512];
    struct store_options o = {0};
    new_dir(dir, sizeof dir);

    err[0] = '\0';
    ck_assert_ptr_null(store_open(&o, err, sizeof err));
    ck_assert_str_ne(err, "");
    o.path = "";
    ck_assert_ptr_null(store_open(&o, NULL, 0));
    ck_assert_ptr_null(store_open(NULL, err, sizeof err));

    /* A path below a regular file cannot be created. */
    snprintf(path, sizeof path, "%s/file", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    snprintf(path, sizeof path, "%s/file/db", dir);
    o.path = path;
    err[0] = '\0';
    ck_assert_ptr_null(store_open(&o, err, sizeof err));
    ck_assert_msg(strstr(err, path) != NULL, "message: %s", err);
    store_close(NULL);
}
END_TEST

START_TEST(t_stats)
{
    char dir[PATH_MAX], key[32];
    new_dir(dir, sizeof dir);
    store *st = open_at(dir, false);
    store_batch *b = store_batch_create(st);
    struct blob v = rec(0, 1);
    uint64_t keys = 99, bytes = 99;

    ck_assert_int_eq(store_stats(st, KS_GREYLIST, &keys, &bytes), MXC_OK);
    ck_assert_uint_eq(keys, 0);
    ck_assert_uint_eq(bytes, 0);
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "g%03d", i);
        put(b, KS_GREYLIST, key, v);
    }
    put(b, KS_AWL, "a", v);
    commit(b);
    ck_assert_int_eq(store_stats(st, KS_GREYLIST, &keys, &bytes), MXC_OK);
    ck_assert_uint_gt(keys, 0);
    ck_assert_int_eq(store_stats(st, KS_ALL, &keys, &bytes), MXC_OK);
    ck_assert_uint_gt(keys, 0);
    ck_assert_int_eq(store_compact(st, KS_ALL, errbuf, sizeof errbuf), MXC_OK);
    ck_assert_int_eq(store_stats(st, KS_GREYLIST, &keys, &bytes), MXC_OK);
    ck_assert_uint_eq(keys, 100);
    ck_assert_uint_gt(bytes, 0);
    uint64_t all_keys, all_bytes, awl_bytes;
    ck_assert_int_eq(store_stats(st, KS_ALL, &all_keys, &all_bytes), MXC_OK);
    ck_assert_int_eq(store_stats(st, KS_AWL, NULL, &awl_bytes), MXC_OK);
    ck_assert_uint_eq(all_keys, 101);
    ck_assert_uint_eq(all_bytes, bytes + awl_bytes);
    ck_assert_int_eq(store_stats(st, (Mxcache__Keyspace)5, &keys, &bytes), MXC_EINVAL);
    ck_assert_int_eq(store_stats(st, (Mxcache__Keyspace)-1, &keys, &bytes), MXC_EINVAL);
    store_batch_destroy(b);
    store_close(st);
    free(v.p);
}
END_TEST

static const int bad_keyspaces[] = {MXCACHE__KEYSPACE__KEYSPACE_UNSPECIFIED, 5, -1, 1000};

static int scan_never(void *arg, const char *key, size_t keylen, const char *val, size_t vallen)
{
    (void)arg, (void)key, (void)keylen, (void)val, (void)vallen;
    ck_abort_msg("callback called for a bad keyspace");
    return 0;
}

START_TEST(t_invalid_keyspace)
{
    char dir[PATH_MAX];
    new_dir(dir, sizeof dir);
    store *st = open_at(dir, false);
    store_batch *b = store_batch_create(st);
    Mxcache__Keyspace ks = (Mxcache__Keyspace)bad_keyspaces[_i];
    char *v = NULL;
    size_t n;

    ck_assert_int_eq(store_get(st, ks, "k", 1, &v, &n, errbuf, sizeof errbuf), MXC_EINVAL);
    ck_assert_int_eq(store_batch_put(b, ks, "k", 1, "v", 1), MXC_EINVAL);
    ck_assert_int_eq(store_batch_delete(b, ks, "k", 1), MXC_EINVAL);
    ck_assert_int_eq(store_batch_get(b, ks, "k", 1, &v, &n, errbuf, sizeof errbuf), MXC_EINVAL);
    ck_assert_int_eq(store_scan(st, ks, NULL, 0, NULL, 0, true, scan_never, NULL, errbuf,
                                sizeof errbuf),
                     MXC_EINVAL);
    ck_assert_uint_eq(store_batch_count(b), 0);
    ck_assert_ptr_null(v);
    if (ks != MXCACHE__KEYSPACE__KEYSPACE_UNSPECIFIED) {
        uint64_t keys, bytes;
        ck_assert_int_eq(store_compact(st, ks, errbuf, sizeof errbuf), MXC_EINVAL);
        ck_assert_int_eq(store_stats(st, ks, &keys, &bytes), MXC_EINVAL);
    }
    store_batch_destroy(b);
    store_close(st);
}
END_TEST

#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

static Suite *store_suite(void)
{
    Suite *s = suite_create("store");
    TCase *tc;

    tc = tcase_create("rw");
    tcase_add_unchecked_fixture(tc, base_setup, base_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, t_put_get);
    tcase_add_test(tc, t_expiry_on_read);
    tcase_add_test(tc, t_batch_read_your_writes);
    tcase_add_test(tc, t_batch_watch);
    tcase_add_test(tc, t_commit_empty);
    tcase_add_test(tc, t_commit_failure);
    tcase_add_test(tc, t_scan);
    tcase_add_test(tc, t_scan_high_bytes);
    tcase_add_loop_test(tc, t_invalid_keyspace, 0, NELEM(bad_keyspaces));
    suite_add_tcase(s, tc);

    tc = tcase_create("disk");
    tcase_add_unchecked_fixture(tc, base_setup, base_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, t_compact);
    tcase_add_test(tc, t_restart);
    tcase_add_test(tc, t_crash_durability);
    tcase_add_test(tc, t_double_open);
    tcase_add_test(tc, t_open_errors);
    tcase_add_test(tc, t_stats);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    SRunner *sr;
    int failed;

    if (argc == 5 && strcmp(argv[1], "--crash-writer") == 0)
        return crash_writer(argv[2], atoi(argv[3]), atoi(argv[4]));
    sr = srunner_create(store_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
