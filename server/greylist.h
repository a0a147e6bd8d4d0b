/* Greylisting: the decision for one Check question, from the greylist and auto-whitelist (AWL)
 * keyspaces, with postgrey's semantics. The handler asks it after the static whitelists.
 *
 * Keys. The greylist key is "CLIENT/SENDER/RECIPIENT" and the AWL key is "CLIENT", where
 *   CLIENT     the client's network, masked to greylist.ipv4_prefix or ipv6_prefix
 *              ("192.0.2.0/24", "2001:db8:1:2::/64"; an IPv4-mapped IPv6 address counts as IPv4),
 *              or, with client_identity = domain and a forward-confirmed client_name (not
 *              "unknown"), the registered domain of that name by the Public Suffix List
 *              ("mail-a1.example.co.uk" -> "example.co.uk"), falling back to the network when
 *              the name has none. A client_address that is no IP address is keyed as its raw
 *              text (sender_raw_text).
 *   SENDER     sender_normalize's form of the envelope sender (sender.h).
 *   RECIPIENT  the recipient, lower-cased (local part too), or its raw text when it is not a
 *              valid mailbox. It comes last, so that "flush --domain D" (keys ending in "@D")
 *              finds the triplets of a recipient domain.
 * With greylist.hash_keys both keys are stored as the hex of keyed BLAKE2b-256 (libsodium
 * crypto_generichash) with the 32-byte secret of greylist.key_file: the store then holds no
 * address in clear, and flush --domain cannot match greylist or AWL keys.
 *
 * Decision (greylist_check), when greylisting is on and applies to the recipient's domain
 * (greylist.domains empty or the domain at or below one of them, and not at or below one of
 * greylist.exempt_domains):
 *   AWL record with passes >= awl_passes (awl_passes > 0)           -> pass, rule "awl"
 *   no greylist record, or a pending one past the retry window       -> defer, "greylist_new";
 *       writes PENDING {first_seen = last_seen = now, attempts 1, expires now + retry_window}
 *   pending, now < first_seen + delay                                -> defer, "greylist_early";
 *       updates last_seen and attempts (the expiry stays)
 *   pending, delay over                                              -> pass, "greylist_pass";
 *       writes PASSED {passed_at = now, passes 1, expires now + max_age}, counts an AWL pass,
 *       and with greylist.header gives the X-Greylist header to prepend
 *   passed                                                           -> pass, "greylist_known";
 *       refreshes expires = now + max_age, last_seen, passes + 1, counts an AWL pass; the
 *       refresh is written at most once per GREYLIST_REFRESH_MS (an hour), so passes counts
 *       the hours with mail rather than every mail
 * AWL passes of one client count at most once per GREYLIST_AWL_COUNT_MS (an hour).
 * The writes of "greylist_new" and "greylist_pass" decide what the next attempt is told, so the
 * handler commits them with fsync before replying; the others (refreshes, counters) go out in a
 * lazy commit when a round has nothing else (see handler_commit).
 * With delay 0 the first attempt takes the "greylist_pass" branch at once (no header: nothing
 * was delayed). An AWL pass is passes + 1, first_seen kept, last_seen = now, expires = now +
 * awl_max_age; an AWL hit refreshes last_seen and the expiry at most once per GREYLIST_REFRESH_MS.
 * Every write goes into the caller's batch, so it is durable before the reply is sent.
 *
 * Explain: with explain set, the decision is the same but nothing is written (not even
 * last_seen), and a readable account is appended to the caller's text.
 *
 * XXX Two workers deciding the same triplet in the same moment (two MXes asking about one
 * message at once, each request on its own worker and batch) both read the old record and both
 * write; the later commit wins. That is benign: both writes come from the same state at nearly
 * the same time, so at worst first_seen moves by milliseconds, one attempt or pass goes
 * uncounted, or the AWL is reached one pass later. No decision is made that a sequential order
 * could not have made.
 *
 * Thread-safety: a greylist is immutable after greylist_create; any number of workers may call
 * greylist_check at once (libpsl lookups only read the context). It borrows its config, which
 * must outlive it: both live in one config snapshot of the service. */
#ifndef MXCACHED_GREYLIST_H
#define MXCACHED_GREYLIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "mxcache.pb-c.h"
#include "store.h"

