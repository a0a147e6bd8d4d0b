/* policy_log - logging of mxcache-policy: one line per event, to stderr or syslog (facility mail
 * by default), with a syslog severity.
 *
 * A line starts with an uppercase event word, then key=value fields ("BADINPUT conn=7
 * peer=127.0.0.1:40312 reason=line_too_long line=3 excerpt=\"...\""). Untrusted strings go
 * through policy_log_escape first. The logger is process-wide state (a daemon has one log);
 * the hook is single-threaded, so there is no locking. */
#ifndef MXCACHE_POLICY_LOG_H
#define MXCACHE_POLICY_LOG_H

#include <stddef.h>
#include <syslog.h>

#define POLICY_LOG_LINE_MAX 2048   /* bytes of one log line; longer lines are cut */
#define POLICY_LOG_FIELD_MAX 160   /* bytes of one escaped untrusted field, "..." included */

enum policy_log_target { POLICY_LOG_STDERR, POLICY_LOG_SYSLOG };

/* policy_log_open - ident is borrowed for the process's lifetime; facility a LOG_* facility;
 * level the least severe LOG_* priority logged. */
void policy_log_open(const char *ident, enum policy_log_target target, int facility, int level);
void policy_log_close(void);

/* policy_log_enabled - whether priority would be logged. */
int policy_log_enabled(int priority);

/* policy_log - logs "EVENT fields" at priority (LOG_ERR .. LOG_DEBUG) when enabled. */
void policy_log(int priority, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* policy_log_escape - copies at most len bytes of untrusted s into out (outlen bytes): every byte
 * outside printable ASCII, '"' and '\\' becomes \xNN; cut with "..." when it does not fit; out
 * always ends in NUL. Returns out. The result may hold spaces: write it in double quotes. */
char *policy_log_escape(const char *s, size_t len, char *out, size_t outlen);

/* policy_log_str - policy_log_escape of a NUL-terminated string (NULL gives "-"). */
char *policy_log_str(const char *s, char *out, size_t outlen);

#endif
