/* mxcache-bench private interface, shared by tools/bench/mxcache-bench.c (command line, report,
 * main), bench_req.c (requests, greylisting triplets and reply classification, no I/O),
 * bench_run.c (ZeroMQ sockets, client threads, the measured run), bench_policy.c (the same over
 * the Postfix policy protocol on TCP or unix sockets) and bench_hist.c (latency histogram).
 *
 * Exit codes of mxcache-bench (also listed in the --help text):
 *   0  the run completed (errors and unexpected replies are reported, not failures)
 *   1  another failure: out of memory, socket setup, the service refused the setup request
 *   2  usage error
 *   3  the service is unreachable: no reply within BENCH_PROBE_TIMEOUT_MS at the start
 *
 * Limits are named here with their units; main() checks every option against them. */
#ifndef MXC_BENCH_H
#define MXC_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BENCH_PROGNAME "mxcache-bench"

enum bench_exit {
    BENCH_EXIT_OK = 0,
    BENCH_EXIT_FAIL = 1,
    BENCH_EXIT_USAGE = 2,
    BENCH_EXIT_UNAVAILABLE = 3,
};

#define BENCH_DEFAULT_SERVER "tcp://127.0.0.1:10041"
#define BENCH_DEFAULT_SOCKETS 8u
#define BENCH_MAX_SOCKETS 1024u
#define BENCH_DEFAULT_INFLIGHT 16u        /* requests outstanding per socket */
#define BENCH_MAX_INFLIGHT 4096u
#define BENCH_MAX_SLOTS 262144u           /* sockets x inflight, i.e. requests outstanding in all */
#define BENCH_DEFAULT_THREADS 1u
#define BENCH_MAX_THREADS 64u             /* also at most --sockets */
#define BENCH_DEFAULT_DURATION_MS 10000u
#define BENCH_MAX_DURATION_MS 600000u     /* every run is bounded in time */
#define BENCH_DEFAULT_WARMUP_MS 1000u
#define BENCH_MAX_WARMUP_MS 60000u
#define BENCH_DEFAULT_KEYS 100000u
#define BENCH_MAX_KEYS 16000000u          /* whitelist-add addresses come from 10.0.0.0/8 */
#define BENCH_MAX_REQUESTS 1000000000000ull
#define BENCH_PROBE_TIMEOUT_MS 5000       /* first reply at the start, else exit 3 */
#define BENCH_LOST_AFTER_NS 5000000000ull /* no reply after this long: lost, slot reused */
#define BENCH_POLL_SLICE_MS 100           /* longest zmq_poll wait; the loop rechecks the clock */
#define BENCH_REQ_MAX 512                 /* largest request built; templates are far smaller */
#define BENCH_ARENA_SIZE 65536            /* per thread, for decoding one reply */
#define BENCH_MAX_REPLY 65536             /* ZMQ_MAXMSGSIZE of the client sockets */
#define BENCH_WL_TTL_MS 3600000u          /* entries the bench adds expire after an hour */

/* Recipient verification (--workload verify-hit, verify-probe). */
#define BENCH_DEFAULT_DOMAIN "example.com"
#define BENCH_DOMAIN_MAX 128              /* bytes of --domain */
#define BENCH_DEFAULT_PREWARM_MS 60000u   /* verify-hit: the prewarm's time, all passes */
#define BENCH_MAX_PREWARM_MS 600000u
#define BENCH_PREWARM_PASSES 1000         /* verify-hit: passes over the pool at most */
#define BENCH_PREWARM_PAUSE_MS 100        /* between two passes */
#define BENCH_PREWARM_SOCKETS 8u          /* verify-hit prewarm: its own shape, whatever S x W */
#define BENCH_PREWARM_INFLIGHT 32u        /* 256 Checks waiting at once: far below verify.max_probes,
                                           * and each waits less than verify.wait as long as the
                                           * backend answers 100 probes/s */
#define BENCH_RULE_NAME_MAX 48            /* bytes kept of an unexpected rule's name */

