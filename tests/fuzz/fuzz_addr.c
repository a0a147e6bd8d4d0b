/* fuzz_addr - libFuzzer target for the validation and normalization of addresses before they
 * are stored or probed: proto/addr.c (addr_domain_canon, addr_mailbox_canon, addr_domain_of),
 * the greylist's sender key (server/sender.c), the whitelist keys (wl_key in server/whitelist.c),
 * the greylist and client keys (greylist_keys, greylist_client) and the matching of the
 * operators' whitelist files (server/wlfile.c) against hostile clients and recipients.
 *
 * The input is one untrusted value, used whole (with any NUL, CR or LF in it) as an address, a
 * domain, a sender and a whitelist value; split at LF it also gives the fields of a Check question
 * (client address, client name, sender, recipient), cut to the handler's length limits.
 * Invariants, each a promise of the headers: a canonical form is idempotent (canon(canon(x)) ==
 * canon(x)), lower-case where it says so, within ADDR_MAX_* / SENDER_KEY_MAX / WL_KEY_MAX /
 * GREYLIST_KEY_MAX, and has no NUL, CR, LF or other control byte and no 8-bit byte (a space only
 * inside a quoted local part); a failure leaves "" in the output; nothing is written past an
 * output buffer of any size (each is a heap block of exactly its size). */
#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "config.h"
#include "fuzz_util.h"
#include "greylist.h"
#include "mxc_err.h"
#include "sender.h"
#include "whitelist.h"
#include "wire.h"
#include "wlfile.h"

static struct config *cfg_net, *cfg_dom;
static struct greylist *gl_net, *gl_dom;
static struct wlfile *wf;

/* Whitelist files with an entry of each kind, regexes included. */
static const char client_file[] =
    "# clients\n192.0.2.7\n198.51.100.0/24\n203.0.113\n2001:db8::/32\n::ffff:192.0.2.9\n"
    "example.com\nmail.example.net\n/^mx[0-9]+\\.example\\.org$/\n/(a+)+b/\n";
static const char recipient_file[] =
    "# recipients\npostmaster@example.com\nabuse@\nexample.org\n/^.*\\+.*@example\\.net$/\n"
    "\"quoted\\\\local\"@example.com\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[512], cpath[PATH_MAX + 16], rpath[PATH_MAX + 16];
    const char *dir = fuzz_tmpdir("fuzz_addr");
    struct wlfile_errors errs;

    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    cfg_net = config_defaults();
    cfg_dom = config_defaults();
    FUZZ_REQUIRE(cfg_net && cfg_dom, "config_defaults");
    gl_net = greylist_create(cfg_net, err, sizeof err);
    FUZZ_REQUIRE(gl_net != NULL, "greylist_create: %s", err);
    cfg_dom->greylist_client_identity = GREYLIST_IDENTITY_DOMAIN;
    gl_dom = greylist_create(cfg_dom, err, sizeof err); /* NULL without a Public Suffix List */
    snprintf(cpath, sizeof cpath, "%s/clients", dir);
    snprintf(rpath, sizeof rpath, "%s/recipients", dir);
    fuzz_write_file(cpath, client_file, sizeof client_file - 1);
    fuzz_write_file(rpath, recipient_file, sizeof recipient_file - 1);
    const char *c[] = {cpath}, *r[] = {rpath};
    wlfile_errors_init(&errs);
    wf = wlfile_load(c, 1, r, 1, &errs);
    FUZZ_REQUIRE(wf != NULL, "wlfile_load: %s", errs.nmsg ? errs.msg[0] : "?");
    wlfile_errors_fini(&errs);
    return 0;
}

/* printable - every byte of s (n bytes) is printable ASCII, space included. */
static bool printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

/* heap_copy - a heap block of exactly n bytes holding s, so that ASan sees any read past it. */
static char *heap_copy(const void *s, size_t n)
{
    char *p = malloc(n ? n : 1);
    FUZZ_REQUIRE(p != NULL, "out of memory");
    memcpy(p, s, n);
    return p;
}

/* ---- proto/addr.c ---- */

