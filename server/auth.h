/* auth - who may talk to mxcached: the CURVE public keys of the config (security.client_keys,
 * security.admin_keys, read from key files or given as Z85 text) and the networks allowed to
 * connect (security.allow). One table per policy: made by policy_create, so a reload with a bad
 * key file keeps the running table, and immutable afterwards (the ZAP thread and the main thread
 * read it without locks while their policy reference holds it).
 *
 * What each role may send is decided here too (auth_needs_admin): a client key may ask (Check,
 * Ping) and read (Get, List, Stats, WhitelistList); only an admin key may change state. Without
 * CURVE (no security.key_file) every client that can connect is trusted like an admin: that is
 * only allowed on loopback and ipc endpoints unless security.allow_insecure says otherwise. */
#ifndef MXCACHED_AUTH_H
#define MXCACHED_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mxcache.pb-c.h"
#include "keyfile.h"

struct config;

struct auth_key {
    char key[KEYFILE_Z85_LEN + 1];
    char name[KEYFILE_NAME_MAX + 1];
    bool admin;
};

/* A network of security.allow: IPv4 as IPv4-mapped IPv6, prefix counted on the 128 bits. */
struct auth_net {
    uint8_t addr[16];
    unsigned prefix;
};

struct auth {
    bool curve;                /* the service has a key pair: clients must present a listed key */
    struct auth_key *keys;     /* sorted by key */
    size_t nkeys;
    struct auth_net *nets;     /* empty: any address may connect */
    size_t nnets;
};

/* auth_net_parse - "192.0.2.0/24", "2001:db8::/32" or a single address into out. Host bits
 * set below the prefix are an error (the operator meant another network). Returns 0 or
 * MXC_EINVAL with a reason in why. */
int auth_net_parse(const char *s, struct auth_net *out, char *why, size_t whylen);

/* auth_create - the table of cfg: reads every key file named in security.client_keys and
 * admin_keys (a key in both lists is an admin). On failure returns NULL after calling
 * report(arg, text) once per error. */
struct auth *auth_create(const struct config *cfg, void (*report)(void *arg, const char *msg), void *arg);

/* auth_free - NULL-safe. */
void auth_free(struct auth *a);

/* auth_find - the entry of a Z85 public key, NULL when it is not listed. */
const struct auth_key *auth_find(const struct auth *a, const char *z85);

/* auth_address_allowed - whether a client at ip (text, as ZAP gives it; "" for ipc) may
 * connect: always for ipc, else when security.allow is empty or one of its networks holds it. */
bool auth_address_allowed(const struct auth *a, const char *ip);

/* auth_needs_admin - whether a request of this body changes state (admin keys only). */
bool auth_needs_admin(Mxcache__Request__BodyCase body);

#endif
