/* The recipient-verification cache (see verify.h): VerifyRecord in the verify keyspace, written
 * by the rules of verify.h, and the reply each cached state gives. */
#include "verify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mxc_err.h"
#include "record.h"

#define VERIFY_KS MXCACHE__KEYSPACE__KEYSPACE_VERIFY

/* copy - a NUL-terminated copy of s (NULL: "") cut to fit n bytes. */
static void copy(char *dst, size_t n, const char *s)
{
    snprintf(dst, n, "%s", s ? s : "");
}

int verify_lookup(store_batch *b, const char *address, uint64_t now_ms, struct verify_answer *out,
                  char *err, size_t errlen)
{
    Mxcache__VerifyRecord *r;
    char *val;
    size_t vallen;
    int rc;

    memset(out, 0, sizeof *out);
    if ((rc = record_batch_get(b, VERIFY_KS, address, &val, &vallen, err, errlen)) != MXC_OK || !val)
        return rc;
    r = mxcache__verify_record__unpack(NULL, vallen, (const uint8_t *)val);
    free(val);
    if (!r)
        return MXC_OK; /* Robustness: a record that does not unpack is a miss, probed anew */
    switch (r->state) {
    case MXCACHE__RECORD_STATE__STATE_POSITIVE: out->state = VERIFY_POSITIVE; break;
    case MXCACHE__RECORD_STATE__STATE_NEGATIVE: out->state = VERIFY_NEGATIVE; break;
    case MXCACHE__RECORD_STATE__STATE_TEMPFAIL: out->state = VERIFY_TEMPFAIL; break;
    default: out->state = VERIFY_MISS; break;
    }
    if (out->state != VERIFY_MISS) {
        out->refresh = out->state == VERIFY_POSITIVE && now_ms >= r->refresh_at_ms;
        out->code = r->smtp_code;
        copy(out->status, sizeof out->status, r->enhanced_status);
        copy(out->text, sizeof out->text, r->text);
        copy(out->backend, sizeof out->backend, r->backend);
        out->probed_at_ms = r->probed_at_ms;
    }
    mxcache__verify_record__free_unpacked(r, NULL);
    return MXC_OK;
}

int verify_record(const struct verify_conf *c, store_batch *b, const char *address,
                  const struct probe_result *r, uint64_t now_ms, bool *decisive, char *err,
                  size_t errlen)
{
    Mxcache__VerifyRecord rec = MXCACHE__VERIFY_RECORD__INIT, *old = NULL;
    char *val;
    size_t vallen;
    int rc;

    *decisive = false;
    if ((rc = record_batch_get(b, VERIFY_KS, address, &val, &vallen, err, errlen)) != MXC_OK)
        return rc;
    if (val) {
        old = mxcache__verify_record__unpack(NULL, vallen, (const uint8_t *)val);
        free(val);
    }
    Mxcache__RecordState was = old ? old->state : MXCACHE__RECORD_STATE__STATE_ANY;

    rec.first_seen_ms = old && old->first_seen_ms ? old->first_seen_ms : now_ms;
    rec.probed_at_ms = now_ms;
    rec.backend = (char *)r->backend;
    switch (r->outcome) {
    case PROBE_ACCEPTED:
    case PROBE_REJECTED:
        rec.state = r->outcome == PROBE_ACCEPTED ? MXCACHE__RECORD_STATE__STATE_POSITIVE
                                                 : MXCACHE__RECORD_STATE__STATE_NEGATIVE;
        rec.expires_at_ms = now_ms + (r->outcome == PROBE_ACCEPTED ? c->positive_ttl_ms : c->negative_ttl_ms);
        rec.refresh_at_ms = r->outcome == PROBE_ACCEPTED ? now_ms + c->refresh_after_ms : 0;
        rec.smtp_code = r->reply.code;
        rec.enhanced_status = (char *)r->reply.status;
        rec.text = (char *)r->reply.text;
        *decisive = was != rec.state;
        break;
    case PROBE_TEMPFAIL:
    case PROBE_FAILED:
        if (was == MXCACHE__RECORD_STATE__STATE_POSITIVE) {
            /* Robustness: a failed refresh never loses a good answer; it is retried no sooner
             * than a tempfail would be. */
            rec = *old;
            rec.base = (ProtobufCMessage)PROTOBUF_C_MESSAGE_INIT(&mxcache__verify_record__descriptor);
            rec.refresh_at_ms = now_ms + c->tempfail_ttl_ms;
            break;
        }
        if (was == MXCACHE__RECORD_STATE__STATE_NEGATIVE)
            goto out; /* a definitive answer stands until it expires */
        rec.state = MXCACHE__RECORD_STATE__STATE_TEMPFAIL;
        rec.expires_at_ms = now_ms + c->tempfail_ttl_ms;
        /* Only a 4xx to RCPT is the backend's word about the address; for anything else (a
         * timeout, a refused MAIL FROM, even a 5xx there) the record keeps no code, so that it can
         * never be taken for a rejection, and the reason goes to the text for operators. */
        rec.smtp_code = r->outcome == PROBE_TEMPFAIL ? r->reply.code : 0;
        rec.enhanced_status = r->outcome == PROBE_TEMPFAIL ? (char *)r->reply.status : "";
        rec.text = r->outcome == PROBE_TEMPFAIL ? (char *)r->reply.text : (char *)r->detail;
        break;
    }
    rc = record_batch_put(b, VERIFY_KS, address, &rec.base, err, errlen);
out:
    if (old)
        mxcache__verify_record__free_unpacked(old, NULL);
    if (rc != MXC_OK)
        *decisive = false;
    return rc;
}