static void domain(const char *in, size_t len)
{
    char out[ADDR_MAX_DOMAIN + 1], again[ADDR_MAX_DOMAIN + 1];
    int rc = addr_domain_canon(in, len, out, sizeof out);

    if (rc != MXC_OK) {
        FUZZ_REQUIRE(rc == MXC_EINVAL && out[0] == '\0', "a failed domain left \"%s\"", out);
        return;
    }
    size_t n = strlen(out);
    FUZZ_REQUIRE(n >= 1 && n <= ADDR_MAX_DOMAIN, "domain of %zu bytes", n);
    FUZZ_REQUIRE(n == len || (n == len - 1 && in[len - 1] == '.'), "domain %zu from %zu bytes", n, len);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out[i];
        FUZZ_REQUIRE((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.',
                     "byte 0x%02x in domain \"%s\"", c, out);
        FUZZ_REQUIRE(c == (unsigned char)tolower((unsigned char)in[i]), "domain is not the input lower-cased");
    }
    FUZZ_REQUIRE(out[0] != '.' && out[0] != '-' && out[n - 1] != '.' && out[n - 1] != '-' &&
                     !strstr(out, ".."),
                 "domain \"%s\"", out);
    FUZZ_REQUIRE(addr_domain_canon(out, n, again, sizeof again) == MXC_OK && strcmp(out, again) == 0,
                 "not idempotent: \"%s\" -> \"%s\"", out, again);
    /* The exact output size is enough; one byte less is refused, and nothing is written past. */
    char *small = malloc(n + 1);
    FUZZ_REQUIRE(small && addr_domain_canon(in, len, small, n + 1) == MXC_OK && strcmp(small, out) == 0,
                 "refused with an output of exactly its size");
    FUZZ_REQUIRE(addr_domain_canon(in, len, small, n) == MXC_EINVAL && (n == 0 || small[0] == '\0'),
                 "accepted with an output one byte short");
    free(small);
}

static void mailbox(const char *in, size_t len, bool lower)
{
    char out[ADDR_MAX_PATH + 1], again[ADDR_MAX_PATH + 1], dom[ADDR_MAX_DOMAIN + 1];
    int rc = addr_mailbox_canon(in, len, lower, out, sizeof out);

    if (rc != MXC_OK) {
        FUZZ_REQUIRE(rc == MXC_EINVAL && out[0] == '\0', "a failed mailbox left \"%s\"", out);
        return;
    }
    size_t n = strlen(out);
    /* the same bytes, but the domain's trailing dot */
    FUZZ_REQUIRE((n == len || (n == len - 1 && in[len - 1] == '.')) && n <= ADDR_MAX_PATH - 2,
                 "mailbox of %zu bytes from %zu", n, len);
    FUZZ_REQUIRE(printable(out, n), "mailbox \"%s\" has a control or 8-bit byte", out);
    FUZZ_REQUIRE(!(in[0] == '<' && in[len - 1] == '>'), "angle brackets accepted");
    const char *d = addr_domain_of(out);
    FUZZ_REQUIRE(d && d > out + 1, "no local part or no '@' in \"%s\"", out);
    size_t llen = (size_t)(d - 1 - out);
    FUZZ_REQUIRE(llen <= ADDR_MAX_LOCAL, "local part of %zu bytes", llen);
    /* Security: a space only inside a quoted local part, never in the domain. */
    if (out[0] != '"')
        FUZZ_REQUIRE(!memchr(out, ' ', n), "space in \"%s\"", out);
    else
        FUZZ_REQUIRE(!strchr(d, ' '), "space in the domain of \"%s\"", out);
    if (d[0] == '[') {
        FUZZ_REQUIRE(d[strlen(d) - 1] == ']', "address literal \"%s\"", d);
    } else {
        FUZZ_REQUIRE(addr_domain_canon(d, strlen(d), dom, sizeof dom) == MXC_OK && strcmp(d, dom) == 0,
                     "domain \"%s\" of the mailbox is not canonical", d);
    }
    for (size_t i = 0; i < n; i++) {
        /* The domain is lower-cased; the local part only with lower. */
        char want = (lower || out + i >= d) ? (char)tolower((unsigned char)in[i]) : in[i];
        FUZZ_REQUIRE(out[i] == want, "byte %zu of \"%s\"", i, out);
    }
    FUZZ_REQUIRE(addr_mailbox_canon(out, n, lower, again, sizeof again) == MXC_OK && strcmp(out, again) == 0,
                 "not idempotent: \"%s\" -> \"%s\"", out, again);
    /* An output of the input's size is enough (len + 1 > outlen is refused up front, even when
     * a trailing dot would make the result shorter); nothing is written past it. */
    char *small = malloc(len + 1);
    FUZZ_REQUIRE(small && addr_mailbox_canon(in, len, lower, small, len + 1) == MXC_OK &&
                     strcmp(small, out) == 0,
                 "refused with an output of the input's size");
    FUZZ_REQUIRE(addr_mailbox_canon(in, len, lower, small, len) == MXC_EINVAL && small[0] == '\0',
                 "accepted with an output one byte short");
    free(small);
}

