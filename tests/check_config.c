/* check_config - unit tests of server/config.c against real files in a mkdtemp directory: the
 * embedded defaults, overrides of every kind of value, a table of broken files each with the
 * exact FILE:LINE expected in its message, several errors reported at once, @include, printing
 * that loads back equal, the reload diff, and deploy/mxcached.conf (which must load cleanly,
 * hold the defaults and name every setting of params.h, so the example cannot drift from the
 * table). */
#include <check.h>
#include <errno.h>
#include <libconfig.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "config.h"
#include "mxc_err.h"

static char tmpdir[256]; /* made in main(), before the forked tests inherit it */

/* write_file - writes text to tmpdir/name (creating sub-directories one level deep) and puts the
 * path into path. */
static void write_file(const char *name, const char *text, char *path, size_t pathlen)
{
    FILE *fp;

    snprintf(path, pathlen, "%s/%s", tmpdir, name);
    char *slash = strrchr(path, '/');
    if (slash > path + strlen(tmpdir)) {
        *slash = '\0';
        mkdir(path, 0700);
        *slash = '/';
    }
    fp = fopen(path, "w");
    ck_assert_msg(fp != NULL, "cannot write %s: %s", path, strerror(errno));
    ck_assert_int_eq(fputs(text, fp) >= 0, 1);
    ck_assert_int_eq(fclose(fp), 0);
}

/* load_text - writes text to tmpdir/name and loads it. */
static struct config *load_text(const char *name, const char *text, struct config_errors *errs,
                                char *path, size_t pathlen)
{
    write_file(name, text, path, pathlen);
    return config_load(path, errs);
}

static void dump_errors(const struct config_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        fprintf(stderr, "  error %zu: %s\n", i, errs->msg[i]);
}

/* Field-by-field equality, generated from the table so that a new setting is compared too. */
static int list_eq(const struct config_list *a, const struct config_list *b)
{
    if (a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->items[i], b->items[i]) != 0)
            return 0;
    return 1;
}
#define EQ_BOOL(a, b) ((a) == (b))
#define EQ_INT(a, b) ((a) == (b))
#define EQ_SIZE(a, b) ((a) == (b))
#define EQ_DURATION(a, b) ((a) == (b))
#define EQ_ENUM(a, b) ((a) == (b))
#define EQ_STRING(a, b) (strcmp((a), (b)) == 0)
#define EQ_LIST(a, b) list_eq(&(a), &(b))
#define ASSERT_FIELD_EQ(g, n, t, f, d, mn, mx, ch, rl, h) \
    ck_assert_msg(EQ_##t(a->f, b->f), "%s.%s differs", g, n);
static void assert_config_eq(const struct config *a, const struct config *b)
{
    MXCACHED_PARAMS(ASSERT_FIELD_EQ)
}
#undef ASSERT_FIELD_EQ

#define COUNT_PARAM(g, n, t, f, d, mn, mx, ch, rl, h) +1
enum { NPARAMS = 0 MXCACHED_PARAMS(COUNT_PARAM) };
#undef COUNT_PARAM

#define PARAM_NAME(g, n, t, f, d, mn, mx, ch, rl, h) {g, n, h},
static const struct {
    const char *group, *name, *help;
} param_names[] = {MXCACHED_PARAMS(PARAM_NAME)};
#undef PARAM_NAME

/* ---- defaults ---- */

START_TEST(test_defaults)
{
    struct config *c = config_defaults();

    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_null(c->source);
    ck_assert_uint_eq(c->listen.n, 1);
    ck_assert_str_eq(c->listen.items[0], "tcp://127.0.0.1:10041");
    ck_assert_int_eq(c->workers, 0);
    ck_assert_uint_eq(c->max_request_size, 65536);
    ck_assert_int_eq(c->max_batch, 256);
    ck_assert_int_eq(c->socket_hwm, 100000);
    ck_assert_uint_eq(c->shutdown_timeout, 10000);
    ck_assert_int_eq(c->log_level, LOG_LEVEL_INFO);
    ck_assert_int_eq(c->log_target, LOG_TARGET_AUTO);
    ck_assert_int_eq(config_facility(c), LOG_MAIL);
    ck_assert_str_eq(c->store_path, "mxcache-data");
    ck_assert(c->store_sync);
    ck_assert_uint_eq(c->store_block_cache_size, 64ull << 20);
    ck_assert_uint_eq(c->store_write_buffer_size, 16ull << 20);
    ck_assert_int_eq(c->store_max_background_jobs, 2);
    ck_assert_int_eq(c->default_action, DEFAULT_ACTION_DUNNO);
    ck_assert_int_eq(c->default_code, 450);
    ck_assert_str_eq(c->default_status, "4.7.1");
    ck_assert_str_eq(c->default_text, "Service temporarily unavailable");
    ck_assert_int_eq(c->list_page_size, 100);
    ck_assert_int_eq(c->list_page_max, 1000);
    ck_assert_int_eq(c->flush_batch, 10000);
    ck_assert_str_eq(c->metrics_listen, "127.0.0.1:10042");
    ck_assert(c->greylist_enabled);
    ck_assert_uint_eq(c->greylist_delay, 300000);
    ck_assert_uint_eq(c->greylist_retry_window, 2 * 86400000ull);
    ck_assert_uint_eq(c->greylist_max_age, 35 * 86400000ull);
    ck_assert_int_eq(c->greylist_awl_passes, 5);
    ck_assert_uint_eq(c->greylist_awl_max_age, 35 * 86400000ull);
    ck_assert_int_eq(c->greylist_ipv4_prefix, 24);
    ck_assert_int_eq(c->greylist_ipv6_prefix, 64);
    ck_assert_int_eq(c->greylist_client_identity, 0); /* network */
    /* An empty LIST default ("") is the empty list, not a list of one empty string. */
    ck_assert_uint_eq(c->greylist_domains.n, 0);
    ck_assert_uint_eq(c->greylist_exempt_domains.n, 0);
    ck_assert_int_eq(c->greylist_reply_code, 450);
    ck_assert_str_eq(c->greylist_reply_status, "4.7.1");
    ck_assert_str_eq(c->greylist_reply_text, "Greylisted, please try again in {remaining} seconds");
    ck_assert(c->greylist_header);
    ck_assert(!c->greylist_hash_keys);
    ck_assert_str_eq(c->greylist_key_file, "");
    config_free(c);
    config_free(NULL);  /* NULL-safe */
}
END_TEST

/* An empty file and one of comments only give the defaults. */
START_TEST(test_empty_file)
{
    static const char *const texts[] = {"", "# nothing\n// nothing\n/* nothing */\n",
                                        "server = { };\nlog = { };\n"};
    struct config *def = config_defaults();

    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        struct config_errors errs = {0};
        char path[PATH_MAX], name[32];
        snprintf(name, sizeof name, "empty%zu.conf", i);
        struct config *c = load_text(name, texts[i], &errs, path, sizeof path);
        if (!c)
            dump_errors(&errs);
        ck_assert_ptr_nonnull(c);
        ck_assert_uint_eq(errs.n, 0);
        ck_assert_str_eq(c->source, path);
        assert_config_eq(c, def);
        config_free(c);
        config_errors_fini(&errs);
    }
    config_free(def);
}
END_TEST

/* ---- valid overrides ---- */

