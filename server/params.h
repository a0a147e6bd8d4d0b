/* Every setting of mxcached in one table: group, name, type, default, bounds, unit, whether SIGHUP
 * reloads it, and a one-line explanation. config.c loads files with this table, --print-defaults
 * prints it, and deploy/mxcached.conf shows each entry with its default. Defaults live here and
 * nowhere else.
 *
 * Types: BOOL (true/false); INT (integer); SIZE (bytes: integer or "64M"); DURATION (milliseconds in
 * the struct; in the file an integer counts seconds, or a string with a unit: "500ms", "30s",
 * "3h", "31d"); STRING; ENUM (one of the '|'-separated choices in the bounds' place, stored as the
 * choice's index); LIST (a list of strings, default '|'-separated; "" is the empty list). min/max
 * apply to INT, SIZE and DURATION (DURATION bounds in milliseconds). A setting marked reload=1
 * takes effect on SIGHUP; the others need a restart (a reload that changes one logs a warning and
 * keeps the running value). */
#ifndef MXCACHED_PARAMS_H
#define MXCACHED_PARAMS_H

/* X(group, name, TYPE, field, default, min, max, choices, reload, help) */
#define MXCACHED_PARAMS(X)                                                                         \
    X("server", "listen", LIST, listen, "tcp://127.0.0.1:10041", 0, 0, NULL, 0,                   \
      "ZeroMQ endpoints to bind (tcp://HOST:PORT or ipc://PATH)")                                  \
    X("server", "workers", INT, workers, "0", 0, 256, NULL, 0,                                     \
      "request-handling threads; 0: one per online CPU")                                          \
    X("server", "max_request_size", SIZE, max_request_size, "64K", 256, 16777216, NULL, 0,         \
      "largest request accepted; a larger one gets an error reply")                               \
    X("server", "max_batch", INT, max_batch, "256", 1, 65536, NULL, 0,                             \
      "most requests one worker handles (and group-commits) in one round")                       \
    X("server", "socket_hwm", INT, socket_hwm, "100000", 100, 10000000, NULL, 0,                   \
      "ZeroMQ high-water mark (messages queued per peer) of the service sockets")                \
    X("server", "max_queued", INT, max_queued, "65536", 64, 10000000, NULL, 0,                     \
      "requests taken from clients and not yet answered; above it the service reads no more")    \
    X("server", "shutdown_timeout", DURATION, shutdown_timeout, "10s", 0, 600000, NULL, 0,         \
      "on SIGTERM, how long to wait for in-flight requests before closing")                      \
    X("server", "max_connections", INT, max_connections, "1000", 1, 1000000, NULL, 0,             \
      "client connections at once; one more is refused at its handshake")                        \
    X("server", "max_connections_per_client", INT, max_connections_per_client, "32", 1, 1000000,  \
      NULL, 0, "connections at once from one client IP address (not for ipc: max_connections only)") \
    X("server", "max_inflight_per_client", INT, max_inflight_per_client, "8192", 1, 10000000,     \
      NULL, 0, "requests of one connection taken and not yet answered; more get ERROR_UNAVAILABLE") \
    X("server", "user", STRING, user, "", 0, 0, NULL, 0,                                           \
      "started as root: bind, then run as this user; \"\": do not change user")                   \
    X("server", "allow_root", BOOL, allow_root, "false", 0, 0, NULL, 0,                            \
      "run as root (without server.user) instead of refusing to start")                         \
    X("log", "level", ENUM, log_level, "info", 0, 0, "debug|info|notice|warning|err", 1,           \
      "least severe level logged")                                                                \
    X("log", "target", ENUM, log_target, "auto", 0, 0, "auto|stderr|syslog", 0,                   \
      "auto: stderr with --foreground (syslog under systemd), else syslog")                     \
    X("log", "decisions", ENUM, log_decisions, "info", 0, 0, "off|debug|info|notice", 1,            \
      "level of the one DECISION line per answered Check; off: none")                            \
    X("log", "facility", ENUM, log_facility, "mail", 0, 0,                                         \
      "mail|daemon|local0|local1|local2|local3|local4|local5|local6|local7", 0,                   \
      "syslog facility")                                                                          \
    X("store", "path", STRING, store_path, "mxcache-data", 0, 0, NULL, 0,                          \
      "RocksDB directory (relative paths are relative to the working directory)")                \
    X("store", "sync", BOOL, store_sync, "true", 0, 0, NULL, 0,                                    \
      "fsync the write-ahead log before answering a request that wrote")                         \
    X("store", "sync_interval", DURATION, store_sync_interval, "1ms", 0, 100, NULL, 0,             \
      "least time between two WAL syncs (one fsync serves every write of it); 0: at once")       \
    X("store", "block_cache_size", SIZE, store_block_cache_size, "64M", 1048576, 1099511627776ll,  \
      NULL, 0, "RocksDB block cache shared by all keyspaces")                                     \
    X("store", "write_buffer_size", SIZE, store_write_buffer_size, "16M", 65536, 1073741824, NULL, \
      0, "RocksDB memtable size per keyspace")                                                    \
    X("store", "max_background_jobs", INT, store_max_background_jobs, "2", 1, 64, NULL, 0,         \
      "RocksDB flush and compaction threads")                                                    \
    X("policy", "default_action", ENUM, default_action, "dunno", 0, 0, "dunno|defer|reject", 1,    \
      "answer when no check decides (whitelist, greylisting and verification come first)")       \
    X("policy", "default_code", INT, default_code, "450", 400, 599, NULL, 1,                       \
      "SMTP code of the default answer when it is defer (4xx) or reject (5xx)")                  \
    X("policy", "default_status", STRING, default_status, "4.7.1", 0, 0, NULL, 1,                  \
      "enhanced status code of the default answer")                                               \
    X("policy", "default_text", STRING, default_text, "Service temporarily unavailable", 0, 0,     \
      NULL, 1, "text of the default answer")                                                      \
    X("greylist", "enabled", BOOL, greylist_enabled, "true", 0, 0, NULL, 1,                        \
      "defer the first attempt of each new (client, sender, recipient) triplet")                 \
    X("greylist", "delay", DURATION, greylist_delay, "300s", 0, 86400000, NULL, 1,                 \
      "how long a new triplet is deferred; 0: the first attempt passes")                         \
    X("greylist", "retry_window", DURATION, greylist_retry_window, "2d", 60000, 2592000000ll,      \
      NULL, 1, "how long a deferred triplet waits for its retry; a later retry starts over")    \
    X("greylist", "max_age", DURATION, greylist_max_age, "35d", 86400000, 31536000000ll, NULL, 1,  \
      "how long a triplet that passed is remembered after it was last seen")                     \
    X("greylist", "awl_passes", INT, greylist_awl_passes, "5", 0, 1000, NULL, 1,                   \
      "passes after which a client skips greylisting (auto-whitelist); 0: never")               \
    X("greylist", "awl_max_age", DURATION, greylist_awl_max_age, "35d", 86400000, 31536000000ll,   \
      NULL, 1, "how long an auto-whitelisted client is remembered after its last pass")         \
    X("greylist", "ipv4_prefix", INT, greylist_ipv4_prefix, "24", 8, 32, NULL, 1,                  \
      "IPv4 clients in one network of this prefix length count as one client")                  \
    X("greylist", "ipv6_prefix", INT, greylist_ipv6_prefix, "64", 16, 128, NULL, 1,                \
      "IPv6 clients in one network of this prefix length count as one client")                  \
    X("greylist", "client_identity", ENUM, greylist_client_identity, "network", 0, 0,              \
      "network|domain", 1,                                                                        \
      "what identifies a client: its network, or the registered domain of its verified name")   \
    X("greylist", "domains", LIST, greylist_domains, "", 0, 0, NULL, 1,                            \
      "greylist only recipients in these domains and their subdomains; empty: every domain")    \
    X("greylist", "exempt_domains", LIST, greylist_exempt_domains, "", 0, 0, NULL, 1,              \
      "never greylist recipients in these domains and their subdomains")                        \
    X("greylist", "reply_code", INT, greylist_reply_code, "450", 400, 499, NULL, 1,                \
      "SMTP code of the greylisting deferral")                                                   \
    X("greylist", "reply_status", STRING, greylist_reply_status, "4.7.1", 0, 0, NULL, 1,           \
      "enhanced status code of the greylisting deferral (class 4)")                              \
    X("greylist", "reply_text", STRING, greylist_reply_text,                                       \
      "Greylisted, please try again in {remaining} seconds", 0, 0, NULL, 1,                      \
      "text of the deferral; {remaining} becomes the seconds left until a retry can pass")      \
    X("greylist", "header", BOOL, greylist_header, "true", 0, 0, NULL, 1,                          \
      "on the pass after a delay, have the MX prepend an X-Greylist header")                    \
    X("greylist", "hash_keys", BOOL, greylist_hash_keys, "false", 0, 0, NULL, 1,                   \
      "store greylist and auto-whitelist keys as keyed BLAKE2b hashes, no addresses in clear")  \
    X("greylist", "key_file", STRING, greylist_key_file, "", 0, 0, NULL, 1,                        \
      "with hash_keys: file with the secret hash key, at least 32 bytes")                       \
    X("whitelist", "client_files", LIST, whitelist_client_files, "", 0, 0, NULL, 1,                \
      "files of client whitelists in postgrey's whitelist_clients format")                      \
    X("whitelist", "recipient_files", LIST, whitelist_recipient_files, "", 0, 0, NULL, 1,          \
      "files of recipient whitelists in postgrey's whitelist_recipients format")                \
    X("verify", "enabled", BOOL, verify_enabled, "true", 0, 0, NULL, 1,                            \
      "verify the recipients of domains that have a route by asking their backend (SMTP probe)") \
    X("verify", "before_greylist", BOOL, verify_before_greylist, "false", 0, 0, NULL, 1,           \
      "verify before greylisting: unknown recipients are refused at once, for a probe more")     \
    X("verify", "positive_ttl", DURATION, verify_positive_ttl, "31d", 60000, 31536000000ll, NULL,  \
      1, "how long a recipient the backend accepted is known to exist")                          \
    X("verify", "refresh_after", DURATION, verify_refresh_after, "7d", 1000, 31536000000ll, NULL,  \
      1, "after this, a known recipient is still served while one probe refreshes it")           \
    X("verify", "negative_ttl", DURATION, verify_negative_ttl, "3h", 1000, 2592000000ll, NULL, 1,  \
      "how long a recipient the backend rejected (5xx) stays rejected")                          \
    X("verify", "tempfail_ttl", DURATION, verify_tempfail_ttl, "1m", 1000, 86400000, NULL, 1,      \
      "how long a failed probe (4xx, timeout, no backend) is remembered: no probe meanwhile")   \
    X("verify", "reject_5xx", BOOL, verify_reject_5xx, "true", 0, 0, NULL, 1,                      \
      "pass a backend's 5xx on word for word; false: the same text as 450 (Postfix's caution)") \
    X("verify", "wait", DURATION, verify_wait, "3s", 0, 60000, NULL, 1,                            \
      "how long a Check waits for a running probe; keep it below the policy hook's timeout")    \
    X("verify", "pending_text", STRING, verify_pending_text,                                       \
      "Recipient address verification in progress", 0, 0, NULL, 1,                             \
      "text of the 450 4.1.1 answer given when a probe takes longer than wait")                  \
    X("verify", "max_probes", INT, verify_max_probes, "10000", 1, 1000000, NULL, 0,                \
      "probes running or queued at once, in all; beyond, new recipients get 4xx")               \
    X("verify", "client_probes_per_minute", INT, verify_client_probes_per_minute, "60", 0,         \
      1000000, NULL, 0, "new probes one client network may cause per minute; 0: no limit")      \
    X("verify", "circuit_failures", INT, verify_circuit_failures, "5", 1, 1000, NULL, 0,           \
      "failed probes in a row after which a route's backends get no probes for circuit_open")   \
    X("verify", "circuit_open", DURATION, verify_circuit_open, "30s", 1000, 3600000, NULL, 0,      \
      "how long a failing route gets no probes before one trial probe")                         \
    X("verify", "acceptall_interval", DURATION, verify_acceptall_interval, "1h", 0, 604800000,     \
      NULL, 0, "how often each routed domain is probed with an address that cannot exist; 0: on demand only") \
    X("admin", "list_page_size", INT, list_page_size, "100", 1, 100000, NULL, 1,                   \
      "entries per list page when the client does not say")                                       \
    X("admin", "list_page_max", INT, list_page_max, "1000", 1, 100000, NULL, 1,                    \
      "most entries per list page")                                                               \
    X("admin", "flush_batch", INT, flush_batch, "10000", 1, 1000000, NULL, 1,                      \
      "most entries one flush request deletes; the client repeats until done")                    \
    X("metrics", "listen", STRING, metrics_listen, "127.0.0.1:10042", 0, 0, NULL, 0,               \
      "HTTP endpoint for /metrics, /healthz and /readyz, \"HOST:PORT\" or \"[IPv6]:PORT\"; \"\": off")   \
    X("security", "key_file", STRING, security_key_file, "", 0, 0, NULL, 0,                        \
      "the service's CURVE key pair (mxcachectl keygen); \"\": no CURVE (plain ZeroMQ)")          \
    X("security", "client_keys", LIST, security_client_keys, "", 0, 0, NULL, 1,                    \
      "public keys (key files or Z85 text) that may ask: Check, Ping and read-only admin requests") \
    X("security", "admin_keys", LIST, security_admin_keys, "", 0, 0, NULL, 1,                      \
      "public keys that may also change state: flush, delete, whitelist changes, compact, verify") \
    X("security", "allow", LIST, security_allow, "", 0, 0, NULL, 1,                                \
      "client networks (\"192.0.2.0/24\", \"2001:db8::/32\", an address) allowed to connect; empty: any") \
    X("security", "allow_insecure", BOOL, security_allow_insecure, "false", 0, 0, NULL, 0,         \
      "allow plain ZeroMQ (no key_file) on endpoints other than loopback and ipc")

