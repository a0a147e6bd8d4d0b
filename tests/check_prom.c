/* check_prom - tests of proto/histo.c, proto/prom.c and proto/httpd.c: the exact Prometheus text
 * (families, escaping of hostile label values and help, number formatting, cumulative histogram
 * buckets in seconds for each bucket layout), histograms summed from several writers, a full
 * sample scrape accepted by the real `promtool check metrics` (and a broken one rejected, so the
 * check can fail), then the HTTP endpoint on loopback spoken to with a plain socket client:
 * every route, HEAD, errors, a taken port, IPv6 and the listen address syntax. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "histo.h"
#include "httpd.h"
#include "prom.h"

/* ---- text format ---- */

START_TEST(test_family_and_samples)
{
    struct prom_buf b;
    const struct prom_label l[] = {{"type", "check"}, {"outcome", "ok"}};

    prom_init(&b);
    prom_family(&b, "mxcache_requests_total", "counter", "Requests \\ by type\nand outcome.");
    prom_u64(&b, "mxcache_requests_total", l, 2, 42);
    prom_u64(&b, "mxcache_requests_total", l, 1, UINT64_MAX);
    prom_family(&b, "mxcache_ready", "gauge", "Ready.");
    prom_u64(&b, "mxcache_ready", NULL, 0, 0);
    prom_single(&b, "mxcache_store_writes_total", "counter", "Writes.", 7);
    ck_assert(!b.failed);
    ck_assert_str_eq(b.data, "# HELP mxcache_requests_total Requests \\\\ by type\\nand outcome.\n"
                             "# TYPE mxcache_requests_total counter\n"
                             "mxcache_requests_total{type=\"check\",outcome=\"ok\"} 42\n"
                             "mxcache_requests_total{type=\"check\"} 18446744073709551615\n"
                             "# HELP mxcache_ready Ready.\n"
                             "# TYPE mxcache_ready gauge\n"
                             "mxcache_ready 0\n"
                             "# HELP mxcache_store_writes_total Writes.\n"
                             "# TYPE mxcache_store_writes_total counter\n"
                             "mxcache_store_writes_total 7\n");
    ck_assert_uint_eq(b.len, strlen(b.data));
    prom_fini(&b);
    prom_fini(&b); /* twice is harmless */
}
END_TEST

static const struct escape_case {
    const char *value, *escaped;
} escape_cases[] = {
    {"plain.example", "plain.example"},
    {"", ""},
    {"a\"b", "a\\\"b"},
    {"back\\slash", "back\\\\slash"},
    {"new\nline", "new\\nline"},
    {"\"}\n evil 1\n", "\\\"}\\n evil 1\\n"},
    {"\\\"\\n", "\\\\\\\"\\\\n"},
    {"tab\there", "tab\there"}, /* only \, " and newline are escaped in 0.0.4 */
};

START_TEST(test_label_escaping)
{
    const struct escape_case *c = &escape_cases[_i];
    const struct prom_label l[] = {{"route", c->value}};
    struct prom_buf b;
    char want[256];

    prom_init(&b);
    prom_u64(&b, "m", l, 1, 1);
    snprintf(want, sizeof want, "m{route=\"%s\"} 1\n", c->escaped);
    ck_assert_str_eq(b.data, want);
    prom_fini(&b);
}
END_TEST

static const struct double_case {
    double v;
    const char *text;
} double_cases[] = {
    {0.0, "0"},        {1.0, "1"},          {0.1, "0.1"},     {2.5, "2.5"},
    {-3.25, "-3.25"},  {1e21, "1e+21"},     {1e-9, "1e-09"},  {123456789.0, "123456789"},
    {1.0 / 3, "0.3333333333333333"},       {9007199254740993.0, "9007199254740992"},
};

START_TEST(test_doubles)
{
    const struct double_case *c = &double_cases[_i];
    struct prom_buf b;
    char want[64];

    prom_init(&b);
    prom_double(&b, "g", NULL, 0, c->v);
    snprintf(want, sizeof want, "g %s\n", c->text);
    ck_assert_str_eq(b.data, want);
    ck_assert(strtod(b.data + 2, NULL) == c->v);
    prom_fini(&b);
}
END_TEST

