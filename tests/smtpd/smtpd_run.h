/* smtpd_run - runs mxtest-smtpd (tests/smtpd/mxtest-smtpd.c, the binary named by $MXTEST_SMTPD)
 * for a Check test: one server per struct smtpd_run, on 127.0.0.1 with a free port, with its
 * script, log, port file and output in a temporary directory of its own. Owns that directory
 * and the child process; trusts the server's log format (one line per event, see the header of
 * mxtest-smtpd.c). Test code: every function fails the running Check test (ck_assert) on an
 * error instead of returning one, and every wait is bounded. Not thread-safe: call it from the
 * test's own thread (PR_SET_PDEATHSIG is tied to the thread that forks). */
#ifndef MXCACHE_TESTS_SMTPD_RUN_H
#define MXCACHE_TESTS_SMTPD_RUN_H

#include <sys/types.h>

#define SMTPD_RUN_START_MS 15000 /* ms: the server writes its port file */
#define SMTPD_RUN_STOP_MS 3000   /* ms: after SIGTERM, before SIGKILL */
#define SMTPD_RUN_RELOAD_MS 3000 /* ms: after SIGHUP, until "reload ok" */
#define SMTPD_RUN_POLL_MS 10     /* ms: between two looks at a file */

struct smtpd_run {
    pid_t pid;     /* the server; 0 when not running */
    unsigned port; /* the port it listens on, 1 to 65535 */
    char host[32]; /* "127.0.0.1:PORT", for routes */
    char dir[64], script[128], log[128], portfile[128], out[128]; /* out: its stdout and stderr */
};

/* smtpd_run_start - starts mxtest-smtpd with script (its directives, one per line, copied to a
 * file) and waits at most SMTPD_RUN_START_MS for its port. Overwrites all of *d. Fails the test,
 * with the server's own output, when MXTEST_SMTPD is unset, the server exits (a bad script) or
 * writes no port in time; nothing is left running or on disk then. The server is killed if the
 * test process dies first. Pair with smtpd_run_stop. */
void smtpd_run_start(struct smtpd_run *d, const char *script);

/* smtpd_run_stop - stops the server (SIGTERM, SIGKILL after SMTPD_RUN_STOP_MS), reaps it and
 * removes its directory. Safe on a stopped struct (pid 0) and on one zeroed by the caller. */
void smtpd_run_stop(struct smtpd_run *d);

/* smtpd_run_reload - the backend changes its mind: rewrites the script with script, sends SIGHUP
 * and waits (at most SMTPD_RUN_RELOAD_MS) for the next "reload ok" log line. Fails the test on a
 * "reload error=" line (the old script stays then) or when neither comes. */
void smtpd_run_reload(struct smtpd_run *d, const char *script);

/* smtpd_run_count - how many lines of the log contain needle now (needle: no newline). */
unsigned smtpd_run_count(const struct smtpd_run *d, const char *needle);

/* smtpd_run_wait - waits until at least n lines of the log contain needle, or ms milliseconds
 * have passed; returns the last count (compare it with n to know which). */
unsigned smtpd_run_wait(const struct smtpd_run *d, const char *needle, unsigned n, long ms);

/* smtpd_run_log - the whole log now, NUL-terminated; "" before the first line. The caller
 * frees it. */
char *smtpd_run_log(const struct smtpd_run *d);

/* smtpd_run_refusing_port - a backend that is not there: a port on 127.0.0.1 that refuses
 * connections (bound, never listening) into *port; returns the socket, which keeps the port
 * taken until the caller closes it. */
int smtpd_run_refusing_port(unsigned *port);

#endif