/* ---- server/sender.c ---- */

static void sender(const char *s)
{
    char out[SENDER_KEY_MAX + 1], again[SENDER_KEY_MAX + 1], *wrapped;
    enum sender_kind k = sender_normalize(s, out, sizeof out);
    size_t n = strlen(out), len = strlen(s);

    FUZZ_REQUIRE(n <= SENDER_KEY_MAX, "sender key of %zu bytes", n);
    FUZZ_REQUIRE(printable(out, n), "sender key \"%s\" has a control or 8-bit byte", out);
    FUZZ_REQUIRE((k == SENDER_NULL) == (len == 0 || strcmp(s, "<>") == 0), "kind %d for \"%s\"", (int)k, s);
    FUZZ_REQUIRE(k != SENDER_NULL || strcmp(out, "<>") == 0, "null sender as \"%s\"", out);
    if (k == SENDER_MAILBOX)
        for (size_t i = 0; i < n; i++)
            FUZZ_REQUIRE(!isupper((unsigned char)out[i]), "upper case in \"%s\"", out);
    FUZZ_REQUIRE(sender_normalize(s, again, sizeof again) == k && strcmp(out, again) == 0,
                 "not deterministic");
    /* One pair of angle brackets around a value that has none makes no difference. */
    if (!(len >= 2 && s[0] == '<' && s[len - 1] == '>')) {
        if (asprintf(&wrapped, "<%s>", s) < 0)
            abort();
        FUZZ_REQUIRE(sender_normalize(wrapped, again, sizeof again) == k && strcmp(out, again) == 0,
                     "<%s> gives \"%s\", without brackets \"%s\"", s, again, out);
        free(wrapped);
    }
    /* Small outputs: never written past; below 2 bytes untouched. */
    for (size_t cap = 1; cap <= 9; cap += 4) {
        char *small = malloc(cap);
        memset(small, 'x', cap);
        enum sender_kind sk = sender_normalize(s, small, cap);
        if (cap < 2)
            FUZZ_REQUIRE(sk == SENDER_RAW && small[0] == 'x', "an output of %zu bytes was touched", cap);
        else
            FUZZ_REQUIRE(memchr(small, '\0', cap) != NULL, "an output of %zu bytes not terminated", cap);
        char *raw = sender_raw_text(s, small, cap);
        FUZZ_REQUIRE(raw == small && strlen(small) < cap && printable(small, strlen(small)), "raw text");
        free(small);
    }
}

/* ---- server/whitelist.c ---- */

static void whitelist_key(const char *s)
{
    static const Mxcache__WhitelistKind kinds[] = {
        MXCACHE__WHITELIST_KIND__WHITELIST_ANY, MXCACHE__WHITELIST_KIND__WHITELIST_CLIENT,
        MXCACHE__WHITELIST_KIND__WHITELIST_CLIENT_NAME, MXCACHE__WHITELIST_KIND__WHITELIST_SENDER,
        MXCACHE__WHITELIST_KIND__WHITELIST_RECIPIENT,
    };
    char key[WL_KEY_MAX], again[WL_KEY_MAX], err[256];

    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if (wl_key(kinds[i], s, key, sizeof key, err, sizeof err) != MXC_OK) {
            FUZZ_REQUIRE(err[0] && printable(err, strlen(err)), "wl_key failed without a reason");
            continue;
        }
        FUZZ_REQUIRE(kinds[i] != MXCACHE__WHITELIST_KIND__WHITELIST_ANY, "a key of kind any");
        size_t n = strlen(key), plen = strlen(wire_wlkind_name(kinds[i]));
        FUZZ_REQUIRE(n < WL_KEY_MAX && printable(key, n), "key \"%s\"", key);
        FUZZ_REQUIRE(strncmp(key, wire_wlkind_name(kinds[i]), plen) == 0 && key[plen] == ':' && key[plen + 1],
                     "key \"%s\" of kind %s", key, wire_wlkind_name(kinds[i]));
        FUZZ_REQUIRE(!strchr(key, ' ') || kinds[i] >= MXCACHE__WHITELIST_KIND__WHITELIST_SENDER,
                     "space in key \"%s\"", key);
        FUZZ_REQUIRE(wl_key(kinds[i], key + plen + 1, again, sizeof again, err, sizeof err) == MXC_OK &&
                         strcmp(key, again) == 0,
                     "not idempotent: \"%s\" -> \"%s\" (%s)", key, again, err);
    }
}