START_TEST(test_overrides)
{
    static const char text[] =
        "# every kind of value\n"
        "server = {\n"
        "  listen = [ \"tcp://0.0.0.0:10041\", \"ipc:///run/mxcache/mxcached.sock\" ];\n"
        "  workers = 8;\n"
        "  max_request_size = 1024;\n"          /* size: integer bytes */
        "  max_batch = 1;\n"                    /* the minimum */
        "  socket_hwm = 10000000;\n"            /* the maximum */
        "  shutdown_timeout = \"500ms\";\n"     /* duration with a unit */
        "};\n"
        "log: {\n"                              /* libconfig's other assignment */
        "  level = \"DEBUG\";\n"                /* enum, case-insensitive */
        "  target = \"stderr\";\n"
        "  facility = \"local3\";\n"
        "};\n"
        "store = {\n"
        "  path = \"/var/lib/mxcache/db\";\n"
        "  sync = false;\n"
        "  block_cache_size = \"64M\";\n"       /* size with a suffix */
        "  write_buffer_size = \"1G\";\n"       /* the maximum, as a string */
        "  max_background_jobs = 64;\n"
        "};\n"
        "policy = {\n"
        "  default_action = \"defer\";\n"
        "  default_code = 451;\n"
        "  default_status = \"4.3.0\";\n"
        "  default_text = \"Try \\\"later\\\"\";\n"
        "};\n"
        "greylist = {\n"
        "  enabled = false;\n"
        "  delay = 0;\n"                        /* the first attempt passes */
        "  retry_window = \"1m\";\n"           /* the minimum */
        "  max_age = \"365d\";\n"              /* the maximum, past 32 bits of ms */
        "  awl_passes = 0;\n"
        "  awl_max_age = \"1d\";\n"
        "  ipv4_prefix = 32;\n"
        "  ipv6_prefix = 48;\n"
        "  client_identity = \"domain\";\n"
        "  domains = [ \"Example.COM.\", \"example.net\" ];\n"
        "  exempt_domains = [ \"vip.example.com\" ];\n"
        "  reply_code = 451;\n"
        "  reply_status = \"4.2.0\";\n"
        "  reply_text = \"Wait {remaining}s\";\n"
        "  header = false;\n"
        "  hash_keys = true;\n"
        "  key_file = \"/etc/mxcache/greylist.key\";\n"
        "};\n"
        "admin = {\n"
        "  list_page_size = 1000;\n"            /* == list_page_max is fine */
        "  list_page_max = 1000;\n"
        "  flush_batch = 1;\n"
        "};\n"
        "metrics = {\n"
        "  listen = \"[::1]:9100\";\n"
        "};\n"
        "security = {\n"
        "  allow_insecure = true;\n"  /* tcp://0.0.0.0 without CURVE */
        "};\n";
    struct config_errors errs = {0};
    char path[PATH_MAX];
    struct config *c = load_text("overrides.conf", text, &errs, path, sizeof path);

    if (!c)
        dump_errors(&errs);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(c->listen.n, 2);
    ck_assert_str_eq(c->listen.items[0], "tcp://0.0.0.0:10041");
    ck_assert_str_eq(c->listen.items[1], "ipc:///run/mxcache/mxcached.sock");
    ck_assert_int_eq(c->workers, 8);
    ck_assert_uint_eq(c->max_request_size, 1024);
    ck_assert_int_eq(c->max_batch, 1);
    ck_assert_int_eq(c->socket_hwm, 10000000);
    ck_assert_uint_eq(c->shutdown_timeout, 500);
    ck_assert_int_eq(c->log_level, LOG_LEVEL_DEBUG);
    ck_assert_int_eq(c->log_target, LOG_TARGET_STDERR);
    ck_assert_int_eq(config_facility(c), LOG_LOCAL3);
    ck_assert_str_eq(c->store_path, "/var/lib/mxcache/db");
    ck_assert(!c->store_sync);
    ck_assert_uint_eq(c->store_block_cache_size, 64ull << 20);
    ck_assert_uint_eq(c->store_write_buffer_size, 1ull << 30);
    ck_assert_int_eq(c->store_max_background_jobs, 64);
    ck_assert_int_eq(c->default_action, DEFAULT_ACTION_DEFER);
    ck_assert_int_eq(c->default_code, 451);
    ck_assert_str_eq(c->default_status, "4.3.0");
    ck_assert_str_eq(c->default_text, "Try \"later\"");
    ck_assert_int_eq(c->list_page_size, 1000);
    ck_assert_int_eq(c->flush_batch, 1);
    ck_assert(!c->greylist_enabled);
    ck_assert_uint_eq(c->greylist_delay, 0);
    ck_assert_uint_eq(c->greylist_retry_window, 60000);
    ck_assert_uint_eq(c->greylist_max_age, 365 * 86400000ull);
    ck_assert_int_eq(c->greylist_awl_passes, 0);
    ck_assert_uint_eq(c->greylist_awl_max_age, 86400000);
    ck_assert_int_eq(c->greylist_ipv4_prefix, 32);
    ck_assert_int_eq(c->greylist_ipv6_prefix, 48);
    ck_assert_int_eq(c->greylist_client_identity, 1); /* domain */
    ck_assert_uint_eq(c->greylist_domains.n, 2);
    ck_assert_str_eq(c->greylist_domains.items[0], "Example.COM.");
    ck_assert_uint_eq(c->greylist_exempt_domains.n, 1);
    ck_assert_int_eq(c->greylist_reply_code, 451);
    ck_assert_str_eq(c->greylist_reply_status, "4.2.0");
    ck_assert_str_eq(c->greylist_reply_text, "Wait {remaining}s");
    ck_assert(!c->greylist_header);
    ck_assert(c->greylist_hash_keys);
    ck_assert_str_eq(c->greylist_key_file, "/etc/mxcache/greylist.key");
    ck_assert_str_eq(c->metrics_listen, "[::1]:9100");
    config_free(c);
    config_errors_fini(&errs);

    /* "" turns the endpoint off; port 0 (any free port) is an address too */
    static const char *const good[] = {"", "0.0.0.0:0", "127.0.0.1:10042", "[::]:9100"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char t[128], name[64];
        snprintf(t, sizeof t, "metrics = { listen = \"%s\"; };\n", good[i]);
        snprintf(name, sizeof name, "metrics%zu.conf", i);
        struct config_errors e = {0};
        c = load_text(name, t, &e, path, sizeof path);
        if (!c)
            dump_errors(&e);
        ck_assert_ptr_nonnull(c);
        ck_assert_str_eq(c->metrics_listen, good[i]);
        config_free(c);
        config_errors_fini(&e);
    }
}
END_TEST

/* Durations and sizes in each spelling the file allows. */
static const struct {
    const char *setting; /* a line inside the group */
    const char *group;
    uint64_t value;
    int is_duration;
} spellings[] = {
    {"shutdown_timeout = \"500ms\";", "server", 500, 1},
    {"shutdown_timeout = 42;", "server", 42000, 1},      /* an integer counts seconds */
    {"shutdown_timeout = \"2m\";", "server", 120000, 1},
    {"shutdown_timeout = \"10m\";", "server", 600000, 1}, /* the maximum */
    {"shutdown_timeout = 0;", "server", 0, 1},
    {"shutdown_timeout = 600L;", "server", 600000, 1},
    {"block_cache_size = \"64M\";", "store", 64ull << 20, 0},
    {"block_cache_size = \"64MB\";", "store", 64ull << 20, 0},
    {"block_cache_size = \"1T\";", "store", 1ull << 40, 0}, /* the maximum */
    {"block_cache_size = 1048576;", "store", 1ull << 20, 0},
    {"block_cache_size = 2147483648L;", "store", 2ull << 30, 0},
    {"block_cache_size = \"3221225472\";", "store", 3ull << 30, 0},
};