START_TEST(test_doubles_special)
{
    struct prom_buf b;

    prom_init(&b);
    prom_double(&b, "g", NULL, 0, INFINITY);
    prom_double(&b, "g", NULL, 0, -INFINITY);
    prom_double(&b, "g", NULL, 0, NAN);
    ck_assert_str_eq(b.data, "g +Inf\ng -Inf\ng NaN\n");
    prom_fini(&b);
}
END_TEST

/* Any double prints as text that parses back to the same bits. */
START_TEST(test_doubles_round_trip)
{
    struct prom_buf b;
    unsigned seed = 12345;

    for (int i = 0; i < 2000; i++) {
        uint64_t bits = 0;
        double v;
        for (int k = 0; k < 4; k++)
            bits = (bits << 16) ^ (uint64_t)(rand_r(&seed) & 0xffff);
        memcpy(&v, &bits, sizeof v);
        if (!isfinite(v))
            continue;
        prom_init(&b);
        prom_double(&b, "g", NULL, 0, v);
        ck_assert_msg(strtod(b.data + 2, NULL) == v, "%s", b.data);
        prom_fini(&b);
    }
}
END_TEST

/* ---- histograms ---- */

START_TEST(test_histo_buckets)
{
    struct histo h;
    struct histo_snapshot s;

    histo_init(&h, &histo_latency_us);
    histo_observe(&h, 0);        /* first bucket */
    histo_observe(&h, 50);       /* le is inclusive */
    histo_observe(&h, 51);       /* next bucket */
    histo_observe(&h, 10000000); /* the last finite bound */
    histo_observe(&h, 10000001); /* +Inf */
    histo_snapshot_init(&s, &histo_latency_us);
    histo_snapshot_add(&s, &h);
    ck_assert_uint_eq(s.bucket[0], 2);
    ck_assert_uint_eq(s.bucket[1], 1);
    ck_assert_uint_eq(s.bucket[histo_latency_us.n - 1], 1);
    ck_assert_uint_eq(s.bucket[histo_latency_us.n], 1);
    ck_assert_uint_eq(s.sum, 20000102);
    ck_assert_uint_eq(histo_snapshot_count(&s), 5);
}
END_TEST

/* The layouts as the issue fixes them: increasing, within HISTO_MAX_BUCKETS, with the ends given. */
START_TEST(test_histo_specs)
{
    const struct {
        const struct histo_spec *spec;
        uint64_t first, last;
        double unit;
    } specs[] = {
        {&histo_latency_us, 50, 10000000, 1e-6},
        {&histo_dialogue_ms, 10, 300000, 1e-3},
        {&histo_delay_s, 60, 172800, 1},
    };

    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        const struct histo_spec *sp = specs[i].spec;
        ck_assert_uint_le(sp->n, HISTO_MAX_BUCKETS);
        ck_assert_uint_eq(sp->le[0], specs[i].first);
        ck_assert_uint_eq(sp->le[sp->n - 1], specs[i].last);
        ck_assert(sp->unit_seconds == specs[i].unit);
        for (size_t k = 1; k < sp->n; k++)
            ck_assert_uint_gt(sp->le[k], sp->le[k - 1]);
    }
}
END_TEST

