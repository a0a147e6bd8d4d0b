/* The decision state made from one config: the config itself, the table of client keys and
 * networks, the greylist (with its Public Suffix List and key) and the whitelist files it names. A policy is made whole or not at all,
 * so that a SIGHUP with a broken key file or whitelist file keeps the running policy; once made
 * it is immutable and shared by the workers of the rounds that use it. */
#ifndef MXCACHED_POLICY_H
#define MXCACHED_POLICY_H

#include "auth.h"
#include "config.h"
#include "greylist.h"
#include "wlfile.h"

struct policy {
    struct config *cfg;
    struct auth *auth;   /* who may connect and what each key may send */
    struct greylist *gl; /* NULL when greylisting is off */
    struct wlfile *wf;   /* the whitelist files; empty when none are named */
};

/* policy_create - takes ownership of cfg (also on failure) and makes the rest from it. On
 * failure returns NULL after calling report(arg, text) once per error ("FILE:LINE: message" for
 * whitelist files; "security.client_keys[N]: ..." for key files). */
struct policy *policy_create(struct config *cfg, void (*report)(void *arg, const char *msg),
                             void *arg);

/* policy_free - frees the policy and everything in it; NULL-safe. */
void policy_free(struct policy *pol);

#endif
