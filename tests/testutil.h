/* Helpers that every Check test of mxcache shares: sleeping and reading the monotonic clock in
 * milliseconds, and reading a whole (log) file. Test code: a failure that leaves the test no
 * sensible way on (out of memory) fails the running test with ck_assert. */
#ifndef MXCACHE_TESTS_TESTUTIL_H
#define MXCACHE_TESTS_TESTUTIL_H

/* test_sleep_ms - sleeps ms milliseconds, across signals. */
void test_sleep_ms(long ms);

/* test_now_ms - the monotonic clock in milliseconds. */
long test_now_ms(void);

/* test_file_text - the whole file, NUL-terminated, malloc'd ("" when it cannot be read). */
char *test_file_text(const char *path);

#endif
