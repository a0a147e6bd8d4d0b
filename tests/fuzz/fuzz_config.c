/* fuzz_config - libFuzzer target for the configuration loaders: mxcached's (server/config.c over
 * proto/conftab.c and libconfig), mxcache-policy's (client/policy_conf.c) and the operators'
 * whitelist files (server/wlfile.c, both kinds), all of which read a file by path.
 *
 * The input is written to one file in a private temporary directory, and every loader reads it.
 * A file that loads must print (config_print, policy_conf_print) to a file that loads back and
 * prints the same again, as the headers promise. A file that does not load must be refused with
 * at least one message, each one line naming the file ("FILE:LINE: text", or "FILE: text" when
 * no line applies), never a crash. A whitelist file that loads is asked a few questions.
 *
 * BUGS: the inputs are operators' files; an @include of a device that never ends (/dev/zero)
 * would hang libconfig, which is outside what this target judges. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "fuzz_util.h"
#include "policy_conf.h"
#include "wlfile.h"

static char in_path[PATH_MAX + 16], out1[PATH_MAX + 16], out2[PATH_MAX + 16];

/* libconfig 1.5 (Debian 12) leaks the buffer of a string token that a syntax error follows
 * (hyperrealm/libconfig#142, fixed in 1.7.3): a few bytes per refused file, not ours to fix, so
 * LeakSanitizer is told to ignore the scanner's two allocation sites of token strings (and
 * only them). */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:strbuf_append\nleak:libconfig_yylex\n";
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *dir = fuzz_tmpdir("fuzz_config");

    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    snprintf(in_path, sizeof in_path, "%s/in.conf", dir);
    snprintf(out1, sizeof out1, "%s/printed1.conf", dir);
    snprintf(out2, sizeof out2, "%s/printed2.conf", dir);
    return 0;
}

/* check_errors - n messages of a refused file: at least one, each one line that starts with a
 * file in our directory (the input or what it included), the input with a line number unless
 * the file could not be read at all. */
static void check_errors(char **msg, size_t n, const char *what)
{
    size_t dlen = strlen(fuzz_dir), plen = strlen(in_path);

    FUZZ_REQUIRE(n >= 1, "%s refused the file without a message", what);
    for (size_t i = 0; i < n; i++) {
        const char *m = msg[i];
        FUZZ_REQUIRE(m != NULL, "%s: message %zu lost", what, i);
        FUZZ_REQUIRE(!strchr(m, '\n'), "%s: message of more than one line: %s", what, m);
        if (strncmp(m, in_path, plen) == 0 && m[plen] == ':') {
            const char *p = m + plen + 1;
            if (*p == ' ')
                FUZZ_REQUIRE(strncmp(p, " cannot read", 12) == 0 || strstr(p, "include"),
                             "%s: message without a line: %s", what, m);
            else
                FUZZ_REQUIRE(*p >= '1' && *p <= '9' && strchr(p, ':'), "%s: bad line number: %s", what, m);
            continue;
        }
        /* mxcached names an included file by its path under the directory of the input;
         * mxcache-policy as written (relative to its working directory). */
        FUZZ_REQUIRE(strncmp(m, fuzz_dir, dlen) == 0 || strcmp(what, "policy_conf_load") == 0,
                     "%s: message does not name the file: %s", what, m);
    }
}

/* text_after_first_line - the contents of path after its first line (which names the source). */
static char *text_after_first_line(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf = NULL;
    size_t cap = 0;

    FUZZ_REQUIRE(f != NULL, "cannot read %s back", path);
    FUZZ_REQUIRE(getline(&buf, &cap, f) > 0, "%s is empty", path);
    size_t len = 0;
    free(buf);
    FILE *m = open_memstream(&buf, &len);
    int c;
    while ((c = fgetc(f)) != EOF)
        fputc(c, m);
    fclose(m);
    fclose(f);
    return buf;
}

static void print_to(const char *path, int (*print)(const void *, FILE *), const void *cfg)
{
    FILE *f = fopen(path, "w");
    FUZZ_REQUIRE(f != NULL, "cannot write %s", path);
    FUZZ_REQUIRE(print(cfg, f) == 0, "printing failed");
    FUZZ_REQUIRE(fclose(f) == 0, "cannot write %s", path);
}

static int print_server(const void *c, FILE *f) { return config_print(c, f); }
static int print_policy(const void *c, FILE *f) { return policy_conf_print(c, f); }

