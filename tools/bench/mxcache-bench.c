/* mxcache-bench - load generator for mxcached and for Postfix policy servers.
 *
 * SYNOPSIS
 *   mxcache-bench [--protocol zmq|policy] [--server ENDPOINT]
 *                 [--workload check-hit|check-miss|whitelist-add|triplets|verify-hit|verify-probe]
 *                 [--new-ratio R] [--prewarm] [--domain D] [--prewarm-time D] [--sockets S]
 *                 [--inflight W] [--threads T] [--duration D] [--requests N] [--warmup D]
 *                 [--keys K] [--server-pid PID] [--json]
 *
 * DESCRIPTION
 *   Keeps S connections with W requests outstanding on each (closed loop), shared among T
 *   client threads, for a warmup and then a measured window that ends after --duration or after
 *   N replies, whichever comes first. Reports replies, errors, requests per second and the
 *   latency distribution, and with --server-pid the server's peak RSS. With --protocol zmq (the
 *   default) the connections are DEALER sockets speaking protobuf to mxcached; with --protocol
 *   policy they are TCP or unix sockets speaking the Postfix policy delegation protocol, as
 *   smtpd does, to mxcache-policy, postgrey or any policy server. This file owns the command
 *   line, the report and main(); bench.h is the private interface of the other modules
 *   (bench_run.c and bench_policy.c run the load, bench_req.c builds requests and parses
 *   replies, bench_hist.c keeps latencies).
 *
 *   --workload triplets asks greylisting questions: a fraction R of them with a triplet (client
 *   /24, sender, recipient) never seen before, the rest repeating the K triplets of a fixed pool,
 *   and counts the answers as accepted, deferred, rejected or other. --prewarm asks each pool
 *   triplet once and stops; run it once, wait for the greylisting delay, and run it again, and
 *   the pool's triplets pass from then on.
 *
 *   --workload verify-hit and verify-probe ask recipient-verification questions (Checks at RCPT
 *   from one client, recipients in --domain, which needs a verify.routes entry in mxcached, with
 *   greylisting off). verify-hit first asks each of K pool addresses once, in passes until all
 *   are cached (bounded by --prewarm-time), then measures answers from the cache; verify-probe
 *   asks only addresses never seen before, so that each Check waits for one SMTP probe of the
 *   backend, and measures probes per second. Answers are counted by rule: verify_positive
 *   (and for verify-probe verify_negative) are the measured replies, verify_pending (the probe
 *   outlasted verify.wait) is counted apart, and anything else is other and unexpected.
 *
 *   check-hit whitelists 198.18.0.0/15 (for BENCH_WL_TTL_MS) before the run, and whitelist-add
 *   writes client entries 10.x.y.z with the same expiry: point it at a test service, not at
 *   production.
 *
 * EXIT STATUS
 *   0 the run completed; 1 other failure (including an error reply to the setup request);
 *   2 usage error; 3 no reply from the service within 5 s at the start.
 *
 * SECURITY
 *   Runs with the invoker's privileges and trusts its command line. Replies are untrusted: they
 *   are decoded into a bounded arena and only their error text is printed, cleaned of control
 *   characters and capped. */
#include "bench.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "duration.h"
#include "mxc_err.h"

