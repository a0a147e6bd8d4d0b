/* The durable state of mxcached: one RocksDB database with one column family per keyspace
 * (verify, greylist, awl, whitelist). Values are packed record messages whose field 1 is the
 * expiry time (see record.h); a read never returns an expired record, and a compaction filter
 * drops expired records from disk.
 *
 * Writes go through a store_batch (RocksDB WriteBatchWithIndex): a worker collects the writes of
 * all requests of one round in one batch, reads through it (so a request sees the writes of the
 * requests before it in the same round), and commits it once, with the WAL synced when the store
 * was opened with sync. Replies that depend on those writes are sent only once they are durable:
 * after the commit returns, or after a later store_sync_wal (the pipelined commit of Checks).
 *
 * Thread-safety: a store is shared by all workers; store_get, store_scan, store_compact and
 * store_stats may be called from any thread. A store_batch belongs to one thread at a time.
 * Errors are returned as MXC_E* codes with a message in the caller's buffer; nothing here logs. */
#ifndef MXCACHED_STORE_H
#define MXCACHED_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mxcache.pb-c.h"

typedef struct store store;
typedef struct store_batch store_batch;

struct store_options {
    const char *path;             /* database directory, created if missing (borrowed) */
    bool sync;                    /* fsync the WAL in store_batch_commit */
    uint64_t block_cache_bytes;   /* one LRU block cache shared by all keyspaces */
    uint64_t write_buffer_bytes;  /* memtable size per keyspace */
    int max_background_jobs;
    /* Clock for the read path and the compaction filter, in unix milliseconds; NULL: the real
     * clock. Tests set it to move time forward without sleeping. */
    uint64_t (*now_ms)(void *arg);
    void *now_arg;
};

/* store_open - opens (creating if missing) the database and its column families. Returns NULL with
 * a message in err on failure (for example another process holds the database's lock). */
store *store_open(const struct store_options *opt, char *err, size_t errlen);

/* store_close - flushes nothing that is not already durable and closes the database; every batch
 * must have been destroyed first. NULL-safe. */
void store_close(store *st);

/* store_now_ms - the store's clock (options.now_ms or the real time). */
uint64_t store_now_ms(const store *st);

/* store_get - reads the live record of key in ks. Returns 0 and a malloc'd copy of the value in
 * *val (caller frees with free()), MXC_ENOENT when missing or expired, MXC_EINVAL for a bad
 * keyspace, MXC_ESTORE with err filled on a RocksDB error. */
int store_get(store *st, Mxcache__Keyspace ks, const char *key, size_t keylen, char **val,
              size_t *vallen, char *err, size_t errlen);

/* store_batch_create - an empty batch for st; NULL when out of memory. */
store_batch *store_batch_create(store *st);
void store_batch_destroy(store_batch *b); /* NULL-safe; pending writes are dropped */

/* Pending writes; they become visible to other threads and durable only in store_batch_commit.
 * Return 0 or MXC_EINVAL (bad keyspace, empty key). The key and value are copied. */
int store_batch_put(store_batch *b, Mxcache__Keyspace ks, const char *key, size_t keylen,
                    const void *val, size_t vallen);
int store_batch_delete(store_batch *b, Mxcache__Keyspace ks, const char *key, size_t keylen);

/* store_batch_get - like store_get, but sees the batch's pending writes first. */
int store_batch_get(store_batch *b, Mxcache__Keyspace ks, const char *key, size_t keylen,
                    char **val, size_t *vallen, char *err, size_t errlen);

/* store_batch_watch - fn (NULL: none) is told of every key the batch reads (store_batch_get,
 * write false) and writes (put and delete, write true), before the operation. For the main
 * thread, which must know which replies rest on writes not yet synced (see service.c). */
typedef void (*store_watch_fn)(void *arg, Mxcache__Keyspace ks, const char *key, size_t keylen,
                               bool write);
void store_batch_watch(store_batch *b, store_watch_fn fn, void *arg);

/* store_batch_count - number of pending writes. */
size_t store_batch_count(const store_batch *b);

/* store_batch_commit - writes all pending writes atomically (WAL synced when the store syncs) and
 * empties the batch. Blocks for the fsync. Returns 0, or MXC_ESTORE with err filled; on error
 * nothing of the batch was written and the batch is emptied. An empty batch commits at no cost. */
int store_batch_commit(store_batch *b, char *err, size_t errlen);

/* store_batch_commit_lazy - like store_batch_commit, but never waits for an fsync: the writes
 * reach the WAL and survive a crash of the process, not necessarily one of the machine. For
 * rounds whose writes only refresh times and counters, which no reply depends on. */
int store_batch_commit_lazy(store_batch *b, char *err, size_t errlen);

/* Pipelined group commit: a thread commits lazily and goes on deciding while another thread
 * makes those writes durable with store_sync_wal; replies that depend on them wait for it.
 * store_syncs says whether the store was opened with sync (without, there is nothing to wait
 * for and store_sync_wal does nothing). store_sync_wal fsyncs every write committed before the
 * call; commits of other threads wait while it runs (see store.c). Returns 0 or MXC_ESTORE with
 * err filled; once store_failed, MXC_ESTORE at once. */
bool store_syncs(const store *st);
int store_sync_wal(store *st, char *err, size_t errlen);

/* store_scan - calls fn for each live record of ks whose key starts with prefix (plen may be 0),
 * in key order, starting after start_after (NULL or salen 0: from the first). fn returns 0 to go
 * on, 1 to stop, or a negative code that store_scan returns. With include_expired, expired records
 * still on disk are reported too (for tests and diagnostics). The key and value passed to fn are
 * valid only during the call. Returns 0, fn's negative code, or MXC_ESTORE. */
typedef int (*store_scan_fn)(void *arg, const char *key, size_t keylen, const char *val, size_t vallen);
int store_scan(store *st, Mxcache__Keyspace ks, const char *prefix, size_t plen,
               const char *start_after, size_t salen, bool include_expired, store_scan_fn fn,
               void *arg, char *err, size_t errlen);

/* store_compact - flushes the memtable and compacts the whole key range of ks (or of every
 * keyspace for KEYSPACE_UNSPECIFIED), so that the compaction filter drops expired records.
 * Blocks until done. Returns 0 or MXC_ESTORE. */
int store_compact(store *st, Mxcache__Keyspace ks, char *err, size_t errlen);

/* store_cancel_compaction - makes a running and every later store_compact return early; for
 * shutdown, so that a long compaction does not hold the process past its stop deadline. */
void store_cancel_compaction(store *st);

/* store_failed - true once a commit or a WAL sync has failed (disk full, read-only, I/O error).
 * Robustness: RocksDB 7.8 as Debian builds it aborts the process when a WAL file that failed a
 * write is used again (see store.c), so from then on every commit, sync and compaction fails at
 * once with MXC_ESTORE without touching the database; reads go on. Only reopening the database
 * (a restart of mxcached) clears it. Any thread; does not block. */
bool store_failed(const store *st);

/* store_stats - RocksDB's estimate of live keys and the bytes of SST files of ks (or of all
 * keyspaces for KEYSPACE_UNSPECIFIED). Returns 0 or MXC_EINVAL. */
int store_stats(store *st, Mxcache__Keyspace ks, uint64_t *keys_estimate, uint64_t *disk_bytes);

#endif
