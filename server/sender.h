/* Normalization of envelope addresses for the greylist key, so that a retry of the same mail
 * gives the same key although senders put per-message tags into their return paths.
 *
 * sender_normalize, in this order:
 *   1. The null sender (empty, or "<>") becomes "<>". One pair of surrounding angle brackets is
 *      removed from any other value.
 *   2. A value that is not an RFC 5321 mailbox (addr_mailbox_canon) is keyed as its raw text:
 *      lower-cased, control characters removed, cut to SENDER_KEY_MAX bytes. Nothing is refused
 *      here: a broken sender is greylisted like any other.
 *   3. A mailbox is lower-cased as a whole, domain and local part.
 *   4. Rewritings that hide the original sender are undone, repeatedly (at most
 *      SENDER_MAX_UNWRAP times, for a BATV tag inside an SRS address and the like):
 *        SRS0: "srs0=HHH=TT=orig-domain=orig-local@fwd"         -> "orig-local@orig-domain"
 *        SRS1: "srs1=HHH=fwd1==HHH=TT=orig-domain=orig-local@fwd2" -> "orig-local@orig-domain"
 *              (the separator after srs0/srs1 may also be '+' or '-', as the SRS spec allows)
 *        BATV: "prvs=TAG=user@dom", "msprvs1=TAG=user@dom"      -> "user@dom"
 *              "prvs=user/TAG@dom" (the older form)             -> "user@dom"
 *              "btv1==TAG==user@dom" (Barracuda)                -> "user@dom"
 *      A rewriting whose result would be malformed (an empty local part, a domain that is not a
 *      domain name) is left alone.
 *   5. In the local part, as postgrey does: everything from the first '+' on is dropped (a
 *      subaddress extension, often a per-message VERP tag); then every run of 8 or more hex
 *      digits that contains at least one decimal digit becomes '#', and every remaining run of
 *      decimal digits becomes '#': "bounce-12345-678@lists.example" -> "bounce-#-#@lists.example",
 *      "msg-0a1b2c3d4e@x.example" -> "msg-#@x.example". A local part that would become empty
 *      is kept as it was.
 * The result never has control characters and is at most SENDER_KEY_MAX bytes.
 *
 * BUGS: step 5 merges senders that differ only in numbers ("user1@" and "user2@"); for
 * greylisting that costs nothing worth mentioning (the same client, the same recipient).
 *
 * Pure functions, thread-safe; everything given to them is hostile input. */
#ifndef MXCACHED_SENDER_H
#define MXCACHED_SENDER_H

#include <stddef.h>

#define SENDER_KEY_MAX 256  /* longest normalized sender or raw-text key, without the NUL */
#define SENDER_MAX_UNWRAP 4 /* most SRS/BATV layers removed from one address */

/* How sender_normalize keyed its input. */
enum sender_kind {
    SENDER_MAILBOX, /* a valid mailbox, normalized */
    SENDER_NULL,    /* the null sender, "<>" */
    SENDER_RAW,     /* not a mailbox: lower-cased raw text */
};

/* sender_normalize - the greylist form of the envelope sender in (NULL counts as empty) into out,
 * which must hold SENDER_KEY_MAX + 1 bytes (outlen smaller than 2 leaves out untouched and
 * returns SENDER_RAW). Never fails; returns how the value was keyed. */
enum sender_kind sender_normalize(const char *in, char *out, size_t outlen);

/* sender_raw_text - in (NULL counts as empty) lower-cased, with control characters and bytes
 * after SENDER_KEY_MAX dropped, into out (outlen >= 1; at most outlen - 1 bytes are written).
 * The fallback key of anything that is not a valid address: also used for recipients. Returns
 * out. */
char *sender_raw_text(const char *in, char *out, size_t outlen);

#endif