START_TEST(test_spellings)
{
    struct config_errors errs = {0};
    char path[PATH_MAX], name[32], text[256];

    snprintf(name, sizeof name, "spelling%d.conf", _i);
    snprintf(text, sizeof text, "%s = {\n  %s\n};\n", spellings[_i].group, spellings[_i].setting);
    struct config *c = load_text(name, text, &errs, path, sizeof path);
    if (!c)
        dump_errors(&errs);
    ck_assert_ptr_nonnull(c);
    uint64_t got = spellings[_i].is_duration ? c->shutdown_timeout : c->store_block_cache_size;
    ck_assert_msg(got == spellings[_i].value, "%s: %llu, expected %llu", spellings[_i].setting,
                  (unsigned long long)got, (unsigned long long)spellings[_i].value);
    config_free(c);
    config_errors_fini(&errs);
}
END_TEST

/* Every choice of every enum maps to the index config.h names, and facilities to syslog's. */
START_TEST(test_enum_choices)
{
    static const struct {
        const char *line;
        int index;
        int facility; /* -1: not a facility */
    } cases[] = {
        {"log = { level = \"debug\"; };", LOG_LEVEL_DEBUG, -1},
        {"log = { level = \"info\"; };", LOG_LEVEL_INFO, -1},
        {"log = { level = \"notice\"; };", LOG_LEVEL_NOTICE, -1},
        {"log = { level = \"warning\"; };", LOG_LEVEL_WARNING, -1},
        {"log = { level = \"err\"; };", LOG_LEVEL_ERR, -1},
        {"log = { target = \"auto\"; };", LOG_TARGET_AUTO, -1},
        {"log = { target = \"stderr\"; };", LOG_TARGET_STDERR, -1},
        {"log = { target = \"syslog\"; };", LOG_TARGET_SYSLOG, -1},
        {"policy = { default_action = \"dunno\"; };", DEFAULT_ACTION_DUNNO, -1},
        {"policy = { default_action = \"defer\"; };", DEFAULT_ACTION_DEFER, -1},
        {"policy = { default_action = \"reject\"; default_code = 550;\n"
         "  default_status = \"5.7.1\"; };",
         DEFAULT_ACTION_REJECT, -1},
        {"log = { facility = \"mail\"; };", 0, LOG_MAIL},
        {"log = { facility = \"daemon\"; };", 1, LOG_DAEMON},
        {"log = { facility = \"local0\"; };", 2, LOG_LOCAL0},
        {"log = { facility = \"local1\"; };", 3, LOG_LOCAL1},
        {"log = { facility = \"local2\"; };", 4, LOG_LOCAL2},
        {"log = { facility = \"local3\"; };", 5, LOG_LOCAL3},
        {"log = { facility = \"local4\"; };", 6, LOG_LOCAL4},
        {"log = { facility = \"local5\"; };", 7, LOG_LOCAL5},
        {"log = { facility = \"local6\"; };", 8, LOG_LOCAL6},
        {"log = { facility = \"Local7\"; };", 9, LOG_LOCAL7},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct config_errors errs = {0};
        char path[PATH_MAX], name[32];
        snprintf(name, sizeof name, "enum%zu.conf", i);
        struct config *c = load_text(name, cases[i].line, &errs, path, sizeof path);
        if (!c)
            dump_errors(&errs);
        ck_assert_ptr_nonnull(c);
        int got;
        if (strstr(cases[i].line, "level"))
            got = c->log_level;
        else if (strstr(cases[i].line, "target"))
            got = c->log_target;
        else if (strstr(cases[i].line, "facility"))
            got = c->log_facility;
        else
            got = c->default_action;
        ck_assert_msg(got == cases[i].index, "%s: index %d", cases[i].line, got);
        if (cases[i].facility >= 0)
            ck_assert_int_eq(config_facility(c), cases[i].facility);
        config_free(c);
        config_errors_fini(&errs);
    }
}
END_TEST

/* ---- broken files: one error each, at an exact line ---- */