static const char usage_text[] =
    "Usage: mxcache-bench [OPTIONS]\n"
    "\n"
    "Load generator for mxcached and Postfix policy servers: keeps SOCKETS x INFLIGHT requests\n"
    "outstanding and reports throughput and latency.\n"
    "\n"
    "Options:\n"
    "  --protocol P         zmq     protobuf over ZeroMQ to mxcached (default)\n"
    "                       policy  the Postfix policy delegation protocol, as smtpd speaks it\n"
    "                               to check_policy_service (mxcache-policy, postgrey, ...)\n"
    "  --server ENDPOINT    zmq: tcp://HOST:PORT or ipc://PATH (default " BENCH_DEFAULT_SERVER ");\n"
    "                       policy: HOST:PORT, tcp://HOST:PORT, inet:HOST:PORT or unix:PATH\n"
    "                       (default " BENCH_POLICY_DEFAULT_SERVER ")\n"
    "  --workload NAME      check-hit   Check inside a whitelisted network (the bench first\n"
    "                                   whitelists 198.18.0.0/15 for an hour)\n"
    "                       check-miss  Check that matches nothing: the default answer (default\n"
    "                                   with zmq)\n"
    "                       whitelist-add  add client 10.x.y.z entries: one durable write each\n"
    "                       triplets    greylisting questions at RCPT, new and repeated\n"
    "                                   triplets (the only workload, and the default, with policy)\n"
    "                       verify-hit  Check of --keys pool recipients in --domain, cached by a\n"
    "                                   prewarm first: rule verify_positive expected\n"
    "                       verify-probe  Check of a never-seen recipient in --domain each: one\n"
    "                                   SMTP probe of the backend per request\n"
    "  --new-ratio R        triplets: fraction of requests with a never-seen triplet (client\n"
    "                       /24, sender, recipient), the rest repeat the --keys pool (default 0.5)\n"
    "  --prewarm            triplets: ask each pool triplet once (no warmup, no new triplets) and\n"
    "                       stop; twice, a greylisting delay apart, makes the pool pass\n"
    "  --domain D           verify-*: the recipients' domain, routed in mxcached's verify.routes\n"
    "                       (default " BENCH_DEFAULT_DOMAIN ")\n"
    "  --prewarm-time D     verify-hit: time for the prewarm, all passes (default 60 s, at most\n"
    "                       600 s); it ends early once every pool address is cached\n"
    "  --sockets S          connections (default 8, 1-1024)\n"
    "  --inflight W         requests outstanding per connection (default 16 with zmq, 1-4096;\n"
    "                       1 with policy, as Postfix, up to 64 pipelined)\n"
    "  --threads T          client threads sharing the sockets (default 1, at most S and 64)\n"
    "  --duration D         measured time: seconds (10, 2.5) or with a unit (500ms, 2m);\n"
    "                       default 10, at most 600 s\n"
    "  --requests N         also stop after N measured replies\n"
    "  --warmup D           unmeasured time before (default 1 s, at most 60 s)\n"
    "  --keys K             distinct recipients, addresses or pool triplets cycled (default\n"
    "                       100000, 1-16000000); verify-hit: each is probed once by the prewarm\n"
    "  --server-pid PID     report the service's peak RSS (VmHWM of /proc/PID/status)\n"
    "  --json               also print the result as one JSON line\n"
    "  --echo               zmq: the server is the reference echo (mxbench-echo), which sends\n"
    "                       each request back: any reply with a waiting id counts; the\n"
    "                       workload only shapes the requests (check-hit: a Check)\n"
    "  --help               this text\n"
    "\n"
    "Exit status: 0 done, 1 failure, 2 usage error, 3 no reply within 5 s at the start.\n";

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, BENCH_PROGNAME ": ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry '" BENCH_PROGNAME " --help'.\n");
    return BENCH_EXIT_USAGE;
}

/* parse_u64 - a decimal number in [min, max] into *out; false for anything else. */
static bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (!s || *s < '0' || *s > '9')
        return false;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* parse_seconds - seconds ("10", "0.5") or a duration with a unit ("500ms", "2m") into ms. */
static bool parse_seconds(const char *s, uint64_t *ms)
{
    char *end;
    double v;

    if (duration_parse(s, 1000, ms) == MXC_OK)
        return true;
    if (!s || *s < '0' || *s > '9')
        return false;
    errno = 0;
    v = strtod(s, &end);
    if (errno || *end || !(v >= 0) || v > 1e9)
        return false;
    *ms = (uint64_t)(v * 1000.0 + 0.5);
    return true;
}

static bool parse_workload(const char *s, enum bench_workload *w)
{
    static const struct {
        const char *name;
        enum bench_workload w;
    } names[] = {
        {"check-hit", BENCH_CHECK_HIT},
        {"check-miss", BENCH_CHECK_MISS},
        {"whitelist-add", BENCH_WHITELIST_ADD},
        {"triplets", BENCH_TRIPLETS},
        {"verify-hit", BENCH_VERIFY_HIT},
        {"verify-probe", BENCH_VERIFY_PROBE},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i].name) == 0) {
            *w = names[i].w;
            return true;
        }
    return false;
}

