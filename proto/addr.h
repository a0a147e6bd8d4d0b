/* Validation and canonical forms of mail addresses and domain names (RFC 5321), shared by every
 * component that stores, compares or probes them.
 *
 * Security: everything here is hostile input (it comes from remote SMTP clients through Postfix, or
 * from operators). A value that passes is bounded in length and has no CR, LF, NUL or other control
 * character (a space only inside a quoted local part, as RFC 5321 allows), so it can be written
 * into an SMTP command or a log line without injection.
 * Pure functions, thread-safe. */
#ifndef MXC_ADDR_H
#define MXC_ADDR_H

#include <stdbool.h>
#include <stddef.h>

#define ADDR_MAX_LOCAL 64    /* RFC 5321 4.5.3.1.1 */
#define ADDR_MAX_DOMAIN 255  /* RFC 5321 4.5.3.1.2 */
#define ADDR_MAX_PATH 256    /* RFC 5321 4.5.3.1.3, with the angle brackets */
#define ADDR_MAX_LABEL 63

/* addr_domain_canon - checks that in (len bytes) is a domain name (letter-digit-hyphen labels of
 * 1..63 bytes, at least one, at most ADDR_MAX_DOMAIN bytes, one optional trailing dot) and writes
 * it lower-cased without the trailing dot into out (outlen >= ADDR_MAX_DOMAIN + 1 is always
 * enough). Returns 0 or MXC_EINVAL (out is then an empty string). */
int addr_domain_canon(const char *in, size_t len, char *out, size_t outlen);

/* addr_mailbox_canon - checks that in is an RFC 5321 mailbox local@domain (local part a dot-atom
 * or a quoted string of printable ASCII, at most ADDR_MAX_LOCAL bytes; domain as above or an
 * address literal [IPv4] / [IPv6:...]) and writes it with the domain lower-cased into out; with
 * lower_local the local part is lower-cased too. Surrounding angle brackets are not accepted.
 * Returns 0 or MXC_EINVAL (out is then an empty string). */
int addr_mailbox_canon(const char *in, size_t len, bool lower_local, char *out, size_t outlen);

/* addr_domain_of - the part after the last '@' of a canonical mailbox (borrowed), or NULL. */
const char *addr_domain_of(const char *mailbox);

#endif
