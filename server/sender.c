/* sender - envelope sender normalization for the greylist key (see sender.h).
 *
 * Works on copies in fixed buffers: the local part (at most ADDR_MAX_LOCAL bytes once the input
 * passed addr_mailbox_canon, and every rewriting only shortens it) and the domain. Owns nothing
 * between calls; trusts nothing in its input. */
#include "sender.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "mxc_err.h"

/* The part of an address being rewritten. */
struct mailbox {
    char local[ADDR_MAX_PATH + 1];
    char domain[ADDR_MAX_DOMAIN + 1];
};

/* raw_text - sender_raw_text of the first len bytes of in (which stops at a NUL too). */
static char *raw_text(const char *in, size_t len, char *out, size_t outlen)
{
    size_t o = 0;
    const char *end = in ? in + len : NULL;

    if (outlen == 0)
        return out;
    for (; in && in < end && *in && o < SENDER_KEY_MAX && o + 1 < outlen; in++) {
        unsigned char c = (unsigned char)*in;
        if (c < 0x20 || c == 0x7f)
            continue;
        /* Robustness: keys are shown as JSON by the tools, which need valid UTF-8; the bytes of
         * a malformed value carry no meaning worth keeping. */
        out[o++] = c >= 0x80 ? '?' : (char)tolower(c);
    }
    out[o] = '\0';
    return out;
}

char *sender_raw_text(const char *in, char *out, size_t outlen)
{
    return raw_text(in, in ? strlen(in) : 0, out, outlen);
}

/* set_local - replaces m's local part with the n bytes at s (which may point into it). */
static void set_local(struct mailbox *m, const char *s, size_t n)
{
    memmove(m->local, s, n);
    m->local[n] = '\0';
}

/* srs_fields - parses "HHH=TT=domain=local" at p into m. False (m unchanged) when a field is
 * missing or the domain is not a domain name. */
static bool srs_fields(struct mailbox *m, const char *p)
{
    char domain[ADDR_MAX_DOMAIN + 1];
    const char *hash_end = strchr(p, '=');
    if (!hash_end)
        return false;
    const char *tt_end = strchr(hash_end + 1, '=');
    if (!tt_end)
        return false;
    const char *dom = tt_end + 1, *dom_end = strchr(dom, '=');
    if (!dom_end || dom_end[1] == '\0')
        return false;
    if (addr_domain_canon(dom, (size_t)(dom_end - dom), domain, sizeof domain) != MXC_OK)
        return false;
    snprintf(m->domain, sizeof m->domain, "%s", domain);
    set_local(m, dom_end + 1, strlen(dom_end + 1));
    return true;
}

/* unwrap_once - removes one SRS or BATV layer from m. True when it changed m. */
static bool unwrap_once(struct mailbox *m)
{
    const char *l = m->local;

    /* SRS: "srs0" or "srs1", then one of the separators the SRS spec allows. */
    if (strncmp(l, "srs0", 4) == 0 && l[4] && strchr("=+-", l[4]))
        return srs_fields(m, l + 5);
    if (strncmp(l, "srs1", 4) == 0 && l[4] && strchr("=+-", l[4])) {
        const char *sep = strstr(l + 5, "==");
        return sep && srs_fields(m, sep + 2);
    }
    /* BATV */
    static const char *const batv[] = {"prvs=", "msprvs1="};
    for (size_t i = 0; i < sizeof batv / sizeof batv[0]; i++) {
        size_t plen = strlen(batv[i]);
        if (strncmp(l, batv[i], plen) != 0)
            continue;
        const char *p = l + plen, *eq = strchr(p, '=');
        if (eq && eq[1]) { /* prvs=TAG=user */
            set_local(m, eq + 1, strlen(eq + 1));
            return true;
        }
        const char *slash = strrchr(p, '/');
        if (!eq && slash && slash > p) { /* prvs=user/TAG */
            set_local(m, p, (size_t)(slash - p));
            return true;
        }
        return false;
    }
    if (strncmp(l, "btv1==", 6) == 0) {
        const char *sep = strstr(l + 6, "==");
        if (sep && sep[2]) {
            set_local(m, sep + 2, strlen(sep + 2));
            return true;
        }
    }
    return false;
}

/* is_hex - a lower-case hex digit. */
static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* verp - drops a '+' extension and replaces long hex runs and digit runs by '#' (sender.h,
 * step 5). The local part is lower-case already. */
static void verp(struct mailbox *m)
{
    char out[sizeof m->local];
    size_t o = 0;
    char *plus = strchr(m->local, '+');

    if (plus && plus > m->local)
        *plus = '\0';
    for (const char *p = m->local; *p;) {
        if (!is_hex(*p)) {
            out[o++] = *p++;
            continue;
        }
        /* A maximal run of hex digits: all of it one '#' when long and not a plain word. */
        size_t n = 0;
        bool digit = false;
        while (is_hex(p[n])) {
            digit |= isdigit((unsigned char)p[n]) != 0;
            n++;
        }
        if (n >= 8 && digit) {
            out[o++] = '#';
            p += n;
            continue;
        }
        for (const char *end = p + n; p < end;) {
            if (isdigit((unsigned char)*p)) {
                out[o++] = '#';
                while (p < end && isdigit((unsigned char)*p))
                    p++;
            } else {
                out[o++] = *p++;
            }
        }
    }
    out[o] = '\0';
    memcpy(m->local, out, o + 1);
}

enum sender_kind sender_normalize(const char *in, char *out, size_t outlen)
{
    char canon[ADDR_MAX_PATH + 1];
    struct mailbox m;
    size_t len = in ? strlen(in) : 0;

    if (outlen < 2)
        return SENDER_RAW;
    if (len >= 2 && in[0] == '<' && in[len - 1] == '>') {
        in++;
        len -= 2;
    }
    if (len == 0) {
        snprintf(out, outlen, "<>");
        return SENDER_NULL;
    }
    if (addr_mailbox_canon(in, len, true, canon, sizeof canon) != MXC_OK) {
        /* Only the len bytes inside the brackets: the raw text of "<x>" is that of "x", as
         * step 1 says (it kept the '>': fuzz_addr found it). */
        raw_text(in, len, out, outlen);
        return SENDER_RAW;
    }
    /* canon is local@domain with at most ADDR_MAX_LOCAL + 1 + ADDR_MAX_DOMAIN bytes. */
    const char *at = strrchr(canon, '@');
    set_local(&m, canon, (size_t)(at - canon));
    memcpy(m.domain, at + 1, strlen(at + 1) + 1);
    /* A quoted local part is taken as it is: its quotes and escapes are no tags. */
    if (m.local[0] != '"') {
        for (int i = 0; i < SENDER_MAX_UNWRAP && unwrap_once(&m); i++)
            ;
        verp(&m);
    }
    /* Bounded by construction (the result is never longer than the canonical input); the
     * cut keeps the promise for a small out even so. */
    int n = snprintf(out, outlen, "%s@%s", m.local, m.domain);
    if (n < 0 || (size_t)n > SENDER_KEY_MAX)
        out[outlen - 1 < SENDER_KEY_MAX ? outlen - 1 : SENDER_KEY_MAX] = '\0';
    return SENDER_MAILBOX;
}