static const char *workload_name(enum bench_workload w)
{
    switch (w) {
    case BENCH_CHECK_HIT:
        return "check-hit";
    case BENCH_CHECK_MISS:
        return "check-miss";
    case BENCH_TRIPLETS:
        return "triplets";
    case BENCH_VERIFY_HIT:
        return "verify-hit";
    case BENCH_VERIFY_PROBE:
        return "verify-probe";
    default:
        return "whitelist-add";
    }
}

static const char *protocol_name(enum bench_protocol p)
{
    return p == BENCH_PROTO_POLICY ? "policy" : "zmq";
}

/* domain_ok - whether s is a domain name the bench may put in recipients: labels of letters,
 * digits and '-' (not at a label's ends), 1-63 bytes each, separated by single dots, at most
 * BENCH_DOMAIN_MAX bytes. */
static bool domain_ok(const char *s)
{
    size_t len = strlen(s), label = 0;

    if (len == 0 || len > BENCH_DOMAIN_MAX)
        return false;
    for (size_t i = 0; i <= len; i++) {
        char c = s[i];
        if (c == '.' || c == '\0') {
            if (label == 0 || label > 63 || s[i - 1] == '-')
                return false;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   (c == '-' && label > 0)) {
            label++;
        } else {
            return false;
        }
    }
    return true;
}

/* parse_ratio - a number from 0 to 1 ("0.5", "1") into *out. */
static bool parse_ratio(const char *s, double *out)
{
    char *end;
    double v;

    if (!s || ((*s < '0' || *s > '9') && *s != '.'))
        return false;
    errno = 0;
    v = strtod(s, &end);
    if (errno || *end || !(v >= 0 && v <= 1))
        return false;
    *out = v;
    return true;
}

/* run_nonce - a number below 20^6 that differs between runs (time and process id), so that
 * each run's new triplets are new to a store that earlier runs filled. */
static uint64_t run_nonce(void)
{
    struct timespec ts;
    uint64_t x;

    clock_gettime(CLOCK_REALTIME, &ts);
    x = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^ ((uint64_t)getpid() << 40);
    x ^= x >> 33;
    x *= UINT64_C(0xff51afd7ed558ccd);
    x ^= x >> 33;
    return x % 64000000u;
}

