/* Keys waiting for a WAL sync (see unsynced.h): a hash map key -> newest generation and a FIFO of
 * (generation, key) in write order, from which finished syncs are dropped; plus the current
 * round's written keys (a set, and a list to move them over at the end of the round). */
#include "unsynced.h"

#include <stdlib.h>
#include <string.h>

#include "mxc_err.h"
#include "strmap.h"

struct entry {
    uint64_t gen;
    char *key;
    size_t len;
};

struct unsynced {
    strmap *keys;           /* keyspace byte + key -> newest gen */
    struct entry *fifo;     /* ring, oldest at head */
    size_t head, n, cap;
    uint64_t all_gen;       /* every read waits for this gen (a key too long, out of memory) */
    /* the current round */
    strmap *round;          /* keys written, value 1 */
    struct entry *rlist;    /* the same keys in write order (gen unused) */
    size_t rn, rcap;
    bool round_all;         /* a write could not be recorded: every read of the round depends */
};

struct unsynced *unsynced_create(void)
{
    struct unsynced *u = calloc(1, sizeof *u);

    if (!u)
        return NULL;
    u->keys = strmap_create();
    u->round = strmap_create();
    if (!u->keys || !u->round) {
        unsynced_destroy(u);
        return NULL;
    }
    return u;
}

static void round_clear(struct unsynced *u)
{
    for (size_t i = 0; i < u->rn; i++)
        free(u->rlist[i].key);
    u->rn = 0;
    if (strmap_count(u->round) > 0)
        strmap_clear(u->round);
    u->round_all = false;
}

void unsynced_destroy(struct unsynced *u)
{
    if (!u)
        return;
    for (size_t i = 0; i < u->n; i++)
        free(u->fifo[(u->head + i) % u->cap].key);
    free(u->fifo);
    strmap_destroy(u->keys);
    if (u->round)
        round_clear(u);
    free(u->rlist);
    strmap_destroy(u->round);
    free(u);
}

/* compose - keyspace byte + key into buf; 0 when it does not fit. */
static size_t compose(char *buf, Mxcache__Keyspace ks, const char *key, size_t keylen)
{
    if (keylen + 1 > UNSYNCED_KEY_MAX)
        return 0;
    buf[0] = (char)ks;
    memcpy(buf + 1, key, keylen);
    return keylen + 1;
}

void unsynced_write(struct unsynced *u, Mxcache__Keyspace ks, const char *key, size_t keylen)
{
    char buf[UNSYNCED_KEY_MAX];
    size_t len = compose(buf, ks, key, keylen);
    char *copy = NULL;

    if (len == 0)
        goto all;
    if (strmap_get(u->round, buf, len, NULL))
        return;
    if (u->rn == u->rcap) {
        size_t cap = u->rcap ? u->rcap * 2 : 64;
        struct entry *l = realloc(u->rlist, cap * sizeof *l);
        if (!l)
            goto all;
        u->rlist = l;
        u->rcap = cap;
    }
    if (!(copy = malloc(len)) || strmap_put(u->round, buf, len, 1) != MXC_OK)
        goto all;
    memcpy(copy, buf, len);
    u->rlist[u->rn++] = (struct entry){.key = copy, .len = len};
    return;
all:
    free(copy);
    u->round_all = true;
}

uint64_t unsynced_read(const struct unsynced *u, Mxcache__Keyspace ks, const char *key, size_t keylen,
                       bool *this_round)
{
    char buf[UNSYNCED_KEY_MAX];
    size_t len = compose(buf, ks, key, keylen);
    uint64_t gen = 0;

    if (len == 0 || u->round_all || strmap_get(u->round, buf, len, NULL))
        *this_round = true;
    if (len > 0)
        strmap_get(u->keys, buf, len, &gen);
    return gen > u->all_gen ? gen : u->all_gen;
}

static int fifo_grow(struct unsynced *u)
{
    size_t cap = u->cap ? u->cap * 2 : 64;
    struct entry *f = malloc(cap * sizeof *f);

    if (!f)
        return MXC_ENOMEM;
    for (size_t i = 0; i < u->n; i++)
        f[i] = u->fifo[(u->head + i) % u->cap];
    free(u->fifo);
    u->fifo = f;
    u->cap = cap;
    u->head = 0;
    return MXC_OK;
}

void unsynced_end_round(struct unsynced *u, uint64_t gen)
{
    if (gen == 0) {
        round_clear(u);
        return;
    }
    if (u->round_all)
        u->all_gen = gen;
    for (size_t i = 0; i < u->rn; i++) {
        struct entry *e = &u->rlist[i];
        if ((u->n == u->cap && fifo_grow(u) != MXC_OK) ||
            strmap_put(u->keys, e->key, e->len, gen) != MXC_OK) {
            u->all_gen = gen; /* cannot remember this key: every read waits instead */
            continue;
        }
        u->fifo[(u->head + u->n++) % u->cap] = (struct entry){.gen = gen, .key = e->key, .len = e->len};
        e->key = NULL; /* moved to the FIFO */
    }
    round_clear(u);
}

void unsynced_done(struct unsynced *u, uint64_t gen)
{
    while (u->n > 0 && u->fifo[u->head].gen <= gen) {
        struct entry *e = &u->fifo[u->head];
        uint64_t cur;
        /* A later write of the same key moved it to a later sync: that one still waits. */
        if (strmap_get(u->keys, e->key, e->len, &cur) && cur <= gen)
            strmap_del(u->keys, e->key, e->len);
        free(e->key);
        u->head = (u->head + 1) % u->cap;
        u->n--;
    }
    if (u->all_gen <= gen)
        u->all_gen = 0;
}

size_t unsynced_count(const struct unsynced *u)
{
    return strmap_count(u->keys);
}