/* The Postfix policy protocol (--protocol policy). */
#define BENCH_POLICY_DEFAULT_SERVER "127.0.0.1:10023" /* postgrey's usual port */
#define BENCH_POLICY_DEFAULT_INFLIGHT 1u  /* Postfix asks one question at a time per connection */
#define BENCH_POLICY_MAX_INFLIGHT 64u     /* pipelined requests per connection */
#define BENCH_POLICY_REQ_MAX 1024         /* largest request built (about 600 bytes) */
#define BENCH_POLICY_REPLY_MAX 4096       /* a longer reply is a protocol error: reconnect */
#define BENCH_RECONNECT_MS 100            /* wait before reconnecting a closed connection */
#define BENCH_CONNECT_TIMEOUT_MS 5000     /* a connect that takes longer fails */

enum bench_protocol {
    BENCH_PROTO_ZMQ,     /* protobuf over ZeroMQ DEALER sockets, straight to mxcached */
    BENCH_PROTO_POLICY,  /* Postfix policy delegation over TCP or unix sockets */
};

enum bench_workload {
    BENCH_CHECK_HIT,     /* Check inside the whitelisted 198.18.0.0/15: rule "whitelist" */
    BENCH_CHECK_MISS,    /* Check that matches nothing: rule "default" */
    BENCH_WHITELIST_ADD, /* WhitelistAdd of client 10.x.y.z: one durable write each */
    BENCH_TRIPLETS,      /* greylisting: new triplets mixed with repeats from a pool of --keys */
    BENCH_VERIFY_HIT,    /* Check of a pool recipient in --domain, cached: rule "verify_positive" */
    BENCH_VERIFY_PROBE,  /* Check of a never-seen recipient in --domain: one SMTP probe each */
};

/* bench_is_verify - whether w is a recipient-verification workload. */
#define bench_is_verify(w) ((w) == BENCH_VERIFY_HIT || (w) == BENCH_VERIFY_PROBE)

/* How a verification answer counts (--workload verify-*): by the rule of the Check reply. */
enum bench_rule {
    BENCH_RULE_POSITIVE,  /* verify_positive: the backend accepted the recipient */
    BENCH_RULE_NEGATIVE,  /* verify_negative: it rejected it (5xx) */
    BENCH_RULE_PENDING,   /* verify_pending: the probe outlasted verify.wait (450) */
    BENCH_RULE_TEMPFAIL,  /* verify_tempfail: a failed probe, remembered for verify.tempfail_ttl */
    BENCH_RULE_REFUSED,   /* verify_refused: a limit refused the probe (client, route, busy) */
    BENCH_RULE_ACCEPTALL, /* verify_acceptall: the domain accepts every address; no probe */
    BENCH_RULE_OTHER,     /* any other rule (greylist_*, whitelist, default, verify_bad_address) */
    BENCH_RULES
};

/* How an answer to a greylisting question counts (--workload triplets). */
enum bench_class {
    BENCH_CLASS_ACCEPT,  /* DUNNO, OK, PREPEND ...: no objection */
    BENCH_CLASS_DEFER,   /* 4xx, DEFER, DEFER_IF_PERMIT, DEFER_IF_REJECT */
    BENCH_CLASS_REJECT,  /* 5xx, REJECT */
    BENCH_CLASS_OTHER,   /* any other action */
    BENCH_CLASSES
};

/* The parsed command line; strings are borrowed from argv. */
struct bench_opts {
    const char *server;
    enum bench_protocol protocol;
    unsigned sockets, inflight, threads;
    uint64_t duration_ms, warmup_ms;
    uint64_t requests;        /* 0: no count limit, only --duration */
    uint64_t keys;
    enum bench_workload workload;
    double new_ratio;         /* triplets: fraction of requests with a never-seen triplet */
    bool prewarm;             /* triplets: ask each pool triplet once, then stop; set internally
                               * for the prewarm passes of verify-hit */
    const char *domain;       /* verify-*: the recipients' domain (valid, at most
                               * BENCH_DOMAIN_MAX bytes) */
    uint64_t prewarm_ms;      /* verify-hit: the prewarm's time bound, all passes */
    uint64_t nonce;           /* makes this run's new triplets differ from every other run's */
    bool json;
    long server_pid;          /* 0: not given */
    bool echo;                /* zmq: the server echoes each request (mxbench-echo): a reply
                               * counts when it carries a waiting id; no setup request */
};