/* vmhwm_kb - the VmHWM line of /proc/PID/status in kB, or -1 when it cannot be read. */
static long long vmhwm_kb(long pid)
{
    char path[64], line[256];
    long long kb = -1;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    if (!(f = fopen(path, "r")))
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) {
            kb = strtoll(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

enum {
    OPT_SERVER = 256,
    OPT_SOCKETS,
    OPT_INFLIGHT,
    OPT_THREADS,
    OPT_DURATION,
    OPT_REQUESTS,
    OPT_WARMUP,
    OPT_WORKLOAD,
    OPT_KEYS,
    OPT_SERVER_PID,
    OPT_JSON,
    OPT_ECHO,
    OPT_HELP,
    OPT_PROTOCOL,
    OPT_NEW_RATIO,
    OPT_PREWARM,
    OPT_DOMAIN,
    OPT_PREWARM_TIME,
};

/* parse_args - fills o from argv. Returns -1 to go on, else an exit code (after --help or a
 * message). */
static int parse_args(int argc, char **argv, struct bench_opts *o)
{
    static const struct option longopts[] = {
        {"server", required_argument, NULL, OPT_SERVER},
        {"sockets", required_argument, NULL, OPT_SOCKETS},
        {"inflight", required_argument, NULL, OPT_INFLIGHT},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"duration", required_argument, NULL, OPT_DURATION},
        {"requests", required_argument, NULL, OPT_REQUESTS},
        {"warmup", required_argument, NULL, OPT_WARMUP},
        {"workload", required_argument, NULL, OPT_WORKLOAD},
        {"keys", required_argument, NULL, OPT_KEYS},
        {"server-pid", required_argument, NULL, OPT_SERVER_PID},
        {"json", no_argument, NULL, OPT_JSON},
        {"echo", no_argument, NULL, OPT_ECHO},
        {"protocol", required_argument, NULL, OPT_PROTOCOL},
        {"new-ratio", required_argument, NULL, OPT_NEW_RATIO},
        {"prewarm", no_argument, NULL, OPT_PREWARM},
        {"domain", required_argument, NULL, OPT_DOMAIN},
        {"prewarm-time", required_argument, NULL, OPT_PREWARM_TIME},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    uint64_t v;
    int c;
    bool server_set = false, inflight_set = false, workload_set = false, ratio_set = false;
    bool domain_set = false, prewarm_time_set = false;

    *o = (struct bench_opts){
        .server = BENCH_DEFAULT_SERVER,
        .sockets = BENCH_DEFAULT_SOCKETS,
        .inflight = BENCH_DEFAULT_INFLIGHT,
        .threads = BENCH_DEFAULT_THREADS,
        .duration_ms = BENCH_DEFAULT_DURATION_MS,
        .warmup_ms = BENCH_DEFAULT_WARMUP_MS,
        .keys = BENCH_DEFAULT_KEYS,
        .workload = BENCH_CHECK_MISS,
        .new_ratio = 0.5,
        .domain = BENCH_DEFAULT_DOMAIN,
        .prewarm_ms = BENCH_DEFAULT_PREWARM_MS,
    };
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_SERVER:
            if (!*optarg)
                return usage_error("--server needs an endpoint%s", "");
            o->server = optarg;
            server_set = true;
            break;
        case OPT_PROTOCOL:
            if (strcmp(optarg, "zmq") == 0)
                o->protocol = BENCH_PROTO_ZMQ;
            else if (strcmp(optarg, "policy") == 0)
                o->protocol = BENCH_PROTO_POLICY;
            else
                return usage_error("--protocol: '%s' is not zmq or policy", optarg);
            break;
        case OPT_NEW_RATIO:
            if (!parse_ratio(optarg, &o->new_ratio))
                return usage_error("--new-ratio: '%s' is not a number from 0 to 1", optarg);
            ratio_set = true;
            break;
        case OPT_PREWARM:
            o->prewarm = true;
            break;
        case OPT_DOMAIN:
            if (!domain_ok(optarg))
                return usage_error("--domain: '%s' is not a domain name of at most 128 bytes", optarg);
            o->domain = optarg;
            domain_set = true;
            break;
        case OPT_PREWARM_TIME:
            if (!parse_seconds(optarg, &v) || v == 0 || v > BENCH_MAX_PREWARM_MS)
                return usage_error("--prewarm-time: '%s' is not a duration above 0 and at most 600 s",
                                   optarg);
            o->prewarm_ms = v;
            prewarm_time_set = true;
            break;
        case OPT_SOCKETS:
            if (!parse_u64(optarg, 1, BENCH_MAX_SOCKETS, &v))
                return usage_error("--sockets: '%s' is not a number from 1 to 1024", optarg);
            o->sockets = (unsigned)v;
            break;
        case OPT_INFLIGHT:
            if (!parse_u64(optarg, 1, BENCH_MAX_INFLIGHT, &v))
                return usage_error("--inflight: '%s' is not a number from 1 to 4096", optarg);
            o->inflight = (unsigned)v;
            inflight_set = true;
            break;
        case OPT_THREADS:
            if (!parse_u64(optarg, 1, BENCH_MAX_THREADS, &v))
                return usage_error("--threads: '%s' is not a number from 1 to 64", optarg);
            o->threads = (unsigned)v;
            break;
        case OPT_DURATION:
            if (!parse_seconds(optarg, &v) || v == 0 || v > BENCH_MAX_DURATION_MS)
                return usage_error("--duration: '%s' is not a duration above 0 and at most 600 s", optarg);
            o->duration_ms = v;
            break;
        case OPT_WARMUP:
            if (!parse_seconds(optarg, &v) || v > BENCH_MAX_WARMUP_MS)
                return usage_error("--warmup: '%s' is not a duration of at most 60 s", optarg);
            o->warmup_ms = v;
            break;
        case OPT_REQUESTS:
            if (!parse_u64(optarg, 1, BENCH_MAX_REQUESTS, &v))
                return usage_error("--requests: '%s' is not a positive number", optarg);
            o->requests = v;
            break;
        case OPT_WORKLOAD:
            if (!parse_workload(optarg, &o->workload))
                return usage_error("--workload: '%s' is not check-hit, check-miss, whitelist-add, "
                                   "triplets, verify-hit or verify-probe", optarg);
            workload_set = true;
            break;
        case OPT_KEYS:
            if (!parse_u64(optarg, 1, BENCH_MAX_KEYS, &v))
                return usage_error("--keys: '%s' is not a number from 1 to 16000000", optarg);
            o->keys = v;
            break;
        case OPT_SERVER_PID:
            if (!parse_u64(optarg, 1, INT_MAX, &v))
                return usage_error("--server-pid: '%s' is not a process id", optarg);
            o->server_pid = (long)v;
            break;
        case OPT_JSON:
            o->json = true;
            break;
        case OPT_ECHO:
            o->echo = true;
            break;
        case OPT_HELP:
            fputs(usage_text, stdout);
            return BENCH_EXIT_OK;
        default:
            if (optopt)
                return usage_error("option '%s' needs an argument", argv[optind - 1]);
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (o->protocol == BENCH_PROTO_POLICY) {
        if (!server_set)
            o->server = BENCH_POLICY_DEFAULT_SERVER;
        if (!inflight_set)
            o->inflight = BENCH_POLICY_DEFAULT_INFLIGHT;
        if (!workload_set)
            o->workload = BENCH_TRIPLETS;
        if (o->workload != BENCH_TRIPLETS)
            return usage_error(
                "--protocol policy asks greylisting questions: only --workload triplets%s", "");
        if (o->inflight > BENCH_POLICY_MAX_INFLIGHT)
            return usage_error(
                "--inflight: at most 64 requests are pipelined with --protocol policy%s", "");
    }
    if (o->echo && (o->protocol != BENCH_PROTO_ZMQ || o->prewarm || bench_is_verify(o->workload)))
        return usage_error("--echo goes with --protocol zmq, without --prewarm or verify-*%s", "");
    if (o->workload != BENCH_TRIPLETS && (ratio_set || o->prewarm))
        return usage_error("--new-ratio and --prewarm go with --workload triplets%s", "");
    if (!bench_is_verify(o->workload) && domain_set)
        return usage_error("--domain goes with --workload verify-hit or verify-probe%s", "");
    if (o->workload != BENCH_VERIFY_HIT && prewarm_time_set)
        return usage_error("--prewarm-time goes with --workload verify-hit%s", "");
    if (o->prewarm) {
        /* Each pool triplet once: the run ends with reply number --keys. */
        o->new_ratio = 0;
        o->warmup_ms = 0;
        o->requests = o->keys;
    }
    o->nonce = run_nonce();
    if (o->threads > o->sockets)
        return usage_error("--threads must not exceed --sockets%s", "");
    if ((uint64_t)o->sockets * o->inflight > BENCH_MAX_SLOTS)
        return usage_error("--sockets x --inflight must not exceed 262144%s", "");
    if (o->server_pid && vmhwm_kb(o->server_pid) < 0) {
        char pid[32];
        snprintf(pid, sizeof pid, "%ld", o->server_pid);
        return usage_error("--server-pid: cannot read VmHWM of process %s", pid);
    }
    return -1;
}

/* ---- report ---- */

struct figures {
    double seconds, rps;
    double p50, p90, p99, p999, max, mean;  /* microseconds */
    long long hwm_kb;                       /* -1: not asked or unreadable */
};

static double us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

static void figures_of(const struct bench_opts *o, const struct bench_result *r, struct figures *f)
{
    const struct bench_hist *h = &r->hist;

    f->seconds = (double)r->elapsed_ns / 1e9;
    f->rps = f->seconds > 0 ? (double)r->replies / f->seconds : 0;
    f->p50 = us(bench_hist_percentile(h, 50));
    f->p90 = us(bench_hist_percentile(h, 90));
    f->p99 = us(bench_hist_percentile(h, 99));
    f->p999 = us(bench_hist_percentile(h, 99.9));
    f->max = us(h->max);
    f->mean = h->count ? us(h->sum / h->count) : 0;
    f->hwm_kb = o->server_pid ? vmhwm_kb(o->server_pid) : -1;
}

static void print_block(const struct bench_opts *o, const struct bench_result *r, const struct figures *f)
{
    printf("workload      %s\n", workload_name(o->workload));
    printf("protocol      %s\n", protocol_name(o->protocol));
    printf("server        %s\n", o->server);
    if (o->workload == BENCH_TRIPLETS) {
        if (o->prewarm)
            printf("triplets      prewarm: each of %" PRIu64 " pool triplets once\n", o->keys);
        else
            printf("triplets      new ratio %.3f, pool of %" PRIu64 "\n", o->new_ratio, o->keys);
    }
    if (o->workload == BENCH_VERIFY_HIT) {
        printf("recipients    pool of %" PRIu64 " in %s\n", o->keys, o->domain);
        printf("prewarm       %" PRIu64 " of %" PRIu64 " cached after %" PRIu64 " pass%s, %.3f s; first "
               "pass:", r->prewarm_settled, o->keys, r->prewarm_passes,
               r->prewarm_passes == 1 ? "" : "es", (double)r->prewarm_ns / 1e9);
        for (int k = 0; k < BENCH_RULES; k++)
            if (r->prewarm_rules[k])
                printf(" %s %" PRIu64, bench_rule_name((enum bench_rule)k), r->prewarm_rules[k]);
        printf("\n");
    } else if (o->workload == BENCH_VERIFY_PROBE) {
        printf("recipients    never seen before, in %s\n", o->domain);
    }
    printf("sockets       %u\n", o->sockets);
    printf("inflight      %u per socket\n", o->inflight);
    printf("threads       %u\n", o->threads);
    printf("duration      %.3f s measured (%s), warmup %.3f s\n", f->seconds,
           r->count_limited ? "request limit" : "time limit", (double)o->warmup_ms / 1000.0);
    printf("replies       %" PRIu64 "\n", r->replies);
    printf("errors        %" PRIu64 "%s%s\n", r->errors, r->first_error[0] ? "  first: " : "",
           r->first_error);
    printf("unexpected    %" PRIu64 "\n", r->unexpected);
    printf("lost          %" PRIu64 " (no reply within 5 s%s)\n", r->lost,
           o->protocol == BENCH_PROTO_POLICY ? ", or on a closed connection" : "");
    if (o->protocol == BENCH_PROTO_POLICY)
        printf("disconnects   %" PRIu64 " (closed by the server, failed, or after a bad reply)\n",
               r->disconnects);
    if (o->workload == BENCH_TRIPLETS) {
        double n = r->replies ? (double)r->replies : 1;
        printf("answers       accepted %" PRIu64 " (%.1f%%)  deferred %" PRIu64
               " (%.1f%%)  rejected %" PRIu64 "  other %" PRIu64 "\n",
               r->classes[BENCH_CLASS_ACCEPT], 100.0 * (double)r->classes[BENCH_CLASS_ACCEPT] / n,
               r->classes[BENCH_CLASS_DEFER], 100.0 * (double)r->classes[BENCH_CLASS_DEFER] / n,
               r->classes[BENCH_CLASS_REJECT], r->classes[BENCH_CLASS_OTHER]);
    }
    if (bench_is_verify(o->workload)) {
        printf("answers      ");
        for (int k = 0; k < BENCH_RULES; k++)
            printf(" %s %" PRIu64, bench_rule_name((enum bench_rule)k), r->rules[k]);
        if (r->first_other[0])
            printf("  (first other: %s)", r->first_other);
        printf("\n");
        printf("measured      %s only (requests/s and latency)\n",
               o->workload == BENCH_VERIFY_HIT ? "verify_positive" : "verify_positive and verify_negative");
    }
    printf("requests/s    %.1f\n", f->rps);
    printf("latency (us)  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f\n", f->p50,
           f->p90, f->p99, f->p999, f->max, f->mean);
    if (o->server_pid) {
        if (f->hwm_kb >= 0)
            printf("server peak   %lld kB VmHWM (pid %ld)\n", f->hwm_kb, o->server_pid);
        else
            printf("server peak   unknown (pid %ld gone)\n", o->server_pid);
    }
}

/* json_string - s as a JSON string on stdout. */
static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void print_json(const struct bench_opts *o, const struct bench_result *r, const struct figures *f)
{
    printf("{\"workload\":\"%s\",\"protocol\":\"%s\",\"server\":", workload_name(o->workload),
           protocol_name(o->protocol));
    json_string(o->server);
    printf(",\"sockets\":%u,\"inflight\":%u,\"threads\":%u,\"duration_s\":%.3f,\"warmup_s\":%.3f,"
           "\"limit\":\"%s\",\"replies\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"unexpected\":%" PRIu64
           ",\"lost\":%" PRIu64 ",\"sent\":%" PRIu64 ",\"requests_per_s\":%.1f,"
           "\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p99_9\":%.1f,\"max\":%.1f,"
           "\"mean\":%.1f}",
           o->sockets, o->inflight, o->threads, f->seconds, (double)o->warmup_ms / 1000.0,
           r->count_limited ? "requests" : "duration", r->replies, r->errors, r->unexpected, r->lost,
           r->sent, f->rps, f->p50, f->p90, f->p99, f->p999, f->max, f->mean);
    if (o->protocol == BENCH_PROTO_POLICY)
        printf(",\"disconnects\":%" PRIu64, r->disconnects);
    if (o->workload == BENCH_TRIPLETS)
        printf(",\"new_ratio\":%.3f,\"keys\":%" PRIu64 ",\"prewarm\":%s,\"accepted\":%" PRIu64
               ",\"deferred\":%" PRIu64 ",\"rejected\":%" PRIu64 ",\"other\":%" PRIu64,
               o->new_ratio, o->keys, o->prewarm ? "true" : "false", r->classes[BENCH_CLASS_ACCEPT],
               r->classes[BENCH_CLASS_DEFER], r->classes[BENCH_CLASS_REJECT],
               r->classes[BENCH_CLASS_OTHER]);
    if (bench_is_verify(o->workload)) {
        printf(",\"domain\":");
        json_string(o->domain);
        if (o->workload == BENCH_VERIFY_HIT)
            printf(",\"keys\":%" PRIu64, o->keys);
        printf(",\"rules\":{");
        for (int k = 0; k < BENCH_RULES; k++)
            printf("%s\"%s\":%" PRIu64, k ? "," : "", bench_rule_name((enum bench_rule)k), r->rules[k]);
        printf("}");
        if (r->first_other[0]) {
            printf(",\"first_other_rule\":");
            json_string(r->first_other);
        }
    }
    if (o->workload == BENCH_VERIFY_HIT) {
        /* Flat names with a prefix, so that a key of "rules" appears once in the line. */
        printf(",\"prewarm_passes\":%" PRIu64 ",\"prewarm_s\":%.3f,\"prewarm_cached\":%" PRIu64,
               r->prewarm_passes, (double)r->prewarm_ns / 1e9, r->prewarm_settled);
        for (int k = 0; k < BENCH_RULES; k++)
            printf(",\"prewarm_first_%s\":%" PRIu64, bench_rule_name((enum bench_rule)k),
                   r->prewarm_rules[k]);
    }
    if (r->first_error[0]) {
        printf(",\"first_error\":");
        json_string(r->first_error);
    }
    if (o->server_pid) {
        printf(",\"server_pid\":%ld,\"server_vmhwm_kb\":", o->server_pid);
        if (f->hwm_kb >= 0)
            printf("%lld", f->hwm_kb);
        else
            printf("null");
    }
    printf("}\n");
}

int main(int argc, char **argv)
{
    struct bench_opts o;
    struct bench_result *r;
    struct figures f;
    int rc = parse_args(argc, argv, &o);

    if (rc >= 0)
        return rc;
    /* The result holds the merged histogram (about 60 KB): keep it off the stack. */
    if (!(r = malloc(sizeof *r))) {
        fprintf(stderr, BENCH_PROGNAME ": out of memory\n");
        return BENCH_EXIT_FAIL;
    }
    rc = o.protocol == BENCH_PROTO_POLICY ? bench_policy_run(&o, r) : bench_run(&o, r);
    if (rc == BENCH_EXIT_OK) {
        figures_of(&o, r, &f);
        print_block(&o, r, &f);
        if (o.json)
            print_json(&o, r, &f);
    }
    free(r);
    return rc;
}
