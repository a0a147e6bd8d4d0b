/* Helpers that every Check test of mxcache shares: sleeping and reading the monotonic clock in
 * milliseconds, reading a whole (log) file, and asking a daemon's monitoring endpoint. Test code: a failure that leaves the test no
 * sensible way on (out of memory) fails the running test with ck_assert. */
#ifndef MXCACHE_TESTS_TESTUTIL_H
#define MXCACHE_TESTS_TESTUTIL_H

/* test_sleep_ms - sleeps ms milliseconds, across signals. */
void test_sleep_ms(long ms);

/* test_now_ms - the monotonic clock in milliseconds. */
long test_now_ms(void);

/* test_file_text - the whole file, NUL-terminated, malloc'd ("" when it cannot be read). */
char *test_file_text(const char *path);

#define TEST_HTTP_MS 5000 /* one HTTP exchange with a daemon's /metrics, /readyz */

/* test_http_get - GET path from 127.0.0.1:port with a plain socket (HTTP/1.0, the server
 * closes). Returns the status (0: no connection or no answer within TEST_HTTP_MS) and the body
 * in *body (malloc'd, "" when none). */
int test_http_get(unsigned port, const char *path, char **body);

/* test_metric_sample - the value of series (a metric name with its labels, as written) in a
 * Prometheus scrape; NAN when the scrape has no such sample. */
double test_metric_sample(const char *text, const char *series);

#endif