static const struct bad_case {
    const char *what;
    const char *text;
    int line;          /* 0: the message has no line ("FILE: ...") */
    const char *want;  /* a part of the message after "FILE:LINE: " */
} bad_cases[] = {
    {"syntax error", "server = {\n  workers = 4;\n  max_batch = ;\n};\n", 3, "syntax error"},
    {"two equals signs", "server = {\n  workers = 4;\n  max_batch = = 5;\n};\n", 3,
     "syntax error"},
    {"duplicate setting", "server = {\n  workers = 4;\n  workers = 5;\n};\n", 3,
     "duplicate setting name"},
    {"unknown group", "# comment\n\nsrever = {\n  workers = 4;\n};\n", 3,
     "unknown group srever (groups: server, log, store, policy, greylist, whitelist, verify, admin, metrics, security)"},
    {"metrics address without port", "log = {};\nmetrics = {\n  listen = \"127.0.0.1\";\n};\n", 3,
     "metrics.listen: bad address \"127.0.0.1\": "},
    {"metrics address as a host name", "metrics = {\n  listen = \"localhost:10042\";\n};\n", 2,
     "metrics.listen: bad address \"localhost:10042\": "},
    {"metrics port out of range", "metrics = { listen = \"[::1]:70000\"; };\n", 1,
     "metrics.listen: bad address \"[::1]:70000\": "},
    {"metrics address as a number", "metrics = { listen = 10042; };\n", 1,
     "metrics.listen: wrong type"},
    {"unknown setting", "server = {\n  workers = 4;\n  wrokers = 5;\n};\n", 3,
     "server.wrokers: unknown setting (settings of server: listen, workers,"},
    {"nested group", "store = {\n  rocksdb = {\n    x = 1;\n  };\n};\n", 2,
     "store.rocksdb: unknown setting"},
    {"setting outside a group", "server = {\n};\nworkers = 4;\n", 3,
     "workers: setting outside any group; write it inside server = { ... }"},
    {"unknown setting outside a group", "\nfoo = \"bar\";\n", 2,
     "foo: unknown setting outside any group"},
    {"group given as a value", "\n\nserver = 5;\n", 3,
     "server: wrong type: expected a group, server = { ... }; got an integer"},
    {"string for an integer", "server = {\n  workers = \"4\";\n};\n", 2,
     "server.workers: wrong type: expected an integer; got a string"},
    {"float for an integer", "server = {\n\n  workers = 1.5;\n};\n", 3,
     "server.workers: wrong type: expected an integer; got a floating-point number"},
    {"integer for a bool", "store = {\n  sync = 1;\n};\n", 2,
     "store.sync: wrong type: expected true or false; got an integer"},
    {"bool for a string", "store = {\n  path = true;\n};\n", 2,
     "store.path: wrong type: expected a string; got a boolean"},
    {"list of integers", "server = {\n  listen = [ 1, 2 ];\n};\n", 2,
     "server.listen: wrong type: expected a list of strings, such as [ \"a\", \"b\" ]; got a "
     "list of integers"},
    {"string for a list", "server = {\n  listen = \"tcp://127.0.0.1:1\";\n};\n", 2,
     "server.listen: wrong type: expected a list of strings"},
    {"integer for an enum", "log = {\n  level = 3;\n};\n", 2,
     "log.level: wrong type: expected a string, one of debug, info, notice, warning, err; got "
     "an integer"},
    {"bool for a duration", "server = {\n  shutdown_timeout = true;\n};\n", 2,
     "server.shutdown_timeout: wrong type: expected a duration"},
    {"int out of range", "server = {\n  workers = 300;\n};\n", 2,
     "server.workers: 300 is out of range: allowed 0 to 256"},
    {"int below range", "store = {\n  max_background_jobs = 0;\n};\n", 2,
     "store.max_background_jobs: 0 is out of range: allowed 1 to 64"},
    {"negative int", "admin = {\n  flush_batch = -1;\n};\n", 2,
     "admin.flush_batch: -1 is out of range: allowed 1 to 1000000"},
    {"duration out of range", "server = {\n  shutdown_timeout = \"3h\";\n};\n", 2,
     "server.shutdown_timeout: 3h is out of range: allowed 0s to 10m"},
    {"duration seconds out of range", "server = {\n  shutdown_timeout = 601;\n};\n", 2,
     "server.shutdown_timeout: 601s is out of range: allowed 0s to 10m"},
    {"negative duration", "server = {\n  shutdown_timeout = -1;\n};\n", 2,
     "server.shutdown_timeout: -1 seconds is out of range: allowed 0s to 10m"},
    {"size out of range", "server = {\n  max_request_size = \"100\";\n};\n", 2,
     "server.max_request_size: 100 bytes is out of range: allowed 256 bytes to 16M (16777216 "
     "bytes)"},
    {"size above range", "store = {\n  block_cache_size = \"2T\";\n};\n", 2,
     "store.block_cache_size: 2T (2199023255552 bytes) is out of range: allowed 1M (1048576 "
     "bytes) to 1T (1099511627776 bytes)"},
    {"bad enum", "log = {\n  level = \"verbose\";\n};\n", 2,
     "log.level: unknown value \"verbose\": choices are debug, info, notice, warning, err"},
    {"bad duration", "server = {\n  shutdown_timeout = \"5 minutes\";\n};\n", 2,
     "server.shutdown_timeout: bad duration \"5 minutes\": expected a number with an optional "
     "unit"},
    {"negative duration string", "server = {\n  shutdown_timeout = \"-5s\";\n};\n", 2,
     "server.shutdown_timeout: bad duration \"-5s\""},
    {"bad size", "store = {\n  block_cache_size = \"64Q\";\n};\n", 2,
     "store.block_cache_size: bad size \"64Q\": expected a number of bytes with an optional "
     "suffix K, M, G or T"},
    {"empty listen", "server = {\n  listen = [ ];\n};\n", 2,
     "server.listen: empty: give at least one endpoint"},
    {"bad endpoint scheme",
     "server = {\n  listen = [ \"tcp://127.0.0.1:1\", \"udp://x:1\" ];\n};\n", 2, "server.listen: bad endpoint \"udp://x:1\": expected tcp://HOST:PORT or ipc://PATH"},
    {"endpoint without address", "server = {\n  listen = [ \"ipc://\" ];\n};\n", 2,
     "server.listen: bad endpoint \"ipc://\""},
    {"control character", "policy = {\n  default_text = \"a\\nb\";\n};\n", 2,
     "policy.default_text: \"a\\x0ab\" contains control characters"},
    {"empty store path", "store = {\n  path = \"\";\n};\n", 2, "store.path: empty"},
    {"routes not a list", "verify = {\n  routes = 5;\n};\n", 2,
     "verify.routes: wrong type: expected a list of groups"},
    {"route not a group", "verify = {\n  routes = (\n    \"x\"\n  );\n};\n", 2,
     "verify.routes[0]: wrong type: expected a group"},
    {"unknown route setting",
     "verify = {\n  routes = (\n    { domains = [ \"a.example\" ]; hosts = [ \"h.example\" ];\n"
     "      bogus = 1; }\n  );\n};\n", 4,
     "verify.routes[0].bogus: unknown setting (settings of a route: domains, hosts, helo,"},
    {"route without hosts", "verify = {\n  routes = (\n\n    { domains = [ \"a.example\" ]; }\n  );\n};\n",
     4, "verify.routes[0].hosts: empty: give the backend hosts"},
    {"route without domains", "verify = {\n  routes = ( { hosts = [ \"h.example\" ]; } );\n};\n", 2,
     "verify.routes[0].domains: empty"},
    {"route host with a bad port",
     "verify = {\n  routes = (\n    { domains = [ \"a.example\" ]; hosts = [ \"h.example:0\" ]; }\n  );\n};\n",
     3, "verify.routes[0].hosts: bad host \"h.example:0\": expected host:port"},
    {"route host bracketed but not IPv6",
     "verify = {\n  routes = (\n    { domains = [ \"a.example\" ]; hosts = [ \"[h.example]:25\" ]; }\n  );\n};\n",
     3, "verify.routes[0].hosts: bad host \"[h.example]:25\""},
    {"route domain in two routes",
     "verify = {\n  routes = (\n    { domains = [ \"a.example\" ]; hosts = [ \"h.example\" ]; },\n"
     "    { domains = [ \"A.Example\" ]; hosts = [ \"h.example\" ]; }\n  );\n};\n",
     4, "verify.routes[1].domains: \"a.example\" is also in verify.routes[0]"},
    {"route mail_from not an address",
     "verify = {\n  routes = (\n    { domains = [ \"a.example\" ]; hosts = [ \"h.example\" ];\n"
     "      mail_from = \"nobody\"; }\n  );\n};\n",
     3, "verify.routes[0].mail_from: \"nobody\" is not a mail address"},
    {"route timeout out of range",
     "verify = {\n  routes = (\n    { domains = [ \"a.example\" ]; hosts = [ \"h.example\" ];\n"
     "      connect_timeout = \"1h\"; }\n  );\n};\n",
     4, "verify.routes[0].connect_timeout: 1h is out of range: allowed 100ms to 5m"},
    {"defer with a 5xx code",
     "policy = {\n  default_action = \"defer\";\n  default_code = 550;\n};\n", 3,
     "policy.default_action defer needs a 4xx policy.default_code, not 550"},
    {"defer with a 5.x status",
     "policy = {\n  default_action = \"defer\";\n  default_status = \"5.7.1\";\n};\n", 3,
     "policy.default_action defer needs a policy.default_status of class 4 (\"4.x.y\"), not "
     "\"5.7.1\""},
    {"reject with a 4.x status",
     "policy = {\n  default_action = \"reject\";\n  default_code = 550;\n"
     "  default_status = \"4.7.1\";\n};\n",
     4, "policy.default_action reject needs a policy.default_status of class 5 (\"5.x.y\"), not "
        "\"4.7.1\""},
    {"reject with the default 4.x status: at the action's line",
     "policy = {\n\n  default_action = \"reject\";\n  default_code = 554;\n};\n", 3,
     "policy.default_action reject needs a policy.default_status of class 5"},
    {"reject with the default 4xx code: at the action's line",
     "policy = {\n  default_status = \"5.7.1\";\n  default_action = \"reject\";\n};\n", 3,
     "policy.default_action reject needs a 5xx policy.default_code, not 450"},
    {"status not D.DDD.DDD", "policy = {\n  default_status = \"4.7\";\n};\n", 2,
     "policy.default_status: \"4.7\" is not an enhanced status code"},
    {"status with 4 digits", "policy = {\n  default_status = \"4.7.1000\";\n};\n", 2,
     "policy.default_status: \"4.7.1000\" is not an enhanced status code"},
    {"status with junk", "policy = {\n  default_status = \"4.7.1 \";\n};\n", 2,
     "is not an enhanced status code"},
    {"page size above max", "admin = {\n  list_page_max = 50;\n  list_page_size = 60;\n};\n", 3,
     "admin.list_page_size 60 is larger than admin.list_page_max 50"},
    {"page max below the default size: at the max's line", "admin = {\n  list_page_max = 50;\n};\n",
     2, "admin.list_page_size 100 is larger than admin.list_page_max 50"},
    {"greylist status of class 5", "greylist = {\n  reply_status = \"5.7.1\";\n};\n", 2,
     "greylist.reply_status: \"5.7.1\" is not an enhanced status code of class 4"},
    {"greylist status malformed", "greylist = {\n  reply_status = \"4.7\";\n};\n", 2,
     "greylist.reply_status: \"4.7\" is not an enhanced status code of class 4"},
    {"greylist code 5xx", "greylist = {\n  reply_code = 550;\n};\n", 2,
     "greylist.reply_code: 550 is out of range: allowed 400 to 499"},
    {"greylist delay as long as the window",
     "greylist = {\n  retry_window = \"1h\";\n  delay = \"1h\";\n};\n", 3,
     "greylist.delay 1h is not shorter than greylist.retry_window 1h: no retry could pass"},
    {"greylist window below the default delay: at the window's line",
     "greylist = {\n  retry_window = \"2m\";\n};\n", 2,
     "greylist.delay 5m is not shorter than greylist.retry_window 2m"},
    {"greylist delay above its bound", "greylist = {\n  delay = \"2d\";\n};\n", 2,
     "greylist.delay: 2d is out of range: allowed 0s to 1d"},
    {"greylist hash_keys without key_file", "greylist = {\n  hash_keys = true;\n};\n", 2,
     "greylist.hash_keys needs greylist.key_file"},
    {"greylist domain list with a non-domain",
     "greylist = {\n  domains = [ \"example.com\", \"bad_domain\" ];\n};\n", 2,
     "greylist.domains: \"bad_domain\" is not a domain name"},
    {"greylist exempt domain with an address",
     "greylist = {\n  exempt_domains = [ \"a@example.com\" ];\n};\n", 2,
     "greylist.exempt_domains: \"a@example.com\" is not a domain name"},
    {"greylist ipv6 prefix out of range", "greylist = {\n  ipv6_prefix = 8;\n};\n", 2,
     "greylist.ipv6_prefix: 8 is out of range: allowed 16 to 128"},
    {"greylist identity unknown", "greylist = {\n  client_identity = \"helo\";\n};\n", 2,
     "greylist.client_identity: unknown value \"helo\": choices are network, domain"},
    {"greylist reply text too long",
     "greylist = {\n  reply_text = \""
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "\";\n};\n",
     2, "greylist.reply_text: 460 bytes; at most 400 fit in an SMTP reply line"},
    {"plain ZeroMQ on every interface", "server = {\n  listen = [ \"tcp://0.0.0.0:10041\" ];\n};\n", 2,
     "server.listen: \"tcp://0.0.0.0:10041\" is reachable from other hosts but security.key_file is "
     "empty: set up CURVE keys (mxcachectl keygen), or set security.allow_insecure = true"},
    {"plain ZeroMQ on a LAN address, loopback beside it",
     "server = {\n  listen = [ \"tcp://127.0.0.1:1\", \"ipc:///tmp/x\", \"tcp://192.0.2.1:1\",\n"
     "    \"tcp://[::1]:1\", \"tcp://localhost:1\" ];\n};\n",
     2, "server.listen: \"tcp://192.0.2.1:1\" is reachable from other hosts"},
    {"plain ZeroMQ on a name", "server = {\n  listen = [ \"tcp://mx.example:1\" ];\n};\n", 2,
     "server.listen: \"tcp://mx.example:1\" is reachable from other hosts"},
    {"plain ZeroMQ on 127.0.0.1.example", "server = {\n  listen = [ \"tcp://127.0.0.1.example:1\" ];\n};\n", 2,
     "server.listen: \"tcp://127.0.0.1.example:1\" is reachable from other hosts"},
    {"client keys without the service's key pair",
     "security = {\n  client_keys = [ \"/etc/mxcache/keys/mx1.pub\" ];\n};\n", 2,
     "security.client_keys and admin_keys need security.key_file: the service's own key pair"},
    {"admin keys without the service's key pair",
     "security = {\n\n  admin_keys = [ \"/etc/mxcache/keys/ops.pub\" ];\n};\n", 3,
     "security.client_keys and admin_keys need security.key_file"},
    {"a key pair and no client key", "security = {\n  key_file = \"/etc/mxcache/keys/s.key\";\n};\n", 2,
     "security.key_file is set but neither security.client_keys nor admin_keys lists a key"},
    {"allow: host bits below the prefix", "security = {\n  allow = [ \"10.0.0.1/8\" ];\n};\n", 2,
     "security.allow: \"10.0.0.1/8\": host bits set below the prefix length"},
    {"allow: not an address", "security = {\n  allow = [ \"mx1.example\" ];\n};\n", 2,
     "security.allow: \"mx1.example\": not an IPv4 or IPv6 address"},
    {"allow: IPv4 prefix above 32", "security = {\n  allow = [ \"192.0.2.0/33\" ];\n};\n", 2,
     "security.allow: \"192.0.2.0/33\": bad prefix length (0 to 32)"},
    {"allow: IPv6 prefix with junk", "security = {\n  allow = [ \"2001:db8::/32x\" ];\n};\n", 2,
     "security.allow: \"2001:db8::/32x\": bad prefix length (0 to 128)"},
};

