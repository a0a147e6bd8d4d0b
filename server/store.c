/* The durable state of mxcached on RocksDB (see store.h): one database, one column family per
 * keyspace, a read path that hides expired records, write batches that read their own pending
 * writes, and a compaction filter that removes expired records from disk.
 *
 * Owns the RocksDB handle, its column family handles, the shared block cache, the compaction
 * filter and the read/write options; store_close releases all of them. Trusts the values it
 * stores to be record messages (record.h) but not to be intact: a value whose bytes do not parse
 * counts as expired, so it is never returned and compaction drops it.
 *
 * Threads: RocksDB itself is thread-safe, and everything this module keeps after store_open is
 * read-only, so no lock is needed here. The compaction filter runs on RocksDB's background
 * threads and calls the store's clock from there. */
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rocksdb/c.h>

#include "mxc_err.h"
#include "record.h"

/* Column family index = Mxcache__Keyspace value; "default" (0) is required by RocksDB and unused. */
#define STORE_NCF 5
static const char *const store_cf_names[STORE_NCF] = {
    "default", "verify", "greylist", "awl", "whitelist",
};

#define STORE_BLOOM_BITS 10.0   /* bits per key: about 1% false positives on point lookups */
#define STORE_MEMTABLE_BLOOM_RATIO 0.1 /* of write_buffer_size, for the memtable's filter */
#define STORE_LOG_FILES_KEEP 10 /* RocksDB's info LOG files kept in the database directory */
/* BottommostLevelCompaction::kForce; the C API takes the enum as a plain number. */
#define STORE_BOTTOMMOST_FORCE 2
/* InfoLogLevel::HEADER_LEVEL; the C API takes the enum as a plain number. */
#define STORE_INFO_LOG_LEVEL 5

struct store {
    rocksdb_t *db;
    rocksdb_column_family_handle_t *cf[STORE_NCF];
    rocksdb_cache_t *cache;
    /* RocksDB keeps only a raw pointer to the filter: it must outlive the database. */
    rocksdb_compactionfilter_t *filter;
    rocksdb_readoptions_t *ropt;
    rocksdb_writeoptions_t *wopt;
    rocksdb_writeoptions_t *wopt_lazy; /* never syncs: store_batch_commit_lazy */
    bool sync;
    /* Robustness: set by the first write or sync that failed; from then on nothing of ours
     * writes to this database (see store_failed in store.h). */
    atomic_bool failed;
    /* Commits hold it shared, a WAL sync exclusive: see store_sync_wal. */
    pthread_rwlock_t gate;
    uint64_t (*now_ms)(void *arg);
    void *now_arg;
};

struct store_batch {
    store *st;
    rocksdb_writebatch_wi_t *wb;
    store_watch_fn watch;
    void *watch_arg;
};

/* store_err - puts "what: rocksdb's message" into err and frees rocksdb's message. */
static void store_err(char *err, size_t errlen, const char *what, char *rerr)
{
    if (err && errlen)
        snprintf(err, errlen, "%s: %s", what, rerr ? rerr : "unknown error");
    rocksdb_free(rerr);
}

/* store_msg - puts a message of our own into err. */
static void store_msg(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
}

/* Robustness: Debian's librocksdb 7.8 keeps its assertions, and after a write to the WAL failed
 * (disk full) every later use of that WAL file's writer aborts the process in
 * WritableFileWriter::AssertFalseAndGetStatusForPrevError: a FlushWAL(sync) of the sync thread,
 * and also the first write after RocksDB resumed by itself once space was freed (it resumes
 * after a flush, but keeps writing into the failed WAL file). Both killed mxcached in
 * tests/fault/test_store_errors.sh. So after the first failed write or sync nothing of ours
 * touches the database's write path again: writes, syncs and compactions fail at once with
 * STORE_FAILED_MSG, reads go on, and a restart (reopening the database) recovers. */
#define STORE_FAILED_MSG "store: writes stopped after an earlier write error (disk full or " \
                         "read-only?); restart mxcached once the disk is fixed"

/* store_fail - remembers that a write or sync failed. */
static void store_fail(store *st)
{
    atomic_store(&st->failed, true);
}

bool store_failed(const store *st)
{
    return st && atomic_load(&st->failed);
}

