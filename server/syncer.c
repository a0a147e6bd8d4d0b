/* The WAL sync thread of mxcached (see syncer.h). Requests and results travel over an inproc
 * PAIR: a request is the 8-byte generation, the empty message stops the thread, a result is the
 * generation followed by one byte, 1 when the sync succeeded. */
#include "syncer.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "log.h"
#include "mxc_err.h"

struct syncer {
    store *st;
    uint64_t interval_us;
    void *pair_main;   /* the creating thread's end */
    void *pair_sync;   /* the sync thread's end */
    pthread_t thread;
    bool started;
    struct counters ctr;
};

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

#define SYNC_STOP UINT64_MAX

/* take_requests - the highest generation among the queued requests, so that one sync serves
 * them all; with wait, waits for the first. 0: none was queued; SYNC_STOP: the stop message
 * (or a broken socket). */
static uint64_t take_requests(struct syncer *s, bool wait)
{
    uint64_t gen = 0, g;
    int flags = wait ? 0 : ZMQ_DONTWAIT;

    for (;;) {
        int n = zmq_recv(s->pair_sync, &g, sizeof g, flags);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN ? gen : SYNC_STOP;
        }
        if (n != (int)sizeof g)
            return SYNC_STOP;
        if (g > gen)
            gen = g;
        flags = ZMQ_DONTWAIT;
    }
}

static void *sync_main(void *arg)
{
    struct syncer *s = arg;
    uint64_t gen, last = 0;

    pthread_setname_np(pthread_self(), "mxcached-sync"); /* for top -H and perf */
    while ((gen = take_requests(s, true)) != SYNC_STOP) {
        char err[256], msg[sizeof gen + 1];
        uint64_t t0 = mono_us();

        /* Pacing: under load a sync starts no sooner than the interval after the last one, and
         * every write that comes meanwhile rides along, so one fsync (costly on a virtual disk)
         * serves many; when idle, the last sync is long past and nothing waits. */
        if (last != 0 && t0 - last < s->interval_us) {
            uint64_t left = s->interval_us - (t0 - last), more;
            struct timespec ts = {.tv_sec = (time_t)(left / 1000000), .tv_nsec = (long)(left % 1000000) * 1000};
            while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
                ;
            if ((more = take_requests(s, false)) == SYNC_STOP)
                break;
            if (more > gen)
                gen = more;
            t0 = mono_us();
        }
        last = t0;
        int rc = store_sync_wal(s->st, err, sizeof err);

        uint64_t took = mono_us() - t0;
        ctr_add(&s->ctr, CTR_WAL_SYNCS, 1);
        ctr_add(&s->ctr, CTR_WAL_SYNC_USEC, took);
        ctr_observe(&s->ctr.wal_sync, took);
        if (rc != MXC_OK) {
            ctr_add(&s->ctr, CTR_ERR_STORE, 1);
            log_msg(LOG_ERR, "STORE", "op=sync error=\"%s\"", err);
        }
        memcpy(msg, &gen, sizeof gen);
        msg[sizeof gen] = rc == MXC_OK;
        while (zmq_send(s->pair_sync, msg, sizeof msg, 0) < 0 && errno == EINTR)
            ;
    }
    return NULL;
}

struct syncer *syncer_create(void *zctx, store *st, uint64_t interval_us, char *err, size_t errlen)
{
    struct syncer *s = calloc(1, sizeof *s);
    char ep[64];
    int zero = 0, rc;

    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    counters_init(&s->ctr);
    s->st = st;
    s->interval_us = interval_us;
    snprintf(ep, sizeof ep, "inproc://syncer-%p", (void *)s);
    s->pair_main = zmq_socket(zctx, ZMQ_PAIR);
    s->pair_sync = zmq_socket(zctx, ZMQ_PAIR);
    if (!s->pair_main || !s->pair_sync)
        goto zfail;
    /* Both directions carry at most one message per round: no high-water mark, nothing dropped. */
    zmq_setsockopt(s->pair_main, ZMQ_SNDHWM, &zero, sizeof zero);
    zmq_setsockopt(s->pair_main, ZMQ_RCVHWM, &zero, sizeof zero);
    zmq_setsockopt(s->pair_sync, ZMQ_SNDHWM, &zero, sizeof zero);
    zmq_setsockopt(s->pair_sync, ZMQ_RCVHWM, &zero, sizeof zero);
    if (zmq_bind(s->pair_main, ep) != 0 || zmq_connect(s->pair_sync, ep) != 0)
        goto zfail;
    if ((rc = pthread_create(&s->thread, NULL, sync_main, s)) != 0) {
        snprintf(err, errlen, "cannot start the sync thread: %s", strerror(rc));
        syncer_destroy(s);
        return NULL;
    }
    s->started = true;
    return s;
zfail:
    snprintf(err, errlen, "cannot start the sync thread: %s", zmq_strerror(errno));
    syncer_destroy(s);
    return NULL;
}

void syncer_destroy(struct syncer *s)
{
    if (!s)
        return;
    if (s->started) {
        zmq_send(s->pair_main, "", 0, 0);
        pthread_join(s->thread, NULL);
    }
    if (s->pair_main)
        zmq_close(s->pair_main);
    if (s->pair_sync)
        zmq_close(s->pair_sync);
    free(s);
}

void *syncer_socket(struct syncer *s)
{
    return s->pair_main;
}

int syncer_request(struct syncer *s, uint64_t gen)
{
    while (zmq_send(s->pair_main, &gen, sizeof gen, 0) < 0)
        if (errno != EINTR)
            return MXC_EIO;
    return MXC_OK;
}

int syncer_result(struct syncer *s, uint64_t *gen, bool *ok)
{
    char msg[sizeof *gen + 1];
    int n;

    while ((n = zmq_recv(s->pair_main, msg, sizeof msg, ZMQ_DONTWAIT)) < 0)
        if (errno != EINTR)
            return errno == EAGAIN ? MXC_EAGAIN : MXC_EIO;
    if (n != (int)sizeof msg)
        return MXC_EIO;
    memcpy(gen, msg, sizeof *gen);
    *ok = msg[sizeof *gen] == 1;
    return MXC_OK;
}

struct counters *syncer_counters(struct syncer *s)
{
    return &s->ctr;
}