START_TEST(test_bad)
{
    const struct bad_case *b = &bad_cases[_i];
    struct config_errors errs = {0};
    char path[PATH_MAX], name[32], prefix[PATH_MAX + 256];
    struct config *c;

    snprintf(name, sizeof name, "bad%d.conf", _i);
    c = load_text(name, b->text, &errs, path, sizeof path);
    if (c || errs.n != 1)
        dump_errors(&errs);
    ck_assert_msg(c == NULL, "%s: loaded", b->what);
    ck_assert_msg(errs.n == 1, "%s: %zu errors, expected 1", b->what, errs.n);
    if (b->line)
        snprintf(prefix, sizeof prefix, "%s:%d: ", path, b->line);
    else
        snprintf(prefix, sizeof prefix, "%s: ", path);
    ck_assert_msg(strncmp(errs.msg[0], prefix, strlen(prefix)) == 0,
                  "%s: \"%s\" does not start with \"%s\"", b->what, errs.msg[0], prefix);
    ck_assert_msg(strstr(errs.msg[0] + strlen(prefix), b->want) != NULL,
                  "%s: \"%s\" does not say \"%s\"", b->what, errs.msg[0], b->want);
    config_errors_fini(&errs);
    ck_assert_uint_eq(errs.n, 0);
    ck_assert_ptr_null(errs.msg);
}
END_TEST

/* All errors of a file in one run, in file order, cross-checks last. */
START_TEST(test_many_errors)
{
    static const char text[] =
        "server = {\n"                   /* 1 */
        "  workers = 1000;\n"            /* 2: out of range */
        "  bogus = 1;\n"                 /* 3: unknown setting */
        "  max_batch = 10;\n"            /* 4: fine */
        "};\n"                           /* 5 */
        "log = {\n"                      /* 6 */
        "  level = \"loud\";\n"          /* 7: bad enum */
        "};\n"                           /* 8 */
        "nonsense = { };\n"              /* 9: unknown group */
        "stray = 1;\n"                   /* 10: outside any group */
        "store = {\n"                    /* 11 */
        "  block_cache_size = \"1X\";\n" /* 12: bad size */
        "};\n"                           /* 13 */
        "admin = {\n"                    /* 14 */
        "  list_page_size = 500;\n"      /* 15: larger than the max */
        "  list_page_max = 400;\n"       /* 16 */
        "};\n";
    static const struct {
        int line;
        const char *want;
    } expect[] = {
        {2, "server.workers: 1000 is out of range"},
        {3, "server.bogus: unknown setting"},
        {7, "log.level: unknown value \"loud\""},
        {9, "unknown group nonsense"},
        {10, "stray: unknown setting outside any group"},
        {12, "store.block_cache_size: bad size \"1X\""},
        {15, "admin.list_page_size 500 is larger than admin.list_page_max 400"},
    };
    struct config_errors errs = {0};
    char path[PATH_MAX], prefix[PATH_MAX + 256];
    struct config *c = load_text("many.conf", text, &errs, path, sizeof path);

    ck_assert_ptr_null(c);
    if (errs.n != sizeof expect / sizeof expect[0])
        dump_errors(&errs);
    ck_assert_uint_eq(errs.n, sizeof expect / sizeof expect[0]);
    for (size_t i = 0; i < errs.n; i++) {
        snprintf(prefix, sizeof prefix, "%s:%d: ", path, expect[i].line);
        ck_assert_msg(strncmp(errs.msg[i], prefix, strlen(prefix)) == 0,
                      "\"%s\" does not start with \"%s\"", errs.msg[i], prefix);
        ck_assert_msg(strstr(errs.msg[i], expect[i].want) != NULL, "\"%s\" does not say \"%s\"",
                      errs.msg[i], expect[i].want);
    }
    config_errors_fini(&errs);
}
END_TEST

