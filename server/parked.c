/* Checks waiting for a probe (see parked.h): a slot array whose slots carry a generation, so
 * that a token (generation << 32 | slot + 1) names one parking only, and a FIFO of tokens in
 * parking order for the deadlines. */
#include "parked.h"

#include <stdlib.h>
#include <string.h>

#include "mxc_err.h"

struct slot {
    bool used;
    uint32_t gen;
    struct parked_entry e;
};

struct parked {
    struct slot *slots;
    size_t nslots;
    uint32_t *free_list;   /* indexes of unused slots */
    size_t nfree;
    uint64_t *fifo;        /* ring of tokens in parking order; stale ones are skipped */
    size_t head, n, cap;
    size_t count;
};

struct parked *parked_create(void)
{
    return calloc(1, sizeof(struct parked));
}

void parked_destroy(struct parked *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nslots; i++)
        if (p->slots[i].used) {
            zmq_msg_close(&p->slots[i].e.ident);
            handler_verify_free(p->slots[i].e.v);
        }
    free(p->slots);
    free(p->free_list);
    free(p->fifo);
    free(p);
}

static int grow_slots(struct parked *p)
{
    size_t n = p->nslots ? p->nslots * 2 : 64;
    struct slot *s;
    uint32_t *f;

    if (n > UINT32_MAX)
        return MXC_ENOMEM;
    /* zmq_msg_t must not be moved as bytes while it holds a message: new slots are allocated
     * apart and the used ones are moved with zmq_msg_move. */
    if (!(s = calloc(n, sizeof *s)) || !(f = realloc(p->free_list, n * sizeof *f))) {
        free(s);
        return MXC_ENOMEM;
    }
    for (size_t i = 0; i < p->nslots; i++) {
        s[i].used = p->slots[i].used;
        s[i].gen = p->slots[i].gen;
        if (s[i].used) {
            s[i].e = p->slots[i].e;
            zmq_msg_init(&s[i].e.ident);
            zmq_msg_move(&s[i].e.ident, &p->slots[i].e.ident);
            zmq_msg_close(&p->slots[i].e.ident);
        }
    }
    free(p->slots);
    p->slots = s;
    p->free_list = f;
    for (size_t i = n; i > p->nslots; i--)
        p->free_list[p->nfree++] = (uint32_t)(i - 1);
    p->nslots = n;
    return MXC_OK;
}

static int fifo_push(struct parked *p, uint64_t token)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        uint64_t *f = malloc(cap * sizeof *f);
        if (!f)
            return MXC_ENOMEM;
        for (size_t i = 0; i < p->n; i++)
            f[i] = p->fifo[(p->head + i) % p->cap];
        free(p->fifo);
        p->fifo = f;
        p->cap = cap;
        p->head = 0;
    }
    p->fifo[(p->head + p->n++) % p->cap] = token;
    return MXC_OK;
}

/* slot_of - the used slot token names, or NULL when it is stale. */
static struct slot *slot_of(const struct parked *p, uint64_t token)
{
    uint64_t i = (token & 0xffffffffu);
    if (i == 0 || i > p->nslots)
        return NULL;
    struct slot *s = &p->slots[i - 1];
    return s->used && s->gen == (uint32_t)(token >> 32) ? s : NULL;
}

uint64_t parked_add(struct parked *p, zmq_msg_t *ident, uint64_t id, uint64_t dep_gen,
                    uint64_t deadline_ms, struct handler_verify *v)
{
    if (p->nfree == 0 && grow_slots(p) != MXC_OK)
        return 0;
    uint32_t i = p->free_list[p->nfree - 1];
    struct slot *s = &p->slots[i];
    uint64_t token = (uint64_t)(s->gen + 1) << 32 | (uint64_t)(i + 1);

    if (fifo_push(p, token) != MXC_OK)
        return 0;
    p->nfree--;
    s->used = true;
    s->gen++;
    s->e.id = id;
    s->e.dep_gen = dep_gen;
    s->e.deadline_ms = deadline_ms;
    s->e.v = v;
    zmq_msg_init(&s->e.ident);
    zmq_msg_move(&s->e.ident, ident);
    p->count++;
    return token;
}

/* take - moves slot s's entry out and frees the slot. */
static void take(struct parked *p, struct slot *s, struct parked_entry *out)
{
    *out = s->e;
    zmq_msg_init(&out->ident);
    zmq_msg_move(&out->ident, &s->e.ident);
    zmq_msg_close(&s->e.ident);
    s->used = false;
    p->free_list[p->nfree++] = (uint32_t)(s - p->slots);
    p->count--;
}

bool parked_take(struct parked *p, uint64_t token, struct parked_entry *out)
{
    struct slot *s = slot_of(p, token);
    if (!s)
        return false;
    take(p, s, out);
    return true;
}

/* drop_stale - pops the tokens at the FIFO's head whose Check was already taken. */
static void drop_stale(struct parked *p)
{
    while (p->n > 0 && !slot_of(p, p->fifo[p->head])) {
        p->head = (p->head + 1) % p->cap;
        p->n--;
    }
}

bool parked_expired(struct parked *p, uint64_t now_ms, struct parked_entry *out)
{
    drop_stale(p);
    if (p->n == 0)
        return false;
    struct slot *s = slot_of(p, p->fifo[p->head]);
    if (s->e.deadline_ms > now_ms)
        return false;
    p->head = (p->head + 1) % p->cap;
    p->n--;
    take(p, s, out);
    return true;
}

long parked_next_ms(const struct parked *p, uint64_t now_ms)
{
    for (size_t i = 0; i < p->n; i++) {
        const struct slot *s = slot_of(p, p->fifo[(p->head + i) % p->cap]);
        if (s)
            return s->e.deadline_ms > now_ms ? (long)(s->e.deadline_ms - now_ms) : 0;
    }
    return -1;
}

size_t parked_count(const struct parked *p)
{
    return p->count;
}