START_TEST(test_histogram_text)
{
    struct histo h;
    struct histo_snapshot s;
    struct prom_buf b;
    const struct prom_label l[] = {{"route", "example.org"}};

    histo_init(&h, &histo_dialogue_ms);
    histo_observe(&h, 5);
    histo_observe(&h, 20);
    histo_observe(&h, 2500);
    histo_observe(&h, 400000);
    histo_snapshot_init(&s, &histo_dialogue_ms);
    histo_snapshot_add(&s, &h);
    prom_init(&b);
    prom_histogram(&b, "mxcache_probe_duration_seconds", l, 1, &s);
    ck_assert_str_eq(b.data, "mxcache_probe_duration_seconds_bucket{route=\"example.org\",le=\"0.01\"} 1\n"
                             "mxcache_probe_duration_seconds_bucket{route=\"example.org\",le=\"0.025\"} 2\n"
                             "mxcache_probe_duration_seconds_bucket{route=\"example.org\",le=\"0.05\"} 2\n"
                             "mxcache_probe_duration_seconds_bucket{route=\"example.org\",le=\"0.1\"} 2\n"
                             "mxcache_probe_duration_seconds_bucket{route=\"example.org\",le=\"0.25\"} 2\n"
                             "mxcache_probe_duration_seconds_bucket{route=\"example.org\",le=\"0.5\"} 2\n"
                             "mxcache_probe_duration_seconds_bucket{route=\"example.org\",le=\"1\"} 2\n"
                             "mxcache_probe_duration_seconds_bucket{route=\"example.org\",le=\"2.5\"} 3\n"
                             "mxcache_probe_duration_seconds_bucket{route=\"example.org\",le=\"5\"} 3\n"
                             "mxcache_probe_duration_seconds_bucket{route=\"example.org\",le=\"10\"} 3\n"
                             "mxcache_probe_duration_seconds_bucket{route=\"example.org\",le=\"30\"} 3\n"
                             "mxcache_probe_duration_seconds_bucket{route=\"example.org\",le=\"60\"} 3\n"
                             "mxcache_probe_duration_seconds_bucket{route=\"example.org\",le=\"120\"} 3\n"
                             "mxcache_probe_duration_seconds_bucket{route=\"example.org\",le=\"300\"} 3\n"
                             "mxcache_probe_duration_seconds_bucket{route=\"example.org\",le=\"+Inf\"} 4\n"
                             "mxcache_probe_duration_seconds_sum{route=\"example.org\"} 402.525\n"
                             "mxcache_probe_duration_seconds_count{route=\"example.org\"} 4\n");
    prom_fini(&b);
}
END_TEST

/* Per spec: the first and last le, the sum of the observations in seconds, +Inf == _count. */
static const struct unit_case {
    const struct histo_spec *spec;
    uint64_t obs[3];
    const char *first_le, *last_le, *sum;
} unit_cases[] = {
    {&histo_latency_us, {1500, 50, 7}, "0.00005", "10", "0.001557"},
    {&histo_latency_us, {1000000, 2000000, 0}, "0.00005", "10", "3"},
    {&histo_dialogue_ms, {2500, 1, 0}, "0.01", "300", "2.501"},
    {&histo_delay_s, {3600, 60, 1}, "60", "172800", "3661"},
    {&histo_delay_s, {0, 0, 0}, "60", "172800", "0"},
};