/* A refused value does not also trip the cross-checks that involve it. */
START_TEST(test_no_followup_errors)
{
    static const char text[] = "policy = {\n"
                               "  default_action = \"defer\";\n"
                               "  default_code = 700;\n" /* out of range: the only error */
                               "};\n";
    struct config_errors errs = {0};
    char path[PATH_MAX];

    ck_assert_ptr_null(load_text("followup.conf", text, &errs, path, sizeof path));
    if (errs.n != 1)
        dump_errors(&errs);
    ck_assert_uint_eq(errs.n, 1);
    ck_assert_ptr_nonnull(strstr(errs.msg[0], ":3: policy.default_code: 700 is out of range"));
    config_errors_fini(&errs);
}
END_TEST

START_TEST(test_missing_file)
{
    struct config_errors errs = {0};
    char path[PATH_MAX], want[PATH_MAX + 256];

    snprintf(path, sizeof path, "%s/does-not-exist.conf", tmpdir);
    ck_assert_ptr_null(config_load(path, &errs));
    ck_assert_uint_eq(errs.n, 1);
    snprintf(want, sizeof want, "%s: cannot read: %s", path, strerror(ENOENT));
    ck_assert_str_eq(errs.msg[0], want);
    config_errors_fini(&errs);

    /* a directory is not a config file either */
    ck_assert_ptr_null(config_load(tmpdir, &errs));
    ck_assert_uint_eq(errs.n, 1);
    snprintf(want, sizeof want, "%s: cannot read: %s", tmpdir, strerror(EISDIR));
    ck_assert_str_eq(errs.msg[0], want);
    config_errors_fini(&errs);

    /* errs may be NULL: the load still fails */
    ck_assert_ptr_null(config_load(path, NULL));
}
END_TEST

/* @include is relative to the including file's directory, whatever the working directory. */
START_TEST(test_include)
{
    struct config_errors errs = {0};
    char path[PATH_MAX], inc[PATH_MAX], want[PATH_MAX + 256];
    struct config *c;

    write_file("incdir/part.conf", "workers = 7;\n", inc, sizeof inc);
    write_file("incdir/main.conf", "server = {\n  @include \"part.conf\"\n  max_batch = 9;\n};\n",
               path, sizeof path);
    ck_assert_int_eq(chdir("/"), 0);
    c = config_load(path, &errs);
    if (!c)
        dump_errors(&errs);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(c->workers, 7);
    ck_assert_int_eq(c->max_batch, 9);
    config_free(c);

    /* a bare file name: relative to the working directory, and so are its includes */
    snprintf(want, sizeof want, "%s/incdir", tmpdir);
    ck_assert_int_eq(chdir(want), 0);
    c = config_load("main.conf", &errs);
    if (!c)
        dump_errors(&errs);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(c->workers, 7);
    ck_assert_str_eq(c->source, "main.conf");
    config_free(c);
    ck_assert_int_eq(chdir("/"), 0);

    /* an error inside the included file names that file and its line */
    write_file("incdir/badpart.conf", "# included\n\nworkers = 999;\n", inc, sizeof inc);
    write_file("incdir/main2.conf", "server = {\n  @include \"badpart.conf\"\n};\n", path,
               sizeof path);
    ck_assert_ptr_null(config_load(path, &errs));
    if (errs.n != 1)
        dump_errors(&errs);
    ck_assert_uint_eq(errs.n, 1);
    snprintf(want, sizeof want, "%s:3: server.workers: 999 is out of range", inc);
    ck_assert_msg(strncmp(errs.msg[0], want, strlen(want)) == 0, "\"%s\" is not \"%s...\"",
                  errs.msg[0], want);
    config_errors_fini(&errs);

    /* so does a syntax error inside it */
    write_file("incdir/synpart.conf", "workers = 1;\nmax_batch = = 2;\n", inc, sizeof inc);
    write_file("incdir/main3.conf", "server = {\n  @include \"synpart.conf\"\n};\n", path,
               sizeof path);
    ck_assert_ptr_null(config_load(path, &errs));
    ck_assert_uint_eq(errs.n, 1);
    snprintf(want, sizeof want, "%s:2: ", inc);
    ck_assert_msg(strncmp(errs.msg[0], want, strlen(want)) == 0, "\"%s\" is not \"%s...\"",
                  errs.msg[0], want);
    config_errors_fini(&errs);

    /* and a missing one is reported at the @include line */
    write_file("incdir/main4.conf", "server = {\n  workers = 1;\n  @include \"nope.conf\"\n};\n",
               path, sizeof path);
    ck_assert_ptr_null(config_load(path, &errs));
    ck_assert_uint_eq(errs.n, 1);
    snprintf(want, sizeof want, "%s:3: cannot open include file", path);
    ck_assert_str_eq(errs.msg[0], want);
    config_errors_fini(&errs);
}
END_TEST

/* An @include of a directory (or a FIFO, a device) is refused with its file and line: libconfig
 * 1.5 would open it, fail to read it and call exit(2) from its scanner, ending the daemon, on a
 * SIGHUP reload too (fuzz_config found it: tests/fuzz/regressions/fuzz_config/include_directory).
 * The same text in a comment or a string is no @include and does not count. */
START_TEST(test_include_not_a_file)
{
    struct config_errors errs = {0};
    char path[PATH_MAX], inc[PATH_MAX], want[PATH_MAX + 256];
    struct config *c;

    write_file("incdir2/part.conf", "workers = 3;\n", inc, sizeof inc);
    ck_assert_ptr_null(load_text("incdir2/dir.conf", "server = {\n  @include \".\"\n};\n", &errs,
                                 path, sizeof path));
    ck_assert_uint_eq(errs.n, 1);
    snprintf(want, sizeof want, "%s:2: @include \".\": not a regular file", path);
    ck_assert_str_eq(errs.msg[0], want);
    config_errors_fini(&errs);

    /* nested: the included file names the directory */
    write_file("incdir2/nested.conf", "# nested\n@include \"..\"\n", inc, sizeof inc);
    ck_assert_ptr_null(load_text("incdir2/top.conf", "@include \"nested.conf\"\n", &errs, path,
                                 sizeof path));
    ck_assert_uint_eq(errs.n, 1);
    snprintf(want, sizeof want, "%s:2: @include \"..\": not a regular file", inc);
    ck_assert_str_eq(errs.msg[0], want);
    config_errors_fini(&errs);

    /* in a comment or a string it is nothing; a regular file still works */
    c = load_text("incdir2/ok.conf",
                  "# @include \".\"\n/*\n@include \".\"\n*/\nlog = { level = \"info\n"
                  "@include \\\".\\\"\"; };\n",
                  &errs, path, sizeof path);
    ck_assert_ptr_null(c); /* the level is no level, but that is the only error */
    ck_assert_uint_eq(errs.n, 1);
    ck_assert_msg(strstr(errs.msg[0], "log.level") != NULL, "%s", errs.msg[0]);
    config_errors_fini(&errs);
    c = load_text("incdir2/good.conf", "server = {\n  @include \"part.conf\"\n};\n", &errs, path,
                  sizeof path);
    if (!c)
        dump_errors(&errs);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(c->workers, 3);
    config_free(c);
}
END_TEST

