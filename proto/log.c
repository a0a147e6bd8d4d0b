/* Process-wide logger of the mxcache daemons (see log.h). */
#include "log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static enum log_target_kind log_target = LOG_TO_STDERR;
static const char *log_ident = "mxcached";
static atomic_int log_level = LOG_INFO;

static const char *const prio_names[] = {
    "emerg", "alert", "crit", "error", "warning", "notice", "info", "debug",
};

bool log_stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;

    if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) != 0)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_open(const char *ident, enum log_target_kind target, int facility, int level)
{
    log_ident = ident;
    log_target = target;
    atomic_store(&log_level, level);
    if (target == LOG_TO_SYSLOG)
        openlog(ident, LOG_PID | LOG_NDELAY, facility);
}

void log_set_level(int level) { atomic_store(&log_level, level); }
int log_get_level(void) { return atomic_load(&log_level); }

void log_close(void)
{
    if (log_target == LOG_TO_SYSLOG)
        closelog();
}

int log_enabled(int priority) { return priority <= atomic_load(&log_level); }

void log_msg(int priority, const char *event, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    int n;

    if (!log_enabled(priority))
        return;
    n = snprintf(line, sizeof line, "%s ", event);
    if (n < 0 || (size_t)n >= sizeof line)
        n = 0;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (log_target == LOG_TO_SYSLOG) {
        syslog(priority, "%s", line);
        return;
    }
    /* One fprintf per line: stdio locks the stream, so lines of threads do not interleave. */
    struct timespec ts;
    struct tm tm;
    char when[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ldZ %s[%s]: %s\n", when, ts.tv_nsec / 1000000, log_ident,
            prio_names[priority & 7], line);
}

char *log_escape(const char *s, size_t len, char *out, size_t outlen)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    if (outlen == 0)
        return out;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        /* Fields that may hold spaces are written in double quotes, so a space stays. */
        int plain = c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
        size_t need = plain ? 1 : 4;
        if (o + need + 4 > outlen) { /* keep room for "..." and NUL */
            if (outlen >= 4) {
                memcpy(out + (o < outlen - 4 ? o : outlen - 4), "...", 3);
                o = (o < outlen - 4 ? o : outlen - 4) + 3;
            }
            break;
        }
        if (plain) {
            out[o++] = (char)c;
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o < outlen ? o : outlen - 1] = '\0';
    return out;
}

char *log_str(const char *s, char *out, size_t outlen)
{
    if (!s) {
        snprintf(out, outlen, "-");
        return out;
    }
    return log_escape(s, strlen(s), out, outlen);
}

int log_level_from_index(int idx)
{
    static const int map[] = {LOG_DEBUG, LOG_INFO, LOG_NOTICE, LOG_WARNING, LOG_ERR};
    return (idx >= 0 && idx < 5) ? map[idx] : LOG_INFO;
}
