/* Helpers the libFuzzer targets of tests/fuzz share: a failed invariant that stops the run with a
 * message, a seeded generator for splitting input into pieces, and a private temporary directory
 * (created once per process, removed at exit) for the targets that need files.
 *
 * Test code: a failure of the environment (no temporary directory, a file that cannot be written)
 * aborts, because a fuzz run that cannot set itself up proves nothing. Everything is static: each
 * target is one translation unit plus the libraries under test. */
#ifndef MXCACHE_FUZZ_UTIL_H
#define MXCACHE_FUZZ_UTIL_H

#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* FUZZ_REQUIRE - an invariant of the code under test: on violation, say which and abort, which
 * libFuzzer reports as a crash and saves the input. */
#define FUZZ_REQUIRE(cond, ...)                                                                    \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            FILE *out_ = fuzz_report ? fuzz_report : stderr;                                       \
            fprintf(out_, "%s:%d: invariant failed: %s: ", __FILE__, __LINE__, #cond);             \
            fprintf(out_, __VA_ARGS__);                                                            \
            fputc('\n', out_);                                                                     \
            fflush(out_);                                                                          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Where FUZZ_REQUIRE writes: the real stderr, even after fuzz_quiet_logs. */
static FILE *fuzz_report __attribute__((unused));

/* fuzz_quiet_logs - the daemons' logger writes to stderr, one line per event: at debug level a
 * fuzz run would print millions of lines. Its lines go to /dev/null (unless MXCACHE_FUZZ_LOG is
 * set), while libFuzzer's own output (which took its FILE * at start) and the sanitizers' reports
 * (written to file descriptor 2) still reach the terminal. */
static inline void fuzz_quiet_logs(void)
{
    fuzz_report = stderr;
    if (getenv("MXCACHE_FUZZ_LOG"))
        return;
    int fd = dup(2);
    FILE *real = fd >= 0 ? fdopen(fd, "w") : NULL;
    FILE *null = fopen("/dev/null", "w");
    if (!real || !null) {
        perror("fuzz: /dev/null");
        abort();
    }
    setvbuf(real, NULL, _IONBF, 0);
    fuzz_report = real;
    stderr = null;
}

/* A small xorshift generator: every split of the input is reproducible from the input. */
struct fuzz_rng {
    uint64_t s;
};

static inline uint64_t fuzz_rng_next(struct fuzz_rng *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return r->s;
}

/* fuzz_rng_seed - a generator seeded from up to 8 bytes (never the all-zero state). */
static inline struct fuzz_rng fuzz_rng_seed(const uint8_t *b, size_t n)
{
    struct fuzz_rng r = {0x9e3779b97f4a7c15ull};
    for (size_t i = 0; i < n && i < 8; i++)
        r.s ^= (uint64_t)b[i] << (8 * i);
    if (r.s == 0)
        r.s = 1;
    return r;
}

/* fuzz_piece - how many of left bytes the next feed gets: mostly short pieces (so that every
 * line is split everywhere), sometimes one byte, sometimes all the rest. */
static inline size_t fuzz_piece(struct fuzz_rng *r, size_t left)
{
    uint64_t x = fuzz_rng_next(r);
    size_t k;

    switch (x & 3) {
    case 0: k = 1; break;
    case 1: k = left; break;
    default: k = 1 + (size_t)((x >> 8) % 17); break;
    }
    return k < left ? k : left;
}

/* ---- a private temporary directory ---- */

static char fuzz_dir[PATH_MAX] __attribute__((unused));

static inline int fuzz_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static inline void fuzz_tmpdir_remove(void)
{
    if (fuzz_dir[0])
        nftw(fuzz_dir, fuzz_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* fuzz_tmpdir - creates fuzz_dir ($TMPDIR or /tmp) once, removed when the process exits. */
static inline const char *fuzz_tmpdir(const char *name)
{
    const char *tmp = getenv("TMPDIR");

    if (fuzz_dir[0])
        return fuzz_dir;
    snprintf(fuzz_dir, sizeof fuzz_dir, "%s/%s.XXXXXX", tmp && *tmp ? tmp : "/tmp", name);
    if (!mkdtemp(fuzz_dir)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(fuzz_tmpdir_remove);
    return fuzz_dir;
}

/* fuzz_write_file - path gets exactly the n bytes at data (truncated first). */
static inline void fuzz_write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");

    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

#endif
