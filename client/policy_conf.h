/* policy_conf - the settings of mxcache-policy: one table (POLICY_PARAMS below) with each
 * setting's group, name, type, default, bounds and one-line explanation; loading a libconfig file
 * against it (every error with file and line), printing it, and parsing listen addresses.
 *
 * The hook has transport settings only (where to listen, where the service is, timeouts, what to
 * answer without the service, limits, monitoring, logging); every policy decision is made by
 * mxcached.
 *
 * A struct policy_conf is immutable once loaded and owns all its strings. Nothing here logs:
 * errors are returned as text. Trusts: nothing in the file; libconfig only for the syntax. */
#ifndef MXCACHE_POLICY_CONF_H
#define MXCACHE_POLICY_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Every setting: X(group, name, TYPE, field, default, min, max, choices, help).
 *
 * Types: BOOL (true/false); INT (integer); SIZE (bytes: an integer or a string such as "16K"); DURATION
 * (milliseconds in the struct; in the file an integer counts seconds, or a string with a unit:
 * "500ms", "5s", "5m"); STRING; MODE (file permissions as an octal string, "0660"); ENUM (one of
 * the '|'-separated choices, stored as its index); LIST (strings; the default is '|'-separated).
 * min/max bound INT, SIZE, DURATION (milliseconds) and MODE. The defaults live here and nowhere
 * else; deploy/mxcache-policy.conf shows each of them. */
#define POLICY_PARAMS(X)                                                                           \
    X("server", "listen", LIST, listen, "inet:127.0.0.1:10040", 0, 0, NULL,                        \
      "where Postfix connects: inet:HOST:PORT, HOST:PORT, [IPV6]:PORT, unix:PATH or /PATH")       \
    X("server", "unix_mode", MODE, unix_mode, "0660", 0, 0777, NULL,                               \
      "permissions of the unix sockets; Postfix's user needs write access")                       \
    X("server", "max_connections", INT, max_connections, "1000", 1, 100000, NULL,                 \
      "concurrent connections; one more is accepted and closed at once")                          \
    X("server", "idle_timeout", DURATION, idle_timeout, "300s", 1000, 86400000, NULL,              \
      "close a connection that has sent no request for this long")                                \
    X("server", "max_line", SIZE, max_line, "2048", 64, 65536, NULL,                               \
      "longest attribute line; a longer one closes the connection")                               \
    X("server", "max_request", SIZE, max_request, "16K", 256, 1048576, NULL,                       \
      "largest request (all its lines); a larger one closes the connection")                      \
    X("server", "max_attributes", INT, max_attributes, "100", 1, 10000, NULL,                      \
      "most attribute lines in one request; more close the connection")                           \
    X("server", "user", STRING, user, "", 0, 0, NULL,                                              \
      "started as root: listen, then run as this user; \"\": do not change user")                 \
    X("server", "allow_root", BOOL, allow_root, "false", 0, 0, NULL,                               \
      "run as root (without server.user) instead of refusing to start")                          \
    X("server", "shutdown_timeout", DURATION, shutdown_timeout, "5s", 0, 600000, NULL,             \
      "on SIGTERM or SIGINT, how long to wait for answers still in flight")                       \
    X("service", "endpoints", LIST, endpoints, "tcp://127.0.0.1:10041", 0, 0, NULL,                \
      "mxcached endpoints (tcp://HOST:PORT or ipc://PATH) in order of preference")                \
    X("service", "timeout", DURATION, timeout, "5s", 100, 90000, NULL,                             \
      "wait this long for the service's answer, then answer the fallback")                        \
    X("service", "failover", DURATION, failover, "1s", 10, 90000, NULL,                            \
      "with several endpoints: ask the next one after this much silence")                         \
    X("service", "states", LIST, states, "RCPT", 0, 0, NULL,                                       \
      "protocol states the service is asked about; any other state is answered DUNNO")            \
    X("service", "mx_name", STRING, mx_name, "", 0, 0, NULL,                                       \
      "this MX's name, sent with every question; empty: the host name")                           \
    X("service", "fallback", ENUM, fallback, "defer", 0, 0, "defer|dunno",                         \
      "answer when the service fails or is silent: defer (451 4.3.0 fallback_text) or dunno")     \
    X("service", "fallback_text", STRING, fallback_text,                                           \
      "Temporary policy service failure, try again later", 0, 0, NULL,                             \
      "text of the defer fallback (printable ASCII)")                                             \
    X("service", "server_key", STRING, server_key, "", 0, 0, NULL,                                 \
      "the service's CURVE public key: its NAME.pub file or the Z85 text; \"\": no CURVE")         \
    X("service", "key_file", STRING, key_file, "", 0, 0, NULL,                                     \
      "this hook's CURVE key pair (mxcachectl keygen), listed in the service's client_keys")      \
    X("service", "ping_interval", DURATION, ping_interval, "5s", 0, 3600000, NULL,                 \
      "with no answer for this long, ping the service (for /readyz and service_up); 0: off")      \
    X("metrics", "listen", STRING, metrics_listen, "127.0.0.1:10043", 0, 0, NULL,                  \
      "where /metrics, /healthz and /readyz are served: HOST:PORT or [IPV6]:PORT; empty: off")     \
    X("log", "level", ENUM, log_level, "info", 0, 0, "debug|info|notice|warning|err",              \
      "least severe level logged")                                                                \
    X("log", "target", ENUM, log_target, "auto", 0, 0, "auto|stderr|syslog",                       \
      "auto: stderr with --foreground (syslog under systemd), else syslog; always syslog with "    \
      "--stdio")                                                                                  \
    X("log", "facility", ENUM, log_facility, "mail", 0, 0,                                         \
      "mail|daemon|local0|local1|local2|local3|local4|local5|local6|local7", "syslog facility")

