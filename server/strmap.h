/* A hash map from strings to 64-bit values (open addressing, linear probing, tombstones), used
 * for in-memory sets such as the static whitelist. Owns copies of its keys. Not thread-safe:
 * callers lock. */
#ifndef MXCACHED_STRMAP_H
#define MXCACHED_STRMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct strmap strmap;

strmap *strmap_create(void);           /* NULL when out of memory */
void strmap_destroy(strmap *m);        /* NULL-safe */

/* strmap_put - inserts or replaces key (copied). Returns 0 or MXC_ENOMEM (map unchanged). */
int strmap_put(strmap *m, const char *key, size_t keylen, uint64_t value);

/* strmap_get - true and *value when key is present. */
bool strmap_get(const strmap *m, const char *key, size_t keylen, uint64_t *value);

/* strmap_del - removes key; true when it was present. */
bool strmap_del(strmap *m, const char *key, size_t keylen);

/* strmap_clear - removes every key, keeping the table's size for the next use. */
void strmap_clear(strmap *m);

size_t strmap_count(const strmap *m);

#endif
