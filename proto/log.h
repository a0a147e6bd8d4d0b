/* Logging of the mxcache daemons (mxcached, mxcache-policy): one line per event, to stderr or
 * syslog, with a syslog severity. (libmxcache never logs.)
 *
 * A line starts with an uppercase event word, then key=value fields ("START version=0.1.0
 * workers=2", "BADREQ peer=... reason=too_large size=70000"). Untrusted strings go through
 * log_escape first. The logger is process-wide state (a daemon has one log); log_open is called
 * once at start, log_set_level may be called from any thread later (SIGHUP). Thread-safe. */
#ifndef MXCACHED_LOG_H
#define MXCACHED_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <syslog.h>

#define LOG_FIELD_MAX 160 /* bytes of one escaped untrusted field in a line, "..." included */

enum log_target_kind { LOG_TO_STDERR, LOG_TO_SYSLOG };

/* log_open - ident is the program name (borrowed for the process's lifetime); facility a LOG_*
 * facility; level the least severe LOG_* priority logged (LOG_DEBUG..LOG_ERR). */
void log_open(const char *ident, enum log_target_kind target, int facility, int level);
void log_set_level(int level);

/* log_stderr_is_journal - whether stderr is systemd's journal stream (JOURNAL_STREAM names its
 * device and inode): a daemon started by a unit then logs to syslog, with its facility and each
 * line's priority, rather than as plain stderr text. */
bool log_stderr_is_journal(void);
int log_get_level(void);
void log_close(void);

/* log_msg - logs "EVENT fields" at priority (LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO,
 * LOG_DEBUG) when enabled; fmt formats the fields. */
void log_msg(int priority, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* log_enabled - whether priority would be logged (to skip building expensive fields). */
int log_enabled(int priority);

/* log_escape - copies at most len bytes of untrusted s into out (outlen bytes) with every byte
 * outside printable ASCII, '"' and '\\' written as \xNN, truncated with "..." so that out
 * always ends in NUL. Returns out. The result may hold spaces: write it in double quotes. */
char *log_escape(const char *s, size_t len, char *out, size_t outlen);

/* log_str - log_escape of a NUL-terminated string (NULL gives "-"). */
char *log_str(const char *s, char *out, size_t outlen);

/* Map config.h's LOG_LEVEL_* index to a syslog priority. */
int log_level_from_index(int idx);

#endif
