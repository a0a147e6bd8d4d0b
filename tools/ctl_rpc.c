/* mxcachectl's connection to mxcached: one libmxcache handle, created on the first request with
 * the --server endpoints (in failover order) and --timeout, and the mapping of its failures to
 * messages and exit codes (see ctl.h). Owns ctl->client. */
#include "ctl.h"

#include <string.h>

#include "keyfile.h"

#include <stdlib.h>
#include <string.h>

#include "duration.h"
#include "wire.h"

/* rpc_connect - creates ctl->client. Returns 0 or an exit code after reporting. */
static int rpc_connect(struct ctl *ctl)
{
    struct mxc_options opt;
    char err[256] = "";

    mxc_options_init(&opt);
    opt.timeout_ms = ctl->timeout_ms;
    /* Robustness: with several servers, move on after the library's failover time (or the
     * command's own, for a request that is slow to answer), but leave the last server at least a
     * third of the deadline; a single server gets the whole deadline. */
    if (ctl->failover_ms > 0)
        opt.failover_ms = ctl->failover_ms;
    if (opt.failover_ms > ctl->timeout_ms / 3)
        opt.failover_ms = ctl->timeout_ms / 3 > 0 ? ctl->timeout_ms / 3 : 1;
    /* CURVE: both keys or neither; the files are read here, only when a request is made. */
    const char *key = ctl->key ? ctl->key : getenv(CTL_KEY_ENV);
    const char *server_key = ctl->server_key ? ctl->server_key : getenv(CTL_SERVER_KEY_ENV);
    struct keyfile own;
    char skey[KEYFILE_Z85_LEN + 1];
    if (key && !*key)
        key = NULL;
    if (server_key && !*server_key)
        server_key = NULL;
    if (!key != !server_key)
        return ctl_error(CTL_EXIT_USAGE, "CURVE needs both --key (this operator's key pair, or $%s) "
                         "and --server-key (the service's public key, or $%s)", CTL_KEY_ENV,
                         CTL_SERVER_KEY_ENV);
    if (key) {
        if (keyfile_read(key, true, &own, err, sizeof err) != MXC_OK)
            return ctl_error(CTL_EXIT_USAGE, "--key: %s", err);
        if (keyfile_public(server_key, skey, NULL, 0, err, sizeof err) != MXC_OK) {
            memset(&own, 0, sizeof own);
            return ctl_error(CTL_EXIT_USAGE, "--server-key: %s", err);
        }
        opt.server_key = skey;
        opt.public_key = own.public_key;
        opt.secret_key = own.secret_key;
    }
    ctl->client = mxc_client_create(ctl->servers, ctl->nservers, &opt, err, sizeof err);
    memset(&own, 0, sizeof own);
    if (!ctl->client)
        return ctl_error(CTL_EXIT_UNAVAILABLE, "cannot set up a connection to %s: %s", ctl->servers[0],
                         err[0] ? err : "unknown error");
    return 0;
}

/* servers_text - "A" or "A, B, ..." for messages, into buf. */
static const char *servers_text(const struct ctl *ctl, char *buf, size_t len)
{
    size_t off = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < ctl->nservers && off < len; i++) {
        int n = snprintf(buf + off, len - off, "%s%s", i ? ", " : "", ctl->servers[i]);
        if (n < 0)
            break;
        off += (size_t)n;
    }
    return buf;
}

int ctl_rpc_call(struct ctl *ctl, Mxcache__Request *req, Mxcache__Reply__BodyCase want,
                 Mxcache__Reply **rep)
{
    char where[512], dur[32];
    Mxcache__Reply *r = NULL;
    int rc;

    *rep = NULL;
    if (!ctl->client && (rc = rpc_connect(ctl)) != 0)
        return rc;
    rc = mxc_call(ctl->client, req, 0, &r);
    switch (rc) {
    case MXC_OK:
        break;
    case MXC_ESERVER: {
        const Mxcache__Error *e = (r && r->body_case == MXCACHE__REPLY__BODY_ERROR) ? r->error : NULL;
        char *msg = ctl_fmt_clean(e && e->message && *e->message ? e->message : "(no message)");
        ctl_error(CTL_EXIT_FAIL, "%s: %s", e ? wire_error_name(e->code) : "error", msg ? msg : "?");
        free(msg);
        mxc_reply_free(r);
        return CTL_EXIT_FAIL;
    }
    case MXC_ETIMEDOUT: {
        const char *hs = mxc_handshake_error(ctl->client);
        return ctl_error(CTL_EXIT_UNAVAILABLE, "no answer from %s within %s%s%s",
                         servers_text(ctl, where, sizeof where),
                         duration_format((uint64_t)ctl->timeout_ms, dur, sizeof dur),
                         hs ? ": " : "", hs ? hs : "");
    }
    case MXC_EIO:
    case MXC_ECLOSED:
        return ctl_error(CTL_EXIT_UNAVAILABLE, "cannot reach %s: %s", servers_text(ctl, where, sizeof where),
                         mxc_client_error(ctl->client));
    default:
        return ctl_error(CTL_EXIT_FAIL, "request failed: %s (%s)", mxc_strerror(rc),
                         mxc_client_error(ctl->client));
    }
    if (!r || r->body_case != want) {
        mxc_reply_free(r);
        return ctl_error(CTL_EXIT_FAIL, "unexpected reply from the service");
    }
    *rep = r;
    return 0;
}

void ctl_rpc_close(struct ctl *ctl)
{
    mxc_client_destroy(ctl->client);
    ctl->client = NULL;
}