/* ---- bench_hist.c: log-linear latency histogram (HdrHistogram-like) ----
 *
 * Each power of two above 2^BENCH_HIST_SUB_BITS is split into 2^BENCH_HIST_SUB_BITS buckets, so
 * a percentile is reported with a relative error below 1/128 (0.8%); values below 256 are exact.
 * count, sum, min and max are exact. Not thread-safe: one per thread, merged at the end. */
#define BENCH_HIST_SUB_BITS 7
#define BENCH_HIST_BUCKETS ((64 - BENCH_HIST_SUB_BITS + 1) << BENCH_HIST_SUB_BITS)

struct bench_hist {
    uint64_t count, sum, min, max;
    uint64_t buckets[BENCH_HIST_BUCKETS];
};

void bench_hist_init(struct bench_hist *h);
void bench_hist_record(struct bench_hist *h, uint64_t v);
/* bench_hist_merge - adds src's samples into dst; src unchanged. */
void bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src);
/* bench_hist_percentile - the value at or below which p percent (0 < p <= 100) of the samples
 * lie, as the highest value of its bucket capped at max; 0 when the histogram is empty. */
uint64_t bench_hist_percentile(const struct bench_hist *h, double p);

/* bench_mono_ns - CLOCK_MONOTONIC in nanoseconds. */
uint64_t bench_mono_ns(void);

/* ---- bench_req.c: requests and replies ---- */

/* Greylisting triplets (--workload triplets). Pool triplet k (0 <= k < --keys) is always the same:
 * client 10.B.C.H (one /24 per key up to 65536 keys), sender p<k>@sender.example.net, recipient
 * r<k>@example.com. New triplet n of a run is client 11.0.0.0-99.255.255.255 (a /24 that no pool
 * triplet uses), sender and recipient made of the run's nonce and n, so a new triplet is never
 * seen before, not even by another run against the same store. The variable parts are written
 * with the letters g-z only: no digits or hex that a sender normalization (postgrey replaces
 * numbers, mxcached strips VERP numbers and hex) could fold into one key. */
#define BENCH_TRIPLET_ADDR_MAX 80

struct bench_triplet {
    char client[16];                        /* dotted quad */
    char sender[BENCH_TRIPLET_ADDR_MAX];
    char recipient[BENCH_TRIPLET_ADDR_MAX];
    uint8_t clientlen, senderlen, recipientlen;
};

/* Chooses the triplet of every request of one thread. Not thread-safe: one per thread. */
struct bench_picker {
    uint64_t rng;                 /* xorshift64* state */
    uint64_t threshold;           /* a draw below it is a new triplet */
    bool all_new;
    uint64_t key, keys;           /* next pool key, pool size */
    uint64_t new_next, new_step;  /* next new-triplet number, step between this thread's numbers */
    uint64_t nonce;
    _Atomic uint64_t *shared_key; /* --prewarm: pool keys are taken from here, each once */
};

/* bench_pick_init - the picker of thread number thread (of o->threads). shared_key is used with
 * --prewarm (it must be 0 at the start and outlive the picker) and ignored otherwise. */
void bench_pick_init(struct bench_picker *p, const struct bench_opts *o, unsigned thread,
                     _Atomic uint64_t *shared_key);

/* bench_pick_next - the next request's triplet into *t. Returns false, leaving *t alone, only
 * with --prewarm once every pool triplet was handed out. */
bool bench_pick_next(struct bench_picker *p, struct bench_triplet *t);

/* bench_triplet_make - the triplet of pool key k (is_new false) or new triplet number k of the
 * run with this nonce (is_new true). */
void bench_triplet_make(bool is_new, uint64_t k, uint64_t nonce, struct bench_triplet *t);

/* bench_req_policy_build - the Postfix policy request for triplet t (RCPT state, every attribute
 * of SMTPD_POLICY_README up to Postfix 3.7, the empty line included) into buf
 * (BENCH_POLICY_REQ_MAX bytes); seq varies the per-message attributes (instance, client_port,
 * size). Returns its length; never fails. */