static void server_config(void)
{
    struct config_errors errs = {0};
    struct config *cfg = config_load(in_path, &errs);

    if (!cfg) {
        check_errors(errs.msg, errs.n, "config_load");
        config_errors_fini(&errs);
        return;
    }
    FUZZ_REQUIRE(errs.n == 0, "loaded with %zu errors", errs.n);
    /* The printed config loads back and prints the same. */
    print_to(out1, print_server, cfg);
    struct config *back = config_load(out1, &errs);
    FUZZ_REQUIRE(back != NULL, "config_print's output does not load: %s", errs.n ? errs.msg[0] : "?");
    print_to(out2, print_server, back);
    char *a = text_after_first_line(out1), *b = text_after_first_line(out2);
    FUZZ_REQUIRE(strcmp(a, b) == 0, "config_print of the reloaded config differs");
    char diff[512];
    FUZZ_REQUIRE(config_reload_diff(cfg, back, diff, sizeof diff)[0] == '\0', "reloaded: %s differ", diff);
    free(a);
    free(b);
    config_free(back);
    config_free(cfg);
    config_errors_fini(&errs);
    unlink(out1); /* an @include of them must find nothing next time */
    unlink(out2);
}

static void policy_config(void)
{
    struct policy_conf_errors errs = {0};
    struct policy_conf *c = policy_conf_load(in_path, &errs);

    if (!c) {
        check_errors(errs.msg, errs.n, "policy_conf_load");
        policy_conf_errors_fini(&errs);
        return;
    }
    FUZZ_REQUIRE(errs.n == 0, "loaded with %zu errors", errs.n);
    print_to(out1, print_policy, c);
    struct policy_conf *back = policy_conf_load(out1, &errs);
    FUZZ_REQUIRE(back != NULL, "policy_conf_print's output does not load: %s", errs.n ? errs.msg[0] : "?");
    print_to(out2, print_policy, back);
    char *a = text_after_first_line(out1), *b = text_after_first_line(out2);
    FUZZ_REQUIRE(strcmp(a, b) == 0, "policy_conf_print of the reloaded config differs");
    free(a);
    free(b);
    policy_conf_free(back);
    policy_conf_free(c);
    policy_conf_errors_fini(&errs);
    unlink(out1);
    unlink(out2);
}

static void whitelist_file(bool clients)
{
    const char *files[] = {in_path};
    struct wlfile_errors errs;
    char why[64];

    wlfile_errors_init(&errs);
    struct wlfile *wf = clients ? wlfile_load(files, 1, NULL, 0, &errs) : wlfile_load(NULL, 0, files, 1, &errs);
    if (!wf) {
        FUZZ_REQUIRE(errs.count >= 1 && errs.nmsg >= 1 && errs.nmsg <= errs.count, "wlfile_load refused silently");
        for (size_t i = 0; i < errs.nmsg; i++) {
            const char *m = errs.msg[i];
            size_t plen = strlen(in_path);
            FUZZ_REQUIRE(strncmp(m, in_path, plen) == 0 && m[plen] == ':', "wlfile: %s", m);
            for (const char *p = m; *p; p++)
                FUZZ_REQUIRE((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f, "wlfile message: %s", m);
        }
        wlfile_errors_fini(&errs);
        return;
    }
    FUZZ_REQUIRE(errs.count == 0, "loaded with errors");
    static const char *const addrs[] = {"192.0.2.7", "2001:db8::1", "::ffff:198.51.100.3", "bogus"};
    static const char *const names[] = {"mx1.example.com", "unknown", "", "a.b.c.d.e.f.example.org"};
    static const char *const rcpts[] = {"postmaster@example.com", "user+tag@example.org", "abuse@x",
                                        "\"a b\"@example.net", "nobody"};
    for (size_t i = 0; i < 4; i++)
        if (wlfile_match_client(wf, addrs[i], names[i], why, sizeof why))
            FUZZ_REQUIRE(strncmp(why, in_path, strlen(why) < strlen(in_path) ? strlen(why) : strlen(in_path)) == 0,
                         "why %s", why);
    for (size_t i = 0; i < 5; i++)
        wlfile_match_recipient(wf, rcpts[i], why, sizeof why);
    wlfile_free(wf);
    wlfile_errors_fini(&errs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_write_file(in_path, data, size);
    server_config();
    policy_config();
    whitelist_file(true);
    whitelist_file(false);
    return 0;
}