START_TEST(test_histogram_units)
{
    const struct unit_case *c = &unit_cases[_i];
    struct histo h;
    struct histo_snapshot s;
    struct prom_buf b;
    char want[128], *line, *save = NULL;
    size_t nbucket = 0;
    uint64_t prev = 0, inf = UINT64_MAX, count = 0;

    histo_init(&h, c->spec);
    for (int i = 0; i < 3; i++)
        histo_observe(&h, c->obs[i]);
    histo_snapshot_init(&s, c->spec);
    histo_snapshot_add(&s, &h);
    prom_init(&b);
    prom_histogram(&b, "x_seconds", NULL, 0, &s);
    snprintf(want, sizeof want, "x_seconds_bucket{le=\"%s\"} ", c->first_le);
    ck_assert_msg(strncmp(b.data, want, strlen(want)) == 0, "%s", b.data);
    snprintf(want, sizeof want, "x_seconds_bucket{le=\"%s\"} ", c->last_le);
    ck_assert_ptr_nonnull(strstr(b.data, want));
    snprintf(want, sizeof want, "\nx_seconds_sum %s\n", c->sum);
    ck_assert_msg(strstr(b.data, want) != NULL, "%s", b.data);
    for (line = strtok_r(b.data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        const char *sp = strrchr(line, ' ');
        uint64_t v = strtoull(sp + 1, NULL, 10);
        if (strncmp(line, "x_seconds_bucket{le=\"+Inf\"}", 27) == 0) {
            inf = v;
        } else if (strncmp(line, "x_seconds_bucket", 16) == 0) {
            ck_assert_uint_ge(v, prev); /* cumulative */
            prev = v;
            nbucket++;
        } else if (strncmp(line, "x_seconds_count", 15) == 0) {
            count = v;
        }
    }
    ck_assert_uint_eq(nbucket, c->spec->n);
    ck_assert_uint_eq(inf, 3);
    ck_assert_uint_eq(count, inf);
    ck_assert_uint_ge(inf, prev);
    prom_fini(&b);
}
END_TEST

/* Two writers' sets summed by a reader are the histogram of all observations. */
START_TEST(test_histo_sum_sets)
{
    struct histo a, b, all;
    struct histo_snapshot s, sall;

    histo_init(&a, &histo_latency_us);
    histo_init(&b, &histo_latency_us);
    histo_init(&all, &histo_latency_us);
    for (uint64_t v = 1; v < 20000000; v = v * 3 + 7) {
        histo_observe(v % 2 ? &a : &b, v);
        histo_observe(&all, v);
    }
    histo_snapshot_init(&s, &histo_latency_us);
    histo_snapshot_add(&s, &a);
    histo_snapshot_add(&s, &b);
    histo_snapshot_init(&sall, &histo_latency_us);
    histo_snapshot_add(&sall, &all);
    ck_assert_mem_eq(s.bucket, sall.bucket, sizeof s.bucket);
    ck_assert_uint_eq(s.sum, sall.sum);
    ck_assert_uint_eq(histo_snapshot_count(&s), histo_snapshot_count(&sall));
    ck_assert_uint_gt(histo_snapshot_count(&s), 10);
}
END_TEST

/* Robustness: a buffer that cannot grow is marked failed and stays usable (no crash, no write). */
START_TEST(test_buffer_limit)
{
    struct prom_buf b;
    size_t big = 1024 * 1024;
    char *help = malloc(big + 1);

    ck_assert_ptr_nonnull(help);
    memset(help, 'h', big);
    help[big] = '\0';
    prom_init(&b);
    for (int i = 0; i < 80 && !b.failed; i++)
        prom_family(&b, "m", "gauge", help);
    ck_assert(b.failed);
    prom_u64(&b, "m", NULL, 0, 1);
    ck_assert(b.failed);
    prom_fini(&b);
    free(help);
}
END_TEST

START_TEST(test_process)
{
    struct prom_buf b;
    const char *names[] = {"process_cpu_seconds_total", "process_resident_memory_bytes",
                           "process_virtual_memory_bytes", "process_open_fds", "process_max_fds",
                           "process_start_time_seconds"};
    char want[80];
    const char *p;
    double start;

    prom_init(&b);
    prom_process(&b);
    ck_assert(!b.failed);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(want, sizeof want, "\n%s ", names[i]);
        ck_assert_msg(strstr(b.data, want) != NULL, "%s missing in\n%s", names[i], b.data);
    }
    p = strstr(b.data, "\nprocess_start_time_seconds ");
    start = strtod(p + strlen("\nprocess_start_time_seconds "), NULL);
    ck_assert_msg(start > (double)time(NULL) - 3600 && start <= (double)time(NULL) + 2, "start %f", start);
    prom_fini(&b);
}
END_TEST

/* ---- promtool ---- */

/* promtool_rc - exit status of `promtool check metrics` given text; its output goes to stderr. */
static int promtool_rc(const char *text)
{
    FILE *p = popen("promtool check metrics 1>&2", "w");
    int st;

    ck_assert_msg(p != NULL, "cannot run promtool: %s", strerror(errno));
    fputs(text, p);
    st = pclose(p);
    ck_assert_msg(st != -1 && WIFEXITED(st), "promtool did not run");
    ck_assert_msg(WEXITSTATUS(st) != 127, "promtool not found");
    return WEXITSTATUS(st);
}