size_t bench_req_policy_build(const struct bench_triplet *t, uint64_t seq, char *buf);

/* bench_req_policy_reply - looks for one complete reply (attribute lines ended by an empty line)
 * at the start of buf. Returns 0 when more bytes are needed, -1 when the reply is malformed (a
 * line without '=', a NUL, or BENCH_POLICY_REPLY_MAX bytes without its end), else the reply's
 * length including the empty line, with *cls set from its action attribute (a reply without one
 * is malformed). Unknown attributes are ignored. Touches no socket. */
long bench_req_policy_reply(const char *buf, size_t len, enum bench_class *cls);

/* bench_req_action_class - how the action word(s) of a policy reply count. */
enum bench_class bench_req_action_class(const char *action, size_t len);

/* A request template: the packed body without its one varying field (the recipient of a Check,
 * the value of a WhitelistAdd). bench_req_build adds the envelope, the id and that field around
 * the packed bytes, so that a request costs a few copies, no protobuf packing and no malloc.
 *
 * Recipients of the verification workloads: pool address k (verify-hit, and the setup request of
 * both) is "vpool<k>@D", the same in every run, so that a second run finds the pool cached; new
 * address n of a run (verify-probe) is "vnew" + the run's nonce in letters + "x<n>@D", never
 * seen before, not even by another run against the same cache. */
struct bench_req {
    enum bench_workload workload;
    uint32_t body_field;   /* field number of the body in Request (10 check, 16 whitelist_add) */
    uint32_t var_field;    /* field number of the varying field inside the body */
    uint8_t body[256];
    size_t bodylen;
    char domain[BENCH_DOMAIN_MAX + 2]; /* "@" and the domain of the recipients */
    size_t domainlen;
    uint64_t nonce;        /* verify-probe: makes this run's addresses new */
};

/* bench_req_init - packs the template of o->workload (with o->domain and o->nonce for the
 * verification workloads) and checks one built request by decoding it. For BENCH_TRIPLETS the
 * template is the Check without client, sender and recipient. Returns 0, or MXC_EPROTO /
 * MXC_ENOMEM with a reason in err (a bug, or a --domain that main() should have refused). */
int bench_req_init(struct bench_req *t, const struct bench_opts *o, char *err, size_t errlen);

/* bench_req_build - the request with this id for key number key (0 <= key < BENCH_MAX_KEYS;
 * verify-probe: any new-address number) into buf (BENCH_REQ_MAX bytes). Returns its length;
 * never fails. Thread-safe. */
size_t bench_req_build(const struct bench_req *t, uint64_t id, uint64_t key, uint8_t *buf);

/* bench_req_build_pool - as bench_req_build, with the recipient of pool key k whatever the
 * workload's own (the setup request and the prewarm of the verification workloads). */
size_t bench_req_build_pool(const struct bench_req *t, uint64_t id, uint64_t k, uint8_t *buf);

/* bench_req_build_triplet - the Check of triplet tr with this id (workload BENCH_TRIPLETS) into
 * buf (BENCH_REQ_MAX bytes). Returns its length; never fails. Thread-safe. */
size_t bench_req_build_triplet(const struct bench_req *t, uint64_t id, const struct bench_triplet *tr,
                               uint8_t *buf);

/* bench_req_setup - the packed request the workload needs answered before the run (check-hit:
 * whitelist 198.18.0.0/15; verify-*: the Check of pool address 0, which mxcached may probe;
 * the others: one request of the workload, as a probe) in a malloc'd *buf the caller frees.
 * Returns 0 or MXC_ENOMEM. */
int bench_req_setup(const struct bench_req *t, uint64_t id, uint8_t **buf, size_t *len);

/* How a reply counts. */
enum bench_verdict {
    BENCH_REPLY_OK,          /* the body the workload expects (check-hit: rule "whitelist") */
    BENCH_REPLY_ERROR,       /* an Error body */
    BENCH_REPLY_UNEXPECTED,  /* does not decode, or another body or rule than expected */
};

/* Reply decoding memory: a bump allocator reset for every reply, so that classifying a reply
 * costs no malloc. One per thread. */