/* ---- verify.routes ---- */

static const char routes_text[] =
    "verify = {\n"
    "  routes = (\n"
    "    { domains = [ \"Example.COM\", \".example.com\" ];\n"
    "      hosts = [ \"127.0.0.1:2525\", \"[::1]:25\", \"backup.example.net\" ];\n"
    "      helo = \"mx1.example.com\"; },\n"
    "    { domains = [ \"a.example.com\", \"example.org\" ]; hosts = [ \"10.0.0.5\" ];\n"
    "      mail_from = \"verify@example.org\"; max_sessions = 2; session_idle = \"0s\"; }\n"
    "  );\n"
    "};\n";

/* Routes load with their defaults and canonical domains, and pick the right route. */
START_TEST(test_routes)
{
    struct config_errors errs = {0};
    char path[PATH_MAX], name[300];
    unsigned port;
    struct config *c = load_text("routes.conf", routes_text, &errs, path, sizeof path);

    dump_errors(&errs);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(c->nroutes, 2);
    ck_assert_uint_eq(c->routes[0].domains.n, 2);
    ck_assert_str_eq(c->routes[0].domains.items[0], "example.com");
    ck_assert_str_eq(c->routes[0].domains.items[1], ".example.com");
    ck_assert_str_eq(c->routes[0].helo, "mx1.example.com");
    ck_assert_str_eq(c->routes[0].mail_from, "");
    ck_assert_uint_eq(c->routes[0].connect_timeout, 5000);
    ck_assert_int_eq(c->routes[0].max_sessions, 4);
    ck_assert_int_eq(c->routes[1].max_sessions, 2);
    ck_assert_uint_eq(c->routes[1].session_idle, 0);
    ck_assert_str_eq(c->routes[1].mail_from, "verify@example.org");

    ck_assert_int_eq(config_route_for(c, "example.com"), 0);
    ck_assert_int_eq(config_route_for(c, "mail.example.com"), 0);
    ck_assert_int_eq(config_route_for(c, "a.example.com"), 1); /* exact wins over a parent */
    ck_assert_int_eq(config_route_for(c, "b.a.example.com"), 0);
    ck_assert_int_eq(config_route_for(c, "example.org"), 1);
    ck_assert_int_eq(config_route_for(c, "x.example.org"), -1);
    ck_assert_int_eq(config_route_for(c, "example.net"), -1);
    ck_assert_int_eq(config_route_for(c, "notexample.com"), -1);

    ck_assert_int_eq(config_route_host("127.0.0.1:2525", name, sizeof name, &port), MXC_OK);
    ck_assert_str_eq(name, "127.0.0.1");
    ck_assert_uint_eq(port, 2525);
    ck_assert_int_eq(config_route_host("[::1]:26", name, sizeof name, &port), MXC_OK);
    ck_assert_str_eq(name, "::1");
    ck_assert_uint_eq(port, 26);
    ck_assert_int_eq(config_route_host("backup.example.net", name, sizeof name, &port), MXC_OK);
    ck_assert_uint_eq(port, 25);
    static const char *const bad[] = {"", ":25", "h:", "h:x", "h:65536", "h:1:2", "[::1", "[::1]x",
                                      "[1.2.3.4]:25", "bad_host:25", "h:-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(config_route_host(bad[i], name, sizeof name, &port) == MXC_EINVAL, "%s", bad[i]);

    /* Printed and read back: the same routes. */
    char out[PATH_MAX];
    snprintf(out, sizeof out, "%s/routes-printed.conf", tmpdir);
    FILE *fp = fopen(out, "w");
    ck_assert_ptr_nonnull(fp);
    ck_assert_int_eq(config_print(c, fp), MXC_OK);
    fclose(fp);
    struct config *back = config_load(out, &errs);
    dump_errors(&errs);
    ck_assert_ptr_nonnull(back);
    ck_assert_uint_eq(back->nroutes, 2);
    ck_assert(list_eq(&back->routes[0].hosts, &c->routes[0].hosts));
    ck_assert(list_eq(&back->routes[1].domains, &c->routes[1].domains));
    ck_assert_str_eq(back->routes[1].mail_from, "verify@example.org");
    ck_assert_uint_eq(back->routes[1].session_idle, 0);

    /* Routes are read at start only: a reload that changes them keeps the running ones. */
    struct config *none = config_defaults();
    char diff[256];
    config_reload_diff(c, none, diff, sizeof diff);
    ck_assert_str_eq(diff, "verify.routes");
    config_reload_diff(c, back, diff, sizeof diff);
    ck_assert_str_eq(diff, "");
    ck_assert_int_eq(config_keep_static(none, c), MXC_OK);
    ck_assert_uint_eq(none->nroutes, 2);
    ck_assert_str_eq(none->routes[1].mail_from, "verify@example.org");
    config_free(none);
    config_free(back);
    config_free(c);
    config_errors_fini(&errs);
}
END_TEST

/* ---- config_print ---- */

/* print_and_reload - prints c into tmpdir/name, loads it back and checks that it is equal. */
static void print_and_reload(const struct config *c, const char *name)
{
    struct config_errors errs = {0};
    char path[PATH_MAX];
    FILE *fp;

    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    fp = fopen(path, "w");
    ck_assert_ptr_nonnull(fp);
    ck_assert_int_eq(config_print(c, fp), MXC_OK);
    ck_assert_int_eq(fclose(fp), 0);
    struct config *back = config_load(path, &errs);
    if (!back) {
        char cmd[PATH_MAX + 8];
        dump_errors(&errs);
        snprintf(cmd, sizeof cmd, "cat %s >&2", path);
        ck_assert_int_ne(system(cmd), -1);
    }
    ck_assert_ptr_nonnull(back);
    assert_config_eq(c, back);
    config_free(back);
    config_errors_fini(&errs);
}

START_TEST(test_print_defaults)
{
    struct config *def = config_defaults();
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);

    print_and_reload(def, "printed-defaults.conf");
    ck_assert_int_eq(config_print(def, mem), MXC_OK);
    fclose(mem);
    /* every setting with its explanation; no "default:" notes, nothing is overridden */
    for (size_t i = 0; i < NPARAMS; i++) {
        char line[128];
        snprintf(line, sizeof line, "\n  %s = ", param_names[i].name);
        ck_assert_msg(strstr(text, line) != NULL, "%s.%s missing", param_names[i].group,
                      param_names[i].name);
        ck_assert_msg(strstr(text, param_names[i].help) != NULL, "help of %s.%s missing",
                      param_names[i].group, param_names[i].name);
    }
    ck_assert_ptr_null(strstr(text, "# default: "));
    free(text);
    config_free(def);
}
END_TEST