static void sample_scrape(struct prom_buf *b)
{
    struct histo h1, h2, d, g;
    struct histo_snapshot s;
    const struct prom_label ver[] = {{"version", "1.2.3"}};
    const struct prom_label rq[][2] = {{{"type", "check"}, {"outcome", "ok"}}, {{"type", "ping"}, {"outcome", "error"}}};
    const struct prom_label route[] = {{"route", "we\"ird\\route\nname"}};

    prom_family(b, "mxcache_build_info", "gauge", "Build information.");
    prom_u64(b, "mxcache_build_info", ver, 1, 1);
    prom_family(b, "mxcache_requests_total", "counter", "Requests by type and outcome.");
    prom_u64(b, "mxcache_requests_total", rq[0], 2, 12345);
    prom_u64(b, "mxcache_requests_total", rq[1], 2, UINT64_MAX);
    prom_family(b, "mxcache_fraction", "gauge", "A gauge with \\ and\nnewline in its help.");
    prom_double(b, "mxcache_fraction", NULL, 0, 0.1);
    prom_double(b, "mxcache_fraction", route, 1, NAN);

    histo_init(&h1, &histo_latency_us);
    histo_init(&h2, &histo_latency_us);
    for (uint64_t v = 1; v < 30000000; v = v * 2 + 3)
        histo_observe(v & 1 ? &h1 : &h2, v);
    histo_snapshot_init(&s, &histo_latency_us);
    histo_snapshot_add(&s, &h1);
    histo_snapshot_add(&s, &h2);
    prom_family(b, "mxcache_request_duration_seconds", "histogram", "Request latency.");
    prom_histogram(b, "mxcache_request_duration_seconds", rq[0], 1, &s);

    histo_init(&d, &histo_dialogue_ms);
    histo_observe(&d, 1234);
    histo_snapshot_init(&s, &histo_dialogue_ms);
    histo_snapshot_add(&s, &d);
    prom_family(b, "mxcache_probe_duration_seconds", "histogram", "Probe duration.");
    prom_histogram(b, "mxcache_probe_duration_seconds", route, 1, &s);

    histo_init(&g, &histo_delay_s);
    histo_observe(&g, 301);
    histo_observe(&g, 999999);
    histo_snapshot_init(&s, &histo_delay_s);
    histo_snapshot_add(&s, &g);
    prom_family(b, "mxcache_greylist_delay_seconds", "histogram", "Greylisting delay.");
    prom_histogram(b, "mxcache_greylist_delay_seconds", NULL, 0, &s);
    prom_process(b);
}

START_TEST(test_promtool_accepts)
{
    struct prom_buf b;

    prom_init(&b);
    sample_scrape(&b);
    ck_assert(!b.failed);
    ck_assert_int_eq(promtool_rc(b.data), 0);
    prom_fini(&b);
}
END_TEST

/* The check above means something only if promtool fails broken text. */
START_TEST(test_promtool_rejects)
{
    ck_assert_int_ne(promtool_rc("# HELP x_total X.\n# TYPE x_total counter\nx_total{a=\"unterminated} 1\n"), 0);
    ck_assert_int_ne(promtool_rc("# HELP x X.\n# TYPE x gauge\nx 1\n# TYPE x gauge\nx 2\n"), 0);
    ck_assert_int_ne(promtool_rc("# HELP x X.\n# TYPE x gauge\nx one\n"), 0);
    ck_assert_int_ne(promtool_rc("# HELP x X.\n# TYPE x counter\nx 1\n"), 0); /* lint: no _total */
}
END_TEST

/* ---- HTTP endpoint ---- */

struct fake_daemon {
    atomic_int ready;
    atomic_int fail_metrics;
    atomic_uint scrapes;
};

