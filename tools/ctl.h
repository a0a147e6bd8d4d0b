/* mxcachectl private interface, shared by tools/mxcachectl.c (command line, help texts, main),
 * tools/ctl_rpc.c (talking to mxcached), tools/ctl_fmt.c (tables, times, JSON) and
 * tools/ctl_cmd.c (the commands).
 *
 * Exit codes of mxcachectl (also listed in the --help text):
 *   0  success (explain, verify: the service answered, whatever it decided or the probe found)
 *   1  not found (get, delete, whitelist del of a missing key), the service refused the request
 *      (error reply), or another failure (out of memory, malformed reply)
 *   2  usage error: unknown command or option, bad keyspace, kind, state, duration, address or
 *      domain, wrong number of arguments, missing confirmation of a flush
 *   3  the service is unreachable or did not answer within --timeout
 *
 * Output goes to stdout (an aligned table, or with --json one JSON object per line); every
 * diagnostic goes to stderr as "mxcachectl: ...". Text that came from the service is untrusted:
 * the table printer escapes control characters, the JSON printer lets jansson escape it. */
#ifndef MXC_CTL_H
#define MXC_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "mxcache.h"

#define CTL_PROGNAME "mxcachectl"

enum ctl_exit {
    CTL_EXIT_OK = 0,
    CTL_EXIT_FAIL = 1,
    CTL_EXIT_USAGE = 2,
    CTL_EXIT_UNAVAILABLE = 3,
};

#define CTL_DEFAULT_SERVER "tcp://127.0.0.1:10041"
#define CTL_SERVER_ENV "MXCACHE_SERVER"             /* endpoints, separated by commas or spaces */
#define CTL_DEFAULT_TIMEOUT_MS 5000                 /* --timeout: whole deadline of one request */
#define CTL_VERIFY_TIMEOUT_MS 60000                 /* verify's default: a probe takes a while */
#define CTL_MAX_TIMEOUT_MS (24 * 3600 * 1000)       /* fits an int */
#define CTL_MAX_SERVERS MXC_MAX_ENDPOINTS
#define CTL_PAGE_LIMIT 1000u                        /* entries asked per list page (service caps) */
#define CTL_TABLE_BLOCK 1000u                       /* table rows aligned together in a listing */
#define CTL_MAX_ARG_LEN 4096                        /* longest key, prefix, value or comment */

/* Options a command line may carry; a command accepts a subset (CTL_O_* bits). */
enum {
    CTL_O_SERVER = 1u << 0,
    CTL_O_TIMEOUT = 1u << 1,
    CTL_O_JSON = 1u << 2,
    CTL_O_HELP = 1u << 3,
    CTL_O_PREFIX = 1u << 4,
    CTL_O_LIMIT = 1u << 5,
    CTL_O_AFTER = 1u << 6,
    CTL_O_DOMAIN = 1u << 7,
    CTL_O_STATE = 1u << 8,
    CTL_O_DRY_RUN = 1u << 9,
    CTL_O_YES = 1u << 10,
    CTL_O_COMMENT = 1u << 11,
    CTL_O_TTL = 1u << 12,
    CTL_O_HELO = 1u << 13,
    CTL_O_CLIENT_NAME = 1u << 14,
    CTL_O_MX = 1u << 15,
    CTL_O_ACCEPT_ALL = 1u << 16,
    CTL_O_KEY = 1u << 17,
    CTL_O_SERVER_KEY = 1u << 18,
    CTL_O_DIR = 1u << 19,
    CTL_O_FORCE = 1u << 20,
};
#define CTL_O_GLOBAL (CTL_O_SERVER | CTL_O_TIMEOUT | CTL_O_JSON | CTL_O_HELP | CTL_O_KEY | CTL_O_SERVER_KEY)
#define CTL_KEY_ENV "MXCACHE_KEY"                   /* --key's default */
#define CTL_SERVER_KEY_ENV "MXCACHE_SERVER_KEY"     /* --server-key's default */

/* The parsed command line; strings are borrowed from argv. */
struct ctl {
    /* global options */
    const char *servers[CTL_MAX_SERVERS];
    size_t nservers;
    char *env_servers;        /* copy of $MXCACHE_SERVER that servers[] points into, or NULL */
    int timeout_ms;
    int failover_ms;          /* > 0: fail over to the next server only after this silence */
    bool json;
    /* the command */
    const struct ctl_command *cmd;
    unsigned given;           /* CTL_O_* bits seen on the command line */
    const char *prefix, *after, *domain, *comment;
    const char *helo, *client_name, *mx; /* explain; NULL when not given */
    const char *accept_all;   /* verify --accept-all DOMAIN; NULL when not given */
    const char *key;          /* --key FILE: this operator's key pair (CURVE), or NULL */
    const char *server_key;   /* --server-key FILE|Z85: the service's public key, or NULL */
    const char *dir;          /* keygen --dir */
    bool force;               /* keygen --force */
    uint32_t limit;           /* 0: no limit */
    Mxcache__RecordState state;
    uint64_t ttl_ms;
    bool dry_run, yes;
    char **args;              /* positional arguments after the command name */
    int nargs;
    /* connection, created on first use */
    mxc_client *client;
};