START_TEST(test_print_overrides)
{
    static const char text[] =
        "server = {\n"
        "  listen = [ \"tcp://[::1]:10041\", \"ipc:///tmp/a b\" ];\n"
        "  workers = 3;\n"
        "  max_request_size = 1000;\n"       /* not a multiple of 1K */
        "  max_batch = 17;\n"
        "  socket_hwm = 1000;\n"
        "  shutdown_timeout = \"1500ms\";\n"
        "};\n"
        "log = { level = \"err\"; target = \"syslog\"; facility = \"local7\"; };\n"
        "store = {\n"
        "  path = \"/srv/mx\\\\cache \\\"db\\\"\";\n" /* a backslash and quotes */
        "  sync = false;\n"
        "  block_cache_size = \"1T\";\n"
        "  write_buffer_size = 65537;\n"
        "  max_background_jobs = 5;\n"
        "};\n"
        "policy = {\n"
        "  default_action = \"reject\";\n"
        "  default_code = 554;\n"
        "  default_status = \"5.7.1\";\n"
        "  default_text = \"Go away, ünïcode\";\n"
        "};\n"
        "admin = { list_page_size = 5; list_page_max = 6; flush_batch = 7; };\n";
    struct config_errors errs = {0};
    char path[PATH_MAX];
    struct config *c = load_text("print-src.conf", text, &errs, path, sizeof path);
    char *out = NULL;
    size_t len = 0;

    if (!c)
        dump_errors(&errs);
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(c->store_path, "/srv/mx\\cache \"db\"");
    print_and_reload(c, "printed-overrides.conf");

    /* overridden settings say what they replaced */
    FILE *mem = open_memstream(&out, &len);
    ck_assert_int_eq(config_print(c, mem), MXC_OK);
    fclose(mem);
    ck_assert_ptr_nonnull(strstr(out, "# default: \"info\"\n  level = \"err\";"));
    ck_assert_ptr_nonnull(strstr(out, "max_request_size = \"1000\";"));
    ck_assert_ptr_nonnull(strstr(out, "block_cache_size = \"1T\";"));
    ck_assert_ptr_nonnull(strstr(out, "shutdown_timeout = \"1500ms\";"));
    free(out);
    config_free(c);
    config_errors_fini(&errs);
}
END_TEST

/* ---- config_reload_diff ---- */

START_TEST(test_reload_diff)
{
    struct config_errors errs = {0};
    char path[PATH_MAX], buf[256], small[16];
    struct config *old = config_defaults();
    struct config *same = load_text("same.conf", "", &errs, path, sizeof path);
    /* log.level, policy.* and admin.* reload; listen and workers do not */
    struct config *changed = load_text(
        "changed.conf",
        "server = {\n  listen = [ \"tcp://127.0.0.1:10042\" ];\n  workers = 2;\n};\n"
        "log = { level = \"debug\"; };\n"
        "policy = { default_text = \"x\"; };\n"
        "admin = { flush_batch = 5; };\n"
        "store = { sync = false; };\n",
        &errs, path, sizeof path);
    struct config *reloadable = load_text(
        "reloadable.conf", "log = { level = \"err\"; };\nadmin = { list_page_size = 7; };\n",
        &errs, path, sizeof path);

    if (errs.n)
        dump_errors(&errs);
    ck_assert_ptr_nonnull(same);
    ck_assert_ptr_nonnull(changed);
    ck_assert_ptr_nonnull(reloadable);
    ck_assert_str_eq(config_reload_diff(old, same, buf, sizeof buf), "");
    ck_assert_str_eq(config_reload_diff(old, reloadable, buf, sizeof buf), "");
    ck_assert_ptr_eq(config_reload_diff(old, changed, buf, sizeof buf), buf);
    ck_assert_str_eq(buf, "server.listen, server.workers, store.sync");
    ck_assert_str_eq(config_reload_diff(changed, old, buf, sizeof buf),
                     "server.listen, server.workers, store.sync");
    /* a short buffer: truncated, terminated, and marked */
    memset(small, 'X', sizeof small);
    config_reload_diff(old, changed, small, sizeof small);
    ck_assert_uint_eq(strlen(small), sizeof small - 1);
    ck_assert_str_eq(small + sizeof small - 4, "...");
    ck_assert_ptr_eq(config_reload_diff(old, changed, small, 0), small);

    /* config_keep_static: the running values of restart-only settings win, reloadable ones
     * come from the new file, and afterwards nothing is left to report. */
    ck_assert_int_eq(config_keep_static(changed, old), MXC_OK);
    ck_assert_str_eq(config_reload_diff(old, changed, buf, sizeof buf), "");
    ck_assert_uint_eq(changed->listen.n, old->listen.n);
    ck_assert_str_eq(changed->listen.items[0], old->listen.items[0]);
    ck_assert_int_eq(changed->workers, old->workers);
    ck_assert(changed->store_sync == old->store_sync);
    ck_assert_int_eq(changed->log_level, LOG_LEVEL_DEBUG);
    ck_assert_str_eq(changed->default_text, "x");
    ck_assert_int_eq(changed->flush_batch, 5);
    config_free(old);
    config_free(same);
    config_free(changed);
    config_free(reloadable);
    config_errors_fini(&errs);
}
END_TEST

/* ---- deploy/mxcached.conf ---- */

START_TEST(test_deploy_example)
{
    const char *src = getenv("MXCACHE_SOURCE_DIR");
    struct config_errors errs = {0};
    char path[PATH_MAX];
    struct config *c, *def;
    config_t lc;

    ck_assert_msg(src != NULL, "MXCACHE_SOURCE_DIR is not set (ctest sets it)");
    snprintf(path, sizeof path, "%s/deploy/mxcached.conf", src);
    c = config_load(path, &errs);
    dump_errors(&errs);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(errs.n, 0);

    /* the documented values: the defaults, except the installed store path */
    ck_assert_str_eq(c->store_path, "/var/lib/mxcache/db");
    ck_assert_int_eq(c->log_target, LOG_TARGET_AUTO);
    def = config_defaults();
    free(def->store_path);
    def->store_path = strdup("/var/lib/mxcache/db");
    assert_config_eq(c, def);
    config_free(def);
    config_free(c);

    /* every setting of params.h is written out, with its explanation */
    config_init(&lc);
    ck_assert_int_eq(config_read_file(&lc, path), CONFIG_TRUE);
    FILE *fp = fopen(path, "r");
    char *text = NULL;
    size_t cap = 0;
    ck_assert_ptr_nonnull(fp);
    ck_assert_int_gt(getdelim(&text, &cap, '\0', fp), 0);
    fclose(fp);
    for (size_t i = 0; i < NPARAMS; i++) {
        char name[128];
        snprintf(name, sizeof name, "%s.%s", param_names[i].group, param_names[i].name);
        ck_assert_msg(config_lookup(&lc, name) != NULL, "%s is not in %s", name, path);
        ck_assert_msg(strstr(text, param_names[i].help) != NULL,
                      "the explanation of %s (\"%s\") is not in %s", name, param_names[i].help,
                      path);
    }
    free(text);
    config_destroy(&lc);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_routes);
    tcase_add_test(tc, test_empty_file);
    tcase_add_test(tc, test_overrides);
    tcase_add_loop_test(tc, test_spellings, 0, (int)(sizeof spellings / sizeof spellings[0]));
    tcase_add_test(tc, test_enum_choices);
    tcase_add_loop_test(tc, test_bad, 0, (int)(sizeof bad_cases / sizeof bad_cases[0]));
    tcase_add_test(tc, test_many_errors);
    tcase_add_test(tc, test_no_followup_errors);
    tcase_add_test(tc, test_missing_file);
    tcase_add_test(tc, test_include);
    tcase_add_test(tc, test_include_not_a_file);
    tcase_add_test(tc, test_print_defaults);
    tcase_add_test(tc, test_print_overrides);
    tcase_add_test(tc, test_reload_diff);
    tcase_add_test(tc, test_deploy_example);
    suite_add_tcase(s, tc);
    return s;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(void)
{
    SRunner *sr;
    int failed;

    snprintf(tmpdir, sizeof tmpdir, "%s/check_config.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    sr = srunner_create(config_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
