/* smtpd_run - mxtest-smtpd for Check tests: start with a script, stop, reload, read and count
 * its log (see smtpd_run.h for the contracts). Failures end the test through ck_assert; the
 * server is a child process killed by PID, and by PR_SET_PDEATHSIG when a failed assertion ends
 * the test process before its stop. */
#include "smtpd_run.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "../testutil.h"

/* write_file - replaces path's contents with text. */
static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    ck_assert_msg(fputs(text, f) >= 0 && fclose(f) == 0, "%s: write failed", path);
}

/* count_lines - lines of text (modified: its newlines become NULs) that contain needle. */
static unsigned count_lines(char *text, const char *needle)
{
    unsigned n = 0;

    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        n += strstr(line, needle) != NULL;
        if (!nl)
            break;
        line = nl + 1;
    }
    return n;
}

/* remove_dir - removes d->dir and whatever the server left in it (its port file's temporary
 * name included). */
static void remove_dir(struct smtpd_run *d)
{
    DIR *dp;
    struct dirent *e;

    if (!d->dir[0])
        return;
    if ((dp = opendir(d->dir)) != NULL) {
        while ((e = readdir(dp)) != NULL)
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                unlinkat(dirfd(dp), e->d_name, 0);
        closedir(dp);
    }
    rmdir(d->dir);
    d->dir[0] = '\0';
}

/* start_failed - fails the test after a start that went wrong, with the server's output; the
 * server is already reaped (pid 0). */
static void start_failed(struct smtpd_run *d, const char *what)
{
    char *out = test_file_text(d->out);
    char msg[512];
    size_t len = strlen(out);

    while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == '\r'))
        out[--len] = '\0';
    snprintf(msg, sizeof msg, "mxtest-smtpd %s; its output: %.300s", what, out);
    free(out);
    remove_dir(d);
    ck_abort_msg("%s", msg);
}

void smtpd_run_start(struct smtpd_run *d, const char *script)
{
    const char *bin = getenv("MXTEST_SMTPD");
    pid_t parent = getpid();
    long deadline;

    ck_assert_msg(bin != NULL && *bin, "MXTEST_SMTPD not set");
    memset(d, 0, sizeof *d);
    strcpy(d->dir, "/tmp/mxcache-smtpd-XXXXXX");
    ck_assert_msg(mkdtemp(d->dir) != NULL, "mkdtemp: %s", strerror(errno));
    snprintf(d->script, sizeof d->script, "%s/script", d->dir);
    snprintf(d->log, sizeof d->log, "%s/log", d->dir);
    snprintf(d->portfile, sizeof d->portfile, "%s/port", d->dir);
    snprintf(d->out, sizeof d->out, "%s/out", d->dir);
    write_file(d->script, script);
    d->pid = fork();
    ck_assert_msg(d->pid >= 0, "fork: %s", strerror(errno));
    if (d->pid == 0) {
        int fd = open(d->out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        /* Robustness: a failed ck_assert ends the test process without teardown; the server
         * must not outlive it (nor start if the test died before the prctl). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(bin, "mxtest-smtpd", "--listen", "127.0.0.1:0", "--script", d->script, "--log", d->log,
              "--port-file", d->portfile, (char *)NULL);
        fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    deadline = test_now_ms() + SMTPD_RUN_START_MS;
    for (;;) {
        char *text = test_file_text(d->portfile), what[64];
        unsigned port = 0;
        int status;

        if (sscanf(text, "%u", &port) != 1)
            port = 0;
        free(text);
        if (port > 0 && port < 65536) {
            d->port = port;
            break;
        }
        if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
            d->pid = 0;
            if (WIFEXITED(status))
                snprintf(what, sizeof what, "exited at start with status %d", WEXITSTATUS(status));
            else
                snprintf(what, sizeof what, "died at start on signal %d", WTERMSIG(status));
            start_failed(d, what);
        }
        if (test_now_ms() > deadline) {
            kill(d->pid, SIGKILL);
            waitpid(d->pid, NULL, 0);
            d->pid = 0;
            snprintf(what, sizeof what, "wrote no port file in %d ms", SMTPD_RUN_START_MS);
            start_failed(d, what);
        }
        test_sleep_ms(SMTPD_RUN_POLL_MS);
    }
    snprintf(d->host, sizeof d->host, "127.0.0.1:%u", d->port);
}

void smtpd_run_stop(struct smtpd_run *d)
{
    long deadline = test_now_ms() + SMTPD_RUN_STOP_MS;

    if (d->pid <= 0)
        return;
    kill(d->pid, SIGTERM);
    while (waitpid(d->pid, NULL, WNOHANG) == 0) {
        if (test_now_ms() > deadline) {
            kill(d->pid, SIGKILL);
            waitpid(d->pid, NULL, 0);
            break;
        }
        test_sleep_ms(SMTPD_RUN_POLL_MS);
    }
    d->pid = 0;
    remove_dir(d);
}

void smtpd_run_reload(struct smtpd_run *d, const char *script)
{
    unsigned ok = smtpd_run_count(d, "reload ok"), err = smtpd_run_count(d, "reload error=");
    long deadline = test_now_ms() + SMTPD_RUN_RELOAD_MS;

    ck_assert_msg(d->pid > 0, "mxtest-smtpd is not running");
    write_file(d->script, script);
    ck_assert_int_eq(kill(d->pid, SIGHUP), 0);
    for (;;) {
        unsigned ok_now = smtpd_run_count(d, "reload ok");
        if (smtpd_run_count(d, "reload error=") > err) {
            char *log = smtpd_run_log(d), msg[512];
            const char *line = log, *p;
            while ((p = strstr(line + 1, "reload error=")) != NULL)
                line = p;
            snprintf(msg, sizeof msg, "mxtest-smtpd refused the new script: %.*s",
                     (int)strcspn(line, "\n"), line);
            free(log);
            ck_abort_msg("%s", msg);
        }
        if (ok_now > ok)
            return;
        ck_assert_msg(test_now_ms() <= deadline, "mxtest-smtpd: no \"reload ok\" within %d ms",
                      SMTPD_RUN_RELOAD_MS);
        test_sleep_ms(SMTPD_RUN_POLL_MS);
    }
}

unsigned smtpd_run_count(const struct smtpd_run *d, const char *needle)
{
    char *log;
    unsigned n;

    ck_assert_msg(*needle && strchr(needle, '\n') == NULL, "bad needle \"%s\"", needle);
    log = smtpd_run_log(d);
    n = count_lines(log, needle);
    free(log);
    return n;
}

unsigned smtpd_run_wait(const struct smtpd_run *d, const char *needle, unsigned n, long ms)
{
    long deadline = test_now_ms() + ms;
    unsigned c;

    while ((c = smtpd_run_count(d, needle)) < n && test_now_ms() <= deadline)
        test_sleep_ms(SMTPD_RUN_POLL_MS);
    return c;
}

char *smtpd_run_log(const struct smtpd_run *d)
{
    return test_file_text(d->log);
}

int smtpd_run_refusing_port(unsigned *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}
