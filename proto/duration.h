/* Parsing of durations ("500ms", "30s", "5m", "3h", "31d") and sizes ("64K", "16M", "1G") as
 * operators write them in config files and on command lines, shared by mxcached and the tools.
 * Pure functions, thread-safe. */
#ifndef MXC_DURATION_H
#define MXC_DURATION_H

#include <stdint.h>
#include <stddef.h>

/* duration_parse - parses a decimal number with an optional unit (ms, s, m, h, d, w; no unit:
 * default_unit_ms milliseconds each) into milliseconds. Returns 0, or MXC_EINVAL for anything
 * else (empty, negative, junk after the unit, overflow). */
int duration_parse(const char *s, uint64_t default_unit_ms, uint64_t *out_ms);

/* duration_format - writes ms in the largest unit that divides it exactly ("31d", "90s", "1500ms")
 * into buf; returns buf. */
char *duration_format(uint64_t ms, char *buf, size_t buflen);

/* size_parse - parses a decimal number with an optional binary suffix (K, M, G, T; optional
 * trailing B, case-insensitive) into bytes. Returns 0 or MXC_EINVAL. */
int size_parse(const char *s, uint64_t *out_bytes);

#endif
