/* Static whitelists read from files, in postgrey's formats, so that operators can bring their
 * whitelist_clients and whitelist_recipients files (and their *.local companions) along as they
 * are. The files are named in mxcached's config; this module knows nothing about the config, the
 * store or the wire: it loads files into an immutable set and answers two questions.
 *
 * FILE FORMAT (both kinds; as postgrey 1.37 reads them)
 *   Everything from '#' to the end of the line is a comment (also inside a /regex/: write \x23
 *   for a literal '#'); leading and trailing white space is ignored; blank lines are skipped.
 *   One entry per line. Matching is case-insensitive (ASCII).
 *
 *   Client files (whitelist_clients):
 *     /regex/          a Perl-compatible regular expression (PCRE2, caseless, unanchored unless
 *                      it says ^ or $) matched against the client's host name; no white space
 *     192.0.2.7        one IPv4 address
 *     192.0.2.0/24     an IPv4 network in CIDR notation (host bits are ignored)
 *     192.0.2  192.0.2.  a partial address: the /24 (three octets), /16 (two) or /8 (one) it
 *                      starts; a trailing dot is optional
 *     2001:db8::1      one IPv6 address; 2001:db8::/32 an IPv6 network
 *     example.com      a host name: matches the client name example.com and every name that
 *                      ends in ".example.com"
 *   Names and regexes match only a client name that Postfix reports (a forward-confirmed name);
 *   the name "unknown", an empty name and a name longer than WLFILE_MAX_NAME never match. An
 *   IPv4-mapped IPv6 client address (::ffff:192.0.2.7) counts as its IPv4 address.
 *
 *   Recipient files (whitelist_recipients):
 *     /regex/          matched against the whole recipient address
 *     user@domain      that address, and its extended forms user+ext@domain
 *     user@            user and user+ext at any domain
 *     domain           every address at domain and at its subdomains
 *   The recipient splits into local part and domain at its last '@'.
 *
 * ERRORS
 *   Unlike postgrey, which warns and skips bad lines, wlfile_load refuses the whole set when any
 *   line is bad, and reports every error as "FILE:LINE: message" (a file that cannot be opened or
 *   read: "FILE: message"). A missing file is an error (postgrey is silent about a missing
 *   *.local file; the config should simply not name it).
 *
 * THREAD-SAFETY
 *   A loaded wlfile never changes: any number of threads may call the match functions at once
 *   without locks. Reload by loading a new wlfile and swapping the pointer.
 *
 * SECURITY
 *   The files are trusted configuration, but bounded all the same (line length, entries per file,
 *   error messages kept). The strings matched come from SMTP clients: they are length-checked
 *   before use, and each regex match runs under PCRE2 match and depth limits, so a pathological
 *   pattern costs bounded time per request (a match that hits a limit counts as no match). */
#ifndef MXCACHED_WLFILE_H
#define MXCACHED_WLFILE_H

#include <stdbool.h>
#include <stddef.h>

#define WLFILE_MAX_LINE 4096          /* bytes in a line, without its newline */
#define WLFILE_MAX_ENTRIES 1000000    /* entries in one file */
#define WLFILE_MAX_ERRORS 64          /* error messages kept by one wlfile_load */
#define WLFILE_MAX_NAME 255           /* longest client name that can match (bytes, DNS limit) */
#define WLFILE_MAX_RECIPIENT 1024     /* longest recipient that can match (bytes) */
#define WLFILE_MATCH_LIMIT 100000     /* PCRE2 match limit per regex and subject */
#define WLFILE_DEPTH_LIMIT 1000       /* PCRE2 backtracking depth limit per regex and subject */

/* What went wrong in one wlfile_load. Initialize with wlfile_errors_init before the load, release
 * with wlfile_errors_fini. */
struct wlfile_errors {
    size_t count;                  /* errors found; may exceed nmsg */
    size_t nmsg;                   /* messages kept, at most WLFILE_MAX_ERRORS, in file order */
    char *msg[WLFILE_MAX_ERRORS];  /* "FILE:LINE: message", malloc'd, printable ASCII */
};

void wlfile_errors_init(struct wlfile_errors *errs);
void wlfile_errors_fini(struct wlfile_errors *errs); /* frees the messages; errs reusable */

struct wlfile;

/* wlfile_load - reads the client files and then the recipient files, each in the order given.
 * Returns the loaded set (free it with wlfile_free), or NULL when any file could not be read or
 * any line is bad; then every error found (up to WLFILE_MAX_ERRORS messages) is appended to errs
 * (may be NULL). Out of memory is reported as an error too. No files at all gives an empty set.
 * The file names are copied (they appear in the "why" of a match). Blocks on file I/O. */
struct wlfile *wlfile_load(const char *const *client_files, size_t nclient, const char *const *recipient_files,
                           size_t nrcpt, struct wlfile_errors *errs);

/* wlfile_free - NULL-safe. */
void wlfile_free(struct wlfile *wf);

/* wlfile_match_client - whether the client is whitelisted by a client file: its address (IPv4 or
 * IPv6 text, as Postfix reports it) lies in a listed network, or its name (NULL, "" or "unknown":
 * none) is a listed name or below one, or matches a listed regex. Looks in that order: networks
 * from the longest prefix, names from the full name up, regexes in file order, and writes
 * "FILE:LINE" of the first entry found into why (truncated to whylen; why may be NULL). Entries
 * that say the same thing as an earlier one (same network, same name) report the earlier line.
 * A malformed address matches no network. Never blocks. wf NULL: false. */
bool wlfile_match_client(const struct wlfile *wf, const char *client_address, const char *client_name, char *why,
                         size_t whylen);

/* wlfile_match_recipient - whether recipient is whitelisted by a recipient file; looks for the
 * address (and its unextended forms), then user@, then the domain from the full domain up, then
 * regexes in file order, and writes "FILE:LINE" of the first entry found into why as above.
 * NULL, "" or a recipient longer than WLFILE_MAX_RECIPIENT matches nothing. */
bool wlfile_match_recipient(const struct wlfile *wf, const char *recipient, char *why, size_t whylen);

enum wlfile_which { WLFILE_CLIENTS = 1, WLFILE_RECIPIENTS = 2, WLFILE_ALL = 3 };

/* wlfile_count - the entries read from the client files, the recipient files, or both
 * (duplicates included; comments and blank lines are not entries). wf NULL: 0. */
size_t wlfile_count(const struct wlfile *wf, enum wlfile_which which);

#endif
