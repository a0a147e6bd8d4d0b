/* The decision state made from one config (see policy.h). */
#include "policy.h"

#include <stdio.h>
#include <stdlib.h>

struct policy *policy_create(struct config *cfg, void (*report)(void *arg, const char *msg),
                             void *arg)
{
    struct wlfile_errors errs;
    char err[512];
    struct policy *pol = calloc(1, sizeof *pol);

    if (!pol) {
        report(arg, "out of memory");
        config_free(cfg);
        return NULL;
    }
    pol->cfg = cfg;
    pol->auth = auth_create(cfg, report, arg);
    if (!pol->auth) {
        policy_free(pol);
        return NULL;
    }
    pol->gl = greylist_create(cfg, err, sizeof err);
    if (!pol->gl) {
        report(arg, err);
        policy_free(pol);
        return NULL;
    }
    wlfile_errors_init(&errs);
    pol->wf = wlfile_load((const char *const *)cfg->whitelist_client_files.items,
                          cfg->whitelist_client_files.n,
                          (const char *const *)cfg->whitelist_recipient_files.items,
                          cfg->whitelist_recipient_files.n, &errs);
    if (!pol->wf) {
        for (size_t i = 0; i < errs.nmsg; i++)
            report(arg, errs.msg[i]);
        if (errs.count > errs.nmsg) {
            snprintf(err, sizeof err, "... and %zu more errors in whitelist files", errs.count - errs.nmsg);
            report(arg, err);
        }
        if (errs.count == 0)
            report(arg, "cannot load the whitelist files: out of memory");
        wlfile_errors_fini(&errs);
        policy_free(pol);
        return NULL;
    }
    wlfile_errors_fini(&errs);
    return pol;
}

void policy_free(struct policy *pol)
{
    if (!pol)
        return;
    /* The greylist and the whitelist files borrow the config: they go first. */
    greylist_destroy(pol->gl);
    wlfile_free(pol->wf);
    auth_free(pol->auth);
    config_free(pol->cfg);
    free(pol);
}