/* backend_words - text without the "<address>: Recipient address rejected: " that Postfix's
 * smtpd adds again in front of a policy answer. */
static const char *backend_words(const char *text, const char *address)
{
    static const char said[] = ">: Recipient address rejected: ";
    size_t alen = strlen(address);

    if (text[0] == '<' && strncasecmp(text + 1, address, alen) == 0 &&
        strncmp(text + 1 + alen, said, sizeof said - 1) == 0)
        return text + 1 + alen + sizeof said - 1;
    return text;
}

void verify_reply(const struct verify_conf *c, const struct verify_answer *a, const char *address,
                  struct verify_reply *out)
{
    memset(out, 0, sizeof *out);
    switch (a->state) {
    case VERIFY_MISS:
    case VERIFY_POSITIVE:
        return;
    case VERIFY_NEGATIVE:
        copy(out->text, sizeof out->text, backend_words(a->text, address));
        if (c->reject_5xx && a->code >= 500 && a->code <= 599) {
            out->reject = true;
            out->code = a->code;
            copy(out->status, sizeof out->status, a->status);
            return;
        }
        /* Softened, as Postfix's unverified_recipient_reject_code = 450 does: the same words
         * as a temporary answer, its status moved to class 4. */
        out->defer = true;
        out->code = VERIFY_DEFER_CODE;
        if (a->status[0] == '5' && a->status[1] == '.') {
            copy(out->status, sizeof out->status, a->status);
            out->status[0] = '4';
        } else {
            copy(out->status, sizeof out->status, VERIFY_DEFER_STATUS);
        }
        return;
    case VERIFY_TEMPFAIL:
        /* Never 5xx: a tempfail is no verdict on the address. The backend's own 4xx words are
         * passed on; a failure to ask it is not described to the sender. */
        out->defer = true;
        out->code = VERIFY_DEFER_CODE;
        copy(out->status, sizeof out->status, VERIFY_DEFER_STATUS);
        if (a->code >= 400 && a->code <= 499 && a->text[0])
            snprintf(out->text, sizeof out->text, "%s: %.*s", VERIFY_TEMPFAIL_TEXT,
                     (int)(sizeof out->text - sizeof VERIFY_TEMPFAIL_TEXT - 2),
                     backend_words(a->text, address));
        else
            copy(out->text, sizeof out->text, VERIFY_TEMPFAIL_TEXT);
        return;
    }
}
