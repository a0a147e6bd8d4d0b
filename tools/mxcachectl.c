/* mxcachectl - operator command line for mxcached.
 *
 * SYNOPSIS
 *   mxcachectl [--server ENDPOINT]... [--timeout DURATION] [--json] COMMAND [ARGS]
 *
 * DESCRIPTION
 *   Inspects and changes the state mxcached keeps (verification results, greylist triplets, the
 *   client auto-whitelist and the static whitelists) through the service's admin requests. This
 *   file owns the command line: the option table, the help texts, the command table and main().
 *   The commands live in ctl_cmd.c, the connection in ctl_rpc.c, the output in ctl_fmt.c; ctl.h
 *   is their private interface.
 *
 *   Global options may also follow the command ("mxcachectl get verify a@b --json"). A "--" ends
 *   the options, so a key that starts with "-" can be given.
 *
 * EXIT STATUS
 *   0 success (explain, verify: the service answered, whatever it decided or the probe found);
 *   1 not found (get, delete, whitelist del of a missing key) or refused by the service (error
 *   reply) or another failure; 2 usage error (unknown command or option, bad keyspace, kind,
 *   state, duration, address or domain, missing confirmation of a flush); 3 service unreachable
 *   or timed out.
 *
 * SECURITY
 *   Runs with the invoker's privileges and trusts its command line. Replies of the service are
 *   bounded by libmxcache and their text is escaped before it reaches a terminal (ctl_fmt.c).
 *   Authorization is the service's business: with CURVE it answers only listed keys and takes
 *   admin requests only from admin keys (--key, --server-key); keygen writes the secret key
 *   file with mode 0600. */
#include "ctl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "duration.h"
#include "wire.h"

#define COMMON_HELP                                                                          \
    "Common options (before or after the command): --server ENDPOINT (repeatable),\n"         \
    "--timeout DURATION, --json, --key FILE, --server-key KEY, --help.\n"                    \
    "See 'mxcachectl --help'.\n"

static const char main_usage[] =
    "Usage: mxcachectl [OPTIONS] COMMAND [ARGS]\n"
    "\n"
    "Inspect and change the state of mxcached, the shared greylisting and\n"
    "recipient-verification cache of an MX cluster.\n"
    "\n"
    "Commands:\n"
    "  stats                      version, uptime, keyspace sizes and counters\n"
    "  get KEYSPACE KEY           show one entry\n"
    "  list KEYSPACE [--prefix P] [--domain D] [--state STATE]\n"
    "                [--limit N] [--after KEY]\n"
    "                             list entries in key order\n"
    "  delete KEYSPACE KEY        delete one entry\n"
    "  flush KEYSPACE|ALL [--domain D] [--state STATE] [--dry-run] [--yes]\n"
    "                             delete many entries (asks for confirmation)\n"
    "  whitelist add KIND VALUE [--comment TEXT] [--ttl DURATION]\n"
    "  whitelist del KIND VALUE\n"
    "  whitelist list [KIND]      manage the static whitelists\n"
    "  compact [KEYSPACE]         compact the store (default: every keyspace)\n"
    "  explain CLIENT_IP SENDER RECIPIENT [--helo H] [--client-name N] [--mx NAME]\n"
    "                             how the service would decide, changing nothing\n"
    "  verify ADDRESS             probe an address at its backend now, with the dialogue\n"
    "  verify --accept-all DOMAIN start an accept-all check of a routed domain\n"
    "  keygen NAME [--dir DIR] [--force]\n"
    "                             write a CURVE key pair: DIR/NAME.key and DIR/NAME.pub\n"
    "  help [COMMAND]             this text, or the details of a command\n"
    "\n"
    "Options (before or after the command):\n"
    "  --server ENDPOINT    service endpoint, tcp://HOST:PORT or ipc://PATH; repeat it to\n"
    "                       give a failover order (default: $MXCACHE_SERVER, else\n"
    "                       tcp://127.0.0.1:10041)\n"
    "  --timeout DURATION   how long to wait for each answer: 500ms, 5s, 2m (default 5s;\n"
    "                       verify: 60s)\n"
    "  --json               one JSON object per line instead of a table\n"
    "  --key FILE           this operator's CURVE key pair (from keygen; default:\n"
    "                       $MXCACHE_KEY); needed when the service uses CURVE\n"
    "  --server-key KEY     the service's public key: its NAME.pub file or the Z85\n"
    "                       text (default: $MXCACHE_SERVER_KEY)\n"
    "  -h, --help           show help; 'mxcachectl COMMAND --help' for a command\n"
    "\n"
    "Keyspaces: verify, greylist, awl, whitelist.\n"
    "Whitelist kinds: client (IP or CIDR), client_name (host or domain), sender (address\n"
    "or domain), recipient (address or domain).\n"
    "States: positive, negative, tempfail (verify); pending, passed (greylist).\n"
    "\n"
    "Exit status:\n"
    "  0  success (explain, verify: the service answered, whatever it decided or\n"
    "     the probe found)\n"
    "  1  not found (get, delete, whitelist del of a missing key), or the service\n"
    "     refused the request\n"
    "  2  usage error: unknown command or option, bad keyspace, kind, state,\n"
    "     duration, address or domain, missing confirmation\n"
    "  3  service unreachable or no answer within the timeout\n";

