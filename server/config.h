/* mxcached's configuration: loading a libconfig file against the settings table in params.h,
 * validating it (every error with file and line), and the resulting typed struct.
 *
 * A struct config is immutable once loaded and owns all its strings. Nothing here logs: errors are
 * returned to the caller as text. */
#ifndef MXCACHED_CONFIG_H
#define MXCACHED_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "params.h"

/* Value types of the settings table. */
enum config_type { CONFIG_BOOL, CONFIG_INT, CONFIG_SIZE, CONFIG_DURATION, CONFIG_STRING, CONFIG_ENUM, CONFIG_LIST };

struct config_list {
    char **items;
    size_t n;
};

/* One field per setting in params.h, named by its field column. BOOL: bool; INT: long long;
 * SIZE: uint64_t bytes; DURATION: uint64_t milliseconds; STRING: char *; ENUM: int (index of
 * the choice); LIST: struct config_list. */
#define CONFIG_CTYPE_BOOL bool
#define CONFIG_CTYPE_INT long long
#define CONFIG_CTYPE_SIZE uint64_t
#define CONFIG_CTYPE_DURATION uint64_t
#define CONFIG_CTYPE_STRING char *
#define CONFIG_CTYPE_ENUM int
#define CONFIG_CTYPE_LIST struct config_list
#define CONFIG_FIELD(group, name, type, field, def, min, max, choices, reload, help) \
    CONFIG_CTYPE_##type field;
/* One element of verify.routes (MXCACHED_ROUTE_PARAMS). */
struct config_route {
    MXCACHED_ROUTE_PARAMS(CONFIG_FIELD)
};

struct config {
    MXCACHED_PARAMS(CONFIG_FIELD)
    struct config_route *routes; /* verify.routes, in the file's order */
    size_t nroutes;
    char *source;  /* path of the file it came from, or NULL for the embedded defaults */
};
#undef CONFIG_FIELD

#define CONFIG_ROUTE_HOSTS_MAX 8    /* hosts of one route */
#define CONFIG_ROUTE_DOMAINS_MAX 64 /* domains of one route */

/* config_route_for - the route whose domains cover domain (canonical: lower case), -1 when
 * none: an exact entry "example.com", or ".example.com" for a subdomain of it; the exact entry
 * of any route wins over a parent's ".domain". */
int config_route_for(const struct config *cfg, const char *domain);

/* config_route_host - splits a route host "name:port", "[v6]:port" or "name" (port 25) into
 * name (without brackets) and port. Returns 0, or MXC_EINVAL for anything else. */
int config_route_host(const char *host, char *name, size_t namelen, unsigned *port);

/* Index values of the ENUM settings, in the order of their choices in params.h. */
enum { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_NOTICE, LOG_LEVEL_WARNING, LOG_LEVEL_ERR };
enum { LOG_DECISIONS_OFF, LOG_DECISIONS_DEBUG, LOG_DECISIONS_INFO, LOG_DECISIONS_NOTICE };
enum { LOG_TARGET_AUTO, LOG_TARGET_STDERR, LOG_TARGET_SYSLOG };
enum { DEFAULT_ACTION_DUNNO, DEFAULT_ACTION_DEFER, DEFAULT_ACTION_REJECT };
/* log_facility: index into "mail|daemon|local0..local7"; config_facility() maps it to LOG_*. */

/* Error texts collected while loading, each "FILE:LINE: message" (or "FILE: message" when no line
 * applies). */
struct config_errors {
    char **msg;
    size_t n;
};

/* config_defaults - the embedded defaults; NULL only when out of memory. */
struct config *config_defaults(void);

/* config_load - reads path over the embedded defaults. Returns NULL when the file cannot be read
 * or has any error: a syntax error, an unknown group or setting, a wrong type, a value out of
 * range or not among the choices, or an inconsistent combination (for example default_action
 * defer with a 5xx default_code). Every error found is appended to errs (which the caller
 * initialises to {0} and releases with config_errors_fini), not just the first. */
struct config *config_load(const char *path, struct config_errors *errs);

/* config_free - frees a config; NULL-safe. (Not config_destroy: libconfig owns that name.) */
void config_free(struct config *cfg);

void config_errors_fini(struct config_errors *errs);

/* config_print - writes cfg in the config file's own syntax, one setting per line with its
 * explanation as a comment; the output loads back to an equal config. Returns 0 or MXC_EIO. */
int config_print(const struct config *cfg, FILE *out);

/* config_reload_diff - names of the settings that differ between old and new but are not
 * reloadable (a ", "-separated list written into buf; empty when none). Returns buf. */
char *config_reload_diff(const struct config *old, const struct config *new_, char *buf, size_t buflen);

/* config_keep_static - copies into new_ the running values (from old) of every setting that is
 * not reloadable, so that a reloaded config says what is actually in effect. Returns 0 or
 * MXC_ENOMEM (new_ then holds a mix; the caller discards it). */
int config_keep_static(struct config *new_, const struct config *old);

/* config_facility - the syslog LOG_* facility value of cfg->log_facility. */
int config_facility(const struct config *cfg);

#endif