/* store_cf - the column family of a data keyspace, NULL for anything else. */
static rocksdb_column_family_handle_t *store_cf(const store *st, Mxcache__Keyspace ks)
{
    if ((int)ks < MXCACHE__KEYSPACE__KEYSPACE_VERIFY || (int)ks > MXCACHE__KEYSPACE__KEYSPACE_WHITELIST)
        return NULL;
    return st->cf[ks];
}

uint64_t store_now_ms(const store *st)
{
    struct timespec ts;

    if (st->now_ms)
        return st->now_ms(st->now_arg);
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* store_filter - compaction filter: drops records that have expired by the store's clock, and
 * values that are not well-formed records. Runs on RocksDB's background threads. */
static unsigned char store_filter(void *arg, int level, const char *key, size_t keylen,
                                  const char *val, size_t vallen, char **newval, size_t *newlen,
                                  unsigned char *changed)
{
    const store *st = arg;

    (void)level, (void)key, (void)keylen, (void)newval, (void)newlen;
    *changed = 0;
    return !record_is_live(val, vallen, store_now_ms(st));
}

static const char *store_filter_name(void *arg)
{
    (void)arg;
    return "mxcache.expiry";
}

/* The filter's state is the store itself, which store_close frees after the filter. */
static void store_filter_state_free(void *arg)
{
    (void)arg;
}

/* store_release - frees everything of st that was created; the database must be closed or NULL. */
static void store_release(store *st)
{
    pthread_rwlock_destroy(&st->gate);
    rocksdb_compactionfilter_destroy(st->filter);
    if (st->cache)
        rocksdb_cache_destroy(st->cache);
    if (st->ropt)
        rocksdb_readoptions_destroy(st->ropt);
    if (st->wopt)
        rocksdb_writeoptions_destroy(st->wopt);
    if (st->wopt_lazy)
        rocksdb_writeoptions_destroy(st->wopt_lazy);
    free(st);
}

/* store_base_options - DB options and the column family options shared by every family. */
static rocksdb_options_t *store_base_options(const struct store_options *opt, rocksdb_cache_t *cache)
{
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_block_based_table_options_t *t = rocksdb_block_based_options_create();

    rocksdb_options_set_create_if_missing(o, 1);
    rocksdb_options_set_create_missing_column_families(o, 1);
    if (opt->max_background_jobs > 0)
        rocksdb_options_set_max_background_jobs(o, opt->max_background_jobs);
    if (opt->write_buffer_bytes > 0)
        rocksdb_options_set_write_buffer_size(o, (size_t)opt->write_buffer_bytes);
    rocksdb_options_set_keep_log_file_num(o, STORE_LOG_FILES_KEEP);
    /* Robustness: Debian's librocksdb 7.8 keeps its assertions, and its info LOG writer asserts
     * (abort) on the next message after one write to LOG failed: on a full disk the first
     * background error message fails, the next one killed mxcached (tests/fault/
     * test_store_errors.sh). Only the header (options, file summary at open) goes to LOG now;
     * store errors reach our own log with RocksDB's status text. */
    rocksdb_options_set_info_log_level(o, STORE_INFO_LOG_LEVEL);
    /* Most greylisting lookups are for keys that do not exist (a new triplet, a client without
     * an auto-whitelist record): a bloom filter over the memtable answers those without walking
     * its skip list. */
    rocksdb_options_set_memtable_prefix_bloom_size_ratio(o, STORE_MEMTABLE_BLOOM_RATIO);
    rocksdb_options_set_memtable_whole_key_filtering(o, 1);

    rocksdb_block_based_options_set_block_cache(t, cache);
    /* The table options take ownership of the policy (a shared_ptr inside RocksDB), so it is
     * freed with the last table factory that uses it, never by us. */
    rocksdb_block_based_options_set_filter_policy(t, rocksdb_filterpolicy_create_bloom_full(STORE_BLOOM_BITS));
    /* The factory copies the table options (and shares the cache and the policy). */
    rocksdb_options_set_block_based_table_factory(o, t);
    rocksdb_block_based_options_destroy(t);
    return o;
}

store *store_open(const struct store_options *opt, char *err, size_t errlen)
{
    rocksdb_options_t *cfopt[STORE_NCF] = {0};
    rocksdb_options_t *base;
    char *rerr = NULL;
    store *st;

    if (!opt || !opt->path || !*opt->path) {
        store_msg(err, errlen, "store: no database path");
        return NULL;
    }
    if (!(st = calloc(1, sizeof *st))) {
        store_msg(err, errlen, "store: out of memory");
        return NULL;
    }
    /* Writer first: a stream of commits (the workers' hold it for their own fsync) must not
     * starve the sync that the Checks' replies wait for. */
    pthread_rwlockattr_t ga;
    pthread_rwlockattr_init(&ga);
    pthread_rwlockattr_setkind_np(&ga, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&st->gate, &ga);
    pthread_rwlockattr_destroy(&ga);
    st->now_ms = opt->now_ms;
    st->now_arg = opt->now_arg;
    st->sync = opt->sync;
    st->cache = rocksdb_cache_create_lru((size_t)opt->block_cache_bytes);
    st->filter = rocksdb_compactionfilter_create(st, store_filter_state_free, store_filter, store_filter_name);
    st->ropt = rocksdb_readoptions_create();
    st->wopt = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(st->wopt, opt->sync);
    st->wopt_lazy = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(st->wopt_lazy, 0);

    base = store_base_options(opt, st->cache);
    cfopt[0] = base;
    for (int i = 1; i < STORE_NCF; i++) {
        cfopt[i] = rocksdb_options_create_copy(base);
        rocksdb_options_set_compaction_filter(cfopt[i], st->filter);
    }
    st->db = rocksdb_open_column_families(base, opt->path, STORE_NCF, store_cf_names,
                                          (const rocksdb_options_t *const *)cfopt, st->cf, &rerr);
    /* RocksDB copied the options into the database; only the filter must stay alive. */
    for (int i = STORE_NCF - 1; i >= 0; i--)
        rocksdb_options_destroy(cfopt[i]);
    if (!st->db || rerr) {
        /* For example "lock hold by current process" or "Resource temporarily unavailable" on
         * LOCK when another store holds the database. */
        char what[512];
        snprintf(what, sizeof what, "store: cannot open %s", opt->path);
        store_err(err, errlen, what, rerr);
        if (st->db) {
            for (int i = 0; i < STORE_NCF; i++)
                if (st->cf[i])
                    rocksdb_column_family_handle_destroy(st->cf[i]);
            rocksdb_close(st->db);
        }
        store_release(st);
        return NULL;
    }
    return st;
}

void store_close(store *st)
{
    if (!st)
        return;
    /* Column family handles must go before the database they belong to. */
    for (int i = 0; i < STORE_NCF; i++)
        rocksdb_column_family_handle_destroy(st->cf[i]);
    /* Waits for running flushes and compactions, which may still call the filter. */
    rocksdb_close(st->db);
    store_release(st);
}

/* store_take_live - when the value is a live record, returns 0 with a malloc'd copy in *val
 * (one spare NUL byte, so an empty value is not a NULL pointer); else MXC_ENOENT or MXC_ENOMEM. */
static int store_take_live(const store *st, const char *v, size_t len, char **val, size_t *vallen)
{
    char *copy;

    if (!record_is_live(v, len, store_now_ms(st)))
        return MXC_ENOENT;
    if (!(copy = malloc(len + 1)))
        return MXC_ENOMEM;
    if (len)
        memcpy(copy, v, len);
    copy[len] = '\0';
    *val = copy;
    *vallen = len;
    return MXC_OK;
}

int store_get(store *st, Mxcache__Keyspace ks, const char *key, size_t keylen, char **val,
              size_t *vallen, char *err, size_t errlen)
{
    rocksdb_column_family_handle_t *cf;
    rocksdb_pinnableslice_t *ps;
    const char *v;
    char *rerr = NULL;
    size_t len;
    int rc;

    if (!st || !(cf = store_cf(st, ks)) || (!key && keylen) || !val || !vallen)
        return MXC_EINVAL;
    /* A pinned slice reads the value in place from the block cache or memtable; the one copy we
     * make is the caller's malloc'd buffer. */
    ps = rocksdb_get_pinned_cf(st->db, st->ropt, cf, key, keylen, &rerr);
    if (rerr) {
        rocksdb_pinnableslice_destroy(ps);
        store_err(err, errlen, "store: get", rerr);
        return MXC_ESTORE;
    }
    if (!ps)
        return MXC_ENOENT;
    v = rocksdb_pinnableslice_value(ps, &len);
    rc = store_take_live(st, v, len, val, vallen);
    rocksdb_pinnableslice_destroy(ps);
    return rc;
}

store_batch *store_batch_create(store *st)
{
    store_batch *b;

    if (!st || !(b = calloc(1, sizeof *b)))
        return NULL;
    b->st = st;
    /* overwrite_key: the index keeps only the latest write of a key, so a read sees it. */
    if (!(b->wb = rocksdb_writebatch_wi_create(0, 1))) {
        free(b);
        return NULL;
    }
    return b;
}

void store_batch_destroy(store_batch *b)
{
    if (!b)
        return;
    rocksdb_writebatch_wi_destroy(b->wb);
    free(b);
}

int store_batch_put(store_batch *b, Mxcache__Keyspace ks, const char *key, size_t keylen,
                    const void *val, size_t vallen)
{
    rocksdb_column_family_handle_t *cf;

    /* RocksDB's record format holds 32-bit lengths; it would drop a larger write silently. */
    if (!b || !(cf = store_cf(b->st, ks)) || !key || keylen == 0 || keylen > UINT32_MAX ||
        (!val && vallen) || vallen > UINT32_MAX)
        return MXC_EINVAL;
    rocksdb_writebatch_wi_put_cf(b->wb, cf, key, keylen, val ? val : "", vallen);
    if (b->watch)
        b->watch(b->watch_arg, ks, key, keylen, true);
    return MXC_OK;
}

int store_batch_delete(store_batch *b, Mxcache__Keyspace ks, const char *key, size_t keylen)
{
    rocksdb_column_family_handle_t *cf;

    if (!b || !(cf = store_cf(b->st, ks)) || !key || keylen == 0 || keylen > UINT32_MAX)
        return MXC_EINVAL;
    rocksdb_writebatch_wi_delete_cf(b->wb, cf, key, keylen);
    if (b->watch)
        b->watch(b->watch_arg, ks, key, keylen, true);
    return MXC_OK;
}

int store_batch_get(store_batch *b, Mxcache__Keyspace ks, const char *key, size_t keylen,
                    char **val, size_t *vallen, char *err, size_t errlen)
{
    rocksdb_column_family_handle_t *cf;
    char *rerr = NULL, *v;
    size_t len = 0;
    int rc;

    if (!b || !(cf = store_cf(b->st, ks)) || (!key && keylen) || !val || !vallen)
        return MXC_EINVAL;
    if (b->watch)
        b->watch(b->watch_arg, ks, key, keylen, false);
    /* A pending delete in the batch hides the committed value; NULL without error: not found. */
    v = rocksdb_writebatch_wi_get_from_batch_and_db_cf(b->wb, b->st->db, b->st->ropt, cf, key,
                                                       keylen, &len, &rerr);
    if (rerr) {
        rocksdb_free(v);
        store_err(err, errlen, "store: batch get", rerr);
        return MXC_ESTORE;
    }
    if (!v)
        return MXC_ENOENT;
    rc = store_take_live(b->st, v, len, val, vallen);
    rocksdb_free(v);
    return rc;
}

void store_batch_watch(store_batch *b, store_watch_fn fn, void *arg)
{
    b->watch = fn;
    b->watch_arg = arg;
}

size_t store_batch_count(const store_batch *b)
{
    int n;

    if (!b)
        return 0;
    n = rocksdb_writebatch_wi_count(b->wb);
    return n > 0 ? (size_t)n : 0;
}

static int batch_write(store_batch *b, rocksdb_writeoptions_t *wopt, char *err, size_t errlen)
{
    char *rerr = NULL;

    if (!b)
        return MXC_EINVAL;
    if (rocksdb_writebatch_wi_count(b->wb) == 0)
        return MXC_OK;
    pthread_rwlock_rdlock(&b->st->gate);
    if (store_failed(b->st)) {
        pthread_rwlock_unlock(&b->st->gate);
        rocksdb_writebatch_wi_clear(b->wb);
        store_msg(err, errlen, STORE_FAILED_MSG);
        return MXC_ESTORE;
    }
    rocksdb_write_writebatch_wi(b->st->db, wopt, b->wb, &rerr);
    if (rerr)
        store_fail(b->st); /* before the gate opens for a sync */
    pthread_rwlock_unlock(&b->st->gate);
    /* Robustness: the batch is emptied on failure too, so that a worker does not retry (or read
     * through) writes whose replies were already turned into errors. */
    rocksdb_writebatch_wi_clear(b->wb);
    if (rerr) {
        store_err(err, errlen, "store: commit", rerr);
        return MXC_ESTORE;
    }
    return MXC_OK;
}

int store_batch_commit(store_batch *b, char *err, size_t errlen)
{
    return batch_write(b, b ? b->st->wopt : NULL, err, errlen);
}

int store_batch_commit_lazy(store_batch *b, char *err, size_t errlen)
{
    return batch_write(b, b ? b->st->wopt_lazy : NULL, err, errlen);
}

bool store_syncs(const store *st)
{
    return st->sync;
}

int store_sync_wal(store *st, char *err, size_t errlen)
{
    char *rerr = NULL;

    if (!st->sync)
        return MXC_OK;
    /* Robustness: RocksDB does not order SyncWAL with writes. A commit that failed on another
     * thread while this sync was on its way in (SyncWAL even waits there for the syncing writes
     * of the workers) aborted the process in 1 of 3 disk-full runs of tests/fault/
     * test_store_errors.sh (see STORE_FAILED_MSG). So no commit runs during a sync: one that
     * fails has set store_failed before the sync looks at it. XXX commits wait for the fsync
     * meanwhile, where RocksDB alone would let them run beside it (mxcache-bench, 8 x 8
     * new triplets, on the shared 2-core machine: no loss measurable in the noise). */
    pthread_rwlock_wrlock(&st->gate);
    if (store_failed(st)) {
        pthread_rwlock_unlock(&st->gate);
        store_msg(err, errlen, STORE_FAILED_MSG);
        return MXC_ESTORE;
    }
    /* FlushWAL(sync) is SyncWAL when RocksDB flushes the WAL itself (no manual_wal_flush): it
     * fsyncs every WAL file up to the current one. */
    rocksdb_flush_wal(st->db, 1, &rerr);
    if (rerr)
        store_fail(st);
    pthread_rwlock_unlock(&st->gate);
    if (rerr) {
        store_err(err, errlen, "store: sync", rerr);
        return MXC_ESTORE;
    }
    return MXC_OK;
}

/* store_keycmp - RocksDB's default (bytewise) order of two keys. */
static int store_keycmp(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    /* memcmp needs valid pointers even for 0 bytes, and an empty prefix may be NULL. */
    int c = n ? memcmp(a, b, n) : 0;

    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

/* store_prefix_end - the smallest key greater than every key starting with prefix, in a new
 * buffer (*endlen bytes); NULL when there is none (prefix empty or all 0xff) or out of memory. */
static char *store_prefix_end(const char *prefix, size_t plen, size_t *endlen)
{
    char *end;
    size_t n = plen;

    while (n > 0 && (unsigned char)prefix[n - 1] == 0xff)
        n--;
    if (n == 0 || !(end = malloc(n)))
        return NULL;
    memcpy(end, prefix, n);
    end[n - 1] = (char)((unsigned char)end[n - 1] + 1);
    *endlen = n;
    return end;
}

int store_scan(store *st, Mxcache__Keyspace ks, const char *prefix, size_t plen,
               const char *start_after, size_t salen, bool include_expired, store_scan_fn fn,
               void *arg, char *err, size_t errlen)
{
    rocksdb_column_family_handle_t *cf;
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it;
    char *rerr = NULL, *bound;
    size_t boundlen = 0;
    uint64_t now;
    int rc = MXC_OK;

    if (!st || !(cf = store_cf(st, ks)) || !fn || (!prefix && plen) || (!start_after && salen))
        return MXC_EINVAL;
    if (!start_after)
        salen = 0;
    now = store_now_ms(st);
    ro = rocksdb_readoptions_create();
    /* The upper bound lets RocksDB stop at the end of the prefix instead of stepping over
     * deleted keys beyond it. RocksDB borrows the bound, so it is freed after the iterator. */
    bound = store_prefix_end(prefix, plen, &boundlen);
    if (bound)
        rocksdb_readoptions_set_iterate_upper_bound(ro, bound, boundlen);
    it = rocksdb_create_iterator_cf(st->db, ro, cf);
    if (salen && store_keycmp(start_after, salen, prefix, plen) > 0)
        rocksdb_iter_seek(it, start_after, salen);
    else
        rocksdb_iter_seek(it, plen ? prefix : "", plen);
    for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = rocksdb_iter_key(it, &klen);
        const char *v;

        if (plen && (klen < plen || memcmp(k, prefix, plen) != 0))
            break;
        if (salen && store_keycmp(k, klen, start_after, salen) <= 0)
            continue; /* the start_after key itself */
        v = rocksdb_iter_value(it, &vlen);
        if (!include_expired && !record_is_live(v, vlen, now))
            continue;
        rc = fn(arg, k, klen, v, vlen);
        if (rc != 0)
            break;
    }
    rocksdb_iter_get_error(it, &rerr);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    free(bound);
    if (rerr) {
        store_err(err, errlen, "store: scan", rerr);
        return MXC_ESTORE;
    }
    return rc < 0 ? rc : MXC_OK;
}

/* store_compact_cf - flushes one column family and compacts all of it, bottommost level included,
 * so that every record passes through the compaction filter. */
static int store_compact_cf(store *st, rocksdb_column_family_handle_t *cf, char *err, size_t errlen)
{
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    rocksdb_compactoptions_t *co;
    char *rerr = NULL;

    /* Robustness: the filter never sees the memtable; flush it so its records reach an SST. */
    rocksdb_flushoptions_set_wait(fo, 1);
    rocksdb_flush_cf(st->db, fo, cf, &rerr);
    rocksdb_flushoptions_destroy(fo);
    if (rerr) {
        store_err(err, errlen, "store: flush", rerr);
        return MXC_ESTORE;
    }
    co = rocksdb_compactoptions_create();
    /* kForce: rewrite the bottommost level too, even when it is the only one holding data;
     * without it RocksDB may leave a level untouched that has nothing to merge with. */
    rocksdb_compactoptions_set_bottommost_level_compaction(co, STORE_BOTTOMMOST_FORCE);
    /* XXX the C API drops CompactRange's status; a failed compaction is not reported. */
    rocksdb_compact_range_cf_opt(st->db, cf, co, NULL, 0, NULL, 0);
    rocksdb_compactoptions_destroy(co);
    return MXC_OK;
}

int store_compact(store *st, Mxcache__Keyspace ks, char *err, size_t errlen)
{
    int rc;

    if (!st)
        return MXC_EINVAL;
    /* A flush switches the memtable and with it the WAL file: the failed writer again. */
    if (store_failed(st)) {
        store_msg(err, errlen, STORE_FAILED_MSG);
        return MXC_ESTORE;
    }
    if (ks == MXCACHE__KEYSPACE__KEYSPACE_UNSPECIFIED) {
        for (int i = 1; i < STORE_NCF; i++)
            if ((rc = store_compact_cf(st, st->cf[i], err, errlen)) != MXC_OK)
                return rc;
        return MXC_OK;
    }
    if (!store_cf(st, ks)) {
        store_msg(err, errlen, "store: invalid keyspace");
        return MXC_EINVAL;
    }
    return store_compact_cf(st, st->cf[ks], err, errlen);
}

/* store_prop - a numeric property of one column family; 0 when RocksDB does not know it. */
static uint64_t store_prop(store *st, rocksdb_column_family_handle_t *cf, const char *name)
{
    char *s = rocksdb_property_value_cf(st->db, cf, name);
    uint64_t v = 0;

    if (s) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(s, &end, 10);
        if (errno == 0 && end != s)
            v = n;
        rocksdb_free(s);
    }
    return v;
}

void store_cancel_compaction(store *st)
{
    if (st)
        rocksdb_disable_manual_compaction(st->db);
}

int store_stats(store *st, Mxcache__Keyspace ks, uint64_t *keys_estimate, uint64_t *disk_bytes)
{
    int first = ks, last = ks;
    uint64_t keys = 0, bytes = 0;

    if (!st)
        return MXC_EINVAL;
    if (ks == MXCACHE__KEYSPACE__KEYSPACE_UNSPECIFIED) {
        first = 1;
        last = STORE_NCF - 1;
    } else if (!store_cf(st, ks)) {
        return MXC_EINVAL;
    }
    for (int i = first; i <= last; i++) {
        keys += store_prop(st, st->cf[i], "rocksdb.estimate-num-keys");
        bytes += store_prop(st, st->cf[i], "rocksdb.total-sst-files-size");
    }
    if (keys_estimate)
        *keys_estimate = keys;
    if (disk_bytes)
        *disk_bytes = bytes;
    return MXC_OK;
}