struct bench_arena {
    size_t used;
    _Alignas(16) uint8_t mem[BENCH_ARENA_SIZE];
};

/* bench_req_classify - decodes a reply in arena (reset first) and says how it counts. *id is set
 * to its id (0 when it does not decode). When the reply is an error and errtext is not NULL, the
 * error's name and message are copied into errtext (cleaned of control characters). For
 * BENCH_TRIPLETS every Check reply is BENCH_REPLY_OK and *cls says its action. For the
 * verification workloads every Check reply is BENCH_REPLY_OK and *rule says its rule; for
 * BENCH_RULE_OTHER the rule's name, cleaned and capped, goes to errtext (when not NULL);
 * bench_rule_expected then says whether it is the answer the workload measures. */
enum bench_verdict bench_req_classify(const struct bench_req *t, struct bench_arena *arena,
                                      const uint8_t *buf, size_t len, uint64_t *id,
                                      char *errtext, size_t errlen, enum bench_class *cls,
                                      enum bench_rule *rule);

/* bench_rule_expected - whether a Check answered by rule r is what workload w measures:
 * verify-hit: verify_positive; verify-probe: a probe's verdict, verify_positive or
 * verify_negative (verify_pending is counted apart, not as unexpected). */
bool bench_rule_expected(enum bench_workload w, enum bench_rule r);

/* bench_rule_name - the rule's name as mxcached gives it ("other" for BENCH_RULE_OTHER). */
const char *bench_rule_name(enum bench_rule r);

/* ---- bench_run.c: the measured run ---- */

struct bench_result {
    uint64_t replies;       /* expected replies in the measured window */
    uint64_t errors;        /* error replies in the window */
    uint64_t unexpected;    /* unknown id, wrong body or rule, undecodable: whole run */
    uint64_t sent;          /* requests sent, whole run including warmup */
    uint64_t lost;          /* no reply within BENCH_LOST_AFTER_NS (slot reused): whole run */
    uint64_t disconnects;   /* policy: connections closed by the server or after an error */
    uint64_t classes[BENCH_CLASSES]; /* triplets: the measured replies by class */
    uint64_t rules[BENCH_RULES]; /* verify-*: the Check answers in the window by rule; only
                                  * those bench_rule_expected are in replies and hist */
    char first_other[BENCH_RULE_NAME_MAX]; /* verify-*: first rule counted as other, "" if none */
    uint64_t prewarm_passes;     /* verify-hit: passes the prewarm made */
    uint64_t prewarm_ns;         /* verify-hit: its time */
    uint64_t prewarm_settled;    /* verify-hit: pool addresses cached (positive or negative)
                                  * according to the last pass */
    uint64_t prewarm_rules[BENCH_RULES]; /* verify-hit: the answers of its first pass */
    uint64_t elapsed_ns;    /* length of the measured window */
    bool count_limited;     /* ended by --requests rather than --duration */
    char first_error[160];  /* first error reply, "" if none */
    struct bench_hist hist; /* latency of the expected replies in the window, ns */
};

/* bench_run - probes the service (and for check-hit adds the whitelist entry; for verify-hit asks
 * each pool address, in passes until every one is cached, at most BENCH_PREWARM_PASSES and
 * o->prewarm_ms), then runs the workload for warmup plus duration or until o->requests replies.
 * Blocks for at most BENCH_PROBE_TIMEOUT_MS + prewarm + warmup + duration plus thread start-up.
 * Returns BENCH_EXIT_OK with *r filled, or another enum bench_exit after printing the reason to
 * stderr. */
int bench_run(const struct bench_opts *o, struct bench_result *r);

/* ---- bench_policy.c: the measured run over the Postfix policy protocol ---- */

/* bench_policy_run - as bench_run, over --sockets policy connections with --inflight requests
 * pipelined on each, spread over --threads threads (epoll, non-blocking sockets). A connection
 * that the server closes, that sends a malformed reply or that leaves a request unanswered for
 * BENCH_LOST_AFTER_NS is closed, its outstanding requests count as lost, and it is reopened
 * after BENCH_RECONNECT_MS. Same bounds and return values as bench_run. */
int bench_policy_run(const struct bench_opts *o, struct bench_result *r);

#endif
