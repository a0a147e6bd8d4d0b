/* Wire helpers shared by mxcached, libmxcache and the tools: protocol version, packing of the
 * Request/Reply envelopes into malloc'd buffers, and the names of the protocol's enums as operators
 * type and read them ("verify", "defer", "positive", "client", ...).
 *
 * Owns nothing; every function is thread-safe. Unpack functions trust nothing in their input:
 * callers bound the size first (ZMQ_MAXMSGSIZE plus their own limit), then unpack here. */
#ifndef MXC_WIRE_H
#define MXC_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "mxcache.pb-c.h"

#define WIRE_VERSION 1u

/* The largest request or reply we ever build or accept; the service's own request limit
 * (server.max_request_size) is at most this. Replies (list pages) are bounded by page limits. */
#define WIRE_MAX_MESSAGE (16u * 1024u * 1024u)

/* wire_request_pack - packs req into a new malloc'd buffer; *buf freed by the caller with free().
 * Returns 0, MXC_ENOMEM, or MXC_ETOOBIG (more than WIRE_MAX_MESSAGE). */
int wire_request_pack(const Mxcache__Request *req, uint8_t **buf, size_t *len);
int wire_reply_pack(const Mxcache__Reply *rep, uint8_t **buf, size_t *len);
/* wire_message_pack - the same for any message (stored records). */
int wire_message_pack(const ProtobufCMessage *m, uint8_t **buf, size_t *len);

/* wire_request_unpack - decodes len bytes; NULL when they are not a valid Request. The result is
 * freed with mxcache__request__free_unpacked(r, NULL). Enum fields outside the known range are
 * rejected here, so callers can switch on them safely. */
Mxcache__Request *wire_request_unpack(const uint8_t *buf, size_t len);
Mxcache__Reply *wire_reply_unpack(const uint8_t *buf, size_t len);

/* wire_scalar_field - walks the top-level fields of packed protobuf bytes without unpacking and
 * returns in *value the last occurrence of field number `field` with wire type 0 (varint) or
 * 1 (fixed64, little-endian), as wire_type says. Returns 0, MXC_ENOENT when the field is absent,
 * MXC_EPROTO when the bytes are not well-formed protobuf (truncated, overlong varint, group
 * wire types, lengths past the end, field number 0 or above 2^29-1, or the wanted field with
 * another wire type), or MXC_EINVAL for NULL with a nonzero len. Cheap: no allocation. */
#define WIRE_TYPE_VARINT 0
#define WIRE_TYPE_FIXED64 1
int wire_scalar_field(const uint8_t *buf, size_t len, uint32_t field, int wire_type, uint64_t *value);

/* wire_peek_id - the id (field 2) of a packed Request that may be malformed or too large, so
 * that even an error reply reaches the right caller. 0 when it cannot be found. */
uint64_t wire_peek_id(const uint8_t *buf, size_t len);

/* wire_peek_body - which body a packed Request carries (its Mxcache__Request__BodyCase, the
 * body's field number), looked up without decoding, so that a request can be routed before it
 * is parsed: the body wire_request_unpack would give, that is the last member of the oneof
 * wherever it is (protobuf's rule), found by walking every top-level field and skipping its
 * value. BODY__NOT_SET when there is none. For bytes that do not decode the answer is only a
 * guess (the body tag seen last before the bytes went wrong). Cheap: no allocation, one pass. */
Mxcache__Request__BodyCase wire_peek_body(const uint8_t *buf, size_t len);

/* Name <-> value for the protocol enums. *_name never returns NULL ("?" for unknown values).
 * *_parse returns 0 and sets *out, or MXC_EINVAL for an unknown name (case-insensitive). */
const char *wire_keyspace_name(Mxcache__Keyspace ks);      /* verify greylist awl whitelist */
int wire_keyspace_parse(const char *name, Mxcache__Keyspace *out);
const char *wire_action_name(Mxcache__Action a);           /* dunno defer reject */
int wire_action_parse(const char *name, Mxcache__Action *out);
const char *wire_state_name(Mxcache__RecordState s);       /* any positive negative tempfail pending passed */
int wire_state_parse(const char *name, Mxcache__RecordState *out);
const char *wire_wlkind_name(Mxcache__WhitelistKind k);    /* any client client_name sender recipient */
int wire_wlkind_parse(const char *name, Mxcache__WhitelistKind *out);
const char *wire_error_name(Mxcache__ErrorCode c);         /* malformed too_large version ... */
const char *wire_body_name(Mxcache__Request__BodyCase c);  /* check get list ... (metrics, logs) */

#endif