/* ---- greylist keys and the whitelist files ---- */

/* field - the next LF-separated part of *p (NULL when none is left), cut to max bytes. */
static char *field(char **p, size_t max)
{
    char *s = *p;
    if (!s)
        return NULL;
    char *lf = strchr(s, '\n');
    *p = lf ? lf + 1 : NULL;
    if (lf)
        *lf = '\0';
    if (strlen(s) > max)
        s[max] = '\0';
    return s;
}

static void check_key(const char *key, const char *what)
{
    size_t n = strnlen(key, GREYLIST_KEY_MAX);
    FUZZ_REQUIRE(n < GREYLIST_KEY_MAX, "%s key not terminated", what);
    FUZZ_REQUIRE(printable(key, n), "%s key \"%s\" has a control or 8-bit byte", what, key);
}

static void question(char *s)
{
    Mxcache__CheckRequest q = MXCACHE__CHECK_REQUEST__INIT;
    char key[GREYLIST_KEY_MAX], awl[GREYLIST_KEY_MAX], client[GREYLIST_CLIENT_MAX + 1], why[64];
    char *p = s, *f;

    /* the handler's limits (handler.c CHECK_MAX_*) */
    q.client_address = (f = field(&p, 64)) ? f : "";
    q.client_name = (f = field(&p, 255)) ? f : "";
    q.sender = (f = field(&p, 256)) ? f : "";
    q.recipient = (f = field(&p, 256)) ? f : "";
    q.mx_name = "mx1.example.net";
    struct greylist *gls[] = {gl_net, gl_dom};
    for (size_t i = 0; i < 2; i++) {
        if (!gls[i])
            continue;
        FUZZ_REQUIRE(greylist_keys(gls[i], &q, key, awl) == MXC_OK, "greylist_keys");
        check_key(key, "greylist");
        check_key(awl, "awl");
        /* The recipient comes last, lower-cased when it is a mailbox. */
        char rcpt[ADDR_MAX_PATH + 1];
        if (addr_mailbox_canon(q.recipient, strlen(q.recipient), true, rcpt, sizeof rcpt) == MXC_OK) {
            size_t kn = strlen(key), rn = strlen(rcpt);
            FUZZ_REQUIRE(kn > rn && strcmp(key + kn - rn, rcpt) == 0 && key[kn - rn - 1] == '/',
                         "key \"%s\" does not end in /%s", key, rcpt);
        }
        memset(client, 'x', sizeof client);
        greylist_client(gls[i], &q, client, sizeof client);
        size_t cn = strnlen(client, sizeof client);
        FUZZ_REQUIRE(cn < sizeof client && printable(client, cn), "client identity");
    }
    memset(why, 'x', sizeof why);
    if (wlfile_match_client(wf, q.client_address, q.client_name, why, sizeof why))
        FUZZ_REQUIRE(memchr(why, '\0', sizeof why), "why not terminated");
    wlfile_match_client(wf, q.client_address, q.client_name, NULL, 0);
    memset(why, 'x', sizeof why);
    if (wlfile_match_recipient(wf, q.recipient, why, sizeof why))
        FUZZ_REQUIRE(memchr(why, '\0', sizeof why), "why not terminated");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The raw bytes in a block of exactly their size: any read past them is seen. */
    char *raw = heap_copy(data, size);
    domain(raw, size);
    mailbox(raw, size, false);
    mailbox(raw, size, true);
    free(raw);

    /* As a C string (up to a NUL), as the protobuf fields arrive. */
    char *s = malloc(size + 1);
    FUZZ_REQUIRE(s != NULL, "out of memory");
    memcpy(s, data, size);
    s[size] = '\0';
    sender(s);
    whitelist_key(s);
    question(s); /* cuts s up */
    free(s);
    return 0;
}
