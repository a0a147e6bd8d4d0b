/* policy_log - the process-wide logger of mxcache-policy (see policy_log.h). */
#include "policy_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static enum policy_log_target log_target = POLICY_LOG_STDERR;
static const char *log_ident = "mxcache-policy";
static int log_level = LOG_INFO;

static const char *const prio_names[] = {
    "emerg", "alert", "crit", "error", "warning", "notice", "info", "debug",
};

void policy_log_open(const char *ident, enum policy_log_target target, int facility, int level)
{
    log_ident = ident;
    log_target = target;
    log_level = level;
    if (target == POLICY_LOG_SYSLOG)
        openlog(ident, LOG_PID | LOG_NDELAY, facility);
}

void policy_log_close(void)
{
    if (log_target == POLICY_LOG_SYSLOG)
        closelog();
}

int policy_log_enabled(int priority) { return priority <= log_level; }

void policy_log(int priority, const char *event, const char *fmt, ...)
{
    char line[POLICY_LOG_LINE_MAX];
    va_list ap;
    int n;

    if (!policy_log_enabled(priority))
        return;
    n = snprintf(line, sizeof line, "%s ", event);
    if (n < 0 || (size_t)n >= sizeof line)
        n = 0;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (log_target == POLICY_LOG_SYSLOG) {
        syslog(priority, "%s", line);
        return;
    }
    struct timespec ts;
    struct tm tm;
    char when[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ldZ %s[%s]: %s\n", when, ts.tv_nsec / 1000000, log_ident,
            prio_names[priority & 7], line);
}

char *policy_log_escape(const char *s, size_t len, char *out, size_t outlen)
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
        if (o + need + 4 > outlen) { /* keep room for "..." and the NUL */
            if (outlen >= 4) {
                o = o < outlen - 4 ? o : outlen - 4;
                memcpy(out + o, "...", 3);
                o += 3;
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

char *policy_log_str(const char *s, char *out, size_t outlen)
{
    if (!s) {
        snprintf(out, outlen, "-");
        return out;
    }
    return policy_log_escape(s, strlen(s), out, outlen);
}