static const struct ctl_command commands[] = {
    {"stats", ctl_cmd_stats, 0, "stats", "version, uptime, keyspace sizes and counters",
     "Show the service's version, uptime and worker count, the estimated number of keys\n"
     "and the disk usage of each keyspace, and the service's counters.\n"},
    {"get", ctl_cmd_get, 0, "get KEYSPACE KEY", "show one entry",
     "Show one entry. Whitelist keys are KIND:VALUE as the service stores them\n"
     "(client:192.0.2.0/24, sender:example.com). Exits 1 when there is no such entry\n"
     "(expired entries do not exist).\n"},
    {"list", ctl_cmd_list, CTL_O_PREFIX | CTL_O_DOMAIN | CTL_O_STATE | CTL_O_LIMIT | CTL_O_AFTER,
     "list KEYSPACE [--prefix P] [--domain D] [--state STATE] [--limit N] [--after KEY]",
     "list entries in key order",
     "List the entries of a keyspace in key order, one page of the service at a time.\n"
     "  --prefix P     only keys that start with P\n"
     "  --domain D     only keys whose (last) address is in domain D or below it\n"
     "  --state STATE  only records in this state: positive, negative, tempfail (verify),\n"
     "                 pending, passed (greylist)\n"
     "  --limit N      stop after N entries (default: all); when more follow, the key to\n"
     "                 continue after is printed on stderr\n"
     "  --after KEY    start after this key\n"
     "The service applies the filters and examines a bounded number of entries per\n"
     "request: a listing that matches little of a large keyspace takes many requests,\n"
     "each within --timeout.\n"},
    {"delete", ctl_cmd_delete, 0, "delete KEYSPACE KEY", "delete one entry",
     "Delete one entry. Exits 1 when there was no such entry.\n"},
    {"flush", ctl_cmd_flush, CTL_O_DOMAIN | CTL_O_STATE | CTL_O_DRY_RUN | CTL_O_YES,
     "flush KEYSPACE|ALL [--domain D] [--state STATE] [--dry-run] [--yes]\n"
     "       mxcachectl flush verify ADDRESS",
     "delete many entries",
     "Delete every entry of a keyspace that matches the filters; ALL (in capitals)\n"
     "flushes every keyspace. flush verify ADDRESS deletes the cached answer for one\n"
     "address (as delete does), so that the next Check probes it anew.\n"
     "  --domain D     only keys whose (last) address is in domain D\n"
     "  --state STATE  only records in this state: positive, negative, tempfail (verify),\n"
     "                 pending, passed (greylist); needs a single keyspace\n"
     "  --dry-run      only count the entries that would be deleted\n"
     "  --yes          do not ask; needed when standard input is not a terminal\n"
     "Without --yes and --dry-run, mxcachectl asks on the terminal and deletes only\n"
     "after the answer \"yes\"; without a terminal it refuses (exit 2).\n"},
    {"whitelist", ctl_cmd_whitelist, CTL_O_COMMENT | CTL_O_TTL | CTL_O_LIMIT | CTL_O_AFTER,
     "whitelist add KIND VALUE [--comment TEXT] [--ttl DURATION]\n"
     "       mxcachectl whitelist del KIND VALUE\n"
     "       mxcachectl whitelist list [KIND] [--limit N] [--after KEY]",
     "manage the static whitelists",
     "Static whitelists, the same for every MX. KIND is one of:\n"
     "  client       client IP address or network (192.0.2.7, 192.0.2.0/24, 2001:db8::/32)\n"
     "  client_name  client host name, or a domain it ends in\n"
     "  sender       envelope sender address, or its domain\n"
     "  recipient    recipient address, or its domain\n"
     "The service stores values canonically (networks masked, names lower-cased) under\n"
     "the key KIND:VALUE of the whitelist keyspace.\n"
     "  add:  --comment TEXT   a note for operators\n"
     "        --ttl DURATION   remove the entry after this time (30d, 12h; default: never)\n"
     "  del:  exits 1 when there was no such entry\n"
     "  list: all kinds, or only KIND; --limit N and --after KEY as in list\n"},
    {"compact", ctl_cmd_compact, 0, "compact [KEYSPACE]", "compact the store",
     "Compact the store's files (default: every keyspace) and report the disk usage\n"
     "before and after. Large stores may need a longer --timeout.\n"},
    {"explain", ctl_cmd_explain, CTL_O_HELO | CTL_O_CLIENT_NAME | CTL_O_MX,
     "explain CLIENT_IP SENDER RECIPIENT [--helo H] [--client-name N] [--mx NAME]",
     "how the service would decide, changing nothing",
     "Ask the service how it would answer Postfix for RCPT TO:<RECIPIENT> in a mail\n"
     "from SENDER, sent by the client at CLIENT_IP: the same checks as for a real\n"
     "request, as a dry run that changes no state (no greylist entry is created or\n"
     "updated, nothing is counted as a pass).\n"
     "  CLIENT_IP           the client's IPv4 or IPv6 address\n"
     "  SENDER              the envelope sender; '' or '<>' for the null sender\n"
     "  RECIPIENT           the recipient address (<...> around it is optional)\n"
     "  --helo H            the name the client gave in HELO/EHLO (default: none)\n"
     "  --client-name N     the client's verified host name (default: unknown)\n"
     "  --mx NAME           the MX that asks (default: none)\n"
     "Prints the action (dunno, defer, reject), the SMTP reply (code, enhanced status,\n"
     "text), the rule that decided, the age of the stored fact it used, the header it\n"
     "would prepend (if any) and the service's explanation. Exits 0 whenever the\n"
     "service answered, whatever the action; 1 when it refused the question.\n"},
    {"verify", ctl_cmd_verify, CTL_O_ACCEPT_ALL,
     "verify ADDRESS\n"
     "       mxcachectl verify --accept-all DOMAIN",
     "probe an address at its backend now",
     "Probe ADDRESS now at the backend of its domain's route (verify.routes), whatever\n"
     "the cache holds, and show the SMTP dialogue. The result goes into the cache like\n"
     "that of any probe.\n"
     "  ADDRESS              the recipient address (<...> around it is optional)\n"
     "  --accept-all DOMAIN  instead, start an accept-all check of the routed DOMAIN (a\n"
     "                       probe of an address that cannot exist) and return at once;\n"
     "                       the service logs its result (ACCEPT_ALL) and counts\n"
     "                       accept-all domains in its stats\n"
     "Prints the result (accepted, rejected, tempfail, failed), the backend's reply\n"
     "(code, enhanced status, text), the backend that answered (or was tried last),\n"
     "how long the probe took, what the cache holds for the address now (positive,\n"
     "negative, tempfail, none), why a failed probe failed, and the transcript (C:\n"
     "sent, S: received). Waits up to 60s unless --timeout is given; a probe of a slow\n"
     "backend may need more. Exits 0 whenever the service answered, whatever the\n"
     "result; 1 when it refused: an invalid address, a domain without a route, or no\n"
     "probe can start now (busy, or the route's circuit breaker is open).\n"},
    {"keygen", ctl_cmd_keygen, CTL_O_DIR | CTL_O_FORCE, "keygen NAME [--dir DIR] [--force]",
     "write a CURVE key pair",
     "Make a new CURVE key pair called NAME and write it to two files:\n"
     "  DIR/NAME.key  the secret key file (mode 0600): give it only to the host or\n"
     "                operator that uses it (mxcached's security.key_file, the policy\n"
     "                hook's service.key_file, mxcachectl's --key)\n"
     "  DIR/NAME.pub  the public key (mode 0644): list a client's in the service's\n"
     "                security.client_keys or admin_keys; give the service's to its\n"
     "                clients (service.server_key, --server-key)\n"
     "  --dir DIR     where to write (default: the current directory)\n"
     "  --force       replace existing files (otherwise an existing file is an error)\n"
     "NAME: letters, digits, '.', '-' and '_'. Prints the public key. Needs no service.\n"},
    {"help", ctl_help, 0, "help [COMMAND]", "show help", NULL},
};