struct ctl_command {
    const char *name;
    int (*run)(struct ctl *ctl);
    unsigned options;         /* CTL_O_* bits accepted besides CTL_O_GLOBAL */
    const char *synopsis;     /* arguments after the command name */
    const char *summary;      /* one line for the command list */
    const char *help;         /* details for "help COMMAND", or NULL */
};

/* ---- tools/mxcachectl.c ---- */

/* ctl_usage_error - prints "mxcachectl: [CMD: ]message" and a hint to --help on stderr; returns
 * CTL_EXIT_USAGE. */
int ctl_usage_error(const struct ctl *ctl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ctl_error - prints "mxcachectl: message" on stderr; returns code. */
int ctl_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ctl_help - the "help [COMMAND]" command: prints the usage text of the program or of a command
 * to stdout. */
int ctl_help(struct ctl *ctl);

/* ctl_parse_keyspace, ctl_parse_kind - name to enum, or a usage error (returns CTL_EXIT_USAGE
 * after printing it; 0 on success). allow_any: whether "any" is a valid kind. */
int ctl_parse_keyspace(const struct ctl *ctl, const char *name, Mxcache__Keyspace *out);
int ctl_parse_kind(const struct ctl *ctl, const char *name, bool allow_any, Mxcache__WhitelistKind *out);

/* ---- tools/ctl_cmd.c ---- */

/* ctl_cmd_keygen - the "keygen NAME" command: writes a CURVE key pair (no service needed). */
int ctl_cmd_keygen(struct ctl *ctl);

/* ---- tools/ctl_rpc.c ---- */

/* ctl_rpc_call - sends req to the service (connecting on first use) and waits for a reply whose
 * body is `want`. Returns 0 with *rep set (freed by the caller with mxc_reply_free), or reports
 * the failure on stderr and returns the exit code: CTL_EXIT_FAIL for an error reply or a reply
 * of the wrong kind, CTL_EXIT_UNAVAILABLE for no answer, CTL_EXIT_FAIL for local failures. req is
 * borrowed. Blocks up to the timeout. */
int ctl_rpc_call(struct ctl *ctl, Mxcache__Request *req, Mxcache__Reply__BodyCase want,
                 Mxcache__Reply **rep);

/* ctl_rpc_close - destroys the connection, if any. */
void ctl_rpc_close(struct ctl *ctl);

/* ---- tools/ctl_fmt.c ---- */

/* ctl_fmt_now_ms - the current unix time in milliseconds. */
uint64_t ctl_fmt_now_ms(void);

/* ctl_fmt_time - ISO-8601 UTC ("2026-11-27T21:33:54Z") of a unix time in ms, or "-" for 0.
 * Writes into buf (at least 32 bytes) and returns it. */
#define CTL_TIME_BUFSIZE 32
char *ctl_fmt_time(uint64_t ms, char *buf);

#define CTL_SPAN_BUFSIZE 48   /* "%llu%s %llu%s": two 20-digit numbers and units */
#define CTL_EXPIRY_BUFSIZE 64 /* "in " plus a span */

/* ctl_fmt_span - an interval as its two largest units, rounded to the smaller one ("30d 23h",
 * "5h 2m", "3m 20s", "45s", "250ms"), into buf (CTL_SPAN_BUFSIZE bytes); returns buf. */
char *ctl_fmt_span(uint64_t ms, char *buf);

/* ctl_fmt_expiry - "never" (0), "in 30d 23h", or "expired", relative to now_ms, into buf
 * (CTL_EXPIRY_BUFSIZE bytes). */
char *ctl_fmt_expiry(uint64_t expires_at_ms, uint64_t now_ms, char *buf);

/* ctl_fmt_clean - a malloc'd copy of s (NULL: "") where bytes below 0x20, DEL and backslash are
 * escaped as \xNN, capped at about CTL_MAX_CELL bytes. NULL only when out of memory. */
#define CTL_MAX_CELL 1024
char *ctl_fmt_clean(const char *s);

/* An aligned text table. Rows are buffered and printed by ctl_table_flush; column widths only
 * grow, so the pages of a long listing stay aligned unless a later page has wider values. The last
 * column is never padded. Cells are cleaned (ctl_fmt_clean) when added. */
struct ctl_table;

/* ctl_table_create - a table with ncols columns; headers (ncols strings) may be NULL for a table
 * without a header line; align is a string of 'l'/'r' per column, NULL for all left. NULL when out
 * of memory. */
struct ctl_table *ctl_table_create(size_t ncols, const char *const *headers, const char *align);

/* ctl_table_add - adds a row of ncols strings (NULL prints as "-"). Returns 0 or MXC_ENOMEM. */
int ctl_table_add(struct ctl_table *t, const char *const *cells);

/* ctl_table_addv - like ctl_table_add with the cells as arguments. */
int ctl_table_addv(struct ctl_table *t, ...);

/* ctl_table_pending - rows added and not yet printed. */
size_t ctl_table_pending(const struct ctl_table *t);

/* ctl_table_flush - prints the buffered rows (and, before the first row ever, the header) to out
 * and forgets them. */
void ctl_table_flush(struct ctl_table *t, FILE *out);

/* ctl_table_destroy - NULL-safe. */
void ctl_table_destroy(struct ctl_table *t);

/* ctl_json_string - a JSON string of s (NULL: ""); bytes that are not valid UTF-8 are replaced
 * by escapes (ctl_fmt_clean). */
json_t *ctl_json_string(const char *s);

/* ctl_json_set_time - sets NAME_ms (integer) and NAME (ISO string, or null for 0) in obj. */
void ctl_json_set_time(json_t *obj, const char *name, uint64_t ms);

/* ctl_json_uint - a JSON integer of v (clamped to the largest json_int_t). */
json_t *ctl_json_uint(uint64_t v);

/* ctl_json_print - prints obj on one line to out and releases it (obj is consumed; NULL, as
 * left by a failed allocation, prints nothing and returns MXC_ENOMEM). Returns 0. */
int ctl_json_print(json_t *obj, FILE *out);

/* ctl_entry_json - the JSON object of one entry (new reference); NULL when out of memory. */
json_t *ctl_entry_json(const Mxcache__Entry *e);

/* ctl_entry_table - an empty table with the columns that fit entries of keyspace ks. */
struct ctl_table *ctl_entry_table(Mxcache__Keyspace ks);

/* ctl_entry_row - adds e as a row of a table from ctl_entry_table(ks). Returns 0 or MXC_ENOMEM. */
int ctl_entry_row(struct ctl_table *t, Mxcache__Keyspace ks, const Mxcache__Entry *e, uint64_t now_ms);

/* ctl_entry_detail - prints e as "field  value" lines to out. Returns 0 or MXC_ENOMEM. */
int ctl_entry_detail(const Mxcache__Entry *e, uint64_t now_ms, FILE *out);

/* ctl_check_json - the JSON object of a CheckReply (new reference): action, smtp_code,
 * enhanced_status, text, rule, fact_age_ms, prepend, explanation (every field, empty or 0 when
 * unset). NULL when out of memory. */
json_t *ctl_check_json(const Mxcache__CheckReply *c);

/* ctl_check_detail - prints a CheckReply as "field  value" lines to out: action, reply (code,
 * enhanced status and text, "-" when all are empty), rule, fact_age ("-" for none), prepend
 * (only when there is one) and explanation, one line per line of it ("-" when empty). Returns 0
 * or MXC_ENOMEM. */
int ctl_check_detail(const Mxcache__CheckReply *c, FILE *out);

/* ctl_verify_json - the JSON object of a VerifyReply to a probe of address (new reference):
 * address, result, smtp_code, enhanced_status, text, backend, detail, transcript, duration_ms and
 * cached (a state name, "none" when the cache holds nothing); every field, empty or 0 when unset.
 * NULL when out of memory. */
json_t *ctl_verify_json(const Mxcache__VerifyReply *v, const char *address);

/* ctl_verify_detail - prints a VerifyReply to a probe of address as "field  value" lines to out:
 * address, result, reply (code, enhanced status and text, "-" when all are empty), backend,
 * duration, cached ("none" when the cache holds nothing), detail (only when there is one) and
 * transcript, one line per line of it ("-" when empty). Returns 0 or MXC_ENOMEM. */
int ctl_verify_detail(const Mxcache__VerifyReply *v, const char *address, FILE *out);

/* ---- tools/ctl_cmd.c: one function per command; each returns the exit code ---- */

int ctl_cmd_stats(struct ctl *ctl);
int ctl_cmd_get(struct ctl *ctl);
int ctl_cmd_list(struct ctl *ctl);
int ctl_cmd_delete(struct ctl *ctl);
int ctl_cmd_flush(struct ctl *ctl);
int ctl_cmd_whitelist(struct ctl *ctl);
int ctl_cmd_compact(struct ctl *ctl);
int ctl_cmd_explain(struct ctl *ctl);
int ctl_cmd_verify(struct ctl *ctl);

#endif
