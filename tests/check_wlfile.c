/* Check suite for server/wlfile.c: whitelists from postgrey-format files.
 *
 * Debian's own postgrey whitelist_clients and whitelist_recipients (tests/data/postgrey/, found
 * through $MXCACHE_SOURCE_DIR) must load without errors and match known entries of theirs.
 * Hand-written files cover every entry form with tables of lookups and the "FILE:LINE" each
 * reports; every error case is checked with its exact "FILE:LINE: message"; limits (line length,
 * entries per file, messages kept) at and just past their bounds; hostile lookups (over-long,
 * malformed, NULL), a pathological regex under the match limit, and lookups from several threads
 * at once. Files live in a mkdtemp directory that is removed afterwards. */
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "wlfile.h"

/* REQUIRE - an assertion for hot loops (ck_assert writes a mark point on every success). */
#define REQUIRE(cond, ...)                                                                          \
    do {                                                                                            \
        if (!(cond)) {                                                                              \
            char require_msg_[1024];                                                                 \
            snprintf(require_msg_, sizeof require_msg_, __VA_ARGS__);                               \
            ck_abort_msg("%s failed: %s", #cond, require_msg_);                                     \
        }                                                                                           \
    } while (0)

#define N(a) (sizeof(a) / sizeof((a)[0]))

static char dir[256]; /* the temporary directory; short, so that paths under it fit PATH_MAX */
static char debian_clients[PATH_MAX], debian_rcpts[PATH_MAX];

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void dir_setup(void)
{
    const char *src = getenv("MXCACHE_SOURCE_DIR");
    const char *tmp = getenv("TMPDIR");

    int n = snprintf(dir, sizeof dir, "%s/check_wlfile.XXXXXX", tmp && *tmp && strlen(tmp) < 200 ? tmp : "/tmp");
    ck_assert(n > 0 && (size_t)n < sizeof dir);
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_msg(src && *src, "MXCACHE_SOURCE_DIR is not set (run through ctest)");
    snprintf(debian_clients, sizeof debian_clients, "%s/tests/data/postgrey/whitelist_clients", src);
    snprintf(debian_rcpts, sizeof debian_rcpts, "%s/tests/data/postgrey/whitelist_recipients", src);
}

static void dir_teardown(void)
{
    if (dir[0])
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* path_of - dir/name into a static buffer of 8 rotating slots. */
static const char *path_of(const char *name)
{
    static char bufs[8][PATH_MAX];
    static unsigned next;
    char *b = bufs[next++ % 8];

    snprintf(b, PATH_MAX, "%s/%s", dir, name);
    return b;
}

/* write_file - writes len bytes (len (size_t)-1: strlen) into dir/name; returns its path. */
static const char *write_file(const char *name, const char *data, size_t len)
{
    const char *p = path_of(name);
    FILE *f = fopen(p, "w");

    ck_assert_msg(f != NULL, "fopen %s: %s", p, strerror(errno));
    if (len == (size_t)-1)
        len = strlen(data);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
    return p;
}

/* load_ok - loads and asserts success, printing the errors otherwise. */
static struct wlfile *load_ok(const char *const *c, size_t nc, const char *const *r, size_t nr)
{
    struct wlfile_errors errs;
    struct wlfile *wf;

    wlfile_errors_init(&errs);
    wf = wlfile_load(c, nc, r, nr, &errs);
    if (!wf || errs.count) {
        for (size_t i = 0; i < errs.nmsg; i++)
            fprintf(stderr, "unexpected: %s\n", errs.msg[i]);
        ck_abort_msg("load failed with %zu errors", errs.count);
    }
    wlfile_errors_fini(&errs);
    return wf;
}

/* ---- Debian's postgrey files ---- */

struct client_case {
    const char *address, *name;
    int line; /* 0: no match */
};

/* Entries of Debian's whitelist_clients 1.37-2 (line numbers of that file). */
static const struct client_case debian_client_cases[] = {
    {"192.0.2.1", "debian.org", 12},
    {"192.0.2.1", "master.debian.org", 12},
    {"192.0.2.1", "MAIL.Debian.ORG.", 12},
    {"192.0.2.1", "notdebian.org", 0},
    {"192.0.2.1", "debian.org.example", 0},
    {"192.0.2.1", "ms-smtp-03.southeast.rr.com", 44},
    {"192.0.2.1", "MS-SMTP-03.RR.COM", 44},
    {"192.0.2.1", "xms-smtp-03.rr.com", 0},
    {"192.0.2.1", "sv12pub.verizon.net", 52},
    {"192.0.2.1", "sc3pub.verizon.net", 52},
    {"192.0.2.1", "sx3pub.verizon.net", 0},
    {"192.0.2.1", "svpub.verizon.net", 0},
    {"192.0.2.1", "mail17.telekom.de", 58},
    {"192.0.2.1", "odk.fdv.uni-lj.si", 136},
    {"192.0.2.1", "odkxfdv.uni-lj.si", 136}, /* its dots are unescaped, as in postgrey */
    {"192.0.2.1", "smtp12-g1.free.fr", 176},
    {"192.0.2.1", "postfix3-g20.free.fr", 176},
    {"192.0.2.1", "smtp-g1.free.fr", 0},
    {"192.0.2.1", "mail-yw1-f170.google.com", 160},
    {"192.0.2.1", "mout-xforward.gmx.net", 236},
    {"192.0.2.1", "mout.gmx.net", 0},
    {"192.0.2.1", "dgfip.finances.gouv.fr", 244}, /* the line ends in a space */
    {"192.0.2.1", "unknown", 0},
    {"66.216.126.174", "unknown", 56},
    {"66.216.126.175", "unknown", 0},
    {"::ffff:66.216.126.174", "unknown", 56},
    {"195.235.39.1", "unknown", 107}, /* partial address: the /24 */
    {"195.235.39.255", "", 107},
    {"195.235.40.1", "unknown", 0},
    {"51.4.80.0", NULL, 278},
    {"51.4.80.31", "unknown", 278},
    {"51.4.80.32", "unknown", 0},
    {"2a01:4180:4051:800::25", "unknown", 280},
    {"2A01:4180:4051:0800:FFFF:FFFF:FFFF:FFFF", "unknown", 280},
    {"2a01:4180:4051:801::25", "unknown", 0},
    {"205.201.128.1", "unknown", 290},
    {"205.201.143.254", "unknown", 290},
    {"205.201.144.1", "unknown", 0},
    {"148.105.255.255", "unknown", 292},
    {"66.216.126.174", "mail17.telekom.de", 56}, /* networks are looked at first */
    {"not-an-ip", "unknown", 0},
    {"", "", 0},
};

struct rcpt_case {
    const char *recipient;
    int line;
};

static const struct rcpt_case debian_rcpt_cases[] = {
    {"postmaster@example.com", 6},
    {"Postmaster@Example.COM", 6},
    {"postmaster+lists@example.com", 6},
    {"abuse@example.org", 7},
    {"ABUSE@sub.example.org", 7},
    {"webmaster@example.com", 0},
    {"postmasterx@example.com", 0},
    {"xpostmaster@example.com", 0},
    {"postmaster+@example.com", 0}, /* an empty extension is not an extension */
    {"postmaster", 0},
    {"", 0},
};

START_TEST(debian_files)
{
    const char *c[] = {debian_clients}, *r[] = {debian_rcpts};
    struct wlfile *wf = load_ok(c, 1, r, 1);
    char why[PATH_MAX + 32], want[PATH_MAX + 32];

    /* Entries: the lines that are neither blank nor comments. */
    ck_assert_uint_eq(wlfile_count(wf, WLFILE_CLIENTS), 164);
    ck_assert_uint_eq(wlfile_count(wf, WLFILE_RECIPIENTS), 2);
    ck_assert_uint_eq(wlfile_count(wf, WLFILE_ALL), 166);
    for (size_t i = 0; i < N(debian_client_cases); i++) {
        const struct client_case *k = &debian_client_cases[i];
        why[0] = '\0';
        bool m = wlfile_match_client(wf, k->address, k->name, why, sizeof why);
        ck_assert_msg(m == (k->line != 0), "client %s %s: match %d, want line %d (why %s)", k->address,
                      k->name ? k->name : "(null)", m, k->line, why);
        if (m) {
            snprintf(want, sizeof want, "%s:%d", debian_clients, k->line);
            ck_assert_str_eq(why, want);
        }
    }
    for (size_t i = 0; i < N(debian_rcpt_cases); i++) {
        const struct rcpt_case *k = &debian_rcpt_cases[i];
        why[0] = '\0';
        bool m = wlfile_match_recipient(wf, k->recipient, why, sizeof why);
        ck_assert_msg(m == (k->line != 0), "recipient %s: match %d, want line %d (why %s)", k->recipient, m, k->line,
                      why);
        if (m) {
            snprintf(want, sizeof want, "%s:%d", debian_rcpts, k->line);
            ck_assert_str_eq(why, want);
        }
    }
    /* Client files say nothing about recipients and the other way round. */
    ck_assert(!wlfile_match_recipient(wf, "someone@debian.org", NULL, 0));
    ck_assert(!wlfile_match_client(wf, "192.0.2.1", "postmaster", NULL, 0));
    wlfile_free(wf);
}
END_TEST

/* ---- every entry form ---- */

static const char clients_text[] =
    "# comment line\n"                      /* 1 */
    "\n"                                    /* 2 */
    "   \t  \r\n"                           /* 3 */
    "192.0.2.7\n"                           /* 4 */
    "198.51.100.0/24   # trailing comment\n" /* 5 */
    "203.0.113.77/25\n"                     /* 6: host bits ignored: 203.0.113.0/25 */
    "10.1.2\n"                              /* 7: /24 */
    "172.16.\n"                             /* 8: /16 */
    "100.\n"                                /* 9: /8 */
    "2001:db8::/32\n"                       /* 10 */
    "2001:db8:1::1\n"                       /* 11: inside line 10's network; longer prefix wins */
    "::ffff:192.0.2.128/121\n"              /* 12: IPv4-mapped: 192.0.2.128/25 */
    "  Example.COM.  \n"                    /* 13 */
    "mx.example.net\n"                      /* 14 */
    "/^mail[0-9]+\\.example\\.org$/\n"      /* 15 */
    "/\\d+-pool\\./\n"                      /* 16: unanchored */
    "unknown\n"                             /* 17: never matches the name "unknown" */
    "/^unk/\n"                              /* 18: nor does a regex */
    "192.0.2.7\n"                           /* 19: duplicate of 4 */
    "under_score.example\n"                 /* 20 */
    "1.2.3.4\r\n";                          /* 21: CRLF */

static const struct client_case client_cases[] = {
    {"192.0.2.7", "unknown", 4},
    {"192.0.2.8", "unknown", 0},
    {"198.51.100.255", "unknown", 5},
    {"203.0.113.0", "unknown", 6},
    {"203.0.113.127", "unknown", 6},
    {"203.0.113.128", "unknown", 0},
    {"10.1.2.3", "unknown", 7},
    {"10.1.3.3", "unknown", 0},
    {"172.16.255.1", "unknown", 8},
    {"172.17.0.1", "unknown", 0},
    {"100.200.1.1", "unknown", 9},
    {"2001:db8:ffff::1", "unknown", 10},
    {"2001:db8:1::1", "unknown", 11},
    {"2001:db8:1::2", "unknown", 10},
    {"2001:db9::1", "unknown", 0},
    {"192.0.2.200", "unknown", 12},
    {"::ffff:192.0.2.200", "unknown", 12},
    {"192.0.2.100", "unknown", 0},
    {"192.0.2.99", "example.com", 13},
    {"192.0.2.99", "EXAMPLE.com", 13},
    {"192.0.2.99", "a.b.example.com", 13},
    {"192.0.2.99", "example.com.", 13},
    {"192.0.2.99", "badexample.com", 0},
    {"192.0.2.99", "example.co", 0},
    {"192.0.2.99", "mx.example.net", 14},
    {"192.0.2.99", "in.mx.example.net", 14},
    {"192.0.2.99", "example.net", 0},
    {"192.0.2.99", "mail12.example.org", 15},
    {"192.0.2.99", "MAIL12.EXAMPLE.ORG", 15},
    {"192.0.2.99", "mail.example.org", 0},
    {"192.0.2.99", "x.mail12.example.org", 0},
    {"192.0.2.99", "host-12-pool.isp.example", 16},
    {"192.0.2.99", "unknown", 0},
    {"192.0.2.99", "UNKNOWN", 0},
    {"192.0.2.99", "unknown.example", 18}, /* a real name that merely starts with "unk" */
    {"192.0.2.99", "under_score.example", 20},
    {"1.2.3.4", NULL, 21},
    {"192.0.2.7 ", "unknown", 0},
    {"192.0.2", "unknown", 0},
    {"fe80::1%eth0", "unknown", 0},
};

static const char rcpts_text[] =
    "# recipients\n"                 /* 1 */
    "postmaster@\n"                  /* 2 */
    "Abuse@Example.COM\n"            /* 3 */
    "list+admin@example.com\n"       /* 4: a '+' in the entry itself */
    "example.net\n"                  /* 5 */
    "/^noc-[a-z]+@example\\.org$/\n" /* 6 */
    "sales@sub.example.org.\n"       /* 7: trailing dot */
    "o'brien@example.com\n"          /* 8 */
    "example.net\n";                 /* 9: duplicate of 5 */

static const struct rcpt_case rcpt_cases[] = {
    {"postmaster@anything.example", 2},
    {"postmaster+x@anything.example", 2},
    {"abuse@example.com", 3},
    {"abuse+a+b@EXAMPLE.com", 3},
    {"abuse@sub.example.com", 0}, /* user@domain is that domain only */
    {"abuse@example.co", 0},
    {"list+admin@example.com", 4},
    {"list+admin+x@example.com", 4},
    {"list@example.com", 0},
    {"list+other@example.com", 0},
    {"anyone@example.net", 5},
    {"anyone@deep.sub.example.net", 5},
    {"anyone@notexample.net", 0},
    {"noc-eu@example.org", 6},
    {"NOC-EU@EXAMPLE.ORG", 6},
    {"noc-1@example.org", 0},
    {"sales@sub.example.org", 7},
    {"o'brien@example.com", 8},
    {"\"odd@local\"@example.net", 5}, /* the last '@' separates the domain */
    {"nobody@example.org", 0},
    {"@example.net", 5},
    {"example.net", 0},
};

START_TEST(client_forms)
{
    const char *c[] = {write_file("clients", clients_text, (size_t)-1)};
    struct wlfile *wf = load_ok(c, 1, NULL, 0);
    char why[PATH_MAX + 32], want[PATH_MAX + 32];

    ck_assert_uint_eq(wlfile_count(wf, WLFILE_CLIENTS), 18);
    ck_assert_uint_eq(wlfile_count(wf, WLFILE_RECIPIENTS), 0);
    for (size_t i = 0; i < N(client_cases); i++) {
        const struct client_case *k = &client_cases[i];
        why[0] = '\0';
        bool m = wlfile_match_client(wf, k->address, k->name, why, sizeof why);
        ck_assert_msg(m == (k->line != 0), "client '%s' '%s': match %d, want line %d (why %s)", k->address,
                      k->name ? k->name : "(null)", m, k->line, why);
        if (m) {
            snprintf(want, sizeof want, "%s:%d", c[0], k->line);
            ck_assert_str_eq(why, want);
        }
    }
    wlfile_free(wf);
}
END_TEST

START_TEST(recipient_forms)
{
    const char *r[] = {write_file("rcpts", rcpts_text, (size_t)-1)};
    struct wlfile *wf = load_ok(NULL, 0, r, 1);
    char why[PATH_MAX + 32], want[PATH_MAX + 32];

    ck_assert_uint_eq(wlfile_count(wf, WLFILE_RECIPIENTS), 8);
    for (size_t i = 0; i < N(rcpt_cases); i++) {
        const struct rcpt_case *k = &rcpt_cases[i];
        why[0] = '\0';
        bool m = wlfile_match_recipient(wf, k->recipient, why, sizeof why);
        ck_assert_msg(m == (k->line != 0), "recipient '%s': match %d, want line %d (why %s)", k->recipient, m,
                      k->line, why);
        if (m) {
            snprintf(want, sizeof want, "%s:%d", r[0], k->line);
            ck_assert_str_eq(why, want);
        }
    }
    wlfile_free(wf);
}
END_TEST

/* Several files of each kind: "why" names the right file and line; order does not matter. */
START_TEST(several_files)
{
    const char *c[] = {write_file("c1", "192.0.2.0/24\n", (size_t)-1), write_file("c2", "\n\nexample.com\n", (size_t)-1)};
    const char *r[] = {write_file("r1", "# x\nabuse@\n", (size_t)-1), write_file("r2", "example.org\n", (size_t)-1)};
    struct wlfile *wf = load_ok(c, 2, r, 2);
    char why[PATH_MAX + 32], want[PATH_MAX + 32];

    ck_assert_uint_eq(wlfile_count(wf, WLFILE_ALL), 4);
    ck_assert(wlfile_match_client(wf, "192.0.2.9", "unknown", why, sizeof why));
    snprintf(want, sizeof want, "%s:1", c[0]);
    ck_assert_str_eq(why, want);
    ck_assert(wlfile_match_client(wf, "198.51.100.1", "mx.example.com", why, sizeof why));
    snprintf(want, sizeof want, "%s:3", c[1]);
    ck_assert_str_eq(why, want);
    ck_assert(wlfile_match_recipient(wf, "abuse@x.test", why, sizeof why));
    snprintf(want, sizeof want, "%s:2", r[0]);
    ck_assert_str_eq(why, want);
    ck_assert(wlfile_match_recipient(wf, "x@example.org", why, sizeof why));
    snprintf(want, sizeof want, "%s:1", r[1]);
    ck_assert_str_eq(why, want);
    /* why may be NULL, and is truncated to whylen. */
    ck_assert(wlfile_match_recipient(wf, "x@example.org", NULL, 0));
    ck_assert(wlfile_match_recipient(wf, "x@example.org", why, 5));
    ck_assert_uint_eq(strlen(why), 4);
    ck_assert(strncmp(why, r[1], 4) == 0);
    wlfile_free(wf);
}
END_TEST

START_TEST(empty_sets)
{
    struct wlfile *wf = load_ok(NULL, 0, NULL, 0);
    const char *c[] = {write_file("only-comments", "# nothing\n\n   # here\n", (size_t)-1)};
    struct wlfile *wf2 = load_ok(c, 1, c, 1);

    ck_assert_uint_eq(wlfile_count(wf, WLFILE_ALL), 0);
    ck_assert(!wlfile_match_client(wf, "192.0.2.1", "example.com", NULL, 0));
    ck_assert(!wlfile_match_recipient(wf, "a@example.com", NULL, 0));
    ck_assert_uint_eq(wlfile_count(wf2, WLFILE_ALL), 0);
    ck_assert(!wlfile_match_client(wf2, "192.0.2.1", "example.com", NULL, 0));
    wlfile_free(wf);
    wlfile_free(wf2);
    /* NULL-safety. */
    wlfile_free(NULL);
    ck_assert_uint_eq(wlfile_count(NULL, WLFILE_ALL), 0);
    ck_assert(!wlfile_match_client(NULL, "192.0.2.1", "example.com", NULL, 0));
    ck_assert(!wlfile_match_recipient(NULL, "a@example.com", NULL, 0));
    wlfile_errors_fini(NULL);
}
END_TEST

START_TEST(whole_space)
{
    const char *c[] = {write_file("all", "0.0.0.0/0\n::/0\n", (size_t)-1)};
    struct wlfile *wf = load_ok(c, 1, NULL, 0);

    ck_assert(wlfile_match_client(wf, "203.0.113.1", "unknown", NULL, 0));
    ck_assert(wlfile_match_client(wf, "2001:db8::1", "unknown", NULL, 0));
    ck_assert(!wlfile_match_client(wf, "bogus", "unknown", NULL, 0));
    ck_assert(!wlfile_match_client(wf, NULL, "unknown", NULL, 0));
    wlfile_free(wf);
}
END_TEST

/* ---- errors ---- */

struct error_case {
    bool recipient;     /* which kind of file */
    const char *text;
    size_t len;         /* 0: strlen(text) */
    const char *want;   /* the message after "PATH" */
};

static const struct error_case error_cases[] = {
    {false, "/foo(/\n", 0, ":1: bad /regex/ '/foo(/': missing closing parenthesis at offset 4"},
    {false, "# x\n/a[b/\n", 0, ":2: bad /regex/ '/a[b/': missing terminating ] for character class at offset 3"},
    {false, "/(?<n>a)(?<n>b)/\n", 0,
     ":1: bad /regex/ '/(?<n>a)(?<n>b)/': two named subpatterns have the same name (PCRE2_DUPNAMES not set) at offset 12"},
    {false, "/abc\n", 0, ":1: unterminated /regex/ (it must end with '/'): '/abc'"},
    {false, "/\n", 0, ":1: unterminated /regex/ (it must end with '/'): '/'"},
    {false, "//\n", 0, ":1: empty /regex/"},
    {false, "/a b/\n", 0, ":1: white space in a /regex/ (write \\s or \\x20): '/a b/'"},
    {false, "/a#b/\n", 0, ":1: unterminated /regex/ (it must end with '/'): '/a'"},
    {false, "example.com mx.example.com\n", 0,
     ":1: white space inside an entry (one entry per line): 'example.com mx.example.com'"},
    {false, "a\tb\n", 0, ":1: white space inside an entry (one entry per line): 'a\\x09b'"},
    {false, "exa\x01mple.com\n", 0, ":1: control character 0x01 in 'exa\\x01mple.com'"},
    {false, "ok.example\nbad\x7f\n", 0, ":2: control character 0x7f in 'bad\\x7f'"},
    {false, "a\0b\n", 4, ":1: NUL byte in line"},
    {false, "300.1.2.3\n", 0,
     ":1: bad IPv4 address or network '300.1.2.3' (a.b.c.d, a.b.c.d/len, or a partial address a.b.c)"},
    {false, "192.0.2.1/33\n", 0,
     ":1: bad IPv4 address or network '192.0.2.1/33' (a.b.c.d, a.b.c.d/len, or a partial address a.b.c)"},
    {false, "192.0.2.1/\n", 0,
     ":1: bad IPv4 address or network '192.0.2.1/' (a.b.c.d, a.b.c.d/len, or a partial address a.b.c)"},
    {false, "10.1/16\n", 0,
     ":1: bad IPv4 address or network '10.1/16' (a.b.c.d, a.b.c.d/len, or a partial address a.b.c)"},
    {false, "1.2.3.4.5\n", 0,
     ":1: bad IPv4 address or network '1.2.3.4.5' (a.b.c.d, a.b.c.d/len, or a partial address a.b.c)"},
    {false, "1.2.3.4.\n", 0,
     ":1: bad IPv4 address or network '1.2.3.4.' (a.b.c.d, a.b.c.d/len, or a partial address a.b.c)"},
    {false, "010.1.2.3\n", 0,
     ":1: bad IPv4 address or network '010.1.2.3' (a.b.c.d, a.b.c.d/len, or a partial address a.b.c)"},
    {false, "1..2\n", 0,
     ":1: bad IPv4 address or network '1..2' (a.b.c.d, a.b.c.d/len, or a partial address a.b.c)"},
    {false, "2001:db8::/129\n", 0, ":1: bad IPv6 address or network '2001:db8::/129'"},
    {false, "2001:db8:::1\n", 0, ":1: bad IPv6 address or network '2001:db8:::1'"},
    {false, "2001:db8::/\n", 0, ":1: bad IPv6 address or network '2001:db8::/'"},
    {false, "*.Example.COM\n", 0, ":1: not an IP address, network, host name or /regex/: '*.Example.COM'"},
    {false, "example..com\n", 0, ":1: not an IP address, network, host name or /regex/: 'example..com'"},
    {false, ".example.com\n", 0, ":1: not an IP address, network, host name or /regex/: '.example.com'"},
    {false, "user@example.com\n", 0, ":1: not an IP address, network, host name or /regex/: 'user@example.com'"},
    {false, "caf\xc3\xa9.example\n", 0,
     ":1: not an IP address, network, host name or /regex/: 'caf\\xc3\\xa9.example'"},
    {true, "@example.com\n", 0,
     ":1: no local part before '@' in '@example.com' (a domain alone covers the domain and its subdomains)"},
    {true, "a@b@example.com\n", 0, ":1: more than one '@' in 'a@b@example.com'"},
    {true, "user@exa mple.com\n", 0, ":1: white space inside an entry (one entry per line): 'user@exa mple.com'"},
    {true, "user@bad!domain\n", 0, ":1: bad domain in 'user@bad!domain'"},
    {true, "not/a/domain\n", 0, ":1: not an address, user@, domain or /regex/: 'not/a/domain'"},
    {true, "/(unclosed/\n", 0, ":1: bad /regex/ '/(unclosed/': missing closing parenthesis at offset 9"},
};

START_TEST(error_table)
{
    const struct error_case *k = &error_cases[_i];
    const char *p = write_file("bad", k->text, k->len ? k->len : strlen(k->text));
    struct wlfile_errors errs;
    char want[PATH_MAX + 512];

    wlfile_errors_init(&errs);
    ck_assert_ptr_null(k->recipient ? wlfile_load(NULL, 0, &p, 1, &errs) : wlfile_load(&p, 1, NULL, 0, &errs));
    snprintf(want, sizeof want, "%s%s", p, k->want);
    ck_assert_uint_eq(errs.count, 1);
    ck_assert_uint_eq(errs.nmsg, 1);
    ck_assert_str_eq(errs.msg[0], want);
    wlfile_errors_fini(&errs);
    /* Without an error sink the load fails all the same. */
    ck_assert_ptr_null(k->recipient ? wlfile_load(NULL, 0, &p, 1, NULL) : wlfile_load(&p, 1, NULL, 0, NULL));
}
END_TEST

/* Every error of every file is reported, in order, with its file and line; good lines around
 * them do not hide them, and one bad file fails the whole set. */
START_TEST(errors_all_reported)
{
    const char *c[] = {write_file("c-good", "192.0.2.1\n", (size_t)-1), path_of("missing"),
                       write_file("c-bad", "ok.example\n/(/\n\n999.1.1.1\nfine.example\n*\n", (size_t)-1)};
    const char *r[] = {write_file("r-bad", "abuse@\n@x.example\n", (size_t)-1), dir};
    struct wlfile_errors errs;
    char want[6][PATH_MAX + 256];

    wlfile_errors_init(&errs);
    ck_assert_ptr_null(wlfile_load(c, 3, r, 2, &errs));
    snprintf(want[0], sizeof want[0], "%s: cannot open: No such file or directory", c[1]);
    snprintf(want[1], sizeof want[1], "%s:2: bad /regex/ '/(/': missing closing parenthesis at offset 1", c[2]);
    snprintf(want[2], sizeof want[2],
             "%s:4: bad IPv4 address or network '999.1.1.1' (a.b.c.d, a.b.c.d/len, or a partial address a.b.c)", c[2]);
    snprintf(want[3], sizeof want[3], "%s:6: not an IP address, network, host name or /regex/: '*'", c[2]);
    snprintf(want[4], sizeof want[4],
             "%s:2: no local part before '@' in '@x.example' (a domain alone covers the domain and its subdomains)", r[0]);
    snprintf(want[5], sizeof want[5], "%s: read error: Is a directory", dir);
    ck_assert_uint_eq(errs.count, 6);
    ck_assert_uint_eq(errs.nmsg, 6);
    for (size_t i = 0; i < 6; i++)
        ck_assert_str_eq(errs.msg[i], want[i]);
    wlfile_errors_fini(&errs);
    ck_assert_uint_eq(errs.nmsg, 0);
}
END_TEST

START_TEST(unreadable_file)
{
    const char *p = write_file("secret", "192.0.2.1\n", (size_t)-1);
    struct wlfile_errors errs;
    char want[PATH_MAX + 64];

    if (geteuid() == 0)
        return; /* root reads mode 000 files */
    ck_assert_int_eq(chmod(p, 0), 0);
    wlfile_errors_init(&errs);
    ck_assert_ptr_null(wlfile_load(&p, 1, NULL, 0, &errs));
    snprintf(want, sizeof want, "%s: cannot open: Permission denied", p);
    ck_assert_uint_eq(errs.count, 1);
    ck_assert_str_eq(errs.msg[0], want);
    wlfile_errors_fini(&errs);
}
END_TEST

/* Messages kept are capped; the count goes on. */
START_TEST(errors_capped)
{
    size_t nbad = 3 * WLFILE_MAX_ERRORS;
    char *text = malloc(nbad * 4 + 1), want[PATH_MAX + 128];
    struct wlfile_errors errs;
    const char *p;

    ck_assert_ptr_nonnull(text);
    for (size_t i = 0; i < nbad; i++)
        memcpy(text + 4 * i, "*.x\n", 4);
    p = write_file("many-bad", text, nbad * 4);
    free(text);
    wlfile_errors_init(&errs);
    ck_assert_ptr_null(wlfile_load(&p, 1, NULL, 0, &errs));
    ck_assert_uint_eq(errs.count, nbad);
    ck_assert_uint_eq(errs.nmsg, WLFILE_MAX_ERRORS);
    snprintf(want, sizeof want, "%s:%d: not an IP address, network, host name or /regex/: '*.x'", p,
             WLFILE_MAX_ERRORS);
    ck_assert_str_eq(errs.msg[WLFILE_MAX_ERRORS - 1], want);
    wlfile_errors_fini(&errs);
}
END_TEST

/* A line of WLFILE_MAX_LINE bytes loads; one byte more is an error, and the lines after it are
 * still read (and counted) correctly. */
START_TEST(line_length)
{
    size_t n = WLFILE_MAX_LINE;
    char *text = malloc(2 * n + 64), want[PATH_MAX + 128];
    struct wlfile_errors errs;
    const char *p;
    size_t off = 0;

    ck_assert_ptr_nonnull(text);
    /* Line 1: a comment of exactly n bytes. */
    text[off++] = '#';
    memset(text + off, 'x', n - 1);
    off += n - 1;
    text[off++] = '\n';
    p = write_file("long-ok", text, off);
    struct wlfile *wf = load_ok(&p, 1, NULL, 0);
    ck_assert_uint_eq(wlfile_count(wf, WLFILE_ALL), 0);
    wlfile_free(wf);

    /* Line 2: n + 1 bytes; line 3 bad, to show the line count survives. */
    off = 0;
    memcpy(text, "example.com\n#", 13);
    off = 13;
    memset(text + off, 'x', n);
    off += n;
    memcpy(text + off, "\n*\n", 3);
    off += 3;
    p = write_file("long-bad", text, off);
    free(text);
    wlfile_errors_init(&errs);
    ck_assert_ptr_null(wlfile_load(&p, 1, NULL, 0, &errs));
    ck_assert_uint_eq(errs.count, 2);
    snprintf(want, sizeof want, "%s:2: line longer than %d bytes", p, WLFILE_MAX_LINE);
    ck_assert_str_eq(errs.msg[0], want);
    snprintf(want, sizeof want, "%s:3: not an IP address, network, host name or /regex/: '*'", p);
    ck_assert_str_eq(errs.msg[1], want);
    wlfile_errors_fini(&errs);

    /* The last line may lack its newline. */
    p = write_file("no-newline", "# x\nexample.com", (size_t)-1);
    wf = load_ok(&p, 1, NULL, 0);
    ck_assert(wlfile_match_client(wf, "192.0.2.1", "example.com", NULL, 0));
    wlfile_free(wf);
}
END_TEST

/* WLFILE_MAX_ENTRIES entries in one file load; one more is an error at its line. */
START_TEST(entry_limit)
{
    size_t n = WLFILE_MAX_ENTRIES;
    char *text = malloc(2 * (n + 1) + 8), want[PATH_MAX + 128];
    struct wlfile_errors errs;
    const char *p;

    ck_assert_ptr_nonnull(text);
    memcpy(text, "#\n", 2); /* line 1 is a comment, which does not count */
    for (size_t i = 0; i <= n; i++)
        memcpy(text + 2 + 2 * i, "a\n", 2);
    p = write_file("limit-ok", text, 2 + 2 * n);
    struct wlfile *wf = load_ok(&p, 1, NULL, 0);
    ck_assert_uint_eq(wlfile_count(wf, WLFILE_CLIENTS), n);
    wlfile_free(wf);

    p = write_file("limit-bad", text, 2 + 2 * (n + 1));
    free(text);
    wlfile_errors_init(&errs);
    ck_assert_ptr_null(wlfile_load(&p, 1, NULL, 0, &errs));
    ck_assert_uint_eq(errs.count, 1);
    snprintf(want, sizeof want, "%s:%zu: more than %d entries in one file", p, n + 2, WLFILE_MAX_ENTRIES);
    ck_assert_str_eq(errs.msg[0], want);
    wlfile_errors_fini(&errs);
}
END_TEST

/* ---- hostile lookups ---- */

START_TEST(hostile_lookups)
{
    const char *c[] = {write_file("hc", "example.com\n/^zz-/\n192.0.2.0/24\n", (size_t)-1)};
    const char *r[] = {write_file("hr", "example.com\npostmaster@\n/^y/\n", (size_t)-1)};
    struct wlfile *wf = load_ok(c, 1, r, 1);
    char big[8192];

    /* A name longer than a DNS name never matches, even one ending in a listed domain. */
    memset(big, 'a', sizeof big);
    memcpy(big + WLFILE_MAX_NAME - 12, ".example.com", 13);
    ck_assert_uint_eq(strlen(big), WLFILE_MAX_NAME);
    ck_assert(wlfile_match_client(wf, "", big, NULL, 0));
    memset(big, 'a', sizeof big);
    memcpy(big + WLFILE_MAX_NAME + 1 - 12, ".example.com", 13);
    ck_assert(!wlfile_match_client(wf, "", big, NULL, 0));
    big[0] = 'x';
    ck_assert(!wlfile_match_client(wf, "", big, NULL, 0));
    /* Recipients: at and past WLFILE_MAX_RECIPIENT. */
    memset(big, 'a', sizeof big);
    memcpy(big + WLFILE_MAX_RECIPIENT - 12, "@example.com", 13);
    ck_assert(wlfile_match_recipient(wf, big, NULL, 0));
    memset(big, 'a', sizeof big);
    memcpy(big + WLFILE_MAX_RECIPIENT + 1 - 12, "@example.com", 13);
    ck_assert(!wlfile_match_recipient(wf, big, NULL, 0));
    big[sizeof big - 1] = '\0';
    ck_assert(!wlfile_match_recipient(wf, big, NULL, 0));
    /* Malformed or odd fields. */
    static const char *const addrs[] = {NULL, "", "192.0.2", "192.0.2.1/24", "[192.0.2.1]", "192.0.2.1\n",
                                        "::ffff:192.0.3.1", "2001:db8::g", "\xff\xfe"};
    for (size_t i = 0; i < N(addrs); i++)
        ck_assert_msg(!wlfile_match_client(wf, addrs[i], NULL, NULL, 0), "address %zu", i);
    static const char *const names[] = {".", "..", "com", ".com", "example.com..", "xample.com", "@example.com"};
    for (size_t i = 0; i < N(names); i++)
        ck_assert_msg(!wlfile_match_client(wf, "", names[i], NULL, 0), "name %s", names[i]);
    ck_assert(wlfile_match_client(wf, "", ".example.com", NULL, 0)); /* ends in ".example.com" */
    static const char *const rcpts[] = {NULL, "", "@", "@@", "a@", "postmaster", "a@com", "a@.com", "a@example.com."};
    for (size_t i = 0; i < N(rcpts); i++)
        ck_assert_msg(!wlfile_match_recipient(wf, rcpts[i], NULL, 0), "recipient %s", rcpts[i] ? rcpts[i] : "NULL");
    ck_assert(wlfile_match_recipient(wf, "postmaster@", NULL, 0));
    ck_assert(wlfile_match_recipient(wf, "postmaster+@@", NULL, 0) == false);
    wlfile_free(wf);
}
END_TEST

/* A catastrophic regex costs bounded time: the match limit stops it, and that is no match. */
START_TEST(regex_limits)
{
    const char *c[] = {write_file("evil", "/^(a+)+$/\n/^(?:a|aa)+b$/\n", (size_t)-1)};
    struct wlfile *wf = load_ok(c, 1, NULL, 0);
    char name[64];
    struct timespec t0, t1;

    memset(name, 'a', 40);
    strcpy(name + 40, "!");
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 10; i++)
        ck_assert(!wlfile_match_client(wf, "", name, NULL, 0));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    ck_assert_msg(s < 5.0, "10 lookups took %.2f s", s);
    name[40] = '\0';
    ck_assert(wlfile_match_client(wf, "", name, NULL, 0)); /* a real match still works */
    wlfile_free(wf);
}
END_TEST

/* ---- threads ---- */

struct thread_arg {
    const struct wlfile *wf;
    const char *clients;
    int failures;
};

static void *lookup_thread(void *p)
{
    struct thread_arg *a = p;
    char why[PATH_MAX + 32], want[PATH_MAX + 32];

    for (int round = 0; round < 300; round++) {
        for (size_t i = 0; i < N(debian_client_cases); i++) {
            const struct client_case *k = &debian_client_cases[i];
            bool m = wlfile_match_client(a->wf, k->address, k->name, why, sizeof why);
            if (m != (k->line != 0))
                a->failures++;
            if (m) {
                snprintf(want, sizeof want, "%s:%d", a->clients, k->line);
                if (strcmp(why, want) != 0)
                    a->failures++;
            }
        }
        for (size_t i = 0; i < N(debian_rcpt_cases); i++)
            if (wlfile_match_recipient(a->wf, debian_rcpt_cases[i].recipient, NULL, 0) !=
                (debian_rcpt_cases[i].line != 0))
                a->failures++;
    }
    return NULL;
}

START_TEST(concurrent_lookups)
{
    const char *c[] = {debian_clients}, *r[] = {debian_rcpts};
    struct wlfile *wf = load_ok(c, 1, r, 1);
    struct thread_arg args[4];
    pthread_t th[4];

    for (int i = 0; i < 4; i++) {
        args[i] = (struct thread_arg){wf, debian_clients, 0};
        ck_assert_int_eq(pthread_create(&th[i], NULL, lookup_thread, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
        REQUIRE(args[i].failures == 0, "thread %d: %d wrong answers", i, args[i].failures);
    }
    wlfile_free(wf);
}
END_TEST

static Suite *wlfile_suite(void)
{
    Suite *s = suite_create("wlfile");
    TCase *tc = tcase_create("load");

    tcase_add_checked_fixture(tc, dir_setup, dir_teardown);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, debian_files);
    tcase_add_test(tc, client_forms);
    tcase_add_test(tc, recipient_forms);
    tcase_add_test(tc, several_files);
    tcase_add_test(tc, empty_sets);
    tcase_add_test(tc, whole_space);
    tcase_add_loop_test(tc, error_table, 0, (int)N(error_cases));
    tcase_add_test(tc, errors_all_reported);
    tcase_add_test(tc, unreadable_file);
    tcase_add_test(tc, errors_capped);
    tcase_add_test(tc, line_length);
    tcase_add_test(tc, entry_limit);
    tcase_add_test(tc, hostile_lookups);
    tcase_add_test(tc, regex_limits);
    tcase_add_test(tc, concurrent_lookups);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(wlfile_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