static void fake_metrics(void *arg, struct prom_buf *b)
{
    struct fake_daemon *f = arg;
    unsigned n = atomic_fetch_add(&f->scrapes, 1) + 1;

    prom_family(b, "fake_scrapes_total", "counter", "Scrapes.");
    prom_u64(b, "fake_scrapes_total", NULL, 0, n);
    if (atomic_load(&f->fail_metrics))
        b->failed = true;
}

static bool fake_ready(void *arg, char *why, size_t whylen)
{
    struct fake_daemon *f = arg;

    if (atomic_load(&f->ready))
        return true;
    snprintf(why, whylen, "store not open\nsecond line");
    return false;
}

struct http_reply {
    int status;
    char head[2048];
    char body[65536];
    size_t bodylen;
};

static int connect_to(int family, unsigned port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    struct timeval tv = {5, 0};
    int fd;

    memset(&ss, 0, sizeof ss);
    if (family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = in6addr_loopback;
        s6->sin6_port = htons((uint16_t)port);
        len = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        s4->sin_port = htons((uint16_t)port);
        len = sizeof *s4;
    }
    fd = socket(family, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    ck_assert_msg(connect(fd, (struct sockaddr *)&ss, len) == 0, "connect: %s", strerror(errno));
    return fd;
}

/* http_raw - sends req as it is and reads the reply to EOF (5 s at most per read). */
static size_t http_raw(int family, unsigned port, const char *req, char *buf, size_t buflen)
{
    size_t got = 0;
    ssize_t n = 0;
    int fd = connect_to(family, port);

    ck_assert_int_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    while (got < buflen - 1 && (n = read(fd, buf + got, buflen - 1 - got)) > 0)
        got += (size_t)n;
    ck_assert_msg(n == 0, "no EOF from the server: %s", strerror(errno));
    close(fd);
    buf[got] = '\0';
    return got;
}

/* http - one request with Connection: close. */
static void http(int family, unsigned port, const char *method, const char *path, struct http_reply *r)
{
    char req[512], buf[70000];
    size_t got;
    const char *end;

    snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n", method, path);
    got = http_raw(family, port, req, buf, sizeof buf);
    ck_assert_msg(sscanf(buf, "HTTP/1.1 %d ", &r->status) == 1, "bad reply: %s", buf);
    end = strstr(buf, "\r\n\r\n");
    ck_assert_ptr_nonnull(end);
    snprintf(r->head, sizeof r->head, "%.*s", (int)(end - buf), buf);
    r->bodylen = got - (size_t)(end + 4 - buf);
    memcpy(r->body, end + 4, r->bodylen);
    r->body[r->bodylen] = '\0';
}

static struct fake_daemon fake;
static const struct httpd_handlers fake_handlers = {&fake, fake_metrics, fake_ready};

static struct httpd *start_or_fail(const char *listen)
{
    char err[256] = "";
    struct httpd *d = httpd_start(listen, &fake_handlers, err, sizeof err);

    ck_assert_msg(d != NULL, "httpd_start %s: %s", listen, err);
    ck_assert_uint_ne(httpd_port(d), 0);
    return d;
}

START_TEST(test_http_routes)
{
    struct http_reply r;
    struct httpd *d;
    unsigned port;

    atomic_store(&fake.ready, 1);
    d = start_or_fail("127.0.0.1:0");
    port = httpd_port(d);

    http(AF_INET, port, "GET", "/metrics", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_msg(strstr(r.head, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8") != NULL, "%s", r.head);
    ck_assert_str_eq(r.body, "# HELP fake_scrapes_total Scrapes.\n# TYPE fake_scrapes_total counter\n"
                             "fake_scrapes_total 1\n");
    ck_assert_int_eq(promtool_rc(r.body), 0);

    http(AF_INET, port, "GET", "/metrics?name[]=x", &r); /* query strings are ignored */
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "fake_scrapes_total 2\n"));

    http(AF_INET, port, "HEAD", "/metrics", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.bodylen, 0);
    ck_assert_ptr_nonnull(strstr(r.head, "version=0.0.4"));

    http(AF_INET, port, "GET", "/healthz", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "ok\n");
    http(AF_INET, port, "HEAD", "/healthz", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.bodylen, 0);

    http(AF_INET, port, "GET", "/readyz", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "ready\n");
    atomic_store(&fake.ready, 0);
    http(AF_INET, port, "GET", "/readyz", &r);
    ck_assert_int_eq(r.status, 503);
    ck_assert_str_eq(r.body, "not ready: store not open second line\n");

    http(AF_INET, port, "GET", "/nope", &r);
    ck_assert_int_eq(r.status, 404);
    http(AF_INET, port, "GET", "/metrics/", &r);
    ck_assert_int_eq(r.status, 404);
    http(AF_INET, port, "POST", "/metrics", &r);
    ck_assert_int_eq(r.status, 405);
    ck_assert_ptr_nonnull(strstr(r.head, "\r\nAllow: GET, HEAD"));

    atomic_store(&fake.fail_metrics, 1);
    http(AF_INET, port, "GET", "/metrics", &r);
    ck_assert_int_eq(r.status, 500);
    atomic_store(&fake.fail_metrics, 0);
    httpd_stop(d);
}
END_TEST

/* A scraper keeps its connection for the next request; a body (which no route takes) is not an error. */
START_TEST(test_http_keep_alive_and_body)
{
    struct httpd *d = start_or_fail("127.0.0.1:0");
    char buf[4096];

    atomic_store(&fake.ready, 1);
    http_raw(AF_INET, httpd_port(d),
             "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
             "GET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
             buf, sizeof buf);
    ck_assert_msg(strstr(buf, "\r\n\r\nok\nHTTP/1.1 200 OK\r\n") != NULL, "%s", buf);
    ck_assert_msg(strstr(buf, "\r\n\r\nready\n") != NULL, "%s", buf);
    http_raw(AF_INET, httpd_port(d), "GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc", buf,
             sizeof buf);
    ck_assert_msg(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", buf);
    http_raw(AF_INET, httpd_port(d), "POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\nabc", buf,
             sizeof buf);
    ck_assert_msg(strncmp(buf, "HTTP/1.1 405 ", 13) == 0, "%s", buf);
    httpd_stop(d);
}
END_TEST

/* A client that never finishes its request does not hold up the others. */
START_TEST(test_http_slow_client)
{
    struct http_reply r;
    struct httpd *d = start_or_fail("127.0.0.1:0");
    int slow[3];

    for (int i = 0; i < 3; i++) {
        slow[i] = connect_to(AF_INET, httpd_port(d));
        ck_assert_int_eq(write(slow[i], "GET /metr", 9), 9);
    }
    http(AF_INET, httpd_port(d), "GET", "/healthz", &r);
    ck_assert_int_eq(r.status, 200);
    for (int i = 0; i < 3; i++)
        close(slow[i]);
    httpd_stop(d);
}
END_TEST

START_TEST(test_http_port_taken)
{
    struct httpd *d = start_or_fail("127.0.0.1:0"), *d2;
    char listen[64], err[256] = "", want[128];

    snprintf(listen, sizeof listen, "127.0.0.1:%u", httpd_port(d));
    d2 = httpd_start(listen, &fake_handlers, err, sizeof err);
    ck_assert_ptr_null(d2);
    snprintf(want, sizeof want, "cannot listen on %s: Address already in use", listen);
    ck_assert_str_eq(err, want);
    httpd_stop(d);
    httpd_stop(NULL);
}
END_TEST

START_TEST(test_http_ipv6)
{
    struct http_reply r;
    int probe = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    struct httpd *d;

    /* Robustness: a host without IPv6 loopback cannot run this test; say so instead of failing. */
    if (probe < 0 || bind(probe, (struct sockaddr *)&s6, sizeof s6) != 0) {
        fprintf(stderr, "check_prom: no ::1 here, IPv6 test skipped\n");
        if (probe >= 0)
            close(probe);
        return;
    }
    close(probe);
    d = start_or_fail("[::1]:0");
    http(AF_INET6, httpd_port(d), "GET", "/healthz", &r);
    ck_assert_int_eq(r.status, 200);
    httpd_stop(d);
}
END_TEST

static const struct listen_case {
    const char *listen;
    bool valid;
} listen_cases[] = {
    {"127.0.0.1:10042", true},
    {"127.0.0.1:0", true},
    {"0.0.0.0:65535", true},
    {"[::1]:10043", true},
    {"[::]:1", true},
    {"[::ffff:127.0.0.1]:80", true},
    {"", false},
    {"127.0.0.1", false},
    {"127.0.0.1:", false},
    {"127.0.0.1:65536", false},
    {"127.0.0.1:99999", false},
    {"127.0.0.1:-1", false},
    {"127.0.0.1:+1", false},
    {"127.0.0.1: 80", false},
    {"127.0.0.1:80 ", false},
    {"127.0.0.1:80x", false},
    {"127.0.0.1:000080", false},
    {" 127.0.0.1:80", false},
    {":80", false},
    {"localhost:80", false},
    {"mx.example.org:80", false},
    {"1.2.3:80", false},
    {"1.2.3.256:80", false},
    {"::1:80", false},
    {"[::1]", false},
    {"[::1]80", false},
    {"[::1]:", false},
    {"[::1:80", false},
    {"[]:80", false},
    {"[127.0.0.1]:80", false},
    {"[fe80::1%lo]:80", false},
    {"127.0.0.1:80\n", false},
    {"[::1]:80:80", false},
    {"[0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000]:80", false},
};

START_TEST(test_listen_valid)
{
    const struct listen_case *c = &listen_cases[_i];
    char why[128] = "", err[256] = "";
    bool ok = httpd_listen_valid(c->listen, why, sizeof why);

    ck_assert_msg(ok == c->valid, "\"%s\": %d (%s)", c->listen, ok, why);
    if (!ok) {
        ck_assert_msg(why[0] != '\0', "no reason for \"%s\"", c->listen);
        /* httpd_start refuses the same strings, with the reason. */
        ck_assert_ptr_null(httpd_start(c->listen, &fake_handlers, err, sizeof err));
        ck_assert_ptr_nonnull(strstr(err, why));
        ck_assert_ptr_null(strchr(err, '\n'));
    }
}
END_TEST

static Suite *prom_suite(void)
{
    Suite *s = suite_create("prom");
    TCase *tc = tcase_create("format");
    TCase *th = tcase_create("httpd");

    tcase_add_test(tc, test_family_and_samples);
    tcase_add_loop_test(tc, test_label_escaping, 0, (int)(sizeof escape_cases / sizeof escape_cases[0]));
    tcase_add_loop_test(tc, test_doubles, 0, (int)(sizeof double_cases / sizeof double_cases[0]));
    tcase_add_test(tc, test_doubles_special);
    tcase_add_test(tc, test_doubles_round_trip);
    tcase_add_test(tc, test_histo_buckets);
    tcase_add_test(tc, test_histo_specs);
    tcase_add_test(tc, test_histogram_text);
    tcase_add_loop_test(tc, test_histogram_units, 0, (int)(sizeof unit_cases / sizeof unit_cases[0]));
    tcase_add_test(tc, test_histo_sum_sets);
    tcase_add_test(tc, test_buffer_limit);
    tcase_add_test(tc, test_process);
    tcase_add_test(tc, test_promtool_accepts);
    tcase_add_test(tc, test_promtool_rejects);
    suite_add_tcase(s, tc);

    tcase_add_test(th, test_http_routes);
    tcase_add_test(th, test_http_keep_alive_and_body);
    tcase_add_test(th, test_http_slow_client);
    tcase_add_test(th, test_http_port_taken);
    tcase_add_test(th, test_http_ipv6);
    tcase_add_loop_test(th, test_listen_valid, 0, (int)(sizeof listen_cases / sizeof listen_cases[0]));
    suite_add_tcase(s, th);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(prom_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