/* Index values of greylist.client_identity, in the order of its choices in params.h. */
enum { GREYLIST_IDENTITY_NETWORK, GREYLIST_IDENTITY_DOMAIN };

#define GREYLIST_KEY_FILE_BYTES 32            /* secret bytes read from greylist.key_file */
#define GREYLIST_CLIENT_MAX 255               /* longest client identity (a domain name) */
#define GREYLIST_KEY_MAX 800                  /* longest greylist key in clear, with its NUL */
#define GREYLIST_TEXT_MAX 512                 /* reply text and header, with the NUL */
#define GREYLIST_REFRESH_MS (3600 * 1000)     /* a hit rewrites its record at most hourly */
#define GREYLIST_AWL_COUNT_MS (3600 * 1000)   /* a client's passes count once per hour at most */

/* What decided. GREYLIST_SKIPPED: greylisting is off or does not apply to the recipient's
 * domain, and the next check decides. */
enum greylist_rule {
    GREYLIST_SKIPPED,
    GREYLIST_AWL,
    GREYLIST_NEW,
    GREYLIST_EARLY,
    GREYLIST_PASS,
    GREYLIST_KNOWN,
};

struct greylist_result {
    enum greylist_rule rule;
    bool defer;                       /* GREYLIST_NEW, GREYLIST_EARLY: defer with the fields below */
    uint32_t smtp_code;               /* with defer: greylist.reply_code */
    const char *status;               /* with defer: greylist.reply_status (borrowed from config) */
    char text[GREYLIST_TEXT_MAX];     /* with defer: greylist.reply_text, {remaining} substituted */
    uint64_t remaining_s;             /* with defer: seconds until a retry can pass */
    char prepend[GREYLIST_TEXT_MAX];  /* GREYLIST_PASS with greylist.header: the header line */
    uint64_t fact_age_ms;             /* age of the record that decided (0 for a new one) */
};

struct greylist;

/* greylist_create - the greylist of cfg (borrowed; must outlive the result). Loads the Public
 * Suffix List (psl_latest) when client_identity is domain, and the secret key when hash_keys is
 * set. Returns NULL with the reason in err when the key file cannot be read or is shorter than
 * GREYLIST_KEY_FILE_BYTES, the Public Suffix List cannot be loaded, or out of memory. */
struct greylist *greylist_create(const struct config *cfg, char *err, size_t errlen);

/* greylist_destroy - frees gl and wipes its key; NULL-safe. */
void greylist_destroy(struct greylist *gl);

/* greylist_check - decides question q at now_ms (see above) into *res, reading through batch b
 * and (unless explain) writing into it. With expl non-NULL, one line per step ("greylist: ...\n")
 * is appended to the NUL-terminated text in expl (expllen bytes in all; cut when full). The
 * question's fields must be bounded by the caller (the handler's limits). Returns 0, MXC_ESTORE
 * with err filled when the store cannot be read, MXC_ENOMEM, or MXC_EINVAL when the batch
 * refuses a write (err filled). After an error the caller answers with an error, not with *res;
 * a write that went into the batch before it only records an attempt that was really seen. */
int greylist_check(const struct greylist *gl, store_batch *b, const Mxcache__CheckRequest *q,
                   uint64_t now_ms, bool explain, struct greylist_result *res, char *expl,
                   size_t expllen, char *err, size_t errlen);

/* greylist_rule_name - the rule name a Check reply carries: "awl", "greylist_new",
 * "greylist_early", "greylist_pass", "greylist_known" ("" for GREYLIST_SKIPPED). */
const char *greylist_rule_name(enum greylist_rule rule);

/* greylist_client - the client identity of q as greylisting sees it (its network, or the
 * registered domain of its verified name), in clear, into out (GREYLIST_CLIENT_MAX + 1 bytes):
 * also the key of the per-client probe limit of verification. */
void greylist_client(const struct greylist *gl, const Mxcache__CheckRequest *q, char *out,
                     size_t outlen);

/* greylist_keys - the greylist and AWL keys q would be stored under (hashed with hash_keys),
 * for tests and diagnostics: key (GREYLIST_KEY_MAX bytes) and awl_key (GREYLIST_KEY_MAX bytes).
 * Returns 0. */
int greylist_keys(const struct greylist *gl, const Mxcache__CheckRequest *q, char *key,
                  char *awl_key);

#endif
