/* Duration and size parsing for config files and command lines (see duration.h). */
#include "duration.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "mxc_err.h"

static int parse_number(const char **sp, uint64_t *out)
{
    const char *s = *sp;
    uint64_t v = 0;

    if (!isdigit((unsigned char)*s))
        return MXC_EINVAL;
    while (isdigit((unsigned char)*s)) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return MXC_EINVAL;
        v = v * 10 + d;
        s++;
    }
    *sp = s;
    *out = v;
    return MXC_OK;
}

static int mul_checked(uint64_t a, uint64_t b, uint64_t *out)
{
    if (b && a > UINT64_MAX / b)
        return MXC_EINVAL;
    *out = a * b;
    return MXC_OK;
}

static const struct {
    const char *unit;
    uint64_t ms;
} duration_units[] = {
    {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}, {"w", 604800000},
};

int duration_parse(const char *s, uint64_t default_unit_ms, uint64_t *out_ms)
{
    uint64_t v;

    if (!s || parse_number(&s, &v) != MXC_OK)
        return MXC_EINVAL;
    if (*s == '\0')
        return mul_checked(v, default_unit_ms, out_ms);
    for (size_t i = 0; i < sizeof duration_units / sizeof duration_units[0]; i++)
        if (strcmp(s, duration_units[i].unit) == 0)
            return mul_checked(v, duration_units[i].ms, out_ms);
    return MXC_EINVAL;
}

char *duration_format(uint64_t ms, char *buf, size_t buflen)
{
    size_t i = sizeof duration_units / sizeof duration_units[0];

    if (ms == 0) {
        snprintf(buf, buflen, "0s");
        return buf;
    }
    /* Weeks read worse than days in TTLs ("31d"), so start from days. */
    for (i = i - 1; i > 0; i--)
        if (duration_units[i].ms <= 86400000 && ms % duration_units[i].ms == 0)
            break;
    snprintf(buf, buflen, "%llu%s", (unsigned long long)(ms / duration_units[i].ms),
             duration_units[i].unit);
    return buf;
}

int size_parse(const char *s, uint64_t *out_bytes)
{
    uint64_t v, mult = 1;

    if (!s || parse_number(&s, &v) != MXC_OK)
        return MXC_EINVAL;
    switch (toupper((unsigned char)*s)) {
    case '\0': return (*out_bytes = v), MXC_OK;
    case 'K': mult = 1ull << 10; break;
    case 'M': mult = 1ull << 20; break;
    case 'G': mult = 1ull << 30; break;
    case 'T': mult = 1ull << 40; break;
    case 'B': mult = 1; s--; break;
    default: return MXC_EINVAL;
    }
    s++;
    if (*s == 'B' || *s == 'b')
        s++;
    if (*s != '\0')
        return MXC_EINVAL;
    return mul_checked(v, mult, out_bytes);
}
