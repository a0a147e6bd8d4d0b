/* String-keyed hash map with tombstones (see strmap.h). */
#include "strmap.h"

#include <stdlib.h>
#include <string.h>

#include "mxc_err.h"

#define STRMAP_MIN_SLOTS 16
#define TOMBSTONE ((char *)&strmap_tombstone)

static const char strmap_tombstone;

struct slot {
    char *key; /* NULL: empty, TOMBSTONE: deleted */
    size_t keylen;
    uint64_t value;
};

struct strmap {
    struct slot *slots;
    size_t nslots; /* power of two */
    size_t count;  /* live keys */
    size_t used;   /* live keys + tombstones */
};

static uint64_t hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

strmap *strmap_create(void)
{
    strmap *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->slots = calloc(STRMAP_MIN_SLOTS, sizeof *m->slots);
    if (!m->slots) {
        free(m);
        return NULL;
    }
    m->nslots = STRMAP_MIN_SLOTS;
    return m;
}

void strmap_destroy(strmap *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nslots; i++)
        if (m->slots[i].key && m->slots[i].key != TOMBSTONE)
            free(m->slots[i].key);
    free(m->slots);
    free(m);
}

/* find - the slot holding key, or (insert) the first reusable slot on its probe path. */
static struct slot *find(const strmap *m, const char *key, size_t keylen, bool insert)
{
    size_t mask = m->nslots - 1;
    size_t i = hash(key, keylen) & mask;
    struct slot *reuse = NULL;

    for (size_t n = 0; n < m->nslots; n++, i = (i + 1) & mask) {
        struct slot *s = &m->slots[i];
        if (!s->key)
            return insert ? (reuse ? reuse : s) : NULL;
        if (s->key == TOMBSTONE) {
            if (!reuse)
                reuse = s;
            continue;
        }
        if (s->keylen == keylen && memcmp(s->key, key, keylen) == 0)
            return s;
    }
    return insert ? reuse : NULL;
}

static int grow(strmap *m)
{
    size_t n = m->nslots;
    /* Rehash at the same size when tombstones, not live keys, fill the table. */
    if (m->count * 2 >= m->nslots)
        n *= 2;
    struct slot *old = m->slots;
    size_t oldn = m->nslots;
    struct slot *slots = calloc(n, sizeof *slots);
    if (!slots)
        return MXC_ENOMEM;
    m->slots = slots;
    m->nslots = n;
    m->used = m->count;
    for (size_t i = 0; i < oldn; i++) {
        if (!old[i].key || old[i].key == TOMBSTONE)
            continue;
        struct slot *s = find(m, old[i].key, old[i].keylen, true);
        *s = old[i];
    }
    free(old);
    return MXC_OK;
}

int strmap_put(strmap *m, const char *key, size_t keylen, uint64_t value)
{
    struct slot *s = find(m, key, keylen, false);

    if (s) {
        s->value = value;
        return MXC_OK;
    }
    if ((m->used + 1) * 10 > m->nslots * 7 && grow(m) != MXC_OK)
        return MXC_ENOMEM;
    char *copy = malloc(keylen + 1);
    if (!copy)
        return MXC_ENOMEM;
    memcpy(copy, key, keylen);
    copy[keylen] = '\0';
    s = find(m, key, keylen, true);
    if (s->key != TOMBSTONE)
        m->used++;
    s->key = copy;
    s->keylen = keylen;
    s->value = value;
    m->count++;
    return MXC_OK;
}

bool strmap_get(const strmap *m, const char *key, size_t keylen, uint64_t *value)
{
    const struct slot *s = find(m, key, keylen, false);
    if (!s)
        return false;
    if (value)
        *value = s->value;
    return true;
}

bool strmap_del(strmap *m, const char *key, size_t keylen)
{
    struct slot *s = find(m, key, keylen, false);
    if (!s)
        return false;
    free(s->key);
    s->key = TOMBSTONE;
    m->count--;
    return true;
}

void strmap_clear(strmap *m)
{
    for (size_t i = 0; i < m->nslots; i++) {
        if (m->slots[i].key && m->slots[i].key != TOMBSTONE)
            free(m->slots[i].key);
        m->slots[i].key = NULL;
    }
    m->count = m->used = 0;
}

size_t strmap_count(const strmap *m) { return m->count; }