/* command_find - the command called name, or NULL. */
static const struct ctl_command *command_find(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

/* command_usage - prints the help of one command to out. */
static void command_usage(const struct ctl_command *c, FILE *out)
{
    if (c->run == ctl_help) {
        fputs(main_usage, out);
        return;
    }
    fprintf(out, "Usage: mxcachectl %s\n\n", c->synopsis);
    if (c->help)
        fputs(c->help, out);
    fputs("\n" COMMON_HELP, out);
}

int ctl_help(struct ctl *ctl)
{
    const struct ctl_command *c;

    if (ctl->nargs > 1)
        return ctl_usage_error(ctl, "expected at most one COMMAND");
    if (ctl->nargs == 0) {
        fputs(main_usage, stdout);
        return CTL_EXIT_OK;
    }
    if (!(c = command_find(ctl->args[0])))
        return ctl_usage_error(ctl, "unknown command '%s'", ctl->args[0]);
    command_usage(c, stdout);
    return CTL_EXIT_OK;
}

int ctl_error(int code, const char *fmt, ...)
{
    va_list ap;

    fflush(stdout);
    fputs(CTL_PROGNAME ": ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

int ctl_usage_error(const struct ctl *ctl, const char *fmt, ...)
{
    va_list ap;

    fflush(stdout);
    fputs(CTL_PROGNAME ": ", stderr);
    if (ctl && ctl->cmd && ctl->cmd->run != ctl_help)
        fprintf(stderr, "%s: ", ctl->cmd->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (ctl && ctl->cmd && ctl->cmd->run != ctl_help)
        fprintf(stderr, "Try 'mxcachectl %s --help'.\n", ctl->cmd->name);
    else
        fputs("Try 'mxcachectl --help'.\n", stderr);
    return CTL_EXIT_USAGE;
}

int ctl_parse_keyspace(const struct ctl *ctl, const char *name, Mxcache__Keyspace *out)
{
    if (wire_keyspace_parse(name, out) != MXC_OK)
        return ctl_usage_error(ctl, "unknown keyspace '%s' (verify, greylist, awl, whitelist)", name);
    return 0;
}

int ctl_parse_kind(const struct ctl *ctl, const char *name, bool allow_any, Mxcache__WhitelistKind *out)
{
    if (wire_wlkind_parse(name, out) != MXC_OK || (!allow_any && *out == MXCACHE__WHITELIST_KIND__WHITELIST_ANY))
        return ctl_usage_error(ctl, "unknown whitelist kind '%s' (client, client_name, sender, recipient)",
                               name);
    return 0;
}

/* ---- options ---- */

static const struct optdef {
    const char *name;
    unsigned bit;
    bool has_arg;
} optdefs[] = {
    {"server", CTL_O_SERVER, true},   {"timeout", CTL_O_TIMEOUT, true}, {"json", CTL_O_JSON, false},
    {"help", CTL_O_HELP, false},      {"prefix", CTL_O_PREFIX, true},   {"limit", CTL_O_LIMIT, true},
    {"after", CTL_O_AFTER, true},     {"domain", CTL_O_DOMAIN, true},   {"state", CTL_O_STATE, true},
    {"dry-run", CTL_O_DRY_RUN, false}, {"yes", CTL_O_YES, false},       {"comment", CTL_O_COMMENT, true},
    {"ttl", CTL_O_TTL, true},         {"helo", CTL_O_HELO, true},       {"client-name", CTL_O_CLIENT_NAME, true},
    {"mx", CTL_O_MX, true},           {"accept-all", CTL_O_ACCEPT_ALL, true},
    {"key", CTL_O_KEY, true},         {"server-key", CTL_O_SERVER_KEY, true},
    {"dir", CTL_O_DIR, true},         {"force", CTL_O_FORCE, false},
};

/* endpoint_ok - whether s looks like an endpoint libmxcache takes; the library checks the rest. */
static bool endpoint_ok(const char *s)
{
    return (strncmp(s, "tcp://", 6) == 0 && s[6]) || (strncmp(s, "ipc://", 6) == 0 && s[6]);
}

/* add_server - appends an endpoint to ctl->servers (borrowed); 0 or a usage error. */
static int add_server(struct ctl *ctl, const char *s)
{
    if (!endpoint_ok(s))
        return ctl_usage_error(ctl, "invalid server endpoint '%s' (tcp://HOST:PORT or ipc://PATH)", s);
    if (ctl->nservers >= CTL_MAX_SERVERS)
        return ctl_usage_error(ctl, "too many servers (at most %d)", CTL_MAX_SERVERS);
    ctl->servers[ctl->nservers++] = s;
    return 0;
}

/* opt_apply - stores the value of one option. Returns 0 or a usage error. */
static int opt_apply(struct ctl *ctl, const struct optdef *d, const char *v)
{
    uint64_t ms;
    char *end;

    if (v && strlen(v) > CTL_MAX_ARG_LEN)
        return ctl_usage_error(ctl, "value of --%s is too long (at most %d bytes)", d->name, CTL_MAX_ARG_LEN);
    switch (d->bit) {
    case CTL_O_SERVER: return add_server(ctl, v);
    case CTL_O_TIMEOUT:
        if (duration_parse(v, 1000, &ms) != MXC_OK || ms == 0 || ms > CTL_MAX_TIMEOUT_MS)
            return ctl_usage_error(ctl, "invalid duration '%s' for --timeout (500ms, 5s, 2m; at most 24h)", v);
        ctl->timeout_ms = (int)ms;
        return 0;
    case CTL_O_JSON: ctl->json = true; return 0;
    case CTL_O_HELP: return 0;
    case CTL_O_PREFIX: ctl->prefix = v; return 0;
    case CTL_O_AFTER: ctl->after = v; return 0;
    case CTL_O_DOMAIN: ctl->domain = v; return 0;
    case CTL_O_COMMENT: ctl->comment = v; return 0;
    case CTL_O_HELO: ctl->helo = v; return 0;
    case CTL_O_CLIENT_NAME: ctl->client_name = v; return 0;
    case CTL_O_MX: ctl->mx = v; return 0;
    case CTL_O_ACCEPT_ALL: ctl->accept_all = v; return 0;
    case CTL_O_KEY: ctl->key = v; return 0;
    case CTL_O_SERVER_KEY: ctl->server_key = v; return 0;
    case CTL_O_DIR: ctl->dir = v; return 0;
    case CTL_O_FORCE: ctl->force = true; return 0;
    case CTL_O_LIMIT: {
        errno = 0;
        unsigned long long n = (*v >= '0' && *v <= '9') ? strtoull(v, &end, 10) : 0;
        if (errno || n == 0 || n > UINT32_MAX || *end)
            return ctl_usage_error(ctl, "invalid --limit '%s' (a number from 1)", v);
        ctl->limit = (uint32_t)n;
        return 0;
    }
    case CTL_O_STATE:
        if (wire_state_parse(v, &ctl->state) != MXC_OK)
            return ctl_usage_error(ctl, "unknown state '%s' (positive, negative, tempfail, pending, passed)", v);
        return 0;
    case CTL_O_DRY_RUN: ctl->dry_run = true; return 0;
    case CTL_O_YES: ctl->yes = true; return 0;
    case CTL_O_TTL:
        if (duration_parse(v, 1000, &ms) != MXC_OK)
            return ctl_usage_error(ctl, "invalid duration '%s' for --ttl (30d, 12h, 90m; 0: never expires)", v);
        ctl->ttl_ms = ms;
        return 0;
    }
    return ctl_usage_error(ctl, "internal error: option --%s", d->name);
}

/* parse_args - parses argv[*ip..argc) for the options in `allowed`. With stop_at_arg, stops at
 * the first positional argument (the command) and leaves its index in *ip; otherwise collects
 * the positional arguments in ctl->args. Returns 0 or a usage error. */
static int parse_args(struct ctl *ctl, int argc, char **argv, int *ip, unsigned allowed, bool stop_at_arg)
{
    bool only_args = false;

    for (int i = *ip; i < argc; i++) {
        const char *a = argv[i];
        const struct optdef *d = NULL;
        const char *name, *eq, *v = NULL;
        size_t nlen;
        int rc;

        if (only_args || a[0] != '-' || a[1] == '\0') {
            if (stop_at_arg) {
                *ip = i;
                return 0;
            }
            ctl->args[ctl->nargs++] = argv[i];
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_args = true;
            continue;
        }
        if (strcmp(a, "-h") == 0) {
            name = "help";
            nlen = 4;
            eq = NULL;
        } else if (a[1] == '-') {
            name = a + 2;
            eq = strchr(name, '=');
            nlen = eq ? (size_t)(eq - name) : strlen(name);
        } else {
            return ctl_usage_error(ctl, "unknown option '%s'", a);
        }
        for (size_t k = 0; k < sizeof optdefs / sizeof optdefs[0]; k++)
            if (strlen(optdefs[k].name) == nlen && strncmp(optdefs[k].name, name, nlen) == 0)
                d = &optdefs[k];
        if (!d)
            return ctl_usage_error(ctl, "unknown option '%s'", a);
        if (!(allowed & d->bit))
            return ctl_usage_error(ctl, "option --%s does not apply here", d->name);
        if (d->has_arg) {
            if (eq)
                v = eq + 1;
            else if (i + 1 < argc)
                v = argv[++i];
            else
                return ctl_usage_error(ctl, "option --%s needs a value", d->name);
        } else if (eq) {
            return ctl_usage_error(ctl, "option --%s takes no value", d->name);
        }
        if ((rc = opt_apply(ctl, d, v)) != 0)
            return rc;
        ctl->given |= d->bit;
    }
    *ip = argc;
    return 0;
}

/* servers_from_env - fills ctl->servers from $MXCACHE_SERVER (commas or spaces between
 * endpoints), else the default. Returns 0 or a usage error. */
static int servers_from_env(struct ctl *ctl)
{
    const char *env = getenv(CTL_SERVER_ENV);
    char *save = NULL;
    int rc;

    if (!env || !*env) {
        ctl->servers[ctl->nservers++] = CTL_DEFAULT_SERVER;
        return 0;
    }
    if (!(ctl->env_servers = strdup(env)))
        return ctl_error(CTL_EXIT_FAIL, "out of memory");
    for (char *tok = strtok_r(ctl->env_servers, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save))
        if ((rc = add_server(ctl, tok)) != 0) {
            fprintf(stderr, "(in $%s)\n", CTL_SERVER_ENV);
            return rc;
        }
    if (ctl->nservers == 0)
        ctl->servers[ctl->nservers++] = CTL_DEFAULT_SERVER;
    return 0;
}

int main(int argc, char **argv)
{
    struct ctl ctl;
    int i = 1, rc;

    memset(&ctl, 0, sizeof ctl);
    ctl.timeout_ms = CTL_DEFAULT_TIMEOUT_MS;
    ctl.state = MXCACHE__RECORD_STATE__STATE_ANY;
    /* One slot per argv element is always enough for the positional arguments. */
    if (!(ctl.args = calloc((size_t)argc + 1, sizeof *ctl.args)))
        return ctl_error(CTL_EXIT_FAIL, "out of memory");

    if ((rc = parse_args(&ctl, argc, argv, &i, CTL_O_GLOBAL, true)) != 0)
        goto out;
    if (i >= argc) {
        if (ctl.given & CTL_O_HELP) {
            fputs(main_usage, stdout);
            rc = CTL_EXIT_OK;
        } else {
            rc = ctl_usage_error(&ctl, "missing command");
        }
        goto out;
    }
    if (!(ctl.cmd = command_find(argv[i]))) {
        rc = ctl_usage_error(&ctl, "unknown command '%s'", argv[i]);
        goto out;
    }
    i++;
    if ((rc = parse_args(&ctl, argc, argv, &i, CTL_O_GLOBAL | ctl.cmd->options, false)) != 0)
        goto out;
    if (ctl.given & CTL_O_HELP) {
        command_usage(ctl.cmd, stdout);
        rc = CTL_EXIT_OK;
        goto out;
    }
    if (ctl.nservers == 0 && (rc = servers_from_env(&ctl)) != 0)
        goto out;
    rc = ctl.cmd->run(&ctl);
    if (fflush(stdout) != 0 && rc == CTL_EXIT_OK)
        rc = ctl_error(CTL_EXIT_FAIL, "write error on standard output: %s", strerror(errno));
out:
    ctl_rpc_close(&ctl);
    free(ctl.env_servers);
    free(ctl.args);
    return rc;
}
