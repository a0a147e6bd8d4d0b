/* The Checks that wait for a recipient-verification probe (see handler.h, struct handler_verify):
 * each with the peer identity and request id its reply goes to, the WAL sync its reply depends on
 * (its greylisting writes), and the time it may wait until. The prober knows them by token; a
 * Check answered at its deadline leaves its token stale, and a probe result for a stale token is
 * ignored.
 *
 * Thread-safety: one thread (the main thread) owns it. */
#ifndef MXCACHED_PARKED_H
#define MXCACHED_PARKED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "handler.h"

struct parked_entry {
    zmq_msg_t ident;              /* the peer's identity frame (the taker closes or sends it) */
    uint64_t id;                  /* the request id */
    uint64_t dep_gen;             /* the sync its reply waits for, 0: none */
    uint64_t deadline_ms;         /* monotonic */
    struct handler_verify *v;     /* the taker frees it */
};

struct parked;

struct parked *parked_create(void);      /* NULL when out of memory */
void parked_destroy(struct parked *p);   /* NULL-safe; drops every entry */

/* parked_add - parks a Check: ident is moved in (left empty), v is taken over. Returns its token
 * (never 0), or 0 when out of memory (ident and v are then still the caller's). */
uint64_t parked_add(struct parked *p, zmq_msg_t *ident, uint64_t id, uint64_t dep_gen,
                    uint64_t deadline_ms, struct handler_verify *v);

/* parked_take - removes the Check of token into *out; false when the token is stale. */
bool parked_take(struct parked *p, uint64_t token, struct parked_entry *out);

/* parked_expired - removes the longest-waiting Check whose deadline is at or before now_ms into
 * *out; false when none is due. (Deadlines come in the order Checks were parked, give or take a
 * reload of verify.wait.) */
bool parked_expired(struct parked *p, uint64_t now_ms, struct parked_entry *out);

/* parked_next_ms - milliseconds until the next deadline, -1 when nothing waits. */
long parked_next_ms(const struct parked *p, uint64_t now_ms);

size_t parked_count(const struct parked *p);

#endif