/* The protocol states Postfix reports; states must name some of these. */
#define POLICY_KNOWN_STATES "CONNECT|EHLO|HELO|MAIL|RCPT|DATA|END-OF-MESSAGE|VRFY|ETRN"

enum policy_conf_type {
    PCONF_BOOL,
    PCONF_INT,
    PCONF_SIZE,
    PCONF_DURATION,
    PCONF_STRING,
    PCONF_MODE,
    PCONF_ENUM,
    PCONF_LIST
};

struct policy_conf_list {
    char **items;
    size_t n;
};

#define PCONF_CTYPE_BOOL bool
#define PCONF_CTYPE_INT long long
#define PCONF_CTYPE_SIZE uint64_t
#define PCONF_CTYPE_DURATION uint64_t
#define PCONF_CTYPE_STRING char *
#define PCONF_CTYPE_MODE int
#define PCONF_CTYPE_ENUM int
#define PCONF_CTYPE_LIST struct policy_conf_list
#define PCONF_FIELD(g, n, t, f, d, mn, mx, ch, h) PCONF_CTYPE_##t f;
struct policy_conf {
    POLICY_PARAMS(PCONF_FIELD)
    char *source; /* the file it came from, or NULL for the embedded defaults */
};
#undef PCONF_FIELD

/* Index values of the ENUM settings, in the order of their choices above. */
enum { PCONF_FALLBACK_DEFER, PCONF_FALLBACK_DUNNO };
enum { PCONF_LOG_DEBUG, PCONF_LOG_INFO, PCONF_LOG_NOTICE, PCONF_LOG_WARNING, PCONF_LOG_ERR };
enum { PCONF_TARGET_AUTO, PCONF_TARGET_STDERR, PCONF_TARGET_SYSLOG };

/* Errors collected while loading, each "FILE:LINE: group.name: text" ("FILE: text" without a
 * line). */
struct policy_conf_errors {
    char **msg;
    size_t n;
};

/* policy_conf_defaults - the embedded defaults; NULL only when out of memory. */
struct policy_conf *policy_conf_defaults(void);

/* policy_conf_load - reads path over the defaults. NULL when the file cannot be read or has any
 * error (syntax, unknown group or setting, wrong type, out of range, bad listen address or
 * endpoint, unknown state, inconsistent limits); every error found is appended to errs (which
 * the caller zeroes and releases with policy_conf_errors_fini). */
struct policy_conf *policy_conf_load(const char *path, struct policy_conf_errors *errs);

/* policy_conf_free - NULL-safe. */
void policy_conf_free(struct policy_conf *c);
void policy_conf_errors_fini(struct policy_conf_errors *errs);

/* policy_conf_print - c in the file's syntax, each setting with its explanation, bounds and (when
 * it differs) its default as comments; the output loads back to an equal config. 0 or MXC_EIO. */
int policy_conf_print(const struct policy_conf *c, FILE *out);

/* policy_conf_facility - the LOG_* facility of log.facility. */
int policy_conf_facility(const struct policy_conf *c);
/* policy_conf_level - the LOG_* priority of log.level. */
int policy_conf_level(const struct policy_conf *c);

/* A parsed listen address. */
#define POLICY_PATH_MAX 108 /* sizeof(sun_path) */
enum policy_listen_kind { POLICY_LISTEN_INET, POLICY_LISTEN_UNIX };
struct policy_listen_addr {
    enum policy_listen_kind kind;
    char host[256];             /* INET: a name or address, brackets removed */
    char port[8];               /* INET: 1-65535 */
    char path[POLICY_PATH_MAX]; /* UNIX */
};

/* policy_listen_parse - "inet:HOST:PORT", "HOST:PORT", "[V6ADDR]:PORT", "unix:PATH" or "/PATH"
 * into *out. 0, or MXC_EINVAL with the reason in err. Pure. */
int policy_listen_parse(const char *spec, struct policy_listen_addr *out, char *err, size_t errlen);

#endif