/* The settings of one route, an element of verify.routes = ( { ... }, ... ): where the
 * recipients of some domains are verified, and how. Same columns as above; the group column is
 * only a label, messages name the setting verify.routes[N].name. A route's domains and hosts are
 * required. Routes are read at start only (a restart changes them). */
#define MXCACHED_ROUTE_PARAMS(X)                                                                  \
    X("route", "domains", LIST, domains, "", 0, 0, NULL, 0,                                        \
      "recipient domains verified by this route; \".example.com\" also covers subdomains")        \
    X("route", "hosts", LIST, hosts, "", 0, 0, NULL, 0,                                            \
      "backend hosts, \"host:port\" (port 25 if left out), tried in this order")               \
    X("route", "helo", STRING, helo, "localhost", 0, 0, NULL, 0,                                   \
      "the EHLO/HELO name the probes give")                                                      \
    X("route", "mail_from", STRING, mail_from, "", 0, 0, NULL, 0,                                  \
      "the probes' MAIL FROM address; \"\": the null sender <>")                                \
    X("route", "connect_timeout", DURATION, connect_timeout, "5s", 100, 300000, NULL, 0,           \
      "how long a probe waits for the TCP connection")                                           \
    X("route", "greeting_timeout", DURATION, greeting_timeout, "10s", 100, 300000, NULL, 0,        \
      "how long a probe waits for the backend's greeting")                                       \
    X("route", "command_timeout", DURATION, command_timeout, "10s", 100, 300000, NULL, 0,          \
      "how long a probe waits for the reply to each command")                                    \
    X("route", "max_sessions", INT, max_sessions, "4", 1, 1000, NULL, 0,                           \
      "SMTP sessions open at once to each backend host")                                         \
    X("route", "session_probes", INT, session_probes, "100", 1, 100000, NULL, 0,                   \
      "probes one session runs (RSET between them) before it ends")                              \
    X("route", "session_idle", DURATION, session_idle, "5s", 0, 600000, NULL, 0,                   \
      "how long an idle session stays open for the next probe")                                  \
    X("route", "probes_per_second", INT, probes_per_second, "50", 0, 1000000, NULL, 0,             \
      "new probes per second to this route's backends; 0: no limit")

#endif
